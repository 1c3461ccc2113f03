// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target: wire::decode on any bytes. Properties:
 *  - it never crashes, and fails only with bad_header or unsupported_version;
 *  - what it accepts is canonical: encoding the decoded header gives back
 *    exactly the input bytes (so no two encodings mean the same header, and
 *    no field is silently dropped).
 */
#include <xmem/error.hpp>
#include <xmem/wire.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	using namespace xmem;
	std::error_code ec;
	std::span<const std::byte> in(reinterpret_cast<const std::byte *>(data), size);
	wire::header h = wire::decode(in, ec);
	if (ec) {
		if (ec != errc::bad_header && ec != errc::unsupported_version)
			std::abort();
		return 0;
	}
	if (size != wire::header_size || h.fd_count > wire::scm_max_fd ||
	    h.name.size() > wire::name_max)
		std::abort();
	auto out = wire::encode(h, ec);
	if (ec || std::memcmp(out.data(), data, wire::header_size) != 0)
		std::abort();
	return 0;
}
