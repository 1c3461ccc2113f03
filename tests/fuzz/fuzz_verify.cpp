// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target: verify_memory against a small menu of real fds made in
 * the target, with fuzzed size, seals, header and requirements.
 *
 * Input: byte 0 the fd kind (menu below), byte 1 its size in 1 KiB steps
 * (0..15 KiB), byte 2 the seals added to it, byte 3 the requirement flags
 * (bit 0: require the header's size, bit 1: accept ordinary memory, bit 2:
 * require a size one page larger), byte 4 required seals, then up to 96
 * bytes of header: decoded when valid, else its fields taken raw.
 *
 * Properties (fd-passing cases 7-10):
 *  - on error the fd handed in is closed; on success it is owned by the result;
 *  - nothing leaks: the count of open fds is the same after every input;
 *  - accepted memory is an exclusive backend (or ordinary when allowed),
 *    its size is the header's, > 0, and every promised or required seal is
 *    present; size_is_stable is true exactly with F_SEAL_SHRINK or memfd_secret;
 *  - mapping and reading all of the accepted size never faults (no SIGBUS).
 */
#include <xmem/channel.hpp>
#include <xmem/error.hpp>
#include <xmem/mapping.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace xmem;

namespace {

std::size_t open_fds()
{
	DIR *d = ::opendir("/proc/self/fd");
	if (!d)
		std::abort();
	std::size_t n = 0;
	while (struct dirent *e = ::readdir(d))
		n += e->d_name[0] != '.';
	::closedir(d);
	return n;
}

enum kind : std::uint8_t {
	secret, ordinary_sealable, ordinary_unsealable, pipe_end, dev_null, tmpfile, socket_end,
	event_fd, directory, kinds
};

/* One fd of @k, @size bytes where it has a size, with @seal_bits added where it can. */
unique_fd make(kind k, std::size_t size, unsigned seal_bits)
{
	unique_fd fd;
	switch (k) {
	case secret:
		fd.reset(static_cast<int>(::syscall(SYS_memfd_secret, O_CLOEXEC)));
		if (fd && size)
			(void)!::ftruncate(fd.get(), static_cast<off_t>(size));
		break;
	case ordinary_sealable:
	case ordinary_unsealable:
		fd.reset(::memfd_create("fuzz", MFD_CLOEXEC |
						(k == ordinary_sealable ? MFD_ALLOW_SEALING : 0)));
		if (fd) {
			(void)!::ftruncate(fd.get(), static_cast<off_t>(size));
			::fcntl(fd.get(), F_ADD_SEALS, static_cast<int>(seal_bits & seals::all));
		}
		break;
	case pipe_end: {
		int p[2];
		if (::pipe2(p, O_CLOEXEC) == 0) {
			fd.reset(p[0]);
			::close(p[1]);
		}
		break;
	}
	case dev_null:
		fd.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
		break;
	case tmpfile:
		fd.reset(::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
		if (fd)
			(void)!::ftruncate(fd.get(), static_cast<off_t>(size));
		break;
	case socket_end: {
		int sv[2];
		if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0) {
			fd.reset(sv[0]);
			::close(sv[1]);
		}
		break;
	}
	case event_fd:
		fd.reset(::eventfd(0, EFD_CLOEXEC));
		break;
	case directory:
		fd.reset(::open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		break;
	case kinds:
		break;
	}
	return fd;
}

template <typename T>
T field(const std::uint8_t *h, std::size_t off)
{
	T v;
	std::memcpy(&v, h + off, sizeof(v));
	return v;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	if (size < 5)
		return 0;
	const std::size_t before = open_fds();
	const auto k = static_cast<kind>(data[0] % kinds);
	const std::size_t bytes = (data[1] % 16) * 1024;
	const unsigned add = data[2];
	const unsigned flags = data[3];

	std::uint8_t raw[wire::header_size] = {};
	std::memcpy(raw, data + 5, std::min(size - 5, wire::header_size));
	std::error_code ec;
	wire::header h = wire::decode(std::span(reinterpret_cast<const std::byte *>(raw),
						wire::header_size), ec);
	if (ec) {
		/* Not a valid header: take its fields raw, as a careless peer's would be. */
		h = {};
		h.kind = wire::kind::memory;
		h.fd_count = 1;
		h.seals = seals(field<std::uint32_t>(raw, 12));
		h.size = field<std::uint64_t>(raw, 16);
	}

	requirements req;
	if (flags & 1)
		req.size = h.size;
	if (flags & 4)
		req.size = h.size + 4096;
	req.accept_ordinary = flags & 2;
	req.seals = seals(data[4] & seals::all);

	unique_fd fd = make(k, bytes, add);
	if (!fd)
		return 0; /* e.g. no memfd_secret on this kernel */
	const int raw_fd = fd.get();
	received_memory r = verify_memory(std::move(fd), h, req, ec);

	if (ec) {
		/* Rejected: the fd is closed, nothing owned. */
		if (::fcntl(raw_fd, F_GETFD) != -1 || r.memory.valid())
			std::abort();
	} else {
		struct stat st;
		if (!r.memory.valid() || ::fstat(r.memory.fd().get(), &st) != 0 ||
		    static_cast<std::size_t>(st.st_size) != r.size || r.size == 0 || r.size != h.size ||
		    (req.size && *req.size != r.size) || !r.seals.contains(req.seals | h.seals))
			std::abort();
		if (r.memory.backend() == backend::ordinary && !req.accept_ordinary)
			std::abort();
		if (k != secret && k != ordinary_sealable && k != ordinary_unsealable)
			std::abort(); /* a pipe, file, socket... accepted as memory */
		const bool stable = r.seals.contains(seals(seals::shrink)) ||
				    r.memory.backend() == backend::secret;
		if (r.size_is_stable != stable)
			std::abort();
		/* Map and read every page of what was verified: must not SIGBUS. */
		mapping m = mapping::map(r.memory.fd(), r.size, r.memory.backend(), access::read_only,
					 ec);
		if (!ec) {
			volatile std::byte sink{};
			for (std::size_t off = 0; off < r.size; off += 4096)
				sink = sink ^ m.data()[off];
			sink = sink ^ m.data()[r.size - 1];
		}
	}
	r = {};
	if (open_fds() != before)
		std::abort(); /* an fd leaked */
	return 0;
}
