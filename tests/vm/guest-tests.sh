#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs inside the patched kernel (scripts/vm-run, host root read-only, the
# repository's build/ read-write). Every step must pass; a missing feature
# fails, it never skips: this kernel is built from our own config.
#   0. tests/vm/cpus.sh: the guest sees all of its CPUs (nproc = XMEM_VM_CPUS)
#   1. tests/vm/smoke.sh: the kernel has what the tests need
#   2. tests/vm/kernel-tests.sh: KUnit results and the kselftest
#   3. libxmem's meson suites again, on the memfd_exclusive backend
#   4. xmem-agent's suite (tests/agent) demanding memfd_exclusive for its keys:
#      ssh-add, ssh-keygen -Y and ssh to an sshd started by the test. The VM's
#      / is read-only: the tests keep HOME, keys, sockets and sshd's files in
#      their own directory under /tmp (a tmpfs here), make sshd's privilege
#      separation directory /run/sshd (tmpfs), bring the loopback interface up
#      (down at boot) and run ssh without a tty (-T), so /dev/pts is not needed.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
failed=""

run() {
	name=$1
	shift
	echo "guest-tests: == $name"
	if "$@"; then
		echo "guest-tests: $name: PASS"
	else
		echo "guest-tests: $name: FAIL ($?)"
		failed="$failed $name"
	fi
}

run cpus tests/vm/cpus.sh
run smoke tests/vm/smoke.sh
run kernel tests/vm/kernel-tests.sh
[ -d /sys/kernel/mm/memfd_exclusive ] || failed="$failed no-memfd_exclusive-marker"
# unit, e2e (the vault seals its key here) and attack suites; TCG is slow: 3x timeouts.
run libxmem env XMEM_TEST_BACKEND=exclusive \
	meson test -C build --no-rebuild --print-errorlogs --logbase vm-testlog \
	--timeout-multiplier 3 --no-suite agent
run agent env XMEM_TEST_BACKEND=exclusive XMEM_AGENT_BACKEND=exclusive \
	meson test -C build --no-rebuild --print-errorlogs --logbase vm-agent-testlog \
	--timeout-multiplier 3 --suite agent

if [ -n "$failed" ]; then
	echo "guest-tests: FAILED:$failed"
	exit 1
fi
echo "guest-tests: all passed"
