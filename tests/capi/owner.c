// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A C owner for tests/capi/client.py, written with the C API only.
 * Usage: capi-owner SOCKET ROUNDS. Creates 4096 bytes called "signing-key"
 * holding byte i = (i * 7 + 3) & 0xff, seals it when the backend has seals,
 * listens on SOCKET, prints "listening BACKEND" and serves ROUNDS peers one
 * at a time: each request for "signing-key" gets the memory, any other name
 * ENOENT. Exit 0 when every round was served, 1 on an error (printed).
 */
#include <xmem/xmem.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, int err)
{
	fprintf(stderr, "capi-owner: %s: %s\n", what, xmem_strerror(err));
	return 1;
}

int main(int argc, char **argv)
{
	struct xmem_mapping *m;
	struct xmem_listener *l;
	int fd, err, rounds;

	if (argc != 3) {
		fprintf(stderr, "usage: capi-owner SOCKET ROUNDS\n");
		return 2;
	}
	rounds = atoi(argv[2]);
	fd = xmem_create("signing-key", 4096, 0);
	if (fd < 0)
		return fail("xmem_create", fd);
	err = xmem_map(fd, XMEM_MAP_READ_WRITE, &m);
	if (err)
		return fail("xmem_map", err);
	for (size_t i = 0; i < xmem_mapping_size(m); i++)
		((unsigned char *)xmem_mapping_data(m))[i] = (unsigned char)(i * 7 + 3);
	xmem_unmap(m);
	if (xmem_backend(fd) == XMEM_BACKEND_EXCLUSIVE) {
		err = xmem_add_seals(fd, XMEM_SEAL_SHRINK | XMEM_SEAL_GROW |
				     XMEM_SEAL_FUTURE_WRITE | XMEM_SEAL_SEAL);
		if (err)
			return fail("xmem_add_seals", err);
	}
	err = xmem_listen(argv[1], 0600, &l);
	if (err)
		return fail("xmem_listen", err);
	printf("listening %s\n", xmem_backend(fd) == XMEM_BACKEND_EXCLUSIVE ? "memfd_exclusive"
								     : "memfd_secret");
	fflush(stdout);

	for (int i = 0; i < rounds; i++) {
		char name[XMEM_NAME_MAX + 1];
		int peer = xmem_accept(l);

		if (peer < 0)
			return fail("xmem_accept", peer);
		err = xmem_receive_request(peer, name, sizeof(name));
		if (err)
			return fail("xmem_receive_request", err);
		if (strcmp(name, "signing-key") == 0)
			err = xmem_send_memory(peer, fd, name);
		else
			err = xmem_send_error(peer, ENOENT, name);
		if (err)
			return fail("replying", err);
		close(peer);
	}
	xmem_listener_close(l);
	close(fd);
	return 0;
}
