// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmem-vmm: a small VMM that keeps a guest's secret in guest_memfd private
 * memory and hands the running VM on to a successor process over SCM_RIGHTS,
 * in the manner of QEMU's cpr-transfer live update (docs/vmm.md).
 *
 *   xmem-vmm run [--fresh] [--no-link]   run the guest, hand it to a successor
 *   xmem-vmm probe                       what a successor can do with the fds on this kernel
 *   xmem-vmm refuse                      the successor's refusals (bad bundles)
 *   xmem-vmm successor FD                (internal: exec'd by run, FD is the channel)
 *
 * The guest (32-bit protected mode, flat, no paging) runs from shared memory
 * at 0x1000. It writes a pattern derived from a seed the VMM gave it in %ebx
 * to the private range at 0x200000 (guest_memfd, KVM_MEMORY_ATTRIBUTE_PRIVATE),
 * keeps the seed there too, clears its registers and writes port 0x10. When
 * resumed it regenerates the pattern from the stored seed, counts the dwords
 * that differ and writes the count to port 0x11 (0: intact), then halts.
 *
 * Linux 6.12 refuses every ioctl on a VM or vCPU fd from a process other than
 * the one that created the VM (-EIO, kvm->mm != current->mm) and refuses to
 * bind a guest_memfd of another VM (-EINVAL). So the successor re-creates the
 * VM and the vCPU from the state sent with the fds, and gets the private
 * memory for its VM with KVM_LINK_GUEST_MEMFD (a new guest_memfd file on the
 * same inode; the xmem kernel series adds it). --fresh (control): the
 * successor binds a new, empty guest_memfd instead, and the guest must report
 * its secret lost.
 */
#include <xmem/channel.hpp>
#include <xmem/error.hpp>
#include <xmem/fd_bundle.hpp>
#include <xmem/memory.hpp>

#include <linux/kvm.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <random>
#include <string>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <csignal>
#include <poll.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>
#include <vector>

#include "../common/kvm_xmem.h"

namespace {

constexpr std::uint64_t code_gpa = 0x1000;
constexpr std::uint64_t shared_size = 0x10000;		/* GPA 0 .. 64 KiB */
constexpr std::uint64_t private_gpa = 0x200000;
constexpr std::uint64_t private_size = 0x200000;	/* 2 MiB: one pool pageblock */
constexpr std::uint32_t pattern_dwords = 16384;		/* 64 KiB of secret */
constexpr std::uint16_t port_written = 0x10;
constexpr std::uint16_t port_result = 0x11;
constexpr std::uint32_t bundle_type = 0x564d4d31;	/* "VMM1" */
constexpr unsigned run_timeout_s = 120;

constexpr std::array<xmem::fd_kind, 3> handover_kinds = {
	xmem::fd_kind::kvm_vm, xmem::fd_kind::guest_memfd, xmem::fd_kind::memory};

/* What travels with the fds: the vCPU state and the layout. */
struct handover_state {
	std::uint64_t private_gpa, private_size, shared_size;
	std::uint64_t gmem_flags;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
};

[[noreturn]] void die(const std::string &what, int err = errno)
{
	std::fprintf(stderr, "xmem-vmm[%d]: %s: %s\n", getpid(), what.c_str(), std::strerror(err));
	std::exit(1);
}

void say(const char *fmt, auto... args)
{
	std::fprintf(stdout, "xmem-vmm[%d]: ", getpid());
	std::fprintf(stdout, fmt, args...);
	std::fputc('\n', stdout);
	std::fflush(stdout);
}

int xioctl(int fd, unsigned long req, auto arg)
{
	int r;
	do {
		r = ::ioctl(fd, req, arg);
	} while (r < 0 && errno == EINTR);
	return r;
}

} // namespace

/*
 * The guest, 32-bit code assembled into .rodata and copied to GPA 0x1000.
 * Only relative jumps and absolute data addresses: it runs wherever it is
 * copied.
 */
asm(R"(
	.pushsection .rodata
	.globl xmem_guest_start, xmem_guest_end
xmem_guest_start:
	.code32
	movl	$0x200000, %edi
	movl	%ebx, 0x200000 + 4 * 16384	/* the seed, kept in private memory */
	movl	%ebx, %eax
	movl	$16384, %ecx
1:	stosl
	addl	$0x9e3779b9, %eax
	roll	$5, %eax
	loop	1b
	xorl	%eax, %eax
	xorl	%ebx, %ebx
	xorl	%edi, %edi
	movw	$0x10, %dx
	outb	%al, %dx			/* secret written */
	movl	$0x200000, %esi
	movl	0x200000 + 4 * 16384, %eax
	movl	$16384, %ecx
	xorl	%ebx, %ebx
2:	cmpl	(%esi), %eax
	je	3f
	incl	%ebx
3:	addl	$4, %esi
	addl	$0x9e3779b9, %eax
	roll	$5, %eax
	loop	2b
	movl	%ebx, %eax
	movw	$0x11, %dx
	outl	%eax, %dx			/* dwords that differ */
	hlt
	.code64
xmem_guest_end:
	.popsection
)");
extern "C" const unsigned char xmem_guest_start[], xmem_guest_end[];

namespace {

struct fd_counts {
	std::size_t fds = 0, maps = 0;
};

fd_counts count_resources()
{
	fd_counts c;
	if (DIR *d = ::opendir("/proc/self/fd")) {
		while (struct dirent *e = ::readdir(d))
			c.fds += e->d_name[0] != '.';
		::closedir(d);
		c.fds--; /* the directory's own fd */
	}
	std::ifstream maps("/proc/self/maps");
	for (std::string line; std::getline(maps, line);)
		c.maps++;
	return c;
}

struct vm {
	xmem::unique_fd kvm, vm, vcpu, gmem;
	xmem::memory shared;
	unsigned char *shared_map = nullptr;
	struct kvm_run *run = nullptr;
	std::size_t run_size = 0;
	std::uint64_t gmem_flags = 0;

	~vm()
	{
		if (run)
			::munmap(run, run_size);
		if (shared_map)
			::munmap(shared_map, shared_size);
	}
};

xmem::unique_fd open_kvm()
{
	xmem::unique_fd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
	if (!kvm)
		die("open /dev/kvm");
	if (xioctl(kvm.get(), KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		die("KVM_GET_API_VERSION", EPROTO);
	const int types = xioctl(kvm.get(), KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
	if (types < 0 || !(types & (1 << KVM_X86_SW_PROTECTED_VM)))
		die("KVM offers no KVM_X86_SW_PROTECTED_VM (KVM_CAP_VM_TYPES; npt=1?)", ENODEV);
	return kvm;
}

xmem::unique_fd create_vm(int kvm)
{
	xmem::unique_fd fd(xioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM));
	if (!fd)
		die("KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)");
	return fd;
}

/*
 * A guest_memfd of @size for @vm; NO_DIRECT_MAP when the VM takes it, as
 * KVM_CAP_GUEST_MEMFD_FLAGS says (0 on a kernel without the capability).
 */
xmem::unique_fd create_gmem(int vm, std::uint64_t &flags)
{
	struct kvm_create_guest_memfd g = {};
	g.size = private_size;
	const int offered = xioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	/* XMEM_VMM_GMEM_FLAGS=0: plain guest_memfd (a control for the flag). */
	const char *env = std::getenv("XMEM_VMM_GMEM_FLAGS");
	g.flags = env ? std::strtoull(env, nullptr, 0)
		      : (offered > 0 ? static_cast<std::uint64_t>(offered) : 0) &
				GUEST_MEMFD_FLAG_NO_DIRECT_MAP;
	const int fd = xioctl(vm, KVM_CREATE_GUEST_MEMFD, &g);
	if (fd < 0)
		die("KVM_CREATE_GUEST_MEMFD");
	::fcntl(fd, F_SETFD, FD_CLOEXEC);
	flags = g.flags;
	return xmem::unique_fd(fd);
}

/* Slots, private attributes and one vCPU for @v (vm, gmem and shared set). */
void setup_vm(vm &v)
{
	if (!v.shared_map) {
		void *p = ::mmap(nullptr, shared_size, PROT_READ | PROT_WRITE, MAP_SHARED,
				 v.shared.fd().get(), 0);
		if (p == MAP_FAILED)
			die("mmap of the shared memory");
		v.shared_map = static_cast<unsigned char *>(p);
	}
	struct kvm_userspace_memory_region2 shared = {};
	shared.slot = 0;
	shared.guest_phys_addr = 0;
	shared.memory_size = shared_size;
	shared.userspace_addr = reinterpret_cast<std::uint64_t>(v.shared_map);
	if (xioctl(v.vm.get(), KVM_SET_USER_MEMORY_REGION2, &shared) < 0)
		die("KVM_SET_USER_MEMORY_REGION2 (shared)");

	/*
	 * The private slot: guest_memfd only. A userspace_addr is required
	 * (the shared alias of the range); point it at an anonymous mapping
	 * nobody writes.
	 */
	static void *alias = ::mmap(nullptr, private_size, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (alias == MAP_FAILED)
		die("mmap of the private slot's shared alias");
	struct kvm_userspace_memory_region2 priv = {};
	priv.slot = 1;
	priv.flags = KVM_MEM_GUEST_MEMFD;
	priv.guest_phys_addr = private_gpa;
	priv.memory_size = private_size;
	priv.userspace_addr = reinterpret_cast<std::uint64_t>(alias);
	priv.guest_memfd = static_cast<__u32>(v.gmem.get());
	priv.guest_memfd_offset = 0;
	if (xioctl(v.vm.get(), KVM_SET_USER_MEMORY_REGION2, &priv) < 0)
		die("KVM_SET_USER_MEMORY_REGION2 (guest_memfd)");

	struct kvm_memory_attributes attr = {};
	attr.address = private_gpa;
	attr.size = private_size;
	attr.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
	if (xioctl(v.vm.get(), KVM_SET_MEMORY_ATTRIBUTES, &attr) < 0)
		die("KVM_SET_MEMORY_ATTRIBUTES(PRIVATE)");

	v.vcpu = xmem::unique_fd(xioctl(v.vm.get(), KVM_CREATE_VCPU, 0));
	if (!v.vcpu)
		die("KVM_CREATE_VCPU");
	::fcntl(v.vcpu.get(), F_SETFD, FD_CLOEXEC);
	const int sz = xioctl(v.kvm.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0)
		die("KVM_GET_VCPU_MMAP_SIZE");
	v.run_size = static_cast<std::size_t>(sz);
	void *r = ::mmap(nullptr, v.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v.vcpu.get(), 0);
	if (r == MAP_FAILED)
		die("mmap of kvm_run");
	v.run = static_cast<struct kvm_run *>(r);
}

/* Flat 32-bit protected mode, no paging: what the guest code was assembled for. */
void set_flat32(int vcpu, std::uint32_t seed)
{
	struct kvm_sregs s;
	if (xioctl(vcpu, KVM_GET_SREGS, &s) < 0)
		die("KVM_GET_SREGS");
	struct kvm_segment seg = {};
	seg.base = 0;
	seg.limit = 0xffffffff;
	seg.present = 1;
	seg.s = 1;
	seg.db = 1;
	seg.g = 1;
	seg.type = 3; /* data, read/write, accessed */
	seg.selector = 0x10;
	s.ds = s.es = s.fs = s.gs = s.ss = seg;
	seg.type = 11; /* code, execute/read, accessed */
	seg.selector = 0x08;
	s.cs = seg;
	s.cr0 |= 1; /* PE */
	if (xioctl(vcpu, KVM_SET_SREGS, &s) < 0)
		die("KVM_SET_SREGS");
	struct kvm_regs r = {};
	r.rip = code_gpa;
	r.rflags = 2;
	r.rbx = seed;
	if (xioctl(vcpu, KVM_SET_REGS, &r) < 0)
		die("KVM_SET_REGS");
}

/* Runs until the guest writes a port; returns the port, *value its data. */
std::uint16_t run_to_port(vm &v, std::uint32_t *value)
{
	/* A guest that never reports: stop after run_timeout_s with its registers. */
	struct sigaction sa = {};
	sa.sa_handler = [](int) {};
	::sigaction(SIGALRM, &sa, nullptr); /* no SA_RESTART: KVM_RUN returns EINTR */
	::alarm(run_timeout_s);
	for (;;) {
		if (::ioctl(v.vcpu.get(), KVM_RUN, 0) < 0) {
			if (errno != EINTR)
				die("KVM_RUN");
			struct kvm_regs r;
			if (xioctl(v.vcpu.get(), KVM_GET_REGS, &r) == 0)
				std::fprintf(stderr, "rip 0x%llx rax 0x%llx rcx 0x%llx rsi 0x%llx rdi 0x%llx\n",
					     (unsigned long long)r.rip, (unsigned long long)r.rax,
					     (unsigned long long)r.rcx, (unsigned long long)r.rsi,
					     (unsigned long long)r.rdi);
			die("the guest did not report within " + std::to_string(run_timeout_s) + " s",
			    ETIMEDOUT);
		}
		::alarm(0);
		switch (v.run->exit_reason) {
		case KVM_EXIT_IO: {
			if (v.run->io.direction != KVM_EXIT_IO_OUT)
				die("guest read a port", EPROTO);
			std::uint32_t val = 0;
			std::memcpy(&val, reinterpret_cast<unsigned char *>(v.run) + v.run->io.data_offset,
				    v.run->io.size);
			*value = val;
			return v.run->io.port;
		}
		case KVM_EXIT_HLT:
			die("guest halted before reporting", EPROTO);
		case KVM_EXIT_MEMORY_FAULT:
			std::fprintf(stderr, "memory fault at gpa 0x%llx size 0x%llx flags 0x%llx\n",
				     static_cast<unsigned long long>(v.run->memory_fault.gpa),
				     static_cast<unsigned long long>(v.run->memory_fault.size),
				     static_cast<unsigned long long>(v.run->memory_fault.flags));
			die("KVM_EXIT_MEMORY_FAULT", EFAULT);
		default:
			std::fprintf(stderr, "exit reason %u\n", v.run->exit_reason);
			die("unexpected exit", EPROTO);
		}
	}
}

/*
 * Completes the port write the last exit left pending (KVM finishes an OUT,
 * advancing %rip, only on the next KVM_RUN): KVM_RUN with immediate_exit,
 * as api.rst says a VMM must before it saves state.
 */
void complete_pending_io(vm &v)
{
	v.run->immediate_exit = 1;
	if (::ioctl(v.vcpu.get(), KVM_RUN, 0) == 0 || errno != EINTR)
		die("KVM_RUN with immediate_exit did not return EINTR");
	v.run->immediate_exit = 0;
}

std::string errname(const std::error_code &ec)
{
	return ec.message() + " (" + ec.category().name() + ":" + std::to_string(ec.value()) + ")";
}

/* ---- successor ---- */

int successor(int chan_fd, bool fresh)
{
	/* The old VMM, our parent: a pidfd taken before anything can reparent us. */
	const pid_t old_vmm = ::getppid();
	xmem::unique_fd old_pidfd(static_cast<int>(::syscall(SYS_pidfd_open, old_vmm, 0)));
	if (!old_pidfd)
		die("pidfd_open of the old VMM");
	std::error_code ec;
	xmem::channel ch = xmem::channel::adopt(xmem::unique_fd(chan_fd), ec);
	if (ec)
		die("channel::adopt: " + errname(ec), EINVAL);
	const fd_counts before = count_resources();
	xmem::bundle_requirements req;
	req.type = bundle_type;
	req.kinds = handover_kinds;
	req.max_data = sizeof(handover_state);
	xmem::fd_bundle b = xmem::receive_bundle(ch, req, ec);
	if (ec) {
		say("successor: bundle refused: %s", errname(ec).c_str());
		const fd_counts after = count_resources();
		say("successor: fds %zu -> %zu, mappings %zu -> %zu", before.fds, after.fds,
		    before.maps, after.maps);
		return 2;
	}
	if (b.data.size() != sizeof(handover_state)) {
		say("successor: state of %zu bytes, expected %zu: refused", b.data.size(),
		    sizeof(handover_state));
		return 2;
	}
	handover_state st;
	std::memcpy(&st, b.data.data(), sizeof(st));
	if (st.private_gpa != private_gpa || st.private_size != private_size ||
	    st.shared_size != shared_size) {
		say("successor: layout differs from this VMM's: refused");
		return 2;
	}
	say("successor: received kvm-vm fd %d, guest_memfd fd %d, memory fd %d (kinds verified)",
	    b.fds[0].fd.get(), b.fds[1].fd.get(), b.fds[2].fd.get());

	/* The fact of 6.12: the old VM cannot be driven from here. */
	if (xioctl(b.fds[0].fd.get(), KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) < 0)
		say("successor: the old VM's fd: KVM_CHECK_EXTENSION -> %s", std::strerror(errno));
	else
		say("successor: the old VM's fd answers ioctls from this process");

	vm v;
	v.kvm = open_kvm();
	v.vm = create_vm(v.kvm.get());
	if (fresh) {
		v.gmem = create_gmem(v.vm.get(), v.gmem_flags);
		say("successor: --fresh: binding a new, empty guest_memfd (control)");
	} else {
		struct kvm_link_guest_memfd l = {};
		l.fd = static_cast<__u32>(b.fds[1].fd.get());
		l.vm_fd = static_cast<__u32>(b.fds[0].fd.get());
		const int fd = xioctl(v.vm.get(), KVM_LINK_GUEST_MEMFD, &l);
		if (fd < 0) {
			say("successor: KVM_LINK_GUEST_MEMFD: %s%s", std::strerror(errno),
			    errno == ENOTTY ? " (this kernel has no link ioctl)" : "");
			std::fflush(stdout);
			return 3;
		}
		v.gmem = xmem::unique_fd(fd);
		v.gmem_flags = st.gmem_flags;
		/* The kernel makes it close-on-exec: no window for a fork+exec elsewhere. */
		const int fdflags = ::fcntl(fd, F_GETFD);
		say("successor: KVM_LINK_GUEST_MEMFD: guest_memfd fd %d of the new VM on the old inode%s",
		    fd, fdflags >= 0 && (fdflags & FD_CLOEXEC) ? ", close-on-exec" : "");
		if (fdflags < 0 || !(fdflags & FD_CLOEXEC))
			die("the linked guest_memfd is not close-on-exec", EPROTO);
	}
	struct stat gst = {};
	if (::fstat(v.gmem.get(), &gst) < 0 || static_cast<std::uint64_t>(gst.st_size) != private_size) {
		say("successor: guest_memfd of %lld bytes, the layout needs %llu: refused",
		    static_cast<long long>(gst.st_size), static_cast<unsigned long long>(private_size));
		return 2;
	}
	std::size_t shared_bytes = 0;
	v.shared = xmem::memory::adopt(std::move(b.fds[2].fd), shared_bytes, ec);
	if (ec)
		die("memory::adopt: " + errname(ec), EINVAL);
	if (shared_bytes < shared_size) {
		say("successor: shared memory of %zu bytes, the layout needs %llu: refused", shared_bytes,
		    static_cast<unsigned long long>(shared_size));
		return 2;
	}
	/* The old VM and its guest_memfd file go: the successor holds what it needs. */
	b.fds[0].fd.reset();
	b.fds[1].fd.reset();
	setup_vm(v);
	if (xioctl(v.vcpu.get(), KVM_SET_SREGS, &st.sregs) < 0)
		die("KVM_SET_SREGS");
	if (xioctl(v.vcpu.get(), KVM_SET_REGS, &st.regs) < 0)
		die("KVM_SET_REGS");
	xmem::send_bundle(ch, bundle_type + 1, {}, {}, {}, ec); /* ack: the old VMM may go */
	/*
	 * The guest resumes only once the old VMM has exited. Its VM is dead
	 * already (the link killed it) and its guest_memfd file retired: no
	 * other file gives access to the memory, whoever else holds a copy.
	 */
	struct pollfd pfd = {old_pidfd.get(), POLLIN, 0};
	if (::poll(&pfd, 1, 60000) != 1)
		die("the old VMM did not exit within 60 s", ETIMEDOUT);
	say("successor: the old VMM (pid %d) has exited; resuming the guest",
	    static_cast<int>(old_vmm));
	std::uint32_t differ = 0;
	const std::uint16_t port = run_to_port(v, &differ);
	if (port != port_result)
		die("guest wrote port " + std::to_string(port), EPROTO);
	say("successor: guest resumed at rip 0x%llx and reports %u of %u dwords differ: secret %s",
	    static_cast<unsigned long long>(st.regs.rip), differ, pattern_dwords,
	    differ == 0 ? "INTACT" : "LOST");
	return differ == 0 ? 0 : 1;
}

/* Makes @fd fd 3, without FD_CLOEXEC, for the exec'd program. */
int move_to_fd3(int fd)
{
	if (fd == 3)
		return ::fcntl(fd, F_SETFD, 0);
	return ::dup2(fd, 3);
}

/* Starts this binary as "successor" with @theirs as fd 3; returns its pid. */
pid_t spawn_successor(xmem::channel &theirs, bool fresh)
{
	const pid_t pid = ::fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (move_to_fd3(theirs.fd().get()) < 0)
			_exit(127);
		const char *argv[] = {"/proc/self/exe", "successor", "3", fresh ? "--fresh" : nullptr,
				      nullptr};
		::execv("/proc/self/exe", const_cast<char **>(argv));
		_exit(127);
	}
	return pid;
}

int run(bool fresh)
{
	vm v;
	v.kvm = open_kvm();
	v.vm = create_vm(v.kvm.get());
	::fcntl(v.vm.get(), F_SETFD, FD_CLOEXEC);
	v.gmem = create_gmem(v.vm.get(), v.gmem_flags);
	xmem::create_options o;
	o.require = xmem::backend::ordinary;
	v.shared = xmem::memory::create("xmem-vmm-shared", shared_size, o);
	setup_vm(v);
	say("old VMM: SW_PROTECTED VM, guest_memfd of %llu KiB (flags 0x%llx%s), shared memory %llu KiB",
	    static_cast<unsigned long long>(private_size >> 10),
	    static_cast<unsigned long long>(v.gmem_flags),
	    v.gmem_flags & GUEST_MEMFD_FLAG_NO_DIRECT_MAP ? ": NO_DIRECT_MAP" : "",
	    static_cast<unsigned long long>(shared_size >> 10));

	const std::size_t code_len = static_cast<std::size_t>(xmem_guest_end - xmem_guest_start);
	std::memcpy(v.shared_map + code_gpa, xmem_guest_start, code_len);
	std::uint32_t seed = 0;
	while (seed == 0)
		if (::getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
			die("getrandom");
	set_flat32(v.vcpu.get(), seed);
	std::uint32_t val;
	std::uint16_t port = run_to_port(v, &val);
	if (port != port_written)
		die("guest wrote port " + std::to_string(port), EPROTO);
	complete_pending_io(v);
	/* The seed must be nowhere the VMM can read: not in shared memory. */
	for (std::size_t i = 0; i + 4 <= shared_size; i += 4)
		if (std::memcmp(v.shared_map + i, &seed, 4) == 0)
			die("the seed is in shared memory", EPROTO);

	handover_state st = {};
	st.private_gpa = private_gpa;
	st.private_size = private_size;
	st.shared_size = shared_size;
	st.gmem_flags = v.gmem_flags;
	if (xioctl(v.vcpu.get(), KVM_GET_REGS, &st.regs) < 0)
		die("KVM_GET_REGS");
	if (xioctl(v.vcpu.get(), KVM_GET_SREGS, &st.sregs) < 0)
		die("KVM_GET_SREGS");
	if (st.regs.rbx != 0)
		die("the guest kept its seed in %ebx", EPROTO);
	say("old VMM: guest wrote %u dwords of secret to private memory, stopped at rip 0x%llx",
	    pattern_dwords, static_cast<unsigned long long>(st.regs.rip));

	auto [mine, theirs] = xmem::channel::pair();
	const pid_t pid = spawn_successor(theirs, fresh);
	theirs = xmem::channel();
	const std::array<xmem::borrowed_fd, 3> fds = {v.vm, v.gmem, v.shared.fd()};
	std::error_code ec;
	xmem::send_bundle(mine, bundle_type, handover_kinds, fds,
			  std::as_bytes(std::span(&st, 1)), ec);
	if (ec)
		die("send_bundle: " + errname(ec), EPROTO);
	say("old VMM: handed the VM to successor %d (kvm-vm, guest_memfd, memory + %zu bytes of vCPU state)",
	    static_cast<int>(pid), sizeof(st));
	xmem::bundle_requirements ack;
	ack.type = bundle_type + 1;
	ack.max_data = 0;
	(void)xmem::receive_bundle(mine, ack, ec);
	if (ec) {
		int status = 0;
		::waitpid(pid, &status, 0);
		say("old VMM: successor failed (%s; exit %d)", errname(ec).c_str(),
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return 1;
	}
	/* The link is a move: this VMM's VM is dead once the successor linked. */
	struct kvm_regs regs = {};
	const int rv = xioctl(v.vm.get(), KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
	const int ev = rv < 0 ? errno : 0;
	const int rc = xioctl(v.vcpu.get(), KVM_GET_REGS, &regs);
	const int ec2 = rc < 0 ? errno : 0;
	say("old VMM: after the handover, its VM: KVM_CHECK_EXTENSION -> %s, its vCPU: KVM_GET_REGS -> %s",
	    rv < 0 ? std::strerror(ev) : "answered", rc < 0 ? std::strerror(ec2) : "answered");
	say("old VMM: successor runs the guest; exiting");
	return 0;
}

/* ---- probe: the 6.12 facts ---- */

int probe_child(int chan_fd)
{
	std::error_code ec;
	xmem::channel ch = xmem::channel::adopt(xmem::unique_fd(chan_fd), ec);
	if (ec)
		die("channel::adopt", EINVAL);
	static constexpr std::array<xmem::fd_kind, 3> kinds = {
		xmem::fd_kind::kvm_vm, xmem::fd_kind::kvm_vcpu, xmem::fd_kind::guest_memfd};
	xmem::bundle_requirements req;
	req.type = bundle_type + 2;
	req.kinds = kinds;
	xmem::fd_bundle b = xmem::receive_bundle(ch, req, ec);
	if (ec)
		die("receive_bundle: " + errname(ec), EPROTO);
	int fails = 0;
	int r = xioctl(b.fds[0].fd.get(), KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
	say("probe child: old VM fd, KVM_CHECK_EXTENSION: %s", r < 0 ? std::strerror(errno) : "ok");
	fails += !(r < 0 && errno == EIO);
	struct kvm_regs regs;
	r = xioctl(b.fds[1].fd.get(), KVM_GET_REGS, &regs);
	say("probe child: old vCPU fd, KVM_GET_REGS: %s", r < 0 ? std::strerror(errno) : "ok");
	fails += !(r < 0 && errno == EIO);

	/* The old VM's guest_memfd in a VM of this process. */
	xmem::unique_fd kvm = open_kvm();
	xmem::unique_fd vmfd = create_vm(kvm.get());
	void *alias = ::mmap(nullptr, private_size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct kvm_userspace_memory_region2 priv = {};
	priv.slot = 1;
	priv.flags = KVM_MEM_GUEST_MEMFD;
	priv.guest_phys_addr = private_gpa;
	priv.memory_size = private_size;
	priv.userspace_addr = reinterpret_cast<std::uint64_t>(alias);
	priv.guest_memfd = static_cast<__u32>(b.fds[2].fd.get());
	r = xioctl(vmfd.get(), KVM_SET_USER_MEMORY_REGION2, &priv);
	say("probe child: old guest_memfd bound to a new VM (KVM_SET_USER_MEMORY_REGION2): %s",
	    r < 0 ? std::strerror(errno) : "ok");
	fails += !(r < 0 && errno == EINVAL);
	/* Control: a guest_memfd of the new VM binds. */
	std::uint64_t flags;
	xmem::unique_fd own = create_gmem(vmfd.get(), flags);
	priv.guest_memfd = static_cast<__u32>(own.get());
	r = xioctl(vmfd.get(), KVM_SET_USER_MEMORY_REGION2, &priv);
	say("probe child: control, its own guest_memfd: %s", r < 0 ? std::strerror(errno) : "ok");
	fails += r < 0;
	::munmap(alias, private_size);
	say("probe child: %s", fails ? "FAIL" : "PASS (EIO, EIO, EINVAL; control ok)");
	return fails ? 1 : 0;
}

int probe()
{
	vm v;
	v.kvm = open_kvm();
	v.vm = create_vm(v.kvm.get());
	v.gmem = create_gmem(v.vm.get(), v.gmem_flags);
	xmem::create_options o;
	o.require = xmem::backend::ordinary;
	v.shared = xmem::memory::create("xmem-vmm-probe", shared_size, o);
	setup_vm(v);
	/* Control: the creator's own ioctls work. */
	struct kvm_regs regs;
	if (xioctl(v.vcpu.get(), KVM_GET_REGS, &regs) < 0 ||
	    xioctl(v.vm.get(), KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) < 0)
		die("control: the creator's KVM_GET_REGS / KVM_CHECK_EXTENSION");
	say("probe: creator's KVM_GET_REGS and KVM_CHECK_EXTENSION work (control)");
	auto [mine, theirs] = xmem::channel::pair();
	const pid_t pid = ::fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (move_to_fd3(theirs.fd().get()) < 0)
			_exit(127);
		const char *argv[] = {"/proc/self/exe", "probe-child", "3", nullptr};
		::execv("/proc/self/exe", const_cast<char **>(argv));
		_exit(127);
	}
	theirs = xmem::channel();
	static constexpr std::array<xmem::fd_kind, 3> kinds = {
		xmem::fd_kind::kvm_vm, xmem::fd_kind::kvm_vcpu, xmem::fd_kind::guest_memfd};
	const std::array<xmem::borrowed_fd, 3> fds = {v.vm, v.vcpu, v.gmem};
	std::error_code ec;
	xmem::send_bundle(mine, bundle_type + 2, kinds, fds, {}, ec);
	if (ec)
		die("send_bundle: " + errname(ec), EPROTO);
	int status = 0;
	::waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* ---- refuse: bundles the successor must refuse ---- */

/*
 * Sends the kinds and fds given, bypassing send_bundle's own check (a
 * sender that lies), then lets a successor-like receiver take it.
 */
void raw_send(const xmem::channel &ch, std::uint32_t type,
	      std::span<const std::uint32_t> kinds, std::span<const int> fds)
{
	std::vector<unsigned char> p(24 + 4 * kinds.size());
	/* fd_count as the kinds announce it: a missing fd is a lie about the count. */
	const std::uint32_t magic = 0x58464442, count = static_cast<std::uint32_t>(kinds.size());
	const std::uint16_t version = 1;
	std::memcpy(&p[0], &magic, 4);
	std::memcpy(&p[4], &version, 2);
	std::memcpy(&p[8], &type, 4);
	std::memcpy(&p[12], &count, 4);
	for (std::size_t i = 0; i < kinds.size(); i++)
		std::memcpy(&p[24 + 4 * i], &kinds[i], 4);
	struct iovec iov = {p.data(), p.size()};
	alignas(struct cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * 8)] = {};
	struct msghdr msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (!fds.empty()) {
		msg.msg_control = control;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
		std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
	}
	if (::sendmsg(ch.fd().get(), &msg, MSG_NOSIGNAL) < 0)
		die("sendmsg");
}

int refuse()
{
	int fails = 0;
	vm a, b;
	a.kvm = open_kvm();
	a.vm = create_vm(a.kvm.get());
	a.gmem = create_gmem(a.vm.get(), a.gmem_flags);
	b.vm = create_vm(a.kvm.get());
	b.gmem = create_gmem(b.vm.get(), b.gmem_flags);
	xmem::unique_fd vcpu_b(xioctl(b.vm.get(), KVM_CREATE_VCPU, 0));
	xmem::create_options o;
	o.require = xmem::backend::ordinary;
	xmem::memory mem = xmem::memory::create("xmem-vmm-refuse", shared_size, o);
	const std::uint32_t VM = 2, VCPU = 3, GMEM = 4, MEM = 1;

	struct rcase {
		const char *what;
		std::vector<std::uint32_t> kinds;
		std::vector<int> fds;
		std::uint32_t type;
		std::error_code expect;
	};
	const std::vector<rcase> cases = {
		{"memory fd announced as guest_memfd", {VM, GMEM, MEM},
		 {a.vm.get(), mem.fd().get(), mem.fd().get()}, bundle_type, xmem::errc::wrong_file_type},
		{"guest_memfd announced as memory", {VM, GMEM, MEM},
		 {a.vm.get(), a.gmem.get(), a.gmem.get()}, bundle_type, xmem::errc::wrong_file_type},
		{"vCPU announced as VM", {VM, GMEM, MEM},
		 {vcpu_b.get(), a.gmem.get(), mem.fd().get()}, bundle_type, xmem::errc::wrong_file_type},
		{"VM announced as vCPU kind (kinds differ from the expected)", {VCPU, GMEM, MEM},
		 {a.vm.get(), a.gmem.get(), mem.fd().get()}, bundle_type, xmem::errc::wrong_file_type},
		{"one fd missing", {VM, GMEM, MEM}, {a.vm.get(), a.gmem.get()}, bundle_type,
		 xmem::errc::fd_count_mismatch},
		{"bundle of another type", {VM, GMEM, MEM},
		 {a.vm.get(), a.gmem.get(), mem.fd().get()}, bundle_type + 7, xmem::errc::bad_header},
		{"unknown kind", {VM, 99, MEM}, {a.vm.get(), a.gmem.get(), mem.fd().get()},
		 bundle_type, xmem::errc::wrong_file_type},
	};
	for (const rcase &c : cases) {
		auto [tx, rx] = xmem::channel::pair();
		const fd_counts before = count_resources();
		raw_send(tx, c.type, c.kinds, c.fds);
		xmem::bundle_requirements req;
		req.type = bundle_type;
		req.kinds = handover_kinds;
		req.max_data = sizeof(handover_state);
		std::error_code ec;
		xmem::fd_bundle got = xmem::receive_bundle(rx, req, ec);
		const fd_counts after = count_resources();
		const bool ok = ec == c.expect && got.fds.empty() && before.fds == after.fds &&
				before.maps == after.maps;
		say("refuse: %-58s -> %s; fds %zu -> %zu, mappings %zu -> %zu: %s", c.what,
		    ec ? ec.message().c_str() : "accepted", before.fds, after.fds, before.maps,
		    after.maps, ok ? "ok" : "FAIL");
		fails += !ok;
	}
	/* Control: the honest bundle is taken. */
	{
		auto [tx, rx] = xmem::channel::pair();
		const std::array<xmem::borrowed_fd, 3> fds = {a.vm, a.gmem, mem.fd()};
		handover_state st = {};
		std::error_code ec;
		xmem::send_bundle(tx, bundle_type, handover_kinds, fds, std::as_bytes(std::span(&st, 1)),
				  ec);
		xmem::bundle_requirements req;
		req.type = bundle_type;
		req.kinds = handover_kinds;
		req.max_data = sizeof(handover_state);
		if (!ec)
			(void)xmem::receive_bundle(rx, req, ec);
		say("refuse: control, an honest bundle -> %s", ec ? ec.message().c_str() : "accepted");
		fails += !!ec;
		/* send_bundle will not announce what the kernel denies. */
		const std::array<xmem::borrowed_fd, 3> lie = {a.vm, mem.fd(), mem.fd()};
		xmem::send_bundle(tx, bundle_type, handover_kinds, lie, {}, ec);
		say("refuse: send_bundle of a memory fd as guest_memfd -> %s",
		    ec ? ec.message().c_str() : "sent");
		fails += ec != xmem::errc::wrong_file_type;
	}
	/* The kernel's check: the link ioctl takes only a guest_memfd of the VM named. */
	{
		xmem::unique_fd c = create_vm(a.kvm.get());
		struct kvm_link_guest_memfd l = {};
		l.fd = static_cast<__u32>(b.gmem.get());
		l.vm_fd = static_cast<__u32>(a.vm.get());
		int r = xioctl(c.get(), KVM_LINK_GUEST_MEMFD, &l);
		if (r < 0 && errno == ENOTTY) {
			say("refuse: KVM_LINK_GUEST_MEMFD: ENOTTY, this kernel has none (link checks not run)");
			fails++;
		} else {
			const int e1 = r < 0 ? errno : 0;
			if (r >= 0)
				::close(r);
			say("refuse: link a guest_memfd of VM B, claimed to be VM A's -> %s: %s",
			    r < 0 ? std::strerror(e1) : "linked", e1 == EINVAL ? "ok" : "FAIL");
			fails += e1 != EINVAL;
			l.fd = static_cast<__u32>(mem.fd().get());
			r = xioctl(c.get(), KVM_LINK_GUEST_MEMFD, &l);
			const int e2 = r < 0 ? errno : 0;
			say("refuse: link a memfd -> %s: %s", r < 0 ? std::strerror(e2) : "linked",
			    e2 == EINVAL ? "ok" : "FAIL");
			fails += e2 != EINVAL;
			l.fd = static_cast<__u32>(a.gmem.get());
			l.flags = 1;
			r = xioctl(c.get(), KVM_LINK_GUEST_MEMFD, &l);
			const int e3 = r < 0 ? errno : 0;
			say("refuse: link with unknown flags -> %s: %s", r < 0 ? std::strerror(e3) : "linked",
			    e3 == EINVAL ? "ok" : "FAIL");
			fails += e3 != EINVAL;
			l.flags = 0;
			r = xioctl(c.get(), KVM_LINK_GUEST_MEMFD, &l);
			say("refuse: control, link VM A's guest_memfd -> %s",
			    r < 0 ? std::strerror(errno) : "linked");
			fails += r < 0;
			if (r >= 0)
				::close(r);
			/* A move: VM A is dead and its file retired. */
			r = xioctl(a.vm.get(), KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
			const int e4 = r < 0 ? errno : 0;
			say("refuse: VM A after the link, KVM_CHECK_EXTENSION -> %s: %s",
			    r < 0 ? std::strerror(e4) : "answered", e4 == EIO ? "ok" : "FAIL");
			fails += e4 != EIO;
			xmem::unique_fd d = create_vm(a.kvm.get());
			r = xioctl(d.get(), KVM_LINK_GUEST_MEMFD, &l);
			const int e5 = r < 0 ? errno : 0;
			if (r >= 0)
				::close(r);
			say("refuse: link VM A's guest_memfd a second time -> %s: %s",
			    r < 0 ? std::strerror(e5) : "linked", e5 == EIO ? "ok" : "FAIL");
			fails += e5 != EIO;
		}
	}
	say("refuse: %s", fails ? "FAIL" : "PASS");
	return fails ? 1 : 0;
}

} // namespace

int main(int argc, char **argv)
{
	const std::string cmd = argc > 1 ? argv[1] : "";
	try {
		if (cmd == "run")
			return run(argc > 2 && std::string(argv[2]) == "--fresh");
		if (cmd == "successor" && argc > 2)
			return successor(std::atoi(argv[2]), argc > 3 && std::string(argv[3]) == "--fresh");
		if (cmd == "probe")
			return probe();
		if (cmd == "probe-child" && argc > 2)
			return probe_child(std::atoi(argv[2]));
		if (cmd == "refuse")
			return refuse();
	} catch (const std::exception &e) {
		std::fprintf(stderr, "xmem-vmm[%d]: %s\n", getpid(), e.what());
		return 1;
	}
	std::fprintf(stderr, "usage: xmem-vmm run [--fresh] | probe | refuse\n");
	return 2;
}
