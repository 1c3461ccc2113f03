#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Writes the seed corpus of fuzz_agent (tests/fuzz/corpus/agent/): the request bodies that
# real OpenSSH clients send, recorded between them and OpenSSH's own ssh-agent by a proxy
# on the socket (ssh-add of Ed25519, ECDSA and RSA keys made by ssh-keygen, with -t and -c,
# -l, -L, -d, -D, -x, -X; ssh-keygen -Y sign), then messages no client here sends (the
# extension query, the smartcard messages) and malformed ones (truncated, lengths past the
# end, unknown type, wrong key sizes). The seeds are committed; run this again to renew them.
import os, shutil, socket, struct, subprocess, sys, tempfile, threading, time

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "agent")
tmp = tempfile.mkdtemp()
recorded = []

def frames(sock, sink):
    buf = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        buf += data
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            n = struct.unpack(">I", buf[:4])[0]
            sink(buf[4:4 + n], buf[:4 + n])
            buf = buf[4 + n:]

def serve(listener, agent_sock):
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        agent = socket.socket(socket.AF_UNIX)
        agent.connect(agent_sock)
        def up(c=client, a=agent):
            frames(c, lambda body, raw: (recorded.append(body), a.sendall(raw)))
            a.shutdown(socket.SHUT_WR)
        def down(c=client, a=agent):
            frames(a, lambda body, raw: c.sendall(raw))
            c.close()
        threading.Thread(target=up, daemon=True).start()
        threading.Thread(target=down, daemon=True).start()

agent_sock, proxy_sock = f"{tmp}/agent.sock", f"{tmp}/proxy.sock"
agent = subprocess.Popen(["ssh-agent", "-D", "-a", agent_sock], stdout=subprocess.DEVNULL)
try:
    for _ in range(100):
        if os.path.exists(agent_sock):
            break
        time.sleep(0.05)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(proxy_sock)
    listener.listen()
    threading.Thread(target=serve, args=(listener, agent_sock), daemon=True).start()
    askpass = f"{tmp}/askpass"
    with open(askpass, "w") as f:
        f.write("#!/bin/sh\necho lockpass\n")
    os.chmod(askpass, 0o755)
    env = dict(os.environ, SSH_AUTH_SOCK=proxy_sock, SSH_ASKPASS=askpass,
               SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    for t, extra in (("ed25519", []), ("ecdsa", ["-b", "256"]), ("rsa", ["-b", "1024"])):
        subprocess.run(["ssh-keygen", "-q", "-t", t, *extra, "-N", "", "-C", f"{t}@seed",
                        "-f", f"{tmp}/{t}"], check=True)
    with open(f"{tmp}/msg", "w") as f:
        f.write("hello\n")

    def run(*args, check=True):
        before = len(recorded)
        subprocess.run(list(args), env=env, check=check, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        return recorded[before:]

    names = {}
    def keep(name, msgs, type_):
        for m in msgs:
            if m[0] == type_:
                names[name] = m
                return
        sys.exit(f"make-agent-seeds: no message {type_} recorded for {name}")

    keep("add-ed25519", run("ssh-add", f"{tmp}/ed25519"), 17)
    keep("add-ecdsa", run("ssh-add", f"{tmp}/ecdsa"), 17)
    keep("add-rsa", run("ssh-add", f"{tmp}/rsa"), 17)
    keep("request-identities", run("ssh-add", "-l"), 11)
    keep("sign-ed25519", run("ssh-keygen", "-Y", "sign", "-n", "file", "-f",
                             f"{tmp}/ed25519.pub", f"{tmp}/msg"), 13)
    keep("sign-rsa-sha512", run("ssh-keygen", "-Y", "sign", "-n", "file", "-f",
                                f"{tmp}/rsa.pub", f"{tmp}/msg"), 13)
    keep("remove-identity", run("ssh-add", "-d", f"{tmp}/ecdsa"), 18)
    keep("add-constrained-lifetime", run("ssh-add", "-t", "60", f"{tmp}/ed25519"), 25)
    keep("add-constrained-confirm", run("ssh-add", "-c", f"{tmp}/rsa", check=False), 25)
    keep("add-constrained-both", run("ssh-add", "-c", "-t", "3600", f"{tmp}/ed25519",
                                     check=False), 25)
    keep("lock", run("ssh-add", "-x"), 22)
    keep("unlock", run("ssh-add", "-X"), 23)
    keep("remove-all", run("ssh-add", "-D"), 19)
finally:
    agent.terminate()
    agent.wait()
    shutil.rmtree(tmp)

def s(b):
    return struct.pack(">I", len(b)) + b

names["extension-query"] = bytes([27]) + s(b"query")
names["extension-session-bind"] = bytes([27]) + s(b"session-bind@openssh.com") + s(b"x" * 51)
names["add-smartcard"] = bytes([20]) + s(b"/usr/lib/opensc-pkcs11.so") + s(b"1234")
names["unknown-type"] = bytes([99])
names["ssh1-request-rsa-identities"] = bytes([1])
names["empty"] = b""
sign = names["sign-ed25519"]
names["sign-truncated"] = sign[:len(sign) // 2]
names["sign-length-past-end"] = bytes([13]) + b"\xff\xff\xff\xff" + sign[5:]
names["sign-trailing-byte"] = sign + b"\0"
add = names["add-ed25519"]
# ssh-ed25519 (4+11), public key (4+32), secret (4+64): cut the secret to 63 bytes.
cut = 1 + 15 + 36
names["add-ed25519-short-secret"] = add[:cut] + b"\0\0\0\x3f" + add[cut + 4:cut + 4 + 63] + \
    add[cut + 4 + 64:]
names["add-constrained-twice"] = names["add-constrained-lifetime"] + b"\x01\0\0\0\x3c"
names["add-constrained-confirm-repeated"] = names["add-ed25519"].replace(b"\x11", b"\x19", 1) + \
    b"\x02" * 9

os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    os.unlink(os.path.join(out, f))
for n, b in sorted(names.items()):
    with open(os.path.join(out, n), "wb") as f:
        f.write(b)
print(f"make-agent-seeds: wrote {len(names)} seeds to {out}")
