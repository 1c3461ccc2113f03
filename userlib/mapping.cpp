// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/mapping.hpp>

#include <xmem/error.hpp>

#include <cerrno>
#include <fstream>
#include <string>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include <utility>

namespace xmem {

namespace {

/* VmLck of /proc/self/status, in bytes; 0 when unreadable. */
std::size_t locked_bytes()
{
	std::ifstream status("/proc/self/status");
	std::string line;
	while (std::getline(status, line)) {
		if (line.rfind("VmLck:", 0) == 0)
			return std::stoull(line.substr(6)) * 1024;
	}
	return 0;
}

std::string memlock_message(std::size_t length, backend b)
{
	struct rlimit rl = {};
	::getrlimit(RLIMIT_MEMLOCK, &rl);
	const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
	const std::size_t need = (length + page - 1) / page * page;
	std::string limit = rl.rlim_cur == RLIM_INFINITY ? "unlimited"
							 : std::to_string(rl.rlim_cur) + " bytes";
	return "mapping " + std::to_string(need) + " bytes of " + std::string(to_string(b)) +
	       " memory: RLIMIT_MEMLOCK is " + limit + " and " + std::to_string(locked_bytes()) +
	       " bytes are already locked; raise it to at least " +
	       std::to_string(need + locked_bytes()) +
	       " bytes (ulimit -l in KiB, LimitMEMLOCK= in a systemd unit, or memlock in "
	       "/etc/security/limits.conf)";
}

} // namespace

mapping mapping::map(borrowed_fd fd, std::size_t length, xmem::backend b, xmem::access acc,
		     std::error_code &ec) noexcept
{
	ec.clear();
	if (length == 0) {
		ec = errc::invalid_size;
		return {};
	}
	const int prot = acc == xmem::access::read_write ? PROT_READ | PROT_WRITE : PROT_READ;
	void *addr = ::mmap(nullptr, length, prot, MAP_SHARED, fd.get(), 0);
	if (addr == MAP_FAILED) {
		/* secretmem and memfd_exclusive charge RLIMIT_MEMLOCK at mmap (mlock_future_ok()). */
		ec = errno == EAGAIN ? make_error_code(errc::memlock_limit)
				     : detail::errno_code(errno);
		return {};
	}

	mapping m;
	m.data_ = static_cast<std::byte *>(addr);
	m.size_ = length;
	m.access_ = acc;

	if (::madvise(addr, length, MADV_DONTFORK) < 0) {
		ec = detail::errno_code(errno);
		return {}; /* m unmaps */
	}
	if (b == xmem::backend::ordinary) {
		/* The ordinary fallback: keep it off swap and out of core dumps. */
		if (::mlock(addr, length) < 0) {
			ec = errno == ENOMEM || errno == EAGAIN || errno == EPERM
				     ? make_error_code(errc::memlock_limit)
				     : detail::errno_code(errno);
			return {};
		}
		if (::madvise(addr, length, MADV_DONTDUMP) < 0) {
			ec = detail::errno_code(errno);
			return {};
		}
	}
	return m;
}

mapping mapping::map(const memory &mem, xmem::access acc, std::error_code &ec) noexcept
{
	std::size_t length = mem.size(ec);
	if (ec)
		return {};
	return map(mem.fd(), length, mem.backend(), acc, ec);
}

mapping mapping::map(const memory &mem, xmem::access acc)
{
	std::error_code ec;
	std::size_t length = mem.size(ec);
	detail::throw_if(ec, "fstat before mapping");
	mapping m = map(mem.fd(), length, mem.backend(), acc, ec);
	if (ec == errc::memlock_limit)
		throw std::system_error(ec, memlock_message(length, mem.backend()));
	if (ec)
		throw std::system_error(ec, "mapping " + std::to_string(length) + " bytes of " +
						    std::string(to_string(mem.backend())) + " memory " +
						    (acc == xmem::access::read_write ? "read-write"
										     : "read-only"));
	return m;
}

mapping::mapping(mapping &&other) noexcept
	: data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
	  access_(other.access_)
{
}

mapping &mapping::operator=(mapping &&other) noexcept
{
	if (this != &other) {
		unmap();
		data_ = std::exchange(other.data_, nullptr);
		size_ = std::exchange(other.size_, 0);
		access_ = other.access_;
	}
	return *this;
}

mapping::~mapping()
{
	unmap();
}

void mapping::unmap() noexcept
{
	if (!data_)
		return;
	const int saved = errno;
	::munmap(data_, size_);
	errno = saved;
	data_ = nullptr;
	size_ = 0;
}

} // namespace xmem
