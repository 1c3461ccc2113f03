// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Helpers shared by the unit tests: counting open fds (the leak check of
 * ../shared/cases/fd-passing.md), a raw sender that plays a hostile peer,
 * and the backend the suite runs on.
 */
#pragma once

#include <xmem/xmem.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace xmem::test {

/* Entries of /proc/self/fd, not counting the directory fd used to read it. */
std::size_t open_fd_count();

/*
 * The backend the suite must run on: XMEM_TEST_BACKEND (exclusive, secret)
 * or, unset, the best the kernel offers. Fails the calling test (throws)
 * when that backend is absent: the project's kernels all have one.
 */
xmem::backend suite_backend();

/* create_options requiring suite_backend(). */
xmem::create_options suite_options();

/* sendmsg(2) of @payload with @fds in one SCM_RIGHTS message; returns sendmsg's result. */
long raw_send(int sock, std::span<const std::byte> payload, const std::vector<int> &fds);

/* A header encoded for raw_send; aborts the test on encode errors. */
std::vector<std::byte> encoded(const wire::header &h);

/* A fresh private directory under $TMPDIR (or /tmp). */
std::string temp_dir();

/* A socket of @type (SOCK_SEQPACKET, SOCK_STREAM) connected to @path; invalid on failure (errno). */
unique_fd unix_connect(const std::string &path, int type);

/* Polls @pred every 2 ms for up to @limit; whether it came true. */
bool wait_until(const std::function<bool()> &pred,
		std::chrono::milliseconds limit = std::chrono::milliseconds(5000));

} // namespace xmem::test
