// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The xmem kernel series' KVM uapi (kernel/patches 0016, 0018 and 0021,
 * include/uapi/linux/kvm.h), for a <linux/kvm.h> that lacks it: GUEST_MEMFD_FLAG_NO_DIRECT_MAP
 * for KVM_CREATE_GUEST_MEMFD, KVM_LINK_GUEST_MEMFD and KVM_CAP_GUEST_MEMFD_FLAGS
 * (Documentation/virt/kvm/api.rst of the patched tree). Include after <linux/kvm.h>. Used by examples/vmm and tests/attack.
 */
#pragma once

#include <linux/kvm.h>

#ifndef KVM_LINK_GUEST_MEMFD
/* Makes a guest_memfd of this VM on the memory of @fd, a guest_memfd of the VM @vm_fd. */
struct kvm_link_guest_memfd {
	__u32 fd;		/* the other VM's guest_memfd */
	__u32 vm_fd;		/* the VM it belongs to */
	__u64 flags;		/* 0 */
	__u64 reserved[6];	/* 0 */
};
#define KVM_LINK_GUEST_MEMFD _IOWR(KVMIO, 0xd6, struct kvm_link_guest_memfd)
#endif
#ifndef KVM_CAP_GUEST_MEMFD_FLAGS
/* KVM_CHECK_EXTENSION on a VM: the flags KVM_CREATE_GUEST_MEMFD takes (upstream's number). */
#define KVM_CAP_GUEST_MEMFD_FLAGS 244
#endif
#ifndef GUEST_MEMFD_FLAG_NO_DIRECT_MAP
/* Folios from xmem's unmapped pool, out of the direct map while they belong to the file. */
#define GUEST_MEMFD_FLAG_NO_DIRECT_MAP (1ULL << 2)
#endif
