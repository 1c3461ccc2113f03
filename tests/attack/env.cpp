// SPDX-License-Identifier: LGPL-2.1-or-later
#include "env.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>

namespace xattack {

std::string errname(int err)
{
	const char *n = ::strerrorname_np(err);
	return n ? n : "errno " + std::to_string(err);
}

std::size_t page_size()
{
	static const std::size_t ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
	return ps;
}

std::size_t region_size()
{
	return 2 * page_size();
}

void fail(int err, const std::string &what)
{
	throw std::system_error(err, std::generic_category(), what);
}

void fail(const std::string &what)
{
	fail(errno, what);
}

bool contains(const void *p, std::size_t len, const pattern &pat)
{
	return ::memmem(p, len, pat.data(), pat.size()) != nullptr;
}

std::string hex(const void *p, std::size_t len)
{
	static const char digits[] = "0123456789abcdef";
	std::string s;
	const auto *b = static_cast<const std::uint8_t *>(p);
	for (std::size_t i = 0; i < len; i++) {
		s += digits[b[i] >> 4];
		s += digits[b[i] & 15];
	}
	return s;
}

std::string hexaddr(std::uint64_t v)
{
	char buf[24];
	std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(v));
	return buf;
}

void fill_pattern(void *p, std::size_t len)
{
	auto *b = static_cast<std::uint8_t *>(p);
	std::size_t got = 0;
	while (got < pattern_len) {
		ssize_t n = ::getrandom(b + got, pattern_len - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail("getrandom into the target memory");
		}
		got += static_cast<std::size_t>(n);
	}
	volatile std::uint8_t *v = b;
	for (std::size_t i = pattern_len; i < len; i++)
		v[i] = v[i % pattern_len];
}

/* region */

region::region(const target &t, bool cloexec)
{
	xmem::create_options opts;
	opts.require = t.backend;
	mem_ = xmem::memory::create("xmem-attack", region_size(), opts);
	size_ = region_size();
	if (t.control()) {
		if (!cloexec && ::fcntl(mem_.fd().get(), F_SETFD, 0) < 0)
			fail("fcntl(F_SETFD, 0) on the control memfd");
		void *p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED,
				 mem_.fd().get(), 0);
		if (p == MAP_FAILED)
			fail("mmap of the control memfd");
		raw_ = static_cast<std::uint8_t *>(p);
		data_ = raw_;
	} else {
		lib_ = xmem::mapping::map(mem_, xmem::access::read_write);
		data_ = reinterpret_cast<std::uint8_t *>(lib_.data());
	}
}

region::~region()
{
	release();
}

void region::fill()
{
	fill_pattern(data_, size_);
	std::memcpy(pat_.data(), data_, pattern_len);
}

void region::release() noexcept
{
	if (raw_)
		::munmap(raw_, size_);
	raw_ = nullptr;
	lib_.unmap();
	data_ = nullptr;
	mem_ = xmem::memory();
}

/* victim */

namespace {

struct hello {
	std::uint64_t addr;
	std::uint64_t size;
	std::int32_t fd;
	std::int32_t err; /* nonzero: setup failed, msg says how */
	char msg[240];
};

void write_all(int fd, const void *p, std::size_t n)
{
	const auto *b = static_cast<const char *>(p);
	while (n) {
		ssize_t w = ::write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fail("write to pipe");
		b += w;
		n -= static_cast<std::size_t>(w);
	}
}

bool read_all(int fd, void *p, std::size_t n)
{
	auto *b = static_cast<char *>(p);
	while (n) {
		ssize_t r = ::read(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		b += r;
		n -= static_cast<std::size_t>(r);
	}
	return true;
}

[[noreturn]] void victim_main(const target &t, const victim_options &opts, int cmd, int reply)
{
	static const std::uint8_t zeros[pattern_len] = {};
	hello h{};
	try {
		::prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (!opts.core_dir.empty()) {
			if (::chdir(opts.core_dir.c_str()) < 0)
				fail("chdir " + opts.core_dir);
			struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
			if (::setrlimit(RLIMIT_CORE, &rl) < 0)
				fail("setrlimit(RLIMIT_CORE, unlimited)");
			if (::prctl(PR_SET_DUMPABLE, 1) < 0)
				fail("prctl(PR_SET_DUMPABLE, 1)");
		}
		region r(t);
		fill_pattern(r.data(), r.size());
		h.addr = reinterpret_cast<std::uintptr_t>(r.data());
		h.size = r.size();
		h.fd = r.fd();
		/* The pattern goes from the mapping to the pipe, nowhere else. */
		struct iovec iov[2] = {{&h, sizeof(h)}, {r.data(), pattern_len}};
		if (::writev(reply, iov, 2) != static_cast<ssize_t>(sizeof(h) + pattern_len))
			_exit(2);
		for (;;) {
			char c;
			if (!read_all(cmd, &c, 1))
				_exit(0);
			if (c == 'q') {
				r.release();
				_exit(0);
			}
			if (c != 's')
				_exit(3);
			const std::uint8_t *d = r.data();
			char answer = 'i';
			for (std::size_t i = pattern_len; i < r.size(); i += pattern_len)
				if (std::memcmp(d, d + i, pattern_len) != 0)
					answer = 'c';
			if (answer == 'c' &&
			    std::all_of(d, d + pattern_len, [](auto b) { return b == overwrite_byte; }))
				answer = 'o';
			write_all(reply, &answer, 1);
		}
	} catch (const std::exception &e) {
		h.err = 1;
		std::snprintf(h.msg, sizeof(h.msg), "%s", e.what());
		struct iovec iov[2] = {{&h, sizeof(h)}, {const_cast<std::uint8_t *>(zeros), pattern_len}};
		(void)::writev(reply, iov, 2);
		_exit(1);
	}
}

} // namespace

victim::victim(const target &t, const victim_options &opts)
{
	int cmd[2], reply[2];
	if (::pipe2(cmd, O_CLOEXEC) < 0)
		fail("pipe2");
	if (::pipe2(reply, O_CLOEXEC) < 0) {
		int e = errno;
		::close(cmd[0]);
		::close(cmd[1]);
		fail(e, "pipe2");
	}
	std::fflush(nullptr);
	pid_ = ::fork();
	if (pid_ < 0)
		fail("fork a victim");
	if (pid_ == 0) {
		::close(cmd[1]);
		::close(reply[0]);
		victim_main(t, opts, cmd[0], reply[1]);
	}
	::close(cmd[0]);
	::close(reply[1]);
	cmd_ = cmd[1];
	reply_ = reply[0];

	hello h{};
	if (!read_all(reply_, &h, sizeof(h)) || !read_all(reply_, pat_.data(), pat_.size()))
		fail(EPIPE, "victim died before reporting its memory");
	if (h.err)
		fail(EINVAL, std::string("victim setup: ") + h.msg);
	addr_ = h.addr;
	size_ = h.size;
	fd_ = h.fd;
}

victim::~victim()
{
	if (pid_ > 0) {
		::kill(pid_, SIGKILL);
		::waitpid(pid_, nullptr, 0);
	}
	if (cmd_ >= 0)
		::close(cmd_);
	if (reply_ >= 0)
		::close(reply_);
}

std::string victim::state()
{
	char c = 's';
	write_all(cmd_, &c, 1);
	if (!read_all(reply_, &c, 1))
		fail(EPIPE, "victim died while checking its memory");
	return c == 'i' ? "intact" : c == 'o' ? "overwritten" : "changed";
}

void victim::quit()
{
	char c = 'q';
	write_all(cmd_, &c, 1);
	int st = 0;
	::waitpid(pid_, &st, 0);
	pid_ = -1;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail(ECHILD, "victim did not exit cleanly");
}

int victim::kill_wait(int sig)
{
	int st = 0;
	::kill(pid_, sig);
	::waitpid(pid_, &st, 0);
	pid_ = -1;
	return st;
}

/* pagemap and kcore */

std::optional<std::uint64_t> pfn_of(pid_t pid, std::uint64_t addr, std::string &why)
{
	std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
	xmem::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd) {
		why = "open " + path + ": " + errname(errno);
		return std::nullopt;
	}
	std::uint64_t e = 0;
	off_t off = static_cast<off_t>(addr / page_size() * sizeof(e));
	if (::pread(fd.get(), &e, sizeof(e), off) != sizeof(e)) {
		why = "read " + path + ": " + errname(errno);
		return std::nullopt;
	}
	if (!(e >> 63)) {
		why = "page not present in pagemap";
		return std::nullopt;
	}
	std::uint64_t pfn = e & ((1ULL << 55) - 1);
	if (pfn == 0) {
		why = "pagemap hides PFNs (needs CAP_SYS_ADMIN)";
		return std::nullopt;
	}
	return pfn;
}

std::optional<kcore> kcore::open(std::string &why)
{
	xmem::unique_fd fd(::open("/proc/kcore", O_RDONLY | O_CLOEXEC));
	if (!fd) {
		if (errno == ENOENT)
			why = "no /proc/kcore: CONFIG_PROC_KCORE is not set in this kernel";
		else
			why = "open /proc/kcore: " + errname(errno) + " (needs CAP_SYS_RAWIO)";
		return std::nullopt;
	}
	Elf64_Ehdr eh;
	if (::pread(fd.get(), &eh, sizeof(eh), 0) != sizeof(eh) ||
	    std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_phentsize != sizeof(Elf64_Phdr))
		fail(EINVAL, "/proc/kcore: not an ELF64 core");
	std::vector<Elf64_Phdr> ph(eh.e_phnum);
	ssize_t want = static_cast<ssize_t>(ph.size() * sizeof(Elf64_Phdr));
	if (::pread(fd.get(), ph.data(), static_cast<std::size_t>(want),
		    static_cast<off_t>(eh.e_phoff)) != want)
		fail("/proc/kcore: reading program headers");
	kcore k;
	for (const auto &p : ph)
		if (p.p_type == PT_LOAD && p.p_paddr != ~0ULL)
			k.loads_.push_back({p.p_offset, p.p_vaddr, p.p_paddr, p.p_memsz});
	if (k.loads_.empty())
		fail(EINVAL, "/proc/kcore: no PT_LOAD with a physical address");
	k.fd_ = std::make_shared<xmem::unique_fd>(std::move(fd));
	return k;
}

kcore::page_read kcore::read_phys(std::uint64_t phys) const
{
	page_read r;
	std::uint64_t page = phys & ~(static_cast<std::uint64_t>(page_size()) - 1);
	/*
	 * RAM appears twice when it holds kernel text (KCORE_TEXT at
	 * __START_KERNEL_map): the lowest p_vaddr is the direct map.
	 */
	const load *best = nullptr;
	for (const auto &l : loads_)
		if (page >= l.paddr && page - l.paddr < l.size && (!best || l.vaddr < best->vaddr))
			best = &l;
	if (!best) {
		r.err = ERANGE;
		return r;
	}
	r.vaddr = best->vaddr + (page - best->paddr);
	r.page_offset_base = best->vaddr - best->paddr;
	r.bytes.resize(page_size());
	ssize_t n = ::pread(fd_->get(), r.bytes.data(), r.bytes.size(),
			    static_cast<off_t>(best->offset + (page - best->paddr)));
	if (n != static_cast<ssize_t>(r.bytes.size())) {
		r.err = n < 0 ? errno : EIO;
		return r;
	}
	r.ok = true;
	return r;
}

/* scratch files, loop devices */

scratch_dir::scratch_dir()
{
	const char *t = std::getenv("TMPDIR");
	std::string tmpl = std::string(t && *t ? t : "/tmp") + "/xmem-attack.XXXXXX";
	std::vector<char> buf(tmpl.begin(), tmpl.end());
	buf.push_back('\0');
	if (!::mkdtemp(buf.data()))
		fail("mkdtemp " + tmpl);
	path_ = buf.data();
}

scratch_dir::~scratch_dir()
{
	if (DIR *d = ::opendir(path_.c_str())) {
		while (struct dirent *e = ::readdir(d))
			if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
				::unlink((path_ + "/" + e->d_name).c_str());
		::closedir(d);
	}
	::rmdir(path_.c_str());
}

xmem::unique_fd scratch_file(const std::string &dir, std::size_t size)
{
	xmem::unique_fd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
	if (!fd)
		fail("O_TMPFILE in " + dir);
	if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0)
		fail("ftruncate scratch file");
	return fd;
}

std::optional<loop_device> make_loop(const std::string &dir, std::size_t size, std::string &why)
{
	xmem::unique_fd ctl(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
	if (!ctl) {
		why = errno == ENOENT ? "no /dev/loop-control: CONFIG_BLK_DEV_LOOP is not set"
				      : "open /dev/loop-control: " + errname(errno) + " (needs root)";
		return std::nullopt;
	}
	loop_device ld;
	ld.backing = scratch_file(dir, size);
	/* Tests run in parallel: another may take the free device first. */
	for (int attempt = 0; attempt < 20; attempt++) {
		int n = ::ioctl(ctl.get(), LOOP_CTL_GET_FREE);
		if (n < 0)
			fail("LOOP_CTL_GET_FREE");
		ld.path = "/dev/loop" + std::to_string(n);
		xmem::unique_fd dev;
		for (int wait = 0; wait < 100; wait++) { /* devtmpfs makes the node */
			dev = xmem::unique_fd(::open(ld.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
			if (dev || errno != ENOENT)
				break;
			::usleep(10000);
		}
		if (!dev)
			fail("open " + ld.path + " O_DIRECT");
		struct loop_config cfg = {};
		cfg.fd = static_cast<__u32>(ld.backing.get());
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		if (::ioctl(dev.get(), LOOP_CONFIGURE, &cfg) == 0) {
			ld.dev = std::move(dev);
			return ld;
		}
		if (errno != EBUSY)
			fail("LOOP_CONFIGURE " + ld.path);
	}
	fail(EBUSY, "no free loop device after 20 attempts");
}

} // namespace xattack
