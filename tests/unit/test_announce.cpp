// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What a memory message announces (userlib/announce.cpp), for channel and
 * server alike: memory carrying F_SEAL_EXEC, which memfd_create(2) adds to
 * every memfd when vm.memfd_noexec is set (Linux 6.3+), and which the wire
 * has no bit for. channel::send_memory threw bad_header on it.
 */
#define BOOST_TEST_MODULE announce
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <xmem/server.hpp>

#include <chrono>
#include <fcntl.h>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>

using namespace xmem;

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U /* include/uapi/linux/memfd.h, Linux 6.3 */
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020 /* include/uapi/linux/fcntl.h, Linux 6.3 */
#endif

namespace {

/* 4 KiB of memfd with F_SEAL_EXEC (and SHRINK, GROW), as vm.memfd_noexec=1 makes it. */
memory exec_sealed_memfd()
{
	unique_fd fd(::memfd_create("exec-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL));
	BOOST_REQUIRE_MESSAGE(fd, "memfd_create(MFD_NOEXEC_SEAL): " << std::strerror(errno));
	BOOST_REQUIRE(::ftruncate(fd.get(), 4096) == 0);
	BOOST_REQUIRE(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
	BOOST_REQUIRE((::fcntl(fd.get(), F_GET_SEALS) & F_SEAL_EXEC) != 0);
	std::error_code ec;
	memory m = memory::adopt(std::move(fd), ec);
	BOOST_REQUIRE(!ec);
	return m;
}

requirements ordinary_ok()
{
	requirements req;
	req.size = 4096;
	req.accept_ordinary = true;
	req.seals = seals(seals::shrink | seals::grow);
	return req;
}

} // namespace

BOOST_AUTO_TEST_CASE(channel_sends_exec_sealed_memory_announcing_the_seals_the_wire_has)
{
	const std::size_t before = test::open_fd_count();
	{
		memory m = exec_sealed_memfd();
		auto [a, b] = channel::pair();
		a.send_memory(m, "noexec");
		received_memory got = b.receive_memory(ordinary_ok());
		BOOST_TEST(got.size == 4096u);
		BOOST_TEST(got.seals.contains(seals(seals::shrink | seals::grow)));
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(server_replies_with_exec_sealed_memory_on_both_engines)
{
	const std::size_t before = test::open_fd_count();
	for (bool epoll : {false, true}) {
		memory m = exec_sealed_memfd();
		std::string dir = test::temp_dir(), path = dir + "/s.sock";
		server_options o;
		o.force_epoll = epoll;
		server srv(listener::bind(path), [&m](const request_context &) {
			return reply::share(m);
		}, o);
		std::thread t([&] { srv.run(); });
		{
			channel c = channel::connect(path);
			received_memory got = c.request_memory("noexec", ordinary_ok());
			BOOST_TEST(got.size == 4096u);
		}
		srv.stop();
		t.join();
		::rmdir(dir.c_str());
	}
	BOOST_TEST(test::open_fd_count() == before);
}
