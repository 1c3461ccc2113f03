#!/bin/sh
# Runs inside the test kernel built with CONFIG_MEMFD_EXCLUSIVE off
# (scripts/kernel-build --option-off; scripts/vm-run --kernel ...). Checks that
# such a kernel behaves as one without the system call, and that libxmem then
# serves memfd_secret:
#   1. no /sys/kernel/mm/memfd_exclusive marker;
#   2. syscall 500 (memfd_exclusive) fails with ENOSYS;
#   3. libxmem's memory suite on the memfd_secret backend, which includes
#      "default options give the best backend the kernel has" and the probe.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
fail() {
	echo "option-off: FAIL: $*" >&2
	exit 1
}

[ ! -e /sys/kernel/mm/memfd_exclusive ] || fail "the sysfs marker exists with the option off"
python3 - <<'PY' || fail "memfd_exclusive(2) did not fail with ENOSYS"
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
r = libc.syscall(ctypes.c_long(500), ctypes.c_char_p(b"off"), ctypes.c_uint(0))
e = ctypes.get_errno()
print(f"option-off: syscall 500 returned {r}, errno {errno.errorcode.get(e, e)}")
sys.exit(0 if r == -1 and e == errno.ENOSYS else 1)
PY
XMEM_TEST_BACKEND=secret "$repo/build/tests/unit/test_memory" ||
	fail "libxmem's memory suite on memfd_secret"
echo "option-off: PASS"
