// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The parsed key as the parser hands it to the signer: one page of exclusive
 * memory (key_memory_size bytes) holding a key_record at offset 0, sealed
 * against resizing (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL on
 * memfd_exclusive; memfd_secret's size is fixed once set). Both sides are
 * the same binary, so the layout is host order and this struct's.
 */
#pragma once

#include "agent_proto.hpp"

#include <cstddef>
#include <cstdint>

namespace xmem::agent {

inline constexpr std::uint32_t key_record_magic = 0x58414b52;	/* "XAKR" */
inline constexpr std::uint32_t key_record_version = 1;
/* Bytes of the memory a key_record lives in (one page). */
inline constexpr std::size_t key_memory_size = 4096;

struct key_record {
	std::uint32_t magic;		/* key_record_magic */
	std::uint32_t version;		/* key_record_version */
	std::uint32_t flags;		/* key_record_flag_* */
	std::uint32_t lifetime;		/* seconds, when flags has key_record_has_lifetime */
	std::uint32_t comment_len;	/* bytes of comment used, <= max_comment */
	std::uint8_t public_key[ed25519_public_size];
	std::uint8_t secret_key[ed25519_secret_size];	/* seed || public key (libsodium's form) */
	std::uint8_t comment[max_comment];
};

inline constexpr std::uint32_t key_record_has_lifetime = 1;

static_assert(sizeof(key_record) <= key_memory_size);

/* Names the parser puts in its wire error replies, so that the signer can log why. */
namespace parse_refusal {
inline constexpr const char *malformed = "malformed";
inline constexpr const char *key_type = "key-type";
inline constexpr const char *confirm = "confirm";
inline constexpr const char *internal = "internal";
} // namespace parse_refusal

} // namespace xmem::agent
