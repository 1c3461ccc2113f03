#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Smoke test of the test VM: run inside it with `scripts/vm-run -- tests/vm/smoke.sh`.
# Checks that the guest kernel has every feature the xmem tests rely on. A missing feature is
# a failure naming it, never a skip: the test kernel's config promises all of them.
set -euo pipefail

python=/usr/bin/python3
[[ -x $python ]] || python=python3
passed=0
failed=0

# check NAME COMMAND...: run COMMAND, report NAME as ok or FAIL (with COMMAND's stderr).
check() {
	local name=$1 err
	shift
	if err=$("$@" 2>&1 >/dev/null); then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name${err:+: $err}"
		failed=$((failed + 1))
	fi
}

in_vm() {
	[[ ${XMEM_VM:-} == 1 ]] || { echo "XMEM_VM is not 1" >&2; return 1; }
	[[ $(cat /proc/sys/kernel/hostname) == xmem-vm ]] || { echo "hostname is not xmem-vm" >&2; return 1; }
}

kcore() {
	[[ $(head -c 4 /proc/kcore | od -An -c | tr -d ' ') == '177ELF' ]] ||
		{ echo "/proc/kcore does not start with an ELF header" >&2; return 1; }
}

pagemap() {
	[[ $(dd if=/proc/self/pagemap bs=8 count=1 status=none | wc -c) == 8 ]] ||
		{ echo "cannot read an entry of /proc/self/pagemap" >&2; return 1; }
}

# Python snippets use only ctypes and the standard library; each raises on failure.
py() {
	"$python" -c "$1"
}

process_vm_readv='
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
src = ctypes.create_string_buffer(b"xmem-process-vm-readv", 32)
dst = ctypes.create_string_buffer(32)
local = iovec(ctypes.addressof(dst), 32)
remote = iovec(ctypes.addressof(src), 32)
n = libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
if n != 32:
    raise OSError(ctypes.get_errno(), "process_vm_readv: " + os.strerror(ctypes.get_errno()))
assert dst.value == b"xmem-process-vm-readv", dst.value
'

io_uring='
import ctypes, os
assert open("/proc/sys/kernel/io_uring_disabled").read().strip() == "0", "io_uring_disabled != 0"
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)  # struct io_uring_params
fd = libc.syscall(425, 4, params)  # io_uring_setup(4 entries)
if fd < 0:
    raise OSError(ctypes.get_errno(), "io_uring_setup: " + os.strerror(ctypes.get_errno()))
os.close(fd)
'

unix_sockets='
import os, socket
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
r, w = os.pipe()
socket.send_fds(a, [b"xmem"], [w])
msg, fds, _, _ = socket.recv_fds(b, 16, 1)
assert msg == b"xmem" and len(fds) == 1, (msg, fds)
os.write(fds[0], b"x")
assert os.read(r, 1) == b"x"
'

memfd_secret='
import ctypes, mmap, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.syscall(447, 0)  # memfd_secret(0)
if fd < 0:
    raise OSError(ctypes.get_errno(), "memfd_secret: " + os.strerror(ctypes.get_errno()))
os.ftruncate(fd, 4096)
m = mmap.mmap(fd, 4096)
m[:4] = b"xmem"
assert m[:4] == b"xmem"
'

check "inside the xmem VM" in_vm
check "/proc/kcore" kcore
check "/proc/self/pagemap" pagemap
check "process_vm_readv (CROSS_MEMORY_ATTACH)" py "$process_vm_readv"
check "io_uring" py "$io_uring"
check "Unix sockets with SCM_RIGHTS" py "$unix_sockets"
check "memfd_secret (SECRETMEM)" py "$memfd_secret"
check "/dev/mem (DEVMEM)" test -c /dev/mem
check "debugfs: /sys/kernel/debug/kunit (KUNIT_DEBUGFS)" test -d /sys/kernel/debug/kunit
check "function profiler (FUNCTION_PROFILER)" test -f /sys/kernel/tracing/function_profile_enabled
check "memory cgroup (MEMCG)" grep -qw memory /sys/fs/cgroup/cgroup.controllers
check "core dumps (COREDUMP)" test -f /proc/sys/kernel/core_pattern
check "loop devices (BLK_DEV_LOOP)" test -c /dev/loop-control
check "tmpfs on /tmp" touch /tmp/xmem-smoke

echo "smoke: $passed passed, $failed failed"
((failed == 0))
