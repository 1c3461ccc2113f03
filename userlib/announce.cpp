// SPDX-License-Identifier: LGPL-2.1-or-later
#include "announce.hpp"

#include <xmem/error.hpp>
#include <xmem/memory.hpp>

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>

namespace xmem::detail {

std::error_code announce_memory(borrowed_fd fd, std::uint64_t fixed_size,
				wire::header &h) noexcept
{
	if (fixed_size) {
		h.size = fixed_size;
		h.seals = seals();
		return {};
	}
	struct stat st;
	if (::fstat(fd.get(), &st) < 0)
		return errno_code(errno);
	h.size = static_cast<std::uint64_t>(st.st_size);
	const int bits = ::fcntl(fd.get(), F_GET_SEALS);
	h.seals = seals(bits < 0 ? 0u : static_cast<unsigned>(bits) & seals::all);
	return {};
}

} // namespace xmem::detail
