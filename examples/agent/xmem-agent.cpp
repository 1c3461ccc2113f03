// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmem-agent: an ssh-agent (draft-miller-ssh-agent, OpenSSH PROTOCOL.agent)
 * whose private keys live only in exclusive memory (memfd_exclusive, or
 * memfd_secret on a stock kernel), for the OpenSSH clients people already
 * use (SSH_AUTH_SOCK: ssh, ssh-add, ssh-keygen -Y).
 *
 *   xmem-agent [-c | -s] [-Dd] [-a SOCKET] [-t LIFE]
 *   xmem-agent [-c | -s] -k
 *
 * Two processes per key added (docs/agent.md):
 *  - the signer (this process): the socket, the event loop serving every
 *    client at once (epoll, non-blocking), the keys (each a page of
 *    exclusive memory it maps), signing (libsodium), lock state. It never
 *    parses a private key: ADD_IDENTITY bodies go, as the fd of the
 *    exclusive memory they were received into, to
 *  - a parser (parser.hpp), a fresh sandboxed process per ADD request,
 *    which returns the key as a sealed page of exclusive memory
 *    (SCM_RIGHTS, libxmem's verified receive) or a refusal.
 *
 * Every message body is received straight into an exclusive mapping: a
 * page per client for bodies up to 4 KiB, a region of its own for larger
 * ones and for every ADD request. Only the 5-byte frame header (length and
 * type) passes through ordinary memory. Key pages are wiped with
 * sodium_memzero() when removed, expired, replaced or at exit.
 */

#include "../common/cli.hpp"
#include "agent_proto.hpp"
#include "key_record.hpp"
#include "parser.hpp"
#include "sandbox.hpp"

#include <xmem/xmem.hpp>

#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef XMEM_VERSION
#define XMEM_VERSION "unknown"
#endif

using namespace std::chrono_literals;
using namespace xmem::agent;
using xmem_examples::escaped;
using xmem_examples::usage_error;
using steady = std::chrono::steady_clock;

namespace {

constexpr const char *usage_text =
	"usage: xmem-agent [-c | -s] [-Dd] [-a SOCKET] [-t LIFE]\n"
	"       xmem-agent [-c | -s] -k\n"
	"  -a SOCKET  listen on SOCKET (default $TMPDIR/xmem-agent-XXXXXX/agent.PID)\n"
	"  -c         print C-shell commands (default when $SHELL ends in csh)\n"
	"  -s         print Bourne shell commands\n"
	"  -D         stay in the foreground\n"
	"  -d         debug: stay in the foreground and log every request to stderr\n"
	"  -k         kill the agent named by $SSH_AGENT_PID\n"
	"  -t LIFE    default lifetime of added keys (seconds, or 1h30m as sshd_config(5))\n"
	"  --help     this text; --version the version\n";

/* Clients connected at once; more are closed at accept (logged). */
constexpr std::size_t max_clients = 1024;
/* Keys held at once; more ADD requests get FAILURE. */
constexpr std::size_t max_keys = 256;
/* Bodies up to this many bytes go to the client's own page of exclusive memory. */
constexpr std::size_t small_body = 4096;
/* Bytes of replies a client may leave unread before it is no longer read from. */
constexpr std::size_t max_output = 1 << 20;
/* How long a parser may take for one key. */
constexpr auto parser_timeout = 5000ms;

struct options {
	std::string socket;
	bool foreground = false;
	bool debug = false;
	bool kill = false;
	int shell = 0;	/* 0: from $SHELL, 1: sh, 2: csh */
	std::optional<std::uint32_t> lifetime;
	parser_hook hook;
};

bool debug_log = false;

void log(const std::string &line)
{
	std::fprintf(stderr, "xmem-agent: %s\n", line.c_str());
}

void debug(const std::string &line)
{
	if (debug_log)
		log(line);
}

std::string printable(bytes b)
{
	return escaped(std::string_view(reinterpret_cast<const char *>(b.data()), b.size()));
}

/*
 * A lifetime as sshd_config(5) TIME FORMATS: a number of seconds, or
 * numbers each followed by s, m, h, d or w ("1h30m"). Throws usage_error.
 */
std::uint32_t parse_lifetime(const std::string &text)
{
	std::uint64_t total = 0;
	std::uint64_t n = 0;
	bool digits = false;

	if (text.empty())
		throw usage_error("-t: empty lifetime");
	for (std::size_t i = 0; i <= text.size(); i++) {
		const char c = i < text.size() ? text[i] : 's';
		if (c >= '0' && c <= '9') {
			n = n * 10 + static_cast<unsigned>(c - '0');
			digits = true;
			if (n > UINT32_MAX)
				break;
			continue;
		}
		if (!digits) {
			if (i == text.size())
				break;
			throw usage_error("-t: bad lifetime '" + text + "'");
		}
		std::uint64_t unit = 0;
		switch (c) {
		case 's': case 'S': unit = 1; break;
		case 'm': case 'M': unit = 60; break;
		case 'h': case 'H': unit = 3600; break;
		case 'd': case 'D': unit = 86400; break;
		case 'w': case 'W': unit = 604800; break;
		default: throw usage_error("-t: bad lifetime '" + text + "'");
		}
		total += n * unit;
		n = 0;
		digits = false;
		if (total > UINT32_MAX)
			break;
	}
	if (total > UINT32_MAX)
		throw usage_error("-t: lifetime '" + text + "' too long");
	if (total == 0)
		throw usage_error("-t: lifetime must be at least one second");
	return static_cast<std::uint32_t>(total);
}

/* A key the signer holds: its page of exclusive memory, mapped, and what is public. */
class key_entry
{
public:
	key_entry(xmem::memory mem, xmem::mapping map) : mem_(std::move(mem)), map_(std::move(map))
	{
		const key_record &r = record();
		blob_ = ed25519_key_blob(bytes(reinterpret_cast<const std::byte *>(r.public_key),
					      ed25519_public_size));
		comment_.assign(reinterpret_cast<const std::byte *>(r.comment),
				reinterpret_cast<const std::byte *>(r.comment) + r.comment_len);
	}
	key_entry(const key_entry &) = delete;
	key_entry &operator=(const key_entry &) = delete;
	~key_entry() { wipe(); }

	[[nodiscard]] const key_record &record() const noexcept
	{
		return *reinterpret_cast<const key_record *>(map_.data());
	}
	[[nodiscard]] bytes blob() const noexcept { return blob_; }
	[[nodiscard]] bytes comment() const noexcept { return comment_; }

	/* Zeroes the page and lets it go (munmap, close: the kernel frees it). */
	void wipe() noexcept
	{
		if (map_.valid())
			sodium_memzero(map_.data(), map_.size());
		map_.unmap();
		mem_ = xmem::memory();
	}

	std::optional<steady::time_point> expiry;

private:
	xmem::memory mem_;
	xmem::mapping map_;
	std::vector<std::byte> blob_;
	std::vector<std::byte> comment_;
};

/* Exclusive memory to receive one body into. */
struct body_buffer {
	xmem::memory mem;
	xmem::mapping map;
};

body_buffer make_buffer(const char *name, std::size_t size)
{
	body_buffer b;
	b.mem = xmem::memory::create(name, size);
	b.map = xmem::mapping::map(b.mem, xmem::access::read_write);
	return b;
}

struct client {
	std::uint64_t id = 0;
	xmem::unique_fd fd;
	xmem::peer_credentials cred{};
	std::array<std::uint8_t, 5> header{};	/* length (4), type (1): not secret */
	std::size_t header_got = 0;
	std::uint32_t length = 0;		/* body bytes, type included */
	body_buffer small;			/* this client's page, made at its first body */
	body_buffer large;			/* the body when it is not in @small */
	std::byte *body = nullptr;		/* where this body is received */
	std::size_t body_got = 0;
	std::vector<std::byte> out;		/* replies (public data only) */
	std::size_t out_off = 0;
	bool want_write = false;
};

class agent
{
public:
	agent(options opts, xmem::unique_fd listen_fd) : opts_(std::move(opts)), listen_(std::move(listen_fd)) {}

	int run();

private:
	void on_accept();
	void on_client(client &c, std::uint32_t events);
	bool read_some(client &c);	/* false: close it */
	bool flush(client &c);		/* false: close it */
	void update_events(client &c);
	void close_client(std::uint64_t id, const std::string &why);
	std::vector<std::byte> handle(client &c, bytes body);
	std::vector<std::byte> handle_add(client &c, bytes body);
	std::vector<std::byte> handle_lock(const lock_request &l);
	void expire();
	int next_timeout_ms() const;
	key_entry *find(bytes blob);
	void remove_key(std::list<key_entry>::iterator it, const char *why);

	options opts_;
	xmem::unique_fd listen_;
	xmem::unique_fd epoll_;
	xmem::unique_fd signals_;
	std::map<std::uint64_t, std::unique_ptr<client>> clients_;
	std::uint64_t next_id_ = 2;	/* 0: the listener, 1: the signal fd */
	std::list<key_entry> keys_;
	/* Lock: salt (16) || BLAKE2b-256 of the passphrase keyed with it (32). */
	body_buffer lock_;
	bool locked_ = false;
};

key_entry *agent::find(bytes blob)
{
	for (key_entry &k : keys_)
		if (k.blob().size() == blob.size() &&
		    std::equal(blob.begin(), blob.end(), k.blob().begin()))
			return &k;
	return nullptr;
}

void agent::remove_key(std::list<key_entry>::iterator it, const char *why)
{
	log(std::string("key '") + printable(it->comment()) + "' " + why + ", wiped");
	keys_.erase(it);
}

void agent::expire()
{
	const auto now = steady::now();
	for (auto it = keys_.begin(); it != keys_.end();) {
		auto next = std::next(it);
		if (it->expiry && *it->expiry <= now)
			remove_key(it, "expired");
		it = next;
	}
}

int agent::next_timeout_ms() const
{
	std::optional<steady::time_point> first;
	for (const key_entry &k : keys_)
		if (k.expiry && (!first || *k.expiry < *first))
			first = k.expiry;
	if (!first)
		return -1;
	const auto left = std::chrono::ceil<std::chrono::milliseconds>(*first - steady::now());
	return static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 3600 * 1000));
}

/*
 * Hands the ADD body in @c.large (its own exclusive memory) to a fresh
 * parser and adopts the key it returns. Runs on the event loop: other
 * clients wait for it (one parser start, a few milliseconds; at most
 * parser_timeout).
 */
std::vector<std::byte> agent::handle_add(client &c, bytes body)
{
	const std::string what = message_name(std::to_integer<std::uint8_t>(body[0]));
	if (keys_.size() >= max_keys) {
		log(what + ": refused, " + std::to_string(max_keys) + " keys held already");
		return encode_status(false);
	}
	std::error_code ec;
	auto [mine, theirs] = xmem::channel::pair();
	const pid_t pid = ::fork();
	if (pid < 0) {
		log(what + ": fork: " + std::strerror(errno));
		return encode_status(false);
	}
	if (pid == 0) {
		/* The child: nothing of the signer's but the channel survives exec. */
		sigset_t none;
		sigemptyset(&none);
		::sigprocmask(SIG_SETMASK, &none, nullptr);
		const int fd = theirs.fd().get();
		::fcntl(fd, F_SETFD, 0);
		const std::string fdarg = std::to_string(fd);
		const std::string hookarg = opts_.hook.kind.empty() ? "" :
			"--test-parser-hook=" + opts_.hook.kind + ":" + opts_.hook.arg;
		const char *argv[] = {"xmem-agent", "--parser", fdarg.c_str(),
				      hookarg.empty() ? nullptr : hookarg.c_str(), nullptr};
		::execv("/proc/self/exe", const_cast<char *const *>(argv));
		::_exit(127);
	}
	theirs = xmem::channel();
	mine.set_timeout(parser_timeout);

	std::vector<std::byte> reply = encode_status(false);
	xmem::message m;
	try {
		mine.send_memory(c.large.mem, "add");
		c.large.map.unmap();	/* the parser reads it; read_some() wipes it after */
		m = mine.receive(ec);
	} catch (const std::system_error &e) {
		ec = e.code();	/* the parser went before it took the request */
	}
	if (ec) {
		log(what + ": no answer from the parser (" + ec.message() + ")");
	} else if (m.header.kind == xmem::wire::kind::error) {
		if (m.header.name == parse_refusal::confirm)
			log(what + ": refused: the confirm constraint is not supported "
			    "(xmem-agent has no way to ask the user)");
		else if (m.header.name.rfind(parse_refusal::key_type, 0) == 0)
			log(what + ": refused: " + escaped(m.header.name) +
			    " (only Ed25519 keys can be held whole in exclusive memory; docs/agent.md)");
		else
			log(what + ": refused by the parser: " + escaped(m.header.name) + " (" +
			    std::strerror(m.header.error) + ")");
	} else if (m.header.kind == xmem::wire::kind::memory && m.fds.size() == 1) {
		xmem::requirements req;
		req.size = key_memory_size;
		if (xmem::probe_kernel().exclusive) {
			req.accept_secret = false;
			req.seals = xmem::seals(xmem::seals::shrink | xmem::seals::grow | xmem::seals::seal);
		}
		xmem::received_memory got = xmem::verify_memory(std::move(m.fds[0]), m.header, req, ec);
		xmem::mapping map;
		if (!ec)
			map = xmem::mapping::map(got.memory, xmem::access::read_write, ec);
		const auto *rec = map.valid() ? reinterpret_cast<const key_record *>(map.data()) : nullptr;
		if (ec) {
			log(what + ": the parser's key memory: " + ec.message());
		} else if (rec->magic != key_record_magic || rec->version != key_record_version ||
			   rec->comment_len > max_comment) {
			sodium_memzero(map.data(), map.size());
			log(what + ": the parser's key record is malformed");
		} else {
			std::optional<std::uint32_t> life;
			if (rec->flags & key_record_has_lifetime)
				life = rec->lifetime;
			else
				life = opts_.lifetime;
			keys_.emplace_back(std::move(got.memory), std::move(map));
			key_entry &k = keys_.back();
			if (life && *life > 0)
				k.expiry = steady::now() + std::chrono::seconds(*life);
			for (auto it = keys_.begin(); it != std::prev(keys_.end()); ++it) {
				if (std::equal(it->blob().begin(), it->blob().end(),
					       k.blob().begin(), k.blob().end())) {
					remove_key(it, "replaced by the same key added again");
					break;
				}
			}
			log(what + ": added Ed25519 key '" + printable(k.comment()) + "'" +
			    (life && *life ? " for " + std::to_string(*life) + " s" : "") +
			    " in " + std::string(xmem::to_string(got.backend.value_or(xmem::backend::ordinary))));
			reply = encode_status(true);
		}
	} else {
		log(what + ": unexpected answer from the parser");
	}
	mine = xmem::channel();

	/* Reap it: it exits once it has answered; one that does not is killed. */
	int status = 0;
	xmem::unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
	if (pidfd) {
		struct pollfd p = {pidfd.get(), POLLIN, 0};
		(void)::poll(&p, 1, 1000);
	}
	pid_t r = ::waitpid(pid, &status, WNOHANG);
	if (r == 0) {
		log(what + ": the parser did not exit; killed");
		::kill(pid, SIGKILL);
		r = ::waitpid(pid, &status, 0);
	}
	if (r == pid && WIFSIGNALED(status))
		log(what + ": the parser died of signal " + std::to_string(WTERMSIG(status)) +
		    " (" + strsignal(WTERMSIG(status)) + "); only this request failed");
	else if (r == pid && WIFEXITED(status) && WEXITSTATUS(status) != 0)
		log(what + ": the parser exited with status " + std::to_string(WEXITSTATUS(status)));
	return reply;
}

std::vector<std::byte> agent::handle_lock(const lock_request &l)
{
	auto *salt = reinterpret_cast<unsigned char *>(lock_.map.data());
	unsigned char *stored = salt + 16;
	unsigned char h[32];
	const auto *pass = reinterpret_cast<const unsigned char *>(l.passphrase.data());

	if (l.lock) {
		if (locked_) {
			log("LOCK: already locked");
			return encode_status(false);
		}
		randombytes_buf(salt, 16);
		crypto_generichash(stored, 32, pass, l.passphrase.size(), salt, 16);
		locked_ = true;
		log("locked");
		return encode_status(true);
	}
	if (!locked_) {
		log("UNLOCK: not locked");
		return encode_status(false);
	}
	crypto_generichash(h, sizeof(h), pass, l.passphrase.size(), salt, 16);
	const bool match = sodium_memcmp(h, stored, sizeof(h)) == 0;	/* constant time */
	sodium_memzero(h, sizeof(h));
	if (!match) {
		log("UNLOCK: wrong passphrase");
		return encode_status(false);
	}
	sodium_memzero(lock_.map.data(), 48);
	locked_ = false;
	log("unlocked");
	return encode_status(true);
}

std::vector<std::byte> agent::handle(client &c, bytes body)
{
	const std::uint8_t type = std::to_integer<std::uint8_t>(body[0]);
	debug("client " + std::to_string(c.id) + ": " + message_name(type) + ", " +
	      std::to_string(body.size()) + " bytes");

	if (locked_ && type != msg::unlock) {
		/* As OpenSSH: while locked, no identities and every other request fails. */
		if (type == msg::request_identities && body.size() == 1)
			return encode_identities({});
		debug(message_name(type) + ": refused, the agent is locked");
		return encode_status(false);
	}
	if (type == msg::add_identity || type == msg::add_id_constrained)
		return handle_add(c, body);

	request req;
	try {
		req = decode_request(body);
	} catch (const protocol_error &e) {
		log("client " + std::to_string(c.id) + ": " + e.what() + "; FAILURE");
		return encode_status(false);
	}
	if (std::holds_alternative<request_identities>(req)) {
		std::vector<identity> ids;
		for (const key_entry &k : keys_)
			ids.push_back({k.blob(), k.comment()});
		return encode_identities(ids);
	}
	if (auto *s = std::get_if<sign_request>(&req)) {
		key_entry *k = find(s->key_blob);
		if (!k) {
			debug("SIGN_REQUEST: no such key");
			return encode_status(false);
		}
		unsigned char sig[ed25519_signature_size];
		crypto_sign_detached(sig, nullptr,
				     reinterpret_cast<const unsigned char *>(s->data.data()),
				     s->data.size(), k->record().secret_key);
		debug("SIGN_REQUEST: signed " + std::to_string(s->data.size()) + " bytes with '" +
		      printable(k->comment()) + "'");
		return encode_sign_response(ed25519_signature_blob(
			bytes(reinterpret_cast<const std::byte *>(sig), sizeof(sig))));
	}
	if (auto *r = std::get_if<remove_identity>(&req)) {
		for (auto it = keys_.begin(); it != keys_.end(); ++it) {
			if (std::equal(it->blob().begin(), it->blob().end(), r->key_blob.begin(),
				       r->key_blob.end())) {
				remove_key(it, "removed");
				return encode_status(true);
			}
		}
		debug("REMOVE_IDENTITY: no such key");
		return encode_status(false);
	}
	if (std::holds_alternative<remove_all_identities>(req)) {
		const std::size_t n = keys_.size();
		keys_.clear();
		log("all " + std::to_string(n) + " keys removed, wiped");
		return encode_status(true);
	}
	if (auto *l = std::get_if<lock_request>(&req))
		return handle_lock(*l);
	if (auto *e = std::get_if<extension>(&req)) {
		if (e->name == "query") {
			static constexpr std::string_view names[] = {"query"};
			return encode_query_response(names);
		}
		debug("EXTENSION '" + std::string(e->name) + "': not supported; FAILURE");
		return encode_status(false);
	}
	return encode_status(false);
}

void agent::update_events(client &c)
{
	struct epoll_event ev{};
	ev.events = (c.out_off < c.out.size()) ? EPOLLOUT : EPOLLIN;
	ev.data.u64 = c.id;
	::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
}

void agent::close_client(std::uint64_t id, const std::string &why)
{
	auto it = clients_.find(id);
	if (it == clients_.end())
		return;
	if (!why.empty())
		log("client " + std::to_string(id) + " closed: " + why);
	client &c = *it->second;
	if (c.small.map.valid())
		sodium_memzero(c.small.map.data(), c.small.map.size());
	if (c.large.map.valid())
		sodium_memzero(c.large.map.data(), c.large.map.size());
	::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
	clients_.erase(it);
}

void agent::on_accept()
{
	for (;;) {
		xmem::unique_fd fd(::accept4(listen_.get(), nullptr, nullptr,
					     SOCK_NONBLOCK | SOCK_CLOEXEC));
		if (!fd) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log(std::string("accept: ") + std::strerror(errno));
			return;
		}
		struct ucred cr{};
		socklen_t len = sizeof(cr);
		if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
			log(std::string("SO_PEERCRED: ") + std::strerror(errno));
			continue;
		}
		/* As ssh-agent: only our own uid, or root. */
		if (cr.uid != ::geteuid() && cr.uid != 0) {
			log("refused a client of uid " + std::to_string(cr.uid) + " (pid " +
			    std::to_string(cr.pid) + ")");
			continue;
		}
		if (clients_.size() >= max_clients) {
			log("refused a client: " + std::to_string(max_clients) + " connected already");
			continue;
		}
		auto c = std::make_unique<client>();
		c->id = next_id_++;
		c->cred = {cr.pid, cr.uid, cr.gid};
		c->fd = std::move(fd);
		struct epoll_event ev{};
		ev.events = EPOLLIN;
		ev.data.u64 = c->id;
		if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c->fd.get(), &ev) < 0) {
			log(std::string("epoll_ctl: ") + std::strerror(errno));
			continue;
		}
		debug("client " + std::to_string(c->id) + " connected (pid " + std::to_string(cr.pid) + ")");
		clients_.emplace(c->id, std::move(c));
	}
}

bool agent::flush(client &c)
{
	while (c.out_off < c.out.size()) {
		const ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off,
					 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return true;
			return false;
		}
		c.out_off += static_cast<std::size_t>(n);
	}
	c.out.clear();
	c.out_off = 0;
	return true;
}

/* Reads what has arrived; handles each complete message. */
bool agent::read_some(client &c)
{
	for (;;) {
		if (c.out.size() - c.out_off > max_output)
			return true;	/* the client reads no replies: read no more requests */
		std::byte *dst;
		std::size_t want;
		if (c.header_got < 4 || (c.header_got == 4 && c.length > 0)) {
			dst = reinterpret_cast<std::byte *>(c.header.data()) + c.header_got;
			want = (c.header_got < 4 ? 4 : 5) - c.header_got;
		} else {
			dst = c.body + c.body_got;
			want = c.length - c.body_got;
		}
		const ssize_t n = ::recv(c.fd.get(), dst, want, 0);
		if (n == 0) {
			if (c.header_got > 0)
				log("client " + std::to_string(c.id) + " closed in the middle of a message");
			return false;
		}
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		const auto got = static_cast<std::size_t>(n);

		if (c.header_got < 5) {
			c.header_got += got;
			if (c.header_got == 4) {
				c.length = (std::uint32_t(c.header[0]) << 24) | (std::uint32_t(c.header[1]) << 16) |
					   (std::uint32_t(c.header[2]) << 8) | c.header[3];
				/* As OpenSSH's process_message(): these close the connection. */
				if (c.length == 0) {
					log("client " + std::to_string(c.id) + ": message of 0 bytes (no type)");
					return false;
				}
				if (c.length > max_message) {
					log("client " + std::to_string(c.id) + ": message of " +
					    std::to_string(c.length) + " bytes (at most " +
					    std::to_string(max_message) + ")");
					return false;
				}
			}
			if (c.header_got < 5)
				continue;
			/* The type is known: choose where the body goes. */
			const std::uint8_t type = c.header[4];
			const bool add = type == msg::add_identity || type == msg::add_id_constrained;
			try {
				if (add || c.length > small_body) {
					c.large = make_buffer(add ? "xmem-agent-add" : "xmem-agent-message", c.length);
					c.body = c.large.map.data();
				} else {
					if (!c.small.map.valid())
						c.small = make_buffer("xmem-agent-client", small_body);
					c.body = c.small.map.data();
				}
			} catch (const std::exception &e) {
				log("client " + std::to_string(c.id) + ": no exclusive memory for a " +
				    std::to_string(c.length) + "-byte message: " + e.what());
				return false;
			}
			c.body[0] = static_cast<std::byte>(type);
			c.body_got = 1;
		} else {
			c.body_got += got;
		}
		if (c.body_got < c.length)
			continue;

		/* One whole message. */
		const bytes body(c.body, c.length);
		std::vector<std::byte> reply;
		try {
			reply = handle(c, body);
		} catch (const std::exception &e) {
			log("client " + std::to_string(c.id) + ": " + message_name(c.header[4]) + ": " +
			    e.what() + "; FAILURE");
			reply = encode_status(false);
		}
		if (c.large.mem.valid()) {
			if (!c.large.map.valid())
				c.large.map = xmem::mapping::map(c.large.mem, xmem::access::read_write);
			sodium_memzero(c.large.map.data(), c.large.map.size());
			c.large = body_buffer();
		} else {
			sodium_memzero(c.body, c.length);
		}
		c.body = nullptr;
		c.body_got = 0;
		c.header_got = 0;
		c.length = 0;
		const auto frame = encode_frame(reply);
		c.out.insert(c.out.end(), frame.begin(), frame.end());
		if (!flush(c))
			return false;
	}
}

void agent::on_client(client &c, std::uint32_t events)
{
	const std::uint64_t id = c.id;
	if (events & EPOLLOUT) {
		if (!flush(c)) {
			close_client(id, "");
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (!read_some(c)) {
			close_client(id, "");
			return;
		}
	}
	update_events(c);
}

int agent::run()
{
	epoll_ = xmem::unique_fd(::epoll_create1(EPOLL_CLOEXEC));
	if (!epoll_)
		throw std::system_error(errno, std::generic_category(), "epoll_create1");
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	signals_ = xmem::unique_fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
	if (!signals_)
		throw std::system_error(errno, std::generic_category(), "signalfd");
	lock_ = make_buffer("xmem-agent-lock", 4096);

	struct epoll_event ev{};
	ev.events = EPOLLIN;
	ev.data.u64 = 0;
	::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listen_.get(), &ev);
	ev.data.u64 = 1;
	::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals_.get(), &ev);

	for (;;) {
		struct epoll_event evs[64];
		const int n = ::epoll_wait(epoll_.get(), evs, 64, next_timeout_ms());
		if (n < 0 && errno != EINTR)
			throw std::system_error(errno, std::generic_category(), "epoll_wait");
		for (int i = 0; i < n; i++) {
			const std::uint64_t id = evs[i].data.u64;
			if (id == 0) {
				on_accept();
			} else if (id == 1) {
				struct signalfd_siginfo si{};
				if (::read(signals_.get(), &si, sizeof(si)) == sizeof(si)) {
					log(std::string("signal ") + strsignal(static_cast<int>(si.ssi_signo)) +
					    ": stopping");
					keys_.clear();
					return 0;
				}
			} else {
				auto it = clients_.find(id);
				if (it != clients_.end())
					on_client(*it->second, evs[i].events);
			}
		}
		expire();
	}
}

/* The socket, mode 0600, in a directory of mode 0700 when we choose its path. */
struct bound_socket {
	xmem::unique_fd fd;
	std::string path;
	std::string dir;	/* ours to remove, or "" */
};

bound_socket bind_socket(const std::string &asked)
{
	bound_socket b;
	b.path = asked;
	if (asked.empty()) {
		const char *tmp = std::getenv("TMPDIR");
		std::string d = std::string(tmp && *tmp ? tmp : "/tmp") + "/xmem-agent-XXXXXX";
		if (!::mkdtemp(d.data()))
			throw std::system_error(errno, std::generic_category(), "mkdtemp " + d);
		b.dir = d;
		b.path = d + "/agent." + std::to_string(::getpid());
	}
	struct sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	if (b.path.size() >= sizeof(sa.sun_path))
		throw std::system_error(ENAMETOOLONG, std::generic_category(), "socket path " + b.path);
	std::memcpy(sa.sun_path, b.path.c_str(), b.path.size() + 1);
	b.fd = xmem::unique_fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	if (!b.fd)
		throw std::system_error(errno, std::generic_category(), "socket");
	const mode_t old = ::umask(0177);
	const int rc = ::bind(b.fd.get(), reinterpret_cast<struct sockaddr *>(&sa), sizeof(sa));
	const int err = errno;
	::umask(old);
	if (rc < 0) {
		if (!b.dir.empty())
			::rmdir(b.dir.c_str());
		throw std::system_error(err, std::generic_category(), "bind " + b.path);
	}
	if (::listen(b.fd.get(), 128) < 0)
		throw std::system_error(errno, std::generic_category(), "listen " + b.path);
	return b;
}

bool csh_output(const options &o)
{
	if (o.shell)
		return o.shell == 2;
	const char *sh = std::getenv("SHELL");
	const std::string s = sh ? sh : "";
	return s.size() >= 3 && s.compare(s.size() - 3, 3, "csh") == 0;
}

void print_env(const options &o, const std::string &sock, pid_t pid, bool with_pid)
{
	if (csh_output(o)) {
		std::printf("setenv SSH_AUTH_SOCK %s;\n", sock.c_str());
		if (with_pid)
			std::printf("setenv SSH_AGENT_PID %ld;\n", static_cast<long>(pid));
	} else {
		std::printf("SSH_AUTH_SOCK=%s; export SSH_AUTH_SOCK;\n", sock.c_str());
		if (with_pid)
			std::printf("SSH_AGENT_PID=%ld; export SSH_AGENT_PID;\n", static_cast<long>(pid));
	}
	std::printf("echo Agent pid %ld;\n", static_cast<long>(pid));
	std::fflush(stdout);
}

int kill_agent(const options &o)
{
	const char *p = std::getenv("SSH_AGENT_PID");
	if (!p || !*p) {
		log("SSH_AGENT_PID not set, cannot kill agent");
		return 1;
	}
	const long pid = static_cast<long>(xmem_examples::parse_number(p, 4194304, "SSH_AGENT_PID"));
	if (pid < 2) {
		log(std::string("SSH_AGENT_PID=") + p + ", refusing to kill");
		return 1;
	}
	if (::kill(static_cast<pid_t>(pid), SIGTERM) < 0) {
		log("kill " + std::to_string(pid) + ": " + std::strerror(errno));
		return 1;
	}
	if (csh_output(o))
		std::printf("unsetenv SSH_AUTH_SOCK;\nunsetenv SSH_AGENT_PID;\n");
	else
		std::printf("unset SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\n");
	std::printf("echo Agent pid %ld killed;\n", pid);
	return 0;
}

options parse_options(int argc, char **argv)
{
	options o;
	static const struct option longopts[] = {
		{"help", no_argument, nullptr, 'H'},
		{"version", no_argument, nullptr, 'V'},
		{"test-parser-hook", required_argument, nullptr, 'T'},
		{nullptr, 0, nullptr, 0},
	};
	opterr = 0;
	int c;
	while ((c = ::getopt_long(argc, argv, ":a:cDdkst:", longopts, nullptr)) != -1) {
		switch (c) {
		case 'a': o.socket = optarg; break;
		case 'c': o.shell = 2; break;
		case 's': o.shell = 1; break;
		case 'D': o.foreground = true; break;
		case 'd': o.foreground = o.debug = true; break;
		case 'k': o.kill = true; break;
		case 't': o.lifetime = parse_lifetime(optarg); break;
		case 'H': std::fputs(usage_text, stdout); std::exit(0);
		case 'V': std::printf("xmem-agent %s\n", XMEM_VERSION); std::exit(0);
		case 'T': {
			const std::string h = optarg;
			const auto colon = h.find(':');
			if (colon == std::string::npos)
				throw usage_error("--test-parser-hook: KIND:ARG");
			o.hook = {h.substr(0, colon), h.substr(colon + 1)};
			break;
		}
		default: throw xmem_examples::getopt_error(c, argv, optind, optopt);
		}
	}
	if (optind < argc)
		throw usage_error(std::string("unexpected argument '") + argv[optind] +
				  "' (running a command under the agent is not supported)");
	return o;
}

int agent_main(int argc, char **argv)
{
	options o;
	try {
		o = parse_options(argc, argv);
	} catch (const usage_error &e) {
		std::fprintf(stderr, "xmem-agent: %s\n%s", e.what(), usage_text);
		return 2;
	}
	if (o.kill)
		return kill_agent(o);
	debug_log = o.debug;
	if (sodium_init() < 0) {
		log("sodium_init failed");
		return 1;
	}
	std::signal(SIGPIPE, SIG_IGN);
	/*
	 * As ssh-agent (platform_disable_tracing()): no core dumps, and no
	 * ptrace or /proc/PID/mem from other processes of our uid.
	 */
	if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		log(std::string("prctl PR_SET_DUMPABLE: ") + std::strerror(errno));

	bound_socket sock;
	try {
		sock = bind_socket(o.socket);
	} catch (const std::exception &e) {
		log(e.what());
		return 1;
	}

	if (!o.foreground) {
		std::fflush(stdout);
		const pid_t child = ::fork();
		if (child < 0) {
			log(std::string("fork: ") + std::strerror(errno));
			return 1;
		}
		if (child > 0) {
			/* The parent tells the shell, then leaves: the child is the agent. */
			sock.fd.reset();
			print_env(o, sock.path, child, true);
			std::_Exit(0);
		}
		::setsid();
		if (::chdir("/") < 0)
			return 1;
		const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			::dup2(null, 0);
			::dup2(null, 1);
			::dup2(null, 2);
			::close(null);
		}
	} else {
		print_env(o, sock.path, ::getpid(), false);
	}

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	::sigprocmask(SIG_BLOCK, &set, nullptr);

	int rc = 1;
	try {
		const xmem::kernel_support k = xmem::probe_kernel();
		log("listening on " + sock.path + " (keys in " +
		    (k.exclusive ? "memfd_exclusive" : k.secret ? "memfd_secret" : "no exclusive memory") + ")");
		agent a(o, std::move(sock.fd));
		rc = a.run();
	} catch (const std::exception &e) {
		log(e.what());
	}
	::unlink(sock.path.c_str());
	if (!sock.dir.empty())
		::rmdir(sock.dir.c_str());
	return rc;
}

} // namespace

int main(int argc, char **argv)
{
	/* Internal modes: the parser (started by the signer), the sandbox self-test. */
	if (argc >= 3 && std::strcmp(argv[1], "--parser") == 0) {
		if (sodium_init() < 0)
			return 1;
		parser_hook hook;
		if (argc >= 4 && std::strncmp(argv[3], "--test-parser-hook=", 19) == 0) {
			const std::string h = argv[3] + 19;
			const auto colon = h.find(':');
			hook = {h.substr(0, colon), colon == std::string::npos ? "" : h.substr(colon + 1)};
		}
		return run_parser(std::atoi(argv[2]), hook);
	}
	if (argc == 3 && std::strcmp(argv[1], "--sandbox-selftest") == 0)
		return sandbox_selftest(argv[2]);
	return agent_main(argc, argv);
}
