/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Memory that is not in the kernel's direct map: MIGRATE_UNMAPPED pageblocks
 * of the page allocator (mm/page_alloc.c), grown and given back a pageblock
 * at a time by mm/memfd_exclusive_pool.c. For memfd_exclusive(2); meant for
 * any user that must keep the kernel from reading memory through its own
 * mappings (secretmem, guest_memfd).
 */
#ifndef _LINUX_UNMAPPED_ALLOC_H
#define _LINUX_UNMAPPED_ALLOC_H

#include <linux/err.h>
#include <linux/gfp_types.h>
#include <linux/types.h>

struct folio;

#ifdef CONFIG_UNMAPPED_ALLOC
struct folio *alloc_unmapped_folio(gfp_t gfp);
void unmapped_folio_zero_segment(struct folio *folio, size_t start,
				 size_t end);
unsigned long unmapped_pages_out(void);
unsigned long unmapped_release_free(void);
bool pfn_range_has_unmapped(unsigned long pfn, unsigned long nr_pages);
#else
static inline struct folio *alloc_unmapped_folio(gfp_t gfp)
{
	return ERR_PTR(-ENOMEM);
}

static inline void unmapped_folio_zero_segment(struct folio *folio,
					       size_t start, size_t end)
{
}

static inline unsigned long unmapped_pages_out(void)
{
	return 0;
}

static inline unsigned long unmapped_release_free(void)
{
	return 0;
}

static inline bool pfn_range_has_unmapped(unsigned long pfn,
					  unsigned long nr_pages)
{
	return false;
}
#endif

#endif /* _LINUX_UNMAPPED_ALLOC_H */
