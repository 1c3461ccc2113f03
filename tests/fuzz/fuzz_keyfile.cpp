// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target: vault::load_ed25519_key (examples/vault/keyfile.cpp) on
 * any file contents. The input is written to a memfd and loaded through
 * /proc/self/fd/N, so the parser reads it with its own open/fstat/read.
 * Properties:
 *  - the only exception is vault::key_error, and its what() is one
 *    non-empty line;
 *  - the scratch memory is all zero afterwards, whether it returned or threw
 *    (the file and its decoded forms live nowhere else);
 *  - when it throws, @out holds no key: still the pattern it was filled with,
 *    or all zero;
 *  - when it succeeds: the returned format is the one the PEM label names;
 *    out is libsodium's seed || public key (the public half derives from the
 *    seed); a signature made with it verifies; and the same seed written
 *    canonically in both formats (PKCS#8 v0 and v1 with the public key,
 *    openssh-key-v1) loads to the same 64 bytes: the two parsers agree.
 * The scratch buffer is exactly scratch_size bytes of its own heap block,
 * so a read or write past it is an AddressSanitizer report.
 */
#include "../../examples/vault/keyfile.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace {

int memfd = -1;
std::string memfd_path;

[[noreturn]] void broken(const char *why)
{
	std::fprintf(stderr, "fuzz_keyfile: property violated: %s\n", why);
	std::abort();
}

void put_file(const void *data, std::size_t size)
{
	if (::ftruncate(memfd, 0) != 0)
		broken("ftruncate of the memfd failed");
	if (size && ::pwrite(memfd, data, size, 0) != static_cast<ssize_t>(size))
		broken("pwrite to the memfd failed");
}

struct result {
	bool ok = false;
	vault::key_format format{};
	std::array<std::byte, vault::secret_key_size> sk{};
};

constexpr std::byte fill{0x5a};

result load()
{
	auto scratch = std::make_unique<std::byte[]>(vault::scratch_size);
	std::memset(scratch.get(), 0xa5, vault::scratch_size);
	result r;
	r.sk.fill(fill);
	std::span<std::byte> s(scratch.get(), vault::scratch_size);
	try {
		r.format = vault::load_ed25519_key(memfd_path, r.sk, s);
		r.ok = true;
	} catch (const vault::key_error &e) {
		std::string_view w = e.what();
		if (w.empty() || w.find('\n') != w.npos)
			broken("key_error::what() is not one non-empty line");
		bool pattern = std::all_of(r.sk.begin(), r.sk.end(),
					   [](std::byte b) { return b == fill; });
		bool zero = std::all_of(r.sk.begin(), r.sk.end(),
					[](std::byte b) { return b == std::byte{0}; });
		if (!pattern && !zero)
			broken("out holds bytes after a key_error");
	} catch (...) {
		broken("an exception other than key_error");
	}
	if (!std::all_of(s.begin(), s.end(), [](std::byte b) { return b == std::byte{0}; }))
		broken("scratch memory not wiped");
	return r;
}

void u32(std::string &s, std::uint32_t v)
{
	for (int shift = 24; shift >= 0; shift -= 8)
		s += static_cast<char>(v >> shift & 0xff);
}

void sshstr(std::string &s, std::string_view v)
{
	u32(s, static_cast<std::uint32_t>(v.size()));
	s += v;
}

std::string pem(std::string_view label, std::string_view der)
{
	std::string b64(sodium_base64_encoded_len(der.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
	sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char *>(der.data()),
			  der.size(), sodium_base64_VARIANT_ORIGINAL);
	b64.resize(std::strlen(b64.c_str()));
	std::string out = "-----BEGIN " + std::string(label) + "-----\n";
	for (std::size_t i = 0; i < b64.size(); i += 64)
		out += b64.substr(i, 64) + "\n";
	return out + "-----END " + std::string(label) + "-----\n";
}

std::string_view view(const std::byte *p, std::size_t n)
{
	return {reinterpret_cast<const char *>(p), n};
}

/* PKCS#8 OneAsymmetricKey of RFC 8410: v0 without, v1 with the public key. */
std::string pkcs8(const result &k, bool with_public)
{
	using namespace std::literals;
	std::string body = "\x02\x01"s + (with_public ? '\x01' : '\x00') +
			   "\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20"s +
			   std::string(view(k.sk.data(), 32));
	if (with_public)
		body += "\x81\x21\x00"s + std::string(view(k.sk.data() + 32, 32));
	return pem("PRIVATE KEY", "\x30"s + static_cast<char>(body.size()) + body);
}

/* openssh-key-v1 as ssh-keygen writes it: cipher none, one key, padding. */
std::string openssh(const result &k)
{
	std::string pub_blob;
	sshstr(pub_blob, "ssh-ed25519");
	sshstr(pub_blob, view(k.sk.data() + 32, 32));
	std::string priv;
	u32(priv, 0x12345678);
	u32(priv, 0x12345678);
	sshstr(priv, "ssh-ed25519");
	sshstr(priv, view(k.sk.data() + 32, 32));
	sshstr(priv, view(k.sk.data(), 64));
	sshstr(priv, "fuzz@xmem");
	for (char pad = 1; priv.size() % 8; pad++)
		priv += pad;
	std::string blob("openssh-key-v1\0", 15);
	sshstr(blob, "none");
	sshstr(blob, "none");
	sshstr(blob, "");
	u32(blob, 1);
	sshstr(blob, pub_blob);
	sshstr(blob, priv);
	return pem("OPENSSH PRIVATE KEY", blob);
}

void same_key(const result &a, const std::string &file, vault::key_format want)
{
	put_file(file.data(), file.size());
	result b = load();
	if (!b.ok || b.format != want)
		broken("the canonical re-encoding of an accepted key is refused");
	if (b.sk != a.sk)
		broken("the canonical re-encoding loads to another key");
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
	if (sodium_init() < 0)
		broken("sodium_init failed");
	memfd = ::memfd_create("fuzz_keyfile", MFD_CLOEXEC);
	if (memfd < 0)
		broken("memfd_create failed");
	memfd_path = "/proc/self/fd/" + std::to_string(memfd);
	return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	put_file(data, size);
	result r = load();
	if (!r.ok)
		return 0;

	std::string_view text(reinterpret_cast<const char *>(data), size);
	std::string_view label = r.format == vault::key_format::pkcs8
					 ? "-----BEGIN PRIVATE KEY-----"
					 : "-----BEGIN OPENSSH PRIVATE KEY-----";
	if (text.find(label) == text.npos)
		broken("accepted format is not the one the PEM label names");

	auto *sk = reinterpret_cast<const unsigned char *>(r.sk.data());
	unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
	crypto_sign_seed_keypair(pk, sk2, sk);
	if (std::memcmp(sk2, sk, sizeof(sk2)) != 0)
		broken("out is not seed || public key of its seed");
	unsigned char sig[crypto_sign_BYTES];
	static const unsigned char msg[] = "xmem fuzz_keyfile";
	crypto_sign_detached(sig, nullptr, msg, sizeof(msg), sk);
	if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) != 0)
		broken("a signature made with the loaded key does not verify");

	same_key(r, pkcs8(r, false), vault::key_format::pkcs8);
	same_key(r, pkcs8(r, true), vault::key_format::pkcs8);
	same_key(r, openssh(r), vault::key_format::openssh);
	sodium_memzero(sk2, sizeof(sk2));
	return 0;
}
