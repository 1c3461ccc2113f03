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
 *     peer, channel::receive / send_memory), at 64 and 1,000 clients. The
 *     server runs in a child process; one client process drives every
 *     client over epoll with one request outstanding each, receives the
 *     reply with a raw recvmsg and closes the fd it carries.
 *  3. Memory per connected peer: the server process's VmRSS with every
 *     client connected and served once, less its VmRSS before any connected,
 *     over the number of peers.
 *
 * Usage: handoff_bench [--seconds S] [--out DIR] [--handoff-only]
 *   DIR gets handoff.json and handoff.md; --handoff-only skips the servers;
 *   --profile-handoff runs 100,000 libxmem hand-offs and nothing else (for perf).
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
			o.requests_per_second = 0;
			o.peer_timeout = std::chrono::minutes(5);
			server s(std::move(l), [&](const request_context &) { return reply::share(mem); },
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

server_result server_rate(bool uring, std::size_t clients, double seconds)
{
	const std::string path = "/tmp/xmem-bench-" + std::to_string(::getpid()) + ".sock";
	int ready[2];
	if (::pipe2(ready, O_CLOEXEC) < 0)
		throw std::system_error(errno, std::generic_category(), "pipe");
	pid_t child = ::fork();
	if (child == 0) {
		::close(ready[0]);
		serve(uring, path, ready[1], clients + 16);
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
	unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
	for (std::size_t i = 0; i < clients; i++) {
		peers.push_back(channel::connect(path));
		struct epoll_event ev = {};
		ev.events = EPOLLIN;
		ev.data.u64 = i;
		::epoll_ctl(ep.get(), EPOLL_CTL_ADD, peers.back().fd().get(), &ev);
	}
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

	for (std::size_t i = 0; i < clients; i++)
		ask(i);
	std::vector<struct epoll_event> events(256);
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
		int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()), 100);
		for (int i = 0; i < n; i++) {
			const std::size_t k = events[i].data.u64;
			if (!take_reply(peers[k].fd().get()))
				throw std::runtime_error("bench: a reply failed");
			done++;
			ask(k);
		}
	}
	const double rate = done / seconds_since(start);
	const double cpu_us = (cpu_seconds(child) - cpu_start) * 1e6 / static_cast<double>(done);
	const double client_us =
		(cpu_seconds(::getpid()) - client_start) * 1e6 / static_cast<double>(done);
	peers.clear();
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
	for (int i = 1; i < argc; i++) {
		if (std::string(argv[i]) == "--handoff-only")
			handoff_only = true;
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
	}
	struct rlimit rl;
	::getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = std::max<rlim_t>(rl.rlim_cur, std::min<rlim_t>(rl.rlim_max, 16384));
	::setrlimit(RLIMIT_NOFILE, &rl);

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
			servers.push_back(server_rate(uring, clients, seconds));
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
		      "io_uring server state per peer slot: %zu bytes, allocated up front for max_peers.\n",
		      ratio_at(64), ratio_at(1000), server::peer_state_bytes);
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
