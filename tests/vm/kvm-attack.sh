#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The attacks on a KVM guest's memory (tests/attack/vm_attack.cpp, docs/attacks.md "Guest
# memory") inside the KVM kernel (scripts/kernel-build --kvm, booted by scripts/vm-run
# --host-tsc --mem 1024), then the same suite with the flag taken away, which must fail.
#
# Usage: tests/vm/kvm-attack.sh [XMEM_VM_ATTACK]   (default build/tests/attack/xmem-vm-attack,
#        built with meson -Dkvm_headers=build/kernel/out-kvm/usr/include)
#
# Fails (exit 1) when:
#   - /dev/kvm is missing or the program is;
#   - the suite does not exit 0 with its "vm-attack: PASS" line: an attack on guest_memfd with
#     GUEST_MEMFD_FLAG_NO_DIRECT_MAP read the pattern (the vCPU takeover row excepted: a known
#     limit of software-protected VMs), a control on ordinary memory failed, or the plain
#     guest_memfd did not show what it should;
#   - the suite run with --nodm-flags 0 (a plain guest_memfd in the flag's column) does not
#     exit 1 with exactly the rows the flag is for failing there: kcore_scan, dev_mem_scan,
#     dev_mem_mmap_scan, pidfd_getfd_link, kcore_after_release (less any the suite reports
#     n/a on this kernel, with the reason). A suite that could not see the pattern would
#     pass without the flag too. An INCONCLUSIVE cell (kcore_after_release: every page of
#     the pattern reused by the page allocator, three times) is a failure in both runs and
#     never one of the rows expected to fail.
# Kernel reports on the console fail the run through scripts/vm-run's judge.
set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
exe=${1:-$repo/build/tests/attack/xmem-vm-attack}
status=0
fail() {
	echo "kvm-attack: FAIL: $*"
	status=1
}
[ -c /dev/kvm ] || { fail "/dev/kvm missing (the KVM kernel, -cpu max?)"; exit 1; }
[ -x "$exe" ] || { fail "$exe missing (meson -Dkvm_headers=...)"; exit 1; }

out=$(mktemp /tmp/kvm-attack.XXXXXX)
"$exe" >"$out" 2>"$out.err"
rc=$?
cat "$out"
sed 's/^/    /' "$out.err"
[ $rc = 0 ] || fail "the suite exited $rc"
grep -qx 'vm-attack: PASS' "$out" || fail "no 'vm-attack: PASS' line"

echo "kvm-attack: the same without the flag (--nodm-flags 0): must fail where the flag protects"
"$exe" --nodm-flags 0 >"$out" 2>"$out.err"
rc=$?
sed 's/^/    /' "$out" "$out.err"
[ $rc = 1 ] || fail "--nodm-flags 0: exit $rc, expected 1"
got=$(sed -n 's|^\([a-z_]*\)/nodm: FAIL.*|\1|p' "$out.err" | sort | tr '\n' ' ')
# Rows this kernel cannot show are n/a (printed with the reason), not expected to fail.
na=$(sed -n 's|^\([a-z_]*\)/nodm: n/a.*|\1|p' "$out.err")
want=$(printf '%s\n' kcore_scan dev_mem_scan dev_mem_mmap_scan pidfd_getfd_link \
	kcore_after_release | grep -vxF "${na:-//}" | sort | tr '\n' ' ')
[ "$got" = "$want" ] || fail "--nodm-flags 0: rows failed: '$got', expected '$want'"
others=$(grep -c '/\(gmem\|control\): \(FAIL\|INCONCLUSIVE\)' "$out.err")
[ "$others" = 0 ] || fail "--nodm-flags 0: $others cells of the other columns failed"
rm -f "$out" "$out.err"

if [ $status = 0 ]; then
	echo "kvm-attack: PASS"
else
	echo "kvm-attack: FAILED"
fi
exit $status
