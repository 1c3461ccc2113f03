// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/server.hpp>

#include "announce.hpp"
#include "server_impl.hpp"

#include <xmem/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* include/uapi/asm-generic/socket.h, Linux 6.5 */
#endif
#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS 83 /* include/uapi/asm-generic/socket.h, Linux 6.16 */
#endif

#include <poll.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

namespace {
/* Bytes of our sends on @sock its peer has not taken yet (SIOCOUTQ, unix(7)); 0 on error. */
int unread_bytes(int sock) noexcept
{
	int n = 0;
	return ::ioctl(sock, SIOCOUTQ, &n) < 0 ? 0 : n;
}
/* Whether @sock's peer has closed its end (its queue, and our fds in it, are then gone). */
bool hung_up(int sock) noexcept
{
	struct pollfd p = {sock, POLLRDHUP, 0};
	return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}
} // namespace

namespace xmem {

std::string_view to_string(server_engine e) noexcept
{
	return e == server_engine::io_uring ? "io_uring" : "epoll";
}

reply reply::share(const xmem::memory &m)
{
	reply r;
	r.memory = dup_cloexec(m.fd());
	if (m.backend() == backend::secret) {
		/* memory remembers memfd_secret's size: no system call here either. */
		std::error_code ec;
		const std::size_t n = m.size(ec);
		if (!ec)
			r.fixed_size = n;
	}
	return r;
}

reply reply::share(std::shared_ptr<const xmem::memory> m)
{
	if (!m || !m->valid())
		throw std::system_error(detail::errno_code(EINVAL),
					"server: sharing memory that holds no fd");
	reply r;
	if (m->backend() == backend::secret) {
		std::error_code ec;
		const std::size_t n = m->size(ec);
		if (!ec)
			r.fixed_size = n;
	}
	r.shared = std::move(m);
	return r;
}

reply reply::refuse(int err) noexcept
{
	reply r;
	r.error = err;
	return r;
}

reply reply::later() noexcept
{
	reply r;
	r.deferred = true;
	return r;
}

reply reply::send(std::vector<std::byte> body) noexcept
{
	reply r;
	r.bytes = std::move(body);
	return r;
}

pending_reply pending_reply::take(srv::defer_point *point, std::string name)
{
	if (!point || point->deferred)
		throw std::logic_error("server: defer() called twice, or outside the handler's call");
	pending_reply h;
	h.name_ = std::move(name);
	h.box_ = point->box;
	h.slot_ = point->slot;
	h.id_ = point->id;
	h.request_ = point->request;
	point->deferred = true;
	return h;
}

pending_reply request_context::defer() const
{
	return pending_reply::take(defer_state, request.name);
}

pending_reply stream_context::defer() const
{
	return pending_reply::take(defer_state, {});
}

pending_reply::pending_reply(pending_reply &&other) noexcept
	: box_(std::move(other.box_)), slot_(other.slot_), id_(std::exchange(other.id_, 0)),
	  request_(other.request_), name_(std::move(other.name_))
{
}

pending_reply &pending_reply::operator=(pending_reply &&other) noexcept
{
	if (this != &other) {
		answer(reply::refuse(EIO)); /* the one this held goes unanswered otherwise */
		box_ = std::move(other.box_);
		slot_ = other.slot_;
		id_ = std::exchange(other.id_, 0);
		request_ = other.request_;
		name_ = std::move(other.name_);
	}
	return *this;
}

pending_reply::~pending_reply()
{
	answer(reply::refuse(EIO));
}

void pending_reply::answer(reply r) noexcept
{
	if (!box_ || id_ == 0)
		return;
	if (r.deferred)
		r = reply::refuse(EIO);
	box_->post(srv::answer{slot_, id_, request_, std::move(name_), std::move(r)});
	box_.reset();
	id_ = 0;
}

namespace srv {

namespace {


/* Whose stray fds these are: fd_sink::dispose's context. */
struct stray_owner {
	shared *s;
	uid_t uid;
};

/* fd_sink::dispose for the server: the closer thread. */
void dispose_stray(void *ctx, int fd) noexcept
{
	auto *o = static_cast<stray_owner *>(ctx);
	o->s->stray.close_later(fd, o->uid);
	o->s->stats.stray_fds++; /* counted once queued: whoever sees the count finds it pending */
}

/* The peer's share of slots: @o.max_peers_per_uid, 0 meaning half of max_peers. */
std::size_t per_uid_share(const server_options &o) noexcept
{
	if (o.max_peers_per_uid == 0)
		return std::max<std::size_t>(1, o.max_peers / 2);
	return std::min(o.max_peers_per_uid, o.max_peers);
}

/*
 * RLIMIT_NOFILE for @o: per peer its socket, its pidfd and a reply's fd (a
 * stream peer's replies carry none: @stream), plus 64 for the server
 * (eventfds, rings, epoll, listener) and the rest of the process. The soft
 * limit is raised toward the hard one when short.
 */
void check_fd_budget(const server_options &o, bool stream)
{
	const rlim_t per_peer = (stream ? 1 : 2) + (o.peer_pidfds ? 1 : 0);
	const rlim_t need = static_cast<rlim_t>(o.max_peers) * per_peer + 64;
	struct rlimit rl;
	if (::getrlimit(RLIMIT_NOFILE, &rl) < 0)
		throw std::system_error(detail::errno_code(errno), "server: getrlimit");
	if (rl.rlim_cur >= need)
		return;
	if (rl.rlim_max >= need) {
		struct rlimit raised = rl;
		raised.rlim_cur = need;
		if (::setrlimit(RLIMIT_NOFILE, &raised) == 0)
			return;
	}
	throw std::system_error(
		detail::errno_code(EMFILE),
		"server: max_peers " + std::to_string(o.max_peers) + " needs " +
			std::to_string(need) + " fds (" + std::to_string(per_peer) +
			" per peer: socket" + (o.peer_pidfds ? ", pidfd" : "") +
			(stream ? "" : ", reply") + "; 64 more for the process), RLIMIT_NOFILE is " +
			std::to_string(rl.rlim_cur) + " (hard " + std::to_string(rl.rlim_max) +
			"): lower max_peers or raise the limit");
}

/* SO_PASSRIGHTS off on @fd; false where the kernel lacks it (before 6.16: ENOPROTOOPT). */
bool refuse_fds_on(int fd)
{
	const int off = 0;
	if (::setsockopt(fd, SOL_SOCKET, SO_PASSRIGHTS, &off, sizeof(off)) == 0)
		return true;
	if (errno == ENOPROTOOPT)
		return false;
	throw std::system_error(detail::errno_code(errno), "server: setsockopt(SO_PASSRIGHTS)");
}

} // namespace

void mailbox::post(answer a) noexcept
{
	{
		std::lock_guard<std::mutex> g(mutex);
		if (closed)
			return; /* the server is gone: @a's fd and memory go with it */
		try {
			answers.push_back(std::move(a));
		} catch (const std::bad_alloc &) {
			return; /* the peer times out ("timeout: no answer") */
		}
	}
	const std::uint64_t one = 1;
	[[maybe_unused]] ssize_t n = ::write(wake.get(), &one, sizeof(one));
}

closer::closer()
{
	thread_ = std::thread([this] { run(); });
}

closer::~closer()
{
	{
		std::lock_guard<std::mutex> g(mutex_);
		stopping_ = true;
	}
	cv_.notify_one();
	thread_.join();
}

void closer::close_later(int fd, uid_t uid) noexcept
{
	try {
		std::lock_guard<std::mutex> g(mutex_);
		queue_.emplace_back(fd, uid);
		try {
			per_uid_[uid]++;
		} catch (const std::bad_alloc &) {
			queue_.pop_back();
			throw;
		}
		pending_++;
	} catch (const std::bad_alloc &) {
		::close(fd); /* out of memory: better a wait than a leak */
		return;
	}
	cv_.notify_one();
}

std::size_t closer::pending_for(uid_t uid) noexcept
{
	std::lock_guard<std::mutex> g(mutex_);
	auto it = per_uid_.find(uid);
	return it == per_uid_.end() ? 0 : it->second;
}

void closer::run()
{
	std::vector<std::pair<int, uid_t>> batch;
	std::unique_lock<std::mutex> g(mutex_);
	for (;;) {
		cv_.wait(g, [this] { return stopping_ || !queue_.empty(); });
		if (queue_.empty())
			return; /* stopping, and nothing left */
		std::swap(batch, queue_);
		g.unlock();
		for (auto [fd, uid] : batch) {
			::close(fd); /* may block: that is why it is here */
			std::lock_guard<std::mutex> lg(mutex_);
			auto it = per_uid_.find(uid);
			if (it != per_uid_.end() && --it->second == 0)
				per_uid_.erase(it);
			pending_--;
		}
		batch.clear();
		g.lock();
	}
}

shared::shared(listener l, server::callbacks cb, server_options o)
	: listen(std::move(l)), handler(std::move(cb.on_request)),
	  on_connect(std::move(cb.on_connect)), on_disconnect(std::move(cb.on_disconnect)),
	  opts(o), per_uid(per_uid_share(o)), refuse_fds(false), log_fn(std::move(cb.on_error))
{
	if (!handler || listen.fd().get() < 0)
		throw std::system_error(detail::errno_code(EINVAL),
					"server: a handler and a bound listener must be given");
	set_up();
}

shared::shared(unique_fd listen_fd, const stream_config &cfg, server::callbacks cb)
	: stream_listen(std::move(listen_fd)), stream(&cfg),
	  on_connect(std::move(cb.on_connect)), on_disconnect(std::move(cb.on_disconnect)),
	  opts(stream_server_options(cfg.opts)), per_uid(per_uid_share(opts)), refuse_fds(false),
	  log_fn(std::move(cb.on_error))
{
	const stream_options &so = cfg.opts;
	int type = 0, domain = 0, listening = 0;
	socklen_t len = sizeof(int);
	const int fd = stream_listen.get();
	const bool ok = fd >= 0 &&
		::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM &&
		::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX &&
		::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening;
	if (!ok || !cfg.handler || so.max_message == 0 || so.body_page == 0 ||
	    so.first_region < so.body_page || so.body_budget < so.max_message ||
	    so.message_timeout.count() <= 0 || so.reply_timeout.count() <= 0 ||
	    so.answer_timeout.count() <= 0 || so.idle_timeout.count() < 0)
		throw std::system_error(detail::errno_code(EINVAL),
					"stream_server: a listening AF_UNIX SOCK_STREAM socket, a "
					"handler, max_message >= 1, body_page >= 1, first_region >= "
					"body_page, body_budget >= max_message and timeouts > 0 must be given");
	set_up();
	uid_body_used.reserve(std::min<std::size_t>(opts.max_peers, 4096));
}

void shared::set_up()
{
	if (opts.max_peers == 0 || opts.max_peers > UINT32_MAX ||
	    opts.peer_timeout.count() <= 0 || opts.max_stray_fds_per_uid == 0)
		throw std::system_error(detail::errno_code(EINVAL),
					"server: max_peers and max_stray_fds_per_uid must be >= 1, "
					"peer_timeout > 0");
	check_fd_budget(opts, stream != nullptr);
	/* Accepted sockets inherit it from the listener, from their first message on. */
	if (opts.refuse_fds)
		refuse_fds = refuse_fds_on(listen_fd());
	uid_peers.reserve(std::min<std::size_t>(opts.max_peers, 4096));
	stop_fd.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (!stop_fd)
		throw std::system_error(detail::errno_code(errno), "server: eventfd");
}

void shared::log(std::uint64_t peer, const peer_credentials &cred, std::error_code ec,
		 std::string_view what) noexcept
{
	if (!log_fn)
		return;
	try {
		std::lock_guard<std::mutex> g(log_mutex);
		log_fn(log_event{peer, cred, ec, what});
	} catch (...) {
		/* A logger's failure must not take the server down. */
	}
}

bool shared::take_uid(uid_t uid) noexcept
{
	try {
		std::lock_guard<std::mutex> g(uid_mutex);
		std::size_t &n = uid_peers[uid];
		if (n >= per_uid)
			return false;
		n++;
		return true;
	} catch (const std::bad_alloc &) {
		return false;
	}
}

void shared::drop_uid(uid_t uid) noexcept
{
	std::lock_guard<std::mutex> g(uid_mutex);
	auto it = uid_peers.find(uid);
	if (it != uid_peers.end() && --it->second == 0)
		uid_peers.erase(it);
}

core::core(shared &s, std::size_t index, std::size_t slots)
	: shared_(s), index_(index), box_(std::make_shared<mailbox>())
{
	box_->wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (!box_->wake)
		throw std::system_error(detail::errno_code(errno), "server: eventfd");
	/* All peer state now, once: nothing per peer is allocated later. */
	slots_ = std::vector<peer_slot>(slots);
	free_.reserve(slots);
	inbox_.reserve(slots);
	taking_.reserve(slots);
	box_->answers.reserve(slots);
	answering_.reserve(slots);
	for (std::size_t i = slots; i-- > 0;) {
		slots_[i].index = static_cast<std::uint32_t>(i);
		free_.push_back(static_cast<std::uint32_t>(i));
	}
}

core::~core()
{
	/* The engine goes first: a ring must not outlive the slots its requests point into. */
	owned_engine.reset();
	std::vector<answer> dropped;
	{
		std::lock_guard<std::mutex> g(box_->mutex);
		box_->closed = true;
		std::swap(dropped, box_->answers);
	}
}

std::chrono::milliseconds core::tick() const noexcept
{
	/* Timeouts are honoured to within an eighth of themselves, 5 ms .. 250 ms. */
	return std::clamp(shared_.opts.peer_timeout / 8, std::chrono::milliseconds(5),
			  std::chrono::milliseconds(250));
}

void core::refuse(unique_fd sock, int err, std::string_view what)
{
	/*
	 * Tell the peer why, without waiting for it, and close. The error
	 * message is queued before the close. When the peer's request was
	 * already here, unread, the close also resets the peer (ECONNRESET,
	 * unix_release_sock()); its receive reports the reset once, then
	 * the message (channel::request_memory reads on for it).
	 */
	struct ucred uc = {};
	socklen_t len = sizeof(uc);
	::getsockopt(sock.get(), SOL_SOCKET, SO_PEERCRED, &uc, &len);
	if (shared_.stream) {
		/* A stream protocol has no error message of ours: the close says it. */
		shared_.stats.refused++;
		shared_.log(0, {uc.pid, uc.uid, uc.gid}, detail::errno_code(err), what);
		return;
	}
	wire::header h;
	h.kind = wire::kind::error;
	h.error = err;
	std::error_code ec;
	auto bytes = wire::encode(h, ec);
	struct iovec iov;
	struct msghdr msg;
	detail::build_send(msg, iov, bytes, {}, {});
	shared_.stats.refused++;
	shared_.log(0, {uc.pid, uc.uid, uc.gid}, detail::errno_code(err), what);
	::sendmsg(sock.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void core::accepted(unique_fd sock)
{
	/* Only this thread (core 0's) adds to any core's load: the sum can only fall meanwhile. */
	core *least = nullptr;
	std::size_t least_load = 0, total = 0;
	for (auto &c : shared_.cores) {
		const std::size_t n = c->load_.load(std::memory_order_acquire);
		total += n;
		if (!least || n < least_load) {
			least = c.get();
			least_load = n;
		}
	}
	if (stopping_)
		return; /* sock closes */
	if (total >= shared_.opts.max_peers) {
		refuse(std::move(sock), EBUSY, "peer limit");
		return;
	}
	struct ucred uc = {};
	socklen_t len = sizeof(uc);
	if (::getsockopt(sock.get(), SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0) {
		shared_.log(0, {}, detail::errno_code(errno), "SO_PEERCRED");
		return;
	}
	/* A uid whose stray fds are still being closed gets no more peers meanwhile. */
	if (shared_.stray.pending_for(uc.uid) >= shared_.opts.max_stray_fds_per_uid) {
		refuse(std::move(sock), EBUSY, "stray fds");
		return;
	}
	if (!shared_.take_uid(uc.uid)) {
		refuse(std::move(sock), EBUSY, "uid share");
		return;
	}
	least->load_.fetch_add(1, std::memory_order_relaxed);
	shared_.stats.accepted++;
	shared_.stats.active++;
	if (least == this)
		take_peer(std::move(sock), uc.uid);
	else
		least->hand_over(std::move(sock), uc.uid);
}

void core::hand_over(unique_fd sock, uid_t uid)
{
	{
		std::lock_guard<std::mutex> g(inbox_mutex_);
		inbox_.emplace_back(sock.release(), uid); /* reserved: load_ <= slots */
	}
	const std::uint64_t one = 1;
	[[maybe_unused]] ssize_t n = ::write(box_->wake.get(), &one, sizeof(one));
}

void core::take_inbox()
{
	std::uint64_t v;
	[[maybe_unused]] ssize_t n = ::read(box_->wake.get(), &v, sizeof(v));
	{
		std::lock_guard<std::mutex> g(inbox_mutex_);
		std::swap(inbox_, taking_);
	}
	for (auto [fd, uid] : taking_)
		take_peer(unique_fd(fd), uid);
	taking_.clear();

	{
		std::lock_guard<std::mutex> g(box_->mutex);
		std::swap(box_->answers, answering_);
	}
	const auto now = clock::now();
	for (answer &a : answering_) {
		peer_slot &p = slots_[a.slot];
		/*
		 * Only the request it was given for: not a peer that went (nor a
		 * later one in its slot), nor a later request of the same peer.
		 */
		if (p.id == a.id && p.requests == a.request && p.state == peer_state::awaiting)
			respond(p, std::move(a.name), std::move(a.r), now);
	}
	answering_.clear(); /* releases what was not sent */
}

void core::drop_inbox() noexcept
{
	std::lock_guard<std::mutex> g(inbox_mutex_);
	for (auto [fd, uid] : inbox_) {
		unique_fd(fd).reset();
		shared_.drop_uid(uid);
		load_.fetch_sub(1, std::memory_order_release);
		shared_.stats.active--;
		shared_.stats.closed++;
	}
	inbox_.clear();
}

void core::take_peer(unique_fd sock, uid_t uid)
{
	if (stopping_ || free_.empty()) {
		/* Stopping (sock closes), or never: core 0 picks a core with a free slot. */
		shared_.drop_uid(uid);
		load_.fetch_sub(1, std::memory_order_release);
		shared_.stats.active--;
		shared_.stats.closed++;
		return;
	}
	peer_slot &p = slots_[free_.back()];
	free_.pop_back();
	in_use_++;

	p.id = shared_.next_id.fetch_add(1, std::memory_order_relaxed);
	p.sock = std::move(sock);
	p.uid_counted = true;
	p.cred = {0, uid, 0};
	struct ucred uc = {};
	socklen_t len = sizeof(uc);
	if (::getsockopt(p.sock.get(), SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0) {
		p.state = peer_state::receiving;
		fail(p, detail::errno_code(errno), "SO_PEERCRED");
		return;
	}
	p.cred = {uc.pid, uc.uid, uc.gid};
	if (shared_.opts.peer_pidfds && !pidfd_unsupported_) {
		int pidfd = -1;
		len = sizeof(pidfd);
		if (::getsockopt(p.sock.get(), SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0) {
			p.pidfd.reset(pidfd);
		} else if (errno == ENOPROTOOPT) {
			pidfd_unsupported_ = true; /* before Linux 6.5: never ask again */
		} else {
			/*
			 * EMFILE (a peer can run the server out of fds), ESRCH...:
			 * the handler must never get -1 from a kernel that has
			 * pidfds, or a policy falls back to cred.pid (case 14).
			 */
			const int err = errno;
			p.state = peer_state::receiving; /* so that fail() closes it */
			fail(p, detail::errno_code(err), "SO_PEERPIDFD");
			return;
		}
	}

	p.state = peer_state::receiving;
	if (shared_.on_connect) {
		int verdict;
		try {
			verdict = shared_.on_connect(peer_info{p.id, p.cred, p.pidfd});
		} catch (...) {
			verdict = EIO;
		}
		if (verdict != 0) {
			/* Nothing is in flight yet: the slot lets go of its socket at once. */
			refuse(std::move(p.sock), sendable_errno(verdict), "refused");
			begin_close(p);
			return;
		}
		p.connected = true;
	}

	const auto now = clock::now();
	p.tokens = shared_.opts.request_burst;
	p.refilled = now;
	p.deadline = deadline_for(p, now);
	if (shared_.stream)
		stream_prepare(p); /* the first length: nothing to fail */
	else
		detail::build_receive(p.rx_msg, p.rx_iov, p.rx, p.rx_control.bytes);
	if (std::error_code ec = engine->arm_receive(p))
		fail(p, ec, "epoll_ctl");
}

bool core::over_flood_limit(peer_slot &p, clock::time_point now) noexcept
{
	const server_options &o = shared_.opts;
	if (o.requests_per_second == 0)
		return false;
	const double burst = std::max(1u, o.request_burst);
	const double seconds = std::chrono::duration<double>(now - p.refilled).count();
	p.tokens = std::min(burst, p.tokens + seconds * o.requests_per_second);
	p.refilled = now;
	if (p.tokens < 1)
		return true;
	p.tokens -= 1;
	return false;
}

void core::discard_fds(peer_slot &p) noexcept
{
	stray_owner owner{&shared_, p.cred.uid};
	for (unique_fd &fd : p.rx_fds)
		if (fd)
			dispose_stray(&owner, fd.release());
}

void core::received(peer_slot &p, long res)
{
	if (p.state != peer_state::receiving)
		return;
	if (shared_.stream) {
		stream_received(p, res);
		return;
	}
	if (res < 0) {
		fail(p, detail::errno_code(static_cast<int>(-res)), "receive");
		return;
	}

	/*
	 * The same checks, in the same order, as channel::receive (cmsg.hpp);
	 * any fd a peer attached goes to the closer thread, never to close()
	 * here.
	 */
	stray_owner owner{&shared_, p.cred.uid};
	detail::fd_sink sink{p.rx_fds, 0, 0, dispose_stray, &owner};
	std::optional<peer_credentials> sender;
	wire::header request;
	std::error_code ec = detail::finish_receive(p.rx_msg, static_cast<std::size_t>(res), p.rx,
						    0, sink, sender, request);
	if (ec == errc::peer_closed) {
		begin_close(p); /* an orderly goodbye: nothing to log */
		return;
	}
	if (!ec && (request.kind != wire::kind::request || request.batch_count != 0))
		ec = errc::bad_header; /* requests stand alone and carry no fds */
	if (ec) {
		fail(p, ec, "receive");
		return;
	}
	if (unread_bytes(p.sock.get()) > 0) {
		/* A request before the last reply was taken: its fd is still in flight. */
		fail(p, detail::errno_code(EBUSY), "request before the last reply was taken");
		return;
	}
	std::string name = request.name;
	handle(p, std::move(name), clock::now(), [&](defer_point &point) {
		request_context ctx{p.id, p.cred, p.pidfd, request};
		ctx.defer_state = &point;
		return shared_.handler(ctx);
	});
}

clock::time_point core::deadline_for(const peer_slot &p, clock::time_point now) const noexcept
{
	if (!shared_.stream)
		return now + shared_.opts.peer_timeout;
	const stream_options &o = shared_.stream->opts;
	switch (p.state) {
	case peer_state::awaiting:
		return now + o.answer_timeout;
	case peer_state::sending:
		return now + o.reply_timeout;
	default:
		if (p.stream.started)
			return now + o.message_timeout;
		return o.idle_timeout.count() > 0 ? now + o.idle_timeout : clock::time_point::max();
	}
}

void core::respond(peer_slot &p, std::string name, reply r, clock::time_point now)
{
	if (shared_.stream) {
		stream_respond(p, std::move(r), now);
		return;
	}
	if (!r.memory && !r.shared && !r.bytes.empty())
		r.error = EIO; /* bytes are for stream peers */
	wire::header h;
	h.name = std::move(name);
	std::error_code ec;
	if (!r.memory && r.shared && !r.shared->valid()) {
		fail(p, detail::errno_code(EBADF), "reply: shared memory holds no fd");
		return;
	}
	if (r.memory || r.shared) {
		if (r.memory)
			p.reply_fd = std::move(r.memory);
		else
			p.reply_shared = std::move(r.shared); /* its fd lives while this does */
		const borrowed_fd fd = p.reply_fd ? p.reply_fd.get() : p.reply_shared->fd().get();
		h.kind = wire::kind::memory;
		h.fd_count = 1;
		if ((ec = detail::announce_memory(fd, r.fixed_size, h))) {
			fail(p, ec, "reply: fstat");
			return;
		}
	} else {
		h.kind = wire::kind::error;
		h.error = sendable_errno(r.error);
	}
	p.tx = wire::encode(h, ec);
	if (ec) {
		fail(p, ec, "reply: encode");
		return;
	}
	const bool with_fd = p.reply_fd || p.reply_shared;
	borrowed_fd fd = p.reply_fd ? p.reply_fd.get() : with_fd ? p.reply_shared->fd().get() : -1;
	detail::build_send(p.tx_msg, p.tx_iov, p.tx, p.tx_control.bytes,
			   with_fd ? std::span<const borrowed_fd>(&fd, 1)
				   : std::span<const borrowed_fd>());
	p.state = peer_state::sending;
	p.deadline = deadline_for(p, now);
	if (std::error_code ec = engine->arm_send(p))
		fail(p, ec, "epoll_ctl");
}

void core::sent(peer_slot &p, long res)
{
	if (p.state != peer_state::sending)
		return;
	if (res < 0) {
		/* EPIPE: the peer went while its reply was in flight. */
		fail(p, detail::errno_code(static_cast<int>(-res)), "send");
		return;
	}
	if (shared_.stream) {
		stream_sent(p, static_cast<std::size_t>(res));
		return;
	}
	if (static_cast<std::size_t>(res) != wire::header_size) {
		fail(p, detail::errno_code(EIO), "send: short");
		return;
	}
	p.reply_fd.reset();
	p.reply_shared.reset();
	shared_.stats.served++;
	p.state = peer_state::receiving;
	p.deadline = clock::now() + shared_.opts.peer_timeout;
	detail::build_receive(p.rx_msg, p.rx_iov, p.rx, p.rx_control.bytes);
	if (std::error_code ec = engine->arm_receive(p))
		fail(p, ec, "epoll_ctl");
}

void core::fail(peer_slot &p, std::error_code ec, std::string_view what,
		std::atomic<std::uint64_t> *also)
{
	/* Counted last: whoever sees the count (another thread) finds it logged and shut down. */
	shared_.log(p.id, p.cred, ec, what);
	begin_close(p);
	shared_.stats.errors++;
	if (also)
		(*also)++;
}

void core::begin_close(peer_slot &p)
{
	if (p.state == peer_state::closing || p.state == peer_state::free)
		return;
	if (p.state != peer_state::draining && !stopping_ && p.sock && !shared_.stream &&
	    unread_bytes(p.sock.get()) > 0 && !hung_up(p.sock.get())) {
		/*
		 * Its reply (and the fd in it) is still in the peer's queue,
		 * (stream replies carry no fd: those peers go at once)
		 * counted in flight against our uid until the peer takes it or
		 * closes: the slot, and its uid's share, stay taken until then.
		 */
		engine->abort(p);
		p.state = peer_state::draining;
		return;
	}
	p.state = peer_state::closing;
	engine->abort(p);
	settle(p);
}

void core::settle(peer_slot &p)
{
	if (p.state == peer_state::closing && !engine->in_flight(p))
		release(p);
}

void core::release(peer_slot &p)
{
	if (p.connected && shared_.on_disconnect) {
		try {
			shared_.on_disconnect(peer_info{p.id, p.cred, p.pidfd});
		} catch (...) {
			/* A hook's failure must not take the server down. */
		}
	}
	if (p.uid_counted)
		shared_.drop_uid(p.cred.uid);
	p.sock.reset();
	p.pidfd.reset();
	p.reply_fd.reset();
	p.reply_shared.reset();
	discard_fds(p);
	if (shared_.stream)
		stream_release(p);
	p.state = peer_state::free;
	p.pending = op::none;
	p.epoll_events = 0;
	p.id = 0;
	p.requests = 0;
	p.connected = false;
	p.uid_counted = false;
	free_.push_back(p.index); /* reserved for max_peers: no throw */
	in_use_--;
	load_.fetch_sub(1, std::memory_order_release);
	shared_.stats.active--;
	shared_.stats.closed++;
}

void core::sweep(clock::time_point now)
{
	engine->resume_accept();
	if (in_use_ == 0)
		return;
	for (peer_slot &p : slots_) {
		if (p.state == peer_state::draining &&
		    (unread_bytes(p.sock.get()) == 0 || hung_up(p.sock.get()))) {
			p.state = peer_state::closing;
			settle(p);
			continue;
		}
		if ((p.state == peer_state::receiving || p.state == peer_state::sending ||
		     p.state == peer_state::awaiting) &&
		    now >= p.deadline) {
			if (shared_.stream) {
				fail(p, std::make_error_code(std::errc::timed_out),
				     stream_timeout_reason(p), &shared_.stats.timeouts);
				continue;
			}
			fail(p, std::make_error_code(std::errc::timed_out),
			     p.state == peer_state::receiving ? "timeout: no request"
			     : p.state == peer_state::awaiting ? "timeout: no answer"
							       : "timeout: reply not taken",
			     &shared_.stats.timeouts);
		}
	}
}

void core::accept_failed(int err)
{
	shared_.log(0, {}, detail::errno_code(err), "accept");
}

void core::close_all()
{
	stopping_ = true;
	for (peer_slot &p : slots_)
		begin_close(p);
}


/*
 * Event loops for @o: options.event_loops, 0 meaning one per online CPU;
 * never more than max_peers (a loop with no slot would be idle).
 */
std::size_t loops_for(const server_options &o)
{
	std::size_t n = o.event_loops;
	if (n == 0) {
		const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
		n = cpus > 0 ? static_cast<std::size_t>(cpus) : 1;
	}
	return std::clamp<std::size_t>(n, 1, std::max<std::size_t>(o.max_peers, 1));
}

} // namespace srv

namespace srv {

void shared::make_cores(std::size_t n)
{
	cores.clear();
	const std::size_t slots = (opts.max_peers + n - 1) / n;
	for (std::size_t i = 0; i < n; i++)
		cores.push_back(std::make_unique<core>(*this, i, slots));
}

std::string shared::set_up_engines()
{
	std::string fallback;
	std::size_t n = loops_for(opts);
	bool uring_ok = !opts.force_epoll;
	if (uring_ok && !uring_passes_fds(fallback))
		uring_ok = false; /* fallback says why */
	while (uring_ok) {
		make_cores(n);
		std::size_t made = 0;
		std::string why;
		for (; made < n; made++) {
			auto e = make_uring_engine(*cores[made], why);
			if (!e)
				break;
			cores[made]->owned_engine = std::move(e);
		}
		if (made == n) {
			for (auto &c : cores)
				c->engine = c->owned_engine.get();
			return "";
		}
		if (made == 0) {
			fallback = why;
			break;
		}
		/* Fewer rings than loops (RLIMIT_MEMLOCK before 5.12, say): as many loops as rings. */
		n = made;
	}
	if (opts.force_epoll)
		fallback = "epoll asked for (force_epoll)";
	/* epoll: one loop. */
	make_cores(1);
	cores[0]->owned_engine = make_epoll_engine(*cores[0]);
	cores[0]->engine = cores[0]->owned_engine.get();
	return fallback;
}

} // namespace srv

struct server::impl {
	srv::shared shared;
	std::string fallback_reason;

	impl(listener l, callbacks cb, server_options opts)
		: shared(std::move(l), std::move(cb), opts)
	{
	}
};

const std::size_t server::peer_state_bytes = sizeof(srv::peer_slot);

server::server(listener l, handler h, server_options opts, logger log)
	: server(std::move(l), callbacks{std::move(h), {}, {}, std::move(log)}, opts)
{
}

server::server(listener l, callbacks cb, server_options opts)
	: impl_(std::make_unique<impl>(std::move(l), std::move(cb), opts))
{
	impl_->fallback_reason = impl_->shared.set_up_engines();
}

server::~server() = default;

server_engine server::engine() const noexcept
{
	return impl_->shared.cores[0]->engine->kind();
}

const std::string &server::fallback_reason() const noexcept
{
	return impl_->fallback_reason;
}

std::size_t server::event_loops() const noexcept
{
	return impl_->shared.cores.size();
}

void server::run()
{
	impl_->shared.run();
}

void server::stop() noexcept
{
	impl_->shared.stop();
}

server_stats server::stats() const noexcept
{
	return impl_->shared.snapshot();
}

namespace srv {

void shared::run()
{
	std::vector<std::exception_ptr> failed(cores.size());
	std::vector<std::thread> threads;
	threads.reserve(cores.size() - 1);
	try {
		for (std::size_t i = 1; i < cores.size(); i++)
			threads.emplace_back([this, &failed, i] {
				try {
					cores[i]->engine->run();
				} catch (...) {
					failed[i] = std::current_exception();
					stop(); /* one loop failing ends them all */
				}
			});
		cores[0]->engine->run();
	} catch (...) {
		failed[0] = std::current_exception();
		stop();
	}
	for (auto &t : threads)
		t.join();
	/* Sockets core 0 handed over as a loop was ending: never taken, closed here. */
	for (auto &c : cores)
		c->drop_inbox();
	/* Every loop saw the stop (it polls, not reads): consume it, as one loop did before. */
	std::uint64_t v;
	[[maybe_unused]] ssize_t n = ::read(stop_fd.get(), &v, sizeof(v));
	for (auto &e : failed)
		if (e)
			std::rethrow_exception(e);
}

void shared::stop() noexcept
{
	const std::uint64_t one = 1;
	[[maybe_unused]] ssize_t n = ::write(stop_fd.get(), &one, sizeof(one));
}

server_stats shared::snapshot() const noexcept
{
	return {stats.accepted, stats.refused, stats.served, stats.closed, stats.errors,
		stats.timeouts, stats.floods, stats.active, stats.stray_fds, stray.pending()};
}

} // namespace srv

} // namespace xmem
