// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The parser's sandbox: what a process gives up before it reads a byte an
 * ssh-agent client sent. After enter_sandbox() it has no filesystem (its
 * working directory is an empty directory that no longer exists, and
 * open(2), openat(2), openat2(2), creat(2), execve(2) and every other
 * path-taking call but stat fail with EPERM), no network (socket(2),
 * socketpair(2), connect(2), bind(2) fail), no new processes, no ptrace,
 * no way back (PR_SET_NO_NEW_PRIVS), and may keep at most a few fds.
 * What it keeps: read/write/sendmsg/recvmsg on the fds it already has, and
 * creating, sizing, sealing and mapping memory (memfd_exclusive,
 * memfd_secret).
 *
 * The filter is an allow-list (libseccomp, seccomp(2) SECCOMP_MODE_FILTER):
 * any system call not on it fails with EPERM, so a call the list forgot
 * fails in the parser and never widens it.
 */
#pragma once

#include <string>

namespace xmem::agent {

/*
 * Enters the sandbox in the calling process, which must be single-threaded.
 * Keeps fds 0, 1, 2 and @keep_fd (>= 3) and closes every other. Throws
 * std::system_error naming the step that failed (mkdtemp, chdir,
 * setrlimit, prctl, seccomp_load); a process whose sandbox failed must not
 * go on to parse anything.
 */
void enter_sandbox(int keep_fd);

/*
 * For tests (xmem-agent --sandbox-selftest PATH): enters the sandbox and
 * tries, one by one, open(PATH), openat(AT_FDCWD, PATH), fopen(PATH),
 * socket(AF_INET), socket(AF_UNIX), execve("/bin/true"), and creating,
 * sizing and mapping one page of exclusive memory (which must work).
 * Prints one line per try ("open PATH: denied (Operation not permitted)" or
 * "open PATH: ALLOWED") and returns 0 when every forbidden try was denied
 * and the memory worked, 1 otherwise.
 */
int sandbox_selftest(const std::string &path);

} // namespace xmem::agent
