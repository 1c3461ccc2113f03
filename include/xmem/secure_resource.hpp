// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * secure_resource: a std::pmr::memory_resource over a mapping of exclusive
 * memory, so that what containers allocate (std::pmr::vector's elements,
 * a long std::pmr::string's characters) lives in exclusive memory.
 *
 * What it cannot do: keep bytes that a type stores inside its own object
 * out of ordinary memory. std::pmr::string keeps up to 15 chars (libstdc++;
 * 22 in libc++) in the string object itself (the small-string
 * optimisation) and allocates nothing for them, so a short secret in a
 * std::pmr::string lives wherever the string object lives: the stack, the
 * heap. For secrets of any length use secure_string below, which has no
 * inline buffer: every byte it holds is in the resource.
 * tests/unit/test_secure_resource.cpp scans the process's ordinary memory
 * for a 6-char secret held each way.
 *
 *  - First fit over the mapped bytes, blocks rounded up to 16 bytes
 *    (alignof(std::max_align_t)); adjacent free blocks merge.
 *  - Its bookkeeping (which ranges are free, which in use) lives in ordinary
 *    heap memory, never in the secret pages: the pages hold only what
 *    callers put there, and a heap overflow elsewhere cannot reach into
 *    them through a corrupted free list.
 *  - deallocate() zeroes the block with explicit_bzero(3) before it can be
 *    handed out again; the destructor zeroes every block still in use.
 *  - allocate() throws std::bad_alloc when no free block fits (it never
 *    falls back to another resource).
 *
 * Not thread-safe: guard it, or use one per thread (as
 * std::pmr::unsynchronized_pool_resource). It must not outlive the mapping.
 */
#pragma once

#include <xmem/mapping.hpp>

#include <cstddef>
#include <map>
#include <memory_resource>
#include <span>
#include <string_view>

namespace xmem {

class secure_resource final : public std::pmr::memory_resource
{
public:
	/* Bytes every block is rounded up to, and the least alignment given. */
	static constexpr std::size_t granule = alignof(std::max_align_t);

	/*
	 * Serves allocations from @region (a writable mapping's bytes); the
	 * region is used from its first granule-aligned byte. Throws
	 * std::invalid_argument for a read-only mapping.
	 */
	explicit secure_resource(const mapping &m);
	explicit secure_resource(std::span<std::byte> region);
	secure_resource(const secure_resource &) = delete;
	secure_resource &operator=(const secure_resource &) = delete;
	/* Zeroes every block still allocated. */
	~secure_resource() override;

	/* Bytes free in total (not necessarily in one block), and in use (rounded). */
	[[nodiscard]] std::size_t bytes_free() const noexcept;
	[[nodiscard]] std::size_t bytes_in_use() const noexcept { return in_use_; }
	/* The largest allocation that would succeed now with alignment granule. */
	[[nodiscard]] std::size_t largest_free_block() const noexcept;

private:
	void *do_allocate(std::size_t bytes, std::size_t alignment) override;
	void do_deallocate(void *p, std::size_t bytes, std::size_t alignment) override;
	bool do_is_equal(const std::pmr::memory_resource &other) const noexcept override;

	std::byte *base_ = nullptr;
	std::size_t size_ = 0;
	/* offset -> length, both multiples of granule; ordinary heap memory. */
	std::map<std::size_t, std::size_t> free_;
	std::map<std::size_t, std::size_t> used_;
	std::size_t in_use_ = 0;
};

/*
 * A string of secret bytes with no inline buffer: every byte it holds,
 * short or long, is in its memory resource (a secure_resource over
 * exclusive memory), never in the object itself. The object holds only a
 * pointer, a size, a capacity and the resource. Bytes are kept
 * NUL-terminated (c_str()). Memory it lets go of (growing, clear(),
 * destruction) is zeroed with explicit_bzero(3) first. Move-only, so no
 * copy of a secret is made behind the caller's back.
 *
 * Growing allocates size() + 1 rounded up to 16 bytes (the resource's
 * granule) and moves the bytes; std::bad_alloc when the resource is full.
 * Sizes are in bytes (chars).
 */
class secure_string
{
public:
	explicit secure_string(std::pmr::memory_resource &r) noexcept : resource_(&r) {}
	/* A copy of @s in @r. Throws std::bad_alloc. */
	secure_string(std::string_view s, std::pmr::memory_resource &r);
	secure_string(secure_string &&other) noexcept;
	secure_string &operator=(secure_string &&other) noexcept;
	secure_string(const secure_string &) = delete;
	secure_string &operator=(const secure_string &) = delete;
	/* Zeroes and frees the bytes. */
	~secure_string();

	[[nodiscard]] std::size_t size() const noexcept { return size_; }
	[[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
	[[nodiscard]] bool empty() const noexcept { return size_ == 0; }
	/* The bytes, in the resource; nullptr while nothing was ever stored. */
	[[nodiscard]] char *data() noexcept { return data_; }
	[[nodiscard]] const char *data() const noexcept { return data_; }
	/* NUL-terminated; "" (a literal, not in the resource) while empty and unallocated. */
	[[nodiscard]] const char *c_str() const noexcept { return data_ ? data_ : ""; }
	[[nodiscard]] std::string_view view() const noexcept { return {c_str(), size_}; }
	[[nodiscard]] std::pmr::memory_resource *resource() const noexcept { return resource_; }

	/* Room for @n bytes without reallocating. Throws std::bad_alloc. */
	void reserve(std::size_t n);
	/* @n bytes: new ones are '\0'; dropped ones are zeroed. Throws std::bad_alloc. */
	void resize(std::size_t n);
	void assign(std::string_view s);
	void append(std::string_view s);
	void push_back(char c);
	/* Size 0; the bytes held are zeroed, the capacity kept. */
	void clear() noexcept;

private:
	void release() noexcept;

	std::pmr::memory_resource *resource_;
	char *data_ = nullptr;
	std::size_t size_ = 0;
	std::size_t capacity_ = 0;	/* bytes usable, excluding the NUL */
};

} // namespace xmem
