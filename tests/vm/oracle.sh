#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The test of scripts/vm-run's oracle: a kernel report fails the run whatever the log volume.
#
# Usage: tests/vm/oracle.sh [--debug] [--kernel PATH] [CASE...]
#   (default) the test kernel; --debug the debug kernel; --kernel PATH that bzImage
#             (a debug kernel when --debug is given too or its build tree's .config has
#             CONFIG_KASAN=y: then the debug cases run)
#   CASE...   run only these VM cases (default: all that apply to the kernel)
#
# 1. On the host: every report class vm-run claims to catch (BUG, KASAN, WARNING, Oops,
#    lockdep, RCU stall, hung task, soft lockup, refcount_t, list corruption, panic, KUnit
#    not ok) matches its report patterns (scripts/lib/common.sh), and ordinary boot and
#    test lines do not.
# 2. In the VM, each case a separate scripts/vm-run:
#    control  floods the kernel log with 4 times its ring buffer at KERN_INFO, checks that
#             the guest sees XMEM_VM_CPUS CPUs (tests/vm/cpus.sh, which must also fail when
#             told to expect another count) and that the clocksource is the HPET: the run
#             must pass, with none of the flood on the console;
#    warn     floods, provokes a WARN with LKDTM, floods again: the run must fail with
#             status 1 and quote the WARNING line. On the test kernel the command runs to
#             its end and the WARNING is gone from the final dmesg (the ring buffer
#             overflowed): only the console judge can catch it. On the debug kernel
#             (panic_on_warn=1) the guest panics at the WARN and the command never ends.
#    debug kernel only, each must fail with status 1, quote the report and a panic:
#    kasan    LKDTM WRITE_AFTER_FREE: BUG: KASAN: slab-use-after-free (panic_on_warn panics
#             first, kasan.fault=panic would otherwise)
#    lockdep  LKDTM SPINLOCKUP once: lockdep's "WARNING: lock held when returning to user
#             space" (a lockdep report cannot panic, a KERN_WARNING line the console shows
#             at loglevel=5 only); the leaked preempt count then panics the guest
#             ("scheduling while atomic", panic_on_warn)
#    list     LKDTM CORRUPT_LIST_ADD: list_add corruption, kernel BUG (BUG_ON_DATA_CORRUPTION,
#             oops=panic)
#    hung     LKDTM HUNG_TASK with hung_task_timeout_secs=2: INFO: task blocked (hung_task_panic)
#    lockup   LKDTM SOFTLOCKUP with watchdog_thresh=1: BUG: soft lockup (softlockup_panic)
#    rcu      LKDTM SOFTLOCKUP with the lockup detector off and a 3 s RCU stall timeout:
#             an RCU CPU stall (panic_on_rcu_stall)
# Logs of each case: build/oracle/CASE.{out,err,console,dmesg}.
# Exit: 0 when every case behaved, 1 otherwise. Inside the guest (XMEM_VM=1): --guest CASE.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
lkdtm=/sys/kernel/debug/provoke-crash/DIRECT

# ---- guest side ----

# flood TAG: KERN_INFO records of 512 bytes written to /dev/kmsg until the record written
# first has left the kernel's ring buffer (checked every 128 records), then 3 times as many
# again: the ring overflows 4 times whatever its size.
flood() {
	local n=0 gone=0 i pad
	# (not dmesg | grep -q: with pipefail, dmesg's SIGPIPE would fail the test)
	(($(dmesg | wc -l) > 0)) || { echo "oracle: dmesg reads nothing" >&2; return 1; }
	pad=$(printf '%0480d' 0)
	echo on >/proc/sys/kernel/printk_devkmsg # one writer, no rate limit
	exec 3>/dev/kmsg
	echo "<6>oracle: $1 flood begins" >&3
	while ((gone == 0 || n < 4 * gone)); do
		for ((i = 0; i < 128; i++, n++)); do
			printf '<6>oracle: %s flood line %06d %s\n' "$1" "$n" "$pad" >&3
		done
		if ((gone == 0)) && (($(dmesg | grep -c "oracle: $1 flood begins" || true) == 0)); then
			gone=$n
		fi
		((n < 1000000)) || { echo "oracle: the ring buffer never overflowed" >&2; return 1; }
	done
	exec 3>&-
	echo "oracle: $1: $n records of 512 bytes, the first left the ring buffer after $gone"
}

provoke() { # provoke CRASHTYPE
	[[ -w $lkdtm ]] || { echo "oracle: FAIL: no $lkdtm (CONFIG_LKDTM)" >&2; return 1; }
	echo "oracle: provoking $1"
	echo "$1" >"$lkdtm"
}

guest() {
	case $1 in
	control)
		flood before || return
		"$repo/tests/vm/cpus.sh" || return
		if XMEM_VM_CPUS=$(($(nproc) + 1)) "$repo/tests/vm/cpus.sh" 2>/dev/null; then
			echo "oracle: FAIL: tests/vm/cpus.sh passed with a wrong CPU count" >&2
			return 1
		fi
		local cs
		cs=$(</sys/devices/system/clocksource/clocksource0/current_clocksource)
		echo "oracle: clocksource $cs"
		[[ $cs == hpet ]] || { echo "oracle: FAIL: clocksource $cs, not hpet" >&2; return 1; }
		flood after
		;;
	warn) flood before && provoke WARNING && flood after ;;
	kasan) provoke WRITE_AFTER_FREE ;;
	list) provoke CORRUPT_LIST_ADD ;;
	lockdep)
		# The first SPINLOCKUP returns to user space holding a spinlock: lockdep reports
		# it (pr_warn, no WARN(): nothing panics on it), then the flood.
		provoke SPINLOCKUP
		flood after
		;;
	hung)
		echo 2 >/proc/sys/kernel/hung_task_timeout_secs
		provoke HUNG_TASK
		;;
	lockup)
		echo 1 >/proc/sys/kernel/watchdog_thresh
		provoke SOFTLOCKUP
		;;
	rcu)
		echo 0 >/proc/sys/kernel/watchdog
		echo 3 >/sys/module/rcupdate/parameters/rcu_cpu_stall_timeout
		# Exiting processes on the other CPU keep grace periods coming (call_rcu).
		while :; do /bin/true; done &
		provoke SOFTLOCKUP
		;;
	*) echo "oracle: unknown case '$1'" >&2; return 2 ;;
	esac || return
	echo "oracle: $1: command done"
}

if [[ ${XMEM_VM-} == 1 ]]; then
	[[ ${1-} == --guest && -n ${2-} ]] || { echo "usage: $0 --guest CASE" >&2; exit 2; }
	guest "$2"
	exit
fi

# ---- host side ----

vm_args=()
debug=0
kernel=
only=()
while (($#)); do
	case $1 in
	--debug) vm_args+=(--debug); debug=1 ;;
	--kernel) vm_args+=(--kernel "$2"); kernel=$2; shift ;;
	-h | --help) sed -n '3,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
	control | warn | kasan | list | lockdep | hung | lockup | rcu) only+=("$1") ;;
	*) echo "oracle: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
if [[ -n $kernel ]]; then
	k=$(realpath "$kernel")
	if grep -qx CONFIG_KASAN=y "${k%/arch/x86/boot/bzImage}/.config" 2>/dev/null; then debug=1; fi
fi
# shellcheck source=scripts/lib/common.sh
source "$repo/scripts/lib/common.sh"

failed=()
fail() {
	echo "oracle: FAIL: $*"
	failed+=("$*")
}

# 1. The patterns, one real line per report class (6.12's format), and lines that are not
# reports (boot chatter of both kernels, LKDTM's own announcement, hwpoison tests).
reports=(
	'[   12.345678] BUG: KASAN: slab-use-after-free in mfdx_recycle_node+0x1c/0x80'
	'[    3.210000] BUG: sleeping function called from invalid context at mm/slub.c:4099'
	'[    5.000000] kernel BUG at lib/list_debug.c:32!'
	'[    5.000000] list_add corruption. next->prev should be prev (ffffc9000001fd88), but was 0000000000000000. (next=ffffc9000001fd78).'
	'[    5.000000] list_del corruption, ffff888003c8b4c8->next is LIST_POISON1 (dead000000000100)'
	'[    7.100000] WARNING: CPU: 1 PID: 120 at drivers/misc/lkdtm/bugs.c:281 lkdtm_WARNING+0x10/0x20'
	'[    7.100000] refcount_t: underflow; use-after-free.'
	'[    8.000000] Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP KASAN'
	'[    9.000000] WARNING: possible circular locking dependency detected'
	'[    9.000000] WARNING: possible recursive locking detected'
	'[    9.000000] WARNING: inconsistent lock state'
	'[    9.000000] WARNING: suspicious RCU usage'
	'[   30.000000] rcu: INFO: rcu_sched self-detected stall on CPU'
	'[   30.000000] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:'
	'[  130.000000] INFO: task bash:120 blocked for more than 122 seconds.'
	'[   25.000000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [bash:120]'
	'[   10.000000] Kernel panic - not syncing: kernel: panic_on_warn set ...'
	'[   10.000000] Call Trace:'
	'[    1.385424]     not ok 2 pool_test_zeroed'
	'[    1.390000] not ok 2 memfd_exclusive_pool'
	'[    1.384895]     # pool_test_zeroed: ASSERTION FAILED at ../src/mm/memfd_exclusive_pool_kunit.c:224'
	'[    1.388983]     # pool_test_shrinker: EXPECTATION FAILED at ../src/mm/memfd_exclusive_pool_kunit.c:278'
)
benign=(
	'[    0.000000] kasan: KernelAddressSanitizer initialized'
	'[    0.000000] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar'
	'[    0.040000] tsc: Unable to calibrate against PIT'
	'[    0.500219] clocksource: Switched to clocksource hpet'
	'[    1.000000] clocksource: timekeeping watchdog on CPU1: Marking clocksource '"'tsc'"' as unstable because the skew is too large:'
	'[    0.555379] smp: Brought up 1 node, 2 CPUs'
	'[    7.000000] lkdtm: Performing direct entry WARNING'
	'[    8.000000] Memory failure: 0x12345: recovery action for dirty LRU page: Recovered'
	'[    0.589557] acpi PNP0A03:00: fail to add MMCONFIG information, can'"'t"' access extended configuration space under this bridge'
	'[    1.255377] amd_pstate: the _CPC object is not present in SBIOS or ACPI disabled'
	'[    9.000000] hwpoison: Injecting memory failure for pfn 0x12345 at process virtual address 0x7f0000000000'
	'[    1.384296]     ok 1 pool_test_unmapped'
	'[    1.382450] # memfd_exclusive: pass:10 fail:0 skip:0 total:10'
	'[    1.382545] ok 1 memfd_exclusive'
	'[    1.400000] ok 2 memfd_exclusive_pool # SKIP no unmapped pool: memfd_exclusive is disabled'
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for l in "${reports[@]}"; do
	printf '%s\r\n' "$l" >"$tmp/line"
	kernel_reports "$tmp/line" >/dev/null || fail "pattern: not a report: $l"
done
for l in "${benign[@]}"; do
	printf '%s\n' "$l" >"$tmp/line"
	if kernel_reports "$tmp/line" >/dev/null; then fail "pattern: a false report: $l"; fi
done
echo "oracle: patterns: ${#reports[@]} report lines caught, ${#benign[@]} ordinary lines passed"

# 2. The VM cases.
logs=$repo/build/oracle
mkdir -p "$logs"
# vmcase CASE: run it, keep its logs; sets rc.
vmcase() {
	local name=$1
	shift
	rc=0
	"$repo/scripts/vm-run" "${vm_args[@]}" --timeout 300 "$@" -- \
		"$repo/tests/vm/oracle.sh" --guest "$name" >"$logs/$name.out" 2>"$logs/$name.err" || rc=$?
	cp "$repo/build/vm/last-console.log" "$logs/$name.console"
	cp "$repo/build/vm/last-dmesg.log" "$logs/$name.dmesg"
	echo "oracle: $name: vm-run exit $rc; $(grep -a -E '^vm-run: (guest boot|error)' "$logs/$name.err" | tail -n 1)"
}
has() { grep -a -q -E "$2" "$logs/$1"; } # has FILE ERE
# expect_report CASE ERE...: status 1 and each ERE in the report lines vm-run quoted.
expect_report() {
	local name=$1 re
	shift
	((rc == 1)) || fail "$name: vm-run exited $rc, not 1"
	for re in "$@"; do
		has "$name.err" "^  (console|dmesg): .*$re" || fail "$name: vm-run did not quote /$re/"
	done
}

want() { # want CASE: run it (all cases run when none was named)
	((${#only[@]} == 0)) || [[ " ${only[*]} " == *" $1 "* ]]
}

if want control; then
	vmcase control
	((rc == 0)) || fail "control: vm-run exited $rc: $(tail -n 3 "$logs/control.err")"
	has control.out '^oracle: control: command done' || fail "control: the command did not finish"
	has control.out '^cpus: 2 CPUs online' || fail "control: the guest does not see 2 CPUs"
	if has control.console 'flood line'; then fail "control: KERN_INFO flood lines reached the console"; fi
fi

if want warn; then
	vmcase warn
	expect_report warn 'WARNING: CPU: [0-9]+ PID: [0-9]+ at .*lkdtm_WARNING'
	has warn.out '^oracle: provoking WARNING' || fail "warn: LKDTM was not reached"
	if ((debug)); then
		expect_report warn 'Kernel panic - not syncing: kernel: panic_on_warn set'
		if has warn.out 'oracle: warn: command done'; then fail "warn: the guest did not panic at the WARN"; fi
	else
		has warn.out '^oracle: warn: command done' || fail "warn: the command did not finish"
		# The case the old dmesg-only oracle missed: the report is gone from the final dmesg.
		has warn.dmesg 'oracle: after flood line' || fail "warn: no final dmesg came back"
		if has warn.dmesg 'lkdtm_WARNING|WARNING:'; then
			fail "warn: the flood did not push the WARNING out of the ring buffer: this case proves nothing"
		fi
	fi
fi

if ((debug)); then
	if want kasan; then
		vmcase kasan
		expect_report kasan 'BUG: KASAN: slab-use-after-free in lkdtm_WRITE_AFTER_FREE' \
			'Kernel panic - not syncing: (KASAN: panic_on_warn|kasan.fault=panic) set'
	fi
	if want list; then
		vmcase list
		expect_report list 'list_add corruption' 'kernel BUG at (\.\./src/)?lib/list_debug.c' \
			'Kernel panic - not syncing: Fatal exception'
	fi
	if want lockdep; then
		vmcase lockdep
		expect_report lockdep 'WARNING: lock held when returning to user space'
		has lockdep.console 'WARNING: lock held when returning' ||
			fail "lockdep: the lockdep report did not reach the console"
	fi
	if want hung; then
		vmcase hung
		expect_report hung 'INFO: task .* blocked for more than' \
			'Kernel panic - not syncing: hung_task: blocked tasks'
	fi
	if want lockup; then
		vmcase lockup
		expect_report lockup 'BUG: soft lockup - CPU#[0-9]+ stuck' \
			'Kernel panic - not syncing: softlockup: hung tasks'
	fi
	if want rcu; then
		vmcase rcu
		expect_report rcu 'rcu: INFO: rcu_[a-z]+ (self-detected stall on CPU|detected stalls on CPUs)' \
			'Kernel panic - not syncing: RCU Stall'
	fi
fi

if ((${#failed[@]})); then
	echo "oracle: FAILED: ${#failed[@]} check(s) (logs: $logs)"
	exit 1
fi
echo "oracle: PASS ($([[ $debug == 1 ]] && echo debug || echo test) kernel${only[*]:+: ${only[*]}})"
