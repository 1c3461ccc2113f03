// SPDX-License-Identifier: LGPL-2.1-or-later
#include "helpers.hpp"

#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <stdexcept>
#include <thread>
#include <sys/socket.h>
#include <sys/un.h>

namespace xmem::test {

std::size_t open_fd_count()
{
	DIR *dir = ::opendir("/proc/self/fd");
	if (!dir)
		throw std::runtime_error("cannot open /proc/self/fd");
	std::size_t n = 0;
	while (struct dirent *e = ::readdir(dir)) {
		if (e->d_name[0] != '.')
			n++;
	}
	::closedir(dir);
	return n - 1; /* the DIR's own fd */
}

xmem::backend suite_backend()
{
	const char *want = std::getenv("XMEM_TEST_BACKEND");
	kernel_support ks = probe_kernel();
	if (!want || !*want) {
		if (ks.exclusive)
			return backend::exclusive;
		if (ks.secret)
			return backend::secret;
		throw std::runtime_error("neither memfd_exclusive nor memfd_secret is available");
	}
	std::string w(want);
	if (w == "exclusive" && ks.exclusive)
		return backend::exclusive;
	if (w == "secret" && ks.secret)
		return backend::secret;
	throw std::runtime_error("XMEM_TEST_BACKEND=" + w + " is not available on this kernel");
}

xmem::create_options suite_options()
{
	xmem::create_options o;
	o.require = suite_backend();
	return o;
}

long raw_send(int sock, std::span<const std::byte> payload, const std::vector<int> &fds)
{
	struct iovec iov = {const_cast<std::byte *>(payload.data()), payload.size()};
	struct msghdr msg = {};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	std::vector<struct cmsghdr> control;
	if (!fds.empty()) {
		const std::size_t space = CMSG_SPACE(sizeof(int) * fds.size());
		control.resize((space + sizeof(struct cmsghdr) - 1) / sizeof(struct cmsghdr));
		msg.msg_control = control.data();
		msg.msg_controllen = space;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
		std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
	}
	return ::sendmsg(sock, &msg, MSG_NOSIGNAL);
}

std::vector<std::byte> encoded(const wire::header &h)
{
	std::error_code ec;
	auto bytes = wire::encode(h, ec);
	if (ec)
		throw std::runtime_error("encode: " + ec.message());
	return {bytes.begin(), bytes.end()};
}

std::string temp_dir()
{
	const char *base = std::getenv("TMPDIR");
	std::string tmpl = std::string(base && *base ? base : "/tmp") + "/xmem-test-XXXXXX";
	if (!::mkdtemp(tmpl.data()))
		throw std::runtime_error("mkdtemp failed");
	return tmpl;
}

unique_fd unix_connect(const std::string &path, int type)
{
	unique_fd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
	struct sockaddr_un addr = {};
	addr.sun_family = AF_UNIX;
	if (!fd || path.size() >= sizeof(addr.sun_path))
		return {};
	std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
	if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0)
		return {};
	return fd;
}

bool wait_until(const std::function<bool()> &pred, std::chrono::milliseconds limit)
{
	const auto end = std::chrono::steady_clock::now() + limit;
	while (!pred()) {
		if (std::chrono::steady_clock::now() > end)
			return false;
		std::this_thread::sleep_for(std::chrono::milliseconds(2));
	}
	return true;
}

} // namespace xmem::test
