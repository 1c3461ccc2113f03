/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal interface of unmapped memory (mm/memfd_exclusive_pool.c), for
 * mm/memfd_exclusive.c and the KUnit tests.
 */
#ifndef _MM_MEMFD_EXCLUSIVE_POOL_H
#define _MM_MEMFD_EXCLUSIVE_POOL_H

#include <linux/gfp_types.h>
#include <linux/sysfs.h>
#include <linux/types.h>
#include <linux/unmapped_alloc.h>

struct page;
struct shrink_control;
struct shrinker;

/* A zeroed order-0 folio out of the direct map; freed by folio_put(). */
static inline struct folio *mfdx_pool_alloc(gfp_t gfp)
{
	return alloc_unmapped_folio(gfp);
}

static inline void mfdx_pool_zero_segment(struct folio *folio, size_t start,
					  size_t end)
{
	unmapped_folio_zero_segment(folio, start, end);
}

/* Pages out of the direct map, in use or free. */
static inline unsigned long mfdx_pool_pages_out(void)
{
	return unmapped_pages_out();
}

/* Give back every free pageblock; returns the pages still out. */
static inline unsigned long mfdx_pool_release_free(void)
{
	return unmapped_release_free();
}

int mfdx_pool_init(void);

extern const struct attribute_group mfdx_pool_attr_group;

#if IS_ENABLED(CONFIG_KUNIT)
extern bool mfdx_pool_test_fail_grow;
extern bool mfdx_pool_test_hold_grow;
extern struct page *mfdx_pool_test_held_page;

bool mfdx_pool_owns_page(struct page *page);
void mfdx_pool_trim(void);
unsigned long mfdx_pool_shrink_count(struct shrinker *shrinker,
				     struct shrink_control *sc);
unsigned long mfdx_pool_shrink_scan(struct shrinker *shrinker,
				    struct shrink_control *sc);
unsigned long mfdx_pool_free_pages(void);
unsigned long mfdx_pool_nr_blocks(void);
unsigned long mfdx_pool_get_high_water(void);
void mfdx_pool_set_high_water(unsigned long bytes);
#endif

#endif /* _MM_MEMFD_EXCLUSIVE_POOL_H */
