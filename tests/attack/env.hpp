// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What the attacks share: the target memory (in this process, or in a victim
 * child), the pattern, physical addresses and /proc/kcore, a loop block
 * device for O_DIRECT, temporary files. Setup failures throw
 * std::system_error: a failed setup is an error of the suite, never counted
 * as a refused attack.
 */
#pragma once

#include "attack.hpp"

#include <xmem/mapping.hpp>
#include <xmem/memory.hpp>
#include <xmem/unique_fd.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace xattack {

inline constexpr std::size_t pattern_len = 64;
using pattern = std::array<std::uint8_t, pattern_len>;

std::size_t page_size();
/* Bytes of every target: two pages (the mremap attack maps one, grows to two). */
std::size_t region_size();

/* Throws std::system_error(errno, @what). */
[[noreturn]] void fail(const std::string &what);
[[noreturn]] void fail(int err, const std::string &what);

/* True when @len bytes at @p contain the 64 bytes of @pat. */
bool contains(const void *p, std::size_t len, const pattern &pat);

/*
 * Fills @len bytes at @p (a multiple of 64) with 64 random bytes repeated:
 * getrandom(2) writes straight into @p and the copies are made byte by byte
 * through a volatile pointer, so the pattern never sits in this process's
 * ordinary memory (a core dump of it must not find the pattern elsewhere).
 */
void fill_pattern(void *p, std::size_t len);

/* Memory of one backend mapped as attack.hpp describes. */
class region
{
public:
	/* @cloexec false: the control keeps its fd across exec (attack exec_read). */
	explicit region(const target &t, bool cloexec = true);
	~region();
	region(const region &) = delete;
	region &operator=(const region &) = delete;

	[[nodiscard]] std::uint8_t *data() const noexcept { return data_; }
	[[nodiscard]] std::size_t size() const noexcept { return size_; }
	[[nodiscard]] int fd() const noexcept { return mem_.fd().get(); }
	/* The pattern this region holds (owner-side copy; set by fill()). */
	[[nodiscard]] const pattern &pat() const noexcept { return pat_; }
	void fill();
	/* munmap and close now. */
	void release() noexcept;

private:
	xmem::memory mem_;
	xmem::mapping lib_;	 /* exclusive backends */
	std::uint8_t *raw_ = nullptr; /* control */
	std::uint8_t *data_ = nullptr;
	std::size_t size_ = 0;
	pattern pat_{};
};

struct victim_options {
	/* Core dumps: chdir here, PR_SET_DUMPABLE, RLIMIT_CORE unlimited. */
	std::string core_dir;
};

/*
 * A child process that owns a region and waits for commands. The pattern is
 * made in the child and sent over a pipe straight from the mapping, so the
 * child holds it nowhere else.
 */
class victim
{
public:
	victim(const target &t, const victim_options &opts = {});
	~victim();
	victim(const victim &) = delete;
	victim &operator=(const victim &) = delete;

	[[nodiscard]] pid_t pid() const noexcept { return pid_; }
	[[nodiscard]] std::uint64_t addr() const noexcept { return addr_; }
	[[nodiscard]] std::size_t size() const noexcept { return size_; }
	[[nodiscard]] int fd() const noexcept { return fd_; }
	[[nodiscard]] const pattern &pat() const noexcept { return pat_; }

	/* Asks the victim about its memory: "intact", "overwritten" (0x5a bytes) or "changed". */
	std::string state();
	/* munmap, close the fd, exit; waits for it. */
	void quit();
	/* Sends @sig and returns the wait status. */
	int kill_wait(int sig);

private:
	pid_t pid_ = -1;
	int cmd_ = -1;	 /* write end: commands */
	int reply_ = -1; /* read end: replies */
	std::uint64_t addr_ = 0;
	std::size_t size_ = 0;
	int fd_ = -1;
	pattern pat_{};
};

/* The byte an attacker writes (process_vm_writev, /proc/PID/mem, POKEDATA). */
inline constexpr std::uint8_t overwrite_byte = 0x5a;

/*
 * Physical frame of @addr in @pid from /proc/PID/pagemap (bits 0-54, bit 63
 * present; Documentation/admin-guide/mm/pagemap.rst). Needs CAP_SYS_ADMIN:
 * otherwise the kernel reports PFN 0. nullopt with @why when absent.
 */
std::optional<std::uint64_t> pfn_of(pid_t pid, std::uint64_t addr, std::string &why);

/*
 * /proc/kcore (fs/proc/kcore.c): an ELF core of the kernel's address space.
 * Its PT_LOAD headers for RAM carry p_paddr = __pa(p_vaddr), so the one that
 * holds a physical address gives its direct-map address, and p_vaddr -
 * p_paddr is page_offset_base (KASLR included).
 */
class kcore
{
public:
	/* nullopt with @why: no /proc/kcore (CONFIG_PROC_KCORE) or not root. */
	static std::optional<kcore> open(std::string &why);

	struct page_read {
		bool ok = false;
		int err = 0;		 /* errno of a failed pread */
		std::uint64_t vaddr = 0; /* direct-map address read */
		std::uint64_t page_offset_base = 0;
		std::vector<std::uint8_t> bytes;
	};
	/* Reads the page at physical address @phys through the direct map. */
	page_read read_phys(std::uint64_t phys) const;

private:
	struct load {
		std::uint64_t offset, vaddr, paddr, size;
	};
	std::shared_ptr<xmem::unique_fd> fd_;
	std::vector<load> loads_;
};

/* A directory for scratch files: $TMPDIR or /tmp; removed by the destructor. */
class scratch_dir
{
public:
	scratch_dir();
	~scratch_dir();
	scratch_dir(const scratch_dir &) = delete;
	scratch_dir &operator=(const scratch_dir &) = delete;
	[[nodiscard]] const std::string &path() const noexcept { return path_; }

private:
	std::string path_;
};

/* An unlinked regular file in @dir opened O_RDWR (buffered). */
xmem::unique_fd scratch_file(const std::string &dir, std::size_t size);

/*
 * A loop block device over a scratch file, opened O_RDWR|O_DIRECT
 * (LOOP_CTL_GET_FREE, LOOP_CONFIGURE with LO_FLAGS_AUTOCLEAR: it goes away
 * with the last close). Block devices take O_DIRECT on any system with loop
 * support, whatever $TMPDIR's filesystem is (tmpfs in the VM).
 * nullopt with @why when there is no loop support or no privilege.
 */
struct loop_device {
	xmem::unique_fd backing; /* the file, buffered */
	xmem::unique_fd dev;	 /* /dev/loopN, O_DIRECT */
	std::string path;
};
std::optional<loop_device> make_loop(const std::string &dir, std::size_t size, std::string &why);

/* Hex of @len bytes, for messages. */
std::string hex(const void *p, std::size_t len);
/* "%#llx" */
std::string hexaddr(std::uint64_t v);

} // namespace xattack
