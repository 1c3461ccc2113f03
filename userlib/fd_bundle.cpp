// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/fd_bundle.hpp>

#include "cmsg.hpp"

#include <xmem/error.hpp>
#include <xmem/memory.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef ANON_INODE_FS_MAGIC
#define ANON_INODE_FS_MAGIC 0x09041934 /* include/uapi/linux/magic.h */
#endif

namespace xmem {

namespace {

constexpr std::uint32_t bundle_magic = 0x58464442; /* "XFDB" */
constexpr std::uint16_t bundle_version = 1;
constexpr std::size_t bundle_header_size = 24;
constexpr std::size_t bundle_max_data = 1 << 20;

struct bundle_header {
	std::uint32_t magic;
	std::uint16_t version;
	std::uint16_t reserved0;
	std::uint32_t type;
	std::uint32_t fd_count;
	std::uint32_t data_size;
	std::uint32_t reserved1;
};
static_assert(sizeof(bundle_header) == bundle_header_size);

bool known_kind(std::uint32_t k) noexcept
{
	return k >= static_cast<std::uint32_t>(fd_kind::memory) &&
	       k <= static_cast<std::uint32_t>(fd_kind::guest_memfd);
}

/* The anon inode's name as /proc/self/fd shows it ("anon_inode:kvm-vm"), or "". */
std::string anon_name(int fd, std::error_code &ec)
{
	const std::string link = "/proc/self/fd/" + std::to_string(fd);
	std::array<char, 256> buf;
	const ssize_t n = ::readlink(link.c_str(), buf.data(), buf.size() - 1);
	if (n < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	return std::string(buf.data(), static_cast<std::size_t>(n));
}

} // namespace

std::string_view to_string(fd_kind k) noexcept
{
	switch (k) {
	case fd_kind::memory: return "memory";
	case fd_kind::kvm_vm: return "kvm-vm";
	case fd_kind::kvm_vcpu: return "kvm-vcpu";
	case fd_kind::guest_memfd: return "guest_memfd";
	}
	return "unknown";
}

fd_kind fd_kind_of(borrowed_fd fd, std::error_code &ec) noexcept
{
	ec.clear();
	struct statfs sfs;
	if (::fstatfs(fd.get(), &sfs) < 0) {
		ec = detail::errno_code(errno);
		return {};
	}
	if (static_cast<unsigned long>(sfs.f_type) != ANON_INODE_FS_MAGIC) {
		/* Memory: memory::adopt's checks, on a duplicate it then closes. */
		const int dup = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
		if (dup < 0) {
			ec = detail::errno_code(errno);
			return {};
		}
		memory m = memory::adopt(unique_fd(dup), ec);
		return fd_kind::memory; /* meaningful only without ec */
	}
	try {
		const std::string name = anon_name(fd.get(), ec);
		if (ec)
			return {};
		if (name == "anon_inode:kvm-vm")
			return fd_kind::kvm_vm;
		if (name == "anon_inode:[kvm-gmem]")
			return fd_kind::guest_memfd;
		static constexpr std::string_view vcpu = "anon_inode:kvm-vcpu:";
		if (name.size() > vcpu.size() && name.compare(0, vcpu.size(), vcpu) == 0 &&
		    name.find_first_not_of("0123456789", vcpu.size()) == std::string::npos)
			return fd_kind::kvm_vcpu;
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return {};
	}
	ec = errc::wrong_file_type;
	return {};
}

void send_bundle(const channel &ch, std::uint32_t type, std::span<const fd_kind> kinds,
		 std::span<const borrowed_fd> fds, std::span<const std::byte> data,
		 std::error_code &ec) noexcept
{
	ec.clear();
	if (kinds.size() != fds.size()) {
		ec = errc::fd_count_mismatch;
		return;
	}
	if (fds.size() > wire::scm_max_fd) {
		ec = errc::too_many_fds;
		return;
	}
	if (data.size() > bundle_max_data) {
		ec = detail::errno_code(EMSGSIZE);
		return;
	}
	for (std::size_t i = 0; i < fds.size(); i++) {
		const fd_kind k = fd_kind_of(fds[i], ec);
		if (ec)
			return;
		if (k != kinds[i]) {
			ec = errc::wrong_file_type;
			return;
		}
	}
	std::vector<std::byte> payload;
	try {
		payload.resize(bundle_header_size + 4 * kinds.size() + data.size());
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return;
	}
	const bundle_header h{bundle_magic, bundle_version, 0, type,
			      static_cast<std::uint32_t>(fds.size()),
			      static_cast<std::uint32_t>(data.size()), 0};
	std::memcpy(payload.data(), &h, sizeof(h));
	for (std::size_t i = 0; i < kinds.size(); i++) {
		const auto k = static_cast<std::uint32_t>(kinds[i]);
		std::memcpy(payload.data() + bundle_header_size + 4 * i, &k, 4);
	}
	if (!data.empty())
		std::memcpy(payload.data() + bundle_header_size + 4 * kinds.size(), data.data(),
			    data.size());

	detail::max_control_buffer control;
	struct iovec iov;
	struct msghdr msg;
	detail::build_send(msg, iov, payload,
			   std::span(control.bytes).first(CMSG_SPACE(sizeof(int) * fds.size())),
			   fds);
	ssize_t n;
	do {
		n = ::sendmsg(ch.fd().get(), &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		ec = detail::errno_code(errno);
}

fd_bundle receive_bundle(const channel &ch, const bundle_requirements &req,
			 std::error_code &ec) noexcept
{
	ec.clear();
	fd_bundle out;
	std::vector<std::byte> payload;
	const std::size_t max_data = std::min(req.max_data, bundle_max_data);
	try {
		/* One byte more than the most accepted: a longer message is MSG_TRUNC. */
		payload.resize(bundle_header_size + 4 * wire::scm_max_fd + max_data + 1);
	} catch (const std::bad_alloc &) {
		ec = detail::errno_code(ENOMEM);
		return out;
	}
	detail::max_control_buffer control;
	const std::size_t controllen = CMSG_SPACE(sizeof(int) * wire::scm_max_fd);
	std::array<unique_fd, wire::scm_max_fd + 8> slots;
	detail::fd_sink sink{std::span(slots).first(
				     std::min(slots.size(), detail::fds_fitting(controllen))),
			     0, 0};

	struct iovec iov;
	struct msghdr msg;
	detail::build_receive(msg, iov, payload, std::span(control.bytes).first(controllen));
	ssize_t n;
	do {
		n = ::recvmsg(ch.fd().get(), &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		ec = detail::errno_code(errno);
		return out;
	}
	/* Rule 1: own every fd before any check. */
	bool other_control = false;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			const auto *p = reinterpret_cast<const unsigned char *>(CMSG_DATA(c));
			for (std::size_t i = 0; i < count; i++) {
				int fd;
				std::memcpy(&fd, p + i * sizeof(int), sizeof(int));
				sink.take(fd);
			}
		} else if (!(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)) {
			other_control = true;
		}
	}
	const auto len = static_cast<std::size_t>(n);
	bundle_header h{};
	if (msg.msg_flags & MSG_CTRUNC)
		ec = errc::control_truncated;
	else if (len == 0 && sink.count == 0)
		ec = errc::peer_closed;
	else if (msg.msg_flags & MSG_TRUNC)
		ec = errc::payload_truncated;
	else if (other_control)
		ec = errc::unexpected_control;
	else if (sink.dropped)
		ec = errc::too_many_fds;
	else if (len < bundle_header_size)
		ec = errc::bad_header;
	if (!ec) {
		std::memcpy(&h, payload.data(), sizeof(h));
		if (h.magic != bundle_magic || h.reserved0 || h.reserved1)
			ec = errc::bad_header;
		else if (h.version != bundle_version)
			ec = errc::unsupported_version;
		else if (h.fd_count > wire::scm_max_fd ||
			 len != bundle_header_size + 4 * std::size_t{h.fd_count} + h.data_size)
			ec = errc::bad_header;
		else if (h.type != req.type)
			ec = errc::bad_header;
		else if (h.data_size > max_data)
			ec = errc::payload_truncated;
		else if (h.fd_count != sink.count || sink.count != req.kinds.size())
			ec = errc::fd_count_mismatch;
	}
	if (ec) {
		sink.clear();
		return out;
	}
	try {
		out.fds.reserve(sink.count);
		out.data.assign(payload.begin() + bundle_header_size + 4 * h.fd_count,
				payload.begin() + static_cast<std::ptrdiff_t>(len));
	} catch (const std::bad_alloc &) {
		sink.clear();
		ec = detail::errno_code(ENOMEM);
		return out;
	}
	for (std::size_t i = 0; i < sink.count; i++) {
		std::uint32_t k;
		std::memcpy(&k, payload.data() + bundle_header_size + 4 * i, 4);
		if (!known_kind(k) || static_cast<fd_kind>(k) != req.kinds[i]) {
			ec = errc::wrong_file_type;
			break;
		}
		const fd_kind actual = fd_kind_of(slots[i], ec);
		if (ec)
			break;
		if (actual != req.kinds[i]) {
			ec = errc::wrong_file_type;
			break;
		}
	}
	if (ec) {
		sink.clear();
		out.data.clear();
		return out;
	}
	out.type = h.type;
	for (std::size_t i = 0; i < sink.count; i++)
		out.fds.push_back({req.kinds[i], std::move(slots[i])}); /* reserved: no throw */
	sink.count = 0;
	return out;
}

} // namespace xmem
