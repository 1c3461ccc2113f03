// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests of unmapped memory, the MIGRATE_UNMAPPED free lists of the
 * page allocator that memfd_exclusive takes its pages from
 * (mm/memfd_exclusive_pool.c, mm/page_alloc.c).
 *
 * The suite runs at boot, before userspace, so nothing else allocates
 * unmapped pages meanwhile; each test sets the high-water mark it needs and
 * puts the old one back.
 */

#include <kunit/test.h>
#include <linux/delay.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/memfd_exclusive.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/pagemap.h>
#include <linux/set_memory.h>
#include <linux/shrinker.h>
#include <linux/swap.h>
#include <linux/vmalloc.h>

#include "internal.h"
#include "memfd_exclusive_pool.h"

MODULE_IMPORT_NS(EXPORTED_FOR_KUNIT_TESTING);

/* Counted over the unmapped free lists of every zone, under the zone lock. */
struct pool_lists {
	unsigned long free;	/* pages on the lists */
	unsigned long counted;	/* sum of zone->nr_free_unmapped */
	unsigned long present;	/* free pages found in the direct map */
	unsigned long wrong_type; /* free pages not in an unmapped pageblock */
};

static void pool_walk_lists(struct pool_lists *r)
{
	unsigned long flags, i;
	unsigned int order;
	struct zone *zone;
	struct page *page;

	memset(r, 0, sizeof(*r));
	for_each_populated_zone(zone) {
		spin_lock_irqsave(&zone->lock, flags);
		r->counted += zone->nr_free_unmapped;
		for (order = 0; order < NR_PAGE_ORDERS; order++) {
			list_for_each_entry(page,
					    &zone->free_area[order].free_list[MIGRATE_UNMAPPED],
					    buddy_list) {
				r->free += 1UL << order;
				for (i = 0; i < (1UL << order); i++) {
					struct page *p = nth_page(page, i);

					if (kernel_page_present(p))
						r->present++;
					if (!mfdx_pool_owns_page(p))
						r->wrong_type++;
				}
			}
		}
		spin_unlock_irqrestore(&zone->lock, flags);
	}
}

/* The lists, their counters and the direct map agree. */
static void pool_expect_consistent(struct kunit *test)
{
	struct pool_lists r;

	pool_walk_lists(&r);
	KUNIT_EXPECT_EQ(test, r.free, r.counted);
	KUNIT_EXPECT_EQ(test, r.free, mfdx_pool_free_pages());
	KUNIT_EXPECT_EQ(test, r.present, 0UL);
	KUNIT_EXPECT_EQ(test, r.wrong_type, 0UL);
	KUNIT_EXPECT_LE(test, r.free, mfdx_pool_nr_blocks() * pageblock_nr_pages);
	KUNIT_EXPECT_EQ(test, mfdx_pool_pages_out(),
			mfdx_pool_nr_blocks() * pageblock_nr_pages);
}

/* Pages of unmapped pageblocks that are not free: in use by someone. */
static unsigned long pool_in_use(void)
{
	return mfdx_pool_nr_blocks() * pageblock_nr_pages -
	       mfdx_pool_free_pages();
}

/* Gives every free unmapped pageblock back, as memory pressure would. */
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
	return pfn_to_page(ALIGN_DOWN(page_to_pfn(page), pageblock_nr_pages));
}

/*
 * Writes @val over a page that is not in the direct map (val >= 0), then
 * returns the OR of all its words.
 */
static unsigned long pool_poke(struct page *page, int val)
{
	unsigned long *p, word = 0;
	unsigned int i;

	p = vmap(&page, 1, VM_MAP, PAGE_KERNEL);
	if (!p)
		return ~0UL;
	if (val >= 0)
		memset(p, val, PAGE_SIZE);
	for (i = 0; i < PAGE_SIZE / sizeof(*p); i++)
		word |= p[i];
	vunmap(p);
	return word;
}

static int pool_test_init(struct kunit *test)
{
	unsigned long *hw;

	/*
	 * Booted with memfd_exclusive.enable=0 (or a direct map that cannot
	 * be split): the pool was never set up, and every allocation from it
	 * would warn and fail. Skipped, not failed: nothing is broken.
	 */
	if (!memfd_exclusive_available())
		kunit_skip(test, "no unmapped pool: memfd_exclusive is disabled");

	/*
	 * The files of the suite before (memfd_exclusive's) are released by
	 * this kernel thread: their last fput() runs later from a work item,
	 * and their pages may wait in per-CPU LRU batches. A page of theirs
	 * still in use failed the counts below in 3 of 16 boots of the KVM
	 * kernel; wait for both, so that the pool's counts are this test's.
	 */
	flush_delayed_fput();
	lru_add_drain_all();

	hw = kunit_kzalloc(test, sizeof(*hw), GFP_KERNEL);
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
	/* Skipped by pool_test_init(): nothing was changed. */
	if (!test->priv)
		return;
	mfdx_pool_test_fail_grow = false;
	mfdx_pool_set_high_water(*(unsigned long *)test->priv);
}

/* Pages are absent from the direct map; the 2 MiB entry stays whole. */
static void pool_test_unmapped(struct kunit *test)
{
	unsigned long in_use = pool_in_use();
	struct folio *folio[8];
	int i;

	for (i = 0; i < ARRAY_SIZE(folio); i++) {
		folio[i] = mfdx_pool_alloc(GFP_KERNEL);
		KUNIT_ASSERT_FALSE(test, IS_ERR(folio[i]));
		KUNIT_EXPECT_TRUE(test, mfdx_pool_owns_page(&folio[i]->page));
		KUNIT_EXPECT_FALSE(test, kernel_page_present(&folio[i]->page));
		KUNIT_EXPECT_EQ(test, folio_ref_count(folio[i]), 1);
		KUNIT_EXPECT_FALSE(test, folio_test_large(folio[i]));
		KUNIT_EXPECT_EQ(test, pool_poke(&folio[i]->page, -1), 0UL);
	}
	KUNIT_EXPECT_EQ(test, pool_in_use(), in_use + ARRAY_SIZE(folio));
	pool_expect_consistent(test);

#ifdef CONFIG_X86
	if (!debug_pagealloc_enabled()) {
		unsigned long addr = (unsigned long)folio_address(folio[0]);
		unsigned int level;

		/* Changed in place, not split into 4 KiB PTEs. */
		KUNIT_EXPECT_NOT_NULL(test, lookup_address(addr, &level));
		KUNIT_EXPECT_EQ(test, level, (unsigned int)PG_LEVEL_2M);
	}
#endif
	for (i = 0; i < ARRAY_SIZE(folio); i++)
		folio_put(folio[i]);
	KUNIT_EXPECT_EQ(test, pool_in_use(), in_use);
	pool_expect_consistent(test);
}

/*
 * A page freed by folio_put() comes back through the page allocator zeroed,
 * and still out of the direct map; the segment helper zeroes only its range.
 */
static void pool_test_zeroed(struct kunit *test)
{
	struct folio *folio, *again;
	unsigned char *p;
	struct page *page;
	int i;

	pool_shrink_all();
	KUNIT_ASSERT_EQ(test, mfdx_pool_free_pages(), 0UL);

	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	page = &folio->page;
	KUNIT_EXPECT_EQ(test, pool_poke(page, -1), 0UL);
	KUNIT_EXPECT_NE(test, pool_poke(page, 0xa5), 0UL);

	mfdx_pool_zero_segment(folio, 100, 200);
	p = vmap(&page, 1, VM_MAP, PAGE_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, p);
	for (i = 0; i < PAGE_SIZE; i++)
		if (p[i] != ((i >= 100 && i < 200) ? 0 : 0xa5))
			break;
	vunmap(p);
	KUNIT_EXPECT_EQ(test, i, (int)PAGE_SIZE);
	KUNIT_EXPECT_FALSE(test, kernel_page_present(page));

	folio_put(folio);
	/* Free now, on the unmapped lists: already zero. */
	KUNIT_EXPECT_EQ(test, page_count(page), 0);
	KUNIT_EXPECT_FALSE(test, kernel_page_present(page));
	KUNIT_EXPECT_EQ(test, pool_poke(page, -1), 0UL);
	pool_expect_consistent(test);

	/* The block is wholly free again: its lowest page comes first. */
	again = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(again));
	KUNIT_EXPECT_PTR_EQ(test, again, folio);
	KUNIT_EXPECT_FALSE(test, kernel_page_present(&again->page));
	KUNIT_EXPECT_EQ(test, pool_poke(&again->page, -1), 0UL);
	folio_put(again);
}

/*
 * A whole free pageblock goes back to the direct map and to MIGRATE_MOVABLE
 * under the shrinker; one with a page in use does not.
 */
static void pool_test_shrinker(struct kunit *test)
{
	struct folio *folio;
	struct page *block;

	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	block = pool_block_of(&folio->page);
	KUNIT_ASSERT_TRUE(test, mfdx_pool_owns_page(block));
	KUNIT_EXPECT_FALSE(test, pool_range_present(block, 1));

	/* In use: the shrinker may not take the pageblock. */
	pool_shrink_all();
	KUNIT_EXPECT_TRUE(test, mfdx_pool_owns_page(block));
	KUNIT_EXPECT_FALSE(test, kernel_page_present(&folio->page));
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 1UL);
	KUNIT_EXPECT_EQ(test, mfdx_pool_free_pages(), pageblock_nr_pages - 1);
	pool_expect_consistent(test);

	folio_put(folio);
	KUNIT_EXPECT_EQ(test, mfdx_pool_free_pages(), pageblock_nr_pages);
	KUNIT_EXPECT_EQ(test, pool_shrink_all(), pageblock_nr_pages);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 0UL);
	KUNIT_EXPECT_EQ(test, mfdx_pool_free_pages(), 0UL);
	KUNIT_EXPECT_EQ(test, mfdx_pool_pages_out(), 0UL);
	KUNIT_EXPECT_FALSE(test, mfdx_pool_owns_page(block));
	KUNIT_EXPECT_EQ(test, (int)get_pageblock_migratetype(block),
			MIGRATE_MOVABLE);
	/* DEBUG_PAGEALLOC unmaps pages that others allocate and free again. */
	if (!debug_pagealloc_enabled())
		KUNIT_EXPECT_TRUE(test, pool_range_present(block,
							   pageblock_nr_pages));
	pool_expect_consistent(test);
}

/* Above the high-water mark, free pageblocks go back on their own. */
static void pool_test_high_water(struct kunit *test)
{
	struct folio *folio;
	struct page *block;
	int i;

	pool_shrink_all();
	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	block = pool_block_of(&folio->page);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 1UL);
	mfdx_pool_set_high_water(0);
	/* The work item runs once the free path sees the mark exceeded. */
	folio_put(folio);
	for (i = 0; i < 100 && mfdx_pool_nr_blocks(); i++)
		msleep(20);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 0UL);
	KUNIT_EXPECT_FALSE(test, mfdx_pool_owns_page(block));
	KUNIT_EXPECT_EQ(test, mfdx_pool_free_pages(), 0UL);
}

/*
 * Alloc/free cycles over more than one pageblock, freed in another order
 * than allocated: no page is lost, the counters match the lists, and at
 * the end every pageblock is wholly free again.
 */
static void pool_test_cycles(struct kunit *test)
{
	const unsigned int nr = pageblock_nr_pages + pageblock_nr_pages / 2;
	struct shrink_control sc = { .nid = numa_mem_id() };
	unsigned long allocs_before;
	struct folio **folio;
	unsigned int i, cycle;

	pool_shrink_all();
	KUNIT_ASSERT_EQ(test, pool_in_use(), 0UL);
	folio = kunit_kcalloc(test, nr, sizeof(*folio), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, folio);

	for (cycle = 0; cycle < 3; cycle++) {
		allocs_before = mfdx_pool_nr_blocks();
		for (i = 0; i < nr; i++) {
			folio[i] = mfdx_pool_alloc(GFP_KERNEL);
			KUNIT_ASSERT_FALSE(test, IS_ERR(folio[i]));
		}
		KUNIT_EXPECT_EQ(test, pool_in_use(), (unsigned long)nr);
		KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 2UL);
		if (cycle)
			/* The pageblocks of the last cycle were reused. */
			KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(),
					allocs_before);
		pool_expect_consistent(test);
		/* Odd ones first, then even ones, from the end. */
		for (i = 1; i < nr; i += 2)
			folio_put(folio[i]);
		pool_expect_consistent(test);
		for (i = nr; i > 0; i--)
			if (!((i - 1) & 1))
				folio_put(folio[i - 1]);
		KUNIT_EXPECT_EQ(test, pool_in_use(), 0UL);
		KUNIT_EXPECT_EQ(test, mfdx_pool_shrink_count(NULL, &sc),
				2 * pageblock_nr_pages);
		pool_expect_consistent(test);
	}
	KUNIT_EXPECT_EQ(test, pool_shrink_all(), 2 * pageblock_nr_pages);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 0UL);
}

/*
 * Nobody else takes an unmapped pageblock: alloc_contig_range() (and so
 * memory offlining, which isolates the same way) fails on a wholly free one.
 */
static void pool_test_contig_refused(struct kunit *test)
{
	unsigned long pfn, free;
	struct folio *folio;
	struct page *block;
	int err;

	pool_shrink_all();
	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	block = pool_block_of(&folio->page);
	folio_put(folio);
	free = mfdx_pool_free_pages();
	KUNIT_ASSERT_EQ(test, free, pageblock_nr_pages);

	pfn = page_to_pfn(block);
	err = alloc_contig_range(pfn, pfn + pageblock_nr_pages, MIGRATE_MOVABLE,
				 GFP_KERNEL | __GFP_NOWARN);
	KUNIT_EXPECT_EQ(test, err, -EBUSY);
	if (!err)
		free_contig_range(pfn, pageblock_nr_pages);
	KUNIT_EXPECT_TRUE(test, mfdx_pool_owns_page(block));
	KUNIT_EXPECT_EQ(test, mfdx_pool_free_pages(), free);
	pool_expect_consistent(test);
	KUNIT_EXPECT_EQ(test, pool_shrink_all(), pageblock_nr_pages);
}

/* No pageblock to be had: the allocation fails, nothing is left behind. */
static void pool_test_grow_failure(struct kunit *test)
{
	struct folio *folio;

	pool_shrink_all();
	KUNIT_ASSERT_EQ(test, mfdx_pool_nr_blocks(), 0UL);
	mfdx_pool_test_fail_grow = true;
	folio = mfdx_pool_alloc(GFP_KERNEL);
	mfdx_pool_test_fail_grow = false;
	KUNIT_EXPECT_TRUE(test, IS_ERR(folio));
	if (!IS_ERR(folio))
		folio_put(folio);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 0UL);
	pool_expect_consistent(test);

	folio = mfdx_pool_alloc(GFP_KERNEL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	KUNIT_EXPECT_TRUE(test, mfdx_pool_owns_page(&folio->page));
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), 1UL);
	folio_put(folio);
}

/*
 * A speculative reference on the first page of a growing block (mm review of
 * 2026-12-01, A1): add_unmapped_pageblock() cannot free the block whole, so it
 * frees the rest in pieces at once and the first page goes to the unmapped
 * lists when its holder lets go. Nothing is lost, nothing is mapped back.
 */
static void pool_test_grow_speculative_ref(struct kunit *test)
{
	unsigned long blocks;
	struct folio *folio;
	struct page *held;

	pool_shrink_all();
	KUNIT_ASSERT_EQ_MSG(test, mfdx_pool_free_pages(), 0UL,
			    "free unmapped pages left: the allocation would not grow");
	blocks = mfdx_pool_nr_blocks();
	mfdx_pool_test_held_page = NULL;
	mfdx_pool_test_hold_grow = true;
	folio = mfdx_pool_alloc(GFP_KERNEL);
	mfdx_pool_test_hold_grow = false;
	held = mfdx_pool_test_held_page;
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	KUNIT_ASSERT_NOT_NULL(test, held);
	KUNIT_EXPECT_PTR_NE(test, &folio->page, held);
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), blocks + 1);
	/* All but the held page and the one handed out. */
	KUNIT_EXPECT_EQ(test, mfdx_pool_free_pages(), pageblock_nr_pages - 2);
	KUNIT_EXPECT_TRUE(test, mfdx_pool_owns_page(held));
	KUNIT_EXPECT_FALSE(test, kernel_page_present(held));

	put_page(held);
	KUNIT_EXPECT_EQ(test, mfdx_pool_free_pages(), pageblock_nr_pages - 1);
	KUNIT_EXPECT_FALSE(test, kernel_page_present(held));
	folio_put(folio);
	KUNIT_EXPECT_EQ(test, mfdx_pool_free_pages(), pageblock_nr_pages);
	pool_expect_consistent(test);
	/* The whole block is free again, so it can go back. */
	pool_shrink_all();
	KUNIT_EXPECT_EQ(test, mfdx_pool_nr_blocks(), blocks);
	/* DEBUG_PAGEALLOC keeps released free pages out of the direct map. */
	if (!debug_pagealloc_enabled())
		KUNIT_EXPECT_TRUE(test, kernel_page_present(held));
}

/*
 * ->free_folio with the refcount frozen: remove_mapping() takes a clean,
 * locked page of a file out of its page cache the way reclaim and
 * memory_failure do (__remove_mapping(): refcount frozen to 0, page cache
 * entry removed, ->free_folio called, then unfrozen to our one reference).
 * The page must then be freed by our folio_put() through the allocator:
 * zeroed, back on the unmapped lists, counted.
 */
static void pool_test_frozen_free_folio(struct kunit *test)
{
	unsigned long in_use, pages;
	struct folio *folio;
	struct file *file;
	struct page *page;
	long removed;

	pool_shrink_all();
	file = memfd_exclusive_file_create("memfd_exclusive:pool", 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(file));
	if (vfs_truncate(&file->f_path, PAGE_SIZE)) {
		__fput_sync(file);
		KUNIT_FAIL(test, "ftruncate failed");
		return;
	}
	folio = memfd_exclusive_get_folio(file, 0);
	if (IS_ERR(folio)) {
		__fput_sync(file);
		KUNIT_FAIL(test, "fault: %ld", PTR_ERR(folio));
		return;
	}
	page = &folio->page;
	KUNIT_EXPECT_NE(test, pool_poke(page, 0x5a), 0UL);
	in_use = pool_in_use();
	pages = memfd_exclusive_pages_in_use();

	/* The LRU batch of the fault must not hold a reference. */
	lru_add_drain_all();
	folio_lock(folio);
	folio_clear_dirty(folio);
	removed = remove_mapping(file->f_mapping, folio);
	folio_unlock(folio);
	KUNIT_EXPECT_EQ(test, removed, 1L);
	if (removed != 1) {
		folio_put(folio);
		__fput_sync(file);
		return;
	}
	KUNIT_EXPECT_EQ(test, folio_ref_count(folio), 1);
	KUNIT_EXPECT_NULL(test, folio->mapping);
	/* ->free_folio ran with the refcount frozen and only counted. */
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages - 1);
	KUNIT_EXPECT_EQ(test, pool_in_use(), in_use);

	folio_put(folio);
	KUNIT_EXPECT_EQ(test, pool_in_use(), in_use - 1);
	KUNIT_EXPECT_EQ(test, page_count(page), 0);
	KUNIT_EXPECT_FALSE(test, kernel_page_present(page));
	KUNIT_EXPECT_EQ(test, pool_poke(page, -1), 0UL);
	pool_expect_consistent(test);

	/* The file faults a new, zeroed page at the same index. */
	folio = memfd_exclusive_get_folio(file, 0);
	KUNIT_EXPECT_FALSE(test, IS_ERR(folio));
	if (!IS_ERR(folio)) {
		KUNIT_EXPECT_EQ(test, pool_poke(&folio->page, -1), 0UL);
		folio_put(folio);
	}
	__fput_sync(file);
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages - 1);
}

/*
 * Through a file: fault 16 pages, truncate half of them away, close it:
 * every page comes back, and the count that refuses hibernation is the
 * number of pages out of the direct map.
 */
static void pool_test_file(struct kunit *test)
{
	unsigned long in_use;
	struct folio *folio;
	struct file *file;
	int i;

	pool_shrink_all();
	KUNIT_ASSERT_EQ(test, mfdx_pool_pages_out(), 0UL);
	in_use = pool_in_use();
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
	KUNIT_EXPECT_EQ(test, pool_in_use(), in_use + 16);
	KUNIT_EXPECT_EQ(test, mfdx_pool_pages_out(), pageblock_nr_pages);
	KUNIT_EXPECT_TRUE(test, memfd_exclusive_active());
	pool_expect_consistent(test);

	KUNIT_EXPECT_EQ(test, vfs_truncate(&file->f_path, 8 * PAGE_SIZE), 0);
	/* Per-CPU LRU batches may hold the last references for a while. */
	lru_add_drain_all();
	KUNIT_EXPECT_EQ(test, pool_in_use(), in_use + 8);
	pool_expect_consistent(test);

	__fput_sync(file);
	lru_add_drain_all();
	KUNIT_EXPECT_EQ(test, pool_in_use(), in_use);
	pool_expect_consistent(test);
	/*
	 * No file left: the hibernation check gives the free pool memory back
	 * to the direct map instead of refusing for it.
	 */
	KUNIT_EXPECT_FALSE(test, memfd_exclusive_active());
	KUNIT_EXPECT_EQ(test, mfdx_pool_pages_out(), 0UL);
}

static struct kunit_case memfd_exclusive_pool_cases[] = {
	KUNIT_CASE(pool_test_unmapped),
	KUNIT_CASE(pool_test_zeroed),
	KUNIT_CASE(pool_test_shrinker),
	KUNIT_CASE(pool_test_high_water),
	KUNIT_CASE(pool_test_cycles),
	KUNIT_CASE(pool_test_contig_refused),
	KUNIT_CASE(pool_test_grow_failure),
	KUNIT_CASE(pool_test_grow_speculative_ref),
	KUNIT_CASE(pool_test_frozen_free_folio),
	KUNIT_CASE(pool_test_file),
	{}
};

static struct kunit_suite memfd_exclusive_pool_suite = {
	.name = "memfd_exclusive_pool",
	.init = pool_test_init,
	.exit = pool_test_exit,
	.test_cases = memfd_exclusive_pool_cases,
};

kunit_test_suite(memfd_exclusive_pool_suite);

MODULE_DESCRIPTION("KUnit tests of unmapped memory (MIGRATE_UNMAPPED)");
MODULE_LICENSE("GPL");
