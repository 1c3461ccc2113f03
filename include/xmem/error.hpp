// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Errors of libxmem's own, as std::error_code values.
 *
 * System call failures are reported with std::generic_category() (errno).
 * Failures the kernel has no errno for (a peer's bad header, a received fd of
 * the wrong kind) use xmem::errc below; each message names what was wrong.
 * Throwing calls raise std::system_error carrying one of the two, plus
 * context (what was being done, on what).
 */
#pragma once

#include <string>
#include <system_error>

namespace xmem {

enum class errc {
	/* Receiving: the message itself. */
	control_truncated = 1,	/* MSG_CTRUNC: fds were dropped (buffer or RLIMIT_NOFILE) */
	payload_truncated,	/* MSG_TRUNC: the message was longer than a header */
	unexpected_control,	/* a control message other than SCM_RIGHTS/SCM_CREDENTIALS */
	bad_header,		/* wrong magic, length, kind, reserved bits or name (decoding) */
	unsupported_version,	/* header version this library does not speak */
	fd_count_mismatch,	/* the header announced a different number of fds */
	peer_closed,		/* orderly shutdown by the peer */
	/* Receiving: what the fds are. */
	wrong_file_type,	/* not exclusive memory (fstatfs magic, S_ISREG) */
	size_mismatch,		/* fd size differs from the header's, or is 0 */
	missing_seals,		/* a required or promised seal is absent */
	backend_not_accepted,	/* a backend the caller did not accept (e.g. ordinary) */
	/* Sockets. */
	not_seqpacket,		/* a channel needs a SOCK_SEQPACKET AF_UNIX socket */
	too_many_fds,		/* more fds than one message may carry (SCM_MAX_FD) */
	address_in_use,		/* a live server already listens on the path */
	peer_not_allowed,	/* peer credentials rejected by policy */
	/* Creating. */
	no_backend,		/* no backend the options allow is available */
	memlock_limit,		/* RLIMIT_MEMLOCK too small for the mapping */
	invalid_size,		/* size 0, or beyond what the backend supports */
	invalid_name,		/* name too long or with NUL; in a message also '/' (wire::name_max) */
	/* Receiving, added later (values above are kept). */
	not_mappable,		/* an fd to memory that cannot be mapped: O_PATH or write-only */
};

/* The category of xmem::errc; name() is "xmem". */
const std::error_category &error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept
{
	return {static_cast<int>(e), error_category()};
}

namespace detail {
/* errno as an error_code in generic_category(). */
inline std::error_code errno_code(int err) noexcept
{
	return {err, std::generic_category()};
}
/*
 * Throws std::system_error(@ec, @what) when @ec is set. A literal @what: a
 * message that has to be built is built only once @ec is known to be set
 * (`if (ec) throw std::system_error(ec, ...)`), never on the success path.
 */
void throw_if(const std::error_code &ec, const char *what);
} // namespace detail

} // namespace xmem

template <>
struct std::is_error_code_enum<xmem::errc> : std::true_type {};
