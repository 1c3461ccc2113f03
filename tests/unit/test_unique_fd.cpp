// SPDX-License-Identifier: LGPL-2.1-or-later
#define BOOST_TEST_MODULE unique_fd
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

using namespace xmem;

namespace {
bool is_open(int fd)
{
	return ::fcntl(fd, F_GETFD) >= 0;
}
} // namespace

BOOST_AUTO_TEST_CASE(owns_and_closes)
{
	const std::size_t before = test::open_fd_count();
	int raw;
	{
		unique_fd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
		raw = fd.get();
		BOOST_TEST(fd.valid());
		BOOST_TEST(is_open(raw));
		BOOST_TEST(test::open_fd_count() == before + 1);
	}
	BOOST_TEST(!is_open(raw));
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(move_transfers_ownership)
{
	unique_fd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	const int raw = a.get();
	unique_fd b(std::move(a));
	BOOST_TEST(!a.valid());
	BOOST_TEST(b.get() == raw);
	unique_fd c;
	c = std::move(b);
	BOOST_TEST(c.get() == raw);
	BOOST_TEST(is_open(raw));
	c = unique_fd();
	BOOST_TEST(!is_open(raw));
}

BOOST_AUTO_TEST_CASE(release_does_not_close)
{
	unique_fd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	int raw = a.release();
	BOOST_TEST(!a.valid());
	BOOST_TEST(is_open(raw));
	::close(raw);
}

BOOST_AUTO_TEST_CASE(reset_preserves_errno)
{
	unique_fd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	errno = ENOSPC;
	a.reset();
	BOOST_TEST(errno == ENOSPC);
	/* Also when close() itself fails: an fd that someone else closed. */
	int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
	unique_fd b(raw);
	::close(raw);
	errno = ENOSPC;
	b.reset();
	BOOST_TEST(errno == ENOSPC);
}

BOOST_AUTO_TEST_CASE(dup_cloexec_sets_cloexec)
{
	unique_fd a(::open("/dev/null", O_RDONLY)); /* no O_CLOEXEC on purpose */
	unique_fd b = dup_cloexec(a);
	BOOST_TEST(b.get() != a.get());
	BOOST_TEST((::fcntl(b.get(), F_GETFD) & FD_CLOEXEC) != 0);
	BOOST_CHECK_THROW(dup_cloexec(-1), std::system_error);
}
