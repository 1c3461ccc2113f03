// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/channel.hpp>

#include <xmem/error.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* include/uapi/asm-generic/socket.h, Linux 6.5 */
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04 /* include/linux/socket.h, Linux 6.5 */
#endif

namespace xmem {

namespace {

/* Room for scm_max_fd fds and one struct ucred, aligned for cmsghdr. */
constexpr std::size_t control_capacity =
	CMSG_SPACE(sizeof(int) * wire::scm_max_fd) + CMSG_SPACE(sizeof(struct ucred));

union control_buffer {
	struct cmsghdr align;
	std::array<std::byte, control_capacity> bytes;
};

/* Fills @addr for @path; ENAMETOOLONG when it does not fit sun_path. */
std::error_code make_address(const std::string &path, struct sockaddr_un &addr) noexcept
{
	addr = {};
	addr.sun_family = AF_UNIX;
	if (path.empty() || path.size() >= sizeof(addr.sun_path))
		return detail::errno_code(path.empty() ? EINVAL : ENAMETOOLONG);
	std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
	return {};
}

unique_fd seqpacket_socket(std::error_code &ec) noexcept
{
	unique_fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	if (!fd)
		ec = detail::errno_code(errno);
	return fd;
}

/*
 * Takes every fd of every control message into @fds before anything is
 * checked. Returns false when a control message of another kind came.
 */
bool take_control(struct msghdr &msg, std::vector<unique_fd> &fds,
		  std::optional<peer_credentials> &sender) noexcept
{
	bool only_expected = true;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		const std::size_t payload = c->cmsg_len - CMSG_LEN(0);
		if (c->cmsg_level == SOL_SOCKET &&
		    (c->cmsg_type == SCM_RIGHTS || c->cmsg_type == SCM_PIDFD)) {
			const std::size_t n = payload / sizeof(int);
			for (std::size_t i = 0; i < n; i++) {
				int fd;
				std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				fds.emplace_back(fd); /* capacity reserved: no throw */
			}
			if (c->cmsg_type == SCM_PIDFD)
				only_expected = false;
		} else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
			   payload >= sizeof(struct ucred)) {
			struct ucred uc;
			std::memcpy(&uc, CMSG_DATA(c), sizeof(uc));
			sender = peer_credentials{uc.pid, uc.uid, uc.gid};
		} else {
			only_expected = false;
		}
	}
	return only_expected;
}

/* A peer's errno from an error message, or EPROTO when it is not one. */
int peer_errno(std::int32_t err) noexcept
{
	return err > 0 && err < 4096 ? err : EPROTO;
}

} // namespace

bool uid_allowed(const peer_credentials &cred, std::span<const uid_t> allowed) noexcept
{
	return std::find(allowed.begin(), allowed.end(), cred.uid) != allowed.end();
}

received_memory verify_memory(unique_fd fd, const wire::header &h, const requirements &req,
			      std::error_code &ec) noexcept
{
	received_memory out{{}, 0, {}, false, {}};
	memory mem = memory::adopt(std::move(fd), ec);
	if (ec)
		return out;
	if (mem.backend() == backend::ordinary && !req.accept_ordinary) {
		ec = errc::backend_not_accepted;
		return out;
	}

	std::size_t size = mem.size(ec);
	if (ec)
		return out;
	if (size == 0 || size != h.size || (req.size && size != *req.size)) {
		ec = errc::size_mismatch;
		return out;
	}

	/* memfd_secret has no seals: F_GET_SEALS fails and proves nothing. */
	std::error_code seal_ec;
	seals actual = mem.current_seals(seal_ec);
	if (seal_ec)
		actual = seals();
	if (!actual.contains(req.seals | h.seals)) {
		ec = errc::missing_seals;
		return out;
	}

	out.size = size;
	out.seals = actual;
	/* secretmem_setattr() refuses a second size change: its size is fixed. */
	out.size_is_stable = actual.contains(seals(seals::shrink)) ||
			     mem.backend() == backend::secret;
	try {
		out.name = h.name;
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return out;
	}
	out.memory = std::move(mem);
	return out;
}

channel channel::adopt(unique_fd fd, std::error_code &ec) noexcept
{
	ec.clear();
	int type = 0, domain = 0;
	socklen_t len = sizeof(type);
	if (::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
		ec = errno == ENOTSOCK ? make_error_code(errc::not_seqpacket)
				       : detail::errno_code(errno);
		return {};
	}
	len = sizeof(domain);
	if (::getsockopt(fd.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
	    type != SOCK_SEQPACKET || domain != AF_UNIX) {
		ec = errc::not_seqpacket;
		return {};
	}
	return channel(std::move(fd));
}

channel channel::connect(const std::string &path, std::error_code &ec) noexcept
{
	ec.clear();
	struct sockaddr_un addr;
	if ((ec = make_address(path, addr)))
		return {};
	unique_fd fd = seqpacket_socket(ec);
	if (ec)
		return {};
	if (::connect(fd.get(), reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr)) < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	return channel(std::move(fd));
}

channel channel::connect(const std::string &path)
{
	std::error_code ec;
	channel ch = connect(path, ec);
	detail::throw_if(ec, "connecting to " + path);
	return ch;
}

std::pair<channel, channel> channel::pair()
{
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		detail::throw_if(detail::errno_code(errno), "socketpair(AF_UNIX, SOCK_SEQPACKET)");
	return {channel(unique_fd(sv[0])), channel(unique_fd(sv[1]))};
}

void channel::send(const wire::header &h, std::span<const borrowed_fd> fds,
		   std::error_code &ec) noexcept
{
	ec.clear();
	if (fds.size() > wire::scm_max_fd) {
		ec = errc::too_many_fds;
		return;
	}
	wire::header copy;
	try {
		copy = h;
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return;
	}
	copy.fd_count = static_cast<std::uint32_t>(fds.size());
	auto bytes = wire::encode(copy, ec);
	if (ec)
		return;

	struct iovec iov = {bytes.data(), bytes.size()};
	struct msghdr msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;

	control_buffer control = {};
	if (!fds.empty()) {
		msg.msg_control = control.bytes.data();
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
		for (std::size_t i = 0; i < fds.size(); i++) {
			int fd = fds[i].get();
			std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(fd));
		}
	}

	ssize_t n;
	do {
		/* EINTR means nothing was sent: a SOCK_SEQPACKET send is atomic. */
		n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		ec = detail::errno_code(errno);
	else if (static_cast<std::size_t>(n) != bytes.size())
		ec = detail::errno_code(EIO);
}

void channel::send(const wire::header &h, std::span<const borrowed_fd> fds)
{
	std::error_code ec;
	send(h, fds, ec);
	detail::throw_if(ec, "sending an xmem message with " + std::to_string(fds.size()) +
				     " fds");
}

void channel::send_request(std::string_view name)
{
	wire::header h;
	h.kind = wire::kind::request;
	h.name = name;
	send(h);
}

void channel::send_memory(const memory &mem, std::string_view name)
{
	wire::header h;
	h.kind = wire::kind::memory;
	h.name = name;
	h.size = mem.size();
	std::error_code ec;
	h.seals = mem.current_seals(ec); /* none for memfd_secret */
	borrowed_fd fd = mem.fd();
	send(h, std::span<const borrowed_fd>(&fd, 1));
}

void channel::send_error(int err, std::string_view name)
{
	wire::header h;
	h.kind = wire::kind::error;
	h.error = err;
	h.name = name;
	send(h);
}

message channel::receive(std::error_code &ec) noexcept
{
	ec.clear();
	message out;
	std::array<std::byte, wire::header_size> payload;
	control_buffer control;
	try {
		/* Room for every fd the control buffer can carry, so owning them cannot throw. */
		out.fds.reserve(max_fds_ + 1);
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return out;
	}

	struct iovec iov = {payload.data(), payload.size()};
	struct msghdr msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.bytes.data();
	msg.msg_controllen = CMSG_SPACE(sizeof(int) * max_fds_) + CMSG_SPACE(sizeof(struct ucred));

	ssize_t n;
	do {
		n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		ec = detail::errno_code(errno);
		return out;
	}

	/* Own every fd first: from here on, any return closes them. */
	bool only_expected = take_control(msg, out.fds, out.sender);

	if (msg.msg_flags & MSG_CTRUNC)
		ec = errc::control_truncated;
	else if (n == 0 && out.fds.empty())
		ec = errc::peer_closed;
	else if (msg.msg_flags & MSG_TRUNC)
		ec = errc::payload_truncated;
	else if (!only_expected)
		ec = errc::unexpected_control;
	else if (out.fds.size() > max_fds_)
		ec = errc::too_many_fds; /* fit in the alignment slack of the buffer */
	else if (static_cast<std::size_t>(n) != wire::header_size)
		ec = errc::bad_header;
	if (!ec)
		out.header = wire::decode(payload, ec);
	if (!ec && out.header.fd_count != out.fds.size())
		ec = errc::fd_count_mismatch;
	if (ec)
		out.fds.clear();
	return out;
}

message channel::receive()
{
	std::error_code ec;
	message m = receive(ec);
	detail::throw_if(ec, "receiving an xmem message");
	return m;
}

received_memory channel::receive_memory(const requirements &req, std::error_code &ec) noexcept
{
	message m = receive(ec);
	if (ec)
		return received_memory{{}, 0, {}, false, {}};
	if (m.header.kind == wire::kind::error) {
		ec = detail::errno_code(peer_errno(m.header.error));
		return received_memory{{}, 0, {}, false, {}};
	}
	if (m.header.kind != wire::kind::memory) {
		ec = errc::bad_header;
		return received_memory{{}, 0, {}, false, {}};
	}
	if (m.fds.size() != 1) {
		ec = errc::fd_count_mismatch;
		return received_memory{{}, 0, {}, false, {}};
	}
	return verify_memory(std::move(m.fds.front()), m.header, req, ec);
}

received_memory channel::receive_memory(const requirements &req)
{
	std::error_code ec;
	received_memory r = receive_memory(req, ec);
	detail::throw_if(ec, "receiving exclusive memory (required: " +
				     (req.size ? std::to_string(*req.size) + " bytes"
					       : std::string("size from header")) +
				     ", seals " + to_string(req.seals) + ")");
	return r;
}

peer_credentials channel::peer() const
{
	struct ucred uc = {};
	socklen_t len = sizeof(uc);
	if (::getsockopt(fd_.get(), SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		detail::throw_if(detail::errno_code(errno), "getsockopt(SO_PEERCRED)");
	return {uc.pid, uc.uid, uc.gid};
}

unique_fd channel::peer_pidfd(std::error_code &ec) const noexcept
{
	ec.clear();
	int pidfd = -1;
	socklen_t len = sizeof(pidfd);
	if (::getsockopt(fd_.get(), SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	return unique_fd(pidfd);
}

void channel::set_pass_credentials(bool on)
{
	int v = on;
	if (::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &v, sizeof(v)) < 0)
		detail::throw_if(detail::errno_code(errno), "setsockopt(SO_PASSCRED)");
}

void channel::set_timeout(std::chrono::milliseconds t)
{
	struct timeval tv = {};
	tv.tv_sec = static_cast<time_t>(t.count() / 1000);
	tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
	for (int opt : {SO_RCVTIMEO, SO_SNDTIMEO}) {
		if (::setsockopt(fd_.get(), SOL_SOCKET, opt, &tv, sizeof(tv)) < 0)
			detail::throw_if(detail::errno_code(errno), "setsockopt(SO_RCVTIMEO/SNDTIMEO)");
	}
}

void channel::set_max_fds(std::size_t n) noexcept
{
	max_fds_ = std::min(n, wire::scm_max_fd);
}

listener listener::bind(const std::string &path, unsigned mode, int backlog,
			std::error_code &ec) noexcept
{
	ec.clear();
	struct sockaddr_un addr;
	if ((ec = make_address(path, addr)))
		return {};
	unique_fd fd = seqpacket_socket(ec);
	if (ec)
		return {};

	auto *sa = reinterpret_cast<struct sockaddr *>(&addr);
	if (::bind(fd.get(), sa, sizeof(addr)) < 0) {
		if (errno != EADDRINUSE) {
			ec = detail::errno_code(errno);
			return {};
		}
		/* Something is there: replace it only if it is a socket nobody serves. */
		struct stat st;
		if (::lstat(path.c_str(), &st) < 0 || !S_ISSOCK(st.st_mode)) {
			ec = detail::errno_code(EEXIST);
			return {};
		}
		unique_fd probe = seqpacket_socket(ec);
		if (ec)
			return {};
		if (::connect(probe.get(), sa, sizeof(addr)) == 0) {
			ec = errc::address_in_use;
			return {};
		}
		if (errno != ECONNREFUSED) {
			ec = detail::errno_code(errno);
			return {};
		}
		if (::unlink(path.c_str()) < 0 || ::bind(fd.get(), sa, sizeof(addr)) < 0) {
			ec = detail::errno_code(errno);
			return {};
		}
	}

	listener l;
	l.fd_ = std::move(fd);
	l.path_ = path;
	struct stat st;
	/* Before listen(2), nobody can connect: set the mode now. */
	if (::stat(path.c_str(), &st) < 0 || ::chmod(path.c_str(), mode) < 0 ||
	    ::listen(l.fd_.get(), backlog) < 0) {
		ec = detail::errno_code(errno);
		return l; /* destructor unlinks what was made (dev_/ino_ set below only if stat ok) */
	}
	l.dev_ = st.st_dev;
	l.ino_ = st.st_ino;
	return l;
}

listener listener::bind(const std::string &path, unsigned mode, int backlog)
{
	std::error_code ec;
	listener l = bind(path, mode, backlog, ec);
	if (ec) {
		l.unlink_if_ours();
		throw std::system_error(ec, "listening on " + path);
	}
	return l;
}

listener::listener(listener &&other) noexcept
	: fd_(std::move(other.fd_)), path_(std::move(other.path_)),
	  dev_(std::exchange(other.dev_, 0)), ino_(std::exchange(other.ino_, 0))
{
}

listener &listener::operator=(listener &&other) noexcept
{
	if (this != &other) {
		unlink_if_ours();
		fd_ = std::move(other.fd_);
		path_ = std::move(other.path_);
		dev_ = std::exchange(other.dev_, 0);
		ino_ = std::exchange(other.ino_, 0);
	}
	return *this;
}

listener::~listener()
{
	unlink_if_ours();
}

void listener::unlink_if_ours() noexcept
{
	struct stat st;
	if (ino_ && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
		::unlink(path_.c_str());
	ino_ = 0;
	fd_.reset();
}

channel listener::accept(std::error_code &ec) noexcept
{
	ec.clear();
	int fd;
	do {
		fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	return channel(unique_fd(fd));
}

channel listener::accept()
{
	std::error_code ec;
	channel ch = accept(ec);
	detail::throw_if(ec, "accepting on " + path_);
	return ch;
}

} // namespace xmem
