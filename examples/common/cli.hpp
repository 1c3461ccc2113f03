// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Small helpers shared by the example programs: command-line values, errno
 * names, and the control pattern the vault keeps for xmem-attack.
 */
#pragma once

#include <charconv>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace xmem_examples {

/* A bad command line; what() says what was wrong. */
struct usage_error : std::runtime_error {
	using std::runtime_error::runtime_error;
};

/*
 * The value that follows the flag argv[@i]; advances @i past it.
 * Throws usage_error when the flag is the last argument.
 */
inline std::string option_value(int argc, char **argv, int &i)
{
	if (i + 1 >= argc)
		throw usage_error(std::string(argv[i]) + " needs a value");
	return argv[++i];
}

/*
 * Parses @text as a decimal number in [0, @max]; @what names the value in
 * the usage_error thrown otherwise.
 */
inline unsigned long parse_number(std::string_view text, unsigned long max,
				  std::string_view what)
{
	unsigned long value = 0;
	const char *end = text.data() + text.size();
	auto [ptr, ec] = std::from_chars(text.data(), end, value);

	if (ec != std::errc() || ptr != end || text.empty() || value > max)
		throw usage_error(std::string(what) + ": '" + std::string(text) +
				  "' is not a decimal number from 0 to " + std::to_string(max));
	return value;
}

/*
 * The usage_error for what getopt_long(3) (opterr 0, optstring starting
 * with ':') returned as @c for argv[optind - 1]: ':' a missing value, '?'
 * an unknown option. Names the option as the user typed it.
 */
inline usage_error getopt_error(int c, char **argv, int optind, int optopt)
{
	std::string given = optind > 0 ? argv[optind - 1] : "";
	if (optopt && given.rfind("--", 0) != 0)
		given = std::string("-") + static_cast<char>(optopt);
	const std::size_t eq = given.find('=');
	if (eq != std::string::npos)
		given.resize(eq);
	if (c == ':')
		return usage_error("option '" + given + "' needs a value");
	if (eq != std::string::npos)
		return usage_error("option '" + given + "' takes no value");
	return usage_error("unknown option '" + given + "'");
}

/*
 * Escapes @s for a log line: printable ASCII stays, a backslash and every
 * other byte (control characters, newlines, bytes >= 0x80) becomes \xNN,
 * so a peer's request name cannot forge or split log lines.
 */
inline std::string escaped(std::string_view s)
{
	static constexpr char hex[] = "0123456789abcdef";
	std::string out;
	out.reserve(s.size());
	for (unsigned char c : s) {
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out += static_cast<char>(c);
			continue;
		}
		out += "\\x";
		out += hex[c >> 4];
		out += hex[c & 0xf];
	}
	return out;
}

/* "EACCES (Permission denied)" for the errno @err. */
inline std::string errno_text(int err)
{
	const char *name = strerrorname_np(err);

	return std::string(name ? name : "E?") + " (" + std::strerror(err) + ")";
}

/*
 * The ordinary memory the vault keeps beside the key, as a control for
 * xmem-attack: a memfd_create(2) region of control_size bytes named
 * control_name, filled with control_pattern repeated. /proc/PID/maps shows it
 * as "/memfd:xmem-vault-control (deleted)".
 */
inline constexpr std::string_view control_name = "xmem-vault-control";
inline constexpr std::size_t control_size = 4096;
inline constexpr std::string_view control_pattern = "xmem-vault-control-pattern:";

/* Byte @i (from the start of the region) of the control pattern. */
constexpr char control_byte(std::size_t i) noexcept
{
	return control_pattern[i % control_pattern.size()];
}

} // namespace xmem_examples
