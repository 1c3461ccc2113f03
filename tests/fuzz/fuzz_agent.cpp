// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target: xmem::agent::decode_request (examples/agent/agent_proto.cpp)
 * on any message body. libFuzzer hands the body in a heap block of exactly
 * its size, so a read past it is an AddressSanitizer report. Properties:
 *  - the only exception is protocol_error; its what() is one non-empty line
 *    and, for a message type the agent knows, starts with the message's name
 *    and a colon, then names the field or rule;
 *  - every span and string_view of a decoded request lies inside the body;
 *  - re-encoding (an encoder written here from the draft, not the agent's)
 *    a decoded request gives a body that decodes to the same value; it is the
 *    input byte for byte except for ADD_ID_CONSTRAINED with both constraints
 *    (their order is free), and for key types whose fields the decoder skips
 *    (RSA, DSA, ECDSA), which cannot be re-encoded from what it keeps;
 *  - a decoded message of a fixed layout (everything but EXTENSION and
 *    ADD_ID_CONSTRAINED, whose tails are optional) is refused when its last
 *    byte, or half of it, is cut off: declared lengths are checked.
 */
#include "../../examples/agent/agent_proto.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace xmem::agent;

namespace {

[[noreturn]] void broken(const char *why)
{
	std::fprintf(stderr, "fuzz_agent: property violated: %s\n", why);
	std::abort();
}

struct body_range {
	const std::byte *lo, *hi;

	void inside(bytes s, const char *what) const
	{
		if (!s.empty() && (s.data() < lo || s.data() + s.size() > hi))
			broken(what);
	}
	void inside(std::string_view s, const char *what) const
	{
		inside(bytes(reinterpret_cast<const std::byte *>(s.data()), s.size()), what);
	}
};

void put_u8(std::vector<std::byte> &v, std::uint8_t x) { v.push_back(std::byte{x}); }

void put_u32(std::vector<std::byte> &v, std::uint32_t x)
{
	for (int s = 24; s >= 0; s -= 8)
		put_u8(v, static_cast<std::uint8_t>(x >> s));
}

void put_str(std::vector<std::byte> &v, bytes s)
{
	put_u32(v, static_cast<std::uint32_t>(s.size()));
	v.insert(v.end(), s.begin(), s.end());
}

void put_str(std::vector<std::byte> &v, std::string_view s)
{
	put_str(v, bytes(reinterpret_cast<const std::byte *>(s.data()), s.size()));
}

bool same(bytes a, bytes b) { return std::ranges::equal(a, b); }

/* The body of @r as draft-miller-ssh-agent lays it out; empty if it cannot be. */
std::vector<std::byte> encode(const request &r)
{
	std::vector<std::byte> v;
	if (std::holds_alternative<request_identities>(r)) {
		put_u8(v, msg::request_identities);
	} else if (auto *s = std::get_if<sign_request>(&r)) {
		put_u8(v, msg::sign_request);
		put_str(v, s->key_blob);
		put_str(v, s->data);
		put_u32(v, s->flags);
	} else if (auto *a = std::get_if<add_identity>(&r)) {
		if (!a->ed25519)
			return {};
		put_u8(v, a->constrained ? msg::add_id_constrained : msg::add_identity);
		put_str(v, a->key_type);
		put_str(v, a->ed25519->public_key);
		put_str(v, a->ed25519->secret_key);
		put_str(v, a->comment);
		if (a->lifetime) {
			put_u8(v, constraint::lifetime);
			put_u32(v, *a->lifetime);
		}
		if (a->confirm)
			put_u8(v, constraint::confirm);
	} else if (auto *m = std::get_if<remove_identity>(&r)) {
		put_u8(v, msg::remove_identity);
		put_str(v, m->key_blob);
	} else if (std::holds_alternative<remove_all_identities>(r)) {
		put_u8(v, msg::remove_all_identities);
	} else if (auto *l = std::get_if<lock_request>(&r)) {
		put_u8(v, l->lock ? msg::lock : msg::unlock);
		put_str(v, l->passphrase);
	} else if (auto *e = std::get_if<extension>(&r)) {
		put_u8(v, msg::extension);
		put_str(v, e->name);
		v.insert(v.end(), e->contents.begin(), e->contents.end());
	}
	return v;
}

bool equal(const request &x, const request &y)
{
	if (x.index() != y.index())
		return false;
	if (auto *a = std::get_if<sign_request>(&x)) {
		auto &b = std::get<sign_request>(y);
		return same(a->key_blob, b.key_blob) && same(a->data, b.data) && a->flags == b.flags;
	}
	if (auto *a = std::get_if<add_identity>(&x)) {
		auto &b = std::get<add_identity>(y);
		if (a->key_type != b.key_type || !same(a->comment, b.comment) ||
		    a->constrained != b.constrained || a->lifetime != b.lifetime ||
		    a->confirm != b.confirm || a->ed25519.has_value() != b.ed25519.has_value())
			return false;
		return !a->ed25519 || (same(a->ed25519->public_key, b.ed25519->public_key) &&
				       same(a->ed25519->secret_key, b.ed25519->secret_key));
	}
	if (auto *a = std::get_if<remove_identity>(&x))
		return same(a->key_blob, std::get<remove_identity>(y).key_blob);
	if (auto *a = std::get_if<lock_request>(&x)) {
		auto &b = std::get<lock_request>(y);
		return a->lock == b.lock && same(a->passphrase, b.passphrase);
	}
	if (auto *a = std::get_if<extension>(&x)) {
		auto &b = std::get<extension>(y);
		return a->name == b.name && same(a->contents, b.contents);
	}
	return true; /* request_identities, remove_all_identities: no fields */
}

void check_inside(const request &r, const body_range &in)
{
	const char *why = "a decoded field points outside the body";
	if (auto *s = std::get_if<sign_request>(&r)) {
		in.inside(s->key_blob, why);
		in.inside(s->data, why);
	} else if (auto *a = std::get_if<add_identity>(&r)) {
		in.inside(a->key_type, why);
		in.inside(a->comment, why);
		if (a->ed25519) {
			in.inside(a->ed25519->public_key, why);
			in.inside(a->ed25519->secret_key, why);
			if (a->ed25519->public_key.size() != ed25519_public_size ||
			    a->ed25519->secret_key.size() != ed25519_secret_size ||
			    !same(a->ed25519->secret_key.subspan(32), a->ed25519->public_key))
				broken("an Ed25519 key of the wrong shape was accepted");
		}
		if (a->comment.size() > max_comment)
			broken("a comment longer than max_comment was accepted");
		if (!a->constrained && (a->lifetime || a->confirm))
			broken("constraints on a plain ADD_IDENTITY");
	} else if (auto *m = std::get_if<remove_identity>(&r)) {
		in.inside(m->key_blob, why);
	} else if (auto *l = std::get_if<lock_request>(&r)) {
		in.inside(l->passphrase, why);
	} else if (auto *e = std::get_if<extension>(&r)) {
		in.inside(e->name, why);
		in.inside(e->contents, why);
		if (e->name.empty() || e->name.size() > max_name ||
		    !std::ranges::all_of(e->name, [](char c) { return c > 0x20 && c < 0x7f; }))
			broken("an extension name that is not 1..max_name printable bytes");
	}
}

/* decode_request, with the rules on what may escape it and what its errors say. */
bool decode(bytes body, request &out)
{
	try {
		out = decode_request(body);
		return true;
	} catch (const protocol_error &e) {
		std::string_view w = e.what();
		if (w.empty() || w.find('\n') != w.npos)
			broken("protocol_error::what() is not one non-empty line");
		if (!body.empty() && body.size() <= max_message) {
			std::string name = message_name(std::to_integer<std::uint8_t>(body[0]));
			if (name.rfind("type ", 0) != 0 &&
			    (w.rfind(name + ": ", 0) != 0 || w.size() <= name.size() + 2))
				broken("protocol_error does not name the message");
		}
		return false;
	} catch (...) {
		broken("an exception other than protocol_error");
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	bytes body(reinterpret_cast<const std::byte *>(data), size);
	request r;
	if (!decode(body, r))
		return 0;
	if (size == 0 || size > max_message)
		broken("an empty or oversized body was accepted");
	check_inside(r, {body.data(), body.data() + body.size()});

	auto *add = std::get_if<add_identity>(&r);
	std::vector<std::byte> again = encode(r);
	if (again.empty()) {
		if (!add || add->key_type == "ssh-ed25519")
			broken("a request the target cannot re-encode");
	} else {
		request r2;
		if (!decode(again, r2) || !equal(r, r2))
			broken("the re-encoded request decodes to another value");
		bool free_order = add && add->constrained && add->lifetime && add->confirm;
		if (free_order ? again.size() != size : !same(again, body))
			broken("the re-encoding differs from the input");
	}

	bool fixed = !std::holds_alternative<extension>(r) && !(add && add->constrained);
	if (fixed && size > 1) {
		request cut;
		if (decode(body.first(size - 1), cut) || decode(body.first(size / 2 + 1 == size ? 1 : size / 2 + 1), cut))
			broken("a truncated message was accepted");
	}
	return 0;
}
