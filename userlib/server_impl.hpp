// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The server's insides (internal): the per-peer state machine that both
 * engines drive (server.cpp), and the engine interface that io_uring
 * (server_uring.cpp) and epoll (server_epoll.cpp) implement.
 *
 * A peer slot goes free -> receiving -> sending -> receiving ... and, on any
 * error, timeout or flood, -> closing -> free once no operation of its is
 * in flight (io_uring may still own its buffers until then).
 *
 * Event loops: a server has one or more cores, each with its own peer slots
 * and its own engine, run on its own thread (io_uring; epoll has one). What
 * they share is in `shared`: the listener, handler, options, logger, stop
 * eventfd and counters. Core 0 alone accepts; it hands each new socket to
 * the core with the fewest peers (its own included): pushed on that core's
 * inbox under a mutex and announced by a write to that core's wake eventfd.
 * Every core's slot count is ceil(max_peers / loops); since only core 0
 * adds to a core's load and admits a peer only while the sum of loads is
 * below max_peers, the least-loaded core always has a free slot.
 */
#pragma once

#include <xmem/error.hpp>
#include <xmem/mapping.hpp>
#include <xmem/server.hpp>
#include <xmem/stream_server.hpp>

#include "cmsg.hpp"

#include <array>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unordered_map>
#include <vector>

namespace xmem::srv {

using clock = std::chrono::steady_clock;

/* An errno a peer may be sent: 1..4095, else EIO. */
inline int sendable_errno(int err) noexcept
{
	return err > 0 && err < 4096 ? err : EIO;
}

/* Requests carry no fds: room for credentials only; a peer's stray fds still fit the slack. */
inline constexpr std::size_t rx_control_bytes = detail::control_space(0);
inline constexpr std::size_t rx_fd_slots = detail::fds_fitting(rx_control_bytes);
/* A reply carries at most one fd. */
inline constexpr std::size_t tx_control_bytes = CMSG_SPACE(sizeof(int));

/*
 * awaiting: the handler deferred its answer (request_context::defer); no
 * operation is in flight until the answer comes through the core's mailbox.
 * draining: closed for the peer's misdeeds while a reply it has not taken
 * is still in its queue (SIOCOUTQ > 0): the fd in that reply counts
 * against this process's uid in flight (net/unix: too_many_unix_fds() compares
 * it with RLIMIT_NOFILE), so the slot and its uid's share stay taken
 * until the peer takes the reply or hangs up (review-peer finding 1).
 */
enum class peer_state : std::uint8_t { free, receiving, awaiting, sending, draining, closing };
enum class op : std::uint8_t { none, receive, send };

/*
 * A stream peer's message being received and reply being sent
 * (stream_server.hpp): the 4-byte length goes to peer_slot::rx, the body to
 * @page (bodies up to body_page bytes, kept while the peer is connected) or
 * @region (larger ones, @charged bytes of the body budgets, unmapped once
 * handled). Unused for SEQPACKET peers.
 */
struct stream_peer {
	std::uint32_t length = 0;	/* of the body being received; 0 until its length is whole */
	std::size_t header_got = 0;	/* bytes of the length received, 0..4 */
	std::size_t got = 0;		/* bytes of the body received */
	bool started = false;		/* a byte of this message came: message_timeout runs */
	mapping page;
	mapping region;
	std::size_t charged = 0;
	std::vector<std::byte> out;	/* the reply's body; its length is in peer_slot::tx */
	std::array<struct iovec, 2> iov;

	/* Where the body goes: @region when mapped, else @page. */
	[[nodiscard]] mapping &target() noexcept { return region.valid() ? region : page; }
};

struct peer_slot {
	peer_state state = peer_state::free;
	op pending = op::none;		/* io_uring: the operation in flight */
	std::uint32_t epoll_events = 0;	/* epoll: what it is registered for; 0: not */
	std::uint32_t index = 0;
	std::uint64_t id = 0;
	std::uint64_t requests = 0;	/* requests handled: tells a deferred answer's request */
	unique_fd sock;
	unique_fd pidfd;
	unique_fd reply_fd;		/* the memory being sent, until sendmsg completes */
	/* Or the memory being sent by its own fd (reply::shared), until sendmsg completes. */
	std::shared_ptr<const memory> reply_shared;
	peer_credentials cred{};
	bool connected = false;		/* on_connect took it: on_disconnect is due */
	bool uid_counted = false;	/* counted in shared::uid_peers */
	clock::time_point deadline;
	clock::time_point refilled;	/* flood limit: token bucket */
	double tokens = 0;

	std::array<std::byte, wire::header_size> rx;
	detail::control_buffer<rx_control_bytes> rx_control;
	struct msghdr rx_msg;
	struct iovec rx_iov;
	std::array<unique_fd, rx_fd_slots> rx_fds;

	std::array<std::byte, wire::header_size> tx;
	detail::control_buffer<tx_control_bytes> tx_control;
	struct msghdr tx_msg;
	struct iovec tx_iov;

	stream_peer stream;
};

class core;

/* An answer given through a pending_reply, for slot @slot while it serves peer @id. */
struct answer {
	std::uint32_t slot;
	std::uint64_t id;
	std::uint64_t request;	/* which of the peer's requests: peer_slot::requests */
	std::string name;	/* the request's */
	reply r;
};

/*
 * Where pending_reply answers go: one per core, shared with every handle
 * still out, so a handle may outlive the server (closed: answers dropped).
 * @wake is the core's wake eventfd, which its loop polls.
 */
struct mailbox {
	std::mutex mutex;
	std::vector<answer> answers;
	bool closed = false;
	unique_fd wake;

	/* Queues @a and wakes the loop; drops it when closed or out of memory. */
	void post(answer a) noexcept;
};

/* What request_context::defer() needs: the core and slot of the request. */
struct defer_point {
	std::shared_ptr<mailbox> box;
	std::uint32_t slot;
	std::uint64_t id;
	std::uint64_t request;
	bool deferred = false;
};

/*
 * Closes fds on a thread of its own: fds peers attached where none was
 * expected, whose close(2) may block for as long as the peer likes (a TCP
 * socket with SO_LINGER and unsent data; a file on FUSE, FUSE_FLUSH). As
 * systemd's asynchronous_close(), so the event loops never wait for them.
 */
class closer
{
public:
	/* Throws std::system_error when the thread cannot start. */
	closer();
	closer(const closer &) = delete;
	closer &operator=(const closer &) = delete;
	/* Closes what is still queued, then joins. */
	~closer();

	/* Queues @fd, which a peer of @uid sent, to be closed (closed here when the queue cannot grow). */
	void close_later(int fd, uid_t uid) noexcept;
	/* Fds queued and not yet closed: in all, and sent by peers of @uid. */
	[[nodiscard]] std::size_t pending() const noexcept { return pending_.load(); }
	[[nodiscard]] std::size_t pending_for(uid_t uid) noexcept;

private:
	void run();

	std::mutex mutex_;
	std::condition_variable cv_;
	std::vector<std::pair<int, uid_t>> queue_;
	std::unordered_map<uid_t, std::size_t> per_uid_;
	std::atomic<std::size_t> pending_{0};
	bool stopping_ = false;
	std::thread thread_;
};

class engine_base
{
public:
	virtual ~engine_base() = default;
	virtual server_engine kind() const noexcept = 0;
	/* Serves until the core is stopping and every peer slot is free again. */
	virtual void run() = 0;
	/*
	 * Start receiving a request into p.rx_msg (built). An error (epoll_ctl(2)
	 * failing: ENOSPC past fs.epoll.max_user_watches, ENOMEM) fails that
	 * peer only; the core closes it.
	 */
	[[nodiscard]] virtual std::error_code arm_receive(peer_slot &p) = 0;
	/* Start sending p.tx_msg (built). Errors as arm_receive(). */
	[[nodiscard]] virtual std::error_code arm_send(peer_slot &p) = 0;
	/* Stop @p's operations; the core releases it when none is in flight. */
	virtual void abort(peer_slot &p) = 0;
	/* True while @p has an operation in flight that may still use its buffers. */
	virtual bool in_flight(const peer_slot &p) const noexcept = 0;
	/* Accept again after pause_accept (called on every tick). */
	virtual void resume_accept() = 0;
	/* @p awaits a deferred answer: watch nothing of it meanwhile. */
	virtual void pause(peer_slot &p) = 0;
	/* Part of p.tx_msg was sent (a stream reply): wait for room for the rest. */
	[[nodiscard]] virtual std::error_code wait_send(peer_slot &p) { return arm_send(p); }
};

/*
 * The io_uring self-test, once per server before any loop is set up: one
 * IORING_OP_RECVMSG of a message carrying one fd (SCM_RIGHTS) over a
 * socketpair. The opcode probe is not enough: Linux 5.5 to 5.11 have the
 * opcode and fail it with EINVAL when control data comes on AF_UNIX. False
 * with @why set (the call, its errno, and for EPERM whether a seccomp filter
 * or kernel.io_uring_disabled refused it).
 */
bool uring_passes_fds(std::string &why);

/* io_uring for @c's slots, or nullptr with @why set (the failing call and its errno). */
std::unique_ptr<engine_base> make_uring_engine(core &c, std::string &why);
std::unique_ptr<engine_base> make_epoll_engine(core &c);

/* A stream server's handler and options (stream_server.hpp), owned by its impl. */
struct stream_config {
	stream_server::handler handler;
	stream_options opts;
};

/* The SEQPACKET server's options for a stream server's: what the shared code reads. */
server_options stream_server_options(const stream_options &o) noexcept;

/* What every event loop of one server shares. */
struct shared {
	shared(listener l, server::callbacks cb, server_options o);
	/* A stream server on @listen_fd: no io_uring, @cfg outlives this. */
	shared(unique_fd listen_fd, const stream_config &cfg, server::callbacks cb);

	listener listen;
	unique_fd stream_listen;	/* a stream server's listener (then @listen is empty) */
	const stream_config *stream = nullptr;	/* a stream server's, else null */
	server::handler handler;	/* called concurrently by every loop */
	std::function<int(const peer_info &)> on_connect;
	std::function<void(const peer_info &)> on_disconnect;
	server_options opts;
	std::size_t per_uid;		/* opts.max_peers_per_uid resolved */
	bool refuse_fds;		/* SO_PASSRIGHTS is off on every peer socket */
	server::logger log_fn;		/* called under log_mutex: never concurrently */
	std::mutex log_mutex;
	unique_fd stop_fd;
	std::atomic<std::uint64_t> next_id{1};
	std::vector<std::unique_ptr<core>> cores;	/* cores[0] accepts */
	closer stray;			/* fds peers attached */

	/* Peers connected per uid (core 0 adds, any core removes). */
	std::mutex uid_mutex;
	std::unordered_map<uid_t, std::size_t> uid_peers;

	struct counters {
		std::atomic<std::uint64_t> accepted{0}, refused{0}, served{0}, closed{0},
			errors{0}, timeouts{0}, floods{0}, active{0}, stray_fds{0};
	} stats;

	/* Stream servers: bytes of body regions held, in all and per uid (the loop's thread). */
	std::mutex body_mutex;		/* held for uid_body_used: loops charge concurrently */
	std::atomic<std::size_t> body_used{0};
	std::unordered_map<uid_t, std::size_t> uid_body_used;

	[[nodiscard]] int listen_fd() const noexcept
	{
		return stream ? stream_listen.get() : listen.fd().get();
	}
	/* Runs every core's loop (cores[0] on this thread) until stop; as server::run(). */
	void run();
	/* As server::stop(). */
	void stop() noexcept;
	[[nodiscard]] server_stats snapshot() const noexcept;

	void log(std::uint64_t peer, const peer_credentials &cred, std::error_code ec,
		 std::string_view what) noexcept;
	/* Checks and settings common to both constructors. */
	void set_up();
	/* @n cores, ceil(max_peers / n) slots each. */
	void make_cores(std::size_t n);
	/*
	 * The cores and their engines: io_uring with opts.event_loops loops
	 * (after uring_passes_fds), else epoll with one. Returns why io_uring
	 * is not used ("" when it is).
	 */
	std::string set_up_engines();
	/* One more peer of @uid, unless it has its share already. */
	bool take_uid(uid_t uid) noexcept;
	void drop_uid(uid_t uid) noexcept;
};

class core
{
public:
	/* Core @index of @s, with @slots peer slots (>= 1). */
	core(shared &s, std::size_t index, std::size_t slots);
	/* The engine goes first: a ring must not outlive the slots its requests point into. */
	~core();
	core(const core &) = delete;
	core &operator=(const core &) = delete;

	/*
	 * Core 0: a newly accepted socket (engines: SOCK_CLOEXEC, epoll also
	 * SOCK_NONBLOCK). Refused (EBUSY) at max_peers, else handed to the
	 * least-loaded core.
	 */
	void accepted(unique_fd sock);
	/* Wake eventfd readable: take the sockets core 0 handed over, and the answers given. */
	void take_inbox();
	/* Closes sockets still in the inbox (run() is over). */
	void drop_inbox() noexcept;
	/* recvmsg finished: @res bytes, or -errno. */
	void received(peer_slot &p, long res);
	/* sendmsg finished: @res bytes, or -errno. */
	void sent(peer_slot &p, long res);
	/* An operation of a closing slot finished: free it when nothing is left. */
	void settle(peer_slot &p);
	/* Timeouts; also lets the engine accept again. Call at least every tick(). */
	void sweep(clock::time_point now);
	/* accept(2) failing for the server itself (EMFILE...): logged, not fatal. */
	void accept_failed(int err);
	/* Closes every peer (no log): run() is ending. */
	void close_all();

	[[nodiscard]] std::chrono::milliseconds tick() const noexcept;
	[[nodiscard]] bool stopping() const noexcept { return stopping_; }
	void set_stopping() noexcept { stopping_ = true; }
	[[nodiscard]] std::size_t in_use() const noexcept { return in_use_; }
	[[nodiscard]] std::vector<peer_slot> &slots() noexcept { return slots_; }
	[[nodiscard]] bool accepts() const noexcept { return index_ == 0; }
	[[nodiscard]] int listen_fd() const noexcept { return shared_.listen_fd(); }
	[[nodiscard]] bool streaming() const noexcept { return shared_.stream != nullptr; }
	/* epoll: a stream peer's socket is readable: receive what came, handle one whole message. */
	void stream_readable(peer_slot &p);
	/* io_uring: a stream peer's recvmsg completed with @res bytes or -errno. */
	void stream_received(peer_slot &p, long res);
	[[nodiscard]] int stop_fd() const noexcept { return shared_.stop_fd.get(); }
	[[nodiscard]] int wake_fd() const noexcept { return box_->wake.get(); }

	engine_base *engine = nullptr;
	std::unique_ptr<engine_base> owned_engine;

private:
	/* @uid: the peer's, already counted in shared::uid_peers. */
	void take_peer(unique_fd sock, uid_t uid);
	void hand_over(unique_fd sock, uid_t uid);
	/* Logs, closes @p, then counts an error (and @also: timeouts, floods). */
	void fail(peer_slot &p, std::error_code ec, std::string_view what,
		  std::atomic<std::uint64_t> *also = nullptr);
	void begin_close(peer_slot &p);
	void release(peer_slot &p);
	/* Sends @sock an error message of @err and closes it; logs @what. */
	void refuse(unique_fd sock, int err, std::string_view what);
	bool over_flood_limit(peer_slot &p, clock::time_point now) noexcept;
	/* Sends @r as the answer to @p's request (a handler's or a pending_reply's). */
	void respond(peer_slot &p, std::string name, reply r, clock::time_point now);
	/* Hands the fds @p received to the closer thread. */
	void discard_fds(peer_slot &p) noexcept;
	/*
	 * Calls @call (the handler, given the defer point) for @p's next
	 * request or message, after the flood limit; then answers as it says
	 * (respond, or awaiting a deferred answer).
	 */
	template <class Call>
	void handle(peer_slot &p, std::string name, clock::time_point now, Call &&call);
	/* The deadline of @p's state from @now (stream servers: per state; else peer_timeout). */
	[[nodiscard]] clock::time_point deadline_for(const peer_slot &p, clock::time_point now) const noexcept;

	/* Stream peers (server.cpp, after the SEQPACKET code). */
	bool stream_prepare(peer_slot &p);
	bool stream_consume(peer_slot &p, long res);
	bool stream_body(peer_slot &p);
	bool stream_region(peer_slot &p, std::size_t size, mapping &out, std::size_t &charged);
	void stream_uncharge(peer_slot &p, std::size_t bytes) noexcept;
	void stream_done(peer_slot &p) noexcept;
	void stream_release(peer_slot &p) noexcept;
	void stream_respond(peer_slot &p, reply r, clock::time_point now);
	void stream_sent(peer_slot &p, std::size_t n);
	[[nodiscard]] std::string stream_timeout_reason(const peer_slot &p) const;

	shared &shared_;
	std::size_t index_;
	std::vector<peer_slot> slots_;
	std::vector<std::uint32_t> free_;	/* indices of free slots, used as a stack */
	std::size_t in_use_ = 0;
	bool stopping_ = false;
	bool pidfd_unsupported_ = false;

	/* Peers of this core, counting sockets still in the inbox: core 0 adds, this core takes. */
	std::atomic<std::size_t> load_{0};
	std::mutex inbox_mutex_;
	std::vector<std::pair<int, uid_t>> inbox_;	/* reserved for every slot: pushing never allocates */
	std::vector<std::pair<int, uid_t>> taking_;	/* the same; swapped with inbox_ */
	std::shared_ptr<mailbox> box_;	/* pending_reply answers; owns the wake eventfd */
	std::vector<answer> answering_;	/* swapped with box_->answers */
};

/* core::handle: used for SEQPACKET requests (server.cpp) and stream messages (server_stream.cpp). */
template <class Call>
inline void core::handle(peer_slot &p, std::string name, clock::time_point now, Call &&call)
{
	if (over_flood_limit(p, now)) {
		fail(p, detail::errno_code(EBUSY), "flood", &shared_.stats.floods);
		return;
	}

	reply r;
	p.requests++;
	defer_point point{box_, p.index, p.id, p.requests};
	try {
		r = call(point);
	} catch (const std::system_error &e) {
		fail(p, e.code(), "handler");
		return;
	} catch (...) {
		fail(p, detail::errno_code(EIO), "handler");
		return;
	}
	if (r.deferred) {
		if (!point.deferred) {
			fail(p, detail::errno_code(EIO), "handler: reply::later() without defer()");
			return;
		}
		/* The answer comes through the mailbox (take_inbox), within its timeout. */
		p.state = peer_state::awaiting;
		p.deadline = deadline_for(p, now);
		engine->pause(p);
		return;
	}
	/* A handle taken and not used: its answer finds the peer no longer awaiting. */
	respond(p, std::move(name), std::move(r), now);
}

} // namespace xmem::srv
