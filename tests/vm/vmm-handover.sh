#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# examples/vmm inside the test VM (the KVM kernel, scripts/kernel-build --kvm, booted
# by scripts/vm-run --host-tsc): a VMM hands its running VM to a successor process.
#
# Usage: tests/vm/vmm-handover.sh [XMEM_VMM [LINK_TEST]]
#   XMEM_VMM   default build/examples/xmem-vmm, built on the host with
#              meson -Dkvm_headers=build/kernel/out-kvm/usr/include
#   LINK_TEST  default build/kernel/kvm-selftests/x86_64/guest_memfd_link_test
#              (scripts/build-kvm-selftests), the kernel selftest of KVM_LINK_GUEST_MEMFD
#
# Fails (exit 1) when:
#   - /dev/kvm is missing;
#   - guest_memfd_link_test is missing, fails or skips, or does not print its PASS;
#   - "xmem-vmm probe" does not measure what Linux 6.12 does to a successor: the old
#     VM's and vCPU's fds fail with EIO, its guest_memfd cannot be bound to a new VM
#     (EINVAL), while the control (a guest_memfd of the new VM) binds;
#   - "xmem-vmm refuse" does not refuse every lying bundle with the expected error
#     and unchanged fd and mapping counts, or the kernel's KVM_LINK_GUEST_MEMFD does
#     not refuse another VM's guest_memfd, a memfd and unknown flags with EINVAL
#     (or is missing: ENOTTY), or refuses the honest controls, or after the control's
#     link VM A still answers or its guest_memfd links again (the link is a move: EIO);
#   - "xmem-vmm run": the guest's secret is not reported intact by the successor
#     after the handover, the linked fd is not close-on-exec, the old VMM's VM and
#     vCPU still answer ioctls after the link, or the old VMM does not exit 0 before
#     the successor ends;
#   - "xmem-vmm run --fresh" (control: the successor binds an empty guest_memfd and
#     links nothing): the guest does not report its secret lost, or the old VM does not
#     answer. A check that could not fail would pass here too.
# Kernel reports on the console fail the run through scripts/vm-run's judge.
set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
vmm=${1:-$repo/build/examples/xmem-vmm}
link_test=${2:-$repo/build/kernel/kvm-selftests/x86_64/guest_memfd_link_test}
status=0
fail() {
	echo "vmm-handover: FAIL: $*"
	status=1
}

[ -c /dev/kvm ] || fail "/dev/kvm missing: kernel without KVM, or no SVM in the vCPU"
[ -x "$vmm" ] || { fail "$vmm missing (meson -Dkvm_headers=...)"; exit 1; }

out=$(mktemp /tmp/vmm-handover.XXXXXX)

# step NAME EXPECTED_STATUS ARGS...: one xmem-vmm command; its output, prefixed
step() {
	name=$1 want=$2
	shift 2
	# The successor outlives the old VMM: wait for every writer of the pipe.
	{ "$vmm" "$@"; echo "exit=$?"; } 2>&1 | cat >"$out"
	sed "s|^|    |" "$out"
	rc=$(sed -n 's/^exit=//p' "$out")
	[ "$rc" = "$want" ] || fail "$name: exit $rc, expected $want"
}

if [ -x "$link_test" ]; then
	"$link_test" >"$out" 2>&1
	rc=$?
	sed "s|^|    |" "$out"
	[ $rc = 0 ] || fail "guest_memfd_link_test: exit $rc (4: skipped)"
	grep -q 'PASS' "$out" || fail "guest_memfd_link_test: no PASS line"
else
	fail "$link_test missing (scripts/build-kvm-selftests)"
fi

step probe 0 probe
grep -q 'probe child: PASS (EIO, EIO, EINVAL; control ok)' "$out" ||
	fail "probe: no PASS line"

step refuse 0 refuse
grep -q '^xmem-vmm\[[0-9]*\]: refuse: PASS$' "$out" || fail "refuse: no PASS line"
n=$(grep -c ': ok$' "$out")
[ "$n" -ge 12 ] || fail "refuse: $n refusals ok, expected 12 (7 bundles, 3 link errors, the source dead and its file retired after the link)"

step handover 0 run
grep -q 'successor: KVM_LINK_GUEST_MEMFD: guest_memfd fd [0-9]* of the new VM on the old inode, close-on-exec' "$out" ||
	fail "handover: the successor did not link the guest_memfd, or the link fd is not close-on-exec"
# The link is a move: the old VMM's VM and vCPU are dead after it (the control below: alive).
grep -q 'old VMM: after the handover, its VM: KVM_CHECK_EXTENSION -> Input/output error, its vCPU: KVM_GET_REGS -> Input/output error' "$out" ||
	fail "handover: the old VMM's VM is not dead after the link"
grep -q 'old VMM: successor runs the guest; exiting' "$out" ||
	fail "handover: the old VMM did not hand over and exit"
grep -q 'reports 0 of 16384 dwords differ: secret INTACT' "$out" ||
	fail "handover: the guest did not find its secret intact"
grep -q 'flags 0x4: NO_DIRECT_MAP' "$out" ||
	fail "handover: the guest_memfd was not created with GUEST_MEMFD_FLAG_NO_DIRECT_MAP"
grep -q 'successor: the old VMM (pid [0-9]*) has exited; resuming the guest' "$out" ||
	fail "handover: the successor did not see the old VMM exit before it resumed the guest"

# Control: an empty guest_memfd in the successor loses the secret, and the test sees it.
step control 0 run --fresh
grep -q 'reports 16383 of 16384 dwords differ: secret LOST' "$out" ||
	fail "control (--fresh): the guest did not report its secret lost"
grep -q 'old VMM: after the handover, its VM: KVM_CHECK_EXTENSION -> answered, its vCPU: KVM_GET_REGS -> answered' "$out" ||
	fail "control (--fresh): without a link the old VMM's VM should still answer"

rm -f "$out"
if [ $status = 0 ]; then
	echo "vmm-handover: PASS"
else
	echo "vmm-handover: FAILED"
fi
exit $status
