/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * memfd_exclusive(2): file descriptors for memory that is removed from the
 * kernel's direct map while it is allocated.
 *
 * This is the only copy of this header: the kernel build overlays it into
 * include/uapi/linux/, and libxmem includes it from here.
 */
#ifndef _UAPI_LINUX_MEMFD_EXCLUSIVE_H
#define _UAPI_LINUX_MEMFD_EXCLUSIVE_H

/*
 * System call number, provisional: 600 is above every architecture's table
 * in Linux 6.12 (alpha ends at 572, x86-64 with its x32 entries at 547; 500,
 * used before, is alpha's syncfs). A final number is for the maintainers to
 * assign at merge. Wired on x86-64 only. Userspace must not issue it unless
 * MEMFD_EXCLUSIVE_SYSFS_DIR exists, so that an unpatched kernel never sees it.
 */
#ifndef __NR_memfd_exclusive
#define __NR_memfd_exclusive 600
#endif

/* Flags for memfd_exclusive(2); unknown bits fail with EINVAL. */
#define MFD_EXCLUSIVE_CLOEXEC		0x0001U	/* close-on-exec on the new fd */
#define MFD_EXCLUSIVE_ALLOW_SEALING	0x0002U	/* F_ADD_SEALS allowed (as MFD_ALLOW_SEALING) */
#define MFD_EXCLUSIVE_ALL_FLAGS \
	(MFD_EXCLUSIVE_CLOEXEC | MFD_EXCLUSIVE_ALLOW_SEALING)

/* Name prefix shown in /proc/PID/maps and fd links: "/memfd_exclusive:NAME". */
#define MFD_EXCLUSIVE_NAME_PREFIX	"memfd_exclusive:"
/* Longest NAME in bytes, excluding the NUL: NAME_MAX minus the prefix. */
#define MFD_EXCLUSIVE_NAME_MAX_LEN	(255 - 16)

/* f_type reported by fstatfs(2) on a memfd_exclusive fd ("XMEM"). */
#define MEMFD_EXCLUSIVE_MAGIC		0x584d454dU

/*
 * Present only on kernels built with CONFIG_MEMFD_EXCLUSIVE and not disabled
 * at boot; holds the statistics files. Its presence is the marker userspace
 * checks before issuing __NR_memfd_exclusive.
 */
#define MEMFD_EXCLUSIVE_SYSFS_DIR	"/sys/kernel/mm/memfd_exclusive"

/*
 * Statistics files in MEMFD_EXCLUSIVE_SYSFS_DIR, each one decimal number
 * and a newline: pages of all files currently out of the direct map, and
 * files (regions) that currently exist.
 */
#define MEMFD_EXCLUSIVE_SYSFS_PAGES_IN_USE	"pages_in_use"
#define MEMFD_EXCLUSIVE_SYSFS_REGIONS		"regions"

#endif /* _UAPI_LINUX_MEMFD_EXCLUSIVE_H */
