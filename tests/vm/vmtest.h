/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the hostile-user programs run in the test VM
 * (tests/vm/torture.c, tests/vm/sysfuzz.c): a seeded PRNG, the three memfd
 * backends, a guard for touching memory that may SIGBUS or SIGSEGV, and a
 * watcher of the kernel log.
 *
 * The kernel log watcher reads /dev/kmsg as it streams (from the moment the
 * program starts), so a report is seen even when later messages push it out
 * of the ring buffer before anyone runs dmesg; a reader that falls behind
 * gets EPIPE from the kernel, counts the lost records and goes on.
 */
#ifndef XMEM_TESTS_VM_VMTEST_H
#define XMEM_TESTS_VM_VMTEST_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../include/uapi/linux/memfd_exclusive.h"

#ifndef __NR_memfd_secret
#define __NR_memfd_secret 447
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC		0x0001U
#define MFD_ALLOW_SEALING	0x0002U
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE		25
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED	24
#endif
#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE	101
#endif
#ifndef MADV_HWPOISON
#define MADV_HWPOISON		100
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE	0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC		0x0020
#endif

/* splitmix64: a whole run is reproducible from the seed it prints. */
static inline uint64_t vt_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A number in [0, n), n > 0. */
static inline uint64_t vt_rnd(uint64_t *s, uint64_t n)
{
	return vt_next(s) % n;
}

static inline int vt_chance(uint64_t *s, unsigned int one_in)
{
	return vt_rnd(s, one_in) == 0;
}

/* The memfd backends. */
enum vt_backend { VT_EXCLUSIVE, VT_SECRET, VT_CREATE, VT_NR_BACKENDS };

static const char *const vt_backend_name[VT_NR_BACKENDS] = {
	"memfd_exclusive", "memfd_secret", "memfd_create",
};

static inline int vt_have_exclusive(void)
{
	return access(MEMFD_EXCLUSIVE_SYSFS_DIR, F_OK) == 0;
}

/*
 * The syscall number of memfd_exclusive(2): the uapi header's unless set
 * (--nr-exclusive). The number moved (500, then 600): when the header's
 * gives ENOSYS on a kernel that has MEMFD_EXCLUSIVE_SYSFS_DIR,
 * vt_probe_nr_exclusive() tries the other (both are far above any
 * upstream syscall of 6.12, so a wrong guess is only ENOSYS).
 */
static long vt_nr_exclusive = __NR_memfd_exclusive;

static inline long vt_probe_nr_exclusive(void)
{
	static const long nrs[] = { __NR_memfd_exclusive, 600, 500 };
	unsigned int i;
	long fd;

	for (i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
		fd = syscall(nrs[i], "probe", MFD_EXCLUSIVE_CLOEXEC);
		if (fd >= 0) {
			close(fd);
			return vt_nr_exclusive = nrs[i];
		}
		if (errno != ENOSYS)
			return vt_nr_exclusive = nrs[i];
	}
	return -1;
}

/*
 * kill() of one child we forked, never of anything else: pid 0 would be
 * our process group and -1 every process we may signal (as root: all of
 * them, the whole machine outside a VM), so those are refused.
 */
static inline int vt_kill_child(pid_t pid)
{
	if (pid <= 0) {
		errno = EINVAL;
		return -1;
	}
	return kill(pid, SIGKILL);
}

/*
 * A new fd of @backend; @sealing asks for F_ADD_SEALS to be allowed (where
 * the backend has seals). Returns the fd or -1 with errno.
 */
static inline int vt_memfd(enum vt_backend backend, const char *name,
			   int sealing)
{
	switch (backend) {
	case VT_EXCLUSIVE:
		return syscall(vt_nr_exclusive, name,
			       MFD_EXCLUSIVE_CLOEXEC |
			       (sealing ? MFD_EXCLUSIVE_ALLOW_SEALING : 0));
	case VT_SECRET:
		return syscall(__NR_memfd_secret, O_CLOEXEC);
	default:
		return syscall(__NR_memfd_create, name,
			       MFD_CLOEXEC | (sealing ? MFD_ALLOW_SEALING : 0));
	}
}

/*
 * Touching memory that another thread or process may truncate, unmap or
 * mprotect: a SIGBUS or SIGSEGV inside vt_guard() jumps back out of it.
 */
/* volatile: the stores around the loop must not be optimised away. */
static __thread sigjmp_buf *volatile vt_jmp;
static atomic_long vt_signals[2];	/* SIGBUS, SIGSEGV caught in a guard */

static void vt_on_fault(int sig)
{
	if (vt_jmp) {
		atomic_fetch_add(&vt_signals[sig == SIGSEGV], 1);
		siglongjmp(*vt_jmp, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static inline void vt_install_fault_handlers(void)
{
	struct sigaction sa = { .sa_handler = vt_on_fault };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

/*
 * Writes @val to one byte of every page of [p, p + len) (or reads when
 * @write is 0). Returns the number of pages touched before a fault ended it.
 */
static inline size_t vt_touch(volatile unsigned char *p, size_t len,
			      size_t page, int write, unsigned char val)
{
	sigjmp_buf jb;
	volatile size_t off = 0;

	if (sigsetjmp(jb, 1)) {
		vt_jmp = NULL;
		return off / page;
	}
	vt_jmp = &jb;
	for (; off < len; off += page) {
		if (write)
			p[off] = val;
		else
			(void)p[off];
	}
	vt_jmp = NULL;
	return off / page;
}

/* Kernel log lines that are reports (those of scripts/vm-run, and a few more). */
static const char *const vt_report_patterns[] = {
	"BUG:", "WARNING:", "Oops:", "KASAN:", "UBSAN:", "general protection",
	"Kernel panic", "kernel BUG at", "possible recursive locking",
	"inconsistent lock state", "circular locking dependency",
	"possible irq lock inversion", "lock held when returning",
	"suspicious RCU usage", "bad unlock balance", "held lock freed",
	"blocked for more than", "soft lockup", "hard LOCKUP", "Call Trace:",
	"refcount_t:", "list_add corruption", "list_del corruption",
	"Bad page", "page dumped because", NULL,
};

struct vt_kmsg {
	pthread_t thread;
	int fd;
	atomic_int stop;
	int started;
	const char *prog;	/* prefix of the lines printed */
	long records, reports, lost;
};

static void *vt_kmsg_main(void *arg)
{
	struct vt_kmsg *k = arg;
	char buf[8192];
	struct pollfd pfd = { .fd = k->fd, .events = POLLIN };
	ssize_t n;
	int i, drain = 0;

	for (;;) {
		n = read(k->fd, buf, sizeof(buf) - 1);
		if (n < 0 && errno == EPIPE) {
			/* Overwritten before we read it: a gap in what we saw. */
			k->lost++;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			/* Stop only once the log has been read to its end. */
			if (drain)
				break;
			if (atomic_load(&k->stop))
				drain = 1;
			poll(&pfd, 1, 100);
			continue;
		}
		if (n <= 0)
			break;
		buf[n] = '\0';
		k->records++;
		for (i = 0; vt_report_patterns[i]; i++) {
			if (strstr(buf, vt_report_patterns[i])) {
				char *msg = strchr(buf, ';');

				if (k->reports++ < 60)
					fprintf(stderr, "%s: kernel report: %s",
						k->prog, msg ? msg + 1 : buf);
				break;
			}
		}
	}
	return NULL;
}

/*
 * Opens the kernel log at its end: what is logged from now on is watched
 * once vt_kmsg_start() runs. Two steps so that a program can open the log,
 * fork its workers while it has one thread only (a child forked while the
 * watcher holds stdio's lock would hang on it), then start the watcher.
 * Returns 0, or -1 when /dev/kmsg cannot be read (not root): then nothing
 * is watched.
 */
static inline int vt_kmsg_open(struct vt_kmsg *k, const char *prog)
{
	memset(k, 0, sizeof(*k));
	k->prog = prog;
	k->fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (k->fd < 0)
		return -1;
	lseek(k->fd, 0, SEEK_END);
	return 0;
}

/* Starts the watcher thread on a log opened by vt_kmsg_open(). */
static inline int vt_kmsg_start(struct vt_kmsg *k)
{
	if (k->fd < 0)
		return -1;
	if (pthread_create(&k->thread, NULL, vt_kmsg_main, k)) {
		close(k->fd);
		k->fd = -1;
		return -1;
	}
	k->started = 1;
	return 0;
}

/* Stops the watcher after it has read what is in the log now. */
static inline void vt_kmsg_stop(struct vt_kmsg *k)
{
	if (k->fd < 0)
		return;
	atomic_store(&k->stop, 1);
	if (k->started)
		pthread_join(k->thread, NULL);
	k->started = 0;
	close(k->fd);
	k->fd = -1;
}

/*
 * A memory budget for a whole run. Memory files are a way to take the
 * machine's memory without any process's RSS showing it (shmem pages, a
 * fallocate() of a huge range, copies into a file), and the OOM killer then
 * kills by RSS: other people's compilers and VMs, not the culprit. So the
 * programs bound their own files (RLIMIT_FSIZE, clamped lengths) and the
 * main process also watches MemAvailable and stops the run, killing its
 * own children, once it has fallen by more than the budget since the start
 * or below a tenth of the machine's memory.
 */
static inline long vt_meminfo_kb(const char *key)
{
	char line[128];
	size_t n = strlen(key);
	long kb = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':') {
			kb = atol(line + n + 1);
			break;
		}
	fclose(f);
	return kb;
}

struct vt_membudget {
	long total_kb, start_kb, budget_kb, low_kb;
};

static inline void vt_membudget_init(struct vt_membudget *b, long budget_mb)
{
	b->total_kb = vt_meminfo_kb("MemTotal");
	b->start_kb = vt_meminfo_kb("MemAvailable");
	b->budget_kb = budget_mb << 10;
}

/* 0 while within the budget; else prints why and returns 1. */
static inline int vt_membudget_exceeded(struct vt_membudget *b,
					const char *prog)
{
	long now = vt_meminfo_kb("MemAvailable");

	if (now < 0 || b->start_kb < 0)
		return 0;
	if (b->start_kb - now > b->budget_kb || now < b->total_kb / 10) {
		fprintf(stderr, "%s: FAIL: memory available fell from %ld to %ld MiB (budget %ld MiB, floor %ld MiB): stopping the run\n",
			prog, b->start_kb >> 10, now >> 10, b->budget_kb >> 10,
			b->total_kb / 10 >> 10);
		return 1;
	}
	return 0;
}

/* Writes @val to a sysfs or procfs file; returns 0 or -errno. */
static inline int vt_write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		err = -errno;
	close(fd);
	return err;
}

#endif /* XMEM_TESTS_VM_VMTEST_H */
