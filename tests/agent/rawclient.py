#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A raw ssh-agent client for xmem-agent's tests.

  rawclient.py hold SOCKET PREFIX   connect, ask for identities, create
                                    PREFIX.ready, wait for PREFIX.go, ask again
  rawclient.py bad SOCKET AGENT_PID every malformed message in CASES on its
                                    own connection, each answered FAILURE or
                                    closed as ssh-agent does; a client
                                    connected throughout must be served after
                                    each, and the agent must hold as many fds
                                    and exclusive mappings at the end as at
                                    the start
Exit 0 pass, 1 fail.
"""

import os
import socket
import struct
import sys
import time

FAILURE, SUCCESS, IDENTITIES_ANSWER, EXTENSION_RESPONSE = 5, 6, 12, 29


def u32(n):
    return struct.pack(">I", n)


def string(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def frame(body):
    return u32(len(body)) + body


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def reply(s):
    """The next reply body, or None when the agent closed the connection."""
    try:
        head = recv_exact(s, 4)
        if head is None:
            return None
        return recv_exact(s, struct.unpack(">I", head)[0])
    except ConnectionResetError:
        return None


def identities_ok(s):
    s.sendall(frame(bytes([11])))
    r = reply(s)
    return r is not None and r[0] == IDENTITIES_ANSWER


def ed25519_add(pub, sec, comment=b"c", constrained=False, tail=b""):
    return (bytes([25 if constrained else 17]) + string("ssh-ed25519") + string(pub) +
            string(sec) + string(comment) + tail)


P = os.urandom(32)
SEED = os.urandom(32)

# (name, bytes sent, expectation: "failure", "close" or a reply type)
CASES = [
    ("unknown type 200", frame(bytes([200])), "failure"),
    ("SSH1 type 1", frame(bytes([1])), "failure"),
    ("type 0", frame(bytes([0])), "failure"),
    ("length 0", u32(0), "close"),
    ("length past the limit", u32(256 * 1024 + 1) + bytes([11]), "close"),
    ("length 0xffffffff", u32(0xffffffff) + bytes([13]), "close"),
    ("REQUEST_IDENTITIES with a byte after", frame(bytes([11, 0])), "failure"),
    ("SIGN_REQUEST key blob past the end", frame(bytes([13]) + u32(1000) + b"abc"), "failure"),
    ("SIGN_REQUEST huge blob length", frame(bytes([13]) + u32(0xffffffff)), "failure"),
    ("SIGN_REQUEST without flags", frame(bytes([13]) + string(b"k") + string(b"d") + b"\0\0"), "failure"),
    ("SIGN_REQUEST trailing bytes", frame(bytes([13]) + string(b"k") + string(b"d") + u32(0) + b"x"), "failure"),
    ("SIGN_REQUEST unknown key", frame(bytes([13]) + string(b"nokey") + string(b"d") + u32(0)), "failure"),
    ("SIGN_REQUEST of 200 KiB, unknown key",
     frame(bytes([13]) + string(b"nokey") + string(os.urandom(200 * 1024)) + u32(0)), "failure"),
    ("ADD_IDENTITY truncated key blob",
     frame(bytes([17]) + string("ssh-ed25519") + u32(32) + P[:10]), "failure"),
    ("ADD_IDENTITY public key of 31 bytes", frame(ed25519_add(P[:31], SEED + P[:31])), "failure"),
    ("ADD_IDENTITY oversized private key", frame(ed25519_add(P, os.urandom(65536))), "failure"),
    ("ADD_IDENTITY private key of 63 bytes", frame(ed25519_add(P, (SEED + P)[:63])), "failure"),
    ("ADD_IDENTITY public halves differ", frame(ed25519_add(P, SEED + os.urandom(32))), "failure"),
    ("ADD_IDENTITY public key not the seed's", frame(ed25519_add(P, SEED + P)), "failure"),
    ("ADD_IDENTITY unknown key type",
     frame(bytes([17]) + string("ssh-foo") + string(P) + string(SEED + P) + string("c")), "failure"),
    ("ADD_IDENTITY wrong key type (DSA fields for ssh-ed25519)",
     frame(bytes([17]) + string("ssh-ed25519") + b"".join(string(os.urandom(20)) for _ in range(5)) +
           string("c")), "failure"),
    ("ADD_IDENTITY key type not printable", frame(bytes([17]) + string(b"ssh-\x01") + string(P)), "failure"),
    ("ADD_IDENTITY huge comment length", frame(ed25519_add(P, SEED + P)[:-5] + u32(0xffffffff)), "failure"),
    ("ADD_IDENTITY comment of 2000 bytes", frame(ed25519_add(P, SEED + P, b"x" * 2000)), "failure"),
    ("ADD_IDENTITY with a constraint", frame(ed25519_add(P, SEED + P, tail=bytes([1]) + u32(5))), "failure"),
    ("ADD_ID_CONSTRAINED unknown constraint 7",
     frame(ed25519_add(P, SEED + P, constrained=True, tail=bytes([7]))), "failure"),
    ("ADD_ID_CONSTRAINED constraint extension",
     frame(ed25519_add(P, SEED + P, constrained=True,
                       tail=bytes([255]) + string("restrict-destination-v00@openssh.com") + string(b""))),
     "failure"),
    ("ADD_ID_CONSTRAINED lifetime twice",
     frame(ed25519_add(P, SEED + P, constrained=True, tail=(bytes([1]) + u32(5)) * 2)), "failure"),
    ("ADD_ID_CONSTRAINED truncated lifetime",
     frame(ed25519_add(P, SEED + P, constrained=True, tail=bytes([1, 0, 0]))), "failure"),
    ("ADD_ID_CONSTRAINED 100000 constraints",
     frame(ed25519_add(P, SEED + P, constrained=True, tail=bytes([2]) * 100000)), "failure"),
    ("ADD_IDENTITY of 256 KiB",
     frame(ed25519_add(P, SEED + P, b"y" * (256 * 1024 - 200))[:256 * 1024]), "failure"),
    ("ADD_SMARTCARD_KEY", frame(bytes([20]) + string("id") + string("pin")), "failure"),
    ("REMOVE_IDENTITY unknown key", frame(bytes([18]) + string(b"nokey")), "failure"),
    ("REMOVE_IDENTITY truncated", frame(bytes([18]) + u32(9)), "failure"),
    ("LOCK passphrase past the end", frame(bytes([22]) + u32(50) + b"pw"), "failure"),
    ("UNLOCK when not locked", frame(bytes([23]) + string("pw")), "failure"),
    ("EXTENSION name not printable", frame(bytes([27]) + string(b"qu\nery")), "failure"),
    ("EXTENSION empty name", frame(bytes([27]) + string(b"")), "failure"),
    ("EXTENSION session-bind (unsupported)", frame(bytes([27]) + string("session-bind@openssh.com") + b"x"),
     "failure"),
    ("EXTENSION query", frame(bytes([27]) + string("query")), EXTENSION_RESPONSE),
]


def agent_state(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/maps") as f:
        maps = sum(1 for line in f if "secretmem" in line or "memfd_exclusive" in line)
    return fds, maps


def run_bad(path, pid):
    failed = 0
    witness = connect(path)
    if not identities_ok(witness):
        print("FAIL: the witness client is not served at the start")
        return 1
    before = agent_state(pid)
    for name, data, want in CASES:
        s = connect(path)
        s.sendall(data)
        r = reply(s)
        if want == "close":
            ok = r is None
            got = "closed" if r is None else f"reply type {r[0]}"
        elif want == "failure":
            ok = r is not None and r == bytes([FAILURE])
            got = "closed" if r is None else f"reply {r[:8].hex()}"
            # FAILURE keeps the connection: it must still be served.
            if ok and not identities_ok(s):
                ok, got = False, "FAILURE, then not served"
        else:
            ok = r is not None and r[0] == want
            got = "closed" if r is None else f"reply type {r[0]}"
            if ok and want == EXTENSION_RESPONSE:
                ok = r == bytes([EXTENSION_RESPONSE]) + string("query") + string("query")
                got += " " + r.hex()
        s.close()
        if not identities_ok(witness):
            print(f"FAIL: {name}: the witness client is no longer served")
            return 1
        print(f"{'ok' if ok else 'FAIL'}: {name}: {got} (expected {want})")
        failed += 0 if ok else 1

    # A message cut short by the client closing, and one sent a byte at a time.
    s = connect(path)
    s.sendall(u32(100) + bytes([13]) + b"abc")
    s.close()
    s = connect(path)
    for b in frame(bytes([11])):
        s.sendall(bytes([b]))
        time.sleep(0.01)
    r = reply(s)
    ok = r is not None and r[0] == IDENTITIES_ANSWER
    print(f"{'ok' if ok else 'FAIL'}: a request sent a byte at a time is answered")
    failed += 0 if ok else 1
    # Three requests in one write: three answers, in order.
    s.sendall(frame(bytes([11])) + frame(bytes([200])) + frame(bytes([11])))
    got = [reply(s) for _ in range(3)]
    ok = all(g is not None for g in got) and [g[0] for g in got] == [IDENTITIES_ANSWER, FAILURE,
                                                                        IDENTITIES_ANSWER]
    print(f"{'ok' if ok else 'FAIL'}: three pipelined requests answered in order")
    failed += 0 if ok else 1
    s.close()

    # Let the agent see every close before counting.
    for _ in range(100):
        if agent_state(pid) == before:
            break
        time.sleep(0.05)
    after = agent_state(pid)
    ok = after == before
    print(f"{'ok' if ok else 'FAIL'}: fds and exclusive mappings before {before}, after {after}")
    failed += 0 if ok else 1
    if not identities_ok(witness):
        print("FAIL: the witness client is not served at the end")
        failed += 1
    print(f"{len(CASES) + 3 - failed} of {len(CASES) + 3} checks passed")
    return 1 if failed else 0


def run_hold(path, prefix):
    s = connect(path)
    if not identities_ok(s):
        return 1
    open(prefix + ".ready", "w").close()
    for _ in range(1200):
        if os.path.exists(prefix + ".go"):
            break
        time.sleep(0.05)
    return 0 if identities_ok(s) else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "hold":
        sys.exit(run_hold(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 4 and sys.argv[1] == "bad":
        sys.exit(run_bad(sys.argv[2], int(sys.argv[3])))
    print(__doc__)
    sys.exit(2)
