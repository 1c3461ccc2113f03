// SPDX-License-Identifier: GPL-2.0
/*
 * Lifetime tests for memfd_exclusive(2), written as a hostile user would
 * attack the file: the inode outlives the last real file when an O_PATH
 * descriptor of /proc/PID/fd/N or /proc/PID/map_files/... holds it, and every
 * path-based operation (truncate, chmod, chown, utimes, setxattr, reopen)
 * still reaches it, also racing close(). While such an inode lives its pages
 * hold the user's data and are out of the direct map, so they must stay
 * charged (RLIMIT_MEMLOCK, memory cgroup), counted (regions, pages_in_use),
 * sealed, unreadable, and must keep hibernation refused.
 *
 * Then the pages' own end of life. The pool lives in the page allocator:
 * free pool pages sit on its MIGRATE_UNMAPPED free lists, in pageblocks out
 * of the direct map (pool_blocks), and the last folio_put() of a page frees
 * it through the allocator's own free path. Hibernation is refused while any
 * memfd_exclusive inode exists (pages in use, or held by an O_PATH pin);
 * with none left, the check itself gives every free pool pageblock back to
 * the direct map and offers hibernation (an idle pool), as it does once the
 * pool was drained beforehand (the control). Memory failure (MADV_HWPOISON,
 * MADV_SOFT_OFFLINE, the sysfs soft_offline_page and hard_offline_page files)
 * on pages in use and on pages free in the pool must not oops or log a
 * kernel report, and must not lose or expose data: a poisoned page in use
 * stays in the file's page cache (a fault at its offset gets SIGBUS, the
 * other offsets keep their data), a poisoned free page is taken off the free
 * lists, neither is ever handed out again, and its pageblock stays out of
 * the direct map for good (pool_blocks >= 1, hibernation refused).
 *
 * Gone with the old pool: the tests of pages "returning to the pool"
 * (hib refused_pages_returning, mf soft/hard_offline_pages_returning). The
 * old pool kept a reference of its own to a released page and recycled it
 * later from a work item, a state userspace could catch (SCHED_FIFO kept the
 * work item off the CPU) and read in pool_returning_pages. Now nothing of the
 * pool holds a reference and a released page goes straight back through the
 * allocator's free path: there is no such state left to catch, and the file
 * is gone. A page's last reference in transit (a per-CPU LRU batch, a frozen
 * refcount) is kernel-internal and covered by the pool's KUnit suite; where
 * the tests here wait for released pages they drain the LRU batches
 * (compact_memory).
 *
 * Needs root for the sysfs files of the pool, /proc/PID/pagemap PFNs,
 * /proc/kpageflags, /dev/kmsg, hibernation, memory failure and map_files;
 * the parts that model an unprivileged attacker drop to an unused uid in a
 * child. Tests that need root are skipped without it (tests/vm/kernel-tests.sh
 * runs them as root and fails on any skip). The hibernation tests drain the
 * pool, and the memory-failure tests poison pages for good: run them in a
 * throw-away VM.
 *
 * Order (the harness runs fixtures in the order they are declared): hib
 * first, as it needs every pool pageblock back in the direct map, which a
 * poisoned page prevents for good; lt next, as on a kernel with the bugs
 * these tests look for its crashes leave pages behind; mf last, as a
 * poisoned page stays out of use for good, and a pool that hands poisoned
 * pages out again would fail every later allocation. Each test runs in its
 * own process (the harness forks), so a test killed by a kernel oops is
 * reported and the next one runs.
 *
 * Builds on its own (scripts/build-selftest):
 *   gcc -O2 -Wall -pthread -I tools/testing/selftests -I <xmem>/include \
 *       <this file>
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <linux/suspend_ioctls.h>
#include <linux/types.h>

#if __has_include("linux/memfd_exclusive.h")
#include <linux/memfd_exclusive.h>
#else
#include "uapi/linux/memfd_exclusive.h"
#endif

#include "kselftest_harness.h"

#ifndef MADV_HWPOISON
#define MADV_HWPOISON		100
#endif
#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE	101
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC		0x0020
#endif

#define KPF_HWPOISON		19	/* include/uapi/linux/kernel-page-flags.h */
#define PM_PRESENT		0x8000000000000000ULL
#define PM_PFN_MASK		((1ULL << 55) - 1)

#define SOFT_OFFLINE		"/sys/devices/system/memory/soft_offline_page"
#define HARD_OFFLINE		"/sys/devices/system/memory/hard_offline_page"

/* Polling: 10 ms steps, 30 s of guest time. */
#define SETTLE_STEPS		3000

/* Pages of a pageblock: 2 MiB on x86-64 (pageblock_order = PMD order). */
#define PAGEBLOCK_PAGES		((long)((2UL << 20) / page_size))

static size_t page_size;

static int sys_memfd_exclusive(const char *name, unsigned int flags)
{
	return syscall(__NR_memfd_exclusive, name, flags);
}

static bool mfdx_available(void)
{
	return !access(MEMFD_EXCLUSIVE_SYSFS_DIR, F_OK);
}

/* A number from /sys/kernel/mm/memfd_exclusive/@name, -1 on error. */
static long stat_read(const char *name)
{
	char path[PATH_MAX];
	long val = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", MEMFD_EXCLUSIVE_SYSFS_DIR, name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &val) != 1)
		val = -1;
	fclose(f);
	return val;
}

/* Writes @val to @path with one write(); 0 or -errno. */
static int write_file(const char *path, const char *val)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Reads @path into @buf (NUL-terminated); 0 or -errno. */
static int read_file(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int stat_write(const char *name, const char *val)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", MEMFD_EXCLUSIVE_SYSFS_DIR, name);
	return write_file(path, val);
}

/*
 * Per-CPU LRU batches may hold the last reference of a released page for a
 * while: compaction drains them on every CPU first (root; best effort).
 */
static void lru_drain(void)
{
	write_file("/proc/sys/vm/compact_memory", "1");
}

/*
 * Waits until no memfd_exclusive file exists and every page of every pool
 * pageblock is free (draining the LRU batches); false on timeout.
 */
static bool pool_idle(void)
{
	long blocks;
	int i;

	for (i = 0; i < SETTLE_STEPS; i++) {
		if (i % 50 == 0)
			lru_drain();
		blocks = stat_read("pool_blocks");
		if (stat_read("regions") == 0 &&
		    stat_read("pages_in_use") == 0 && blocks >= 0 &&
		    stat_read("pool_free_pages") == blocks * PAGEBLOCK_PAGES)
			return true;
		usleep(10000);
	}
	return false;
}

/*
 * Waits until at least @want pages are free in the pool (released pages
 * reached the free lists), draining the LRU batches; false on timeout.
 */
static bool pool_free_reaches(long want)
{
	int i;

	for (i = 0; i < SETTLE_STEPS; i++) {
		if (i % 50 == 0)
			lru_drain();
		if (stat_read("pool_free_pages") >= want)
			return true;
		usleep(10000);
	}
	return false;
}

/* A file of @pages pages, mapped shared at *@map with every page written. */
static int make_faulted(struct __test_metadata *_metadata, const char *name,
			unsigned int flags, size_t pages, char **map)
{
	size_t i;
	char *p;
	int fd;

	fd = sys_memfd_exclusive(name, flags);
	ASSERT_LE(0, fd) TH_LOG("memfd_exclusive: %s", strerror(errno));
	ASSERT_EQ(0, ftruncate(fd, pages * page_size));
	p = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (i = 0; i < pages; i++)
		p[i * page_size] = 1;
	*map = p;
	return fd;
}

/* The path of descriptor @fd of this process. */
static const char *fd_path(int fd, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
	return buf;
}

/* An O_PATH descriptor of /proc/self/fd/@fd: holds the inode, not the file. */
static int opath_pin(int fd)
{
	char path[64];

	return open(fd_path(fd, path, sizeof(path)), O_PATH | O_CLOEXEC);
}

/* The PFN mapped at @addr in this process (root), 0 if none. */
static __u64 pfn_of(const void *addr)
{
	__u64 ent = 0;
	int fd;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (pread(fd, &ent, sizeof(ent),
		  (uintptr_t)addr / page_size * sizeof(ent)) != sizeof(ent))
		ent = 0;
	close(fd);
	return (ent & PM_PRESENT) ? ent & PM_PFN_MASK : 0;
}

/* Whether /proc/kpageflags says PFN @pfn is poisoned; -1 if unreadable. */
static int pfn_hwpoisoned(__u64 pfn)
{
	__u64 flags;
	int fd, ret = -1;

	fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (pread(fd, &flags, sizeof(flags), pfn * sizeof(flags)) ==
	    sizeof(flags))
		ret = !!(flags & (1ULL << KPF_HWPOISON));
	close(fd);
	return ret;
}

/* Writes the physical address of @pfn to a sysfs offline file; 0 or -errno. */
static int offline_pfn(const char *file, __u64 pfn)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%#llx",
		 (unsigned long long)(pfn * page_size));
	return write_file(file, buf);
}

/* Probing an address with a SIGBUS/SIGSEGV handler. */
static sigjmp_buf probe_env;

static void probe_handler(int sig)
{
	siglongjmp(probe_env, sig);
}

/* 0 if the access went through, else the signal it raised. */
static int probe(char *p, bool write, char *out)
{
	struct sigaction sa = { .sa_handler = probe_handler };
	struct sigaction old_bus, old_segv;
	int sig;

	sigaction(SIGBUS, &sa, &old_bus);
	sigaction(SIGSEGV, &sa, &old_segv);
	sig = sigsetjmp(probe_env, 1);
	if (!sig) {
		if (write)
			__atomic_store_n(p, *out, __ATOMIC_RELAXED);
		else
			*out = __atomic_load_n(p, __ATOMIC_RELAXED);
	}
	sigaction(SIGBUS, &old_bus, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
	return sig;
}

/* Drops to @uid (no groups, no capabilities); false on failure. */
static bool drop_to(uid_t uid)
{
	return !setgroups(0, NULL) && !setresgid(uid, uid, uid) &&
	       !setresuid(uid, uid, uid);
}

/* A uid no process uses, so its user_struct starts with nothing locked. */
static uid_t fresh_uid(void)
{
	return 40000 + getpid() % 20000;
}

static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/*
 * The attacker of the O_PATH tests: a fresh unprivileged uid with @pages of
 * RLIMIT_MEMLOCK (set while still root), so that a corrupted charge of one
 * test's user cannot starve the next test. Without root the caller is
 * already unprivileged and keeps its limits.
 */
static bool become_hostile(size_t pages)
{
	struct rlimit rl = { pages * page_size, pages * page_size };

	if (geteuid())
		return true;
	return !setrlimit(RLIMIT_MEMLOCK, &rl) && drop_to(fresh_uid());
}

/*
 * Hibernation. Nothing here ever hibernates: "disk" is written to
 * /sys/power/state only when it is not offered (then hibernate() must refuse
 * before doing anything); otherwise the probes are /sys/power/disk (a mode
 * write: EPERM when unavailable, else it only sets the mode) and opening
 * /dev/snapshot O_RDWR (EPERM when unavailable, else it fails after the
 * check, as that device is read or written, never both: no side effect).
 * Each of them runs the check (hibernation_available()), which, with no
 * memfd_exclusive file left, gives the free pool pageblocks back.
 */
static bool state_offers_disk(void)
{
	char buf[256], *tok, *save;

	if (read_file("/sys/power/state", buf, sizeof(buf)))
		return false;
	for (tok = strtok_r(buf, "\n ", &save); tok;
	     tok = strtok_r(NULL, "\n ", &save))
		if (!strcmp(tok, "disk"))
			return true;
	return false;
}

static int snapshot_probe(void)
{
	int fd = open("/dev/snapshot", O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	return -errno;
}

static void log_pool(struct __test_metadata *_metadata, const char *what)
{
	TH_LOG("%s: in use %ld, regions %ld, pool blocks %ld free %ld (taken %ld, back %ld)",
	       what, stat_read("pages_in_use"), stat_read("regions"),
	       stat_read("pool_blocks"), stat_read("pool_free_pages"),
	       stat_read("pool_block_allocs"), stat_read("pool_block_frees"));
}

static void expect_hibernation_refused(struct __test_metadata *_metadata,
				       const char *what)
{
	char buf[128];
	bool offered;
	int err;

	log_pool(_metadata, what);
	offered = state_offers_disk();
	EXPECT_FALSE(offered)
		TH_LOG("%s: /sys/power/state offers disk (not written: it would hibernate)",
		       what);
	if (!offered) {
		err = write_file("/sys/power/state", "disk");
		EXPECT_EQ(-EPERM, err) TH_LOG("%s: disk > /sys/power/state: %s",
					      what, strerror(-err));
	}
	ASSERT_EQ(0, read_file("/sys/power/disk", buf, sizeof(buf)));
	EXPECT_STREQ("[disabled]\n", buf) TH_LOG("%s: /sys/power/disk", what);
	err = write_file("/sys/power/disk", "shutdown");
	EXPECT_EQ(-EPERM, err) TH_LOG("%s: shutdown > /sys/power/disk: %s",
				      what, err ? strerror(-err) : "accepted");
	err = snapshot_probe();
	EXPECT_EQ(-EPERM, err) TH_LOG("%s: open(/dev/snapshot, O_RDWR): %s",
				      what, err ? strerror(-err) : "opened");
}

/* The probes after /sys/power/state offered "disk" (or should have). */
static void expect_hibernation_modes(struct __test_metadata *_metadata)
{
	char buf[128];
	int err;

	ASSERT_EQ(0, read_file("/sys/power/disk", buf, sizeof(buf)));
	EXPECT_STRNE("[disabled]\n", buf);
	TH_LOG("/sys/power/disk: %s", buf);
	EXPECT_EQ(0, write_file("/sys/power/disk", "shutdown"));
	err = snapshot_probe();
	EXPECT_NE(-EPERM, err) TH_LOG("open(/dev/snapshot, O_RDWR): %s",
				      err ? strerror(-err) : "opened");
}

/*
 * Gives every free pool pageblock back to the direct map without the
 * hibernation check: high-water mark 0, the last references drained, then
 * the shrinker (drop_caches 2). False if any pageblock or page remains.
 */
static bool pool_drain(void)
{
	int i;

	if (stat_write("pool_high_water_kb", "0") || !pool_idle())
		return false;
	for (i = 0; i < SETTLE_STEPS / 10; i++) {
		if (write_file("/proc/sys/vm/drop_caches", "2"))
			return false;
		if (stat_read("pool_blocks") == 0 &&
		    stat_read("pool_free_pages") == 0 &&
		    stat_read("pages_in_use") == 0)
			return true;
		usleep(100000);
	}
	return false;
}

FIXTURE(hib) {
	char high_water[32];
};

FIXTURE_SETUP(hib)
{
	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	if (geteuid())
		SKIP(return, "needs root");
	ASSERT_EQ(0, access("/sys/power/state", F_OK))
		TH_LOG("no /sys/power/state: CONFIG_HIBERNATION is in the test config");
	ASSERT_EQ(0, access("/sys/power/disk", F_OK));
	snprintf(self->high_water, sizeof(self->high_water), "%ld",
		 stat_read("pool_high_water_kb"));
}

FIXTURE_TEARDOWN(hib)
{
	stat_write("pool_high_water_kb", self->high_water);
}

/*
 * The control: with no page out of the direct map (pool drained by the
 * shrinker), "disk" is offered, /sys/power/disk takes a mode and
 * /dev/snapshot passes the availability check. Proves that the refusals
 * below can be told apart.
 */
TEST_F_TIMEOUT(hib, control_offered_when_drained, 120)
{
	ASSERT_TRUE(pool_drain())
		log_pool(_metadata, "not drained");
	EXPECT_TRUE(state_offers_disk());
	expect_hibernation_modes(_metadata);
}

TEST_F_TIMEOUT(hib, refused_pages_in_use, 120)
{
	char *p;
	int fd;

	ASSERT_TRUE(pool_drain());
	fd = make_faulted(_metadata, "hib-in-use", 0, 4, &p);
	expect_hibernation_refused(_metadata, "4 pages mapped");
	munmap(p, 4 * page_size);
	close(fd);
}

/* The file is closed; an O_PATH descriptor keeps its inode and pages. */
TEST_F_TIMEOUT(hib, refused_pinned_by_opath, 120)
{
	int fd, o;
	char *p;

	ASSERT_TRUE(pool_drain());
	fd = make_faulted(_metadata, "hib-pinned", 0, 4, &p);
	munmap(p, 4 * page_size);
	o = opath_pin(fd);
	ASSERT_LE(0, o);
	close(fd);
	EXPECT_LE(4, stat_read("pages_in_use"));
	expect_hibernation_refused(_metadata, "4 pages held by an O_PATH pin");
	close(o);
}

/*
 * /dev/snapshot opened while no page was out of the direct map, then a file
 * faulted in: the image must not be made (found by the hostile review of
 * 2026-12-01, which read the secret back from the image; kernel/patches/0006
 * checks again in hibernation_snapshot(), with user space frozen).
 */
TEST_F_TIMEOUT(hib, snapshot_refused_for_a_later_file, 120)
{
	int sd, fd, r, err, in_suspend = -1;
	char *p;

	ASSERT_TRUE(pool_drain());
	sd = open("/dev/snapshot", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, sd) TH_LOG("open /dev/snapshot with nothing out: %s",
				strerror(errno));
	fd = make_faulted(_metadata, "hib-snapshot", 0, 1, &p);
	memcpy(p, "XMEM-SNAPSHOT-SECRET", 20);
	r = ioctl(sd, SNAPSHOT_FREEZE);
	ASSERT_EQ(0, r) TH_LOG("SNAPSHOT_FREEZE: %s", strerror(errno));
	r = ioctl(sd, SNAPSHOT_CREATE_IMAGE, &in_suspend);
	err = errno;
	if (r == 0)
		ioctl(sd, SNAPSHOT_FREE);
	EXPECT_EQ(0, ioctl(sd, SNAPSHOT_UNFREEZE));
	EXPECT_EQ(-1, r) TH_LOG("an image was made with a page out of the direct map");
	if (r == -1)
		EXPECT_EQ(EPERM, err) TH_LOG("SNAPSHOT_CREATE_IMAGE: %s", strerror(err));
	close(sd);
	munmap(p, page_size);
	close(fd);
}

/*
 * No file at all, the pool's pageblock idle (every page free, kept by a
 * high-water mark above it) and still out of the direct map: the check
 * itself gives it back, then offers hibernation.
 */
TEST_F_TIMEOUT(hib, idle_pool_given_back_by_the_check, 120)
{
	long blocks, frees;
	bool offered;
	char *p;
	int fd;

	ASSERT_TRUE(pool_drain());
	/* 8 pageblocks per zone: the trim keeps the one grown below. */
	ASSERT_EQ(0, stat_write("pool_high_water_kb", "16384"));
	fd = make_faulted(_metadata, "hib-idle", 0, 4, &p);
	munmap(p, 4 * page_size);
	close(fd);
	ASSERT_TRUE(pool_idle())
		log_pool(_metadata, "not idle");
	blocks = stat_read("pool_blocks");
	frees = stat_read("pool_block_frees");
	log_pool(_metadata, "idle, before the check");
	ASSERT_LT(0, blocks)
		TH_LOG("no pageblock idle in the pool: nothing for the check to give back");
	offered = state_offers_disk();
	EXPECT_TRUE(offered)
		TH_LOG("no file, pool idle: /sys/power/state does not offer disk");
	EXPECT_EQ(0, stat_read("pool_blocks"))
		TH_LOG("the check left pageblocks out of the direct map");
	EXPECT_EQ(0, stat_read("pool_free_pages"));
	EXPECT_EQ(frees + blocks, stat_read("pool_block_frees"));
	log_pool(_metadata, "after the check");
	expect_hibernation_modes(_metadata);
}

FIXTURE(lt) {
	long regions, pages;
};

FIXTURE_SETUP(lt)
{
	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	self->regions = stat_read("regions");
	self->pages = stat_read("pages_in_use");
	ASSERT_LE(0, self->regions);
	ASSERT_LE(0, self->pages);
}

FIXTURE_TEARDOWN(lt)
{
}

/*
 * Counts: a pinned inode is a live region with its pages until the last
 * O_PATH descriptor goes.
 */
TEST_F(lt, counts_follow_the_inode)
{
	int fd, o1, o2;
	char *p;

	ASSERT_TRUE(become_hostile(64));
	fd = make_faulted(_metadata, "counts", 0, 8, &p);
	munmap(p, 8 * page_size);
	o1 = opath_pin(fd);
	o2 = opath_pin(fd);
	ASSERT_LE(0, o1);
	ASSERT_LE(0, o2);
	EXPECT_EQ(self->regions + 1, stat_read("regions"));
	EXPECT_EQ(self->pages + 8, stat_read("pages_in_use"));

	close(fd);
	EXPECT_EQ(self->regions + 1, stat_read("regions"))
		TH_LOG("the file is closed but its inode and 8 pages live");
	EXPECT_EQ(self->pages + 8, stat_read("pages_in_use"));

	close(o1);
	EXPECT_EQ(self->regions + 1, stat_read("regions"));
	EXPECT_EQ(self->pages + 8, stat_read("pages_in_use"));

	close(o2);
	EXPECT_EQ(self->regions, stat_read("regions"));
	EXPECT_EQ(self->pages, stat_read("pages_in_use"));
}

/*
 * RLIMIT_MEMLOCK, as an unprivileged user: create, fault, pin with O_PATH,
 * close, again. The pinned pages stay allocated, so the loop must hit the
 * limit; it must not bypass it. Then the charge goes with the inodes: a new
 * process of the same user faults the whole limit again.
 */
static int rlimit_loop_child(uid_t uid, size_t limit_pages, size_t per_file,
			     size_t max_iter, size_t *faulted)
{
	struct rlimit rl = { limit_pages * page_size, limit_pages * page_size };
	size_t i, j;
	char *p, c = 1;
	int fd, o;

	*faulted = 0;
	if (setrlimit(RLIMIT_MEMLOCK, &rl) || !drop_to(uid))
		return 2;
	for (i = 0; i < max_iter; i++) {
		fd = sys_memfd_exclusive("rlimit-pin", 0);
		if (fd < 0 || ftruncate(fd, per_file * page_size))
			return 3;
		p = mmap(NULL, per_file * page_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			return 4;
		for (j = 0; j < per_file; j++) {
			if (probe(p + j * page_size, true, &c))
				return 0;	/* the limit held */
			++*faulted;
		}
		munmap(p, per_file * page_size);
		o = opath_pin(fd);
		if (o < 0)
			return 5;
		close(fd);		/* o stays open until exit */
	}
	return 1;			/* bypassed */
}

TEST_F_TIMEOUT(lt, rlimit_not_bypassed_by_opath_pins, 120)
{
	const size_t limit = 16, per_file = 4, max_iter = 4 * limit / per_file;
	uid_t uid = fresh_uid();
	int pipefd[2], status, round;
	size_t faulted;
	pid_t pid;

	if (geteuid())
		SKIP(return, "needs root");
	for (round = 0; round < 2; round++) {
		ASSERT_EQ(0, pipe(pipefd));
		pid = fork();
		ASSERT_LE(0, pid);
		if (!pid) {
			int rc = rlimit_loop_child(uid, limit, per_file,
						   max_iter, &faulted);

			if (write(pipefd[1], &faulted, sizeof(faulted)) < 0)
				rc = 9;
			_exit(rc);
		}
		close(pipefd[1]);
		faulted = 0;
		EXPECT_EQ(sizeof(faulted), read(pipefd[0], &faulted,
						sizeof(faulted)));
		close(pipefd[0]);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		TH_LOG("round %d: uid %u faulted %zu pages under a limit of %zu (exit %d)",
		       round, uid, faulted, limit, WEXITSTATUS(status));
		EXPECT_EQ(0, WEXITSTATUS(status))
			TH_LOG("exit 1: %zu pages held by O_PATH pins, limit %zu bypassed",
			       faulted, limit);
		EXPECT_GE(limit, faulted);
		/* Round 1: the pins of round 0 went at its exit, so did the charge. */
		EXPECT_LE(limit - per_file, faulted);
	}
}

/*
 * Truncating the pinned inode through its path frees the pages and the
 * charge at once (the known crash: mfdx_setattr on a freed i_private).
 */
TEST_F_TIMEOUT(lt, rlimit_released_by_path_truncate, 120)
{
	const size_t limit = 16;
	int status;
	pid_t pid;

	if (geteuid())
		SKIP(return, "needs root");
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct rlimit rl = { limit * page_size, limit * page_size };
		char path[64], *p, c = 1;
		size_t i;
		int fd, o;

		if (setrlimit(RLIMIT_MEMLOCK, &rl) || !drop_to(fresh_uid()))
			_exit(2);
		fd = sys_memfd_exclusive("rlimit-trunc", 0);
		if (fd < 0 || ftruncate(fd, limit * page_size))
			_exit(3);
		p = mmap(NULL, limit * page_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			_exit(4);
		for (i = 0; i < limit; i++)
			if (probe(p + i * page_size, true, &c))
				_exit(5);
		munmap(p, limit * page_size);
		o = opath_pin(fd);
		if (o < 0)
			_exit(6);
		close(fd);
		if (truncate(fd_path(o, path, sizeof(path)), 0))
			_exit(7);
		/* The whole limit is free again. */
		fd = sys_memfd_exclusive("rlimit-trunc2", 0);
		if (fd < 0 || ftruncate(fd, limit * page_size))
			_exit(8);
		p = mmap(NULL, limit * page_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			_exit(9);
		for (i = 0; i < limit; i++)
			if (probe(p + i * page_size, true, &c))
				_exit(10);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status))
		TH_LOG("child killed by signal %d", WTERMSIG(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* The known crash, as any user: truncate the pinned inode after close(). */
TEST_F(lt, opath_truncate_after_close)
{
	struct stat st;
	char path[64];
	int fd, o;
	char *p;

	ASSERT_TRUE(become_hostile(1024));
	fd = make_faulted(_metadata, "x", 0, 256, &p);
	munmap(p, 256 * page_size);
	o = opath_pin(fd);
	ASSERT_LE(0, o);
	close(fd);
	EXPECT_EQ(0, truncate(fd_path(o, path, sizeof(path)), 0))
		TH_LOG("truncate: %s", strerror(errno));
	EXPECT_EQ(self->pages, stat_read("pages_in_use"));
	EXPECT_EQ(0, truncate(path, 8 * page_size));
	ASSERT_EQ(0, fstat(o, &st));
	EXPECT_EQ(8 * page_size, st.st_size);
	close(o);
	EXPECT_EQ(self->regions, stat_read("regions"));
	EXPECT_EQ(self->pages, stat_read("pages_in_use"));
}

/* chmod, chown, utimes, setxattr through the path of a pinned, closed file. */
TEST_F(lt, opath_attributes_after_close)
{
	struct stat st;
	char path[64];
	int fd, o;
	char *p;

	ASSERT_TRUE(become_hostile(64));
	fd = make_faulted(_metadata, "attrs", 0, 4, &p);
	munmap(p, 4 * page_size);
	o = opath_pin(fd);
	ASSERT_LE(0, o);
	close(fd);
	fd_path(o, path, sizeof(path));

	EXPECT_EQ(0, chown(path, getuid(), getgid()))
		TH_LOG("chown: %s", strerror(errno));
	EXPECT_EQ(0, utimensat(AT_FDCWD, path, NULL, 0))
		TH_LOG("utimensat: %s", strerror(errno));
	EXPECT_EQ(-1, setxattr(path, "user.x", "1", 1, 0));
	EXPECT_EQ(-1, setxattr(path, "security.x", "1", 1, 0));
	EXPECT_EQ(-1, fallocate(o, 0, 0, page_size));
	EXPECT_EQ(EBADF, errno);
	EXPECT_EQ(0, chmod(path, 0400)) TH_LOG("chmod: %s", strerror(errno));
	ASSERT_EQ(0, fstat(o, &st));
	EXPECT_EQ(0400, st.st_mode & 07777);
	close(o);
	EXPECT_EQ(self->regions, stat_read("regions"));
	EXPECT_EQ(self->pages, stat_read("pages_in_use"));
}

/* Seals hold through path-based operations, with the file open or not. */
TEST_F(lt, opath_seals_enforced)
{
	struct stat st;
	char path[64];
	int fd, o, pass;
	char *p;

	ASSERT_TRUE(become_hostile(64));
	fd = make_faulted(_metadata, "sealed", MFD_EXCLUSIVE_ALLOW_SEALING, 4,
			  &p);
	munmap(p, 4 * page_size);
	ASSERT_EQ(0, fchmod(fd, 0600));
	ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS,
			   F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_EXEC));
	o = opath_pin(fd);
	ASSERT_LE(0, o);
	fd_path(o, path, sizeof(path));
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1)
			close(fd);
		EXPECT_EQ(-1, truncate(path, 0)) TH_LOG("pass %d", pass);
		EXPECT_EQ(EPERM, errno);
		EXPECT_EQ(-1, truncate(path, 8 * page_size));
		EXPECT_EQ(EPERM, errno);
		EXPECT_EQ(-1, chmod(path, 0700));
		EXPECT_EQ(EPERM, errno);
		ASSERT_EQ(0, fstat(o, &st));
		EXPECT_EQ(4 * page_size, st.st_size);
		EXPECT_EQ(0600, st.st_mode & 07777);
		EXPECT_EQ(self->pages + 4, stat_read("pages_in_use"));
	}
	close(o);
}

/* Reopening for I/O stays refused (ENXIO), before and after close(). */
TEST_F(lt, opath_reopen_refused)
{
	static const int modes[] = { O_RDONLY, O_WRONLY, O_RDWR };
	char path[64], opath[64];
	unsigned int i;
	int fd, o, r, pass;
	char *p;

	ASSERT_TRUE(become_hostile(64));
	fd = make_faulted(_metadata, "reopen", 0, 1, &p);
	o = opath_pin(fd);
	ASSERT_LE(0, o);
	fd_path(fd, path, sizeof(path));
	fd_path(o, opath, sizeof(opath));
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			munmap(p, page_size);
			close(fd);
		}
		for (i = 0; i < 3; i++) {
			if (pass == 0) {
				r = open(path, modes[i] | O_CLOEXEC);
				EXPECT_EQ(-1, r) TH_LOG("fd path, mode %d", modes[i]);
				EXPECT_EQ(ENXIO, errno);
				if (r >= 0)
					close(r);
			}
			r = open(opath, modes[i] | O_CLOEXEC);
			EXPECT_EQ(-1, r) TH_LOG("pass %d, O_PATH path, mode %d",
						pass, modes[i]);
			EXPECT_EQ(ENXIO, errno);
			if (r >= 0)
				close(r);
		}
		/* An O_PATH of the O_PATH works and gives no more. */
		r = open(opath, O_PATH | O_CLOEXEC);
		ASSERT_LE(0, r);
		EXPECT_EQ(-1, open(fd_path(r, path, sizeof(path)),
				   O_RDWR | O_CLOEXEC));
		EXPECT_EQ(ENXIO, errno);
		close(r);
	}
	close(o);
}

/*
 * The contents of a pinned, closed file cannot be read through the pin, and
 * are zero when its pages are handed out again.
 */
TEST_F_TIMEOUT(lt, opath_contents_unreadable, 120)
{
	const size_t pages = 64;
	char secret[64], buf[64], path[64];
	int fd, o, pipefd[2];
	size_t i, j, n;
	char *p;

	ASSERT_TRUE(become_hostile(16384));
	snprintf(secret, sizeof(secret), "XMEM-LIFETIME-SECRET-%d", getpid());
	fd = make_faulted(_metadata, "contents", 0, pages, &p);
	for (i = 0; i < pages; i++)
		memcpy(p + i * page_size, secret, strlen(secret));
	munmap(p, pages * page_size);
	o = opath_pin(fd);
	ASSERT_LE(0, o);
	close(fd);

	EXPECT_EQ(-1, read(o, buf, sizeof(buf)));
	EXPECT_EQ(EBADF, errno);
	EXPECT_EQ(-1, pread(o, buf, sizeof(buf), 0));
	EXPECT_EQ(EBADF, errno);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, page_size, PROT_READ, MAP_SHARED, o, 0));
	EXPECT_EQ(EBADF, errno);
	ASSERT_EQ(0, pipe(pipefd));
	EXPECT_EQ(-1, sendfile(pipefd[1], o, NULL, page_size));
	EXPECT_EQ(-1, splice(o, NULL, pipefd[1], NULL, page_size, 0));
	close(pipefd[0]);
	close(pipefd[1]);
	EXPECT_EQ(-1, open(fd_path(o, path, sizeof(path)), O_RDONLY | O_CLOEXEC));
	EXPECT_EQ(ENXIO, errno);
	close(o);

	/* Every page the pool now hands out is zero. */
	n = pages + (stat_read("pool_free_pages") > 0 ?
		     (size_t)stat_read("pool_free_pages") : 0);
	fd = make_faulted(_metadata, "contents-after", 0, n, &p);
	for (i = 0; i < n; i++) {
		for (j = 1; j < page_size; j++)
			if (p[i * page_size + j])
				break;
		EXPECT_EQ(page_size, j) TH_LOG("page %zu not zero at %zu", i, j);
		if (j != page_size)
			break;
	}
	munmap(p, n * page_size);
	close(fd);
}

/*
 * Race path-based truncate, chmod and utimes in a thread against close() of
 * the last real file in another, many times. The thread's first call shrinks
 * the whole file (the longest ->setattr: it frees every page, then uncharges
 * them) and is started just before the close(), with a varying head start.
 */
struct racer {
	char path[64];
	bool ready;
	bool go;
	bool stop;
	bool closed;
	int errors;
	int after_close;
};

static void *race_thread(void *arg)
{
	struct racer *r = arg;
	int n = 0;

	__atomic_store_n(&r->ready, true, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&r->go, __ATOMIC_ACQUIRE))
		;
	if (truncate(r->path, 0))
		r->errors++;
	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) ||
	       r->after_close < 3) {
		bool closed = __atomic_load_n(&r->closed, __ATOMIC_ACQUIRE);

		if (truncate(r->path, (n & 1 ? 2 : 1) * page_size) ||
		    chmod(r->path, 0600) ||
		    utimensat(AT_FDCWD, r->path, NULL, 0))
			r->errors++;
		if (closed)
			r->after_close++;
		if (++n % 4 == 0)
			sched_yield();
	}
	return NULL;
}

TEST_F_TIMEOUT(lt, race_path_ops_with_close, 300)
{
	const int rounds = 60, limit = 64, pages = 48;
	unsigned long spin;
	struct racer r;
	pthread_t t;
	int i, k, fd, o;
	char *p, c = 1;

	ASSERT_TRUE(become_hostile(limit));
	for (i = 0; i < rounds; i++) {
		memset(&r, 0, sizeof(r));
		fd = sys_memfd_exclusive("race", 0);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, ftruncate(fd, pages * page_size));
		p = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, fd, 0);
		ASSERT_NE(MAP_FAILED, p);
		/*
		 * Each round starts with nothing charged to this user: a
		 * refused fault means an earlier round's charge was dropped
		 * twice (locked_vm wrapped) or never dropped.
		 */
		for (k = 0; k < pages; k++)
			if (probe(p + k * page_size, true, &c))
				break;
		munmap(p, pages * page_size);
		if (k < pages) {
			close(fd);
			ASSERT_EQ(pages, k)
				TH_LOG("round %d: page %d of %d refused under a limit of %d pages",
				       i, k, pages, limit);
		}
		o = opath_pin(fd);
		ASSERT_LE(0, o);
		fd_path(o, r.path, sizeof(r.path));
		ASSERT_EQ(0, pthread_create(&t, NULL, race_thread, &r));
		while (!__atomic_load_n(&r.ready, __ATOMIC_ACQUIRE))
			;
		__atomic_store_n(&r.go, true, __ATOMIC_RELEASE);
		for (spin = 0; spin < 1UL << (i % 20); spin++)
			__atomic_signal_fence(__ATOMIC_SEQ_CST);
		close(fd);
		__atomic_store_n(&r.closed, true, __ATOMIC_RELEASE);
		__atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
		ASSERT_EQ(0, pthread_join(t, NULL));
		EXPECT_EQ(0, r.errors) TH_LOG("round %d: %d path ops failed",
					      i, r.errors);
		close(o);
	}
	EXPECT_EQ(self->regions, stat_read("regions"));
	EXPECT_EQ(self->pages, stat_read("pages_in_use"));

	/*
	 * Everything went: this user's whole RLIMIT_MEMLOCK is free again. A
	 * charge dropped twice (through a freed i_private) wraps the user's
	 * locked_vm and fails the first fault.
	 */
	fd = sys_memfd_exclusive("race-after", 0);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, limit * page_size));
	p = mmap(NULL, limit * page_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (i = 0; i < limit; i++)
		if (probe(p + i * page_size, true, &c))
			break;
	EXPECT_EQ(limit, i) TH_LOG("RLIMIT_MEMLOCK of %d pages: page %d refused", limit, i);
	munmap(p, limit * page_size);
	close(fd);
}

/*
 * /proc/PID/map_files/ reaches the file of a mapping (CAP_SYS_ADMIN or
 * CAP_CHECKPOINT_RESTORE): pin through it, drop the fd and the mapping.
 */
TEST_F(lt, map_files_pin_after_munmap)
{
	char path[128], fdp[64];
	int fd, o;
	char *p;

	if (geteuid())
		SKIP(return, "needs root");
	fd = make_faulted(_metadata, "map-files", 0, 4, &p);
	close(fd);
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx",
		 (unsigned long)p, (unsigned long)p + 4 * page_size);
	EXPECT_EQ(-1, open(path, O_RDWR | O_CLOEXEC));
	EXPECT_EQ(ENXIO, errno);
	o = open(path, O_PATH | O_CLOEXEC);
	ASSERT_LE(0, o) TH_LOG("%s: %s", path, strerror(errno));
	munmap(p, 4 * page_size);	/* the last reference of the file */
	EXPECT_EQ(self->regions + 1, stat_read("regions"));
	EXPECT_EQ(self->pages + 4, stat_read("pages_in_use"));
	fd_path(o, fdp, sizeof(fdp));
	EXPECT_EQ(-1, open(fdp, O_RDWR | O_CLOEXEC));
	EXPECT_EQ(ENXIO, errno);
	EXPECT_EQ(0, truncate(fdp, page_size)) TH_LOG("truncate: %s",
						      strerror(errno));
	EXPECT_EQ(self->pages + 1, stat_read("pages_in_use"));
	EXPECT_EQ(0, chmod(fdp, 0600));
	close(o);
	EXPECT_EQ(self->regions, stat_read("regions"));
	EXPECT_EQ(self->pages, stat_read("pages_in_use"));
}

/* Memory cgroup: pinned pages stay charged; the charge goes with them. */
static long cg_read(const char *dir, const char *name)
{
	char path[PATH_MAX], buf[64];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (read_file(path, buf, sizeof(buf)))
		return -1;
	return atol(buf);
}

static int cg_write(const char *dir, const char *name, const char *val)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return write_file(path, val);
}

/* The value of @key in @dir/memory.events, -1 on error. */
static long cg_event(const char *dir, const char *key)
{
	char path[PATH_MAX], k[64];
	long val, found = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.events", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", k, &val) == 2)
		if (!strcmp(k, key))
			found = val;
	fclose(f);
	return found;
}

TEST_F_TIMEOUT(lt, memcg_charge_follows_pinned_pages, 120)
{
	const char *root = "/sys/fs/cgroup";
	const size_t pages = 256, limit = 4 << 20;
	int to_child[2], to_parent[2], status, err;
	char dir[64], num[32], c;
	long before, pinned, after = -1;
	size_t total = 0;
	pid_t pid;
	int i;

	if (geteuid())
		SKIP(return, "needs root");
	err = write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
	ASSERT_EQ(0, err) TH_LOG("cgroup2 memory controller: %s", strerror(-err));
	snprintf(dir, sizeof(dir), "%s/mfdx-lifetime-%d", root, getpid());
	ASSERT_EQ(0, mkdir(dir, 0755));
	snprintf(num, sizeof(num), "%zu", limit);
	ASSERT_EQ(0, cg_write(dir, "memory.max", num));
	ASSERT_EQ(0, pipe(to_child));
	ASSERT_EQ(0, pipe(to_parent));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
		int fd, o, pins[64], npins = 0, rc = 0;
		size_t j;
		char *p, v = 1;

		/* Wait until the parent has moved this process into @dir. */
		if (read(to_child[0], &c, 1) != 1 || setrlimit(RLIMIT_MEMLOCK, &rl) ||
		    !drop_to(fresh_uid()))
			_exit(2);
		fd = sys_memfd_exclusive("memcg-pin", 0);
		if (fd < 0 || ftruncate(fd, pages * page_size))
			_exit(3);
		p = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			_exit(4);
		for (j = 0; j < pages; j++)
			if (probe(p + j * page_size, true, &v))
				_exit(5);
		munmap(p, pages * page_size);
		o = opath_pin(fd);
		close(fd);
		if (o < 0 || write(to_parent[1], "p", 1) != 1 ||
		    read(to_child[0], &c, 1) != 1)
			_exit(6);
		close(o);
		if (write(to_parent[1], "u", 1) != 1 ||
		    read(to_child[0], &c, 1) != 1)
			_exit(7);
		/* Create-fault-pin-close loop: memory.max must stop it. */
		while (npins < 64) {
			fd = sys_memfd_exclusive("memcg-loop", 0);
			if (fd < 0 || ftruncate(fd, pages * page_size))
				_exit(8);
			p = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE,
				 MAP_SHARED, fd, 0);
			if (p == MAP_FAILED)
				_exit(9);
			for (j = 0; j < pages; j++, total++)
				if (probe(p + j * page_size, true, &v))
					break;
			munmap(p, pages * page_size);
			pins[npins++] = opath_pin(fd);
			close(fd);
			if (j < pages)
				break;
		}
		if (total * page_size > limit || total * page_size < limit / 2)
			rc = 10;
		if (write(to_parent[1], &total, sizeof(total)) != sizeof(total))
			rc = 11;
		while (npins)
			close(pins[--npins]);
		_exit(rc);
	}
	snprintf(num, sizeof(num), "%d", pid);
	ASSERT_EQ(0, cg_write(dir, "cgroup.procs", num));
	before = cg_read(dir, "memory.current");
	ASSERT_EQ(1, write(to_child[1], "g", 1));
	ASSERT_EQ(1, read(to_parent[0], &c, 1));
	pinned = cg_read(dir, "memory.current");
	TH_LOG("memory.current: %ld before, %ld with %zu pages pinned", before,
	       pinned, pages);
	EXPECT_LE(before + (long)(pages * page_size), pinned);
	ASSERT_EQ(1, write(to_child[1], "g", 1));
	ASSERT_EQ(1, read(to_parent[0], &c, 1));
	for (i = 0; i < SETTLE_STEPS; i++) {
		after = cg_read(dir, "memory.current");
		if (after < pinned - (long)(pages * page_size) / 2)
			break;
		usleep(10000);
	}
	TH_LOG("memory.current: %ld after the last pin was closed", after);
	EXPECT_GT(pinned - (long)(pages * page_size) / 2, after);
	ASSERT_EQ(1, write(to_child[1], "g", 1));
	EXPECT_EQ(sizeof(total), read(to_parent[0], &total, sizeof(total)));
	TH_LOG("create-fault-pin-close loop stopped after %zu pages (memory.max %zu pages)",
	       total, limit / page_size);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	EXPECT_EQ(0, cg_event(dir, "oom_kill"));
	for (i = 0; i < SETTLE_STEPS && rmdir(dir); i++)
		usleep(10000);
	EXPECT_EQ(0, access(dir, F_OK) ? 0 : -1)
		TH_LOG("cgroup not empty: memory.current=%ld",
		       cg_read(dir, "memory.current"));
}

/*
 * Memory failure. Helpers: fault @n pages of a new file in a child, counting
 * the faults (a page refused by the fault path because it is poisoned costs
 * an extra fault) and checking that no page it maps is poisoned or one of
 * the @nbad PFNs @bad. Returns the child's exit status: 0 ok, 10 extra
 * faults, 11 a PFN of @bad mapped, 12 a poisoned page mapped, 13 SIGBUS
 * (*@extra is then -1000 - the page's index), 14 alarm (the fault path spun).
 */
static int fault_fresh_pages(size_t n, const __u64 *bad, int nbad,
			     long *extra)
{
	int pipefd[2], status;
	long res = -1;
	pid_t pid;

	if (pipe(pipefd))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
		long before, faults;
		size_t i;
		__u64 pfn;
		int fd, k, rc = 0;
		char *p, c = 1;

		close(pipefd[0]);
		setrlimit(RLIMIT_MEMLOCK, &rl);
		fd = sys_memfd_exclusive("fresh", 0);
		if (fd < 0 || ftruncate(fd, n * page_size))
			_exit(2);
		p = mmap(NULL, n * page_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			_exit(3);
		if (probe(p, true, &c))	/* also sets up the handlers' pages */
			_exit(13);
		alarm(60);
		before = minflt();
		for (i = 1; i < n; i++) {
			if (probe(p + i * page_size, true, &c)) {
				/* Which page of the new file was refused. */
				res = -1000 - (long)i;
				if (write(pipefd[1], &res, sizeof(res)) < 0)
					_exit(4);
				_exit(13);
			}
		}
		faults = minflt() - before;
		alarm(0);
		res = faults - (long)(n - 1);
		if (write(pipefd[1], &res, sizeof(res)) != sizeof(res))
			_exit(4);
		if (res)
			rc = 10;
		for (i = 0; i < n; i++) {
			pfn = pfn_of(p + i * page_size);
			for (k = 0; k < nbad; k++)
				if (pfn == bad[k])
					rc = 11;
			if (rc != 11 && pfn_hwpoisoned(pfn) == 1)
				rc = 12;
		}
		_exit(rc);
	}
	close(pipefd[1]);
	if (read(pipefd[0], &res, sizeof(res)) != sizeof(res))
		res = -1;
	close(pipefd[0]);
	*extra = res;
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	if (WIFSIGNALED(status))
		return WTERMSIG(status) == SIGALRM ? 14 : 100 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* Enough pages to take every free page of the pool, and then some. */
static size_t pool_sweep_pages(void)
{
	long free = stat_read("pool_free_pages");

	return (free > 0 ? free : 0) + 64;
}

/*
 * The poisoned PFNs among @pfn[@n] (the file that held them is gone): none
 * is ever handed out again, over a sweep of every free pool page and fresh
 * pageblocks (the last references drained first, so that a poisoned page
 * wrongly freed would be on the free lists); they stay poisoned; their
 * pageblocks stay out of the direct map, even after the shrinker, so the
 * hibernation check still refuses. Returns the number of poisoned PFNs.
 */
static int expect_poison_kept_out(struct __test_metadata *_metadata,
				  const __u64 *pfn, int n)
{
	__u64 bad[16];
	int i, nbad = 0, rc;
	long extra;

	for (i = 0; i < n && nbad < (int)ARRAY_SIZE(bad); i++)
		if (pfn_hwpoisoned(pfn[i]) == 1)
			bad[nbad++] = pfn[i];
	if (!nbad)
		return 0;
	lru_drain();
	rc = fault_fresh_pages(pool_sweep_pages(), bad, nbad, &extra);
	/* 10 extra faults, 11 a poisoned pfn handed out, 12 poisoned page, 14 spun */
	EXPECT_EQ(0, rc) TH_LOG("%d poisoned pfns (first %#llx): sweep status %d, %ld extra faults",
				nbad, (unsigned long long)bad[0], rc, extra);
	for (i = 0; i < nbad; i++)
		EXPECT_EQ(1, pfn_hwpoisoned(bad[i]))
			TH_LOG("pfn %#llx lost its poison", (unsigned long long)bad[i]);
	EXPECT_EQ(0, write_file("/proc/sys/vm/drop_caches", "2"));
	EXPECT_LE(1, stat_read("pool_blocks"))
		TH_LOG("a pageblock with a poisoned page went back to the direct map");
	if (!access("/sys/power/state", F_OK))
		EXPECT_FALSE(state_offers_disk())
			TH_LOG("hibernation offered with a poisoned page out of the direct map");
	return nbad;
}

/* Kernel reports (scripts/lib/common.sh KERNEL_REPORT_RES, plain strings). */
static const char * const kernel_report[] = {
	"BUG:", "kernel BUG at", "KASAN:", "UBSAN:", "KFENCE:", "WARNING:",
	"Oops:", "general protection fault", "Unable to handle kernel",
	"Kernel panic", "possible recursive locking", "inconsistent lock state",
	"circular locking dependency", "suspicious RCU usage",
	"DEBUG_LOCKS_WARN_ON", "stall on CPU", "soft lockup", "hard LOCKUP",
	"blocked for more than", "refcount_t: ", "list_add corruption",
	"list_del corruption", "list_add double add", "Bad page",
	"Call Trace:",
};

/* /dev/kmsg from now on: the kernel's messages of one test. */
static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0 && lseek(fd, 0, SEEK_END) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Logs the kernel reports among the records of @fd; returns their number. */
static int kmsg_reports(struct __test_metadata *_metadata, int fd)
{
	char rec[8192], *msg, *nl;
	int found = 0;
	unsigned int i;
	ssize_t n;

	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* records overwritten meanwhile */
		if (n <= 0)
			break;
		rec[n] = '\0';
		msg = strchr(rec, ';');
		msg = msg ? msg + 1 : rec;
		nl = strchr(msg, '\n');
		if (nl)
			*nl = '\0';
		for (i = 0; i < ARRAY_SIZE(kernel_report); i++) {
			if (strstr(msg, kernel_report[i])) {
				TH_LOG("kernel report: %s", msg);
				found++;
				break;
			}
		}
	}
	return found;
}

FIXTURE(mf) {
	long pages;
	int kmsg;
	char high_water[32];
};

FIXTURE_SETUP(mf)
{
	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	if (geteuid())
		SKIP(return, "needs root");
	ASSERT_EQ(0, access(SOFT_OFFLINE, W_OK))
		TH_LOG("no %s: MEMORY_FAILURE and MEMORY_HOTPLUG are in the test config",
		       SOFT_OFFLINE);
	self->kmsg = kmsg_open();
	ASSERT_LE(0, self->kmsg) TH_LOG("/dev/kmsg: %s", strerror(errno));
	self->pages = stat_read("pages_in_use");
	ASSERT_LE(0, self->pages);
	/* Free pool pages stay on the free lists: no trim during a test. */
	snprintf(self->high_water, sizeof(self->high_water), "%ld",
		 stat_read("pool_high_water_kb"));
	ASSERT_EQ(0, stat_write("pool_high_water_kb", "65536"));
	TH_LOG("pool at start: blocks %ld, free %ld",
	       stat_read("pool_blocks"), stat_read("pool_free_pages"));
}

FIXTURE_TEARDOWN(mf)
{
	stat_write("pool_high_water_kb", self->high_water);
	EXPECT_EQ(0, kmsg_reports(_metadata, self->kmsg))
		TH_LOG("the kernel logged reports during this test");
	close(self->kmsg);
}

/*
 * MADV_HWPOISON and MADV_SOFT_OFFLINE find the page with GUP, which refuses
 * this memory: they must fail, or, if they ever succeed, the page must be
 * gone from the mapping (SIGBUS) and never be handed out again.
 */
TEST_F_TIMEOUT(mf, madvise_on_pages_in_use, 120)
{
	static const int advice[] = { MADV_SOFT_OFFLINE, MADV_HWPOISON };
	__u64 pfn;
	unsigned int i;
	int fd, ret, sig;
	char *p, c;

	for (i = 0; i < 2; i++) {
		fd = make_faulted(_metadata, "madv", 0, 2, &p);
		memset(p, 0x5a, 2 * page_size);
		pfn = pfn_of(p);
		ASSERT_NE(0, pfn);
		ret = madvise(p, page_size, advice[i]);
		TH_LOG("madvise(%d) on a page in use: %d (%s)", advice[i], ret,
		       ret ? strerror(errno) : "done");
		sig = probe(p, false, &c);
		if (ret) {
			EXPECT_EQ(EFAULT, errno);
			EXPECT_EQ(0, sig);
			EXPECT_EQ(0x5a, c);
			EXPECT_EQ(pfn, pfn_of(p));
			EXPECT_EQ(0, pfn_hwpoisoned(pfn));
		} else if (pfn_hwpoisoned(pfn) == 1) {
			EXPECT_NE(0, sig) TH_LOG("read a poisoned page");
			EXPECT_NE(pfn, pfn_of(p));
		} else {
			/* Soft offline migrated it: same data. */
			EXPECT_EQ(0, sig);
			EXPECT_EQ(0x5a, c);
		}
		munmap(p, 2 * page_size);
		close(fd);
		expect_poison_kept_out(_metadata, &pfn, 1);
	}
	EXPECT_EQ(self->pages, stat_read("pages_in_use"));
}

/*
 * soft_offline_page on a page in use, mapped and not mapped (the file open,
 * or only held by an O_PATH pin): the data must survive (soft offline is
 * transparent: the page migrates), nothing may oops, and a page it poisons
 * (the source of a migration) must never be handed out again.
 */
TEST_F_TIMEOUT(mf, soft_offline_pages_in_use, 300)
{
	__u64 pfn[4];
	char *p, c;
	int fd, o, err, i;

	fd = make_faulted(_metadata, "soft-in-use", 0, 4, &p);
	for (i = 0; i < 4; i++) {
		memset(p + i * page_size, 'a' + i, page_size);
		pfn[i] = pfn_of(p + i * page_size);
		ASSERT_NE(0, pfn[i]);
	}
	/* Page 0 mapped. */
	err = offline_pfn(SOFT_OFFLINE, pfn[0]);
	TH_LOG("soft offline of a mapped page: %s", err ? strerror(-err) : "done");
	EXPECT_EQ(0, probe(p, false, &c));
	EXPECT_EQ('a', c);

	/* Pages 1-3 written, then unmapped. */
	munmap(p, 4 * page_size);
	err = offline_pfn(SOFT_OFFLINE, pfn[1]);
	TH_LOG("soft offline of an unmapped page, file open: %s",
	       err ? strerror(-err) : "done");
	o = opath_pin(fd);
	ASSERT_LE(0, o);
	p = mmap(NULL, 4 * page_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, probe(p, false, &c));
	EXPECT_EQ('a', c) TH_LOG("soft offline lost the data of page 0");
	EXPECT_EQ(0, probe(p + page_size, false, &c));
	EXPECT_EQ('b', c) TH_LOG("soft offline lost the data of page 1");
	EXPECT_EQ(0, probe(p + 2 * page_size, false, &c));
	EXPECT_EQ('c', c);
	munmap(p, 4 * page_size);
	close(fd);
	err = offline_pfn(SOFT_OFFLINE, pfn[2]);
	TH_LOG("soft offline of a page held by an O_PATH pin: %s",
	       err ? strerror(-err) : "done");
	close(o);
	EXPECT_EQ(self->pages, stat_read("pages_in_use"));
	for (i = 0; i < 4; i++)
		TH_LOG("pfn %#llx poisoned: %d", (unsigned long long)pfn[i],
		       pfn_hwpoisoned(pfn[i]));
	expect_poison_kept_out(_metadata, pfn, 4);
}

/*
 * hard_offline_page (memory_failure()) on pages in use: a mapped page and
 * one held only by an O_PATH pin. Each is poisoned and stays in the file's
 * page cache: the mapping raises SIGBUS rather than read it, so does a new
 * mapping at its offset (no fresh zero page silently replaces the lost
 * data), and the other offsets keep their data. Once the file is gone the
 * poisoned pages are never handed out again, and the counts are unharmed.
 */
TEST_F_TIMEOUT(mf, hard_offline_pages_in_use, 300)
{
	__u64 pfn[3];
	int fd, o, err, i;
	char *p, c;

	fd = make_faulted(_metadata, "hard-in-use", 0, 3, &p);
	for (i = 0; i < 3; i++) {
		memset(p + i * page_size, 'x' + i, page_size);
		pfn[i] = pfn_of(p + i * page_size);
		ASSERT_NE(0, pfn[i]);
	}
	err = offline_pfn(HARD_OFFLINE, pfn[0]);
	EXPECT_EQ(0, err) TH_LOG("hard offline of a mapped page: %s",
				 strerror(-err));
	EXPECT_EQ(1, pfn_hwpoisoned(pfn[0]));
	c = 0;
	EXPECT_EQ(SIGBUS, probe(p, false, &c))
		TH_LOG("read %#x from a poisoned page", c);
	EXPECT_EQ(0, probe(p + page_size, false, &c));
	EXPECT_EQ('y', c);
	EXPECT_EQ(0, probe(p + 2 * page_size, false, &c));
	EXPECT_EQ('z', c);
	/* The poisoned page stays in the page cache: still counted. */
	EXPECT_EQ(self->pages + 3, stat_read("pages_in_use"));

	/* A new mapping: offset 0 still refused, the others intact. */
	munmap(p, 3 * page_size);
	p = mmap(NULL, 3 * page_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	c = 0;
	EXPECT_EQ(SIGBUS, probe(p, false, &c))
		TH_LOG("a new mapping read %#x at the poisoned offset", c);
	c = 0;
	EXPECT_EQ(SIGBUS, probe(p, true, &c))
		TH_LOG("a new mapping wrote at the poisoned offset");
	EXPECT_EQ(0, probe(p + page_size, false, &c));
	EXPECT_EQ('y', c);
	EXPECT_EQ(pfn[1], pfn_of(p + page_size));
	EXPECT_EQ(0, probe(p + 2 * page_size, false, &c));
	EXPECT_EQ('z', c);
	EXPECT_EQ(pfn[2], pfn_of(p + 2 * page_size));
	munmap(p, 3 * page_size);

	/* Page 2, held only by an O_PATH pin. */
	o = opath_pin(fd);
	ASSERT_LE(0, o);
	close(fd);
	err = offline_pfn(HARD_OFFLINE, pfn[2]);
	EXPECT_EQ(0, err) TH_LOG("hard offline of a page held by an O_PATH pin: %s",
				 strerror(-err));
	EXPECT_EQ(1, pfn_hwpoisoned(pfn[2]));
	EXPECT_EQ(self->pages + 3, stat_read("pages_in_use"));
	close(o);
	EXPECT_EQ(self->pages, stat_read("pages_in_use"));
	EXPECT_EQ(0, pfn_hwpoisoned(pfn[1]));
	EXPECT_EQ(2, expect_poison_kept_out(_metadata, pfn, 3));
}

/*
 * Soft or hard offline of pages free in the pool: each is poisoned and
 * taken off the free lists at once (pool_free_pages drops by one a page),
 * never handed out again, and its pageblock stays out of the direct map.
 */
static void offline_free_in_pool(struct __test_metadata *_metadata,
				 const char *file, long base_pages)
{
	long extra, before, after;
	int fd, i, rc, err;
	__u64 pfn[8];
	char *p;

	/* The control: with nothing new poisoned the fault count is exact. */
	rc = fault_fresh_pages(pool_sweep_pages(), NULL, 0, &extra);
	ASSERT_EQ(0, rc) TH_LOG("control: status %d, %ld extra faults", rc, extra);
	lru_drain();	/* the control's pages are all free from here */

	fd = make_faulted(_metadata, "offline-free", 0, 8, &p);
	for (i = 0; i < 8; i++) {
		memset(p + i * page_size, 0x77, page_size);
		pfn[i] = pfn_of(p + i * page_size);
		ASSERT_NE(0, pfn[i]);
	}
	munmap(p, 8 * page_size);
	before = stat_read("pool_free_pages");
	close(fd);
	ASSERT_EQ(base_pages, stat_read("pages_in_use"));
	/* Every page of the file is back on the free lists. */
	ASSERT_TRUE(pool_free_reaches(before + 8))
		TH_LOG("%ld free pages before close(), %ld after",
		       before, stat_read("pool_free_pages"));
	before = stat_read("pool_free_pages");
	for (i = 0; i < 8; i++) {
		err = offline_pfn(file, pfn[i]);
		EXPECT_EQ(0, err) TH_LOG("%s of free pfn %#llx: %s", file,
					 (unsigned long long)pfn[i],
					 strerror(-err));
		EXPECT_EQ(1, pfn_hwpoisoned(pfn[i]))
			TH_LOG("free pfn %#llx not poisoned",
			       (unsigned long long)pfn[i]);
	}
	after = stat_read("pool_free_pages");
	EXPECT_EQ(before - 8, after)
		TH_LOG("poisoned pages must leave the free lists: %ld free before, %ld after",
		       before, after);
	EXPECT_EQ(8, expect_poison_kept_out(_metadata, pfn, 8));
	EXPECT_EQ(base_pages, stat_read("pages_in_use"));
}

TEST_F_TIMEOUT(mf, soft_offline_pages_free_in_pool, 300)
{
	offline_free_in_pool(_metadata, SOFT_OFFLINE, self->pages);
}

/*
 * Last: where the pool hands poisoned pages out again, every later
 * allocation may hit one.
 */

TEST_F_TIMEOUT(mf, hard_offline_pages_free_in_pool, 300)
{
	offline_free_in_pool(_metadata, HARD_OFFLINE, self->pages);
}

static void __attribute__((constructor)) init_page_size(void)
{
	page_size = sysconf(_SC_PAGESIZE);
}

TEST_HARNESS_MAIN
