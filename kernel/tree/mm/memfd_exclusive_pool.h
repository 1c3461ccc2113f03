/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal interface of the memfd_exclusive direct-map pool
 * (mm/memfd_exclusive_pool.c), for mm/memfd_exclusive.c and its KUnit tests.
 */
#ifndef _MM_MEMFD_EXCLUSIVE_POOL_H
#define _MM_MEMFD_EXCLUSIVE_POOL_H

#include <linux/gfp_types.h>
#include <linux/sysfs.h>
#include <linux/types.h>

struct folio;
struct page;
struct shrink_control;
struct shrinker;

struct folio *mfdx_pool_alloc(gfp_t gfp);
void mfdx_pool_release(struct folio *folio);
void mfdx_pool_zero_segment(struct folio *folio, size_t start, size_t end);
int mfdx_pool_init(void);

extern const struct attribute_group mfdx_pool_attr_group;

#if IS_ENABLED(CONFIG_KUNIT)
/* State of a page as the pool sees it, for mfdx_pool_walk(). */
enum mfdx_pool_page_state {
	MFDX_POOL_FREE,		/* zeroed, on the pool's free bitmap */
	MFDX_POOL_IN_USE,	/* handed out by mfdx_pool_alloc() */
	MFDX_POOL_RETURNING,	/* released, waiting to be recycled */
};

typedef void (*mfdx_pool_walk_fn)(struct page *page,
				  enum mfdx_pool_page_state state, void *data);

extern bool mfdx_pool_test_force_fallback;
extern bool mfdx_pool_test_fail_refill;

bool mfdx_pool_owns_page(struct page *page);
unsigned long mfdx_pool_walk(mfdx_pool_walk_fn fn, void *data);
unsigned long mfdx_pool_recycle_all(void);
unsigned long mfdx_pool_shrink_count(struct shrinker *shrinker,
				     struct shrink_control *sc);
unsigned long mfdx_pool_shrink_scan(struct shrinker *shrinker,
				    struct shrink_control *sc);
unsigned long mfdx_pool_free_pages(void);
unsigned long mfdx_pool_nr_blocks(void);
unsigned long mfdx_pool_fallback_pages(void);
unsigned long mfdx_pool_get_high_water(void);
void mfdx_pool_set_high_water(unsigned long bytes);
#endif

#endif /* _MM_MEMFD_EXCLUSIVE_POOL_H */
