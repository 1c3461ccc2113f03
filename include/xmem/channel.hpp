// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * channel: a connected AF_UNIX SOCK_SEQPACKET socket that carries wire
 * headers and fds (SCM_RIGHTS, unix(7)); listener: the server side.
 *
 * Receiving follows the rules in docs/protocol.md: MSG_CMSG_CLOEXEC on every
 * recvmsg; every received fd is owned by a unique_fd before any check can
 * fail; MSG_CTRUNC, MSG_TRUNC, unknown control messages and fd counts that
 * differ from the header are errors, and every fd that arrived is closed.
 */
#pragma once

#include <xmem/memory.hpp>
#include <xmem/unique_fd.hpp>
#include <xmem/wire.hpp>

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace xmem {

/* The peer's credentials as the kernel recorded them (SO_PEERCRED, SCM_CREDENTIALS). */
struct peer_credentials {
	pid_t pid;
	uid_t uid;
	gid_t gid;
};

/* True when @cred.uid is in @allowed. */
bool uid_allowed(const peer_credentials &cred, std::span<const uid_t> allowed) noexcept;

/* One received message: its decoded header and the fds that came with it. */
struct message {
	wire::header header;
	std::vector<unique_fd> fds;
	/* Present when SO_PASSCRED is on and the kernel attached SCM_CREDENTIALS. */
	std::optional<peer_credentials> sender;
};

/* What a receiver demands of received memory. */
struct requirements {
	/* Exact size in bytes; unset: the size the header announces (> 0). */
	std::optional<std::size_t> size;
	/* Seals the fd must carry (checked with F_GET_SEALS, never assumed). */
	xmem::seals seals;
	/* Accept the ordinary backend (memfd_create); off by default. */
	bool accept_ordinary = false;
	/*
	 * Accept memfd_secret. On by default (kernels without memfd_exclusive
	 * have nothing better), but it has no seals and every fd to it is
	 * O_RDWR: whoever else holds one can write what the receiver reads.
	 * Off, with accept_ordinary off: memfd_exclusive or nothing
	 * (errc::backend_not_accepted, received_memory::backend says what came).
	 */
	bool accept_secret = true;
};

/* Memory received and verified. */
struct received_memory {
	xmem::memory memory;
	/*
	 * Bytes, as verified with fstat. Also set on errc::size_mismatch and
	 * errc::missing_seals (with @seals), to say what arrived; @memory is
	 * then empty.
	 */
	std::size_t size;
	xmem::seals seals;	  /* as read with F_GET_SEALS (empty for memfd_secret) */
	/*
	 * True when the sender cannot shrink it any more (F_SEAL_SHRINK, or
	 * memfd_secret, whose size is fixed once set): mapping @size bytes can
	 * never SIGBUS. False: the sender may truncate it under the receiver.
	 */
	bool size_is_stable;
	std::string name;	  /* from the header */
	/*
	 * The backend the fd turned out to be (fstatfs): set when it was
	 * memory at all, also when it was refused (errc::backend_not_accepted
	 * and later checks), so a caller can name what it was sent.
	 */
	std::optional<xmem::backend> backend;
};

/*
 * Checks that @fd is memory as @h describes and @req demands: S_ISREG, the
 * fstatfs magic of an accepted backend, st_size equal to the header's (> 0)
 * and to req.size, every seal in req.seals and in h.seals present. The
 * seals are read before the size they vouch for (seals only grow), so memory
 * with F_SEAL_SHRINK cannot have shrunk below the size returned.
 * Errors: errc::wrong_file_type, errc::not_mappable (O_PATH or write-only
 * fd), errc::backend_not_accepted, errc::size_mismatch, errc::missing_seals. @fd is closed on error.
 */
received_memory verify_memory(unique_fd fd, const wire::header &h,
			      const requirements &req, std::error_code &ec) noexcept;

/* How a client connects: channel::connect(path, connect_options). */
struct connect_options {
	/*
	 * connect(2), and each send and receive after it, give up after this
	 * (SO_SNDTIMEO is set before connect(2), which waits on it while the
	 * listener's backlog is full: net/unix/af_unix.c, unix_stream_connect();
	 * SO_RCVTIMEO after). Zero: wait forever.
	 */
	std::chrono::milliseconds timeout{10000};
	/*
	 * The uid the server must run as, checked with SO_PEERCRED before
	 * anything is sent or received: a process that created the socket
	 * path first cannot pass for the server. Unset: this process's
	 * effective uid or root (0).
	 */
	std::optional<uid_t> server_uid;
};

class channel
{
public:
	/* Fds one receive() accepts; more: errc::control_truncated or too_many_fds. */
	static constexpr std::size_t default_max_fds = 16;

	/*
	 * Connects to the listener at @path. Errors: errno from socket(2) and
	 * connect(2) (ENOENT, ECONNREFUSED, EACCES), ENAMETOOLONG for a path
	 * longer than sun_path.
	 */
	static channel connect(const std::string &path);
	static channel connect(const std::string &path, std::error_code &ec) noexcept;
	/*
	 * Connects with a timeout and checks whom it reached (connect_options).
	 * Errors: as above; ETIMEDOUT when connect(2) waited @o.timeout
	 * (the kernel's EAGAIN); errc::peer_not_allowed when the server's
	 * SO_PEERCRED uid is not the one expected (the throwing form names
	 * both uids). Defined in connect.cpp.
	 */
	static channel connect(const std::string &path, const connect_options &o);
	static channel connect(const std::string &path, const connect_options &o,
			       std::error_code &ec) noexcept;

	/* Takes @fd; errc::not_seqpacket unless it is an AF_UNIX SOCK_SEQPACKET socket. */
	static channel adopt(unique_fd fd, std::error_code &ec) noexcept;

	/* A connected pair (socketpair(2)). Throws std::system_error. */
	static std::pair<channel, channel> pair();

	channel() noexcept = default;

	/*
	 * Sends @h with @fds attached (h.fd_count is set to fds.size(), at most
	 * wire::scm_max_fd; errc::too_many_fds before anything is sent).
	 * MSG_NOSIGNAL; retried on EINTR (a SOCK_SEQPACKET send is all or
	 * nothing, so no fd is sent twice). EPIPE when the peer has gone.
	 */
	void send(const wire::header &h, std::span<const borrowed_fd> fds = {});
	void send(const wire::header &h, std::span<const borrowed_fd> fds,
		  std::error_code &ec) noexcept;

	/*
	 * Sends any number of fds (up to wire::scm_max_fd * wire::max_batch_parts)
	 * as one batch: ceil(n / 253) messages, each a copy of @h with fd_count,
	 * batch_index and batch_count set (docs/protocol.md, "Batches"). Every
	 * check is made before the first message goes: errc::invalid_name and
	 * errc::bad_header (from wire::encode), errc::too_many_fds. Each message is retried on EINTR
	 * and a SOCK_SEQPACKET send is all or nothing, so no fd is sent twice.
	 * An error after the first part (EPIPE, a timeout) leaves the batch
	 * incomplete; the receiver then closes every fd of it. With no fds, one
	 * message of batch 1 part 0 is sent.
	 */
	void send_batch(const wire::header &h, std::span<const borrowed_fd> fds);
	void send_batch(const wire::header &h, std::span<const borrowed_fd> fds,
			std::error_code &ec) noexcept;

	/*
	 * Receives one batch and reassembles it: header of part 0 (fd_count set
	 * to the total, batch fields cleared), every fd in order. A message
	 * outside a batch (batch_count 0) is taken as a batch of one. All or
	 * nothing: on any error every fd received so far is closed. Errors: those
	 * of receive(); errc::too_many_fds or errc::control_truncated when the
	 * batch would exceed @max_total_fds (the caller's fd budget for it: each
	 * part is received with room for at most one fd past it, so the process
	 * never holds more than @max_total_fds + 1 of the batch's fds);
	 * errc::bad_header when a part is out of order, of another kind or
	 * batch, or carries no fds.
	 */
	message receive_batch(std::size_t max_total_fds);
	message receive_batch(std::size_t max_total_fds, std::error_code &ec) noexcept;

	/* Asks the peer for the region called @name. */
	void send_request(std::string_view name);
	/*
	 * The server's side of send_request(): receives one request and returns
	 * the name asked for (at most wire::name_max bytes). Read the request
	 * before replying to it (send_memory(), send_error()) and before closing:
	 * a unix(7) socket closed with a message unread resets the peer's
	 * connection (its next recvmsg is ECONNRESET, and the reply it has not
	 * read yet comes only after that error), and a peer that sends its
	 * request after the close gets EPIPE. Errors: those of receive();
	 * errc::bad_header when the message is not a request or is part of a
	 * batch; errc::too_many_fds when it carries fds (closed: requests carry
	 * none, docs/protocol.md).
	 */
	std::string receive_request();
	std::string receive_request(std::error_code &ec) noexcept;
	/*
	 * Sends @mem, announcing its current size and seals as the kernel reports
	 * them (memory::size(), F_GET_SEALS); memfd_secret: the size it was given,
	 * which cannot change, and no seals, without asking.
	 */
	void send_memory(const memory &mem, std::string_view name);
	/* Tells the peer a request for @name failed with errno @err. */
	void send_error(int err, std::string_view name);

	/*
	 * Receives one message. Errors: errc::peer_closed, control_truncated,
	 * too_many_fds (more than set_max_fds() allows), payload_truncated, unexpected_control, bad_header, unsupported_version,
	 * fd_count_mismatch; errno (EAGAIN/EWOULDBLOCK on timeout, ECONNRESET).
	 * On error no fd of the message remains open.
	 */
	message receive();
	message receive(std::error_code &ec) noexcept;

	/*
	 * Receives a memory message and verifies its one fd (verify_memory).
	 * A peer's error message becomes its errno. Throws std::system_error.
	 */
	received_memory receive_memory(const requirements &req);
	received_memory receive_memory(const requirements &req, std::error_code &ec) noexcept;

	/*
	 * Asks for @name and receives the memory (send_request, then
	 * receive_memory with a budget of the one fd a memory reply carries,
	 * wire protocol: docs/protocol.md). A server that refuses a peer
	 * (EBUSY at its peer limit, EACCES) sends an error message and closes:
	 * when the request cannot be sent (EPIPE, ECONNRESET) the message the
	 * server left is still read, and its errno is the error. Errors: those
	 * of receive_memory and send. Defined in connect.cpp.
	 */
	received_memory request_memory(std::string_view name, const requirements &req);
	received_memory request_memory(std::string_view name, const requirements &req,
				       std::error_code &ec) noexcept;

	/* SO_PEERCRED: the peer at connect() time. */
	[[nodiscard]] peer_credentials peer() const;
	/*
	 * SO_PEERPIDFD (Linux 6.5+): a pidfd of the peer, which, unlike the pid,
	 * cannot come to name another process. ENOPROTOOPT on older kernels.
	 */
	[[nodiscard]] unique_fd peer_pidfd(std::error_code &ec) const noexcept;

	/* SO_PASSCRED: attach the sender's credentials to every received message. */
	void set_pass_credentials(bool on);
	/* SO_RCVTIMEO and SO_SNDTIMEO; zero: none. */
	void set_timeout(std::chrono::milliseconds t);
	/* Largest fd count receive() accepts (<= wire::scm_max_fd). */
	void set_max_fds(std::size_t n) noexcept;

	[[nodiscard]] borrowed_fd fd() const noexcept { return fd_; }
	[[nodiscard]] bool valid() const noexcept { return fd_.valid(); }

private:
	friend class listener;
	explicit channel(unique_fd fd) noexcept : fd_(std::move(fd)) {}
	message receive_one(std::size_t max_fds, std::error_code &ec) noexcept;

	unique_fd fd_;
	std::size_t max_fds_ = default_max_fds;
};

class listener
{
public:
	/*
	 * Listens on @path (mode 0600 unless @mode says otherwise). A stale
	 * socket file (nobody accepts on it) is replaced; a live one is
	 * errc::address_in_use; a path that exists and is not a socket: EEXIST,
	 * left alone. The destructor unlinks the path if it is still ours.
	 */
	static listener bind(const std::string &path, unsigned mode = 0600, int backlog = 128);
	static listener bind(const std::string &path, unsigned mode, int backlog,
			     std::error_code &ec) noexcept;
	/*
	 * Takes a listening socket made elsewhere: inherited from systemd
	 * (socket activation, sd_listen_fds(3): fds from 3 on), or from a
	 * parent. It must be AF_UNIX SOCK_SEQPACKET (else errc::not_seqpacket)
	 * and listening (SO_ACCEPTCONN; else EINVAL). FD_CLOEXEC is set on it
	 * (inherited fds lack it). path() is its bound name (getsockname(2);
	 * "@name" for an abstract one); the path is never unlinked, since
	 * whoever made it owns it. Defined in connect.cpp.
	 */
	static listener adopt(unique_fd fd, std::error_code &ec) noexcept;
	static listener adopt(unique_fd fd);

	listener() noexcept = default;
	listener(listener &&other) noexcept;
	listener &operator=(listener &&other) noexcept;
	~listener();

	/* accept4(2) with SOCK_CLOEXEC. EAGAIN when non-blocking and none waits. */
	channel accept();
	channel accept(std::error_code &ec) noexcept;

	[[nodiscard]] borrowed_fd fd() const noexcept { return fd_; }
	[[nodiscard]] const std::string &path() const noexcept { return path_; }

private:
	void unlink_if_ours() noexcept;

	unique_fd fd_;
	std::string path_;
	dev_t dev_ = 0;
	ino_t ino_ = 0;
};

} // namespace xmem
