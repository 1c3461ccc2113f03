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
