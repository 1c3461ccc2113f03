// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_CAP_GUEST_MEMFD_FLAGS: the flags KVM_CREATE_GUEST_MEMFD takes.
 *
 * For a default VM and a software-protected VM, the capability must name
 * exactly the flags that KVM_CREATE_GUEST_MEMFD accepts, both ways: every
 * flag it names (alone and all together) creates a file, every other bit of
 * the 64 is refused with EINVAL. On /dev/kvm it must name at least what each
 * VM names. And the answer must be the one this kernel should give: with
 * the unmapped pool (the default boot), a software-protected VM offers
 * GUEST_MEMFD_FLAG_NO_DIRECT_MAP and a default VM does not; with --no-pool
 * (memfd_exclusive.enable=0, no pool), no VM offers it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"

#define POOL_DIR	"/sys/kernel/mm/memfd_exclusive/"

/* Checks @vm's KVM_CAP_GUEST_MEMFD_FLAGS against KVM_CREATE_GUEST_MEMFD. */
static uint64_t check_vm(struct kvm_vm *vm, const char *name)
{
	uint64_t flags = vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_FLAGS);
	int accepted = 0, refused = 0;
	int fd;

	for (int bit = 0; bit < 64; bit++) {
		uint64_t f = 1ULL << bit;

		fd = __vm_create_guest_memfd(vm, PAGE_SIZE, f);
		if (flags & f) {
			TEST_ASSERT(fd >= 0,
				    "%s: the cap names flag %#llx, KVM_CREATE_GUEST_MEMFD refuses it: %s",
				    name, (unsigned long long)f, strerror(errno));
			close(fd);
			accepted++;
		} else {
			TEST_ASSERT(fd < 0 && errno == EINVAL,
				    "%s: flag %#llx not in the cap, KVM_CREATE_GUEST_MEMFD gave %d (%s)",
				    name, (unsigned long long)f, fd,
				    fd < 0 ? strerror(errno) : "a file");
			refused++;
		}
	}
	fd = __vm_create_guest_memfd(vm, PAGE_SIZE, flags);
	TEST_ASSERT(fd >= 0, "%s: all the cap's flags %#llx together: %s", name,
		    (unsigned long long)flags, strerror(errno));
	close(fd);
	pr_info("%s: KVM_CAP_GUEST_MEMFD_FLAGS %#llx: %d flags accepted, %d refused (EINVAL)\n",
		name, (unsigned long long)flags, accepted, refused);
	return flags;
}

int main(int argc, char *argv[])
{
	struct kvm_vm *plain, *prot;
	uint64_t any, f_plain, f_prot;
	bool no_pool = false;

	if (argc == 2 && !strcmp(argv[1], "--no-pool"))
		no_pool = true;
	else
		TEST_ASSERT(argc == 1, "usage: %s [--no-pool]", argv[0]);
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_ASSERT(!access(POOL_DIR "pool_blocks", F_OK) == !no_pool,
		    no_pool ? "--no-pool, but the unmapped pool is there (" POOL_DIR ")" :
			      "no unmapped pool (" POOL_DIR "): boot with it or pass --no-pool");

	any = kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS);
	plain = vm_create_barebones();
	prot = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	f_plain = check_vm(plain, "default VM");
	f_prot = check_vm(prot, "SW_PROTECTED VM");
	pr_info("/dev/kvm: KVM_CAP_GUEST_MEMFD_FLAGS %#llx\n", (unsigned long long)any);
	TEST_ASSERT(!(f_plain & ~any) && !(f_prot & ~any),
		    "/dev/kvm's flags %#llx miss some of a VM's (%#llx, %#llx)",
		    (unsigned long long)any, (unsigned long long)f_plain,
		    (unsigned long long)f_prot);

	TEST_ASSERT(!(f_plain & GUEST_MEMFD_FLAG_NO_DIRECT_MAP),
		    "a default VM (no private memory) offers NO_DIRECT_MAP");
	if (no_pool) {
		TEST_ASSERT(!(f_prot & GUEST_MEMFD_FLAG_NO_DIRECT_MAP) &&
			    !(any & GUEST_MEMFD_FLAG_NO_DIRECT_MAP),
			    "no pool, but NO_DIRECT_MAP offered (VM %#llx, /dev/kvm %#llx)",
			    (unsigned long long)f_prot, (unsigned long long)any);
	} else {
		TEST_ASSERT(f_prot & GUEST_MEMFD_FLAG_NO_DIRECT_MAP,
			    "the pool is there, but a SW_PROTECTED VM is not offered NO_DIRECT_MAP");
	}

	kvm_vm_free(plain);
	kvm_vm_free(prot);
	pr_info("PASS\n");
	return 0;
}
