// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The SCM_RIGHTS core (internal): building a message with fds for sendmsg(2)
 * and taking apart what recvmsg(2) returned. channel (blocking sendmsg and
 * recvmsg) and the server (the same calls as io_uring operations, or
 * non-blocking under epoll) all go through here, so the rules of
 * docs/protocol.md, "What the receiver checks", live in one place:
 *
 *  1. every fd of every SCM_RIGHTS control message is owned by a unique_fd
 *     before anything is checked (so any error closes them all);
 *  2. MSG_CTRUNC: errc::control_truncated (fds dropped: buffer too small or
 *     RLIMIT_NOFILE, net/core/scm.c scm_detach_fds());
 *  3. 0 bytes and no fds: errc::peer_closed;
 *  4. MSG_TRUNC: errc::payload_truncated;
 *  5. a control message other than SCM_RIGHTS or SCM_CREDENTIALS:
 *     errc::unexpected_control;
 *  6. more fds than allowed: errc::too_many_fds;
 *  7. a payload that is not exactly wire::header_size bytes: errc::bad_header;
 *  8. wire::decode (bad_header, unsupported_version);
 *  9. fd_count differing from the fds that came: errc::fd_count_mismatch.
 */
#pragma once

#include <xmem/channel.hpp>
#include <xmem/unique_fd.hpp>
#include <xmem/wire.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <sys/socket.h>
#include <system_error>

namespace xmem::detail {

/* Bytes of control buffer for @max_fds fds and one struct ucred (CMSG_SPACE, cmsg(3)). */
constexpr std::size_t control_space(std::size_t max_fds) noexcept
{
	return CMSG_SPACE(sizeof(int) * max_fds) + CMSG_SPACE(sizeof(struct ucred));
}

/*
 * Upper bound of fds a control buffer of @controllen bytes can carry: the
 * kernel fills it to its end, so alignment slack can hold more fds than the
 * buffer was sized for (put_cmsg(), net/core/scm.c).
 */
constexpr std::size_t fds_fitting(std::size_t controllen) noexcept
{
	return controllen / sizeof(int);
}

/*
 * A control buffer aligned for struct cmsghdr, holding @Bytes bytes. (Not a
 * union with cmsghdr: its flexible array member could not sit inside the
 * server's peer slots.)
 */
template <std::size_t Bytes>
struct alignas(struct cmsghdr) control_buffer {
	std::array<std::byte, Bytes> bytes;
};

/* Room for the most a message can carry: wire::scm_max_fd fds and credentials. */
using max_control_buffer = control_buffer<control_space(wire::scm_max_fd)>;

/*
 * Where received fds go: @slots (caller storage, all invalid on entry) of
 * which @count are filled. An fd beyond the slots is closed at once (it
 * cannot happen when slots.size() >= fds_fitting(controllen)) and counted in
 * @dropped, which then makes the message an error.
 */
struct fd_sink {
	std::span<unique_fd> slots;
	std::size_t count = 0;
	std::size_t dropped = 0;
	/*
	 * Where an fd goes instead of close(2) when the sink lets it go (an
	 * error, or no slot left): the server's closer thread, since a peer's
	 * fd can block close() for as long as the peer likes. Null: close().
	 */
	void (*dispose)(void *ctx, int fd) noexcept = nullptr;
	void *dispose_ctx = nullptr;

	void take(int fd) noexcept;
	/* Lets go of every fd held (dispose, or close). */
	void clear() noexcept;
};

/*
 * wire::encode(@h) as if h.fd_count were @fd_count: what a send puts on the
 * wire without copying @h (its name) to set one field. Defined in wire.cpp.
 */
std::array<std::byte, wire::header_size> encode_with_fd_count(const wire::header &h,
							      std::uint32_t fd_count,
							      std::error_code &ec) noexcept;

/*
 * Points @msg at @payload (one iovec, @iov) and, when @fds is not empty, at a
 * single SCM_RIGHTS control message in @control (at least
 * CMSG_SPACE(sizeof(int) * fds.size()) bytes, aligned) carrying them.
 * fds.size() must be <= wire::scm_max_fd.
 */
void build_send(struct msghdr &msg, struct iovec &iov, std::span<const std::byte> payload,
		std::span<std::byte> control, std::span<const borrowed_fd> fds) noexcept;

/*
 * Points @msg at @payload and @control for a recvmsg(2) that must be called
 * with MSG_CMSG_CLOEXEC.
 */
void build_receive(struct msghdr &msg, struct iovec &iov, std::span<std::byte> payload,
		   std::span<std::byte> control) noexcept;

/*
 * Takes apart a message that recvmsg(2) (flags MSG_CMSG_CLOEXEC) returned
 * @n >= 0 bytes for, in the order given at the top of this file. Fds go to
 * @fds; SCM_CREDENTIALS to @sender. On success @h is the decoded header and
 * @fds holds exactly h.fd_count fds; on error every fd is closed.
 */
std::error_code finish_receive(const struct msghdr &msg, std::size_t n,
			       std::span<const std::byte> payload, std::size_t max_fds,
			       fd_sink &fds, std::optional<peer_credentials> &sender,
			       wire::header &h) noexcept;

} // namespace xmem::detail
