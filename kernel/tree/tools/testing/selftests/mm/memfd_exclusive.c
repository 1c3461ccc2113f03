// SPDX-License-Identifier: GPL-2.0
/*
 * Tests for memfd_exclusive(2): the system call's arguments, the file's
 * rules (no read/write, MAP_SHARED only, never executable, seals, resizing)
 * and that no kernel path reaches the memory through GUP.
 *
 * Skips every test when the kernel lacks the system call, that is when
 * /sys/kernel/mm/memfd_exclusive does not exist.
 *
 * Builds inside the kernel tree (make -C tools/testing/selftests TARGETS=mm)
 * or on its own:
 *   gcc -O2 -Wall -I tools/testing/selftests -I <xmem>/include \
 *       <this file>
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/io_uring.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <sys/wait.h>

/* Installed kernel headers, else -I <xmem>/include for a standalone build. */
#if __has_include("linux/memfd_exclusive.h")
#include <linux/memfd_exclusive.h>
#else
#include "uapi/linux/memfd_exclusive.h"
#endif

#include "kselftest_harness.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE	0x0010
#endif

static size_t page_size;

static int sys_memfd_exclusive(const char *name, unsigned int flags)
{
	return syscall(__NR_memfd_exclusive, name, flags);
}

/*
 * Whether the kernel has memfd_exclusive(2). The sysfs directory exists if
 * and only if the call can be used (it is absent when the kernel was booted
 * with memfd_exclusive.enable=0); without it, number 500 must not be issued.
 * A failing call with the directory present is a failure, not a skip.
 */
static bool mfdx_available(void)
{
	return !access(MEMFD_EXCLUSIVE_SYSFS_DIR, F_OK);
}

/* A file of @pages pages; the test fails if it cannot be created. */
static int mfdx_create(struct __test_metadata *_metadata, const char *name,
		       unsigned int flags, size_t pages)
{
	int fd = sys_memfd_exclusive(name, flags);

	ASSERT_LE(0, fd) TH_LOG("memfd_exclusive: %s", strerror(errno));
	ASSERT_EQ(0, ftruncate(fd, pages * page_size));
	return fd;
}

static void *map(int fd, size_t pages, int prot)
{
	return mmap(NULL, pages * page_size, prot, MAP_SHARED, fd, 0);
}

/* Probing an address for SIGBUS with a sigsetjmp() handler. */
static sigjmp_buf probe_env;

static void probe_handler(int sig)
{
	siglongjmp(probe_env, sig);
}

/*
 * Writes @c at @p (@write) or reads the byte there into *@c. Returns 0 if
 * the access went through, else the signal it raised.
 */
static int probe_access(char *p, char *c, bool write)
{
	struct sigaction sa = { .sa_handler = probe_handler };
	struct sigaction old_bus, old_segv;
	int sig;

	sigaction(SIGBUS, &sa, &old_bus);
	sigaction(SIGSEGV, &sa, &old_segv);
	sig = sigsetjmp(probe_env, 1);
	if (!sig) {
		if (write)
			*p = *c;
		else
			*c = *p;
		/* The access must happen here, between the handlers. */
		asm volatile("" : : : "memory");
	}
	sigaction(SIGBUS, &old_bus, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
	return sig;
}

static int probe_write(char *p, char c)
{
	return probe_access(p, &c, true);
}

/* Reads a number from /sys/kernel/mm/memfd_exclusive/@name, -1 on error. */
static long sysfs_read(const char *name)
{
	char path[PATH_MAX];
	long val = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", MEMFD_EXCLUSIVE_SYSFS_DIR, name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &val) != 1)
		val = -1;
	fclose(f);
	return val;
}

TEST(invalid_flags)
{
	unsigned int bit;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	for (bit = 0; bit < 32; bit++) {
		unsigned int flag = 1U << bit;

		if (flag & MFD_EXCLUSIVE_ALL_FLAGS)
			continue;
		fd = sys_memfd_exclusive("flags", flag);
		EXPECT_EQ(-1, fd) TH_LOG("flag %#x accepted", flag);
		EXPECT_EQ(EINVAL, errno);
		if (fd >= 0)
			close(fd);
	}
	/* O_CLOEXEC is not our flag. */
	fd = sys_memfd_exclusive("flags", O_CLOEXEC);
	EXPECT_EQ(-1, fd);
	EXPECT_EQ(EINVAL, errno);
}

TEST(cloexec)
{
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = sys_memfd_exclusive("cloexec", MFD_EXCLUSIVE_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(FD_CLOEXEC, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);

	fd = sys_memfd_exclusive("cloexec", 0);
	ASSERT_LE(0, fd);
	EXPECT_EQ(0, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(O_RDWR, fcntl(fd, F_GETFL) & O_ACCMODE);
	close(fd);
}

TEST(name_length)
{
	char name[MFD_EXCLUSIVE_NAME_MAX_LEN + 2];
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	memset(name, 'a', sizeof(name));
	name[MFD_EXCLUSIVE_NAME_MAX_LEN] = '\0';
	fd = sys_memfd_exclusive(name, 0);
	ASSERT_LE(0, fd) TH_LOG("longest name refused: %s", strerror(errno));
	close(fd);

	name[MFD_EXCLUSIVE_NAME_MAX_LEN] = 'a';
	name[MFD_EXCLUSIVE_NAME_MAX_LEN + 1] = '\0';
	EXPECT_EQ(-1, sys_memfd_exclusive(name, 0));
	EXPECT_EQ(EINVAL, errno);

	fd = sys_memfd_exclusive("", 0);
	EXPECT_LE(0, fd);
	close(fd);
}

TEST(name_bad_address)
{
	char *p;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	EXPECT_EQ(-1, sys_memfd_exclusive(NULL, 0));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, sys_memfd_exclusive((const char *)-4096L, 0));
	EXPECT_EQ(EFAULT, errno);

	/* A name running into an inaccessible page. */
	p = mmap(NULL, 2 * page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, mprotect(p + page_size, page_size, PROT_NONE));
	memset(p + page_size - 8, 'x', 8);
	EXPECT_EQ(-1, sys_memfd_exclusive(p + page_size - 8, 0));
	EXPECT_EQ(EFAULT, errno);
	munmap(p, 2 * page_size);
}

TEST(name_in_maps_and_fd_link)
{
	char path[64], link[PATH_MAX], line[PATH_MAX + 128];
	bool found = false;
	unsigned long start;
	ssize_t len;
	FILE *maps;
	char *p;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "xmem-test", 0, 1);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	len = readlink(path, link, sizeof(link) - 1);
	ASSERT_LT(0, len);
	link[len] = '\0';
	EXPECT_STREQ("/memfd_exclusive:xmem-test", link);

	p = map(fd, 1, PROT_READ);
	ASSERT_NE(MAP_FAILED, p);
	maps = fopen("/proc/self/maps", "r");
	ASSERT_NE(NULL, maps);
	while (fgets(line, sizeof(line), maps)) {
		if (sscanf(line, "%lx-", &start) != 1 ||
		    start != (unsigned long)p)
			continue;
		found = strstr(line, " /memfd_exclusive:xmem-test\n");
		TH_LOG("maps: %s", line);
	}
	fclose(maps);
	EXPECT_TRUE(found);
	munmap(p, page_size);
	close(fd);
}

TEST(fstatfs_magic)
{
	struct statfs sfs;
	struct stat st;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "statfs", 0, 3);
	ASSERT_EQ(0, fstatfs(fd, &sfs));
	EXPECT_EQ(MEMFD_EXCLUSIVE_MAGIC, (unsigned long)sfs.f_type);
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_TRUE(S_ISREG(st.st_mode));
	EXPECT_EQ(3 * page_size, st.st_size);
	close(fd);
}

TEST(read_write)
{
	char buf[16] = "secret";
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "rw", 0, 1);
	EXPECT_EQ(-1, read(fd, buf, sizeof(buf)));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, write(fd, buf, sizeof(buf)));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, pread(fd, buf, sizeof(buf), 0));
	EXPECT_TRUE(errno == EINVAL || errno == ESPIPE);
	EXPECT_EQ(-1, pwrite(fd, buf, sizeof(buf), 0));
	EXPECT_TRUE(errno == EINVAL || errno == ESPIPE);
	EXPECT_EQ(-1, fallocate(fd, 0, 0, page_size));
	close(fd);
}

TEST(map_private)
{
	void *p;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "private", 0, 1);
	p = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	close(fd);
}

TEST(prot_exec)
{
	void *p;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "exec", 0, 1);
	p = map(fd, 1, PROT_READ | PROT_EXEC);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EPERM, errno);

	p = map(fd, 1, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, mprotect(p, page_size, PROT_READ | PROT_EXEC));
	EXPECT_EQ(EACCES, errno);
	munmap(p, page_size);
	close(fd);
}

TEST(shared_data_and_dontdump)
{
	char line[256], *a, *b;
	bool in_vma = false, dd = false;
	FILE *smaps;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "data", 0, 2);
	a = map(fd, 2, PROT_READ | PROT_WRITE);
	b = map(fd, 2, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, a);
	ASSERT_NE(MAP_FAILED, b);
	EXPECT_EQ(0, a[0]);
	EXPECT_EQ(0, a[page_size]);
	memcpy(a + page_size, "shared secret", 14);
	EXPECT_STREQ("shared secret", b + page_size);

	/* VM_DONTDUMP: left out of core dumps. */
	smaps = fopen("/proc/self/smaps", "r");
	ASSERT_NE(NULL, smaps);
	while (fgets(line, sizeof(line), smaps)) {
		unsigned long start, end;
		char perms[5];

		/* A VMA's first line; field names like "Anon..." parse as hex. */
		if (sscanf(line, "%lx-%lx %4s ", &start, &end, perms) == 3)
			in_vma = start == (unsigned long)a;
		if (in_vma && !strncmp(line, "VmFlags:", 8))
			dd = strstr(line, " dd");
	}
	fclose(smaps);
	EXPECT_TRUE(dd);
	munmap(a, 2 * page_size);
	munmap(b, 2 * page_size);
	close(fd);
}

TEST(seals_default)
{
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "noseal", 0, 1);
	EXPECT_EQ(F_SEAL_SEAL, fcntl(fd, F_GET_SEALS));
	EXPECT_EQ(-1, fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK));
	EXPECT_EQ(EPERM, errno);
	close(fd);
}

TEST(seal_shrink_grow)
{
	struct stat st;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "size", MFD_EXCLUSIVE_ALLOW_SEALING, 4);
	EXPECT_EQ(0, fcntl(fd, F_GET_SEALS));
	EXPECT_EQ(-1, fcntl(fd, F_ADD_SEALS, 0x40000));
	EXPECT_EQ(EINVAL, errno);

	ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK));
	EXPECT_EQ(-1, ftruncate(fd, 2 * page_size));
	EXPECT_EQ(EPERM, errno);
	EXPECT_EQ(0, ftruncate(fd, 6 * page_size));

	ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS, F_SEAL_GROW));
	EXPECT_EQ(-1, ftruncate(fd, 8 * page_size));
	EXPECT_EQ(EPERM, errno);
	EXPECT_EQ(0, ftruncate(fd, 6 * page_size));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(6 * page_size, st.st_size);
	EXPECT_EQ(F_SEAL_SHRINK | F_SEAL_GROW, fcntl(fd, F_GET_SEALS));
	close(fd);
}

TEST(seal_seal)
{
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "sealseal", MFD_EXCLUSIVE_ALLOW_SEALING, 1);
	ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL));
	EXPECT_EQ(-1, fcntl(fd, F_ADD_SEALS, F_SEAL_GROW));
	EXPECT_EQ(EPERM, errno);
	EXPECT_EQ(-1, fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
	EXPECT_EQ(EPERM, errno);
	EXPECT_EQ(F_SEAL_SEAL, fcntl(fd, F_GET_SEALS));
	/* Sizing is still allowed: only the seals are sealed. */
	EXPECT_EQ(0, ftruncate(fd, 2 * page_size));
	close(fd);
}

TEST(seal_write)
{
	char *p;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "sealwrite", MFD_EXCLUSIVE_ALLOW_SEALING, 1);
	p = map(fd, 1, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 'x';
	EXPECT_EQ(-1, fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
	EXPECT_EQ(EBUSY, errno);
	munmap(p, page_size);

	ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
	p = map(fd, 1, PROT_READ | PROT_WRITE);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EPERM, errno);

	p = map(fd, 1, PROT_READ);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ('x', p[0]);
	EXPECT_EQ(-1, mprotect(p, page_size, PROT_READ | PROT_WRITE));
	EXPECT_EQ(EACCES, errno);
	munmap(p, page_size);
	close(fd);
}

TEST(seal_future_write)
{
	char *w, *r;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "future", MFD_EXCLUSIVE_ALLOW_SEALING, 1);
	w = map(fd, 1, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, w);

	/* Existing writable mappings do not stop F_SEAL_FUTURE_WRITE. */
	ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE));
	w[0] = 'y';

	r = map(fd, 1, PROT_READ | PROT_WRITE);
	EXPECT_EQ(MAP_FAILED, r);
	EXPECT_EQ(EPERM, errno);

	r = map(fd, 1, PROT_READ);
	ASSERT_NE(MAP_FAILED, r);
	EXPECT_EQ('y', r[0]);
	EXPECT_EQ(-1, mprotect(r, page_size, PROT_READ | PROT_WRITE));
	EXPECT_EQ(EACCES, errno);
	munmap(r, page_size);
	munmap(w, page_size);
	close(fd);
}

TEST(shrink_sigbus_grow)
{
	char *p;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "resize", 0, 4);
	p = map(fd, 4, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	memset(p, 0x5a, 4 * page_size);

	/* Shrink to a page and a half: the rest is unmapped and freed. */
	ASSERT_EQ(0, ftruncate(fd, page_size + page_size / 2));
	EXPECT_EQ(0x5a, p[page_size + page_size / 2 - 1]);
	EXPECT_EQ(0, p[page_size + page_size / 2]);
	EXPECT_EQ(0, p[2 * page_size - 1]);
	EXPECT_EQ(SIGBUS, probe_write(p + 2 * page_size, 1));
	EXPECT_EQ(SIGBUS, probe_write(p + 3 * page_size, 1));

	/* Growing again brings zeroed pages. */
	ASSERT_EQ(0, ftruncate(fd, 4 * page_size));
	EXPECT_EQ(0, probe_write(p + 3 * page_size + 1, 1));
	EXPECT_EQ(0, p[2 * page_size]);
	EXPECT_EQ(0, p[3 * page_size]);
	EXPECT_EQ(1, p[3 * page_size + 1]);
	munmap(p, 4 * page_size);

	/* A new file has no pages at all. */
	close(fd);
	fd = mfdx_create(_metadata, "empty", 0, 0);
	p = map(fd, 1, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(SIGBUS, probe_write(p, 1));
	munmap(p, page_size);
	close(fd);
}

TEST(splice_sendfile_vmsplice)
{
	struct iovec iov;
	int pipefd[2];
	char *p;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "splice", 0, 1);
	p = map(fd, 1, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	memset(p, 's', page_size);
	ASSERT_EQ(0, pipe(pipefd));

	EXPECT_EQ(-1, splice(fd, NULL, pipefd[1], NULL, page_size, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, sendfile(pipefd[1], fd, NULL, page_size));
	EXPECT_EQ(EINVAL, errno);

	/* vmsplice() would take references to the pages: GUP refuses. */
	iov.iov_base = p;
	iov.iov_len = page_size;
	EXPECT_EQ(-1, vmsplice(pipefd[1], &iov, 1, 0));
	EXPECT_EQ(EFAULT, errno);

	close(pipefd[0]);
	close(pipefd[1]);
	munmap(p, page_size);
	close(fd);
}

TEST(process_vm_readv_writev)
{
	struct iovec local, remote;
	char buf[64];
	char *p;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "pvm", 0, 1);
	p = map(fd, 1, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	memcpy(p, "secret", 7);

	local.iov_base = buf;
	local.iov_len = sizeof(buf);
	remote.iov_base = p;
	remote.iov_len = sizeof(buf);
	EXPECT_EQ(-1, process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
	EXPECT_EQ(EFAULT, errno);

	/* And as a destination. */
	local.iov_base = "x";
	local.iov_len = 1;
	remote.iov_len = 1;
	EXPECT_EQ(-1, process_vm_writev(getpid(), &local, 1, &remote, 1, 0));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ('s', p[0]);
	munmap(p, page_size);
	close(fd);
}

TEST(proc_self_mem)
{
	char buf[64];
	int fd, mem;
	char *p;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	fd = mfdx_create(_metadata, "procmem", 0, 1);
	p = map(fd, 1, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	memcpy(p, "secret", 7);

	mem = open("/proc/self/mem", O_RDWR);
	ASSERT_LE(0, mem);
	EXPECT_EQ(-1, pread(mem, buf, sizeof(buf), (off_t)(unsigned long)p));
	EXPECT_EQ(EIO, errno);
	EXPECT_EQ(-1, pwrite(mem, "X", 1, (off_t)(unsigned long)p));
	EXPECT_EQ(EIO, errno);
	EXPECT_EQ('s', p[0]);
	close(mem);
	munmap(p, page_size);
	close(fd);
}

/* IORING_REGISTER_BUFFERS pins the pages with FOLL_LONGTERM. */
TEST(io_uring_fixed_buffer)
{
	struct io_uring_params params;
	struct iovec iov;
	int fd, ring;
	char *p;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	memset(&params, 0, sizeof(params));
	ring = syscall(__NR_io_uring_setup, 4, &params);
	if (ring < 0)
		SKIP(return, "io_uring_setup: %s", strerror(errno));

	fd = mfdx_create(_metadata, "uring", 0, 1);
	p = map(fd, 1, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 1;
	iov.iov_base = p;
	iov.iov_len = page_size;
	EXPECT_EQ(-1, syscall(__NR_io_uring_register, ring,
			      IORING_REGISTER_BUFFERS, &iov, 1));
	EXPECT_EQ(EFAULT, errno);
	close(ring);
	munmap(p, page_size);
	close(fd);
}

/*
 * Attach a loop device to a fresh 1 MiB file in /tmp; returns its fd, or -1
 * (and errno) when loop devices are not available. @dev receives its path.
 */
static int loop_attach(char *dev, size_t len)
{
	char backing[] = "/tmp/memfd_exclusive.XXXXXX";
	int ctl, nr, bfd, lfd = -1;

	ctl = open("/dev/loop-control", O_RDWR);
	if (ctl < 0)
		return -1;
	nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	close(ctl);
	if (nr < 0)
		return -1;
	snprintf(dev, len, "/dev/loop%d", nr);

	bfd = mkstemp(backing);
	if (bfd < 0)
		return -1;
	unlink(backing);
	if (!ftruncate(bfd, 1 << 20))
		lfd = open(dev, O_RDWR);
	if (lfd >= 0 && ioctl(lfd, LOOP_SET_FD, bfd)) {
		close(lfd);
		lfd = -1;
	}
	close(bfd);
	return lfd;
}

/*
 * An O_DIRECT read makes the block layer DMA into the pages it got from GUP:
 * it must fail on the mapping. Uses a loop device over a file in /tmp, or the
 * file or device MFDX_ODIRECT_FILE names. Without either (no loop driver, not
 * root) the case is logged as not run rather than skipped: vmsplice,
 * process_vm_readv and io_uring_fixed_buffer cover the same GUP refusal.
 */
TEST(o_direct_read)
{
	const char *path = getenv("MFDX_ODIRECT_FILE");
	char dev[32];
	int fd, file, loop = -1;
	char *p, *anon;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	if (!path) {
		loop = loop_attach(dev, sizeof(dev));
		if (loop < 0) {
			TH_LOG("no loop device (%s), MFDX_ODIRECT_FILE unset: O_DIRECT not tested",
			       strerror(errno));
			return;
		}
		path = dev;
	}
	file = open(path, O_RDONLY | O_DIRECT);
	ASSERT_LE(0, file) TH_LOG("%s: %s", path, strerror(errno));
	fd = mfdx_create(_metadata, "odirect", 0, 1);
	p = map(fd, 1, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 1;
	EXPECT_EQ(-1, read(file, p, page_size));
	EXPECT_EQ(EFAULT, errno);

	/* The same read into anonymous memory works: the setup is sound. */
	close(file);
	file = open(path, O_RDONLY | O_DIRECT);
	ASSERT_LE(0, file);
	anon = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, anon);
	EXPECT_EQ((ssize_t)page_size, read(file, anon, page_size));
	munmap(anon, page_size);
	close(file);
	if (loop >= 0) {
		ioctl(loop, LOOP_CLR_FD, 0);
		close(loop);
	}
	munmap(p, page_size);
	close(fd);
}

/*
 * Pages are charged to RLIMIT_MEMLOCK of the file's creator as they are
 * faulted in: two processes of one user, each within its own mmap()-time
 * limit (mlock_future_ok() counts one mm), together go over it, and the
 * fault over the limit raises SIGBUS. The charge goes away with the file.
 */
TEST(rlimit_memlock)
{
	int status, fd;
	pid_t pid;
	char *p;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct rlimit rl = { 8 * page_size, 8 * page_size };
		int st, fd2;
		pid_t gc;
		size_t i;

		/* An unprivileged user of its own: no CAP_IPC_LOCK. */
		if (setrlimit(RLIMIT_MEMLOCK, &rl) || setgid(51234) || setuid(51234))
			_exit(2);
		fd = sys_memfd_exclusive("rlimit-a", 0);
		if (fd < 0 || ftruncate(fd, 6 * page_size))
			_exit(3);
		p = map(fd, 6, PROT_READ | PROT_WRITE);
		if (p == MAP_FAILED)
			_exit(4);
		for (i = 0; i < 6; i++)
			if (probe_write(p + i * page_size, 1))
				_exit(5);
		/* A child's mm starts with no locked memory; the user's charge stays. */
		gc = fork();
		if (gc < 0)
			_exit(6);
		if (!gc) {
			fd2 = sys_memfd_exclusive("rlimit-b", 0);
			if (fd2 < 0 || ftruncate(fd2, 6 * page_size))
				_exit(7);
			p = map(fd2, 6, PROT_READ | PROT_WRITE);
			if (p == MAP_FAILED)
				_exit(8);
			for (i = 0; i < 6; i++)
				if (probe_write(p + i * page_size, 1) == SIGBUS)
					_exit(i == 2 ? 0 : 9);
			_exit(10);
		}
		if (waitpid(gc, &st, 0) != gc || !WIFEXITED(st))
			_exit(11);
		_exit(WEXITSTATUS(st));
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));

	/* The charges went with the files: the same user's whole limit again. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct rlimit rl = { 8 * page_size, 8 * page_size };
		size_t i;

		if (setrlimit(RLIMIT_MEMLOCK, &rl) || setgid(51234) || setuid(51234))
			_exit(2);
		fd = sys_memfd_exclusive("rlimit-after", 0);
		if (fd < 0 || ftruncate(fd, 8 * page_size))
			_exit(3);
		p = map(fd, 8, PROT_READ | PROT_WRITE);
		if (p == MAP_FAILED)
			_exit(4);
		for (i = 0; i < 8; i++)
			if (probe_write(p + i * page_size, 1))
				_exit(5);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/*
 * CAP_IPC_LOCK lifts RLIMIT_MEMLOCK for the faults as it does for mmap()
 * (mlock_future_ok(), user_shm_lock()): a mapping that mmap() accepted does
 * not raise SIGBUS part-way through. (It did: mmap() passed, the per-page
 * charge had no capability check; mm review of 2026-12-01, F2.)
 */
TEST(rlimit_memlock_cap_ipc_lock)
{
	const size_t pages = 64;
	int status;
	pid_t pid;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	if (geteuid())
		SKIP(return, "needs CAP_IPC_LOCK (run as root)");
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct rlimit rl = { 8 * page_size, 8 * page_size };
		size_t i;
		char *p;
		int fd;

		if (setrlimit(RLIMIT_MEMLOCK, &rl))
			_exit(2);
		fd = sys_memfd_exclusive("rlimit-cap", 0);
		if (fd < 0 || ftruncate(fd, pages * page_size))
			_exit(3);
		p = map(fd, pages, PROT_READ | PROT_WRITE);
		if (p == MAP_FAILED)
			_exit(4);
		for (i = 0; i < pages; i++)
			if (probe_write(p + i * page_size, 1))
				_exit(5);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/*
 * A mapping counts as locked memory, as in mm/secretmem.c: without
 * CAP_IPC_LOCK, mmap() beyond RLIMIT_MEMLOCK fails with EAGAIN up front.
 */
TEST(rlimit_memlock_mmap)
{
	int status;
	pid_t pid;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct __user_cap_header_struct hdr = {
			.version = _LINUX_CAPABILITY_VERSION_3,
		};
		struct __user_cap_data_struct data[2] = {};
		struct rlimit rl = { 8 * page_size, 8 * page_size };
		char *p;
		int fd;

		/* Keep the permitted set, drop every effective capability. */
		if (syscall(SYS_capget, &hdr, data))
			_exit(2);
		data[0].effective = 0;
		data[1].effective = 0;
		if (syscall(SYS_capset, &hdr, data))
			_exit(3);
		if (setrlimit(RLIMIT_MEMLOCK, &rl))
			_exit(4);
		fd = sys_memfd_exclusive("rlimit-mmap", 0);
		if (fd < 0 || ftruncate(fd, 64 * page_size))
			_exit(5);
		p = map(fd, 64, PROT_READ | PROT_WRITE);
		if (p != MAP_FAILED || errno != EAGAIN)
			_exit(6);
		/* Within the limit the same file maps and faults. */
		p = map(fd, 4, PROT_READ | PROT_WRITE);
		if (p == MAP_FAILED)
			_exit(7);
		if (probe_write(p + 3 * page_size, 1))
			_exit(8);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* Writes @val to @path; 0 or -errno. */
static int sysfs_write_path(const char *path, const char *val)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Writes @val to @dir/@name; 0 or -errno. */
static int cg_write(const char *dir, const char *name, const char *val)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return sysfs_write_path(path, val);
}

/* The value of key @key in @dir/memory.events, -1 on error. */
static long cg_event(const char *dir, const char *key)
{
	char path[PATH_MAX], k[64];
	long val, found = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.events", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", k, &val) == 2)
		if (!strcmp(k, key))
			found = val;
	fclose(f);
	return found;
}

/*
 * Pages are charged to the faulting task's memory cgroup. They cannot be
 * reclaimed, so a fault over memory.max raises SIGBUS (as over
 * RLIMIT_MEMLOCK) instead of invoking the memcg OOM killer.
 */
TEST(memcg_limit)
{
	const char *root = "/sys/fs/cgroup";
	const size_t limit = 4 << 20, pages = (16 << 20) / page_size;
	char dir[64], num[32];
	int status, err;
	pid_t pid;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	err = cg_write(root, "cgroup.subtree_control", "+memory");
	if (err)
		SKIP(return, "no cgroup2 memory controller at %s: %s", root,
		     strerror(-err));
	snprintf(dir, sizeof(dir), "%s/mfdx-memcg-%d", root, getpid());
	ASSERT_EQ(0, mkdir(dir, 0755));
	snprintf(num, sizeof(num), "%zu", limit);
	ASSERT_EQ(0, cg_write(dir, "memory.max", num));

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
		size_t i;
		char *p;
		int fd;

		snprintf(num, sizeof(num), "%d", getpid());
		if (cg_write(dir, "cgroup.procs", num))
			_exit(2);
		/* Only the memory cgroup limits this child. */
		if (setrlimit(RLIMIT_MEMLOCK, &rl))
			_exit(3);
		fd = sys_memfd_exclusive("memcg", 0);
		if (fd < 0 || ftruncate(fd, pages * page_size))
			_exit(4);
		p = map(fd, pages, PROT_READ | PROT_WRITE);
		if (p == MAP_FAILED)
			_exit(5);
		for (i = 0; i < pages; i++) {
			if (probe_write(p + i * page_size, 1) == SIGBUS)
				_exit(i * page_size >= limit / 2 &&
				      i * page_size <= limit ? 0 : 6);
		}
		_exit(7);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	if (WIFEXITED(status))
		EXPECT_EQ(0, WEXITSTATUS(status));
	EXPECT_EQ(0, cg_event(dir, "oom_kill"));
	/* The child's charge went with its file: the cgroup empties. */
	EXPECT_EQ(0, rmdir(dir));
}

/* Writes @val to /sys/kernel/mm/memfd_exclusive/@name; 0 or -errno. */
static int sysfs_write(const char *name, const char *val)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", MEMFD_EXCLUSIVE_SYSFS_DIR, name);
	return sysfs_write_path(path, val);
}

/* The physical frame behind @p (root only: /proc/self/pagemap), 0 if none. */
static unsigned long frame_of(void *p)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (pread(fd, &e, sizeof(e), (uintptr_t)p / page_size * sizeof(e)) != sizeof(e))
		e = 0;
	close(fd);
	return (e >> 63) ? (unsigned long)(e & ((1ULL << 55) - 1)) : 0;
}

/* The "System RAM" range of /proc/iomem holding @pfn: [*start, *end); false if none. */
static bool ram_range_of(unsigned long pfn, unsigned long *start, unsigned long *end)
{
	unsigned long s, e, addr = pfn * page_size;
	bool found = false;
	char line[256];
	FILE *f = fopen("/proc/iomem", "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (line[0] == ' ' || !strstr(line, ": System RAM"))
			continue;
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && addr >= s && addr <= e) {
			*start = s;
			*end = e + 1;
			found = true;
		}
	}
	fclose(f);
	return found;
}

/*
 * The body of devmem_older_mapping_and_write, with the pool empty; NULL when
 * every check held, else what failed. @mem is /dev/mem, open read-write.
 */
static const char *devmem_checks(int mem)
{
	static const char secret[] = "XMEM-DEVMEM-SECRET";
	unsigned long start, end, pfn, off, probe_pfn;
	const char *bad = NULL;
	char buf[sizeof(secret)], c = 0, *all, *p, *probe;
	int fd;

	/* A frame the next grow may take: where a page of ordinary memory lies. */
	probe = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (probe == MAP_FAILED)
		return "mmap of an anonymous page";
	probe_pfn = frame_of(probe);
	munmap(probe, page_size);
	if (!probe_pfn || !ram_range_of(probe_pfn, &start, &end))
		return "no System RAM range in /proc/iomem holds an ordinary page";
	all = mmap(NULL, end - start, PROT_READ | PROT_WRITE, MAP_SHARED, mem, start);
	if (all == MAP_FAILED)
		return "mmap of /dev/mem over the RAM range, made while the pool is empty";

	fd = sys_memfd_exclusive("devmem", 0);
	if (fd < 0 || ftruncate(fd, page_size)) {
		bad = "memfd_exclusive(2) or ftruncate()";
		goto out;
	}
	p = map(fd, 1, PROT_READ | PROT_WRITE);
	if (p == MAP_FAILED) {
		bad = "mmap of the file";
		goto out;
	}
	memcpy(p, secret, sizeof(secret));
	pfn = frame_of(p);
	off = pfn * page_size;
	if (!pfn || off < start || off >= end) {
		bad = "the file's frame is outside the RAM range mapped before";
		goto unmap;
	}
	/* The older mapping was zapped: SIGBUS for read and write, not the secret. */
	if (probe_access(all + off - start, &c, false) != SIGBUS) {
		bad = "a read through the older /dev/mem mapping did not get SIGBUS";
		goto unmap;
	}
	c = 'X';
	if (probe_access(all + off - start, &c, true) != SIGBUS) {
		bad = "a write through the older /dev/mem mapping did not get SIGBUS";
		goto unmap;
	}
	/* A new mapping of the frame is refused. */
	if (mmap(NULL, page_size, PROT_READ, MAP_SHARED, mem, off) != MAP_FAILED)
		bad = "a new /dev/mem mapping of the frame was allowed";
	/* write() and read() at the frame fail with EFAULT, without an oops. */
	else if (pwrite(mem, "PWNED", 5, off) != -1 || errno != EFAULT)
		bad = "pwrite() of /dev/mem at the frame did not fail with EFAULT";
	else if (pread(mem, buf, sizeof(buf), off) != -1 || errno != EFAULT)
		bad = "pread() of /dev/mem at the frame did not fail with EFAULT";
	else if (memcmp(p, secret, sizeof(secret)))
		bad = "the file's page lost its contents";
unmap:
	munmap(p, page_size);
out:
	munmap(all, end - start);
	if (fd >= 0)
		close(fd);
	return bad;
}

/*
 * /dev/mem, as root on a kernel without STRICT_DEVMEM (the test kernel's
 * config): a mapping of RAM made while no pageblock is out of the direct map
 * must lose the frames of a pageblock the pool takes out afterwards (the grow
 * path zaps /dev/mem mappings: SIGBUS, not the secret), and write() or read()
 * at such a frame fails with EFAULT instead of oopsing (hostile review of
 * 2026-12-01, N1 and N3).
 */
TEST(devmem_older_mapping_and_write)
{
	const char *bad = NULL;
	char hw[32];
	int mem, i;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	if (geteuid())
		SKIP(return, "needs root (/dev/mem, /proc/self/pagemap)");
	mem = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
	ASSERT_LE(0, mem) TH_LOG("/dev/mem: %s (the test config has CONFIG_DEVMEM)",
				 strerror(errno));

	/* Give every free pageblock back, and put the mark back after. */
	snprintf(hw, sizeof(hw), "%ld", sysfs_read("pool_high_water_kb"));
	ASSERT_EQ(0, sysfs_write("pool_high_water_kb", "0"));
	/*
	 * Pages of earlier tests' files can still be held by per-CPU LRU batches
	 * (their files are gone); compact_memory drains them (lru_add_drain_all()).
	 * Up to 60 s: the debug kernel under TCG is slow.
	 */
	for (i = 0; i < 600 && sysfs_read("pool_blocks"); i++) {
		if (i % 50 == 0)
			sysfs_write_path("/proc/sys/vm/compact_memory", "1");
		usleep(100000);
	}
	if (sysfs_read("pool_blocks"))
		bad = "pageblocks still out of the direct map: is a file open?";
	else
		bad = devmem_checks(mem);
	EXPECT_EQ(0, sysfs_write("pool_high_water_kb", hw));
	close(mem);
	EXPECT_EQ(NULL, bad) TH_LOG("%s", bad);
}

TEST(sysfs_counters)
{
	long pages, regions;
	char *p;
	int fd;

	if (!mfdx_available())
		SKIP(return, "memfd_exclusive(2) is not available");
	pages = sysfs_read("pages_in_use");
	regions = sysfs_read("regions");
	ASSERT_LE(0, pages);
	ASSERT_LE(0, regions);

	fd = mfdx_create(_metadata, "stats", 0, 8);
	EXPECT_EQ(regions + 1, sysfs_read("regions"));
	EXPECT_EQ(pages, sysfs_read("pages_in_use"));

	p = map(fd, 8, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 1;
	p[page_size] = 1;
	p[5 * page_size] = 1;
	EXPECT_EQ(pages + 3, sysfs_read("pages_in_use"));

	ASSERT_EQ(0, ftruncate(fd, 2 * page_size));
	EXPECT_EQ(pages + 2, sysfs_read("pages_in_use"));

	munmap(p, 8 * page_size);
	EXPECT_EQ(regions + 1, sysfs_read("regions"));
	close(fd);
	EXPECT_EQ(regions, sysfs_read("regions"));
	EXPECT_EQ(pages, sysfs_read("pages_in_use"));
}

static void __attribute__((constructor)) init_page_size(void)
{
	page_size = sysconf(_SC_PAGESIZE);
}

TEST_HARNESS_MAIN
