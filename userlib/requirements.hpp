// SPDX-License-Identifier: LGPL-2.1-or-later
/* Private to libxmem: how the throwing receives describe what they required. */
#pragma once

#include <xmem/channel.hpp>

#include <string>

namespace xmem::detail {

/*
 * "backends memfd_exclusive, memfd_secret; received memfd_create": the
 * backends @req accepts and, when known, the one @r was (for the message of
 * a std::system_error; may throw std::bad_alloc).
 */
std::string describe_backends(const requirements &req, const received_memory &r);

} // namespace xmem::detail
