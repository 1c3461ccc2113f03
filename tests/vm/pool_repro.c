// SPDX-License-Identifier: GPL-2.0
/*
 * pool_repro: the reproducer of the KASAN report "slab-use-after-free in
 * mfdx_recycle_node" (issue 13): two processes fault and truncate 64 MiB
 * memfd_exclusive files in a loop while a third writes 2 to
 * /proc/sys/vm/drop_caches, so that the shrinker gives pageblocks back while
 * pages are being freed and allocated. Run by tests/vm/stress.sh on the debug
 * kernel, where the kernel log judges the run; this program also checks that
 * every new page reads as zero and that what it wrote reads back.
 *
 * Usage: pool_repro [ROUNDS] (default 4 rounds of 64 MiB per process)
 * Exit: 0 pass, 1 a check failed, 77 the kernel has no memfd_exclusive(2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../include/uapi/linux/memfd_exclusive.h"

#define FILE_SIZE	(64UL << 20)

static int worker(int id, int rounds)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned long i, n = FILE_SIZE / page, bad = 0;
	size_t words = page / sizeof(uint64_t);
	int fd, r;

	fd = syscall(__NR_memfd_exclusive, "pool-repro", MFD_EXCLUSIVE_CLOEXEC);
	if (fd < 0) {
		perror("pool_repro: memfd_exclusive");
		return errno == ENOSYS ? 77 : 1;
	}
	for (r = 0; r < rounds; r++) {
		uint64_t *p;

		if (ftruncate(fd, FILE_SIZE)) {
			perror("pool_repro: ftruncate");
			return 1;
		}
		p = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			perror("pool_repro: mmap");
			return 1;
		}
		for (i = 0; i < n; i++) {
			uint64_t *q = p + i * words;

			if (q[0] || q[words - 1])
				bad++;
			q[0] = q[words - 1] = ((uint64_t)id << 32) | i;
		}
		for (i = 0; i < n; i++) {
			uint64_t *q = p + i * words;

			if (q[0] != (((uint64_t)id << 32) | i) || q[0] != q[words - 1])
				bad++;
		}
		munmap(p, FILE_SIZE);
		/* Half (a partial page), then nothing. */
		if (ftruncate(fd, FILE_SIZE / 2 + page / 2) || ftruncate(fd, 0)) {
			perror("pool_repro: ftruncate");
			return 1;
		}
	}
	close(fd);
	if (bad) {
		fprintf(stderr, "pool_repro: worker %d: %lu pages not zero or not read back\n",
			id, bad);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 4;
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	pid_t pid[2], dropper;
	int i, fd, status, ret = 0;

	/*
	 * Every write of drop_caches logs a line until 4 is written once: the
	 * writer below would flood the kernel log out of the ring buffer, and
	 * with it any report that scripts/vm-run must find.
	 */
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0 || write(fd, "4", 1) != 1) {
		perror("pool_repro: drop_caches");
		return 1;
	}
	close(fd);
	/* RLIMIT_MEMLOCK bounds the pages of the files; root lifts it. */
	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		perror("pool_repro: setrlimit");
	dropper = fork();
	if (dropper < 0) {
		perror("pool_repro: fork");
		return 1;
	}
	if (dropper == 0) {
		for (;;) {
			int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

			if (fd < 0 || write(fd, "2", 1) != 1)
				_exit(1);
			close(fd);
		}
	}
	for (i = 0; i < 2; i++) {
		pid[i] = fork();
		if (pid[i] == 0)
			_exit(worker(i, rounds));
	}
	for (i = 0; i < 2; i++) {
		if (pid[i] < 0 || waitpid(pid[i], &status, 0) < 0 ||
		    !WIFEXITED(status)) {
			ret = 1;
			continue;
		}
		if (WEXITSTATUS(status) && !ret)
			ret = WEXITSTATUS(status);
	}
	kill(dropper, SIGKILL);
	waitpid(dropper, &status, 0);
	if (WIFEXITED(status)) {
		fprintf(stderr, "pool_repro: the drop_caches writer failed\n");
		if (!ret)
			ret = 1;
	}
	printf("pool_repro: 2 processes x %d rounds of %lu MiB, drop_caches all along: %s\n",
	       rounds, FILE_SIZE >> 20, ret ? "FAIL" : "PASS");
	return ret;
}
