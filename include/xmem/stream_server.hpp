// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * stream_server: the server's stream mode. Serves peers of an AF_UNIX
 * SOCK_STREAM listener that speak length-prefixed messages: a u32 length,
 * big-endian, then that many bytes of body, in both directions (the framing
 * of ssh-agent: OpenSSH's PROTOCOL.agent, draft-miller-ssh-agent section 3).
 * The peer counts (max_peers, shares), pidfds, flood limit, closer thread
 * and log are the SEQPACKET server's; server_stats counts its peers alike.
 * A handler decides each whole body, from the peer's credentials and pidfd,
 * and answers with bytes (framed by the server), later (defer(), from any
 * thread) or by closing the peer.
 *
 * Every body is received straight into exclusive memory (memory::create:
 * memfd_exclusive, else memfd_secret, as stream_options::memory allows):
 * only the 4 bytes of each length pass through ordinary memory. A peer's
 * bodies of up to stream_options::body_page bytes go to a page of its own,
 * made at its first message and kept (mapped, its fd closed) while it is
 * connected; a larger body gets a region of its own that starts at
 * min(length, first_region) bytes and doubles as the bytes arrive (the last
 * step is the body's exact size), so a half-sent frame holds at most twice
 * what was sent plus first_region. Regions are counted (page-rounded)
 * against a global and a per-uid budget; a peer whose region would pass
 * either is closed ("the body memory budget is spent"). Each body is wiped
 * (explicit_bzero) once handled; a region is unmapped then too.
 *
 * The protections of the SEQPACKET server (server.hpp) carry over, by the
 * same code (userlib/server.cpp and its engines): at most one message per
 * peer per turn of the loop; a peer is not read while its answer is deferred
 * or its reply is unsent, so it parks at most one reply in the server;
 * max_peers and a per-uid share; the flood limit; RLIMIT_NOFILE checked for
 * max_peers; SO_PEERPIDFD; fds a peer attaches closed off the loop (the
 * closer thread); every failure logged through the logger and the peer
 * closed while every other peer is served. Stream-specific: a started
 * message must be complete within message_timeout (slow senders), a reply
 * must see a byte taken within reply_timeout, an idle peer may stay
 * connected (idle_timeout 0).
 *
 * Engines, chosen as server.hpp chooses them (the same self-test and
 * fallbacks): io_uring, one IORING_OP_RECVMSG at a time per peer into the
 * rest of its length or of its body's current region, and IORING_OP_SENDMSG
 * of the reply (again for what a short send left), with event_loops loops;
 * or epoll (one loop; non-blocking recvmsg(2) until the message is whole or
 * the socket empty) when io_uring is unavailable or force_epoll is set.
 */
#pragma once

#include <xmem/memory.hpp>
#include <xmem/server.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

namespace xmem {

/* What a stream handler is told. Valid only during the call, on the loop's thread. */
struct stream_context {
	std::uint64_t peer;		/* this connection's id, unique for the server's life */
	peer_credentials cred;		/* SO_PEERCRED, recorded at connect() */
	borrowed_fd pidfd;		/* SO_PEERPIDFD, or -1: as request_context::pidfd */
	/*
	 * The whole body (>= 1 byte, at most stream_options::max_message), in
	 * exclusive memory. Wiped by the server after the handler returns
	 * (also when it deferred): copy what must outlive the call, into
	 * exclusive memory when it is secret.
	 */
	std::span<std::byte> body;

	/*
	 * As request_context::defer(): the handle to answer with later, from
	 * any thread (pending_reply::answer with reply::send, or
	 * reply::refuse to close the peer); the handler then returns
	 * reply::later(). The peer is not read meanwhile; the answer must come
	 * within stream_options::answer_timeout, else the peer is closed
	 * ("timeout: no answer"). Throws std::logic_error when called twice or
	 * on a copy, std::bad_alloc.
	 */
	[[nodiscard]] pending_reply defer() const;

	/* Internal: the server's slot this message came on (null in a copy). */
	srv::defer_point *defer_state = nullptr;
};

struct stream_options {
	/*
	 * Largest body in bytes (>= 1). A length of 0 or above it closes the
	 * peer, as OpenSSH's process_message() does (AGENT_MAX_LEN, 256 KiB).
	 */
	std::uint32_t max_message = 256 * 1024;
	/* Bodies up to this many bytes go to the peer's own page (bytes, >= 1, page-rounded). */
	std::size_t body_page = 4096;
	/* A larger body's first region: min(length, this) bytes (>= body_page). */
	std::size_t first_region = 16384;
	/*
	 * Bytes of regions being received (page-rounded), by all peers and by
	 * one uid's; a peer's own page is not counted (max_peers bounds those).
	 * A region past either closes its peer. body_budget >= max_message.
	 */
	std::size_t body_budget = 4 << 20;
	std::size_t body_budget_per_uid = 3 << 20;
	/* What bodies are received into (memory::create): exclusive, then secret, by default. */
	create_options memory;

	/* Peers at once (>= 1) and one uid's share of them, as server_options. */
	std::size_t max_peers = 1024;
	std::size_t max_peers_per_uid = 0;
	/* A started message must be whole within this (> 0), else its peer is closed. */
	std::chrono::milliseconds message_timeout{10000};
	/* A reply with bytes unsent must see one taken within this (> 0). */
	std::chrono::milliseconds reply_timeout{30000};
	/* A deferred answer must come within this (> 0). */
	std::chrono::milliseconds answer_timeout{60000};
	/* A peer with no message started is closed after this; 0: never. */
	std::chrono::milliseconds idle_timeout{0};
	/* Flood limit as server_options (a token bucket); 0 (default): none. */
	unsigned requests_per_second = 0;
	unsigned request_burst = 256;
	/* Ask SO_PEERPIDFD for every peer (one more fd per peer). */
	bool peer_pidfds = true;
	/* SO_PASSRIGHTS off on the listener (Linux 6.16), as server_options. */
	bool refuse_fds = true;
	/* Serve with epoll even when io_uring is available. */
	bool force_epoll = false;
	/*
	 * io_uring event loops (threads), as server_options::event_loops but 1
	 * by default, so that the handler is never called concurrently; 0: one
	 * per online CPU. epoll always has one.
	 */
	unsigned event_loops = 1;
	/* As server_options::max_stray_fds_per_uid (>= 1). */
	std::size_t max_stray_fds_per_uid = 64;
};

class stream_server
{
public:
	/*
	 * Decides one body: reply::send(bytes) (framed and sent), reply::later()
	 * after ctx.defer(), or reply::refuse(errno) to close the peer (the
	 * errno logged, "refused by the handler"). A memory reply is refused
	 * the same way (EINVAL). An exception closes the peer ("handler").
	 * Called on the loops' threads: one message at a time with one loop
	 * (the default), concurrently with several (event_loops, io_uring). It
	 * should not block: the other peers of its loop wait while it runs.
	 */
	using handler = std::function<reply(const stream_context &)>;

	struct callbacks {
		handler on_request;	/* required */
		/* As server::callbacks: 0 takes a new peer, an errno closes it (no message sent). */
		std::function<int(const peer_info &)> on_connect;
		std::function<void(const peer_info &)> on_disconnect;
		/*
		 * Each peer's failure, the peer closed: what says why in words
		 * ("peer limit", "uid share", "a message not completed within
		 * 10000 ms (slow sender)", "the body memory budget is spent
		 * (...)", "N bytes of replies unread for 30000 ms", "message of
		 * N bytes (at most M)", ...). Called on the loops' threads,
		 * never two at once.
		 */
		server::logger on_error;
	};

	/* Bytes of server state per peer slot (all allocated up front). */
	static const std::size_t peer_state_bytes;

	/*
	 * Serves @listen_fd, a listening AF_UNIX SOCK_STREAM socket (its
	 * O_NONBLOCK set as the engine needs; closed by the destructor, its
	 * path left to the caller). Throws std::system_error: EINVAL for a socket of another
	 * kind or not listening, max_peers 0, a timeout <= 0, body_page 0,
	 * first_region < body_page, body_budget < max_message or no handler;
	 * EMFILE when RLIMIT_NOFILE cannot hold max_peers peers (per peer its
	 * socket and, with peer_pidfds, its pidfd, plus 64; raised toward the
	 * hard limit first, as server::server); errno of fcntl(2) on the
	 * listener, eventfd(2), epoll_create1(2).
	 */
	stream_server(unique_fd listen_fd, callbacks cb, stream_options opts = {});
	stream_server(const stream_server &) = delete;
	stream_server &operator=(const stream_server &) = delete;
	/* run() must have returned. Closes every peer, wiping their bodies. */
	~stream_server();

	[[nodiscard]] server_engine engine() const noexcept;
	/* Why io_uring is not used ("" when it is): the failing call and its errno. */
	[[nodiscard]] const std::string &fallback_reason() const noexcept;
	/* Event loops (threads) run() serves with: >= 1; 1 with epoll. */
	[[nodiscard]] std::size_t event_loops() const noexcept;

	/* As server::run(): the first loop on the calling thread, until stop(). */
	void run();
	/* Makes run() return soon. Thread-safe and async-signal-safe. */
	void stop() noexcept;

	/* As server::stats(); served counts replies sent whole. */
	[[nodiscard]] server_stats stats() const noexcept;
	/* Bytes of body regions held now (the budget's use; peers' own pages not counted). */
	[[nodiscard]] std::size_t body_bytes() const noexcept;

	struct impl;

private:
	std::unique_ptr<impl> impl_;
};

} // namespace xmem
