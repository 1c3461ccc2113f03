// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * channel and listener, and the single-peer cases of
 * ../shared/cases/fd-passing.md (numbers in the test names). Every case
 * checks that the receiver's count of open fds is the same afterwards.
 */
#define BOOST_TEST_MODULE channel
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace xmem;

namespace {

/* Sends @mem from @ch, announcing @announced_size and @promised seals. */
void send_raw_memory(channel &ch, int fd, std::uint64_t announced_size, seals promised = {})
{
	wire::header h;
	h.kind = wire::kind::memory;
	h.fd_count = 1;
	h.size = announced_size;
	h.seals = promised;
	h.name = "raw";
	auto bytes = test::encoded(h);
	BOOST_REQUIRE(test::raw_send(ch.fd().get(), bytes, {fd}) ==
		      static_cast<long>(bytes.size()));
}

requirements accept_ordinary()
{
	requirements r;
	r.accept_ordinary = true;
	return r;
}

memory ordinary(std::size_t size)
{
	create_options o;
	o.require = backend::ordinary;
	return memory::create("ordinary", size, o);
}

} // namespace

BOOST_AUTO_TEST_CASE(memory_round_trip)
{
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();
	{
		memory mem = memory::create("rt", 8192, test::suite_options());
		mapping w = mapping::map(mem, access::read_write);
		std::memcpy(w.data(), "secret", 6);
		a.send_memory(mem, "rt");

		requirements req;
		req.size = 8192;
		received_memory got = b.receive_memory(req);
		BOOST_TEST((got.memory.backend() == test::suite_backend()));
		BOOST_TEST(got.size == 8192u);
		BOOST_TEST(got.name == "rt");
		mapping r = mapping::map(got.memory, access::read_only);
		BOOST_TEST(std::memcmp(r.data(), "secret", 6) == 0);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

/*
 * receive_request(), the server's side of send_request(): the name comes
 * back; a memory or error message, a batch part, or a request carrying an fd
 * is refused, and the fd is closed.
 */
BOOST_AUTO_TEST_CASE(request_is_received_and_other_messages_refused)
{
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();
	a.send_request("signing-key");
	BOOST_TEST(b.receive_request() == "signing-key");

	std::error_code ec;
	a.send_error(ENOENT, "x");
	b.receive_request(ec);
	BOOST_TEST((ec == errc::bad_header));

	{
		memory mem = ordinary(4096);
		a.send_memory(mem, "m");
	}
	b.receive_request(ec);
	BOOST_TEST((ec == errc::bad_header));
	BOOST_TEST(test::open_fd_count() == before);

	wire::header h;
	h.kind = wire::kind::request;
	h.name = "with-fd";
	int efd = ::eventfd(0, EFD_CLOEXEC);
	BOOST_REQUIRE(efd >= 0);
	a.send(h, std::vector<borrowed_fd>{borrowed_fd(efd)});
	::close(efd);
	b.receive_request(ec);
	BOOST_TEST((ec == errc::too_many_fds));

	wire::header part;
	part.kind = wire::kind::request;
	part.name = "part";
	a.send_batch(part, {});
	b.receive_request(ec);
	BOOST_TEST((ec == errc::bad_header));
	BOOST_TEST(test::open_fd_count() == before);

	a = channel();
	b.receive_request(ec);
	BOOST_TEST((ec == errc::peer_closed));
	BOOST_CHECK_THROW(b.receive_request(), std::system_error);
}

BOOST_AUTO_TEST_CASE(peer_credentials_and_allow_list)
{
	auto [a, b] = channel::pair();
	peer_credentials pc = b.peer();
	BOOST_TEST(pc.pid == ::getpid());
	BOOST_TEST(pc.uid == ::getuid());
	const uid_t mine[] = {::getuid()};
	const uid_t others[] = {12345, 23456};
	BOOST_TEST(uid_allowed(pc, mine));
	BOOST_TEST(!uid_allowed(pc, others));
	BOOST_TEST(!uid_allowed(pc, {}));
}

BOOST_AUTO_TEST_CASE(peer_pidfd_names_the_peer_or_is_unsupported)
{
	/* case 14: SO_PEERPIDFD where the kernel has it (6.5+). */
	auto [a, b] = channel::pair();
	std::error_code ec;
	unique_fd pidfd = b.peer_pidfd(ec);
	if (ec) {
		BOOST_TEST((ec == std::errc::no_protocol_option));
		return;
	}
	BOOST_TEST((::fcntl(pidfd.get(), F_GETFD) & FD_CLOEXEC) != 0);
	char link[64] = {};
	std::string proc = "/proc/self/fd/" + std::to_string(pidfd.get());
	BOOST_REQUIRE(::readlink(proc.c_str(), link, sizeof(link) - 1) > 0);
	BOOST_TEST(std::string(link) == "anon_inode:[pidfd]");
}

/* Sends @count copies of /dev/null with a memory header announcing them. */
void send_many(channel &a, std::size_t count)
{
	unique_fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	std::vector<int> fds(count, null.get());
	wire::header h;
	h.kind = wire::kind::memory;
	h.fd_count = static_cast<std::uint32_t>(count);
	auto bytes = test::encoded(h);
	BOOST_REQUIRE(test::raw_send(a.fd().get(), bytes, fds) > 0);
}

BOOST_AUTO_TEST_CASE(case01_too_many_fds_is_truncation_and_nothing_leaks)
{
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();
	std::error_code ec;

	/* Beyond the control buffer: the kernel truncates (MSG_CTRUNC). */
	send_many(a, 4 * channel::default_max_fds);
	message m = b.receive(ec);
	BOOST_TEST((ec == errc::control_truncated));
	BOOST_TEST(std::string(ec.message()).find("MSG_CTRUNC") != std::string::npos);
	BOOST_TEST(m.fds.empty());
	BOOST_TEST(test::open_fd_count() == before);

	/* Just past the limit, where alignment slack lets them all arrive. */
	send_many(a, channel::default_max_fds + 1);
	m = b.receive(ec);
	BOOST_TEST((ec == errc::too_many_fds));
	BOOST_TEST(m.fds.empty());
	BOOST_TEST(test::open_fd_count() == before);

	/* At the limit: accepted. */
	send_many(a, channel::default_max_fds);
	m = b.receive(ec);
	BOOST_TEST(!ec);
	BOOST_TEST(m.fds.size() == channel::default_max_fds);
	m.fds.clear();
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(case02_fds_dropped_at_rlimit_nofile)
{
	auto [a, b] = channel::pair();
	memory mem = ordinary(4096);
	std::vector<int> fds(4, mem.fd().get());
	wire::header h;
	h.kind = wire::kind::memory;
	h.fd_count = 4;
	h.size = 4096;
	auto bytes = test::encoded(h);
	BOOST_REQUIRE(test::raw_send(a.fd().get(), bytes, fds) > 0);

	const std::size_t before = test::open_fd_count();
	struct rlimit saved;
	BOOST_REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
	/* Room for exactly one more fd: the lowest free number. */
	int lowest = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
	BOOST_REQUIRE(lowest >= 0);
	::close(lowest);
	struct rlimit low = {static_cast<rlim_t>(lowest + 1), saved.rlim_max};
	BOOST_REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
	std::error_code ec;
	message m = b.receive(ec);
	BOOST_REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);

	BOOST_TEST((ec == errc::control_truncated));
	BOOST_TEST(m.fds.empty());
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(case03_stream_sockets_are_refused)
{
	const std::size_t before = test::open_fd_count();
	int sv[2];
	BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	unique_fd other(sv[1]);
	std::error_code ec;
	channel ch = channel::adopt(unique_fd(sv[0]), ec);
	BOOST_TEST((ec == errc::not_seqpacket));
	BOOST_TEST(!ch.valid());
	other.reset();

	unique_fd pipe_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	ch = channel::adopt(std::move(pipe_fd), ec);
	BOOST_TEST((ec == errc::not_seqpacket));
	BOOST_TEST(test::open_fd_count() == before);

	/* Every message carries a header: never an empty payload. */
	auto [a, b] = channel::pair();
	memory mem = ordinary(4096);
	a.send_memory(mem, "n");
	char buf[256];
	ssize_t n = ::recv(b.fd().get(), buf, sizeof(buf), 0);
	BOOST_TEST(n == static_cast<ssize_t>(wire::header_size));
}

BOOST_AUTO_TEST_CASE(case04_too_many_fds_refused_before_sending)
{
	auto [a, b] = channel::pair();
	std::vector<borrowed_fd> fds(wire::scm_max_fd + 1, borrowed_fd(0));
	wire::header h;
	h.kind = wire::kind::memory;
	std::error_code ec;
	a.send(h, fds, ec);
	BOOST_TEST((ec == errc::too_many_fds));
	/* nothing was sent */
	char c;
	BOOST_TEST(::recv(b.fd().get(), &c, 1, MSG_DONTWAIT) == -1);
	BOOST_TEST(errno == EAGAIN);
}

BOOST_AUTO_TEST_CASE(case06_credentials_beside_fds)
{
	auto [a, b] = channel::pair();
	b.set_pass_credentials(true);
	b.set_max_fds(2);
	const std::size_t before = test::open_fd_count();
	{
		memory mem = ordinary(4096);
		a.send_memory(mem, "cred");
		message m = b.receive();
		BOOST_REQUIRE(m.sender.has_value());
		BOOST_TEST(m.sender->pid == ::getpid());
		BOOST_TEST(m.sender->uid == ::getuid());
		BOOST_TEST(m.fds.size() == 1u);
		std::error_code ec;
		received_memory r = verify_memory(std::move(m.fds[0]), m.header, accept_ordinary(), ec);
		BOOST_TEST(!ec);
		BOOST_TEST(r.size == 4096u);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(case07_wrong_file_types_are_rejected_and_closed)
{
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();

	std::string dir = test::temp_dir();
	std::string file = dir + "/f";
	int pipefd[2];
	BOOST_REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
	int sv[2];
	BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	int reg = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	BOOST_REQUIRE(::ftruncate(reg, 4096) == 0);
	int plain = ::memfd_create("plain", MFD_CLOEXEC);
	BOOST_REQUIRE(::ftruncate(plain, 4096) == 0);

	struct {
		int fd;
		errc want;
	} cases[] = {{pipefd[0], errc::wrong_file_type},
		     {sv[0], errc::wrong_file_type},
		     {reg, errc::wrong_file_type},
		     {plain, errc::backend_not_accepted}};
	for (auto &c : cases) {
		send_raw_memory(a, c.fd, 4096);
		std::error_code ec;
		received_memory r = b.receive_memory({}, ec);
		BOOST_TEST((ec == c.want), "fd kind " << c.fd << ": " << ec.message());
		BOOST_TEST(!r.memory.valid());
	}
	for (int fd : {pipefd[0], pipefd[1], sv[0], sv[1], reg, plain})
		::close(fd);
	::unlink(file.c_str());
	::rmdir(dir.c_str());
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(memfd_secret_refused_when_the_receiver_demands_memfd_exclusive)
{
	/*
	 * Review-peer finding 5: requirements could not refuse memfd_secret (no
	 * seals, writable by any holder). accept_secret = false does, names
	 * what came (received_memory::backend, the throwing form's message)
	 * and closes the fd; the default still accepts it.
	 */
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();
	{
		create_options o;
		o.require = backend::secret;
		memory mem = memory::create("secret", 4096, o);

		requirements exclusive_only;
		exclusive_only.accept_secret = false;
		send_raw_memory(a, mem.fd().get(), 4096);
		std::error_code ec;
		received_memory r = b.receive_memory(exclusive_only, ec);
		BOOST_TEST((ec == errc::backend_not_accepted), ec.message());
		BOOST_TEST(!r.memory.valid());
		BOOST_REQUIRE(r.backend.has_value());
		BOOST_TEST((*r.backend == backend::secret));

		send_raw_memory(a, mem.fd().get(), 4096);
		try {
			(void)b.receive_memory(exclusive_only);
			BOOST_ERROR("memfd_secret accepted with accept_secret off");
		} catch (const std::system_error &e) {
			BOOST_TEST((e.code() == errc::backend_not_accepted));
			BOOST_TEST(std::string(e.what()).find("received memfd_secret") !=
				   std::string::npos, e.what());
		}

		send_raw_memory(a, mem.fd().get(), 4096);
		received_memory ok = b.receive_memory({}, ec);
		BOOST_TEST(!ec, ec.message());
		BOOST_TEST(ok.memory.valid());
		BOOST_TEST((ok.memory.backend() == backend::secret));
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(case07_unmappable_handles_and_other_non_memory_fds_are_rejected)
{
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();
	{
		/*
		 * An O_PATH fd reopened from /proc/self/fd/N of real exclusive memory:
		 * fstat and fstatfs answer for it (S_ISREG, the backend's magic, the
		 * size), memfd_secret has no seals to miss, yet mmap(2) is EBADF.
		 */
		memory mem = memory::create("handle", 4096, test::suite_options());
		const std::string link = "/proc/self/fd/" + std::to_string(mem.fd().get());
		unique_fd path_only(::open(link.c_str(), O_PATH | O_CLOEXEC));
		BOOST_REQUIRE(path_only.valid());
		/* A write-only reopening of a memfd: mmap(2) is EACCES whatever the protection. */
		memory plain = ordinary(4096);
		const std::string plain_link = "/proc/self/fd/" + std::to_string(plain.fd().get());
		unique_fd write_only(::open(plain_link.c_str(), O_WRONLY | O_CLOEXEC));
		BOOST_REQUIRE(write_only.valid());
		std::string dir = test::temp_dir();
		unique_fd directory(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		unique_fd dir_path(::open(dir.c_str(), O_PATH | O_CLOEXEC));
		unique_fd zero(::open("/dev/zero", O_RDWR | O_CLOEXEC));
		unique_fd ev(::eventfd(0, EFD_CLOEXEC));
		BOOST_REQUIRE(directory.valid() && dir_path.valid() && zero.valid() && ev.valid());

		struct {
			int fd;
			errc want;
			const char *what;
		} cases[] = {{path_only.get(), errc::not_mappable, "O_PATH exclusive memory"},
			     {write_only.get(), errc::not_mappable, "write-only memfd"},
			     {directory.get(), errc::wrong_file_type, "directory"},
			     {dir_path.get(), errc::wrong_file_type, "O_PATH directory"},
			     {zero.get(), errc::wrong_file_type, "/dev/zero"},
			     {ev.get(), errc::wrong_file_type, "eventfd"}};
		for (auto &c : cases) {
			send_raw_memory(a, c.fd, 4096);
			std::error_code ec;
			received_memory r = b.receive_memory(accept_ordinary(), ec);
			BOOST_TEST((ec == c.want), c.what << ": " << ec.message());
			BOOST_TEST(!r.memory.valid());
		}
		/* adopt() itself says the same, and closes the fd. */
		std::error_code ec;
		memory adopted = memory::adopt(dup_cloexec(path_only), ec);
		BOOST_TEST((ec == errc::not_mappable), ec.message());
		BOOST_TEST(!adopted.valid());
		::rmdir(dir.c_str());
	}
	BOOST_TEST(test::open_fd_count() == before);
}

/* new-user report L2: a name the wire cannot carry is named as the problem. */
BOOST_AUTO_TEST_CASE(names_too_long_for_a_message_say_so)
{
	auto [a, b] = channel::pair();
	try {
		a.send_request(std::string(100, 'x'));
		BOOST_FAIL("a 100-byte name was sent");
	} catch (const std::system_error &e) {
		const std::string what = e.what();
		BOOST_TEST((e.code() == errc::invalid_name));
		BOOST_TEST(what.find("its name is 100 bytes; at most 63") != what.npos, what);
	}
	try {
		a.send_request("a/b");
		BOOST_FAIL("a name with '/' was sent");
	} catch (const std::system_error &e) {
		const std::string what = e.what();
		BOOST_TEST(what.find("its name is 3 bytes, with a '/'") != what.npos, what);
	}
	/* Nothing went: the peer sees the next, valid request first. */
	a.send_request(std::string(wire::name_max, 'k'));
	std::error_code ec;
	BOOST_TEST(b.receive_request(ec) == std::string(wire::name_max, 'k'));
	BOOST_TEST(!ec);
}

BOOST_AUTO_TEST_CASE(case08_size_differs_or_zero)
{
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();
	{
		memory mem = memory::create("small", 4096, test::suite_options());
		std::error_code ec;

		send_raw_memory(a, mem.fd().get(), 8192); /* header lies */
		b.receive_memory({}, ec);
		BOOST_TEST((ec == errc::size_mismatch));

		requirements want_more;
		want_more.size = 8192; /* receiver needs more than there is */
		a.send_memory(mem, "small");
		b.receive_memory(want_more, ec);
		BOOST_TEST((ec == errc::size_mismatch));

		/* The exception names what arrived, not only what was wanted. */
		a.send_memory(mem, "small");
		try {
			b.receive_memory(want_more);
			BOOST_FAIL("memory smaller than required accepted");
		} catch (const std::system_error &e) {
			const std::string what = e.what();
			BOOST_TEST(what.find("required: 8192 bytes") != what.npos, what);
			BOOST_TEST(what.find("received 4096 bytes, seals none") != what.npos, what);
		}

		/* size 0: memory never sized */
		unique_fd unsized(::memfd_create("unsized", MFD_CLOEXEC));
		send_raw_memory(a, unsized.get(), 0);
		b.receive_memory(accept_ordinary(), ec);
		BOOST_TEST((ec == errc::size_mismatch));
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(case09_promised_or_required_seals_must_be_there)
{
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();
	{
		memory mem = ordinary(4096);
		std::error_code ec;
		send_raw_memory(a, mem.fd().get(), 4096, seals(seals::shrink | seals::future_write));
		b.receive_memory(accept_ordinary(), ec);
		BOOST_TEST((ec == errc::missing_seals));

		requirements req = accept_ordinary();
		req.seals = seals(seals::shrink);
		a.send_memory(mem, "unsealed");
		b.receive_memory(req, ec);
		BOOST_TEST((ec == errc::missing_seals));

		/* memfd_secret: F_GET_SEALS fails; that is no proof of any seal */
		memory s = memory::create("s", 4096, test::suite_options());
		if (s.backend() == backend::secret) {
			requirements rs;
			rs.seals = seals(seals::shrink);
			a.send_memory(s, "s");
			b.receive_memory(rs, ec);
			BOOST_TEST((ec == errc::missing_seals));
			a.send_memory(s, "s");
			try {
				b.receive_memory(rs);
				BOOST_FAIL("memfd_secret accepted as sealed");
			} catch (const std::system_error &e) {
				const std::string what = e.what();
				BOOST_TEST(what.find("received 4096 bytes, seals none "
						     "(memfd_secret has no seals)") != what.npos,
					   what);
			}
		}

		mem.add_seals(seals(seals::shrink));
		a.send_memory(mem, "sealed");
		received_memory r = b.receive_memory(req, ec);
		BOOST_TEST(!ec);
		BOOST_TEST(r.seals.contains(seals(seals::shrink)));
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(case10_size_stability_is_reported)
{
	auto [a, b] = channel::pair();
	memory loose = ordinary(4096);
	a.send_memory(loose, "loose");
	received_memory r = b.receive_memory(accept_ordinary());
	BOOST_TEST(!r.size_is_stable);

	memory tight = ordinary(4096);
	tight.add_seals(seals(seals::shrink));
	a.send_memory(tight, "tight");
	r = b.receive_memory(accept_ordinary());
	BOOST_TEST(r.size_is_stable);

	memory ex = memory::create("ex", 4096, test::suite_options());
	if (ex.backend() == backend::exclusive)
		ex.add_seals(seals(seals::shrink));
	a.send_memory(ex, "ex");
	r = b.receive_memory({});
	BOOST_TEST(r.size_is_stable); /* memfd_secret: size fixed once set */
}

BOOST_AUTO_TEST_CASE(case11_peer_closes_mid_request)
{
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();
	a.send_request("key");
	a = channel();
	message m = b.receive();
	BOOST_TEST((m.header.kind == wire::kind::request));
	std::error_code ec;
	b.receive(ec);
	BOOST_TEST((ec == errc::peer_closed));
	b.receive_memory({}, ec);
	BOOST_TEST((ec == errc::peer_closed));
	BOOST_TEST(test::open_fd_count() == before - 1); /* a's fd */
}

BOOST_AUTO_TEST_CASE(case12_garbage_and_unknown_version)
{
	auto [a, b] = channel::pair();
	const std::size_t before = test::open_fd_count();
	memory mem = ordinary(4096);
	const std::size_t with_mem = test::open_fd_count();
	std::error_code ec;

	std::vector<std::byte> garbage(wire::header_size, std::byte{0xa5});
	BOOST_REQUIRE(test::raw_send(a.fd().get(), garbage, {mem.fd().get()}) > 0);
	b.receive(ec);
	BOOST_TEST((ec == errc::bad_header));

	wire::header h;
	h.kind = wire::kind::memory;
	h.fd_count = 1;
	h.size = 4096;
	auto v2 = test::encoded(h);
	v2[4] = std::byte{2};
	BOOST_REQUIRE(test::raw_send(a.fd().get(), v2, {mem.fd().get()}) > 0);
	b.receive(ec);
	BOOST_TEST((ec == errc::unsupported_version));

	std::vector<std::byte> longer(wire::header_size + 10, std::byte{0});
	BOOST_REQUIRE(test::raw_send(a.fd().get(), longer, {mem.fd().get()}) > 0);
	b.receive(ec);
	BOOST_TEST((ec == errc::payload_truncated));

	std::vector<std::byte> shorter(8, std::byte{0});
	BOOST_REQUIRE(test::raw_send(a.fd().get(), shorter, {mem.fd().get()}) > 0);
	b.receive(ec);
	BOOST_TEST((ec == errc::bad_header));

	/* header says two fds, one came */
	h.fd_count = 2;
	auto two = test::encoded(h);
	BOOST_REQUIRE(test::raw_send(a.fd().get(), two, {mem.fd().get()}) > 0);
	b.receive(ec);
	BOOST_TEST((ec == errc::fd_count_mismatch));

	/* a peer's error message: its errno, sanitised */
	wire::header e;
	e.kind = wire::kind::error;
	e.error = -5;
	auto bad_errno = test::encoded(e);
	BOOST_REQUIRE(test::raw_send(a.fd().get(), bad_errno, {}) > 0);
	b.receive_memory({}, ec);
	BOOST_TEST((ec == std::errc::protocol_error));
	a.send_error(EACCES, "key");
	b.receive_memory({}, ec);
	BOOST_TEST((ec == std::errc::permission_denied));

	BOOST_TEST(test::open_fd_count() == with_mem);
	mem = memory();
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(case13_received_fds_are_cloexec)
{
	auto [a, b] = channel::pair();
	memory mem = memory::create("cloexec", 4096, test::suite_options());
	/* The sender's fd without FD_CLOEXEC: the receiver must still get it set. */
	unique_fd plain(::fcntl(mem.fd().get(), F_DUPFD, 0));
	send_raw_memory(a, plain.get(), 4096);
	received_memory r = b.receive_memory({});
	const int fd = r.memory.fd().get();
	BOOST_TEST((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);

	/* and an exec'd child does not have it */
	std::string probe = "test ! -e /proc/self/fd/" + std::to_string(fd);
	pid_t pid = ::fork();
	if (pid == 0) {
		::execl("/bin/sh", "sh", "-c", probe.c_str(), nullptr);
		::_exit(127);
	}
	int status = 0;
	::waitpid(pid, &status, 0);
	BOOST_TEST(WIFEXITED(status));
	BOOST_TEST(WEXITSTATUS(status) == 0);
}

BOOST_AUTO_TEST_CASE(listener_replaces_stale_refuses_live_and_cleans_up)
{
	const std::size_t before = test::open_fd_count();
	std::string dir = test::temp_dir();
	std::string path = dir + "/sock";
	{
		listener l = listener::bind(path);
		struct stat st;
		BOOST_REQUIRE(::stat(path.c_str(), &st) == 0);
		BOOST_TEST((st.st_mode & 0777) == 0600u);

		std::error_code ec;
		listener second = listener::bind(path, 0600, 16, ec);
		BOOST_TEST((ec == errc::address_in_use));

		/* The refused bind's probe connection is first in the backlog. */
		channel probe = l.accept();
		BOOST_TEST((probe.receive(ec), ec == errc::peer_closed));
		channel c = channel::connect(path);
		channel s = l.accept();
		c.send_request("k");
		BOOST_TEST(s.receive().header.name == "k");
	}
	struct stat st;
	BOOST_TEST(::stat(path.c_str(), &st) == -1); /* unlinked */

	/* a stale socket: bound, never served */
	{
		unique_fd stale(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
		struct sockaddr_un addr = {};
		addr.sun_family = AF_UNIX;
		std::strcpy(addr.sun_path, path.c_str());
		BOOST_REQUIRE(::bind(stale.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);
	}
	{
		listener l = listener::bind(path);
		channel c = channel::connect(path);
	}

	/* not a socket: left alone */
	unique_fd file(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	std::error_code ec;
	listener l = listener::bind(path, 0600, 16, ec);
	BOOST_TEST((ec == std::errc::file_exists));
	BOOST_TEST(::stat(path.c_str(), &st) == 0);
	BOOST_TEST(S_ISREG(st.st_mode));
	file.reset();
	l = listener();
	::unlink(path.c_str());
	::rmdir(dir.c_str());

	channel::connect(path, ec);
	BOOST_TEST((ec == std::errc::no_such_file_or_directory));
	BOOST_TEST(test::open_fd_count() == before);
}
