// SPDX-License-Identifier: GPL-2.0
/*
 * In the test VM, as root: a memfd_exclusive fault that cannot get a page
 * because no free pageblock can be taken out of the direct map must fail
 * with SIGBUS, not spin. It used to return VM_FAULT_OOM; the page allocator
 * never invokes the OOM killer for pageblock-order allocations, so
 * pagefault_out_of_memory() retried the fault forever at 100% CPU
 * ("Huh VM_FAULT_OOM leaked out to the #PF handler"; mm review of
 * 2026-12-01, F1). The method is the reviewer's: with
 * vm.compact_unevictable_allowed=0, fill memory with mlocked anonymous pages,
 * then keep one page of each pageblock (found through /proc/self/pagemap) and
 * unmap the rest: plenty of free memory, no free 2 MiB block.
 *
 * Checks, in order (exit 0 when all hold, 1 naming the first that failed):
 *   1. the hog left fewer free blocks of pageblock order or more
 *      (/proc/buddyinfo) than the file needs, else the test could not test
 *      anything;
 *   2. a process faulting a 64 MiB file gets SIGBUS before it is done, within
 *      60 s (emulated time) and with no "VM_FAULT_OOM leaked" line in dmesg;
 *   3. the kernel said why (the "no free pageblock" line);
 *   4. once the hog is gone the same faults succeed for all 64 MiB, and with
 *      every file closed pages_in_use is back where it started.
 *
 * Usage: pool_exhausted [FREE_KB]   (stop filling at FREE_KB free; default 32768)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmtest.h"

#define SYSFS "/sys/kernel/mm/memfd_exclusive/"
#define FILE_BYTES (64UL << 20)
#define CHUNK (1UL << 20)
#define PAGEBLOCK_ORDER 9

static long page_size;

static void fail(const char *what)
{
	printf("pool_exhausted: FAIL: %s\n", what);
	exit(1);
}

static long sysfs_long(const char *name)
{
	char path[128], buf[64] = "";
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), SYSFS "%s", name);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f))
		v = atol(buf);
	if (f)
		fclose(f);
	return v;
}

/* vt_write_file(), failing the test on error. */
static void write_file(const char *path, const char *val)
{
	if (vt_write_file(path, val))
		fail(path);
}

/* Free blocks of pageblock order or more, all zones (/proc/buddyinfo). */
static long free_pageblocks(void)
{
	char line[512];
	long total = 0;
	FILE *f = fopen("/proc/buddyinfo", "r");

	if (!f)
		fail("cannot read /proc/buddyinfo");
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "zone");
		int order = 0;

		if (!p)
			continue;
		p += 4;
		while (*p == ' ')
			p++;
		while (*p && *p != ' ')
			p++;	/* the zone name */
		for (;;) {
			char *end;
			long n = strtol(p, &end, 10);

			if (end == p)
				break;
			if (order >= PAGEBLOCK_ORDER)
				total += n << (order - PAGEBLOCK_ORDER);
			order++;
			p = end;
		}
	}
	fclose(f);
	return total;
}

/* The hog: fill, keep a page per pageblock, tell the parent, wait to be killed. */
static void hog(long free_kb, int ready_fd)
{
	size_t n = 0, cap = 4096, c, i;
	char **chunks = calloc(cap, sizeof(*chunks));
	unsigned char *seen = calloc((1UL << 24) / 512, 1);
	int pagemap = open("/proc/self/pagemap", O_RDONLY);

	if (!chunks || !seen || pagemap < 0)
		_exit(2);
	while (vt_meminfo_kb("MemFree") > free_kb && n < cap) {
		char *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);

		if (p == MAP_FAILED)
			break;
		chunks[n++] = p;
	}
	for (c = 0; c < n; c++) {
		for (i = 0; i < CHUNK / page_size; i++) {
			char *a = chunks[c] + i * page_size;
			uint64_t e = 0, pfn;

			if (pread(pagemap, &e, 8, (uintptr_t)a / page_size * 8) != 8)
				_exit(3);
			pfn = e & ((1ULL << 55) - 1);
			if ((e >> 63) && pfn < (1UL << 24) && !seen[pfn / 512]) {
				seen[pfn / 512] = 1;
				continue;
			}
			munmap(a, page_size);
		}
	}
	printf("pool_exhausted: hog: %zu MiB filled, MemFree now %ld kB\n", n, vt_meminfo_kb("MemFree"));
	fflush(stdout);
	if (write(ready_fd, "r", 1) != 1)
		_exit(4);
	for (;;)
		pause();
}

static volatile long *progress;

static void on_sigbus(int sig)
{
	(void)sig;
	_exit(42);
}

/* A child faulting @bytes of a new file; exit 0 done, 42 SIGBUS, other: error. */
static pid_t faulter(const char *name)
{
	pid_t pid = fork();

	if (pid < 0)
		fail("fork");
	if (!pid) {
		int fd = syscall(__NR_memfd_exclusive, name, 0);
		char *m;
		size_t i;

		signal(SIGBUS, on_sigbus);
		if (fd < 0 || ftruncate(fd, FILE_BYTES))
			_exit(3);
		m = mmap(NULL, FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			_exit(4);
		for (i = 0; i < FILE_BYTES / page_size; i++) {
			m[i * page_size] = 1;
			*progress = i + 1;
		}
		_exit(0);
	}
	return pid;
}

/* Wait up to @seconds for @pid; its wait status, or -1 when it is still running. */
static int wait_for(pid_t pid, int seconds)
{
	int st, t;

	for (t = 0; t < seconds * 10; t++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
		usleep(100000);
	}
	return -1;
}

static int dmesg_has(const char *needle)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "dmesg | grep -q '%s'", needle);
	return system(cmd) == 0;
}

int main(int argc, char **argv)
{
	long free_kb = argc > 1 ? atol(argv[1]) : 32768;
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	long before, blocks, sigbus_at;
	int t;
	int ready[2], st;
	pid_t hog_pid, w;
	char c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGESIZE);
	if (!vt_have_exclusive())
		fail("no " SYSFS ": the test kernel lacks memfd_exclusive");
	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		fail("setrlimit(RLIMIT_MEMLOCK, unlimited)");
	progress = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (progress == MAP_FAILED)
		fail("mmap of the progress counter");
	write_file("/proc/sys/vm/compact_unevictable_allowed", "0");
	write_file(SYSFS "pool_high_water_kb", "0");
	before = sysfs_long("pages_in_use");

	if (pipe(ready))
		fail("pipe");
	hog_pid = fork();
	if (hog_pid < 0)
		fail("fork");
	if (!hog_pid)
		hog(free_kb, ready[1]);
	if (read(ready[0], &c, 1) != 1)
		fail("the hog died before it was ready");

	blocks = free_pageblocks();
	printf("pool_exhausted: %ld kB free, %ld free blocks of order >= %d, pool_blocks %ld\n",
	       vt_meminfo_kb("MemFree"), blocks, PAGEBLOCK_ORDER, sysfs_long("pool_blocks"));
	/* Fewer free blocks than the file needs: its faults must run out. */
	if (blocks << PAGEBLOCK_ORDER >= (long)(FILE_BYTES / page_size))
		fail("the hog left as many free pageblocks as the file needs: nothing would be exhausted");

	w = faulter("exhausted");
	st = wait_for(w, 60);
	if (st == -1) {
		kill(w, SIGKILL);
		waitpid(w, NULL, 0);
		printf("pool_exhausted: faulter still at page %ld after 60 s\n", *progress);
		fail("the fault neither completed nor failed: it spins (VM_FAULT_OOM retried)");
	}
	printf("pool_exhausted: faulter ended at page %ld of %lu, status %#x\n",
	       *progress, FILE_BYTES / page_size, st);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 42)
		fail(WIFEXITED(st) && WEXITSTATUS(st) == 0 ?
		     "the faulter got every page: the pool was not exhausted" :
		     "the faulter did not end with SIGBUS");
	sigbus_at = *progress;
	if (dmesg_has("VM_FAULT_OOM leaked"))
		fail("dmesg has \"VM_FAULT_OOM leaked out to the #PF handler\"");
	if (!dmesg_has("memfd_exclusive: no free pageblock"))
		fail("no \"memfd_exclusive: no free pageblock\" line in dmesg");

	kill(hog_pid, SIGKILL);
	waitpid(hog_pid, NULL, 0);
	*progress = 0;
	w = faulter("after");
	st = wait_for(w, 120);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (st == -1)
			kill(w, SIGKILL);
		fail("with the hog gone the faults did not all succeed");
	}
	for (t = 0; t < 50 && sysfs_long("pages_in_use") != before; t++)
		usleep(100000);
	if (sysfs_long("pages_in_use") != before)
		fail("pages_in_use did not come back to its value before the test");
	printf("pool_exhausted: PASS (SIGBUS after page %ld, then all %lu pages with the hog gone)\n",
	       sigbus_at, FILE_BYTES / page_size);
	return 0;
}
