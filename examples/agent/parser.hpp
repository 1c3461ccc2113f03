// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The parser process of xmem-agent: started fresh (fork + exec of the
 * agent's own binary) for each ADD_IDENTITY or ADD_ID_CONSTRAINED request,
 * it enters the sandbox (sandbox.hpp), receives the request's body as an fd
 * of exclusive memory over its channel (xmem wire protocol, SCM_RIGHTS),
 * decodes it (decode_request), writes the key into a new page of exclusive
 * memory as a key_record (key_record.hpp), seals it against resizing and
 * sends it back. Then it exits: one parser never sees two keys.
 */
#pragma once

#include <string>

namespace xmem::agent {

/*
 * Test hooks of the parser (xmem-agent --test-parser-hook=KIND:ARG), for
 * tests/agent only: "crash:COMMENT" aborts (SIGABRT) on a key whose
 * comment is COMMENT; "hang:COMMENT" never answers one; "fds:COMMENT"
 * logs every fd it holds (in the sandbox) for one; "open:PATH" tries
 * to open PATH after entering the sandbox and logs whether it was denied.
 */
struct parser_hook {
	std::string kind;
	std::string arg;
};

/*
 * The parser's main: @fd is its channel to the signer (AF_UNIX
 * SOCK_SEQPACKET). Returns the exit status: 0 when it answered (a key or
 * a refusal), 1 when it could not (sandbox failed, channel broken).
 * Writes what it refused and why to stderr ("xmem-agent[parser]: ..."),
 * a pipe the signer copies to its own stderr; stdin and stdout are
 * /dev/null.
 */
int run_parser(int fd, const parser_hook &hook);

} // namespace xmem::agent
