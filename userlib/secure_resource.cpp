// SPDX-License-Identifier: LGPL-2.1-or-later
#include <xmem/secure_resource.hpp>

#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string.h>
#include <utility>

namespace xmem {

namespace {

constexpr std::size_t round_up(std::size_t n, std::size_t to) noexcept
{
	return (n + to - 1) / to * to;
}

} // namespace

secure_resource::secure_resource(const mapping &m) : secure_resource(m.bytes())
{
	if (m.access() != access::read_write)
		throw std::invalid_argument("secure_resource: the mapping must be read-write");
}

secure_resource::secure_resource(std::span<std::byte> region)
{
	const auto addr = reinterpret_cast<std::uintptr_t>(region.data());
	const std::size_t skip = round_up(addr, granule) - addr;
	if (region.size() <= skip)
		return; /* nothing usable: every allocation throws bad_alloc */
	base_ = region.data() + skip;
	size_ = (region.size() - skip) / granule * granule;
	if (size_)
		free_.emplace(0, size_);
}

secure_resource::~secure_resource()
{
	for (const auto &[off, len] : used_)
		::explicit_bzero(base_ + off, len);
}

std::size_t secure_resource::bytes_free() const noexcept
{
	return size_ - in_use_;
}

std::size_t secure_resource::largest_free_block() const noexcept
{
	std::size_t best = 0;
	for (const auto &[off, len] : free_)
		best = std::max(best, len);
	return best;
}

void *secure_resource::do_allocate(std::size_t bytes, std::size_t alignment)
{
	/* std::pmr asks for a power of two; smaller than a granule is a granule. */
	if (alignment == 0 || (alignment & (alignment - 1)))
		throw std::bad_alloc();
	alignment = std::max(alignment, granule);
	if (bytes > size_)
		throw std::bad_alloc();
	const std::size_t len = round_up(std::max<std::size_t>(bytes, 1), granule);
	const auto base = reinterpret_cast<std::uintptr_t>(base_);

	for (auto it = free_.begin(); it != free_.end(); ++it) {
		const auto [off, flen] = *it;
		/* Aligned start within this block; the gap before it stays free. */
		const std::size_t start = round_up(base + off, alignment) - base;
		const std::size_t gap = start - off;
		if (gap > flen || flen - gap < len)
			continue;

		/* Both map insertions can throw: make them before changing anything. */
		auto used = used_.emplace(start, len).first;
		try {
			const std::size_t tail = flen - gap - len;
			if (tail)
				free_.emplace(start + len, tail);
		} catch (...) {
			used_.erase(used);
			throw;
		}
		if (gap)
			it->second = gap;
		else
			free_.erase(it);
		in_use_ += len;
		return base_ + start;
	}
	throw std::bad_alloc();
}

void secure_resource::do_deallocate(void *p, std::size_t bytes, std::size_t)
{
	const std::size_t off = static_cast<std::size_t>(static_cast<std::byte *>(p) - base_);
	auto used = used_.find(off);
	/* A pointer not from here, or a size that differs: our caller's bug. */
	if (used == used_.end() || round_up(std::max<std::size_t>(bytes, 1), granule) != used->second)
		std::abort();
	const std::size_t len = used->second;
	::explicit_bzero(base_ + off, len);
	used_.erase(used);
	in_use_ -= len;

	/* Back into the free map, merged with its neighbours. */
	auto next = free_.lower_bound(off);
	std::size_t start = off, end = off + len;
	if (next != free_.end() && next->first == end) {
		end += next->second;
		next = free_.erase(next);
	}
	if (next != free_.begin()) {
		auto prev = std::prev(next);
		if (prev->first + prev->second == start) {
			prev->second = end - start + (start - prev->first);
			return;
		}
	}
	/* Cannot throw in practice: a node was just freed above or in used_. */
	free_.emplace_hint(next, start, end - start);
}

bool secure_resource::do_is_equal(const std::pmr::memory_resource &other) const noexcept
{
	return this == &other;
}

secure_string::secure_string(std::string_view s, std::pmr::memory_resource &r) : resource_(&r)
{
	assign(s);
}

secure_string::secure_string(secure_string &&other) noexcept
	: resource_(other.resource_), data_(std::exchange(other.data_, nullptr)),
	  size_(std::exchange(other.size_, 0)), capacity_(std::exchange(other.capacity_, 0))
{
}

secure_string &secure_string::operator=(secure_string &&other) noexcept
{
	if (this != &other) {
		release();
		resource_ = other.resource_;
		data_ = std::exchange(other.data_, nullptr);
		size_ = std::exchange(other.size_, 0);
		capacity_ = std::exchange(other.capacity_, 0);
	}
	return *this;
}

secure_string::~secure_string()
{
	release();
}

void secure_string::release() noexcept
{
	if (!data_)
		return;
	::explicit_bzero(data_, capacity_ + 1);
	resource_->deallocate(data_, capacity_ + 1, 1);
	data_ = nullptr;
	size_ = capacity_ = 0;
}

void secure_string::reserve(std::size_t n)
{
	if (data_ && n <= capacity_)
		return;
	if (n >= SIZE_MAX - secure_resource::granule)
		throw std::bad_alloc();
	const std::size_t bytes = round_up(n + 1, secure_resource::granule);
	char *p = static_cast<char *>(resource_->allocate(bytes, 1));
	if (data_)
		std::memcpy(p, data_, size_);
	std::memset(p + size_, 0, bytes - size_);
	const std::size_t size = size_;
	release();
	data_ = p;
	size_ = size;
	capacity_ = bytes - 1;
}

void secure_string::resize(std::size_t n)
{
	reserve(n);
	if (n < size_)
		::explicit_bzero(data_ + n, size_ - n);
	else
		std::memset(data_ + size_, 0, n - size_);
	size_ = n;
	data_[size_] = '\0';
}

void secure_string::assign(std::string_view s)
{
	clear();
	append(s);
}

void secure_string::append(std::string_view s)
{
	if (s.size() > SIZE_MAX / 2 - size_)
		throw std::bad_alloc();
	if (!data_ || size_ + s.size() > capacity_)
		reserve(std::max(size_ + s.size(), 2 * capacity_));
	std::memcpy(data_ + size_, s.data(), s.size());
	size_ += s.size();
	data_[size_] = '\0';
}

void secure_string::push_back(char c)
{
	append(std::string_view(&c, 1));
}

void secure_string::clear() noexcept
{
	if (data_)
		::explicit_bzero(data_, size_);
	size_ = 0;
}

} // namespace xmem
