// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Connecting with a timeout and a check of whom was reached, asking for
 * memory in one call, and adopting an inherited listener: the client and
 * daemon side of channel.hpp beyond plain sockets.
 */
#include <xmem/channel.hpp>

#include "requirements.hpp"
#include "unix_socket.hpp"
#include <xmem/error.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

namespace xmem {

namespace {

/* @t as a struct timeval for SO_SNDTIMEO / SO_RCVTIMEO. */
struct timeval to_timeval(std::chrono::milliseconds t) noexcept
{
	struct timeval tv = {};
	tv.tv_sec = static_cast<time_t>(t.count() / 1000);
	tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
	return tv;
}

/*
 * channel::connect(path, o, ec), and @seen: the server's SO_PEERCRED uid
 * once connected (for the message of a refusal).
 */
channel connect_checked(const std::string &path, const connect_options &o, std::error_code &ec,
			std::optional<uid_t> &seen) noexcept
{
	ec.clear();
	seen.reset();
	struct sockaddr_un addr = {};
	addr.sun_family = AF_UNIX;
	if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
		ec = detail::errno_code(path.empty() ? EINVAL : ENAMETOOLONG);
		return {};
	}
	std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
	if (o.timeout.count() < 0) {
		ec = detail::errno_code(EINVAL);
		return {};
	}
	unique_fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	if (!fd) {
		ec = detail::errno_code(errno);
		return {};
	}
	const struct timeval tv = to_timeval(o.timeout);
	/* Before connect(2): a full backlog makes connect wait this long, not forever. */
	if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	int ret;
	do {
		ret = ::connect(fd.get(), reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr));
	} while (ret < 0 && errno == EINTR);
	if (ret < 0) {
		/* unix_wait_for_peer() ran out of SO_SNDTIMEO: the kernel says EAGAIN. */
		ec = detail::errno_code(errno == EAGAIN ? ETIMEDOUT : errno);
		return {};
	}
	struct ucred uc = {};
	socklen_t len = sizeof(uc);
	if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	seen = uc.uid;
	const bool trusted = o.server_uid ? uc.uid == *o.server_uid
					  : (uc.uid == ::geteuid() || uc.uid == 0);
	if (!trusted) {
		ec = errc::peer_not_allowed;
		return {};
	}
	return channel::adopt(std::move(fd), ec);
}

} // namespace

channel channel::connect(const std::string &path, const connect_options &o,
			 std::error_code &ec) noexcept
{
	std::optional<uid_t> seen;
	return connect_checked(path, o, ec, seen);
}

channel channel::connect(const std::string &path, const connect_options &o)
{
	std::error_code ec;
	std::optional<uid_t> seen;
	channel ch = connect_checked(path, o, ec, seen);
	if (ec == errc::peer_not_allowed) {
		throw std::system_error(
			make_error_code(errc::peer_not_allowed),
			"connecting to " + path + ": the server runs as uid " +
				std::to_string(seen.value_or(0)) + ", expected " +
				(o.server_uid ? "uid " + std::to_string(*o.server_uid)
					      : "uid " + std::to_string(::geteuid()) + " or root"));
	}
	if (ec)
		throw std::system_error(ec, "connecting to " + path);
	return ch;
}

received_memory channel::request_memory(std::string_view name, const requirements &req,
					std::error_code &ec) noexcept
{
	ec.clear();
	wire::header h;
	h.kind = wire::kind::request;
	try {
		h.name = name;
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return received_memory{};
	}
	std::error_code send_ec;
	send(h, {}, send_ec);
	if (send_ec && send_ec != std::errc::broken_pipe &&
	    send_ec != std::errc::connection_reset) {
		ec = send_ec;
		return received_memory{};
	}
	/* A memory reply carries one fd: the budget for this receive. */
	const std::size_t budget = max_fds_;
	max_fds_ = 1;
	received_memory got = receive_memory(req, ec);
	if (ec == std::errc::connection_reset) {
		/*
		 * The server closed with our request unread, after queueing its
		 * error message: the reset is reported first and cleared
		 * (sock_error() in __skb_try_recv_datagram(), net/core/datagram.c),
		 * the message comes on the next receive.
		 */
		got = receive_memory(req, ec);
	}
	max_fds_ = budget;
	if (send_ec && (ec == errc::peer_closed || ec == std::errc::connection_reset))
		ec = send_ec; /* nothing was left for us: the send's error says more */
	return got;
}

received_memory channel::request_memory(std::string_view name, const requirements &req)
{
	std::error_code ec;
	received_memory got = request_memory(name, req, ec);
	if (ec)
		throw std::system_error(ec, "requesting '" + std::string(name) + "'" +
						    (ec == errc::backend_not_accepted
							     ? " (" + detail::describe_backends(req, got) + ")"
							     : std::string()));
	return got;
}

listener listener::adopt(unique_fd fd, std::error_code &ec) noexcept
{
	ec = detail::check_unix_seqpacket(fd.get());
	if (ec)
		return {};
	int listening = 0;
	socklen_t len = sizeof(listening);
	if (::getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
		ec = detail::errno_code(EINVAL);
		return {};
	}
	const int fl = ::fcntl(fd.get(), F_GETFD);
	if (fl < 0 || ::fcntl(fd.get(), F_SETFD, fl | FD_CLOEXEC) < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	struct sockaddr_un addr = {};
	socklen_t alen = sizeof(addr);
	std::string path;
	try {
		if (::getsockname(fd.get(), reinterpret_cast<struct sockaddr *>(&addr), &alen) == 0 &&
		    alen > offsetof(struct sockaddr_un, sun_path)) {
			const std::size_t n = alen - offsetof(struct sockaddr_un, sun_path);
			if (addr.sun_path[0] == '\0')
				path = "@" + std::string(addr.sun_path + 1, n - 1);
			else
				path = std::string(addr.sun_path, strnlen(addr.sun_path, n));
		}
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return {};
	}
	listener l;
	l.fd_ = std::move(fd);
	l.path_ = std::move(path); /* dev_/ino_ stay 0: never unlinked */
	return l;
}

listener listener::adopt(unique_fd fd)
{
	const int n = fd.get();
	std::error_code ec;
	listener l = adopt(std::move(fd), ec);
	if (ec)
		throw std::system_error(ec, "adopting fd " + std::to_string(n) +
						    " as a listening AF_UNIX SOCK_SEQPACKET socket");
	return l;
}

} // namespace xmem
