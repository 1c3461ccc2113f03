// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A peer that never takes its replies must not starve the others
 * (review-peer finding 1). It failed before the server refused requests
 * sent before the last reply was taken and kept a closed peer's slot while
 * its reply is unread (userlib/server.cpp, peer_state::draining).
 *
 * Each memory reply carries one fd by SCM_RIGHTS. While the message sits
 * unread in the peer's receive queue the kernel counts that fd as in flight
 * for the SENDING user (user->unix_inflight, net/unix/garbage.c), and
 * unix_attach_fds() refuses more with ETOOMANYREFS once that count exceeds
 * the sender's RLIMIT_NOFILE, unless it has CAP_SYS_RESOURCE or
 * CAP_SYS_ADMIN. The server reads a peer's next request as soon as its
 * previous reply was queued, not taken, and a connection it closes leaves
 * its queue with the peer: a peer of an allowed uid that sends requests and
 * reads nothing makes every later memory reply of the server fail.
 *
 * Each case runs in a forked child that drops to an unused uid (no
 * capabilities) when root, with RLIMIT_NOFILE 256, a server with
 * max_peers 16 and peer_timeout 200 ms, and a hostile client of the same uid
 * (the in-flight count is per sender uid; the hostile uid only has to be
 * allowed): two connections that send 200 requests each and read nothing,
 * kept open. Then an honest client must get memory.
 */
#define BOOST_TEST_MODULE inflight
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <xmem/server.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace xmem;
using namespace std::chrono_literals;

namespace {

constexpr uid_t unused_uid = 64999;	/* the child's uid when the tests run as root */
constexpr rlim_t nofile = 256;
constexpr int hostile_connections = 2;
constexpr int requests_each = 200;	/* below request_burst: not closed as a flood */

enum outcome { pass = 0, honest_failed = 1, setup_failed = 2, fd_leaked = 3 };

outcome serve_and_attack(const std::string &path, bool force_epoll, bool sequential);

/*
 * The scenario, in the child; returns its outcome and says why on stderr.
 * The child's fds are counted before the server is made and after all of it
 * is gone.
 */
outcome scenario(bool force_epoll, bool sequential)
{
	if (::geteuid() == 0 &&
	    (::setresgid(unused_uid, unused_uid, unused_uid) < 0 ||
	     ::setresuid(unused_uid, unused_uid, unused_uid) < 0)) {
		std::perror("setresuid");
		return setup_failed;
	}
	const struct rlimit rl = {nofile, nofile};
	if (::setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		std::perror("setrlimit");
		return setup_failed;
	}
	const std::string dir = test::temp_dir();
	const std::size_t fds_before = test::open_fd_count();
	outcome result = serve_and_attack(dir + "/inflight.sock", force_epoll, sequential);
	::rmdir(dir.c_str());
	if (result == pass && test::open_fd_count() != fds_before) {
		std::fprintf(stderr, "fds: %zu before, %zu after\n", fds_before,
			     test::open_fd_count());
		result = fd_leaked;
	}
	return result;
}

outcome serve_and_attack(const std::string &path, bool force_epoll, bool sequential)
{
	auto mem = std::make_shared<const memory>(
		memory::create("key", 4096, test::suite_options()));

	server_options so;
	so.max_peers = 16;
	so.peer_timeout = 200ms;
	so.request_burst = 256;
	so.force_epoll = force_epoll;
	so.event_loops = 1;
	std::string log;
	std::mutex log_mutex;
	server srv(listener::bind(path), [&](const request_context &) {
		return reply::share(mem);
	}, so, [&](const log_event &e) {
		std::lock_guard<std::mutex> g(log_mutex);
		if (log.size() < 4096)
			log += std::string(e.what) + ": " + e.error.message() + "\n";
	});
	std::fprintf(stderr, "engine %s\n", std::string(to_string(srv.engine())).c_str());
	std::thread loop([&] { srv.run(); });

	std::vector<channel> hostile;
	int sent = 0;
	for (int c = 0; c < hostile_connections; c++) {
		hostile.push_back(channel::connect(path));
		channel &ch = hostile.back();
		ch.set_timeout(1000ms);
		for (int i = 0; i < requests_each; i++) {
			std::error_code ec;
			wire::header h;
			h.kind = wire::kind::request;
			h.name = "key";
			ch.send(h, {}, ec);
			if (ec)
				break;
			sent++;
		}
		if (!sequential)
			continue;
		/* Wait for the server to close this one (reply not taken) before the next. */
		struct pollfd p = {ch.fd().get(), POLLRDHUP, 0};
		(void)::poll(&p, 1, 5000);
	}
	/* Until the server has queued more replies than RLIMIT_NOFILE, or failed one. */
	for (int i = 0; i < 500; i++) {
		const server_stats st = srv.stats();
		if (st.served > nofile || st.errors > (sequential ? hostile_connections : 0u))
			break;
		std::this_thread::sleep_for(10ms);
	}
	const server_stats st = srv.stats();
	std::fprintf(stderr, "hostile: %d requests sent, none read; server: served %llu, "
		     "errors %llu\n", sent, static_cast<unsigned long long>(st.served),
		     static_cast<unsigned long long>(st.errors));

	outcome result = pass;
	{
		connect_options co;
		co.timeout = 2000ms;
		std::error_code ec;
		channel honest = channel::connect(path, co, ec);
		requirements req;
		req.size = 4096;
		received_memory r;
		if (!ec)
			r = honest.request_memory("key", req, ec);
		if (ec || !r.memory.valid()) {
			std::fprintf(stderr, "honest client: %s\n", ec.message().c_str());
			result = honest_failed;
		}
	}
	srv.stop();
	loop.join();
	{
		std::lock_guard<std::mutex> g(log_mutex);
		std::fprintf(stderr, "server log:\n%s", log.c_str());
	}
	return result;
}

/* Runs scenario() in a child; the test fails unless the honest client was served. */
void run_in_child(bool force_epoll, bool sequential)
{
	std::fflush(nullptr);
	const pid_t child = ::fork();
	BOOST_REQUIRE(child >= 0);
	if (child == 0) {
		outcome o = setup_failed;
		try {
			o = scenario(force_epoll, sequential);
		} catch (const std::exception &e) {
			std::fprintf(stderr, "child: %s\n", e.what());
		}
		std::fflush(nullptr);
		::_exit(o);
	}
	int status = 0;
	BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
	BOOST_REQUIRE(WIFEXITED(status));
	BOOST_REQUIRE_MESSAGE(WEXITSTATUS(status) != setup_failed, "setup failed (see stderr)");
	BOOST_TEST(WEXITSTATUS(status) != fd_leaked, "the child's fd count differs (see stderr)");
	BOOST_TEST(WEXITSTATUS(status) != honest_failed,
		   "the honest client got no memory while a peer parked its replies");
}

} // namespace

BOOST_AUTO_TEST_CASE(a_peer_that_never_takes_its_replies_does_not_starve_others_io_uring)
{
	run_in_child(false, false);
}

BOOST_AUTO_TEST_CASE(a_peer_that_never_takes_its_replies_does_not_starve_others_epoll)
{
	run_in_child(true, false);
}

BOOST_AUTO_TEST_CASE(closed_connections_that_parked_replies_do_not_starve_others)
{
	run_in_child(false, true);
}
