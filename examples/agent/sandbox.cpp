// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The parser's sandbox (sandbox.hpp). The idea of a separate unprivileged
 * process for the part that reads what the network sends is OpenSSH sshd's
 * privilege separation (Provos, Friedl, Honeyman, "Preventing Privilege
 * Escalation", USENIX Security 2003) and its seccomp sandbox
 * (sandbox-seccomp-filter.c); the list here is our own.
 */

#include "sandbox.hpp"

#include <xmem/xmem.hpp>

#include <seccomp.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef __NR_memfd_secret
#define __NR_memfd_secret 447
#endif
#ifndef __NR_memfd_exclusive
#define __NR_memfd_exclusive 600
#endif

namespace xmem::agent {

namespace {

[[noreturn]] void fail(int err, const std::string &what)
{
	throw std::system_error(err, std::generic_category(), "sandbox: " + what);
}

/* Fds the parser may hold at once: 0-2, its channel, a message, a key, a spare. */
constexpr rlim_t max_fds = 8;

/* The calls the parser makes after the sandbox is on (seen with strace on Debian 12). */
constexpr int allowed[] = {
	__NR_read, __NR_write, __NR_readv, __NR_writev, __NR_recvmsg, __NR_sendmsg,
	__NR_close, __NR_fstat, __NR_newfstatat, __NR_fstatfs, __NR_fcntl,
	__NR_ftruncate, __NR_lseek, __NR_mmap, __NR_munmap, __NR_mprotect, __NR_mremap,
	__NR_madvise, __NR_mlock, __NR_munlock, __NR_brk, __NR_futex, __NR_getrandom,
	__NR_clock_gettime, __NR_gettimeofday, __NR_getpid, __NR_gettid, __NR_getuid,
	__NR_geteuid, __NR_rt_sigreturn, __NR_rt_sigprocmask, __NR_rt_sigaction,
	__NR_sigaltstack, __NR_restart_syscall, __NR_exit, __NR_exit_group,
	__NR_memfd_secret, __NR_memfd_exclusive,
};

void load_filter()
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	if (!ctx)
		fail(ENOMEM, "seccomp_init");
	int rc = 0;
	for (int nr : allowed) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc < 0)
			break;
	}
	/* Signals to itself only (abort(3), raise(3)): tgkill(getpid(), ...). */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, __NR_tgkill, 1,
				      SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid())));
	if (rc == 0)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0)
		fail(-rc, "seccomp_load");
}

} // namespace

void enter_sandbox(int keep_fd)
{
	/* Whatever the memory code learns from the filesystem, it learns now. */
	(void)probe_kernel();

	/* An empty directory, entered and removed: no relative path reaches anything. */
	const char *tmp = std::getenv("TMPDIR");
	std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/xmem-agent-parser-XXXXXX";
	if (!::mkdtemp(dir.data()))
		fail(errno, "mkdtemp " + dir);
	if (::chdir(dir.c_str()) < 0) {
		const int e = errno;
		::rmdir(dir.c_str());
		fail(e, "chdir " + dir);
	}
	if (::rmdir(dir.c_str()) < 0)
		fail(errno, "rmdir " + dir);

	/* Every fd but stdio and the channel. */
	if (keep_fd < 3)
		fail(EBADF, "channel fd " + std::to_string(keep_fd));
	if (keep_fd > 3 && ::close_range(3, static_cast<unsigned>(keep_fd) - 1, 0) < 0)
		fail(errno, "close_range");
	if (::close_range(static_cast<unsigned>(keep_fd) + 1, ~0U, 0) < 0)
		fail(errno, "close_range");

	const struct {
		int res;
		rlim_t value;
		const char *name;
	} limits[] = {
		{RLIMIT_NOFILE, max_fds, "RLIMIT_NOFILE"},
		{RLIMIT_CORE, 0, "RLIMIT_CORE"},
		{RLIMIT_NPROC, 0, "RLIMIT_NPROC"},
	};
	for (const auto &l : limits) {
		const struct rlimit r = {l.value, l.value};
		if (::setrlimit(l.res, &r) < 0)
			fail(errno, std::string("setrlimit ") + l.name);
	}
	/* No core dump, no ptrace by our uid's other processes, no /proc/PID/mem. */
	if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail(errno, "prctl PR_SET_DUMPABLE");
	if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail(errno, "prctl PR_SET_NO_NEW_PRIVS");
	load_filter();
}

namespace {

bool report_denied(const char *what, int rc, int err)
{
	if (rc >= 0) {
		std::printf("%s: ALLOWED\n", what);
		return false;
	}
	std::printf("%s: denied (%s)\n", what, std::strerror(err));
	return true;
}

} // namespace

int sandbox_selftest(const std::string &path)
{
	/* The channel fd enter_sandbox() keeps: any fd >= 3 will do. */
	int spare = ::fcntl(2, F_DUPFD_CLOEXEC, 3);
	if (spare < 0) {
		std::printf("dup: %s\n", std::strerror(errno));
		return 1;
	}
	try {
		enter_sandbox(spare);
	} catch (const std::exception &e) {
		std::printf("%s\n", e.what());
		return 1;
	}
	bool ok = true;
	int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
	ok &= report_denied(("open " + path).c_str(), fd, errno);
	fd = ::openat(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC);
	ok &= report_denied(("openat " + path).c_str(), fd, errno);
	std::FILE *f = std::fopen(path.c_str(), "r");
	ok &= report_denied(("fopen " + path).c_str(), f ? 0 : -1, errno);
	fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok &= report_denied("socket AF_INET", fd, errno);
	fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok &= report_denied("socket AF_UNIX", fd, errno);
	char *const argv[] = {const_cast<char *>("/bin/true"), nullptr};
	int rc = ::execve("/bin/true", argv, environ);
	ok &= report_denied("execve /bin/true", rc, errno);
	rc = static_cast<int>(::syscall(__NR_fork));
	if (rc == 0)
		::_exit(0);
	ok &= report_denied("fork", rc, errno);

	/* What the parser must still be able to do. */
	try {
		memory m = memory::create("xmem-agent-selftest", 4096);
		mapping map = mapping::map(m, access::read_write);
		map.bytes()[0] = std::byte{1};
		std::printf("exclusive memory: works (%s)\n", std::string(to_string(m.backend())).c_str());
	} catch (const std::exception &e) {
		std::printf("exclusive memory: FAILED (%s)\n", e.what());
		ok = false;
	}
	std::fflush(stdout);
	return ok ? 0 : 1;
}

} // namespace xmem::agent
