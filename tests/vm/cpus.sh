#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Inside the test VM: the guest must see every CPU scripts/vm-run gave it (QEMU -smp,
# passed to the guest as XMEM_VM_CPUS), else no race of the tests runs in parallel.
# Usage: tests/vm/cpus.sh   (exit 0 when nproc equals XMEM_VM_CPUS, default 2; 1 otherwise)
want=${XMEM_VM_CPUS:-2}
have=$(nproc)
online=$(cat /sys/devices/system/cpu/online 2>/dev/null)
if [ "$have" != "$want" ]; then
	echo "cpus: FAIL: nproc is $have, the VM has $want CPUs (online: ${online:-?})" >&2
	exit 1
fi
echo "cpus: $have CPUs online ($online)"
