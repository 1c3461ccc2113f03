// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/error.hpp>
#include <xmem/wire.hpp>

namespace xmem {

namespace {

/* invalid_name's message gives the limit in words. */
static_assert(wire::name_max == 63);

class category final : public std::error_category
{
public:
	const char *name() const noexcept override { return "xmem"; }

	std::string message(int value) const override
	{
		switch (static_cast<errc>(value)) {
		case errc::control_truncated:
			return "control data truncated (MSG_CTRUNC): the peer sent more fds "
			       "than allowed, or the receiver is at its RLIMIT_NOFILE";
		case errc::payload_truncated:
			return "message longer than an xmem header (MSG_TRUNC)";
		case errc::unexpected_control:
			return "unexpected control message (only SCM_RIGHTS and SCM_CREDENTIALS are accepted)";
		case errc::bad_header:
			return "malformed xmem header";
		case errc::unsupported_version:
			return "unsupported xmem header version";
		case errc::fd_count_mismatch:
			return "number of received fds differs from the header's fd_count";
		case errc::peer_closed:
			return "peer closed the connection";
		case errc::wrong_file_type:
			return "received fd is not exclusive memory (fstatfs magic / not a regular file)";
		case errc::size_mismatch:
			return "received memory's size differs from the announced or required size";
		case errc::missing_seals:
			return "received memory lacks a required or promised seal";
		case errc::backend_not_accepted:
			return "received memory is of a backend the receiver does not accept";
		case errc::not_seqpacket:
			return "socket is not an AF_UNIX SOCK_SEQPACKET socket";
		case errc::too_many_fds:
			return "too many fds for one message";
		case errc::address_in_use:
			return "a live server already listens on this socket path";
		case errc::peer_not_allowed:
			return "peer not allowed by its credentials";
		case errc::no_backend:
			return "no backend the options allow is available (memfd_exclusive needs "
			       "the xmem kernel; memfd_secret needs CONFIG_SECRETMEM and is off when "
			       "booted with secretmem.enable=0)";
		case errc::memlock_limit:
			return "RLIMIT_MEMLOCK too small for this mapping";
		case errc::invalid_size:
			return "invalid size (0, or beyond what the backend supports)";
		case errc::invalid_name:
			return "invalid name (too long, or containing NUL; a name in a message: "
			       "at most 63 bytes and no '/')";
		case errc::not_mappable:
			return "received fd cannot be mapped: opened O_PATH or write-only "
			       "(mmap(2) needs a readable fd)";
		}
		return "unknown xmem error " + std::to_string(value);
	}
};

} // namespace

const std::error_category &error_category() noexcept
{
	static const category instance;
	return instance;
}

namespace detail {

void throw_if(const std::error_code &ec, const char *what)
{
	if (ec)
		throw std::system_error(ec, what);
}

} // namespace detail

} // namespace xmem
