// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The "secret" the README's owner loads and its receiver checks: byte i of
 * the region is pattern[i % pattern size]. Not part of the README's code.
 */
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace readme {

inline constexpr std::string_view pattern = "readme-secret:";

/* Fills @bytes with the pattern (the README's load_secret_into). */
inline void load_secret_into(std::span<std::byte> bytes) noexcept
{
	for (std::size_t i = 0; i < bytes.size(); i++)
		bytes[i] = static_cast<std::byte>(pattern[i % pattern.size()]);
}

/* True when @bytes hold the pattern from the first byte to the last. */
inline bool holds_secret(std::span<const std::byte> bytes) noexcept
{
	for (std::size_t i = 0; i < bytes.size(); i++) {
		if (bytes[i] != static_cast<std::byte>(pattern[i % pattern.size()]))
			return false;
	}
	return !bytes.empty();
}

} // namespace readme
