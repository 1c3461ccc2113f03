// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The io_uring engine (liburing). Every socket operation is an io_uring
 * request: IORING_OP_ACCEPT (SOCK_CLOEXEC), IORING_OP_RECVMSG
 * (MSG_CMSG_CLOEXEC, so no fd a peer sends is ever inheritable) and
 * IORING_OP_SENDMSG (MSG_NOSIGNAL). Each peer has at most one request in
 * flight, plus its cancel while it is being closed, so the completion queue,
 * sized for two per peer slot plus a few, cannot overflow; a peer's buffers
 * live in its fixed slot until its request completes.
 *
 * Each event loop has one of these, with its own ring and its own slots. The
 * stop eventfd (shared) and the loop's wake eventfd (new peers in its inbox)
 * are watched with IORING_OP_POLL_ADD: polling does not consume, so every
 * loop sees the one stop. Only the first loop has an accept in flight.
 *
 * Closing a peer: shutdown(2) wakes its pending request, an
 * IORING_OP_ASYNC_CANCEL makes sure, and the slot is reused only after that
 * request's completion has arrived (so the kernel never writes to a slot that
 * belongs to another peer).
 */
#include "server_impl.hpp"

#include <xmem/error.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace xmem::srv {

namespace {

enum tag : std::uint64_t {
	tag_receive = 1,
	tag_send = 2,
	tag_accept = 3,
	tag_stop = 4,
	tag_cancel = 5,
	tag_wake = 6,
};

constexpr std::uint64_t user_data(std::uint32_t index, tag t) noexcept
{
	return std::uint64_t(index) << 8 | t;
}

/* Submission queue entries: submitted in batches of at most this many. */
constexpr unsigned sq_entries = 256;

unsigned round_up_pow2(std::size_t n) noexcept
{
	unsigned p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

/* kernel.io_uring_disabled (Linux 6.6+, Documentation/admin-guide/sysctl/kernel.rst), or "". */
std::string io_uring_disabled_sysctl()
{
	std::ifstream f("/proc/sys/kernel/io_uring_disabled");
	std::string v;
	if (f >> v)
		return v;
	return "";
}

/* The "Seccomp:" mode of /proc/self/status (proc(5)): 0 none, 1 strict, 2 filter; -1 unknown. */
int seccomp_mode()
{
	std::ifstream f("/proc/self/status");
	std::string key;
	while (f >> key) {
		if (key == "Seccomp:") {
			int mode = -1;
			f >> mode;
			return mode;
		}
		f.ignore(4096, '\n');
	}
	return -1;
}

/* Why io_uring_setup(2) said EPERM, as far as the process can tell. */
std::string eperm_reason()
{
	const std::string sysctl = io_uring_disabled_sysctl();
	if (!sysctl.empty() && sysctl != "0")
		return "kernel.io_uring_disabled=" + sysctl;
	if (seccomp_mode() == 2)
		return "refused by this process's seccomp filter (Seccomp: 2 in /proc/self/status)";
	return "kernel.io_uring_disabled=" + (sysctl.empty() ? std::string("?") : sysctl) +
	       ", no seccomp filter seen";
}

class uring_engine final : public engine_base
{
public:
	explicit uring_engine(core &c) : core_(c) {}
	~uring_engine() override
	{
		if (ready_)
			io_uring_queue_exit(&ring_);
	}

	/* io_uring_setup(2) and the probe; false with @why on failure. */
	bool setup(std::string &why)
	{
		/*
		 * Completion work (the recvmsg retried once a peer's data is there)
		 * runs when run() asks for completions, in batches, instead of
		 * interrupting whichever task woke the socket: DEFER_TASKRUN (Linux
		 * 6.1, with SINGLE_ISSUER: only the thread in run() submits, so the
		 * ring starts disabled and run() enables it on its own thread), else
		 * COOP_TASKRUN (5.19), else neither. EINVAL: an older kernel; try
		 * the next.
		 */
		static constexpr unsigned ladder[] = {
			IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
				IORING_SETUP_R_DISABLED,
			IORING_SETUP_COOP_TASKRUN,
			0,
		};
		int ret = -EINVAL;
		for (unsigned extra : ladder) {
			struct io_uring_params params = {};
			/*
			 * Per peer slot its request and, while it closes, the
			 * cancel; plus accept and the two polls. 16 bytes each.
			 */
			params.flags = IORING_SETUP_CQSIZE | extra;
			params.cq_entries = round_up_pow2(
				std::max<std::size_t>(2 * core_.slots().size() + 64, 2 * sq_entries));
			ret = io_uring_queue_init_params(sq_entries, &ring_, &params);
			if (ret != -EINVAL) {
				flags_ = extra;
				break;
			}
		}
		if (ret < 0) {
			why = "io_uring_setup: " + std::string(std::strerror(-ret));
			if (ret == -EPERM)
				why += ": " + eperm_reason();
			return false;
		}
		ready_ = true;

		struct io_uring_probe *probe = io_uring_get_probe_ring(&ring_);
		if (!probe) {
			why = "io_uring: IORING_REGISTER_PROBE failed";
			return false;
		}
		static constexpr std::pair<int, const char *> needed[] = {
			{IORING_OP_ACCEPT, "IORING_OP_ACCEPT"},
			{IORING_OP_RECVMSG, "IORING_OP_RECVMSG"},
			{IORING_OP_SENDMSG, "IORING_OP_SENDMSG"},
			{IORING_OP_POLL_ADD, "IORING_OP_POLL_ADD"},
			{IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"},
		};
		for (auto [opcode, name] : needed) {
			if (!io_uring_opcode_supported(probe, opcode)) {
				why = std::string("io_uring: the kernel lacks ") + name;
				io_uring_free_probe(probe);
				return false;
			}
		}
		io_uring_free_probe(probe);
		return true;
	}

	server_engine kind() const noexcept override { return server_engine::io_uring; }

	void run() override
	{
		if (flags_ & IORING_SETUP_R_DISABLED) {
			/* SINGLE_ISSUER: this thread is now the ring's only submitter. */
			/* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
			if (::syscall(__NR_io_uring_register, ring_.ring_fd,
				      IORING_REGISTER_ENABLE_RINGS, nullptr, 0) < 0)
				throw std::system_error(detail::errno_code(errno),
							"server: IORING_REGISTER_ENABLE_RINGS");
			flags_ &= ~IORING_SETUP_R_DISABLED;
		}
		if (core_.accepts())
			arm_accept();
		arm_stop();
		arm_wake();
		auto next_sweep = clock::now() + core_.tick();
		while (!core_.stopping() || core_.in_use() > 0 || accept_armed_ || stop_armed_ ||
		       wake_armed_) {
			const auto wait = std::max(clock::duration::zero(), next_sweep - clock::now());
			const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
			struct __kernel_timespec ts = {ns / 1000000000, ns % 1000000000};
			struct io_uring_cqe *cqe = nullptr;
			int ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
			if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY)
				throw std::system_error(detail::errno_code(-ret), "server: io_uring_enter");

			unsigned head, seen = 0;
			io_uring_for_each_cqe(&ring_, head, cqe) {
				complete(cqe->user_data, cqe->res);
				seen++;
			}
			io_uring_cq_advance(&ring_, seen);

			const auto now = clock::now();
			if (now >= next_sweep) {
				core_.sweep(now);
				next_sweep = now + core_.tick();
			}
		}
		io_uring_submit(&ring_);
	}

	std::error_code arm_receive(peer_slot &p) override
	{
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_recvmsg(sqe, p.sock.get(), &p.rx_msg, MSG_CMSG_CLOEXEC);
		/*
		 * The peer has just had its reply: its next request is rarely there
		 * yet, so wait for it rather than try first (Linux 5.19; known
		 * present when DEFER_TASKRUN, 6.1, was accepted). Not for the rest
		 * of a stream message whose start came: that is usually there.
		 */
		if ((flags_ & IORING_SETUP_DEFER_TASKRUN) && !(core_.streaming() && p.stream.started))
			sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
		io_uring_sqe_set_data64(sqe, user_data(p.index, tag_receive));
		p.pending = op::receive;
		return {};
	}

	std::error_code arm_send(peer_slot &p) override
	{
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_sendmsg(sqe, p.sock.get(), &p.tx_msg, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, user_data(p.index, tag_send));
		p.pending = op::send;
		return {};
	}

	void abort(peer_slot &p) override
	{
		if (p.pending == op::none)
			return;
		::shutdown(p.sock.get(), SHUT_RDWR);
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_cancel64(sqe,
				       user_data(p.index, p.pending == op::receive ? tag_receive
										 : tag_send),
				       0);
		io_uring_sqe_set_data64(sqe, user_data(p.index, tag_cancel));
	}

	bool in_flight(const peer_slot &p) const noexcept override { return p.pending != op::none; }

	/* Nothing is in flight for a peer awaiting its answer. */
	void pause(peer_slot &) override {}

	void resume_accept() override
	{
		if (accept_paused_ && !core_.stopping()) {
			accept_paused_ = false;
			arm_accept();
		}
	}

private:
	struct io_uring_sqe *get_sqe()
	{
		struct io_uring_sqe *sqe;
		while (!(sqe = io_uring_get_sqe(&ring_))) {
			/* The queue is full: hand what is there to the kernel, then go on. */
			int ret = io_uring_submit(&ring_);
			if (ret < 0 && ret != -EBUSY && ret != -EINTR)
				throw std::system_error(detail::errno_code(-ret),
							"server: io_uring_submit");
		}
		return sqe;
	}

	void arm_accept()
	{
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_accept(sqe, core_.listen_fd(), nullptr, nullptr, SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, user_data(0, tag_accept));
		accept_armed_ = true;
	}

	void arm_stop()
	{
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_poll_add(sqe, core_.stop_fd(), POLLIN);
		io_uring_sqe_set_data64(sqe, user_data(0, tag_stop));
		stop_armed_ = true;
	}

	void arm_wake()
	{
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_poll_add(sqe, core_.wake_fd(), POLLIN);
		io_uring_sqe_set_data64(sqe, user_data(0, tag_wake));
		wake_armed_ = true;
	}

	void cancel(tag t)
	{
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_cancel64(sqe, user_data(0, t), 0);
		io_uring_sqe_set_data64(sqe, user_data(0, tag_cancel));
	}

	void complete(std::uint64_t data, int res)
	{
		const auto t = static_cast<tag>(data & 0xff);
		const auto index = static_cast<std::uint32_t>(data >> 8);
		switch (t) {
		case tag_receive:
		case tag_send: {
			peer_slot &p = core_.slots()[index];
			p.pending = op::none;
			if (p.state == peer_state::closing)
				core_.settle(p);
			else if (t == tag_receive)
				core_.received(p, res);
			else
				core_.sent(p, res);
			break;
		}
		case tag_accept:
			accept_armed_ = false;
			if (res >= 0) {
				core_.accepted(unique_fd(res));
			} else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS ||
				   res == -ENOMEM) {
				/* Out of fds or memory: try again on the next tick, do not spin. */
				core_.accept_failed(-res);
				accept_paused_ = true;
				break;
			} else if (res == -ECANCELED) {
				break;
			}
			if (!core_.stopping())
				arm_accept();
			break;
		case tag_stop:
			stop_armed_ = false;
			if (res <= 0 && !core_.stopping()) {
				arm_stop(); /* not readable yet (-EINTR, say): poll again */
				break;
			}
			core_.set_stopping();
			core_.close_all();
			if (accept_armed_)
				cancel(tag_accept);
			if (wake_armed_)
				cancel(tag_wake);
			break;
		case tag_wake:
			wake_armed_ = false;
			if (res > 0)
				core_.take_inbox(); /* closes them when stopping */
			if (!core_.stopping())
				arm_wake();
			break;
		case tag_cancel:
			break;
		}
	}

	core &core_;
	struct io_uring ring_ = {};
	bool ready_ = false;
	unsigned flags_ = 0;	/* the IORING_SETUP_ flags beyond CQSIZE that the kernel took */
	bool accept_armed_ = false;
	bool accept_paused_ = false;
	bool stop_armed_ = false;
	bool wake_armed_ = false;
};

} // namespace

bool uring_passes_fds(std::string &why)
{
	why.clear();
	struct io_uring ring;
	int ret = io_uring_queue_init(2, &ring, 0);
	if (ret < 0) {
		why = "io_uring_setup: " + std::string(std::strerror(-ret));
		if (ret == -EPERM)
			why += ": " + eperm_reason();
		return false;
	}
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		why = "io_uring self-test: socketpair: " + std::string(std::strerror(errno));
		io_uring_queue_exit(&ring);
		return false;
	}
	unique_fd a(sv[0]), b(sv[1]);

	/* One message with one fd (the sending end itself) attached. */
	std::byte byte{0x58};
	struct iovec iov;
	struct msghdr msg;
	detail::control_buffer<CMSG_SPACE(sizeof(int))> control;
	const borrowed_fd fd = a.get();
	detail::build_send(msg, iov, std::span<const std::byte>(&byte, 1), control.bytes,
			   std::span<const borrowed_fd>(&fd, 1));
	bool ok = false;
	if (::sendmsg(a.get(), &msg, MSG_NOSIGNAL) != 1) {
		why = "io_uring self-test: sendmsg: " + std::string(std::strerror(errno));
	} else {
		std::byte got{};
		struct iovec riov;
		struct msghdr rmsg;
		detail::control_buffer<CMSG_SPACE(sizeof(int))> rcontrol;
		detail::build_receive(rmsg, riov, std::span<std::byte>(&got, 1), rcontrol.bytes);
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		io_uring_prep_recvmsg(sqe, b.get(), &rmsg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		struct io_uring_cqe *cqe = nullptr;
		struct __kernel_timespec ts = {1, 0};
		ret = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, nullptr);
		if (ret < 0 || !cqe) {
			why = "io_uring self-test: no completion for IORING_OP_RECVMSG: " +
			      std::string(std::strerror(-ret));
		} else {
			const int res = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
			/* Own whatever fds came before judging anything. */
			std::size_t fds = 0;
			for (struct cmsghdr *c = CMSG_FIRSTHDR(&rmsg); res >= 0 && c;
			     c = CMSG_NXTHDR(&rmsg, c)) {
				if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
					continue;
				const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				for (std::size_t i = 0; i < n; i++) {
					int received;
					std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int),
						    sizeof(received));
					unique_fd(received).reset();
					fds++;
				}
			}
			if (res == -EINVAL)
				why = "io_uring: IORING_OP_RECVMSG refuses SCM_RIGHTS on AF_UNIX "
				      "(EINVAL, as Linux 5.5 to 5.11 do)";
			else if (res < 0)
				why = "io_uring self-test: IORING_OP_RECVMSG with SCM_RIGHTS: " +
				      std::string(std::strerror(-res));
			else if (res != 1 || (rmsg.msg_flags & MSG_CTRUNC) || fds != 1)
				why = "io_uring self-test: IORING_OP_RECVMSG did not deliver the fd "
				      "sent with SCM_RIGHTS";
			else
				ok = true;
		}
	}
	io_uring_queue_exit(&ring);
	return ok;
}

std::unique_ptr<engine_base> make_uring_engine(core &c, std::string &why)
{
	auto e = std::make_unique<uring_engine>(c);
	if (!e->setup(why))
		return nullptr;
	return e;
}

} // namespace xmem::srv
