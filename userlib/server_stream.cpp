// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The server's stream mode (include/xmem/stream_server.hpp): what differs
 * from SEQPACKET peers, as core methods the shared code calls (server.cpp:
 * take_peer, handle, respond, sent, sweep, release). Framing as
 * draft-miller-ssh-agent section 3: uint32 length, then the message.
 */
#include <xmem/stream_server.hpp>

#include "server_impl.hpp"

#include <xmem/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

namespace xmem {

namespace srv {

namespace {

std::size_t page_round(std::size_t n) noexcept
{
	const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
	return (n + page - 1) / page * page;
}

std::uint32_t be32(const std::byte *b) noexcept
{
	return (std::to_integer<std::uint32_t>(b[0]) << 24) |
	       (std::to_integer<std::uint32_t>(b[1]) << 16) |
	       (std::to_integer<std::uint32_t>(b[2]) << 8) | std::to_integer<std::uint32_t>(b[3]);
}

std::string ms(std::chrono::milliseconds t)
{
	return std::to_string(t.count()) + " ms";
}

} // namespace

server_options stream_server_options(const stream_options &o) noexcept
{
	server_options s;
	s.max_peers = o.max_peers;
	s.max_peers_per_uid = o.max_peers_per_uid;
	/* The sweep's tick follows the shortest deadline (core::tick). */
	auto shortest = std::min({o.message_timeout, o.reply_timeout, o.answer_timeout});
	if (o.idle_timeout.count() > 0)
		shortest = std::min(shortest, o.idle_timeout);
	s.peer_timeout = shortest;
	s.requests_per_second = o.requests_per_second;
	s.request_burst = o.request_burst;
	s.force_epoll = o.force_epoll;
	s.peer_pidfds = o.peer_pidfds;
	s.refuse_fds = o.refuse_fds;
	s.max_stray_fds_per_uid = o.max_stray_fds_per_uid;
	s.event_loops = o.event_loops;
	return s;
}

/*
 * Points p.rx_msg at where the next bytes of @p's message go: the rest of
 * its length, or of its body (growing a full region first). Room for
 * control data: fds a peer attaches go to the closer thread. False: @p
 * was closed (a budget, no memory).
 */
bool core::stream_prepare(peer_slot &p)
{
	stream_peer &s = p.stream;
	std::byte *dst;
	std::size_t want;
	if (s.header_got < 4) {
		dst = p.rx.data() + s.header_got;
		want = 4 - s.header_got;
	} else {
		if (s.got == s.target().size() && !stream_body(p))
			return false;
		mapping &t = s.target();
		dst = t.data() + s.got;
		want = std::min<std::size_t>(s.length, t.size()) - s.got;
	}
	p.rx_iov = {dst, want};
	p.rx_msg = {};
	p.rx_msg.msg_iov = &p.rx_iov;
	p.rx_msg.msg_iovlen = 1;
	p.rx_msg.msg_control = p.rx_control.bytes.data();
	p.rx_msg.msg_controllen = p.rx_control.bytes.size();
	return true;
}

/*
 * A recvmsg(2) of p.rx_msg (stream_prepare) returned @res bytes or -errno.
 * True when more of the message is wanted; false when it was whole and
 * handled (one per turn: the rest waits, fairness) or @p was closed.
 */
bool core::stream_consume(peer_slot &p, long res)
{
	stream_peer &s = p.stream;
	const stream_options &o = shared_.stream->opts;
	if (res < 0) {
		fail(p, detail::errno_code(static_cast<int>(-res)), "receive");
		return false;
	}
	if (p.rx_msg.msg_controllen > 0 || (p.rx_msg.msg_flags & MSG_CTRUNC)) {
		std::size_t k = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&p.rx_msg); c; c = CMSG_NXTHDR(&p.rx_msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			const std::size_t fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (std::size_t i = 0; i < fds; i++) {
				int fd;
				std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				if (k < p.rx_fds.size())
					p.rx_fds[k++].reset(fd);
				else
					::close(fd); /* cannot happen: the buffer holds rx_fd_slots */
			}
		}
		discard_fds(p);
		fail(p, detail::errno_code(EBADMSG), "control data (fds) on a stream");
		return false;
	}
	if (res == 0) {
		if (s.started)
			fail(p, std::make_error_code(std::errc::connection_aborted),
			     "closed in the middle of a message");
		else
			begin_close(p); /* an orderly goodbye */
		return false;
	}
	const auto got = static_cast<std::size_t>(res);
	if (!s.started) {
		s.started = true;
		p.deadline = deadline_for(p, clock::now());
	}
	if (s.header_got < 4) {
		s.header_got += got;
		if (s.header_got < 4)
			return true;
		s.length = be32(p.rx.data());
		/* As OpenSSH's process_message(): these close the connection. */
		if (s.length == 0 || s.length > o.max_message) {
			fail(p, detail::errno_code(EMSGSIZE),
			     "message of " + std::to_string(s.length) + " bytes (at least 1, at most " +
				     std::to_string(o.max_message) + ")");
			return false;
		}
		return stream_body(p);
	}
	s.got += got;
	if (s.got < s.length)
		return true;

	/* One whole message. */
	const std::span<std::byte> body(s.target().data(), s.length);
	handle(p, {}, clock::now(), [&](defer_point &point) {
		stream_context ctx{p.id, p.cred, p.pidfd, body};
		ctx.defer_state = &point;
		reply r = shared_.stream->handler(ctx);
		stream_done(p); /* a handler that throws: the close wipes it (release) */
		return r;
	});
	return false;
}

/* epoll: the socket is readable; receive what came (non-blocking), at most one message. */
void core::stream_readable(peer_slot &p)
{
	while (p.state == peer_state::receiving && stream_prepare(p)) {
		const ssize_t n = ::recvmsg(p.sock.get(), &p.rx_msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (!stream_consume(p, n < 0 ? -errno : n))
			return;
	}
}

/* io_uring: a recvmsg completed; receive on for the rest of the message. */
void core::stream_received(peer_slot &p, long res)
{
	if (!stream_consume(p, res) || p.state != peer_state::receiving || !stream_prepare(p))
		return;
	if (std::error_code ec = engine->arm_receive(p))
		fail(p, ec, "io_uring");
}

/*
 * The body's memory: the peer's page for a small body, else a region of
 * min(length, first_region) bytes, or (the region full) one twice as large
 * or the body's size, the bytes so far copied over. False: @p was closed.
 */
bool core::stream_body(peer_slot &p)
{
	stream_peer &s = p.stream;
	const stream_options &o = shared_.stream->opts;
	if (s.length <= o.body_page) {
		if (!s.page.valid()) {
			/* Not charged: max_peers bounds the pages. */
			std::size_t none = 0;
			if (!stream_region(p, o.body_page, s.page, none))
				return false;
		}
		return true;
	}
	std::size_t size = std::min<std::size_t>(s.length, o.first_region);
	if (s.region.valid())
		size = std::min<std::size_t>(s.length, 2 * s.region.size());
	mapping bigger;
	std::size_t charged = page_round(size);
	if (!stream_region(p, size, bigger, charged))
		return false;
	if (s.region.valid()) {
		std::memcpy(bigger.data(), s.region.data(), s.got);
		::explicit_bzero(s.region.data(), s.got);
		s.region.unmap();
		stream_uncharge(p, s.charged);
	}
	s.region = std::move(bigger);
	s.charged = charged;
	return true;
}

/*
 * Maps @size bytes of new exclusive memory at @out (its fd closed: the
 * mapping keeps it), first charging @charged bytes (0: none) to the
 * budgets. False, @p closed, when a budget is spent or memory::create fails.
 */
bool core::stream_region(peer_slot &p, std::size_t size, mapping &out, std::size_t &charged)
{
	const stream_options &o = shared_.stream->opts;
	const uid_t uid = p.cred.uid;
	std::unique_lock<std::mutex> g(shared_.body_mutex);
	const auto it = shared_.uid_body_used.find(uid);
	const std::size_t mine = it == shared_.uid_body_used.end() ? 0 : it->second;
	const std::size_t used = shared_.body_used.load(std::memory_order_relaxed);
	if (charged && (used + charged > o.body_budget || mine + charged > o.body_budget_per_uid)) {
		const std::string why =
			"the body memory budget is spent (" + std::to_string(used) + " of " +
			std::to_string(o.body_budget) + " bytes in use, " + std::to_string(mine) + " of " +
			std::to_string(o.body_budget_per_uid) + " by uid " + std::to_string(uid) +
			"): a message of " + std::to_string(p.stream.length) + " bytes refused";
		g.unlock();
		fail(p, detail::errno_code(ENOBUFS), why);
		return false;
	}
	if (charged) {
		/* Charged before the memory is made, so that loops cannot pass the budget together. */
		shared_.uid_body_used[uid] += charged; /* reserved for max_peers uids */
		shared_.body_used.fetch_add(charged, std::memory_order_relaxed);
	}
	g.unlock();
	std::error_code ec;
	memory m = memory::create("xmem-stream-body", size, o.memory, ec);
	if (!ec)
		out = mapping::map(m, access::read_write, ec);
	if (ec) {
		stream_uncharge(p, charged);
		fail(p, ec, "no exclusive memory for a message of " +
				    std::to_string(p.stream.length) + " bytes");
		return false;
	}
	return true;
}

void core::stream_uncharge(peer_slot &p, std::size_t bytes) noexcept
{
	if (bytes == 0)
		return;
	std::lock_guard<std::mutex> g(shared_.body_mutex);
	shared_.body_used.fetch_sub(bytes, std::memory_order_relaxed);
	auto it = shared_.uid_body_used.find(p.cred.uid);
	if (it != shared_.uid_body_used.end() && (it->second -= bytes) == 0)
		shared_.uid_body_used.erase(it);
}

/* The message was handled (or the peer goes): wipe its body, let its region go. */
void core::stream_done(peer_slot &p) noexcept
{
	stream_peer &s = p.stream;
	mapping &t = s.target();
	if (t.valid())
		::explicit_bzero(t.data(), std::min(s.got, t.size()));
	if (s.region.valid()) {
		s.region.unmap();
		stream_uncharge(p, s.charged);
		s.charged = 0;
	}
	s.length = 0;
	s.header_got = 0;
	s.got = 0;
	s.started = false;
}

void core::stream_release(peer_slot &p) noexcept
{
	stream_done(p);
	p.stream.page.unmap();
	p.stream.out = {};
}

void core::stream_respond(peer_slot &p, reply r, clock::time_point now)
{
	stream_peer &s = p.stream;
	if (r.memory || r.shared) {
		fail(p, detail::errno_code(EINVAL), "reply: memory for a stream peer");
		return;
	}
	if (r.bytes.empty() || r.bytes.size() > UINT32_MAX) {
		/* reply::refuse(): the handler closes the peer. */
		fail(p, detail::errno_code(r.error ? sendable_errno(r.error) : EINVAL),
		     r.error ? "refused by the handler" : "reply: a body of 0 or more than 2^32-1 bytes");
		return;
	}
	const auto len = static_cast<std::uint32_t>(r.bytes.size());
	p.tx[0] = std::byte(len >> 24);
	p.tx[1] = std::byte(len >> 16);
	p.tx[2] = std::byte(len >> 8);
	p.tx[3] = std::byte(len);
	s.out = std::move(r.bytes);
	s.iov[0] = {p.tx.data(), 4};
	s.iov[1] = {s.out.data(), s.out.size()};
	p.tx_msg = {};
	p.tx_msg.msg_iov = s.iov.data();
	p.tx_msg.msg_iovlen = 2;
	p.state = peer_state::sending;
	p.deadline = deadline_for(p, now);
	if (std::error_code ec = engine->arm_send(p))
		fail(p, ec, "epoll_ctl");
}

/* sendmsg(2) took @n bytes of the reply: the rest later, or read the next message. */
void core::stream_sent(peer_slot &p, std::size_t n)
{
	stream_peer &s = p.stream;
	const auto now = clock::now();
	if (n > 0)
		p.deadline = deadline_for(p, now); /* a byte taken: reply_timeout again */
	while (n > 0 && p.tx_msg.msg_iovlen > 0) {
		struct iovec &v = p.tx_msg.msg_iov[0];
		const std::size_t k = std::min(n, v.iov_len);
		v.iov_base = static_cast<std::byte *>(v.iov_base) + k;
		v.iov_len -= k;
		n -= k;
		if (v.iov_len == 0) {
			p.tx_msg.msg_iov++;
			p.tx_msg.msg_iovlen--;
		}
	}
	if (p.tx_msg.msg_iovlen > 0) {
		if (std::error_code ec = engine->wait_send(p))
			fail(p, ec, "epoll_ctl");
		return;
	}
	s.out = {};
	shared_.stats.served++;
	p.state = peer_state::receiving;
	p.deadline = deadline_for(p, now);
	stream_prepare(p); /* the next length: nothing to fail */
	if (std::error_code ec = engine->arm_receive(p))
		fail(p, ec, "epoll_ctl");
}

std::string core::stream_timeout_reason(const peer_slot &p) const
{
	const stream_options &o = shared_.stream->opts;
	switch (p.state) {
	case peer_state::awaiting:
		return "timeout: no answer within " + ms(o.answer_timeout);
	case peer_state::sending: {
		std::size_t left = 0;
		for (std::size_t i = 0; i < p.tx_msg.msg_iovlen; i++)
			left += p.tx_msg.msg_iov[i].iov_len;
		return std::to_string(left) + " bytes of replies unread for " + ms(o.reply_timeout);
	}
	default:
		if (p.stream.started)
			return "a message not completed within " + ms(o.message_timeout) +
			       " (slow sender)";
		return "timeout: no message within " + ms(o.idle_timeout) + " (idle)";
	}
}

} // namespace srv

struct stream_server::impl {
	srv::stream_config config;
	srv::shared shared;
	std::string fallback_reason;

	impl(unique_fd fd, callbacks cb, stream_options opts)
		: config{std::move(cb.on_request), opts},
		  shared(std::move(fd), config,
			 server::callbacks{{}, std::move(cb.on_connect), std::move(cb.on_disconnect),
					   std::move(cb.on_error)})
	{
		/*
		 * io_uring's accept on an O_NONBLOCK listener may complete with
		 * -EAGAIN instead of waiting (the file's flag wins on some
		 * kernels): blocking here; the epoll engine sets O_NONBLOCK.
		 */
		const int lfd = shared.stream_listen.get();
		const int fl = ::fcntl(lfd, F_GETFL);
		if (fl < 0 || ::fcntl(lfd, F_SETFL, fl & ~O_NONBLOCK) < 0)
			throw std::system_error(detail::errno_code(errno),
						"stream_server: fcntl on the listener");
		fallback_reason = shared.set_up_engines();
	}
};

const std::size_t stream_server::peer_state_bytes = sizeof(srv::peer_slot);

stream_server::stream_server(unique_fd listen_fd, callbacks cb, stream_options opts)
	: impl_(std::make_unique<impl>(std::move(listen_fd), std::move(cb), opts))
{
}

stream_server::~stream_server() = default;

server_engine stream_server::engine() const noexcept
{
	return impl_->shared.cores[0]->engine->kind();
}

const std::string &stream_server::fallback_reason() const noexcept
{
	return impl_->fallback_reason;
}

std::size_t stream_server::event_loops() const noexcept
{
	return impl_->shared.cores.size();
}

void stream_server::run()
{
	impl_->shared.run();
}

void stream_server::stop() noexcept
{
	impl_->shared.stop();
}

server_stats stream_server::stats() const noexcept
{
	return impl_->shared.snapshot();
}

std::size_t stream_server::body_bytes() const noexcept
{
	return impl_->shared.body_used.load(std::memory_order_relaxed);
}

} // namespace xmem
