// SPDX-License-Identifier: LGPL-2.1-or-later

#include "harness.hpp"

#include <boost/test/unit_test.hpp>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace e2e {

namespace {

using clock = std::chrono::steady_clock;

constexpr gid_t nogroup = 65534;

/* In a forked child: becomes @uid, or exits 126. */
void become(uid_t uid)
{
	if (::setgroups(0, nullptr) < 0 || ::setgid(nogroup) < 0 || ::setuid(uid) < 0)
		::_exit(126);
}

/* In a forked child: execs @argv with stdout on @out and stderr on @err; never returns. */
[[noreturn]] void exec_child(const std::vector<std::string> &argv, int out, int err,
			     std::optional<uid_t> uid)
{
	int null = ::open("/dev/null", O_RDONLY);
	if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0)
		::_exit(127);
	if (uid)
		become(*uid);
	std::vector<char *> args;
	for (const std::string &a : argv)
		args.push_back(const_cast<char *>(a.c_str()));
	args.push_back(nullptr);
	::execvp(args[0], args.data());
	::_exit(127);
}

/* Reads what @fd has into @to; false at EOF or error. */
bool drain(int fd, std::string &to)
{
	char buf[4096];
	ssize_t n;

	do
		n = ::read(fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	to.append(buf, static_cast<std::size_t>(n));
	return true;
}

int decode_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

/* Waits for @pid; SIGKILLs it first when @kill is set. */
int reap(pid_t pid, bool kill)
{
	int status = 0;

	if (kill)
		::kill(pid, SIGKILL);
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return decode_status(status);
}

struct pipe_pair {
	int read = -1;
	int write = -1;
};

pipe_pair make_pipe()
{
	int fds[2];
	BOOST_REQUIRE_MESSAGE(::pipe2(fds, O_CLOEXEC) == 0, "pipe2: " << std::strerror(errno));
	return {fds[0], fds[1]};
}

} // namespace

std::string program(const char *var)
{
	const char *path = std::getenv(var);
	BOOST_REQUIRE_MESSAGE(path && *path, var << " is not set (run the tests with meson test)");
	return path;
}

temp_dir::temp_dir()
{
	const char *base = std::getenv("TMPDIR");
	std::string tmpl = std::string(base && *base ? base : "/tmp") + "/xmem-e2e.XXXXXX";
	BOOST_REQUIRE_MESSAGE(::mkdtemp(tmpl.data()), "mkdtemp: " << std::strerror(errno));
	path_ = tmpl;
}

temp_dir::~temp_dir()
{
	std::error_code ec;
	fs::remove_all(path_, ec);
}

result run(const std::vector<std::string> &argv, std::optional<uid_t> uid)
{
	pipe_pair out = make_pipe();
	pipe_pair err = make_pipe();
	pid_t pid = ::fork();
	BOOST_REQUIRE_MESSAGE(pid >= 0, "fork: " << std::strerror(errno));
	if (pid == 0)
		exec_child(argv, out.write, err.write, uid);
	::close(out.write);
	::close(err.write);

	result r;
	pollfd fds[2] = {{out.read, POLLIN, 0}, {err.read, POLLIN, 0}};
	const auto deadline = clock::now() + std::chrono::seconds(60);
	bool timed_out = false;
	while (fds[0].fd >= 0 || fds[1].fd >= 0) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
		if (left.count() <= 0) {
			timed_out = true;
			break;
		}
		if (::poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++)
			if (fds[i].fd >= 0 && fds[i].revents &&
			    !drain(fds[i].fd, i == 0 ? r.out : r.err))
				fds[i].fd = -1;
	}
	::close(out.read);
	::close(err.read);
	r.status = reap(pid, timed_out);
	BOOST_TEST_MESSAGE("ran " << argv[0] << ": status " << r.status << "\n" << r.out << r.err);
	return r;
}

std::vector<std::string> lines(const std::string &text)
{
	std::vector<std::string> v;
	std::istringstream in(text);
	for (std::string line; std::getline(in, line);)
		v.push_back(line);
	return v;
}

vault::vault(const std::vector<std::string> &args)
{
	std::vector<std::string> argv{program("XMEM_VAULT")};
	argv.insert(argv.end(), args.begin(), args.end());
	start(argv, "ready on ");
}

vault::vault(const std::vector<std::string> &argv, const std::string &marker)
{
	start(argv, marker);
}

bool vault::wait_for(const std::string &text, int ms)
{
	const auto deadline = clock::now() + std::chrono::milliseconds(ms);
	while (log().find(text) == std::string::npos && clock::now() < deadline)
		read_some(20);
	return log_.find(text) != std::string::npos;
}

void vault::start(const std::vector<std::string> &argv, const std::string &marker)
{
	pipe_pair err = make_pipe();
	pid_ = ::fork();
	BOOST_REQUIRE_MESSAGE(pid_ >= 0, "fork: " << std::strerror(errno));
	if (pid_ == 0)
		exec_child(argv, err.write, err.write, std::nullopt);
	::close(err.write);
	err_fd_ = err.read;

	const auto deadline = clock::now() + std::chrono::seconds(10);
	while (log_.find(marker) == std::string::npos && clock::now() < deadline)
		if (!read_some(100) && err_fd_ < 0)
			break;
	ready_ = log_.find(marker) != std::string::npos;
	if (!ready_)
		status_ = wait_exit();
	BOOST_TEST_MESSAGE("vault pid " << pid_ << (ready_ ? " ready" : " not ready") << "\n" << log_);
}

vault::~vault()
{
	if (status_ < 0 && pid_ > 0)
		stop(SIGKILL);
	if (err_fd_ >= 0)
		::close(err_fd_);
}

/* Reads what stderr has within @timeout_ms; false when nothing came. */
bool vault::read_some(int timeout_ms)
{
	if (err_fd_ < 0)
		return false;
	pollfd p{err_fd_, POLLIN, 0};
	if (::poll(&p, 1, timeout_ms) <= 0)
		return false;
	if (drain(err_fd_, log_))
		return true;
	::close(err_fd_);
	err_fd_ = -1;
	return false;
}

/* Waits (up to 10 s, then SIGKILL) for the vault to exit; reads all of stderr. */
int vault::wait_exit()
{
	const auto deadline = clock::now() + std::chrono::seconds(10);
	while (err_fd_ >= 0 && clock::now() < deadline)
		read_some(100);
	return reap(pid_, err_fd_ >= 0);
}

int vault::stop(int sig)
{
	if (status_ >= 0)
		return status_;
	::kill(pid_, sig);
	status_ = wait_exit();
	BOOST_TEST_MESSAGE("vault exited with " << status_ << "\n" << log_);
	return status_;
}

const std::string &vault::log()
{
	while (read_some(0))
		;
	return log_;
}

void openssl_key(const std::string &path)
{
	result r = run({"openssl", "genpkey", "-algorithm", "ed25519", "-out", path});
	BOOST_REQUIRE_MESSAGE(r.status == 0, "openssl genpkey: " << r.err);
}

void openssh_key(const std::string &path)
{
	result r = run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", path});
	BOOST_REQUIRE_MESSAGE(r.status == 0, "ssh-keygen: " << r.err);
}

void write_text(const std::string &path, const std::string &text)
{
	std::ofstream f(path, std::ios::binary | std::ios::trunc);
	f << text;
	BOOST_REQUIRE_MESSAGE(f.good(), "cannot write " << path);
}

} // namespace e2e
