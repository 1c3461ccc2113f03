// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Loading an Ed25519 private key from a file without leaving copies of it in
 * ordinary memory.
 *
 * Formats:
 *  - PKCS#8 PEM, "-----BEGIN PRIVATE KEY-----" (openssl genpkey -algorithm
 *    ed25519): OneAsymmetricKey of RFC 5958 with the Ed25519 algorithm
 *    identifier (OID 1.3.101.112) and CurvePrivateKey of RFC 8410, section 7.
 *  - openssh-key-v1, "-----BEGIN OPENSSH PRIVATE KEY-----" (ssh-keygen -t
 *    ed25519 -N ''), as OpenSSH's PROTOCOL.key describes it, unencrypted.
 */
#pragma once

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>

namespace vault {

/* Largest key file accepted, in bytes (an RSA-4096 PKCS#8 PEM is ~3.3 KiB). */
inline constexpr std::size_t key_file_max = 8192;
/*
 * Bytes of scratch memory load_ed25519_key() needs: the file (key_file_max
 * + 1, to see a longer one), its base64 decoded (3/4 of it), a public key;
 * rounded up to 4 pages. It counts against RLIMIT_MEMLOCK.
 */
inline constexpr std::size_t scratch_size = 16384;
/* libsodium's Ed25519 secret key: 32-byte seed || 32-byte public key. */
inline constexpr std::size_t secret_key_size = 64;

/*
 * A key file that cannot be used: what() is one line saying why (it does not
 * name the file; the caller does).
 */
struct key_error : std::runtime_error {
	using std::runtime_error::runtime_error;
};

enum class key_format { pkcs8, openssh };

/* "PKCS#8" or "OpenSSH". */
const char *to_string(key_format f) noexcept;

/*
 * Reads the Ed25519 private key in the file @path and writes libsodium's
 * 64-byte secret key (seed || public key) to @out with
 * crypto_sign_seed_keypair(). The file's bytes and every decoded form of them
 * live only in @scratch (at least scratch_size bytes, meant to be exclusive
 * memory), which is wiped with sodium_memzero() before this returns or
 * throws; @out is wiped when it throws.
 *
 * Throws key_error for a file that is missing, unreadable, too large,
 * malformed, encrypted, or holds another kind of key, and when a public key
 * stored in the file does not match the private key.
 */
key_format load_ed25519_key(const std::string &path,
			    std::span<std::byte, secret_key_size> out,
			    std::span<std::byte> scratch);

} // namespace vault
