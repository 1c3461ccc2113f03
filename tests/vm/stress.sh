#!/usr/bin/env bash
# In the debug kernel (KASAN, lockdep, DEBUG_VM, DEBUG_PAGEALLOC): first the KUnit
# results and the kselftest (tests/vm/kernel-tests.sh), then tests/vm/stress.c:
# threads and processes faulting, truncating, sealing, passing and closing
# memfd_exclusive memory at once for a bounded time, then checking
# that the idle pool shrinks back to its high-water mark and to nothing under
# memory pressure; then the torture run and the syscall fuzzer of
# tests/vm/torture.sh. scripts/vm-run fails the run on any kernel report (BUG,
# WARNING, KASAN, lockdep, bad page state...) in the guest log.
#
# Usage: tests/vm/stress.sh [--test-kernel] [--kernel PATH] [--torture SECONDS] [SECONDS]
#   --test-kernel  boot the test kernel instead of the debug kernel
#   --kernel PATH  boot this bzImage
#   --torture N    how long torture and sysfuzz run, each (default 45; 0: not at all)
#   SECONDS        how long the stress runs (default 20)
# Inside the guest (XMEM_VM=1) it runs the program directly.
# Exit: 0 pass, 1 fail, 77 the kernel lacks memfd_exclusive(2).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
bin=$repo/build/tests/vm/stress
pool=/sys/kernel/mm/memfd_exclusive

guest() {
	local seconds=$1 i
	# The KUnit suites (run at boot) and the kselftest, under KASAN and lockdep too.
	"$repo/tests/vm/kernel-tests.sh" "$repo/build/kernel/memfd_exclusive_test" || return
	"$bin" "$seconds" || return
	# Idle: once it has recycled what was released, the pool keeps at most the
	# high-water mark of free memory (waits up to 300 s: recycling is emulated).
	local hw
	hw=$(<"$pool/pool_high_water_kb")
	for ((i = 0; i < 3000; i++)); do
		(($(<"$pool/pages_in_use") == 0 && $(<"$pool/pool_returning_pages") == 0 &&
			$(<"$pool/pool_free_pages") * 4 <= hw)) && break
		sleep 0.1
	done
	local free_kb=$(($(<"$pool/pool_free_pages") * 4))
	echo "stress: idle pool: $free_kb kB free in $(<"$pool/pool_blocks") blocks, high-water $hw kB," \
		"$(<"$pool/pool_block_allocs") blocks allocated, $(<"$pool/pool_block_frees") freed," \
		"$(<"$pool/pool_fallback_pages") fallback pages, $(<"$pool/pool_tlb_flushes") pool TLB flushes"
	if ((free_kb > hw)); then
		echo "stress: FAIL: idle pool above the high-water mark" >&2
		return 1
	fi
	echo 2 >/proc/sys/vm/drop_caches
	if (($(<"$pool/pool_blocks") != 0)); then
		echo "stress: FAIL: $(<"$pool/pool_blocks") blocks left after the shrinker ran" >&2
		return 1
	fi
	if (($(<"$pool/pool_lost_pages") != 0)); then
		echo "stress: FAIL: $(<"$pool/pool_lost_pages") pages lost by the pool" >&2
		return 1
	fi
	echo "stress: PASS"
	((${TORTURE_SECONDS:-45} == 0)) || "$repo/tests/vm/torture.sh" "${TORTURE_SECONDS:-45}"
}

if [[ ${XMEM_VM-} == 1 ]]; then
	guest "${1:-20}"
	exit
fi

vm_args=(--debug)
seconds=20
torture=45
while (($#)); do
	case $1 in
	--test-kernel) vm_args=() ;;
	--kernel) vm_args=(--kernel "$2"); shift ;;
	--torture) torture=$2; shift ;;
	*) seconds=$1 ;;
	esac
	shift
done
mkdir -p "$(dirname "$bin")"
"$repo/scripts/build-selftest" >/dev/null
cc -O2 -Wall -Wextra -pthread -o "$bin" "$repo/tests/vm/stress.c"
for p in torture sysfuzz; do
	cc -O2 -g -Wall -Wextra -Werror -pthread -o "$(dirname "$bin")/$p" "$repo/tests/vm/$p.c"
done
# acpi=noirq: without it the debug kernel spends 40-110 s of TCG time in the ACPI
# interpreter routing the virtio PCI IRQs (_PRT) at boot, and the soft-lockup detector
# reports it (measured 2026-12-01: boot 52-120 s with soft lockups, 12 s without).
exec "$repo/scripts/vm-run" "${vm_args[@]}" --mem 2048 --timeout 900 --append acpi=noirq \
	--env "TORTURE_SECONDS=$torture" --env "TORTURE_ARGS=${TORTURE_ARGS-}" \
	--env "SYSFUZZ_ARGS=${SYSFUZZ_ARGS-}" -- \
	"$repo/tests/vm/stress.sh" "$seconds"
