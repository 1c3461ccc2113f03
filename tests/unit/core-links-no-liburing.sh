#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The core library does not link liburing; the server library does
# (userlib/meson.build: libxmem and libxmem-server). Usage: SCRIPT LIBXMEM LIBXMEM_SERVER
set -uo pipefail
core=$(readelf -d "$1" | grep NEEDED)
server=$(readelf -d "$2" | grep NEEDED)
echo "libxmem needs:"; echo "$core"
echo "libxmem-server needs:"; echo "$server"
if grep -q liburing <<<"$core"; then echo "FAIL: libxmem links liburing" >&2; exit 1; fi
if ! grep -q liburing <<<"$server"; then echo "FAIL: libxmem-server does not link liburing" >&2; exit 1; fi
echo ok
