// SPDX-License-Identifier: GPL-2.0
/*
 * Unmapped memory: pages that are not in the kernel's direct map, for
 * memfd_exclusive(2) and any other user that must keep the kernel from
 * reading memory through its own mappings (secretmem, guest_memfd).
 *
 * The page allocator keeps these pages on free lists of their own,
 * MIGRATE_UNMAPPED (mm/page_alloc.c, see add_unmapped_pageblock(),
 * rmqueue_unmapped() and release_unmapped_pageblocks()). This
 * file decides when those lists grow and shrink, and zeroes pages through a
 * temporary mapping:
 *
 *  - Grow: a pageblock-order (2 MiB on x86-64) page is allocated zeroed
 *    (__GFP_ZERO, while it is still mapped), removed from the direct map in
 *    one set_direct_map_valid_noflush() pass, so that a 2 MiB direct-map
 *    entry is changed in place instead of being split, flushed from the
 *    kernel TLB once, and freed as a MIGRATE_UNMAPPED pageblock.
 *  - Allocate: alloc_unmapped_folio() takes an order-0 page from those
 *    lists, growing them when they are empty. The page is zero.
 *  - Free: by folio_put(), through the page allocator's own free path (memcg
 *    uncharge, LRU removal, free_pages_prepare()), which calls
 *    unmapped_clear_pages() for such a page and frees it to the unmapped
 *    lists, never to a pcp list. So nothing here depends on ->free_folio or
 *    on reference counts, and a page with a frozen refcount is simply never
 *    freed until its last reference goes.
 *  - Give back: free unmapped pageblocks above a high-water mark per zone
 *    (/sys/kernel/mm/memfd_exclusive/pool_high_water_kb) go back to the
 *    direct map and to MIGRATE_MOVABLE from a work item, and all of them
 *    under memory pressure through a shrinker. Free unmapped pages are zero,
 *    so no data of a user ever returns to the direct map.
 *
 * Zeroing. A page out of the direct map cannot be written through
 * page_address() (kmap_local_page() is page_address() on x86-64). It is
 * mapped at a per-CPU slot (one PTE in the vmalloc area) with interrupts
 * disabled, so that the free path may zero from any context, zeroed,
 * unmapped, and the slot invalidated in this CPU's TLB only: no other CPU
 * ever uses the slot.
 *
 * Fallback: none that needs tricks. When no pageblock can be had with light
 * compaction, a second attempt reclaims and compacts harder
 * (__GFP_RETRY_MAYFAIL); then free unmapped pages of other nodes are used;
 * then the allocation fails with -ENOMEM. A single page taken out of the
 * direct map on its own could not be freed by the ordinary free path (it
 * would reach the buddy lists of a mapped pageblock while unmapped).
 */

#define pr_fmt(fmt) "memfd_exclusive: " fmt

#include <linux/gfp.h>
#include <linux/ioport.h>
#include <linux/kobject.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/nodemask.h>
#include <linux/percpu.h>
#include <linux/set_memory.h>
#include <linux/shrinker.h>
#include <linux/sysfs.h>
#include <linux/unmapped_alloc.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <kunit/visibility.h>

#include <asm/tlbflush.h>

#include "internal.h"
#include "memfd_exclusive_pool.h"

/* Default high-water mark of free unmapped memory per zone, in bytes. */
#define UNMAPPED_DEFAULT_HIGH_WATER	(4UL * pageblock_nr_pages * PAGE_SIZE)

static unsigned long unmapped_high_water;	/* bytes, per zone */
static bool unmapped_ready __ro_after_init;
static struct shrinker *unmapped_shrinker;

static atomic_long_t unmapped_nr_blocks;	/* pageblocks out of the direct map */
static atomic_long_t unmapped_stat_block_allocs;
static atomic_long_t unmapped_stat_block_frees;
static atomic_long_t unmapped_stat_tlb_flushes;

VISIBLE_IF_KUNIT bool mfdx_pool_test_fail_grow;
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_test_fail_grow);
/*
 * KUnit: the next grow takes an extra reference on the first page of its
 * block before add_unmapped_pageblock(), as a speculative holder (a pfn
 * walker, a GUP-fast or page-cache lookup of a stale pointer) could, and
 * leaves the page in mfdx_pool_test_held_page for the test to drop.
 */
VISIBLE_IF_KUNIT bool mfdx_pool_test_hold_grow;
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_test_hold_grow);
VISIBLE_IF_KUNIT struct page *mfdx_pool_test_held_page;
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_test_held_page);

static void unmapped_trim_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(unmapped_trim_work, unmapped_trim_fn);

/* Per-CPU temporary mapping used to zero pages absent from the direct map. */
struct unmapped_zero_slot {
	unsigned long addr;
	pte_t *ptep;
};

static DEFINE_PER_CPU(struct unmapped_zero_slot, unmapped_zero_slot);

static int unmapped_zero_slot_pte(pte_t *pte, unsigned long addr, void *data)
{
	*(pte_t **)data = pte;
	return 0;
}

static int __init unmapped_zero_slots_init(void)
{
	struct unmapped_zero_slot *slot;
	struct vm_struct *area;
	int cpu, err;

	for_each_possible_cpu(cpu) {
		slot = per_cpu_ptr(&unmapped_zero_slot, cpu);
		area = get_vm_area(PAGE_SIZE, VM_MAP);
		if (!area)
			return -ENOMEM;
		slot->addr = (unsigned long)area->addr;
		/* Allocates the page table now, so zeroing never allocates. */
		err = apply_to_page_range(&init_mm, slot->addr, PAGE_SIZE,
					  unmapped_zero_slot_pte, &slot->ptep);
		if (err)
			return err;
	}
	return 0;
}

/*
 * unmapped_zero - zero bytes @start to @end of @page, which is not in the
 * direct map, through this CPU's slot. Any context.
 */
static void unmapped_zero(struct page *page, size_t start, size_t end)
{
	struct unmapped_zero_slot *slot;
	unsigned long flags;

	local_irq_save(flags);
	slot = this_cpu_ptr(&unmapped_zero_slot);
	set_pte_at(&init_mm, slot->addr, slot->ptep,
		   mk_pte(page, PAGE_KERNEL));
	if (start == 0 && end == PAGE_SIZE)
		clear_page((void *)slot->addr);
	else
		memset((void *)slot->addr + start, 0, end - start);
	pte_clear(&init_mm, slot->addr, slot->ptep);
#ifdef CONFIG_X86
	flush_tlb_one_kernel(slot->addr);
#else
	flush_tlb_kernel_range(slot->addr, slot->addr + PAGE_SIZE);
#endif
	local_irq_restore(flags);
}

/*
 * unmapped_clear_pages - zero @nr freed pages of an unmapped pageblock
 *
 * Called by free_pages_prepare() for pages on their way to the unmapped
 * free lists, in any context.
 */
void unmapped_clear_pages(struct page *page, unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr; i++)
		unmapped_zero(nth_page(page, i), 0, PAGE_SIZE);
}

/*
 * unmapped_page_freed - a freed unmapped page of @zone is on the free lists
 *
 * Called by the free path after the zone lock is dropped, in any context.
 * Starts the trimming work when the zone holds at least a pageblock more
 * than the high-water mark.
 */
void unmapped_page_freed(struct zone *zone)
{
	if (READ_ONCE(zone->nr_free_unmapped) << PAGE_SHIFT >=
	    READ_ONCE(unmapped_high_water) + (pageblock_nr_pages << PAGE_SHIFT))
		schedule_delayed_work(&unmapped_trim_work, 1);
}

/**
 * unmapped_folio_zero_segment - zero part of an unmapped folio
 * @folio: an order-0 folio of alloc_unmapped_folio()
 * @start: first byte to zero
 * @end: byte after the last one to zero
 *
 * For the partial page of a truncation: the page stays out of the direct
 * map. Any context.
 */
void unmapped_folio_zero_segment(struct folio *folio, size_t start, size_t end)
{
	if (WARN_ON_ONCE(start > end || end > PAGE_SIZE ||
			 folio_test_large(folio)))
		return;
	if (start < end)
		unmapped_zero(folio_page(folio, 0), start, end);
}

static void unmapped_flush_kernel(struct page *page, unsigned long nr)
{
	unsigned long addr = (unsigned long)page_address(page);

	flush_tlb_kernel_range(addr, addr + (nr << PAGE_SHIFT));
	atomic_long_inc(&unmapped_stat_tlb_flushes);
}

/*
 * unmapped_revoke_devmem - zap every /dev/mem mapping of @page's pageblock
 *
 * mmap_mem() (drivers/char/mem.c) refuses a range holding an unmapped
 * pageblock, but a mapping of that RAM made before the block became
 * unmapped keeps its frames (remap_pfn_range() populated them). Every
 * /dev/mem file shares iomem_get_mapping() as its address_space, so zapping
 * the range there reaches every such mapping linked into it, as
 * revoke_iomem() does for a driver's region: a later access through one
 * gets SIGBUS (it has no ->fault). Called once add_unmapped_pageblock() has
 * set the pageblock type, so that a new mmap_mem() sees it and refuses.
 * Without it, root read and wrote a file's pages through a /dev/mem mapping
 * of all RAM made beforehand (hostile review of 2026-12-01, N1).
 *
 * This narrows the hole, it does not close it. The zap comes after the
 * block's pages reached the unmapped free lists, so another CPU may be
 * handed one of them, and root may write to them, through an older mapping
 * until the zap is done; and an mmap_mem() that checked before the type was
 * set links its VMA only after ->mmap returns, so a zap in between misses
 * it, a window root can widen by repeating mmap() (third mm review,
 * findings 1 and 2). Zapping before the block is zeroed and freed, as that
 * review proposed, made a task faulting the file see one minor fault too
 * many in the memory-failure selftests, unexplained yet. Only
 * CONFIG_STRICT_DEVMEM, which refuses to map RAM at all, closes /dev/mem.
 */
static void unmapped_revoke_devmem(struct page *page)
{
	if (!IS_ENABLED(CONFIG_DEVMEM))
		return;
	unmap_mapping_range(iomem_get_mapping(), PFN_PHYS(page_to_pfn(page)),
			    PAGE_SIZE << pageblock_order, 1);
}

/*
 * unmapped_grow - add one pageblock of node @nid to the unmapped lists
 * @hard: reclaim and compact as hard as may fail, not just lightly
 *
 * Returns an order-0 page taken from the unmapped lists right after, or
 * NULL; on failure the direct map is as it was.
 */
static struct page *unmapped_grow(int nid, gfp_t gfp, bool hard)
{
	struct page *page, *taken;
	int err;

	if (mfdx_pool_test_fail_grow)
		return NULL;

	/* Zeroed here, while the pageblock is still in the direct map. */
	gfp &= ~(__GFP_HIGHMEM | __GFP_MOVABLE | __GFP_COMP | __GFP_ACCOUNT);
	gfp |= __GFP_ZERO | __GFP_NOWARN | __GFP_THISNODE |
	       (hard ? __GFP_RETRY_MAYFAIL : __GFP_NORETRY);
	page = alloc_pages_node(nid, gfp, pageblock_order);
	if (!page)
		return NULL;

	err = unmapped_set_direct_map(page, pageblock_nr_pages, false);
	if (err) {
		/* Entries already changed become present again. */
		unmapped_set_direct_map(page, pageblock_nr_pages, true);
		__free_pages(page, pageblock_order);
		return NULL;
	}
	unmapped_flush_kernel(page, pageblock_nr_pages);

	atomic_long_inc(&unmapped_nr_blocks);
	atomic_long_inc(&unmapped_stat_block_allocs);
	if (mfdx_pool_test_hold_grow) {
		mfdx_pool_test_hold_grow = false;
		get_page(page);
		mfdx_pool_test_held_page = page;
	}
	taken = add_unmapped_pageblock(page, gfp);
	unmapped_revoke_devmem(page);
	return taken;
}

/* An order-0 page from the unmapped lists of node @nid, or NULL. */
static struct page *unmapped_take(int nid, gfp_t gfp)
{
	pg_data_t *pgdat = NODE_DATA(nid);
	struct page *page;
	int z;

	for (z = MAX_NR_ZONES - 1; z >= 0; z--) {
		struct zone *zone = &pgdat->node_zones[z];

		if (!populated_zone(zone))
			continue;
		page = rmqueue_unmapped(zone, gfp);
		if (page)
			return page;
	}
	return NULL;
}

/**
 * alloc_unmapped_folio - get a zeroed order-0 folio that is not in the
 * direct map
 * @gfp: allocation flags of the caller (for memfd_exclusive, its mapping's
 *	 gfp mask); may sleep
 *
 * Takes a page from the unmapped free lists of the nearest node with memory,
 * growing them by a pageblock (one direct-map change and one kernel TLB
 * flush per 2 MiB) when they are empty: first with light compaction, then
 * harder; then takes a free unmapped page of any node.
 *
 * Returns the folio with one reference, not charged to a memory cgroup, or
 * ERR_PTR(-ENOMEM). Freed by folio_put(): the page allocator zeroes it and
 * keeps it out of the direct map.
 */
struct folio *alloc_unmapped_folio(gfp_t gfp)
{
	int nid = numa_mem_id(), n;
	struct page *page;

	might_alloc(gfp);
	if (WARN_ON_ONCE(!unmapped_ready))
		return ERR_PTR(-ENOMEM);

	page = unmapped_take(nid, gfp);
	if (!page)
		page = unmapped_grow(nid, gfp, false);
	if (!page)
		page = unmapped_grow(nid, gfp, true);
	if (page)
		return page_folio(page);

	for_each_node_state(n, N_MEMORY) {
		page = unmapped_take(n, gfp);
		if (page)
			return page_folio(page);
	}
	return ERR_PTR(-ENOMEM);
}

/**
 * unmapped_pages_out - pages out of the direct map (in use or free)
 *
 * Counts whole unmapped pageblocks; hibernation must be refused while this
 * is not zero (the image would lack them, and restoring would map them).
 */
unsigned long unmapped_pages_out(void)
{
	return atomic_long_read(&unmapped_nr_blocks) * pageblock_nr_pages;
}

/* Give back free unmapped pageblocks of @zone; returns the pages. */
static unsigned long unmapped_release(struct zone *zone, unsigned long max,
				      unsigned long keep)
{
	unsigned long freed;

	freed = release_unmapped_pageblocks(zone, max, keep);
	if (freed) {
		atomic_long_sub(freed / pageblock_nr_pages, &unmapped_nr_blocks);
		atomic_long_add(freed / pageblock_nr_pages,
				&unmapped_stat_block_frees);
	}
	return freed;
}

/**
 * unmapped_release_free - give every free unmapped pageblock back now
 *
 * For a caller that needs no page out of the direct map at all (the
 * hibernation check, memfd_exclusive_active()), whatever the high-water
 * mark. Process context. Returns the pages still out of the direct map
 * afterwards: pages in use, and pageblocks that hold any.
 */
unsigned long unmapped_release_free(void)
{
	struct zone *zone;

	for_each_populated_zone(zone)
		unmapped_release(zone, ULONG_MAX, 0);
	return unmapped_pages_out();
}

/* Give back the free unmapped pageblocks above the high-water mark. */
VISIBLE_IF_KUNIT void mfdx_pool_trim(void)
{
	unsigned long keep = READ_ONCE(unmapped_high_water) >> PAGE_SHIFT;
	struct zone *zone;

	for_each_populated_zone(zone)
		unmapped_release(zone, ULONG_MAX, keep);
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_trim);

static void unmapped_trim_fn(struct work_struct *work)
{
	mfdx_pool_trim();
}

/* Shrinker: free unmapped pages of the node in whole pageblocks. */
VISIBLE_IF_KUNIT unsigned long mfdx_pool_shrink_count(struct shrinker *shrinker,
						      struct shrink_control *sc)
{
	pg_data_t *pgdat = NODE_DATA(sc->nid);
	unsigned long nr = 0;
	int z;

	for (z = 0; z < MAX_NR_ZONES; z++)
		nr += round_down(READ_ONCE(pgdat->node_zones[z].nr_free_unmapped),
				 pageblock_nr_pages);
	return nr ? nr : SHRINK_EMPTY;
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_shrink_count);

VISIBLE_IF_KUNIT unsigned long mfdx_pool_shrink_scan(struct shrinker *shrinker,
						     struct shrink_control *sc)
{
	unsigned long want = round_up(max(sc->nr_to_scan, 1UL),
				      pageblock_nr_pages);
	pg_data_t *pgdat = NODE_DATA(sc->nid);
	unsigned long freed = 0;
	int z;

	for (z = MAX_NR_ZONES - 1; z >= 0 && freed < want; z--) {
		struct zone *zone = &pgdat->node_zones[z];

		if (populated_zone(zone))
			freed += unmapped_release(zone, want - freed, 0);
	}
	sc->nr_scanned = freed;
	return freed ? freed : SHRINK_STOP;
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_shrink_scan);

/* sysfs, in /sys/kernel/mm/memfd_exclusive/ (the kobject of memfd_exclusive.c) */

VISIBLE_IF_KUNIT unsigned long mfdx_pool_free_pages(void)
{
	return nr_free_unmapped_pages();
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_free_pages);

VISIBLE_IF_KUNIT unsigned long mfdx_pool_nr_blocks(void)
{
	return atomic_long_read(&unmapped_nr_blocks);
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_nr_blocks);

VISIBLE_IF_KUNIT unsigned long mfdx_pool_get_high_water(void)
{
	return READ_ONCE(unmapped_high_water);
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_get_high_water);

VISIBLE_IF_KUNIT void mfdx_pool_set_high_water(unsigned long bytes)
{
	WRITE_ONCE(unmapped_high_water, bytes);
	mod_delayed_work(system_wq, &unmapped_trim_work, 0);
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_set_high_water);

/* KUnit: is @page in an unmapped pageblock (whatever its state)? */
VISIBLE_IF_KUNIT bool mfdx_pool_owns_page(struct page *page)
{
	return is_migrate_unmapped(get_pageblock_migratetype(page));
}
EXPORT_SYMBOL_IF_KUNIT(mfdx_pool_owns_page);

static ssize_t pool_blocks_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", mfdx_pool_nr_blocks());
}

static struct kobj_attribute pool_blocks_attr = __ATTR_RO(pool_blocks);

static ssize_t pool_free_pages_show(struct kobject *kobj,
				    struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", mfdx_pool_free_pages());
}

static struct kobj_attribute pool_free_pages_attr = __ATTR_RO(pool_free_pages);

#define UNMAPPED_STAT_ATTR(_name, _counter)				\
static ssize_t _name##_show(struct kobject *kobj,			\
			    struct kobj_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%ld\n", atomic_long_read(&(_counter)));	\
}									\
static struct kobj_attribute _name##_attr = __ATTR_RO(_name)

UNMAPPED_STAT_ATTR(pool_block_allocs, unmapped_stat_block_allocs);
UNMAPPED_STAT_ATTR(pool_block_frees, unmapped_stat_block_frees);
UNMAPPED_STAT_ATTR(pool_tlb_flushes, unmapped_stat_tlb_flushes);

static ssize_t pool_high_water_kb_show(struct kobject *kobj,
				       struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", READ_ONCE(unmapped_high_water) >> 10);
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
	/* Trims now. */
	mfdx_pool_set_high_water(kb << 10);
	return count;
}

static struct kobj_attribute pool_high_water_kb_attr =
	__ATTR_RW(pool_high_water_kb);

static struct attribute *mfdx_pool_attrs[] = {
	&pool_blocks_attr.attr,
	&pool_free_pages_attr.attr,
	&pool_block_allocs_attr.attr,
	&pool_block_frees_attr.attr,
	&pool_tlb_flushes_attr.attr,
	&pool_high_water_kb_attr.attr,
	NULL,
};

const struct attribute_group mfdx_pool_attr_group = {
	.attrs = mfdx_pool_attrs,
};

/*
 * mfdx_pool_init - set up unmapped memory: zeroing slots, the pageblock
 * check of the free path, the shrinker
 *
 * Called once from the memfd_exclusive initcall. Returns 0 or -ENOMEM.
 */
int __init mfdx_pool_init(void)
{
	int err;

	unmapped_high_water = UNMAPPED_DEFAULT_HIGH_WATER;
	err = unmapped_zero_slots_init();
	if (err)
		return err;

	unmapped_shrinker = shrinker_alloc(SHRINKER_NUMA_AWARE,
					   "unmapped_alloc");
	if (!unmapped_shrinker)
		return -ENOMEM;
	unmapped_shrinker->count_objects = mfdx_pool_shrink_count;
	unmapped_shrinker->scan_objects = mfdx_pool_shrink_scan;
	unmapped_shrinker->batch = pageblock_nr_pages;
	shrinker_register(unmapped_shrinker);

	unmapped_alloc_enable();
	unmapped_ready = true;
	return 0;
}
