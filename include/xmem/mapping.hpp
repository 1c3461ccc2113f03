// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * mapping: an RAII mmap(2) of a memory region, MAP_SHARED.
 */
#pragma once

#include <xmem/memory.hpp>

#include <cstddef>
#include <span>
#include <system_error>

namespace xmem {

enum class access { read_only, read_write };

class mapping
{
public:
	/*
	 * Maps the whole of @mem (its current size, > 0) with MAP_SHARED, and
	 * marks it MADV_DONTFORK so a child of fork(2) gets no copy. Memory of
	 * the ordinary backend is also mlock(2)ed and MADV_DONTDUMP.
	 * Errors: errc::invalid_size (size 0); errc::memlock_limit (EAGAIN from
	 * mmap: RLIMIT_MEMLOCK too small, see mm/secretmem.c, mlock_future_ok());
	 * EPERM (writable mapping of F_SEAL_FUTURE_WRITE/F_SEAL_WRITE memory);
	 * EACCES; ENOMEM. The throwing overload's message gives the limit, the
	 * bytes needed and how to raise it.
	 */
	static mapping map(const memory &mem, xmem::access acc);
	static mapping map(const memory &mem, xmem::access acc, std::error_code &ec) noexcept;

	/*
	 * Maps @length bytes (> 0) of the fd @fd from offset 0. The caller must
	 * know the file is at least @length bytes (a verified receive does).
	 */
	static mapping map(borrowed_fd fd, std::size_t length, xmem::backend b,
			   xmem::access acc, std::error_code &ec) noexcept;

	mapping() noexcept = default;
	mapping(const mapping &) = delete;
	mapping &operator=(const mapping &) = delete;
	mapping(mapping &&other) noexcept;
	mapping &operator=(mapping &&other) noexcept;
	~mapping();

	/* The mapped bytes. Writing through a read-only mapping faults (SIGSEGV). */
	[[nodiscard]] std::span<std::byte> bytes() const noexcept { return {data_, size_}; }
	[[nodiscard]] std::byte *data() const noexcept { return data_; }
	/* Length in bytes as asked (the kernel maps whole pages). */
	[[nodiscard]] std::size_t size() const noexcept { return size_; }
	[[nodiscard]] xmem::access access() const noexcept { return access_; }
	[[nodiscard]] bool valid() const noexcept { return data_ != nullptr; }

	/* munmap(2) now; later calls do nothing. */
	void unmap() noexcept;

private:
	std::byte *data_ = nullptr;
	std::size_t size_ = 0;
	xmem::access access_ = xmem::access::read_only;
};

} // namespace xmem
