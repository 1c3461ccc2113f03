/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_MEMFD_EXCLUSIVE_H
#define _LINUX_MEMFD_EXCLUSIVE_H

#include <linux/linkage.h>
#include <linux/types.h>
#include <uapi/linux/memfd_exclusive.h>

struct file;
struct folio;

#ifdef CONFIG_MEMFD_EXCLUSIVE

/*
 * kernel/sys_ni.c, which <linux/syscalls.h> declares only on architectures
 * without syscall wrappers: a disabled memfd_exclusive() returns what an
 * unknown system call returns.
 */
asmlinkage long sys_ni_syscall(void);

bool memfd_exclusive_active(void);
unsigned int *memfd_exclusive_file_seals_ptr(struct file *file);

#if IS_ENABLED(CONFIG_KUNIT)
/* Internal entry points, visible only for the KUnit suite. */
bool memfd_exclusive_available(void);
struct file *memfd_exclusive_file_create(const char *name, unsigned int flags);
struct folio *memfd_exclusive_get_folio(struct file *file, pgoff_t index);
unsigned long memfd_exclusive_pages_in_use(void);
unsigned long memfd_exclusive_nr_regions(void);
#endif

#else /* !CONFIG_MEMFD_EXCLUSIVE */

static inline bool memfd_exclusive_active(void)
{
	return false;
}

static inline unsigned int *memfd_exclusive_file_seals_ptr(struct file *file)
{
	return NULL;
}

#endif /* CONFIG_MEMFD_EXCLUSIVE */

#endif /* _LINUX_MEMFD_EXCLUSIVE_H */
