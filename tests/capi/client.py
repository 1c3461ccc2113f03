#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A Python client of libxmem's C API (ctypes), receiving memory from a C owner.

Usage: client.py CAPI_OWNER LIBXMEM.so

Starts CAPI_OWNER (tests/capi/owner.c) on a fresh socket for 3 rounds, then:
 1. asks for "signing-key" requiring 4096 bytes, maps the verified fd
    read-only and checks every byte;
 2. asks again requiring 8192 bytes: must be refused with -XMEM_ESIZE and
    no fd;
 3. asks for "other": must come back as the owner's -ENOENT.
Exit 0 when all three held and the owner exited 0.
"""
import ctypes
import errno
import os
import pathlib
import subprocess
import sys
import tempfile

XMEM_ERRC_BASE = 4096
XMEM_ESIZE = XMEM_ERRC_BASE + 9
XMEM_MAP_READ_ONLY = 0
BACKENDS = {0: "memfd_exclusive", 1: "memfd_secret", 2: "memfd_create"}


class Requirements(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("seals", ctypes.c_uint), ("flags", ctypes.c_uint)]


class Received(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("seals", ctypes.c_uint), ("backend", ctypes.c_int),
                ("size_is_stable", ctypes.c_int), ("name", ctypes.c_char * 64)]


def load(path):
    lib = ctypes.CDLL(path)
    lib.xmem_strerror.restype = ctypes.c_char_p
    lib.xmem_strerror.argtypes = [ctypes.c_int]
    lib.xmem_connect.argtypes = [ctypes.c_char_p]
    lib.xmem_send_request.argtypes = [ctypes.c_int, ctypes.c_char_p]
    lib.xmem_receive_memory.argtypes = [ctypes.c_int, ctypes.POINTER(Requirements),
                                        ctypes.POINTER(Received)]
    lib.xmem_map.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    lib.xmem_mapping_data.restype = ctypes.c_void_p
    lib.xmem_mapping_data.argtypes = [ctypes.c_void_p]
    lib.xmem_mapping_size.restype = ctypes.c_size_t
    lib.xmem_mapping_size.argtypes = [ctypes.c_void_p]
    lib.xmem_unmap.argtypes = [ctypes.c_void_p]
    return lib


def ask(lib, sock_path, name, size):
    """Connects, asks for @name requiring @size bytes: (fd or -error, Received)."""
    sock = lib.xmem_connect(sock_path.encode())
    if sock < 0:
        raise RuntimeError("xmem_connect: " + lib.xmem_strerror(sock).decode())
    try:
        err = lib.xmem_send_request(sock, name.encode())
        if err:
            raise RuntimeError("xmem_send_request: " + lib.xmem_strerror(err).decode())
        got = Received()
        fd = lib.xmem_receive_memory(sock, ctypes.byref(Requirements(size, 0, 0)),
                                     ctypes.byref(got))
        return fd, got
    finally:
        os.close(sock)


def main():
    owner, libpath = sys.argv[1], sys.argv[2]
    lib = load(libpath)
    problems = []
    with tempfile.TemporaryDirectory(prefix="xmem-capi-py-") as tmp:
        sock_path = str(pathlib.Path(tmp) / "owner.sock")
        o = subprocess.Popen([owner, sock_path, "3"], stdout=subprocess.PIPE, text=True)
        ready = o.stdout.readline().strip()
        if not ready.startswith("listening"):
            o.kill()
            print(f"client: the owner did not listen: {ready!r}")
            return 1

        fd, got = ask(lib, sock_path, "signing-key", 4096)
        if fd < 0:
            problems.append("round 1: " + lib.xmem_strerror(fd).decode())
        else:
            m = ctypes.c_void_p()
            err = lib.xmem_map(fd, XMEM_MAP_READ_ONLY, ctypes.byref(m))
            if err:
                problems.append("xmem_map: " + lib.xmem_strerror(err).decode())
            else:
                data = ctypes.string_at(lib.xmem_mapping_data(m), lib.xmem_mapping_size(m))
                want = bytes((i * 7 + 3) & 0xff for i in range(4096))
                if data != want:
                    problems.append("round 1: the memory does not hold the owner's bytes")
                lib.xmem_unmap(m)
            print(f"client: round 1: {got.size} bytes of {BACKENDS.get(got.backend)}, "
                  f"name {got.name.decode()}, seals {got.seals:#x}, "
                  f"size stable {got.size_is_stable}")
            os.close(fd)

        fd, _ = ask(lib, sock_path, "signing-key", 8192)
        if fd != -XMEM_ESIZE:
            problems.append(f"round 2: got {fd}, want -XMEM_ESIZE")
            if fd >= 0:
                os.close(fd)
        else:
            print("client: round 2: refused:", lib.xmem_strerror(fd).decode())

        fd, _ = ask(lib, sock_path, "other", 0)
        if fd != -errno.ENOENT:
            problems.append(f"round 3: got {fd}, want -ENOENT")
        else:
            print("client: round 3: the owner's error:", lib.xmem_strerror(fd).decode())

        o.wait(timeout=30)
        if o.returncode != 0:
            problems.append(f"the owner exited {o.returncode}")
    for p in problems:
        print("client:", p)
    print(f"client: {ready}; {3 - len([p for p in problems if p.startswith('round')])}/3 rounds "
          f"as expected, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
