#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A Python client of the C API (ctypes) receiving the key from xmem-vault.

Usage: client_vault.py XMEM_VAULT LIBXMEM.so

Makes an Ed25519 key with openssl, starts XMEM_VAULT on it, waits for its
"ready on" line, then through libxmem's C API: connects, asks for "ed25519",
receives the fd verified (64 bytes; on memfd_exclusive also the seals
shrink, grow and future_write, as xmem-sign demands), maps it read-only and
checks that its last 32 bytes are the public key openssl derives from the
file (libsodium's secret key is seed || public key). Nothing of the secret
half is printed. Then asks for another name, which the vault must refuse.
Exit 0 when all held and the vault stopped cleanly on SIGTERM.
"""
import ctypes
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from client import BACKENDS, Received, Requirements, load  # noqa: E402

XMEM_SEAL_SHRINK, XMEM_SEAL_GROW, XMEM_SEAL_FUTURE_WRITE = 0x2, 0x4, 0x10


def receive(lib, sock_path, name, req):
    sock = lib.xmem_connect(sock_path.encode())
    if sock < 0:
        raise RuntimeError("xmem_connect: " + lib.xmem_strerror(sock).decode())
    try:
        err = lib.xmem_send_request(sock, name.encode())
        if err:
            raise RuntimeError("xmem_send_request: " + lib.xmem_strerror(err).decode())
        got = Received()
        return lib.xmem_receive_memory(sock, ctypes.byref(req), ctypes.byref(got)), got
    finally:
        os.close(sock)


def main():
    vault, libpath = sys.argv[1], sys.argv[2]
    lib = load(libpath)
    problems = []
    with tempfile.TemporaryDirectory(prefix="xmem-capi-vault-") as tmp:
        key = pathlib.Path(tmp) / "key.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        public = der[-32:]
        sock_path = str(pathlib.Path(tmp) / "vault.sock")
        v = subprocess.Popen([vault, "--key", str(key), "--socket", sock_path],
                             stderr=subprocess.PIPE, text=True)
        log = []
        for line in v.stderr:
            log.append(line.rstrip())
            if "ready on" in line:
                break
        else:
            v.wait(timeout=10)
            print("client_vault: the vault did not get ready:", *log, sep="\n  ")
            return 1
        exclusive = "memfd_exclusive" in log[-1]
        seals = XMEM_SEAL_SHRINK | XMEM_SEAL_GROW | XMEM_SEAL_FUTURE_WRITE if exclusive else 0
        fd, got = receive(lib, sock_path, "ed25519", Requirements(64, seals, 0))
        if fd < 0:
            problems.append("receiving the key: " + lib.xmem_strerror(fd).decode())
        else:
            m = ctypes.c_void_p()
            err = lib.xmem_map(fd, 0, ctypes.byref(m))
            if err:
                problems.append("xmem_map: " + lib.xmem_strerror(err).decode())
            else:
                data = ctypes.string_at(lib.xmem_mapping_data(m), lib.xmem_mapping_size(m))
                if len(data) != 64 or data[32:] != public:
                    problems.append("the received key's public half is not the key file's")
                if data[:32] == bytes(32):
                    problems.append("the received key's secret half is all zero")
                lib.xmem_unmap(m)
            os.close(fd)
            print(f"client_vault: received {got.size} bytes of {BACKENDS.get(got.backend)} "
                  f"named {got.name.decode()}, seals {got.seals:#x}; its public half is the "
                  f"key file's: {not problems}")
        fd, _ = receive(lib, sock_path, "other", Requirements(0, 0, 0))
        if fd >= 0:
            os.close(fd)
            problems.append("the vault handed out a name it does not have")
        else:
            print("client_vault: 'other' refused:", lib.xmem_strerror(fd).decode())
        v.send_signal(signal.SIGTERM)
        v.wait(timeout=30)
        rest = v.stderr.read()
        if v.returncode != 0:
            problems.append(f"the vault exited {v.returncode}: {rest.strip()}")
    for p in problems:
        print("client_vault:", p)
    print(f"client_vault: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
