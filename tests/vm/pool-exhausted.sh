#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# On the host: boot the test kernel with 512 MiB and run tests/vm/pool_exhausted.c in it
# (a fault that finds no free pageblock to take out of the direct map gets SIGBUS instead
# of spinning; see that file). scripts/vm-run fails the run on any kernel report.
# Usage: tests/vm/pool-exhausted.sh [--kernel PATH]
# Exit: 0 pass, 1 fail (the program names the check), 124 timeout, 125 VM failure.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
bin=$repo/build/tests/vm/pool_exhausted
vm_args=()
if [[ ${1-} == --kernel ]]; then
	(($# == 2)) || { echo "pool-exhausted: --kernel needs a path" >&2; exit 2; }
	vm_args=(--kernel "$2")
elif (($#)); then
	echo "pool-exhausted: unknown argument '$1'" >&2
	exit 2
fi
mkdir -p "$(dirname "$bin")"
cc -O2 -Wall -Wextra -Werror -o "$bin" "$repo/tests/vm/pool_exhausted.c"
exec "$repo/scripts/vm-run" "${vm_args[@]}" --mem 512 --timeout 600 -- "$bin"
