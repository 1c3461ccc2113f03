// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The attack suite: one function per attack, run against each backend.
 *
 * Targets:
 *  - memfd_exclusive and memfd_secret: memory exactly as libxmem delivers it
 *    (xmem::memory::create with create_options.require, xmem::mapping::map:
 *    MAP_SHARED, MADV_DONTFORK, fd O_CLOEXEC).
 *  - the control, memfd_create(2): ordinary memory with none of libxmem's
 *    protections (plain MAP_SHARED mmap: no MADV_DONTFORK, no MADV_DONTDUMP,
 *    no mlock; and for the exec attack, no FD_CLOEXEC). A control that
 *    succeeds proves the attack works in this environment.
 *
 * The memory is filled with 64 random bytes (getrandom(2), written straight
 * into the mapping) repeated; an attack succeeds when it sees those 64 bytes,
 * or when it changes the memory.
 */
#pragma once

#include <xmem/memory.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace xattack {

enum class outcome {
	blocked,	/* the attack did not get the pattern (or did not write) */
	succeeded,	/* it did */
	na,		/* cannot be tried here; detail says why (never silent) */
};

struct result {
	outcome out;
	std::string detail;
	/*
	 * Set with outcome::succeeded when the access is not a breach by the
	 * rules this suite tests (e.g. a fork child of the owner reading memory
	 * the owner chose to let it inherit); the table shows it as such and the
	 * test does not fail. Used only where attacks.cpp says why.
	 */
	bool by_design = false;
	/*
	 * Set with outcome::succeeded on memfd_secret of a stock kernel for a
	 * hole our kernel patches close (kernel/patches say which): shown as a
	 * known gap of the stock backend, not a test failure. It is never set
	 * for memfd_exclusive, nor on a kernel with memfd_exclusive, but for
	 * one hole the xmem kernel leaves to memfd_secret: mmap of /dev/mem
	 * without STRICT_DEVMEM (its pages are not in unmapped pageblocks).
	 */
	bool known_gap = false;
};

inline result blocked(std::string d) { return {outcome::blocked, std::move(d)}; }
inline result succeeded(std::string d) { return {outcome::succeeded, std::move(d)}; }
inline result not_applicable(std::string d) { return {outcome::na, std::move(d)}; }

struct target {
	xmem::backend backend;
	[[nodiscard]] bool control() const noexcept { return backend == xmem::backend::ordinary; }
};

struct attack {
	const char *name;	/* command line and meson test name */
	const char *title;	/* row of the table */
	result (*run)(const target &);
};

/* Every attack, in table order. */
std::span<const attack> attacks();

/* The program's own "--exec-probe" mode (the image a child execs). */
int exec_probe(int argc, char **argv);

/* "EFAULT" */
std::string errname(int err);

} // namespace xattack
