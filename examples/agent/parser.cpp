// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The parser process (parser.hpp).
 */

#include "parser.hpp"

#include "agent_proto.hpp"
#include "key_record.hpp"
#include "sandbox.hpp"

#include <xmem/xmem.hpp>

#include <sodium.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <variant>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace xmem::agent {

namespace {

void log(const std::string &line)
{
	std::fprintf(stderr, "xmem-agent[parser]: %s\n", line.c_str());
}

void refuse(channel &ch, int err, const std::string &name)
{
	std::error_code ec;
	wire::header h;
	h.kind = wire::kind::error;
	h.error = err;
	h.name = name;
	ch.send(h, {}, ec);
	if (ec)
		log("sending the refusal: " + ec.message());
}

/* A wire name for the refusal of key type @type: "key-type TYPE", '/' as '_'. */
std::string key_type_refusal(std::string_view type)
{
	std::string n = std::string(parse_refusal::key_type) + " " +
			std::string(type.substr(0, wire::name_max - 9));
	for (char &c : n)
		if (c == '/')
			c = '_';
	return n;
}

bool hook_matches(const parser_hook &hook, const char *kind, bytes comment)
{
	return hook.kind == kind && hook.arg.size() == comment.size() &&
	       std::memcmp(hook.arg.data(), comment.data(), comment.size()) == 0;
}

/* Decodes @body and answers with the key or a refusal. */
void answer(channel &ch, bytes body, const parser_hook &hook, int request_fd)
{
	add_identity add;
	try {
		request r = decode_request(body);
		auto *a = std::get_if<add_identity>(&r);
		if (!a) {
			log("not an ADD_IDENTITY message");
			refuse(ch, EPROTO, parse_refusal::malformed);
			return;
		}
		add = *a;
	} catch (const protocol_error &e) {
		log(e.what());
		refuse(ch, EPROTO, parse_refusal::malformed);
		return;
	}
	if (hook_matches(hook, "crash", add.comment)) {
		log("test hook: crashing");
		std::abort();
	}
	if (hook_matches(hook, "fds", add.comment)) {
		/* Every fd the parser holds, in the sandbox (fstat only). */
		for (int fd = 0; fd < 1024; fd++) {
			struct stat st{};
			if (::fstat(fd, &st) < 0)
				continue;
			std::string kind;
			if (fd == ch.fd().get())
				kind = "its channel";
			else if (fd == request_fd)
				kind = "its request's memory";
			else if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3))
				kind = "/dev/null";
			else if (S_ISFIFO(st.st_mode))
				kind = "a pipe";
			else
				kind = "other (mode " + std::to_string(st.st_mode) + ")";
			log("test hook: fd " + std::to_string(fd) + ": " + kind);
		}
	}
	if (hook_matches(hook, "hang", add.comment)) {
		log("test hook: hanging");
		for (;;)
			::pause();
	}
	if (!add.ed25519) {
		log("key type '" + std::string(add.key_type) +
		    "' refused: only Ed25519 keys can be held whole in exclusive memory");
		refuse(ch, EAFNOSUPPORT, key_type_refusal(add.key_type));
		return;
	}
	if (add.confirm) {
		log("confirm constraint refused: xmem-agent cannot ask the user to confirm");
		refuse(ch, ENOTSUP, parse_refusal::confirm);
		return;
	}

	memory key = memory::create("xmem-agent-key", key_memory_size);
	{
		mapping m = mapping::map(key, access::read_write);
		auto *rec = reinterpret_cast<key_record *>(m.data());
		std::memset(rec, 0, sizeof(*rec));
		rec->magic = key_record_magic;
		rec->version = key_record_version;
		if (add.lifetime) {
			rec->flags |= key_record_has_lifetime;
			rec->lifetime = *add.lifetime;
		}
		/* The seed gives the key pair: the public key sent must be its own. */
		const auto *seed = reinterpret_cast<const unsigned char *>(add.ed25519->secret_key.data());
		crypto_sign_seed_keypair(rec->public_key, rec->secret_key, seed);
		if (sodium_memcmp(rec->public_key, add.ed25519->public_key.data(),
				  ed25519_public_size) != 0) {
			sodium_memzero(m.data(), m.size());
			log("Ed25519 public key is not the private key's");
			refuse(ch, EPROTO, parse_refusal::malformed);
			return;
		}
		rec->comment_len = static_cast<std::uint32_t>(add.comment.size());
		std::memcpy(rec->comment, add.comment.data(), add.comment.size());
	}
	if (key.backend() == backend::exclusive)
		key.add_seals(seals(seals::shrink | seals::grow | seals::seal));
	ch.send_memory(key, "key");
}

} // namespace

int run_parser(int fd, const parser_hook &hook)
{

	/* Checked (getsockopt) before the sandbox, which has no getsockopt. */
	std::error_code ec;
	channel ch = channel::adopt(unique_fd(fd), ec);
	if (ec) {
		log("channel: " + ec.message());
		return 1;
	}
	try {
		enter_sandbox(fd);
	} catch (const std::exception &e) {
		log(e.what());
		return 1;
	}
	if (hook.kind == "open") {
		const int f = ::open(hook.arg.c_str(), O_RDONLY | O_CLOEXEC);
		log("test hook: open " + hook.arg + ": " +
		    (f >= 0 ? std::string("ALLOWED") : "denied (" + std::string(std::strerror(errno)) + ")"));
		if (f >= 0)
			::close(f);
	}
	ch.set_max_fds(1);
	/* The signer's ADD message: memory of exactly the body's size. */
	received_memory got = ch.receive_memory(requirements{}, ec);
	if (ec) {
		log("receiving the request: " + ec.message());
		return 1;
	}
	try {
		if (got.size > max_message)
			throw std::runtime_error("message memory of " + std::to_string(got.size) +
						 " bytes from the signer");
		mapping view = mapping::map(got.memory, access::read_only);
		answer(ch, view.bytes(), hook, got.memory.fd().get());
	} catch (const std::exception &e) {
		log(e.what());
		refuse(ch, EIO, parse_refusal::internal);
	}
	return 0;
}

} // namespace xmem::agent
