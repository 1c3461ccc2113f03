#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Hostile-user tests for the debug kernel (KASAN, lockdep, DEBUG_VM): tests/vm/torture.c (fault,
# truncate, seal, mremap, madvise, fork, O_PATH reopen, close, compaction, drop_caches, soft
# offline and memory.max pressure at once) and then tests/vm/sysfuzz.c (a seeded syscall fuzzer
# with memfd_exclusive, memfd_secret and memfd_create fds in its pools, run as nobody), each
# for SECONDS, then a check that every exclusive page came back (pages_in_use 0, no lost pages).
# Both print their seed; each one's kernel log watcher and scripts/vm-run fail the run on any
# kernel report line.
#
# Usage: tests/vm/torture.sh [--test-kernel] [--kernel PATH] [SECONDS]
#   --test-kernel  boot the test kernel instead of the debug kernel
#   --kernel PATH  boot this bzImage (e.g. /work/kernels/today-debug.bzImage)
#   SECONDS        how long each of the two programs runs (default 45)
#   TORTURE_ARGS, SYSFUZZ_ARGS (environment): more arguments, e.g. --seed S or --skip ...
# Inside the guest (XMEM_VM=1) it runs the programs directly; tests/vm/stress.sh runs it there
# after the stress test (the debug-kernel step of scripts/test).
# Never run the programs on the host as root outside a VM: they write drop_caches, soft-offline
# pages and make cgroups there (a host trial: as nobody in a PID namespace and a memory cgroup).
# Exit: 0 pass, 1 fail, 77 the kernel lacks memfd_exclusive(2).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
bin=$repo/build/tests/vm
pool=/sys/kernel/mm/memfd_exclusive

build() {
	mkdir -p "$bin"
	local p
	for p in torture sysfuzz; do
		cc -O2 -g -Wall -Wextra -Werror -pthread -o "$bin/$p" "$repo/tests/vm/$p.c"
	done
}

guest() {
	local seconds=$1 rc=0 i
	[[ -d $pool ]] || { echo "torture: SKIP, no $pool"; return 77; }
	# The first failure ends the run: after an oops the kernel may hold locks of a dead
	# task, and what runs next (or reading the pool's sysfs files) can hang until the
	# VM's timeout; its reports would mostly be fallout of the first.
	# shellcheck disable=SC2086 # word splitting of the extra arguments is wanted
	"$bin/torture" --seconds "$seconds" ${TORTURE_ARGS-} || return 1
	# shellcheck disable=SC2086
	"$bin/sysfuzz" --seconds "$seconds" ${SYSFUZZ_ARGS-} || return 1
	# Every page back once all fds and mappings are gone (recycling is emulated: up to 120 s).
	for ((i = 0; i < 1200; i++)); do
		(($(<"$pool/pages_in_use") == 0)) && break
		sleep 0.1
	done
	# With no user left every page of every unmapped pageblock is free, but for the
	# pages soft offline took for good (counted in HardwareCorrupted, with any other
	# poisoned page): more pages missing than that were lost by the pool.
	local blocks free corrupt missing
	blocks=$(<"$pool/pool_blocks")
	free=$(<"$pool/pool_free_pages")
	corrupt=$(awk '/^HardwareCorrupted:/ { print $2 / 4 }' /proc/meminfo)
	missing=$((blocks * 512 - free))
	echo "torture: after both: pages_in_use $(<"$pool/pages_in_use"), regions $(<"$pool/regions")," \
		"$blocks blocks, $free free pages, $missing not free, ${corrupt:-?} pages poisoned"
	if (($(<"$pool/pages_in_use") != 0)); then
		echo "torture: FAIL: $(<"$pool/pages_in_use") exclusive pages still in use with no user left" >&2
		rc=1
	fi
	if (($(<"$pool/regions") != 0)); then
		echo "torture: FAIL: $(<"$pool/regions") regions still exist with no user left" >&2
		rc=1
	fi
	if [[ -z $corrupt ]] || ((missing > corrupt)); then
		echo "torture: FAIL: $missing pages of unmapped pageblocks neither free nor poisoned" \
			"(${corrupt:-no HardwareCorrupted line})" >&2
		rc=1
	fi
	if ((rc == 0)); then
		echo "torture: PASS (torture and sysfuzz)"
	fi
	return "$rc"
}

if [[ ${XMEM_VM-} == 1 ]]; then
	guest "${1:-45}"
	exit
fi

vm_args=(--debug)
seconds=45
while (($#)); do
	case $1 in
	--test-kernel) vm_args=() ;;
	--kernel) vm_args=(--kernel "$2"); shift ;;
	*) seconds=$1 ;;
	esac
	shift
done
build
# acpi=noirq: without it the debug kernel spends 40-110 s of TCG time in the ACPI
# interpreter routing the virtio PCI IRQs (_PRT) at boot, and the soft-lockup detector
# reports it (measured 2026-12-01: boot 52-120 s with soft lockups, 12 s without).
exec "$repo/scripts/vm-run" "${vm_args[@]}" --mem 2048 --timeout 900 --append acpi=noirq \
	--env "TORTURE_ARGS=${TORTURE_ARGS-}" --env "SYSFUZZ_ARGS=${SYSFUZZ_ARGS-}" -- \
	"$repo/tests/vm/torture.sh" "$seconds"
