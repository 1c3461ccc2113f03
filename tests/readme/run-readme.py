#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Runs the README's owner and receiver against each other.

Usage: run-readme.py OWNER RECEIVER [ROUNDS]

Each round starts OWNER on a fresh socket, waits for its "listening" line,
runs RECEIVER, and requires both to exit 0 and the receiver to report the
secret intact. With the owner closing before it read the request (the
README's code before channel::receive_request), most rounds failed with
EPIPE or ECONNRESET; every round must pass. Exit 0 when all did.
"""
import pathlib
import subprocess
import sys
import tempfile


def main():
    owner, receiver = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    failed = 0
    with tempfile.TemporaryDirectory(prefix="xmem-readme-") as tmp:
        sock = str(pathlib.Path(tmp) / "vault.sock")
        for i in range(rounds):
            o = subprocess.Popen([owner, sock], stdout=subprocess.PIPE, text=True)
            ready = o.stdout.readline()
            if not ready.startswith("listening"):
                o.wait(timeout=10)
                print(f"round {i}: owner did not listen (exit {o.returncode})")
                return 1
            r = subprocess.run([receiver, sock], capture_output=True, text=True, timeout=30)
            rest, _ = o.communicate(timeout=30)
            ok = (r.returncode == 0 and o.returncode == 0 and "secret intact" in r.stdout)
            if not ok:
                failed += 1
                print(f"round {i}: owner exit {o.returncode}, receiver exit {r.returncode}: "
                      f"{r.stdout.strip()} {r.stderr.strip()}")
        print(f"run-readme: {rounds - failed}/{rounds} rounds passed; "
              f"first owner line: {ready.strip()}; receiver: {r.stdout.strip()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
