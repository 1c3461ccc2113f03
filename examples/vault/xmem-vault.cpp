// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmem-vault: holds one Ed25519 private key in exclusive memory and hands
 * its fd to allowed peers over a Unix socket, served by xmem::server
 * (libxmem-server): every peer has its own session, so idle, stalled or
 * hostile peers cost the others nothing.
 *
 *   xmem-vault --key FILE --socket PATH [--allow-uid UID]... [--name NAME]
 *              [--allow-ordinary] [--socket-mode OCTAL] [--timeout MS]
 *              [--max-peers N] [--help] [--version]
 *
 * Daemon conventions: socket activation (LISTEN_PID/LISTEN_FDS, one
 * AF_UNIX SOCK_SEQPACKET socket at fd 3, sd_listen_fds(3); --socket is then
 * not needed), readiness (READY=1 to $NOTIFY_SOCKET, sd_notify(3)), SIGHUP
 * reloads the key file (peers get the new key from then on; the old one
 * stays until its last reply is sent), SIGINT and SIGTERM end it cleanly
 * (a socket it bound is unlinked). Log lines go to stderr, names from
 * peers escaped, refusals rate-limited (refusal_log); "xmem-vault: ready on
 * PATH (...)" once it serves.
 * examples/vault/xmem-vault.service and .socket are a hardened unit.
 */

#include "../common/cli.hpp"
#include "keyfile.hpp"

#include <xmem/server.hpp>
#include <xmem/xmem.hpp>

#include <sodium.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef XMEM_VERSION
#define XMEM_VERSION "unknown"
#endif

using namespace std::chrono_literals;
using xmem_examples::usage_error;

namespace {

struct options {
	std::string key;
	std::string socket;	/* empty with socket activation */
	std::string name = "ed25519";
	std::vector<uid_t> allow;	/* empty: the vault's own uid */
	bool allow_ordinary = false;
	unsigned socket_mode = 0600;
	std::chrono::milliseconds timeout = 10000ms;	/* per peer: server_options::peer_timeout */
	std::size_t max_peers = 1024;
};

constexpr const char *usage_text =
	"usage: xmem-vault --key FILE --socket PATH [--allow-uid UID]... [--name NAME]\n"
	"                  [--allow-ordinary] [--socket-mode OCTAL] [--timeout MS]\n"
	"                  [--max-peers N] [--help] [--version]\n"
	"  --key FILE          Ed25519 private key (PKCS#8 PEM or OpenSSH, unencrypted)\n"
	"  --socket PATH       Unix socket to listen on (not needed with socket activation)\n"
	"  --allow-uid UID     a uid that may have the key (repeatable; default: our own)\n"
	"  --name NAME         the name peers ask for (default ed25519)\n"
	"  --allow-ordinary    serve ordinary memory when no exclusive backend exists\n"
	"  --socket-mode OCTAL mode of the socket file (default 0600)\n"
	"  --timeout MS        a peer's time to send each request and take each reply\n"
	"                      (default 10000)\n"
	"  --max-peers N       peers connected at once (default 1024; one uid: half)\n";

std::mutex log_mutex;

void log(const std::string &line)
{
	std::lock_guard<std::mutex> g(log_mutex);
	std::fprintf(stderr, "xmem-vault: %s\n", line.c_str());
}

/*
 * Refusal lines, rate-limited: at most burst lines per interval are logged
 * as they come; the rest are counted, per uid, and summarised in one line
 * ("refusals: N more in the last S ms not logged: uid U xN, ...") with the
 * first refusal of a later interval, or at exit (flush()). A uid that may
 * not connect could otherwise write a line per connect(2), unbounded (tens
 * of thousands a second: review-peer finding 4), as printk_ratelimit() and
 * journald's RateLimitBurst= bound theirs. Called from every event loop.
 */
class refusal_log
{
public:
	static constexpr unsigned burst = 10;
	static constexpr std::chrono::milliseconds interval{1000};

	void refused(uid_t uid, const std::string &line)
	{
		std::lock_guard<std::mutex> g(mutex_);
		const auto now = std::chrono::steady_clock::now();
		if (now - start_ >= interval) {
			summarise(now);
			start_ = now;
			logged_ = 0;
		}
		if (logged_ < burst) {
			logged_++;
			log(line);
			return;
		}
		suppressed_++;
		for (auto &[u, n] : per_uid_) {
			if (u == uid) {
				n++;
				return;
			}
		}
		if (per_uid_.size() < max_uids)
			per_uid_.emplace_back(uid, 1);
	}

	/* Logs what is still counted (at exit). */
	void flush()
	{
		std::lock_guard<std::mutex> g(mutex_);
		summarise(std::chrono::steady_clock::now());
	}

private:
	static constexpr std::size_t max_uids = 4; /* named in a summary; the rest are counted */

	void summarise(std::chrono::steady_clock::time_point now)
	{
		if (!suppressed_)
			return;
		const auto ms =
			std::chrono::duration_cast<std::chrono::milliseconds>(now - start_).count();
		std::string line = "refusals: " + std::to_string(suppressed_) + " more in the last " +
				   std::to_string(ms) + " ms not logged:";
		unsigned long named = 0;
		for (std::size_t i = 0; i < per_uid_.size(); i++) {
			line += (i ? ", uid " : " uid ") + std::to_string(per_uid_[i].first) + " x" +
				std::to_string(per_uid_[i].second);
			named += per_uid_[i].second;
		}
		if (named < suppressed_)
			line += ", other uids x" + std::to_string(suppressed_ - named);
		log(line);
		suppressed_ = 0;
		per_uid_.clear();
	}

	std::mutex mutex_;
	std::chrono::steady_clock::time_point start_{};
	unsigned logged_ = 0;
	unsigned long suppressed_ = 0;
	std::vector<std::pair<uid_t, unsigned long>> per_uid_;
};

refusal_log refusals;

/* Parses the command line with getopt_long(3). Throws usage_error. */
options parse_options(int argc, char **argv, bool &done)
{
	using namespace xmem_examples;
	enum { opt_key = 256, opt_socket, opt_name, opt_allow_uid, opt_allow_ordinary,
	       opt_socket_mode, opt_timeout, opt_max_peers, opt_help, opt_version };
	static const struct option longopts[] = {
		{"key", required_argument, nullptr, opt_key},
		{"socket", required_argument, nullptr, opt_socket},
		{"name", required_argument, nullptr, opt_name},
		{"allow-uid", required_argument, nullptr, opt_allow_uid},
		{"allow-ordinary", no_argument, nullptr, opt_allow_ordinary},
		{"socket-mode", required_argument, nullptr, opt_socket_mode},
		{"timeout", required_argument, nullptr, opt_timeout},
		{"max-peers", required_argument, nullptr, opt_max_peers},
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
		case opt_key: o.key = value; break;
		case opt_socket: o.socket = value; break;
		case opt_name: o.name = value; break;
		case opt_allow_uid:
			o.allow.push_back(static_cast<uid_t>(
				parse_number(value, 0xfffffffeUL, "--allow-uid")));
			break;
		case opt_allow_ordinary: o.allow_ordinary = true; break;
		case opt_socket_mode: {
			char *end = nullptr;
			errno = 0;
			const unsigned long m = std::strtoul(value.c_str(), &end, 8);
			if (value.empty() || *end || errno || m > 0777)
				throw usage_error("--socket-mode: '" + value +
						  "' is not an octal mode from 0 to 0777");
			o.socket_mode = static_cast<unsigned>(m);
			break;
		}
		case opt_timeout:
			o.timeout = std::chrono::milliseconds(
				parse_number(value, 3600000, "--timeout"));
			if (o.timeout.count() == 0)
				throw usage_error("--timeout: must be at least 1 ms");
			break;
		case opt_max_peers:
			o.max_peers = parse_number(value, 1000000, "--max-peers");
			if (o.max_peers == 0)
				throw usage_error("--max-peers: must be at least 1");
			break;
		case opt_help:
			std::fputs(usage_text, stdout);
			done = true;
			return o;
		case opt_version:
			std::printf("xmem-vault %s\n", XMEM_VERSION);
			done = true;
			return o;
		default:
			throw getopt_error(c, argv, optind, optopt);
		}
	}
	if (optind < argc)
		throw usage_error(std::string("unexpected argument '") + argv[optind] + "'");
	if (o.key.empty())
		throw usage_error("--key is required");
	if (o.name.empty() || o.name.size() > xmem::wire::name_max ||
	    o.name.find('/') != std::string::npos)
		throw usage_error("--name must be 1 to 63 bytes without '/'");
	if (o.allow.empty())
		o.allow.push_back(::geteuid());
	return o;
}

/* ------------------------------------------------------------------ */
/* The key                                                             */

struct vault_key {
	xmem::memory memory;
	xmem::mapping mapping;	/* read-only; keeps the key in /proc/PID/maps */
	std::string seals;	/* "none" or the F_SEAL_* names */
};

/*
 * Seals @mem against resizing and new writable mappings, where the backend
 * has seals. Returns the seals in place, as text.
 */
std::string seal_key(xmem::memory &mem)
{
	if (mem.backend() == xmem::backend::secret) {
		log("seals: unavailable (memfd_secret has none): each peer gets a copy of its own");
		return "none";
	}
	const xmem::seals wanted{xmem::seals::shrink | xmem::seals::grow |
				 xmem::seals::future_write | xmem::seals::seal};
	mem.add_seals(wanted);
	std::error_code ec;
	std::string text = xmem::to_string(mem.current_seals(ec));
	log("seals: " + text);
	return text;
}

/*
 * Creates the 64-byte key memory named @o.name and loads @o.key into it;
 * the file is read and decoded in a scratch region of exclusive memory that
 * is wiped and freed before this returns. Throws vault::key_error and
 * std::system_error (errc::no_backend, errc::memlock_limit, errno).
 */
vault_key load_key(const options &o)
{
	xmem::create_options copts;
	copts.allow_ordinary_fallback = o.allow_ordinary;

	vault_key k;
	k.memory = xmem::memory::create(o.name, vault::secret_key_size, copts);
	{
		xmem::memory scratch = xmem::memory::create("xmem-vault-scratch",
							    vault::scratch_size, copts);
		xmem::mapping scratch_map = xmem::mapping::map(scratch, xmem::access::read_write);
		xmem::mapping key_map = xmem::mapping::map(k.memory, xmem::access::read_write);
		vault::key_format f = vault::load_ed25519_key(
			o.key, key_map.bytes().first<vault::secret_key_size>(),
			scratch_map.bytes());
		log("loaded " + std::string(vault::to_string(f)) + " Ed25519 key from " + o.key);
	}
	log("backend: " + std::string(xmem::to_string(k.memory.backend())));
	if (k.memory.backend() == xmem::backend::ordinary)
		log("WARNING: ordinary memory: the key is readable by root and the kernel");
	k.seals = seal_key(k.memory);
	k.mapping = xmem::mapping::map(k.memory, xmem::access::read_only);
	return k;
}

/* ------------------------------------------------------------------ */
/* The control region for xmem-attack                                  */

/*
 * control_size bytes of ordinary memory (memfd_create(2)) named
 * control_name, mapped and filled with the control pattern: what an attack
 * that works reads. Throws std::system_error.
 */
class control_region
{
public:
	control_region()
	{
		using namespace xmem_examples;
		fd_ = xmem::unique_fd(::memfd_create(std::string(control_name).c_str(), MFD_CLOEXEC));
		if (!fd_ || ::ftruncate(fd_.get(), control_size) < 0)
			throw std::system_error(errno, std::generic_category(), "control region");
		void *p = ::mmap(nullptr, control_size, PROT_READ | PROT_WRITE, MAP_SHARED,
				 fd_.get(), 0);
		if (p == MAP_FAILED)
			throw std::system_error(errno, std::generic_category(), "control region mmap");
		addr_ = static_cast<char *>(p);
		for (std::size_t i = 0; i < control_size; i++)
			addr_[i] = control_byte(i);
	}
	control_region(const control_region &) = delete;
	control_region &operator=(const control_region &) = delete;
	~control_region()
	{
		if (addr_)
			::munmap(addr_, xmem_examples::control_size);
	}

private:
	xmem::unique_fd fd_;
	char *addr_ = nullptr;
};

/* ------------------------------------------------------------------ */
/* Daemon conventions                                                  */

/*
 * The socket systemd passed (sd_listen_fds(3): LISTEN_PID is ours,
 * LISTEN_FDS sockets from fd 3), adopted; an empty listener when none was
 * passed. The variables are unset so children do not take them for theirs.
 * Throws std::runtime_error for more than one socket or a bad one.
 */
xmem::listener inherited_listener()
{
	const char *pid = std::getenv("LISTEN_PID");
	const char *fds = std::getenv("LISTEN_FDS");
	if (!pid || !fds || std::strtol(pid, nullptr, 10) != ::getpid())
		return {};
	const long n = std::strtol(fds, nullptr, 10);
	::unsetenv("LISTEN_PID");
	::unsetenv("LISTEN_FDS");
	::unsetenv("LISTEN_FDNAMES");
	if (n != 1)
		throw std::runtime_error("socket activation: LISTEN_FDS=" + std::string(fds) +
					 ", expected exactly one socket");
	try {
		return xmem::listener::adopt(xmem::unique_fd(3));
	} catch (const std::system_error &e) {
		throw std::runtime_error(std::string("socket activation: ") + e.what());
	}
}

/*
 * Sends @state ("READY=1", ...) to $NOTIFY_SOCKET when set (sd_notify(3);
 * "@name" is an abstract socket). Errors are logged, never fatal.
 */
void notify(const std::string &state)
{
	const char *path = std::getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return;
	struct sockaddr_un addr = {};
	addr.sun_family = AF_UNIX;
	const std::size_t len = std::strlen(path);
	if (len >= sizeof(addr.sun_path) || (path[0] != '/' && path[0] != '@')) {
		log("NOTIFY_SOCKET: not a socket path: " + xmem_examples::escaped(path));
		return;
	}
	std::memcpy(addr.sun_path, path, len);
	if (path[0] == '@')
		addr.sun_path[0] = '\0';
	xmem::unique_fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	const socklen_t alen = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + len);
	if (!fd || ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
			    reinterpret_cast<struct sockaddr *>(&addr), alen) < 0)
		log("NOTIFY_SOCKET: " + std::string(std::strerror(errno)));
}

/* ------------------------------------------------------------------ */
/* Serving                                                             */

/* The key being served; SIGHUP replaces it. Read from every event loop. */
class key_slot
{
public:
	explicit key_slot(std::shared_ptr<const vault_key> k) : key_(std::move(k)) {}

	[[nodiscard]] std::shared_ptr<const vault_key> get() const
	{
		std::lock_guard<std::mutex> g(mutex_);
		return key_;
	}
	void set(std::shared_ptr<const vault_key> k)
	{
		std::lock_guard<std::mutex> g(mutex_);
		key_ = std::move(k);
	}

private:
	mutable std::mutex mutex_;
	std::shared_ptr<const vault_key> key_;
};

std::string describe(const xmem::peer_credentials &who)
{
	return "peer pid " + std::to_string(who.pid) + " uid " + std::to_string(who.uid);
}

/*
 * A reply with a copy of @k's 64 bytes of its own: a fresh memfd_secret,
 * filled from the vault's mapping of the master copy and unmapped here; the
 * server closes our fd once the reply is sent, so the peer holds the only
 * one. memfd_secret has no seals and every fd to it is O_RDWR: one memory
 * shared by every peer would let one allowed peer map it writable and
 * change the key every later peer signs with (review-peer finding 2). A
 * copy confines what a peer writes to its own. None of this blocks.
 * Throws std::system_error (errno: EMFILE, ENOMEM; errc::memlock_limit).
 */
xmem::reply grant_copy(const vault_key &k)
{
	xmem::create_options copts;
	copts.require = xmem::backend::secret;
	xmem::memory copy = xmem::memory::create(k.memory.name(), vault::secret_key_size, copts);
	{
		xmem::mapping m = xmem::mapping::map(copy, xmem::access::read_write);
		std::memcpy(m.data(), k.mapping.data(), vault::secret_key_size);
	}
	xmem::reply r;
	r.fixed_size = vault::secret_key_size;
	r.memory = copy.release();
	return r;
}

/*
 * The vault's answer to one request, on the server's event loops. The uid
 * was checked at connect (admit) and is checked again here; then the name.
 * Neither check waits on anything.
 */
xmem::reply answer(const xmem::request_context &c, const key_slot &keys, const options &o)
{
	const std::string peer = describe(c.cred);
	if (!xmem::uid_allowed(c.cred, o.allow)) {
		refusals.refused(c.cred.uid, peer + ": refused (uid not allowed)");
		return xmem::reply::refuse(EACCES);
	}
	if (c.request.name != o.name) {
		refusals.refused(c.cred.uid, peer + ": refused (no key named '" +
						     xmem_examples::escaped(c.request.name) + "')");
		return xmem::reply::refuse(ENOENT);
	}
	std::shared_ptr<const vault_key> k = keys.get();
	if (k->memory.backend() == xmem::backend::secret) {
		xmem::reply r;
		try {
			r = grant_copy(*k);
		} catch (const std::exception &e) {
			log(peer + ": refused (copying the key for it: " + std::string(e.what()) + ")");
			return xmem::reply::refuse(ENOMEM);
		}
		log(peer + ": granted '" + o.name + "' (its own copy)");
		return r;
	}
	log(peer + ": granted '" + o.name + "'");
	/* The reply holds the whole key (memory and mapping) until it is sent. */
	return xmem::reply::share(std::shared_ptr<const xmem::memory>(k, &k->memory));
}

/*
 * A new peer: one whose uid may not have the key is refused at once (sent
 * EACCES and closed), so it holds no slot while its request is awaited.
 */
int admit(const xmem::peer_info &p, const options &o)
{
	if (xmem::uid_allowed(p.cred, o.allow))
		return 0;
	refusals.refused(p.cred.uid, describe(p.cred) + ": refused (uid not allowed)");
	return EACCES;
}

/* A peer the server closed or refused: why, in one line. */
void log_peer_error(const xmem::log_event &e)
{
	if (e.what == "refused")
		return; /* admit() said why */
	log(describe(e.cred) + ": " + std::string(e.what) + " (" + e.error.message() + ")");
}

/*
 * Waits for SIGINT, SIGTERM and SIGHUP (blocked in every thread before the
 * server started its loops) and acts on them: stop, or reload the key.
 * Ends when @over is set and SIGTERM is sent to it.
 */
void signal_loop(const sigset_t &set, xmem::server &srv, key_slot &keys, const options &o,
		 const std::atomic<bool> &over)
{
	for (;;) {
		siginfo_t si;
		const int sig = ::sigwaitinfo(&set, &si);
		if (sig < 0)
			continue; /* EINTR */
		if (over)
			return;
		if (sig == SIGHUP) {
			notify("RELOADING=1");
			try {
				keys.set(std::make_shared<const vault_key>(load_key(o)));
				log("SIGHUP: key reloaded from " + o.key);
			} catch (const std::exception &e) {
				log("SIGHUP: reload failed, serving the key loaded before: " +
				    std::string(e.what()));
			}
			notify("READY=1");
			continue;
		}
		log(std::string(sigabbrev_np(sig)) + ": stopping");
		notify("STOPPING=1");
		srv.stop();
		return;
	}
}

/* Binds @o.socket; errc::address_in_use becomes a message of its own. */
xmem::listener listen_on(const options &o)
{
	try {
		return xmem::listener::bind(o.socket, o.socket_mode);
	} catch (const std::system_error &e) {
		if (e.code() == xmem::errc::address_in_use)
			throw std::runtime_error(o.socket +
						 ": another vault is already listening there");
		throw;
	}
}

int run(const options &o, const sigset_t &stop_set)
{
	key_slot keys(std::make_shared<const vault_key>(load_key(o)));
	control_region control;
	xmem::listener l = inherited_listener();
	const bool activated = l.fd().get() >= 0;
	if (!activated) {
		if (o.socket.empty())
			throw std::runtime_error("--socket is required without socket activation");
		l = listen_on(o);
	}
	const std::string where = l.path();

	xmem::server_options so;
	so.peer_timeout = o.timeout;
	so.max_peers = o.max_peers;
	xmem::server::callbacks cb;
	cb.on_request = [&keys, &o](const xmem::request_context &c) { return answer(c, keys, o); };
	cb.on_connect = [&o](const xmem::peer_info &p) { return admit(p, o); };
	cb.on_error = log_peer_error;
	xmem::server srv(std::move(l), std::move(cb), so);

	std::string allowed;
	for (uid_t uid : o.allow)
		allowed += (allowed.empty() ? "" : ",") + std::to_string(uid);
	log("allowed uids: " + allowed);
	log("server: " + std::string(xmem::to_string(srv.engine())) + ", " +
	    std::to_string(srv.event_loops()) + " event loop(s)" +
	    (srv.fallback_reason().empty() ? "" : " (" + srv.fallback_reason() + ")"));
	const auto k = keys.get();
	log("ready on " + where + (activated ? " (socket activation, backend " : " (backend ") +
	    std::string(xmem::to_string(k->memory.backend())) + ", " +
	    std::to_string(vault::secret_key_size) + " bytes, seals " + k->seals + ")");
	notify("READY=1\nSTATUS=serving " + o.name);

	std::atomic<bool> over{false};
	std::thread signals([&] { signal_loop(stop_set, srv, keys, o, over); });
	int status = 0;
	try {
		srv.run();
	} catch (const std::exception &e) {
		log(std::string("server: ") + e.what());
		status = 1;
	}
	over = true;
	::pthread_kill(signals.native_handle(), SIGTERM);
	signals.join();
	refusals.flush();
	return status;
}

/* One line for a failure to start. */
void report(const std::system_error &e)
{
	if (e.code() == xmem::errc::no_backend)
		log(std::string(e.what()) + "; memfd_secret is unavailable (Linux 5.14+, "
		    "secretmem.enable=1), --allow-ordinary accepts ordinary memory");
	else
		log(e.what());
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
	} catch (const std::exception &e) {
		std::fprintf(stderr, "xmem-vault: %s\n%s", e.what(), usage_text);
		return 2;
	}
	if (sodium_init() < 0) {
		log("sodium_init failed");
		return 1;
	}
	/* Blocked before any thread starts, so every thread inherits it and only sigwaitinfo sees them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
		log("pthread_sigmask failed");
		return 1;
	}
	try {
		return run(o, set);
	} catch (const vault::key_error &e) {
		log(o.key + ": " + e.what());
	} catch (const std::system_error &e) {
		report(e);
	} catch (const std::exception &e) {
		log(e.what());
	}
	return 1;
}
