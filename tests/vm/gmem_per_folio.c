// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_per_folio: the paths of kvm.gmem_unmap_per_folio (kernel patch 0022)
 * that its review found broken, in the KVM test VM as root
 * (tests/vm/kvm-tests.sh runs it; /work/review-0022 had the reproducers):
 *
 *  race       two threads fallocate() the same 1024 pages of a NO_DIRECT_MAP
 *             guest_memfd at once, 100 rounds with a PUNCH_HOLE between: the
 *             loser of each page's filemap_add_folio() (-EEXIST) frees a
 *             folio the page cache never held, which must be back in the
 *             direct map first;
 *  memcg      fallocate() of 64 MiB in a memory cgroup of memory.max 16M: the
 *             same path through a failed memcg charge (ENOSPC);
 *             after both, 256 MiB of anonymous memory is faulted, which reuses
 *             the freed pages through the direct map: a page freed out of it
 *             oopses there (the console judge of scripts/vm-run fails the run);
 *  hibernate  /dev/snapshot's open(O_RDONLY) runs PM_HIBERNATION_PREPARE: it
 *             must fail with EBUSY while the mode's pages are out of the
 *             direct map (hibernation_available() sees only the pool's, and
 *             the image would hold them), succeed once they are back; and
 *             while it is open, new folios must come from the pool (its pages
 *             in use grow), in the mode again after its close.
 * Exit 0 when every check held, 1 otherwise (each failure printed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../bench/kcounters.h"

#ifndef GUEST_MEMFD_FLAG_NO_DIRECT_MAP
#define GUEST_MEMFD_FLAG_NO_DIRECT_MAP (1ULL << 2)
#endif
#define PARAM		"/sys/module/kvm/parameters/gmem_unmap_per_folio"
#define CGROUP		"/sys/fs/cgroup/xmem-gmem-per-folio"
#define RACE_PAGES	1024
#define ROUNDS		100

static _Atomic int failures;	/* the racer thread counts too */
static int vm = -1;

#define check(cond, ...)						\
	do {								\
		if (!(cond)) {						\
			printf("gmem_per_folio: FAIL: " __VA_ARGS__);	\
			printf("\n");					\
			failures++;					\
		}							\
	} while (0)

static void must(int ok, const char *what)
{
	if (!ok) {
		printf("gmem_per_folio: setup: %s: %s\n", what, strerror(errno));
		exit(1);
	}
}

/* A NO_DIRECT_MAP guest_memfd of @size bytes of the one SW_PROTECTED VM. */
static int gmem(size_t size)
{
	struct kvm_create_guest_memfd gm = {
		.size = size, .flags = GUEST_MEMFD_FLAG_NO_DIRECT_MAP,
	};
	int fd;

	if (vm < 0) {
		int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);

		must(kvm >= 0, "/dev/kvm");
		vm = ioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
		must(vm >= 0, "KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)");
		close(kvm);
	}
	fd = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &gm);
	must(fd >= 0, "KVM_CREATE_GUEST_MEMFD(NO_DIRECT_MAP)");
	return fd;
}

static int race_fd;
static pthread_barrier_t barrier;

static void *racer(void *arg)
{
	int i;

	for (i = 0; i < ROUNDS; i++) {
		pthread_barrier_wait(&barrier);
		if (fallocate(race_fd, FALLOC_FL_KEEP_SIZE, 0, RACE_PAGES * 4096L))
			check(0, "race: fallocate (second thread): %s", strerror(errno));
		pthread_barrier_wait(&barrier);
	}
	return arg;
}

static void test_race(void)
{
	pthread_t t;
	int i;

	race_fd = gmem(RACE_PAGES * 4096L);
	pthread_barrier_init(&barrier, NULL, 2);
	must(!pthread_create(&t, NULL, racer, NULL), "pthread_create");
	for (i = 0; i < ROUNDS; i++) {
		pthread_barrier_wait(&barrier);
		if (fallocate(race_fd, FALLOC_FL_KEEP_SIZE, 0, RACE_PAGES * 4096L))
			check(0, "race: fallocate: %s", strerror(errno));
		pthread_barrier_wait(&barrier);
		must(!fallocate(race_fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0,
				RACE_PAGES * 4096L), "PUNCH_HOLE");
	}
	pthread_join(t, NULL);
	close(race_fd);
	printf("gmem_per_folio: race: %d rounds of two fallocate()s of %d pages at once\n",
	       ROUNDS, RACE_PAGES);
}

static void test_memcg(void)
{
	char pid[32];
	int fd, i, enospc = 0;

	snprintf(pid, sizeof(pid), "%d", getpid());
	must(!write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory"),
	     "cgroup.subtree_control +memory");
	must(!mkdir(CGROUP, 0755) || errno == EEXIST, "mkdir " CGROUP);
	must(!write_file(CGROUP "/memory.max", "16M"), "memory.max");
	must(!write_file(CGROUP "/cgroup.procs", pid), "cgroup.procs");
	fd = gmem(64L << 20);
	for (i = 0; i < 20; i++) {
		if (!fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 64L << 20))
			continue;
		check(errno == ENOSPC, "memcg: fallocate: %s, expected ENOSPC", strerror(errno));
		enospc++;
	}
	close(fd);
	must(!write_file("/sys/fs/cgroup/cgroup.procs", pid), "leave the cgroup");
	rmdir(CGROUP);
	printf("gmem_per_folio: memcg: 64 MiB over memory.max 16M: %d of 20 fallocate()s ENOSPC\n",
	       enospc);
	check(enospc == 20, "memcg: %d of 20 fallocate()s over memory.max failed", enospc);
}

/* Faults @mib MiB of anonymous memory: the kernel clears each page through the direct map. */
static void touch_anonymous(long mib)
{
	size_t n = (size_t)mib << 20, off;
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	must(p != MAP_FAILED, "mmap");
	for (off = 0; off < n; off += 4096)
		p[off] = 1;
	munmap(p, n);
	printf("gmem_per_folio: %ld MiB of anonymous memory faulted and freed\n", mib);
}

static void test_hibernate(void)
{
	long in_use;
	int fd, snap;

	fd = gmem(64 * 4096L);
	must(!fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 16 * 4096L), "fallocate");
	snap = open("/dev/snapshot", O_RDONLY | O_CLOEXEC);
	printf("gmem_per_folio: hibernate: 16 pages out of the direct map, open(/dev/snapshot): %s\n",
	       snap < 0 ? strerror(errno) : "opened");
	check(snap < 0 && errno == EBUSY,
	      "hibernate: /dev/snapshot opened (%s) with the mode's pages out of the direct map",
	      snap < 0 ? strerror(errno) : "no error");
	if (snap >= 0)
		close(snap);

	must(!fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 16 * 4096L),
	     "PUNCH_HOLE");
	snap = open("/dev/snapshot", O_RDONLY | O_CLOEXEC);
	printf("gmem_per_folio: hibernate: pages back, open(/dev/snapshot): %s\n",
	       snap < 0 ? strerror(errno) : "opened");
	check(snap >= 0, "hibernate: /dev/snapshot refused (%s) with nothing out of the direct map",
	      strerror(errno));
	if (snap < 0) {
		close(fd);
		return;
	}
	/* A hibernation is being prepared: new folios come from the pool. */
	in_use = pool_in_use();
	must(!fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 16 * 4096L), "fallocate");
	in_use = pool_in_use() - in_use;
	printf("gmem_per_folio: hibernate: while /dev/snapshot is open, 16 pages: pool +%ld\n",
	       in_use);
	check(in_use == 16, "hibernate: pool +%ld pages while preparing, expected 16", in_use);
	close(snap);
	in_use = pool_in_use();
	must(!fallocate(fd, FALLOC_FL_KEEP_SIZE, 16 * 4096L, 16 * 4096L), "fallocate");
	in_use = pool_in_use() - in_use;
	printf("gmem_per_folio: hibernate: after its close, 16 more pages: pool +%ld\n", in_use);
	check(in_use == 0, "hibernate: pool +%ld pages after the close, expected 0", in_use);
	close(fd);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	must(!write_file(PARAM, "Y"), PARAM " (a kernel without patch 0022?)");
	test_race();
	test_memcg();
	touch_anonymous(256);
	test_hibernate();
	write_file(PARAM, "N");
	printf(failures ? "gmem_per_folio: FAILED (%d)\n" : "gmem_per_folio: PASS\n", failures);
	return failures ? 1 : 0;
}
