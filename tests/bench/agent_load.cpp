// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Load generator for ssh-agents (scripts/bench-agent): SIGN_REQUEST in a loop
 * over N concurrent connections to one agent socket, speaking the protocol
 * of draft-miller-ssh-agent directly (no OpenSSH client code in the loop).
 *
 * usage: agent_load --socket PATH --pubkey FILE.pub [--connections N]
 *                   [--seconds S | --count C] [--data BYTES] [--verify-every K]
 *
 * It asks the agent for its identities, checks that the Ed25519 key of
 * FILE.pub is among them, then each connection signs --data bytes (different
 * for every request) until S seconds passed or C signatures were made in all.
 * Every reply must be SIGN_RESPONSE carrying an ssh-ed25519 signature of 64
 * bytes; every K-th one (default 16) and the first of every connection is
 * verified with libsodium against the key. Any other reply, a bad signature
 * or a closed connection is an error: exit status 1, and no figure printed.
 * Prints one JSON object: connections, signatures, seconds, per_second,
 * verified.
 */
#include <sodium.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

using buf = std::vector<std::uint8_t>;

[[noreturn]] void die(const std::string &why)
{
	std::fprintf(stderr, "agent_load: %s\n", why.c_str());
	std::exit(1);
}

void put_u32(buf &b, std::uint32_t v)
{
	for (int s = 24; s >= 0; s -= 8)
		b.push_back(static_cast<std::uint8_t>(v >> s));
}

void put_str(buf &b, const std::uint8_t *p, std::size_t n)
{
	put_u32(b, static_cast<std::uint32_t>(n));
	b.insert(b.end(), p, p + n);
}

struct reader {
	const buf &b;
	std::size_t pos = 0;

	std::uint32_t u32()
	{
		if (b.size() - pos < 4)
			throw std::runtime_error("reply truncated");
		std::uint32_t v = 0;
		for (int i = 0; i < 4; i++)
			v = v << 8 | b[pos++];
		return v;
	}
	buf str()
	{
		std::uint32_t n = u32();
		if (n > b.size() - pos)
			throw std::runtime_error("reply string past its end");
		buf s(b.begin() + static_cast<long>(pos), b.begin() + static_cast<long>(pos + n));
		pos += n;
		return s;
	}
};

class conn
{
public:
	explicit conn(const std::string &path)
	{
		fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		sockaddr_un a{};
		a.sun_family = AF_UNIX;
		if (fd_ < 0 || path.size() >= sizeof(a.sun_path))
			die("socket: " + path);
		std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
		if (::connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof(a)) < 0)
			die("connect " + path + ": " + std::strerror(errno));
	}
	conn(const conn &) = delete;
	conn &operator=(const conn &) = delete;
	~conn() { ::close(fd_); }

	/* Sends one framed request body, returns the reply body. */
	buf call(const buf &body)
	{
		buf frame;
		frame.reserve(body.size() + 4);
		put_u32(frame, static_cast<std::uint32_t>(body.size()));
		frame.insert(frame.end(), body.begin(), body.end());
		write_all(frame.data(), frame.size());
		std::uint8_t len[4];
		read_all(len, 4);
		std::uint32_t n = std::uint32_t{len[0]} << 24 | std::uint32_t{len[1]} << 16 |
				  std::uint32_t{len[2]} << 8 | len[3];
		if (n == 0 || n > 256 * 1024)
			throw std::runtime_error("reply length " + std::to_string(n));
		buf reply(n);
		read_all(reply.data(), n);
		return reply;
	}

private:
	void write_all(const std::uint8_t *p, std::size_t n)
	{
		while (n) {
			ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				throw std::runtime_error(std::string("send: ") + std::strerror(errno));
			p += w;
			n -= static_cast<std::size_t>(w);
		}
	}
	void read_all(std::uint8_t *p, std::size_t n)
	{
		while (n) {
			ssize_t r = ::recv(fd_, p, n, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				throw std::runtime_error("the agent closed the connection");
			if (r < 0)
				throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
			p += r;
			n -= static_cast<std::size_t>(r);
		}
	}
	int fd_ = -1;
};

/* The 32-byte key of an "ssh-ed25519 AAAA... comment" line. */
buf read_pubkey(const std::string &path)
{
	std::ifstream f(path);
	std::string type, b64;
	if (!(f >> type >> b64) || type != "ssh-ed25519")
		die(path + ": not an ssh-ed25519 public key line");
	buf blob(b64.size());
	std::size_t n = 0;
	if (sodium_base642bin(blob.data(), blob.size(), b64.data(), b64.size(), nullptr, &n,
			      nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
		die(path + ": bad base64");
	blob.resize(n);
	return blob; /* the key blob: string "ssh-ed25519", string key */
}

struct options {
	std::string socket, pubkey;
	unsigned connections = 1;
	double seconds = 0;
	std::uint64_t count = 0;
	std::size_t data = 128;
	std::uint64_t verify_every = 16;
};

std::atomic<std::uint64_t> signatures{0}, verified{0};
std::atomic<bool> stop{false}, failed{false};

void worker(const options &o, const buf &blob, const std::uint8_t *pk, unsigned id)
{
	try {
		conn c(o.socket);
		buf data(o.data);
		randombytes_buf(data.data(), data.size());
		std::memcpy(data.data(), &id, sizeof(id));
		for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); i++) {
			if (o.count) {
				std::uint64_t mine = signatures.fetch_add(1) + 1;
				if (mine > o.count) {
					signatures.fetch_sub(1);
					break;
				}
			}
			std::memcpy(data.data() + sizeof(id), &i, sizeof(i));
			buf req{13};
			put_str(req, blob.data(), blob.size());
			put_str(req, data.data(), data.size());
			put_u32(req, 0);
			buf reply = c.call(req);
			if (reply[0] != 14)
				throw std::runtime_error("reply type " + std::to_string(reply[0]) +
							 ", not SIGN_RESPONSE");
			reader r{reply, 1};
			buf sig_blob = r.str();
			if (r.pos != reply.size())
				throw std::runtime_error("bytes after the signature");
			reader s{sig_blob};
			buf type = s.str(), sig = s.str();
			if (std::string(type.begin(), type.end()) != "ssh-ed25519" ||
			    sig.size() != crypto_sign_BYTES || s.pos != sig_blob.size())
				throw std::runtime_error("not an ssh-ed25519 signature blob");
			if (i == 0 || i % o.verify_every == 0) {
				if (crypto_sign_verify_detached(sig.data(), data.data(), data.size(),
								pk) != 0)
					throw std::runtime_error("a signature does not verify");
				verified.fetch_add(1, std::memory_order_relaxed);
			}
			if (!o.count)
				signatures.fetch_add(1, std::memory_order_relaxed);
		}
	} catch (const std::exception &e) {
		std::fprintf(stderr, "agent_load: connection %u: %s\n", id, e.what());
		failed = true;
		stop = true;
	}
}

} // namespace

int main(int argc, char **argv)
{
	options o;
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		auto val = [&]() -> std::string {
			if (i + 1 >= argc)
				die(a + " needs a value");
			return argv[++i];
		};
		if (a == "--socket")
			o.socket = val();
		else if (a == "--pubkey")
			o.pubkey = val();
		else if (a == "--connections")
			o.connections = static_cast<unsigned>(std::stoul(val()));
		else if (a == "--seconds")
			o.seconds = std::stod(val());
		else if (a == "--count")
			o.count = std::stoull(val());
		else if (a == "--data")
			o.data = std::stoul(val());
		else if (a == "--verify-every")
			o.verify_every = std::stoull(val());
		else
			die("unknown argument " + a + " (see the comment at the top of agent_load.cpp)");
	}
	if (o.socket.empty() || o.pubkey.empty() || o.connections == 0 ||
	    (o.seconds <= 0) == (o.count == 0) || o.data < 16 || o.verify_every == 0)
		die("need --socket, --pubkey, --connections >= 1, one of --seconds/--count, "
		    "--data >= 16, --verify-every >= 1");
	if (sodium_init() < 0)
		die("sodium_init failed");

	buf blob = read_pubkey(o.pubkey);
	if (blob.size() != 4 + 11 + 4 + 32)
		die(o.pubkey + ": not an Ed25519 key blob");
	const std::uint8_t *pk = blob.data() + 19;

	{
		conn c(o.socket);
		buf reply = c.call(buf{11});
		if (reply[0] != 12)
			die("REQUEST_IDENTITIES answered with type " + std::to_string(reply[0]));
		reader r{reply, 1};
		bool found = false;
		for (std::uint32_t n = r.u32(); n > 0; n--) {
			buf b = r.str();
			r.str();
			found |= b == blob;
		}
		if (!found)
			die("the agent does not hold the key of " + o.pubkey);
	}

	std::vector<std::thread> threads;
	auto t0 = std::chrono::steady_clock::now();
	for (unsigned i = 0; i < o.connections; i++)
		threads.emplace_back(worker, std::cref(o), std::cref(blob), pk, i);
	if (o.seconds > 0) {
		std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
		stop = true;
	}
	for (auto &t : threads)
		t.join();
	double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	if (failed)
		return 1;
	std::printf("{\"connections\": %u, \"signatures\": %llu, \"seconds\": %.4f, "
		    "\"per_second\": %.1f, \"verified\": %llu}\n",
		    o.connections, static_cast<unsigned long long>(signatures.load()), secs,
		    static_cast<double>(signatures.load()) / secs,
		    static_cast<unsigned long long>(verified.load()));
	return 0;
}
