// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The attacks. Each returns succeeded/blocked with what it saw; where the
 * kernel refuses, docs/attacks.md names the kernel function. The attacker is
 * root (the suite runs as root), which helps every attack below that needs
 * PTRACE_MODE_ATTACH, CAP_SYS_RAWIO or CAP_SYS_ADMIN.
 */
#include "env.hpp"

#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace xattack {

namespace {

std::string n_bytes(ssize_t n)
{
	return std::to_string(n) + " bytes";
}

/* The common ending of a read attack: did @buf get the pattern? */
result judge_read(const std::string &how, const void *buf, std::size_t len, const pattern &pat)
{
	if (contains(buf, len, pat))
		return succeeded(how + ": pattern read");
	return blocked(how + ": succeeded but no pattern (" + n_bytes(static_cast<ssize_t>(len)) +
		       ")");
}

/* A pipe, both ends O_CLOEXEC. */
struct pipe_ends {
	xmem::unique_fd rd, wr;
};

pipe_ends make_pipe()
{
	int p[2];
	if (::pipe2(p, O_CLOEXEC) < 0)
		fail("pipe2");
	return {xmem::unique_fd(p[0]), xmem::unique_fd(p[1])};
}

/* The ending of an attack that moved @n bytes into @pipe: read them back and judge. */
result judge_pipe(const std::string &how, const pipe_ends &pipe, ssize_t n, const pattern &pat)
{
	std::vector<std::uint8_t> buf(static_cast<std::size_t>(n));
	ssize_t got = ::read(pipe.rd.get(), buf.data(), buf.size());
	if (got < 0)
		fail("read pipe");
	return judge_read(how, buf.data(), static_cast<std::size_t>(got), pat);
}

/* The common ending of a write attack: what the victim says of its memory. */
result judge_write(const std::string &how, victim &v)
{
	std::string s = v.state();
	if (s == "intact")
		return blocked(how + ": memory unchanged");
	return succeeded(how + ": victim memory " + s);
}

/* Cross-process access: GUP on another mm (mm/gup.c, check_vma_flags()). */

result process_vm_readv_attack(const target &t)
{
	victim v(t);
	std::vector<std::uint8_t> buf(v.size());
	struct iovec l = {buf.data(), buf.size()};
	struct iovec r = {reinterpret_cast<void *>(v.addr()), v.size()};
	ssize_t n = ::process_vm_readv(v.pid(), &l, 1, &r, 1, 0);
	if (n < 0)
		return blocked("process_vm_readv: " + errname(errno));
	return judge_read("process_vm_readv read " + n_bytes(n), buf.data(),
			  static_cast<std::size_t>(n), v.pat());
}

result process_vm_writev_attack(const target &t)
{
	victim v(t);
	std::vector<std::uint8_t> buf(pattern_len, overwrite_byte);
	struct iovec l = {buf.data(), buf.size()};
	struct iovec r = {reinterpret_cast<void *>(v.addr()), buf.size()};
	ssize_t n = ::process_vm_writev(v.pid(), &l, 1, &r, 1, 0);
	if (n < 0)
		return blocked("process_vm_writev: " + errname(errno) + ", victim memory " +
			       v.state());
	return judge_write("process_vm_writev wrote " + n_bytes(n), v);
}

xmem::unique_fd open_proc_mem(pid_t pid, int flags)
{
	std::string path = "/proc/" + std::to_string(pid) + "/mem";
	xmem::unique_fd fd(::open(path.c_str(), flags | O_CLOEXEC));
	if (!fd)
		fail("open " + path);
	return fd;
}

result proc_mem_read(const target &t)
{
	victim v(t);
	xmem::unique_fd fd = open_proc_mem(v.pid(), O_RDONLY);
	std::vector<std::uint8_t> buf(v.size());
	ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), static_cast<off_t>(v.addr()));
	if (n < 0)
		return blocked("pread /proc/PID/mem: " + errname(errno));
	return judge_read("pread /proc/PID/mem read " + n_bytes(n), buf.data(),
			  static_cast<std::size_t>(n), v.pat());
}

result proc_mem_write(const target &t)
{
	victim v(t);
	xmem::unique_fd fd = open_proc_mem(v.pid(), O_RDWR);
	std::vector<std::uint8_t> buf(pattern_len, overwrite_byte);
	ssize_t n = ::pwrite(fd.get(), buf.data(), buf.size(), static_cast<off_t>(v.addr()));
	if (n < 0)
		return blocked("pwrite /proc/PID/mem: " + errname(errno) + ", victim memory " +
			       v.state());
	return judge_write("pwrite /proc/PID/mem wrote " + n_bytes(n), v);
}

/* Stops @pid under ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT); detaches on scope exit. */
class traced
{
public:
	explicit traced(pid_t pid) : pid_(pid)
	{
		if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) < 0)
			fail("PTRACE_SEIZE");
		if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) < 0)
			fail("PTRACE_INTERRUPT");
		int st;
		if (::waitpid(pid, &st, __WALL) < 0 || !WIFSTOPPED(st))
			fail(ECHILD, "victim did not stop under ptrace");
	}
	~traced() { ::ptrace(PTRACE_DETACH, pid_, nullptr, nullptr); }
	traced(const traced &) = delete;
	traced &operator=(const traced &) = delete;

private:
	pid_t pid_;
};

result ptrace_peekdata(const target &t)
{
	victim v(t);
	std::vector<std::uint8_t> buf(pattern_len);
	{
		traced tr(v.pid());
		for (std::size_t i = 0; i < buf.size(); i += sizeof(long)) {
			errno = 0;
			long w = ::ptrace(PTRACE_PEEKDATA, v.pid(),
					  reinterpret_cast<void *>(v.addr() + i), nullptr);
			if (errno)
				return blocked("PTRACE_PEEKDATA: " + errname(errno));
			std::memcpy(buf.data() + i, &w, sizeof(w));
		}
	}
	return judge_read("PTRACE_PEEKDATA x8", buf.data(), buf.size(), v.pat());
}

result ptrace_pokedata(const target &t)
{
	victim v(t);
	{
		traced tr(v.pid());
		long w;
		std::memset(&w, overwrite_byte, sizeof(w));
		for (std::size_t i = 0; i < pattern_len; i += sizeof(long)) {
			if (::ptrace(PTRACE_POKEDATA, v.pid(), reinterpret_cast<void *>(v.addr() + i),
				     reinterpret_cast<void *>(w)) < 0) {
				int e = errno;
				return blocked("PTRACE_POKEDATA: " + errname(e));
			}
		}
	}
	return judge_write("PTRACE_POKEDATA x8", v);
}

/* Taking the fd itself: the holder of an fd can map it. */

result map_and_read(const std::string &how, int fd, const victim &v)
{
	void *p = ::mmap(nullptr, v.size(), PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return blocked(how + ", then mmap: " + errname(errno));
	result r = judge_read(how + ", mmap", p, v.size(), v.pat());
	::munmap(p, v.size());
	return r;
}

result pidfd_getfd_mmap(const target &t)
{
	victim v(t);
	xmem::unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, v.pid(), 0)));
	if (!pidfd)
		fail("pidfd_open");
	xmem::unique_fd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), v.fd(), 0)));
	if (!fd)
		return blocked("pidfd_getfd: " + errname(errno));
	result r = map_and_read("pidfd_getfd", fd.get(), v);
	if (r.out == outcome::succeeded && t.backend == xmem::backend::secret &&
	    !xmem::probe_kernel().exclusive) {
		/* kernel/patches/0008: __pidfd_fget() refuses AS_NO_DIRECT_MAP files. */
		r.known_gap = true;
		r.detail += " (stock kernel: pidfd_getfd() checks only ptrace access; the xmem "
			    "kernel refuses it, kernel/patches/0008)";
	}
	return r;
}

result proc_fd_reopen_mmap(const target &t)
{
	victim v(t);
	std::string path = "/proc/" + std::to_string(v.pid()) + "/fd/" + std::to_string(v.fd());
	xmem::unique_fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
	if (!fd)
		return blocked("open /proc/PID/fd/N: " + errname(errno));
	return map_and_read("open /proc/PID/fd/N", fd.get(), v);
}

/* Through physical memory. */

result kcore_direct_map(const target &t)
{
	std::string why;
	auto kc = kcore::open(why);
	if (!kc)
		return not_applicable(why);
	victim v(t);
	std::string seen;
	bool found = false;
	for (std::size_t off = 0; off < v.size(); off += page_size()) {
		auto pfn = pfn_of(v.pid(), v.addr() + off, why);
		if (!pfn)
			fail(EINVAL, "pagemap: " + why);
		auto r = kc->read_phys(*pfn * page_size());
		if (!r.ok)
			return blocked("pread /proc/kcore: " + errname(r.err));
		bool zero = std::all_of(r.bytes.begin(), r.bytes.end(), [](auto b) { return !b; });
		found = found || contains(r.bytes.data(), r.bytes.size(), v.pat());
		if (seen.empty())
			seen = "pfn " + hexaddr(*pfn) + " at " + hexaddr(r.vaddr) +
			       " (page_offset_base " + hexaddr(r.page_offset_base) + "): " +
			       (zero ? "all zero" : "data");
	}
	if (found)
		return succeeded("/proc/kcore " + seen + ", pattern found");
	return blocked("/proc/kcore " + seen + ", no pattern");
}

/*
 * The set-up of the /dev/mem attacks: /dev/mem opened read-only (an invalid
 * fd when the kernel has none, CONFIG_DEVMEM off), and the page frame of the
 * victim's first page from /proc/PID/pagemap.
 */
xmem::unique_fd open_dev_mem()
{
	xmem::unique_fd fd(::open("/dev/mem", O_RDONLY | O_CLOEXEC));
	if (!fd && errno != ENOENT)
		fail("open /dev/mem");
	return fd;
}

std::uint64_t first_pfn(const victim &v)
{
	std::string why;
	auto pfn = pfn_of(v.pid(), v.addr(), why);
	if (!pfn)
		fail(EINVAL, "pagemap: " + why);
	return *pfn;
}

result dev_mem(const target &t)
{
	xmem::unique_fd fd = open_dev_mem();
	if (!fd)
		return not_applicable("no /dev/mem: CONFIG_DEVMEM is not set in this kernel");
	victim v(t);
	std::uint64_t pfn = first_pfn(v);
	std::vector<std::uint8_t> buf(page_size());
	ssize_t n = ::pread(fd.get(), buf.data(), buf.size(),
			    static_cast<off_t>(pfn * page_size()));
	if (n < 0) {
		int e = errno;
		if (e == EPERM && t.control())
			return not_applicable("refused-by-kernel-config: /dev/mem read of RAM: EPERM "
					      "(CONFIG_STRICT_DEVMEM)");
		return blocked("pread /dev/mem: " + errname(e) +
			       (e == EPERM ? " (refused-by-kernel-config: CONFIG_STRICT_DEVMEM)" : ""));
	}
	return judge_read("pread /dev/mem at pfn " + hexaddr(pfn), buf.data(),
			  static_cast<std::size_t>(n), v.pat());
}

/*
 * The same page mapped through /dev/mem instead of read: mmap_mem() maps PFNs
 * with remap_pfn_range(), direct map or not (found by the hostile-user review
 * of 2026-12-01). kernel/patches/0007 refuses PFNs of unmapped pageblocks;
 * CONFIG_STRICT_DEVMEM refuses all RAM.
 */
result dev_mem_mmap(const target &t)
{
	xmem::unique_fd fd = open_dev_mem();
	if (!fd)
		return not_applicable("no /dev/mem: CONFIG_DEVMEM is not set in this kernel");
	victim v(t);
	std::uint64_t pfn = first_pfn(v);
	void *p = ::mmap(nullptr, page_size(), PROT_READ, MAP_SHARED, fd.get(),
			 static_cast<off_t>(pfn * page_size()));
	if (p == MAP_FAILED) {
		int e = errno;
		if (e == EPERM && t.control())
			return not_applicable("refused-by-kernel-config: /dev/mem mmap of RAM: EPERM "
					      "(CONFIG_STRICT_DEVMEM)");
		return blocked("mmap /dev/mem: " + errname(e));
	}
	result r = judge_read("mmap /dev/mem at pfn " + hexaddr(pfn), p, page_size(), v.pat());
	::munmap(p, page_size());
	if (r.out == outcome::succeeded && t.backend == xmem::backend::secret) {
		/* secretmem's single pages are not in the unmapped pageblocks kernel/patches/0007 refuses. */
		r.known_gap = true;
		r.detail += " (memfd_secret pages are not in MIGRATE_UNMAPPED pageblocks, which "
			    "kernel/patches/0007 refuses; CONFIG_STRICT_DEVMEM refuses all RAM)";
	}
	return r;
}

result kcore_after_release(const target &t)
{
	std::string why;
	auto kc = kcore::open(why);
	if (!kc)
		return not_applicable(why);
	std::vector<std::uint64_t> pfns;
	pattern pat;
	{
		victim v(t);
		pat = v.pat();
		for (std::size_t off = 0; off < v.size(); off += page_size()) {
			auto pfn = pfn_of(v.pid(), v.addr() + off, why);
			if (!pfn)
				fail(EINVAL, "pagemap: " + why);
			pfns.push_back(*pfn);
		}
		v.quit(); /* munmap, close: the pages are freed */
	}
	std::string seen;
	bool found = false;
	for (auto pfn : pfns) {
		auto r = kc->read_phys(pfn * page_size());
		if (!r.ok)
			return blocked("pread /proc/kcore: " + errname(r.err));
		bool zero = std::all_of(r.bytes.begin(), r.bytes.end(), [](auto b) { return !b; });
		found = found || contains(r.bytes.data(), r.bytes.size(), pat);
		if (!seen.empty())
			seen += "; ";
		seen += hexaddr(r.vaddr) + (zero ? " all zero" : " data");
	}
	if (found)
		return succeeded("after release, /proc/kcore " + seen + ": pattern found");
	return blocked("after release, /proc/kcore " + seen + ": no pattern");
}

/* The memory as the buffer of I/O that pins pages (GUP). */

result vmsplice_attack(const target &t)
{
	region r(t);
	r.fill();
	pipe_ends pipe = make_pipe();
	struct iovec iov = {r.data(), r.size()};
	ssize_t n = ::vmsplice(pipe.wr.get(), &iov, 1, 0);
	if (n < 0)
		return blocked("vmsplice: " + errname(errno));
	return judge_pipe("vmsplice spliced " + n_bytes(n), pipe, n, r.pat());
}

result splice_from_fd(const target &t)
{
	region r(t);
	r.fill();
	pipe_ends pipe = make_pipe();
	loff_t off = 0;
	ssize_t n = ::splice(r.fd(), &off, pipe.wr.get(), nullptr, r.size(), 0);
	if (n < 0)
		return blocked("splice from the fd: " + errname(errno));
	return judge_pipe("splice moved " + n_bytes(n), pipe, n, r.pat());
}

result sendfile_from_fd(const target &t)
{
	scratch_dir dir;
	region r(t);
	r.fill();
	xmem::unique_fd out = scratch_file(dir.path(), 0);
	off_t off = 0;
	ssize_t n = ::sendfile(out.get(), r.fd(), &off, r.size());
	if (n < 0)
		return blocked("sendfile from the fd: " + errname(errno));
	std::vector<std::uint8_t> buf(r.size());
	ssize_t got = ::pread(out.get(), buf.data(), buf.size(), 0);
	if (got < 0)
		fail("read scratch file");
	return judge_read("sendfile copied " + n_bytes(n), buf.data(),
			  static_cast<std::size_t>(got), r.pat());
}

result read_fd(const target &t)
{
	region r(t);
	r.fill();
	std::vector<std::uint8_t> buf(r.size());
	ssize_t n = ::pread(r.fd(), buf.data(), buf.size(), 0);
	if (n < 0)
		return blocked("pread on the fd: " + errname(errno));
	return judge_read("pread on the fd read " + n_bytes(n), buf.data(),
			  static_cast<std::size_t>(n), r.pat());
}

result odirect_write(const target &t)
{
	scratch_dir dir;
	std::string why;
	auto loop = make_loop(dir.path(), 1 << 20, why);
	if (!loop)
		return not_applicable(why);
	region r(t);
	r.fill();
	ssize_t n = ::pwrite(loop->dev.get(), r.data(), r.size(), 0);
	if (n < 0)
		return blocked("O_DIRECT pwrite to " + loop->path + ": " + errname(errno));
	std::vector<std::uint8_t> buf(r.size());
	if (::pread(loop->backing.get(), buf.data(), buf.size(), 0) < 0)
		fail("read loop backing file");
	return judge_read("O_DIRECT pwrite to " + loop->path + " wrote " + n_bytes(n), buf.data(),
			  buf.size(), r.pat());
}

/* Fills @fd's first @len bytes with a fresh pattern; returns it. */
pattern file_pattern(int fd, std::size_t len)
{
	std::vector<std::uint8_t> buf(len);
	fill_pattern(buf.data(), len);
	if (::pwrite(fd, buf.data(), len, 0) != static_cast<ssize_t>(len))
		fail("write scratch file");
	pattern p;
	std::memcpy(p.data(), buf.data(), p.size());
	return p;
}

result odirect_read(const target &t)
{
	scratch_dir dir;
	std::string why;
	auto loop = make_loop(dir.path(), 1 << 20, why);
	if (!loop)
		return not_applicable(why);
	region r(t);
	r.fill();
	pattern disk = file_pattern(loop->backing.get(), r.size());
	ssize_t n = ::pread(loop->dev.get(), r.data(), r.size(), 0);
	if (n < 0)
		return blocked("O_DIRECT pread from " + loop->path + ": " + errname(errno));
	if (contains(r.data(), r.size(), disk))
		return succeeded("O_DIRECT pread from " + loop->path + " read " + n_bytes(n) +
				 " into the memory");
	return blocked("O_DIRECT pread returned " + n_bytes(n) + " but the memory is unchanged");
}

/* io_uring registered buffers (io_uring/rsrc.c, io_sqe_buffer_register()). */

class ring
{
public:
	ring()
	{
		int e = ::io_uring_queue_init(4, &ring_, 0);
		if (e < 0)
			err_ = -e;
		else
			ok_ = true;
	}
	~ring()
	{
		if (ok_)
			::io_uring_queue_exit(&ring_);
	}
	ring(const ring &) = delete;
	ring &operator=(const ring &) = delete;
	[[nodiscard]] bool ok() const noexcept { return ok_; }
	[[nodiscard]] int err() const noexcept { return err_; }
	struct io_uring *get() noexcept { return &ring_; }

	/* Runs one prepared SQE; its cqe->res. */
	int run()
	{
		if (::io_uring_submit(&ring_) != 1)
			fail(EIO, "io_uring_submit");
		struct io_uring_cqe *cqe;
		int e = ::io_uring_wait_cqe(&ring_, &cqe);
		if (e < 0)
			fail(-e, "io_uring_wait_cqe");
		int res = cqe->res;
		::io_uring_cqe_seen(&ring_, cqe);
		return res;
	}

private:
	struct io_uring ring_ = {};
	bool ok_ = false;
	int err_ = 0;
};

std::string ring_na(int err)
{
	return "io_uring_queue_init: " + errname(err) +
	       " (CONFIG_IO_URING off or kernel.io_uring_disabled set)";
}

result io_uring_register(const target &t)
{
	ring rg;
	if (!rg.ok())
		return not_applicable(ring_na(rg.err()));
	region r(t);
	r.fill();
	struct iovec iov = {r.data(), r.size()};
	int e = ::io_uring_register_buffers(rg.get(), &iov, 1);
	if (e < 0)
		return blocked("io_uring_register_buffers: " + errname(-e));
	return succeeded("io_uring_register_buffers: registered (pages pinned)");
}

result io_uring_fixed_write(const target &t)
{
	ring rg;
	if (!rg.ok())
		return not_applicable(ring_na(rg.err()));
	scratch_dir dir;
	xmem::unique_fd file = scratch_file(dir.path(), 0);
	region r(t);
	r.fill();
	struct iovec iov = {r.data(), r.size()};
	int e = ::io_uring_register_buffers(rg.get(), &iov, 1);
	if (e < 0)
		return blocked("no fixed write possible: io_uring_register_buffers: " +
			       errname(-e));
	::io_uring_prep_write_fixed(::io_uring_get_sqe(rg.get()), file.get(), r.data(),
				    static_cast<unsigned>(r.size()), 0, 0);
	int res = rg.run();
	if (res < 0)
		return blocked("IORING_OP_WRITE_FIXED: " + errname(-res));
	std::vector<std::uint8_t> buf(r.size());
	if (::pread(file.get(), buf.data(), buf.size(), 0) < 0)
		fail("read scratch file");
	return judge_read("IORING_OP_WRITE_FIXED wrote " + n_bytes(res), buf.data(), buf.size(),
			  r.pat());
}

result io_uring_fixed_read(const target &t)
{
	ring rg;
	if (!rg.ok())
		return not_applicable(ring_na(rg.err()));
	scratch_dir dir;
	xmem::unique_fd file = scratch_file(dir.path(), region_size());
	region r(t);
	r.fill();
	pattern disk = file_pattern(file.get(), r.size());
	struct iovec iov = {r.data(), r.size()};
	int e = ::io_uring_register_buffers(rg.get(), &iov, 1);
	if (e < 0)
		return blocked("no fixed read possible: io_uring_register_buffers: " +
			       errname(-e));
	::io_uring_prep_read_fixed(::io_uring_get_sqe(rg.get()), file.get(), r.data(),
				   static_cast<unsigned>(r.size()), 0, 0);
	int res = rg.run();
	if (res < 0)
		return blocked("IORING_OP_READ_FIXED: " + errname(-res));
	if (contains(r.data(), r.size(), disk))
		return succeeded("IORING_OP_READ_FIXED read " + n_bytes(res) + " into the memory");
	return blocked("IORING_OP_READ_FIXED returned " + n_bytes(res) +
		       " but the memory is unchanged");
}

/* Core dump of the owner (fs/coredump.c, vma_dump_size()). */

std::string read_text(const char *path)
{
	std::ifstream f(path);
	std::stringstream ss;
	ss << f.rdbuf();
	std::string s = ss.str();
	while (!s.empty() && s.back() == '\n')
		s.pop_back();
	return s;
}

result core_dump(const target &t)
{
	std::string cp = read_text("/proc/sys/kernel/core_pattern");
	/* A relative core_pattern names a file in the dumping process's cwd. */
	if (cp.empty() || cp[0] == '|' || cp.find('/') != std::string::npos)
		return not_applicable("kernel.core_pattern is '" + cp +
				      "' (a pipe or a path): this suite needs a relative name "
				      "such as 'core' and does not change the system's setting");
	scratch_dir dir;
	victim_options opts;
	opts.core_dir = dir.path();
	victim v(t, opts);
	pattern pat = v.pat();
	int st = v.kill_wait(SIGSEGV);
	if (!WIFSIGNALED(st) || !WCOREDUMP(st))
		fail(EIO, "victim did not dump core (core_pattern '" + cp + "')");
	std::string core;
	if (DIR *d = ::opendir(dir.path().c_str())) {
		while (struct dirent *e = ::readdir(d))
			if (e->d_name[0] != '.')
				core = dir.path() + "/" + e->d_name;
		::closedir(d);
	}
	if (core.empty())
		fail(ENOENT, "no core file in " + dir.path());
	std::ifstream f(core, std::ios::binary);
	std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
	std::string how = "core file " + std::to_string(bytes.size()) + " bytes";
	if (contains(bytes.data(), bytes.size(), pat))
		return succeeded(how + ": pattern found");
	return blocked(how + ": no pattern");
}

/* fork and exec. */

/* Forks a child that compares @r's memory at its address with the pattern. */
result child_reads(const region &r, const std::string &how)
{
	std::fflush(nullptr);
	pid_t pid = ::fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0)
		_exit(std::memcmp(r.data(), r.pat().data(), pattern_len) == 0 ? 0 : 3);
	int st;
	if (::waitpid(pid, &st, 0) < 0)
		fail("waitpid");
	if (WIFSIGNALED(st))
		return blocked(how + ": child killed by " + sigabbrev_np(WTERMSIG(st)) +
			       " reading the address");
	if (WEXITSTATUS(st) == 0)
		return succeeded(how + ": child read the pattern");
	return blocked(how + ": child read other data");
}

result fork_child_read(const target &t)
{
	region r(t);
	r.fill();
	return child_reads(r, t.control() ? "control mapping without MADV_DONTFORK"
					  : "mapping as libxmem makes it (MADV_DONTFORK)");
}

result fork_child_read_inherited(const target &t)
{
	region r(t);
	r.fill();
	if (!t.control() && ::madvise(r.data(), r.size(), MADV_DOFORK) < 0)
		fail("madvise(MADV_DOFORK)");
	result res = child_reads(r, "MADV_DOFORK: the kernel's rules alone");
	if (res.out == outcome::succeeded && !t.control()) {
		res.by_design = true;
		res.detail += " (the backend does not set VM_DONTCOPY: a fork child is the owner's "
			      "own program; libxmem maps with MADV_DONTFORK, see fork_child_read)";
	}
	return res;
}

result exec_read(const target &t)
{
	region r(t, /*cloexec=*/!t.control());
	r.fill();
	int p[2];
	if (::pipe2(p, O_CLOEXEC) < 0)
		fail("pipe2");
	xmem::unique_fd rd(p[0]), wr(p[1]);
	std::string fd = std::to_string(r.fd());
	std::string addr = std::to_string(reinterpret_cast<std::uintptr_t>(r.data()));
	std::string size = std::to_string(r.size());
	std::string pat = hex(r.pat().data(), pattern_len);
	std::fflush(nullptr);
	pid_t pid = ::fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0) {
		::dup2(wr.get(), STDOUT_FILENO);
		const char *argv[] = {"xmem-attack-suite", "--exec-probe", fd.c_str(), addr.c_str(),
				      size.c_str(), pat.c_str(), nullptr};
		::execv("/proc/self/exe", const_cast<char **>(argv));
		_exit(127);
	}
	wr = xmem::unique_fd();
	std::string out;
	char buf[512];
	ssize_t n;
	while ((n = ::read(rd.get(), buf, sizeof(buf))) > 0)
		out.append(buf, static_cast<std::size_t>(n));
	int st;
	::waitpid(pid, &st, 0);
	while (!out.empty() && out.back() == '\n')
		out.pop_back();
	std::string how = std::string(t.control() ? "fd without FD_CLOEXEC" : "fd O_CLOEXEC") +
			  ", after exec: " + out;
	if (!WIFEXITED(st) || WEXITSTATUS(st) > 1)
		fail(EIO, "exec probe failed: " + how);
	return WEXITSTATUS(st) == 0 ? succeeded(how) : blocked(how);
}

/* The owner's own mappings: MAP_SHARED only, never executable. */

result map_private(const target &t)
{
	region r(t);
	r.fill();
	void *p = ::mmap(nullptr, r.size(), PROT_READ, MAP_PRIVATE, r.fd(), 0);
	if (p == MAP_FAILED)
		return blocked("mmap MAP_PRIVATE: " + errname(errno));
	result res = judge_read("mmap MAP_PRIVATE", p, r.size(), r.pat());
	::munmap(p, r.size());
	return res;
}

result mmap_prot_exec(const target &t)
{
	region r(t);
	r.fill();
	void *p = ::mmap(nullptr, r.size(), PROT_READ | PROT_EXEC, MAP_SHARED, r.fd(), 0);
	if (p == MAP_FAILED)
		return blocked("mmap PROT_EXEC: " + errname(errno));
	::munmap(p, r.size());
	return succeeded("mmap PROT_READ|PROT_EXEC MAP_SHARED: mapped executable");
}

result mprotect_exec(const target &t)
{
	region r(t);
	r.fill();
	if (::mprotect(r.data(), r.size(), PROT_READ | PROT_EXEC) < 0)
		return blocked("mprotect PROT_EXEC: " + errname(errno));
	return succeeded("mprotect PROT_READ|PROT_EXEC: mapping made executable");
}

result mremap_grow(const target &t)
{
	region r(t);
	r.fill();
	std::size_t ps = page_size();
	void *p = ::mmap(nullptr, ps, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd(), 0);
	if (p == MAP_FAILED)
		fail("mmap one page");
	void *q = ::mremap(p, ps, 2 * ps, MREMAP_MAYMOVE);
	if (q == MAP_FAILED) {
		int e = errno;
		::munmap(p, ps);
		return blocked("mremap grow: " + errname(e));
	}
	/* Does the grown mapping keep the backend's rules? GUP on it, from ourselves. */
	std::vector<std::uint8_t> buf(2 * ps);
	struct iovec l = {buf.data(), buf.size()};
	struct iovec rr = {q, 2 * ps};
	ssize_t n = ::process_vm_readv(::getpid(), &l, 1, &rr, 1, 0);
	int e = errno;
	::munmap(q, 2 * ps);
	if (n < 0)
		return blocked("mremap grew 1->2 pages; GUP on it (process_vm_readv): " +
			       errname(e));
	return judge_read("mremap grew 1->2 pages; process_vm_readv read " + n_bytes(n),
			  buf.data(), static_cast<std::size_t>(n), r.pat());
}

constexpr attack all[] = {
	{"process_vm_readv", "process_vm_readv of a victim", process_vm_readv_attack},
	{"process_vm_writev", "process_vm_writev into a victim", process_vm_writev_attack},
	{"proc_mem_read", "read /proc/PID/mem", proc_mem_read},
	{"proc_mem_write", "write /proc/PID/mem", proc_mem_write},
	{"ptrace_peekdata", "ptrace PEEKDATA", ptrace_peekdata},
	{"ptrace_pokedata", "ptrace POKEDATA", ptrace_pokedata},
	{"pidfd_getfd_mmap", "pidfd_getfd the victim's fd, mmap it", pidfd_getfd_mmap},
	{"proc_fd_reopen_mmap", "open /proc/PID/fd/N, mmap it", proc_fd_reopen_mmap},
	{"kcore_direct_map", "/proc/kcore at the page's direct-map address", kcore_direct_map},
	{"dev_mem", "/dev/mem at the page's physical address", dev_mem},
	{"dev_mem_mmap", "mmap /dev/mem at the page's physical address", dev_mem_mmap},
	{"vmsplice", "vmsplice the memory into a pipe", vmsplice_attack},
	{"splice_from_fd", "splice from the fd", splice_from_fd},
	{"sendfile_from_fd", "sendfile from the fd", sendfile_from_fd},
	{"read_fd", "pread(2) on the fd", read_fd},
	{"odirect_write", "O_DIRECT write from the memory (loop device)", odirect_write},
	{"odirect_read", "O_DIRECT read into the memory (loop device)", odirect_read},
	{"io_uring_register", "io_uring_register_buffers on the mapping", io_uring_register},
	{"io_uring_fixed_write", "io_uring WRITE_FIXED from the memory", io_uring_fixed_write},
	{"io_uring_fixed_read", "io_uring READ_FIXED into the memory", io_uring_fixed_read},
	{"core_dump", "core dump of the owner (kill -SEGV)", core_dump},
	{"fork_child_read", "fork: child reads the address", fork_child_read},
	{"fork_child_read_inherited", "fork: child reads the address, MADV_DOFORK (kernel only)",
	 fork_child_read_inherited},
	{"exec_read", "exec: new image reads the address or the fd", exec_read},
	{"map_private", "mmap MAP_PRIVATE", map_private},
	{"mmap_prot_exec", "mmap PROT_EXEC", mmap_prot_exec},
	{"mprotect_exec", "mprotect to PROT_EXEC", mprotect_exec},
	{"mremap_grow", "mremap to grow, then GUP on it", mremap_grow},
	{"kcore_after_release", "/proc/kcore at the old direct-map address after release",
	 kcore_after_release},
};

} // namespace

std::span<const attack> attacks()
{
	return all;
}

/*
 * xmem-attack-suite --exec-probe FD ADDR SIZE PATTERN: the image a child of
 * the owner execs (attack exec_read). Exit 0 when it reads the pattern at
 * ADDR or through FD, 1 when it cannot; stdout says what it tried.
 */
int exec_probe(int argc, char **argv)
{
	if (argc != 6)
		return 2;
	int fd = std::atoi(argv[2]);
	auto addr = static_cast<std::uintptr_t>(std::strtoull(argv[3], nullptr, 10));
	auto size = static_cast<std::size_t>(std::strtoull(argv[4], nullptr, 10));
	std::string want = argv[5];
	auto matches = [&](const void *p) { return hex(p, pattern_len) == want; };

	/* First, before this image opens anything that could take the fd's number. */
	int fd_err = ::fcntl(fd, F_GETFD) < 0 ? errno : 0;
	/* The old address: write(2) from it fails with EFAULT when nothing is mapped there. */
	std::string at_addr;
	int p[2];
	if (::pipe(p) < 0)
		return 2;
	if (::write(p[1], reinterpret_cast<void *>(addr), pattern_len) < 0) {
		at_addr = "address " + errname(errno);
	} else {
		std::uint8_t b[pattern_len];
		if (::read(p[0], b, sizeof(b)) != sizeof(b))
			return 2;
		if (matches(b)) {
			std::printf("pattern at the old address\n");
			return 0;
		}
		at_addr = "address holds other data";
	}
	if (fd_err) {
		std::printf("%s; fd %s\n", at_addr.c_str(), errname(fd_err).c_str());
		return 1;
	}
	void *m = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		std::printf("%s; fd open, mmap %s\n", at_addr.c_str(), errname(errno).c_str());
		return 1;
	}
	bool ok = matches(m);
	std::printf("%s; fd open, mmap: %s\n", at_addr.c_str(),
		    ok ? "pattern read" : "other data");
	return ok ? 0 : 1;
}

} // namespace xattack
