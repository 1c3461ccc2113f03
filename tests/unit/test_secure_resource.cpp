// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * secure_resource: std::pmr containers in exclusive memory; zeroed on
 * deallocate; first fit with merging; std::bad_alloc when full; its
 * bookkeeping outside the secret pages.
 */
#define BOOST_TEST_MODULE secure_resource
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

#include <xmem/secure_resource.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sys/random.h>
#include <unistd.h>
#include <memory_resource>
#include <string>
#include <vector>

using namespace xmem;

namespace {

struct region {
	memory mem = memory::create("pmr", 4096, test::suite_options());
	mapping map = mapping::map(mem, access::read_write);

	bool all_zero() const
	{
		return std::all_of(map.data(), map.data() + map.size(),
				   [](std::byte b) { return b == std::byte{0}; });
	}
	bool holds(std::string_view s) const
	{
		return std::search(map.data(), map.data() + map.size(),
				   reinterpret_cast<const std::byte *>(s.data()),
				   reinterpret_cast<const std::byte *>(s.data() + s.size())) !=
		       map.data() + map.size();
	}
};

} // namespace

BOOST_AUTO_TEST_CASE(pmr_string_lives_in_the_mapping_and_is_zeroed_when_freed)
{
	region r;
	const std::size_t before = test::open_fd_count();
	{
		secure_resource res(r.map);
		const std::string_view secret = "correct horse battery staple, long enough for the heap";
		{
			std::pmr::string s(secret, &res);
			auto *p = reinterpret_cast<const std::byte *>(s.data());
			BOOST_TEST((p >= r.map.data() && p < r.map.data() + r.map.size()));
			BOOST_TEST(r.holds(secret));
			BOOST_TEST(res.bytes_in_use() > 0u);
		}
		BOOST_TEST(!r.holds(secret));
		BOOST_TEST(r.all_zero());
		BOOST_TEST(res.bytes_in_use() == 0u);
	}
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(pmr_vector_grows_frees_and_merges)
{
	region r;
	secure_resource res(r.map);
	const std::size_t total = res.bytes_free();
	{
		std::pmr::vector<std::uint64_t> v(&res);
		for (std::uint64_t i = 0; i < 200; i++)
			v.push_back(i * 0x0101010101010101ull); /* each growth frees the old block */
		BOOST_TEST(v[199] == 199 * 0x0101010101010101ull);
		std::pmr::vector<std::pmr::string> names(&res);
		names.emplace_back("first name that does not fit in SSO buffer");
		names.emplace_back("second name that does not fit in SSO buffer");
		BOOST_TEST(names[1].get_allocator().resource() == &res);
	}
	/* Everything freed merged back into one block. */
	BOOST_TEST(res.bytes_free() == total);
	BOOST_TEST(res.largest_free_block() == total);
	BOOST_TEST(r.all_zero());
}

BOOST_AUTO_TEST_CASE(full_means_bad_alloc_and_nothing_else)
{
	region r;
	secure_resource res(r.map);
	std::pmr::polymorphic_allocator<std::byte> alloc(&res);
	BOOST_CHECK_THROW((void)alloc.allocate(4096 + 1), std::bad_alloc);
	std::byte *all = alloc.allocate(4096);
	BOOST_CHECK_THROW((void)alloc.allocate(1), std::bad_alloc);
	alloc.deallocate(all, 4096);

	/* Fragmented: 16 free bytes in many places, no 32 together. */
	std::vector<std::byte *> blocks;
	for (int i = 0; i < 256; i++)
		blocks.push_back(alloc.allocate(16));
	BOOST_CHECK_THROW((void)alloc.allocate(1), std::bad_alloc);
	for (int i = 0; i < 256; i += 2)
		alloc.deallocate(blocks[i], 16);
	BOOST_TEST(res.bytes_free() == 2048u);
	BOOST_TEST(res.largest_free_block() == 16u);
	BOOST_CHECK_THROW((void)alloc.allocate(32), std::bad_alloc);
	std::pmr::string too_long(&res);
	BOOST_CHECK_THROW(too_long.assign(100, 'x'), std::bad_alloc);
	for (int i = 1; i < 256; i += 2)
		alloc.deallocate(blocks[i], 16);
	BOOST_TEST(res.largest_free_block() == 4096u);
}

BOOST_AUTO_TEST_CASE(alignment_first_fit_and_granules)
{
	region r;
	secure_resource res(r.map);
	void *a = res.allocate(1, 1);
	void *b = res.allocate(24, 8);
	void *c = res.allocate(64, 256);
	BOOST_TEST(reinterpret_cast<std::uintptr_t>(a) % secure_resource::granule == 0u);
	BOOST_TEST(reinterpret_cast<std::uintptr_t>(c) % 256 == 0u);
	BOOST_TEST(static_cast<std::byte *>(b) - static_cast<std::byte *>(a) == 16);
	res.deallocate(a, 1, 1);
	/* First fit: the hole at the start is reused. */
	void *d = res.allocate(16, 16);
	BOOST_TEST(d == a);
	res.deallocate(b, 24, 8);
	res.deallocate(c, 64, 256);
	res.deallocate(d, 16, 16);
	BOOST_TEST(res.bytes_in_use() == 0u);
	BOOST_TEST(res.largest_free_block() == 4096u);
	BOOST_TEST(res.is_equal(res));
	secure_resource other(r.map);
	BOOST_TEST(!res.is_equal(other));
}

BOOST_AUTO_TEST_CASE(metadata_is_outside_the_secret_pages_and_destructor_zeroes)
{
	region r;
	{
		secure_resource res(r.map);
		void *p = res.allocate(4096, 16);
		std::memset(p, 0x5a, 4096);
		/* The whole mapping is the caller's: no header, no free list inside it. */
		BOOST_TEST(p == static_cast<void *>(r.map.data()));
		/* left allocated: the destructor zeroes it */
	}
	BOOST_TEST(r.all_zero());

	mapping ro = mapping::map(r.mem, access::read_only);
	BOOST_CHECK_THROW(secure_resource{ro}, std::invalid_argument);
}

/*
 * Issue 10: a short secret in ordinary memory. Each test makes a 6-char
 * secret in place (getrandom(2) into the string's own bytes, mapped to
 * letters there), then scans every readable mapping of the process that
 * /proc/self/mem can read for it; exclusive memory cannot be read that way
 * (EIO), so only ordinary memory is searched. The needle is compared where
 * it lies, never copied.
 */

namespace {

/* The /proc/self/maps lines of ordinary mappings holding @needle[0..len). */
std::vector<std::string> ordinary_memory_holding(const char *needle, std::size_t len)
{
	std::ifstream maps("/proc/self/maps");
	std::vector<std::string> lines;
	for (std::string line; std::getline(maps, line);)
		lines.push_back(line);
	unique_fd mem(::open("/proc/self/mem", O_RDONLY | O_CLOEXEC));
	BOOST_REQUIRE(mem);
	std::vector<char> buf((1 << 20) + len);
	std::vector<std::string> found;
	std::size_t readable = 0;
	for (const std::string &line : lines) {
		unsigned long start, end;
		char perms[5] = {};
		if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3 ||
		    perms[0] != 'r' || line.find("[vvar") != std::string::npos ||
		    line.find("[vsyscall]") != std::string::npos)
			continue;
		bool hit = false;
		for (unsigned long at = start; at < end && !hit; at += 1 << 20) {
			const std::size_t want = std::min<unsigned long>(end - at, (1 << 20) + len - 1);
			const ssize_t n = ::pread(mem.get(), buf.data(), want, static_cast<off_t>(at));
			if (n <= 0)
				break; /* exclusive memory (EIO), or gone */
			readable++;
			hit = std::search(buf.data(), buf.data() + n, needle, needle + len) !=
			      buf.data() + n;
		}
		if (hit)
			found.push_back(line);
	}
	BOOST_REQUIRE_GT(readable, 0u);
	return found;
}

/* Fills @p[0..len) with random lower-case letters, in place. */
void random_letters(char *p, std::size_t len)
{
	BOOST_REQUIRE(::getrandom(p, len, 0) == static_cast<ssize_t>(len));
	for (std::size_t i = 0; i < len; i++)
		p[i] = static_cast<char>('a' + static_cast<unsigned char>(p[i]) % 26);
}

} // namespace

BOOST_AUTO_TEST_CASE(a_short_secret_in_a_pmr_string_is_in_ordinary_memory)
{
	/* The control: the scan finds what the small-string optimisation keeps inline. */
	region r;
	secure_resource res(r.map);
	std::pmr::string s(&res);
	s.resize(6);
	random_letters(s.data(), 6);
	BOOST_TEST(res.bytes_in_use() == 0u, "std::pmr::string allocated for 6 chars");
	const auto where = ordinary_memory_holding(s.data(), 6);
	BOOST_TEST(!where.empty(), "the 6 chars inside the string object were not found");
	for (const auto &w : where)
		BOOST_TEST_MESSAGE("found in " << w);
}

BOOST_AUTO_TEST_CASE(a_short_secret_in_a_secure_string_is_not_in_ordinary_memory)
{
	region r;
	const std::size_t before = test::open_fd_count();
	{
		secure_resource res(r.map);
		secure_string s(res);
		s.resize(6);
		random_letters(s.data(), 6);
		BOOST_TEST(res.bytes_in_use() == secure_resource::granule);
		BOOST_TEST(r.holds(s.view()));
		const auto where = ordinary_memory_holding(s.data(), 6);
		BOOST_TEST(where.empty(), "found in " << (where.empty() ? "" : where[0]));

		/* Growing, moving and clearing keep it in the resource and zero what is let go. */
		s.append("-and-then-a-longer-tail-beyond-one-granule");
		BOOST_TEST(s.size() == 48u);
		BOOST_TEST(ordinary_memory_holding(s.data(), 6).empty());
		secure_string moved = std::move(s);
		BOOST_TEST(s.empty());
		BOOST_TEST(moved.size() == 48u);
		BOOST_TEST(std::string_view(moved.c_str()).size() == 48u);
		moved.clear();
		BOOST_TEST(moved.view().empty());
	}
	BOOST_TEST(r.all_zero());
	BOOST_TEST(test::open_fd_count() == before);
}

BOOST_AUTO_TEST_CASE(secure_string_full_resource_is_bad_alloc)
{
	region r;
	secure_resource res(r.map);
	secure_string s(res);
	BOOST_CHECK_THROW(s.resize(8192), std::bad_alloc);
	BOOST_TEST(s.empty());
	s.assign("fits");
	BOOST_TEST(s.view() == "fits");
}
