#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# KVM inside the test VM (the KVM kernel, scripts/kernel-build --kvm, booted by
# scripts/vm-run --host-tsc): the tree's guest_memfd and private-memory selftests and
# xmem's guest_memfd_no_direct_map_test and guest_memfd_flags_test, built by scripts/build-kvm-selftests.
#
# Usage: tests/vm/kvm-tests.sh [--no-pool] [TESTDIR]   (default: build/kernel/kvm-selftests)
#   --no-pool  the kernel was booted with memfd_exclusive.enable=0 (no unmapped pool): run
#              only guest_memfd_no_direct_map_test --no-pool, which checks that
#              GUEST_MEMFD_FLAG_NO_DIRECT_MAP is refused with EINVAL, and
#              guest_memfd_flags_test --no-pool (KVM_CAP_GUEST_MEMFD_FLAGS offers no flag)
#
# Fails (exit 1) when:
#   - the guest sees fewer or more CPUs than scripts/vm-run gave it (tests/vm/cpus.sh);
#   - /dev/kvm is missing, or kvm_amd runs without nested paging (npt: software-protected
#     VMs need it);
#   - any test binary is missing, exits non-zero, or skips (exit 4: the KVM kernel has
#     every feature these tests need, so a skip is a failure);
#   - guest_memfd_no_direct_map_test or guest_memfd_flags_test does not print its final PASS;
#   - gmem_populate (tests/bench/gmem_populate.c at 64 MiB) finds a mode whose memory did not
#     come from, or go back to, the allocator the mode names, or was not unmapped as it says;
#   - gmem_per_folio (tests/vm/gmem_per_folio.c) does not print its PASS.
# Kernel reports on the console fail the run through scripts/vm-run's judge.
set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
no_pool=0
if [ "${1-}" = --no-pool ]; then
	no_pool=1
	shift
fi
dir=${1:-$repo/build/kernel/kvm-selftests}
status=0
fail() {
	echo "kvm-tests: FAIL: $*"
	status=1
}

"$(dirname "$0")/cpus.sh" || fail "the guest does not see its ${XMEM_VM_CPUS:-2} CPUs"

[ -c /dev/kvm ] || fail "/dev/kvm missing: kernel without KVM, or no SVM in the vCPU (-cpu max?)"
npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null)
[ "$npt" = Y ] || [ "$npt" = 1 ] || fail "kvm_amd: npt is '${npt:-absent}', not on (software-protected VMs need nested paging)"
echo "kvm-tests: /dev/kvm present, kvm_amd npt=$npt, $(grep -o 'tsc_early_khz=[0-9]*' /proc/cmdline || echo 'no tsc_early_khz')"

# run NAME ARGS...: one test, its output shown with a prefix
passed=0
run() {
	name=$1
	shift
	bin=$dir/$name
	if [ ! -x "$bin" ]; then
		fail "$bin missing (scripts/build-kvm-selftests builds it)"
		return
	fi
	out=$(mktemp /tmp/kvm-test.XXXXXX)
	"$bin" "$@" >"$out" 2>&1
	rc=$?
	sed "s|^|    |" "$out"
	case $rc in
	0) echo "kvm-tests: $name $*: pass"; passed=$((passed + 1)) ;;
	4) fail "$name $*: skipped (exit 4); the KVM kernel should have what it needs" ;;
	*) fail "$name $*: exit $rc" ;;
	esac
	if { [ "$name" = x86_64/guest_memfd_no_direct_map_test ] ||
		[ "$name" = x86_64/guest_memfd_flags_test ]; } && [ $rc = 0 ] &&
		! grep -qx PASS "$out"; then
		fail "$name: exit 0 without its final PASS line"
	fi
	if [ "$name" = gmem_per_folio ] && [ $rc = 0 ] && ! grep -qx 'gmem_per_folio: PASS' "$out"; then
		fail "$name: exit 0 without its 'gmem_per_folio: PASS' line"
	fi
	rm -f "$out"
}

if [ $no_pool = 1 ]; then
	run x86_64/guest_memfd_no_direct_map_test --no-pool
	run x86_64/guest_memfd_flags_test --no-pool
	[ $status = 0 ] && echo "kvm-tests: PASS: $passed tests (no pool)" || echo "kvm-tests: FAILED"
	exit $status
fi
run guest_memfd_test
run x86_64/private_mem_kvm_exits_test
run x86_64/private_mem_conversions_test
run x86_64/private_mem_conversions_test -n 2 -m 2 -s anonymous_thp
run x86_64/guest_memfd_no_direct_map_test
run x86_64/guest_memfd_flags_test
# The benchmark's program at 64 MiB: the pool, a plain guest_memfd and the per-folio mode
# (kvm.gmem_unmap_per_folio, patch 0022) each populate (by a guest's writes, and by
# fallocate) and release, and it checks that the guest wrote every page and that the memory
# came from the allocator the mode names and went back (exit 1 otherwise).
run gmem_populate 64
# The mode's paths its review found broken (tests/vm/gmem_per_folio.c): pages freed by a lost
# filemap_add_folio() race or a failed memcg charge, and hibernation while pages are out.
run gmem_per_folio

if [ $status = 0 ]; then
	echo "kvm-tests: PASS: $passed tests"
else
	echo "kvm-tests: FAILED ($passed passed)"
fi
exit $status
