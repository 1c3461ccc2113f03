// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/memory.hpp>

#include <xmem/error.hpp>

#include <uapi/linux/memfd_exclusive.h>

#include <cerrno>
#include <atomic>
#include <climits>
#include <fcntl.h>
#include <linux/magic.h>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef __NR_memfd_secret
#define __NR_memfd_secret 447 /* x86-64, arch/x86/entry/syscalls/syscall_64.tbl */
#endif
#ifndef SECRETMEM_MAGIC
#define SECRETMEM_MAGIC 0x5345434d /* include/uapi/linux/magic.h */
#endif

namespace xmem {

namespace {

struct attempt {
	unique_fd fd;
	std::error_code ec;
};

/* The only place that reads the kernel's memfd_exclusive marker. */
bool exclusive_marker_present() noexcept
{
	struct stat st;
	return ::stat(MEMFD_EXCLUSIVE_SYSFS_DIR, &st) == 0 && S_ISDIR(st.st_mode);
}

attempt create_exclusive(const std::string &name, bool allow_sealing) noexcept
{
	if (!probe_kernel().exclusive)
		return {unique_fd(), detail::errno_code(ENOSYS)};
	unsigned flags = MFD_EXCLUSIVE_CLOEXEC;
	if (allow_sealing)
		flags |= MFD_EXCLUSIVE_ALLOW_SEALING;
	unique_fd fd(static_cast<int>(::syscall(__NR_memfd_exclusive, name.c_str(), flags)));
	if (!fd)
		return {unique_fd(), detail::errno_code(errno)};
	return {std::move(fd), {}};
}

attempt create_secret() noexcept
{
	unique_fd fd(static_cast<int>(::syscall(__NR_memfd_secret, O_CLOEXEC)));
	if (!fd)
		return {unique_fd(), detail::errno_code(errno)};
	return {std::move(fd), {}};
}

/*
 * st_dev of the kernel-internal mount memfd_create(2) puts its files on:
 * shm_mnt (mm/shmem.c) or, with @huge, hugetlbfs's mount for the default
 * huge page size (MFD_HUGETLB, fs/hugetlbfs/inode.c). Probed with a memfd of
 * our own and cached once known; 0 when none could be made (EMFILE, no
 * hugetlbfs...), then asked again next time. 0 is never a tmpfs device
 * (get_anon_bdev() numbers from minor 1, fs/super.c).
 */
dev_t memfd_device(bool huge) noexcept
{
	static std::atomic<dev_t> known[2];
	dev_t dev = known[huge].load(std::memory_order_relaxed);
	if (dev)
		return dev;
	unique_fd fd(::memfd_create("xmem-probe", MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0u)));
	struct stat st;
	if (!fd || ::fstat(fd.get(), &st) < 0)
		return 0;
	known[huge].store(st.st_dev, std::memory_order_relaxed);
	return st.st_dev;
}

/*
 * Whether the tmpfs or hugetlbfs file @fd (fstat @st) is a memfd: its
 * /proc/self/fd link reads "/memfd:NAME (deleted)", it has no link to any
 * directory (st_nlink 0) and it lies on the internal mount (memfd_device()).
 * The name alone is not enough: a file named "memfd:x" at the root of a
 * lazily unmounted tmpfs (umount -l) reads the same, linked or unlinked
 * (review-peer finding 7); the device tells them apart. A hugetlbfs memfd of
 * a non-default page size (MFD_HUGE_1GB...) is refused.
 */
bool is_memfd(int fd, const struct stat &st, bool huge) noexcept
{
	if (st.st_nlink != 0 || st.st_dev == 0 || memfd_device(huge) != st.st_dev)
		return false;
	char link[64] = {};
	const std::string proc = "/proc/self/fd/" + std::to_string(fd);
	const ssize_t n = ::readlink(proc.c_str(), link, sizeof(link) - 1);
	return n > 7 && std::string_view(link, 7) == "/memfd:";
}

attempt create_ordinary(const std::string &name, bool allow_sealing) noexcept
{
	unsigned flags = MFD_CLOEXEC;
	if (allow_sealing)
		flags |= MFD_ALLOW_SEALING;
	unique_fd fd(::memfd_create(name.c_str(), flags));
	if (!fd)
		return {unique_fd(), detail::errno_code(errno)};
	return {std::move(fd), {}};
}

} // namespace

std::string_view to_string(backend b) noexcept
{
	switch (b) {
	case backend::exclusive:
		return "memfd_exclusive";
	case backend::secret:
		return "memfd_secret";
	case backend::ordinary:
		return "memfd_create";
	}
	return "unknown";
}

std::string to_string(seals s)
{
	static constexpr std::pair<unsigned, const char *> names[] = {
		{seals::seal, "seal"},	 {seals::shrink, "shrink"},
		{seals::grow, "grow"},	 {seals::write, "write"},
		{seals::future_write, "future_write"},
	};
	std::string out;
	for (const auto &[bit, name] : names) {
		if (!(s.bits() & bit))
			continue;
		if (!out.empty())
			out += '|';
		out += name;
	}
	return out.empty() ? "none" : out;
}

kernel_support probe_kernel() noexcept
{
	static const kernel_support cached = [] {
		kernel_support ks{exclusive_marker_present(), false};
		unique_fd probe(static_cast<int>(::syscall(__NR_memfd_secret, O_CLOEXEC)));
		ks.secret = probe.valid();
		return ks;
	}();
	return cached;
}

memory::memory(unique_fd fd, xmem::backend b, std::string name, std::size_t size) noexcept
	: fd_(std::move(fd)), backend_(b),
	  /* secretmem_setattr() refuses any size change once i_size is set. */
	  fixed_size_(b == xmem::backend::secret ? size : 0), name_(std::move(name))
{
}

memory memory::create(std::string_view name, std::size_t size, const create_options &opts,
		      std::error_code &ec) noexcept
{
	ec.clear();
	if (size == 0 || size > static_cast<std::size_t>(LLONG_MAX)) {
		ec = errc::invalid_size;
		return {};
	}
	if (name.size() > MFD_EXCLUSIVE_NAME_MAX_LEN || name.find('\0') != name.npos) {
		ec = errc::invalid_name;
		return {};
	}

	std::string cname;
	try {
		cname.assign(name);
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return {};
	}

	auto allowed = [&](xmem::backend b) {
		if (opts.require)
			return *opts.require == b;
		return b != xmem::backend::ordinary || opts.allow_ordinary_fallback;
	};

	attempt got;
	xmem::backend used = xmem::backend::exclusive;
	ec = errc::no_backend;
	for (xmem::backend b : {xmem::backend::exclusive, xmem::backend::secret,
				xmem::backend::ordinary}) {
		if (!allowed(b))
			continue;
		if (b == xmem::backend::exclusive)
			got = create_exclusive(cname, opts.allow_sealing);
		else if (b == xmem::backend::secret)
			got = create_secret();
		else
			got = create_ordinary(cname, opts.allow_sealing);
		if (got.fd) {
			used = b;
			ec.clear();
			break;
		}
		/* Only an absent backend lets us try the next one. */
		if (got.ec != std::errc::function_not_supported) {
			ec = got.ec;
			return {};
		}
	}
	if (ec)
		return {};

	if (::ftruncate(got.fd.get(), static_cast<off_t>(size)) < 0) {
		ec = errno == EFBIG ? make_error_code(errc::invalid_size) : detail::errno_code(errno);
		return {};
	}
	return memory(std::move(got.fd), used, std::move(cname), size);
}

memory memory::create(std::string_view name, std::size_t size, const create_options &opts)
{
	std::error_code ec;
	memory mem = create(name, size, opts, ec);
	if (!ec)
		return mem;

	std::string what = "creating " + std::to_string(size) + " bytes of exclusive memory '" +
			   std::string(name) + "'";
	if (ec == errc::no_backend) {
		kernel_support ks = probe_kernel();
		what += " (memfd_exclusive: ";
		what += ks.exclusive ? "present" : "absent, no " MEMFD_EXCLUSIVE_SYSFS_DIR;
		what += "; memfd_secret: ";
		what += ks.secret ? "present" : "ENOSYS";
		what += opts.require ? "; required backend " + std::string(to_string(*opts.require))
				     : std::string(opts.allow_ordinary_fallback
							   ? ""
							   : "; ordinary memory not allowed");
		what += ")";
	}
	throw std::system_error(ec, what);
}

memory memory::adopt(unique_fd fd, std::error_code &ec) noexcept
{
	std::size_t size;
	return adopt(std::move(fd), size, ec);
}

memory memory::adopt(unique_fd fd, std::size_t &size, std::error_code &ec) noexcept
{
	ec.clear();
	size = 0;
	struct stat st;
	struct statfs sfs;
	if (::fstat(fd.get(), &st) < 0 || ::fstatfs(fd.get(), &sfs) < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	if (!S_ISREG(st.st_mode)) {
		ec = errc::wrong_file_type;
		return {};
	}
	/*
	 * fstat and fstatfs answer for an O_PATH fd (open(2)) too, so the checks
	 * above and below pass for a handle that mmap(2) refuses (EBADF), as it
	 * refuses a write-only one (EACCES): not memory anyone can use.
	 */
	const int fl = ::fcntl(fd.get(), F_GETFL);
	if (fl < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	if ((fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY) {
		ec = errc::not_mappable;
		return {};
	}
	size = static_cast<std::size_t>(st.st_size);

	switch (static_cast<unsigned long>(sfs.f_type)) {
	case MEMFD_EXCLUSIVE_MAGIC:
		return memory(std::move(fd), xmem::backend::exclusive, {}, size);
	case SECRETMEM_MAGIC:
		return memory(std::move(fd), xmem::backend::secret, {}, size);
	case TMPFS_MAGIC:
	case HUGETLBFS_MAGIC:
		/* Only a memfd, not any tmpfs file. */
		if (is_memfd(fd.get(), st, sfs.f_type == HUGETLBFS_MAGIC))
			return memory(std::move(fd), xmem::backend::ordinary, {}, size);
		break;
	default:
		break;
	}
	ec = errc::wrong_file_type;
	return {};
}

std::size_t memory::size(std::error_code &ec) const noexcept
{
	ec.clear();
	if (fixed_size_ && fd_.valid()) /* released or moved from: fstat says EBADF, as before */
		return fixed_size_;
	struct stat st;
	if (::fstat(fd_.get(), &st) < 0) {
		ec = detail::errno_code(errno);
		return 0;
	}
	return static_cast<std::size_t>(st.st_size);
}

std::size_t memory::size() const
{
	std::error_code ec;
	std::size_t n = size(ec);
	detail::throw_if(ec, "fstat of exclusive memory");
	return n;
}

void memory::resize(std::size_t size, std::error_code &ec) noexcept
{
	ec.clear();
	if (size > static_cast<std::size_t>(LLONG_MAX)) {
		ec = errc::invalid_size;
		return;
	}
	if (::ftruncate(fd_.get(), static_cast<off_t>(size)) < 0) {
		ec = detail::errno_code(errno);
		return;
	}
	if (backend_ == xmem::backend::secret)
		fixed_size_ = size; /* set now, for good */
}

void memory::resize(std::size_t size)
{
	std::error_code ec;
	resize(size, ec);
	if (ec)
		throw std::system_error(ec, "resizing " + std::string(to_string(backend_)) +
						    " memory to " + std::to_string(size) + " bytes");
}

void memory::add_seals(xmem::seals s, std::error_code &ec) noexcept
{
	ec.clear();
	if (::fcntl(fd_.get(), F_ADD_SEALS, static_cast<int>(s.bits())) < 0)
		ec = detail::errno_code(errno);
}

void memory::add_seals(xmem::seals s)
{
	std::error_code ec;
	add_seals(s, ec);
	if (ec)
		throw std::system_error(ec, "adding seals " + to_string(s) + " to " +
						    std::string(to_string(backend_)) + " memory");
}

xmem::seals memory::current_seals(std::error_code &ec) const noexcept
{
	ec.clear();
	int bits = ::fcntl(fd_.get(), F_GET_SEALS);
	if (bits < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	return xmem::seals(static_cast<unsigned>(bits));
}

} // namespace xmem
