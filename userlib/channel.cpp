// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/channel.hpp>

#include "announce.hpp"
#include "cmsg.hpp"
#include "requirements.hpp"
#include "unix_socket.hpp"

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

namespace xmem {

namespace {

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
 * One sendmsg(2) of @bytes with @fds (at most wire::scm_max_fd), MSG_NOSIGNAL,
 * retried on EINTR: a SOCK_SEQPACKET send is atomic (unix_dgram_sendmsg()),
 * so EINTR means nothing was sent and no fd goes twice.
 */
void send_encoded(borrowed_fd sock, std::span<const std::byte> bytes,
		  std::span<const borrowed_fd> fds, std::error_code &ec) noexcept
{
	struct iovec iov;
	struct msghdr msg;
	detail::max_control_buffer control;
	detail::build_send(msg, iov, bytes, control.bytes, fds);

	ssize_t n;
	do {
		n = ::sendmsg(sock.get(), &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		ec = detail::errno_code(errno);
	else if (static_cast<std::size_t>(n) != bytes.size())
		ec = detail::errno_code(EIO);
}

/*
 * Slots for every fd a receive with room for @max_fds fds can bring (the
 * control buffer's alignment slack included, detail::fds_fitting): owning what
 * came cannot fail, and receiving allocates nothing.
 */
constexpr std::size_t slots_for(std::size_t max_fds) noexcept
{
	return detail::fds_fitting(detail::control_space(max_fds));
}

/*
 * One recvmsg(2) on @sock (MSG_CMSG_CLOEXEC, retried on EINTR) with room
 * for @max_fds fds (<= wire::scm_max_fd), taken apart by
 * detail::finish_receive. @slots: at least slots_for(max_fds), all empty.
 * Returns how many fds are now in @slots (0 on error: every fd that came is
 * closed).
 */
std::size_t receive_into(borrowed_fd sock, std::size_t max_fds, std::span<unique_fd> slots,
			 wire::header &h, std::optional<peer_credentials> &sender,
			 std::error_code &ec) noexcept
{
	ec.clear();
	std::array<std::byte, wire::header_size> payload;
	detail::max_control_buffer control;
	const std::size_t controllen = detail::control_space(max_fds);

	struct iovec iov;
	struct msghdr msg;
	detail::build_receive(msg, iov, payload, std::span(control.bytes).first(controllen));
	ssize_t n;
	do {
		n = ::recvmsg(sock.get(), &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		ec = detail::errno_code(errno);
		return 0;
	}

	detail::fd_sink sink{slots.first(detail::fds_fitting(controllen)), 0, 0};
	ec = detail::finish_receive(msg, static_cast<std::size_t>(n), payload, max_fds, sink,
				    sender, h);
	return ec ? 0 : sink.count;
}

/*
 * Calls @fn with slots enough for @max_fds (<= wire::scm_max_fd): a few on
 * the stack for the default budget, room for the most a message can carry
 * otherwise (clearing and checking 28 slots, not 264, on every receive).
 */
template <typename Fn>
auto with_slots(std::size_t max_fds, Fn &&fn)
{
	if (max_fds <= channel::default_max_fds) {
		std::array<unique_fd, slots_for(channel::default_max_fds)> slots;
		return fn(std::span<unique_fd>(slots));
	}
	std::array<unique_fd, slots_for(wire::scm_max_fd)> slots;
	return fn(std::span<unique_fd>(slots));
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

std::string detail::describe_backends(const requirements &req, const received_memory &r)
{
	std::string out = "backends memfd_exclusive";
	if (req.accept_secret)
		out += ", memfd_secret";
	if (req.accept_ordinary)
		out += ", memfd_create";
	if (r.backend)
		out += "; received " + std::string(to_string(*r.backend));
	return out;
}

received_memory verify_memory(unique_fd fd, const wire::header &h, const requirements &req,
			      std::error_code &ec) noexcept
{
	received_memory out{};
	memory mem = memory::adopt(std::move(fd), ec);
	if (ec)
		return out;
	out.backend = mem.backend();
	if ((mem.backend() == backend::ordinary && !req.accept_ordinary) ||
	    (mem.backend() == backend::secret && !req.accept_secret)) {
		ec = errc::backend_not_accepted;
		return out;
	}

	/*
	 * Seals first, then the size: seals only ever grow, so a size read
	 * after F_SEAL_SHRINK was seen can no longer shrink. adopt()'s fstat
	 * came before the seals and a sender may have truncated and sealed in
	 * between (review-peer finding 3): ask for the size again. memfd_secret
	 * has no seals (F_GET_SEALS fails, EINVAL, and proves nothing): take
	 * none without asking; its size is fixed once set and memory::size()
	 * returns the one adopt() read. Any other failure: no seals either.
	 */
	std::error_code seal_ec;
	seals actual;
	if (mem.backend() != backend::secret)
		actual = mem.current_seals(seal_ec);
	if (seal_ec)
		actual = seals();
	const std::size_t size = mem.size(ec);
	if (ec)
		return out;

	/* On the two errors below, say what arrived (size, seals; no memory). */
	out.size = size;
	out.seals = actual;
	if (size == 0 || size != h.size || (req.size && size != *req.size)) {
		ec = errc::size_mismatch;
		return out;
	}
	if (!actual.contains(req.seals | h.seals)) {
		ec = errc::missing_seals;
		return out;
	}

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

std::error_code detail::check_unix_seqpacket(int fd) noexcept
{
	int type = 0, domain = 0;
	socklen_t len = sizeof(type);
	if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return errno == ENOTSOCK ? make_error_code(errc::not_seqpacket)
					 : detail::errno_code(errno);
	len = sizeof(domain);
	if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
	    type != SOCK_SEQPACKET || domain != AF_UNIX)
		return make_error_code(errc::not_seqpacket);
	return {};
}

channel channel::adopt(unique_fd fd, std::error_code &ec) noexcept
{
	ec = detail::check_unix_seqpacket(fd.get());
	if (ec)
		return {};
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
	if (ec)
		throw std::system_error(ec, "connecting to " + path);
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
	auto bytes = detail::encode_with_fd_count(h, static_cast<std::uint32_t>(fds.size()), ec);
	if (ec)
		return;
	send_encoded(fd_, bytes, fds, ec);
}

void channel::send(const wire::header &h, std::span<const borrowed_fd> fds)
{
	std::error_code ec;
	send(h, fds, ec);
	if (!ec)
		return;
	std::string what = "sending an xmem message with " + std::to_string(fds.size()) + " fds";
	if (ec == errc::invalid_name)
		what += ": its name is " + std::to_string(h.name.size()) + " bytes" +
			(h.name.find('\0') != h.name.npos ? ", with a NUL" : "") +
			(h.name.find('/') != h.name.npos ? ", with a '/'" : "") + "; at most " +
			std::to_string(wire::name_max) + " (wire::name_max), no '/' or NUL";
	throw std::system_error(ec, what);
}

void channel::send_request(std::string_view name)
{
	wire::header h;
	h.kind = wire::kind::request;
	h.name = name;
	send(h);
}

std::string channel::receive_request(std::error_code &ec) noexcept
{
	/* Room for one fd, so that a request carrying any is seen and refused. */
	message m = receive_one(1, ec);
	if (ec)
		return {};
	if (m.header.kind != wire::kind::request || m.header.batch_count != 0) {
		ec = errc::bad_header;
		return {};
	}
	if (!m.fds.empty()) {
		ec = errc::too_many_fds;
		return {};
	}
	return std::move(m.header.name);
}

std::string channel::receive_request()
{
	std::error_code ec;
	std::string name = receive_request(ec);
	detail::throw_if(ec, "receiving an xmem request");
	return name;
}

void channel::send_memory(const memory &mem, std::string_view name)
{
	wire::header h;
	h.kind = wire::kind::memory;
	h.name = name;
	/* Size and seals as the server's replies announce them (announce.hpp). */
	const std::uint64_t fixed = mem.backend() == backend::secret ? mem.size() : 0;
	detail::throw_if(detail::announce_memory(mem.fd(), fixed, h), "fstat of memory to send");
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

message channel::receive_one(std::size_t max_fds, std::error_code &ec) noexcept
{
	return with_slots(max_fds, [&](std::span<unique_fd> slots) {
		message out;
		const std::size_t count =
			receive_into(fd_, max_fds, slots, out.header, out.sender, ec);
		if (ec || count == 0)
			return out;
		try {
			out.fds.reserve(count);
		} catch (const std::bad_alloc &) {
			ec = detail::errno_code(ENOMEM);
			return out; /* the slots close them */
		}
		for (std::size_t i = 0; i < count; i++)
			out.fds.push_back(std::move(slots[i])); /* reserved: no throw */
		return out;
	});
}

message channel::receive(std::error_code &ec) noexcept
{
	return receive_one(max_fds_, ec);
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
	/* As receive(), with no message to allocate: the fd goes straight to verify_memory. */
	return with_slots(max_fds_, [&](std::span<unique_fd> slots) {
		wire::header h;
		std::optional<peer_credentials> sender;
		const std::size_t count = receive_into(fd_, max_fds_, slots, h, sender, ec);
		if (ec)
			return received_memory{};
		if (h.kind == wire::kind::error) {
			ec = detail::errno_code(peer_errno(h.error));
			return received_memory{};
		}
		if (h.kind != wire::kind::memory) {
			ec = errc::bad_header;
			return received_memory{};
		}
		if (count != 1) {
			ec = errc::fd_count_mismatch;
			return received_memory{};
		}
		return verify_memory(std::move(slots[0]), h, req, ec);
	});
}

received_memory channel::receive_memory(const requirements &req)
{
	std::error_code ec;
	received_memory r = receive_memory(req, ec);
	if (!ec)
		return r;
	std::string what = "receiving exclusive memory (required: " +
			   (req.size ? std::to_string(*req.size) + " bytes"
				     : std::string("size from header")) +
			   ", seals " + to_string(req.seals) + ", " +
			   detail::describe_backends(req, r) + ")";
	/* verify_memory() says what arrived when the size or the seals were wrong. */
	if (ec == errc::size_mismatch || ec == errc::missing_seals) {
		what += "; received " + std::to_string(r.size) + " bytes, seals " +
			to_string(r.seals);
		if (r.backend == backend::secret)
			what += " (memfd_secret has no seals)";
	}
	throw std::system_error(ec, what);
}

void channel::send_batch(const wire::header &h, std::span<const borrowed_fd> fds,
			 std::error_code &ec) noexcept
{
	ec.clear();
	const std::size_t parts = std::max<std::size_t>(1, (fds.size() + wire::scm_max_fd - 1) /
							    wire::scm_max_fd);
	if (parts > wire::max_batch_parts) {
		ec = errc::too_many_fds;
		return;
	}
	wire::header part;
	try {
		part = h;
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return;
	}
	/* Encode every part first: nothing goes out unless all of it can. */
	std::vector<std::array<std::byte, wire::header_size>> encoded;
	try {
		encoded.resize(parts);
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return;
	}
	part.batch_count = static_cast<std::uint16_t>(parts);
	for (std::size_t i = 0; i < parts; i++) {
		const std::size_t first = i * wire::scm_max_fd;
		part.batch_index = static_cast<std::uint16_t>(i);
		part.fd_count = static_cast<std::uint32_t>(
			std::min(wire::scm_max_fd, fds.size() - std::min(first, fds.size())));
		encoded[i] = wire::encode(part, ec);
		if (ec)
			return;
	}
	for (std::size_t i = 0; i < parts && !ec; i++) {
		const std::size_t first = std::min(i * wire::scm_max_fd, fds.size());
		const std::size_t count = std::min(wire::scm_max_fd, fds.size() - first);
		send_encoded(fd_, encoded[i], fds.subspan(first, count), ec);
	}
}

void channel::send_batch(const wire::header &h, std::span<const borrowed_fd> fds)
{
	std::error_code ec;
	send_batch(h, fds, ec);
	if (ec)
		throw std::system_error(ec, "sending a batch of " + std::to_string(fds.size()) +
						    " fds");
}

message channel::receive_batch(std::size_t max_total_fds, std::error_code &ec) noexcept
{
	message out = receive_one(std::min(max_total_fds, wire::scm_max_fd), ec);
	if (ec)
		return out;
	const std::size_t parts = out.header.batch_count;
	if (parts <= 1) {
		out.header.batch_count = 0;
		return out;
	}
	if (out.header.batch_index != 0 || out.fds.empty()) {
		/* Out of order, or a part without fds would let a peer stretch a batch for free. */
		ec = errc::bad_header;
		out.fds.clear();
		return out;
	}
	try {
		out.fds.reserve(std::min(max_total_fds, parts * wire::scm_max_fd));
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		out.fds.clear();
		return out;
	}

	for (std::size_t i = 1; i < parts; i++) {
		const std::size_t room = max_total_fds - out.fds.size();
		if (room == 0) {
			ec = errc::too_many_fds;
			break;
		}
		/* One more than the room, so a part that overruns it is seen as too many. */
		message part = receive_one(std::min(room + 1, wire::scm_max_fd), ec);
		if (ec)
			break;
		const wire::header &ph = part.header;
		if (part.fds.size() > room) {
			ec = errc::too_many_fds;
		} else if (ph.batch_index != i || ph.batch_count != parts || ph.kind != out.header.kind ||
			   ph.size != out.header.size || ph.seals != out.header.seals ||
			   ph.name != out.header.name || part.fds.empty()) {
			ec = errc::bad_header;
		}
		if (ec)
			break;
		for (unique_fd &fd : part.fds)
			out.fds.push_back(std::move(fd)); /* reserved: no throw */
	}
	if (ec) {
		out.fds.clear(); /* all or nothing */
		return out;
	}
	out.header.fd_count = static_cast<std::uint32_t>(out.fds.size());
	out.header.batch_index = 0;
	out.header.batch_count = 0;
	return out;
}

message channel::receive_batch(std::size_t max_total_fds)
{
	std::error_code ec;
	message m = receive_batch(max_total_fds, ec);
	if (ec)
		throw std::system_error(ec, "receiving a batch of at most " +
						    std::to_string(max_total_fds) + " fds");
	return m;
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
	if (ec)
		throw std::system_error(ec, "accepting on " + path_);
	return ch;
}

} // namespace xmem
