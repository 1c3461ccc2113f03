#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs inside the test kernel built with CONFIG_MEMFD_EXCLUSIVE off
# (scripts/kernel-build --option-off; scripts/vm-run --kernel ...). Checks that
# such a kernel behaves as one without the system call, and that libxmem then
# serves memfd_secret:
#   1. no /sys/kernel/mm/memfd_exclusive marker;
#   2. the memfd_exclusive syscall number of include/uapi/linux/memfd_exclusive.h
#      fails with ENOSYS;
#   3. libxmem's memory suite on the memfd_secret backend, which includes
#      "default options give the best backend the kernel has" and the probe.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
fail() {
	echo "option-off: FAIL: $*" >&2
	exit 1
}

[ ! -e /sys/kernel/mm/memfd_exclusive ] || fail "the sysfs marker exists with the option off"
nr=$(awk '$1 == "#define" && $2 == "__NR_memfd_exclusive" { print $3 }' \
	"$repo/include/uapi/linux/memfd_exclusive.h")
[ -n "$nr" ] || fail "no __NR_memfd_exclusive in include/uapi/linux/memfd_exclusive.h"
NR="$nr" python3 - <<'PY' || fail "memfd_exclusive(2) did not fail with ENOSYS"
import ctypes, errno, os, sys
nr = int(os.environ["NR"])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
r = libc.syscall(ctypes.c_long(nr), ctypes.c_char_p(b"off"), ctypes.c_uint(0))
e = ctypes.get_errno()
print(f"option-off: syscall {nr} (memfd_exclusive) returned {r}, errno {errno.errorcode.get(e, e)}")
sys.exit(0 if r == -1 and e == errno.ENOSYS else 1)
PY
XMEM_TEST_BACKEND=secret "$repo/build/tests/unit/test_memory" ||
	fail "libxmem's memory suite on memfd_secret"
echo "option-off: PASS"
