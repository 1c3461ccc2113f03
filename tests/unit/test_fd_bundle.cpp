// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fd bundles (include/xmem/fd_bundle.hpp) without KVM: kinds of memory fds
 * and of fds that are no kind at all, the sender's and the receiver's checks,
 * and that a refused bundle leaves no fd behind. The KVM kinds are tested in
 * the KVM test VM (xmem-vmm refuse, tests/vm/vmm-handover.sh).
 */
#define BOOST_TEST_MODULE fd_bundle
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <xmem/error.hpp>
#include <xmem/fd_bundle.hpp>

#include <array>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace xmem;
using xmem::test::open_fd_count;

namespace {

unique_fd plain_memfd(std::size_t size = 4096)
{
	unique_fd fd(::memfd_create("bundle", MFD_CLOEXEC));
	BOOST_REQUIRE(fd.valid());
	BOOST_REQUIRE_EQUAL(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
	return fd;
}

/* A bundle message as a lying sender makes it: any kinds, any fds, any header. */
void raw_send(const channel &ch, std::uint32_t magic, std::uint32_t type,
	      std::span<const std::uint32_t> kinds, std::span<const int> fds,
	      std::size_t extra_data = 0)
{
	std::vector<unsigned char> p(24 + 4 * kinds.size() + extra_data);
	const std::uint16_t version = 1;
	const auto count = static_cast<std::uint32_t>(kinds.size());
	const auto data = static_cast<std::uint32_t>(extra_data);
	std::memcpy(&p[0], &magic, 4);
	std::memcpy(&p[4], &version, 2);
	std::memcpy(&p[8], &type, 4);
	std::memcpy(&p[12], &count, 4);
	std::memcpy(&p[16], &data, 4);
	for (std::size_t i = 0; i < kinds.size(); i++)
		std::memcpy(&p[24 + 4 * i], &kinds[i], 4);
	struct iovec iov = {p.data(), p.size()};
	alignas(struct cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * 8)] = {};
	struct msghdr msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (!fds.empty()) {
		msg.msg_control = control;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
		std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
	}
	BOOST_REQUIRE(::sendmsg(ch.fd().get(), &msg, MSG_NOSIGNAL) >= 0);
}

constexpr std::uint32_t magic = 0x58464442;
constexpr std::array<fd_kind, 2> two_memories = {fd_kind::memory, fd_kind::memory};

} // namespace

BOOST_AUTO_TEST_CASE(kind_of_memory_and_others)
{
	std::error_code ec;
	unique_fd m = plain_memfd();
	BOOST_CHECK(fd_kind_of(m, ec) == fd_kind::memory);
	BOOST_CHECK(!ec);

	int sv[2];
	BOOST_REQUIRE_EQUAL(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	unique_fd a(sv[0]), b(sv[1]);
	(void)fd_kind_of(a, ec);
	BOOST_CHECK(ec == errc::wrong_file_type);

	unique_fd ev(::open("/dev/null", O_RDWR | O_CLOEXEC));
	(void)fd_kind_of(ev, ec);
	BOOST_CHECK(ec == errc::wrong_file_type);

	(void)fd_kind_of(borrowed_fd(-1), ec);
	BOOST_CHECK(ec == std::errc::bad_file_descriptor);
}

BOOST_AUTO_TEST_CASE(round_trip)
{
	auto [tx, rx] = channel::pair();
	unique_fd m1 = plain_memfd(4096), m2 = plain_memfd(8192);
	const std::array<borrowed_fd, 2> fds = {m1, m2};
	const std::array<std::byte, 3> data = {std::byte{1}, std::byte{2}, std::byte{3}};
	std::error_code ec;
	send_bundle(tx, 42, two_memories, fds, data, ec);
	BOOST_REQUIRE(!ec);
	const std::size_t before = open_fd_count();
	{
		bundle_requirements req;
		req.type = 42;
		req.kinds = two_memories;
		fd_bundle b = receive_bundle(rx, req, ec);
		BOOST_REQUIRE_MESSAGE(!ec, ec.message());
		BOOST_CHECK_EQUAL(b.type, 42u);
		BOOST_REQUIRE_EQUAL(b.fds.size(), 2u);
		BOOST_CHECK(b.data == std::vector<std::byte>(data.begin(), data.end()));
		BOOST_CHECK_EQUAL(lseek(b.fds[1].fd.get(), 0, SEEK_END), 8192);
		BOOST_CHECK(::fcntl(b.fds[0].fd.get(), F_GETFD) & FD_CLOEXEC);
		BOOST_CHECK_EQUAL(open_fd_count(), before + 2);
	}
	BOOST_CHECK_EQUAL(open_fd_count(), before);
}

BOOST_AUTO_TEST_CASE(sender_refuses_what_the_kernel_denies)
{
	auto [tx, rx] = channel::pair();
	unique_fd m = plain_memfd();
	int sv[2];
	BOOST_REQUIRE_EQUAL(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	unique_fd a(sv[0]), b(sv[1]);
	std::error_code ec;
	const std::array<borrowed_fd, 2> fds = {m, a};
	send_bundle(tx, 1, two_memories, fds, {}, ec);
	BOOST_CHECK(ec == errc::wrong_file_type);
	const std::array<fd_kind, 1> vm = {fd_kind::kvm_vm};
	const std::array<borrowed_fd, 1> one = {m};
	send_bundle(tx, 1, vm, one, {}, ec);
	BOOST_CHECK(ec == errc::wrong_file_type);
	send_bundle(tx, 1, two_memories, one, {}, ec);
	BOOST_CHECK(ec == errc::fd_count_mismatch);
}

/* Each lie, received: the expected error and no fd left open. */
BOOST_AUTO_TEST_CASE(receiver_refuses_lies)
{
	unique_fd m1 = plain_memfd(), m2 = plain_memfd();
	int sv[2];
	BOOST_REQUIRE_EQUAL(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	unique_fd s1(sv[0]), s2(sv[1]);
	const std::uint32_t MEM = 1, GMEM = 4;
	struct lie {
		const char *what;
		std::uint32_t magic, type;
		std::vector<std::uint32_t> kinds;
		std::vector<int> fds;
		std::size_t data;
		std::error_code expect;
	};
	const std::vector<lie> lies = {
		{"socket announced as memory", magic, 7, {MEM, MEM}, {m1.get(), s1.get()}, 0,
		 errc::wrong_file_type},
		{"memory announced as guest_memfd", magic, 7, {MEM, GMEM}, {m1.get(), m2.get()}, 0,
		 errc::wrong_file_type},
		{"unknown kind", magic, 7, {MEM, 1234}, {m1.get(), m2.get()}, 0,
		 errc::wrong_file_type},
		{"one fd fewer than announced", magic, 7, {MEM, MEM}, {m1.get()}, 0,
		 errc::fd_count_mismatch},
		{"more fds than expected", magic, 7, {MEM, MEM, MEM}, {m1.get(), m2.get(), m1.get()},
		 0, errc::fd_count_mismatch},
		{"another type", magic, 8, {MEM, MEM}, {m1.get(), m2.get()}, 0, errc::bad_header},
		{"another magic", 0x584d454d, 7, {MEM, MEM}, {m1.get(), m2.get()}, 0,
		 errc::bad_header},
		{"more data than accepted", magic, 7, {MEM, MEM}, {m1.get(), m2.get()}, 200,
		 errc::payload_truncated},
	};
	for (const lie &l : lies) {
		BOOST_TEST_CONTEXT(l.what)
		{
			auto [tx, rx] = channel::pair();
			const std::size_t before = open_fd_count();
			raw_send(tx, l.magic, l.type, l.kinds, l.fds, l.data);
			bundle_requirements req;
			req.type = 7;
			req.kinds = two_memories;
			req.max_data = 100;
			std::error_code ec;
			fd_bundle b = receive_bundle(rx, req, ec);
			BOOST_CHECK_MESSAGE(ec == l.expect, ec.message());
			BOOST_CHECK(b.fds.empty());
			BOOST_CHECK_EQUAL(open_fd_count(), before);
		}
	}
}
