// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Process-shared synchronisation in exclusive memory: a PTHREAD_PROCESS_SHARED
 * mutex and condition variable, and raw futex(2) waits and wakes, between two
 * processes that share the memory over a channel (send_memory() and
 * receive_memory(), SCM_RIGHTS) and each map it on their own.
 *
 * Every shared futex operation there needs a kernel that keys such futexes
 * by inode and offset without GUP of the page (xmem's kernel patch 0005):
 * before it, FUTEX_WAIT and FUTEX_WAKE on memfd_secret and memfd_exclusive
 * memory fail with EFAULT, and glibc aborts in pthread_cond_wait().
 *
 * So the program first probes: one FUTEX_WAKE on a mapping of the suite's
 * backend.
 *  - It works: every test runs and must pass.
 *  - EFAULT on memfd_secret of a kernel without memfd_exclusive (a stock
 *    kernel, e.g. the hosts' 6.18): the program exits 77 and meson reports
 *    SKIP, with the reason on stderr. That kernel cannot do it.
 *  - EFAULT on memfd_exclusive, or on any backend of a kernel that has
 *    memfd_exclusive (ours, which has the fix): the tests run and fail.
 * XMEM_TEST_FUTEX_NO_PROBE=1 runs the tests without probing, to see how
 * they fail on a kernel without the fix.
 */
#define BOOST_TEST_MODULE futex
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <string_view>
#include <linux/futex.h>
#include <pthread.h>
#include <csignal>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace xmem;

namespace {

constexpr std::size_t region_size = 2 * 4096;
constexpr unsigned rounds = 1000;
constexpr int wait_s = 30;

long sys_futex(std::uint32_t *uaddr, int op, std::uint32_t val, const struct timespec *t = nullptr)
{
	return ::syscall(SYS_futex, uaddr, op, val, t, nullptr, 0);
}

/* The shared state at the start of the region. */
struct ping_pong {
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	unsigned turn;	   /* whose turn: 0 the test, 1 the peer */
	unsigned count;	   /* turns played by both */
	unsigned waits[2]; /* pthread_cond_timedwait() calls of each */
	std::uint32_t word; /* for the raw futex test */
};

/* @n turns of process @me; 0 or the error of the failing pthread call. */
int play(ping_pong *pp, unsigned me, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct timespec deadline;
		::clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += wait_s;
		/* pthread_mutex_timedlock() measures CLOCK_REALTIME. */
		struct timespec lock_deadline;
		::clock_gettime(CLOCK_REALTIME, &lock_deadline);
		lock_deadline.tv_sec += wait_s;
		int err = ::pthread_mutex_timedlock(&pp->mutex, &lock_deadline);
		if (err)
			return err;
		while (pp->turn != me) {
			pp->waits[me]++;
			err = ::pthread_cond_timedwait(&pp->cond, &pp->mutex, &deadline);
			if (err) {
				::pthread_mutex_unlock(&pp->mutex);
				return err;
			}
		}
		pp->count++;
		pp->turn = !me;
		err = ::pthread_cond_signal(&pp->cond);
		if (!err)
			err = ::pthread_mutex_unlock(&pp->mutex);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Forks a peer that receives the memory on @ch, maps it read-write at an
 * address of its own and runs @fn on it; the peer exits with fn's result (or
 * 100 when receiving or mapping threw). Never returns in the peer.
 */
template <typename Fn>
pid_t fork_peer(channel &mine, channel &theirs, Fn fn)
{
	pid_t pid = ::fork();
	BOOST_REQUIRE(pid >= 0);
	if (pid)
		return pid;
	/*
	 * Boost.Test's handlers would catch a signal here (glibc's abort() on
	 * a futex error) and run the rest of the suite in the peer.
	 */
	for (int sig = 1; sig < NSIG; sig++)
		::signal(sig, SIG_DFL);
	int rc = 100;
	try {
		mine = channel();
		requirements req;
		req.size = region_size;
		received_memory got = theirs.receive_memory(req);
		mapping m = mapping::map(got.memory, access::read_write);
		rc = fn(reinterpret_cast<ping_pong *>(m.data()));
	} catch (const std::exception &e) {
		std::fprintf(stderr, "peer: %s\n", e.what());
	}
	::_exit(rc);
}

/* The peer's exit status: 0 when it passed. */
int wait_peer(pid_t pid)
{
	int status = 0;
	BOOST_REQUIRE(::waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status)) {
		BOOST_TEST_MESSAGE("peer died of signal " << WTERMSIG(status));
		return 128 + WTERMSIG(status);
	}
	return WEXITSTATUS(status);
}

} // namespace

BOOST_AUTO_TEST_CASE(shared_futex_on_mapping)
{
	memory mem = memory::create("futex", region_size, test::suite_options());
	mapping m = mapping::map(mem, access::read_write);
	auto *word = reinterpret_cast<std::uint32_t *>(m.data() + 4096 + 64);
	struct timespec ms = {0, 10 * 1000 * 1000};

	long r = sys_futex(word, FUTEX_WAKE, 1);
	int err = errno;
	BOOST_TEST(r == 0, "FUTEX_WAKE: " << std::strerror(err));
	/* The word is read through the user's mapping: 0, not 1. */
	r = sys_futex(word, FUTEX_WAIT, 1);
	err = errno;
	BOOST_TEST((r == -1 && err == EAGAIN), "FUTEX_WAIT, wrong value: " << std::strerror(err));
	r = sys_futex(word, FUTEX_WAIT, 0, &ms);
	err = errno;
	BOOST_TEST((r == -1 && err == ETIMEDOUT), "FUTEX_WAIT, timeout: " << std::strerror(err));
}

BOOST_AUTO_TEST_CASE(mutex_condvar_ping_pong_between_processes)
{
	auto [a, b] = channel::pair();
	/* Fork first: the peer gets the memory only over the channel. */
	pid_t peer = fork_peer(a, b, [](ping_pong *pp) {
		int err = play(pp, 1, rounds);
		if (err)
			std::fprintf(stderr, "peer: %s\n", std::strerror(err));
		return err ? 1 : 0;
	});
	b = channel();

	memory mem = memory::create("pingpong", region_size, test::suite_options());
	mapping m = mapping::map(mem, access::read_write);
	auto *pp = reinterpret_cast<ping_pong *>(m.data());
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	BOOST_REQUIRE(::pthread_mutexattr_init(&ma) == 0);
	BOOST_REQUIRE(::pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED) == 0);
	BOOST_REQUIRE(::pthread_mutex_init(&pp->mutex, &ma) == 0);
	BOOST_REQUIRE(::pthread_condattr_init(&ca) == 0);
	BOOST_REQUIRE(::pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED) == 0);
	BOOST_REQUIRE(::pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0);
	BOOST_REQUIRE(::pthread_cond_init(&pp->cond, &ca) == 0);
	pp->turn = 1;
	a.send_memory(mem, "pingpong");

	int err = play(pp, 0, rounds);
	BOOST_TEST(err == 0, "test side: " << std::strerror(err));
	BOOST_TEST(wait_peer(peer) == 0);
	BOOST_TEST_MESSAGE(pp->count << " turns; condvar waits: test " << pp->waits[0] << ", peer "
				     << pp->waits[1]);
	BOOST_TEST(pp->count == 2 * rounds);
	BOOST_TEST(pp->turn == 1u);
	/* Each side slept on the condition, so the futex was used both ways. */
	BOOST_TEST(pp->waits[0] > 0u);
	BOOST_TEST(pp->waits[1] > 0u);
}

/*
 * The peer sleeps in FUTEX_WAIT on its mapping; this process wakes it through
 * its own mapping, at another address. FUTEX_WAKE returns how many it woke,
 * so 1 proves that both keys are the same (inode and offset).
 */
BOOST_AUTO_TEST_CASE(futex_wake_reaches_other_process)
{
	auto [a, b] = channel::pair();
	pid_t peer = fork_peer(a, b, [](ping_pong *pp) {
		struct timespec t = {wait_s, 0};
		if (sys_futex(&pp->word, FUTEX_WAIT, 0, &t)) {
			std::perror("peer: FUTEX_WAIT");
			return 1;
		}
		return 0;
	});
	b = channel();

	memory mem = memory::create("wake", region_size, test::suite_options());
	mapping m = mapping::map(mem, access::read_write);
	auto *pp = reinterpret_cast<ping_pong *>(m.data());
	a.send_memory(mem, "wake");

	long woken = 0;
	struct timespec start, now;
	::clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		woken = sys_futex(&pp->word, FUTEX_WAKE, 1);
		if (woken)
			break;
		::usleep(1000);
		::clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec < wait_s);
	const int err = errno;
	BOOST_TEST(woken == 1, "FUTEX_WAKE returned " << woken << ": " << std::strerror(err));
	BOOST_TEST(wait_peer(peer) == 0);
}

namespace {

/*
 * 1 when a shared futex works on the suite's backend, 0 when the kernel is
 * one that cannot (EFAULT on memfd_secret without memfd_exclusive), -1 on
 * any other outcome, which the tests then report.
 */
int probe_shared_futex(std::string &why)
{
	try {
		const backend b = test::suite_backend();
		memory mem = memory::create("probe", region_size, test::suite_options());
		mapping m = mapping::map(mem, access::read_write);
		if (sys_futex(reinterpret_cast<std::uint32_t *>(m.data()), FUTEX_WAKE, 1) == 0)
			return 1;
		const int err = errno;
		if (err == EFAULT && b == backend::secret && !probe_kernel().exclusive) {
			why = "FUTEX_WAKE on memfd_secret memory fails with EFAULT: this kernel "
			      "keys shared futexes by their page, which GUP refuses there (fixed "
			      "by xmem's kernel patch 0005; run in the VM, tests/vm/guest-tests.sh)";
			return 0;
		}
		why = std::string("FUTEX_WAKE on ") + std::string(to_string(b)) +
		      " memory: " + std::strerror(err);
	} catch (const std::exception &e) {
		why = e.what();
	}
	return -1;
}

} // namespace

int main(int argc, char *argv[])
{
	std::string why;
	const char *no_probe = std::getenv("XMEM_TEST_FUTEX_NO_PROBE");
	if (no_probe && std::string_view(no_probe) == "1")
		return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
	switch (probe_shared_futex(why)) {
	case 0:
		std::fprintf(stderr, "test_futex: SKIP: %s\n", why.c_str());
		return 77;
	case -1:
		std::fprintf(stderr, "test_futex: the probe failed (%s); running the tests\n",
			     why.c_str());
		break;
	default:
		break;
	}
	return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
