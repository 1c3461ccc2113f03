// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * memory: one region of exclusive memory, held as an fd.
 *
 * Backends, in the order create() tries them:
 *  - exclusive: memfd_exclusive(2), the xmem kernel patch; used only when
 *    /sys/kernel/mm/memfd_exclusive exists (the syscall number is never
 *    issued on a kernel without it). Named, resizable, sealable.
 *  - secret: memfd_secret(2), Linux 5.14+ (mm/secretmem.c). Unnamed; its
 *    size can be set once and never changed (secretmem_setattr()); no seals.
 *  - ordinary: memfd_create(2) plus mlock(2) and MADV_DONTDUMP on every
 *    mapping. Readable by the kernel and root. Used only when the caller
 *    asks for it in create_options; never silently.
 */
#pragma once

#include <xmem/unique_fd.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace xmem {

enum class backend { exclusive, secret, ordinary };

/* "memfd_exclusive", "memfd_secret" or "memfd_create". */
std::string_view to_string(backend b) noexcept;

/* What the running kernel offers; probed once per process, then cached. */
struct kernel_support {
	bool exclusive;	/* MEMFD_EXCLUSIVE_SYSFS_DIR exists */
	bool secret;	/* memfd_secret(2) succeeded (not ENOSYS: built in and enabled) */
};
kernel_support probe_kernel() noexcept;

/*
 * A set of memfd seals: the F_SEAL_* bits of fcntl(2) (<linux/fcntl.h>).
 * F_SEAL_SHRINK keeps a receiver safe from SIGBUS; F_SEAL_FUTURE_WRITE makes
 * later writable mappings fail, so receivers can only map read-only.
 */
class seals
{
public:
	static constexpr unsigned seal = 0x0001;	 /* F_SEAL_SEAL */
	static constexpr unsigned shrink = 0x0002;	 /* F_SEAL_SHRINK */
	static constexpr unsigned grow = 0x0004;	 /* F_SEAL_GROW */
	static constexpr unsigned write = 0x0008;	 /* F_SEAL_WRITE */
	static constexpr unsigned future_write = 0x0010; /* F_SEAL_FUTURE_WRITE */
	static constexpr unsigned all = 0x001f;

	constexpr seals() noexcept = default;
	constexpr explicit seals(unsigned bits) noexcept : bits_(bits) {}
	[[nodiscard]] constexpr unsigned bits() const noexcept { return bits_; }
	[[nodiscard]] constexpr bool contains(seals other) const noexcept
	{
		return (bits_ & other.bits_) == other.bits_;
	}
	[[nodiscard]] constexpr bool empty() const noexcept { return bits_ == 0; }
	constexpr seals operator|(seals o) const noexcept { return seals(bits_ | o.bits_); }
	constexpr bool operator==(const seals &) const noexcept = default;

private:
	unsigned bits_ = 0;
};

/* "seal|shrink|grow|..." or "none". */
std::string to_string(seals s);

struct create_options {
	/* Use exactly this backend, or fail. Unset: exclusive, then secret. */
	std::optional<xmem::backend> require;
	/* Fall back to ordinary memory when no exclusive backend exists. */
	bool allow_ordinary_fallback = false;
	/*
	 * Allow seals to be added later (MFD_EXCLUSIVE_ALLOW_SEALING,
	 * MFD_ALLOW_SEALING). Without it the fd starts with F_SEAL_SEAL.
	 */
	bool allow_sealing = true;
};

class memory
{
public:
	/*
	 * Creates @size bytes (> 0; rounded up by the kernel to pages when
	 * mapped) of exclusive memory named @name (name rules of memfd_create(2):
	 * at most MFD_EXCLUSIVE_NAME_MAX_LEN = 239 bytes, no NUL; shown as
	 * /memfd_exclusive:NAME in /proc/PID/maps; memfd_secret ignores it).
	 * The fd is O_CLOEXEC.
	 * Errors: errc::invalid_size, errc::invalid_name, errc::no_backend (ENOSYS
	 * from every allowed backend), or errno: EMFILE, ENOMEM, EPERM...
	 * The throwing overload raises std::system_error with that code and says
	 * which backends were tried. Nothing is left open on failure.
	 */
	static memory create(std::string_view name, std::size_t size,
			     const create_options &opts = {});
	static memory create(std::string_view name, std::size_t size,
			     const create_options &opts, std::error_code &ec) noexcept;

	/*
	 * Takes ownership of @fd and identifies its backend from fstatfs(2)
	 * (MEMFD_EXCLUSIVE_MAGIC, SECRETMEM_MAGIC, or a memfd on tmpfs/hugetlbfs:
	 * unlinked, st_nlink 0, on the kernel's internal mount that a memfd of
	 * our own shows, and linked as "/memfd:..."; hugetlbfs of the default
	 * huge page size only).
	 * errc::wrong_file_type for anything else (fd closed).
	 * errc::not_mappable for such memory held by an fd that mmap(2) refuses
	 * whatever the protection: opened O_PATH (fstat and fstatfs work on it,
	 * mmap is EBADF) or O_WRONLY (EACCES); fd closed.
	 */
	static memory adopt(unique_fd fd, std::error_code &ec) noexcept;
	/* As above, and sets @size to its size in bytes from the same fstat(2). */
	static memory adopt(unique_fd fd, std::size_t &size, std::error_code &ec) noexcept;

	memory() noexcept = default;

	[[nodiscard]] xmem::backend backend() const noexcept { return backend_; }
	[[nodiscard]] borrowed_fd fd() const noexcept { return fd_; }
	[[nodiscard]] bool valid() const noexcept { return fd_.valid(); }
	/* The name given at creation ("" when adopted). */
	[[nodiscard]] const std::string &name() const noexcept { return name_; }
	/* Gives up the fd. */
	[[nodiscard]] unique_fd release() noexcept { return std::move(fd_); }

	/*
	 * Current size in bytes (fstat st_size). memfd_secret's size cannot change
	 * once set (secretmem_setattr(), mm/secretmem.c): that one is remembered
	 * from creation or adoption and returned without a system call. Throws
	 * std::system_error.
	 */
	[[nodiscard]] std::size_t size() const;
	std::size_t size(std::error_code &ec) const noexcept;

	/*
	 * Sets the size in bytes (ftruncate(2)). memfd_secret accepts this once
	 * only (EINVAL after); sealed memory fails with EPERM (F_SEAL_GROW,
	 * F_SEAL_SHRINK). Throws std::system_error.
	 */
	void resize(std::size_t size);
	void resize(std::size_t size, std::error_code &ec) noexcept;

	/*
	 * Adds seals (F_ADD_SEALS). EPERM when F_SEAL_SEAL is set, EBUSY for
	 * F_SEAL_WRITE while writable shared mappings exist, EINVAL on
	 * memfd_secret (it has no seals). Throws std::system_error.
	 */
	void add_seals(xmem::seals s);
	void add_seals(xmem::seals s, std::error_code &ec) noexcept;

	/*
	 * Seals in place (F_GET_SEALS). memfd_secret has none: returns an empty
	 * set with ec = EINVAL, which callers must not read as "unsealed".
	 */
	[[nodiscard]] xmem::seals current_seals(std::error_code &ec) const noexcept;

private:
	memory(unique_fd fd, xmem::backend b, std::string name, std::size_t fixed_size) noexcept;

	unique_fd fd_;
	xmem::backend backend_ = xmem::backend::ordinary;
	/* memfd_secret with its size set (> 0): that size, for good. 0: ask fstat. */
	std::size_t fixed_size_ = 0;
	std::string name_;
};

} // namespace xmem
