#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# systemd-analyze verify on the vault's units (examples/systemd), configured
# with this build's xmem-vault. Fails on a non-zero status and on any
# warning: an allow-list naming memfd_exclusive, which libseccomp cannot
# parse, shows up as "Failed to parse system call, ignoring".
# Usage: systemd-unit.sh SERVICE SOCKET
set -uo pipefail
service=$1 socket=$2
command -v systemd-analyze >/dev/null || { echo "systemd-analyze missing: scripts/install-deps user" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$service" "$dir/xmem-vault.service"
cp "$socket" "$dir/xmem-vault.socket"
out=$(cd "$dir" && systemd-analyze verify ./xmem-vault.socket ./xmem-vault.service 2>&1)
rc=$?
echo "systemd-analyze verify: status $rc"
[ -n "$out" ] && echo "$out"
if [ $rc -ne 0 ] || [ -n "$out" ]; then
	echo "FAIL: the units do not verify cleanly" >&2
	exit 1
fi
grep -q '^SystemCallFilter=~' "$dir/xmem-vault.service" || { echo "FAIL: no SystemCallFilter deny-list" >&2; exit 1; }
grep -q '^Type=notify' "$dir/xmem-vault.service" || { echo "FAIL: not Type=notify" >&2; exit 1; }
echo ok
