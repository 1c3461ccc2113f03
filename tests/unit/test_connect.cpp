// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Clients that check whom they talk to (userlib/connect.cpp):
 * channel::connect(path, connect_options) with a timeout set before
 * connect(2) and the server's SO_PEERCRED uid checked; request_memory's fd
 * budget of one. Every test checks the process's count of open fds.
 */
#define BOOST_TEST_MODULE connect
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <chrono>
#include <thread>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace xmem;
using namespace std::chrono_literals;

namespace {

/* A listening socket at @path with backlog @backlog that never accepts. */
unique_fd deaf_listener(const std::string &path, int backlog)
{
	unique_fd l(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	struct sockaddr_un a = {};
	a.sun_family = AF_UNIX;
	std::strcpy(a.sun_path, path.c_str());
	BOOST_REQUIRE(::bind(l.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
	BOOST_REQUIRE(::listen(l.get(), backlog) == 0);
	return l;
}

} // namespace

BOOST_AUTO_TEST_CASE(connect_gives_up_on_a_full_backlog_after_its_timeout)
{
	std::string dir = test::temp_dir(), path = dir + "/deaf.sock";
	const std::size_t before = test::open_fd_count();
	{
		unique_fd l = deaf_listener(path, 0);
		std::vector<channel> in;
		connect_options quick;
		quick.timeout = 50ms;
		std::error_code ec;
		/* Fill the backlog: the first connects succeed, then one waits and times out. */
		for (int i = 0; i < 8 && !ec; i++) {
			channel c = channel::connect(path, quick, ec);
			if (!ec)
				in.push_back(std::move(c));
		}
		BOOST_REQUIRE_MESSAGE(ec, "the backlog never filled");
		BOOST_TEST((ec == std::errc::timed_out), ec.message());
		connect_options o;
		o.timeout = 300ms;
		const auto start = std::chrono::steady_clock::now();
		channel c = channel::connect(path, o, ec);
		const auto took = std::chrono::steady_clock::now() - start;
		BOOST_TEST((ec == std::errc::timed_out), ec.message());
		BOOST_TEST((took >= 250ms && took < 3s));
		BOOST_CHECK_THROW(channel::connect(path, o), std::system_error);
		::unlink(path.c_str());
	}
	::rmdir(dir.c_str());
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(connect_checks_the_servers_uid_before_anything_is_sent)
{
	std::string dir = test::temp_dir(), path = dir + "/s.sock";
	const std::size_t before = test::open_fd_count();
	{
		listener l = listener::bind(path);
		std::error_code ec;
		/* Our own uid (the server is this process): trusted by default. */
		channel ok = channel::connect(path, connect_options{}, ec);
		BOOST_TEST(!ec, ec.message());
		/* Named as another uid: refused, and the connection closed unused. */
		connect_options other;
		other.server_uid = ::geteuid() + 4242;
		channel no = channel::connect(path, other, ec);
		BOOST_TEST((ec == errc::peer_not_allowed), ec.message());
		BOOST_TEST(!no.valid());
		try {
			channel::connect(path, other);
			BOOST_FAIL("connected to a server of the wrong uid");
		} catch (const std::system_error &e) {
			const std::string what = e.what();
			BOOST_TEST(what.find("the server runs as uid " + std::to_string(::geteuid()) +
					     ", expected uid " +
					     std::to_string(::geteuid() + 4242)) != std::string::npos,
				   what);
		}
		/* Nothing reached the listener from the refused ones but the connections. */
		channel first = l.accept();
		BOOST_TEST(first.valid());
		for (int i = 0; i < 2; i++) {
			channel refused = l.accept();
			refused.set_timeout(200ms);
			refused.receive(ec);
			BOOST_TEST((ec == errc::peer_closed), ec.message());
		}
		connect_options bad;
		bad.timeout = -1ms;
		channel::connect(path, bad, ec);
		BOOST_TEST((ec == std::errc::invalid_argument));
	}
	::rmdir(dir.c_str());
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(request_memory_takes_one_fd_and_reads_an_error_past_a_reset)
{
	const std::size_t before = test::open_fd_count();
	{
		memory mem = memory::create("one", 4096, test::suite_options());
		/* A reply with two fds: over the budget of one, refused, none kept. */
		{
			auto [a, b] = channel::pair();
			std::thread t([&, &a = a] {
				a.receive();
				wire::header h;
				h.kind = wire::kind::memory;
				h.size = 4096;
				borrowed_fd fds[] = {mem.fd(), mem.fd()};
				a.send(h, fds);
			});
			std::error_code ec;
			b.request_memory("one", {}, ec);
			t.join();
			BOOST_TEST((ec == errc::too_many_fds || ec == errc::control_truncated),
				   ec.message());
		}
		/* The server answers and closes before reading: the error message still arrives. */
		{
			auto [a, b] = channel::pair();
			b.send_request("first, left unread");
			a.send_error(EACCES, "");
			a = channel();
			std::error_code ec;
			b.request_memory("one", {}, ec);
			BOOST_TEST((ec == std::errc::permission_denied), ec.message());
		}
	}
	BOOST_TEST(test::open_fd_count() == before);
}
