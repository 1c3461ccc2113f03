// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_LINK_GUEST_MEMFD: a VM takes a guest_memfd of another VM of its type
 * and gets a new guest_memfd file of its own on the same inode.
 *
 * Checks that the new file shares the inode and size, binds in the new VM
 * (where the original is refused), outlives the original file and its VM,
 * and that every bad argument gets its errno: another VM's guest_memfd
 * claimed as this one's, a file that is not a guest_memfd, a vm_fd that is
 * not a VM, unknown flags or reserved bits, closed fds, a VM of another type.
 * KVM_CAP_GUEST_MEMFD_LINK must say which VMs can link. That the guest's
 * data survives the link is shown by examples/vmm in the xmem tree (a guest
 * resumed in a successor's VM finds its secret).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/kvm.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"

#define SIZE		(2UL << 20)
#define SLOT		10
#define GPA		0xc0000000ULL

static int link_gmem(struct kvm_vm *vm, int fd, int vm_fd, uint64_t flags,
		     uint64_t reserved0)
{
	struct kvm_link_guest_memfd l = {
		.fd = fd,
		.vm_fd = vm_fd,
		.flags = flags,
	};

	l.reserved[0] = reserved0;
	return __vm_ioctl(vm, KVM_LINK_GUEST_MEMFD, &l);
}

static void expect_errno(int r, int err, const char *what)
{
	TEST_ASSERT(r == -1 && errno == err,
		    "%s: expected %s, got %d (errno %d: %s)", what,
		    strerror(err), r, errno, strerror(errno));
	pr_info("%s: %s\n", what, strerror(err));
}

static int bind_gmem(struct kvm_vm *vm, int gmem)
{
	static void *alias;

	if (!alias) {
		alias = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		TEST_ASSERT(alias != MAP_FAILED, "mmap alias");
	}
	return __vm_set_user_memory_region2(vm, SLOT, KVM_MEM_GUEST_MEMFD, GPA,
					    SIZE, alias, gmem, 0);
}

int main(int argc, char *argv[])
{
	struct kvm_vm *a, *b, *c, *plain;
	int ga, gb, linked, memfd, r;
	struct stat sa, sl;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));

	a = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	b = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	c = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	plain = vm_create_barebones();

	TEST_ASSERT(vm_check_cap(c, KVM_CAP_GUEST_MEMFD_LINK) == 1,
		    "KVM_CAP_GUEST_MEMFD_LINK not offered on a SW_PROTECTED VM");
	TEST_ASSERT(vm_check_cap(plain, KVM_CAP_GUEST_MEMFD_LINK) == 0,
		    "KVM_CAP_GUEST_MEMFD_LINK offered on a VM without private memory");

	ga = vm_create_guest_memfd(a, SIZE, 0);
	gb = vm_create_guest_memfd(b, SIZE, 0);
	memfd = memfd_create("not-gmem", MFD_CLOEXEC);
	TEST_ASSERT(memfd >= 0, "memfd_create");
	TEST_ASSERT(!ftruncate(memfd, SIZE), "ftruncate");

	/* Refusals. */
	expect_errno(link_gmem(c, gb, a->fd, 0, 0), EINVAL,
		     "B's guest_memfd claimed as A's");
	expect_errno(link_gmem(c, memfd, a->fd, 0, 0), EINVAL,
		     "a memfd as guest_memfd");
	expect_errno(link_gmem(c, ga, memfd, 0, 0), EINVAL, "a memfd as VM");
	expect_errno(link_gmem(c, ga, ga, 0, 0), EINVAL, "a guest_memfd as VM");
	expect_errno(link_gmem(c, ga, a->fd, 1, 0), EINVAL, "flags 1");
	expect_errno(link_gmem(c, ga, a->fd, 0, 1), EINVAL, "reserved[0] 1");
	expect_errno(link_gmem(c, 1000, a->fd, 0, 0), EBADF, "closed fd");
	expect_errno(link_gmem(c, ga, 1000, 0, 0), EBADF, "closed vm_fd");
	expect_errno(link_gmem(plain, ga, a->fd, 0, 0), EINVAL,
		     "a VM of another type");

	/* The original is another VM's: c cannot bind it. */
	r = bind_gmem(c, ga);
	expect_errno(r, EINVAL, "binding A's guest_memfd in C");

	linked = link_gmem(c, ga, a->fd, 0, 0);
	TEST_ASSERT(linked >= 0, "KVM_LINK_GUEST_MEMFD: errno %d", errno);
	TEST_ASSERT(!fstat(ga, &sa) && !fstat(linked, &sl), "fstat");
	TEST_ASSERT(sa.st_ino == sl.st_ino && sa.st_dev == sl.st_dev,
		    "linked file on another inode");
	TEST_ASSERT(sl.st_size == SIZE, "linked size %ld", (long)sl.st_size);
	pr_info("linked: fd %d on inode %lu, %ld bytes\n", linked,
		(unsigned long)sl.st_ino, (long)sl.st_size);

	/* The original file and its VM go; the link lives on and binds. */
	close(ga);
	kvm_vm_free(a);
	TEST_ASSERT(!fstat(linked, &sl) && sl.st_ino == sa.st_ino,
		    "linked file lost its inode");
	TEST_ASSERT(!fallocate(linked, FALLOC_FL_KEEP_SIZE, 0, SIZE),
		    "fallocate on the linked file: errno %d", errno);
	r = bind_gmem(c, linked);
	TEST_ASSERT(!r, "binding the linked guest_memfd in C: errno %d", errno);
	pr_info("the link outlives A and binds in C\n");

	/* A link of a link. */
	r = link_gmem(b, linked, c->fd, 0, 0);
	TEST_ASSERT(r >= 0, "linking C's linked file into B: errno %d", errno);
	close(r);

	close(linked);
	close(gb);
	close(memfd);
	kvm_vm_free(b);
	kvm_vm_free(c);
	kvm_vm_free(plain);
	pr_info("PASS\n");
	return 0;
}
