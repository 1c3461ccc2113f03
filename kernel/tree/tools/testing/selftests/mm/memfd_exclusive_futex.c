// SPDX-License-Identifier: GPL-2.0
/*
 * Process-shared futexes in memory without a direct map: memfd_exclusive(2)
 * and memfd_secret(2). GUP refuses such memory, so the kernel must key a
 * shared futex there by inode and file offset without taking the page
 * (kernel/futex/core.c, get_futex_key_no_direct_map()). On a kernel without
 * that, every shared futex operation on this memory fails with EFAULT, and so
 * does every test below but private_futex.
 *
 * Two processes: the test forks, then creates the memory and passes the fd
 * over a socketpair with SCM_RIGHTS; the peer maps it on its own, at another
 * address than the test's. Each wait has a timeout, so a lost wake-up fails
 * a test instead of hanging it.
 *
 * The tests of fixture futex run on both backends, futex_resize (the file
 * changes size) on memfd_exclusive only. Tests skip when the backend is
 * absent: memfd_exclusive(2) when /sys/kernel/mm/memfd_exclusive does not
 * exist, memfd_secret(2) when it fails with ENOSYS.
 *
 * Not in tools/testing/selftests/mm/Makefile yet; builds on its own
 * (scripts/build-selftest --source <this file>):
 *   gcc -O2 -Wall -pthread -I tools/testing/selftests -I <xmem>/include \
 *       <this file>
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* Installed kernel headers, else -I <xmem>/include for a standalone build. */
#if __has_include("linux/memfd_exclusive.h")
#include <linux/memfd_exclusive.h>
#else
#include "uapi/linux/memfd_exclusive.h"
#endif

#include "kselftest_harness.h"

#ifndef __NR_memfd_secret
#define __NR_memfd_secret	447
#endif

/* Seconds any one wait may take before the test counts it as lost. */
#define WAIT_S		30
/* Rounds of the mutex and condition variable ping-pong, per process. */
#define PING_PONG_ROUNDS 500
/* The file: two pages; the futex words are on the second, at an offset. */
#define FILE_PAGES	2
#define WORD_OFFSET	64

static size_t page_size;

enum backend { EXCLUSIVE, SECRET };

static int sys_futex(uint32_t *uaddr, int op, uint32_t val,
		     const struct timespec *timeout, uint32_t *uaddr2,
		     uint32_t val3)
{
	return syscall(SYS_futex, uaddr, op, val, timeout, uaddr2, val3);
}

/* FUTEX_WAIT for at most WAIT_S seconds: 0 when woken, else -1 and errno. */
static int futex_wait(uint32_t *word, uint32_t val)
{
	struct timespec t = { .tv_sec = WAIT_S };

	return sys_futex(word, FUTEX_WAIT, val, &t, NULL, 0);
}

static int futex_wake(uint32_t *word, int nr)
{
	return sys_futex(word, FUTEX_WAKE, nr, NULL, NULL, 0);
}

/*
 * Whether the backend exists: a failing call with the backend present is a
 * failure of the test that makes the file, not a skip.
 */
static bool backend_available(enum backend b)
{
	int fd;

	if (b == EXCLUSIVE)
		return !access(MEMFD_EXCLUSIVE_SYSFS_DIR, F_OK);
	fd = syscall(__NR_memfd_secret, 0);
	if (fd < 0)
		return errno != ENOSYS;
	close(fd);
	return true;
}

/* A file of @pages pages, or -1 with errno. */
static int create_memory(enum backend b, size_t pages)
{
	int fd;

	if (b == EXCLUSIVE)
		fd = syscall(__NR_memfd_exclusive, "futex",
			     MFD_EXCLUSIVE_CLOEXEC);
	else
		fd = syscall(__NR_memfd_secret, O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, pages * page_size)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_fd(int sock, int fd)
{
	char byte = 'F';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} control = {};
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} control = {};
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *c;
	int fd;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1 ||
	    (msg.msg_flags & MSG_CTRUNC))
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int)))
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* One value over the socket: an address, a result, a go-ahead. */
static int send_val(int sock, uint64_t v)
{
	return send(sock, &v, sizeof(v), MSG_NOSIGNAL) == sizeof(v) ? 0 : -1;
}

static int recv_val(int sock, uint64_t *v)
{
	return recv(sock, v, sizeof(*v), MSG_WAITALL) == sizeof(*v) ? 0 : -1;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/*
 * Whether @pid is asleep in futex(2): state S in /proc/PID/stat and SYS_futex
 * in /proc/PID/syscall. Polled for up to WAIT_S seconds, or until it exits. A waker that has seen
 * this knows its FUTEX_WAKE finds the waiter queued, so the wake's count (1,
 * not 0) shows that the two keys matched.
 */
static bool sleeping_in_futex(pid_t pid)
{
	double deadline = now_s() + WAIT_S;
	char path[64], buf[512], *p;
	long nr;
	FILE *f;

	while (now_s() < deadline) {
		bool asleep = false;

		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		f = fopen(path, "r");
		if (!f)
			return false;
		p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (!p || p[1] != ' ' || p[2] == 'Z')
			return false;	/* it has exited */
		if (p[2] == 'S') {
			snprintf(path, sizeof(path), "/proc/%d/syscall", pid);
			f = fopen(path, "r");
			if (!f)
				return false;
			asleep = fscanf(f, "%ld", &nr) == 1 && nr == SYS_futex;
			fclose(f);
		}
		if (asleep)
			return true;
		usleep(1000);
	}
	return false;
}

/*
 * FUTEX_WAKE (@op) of one waiter until one was woken (the waiter may not be
 * queued yet), for up to WAIT_S seconds. Returns the last result of @op.
 */
static int wake_one_until_woken(uint32_t *word, int op)
{
	double deadline = now_s() + WAIT_S;
	int ret;

	do {
		ret = sys_futex(word, op, 1, NULL, NULL, 0);
		if (ret != 0)
			return ret;
		usleep(1000);
	} while (now_s() < deadline);
	return ret;
}

/*
 * The peer's side of the set-up: receives the fd, maps @pages pages of it at
 * an address of its own (after an anonymous region, so not where the test
 * mapped it) and sends that address. Returns the mapping or MAP_FAILED.
 */
static char *peer_map(int sock, int *fdp, size_t pages)
{
	void *other;
	char *map;
	int fd;

	fd = recv_fd(sock);
	if (fd < 0) {
		perror("peer: recv_fd");
		return MAP_FAILED;
	}
	other = mmap(NULL, 4 * page_size, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (other == MAP_FAILED)
		return MAP_FAILED;
	map = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE,
		   MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		perror("peer: mmap");
		return MAP_FAILED;
	}
	if (send_val(sock, (uintptr_t)map))
		return MAP_FAILED;
	*fdp = fd;
	return map;
}

static uint32_t *word_at(char *map, size_t extra)
{
	return (uint32_t *)(map + page_size + WORD_OFFSET + extra);
}

/* The test's side of two processes sharing one file. */
struct pair {
	enum backend backend;
	int sock[2];	/* [0] the test's end, [1] the peer's */
	pid_t peer;
	int fd;
	char *map;	/* FILE_PAGES pages of fd */
	size_t map_pages;
};

FIXTURE(futex) {
	struct pair p;
};

FIXTURE_VARIANT(futex) {
	enum backend backend;
};

FIXTURE_VARIANT_ADD(futex, memfd_exclusive) {
	.backend = EXCLUSIVE,
};

FIXTURE_VARIANT_ADD(futex, memfd_secret) {
	.backend = SECRET,
};

static void pair_setup(struct __test_metadata *_metadata, struct pair *p,
		       enum backend backend)
{
	p->backend = backend;
	p->peer = -1;
	p->fd = -1;
	p->map = MAP_FAILED;
	p->map_pages = FILE_PAGES;
	p->sock[0] = -1;
	p->sock[1] = -1;
	if (!backend_available(backend))
		SKIP(return, "%s is not available",
		     backend == EXCLUSIVE ? "memfd_exclusive(2)" :
					    "memfd_secret(2)");
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				p->sock));
}

static void pair_teardown(struct pair *p)
{
	if (p->peer > 0) {
		kill(p->peer, SIGKILL);
		waitpid(p->peer, NULL, 0);
	}
	if (p->map != MAP_FAILED)
		munmap(p->map, p->map_pages * page_size);
	if (p->fd >= 0)
		close(p->fd);
	if (p->sock[0] >= 0)
		close(p->sock[0]);
	if (p->sock[1] >= 0)
		close(p->sock[1]);
}

FIXTURE_SETUP(futex)
{
	pair_setup(_metadata, &self->p, variant->backend);
}

FIXTURE_TEARDOWN(futex)
{
	pair_teardown(&self->p);
}

/* memfd_exclusive only: a memfd_secret file's size is set once. */
FIXTURE(futex_resize) {
	struct pair p;
};

FIXTURE_SETUP(futex_resize)
{
	pair_setup(_metadata, &self->p, EXCLUSIVE);
}

FIXTURE_TEARDOWN(futex_resize)
{
	pair_teardown(&self->p);
}

/*
 * Forks the peer, which runs @fn(socket) and exits with its result, then
 * creates the file (after the fork, so the peer only has it from the socket),
 * maps it and sends it. Returns the peer's mapping address.
 */
static void fork_peer(struct __test_metadata *_metadata, struct pair *p,
		      int (*fn)(int sock))
{
	p->peer = fork();
	ASSERT_LE(0, p->peer);
	if (p->peer == 0) {
		close(p->sock[0]);
		_exit(fn(p->sock[1]));
	}
}

/* Creates the file and maps it (p->map_pages pages). */
static void create_and_map(struct __test_metadata *_metadata, struct pair *p)
{
	p->fd = create_memory(p->backend, FILE_PAGES);
	ASSERT_LE(0, p->fd) TH_LOG("creating the file: %s", strerror(errno));
	p->map = mmap(NULL, p->map_pages * page_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, p->fd, 0);
	ASSERT_NE(MAP_FAILED, p->map);
}

static void start_peer(struct __test_metadata *_metadata, struct pair *p,
		       int (*fn)(int sock))
{
	uint64_t peer_addr;

	fork_peer(_metadata, p, fn);
	create_and_map(_metadata, p);
	ASSERT_EQ(0, send_fd(p->sock[0], p->fd));
	ASSERT_EQ(0, recv_val(p->sock[0], &peer_addr));
	ASSERT_NE((uintptr_t)p->map, peer_addr);
}

/* Waits for the peer and asserts that it exited with 0. */
static void end_peer(struct __test_metadata *_metadata, struct pair *p)
{
	int status;

	ASSERT_EQ(p->peer, waitpid(p->peer, &status, 0));
	p->peer = -1;
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("peer died of signal %d",
					      WTERMSIG(status));
	ASSERT_EQ(0, WEXITSTATUS(status)) TH_LOG("peer failed at step %d",
						 WEXITSTATUS(status));
}

/* Waits on word 0 until woken, then wakes the test waiting on word 1. */
static int peer_handshake(int sock)
{
	char *map;
	int fd;

	map = peer_map(sock, &fd, FILE_PAGES);
	if (map == MAP_FAILED)
		return 1;
	if (futex_wait(word_at(map, 0), 0)) {
		perror("peer: FUTEX_WAIT");
		return 2;
	}
	if (send_val(sock, 1))
		return 3;
	if (wake_one_until_woken(word_at(map, 4), FUTEX_WAKE) != 1) {
		perror("peer: FUTEX_WAKE did not wake the test");
		return 4;
	}
	return 0;
}

TEST_F_TIMEOUT(futex, wait_wake_two_processes, 120)
{
	struct pair *p = &self->p;
	uint32_t *word, *word2;
	uint64_t v;

	start_peer(_metadata, p, peer_handshake);
	word = word_at(p->map, 0);
	word2 = word_at(p->map, 4);

	/* The value is read through the user's mapping: 0, not 1. */
	ASSERT_EQ(-1, sys_futex(word, FUTEX_WAIT, 1, NULL, NULL, 0));
	ASSERT_EQ(EAGAIN, errno) TH_LOG("FUTEX_WAIT: %s", strerror(errno));

	/* The peer sleeps on its own mapping, at another address. */
	ASSERT_TRUE(sleeping_in_futex(p->peer));
	ASSERT_EQ(1, futex_wake(word, 1)) TH_LOG("FUTEX_WAKE: %s",
						 strerror(errno));
	ASSERT_EQ(0, recv_val(p->sock[0], &v));

	/* And the other way round: the peer wakes this process. */
	ASSERT_EQ(0, futex_wait(word2, 0)) TH_LOG("FUTEX_WAIT: %s",
						  strerror(errno));
	end_peer(_metadata, p);
}

/* The process-shared mutex, condition variable and state on page 0. */
struct ping_pong {
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	unsigned int turn;	/* whose turn: 0 the test, 1 the peer */
	unsigned int count;	/* rounds played by both */
	unsigned int waits[2];	/* pthread_cond_timedwait() calls of each */
};

/* @rounds turns of process @me; 0, or the failing pthread call's error. */
static int play(struct ping_pong *pp, unsigned int me, unsigned int rounds)
{
	struct timespec deadline;
	unsigned int i;
	int err;

	for (i = 0; i < rounds; i++) {
		err = pthread_mutex_lock(&pp->mutex);
		if (err)
			return err;
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += WAIT_S;
		while (pp->turn != me) {
			pp->waits[me]++;
			err = pthread_cond_timedwait(&pp->cond, &pp->mutex,
						     &deadline);
			if (err) {
				pthread_mutex_unlock(&pp->mutex);
				return err;
			}
		}
		pp->count++;
		pp->turn = !me;
		err = pthread_cond_signal(&pp->cond);
		if (!err)
			err = pthread_mutex_unlock(&pp->mutex);
		if (err)
			return err;
	}
	return 0;
}

static int peer_ping_pong(int sock)
{
	char *map;
	int err, fd;

	map = peer_map(sock, &fd, FILE_PAGES);
	if (map == MAP_FAILED)
		return 1;
	err = play((struct ping_pong *)map, 1, PING_PONG_ROUNDS);
	if (err) {
		fprintf(stderr, "peer: %s\n", strerror(err));
		return 2;
	}
	return 0;
}

/*
 * PTHREAD_PROCESS_SHARED mutex and condition variable: PING_PONG_ROUNDS turns
 * each, every turn handed over with pthread_cond_signal(). On a kernel that
 * refuses the futex, glibc aborts ("The futex facility returned an unexpected
 * error code") and the test fails on a signal.
 */
TEST_F_TIMEOUT(futex, pthread_mutex_condvar_ping_pong, 300)
{
	struct pair *p = &self->p;
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	struct ping_pong *pp;
	uint64_t peer_addr;
	int err;

	/* The state is set up before the peer can see the fd. */
	fork_peer(_metadata, p, peer_ping_pong);
	create_and_map(_metadata, p);
	pp = (struct ping_pong *)p->map;
	ASSERT_EQ(0, pthread_mutexattr_init(&ma));
	ASSERT_EQ(0, pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED));
	ASSERT_EQ(0, pthread_mutex_init(&pp->mutex, &ma));
	ASSERT_EQ(0, pthread_condattr_init(&ca));
	ASSERT_EQ(0, pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED));
	ASSERT_EQ(0, pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
	ASSERT_EQ(0, pthread_cond_init(&pp->cond, &ca));
	pp->turn = 1;
	ASSERT_EQ(0, send_fd(p->sock[0], p->fd));
	ASSERT_EQ(0, recv_val(p->sock[0], &peer_addr));
	ASSERT_NE((uintptr_t)p->map, peer_addr);

	err = play(pp, 0, PING_PONG_ROUNDS);
	ASSERT_EQ(0, err) TH_LOG("test side: %s", strerror(err));
	end_peer(_metadata, p);

	TH_LOG("%u rounds, condvar waits: test %u, peer %u", pp->count,
	       pp->waits[0], pp->waits[1]);
	ASSERT_EQ(2 * PING_PONG_ROUNDS, pp->count);
	ASSERT_EQ(1, pp->turn);
	/* Each side must have slept on the condition at least once. */
	ASSERT_LT(0, pp->waits[0]);
	ASSERT_LT(0, pp->waits[1]);
}

/*
 * A robust process-shared mutex whose owner dies while the test sleeps on it:
 * the exiting peer's robust list walk marks the lock FUTEX_OWNER_DIED and
 * wakes the waiter with a shared key made in the dying process.
 */
static int peer_die_holding(int sock)
{
	pthread_mutex_t *mutex;
	double deadline;
	char *map;
	int fd;

	map = peer_map(sock, &fd, FILE_PAGES);
	if (map == MAP_FAILED)
		return 1;
	mutex = (pthread_mutex_t *)map;
	if (pthread_mutex_lock(mutex))
		return 2;
	if (send_val(sock, 1))
		return 3;
	/* The test sets FUTEX_WAITERS in the lock word before it sleeps. */
	deadline = now_s() + WAIT_S;
	while (!(__atomic_load_n((unsigned int *)&mutex->__data.__lock,
				 __ATOMIC_ACQUIRE) & FUTEX_WAITERS)) {
		if (now_s() > deadline)
			return 4;
		usleep(1000);
	}
	/* Exits holding the lock. */
	return 0;
}

TEST_F_TIMEOUT(futex, robust_mutex_owner_dies, 120)
{
	struct pair *p = &self->p;
	struct timespec deadline;
	pthread_mutexattr_t ma;
	pthread_mutex_t *mutex;
	uint64_t peer_addr, v;

	fork_peer(_metadata, p, peer_die_holding);
	create_and_map(_metadata, p);
	mutex = (pthread_mutex_t *)p->map;
	ASSERT_EQ(0, pthread_mutexattr_init(&ma));
	ASSERT_EQ(0, pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED));
	ASSERT_EQ(0, pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST));
	ASSERT_EQ(0, pthread_mutex_init(mutex, &ma));
	ASSERT_EQ(0, send_fd(p->sock[0], p->fd));
	ASSERT_EQ(0, recv_val(p->sock[0], &peer_addr));
	ASSERT_NE((uintptr_t)p->map, peer_addr);
	ASSERT_EQ(0, recv_val(p->sock[0], &v));

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += WAIT_S;
	ASSERT_EQ(EOWNERDEAD, pthread_mutex_timedlock(mutex, &deadline));
	ASSERT_EQ(0, pthread_mutex_consistent(mutex));
	ASSERT_EQ(0, pthread_mutex_unlock(mutex));
	end_peer(_metadata, p);
}

/* Waits on word 0 until woken; the word must then still read 0. */
static int peer_wait_once(int sock)
{
	char *map;
	int fd;

	map = peer_map(sock, &fd, FILE_PAGES);
	if (map == MAP_FAILED)
		return 1;
	if (futex_wait(word_at(map, 0), 0)) {
		perror("peer: FUTEX_WAIT");
		return 2;
	}
	if (*word_at(map, 0) != 0)
		return 3;
	return 0;
}

/*
 * The waker unmaps its mapping: a wake at that address finds nothing mapped
 * (EFAULT) and leaves the waiter asleep; a new mapping of the same file
 * wakes it.
 */
TEST_F_TIMEOUT(futex, wake_after_munmap, 120)
{
	struct pair *p = &self->p;
	int status;

	start_peer(_metadata, p, peer_wait_once);
	ASSERT_TRUE(sleeping_in_futex(p->peer));

	ASSERT_EQ(0, munmap(p->map, p->map_pages * page_size));
	ASSERT_EQ(-1, futex_wake(word_at(p->map, 0), 1));
	ASSERT_EQ(EFAULT, errno);
	p->map = MAP_FAILED;
	ASSERT_EQ(0, waitpid(p->peer, &status, WNOHANG));

	p->map = mmap(NULL, p->map_pages * page_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, p->fd, 0);
	ASSERT_NE(MAP_FAILED, p->map);
	ASSERT_EQ(1, futex_wake(word_at(p->map, 0), 1)) TH_LOG("FUTEX_WAKE: %s",
							       strerror(errno));
	end_peer(_metadata, p);
}

/* The waker's mapping moves (mremap): the key is the file offset. */
TEST_F_TIMEOUT(futex, wake_after_mremap, 120)
{
	struct pair *p = &self->p;
	char *old, *moved, *target;

	start_peer(_metadata, p, peer_wait_once);
	ASSERT_TRUE(sleeping_in_futex(p->peer));

	target = mmap(NULL, p->map_pages * page_size, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, target);
	old = p->map;
	moved = mremap(old, p->map_pages * page_size, p->map_pages * page_size,
		       MREMAP_MAYMOVE | MREMAP_FIXED, target);
	ASSERT_EQ(target, moved) TH_LOG("mremap: %s", strerror(errno));
	p->map = moved;

	ASSERT_EQ(-1, futex_wake(word_at(old, 0), 1));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(1, futex_wake(word_at(moved, 0), 1)) TH_LOG("FUTEX_WAKE: %s",
							      strerror(errno));
	end_peer(_metadata, p);
}

/*
 * The lock of a PI futex passes from the test to the peer: FUTEX_LOCK_PI and
 * FUTEX_UNLOCK_PI take keys with write access and attach kernel state to them.
 */
static int peer_lock_pi(int sock)
{
	uint32_t *word;
	char *map;
	int fd;

	map = peer_map(sock, &fd, FILE_PAGES);
	if (map == MAP_FAILED)
		return 1;
	word = word_at(map, 0);
	if (sys_futex(word, FUTEX_LOCK_PI, 0, NULL, NULL, 0)) {
		perror("peer: FUTEX_LOCK_PI");
		return 2;
	}
	if ((*word & FUTEX_TID_MASK) != (uint32_t)gettid())
		return 3;
	if (sys_futex(word, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0)) {
		perror("peer: FUTEX_UNLOCK_PI");
		return 4;
	}
	return 0;
}

TEST_F_TIMEOUT(futex, pi_lock_handover, 120)
{
	struct pair *p = &self->p;
	uint64_t peer_addr;
	double deadline;
	uint32_t *word;

	fork_peer(_metadata, p, peer_lock_pi);
	create_and_map(_metadata, p);
	word = word_at(p->map, 0);
	/* Held by this thread, taken without the kernel, before the peer runs. */
	__atomic_store_n(word, gettid(), __ATOMIC_RELEASE);
	ASSERT_EQ(0, send_fd(p->sock[0], p->fd));
	ASSERT_EQ(0, recv_val(p->sock[0], &peer_addr));
	ASSERT_NE((uintptr_t)p->map, peer_addr);

	/* The kernel sets FUTEX_WAITERS when it queues the peer. */
	deadline = now_s() + WAIT_S;
	while (!(__atomic_load_n(word, __ATOMIC_ACQUIRE) & FUTEX_WAITERS) &&
	       now_s() < deadline)
		usleep(1000);
	ASSERT_TRUE(*word & FUTEX_WAITERS) TH_LOG("the peer never queued");
	ASSERT_EQ(0, sys_futex(word, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0))
		TH_LOG("FUTEX_UNLOCK_PI: %s", strerror(errno));
	end_peer(_metadata, p);
	ASSERT_EQ(0, __atomic_load_n(word, __ATOMIC_ACQUIRE));
}

/*
 * In one process: the access a mapping gives decides (PROT_READ waits but
 * takes no PI lock, PROT_NONE nothing), and beyond EOF is EFAULT as a fault
 * there would be SIGBUS.
 */
TEST_F(futex, access_and_eof)
{
	struct timespec ms = { .tv_nsec = 10 * 1000 * 1000 };
	struct pair *p = &self->p;
	char *ro, *none;
	uint32_t *word;

	/* One page more than the file has. */
	p->map_pages = FILE_PAGES + 1;
	create_and_map(_metadata, p);
	word = word_at(p->map, 0);

	ASSERT_EQ(0, futex_wake(word, 1)) TH_LOG("FUTEX_WAKE: %s",
						 strerror(errno));
	ASSERT_EQ(-1, sys_futex(word, FUTEX_WAIT, 0, &ms, NULL, 0));
	ASSERT_EQ(ETIMEDOUT, errno) TH_LOG("FUTEX_WAIT: %s", strerror(errno));
	ASSERT_EQ(0, sys_futex(word, FUTEX_LOCK_PI, 0, NULL, NULL, 0));
	ASSERT_EQ((uint32_t)gettid(), *word);
	ASSERT_EQ(0, sys_futex(word, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0));
	ASSERT_EQ(0, *word);

	/* The third page is mapped but beyond EOF. */
	ASSERT_EQ(-1, futex_wake((uint32_t *)(p->map + FILE_PAGES * page_size),
				 1));
	ASSERT_EQ(EFAULT, errno);
	/* Not aligned. */
	ASSERT_EQ(-1, futex_wake((uint32_t *)((char *)word + 1), 1));
	ASSERT_EQ(EINVAL, errno);

	ro = mmap(NULL, FILE_PAGES * page_size, PROT_READ, MAP_SHARED,
		  p->fd, 0);
	ASSERT_NE(MAP_FAILED, ro);
	word = word_at(ro, 0);
	ASSERT_EQ(-1, sys_futex(word, FUTEX_WAIT, 1, NULL, NULL, 0));
	ASSERT_EQ(EAGAIN, errno);
	ASSERT_EQ(-1, sys_futex(word, FUTEX_WAIT, 0, &ms, NULL, 0));
	ASSERT_EQ(ETIMEDOUT, errno);
	ASSERT_EQ(-1, sys_futex(word, FUTEX_LOCK_PI, 0, NULL, NULL, 0));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(0, munmap(ro, FILE_PAGES * page_size));

	none = mmap(NULL, FILE_PAGES * page_size, PROT_NONE, MAP_SHARED,
		    p->fd, 0);
	ASSERT_NE(MAP_FAILED, none);
	ASSERT_EQ(-1, futex_wake(word_at(none, 0), 1));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(0, munmap(none, FILE_PAGES * page_size));
}

/* FUTEX_PRIVATE_FLAG: keyed by mm and address, which needed no change. */
static void *private_waiter(void *arg)
{
	struct timespec t = { .tv_sec = WAIT_S };

	if (sys_futex(arg, FUTEX_WAIT_PRIVATE, 0, &t, NULL, 0))
		return (void *)(intptr_t)errno;
	return NULL;
}

TEST_F_TIMEOUT(futex, private_futex, 120)
{
	struct timespec ms = { .tv_nsec = 10 * 1000 * 1000 };
	struct pair *p = &self->p;
	pthread_t thread;
	uint32_t *word;
	void *res;

	create_and_map(_metadata, p);
	word = word_at(p->map, 0);

	ASSERT_EQ(-1, sys_futex(word, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0));
	ASSERT_EQ(EAGAIN, errno);
	ASSERT_EQ(-1, sys_futex(word, FUTEX_WAIT_PRIVATE, 0, &ms, NULL, 0));
	ASSERT_EQ(ETIMEDOUT, errno);
	ASSERT_EQ(0, pthread_create(&thread, NULL, private_waiter, word));
	ASSERT_EQ(1, wake_one_until_woken(word, FUTEX_WAKE_PRIVATE));
	ASSERT_EQ(0, pthread_join(thread, &res));
	ASSERT_EQ(NULL, res) TH_LOG("waiter: %s", strerror((intptr_t)res));
}

/*
 * The waker truncates the file below the futex word: a wake there is EFAULT,
 * as the offset is beyond EOF, and leaves the waiter asleep; once the file
 * grows again the same offset wakes it, and the word reads 0 (a new page).
 */
TEST_F_TIMEOUT(futex_resize, wake_after_truncate, 120)
{
	struct pair *p = &self->p;
	int status;

	start_peer(_metadata, p, peer_wait_once);
	ASSERT_TRUE(sleeping_in_futex(p->peer));
	*word_at(p->map, 4) = 1;

	ASSERT_EQ(0, ftruncate(p->fd, page_size));
	ASSERT_EQ(-1, futex_wake(word_at(p->map, 0), 1));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(-1, futex_wait(word_at(p->map, 0), 0));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(0, waitpid(p->peer, &status, WNOHANG));

	ASSERT_EQ(0, ftruncate(p->fd, FILE_PAGES * page_size));
	ASSERT_EQ(1, futex_wake(word_at(p->map, 0), 1)) TH_LOG("FUTEX_WAKE: %s",
							       strerror(errno));
	ASSERT_EQ(0, *word_at(p->map, 4));
	end_peer(_metadata, p);
}

/*
 * Races: one thread keeps unmapping and remapping (or shrinking and growing)
 * what another keeps calling FUTEX_WAKE on. Each wake must find either the
 * file (0, nobody waits) or nothing (EFAULT), never anything else; the debug
 * kernel's KASAN and lockdep watch the VMA and inode on the way.
 */
#define RACE_WAKES	20000

struct race {
	struct pair *p;
	char *addr;		/* where the mapping comes and goes */
	bool truncate;		/* resize the file instead */
	bool stop;		/* set by the waking thread when done */
	unsigned long cycles;
	int err;
};

static void *race_mapper(void *arg)
{
	struct race *r = arg;
	size_t len = FILE_PAGES * page_size;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		if (r->truncate) {
			if (ftruncate(r->p->fd, page_size) ||
			    ftruncate(r->p->fd, len)) {
				r->err = errno;
				break;
			}
		} else {
			if (munmap(r->addr, len) ||
			    mmap(r->addr, len, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_FIXED, r->p->fd, 0) != r->addr) {
				r->err = errno;
				break;
			}
		}
		r->cycles++;
	}
	return NULL;
}

static void race_wakes(struct __test_metadata *_metadata, struct pair *p,
		       bool truncate)
{
	struct race r = { .p = p, .addr = p->map, .truncate = truncate };
	unsigned long zero = 0, efault = 0, i;
	pthread_t thread;
	int ret;

	ASSERT_EQ(0, pthread_create(&thread, NULL, race_mapper, &r));
	for (i = 0; i < RACE_WAKES; i++) {
		ret = futex_wake(word_at(p->map, 0), 1);
		if (ret == 0)
			zero++;
		else if (ret == -1 && errno == EFAULT)
			efault++;
		else
			break;
		if (!(i % 64))
			sched_yield();
	}
	__atomic_store_n(&r.stop, true, __ATOMIC_RELAXED);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	TH_LOG("%lu wakes: %lu found the file, %lu EFAULT; %lu %s cycles",
	       i, zero, efault, r.cycles, truncate ? "truncate" : "munmap");
	ASSERT_EQ(0, r.err) TH_LOG("mapper: %s", strerror(r.err));
	ASSERT_EQ(RACE_WAKES, i) TH_LOG("FUTEX_WAKE returned %d: %s", ret,
					strerror(errno));
	ASSERT_LT(0, zero);
}

TEST_F_TIMEOUT(futex, wake_races_munmap, 300)
{
	create_and_map(_metadata, &self->p);
	race_wakes(_metadata, &self->p, false);
}

TEST_F_TIMEOUT(futex_resize, wake_races_truncate, 300)
{
	create_and_map(_metadata, &self->p);
	race_wakes(_metadata, &self->p, true);
}

static void __attribute__((constructor)) init_page_size(void)
{
	page_size = sysconf(_SC_PAGESIZE);
}

TEST_HARNESS_MAIN
