// SPDX-License-Identifier: LGPL-2.1-or-later
/* Private to libxmem: checks of an adopted socket shared by channel and listener. */
#pragma once

#include <system_error>

namespace xmem::detail {

/*
 * Whether @fd is an AF_UNIX SOCK_SEQPACKET socket (SO_TYPE, SO_DOMAIN: socket(7)).
 * Returns an empty code, errc::not_seqpacket (not a socket, or another kind), or
 * the errno of getsockopt(2).
 */
std::error_code check_unix_seqpacket(int fd) noexcept;

} // namespace xmem::detail
