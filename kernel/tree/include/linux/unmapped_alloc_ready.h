/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Whether unmapped memory (<linux/unmapped_alloc.h>) can be allocated: for
 * users outside mm that offer it as an option (guest_memfd's
 * GUEST_MEMFD_FLAG_NO_DIRECT_MAP) and must refuse the option when the
 * kernel has no unmapped pool, or booted without one.
 */
#ifndef _LINUX_UNMAPPED_ALLOC_READY_H
#define _LINUX_UNMAPPED_ALLOC_READY_H

#include <linux/types.h>

#ifdef CONFIG_UNMAPPED_ALLOC
bool unmapped_alloc_ready(void);
#else
static inline bool unmapped_alloc_ready(void)
{
	return false;
}
#endif

#endif /* _LINUX_UNMAPPED_ALLOC_READY_H */
