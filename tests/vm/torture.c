// SPDX-License-Identifier: GPL-2.0
/*
 * torture: a bounded-time mix of everything a hostile user and a busy system
 * do to memfd_exclusive memory at once, for the debug kernel (KASAN, lockdep,
 * DEBUG_VM): fault, truncate, seal, mremap, mprotect, madvise (DONTNEED,
 * REMOVE, PAGEOUT, COLD, POPULATE_WRITE and the rest), fork, O_PATH reopen of
 * /proc/self/fd/N and path-based truncate/chmod through it, close,
 * SCM_RIGHTS, compaction, drop_caches, soft offline (sysfs and
 * MADV_SOFT_OFFLINE), the pool's high-water mark, and a memory cgroup whose
 * memory.max the exclusive pages fill.
 *
 * Actors, each a process (--actors picks some, default all):
 *   generic  NPROC+1 processes of two threads each, random ops on four files
 *   big      two processes: fault a 64 MiB file in full, truncate it to 0, loop
 *   drop     writes 2 to /proc/sys/vm/drop_caches in a loop
 *   system   compaction, soft offline of pages the others used, high-water mark
 *   opath    O_PATH reopen, close, then truncate/chmod through the O_PATH fd,
 *            also racing the close against the truncate from another thread
 *   cgroup   a process in a memory cgroup (memory.max 16 MiB) faulting a
 *            64 MiB file: SIGBUS past the limit, never more pages than it
 * The kernel log is watched as it streams (/dev/kmsg): any report fails the
 * run, as do the program's own checks (new pages read zero; no more pages
 * than memory.max in the cgroup) and an actor killed by a signal.
 *
 * Usage: torture [--seconds N] [--seed S] [--actors a,b,...] [--skip op,...]
 *                [--backend exclusive|secret|create] [--nr-exclusive NR]
 *                [--mem-budget MB]
 *   --nr-exclusive: the syscall number of memfd_exclusive(2) (default: the
 *   uapi header's, or whichever of 600 and 500 the kernel answers).
 *   --mem-budget: the run stops (FAIL) when MemAvailable falls by more than
 *   this (default 1024 MiB) or below a tenth of the memory (vt_membudget).
 *   --skip takes op names as printed in the summary (e.g. opath-close).
 *   system and cgroup change machine-wide state (drop_caches, compaction,
 *   soft offline, cgroups): they run by default only inside the test VM
 *   (XMEM_VM=1); elsewhere name them in --actors.
 * Exit: 0 pass, 1 fail, 2 usage, 77 no memfd_exclusive(2) (and no --backend).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sys/prctl.h>
#include <getopt.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

#include "vmtest.h"

#define NR_SLOTS	4
#define SLOT_PAGES	64
#define BIG_BYTES	(64UL << 20)
#define CG_MAX_BYTES	(16UL << 20)
#define NR_PFNS		256
#define MAX_CHILDREN	4	/* outstanding forks per generic actor */
#define MAX_SOFT_OK	64	/* pages soft offline may take out for good */

#define OPS(X)								\
	X(create) X(truncate) X(fault) X(populate_write) X(dontneed)	\
	X(remove) X(pageout) X(cold) X(madvise_other) X(mremap)		\
	X(mprotect) X(seal) X(fork) X(opath) X(opath_reopen)		\
	X(opath_close) X(opath_race) X(close) X(scm_rights) X(munmap)	\
	X(madv_soft_offline) X(big_cycle) X(drop_caches) X(compact)	\
	X(soft_offline) X(high_water) X(cgroup_cycle) X(cgroup_sigbus)

#define OP_ENUM(n) OP_##n,
enum op { OPS(OP_ENUM) NR_OPS };
#define OP_NAME(n) #n,
static const char *const op_names[NR_OPS] = { OPS(OP_NAME) };

/* Shared by all actors (MAP_SHARED). */
struct stats {
	atomic_long ops[NR_OPS];
	atomic_long errs[NR_OPS];
	atomic_int last_errno[NR_OPS];
	atomic_long failures;
	atomic_int stop;	/* set by main: every actor stops now */
	atomic_long sigbus, sigsegv;
	atomic_long soft_ok;
	atomic_ulong pfns[NR_PFNS];
	atomic_uint pfn_next;
};

static struct stats *st;
static time_t deadline;
static long page_size;
static enum vt_backend backend = VT_EXCLUSIVE;
static int is_root;
static int in_vm;	/* XMEM_VM=1: machine-wide ops allowed */
static char skip_list[512];

#define fail(...)							\
	do {								\
		fprintf(stderr, "torture: FAIL: " __VA_ARGS__);		\
		fputc('\n', stderr);					\
		atomic_fetch_add(&st->failures, 1);			\
	} while (0)

static int skipped(enum op op)
{
	char name[40];

	snprintf(name, sizeof(name), ",%s,", op_names[op]);
	for (char *p = name; *p; p++)
		if (*p == '_')
			*p = '-';
	return strstr(skip_list, name) != NULL;
}

/* Counts one op; @ret < 0 counts an error with errno. */
static int count(enum op op, int ret)
{
	atomic_fetch_add(&st->ops[op], 1);
	if (ret < 0) {
		atomic_fetch_add(&st->errs[op], 1);
		atomic_store(&st->last_errno[op], errno);
	}
	return ret;
}

static int expired(void)
{
	return time(NULL) >= deadline || atomic_load(&st->stop);
}

/* Remembers the PFNs behind a few pages of a mapping, for soft offline. */
static void note_pfns(void *addr, size_t len, uint64_t *seed)
{
	uint64_t ent;
	uintptr_t va;
	int fd, i;

	if (!is_root)
		return;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	for (i = 0; i < 4; i++) {
		va = (uintptr_t)addr + vt_rnd(seed, len / page_size) * page_size;
		if (pread(fd, &ent, sizeof(ent), va / page_size * 8) ==
		    sizeof(ent) && (ent >> 63) && (ent & ((1ULL << 55) - 1)))
			atomic_store(&st->pfns[atomic_fetch_add(&st->pfn_next, 1) %
					       NR_PFNS],
				     ent & ((1ULL << 55) - 1));
	}
	close(fd);
}

/* Generic actors: random ops on a few files, two threads per process. */

struct slot {
	pthread_rwlock_t lock;	/* write: fd or mapping change; read: use */
	int fd;
	unsigned char *map;
	size_t len;
	int sealing;
};

static struct slot slots[NR_SLOTS];
static int self_sock[2];
static atomic_int nr_children;

/* Called with the slot write-locked. */
static void slot_clear(struct slot *s)
{
	if (s->map)
		count(OP_munmap, munmap(s->map, s->len));
	if (s->fd >= 0)
		close(s->fd);
	s->map = NULL;
	s->len = 0;
	s->fd = -1;
}

/* Called with the slot write-locked. */
static void slot_create(struct slot *s, uint64_t *seed)
{
	size_t pages = 1 + vt_rnd(seed, SLOT_PAGES);

	slot_clear(s);
	s->sealing = vt_chance(seed, 2);
	s->fd = count(OP_create, vt_memfd(backend, "torture", s->sealing));
	if (s->fd < 0)
		return;
	if (ftruncate(s->fd, pages * page_size))
		return;
	s->map = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, s->fd, 0);
	if (s->map == MAP_FAILED) {
		s->map = NULL;
		return;
	}
	s->len = pages * page_size;
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

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS) {
		errno = EBADMSG;
		return -1;
	}
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static void proc_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/*
 * O_PATH reopen of the file through /proc/self/fd, then attribute changes
 * through the O_PATH fd, with the original fd open or (opath-close) after
 * it and the mapping are gone: the O_PATH fd pins the inode, not the file.
 * Called with the slot write-locked.
 */
static void op_opath(struct slot *s, uint64_t *seed)
{
	char path[64], opath[64];
	struct stat sb;
	int o, r;

	proc_path(path, sizeof(path), s->fd);
	o = count(OP_opath, open(path, O_PATH | O_CLOEXEC));
	if (o < 0)
		return;
	proc_path(opath, sizeof(opath), o);
	if (vt_chance(seed, 3)) {
		/* A full reopen of the inode (memfd allows it). */
		r = count(OP_opath_reopen, open(opath, O_RDWR | O_CLOEXEC));
		if (r >= 0)
			close(r);
	}
	if (!skipped(OP_opath_close) && vt_chance(seed, 2)) {
		slot_clear(s);
		count(OP_opath_close, 0);
	}
	fstat(o, &sb);
	switch (vt_rnd(seed, 3)) {
	case 0:
		count(OP_opath, truncate(opath, vt_rnd(seed, SLOT_PAGES) *
					 page_size));
		break;
	case 1:
		count(OP_opath, chmod(opath, vt_chance(seed, 2) ? 0700 : 0600));
		break;
	default:
		count(OP_opath, fchownat(o, "", getuid(), getgid(),
					 AT_EMPTY_PATH));
	}
	close(o);
}

static void reap_children(int block)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
		atomic_fetch_sub(&nr_children, 1);
		if (WIFSIGNALED(status))
			fail("fork child %d killed by signal %d", pid,
			     WTERMSIG(status));
	}
}

/* The child of a fork: touches, resizes and remaps what it inherited. */
static void forked_child(uint64_t seed)
{
	int i;

	/*
	 * No PR_SET_PDEATHSIG here: it fires when the forking *thread* ends
	 * (at the deadline), which would kill a child still at work. The
	 * child's work is finite (one pass over the slots).
	 */
	for (i = 0; i < NR_SLOTS; i++) {
		struct slot *s = &slots[i];

		if (!s->map)
			continue;
		vt_touch(s->map, s->len, page_size, vt_chance(&seed, 2),
			 (unsigned char)seed);
		if (vt_chance(&seed, 3) && s->fd >= 0 &&
		    ftruncate(s->fd, vt_rnd(&seed, SLOT_PAGES) * page_size))
			errno = 0;
		if (vt_chance(&seed, 3))
			mremap(s->map, s->len, s->len * 2, MREMAP_MAYMOVE);
	}
	_exit(0);
}

static const int madv_other[] = {
	MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_FREE,
	MADV_DONTFORK, MADV_DOFORK, MADV_MERGEABLE, MADV_UNMERGEABLE,
	MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP,
	MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_POPULATE_READ,
	MADV_DONTNEED_LOCKED, MADV_COLLAPSE,
};

static void generic_op(uint64_t *seed)
{
	struct slot *s = &slots[vt_rnd(seed, NR_SLOTS)];
	static const int adv[] = {
		MADV_DONTNEED, MADV_REMOVE, MADV_PAGEOUT, MADV_COLD,
		MADV_POPULATE_WRITE,
	};
	static const enum op adv_op[] = {
		OP_dontneed, OP_remove, OP_pageout, OP_cold, OP_populate_write,
	};
	unsigned int r = vt_rnd(seed, 20);
	size_t off, len;
	void *p;
	int fd, i;

	/* Ops that change the fd or the mapping. */
	if (r >= 14) {
		pthread_rwlock_wrlock(&s->lock);
		if (s->fd < 0 || r == 14) {
			slot_create(s, seed);
		} else if (r == 15 && s->map) {
			/* Grow, shrink or move; sometimes MREMAP_DONTUNMAP. */
			len = (1 + vt_rnd(seed, 2 * SLOT_PAGES)) * page_size;
			if (vt_chance(seed, 4)) {
				p = mremap(s->map, s->len, s->len,
					   MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
				if (count(OP_mremap, p == MAP_FAILED ? -1 : 0) == 0) {
					munmap(s->map, s->len);
					s->map = p;
				}
			} else {
				p = mremap(s->map, s->len, len, MREMAP_MAYMOVE);
				if (count(OP_mremap, p == MAP_FAILED ? -1 : 0) == 0) {
					s->map = p;
					s->len = len;
				}
			}
		} else if (r == 16 && !skipped(OP_opath)) {
			op_opath(s, seed);
		} else if (r == 17) {
			/* Close the fd, keeping the mapping alive, or both. */
			count(OP_close, 0);
			if (vt_chance(seed, 2)) {
				slot_clear(s);
			} else {
				close(s->fd);
				s->fd = -1;
				if (!s->map)
					slot_clear(s);
			}
		} else if (r == 18 && !skipped(OP_fork)) {
			/* At most MAX_CHILDREN live forks of this process. */
			if (atomic_fetch_add(&nr_children, 1) < MAX_CHILDREN) {
				uint64_t cseed = vt_next(seed);
				pid_t pid = fork();

				if (pid == 0)
					forked_child(cseed);
				if (count(OP_fork, pid) < 0)
					atomic_fetch_sub(&nr_children, 1);
			} else {
				atomic_fetch_sub(&nr_children, 1);
			}
		} else if (s->fd >= 0) {
			/* SCM_RIGHTS to ourselves; the received fd replaces ours. */
			if (count(OP_scm_rights, send_fd(self_sock[0], s->fd)) == 0) {
				fd = recv_fd(self_sock[1]);
				if (fd >= 0) {
					close(s->fd);
					s->fd = fd;
				}
			}
		}
		pthread_rwlock_unlock(&s->lock);
		reap_children(0);
		return;
	}

	pthread_rwlock_rdlock(&s->lock);
	if (!s->map || s->fd < 0) {
		pthread_rwlock_unlock(&s->lock);
		return;
	}
	off = vt_rnd(seed, s->len / page_size) * page_size;
	len = (1 + vt_rnd(seed, (s->len - off) / page_size)) * page_size;
	switch (r) {
	case 0:
	case 1:
	case 2:
		count(OP_fault, 0);
		vt_touch(s->map + off, len, page_size, r != 0,
			 1 + vt_rnd(seed, 255));
		if (vt_chance(seed, 16))
			note_pfns(s->map + off, len, seed);
		break;
	case 3:
	case 4:
		count(OP_truncate, ftruncate(s->fd, vt_rnd(seed, SLOT_PAGES *
						      page_size + 1)));
		break;
	case 5:
	case 6:
	case 7:
	case 8:
		i = vt_rnd(seed, 5);
		if (!skipped(adv_op[i]))
			count(adv_op[i], madvise(s->map + off, len, adv[i]));
		break;
	case 9:
		i = vt_rnd(seed, sizeof(madv_other) / sizeof(madv_other[0]));
		count(OP_madvise_other, madvise(s->map + off, len,
						madv_other[i]));
		break;
	case 10:
		count(OP_mprotect, mprotect(s->map + off, len,
					    vt_chance(seed, 3) ? PROT_READ :
					    PROT_READ | PROT_WRITE));
		break;
	case 11:
		if (s->sealing && vt_chance(seed, 4)) {
			static const int seals[] = {
				F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE,
				F_SEAL_FUTURE_WRITE, F_SEAL_EXEC, F_SEAL_SEAL,
			};

			count(OP_seal, fcntl(s->fd, F_ADD_SEALS,
					     seals[vt_rnd(seed, 6)]));
		} else {
			count(OP_seal, fcntl(s->fd, F_GET_SEALS));
		}
		break;
	case 12:
		if (is_root && in_vm && !skipped(OP_madv_soft_offline))
			count(OP_madv_soft_offline,
			      madvise(s->map + off, page_size,
				      MADV_SOFT_OFFLINE));
		break;
	default:
		if (!skipped(OP_populate_write))
			count(OP_populate_write,
			      madvise(s->map, s->len, MADV_POPULATE_WRITE));
	}
	pthread_rwlock_unlock(&s->lock);
}

struct thread_arg {
	pthread_t thread;
	uint64_t seed;
};

static void *generic_thread(void *arg)
{
	struct thread_arg *t = arg;

	while (!expired())
		generic_op(&t->seed);
	return NULL;
}

static int actor_generic(uint64_t seed)
{
	struct thread_arg t[2];
	int i;

	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, self_sock)) {
		fail("socketpair: %s", strerror(errno));
		return 1;
	}
	for (i = 0; i < NR_SLOTS; i++) {
		pthread_rwlock_init(&slots[i].lock, NULL);
		slots[i].fd = -1;
	}
	for (i = 0; i < 2; i++) {
		t[i].seed = seed + i;
		pthread_create(&t[i].thread, NULL, generic_thread, &t[i]);
	}
	for (i = 0; i < 2; i++)
		pthread_join(t[i].thread, NULL);
	reap_children(1);
	return 0;
}

/*
 * big: fault a 64 MiB file in full, check that new pages read zero, truncate
 * it to nothing, again and again: thousands of pages and dozens of pool
 * blocks released and recycled per cycle while others drop caches.
 */
static int actor_big(uint64_t seed)
{
	size_t pages = BIG_BYTES / page_size, i, pg;
	unsigned char *map = NULL;
	unsigned int cycle = 0;
	int fd = -1;

	while (!expired()) {
		if (fd < 0 || cycle % 8 == 7) {
			if (map)
				munmap(map, BIG_BYTES);
			if (fd >= 0)
				close(fd);
			map = NULL;
			fd = count(OP_create, vt_memfd(backend, "torture-big", 0));
			if (fd < 0) {
				fail("big: create: %s", strerror(errno));
				return 1;
			}
			map = mmap(NULL, BIG_BYTES, PROT_READ | PROT_WRITE,
				   MAP_SHARED, fd, 0);
			if (map == MAP_FAILED) {
				fail("big: mmap: %s", strerror(errno));
				return 1;
			}
		}
		cycle++;
		if (count(OP_truncate, ftruncate(fd, BIG_BYTES)))
			continue;
		/* A file that was empty has only zero pages. */
		for (i = 0; i < 16; i++) {
			pg = vt_rnd(&seed, pages);
			if (vt_touch(map + pg * page_size, 1, page_size, 0, 0) &&
			    map[pg * page_size + vt_rnd(&seed, page_size)]) {
				fail("big: page %zu of a new file is not zero", pg);
				break;
			}
		}
		if (vt_chance(&seed, 2) && !skipped(OP_populate_write))
			count(OP_populate_write,
			      madvise(map, BIG_BYTES, MADV_POPULATE_WRITE));
		vt_touch(map, BIG_BYTES, page_size, 1, 1 + cycle % 255);
		note_pfns(map, BIG_BYTES, &seed);
		switch (vt_rnd(&seed, 4)) {
		case 0:
			count(OP_cold, madvise(map, BIG_BYTES / 2, MADV_COLD));
			break;
		case 1:
			count(OP_pageout, madvise(map, BIG_BYTES / 2,
						  MADV_PAGEOUT));
			break;
		case 2:
			count(OP_dontneed, madvise(map + BIG_BYTES / 2,
						   BIG_BYTES / 2,
						   MADV_DONTNEED));
			break;
		}
		if (vt_chance(&seed, 2))
			count(OP_truncate, ftruncate(fd, vt_rnd(&seed, BIG_BYTES)));
		count(OP_truncate, ftruncate(fd, 0));
		count(OP_big_cycle, 0);
	}
	return 0;
}

static int actor_drop(uint64_t seed)
{
	(void)seed;
	while (!expired()) {
		if (count(OP_drop_caches,
			  vt_write_file("/proc/sys/vm/drop_caches", "2")) < 0) {
			fail("drop_caches: %s", strerror(errno));
			return 1;
		}
	}
	return 0;
}

static int actor_system(uint64_t seed)
{
	static const char *const marks[] = { "0", "8192", "65536" };
	const char *hw = MEMFD_EXCLUSIVE_SYSFS_DIR "/pool_high_water_kb";
	char old[32] = "8192", buf[64];
	unsigned long pfn;
	FILE *f;
	int err;

	f = fopen(hw, "r");
	if (f) {
		if (!fgets(old, sizeof(old), f))
			strcpy(old, "8192");
		fclose(f);
	}
	while (!expired()) {
		switch (vt_rnd(&seed, 4)) {
		case 0:
			err = vt_write_file("/proc/sys/vm/compact_memory", "1");
			errno = -err;
			if (count(OP_compact, err ? -1 : 0) < 0)
				fail("compact_memory: %s", strerror(-err));
			break;
		case 1:
			if (backend != VT_EXCLUSIVE)
				break;
			err = vt_write_file(hw, marks[vt_rnd(&seed, 3)]);
			errno = -err;
			if (count(OP_high_water, err ? -1 : 0) < 0)
				fail("%s: %s", hw, strerror(-err));
			break;
		default:
			pfn = atomic_load(&st->pfns[vt_rnd(&seed, NR_PFNS)]);
			if (!pfn || skipped(OP_soft_offline) ||
			    atomic_load(&st->soft_ok) >= MAX_SOFT_OK)
				break;
			snprintf(buf, sizeof(buf), "%#lx", pfn * page_size);
			err = vt_write_file("/sys/devices/system/memory/soft_offline_page",
					    buf);
			errno = -err;
			count(OP_soft_offline, err ? -1 : 0);
			if (err == -ENOENT || err == -EACCES) {
				fail("soft_offline_page: %s", strerror(-err));
				return 1;
			}
			if (!err)
				atomic_fetch_add(&st->soft_ok, 1);
		}
		usleep(20000);
	}
	vt_write_file(hw, old);
	return 0;
}

struct race {
	char path[64];
	atomic_int go, done;
};

static void *race_truncate(void *arg)
{
	struct race *r = arg;
	int i;

	while (!atomic_load(&r->go))
		;
	for (i = 0; i < 64 && !atomic_load(&r->done); i++)
		count(OP_opath_race, truncate(r->path, (i % 4) * page_size));
	return NULL;
}

/*
 * opath: the inode pinned by an O_PATH fd outlives the file: truncate and
 * chmod through /proc/self/fd/<O_PATH fd> after close(), and a close()
 * racing such truncates from another thread.
 */
static int actor_opath(uint64_t seed)
{
	char path[64];
	struct race r;
	pthread_t t;
	void *map;
	int fd, o;

	while (!expired()) {
		fd = count(OP_create, vt_memfd(backend, "torture-opath", 1));
		if (fd < 0) {
			fail("opath: create: %s", strerror(errno));
			return 1;
		}
		ftruncate(fd, SLOT_PAGES * page_size);
		map = mmap(NULL, SLOT_PAGES * page_size, PROT_READ | PROT_WRITE,
			   MAP_SHARED, fd, 0);
		if (map != MAP_FAILED) {
			vt_touch(map, SLOT_PAGES * page_size, page_size, 1, 0x5a);
			munmap(map, SLOT_PAGES * page_size);
		}
		proc_path(path, sizeof(path), fd);
		o = count(OP_opath, open(path, O_PATH | O_CLOEXEC));
		if (o < 0) {
			close(fd);
			continue;
		}
		memset(&r, 0, sizeof(r));
		proc_path(r.path, sizeof(r.path), o);
		if (vt_chance(&seed, 2) && !skipped(OP_opath_race)) {
			/* close() while the other thread truncates by path. */
			pthread_create(&t, NULL, race_truncate, &r);
			atomic_store(&r.go, 1);
			usleep(vt_rnd(&seed, 200));
			close(fd);
			atomic_store(&r.done, 1);
			pthread_join(t, NULL);
		} else if (!skipped(OP_opath_close)) {
			close(fd);
			count(OP_opath_close, 0);
			count(OP_opath, truncate(r.path, page_size));
			count(OP_opath, chmod(r.path, 0700));
			count(OP_opath, truncate(r.path, 0));
		} else {
			count(OP_opath, truncate(r.path, page_size));
			count(OP_opath, chmod(r.path, 0700));
			close(fd);
		}
		close(o);
	}
	return 0;
}

static long read_long(const char *path)
{
	char buf[64] = "";
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return strcmp(buf, "max\n") ? atol(buf) : -2;
}

/*
 * cgroup: in a memory cgroup with memory.max 16 MiB, fault a 64 MiB file:
 * the fault past the limit gets SIGBUS (no OOM kill, the pages cannot be
 * reclaimed), and no more pages than the limit were ever faulted in.
 * Page tables are made first (one page per 2 MiB), while there is room.
 */
static int cgroup_child(const char *cg, uint64_t seed)
{
	size_t pages = BIG_BYTES / page_size, n, i, stride = 512;
	char path[256];
	unsigned char *map;
	long cur;
	int fd, w;

	snprintf(path, sizeof(path), "%s/memory.current", cg);
	while (!expired()) {
		/* Released pages stay charged until the pool recycles them. */
		for (w = 0; w < 100 && (cur = read_long(path)) > (long)CG_MAX_BYTES / 4;
		     w++)
			usleep(20000);
		fd = count(OP_create, vt_memfd(backend, "torture-cgroup", 0));
		if (fd < 0) {
			fail("cgroup: create: %s", strerror(errno));
			return 1;
		}
		map = mmap(NULL, BIG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
			   fd, 0);
		if (map == MAP_FAILED || ftruncate(fd, BIG_BYTES)) {
			fail("cgroup: mmap/ftruncate: %s", strerror(errno));
			return 1;
		}
		n = 0;
		for (i = 0; i < pages; i += stride)
			n += vt_touch(map + i * page_size, 1, page_size, 1, 1);
		for (i = 0; i < pages; i++) {
			if (i % stride == 0)
				continue;
			if (!vt_touch(map + i * page_size, 1, page_size, 1, 2))
				break;
			n++;
		}
		if (n >= pages) {
			fail("cgroup: faulted all %zu pages of 64 MiB under memory.max %lu kB",
			     n, CG_MAX_BYTES >> 10);
		} else {
			count(OP_cgroup_sigbus, 0);
			if (n * page_size > CG_MAX_BYTES)
				fail("cgroup: %zu pages (%zu kB) faulted in under memory.max %lu kB",
				     n, n * page_size >> 10, CG_MAX_BYTES >> 10);
		}
		if (vt_chance(&seed, 2))
			count(OP_populate_write,
			      madvise(map, BIG_BYTES, MADV_POPULATE_WRITE));
		count(OP_truncate, ftruncate(fd, 0));
		munmap(map, BIG_BYTES);
		close(fd);
		count(OP_cgroup_cycle, 0);
	}
	return 0;
}

static int actor_cgroup(uint64_t seed)
{
	char cg[128], path[256], val[32];
	int status, err, i;
	pid_t pid;

	snprintf(cg, sizeof(cg), "/sys/fs/cgroup/xmem-torture-%d", getpid());
	/* The root cgroup may already delegate memory: EBUSY etc. are fine. */
	vt_write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
	if (mkdir(cg, 0755)) {
		fail("cgroup: mkdir %s: %s", cg, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/memory.max", cg);
	snprintf(val, sizeof(val), "%lu", CG_MAX_BYTES);
	err = vt_write_file(path, val);
	if (err) {
		fail("cgroup: %s: %s (no memory controller?)", path,
		     strerror(-err));
		rmdir(cg);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/memory.swap.max", cg);
	vt_write_file(path, "0");
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
		snprintf(val, sizeof(val), "%d", getpid());
		err = vt_write_file(path, val);
		if (err) {
			fail("cgroup: join: %s", strerror(-err));
			_exit(1);
		}
		_exit(cgroup_child(cg, seed));
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0) {
		fail("cgroup: fork/wait: %s", strerror(errno));
		return 1;
	}
	if (WIFSIGNALED(status))
		fail("cgroup: child killed by signal %d", WTERMSIG(status));
	/* The memcg lingers while the pool still holds charged pages. */
	for (i = 0; i < 100 && rmdir(cg); i++)
		usleep(20000);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static const struct {
	const char *name;
	int (*fn)(uint64_t seed);
	int machine_wide;	/* changes state outside its own memory */
} actors[] = {
	{ "generic", actor_generic, 0 },
	{ "big", actor_big, 0 },
	{ "drop", actor_drop, 1 },
	{ "system", actor_system, 1 },
	{ "opath", actor_opath, 0 },
	{ "cgroup", actor_cgroup, 1 },
};

#define NR_ACTOR_KINDS	(sizeof(actors) / sizeof(actors[0]))

static void usage(void)
{
	fprintf(stderr, "usage: torture [--seconds N] [--seed S] [--actors a,b] [--skip op,op]\n"
		"               [--backend exclusive|secret|create]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seconds", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 's' },
		{ "actors", required_argument, NULL, 'a' },
		{ "skip", required_argument, NULL, 'k' },
		{ "backend", required_argument, NULL, 'b' },
		{ "nr-exclusive", required_argument, NULL, 'N' },
		{ "mem-budget", required_argument, NULL, 'M' },
		{ NULL, 0, NULL, 0 },
	};
	struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
	const char *actor_list = NULL;
	pid_t pids[64];
	const char *pid_names[64];
	int seconds = 60, nproc, n = 0, i, c, j, k, status, rc = 0;
	int fork_failed = 0, stopped = 0;
	long mem_budget = 1024;
	struct vt_membudget mb;
	int backend_set = 0, nr_set = 0;
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	struct vt_kmsg kmsg;
	char name[40];

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			seconds = atoi(optarg);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'a':
			actor_list = optarg;
			break;
		case 'k':
			snprintf(skip_list, sizeof(skip_list), ",%s,", optarg);
			break;
		case 'N':
			vt_nr_exclusive = atol(optarg);
			nr_set = 1;
			break;
		case 'M':
			mem_budget = atol(optarg);
			break;
		case 'b':
			for (i = 0; i < VT_NR_BACKENDS; i++)
				if (!strcmp(optarg, vt_backend_name[i] + 6) ||
				    !strcmp(optarg, vt_backend_name[i]))
					break;
			if (i == VT_NR_BACKENDS) {
				usage();
				return 2;
			}
			backend = i;
			backend_set = 1;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (seconds <= 0 || optind != argc) {
		usage();
		return 2;
	}
	if (backend == VT_EXCLUSIVE && !vt_have_exclusive()) {
		printf("torture: SKIP, no %s (use --backend secret|create)\n",
		       MEMFD_EXCLUSIVE_SYSFS_DIR);
		return backend_set ? 1 : 77;
	}
	if (backend == VT_EXCLUSIVE && !nr_set && vt_probe_nr_exclusive() < 0) {
		printf("torture: FAIL: %s exists but no syscall number (%d, 600, 500) is memfd_exclusive(2)\n",
		       MEMFD_EXCLUSIVE_SYSFS_DIR, __NR_memfd_exclusive);
		return 1;
	}
	in_vm = getenv("XMEM_VM") && !strcmp(getenv("XMEM_VM"), "1");
	page_size = sysconf(_SC_PAGESIZE);
	nproc = sysconf(_SC_NPROCESSORS_ONLN);
	is_root = geteuid() == 0;
	if (is_root)
		setrlimit(RLIMIT_MEMLOCK, &unlimited);
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (st == MAP_FAILED) {
		perror("torture: mmap");
		return 1;
	}
	vt_install_fault_handlers();
	signal(SIGPIPE, SIG_IGN);

	printf("torture: seed %#llx, %d CPUs online, %d s, backend %s",
	       (unsigned long long)seed, nproc, seconds,
	       vt_backend_name[backend]);
	if (backend == VT_EXCLUSIVE)
		printf(" (syscall %ld)", vt_nr_exclusive);
	printf(", actors:");
	/* Silence "drop_caches: 2" lines, which would flood the kernel log. */
	if (is_root && in_vm)
		vt_write_file("/proc/sys/vm/drop_caches", "4");
	/* Opened now, watched once the actors are forked (see vt_kmsg_open). */
	if (vt_kmsg_open(&kmsg, "torture"))
		printf(" (kernel log not watched: %s)", strerror(errno));
	vt_membudget_init(&mb, mem_budget);
	deadline = time(NULL) + seconds;
	fflush(stdout);

	for (k = 0; k < (int)NR_ACTOR_KINDS; k++) {
		int copies;

		snprintf(name, sizeof(name), ",%s,", actors[k].name);
		if (actor_list) {
			char list[256];

			snprintf(list, sizeof(list), ",%s,", actor_list);
			if (!strstr(list, name))
				continue;
		} else if (actors[k].machine_wide && !in_vm) {
			continue;
		}
		copies = !strcmp(actors[k].name, "generic") ? nproc + 1 :
			 !strcmp(actors[k].name, "big") ? 2 : 1;
		for (j = 0; j < copies && n < 64 && !fork_failed; j++) {
			uint64_t aseed = seed + 1000 * (n + 1);
			pid_t pid = fork();

			if (pid == 0) {
				/* Gone with us, should we die before the deadline. */
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				_exit(actors[k].fn(aseed));
			}
			if (pid < 0) {
				/* Stop the ones started, below; never kill(-1). */
				fprintf(stderr, "torture: FAIL: fork: %s\n",
					strerror(errno));
				atomic_store(&st->stop, 1);
				fork_failed = 1;
				break;
			}
			pid_names[n] = actors[k].name;
			pids[n++] = pid;
			printf(" %s", actors[k].name);
		}
	}
	printf("\n");
	fflush(stdout);
	vt_kmsg_start(&kmsg);

	/* Every actor stops at the deadline; one that does not is hung. */
	for (i = 0; i < n; i++) {
		while (waitpid(pids[i], &status, WNOHANG) != pids[i]) {
			if (!stopped && vt_membudget_exceeded(&mb, "torture")) {
				/* Our children only; theirs die with them. */
				for (j = i; j < n; j++)
					vt_kill_child(pids[j]);
				atomic_fetch_add(&st->failures, 1);
				stopped = 1;
			}
			if (time(NULL) > deadline + 60) {
				fail("actor %s (%d) still running 60 s after the deadline",
				     pid_names[i], pids[i]);
				vt_kill_child(pids[i]);
				/* Not forever: a task stuck in the kernel stays. */
				for (j = 0; j < 100; j++) {
					if (waitpid(pids[i], &status, WNOHANG))
						break;
					usleep(100000);
				}
				status = 0;
				break;
			}
			usleep(100000);
		}
		if (WIFSIGNALED(status))
			fail("actor %s (%d) killed by signal %d", pid_names[i],
			     pids[i], WTERMSIG(status));
		else if (WIFEXITED(status) && WEXITSTATUS(status))
			rc = 1;
	}
	sleep(1);
	vt_kmsg_stop(&kmsg);

	printf("torture: ops (count/errors, last errno):");
	for (i = 0; i < NR_OPS; i++) {
		long ops = atomic_load(&st->ops[i]);
		long errs = atomic_load(&st->errs[i]);

		if (!ops)
			continue;
		snprintf(name, sizeof(name), "%s", op_names[i]);
		for (char *p = name; *p; p++)
			if (*p == '_')
				*p = '-';
		printf(" %s=%ld", name, ops);
		if (errs)
			printf("/%ld,%s", errs,
			       strerrorname_np(atomic_load(&st->last_errno[i])) ?:
			       "?");
	}
	printf("\ntorture: soft offline took %ld pages; kernel log: %ld records read, %ld lost, %ld reports\n",
	       atomic_load(&st->soft_ok), kmsg.records, kmsg.lost, kmsg.reports);
	if (kmsg.reports)
		fail("%ld kernel report line(s) during the run", kmsg.reports);
	if (fork_failed)
		rc = 1;
	printf("torture: failures=%ld: %s\n", atomic_load(&st->failures),
	       rc || atomic_load(&st->failures) ? "FAIL" : "PASS");
	return rc || atomic_load(&st->failures) ? 1 : 0;
}
