// SPDX-License-Identifier: GPL-2.0
/*
 * stress: threads and processes that fault, truncate, seal, pass (SCM_RIGHTS)
 * and close memfd_exclusive memory at once, for a bounded time. Run inside the
 * patched kernel (tests/vm/stress.sh, on the debug kernel): the kernel log is
 * what judges the run (KASAN, lockdep, DEBUG_VM, bad page state); this program
 * also checks what it can see, that new pages read as zero and that data it
 * wrote reads back. A thread adds memory pressure (drop_caches, the pool's
 * high-water mark flipped between 0 and 8 MiB) all along.
 *
 * Usage: stress [SECONDS] (default 20)
 * Exit: 0 pass, 1 a check failed, 77 the kernel has no memfd_exclusive(2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../include/uapi/linux/memfd_exclusive.h"

#define NR_THREADS	4	/* per process */
#define NR_CHILDREN	2	/* receivers of passed fds, also stressing */
#define NR_SHARED	8	/* files shared by the threads of a process */
#define MAX_PAGES	64

static long page_size;
static time_t deadline;
static atomic_long failures;
static atomic_long ops[8];
static const char *const op_names[8] = {
	"private", "shared-fault", "resize", "seal", "pass", "madvise",
	"received", "close",
};

static struct {
	pthread_mutex_t lock;
	int fd[NR_SHARED];
} shared = { .lock = PTHREAD_MUTEX_INITIALIZER };

static __thread sigjmp_buf *fault_jmp;

#define fail(...)							\
	do {								\
		fprintf(stderr, "stress: " __VA_ARGS__);		\
		fputc('\n', stderr);					\
		atomic_fetch_add(&failures, 1);				\
	} while (0)

static void on_sigbus(int sig)
{
	(void)sig;
	if (fault_jmp)
		siglongjmp(*fault_jmp, 1);
	abort();
}

static int mfdx(const char *name, unsigned int flags)
{
	return syscall(__NR_memfd_exclusive, name, flags);
}

static unsigned int rnd(unsigned int *seed, unsigned int n)
{
	return rand_r(seed) % n;
}

/*
 * Touches @len bytes at @p: writes @val and reads it back, or with @val 0 only
 * reads. A SIGBUS (the file shrank under us) ends the touch early and is not
 * a failure. Returns the number of pages touched.
 */
static size_t touch(volatile unsigned char *p, size_t len, unsigned char val)
{
	sigjmp_buf jb;
	volatile size_t off = 0;

	if (sigsetjmp(jb, 1)) {
		fault_jmp = NULL;
		return off / page_size;
	}
	fault_jmp = &jb;
	for (; off < len; off += page_size) {
		if (!val) {
			(void)p[off];
			continue;
		}
		p[off] = val;
		p[off + page_size - 1] = val;
		if (p[off] != val)
			break;
	}
	fault_jmp = NULL;
	return off / page_size;
}

/* A file of our own: new pages are zero, data stays, regrown pages are zero. */
static void op_private(unsigned int *seed)
{
	size_t pages = 1 + rnd(seed, MAX_PAGES), keep, i;
	unsigned char *p;
	int fd;

	fd = mfdx("stress-private", MFD_EXCLUSIVE_CLOEXEC);
	if (fd < 0) {
		fail("memfd_exclusive: %s", strerror(errno));
		return;
	}
	if (ftruncate(fd, pages * page_size)) {
		fail("ftruncate: %s", strerror(errno));
		goto out;
	}
	p = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	if (p == MAP_FAILED) {
		fail("mmap: %s", strerror(errno));
		goto out;
	}
	for (i = 0; i < pages; i++)
		if (p[i * page_size] || p[i * page_size + page_size - 1])
			fail("new page %zu not zero", i);
	memset(p, 0x5a, pages * page_size);

	/* Shrink to a partial page, grow again: the tail must read zero. */
	keep = rnd(seed, pages * page_size);
	if (ftruncate(fd, keep) || ftruncate(fd, pages * page_size)) {
		fail("resize: %s", strerror(errno));
	} else {
		for (i = 0; i < pages * page_size; i += 251)
			if (p[i] != (i < keep ? 0x5a : 0)) {
				fail("byte %zu of %zu (kept %zu) is %#x",
				     i, pages * page_size, keep, p[i]);
				break;
			}
	}
	munmap(p, pages * page_size);
out:
	close(fd);
	atomic_fetch_add(&ops[0], 1);
}

/* Takes a reference to a random shared file (a dup), or -1. */
static int shared_get(unsigned int *seed)
{
	int fd;

	pthread_mutex_lock(&shared.lock);
	fd = shared.fd[rnd(seed, NR_SHARED)];
	fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	pthread_mutex_unlock(&shared.lock);
	return fd;
}

/* Replaces a shared file with a new one (closing the old). */
static void shared_replace(unsigned int *seed)
{
	int fd = mfdx("stress-shared", MFD_EXCLUSIVE_CLOEXEC |
				       MFD_EXCLUSIVE_ALLOW_SEALING);
	int slot = rnd(seed, NR_SHARED), old;

	if (fd < 0) {
		fail("memfd_exclusive: %s", strerror(errno));
		return;
	}
	if (ftruncate(fd, (1 + rnd(seed, MAX_PAGES)) * page_size))
		fail("ftruncate: %s", strerror(errno));
	pthread_mutex_lock(&shared.lock);
	old = shared.fd[slot];
	shared.fd[slot] = fd;
	pthread_mutex_unlock(&shared.lock);
	if (old >= 0)
		close(old);
	atomic_fetch_add(&ops[7], 1);
}

/* Faults a shared file while others resize it. */
static void op_shared_fault(unsigned int *seed, int fd)
{
	size_t len = MAX_PAGES * page_size;
	unsigned char *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED && errno == EPERM) {
		/* Sealed against writes: read it. */
		p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			touch(p, len, 0);
			munmap(p, len);
			atomic_fetch_add(&ops[1], 1);
			return;
		}
	}
	if (p == MAP_FAILED) {
		fail("mmap shared: %s", strerror(errno));
		return;
	}
	touch(p, len, 1 + rnd(seed, 255));
	if (rnd(seed, 2))
		madvise(p, len, MADV_DONTNEED);
	munmap(p, len);
	atomic_fetch_add(&ops[1], 1);
}

static void op_resize(unsigned int *seed, int fd)
{
	off_t size = rnd(seed, MAX_PAGES * page_size + 1);

	/* EPERM once sealed. */
	if (ftruncate(fd, size) && errno != EPERM)
		fail("ftruncate shared: %s", strerror(errno));
	atomic_fetch_add(&ops[2], 1);
}

static void op_seal(unsigned int *seed, int fd)
{
	static const int seals[] = {
		F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SHRINK | F_SEAL_GROW,
		F_SEAL_FUTURE_WRITE,
	};

	if (!rnd(seed, 4)) {
		/* Rarely, so that most files stay resizable. */
		if (fcntl(fd, F_ADD_SEALS, seals[rnd(seed, 4)]) &&
		    errno != EPERM && errno != EBUSY)
			fail("F_ADD_SEALS: %s", strerror(errno));
	}
	if (fcntl(fd, F_GET_SEALS) < 0)
		fail("F_GET_SEALS: %s", strerror(errno));
	atomic_fetch_add(&ops[3], 1);
}

static int send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char byte = 'x';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *c;
	int fd;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS || (msg.msg_flags & MSG_CTRUNC))
		return -2;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static int child_sock[NR_CHILDREN];

static void write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (write(fd, val, strlen(val)) < 0)
			errno = 0;	/* not root: no pressure, not a failure */
		close(fd);
	}
}

/*
 * Memory pressure while the others fault: run the shrinkers and move the
 * pool's high-water mark between 0 (every wholly free block goes back at
 * once) and its default, so that blocks leave the pool while pages are
 * taken from and released to it.
 */
static void *pressure(void *arg)
{
	static const char *const marks[] = { "0", "8192" };
	char old[32] = "8192";
	unsigned int n = 0;
	FILE *f;

	(void)arg;
	f = fopen(MEMFD_EXCLUSIVE_SYSFS_DIR "/pool_high_water_kb", "r");
	if (f) {
		if (!fgets(old, sizeof(old), f))
			strcpy(old, "8192");
		fclose(f);
	}
	while (time(NULL) < deadline) {
		write_str(MEMFD_EXCLUSIVE_SYSFS_DIR "/pool_high_water_kb",
			  marks[n++ % 2]);
		write_str("/proc/sys/vm/drop_caches", "2");
		usleep(200000);
	}
	write_str(MEMFD_EXCLUSIVE_SYSFS_DIR "/pool_high_water_kb", old);
	return NULL;
}

struct worker {
	pthread_t thread;
	unsigned int seed;
	int is_child;
};

static void *worker(void *arg)
{
	struct worker *w = arg;
	int fd;

	while (time(NULL) < deadline) {
		switch (rnd(&w->seed, 8)) {
		case 0:
			op_private(&w->seed);
			continue;
		case 1:
			shared_replace(&w->seed);
			continue;
		}
		fd = shared_get(&w->seed);
		if (fd < 0) {
			shared_replace(&w->seed);
			continue;
		}
		switch (rnd(&w->seed, 6)) {
		case 0:
		case 1:
			op_shared_fault(&w->seed, fd);
			break;
		case 2:
			op_resize(&w->seed, fd);
			break;
		case 3:
			op_seal(&w->seed, fd);
			break;
		case 4:
			if (!w->is_child) {
				/* Full socket buffers are not a failure. */
				send_fd(child_sock[rnd(&w->seed, NR_CHILDREN)],
					fd);
				atomic_fetch_add(&ops[4], 1);
			}
			break;
		default:
			op_shared_fault(&w->seed, fd);
			atomic_fetch_add(&ops[5], 1);
		}
		close(fd);
	}
	return NULL;
}

/* A child: receives fds, faults and resizes them, and runs its own workers. */
static int child_main(int sock, unsigned int seed)
{
	struct worker w[NR_THREADS / 2];
	struct stat st;
	unsigned char *p;
	int i, fd;

	for (i = 0; i < NR_SHARED; i++)
		shared.fd[i] = -1;
	for (i = 0; i < NR_THREADS / 2; i++) {
		w[i].seed = seed + i;
		w[i].is_child = 1;
		pthread_create(&w[i].thread, NULL, worker, &w[i]);
	}
	while (time(NULL) < deadline + 1) {
		fd = recv_fd(sock);
		if (fd == -1)
			break;
		if (fd < 0) {
			fail("child: bad control message");
			continue;
		}
		if (fstat(fd, &st) == 0 && st.st_size > 0) {
			p = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
			if (p != MAP_FAILED) {
				touch(p, st.st_size, 0);
				munmap(p, st.st_size);
			}
		}
		/* Keep some as our own shared files. */
		pthread_mutex_lock(&shared.lock);
		i = rnd(&seed, NR_SHARED);
		if (shared.fd[i] >= 0)
			close(shared.fd[i]);
		shared.fd[i] = fd;
		pthread_mutex_unlock(&shared.lock);
		atomic_fetch_add(&ops[6], 1);
	}
	for (i = 0; i < NR_THREADS / 2; i++)
		pthread_join(w[i].thread, NULL);
	printf("stress: child %d received %ld fds, %ld failures\n", getpid(),
	       atomic_load(&ops[6]), atomic_load(&failures));
	/* The child leaves with _exit(): flush what it printed. */
	fflush(stdout);
	return atomic_load(&failures) ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
	struct sigaction sa = { .sa_handler = on_sigbus };
	struct worker w[NR_THREADS];
	pthread_t pressure_thread;
	pid_t child[NR_CHILDREN];
	int seconds = argc > 1 ? atoi(argv[1]) : 20;
	int i, sv[2], status, rc = 0;

	page_size = sysconf(_SC_PAGESIZE);
	if (access(MEMFD_EXCLUSIVE_SYSFS_DIR, F_OK)) {
		printf("stress: SKIP, no %s\n", MEMFD_EXCLUSIVE_SYSFS_DIR);
		return 77;
	}
	setrlimit(RLIMIT_MEMLOCK, &unlimited);
	sigaction(SIGBUS, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	deadline = time(NULL) + seconds;

	for (i = 0; i < NR_CHILDREN; i++) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
			perror("socketpair");
			return 1;
		}
		child[i] = fork();
		if (child[i] == 0) {
			close(sv[0]);
			_exit(child_main(sv[1], 1000 * (i + 1)));
		}
		if (child[i] < 0) {
			/* The ones forked stop at the deadline by themselves. */
			perror("stress: fork");
			return 1;
		}
		close(sv[1]);
		child_sock[i] = sv[0];
	}

	for (i = 0; i < NR_SHARED; i++)
		shared.fd[i] = -1;
	for (i = 0; i < NR_THREADS; i++) {
		w[i].seed = 7 + i;
		w[i].is_child = 0;
		pthread_create(&w[i].thread, NULL, worker, &w[i]);
	}
	pthread_create(&pressure_thread, NULL, pressure, NULL);
	for (i = 0; i < NR_THREADS; i++)
		pthread_join(w[i].thread, NULL);
	pthread_join(pressure_thread, NULL);
	for (i = 0; i < NR_CHILDREN; i++)
		close(child_sock[i]);
	for (i = 0; i < NR_SHARED; i++)
		if (shared.fd[i] >= 0)
			close(shared.fd[i]);
	for (i = 0; i < NR_CHILDREN; i++) {
		if (waitpid(child[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status)) {
			fprintf(stderr, "stress: child %d failed (status %#x)\n",
				child[i], status);
			rc = 1;
		}
	}

	printf("stress: %d s, ops:", seconds);
	for (i = 0; i < 8; i++)
		if (i != 6)	/* "received" is counted by the children */
			printf(" %s=%ld", op_names[i], atomic_load(&ops[i]));
	printf(", failures=%ld\n", atomic_load(&failures));
	return rc || atomic_load(&failures) ? 1 : 0;
}
