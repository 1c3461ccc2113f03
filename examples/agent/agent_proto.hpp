// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The ssh-agent protocol as xmem-agent speaks it: a pure decoder of one
 * request and encoders of the replies. No I/O, no global state: every
 * function works on the bytes it is given, so a fuzzer can call it as is
 * (tests/fuzz).
 *
 * The protocol: draft-miller-ssh-agent (RFC 9987) and OpenSSH's
 * PROTOCOL.agent. On the socket every message is a uint32 length (big
 * endian) followed by that many bytes, the "body": a one-byte type and its
 * fields. Fields are big-endian uint32s, single bytes, and "strings"
 * (uint32 length, then that many bytes). decode_request() takes one body.
 *
 * The decoder keeps no copy of anything: every span and string_view in a
 * decoded request points into the body it was given, so a key that arrives
 * in exclusive memory stays there (xmem-agent receives every body into an
 * exclusive mapping).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace xmem::agent {

/* Largest body accepted, in bytes (OpenSSH's AGENT_MAX_LEN, ssh-agent.c). */
inline constexpr std::size_t max_message = 256 * 1024;
/* Longest key type or extension name, in bytes (printable ASCII only). */
inline constexpr std::size_t max_name = 256;
/* Longest key comment accepted by ADD_IDENTITY, in bytes. */
inline constexpr std::size_t max_comment = 1024;
/* Constraints one ADD_ID_CONSTRAINED may carry (each kind at most once). */
inline constexpr std::size_t max_constraints = 8;

/* Ed25519 sizes (RFC 8032; OpenSSH's PROTOCOL.key): public key, seed || public key. */
inline constexpr std::size_t ed25519_public_size = 32;
inline constexpr std::size_t ed25519_secret_size = 64;
inline constexpr std::size_t ed25519_signature_size = 64;

/* Message numbers (draft-miller-ssh-agent section 6.1; OpenSSH authfd.h). */
namespace msg {
inline constexpr std::uint8_t failure = 5;
inline constexpr std::uint8_t success = 6;
inline constexpr std::uint8_t request_identities = 11;
inline constexpr std::uint8_t identities_answer = 12;
inline constexpr std::uint8_t sign_request = 13;
inline constexpr std::uint8_t sign_response = 14;
inline constexpr std::uint8_t add_identity = 17;
inline constexpr std::uint8_t remove_identity = 18;
inline constexpr std::uint8_t remove_all_identities = 19;
inline constexpr std::uint8_t add_smartcard_key = 20;
inline constexpr std::uint8_t remove_smartcard_key = 21;
inline constexpr std::uint8_t lock = 22;
inline constexpr std::uint8_t unlock = 23;
inline constexpr std::uint8_t add_id_constrained = 25;
inline constexpr std::uint8_t add_smartcard_key_constrained = 26;
inline constexpr std::uint8_t extension = 27;
inline constexpr std::uint8_t extension_failure = 28;
inline constexpr std::uint8_t extension_response = 29;
} // namespace msg

/* Key constraint numbers (draft-miller-ssh-agent section 6.2). */
namespace constraint {
inline constexpr std::uint8_t lifetime = 1;
inline constexpr std::uint8_t confirm = 2;
inline constexpr std::uint8_t extension = 255;
} // namespace constraint

/*
 * A body that is not a well-formed request xmem-agent knows: what() names
 * the message and what was wrong with it ("SIGN_REQUEST: data: string of
 * 4294967295 bytes past the end of the message (7 left)"). The agent answers
 * it with SSH_AGENT_FAILURE, as the protocol asks for unknown or malformed
 * requests.
 */
struct protocol_error : std::runtime_error {
	using std::runtime_error::runtime_error;
};

using bytes = std::span<const std::byte>;

/* SSH_AGENTC_REQUEST_IDENTITIES (11): no fields. */
struct request_identities {};

/* SSH_AGENTC_SIGN_REQUEST (13). */
struct sign_request {
	bytes key_blob;		/* the public key blob of the key to sign with */
	bytes data;		/* what to sign */
	std::uint32_t flags;	/* SSH_AGENT_RSA_SHA2_* (ignored for Ed25519) */
};

/* The private part of an Ed25519 key as ADD_IDENTITY carries it. */
struct ed25519_key {
	bytes public_key;	/* ed25519_public_size bytes, ENC(A) */
	bytes secret_key;	/* ed25519_secret_size bytes: seed || ENC(A) */
};

/*
 * SSH_AGENTC_ADD_IDENTITY (17) and SSH_AGENTC_ADD_ID_CONSTRAINED (25).
 * Every key type whose layout the draft gives is decoded far enough to reach
 * the comment and the constraints (ssh-ed25519, ssh-rsa, ssh-dss,
 * ecdsa-sha2-nistp256/384/521); only ssh-ed25519's fields are kept
 * (@ed25519). Other types (certificates, security keys) are protocol errors.
 */
struct add_identity {
	std::string_view key_type;	/* "ssh-ed25519", "ssh-rsa", ... */
	std::optional<ed25519_key> ed25519;	/* set for key_type "ssh-ed25519" */
	bytes comment;			/* at most max_comment bytes, any bytes */
	bool constrained = false;	/* came as ADD_ID_CONSTRAINED */
	std::optional<std::uint32_t> lifetime;	/* seconds (constraint 1) */
	bool confirm = false;		/* constraint 2 */
};

/* SSH_AGENTC_REMOVE_IDENTITY (18). */
struct remove_identity {
	bytes key_blob;
};

/* SSH_AGENTC_REMOVE_ALL_IDENTITIES (19): no fields. */
struct remove_all_identities {};

/* SSH_AGENTC_LOCK (22) and SSH_AGENTC_UNLOCK (23). */
struct lock_request {
	bool lock;		/* true: LOCK, false: UNLOCK */
	bytes passphrase;
};

/* SSH_AGENTC_EXTENSION (27). */
struct extension {
	std::string_view name;	/* printable ASCII, 1 to max_name bytes */
	bytes contents;		/* the rest of the body, extension-specific */
};

using request = std::variant<request_identities, sign_request, add_identity,
			     remove_identity, remove_all_identities, lock_request,
			     extension>;

/*
 * Decodes one message body @body (the bytes after the uint32 length: type,
 * then fields), at most max_message bytes. Returns the request; its spans
 * point into @body. Throws protocol_error for: an empty or oversized body,
 * an unknown or unsupported message type (SSH1 messages, smartcard keys),
 * a field running past the end, bytes left over after the last field, a
 * name that is empty, too long or not printable ASCII, an unknown key type,
 * Ed25519 fields of the wrong size or whose public halves differ, a comment
 * longer than max_comment, an unknown constraint or constraint extension, a
 * constraint given twice or more than max_constraints. (Bytes after the
 * key and comment of a plain ADD_IDENTITY are "bytes after the last field".)
 * Never reads outside @body; allocates only for the exception's message.
 */
request decode_request(std::span<const std::byte> body);

/* "REQUEST_IDENTITIES", "SIGN_REQUEST", ..., or "type N" for others. */
std::string message_name(std::uint8_t type);

/* Builders of reply bodies (the caller frames them with encode_frame()). */

/* One identity for an IDENTITIES_ANSWER. */
struct identity {
	bytes key_blob;
	bytes comment;
};

/* SSH_AGENT_SUCCESS or SSH_AGENT_FAILURE (one byte). */
std::vector<std::byte> encode_status(bool ok);
/* SSH2_AGENT_IDENTITIES_ANSWER: uint32 count, then (string blob, string comment) each. */
std::vector<std::byte> encode_identities(std::span<const identity> ids);
/* SSH2_AGENT_SIGN_RESPONSE: string signature (the whole signature blob). */
std::vector<std::byte> encode_sign_response(bytes signature_blob);
/* SSH_AGENT_EXTENSION_RESPONSE to "query": string "query", then each name (OpenSSH's form). */
std::vector<std::byte> encode_query_response(std::span<const std::string_view> names);
/* Prepends the uint32 big-endian length of @body. */
std::vector<std::byte> encode_frame(std::span<const std::byte> body);

/* The public key blob of an Ed25519 key: string "ssh-ed25519", string @public_key (32 bytes). */
std::vector<std::byte> ed25519_key_blob(bytes public_key);
/* An Ed25519 signature blob: string "ssh-ed25519", string @signature (64 bytes). */
std::vector<std::byte> ed25519_signature_blob(bytes signature);

} // namespace xmem::agent
