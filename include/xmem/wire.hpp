// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The xmem wire header: the payload of every message on a channel.
 * docs/protocol.md describes the protocol; this is its codec.
 *
 * Layout (96 bytes, host byte order: AF_UNIX peers share a host):
 *   0  u32 magic     0x584d454d ("XMEM")
 *   4  u16 version   1
 *   6  u16 kind      1 request, 2 memory, 3 error
 *   8  u32 fd_count  fds attached to this message by SCM_RIGHTS
 *  12  u32 seals     F_SEAL_* bits the sender says the fds carry
 *  16  u64 size      bytes of each attached region (memory), else 0
 *  24  i32 error     errno (error), else 0
 *  28  u16 batch_index  part of a batch, 0-based (< batch_count); 0 when not
 *  30  u16 batch_count  parts of the batch this message belongs to; 0: none
 *  32  char name[64] NUL-padded; at most 63 bytes, no NUL inside, no '/'
 *
 * Offsets 28..31 were "u32 reserved, must be 0" before batches: a message
 * that is not part of a batch encodes exactly as before, and a peer that
 * predates batches rejects a batch part as a bad header instead of taking
 * part of it for the whole.
 */
#pragma once

#include <xmem/memory.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>

namespace xmem::wire {

inline constexpr std::uint32_t magic = 0x584d454d;
inline constexpr std::uint16_t version = 1;
inline constexpr std::size_t header_size = 96;
inline constexpr std::size_t name_max = 63;	/* bytes, excluding the NUL */
/* The kernel's limit of fds in one SCM_RIGHTS message (SCM_MAX_FD, include/net/scm.h). */
inline constexpr std::size_t scm_max_fd = 253;
/* Most parts one batch can have (batch_count is a u16). */
inline constexpr std::size_t max_batch_parts = 0xffff;

enum class kind : std::uint16_t { request = 1, memory = 2, error = 3 };

struct header {
	wire::kind kind = wire::kind::request;
	std::uint32_t fd_count = 0;
	xmem::seals seals;
	std::uint64_t size = 0;
	std::int32_t error = 0;
	/*
	 * Batches (channel::send_batch): part @batch_index of @batch_count.
	 * Both 0 for a message that stands alone.
	 */
	std::uint16_t batch_index = 0;
	std::uint16_t batch_count = 0;
	std::string name;
};

/*
 * Encodes @h. errc::invalid_name when the name is longer than name_max
 * bytes or holds a NUL or '/'; errc::bad_header when seals has unknown bits,
 * fd_count exceeds scm_max_fd, or batch_index is not below batch_count (both
 * 0 outside a batch).
 */
std::array<std::byte, header_size> encode(const header &h, std::error_code &ec) noexcept;

/*
 * Decodes exactly header_size bytes. errc::bad_header (length, magic, kind,
 * batch_index not below batch_count (or nonzero outside a batch), name,
 * fd_count > scm_max_fd, unknown seal bits),
 * errc::unsupported_version.
 */
header decode(std::span<const std::byte> bytes, std::error_code &ec) noexcept;

} // namespace xmem::wire
