// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What a memory message announces (internal): the one place that computes a
 * header's size and seals for the fd it carries, used by channel::send_memory
 * and by the server's replies alike.
 */
#pragma once

#include <xmem/unique_fd.hpp>
#include <xmem/wire.hpp>

#include <cstdint>
#include <system_error>

namespace xmem::detail {

/*
 * Sets h.size (bytes) and h.seals for the memory @fd:
 *  - @fixed_size > 0: that size and no seals, without a system call
 *    (memfd_secret: its size is fixed once set, secretmem_setattr(), and it
 *    has no seals);
 *  - else st_size from fstat(2), and F_GET_SEALS masked to the bits the wire
 *    carries (seals::all, 0x1f: docs/protocol.md). F_SEAL_EXEC (0x20,
 *    Linux 6.3: memfd_create(2) adds it to every memfd made without
 *    MFD_EXEC when the sysctl vm.memfd_noexec is 1 or 2:
 *    Documentation/userspace-api/mfd_noexec.rst) is left out: the wire
 *    has no bit for it, and a receiver never maps memory PROT_EXEC
 *    (mapping.hpp), so it promises nothing a receiver checks.
 *    A failing F_GET_SEALS (EINVAL: a file without seals) announces none.
 * Errors: errno of fstat(2) (h unchanged then).
 */
std::error_code announce_memory(borrowed_fd fd, std::uint64_t fixed_size,
				wire::header &h) noexcept;

} // namespace xmem::detail
