// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The owner half of the README's API example, as a program. Usage:
 * readme-owner SOCKET. Creates the key, listens on SOCKET, prints
 * "listening" on stdout once connections are accepted, serves one peer and
 * exits: 0 when the reply was sent, 1 on an error (printed).
 *
 * The lines between the "README" markers are the README's code block, word
 * for word (tests/readme/check-readme.py compares them).
 */
#include <cerrno>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <unistd.h>

#include "secret.hpp"

// README begin
#include <xmem/xmem.hpp>

// README end

namespace {

using readme::load_secret_into;

int serve(const std::string &socket_path)
{
	const std::vector<uid_t> allowed_uids{::getuid()};

	// README begin
	// Owner: make 4 KiB of exclusive memory, fill it, seal it, hand it over.
	xmem::memory key = xmem::memory::create("signing-key", 4096);   // memfd_exclusive or memfd_secret
	{
		xmem::mapping m = xmem::mapping::map(key, xmem::access::read_write);
		load_secret_into(m.bytes());                             // std::span<std::byte>
	}
	if (key.backend() == xmem::backend::exclusive)
		key.add_seals(xmem::seals(xmem::seals::shrink | xmem::seals::grow |
					  xmem::seals::future_write | xmem::seals::seal));
	xmem::listener server = xmem::listener::bind(socket_path);     // mode 0600
	// README end
	std::printf("listening on %s (%s)\n", socket_path.c_str(),
		    std::string(xmem::to_string(key.backend())).c_str());
	std::fflush(stdout);
	// README begin
	xmem::channel peer = server.accept();
	std::string asked = peer.receive_request();                    // read it, then reply
	if (asked == "signing-key" && xmem::uid_allowed(peer.peer(), allowed_uids)) // SO_PEERCRED
		peer.send_memory(key, asked);                            // SCM_RIGHTS
	else
		peer.send_error(EACCES, asked);

	// README end
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 2) {
		std::fprintf(stderr, "usage: readme-owner SOCKET\n");
		return 2;
	}
	try {
		return serve(argv[1]);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "readme-owner: %s\n", e.what());
		return 1;
	}
}
