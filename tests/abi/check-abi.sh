#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks libxmem.so's ABI against the stored baseline (abi/libxmem.abi) with
# libabigail's abidiff (Debian: abigail-tools).
#
# Usage: tests/abi/check-abi.sh LIBXMEM.so BASELINE HEADERS_DIR
#        tests/abi/check-abi.sh --update LIBXMEM.so BASELINE HEADERS_DIR
#   Passes when the library exports the baseline's interface unchanged, with
#   added functions allowed (listed). Fails on any other change (a removed or
#   changed function, a changed public type) unless the soname differs from the
#   baseline's: an incompatible change needs a soname bump (xmem_soversion in
#   meson.build) and then a new baseline (--update, which abidw writes).
#   The baseline holds the public headers' types (abidw --headers-dir,
#   --drop-private-types); the library is compared whole, since filtering it by
#   headers (abidiff --headers-dir2) hid a new member of a public struct.
# Exit status: 0 pass, 1 ABI broken without a soname bump, 2 usage or tool error,
# 77 (skip) for a library without debug information.
set -euo pipefail

update=0
if [ "${1:-}" = --update ]; then update=1; shift; fi
if [ $# -ne 3 ]; then sed -n '3,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; fi
lib=$1 baseline=$2 headers=$3
for t in abidw abidiff readelf; do
	command -v "$t" >/dev/null || { echo "check-abi: $t not found (apt-get install abigail-tools binutils)" >&2; exit 2; }
done

abidw_args=(--headers-dir "$headers" --drop-private-types --no-show-locs --no-corpus-path
	--no-comp-dir-path)
if [ "$update" = 1 ]; then
	abidw "${abidw_args[@]}" --out-file "$baseline" "$lib"
	echo "check-abi: wrote $baseline ($(grep -c '<elf-symbol' "$baseline") symbols," \
		"soname $(sed -n "1s/.*soname='\([^']*\)'.*/\1/p" "$baseline"))"
	exit 0
fi

[ -f "$baseline" ] || { echo "check-abi: no baseline $baseline (run with --update)" >&2; exit 2; }
# Types come from DWARF: a build without -g (buildtype=release) cannot be
# compared. The project's default (debugoptimized) and the packages have it.
if ! readelf -S "$lib" | grep -q '\.debug_info'; then
	echo "check-abi: $lib has no debug information (built without -g): skipped"
	exit 77
fi
old_soname=$(sed -n "1s/.*soname='\([^']*\)'.*/\1/p" "$baseline")
new_soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -n "$old_soname" ] && [ -n "$new_soname" ] || { echo "check-abi: soname not found" >&2; exit 2; }

set +e
report=$(abidiff --no-added-syms "$baseline" "$lib")
rc=$?
added=$(abidiff --added-fns --added-vars "$baseline" "$lib" | grep -E '^ *\[A\]')
set -e
if [ -n "$added" ]; then
	echo "check-abi: added since the baseline (compatible; store a new baseline with --update):"
	echo "$added"
fi
if [ $((rc & 3)) -ne 0 ]; then
	echo "check-abi: abidiff failed (exit $rc)" >&2
	echo "$report" >&2
	exit 2
fi
if [ "$rc" -eq 0 ]; then
	echo "check-abi: $new_soname has the baseline's ABI ($(grep -c '<elf-symbol' "$baseline") symbols)"
	exit 0
fi
echo "$report"
if [ "$old_soname" != "$new_soname" ]; then
	echo "check-abi: the ABI changed and the soname was bumped ($old_soname -> $new_soname):" \
		"store a new baseline with --update"
	exit 0
fi
echo "check-abi: FAIL: the ABI of $new_soname changed (abidiff exit $rc$( [ $((rc & 8)) -ne 0 ] &&
	echo ', incompatible')) without a soname bump" >&2
exit 1
