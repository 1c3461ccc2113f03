// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Ed25519 key files: PEM framing, base64 (libsodium), strict DER for
 * PKCS#8 and the openssh-key-v1 framing, each read with bounds checks.
 */

#include "keyfile.hpp"

#include <xmem/unique_fd.hpp>

#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace std::literals;

namespace vault {

namespace {

using bytes = std::span<const std::uint8_t>;

[[noreturn]] void fail(const std::string &why)
{
	throw key_error(why);
}

bool equals(bytes b, std::string_view s) noexcept
{
	return std::equal(b.begin(), b.end(), s.begin(), s.end(),
			  [](std::uint8_t x, char y) {
				  return x == static_cast<std::uint8_t>(y);
			  });
}

/* At most 40 bytes of @b, non-printable bytes as '?', for error messages. */
std::string printable(bytes b)
{
	std::string s;

	for (std::uint8_t c : b.first(std::min<std::size_t>(b.size(), 40)))
		s += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
	return s;
}

/* Wipes a span of scratch memory when it goes out of scope. */
class wipe_guard
{
public:
	explicit wipe_guard(std::span<std::byte> s) noexcept : s_(s) {}
	wipe_guard(const wipe_guard &) = delete;
	wipe_guard &operator=(const wipe_guard &) = delete;
	~wipe_guard() { sodium_memzero(s_.data(), s_.size()); }

private:
	std::span<std::byte> s_;
};

/* ------------------------------------------------------------------ */
/* Reading the file                                                    */

/*
 * Reads all of @path into @buf (at most key_file_max bytes). Returns the text.
 * key_error: cannot open (errno), not a regular file, empty, too large, read
 * error (errno).
 */
std::string_view read_key_file(const std::string &path, std::span<std::byte> buf)
{
	xmem::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
	if (!fd)
		fail("cannot open: "s + std::strerror(errno));

	struct stat st {};
	if (::fstat(fd.get(), &st) < 0)
		fail("cannot stat: "s + std::strerror(errno));
	if (!S_ISREG(st.st_mode))
		fail("not a regular file");

	std::size_t total = 0;
	const std::size_t cap = std::min(buf.size(), key_file_max + 1);
	for (;;) {
		ssize_t n = ::read(fd.get(), buf.data() + total, cap - total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("cannot read: "s + std::strerror(errno));
		if (n == 0)
			break;
		total += static_cast<std::size_t>(n);
		if (total > key_file_max)
			fail("too large to be an Ed25519 key file (more than " +
			     std::to_string(key_file_max) + " bytes)");
	}
	if (total == 0)
		fail("empty file, not a key");
	return {reinterpret_cast<const char *>(buf.data()), total};
}

/* ------------------------------------------------------------------ */
/* PEM (RFC 7468)                                                      */

enum class pem_kind { pkcs8, openssh };

struct pem_block {
	pem_kind kind;
	std::string_view body;	/* base64 with line breaks */
};

constexpr std::string_view blanks = " \t\r\n";

/* The key format a PEM label announces; key_error for every other label. */
pem_kind classify_label(std::string_view label)
{
	if (label == "PRIVATE KEY")
		return pem_kind::pkcs8;
	if (label == "OPENSSH PRIVATE KEY")
		return pem_kind::openssh;
	if (label == "ENCRYPTED PRIVATE KEY")
		fail("encrypted PKCS#8 key (ENCRYPTED PRIVATE KEY); xmem-vault needs "
		     "an unencrypted key");
	if (label == "RSA PRIVATE KEY" || label == "EC PRIVATE KEY" ||
	    label == "DSA PRIVATE KEY")
		fail("not an Ed25519 key (PEM type '" + std::string(label) + "')");
	fail("unsupported PEM type '" + printable({reinterpret_cast<const std::uint8_t *>(label.data()),
						    label.size()}) +
	     "' (expected PRIVATE KEY or OPENSSH PRIVATE KEY)");
}

/* Finds the one PEM block of @text. key_error when there is not exactly one. */
pem_block parse_pem(std::string_view text)
{
	constexpr std::string_view begin = "-----BEGIN ";
	constexpr std::string_view dashes = "-----";

	std::size_t start = text.find_first_not_of(blanks);
	if (start == text.npos || text.substr(start, begin.size()) != begin)
		fail("not a PEM key file (no -----BEGIN line)");
	text.remove_prefix(start + begin.size());

	std::size_t label_end = text.find(dashes);
	std::size_t line_end = text.find('\n');
	if (label_end == text.npos || label_end > line_end)
		fail("malformed PEM: unterminated -----BEGIN line");
	std::string_view label = text.substr(0, label_end);
	text.remove_prefix(label_end + dashes.size());

	pem_kind kind = classify_label(label);

	std::string end_line = "-----END " + std::string(label) + "-----";
	std::size_t end = text.find(end_line);
	if (end == text.npos)
		fail("malformed PEM: no " + end_line + " line");
	std::string_view body = text.substr(0, end);
	if (text.substr(end + end_line.size()).find_first_not_of(blanks) != text.npos)
		fail("malformed PEM: data after the " + end_line + " line");
	return {kind, body};
}

/*
 * Decodes the base64 @body (RFC 4648 alphabet, padded, line breaks ignored)
 * into @out with sodium_base642bin(). Returns the decoded bytes.
 */
bytes decode_base64(std::string_view body, std::span<std::byte> out)
{
	auto *bin = reinterpret_cast<unsigned char *>(out.data());
	std::size_t len = 0;
	const char *end = nullptr;

	if (sodium_base642bin(bin, out.size(), body.data(), body.size(), " \t\r\n",
			      &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != body.data() + body.size())
		fail("malformed PEM: invalid base64");
	if (len == 0)
		fail("malformed PEM: no data between BEGIN and END");
	return {bin, len};
}

/* ------------------------------------------------------------------ */
/* PKCS#8 in DER (X.690 section 10, RFC 5958, RFC 8410)                */

/* What the file holds: the 32-byte seed and, if stored, the public key. */
struct raw_key {
	bytes seed;
	bytes pub;	/* empty when the file stores none */
};

/*
 * A strict DER reader over one level of nesting: definite lengths in
 * minimal form, at most two length bytes (a key is far below 64 KiB), every
 * element inside the data it is read from.
 */
class der_reader
{
public:
	explicit der_reader(bytes b) noexcept : rest_(b) {}

	[[nodiscard]] bool empty() const noexcept { return rest_.empty(); }
	[[nodiscard]] bool next_is(std::uint8_t tag) const noexcept
	{
		return !rest_.empty() && rest_[0] == tag;
	}

	/* The contents of the next element, which must have tag @tag. */
	bytes element(std::uint8_t tag, std::string_view what)
	{
		if (!next_is(tag))
			fail("malformed PKCS#8 key: expected " + std::string(what));
		rest_ = rest_.subspan(1);
		std::size_t n = length(what);
		if (n > rest_.size())
			fail("malformed PKCS#8 key: " + std::string(what) +
			     " runs past the end of the data");
		bytes contents = rest_.first(n);
		rest_ = rest_.subspan(n);
		return contents;
	}

private:
	std::size_t length(std::string_view what)
	{
		if (rest_.empty())
			fail("malformed PKCS#8 key: " + std::string(what) + " truncated");
		std::uint8_t first = rest_[0];
		rest_ = rest_.subspan(1);
		if (first < 0x80)
			return first;

		std::size_t count = first & 0x7f;
		if (count == 0 || count > 2 || count > rest_.size())
			fail("malformed PKCS#8 key: bad length of " + std::string(what));
		std::size_t n = 0;
		for (std::size_t i = 0; i < count; i++)
			n = (n << 8) | rest_[i];
		rest_ = rest_.subspan(count);
		if (n < 0x80 || (count == 2 && n < 0x100))
			fail("malformed PKCS#8 key: length of " + std::string(what) +
			     " not in minimal DER form");
		return n;
	}

	bytes rest_;
};

/* The contents octets of OIDs this code can name (X.690 section 8.19). */
constexpr std::string_view oid_ed25519 = "\x2b\x65\x70"sv; /* 1.3.101.112 */
constexpr std::pair<std::string_view, const char *> other_algorithms[] = {
	{"\x2b\x65\x6e"sv, "X25519"},
	{"\x2b\x65\x6f"sv, "X448"},
	{"\x2b\x65\x71"sv, "Ed448"},
	{"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"sv, "RSA"},
	{"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a"sv, "RSASSA-PSS"},
	{"\x2a\x86\x48\xce\x3d\x02\x01"sv, "EC"},
	{"\x2a\x86\x48\xce\x38\x04\x01"sv, "DSA"},
};

/* @oid in dotted form ("1.3.101.112"); "?" when it is not valid DER. */
std::string dotted_oid(bytes oid)
{
	if (oid.empty() || oid.size() > 32)
		return "?";
	std::string s = std::to_string(std::min(oid[0] / 40, 2)) + "." +
			std::to_string(oid[0] - std::min(oid[0] / 40, 2) * 40);
	std::uint64_t arc = 0;
	for (std::uint8_t b : oid.subspan(1)) {
		arc = (arc << 7) | (b & 0x7f);
		if (b & 0x80)
			continue;
		s += "." + std::to_string(arc);
		arc = 0;
	}
	return s;
}

/* key_error unless @oid is id-Ed25519; names the algorithm it is. */
void check_algorithm(bytes oid)
{
	if (equals(oid, oid_ed25519))
		return;
	for (const auto &[der, name] : other_algorithms)
		if (equals(oid, der))
			fail("not an Ed25519 key: PKCS#8 algorithm is "s + name);
	fail("not an Ed25519 key: PKCS#8 algorithm OID " + dotted_oid(oid));
}

/*
 * OneAsymmetricKey ::= SEQUENCE { version INTEGER (0 or 1),
 *   privateKeyAlgorithm SEQUENCE { OID 1.3.101.112 } (no parameters),
 *   privateKey OCTET STRING { CurvePrivateKey OCTET STRING (32 bytes) },
 *   attributes [0] IMPLICIT ... OPTIONAL,
 *   publicKey [1] IMPLICIT BIT STRING OPTIONAL (version 1 only) }
 */
raw_key parse_pkcs8(bytes der)
{
	der_reader outer(der);
	der_reader key(outer.element(0x30, "OneAsymmetricKey SEQUENCE"));
	if (!outer.empty())
		fail("malformed PKCS#8 key: data after the key");

	bytes version = key.element(0x02, "version INTEGER");
	if (version.size() != 1 || version[0] > 1)
		fail("malformed PKCS#8 key: unsupported version");

	der_reader alg(key.element(0x30, "AlgorithmIdentifier SEQUENCE"));
	check_algorithm(alg.element(0x06, "algorithm OID"));
	if (!alg.empty())
		fail("malformed PKCS#8 key: Ed25519 takes no algorithm parameters (RFC 8410)");

	der_reader priv(key.element(0x04, "privateKey OCTET STRING"));
	raw_key k{priv.element(0x04, "CurvePrivateKey OCTET STRING"), {}};
	if (k.seed.size() != 32 || !priv.empty())
		fail("malformed PKCS#8 key: Ed25519 private key is not 32 bytes");

	if (key.next_is(0xa0))
		key.element(0xa0, "attributes");
	if (key.next_is(0x81)) {
		if (version[0] != 1)
			fail("malformed PKCS#8 key: public key in a version 0 structure");
		bytes bits = key.element(0x81, "publicKey BIT STRING");
		if (bits.size() != 33 || bits[0] != 0)
			fail("malformed PKCS#8 key: public key is not 32 bytes");
		k.pub = bits.subspan(1);
	}
	if (!key.empty())
		fail("malformed PKCS#8 key: unexpected data after the private key");
	return k;
}

/* ------------------------------------------------------------------ */
/* openssh-key-v1 (OpenSSH PROTOCOL.key)                              */

/* Big-endian uint32 and length-prefixed strings (RFC 4251, section 5). */
class ssh_reader
{
public:
	explicit ssh_reader(bytes b) noexcept : rest_(b) {}

	[[nodiscard]] bool empty() const noexcept { return rest_.empty(); }
	[[nodiscard]] bytes rest() const noexcept { return rest_; }

	bytes take(std::size_t n)
	{
		if (n > rest_.size())
			fail("malformed OpenSSH key: truncated");
		bytes b = rest_.first(n);
		rest_ = rest_.subspan(n);
		return b;
	}

	std::uint32_t u32()
	{
		bytes b = take(4);
		return std::uint32_t{b[0]} << 24 | std::uint32_t{b[1]} << 16 |
		       std::uint32_t{b[2]} << 8 | b[3];
	}

	bytes string() { return take(u32()); }

private:
	bytes rest_;
};

constexpr std::string_view ssh_ed25519 = "ssh-ed25519";

/* string "ssh-ed25519", string public key (32 bytes). Returns the key. */
bytes parse_ssh_public(bytes blob)
{
	ssh_reader r(blob);
	bytes type = r.string();
	if (!equals(type, ssh_ed25519))
		fail("not an Ed25519 key: OpenSSH key type " + printable(type));
	bytes pub = r.string();
	if (pub.size() != 32 || !r.empty())
		fail("malformed OpenSSH key: Ed25519 public key is not 32 bytes");
	return pub;
}

/* padding 1, 2, 3... up to the cipher block size (8 for "none"). */
void check_padding(bytes pad)
{
	if (pad.size() >= 8)
		fail("malformed OpenSSH key: too much padding");
	for (std::size_t i = 0; i < pad.size(); i++)
		if (pad[i] != i + 1)
			fail("malformed OpenSSH key: bad padding");
}

/*
 * uint32 check, uint32 check, string "ssh-ed25519", string public key,
 * string secret key (seed || public key, 64 bytes), string comment, padding.
 */
raw_key parse_ssh_private(bytes priv, bytes pub)
{
	if (priv.size() % 8)
		fail("malformed OpenSSH key: private section not a multiple of 8 bytes");
	ssh_reader r(priv);
	std::uint32_t check1 = r.u32();
	std::uint32_t check2 = r.u32();
	if (check1 != check2)
		fail("malformed OpenSSH key: check integers differ");
	if (!equals(r.string(), ssh_ed25519))
		fail("malformed OpenSSH key: private key type is not ssh-ed25519");
	bytes pub2 = r.string();
	if (!std::equal(pub2.begin(), pub2.end(), pub.begin(), pub.end()))
		fail("malformed OpenSSH key: the two public keys differ");
	bytes sk = r.string();
	if (sk.size() != 64)
		fail("malformed OpenSSH key: Ed25519 secret key is not 64 bytes");
	bytes sk_pub = sk.subspan(32);
	if (!std::equal(sk_pub.begin(), sk_pub.end(), pub.begin(), pub.end()))
		fail("malformed OpenSSH key: secret key's public half differs");
	r.string(); /* comment */
	check_padding(r.rest());
	return {sk.first(32), pub};
}

/*
 * "openssh-key-v1\0", string cipher, string kdf, string kdf options,
 * uint32 key count (1), string public key blob, string private section.
 */
raw_key parse_openssh(bytes blob)
{
	constexpr std::string_view magic{"openssh-key-v1\0", 15};

	ssh_reader r(blob);
	if (blob.size() < magic.size() || !equals(r.take(magic.size()), magic))
		fail("not an openssh-key-v1 key (bad magic)");
	bytes cipher = r.string();
	bytes kdf = r.string();
	bytes kdf_options = r.string();
	if (!equals(cipher, "none"))
		fail("encrypted OpenSSH key (cipher " + printable(cipher) +
		     "); xmem-vault needs an unencrypted key");
	if (!equals(kdf, "none") || !kdf_options.empty())
		fail("encrypted OpenSSH key (kdf " + printable(kdf) + ")");
	std::uint32_t count = r.u32();
	if (count != 1)
		fail("OpenSSH key file holds " + std::to_string(count) +
		     " keys; exactly one expected");
	bytes pub = parse_ssh_public(r.string());
	bytes priv = r.string();
	if (!r.empty())
		fail("malformed OpenSSH key: data after the private section");
	return parse_ssh_private(priv, pub);
}

} // namespace

const char *to_string(key_format f) noexcept
{
	return f == key_format::pkcs8 ? "PKCS#8" : "OpenSSH";
}

key_format load_ed25519_key(const std::string &path,
			    std::span<std::byte, secret_key_size> out,
			    std::span<std::byte> scratch)
{
	if (scratch.size() < scratch_size)
		fail("internal error: scratch memory too small");
	wipe_guard wipe(scratch);
	constexpr std::size_t decoded_max = key_file_max / 4 * 3 + 3;
	static_assert(key_file_max + 1 + decoded_max + 32 <= scratch_size);
	std::span<std::byte> file_buf = scratch.first(key_file_max + 1);
	std::span<std::byte> decoded = scratch.subspan(key_file_max + 1, decoded_max);
	auto *pk = reinterpret_cast<unsigned char *>(decoded.data() + decoded.size());

	pem_block pem = parse_pem(read_key_file(path, file_buf));
	bytes der = decode_base64(pem.body, decoded);
	raw_key k = pem.kind == pem_kind::pkcs8 ? parse_pkcs8(der) : parse_openssh(der);

	auto *sk = reinterpret_cast<unsigned char *>(out.data());
	crypto_sign_seed_keypair(pk, sk, k.seed.data());
	if (!k.pub.empty() && sodium_memcmp(pk, k.pub.data(), 32) != 0) {
		sodium_memzero(sk, out.size());
		fail("the public key in the file does not match its private key");
	}
	return pem.kind == pem_kind::pkcs8 ? key_format::pkcs8 : key_format::openssh;
}

} // namespace vault
