// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The ssh-agent message decoder and reply encoders (agent_proto.hpp).
 * Written from draft-miller-ssh-agent and OpenSSH's PROTOCOL.agent; the key
 * layouts from the draft's section 4.2 (the same as OpenSSH's
 * sshkey_private_serialize()).
 */

#include "agent_proto.hpp"

#include <algorithm>
#include <cstring>

namespace xmem::agent {

namespace {

/* Reads fields from a body, front to back, naming the message in errors. */
class reader
{
public:
	reader(bytes b, std::string_view what) noexcept : b_(b), what_(what) {}

	[[noreturn]] void fail(const std::string &why) const
	{
		throw protocol_error(std::string(what_) + ": " + why);
	}

	[[nodiscard]] std::size_t left() const noexcept { return b_.size() - pos_; }

	std::uint8_t u8(std::string_view field)
	{
		if (left() < 1)
			fail(std::string(field) + ": byte past the end of the message");
		return std::to_integer<std::uint8_t>(b_[pos_++]);
	}

	std::uint32_t u32(std::string_view field)
	{
		if (left() < 4)
			fail(std::string(field) + ": uint32 past the end of the message (" +
			     std::to_string(left()) + " bytes left)");
		std::uint32_t v = 0;
		for (int i = 0; i < 4; i++)
			v = (v << 8) | std::to_integer<std::uint8_t>(b_[pos_++]);
		return v;
	}

	bytes string(std::string_view field)
	{
		const std::uint32_t n = u32(field);
		if (n > left())
			fail(std::string(field) + ": string of " + std::to_string(n) +
			     " bytes past the end of the message (" +
			     std::to_string(left()) + " left)");
		bytes s = b_.subspan(pos_, n);
		pos_ += n;
		return s;
	}

	/* A string that must be a name: 1..max_name printable ASCII bytes. */
	std::string_view name(std::string_view field)
	{
		bytes s = string(field);
		if (s.empty())
			fail(std::string(field) + ": empty name");
		if (s.size() > max_name)
			fail(std::string(field) + ": name of " + std::to_string(s.size()) +
			     " bytes (at most " + std::to_string(max_name) + ")");
		for (std::byte c : s) {
			const auto u = std::to_integer<unsigned>(c);
			if (u < 0x21 || u > 0x7e)
				fail(std::string(field) + ": name holds byte " +
				     std::to_string(u) + " (printable ASCII only)");
		}
		return {reinterpret_cast<const char *>(s.data()), s.size()};
	}

	/* An mpint (RFC 4251 section 5), only skipped: length bounds only. */
	void skip_mpint(std::string_view field) { (void)string(field); }

	bytes rest() noexcept
	{
		bytes r = b_.subspan(pos_);
		pos_ = b_.size();
		return r;
	}

	void expect_end()
	{
		if (left() != 0)
			fail(std::to_string(left()) + " bytes after the last field");
	}

private:
	bytes b_;
	std::size_t pos_ = 0;
	std::string_view what_;
};

bool same(bytes a, bytes b) noexcept
{
	return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

/* The key's fields after its type name, as in draft section 4.2. */
void read_key(reader &r, add_identity &a)
{
	if (a.key_type == "ssh-ed25519") {
		bytes pub = r.string("Ed25519 public key");
		bytes sec = r.string("Ed25519 private key");
		if (pub.size() != ed25519_public_size)
			r.fail("Ed25519 public key of " + std::to_string(pub.size()) +
			       " bytes (must be 32)");
		if (sec.size() != ed25519_secret_size)
			r.fail("Ed25519 private key of " + std::to_string(sec.size()) +
			       " bytes (must be 64)");
		if (!same(sec.subspan(32), pub))
			r.fail("Ed25519 private key's public half differs from the public key");
		a.ed25519 = ed25519_key{pub, sec};
	} else if (a.key_type == "ssh-rsa") {
		for (const char *f : {"RSA n", "RSA e", "RSA d", "RSA iqmp", "RSA p", "RSA q"})
			r.skip_mpint(f);
	} else if (a.key_type == "ssh-dss") {
		for (const char *f : {"DSA p", "DSA q", "DSA g", "DSA y", "DSA x"})
			r.skip_mpint(f);
	} else if (a.key_type == "ecdsa-sha2-nistp256" || a.key_type == "ecdsa-sha2-nistp384" ||
		   a.key_type == "ecdsa-sha2-nistp521") {
		std::string_view curve = r.name("ECDSA curve");
		if (a.key_type.substr(11) != curve)
			r.fail("ECDSA curve '" + std::string(curve) + "' does not match key type '" +
			       std::string(a.key_type) + "'");
		(void)r.string("ECDSA Q");
		r.skip_mpint("ECDSA d");
	} else {
		r.fail("unsupported key type '" + std::string(a.key_type) + "'");
	}
}

void read_constraints(reader &r, add_identity &a)
{
	std::size_t n = 0;

	while (r.left() > 0) {
		if (++n > max_constraints)
			r.fail("more than " + std::to_string(max_constraints) + " constraints");
		const std::uint8_t c = r.u8("constraint type");
		switch (c) {
		case constraint::lifetime:
			if (a.lifetime)
				r.fail("lifetime constraint given twice");
			a.lifetime = r.u32("lifetime");
			break;
		case constraint::confirm:
			if (a.confirm)
				r.fail("confirm constraint given twice");
			a.confirm = true;
			break;
		case constraint::extension: {
			/* Its data has a layout only its definer knows: cannot be skipped. */
			std::string_view name = r.name("constraint extension name");
			r.fail("unsupported constraint extension '" + std::string(name) + "'");
		}
		default:
			r.fail("unknown constraint type " + std::to_string(c));
		}
	}
}

add_identity decode_add(reader &r, bool constrained)
{
	add_identity a;

	a.constrained = constrained;
	a.key_type = r.name("key type");
	read_key(r, a);
	a.comment = r.string("comment");
	if (a.comment.size() > max_comment)
		r.fail("comment of " + std::to_string(a.comment.size()) + " bytes (at most " +
		       std::to_string(max_comment) + ")");
	if (constrained)
		read_constraints(r, a);
	r.expect_end();
	return a;
}

void put_u32(std::vector<std::byte> &v, std::uint32_t x)
{
	for (int s = 24; s >= 0; s -= 8)
		v.push_back(static_cast<std::byte>((x >> s) & 0xff));
}

void put_string(std::vector<std::byte> &v, bytes s)
{
	put_u32(v, static_cast<std::uint32_t>(s.size()));
	v.insert(v.end(), s.begin(), s.end());
}

void put_string(std::vector<std::byte> &v, std::string_view s)
{
	put_string(v, bytes(reinterpret_cast<const std::byte *>(s.data()), s.size()));
}

} // namespace

std::string message_name(std::uint8_t type)
{
	switch (type) {
	case msg::request_identities: return "REQUEST_IDENTITIES";
	case msg::sign_request: return "SIGN_REQUEST";
	case msg::add_identity: return "ADD_IDENTITY";
	case msg::remove_identity: return "REMOVE_IDENTITY";
	case msg::remove_all_identities: return "REMOVE_ALL_IDENTITIES";
	case msg::add_smartcard_key: return "ADD_SMARTCARD_KEY";
	case msg::remove_smartcard_key: return "REMOVE_SMARTCARD_KEY";
	case msg::lock: return "LOCK";
	case msg::unlock: return "UNLOCK";
	case msg::add_id_constrained: return "ADD_ID_CONSTRAINED";
	case msg::add_smartcard_key_constrained: return "ADD_SMARTCARD_KEY_CONSTRAINED";
	case msg::extension: return "EXTENSION";
	default: return "type " + std::to_string(type);
	}
}

request decode_request(std::span<const std::byte> body)
{
	if (body.empty())
		throw protocol_error("empty message (no type byte)");
	if (body.size() > max_message)
		throw protocol_error("message of " + std::to_string(body.size()) +
				     " bytes (at most " + std::to_string(max_message) + ")");
	const std::uint8_t type = std::to_integer<std::uint8_t>(body[0]);
	const std::string what = message_name(type);
	reader r(body.subspan(1), what);

	switch (type) {
	case msg::request_identities:
		r.expect_end();
		return request_identities{};
	case msg::sign_request: {
		sign_request s;
		s.key_blob = r.string("key blob");
		s.data = r.string("data");
		s.flags = r.u32("flags");
		r.expect_end();
		return s;
	}
	case msg::add_identity:
		return decode_add(r, false);
	case msg::add_id_constrained:
		return decode_add(r, true);
	case msg::remove_identity: {
		remove_identity m{r.string("key blob")};
		r.expect_end();
		return m;
	}
	case msg::remove_all_identities:
		r.expect_end();
		return remove_all_identities{};
	case msg::lock:
	case msg::unlock: {
		lock_request l{type == msg::lock, r.string("passphrase")};
		r.expect_end();
		return l;
	}
	case msg::extension: {
		extension e;
		e.name = r.name("extension name");
		e.contents = r.rest();
		return e;
	}
	case msg::add_smartcard_key:
	case msg::remove_smartcard_key:
	case msg::add_smartcard_key_constrained:
		r.fail("smartcard keys are not supported");
	default:
		throw protocol_error("unknown message type " + std::to_string(type));
	}
}

std::vector<std::byte> encode_status(bool ok)
{
	return {static_cast<std::byte>(ok ? msg::success : msg::failure)};
}

std::vector<std::byte> encode_identities(std::span<const identity> ids)
{
	std::vector<std::byte> v{static_cast<std::byte>(msg::identities_answer)};

	put_u32(v, static_cast<std::uint32_t>(ids.size()));
	for (const identity &id : ids) {
		put_string(v, id.key_blob);
		put_string(v, id.comment);
	}
	return v;
}

std::vector<std::byte> encode_sign_response(bytes signature_blob)
{
	std::vector<std::byte> v{static_cast<std::byte>(msg::sign_response)};

	put_string(v, signature_blob);
	return v;
}

std::vector<std::byte> encode_query_response(std::span<const std::string_view> names)
{
	std::vector<std::byte> v{static_cast<std::byte>(msg::extension_response)};

	put_string(v, std::string_view("query"));
	for (std::string_view n : names)
		put_string(v, n);
	return v;
}

std::vector<std::byte> encode_frame(std::span<const std::byte> body)
{
	std::vector<std::byte> v;

	v.reserve(4 + body.size());
	put_u32(v, static_cast<std::uint32_t>(body.size()));
	v.insert(v.end(), body.begin(), body.end());
	return v;
}

std::vector<std::byte> ed25519_key_blob(bytes public_key)
{
	std::vector<std::byte> v;

	put_string(v, std::string_view("ssh-ed25519"));
	put_string(v, public_key);
	return v;
}

std::vector<std::byte> ed25519_signature_blob(bytes signature)
{
	std::vector<std::byte> v;

	put_string(v, std::string_view("ssh-ed25519"));
	put_string(v, signature);
	return v;
}

} // namespace xmem::agent
