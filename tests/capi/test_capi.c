// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The C API (xmem.h) from C: create, map, seal, send, receive-and-verify,
 * each refusal with its code, and no fd left open by a failed call. One
 * process, a socketpair(2) and a listener. Prints each failed check and a
 * count; exit 0 when every check passed, 1 otherwise.
 */
#include <xmem/xmem.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int checks, failures;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		checks++;                                                             \
		if (!(cond)) {                                                        \
			failures++;                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                     \
	} while (0)

/* CHECK that @ret is the error @want (negative), naming both otherwise. */
#define CHECK_ERR(ret, want)                                                          \
	do {                                                                          \
		int r_ = (ret);                                                       \
		checks++;                                                             \
		if (r_ != (want)) {                                                   \
			failures++;                                                   \
			fprintf(stderr, "%s:%d: %s returned %d (%s), want %s\n", __FILE__, \
				__LINE__, #ret, r_, r_ < 0 ? xmem_strerror(r_) : "ok", #want); \
		}                                                                     \
	} while (0)

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void fill(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 7 + 3);
}

static int holds(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != (unsigned char)(i * 7 + 3))
			return 0;
	}
	return 1;
}

static void errors_and_create(void)
{
	CHECK(strstr(xmem_strerror(-XMEM_EWRONGTYPE), "not exclusive memory") != NULL);
	CHECK(strstr(xmem_strerror(XMEM_ESIZE), "size") != NULL);
	CHECK(strcmp(xmem_strerror(-EPIPE), strerror(EPIPE)) == 0);

	CHECK_ERR(xmem_create("c", 4096, 0x8000), -EINVAL);
	CHECK_ERR(xmem_create("c", 4096, XMEM_CREATE_REQUIRE_EXCLUSIVE | XMEM_CREATE_REQUIRE_SECRET),
		  -EINVAL);
	CHECK_ERR(xmem_create(NULL, 4096, 0), -EINVAL);
	CHECK_ERR(xmem_create("c", 0, 0), -XMEM_EINVALIDSIZE);
	char longname[300];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_ERR(xmem_create(longname, 4096, 0), -XMEM_EINVALIDNAME);

	int efd = eventfd(0, EFD_CLOEXEC);
	CHECK(efd >= 0);
	CHECK_ERR(xmem_backend(efd), -XMEM_EWRONGTYPE);
	close(efd);
}

static void round_trip(int a, int b)
{
	int fd = xmem_create("c-test", 8192, 0);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	int backend = xmem_backend(fd);
	CHECK(backend == XMEM_BACKEND_EXCLUSIVE || backend == XMEM_BACKEND_SECRET);

	struct xmem_mapping *w = NULL;
	CHECK_ERR(xmem_map(fd, 7, &w), -EINVAL);
	CHECK_ERR(xmem_map(fd, XMEM_MAP_READ_WRITE, &w), 0);
	if (!w)
		return;
	CHECK(xmem_mapping_size(w) == 8192);
	fill(xmem_mapping_data(w), xmem_mapping_size(w));
	xmem_unmap(w);

	if (backend == XMEM_BACKEND_SECRET) {
		CHECK_ERR(xmem_get_seals(fd), -EINVAL); /* memfd_secret has none */
		CHECK_ERR(xmem_add_seals(fd, XMEM_SEAL_SHRINK), -EINVAL);
	} else {
		CHECK_ERR(xmem_add_seals(fd, XMEM_SEAL_SHRINK | XMEM_SEAL_GROW), 0);
		CHECK(xmem_get_seals(fd) == (XMEM_SEAL_SHRINK | XMEM_SEAL_GROW));
	}

	const int before = open_fds();
	struct xmem_requirements req = { .size = 8192 };
	struct xmem_received got;
	CHECK_ERR(xmem_send_memory(a, fd, "c-test"), 0);
	int rfd = xmem_receive_memory(b, &req, &got);
	CHECK(rfd >= 0);
	if (rfd >= 0) {
		CHECK(got.size == 8192 && got.backend == backend && strcmp(got.name, "c-test") == 0);
		CHECK(got.size_is_stable == 1);
		struct xmem_mapping *r = NULL;
		CHECK_ERR(xmem_map(rfd, XMEM_MAP_READ_ONLY, &r), 0);
		if (r)
			CHECK(holds(xmem_mapping_data(r), 8192));
		xmem_unmap(r);
		close(rfd);
	}

	req.size = 4096;
	CHECK_ERR(xmem_send_memory(a, fd, "c-test"), 0);
	CHECK_ERR(xmem_receive_memory(b, &req, &got), -XMEM_ESIZE);
	req.size = 0;
	req.seals = XMEM_SEAL_FUTURE_WRITE;
	CHECK_ERR(xmem_send_memory(a, fd, "c-test"), 0);
	CHECK_ERR(xmem_receive_memory(b, &req, &got), -XMEM_ESEALS);
	req.seals = 0;
	req.flags = 0x80;
	CHECK_ERR(xmem_receive_memory(b, &req, &got), -EINVAL);
	CHECK(open_fds() == before);
	close(fd);
}

static void ordinary_and_errors(int a, int b)
{
	const int before = open_fds();
	int fd = xmem_create("plain", 4096, XMEM_CREATE_REQUIRE_ORDINARY);
	CHECK(fd >= 0);
	CHECK(xmem_backend(fd) == XMEM_BACKEND_ORDINARY);
	struct xmem_requirements req = { 0 };
	CHECK_ERR(xmem_send_memory(a, fd, "plain"), 0);
	CHECK_ERR(xmem_receive_memory(b, &req, NULL), -XMEM_EBACKEND);
	req.flags = XMEM_ACCEPT_ORDINARY;
	CHECK_ERR(xmem_send_memory(a, fd, "plain"), 0);
	int rfd = xmem_receive_memory(b, &req, NULL);
	CHECK(rfd >= 0);
	if (rfd >= 0)
		close(rfd);
	close(fd);

	CHECK_ERR(xmem_send_error(a, EACCES, "denied"), 0);
	CHECK_ERR(xmem_receive_memory(b, NULL, NULL), -EACCES);

	char name[XMEM_NAME_MAX + 1];
	CHECK_ERR(xmem_send_request(a, "signing-key"), 0);
	CHECK_ERR(xmem_receive_request(b, name, sizeof(name)), 0);
	CHECK(strcmp(name, "signing-key") == 0);
	CHECK_ERR(xmem_send_request(a, "signing-key"), 0);
	CHECK_ERR(xmem_receive_request(b, name, 4), -ERANGE);
	CHECK_ERR(xmem_send_error(a, ENOENT, "x"), 0);
	CHECK_ERR(xmem_receive_request(b, name, sizeof(name)), -XMEM_EBADHEADER);
	CHECK_ERR(xmem_send_request(a, "a/b"), -XMEM_EINVALIDNAME);

	int efd = eventfd(0, EFD_CLOEXEC);
	CHECK_ERR(xmem_send_request(efd, "x"), -XMEM_ENOTSEQPACKET);
	close(efd);
	CHECK(open_fds() == before);
}

static void listener(void)
{
	char dir[] = "/tmp/xmem-capi-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[64];
	snprintf(path, sizeof(path), "%s/s", dir);

	struct xmem_listener *l = NULL;
	CHECK_ERR(xmem_listen(path, 0600, &l), 0);
	if (!l)
		return;
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	int c = xmem_connect(path);
	CHECK(c >= 0);
	int s = xmem_accept(l);
	CHECK(s >= 0);
	char name[XMEM_NAME_MAX + 1];
	CHECK_ERR(xmem_send_request(c, "k"), 0);
	CHECK_ERR(xmem_receive_request(s, name, sizeof(name)), 0);
	close(s);
	CHECK_ERR(xmem_receive_memory(c, NULL, NULL), -XMEM_EPEERCLOSED);
	close(c);
	/*
	 * Last: a second listen on a live path is refused after a probe connect,
	 * which leaves a closed connection in the live listener's queue.
	 */
	struct xmem_listener *l2 = NULL;
	CHECK_ERR(xmem_listen(path, 0600, &l2), -XMEM_EADDRINUSE);
	CHECK(l2 == NULL);
	xmem_listener_close(l);
	CHECK(stat(path, &st) < 0 && errno == ENOENT);
	CHECK_ERR(xmem_connect(path), -ENOENT);
	rmdir(dir);
}

int main(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		return 1;
	}
	errors_and_create();
	round_trip(sv[0], sv[1]);
	ordinary_and_errors(sv[0], sv[1]);
	listener();
	close(sv[0]);
	close(sv[1]);
	printf("test_capi: %d checks, %d failed (libxmem %s)\n", checks, failures,
	       XMEM_VERSION_STRING);
	return failures ? 1 : 0;
}
