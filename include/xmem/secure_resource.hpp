// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * secure_resource: a std::pmr::memory_resource over a mapping of exclusive
 * memory, so secrets can live in std::pmr::string, std::pmr::vector and
 * friends without a byte of them reaching ordinary memory.
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

} // namespace xmem
