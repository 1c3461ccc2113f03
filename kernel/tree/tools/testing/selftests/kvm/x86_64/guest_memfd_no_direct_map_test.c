// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest_memfd without a direct map (GUEST_MEMFD_FLAG_NO_DIRECT_MAP).
 *
 * A software-protected VM keeps 2 MiB of private memory in such a
 * guest_memfd. Its guest checks that every page reads zero, then writes a
 * pattern at the start of each page. Root on the host then looks for the
 * pattern in the kernel's direct map through /proc/kcore, in physical memory
 * through /dev/mem and in the VMM's own address space: it must find it
 * nowhere, while the same guest on a guest_memfd without the flag (the
 * control) shows every page through /proc/kcore and /dev/mem. The pages must
 * come from the unmapped pool (its statistics in
 * /sys/kernel/mm/memfd_exclusive/), go back to it on PUNCH_HOLE and when the
 * VM and the file are gone, come out of it zeroed for the next file, and
 * reach the direct map again only zeroed. Unknown flags, bad sizes and the
 * flag on a VM without private memory get EINVAL. The pages are charged to
 * RLIMIT_MEMLOCK as memfd_exclusive's are: a user without CAP_IPC_LOCK gets
 * ENOSPC from fallocate() past the limit, and from KVM_RUN (a memory-fault
 * exit at the first page past it) when a vCPU's fault needs the page;
 * PUNCH_HOLE and the file's release uncharge, CAP_IPC_LOCK lifts the limit.
 *
 * With --no-pool (a kernel booted with memfd_exclusive.enable=0, which has
 * no unmapped pool) it checks only that the flag is refused with EINVAL on a
 * software-protected VM that accepts a plain guest_memfd.
 *
 * The host never holds the pattern itself: it is derived from a seed, and
 * the scanner compares words masked with a constant, so a copy in the test's
 * own memory (which /proc/kcore would show) cannot match.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/elf.h>
#include <linux/falloc.h>
#include <linux/kvm.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"

#define TEST_GPA	0xc0000000ULL
#define TEST_SLOT	10
#define TEST_NPAGES	512
#define TEST_SIZE	(TEST_NPAGES * PAGE_SIZE)
#define PAT_WORDS	8
#define POOL_DIR	"/sys/kernel/mm/memfd_exclusive/"
#define BLOCK_PAGES	512	/* pageblock of x86-64: 2 MiB */
#define MASK		0x5a5a5a5aa5a5a5a5ULL
#define CHUNK		(4UL << 20)

static uint64_t guest_seed, guest_seed2;

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void guest_write(uint64_t *p, uint64_t seed)
{
	int j;

	for (j = 0; j < PAT_WORDS; j++)
		WRITE_ONCE(p[j], mix(seed + j));
}

static void guest_code(void)
{
	uint64_t i, j, acc;

	for (i = 0; i < TEST_NPAGES; i++) {
		uint64_t *p = (uint64_t *)(TEST_GPA + i * PAGE_SIZE);

		acc = 0;
		for (j = 0; j < PAGE_SIZE / 8; j++)
			acc |= READ_ONCE(p[j]);
		__GUEST_ASSERT(!acc, "page %lu of fresh private memory is not zero", i);
		guest_write(p, guest_seed);
	}
	GUEST_SYNC(1);

	for (i = 0; i < TEST_NPAGES; i++) {
		uint64_t *p = (uint64_t *)(TEST_GPA + i * PAGE_SIZE);

		for (j = 0; j < PAT_WORDS; j++)
			__GUEST_ASSERT(READ_ONCE(p[j]) == mix(guest_seed + j),
				       "page %lu word %lu lost its pattern", i, j);
	}
	GUEST_SYNC(2);

	/* Page 0 is shared now: ordinary memory of the VMM. */
	guest_write((uint64_t *)TEST_GPA, guest_seed2);
	GUEST_SYNC(3);
	GUEST_DONE();
}

static uint64_t pat[PAT_WORDS];	/* the pattern, masked */

static void set_pattern(uint64_t seed)
{
	int j;

	for (j = 0; j < PAT_WORDS; j++)
		pat[j] = mix(seed + j) ^ MASK;
}

static char *scan_buf;

/*
 * Copies of the pattern at 8-byte aligned offsets of @len bytes of scan_buf,
 * which is then cleared: /proc/kcore and /dev/mem also read scan_buf's own
 * pages, which must not hold a copy of the last chunk by then. (A chunk that
 * holds both pages of the pattern and of scan_buf can still count a copy
 * twice: the controls expect at least one copy per page, not exactly one.)
 */
static unsigned long count_hits(size_t len)
{
	const uint64_t *w = (const uint64_t *)scan_buf;
	size_t n = len / 8, i;
	unsigned long hits = 0;
	int j;

	for (i = 0; i + PAT_WORDS <= n; i++) {
		if ((w[i] ^ MASK) != pat[0])
			continue;
		for (j = 1; j < PAT_WORDS; j++)
			if ((w[i + j] ^ MASK) != pat[j])
				break;
		hits += j == PAT_WORDS;
	}
	memset(scan_buf, 0, len);
	return hits;
}

struct scan {
	unsigned long hits;
	unsigned long mib;
	unsigned long refused_pages;	/* /dev/mem: pages read() refused */
};

/* /proc/kcore: every segment of RAM in the direct map. */
static struct scan scan_kcore(void)
{
	struct scan s = {};
	struct elf64_hdr eh;
	struct elf64_phdr *ph;
	int fd, i;

	fd = open("/proc/kcore", O_RDONLY);
	TEST_ASSERT(fd >= 0, "open /proc/kcore: %s", strerror(errno));
	TEST_ASSERT(pread(fd, &eh, sizeof(eh), 0) == sizeof(eh), "kcore ELF header");
	ph = calloc(eh.e_phnum, sizeof(*ph));
	TEST_ASSERT(ph && pread(fd, ph, eh.e_phnum * sizeof(*ph), eh.e_phoff) ==
		    (ssize_t)(eh.e_phnum * sizeof(*ph)), "kcore program headers");
	for (i = 0; i < eh.e_phnum; i++) {
		uint64_t off;

		/* RAM: a physical address, and not the kernel text alias. */
		if (ph[i].p_type != PT_LOAD || ph[i].p_paddr == ~0ULL ||
		    ph[i].p_vaddr >= 0xffffffff80000000ULL)
			continue;
		for (off = 0; off < ph[i].p_filesz; off += CHUNK) {
			size_t len = ph[i].p_filesz - off < CHUNK ?
				     ph[i].p_filesz - off : CHUNK;
			ssize_t r = pread(fd, scan_buf, len, ph[i].p_offset + off);

			TEST_ASSERT(r == (ssize_t)len, "read /proc/kcore at 0x%llx: %zd %s",
				    (unsigned long long)(ph[i].p_offset + off), r, strerror(errno));
			s.hits += count_hits(len);
			s.mib += len >> 20;
		}
	}
	free(ph);
	close(fd);
	return s;
}

/*
 * /dev/mem: the whole pages of every "System RAM" range of /proc/iomem, page by
 * page where refused. (A page only partly RAM, such as the one below 640 KiB,
 * makes read() warn in memremap().)
 */
static struct scan scan_devmem(void)
{
	struct scan s = {};
	char line[256];
	FILE *iomem;
	int fd;

	fd = open("/dev/mem", O_RDONLY);
	TEST_ASSERT(fd >= 0, "open /dev/mem: %s", strerror(errno));
	iomem = fopen("/proc/iomem", "r");
	TEST_ASSERT(iomem, "open /proc/iomem");
	while (fgets(line, sizeof(line), iomem)) {
		unsigned long start, end, pos;

		if (line[0] == ' ' || !strstr(line, ": System RAM") ||
		    sscanf(line, "%lx-%lx", &start, &end) != 2)
			continue;
		TEST_ASSERT(end > start, "/proc/iomem shows no addresses (not root?)");
		start = (start + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
		end = ((end + 1) & ~(PAGE_SIZE - 1)) - 1;
		for (pos = start; pos < end;) {
			size_t len = end + 1 - pos < CHUNK ? end + 1 - pos : CHUNK;
			ssize_t r = pread(fd, scan_buf, len, pos);
			unsigned long p;

			if (r > 0) {
				s.hits += count_hits(r);
				s.mib += r >> 20;
				pos += r;
				continue;
			}
			/*
			 * read_mem() fails the whole read at a page it cannot
			 * read, discarding what it read before: page by page.
			 */
			for (p = pos; p < pos + len; p += PAGE_SIZE) {
				if (pread(fd, scan_buf, PAGE_SIZE, p) == PAGE_SIZE)
					s.hits += count_hits(PAGE_SIZE);
				else
					s.refused_pages++;
			}
			s.mib += len >> 20;
			pos += len;
		}
	}
	fclose(iomem);
	close(fd);
	return s;
}

/* The VMM's (this process's) address space, through /proc/self/mem. */
static struct scan scan_self(void)
{
	struct scan s = {};
	char line[512];
	FILE *maps;
	int fd;

	fd = open("/proc/self/mem", O_RDONLY);
	TEST_ASSERT(fd >= 0, "open /proc/self/mem");
	maps = fopen("/proc/self/maps", "r");
	TEST_ASSERT(maps, "open /proc/self/maps");
	while (fgets(line, sizeof(line), maps)) {
		unsigned long start, end, pos;
		char perms[5];

		if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) != 3 ||
		    perms[0] != 'r' || start == (unsigned long)scan_buf ||
		    strstr(line, "[vsyscall]") || strstr(line, "[vvar]"))
			continue;
		for (pos = start; pos < end;) {
			size_t len = end - pos < CHUNK ? end - pos : CHUNK;
			ssize_t r = pread(fd, scan_buf, len, pos);

			if (r <= 0) {
				pos += PAGE_SIZE;	/* a hole the kernel cannot read */
				continue;
			}
			s.hits += count_hits(r);
			s.mib += r >> 20;
			pos += r;
		}
	}
	fclose(maps);
	close(fd);
	return s;
}

static unsigned long read_ulong(const char *path)
{
	unsigned long v;
	FILE *f = fopen(path, "r");

	TEST_ASSERT(f && fscanf(f, "%lu", &v) == 1, "read %s", path);
	fclose(f);
	return v;
}

static void write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);

	TEST_ASSERT(fd >= 0 && write(fd, s, strlen(s)) == (ssize_t)strlen(s),
		    "write %s to %s: %s", s, path, strerror(errno));
	close(fd);
}

static unsigned long meminfo_kb(const char *key)
{
	char line[128];
	unsigned long v = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	TEST_ASSERT(f, "open /proc/meminfo");
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			sscanf(line + strlen(key), ": %lu", &v);
	fclose(f);
	return v;
}

/* Pages of the unmapped pool that are allocated (to any user). */
static long pool_in_use(void)
{
	return read_ulong(POOL_DIR "pool_blocks") * BLOCK_PAGES -
	       read_ulong(POOL_DIR "pool_free_pages");
}

/*
 * Wait up to 30 s for the pool's pages in use to drop to @want: freed folios
 * may wait in per-CPU LRU batches, which compact_memory drains.
 */
static long wait_in_use(long want)
{
	long now = pool_in_use();
	int i;

	for (i = 0; i < 300 && now > want; i++) {
		write_str("/proc/sys/vm/compact_memory", "1");
		usleep(100000);
		now = pool_in_use();
	}
	return now;
}

static struct kvm_vcpu *vcpu;
static unsigned long devmem_refused_base;	/* with the pool empty */
/*
 * debug_pagealloc removes free pages from the direct map: /dev/mem refuses
 * a number of pages that changes with every allocation, so its refusals
 * cannot be counted (the scans for the pattern still can). Seen as refusals
 * with the pool empty; on the test kernel there are none.
 */
static bool free_pages_unmapped;

static void run_to(int stage)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
		break;
	case UCALL_SYNC:
		TEST_ASSERT(uc.args[1] == stage, "guest at stage %lu, expected %d",
			    uc.args[1], stage);
		break;
	case UCALL_DONE:
		TEST_ASSERT(stage == 4, "guest done before stage %d", stage);
		break;
	default:
		TEST_FAIL("unexpected ucall %lu", uc.cmd);
	}
}

static const struct vm_shape sw_vm = {
	.mode = VM_MODE_DEFAULT,
	.type = KVM_X86_SW_PROTECTED_VM,
};

enum run_kind { NO_DIRECT_MAP, REUSE, CONTROL };

/*
 * One VM on a guest_memfd with (NO_DIRECT_MAP, REUSE) or without (CONTROL)
 * the flag. Returns the seed its guest wrote to the private pages.
 */
static uint64_t run_vm(enum run_kind kind)
{
	unsigned long allocs = read_ulong(POOL_DIR "pool_block_allocs");
	bool flag = kind != CONTROL;
	long base = pool_in_use(), in_use;
	struct kvm_vm *vm;
	struct scan s;
	int fd;

	vm = vm_create_shape_with_one_vcpu(sw_vm, &vcpu, guest_code);
	fd = vm_create_guest_memfd(vm, TEST_SIZE,
				   flag ? GUEST_MEMFD_FLAG_NO_DIRECT_MAP : 0);
	vm_mem_add(vm, VM_MEM_SRC_ANONYMOUS, TEST_GPA, TEST_SLOT, TEST_NPAGES,
		   KVM_MEM_GUEST_MEMFD, fd, 0);
	virt_map(vm, TEST_GPA, TEST_GPA, TEST_NPAGES);
	vm_mem_set_private(vm, TEST_GPA, TEST_SIZE);

	/*
	 * The kind above the bits time and pid can reach: two runs a second
	 * apart must not get one seed (REUSE at t and CONTROL at t ^ 3 did,
	 * and the control's freed pages then held the reuse guest's pattern).
	 */
	guest_seed = mix(time(NULL) ^ ((uint64_t)getpid() << 24) ^ ((uint64_t)kind << 56));
	guest_seed2 = mix(guest_seed);
	sync_global_to_guest(vm, guest_seed);
	sync_global_to_guest(vm, guest_seed2);

	run_to(1);
	in_use = pool_in_use() - base;
	pr_info("%s: guest wrote %d private pages; pool pages in use +%ld, pageblocks %lu\n",
		kind == CONTROL ? "control" : kind == REUSE ? "reuse" : "no-direct-map",
		TEST_NPAGES, in_use, read_ulong(POOL_DIR "pool_blocks"));
	if (flag)
		TEST_ASSERT(in_use >= TEST_NPAGES,
			    "guest_memfd pages are not from the unmapped pool (+%ld)", in_use);
	/* The guest checked that they read zero. */
	if (kind == REUSE) {
		allocs = read_ulong(POOL_DIR "pool_block_allocs") - allocs;
		pr_info("  pageblocks taken from the direct map for it: %lu\n", allocs);
		TEST_ASSERT(allocs == 0, "the pool grew instead of reusing freed pages");
	}
	if (!flag)
		TEST_ASSERT(in_use == 0, "control: a plain guest_memfd used the pool (+%ld)",
			    in_use);

	if (kind != REUSE) {
		set_pattern(guest_seed);
		s = scan_kcore();
		pr_info("  /proc/kcore: %lu copies of the pattern in %lu MiB\n", s.hits, s.mib);
		if (flag)
			TEST_ASSERT(s.hits == 0, "/proc/kcore shows private guest memory");
		else
			TEST_ASSERT(s.hits >= TEST_NPAGES,
				    "control: /proc/kcore shows %lu of %d pages", s.hits,
				    TEST_NPAGES);
		s = scan_devmem();
		pr_info("  /dev/mem: %lu copies in %lu MiB, %lu pages refused\n", s.hits,
			s.mib, s.refused_pages);
		if (flag) {
			TEST_ASSERT(s.hits == 0, "/dev/mem shows private guest memory");
			TEST_ASSERT(free_pages_unmapped ||
				    s.refused_pages >= devmem_refused_base + TEST_NPAGES,
				    "/dev/mem refused %lu pages, %lu with the pool empty: not the file's",
				    s.refused_pages, devmem_refused_base);
		} else {
			TEST_ASSERT(s.hits >= TEST_NPAGES,
				    "control: /dev/mem shows %lu of %d pages", s.hits,
				    TEST_NPAGES);
		}
		s = scan_self();
		pr_info("  VMM address space: %lu copies in %lu MiB\n", s.hits, s.mib);
		TEST_ASSERT(s.hits == 0, "the VMM's address space shows private memory");
	}

	run_to(2);
	/* PUNCH_HOLE frees the second half: back to the pool. */
	TEST_ASSERT(!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       TEST_SIZE / 2, TEST_SIZE / 2), "PUNCH_HOLE: %s", strerror(errno));
	in_use = wait_in_use(base + TEST_NPAGES / 2) - base;
	pr_info("  after PUNCH_HOLE of %d pages: pool pages in use +%ld\n",
		TEST_NPAGES / 2, in_use);
	if (flag)
		TEST_ASSERT(in_use <= TEST_NPAGES / 2,
			    "PUNCH_HOLE left pages out of the pool (+%ld)", in_use);

	/* Control of the VMM scan: the guest writes a pattern to shared memory. */
	vm_mem_set_shared(vm, TEST_GPA, PAGE_SIZE);
	run_to(3);
	if (kind == NO_DIRECT_MAP) {
		set_pattern(guest_seed2);
		s = scan_self();
		pr_info("  control, shared page: VMM address space: %lu copies\n", s.hits);
		TEST_ASSERT(s.hits >= 1, "the VMM scan misses the guest's shared page");
	}
	run_to(4);

	close(fd);
	kvm_vm_free(vm);
	in_use = wait_in_use(base) - base;
	pr_info("  VM and guest_memfd closed: pool pages in use +%ld\n", in_use);
	TEST_ASSERT(in_use <= 0, "pages still out of the pool after the file went (+%ld)",
		    in_use);
	return guest_seed;
}

static void test_errnos(void)
{
	struct kvm_vm *vm;
	int fd;

	/* A VM without private memory: the flag is refused, plain memory is not. */
	vm = vm_create_barebones();
	fd = __vm_create_guest_memfd(vm, PAGE_SIZE, GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	TEST_ASSERT(fd < 0 && errno == EINVAL,
		    "default VM: NO_DIRECT_MAP gave %d (errno %d), expected EINVAL", fd, errno);
	fd = __vm_create_guest_memfd(vm, PAGE_SIZE, 0);
	TEST_ASSERT(fd >= 0, "default VM: plain guest_memfd: %s", strerror(errno));
	close(fd);
	kvm_vm_free(vm);

	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	fd = __vm_create_guest_memfd(vm, PAGE_SIZE, GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	TEST_ASSERT(fd >= 0, "NO_DIRECT_MAP on a software-protected VM: %s",
		    strerror(errno));
	TEST_ASSERT(mmap(NULL, PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED,
		    "mmap of a guest_memfd succeeded");
	close(fd);
	fd = __vm_create_guest_memfd(vm, PAGE_SIZE,
				     GUEST_MEMFD_FLAG_NO_DIRECT_MAP | (1ULL << 3));
	TEST_ASSERT(fd < 0 && errno == EINVAL, "unknown flag: %d errno %d", fd, errno);
	fd = __vm_create_guest_memfd(vm, PAGE_SIZE, 1ULL << 63);
	TEST_ASSERT(fd < 0 && errno == EINVAL, "flag bit 63: %d errno %d", fd, errno);
	fd = __vm_create_guest_memfd(vm, 0, GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	TEST_ASSERT(fd < 0 && errno == EINVAL, "size 0: %d errno %d", fd, errno);
	fd = __vm_create_guest_memfd(vm, PAGE_SIZE + 1, GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	TEST_ASSERT(fd < 0 && errno == EINVAL, "size PAGE_SIZE + 1: %d errno %d", fd, errno);
	fd = __vm_create_guest_memfd(vm, -(uint64_t)PAGE_SIZE,
				     GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	TEST_ASSERT(fd < 0 && errno == EINVAL, "negative size: %d errno %d", fd, errno);
	kvm_vm_free(vm);
	pr_info("errnos: default VM refuses the flag (EINVAL), unknown flags and bad sizes EINVAL\n");
}

#define MEMLOCK_PAGES	16
#define MEMLOCK_UID	54321	/* a user with nothing charged yet */
#define MEMLOCK_GPA	0xd0000000ULL
#define MEMLOCK_SLOT	11

/* Writes one byte to each of 4 * MEMLOCK_PAGES private pages, then is done. */
static void memlock_guest_code(void)
{
	int i;

	for (i = 0; i < 4 * MEMLOCK_PAGES; i++)
		WRITE_ONCE(*(uint8_t *)(MEMLOCK_GPA + (uint64_t)i * PAGE_SIZE), 1);
	GUEST_DONE();
}

/*
 * A NO_DIRECT_MAP guest_memfd of @vm as private memory at MEMLOCK_GPA, for
 * memlock_guest_code(). kvm_util opens /dev/kvm for its capability checks:
 * call it with an effective uid that may.
 */
static int memlock_vcpu_memory(struct kvm_vm *vm)
{
	int fd = vm_create_guest_memfd(vm, 4 * MEMLOCK_PAGES * PAGE_SIZE,
				       GUEST_MEMFD_FLAG_NO_DIRECT_MAP);

	vm_mem_add(vm, VM_MEM_SRC_ANONYMOUS, MEMLOCK_GPA, MEMLOCK_SLOT,
		   4 * MEMLOCK_PAGES, KVM_MEM_GUEST_MEMFD, fd, 0);
	virt_map(vm, MEMLOCK_GPA, MEMLOCK_GPA, 4 * MEMLOCK_PAGES);
	vm_mem_set_private(vm, MEMLOCK_GPA, 4 * MEMLOCK_PAGES * PAGE_SIZE);
	return fd;
}

/*
 * Runs @vcpu until KVM_RUN fails: it must fail with ENOSPC, a memory-fault
 * exit at the private page @page of the slot (the first one past the limit).
 */
static void memlock_run_to_enospc(struct kvm_vcpu *vcpu, int page)
{
	int r = __vcpu_run(vcpu);
	uint64_t gpa = MEMLOCK_GPA + (uint64_t)page * PAGE_SIZE;

	TEST_ASSERT(r == -1 && errno == ENOSPC,
		    "vCPU over RLIMIT_MEMLOCK: KVM_RUN returned %d, errno %d, expected ENOSPC",
		    r, errno);
	TEST_ASSERT(vcpu->run->exit_reason == KVM_EXIT_MEMORY_FAULT,
		    "vCPU over RLIMIT_MEMLOCK: exit reason %u, expected KVM_EXIT_MEMORY_FAULT",
		    vcpu->run->exit_reason);
	TEST_ASSERT(vcpu->run->memory_fault.gpa == gpa &&
		    (vcpu->run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE),
		    "memory fault at gpa %#llx (flags %#llx), expected private %#lx",
		    vcpu->run->memory_fault.gpa, vcpu->run->memory_fault.flags, gpa);
}

/* Pages fallocate() gives the file one by one from @from on, up to @max. */
static int fallocate_pages(int fd, int from, int max)
{
	int i;

	for (i = 0; i < max; i++) {
		if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)(from + i) * PAGE_SIZE,
			      PAGE_SIZE)) {
			TEST_ASSERT(errno == ENOSPC, "fallocate: errno %d, expected ENOSPC",
				    errno);
			break;
		}
	}
	return i;
}

/*
 * RLIMIT_MEMLOCK, as for memfd_exclusive: the pages are charged to the
 * file's creator, per page, against the allocating task's limit. A user
 * without CAP_IPC_LOCK gets ENOSPC past it; PUNCH_HOLE and the file's
 * release uncharge; CAP_IPC_LOCK lifts the limit.
 */
static void memlock_child(bool privileged)
{
	struct rlimit rl = { MEMLOCK_PAGES * PAGE_SIZE, MEMLOCK_PAGES * PAGE_SIZE };
	struct kvm_vcpu *mvcpu;
	struct kvm_vm *vm, *mvm;
	struct ucall uc;
	int fd, mfd, n;

	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	mvm = vm_create_shape_with_one_vcpu(sw_vm, &mvcpu, memlock_guest_code);
	TEST_ASSERT(!setrlimit(RLIMIT_MEMLOCK, &rl), "setrlimit: %s", strerror(errno));
	if (!privileged) {
		/*
		 * The vCPU case's file is charged to its creator, the real
		 * uid; kvm_util still opens /dev/kvm (root's) as it sets up
		 * the slot, so only the real uid changes first.
		 */
		TEST_ASSERT(!setresgid(MEMLOCK_UID, MEMLOCK_UID, MEMLOCK_UID) &&
			    !setresuid(MEMLOCK_UID, 0, 0), "setresuid: %s", strerror(errno));
		mfd = memlock_vcpu_memory(mvm);
		TEST_ASSERT(!setresuid(MEMLOCK_UID, MEMLOCK_UID, MEMLOCK_UID), "setresuid: %s",
			    strerror(errno));
	} else {
		mfd = memlock_vcpu_memory(mvm);
	}

	fd = vm_create_guest_memfd(vm, 4 * MEMLOCK_PAGES * PAGE_SIZE,
				   GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	n = fallocate_pages(fd, 0, 4 * MEMLOCK_PAGES);
	if (privileged) {
		pr_info("memlock: with CAP_IPC_LOCK, RLIMIT_MEMLOCK %d pages: %d of %d pages allocated\n",
			MEMLOCK_PAGES, n, 4 * MEMLOCK_PAGES);
		TEST_ASSERT(n == 4 * MEMLOCK_PAGES, "CAP_IPC_LOCK: only %d pages", n);
		close(fd);

		/* And for the vCPU's faults: the guest writes every page. */
		vcpu_run(mvcpu);
		TEST_ASSERT_KVM_EXIT_REASON(mvcpu, KVM_EXIT_IO);
		TEST_ASSERT(get_ucall(mvcpu, &uc) == UCALL_DONE,
			    "CAP_IPC_LOCK: the vCPU did not write its %d pages", 4 * MEMLOCK_PAGES);
		pr_info("  vCPU with CAP_IPC_LOCK: wrote all %d pages\n", 4 * MEMLOCK_PAGES);
		close(mfd);
		kvm_vm_free(mvm);
		kvm_vm_free(vm);
		exit(0);
	}
	pr_info("memlock: uid %d, RLIMIT_MEMLOCK %d pages: %d pages allocated, then ENOSPC\n",
		MEMLOCK_UID, MEMLOCK_PAGES, n);
	TEST_ASSERT(n == MEMLOCK_PAGES, "%d pages allocated over RLIMIT_MEMLOCK of %d", n,
		    MEMLOCK_PAGES);

	TEST_ASSERT(!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			       MEMLOCK_PAGES / 2 * PAGE_SIZE), "PUNCH_HOLE: %s", strerror(errno));
	n = fallocate_pages(fd, MEMLOCK_PAGES, 4 * MEMLOCK_PAGES);
	pr_info("  after PUNCH_HOLE of %d pages: %d more pages\n", MEMLOCK_PAGES / 2, n);
	TEST_ASSERT(n == MEMLOCK_PAGES / 2, "PUNCH_HOLE uncharged %d pages, not %d", n,
		    MEMLOCK_PAGES / 2);

	close(fd);
	fd = vm_create_guest_memfd(vm, 4 * MEMLOCK_PAGES * PAGE_SIZE,
				   GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	n = fallocate_pages(fd, 0, 4 * MEMLOCK_PAGES);
	pr_info("  after the file's release, a new file: %d pages\n", n);
	TEST_ASSERT(n == MEMLOCK_PAGES, "release left %d pages charged",
		    MEMLOCK_PAGES - n);
	close(fd);

	/*
	 * The same limit where a vCPU's fault allocates the page
	 * (kvm_gmem_get_pfn()): KVM_RUN fails with ENOSPC and a memory-fault
	 * exit at the first page past it; a PUNCH_HOLE makes room and the
	 * vCPU goes on from that page.
	 */
	memlock_run_to_enospc(mvcpu, MEMLOCK_PAGES);
	pr_info("  vCPU: KVM_RUN ENOSPC, memory fault at private page %d\n", MEMLOCK_PAGES);
	TEST_ASSERT(!fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			       MEMLOCK_PAGES / 2 * PAGE_SIZE), "PUNCH_HOLE: %s", strerror(errno));
	memlock_run_to_enospc(mvcpu, MEMLOCK_PAGES + MEMLOCK_PAGES / 2);
	pr_info("  vCPU: after PUNCH_HOLE of %d pages, ENOSPC again at page %d\n",
		MEMLOCK_PAGES / 2, MEMLOCK_PAGES + MEMLOCK_PAGES / 2);
	/*
	 * kvm_vm_free() of a VM with memslots checks capabilities through
	 * /dev/kvm, which this uid may not open: exit() frees mvm.
	 */
	close(mfd);
	kvm_vm_free(vm);
	exit(0);
}

static void test_memlock(void)
{
	for (int privileged = 0; privileged < 2; privileged++) {
		int status;
		pid_t pid = fork();

		TEST_ASSERT(pid >= 0, "fork: %s", strerror(errno));
		if (!pid)
			memlock_child(privileged);
		TEST_ASSERT(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
		TEST_ASSERT(WIFEXITED(status) && !WEXITSTATUS(status),
			    "memlock test (%s) failed: status %#x",
			    privileged ? "CAP_IPC_LOCK" : "unprivileged", status);
	}
}

static void test_no_pool(void)
{
	struct kvm_vm *vm;
	int fd;

	TEST_ASSERT(access(POOL_DIR "pool_blocks", F_OK),
		    "--no-pool, but the unmapped pool is there (" POOL_DIR ")");
	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	fd = __vm_create_guest_memfd(vm, PAGE_SIZE, GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	TEST_ASSERT(fd < 0 && errno == EINVAL,
		    "no pool: NO_DIRECT_MAP gave %d (errno %d), expected EINVAL", fd, errno);
	fd = __vm_create_guest_memfd(vm, PAGE_SIZE, 0);
	TEST_ASSERT(fd >= 0, "no pool: plain guest_memfd: %s", strerror(errno));
	close(fd);
	kvm_vm_free(vm);
	pr_info("no pool: NO_DIRECT_MAP refused (EINVAL), plain guest_memfd created\n");
	pr_info("PASS\n");
}

int main(int argc, char *argv[])
{
	unsigned long dm4k, blocks0, hw;
	struct scan s;
	uint64_t seed, reuse_seed;
	char buf[32];

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	if (argc == 2 && !strcmp(argv[1], "--no-pool")) {
		test_no_pool();
		return 0;
	}
	TEST_ASSERT(argc == 1, "usage: %s [--no-pool]", argv[0]);
	TEST_REQUIRE(!access(POOL_DIR "pool_blocks", R_OK));

	scan_buf = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	TEST_ASSERT(scan_buf != MAP_FAILED, "mmap scan buffer");

	test_errnos();

	blocks0 = read_ulong(POOL_DIR "pool_blocks");
	TEST_ASSERT(blocks0 == 0, "the pool holds %lu pageblocks before the test", blocks0);
	set_pattern(mix(getpid()));
	devmem_refused_base = scan_devmem().refused_pages;
	free_pages_unmapped = devmem_refused_base > 0;
	pr_info("/dev/mem with the pool empty: %lu pages refused%s\n", devmem_refused_base,
		free_pages_unmapped ?
		" (free pages out of the direct map, debug_pagealloc?: refusals not counted)" :
		"");
	dm4k = meminfo_kb("DirectMap4k");
	seed = run_vm(NO_DIRECT_MAP);
	/*
	 * The pool's free pages were the last file's: they must read zero. The
	 * REUSE guest overwrites the same frames, so it is its pattern that the
	 * last check below looks for.
	 */
	reuse_seed = run_vm(REUSE);
	run_vm(CONTROL);

	/* Give every free pageblock back to the direct map. */
	hw = read_ulong(POOL_DIR "pool_high_water_kb");
	write_str(POOL_DIR "pool_high_water_kb", "0");
	for (int i = 0; i < 300 && read_ulong(POOL_DIR "pool_blocks") > blocks0; i++)
		usleep(100000);
	pr_info("pool blocks: %lu before, %lu after giving back; DirectMap4k %lu kB before, %lu kB after\n",
		blocks0, read_ulong(POOL_DIR "pool_blocks"), dm4k,
		meminfo_kb("DirectMap4k"));
	TEST_ASSERT(read_ulong(POOL_DIR "pool_blocks") <= blocks0,
		    "free pageblocks did not go back to the direct map");
	TEST_ASSERT(meminfo_kb("DirectMap4k") <= dm4k,
		    "the direct map was split into 4k pages");
	snprintf(buf, sizeof(buf), "%lu", hw);
	write_str(POOL_DIR "pool_high_water_kb", buf);

	/*
	 * Back in the direct map, zeroed: /proc/kcore finds neither guest's
	 * pattern. The REUSE file's pages were the last freed (at its inode's
	 * eviction), over the first guest's frames.
	 */
	set_pattern(reuse_seed);
	s = scan_kcore();
	pr_info("after the pages went back to the direct map: /proc/kcore: %lu copies of the reuse guest's pattern in %lu MiB\n",
		s.hits, s.mib);
	TEST_ASSERT(s.hits == 0,
		    "the reuse file's freed pages came back to the direct map unzeroed");
	set_pattern(seed);
	s = scan_kcore();
	pr_info("  and %lu copies of the first guest's pattern\n", s.hits);
	TEST_ASSERT(s.hits == 0, "freed guest pages came back to the direct map unzeroed");

	test_memlock();
	pr_info("PASS\n");
	return 0;
}
