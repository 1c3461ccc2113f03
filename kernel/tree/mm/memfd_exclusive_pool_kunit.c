// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests of the memfd_exclusive direct-map pool
 * (mm/memfd_exclusive_pool.c).
 *
 * The suite runs at boot, before userspace, so the pool has no other users;
 * each test sets the high-water mark it needs and puts the old one back.
 */

#include <kunit/test.h>
#include <linux/delay.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/memfd_exclusive.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/set_memory.h>
#include <linux/shrinker.h>
#include <linux/swap.h>
#include <linux/vmalloc.h>

#include "memfd_exclusive_pool.h"

MODULE_IMPORT_NS(EXPORTED_FOR_KUNIT_TESTING);

#define POOL_BLOCK_PAGES	BIT(PMD_ORDER)

struct pool_walk_result {
	unsigned long present;		/* pool pages found in the direct map */
	unsigned long state[3];		/* pages per enum mfdx_pool_page_state */
};

static void pool_walk_check(struct page *page, enum mfdx_pool_page_state state,
			    void *data)
{
	struct pool_walk_result *r = data;

	if (kernel_page_present(page))
		r->present++;
	r->state[state]++;
}

/* Walks the pool: no page it owns may be in the direct map. */
static void pool_expect_consistent(struct kunit *test,
				   struct pool_walk_result *r)
{
	unsigned long nr;

	memset(r, 0, sizeof(*r));
	nr = mfdx_pool_walk(pool_walk_check, r);
	KUNIT_EXPECT_EQ(test, nr, mfdx_pool_nr_blocks() * POOL_BLOCK_PAGES);
	KUNIT_EXPECT_EQ(test, r->present, 0UL);
	KUNIT_EXPECT_EQ(test, r->state[MFDX_POOL_FREE], mfdx_pool_free_pages());
}

/* Recycles every released page: drains LRU batches until none is busy. */
static void pool_recycle(struct kunit *test)
{
	int tries;

	for (tries = 0; tries < 10; tries++) {
		lru_add_drain_all();
		if (!mfdx_pool_recycle_all())
			return;
		msleep(20);
	}
	KUNIT_FAIL(test, "released pages still referenced");
}

/* Gives every wholly free block back, as memory pressure would. */
static unsigned long pool_shrink_all(void)
{
	struct shrink_control sc = { .gfp_mask = GFP_KERNEL };
	unsigned long freed = 0, n;
	int nid;

	for_each_node_state(nid, N_MEMORY) {
		sc.nid = nid;
		n = mfdx_pool_shrink_count(NULL, &sc);
		if (n == SHRINK_EMPTY || !n)
			continue;
		sc.nr_to_scan = n;
		n = mfdx_pool_shrink_scan(NULL, &sc);
		if (n != SHRINK_STOP)
			freed += n;
	}
	return freed;
}

static bool pool_range_present(struct page *first, unsigned long nr)
{
	unsigned long i;

	for (i = 0; i < nr; i++)
		if (!kernel_page_present(nth_page(first, i)))
			return false;
	return true;
}

static struct page *pool_block_of(struct page *page)
{
	return pfn_to_page(ALIGN_DOWN(page_to_pfn(page), POOL_BLOCK_PAGES));
}

static void pool_put(struct folio *folio)
{
	mfdx_pool_release(folio);
	folio_put(folio);
}

static int pool_test_init(struct kunit *test)
{
	unsigned long *hw = kunit_kzalloc(test, sizeof(*hw), GFP_KERNEL);

	if (!hw)
		return -ENOMEM;
	*hw = mfdx_pool_get_high_water();
	test->priv = hw;
	/* No background trimming during a test. */
	mfdx_pool_set_high_water(ULONG_MAX >> 1);
	return 0;
}

static void pool_test_exit(struct kunit *test)
{
	mfdx_pool_test_force_fallback = false;
	mfdx_pool_test_fail_refill = false;
	mfdx_pool_set_high_water(*(unsigned long *)test->priv);
}

/* Pages from the pool are absent from the direct map; the 2 MiB entry stays. */
static void pool_test_unmapped(struct kunit *test)
{
	struct pool_walk_result r;
	struct folio *folio[8];
	int i;

	for (i = 0; i < ARRAY_SIZE(folio); i++) {
		folio[i] = mfdx_pool_alloc(GFP_KERNEL);
		KUNIT_ASSERT_FALSE(test, IS_ERR(folio[i]));
		KUNIT_EXPECT_TRUE(test, mfdx_pool_owns_page(&folio[i]->page));
		KUNIT_EXPECT_FALSE(test, kernel_page_present(&folio[i]->page));
		KUNIT_EXPECT_EQ(test, folio_ref_count(folio[i]), 1);
		KUNIT_EXPECT_FALSE(test, folio_test_large(folio[i]));
	}
	pool_expect_consistent(test, &r);
	KUNIT_EXPECT_GE(test, r.state[MFDX_POOL_IN_USE], ARRAY_SIZE(folio));

#ifdef CONFIG_X86
	if (!debug_pagealloc_enabled()) {
		unsigned int level;

		/* Changed in place, not split into 4 KiB PTEs. */
		unsigned long addr = (unsigned long)folio_address(folio[0]);

		KUNIT_EXPECT_NOT_NULL(test, lookup_address(addr, &level));
		KUNIT_EXPECT_EQ(test, level, (unsigned int)PG_LEVEL_2M);
	}
#endif
	for (i = 0; i < ARRAY_SIZE(folio); i++)
		pool_put(folio[i]);
	pool_recycle(test);
	pool_expect_consistent(test, &r);
	KUNIT_EXPECT_EQ(test, r.state[MFDX_POOL_IN_USE], 0UL);
}

/* Writes @val over a page that is not in the direct map, reads it back. */
static unsigned long pool_poke(struct folio *folio, int val)
{
	struct page *page = &folio->page;
	unsigned long *p, word;

	p = vmap(&page, 1, VM_MAP, PAGE_KERNEL);
	if (!p)
		return ~0UL;
	if (val >= 0)
		memset(p, val, PAGE_SIZE);
	word = p[PAGE_SIZE / sizeof(*p) - 1] | p[0];
	vunmap(p);
	return word;
}

/* A freed page is zeroed before it is handed out again. */
static void pool_test_zeroed(struct kunit *test)
{
	struct folio *folio, *again;

	pool_shrink_all();
	KUNIT_ASSERT_EQ(test, mfdx_pool_nr_blocks(), 0UL);

	/* One block: the lowest free page is handed out first. */
	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	KUNIT_EXPECT_EQ(test, pool_poke(folio, -1), 0UL);
	KUNIT_EXPECT_NE(test, pool_poke(folio, 0xa5), 0UL);
	pool_put(folio);
	pool_recycle(test);

	again = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(again));
	KUNIT_EXPECT_PTR_EQ(test, again, folio);
	KUNIT_EXPECT_FALSE(test, kernel_page_present(&again->page));
	KUNIT_EXPECT_EQ(test, pool_poke(again, -1), 0UL);
	pool_put(again);
	pool_recycle(test);
}

/* Wholly free blocks go back to the direct map and the page allocator. */
static void pool_test_shrinker(struct kunit *test)
{
	struct folio *folio;
	struct page *block;
	unsigned long blocks;
	struct pool_walk_result r;

	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	block = pool_block_of(&folio->page);
	KUNIT_ASSERT_TRUE(test, mfdx_pool_owns_page(block));
	KUNIT_EXPECT_FALSE(test, pool_range_present(block, 1));

	/* In use: the shrinker may not take the block. */
	pool_shrink_all();
	KUNIT_EXPECT_TRUE(test, mfdx_pool_owns_page(block));
	KUNIT_EXPECT_FALSE(test, kernel_page_present(&folio->page));

	pool_put(folio);
	pool_recycle(test);
	blocks = mfdx_pool_nr_blocks();
	KUNIT_ASSERT_GE(test, blocks, 1UL);
	KUNIT_EXPECT_GE(test, pool_shrink_all(), POOL_BLOCK_PAGES);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 0UL);
	KUNIT_EXPECT_EQ(test, mfdx_pool_free_pages(), 0UL);
	KUNIT_EXPECT_FALSE(test, mfdx_pool_owns_page(block));
	/* DEBUG_PAGEALLOC unmaps free pages of the page allocator itself. */
	if (!debug_pagealloc_enabled())
		KUNIT_EXPECT_TRUE(test, pool_range_present(block,
							   POOL_BLOCK_PAGES));
	pool_expect_consistent(test, &r);
}

/* Above the high-water mark, wholly free blocks go back on their own. */
static void pool_test_high_water(struct kunit *test)
{
	struct folio *folio;
	struct page *block;
	int i;

	pool_shrink_all();
	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	block = pool_block_of(&folio->page);
	pool_put(folio);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 1UL);
	/* The work item recycles the page, then trims to the mark. */
	mfdx_pool_set_high_water(0);
	for (i = 0; i < 100 && mfdx_pool_nr_blocks(); i++)
		msleep(20);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 0UL);
	KUNIT_EXPECT_FALSE(test, mfdx_pool_owns_page(block));
}

/* No 2 MiB block to be had: a single page, counted, restored on release. */
static void pool_test_fallback(struct kunit *test)
{
	unsigned long before = mfdx_pool_fallback_pages();
	struct pool_walk_result r;
	struct folio *folio;
	struct page *page;

	pool_shrink_all();
	mfdx_pool_test_force_fallback = true;
	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	page = &folio->page;
	KUNIT_EXPECT_FALSE(test, mfdx_pool_owns_page(page));
	KUNIT_EXPECT_FALSE(test, kernel_page_present(page));
	KUNIT_EXPECT_EQ(test, mfdx_pool_fallback_pages(), before + 1);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 0UL);

	folio_get(folio);
	pool_put(folio);
	KUNIT_EXPECT_TRUE(test, kernel_page_present(page));
	KUNIT_EXPECT_EQ(test, *(unsigned long *)folio_address(folio), 0UL);
	folio_put(folio);
	pool_expect_consistent(test, &r);
}

/* A failed refill leaves the direct map whole and falls back. */
static void pool_test_refill_failure(struct kunit *test)
{
	unsigned long before = mfdx_pool_fallback_pages();
	unsigned long allocs;
	struct pool_walk_result r;
	struct folio *folio;

	pool_shrink_all();
	KUNIT_ASSERT_EQ(test, mfdx_pool_nr_blocks(), 0UL);
	mfdx_pool_test_fail_refill = true;
	folio = mfdx_pool_alloc(GFP_KERNEL);
	mfdx_pool_test_fail_refill = false;
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	KUNIT_EXPECT_FALSE(test, mfdx_pool_owns_page(&folio->page));
	KUNIT_EXPECT_EQ(test, mfdx_pool_fallback_pages(), before + 1);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 0UL);
	pool_expect_consistent(test, &r);

	/* The next refill works, and the block is whole-block unmapped. */
	allocs = mfdx_pool_nr_blocks();
	pool_put(folio);
	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	KUNIT_EXPECT_TRUE(test, mfdx_pool_owns_page(&folio->page));
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), allocs + 1);
	pool_expect_consistent(test, &r);
	pool_put(folio);
	pool_recycle(test);
}

/*
 * Through the file: fault 16 pages into a half-used block, truncate half of
 * them away, walk; close the file, walk again.
 */
static void pool_test_truncate_walk(struct kunit *test)
{
	struct pool_walk_result r;
	struct folio *folio;
	struct file *file;
	unsigned long used;
	int i;

	file = memfd_exclusive_file_create("memfd_exclusive:pool", 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(file));
	if (vfs_truncate(&file->f_path, 16 * PAGE_SIZE)) {
		__fput_sync(file);
		KUNIT_FAIL(test, "ftruncate failed");
		return;
	}
	for (i = 0; i < 16; i++) {
		folio = memfd_exclusive_get_folio(file, i);
		if (IS_ERR(folio)) {
			KUNIT_FAIL(test, "fault %d: %ld", i, PTR_ERR(folio));
			break;
		}
		KUNIT_EXPECT_FALSE(test, kernel_page_present(&folio->page));
		folio_put(folio);
	}
	pool_expect_consistent(test, &r);
	used = r.state[MFDX_POOL_IN_USE];
	KUNIT_EXPECT_GE(test, used, 16UL);

	KUNIT_EXPECT_EQ(test, vfs_truncate(&file->f_path, 8 * PAGE_SIZE), 0);
	pool_recycle(test);
	pool_expect_consistent(test, &r);
	KUNIT_EXPECT_EQ(test, r.state[MFDX_POOL_IN_USE], used - 8);
	KUNIT_EXPECT_EQ(test, r.state[MFDX_POOL_RETURNING], 0UL);

	__fput_sync(file);
	pool_recycle(test);
	pool_expect_consistent(test, &r);
	KUNIT_EXPECT_EQ(test, r.state[MFDX_POOL_IN_USE], used - 16);
}

static struct kunit_case memfd_exclusive_pool_cases[] = {
	KUNIT_CASE(pool_test_unmapped),
	KUNIT_CASE(pool_test_zeroed),
	KUNIT_CASE(pool_test_shrinker),
	KUNIT_CASE(pool_test_high_water),
	KUNIT_CASE(pool_test_fallback),
	KUNIT_CASE(pool_test_refill_failure),
	KUNIT_CASE(pool_test_truncate_walk),
	{}
};

static struct kunit_suite memfd_exclusive_pool_suite = {
	.name = "memfd_exclusive_pool",
	.init = pool_test_init,
	.exit = pool_test_exit,
	.test_cases = memfd_exclusive_pool_cases,
};

kunit_test_suite(memfd_exclusive_pool_suite);

MODULE_DESCRIPTION("KUnit tests of the memfd_exclusive direct-map pool");
MODULE_LICENSE("GPL");
