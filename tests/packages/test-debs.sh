#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the Debian packages and checks them from the outside.
#
# Usage: tests/packages/test-debs.sh [--keep DIR]
#   1. copies the working tree (tracked and untracked, not ignored files) to a
#      scratch directory and runs dpkg-buildpackage -us -uc -b -j1 there, nice;
#   2. lintian on the result: any error fails (warnings are printed);
#   3. checks each package holds what it should (libxmem0: the .so.0;
#      libxmem-dev: headers, .pc, uapi header, libxmem.3, memfd_exclusive.2;
#      xmem-tools: the four programs and their pages);
#   4. unpacks the .debs into a scratch root (dpkg -x: the host's /usr is not
#      touched) and builds examples/readme and tests/capi/owner.c from a
#      directory of their own with pkg-config pointed at that root only,
#      then runs them: the README's owner and receiver (3 rounds), and the
#      installed xmem-vault, which must start and refuse an empty command line,
#      and the installed xmem-agent's sandbox self-test.
# --keep DIR copies the .debs and logs to DIR. Exit 0 when every step passed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
keep=
[ "${1:-}" = --keep ] && keep=$2
for t in dpkg-buildpackage lintian dpkg-deb pkg-config; do
	command -v "$t" >/dev/null || { echo "test-debs: $t missing (scripts/install-deps user)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/xmem-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT
version=$(sed -n '1s/^xmem (\([^)]*\)).*/\1/p' "$repo/debian/changelog")
src=$work/xmem-$version
mkdir -p "$src"
(cd "$repo" && git ls-files -co --exclude-standard -z |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
	xargs -0 cp --parents -t "$src")

echo "test-debs: dpkg-buildpackage in $src"
if ! (cd "$src" && nice -n 10 dpkg-buildpackage -us -uc -b -j1) >"$work/build.log" 2>&1; then
	tail -40 "$work/build.log"
	echo "test-debs: FAIL: dpkg-buildpackage (log above)" >&2
	exit 1
fi
mapfile -t debs < <(ls "$work"/*.deb | grep -v -- -dbgsym_)
printf 'test-debs: built %s\n' "${debs[@]##*/}"
[ ${#debs[@]} -eq 3 ] || { echo "test-debs: FAIL: want 3 packages" >&2; exit 1; }

set +e
lintian --fail-on error --display-level '>=warning' "$work"/*.changes >"$work/lintian.log" 2>&1
lint=$?
set -e
cat "$work/lintian.log"
echo "test-debs: lintian: $(grep -c '^E:' "$work/lintian.log" || true) errors," \
	"$(grep -c '^W:' "$work/lintian.log" || true) warnings (exit $lint)"
[ "$lint" -eq 0 ] || { echo "test-debs: FAIL: lintian errors" >&2; exit 1; }

fail=0
must_have() { # package path-regex...
	local pkg=$1; shift
	local list
	list=$(dpkg-deb -c "$work/${pkg}_"*.deb | awk '{print $6}')
	for re in "$@"; do
		grep -qE "$re" <<<"$list" || { echo "test-debs: $pkg lacks $re" >&2; fail=1; }
	done
}
must_have libxmem0 '/usr/lib/x86_64-linux-gnu/libxmem\.so\.0$|/libxmem\.so\.0 ' 'libxmem\.so\.0\.'
must_have libxmem-dev 'include/xmem/xmem\.hpp$' 'include/xmem/xmem\.h$' 'include/xmem/version\.h$' \
	'include/xmem/uapi/linux/memfd_exclusive\.h$' 'pkgconfig/libxmem\.pc$' \
	'man3/libxmem\.3\.gz$' 'man3/xmem_create\.3\.gz' 'man2/memfd_exclusive\.2\.gz$'
must_have xmem-tools 'sbin/xmem-vault$' 'bin/xmem-sign$' 'bin/xmem-attack$' 'bin/xmem-agent$' \
	'man8/xmem-vault\.8\.gz$' 'man1/xmem-sign\.1\.gz$' 'man1/xmem-agent\.1\.gz$'
[ "$fail" = 0 ] || exit 1

root=$work/root
for d in "${debs[@]}"; do dpkg -x "$d" "$root"; done
lib=$root/usr/lib/x86_64-linux-gnu
app=$work/app
mkdir -p "$app"
cp "$repo/examples/readme/owner.cpp" "$repo/examples/readme/receiver.cpp" \
	"$repo/examples/readme/secret.hpp" "$repo/tests/capi/owner.c" "$app/"
pc=(env PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$lib/pkgconfig:/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/share/pkgconfig"
	pkg-config --define-variable=prefix="$root/usr")
cflags=$("${pc[@]}" --cflags libxmem)
libs=$("${pc[@]}" --libs libxmem)
echo "test-debs: pkg-config libxmem $("${pc[@]}" --modversion libxmem): $cflags $libs"
grep -q "$root/usr/include" <<<"$cflags" || { echo "test-debs: FAIL: Cflags outside the root" >&2; exit 1; }
(
	cd "$app"
	# shellcheck disable=SC2086 # word splitting of the flags is meant
	c++ -std=c++20 -Wall -Wextra -Werror owner.cpp $cflags $libs -o readme-owner
	# shellcheck disable=SC2086
	c++ -std=c++20 -Wall -Wextra -Werror receiver.cpp $cflags $libs -o readme-receiver
	# shellcheck disable=SC2086
	cc -std=c11 -Wall -Wextra -Werror owner.c $cflags $libs -o capi-owner
)
for exe in readme-owner readme-receiver capi-owner; do
	resolved=$(LD_LIBRARY_PATH=$lib ldd "$app/$exe" | awk '/libxmem/ {print $3}')
	[ "$resolved" = "$lib/libxmem.so.0" ] ||
		{ echo "test-debs: FAIL: $exe resolves libxmem to '$resolved'" >&2; exit 1; }
done
echo "test-debs: built readme-owner, readme-receiver and capi-owner against $lib only"
LD_LIBRARY_PATH=$lib python3 "$repo/tests/readme/run-readme.py" "$app/readme-owner" \
	"$app/readme-receiver" 3
LD_LIBRARY_PATH=$lib python3 "$repo/tests/capi/client.py" "$app/capi-owner" "$lib/libxmem.so.0"

set +e
LD_LIBRARY_PATH=$lib "$root/usr/sbin/xmem-vault" >"$work/vault.out" 2>&1
vault=$?
set -e
echo "test-debs: installed xmem-vault with no arguments: exit $vault: $(head -1 "$work/vault.out")"
[ "$vault" -eq 2 ] || { echo "test-debs: FAIL: want exit 2 (usage)" >&2; exit 1; }
# The installed xmem-agent: its sandbox self-test must deny it a file we can read.
set +e
LD_LIBRARY_PATH=$lib "$root/usr/bin/xmem-agent" --sandbox-selftest "$work/build.log" >"$work/agent.out" 2>&1
agent=$?
set -e
echo "test-debs: installed xmem-agent --sandbox-selftest: exit $agent: $(head -1 "$work/agent.out")"
[ "$agent" -eq 0 ] || { cat "$work/agent.out"; echo "test-debs: FAIL: xmem-agent sandbox" >&2; exit 1; }

if [ -n "$keep" ]; then
	mkdir -p "$keep"
	cp "${debs[@]}" "$work/build.log" "$work/lintian.log" "$keep/"
fi
echo "test-debs: passed"
