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
 * in two ways, each in a VM of its own:
 *   guest      the guest writes one byte per page of its private memory
 *              (32-bit flat protected mode, no paging, GPA 1 GiB up): every
 *              page is a nested page fault that kvm_gmem_get_pfn() serves,
 *              allocating and preparing (for a plain guest_memfd: clearing)
 *              the folio; what a guest does with its memory;
 *   fallocate  fallocate(2) (FALLOC_FL_KEEP_SIZE, as guest_memfd requires:
 *              kvm_gmem_allocate()), a VMM's preallocation, which allocates
 *              but leaves a plain guest_memfd's clearing to the first use;
 * then the fd and the VM are closed and the pages go back. Measured per run:
 *  - DirectMap4k/2M/1G of /proc/meminfo before, populated and released (kB);
 *  - calls of flush_tlb_kernel_range and flush_tlb_all while populating, and
 *    while releasing (ftrace function profiler: the kernel's own count);
 *  - seconds the population took: KVM_RUN until the guest's HLT, or the
 *    fallocate() (emulated time under QEMU TCG);
 *  - MemFree's drop (kB) and the growth of the pool's pages in use (pages): the
 *    memory was allocated, by the allocator the mode says, and unmapped as it
 *    says (a flush per page per folio, one per pageblock taken by the pool,
 *    none for plain, give or take 8 of the rest of the kernel); and after the
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
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kcounters.h"

#ifndef GUEST_MEMFD_FLAG_NO_DIRECT_MAP
#define GUEST_MEMFD_FLAG_NO_DIRECT_MAP (1ULL << 2)
#endif

#define PER_FOLIO_PARAM "/sys/module/kvm/parameters/gmem_unmap_per_folio"

#define CODE_GPA	0x1000UL		/* the guest's code, in shared memory */
#define SHARED_SIZE	0x10000UL
#define PRIVATE_GPA	0x40000000UL		/* 1 GiB; SIZE at most 2 GiB */

/*
 * The guest: writes one byte to each of %ecx pages from %edi on, then HLT.
 * 32-bit code assembled into .rodata, copied to CODE_GPA.
 */
asm(".pushsection .rodata\n"
    ".globl gmem_guest_start, gmem_guest_end\n"
    "gmem_guest_start:\n"
    ".code32\n"
    "1:	movb $1, (%edi)\n"
    "	addl $4096, %edi\n"
    "	loop 1b\n"
    "	hlt\n"
    ".code64\n"
    "gmem_guest_end:\n"
    ".popsection\n");
extern const unsigned char gmem_guest_start[], gmem_guest_end[];

struct result {
	const char *name;
	int flag, per_folio;
	int guest;		/* populated by the guest's faults, else fallocate() */
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

/* What MemFree may miss of @size bytes populated or freed: a quarter and 16 MiB, kB. */
static long memfree_slack_kb(size_t size)
{
	return (long)(size >> 12) + (16L << 10);
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

/*
 * Binds @gmem (@size bytes) as the VM's private memory at PRIVATE_GPA, and
 * runs a vCPU that writes every page of it. 0, or -1 with the reason in @r.
 */
static int populate_by_guest(struct result *r, int kvm, int vm, int gmem,
			     size_t size, double *seconds)
{
	struct kvm_userspace_memory_region2 shared = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = SHARED_SIZE,
	};
	struct kvm_userspace_memory_region2 priv = {
		.slot = 1, .flags = KVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = PRIVATE_GPA, .memory_size = size,
		.guest_memfd = gmem,
	};
	struct kvm_memory_attributes attr = {
		.address = PRIVATE_GPA, .size = size,
		.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE,
	};
	struct kvm_segment seg = {
		.limit = 0xffffffff, .present = 1, .s = 1, .db = 1, .g = 1,
	};
	struct kvm_run *run = MAP_FAILED;
	unsigned char *mem = MAP_FAILED;
	void *alias = MAP_FAILED;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int vcpu = -1, rc = -1, run_size;
	double t0;

	mem = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	/* A private slot needs a shared alias; nobody touches it. */
	alias = mmap(NULL, size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED || alias == MAP_FAILED) {
		fail(r, "mmap: %s", strerror(errno));
		goto out;
	}
	memcpy(mem + CODE_GPA, gmem_guest_start, gmem_guest_end - gmem_guest_start);
	shared.userspace_addr = (unsigned long)mem;
	priv.userspace_addr = (unsigned long)alias;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &shared) ||
	    ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &priv)) {
		fail(r, "KVM_SET_USER_MEMORY_REGION2: %s", strerror(errno));
		goto out;
	}
	if (ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &attr)) {
		fail(r, "KVM_SET_MEMORY_ATTRIBUTES(PRIVATE): %s", strerror(errno));
		goto out;
	}
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vcpu < 0 || run_size <= 0) {
		fail(r, "KVM_CREATE_VCPU: %s", strerror(errno));
		goto out;
	}
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED || ioctl(vcpu, KVM_GET_SREGS, &sregs)) {
		fail(r, "kvm_run or KVM_GET_SREGS: %s", strerror(errno));
		goto out;
	}
	/* Flat 32-bit protected mode, no paging: GVA = GPA. */
	seg.type = 3;		/* data, read/write, accessed */
	seg.selector = 0x10;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg;
	seg.type = 11;		/* code, execute/read, accessed */
	seg.selector = 0x08;
	sregs.cs = seg;
	sregs.cr0 |= 1;		/* PE */
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_GPA;
	regs.rflags = 2;
	regs.rdi = PRIVATE_GPA;
	regs.rcx = size / page_size;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) || ioctl(vcpu, KVM_SET_REGS, &regs)) {
		fail(r, "KVM_SET_SREGS/REGS: %s", strerror(errno));
		goto out;
	}

	t0 = now();
	while (ioctl(vcpu, KVM_RUN, 0) < 0 && errno == EINTR)
		;
	*seconds = now() - t0;
	if (run->exit_reason != KVM_EXIT_HLT) {
		fail(r, "KVM_RUN: exit reason %u, not HLT (errno %d)", run->exit_reason, errno);
		goto out;
	}
	if (ioctl(vcpu, KVM_GET_REGS, &regs) || regs.rcx != 0 ||
	    regs.rdi != PRIVATE_GPA + size) {
		fail(r, "the guest stopped with %llu pages left", (unsigned long long)regs.rcx);
		goto out;
	}
	rc = 0;
out:
	if (run != MAP_FAILED)
		munmap(run, run_size);
	if (vcpu >= 0)
		close(vcpu);
	if (alias != MAP_FAILED)
		munmap(alias, size);
	if (mem != MAP_FAILED)
		munmap(mem, SHARED_SIZE);
	return rc;
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
	if (r->guest) {
		if (populate_by_guest(r, kvm, vm, fd, size, &r->seconds)) {
			profile_stop(&r->flush_range, &r->flush_all);
			goto out;
		}
	} else {
		t0 = now();
		if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size)) {
			fail(r, "fallocate(%zu bytes): %s", size, strerror(errno));
			profile_stop(&r->flush_range, &r->flush_all);
			goto out;
		}
		r->seconds = now() - t0;
	}
	profile_stop(&r->flush_range, &r->flush_all);
	r->populated = read_directmap();
	free1 = read_meminfo("MemFree");
	r->memfree_drop_kb = free0 - free1;
	r->pool_pages_grown = pool_in_use() - in_use0;
	r->pool_block_allocs = read_long(POOL "pool_block_allocs") - allocs0;
	r->pool_tlb_flushes = read_long(POOL "pool_tlb_flushes") - flushes0;

	/*
	 * The memory is there, from the allocator the mode names. MemFree
	 * moves with the rest of the system too (the pool keeps pageblocks up
	 * to its high-water mark, page cache): a sanity check, with slack; the
	 * pool's count of pages in use is exact.
	 */
	if (r->memfree_drop_kb < (long)(size >> 10) - memfree_slack_kb(size))
		fail(r, "MemFree fell by %ld kB for %zu kB populated",
		     r->memfree_drop_kb, size >> 10);
	if (r->flag && !r->per_folio && r->pool_pages_grown != (long)(size / page_size))
		fail(r, "pool pages in use grew by %ld, not %zu", r->pool_pages_grown,
		     size / page_size);
	if ((!r->flag || r->per_folio) && r->pool_pages_grown != 0)
		fail(r, "pool pages in use grew by %ld in a mode off the pool",
		     r->pool_pages_grown);
	/*
	 * Each way unmaps as it says: per folio, a kernel TLB flush per page;
	 * the pool, one per pageblock it took from the direct map (and a few
	 * flushes of the rest of the kernel); plain, none but those few.
	 */
	if (r->per_folio && r->flush_range < (long)(size / page_size))
		fail(r, "%ld kernel TLB flushes for %zu pages unmapped one by one",
		     r->flush_range, size / page_size);
	if (r->flag && !r->per_folio &&
	    (r->pool_tlb_flushes != r->pool_block_allocs ||
	     r->flush_range > r->pool_block_allocs + 8))
		fail(r, "%ld kernel TLB flushes, %ld by the pool, for %ld pageblocks it took",
		     r->flush_range, r->pool_tlb_flushes, r->pool_block_allocs);
	if (!r->flag && r->flush_range > 8)
		fail(r, "%ld kernel TLB flushes for a plain guest_memfd", r->flush_range);

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
		    r->memfree_regained_kb < r->memfree_drop_kb - memfree_slack_kb(size))
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
	/* per_folio last: the direct-map splits it leaves are permanent. */
	struct result res[] = {
		{ .name = "pool", .flag = 1, .per_folio = 0, .guest = 1 },
		{ .name = "pool", .flag = 1, .per_folio = 0, .guest = 0 },
		{ .name = "plain", .flag = 0, .per_folio = 0, .guest = 1 },
		{ .name = "plain", .flag = 0, .per_folio = 0, .guest = 0 },
		{ .name = "per_folio", .flag = 1, .per_folio = 1, .guest = 1 },
		{ .name = "per_folio", .flag = 1, .per_folio = 1, .guest = 0 },
	};
	const int n = sizeof(res) / sizeof(res[0]);
	int i, all_ok = 1;

	page_size = sysconf(_SC_PAGESIZE);
	if (!size || size > (2UL << 30)) {
		fprintf(stderr, "gmem_populate: SIZE_MIB must be 1 to 2048 (private memory from GPA 1 GiB up, below the 32-bit MMIO hole)\n");
		return 1;
	}
	setrlimit(RLIMIT_MEMLOCK, &unlimited);
	if (access(MEMFD_EXCLUSIVE_SYSFS_DIR, F_OK)) {
		fprintf(stderr, "gmem_populate: no %s (no unmapped pool)\n",
			MEMFD_EXCLUSIVE_SYSFS_DIR);
		return 1;
	}
	profile_warm_up();

	for (i = 0; i < n; i++)
		run(&res[i], size);
	/* Leave the kernel as it booted. */
	write_file(PER_FOLIO_PARAM, "N");

	printf("{\n  \"size_mib\": %zu,\n  \"modes\": [\n", size >> 20);
	for (i = 0; i < n; i++) {
		struct result *r = &res[i];

		all_ok &= r->ok;
		printf("    {\n      \"name\": \"%s\",\n      \"method\": \"%s\",\n"
		       "      \"flags\": %u,\n"
		       "      \"gmem_unmap_per_folio\": %s,\n      \"ok\": %s,\n",
		       r->name, r->guest ? "guest" : "fallocate",
		       r->flag ? (unsigned int)GUEST_MEMFD_FLAG_NO_DIRECT_MAP : 0,
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
		       r->pool_tlb_flushes, r->settle_seconds, i < n - 1 ? "," : "");
	}
	printf("  ]\n}\n");
	return all_ok ? 0 : 1;
}
