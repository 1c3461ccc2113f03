// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmem-vault: holds one Ed25519 private key in exclusive memory and hands
 * its fd to allowed peers over a Unix socket.
 *
 *   xmem-vault --key FILE --socket PATH [--allow-uid UID]... [--name NAME]
 *              [--allow-ordinary] [--socket-mode OCTAL] [--timeout MS]
 *
 * Log lines go to stderr; "xmem-vault: ready on PATH (...)" is printed once
 * the socket listens. SIGINT and SIGTERM end it cleanly (socket unlinked).
 */

#include "../common/cli.hpp"
#include "keyfile.hpp"

#include <xmem/xmem.hpp>

#include <sodium.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

using namespace std::chrono_literals;
using xmem_examples::usage_error;

namespace {

struct options {
	std::string key;
	std::string socket;
	std::string name = "ed25519";
	std::vector<uid_t> allow;	/* empty: the vault's own uid */
	bool allow_ordinary = false;
	unsigned socket_mode = 0600;
	std::chrono::milliseconds timeout = 2000ms;	/* per peer, for each send and receive */
};

constexpr const char *usage_text =
	"usage: xmem-vault --key FILE --socket PATH [--allow-uid UID]... [--name NAME]\n"
	"                  [--allow-ordinary] [--socket-mode OCTAL] [--timeout MS]\n";

void log(const std::string &line)
{
	std::fprintf(stderr, "xmem-vault: %s\n", line.c_str());
}

/* Applies the flag argv[@i] (and its value) to @o. Throws usage_error. */
void parse_flag(options &o, int argc, char **argv, int &i)
{
	using namespace xmem_examples;
	const std::string flag = argv[i];

	if (flag == "--key")
		o.key = option_value(argc, argv, i);
	else if (flag == "--socket")
		o.socket = option_value(argc, argv, i);
	else if (flag == "--name")
		o.name = option_value(argc, argv, i);
	else if (flag == "--allow-uid")
		o.allow.push_back(static_cast<uid_t>(
			parse_number(option_value(argc, argv, i), 0xfffffffeUL, "uid")));
	else if (flag == "--allow-ordinary")
		o.allow_ordinary = true;
	else if (flag == "--socket-mode")
		o.socket_mode = static_cast<unsigned>(std::stoul(option_value(argc, argv, i), nullptr, 8)) & 0777;
	else if (flag == "--timeout")
		o.timeout = std::chrono::milliseconds(
			parse_number(option_value(argc, argv, i), 3600000, "timeout"));
	else
		throw usage_error("unknown argument '" + flag + "'");
}

options parse_options(int argc, char **argv)
{
	options o;

	for (int i = 1; i < argc; i++)
		parse_flag(o, argc, argv, i);
	if (o.key.empty() || o.socket.empty())
		throw usage_error("--key and --socket are required");
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
		log("seals: unavailable (memfd_secret has none): a peer could map the key writable");
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
/* Serving                                                             */

/*
 * Blocks SIGINT and SIGTERM and returns a signalfd(2) that reports them, so
 * the poll loop sees them without races. Throws std::system_error.
 */
xmem::unique_fd block_stop_signals()
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (::sigprocmask(SIG_BLOCK, &set, nullptr) < 0)
		throw std::system_error(errno, std::generic_category(), "sigprocmask");
	xmem::unique_fd fd(::signalfd(-1, &set, SFD_CLOEXEC));
	if (!fd)
		throw std::system_error(errno, std::generic_category(), "signalfd");
	return fd;
}

/*
 * Answers one connected peer. The request is read before any answer, even
 * from a peer that will be refused: closing a socket with a message still
 * unread resets the connection (ECONNRESET), and the peer would never see
 * why it was refused. Throws std::system_error when the peer goes.
 */
void serve_peer(xmem::channel &ch, const vault_key &k, const options &o)
{
	ch.set_timeout(o.timeout);
	const xmem::peer_credentials who = ch.peer();
	const bool allowed = xmem::uid_allowed(who, o.allow);
	const std::string peer = "peer pid " + std::to_string(who.pid) + " uid " +
				 std::to_string(who.uid);

	std::error_code ec;
	xmem::message m = ch.receive(ec);
	if (ec) {
		log(peer + (allowed ? "" : ": refused (uid not allowed)") + ": no request (" +
		    ec.message() + ")");
		return;
	}
	if (!allowed) {
		log(peer + ": refused (uid not allowed)");
		ch.send_error(EACCES, m.header.name);
	} else if (m.header.kind != xmem::wire::kind::request) {
		log(peer + ": refused (not a request)");
		ch.send_error(EPROTO, m.header.name);
	} else if (m.header.name != o.name) {
		log(peer + ": refused (no key named '" + m.header.name + "')");
		ch.send_error(ENOENT, m.header.name);
	} else {
		ch.send_memory(k.memory, o.name);
		log(peer + ": granted '" + o.name + "'");
	}
}

/* Accepts one waiting peer and serves it; errors are logged, not thrown. */
void accept_one(xmem::listener &l, const vault_key &k, const options &o)
{
	std::error_code ec;
	xmem::channel ch = l.accept(ec);
	if (ec) {
		if (ec != std::errc::resource_unavailable_try_again &&
		    ec != std::errc::interrupted)
			log("accept: " + ec.message());
		return;
	}
	try {
		serve_peer(ch, k, o);
	} catch (const std::system_error &e) {
		log(std::string("peer: ") + e.what());
	}
}

/* Serves peers until SIGINT or SIGTERM arrives on @sigfd. Returns the exit status. */
int serve(xmem::listener &l, int sigfd, const vault_key &k, const options &o)
{
	if (::fcntl(l.fd().get(), F_SETFL, O_NONBLOCK) < 0)
		throw std::system_error(errno, std::generic_category(), "listener O_NONBLOCK");
	pollfd fds[2] = {{l.fd().get(), POLLIN, 0}, {sigfd, POLLIN, 0}};

	for (;;) {
		if (::poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log(std::string("poll: ") + std::strerror(errno));
			return 1;
		}
		if (fds[1].revents & POLLIN) {
			signalfd_siginfo si{};
			if (::read(sigfd, &si, sizeof(si)) == sizeof(si))
				log(std::string(sigabbrev_np(static_cast<int>(si.ssi_signo))) +
				    ": stopping");
			return 0;
		}
		if (fds[0].revents)
			accept_one(l, k, o);
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

int run(const options &o, int sigfd)
{
	vault_key k = load_key(o);
	control_region control;
	xmem::listener l = listen_on(o);

	std::string allowed;
	for (uid_t uid : o.allow)
		allowed += (allowed.empty() ? "" : ",") + std::to_string(uid);
	log("allowed uids: " + allowed);
	log("ready on " + o.socket + " (backend " +
	    std::string(xmem::to_string(k.memory.backend())) + ", " +
	    std::to_string(vault::secret_key_size) + " bytes, seals " + k.seals + ")");
	return serve(l, sigfd, k, o);
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
		o = parse_options(argc, argv);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "xmem-vault: %s\n%s", e.what(), usage_text);
		return 2;
	}
	if (sodium_init() < 0) {
		log("sodium_init failed");
		return 1;
	}
	try {
		xmem::unique_fd sigfd = block_stop_signals();
		return run(o, sigfd.get());
	} catch (const vault::key_error &e) {
		log(o.key + ": " + e.what());
	} catch (const std::system_error &e) {
		report(e);
	} catch (const std::exception &e) {
		log(e.what());
	}
	return 1;
}
