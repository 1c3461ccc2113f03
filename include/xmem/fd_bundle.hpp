// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fd bundles: a set of fds of announced kinds plus a small payload, sent in
 * one SCM_RIGHTS message on a channel, as a live-update handover passes a
 * process's resources to its successor (QEMU's cpr-transfer passes the fds of
 * guest RAM the same way). The receiver learns from the bundle header what
 * each fd claims to be and checks it against what the kernel says the fd is
 * (fd_kind_of) before the bundle is handed out: a bundle whose fds are not
 * what it announces, or not what the receiver expects, is refused and every
 * fd of it is closed.
 *
 * What this cannot check: which KVM VM a vCPU or guest_memfd fd belongs to
 * (the kernel does not say; KVM's own ioctls refuse a guest_memfd of another
 * VM, docs/vmm.md). Callers check that with the kernel.
 *
 * Wire format (docs/vmm.md, "libxmem: fd bundles"): one message on the channel's
 * socket, payload in host byte order:
 *   0  u32 magic     0x58464442 ("XFDB")
 *   4  u16 version   1
 *   6  u16 reserved  0
 *   8  u32 type      the application's tag for what the bundle is
 *  12  u32 fd_count  fds attached by SCM_RIGHTS, <= wire::scm_max_fd
 *  16  u32 data_size bytes of application data after the kinds
 *  20  u32 reserved  0
 *  24  u32 kinds[fd_count]  fd_kind of each fd, in order
 *  ..  data[data_size]
 * The message is never a valid wire header (its magic differs), so a peer
 * that expects one refuses it as errc::bad_header.
 */
#pragma once

#include <xmem/channel.hpp>
#include <xmem/unique_fd.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

namespace xmem {

/* What an fd of a bundle is, as the kernel names it. */
enum class fd_kind : std::uint32_t {
	/* memfd_exclusive, memfd_secret or memfd_create memory (fstatfs magic, S_ISREG). */
	memory = 1,
	/* A KVM VM (KVM_CREATE_VM): anon inode "kvm-vm". */
	kvm_vm = 2,
	/* A KVM vCPU (KVM_CREATE_VCPU): anon inode "kvm-vcpu:<id>". */
	kvm_vcpu = 3,
	/* A KVM guest_memfd (KVM_CREATE_GUEST_MEMFD): anon inode "[kvm-gmem]". */
	guest_memfd = 4,
};

/* "memory", "kvm-vm", "kvm-vcpu", "guest_memfd"; "unknown" for other values. */
std::string_view to_string(fd_kind k) noexcept;

/*
 * What @fd is: one of fd_kind, from fstat, fstatfs and the name the kernel
 * gives it in /proc/self/fd (readlink, proc(5)). errc::wrong_file_type when
 * it is none of them; errno (EBADF; ENOENT without /proc).
 */
fd_kind fd_kind_of(borrowed_fd fd, std::error_code &ec) noexcept;

/* What one bundle fd is: kind checked; fd owned. */
struct bundle_fd {
	fd_kind kind;
	unique_fd fd;
};

struct fd_bundle {
	std::uint32_t type = 0;
	std::vector<bundle_fd> fds;
	std::vector<std::byte> data;
};

/* What a receiver takes (receive_bundle). */
struct bundle_requirements {
	/* The bundle type expected; another: errc::bad_header. */
	std::uint32_t type = 0;
	/* The kinds expected, in order; other kinds or count: errc::fd_count_mismatch or wrong_file_type. */
	std::span<const fd_kind> kinds;
	/* Most bytes of data accepted; more: errc::payload_truncated. */
	std::size_t max_data = 65536;
};

/*
 * Sends @fds, announced as @kinds (same length, <= wire::scm_max_fd), with
 * @data (<= 1 MiB), as one message. Each fd's kind is checked first
 * (fd_kind_of): the sender cannot announce what the kernel would not confirm
 * (errc::wrong_file_type; errc::fd_count_mismatch when the spans differ in
 * length). MSG_NOSIGNAL, retried on EINTR; EPIPE when the peer has gone.
 */
void send_bundle(const channel &ch, std::uint32_t type, std::span<const fd_kind> kinds,
		 std::span<const borrowed_fd> fds, std::span<const std::byte> data,
		 std::error_code &ec) noexcept;

/*
 * Receives one bundle and checks it: the receive rules of docs/protocol.md
 * (MSG_CMSG_CLOEXEC, every fd owned before any check, MSG_CTRUNC, MSG_TRUNC,
 * unknown control messages), then the header (magic, version, reserved,
 * type: errc::bad_header or unsupported_version), the fd count against the
 * header and @req.kinds (errc::fd_count_mismatch), then each fd: the kind
 * announced must be the kind expected and what the kernel says it is
 * (errc::wrong_file_type). On error no fd of the message remains open.
 */
fd_bundle receive_bundle(const channel &ch, const bundle_requirements &req,
			 std::error_code &ec) noexcept;

} // namespace xmem
