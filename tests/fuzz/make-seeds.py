#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/*). The seeds are
# committed; run this again only when the wire layout changes (include/xmem/wire.hpp).
import os, struct

here = os.path.dirname(os.path.abspath(__file__))
MAGIC, VERSION = 0x584D454D, 1
REQUEST, MEMORY, ERROR = 1, 2, 3
SHRINK, GROW, FUTURE_WRITE, SEAL = 0x2, 0x4, 0x10, 0x1

def header(kind, fd_count=0, seals=0, size=0, error=0, index=0, count=0, name=b"", version=VERSION):
    return struct.pack("<IHHIIQiHH", MAGIC, version, kind, fd_count, seals, size, error,
                       index, count) + name.ljust(64, b"\0")

def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

wire = {
    "request": header(REQUEST, name=b"signing-key"),
    "memory": header(MEMORY, 1, SHRINK | GROW, 4096, name=b"k"),
    "error": header(ERROR, error=13, name=b"k"),
    "batch-part": header(MEMORY, 253, 0, 4096, index=1, count=2),
    "longest-name": header(REQUEST, name=b"n" * 63),
    "version-2": header(REQUEST, version=2),
    "short": header(REQUEST)[:40],
    "garbage": bytes([0xA5]) * 96,
}
for n, d in wire.items():
    write("wire", n, d)

# verify: kind, size (KiB), seals added, requirement flags, required seals, header
KINDS = ["secret", "ordinary-sealable", "ordinary-unsealable", "pipe", "dev-null", "tmpfile",
         "socket", "eventfd", "directory"]
for i, k in enumerate(KINDS):
    write("verify", f"{k}-4k", bytes([i, 4, 0, 3, 0]) + header(MEMORY, 1, 0, 4096))
write("verify", "sealed-ordinary", bytes([1, 8, SHRINK | GROW, 3, SHRINK]) +
      header(MEMORY, 1, SHRINK, 8192))
write("verify", "promised-seals-missing", bytes([1, 4, 0, 2, 0]) +
      header(MEMORY, 1, SHRINK | FUTURE_WRITE, 4096))
write("verify", "size-lies", bytes([0, 4, 0, 0, 0]) + header(MEMORY, 1, 0, 8192))
write("verify", "size-zero", bytes([0, 0, 0, 0, 0]) + header(MEMORY, 1, 0, 0))
write("verify", "needs-more", bytes([0, 4, 0, 4, 0]) + header(MEMORY, 1, 0, 4096))
write("verify", "secret-seal-required", bytes([0, 4, 0, 0, SHRINK]) + header(MEMORY, 1, 0, 4096))
