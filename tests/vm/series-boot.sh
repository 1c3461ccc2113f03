#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs inside a kernel built from one commit of the kernel series (scripts/series-check)
# and checks that the kernel provides what that commit should, no more and no less.
#
# Usage: tests/vm/series-boot.sh EXPECT NR
#   EXPECT  absent   no memfd_exclusive: syscall NR fails with ENOSYS and there is no
#                    /sys/kernel/mm/memfd_exclusive (before the core patch, or the option off)
#           sysfs    the core is built but the system call is not wired up yet: ENOSYS,
#                    and the sysfs directory with pages_in_use exists
#           present  the system call works: a file named "series-check" is created, grows to
#                    2 MiB with ftruncate(), is mapped and written through, its name is in
#                    /proc/self/maps, and pages_in_use counts its 512 pages while mapped
#   NR      the system call number (from the commit's syscall table)
# Exit status: 0 when every check held; 1 otherwise (the failed check is named).
set -eu

[ $# -eq 2 ] || { echo "series-boot: usage: series-boot.sh absent|sysfs|present NR" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
"$repo/tests/vm/cpus.sh"
echo "series-boot: $(uname -r) $(cut -d' ' -f4- /proc/version | cut -c1-40)"
EXPECT=$1 NR=$2 exec python3 - <<'PY'
import ctypes, errno, mmap, os, sys

expect, nr = os.environ["EXPECT"], int(os.environ["NR"])
sysfs = "/sys/kernel/mm/memfd_exclusive"
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def fail(what):
    print(f"series-boot: FAIL ({expect}): {what}", file=sys.stderr)
    sys.exit(1)


def pages_in_use():
    with open(f"{sysfs}/pages_in_use") as f:
        return int(f.read())


fd = libc.syscall(ctypes.c_long(nr), ctypes.c_char_p(b"series-check"), ctypes.c_uint(0))
err = ctypes.get_errno()
print(f"series-boot: syscall {nr} returned {fd}, errno {errno.errorcode.get(err, err) if fd < 0 else 0}; "
      f"{sysfs} {'exists' if os.path.isdir(sysfs) else 'absent'}")
if expect in ("absent", "sysfs"):
    if fd != -1 or err != errno.ENOSYS:
        fail(f"syscall {nr} should fail with ENOSYS")
    if expect == "absent" and os.path.exists(sysfs):
        fail(f"{sysfs} exists")
    if expect == "sysfs":
        pages_in_use()  # raises (and fails the run) when the file is missing
elif expect == "present":
    if fd < 0:
        fail(f"syscall {nr} failed: {os.strerror(err)}")
    before = pages_in_use()
    size = 2 << 20
    os.ftruncate(fd, size)
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    for off in range(0, size, 4096):
        m[off:off + 8] = off.to_bytes(8, "little")
    if any(int.from_bytes(m[off:off + 8], "little") != off for off in range(0, size, 4096)):
        fail("the mapping did not read back what was written")
    with open("/proc/self/maps") as f:
        if "/memfd_exclusive:series-check" not in f.read():
            fail("the mapping is not named /memfd_exclusive:series-check in /proc/self/maps")
    during = pages_in_use()
    if during - before < size // 4096:
        fail(f"pages_in_use went from {before} to {during}, expected +{size // 4096}")
    m.close()
    os.close(fd)
    print(f"series-boot: pages_in_use {before} -> {during} while mapped")
else:
    fail(f"unknown EXPECT '{expect}'")
print(f"series-boot: PASS ({expect})")
PY
