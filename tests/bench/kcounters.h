/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kcounters.h: what the benchmarks in the VM read of the kernel (run as root),
 * shared by directmap.c, gmem_populate.c and tests/vm/gmem_per_folio.c:
 *  - DirectMap4k/2M/1G of /proc/meminfo, in kB;
 *  - calls of flush_tlb_kernel_range and flush_tlb_all, counted by the ftrace
 *    function profiler (/sys/kernel/tracing/trace_stat/function<cpu>, "Hit");
 *  - the unmapped pool's statistics (MEMFD_EXCLUSIVE_SYSFS_DIR, counts) and
 *    its pages in use;
 *  - CLOCK_MONOTONIC in seconds (emulated time under QEMU TCG).
 * Header-only (static inline functions): each benchmark is one C file.
 */
#ifndef XMEM_BENCH_KCOUNTERS_H
#define XMEM_BENCH_KCOUNTERS_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../include/uapi/linux/memfd_exclusive.h"

#define TRACING		"/sys/kernel/tracing"
#define POOL		MEMFD_EXCLUSIVE_SYSFS_DIR "/"

struct directmap {
	long k4, m2, g1;	/* kB */
};

/* Writes @val to @path (sysfs, procfs, tracefs). 0, or -1 with errno. */
static inline int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

/* The number @path holds, or -1 when it cannot be read. */
static inline long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* The DirectMap lines of /proc/meminfo, kB; -1 for a line missing. */
static inline struct directmap read_directmap(void)
{
	struct directmap d = { -1, -1, -1 };
	char line[256];
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return d;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "DirectMap4k: %ld", &d.k4);
		sscanf(line, "DirectMap2M: %ld", &d.m2);
		sscanf(line, "DirectMap1G: %ld", &d.g1);
	}
	fclose(f);
	return d;
}

/* A line "NAME: N kB" of /proc/meminfo (MemFree, ...), kB; -1 if missing. */
static inline long read_meminfo(const char *name)
{
	char line[256], key[64];
	long v = -1, n;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63[^:]: %ld", key, &n) == 2 && !strcmp(key, name))
			v = n;
	fclose(f);
	return v;
}

/* Sums the "Hit" column of trace_stat/function* for @func. */
static inline long profile_hits(const char *func)
{
	char path[64], line[256], name[128];
	long hits, sum = 0;
	int cpu;
	FILE *f;

	for (cpu = 0; cpu < 1024; cpu++) {
		snprintf(path, sizeof(path), TRACING "/trace_stat/function%d", cpu);
		f = fopen(path, "r");
		if (!f)
			break;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, " %127s %ld", name, &hits) == 2 &&
			    !strcmp(name, func))
				sum += hits;
		fclose(f);
	}
	return sum;
}

/*
 * Starts counting calls of flush_tlb_kernel_range (and flush_tlb_all, which
 * may be notrace on some builds) from 0. 0, or -1 with errno.
 */
static inline int profile_start(void)
{
	int fd;

	if (write_file(TRACING "/function_profile_enabled", "0"))
		return -1;
	if (write_file(TRACING "/set_ftrace_filter", "flush_tlb_kernel_range"))
		return -1;
	fd = open(TRACING "/set_ftrace_filter", O_WRONLY | O_APPEND);
	if (fd >= 0) {
		if (write(fd, "flush_tlb_all", 13) < 0)
			errno = 0;
		close(fd);
	}
	/* Enabling the profiler resets its counters. */
	return write_file(TRACING "/function_profile_enabled", "1");
}

/* The calls counted since profile_start(); stops counting. */
static inline void profile_stop(long *flush_range, long *flush_all)
{
	*flush_range = profile_hits("flush_tlb_kernel_range");
	*flush_all = profile_hits("flush_tlb_all");
	write_file(TRACING "/function_profile_enabled", "0");
}

/*
 * The first enabling of the function profiler allocates an ftrace trampoline
 * and makes it read-only, which splits the 2 MiB direct-map entry of that
 * page (+2048 kB DirectMap4k, seen with this project's kernel configs): not
 * the doing of what is measured, so do it once before any baseline.
 */
static inline void profile_warm_up(void)
{
	long range, all;

	if (!profile_start())
		profile_stop(&range, &all);
}

/*
 * Pages of the unmapped pool allocated to any user (memfd_exclusive's
 * pages_in_use counts only its own files): pageblocks held (2 MiB each on
 * x86-64) less free pages. -1 when the pool's statistics cannot be read.
 */
static inline long pool_in_use(void)
{
	long blocks = read_long(POOL "pool_blocks");
	long free_pages = read_long(POOL "pool_free_pages");

	if (blocks < 0 || free_pages < 0)
		return -1;
	return blocks * ((2L << 20) / sysconf(_SC_PAGESIZE)) - free_pages;
}

/* CLOCK_MONOTONIC, seconds. */
static inline double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Waits until the pool has recycled what was released and trimmed itself to
 * its high-water mark (at most 600 s). Returns the seconds it took.
 */
static inline double pool_settle(long page_size)
{
	double t0 = now();
	long hw_kb = read_long(POOL "pool_high_water_kb");
	int i;

	for (i = 0; now() - t0 < 600; i++) {
		/*
		 * Per-CPU LRU batches may hold the last references of freed
		 * pages; compaction drains them on every CPU.
		 */
		if (i % 50 == 0)
			write_file("/proc/sys/vm/compact_memory", "1");
		if (read_long(POOL "pages_in_use") == 0 &&
		    read_long(POOL "pool_free_pages") * (page_size >> 10) <= hw_kb)
			break;
		usleep(100000);
	}
	return now() - t0;
}

#endif /* XMEM_BENCH_KCOUNTERS_H */
