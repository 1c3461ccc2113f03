# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared helpers for scripts/kernel-build and scripts/vm-run. Source it; do not run it.
# shellcheck shell=bash

# The clone these scripts live in (scripts/lib/ -> repo root).
# shellcheck disable=SC2034 # used by the scripts that source this file
XMEM_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
XMEM_PROG=$(basename "$0")
XMEM_QUIET=${XMEM_QUIET:-0}

# die MESSAGE: one line on stderr, exit 1.
die() {
	printf '%s: error: %s\n' "$XMEM_PROG" "$*" >&2
	exit 1
}

# log MESSAGE: progress on stderr (silent when XMEM_QUIET=1).
log() {
	if [[ $XMEM_QUIET != 1 ]]; then
		printf '%s: %s\n' "$XMEM_PROG" "$*" >&2
	fi
}

# ensure_packages PKG...: apt-get install the Debian packages that are not installed.
# apt-get update runs once, and only when something is missing.
ensure_packages() {
	local missing=() pkg
	for pkg in "$@"; do
		if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != "install ok installed" ]]; then
			missing+=("$pkg")
		fi
	done
	((${#missing[@]})) || return 0
	[[ $(id -u) == 0 ]] || die "missing packages (need root to install): ${missing[*]}"
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
		die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
}

# now: seconds since the epoch with milliseconds, for timings.
now() {
	date +%s.%N
}

# elapsed START: seconds since START (from now), one decimal.
elapsed() {
	awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'
}

# Kernel report lines (extended regular expressions, case-sensitive): a line of the guest's
# console or dmesg that matches one fails a scripts/vm-run run. Grouped by report class.
# shellcheck disable=SC2034 # used by scripts/vm-run and tests/vm/oracle.sh
KERNEL_REPORT_RES=(
	# BUG: covers KASAN, soft lockup, sleeping in atomic, bad page state, bad rss-counter,
	# NULL pointer and page fault, scheduling while atomic, workqueue lockup; kernel BUG at
	# is BUG()/VM_BUG_ON(); "BUG cache (Tainted...)" is a SLUB debug report.
	'BUG:' 'kernel BUG at' 'BUG [^ ]+ \((Not tainted|Tainted)'
	'KASAN:' 'UBSAN:' 'KFENCE:'
	# WARN()/WARN_ON(), also VM_WARN_ON(), refcount_t and (without BUG_ON_DATA_CORRUPTION)
	# list corruption
	'WARNING:'
	'Oops:' 'general protection fault' 'Unable to handle kernel' 'Kernel panic'
	# lockdep (its headers start with WARNING: too, except these)
	'possible recursive locking' 'inconsistent lock state' 'circular locking dependency'
	'possible irq lock inversion' 'lock held when returning' 'bad unlock balance'
	'held lock freed' 'suspicious RCU usage' 'DEBUG_LOCKS_WARN_ON'
	# RCU CPU stalls
	'detected stalls? on CPU' 'self-detected stall on CPU' 'rcu_[a-z_]+ kthread starved'
	# hung tasks and lockups
	'INFO: task .* blocked for more than' 'soft lockup' 'hard LOCKUP'
	# refcount_t and list corruption (lib/refcount.c, lib/list_debug.c)
	'refcount_t: ' 'list_[a-z_]+ corruption' 'list_add double add'
	# any stack dump
	'Call Trace:'
	# KUnit (KTAP) results of the suites run at boot: a failed case or suite, and the
	# assertion lines before it (printed at KERN_INFO: the dmesg read at the end has them)
	'\] +not ok [0-9]+ ' '(ASSERTION|EXPECTATION) FAILED at'
)
KERNEL_REPORT_RE=$(
	IFS='|'
	printf '%s' "${KERNEL_REPORT_RES[*]}"
)

# kernel_reports FILE: the kernel report lines of a console or dmesg log, carriage returns
# removed. Status 0 when there is at least one, 1 when there is none.
kernel_reports() {
	tr -d '\r' <"$1" | grep -a -E "$KERNEL_REPORT_RE"
}
