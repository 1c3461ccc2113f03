#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# In the debug kernel (KASAN, lockdep, DEBUG_VM, DEBUG_PAGEALLOC): first the KUnit
# results and the kselftest (tests/vm/kernel-tests.sh), then tests/vm/stress.c:
# threads and processes faulting, truncating, sealing, passing and closing
# memfd_exclusive memory at once for a bounded time, then tests/vm/pool_repro.c
# (two processes faulting and truncating 64 MiB files under drop_caches), then
# checking that the idle pool shrinks back to its high-water mark with every page
# free, to nothing under memory pressure, and that hibernation is refused exactly
# while pages are out of the direct map; then the torture run and the syscall fuzzer
# of tests/vm/torture.sh. scripts/vm-run fails the run on any kernel report (BUG,
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
repro=$repo/build/tests/vm/pool_repro
pool=/sys/kernel/mm/memfd_exclusive

guest() {
	local seconds=$1 i
	# The races need both vCPUs (tests/vm/kernel-tests.sh checks it again).
	"$repo/tests/vm/cpus.sh" || return
	# The KUnit suites (run at boot) and the kselftest, under KASAN and lockdep too.
	"$repo/tests/vm/kernel-tests.sh" "$repo/build/kernel/memfd_exclusive_test" || return
	"$bin" "$seconds" || return
	# The KASAN reproducer of issue 13: two processes faulting and truncating 64 MiB
	# files while a third writes 2 to drop_caches (the kernel log judges it).
	"$repro" 2 || return
	# Idle: once the last references are gone, the pool keeps at most the
	# high-water mark of free unmapped memory (waits up to 300 s: emulated time).
	local hw
	hw=$(<"$pool/pool_high_water_kb")
	# Per-CPU LRU batches may hold the last references of freed pages: compaction
	# drains them on every CPU first (and its free scanner must skip the pool).
	for ((i = 0; i < 3000; i++)); do
		((i % 50 == 0)) && echo 1 >/proc/sys/vm/compact_memory
		(($(<"$pool/pages_in_use") == 0 && $(<"$pool/pool_free_pages") * 4 <= hw &&
			$(<"$pool/pool_free_pages") == $(<"$pool/pool_blocks") * 512)) && break
		sleep 0.1
	done
	local free_kb=$(($(<"$pool/pool_free_pages") * 4)) blocks
	blocks=$(<"$pool/pool_blocks")
	echo "stress: idle pool: $free_kb kB free in $blocks pageblocks, high-water $hw kB," \
		"$(<"$pool/pool_block_allocs") pageblocks allocated, $(<"$pool/pool_block_frees") freed," \
		"$(<"$pool/pool_tlb_flushes") pool TLB flushes"
	if ((free_kb > hw)); then
		echo "stress: FAIL: idle pool above the high-water mark" >&2
		return 1
	fi
	# No file is left: every page of every unmapped pageblock is free.
	if ((free_kb != blocks * 2048)); then
		echo "stress: FAIL: $((blocks * 512 - free_kb / 4)) pages of idle pageblocks not free" >&2
		return 1
	fi
	echo 2 >/proc/sys/vm/drop_caches
	if (($(<"$pool/pool_blocks") != 0 || $(<"$pool/pool_free_pages") != 0)); then
		echo "stress: FAIL: $(<"$pool/pool_blocks") pageblocks ($(<"$pool/pool_free_pages") free pages)" \
			"left after the shrinker ran" >&2
		return 1
	fi
	if (($(<"$pool/pool_block_allocs") != $(<"$pool/pool_block_frees"))); then
		echo "stress: FAIL: pageblocks allocated and freed differ" >&2
		return 1
	fi
	# (memfd_exclusive_lifetime's hib tests check hibernation with pages in use,
	# pinned, and idle in the pool.)
	if ! grep -qw disk /sys/power/state; then
		echo "stress: FAIL: no hibernation although no page is out of the direct map" >&2
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
cc -O2 -Wall -Wextra -o "$repro" "$repo/tests/vm/pool_repro.c"
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
