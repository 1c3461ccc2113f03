// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Hand-off benchmarks (not timed tests: nothing here fails on a number).
 * Run by scripts/bench-handoff, which builds this and prints its table.
 *
 *  1. Hand-offs per second on one socketpair: create, size, send, receive,
 *     verify, map (and, in a second row, read the first byte: the page
 *     fault that takes the page out of the direct map), with libxmem against
 *     the same steps as raw system calls in C (handoff_raw.c). The two run
 *     in alternating rounds in one process, so both see the same machine.
 *  2. Requests per second of the io_uring server (xmem::server) against a
 *     blocking thread-per-client server (listener + one std::thread per
 *     peer, channel::receive / send_memory), at 64 and 1,000 clients. Both
 *     send the one region's own fd (the server with reply::share of a
 *     shared_ptr, the threads with send_memory: no dup per reply in either).
 *     The server runs in a child process; one client process drives every
 *     client with one request outstanding each through one io_uring
 *     (load_ring: RECVMSG of the reply and its fd, CLOSE of the fd, SEND of
 *     the next request), the same for both servers, so that the load
 *     generator takes as little of the 2 CPUs as it can.
 *  3. Memory per connected peer: the server process's VmRSS with every
 *     client connected and served once, less its VmRSS before any connected,
 *     over the number of peers.
 *
 * Usage: handoff_bench [--seconds S] [--out DIR] [--handoff-only]
 *   DIR gets handoff.json and handoff.md; --handoff-only skips the servers;
 *   --profile-handoff runs 100,000 libxmem hand-offs and nothing else (for perf);
 *   --profile-server uring|blocking N measures that server alone at N clients
 *   and prints its row, nothing written (for perf); --epoll-client drives the
 *   servers with the previous epoll load generator instead (for comparison);
 *   --loops N gives the io_uring server N event loops (default 0: one per
 *   online CPU); --hostile measures only grants per second at 1, 64 and
 *   1,000 clients alone and beside 100 idle and 10 hostile peers
 *   (hostile_crowd), into hostile.md and hostile.json.
 */
#include <xmem/xmem.hpp>
#include <xmem/server.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <liburing.h>
#include <sstream>
#include <string>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern "C" int raw_handoff(int tx, int rx, size_t size, int touch, int dontfork);

using namespace xmem;
using clk = std::chrono::steady_clock;

namespace {

constexpr std::size_t region = 4096;

double seconds_since(clk::time_point t)
{
	return std::chrono::duration<double>(clk::now() - t).count();
}

void xmem_handoff(channel &a, channel &b, bool touch)
{
	memory mem = memory::create("bench", region);
	a.send_memory(mem, "bench");
	requirements req;
	req.size = region;
	received_memory got = b.receive_memory(req);
	/* The verified size: no second fstat (mapping.hpp, the borrowed_fd overload). */
	std::error_code ec;
	mapping m = mapping::map(got.memory.fd(), got.size, got.memory.backend(),
				 access::read_only, ec);
	if (ec)
		throw std::system_error(ec, "mapping");
	if (touch)
		(void)*reinterpret_cast<volatile const unsigned char *>(m.data());
}

struct pair_rate {
	double raw, raw_dontfork, xmem;
};

/* Alternating rounds of @per_round hand-offs each, for about @seconds in all. */
pair_rate handoff_rates(bool touch, double seconds)
{
	auto [a, b] = channel::pair();
	const int rounds = 10;
	const int per_round = 500;
	double t_raw = 0, t_dontfork = 0, t_xmem = 0;
	long n = 0;
	const auto start = clk::now();
	for (int r = 0; r < rounds || seconds_since(start) < seconds; r++) {
		for (int dontfork : {0, 1}) {
			auto t = clk::now();
			for (int i = 0; i < per_round; i++) {
				int err = raw_handoff(a.fd().get(), b.fd().get(), region, touch,
						      dontfork);
				if (err)
					throw std::system_error(-err, std::generic_category(),
								"raw hand-off");
			}
			(dontfork ? t_dontfork : t_raw) += seconds_since(t);
		}
		auto t = clk::now();
		for (int i = 0; i < per_round; i++)
			xmem_handoff(a, b, touch);
		t_xmem += seconds_since(t);
		n += per_round;
	}
	return {n / t_raw, n / t_dontfork, n / t_xmem};
}

/* utime + stime of every thread of @pid, in seconds (proc(5), /proc/PID/stat fields 14, 15). */
double cpu_seconds(pid_t pid)
{
	std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
	std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
	std::istringstream rest(all.substr(all.rfind(')') + 2));
	std::string field;
	unsigned long utime = 0, stime = 0;
	for (int i = 3; i <= 15 && rest >> field; i++) {
		if (i == 14)
			utime = std::stoul(field);
		else if (i == 15)
			stime = std::stoul(field);
	}
	return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

long vm_rss_kib(pid_t pid)
{
	std::ifstream f("/proc/" + std::to_string(pid) + "/status");
	std::string line;
	while (std::getline(f, line)) {
		if (line.rfind("VmRSS:", 0) == 0)
			return std::stol(line.substr(6));
	}
	return -1;
}

server *running = nullptr;
/* server_options::event_loops for the io_uring server (--loops). */
unsigned event_loops = 0;

void stop_running(int)
{
	if (running)
		running->stop();
}

/* The server child: serves until SIGTERM. Writes one byte to @ready once listening. */
[[noreturn]] void serve(bool uring, const std::string &path, int ready, std::size_t max_peers)
{
	try {
		memory mem = memory::create("bench-served", region);
		listener l = listener::bind(path, 0600, 4096);
		if (uring) {
			server_options o;
			o.max_peers = max_peers;
			o.max_peers_per_uid = max_peers; /* every client is this benchmark's uid */
			o.requests_per_second = 0;
			o.peer_timeout = std::chrono::minutes(5);
			o.event_loops = event_loops;
			/* The region every reply shares, by its own fd (no dup and close per reply). */
			auto shared = std::make_shared<const memory>(std::move(mem));
			server s(std::move(l), [&](const request_context &) { return reply::share(shared); },
				 o);
			running = &s;
			std::signal(SIGTERM, stop_running);
			if (s.engine() != server_engine::io_uring) {
				std::cerr << "bench: io_uring unavailable: " << s.fallback_reason() << "\n";
				::_exit(3);
			}
			(void)!::write(ready, "u", 1);
			s.run();
			running = nullptr;
			const server_stats st = s.stats();
			std::fprintf(stderr,
				     "bench server: %llu peers taken on, %llu refused, %llu replies, "
				     "%llu closed for errors, %llu stray fds\n",
				     (unsigned long long)st.accepted, (unsigned long long)st.refused,
				     (unsigned long long)st.served, (unsigned long long)st.errors,
				     (unsigned long long)st.stray_fds);
		} else {
			(void)!::write(ready, "b", 1);
			for (;;) {
				channel ch = l.accept();
				std::thread([ch = std::move(ch), &mem]() mutable {
					std::error_code ec;
					for (;;) {
						ch.receive(ec);
						if (ec)
							return;
						ch.send_memory(mem, "bench");
					}
				}).detach();
			}
		}
	} catch (const std::exception &e) {
		std::cerr << "bench server: " << e.what() << "\n";
		::_exit(2);
	}
	::_exit(0);
}

struct server_result {
	std::string engine;
	std::size_t clients;
	double requests_per_s;
	double server_cpu_us_per_request;
	double client_cpu_us_per_request;
	double rss_kib_per_peer;
};

/* Reads one reply on @fd, closing the fd it carries. False on error or end. */
bool take_reply(int fd)
{
	std::byte buf[wire::header_size];
	alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = {buf, sizeof(buf)};
	struct msghdr msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control;
	msg.msg_controllen = sizeof(control);
	ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return false;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_type != SCM_RIGHTS)
			continue;
		for (std::size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int got;
			std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			::close(got);
		}
	}
	return n == static_cast<ssize_t>(wire::header_size);
}

/*
 * The load generator every server gets: one process, one io_uring, every
 * client with one request outstanding. Per reply: a RECVMSG completes (the
 * reply and its fd, MSG_CMSG_CLOEXEC), and three operations go in the next
 * submission: CLOSE of the fd, SEND of the next request, RECVMSG for the
 * reply to it (IORING_RECVSEND_POLL_FIRST). CLOSE and SEND post no
 * completion unless they fail (IOSQE_CQE_SKIP_SUCCESS). So the client spends
 * one io_uring_enter(2) on a whole batch of replies instead of epoll_wait,
 * recvmsg, close and send for each, and leaves the CPUs to the server.
 */
class load_ring
{
public:
	load_ring(std::vector<channel> &peers, const std::array<std::byte, wire::header_size> &req)
		: peers_(peers), request_(req), slots_(peers.size())
	{
		unsigned entries = 1;
		while (entries < 4 * peers.size())
			entries <<= 1;
		struct io_uring_params params = {};
		params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
			       IORING_SETUP_DEFER_TASKRUN;
		params.cq_entries = 2 * entries;
		int ret = io_uring_queue_init_params(entries, &ring_, &params);
		if (ret == -EINVAL) {
			params = {};
			params.flags = IORING_SETUP_CQSIZE;
			params.cq_entries = 2 * entries;
			ret = io_uring_queue_init_params(entries, &ring_, &params);
		}
		if (ret < 0)
			throw std::system_error(-ret, std::generic_category(), "bench: io_uring");
		if (!(params.features & IORING_FEAT_CQE_SKIP))
			throw std::runtime_error("bench: io_uring lacks IOSQE_CQE_SKIP_SUCCESS (5.17)");
		for (std::size_t i = 0; i < peers.size(); i++) {
			send(i);
			receive(i);
		}
	}
	load_ring(const load_ring &) = delete;
	load_ring &operator=(const load_ring &) = delete;
	~load_ring() { stop(); }

	/* Submits what is queued, waits up to 100 ms, handles every reply; returns how many. */
	long step()
	{
		struct __kernel_timespec ts = {0, 100 * 1000 * 1000};
		struct io_uring_cqe *cqe;
		int ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
		if (ret < 0 && ret != -ETIME && ret != -EINTR)
			throw std::system_error(-ret, std::generic_category(), "bench: io_uring_enter");
		long replies = 0;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring_, head, cqe) {
			seen++;
			const std::size_t i = cqe->user_data >> 2;
			if ((cqe->user_data & 3) != 0 || cqe->res != static_cast<int>(wire::header_size))
				throw std::runtime_error("bench: a reply failed (" +
							 std::to_string(cqe->res) + ")");
			slot &s = slots_[i];
			for (struct cmsghdr *c = CMSG_FIRSTHDR(&s.msg); c; c = CMSG_NXTHDR(&s.msg, c)) {
				if (c->cmsg_type != SCM_RIGHTS)
					continue;
				for (std::size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
					int fd;
					std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
					struct io_uring_sqe *sqe = get_sqe();
					io_uring_prep_close(sqe, fd);
					sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
					io_uring_sqe_set_data64(sqe, i << 2 | 2);
				}
			}
			send(i);
			receive(i);
			replies++;
		}
		io_uring_cq_advance(&ring_, seen);
		return replies;
	}

	/* Cancels what is pending and closes the ring (the sockets are the caller's). */
	void stop()
	{
		if (ready_)
			io_uring_queue_exit(&ring_);
		ready_ = false;
	}

private:
	struct slot {
		std::array<std::byte, wire::header_size> reply;
		alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
		struct iovec iov;
		struct msghdr msg;
	};

	struct io_uring_sqe *get_sqe()
	{
		struct io_uring_sqe *sqe;
		while (!(sqe = io_uring_get_sqe(&ring_)))
			io_uring_submit(&ring_);
		return sqe;
	}

	void send(std::size_t i)
	{
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_send(sqe, peers_[i].fd().get(), request_.data(), request_.size(),
				   MSG_NOSIGNAL);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		io_uring_sqe_set_data64(sqe, i << 2 | 1);
	}

	void receive(std::size_t i)
	{
		slot &s = slots_[i];
		s.iov = {s.reply.data(), s.reply.size()};
		s.msg = {};
		s.msg.msg_iov = &s.iov;
		s.msg.msg_iovlen = 1;
		s.msg.msg_control = s.control;
		s.msg.msg_controllen = sizeof(s.control);
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_recvmsg(sqe, peers_[i].fd().get(), &s.msg, MSG_CMSG_CLOEXEC);
		sqe->ioprio |= IORING_RECVSEND_POLL_FIRST; /* the reply is never there yet */
		io_uring_sqe_set_data64(sqe, i << 2);
	}

	std::vector<channel> &peers_;
	const std::array<std::byte, wire::header_size> &request_;
	std::vector<slot> slots_;
	struct io_uring ring_ = {};
	bool ready_ = true;
};

/*
 * The previous load generator, kept for comparison (--epoll-client): one
 * process, level-triggered epoll over every client, and per reply recvmsg,
 * close of its fd and send of the next request as system calls.
 */
class load_epoll
{
public:
	load_epoll(std::vector<channel> &peers, const std::array<std::byte, wire::header_size> &req)
		: peers_(peers), request_(req), ep_(::epoll_create1(EPOLL_CLOEXEC)), events_(256)
	{
		for (std::size_t i = 0; i < peers.size(); i++) {
			struct epoll_event ev = {};
			ev.events = EPOLLIN;
			ev.data.u64 = i;
			::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, peers[i].fd().get(), &ev);
			ask(i);
		}
	}

	long step()
	{
		int n = ::epoll_wait(ep_.get(), events_.data(), static_cast<int>(events_.size()), 100);
		for (int i = 0; i < n; i++) {
			const std::size_t k = events_[i].data.u64;
			if (!take_reply(peers_[k].fd().get()))
				throw std::runtime_error("bench: a reply failed");
			ask(k);
		}
		return n > 0 ? n : 0;
	}

	void stop() {}

private:
	void ask(std::size_t i)
	{
		(void)::send(peers_[i].fd().get(), request_.data(), request_.size(), MSG_NOSIGNAL);
	}

	std::vector<channel> &peers_;
	const std::array<std::byte, wire::header_size> &request_;
	unique_fd ep_;
	std::vector<struct epoll_event> events_;
};

/* Sends one request with /dev/null attached (SCM_RIGHTS) on @fd; the result of sendmsg. */
ssize_t send_with_stray_fd(int fd, const std::array<std::byte, wire::header_size> &request,
			   int stray)
{
	struct iovec iov = {const_cast<std::byte *>(request.data()), request.size()};
	alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
	struct msghdr msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control;
	msg.msg_controllen = sizeof(control);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	std::memcpy(CMSG_DATA(c), &stray, sizeof(int));
	return ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * The hostile crowd of --hostile, in a child process of its own until
 * SIGTERM: 100 idle peers (connected, never send); 3 that never read (ask
 * until their socket is full, then stay); and, every 100 ms, 4 that attach
 * an fd to a request (refused in sendmsg where SO_PASSRIGHTS is off, else
 * closed by the server) and 3 that flood (1,000 requests at once without
 * reading, then close), each on a fresh connection. Writes one byte to
 * @ready once the idle and never-reading peers are connected.
 */
[[noreturn]] void hostile_crowd(const std::string &path, int ready)
{
	try {
		std::error_code ec;
		const auto request = wire::encode(wire::header{}, ec);
		std::vector<channel> idle;
		for (int i = 0; i < 100; i++)
			idle.push_back(channel::connect(path));
		std::vector<channel> deaf;
		for (int i = 0; i < 3; i++) {
			deaf.push_back(channel::connect(path));
			for (int k = 0; k < 100000; k++)
				if (::send(deaf.back().fd().get(), request.data(), request.size(),
					   MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
					break;
		}
		unique_fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
		(void)!::write(ready, "h", 1);
		for (;;) {
			for (int i = 0; i < 4; i++) {
				channel c = channel::connect(path);
				send_with_stray_fd(c.fd().get(), request, null.get());
			}
			for (int i = 0; i < 3; i++) {
				channel c = channel::connect(path);
				for (int k = 0; k < 1000; k++)
					if (::send(c.fd().get(), request.data(), request.size(),
						   MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
						break;
			}
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		}
	} catch (const std::exception &e) {
		std::cerr << "bench hostile peers: " << e.what() << "\n";
		::_exit(2);
	}
}

template <typename Load>
server_result server_rate(bool uring, std::size_t clients, double seconds, bool hostile = false)
{
	const std::string path = "/tmp/xmem-bench-" + std::to_string(::getpid()) + ".sock";
	int ready[2];
	if (::pipe2(ready, O_CLOEXEC) < 0)
		throw std::system_error(errno, std::generic_category(), "pipe");
	pid_t child = ::fork();
	if (child == 0) {
		::close(ready[0]);
		serve(uring, path, ready[1], clients + 256);
	}
	::close(ready[1]);
	char c;
	if (::read(ready[0], &c, 1) != 1) {
		int st;
		::waitpid(child, &st, 0);
		throw std::runtime_error("bench: the server child did not start");
	}
	::close(ready[0]);
	std::this_thread::sleep_for(std::chrono::milliseconds(100));
	const long rss_before = vm_rss_kib(child);

	std::error_code ec;
	auto request = wire::encode(wire::header{}, ec);
	std::vector<channel> peers;
	for (std::size_t i = 0; i < clients; i++)
		peers.push_back(channel::connect(path));
	auto ask = [&](std::size_t i) {
		return ::send(peers[i].fd().get(), request.data(), request.size(), MSG_NOSIGNAL) ==
		       static_cast<ssize_t>(request.size());
	};
	/* Everyone served once: the state a connected, active peer costs. */
	for (std::size_t i = 0; i < clients; i++) {
		if (!ask(i) || !take_reply(peers[i].fd().get()))
			throw std::runtime_error("bench: first request failed");
	}
	std::this_thread::sleep_for(std::chrono::milliseconds(100));
	const long rss_after = vm_rss_kib(child);

	pid_t crowd = -1;
	if (hostile) {
		int hready[2];
		if (::pipe2(hready, O_CLOEXEC) < 0)
			throw std::system_error(errno, std::generic_category(), "pipe");
		crowd = ::fork();
		if (crowd == 0) {
			::close(hready[0]);
			hostile_crowd(path, hready[1]);
		}
		::close(hready[1]);
		if (::read(hready[0], &c, 1) != 1)
			throw std::runtime_error("bench: the hostile peers did not start");
		::close(hready[0]);
	}

	Load ring(peers, request);
	long done = 0;
	const auto warm = clk::now() + std::chrono::milliseconds(300);
	clk::time_point start;
	bool measuring = false;
	double cpu_start = 0, client_start = 0;
	for (;;) {
		const auto now = clk::now();
		if (!measuring && now >= warm) {
			measuring = true;
			start = now;
			done = 0;
			cpu_start = cpu_seconds(child);
			client_start = cpu_seconds(::getpid());
		}
		if (measuring && seconds_since(start) >= seconds)
			break;
		done += ring.step();
	}
	const double rate = done / seconds_since(start);
	int st_unused;
	const double cpu_us = (cpu_seconds(child) - cpu_start) * 1e6 / static_cast<double>(done);
	const double client_us =
		(cpu_seconds(::getpid()) - client_start) * 1e6 / static_cast<double>(done);
	ring.stop();
	peers.clear();
	if (crowd > 0) {
		::kill(crowd, SIGKILL);
		::waitpid(crowd, &st_unused, 0);
	}
	::kill(child, SIGTERM);
	int st;
	::waitpid(child, &st, 0);
	::unlink(path.c_str());
	return {uring ? "io_uring" : "blocking thread-per-client", clients, rate, cpu_us, client_us,
		static_cast<double>(rss_after - rss_before) / static_cast<double>(clients)};
}

} // namespace

int main(int argc, char **argv)
{
	double seconds = 3;
	std::string out = "build/bench";
	bool handoff_only = false;
	bool hostile_only = false;
	bool epoll_client = false;
	for (int i = 1; i < argc; i++) {
		if (std::string(argv[i]) == "--hostile")
			hostile_only = true;
		if (std::string(argv[i]) == "--handoff-only")
			handoff_only = true;
		if (std::string(argv[i]) == "--epoll-client")
			epoll_client = true;
		if (std::string(argv[i]) == "--profile-handoff") {
			/* For perf: libxmem hand-offs only, nothing written. */
			auto [a, b] = channel::pair();
			for (int k = 0; k < 100000; k++)
				xmem_handoff(a, b, false);
			return 0;
		}
	}
	for (int i = 1; i + 1 < argc; i++) {
		if (std::string(argv[i]) == "--seconds")
			seconds = std::stod(argv[++i]);
		else if (std::string(argv[i]) == "--out")
			out = argv[++i];
		else if (std::string(argv[i]) == "--loops")
			event_loops = static_cast<unsigned>(std::stoul(argv[++i]));
	}
	struct rlimit rl;
	::getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = std::max<rlim_t>(rl.rlim_cur, std::min<rlim_t>(rl.rlim_max, 16384));
	::setrlimit(RLIMIT_NOFILE, &rl);

	for (int i = 1; i + 2 < argc; i++) {
		if (std::string(argv[i]) == "--profile-server") {
			/* For perf: one server, nothing written. */
			const bool uring = std::string(argv[i + 1]) == "uring";
			auto r = epoll_client
					 ? server_rate<load_epoll>(uring, std::stoul(argv[i + 2]), seconds)
					 : server_rate<load_ring>(uring, std::stoul(argv[i + 2]), seconds);
			std::printf("%s %zu clients: %.0f requests/s, server %.2f us, client %.2f us\n",
				    r.engine.c_str(), r.clients, r.requests_per_s,
				    r.server_cpu_us_per_request, r.client_cpu_us_per_request);
			return 0;
		}
	}

	if (hostile_only) {
		/*
		 * Grants per second to honest clients with 100 idle and 10 hostile
		 * peers connected, against the same with none (io_uring server).
		 */
		std::ostringstream md, js;
		md << "| clients | grants/s, no other peers | grants/s, 100 idle + 10 hostile | ratio | target |\n|---|---|---|---|---|\n";
		js << "{\n  \"hostile\": [\n";
		const std::size_t counts[] = {1, 64, 1000};
		for (std::size_t i = 0; i < std::size(counts); i++) {
			const std::size_t n = counts[i];
			std::cerr << "bench: " << n << " clients, alone and beside hostile peers...\n";
			server_result calm = server_rate<load_ring>(true, n, seconds);
			server_result crowd = server_rate<load_ring>(true, n, seconds, true);
			char line[256];
			std::snprintf(line, sizeof(line), "| %zu | %.0f | %.0f | %.3f | >= 0.9 |\n", n,
				      calm.requests_per_s, crowd.requests_per_s,
				      crowd.requests_per_s / calm.requests_per_s);
			md << line;
			js << "    {\"clients\": " << n << ", \"alone_per_s\": " << calm.requests_per_s
			   << ", \"hostile_per_s\": " << crowd.requests_per_s << ", \"ratio\": "
			   << crowd.requests_per_s / calm.requests_per_s << "}"
			   << (i + 1 < std::size(counts) ? "," : "") << "\n";
		}
		js << "  ]\n}\n";
		std::ofstream(out + "/hostile.md") << md.str();
		std::ofstream(out + "/hostile.json") << js.str();
		std::cout << md.str();
		return 0;
	}

	kernel_support ks = probe_kernel();
	if (!ks.secret && !ks.exclusive) {
		std::cerr << "bench: needs memfd_secret or memfd_exclusive\n";
		return 77;
	}
	std::cerr << "bench: hand-offs (" << seconds << " s each)...\n";
	pair_rate plain = handoff_rates(false, seconds);
	pair_rate touched = handoff_rates(true, seconds);

	std::vector<server_result> servers;
	for (std::size_t clients : {64, 1000}) {
		if (handoff_only)
			break;
		for (bool uring : {true, false}) {
			std::cerr << "bench: " << (uring ? "io_uring" : "blocking") << " server, " << clients
				  << " clients...\n";
			servers.push_back(epoll_client ? server_rate<load_epoll>(uring, clients, seconds)
						       : server_rate<load_ring>(uring, clients, seconds));
		}
	}
	auto ratio_at = [&](std::size_t clients) {
		double u = 0, b = 0;
		for (auto &s : servers) {
			if (s.clients == clients)
				(s.engine == "io_uring" ? u : b) = s.requests_per_s;
		}
		return b > 0 ? u / b : 0;
	};

	std::ostringstream md, js;
	char buf[512];
	md << "## Hand-off benchmarks (" << to_string(memory::create("probe", 4096).backend())
	   << ", " << std::thread::hardware_concurrency() << " CPUs)\n\n";
	md << "| measure | raw syscalls (C) | raw + MADV_DONTFORK | libxmem | libxmem / raw | libxmem / raw + DONTFORK | target |\n|---|---|---|---|---|---|---|\n";
	std::snprintf(buf, sizeof(buf),
		      "| hand-offs/s: create, size, send, receive, verify, map | %.0f | %.0f | %.0f | %.3f | %.3f | >= 0.9 |\n"
		      "| hand-offs/s: the same + first read (page fault) | %.0f | %.0f | %.0f | %.3f | %.3f | >= 0.9 |\n",
		      plain.raw, plain.raw_dontfork, plain.xmem, plain.xmem / plain.raw,
		      plain.xmem / plain.raw_dontfork, touched.raw, touched.raw_dontfork, touched.xmem,
		      touched.xmem / touched.raw, touched.xmem / touched.raw_dontfork);
	md << buf;
	md << "\n| server | clients | requests/s | server CPU per request (us) | client CPU per request (us) | RSS per connected peer (KiB) |\n|---|---|---|---|---|---|\n";
	for (auto &s : servers) {
		std::snprintf(buf, sizeof(buf), "| %s | %zu | %.0f | %.2f | %.2f | %.2f |\n",
			      s.engine.c_str(), s.clients, s.requests_per_s,
			      s.server_cpu_us_per_request, s.client_cpu_us_per_request,
			      s.rss_kib_per_peer);
		md << buf;
	}
	std::snprintf(buf, sizeof(buf),
		      "\nio_uring / blocking: %.2fx at 64 clients, %.2fx at 1000 clients (target >= 1.5x at 1000).\n"
		      "io_uring server: %ld event loops (server_options::event_loops).\n"
		      "io_uring server state per peer slot: %zu bytes, allocated up front for max_peers.\n"
		      "Load generator: %s, one process for every client.\n",
		      ratio_at(64), ratio_at(1000),
		      event_loops ? long(event_loops) : ::sysconf(_SC_NPROCESSORS_ONLN), server::peer_state_bytes,
		      epoll_client ? "epoll (--epoll-client)" : "one io_uring");
	md << buf;

	auto rates = [&](const char *name, const pair_rate &r) {
		js << "  \"" << name << "\": {\"raw_per_s\": " << r.raw
		   << ", \"raw_dontfork_per_s\": " << r.raw_dontfork << ", \"xmem_per_s\": " << r.xmem
		   << ", \"ratio\": " << r.xmem / r.raw
		   << ", \"ratio_dontfork\": " << r.xmem / r.raw_dontfork << "},\n";
	};
	js << "{\n";
	rates("handoff", plain);
	rates("handoff_first_read", touched);
	js << "  \"servers\": [\n";
	for (std::size_t i = 0; i < servers.size(); i++) {
		auto &s = servers[i];
		js << "    {\"engine\": \"" << s.engine << "\", \"clients\": " << s.clients
		   << ", \"requests_per_s\": " << s.requests_per_s
		   << ", \"server_cpu_us_per_request\": " << s.server_cpu_us_per_request
		   << ", \"client_cpu_us_per_request\": " << s.client_cpu_us_per_request
		   << ", \"rss_kib_per_peer\": " << s.rss_kib_per_peer << "}"
		   << (i + 1 < servers.size() ? "," : "") << "\n";
	}
	js << "  ],\n  \"io_uring_over_blocking\": {\"64\": " << ratio_at(64)
	   << ", \"1000\": " << ratio_at(1000) << "},\n  \"peer_state_bytes\": "
	   << server::peer_state_bytes << "\n}\n";

	std::ofstream(out + "/handoff.md") << md.str();
	std::ofstream(out + "/handoff.json") << js.str();
	std::cout << md.str();
	return 0;
}
