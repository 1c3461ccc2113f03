#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Kernel-side tests of memfd_exclusive(2), run INSIDE the test VM (the guest
# chroots into the host root read-only; /tmp is tmpfs; debugfs is mounted at
# /sys/kernel/debug).
#
# Usage: tests/vm/kernel-tests.sh [SELFTEST_BINARY...]
#   SELFTEST_BINARY  a kselftest built from
#                    kernel/tree/tools/testing/selftests/mm/memfd_exclusive*.c
#                    by scripts/build-selftest. Without arguments: every one,
#                    build/kernel/<name>_test for each such source (a source
#                    without its binary fails).
#
# Fails (exit 1) when:
#   - the guest sees fewer or more CPUs than scripts/vm-run gave it (tests/vm/cpus.sh);
#   - /sys/kernel/mm/memfd_exclusive is missing (kernel without the patches);
#   - the KUnit suite memfd_exclusive did not run (no debugfs results), or any
#     of its results says "not ok" or was skipped;
#   - any kselftest binary is missing, fails, skips any test, or reports no
#     passes (each binary is run, whatever the others did);
#   - the kernel log gained a BUG, WARNING, Oops, lockdep or KASAN report.
# Exit 0 when all of that passed; exit 2 on a usage error.
set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
if [ $# = 0 ]; then
	for src in "$repo"/kernel/tree/tools/testing/selftests/mm/memfd_exclusive*.c; do
		[ -f "$src" ] || continue
		name=$(basename "$src" .c)
		set -- "$@" "$repo/build/kernel/${name}_test"
	done
	if [ $# = 0 ]; then
		echo "kernel-tests: no kernel/tree/tools/testing/selftests/mm/memfd_exclusive*.c" >&2
		exit 2
	fi
fi
for selftest in "$@"; do
	case $selftest in
	-*) echo "usage: $0 [SELFTEST_BINARY...]" >&2; exit 2 ;;
	esac
done

status=0
fail() {
	echo "kernel-tests: FAIL: $*"
	status=1
}

dmesg_bad() {
	dmesg 2>/dev/null | grep -E 'BUG:|WARNING:|Oops|general protection|possible recursive locking|circular locking|KASAN:|UBSAN:|kernel BUG' || true
}
bad_before=$(dmesg_bad | wc -l)

# Both vCPUs, or no race of the tests runs in parallel.
"$(dirname "$0")/cpus.sh" || fail "the guest does not see its ${XMEM_VM_CPUS:-2} CPUs"

# The marker the library checks before issuing the system call.
if [ -d /sys/kernel/mm/memfd_exclusive ]; then
	echo "kernel-tests: sysfs marker present:" \
		"pages_in_use=$(cat /sys/kernel/mm/memfd_exclusive/pages_in_use)" \
		"regions=$(cat /sys/kernel/mm/memfd_exclusive/regions)"
else
	fail "/sys/kernel/mm/memfd_exclusive missing: kernel without memfd_exclusive"
fi

# (a) KUnit: the suite runs at boot; its results are in debugfs.
debugfs=/sys/kernel/debug
if [ ! -d $debugfs/kunit ]; then
	mount -t debugfs debugfs $debugfs 2>/dev/null
fi
found=0
for results in $debugfs/kunit/memfd_exclusive*/results; do
	[ -f "$results" ] || continue
	found=1
	echo "kernel-tests: KUnit $results:"
	sed 's/^/    /' "$results"
	if grep -q 'not ok' "$results"; then
		fail "KUnit: $(grep -c 'not ok' "$results") result(s) not ok in $results"
	elif grep -q '# SKIP' "$results"; then
		fail "KUnit: skipped case(s) in $results (memfd_exclusive disabled?)"
	elif ! grep -Eq '^ok [0-9]+ memfd_exclusive' "$results"; then
		fail "KUnit: no final 'ok' line for the suite in $results"
	fi
done
[ $found = 1 ] || fail "KUnit suite memfd_exclusive absent (no $debugfs/kunit/memfd_exclusive*/results)"

# (b) kselftests: each must pass with no skips.
run_selftest() {
	selftest=$1
	if [ ! -x "$selftest" ]; then
		fail "kselftest $selftest missing (scripts/build-selftest builds it)"
		return
	fi
	echo "kernel-tests: running $selftest"
	out=$(mktemp /tmp/mfdx-selftest.XXXXXX)
	"$selftest" >"$out" 2>&1
	rc=$?
	cat "$out"
	totals=$(grep '^# Totals:' "$out" | tail -n 1)
	name=$(basename "$selftest")
	echo "kernel-tests: $name: exit $rc, ${totals:-no totals}"
	if [ $rc -ne 0 ]; then
		fail "$name exited with $rc"
	fi
	case $totals in
	"# Totals: pass:"*" fail:0 xfail:0 xpass:0 skip:0 error:0") ;;
	*) fail "$name totals not all passing without skips: '${totals:-none}'" ;;
	esac
	case $totals in
	"# Totals: pass:0 "*) fail "$name passed no test" ;;
	esac
	rm -f "$out"
}
for selftest in "$@"; do
	run_selftest "$selftest"
done

# (c) No kernel warnings on the way.
bad_after=$(dmesg_bad | wc -l)
if [ "$bad_after" -gt "$bad_before" ]; then
	dmesg_bad | tail -n +"$((bad_before + 1))"
	fail "kernel log gained $((bad_after - bad_before)) BUG/WARNING/Oops line(s)"
fi

if [ $status = 0 ]; then
	echo "kernel-tests: PASS"
fi
exit $status
