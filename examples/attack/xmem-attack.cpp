// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmem-attack: tries to read a running xmem-vault's key from outside, the
 * way a root attacker would, and checks that the same attacks work on
 * ordinary memory of the same process.
 *
 *   xmem-attack --pid PID
 *
 * Targets, from /proc/PID/maps:
 *  - key: "/secretmem (deleted)" (memfd_secret) or
 *    "/memfd_exclusive:NAME (deleted)" (memfd_exclusive);
 *  - control: "/memfd:xmem-vault-control (deleted)", which holds a known
 *    pattern (examples/common/cli.hpp).
 * Attacks: process_vm_readv(2) and pread(2) of /proc/PID/mem.
 *
 * Exit status: 0 when every attack on the key is refused and every attack on
 * the control reads the pattern; 1 otherwise (each failure is printed);
 * 2 for a bad command line.
 */

#include "../common/cli.hpp"

#include <xmem/unique_fd.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

namespace {

using xmem_examples::errno_text;

/* Bytes each attack tries to read from the start of a region (the key is 64). */
constexpr std::size_t probe_bytes = 64;

struct region {
	std::uintptr_t start;
	std::uintptr_t end;
	std::string path;
};

/* One line of /proc/PID/maps: "start-end perms offset dev inode   path". */
std::optional<region> parse_maps_line(const std::string &line)
{
	std::istringstream in(line);
	std::string range, perms, offset, dev, inode;
	if (!(in >> range >> perms >> offset >> dev >> inode))
		return std::nullopt;

	std::uintmax_t start = 0, end = 0;
	if (std::sscanf(range.c_str(), "%jx-%jx", &start, &end) != 2)
		return std::nullopt;
	region r{static_cast<std::uintptr_t>(start), static_cast<std::uintptr_t>(end), {}};
	std::getline(in >> std::ws, r.path);
	return r;
}

bool is_key_mapping(const std::string &path)
{
	return path == "/secretmem (deleted)" ||
	       path.rfind("/memfd_exclusive:", 0) == 0;
}

bool is_control_mapping(const std::string &path)
{
	return path == "/memfd:" + std::string(xmem_examples::control_name) + " (deleted)";
}

/* What one attack read: the bytes, or the errno that refused it. */
struct attempt {
	int err = 0;
	std::vector<unsigned char> data;
};

attempt attack_process_vm_readv(pid_t pid, const region &r)
{
	attempt a;
	a.data.resize(probe_bytes);
	iovec local{a.data.data(), a.data.size()};
	iovec remote{reinterpret_cast<void *>(r.start), a.data.size()};
	ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
	a.err = n < 0 ? errno : 0;
	a.data.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
	return a;
}

attempt attack_proc_mem(pid_t pid, const region &r)
{
	attempt a;
	std::string path = "/proc/" + std::to_string(pid) + "/mem";
	xmem::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd) {
		a.err = errno;
		return a;
	}
	a.data.resize(probe_bytes);
	ssize_t n = ::pread(fd.get(), a.data.data(), a.data.size(), static_cast<off_t>(r.start));
	a.err = n < 0 ? errno : 0;
	a.data.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
	return a;
}

bool pattern_matches(const std::vector<unsigned char> &data)
{
	if (data.size() != probe_bytes)
		return false;
	for (std::size_t i = 0; i < data.size(); i++)
		if (data[i] != static_cast<unsigned char>(xmem_examples::control_byte(i)))
			return false;
	return true;
}

/* Reports an attack on the key; true when it was refused (read nothing). */
bool report_key(const char *attack, const attempt &a)
{
	if (a.data.empty()) {
		std::printf("key     %-18s refused (%s)\n", attack,
			    a.err ? errno_text(a.err).c_str() : "0 bytes read");
		return true;
	}
	std::printf("key     %-18s SUCCEEDED: read %zu bytes of the key\n", attack, a.data.size());
	return false;
}

/* Reports an attack on the control; true when it read the pattern. */
bool report_control(const char *attack, const attempt &a)
{
	if (a.data.empty()) {
		std::printf("control %-18s FAILED (%s): the attack does not work here\n", attack,
			    a.err ? errno_text(a.err).c_str() : "0 bytes read");
		return false;
	}
	bool match = pattern_matches(a.data);
	std::printf("control %-18s succeeded, pattern %s\n", attack,
		    match ? "matched" : "DID NOT MATCH");
	return match;
}

struct targets {
	std::vector<region> keys;
	std::optional<region> control;
};

/* The key and control mappings of @pid. Throws std::runtime_error. */
targets find_targets(pid_t pid)
{
	std::string path = "/proc/" + std::to_string(pid) + "/maps";
	std::ifstream maps(path);
	if (!maps)
		throw std::runtime_error("cannot read " + path);

	targets t;
	for (std::string line; std::getline(maps, line);) {
		std::optional<region> r = parse_maps_line(line);
		if (!r)
			continue;
		if (is_key_mapping(r->path))
			t.keys.push_back(*r);
		else if (is_control_mapping(r->path) && !t.control)
			t.control = r;
	}
	return t;
}

void print_region(const char *what, const region &r)
{
	std::printf("%-7s mapping %jx-%jx %s\n", what, static_cast<std::uintmax_t>(r.start),
		    static_cast<std::uintmax_t>(r.end), r.path.c_str());
}

/* Runs every attack; returns the number of results that were wrong. */
int attack(pid_t pid, const targets &t)
{
	int wrong = 0;

	for (const region &k : t.keys) {
		print_region("key", k);
		wrong += !report_key("process_vm_readv", attack_process_vm_readv(pid, k));
		wrong += !report_key("/proc/PID/mem", attack_proc_mem(pid, k));
	}
	print_region("control", *t.control);
	wrong += !report_control("process_vm_readv", attack_process_vm_readv(pid, *t.control));
	wrong += !report_control("/proc/PID/mem", attack_proc_mem(pid, *t.control));
	return wrong;
}

pid_t parse_pid(int argc, char **argv)
{
	if (argc != 3 || std::string(argv[1]) != "--pid")
		throw xmem_examples::usage_error("usage: xmem-attack --pid PID");
	return static_cast<pid_t>(xmem_examples::parse_number(argv[2], 0x3fffffff, "pid"));
}

} // namespace

int main(int argc, char **argv)
{
	pid_t pid = 0;
	try {
		pid = parse_pid(argc, argv);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "xmem-attack: %s\n", e.what());
		return 2;
	}
	try {
		targets t = find_targets(pid);
		if (t.keys.empty() || !t.control) {
			std::printf("FAIL: %s not found in /proc/%d/maps\n",
				    t.keys.empty() ? "key mapping (/secretmem, /memfd_exclusive:)"
						   : "control mapping", pid);
			return 1;
		}
		int wrong = attack(pid, t);
		if (wrong) {
			std::printf("FAIL: %d attack result(s) wrong\n", wrong);
			return 1;
		}
		std::printf("PASS: attacks on the key refused, controls succeeded\n");
		return 0;
	} catch (const std::exception &e) {
		std::printf("FAIL: %s\n", e.what());
	}
	return 1;
}
