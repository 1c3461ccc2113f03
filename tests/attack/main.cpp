// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xmem-attack-suite: runs the attacks of attacks.cpp against memfd_exclusive,
 * memfd_secret and the memfd_create control.
 *
 *   xmem-attack-suite --attack NAME --backend exclusive|secret|control
 *	one cell, as a meson test: exit 0 pass, 1 fail (an attack on an
 *	exclusive backend succeeded, a control failed, or the setup failed),
 *	77 skip (backend absent, or the attack n/a here; the reason is printed)
 *   xmem-attack-suite --all [--backends LIST] [--json FILE] [--label TEXT]
 *	every cell; prints the table as markdown, writes it as JSON; exit 1
 *	when any cell fails
 *   xmem-attack-suite --list            attack names, one a line
 *   xmem-attack-suite --check-list NAME...  exit 1 unless NAMEs are exactly the attacks
 *
 * Each cell runs in a child process of its own, so a crash in one is an
 * error of that cell only.
 */
#include "attack.hpp"

#include <cerrno>
#include <fcntl.h>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace xattack {
namespace {

struct column {
	const char *name; /* command line */
	xmem::backend backend;
};

constexpr column columns[] = {
	{"exclusive", xmem::backend::exclusive},
	{"secret", xmem::backend::secret},
	{"control", xmem::backend::ordinary},
};

struct cell {
	const attack *a;
	const column *c;
	std::string status; /* refused, allowed, allowed (by design), control succeeded,
			       control FAILED, n/a, error */
	std::string detail;
	int exit_code; /* 0 pass, 1 fail, 77 skip */
};

/* Runs @a on @t in a child; the result comes back over a pipe. */
result run_isolated(const attack &a, const target &t)
{
	int p[2];
	if (::pipe2(p, O_CLOEXEC) < 0)
		return {outcome::na, "pipe2: " + errname(errno)}; /* reported as error below */
	std::fflush(nullptr);
	pid_t pid = ::fork();
	if (pid == 0) {
		::close(p[0]);
		std::string msg;
		try {
			result r = a.run(t);
			msg = std::string(1, "bsn"[static_cast<int>(r.out)]) +
			      (r.by_design ? "d" : r.known_gap ? "g" : "-") + r.detail;
		} catch (const std::exception &e) {
			msg = std::string("e-") + e.what();
		}
		const char *b = msg.data();
		std::size_t n = msg.size();
		while (n) {
			ssize_t w = ::write(p[1], b, n);
			if (w <= 0)
				_exit(1);
			b += w;
			n -= static_cast<std::size_t>(w);
		}
		_exit(0);
	}
	::close(p[1]);
	std::string msg;
	char buf[1024];
	ssize_t n;
	while ((n = ::read(p[0], buf, sizeof(buf))) > 0)
		msg.append(buf, static_cast<std::size_t>(n));
	::close(p[0]);
	int st = 0;
	::waitpid(pid, &st, 0);
	if (msg.size() < 2) {
		std::string how = WIFSIGNALED(st) ? std::string("killed by ") +
							    sigabbrev_np(WTERMSIG(st))
						  : "exit " + std::to_string(WEXITSTATUS(st));
		throw std::runtime_error("attack process died (" + how + ")");
	}
	if (msg[0] == 'e')
		throw std::runtime_error(msg.substr(2));
	result r;
	r.out = msg[0] == 'b' ? outcome::blocked : msg[0] == 's' ? outcome::succeeded : outcome::na;
	r.by_design = msg[1] == 'd';
	r.known_gap = msg[1] == 'g';
	r.detail = msg.substr(2);
	return r;
}

bool available(xmem::backend b, std::string &why)
{
	auto ks = xmem::probe_kernel();
	if (b == xmem::backend::exclusive && !ks.exclusive) {
		why = "memfd_exclusive absent on this kernel (no /sys/kernel/mm/memfd_exclusive)";
		return false;
	}
	if (b == xmem::backend::secret && !ks.secret) {
		why = "memfd_secret absent (ENOSYS: CONFIG_SECRETMEM off or secretmem.enable=0)";
		return false;
	}
	return true;
}

cell run_cell(const attack &a, const column &c)
{
	cell out{&a, &c, "", "", 0};
	std::string why;
	if (!available(c.backend, why)) {
		out.status = "n/a";
		out.detail = why;
		out.exit_code = 77;
		return out;
	}
	target t{c.backend};
	result r;
	try {
		r = run_isolated(a, t);
	} catch (const std::exception &e) {
		out.status = "error";
		out.detail = e.what();
		out.exit_code = 1;
		return out;
	}
	out.detail = r.detail;
	if (r.out == outcome::na) {
		out.status = "n/a";
		out.exit_code = 77;
	} else if (t.control()) {
		bool ok = r.out == outcome::succeeded;
		out.status = ok ? "control succeeded" : "control FAILED";
		out.exit_code = ok ? 0 : 1;
	} else if (r.out == outcome::blocked) {
		out.status = "refused";
	} else if (r.by_design) {
		out.status = "allowed (by design)";
	} else if (r.known_gap) {
		out.status = "allowed (known gap of stock memfd_secret)";
	} else {
		out.status = "allowed";
		out.exit_code = 1;
	}
	return out;
}

std::string json_escape(const std::string &s)
{
	std::string o;
	for (unsigned char ch : s) {
		if (ch == '"' || ch == '\\') {
			o += '\\';
			o += static_cast<char>(ch);
		} else if (ch < 0x20) {
			char b[8];
			std::snprintf(b, sizeof(b), "\\u%04x", ch);
			o += b;
		} else {
			o += static_cast<char>(ch);
		}
	}
	return o;
}

std::string md_escape(const std::string &s)
{
	std::string o;
	for (char ch : s) {
		if (ch == '|')
			o += '\\';
		o += ch;
	}
	return o;
}

std::string kernel_release()
{
	struct utsname u;
	return ::uname(&u) == 0 ? u.release : "unknown";
}

int run_all(std::vector<const column *> cols, const std::string &json_path,
	    const std::string &label)
{
	/* A backend the kernel lacks gets no column, but a line saying so. */
	std::vector<std::string> absent;
	std::erase_if(cols, [&](const column *c) {
		std::string why;
		if (available(c->backend, why))
			return false;
		absent.push_back(why);
		return true;
	});
	std::vector<cell> cells;
	for (const attack &a : attacks())
		for (const column *c : cols) {
			cells.push_back(run_cell(a, *c));
			const cell &x = cells.back();
			std::fprintf(stderr, "%-26s %-9s %-20s %s\n", a.name, c->name,
				     x.status.c_str(), x.detail.c_str());
		}

	std::string kr = kernel_release();
	std::printf("Attack suite, %s, kernel %s, uid %d.\n\n", label.c_str(), kr.c_str(),
		    static_cast<int>(::getuid()));
	for (const std::string &why : absent)
		std::printf("Not in the table: %s.\n\n", why.c_str());
	std::printf("| attack |");
	for (const column *c : cols)
		std::printf(c->backend == xmem::backend::ordinary ? " control (%s) |" : " %s |",
			    std::string(to_string(c->backend)).c_str());
	std::printf("\n|---|");
	for (std::size_t i = 0; i < cols.size(); i++)
		std::printf("---|");
	std::printf("\n");
	std::size_t i = 0;
	int failed = 0;
	for (const attack &a : attacks()) {
		std::printf("| %s (`%s`) |", md_escape(a.title).c_str(), a.name);
		for (std::size_t j = 0; j < cols.size(); j++, i++) {
			const cell &x = cells[i];
			failed += x.exit_code == 1;
			std::printf(" **%s**: %s |", x.status.c_str(), md_escape(x.detail).c_str());
		}
		std::printf("\n");
	}
	std::printf("\n%d failing cell(s).\n", failed);

	if (!json_path.empty()) {
		std::ofstream f(json_path);
		f << "{\n  \"label\": \"" << json_escape(label) << "\",\n  \"kernel\": \""
		  << json_escape(kr) << "\",\n  \"uid\": " << ::getuid()
		  << ",\n  \"failed\": " << failed << ",\n  \"absent\": [";
		for (std::size_t k = 0; k < absent.size(); k++)
			f << (k ? ", " : "") << "\"" << json_escape(absent[k]) << "\"";
		f << "],\n  \"cells\": [\n";
		for (std::size_t k = 0; k < cells.size(); k++) {
			const cell &x = cells[k];
			f << "    {\"attack\": \"" << x.a->name << "\", \"title\": \""
			  << json_escape(x.a->title) << "\", \"backend\": \""
			  << to_string(x.c->backend) << "\", \"status\": \"" << x.status
			  << "\", \"detail\": \"" << json_escape(x.detail)
			  << "\", \"test\": \""
			  << (x.exit_code == 0 ? "pass" : x.exit_code == 77 ? "skip" : "fail")
			  << "\"}" << (k + 1 < cells.size() ? "," : "") << "\n";
		}
		f << "  ]\n}\n";
		if (!f)
			std::fprintf(stderr, "writing %s failed\n", json_path.c_str());
	}
	return failed ? 1 : 0;
}

const column *find_column(const std::string &name)
{
	for (const column &c : columns)
		if (name == c.name)
			return &c;
	return nullptr;
}

const attack *find_attack(const std::string &name)
{
	for (const attack &a : attacks())
		if (name == a.name)
			return &a;
	return nullptr;
}

int usage()
{
	std::fprintf(stderr,
		     "usage: xmem-attack-suite --attack NAME --backend exclusive|secret|control\n"
		     "       xmem-attack-suite --all [--backends a,b] [--json FILE] [--label TEXT]\n"
		     "       xmem-attack-suite --list | --check-list NAME...\n");
	return 2;
}

} // namespace
} // namespace xattack

int main(int argc, char **argv)
{
	using namespace xattack;
	std::vector<std::string> args(argv + 1, argv + argc);
	if (!args.empty() && args[0] == "--exec-probe")
		return exec_probe(argc, argv);
	if (!args.empty() && args[0] == "--list") {
		for (const attack &a : attacks())
			std::printf("%s\n", a.name);
		return 0;
	}
	if (!args.empty() && args[0] == "--check-list") {
		std::vector<std::string> have;
		for (const attack &a : attacks())
			have.emplace_back(a.name);
		std::vector<std::string> want(args.begin() + 1, args.end());
		if (have == want)
			return 0;
		std::fprintf(stderr, "tests/attack/meson.build lists other attacks than attacks.cpp\n");
		return 1;
	}

	std::string attack_name, backend_name, json, label = "host";
	std::string backends = "exclusive,secret,control";
	bool all = false;
	for (std::size_t i = 0; i < args.size(); i++) {
		auto value = [&](std::string &out) {
			if (i + 1 >= args.size())
				return false;
			out = args[++i];
			return true;
		};
		if (args[i] == "--all")
			all = true;
		else if (args[i] == "--attack" ? !value(attack_name)
			 : args[i] == "--backend" ? !value(backend_name)
			 : args[i] == "--backends" ? !value(backends)
			 : args[i] == "--json" ? !value(json)
			 : args[i] == "--label" ? !value(label)
						: true)
			return usage();
	}

	if (all) {
		std::vector<const column *> cols;
		std::size_t pos = 0;
		while (pos <= backends.size()) {
			std::size_t comma = backends.find(',', pos);
			std::string name = backends.substr(pos, comma - pos);
			const column *c = find_column(name);
			if (!c)
				return usage();
			cols.push_back(c);
			if (comma == std::string::npos)
				break;
			pos = comma + 1;
		}
		return run_all(cols, json, label);
	}

	const attack *a = find_attack(attack_name);
	const column *c = find_column(backend_name);
	if (!a || !c)
		return usage();
	cell x = run_cell(*a, *c);
	std::printf("%s on %s: %s: %s\n", a->name, std::string(to_string(c->backend)).c_str(),
		    x.status.c_str(), x.detail.c_str());
	return x.exit_code;
}
