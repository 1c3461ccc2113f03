// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The C API (include/xmem/xmem.h) over the C++ one: every function calls the
 * non-throwing C++ overloads and turns the std::error_code into a negative
 * return, so C, Python (ctypes), Rust and Go callers keep libxmem's checks.
 * Nothing here throws across the C boundary: allocations use nothrow new
 * and every std::string is built inside a try block.
 */
#include <xmem/xmem.h>
#include <xmem/xmem.hpp>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>

struct xmem_mapping {
	xmem::mapping m;
};

struct xmem_listener {
	xmem::listener l;
};

namespace {

static_assert(XMEM_BACKEND_EXCLUSIVE == static_cast<int>(xmem::backend::exclusive));
static_assert(XMEM_BACKEND_SECRET == static_cast<int>(xmem::backend::secret));
static_assert(XMEM_BACKEND_ORDINARY == static_cast<int>(xmem::backend::ordinary));
static_assert(XMEM_SEAL_SEAL == xmem::seals::seal && XMEM_SEAL_SHRINK == xmem::seals::shrink &&
	      XMEM_SEAL_GROW == xmem::seals::grow && XMEM_SEAL_WRITE == xmem::seals::write &&
	      XMEM_SEAL_FUTURE_WRITE == xmem::seals::future_write);
static_assert(XMEM_NAME_MAX == xmem::wire::name_max);
static_assert(XMEM_ECTRUNC - XMEM_ERRC_BASE == static_cast<int>(xmem::errc::control_truncated));
static_assert(XMEM_EPEERCLOSED - XMEM_ERRC_BASE == static_cast<int>(xmem::errc::peer_closed));
static_assert(XMEM_EWRONGTYPE - XMEM_ERRC_BASE == static_cast<int>(xmem::errc::wrong_file_type));
static_assert(XMEM_ENOTSEQPACKET - XMEM_ERRC_BASE == static_cast<int>(xmem::errc::not_seqpacket));
static_assert(XMEM_ENOBACKEND - XMEM_ERRC_BASE == static_cast<int>(xmem::errc::no_backend));
static_assert(XMEM_ENOTMAPPABLE - XMEM_ERRC_BASE == static_cast<int>(xmem::errc::not_mappable));

/* The C return value of @ec: 0, -errno, or -(XMEM_ERRC_BASE + errc). */
int to_c(const std::error_code &ec) noexcept
{
	if (!ec)
		return 0;
	if (ec.category() == xmem::error_category())
		return -(XMEM_ERRC_BASE + ec.value());
	if (ec.category() == std::generic_category() || ec.category() == std::system_category())
		return ec.value() > 0 ? -ec.value() : -EIO;
	return -EIO;
}

/* A copy of @fd (O_CLOEXEC) for the C++ calls that take ownership. */
xmem::unique_fd dup_fd(int fd, int &err) noexcept
{
	xmem::unique_fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
	err = copy ? 0 : -errno;
	return copy;
}

/* A channel on a copy of the borrowed socket @sock (checked: AF_UNIX SOCK_SEQPACKET). */
xmem::channel channel_of(int sock, int &err) noexcept
{
	xmem::unique_fd copy = dup_fd(sock, err);
	if (err)
		return {};
	std::error_code ec;
	xmem::channel ch = xmem::channel::adopt(std::move(copy), ec);
	err = to_c(ec);
	return ch;
}

/* The memory of the borrowed fd @fd (a copy of it), its backend identified. */
xmem::memory memory_of(int fd, int &err) noexcept
{
	xmem::unique_fd copy = dup_fd(fd, err);
	if (err)
		return {};
	std::error_code ec;
	xmem::memory mem = xmem::memory::adopt(std::move(copy), ec);
	err = to_c(ec);
	return mem;
}

/* Runs @fn, which may throw (std::string, the throwing send_*), as a C call. */
template <typename Fn>
int guarded(Fn &&fn) noexcept
{
	try {
		return fn();
	} catch (const std::system_error &e) {
		return to_c(e.code());
	} catch (const std::bad_alloc &) {
		return -ENOMEM;
	} catch (...) {
		return -EIO;
	}
}

} // namespace

extern "C" {

const char *xmem_strerror(int err)
{
	thread_local std::string text;
	const int e = err < 0 ? -err : err;
	try {
		if (e > XMEM_ERRC_BASE)
			text = xmem::make_error_code(static_cast<xmem::errc>(e - XMEM_ERRC_BASE)).message();
		else
			text = std::generic_category().message(e);
	} catch (...) {
		return "unknown error (out of memory describing it)";
	}
	return text.c_str();
}

int xmem_create(const char *name, size_t size, unsigned int flags)
{
	constexpr unsigned requires_mask = XMEM_CREATE_REQUIRE_EXCLUSIVE |
					   XMEM_CREATE_REQUIRE_SECRET |
					   XMEM_CREATE_REQUIRE_ORDINARY;
	constexpr unsigned known = requires_mask | XMEM_CREATE_ALLOW_ORDINARY |
				   XMEM_CREATE_NO_SEALING;
	const unsigned req = flags & requires_mask;
	if (!name || (flags & ~known) || (req & (req - 1)))
		return -EINVAL;

	xmem::create_options opts;
	if (req == XMEM_CREATE_REQUIRE_EXCLUSIVE)
		opts.require = xmem::backend::exclusive;
	else if (req == XMEM_CREATE_REQUIRE_SECRET)
		opts.require = xmem::backend::secret;
	else if (req == XMEM_CREATE_REQUIRE_ORDINARY)
		opts.require = xmem::backend::ordinary;
	opts.allow_ordinary_fallback = flags & XMEM_CREATE_ALLOW_ORDINARY;
	opts.allow_sealing = !(flags & XMEM_CREATE_NO_SEALING);

	std::error_code ec;
	xmem::memory mem = xmem::memory::create(name, size, opts, ec);
	if (ec)
		return to_c(ec);
	return mem.release().release();
}

int xmem_backend(int fd)
{
	int err;
	xmem::memory mem = memory_of(fd, err);
	return err ? err : static_cast<int>(mem.backend());
}

int xmem_add_seals(int fd, unsigned int seals)
{
	int err;
	xmem::memory mem = memory_of(fd, err);
	if (err)
		return err;
	std::error_code ec;
	mem.add_seals(xmem::seals(seals), ec);
	return to_c(ec);
}

int xmem_get_seals(int fd)
{
	int err;
	xmem::memory mem = memory_of(fd, err);
	if (err)
		return err;
	std::error_code ec;
	const xmem::seals s = mem.current_seals(ec);
	return ec ? to_c(ec) : static_cast<int>(s.bits());
}

int xmem_map(int fd, int access, struct xmem_mapping **out)
{
	if (!out || (access != XMEM_MAP_READ_ONLY && access != XMEM_MAP_READ_WRITE))
		return -EINVAL;
	*out = nullptr;
	int err;
	xmem::memory mem = memory_of(fd, err);
	if (err)
		return err;
	auto *m = new (std::nothrow) xmem_mapping;
	if (!m)
		return -ENOMEM;
	std::error_code ec;
	m->m = xmem::mapping::map(mem, access == XMEM_MAP_READ_WRITE ? xmem::access::read_write
								    : xmem::access::read_only, ec);
	if (ec) {
		delete m;
		return to_c(ec);
	}
	*out = m;
	return 0;
}

void *xmem_mapping_data(const struct xmem_mapping *m)
{
	return m ? m->m.data() : nullptr;
}

size_t xmem_mapping_size(const struct xmem_mapping *m)
{
	return m ? m->m.size() : 0;
}

void xmem_unmap(struct xmem_mapping *m)
{
	delete m;
}

int xmem_connect(const char *path)
{
	if (!path)
		return -EINVAL;
	return guarded([&] {
		std::error_code ec;
		xmem::channel ch = xmem::channel::connect(path, ec);
		if (ec)
			return to_c(ec);
		return xmem::dup_cloexec(ch.fd()).release();
	});
}

int xmem_listen(const char *path, unsigned int mode, struct xmem_listener **out)
{
	if (!path || !out)
		return -EINVAL;
	*out = nullptr;
	return guarded([&] {
		auto *l = new (std::nothrow) xmem_listener;
		if (!l)
			return -ENOMEM;
		std::error_code ec;
		l->l = xmem::listener::bind(path, mode, 128, ec);
		if (ec) {
			delete l; /* the listener unlinks what it made */
			return to_c(ec);
		}
		*out = l;
		return 0;
	});
}

int xmem_listener_fd(const struct xmem_listener *l)
{
	return l ? l->l.fd().get() : -EINVAL;
}

int xmem_accept(struct xmem_listener *l)
{
	if (!l)
		return -EINVAL;
	return guarded([&] {
		std::error_code ec;
		xmem::channel ch = l->l.accept(ec);
		if (ec)
			return to_c(ec);
		return xmem::dup_cloexec(ch.fd()).release();
	});
}

void xmem_listener_close(struct xmem_listener *l)
{
	delete l;
}

int xmem_send_request(int sock, const char *name)
{
	if (!name)
		return -EINVAL;
	int err;
	xmem::channel ch = channel_of(sock, err);
	if (err)
		return err;
	return guarded([&] {
		ch.send_request(name);
		return 0;
	});
}

int xmem_receive_request(int sock, char *name, size_t name_size)
{
	if (!name || name_size == 0)
		return -EINVAL;
	int err;
	xmem::channel ch = channel_of(sock, err);
	if (err)
		return err;
	std::error_code ec;
	const std::string asked = ch.receive_request(ec);
	if (ec)
		return to_c(ec);
	if (asked.size() >= name_size)
		return -ERANGE;
	std::memcpy(name, asked.c_str(), asked.size() + 1);
	return 0;
}

int xmem_send_memory(int sock, int fd, const char *name)
{
	if (!name)
		return -EINVAL;
	int err;
	xmem::channel ch = channel_of(sock, err);
	if (err)
		return err;
	xmem::memory mem = memory_of(fd, err);
	if (err)
		return err;
	return guarded([&] {
		ch.send_memory(mem, name);
		return 0;
	});
}

int xmem_send_error(int sock, int error, const char *name)
{
	if (!name || error <= 0)
		return -EINVAL;
	int err;
	xmem::channel ch = channel_of(sock, err);
	if (err)
		return err;
	return guarded([&] {
		ch.send_error(error, name);
		return 0;
	});
}

int xmem_receive_memory(int sock, const struct xmem_requirements *req,
			struct xmem_received *out)
{
	xmem::requirements r;
	if (req) {
		if (req->flags & ~static_cast<unsigned>(XMEM_ACCEPT_ORDINARY))
			return -EINVAL;
		if (req->size)
			r.size = req->size;
		r.seals = xmem::seals(req->seals);
		r.accept_ordinary = req->flags & XMEM_ACCEPT_ORDINARY;
	}
	int err;
	xmem::channel ch = channel_of(sock, err);
	if (err)
		return err;
	std::error_code ec;
	xmem::received_memory got = ch.receive_memory(r, ec);
	if (ec)
		return to_c(ec);
	if (out) {
		std::memset(out, 0, sizeof(*out));
		out->size = got.size;
		out->seals = got.seals.bits();
		out->backend = static_cast<int>(got.memory.backend());
		out->size_is_stable = got.size_is_stable;
		std::memcpy(out->name, got.name.data(),
			    std::min(got.name.size(), sizeof(out->name) - 1));
	}
	return got.memory.release().release();
}

} // extern "C"
