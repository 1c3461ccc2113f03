// SPDX-License-Identifier: LGPL-2.1-or-later
#define BOOST_TEST_MODULE mapping
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <algorithm>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/mman.h>
#include <unistd.h>

using namespace xmem;

namespace {

/* Lines of /proc/self/maps: a mapping left behind shows up here. */
std::size_t map_count()
{
	std::ifstream maps("/proc/self/maps");
	return static_cast<std::size_t>(std::count(std::istreambuf_iterator<char>(maps),
						   std::istreambuf_iterator<char>(), '\n'));
}

/* Runs @fn in a child; returns its wait status. */
template <typename Fn>
int in_child(Fn fn)
{
	pid_t pid = ::fork();
	if (pid == 0) {
		::signal(SIGSEGV, SIG_DFL); /* Boost.Test's handler would catch the fault */
		::_exit(fn());
	}
	int status = 0;
	::waitpid(pid, &status, 0);
	return status;
}

} // namespace

BOOST_AUTO_TEST_CASE(read_write_round_trip)
{
	memory mem = memory::create("rw", 3 * 4096, test::suite_options());
	mapping w = mapping::map(mem, access::read_write);
	BOOST_TEST(w.size() == 3u * 4096);
	std::fill(w.bytes().begin(), w.bytes().end(), std::byte{0x5a});
	mapping r = mapping::map(mem, access::read_only);
	BOOST_TEST((r.access() == access::read_only));
	BOOST_TEST(std::all_of(r.bytes().begin(), r.bytes().end(),
			       [](std::byte b) { return b == std::byte{0x5a}; }));
}

BOOST_AUTO_TEST_CASE(new_memory_reads_zero)
{
	memory mem = memory::create("zeroed", 8192, test::suite_options());
	mapping r = mapping::map(mem, access::read_only);
	BOOST_TEST(std::all_of(r.bytes().begin(), r.bytes().end(),
			       [](std::byte b) { return b == std::byte{0}; }));
}

BOOST_AUTO_TEST_CASE(unmap_and_move_release_the_mapping_once)
{
	const std::size_t before = map_count();
	memory mem = memory::create("moves", 4096, test::suite_options());
	{
		mapping a = mapping::map(mem, access::read_write);
		BOOST_TEST(map_count() == before + 1);
		mapping b(std::move(a));
		BOOST_TEST(!a.valid());
		mapping c;
		c = std::move(b);
		BOOST_TEST(c.valid());
		c.unmap();
		BOOST_TEST(!c.valid());
		BOOST_TEST(map_count() == before);
		c.unmap();
	}
	BOOST_TEST(map_count() == before);
}

BOOST_AUTO_TEST_CASE(read_only_mapping_faults_on_write)
{
	memory mem = memory::create("ro", 4096, test::suite_options());
	mapping r = mapping::map(mem, access::read_only);
	int status = in_child([&] {
		r.data()[0] = std::byte{1};
		return 0;
	});
	BOOST_TEST(WIFSIGNALED(status));
	BOOST_TEST(WTERMSIG(status) == SIGSEGV);
}

BOOST_AUTO_TEST_CASE(fork_child_gets_no_copy)
{
	/* MADV_DONTFORK: the child has nothing at that address. */
	memory mem = memory::create("dontfork", 4096, test::suite_options());
	mapping w = mapping::map(mem, access::read_write);
	w.data()[0] = std::byte{7};
	int status = in_child([&] { return static_cast<int>(w.data()[0]); });
	BOOST_TEST(WIFSIGNALED(status));
	BOOST_TEST(WTERMSIG(status) == SIGSEGV);
}

BOOST_AUTO_TEST_CASE(size_zero_is_an_error_without_a_mapping)
{
	const std::size_t before = map_count();
	std::error_code ec;
	memory mem = memory::create("z", 4096, test::suite_options());
	mapping m = mapping::map(mem.fd(), 0, mem.backend(), access::read_only, ec);
	BOOST_TEST((ec == errc::invalid_size));
	BOOST_TEST(map_count() == before);
}

BOOST_AUTO_TEST_CASE(memlock_limit_names_the_limit)
{
	/*
	 * As an unprivileged user (root has CAP_IPC_LOCK, which bypasses
	 * RLIMIT_MEMLOCK) with a 64 KiB limit, mapping 1 MiB fails with
	 * errc::memlock_limit, says how to raise the limit, and leaves no fd
	 * or mapping behind.
	 */
	const backend b = test::suite_backend();
	int status = in_child([b] {
		struct rlimit rl = {64 * 1024, 64 * 1024};
		if (::setrlimit(RLIMIT_MEMLOCK, &rl) < 0)
			return 10;
		if (::getuid() == 0 && (::setgid(65534) < 0 || ::setuid(65534) < 0))
			return 11;
		const std::size_t fds = test::open_fd_count();
		const std::size_t maps = map_count();
		create_options o;
		o.require = b;
		try {
			memory mem = memory::create("big", 1 << 20, o);
			mapping m = mapping::map(mem, access::read_write);
			return 12; /* mapped beyond the limit */
		} catch (const std::system_error &e) {
			std::string what = e.what();
			if (e.code() != errc::memlock_limit)
				return 13;
			if (what.find("RLIMIT_MEMLOCK is 65536 bytes") == std::string::npos ||
			    what.find("1048576") == std::string::npos ||
			    what.find("ulimit -l") == std::string::npos)
				return 14;
		}
		if (test::open_fd_count() != fds || map_count() != maps)
			return 15;
		return 0;
	});
	BOOST_TEST(WIFEXITED(status));
	BOOST_TEST(WEXITSTATUS(status) == 0);
}

BOOST_AUTO_TEST_CASE(future_write_seal_allows_only_read_only_mappings)
{
	/* On memfd_exclusive this is the vault's guarantee; ordinary memfds share the rule. */
	create_options o = test::suite_options();
	if (*o.require == backend::secret)
		o.require = backend::ordinary;
	memory mem = memory::create("ro-share", 4096, o);
	mem.add_seals(seals(seals::future_write));
	std::error_code ec;
	mapping w = mapping::map(mem, access::read_write, ec);
	BOOST_TEST((ec == std::errc::operation_not_permitted));
	BOOST_TEST(!w.valid());
	mapping r = mapping::map(mem, access::read_only, ec);
	BOOST_TEST(!ec);
	BOOST_TEST(r.valid());
	/* Nor made writable later: the kernel drops VM_MAYWRITE (mm/memfd.c). */
	BOOST_TEST(::mprotect(r.data(), 4096, PROT_READ | PROT_WRITE) == -1);
	BOOST_TEST(errno == EACCES);
}

BOOST_AUTO_TEST_CASE(exclusive_name_shows_in_maps_and_fd_link)
{
	if (test::suite_backend() != backend::exclusive)
		return; /* memfd_secret has no names: every mapping reads "/secretmem" */
	memory mem = memory::create("vault-key", 4096, test::suite_options());
	mapping m = mapping::map(mem, access::read_only);
	std::ifstream maps("/proc/self/maps");
	std::string line;
	bool found = false;
	while (std::getline(maps, line))
		found = found || line.find("/memfd_exclusive:vault-key") != std::string::npos;
	BOOST_TEST(found);
	char link[128] = {};
	std::string proc = "/proc/self/fd/" + std::to_string(mem.fd().get());
	BOOST_REQUIRE(::readlink(proc.c_str(), link, sizeof(link) - 1) > 0);
	BOOST_TEST(std::string(link).rfind("/memfd_exclusive:vault-key", 0) == 0);
}
