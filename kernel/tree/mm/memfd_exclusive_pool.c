// SPDX-License-Identifier: GPL-2.0
/*
 * The direct-map pool of memfd_exclusive(2).
 *
 * Taking one 4 KiB page out of the direct map, as mm/secretmem.c does, splits
 * the 2 MiB (or 1 GiB) direct-map entry that covers it into 4 KiB PTEs, for
 * good, and costs a kernel TLB flush on every CPU. This pool instead takes
 * whole naturally aligned PMD-order blocks (2 MiB on x86-64) from the page
 * allocator and removes each from the direct map in one step: the large entry
 * is changed in place, not split, and one TLB flush covers the 2 MiB. The
 * pages of the file come out of these blocks one at a time.
 *
 * Zeroing. A page that is not in the direct map cannot be written through
 * page_address() (kmap_local_page() is page_address() on x86-64). So:
 *  - a new block is allocated with __GFP_ZERO, i.e. zeroed while it is still
 *    mapped, before it leaves the direct map;
 *  - a released page is zeroed through a per-CPU temporary kernel mapping
 *    (one PTE in the vmalloc area, set and cleared with preemption disabled
 *    and invalidated on the local CPU only, as kmap_local does on 32-bit)
 *    before it goes back on the free list.
 * Every page on a free list is therefore zero, and a block that goes back to
 * the direct map needs no zeroing: no page of the pool ever returns to the
 * direct map with the data of a user.
 *
 * Page lifetime. A page handed out by mfdx_pool_alloc() is an order-0 folio
 * with one reference, like one from folio_alloc(). The file's ->free_folio
 * calls mfdx_pool_release() before the page cache drops its references; the
 * pool takes a reference of its own there, so the folio never reaches the
 * page allocator while it is out of the direct map. The folio is recycled
 * once that reference is the only one left (the page cache, per-CPU LRU
 * batches and speculative lookups are done with it): it is taken off the LRU,
 * uncharged from its memory cgroup, its reference count frozen to zero, its
 * flags reset, and it is zeroed. Recycling runs from a work item, from the
 * allocation path and from the shrinker.
 *
 * Memory cgroups: a page is charged when the file adds it to its page cache
 * (filemap_add_folio()) and uncharged when the pool recycles it. Free pages
 * held by the pool are not charged to anyone; they are bounded by the
 * high-water mark and handed back under memory pressure.
 *
 * Release. A block whose pages are all free goes back to the direct map (in
 * one step, no flush needed for entries that become present) and to the page
 * allocator when the free pool memory of its node exceeds the high-water
 * mark (/sys/kernel/mm/memfd_exclusive/pool_high_water_kb), and through a
 * shrinker under memory pressure, whatever the mark.
 *
 * Fallback. When no PMD-order block can be had (fragmented memory), a single
 * page is taken from the page allocator and removed from the direct map on
 * its own as secretmem does; such pages are counted in pool_fallback_pages
 * and go straight back to the direct map and the page allocator when freed.
 *
 * Locking: one spinlock per NUMA node protects that node's block lists,
 * bitmaps and counters. Block lookup by PFN goes through an xarray.
 */

#define pr_fmt(fmt) "memfd_exclusive: " fmt

#include <linux/bitmap.h>
#include <linux/gfp.h>
#include <linux/kobject.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/nodemask.h>
#include <linux/percpu.h>
#include <linux/set_memory.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/swap.h>
#include <linux/sysfs.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <kunit/visibility.h>

#include <asm/tlbflush.h>

#include "internal.h"
#include "memfd_exclusive_pool.h"

#define MFDX_BLOCK_ORDER	PMD_ORDER
#define MFDX_BLOCK_PAGES	BIT(MFDX_BLOCK_ORDER)
#define MFDX_BLOCK_SIZE		(PAGE_SIZE << MFDX_BLOCK_ORDER)

/* Default high-water mark of free pool memory per node, in bytes. */
#define MFDX_DEFAULT_HIGH_WATER	(4UL * MFDX_BLOCK_SIZE)

struct mfdx_block {
	struct list_head list;		/* on the node's blocks list */
	struct list_head rlist;		/* on the node's returning list */
	struct page *page;		/* first page */
	int nid;
	unsigned int nr_free;		/* bits set in @free */
	unsigned int nr_returning;	/* bits set in @returning */
	DECLARE_BITMAP(free, MFDX_BLOCK_PAGES);
	DECLARE_BITMAP(returning, MFDX_BLOCK_PAGES);
};

/*
 * Blocks of a node. @blocks keeps blocks with free pages first, wholly free
 * blocks last, and blocks without free pages after those, so that allocation
 * drains partly used blocks and wholly free ones stay free to be released.
 */
struct mfdx_pool_node {
	spinlock_t lock;		/* protects all below and the blocks */
	struct list_head blocks;
	struct list_head returning;	/* blocks with pages to recycle */
	unsigned long nr_blocks;
	unsigned long nr_free;		/* free pages in all blocks */
	unsigned long nr_empty;		/* wholly free blocks */
	unsigned long nr_returning;	/* released pages not yet recycled */
};

static struct mfdx_pool_node *mfdx_nodes[MAX_NUMNODES];
static DEFINE_XARRAY(mfdx_blocks);	/* PFN >> MFDX_BLOCK_ORDER -> block */
static struct shrinker *mfdx_shrinker;
static unsigned long mfdx_high_water = MFDX_DEFAULT_HIGH_WATER;

static atomic_long_t mfdx_stat_block_allocs;
static atomic_long_t mfdx_stat_block_frees;
static atomic_long_t mfdx_stat_tlb_flushes;
static atomic_long_t mfdx_stat_fallback_pages;	/* ever allocated */
static atomic_long_t mfdx_stat_fallback_in_use;
static atomic_long_t mfdx_stat_lost_pages;

VISIBLE_IF_KUNIT bool mfdx_pool_test_force_fallback;
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_test_force_fallback);
VISIBLE_IF_KUNIT bool mfdx_pool_test_fail_refill;
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_test_fail_refill);

static void mfdx_pool_work_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(mfdx_pool_work, mfdx_pool_work_fn);
/* Delay before the work retries folios that still had references. */
static unsigned long mfdx_pool_retry_delay = 1;

/* Per-CPU temporary mapping used to zero pages absent from the direct map. */
struct mfdx_zero_slot {
	unsigned long addr;
	pte_t *ptep;
};

static DEFINE_PER_CPU(struct mfdx_zero_slot, mfdx_zero_slot);

/*
 * Direct-map changes. set_direct_map_valid_noflush() changes a whole range in
 * one pass; where the architecture lacks it, fall back to one page at a time,
 * which splits large direct-map entries.
 */
static int mfdx_set_direct_map(struct page *page, unsigned int nr, bool valid)
{
#ifdef set_direct_map_valid_noflush
	return set_direct_map_valid_noflush(page, nr, valid);
#else
	unsigned int i;
	int err;

	for (i = 0; i < nr; i++) {
		if (valid)
			err = set_direct_map_default_noflush(nth_page(page, i));
		else
			err = set_direct_map_invalid_noflush(nth_page(page, i));
		if (err)
			return err;
	}
	return 0;
#endif
}

static void mfdx_flush_kernel(struct page *page, unsigned int nr)
{
	unsigned long addr = (unsigned long)page_address(page);

	flush_tlb_kernel_range(addr, addr + ((unsigned long)nr << PAGE_SHIFT));
	atomic_long_inc(&mfdx_stat_tlb_flushes);
}

static int mfdx_zero_slot_pte(pte_t *pte, unsigned long addr, void *data)
{
	*(pte_t **)data = pte;
	return 0;
}

static int __init mfdx_zero_slots_init(void)
{
	struct mfdx_zero_slot *slot;
	struct vm_struct *area;
	int cpu, err;

	for_each_possible_cpu(cpu) {
		slot = per_cpu_ptr(&mfdx_zero_slot, cpu);
		area = get_vm_area(PAGE_SIZE, VM_MAP);
		if (!area)
			return -ENOMEM;
		slot->addr = (unsigned long)area->addr;
		/* Allocates the page table now, so zeroing never allocates. */
		err = apply_to_page_range(&init_mm, slot->addr, PAGE_SIZE,
					  mfdx_zero_slot_pte, &slot->ptep);
		if (err)
			return err;
	}
	return 0;
}

/*
 * mfdx_pool_zero_segment - zero bytes @start to @end of an order-0 folio that
 * is not in the direct map
 *
 * Maps the page at this CPU's slot, zeroes it, unmaps it and invalidates the
 * slot in this CPU's TLB; no other CPU ever uses the slot, so no other TLB can
 * hold it. Process context.
 */
void mfdx_pool_zero_segment(struct folio *folio, size_t start, size_t end)
{
	struct mfdx_zero_slot *slot;

	if (WARN_ON_ONCE(start > end || end > PAGE_SIZE))
		return;

	preempt_disable();
	slot = this_cpu_ptr(&mfdx_zero_slot);
	set_pte_at(&init_mm, slot->addr, slot->ptep,
		   mk_pte(folio_page(folio, 0), PAGE_KERNEL));
	memset((void *)slot->addr + start, 0, end - start);
	pte_clear(&init_mm, slot->addr, slot->ptep);
#ifdef CONFIG_X86
	flush_tlb_one_kernel(slot->addr);
#else
	flush_tlb_kernel_range(slot->addr, slot->addr + PAGE_SIZE);
#endif
	preempt_enable();
}

static struct mfdx_block *mfdx_lookup_block(struct page *page)
{
	return xa_load(&mfdx_blocks, page_to_pfn(page) >> MFDX_BLOCK_ORDER);
}

/* Called with the node lock held. Returns a page or NULL. */
static struct page *mfdx_take_locked(struct mfdx_pool_node *pn)
{
	struct mfdx_block *b;
	unsigned int i;

	list_for_each_entry(b, &pn->blocks, list) {
		if (!b->nr_free)
			continue;
		i = find_first_bit(b->free, MFDX_BLOCK_PAGES);
		__clear_bit(i, b->free);
		if (b->nr_free-- == MFDX_BLOCK_PAGES)
			pn->nr_empty--;
		pn->nr_free--;
		if (!b->nr_free)
			list_move_tail(&b->list, &pn->blocks);
		return nth_page(b->page, i);
	}
	return NULL;
}

static struct page *mfdx_take(int nid)
{
	struct mfdx_pool_node *pn = mfdx_nodes[nid];
	struct page *page;

	if (!pn || !READ_ONCE(pn->nr_free))
		return NULL;
	spin_lock(&pn->lock);
	page = mfdx_take_locked(pn);
	spin_unlock(&pn->lock);
	return page;
}

/* Gives one free page back to its block. Called with the node lock held. */
static void mfdx_put_free_locked(struct mfdx_pool_node *pn,
				 struct mfdx_block *b, unsigned int i)
{
	__set_bit(i, b->free);
	pn->nr_free++;
	if (++b->nr_free == MFDX_BLOCK_PAGES) {
		pn->nr_empty++;
		/* Behind the blocks that still have pages in use. */
		list_move_tail(&b->list, &pn->blocks);
	} else if (b->nr_free == 1) {
		/* It has a free page again: to the front. */
		list_move(&b->list, &pn->blocks);
	}
}

/*
 * mfdx_block_release - give a wholly free block back to the direct map and
 * the page allocator. The block is no longer on any list nor in the xarray.
 */
static void mfdx_block_release(struct mfdx_block *b)
{
	unsigned int i;

	/*
	 * Entries that become present need no TLB flush. This cannot fail:
	 * the large entry is changed in place, or the PTEs exist already.
	 */
	WARN_ON_ONCE(mfdx_set_direct_map(b->page, MFDX_BLOCK_PAGES, true));
	for (i = 0; i < MFDX_BLOCK_PAGES; i++) {
		set_page_count(nth_page(b->page, i), 1);
		__free_page(nth_page(b->page, i));
	}
	atomic_long_inc(&mfdx_stat_block_frees);
	kfree(b);
}

/*
 * mfdx_release_empty - release up to @max wholly free blocks of node @nid,
 * keeping at least @keep bytes of free pool memory on the node
 *
 * Returns the number of pages given back to the page allocator.
 */
static unsigned long mfdx_release_empty(int nid, unsigned long max,
					unsigned long keep)
{
	struct mfdx_pool_node *pn = mfdx_nodes[nid];
	struct mfdx_block *b, *tmp;
	unsigned long freed = 0;
	LIST_HEAD(victims);

	if (!pn)
		return 0;
	spin_lock(&pn->lock);
	list_for_each_entry_safe_reverse(b, tmp, &pn->blocks, list) {
		if (freed >= max ||
		    (pn->nr_free << PAGE_SHIFT) < keep + MFDX_BLOCK_SIZE)
			break;
		if (b->nr_free != MFDX_BLOCK_PAGES)
			continue;
		list_move(&b->list, &victims);
		pn->nr_blocks--;
		pn->nr_empty--;
		pn->nr_free -= MFDX_BLOCK_PAGES;
		freed += MFDX_BLOCK_PAGES;
	}
	spin_unlock(&pn->lock);

	list_for_each_entry_safe(b, tmp, &victims, list) {
		xa_erase(&mfdx_blocks, page_to_pfn(b->page) >> MFDX_BLOCK_ORDER);
		list_del(&b->list);
		mfdx_block_release(b);
	}
	return freed;
}

/*
 * mfdx_pool_grow - add one block to node @nid
 *
 * Returns 0 or -ENOMEM; on failure nothing of the block is left behind and
 * the direct map is as it was.
 */
static int mfdx_pool_grow(int nid, gfp_t gfp)
{
	struct mfdx_pool_node *pn = mfdx_nodes[nid];
	struct mfdx_block *b;
	struct page *page;
	unsigned int i;
	int err;

	if (!pn || mfdx_pool_test_force_fallback)
		return -ENOMEM;

	b = kzalloc_node(sizeof(*b), GFP_KERNEL, nid);
	if (!b)
		return -ENOMEM;
	INIT_LIST_HEAD(&b->rlist);

	/* Zeroed here, while the block is still in the direct map. */
	gfp = (gfp & ~(__GFP_HIGHMEM | __GFP_MOVABLE | __GFP_COMP)) |
	      __GFP_ZERO | __GFP_NOWARN | __GFP_NORETRY | __GFP_THISNODE;
	page = alloc_pages_node(nid, gfp, MFDX_BLOCK_ORDER);
	if (!page) {
		err = -ENOMEM;
		goto err_free_block;
	}
	split_page(page, MFDX_BLOCK_ORDER);

	b->page = page;
	b->nid = nid;
	err = xa_err(xa_store(&mfdx_blocks, page_to_pfn(page) >> MFDX_BLOCK_ORDER,
			      b, GFP_KERNEL));
	if (err)
		goto err_free_pages;

	err = mfdx_set_direct_map(page, MFDX_BLOCK_PAGES, false);
	if (!err && mfdx_pool_test_fail_refill)
		err = -ENOMEM;
	if (err) {
		/* Entries already changed become present again. */
		mfdx_set_direct_map(page, MFDX_BLOCK_PAGES, true);
		goto err_erase;
	}
	mfdx_flush_kernel(page, MFDX_BLOCK_PAGES);

	/* Free pages of the pool are frozen, like those of the buddy. */
	for (i = 0; i < MFDX_BLOCK_PAGES; i++)
		set_page_count(nth_page(page, i), 0);
	bitmap_fill(b->free, MFDX_BLOCK_PAGES);
	b->nr_free = MFDX_BLOCK_PAGES;

	spin_lock(&pn->lock);
	list_add_tail(&b->list, &pn->blocks);
	pn->nr_blocks++;
	pn->nr_empty++;
	pn->nr_free += MFDX_BLOCK_PAGES;
	spin_unlock(&pn->lock);
	atomic_long_inc(&mfdx_stat_block_allocs);
	return 0;

err_erase:
	xa_erase(&mfdx_blocks, page_to_pfn(page) >> MFDX_BLOCK_ORDER);
err_free_pages:
	for (i = 0; i < MFDX_BLOCK_PAGES; i++)
		__free_page(nth_page(page, i));
err_free_block:
	kfree(b);
	return err;
}

enum mfdx_recycle {
	MFDX_RECYCLED,		/* free: frozen, uncharged, reset, zeroed */
	MFDX_BUSY,		/* still referenced: retry later */
	MFDX_LOST,		/* in an unexpected state: kept out of use */
};

/*
 * mfdx_recycle_folio - make a released pool folio free again
 *
 * Called without locks, with the folio off the returning bitmap. A folio in
 * a state the pool cannot recycle (still mapped or in a page cache) is kept
 * out of use and out of the direct map for good, and its block with it.
 */
static enum mfdx_recycle mfdx_recycle_folio(struct folio *folio)
{
	struct page *page = folio_page(folio, 0);

	/* Only the pool's reference left? */
	if (folio_ref_count(folio) != 1)
		return MFDX_BUSY;
	if (folio_test_lru(folio)) {
		if (!folio_isolate_lru(folio))
			return MFDX_BUSY;
		/* Drop the reference the isolation took. */
		folio_put(folio);
	}
	if (!folio_ref_freeze(folio, 1))
		return MFDX_BUSY;

	mem_cgroup_uncharge(folio);
	if (WARN_ON_ONCE(folio->mapping || folio_mapped(folio) ||
			 folio_test_locked(folio) ||
			 folio_test_writeback(folio) ||
			 folio_test_private(folio))) {
		atomic_long_inc(&mfdx_stat_lost_pages);
		return MFDX_LOST;
	}
	/* As the page allocator does for a freed page. */
	page->flags &= ~PAGE_FLAGS_CHECK_AT_PREP;
	page->private = 0;
	mfdx_pool_zero_segment(folio, 0, PAGE_SIZE);
	return MFDX_RECYCLED;
}

/*
 * mfdx_recycle_node - recycle the released folios of node @nid that nobody
 * holds any more
 *
 * Returns the number of folios that still have references.
 */
static unsigned long mfdx_recycle_node(int nid)
{
	struct mfdx_pool_node *pn = mfdx_nodes[nid];
	DECLARE_BITMAP(batch, MFDX_BLOCK_PAGES);
	DECLARE_BITMAP(busy, MFDX_BLOCK_PAGES);
	DECLARE_BITMAP(lost, MFDX_BLOCK_PAGES);
	unsigned long pending = 0;
	struct mfdx_block *b;
	LIST_HEAD(done);
	unsigned int i;

	if (!pn)
		return 0;
	spin_lock(&pn->lock);
	while ((b = list_first_entry_or_null(&pn->returning,
					     struct mfdx_block, rlist))) {
		/* Take the block's batch; the block cannot go away meanwhile. */
		list_move_tail(&b->rlist, &done);
		bitmap_copy(batch, b->returning, MFDX_BLOCK_PAGES);
		bitmap_zero(b->returning, MFDX_BLOCK_PAGES);
		pn->nr_returning -= b->nr_returning;
		b->nr_returning = 0;
		spin_unlock(&pn->lock);

		bitmap_zero(busy, MFDX_BLOCK_PAGES);
		bitmap_zero(lost, MFDX_BLOCK_PAGES);
		for_each_set_bit(i, batch, MFDX_BLOCK_PAGES) {
			switch (mfdx_recycle_folio(page_folio(nth_page(b->page, i)))) {
			case MFDX_BUSY:
				__set_bit(i, busy);
				break;
			case MFDX_LOST:
				__set_bit(i, lost);
				break;
			case MFDX_RECYCLED:
				break;
			}
			cond_resched();
		}

		spin_lock(&pn->lock);
		for_each_set_bit(i, batch, MFDX_BLOCK_PAGES) {
			if (test_bit(i, busy)) {
				__set_bit(i, b->returning);
				b->nr_returning++;
				pn->nr_returning++;
				pending++;
			} else if (!test_bit(i, lost)) {
				mfdx_put_free_locked(pn, b, i);
			}
		}
	}
	/*
	 * Blocks with pages still referenced, or released meanwhile, go back
	 * on the returning list for the next pass.
	 */
	while ((b = list_first_entry_or_null(&done, struct mfdx_block, rlist))) {
		if (b->nr_returning)
			list_move_tail(&b->rlist, &pn->returning);
		else
			list_del_init(&b->rlist);
	}
	spin_unlock(&pn->lock);
	return pending;
}

/* Recycles the released folios of every node; returns those still busy. */
VISIBLE_IF_KUNIT unsigned long mfdx_pool_recycle_all(void)
{
	unsigned long pending = 0;
	int nid;

	for_each_node_state(nid, N_MEMORY)
		pending += mfdx_recycle_node(nid);
	return pending;
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_recycle_all);

static void mfdx_pool_trim(void)
{
	unsigned long keep = READ_ONCE(mfdx_high_water);
	int nid;

	for_each_node_state(nid, N_MEMORY)
		mfdx_release_empty(nid, ULONG_MAX, keep);
}

/*
 * The work item: recycle released folios, then release wholly free blocks
 * above the high-water mark. Folios still referenced (LRU batches of other
 * CPUs, speculative lookups) are retried later, with a growing delay; from
 * the second try on, the per-CPU LRU batches are drained first.
 */
static void mfdx_pool_work_fn(struct work_struct *work)
{
	unsigned long pending;

	pending = mfdx_pool_recycle_all();
	if (pending && mfdx_pool_retry_delay > 1) {
		lru_add_drain_all();
		pending = mfdx_pool_recycle_all();
	}
	mfdx_pool_trim();

	if (pending) {
		mfdx_pool_retry_delay = min(mfdx_pool_retry_delay * 2, HZ);
		schedule_delayed_work(&mfdx_pool_work, mfdx_pool_retry_delay);
	} else {
		mfdx_pool_retry_delay = 1;
	}
}

/*
 * mfdx_pool_alloc - get a zeroed order-0 folio that is not in the direct map
 * @gfp: allocation flags of the caller (its mapping's gfp mask)
 *
 * Takes a page from a block of the nearest node with memory, recycling
 * released pages or adding a block (one direct-map change and one kernel TLB
 * flush per 2 MiB) when none is free; when no block can be had, falls back to
 * a single page removed from the direct map on its own (counted in
 * pool_fallback_pages).
 *
 * Returns the folio with one reference, not charged to a memory cgroup, or
 * ERR_PTR(-ENOMEM), or the error of the direct-map change. Process context.
 * The folio must go back through mfdx_pool_release() before its last
 * reference is dropped.
 */
struct folio *mfdx_pool_alloc(gfp_t gfp)
{
	int nid = numa_mem_id();
	struct folio *folio;
	struct page *page;
	int err, n;

	page = mfdx_take(nid);
	if (!page && mfdx_nodes[nid] &&
	    !list_empty_careful(&mfdx_nodes[nid]->returning)) {
		mfdx_recycle_node(nid);
		page = mfdx_take(nid);
	}
	if (!page && !mfdx_pool_grow(nid, gfp))
		page = mfdx_take(nid);
	if (!page) {
		for_each_node_state(n, N_MEMORY) {
			page = mfdx_take(n);
			if (page)
				break;
		}
	}
	if (page) {
		set_page_refcounted(page);
		return page_folio(page);
	}

	/* Fallback: one page, as mm/secretmem.c does. */
	folio = folio_alloc(gfp | __GFP_ZERO, 0);
	if (!folio)
		return ERR_PTR(-ENOMEM);
	err = set_direct_map_invalid_noflush(folio_page(folio, 0));
	if (err) {
		folio_put(folio);
		return ERR_PTR(err);
	}
	mfdx_flush_kernel(folio_page(folio, 0), 1);
	atomic_long_inc(&mfdx_stat_fallback_pages);
	atomic_long_inc(&mfdx_stat_fallback_in_use);
	return folio;
}

/*
 * mfdx_pool_release - give back a folio of mfdx_pool_alloc()
 * @folio: the folio, neither mapped to userspace nor in a page cache any more
 *	   (called from ->free_folio), with at least one reference
 *
 * A pool folio keeps a reference of the pool's and is recycled (zeroed,
 * uncharged, back on the free list) once all other references are gone; it
 * never returns to the direct map on its own. A fallback folio goes back to
 * the direct map and is zeroed now; the caller's references then free it.
 */
void mfdx_pool_release(struct folio *folio)
{
	struct page *page = folio_page(folio, 0);
	struct mfdx_pool_node *pn;
	struct mfdx_block *b;
	unsigned int i;

	b = mfdx_lookup_block(page);
	if (!b) {
		/* Present entries need no TLB flush. */
		set_direct_map_default_noflush(page);
		folio_zero_segment(folio, 0, folio_size(folio));
		atomic_long_dec(&mfdx_stat_fallback_in_use);
		return;
	}

	folio_get(folio);
	i = folio_pfn(folio) - page_to_pfn(b->page);
	pn = mfdx_nodes[b->nid];
	spin_lock(&pn->lock);
	if (!WARN_ON_ONCE(test_bit(i, b->free) || test_bit(i, b->returning))) {
		__set_bit(i, b->returning);
		pn->nr_returning++;
		if (!b->nr_returning++ && list_empty(&b->rlist))
			list_add_tail(&b->rlist, &pn->returning);
	}
	spin_unlock(&pn->lock);
	schedule_delayed_work(&mfdx_pool_work, 1);
}

/* Shrinker: wholly free blocks of the node, in pages. */
VISIBLE_IF_KUNIT unsigned long mfdx_pool_shrink_count(struct shrinker *shrinker,
						      struct shrink_control *sc)
{
	struct mfdx_pool_node *pn = mfdx_nodes[sc->nid];
	unsigned long nr;

	if (!pn)
		return SHRINK_EMPTY;
	nr = READ_ONCE(pn->nr_empty) * MFDX_BLOCK_PAGES;
	return nr ? nr : SHRINK_EMPTY;
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_shrink_count);

VISIBLE_IF_KUNIT unsigned long mfdx_pool_shrink_scan(struct shrinker *shrinker,
						     struct shrink_control *sc)
{
	unsigned long freed;

	freed = mfdx_release_empty(sc->nid, max(sc->nr_to_scan, 1UL), 0);
	sc->nr_scanned = freed;
	return freed ? freed : SHRINK_STOP;
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_shrink_scan);

/* sysfs, in /sys/kernel/mm/memfd_exclusive/ (the kobject of memfd_exclusive.c) */

static unsigned long mfdx_sum_nodes(size_t offset)
{
	unsigned long sum = 0;
	int nid;

	for_each_node_state(nid, N_MEMORY)
		if (mfdx_nodes[nid])
			sum += READ_ONCE(*(unsigned long *)((char *)mfdx_nodes[nid] +
							    offset));
	return sum;
}

VISIBLE_IF_KUNIT unsigned long mfdx_pool_free_pages(void)
{
	return mfdx_sum_nodes(offsetof(struct mfdx_pool_node, nr_free));
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_free_pages);

VISIBLE_IF_KUNIT unsigned long mfdx_pool_nr_blocks(void)
{
	return mfdx_sum_nodes(offsetof(struct mfdx_pool_node, nr_blocks));
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_nr_blocks);

VISIBLE_IF_KUNIT unsigned long mfdx_pool_fallback_pages(void)
{
	return atomic_long_read(&mfdx_stat_fallback_pages);
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_fallback_pages);

VISIBLE_IF_KUNIT unsigned long mfdx_pool_get_high_water(void)
{
	return READ_ONCE(mfdx_high_water);
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_get_high_water);

VISIBLE_IF_KUNIT void mfdx_pool_set_high_water(unsigned long bytes)
{
	WRITE_ONCE(mfdx_high_water, bytes);
	mod_delayed_work(system_wq, &mfdx_pool_work, 0);
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_set_high_water);

static ssize_t pool_blocks_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", mfdx_pool_nr_blocks());
}

static struct kobj_attribute pool_blocks_attr = __ATTR_RO(pool_blocks);

static ssize_t pool_returning_pages_show(struct kobject *kobj,
					 struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n",
			  mfdx_sum_nodes(offsetof(struct mfdx_pool_node,
						  nr_returning)));
}

static struct kobj_attribute pool_returning_pages_attr =
	__ATTR_RO(pool_returning_pages);

static ssize_t pool_free_pages_show(struct kobject *kobj,
				    struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", mfdx_pool_free_pages());
}

static struct kobj_attribute pool_free_pages_attr = __ATTR_RO(pool_free_pages);

#define MFDX_STAT_ATTR(_name, _counter)					\
static ssize_t _name##_show(struct kobject *kobj,			\
			    struct kobj_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%ld\n", atomic_long_read(&(_counter)));	\
}									\
static struct kobj_attribute _name##_attr = __ATTR_RO(_name)

MFDX_STAT_ATTR(pool_fallback_pages, mfdx_stat_fallback_pages);
MFDX_STAT_ATTR(pool_fallback_in_use, mfdx_stat_fallback_in_use);
MFDX_STAT_ATTR(pool_block_allocs, mfdx_stat_block_allocs);
MFDX_STAT_ATTR(pool_block_frees, mfdx_stat_block_frees);
MFDX_STAT_ATTR(pool_tlb_flushes, mfdx_stat_tlb_flushes);
MFDX_STAT_ATTR(pool_lost_pages, mfdx_stat_lost_pages);

static ssize_t pool_high_water_kb_show(struct kobject *kobj,
				       struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", READ_ONCE(mfdx_high_water) >> 10);
}

static ssize_t pool_high_water_kb_store(struct kobject *kobj,
					struct kobj_attribute *attr,
					const char *buf, size_t count)
{
	unsigned long kb;
	int err;

	err = kstrtoul(buf, 10, &kb);
	if (err)
		return err;
	if (kb > (ULONG_MAX >> 11))
		return -EINVAL;
	WRITE_ONCE(mfdx_high_water, kb << 10);
	/* Trim now. */
	mod_delayed_work(system_wq, &mfdx_pool_work, 0);
	return count;
}

static struct kobj_attribute pool_high_water_kb_attr =
	__ATTR_RW(pool_high_water_kb);

static struct attribute *mfdx_pool_attrs[] = {
	&pool_blocks_attr.attr,
	&pool_free_pages_attr.attr,
	&pool_returning_pages_attr.attr,
	&pool_fallback_pages_attr.attr,
	&pool_fallback_in_use_attr.attr,
	&pool_block_allocs_attr.attr,
	&pool_block_frees_attr.attr,
	&pool_tlb_flushes_attr.attr,
	&pool_lost_pages_attr.attr,
	&pool_high_water_kb_attr.attr,
	NULL,
};

const struct attribute_group mfdx_pool_attr_group = {
	.attrs = mfdx_pool_attrs,
};

/* KUnit: is @page part of a pool block (whatever its state)? */
VISIBLE_IF_KUNIT bool mfdx_pool_owns_page(struct page *page)
{
	return !!mfdx_lookup_block(page);
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_owns_page);

/*
 * mfdx_pool_walk - call @fn for every page of every block, with its state
 *
 * Called with each node's lock held, so @fn must not sleep. Returns the
 * number of pages visited. For the KUnit suite.
 */
VISIBLE_IF_KUNIT unsigned long mfdx_pool_walk(mfdx_pool_walk_fn fn, void *data)
{
	enum mfdx_pool_page_state state;
	struct mfdx_pool_node *pn;
	unsigned long nr = 0;
	struct mfdx_block *b;
	unsigned int i;
	int nid;

	for_each_node_state(nid, N_MEMORY) {
		pn = mfdx_nodes[nid];
		if (!pn)
			continue;
		spin_lock(&pn->lock);
		list_for_each_entry(b, &pn->blocks, list) {
			for (i = 0; i < MFDX_BLOCK_PAGES; i++, nr++) {
				if (test_bit(i, b->free))
					state = MFDX_POOL_FREE;
				else if (test_bit(i, b->returning))
					state = MFDX_POOL_RETURNING;
				else
					state = MFDX_POOL_IN_USE;
				fn(nth_page(b->page, i), state, data);
			}
		}
		spin_unlock(&pn->lock);
	}
	return nr;
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_walk);

/*
 * mfdx_pool_init - set up the pool: per-node state, zeroing slots, shrinker
 *
 * Called once from the memfd_exclusive initcall. Returns 0 or -ENOMEM.
 */
int __init mfdx_pool_init(void)
{
	struct mfdx_pool_node *pn;
	int nid, err;

	for_each_node_state(nid, N_MEMORY) {
		pn = kzalloc_node(sizeof(*pn), GFP_KERNEL, nid);
		if (!pn)
			return -ENOMEM;
		spin_lock_init(&pn->lock);
		INIT_LIST_HEAD(&pn->blocks);
		INIT_LIST_HEAD(&pn->returning);
		mfdx_nodes[nid] = pn;
	}

	err = mfdx_zero_slots_init();
	if (err)
		return err;

	mfdx_shrinker = shrinker_alloc(SHRINKER_NUMA_AWARE, "memfd_exclusive");
	if (!mfdx_shrinker)
		return -ENOMEM;
	mfdx_shrinker->count_objects = mfdx_pool_shrink_count;
	mfdx_shrinker->scan_objects = mfdx_pool_shrink_scan;
	mfdx_shrinker->batch = MFDX_BLOCK_PAGES;
	shrinker_register(mfdx_shrinker);
	return 0;
}
