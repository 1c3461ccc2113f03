// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * server: hands exclusive memory to many peers at once.
 *
 * A few threads (event loops) serve every connected peer of a listener: with
 * io_uring, server_options::event_loops of them (default: one per online CPU),
 * each with its own ring and its own share of the peers; with epoll, one.
 * The first loop accepts and gives each new peer to the loop with the fewest
 * (handed over through a queue and an eventfd, so any kernel with the io_uring
 * operations below will do). A peer stays on its loop until it goes. Each peer sends
 * requests (wire kind request, no fds); a handler decides, from the peer's
 * credentials, its pidfd and the request, to reply with memory (one fd,
 * SCM_RIGHTS) or with an errno. A peer that breaks the protocol, stalls past
 * its timeout or floods is logged and closed; every other peer goes on being
 * served (fd-passing cases 11, 12, 15).
 *
 * Engines: io_uring (liburing: IORING_OP_ACCEPT, IORING_OP_RECVMSG with
 * MSG_CMSG_CLOEXEC, IORING_OP_SENDMSG with MSG_NOSIGNAL), and epoll with
 * non-blocking sockets when io_uring is unavailable (io_uring_setup(2)
 * failing with ENOSYS, EPERM from kernel.io_uring_disabled or a seccomp
 * filter, or an operation missing from the kernel's probe) or when asked.
 * Both take messages apart with the one SCM_RIGHTS core channel uses, so a
 * request is checked exactly as channel::receive() checks it.
 *
 * Bounded resources: peer state is fixed (server::peer_state_bytes each,
 * allocated once: ceil(max_peers / loops) slots per loop, so at most
 * max_peers + loops - 1 in all, plus per slot 16 bytes of hand-over queue,
 * 192 of deferred-answer queue and two io_uring completion entries, 32
 * bytes); a peer holds at most 3 fds in the server (its socket, its pidfd,
 * the reply in flight, unless the reply shares a memory's own fd), checked
 * against RLIMIT_NOFILE; a peer beyond max_peers, or beyond its uid's share,
 * is sent EBUSY and closed. No fd a peer attaches is closed on an event
 * loop: SO_PASSRIGHTS is off (Linux 6.16), else they go to a closer thread.
 * The io_uring engine is chosen only after a self-test recvmsg delivered
 * an fd (see server_options and docs/protocol.md, "Server engines").
 *
 * Built as its own library, libxmem-server (pkg-config libxmem-server),
 * so users of the core library do not link liburing. Its stream mode,
 * for length-prefixed protocols on SOCK_STREAM (ssh-agent's), is
 * stream_server.hpp, on the same slots, loops and replies.
 */
#pragma once

#include <xmem/channel.hpp>
#include <xmem/unique_fd.hpp>
#include <xmem/wire.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace xmem {

namespace srv {
struct mailbox;
struct defer_point;
} // namespace srv

class pending_reply;

enum class server_engine { io_uring, epoll };

/* "io_uring" or "epoll". */
std::string_view to_string(server_engine e) noexcept;

/*
 * What a request handler is told. Valid only during the call, and only on
 * the thread that makes it: with several event loops, the handler runs on
 * several threads at once, one request per loop.
 */
struct request_context {
	std::uint64_t peer;		/* this connection's id, unique for the server's life */
	peer_credentials cred;		/* SO_PEERCRED, recorded at connect(): for uid checks */
	/*
	 * SO_PEERPIDFD (Linux 6.5+): names the peer process and, unlike
	 * cred.pid, can never come to name another one after it exits. Use it
	 * for decisions that name a process (pidfd_send_signal(2), reading
	 * /proc through it). -1 where the kernel lacks SO_PEERPIDFD (or
	 * server_options::peer_pidfds is off), and only then: a peer whose
	 * pidfd the server could not get (EMFILE, ESRCH) is logged
	 * ("SO_PEERPIDFD") and closed, never handled without it.
	 */
	borrowed_fd pidfd;
	const wire::header &request;	/* kind request, fd_count 0, batch fields 0 */

	/*
	 * Answers this request later, from any thread: returns the handle to
	 * answer with (pending_reply::answer); the handler then returns
	 * reply::later(). Until it is answered the peer's next request is not
	 * read; it must come within server_options::peer_timeout, else the peer
	 * is closed ("timeout: no answer"). Call it at most once per request.
	 * Throws std::logic_error when called on a copy or twice, std::bad_alloc.
	 */
	[[nodiscard]] pending_reply defer() const;

	/* Internal: the server's slot this request came on (null in a copy). */
	srv::defer_point *defer_state = nullptr;
};

/* A peer as the connect and disconnect hooks see it (valid during the call only). */
struct peer_info {
	std::uint64_t peer;		/* as request_context::peer */
	peer_credentials cred;		/* SO_PEERCRED at connect() */
	borrowed_fd pidfd;		/* SO_PEERPIDFD, or -1 as in request_context */
};

/* A handler's answer. */
struct reply {
	/*
	 * Memory to hand over: sent with its size (fstat) and seals
	 * (F_GET_SEALS) as the kernel reports them, named as the request.
	 * The server closes it once sent.
	 */
	unique_fd memory;
	/*
	 * Or memory to hand over by its own fd, with no duplicate made: the
	 * server holds this reference until the reply is sent, so the memory
	 * and its fd stay alive until then. Its fd must not be released
	 * (memory::release()) or the memory moved from meanwhile. Used when
	 * @memory is not set.
	 */
	std::shared_ptr<const xmem::memory> shared;
	/* When memory is not set: the errno the peer gets (0 or out of range: EIO). */
	int error = 0;
	/*
	 * Bytes of @memory when they can never change, as share() sets it for
	 * memfd_secret (size fixed once set, secretmem_setattr(); no seals):
	 * the server then announces this size and no seals without asking the
	 * kernel. 0: it asks (fstat, F_GET_SEALS) before every send. A wrong
	 * value only makes the receiver refuse the memory (verify_memory).
	 */
	std::uint64_t fixed_size = 0;
	/*
	 * Or, for a stream peer (stream_server.hpp) only: a message body to
	 * send, framed by its length (u32, big-endian); at least 1 byte, at
	 * most UINT32_MAX. Public data: it is sent from ordinary memory. A
	 * SEQPACKET peer is sent EIO instead.
	 */
	std::vector<std::byte> bytes;

	/*
	 * Hands over a duplicate of @m's fd (F_DUPFD_CLOEXEC), with its fixed
	 * size when it has one (memfd_secret). Throws std::system_error.
	 */
	static reply share(const xmem::memory &m);
	/*
	 * Hands over @m itself (reply::shared): no fd is duplicated or closed
	 * per reply. With @m's fixed size as above. EINVAL (std::system_error)
	 * when @m is null or holds no fd.
	 */
	static reply share(std::shared_ptr<const xmem::memory> m);
	/* Refuses with errno @err (EACCES, ENOENT, ...); a stream peer is closed. */
	static reply refuse(int err) noexcept;
	/* Sends @body to a stream peer (reply::bytes). */
	static reply send(std::vector<std::byte> body) noexcept;
	/* What a handler returns after request_context::defer(). */
	static reply later() noexcept;

	/* Set by later(): the answer comes through a pending_reply. */
	bool deferred = false;
};

/*
 * The handle a handler gets from request_context::defer(): the answer to one
 * request of one peer, given later from any thread. Move-only. Answering a
 * peer that has gone (closed, timed out, the server destroyed) does nothing:
 * the reply (its fd, its shared memory) is released. A handle destroyed
 * unanswered answers EIO, so no peer waits for a reply nobody will give.
 */
class pending_reply
{
public:
	pending_reply() noexcept = default;
	pending_reply(pending_reply &&other) noexcept;
	pending_reply &operator=(pending_reply &&other) noexcept;
	pending_reply(const pending_reply &) = delete;
	pending_reply &operator=(const pending_reply &) = delete;
	~pending_reply();

	/*
	 * Sends @r to the peer (through its event loop: the loop is woken and
	 * sends it as it would a handler's return value). Thread-safe; the
	 * first call counts, later ones and calls on an empty handle do
	 * nothing. reply::later() here answers EIO.
	 */
	void answer(reply r) noexcept;
	/* The peer this answers (request_context::peer); 0 when empty or answered. */
	[[nodiscard]] std::uint64_t peer() const noexcept { return id_; }

private:
	friend struct request_context;
	friend struct stream_context;
	/* The handle for @point's request (request_context::defer, stream_context::defer). */
	static pending_reply take(srv::defer_point *point, std::string name);
	std::shared_ptr<srv::mailbox> box_;
	std::uint32_t slot_ = 0;
	std::uint64_t id_ = 0;
	std::uint64_t request_ = 0;	/* which of the peer's requests */
	std::string name_;	/* the request's, for the reply's header */
};

/* One thing that went wrong with one peer; that peer has been closed. */
struct log_event {
	std::uint64_t peer;
	peer_credentials cred;
	std::error_code error;	/* errc::..., errno, or std::errc::timed_out */
	std::string_view what;	/* "receive", "send", "timeout", "flood", "peer limit", ... */
};

struct server_options {
	/*
	 * Peers connected at once (>= 1); more are sent an error message,
	 * EBUSY, and closed. Each costs the server up to 3 fds (its socket,
	 * its pidfd, the reply in flight): the constructor checks
	 * RLIMIT_NOFILE for them (see server::server).
	 */
	std::size_t max_peers = 1024;
	/*
	 * Peers one uid (SO_PEERCRED) may have connected at once, so that one
	 * local user cannot take every slot: 0 for half of max_peers (at
	 * least 1); max_peers or more: no share. Past it a new peer of that
	 * uid is sent EBUSY and closed (logged "uid share").
	 */
	std::size_t max_peers_per_uid = 0;
	/*
	 * A peer must send its next request, and take the reply to it, within
	 * this (> 0) of connecting or of its last reply: one that connects and
	 * never sends, or stops reading its replies, is closed (errc: timed_out).
	 */
	std::chrono::milliseconds peer_timeout{10000};
	/*
	 * Flood limit: requests a peer may send per second, sustained, with
	 * bursts of up to @request_burst (a token bucket). 0: no limit. A peer
	 * over it is closed (errno EBUSY in the log).
	 */
	unsigned requests_per_second = 1000;
	unsigned request_burst = 256;
	/* Serve with epoll even when io_uring is available. */
	bool force_epoll = false;
	/* Ask SO_PEERPIDFD for every peer (one more fd per peer). */
	bool peer_pidfds = true;
	/*
	 * Turn SO_PASSRIGHTS off on the listener and every peer's socket
	 * (Linux 6.16, net/core/sock.c): requests carry no fds, so a peer's
	 * sendmsg(2) with SCM_RIGHTS fails (EPERM) in the peer and no fd of
	 * its reaches the server. Older kernels (ENOPROTOOPT) are served as
	 * with this off: fds that do arrive are closed on the server's closer
	 * thread, never on an event loop (a close(2) can block: a TCP socket
	 * with SO_LINGER and unsent data, a file on FUSE). Off: tests of the
	 * closer thread.
	 */
	bool refuse_fds = true;
	/*
	 * Fds one uid's peers sent that the closer thread has not closed yet,
	 * past which that uid gets no new peer (sent EBUSY, logged "stray
	 * fds"), so that fds whose close() blocks cannot pile up in the server
	 * faster than they are closed (>= 1).
	 */
	std::size_t max_stray_fds_per_uid = 64;
	/*
	 * io_uring event loops, each a thread with its own ring: 0 for one per
	 * online CPU (sysconf(_SC_NPROCESSORS_ONLN)), 1 for a single thread
	 * (the handler is then never called concurrently). At most max_peers.
	 * When fewer rings can be set up than asked (RLIMIT_MEMLOCK before
	 * Linux 5.12), as many loops as rings. epoll always has one loop.
	 */
	unsigned event_loops = 0;
};

/* Counters since construction; readable from any thread. */
struct server_stats {
	std::uint64_t accepted;		/* peers taken on */
	std::uint64_t refused;		/* sent EBUSY: at max_peers */
	std::uint64_t served;		/* replies sent (memory or errno) */
	std::uint64_t closed;		/* peers that went, for any reason */
	std::uint64_t errors;		/* of which the server closed (each logged) */
	std::uint64_t timeouts;		/* of those, at peer_timeout */
	std::uint64_t floods;		/* of those, over the flood limit */
	std::uint64_t active;		/* connected now */
	std::uint64_t stray_fds;	/* fds peers attached, closed off the event loops */
	std::uint64_t stray_fds_closing;	/* of those, queued or in close(2) now */
};

class server
{
public:
	/*
	 * Decides each request. Called concurrently from every event loop's
	 * thread (server_options::event_loops; io_uring only): whatever it
	 * touches beyond its request_context must be safe for that (const
	 * data, atomics, a mutex around what it changes). It should not block:
	 * the other peers of its loop wait while it runs.
	 */
	using handler = std::function<reply(const request_context &)>;
	/* Told each peer's failure. Called from any loop's thread, never two at once. */
	using logger = std::function<void(const log_event &)>;

	/*
	 * What a server calls. Each runs on the event loop of its peer, as the
	 * handler does (so concurrently with several loops), and should not
	 * block. Only on_request is required.
	 */
	struct callbacks {
		handler on_request;
		/*
		 * A new peer, before its first request is read: 0 takes it, an
		 * errno (EACCES, ...) refuses it: the peer is sent an error
		 * message with it and closed (logged "refused"). Empty: every
		 * peer is taken.
		 */
		std::function<int(const peer_info &)> on_connect;
		/* A peer on_connect took has gone, for any reason (also at stop). */
		std::function<void(const peer_info &)> on_disconnect;
		/* As @log of the constructor below. */
		logger on_error;
	};

	/* Bytes of server state per peer slot (fixed; all allocated up front). */
	static const std::size_t peer_state_bytes;

	/*
	 * Serves @l with @h (called on the loops' threads, concurrently when
	 * there are several: see handler). @log gets each peer's failure; may be
	 * empty. Picks the engine (see the top of this file). Throws
	 * std::system_error: EINVAL for max_peers 0 or peer_timeout <= 0;
	 * EMFILE when RLIMIT_NOFILE cannot hold max_peers peers (per peer its
	 * socket, its pidfd with peer_pidfds and a reply's fd, plus 64 for the
	 * server and the process; the soft limit is first raised toward the
	 * hard one, as systemd does for its services); errno from eventfd(2)
	 * (one per loop, and one to stop), epoll_create1(2).
	 */
	server(listener l, handler h, server_options opts = {}, logger log = {});
	/* The same with connect and disconnect hooks (callbacks::on_request required). */
	server(listener l, callbacks cb, server_options opts = {});
	server(const server &) = delete;
	server &operator=(const server &) = delete;
	/* run() must have returned. Closes every peer, the listener unlinks its path. */
	~server();

	[[nodiscard]] server_engine engine() const noexcept;
	/* Why io_uring is not used ("" when it is): the failing call and its errno. */
	[[nodiscard]] const std::string &fallback_reason() const noexcept;
	/* Event loops (threads) run() serves with: >= 1; 1 with epoll. */
	[[nodiscard]] std::size_t event_loops() const noexcept;

	/*
	 * Serves until stop(); then closes every peer and returns. Runs the
	 * first event loop on the calling thread and starts a thread for each
	 * other, joined before it returns. Call it once: a server whose run()
	 * has returned stays stopped (make a new one to serve again).
	 * Throws std::system_error when the server itself fails
	 * (io_uring_enter(2), epoll_wait(2) errors other than EINTR, or
	 * std::thread failing to start): a loop failing stops the others first.
	 */
	void run();
	/* Makes run() return soon. Thread-safe and async-signal-safe (eventfd write). */
	void stop() noexcept;

	[[nodiscard]] server_stats stats() const noexcept;

	struct impl;

private:
	std::unique_ptr<impl> impl_;
};

} // namespace xmem
