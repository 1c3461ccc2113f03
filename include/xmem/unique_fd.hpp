// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * unique_fd: sole owner of one file descriptor; borrowed_fd: a non-owning
 * view for parameters.
 */
#pragma once

#include <utility>

namespace xmem {

/*
 * A move-only owner of one fd (an int >= 0, or -1 for none). The destructor
 * and reset() close the fd and keep errno as it was, so an owner going out of
 * scope on an error path does not hide the error's errno.
 */
class unique_fd
{
public:
	unique_fd() noexcept = default;
	/* Takes ownership of @fd (may be -1). */
	explicit unique_fd(int fd) noexcept : fd_(fd) {}
	unique_fd(const unique_fd &) = delete;
	unique_fd &operator=(const unique_fd &) = delete;
	unique_fd(unique_fd &&other) noexcept : fd_(other.release()) {}
	unique_fd &operator=(unique_fd &&other) noexcept
	{
		if (this != &other)
			reset(other.release());
		return *this;
	}
	~unique_fd()
	{
		if (fd_ >= 0) /* most owners are empty by the end: no call for those */
			reset();
	}

	/* The fd, or -1. Ownership stays here. */
	[[nodiscard]] int get() const noexcept { return fd_; }
	[[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
	explicit operator bool() const noexcept { return valid(); }

	/* Gives up ownership without closing; returns the fd (or -1). */
	[[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

	/*
	 * Closes the owned fd, if any, then owns @fd. close(2) is called once and
	 * never retried on EINTR: on Linux the fd is released even when close()
	 * reports EINTR, and a retry could close an fd another thread has just
	 * been given (close(2), "Dealing with error returns from close()").
	 * errno is preserved.
	 */
	void reset(int fd = -1) noexcept;

private:
	int fd_ = -1;
};

/*
 * A non-owning fd for parameters: converts from unique_fd and from int.
 * It must not outlive the owner of the fd.
 */
class borrowed_fd
{
public:
	borrowed_fd(int fd) noexcept : fd_(fd) {} // NOLINT: implicit on purpose
	borrowed_fd(const unique_fd &fd) noexcept : fd_(fd.get()) {} // NOLINT
	[[nodiscard]] int get() const noexcept { return fd_; }

private:
	int fd_;
};

/*
 * Duplicates @fd with F_DUPFD_CLOEXEC. Throws std::system_error on failure
 * (EBADF, EMFILE).
 */
unique_fd dup_cloexec(borrowed_fd fd);

} // namespace xmem
