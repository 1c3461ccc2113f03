// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * End to end: xmem-vault, xmem-sign, openssl and xmem-attack as a user runs
 * them. Program paths come from XMEM_VAULT, XMEM_SIGN and XMEM_ATTACK.
 */
#define BOOST_TEST_MODULE xmem_vault_e2e
#include <boost/test/unit_test.hpp>

#include "harness.hpp"

#include "../../examples/common/cli.hpp"

#include <xmem/channel.hpp>
#include <xmem/mapping.hpp>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* Entries of /proc/self/fd (the directory's own fd included, the same each time). */
std::size_t open_fd_count()
{
	std::size_t n = 0;
	for ([[maybe_unused]] const auto &e : e2e::fs::directory_iterator("/proc/self/fd"))
		n++;
	return n;
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
	/*
	 * 50 connections that never send, then an honest client. The vault
	 * that served one peer at a time (2 s each) made it wait 100 s; on
	 * xmem::server each peer has its own session and it is served at once.
	 */
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault v({"--key", key, "--socket", socket, "--timeout", "3000"});
	BOOST_REQUIRE(v.ready());

	std::vector<xmem::channel> silent;
	for (int i = 0; i < 50; i++)
		silent.push_back(xmem::channel::connect(socket));
	/*
	 * Counted, not timed: it signs within its own 2.5 s timeout, before
	 * any silent peer reached the vault's 3 s and was closed to make room.
	 */
	sign_and_verify(*this, "after-silent", {"--timeout", "2500"});
	BOOST_CHECK(contains(v.log(), ": granted 'ed25519'"));
	BOOST_CHECK(!contains(v.log(), ": no request ("));
	/* At their timeout they go, each logged. */
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
	while (count(v.log(), "timeout: no request (") < 50 &&
	       std::chrono::steady_clock::now() < deadline)
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	BOOST_TEST(count(v.log(), "timeout: no request (") == 50u);
}

BOOST_AUTO_TEST_CASE(sign_gives_up_on_a_full_backlog)
{
	/*
	 * A socket that never accepts, its backlog full: connect(2) blocks. The
	 * xmem-sign that set its timeout after connect() waited forever (the
	 * harness kills it at 60 s); SO_SNDTIMEO before connect() ends it.
	 */
	xmem::unique_fd l(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	struct sockaddr_un a = {};
	a.sun_family = AF_UNIX;
	std::strcpy(a.sun_path, socket.c_str());
	BOOST_REQUIRE(::bind(l.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
	BOOST_REQUIRE(::listen(l.get(), 0) == 0);
	std::vector<xmem::unique_fd> fillers;
	for (int i = 0; i < 8; i++) {
		xmem::unique_fd c(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
		if (::connect(c.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) < 0)
			break; /* EAGAIN: full */
		fillers.push_back(std::move(c));
	}
	const auto start = std::chrono::steady_clock::now();
	signing s = sign(*this, "backlog", {"--timeout", "300"});
	const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
				std::chrono::steady_clock::now() - start)
				.count();
	BOOST_TEST(s.sign.status == 1);
	BOOST_TEST(contains(s.sign.err, "no answer within 300 ms"), s.sign.err);
	BOOST_TEST(ms < 30000, "xmem-sign took " << ms << " ms"); /* it ends: the harness kills at 60 s */
	::unlink(socket.c_str());
}

BOOST_AUTO_TEST_CASE(sign_does_not_trust_a_server_of_another_uid,
		     *utf::precondition(running_as_root))
{
	/*
	 * Whoever creates the socket path first serves it. A "vault" of uid
	 * nobody, with its own unsealed key: xmem-sign (root) must refuse it
	 * before sending anything, unless told that uid with --server-uid.
	 */
	BOOST_REQUIRE(::chmod(dir.path().c_str(), 0777) == 0);
	int ready[2], report[2];
	BOOST_REQUIRE(::pipe2(ready, O_CLOEXEC) == 0 && ::pipe2(report, O_CLOEXEC) == 0);
	pid_t pid = ::fork();
	BOOST_REQUIRE(pid >= 0);
	if (pid == 0) {
		if (::setgid(nobody) < 0 || ::setuid(nobody) < 0)
			::_exit(1);
		xmem::listener l = xmem::listener::bind(socket, 0666);
		char c = 'r';
		[[maybe_unused]] ssize_t w = ::write(ready[1], &c, 1);
		/* Count the requests that reach us over two connections. */
		int requests = 0;
		for (int i = 0; i < 2; i++) {
			xmem::channel ch = l.accept();
			ch.set_timeout(std::chrono::milliseconds(3000));
			std::error_code ec;
			xmem::message m = ch.receive(ec);
			if (!ec && m.header.kind == xmem::wire::kind::request) {
				requests++;
				ch.send_error(ENOENT, m.header.name);
			}
		}
		w = ::write(report[1], &requests, sizeof(requests));
		::_exit(0);
	}
	::close(ready[1]);
	::close(report[1]);
	char c;
	BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);

	signing refused = sign(*this, "impostor");
	BOOST_TEST(refused.sign.status == 1);
	BOOST_TEST(contains(refused.sign.err, "not trusting"), refused.sign.err);
	BOOST_TEST(contains(refused.sign.err, "the server runs as uid 65534, expected uid 0 or root"),
		   refused.sign.err);
	BOOST_TEST(!exists(refused.pub));

	signing named = sign(*this, "named", {"--server-uid", std::to_string(nobody)});
	BOOST_TEST(named.sign.status == 1);
	BOOST_TEST(contains(named.sign.err, "No such file or directory"), named.sign.err);

	int requests = -1;
	BOOST_TEST(::read(report[0], &requests, sizeof(requests)) == sizeof(requests));
	/* The refused run's connection carried none; the one told --server-uid did. */
	BOOST_TEST(requests == 1);
	::close(ready[0]);
	::close(report[0]);
	int status;
	::waitpid(pid, &status, 0);
}

BOOST_AUTO_TEST_CASE(sighup_reloads_the_key)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault v({"--key", key, "--socket", socket});
	BOOST_REQUIRE(v.ready());
	signing first = sign_and_verify(*this, "first");
	e2e::openssl_key(key); /* a new key in the same file */
	::kill(v.pid(), SIGHUP);
	BOOST_REQUIRE(v.wait_for("SIGHUP: key reloaded from " + key, 5000));
	signing second = sign_and_verify(*this, "second");
	BOOST_TEST(read_text(first.pub) != read_text(second.pub));
	BOOST_TEST(public_key_der(*this, second.pub) ==
		   [&] {
			   e2e::result r = e2e::run({"openssl", "pkey", "-in", key, "-pubout",
						     "-outform", "DER", "-out", dir / "want.der"});
			   BOOST_REQUIRE_EQUAL(r.status, 0);
			   return read_text(dir / "want.der");
		   }());

	/* A file that no longer loads: the key from before goes on being served. */
	e2e::write_text(key, "not a key\n");
	::kill(v.pid(), SIGHUP);
	BOOST_REQUIRE(v.wait_for("SIGHUP: reload failed, serving the key loaded before", 5000));
	signing third = sign_and_verify(*this, "third");
	BOOST_TEST(read_text(third.pub) == read_text(second.pub));
	BOOST_TEST(v.stop(SIGTERM) == 0);
}

BOOST_AUTO_TEST_CASE(a_peer_writing_the_key_changes_nothing_for_the_next_peer)
{
	/*
	 * Review-peer finding 2: on memfd_secret (no seals, every fd O_RDWR)
	 * the vault served one memory to every peer, so peer A mapping it
	 * writable and zeroing it gave peer B zeros (or A's own key). Each
	 * grant is now a copy of its own; on memfd_exclusive the writable
	 * mapping itself is refused (F_SEAL_FUTURE_WRITE).
	 */
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	/* The 64 bytes the vault must hand out: seed (end of the PKCS#8 DER) || public key. */
	generate({"openssl", "pkey", "-in", key, "-outform", "DER", "-out", dir / "sk.der"});
	generate({"openssl", "pkey", "-in", key, "-pubout", "-outform", "DER", "-out",
		  dir / "pk.der"});
	const std::string want = last32(read_text(dir / "sk.der")) + last32(read_text(dir / "pk.der"));
	e2e::vault v({"--key", key, "--socket", socket});
	BOOST_REQUIRE(v.ready());

	const std::size_t fds_before = open_fd_count();
	{
		xmem::requirements req;
		req.size = 64;
		xmem::channel a = xmem::channel::connect(socket);
		xmem::received_memory ka = a.request_memory("ed25519", req);
		std::error_code ec;
		xmem::mapping rw = xmem::mapping::map(ka.memory, xmem::access::read_write, ec);
		if (ka.memory.backend() == xmem::backend::exclusive) {
			BOOST_TEST((ec == std::errc::operation_not_permitted), ec.message());
		} else {
			BOOST_REQUIRE_MESSAGE(!ec, "writable mapping of memfd_secret: " << ec.message());
			std::memset(rw.data(), 0, rw.size());
		}
		rw.unmap();

		/* A keeps its fd and connection open while B asks. */
		xmem::channel b = xmem::channel::connect(socket);
		xmem::received_memory kb = b.request_memory("ed25519", req);
		xmem::mapping ro = xmem::mapping::map(kb.memory, xmem::access::read_only);
		const std::string got(reinterpret_cast<const char *>(ro.data()), ro.size());
		BOOST_TEST(got == want, "peer B's key differs from the key file's after peer A wrote");
	}
	BOOST_TEST(open_fd_count() == fds_before);

	/* And a signer after both still signs with the file's key. */
	signing s = sign_and_verify(*this, "after-writer");
	BOOST_TEST(last32(public_key_der(*this, s.pub)) == want.substr(32));
	BOOST_TEST(v.stop(SIGTERM) == 0);
}

BOOST_AUTO_TEST_CASE(sign_requires_memfd_exclusive_when_asked)
{
	/*
	 * Review-peer finding 5: xmem-sign took memfd_secret silently. With
	 * --require-exclusive (the default where the kernel has
	 * memfd_exclusive) a memfd_secret key is refused with a message naming
	 * it; --allow-secret takes it; the two together are a usage error.
	 */
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault v({"--key", key, "--socket", socket});
	BOOST_REQUIRE(v.ready());
	const bool secret = contains(v.log(), "(backend memfd_secret,");

	signing strict = sign(*this, "strict", {"--require-exclusive"});
	if (secret) {
		BOOST_TEST(strict.sign.status == 1);
		BOOST_TEST(contains(strict.sign.err,
				    socket + ": the vault sent the key in memfd_secret memory; "
					     "accepted: memfd_exclusive (--require-exclusive)"),
			   strict.sign.err);
		BOOST_TEST(!exists(strict.sig));
	} else {
		BOOST_TEST(strict.sign.status == 0, strict.sign.err);
		BOOST_TEST(contains(strict.sign.err, "backend memfd_exclusive"), strict.sign.err);
	}
	sign_and_verify(*this, "lenient", {"--allow-secret"});
	/* The default: memfd_secret only where the kernel has no memfd_exclusive. */
	signing plain = sign(*this, "default");
	BOOST_TEST(plain.sign.status == 0, plain.sign.err);

	e2e::result both = e2e::run({e2e::program("XMEM_SIGN"), "--require-exclusive",
				     "--allow-secret", "--socket=s", "--in=i", "--sig=o", "--pub=p"});
	BOOST_TEST(both.status == 2);
	BOOST_TEST(contains(both.err, "--require-exclusive and --allow-secret exclude each other"),
		   both.err);
	BOOST_TEST(v.stop(SIGTERM) == 0);
}

BOOST_AUTO_TEST_CASE(sign_escapes_the_name_the_server_sends)
{
	/*
	 * Review-peer finding 6: a server of our own uid (it passes the
	 * SO_PEERCRED check) names its reply with terminal escapes and CR/LF;
	 * xmem-sign printed them raw. Its stderr must hold no byte below 0x20
	 * but '\n', and show the name escaped.
	 */
	const std::string evil = "\x1b[2J\x1b[31mVAULT OK\x1b]0;owned\x07\r\nxmem-sign: key verified";
	xmem::listener l = xmem::listener::bind(socket);
	const pid_t fake = ::fork();
	BOOST_REQUIRE(fake >= 0);
	if (fake == 0) {
		/* The fake server: one reply, then wait for the client to hang up. */
		try {
			xmem::channel ch = l.accept();
			xmem::message m = ch.receive();
			ch.send_memory(xmem::memory::create("fake", 64), evil);
			std::error_code ec;
			(void)ch.receive(ec);
		} catch (...) {
			::_exit(1);
		}
		::_exit(0);
	}
	signing s = sign(*this, "evil", {"--allow-secret"});
	::kill(fake, SIGKILL);
	::waitpid(fake, nullptr, 0);
	for (unsigned char c : s.sign.err)
		BOOST_TEST((c >= 0x20 || c == '\n'), "control byte " << int(c) << " in: "
							<< xmem_examples::escaped(s.sign.err));
	BOOST_TEST(contains(s.sign.err, "bytes '\\x1b[2J\\x1b[31mVAULT OK\\x1b]0;owned\\x07\\x0d"
					"\\x0axmem-sign: key verified', backend"),
		   xmem_examples::escaped(s.sign.err));
}

BOOST_AUTO_TEST_CASE(refusals_are_rate_limited_in_the_log)
{
	/*
	 * Review-peer finding 4: a uid that may not have the key wrote one log
	 * line per connect, unbounded. 10,000 refused connects (one after the
	 * other, each answered) may give at most 10 refusal lines and one
	 * summary per second they took (the vault's refusal_log: burst 10 per
	 * 1000 ms), and the summaries must account for every refusal not logged.
	 */
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	uid_t other = ::geteuid() == 4242 ? 4243 : 4242;
	e2e::vault v({"--key", key, "--socket", socket, "--allow-uid", std::to_string(other)});
	BOOST_REQUIRE(v.ready());
	const std::size_t lines_before = e2e::lines(v.log()).size();

	xmem::connect_options co;
	co.timeout = std::chrono::milliseconds(2000);
	constexpr int connects = 10000;
	auto refused_once = [&] {
		std::error_code ec;
		xmem::channel ch = xmem::channel::connect(socket, co, ec);
		if (ec)
			return ec;
		(void)ch.request_memory("ed25519", {}, ec);
		return ec;
	};
	int answered = 0;
	const auto start = std::chrono::steady_clock::now();
	for (int i = 0; i < connects; i++) {
		const std::error_code ec = refused_once();
		if (ec == std::errc::permission_denied)
			answered++;
		else
			BOOST_TEST_MESSAGE("connect " << i << ": " << ec.message());
		if (i % 500 == 0)
			(void)v.log(); /* keep its stderr pipe drained */
	}
	BOOST_TEST(answered == connects);
	const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
				     std::chrono::steady_clock::now() - start).count();
	/* One more after the interval: it brings the last summary. */
	std::this_thread::sleep_for(std::chrono::milliseconds(1100));
	BOOST_TEST((refused_once() == std::errc::permission_denied));
	BOOST_TEST(v.stop(SIGTERM) == 0);

	std::size_t logged = 0, summarised = 0, lines = 0;
	const std::string summary = "refusals: ";
	for (const std::string &l : e2e::lines(v.log())) {
		if (contains(l, ": refused (uid not allowed)"))
			logged++;
		const std::size_t at = l.find(summary);
		if (at != std::string::npos)
			summarised += std::stoul(l.substr(at + summary.size()));
		lines++;
	}
	lines -= lines_before;
	BOOST_TEST_MESSAGE(lines << " lines in " << seconds << " s: " << logged
				 << " refusals logged, " << summarised << " summarised");
	/* Per started second 10 lines and a summary, the last refusal and its summary, SIGTERM's. */
	const std::size_t bound = 11 * (static_cast<std::size_t>(seconds) + 1) + 3;
	BOOST_TEST(lines <= bound, lines << " log lines for " << connects + 1 << " refusals in "
					 << seconds << " s (at most " << bound << ")");
	BOOST_TEST(lines < static_cast<std::size_t>(connects) / 10);
	BOOST_TEST(logged + summarised == static_cast<std::size_t>(connects + 1),
		   logged << " logged + " << summarised << " summarised");
	BOOST_TEST(contains(v.log(), "not logged: uid " + std::to_string(::geteuid()) + " x"),
		   v.log().substr(0, 2000));
}

BOOST_AUTO_TEST_CASE(request_names_are_escaped_in_the_log)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault v({"--key", key, "--socket", socket});
	BOOST_REQUIRE(v.ready());
	xmem::channel ch = xmem::channel::connect(socket);
	ch.send_request("x\nxmem-vault: forged\x1b[0m");
	std::error_code ec;
	ch.receive_memory({}, ec);
	BOOST_TEST((ec == std::errc::no_such_file_or_directory), ec.message());
	BOOST_REQUIRE(v.wait_for("no key named", 2000));
	BOOST_TEST(contains(v.log(), "no key named 'x\\x0axmem-vault: forged\\x1b[0m'"), v.log());
	BOOST_TEST(!contains(v.log(), "\nxmem-vault: forged"));
}

BOOST_AUTO_TEST_CASE(socket_activation_and_readiness)
{
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	/* Our own NOTIFY_SOCKET, as systemd's: a datagram socket. */
	std::string notify_path = dir / "notify";
	xmem::unique_fd notify(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	struct sockaddr_un a = {};
	a.sun_family = AF_UNIX;
	std::strcpy(a.sun_path, notify_path.c_str());
	BOOST_REQUIRE(::bind(notify.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);

	e2e::vault v({"systemd-socket-activate", "--seqpacket", "-l", socket,
		      "-E", "NOTIFY_SOCKET=" + notify_path, e2e::program("XMEM_VAULT"),
		      "--key", key},
		     "Listening on");
	BOOST_REQUIRE_MESSAGE(v.ready(), "systemd-socket-activate: " << v.log());
	/* The first connection starts the vault, which takes the socket over. */
	sign_and_verify(*this, "activated");
	BOOST_TEST(contains(v.log(), "ready on " + socket + " (socket activation, backend "),
		   v.log());
	char buf[256] = {};
	struct timeval tv = {5, 0};
	::setsockopt(notify.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	const ssize_t n = ::recv(notify.get(), buf, sizeof(buf) - 1, 0);
	BOOST_TEST(n > 0);
	BOOST_TEST(std::string(buf).rfind("READY=1", 0) == 0u, buf);
	signing again = sign_and_verify(*this, "again");
	BOOST_TEST(v.stop(SIGTERM) == 0);
	BOOST_TEST(exists(socket), "the socket belongs to whoever made it");
}

BOOST_AUTO_TEST_CASE(command_lines)
{
	const std::string vault = e2e::program("XMEM_VAULT"), signer = e2e::program("XMEM_SIGN");
	for (const std::string &prog : {vault, signer}) {
		e2e::result help = e2e::run({prog, "--help"});
		BOOST_TEST(help.status == 0);
		BOOST_TEST(contains(help.out, "usage: "));
		e2e::result version = e2e::run({prog, "--version"});
		BOOST_TEST(version.status == 0);
		BOOST_TEST(contains(version.out, " 0."), version.out);
		e2e::result unknown = e2e::run({prog, "--frobnicate"});
		BOOST_TEST(unknown.status == 2);
		BOOST_TEST(contains(unknown.err, "unknown option '--frobnicate'"), unknown.err);
		e2e::result missing = e2e::run({prog, "--socket"});
		BOOST_TEST(missing.status == 2);
		BOOST_TEST(contains(missing.err, "option '--socket' needs a value"), missing.err);
		e2e::result stray = e2e::run({prog, "--help=yes"});
		BOOST_TEST(stray.status == 2);
		BOOST_TEST(contains(stray.err, "option '--help' takes no value"), stray.err);
	}
	e2e::result bad = e2e::run({vault, "--key=k", "--socket=s", "--timeout=soon"});
	BOOST_TEST(bad.status == 2);
	BOOST_TEST(contains(bad.err, "--timeout: 'soon' is not a decimal number"), bad.err);
	bad = e2e::run({vault, "--key", "k", "--socket-mode=999"});
	BOOST_TEST(contains(bad.err, "--socket-mode: '999' is not an octal mode"), bad.err);
	bad = e2e::run({signer, "--socket=s", "--in=i", "--sig=o"});
	BOOST_TEST(contains(bad.err, "--pub is required"), bad.err);
	bad = e2e::run({signer, "--server-uid=-1", "--socket=s", "--in=i", "--sig=o", "--pub=p"});
	BOOST_TEST(contains(bad.err, "--server-uid: '-1' is not a decimal number"), bad.err);

	/* --opt=value works as --opt value. */
	std::string key = dir / "key.pem";
	e2e::openssl_key(key);
	e2e::vault v({"--key=" + key, "--socket=" + socket, "--name=eq"});
	BOOST_REQUIRE(v.ready());
	sign_and_verify(*this, "eq", {"--name=eq", "--timeout=5000"});
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
