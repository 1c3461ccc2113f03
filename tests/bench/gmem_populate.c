// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_populate: what populating a KVM guest's private memory costs the
 * kernel's direct map, for guest_memfd with GUEST_MEMFD_FLAG_NO_DIRECT_MAP on
 * the unmapped pool, the same flag unmapping folio by folio (the pending
 * upstream series' way, kvm.gmem_unmap_per_folio=1, kernel patch 0022) and a
 * plain guest_memfd (the control), in one boot of the KVM kernel (run by
 * scripts/bench --gmem, as root).
 *
 * For each mode, in this order (per_folio last: the direct-map splits it
 * makes are permanent in 6.12 and would count against a later mode):
 *   pool       flag set, kvm.gmem_unmap_per_folio=0
 *   plain      no flag
 *   per_folio  flag set, kvm.gmem_unmap_per_folio=1
 * a KVM_X86_SW_PROTECTED_VM gets a guest_memfd of SIZE bytes, populated whole
 * with fallocate(2) (FALLOC_FL_KEEP_SIZE, as guest_memfd requires; it runs
 * kvm_gmem_allocate(), the kvm_gmem_get_folio() a vCPU's fault on private
 * memory takes too, as a VMM's preallocation does), then the fd and the VM
 * are closed and the pages go back. Measured per mode:
 *  - DirectMap4k/2M/1G of /proc/meminfo before, populated and released (kB);
 *  - calls of flush_tlb_kernel_range and flush_tlb_all while populating, and
 *    while releasing (ftrace function profiler: the kernel's own count);
 *  - seconds the fallocate() took (emulated time under QEMU TCG);
 *  - MemFree's drop (kB) and the growth of the pool's pages in use (pages): the
 *    memory was allocated, by the allocator the mode says; and after the
 *    release, the pool's pages in use back where they were and (off the pool) MemFree
 *    regained: the memory went back.
 * A mode whose checks fail is reported with "ok": false and an error.
 * Output: one JSON object on stdout. Exit 0 when every mode ran and passed
 * its checks, 1 otherwise.
 *
 * Usage: gmem_populate [SIZE_MIB]   (default 1024)
 * Build: cc -I <kernel>/usr/include (the KVM kernel's headers_install, for
 * KVM_CREATE_GUEST_MEMFD and KVM_X86_SW_PROTECTED_VM).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kcounters.h"

#ifndef GUEST_MEMFD_FLAG_NO_DIRECT_MAP
#define GUEST_MEMFD_FLAG_NO_DIRECT_MAP (1ULL << 2)
#endif

#define PER_FOLIO_PARAM "/sys/module/kvm/parameters/gmem_unmap_per_folio"

struct result {
	const char *name;
	int flag, per_folio;
	int ok;
	char error[160];
	struct directmap before, populated, released;
	long flush_range, flush_all;		/* while populating */
	long release_flush_range, release_flush_all;
	double seconds;
	long memfree_drop_kb, memfree_regained_kb;
	long pool_pages_grown;
	long pool_block_allocs, pool_tlb_flushes;
	double settle_seconds;
};

static long page_size;

/*
 * Pages of the unmapped pool allocated to any user (memfd_exclusive's
 * pages_in_use counts only its own files): pageblocks held less free pages.
 */
static long pool_in_use(void)
{
	long blocks = read_long(POOL "pool_blocks");
	long free_pages = read_long(POOL "pool_free_pages");

	if (blocks < 0 || free_pages < 0)
		return -1;
	return blocks * ((2L << 20) / page_size) - free_pages;
}

static void fail(struct result *r, const char *fmt, ...)
{
	va_list ap;

	if (r->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

static void run(struct result *r, size_t size)
{
	struct kvm_create_guest_memfd gm = { .size = size };
	long free0, free1 = -1, in_use0, allocs0, flushes0;
	int kvm = -1, vm = -1, fd = -1;
	double t0;

	if (write_file(PER_FOLIO_PARAM, r->per_folio ? "Y" : "N")) {
		fail(r, "%s: %s (a kernel without patch 0022?)", PER_FOLIO_PARAM,
		     strerror(errno));
		return;
	}
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		fail(r, "/dev/kvm: %s", strerror(errno));
		return;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	if (vm < 0) {
		fail(r, "KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM): %s", strerror(errno));
		goto out;
	}
	gm.flags = r->flag ? GUEST_MEMFD_FLAG_NO_DIRECT_MAP : 0;
	fd = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &gm);
	if (fd < 0) {
		fail(r, "KVM_CREATE_GUEST_MEMFD(flags %#llx): %s",
		     (unsigned long long)gm.flags, strerror(errno));
		goto out;
	}

	r->before = read_directmap();
	free0 = read_meminfo("MemFree");
	in_use0 = pool_in_use();
	allocs0 = read_long(POOL "pool_block_allocs");
	flushes0 = read_long(POOL "pool_tlb_flushes");
	if (profile_start()) {
		fail(r, "function profiler: %s", strerror(errno));
		goto out;
	}
	t0 = now();
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size)) {
		fail(r, "fallocate(%zu bytes): %s", size, strerror(errno));
		profile_stop(&r->flush_range, &r->flush_all);
		goto out;
	}
	r->seconds = now() - t0;
	profile_stop(&r->flush_range, &r->flush_all);
	r->populated = read_directmap();
	free1 = read_meminfo("MemFree");
	r->memfree_drop_kb = free0 - free1;
	r->pool_pages_grown = pool_in_use() - in_use0;
	r->pool_block_allocs = read_long(POOL "pool_block_allocs") - allocs0;
	r->pool_tlb_flushes = read_long(POOL "pool_tlb_flushes") - flushes0;

	/* The memory is there, from the allocator the mode names. */
	if (r->memfree_drop_kb < (long)(size >> 10) * 9 / 10)
		fail(r, "MemFree fell by %ld kB for %zu kB populated",
		     r->memfree_drop_kb, size >> 10);
	if (r->flag && !r->per_folio && r->pool_pages_grown != (long)(size / page_size))
		fail(r, "pool pages in use grew by %ld, not %zu", r->pool_pages_grown,
		     size / page_size);
	if ((!r->flag || r->per_folio) && r->pool_pages_grown != 0)
		fail(r, "pool pages in use grew by %ld in a mode off the pool",
		     r->pool_pages_grown);

out:
	if (profile_start())
		fail(r, "function profiler: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	if (vm >= 0)
		close(vm);
	if (kvm >= 0)
		close(kvm);
	/* KVM frees the VM and the inode's pages at the last reference. */
	r->settle_seconds = pool_settle(page_size);
	profile_stop(&r->release_flush_range, &r->release_flush_all);
	r->released = read_directmap();
	if (free1 >= 0) {
		r->memfree_regained_kb = read_meminfo("MemFree") - free1;
		if (pool_in_use() != in_use0)
			fail(r, "pool pages in use: %ld after the release, %ld before",
			     pool_in_use(), in_use0);
		/* The pool keeps what it freed, up to its high-water mark. */
		if ((!r->flag || r->per_folio) &&
		    r->memfree_regained_kb < r->memfree_drop_kb * 9 / 10)
			fail(r, "MemFree regained %ld kB of the %ld kB populated",
			     r->memfree_regained_kb, r->memfree_drop_kb);
	}
	r->ok = !r->error[0];
}

static void print_dm(const char *key, const struct directmap *d)
{
	printf("      \"%s\": {\"4k_kB\": %ld, \"2M_kB\": %ld, \"1G_kB\": %ld},\n",
	       key, d->k4, d->m2, d->g1);
}

int main(int argc, char **argv)
{
	struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
	size_t size = (size_t)(argc > 1 ? atol(argv[1]) : 1024) << 20;
	struct result res[3] = {
		{ .name = "pool", .flag = 1, .per_folio = 0 },
		{ .name = "plain", .flag = 0, .per_folio = 0 },
		{ .name = "per_folio", .flag = 1, .per_folio = 1 },
	};
	int i, all_ok = 1;

	page_size = sysconf(_SC_PAGESIZE);
	if (!size) {
		fprintf(stderr, "gmem_populate: SIZE_MIB must be a positive number\n");
		return 1;
	}
	setrlimit(RLIMIT_MEMLOCK, &unlimited);
	if (access(MEMFD_EXCLUSIVE_SYSFS_DIR, F_OK)) {
		fprintf(stderr, "gmem_populate: no %s (no unmapped pool)\n",
			MEMFD_EXCLUSIVE_SYSFS_DIR);
		return 1;
	}
	profile_warm_up();

	for (i = 0; i < 3; i++)
		run(&res[i], size);
	/* Leave the kernel as it booted. */
	write_file(PER_FOLIO_PARAM, "N");

	printf("{\n  \"size_mib\": %zu,\n  \"modes\": [\n", size >> 20);
	for (i = 0; i < 3; i++) {
		struct result *r = &res[i];

		all_ok &= r->ok;
		printf("    {\n      \"name\": \"%s\",\n      \"flags\": %u,\n"
		       "      \"gmem_unmap_per_folio\": %s,\n      \"ok\": %s,\n",
		       r->name, r->flag ? (unsigned int)GUEST_MEMFD_FLAG_NO_DIRECT_MAP : 0,
		       r->per_folio ? "true" : "false", r->ok ? "true" : "false");
		if (!r->ok)
			printf("      \"error\": \"%s\",\n", r->error);
		print_dm("directmap_before", &r->before);
		print_dm("directmap_populated", &r->populated);
		print_dm("directmap_released", &r->released);
		printf("      \"flush_tlb_kernel_range\": %ld,\n"
		       "      \"flush_tlb_all\": %ld,\n"
		       "      \"release_flush_tlb_kernel_range\": %ld,\n"
		       "      \"release_flush_tlb_all\": %ld,\n"
		       "      \"populate_seconds\": %.6f,\n"
		       "      \"memfree_drop_kB\": %ld,\n"
		       "      \"memfree_regained_kB\": %ld,\n"
		       "      \"pool_pages_grown\": %ld,\n"
		       "      \"pool_block_allocs\": %ld,\n"
		       "      \"pool_tlb_flushes\": %ld,\n"
		       "      \"release_seconds\": %.1f\n    }%s\n",
		       r->flush_range, r->flush_all, r->release_flush_range,
		       r->release_flush_all, r->seconds, r->memfree_drop_kb,
		       r->memfree_regained_kb,
		       r->pool_pages_grown, r->pool_block_allocs,
		       r->pool_tlb_flushes, r->settle_seconds, i < 2 ? "," : "");
	}
	printf("  ]\n}\n");
	return all_ok ? 0 : 1;
}
