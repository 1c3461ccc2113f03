#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks what libxmem.so exports (nm -D): every defined symbol is in the
# version node XMEM_0 and in namespace xmem (or the C API's xmem_*), none of
# xmem::detail or xmem::srv but the srv type information the map documents,
# and no standard-library template instantiation.
# Usage: tests/abi/check-exports.sh LIBXMEM.so
# Exit status: 0 when so, 1 listing the symbols that should not be exported.
set -euo pipefail

lib=$1
syms=$(nm -D --defined-only -C "$lib" | cut -d' ' -f3-)
[ -n "$syms" ] || { echo "check-exports: $lib exports nothing" >&2; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v -E \
	'^XMEM_0$|^(xmem::|xmem_|(typeinfo|typeinfo name|vtable) for xmem::).*@@XMEM_0$' || true)
internal=$(printf '%s\n' "$syms" | grep -E '(^| )xmem::(detail|srv)::' |
	grep -v -E '^typeinfo (name )?for xmem::srv::' || true)
total=$(printf '%s\n' "$syms" | grep -c '@@XMEM_0$')
if [ -n "$bad$internal" ]; then
	echo "check-exports: exported but not public API:"
	printf '%s\n' "$bad" "$internal" | sed '/^$/d'
	exit 1
fi
echo "check-exports: $total symbols, all public API in XMEM_0" \
	"($(printf '%s\n' "$syms" | grep -c '^xmem_') of the C API)"
