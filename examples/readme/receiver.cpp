// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The receiver half of the README's API example, as a program. Usage:
 * readme-receiver SOCKET. Asks the owner on SOCKET for "signing-key",
 * maps what it receives read-only and checks every byte of it: exit 0 and
 * "received 4096 bytes of memfd_secret ..." when all is well, 1 otherwise.
 *
 * The lines between the "README" markers are the README's code block, word
 * for word (tests/readme/check-readme.py compares them).
 */
#include <xmem/xmem.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "secret.hpp"

namespace {

int receive(const std::string &socket_path)
{
	// README begin
	// Receiver: ask for it, get it verified, and map it read-only.
	// connect_options{}: a 10 s timeout, and the server must run as this process's
	// uid or root (SO_PEERCRED), so whoever took the socket path first cannot pass for it.
	xmem::channel ch = xmem::channel::connect(socket_path, xmem::connect_options{});
	ch.send_request("signing-key");
	xmem::requirements req;
	req.size = 4096;                                   // exact size, checked with fstat
	xmem::received_memory got = ch.receive_memory(req); // fstatfs magic, S_ISREG, size, seals
	xmem::mapping view = xmem::mapping::map(got.memory, xmem::access::read_only);
	// README end

	if (!readme::holds_secret(view.bytes())) {
		std::fprintf(stderr, "readme-receiver: the memory does not hold the secret\n");
		return 1;
	}
	std::printf("received %zu bytes of %s, seals %s, the secret intact\n", got.size,
		    std::string(xmem::to_string(got.memory.backend())).c_str(),
		    xmem::to_string(got.seals).c_str());
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 2) {
		std::fprintf(stderr, "usage: readme-receiver SOCKET\n");
		return 2;
	}
	try {
		return receive(argv[1]);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "readme-receiver: %s\n", e.what());
		return 1;
	}
}
