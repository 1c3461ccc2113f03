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
 *  - the signer (this process): the socket, served by libxmem-server's
 *    stream mode (xmem::stream_server: every client at once, epoll), the
 *    keys (each a page of exclusive memory it maps), signing (libsodium),
 *    lock state, and a helper thread for parsers, lifetimes and delays. It never
 *    parses a private key: ADD_IDENTITY bodies go, as the fd of the
 *    exclusive memory they were received into, to
 *  - a parser (parser.hpp), a fresh sandboxed process per ADD request,
 *    which returns the key as a sealed page of exclusive memory
 *    (SCM_RIGHTS, libxmem's verified receive) or a refusal.
 *
 * Every message body is received by the server straight into an exclusive
 * mapping: a page per client for bodies up to 4 KiB, a region of its own
 * for larger ones. Only the 4-byte length of each frame passes through
 * ordinary memory. ADD bodies are copied into exclusive memory of their own
 * for the parser. Key pages are wiped with
 * sodium_memzero() when removed, expired, replaced or at exit.
 */

#include "../common/cli.hpp"
#include "agent_proto.hpp"
#include "key_record.hpp"
#include "parser.hpp"
#include "sandbox.hpp"

#include <xmem/stream_server.hpp>
#include <xmem/xmem.hpp>

#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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

/* Clients connected at once, at most; fewer when RLIMIT_NOFILE is low (fd_reserve). */
constexpr std::size_t max_clients = 1024;
/* Keys held at once; more ADD requests get FAILURE. */
constexpr std::size_t max_keys = 256;
/*
 * The stream server (libxmem-server) receives every body into exclusive
 * memory: a client's own page for bodies up to 4 KiB, a region of its own,
 * at first of at most 16 KiB and doubling as the bytes arrive, for larger
 * ones. Regions of bodies being received, all clients / one uid:
 */
constexpr std::size_t body_budget = 4 << 20;
constexpr std::size_t uid_body_budget = 3 << 20;
/* A started message must be complete within this (slow loris). */
constexpr auto message_deadline = 10000ms;
/* A client leaving a reply unread (no byte taken) this long is closed. */
constexpr auto unread_deadline = 30000ms;
/*
 * A deferred answer (ADD: a parser's queue and its 5 s; UNLOCK: at most
 * 10 s) must come within this, else the server closes the client.
 */
constexpr auto answer_deadline = 120000ms;
/* How long a parser may take for one key, and then to exit. */
constexpr auto parser_timeout = 5000ms;
constexpr auto parser_exit_timeout = 1000ms;
/*
 * Parsers working at once (as many again may be exiting); an ADD beyond
 * them waits, its client not read, until one is done.
 */
constexpr std::size_t max_parsers = 4;
/* fds kept out of the clients' share: stdio, listener, epoll, signals, parsers. */
constexpr std::size_t fd_reserve = 16 + 6 * max_parsers;
/* Failed UNLOCKs: the reply waits 100 ms x failures (at most 100), as OpenSSH. */
constexpr auto unlock_delay_step = 100ms;
constexpr unsigned max_unlock_failures = 100;

struct options {
	std::string socket;
	bool foreground = false;
	bool debug = false;
	bool kill = false;
	int shell = 0;	/* 0: from $SHELL, 1: sh, 2: csh */
	std::optional<std::uint32_t> lifetime;
	parser_hook hook;
	/* --test-deadline=MS (tests/agent): message_deadline and unread_deadline. */
	std::optional<std::chrono::milliseconds> test_deadline;
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

/*
 * A key the signer holds: its page of exclusive memory, mapped, and what
 * is public. The memory's fd is closed here: the mapping keeps it alive.
 */
class key_entry
{
public:
	key_entry(xmem::memory /* closed on return */, xmem::mapping map) : map_(std::move(map))
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
	}

	std::optional<steady::time_point> expiry;

private:
	xmem::mapping map_;
	std::vector<std::byte> blob_;
	std::vector<std::byte> comment_;
};

/* A parser at work on one ADD request (its fds are in the helper's epoll set). */
struct parser_run {
	std::uint64_t client = 0;
	std::string what;			/* the request's name, for the log */
	pid_t pid = -1;
	xmem::channel channel;			/* until it answers */
	xmem::unique_fd pidfd;			/* readable when it has exited */
	xmem::unique_fd errors;			/* its stderr (a pipe): its log lines */
	steady::time_point deadline;		/* to answer, then to exit */
	bool answered = false;
	std::size_t logged = 0;			/* bytes of @errors copied to the log */
	xmem::pending_reply reply;		/* the client's answer, until it answered */
	xmem::memory body;			/* the ADD body (exclusive memory), until it answered */
};

/* An ADD waiting for a parser: its client is not read meanwhile (the server's awaiting). */
struct queued_add {
	std::uint64_t client;
	std::string what;
	xmem::pending_reply reply;
	xmem::memory body;
};

/* A failed UNLOCK's FAILURE, sent at @at. */
struct delayed_reply {
	steady::time_point at;
	xmem::pending_reply reply;
};

/*
 * An UNLOCK that came while a failure's delay ran: checked when the delay
 * ends, in the order they came, as OpenSSH's agent, which sleeps through
 * the delay, takes them. Its passphrase's hash waits in the lock's
 * exclusive memory (slot @slot), never the passphrase.
 */
struct queued_unlock {
	unsigned slot;
	xmem::pending_reply reply;
};
/* Hash slots in the lock's page, after the salt and the stored hash: 32 bytes each. */
constexpr std::size_t unlock_slots_offset = 64;
constexpr unsigned max_queued_unlocks = (4096 - unlock_slots_offset) / 32;

/* Helper epoll data: (id << 2) | what. The signal fd and the wake eventfd are ids 0 and 1. */
enum : std::uint64_t { ev_other = 0, ev_parser_channel = 1, ev_parser_exit = 2, ev_parser_errors = 3 };

/*
 * The signer. Clients are served by libxmem's stream server (run() on the
 * main thread: framing, bodies in exclusive memory, fairness, deadlines,
 * limits); its handler decides each message. The parsers, key lifetimes,
 * delayed UNLOCK failures and signals are watched by a helper thread with
 * an epoll set of its own, which answers deferred requests through the
 * server's pending_reply. Everything both threads touch is under @mutex_.
 */
class agent
{
public:
	explicit agent(options opts) : opts_(std::move(opts))
	{
		if (opts_.test_deadline)
			message_deadline_ = unread_deadline_ = *opts_.test_deadline;
	}

	/* Serves @listen_fd (bound at @path) until a signal stops it. */
	int run(xmem::unique_fd listen_fd, const std::string &path);

private:
	xmem::reply handle(const xmem::stream_context &ctx);
	std::optional<std::vector<std::byte>> handle_request(const xmem::stream_context &ctx);
	void start_add(std::uint64_t client, const std::string &what, xmem::pending_reply reply,
		       xmem::memory body);
	void signal_stop() noexcept;
	void on_parser(std::uint64_t id, std::uint64_t what);
	std::vector<std::byte> adopt_key(parser_run &p, xmem::message &m);
	void finish_parser(std::uint64_t id, const std::vector<std::byte> &reply);
	void reap_parser(std::uint64_t id, bool kill);
	void drain_errors(parser_run &p);
	void start_queued();
	std::optional<std::vector<std::byte>> handle_lock(const xmem::stream_context &ctx,
							  const lock_request &l);
	unsigned char *unlock_slot(unsigned slot);
	bool unlock_check(unsigned char *h, steady::time_point now);
	void run_unlock_queue();
	void on_timers();
	void expire();
	int next_timeout_ms() const;
	key_entry *find(bytes blob);
	void remove_key(std::list<key_entry>::iterator it, const char *why);
	void watch(int fd, std::uint64_t id, std::uint64_t what, std::uint32_t events);
	void wake() noexcept;
	void helper();
	void on_server_error(const xmem::log_event &e);

	options opts_;
	xmem::stream_server *server_ = nullptr;
	xmem::unique_fd epoll_;		/* the helper's */
	xmem::unique_fd signals_;
	xmem::unique_fd wake_;		/* eventfd: the helper's deadlines changed */
	std::mutex mutex_;
	bool stopping_ = false;		/* the helper returns at its next wakeup */
	std::map<std::uint64_t, parser_run> parsers_;
	std::deque<queued_add> add_queue_;	/* ADDs waiting for a parser */
	std::vector<delayed_reply> delayed_;	/* failed UNLOCKs' FAILUREs */
	std::deque<queued_unlock> unlock_queue_;	/* UNLOCKs waiting for a delay's end */
	std::uint64_t next_id_ = 2;	/* 0: the signal fd, 1: the wake eventfd */
	std::size_t client_limit_ = max_clients;
	std::list<key_entry> keys_;
	/* Lock: salt (16) || BLAKE2b-256 of the passphrase keyed with it (32). */
	xmem::mapping lock_;
	bool locked_ = false;
	unsigned unlock_failures_ = 0;
	steady::time_point unlock_refused_until_{};
	std::chrono::milliseconds message_deadline_ = message_deadline;
	std::chrono::milliseconds unread_deadline_ = unread_deadline;
};

void agent::watch(int fd, std::uint64_t id, std::uint64_t what, std::uint32_t events)
{
	struct epoll_event ev{};
	ev.events = events;
	ev.data.u64 = (id << 2) | what;
	if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
		throw std::system_error(errno, std::generic_category(), "epoll_ctl");
}

void agent::signal_stop() noexcept
{
	{
		std::lock_guard<std::mutex> g(mutex_);
		stopping_ = true;
	}
	wake();
}

void agent::wake() noexcept
{
	const std::uint64_t one = 1;
	[[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
}

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
	auto consider = [&first](steady::time_point t) {
		if (!first || t < *first)
			first = t;
	};
	for (const key_entry &k : keys_)
		if (k.expiry)
			consider(*k.expiry);
	for (const auto &[id, p] : parsers_)
		consider(p.deadline);
	for (const delayed_reply &d : delayed_)
		consider(d.at);
	if (!unlock_queue_.empty())
		consider(unlock_refused_until_);
	if (!first)
		return -1;
	const auto left = std::chrono::ceil<std::chrono::milliseconds>(*first - steady::now());
	return static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 3600 * 1000));
}

/*
 * Hands the ADD body (@body, a copy in exclusive memory of its own) to a
 * fresh parser; @reply is answered when it answers (on_parser), and the
 * server serves the other clients meanwhile. With max_parsers at work the
 * request waits in add_queue_. Called with mutex_ held.
 */
void agent::start_add(std::uint64_t client, const std::string &what, xmem::pending_reply reply,
		      xmem::memory body)
{
	const auto working = static_cast<std::size_t>(std::count_if(
		parsers_.begin(), parsers_.end(), [](const auto &p) { return !p.second.answered; }));
	if (working >= max_parsers || parsers_.size() >= 2 * max_parsers) {
		debug(what + ": waits for a parser (" + std::to_string(parsers_.size()) + " running)");
		add_queue_.push_back({client, what, std::move(reply), std::move(body)});
		return;
	}
	auto fail = [&](const std::string &why) {
		log(what + ": " + why);
		reply.answer(xmem::reply::send(encode_status(false)));
	};
	auto [mine, theirs] = xmem::channel::pair();
	/* The parser's stderr: a pipe whose lines the signer logs. */
	int errpipe[2];
	if (::pipe2(errpipe, O_CLOEXEC) < 0) {
		fail(std::string("pipe: ") + std::strerror(errno));
		return;
	}
	xmem::unique_fd err_read(errpipe[0]), err_write(errpipe[1]);
	/* Everything the child needs, made before fork(): it runs no allocator (other threads). */
	const int fd = theirs.fd().get();
	const std::string fdarg = std::to_string(fd);
	const std::string hookarg = opts_.hook.kind.empty() ? "" :
		"--test-parser-hook=" + opts_.hook.kind + ":" + opts_.hook.arg;
	const char *argv[] = {"xmem-agent", "--parser", fdarg.c_str(),
			      hookarg.empty() ? nullptr : hookarg.c_str(), nullptr};
	const pid_t pid = ::fork();
	if (pid < 0) {
		fail(std::string("fork: ") + std::strerror(errno));
		return;
	}
	if (pid == 0) {
		/*
		 * The child: nothing of the signer's but the channel survives
		 * exec; stdin and stdout are /dev/null, stderr the pipe.
		 */
		sigset_t none;
		sigemptyset(&none);
		::sigprocmask(SIG_SETMASK, &none, nullptr);
		const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(null, 1) < 0 ||
		    ::dup2(err_write.get(), 2) < 0)
			::_exit(127);
		::fcntl(fd, F_SETFD, 0);
		::execv("/proc/self/exe", const_cast<char *const *>(argv));
		::_exit(127);
	}
	theirs = xmem::channel();
	err_write.reset();
	(void)::fcntl(err_read.get(), F_SETFL, O_NONBLOCK);

	const std::uint64_t id = next_id_++;
	parser_run &p = parsers_[id];
	p.client = client;
	p.what = what;
	p.pid = pid;
	p.pidfd = xmem::unique_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
	p.errors = std::move(err_read);
	p.deadline = steady::now() + parser_timeout;
	p.reply = std::move(reply);
	p.body = std::move(body);
	try {
		mine.send_memory(p.body, "add");
	} catch (const std::system_error &e) {
		/* The parser went before it took the request: reaped, FAILURE. */
		log(what + ": no answer from the parser (" + e.code().message() + ")");
		p.reply.answer(xmem::reply::send(encode_status(false)));
		::kill(pid, SIGKILL);
		int st;
		::waitpid(pid, &st, 0);
		parsers_.erase(id);
		return;
	}
	p.channel = std::move(mine);
	try {
		watch(p.channel.fd().get(), id, ev_parser_channel, EPOLLIN);
		watch(p.errors.get(), id, ev_parser_errors, EPOLLIN);
	} catch (const std::exception &e) {
		/* Its deadline, now: on_timers() answers FAILURE and kills it. */
		log(what + ": " + e.what());
		p.deadline = steady::now();
	}
	wake();
}

/* A parser is done: the ADDs that wait for one start, in order. Called with mutex_ held. */
void agent::start_queued()
{
	while (!add_queue_.empty()) {
		const auto working = static_cast<std::size_t>(std::count_if(
			parsers_.begin(), parsers_.end(), [](const auto &p) { return !p.second.answered; }));
		if (working >= max_parsers || parsers_.size() >= 2 * max_parsers)
			return;
		queued_add q = std::move(add_queue_.front());
		add_queue_.pop_front();
		if (q.reply.peer() == 0)
			continue;
		try {
			start_add(q.client, q.what, std::move(q.reply), std::move(q.body));
		} catch (const std::exception &e) {
			log("client " + std::to_string(q.client) + ": " + e.what() + "; FAILURE");
			/* q.reply, if still held, answers EIO when destroyed: the client is closed */
		}
	}
}

void agent::drain_errors(parser_run &p)
{
	char buf[4096];
	for (;;) {
		const ssize_t n = p.errors ? ::read(p.errors.get(), buf, sizeof(buf)) : 0;
		if (n <= 0) {
			if (n == 0 && p.errors) {
				::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p.errors.get(), nullptr);
				p.errors.reset();
			}
			return;
		}
		/* A parser's log is short; a flood of it is dropped past 64 KiB. */
		if (p.logged < 65536)
			(void)!::write(2, buf, std::min<std::size_t>(static_cast<std::size_t>(n), 65536 - p.logged));
		p.logged += static_cast<std::size_t>(n);
	}
}


std::vector<std::byte> agent::adopt_key(parser_run &p, xmem::message &m)
{
	const std::string &what = p.what;
	std::vector<std::byte> reply = encode_status(false);
	std::error_code ec;
	if (m.header.kind == xmem::wire::kind::error) {
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
			/*
			 * As OpenSSH (parse_key_constraints: death = now +
			 * seconds): a lifetime constraint, 0 included, replaces
			 * -t; a lifetime of 0 expires the key at once, before
			 * any use of it.
			 */
			std::optional<std::uint32_t> life;
			if (rec->flags & key_record_has_lifetime)
				life = rec->lifetime;
			else
				life = opts_.lifetime;
			const auto backend = got.backend.value_or(xmem::backend::ordinary);
			keys_.emplace_back(std::move(got.memory), std::move(map));
			key_entry &k = keys_.back();
			if (life)
				k.expiry = steady::now() + std::chrono::seconds(*life);
			for (auto it = keys_.begin(); it != std::prev(keys_.end()); ++it) {
				if (std::equal(it->blob().begin(), it->blob().end(),
					       k.blob().begin(), k.blob().end())) {
					remove_key(it, "replaced by the same key added again");
					break;
				}
			}
			log(what + ": added Ed25519 key '" + printable(k.comment()) + "'" +
			    (life ? " for " + std::to_string(*life) + " s" : "") +
			    " in " + std::string(xmem::to_string(backend)));
			reply = encode_status(true);
		}
	} else {
		log(what + ": unexpected answer from the parser");
	}
	return reply;
}

/* The parser answered (or will not): the client gets @reply and is read again. */

/* The parser answered (or will not): the client gets @reply and is read again. With mutex_ held. */
void agent::finish_parser(std::uint64_t id, const std::vector<std::byte> &reply)
{
	parser_run &p = parsers_.at(id);
	p.answered = true;
	if (p.channel.valid()) {
		::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p.channel.fd().get(), nullptr);
		p.channel = xmem::channel();
	}
	p.deadline = steady::now() + parser_exit_timeout;
	if (p.pidfd)
		watch(p.pidfd.get(), id, ev_parser_exit, EPOLLIN);
	/* The body the parser read: mapped again to be wiped, then let go. */
	if (p.body.valid()) {
		std::error_code ec;
		xmem::mapping m = xmem::mapping::map(p.body, xmem::access::read_write, ec);
		if (!ec)
			sodium_memzero(m.data(), m.size());
		p.body = xmem::memory();
	}
	p.reply.answer(xmem::reply::send(reply));
	start_queued();
}

/* Reaps a parser that answered: it exits; one that does not is killed. With mutex_ held. */
void agent::reap_parser(std::uint64_t id, bool kill)
{
	parser_run &p = parsers_.at(id);
	int status = 0;
	pid_t r = ::waitpid(p.pid, &status, WNOHANG);
	if (r == 0 && !kill)
		return;
	if (r == 0) {
		log(p.what + ": the parser did not exit; killed");
		::kill(p.pid, SIGKILL);
		r = ::waitpid(p.pid, &status, 0);
	}
	drain_errors(p);
	if (r == p.pid && WIFSIGNALED(status))
		log(p.what + ": the parser died of signal " + std::to_string(WTERMSIG(status)) +
		    " (" + strsignal(WTERMSIG(status)) + "); only this request failed");
	else if (r == p.pid && WIFEXITED(status) && WEXITSTATUS(status) != 0)
		log(p.what + ": the parser exited with status " + std::to_string(WEXITSTATUS(status)));
	for (int fd : {p.pidfd.get(), p.errors.get()})
		if (fd >= 0)
			::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
	parsers_.erase(id);
	start_queued();
}

void agent::on_parser(std::uint64_t id, std::uint64_t what)
{
	auto it = parsers_.find(id);
	if (it == parsers_.end())
		return;
	parser_run &p = it->second;
	if (what == ev_parser_errors) {
		drain_errors(p);
		return;
	}
	if (what == ev_parser_exit) {
		reap_parser(id, false);
		return;
	}
	if (p.answered)
		return;
	/* Its channel is readable: the answer, or its end. */
	std::error_code ec;
	xmem::message m = p.channel.receive(ec);
	std::vector<std::byte> reply = encode_status(false);
	if (ec)
		log(p.what + ": no answer from the parser (" + ec.message() + ")");
	else
		reply = adopt_key(p, m);
	finish_parser(id, reply);
}

/* LOCK and UNLOCK; nullopt: a wrong passphrase, answered FAILURE after the delay. */
std::optional<std::vector<std::byte>> agent::handle_lock(const xmem::stream_context &ctx,
							  const lock_request &l)
{
	auto *salt = reinterpret_cast<unsigned char *>(lock_.data());
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
	const auto now = steady::now();
	if (now < unlock_refused_until_ || !unlock_queue_.empty()) {
		/*
		 * A failed attempt's delay runs: this one waits its turn, to be
		 * checked when the delay ends (a refusal unchecked would let a
		 * guessing client keep the owner out for good).
		 */
		if (unlock_queue_.size() >= max_queued_unlocks) {
			log("UNLOCK: refused, " + std::to_string(unlock_queue_.size()) +
			    " attempts wait already");
			return encode_status(false);
		}
		const unsigned slot = unlock_queue_.empty() ? 0 :
			static_cast<unsigned>((unlock_queue_.front().slot + unlock_queue_.size()) %
					      max_queued_unlocks);
		crypto_generichash(unlock_slot(slot), 32, pass, l.passphrase.size(), salt, 16);
		unlock_queue_.push_back({slot, ctx.defer()});
		log("UNLOCK: waits for the delay after failure " + std::to_string(unlock_failures_) +
		    " (ends in " +
		    std::to_string(std::chrono::ceil<std::chrono::milliseconds>(
				   std::max(unlock_refused_until_ - now, steady::duration::zero())).count()) +
		    " ms), " + std::to_string(unlock_queue_.size()) + " waiting");
		wake();
		return std::nullopt;
	}
	crypto_generichash(h, sizeof(h), pass, l.passphrase.size(), salt, 16);
	if (unlock_check(h, now))
		return encode_status(true);
	delayed_.push_back({unlock_refused_until_, ctx.defer()});
	wake();
	return std::nullopt;
}

/* The hash slot @slot of the queued UNLOCKs, in the lock's exclusive memory. */
unsigned char *agent::unlock_slot(unsigned slot)
{
	return reinterpret_cast<unsigned char *>(lock_.data()) + unlock_slots_offset + 32 * slot;
}

/*
 * Checks the passphrase hash @h (zeroed after) against the lock: unlocks and
 * returns true, or counts the failure and starts its delay and returns
 * false (the caller answers FAILURE when unlock_refused_until_ comes).
 */
bool agent::unlock_check(unsigned char *h, steady::time_point now)
{
	const unsigned char *stored = reinterpret_cast<const unsigned char *>(lock_.data()) + 16;
	const bool match = sodium_memcmp(h, stored, 32) == 0;	/* constant time */

	sodium_memzero(h, 32);
	if (match) {
		sodium_memzero(lock_.data(), 48);
		locked_ = false;
		unlock_failures_ = 0;
		log("unlocked");
		return true;
	}
	/*
	 * As OpenSSH's process_lock_agent(), 0.1 s x failures, but the server
	 * goes on: the answer is deferred to the helper's timer, and this
	 * client is not read meanwhile.
	 */
	if (unlock_failures_ < max_unlock_failures)
		unlock_failures_++;
	const auto delay = unlock_delay_step * unlock_failures_;
	unlock_refused_until_ = now + delay;
	log("UNLOCK: wrong passphrase (failure " + std::to_string(unlock_failures_) +
	    "); FAILURE in " + std::to_string(delay.count()) + " ms");
	return false;
}

/* The queued UNLOCKs whose turn has come (with mutex_ held), in order. */
void agent::run_unlock_queue()
{
	while (!unlock_queue_.empty()) {
		const auto now = steady::now();
		if (now < unlock_refused_until_)
			return;
		queued_unlock q = std::move(unlock_queue_.front());
		unlock_queue_.pop_front();
		unsigned char *h = unlock_slot(q.slot);
		if (!locked_) {
			sodium_memzero(h, 32);
			log("UNLOCK: not locked (unlocked while it waited)");
			q.reply.answer(xmem::reply::send(encode_status(false)));
			continue;
		}
		if (unlock_check(h, now))
			q.reply.answer(xmem::reply::send(encode_status(true)));
		else
			delayed_.push_back({unlock_refused_until_, std::move(q.reply)});
	}
}

/* The server's handler: one whole message, its body in the server's exclusive memory. */
xmem::reply agent::handle(const xmem::stream_context &ctx)
{
	std::optional<std::vector<std::byte>> r;
	try {
		std::lock_guard<std::mutex> g(mutex_);
		r = handle_request(ctx);
	} catch (const std::exception &e) {
		log("client " + std::to_string(ctx.peer) + ": " +
		    message_name(std::to_integer<std::uint8_t>(ctx.body[0])) + ": " + e.what() +
		    "; FAILURE");
		r = encode_status(false);
	}
	if (!r)
		return xmem::reply::later();
	return xmem::reply::send(std::move(*r));
}

/* The reply to @ctx.body, or nullopt when it comes later (a parser, a failed UNLOCK's delay). */
std::optional<std::vector<std::byte>> agent::handle_request(const xmem::stream_context &ctx)
{
	const bytes body(ctx.body.data(), ctx.body.size());
	const std::uint8_t type = std::to_integer<std::uint8_t>(body[0]);
	debug("client " + std::to_string(ctx.peer) + ": " + message_name(type) + ", " +
	      std::to_string(body.size()) + " bytes");

	/* Before every use of a key: an expired one is wiped, not used. */
	expire();
	if (locked_ && type != msg::unlock) {
		/* As OpenSSH: while locked, no identities and every other request fails. */
		if (type == msg::request_identities && body.size() == 1)
			return encode_identities({});
		debug(message_name(type) + ": refused, the agent is locked");
		return encode_status(false);
	}
	if (type == msg::add_identity || type == msg::add_id_constrained) {
		const std::string what = message_name(type);
		if (keys_.size() >= max_keys) {
			log(what + ": refused, " + std::to_string(max_keys) + " keys held already");
			return encode_status(false);
		}
		/*
		 * The signer never parses it: a copy, from the server's
		 * exclusive memory into exclusive memory of its own (the
		 * server wipes its own when this returns), goes to a parser.
		 */
		xmem::memory copy = xmem::memory::create("xmem-agent-add", body.size());
		{
			xmem::mapping m = xmem::mapping::map(copy, xmem::access::read_write);
			std::memcpy(m.data(), body.data(), body.size());
		}
		start_add(ctx.peer, what, ctx.defer(), std::move(copy));
		return std::nullopt;
	}

	request req;
	try {
		req = decode_request(body);
	} catch (const protocol_error &e) {
		log("client " + std::to_string(ctx.peer) + ": " + e.what() + "; FAILURE");
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
		return handle_lock(ctx, *l);
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

/* Deadlines: key lifetimes, parsers, delayed UNLOCK failures. With mutex_ held. */
void agent::on_timers()
{
	expire();
	const auto now = steady::now();
	std::vector<std::uint64_t> late;
	for (const auto &[id, p] : parsers_)
		if (p.deadline <= now)
			late.push_back(id);
	for (std::uint64_t id : late) {
		parser_run &p = parsers_.at(id);
		if (!p.answered) {
			log(p.what + ": no answer from the parser (timed out after " +
			    std::to_string(parser_timeout.count()) + " ms)");
			finish_parser(id, encode_status(false));
		}
		reap_parser(id, true);
	}
	for (auto it = delayed_.begin(); it != delayed_.end();) {
		if (it->at <= now) {
			it->reply.answer(xmem::reply::send(encode_status(false)));
			it = delayed_.erase(it);
		} else {
			++it;
		}
	}
	run_unlock_queue();
}

/* How the server's reports read in the agent's log (the phrases tests/agent looks for). */
void agent::on_server_error(const xmem::log_event &e)
{
	if (e.what == "peer limit") {
		log("refused a client: " + std::to_string(client_limit_) + " connected already");
		return;
	}
	if (e.what == "refused")
		return;	/* on_connect logged it */
	std::string line = "client " + std::to_string(e.peer) + " closed: " + std::string(e.what);
	if (e.error && e.error != std::errc::timed_out)
		line += " (" + e.error.message() + ")";
	log(line);
}

/* The helper thread: parsers, deadlines, signals. */
void agent::helper()
{
	for (;;) {
		int timeout;
		{
			std::lock_guard<std::mutex> g(mutex_);
			timeout = next_timeout_ms();
		}
		struct epoll_event evs[64];
		const int n = ::epoll_wait(epoll_.get(), evs, 64, timeout);
		if (n < 0 && errno != EINTR) {
			log(std::string("epoll_wait: ") + std::strerror(errno) + ": stopping");
			server_->stop();
			return;
		}
		std::lock_guard<std::mutex> g(mutex_);
		if (stopping_)
			return;
		for (int i = 0; i < n; i++) {
			const std::uint64_t id = evs[i].data.u64 >> 2;
			const std::uint64_t what = evs[i].data.u64 & 3;
			if (what != ev_other) {
				on_parser(id, what);
			} else if (id == 1) {
				std::uint64_t v;
				[[maybe_unused]] ssize_t r = ::read(wake_.get(), &v, sizeof(v));
			} else {
				struct signalfd_siginfo si{};
				if (::read(signals_.get(), &si, sizeof(si)) == sizeof(si)) {
					log(std::string("signal ") + strsignal(static_cast<int>(si.ssi_signo)) +
					    ": stopping");
					server_->stop();
					return;
				}
			}
		}
		on_timers();
	}
}

int agent::run(xmem::unique_fd listen_fd, const std::string &path)
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
	wake_ = xmem::unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (!wake_)
		throw std::system_error(errno, std::generic_category(), "eventfd");
	lock_ = xmem::mapping::map(xmem::memory::create("xmem-agent-lock", 4096), xmem::access::read_write);

	/* As OpenSSH's maxfds: clients only as many as fds allow, with room for parsers. */
	struct rlimit nofile{};
	if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
		const std::size_t fds = static_cast<std::size_t>(nofile.rlim_cur);
		/* Each client: its socket, and the fd of an ADD body it is sending. */
		client_limit_ = std::min(max_clients, fds > fd_reserve + 2 ? (fds - fd_reserve) / 2 : 1);
	}
	log("serving at most " + std::to_string(client_limit_) + " clients at once (RLIMIT_NOFILE " +
	    std::to_string(nofile.rlim_cur) + ")");

	xmem::stream_options so;
	so.max_message = max_message;	/* OpenSSH's AGENT_MAX_LEN: larger lengths close */
	so.body_page = 4096;
	so.first_region = 16384;
	so.body_budget = body_budget;
	so.body_budget_per_uid = uid_body_budget;
	so.max_peers = client_limit_;
	so.max_peers_per_uid = client_limit_;	/* every client is our uid or root */
	so.message_timeout = message_deadline_;
	so.reply_timeout = unread_deadline_;
	so.answer_timeout = answer_deadline;
	so.requests_per_second = 0;	/* a pipelining client is served in turn, not closed */
	so.peer_pidfds = false;		/* decisions use the uid only */
	/* XMEM_AGENT_ENGINE=epoll: epoll even where io_uring works (xmem-agent(1), tests/agent). */
	const char *engine = std::getenv("XMEM_AGENT_ENGINE");
	so.force_epoll = engine && std::strcmp(engine, "epoll") == 0;
	xmem::stream_server::callbacks cb;
	cb.on_request = [this](const xmem::stream_context &ctx) { return handle(ctx); };
	cb.on_connect = [](const xmem::peer_info &p) {
		/* As ssh-agent: only our own uid, or root. */
		if (p.cred.uid != ::geteuid() && p.cred.uid != 0) {
			log("refused a client of uid " + std::to_string(p.cred.uid) + " (pid " +
			    std::to_string(p.cred.pid) + ")");
			return EACCES;
		}
		debug("client " + std::to_string(p.peer) + " connected (pid " + std::to_string(p.cred.pid) + ")");
		return 0;
	};
	cb.on_error = [this](const xmem::log_event &e) { on_server_error(e); };
	xmem::stream_server server(std::move(listen_fd), std::move(cb), so);
	server_ = &server;
	const xmem::kernel_support k = xmem::probe_kernel();
	log("listening on " + path + " (keys in " +
	    (k.exclusive ? "memfd_exclusive" : k.secret ? "memfd_secret" : "no exclusive memory") +
	    "; served on " + std::string(xmem::to_string(server.engine())) + ")");
	if (!server.fallback_reason().empty())
		debug("not io_uring: " + server.fallback_reason());

	watch(signals_.get(), 0, ev_other, EPOLLIN);
	watch(wake_.get(), 1, ev_other, EPOLLIN);
	std::thread helper_thread([this] { helper(); });
	try {
		server.run();
	} catch (...) {
		server.stop();
		signal_stop();
		helper_thread.join();
		throw;
	}
	helper_thread.join();
	std::lock_guard<std::mutex> g(mutex_);
	keys_.clear();
	for (auto &[pid, p] : parsers_) {
		::kill(p.pid, SIGKILL);
		int st;
		::waitpid(p.pid, &st, 0);
	}
	return 0;
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
		{"test-deadline", required_argument, nullptr, 'L'},
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
		case 'L':
			o.test_deadline = std::chrono::milliseconds(
				xmem_examples::parse_number(optarg, 3600000, "--test-deadline"));
			break;
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

	/*
	 * Exclusive memory, tried before the fork: a failure (RLIMIT_MEMLOCK,
	 * no memfd_secret or memfd_exclusive) then reaches the shell's stderr
	 * and exit status, not the log of a background agent (/dev/null).
	 */
	try {
		(void)xmem::mapping::map(xmem::memory::create("xmem-agent-probe", 4096),
					 xmem::access::read_write);
	} catch (const std::exception &e) {
		log(std::string("cannot start: exclusive memory: ") + e.what());
		return 1;
	}

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
		agent a(o);
		rc = a.run(std::move(sock.fd), sock.path);
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
