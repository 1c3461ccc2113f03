// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * End to end: xmem-vault, xmem-sign, openssl and xmem-attack as a user runs
 * them. Program paths come from XMEM_VAULT, XMEM_SIGN and XMEM_ATTACK.
 */
#define BOOST_TEST_MODULE xmem_vault_e2e
#include <boost/test/unit_test.hpp>

#include "harness.hpp"

#include <xmem/channel.hpp>

#include <cstring>
#include <fstream>
#include <iterator>

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace utf = boost::unit_test;
using e2e::fs::exists;

namespace {

constexpr uid_t nobody = 65534;

struct fixture {
	e2e::temp_dir dir;
	std::string socket = dir / "vault.sock";
};

bool contains(const std::string &text, const std::string &what)
{
	return text.find(what) != std::string::npos;
}

std::size_t count(const std::string &text, const std::string &what)
{
	std::size_t n = 0;
	for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
		n++;
	return n;
}

std::string read_text(const std::string &path)
{
	std::ifstream f(path, std::ios::binary);
	return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

boost::test_tools::assertion_result running_as_root(utf::test_unit_id)
{
	boost::test_tools::assertion_result r(::geteuid() == 0);
	r.message() << "needs root to run a peer under another uid";
	return r;
}

/* The result of one xmem-sign run, and where it wrote. */
struct signing {
	e2e::result sign;
	std::string msg, sig, pub;
};

/* Runs xmem-sign against @socket on a fresh file named after @tag. */
signing sign(const fixture &f, const std::string &tag, const std::vector<std::string> &extra = {},
	     std::optional<uid_t> uid = std::nullopt)
{
	signing s{{}, f.dir / (tag + ".txt"), f.dir / (tag + ".sig"), f.dir / (tag + ".pem")};
	e2e::write_text(s.msg, "a message to sign: " + tag + "\n");
	std::vector<std::string> argv{e2e::program("XMEM_SIGN"), "--socket", f.socket, "--in",
				      s.msg, "--sig", s.sig, "--pub", s.pub};
	argv.insert(argv.end(), extra.begin(), extra.end());
	s.sign = e2e::run(argv, uid);
	return s;
}

/* Signs through the vault and verifies with openssl pkeyutl; returns the signing. */
signing sign_and_verify(const fixture &f, const std::string &tag,
			const std::vector<std::string> &extra = {})
{
	signing s = sign(f, tag, extra);
	BOOST_REQUIRE_MESSAGE(s.sign.status == 0, "xmem-sign failed: " << s.sign.err);
	BOOST_CHECK(contains(s.sign.err, "backend memfd_"));
	BOOST_CHECK_EQUAL(e2e::fs::file_size(s.sig), 64u);

	e2e::result v = e2e::run({"openssl", "pkeyutl", "-verify", "-pubin", "-inkey", s.pub,
				  "-rawin", "-in", s.msg, "-sigfile", s.sig});
	BOOST_CHECK_MESSAGE(v.status == 0, "openssl pkeyutl -verify: " << v.out << v.err);
	BOOST_CHECK(contains(v.out, "Signature Verified Successfully"));
	return s;
}

/* The ready line promises the backend and the seals that go with it. */
void check_ready_line(e2e::vault &v, const std::string &socket)
{
	BOOST_REQUIRE_MESSAGE(v.ready(), "vault did not start: " << v.log());
	const std::string &log = v.log();
	const std::string ready = "ready on " + socket + " (backend ";
	BOOST_CHECK(contains(log, ready + "memfd_secret, 64 bytes, seals none)") ||
		    contains(log, ready + "memfd_exclusive, 64 bytes, seals "));
}

/* xmem-sign --check-seals: a writable mapping fails when sealed, is reported when not. */
void check_writable_mapping(const signing &s)
{
	if (contains(s.sign.err, "backend memfd_exclusive"))
		BOOST_CHECK(contains(s.sign.err, "writable mapping refused"));
	else
		BOOST_CHECK(contains(s.sign.err, "writable mapping allowed: memfd_secret has no seals"));
}

/* Raw public key bytes (the last 32) of a DER or decoded blob. */
std::string last32(const std::string &blob)
{
	BOOST_REQUIRE_GE(blob.size(), 32u);
	return blob.substr(blob.size() - 32);
}

/* The base64 blob of an OpenSSH public key line, decoded with openssl. */
std::string openssh_public_blob(const fixture &f, const std::string &pub_path)
{
	std::string line = read_text(pub_path);
	std::size_t a = line.find(' '), b = line.find(' ', a + 1);
	e2e::write_text(f.dir / "blob.b64", line.substr(a + 1, b - a - 1));
	e2e::result r = e2e::run({"openssl", "base64", "-d", "-A", "-in", f.dir / "blob.b64",
				  "-out", f.dir / "blob.bin"});
	BOOST_REQUIRE_EQUAL(r.status, 0);
	return read_text(f.dir / "blob.bin");
}

/* The DER of a PEM public key, with openssl. */
std::string public_key_der(const fixture &f, const std::string &pem)
{
	e2e::result r = e2e::run({"openssl", "pkey", "-pubin", "-in", pem, "-outform", "DER",
				  "-out", f.dir / "pub.der"});
	BOOST_REQUIRE_EQUAL(r.status, 0);
	return read_text(f.dir / "pub.der");
}

/*
 * Starts a vault on @key, which must fail: one line on stderr that names
 * @key and says @reason, a non-zero status, and no socket file.
 */
void check_bad_key(const fixture &f, const std::string &key, const std::string &reason)
{
	e2e::result r = e2e::run({e2e::program("XMEM_VAULT"), "--key", key, "--socket", f.socket});
	std::vector<std::string> lines = e2e::lines(r.err);
	BOOST_CHECK_NE(r.status, 0);
	BOOST_REQUIRE_EQUAL(lines.size(), 1u);
	BOOST_CHECK_MESSAGE(contains(lines[0], key + ": "), "line does not name the file: " << lines[0]);
	BOOST_CHECK_MESSAGE(contains(lines[0], reason), "'" << reason << "' not in: " << lines[0]);
	BOOST_CHECK(!exists(f.socket));
}

/* Runs a tool that generates a key; requires success. */
void generate(const std::vector<std::string> &argv)
{
	e2e::result r = e2e::run(argv);
	BOOST_REQUIRE_MESSAGE(r.status == 0, argv[0] << ": " << r.err);
}

/* Writes a PEM file of @label around the base64 of @der. */
void write_pem(const fixture &f, const std::string &path, const std::string &label,
	       const std::string &der)
{
	e2e::write_text(f.dir / "tmp.bin", der);
	e2e::result r = e2e::run({"openssl", "base64", "-in", f.dir / "tmp.bin"});
	BOOST_REQUIRE_EQUAL(r.status, 0);
	e2e::write_text(path, "-----BEGIN " + label + "-----\n" + r.out + "-----END " + label + "-----\n");
}

/* The binary contents of a PEM file's body, with openssl. */
std::string pem_body(const fixture &f, const std::string &path)
{
	std::vector<std::string> l = e2e::lines(read_text(path));
	std::string b64;
	for (std::size_t i = 1; i + 1 < l.size(); i++)
		b64 += l[i] + "\n";
	e2e::write_text(f.dir / "tmp.b64", b64);
	e2e::result r = e2e::run({"openssl", "base64", "-d", "-in", f.dir / "tmp.b64",
				  "-out", f.dir / "tmp.bin"});
	BOOST_REQUIRE_EQUAL(r.status, 0);
	return read_text(f.dir / "tmp.bin");
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(vault, fixture)

BOOST_AUTO_TEST_CASE(sign_verify_pkcs8_key)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault v({"--key", key, "--socket", socket});
	check_ready_line(v, socket);

	signing s = sign_and_verify(*this, "pkcs8", {"--check-seals"});
	check_writable_mapping(s);

	/* The vault holds the file's key: same public key as openssl derives. */
	generate({"openssl", "pkey", "-in", key, "-pubout", "-out", dir / "expected.pem"});
	BOOST_CHECK_EQUAL(read_text(s.pub), read_text(dir / "expected.pem"));
	BOOST_CHECK_EQUAL(v.stop(SIGTERM), 0);
	BOOST_CHECK(contains(v.log(), "granted 'ed25519'"));
}

BOOST_AUTO_TEST_CASE(sign_verify_openssh_key)
{
	std::string key = dir / "id_ed25519";
	e2e::openssh_key(key);
	e2e::vault v({"--key", key, "--socket", socket, "--name", "deploy"});
	check_ready_line(v, socket);

	signing s = sign_and_verify(*this, "openssh", {"--name", "deploy", "--check-seals"});
	check_writable_mapping(s);

	/* The vault holds the file's key: same public key as id_ed25519.pub. */
	BOOST_CHECK(last32(public_key_der(*this, s.pub)) ==
		    last32(openssh_public_blob(*this, key + ".pub")));
	BOOST_CHECK_EQUAL(v.stop(SIGTERM), 0);
	BOOST_CHECK(contains(v.log(), "loaded OpenSSH Ed25519 key"));
}

BOOST_AUTO_TEST_CASE(unknown_name_refused)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault v({"--key", key, "--socket", socket});
	BOOST_REQUIRE(v.ready());

	signing s = sign(*this, "other", {"--name", "other"});
	BOOST_CHECK_NE(s.sign.status, 0);
	BOOST_CHECK(!exists(s.sig));
	sign_and_verify(*this, "after");
	BOOST_CHECK(contains(v.log(), "refused (no key named 'other')"));
}

BOOST_AUTO_TEST_CASE(refused_uid_not_in_allow_list)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	uid_t other = ::geteuid() == 4242 ? 4243 : 4242;
	e2e::vault v({"--key", key, "--socket", socket, "--allow-uid", std::to_string(other)});
	BOOST_REQUIRE(v.ready());

	for (const char *tag : {"first", "second"}) {
		signing s = sign(*this, tag);
		BOOST_CHECK_NE(s.sign.status, 0);
		BOOST_CHECK(contains(s.sign.err, "refused"));
		BOOST_CHECK(!exists(s.sig));
	}
	/* Still serving: both peers were answered, and it is alive. */
	BOOST_CHECK_EQUAL(count(v.log(), ": refused (uid not allowed)"), 2u);
	BOOST_CHECK_EQUAL(::kill(v.pid(), 0), 0);
	BOOST_CHECK_EQUAL(v.stop(SIGTERM), 0);
}

BOOST_AUTO_TEST_CASE(refused_peer_then_allowed_peer_served,
		     *utf::precondition(running_as_root))
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::fs::permissions(dir.path(), e2e::fs::perms(0711));
	e2e::vault v({"--key", key, "--socket", socket, "--socket-mode", "0666"});
	BOOST_REQUIRE(v.ready());

	signing refused = sign(*this, "nobody", {}, nobody);
	BOOST_CHECK_NE(refused.sign.status, 0);
	BOOST_CHECK_MESSAGE(contains(refused.sign.err, "the vault refused us"), refused.sign.err);
	BOOST_CHECK(contains(v.log(), "uid " + std::to_string(nobody) + ": refused (uid not allowed)"));

	sign_and_verify(*this, "root");
	BOOST_CHECK(contains(v.log(), "uid 0: granted"));
}

BOOST_AUTO_TEST_CASE(silent_client_does_not_block)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault v({"--key", key, "--socket", socket, "--timeout", "500"});
	BOOST_REQUIRE(v.ready());

	xmem::channel silent = xmem::channel::connect(socket);
	sign_and_verify(*this, "after-silent");
	BOOST_CHECK(contains(v.log(), ": no request ("));
	BOOST_CHECK(contains(v.log(), ": granted 'ed25519'"));
}

BOOST_AUTO_TEST_CASE(bad_key_missing)
{
	check_bad_key(*this, dir / "no-such-key.pem", "cannot open: No such file or directory");
}

BOOST_AUTO_TEST_CASE(bad_key_unreadable)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::fs::permissions(key, e2e::fs::perms::none);
	if (::geteuid() != 0) {
		check_bad_key(*this, key, "cannot open: Permission denied");
		return;
	}
	/* Root reads any file: run the vault as nobody instead. */
	e2e::fs::permissions(dir.path(), e2e::fs::perms(0711));
	e2e::result r = e2e::run({e2e::program("XMEM_VAULT"), "--key", key, "--socket", socket},
				 nobody);
	if ((r.status == 126 || r.status == 127) && r.err.empty()) {
		BOOST_TEST_MESSAGE("skipped: running as root and the vault cannot run as nobody");
		return;
	}
	std::vector<std::string> lines = e2e::lines(r.err);
	BOOST_CHECK_NE(r.status, 0);
	BOOST_REQUIRE_EQUAL(lines.size(), 1u);
	BOOST_CHECK(contains(lines[0], key + ": cannot open: Permission denied"));
	BOOST_CHECK(!exists(socket));
}

BOOST_AUTO_TEST_CASE(bad_key_malformed)
{
	std::string good = dir / "good.pem", ssh = dir / "id_ed25519";
	e2e::openssl_key(good);
	e2e::openssh_key(ssh);
	std::string der = pem_body(*this, good);
	std::string blob = pem_body(*this, ssh);

	e2e::write_text(dir / "garbage", "this is not a key\n");
	check_bad_key(*this, dir / "garbage", "not a PEM key file");
	e2e::write_text(dir / "empty", "");
	check_bad_key(*this, dir / "empty", "empty file");
	e2e::fs::create_directory(dir / "a-directory");
	check_bad_key(*this, dir / "a-directory", "not a regular file");
	e2e::write_text(dir / "der", der);
	check_bad_key(*this, dir / "der", "not a PEM key file");
	e2e::write_text(dir / "base64.pem", "-----BEGIN PRIVATE KEY-----\n"
					    "MC4C*AEAMAUGAytlcAQiBCA=\n"
					    "-----END PRIVATE KEY-----\n");
	check_bad_key(*this, dir / "base64.pem", "invalid base64");
	e2e::write_text(dir / "no-end.pem", read_text(good).substr(0, 40));
	check_bad_key(*this, dir / "no-end.pem", "malformed PEM");
	write_pem(*this, dir / "short-der.pem", "PRIVATE KEY", der.substr(0, der.size() - 5));
	check_bad_key(*this, dir / "short-der.pem", "malformed PKCS#8 key");
	write_pem(*this, dir / "long-der.pem", "PRIVATE KEY", der + std::string("\x05\x00", 2));
	check_bad_key(*this, dir / "long-der.pem", "malformed PKCS#8 key: data after the key");
	write_pem(*this, dir / "short-ssh", "OPENSSH PRIVATE KEY", blob.substr(0, blob.size() - 40));
	check_bad_key(*this, dir / "short-ssh", "malformed OpenSSH key");
	std::string bad_magic = blob;
	bad_magic[0] = 'X';
	write_pem(*this, dir / "magic-ssh", "OPENSSH PRIVATE KEY", bad_magic);
	check_bad_key(*this, dir / "magic-ssh", "not an openssh-key-v1 key");
	e2e::write_text(dir / "huge.pem", read_text(good) + std::string(9000, '\n'));
	check_bad_key(*this, dir / "huge.pem", "too large to be an Ed25519 key file");
}

BOOST_AUTO_TEST_CASE(memlock_limit_reported, *utf::precondition(running_as_root))
{
	/* Root has CAP_IPC_LOCK, which lifts the limit: run the vault as nobody. */
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::fs::permissions(key, e2e::fs::perms(0644));
	e2e::fs::permissions(dir.path(), e2e::fs::perms(0711));
	e2e::result r = e2e::run({"prlimit", "--memlock=0:0", e2e::program("XMEM_VAULT"),
				  "--key", key, "--socket", socket}, nobody);
	std::vector<std::string> lines = e2e::lines(r.err);
	BOOST_CHECK_EQUAL(r.status, 1);
	BOOST_REQUIRE_EQUAL(lines.size(), 1u);
	BOOST_CHECK(contains(lines[0], "RLIMIT_MEMLOCK"));
	BOOST_CHECK(!exists(socket));
}

BOOST_AUTO_TEST_CASE(bad_key_encrypted_pkcs8)
{
	std::string key = dir / "encrypted.pem";
	generate({"openssl", "genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:secret",
		  "-out", key});
	check_bad_key(*this, key, "encrypted PKCS#8 key");
}

BOOST_AUTO_TEST_CASE(bad_key_encrypted_openssh)
{
	std::string key = dir / "id_encrypted";
	generate({"ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", key});
	check_bad_key(*this, key, "encrypted OpenSSH key (cipher aes256-ctr)");
}

BOOST_AUTO_TEST_CASE(bad_key_rsa)
{
	std::string pem = dir / "rsa.pem", ssh = dir / "id_rsa";
	generate({"openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024",
		  "-out", pem});
	check_bad_key(*this, pem, "not an Ed25519 key: PKCS#8 algorithm is RSA");
	generate({"ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", ssh});
	check_bad_key(*this, ssh, "not an Ed25519 key: OpenSSH key type ssh-rsa");
}

BOOST_AUTO_TEST_CASE(bad_key_x25519)
{
	std::string key = dir / "x25519.pem";
	generate({"openssl", "genpkey", "-algorithm", "x25519", "-out", key});
	check_bad_key(*this, key, "not an Ed25519 key: PKCS#8 algorithm is X25519");
}

BOOST_AUTO_TEST_CASE(live_vault_socket_refused)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault first({"--key", key, "--socket", socket});
	BOOST_REQUIRE(first.ready());

	e2e::vault second({"--key", key, "--socket", socket});
	BOOST_CHECK(!second.ready());
	BOOST_CHECK_NE(second.stop(SIGTERM), 0);
	BOOST_CHECK(contains(second.log(), socket + ": another vault is already listening there"));

	/* The first vault and its socket are untouched. */
	BOOST_CHECK(exists(socket));
	sign_and_verify(*this, "first-still-serves");
}

BOOST_AUTO_TEST_CASE(stale_socket_replaced)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);

	/* A socket file nobody listens on: bound, then closed without unlink. */
	int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	BOOST_REQUIRE_GE(fd, 0);
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	std::strncpy(addr.sun_path, socket.c_str(), sizeof(addr.sun_path) - 1);
	BOOST_REQUIRE_EQUAL(::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
	::close(fd);
	BOOST_REQUIRE(exists(socket));

	e2e::vault v({"--key", key, "--socket", socket});
	check_ready_line(v, socket);
	sign_and_verify(*this, "after-stale");
}

BOOST_AUTO_TEST_CASE(stop_signals_unlink_socket)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);

	for (int sig : {SIGTERM, SIGINT}) {
		e2e::vault v({"--key", key, "--socket", socket});
		BOOST_REQUIRE(v.ready());
		BOOST_CHECK(exists(socket));
		BOOST_CHECK_EQUAL(v.stop(sig), 0);
		BOOST_CHECK(contains(v.log(), ": stopping"));
		BOOST_CHECK(!exists(socket));
	}
}

BOOST_AUTO_TEST_CASE(attacker_check)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault v({"--key", key, "--socket", socket});
	BOOST_REQUIRE(v.ready());

	e2e::result r = e2e::run({e2e::program("XMEM_ATTACK"), "--pid", std::to_string(v.pid())});
	BOOST_CHECK_MESSAGE(r.status == 0, r.out << r.err);
	BOOST_CHECK_EQUAL(count(r.out, "refused ("), 2u);
	BOOST_CHECK_EQUAL(count(r.out, "succeeded, pattern matched"), 2u);
	BOOST_CHECK(contains(r.out, "PASS"));
}

BOOST_AUTO_TEST_SUITE_END()
