// SPDX-License-Identifier: LGPL-2.1-or-later
#include "cmsg.hpp"

#include <xmem/error.hpp>

#include <cstring>
#include <unistd.h>

#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04 /* include/linux/socket.h, Linux 6.5 */
#endif

namespace xmem::detail {

void fd_sink::take(int fd) noexcept
{
	if (count < slots.size()) {
		slots[count++].reset(fd);
		return;
	}
	/* Cannot happen with slots sized by fds_fitting(); never leak. */
	if (dispose)
		dispose(dispose_ctx, fd);
	else
		::close(fd);
	dropped++;
}

void fd_sink::clear() noexcept
{
	for (std::size_t i = 0; i < count; i++) {
		if (dispose && slots[i])
			dispose(dispose_ctx, slots[i].release());
		else
			slots[i].reset();
	}
	count = 0;
}

void build_send(struct msghdr &msg, struct iovec &iov, std::span<const std::byte> payload,
		std::span<std::byte> control, std::span<const borrowed_fd> fds) noexcept
{
	iov.iov_base = const_cast<std::byte *>(payload.data());
	iov.iov_len = payload.size();
	msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fds.empty())
		return;

	msg.msg_control = control.data();
	msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
	std::memset(control.data(), 0, msg.msg_controllen);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
	for (std::size_t i = 0; i < fds.size(); i++) {
		int fd = fds[i].get();
		std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(fd));
	}
}

void build_receive(struct msghdr &msg, struct iovec &iov, std::span<std::byte> payload,
		   std::span<std::byte> control) noexcept
{
	iov.iov_base = payload.data();
	iov.iov_len = payload.size();
	msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.data();
	msg.msg_controllen = control.size();
}

namespace {

/*
 * Takes every fd of every control message into @fds before anything is
 * checked. Returns false when a control message of another kind came.
 */
bool take_control(const struct msghdr &msg, fd_sink &fds,
		  std::optional<peer_credentials> &sender) noexcept
{
	bool only_expected = true;
	auto *m = const_cast<struct msghdr *>(&msg); /* CMSG_NXTHDR takes no const */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		const std::size_t payload = c->cmsg_len - CMSG_LEN(0);
		if (c->cmsg_level == SOL_SOCKET &&
		    (c->cmsg_type == SCM_RIGHTS || c->cmsg_type == SCM_PIDFD)) {
			/* SCM_PIDFD installs an fd too (SO_PASSPIDFD): own it, then refuse. */
			const std::size_t n = payload / sizeof(int);
			for (std::size_t i = 0; i < n; i++) {
				int fd;
				std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				fds.take(fd);
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

} // namespace

std::error_code finish_receive(const struct msghdr &msg, std::size_t n,
			       std::span<const std::byte> payload, std::size_t max_fds,
			       fd_sink &fds, std::optional<peer_credentials> &sender,
			       wire::header &h) noexcept
{
	/* 1. Own every fd first: from here on, any error closes them. */
	const bool only_expected = take_control(msg, fds, sender);

	std::error_code ec;
	if (msg.msg_flags & MSG_CTRUNC)
		ec = errc::control_truncated;
	else if (n == 0 && fds.count == 0 && fds.dropped == 0)
		ec = errc::peer_closed;
	else if (msg.msg_flags & MSG_TRUNC)
		ec = errc::payload_truncated;
	else if (!only_expected)
		ec = errc::unexpected_control;
	else if (fds.count > max_fds || fds.dropped)
		ec = errc::too_many_fds; /* fit in the alignment slack of the buffer */
	else if (n != wire::header_size || payload.size() < wire::header_size)
		ec = errc::bad_header;
	if (!ec)
		h = wire::decode(payload.first(wire::header_size), ec);
	if (!ec && h.fd_count != fds.count)
		ec = errc::fd_count_mismatch;
	if (ec)
		fds.clear();
	return ec;
}

} // namespace xmem::detail
