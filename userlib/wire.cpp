// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/wire.hpp>

#include "cmsg.hpp"

#include <xmem/error.hpp>

#include <algorithm>
#include <cstring>

namespace xmem::wire {

namespace {

constexpr std::size_t off_magic = 0;
constexpr std::size_t off_version = 4;
constexpr std::size_t off_kind = 6;
constexpr std::size_t off_fd_count = 8;
constexpr std::size_t off_seals = 12;
constexpr std::size_t off_size = 16;
constexpr std::size_t off_error = 24;
constexpr std::size_t off_batch_index = 28;
constexpr std::size_t off_batch_count = 30;
constexpr std::size_t off_name = 32;
constexpr std::size_t name_field = header_size - off_name; /* 64 */
static_assert(name_field == name_max + 1);

template <typename T>
void put(std::array<std::byte, header_size> &out, std::size_t off, T value) noexcept
{
	std::memcpy(out.data() + off, &value, sizeof(value));
}

template <typename T>
T get(std::span<const std::byte> in, std::size_t off) noexcept
{
	T value;
	std::memcpy(&value, in.data() + off, sizeof(value));
	return value;
}

/* Outside a batch both are 0; inside, index < count. */
bool valid_batch(std::uint16_t index, std::uint16_t count) noexcept
{
	return count == 0 ? index == 0 : index < count;
}

bool valid_name(std::string_view name) noexcept
{
	return name.size() <= name_max && name.find('\0') == name.npos &&
	       name.find('/') == name.npos;
}

} // namespace

std::array<std::byte, header_size> encode(const header &h, std::error_code &ec) noexcept
{
	return detail::encode_with_fd_count(h, h.fd_count, ec);
}

header decode(std::span<const std::byte> in, std::error_code &ec) noexcept
{
	header h;
	ec = errc::bad_header;
	if (in.size() != header_size || get<std::uint32_t>(in, off_magic) != magic)
		return {};
	if (get<std::uint16_t>(in, off_version) != version) {
		ec = errc::unsupported_version;
		return {};
	}

	auto k = get<std::uint16_t>(in, off_kind);
	if (k < static_cast<std::uint16_t>(kind::request) ||
	    k > static_cast<std::uint16_t>(kind::error))
		return {};
	h.kind = static_cast<kind>(k);
	h.fd_count = get<std::uint32_t>(in, off_fd_count);
	unsigned bits = get<std::uint32_t>(in, off_seals);
	h.size = get<std::uint64_t>(in, off_size);
	h.error = get<std::int32_t>(in, off_error);
	h.batch_index = get<std::uint16_t>(in, off_batch_index);
	h.batch_count = get<std::uint16_t>(in, off_batch_count);
	if (h.fd_count > scm_max_fd || (bits & ~seals::all) ||
	    !valid_batch(h.batch_index, h.batch_count))
		return {};
	h.seals = seals(bits);

	/* The name: NUL-terminated within its field, NUL-padded after. */
	auto field = in.subspan(off_name, name_field);
	auto nul = std::find(field.begin(), field.end(), std::byte{0});
	if (nul == field.end() || std::any_of(nul, field.end(), [](std::byte b) {
		    return b != std::byte{0};
	    }))
		return {};
	std::string_view name(reinterpret_cast<const char *>(field.data()),
			      static_cast<std::size_t>(nul - field.begin()));
	if (!valid_name(name))
		return {};
	try {
		h.name.assign(name);
	} catch (const std::bad_alloc &) {
		return {};
	}
	ec.clear();
	return h;
}

} // namespace xmem::wire

namespace xmem::detail {

std::array<std::byte, wire::header_size> encode_with_fd_count(const wire::header &h,
							      std::uint32_t fd_count,
							      std::error_code &ec) noexcept
{
	using namespace wire;
	std::array<std::byte, header_size> out{};
	ec.clear();
	if (!valid_name(h.name)) {
		ec = errc::invalid_name;
		return out;
	}
	if ((h.seals.bits() & ~seals::all) || fd_count > scm_max_fd ||
	    !valid_batch(h.batch_index, h.batch_count)) {
		ec = errc::bad_header;
		return out;
	}
	put<std::uint32_t>(out, off_magic, magic);
	put<std::uint16_t>(out, off_version, version);
	put<std::uint16_t>(out, off_kind, static_cast<std::uint16_t>(h.kind));
	put<std::uint32_t>(out, off_fd_count, fd_count);
	put<std::uint32_t>(out, off_seals, h.seals.bits());
	put<std::uint64_t>(out, off_size, h.size);
	put<std::int32_t>(out, off_error, h.error);
	put<std::uint16_t>(out, off_batch_index, h.batch_index);
	put<std::uint16_t>(out, off_batch_count, h.batch_count);
	std::memcpy(out.data() + off_name, h.name.data(), h.name.size());
	return out;
}

} // namespace xmem::detail
