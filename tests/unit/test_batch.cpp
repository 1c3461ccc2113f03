// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Batches of fds beyond one message (channel::send_batch, receive_batch) and
 * the cases of ../shared/cases/fd-passing.md they cover: 4 (300 fds at once)
 * and 5 (sendmsg interrupted by signals). Every test checks that the
 * receiver's count of open fds is the same afterwards.
 */
#define BOOST_TEST_MODULE batch
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace xmem;

namespace {

/* @n distinct plain memfds; their inode numbers tell them apart at the receiver. */
struct fd_set_of {
	std::vector<unique_fd> owned;
	std::vector<borrowed_fd> borrowed;
	std::vector<ino_t> inodes;

	explicit fd_set_of(std::size_t n)
	{
		for (std::size_t i = 0; i < n; i++) {
			owned.emplace_back(::memfd_create("batch", MFD_CLOEXEC));
			BOOST_REQUIRE(owned.back().valid());
			borrowed.emplace_back(owned.back());
			inodes.push_back(inode(owned.back().get()));
		}
	}

	static ino_t inode(int fd)
	{
		struct stat st;
		BOOST_REQUIRE(::fstat(fd, &st) == 0);
		return st.st_ino;
	}
};

wire::header memory_header()
{
	wire::header h;
	h.kind = wire::kind::memory;
	h.name = "batch";
	return h;
}

/* One raw batch part with @fds. */
void send_part(channel &ch, std::uint16_t index, std::uint16_t count, const std::vector<int> &fds,
	       wire::kind k = wire::kind::memory)
{
	wire::header h = memory_header();
	h.kind = k;
	h.fd_count = static_cast<std::uint32_t>(fds.size());
	h.batch_index = index;
	h.batch_count = count;
	auto bytes = test::encoded(h);
	BOOST_REQUIRE(test::raw_send(ch.fd().get(), bytes, fds) == static_cast<long>(bytes.size()));
}

} // namespace

BOOST_AUTO_TEST_CASE(case04_300_fds_go_as_a_batch_and_are_reassembled_in_order)
{
	auto [a, b] = channel::pair();
	fd_set_of set(300);
	const std::size_t before = test::open_fd_count();
	{
		a.send_batch(memory_header(), set.borrowed);
		message m = b.receive_batch(300);
		BOOST_TEST(m.header.fd_count == 300u);
		BOOST_TEST(m.header.batch_count == 0u);
		BOOST_TEST(m.header.name == "batch");
		BOOST_REQUIRE(m.fds.size() == 300u);
		for (std::size_t i = 0; i < 300; i++) {
			BOOST_TEST(fd_set_of::inode(m.fds[i].get()) == set.inodes[i]);
			BOOST_TEST((::fcntl(m.fds[i].get(), F_GETFD) & FD_CLOEXEC) != 0);
		}
		BOOST_TEST(test::open_fd_count() == before + 300);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(case04_batch_parts_on_the_wire)
{
	auto [a, b] = channel::pair();
	fd_set_of set(300);
	const std::size_t before = test::open_fd_count();
	a.send_batch(memory_header(), set.borrowed);
	b.set_max_fds(wire::scm_max_fd);
	message p0 = b.receive();
	message p1 = b.receive();
	BOOST_TEST(p0.fds.size() == wire::scm_max_fd);
	BOOST_TEST(p0.header.batch_index == 0u);
	BOOST_TEST(p0.header.batch_count == 2u);
	BOOST_TEST(p1.fds.size() == 300 - wire::scm_max_fd);
	BOOST_TEST(p1.header.batch_index == 1u);
	BOOST_TEST(p1.header.batch_count == 2u);
	p0.fds.clear();
	p1.fds.clear();
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(case04_over_budget_broken_or_truncated_batches_leave_nothing_open)
{
	auto [a, b] = channel::pair();
	fd_set_of set(300);
	const std::size_t before = test::open_fd_count();
	std::error_code ec;

	/* Over the receiver's budget: the part that overruns it is refused, all closed. */
	a.send_batch(memory_header(), set.borrowed);
	message m = b.receive_batch(299, ec);
	BOOST_TEST((ec == errc::too_many_fds));
	BOOST_TEST(m.fds.empty());
	BOOST_TEST(test::open_fd_count() == before);

	/* A budget smaller than the first part: the kernel truncates it. */
	a.send_batch(memory_header(), set.borrowed);
	m = b.receive_batch(10, ec);
	BOOST_TEST((ec == errc::control_truncated));
	b.receive_batch(300, ec); /* the orphaned second part: out of order */
	BOOST_TEST((ec == errc::bad_header));
	BOOST_TEST(test::open_fd_count() == before);

	std::vector<int> first(set.owned.size() / 2), second;
	for (std::size_t i = 0; i < 150; i++) {
		first[i] = set.owned[i].get();
		second.push_back(set.owned[150 + i].get());
	}

	/* Parts out of order. */
	send_part(a, 0, 3, first);
	send_part(a, 2, 3, second);
	b.receive_batch(1000, ec);
	BOOST_TEST((ec == errc::bad_header));
	BOOST_TEST(test::open_fd_count() == before);

	/* A part of another kind in the middle. */
	send_part(a, 0, 2, first);
	send_part(a, 1, 2, second, wire::kind::request);
	b.receive_batch(1000, ec);
	BOOST_TEST((ec == errc::bad_header));
	BOOST_TEST(test::open_fd_count() == before);

	/* A part with no fds. */
	send_part(a, 0, 2, first);
	send_part(a, 1, 2, {});
	b.receive_batch(1000, ec);
	BOOST_TEST((ec == errc::bad_header));
	BOOST_TEST(test::open_fd_count() == before);

	/*
	 * Many parts announced, more fds than the budget: the part that overruns
	 * it is received into a control buffer with room for only one fd past
	 * the budget, so the kernel drops the rest (MSG_CTRUNC).
	 */
	send_part(a, 0, 60000, first);
	send_part(a, 1, 60000, second);
	b.receive_batch(200, ec);
	BOOST_TEST((ec == errc::control_truncated));
	BOOST_TEST(test::open_fd_count() == before);

	/* The sender goes away after part 0 of 2. */
	send_part(a, 0, 2, first);
	a = channel();
	m = b.receive_batch(1000, ec);
	BOOST_TEST((ec == errc::peer_closed));
	BOOST_TEST(m.fds.empty());
	BOOST_TEST(test::open_fd_count() == before - 1); /* a's own fd */
}

BOOST_AUTO_TEST_CASE(case04_too_large_or_invalid_batches_are_refused_before_sending)
{
	auto [a, b] = channel::pair();
	std::error_code ec;
	/* More parts than batch_count can name. */
	std::vector<borrowed_fd> huge(wire::scm_max_fd * wire::max_batch_parts + 1, borrowed_fd(0));
	a.send_batch(memory_header(), huge, ec);
	BOOST_TEST((ec == errc::too_many_fds));
	/* A header that cannot be encoded. */
	wire::header bad = memory_header();
	bad.name = "a/b";
	std::vector<borrowed_fd> some(300, borrowed_fd(0));
	a.send_batch(bad, some, ec);
	BOOST_TEST((ec == errc::invalid_name));
	bad = memory_header();
	bad.seals = seals(0x100);
	a.send_batch(bad, some, ec);
	BOOST_TEST((ec == errc::bad_header));
	char c;
	BOOST_TEST(::recv(b.fd().get(), &c, 1, MSG_DONTWAIT) == -1);
	BOOST_TEST(errno == EAGAIN);

	/* No fds at all: one message, a batch of one. */
	a.send_batch(memory_header(), {});
	message m = b.receive_batch(10);
	BOOST_TEST(m.fds.empty());
	BOOST_TEST(m.header.fd_count == 0u);
}

namespace {

std::atomic<unsigned> signals_seen{0};

void count_signal(int)
{
	signals_seen.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

BOOST_AUTO_TEST_CASE(case05_sendmsg_interrupted_by_signals_sends_every_fd_once)
{
	/* A handler without SA_RESTART: blocked sendmsg/recvmsg return EINTR. */
	struct sigaction sa = {}, old = {};
	sa.sa_handler = count_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	BOOST_REQUIRE(::sigaction(SIGUSR1, &sa, &old) == 0);

	auto [a, b] = channel::pair();
	/* Small buffers so the sender blocks often, where the signals find it. */
	int small = 4096;
	BOOST_REQUIRE(::setsockopt(a.fd().get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
	fd_set_of set(300);
	const std::size_t before = test::open_fd_count();

	/* The setup does interrupt a blocked sendmsg: show it once, raw. */
	{
		auto [x, y] = channel::pair();
		BOOST_REQUIRE(::setsockopt(x.fd().get(), SOL_SOCKET, SO_SNDBUF, &small,
					   sizeof(small)) == 0);
		std::atomic<bool> stop{false};
		const pthread_t self = ::pthread_self();
		std::thread poke([&] {
			while (!stop) {
				::pthread_kill(self, SIGUSR1);
				std::this_thread::sleep_for(std::chrono::milliseconds(2));
			}
		});
		auto bytes = test::encoded(memory_header());
		long r;
		while ((r = test::raw_send(x.fd().get(), bytes, {})) > 0)
			;
		const int err = errno;
		stop = true;
		poke.join();
		BOOST_TEST(r == -1);
		BOOST_TEST(err == EINTR);
	}

	constexpr unsigned batches = 40;
	std::atomic<bool> done{false};
	std::atomic<unsigned> received_ok{0}, errors{0};
	std::error_code send_ec;
	unsigned send_failures = 0;

	std::thread receiver([&, &b = b] {
		for (unsigned i = 0; i < batches; i++) {
			std::error_code ec;
			message m = b.receive_batch(300, ec);
			if (ec || m.fds.size() != 300) {
				errors++;
				continue;
			}
			bool same = true;
			for (std::size_t k = 0; k < 300; k++)
				same &= fd_set_of::inode(m.fds[k].get()) == set.inodes[k];
			(same ? received_ok : errors)++;
			if (i % 4 == 0)
				std::this_thread::sleep_for(std::chrono::milliseconds(1));
		}
	});
	const pthread_t receiver_thread = receiver.native_handle();
	const pthread_t sender_thread = ::pthread_self();
	const unsigned seen_before = signals_seen;
	std::thread signaller([&] {
		while (!done) {
			::pthread_kill(sender_thread, SIGUSR1);
			::pthread_kill(receiver_thread, SIGUSR1);
			std::this_thread::sleep_for(std::chrono::microseconds(200));
		}
	});

	for (unsigned i = 0; i < batches; i++) {
		a.send_batch(memory_header(), set.borrowed, send_ec);
		if (send_ec)
			send_failures++;
	}
	receiver.join();
	done = true;
	signaller.join();
	::sigaction(SIGUSR1, &old, nullptr);

	BOOST_TEST(send_failures == 0u, "last send error: " << send_ec.message());
	BOOST_TEST(errors == 0u);
	BOOST_TEST(received_ok == batches);
	BOOST_TEST(signals_seen - seen_before > 20u);
	/* Nothing left in the socket: no fd was sent twice. */
	char c;
	BOOST_TEST(::recv(b.fd().get(), &c, 1, MSG_DONTWAIT) == -1);
	BOOST_TEST(errno == EAGAIN);
	BOOST_TEST(test::open_fd_count() == before);
}
