// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Helpers for the end-to-end tests: a per-test temporary directory, running
 * programs with their output captured, and a running xmem-vault.
 */
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace e2e {

namespace fs = std::filesystem;

/* The path in environment variable @var (set by meson); the test fails when unset. */
std::string program(const char *var);

/* A fresh directory under $TMPDIR (or /tmp), removed with its contents. */
class temp_dir
{
public:
	temp_dir();
	temp_dir(const temp_dir &) = delete;
	temp_dir &operator=(const temp_dir &) = delete;
	~temp_dir();

	[[nodiscard]] const fs::path &path() const noexcept { return path_; }
	[[nodiscard]] std::string operator/(const std::string &name) const
	{
		return (path_ / name).string();
	}

private:
	fs::path path_;
};

struct result {
	int status = -1;	/* exit status, or 128 + signal */
	std::string out;
	std::string err;
};

/*
 * Runs @argv (argv[0] looked up in PATH) with stdin from /dev/null, as
 * @uid (with gid nogroup, no supplementary groups) when given; kills it
 * after 60 s.
 */
result run(const std::vector<std::string> &argv, std::optional<uid_t> uid = std::nullopt);

/* The lines of @text, without their '\n'. */
std::vector<std::string> lines(const std::string &text);

/* A running xmem-vault whose stderr is collected. */
class vault
{
public:
	/*
	 * Starts xmem-vault with @args and waits (up to 10 s) for its ready
	 * line. ready() is false when it exited instead; then status() and
	 * log() say why.
	 */
	explicit vault(const std::vector<std::string> &args);
	/*
	 * Runs @argv as is (a launcher such as systemd-socket-activate in front
	 * of the vault) and waits up to 10 s for @marker on stderr instead.
	 */
	vault(const std::vector<std::string> &argv, const std::string &marker);
	vault(const vault &) = delete;
	vault &operator=(const vault &) = delete;
	~vault();

	[[nodiscard]] bool ready() const noexcept { return ready_; }
	[[nodiscard]] pid_t pid() const noexcept { return pid_; }
	/* Sends @sig and waits for the exit; returns the status (128 + signal if killed). */
	int stop(int sig);
	/* Everything it wrote to stderr so far (collects what is waiting). */
	const std::string &log();
	/* Waits up to @ms for @text to appear in log(); true when it did. */
	bool wait_for(const std::string &text, int ms);

private:
	void start(const std::vector<std::string> &argv, const std::string &marker);
	bool read_some(int timeout_ms);
	int wait_exit();

	pid_t pid_ = -1;
	int err_fd_ = -1;
	bool ready_ = false;
	int status_ = -1;
	std::string log_;
};

/* Generates an Ed25519 key with openssl genpkey (PKCS#8 PEM) at @path. */
void openssl_key(const std::string &path);
/* Generates an Ed25519 key with ssh-keygen -N '' at @path. */
void openssh_key(const std::string &path);
/* Writes @text to @path. */
void write_text(const std::string &path, const std::string &text);

} // namespace e2e
