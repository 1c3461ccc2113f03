/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libxmem's C API: create exclusive memory, map it, seal it, send it over a
 * Unix socket, and receive it verified. Each function is a thin layer over
 * the C++ API (<xmem/xmem.hpp>) and makes the same checks; see libxmem(3)
 * and xmem_c(3).
 *
 * Errors: every function that can fail returns a negative error code, never
 * sets errno as its result, and leaves nothing open on failure:
 *  - -errno for a failed system call or a bad argument (-EINVAL, -ENOMEM,
 *    -EMFILE, -EPIPE, -EAGAIN on a socket timeout, ...);
 *  - -XMEM_E... (XMEM_ERRC_BASE + n, beyond every errno) for libxmem's own
 *    errors, those of xmem::errc: a received fd that is not exclusive
 *    memory, a size or seals that differ from what was required, ...
 * xmem_strerror() names either kind.
 *
 * Sizes are in bytes. Fds returned are O_CLOEXEC and the caller's to close.
 * Socket arguments are connected AF_UNIX SOCK_SEQPACKET sockets (from
 * xmem_connect(), xmem_accept(), or socketpair(2)); they are borrowed.
 */
#ifndef XMEM_XMEM_H
#define XMEM_XMEM_H

#include <stddef.h>
#include <sys/types.h>

#include <xmem/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Backends, as xmem_backend() and struct xmem_received report them. */
#define XMEM_BACKEND_EXCLUSIVE 0	/* memfd_exclusive(2), the patched kernel */
#define XMEM_BACKEND_SECRET 1		/* memfd_secret(2) */
#define XMEM_BACKEND_ORDINARY 2		/* memfd_create(2): readable by root and the kernel */

/* Seals: the F_SEAL_* bits of fcntl(2). */
#define XMEM_SEAL_SEAL 0x0001
#define XMEM_SEAL_SHRINK 0x0002
#define XMEM_SEAL_GROW 0x0004
#define XMEM_SEAL_WRITE 0x0008
#define XMEM_SEAL_FUTURE_WRITE 0x0010

/* Flags of xmem_create(); unknown bits are -EINVAL. */
#define XMEM_CREATE_REQUIRE_EXCLUSIVE 0x0001	/* memfd_exclusive or fail */
#define XMEM_CREATE_REQUIRE_SECRET 0x0002	/* memfd_secret or fail */
#define XMEM_CREATE_REQUIRE_ORDINARY 0x0004	/* memfd_create or fail */
#define XMEM_CREATE_ALLOW_ORDINARY 0x0008	/* fall back to memfd_create */
#define XMEM_CREATE_NO_SEALING 0x0010		/* start with F_SEAL_SEAL: no seals later */

/* Access of xmem_map(). */
#define XMEM_MAP_READ_ONLY 0
#define XMEM_MAP_READ_WRITE 1

/* Flags of struct xmem_requirements; unknown bits are -EINVAL. */
#define XMEM_ACCEPT_ORDINARY 0x0001	/* accept memfd_create memory too */

/* The longest name a message carries, in bytes, without the NUL. */
#define XMEM_NAME_MAX 63

/* libxmem's own errors (xmem::errc): returned negated, as -XMEM_E... */
#define XMEM_ERRC_BASE 4096
#define XMEM_ECTRUNC (XMEM_ERRC_BASE + 1)	   /* MSG_CTRUNC: fds were dropped */
#define XMEM_EPAYLOADTRUNC (XMEM_ERRC_BASE + 2)   /* MSG_TRUNC: message longer than a header */
#define XMEM_EUNEXPECTEDCTL (XMEM_ERRC_BASE + 3)  /* control message other than fds, credentials */
#define XMEM_EBADHEADER (XMEM_ERRC_BASE + 4)	   /* bad magic, length, kind, name; not a request */
#define XMEM_EVERSION (XMEM_ERRC_BASE + 5)	   /* protocol version not spoken */
#define XMEM_EFDCOUNT (XMEM_ERRC_BASE + 6)	   /* fds other than the header announced */
#define XMEM_EPEERCLOSED (XMEM_ERRC_BASE + 7)	   /* the peer closed the connection */
#define XMEM_EWRONGTYPE (XMEM_ERRC_BASE + 8)	   /* the fd is not exclusive memory */
#define XMEM_ESIZE (XMEM_ERRC_BASE + 9)	   /* size differs from the header's or required */
#define XMEM_ESEALS (XMEM_ERRC_BASE + 10)	   /* a required or announced seal is absent */
#define XMEM_EBACKEND (XMEM_ERRC_BASE + 11)	   /* a backend not accepted (ordinary) */
#define XMEM_ENOTSEQPACKET (XMEM_ERRC_BASE + 12) /* not an AF_UNIX SOCK_SEQPACKET socket */
#define XMEM_ETOOMANYFDS (XMEM_ERRC_BASE + 13)   /* more fds than allowed */
#define XMEM_EADDRINUSE (XMEM_ERRC_BASE + 14)	   /* a live server listens on the path */
#define XMEM_EPEERNOTALLOWED (XMEM_ERRC_BASE + 15) /* peer rejected by policy */
#define XMEM_ENOBACKEND (XMEM_ERRC_BASE + 16)	   /* no memfd_exclusive, no memfd_secret */
#define XMEM_EMEMLOCK (XMEM_ERRC_BASE + 17)	   /* RLIMIT_MEMLOCK too small for the mapping */
#define XMEM_EINVALIDSIZE (XMEM_ERRC_BASE + 18)  /* size 0 or too large */
#define XMEM_EINVALIDNAME (XMEM_ERRC_BASE + 19)  /* name too long or with NUL; sent: also '/' */
#define XMEM_ENOTMAPPABLE (XMEM_ERRC_BASE + 20)  /* an O_PATH or write-only fd to memory */

/*
 * A description of @err (negative or positive; an errno or an XMEM_E...
 * code), e.g. "received fd is not exclusive memory". The string stays valid
 * until the next call of xmem_strerror() in the same thread.
 */
const char *xmem_strerror(int err);

/*
 * Creates @size bytes (> 0) of exclusive memory called @name (at most 239
 * bytes, no NUL; memfd_secret ignores it; a name sent in a message has its
 * own limits, XMEM_NAME_MAX bytes and no '/'): memfd_exclusive, else
 * memfd_secret, unless @flags (XMEM_CREATE_*) say otherwise. Returns the fd
 * (O_CLOEXEC) or -XMEM_EINVALIDSIZE, -XMEM_EINVALIDNAME, -XMEM_ENOBACKEND,
 * -EINVAL (unknown or conflicting flags, NULL @name), -EMFILE, -ENOMEM, ...
 */
int xmem_create(const char *name, size_t size, unsigned int flags);

/*
 * The backend of the memory fd @fd (XMEM_BACKEND_*, from fstatfs(2)), or
 * -XMEM_EWRONGTYPE when it is not memory of a known backend, or -errno.
 */
int xmem_backend(int fd);

/*
 * Adds @seals (XMEM_SEAL_*) to @fd. Returns 0, or -EPERM (F_SEAL_SEAL is
 * set), -EBUSY (F_SEAL_WRITE while writable mappings exist), -EINVAL
 * (memfd_secret has no seals).
 */
int xmem_add_seals(int fd, unsigned int seals);

/* The seals of @fd (XMEM_SEAL_* bits, >= 0), or -EINVAL on memfd_secret, or -errno. */
int xmem_get_seals(int fd);

/* A mapping made by xmem_map(); opaque. */
struct xmem_mapping;

/*
 * Maps the whole of the memory fd @fd (its current size, > 0), MAP_SHARED,
 * with @access XMEM_MAP_READ_ONLY or XMEM_MAP_READ_WRITE, MADV_DONTFORK;
 * ordinary memory is also mlocked and MADV_DONTDUMP. Sets *@out and
 * returns 0, or returns -XMEM_EINVALIDSIZE (size 0), -XMEM_EMEMLOCK
 * (RLIMIT_MEMLOCK too small), -XMEM_EWRONGTYPE, -EPERM (writable mapping of
 * sealed memory), -EINVAL (bad @access or NULL @out), -ENOMEM.
 */
int xmem_map(int fd, int access, struct xmem_mapping **out);
/* The first byte of @m, and its length in bytes. */
void *xmem_mapping_data(const struct xmem_mapping *m);
size_t xmem_mapping_size(const struct xmem_mapping *m);
/* munmap(2)s @m and frees it; NULL does nothing. */
void xmem_unmap(struct xmem_mapping *m);

/*
 * Connects to the listener at @path. Returns the socket fd, or -ENOENT,
 * -ECONNREFUSED, -EACCES, -ENAMETOOLONG (longer than sun_path), ...
 */
int xmem_connect(const char *path);

/* A listening socket made by xmem_listen(); opaque. */
struct xmem_listener;

/*
 * Listens on @path with permissions @mode (e.g. 0600). A stale socket file
 * is replaced; a live one is -XMEM_EADDRINUSE; a path that exists and is not
 * a socket is -EEXIST. Sets *@out and returns 0, or returns -errno.
 */
int xmem_listen(const char *path, unsigned int mode, struct xmem_listener **out);
/* The listening socket's fd, for poll(2); owned by @l. */
int xmem_listener_fd(const struct xmem_listener *l);
/* Accepts one connection: its socket fd, or -EAGAIN (non-blocking, none waits), -errno. */
int xmem_accept(struct xmem_listener *l);
/* Closes @l and removes its socket file if it is still the one it made; NULL does nothing. */
void xmem_listener_close(struct xmem_listener *l);

/* Asks the peer on @sock for the region @name (at most XMEM_NAME_MAX bytes). 0 or -errno. */
int xmem_send_request(int sock, const char *name);

/*
 * Receives one request on @sock and copies the name asked for, NUL
 * terminated, to @name (@name_size bytes; XMEM_NAME_MAX + 1 always fit).
 * Read the request before replying and before closing @sock: a socket
 * closed with it unread resets the peer's connection. Returns 0, or
 * -XMEM_EPEERCLOSED, -XMEM_EBADHEADER (not a request), -XMEM_ETOOMANYFDS
 * (a request with fds), -ERANGE (@name_size too small), -errno.
 */
int xmem_receive_request(int sock, char *name, size_t name_size);

/*
 * Sends the memory @fd on @sock as the reply called @name, announcing its
 * size and seals as the kernel reports them. 0, or -EPIPE (the peer has
 * gone), -XMEM_EBADHEADER (bad @name), -errno.
 */
int xmem_send_memory(int sock, int fd, const char *name);
/* Tells the peer its request for @name failed with errno @err (> 0). 0 or -errno. */
int xmem_send_error(int sock, int err, const char *name);

/* What a receiver demands of the memory it receives. */
struct xmem_requirements {
	size_t size;		/* exact size in bytes; 0: the size the header announces */
	unsigned int seals;	/* XMEM_SEAL_* bits that must be present (F_GET_SEALS) */
	unsigned int flags;	/* XMEM_ACCEPT_* */
};

/* Memory received and verified by xmem_receive_memory(). */
struct xmem_received {
	size_t size;		/* bytes, as fstat(2) reported */
	unsigned int seals;	/* as F_GET_SEALS reported (0 for memfd_secret) */
	int backend;		/* XMEM_BACKEND_* */
	int size_is_stable;	/* 1: the sender cannot shrink it (mapping @size never SIGBUSes) */
	char name[XMEM_NAME_MAX + 1]; /* from the header, NUL terminated */
};

/*
 * Receives a memory reply on @sock and verifies its fd against @req (NULL:
 * no requirements): S_ISREG, the fstatfs magic of an accepted backend, the
 * size the header announces and @req->size, every seal of @req->seals and of
 * the header. Fills *@out (may be NULL) and returns the fd, or -XMEM_ESIZE,
 * -XMEM_ESEALS, -XMEM_EWRONGTYPE, -XMEM_EBACKEND, -XMEM_EPEERCLOSED,
 * -XMEM_ECTRUNC, ..., the peer's errno when it answered with an error
 * (e.g. -EACCES), -EINVAL (unknown @req->flags), -errno. On error no fd of
 * the message remains open.
 */
int xmem_receive_memory(int sock, const struct xmem_requirements *req,
			struct xmem_received *out);

#ifdef __cplusplus
}
#endif

#endif /* XMEM_XMEM_H */
