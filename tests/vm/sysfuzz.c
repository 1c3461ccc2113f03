// SPDX-License-Identifier: GPL-2.0
/*
 * sysfuzz: a seeded syscall fuzzer over the surface that memory file
 * descriptors reach, with memfd_exclusive, memfd_secret and memfd_create fds
 * and their mappings in its pools. Debian's trinity (bookworm:
 * 1.9+git20230109) knows syscalls up to 450 from tables compiled into it and
 * makes its memfd fds with memfd_create; it cannot be taught a new call
 * without rebuilding it, hence this program. The idea of fd and mapping pools
 * and of plausible arguments drawn from them is trinity's.
 *
 * Each worker process draws calls and arguments from its own PRNG, seeded
 * from the run's seed (printed at start) and its index, so that
 * "sysfuzz --seed S --workers W" replays the same choices (results can differ
 * where workers race or the kernel's state does); --trace prints every call
 * before it is made (to a pipe: RLIMIT_FSIZE, see FILE_MAX, also bounds a
 * file that stderr is redirected to). Workers run as an unprivileged user (setresuid, nobody
 * by default) when started as root, except worker 0 inside the test VM, which
 * stays root and adds the privileged calls (soft offline, drop_caches,
 * compaction). The run is bounded by --seconds and by --ops per worker.
 *
 * Calls: memfd_exclusive/memfd_secret/memfd_create (good and bad flags and
 * names), mmap/munmap/mremap/mprotect/madvise (every advice)/ftruncate/
 * fallocate, fcntl seals and others, read/write/pread/pwrite/readv/writev,
 * splice/vmsplice/tee/sendfile/copy_file_range, io_uring (fixed buffers in
 * the mappings, reads and writes into them), process_vm_readv/writev,
 * futex (wait, wake, requeue, PI), fork, close, dup, O_PATH reopen of
 * /proc/self/fd/N and path-based truncate/chmod/chown/utimensat through it,
 * SCM_RIGHTS, mlock/mlock2/munlock/mlockall, msync, mincore, /proc reads
 * (maps, smaps, pagemap, mem, fdinfo, map_files), fstat/fstatfs/statx,
 * lseek, ioctl, fadvise, fsync, kcmp, pidfd_getfd, remap_file_pages and
 * touches of the mappings.
 *
 * At the end it prints, per call, how many were made, how many succeeded and
 * the errnos seen. The kernel log is watched as it streams (as root); any
 * report, or a worker killed by a signal, fails the run.
 *
 * Usage: sysfuzz [--seconds N] [--seed S] [--workers N] [--ops N] [--trace]
 *                [--uid UID] [--backends exclusive,secret,create]
 *                [--nr-exclusive NR] [--mem-budget MB] [--skip call,...]
 *   --skip: calls not made, of open_opath open_reopen truncate_path
 *   chmod_path fchownat_path utimensat_path statx sysctl_vm soft_offline
 *   (sysfs and MADV_SOFT_OFFLINE), to look past a known bug; the other
 *   call names are accepted and ignored.
 *   --nr-exclusive: the syscall number of memfd_exclusive(2) (default: the
 *   uapi header's, or whichever of 600 and 500 the kernel answers).
 *
 * Safety: no call it makes reaches another process (no kill, tgkill,
 * ptrace, setpriority, reboot, ...; process_vm_writev, kcmp and pidfd_getfd
 * only on itself); the workers run as --uid with RLIMIT_NPROC, at most
 * MAX_CHILDREN fork children each and no grandchildren, and die with main
 * (PR_SET_PDEATHSIG); main kills only a pid that fork() returned (> 0).
 * Memory: see FILE_MAX; and main stops the run (FAIL) when MemAvailable
 * falls by more than --mem-budget MB (default 512) or below a tenth.
 *
 * Run it in the test VM (tests/vm/torture.sh). A trial on a shared host only
 * as nobody, in a PID namespace and in a memory cgroup of its own (the OOM
 * killer of a memcg kills inside it; the global one kills anyone), e.g. with
 * cgroup v1, from a root shell:
 *   cg=/sys/fs/cgroup/memory$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)/trial
 *   mkdir $cg; echo 512M >$cg/memory.limit_in_bytes; echo $$ >$cg/cgroup.procs
 *   ulimit -u 64; timeout -s KILL 60 unshare --pid --fork --kill-child --mount-proc -- \
 *     setpriv --reuid=65534 --regid=65534 --clear-groups ./sysfuzz --seconds 10 \
 *     --backends secret,create
 * Exit: 0 pass, 1 fail, 2 usage, 77 no memfd_exclusive(2) and no --backends.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <grp.h>
#include <stdarg.h>
#include <linux/io_uring.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/futex.h>
#include <time.h>

#include "vmtest.h"

#define NR_FDS		40
#define NR_MAPS		16
#define MAX_PAGES	64
#define MAX_CHILDREN	2
#define NR_ERRNO	134
/*
 * Memory bounds of a worker: no file past FILE_MAX (RLIMIT_FSIZE, and the
 * lengths of fallocate() and of copies clamped, since a fallocate() with
 * FALLOC_FL_KEEP_SIZE past EOF is not held by RLIMIT_FSIZE), NOFILE_MAX
 * fds (in-flight SCM_RIGHTS fds count too), AS_MAX of address space. A
 * worker then holds at most some (2 * NOFILE_MAX + NR_MAPS) * FILE_MAX of
 * file pages, and in practice a few MiB. (A first version without these
 * filled a 24 GiB host with shmem pages in seconds through fallocate() and
 * copy_file_range(), and the OOM killer took other people's processes.)
 */
#define FILE_MAX	(2UL << 20)
#define NOFILE_MAX	128
#define AS_MAX		(1UL << 30)

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#define MFD_EXEC	0x0010U
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB	0x0004U
#endif

#define CALLS(X)							\
	X(memfd_exclusive) X(memfd_secret) X(memfd_create) X(mmap)	\
	X(munmap) X(mremap) X(mprotect) X(madvise) X(ftruncate)		\
	X(fallocate) X(fcntl_add_seals) X(fcntl_get_seals) X(fcntl)	\
	X(read) X(write) X(pread) X(pwrite) X(readv) X(writev)		\
	X(splice) X(vmsplice) X(tee) X(sendfile) X(copy_file_range)	\
	X(io_uring_setup) X(io_uring_register_buffers) X(io_uring_enter) \
	X(process_vm_readv) X(process_vm_writev) X(futex) X(fork)	\
	X(close) X(dup) X(open_opath) X(open_reopen) X(truncate_path)	\
	X(chmod_path) X(fchownat_path) X(utimensat_path) X(statx)	\
	X(sendmsg_rights) X(recvmsg_rights) X(mlock) X(mlock2)		\
	X(munlock) X(mlockall) X(munlockall) X(msync) X(mincore)	\
	X(proc_read) X(proc_mem) X(map_files) X(fstat) X(fstatfs)	\
	X(lseek) X(ioctl) X(fadvise) X(fsync) X(kcmp) X(pidfd_getfd)	\
	X(remap_file_pages) X(pipe2) X(socketpair) X(touch)		\
	X(soft_offline) X(sysctl_vm)

#define CALL_ENUM(n) C_##n,
enum call { CALLS(CALL_ENUM) NR_CALLS };
#define CALL_NAME(n) #n,
static const char *const call_names[NR_CALLS] = { CALLS(CALL_NAME) };

struct stats {
	atomic_long calls[NR_CALLS];
	atomic_long ok[NR_CALLS];
	atomic_long err[NR_CALLS][NR_ERRNO];
	atomic_long worker_ops[64];
	atomic_long children_killed;
};

enum kind {
	K_NONE, K_EXCL, K_SECRET, K_MEMFD, K_PIPE_R, K_PIPE_W, K_SOCK,
	K_OPATH, K_OTHER,
};

struct fd_ent {
	int fd;
	enum kind kind;
};

struct map_ent {
	unsigned char *addr;	/* NULL: free slot */
	size_t len;
	enum kind kind;
};

struct ring {
	int fd;
	void *sq, *cq, *sqes;
	size_t sq_len, cq_len, sqes_len;
	struct io_uring_params p;
	unsigned long submitted;
	struct iovec iov;	/* a READV's: lives as long as the ring */
};

struct worker {
	int index;
	uint64_t seed;
	int root;		/* privileged calls allowed */
	struct fd_ent fds[NR_FDS];
	struct map_ent maps[NR_MAPS];
	struct ring ring;
	int sock[2];		/* SCM_RIGHTS to ourselves */
	int children;
	int is_child;		/* a fork child of the worker: no more forks */
	unsigned char buf[4 * 4096];
};

static struct stats *st;
static time_t deadline;
static long page_size;
static long max_ops = -1;
static int trace;
static int in_vm;
static int nr_workers;
static int cur_index;	/* of the worker, for --trace */
static unsigned char skip[NR_CALLS];	/* --skip */
static pid_t main_pid;
static unsigned int backends = 7;	/* bit per enum vt_backend */

#define R(w, n)	vt_rnd(&(w)->seed, (n))
#define ONE_IN(w, n) vt_chance(&(w)->seed, (n))

/* Records one call's result: @ret < 0 is an error with errno. */
static long rec(enum call c, long ret)
{
	int e = errno;

	if (trace) {
		char line[80];
		int n = snprintf(line, sizeof(line), "sysfuzz[%d]:  = %ld %s\n",
				 cur_index, ret, ret < 0 ? strerrorname_np(e) ?: "?" : "");

		if (write(2, line, n) < 0)
			errno = e;
	}
	atomic_fetch_add(&st->calls[c], 1);
	if (ret >= 0)
		atomic_fetch_add(&st->ok[c], 1);
	else
		atomic_fetch_add(&st->err[c][e > 0 && e < NR_ERRNO ? e : 0], 1);
	errno = e;
	return ret;
}

static void tr(struct worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void tr(struct worker *w, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	if (!trace)
		return;
	n = snprintf(line, sizeof(line), "sysfuzz[%d]: ", w->index);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(2, line, n) < 0)
		errno = 0;
}

/* Pools */

static int add_fd(struct worker *w, int fd, enum kind kind)
{
	int i, slot = -1;

	if (fd < 0)
		return fd;
	for (i = 0; i < NR_FDS; i++)
		if (w->fds[i].kind == K_NONE) {
			slot = i;
			break;
		}
	if (slot < 0) {
		/* Full: the new fd replaces a random one. */
		slot = R(w, NR_FDS);
		close(w->fds[slot].fd);
	}
	w->fds[slot].fd = fd;
	w->fds[slot].kind = kind;
	return fd;
}

/* A pool entry (mostly of @want kind, when given), or NULL. */
static struct fd_ent *pick_fd(struct worker *w, enum kind want)
{
	int i, start = R(w, NR_FDS);

	for (i = 0; i < NR_FDS; i++) {
		struct fd_ent *f = &w->fds[(start + i) % NR_FDS];

		if (f->kind != K_NONE && (want == K_NONE || f->kind == want))
			return f;
	}
	return NULL;
}

/* An fd to pass as an argument: mostly from the pool, sometimes anything. */
static int any_fd(struct worker *w)
{
	struct fd_ent *f;

	switch (R(w, 20)) {
	case 0:
		return -1;
	case 1:
		/* Never 0-2: stdout and stderr carry the results. */
		return 3 + R(w, 1100);
	default:
		f = pick_fd(w, R(w, 3) ? K_NONE : (enum kind)(K_EXCL + R(w, 3)));
		return f ? f->fd : 3 + (int)R(w, 64);
	}
}

static struct map_ent *pick_map(struct worker *w)
{
	int i, start = R(w, NR_MAPS);

	for (i = 0; i < NR_MAPS; i++)
		if (w->maps[(start + i) % NR_MAPS].addr)
			return &w->maps[(start + i) % NR_MAPS];
	return NULL;
}

static void add_map(struct worker *w, void *addr, size_t len, enum kind kind)
{
	int i, slot = -1;

	for (i = 0; i < NR_MAPS; i++)
		if (!w->maps[i].addr) {
			slot = i;
			break;
		}
	if (slot < 0) {
		slot = R(w, NR_MAPS);
		munmap(w->maps[slot].addr, w->maps[slot].len);
	}
	w->maps[slot].addr = addr;
	w->maps[slot].len = len;
	w->maps[slot].kind = kind;
}

static enum kind kind_of(struct worker *w, int fd)
{
	int i;

	for (i = 0; i < NR_FDS; i++)
		if (w->fds[i].kind != K_NONE && w->fds[i].fd == fd)
			return w->fds[i].kind;
	return K_OTHER;
}

/* Arguments */

static size_t any_len(struct worker *w)
{
	switch (R(w, 10)) {
	case 0:
		return 0;
	case 1:
		return 1 + R(w, 3 * page_size);
	case 2:
		return (size_t)1 << (12 + R(w, 30));
	default:
		return (1 + R(w, MAX_PAGES)) * page_size;
	}
}

static off_t any_off(struct worker *w)
{
	switch (R(w, 12)) {
	case 0:
		return -(off_t)R(w, 4096);
	case 1:
		return (off_t)1 << (12 + R(w, 50));
	case 2:
		return R(w, 4 * page_size);
	default:
		return R(w, MAX_PAGES) * page_size;
	}
}

/* A range inside a mapping of ours (or a little past its end). */
static int any_range(struct worker *w, void **addr, size_t *len)
{
	struct map_ent *m = pick_map(w);
	size_t off;

	if (!m)
		return -1;
	off = R(w, m->len / page_size) * page_size;
	*addr = m->addr + off;
	*len = ONE_IN(w, 8) ? 1 + R(w, m->len - off) :
	       (1 + R(w, (m->len - off) / page_size)) * page_size;
	return 0;
}

/* A buffer for I/O: in a mapping (mostly) or our own memory. */
static void *any_buf(struct worker *w, size_t *len)
{
	void *addr;

	if (R(w, 4) && !any_range(w, &addr, len))
		return addr;
	*len = 1 + R(w, sizeof(w->buf));
	return w->buf;
}

static void proc_fd_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/* The calls */

static void do_memfd(struct worker *w)
{
	static char longname[MFD_EXCLUSIVE_NAME_MAX_LEN + 2];
	const char *name = "sysfuzz";
	unsigned int flags;
	int b = R(w, 3);

	if (!(backends & (1U << b)))
		b = VT_CREATE;
	if (ONE_IN(w, 2) && (backends & 1))
		b = VT_EXCLUSIVE;
	switch (R(w, 16)) {
	case 0:
		name = NULL;
		break;
	case 1:
		name = (const char *)1;
		break;
	case 2:
		memset(longname, 'n', sizeof(longname) - 1);
		longname[MFD_EXCLUSIVE_NAME_MAX_LEN + R(w, 2)] = '\0';
		name = longname;
		break;
	case 3:
		name = "";
		break;
	}
	switch (b) {
	case VT_EXCLUSIVE:
		flags = R(w, 8) ? R(w, 4) : (unsigned int)vt_next(&w->seed);
		tr(w, "memfd_exclusive(%p, %#x)", name, flags);
		add_fd(w, rec(C_memfd_exclusive,
			      syscall(vt_nr_exclusive, name, flags |
				      MFD_EXCLUSIVE_CLOEXEC)), K_EXCL);
		break;
	case VT_SECRET:
		flags = R(w, 8) ? O_CLOEXEC : (unsigned int)vt_next(&w->seed);
		tr(w, "memfd_secret(%#x)", flags);
		add_fd(w, rec(C_memfd_secret, syscall(__NR_memfd_secret, flags)),
		       K_SECRET);
		break;
	default:
		flags = MFD_CLOEXEC | (R(w, 2) ? MFD_ALLOW_SEALING : 0);
		if (ONE_IN(w, 8))
			flags |= (const unsigned int[]){ MFD_HUGETLB,
				MFD_NOEXEC_SEAL, MFD_EXEC, 0x80 }[R(w, 4)];
		tr(w, "memfd_create(%p, %#x)", name, flags);
		add_fd(w, rec(C_memfd_create, syscall(__NR_memfd_create, name,
						      flags)), K_MEMFD);
	}
}

static void do_mmap(struct worker *w)
{
	static const int prots[] = {
		PROT_READ | PROT_WRITE, PROT_READ, PROT_WRITE, PROT_NONE,
		PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC,
	};
	int prot = R(w, 3) ? prots[0] : prots[R(w, 6)];
	int flags = R(w, 5) ? MAP_SHARED : (R(w, 2) ? MAP_PRIVATE :
					     MAP_SHARED_VALIDATE);
	size_t len = (1 + R(w, MAX_PAGES)) * page_size;
	off_t off = R(w, 4) ? 0 : R(w, MAX_PAGES) * page_size;
	struct fd_ent *f = pick_fd(w, R(w, 2) ? K_EXCL : K_NONE);
	int fd = f && R(w, 12) ? f->fd : -1;
	void *p;

	if (ONE_IN(w, 6))
		flags |= MAP_POPULATE;
	if (ONE_IN(w, 8))
		flags |= MAP_LOCKED;
	if (ONE_IN(w, 10))
		flags |= MAP_NORESERVE;
	if (fd < 0)
		flags |= MAP_ANONYMOUS;
	tr(w, "mmap(%zu, %#x, %#x, %d, %lld)", len, prot, flags, fd,
	   (long long)off);
	p = mmap(NULL, len, prot, flags, fd, off);
	if (rec(C_mmap, p == MAP_FAILED ? -1 : 0) == 0)
		add_map(w, p, len, fd < 0 ? K_OTHER : kind_of(w, fd));
}

static void do_munmap(struct worker *w)
{
	struct map_ent *m = pick_map(w);
	size_t cut;

	if (!m)
		return;
	cut = R(w, m->len / page_size) * page_size;
	if (!cut || ONE_IN(w, 2)) {
		tr(w, "munmap(%p, %zu)", m->addr, m->len);
		rec(C_munmap, munmap(m->addr, m->len));
		m->addr = NULL;
	} else if (ONE_IN(w, 2)) {
		/* The tail: keep the head. */
		tr(w, "munmap(%p, %zu)", m->addr + cut, m->len - cut);
		if (rec(C_munmap, munmap(m->addr + cut, m->len - cut)) == 0)
			m->len = cut;
	} else {
		tr(w, "munmap(%p, %zu)", m->addr, cut);
		if (rec(C_munmap, munmap(m->addr, cut)) == 0) {
			m->addr += cut;
			m->len -= cut;
		}
	}
}

static void do_mremap(struct worker *w)
{
	struct map_ent *m = pick_map(w);
	size_t len = (1 + R(w, 2 * MAX_PAGES)) * page_size;
	void *p;

	if (!m)
		return;
	if (ONE_IN(w, 4)) {
		tr(w, "mremap(%p, %zu, %zu, MAYMOVE|DONTUNMAP)", m->addr,
		   m->len, m->len);
		p = mremap(m->addr, m->len, m->len,
			   MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
		if (rec(C_mremap, p == MAP_FAILED ? -1 : 0) == 0)
			add_map(w, p, m->len, m->kind);
		return;
	}
	tr(w, "mremap(%p, %zu, %zu, MAYMOVE)", m->addr, m->len, len);
	p = mremap(m->addr, m->len, len, ONE_IN(w, 4) ? 0 : MREMAP_MAYMOVE);
	if (rec(C_mremap, p == MAP_FAILED ? -1 : 0) == 0) {
		m->addr = p;
		m->len = len;
	}
}

static void do_mprotect(struct worker *w)
{
	void *addr;
	size_t len;
	int prot = R(w, 8);

	if (any_range(w, &addr, &len))
		return;
	tr(w, "mprotect(%p, %zu, %#x)", addr, len, prot);
	rec(C_mprotect, mprotect(addr, len, prot));
}

static void do_madvise(struct worker *w)
{
	void *addr;
	size_t len;
	int adv;

	if (any_range(w, &addr, &len))
		return;
	switch (R(w, 10)) {
	case 0:
		adv = (const int[]){ MADV_HWPOISON, MADV_SOFT_OFFLINE }[R(w, 2)];
		/* Hard poison only unprivileged (EPERM), never as root. */
		if (adv == MADV_HWPOISON && w->root)
			adv = MADV_SOFT_OFFLINE;
		if (adv == MADV_SOFT_OFFLINE && w->root)
			len = page_size;
		break;
	case 1:
		adv = R(w, 200);
		if (adv == MADV_HWPOISON)
			adv = -1;
		if (adv == MADV_SOFT_OFFLINE && w->root)
			len = page_size;
		break;
	default:
		adv = R(w, MADV_COLLAPSE + 1);
	}
	/* --skip soft_offline also leaves out MADV_SOFT_OFFLINE. */
	if (adv == MADV_SOFT_OFFLINE && skip[C_soft_offline])
		return;
	tr(w, "madvise(%p, %zu, %d)", addr, len, adv);
	rec(C_madvise, madvise(addr, len, adv));
}

static void do_ftruncate(struct worker *w)
{
	int fd = any_fd(w);
	off_t size = R(w, 8) ? (off_t)(R(w, 2 * MAX_PAGES) * page_size) +
			       (off_t)(ONE_IN(w, 4) ? R(w, page_size) : 0) :
			       any_off(w);

	tr(w, "ftruncate(%d, %lld)", fd, (long long)size);
	rec(C_ftruncate, ftruncate(fd, size));
}

static void do_fallocate(struct worker *w)
{
	static const int modes[] = {
		0, FALLOC_FL_KEEP_SIZE,
		FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		FALLOC_FL_ZERO_RANGE, FALLOC_FL_COLLAPSE_RANGE,
		FALLOC_FL_INSERT_RANGE,
	};
	int fd = any_fd(w), mode = modes[R(w, 6)];
	off_t off = any_off(w), len = any_len(w);

	/* What allocates stays inside FILE_MAX (see FILE_MAX). */
	if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE)) &&
	    off >= 0 && (off >= (off_t)FILE_MAX ||
			 len > (off_t)FILE_MAX - off)) {
		off = R(w, FILE_MAX / page_size) * page_size;
		len = 1 + R(w, FILE_MAX - off);
	}

	tr(w, "fallocate(%d, %#x, %lld, %lld)", fd, mode, (long long)off,
	   (long long)len);
	rec(C_fallocate, fallocate(fd, mode, off, len));
}

static void do_fcntl(struct worker *w)
{
	struct flock fl = {
		.l_type = R(w, 2) ? F_WRLCK : F_RDLCK,
		.l_whence = SEEK_SET, .l_start = any_off(w), .l_len = any_len(w),
	};
	int fd = any_fd(w), seals;

	switch (R(w, 10)) {
	case 0:
	case 1:
	case 2:
		seals = R(w, 10) ? 1 << R(w, 6) : (int)R(w, 0x40);
		tr(w, "fcntl(%d, F_ADD_SEALS, %#x)", fd, seals);
		rec(C_fcntl_add_seals, fcntl(fd, F_ADD_SEALS, seals));
		break;
	case 3:
	case 4:
		tr(w, "fcntl(%d, F_GET_SEALS)", fd);
		rec(C_fcntl_get_seals, fcntl(fd, F_GET_SEALS));
		break;
	case 5:
		tr(w, "fcntl(%d, F_SETFL)", fd);
		rec(C_fcntl, fcntl(fd, F_SETFL, O_NONBLOCK |
				   (R(w, 2) ? O_APPEND : 0)));
		break;
	case 6:
		tr(w, "fcntl(%d, F_OFD_SETLK)", fd);
		rec(C_fcntl, fcntl(fd, R(w, 2) ? F_OFD_SETLK : F_SETLK, &fl));
		break;
	case 7:
		tr(w, "fcntl(%d, F_GETLK)", fd);
		rec(C_fcntl, fcntl(fd, R(w, 2) ? F_OFD_GETLK : F_GETLK, &fl));
		break;
	case 8:
		/* Not F_SETLEASE: breaking it waits lease-break-time (45 s). */
		tr(w, "fcntl(%d, F_GETLEASE)", fd);
		rec(C_fcntl, fcntl(fd, F_GETLEASE));
		break;
	default:
		tr(w, "fcntl(%d, F_SETPIPE_SZ)", fd);
		rec(C_fcntl, fcntl(fd, R(w, 2) ? F_GETPIPE_SZ : F_SETPIPE_SZ,
				   page_size << R(w, 5)));
	}
}

static void do_rw(struct worker *w)
{
	int fd = any_fd(w);
	size_t len;
	void *buf = any_buf(w, &len);
	off_t off = any_off(w);
	struct iovec iov[2] = {
		{ buf, len / 2 }, { w->buf, 1 + R(w, sizeof(w->buf)) },
	};

	switch (R(w, 6)) {
	case 0:
		tr(w, "read(%d, %p, %zu)", fd, buf, len);
		rec(C_read, read(fd, buf, len));
		break;
	case 1:
		tr(w, "write(%d, %p, %zu)", fd, buf, len);
		rec(C_write, write(fd, buf, len));
		break;
	case 2:
		tr(w, "pread(%d, %p, %zu, %lld)", fd, buf, len, (long long)off);
		rec(C_pread, pread(fd, buf, len, off));
		break;
	case 3:
		tr(w, "pwrite(%d, %p, %zu, %lld)", fd, buf, len, (long long)off);
		rec(C_pwrite, pwrite(fd, buf, len, off));
		break;
	case 4:
		tr(w, "readv(%d, %p)", fd, buf);
		rec(C_readv, readv(fd, iov, 2));
		break;
	default:
		tr(w, "writev(%d, %p)", fd, buf);
		rec(C_writev, writev(fd, iov, 2));
	}
}

static void do_splice(struct worker *w)
{
	struct fd_ent *pr = pick_fd(w, K_PIPE_R), *pw = pick_fd(w, K_PIPE_W);
	int fd = any_fd(w), flags = SPLICE_F_NONBLOCK |
				   (R(w, 2) ? SPLICE_F_GIFT : 0);
	loff_t off = any_off(w), off2 = any_off(w);
	/* Copies of up to FILE_MAX (see FILE_MAX). */
	size_t len = any_len(w) % (FILE_MAX + 1);
	struct iovec iov;
	void *buf;

	if (!pr || !pw)
		return;
	switch (R(w, 6)) {
	case 0:
		tr(w, "splice(%d, -> pipe %d, %zu)", fd, pw->fd, len);
		rec(C_splice, splice(fd, R(w, 2) ? &off : NULL, pw->fd, NULL,
				     len, flags));
		break;
	case 1:
		tr(w, "splice(pipe %d, -> %d, %zu)", pr->fd, fd, len);
		rec(C_splice, splice(pr->fd, NULL, fd, R(w, 2) ? &off : NULL,
				     len, flags));
		break;
	case 2:
		buf = any_buf(w, &iov.iov_len);
		iov.iov_base = buf;
		tr(w, "vmsplice(%d, %p, %zu)", R(w, 2) ? pw->fd : pr->fd, buf,
		   iov.iov_len);
		rec(C_vmsplice, vmsplice(R(w, 2) ? pw->fd : pr->fd, &iov, 1,
					 flags));
		break;
	case 3:
		tr(w, "tee(%d, %d, %zu)", pr->fd, pw->fd, len);
		rec(C_tee, tee(pr->fd, pw->fd, len, SPLICE_F_NONBLOCK));
		break;
	case 4:
		tr(w, "sendfile(%d, %d, %zu)", R(w, 2) ? pw->fd : any_fd(w), fd,
		   len);
		rec(C_sendfile, sendfile(R(w, 2) ? pw->fd : any_fd(w), fd,
					 R(w, 2) ? &off : NULL, len));
		break;
	default:
		tr(w, "copy_file_range(%d, %d, %zu)", fd, any_fd(w), len);
		rec(C_copy_file_range,
		    copy_file_range(fd, R(w, 2) ? &off : NULL, any_fd(w),
				    R(w, 2) ? &off2 : NULL, len, 0));
	}
}

/* io_uring, raw: a small ring, fixed buffers in the mappings, I/O into them. */
static void ring_close(struct ring *r)
{
	if (r->fd < 0)
		return;
	munmap(r->sq, r->sq_len);
	if (r->cq != r->sq)
		munmap(r->cq, r->cq_len);
	munmap(r->sqes, r->sqes_len);
	close(r->fd);
	r->fd = -1;
}

static int ring_open(struct worker *w)
{
	struct ring *r = &w->ring;
	int fd;

	memset(&r->p, 0, sizeof(r->p));
	tr(w, "io_uring_setup(8)");
	fd = rec(C_io_uring_setup, syscall(__NR_io_uring_setup, 8, &r->p));
	if (fd < 0)
		return -1;
	r->sq_len = r->p.sq_off.array + r->p.sq_entries * sizeof(unsigned int);
	r->cq_len = r->p.cq_off.cqes +
		    r->p.cq_entries * sizeof(struct io_uring_cqe);
	if (r->p.features & IORING_FEAT_SINGLE_MMAP) {
		if (r->cq_len > r->sq_len)
			r->sq_len = r->cq_len;
		r->cq_len = r->sq_len;
	}
	r->sqes_len = r->p.sq_entries * sizeof(struct io_uring_sqe);
	r->sq = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
	r->cq = r->p.features & IORING_FEAT_SINGLE_MMAP ? r->sq :
		mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
	r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
	if (r->sq == MAP_FAILED || r->cq == MAP_FAILED ||
	    r->sqes == MAP_FAILED) {
		/* Unmap what was mapped; ring_close() expects all three. */
		if (r->sq != MAP_FAILED)
			munmap(r->sq, r->sq_len);
		if (r->cq != MAP_FAILED && r->cq != r->sq)
			munmap(r->cq, r->cq_len);
		if (r->sqes != MAP_FAILED)
			munmap(r->sqes, r->sqes_len);
		close(fd);
		return -1;
	}
	r->fd = fd;
	return 0;
}

static void do_io_uring(struct worker *w)
{
	struct ring *r = &w->ring;
	struct io_uring_sqe *sqe = NULL;
	struct iovec iov;
	unsigned int *tail, *head, *mask, *array, idx;
	void *buf;
	size_t len;

	if (r->fd < 0) {
		ring_open(w);
		return;
	}
	switch (R(w, 8)) {
	case 0:
		ring_close(r);
		return;
	case 1:
	case 2:
		/* Fixed buffers: GUP of the mapping's pages. */
		buf = any_buf(w, &len);
		iov.iov_base = buf;
		iov.iov_len = len;
		tr(w, "io_uring_register(BUFFERS, %p, %zu)", buf, len);
		syscall(__NR_io_uring_register, r->fd,
			IORING_UNREGISTER_BUFFERS, NULL, 0);
		rec(C_io_uring_register_buffers,
		    syscall(__NR_io_uring_register, r->fd,
			    IORING_REGISTER_BUFFERS, &iov, 1));
		return;
	}
	/* A read or write (fixed or not) between an fd and a buffer. */
	tail = (unsigned int *)((char *)r->sq + r->p.sq_off.tail);
	head = (unsigned int *)((char *)r->sq + r->p.sq_off.head);
	mask = (unsigned int *)((char *)r->sq + r->p.sq_off.ring_mask);
	array = (unsigned int *)((char *)r->sq + r->p.sq_off.array);
	if (*tail - __atomic_load_n(head, __ATOMIC_ACQUIRE) >= r->p.sq_entries)
		goto enter;
	idx = *tail & *mask;
	sqe = (struct io_uring_sqe *)r->sqes + idx;
	memset(sqe, 0, sizeof(*sqe));
	buf = any_buf(w, &len);
	sqe->opcode = (const __u8[]){ IORING_OP_READ, IORING_OP_WRITE,
		IORING_OP_READ_FIXED, IORING_OP_WRITE_FIXED,
		IORING_OP_READV }[R(w, 5)];
	sqe->fd = any_fd(w);
	/* Only files that never block: a read on an empty pipe would park. */
	if (kind_of(w, sqe->fd) != K_MEMFD && kind_of(w, sqe->fd) != K_EXCL &&
	    kind_of(w, sqe->fd) != K_SECRET)
		sqe->fd = -1;
	sqe->addr = (unsigned long)buf;
	sqe->len = len;
	sqe->off = R(w, MAX_PAGES) * page_size;
	if (sqe->opcode == IORING_OP_READV) {
		r->iov.iov_base = buf;
		r->iov.iov_len = len;
		sqe->addr = (unsigned long)&r->iov;
		sqe->len = 1;
	}
	array[idx] = idx;
	__atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
enter:
	tr(w, "io_uring_enter(%d, op %d)", r->fd, sqe ? sqe->opcode : -1);
	/*
	 * Waits for a completion, 10 ms at most: never for ever, since a fork
	 * child shares the ring (and its mapped queues) and may reap ours, or
	 * the queue may be full with nothing in flight.
	 */
	{
		struct __kernel_timespec ts = { .tv_nsec = 10 * 1000 * 1000 };
		struct io_uring_getevents_arg arg = {
			.ts = (unsigned long)&ts,
		};

		rec(C_io_uring_enter,
		    syscall(__NR_io_uring_enter, r->fd, 1, 1,
			    IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
			    &arg, sizeof(arg)));
	}
	/* Reap every completion. */
	head = (unsigned int *)((char *)r->cq + r->p.cq_off.head);
	tail = (unsigned int *)((char *)r->cq + r->p.cq_off.tail);
	__atomic_store_n(head, __atomic_load_n(tail, __ATOMIC_ACQUIRE),
			 __ATOMIC_RELEASE);
}

static void do_process_vm(struct worker *w)
{
	struct iovec local = { w->buf, 0 }, remote;
	/* Reads also from the parent (EPERM unless root), writes only here. */
	pid_t pid = R(w, 8) ? getpid() : getppid();

	remote.iov_base = any_buf(w, &remote.iov_len);
	local.iov_len = remote.iov_len < sizeof(w->buf) ? remote.iov_len :
			sizeof(w->buf);
	if (R(w, 2)) {
		tr(w, "process_vm_readv(%d, %p, %zu)", pid, remote.iov_base,
		   remote.iov_len);
		rec(C_process_vm_readv,
		    process_vm_readv(pid, &local, 1, &remote, 1, 0));
	} else {
		tr(w, "process_vm_writev(self, %p, %zu)", remote.iov_base,
		   remote.iov_len);
		rec(C_process_vm_writev,
		    process_vm_writev(getpid(), &local, 1, &remote, 1, 0));
	}
}

static void do_futex(struct worker *w)
{
	struct timespec ts = { 0, 1000 };
	void *addr, *addr2;
	size_t len;
	uint32_t *uaddr, *uaddr2;
	int priv = R(w, 4) ? 0 : FUTEX_PRIVATE_FLAG, op;
	long val = R(w, 2);

	if (any_range(w, &addr, &len) || any_range(w, &addr2, &len))
		return;
	uaddr = (uint32_t *)((uintptr_t)addr & ~3UL);
	uaddr2 = (uint32_t *)((uintptr_t)addr2 & ~3UL);
	switch (R(w, 7)) {
	case 0:
	case 1:
		op = FUTEX_WAIT;
		break;
	case 2:
	case 3:
		op = FUTEX_WAKE;
		val = 1 + R(w, 4);
		break;
	case 4:
		op = FUTEX_CMP_REQUEUE;
		break;
	case 5:
		op = FUTEX_WAIT_BITSET;
		break;
	default:
		/* PI: trylock and unlock, never a blocking lock. */
		op = R(w, 2) ? FUTEX_TRYLOCK_PI : FUTEX_UNLOCK_PI;
	}
	tr(w, "futex(%p, %d, %ld)", uaddr, op | priv, val);
	if (op == FUTEX_CMP_REQUEUE)
		rec(C_futex, syscall(SYS_futex, uaddr, op | priv, 1,
				     (void *)1UL, uaddr2, (uint32_t)val));
	else if (op == FUTEX_WAIT_BITSET) {
		/* An absolute CLOCK_MONOTONIC timeout, 1 ms from now. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		rec(C_futex, syscall(SYS_futex, uaddr, op | priv, (uint32_t)val,
				     &ts, NULL, FUTEX_BITSET_MATCH_ANY));
	}
	else
		rec(C_futex, syscall(SYS_futex, uaddr, op | priv, (uint32_t)val,
				     op == FUTEX_WAIT ? &ts : NULL, NULL, 0));
}

static void fuzz_one(struct worker *w);

static void reap(struct worker *w, int block)
{
	int status;
	pid_t pid;

	while (w->children &&
	       (pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
		w->children--;
		if (WIFSIGNALED(status) && WTERMSIG(status) != SIGALRM) {
			fprintf(stderr, "sysfuzz: FAIL: worker %d's fork child %d killed by signal %d\n",
				w->index, pid, WTERMSIG(status));
			atomic_fetch_add(&st->children_killed, 1);
		}
	}
}

static void do_fork(struct worker *w)
{
	pid_t pid;
	int i;

	/* No fork storm: MAX_CHILDREN live children, and no grandchildren. */
	if (w->is_child)
		return;
	reap(w, 0);
	if (w->children >= MAX_CHILDREN)
		return;
	tr(w, "fork()");
	pid = rec(C_fork, fork());
	if (pid == 0) {
		/* The child: a few calls on what it inherited, then exit. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		w->children = 0;
		w->is_child = 1;
		w->seed ^= 0x5555;
		alarm(5);
		for (i = 0; i < 16; i++)
			fuzz_one(w);
		_exit(0);
	}
	if (pid > 0)
		w->children++;
}

static void do_close(struct worker *w)
{
	struct fd_ent *f = pick_fd(w, K_NONE);

	if (!f || (f->fd == w->sock[0] || f->fd == w->sock[1]))
		return;
	tr(w, "close(%d)", f->fd);
	rec(C_close, close(f->fd));
	f->kind = K_NONE;
}

static void do_dup(struct worker *w)
{
	struct fd_ent *f = pick_fd(w, K_NONE);
	enum kind kind;
	int fd;

	if (!f)
		return;
	kind = f->kind;
	tr(w, "dup(%d)", f->fd);
	fd = rec(C_dup, R(w, 2) ? fcntl(f->fd, F_DUPFD_CLOEXEC, 3) :
			 dup3(f->fd, 64 + R(w, NOFILE_MAX - 64),
				       O_CLOEXEC));
	if (fd >= 0) {
		/* dup3 may have replaced a pool fd: drop that entry. */
		for (int i = 0; i < NR_FDS; i++)
			if (w->fds[i].kind != K_NONE && w->fds[i].fd == fd)
				w->fds[i].kind = K_NONE;
		add_fd(w, fd, kind);
	}
}

static void do_path(struct worker *w)
{
	struct fd_ent *f = pick_fd(w, R(w, 2) ? K_OPATH : K_NONE);
	struct timespec ts[2] = { { 0, UTIME_NOW }, { 0, UTIME_OMIT } };
	struct statx stx;
	static const enum call calls[8] = {
		C_open_opath, C_open_opath, C_open_reopen, C_truncate_path,
		C_chmod_path, C_fchownat_path, C_utimensat_path, C_statx,
	};
	unsigned int which = R(w, 8);
	char path[64];
	int fd;

	if (!f || skip[calls[which]])
		return;
	proc_fd_path(path, sizeof(path), f->fd);
	switch (which) {
	case 0:
	case 1:
		tr(w, "open(%s, O_PATH)", path);
		add_fd(w, rec(C_open_opath, open(path, O_PATH | O_CLOEXEC)),
		       K_OPATH);
		break;
	case 2:
		tr(w, "open(%s, O_RDWR)", path);
		fd = rec(C_open_reopen, open(path, (R(w, 2) ? O_RDWR : O_RDONLY) |
					     O_CLOEXEC | O_NONBLOCK));
		add_fd(w, fd, kind_of(w, f->fd) == K_OPATH ? K_OTHER :
			      kind_of(w, f->fd));
		break;
	case 3:
		tr(w, "truncate(%s)", path);
		rec(C_truncate_path, truncate(path, R(w, MAX_PAGES) * page_size));
		break;
	case 4:
		tr(w, "chmod(%s)", path);
		rec(C_chmod_path, chmod(path, R(w, 2) ? 0600 : 0777));
		break;
	case 5:
		tr(w, "fchownat(%d, AT_EMPTY_PATH)", f->fd);
		rec(C_fchownat_path, fchownat(f->fd, "", getuid(), getgid(),
					      AT_EMPTY_PATH));
		break;
	case 6:
		tr(w, "utimensat(%s)", path);
		rec(C_utimensat_path, utimensat(AT_FDCWD, path, ts, 0));
		break;
	default:
		tr(w, "statx(%d)", f->fd);
		rec(C_statx, statx(f->fd, "", AT_EMPTY_PATH, STATX_ALL, &stx));
	}
}

static void do_rights(struct worker *w)
{
	char cbuf[CMSG_SPACE(3 * sizeof(int))] = { 0 };
	char byte = 'x';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	int n = 1 + R(w, 3), fds[3], i;

	if (R(w, 2)) {
		for (i = 0; i < n; i++)
			fds[i] = any_fd(w);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
		msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
		tr(w, "sendmsg(SCM_RIGHTS, %d fds)", n);
		rec(C_sendmsg_rights, sendmsg(w->sock[0], &msg,
					      MSG_DONTWAIT | MSG_NOSIGNAL));
		return;
	}
	tr(w, "recvmsg(SCM_RIGHTS)");
	if (rec(C_recvmsg_rights, recvmsg(w->sock[1], &msg, MSG_DONTWAIT |
					  MSG_CMSG_CLOEXEC)) < 0)
		return;
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		memcpy(fds, CMSG_DATA(c), n * sizeof(int));
		for (i = 0; i < n; i++)
			add_fd(w, fds[i], K_OTHER);
	}
}

static void do_mlock(struct worker *w)
{
	void *addr;
	size_t len;

	if (any_range(w, &addr, &len))
		return;
	switch (R(w, 8)) {
	case 0:
	case 1:
		tr(w, "mlock(%p, %zu)", addr, len);
		rec(C_mlock, mlock(addr, len));
		break;
	case 2:
		tr(w, "mlock2(%p, %zu, ONFAULT)", addr, len);
		rec(C_mlock2, mlock2(addr, len, R(w, 2) ? MLOCK_ONFAULT : 0));
		break;
	case 3:
	case 4:
		tr(w, "munlock(%p, %zu)", addr, len);
		rec(C_munlock, munlock(addr, len));
		break;
	case 5:
		tr(w, "mlockall(ONFAULT)");
		rec(C_mlockall, mlockall(MCL_CURRENT | MCL_ONFAULT |
					 (R(w, 2) ? MCL_FUTURE : 0)));
		break;
	default:
		tr(w, "munlockall()");
		rec(C_munlockall, munlockall());
	}
}

static void do_msync_mincore(struct worker *w)
{
	static unsigned char vec[2 * MAX_PAGES * 8];
	void *addr;
	size_t len;
	int flags;

	if (any_range(w, &addr, &len))
		return;
	if (R(w, 2)) {
		flags = (const int[]){ MS_ASYNC, MS_SYNC, MS_INVALIDATE,
			MS_SYNC | MS_INVALIDATE, MS_ASYNC | MS_SYNC }[R(w, 5)];
		tr(w, "msync(%p, %zu, %#x)", addr, len, flags);
		rec(C_msync, msync(addr, len, flags));
	} else {
		if (len > sizeof(vec) * page_size)
			len = sizeof(vec) * page_size;
		tr(w, "mincore(%p, %zu)", addr, len);
		rec(C_mincore, mincore(addr, len, vec));
	}
}

static void do_proc(struct worker *w)
{
	static const char *const files[] = {
		"maps", "smaps", "smaps_rollup", "numa_maps", "status", "statm",
		"pagemap", "mountinfo", "fdinfo", "mem",
	};
	const char *file = files[R(w, 10)];
	char path[128];
	void *addr = NULL;
	size_t len = sizeof(w->buf);
	struct fd_ent *f;
	int fd, i;

	if (!strcmp(file, "fdinfo")) {
		f = pick_fd(w, K_NONE);
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d",
			 f ? f->fd : 0);
	} else {
		snprintf(path, sizeof(path), "/proc/self/%s", file);
	}
	tr(w, "read(%s)", path);
	fd = open(path, (strcmp(file, "mem") || R(w, 2) ? O_RDONLY : O_RDWR) |
		 O_CLOEXEC);
	if (rec(C_proc_read, fd) < 0)
		return;
	if (!strcmp(file, "pagemap") || !strcmp(file, "mem")) {
		/* At a mapping of ours: page tables, or the pages via GUP. */
		if (!any_range(w, &addr, &len)) {
			if (len > sizeof(w->buf))
				len = sizeof(w->buf);
			if (!strcmp(file, "pagemap"))
				rec(C_proc_read, pread(fd, w->buf, len / page_size * 8,
						       (uintptr_t)addr /
						       page_size * 8));
			else if (R(w, 2))
				rec(C_proc_mem, pread(fd, w->buf, len,
						      (uintptr_t)addr));
			else
				rec(C_proc_mem, pwrite(fd, w->buf, len,
						       (uintptr_t)addr));
		}
	} else {
		for (i = 0; i < 8 && read(fd, w->buf, sizeof(w->buf)) > 0; i++)
			;
	}
	close(fd);
}

static void do_map_files(struct worker *w)
{
	struct map_ent *m = pick_map(w);
	char path[128], link[256];
	int fd;

	if (!m)
		return;
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx",
		 (unsigned long)m->addr, (unsigned long)(m->addr + m->len));
	tr(w, "map_files(%s)", path);
	if (R(w, 2)) {
		rec(C_map_files, readlink(path, link, sizeof(link)));
	} else {
		fd = rec(C_map_files, open(path, (R(w, 2) ? O_PATH : O_RDWR) |
					   O_CLOEXEC));
		add_fd(w, fd, K_OTHER);
	}
}

static void do_fileinfo(struct worker *w)
{
	int fd = any_fd(w), arg = 0, fd2, pidfd;
	struct stat sb;
	struct statfs sfs;

	switch (R(w, 10)) {
	case 0:
		tr(w, "fstat(%d)", fd);
		rec(C_fstat, fstat(fd, &sb));
		break;
	case 1:
		tr(w, "fstatfs(%d)", fd);
		rec(C_fstatfs, fstatfs(fd, &sfs));
		break;
	case 2:
		tr(w, "lseek(%d)", fd);
		rec(C_lseek, lseek(fd, any_off(w), R(w, 5)));
		break;
	case 3:
		tr(w, "ioctl(%d)", fd);
		/* FIONBIO with 1: every fd stays non-blocking (a read never parks). */
		arg = 1;
		rec(C_ioctl, ioctl(fd, (const unsigned long[]){ FIONREAD,
			FIONBIO, FIOCLEX, 0x80086601 /* FS_IOC_GETFLAGS */ }
			[R(w, 4)], &arg));
		break;
	case 4:
		tr(w, "posix_fadvise(%d)", fd);
		errno = posix_fadvise(fd, any_off(w), any_len(w), R(w, 6));
		rec(C_fadvise, errno ? -1 : 0);
		break;
	case 5:
		tr(w, "fsync(%d)", fd);
		rec(C_fsync, R(w, 2) ? fsync(fd) : fdatasync(fd));
		break;
	case 6:
		fd2 = any_fd(w);
		tr(w, "kcmp(%d, %d)", fd, fd2);
		rec(C_kcmp, syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE,
				    fd, fd2));
		break;
	case 7:
		tr(w, "pidfd_getfd(self, %d)", fd);
		pidfd = syscall(__NR_pidfd_open, getpid(), 0);
		if (pidfd >= 0) {
			add_fd(w, rec(C_pidfd_getfd,
				      syscall(__NR_pidfd_getfd, pidfd, fd, 0)),
			       kind_of(w, fd));
			close(pidfd);
		}
		break;
	case 8: {
		void *addr;
		size_t len;

		if (any_range(w, &addr, &len))
			break;
		tr(w, "remap_file_pages(%p, %zu)", addr, len);
		rec(C_remap_file_pages, remap_file_pages(addr, len, 0,
							 R(w, MAX_PAGES), 0));
		break;
	}
	default: {
		int p[2];

		if (R(w, 2)) {
			tr(w, "pipe2()");
			if (rec(C_pipe2, pipe2(p, O_CLOEXEC | O_NONBLOCK)) == 0) {
				add_fd(w, p[0], K_PIPE_R);
				add_fd(w, p[1], K_PIPE_W);
			}
		} else {
			tr(w, "socketpair()");
			if (rec(C_socketpair, socketpair(AF_UNIX,
							 SOCK_STREAM | SOCK_NONBLOCK |
							 SOCK_CLOEXEC, 0, p)) == 0) {
				add_fd(w, p[0], K_SOCK);
				add_fd(w, p[1], K_SOCK);
			}
		}
	}
	}
}

static void do_touch(struct worker *w)
{
	void *addr;
	size_t len;

	if (any_range(w, &addr, &len))
		return;
	tr(w, "touch(%p, %zu)", addr, len);
	rec(C_touch, vt_touch(addr, len, page_size, R(w, 2), R(w, 256)));
}

/* Root inside the VM only: what the system does to memory meanwhile. */
static void do_privileged(struct worker *w)
{
	static const char *const vm_files[] = {
		"/proc/sys/vm/drop_caches", "/proc/sys/vm/compact_memory",
	};
	uint64_t ent;
	void *addr;
	size_t len;
	char buf[32];
	int fd, err;

	if (!w->root)
		return;
	if (R(w, 2)) {
		if (skip[C_sysctl_vm])
			return;
		err = vt_write_file(vm_files[R(w, 2)], R(w, 2) ? "1" : "2");
		errno = -err;
		tr(w, "sysctl vm");
		rec(C_sysctl_vm, err ? -1 : 0);
		return;
	}
	if (any_range(w, &addr, &len) || skip[C_soft_offline])
		return;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (pread(fd, &ent, 8, (uintptr_t)addr / page_size * 8) == 8 &&
	    (ent >> 63) && (ent & ((1ULL << 55) - 1))) {
		snprintf(buf, sizeof(buf), "%#llx",
			 (unsigned long long)(ent & ((1ULL << 55) - 1)) * page_size);
		tr(w, "soft_offline_page(%s)", buf);
		err = vt_write_file("/sys/devices/system/memory/soft_offline_page",
				    buf);
		errno = -err;
		rec(C_soft_offline, err ? -1 : 0);
	}
	close(fd);
}

static void fuzz_one(struct worker *w)
{
	switch (R(w, 34)) {
	case 0: case 1: case 2:
		do_memfd(w);
		break;
	case 3: case 4: case 5:
		do_mmap(w);
		break;
	case 6:
		do_munmap(w);
		break;
	case 7:
		do_mremap(w);
		break;
	case 8:
		do_mprotect(w);
		break;
	case 9: case 10:
		do_madvise(w);
		break;
	case 11: case 12:
		do_ftruncate(w);
		break;
	case 13:
		do_fallocate(w);
		break;
	case 14: case 15:
		do_fcntl(w);
		break;
	case 16: case 17:
		do_rw(w);
		break;
	case 18:
		do_splice(w);
		break;
	case 19:
		do_io_uring(w);
		break;
	case 20:
		do_process_vm(w);
		break;
	case 21:
		do_futex(w);
		break;
	case 22:
		if (R(w, 4) == 0)
			do_fork(w);
		else
			do_dup(w);
		break;
	case 23:
		do_close(w);
		break;
	case 24: case 25:
		do_path(w);
		break;
	case 26:
		do_rights(w);
		break;
	case 27:
		do_mlock(w);
		break;
	case 28:
		do_msync_mincore(w);
		break;
	case 29:
		if (R(w, 4))
			do_proc(w);
		else
			do_map_files(w);
		break;
	case 30:
		do_fileinfo(w);
		break;
	case 31: case 32:
		do_touch(w);
		break;
	default:
		if (w->root && ONE_IN(w, 8))
			do_privileged(w);
		else
			do_memfd(w);
	}
}

static int worker_main(struct worker *w, uid_t uid)
{
	struct rlimit memlock = { 64 << 20, 64 << 20 };
	/* Each worker and MAX_CHILDREN children, all of the same uid. */
	rlim_t nproc_max = (rlim_t)nr_workers * (MAX_CHILDREN + 1) + 4;
	struct rlimit nproc = { nproc_max, nproc_max };
	struct rlimit fsize = { FILE_MAX, FILE_MAX };
	struct rlimit nofile = { NOFILE_MAX, NOFILE_MAX };
	struct rlimit as = { AS_MAX, AS_MAX };
	long n;
	int i;

	/*
	 * Only the fds made here are fuzzed: none inherited (the kernel log,
	 * whatever the harness left open) is ever written, closed or dup'ed
	 * over by a random fd number.
	 */
	if (syscall(SYS_close_range, 3, ~0U, 0)) {
		for (i = 3; i < 4096; i++)
			close(i);
	}
	for (i = 0; i < NR_FDS; i++)
		w->fds[i].kind = K_NONE;
	w->ring.fd = -1;
	if (setrlimit(RLIMIT_FSIZE, &fsize) || setrlimit(RLIMIT_NOFILE, &nofile) ||
	    setrlimit(RLIMIT_AS, &as)) {
		fprintf(stderr, "sysfuzz: setrlimit: %s\n", strerror(errno));
		return 1;
	}
	if (geteuid() == 0) {
		setrlimit(RLIMIT_MEMLOCK, &memlock);
		if (!w->root && (setrlimit(RLIMIT_NPROC, &nproc) ||
				 setgroups(0, NULL) ||
				 setresgid(uid, uid, uid) ||
				 setresuid(uid, uid, uid))) {
			fprintf(stderr, "sysfuzz: setresuid(%d): %s\n", uid,
				strerror(errno));
			return 1;
		}
	} else {
		setrlimit(RLIMIT_NPROC, &nproc);
	}
	if (!w->root && (geteuid() == 0 || getuid() == 0)) {
		fprintf(stderr, "sysfuzz: worker %d still root\n", w->index);
		return 1;
	}
	cur_index = w->index;
	/* Set after setresuid(), which clears it: gone should main die. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != main_pid)
		return 1;
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       w->sock)) {
		fprintf(stderr, "sysfuzz: socketpair: %s\n", strerror(errno));
		return 1;
	}
	for (n = 0; time(NULL) < deadline && (max_ops < 0 || n < max_ops); n++) {
		fuzz_one(w);
		if (w->index < 64)
			atomic_store(&st->worker_ops[w->index], n + 1);
		if ((n & 63) == 0)
			reap(w, 0);
	}
	reap(w, 1);
	return 0;
}

static int by_count(const void *a, const void *b)
{
	const long *x = a, *y = b;

	return (y[0] > x[0]) - (y[0] < x[0]);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seconds", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "ops", required_argument, NULL, 'n' },
		{ "trace", no_argument, NULL, 'v' },
		{ "uid", required_argument, NULL, 'u' },
		{ "backends", required_argument, NULL, 'b' },
		{ "nr-exclusive", required_argument, NULL, 'N' },
		{ "mem-budget", required_argument, NULL, 'M' },
		{ "skip", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t seed = (uint64_t)time(NULL) * 2654435761ULL ^ getpid();
	int seconds = 30, nproc, workers = 0, c, i, j, status, rc = 0;
	int backends_set = 0, nr_set = 0, started = 0, stopped = 0;
	long mem_budget = 512;
	struct vt_membudget mb;
	struct vt_kmsg kmsg;
	uid_t uid = 65534;
	long total = 0, failed = 0;
	pid_t pids[64];
	time_t start;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			seconds = atoi(optarg);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'w':
			workers = atoi(optarg);
			break;
		case 'n':
			max_ops = atol(optarg);
			break;
		case 'v':
			trace = 1;
			break;
		case 'u':
			uid = atoi(optarg);
			break;
		case 'N':
			vt_nr_exclusive = atol(optarg);
			nr_set = 1;
			break;
		case 'M':
			mem_budget = atol(optarg);
			break;
		case 'k': {
			char list[512], *tok, *save;

			snprintf(list, sizeof(list), "%s", optarg);
			for (tok = strtok_r(list, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				for (i = 0; i < NR_CALLS; i++)
					if (!strcmp(tok, call_names[i]))
						break;
				if (i == NR_CALLS) {
					fprintf(stderr, "sysfuzz: --skip: no call %s\n", tok);
					return 2;
				}
				skip[i] = 1;
			}
			break;
		}
		case 'b':
			backends = 0;
			backends_set = 1;
			for (i = 0; i < VT_NR_BACKENDS; i++)
				if (strstr(optarg, vt_backend_name[i] + 6))
					backends |= 1U << i;
			break;
		default:
			fprintf(stderr, "usage: sysfuzz [--seconds N] [--seed S] [--workers N] [--ops N]\n"
				"               [--trace] [--uid UID] [--backends exclusive,secret,create]\n");
			return 2;
		}
	}
	if (seconds <= 0 || optind != argc || workers < 0 || workers > 64 ||
	    !backends) {
		fprintf(stderr, "sysfuzz: bad arguments (see the comment at the top of sysfuzz.c)\n");
		return 2;
	}
	if ((backends & 1) && !vt_have_exclusive()) {
		if (!backends_set) {
			printf("sysfuzz: SKIP, no %s (use --backends secret,create)\n",
			       MEMFD_EXCLUSIVE_SYSFS_DIR);
			return 77;
		}
		fprintf(stderr, "sysfuzz: no %s\n", MEMFD_EXCLUSIVE_SYSFS_DIR);
		return 1;
	}
	if ((backends & 1) && !nr_set && vt_probe_nr_exclusive() < 0) {
		fprintf(stderr, "sysfuzz: FAIL: %s exists but no syscall number (%d, 600, 500) is memfd_exclusive(2)\n",
			MEMFD_EXCLUSIVE_SYSFS_DIR, __NR_memfd_exclusive);
		return 1;
	}
	in_vm = getenv("XMEM_VM") && !strcmp(getenv("XMEM_VM"), "1");
	page_size = sysconf(_SC_PAGESIZE);
	nproc = sysconf(_SC_NPROCESSORS_ONLN);
	if (!workers)
		workers = 2 * nproc;
	if (workers > 64)
		workers = 64;
	nr_workers = workers;
	main_pid = getpid();
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (st == MAP_FAILED) {
		perror("sysfuzz: mmap");
		return 1;
	}
	vt_install_fault_handlers();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGIO, SIG_IGN);		/* F_SETOWN and friends */
	signal(SIGURG, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN);	/* RLIMIT_FSIZE: EFBIG instead */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("sysfuzz: seed %#llx, %d CPUs online, %d workers, %d s%s, backends",
	       (unsigned long long)seed, nproc, workers, seconds,
	       max_ops >= 0 ? " (or --ops per worker)" : "");
	for (i = 0; i < VT_NR_BACKENDS; i++)
		if (backends & (1U << i))
			printf(" %s", vt_backend_name[i]);
	if (backends & 1)
		printf(" (syscall %ld)", vt_nr_exclusive);
	printf("; replay: sysfuzz --seed %#llx --workers %d",
	       (unsigned long long)seed, workers);
	for (i = 0, j = 0; i < NR_CALLS; i++)
		if (skip[i])
			printf("%s%s", j++ ? "," : " --skip ", call_names[i]);
	printf("\n");
	if (geteuid() == 0 && in_vm)
		vt_write_file("/proc/sys/vm/drop_caches", "4");
	/* Opened now, watched once the workers are forked (see vt_kmsg_open). */
	if (vt_kmsg_open(&kmsg, "sysfuzz"))
		printf("sysfuzz: kernel log not watched: %s\n", strerror(errno));
	vt_membudget_init(&mb, mem_budget);
	start = time(NULL);
	deadline = start + seconds;

	for (i = 0; i < workers; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			static struct worker w;

			w.index = i;
			w.seed = seed + 0x1000 * (i + 1);
			w.root = geteuid() == 0 && in_vm && i == 0;
			_exit(worker_main(&w, uid));
		}
		if (pid < 0) {
			/* Wait for the ones started (they stop at the deadline). */
			fprintf(stderr, "sysfuzz: FAIL: fork: %s\n", strerror(errno));
			rc = 1;
			break;
		}
		pids[started++] = pid;
	}
	vt_kmsg_start(&kmsg);
	for (i = 0; i < started; i++) {
		while (waitpid(pids[i], &status, WNOHANG) != pids[i]) {
			if (!stopped && vt_membudget_exceeded(&mb, "sysfuzz")) {
				/* Our children only; theirs die with them. */
				for (j = i; j < started; j++)
					vt_kill_child(pids[j]);
				stopped = 1;
				rc = 1;
			}
			if (time(NULL) > deadline + 60) {
				fprintf(stderr, "sysfuzz: FAIL: worker %d (%d) still running 60 s after the deadline\n",
					i, pids[i]);
				vt_kill_child(pids[i]);
				/* Not forever: a task stuck in the kernel stays. */
				for (j = 0; j < 100; j++) {
					if (waitpid(pids[i], &status, WNOHANG))
						break;
					usleep(100000);
				}
				status = 0;
				rc = 1;
				break;
			}
			usleep(50000);
		}
		if (WIFSIGNALED(status)) {
			fprintf(stderr, "sysfuzz: FAIL: worker %d (%d) killed by signal %d after %ld calls (replay: --seed %#llx --workers %d --ops %ld)\n",
				i, pids[i], WTERMSIG(status),
				atomic_load(&st->worker_ops[i]),
				(unsigned long long)seed, workers,
				atomic_load(&st->worker_ops[i]));
			rc = 1;
		} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			rc = 1;
		}
	}
	vt_kmsg_stop(&kmsg);

	for (i = 0; i < NR_CALLS; i++)
		total += atomic_load(&st->calls[i]);
	printf("sysfuzz: %ld calls in %ld s by %d workers, per call: made/succeeded errno:count...\n",
	       total, (long)(time(NULL) - start), workers);
	for (i = 0; i < NR_CALLS; i++) {
		long e[NR_ERRNO][2];
		long calls = atomic_load(&st->calls[i]);

		if (!calls)
			continue;
		printf("  %-26s %8ld/%-8ld", call_names[i], calls,
		       atomic_load(&st->ok[i]));
		for (j = 0; j < NR_ERRNO; j++) {
			e[j][0] = atomic_load(&st->err[i][j]);
			e[j][1] = j;
		}
		qsort(e, NR_ERRNO, sizeof(e[0]), by_count);
		for (j = 0; j < NR_ERRNO && e[j][0]; j++)
			printf(" %s:%ld", strerrorname_np(e[j][1]) ?: "other",
			       e[j][0]);
		printf("\n");
	}
	failed = atomic_load(&st->children_killed);
	printf("sysfuzz: kernel log: %ld records read, %ld lost, %ld reports\n",
	       kmsg.records, kmsg.lost, kmsg.reports);
	if (kmsg.reports) {
		fprintf(stderr, "sysfuzz: FAIL: %ld kernel report line(s)\n",
			kmsg.reports);
		rc = 1;
	}
	if (failed)
		rc = 1;
	if (!total) {
		fprintf(stderr, "sysfuzz: FAIL: no calls made\n");
		rc = 1;
	}
	printf("sysfuzz: %s\n", rc ? "FAIL" : "PASS");
	return rc;
}
