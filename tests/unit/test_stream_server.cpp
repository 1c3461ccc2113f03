// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The server's stream mode (include/xmem/stream_server.hpp): length-prefixed
 * messages on AF_UNIX SOCK_STREAM. Bodies in exclusive memory (the handler's
 * span lies in a memfd_secret / memfd_exclusive mapping), growing within the
 * budgets; pipelining and one message per peer per turn; the length limits,
 * slow senders, unread replies, deferred answers, peer limits, fds a peer
 * attaches and RLIMIT_NOFILE, on io_uring (default) and on epoll
 * (XMEM_TEST_STREAM_ENGINE=epoll); every test checks the process's open fds
 * afterwards and that a witness peer is served after each bad one.
 */
#define BOOST_TEST_MODULE stream_server
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <xmem/stream_server.hpp>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace xmem;
using namespace std::chrono_literals;
using xmem::test::wait_until;

namespace {

std::vector<std::byte> bytes_of(std::string_view s)
{
	const auto *p = reinterpret_cast<const std::byte *>(s.data());
	return {p, p + s.size()};
}

std::string text_of(std::span<const std::byte> b)
{
	return {reinterpret_cast<const char *>(b.data()), b.size()};
}

std::string be32(std::uint32_t n)
{
	return {char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
}

std::string frame(std::string_view body)
{
	return be32(static_cast<std::uint32_t>(body.size())) + std::string(body);
}

/* The /proc/self/maps line of the mapping holding @p ("" when none). */
std::string maps_line_of(const void *p)
{
	const auto a = reinterpret_cast<std::uintptr_t>(p);
	std::ifstream maps("/proc/self/maps");
	std::string line;
	while (std::getline(maps, line)) {
		unsigned long lo = 0, hi = 0;
		if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi)
			return line;
	}
	return "";
}

/* A listening AF_UNIX SOCK_STREAM socket at @path. */
unique_fd stream_listener(const std::string &path)
{
	unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	BOOST_REQUIRE(fd);
	struct sockaddr_un addr = {};
	addr.sun_family = AF_UNIX;
	std::strcpy(addr.sun_path, path.c_str());
	BOOST_REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);
	BOOST_REQUIRE(::listen(fd.get(), 1024) == 0);
	return fd;
}

unique_fd stream_connect(const std::string &path)
{
	unique_fd fd = test::unix_connect(path, SOCK_STREAM);
	BOOST_REQUIRE(fd);
	return fd;
}

void send_all(int fd, std::string_view data)
{
	while (!data.empty()) {
		const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
		BOOST_REQUIRE_MESSAGE(n > 0, "send: " << std::strerror(errno));
		data.remove_prefix(static_cast<std::size_t>(n));
	}
}

/* @n bytes from @fd within @limit; nullopt on end of file, reset or timeout. */
std::optional<std::string> recv_exact(int fd, std::size_t n, std::chrono::milliseconds limit = 5000ms)
{
	std::string out;
	const auto end = std::chrono::steady_clock::now() + limit;
	while (out.size() < n) {
		const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
			end - std::chrono::steady_clock::now());
		struct pollfd p = {fd, POLLIN, 0};
		if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
			return std::nullopt;
		char buf[65536];
		const ssize_t k = ::recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
		if (k <= 0)
			return std::nullopt;
		out.append(buf, static_cast<std::size_t>(k));
	}
	return out;
}

/* The next reply body, or nullopt when the server closed the connection. */
std::optional<std::string> recv_frame(int fd, std::chrono::milliseconds limit = 5000ms)
{
	auto len = recv_exact(fd, 4, limit);
	if (!len)
		return std::nullopt;
	const auto *u = reinterpret_cast<const unsigned char *>(len->data());
	const std::uint32_t n = (std::uint32_t(u[0]) << 24) | (std::uint32_t(u[1]) << 16) |
				(std::uint32_t(u[2]) << 8) | u[3];
	return recv_exact(fd, n, limit);
}

std::optional<std::string> rpc(int fd, std::string_view body)
{
	send_all(fd, frame(body));
	return recv_frame(fd);
}

/* True when the server closed @fd within @limit (end of file or reset, no more bytes). */
bool closed_by_server(int fd, std::chrono::milliseconds limit = 5000ms)
{
	const auto end = std::chrono::steady_clock::now() + limit;
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
			end - std::chrono::steady_clock::now());
		if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
			return false;
		char buf[65536];
		const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0 && errno != EAGAIN)
			return false;
	}
}

/* The engine under test: XMEM_TEST_STREAM_ENGINE=epoll (meson test stream_server_epoll), else io_uring. */
bool want_epoll()
{
	const char *e = std::getenv("XMEM_TEST_STREAM_ENGINE");
	return e && std::string_view(e) == "epoll";
}

stream_options test_options()
{
	stream_options o;
	o.memory = test::suite_options();
	o.force_epoll = want_epoll();
	return o;
}

/* A stream server on its own thread, its log kept. */
struct running {
	std::string dir = test::temp_dir();
	std::string path = dir + "/stream.sock";
	std::unique_ptr<stream_server> srv;
	std::thread thread;
	std::mutex mutex;
	std::vector<std::string> log;

	running(stream_options o, stream_server::handler h,
		std::function<int(const peer_info &)> on_connect = {})
	{
		stream_server::callbacks cb;
		cb.on_request = std::move(h);
		cb.on_connect = std::move(on_connect);
		cb.on_error = [this](const log_event &e) {
			std::lock_guard<std::mutex> g(mutex);
			log.emplace_back(e.what);
		};
		srv = std::make_unique<stream_server>(stream_listener(path), std::move(cb), o);
		thread = std::thread([this] { srv->run(); });
	}
	~running()
	{
		srv->stop();
		thread.join();
		srv.reset();
		::unlink(path.c_str());
		::rmdir(dir.c_str());
	}
	/* Log entries containing @what. */
	std::size_t logged(std::string_view what)
	{
		std::lock_guard<std::mutex> g(mutex);
		std::size_t n = 0;
		for (const auto &w : log)
			n += w.find(what) != std::string::npos;
		return n;
	}
	std::string all_log()
	{
		std::lock_guard<std::mutex> g(mutex);
		std::string s;
		for (const auto &w : log)
			s += w + "; ";
		return s;
	}
};

/* Answers "ok:" and the body, and records where the body was. */
struct echo {
	std::mutex mutex;
	std::vector<std::string> where;		/* maps lines of the bodies */
	std::vector<std::uint64_t> order;	/* peers, in the order handled */

	stream_server::handler handler()
	{
		return [this](const stream_context &c) {
			{
				std::lock_guard<std::mutex> g(mutex);
				where.push_back(maps_line_of(c.body.data()));
				order.push_back(c.peer);
			}
			return reply::send(bytes_of("ok:" + text_of(c.body)));
		};
	}
};

bool exclusive_line(const std::string &l)
{
	return l.find("secretmem") != std::string::npos ||
	       l.find("memfd_exclusive") != std::string::npos;
}

} // namespace

BOOST_AUTO_TEST_CASE(bodies_in_exclusive_memory_pipelined_in_order)
{
	const std::size_t before = test::open_fd_count();
	{
		echo e;
		running s(test_options(), e.handler());
		/* This host's kernel has io_uring (as test_server requires). */
		BOOST_TEST((s.srv->engine() == (want_epoll() ? server_engine::epoll
							     : server_engine::io_uring)),
			   "engine " << to_string(s.srv->engine()) << ": " << s.srv->fallback_reason());
		unique_fd c = stream_connect(s.path);
		const std::string big(20000, 'b');	/* a region of its own, grown once */
		/* Three messages in one write, the middle one larger than the peer's page. */
		send_all(c.get(), frame("one") + frame(big) + frame("three"));
		BOOST_TEST(recv_frame(c.get()).value_or("") == "ok:one");
		BOOST_TEST(recv_frame(c.get()).value_or("") == "ok:" + big);
		BOOST_TEST(recv_frame(c.get()).value_or("") == "ok:three");
		/* A body sent a byte at a time. */
		const std::string f = frame("slowly");
		for (char ch : f) {
			send_all(c.get(), std::string_view(&ch, 1));
			std::this_thread::sleep_for(1ms);
		}
		BOOST_TEST(recv_frame(c.get()).value_or("") == "ok:slowly");
		std::lock_guard<std::mutex> g(e.mutex);
		BOOST_REQUIRE_EQUAL(e.where.size(), 4u);
		for (const auto &w : e.where)
			BOOST_TEST(exclusive_line(w), "body mapped at: " << w);
		BOOST_TEST(s.srv->body_bytes() == 0u);	/* the region went once handled */
		BOOST_TEST(s.srv->stats().served == 4u);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(length_zero_and_past_the_limit_close_only_that_peer)
{
	const std::size_t before = test::open_fd_count();
	{
		echo e;
		stream_options o = test_options();
		o.max_message = 1000;
		running s(o, e.handler());
		unique_fd witness = stream_connect(s.path);
		BOOST_TEST(rpc(witness.get(), "w").value_or("") == "ok:w");
		for (std::uint32_t len : {0u, 1001u, 0xffffffffu}) {
			unique_fd bad = stream_connect(s.path);
			send_all(bad.get(), be32(len) + "xyz");
			BOOST_TEST(closed_by_server(bad.get()), "length " << len);
			BOOST_TEST(rpc(witness.get(), "w").value_or("") == "ok:w");
		}
		BOOST_TEST(s.logged("message of 0 bytes") == 1u);
		BOOST_TEST(s.logged("message of 1001 bytes") == 1u);
		BOOST_TEST(s.logged("message of 4294967295 bytes") == 1u);
		/* The limit itself is a message. */
		unique_fd edge = stream_connect(s.path);
		BOOST_TEST(rpc(edge.get(), std::string(1000, 'e')).value_or("").size() == 1003u);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(bodies_grow_with_the_bytes_within_the_budgets)
{
	const std::size_t before = test::open_fd_count();
	{
		echo e;
		stream_options o = test_options();
		o.max_message = 256 * 1024;
		o.body_budget = 512 * 1024;
		o.body_budget_per_uid = 384 * 1024;
		running s(o, e.handler());
		unique_fd witness = stream_connect(s.path);
		/* Half-sent 256 KiB frames hold their first region only. */
		std::vector<unique_fd> half;
		for (int i = 0; i < 8; i++) {
			half.push_back(stream_connect(s.path));
			send_all(half.back().get(), be32(256 * 1024) + "x");
		}
		BOOST_TEST(wait_until([&] { return s.srv->body_bytes() == 8 * 16384u; }),
			   s.srv->body_bytes() << " bytes held for 8 half-sent frames");
		/* One that sends 100 KiB of it holds 128 KiB (16, 32, 64, 128: the last step). */
		unique_fd more = stream_connect(s.path);
		send_all(more.get(), be32(256 * 1024) + std::string(100 * 1024, 'm'));
		BOOST_TEST(wait_until([&] { return s.srv->body_bytes() == 8 * 16384u + 128 * 1024u; }),
			   s.srv->body_bytes() << " bytes");
		/* Growing it to 256 KiB passes the uid's 384 KiB: that peer is closed, named. */
		send_all(more.get(), std::string(40 * 1024, 'm'));
		BOOST_TEST(closed_by_server(more.get()));
		BOOST_TEST(s.logged("the body memory budget is spent") == 1u, s.all_log());
		BOOST_TEST(wait_until([&] { return s.srv->body_bytes() == 8 * 16384u; }));
		BOOST_TEST(rpc(witness.get(), "w").value_or("") == "ok:w");
		half.clear();
		BOOST_TEST(wait_until([&] { return s.srv->body_bytes() == 0u; }));
		/* With the budget back, a whole 200 KiB body is served. */
		BOOST_TEST(rpc(witness.get(), std::string(200 * 1024, 'z')).value_or("").size() ==
			   200 * 1024 + 3u);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(slow_sender_closed_idle_peer_kept)
{
	const std::size_t before = test::open_fd_count();
	{
		echo e;
		stream_options o = test_options();
		o.message_timeout = 300ms;
		running s(o, e.handler());
		unique_fd idle = stream_connect(s.path);
		unique_fd slow = stream_connect(s.path);
		send_all(slow.get(), be32(10) + "ab");
		BOOST_TEST(closed_by_server(slow.get(), 3000ms));
		BOOST_TEST(s.logged("a message not completed within 300 ms (slow sender)") == 1u,
			   s.all_log());
		std::this_thread::sleep_for(400ms);
		/* No message started: idle_timeout 0 keeps it. */
		BOOST_TEST(rpc(idle.get(), "still").value_or("") == "ok:still");
		BOOST_TEST(s.srv->stats().timeouts == 1u);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(unread_replies_park_one_and_close_at_the_deadline)
{
	const std::size_t before = test::open_fd_count();
	{
		std::atomic<unsigned> calls{0};
		stream_options o = test_options();
		o.reply_timeout = 400ms;
		running s(o, [&](const stream_context &c) {
			if (text_of(c.body) == "big")
				calls++;
			return reply::send(std::vector<std::byte>(text_of(c.body) == "big" ? 65536 : 2));
		});
		unique_fd lazy = stream_connect(s.path);
		int small = 4096;
		::setsockopt(lazy.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
		std::string flood;
		for (int i = 0; i < 200; i++)
			flood += frame("big");
		send_all(lazy.get(), flood);
		unique_fd witness = stream_connect(s.path);
		BOOST_TEST(rpc(witness.get(), "w").value_or("").size() == 2u);
		std::this_thread::sleep_for(200ms);
		/*
		 * It is not read while a reply waits: what it sent beyond the
		 * socket's buffers for replies (about 200 KiB) stays unread.
		 */
		BOOST_TEST(calls.load() <= 8u, calls.load() << " of 200 handled");
		BOOST_TEST(wait_until([&] { return s.logged("bytes of replies unread for 400 ms") == 1; },
				      3000ms),
			   s.all_log());
		BOOST_TEST(closed_by_server(lazy.get()));
		BOOST_TEST(rpc(witness.get(), "w").value_or("").size() == 2u);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(one_message_per_peer_per_turn)
{
	const std::size_t before = test::open_fd_count();
	{
		std::mutex m;
		std::vector<std::string> order;
		std::atomic<bool> witness_sent{false};
		running s(test_options(), [&](const stream_context &c) {
			const std::string b = text_of(c.body);
			if (b == "f0")
				wait_until([&] { return witness_sent.load(); }, 3000ms);
			std::lock_guard<std::mutex> g(m);
			order.push_back(b);
			return reply::send(bytes_of("."));
		});
		unique_fd flood = stream_connect(s.path);
		std::string all;
		for (int i = 0; i < 1000; i++)
			all += frame("f" + std::to_string(i));
		send_all(flood.get(), all); /* about 10 KB: in the socket at once */
		std::this_thread::sleep_for(50ms); /* the loop is in the handler of f0 */
		unique_fd witness = stream_connect(s.path);
		send_all(witness.get(), frame("w"));
		witness_sent = true;
		BOOST_TEST(recv_frame(witness.get()).value_or("") == ".");
		std::size_t at = 0;
		{
			std::lock_guard<std::mutex> g(m);
			at = std::find(order.begin(), order.end(), "w") - order.begin();
		}
		/* Accepted on the next turn, read on the one after: a few flood messages before it. */
		BOOST_TEST(at <= 10u, "the witness was handled after " << at << " messages");
		for (int i = 0; i < 1000; i++)
			BOOST_REQUIRE(recv_frame(flood.get()).value_or("") == ".");
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(deferred_answers_from_another_thread)
{
	const std::size_t before = test::open_fd_count();
	{
		std::mutex m;
		std::vector<pending_reply> held;
		std::atomic<unsigned> later_calls{0};
		stream_options o = test_options();
		o.answer_timeout = 500ms;
		running s(o, [&](const stream_context &c) {
			const std::string b = text_of(c.body);
			if (b == "later" || b == "never" || b == "refuse") {
				later_calls++;
				std::lock_guard<std::mutex> g(m);
				held.push_back(c.defer());
				return reply::later();
			}
			return reply::send(bytes_of("now:" + b));
		});
		unique_fd a = stream_connect(s.path);
		unique_fd b = stream_connect(s.path);
		/* Two pipelined: the second is not read until the first is answered. */
		send_all(a.get(), frame("later") + frame("after"));
		BOOST_REQUIRE(wait_until([&] { return later_calls.load() == 1; }));
		BOOST_TEST(rpc(b.get(), "meanwhile").value_or("") == "now:meanwhile");
		BOOST_TEST(!recv_exact(a.get(), 1, 100ms));
		std::thread answerer([&] {
			std::lock_guard<std::mutex> g(m);
			held.back().answer(reply::send(bytes_of("answered")));
		});
		answerer.join();
		BOOST_TEST(recv_frame(a.get()).value_or("") == "answered");
		BOOST_TEST(recv_frame(a.get()).value_or("") == "now:after");
		/* reply::refuse through the handle closes the peer. */
		send_all(a.get(), frame("refuse"));
		BOOST_REQUIRE(wait_until([&] { return later_calls.load() == 2; }));
		{
			std::lock_guard<std::mutex> g(m);
			held.back().answer(reply::refuse(EPERM));
		}
		BOOST_TEST(closed_by_server(a.get()));
		BOOST_TEST(s.logged("refused by the handler") == 1u);
		/* Never answered: closed at answer_timeout. */
		send_all(b.get(), frame("never"));
		BOOST_TEST(closed_by_server(b.get(), 3000ms));
		BOOST_TEST(s.logged("timeout: no answer within 500 ms") == 1u, s.all_log());
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(peer_limit_uid_share_and_on_connect_close_without_a_message)
{
	const std::size_t before = test::open_fd_count();
	{
		echo e;
		stream_options o = test_options();
		o.max_peers = 4;
		o.max_peers_per_uid = 4;
		std::atomic<bool> refuse_next{false};
		running s(o, e.handler(), [&](const peer_info &) { return refuse_next ? EACCES : 0; });
		std::vector<unique_fd> peers;
		for (int i = 0; i < 4; i++) {
			peers.push_back(stream_connect(s.path));
			BOOST_TEST(rpc(peers.back().get(), "p").value_or("") == "ok:p");
		}
		unique_fd fifth = stream_connect(s.path);
		/* Closed with no byte: a stream protocol has no error message of ours. */
		BOOST_TEST(!recv_exact(fifth.get(), 1, 2000ms));
		BOOST_TEST(closed_by_server(fifth.get()));
		BOOST_TEST(s.logged("peer limit") == 1u);
		for (auto &p : peers)
			BOOST_TEST(rpc(p.get(), "p").value_or("") == "ok:p");
		peers.pop_back();
		BOOST_TEST(wait_until([&] { return s.srv->stats().active == 3; }));
		refuse_next = true;
		unique_fd refused = stream_connect(s.path);
		BOOST_TEST(closed_by_server(refused.get()));
		BOOST_TEST(s.logged("refused") == 1u);
	}
	{
		/* A uid's share: half of max_peers by default. */
		echo e;
		stream_options o = test_options();
		o.max_peers = 4;
		running s(o, e.handler());
		unique_fd p1 = stream_connect(s.path), p2 = stream_connect(s.path);
		BOOST_TEST(rpc(p1.get(), "1").value_or("") == "ok:1");
		BOOST_TEST(rpc(p2.get(), "2").value_or("") == "ok:2");
		unique_fd p3 = stream_connect(s.path);
		BOOST_TEST(closed_by_server(p3.get()));
		BOOST_TEST(s.logged("uid share") == 1u);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(fds_a_peer_attaches_close_it_off_the_loop)
{
	const std::size_t before = test::open_fd_count();
	{
		echo e;
		running s(test_options(), e.handler());
		unique_fd witness = stream_connect(s.path);
		unique_fd bad = stream_connect(s.path);
		int pipefd[2];
		BOOST_REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
		const std::string f = frame("with fds");
		const long r = test::raw_send(bad.get(), std::as_bytes(std::span(f.data(), f.size())),
					      {pipefd[0], pipefd[1]});
		::close(pipefd[0]);
		::close(pipefd[1]);
		if (r < 0) {
			/* SO_PASSRIGHTS off (Linux 6.16): the kernel refused to carry them. */
			BOOST_TEST(errno == EPERM);
		} else {
			BOOST_TEST(closed_by_server(bad.get()));
			BOOST_TEST(s.logged("control data (fds) on a stream") == 1u, s.all_log());
			BOOST_TEST(wait_until([&] {
				const auto st = s.srv->stats();
				return st.stray_fds == 2 && st.stray_fds_closing == 0;
			}));
		}
		BOOST_TEST(rpc(witness.get(), "w").value_or("") == "ok:w");
		std::lock_guard<std::mutex> g(e.mutex);
		BOOST_TEST(e.order.size() == 1u); /* the message with fds was never handled */
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(constructor_checks)
{
	const std::size_t before = test::open_fd_count();
	const std::string dir = test::temp_dir();
	auto h = [](const stream_context &) { return reply::send(bytes_of("x")); };
	auto code_of = [&](unique_fd fd, stream_options o, stream_server::handler hh) {
		try {
			stream_server s(std::move(fd), {std::move(hh), {}, {}, {}}, o);
		} catch (const std::system_error &e) {
			return e.code();
		}
		return std::error_code();
	};
	const std::string path = dir + "/s";
	/* A SEQPACKET listener is not a stream one. */
	{
		listener l = listener::bind(dir + "/seq");
		unique_fd dup(::fcntl(l.fd().get(), F_DUPFD_CLOEXEC, 0));
		BOOST_TEST((code_of(std::move(dup), test_options(), h) == std::errc::invalid_argument));
	}
	/* Not listening. */
	BOOST_TEST((code_of(unique_fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)),
			    test_options(), h) == std::errc::invalid_argument));
	stream_options o = test_options();
	o.body_budget = o.max_message - 1;
	BOOST_TEST((code_of(stream_listener(path), o, h) == std::errc::invalid_argument));
	::unlink(path.c_str());
	BOOST_TEST((code_of(stream_listener(path), test_options(), {}) == std::errc::invalid_argument));
	::unlink(path.c_str());
	/* RLIMIT_NOFILE: far more peers than the hard limit allows. */
	struct rlimit rl;
	BOOST_REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
	o = test_options();
	o.max_peers = rl.rlim_max == RLIM_INFINITY ? std::size_t(UINT32_MAX) : rl.rlim_max + 1;
	BOOST_TEST((code_of(stream_listener(path), o, h) == std::errc::too_many_files_open));
	::unlink(path.c_str());
	::rmdir(dir.c_str());
	BOOST_TEST(test::open_fd_count() == before);
}
