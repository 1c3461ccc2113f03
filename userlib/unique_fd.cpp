// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/unique_fd.hpp>

#include <xmem/error.hpp>

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace xmem {

void unique_fd::reset(int fd) noexcept
{
	const int saved = errno;
	if (fd_ >= 0)
		::close(fd_); /* never retried: see the header */
	fd_ = fd;
	errno = saved;
}

unique_fd dup_cloexec(borrowed_fd fd)
{
	unique_fd copy(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
	if (!copy)
		detail::throw_if(detail::errno_code(errno), "fcntl(F_DUPFD_CLOEXEC)");
	return copy;
}

} // namespace xmem
