// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The ssh-agent message decoder (examples/agent/agent_proto.hpp) on its own:
 * well-formed requests decode to what they carry, with spans into the body;
 * every truncation of them and every malformed form throws protocol_error,
 * and nothing else.
 */
#define BOOST_TEST_MODULE agent_proto
#include <boost/test/unit_test.hpp>

#include "agent_proto.hpp"

#include <cstdint>
#include <string>
#include <vector>

using namespace xmem::agent;

namespace {

using buf = std::vector<std::byte>;

void put_u32(buf &b, std::uint32_t v)
{
	for (int s = 24; s >= 0; s -= 8)
		b.push_back(static_cast<std::byte>((v >> s) & 0xff));
}

void put_string(buf &b, const buf &s)
{
	put_u32(b, static_cast<std::uint32_t>(s.size()));
	b.insert(b.end(), s.begin(), s.end());
}

buf text(const std::string &s)
{
	buf b;
	for (char c : s)
		b.push_back(static_cast<std::byte>(c));
	return b;
}

buf filled(std::size_t n, std::uint8_t v)
{
	return buf(n, static_cast<std::byte>(v));
}

/* ADD_IDENTITY (or _CONSTRAINED) of an Ed25519 key whose public key is 32 x 0xaa. */
buf ed25519_add(bool constrained, const buf &tail = {}, const std::string &comment = "c")
{
	buf b{static_cast<std::byte>(constrained ? msg::add_id_constrained : msg::add_identity)};
	const buf pub = filled(32, 0xaa);
	buf sec = filled(32, 0x11);
	sec.insert(sec.end(), pub.begin(), pub.end());
	put_string(b, text("ssh-ed25519"));
	put_string(b, pub);
	put_string(b, sec);
	put_string(b, text(comment));
	b.insert(b.end(), tail.begin(), tail.end());
	return b;
}

void expect_error(const buf &body, const std::string &needle)
{
	try {
		(void)decode_request(body);
		BOOST_ERROR("decoded, expected protocol_error containing '" + needle + "'");
	} catch (const protocol_error &e) {
		BOOST_TEST_INFO("what(): " << e.what());
		BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos);
	}
}

} // namespace

BOOST_AUTO_TEST_CASE(sign_request_decodes_into_the_body)
{
	buf b{static_cast<std::byte>(msg::sign_request)};
	put_string(b, text("blob"));
	put_string(b, text("data!"));
	put_u32(b, 4);
	const auto r = decode_request(b);
	const auto *s = std::get_if<sign_request>(&r);
	BOOST_REQUIRE(s);
	BOOST_TEST(s->key_blob.size() == 4u);
	BOOST_TEST(s->key_blob.data() == b.data() + 5);	/* no copy: points into the body */
	BOOST_TEST(s->data.size() == 5u);
	BOOST_TEST(s->flags == 4u);
}

BOOST_AUTO_TEST_CASE(add_identity_with_lifetime)
{
	buf tail{static_cast<std::byte>(constraint::lifetime)};
	put_u32(tail, 3600);
	const buf b = ed25519_add(true, tail, "my key");
	const auto r = decode_request(b);
	const auto *a = std::get_if<add_identity>(&r);
	BOOST_REQUIRE(a);
	BOOST_TEST(a->key_type == "ssh-ed25519");
	BOOST_REQUIRE(a->ed25519.has_value());
	BOOST_TEST(a->ed25519->secret_key.size() == 64u);
	BOOST_TEST(a->constrained);
	BOOST_REQUIRE(a->lifetime.has_value());
	BOOST_TEST(*a->lifetime == 3600u);
	BOOST_TEST(!a->confirm);
	BOOST_TEST(a->comment.size() == 6u);
}

BOOST_AUTO_TEST_CASE(every_truncation_is_a_protocol_error)
{
	buf tail{static_cast<std::byte>(constraint::lifetime)};
	put_u32(tail, 60);
	tail.push_back(static_cast<std::byte>(constraint::confirm));
	const buf full = ed25519_add(true, tail);
	BOOST_REQUIRE_NO_THROW((void)decode_request(full));
	/* Cuts inside the constraints can leave a shorter valid list: only cuts before them must fail. */
	const std::size_t constraints_at = full.size() - tail.size();
	for (std::size_t n = 0; n < full.size(); n++) {
		const buf cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
		try {
			(void)decode_request(cut);
			BOOST_TEST((n == constraints_at || n == constraints_at + 5),
				   "prefix of " << n << " bytes decoded");
		} catch (const protocol_error &) {
		}
	}
}

BOOST_AUTO_TEST_CASE(malformed_requests_say_what_was_wrong)
{
	expect_error({}, "empty message");
	expect_error(buf(max_message + 1, std::byte{11}), "at most 262144");
	expect_error({std::byte{200}}, "unknown message type 200");
	expect_error({std::byte{11}, std::byte{0}}, "REQUEST_IDENTITIES: 1 bytes after the last field");
	buf huge{static_cast<std::byte>(msg::sign_request)};
	put_u32(huge, 0xffffffffu);
	expect_error(huge, "SIGN_REQUEST: key blob: string of 4294967295 bytes past the end");
	buf unknown{static_cast<std::byte>(constraint::confirm), std::byte{7}};
	expect_error(ed25519_add(true, unknown), "unknown constraint type 7");
	buf twice{std::byte{2}, std::byte{2}};
	expect_error(ed25519_add(true, twice), "confirm constraint given twice");
	buf ext{static_cast<std::byte>(constraint::extension)};
	put_string(ext, text("restrict-destination-v00@openssh.com"));
	expect_error(ed25519_add(true, ext), "unsupported constraint extension 'restrict-destination-v00@openssh.com'");
	expect_error(ed25519_add(false, {std::byte{2}}), "ADD_IDENTITY: 1 bytes after the last field");
	expect_error(ed25519_add(false, {}, std::string(max_comment + 1, 'x')), "comment of 1025 bytes");
	buf many(max_constraints + 1, static_cast<std::byte>(constraint::confirm));
	expect_error(ed25519_add(true, many), "constraint");
	buf bad_type{static_cast<std::byte>(msg::add_identity)};
	put_string(bad_type, text("ssh-ed448"));
	expect_error(bad_type, "unsupported key type 'ssh-ed448'");
	buf ext_name{static_cast<std::byte>(msg::extension)};
	put_string(ext_name, text("a\x01"));
	expect_error(ext_name, "printable ASCII only");
	expect_error({static_cast<std::byte>(msg::add_smartcard_key)}, "smartcard keys are not supported");
}

BOOST_AUTO_TEST_CASE(ed25519_fields_are_checked)
{
	buf b{static_cast<std::byte>(msg::add_identity)};
	put_string(b, text("ssh-ed25519"));
	put_string(b, filled(32, 0xaa));
	put_string(b, filled(64, 0xbb));	/* second half is not the public key */
	put_string(b, text("c"));
	expect_error(b, "public half differs");
	buf s{static_cast<std::byte>(msg::add_identity)};
	put_string(s, text("ssh-ed25519"));
	put_string(s, filled(31, 0xaa));
	put_string(s, filled(64, 0xaa));
	put_string(s, text("c"));
	expect_error(s, "public key of 31 bytes");
}

BOOST_AUTO_TEST_CASE(other_key_types_reach_their_comment)
{
	buf b{static_cast<std::byte>(msg::add_identity)};
	put_string(b, text("ecdsa-sha2-nistp256"));
	put_string(b, text("nistp256"));
	put_string(b, filled(65, 4));
	put_string(b, filled(32, 9));
	put_string(b, text("ec key"));
	const auto r = decode_request(b);
	const auto *a = std::get_if<add_identity>(&r);
	BOOST_REQUIRE(a);
	BOOST_TEST(!a->ed25519.has_value());
	BOOST_TEST(a->comment.size() == 6u);
	buf wrong{static_cast<std::byte>(msg::add_identity)};
	put_string(wrong, text("ecdsa-sha2-nistp256"));
	put_string(wrong, text("nistp384"));
	expect_error(wrong, "does not match key type");
}

BOOST_AUTO_TEST_CASE(replies_encode_as_the_draft_says)
{
	BOOST_TEST(encode_status(false) == buf{std::byte{5}});
	BOOST_TEST(encode_status(true) == buf{std::byte{6}});
	BOOST_TEST(encode_identities({}) == (buf{std::byte{12}, {}, {}, {}, {}}));
	const buf body{std::byte{6}};
	BOOST_TEST(encode_frame(body) == (buf{{}, {}, {}, std::byte{1}, std::byte{6}}));
	const buf pub = filled(32, 1);
	const auto blob = ed25519_key_blob(pub);
	BOOST_TEST(blob.size() == 4u + 11 + 4 + 32);
}
