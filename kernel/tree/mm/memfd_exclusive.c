// SPDX-License-Identifier: GPL-2.0
/*
 * memfd_exclusive(2): memory file descriptors whose pages are removed from
 * the kernel's direct map for as long as they are allocated.
 *
 * The guarantees are those of memfd_secret(2) (mm/secretmem.c): no kernel
 * mapping of the pages, no GUP (the mapping carries AS_NO_DIRECT_MAP), no
 * read(2)/write(2), MAP_SHARED only, never executable, unevictable and
 * unmovable, charged to RLIMIT_MEMLOCK and to the memory cgroup, left out of
 * core dumps, and no hibernation while any such file exists. Booting with
 * memfd_exclusive.enable=0 disables the system call and its sysfs directory.
 *
 * On top of that the file has a name, shown as "/memfd_exclusive:NAME" in
 * /proc/PID/maps and fd links, can grow and shrink with ftruncate(2), and
 * takes memfd seals (F_SEAL_SEAL, SHRINK, GROW, WRITE, FUTURE_WRITE and EXEC)
 * through the fcntl(2) code in mm/memfd.c.
 *
 * Lifetimes: all per-file state lives in struct mfdx_inode, which embeds the
 * VFS inode (as shmem_inode_info does in mm/shmem.c) and is allocated and
 * freed by the super_operations of the pseudo filesystem. The inode can be
 * reached without any open file (an O_PATH open of /proc/PID/fd/N or of
 * /proc/PID/map_files/..., then truncate(2), chmod(2) and the like on that
 * path), so nothing is torn down at ->release: the pages, the RLIMIT_MEMLOCK
 * charge and the region count go in ->evict_inode, when the last reference
 * to the inode is dropped; memory cgroup charges go with each page, through
 * the page allocator's free path.
 *
 * Locking: the mapping's invalidate_lock is held shared while a fault looks
 * up or inserts a page and exclusive while the size changes, so a fault never
 * inserts a page beyond EOF. Seals are changed under the inode lock, which
 * ->setattr also holds.
 */

#define pr_fmt(fmt) "memfd_exclusive: " fmt

#include <linux/cred.h>
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/kobject.h>
#include <linux/memfd_exclusive.h>
#include <linux/mm.h>
#include <linux/mount.h>
#include <linux/pagemap.h>
#include <linux/pseudo_fs.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>
#include <linux/set_memory.h>
#include <linux/slab.h>
#include <linux/syscalls.h>
#include <linux/sysfs.h>
#include <kunit/visibility.h>

#include <asm/tlbflush.h>

#include "internal.h"
#include "memfd_exclusive_pool.h"

#define MFDX_PREFIX_LEN		(sizeof(MFD_EXCLUSIVE_NAME_PREFIX) - 1)

static bool mfdx_enable __ro_after_init = true;
module_param_named(enable, mfdx_enable, bool, 0400);
MODULE_PARM_DESC(enable, "Enable the memfd_exclusive(2) system call");

static struct vfsmount *mfdx_mnt __ro_after_init;

/* Live files (regions) and pages held by all of them, for sysfs. */
static atomic_t mfdx_nr_regions = ATOMIC_INIT(0);
static atomic_long_t mfdx_nr_pages = ATOMIC_LONG_INIT(0);

/*
 * struct mfdx_inode - a memfd_exclusive file
 * @user: the creator, charged for RLIMIT_MEMLOCK; a reference held until the
 *	  inode is evicted
 * @nr_accounted: pages charged to @user, at least the pages in the page
 *		  cache (a page taken away by memory_failure() stays charged
 *		  until the next shrink or the eviction)
 * @seals: F_SEAL_*, changed under the inode lock
 * @vfs_inode: the VFS inode
 */
struct mfdx_inode {
	struct user_struct *user;
	atomic_long_t nr_accounted;
	unsigned int seals;
	struct inode vfs_inode;
};

static struct kmem_cache *mfdx_inode_cachep __ro_after_init;

static inline struct mfdx_inode *MFDX_I(struct inode *inode)
{
	return container_of(inode, struct mfdx_inode, vfs_inode);
}

/*
 * Hibernation is refused while any page is out of the direct map: the image
 * would not hold it, and resume would write it through the direct map. While
 * any file (inode) exists, its pages may be in use or faulted in at any time:
 * refuse. With none left, only free pool memory can still be out: give it
 * back to the direct map now, so that a system that once used
 * memfd_exclusive does not lose hibernation for good to the pool's idle
 * pageblocks, and refuse only if pages are still out after that (a poisoned
 * page, or a page whose last reference is on its way to the free lists).
 * Process context: hibernation_available() and its callers.
 */
bool memfd_exclusive_active(void)
{
	if (atomic_read(&mfdx_nr_regions))
		return true;
	return mfdx_pool_pages_out() && mfdx_pool_release_free();
}

VISIBLE_IF_KUNIT unsigned long memfd_exclusive_pages_in_use(void)
{
	return atomic_long_read(&mfdx_nr_pages);
}
EXPORT_SYMBOL_IF_KUNIT(memfd_exclusive_pages_in_use);

VISIBLE_IF_KUNIT unsigned long memfd_exclusive_nr_regions(void)
{
	return atomic_read(&mfdx_nr_regions);
}
EXPORT_SYMBOL_IF_KUNIT(memfd_exclusive_nr_regions);

/*
 * Page allocation and release. Every page of every file comes from
 * mfdx_alloc_folio() and goes back through mfdx_release_folio(), so that a
 * pool of pages taken off the direct map in larger blocks can replace this
 * pair without touching the rest of the file.
 */

/*
 * mfdx_alloc_folio - get a zeroed order-0 folio that is not in the direct map
 * @gfp: allocation flags
 *
 * The page comes from the unmapped free lists of the page allocator
 * (mm/memfd_exclusive_pool.c): pageblocks of 2 MiB removed from the direct
 * map as a whole. Returns the folio with one reference, or an ERR_PTR of
 * mfdx_pool_alloc(). The kernel TLB holds no entry for the page. The last
 * folio_put() frees it through the page allocator, which zeroes it and keeps
 * it out of the direct map.
 */
static struct folio *mfdx_alloc_folio(gfp_t gfp)
{
	struct folio *folio;

	folio = mfdx_pool_alloc(gfp);
	if (!IS_ERR(folio))
		atomic_long_inc(&mfdx_nr_pages);
	return folio;
}

/*
 * mfdx_release_folio - a folio of mfdx_alloc_folio() leaves its file
 * @folio: the folio, no longer mapped to userspace nor in the page cache
 *
 * Only counts: the folio goes back to the unmapped lists when its last
 * reference is dropped, through the page allocator's own free path. Does not
 * touch the reference count, which may be frozen (->free_folio called from
 * __remove_mapping()).
 */
static void mfdx_release_folio(struct folio *folio)
{
	atomic_long_dec(&mfdx_nr_pages);
}

/*
 * mfdx_zero_tail - zero a folio from @from to its end
 *
 * Used when the file shrinks to a size that is not a multiple of PAGE_SIZE.
 * Zeroes through a per-CPU temporary mapping: the page stays out of the
 * direct map.
 */
static void mfdx_zero_tail(struct folio *folio, size_t from)
{
	mfdx_pool_zero_segment(folio, from, folio_size(folio));
}

/*
 * RLIMIT_MEMLOCK accounting, per page as it is faulted in, against the user
 * that created the file and the limit of the task that faults. As for
 * mlock_future_ok() in mfdx_mmap() and user_shm_lock() (mm/mlock.c),
 * CAP_IPC_LOCK lifts the limit; the pages are still counted.
 */
static bool mfdx_account(struct mfdx_inode *mi, unsigned long nr_pages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	unsigned long cur = atomic_long_read(&mi->user->locked_vm);
	bool unlimited = false;

	do {
		if (!unlimited && cur + nr_pages > limit) {
			if (!capable(CAP_IPC_LOCK))
				return false;
			unlimited = true;
		}
	} while (!atomic_long_try_cmpxchg(&mi->user->locked_vm, &cur,
					  cur + nr_pages));

	atomic_long_add(nr_pages, &mi->nr_accounted);
	return true;
}

static void mfdx_unaccount(struct mfdx_inode *mi, unsigned long nr_pages)
{
	atomic_long_sub(nr_pages, &mi->user->locked_vm);
	atomic_long_sub(nr_pages, &mi->nr_accounted);
}

/*
 * mfdx_get_folio - find or create the page at @index
 *
 * Called with the invalidate_lock held shared. Returns the folio locked and
 * with a reference, or an ERR_PTR: -EINVAL at or beyond EOF, -ENOSPC when
 * RLIMIT_MEMLOCK or the memory cgroup's limit is exhausted, -ENOMEM when no
 * page can be allocated, -EHWPOISON when the page at @index was poisoned.
 */
static struct folio *mfdx_get_folio(struct inode *inode, pgoff_t index)
{
	struct address_space *mapping = inode->i_mapping;
	struct mfdx_inode *mi = MFDX_I(inode);
	gfp_t gfp = mapping_gfp_mask(mapping);
	struct folio *folio;
	int err;

	if (index >= DIV_ROUND_UP(i_size_read(inode), PAGE_SIZE))
		return ERR_PTR(-EINVAL);

	for (;;) {
		folio = filemap_lock_folio(mapping, index);
		if (!IS_ERR(folio)) {
			/*
			 * memory_failure() left a poisoned page in place
			 * (->error_remove_folio): its data is lost, and it
			 * must never be mapped or read again.
			 */
			if (folio_test_hwpoison(folio)) {
				folio_unlock(folio);
				folio_put(folio);
				return ERR_PTR(-EHWPOISON);
			}
			return folio;
		}

		if (!mfdx_account(mi, 1))
			return ERR_PTR(-ENOSPC);

		folio = mfdx_alloc_folio(gfp);
		if (IS_ERR(folio)) {
			mfdx_unaccount(mi, 1);
			return folio;
		}

		__folio_mark_uptodate(folio);
		/*
		 * Charges the memory cgroup and returns the folio locked. The
		 * pages cannot be reclaimed, so over memory.max the memcg OOM
		 * killer could only kill: __GFP_RETRY_MAYFAIL makes the charge
		 * reclaim what else it can and then fail, and the fault gets
		 * SIGBUS as over RLIMIT_MEMLOCK. (The task's next ordinary
		 * charge in the full cgroup, an anonymous fault say, still
		 * invokes the memcg OOM killer as for any other task.)
		 */
		err = filemap_add_folio(mapping, folio, index,
					gfp | __GFP_RETRY_MAYFAIL);
		if (!err)
			return folio;

		mfdx_unaccount(mi, 1);
		mfdx_release_folio(folio);
		folio_put(folio);
		if (err == -ENOMEM)
			return ERR_PTR(-ENOSPC);
		if (err != -EEXIST)
			return ERR_PTR(err);
	}
}

/*
 * memfd_exclusive_get_folio - the fault path without a user mapping
 *
 * Returns the folio at @index unlocked, with a reference the caller drops,
 * or an ERR_PTR as mfdx_get_folio(). For the KUnit suite.
 */
VISIBLE_IF_KUNIT
struct folio *memfd_exclusive_get_folio(struct file *file, pgoff_t index)
{
	struct address_space *mapping = file->f_mapping;
	struct folio *folio;

	filemap_invalidate_lock_shared(mapping);
	folio = mfdx_get_folio(file_inode(file), index);
	filemap_invalidate_unlock_shared(mapping);
	if (!IS_ERR(folio))
		folio_unlock(folio);
	return folio;
}
EXPORT_SYMBOL_IF_KUNIT(memfd_exclusive_get_folio);

static vm_fault_t mfdx_fault(struct vm_fault *vmf)
{
	struct file *file = vmf->vma->vm_file;
	struct address_space *mapping = file->f_mapping;
	struct folio *folio;

	filemap_invalidate_lock_shared(mapping);
	folio = mfdx_get_folio(file_inode(file), vmf->pgoff);
	filemap_invalidate_unlock_shared(mapping);

	if (IS_ERR(folio)) {
		if (PTR_ERR(folio) == -EHWPOISON)
			return VM_FAULT_HWPOISON;
		/*
		 * -ENOMEM: the pool is empty and no free pageblock could be
		 * taken out of the direct map. That allocation is of pageblock
		 * order, for which the page allocator never invokes the OOM
		 * killer, so VM_FAULT_OOM would only make
		 * pagefault_out_of_memory() retry the fault forever. Fail it
		 * as hugetlbfs does when its pool is empty.
		 */
		if (PTR_ERR(folio) == -ENOMEM)
			pr_warn_ratelimited("no free pageblock to take out of the direct map: SIGBUS to %s[%d]\n",
					    current->comm, task_pid_nr(current));
		/* Beyond EOF, over RLIMIT_MEMLOCK or over memory.max. */
		return VM_FAULT_SIGBUS;
	}

	vmf->page = folio_file_page(folio, vmf->pgoff);
	return VM_FAULT_LOCKED;
}

static const struct vm_operations_struct mfdx_vm_ops = {
	.fault = mfdx_fault,
};

static int mfdx_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (!(vma->vm_flags & (VM_SHARED | VM_MAYSHARE)))
		return -EINVAL;

	/*
	 * The mount is MNT_NOEXEC, so do_mmap() already refuses PROT_EXEC;
	 * clearing VM_MAYEXEC also keeps mprotect() from adding it.
	 */
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;

	/*
	 * As mm/secretmem.c: the mapping counts as locked memory, checked
	 * here so that a caller over RLIMIT_MEMLOCK gets EAGAIN from mmap()
	 * rather than SIGBUS from a later fault. The pages themselves are
	 * still charged to the file's creator when they are faulted in.
	 */
	if (!mlock_future_ok(vma->vm_mm, vma->vm_flags | VM_LOCKED,
			     vma->vm_end - vma->vm_start))
		return -EAGAIN;
	vm_flags_mod(vma, VM_LOCKED | VM_DONTDUMP, VM_MAYEXEC);
	vma->vm_ops = &mfdx_vm_ops;
	return 0;
}

/*
 * No read, write, splice or fallocate: the pages are reachable by mmap only.
 * No ->release either: the inode outlives its last file (see the top).
 */
static const struct file_operations mfdx_fops = {
	.mmap		= mfdx_mmap,
	.llseek		= noop_llseek,
};

unsigned int *memfd_exclusive_file_seals_ptr(struct file *file)
{
	if (file->f_op != &mfdx_fops)
		return NULL;
	return &MFDX_I(file_inode(file))->seals;
}

static int mfdx_migrate_folio(struct address_space *mapping,
			      struct folio *dst, struct folio *src,
			      enum migrate_mode mode)
{
	return -EBUSY;
}

static void mfdx_free_folio(struct folio *folio)
{
	mfdx_release_folio(folio);
}

/*
 * memory_failure() on a page in use: keep the poisoned folio in the page
 * cache, as shmem does, so that a later fault at its offset gets SIGBUS
 * (VM_FAULT_HWPOISON) instead of a fresh zeroed page silently replacing the
 * lost data. The folio goes with the file, and the page allocator never
 * takes a poisoned page back (free_pages_prepare()).
 */
static int mfdx_error_remove_folio(struct address_space *mapping,
				   struct folio *folio)
{
	return 0;
}

static const struct address_space_operations mfdx_aops = {
	.dirty_folio	= noop_dirty_folio,
	.free_folio	= mfdx_free_folio,
	.migrate_folio	= mfdx_migrate_folio,
	.error_remove_folio = mfdx_error_remove_folio,
};

/* Called with the inode lock held. */
static int mfdx_resize(struct inode *inode, loff_t newsize)
{
	struct address_space *mapping = inode->i_mapping;
	struct mfdx_inode *mi = MFDX_I(inode);
	loff_t oldsize = inode->i_size;
	struct folio *folio;
	loff_t holebegin;
	long excess;

	if (newsize < oldsize && (mi->seals & F_SEAL_SHRINK))
		return -EPERM;
	if (newsize > oldsize && (mi->seals & F_SEAL_GROW))
		return -EPERM;
	if (newsize == oldsize)
		return 0;

	filemap_invalidate_lock(mapping);
	i_size_write(inode, newsize);
	if (newsize < oldsize) {
		/*
		 * Not truncate_pagecache(): it would zero the partial page
		 * through the direct map, where the page is not.
		 */
		holebegin = round_up(newsize, PAGE_SIZE);
		unmap_mapping_range(mapping, holebegin, 0, 1);
		truncate_inode_pages(mapping, holebegin);
		/*
		 * No fault can add a page meanwhile (invalidate_lock), so
		 * whatever is charged beyond the pages left in the cache was
		 * truncated now or taken by memory_failure() earlier.
		 */
		excess = atomic_long_read(&mi->nr_accounted) - mapping->nrpages;
		if (excess > 0)
			mfdx_unaccount(mi, excess);

		if (offset_in_page(newsize)) {
			folio = filemap_lock_folio(mapping,
						   newsize >> PAGE_SHIFT);
			if (!IS_ERR(folio)) {
				/* Never write to a poisoned page. */
				if (!folio_test_hwpoison(folio))
					mfdx_zero_tail(folio,
						       offset_in_page(newsize));
				folio_unlock(folio);
				folio_put(folio);
			}
		}
	}
	filemap_invalidate_unlock(mapping);
	return 0;
}

static int mfdx_setattr(struct mnt_idmap *idmap, struct dentry *dentry,
			struct iattr *attr)
{
	struct inode *inode = d_inode(dentry);
	struct mfdx_inode *mi = MFDX_I(inode);
	int err;

	err = setattr_prepare(idmap, dentry, attr);
	if (err)
		return err;

	if ((attr->ia_valid & ATTR_MODE) && (mi->seals & F_SEAL_EXEC) &&
	    ((inode->i_mode ^ attr->ia_mode) & 0111))
		return -EPERM;

	if (attr->ia_valid & ATTR_SIZE) {
		err = mfdx_resize(inode, attr->ia_size);
		if (err)
			return err;
	}

	setattr_copy(idmap, inode, attr);
	return 0;
}

static const struct inode_operations mfdx_iops = {
	.setattr	= mfdx_setattr,
};

/*
 * memfd_exclusive_file_create - create a file
 * @name: the whole dentry name, "memfd_exclusive:" included
 * @flags: MFD_EXCLUSIVE_* flags, already checked
 *
 * Returns the file (O_RDWR, size 0) or an ERR_PTR.
 */
VISIBLE_IF_KUNIT
struct file *memfd_exclusive_file_create(const char *name, unsigned int flags)
{
	struct mfdx_inode *mi;
	struct inode *inode;
	struct file *file;

	/* Calls mfdx_alloc_inode(); every later iput() may evict it. */
	inode = anon_inode_make_secure_inode(mfdx_mnt->mnt_sb,
					     "[memfd_exclusive]", NULL);
	if (IS_ERR(inode))
		return ERR_CAST(inode);

	mi = MFDX_I(inode);
	mi->user = get_uid(current_user());
	if (!(flags & MFD_EXCLUSIVE_ALLOW_SEALING))
		mi->seals = F_SEAL_SEAL;
	/* Counted from here; mfdx_evict_inode() uncounts, even on error. */
	atomic_inc(&mfdx_nr_regions);

	inode->i_op = &mfdx_iops;
	inode->i_mapping->a_ops = &mfdx_aops;
	mapping_set_gfp_mask(inode->i_mapping, GFP_HIGHUSER);
	mapping_set_unevictable(inode->i_mapping);
	mapping_set_no_direct_map(inode->i_mapping);
	inode->i_mode |= S_IFREG;
	inode->i_size = 0;

	file = alloc_file_pseudo(inode, mfdx_mnt, name, O_RDWR, &mfdx_fops);
	if (IS_ERR(file)) {
		iput(inode);
		return file;
	}
	file->f_flags |= O_LARGEFILE;
	return file;
}
EXPORT_SYMBOL_IF_KUNIT(memfd_exclusive_file_create);

/* Enabled at boot and initialised: the sysfs directory exists. */
VISIBLE_IF_KUNIT bool memfd_exclusive_available(void)
{
	return mfdx_enable && mfdx_mnt;
}
EXPORT_SYMBOL_IF_KUNIT(memfd_exclusive_available);

SYSCALL_DEFINE2(memfd_exclusive, const char __user *, uname,
		unsigned int, flags)
{
	struct file *file;
	char *name;
	long len;
	int fd, err;

	/* Disabled: behave as a kernel without the call. */
	if (!memfd_exclusive_available())
		return sys_ni_syscall();

	if (flags & ~MFD_EXCLUSIVE_ALL_FLAGS)
		return -EINVAL;

	name = kmalloc(MFDX_PREFIX_LEN + MFD_EXCLUSIVE_NAME_MAX_LEN + 1,
		       GFP_KERNEL);
	if (!name)
		return -ENOMEM;
	memcpy(name, MFD_EXCLUSIVE_NAME_PREFIX, MFDX_PREFIX_LEN);
	len = strncpy_from_user(name + MFDX_PREFIX_LEN, uname,
				MFD_EXCLUSIVE_NAME_MAX_LEN + 1);
	if (len < 0) {
		err = -EFAULT;
		goto err_name;
	}
	if (len > MFD_EXCLUSIVE_NAME_MAX_LEN) {
		err = -EINVAL;
		goto err_name;
	}

	fd = get_unused_fd_flags(flags & MFD_EXCLUSIVE_CLOEXEC ? O_CLOEXEC : 0);
	if (fd < 0) {
		err = fd;
		goto err_name;
	}

	file = memfd_exclusive_file_create(name, flags);
	if (IS_ERR(file)) {
		err = PTR_ERR(file);
		goto err_fd;
	}

	kfree(name);
	fd_install(fd, file);
	return fd;

err_fd:
	put_unused_fd(fd);
err_name:
	kfree(name);
	return err;
}

/* "/memfd_exclusive:NAME" in /proc/PID/maps and fd links, like memfd. */
static char *mfdx_dname(struct dentry *dentry, char *buf, int buflen)
{
	unsigned int len = dentry->d_name.len;
	char *p;

	if (len + 2 > buflen)
		return ERR_PTR(-ENAMETOOLONG);
	p = buf + buflen - len - 2;
	p[0] = '/';
	memcpy(p + 1, dentry->d_name.name, len);
	p[len + 1] = '\0';
	return p;
}

static const struct dentry_operations mfdx_dops = {
	.d_dname	= mfdx_dname,
};

static struct inode *mfdx_alloc_inode(struct super_block *sb)
{
	struct mfdx_inode *mi;

	mi = alloc_inode_sb(sb, mfdx_inode_cachep, GFP_KERNEL);
	if (!mi)
		return NULL;
	mi->user = NULL;
	atomic_long_set(&mi->nr_accounted, 0);
	mi->seals = 0;
	return &mi->vfs_inode;
}

/*
 * The last reference to the inode is gone: no file, no O_PATH file, no
 * mapping can reach the pages any more. They go back to the page allocator
 * (which zeroes them while they are still out of the direct map), then the
 * charges and counts they held.
 */
static void mfdx_evict_inode(struct inode *inode)
{
	struct mfdx_inode *mi = MFDX_I(inode);

	truncate_inode_pages_final(&inode->i_data);
	clear_inode(inode);
	/* NULL only when mfdx_alloc_inode()'s caller failed before create. */
	if (mi->user) {
		mfdx_unaccount(mi, atomic_long_read(&mi->nr_accounted));
		free_uid(mi->user);
		mi->user = NULL;
		atomic_dec(&mfdx_nr_regions);
	}
}

static void mfdx_free_inode(struct inode *inode)
{
	kmem_cache_free(mfdx_inode_cachep, MFDX_I(inode));
}

static const struct super_operations mfdx_sops = {
	.alloc_inode	= mfdx_alloc_inode,
	.free_inode	= mfdx_free_inode,
	.evict_inode	= mfdx_evict_inode,
	.drop_inode	= generic_delete_inode,
	.statfs		= simple_statfs,
};

static void mfdx_inode_init_once(void *data)
{
	struct mfdx_inode *mi = data;

	inode_init_once(&mi->vfs_inode);
}

static int mfdx_init_fs_context(struct fs_context *fc)
{
	struct pseudo_fs_context *ctx;

	ctx = init_pseudo(fc, MEMFD_EXCLUSIVE_MAGIC);
	if (!ctx)
		return -ENOMEM;
	ctx->dops = &mfdx_dops;
	ctx->ops = &mfdx_sops;
	return 0;
}

static struct file_system_type mfdx_fs = {
	.name			= "memfd_exclusive",
	.init_fs_context	= mfdx_init_fs_context,
	.kill_sb		= kill_anon_super,
};

static ssize_t pages_in_use_show(struct kobject *kobj,
				 struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%ld\n", atomic_long_read(&mfdx_nr_pages));
}

static struct kobj_attribute pages_in_use_attr = __ATTR_RO(pages_in_use);

static ssize_t regions_show(struct kobject *kobj, struct kobj_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&mfdx_nr_regions));
}

static struct kobj_attribute regions_attr = __ATTR_RO(regions);

static struct attribute *mfdx_attrs[] = {
	&pages_in_use_attr.attr,
	&regions_attr.attr,
	NULL,
};

static const struct attribute_group mfdx_attr_group = {
	.attrs = mfdx_attrs,
};

static const struct attribute_group *mfdx_attr_groups[] = {
	&mfdx_attr_group,
	&mfdx_pool_attr_group,	/* statistics and tunable of the pool */
	NULL,
};

static int __init mfdx_sysfs_init(void)
{
	struct kobject *kobj;
	int err;

	kobj = kobject_create_and_add("memfd_exclusive", mm_kobj);
	if (!kobj)
		return -ENOMEM;

	err = sysfs_create_groups(kobj, mfdx_attr_groups);
	if (err)
		kobject_put(kobj);
	return err;
}

static int __init memfd_exclusive_init(void)
{
	struct vfsmount *mnt;
	int err;

	if (!mfdx_enable || !can_set_direct_map()) {
		pr_info("disabled\n");
		return 0;
	}

	err = mfdx_pool_init();
	if (err)
		return err;

	mfdx_inode_cachep = kmem_cache_create("memfd_exclusive_inode_cache",
					      sizeof(struct mfdx_inode), 0,
					      SLAB_ACCOUNT, mfdx_inode_init_once);
	if (!mfdx_inode_cachep)
		return -ENOMEM;

	mnt = kern_mount(&mfdx_fs);
	if (IS_ERR(mnt)) {
		kmem_cache_destroy(mfdx_inode_cachep);
		return PTR_ERR(mnt);
	}
	/* Never executable, whatever the mmap() flags. */
	mnt->mnt_flags |= MNT_NOEXEC;

	/* The sysfs directory tells userspace that the syscall exists. */
	err = mfdx_sysfs_init();
	if (err) {
		kern_unmount(mnt);
		kmem_cache_destroy(mfdx_inode_cachep);
		return err;
	}

	mfdx_mnt = mnt;
	return 0;
}
fs_initcall(memfd_exclusive_init);
