// SPDX-License-Identifier: GPL-2.0
/*
 * directmap: what faulting and releasing memory costs the kernel's direct map,
 * for memfd_exclusive(2), memfd_secret(2) and memfd_create(2) (the control),
 * in one boot of the patched kernel (run by scripts/bench, as root).
 *
 * For each backend, SIZE bytes (default 1 GiB) are faulted in by writing one
 * byte per page, then unmapped and the fd closed. Measured:
 *  - DirectMap4k/2M/1G of /proc/meminfo before, after the faults and after the
 *    release (split direct-map entries are not merged again in 6.12);
 *  - kernel TLB flushes: calls of flush_tlb_kernel_range (and flush_tlb_all)
 *    counted by the ftrace function profiler, the same way for all three;
 *  - fault throughput in MiB/s (under QEMU TCG this is emulated time);
 *  - for memfd_exclusive, the pool statistics, the idle pool against the
 *    high-water mark, and the pool after memory pressure (drop_caches=2 runs
 *    the shrinkers).
 * Output: one JSON object on stdout. Exit 0, or 1 on an error.
 *
 * Usage: directmap [SIZE_MIB]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kcounters.h"

#ifndef __NR_memfd_secret
#define __NR_memfd_secret 447
#endif

struct result {
	const char *name;
	int ok;
	char error[128];
	struct directmap before, faulted, released;
	long flush_range, flush_all;
	double seconds, mib_s;
	long pool_blocks_faulted, pool_tlb_flushes, pool_block_allocs;
	long pool_free_kb_idle, pool_blocks_idle;
	long pool_blocks_after_pressure, high_water_kb;
	double settle_seconds;
};

static long page_size;

static void run(struct result *r, size_t size)
{
	unsigned char *p;
	double t0;
	size_t off;
	int fd = -1;

	r->before = read_directmap();
	if (!strcmp(r->name, "memfd_exclusive"))
		fd = syscall(__NR_memfd_exclusive, "bench", MFD_EXCLUSIVE_CLOEXEC);
	else if (!strcmp(r->name, "memfd_secret"))
		fd = syscall(__NR_memfd_secret, O_CLOEXEC);
	else
		fd = memfd_create("bench", MFD_CLOEXEC);
	if (fd < 0) {
		snprintf(r->error, sizeof(r->error), "create: %s", strerror(errno));
		return;
	}
	if (ftruncate(fd, size)) {
		snprintf(r->error, sizeof(r->error), "ftruncate: %s", strerror(errno));
		close(fd);
		return;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		snprintf(r->error, sizeof(r->error), "mmap: %s", strerror(errno));
		close(fd);
		return;
	}
	if (profile_start()) {
		snprintf(r->error, sizeof(r->error), "function profiler: %s",
			 strerror(errno));
		munmap(p, size);
		close(fd);
		return;
	}

	t0 = now();
	for (off = 0; off < size; off += page_size)
		p[off] = 1;
	r->seconds = now() - t0;
	r->mib_s = (size >> 20) / r->seconds;
	r->faulted = read_directmap();
	r->pool_blocks_faulted = read_long(POOL "pool_blocks");

	munmap(p, size);
	close(fd);
	if (!strcmp(r->name, "memfd_exclusive"))
		r->settle_seconds = pool_settle(page_size);
	profile_stop(&r->flush_range, &r->flush_all);
	r->released = read_directmap();
	r->ok = 1;
}

static void print_dm(const char *key, const struct directmap *d, int last)
{
	printf("      \"%s\": {\"4k_kB\": %ld, \"2M_kB\": %ld, \"1G_kB\": %ld}%s\n",
	       key, d->k4, d->m2, d->g1, last ? "" : ",");
}

int main(int argc, char **argv)
{
	struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
	size_t size = (size_t)(argc > 1 ? atol(argv[1]) : 1024) << 20;
	/* Exclusive first: the splits memfd_secret leaves are permanent. */
	struct result res[3] = {
		{ .name = "memfd_exclusive" },
		{ .name = "memfd_create" },
		{ .name = "memfd_secret" },
	};
	long allocs0 = -1, flushes0 = -1;
	int i;

	page_size = sysconf(_SC_PAGESIZE);
	setrlimit(RLIMIT_MEMLOCK, &unlimited);
	if (access(MEMFD_EXCLUSIVE_SYSFS_DIR, F_OK)) {
		fprintf(stderr, "directmap: no %s\n", MEMFD_EXCLUSIVE_SYSFS_DIR);
		return 1;
	}

	profile_warm_up();

	for (i = 0; i < 3; i++) {
		struct result *r = &res[i];

		if (i == 0) {
			allocs0 = read_long(POOL "pool_block_allocs");
			flushes0 = read_long(POOL "pool_tlb_flushes");
		}
		run(r, size);
		if (i == 0) {
			r->pool_block_allocs = read_long(POOL "pool_block_allocs") - allocs0;
			r->pool_tlb_flushes = read_long(POOL "pool_tlb_flushes") - flushes0;
			r->high_water_kb = read_long(POOL "pool_high_water_kb");
			r->pool_free_kb_idle = read_long(POOL "pool_free_pages") *
					       (page_size >> 10);
			r->pool_blocks_idle = read_long(POOL "pool_blocks");
			/* Memory pressure: drop_caches=2 runs every shrinker. */
			write_file("/proc/sys/vm/drop_caches", "2");
			r->pool_blocks_after_pressure = read_long(POOL "pool_blocks");
		}
	}

	printf("{\n  \"size_mib\": %zu,\n  \"backends\": [\n", size >> 20);
	for (i = 0; i < 3; i++) {
		struct result *r = &res[i];

		printf("    {\n      \"name\": \"%s\",\n      \"ok\": %s,\n",
		       r->name, r->ok ? "true" : "false");
		if (!r->ok)
			printf("      \"error\": \"%s\",\n", r->error);
		print_dm("directmap_before", &r->before, 0);
		print_dm("directmap_faulted", &r->faulted, 0);
		print_dm("directmap_released", &r->released, 0);
		printf("      \"flush_tlb_kernel_range\": %ld,\n", r->flush_range);
		printf("      \"flush_tlb_all\": %ld,\n", r->flush_all);
		printf("      \"fault_seconds\": %.6f,\n", r->seconds);
		printf("      \"fault_mib_s\": %.1f", r->mib_s);
		if (i == 0) {
			printf(",\n      \"pool\": {\"block_allocs\": %ld, "
			       "\"tlb_flushes\": %ld, "
			       "\"blocks_faulted\": %ld, \"high_water_kb\": %ld, "
			       "\"free_kb_idle\": %ld, \"blocks_idle\": %ld, "
			       "\"blocks_after_pressure\": %ld, "
			       "\"settle_seconds\": %.1f}",
			       r->pool_block_allocs, r->pool_tlb_flushes,
			       r->pool_blocks_faulted,
			       r->high_water_kb, r->pool_free_kb_idle,
			       r->pool_blocks_idle, r->pool_blocks_after_pressure,
			       r->settle_seconds);
		}
		printf("\n    }%s\n", i < 2 ? "," : "");
	}
	printf("  ]\n}\n");
	return res[0].ok && res[1].ok && res[2].ok ? 0 : 1;
}
