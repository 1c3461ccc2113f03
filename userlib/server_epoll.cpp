// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The epoll engine: non-blocking sockets, level-triggered. A peer is
 * registered for EPOLLIN while it may send a request and for EPOLLOUT while
 * a reply waits for room; each wakeup handles one request per peer, so a
 * flooding peer cannot starve the others (fd-passing case 15).
 */
#include "server_impl.hpp"

#include <xmem/error.hpp>

#include <cerrno>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

namespace xmem::srv {

namespace {

constexpr std::uint64_t tag_listener = ~std::uint64_t(0);
constexpr std::uint64_t tag_stop = ~std::uint64_t(0) - 1;
constexpr std::uint64_t tag_wake = ~std::uint64_t(0) - 2;
/* Connections taken per wakeup of the listener, so peers already here keep their turn. */
constexpr int accepts_per_wakeup = 64;

class epoll_engine final : public engine_base
{
public:
	explicit epoll_engine(core &c) : core_(c)
	{
		ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
		if (!ep_)
			throw std::system_error(detail::errno_code(errno), "server: epoll_create1");
		const int fl = ::fcntl(core_.listen_fd(), F_GETFL);
		if (fl < 0 || ::fcntl(core_.listen_fd(), F_SETFL, fl | O_NONBLOCK) < 0)
			throw std::system_error(detail::errno_code(errno),
						"server: making the listener non-blocking");
		ctl(EPOLL_CTL_ADD, core_.listen_fd(), EPOLLIN, tag_listener);
		ctl(EPOLL_CTL_ADD, core_.stop_fd(), EPOLLIN, tag_stop);
		/* Answers given through pending_reply (the one core: no peers are handed over). */
		ctl(EPOLL_CTL_ADD, core_.wake_fd(), EPOLLIN, tag_wake);
	}

	server_engine kind() const noexcept override { return server_engine::epoll; }

	void run() override
	{
		std::array<struct epoll_event, 128> events;
		auto next_sweep = clock::now() + core_.tick();
		while (!core_.stopping() || core_.in_use() > 0) {
			const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
				next_sweep - clock::now());
			int n = ::epoll_wait(ep_.get(), events.data(), events.size(),
					     static_cast<int>(std::max<long>(0, wait.count()) + 1));
			if (n < 0 && errno != EINTR)
				throw std::system_error(detail::errno_code(errno), "server: epoll_wait");
			for (int i = 0; i < n; i++)
				dispatch(events[i]);
			const auto now = clock::now();
			if (now >= next_sweep) {
				core_.sweep(now);
				next_sweep = now + core_.tick();
			}
		}
	}

	std::error_code arm_receive(peer_slot &p) override { return want(p, EPOLLIN); }

	std::error_code arm_send(peer_slot &p) override
	{
		/* Most replies fit at once; wait for EPOLLOUT only when they do not. */
		if (!try_send(p))
			return want(p, EPOLLOUT);
		return {};
	}

	void abort(peer_slot &p) override
	{
		if (p.epoll_events)
			::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, p.sock.get(), nullptr);
		p.epoll_events = 0;
	}

	bool in_flight(const peer_slot &) const noexcept override { return false; }

	void pause(peer_slot &p) override { abort(p); }

	std::error_code wait_send(peer_slot &p) override { return want(p, EPOLLOUT); }

	void resume_accept() override
	{
		if (accept_paused_ && !core_.stopping()) {
			accept_paused_ = false;
			ctl(EPOLL_CTL_MOD, core_.listen_fd(), EPOLLIN, tag_listener);
		}
	}

private:
	void ctl(int op, int fd, std::uint32_t events, std::uint64_t tag)
	{
		struct epoll_event ev = {};
		ev.events = events;
		ev.data.u64 = tag;
		if (::epoll_ctl(ep_.get(), op, fd, &ev) < 0)
			throw std::system_error(detail::errno_code(errno), "server: epoll_ctl");
	}

	/* Watches @p's socket for @events; epoll_ctl(2)'s errno on failure. */
	std::error_code want(peer_slot &p, std::uint32_t events)
	{
		if (p.epoll_events == events)
			return {};
		struct epoll_event ev = {};
		ev.events = events;
		ev.data.u64 = p.index;
		if (::epoll_ctl(ep_.get(), p.epoll_events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
				p.sock.get(), &ev) < 0)
			return detail::errno_code(errno);
		p.epoll_events = events;
		return {};
	}

	/* False when the socket has no room yet (EAGAIN). */
	bool try_send(peer_slot &p)
	{
		ssize_t n = ::sendmsg(p.sock.get(), &p.tx_msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		core_.sent(p, n < 0 ? -errno : n);
		return true;
	}

	void dispatch(const struct epoll_event &ev)
	{
		if (ev.data.u64 == tag_stop) {
			std::uint64_t v;
			[[maybe_unused]] ssize_t r = ::read(core_.stop_fd(), &v, sizeof(v));
			core_.set_stopping();
			::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, core_.listen_fd(), nullptr);
			core_.close_all();
			return;
		}
		if (ev.data.u64 == tag_listener) {
			accept_some();
			return;
		}
		if (ev.data.u64 == tag_wake) {
			core_.take_inbox();
			return;
		}
		peer_slot &p = core_.slots()[ev.data.u64];
		if (p.state == peer_state::receiving && core_.streaming()) {
			core_.stream_readable(p);
		} else if (p.state == peer_state::receiving) {
			ssize_t n = ::recvmsg(p.sock.get(), &p.rx_msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			core_.received(p, n < 0 ? -errno : n);
		} else if (p.state == peer_state::sending) {
			try_send(p);
		}
	}

	void accept_some()
	{
		for (int i = 0; i < accepts_per_wakeup && !core_.stopping(); i++) {
			int fd = ::accept4(core_.listen_fd(), nullptr, nullptr,
					   SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd >= 0) {
				core_.accepted(unique_fd(fd));
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for the next tick, do not spin. */
			core_.accept_failed(errno);
			ctl(EPOLL_CTL_MOD, core_.listen_fd(), 0, tag_listener);
			accept_paused_ = true;
			return;
		}
	}

	core &core_;
	unique_fd ep_;
	bool accept_paused_ = false;
};

} // namespace

std::unique_ptr<engine_base> make_epoll_engine(core &c)
{
	return std::make_unique<epoll_engine>(c);
}

} // namespace xmem::srv
