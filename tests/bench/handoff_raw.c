// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * One hand-off of exclusive memory with raw system calls in plain C: the
 * baseline libxmem is measured against (tests/bench/handoff_bench.cpp). It
 * takes the steps a careful program takes without the library, and no more:
 *
 *   sender:   memfd_secret(2), ftruncate(2), sendmsg(2) of a 96-byte xmem
 *             header with the fd (SCM_RIGHTS, MSG_NOSIGNAL), close(2)
 *   receiver: recvmsg(2) (MSG_CMSG_CLOEXEC), MSG_CTRUNC/length/magic checks,
 *             fstatfs(2) magic, fstat(2) S_ISREG and size, F_GET_SEALS
 *             unless the magic is memfd_secret's, mmap(2) read-only,
 *             optionally MADV_DONTFORK, optionally a read of the first
 *             byte, munmap(2), close(2)
 *
 * memfd_secret has no seals, so neither side seals, and the receiver does not
 * ask for them (F_GET_SEALS fails with EINVAL there and proves nothing):
 * libxmem takes the same steps on this backend (verify_memory()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef SECRETMEM_MAGIC
#define SECRETMEM_MAGIC 0x5345434d
#endif

/*
 * @touch: read the first byte after mapping. @dontfork: MADV_DONTFORK on the
 * mapping, as libxmem's mapping does (so a fork(2) child gets no copy).
 */
int raw_handoff(int tx, int rx, size_t size, int touch, int dontfork);

int raw_handoff(int tx, int rx, size_t size, int touch, int dontfork)
{
	/* sender */
	int fd = (int)syscall(SYS_memfd_secret, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -errno;
	}
	unsigned char hdr[96] = {0};
	uint32_t magic = 0x584d454d, fd_count = 1;
	uint16_t version = 1, kind = 2;
	uint64_t sz = size;
	memcpy(hdr, &magic, 4);
	memcpy(hdr + 4, &version, 2);
	memcpy(hdr + 6, &kind, 2);
	memcpy(hdr + 8, &fd_count, 4);
	memcpy(hdr + 16, &sz, 8);

	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
	} control;
	struct iovec iov = {hdr, sizeof(hdr)};
	struct msghdr msg = {0};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.buf;
	msg.msg_controllen = CMSG_SPACE(sizeof(int));
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	ssize_t n;
	do
		n = sendmsg(tx, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n != (ssize_t)sizeof(hdr))
		return n < 0 ? -errno : -EIO;

	/* receiver */
	unsigned char in[96];
	iov.iov_base = in;
	iov.iov_len = sizeof(in);
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.buf;
	msg.msg_controllen = sizeof(control.buf);
	do
		n = recvmsg(rx, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	int got = -1;
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&got, CMSG_DATA(c), sizeof(int));
	}
	if (got < 0)
		return -EPROTO;
	uint32_t m;
	memcpy(&m, in, 4);
	memcpy(&sz, in + 16, 8);
	if ((msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || n != 96 || m != magic) {
		close(got);
		return -EPROTO;
	}
	struct statfs sfs;
	struct stat st;
	if (fstatfs(got, &sfs) < 0 || sfs.f_type != SECRETMEM_MAGIC || fstat(got, &st) < 0 ||
	    !S_ISREG(st.st_mode) || (uint64_t)st.st_size != sz || sz == 0) {
		close(got);
		return -EPROTO;
	}
	/* Seals, where the backend has them (here: never, the magic above is memfd_secret's). */
	if (sfs.f_type != SECRETMEM_MAGIC && fcntl(got, F_GET_SEALS) < 0) {
		close(got);
		return -EPROTO;
	}
	void *p = mmap(NULL, sz, PROT_READ, MAP_SHARED, got, 0);
	if (p == MAP_FAILED) {
		close(got);
		return -errno;
	}
	if (dontfork)
		(void)madvise(p, sz, MADV_DONTFORK);
	if (touch)
		(void)*(volatile const unsigned char *)p;
	munmap(p, sz);
	close(got);
	return 0;
}
