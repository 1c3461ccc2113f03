// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * verify_memory reads the seals before it trusts a size: a sender that
 * truncates its memfd and seals it (F_SEAL_SHRINK) between the receiver's
 * fstat(2) and its F_GET_SEALS must not get the memory accepted as stable
 * with a size the file no longer has (review-peer finding 3).
 *
 * The race is made deterministic by interposing fcntl in this binary:
 * libxmem calls it through the PLT (glibc's <fcntl.h> names it fcntl64 with
 * 64-bit offsets, the definition below too), so ours runs first. On F_GET_SEALS of
 * the fd under test they play the sender: ftruncate(fd, 0) and add
 * F_SEAL_SHRINK, then call the real fcntl. This binary is its own so that no
 * other suite runs with fcntl interposed.
 */
#define BOOST_TEST_MODULE seal_order
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <atomic>
#include <cstdarg>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace xmem;

namespace {

/* The fd whose F_GET_SEALS shrinks and seals it first; -1: none. */
std::atomic<int> shrink_on_get_seals{-1};
/* F_GET_SEALS calls that did so (the test fails if the library made none). */
std::atomic<int> shrinks_done{0};

using fcntl_fn = int (*)(int, int, ...);

fcntl_fn real(const char *name)
{
	void *p = ::dlsym(RTLD_NEXT, name);
	if (!p) /* a libc without fcntl64 */
		p = ::dlsym(RTLD_NEXT, "fcntl");
	return reinterpret_cast<fcntl_fn>(p);
}

int interposed(fcntl_fn next, int fd, int cmd, va_list ap)
{
	/* Every fcntl(2) command takes at most one argument, an int or a pointer. */
	void *arg = va_arg(ap, void *);
	if (cmd == F_GET_SEALS && fd >= 0 && fd == shrink_on_get_seals.exchange(-1)) {
		/* The sender, between the receiver's fstat and its F_GET_SEALS. */
		if (::ftruncate(fd, 0) == 0 && next(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0)
			shrinks_done++;
	}
	return next(fd, cmd, arg);
}

} // namespace

extern "C" int fcntl(int fd, int cmd, ...)
{
	static const fcntl_fn next = real("fcntl64");
	va_list ap;
	va_start(ap, cmd);
	const int r = interposed(next, fd, cmd, ap);
	va_end(ap);
	return r;
}

BOOST_AUTO_TEST_CASE(size_is_read_after_the_seals)
{
	/*
	 * Ordinary memory: the only sealable backend on every kernel this
	 * suite runs on (memfd_exclusive takes the same path in verify_memory).
	 */
	const std::size_t before = test::open_fd_count();
	{
		create_options o;
		o.require = backend::ordinary;
		memory mem = memory::create("shrunk-in-between", 4096, o);
		auto [tx, rx] = channel::pair();

		wire::header h;
		h.kind = wire::kind::memory;
		h.fd_count = 1;
		h.size = 4096;
		h.name = "raw";
		auto bytes = test::encoded(h);
		BOOST_REQUIRE(test::raw_send(tx.fd().get(), bytes, {mem.fd().get()}) ==
			      static_cast<long>(bytes.size()));

		/* The fd the receiver gets is the lowest free one: mark it. */
		const int next_fd = ::dup(0);
		BOOST_REQUIRE(next_fd >= 0);
		::close(next_fd);
		shrink_on_get_seals = next_fd;

		requirements req;
		req.accept_ordinary = true;
		req.seals = seals(seals::shrink);
		std::error_code ec;
		received_memory r = rx.receive_memory(req, ec);
		shrink_on_get_seals = -1;
		BOOST_REQUIRE_MESSAGE(shrinks_done == 1, "the interposed F_GET_SEALS did not run");

		struct stat st;
		BOOST_REQUIRE(::fstat(mem.fd().get(), &st) == 0);
		BOOST_CHECK_EQUAL(st.st_size, 0);
		if (!ec) {
			/* 0 bytes is never accepted: any acceptance is the stale size. */
			BOOST_ERROR("accepted memory of " << r.size << " bytes (stable "
				    << r.size_is_stable << ") whose file has " << st.st_size);
		} else {
			BOOST_CHECK_EQUAL(ec, make_error_code(errc::size_mismatch));
			BOOST_CHECK(!r.memory.valid());
		}
	}
	BOOST_CHECK_EQUAL(test::open_fd_count(), before);
}
