// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmem-sign: asks an xmem-vault for its Ed25519 key, maps it read-only and
 * signs a file with it where it lies.
 *
 *   xmem-sign --socket PATH --in FILE --sig OUT.sig --pub OUT.pem
 *             [--name NAME] [--allow-ordinary] [--check-seals]
 *             [--require-exclusive | --allow-secret]
 *             [--server-uid UID] [--timeout MS] [--help] [--version]
 *
 * Before it sends or trusts anything it checks whom it reached: the
 * server's SO_PEERCRED uid must be --server-uid, by default its own or
 * root, so a process that created the socket path first cannot hand it a
 * key of its own to sign with. connect(2) gives up after --timeout
 * (SO_SNDTIMEO, set before connect) when the vault's backlog is full.
 *
 * OUT.sig gets the 64-byte raw Ed25519 signature, OUT.pem the public key as
 * a PEM SubjectPublicKeyInfo (RFC 8410, section 4), so that
 *   openssl pkeyutl -verify -pubin -inkey OUT.pem -rawin -in FILE -sigfile OUT.sig
 * accepts it. --check-seals also tries to map the key writable, which must
 * fail (EPERM) on the exclusive backend.
 *
 * On a kernel with memfd_exclusive the key must come in it: memfd_secret
 * has no seals and any holder of an fd to it can write the key others sign
 * with (requirements::accept_secret). --allow-secret accepts memfd_secret
 * there too; --require-exclusive demands memfd_exclusive on any kernel.
 */

#include "../common/cli.hpp"

#include <xmem/xmem.hpp>

#include <sodium.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <getopt.h>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>

#ifndef XMEM_VERSION
#define XMEM_VERSION "unknown"
#endif

using namespace std::chrono_literals;
using xmem_examples::usage_error;

namespace {

struct options {
	std::string socket;
	std::string in;
	std::string sig;
	std::string pub;
	std::string name = "ed25519";
	bool allow_ordinary = false;
	bool check_seals = false;
	/* Accept memfd_secret; unset: only where the kernel has no memfd_exclusive. */
	std::optional<bool> accept_secret;
	std::optional<uid_t> server_uid;	/* unset: our own uid or root */
	std::chrono::milliseconds timeout = 10000ms;
};

constexpr const char *usage_text =
	"usage: xmem-sign --socket PATH --in FILE --sig OUT.sig --pub OUT.pem\n"
	"                 [--name NAME] [--allow-ordinary] [--check-seals]\n"
	"                 [--require-exclusive | --allow-secret]\n"
	"                 [--server-uid UID] [--timeout MS] [--help] [--version]\n"
	"  --socket PATH     the vault's socket\n"
	"  --in FILE         the file to sign\n"
	"  --sig OUT.sig     where the 64-byte Ed25519 signature goes\n"
	"  --pub OUT.pem     where the public key goes (PEM SubjectPublicKeyInfo)\n"
	"  --name NAME       the key to ask for (default ed25519)\n"
	"  --allow-ordinary  accept a key in ordinary memory\n"
	"  --check-seals     also check that the key cannot be mapped writable\n"
	"  --require-exclusive  refuse a key not in memfd_exclusive memory (the default\n"
	"                    where the kernel has memfd_exclusive)\n"
	"  --allow-secret    accept a key in memfd_secret memory (no seals: writable by\n"
	"                    any holder) even where the kernel has memfd_exclusive\n"
	"  --server-uid UID  the uid the vault must run as (default: ours or root)\n"
	"  --timeout MS      for connecting and for each send and receive (default 10000)\n";
/* The seals a key on the exclusive backend must carry. */
constexpr xmem::seals required_seals{xmem::seals::shrink | xmem::seals::grow |
				     xmem::seals::future_write};

/* A failure worth one line; main() prints it. */
struct failure : std::runtime_error {
	using std::runtime_error::runtime_error;
};

void say(const std::string &line)
{
	std::fprintf(stderr, "xmem-sign: %s\n", line.c_str());
}

/* Parses the command line with getopt_long(3). Throws usage_error. */
options parse_options(int argc, char **argv, bool &done)
{
	using namespace xmem_examples;
	enum { opt_socket = 256, opt_in, opt_sig, opt_pub, opt_name, opt_allow_ordinary,
	       opt_check_seals, opt_require_exclusive, opt_allow_secret, opt_server_uid,
	       opt_timeout, opt_help, opt_version };
	static const struct option longopts[] = {
		{"socket", required_argument, nullptr, opt_socket},
		{"in", required_argument, nullptr, opt_in},
		{"sig", required_argument, nullptr, opt_sig},
		{"pub", required_argument, nullptr, opt_pub},
		{"name", required_argument, nullptr, opt_name},
		{"allow-ordinary", no_argument, nullptr, opt_allow_ordinary},
		{"check-seals", no_argument, nullptr, opt_check_seals},
		{"require-exclusive", no_argument, nullptr, opt_require_exclusive},
		{"allow-secret", no_argument, nullptr, opt_allow_secret},
		{"server-uid", required_argument, nullptr, opt_server_uid},
		{"timeout", required_argument, nullptr, opt_timeout},
		{"help", no_argument, nullptr, opt_help},
		{"version", no_argument, nullptr, opt_version},
		{nullptr, 0, nullptr, 0},
	};
	options o;
	done = false;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, ":", longopts, nullptr)) != -1) {
		const std::string value = optarg ? optarg : "";
		switch (c) {
		case opt_socket: o.socket = value; break;
		case opt_in: o.in = value; break;
		case opt_sig: o.sig = value; break;
		case opt_pub: o.pub = value; break;
		case opt_name: o.name = value; break;
		case opt_allow_ordinary: o.allow_ordinary = true; break;
		case opt_check_seals: o.check_seals = true; break;
		case opt_require_exclusive:
		case opt_allow_secret:
			if (o.accept_secret && *o.accept_secret != (c == opt_allow_secret))
				throw usage_error("--require-exclusive and --allow-secret exclude "
						  "each other");
			o.accept_secret = c == opt_allow_secret;
			break;
		case opt_server_uid:
			o.server_uid = static_cast<uid_t>(
				parse_number(value, 0xfffffffeUL, "--server-uid"));
			break;
		case opt_timeout:
			o.timeout = std::chrono::milliseconds(
				parse_number(value, 3600000, "--timeout"));
			if (o.timeout.count() == 0)
				throw usage_error("--timeout: must be at least 1 ms");
			break;
		case opt_help:
			std::fputs(usage_text, stdout);
			done = true;
			return o;
		case opt_version:
			std::printf("xmem-sign %s\n", XMEM_VERSION);
			done = true;
			return o;
		default:
			throw getopt_error(c, argv, optind, optopt);
		}
	}
	if (optind < argc)
		throw usage_error(std::string("unexpected argument '") + argv[optind] + "'");
	for (auto [value, flag] : {std::pair{&o.socket, "--socket"}, {&o.in, "--in"},
				   {&o.sig, "--sig"}, {&o.pub, "--pub"}})
		if (value->empty())
			throw usage_error(std::string(flag) + " is required");
	return o;
}

/* ------------------------------------------------------------------ */
/* Files                                                               */

/* All of @path (the message to sign; not secret). Throws failure. */
std::vector<unsigned char> read_file(const std::string &path)
{
	xmem::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
	if (!fd)
		throw failure(path + ": cannot open: " + std::strerror(errno));

	std::vector<unsigned char> data;
	std::array<unsigned char, 65536> buf;
	for (;;) {
		ssize_t n = ::read(fd.get(), buf.data(), buf.size());
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			throw failure(path + ": cannot read: " + std::strerror(errno));
		if (n == 0)
			return data;
		data.insert(data.end(), buf.begin(), buf.begin() + n);
	}
}

/* Writes @data to @path (created mode 0644, or truncated). Throws failure. */
void write_file(const std::string &path, const void *data, std::size_t size)
{
	xmem::unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
	if (!fd)
		throw failure(path + ": cannot create: " + std::strerror(errno));

	const auto *p = static_cast<const unsigned char *>(data);
	while (size > 0) {
		ssize_t n = ::write(fd.get(), p, size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			throw failure(path + ": cannot write: " + std::strerror(errno));
		p += n;
		size -= static_cast<std::size_t>(n);
	}
	if (::close(fd.release()) < 0)
		throw failure(path + ": cannot write: " + std::strerror(errno));
}

/*
 * The PEM SubjectPublicKeyInfo of the 32-byte Ed25519 public key @pk:
 * SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) pk }.
 */
std::string public_key_pem(const unsigned char *pk)
{
	constexpr unsigned char spki_prefix[] = {
		0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
	};
	std::array<unsigned char, sizeof(spki_prefix) + crypto_sign_PUBLICKEYBYTES> der;
	std::memcpy(der.data(), spki_prefix, sizeof(spki_prefix));
	std::memcpy(der.data() + sizeof(spki_prefix), pk, crypto_sign_PUBLICKEYBYTES);

	constexpr std::size_t b64_len =
		sodium_base64_ENCODED_LEN(der.size(), sodium_base64_VARIANT_ORIGINAL);
	std::array<char, b64_len> b64;
	sodium_bin2base64(b64.data(), b64.size(), der.data(), der.size(),
			  sodium_base64_VARIANT_ORIGINAL);
	return "-----BEGIN PUBLIC KEY-----\n" + std::string(b64.data()) +
	       "\n-----END PUBLIC KEY-----\n";
}

/* ------------------------------------------------------------------ */
/* The key                                                             */

/* Why the key's backend @b was refused under @req, and which option accepts it. */
std::string refused_backend(const xmem::requirements &req, xmem::backend b, const options &o)
{
	std::string accepted = "memfd_exclusive";
	if (req.accept_secret)
		accepted += " or memfd_secret";
	if (req.accept_ordinary)
		accepted += " or memfd_create";
	std::string hint;
	if (b == xmem::backend::secret)
		hint = o.accept_secret ? " (--require-exclusive)"
				       : " (this kernel has memfd_exclusive; --allow-secret "
					 "accepts memfd_secret, which has no seals)";
	else if (b == xmem::backend::ordinary)
		hint = " (--allow-ordinary accepts it)";
	return "the vault sent the key in " + std::string(xmem::to_string(b)) +
	       " memory; accepted: " + accepted + hint;
}

/* Asks the vault at @o.socket for @o.name; returns it verified. Throws failure. */
xmem::received_memory fetch_key(const options &o)
{
	xmem::requirements req;
	req.size = crypto_sign_SECRETKEYBYTES;
	req.accept_ordinary = o.allow_ordinary;
	const bool kernel_has_exclusive = xmem::probe_kernel().exclusive;
	req.accept_secret = o.accept_secret.value_or(!kernel_has_exclusive);

	xmem::connect_options co;
	co.timeout = o.timeout;
	co.server_uid = o.server_uid;
	try {
		/* Whom we reached is checked (SO_PEERCRED) before anything is sent. */
		xmem::channel ch = xmem::channel::connect(o.socket, co);
		std::error_code ec;
		xmem::received_memory got = ch.request_memory(o.name, req, ec);
		if (ec == xmem::errc::backend_not_accepted && got.backend)
			throw failure(o.socket + ": " + refused_backend(req, *got.backend, o));
		if (ec)
			throw std::system_error(ec, "requesting '" + xmem_examples::escaped(o.name) +
							    "'");
		return got;
	} catch (const std::system_error &e) {
		if (e.code() == xmem::errc::peer_not_allowed)
			throw failure(std::string("not trusting ") + e.what());
		if (e.code() == std::errc::timed_out)
			throw failure(o.socket + ": no answer within " +
				      std::to_string(o.timeout.count()) + " ms: " + e.what());
		if (e.code() == std::errc::permission_denied)
			throw failure(o.socket + ": the vault refused us (uid " +
				      std::to_string(::geteuid()) + " not allowed): " + e.what());
		throw failure(o.socket + ": " + e.what());
	}
}

/*
 * On the exclusive backend, the seals must keep the key fixed and read-only.
 * The name is the server's (any byte but NUL and '/'): escaped as the vault
 * escapes request names, so it cannot move the cursor or forge a line.
 */
void check_received(const xmem::received_memory &key)
{
	say("received " + std::to_string(key.size) + " bytes '" +
	    xmem_examples::escaped(key.name) + "', backend " +
	    std::string(xmem::to_string(key.memory.backend())) + ", seals " +
	    xmem::to_string(key.seals));
	if (key.memory.backend() == xmem::backend::exclusive &&
	    !key.seals.contains(required_seals))
		throw failure("key memory lacks seals " + xmem::to_string(required_seals));
	if (key.memory.backend() == xmem::backend::ordinary)
		say("WARNING: the key is in ordinary memory");
}

/*
 * Tries to map the key writable: sealed memory must refuse (EPERM).
 * memfd_secret has no seals, so there it is allowed; reported, not failed.
 */
void check_writable_mapping(const xmem::received_memory &key)
{
	std::error_code ec;
	xmem::mapping rw = xmem::mapping::map(key.memory, xmem::access::read_write, ec);
	if (ec) {
		say("writable mapping refused (" + ec.message() + ")");
		return;
	}
	rw.unmap();
	if (key.memory.backend() == xmem::backend::secret) {
		say("writable mapping allowed: memfd_secret has no seals");
		return;
	}
	throw failure("a writable mapping of sealed key memory succeeded");
}

/* Signs @msg with the key in @map; writes @o.sig and @o.pub. Throws failure. */
void sign(const options &o, const xmem::mapping &map, const std::vector<unsigned char> &msg)
{
	const auto *sk = reinterpret_cast<const unsigned char *>(map.data());
	const unsigned char *pk = sk + crypto_sign_SECRETKEYBYTES - crypto_sign_PUBLICKEYBYTES;
	std::array<unsigned char, crypto_sign_BYTES> sig;

	crypto_sign_detached(sig.data(), nullptr, msg.data(), msg.size(), sk);
	if (crypto_sign_verify_detached(sig.data(), msg.data(), msg.size(), pk) != 0)
		throw failure("the signature does not verify with the key's own public key");
	write_file(o.sig, sig.data(), sig.size());
	std::string pem = public_key_pem(pk);
	write_file(o.pub, pem.data(), pem.size());
	say("signed " + o.in + " (" + std::to_string(msg.size()) + " bytes): " + o.sig +
	    ", public key " + o.pub);
}

int run(const options &o)
{
	std::vector<unsigned char> msg = read_file(o.in);
	xmem::received_memory key = fetch_key(o);
	check_received(key);
	if (o.check_seals)
		check_writable_mapping(key);

	std::error_code ec;
	xmem::mapping map = xmem::mapping::map(key.memory, xmem::access::read_only, ec);
	if (ec)
		throw failure("cannot map the key read-only: " + ec.message());
	sign(o, map, msg);
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	options o;
	try {
		bool done;
		o = parse_options(argc, argv, done);
		if (done)
			return 0;
	} catch (const usage_error &e) {
		std::fprintf(stderr, "xmem-sign: %s\n%s", e.what(), usage_text);
		return 2;
	}
	if (sodium_init() < 0) {
		say("sodium_init failed");
		return 1;
	}
	try {
		return run(o);
	} catch (const std::exception &e) {
		say(e.what());
	}
	return 1;
}
