// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmem-vm-attack: attacks on a KVM guest's memory (issue 14, item 4;
 * docs/attacks.md, "Guest memory"). Run as root inside the KVM test kernel
 * (scripts/attack --vm --kvm).
 *
 * For each of three targets a VMM (a forked child) creates a
 * KVM_X86_SW_PROTECTED_VM whose guest (32-bit flat, code in shared memory at
 * 0x1000) writes a pattern to 16 pages at GPA 0x200000, then stops:
 *   nodm      the range is private, in a guest_memfd made with
 *             GUEST_MEMFD_FLAG_NO_DIRECT_MAP (xmem's pool)
 *   gmem      the same in a plain guest_memfd (reference: private but in the
 *             direct map)
 *   ordinary  the control: the same guest with the range in ordinary shared
 *             memory (a memfd mapped by the VMM, no private attribute)
 * and the attacker (root, the parent) tries to read the pattern.
 *
 * The pattern: dword[0] = K, dword[i+1] = rol32(dword[i] + K, 5), K random
 * per VMM (odd; one VMM per cell). A page is a copy when its first four dwords chain with
 * this run's K, so the scanners hold only K, never the pattern, and pages
 * left over from another target's run (other K) do not count.
 *
 *   xmem-vm-attack [--attack NAME] [--nodm-flags N]   the table (or one row)
 *   xmem-vm-attack --list                             the row names
 *
 * A cell is n/a (with its reason) when this kernel cannot show it: no
 * KVM_LINK_GUEST_MEMFD, or kcore_after_release when nothing is found under
 * DEBUG_PAGEALLOC. kcore_after_release is INCONCLUSIVE (run again with a new
 * VMM, at most three times, then a failure) when the page allocator gave
 * every page of the pattern to someone else before it could be read
 * (after_release()).
 *
 * Exit: 0 when every nodm cell is refused (the vCPU row excepted: a known
 * limit), every ordinary cell succeeds and every gmem cell is as expected;
 * 1 otherwise; 2 on a setup error (never counted as a refusal).
 */
#include <linux/kernel-page-flags.h>
#include <linux/kvm.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
#include <elf.h>

#include "../../examples/common/kvm_xmem.h"

namespace {

constexpr std::uint64_t code_gpa = 0x1000;
constexpr std::uint64_t shared_size = 0x10000;
constexpr std::uint64_t target_gpa = 0x200000;
constexpr std::uint64_t target_size = 0x200000;
constexpr unsigned pattern_pages = 16;
constexpr std::size_t pg = 4096;

enum class kind { nodm, gmem, ordinary };

/*
 * The flags of the nodm column's guest_memfd. --nodm-flags 0 (a plain
 * guest_memfd under the flag's name) shows that the suite fails when the
 * protection is missing (tests/vm/kvm-attack.sh runs it so).
 */
std::uint64_t nodm_flags = GUEST_MEMFD_FLAG_NO_DIRECT_MAP;
const char *kind_name(kind k)
{
	switch (k) {
	case kind::nodm: return "guest_memfd NO_DIRECT_MAP";
	case kind::gmem: return "plain guest_memfd";
	default: return "ordinary memory (control)";
	}
}

/* The column's name in the per-cell lines (tests/vm/kvm-attack.sh reads them). */
const char *column(kind k)
{
	return k == kind::nodm ? "nodm" : k == kind::gmem ? "gmem" : "control";
}

std::string ename(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : std::to_string(e);
}

[[noreturn]] void setup_fail(const std::string &what, int e = errno)
{
	std::fprintf(stderr, "xmem-vm-attack: setup: %s: %s\n", what.c_str(), std::strerror(e));
	std::_Exit(2);
}

int xioctl(int fd, unsigned long req, auto arg)
{
	int r;
	do
		r = ::ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r;
}

std::uint32_t rol5(std::uint32_t v) { return (v << 5) | (v >> 27); }

/* True when the page at @p starts with four dwords of the pattern of @k. */
bool is_copy(const void *p, std::uint32_t k)
{
	std::uint32_t w[4];
	std::memcpy(w, p, sizeof(w));
	return w[1] == rol5(w[0] + k) && w[2] == rol5(w[1] + k) && w[3] == rol5(w[2] + k);
}

unsigned count_copies(const std::uint8_t *buf, std::size_t len, std::uint32_t k)
{
	unsigned n = 0;
	for (std::size_t o = 0; o + pg <= len; o += pg)
		n += is_copy(buf + o, k);
	return n;
}

} // namespace

/*
 * The guest. Entry "write" (at 0x1000): the pattern (K in %ebx) to 0x200000,
 * registers cleared, OUT to port 0x10, HLT. Entry "peek": the two dwords at
 * 0x200190 out to ports 0x12, 0x13 (what a VMM that takes over the vCPU
 * makes it do). Entry "emul": two MOVSL from 0x200190 to the unbacked GPA
 * 0x100000, so KVM's instruction emulator reads the source for the MMIO
 * exit.
 */
asm(R"(
	.pushsection .rodata
	.globl xvma_guest_start, xvma_guest_end, xvma_guest_peek, xvma_guest_emul
xvma_guest_start:
	.code32
	movl	$0x200000, %edi
	movl	%ebx, %eax
	movl	$16 * 1024, %ecx
1:	stosl
	addl	%ebx, %eax
	roll	$5, %eax
	loop	1b
	xorl	%eax, %eax
	xorl	%ebx, %ebx
	xorl	%ecx, %ecx
	xorl	%edi, %edi
	movw	$0x10, %dx
	outb	%al, %dx
	hlt
xvma_guest_peek:
	movl	0x200190, %eax
	movw	$0x12, %dx
	outl	%eax, %dx
	movl	0x200194, %eax
	movw	$0x13, %dx
	outl	%eax, %dx
	hlt
xvma_guest_emul:
	cld
	movl	$0x200190, %esi
	movl	$0x100000, %edi
	movsl
	movsl
	hlt
	.code64
xvma_guest_end:
	.popsection
)");
extern "C" const unsigned char xvma_guest_start[], xvma_guest_end[], xvma_guest_peek[],
	xvma_guest_emul[];

namespace {

/* What the VMM tells the attacker. */
struct vmm_info {
	std::uint64_t slot_hva;	/* userspace_addr of the target slot */
	std::int32_t fd;	/* guest_memfd, or the memfd of the control */
	std::int32_t vm_fd;
	std::uint64_t gmem_flags;
};

struct reply {
	int out; /* 0 blocked, 1 succeeded, 2 setup error */
	char detail[400];
};

/* ---- the VMM ---- */

struct vmm {
	kind k = kind::nodm;
	std::uint32_t key = 0;
	int kvm = -1, vm = -1, vcpu = -1, fd = -1;
	/* The attacker's own VM: the stolen memory fd (and the victim's VM fd to link it). */
	int stolen_fd = -1, stolen_vm = -1;
	std::string link_error;
	std::uint8_t *shared = nullptr, *slot = nullptr;
	struct kvm_run *run = nullptr;

	void create()
	{
		kvm = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (kvm < 0)
			setup_fail("open /dev/kvm");
		const int types = xioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
		if (types < 0 || !(types & (1 << KVM_X86_SW_PROTECTED_VM)))
			setup_fail("no KVM_X86_SW_PROTECTED_VM (kvm_amd npt=1?)", ENODEV);
		vm = xioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
		if (vm < 0)
			setup_fail("KVM_CREATE_VM");
		const int sfd = static_cast<int>(::memfd_create("xvma-shared", MFD_CLOEXEC));
		if (sfd < 0 || ::ftruncate(sfd, shared_size) < 0)
			setup_fail("memfd for shared memory");
		shared = static_cast<std::uint8_t *>(
			::mmap(nullptr, shared_size, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0));
		if (shared == MAP_FAILED)
			setup_fail("mmap shared");
		std::memcpy(shared + code_gpa, xvma_guest_start, xvma_guest_end - xvma_guest_start);
		struct kvm_userspace_memory_region2 r0 = {};
		r0.slot = 0;
		r0.memory_size = shared_size;
		r0.userspace_addr = reinterpret_cast<std::uint64_t>(shared);
		if (xioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r0) < 0)
			setup_fail("KVM_SET_USER_MEMORY_REGION2 slot 0");

		struct kvm_userspace_memory_region2 r1 = {};
		r1.slot = 1;
		r1.guest_phys_addr = target_gpa;
		r1.memory_size = target_size;
		if (k == kind::ordinary) {
			fd = stolen_fd >= 0 ? stolen_fd :
				static_cast<int>(::memfd_create("xvma-guest", MFD_CLOEXEC));
			if (fd < 0 || (stolen_fd < 0 && ::ftruncate(fd, target_size) < 0))
				setup_fail("memfd for the control");
			slot = static_cast<std::uint8_t *>(::mmap(nullptr, target_size,
				PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
		} else {
			struct kvm_create_guest_memfd g = {};
			g.size = target_size;
			g.flags = k == kind::nodm ? nodm_flags : 0;
			if (stolen_fd >= 0) {
				struct kvm_link_guest_memfd l = {};
				l.fd = static_cast<__u32>(stolen_fd);
				l.vm_fd = static_cast<__u32>(stolen_vm);
				fd = xioctl(vm, KVM_LINK_GUEST_MEMFD, &l);
				if (fd < 0) {
					link_error = "KVM_LINK_GUEST_MEMFD: " + ename(errno);
					return;
				}
			} else {
				fd = xioctl(vm, KVM_CREATE_GUEST_MEMFD, &g);
			}
			if (fd < 0)
				setup_fail(k == kind::nodm ?
					"KVM_CREATE_GUEST_MEMFD(NO_DIRECT_MAP) (the xmem KVM kernel?)" :
					"KVM_CREATE_GUEST_MEMFD");
			/* The slot's shared alias: anonymous memory nobody writes. */
			slot = static_cast<std::uint8_t *>(::mmap(nullptr, target_size,
				PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
			r1.flags = KVM_MEM_GUEST_MEMFD;
			r1.guest_memfd = static_cast<__u32>(fd);
		}
		if (slot == MAP_FAILED)
			setup_fail("mmap of the target slot");
		r1.userspace_addr = reinterpret_cast<std::uint64_t>(slot);
		if (xioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r1) < 0)
			setup_fail("KVM_SET_USER_MEMORY_REGION2 slot 1");
		if (k != kind::ordinary) {
			struct kvm_memory_attributes a = {};
			a.address = target_gpa;
			a.size = target_size;
			a.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
			if (xioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &a) < 0)
				setup_fail("KVM_SET_MEMORY_ATTRIBUTES");
		}
		vcpu = xioctl(vm, KVM_CREATE_VCPU, 0);
		if (vcpu < 0)
			setup_fail("KVM_CREATE_VCPU");
		const int sz = xioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
		run = static_cast<struct kvm_run *>(
			::mmap(nullptr, sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0));
		if (run == MAP_FAILED)
			setup_fail("mmap kvm_run");
		struct kvm_sregs s;
		if (xioctl(vcpu, KVM_GET_SREGS, &s) < 0)
			setup_fail("KVM_GET_SREGS");
		struct kvm_segment seg = {};
		seg.limit = 0xffffffff;
		seg.present = 1;
		seg.s = 1;
		seg.db = 1;
		seg.g = 1;
		seg.type = 3;
		seg.selector = 0x10;
		s.ds = s.es = s.fs = s.gs = s.ss = seg;
		seg.type = 11;
		seg.selector = 0x08;
		s.cs = seg;
		s.cr0 |= 1;
		if (xioctl(vcpu, KVM_SET_SREGS, &s) < 0)
			setup_fail("KVM_SET_SREGS");
	}

	void set_rip(std::uint64_t rip, std::uint32_t ebx)
	{
		struct kvm_regs r = {};
		r.rip = rip;
		r.rflags = 2;
		r.rbx = ebx;
		if (xioctl(vcpu, KVM_SET_REGS, &r) < 0)
			setup_fail("KVM_SET_REGS");
	}

	/* KVM_RUN to the next exit; "" or why it stopped otherwise. */
	std::string run_once()
	{
		::alarm(60);
		const int r = ::ioctl(vcpu, KVM_RUN, 0);
		const int e = errno;
		::alarm(0);
		if (r < 0)
			return "KVM_RUN: " + ename(e);
		return "";
	}

	/* Completes a pending exit before the registers change (api.rst). */
	void settle()
	{
		run->immediate_exit = 1;
		::ioctl(vcpu, KVM_RUN, 0);
		run->immediate_exit = 0;
	}

	std::uint64_t entry(const unsigned char *sym) const
	{
		return code_gpa + static_cast<std::uint64_t>(sym - xvma_guest_start);
	}

	/* Runs the guest's "write" entry: the pattern goes to its memory. */
	void write_pattern()
	{
		set_rip(code_gpa, key);
		const std::string why = run_once();
		if (!why.empty())
			setup_fail("guest: " + why, EIO);
		if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x10)
			setup_fail("guest stopped with exit " + std::to_string(run->exit_reason) +
					   " before writing its pattern", EPROTO);
		settle();
	}

	/* The VMM takes over the vCPU: its code reads two dwords out through ports. */
	reply peek()
	{
		reply rp{};
		set_rip(entry(xvma_guest_peek), 0);
		std::uint32_t v[2] = {};
		for (int i = 0; i < 2; i++) {
			const std::string why = run_once();
			if (!why.empty() || run->exit_reason != KVM_EXIT_IO) {
				std::snprintf(rp.detail, sizeof(rp.detail),
					      "guest did not reach OUT %d: %s exit %u", i,
					      why.c_str(), run->exit_reason);
				return rp;
			}
			std::memcpy(&v[i], reinterpret_cast<std::uint8_t *>(run) + run->io.data_offset, 4);
		}
		settle();
		rp.out = v[1] == rol5(v[0] + key);
		std::snprintf(rp.detail, sizeof(rp.detail),
			      "KVM_SET_REGS rip -> mov 0x200190,%%eax; out: %s", rp.out ?
			      "two chained dwords of the pattern read" : "no pattern in the OUT data");
		return rp;
	}

	/* KVM's instruction emulator reads the source of a MOVS to MMIO. */
	reply emulate()
	{
		reply rp{};
		set_rip(entry(xvma_guest_emul), 0);
		std::uint32_t v[2] = {};
		for (int i = 0; i < 2; i++) {
			const std::string why = run_once();
			if (!why.empty()) {
				std::snprintf(rp.detail, sizeof(rp.detail), "MOVS to MMIO: %s", why.c_str());
				return rp;
			}
			if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write) {
				std::snprintf(rp.detail, sizeof(rp.detail),
					      "MOVS to MMIO: exit %u, not an MMIO write (KVM refused to "
					      "emulate)", run->exit_reason);
				if (run->exit_reason == KVM_EXIT_MEMORY_FAULT)
					std::snprintf(rp.detail, sizeof(rp.detail),
						      "MOVS to MMIO: KVM_EXIT_MEMORY_FAULT gpa %#llx",
						      (unsigned long long)run->memory_fault.gpa);
				return rp;
			}
			std::memcpy(&v[i], run->mmio.data, 4);
		}
		settle();
		rp.out = v[1] == rol5(v[0] + key);
		std::snprintf(rp.detail, sizeof(rp.detail),
			      "MOVS 0x200190 -> MMIO, KVM_EXIT_MMIO data %s", rp.out ?
			      "holds the pattern" : "not the pattern (KVM read the slot's shared alias)");
		return rp;
	}

	/* The VMM maps / reads its own fd. */
	reply map_own()
	{
		reply rp{};
		void *p = ::mmap(nullptr, target_size, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			const int e = errno;
			std::uint8_t b[pg];
			const ssize_t n = ::pread(fd, b, sizeof(b), 0);
			std::snprintf(rp.detail, sizeof(rp.detail), "mmap of the fd: %s; pread: %s",
				      ename(e).c_str(), n < 0 ? ename(errno).c_str() : "read");
			rp.out = n == static_cast<ssize_t>(sizeof(b)) && is_copy(b, key);
			return rp;
		}
		const unsigned n = count_copies(static_cast<std::uint8_t *>(p), target_size, key);
		::munmap(p, target_size);
		rp.out = n > 0;
		std::snprintf(rp.detail, sizeof(rp.detail), "mmap of the fd: mapped, %u pages of the pattern", n);
		return rp;
	}

	/* KVM_SET_MEMORY_ATTRIBUTES to shared, then read the slot's userspace memory. */
	reply to_shared()
	{
		reply rp{};
		struct kvm_memory_attributes a = {};
		a.address = target_gpa;
		a.size = target_size;
		a.attributes = 0;
		std::string what = "KVM_SET_MEMORY_ATTRIBUTES(shared): ";
		if (xioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &a) < 0)
			what += ename(errno) + "; ";
		else
			what += "ok; ";
		const unsigned n = count_copies(slot, target_size, key);
		rp.out = n > 0;
		std::snprintf(rp.detail, sizeof(rp.detail), "%sthe slot's userspace_addr: %u pages of the pattern",
			      what.c_str(), n);
		return rp;
	}
};

/* The VMM child: create, write, answer commands on @cmd, replies on @rep. */
[[noreturn]] void vmm_main(kind k, std::uint32_t key, int cmd, int rep)
{
	vmm v;
	v.k = k;
	v.key = key;
	v.create();
	v.write_pattern();
	vmm_info info{reinterpret_cast<std::uint64_t>(v.slot), v.fd, v.vm,
		      k == kind::nodm ? GUEST_MEMFD_FLAG_NO_DIRECT_MAP : 0};
	if (::write(rep, &info, sizeof(info)) != sizeof(info))
		std::_Exit(2);
	for (char c; ::read(cmd, &c, 1) == 1;) {
		reply rp{};
		switch (c) {
		case 'p': rp = v.peek(); break;
		case 'e': rp = v.emulate(); break;
		case 'm': rp = v.map_own(); break;
		case 's': rp = v.to_shared(); break;
		default: std::_Exit(0);
		}
		if (::write(rep, &rp, sizeof(rp)) != sizeof(rp))
			std::_Exit(2);
	}
	std::_Exit(0);
}

struct victim {
	pid_t pid = -1;
	int cmd = -1, rep = -1;
	vmm_info info{};

	victim(kind k, std::uint32_t key)
	{
		int c[2], r[2];
		if (::pipe2(c, O_CLOEXEC) < 0 || ::pipe2(r, O_CLOEXEC) < 0)
			setup_fail("pipe");
		pid = ::fork();
		if (pid < 0)
			setup_fail("fork");
		if (pid == 0) {
			::close(c[1]);
			::close(r[0]);
			vmm_main(k, key, c[0], r[1]);
		}
		::close(c[0]);
		::close(r[1]);
		cmd = c[1];
		rep = r[0];
		if (::read(rep, &info, sizeof(info)) != sizeof(info))
			setup_fail("the VMM did not start its guest (see its message)", EPROTO);
	}

	reply ask(char c)
	{
		reply rp{};
		if (::write(cmd, &c, 1) != 1 || ::read(rep, &rp, sizeof(rp)) != sizeof(rp))
			setup_fail("the VMM did not answer", EPROTO);
		return rp;
	}

	void quit()
	{
		if (pid < 0)
			return;
		::write(cmd, "q", 1);
		::close(cmd);
		::close(rep);
		int st;
		::waitpid(pid, &st, 0);
		pid = -1;
	}
	~victim() { quit(); }
};

/* ---- the attacker's scanners ---- */

struct scan {
	unsigned copies = 0;
	unsigned long refused = 0; /* pages (or chunks) that could not be read */
	std::uint64_t bytes = 0;
};

/* System RAM ranges, from /proc/iomem (root sees the addresses). */
std::vector<std::pair<std::uint64_t, std::uint64_t>> ram_ranges()
{
	std::vector<std::pair<std::uint64_t, std::uint64_t>> v;
	std::ifstream f("/proc/iomem");
	for (std::string l; std::getline(f, l);) {
		if (l.empty() || l[0] == ' ' || l.find(": System RAM") == std::string::npos)
			continue;
		std::uint64_t a, b;
		if (std::sscanf(l.c_str(), "%" SCNx64 "-%" SCNx64, &a, &b) != 2)
			continue;
		a = (a + pg - 1) & ~(pg - 1); /* whole pages only: memremap() WARNs on mixed ranges */
		b = (b + 1) & ~(pg - 1);
		if (b > a)
			v.emplace_back(a, b);
	}
	return v;
}

/* /proc/kcore, open, with its program headers: physical pages read by address. */
struct kcore_file {
	int fd = -1;
	std::vector<Elf64_Phdr> ph;

	kcore_file()
	{
		fd = ::open("/proc/kcore", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			setup_fail("open /proc/kcore");
		Elf64_Ehdr eh;
		if (::pread(fd, &eh, sizeof(eh), 0) != sizeof(eh))
			setup_fail("/proc/kcore ELF header");
		ph.resize(eh.e_phnum);
		if (::pread(fd, ph.data(), ph.size() * sizeof(Elf64_Phdr), eh.e_phoff) !=
		    static_cast<ssize_t>(ph.size() * sizeof(Elf64_Phdr)))
			setup_fail("/proc/kcore program headers");
	}
	kcore_file(const kcore_file &) = delete;
	kcore_file &operator=(const kcore_file &) = delete;
	~kcore_file() { ::close(fd); }

	/* The file offset of the page at physical address @pa (a RAM segment), or -1. */
	off_t offset_of(std::uint64_t pa) const
	{
		for (const auto &p : ph)
			if (p.p_type == PT_LOAD && p.p_paddr != ~0ULL && pa >= p.p_paddr &&
			    pa + pg <= p.p_paddr + p.p_memsz)
				return static_cast<off_t>(p.p_offset + (pa - p.p_paddr));
		return -1;
	}
};

/*
 * Every RAM segment of /proc/kcore; with @where, the physical addresses of
 * the pages of the pattern go there too.
 */
scan scan_kcore(const kcore_file &kc, std::uint32_t key, std::set<std::uint64_t> *where = nullptr)
{
	scan s;
	std::set<std::uint64_t> found;
	std::vector<std::uint8_t> buf(1 << 20);
	for (const auto &p : kc.ph) {
		if (p.p_type != PT_LOAD || p.p_paddr == ~0ULL)
			continue;
		for (std::uint64_t o = 0; o < p.p_memsz; o += buf.size()) {
			const std::size_t len = std::min<std::uint64_t>(buf.size(), p.p_memsz - o);
			const ssize_t n = ::pread(kc.fd, buf.data(), len, p.p_offset + o);
			if (n != static_cast<ssize_t>(len)) {
				s.refused += len / pg;
				continue;
			}
			s.bytes += len;
			for (std::size_t q = 0; q + pg <= len; q += pg)
				if (is_copy(buf.data() + q, key))
					found.insert(p.p_paddr + o + q);
			/* Leave no copy of what was read for the rest of the scan to find. */
			std::memset(buf.data(), 0, len);
		}
	}
	s.copies = static_cast<unsigned>(found.size());
	if (where)
		*where = std::move(found);
	return s;
}

scan scan_kcore(std::uint32_t key)
{
	const kcore_file kc;
	return scan_kcore(kc, key);
}

scan scan_devmem(std::uint32_t key)
{
	scan s;
	const int fd = ::open("/dev/mem", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		setup_fail("open /dev/mem (CONFIG_DEVMEM, not STRICT_DEVMEM)");
	std::vector<std::uint8_t> buf(1 << 20);
	for (auto [a, b] : ram_ranges()) {
		for (std::uint64_t o = a; o < b; o += buf.size()) {
			const std::size_t len = std::min<std::uint64_t>(buf.size(), b - o);
			if (::pread(fd, buf.data(), len, o) == static_cast<ssize_t>(len)) {
				s.bytes += len;
				s.copies += count_copies(buf.data(), len, key);
				std::memset(buf.data(), 0, len);
				continue;
			}
			/* read_mem() drops a whole read at the first page it refuses. */
			for (std::size_t q = 0; q < len; q += pg) {
				if (::pread(fd, buf.data(), pg, o + q) != static_cast<ssize_t>(pg)) {
					s.refused++;
					continue;
				}
				s.bytes += pg;
				s.copies += is_copy(buf.data(), key);
			}
		}
	}
	::close(fd);
	return s;
}

/* mmap of /dev/mem, 2 MiB at a time; refused counts chunks. */
scan scan_devmem_mmap(std::uint32_t key)
{
	scan s;
	const int fd = ::open("/dev/mem", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		setup_fail("open /dev/mem");
	constexpr std::size_t chunk = 2 << 20;
	for (auto [a, b] : ram_ranges()) {
		/* Chunks on 2 MiB boundaries: a refused one is one pageblock. */
		for (std::uint64_t o = a, len; o < b; o += len) {
			len = std::min<std::uint64_t>(((o / chunk) + 1) * chunk, b) - o;
			void *p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(o));
			if (p == MAP_FAILED) {
				s.refused++;
				continue;
			}
			s.bytes += len;
			s.copies += count_copies(static_cast<std::uint8_t *>(p), len, key);
			::munmap(p, len);
		}
	}
	::close(fd);
	return s;
}

/* Every readable mapping of @pid through /proc/PID/mem. */
scan scan_proc_mem(pid_t pid, std::uint32_t key)
{
	scan s;
	const std::string d = "/proc/" + std::to_string(pid);
	const int fd = ::open((d + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		setup_fail("open " + d + "/mem");
	std::ifstream maps(d + "/maps");
	std::vector<std::uint8_t> buf(pg);
	for (std::string l; std::getline(maps, l);) {
		std::uint64_t a, b;
		char perm[8];
		if (std::sscanf(l.c_str(), "%" SCNx64 "-%" SCNx64 " %7s", &a, &b, perm) != 3 ||
		    perm[0] != 'r' || l.find("[vvar") != std::string::npos)
			continue;
		for (std::uint64_t o = a; o < b; o += pg) {
			if (::pread(fd, buf.data(), pg, static_cast<off_t>(o)) != static_cast<ssize_t>(pg)) {
				s.refused++;
				continue;
			}
			s.bytes += pg;
			s.copies += is_copy(buf.data(), key);
		}
	}
	::close(fd);
	return s;
}

std::string mib(std::uint64_t b) { return std::to_string(b >> 20) + " MiB"; }

/* ---- the rows ---- */

enum class expect { blocked, succeeded };

/* Runs of a cell that came back inconclusive (kcore_after_release) before it fails. */
constexpr unsigned max_attempts = 3;

struct cell {
	bool ok;	/* as this row expects for this target */
	bool hit;	/* the attacker read the pattern */
	std::string detail;
	bool na = false; /* cannot be tried on this kernel; detail says why */
	bool inconclusive = false; /* kcore_after_release: every page reused, none kept */
};

/*
 * DEBUG_PAGEALLOC (the debug kernel) takes every free page out of the
 * direct map: /proc/kcore then sees no freed page, ordinary ones neither.
 */
bool debug_pagealloc_on()
{
	std::string cmdline;
	std::getline(std::ifstream("/proc/cmdline"), cmdline);
	if (cmdline.find("debug_pagealloc=on") != std::string::npos)
		return true;
	if (cmdline.find("debug_pagealloc=off") != std::string::npos)
		return false;
	FILE *f = ::popen("zcat /proc/config.gz 2>/dev/null", "r");
	if (!f)
		return false;
	bool on = false;
	char line[256];
	while (std::fgets(line, sizeof(line), f))
		on |= std::strcmp(line, "CONFIG_DEBUG_PAGEALLOC_ENABLE_DEFAULT=y\n") == 0;
	::pclose(f);
	return on;
}

struct row {
	const char *name, *title;
	expect gmem;	   /* what the plain guest_memfd must show */
	bool nodm_limit;   /* success on nodm is a known limit, not a failure */
};

const row rows[] = {
	{"kcore_scan", "/proc/kcore, all RAM", expect::succeeded, false},
	{"dev_mem_scan", "pread of /dev/mem, all System RAM", expect::succeeded, false},
	{"dev_mem_mmap_scan", "mmap of /dev/mem, all System RAM", expect::succeeded, false},
	{"process_vm_readv", "process_vm_readv of the VMM's memslot range", expect::blocked, false},
	{"proc_mem_scan", "/proc/PID/mem, every mapping of the VMM", expect::blocked, false},
	{"pidfd_getfd_mmap", "pidfd_getfd of the VMM's memory fd, mmap / pread", expect::blocked, false},
	{"pidfd_getfd_link", "pidfd_getfd, then the attacker's own VM runs on the memory", expect::succeeded, false},
	{"vmm_mmap_fd", "the VMM maps / preads its own memory fd", expect::blocked, false},
	{"kvm_set_attr_shared", "KVM_SET_MEMORY_ATTRIBUTES to shared, read the slot", expect::blocked, false},
	{"kvm_emulator_mmio", "KVM's emulator: MOVS from the range to MMIO (KVM_RUN)", expect::blocked, false},
	{"vcpu_takeover", "KVM_SET_REGS: the VMM runs its own code in the guest", expect::succeeded, true},
	{"kcore_after_release", "/proc/kcore after the VMM exited", expect::succeeded, false},
};

std::string scan_detail(const char *what, const scan &s, const char *unit = "pages")
{
	std::ostringstream o;
	o << what << ": " << s.copies << " pages of the pattern in " << mib(s.bytes);
	if (s.refused)
		o << ", " << s.refused << " " << unit << " refused";
	return o.str();
}

/*
 * kcore_after_release. While the VMM lives, /proc/kcore gives the physical
 * pages of the pattern (none for the flagged guest_memfd: out of the direct
 * map). The VMM exits, the LRU-add batches are drained (below); at once each
 * of those pages is read again and classed, with its /proc/kpageflags (a
 * free page has no flag but BUDDY):
 *   kept    free and still the pattern: freed without being cleared;
 *   zeroed  free and all zero: cleared when freed, as the flag's pool does and
 *           init_on_free=1 does for every page;
 *   reused  anything else: in use again (the per-CPU free lists are LIFO:
 *           the next allocation on the CPU where the VMM exited takes its
 *           last freed page first) or written by a user that freed it again,
 *           which says nothing about what the kernel did at free.
 * Then all RAM is scanned again. Read when a page was kept, or (no page
 * seen before the exit: the flagged column) the scan finds the pattern;
 * refused when the scan finds none there, or every page that had it came
 * back zeroed. When neither holds, some page was reused and none kept:
 * inconclusive, and main() runs the cell again with a new VMM.
 */
void after_release(cell &c, victim &v, std::uint32_t key)
{
	const kcore_file kc;
	const int kpf = ::open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (kpf < 0)
		setup_fail("open /proc/kpageflags (CONFIG_PROC_PAGE_MONITOR)");
	const auto page_flags = [kpf](std::uint64_t pa) {
		std::uint64_t f;
		if (::pread(kpf, &f, sizeof(f), static_cast<off_t>(pa / pg * 8)) != sizeof(f))
			setup_fail("pread /proc/kpageflags");
		return f;
	};
	const int drop = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (drop < 0)
		setup_fail("open /proc/sys/vm/drop_caches");
	std::set<std::uint64_t> seen, before;
	scan_kcore(kc, key, &seen);
	/*
	 * The guest's memory is page cache (guest_memfd, memfd): uptodate, not
	 * anonymous. Other pages with the pattern are the attacker's copies: its
	 * scan buffer (anonymous), which held the page being read when
	 * /proc/kcore reached the buffer's own frames, or the kernel's bounce
	 * buffer of /proc/kcore (slab).
	 */
	for (const std::uint64_t pa : seen) {
		const std::uint64_t f = page_flags(pa);
		if ((f & (1ULL << KPF_UPTODATE)) && !(f & (1ULL << KPF_ANON | 1ULL << KPF_SLAB)))
			before.insert(pa);
	}
	/* Nothing between the exit and the reads allocates: buffers first. */
	std::vector<std::uint8_t> page(pg);
	std::vector<std::uint64_t> flags(before.size());
	std::vector<int> what(before.size()); /* 0 kept, 1 zeroed, 2 reused */
	v.quit();
	/*
	 * The exit does not free every page: a page cache folio added to the LRU
	 * on another CPU sits in that CPU's LRU-add batch, which holds a
	 * reference, until the CPU drains it (the control's memfd pages: flags
	 * uptodate, active, swapbacked, not yet LRU). drop_caches=1 runs
	 * lru_add_drain_all() first (fs/drop_caches.c): after it the pages are
	 * free, and the page allocator's own lists decide what becomes of them.
	 */
	if (::write(drop, "1", 1) != 1)
		setup_fail("write /proc/sys/vm/drop_caches");
	::close(drop);
	std::size_t i = 0;
	for (const std::uint64_t pa : before) {
		const off_t off = kc.offset_of(pa);
		if (off < 0 || ::pread(kc.fd, page.data(), pg, off) != static_cast<ssize_t>(pg))
			setup_fail("pread /proc/kcore at a page of the pattern", EIO);
		flags[i] = page_flags(pa);
		const bool zero = std::all_of(page.begin(), page.end(),
					      [](std::uint8_t b) { return !b; });
		const bool free = !(flags[i] & ~(1ULL << KPF_BUDDY));
		what[i] = !free ? 2 : is_copy(page.data(), key) ? 0 : zero ? 1 : 2;
		std::memset(page.data(), 0, pg);
		i++;
	}
	::close(kpf);
	std::set<std::uint64_t> after;
	const scan s = scan_kcore(kc, key, &after);
	const auto elsewhere = std::count_if(after.begin(), after.end(),
					     [&](std::uint64_t pa) { return !before.count(pa); });
	const auto kept = std::count(what.begin(), what.end(), 0);
	const auto zeroed = std::count(what.begin(), what.end(), 1);
	const auto reused = std::count(what.begin(), what.end(), 2);
	std::ostringstream o;
	o << "before the exit " << before.size() << " pages of the pattern";
	if (seen.size() > before.size())
		o << " (and " << seen.size() - before.size() << " copies of the attacker's)";
	o << "; after: " << kept << " kept, " << zeroed << " zeroed, " << reused << " reused";
	std::string fl;
	for (i = 0; i < what.size(); i++)
		if (what[i] == 2) {
			char h[24];
			std::snprintf(h, sizeof(h), "%s%#" PRIx64, fl.empty() ? "" : ",", flags[i]);
			fl += h;
		}
	if (!fl.empty())
		o << " (kpageflags " << fl << ")";
	/*
	 * Once the attacker has read the pattern, copies of it are its own (the
	 * kernel's bounce buffer of /proc/kcore, freed heap): then only the pages
	 * the guest wrote count. The flagged column never had one to copy.
	 */
	c.hit = before.empty() ? s.copies > 0 : kept > 0;
	c.inconclusive = !c.hit && zeroed < static_cast<long>(before.size());
	c.detail = o.str() + "; " + scan_detail("then /proc/kcore", s);
	if (elsewhere)
		c.detail += " (" + std::to_string(elsewhere) +
			    " not where the guest's were: the attacker's own copies, not counted)";
}

cell attack_one(const row &r, kind k, victim &v, std::uint32_t key)
{
	const std::string n = r.name;
	cell c{};
	if (n == "kcore_scan") {
		const scan s = scan_kcore(key);
		c.hit = s.copies > 0;
		c.detail = scan_detail("/proc/kcore", s);
	} else if (n == "kcore_after_release") {
		after_release(c, v, key);
	} else if (n == "dev_mem_scan") {
		const scan s = scan_devmem(key);
		c.hit = s.copies > 0;
		c.detail = scan_detail("pread /dev/mem", s);
	} else if (n == "dev_mem_mmap_scan") {
		const scan s = scan_devmem_mmap(key);
		c.hit = s.copies > 0;
		c.detail = scan_detail("mmap /dev/mem", s, "2 MiB chunks");
	} else if (n == "process_vm_readv") {
		std::vector<std::uint8_t> buf(target_size);
		struct iovec l = {buf.data(), buf.size()};
		struct iovec rr = {reinterpret_cast<void *>(v.info.slot_hva), target_size};
		const ssize_t got = ::process_vm_readv(v.pid, &l, 1, &rr, 1, 0);
		if (got < 0) {
			c.detail = "process_vm_readv: " + ename(errno);
		} else {
			const unsigned m = count_copies(buf.data(), static_cast<std::size_t>(got), key);
			c.hit = m > 0;
			c.detail = "process_vm_readv read " + mib(static_cast<std::uint64_t>(got)) +
				   " at the slot's userspace_addr: " + std::to_string(m) + " pages of the pattern";
		}
	} else if (n == "proc_mem_scan") {
		const scan s = scan_proc_mem(v.pid, key);
		c.hit = s.copies > 0;
		c.detail = scan_detail("/proc/PID/mem", s);
	} else if (n == "pidfd_getfd_mmap") {
		const int pfd = static_cast<int>(::syscall(SYS_pidfd_open, v.pid, 0));
		if (pfd < 0)
			setup_fail("pidfd_open");
		const int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pfd, v.info.fd, 0));
		::close(pfd);
		if (fd < 0) {
			c.detail = "pidfd_getfd: " + ename(errno);
		} else {
			void *p = ::mmap(nullptr, target_size, PROT_READ, MAP_SHARED, fd, 0);
			if (p == MAP_FAILED) {
				const int e = errno;
				std::vector<std::uint8_t> b(pg);
				const ssize_t got = ::pread(fd, b.data(), pg, 0);
				c.hit = got == static_cast<ssize_t>(pg) && is_copy(b.data(), key);
				c.detail = "pidfd_getfd: got the fd; mmap: " + ename(e) + "; pread: " +
					   (got < 0 ? ename(errno) : std::to_string(got) + " bytes");
			} else {
				const unsigned m = count_copies(static_cast<std::uint8_t *>(p), target_size, key);
				::munmap(p, target_size);
				c.hit = m > 0;
				c.detail = "pidfd_getfd, mmap: " + std::to_string(m) + " pages of the pattern";
			}
			::close(fd);
		}
	} else if (n == "pidfd_getfd_link") {
		const int pfd = static_cast<int>(::syscall(SYS_pidfd_open, v.pid, 0));
		if (pfd < 0)
			setup_fail("pidfd_open");
		const int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pfd, v.info.fd, 0));
		const int e = errno;
		const int vmfd = static_cast<int>(::syscall(SYS_pidfd_getfd, pfd, v.info.vm_fd, 0));
		::close(pfd);
		if (fd < 0) {
			c.detail = "pidfd_getfd of the memory fd: " + ename(e);
		} else if (vmfd < 0) {
			setup_fail("pidfd_getfd of the VM fd");
		} else {
			/* A VM of the attacker's own, in a child: its guest reads the memory. */
			int pp[2];
			if (::pipe(pp) < 0)
				setup_fail("pipe");
			const pid_t ch = ::fork();
			if (ch == 0) {
				::close(pp[0]);
				vmm a;
				a.k = k;
				a.key = key;
				a.stolen_fd = fd;
				a.stolen_vm = vmfd;
				a.create();
				reply rp{};
				if (!a.link_error.empty())
					std::snprintf(rp.detail, sizeof(rp.detail), "%s", a.link_error.c_str());
				else
					rp = a.peek();
				if (::write(pp[1], &rp, sizeof(rp)) != sizeof(rp))
					std::_Exit(2);
				std::_Exit(0);
			}
			::close(pp[1]);
			reply rp{};
			const bool got = ::read(pp[0], &rp, sizeof(rp)) == sizeof(rp);
			::close(pp[0]);
			int st;
			::waitpid(ch, &st, 0);
			if (!got)
				setup_fail("the attacker's VM did not report", EPROTO);
			c.hit = rp.out == 1;
			c.detail = std::string(k == kind::ordinary ? "the memfd in a slot" :
					       "KVM_LINK_GUEST_MEMFD") + " of the attacker's VM: " + rp.detail;
			if (k != kind::ordinary && !c.hit && std::string(rp.detail).rfind("KVM_LINK", 0) == 0)
				c.detail = std::string("pidfd_getfd: got the fds; ") + rp.detail;
			::close(fd);
			::close(vmfd);
		}
	} else {
		const char cmd = n == "vmm_mmap_fd" ? 'm' : n == "kvm_set_attr_shared" ? 's' :
				 n == "kvm_emulator_mmio" ? 'e' : 'p';
		const reply rp = v.ask(cmd);
		if (rp.out == 2)
			setup_fail(rp.detail, EPROTO);
		c.hit = rp.out == 1;
		c.detail = rp.detail;
	}
	if (!c.hit && c.detail.find("KVM_LINK_GUEST_MEMFD: ENOTTY") != std::string::npos) {
		c.na = true;
		c.detail += " (this kernel has no KVM_LINK_GUEST_MEMFD, kernel/patches/0018)";
	}
	if (n == "kcore_after_release" && !c.hit && debug_pagealloc_on()) {
		c.na = true;
		c.detail += " (DEBUG_PAGEALLOC: freed pages are out of the direct map, so "
			    "/proc/kcore sees none)";
	}
	if (c.na) {
		c.ok = true;
		c.inconclusive = false;
		return c;
	}
	switch (k) {
	case kind::nodm: c.ok = !c.hit || r.nodm_limit; break;
	case kind::gmem: c.ok = c.hit == (r.gmem == expect::succeeded); break;
	case kind::ordinary: c.ok = c.hit; break;
	}
	/* No answer is not a pass, in any column. */
	c.ok &= !c.inconclusive;
	return c;
}

std::string show(const cell &c, kind k, const row &r)
{
	std::string w;
	if (c.na)
		return "n/a: " + c.detail;
	if (c.inconclusive)
		return "**INCONCLUSIVE**: " + c.detail;
	if (k == kind::ordinary)
		w = c.hit ? "**control succeeded**" : "**CONTROL FAILED**";
	else if (k == kind::nodm && c.hit)
		w = r.nodm_limit ? "**allowed (known limit)**" : "**READ: ATTACK SUCCEEDED**";
	else if (c.hit)
		w = c.ok ? "**read (expected: no flag)**" : "**READ (unexpected)**";
	else
		w = c.ok ? "**refused**" : "**refused (unexpected)**";
	return w + ": " + c.detail;
}

} // namespace

int main(int argc, char **argv)
{
	std::vector<kind> kinds = {kind::nodm, kind::gmem, kind::ordinary};
	std::string only;
	for (int i = 1; i < argc; i++) {
		const std::string a = argv[i];
		if (a == "--list") {
			for (const auto &r : rows)
				std::printf("%s\n", r.name);
			return 0;
		}
		if (a == "--nodm-flags" && i + 1 < argc) {
			nodm_flags = std::strtoull(argv[++i], nullptr, 0);
			continue;
		}
		if (a == "--attack" && i + 1 < argc) {
			only = argv[++i];
			continue;
		}
		std::fprintf(stderr, "usage: xmem-vm-attack [--list] [--attack NAME] [--nodm-flags N]\n");
		return 2;
	}
	::signal(SIGPIPE, SIG_IGN);
	std::vector<std::vector<cell>> table(std::size(rows));
	bool all_ok = true;
	for (kind k : kinds) {
		/*
		 * A VMM per row, and a key per VMM: each row starts from a guest
		 * that just wrote its pattern, and pages freed by an earlier row
		 * (plain guest_memfd and memfd pages keep their contents) never
		 * count for another.
		 */
		for (std::size_t i = 0; i < std::size(rows); i++) {
			if (!only.empty() && only != rows[i].name) {
				table[i].push_back({true, false, "not run"});
				continue;
			}
			cell c;
			for (unsigned attempt = 1;; attempt++) {
				std::uint32_t key;
				if (::getrandom(&key, sizeof(key), 0) != sizeof(key))
					setup_fail("getrandom");
				key |= 1;
				victim v(k, key);
				c = attack_one(rows[i], k, v, key);
				if (!c.inconclusive)
					break;
				std::fprintf(stderr, "%s/%s: inconclusive (attempt %u of %u): %s\n",
					     rows[i].name, column(k), attempt, max_attempts,
					     c.detail.c_str());
				if (attempt == max_attempts) {
					c.detail += " (inconclusive " + std::to_string(attempt) +
						    " times: every page of the pattern reused)";
					break;
				}
			}
			all_ok &= c.ok;
			std::fprintf(stderr, "%s/%s: %s%s\n", rows[i].name, column(k),
				     c.na ? "n/a: " : c.ok ? "pass" :
				     c.inconclusive ? "INCONCLUSIVE: " : "FAIL: ",
				     c.ok && !c.na ? "" : c.detail.c_str());
			table[i].push_back(std::move(c));
		}
	}
	std::printf("| attack on guest memory |");
	for (kind k : kinds)
		std::printf(" %s |", kind_name(k));
	std::printf("\n|---|");
	for (std::size_t i = 0; i < kinds.size(); i++)
		std::printf("---|");
	std::printf("\n");
	for (std::size_t i = 0; i < std::size(rows); i++) {
		std::printf("| %s (`%s`) |", rows[i].title, rows[i].name);
		for (std::size_t j = 0; j < kinds.size(); j++)
			std::printf(" %s |", show(table[i][j], kinds[j], rows[i]).c_str());
		std::printf("\n");
	}
	std::printf("%s\n", all_ok ? "vm-attack: PASS" : "vm-attack: FAIL");
	return all_ok ? 0 : 1;
}
