// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for memfd_exclusive (mm/memfd_exclusive.c): pages leave the
 * direct map while allocated and come back zeroed, the seal rules, and the
 * page, region and RLIMIT_MEMLOCK counters.
 */

#include <kunit/test.h>
#include <linux/cred.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/memfd.h>
#include <linux/memfd_exclusive.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/sched/user.h>
#include <linux/set_memory.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

#include "memfd_exclusive_pool.h"

MODULE_IMPORT_NS(EXPORTED_FOR_KUNIT_TESTING);

#define TEST_NAME	MFD_EXCLUSIVE_NAME_PREFIX "kunit"

static void mfdx_test_file_put(void *data)
{
	__fput_sync(data);
}

/* Create a file of @size bytes, closed when the test ends. */
static struct file *mfdx_test_file(struct kunit *test, unsigned int flags,
				   loff_t size)
{
	struct file *file;

	file = memfd_exclusive_file_create(TEST_NAME, flags);
	KUNIT_ASSERT_FALSE(test, IS_ERR(file));
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, mfdx_test_file_put,
						  file));
	KUNIT_ASSERT_EQ(test, 0, vfs_truncate(&file->f_path, size));
	return file;
}

/*
 * Fill a page that is not in the direct map with @c, or check that bytes
 * @from to @to hold @c, through a temporary vmap() alias.
 */
static void mfdx_test_fill(struct kunit *test, struct page *page, int c)
{
	void *addr = vmap(&page, 1, VM_MAP, PAGE_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, addr);
	memset(addr, c, PAGE_SIZE);
	vunmap(addr);
}

static bool mfdx_test_holds(struct kunit *test, struct page *page,
			    size_t from, size_t to, int c)
{
	void *addr = vmap(&page, 1, VM_MAP, PAGE_KERNEL);
	bool ret;

	KUNIT_ASSERT_NOT_NULL(test, addr);
	ret = !memchr_inv(addr + from, c, to - from);
	vunmap(addr);
	return ret;
}

static void mfdx_test_direct_map(struct kunit *test)
{
	unsigned long pages = memfd_exclusive_pages_in_use();
	struct folio *folio;
	struct file *file;
	struct page *page;

	file = mfdx_test_file(test, 0, 2 * PAGE_SIZE);
	folio = memfd_exclusive_get_folio(file, 1);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	page = folio_page(folio, 0);

	KUNIT_EXPECT_FALSE(test, kernel_page_present(page));
	KUNIT_EXPECT_TRUE(test, mfdx_test_holds(test, page, 0, PAGE_SIZE, 0));
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages + 1);
	mfdx_test_fill(test, page, 0xa5);

	/*
	 * Shrinking releases the page to the direct-map pool, which keeps it
	 * out of the direct map and zeroes it once our reference is gone
	 * (mm/memfd_exclusive_pool_kunit.c checks the zeroing).
	 */
	KUNIT_ASSERT_EQ(test, 0, vfs_truncate(&file->f_path, PAGE_SIZE));
	KUNIT_EXPECT_FALSE(test, kernel_page_present(page));
	KUNIT_EXPECT_TRUE(test, mfdx_pool_owns_page(page));
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages);
	folio_put(folio);
}

static void mfdx_test_beyond_eof(struct kunit *test)
{
	struct folio *folio;
	struct file *file;

	file = mfdx_test_file(test, 0, PAGE_SIZE + 1);
	folio = memfd_exclusive_get_folio(file, 1);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	folio_put(folio);
	KUNIT_EXPECT_EQ(test, PTR_ERR(memfd_exclusive_get_folio(file, 2)),
			-EINVAL);

	KUNIT_ASSERT_EQ(test, 0, vfs_truncate(&file->f_path, 0));
	KUNIT_EXPECT_EQ(test, PTR_ERR(memfd_exclusive_get_folio(file, 0)),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, file->f_mapping->nrpages, 0);
}

/* Shrinking to a partial page frees the rest and zeroes the tail. */
static void mfdx_test_shrink(struct kunit *test)
{
	unsigned long pages = memfd_exclusive_pages_in_use();
	struct folio *folio[4];
	struct file *file;
	int i;

	file = mfdx_test_file(test, 0, 4 * PAGE_SIZE);
	for (i = 0; i < 4; i++) {
		folio[i] = memfd_exclusive_get_folio(file, i);
		KUNIT_ASSERT_FALSE(test, IS_ERR(folio[i]));
		mfdx_test_fill(test, folio_page(folio[i], 0), 0x5a);
		folio_put(folio[i]);
	}
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages + 4);

	KUNIT_ASSERT_EQ(test, 0,
			vfs_truncate(&file->f_path, PAGE_SIZE + 100));
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages + 2);
	KUNIT_EXPECT_EQ(test, file->f_mapping->nrpages, 2);

	folio[1] = memfd_exclusive_get_folio(file, 1);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio[1]));
	KUNIT_EXPECT_FALSE(test, kernel_page_present(folio_page(folio[1], 0)));
	KUNIT_EXPECT_TRUE(test, mfdx_test_holds(test, folio_page(folio[1], 0),
						0, 100, 0x5a));
	KUNIT_EXPECT_TRUE(test, mfdx_test_holds(test, folio_page(folio[1], 0),
						100, PAGE_SIZE, 0));
	folio_put(folio[1]);
}

static void mfdx_test_counters(struct kunit *test)
{
	unsigned long regions = memfd_exclusive_nr_regions();
	unsigned long pages = memfd_exclusive_pages_in_use();
	struct user_struct *user = current_user();
	long locked = atomic_long_read(&user->locked_vm);
	struct folio *folio;
	struct file *file;

	file = memfd_exclusive_file_create(TEST_NAME, 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(file));
	KUNIT_EXPECT_EQ(test, memfd_exclusive_nr_regions(), regions + 1);
	KUNIT_EXPECT_TRUE(test, memfd_exclusive_active());

	if (vfs_truncate(&file->f_path, 3 * PAGE_SIZE)) {
		__fput_sync(file);
		KUNIT_FAIL(test, "ftruncate failed");
		return;
	}
	folio = memfd_exclusive_get_folio(file, 0);
	if (!IS_ERR(folio))
		folio_put(folio);
	folio = memfd_exclusive_get_folio(file, 2);
	if (!IS_ERR(folio))
		folio_put(folio);
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages + 2);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&user->locked_vm), locked + 2);

	__fput_sync(file);
	KUNIT_EXPECT_EQ(test, memfd_exclusive_nr_regions(), regions);
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&user->locked_vm), locked);
}

/*
 * The inode outlives its last file (an O_PATH open of /proc/PID/fd/N holds
 * it that way): its pages, RLIMIT_MEMLOCK charge and region count stay until
 * the last inode reference goes.
 */
static void mfdx_test_inode_outlives_file(struct kunit *test)
{
	unsigned long regions = memfd_exclusive_nr_regions();
	unsigned long pages = memfd_exclusive_pages_in_use();
	struct user_struct *user = current_user();
	long locked = atomic_long_read(&user->locked_vm);
	struct folio *folio;
	struct inode *inode;
	struct file *file;

	file = memfd_exclusive_file_create(TEST_NAME, 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(file));
	inode = file_inode(file);
	if (vfs_truncate(&file->f_path, 2 * PAGE_SIZE)) {
		__fput_sync(file);
		KUNIT_FAIL(test, "ftruncate failed");
		return;
	}
	folio = memfd_exclusive_get_folio(file, 1);
	KUNIT_EXPECT_FALSE(test, IS_ERR(folio));
	if (!IS_ERR(folio))
		folio_put(folio);

	ihold(inode);
	__fput_sync(file);
	KUNIT_EXPECT_EQ(test, memfd_exclusive_nr_regions(), regions + 1);
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages + 1);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&user->locked_vm), locked + 1);
	KUNIT_EXPECT_EQ(test, inode->i_mapping->nrpages, 1UL);
	KUNIT_EXPECT_TRUE(test, memfd_exclusive_active());

	iput(inode);
	KUNIT_EXPECT_EQ(test, memfd_exclusive_nr_regions(), regions);
	KUNIT_EXPECT_EQ(test, memfd_exclusive_pages_in_use(), pages);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&user->locked_vm), locked);
}

static void mfdx_test_seal_default(struct kunit *test)
{
	struct file *file = mfdx_test_file(test, 0, PAGE_SIZE);

	KUNIT_EXPECT_EQ(test, memfd_fcntl(file, F_GET_SEALS, 0), F_SEAL_SEAL);
	KUNIT_EXPECT_EQ(test, memfd_fcntl(file, F_ADD_SEALS, F_SEAL_GROW),
			-EPERM);
	/* Without seals the file resizes freely. */
	KUNIT_EXPECT_EQ(test, vfs_truncate(&file->f_path, 8 * PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, vfs_truncate(&file->f_path, 0), 0);
}

static void mfdx_test_seal_size(struct kunit *test)
{
	struct file *file;

	file = mfdx_test_file(test, MFD_EXCLUSIVE_ALLOW_SEALING,
			      3 * PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, memfd_fcntl(file, F_GET_SEALS, 0), 0);
	KUNIT_EXPECT_EQ(test, memfd_fcntl(file, F_ADD_SEALS, 0x8000), -EINVAL);

	KUNIT_ASSERT_EQ(test, memfd_fcntl(file, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	KUNIT_EXPECT_EQ(test, vfs_truncate(&file->f_path, PAGE_SIZE), -EPERM);
	KUNIT_EXPECT_EQ(test, vfs_truncate(&file->f_path, 4 * PAGE_SIZE), 0);

	KUNIT_ASSERT_EQ(test, memfd_fcntl(file, F_ADD_SEALS, F_SEAL_GROW), 0);
	KUNIT_EXPECT_EQ(test, vfs_truncate(&file->f_path, 5 * PAGE_SIZE),
			-EPERM);
	KUNIT_EXPECT_EQ(test, vfs_truncate(&file->f_path, 4 * PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, i_size_read(file_inode(file)), 4 * PAGE_SIZE);

	KUNIT_ASSERT_EQ(test, memfd_fcntl(file, F_ADD_SEALS, F_SEAL_SEAL), 0);
	KUNIT_EXPECT_EQ(test, memfd_fcntl(file, F_ADD_SEALS, F_SEAL_WRITE),
			-EPERM);
	KUNIT_EXPECT_EQ(test, memfd_fcntl(file, F_GET_SEALS, 0),
			F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

static void mfdx_test_seal_write(struct kunit *test)
{
	unsigned long vm_flags;
	struct file *file;

	file = mfdx_test_file(test, MFD_EXCLUSIVE_ALLOW_SEALING, PAGE_SIZE);

	/* A shared writable mapping exists: F_SEAL_WRITE must wait for it. */
	KUNIT_ASSERT_EQ(test, mapping_map_writable(file->f_mapping), 0);
	KUNIT_EXPECT_EQ(test, memfd_fcntl(file, F_ADD_SEALS, F_SEAL_WRITE),
			-EBUSY);
	mapping_unmap_writable(file->f_mapping);
	KUNIT_ASSERT_EQ(test, memfd_fcntl(file, F_ADD_SEALS, F_SEAL_WRITE), 0);

	vm_flags = VM_SHARED | VM_MAYSHARE | VM_READ | VM_WRITE | VM_MAYWRITE;
	KUNIT_EXPECT_EQ(test, memfd_check_seals_mmap(file, &vm_flags), -EPERM);
	KUNIT_EXPECT_EQ(test, mapping_map_writable(file->f_mapping), -EPERM);

	vm_flags = VM_SHARED | VM_MAYSHARE | VM_READ | VM_MAYWRITE;
	KUNIT_EXPECT_EQ(test, memfd_check_seals_mmap(file, &vm_flags), 0);
	KUNIT_EXPECT_FALSE(test, vm_flags & VM_MAYWRITE);
}

static void mfdx_test_seal_future_write(struct kunit *test)
{
	unsigned long vm_flags;
	struct file *file;

	file = mfdx_test_file(test, MFD_EXCLUSIVE_ALLOW_SEALING, PAGE_SIZE);

	/* Unlike F_SEAL_WRITE, existing writable mappings do not matter. */
	KUNIT_ASSERT_EQ(test, mapping_map_writable(file->f_mapping), 0);
	KUNIT_EXPECT_EQ(test,
			memfd_fcntl(file, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), 0);
	mapping_unmap_writable(file->f_mapping);

	vm_flags = VM_SHARED | VM_MAYSHARE | VM_READ | VM_WRITE | VM_MAYWRITE;
	KUNIT_EXPECT_EQ(test, memfd_check_seals_mmap(file, &vm_flags), -EPERM);

	vm_flags = VM_SHARED | VM_MAYSHARE | VM_READ | VM_MAYWRITE;
	KUNIT_EXPECT_EQ(test, memfd_check_seals_mmap(file, &vm_flags), 0);
	KUNIT_EXPECT_FALSE(test, vm_flags & VM_MAYWRITE);
}

static void mfdx_test_mapping_flags(struct kunit *test)
{
	struct file *file = mfdx_test_file(test, 0, 0);

	KUNIT_EXPECT_TRUE(test, mapping_no_direct_map(file->f_mapping));
	KUNIT_EXPECT_TRUE(test, mapping_unevictable(file->f_mapping));
	KUNIT_EXPECT_EQ(test, file_inode(file)->i_sb->s_magic,
			MEMFD_EXCLUSIVE_MAGIC);
}

/* Booted with memfd_exclusive.enable=0: there is nothing to test. */
static int mfdx_test_init(struct kunit *test)
{
	if (!memfd_exclusive_available())
		kunit_skip(test, "memfd_exclusive is disabled");
	return 0;
}

static struct kunit_case memfd_exclusive_test_cases[] = {
	KUNIT_CASE(mfdx_test_direct_map),
	KUNIT_CASE(mfdx_test_beyond_eof),
	KUNIT_CASE(mfdx_test_shrink),
	KUNIT_CASE(mfdx_test_counters),
	KUNIT_CASE(mfdx_test_inode_outlives_file),
	KUNIT_CASE(mfdx_test_seal_default),
	KUNIT_CASE(mfdx_test_seal_size),
	KUNIT_CASE(mfdx_test_seal_write),
	KUNIT_CASE(mfdx_test_seal_future_write),
	KUNIT_CASE(mfdx_test_mapping_flags),
	{}
};

static struct kunit_suite memfd_exclusive_test_suite = {
	.name = "memfd_exclusive",
	.init = mfdx_test_init,
	.test_cases = memfd_exclusive_test_cases,
};

kunit_test_suite(memfd_exclusive_test_suite);

MODULE_DESCRIPTION("KUnit tests for memfd_exclusive");
MODULE_LICENSE("GPL");
