// SPDX-License-Identifier: LGPL-2.1-or-later
#define BOOST_TEST_MODULE wire
#include <boost/test/unit_test.hpp>

#include <xmem/xmem.hpp>

#include <cstring>

using namespace xmem;

namespace {

wire::header sample()
{
	wire::header h;
	h.kind = wire::kind::memory;
	h.fd_count = 1;
	h.seals = seals(seals::shrink | seals::grow);
	h.size = 4096;
	h.name = "ed25519";
	return h;
}

std::array<std::byte, wire::header_size> bytes_of(const wire::header &h)
{
	std::error_code ec;
	auto b = wire::encode(h, ec);
	BOOST_REQUIRE(!ec);
	return b;
}

template <typename T>
void poke(std::array<std::byte, wire::header_size> &b, std::size_t off, T v)
{
	std::memcpy(b.data() + off, &v, sizeof(v));
}

std::error_code decode_error(std::span<const std::byte> b)
{
	std::error_code ec;
	wire::decode(b, ec);
	return ec;
}

} // namespace

BOOST_AUTO_TEST_CASE(round_trip)
{
	auto b = bytes_of(sample());
	std::error_code ec;
	wire::header h = wire::decode(b, ec);
	BOOST_TEST(!ec);
	BOOST_TEST(static_cast<int>(h.kind) == static_cast<int>(wire::kind::memory));
	BOOST_TEST(h.fd_count == 1u);
	BOOST_TEST(h.seals.bits() == (seals::shrink | seals::grow));
	BOOST_TEST(h.size == 4096u);
	BOOST_TEST(h.name == "ed25519");
	std::uint32_t m;
	std::memcpy(&m, b.data(), 4);
	BOOST_TEST(m == wire::magic);
}

BOOST_AUTO_TEST_CASE(longest_name_round_trips)
{
	wire::header h = sample();
	h.name.assign(wire::name_max, 'k');
	std::error_code ec;
	wire::header back = wire::decode(bytes_of(h), ec);
	BOOST_TEST(!ec);
	BOOST_TEST(back.name == h.name);
}

BOOST_AUTO_TEST_CASE(encode_rejects_bad_fields)
{
	std::error_code ec;
	wire::header h = sample();
	h.name.assign(wire::name_max + 1, 'k');
	wire::encode(h, ec);
	BOOST_TEST((ec == errc::invalid_name));
	h = sample();
	h.name = "a/b";
	wire::encode(h, ec);
	BOOST_TEST((ec == errc::invalid_name));
	h = sample();
	h.name = std::string("a\0b", 3);
	wire::encode(h, ec);
	BOOST_TEST((ec == errc::invalid_name));
	h = sample();
	h.name.assign(wire::name_max, 'k');
	wire::encode(h, ec);
	BOOST_TEST(!ec);
	h = sample();
	h.seals = seals(0x100);
	wire::encode(h, ec);
	BOOST_TEST((ec == errc::bad_header));
	h = sample();
	h.fd_count = wire::scm_max_fd + 1;
	wire::encode(h, ec);
	BOOST_TEST((ec == errc::bad_header));
}

BOOST_AUTO_TEST_CASE(decode_rejects_wrong_length)
{
	auto b = bytes_of(sample());
	BOOST_TEST((decode_error(std::span(b).first(wire::header_size - 1)) == errc::bad_header));
	std::vector<std::byte> longer(b.begin(), b.end());
	longer.push_back(std::byte{0});
	BOOST_TEST((decode_error(longer) == errc::bad_header));
	BOOST_TEST((decode_error({}) == errc::bad_header));
}

BOOST_AUTO_TEST_CASE(decode_rejects_bad_magic_version_kind_reserved)
{
	auto b = bytes_of(sample());
	poke<std::uint32_t>(b, 0, 0xdeadbeef);
	BOOST_TEST((decode_error(b) == errc::bad_header));

	b = bytes_of(sample());
	poke<std::uint16_t>(b, 4, 2);
	BOOST_TEST((decode_error(b) == errc::unsupported_version));

	for (std::uint16_t k : {0, 4, 0xffff}) {
		b = bytes_of(sample());
		poke<std::uint16_t>(b, 6, k);
		BOOST_TEST((decode_error(b) == errc::bad_header));
	}

	b = bytes_of(sample());
	poke<std::uint32_t>(b, 28, 1);
	BOOST_TEST((decode_error(b) == errc::bad_header));

	b = bytes_of(sample());
	poke<std::uint32_t>(b, 12, 0x20); /* unknown seal bit */
	BOOST_TEST((decode_error(b) == errc::bad_header));

	b = bytes_of(sample());
	poke<std::uint32_t>(b, 8, static_cast<std::uint32_t>(wire::scm_max_fd + 1));
	BOOST_TEST((decode_error(b) == errc::bad_header));
}

BOOST_AUTO_TEST_CASE(decode_rejects_bad_names)
{
	auto b = bytes_of(sample());
	std::memset(b.data() + 32, 'x', 64); /* no NUL at all */
	BOOST_TEST((decode_error(b) == errc::bad_header));

	b = bytes_of(sample());
	b[32 + 20] = std::byte{'z'}; /* garbage after the NUL */
	BOOST_TEST((decode_error(b) == errc::bad_header));

	b = bytes_of(sample());
	b[32 + 1] = std::byte{'/'};
	BOOST_TEST((decode_error(b) == errc::bad_header));
}

BOOST_AUTO_TEST_CASE(batch_fields_round_trip_and_are_checked)
{
	/* Offsets 28 and 30 (once "u32 reserved, must be 0"): batch_index, batch_count. */
	wire::header h = sample();
	h.batch_index = 1;
	h.batch_count = 2;
	auto b = bytes_of(h);
	std::uint16_t index, count;
	std::memcpy(&index, b.data() + 28, 2);
	std::memcpy(&count, b.data() + 30, 2);
	BOOST_TEST(index == 1u);
	BOOST_TEST(count == 2u);
	std::error_code ec;
	wire::header back = wire::decode(b, ec);
	BOOST_TEST(!ec);
	BOOST_TEST(back.batch_index == 1u);
	BOOST_TEST(back.batch_count == 2u);

	/* Outside a batch the field is all zero, as the reserved field was. */
	b = bytes_of(sample());
	std::uint32_t reserved;
	std::memcpy(&reserved, b.data() + 28, 4);
	BOOST_TEST(reserved == 0u);

	/* index not below count, or an index outside a batch */
	for (auto [i, n] : {std::pair<std::uint16_t, std::uint16_t>{2, 2}, {1, 0}, {0xffff, 1}}) {
		h = sample();
		h.batch_index = i;
		h.batch_count = n;
		wire::encode(h, ec);
		BOOST_TEST((ec == errc::bad_header));
		b = bytes_of(sample());
		poke<std::uint16_t>(b, 28, i);
		poke<std::uint16_t>(b, 30, n);
		BOOST_TEST((decode_error(b) == errc::bad_header));
	}
}
