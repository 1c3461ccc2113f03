#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Writes the seed corpus of fuzz_keyfile (tests/fuzz/corpus/keyfile/): key files made by
# the real tools, in every format examples/vault/keyfile.cpp accepts and the near misses
# it must refuse. The seeds are committed; run this again only to renew them.
#   accepted: ssh-keygen -t ed25519 (openssh-key-v1, with and without a comment),
#     openssl genpkey -algorithm ed25519 (PKCS#8 v0; ssh-keygen 9.2 writes Ed25519 only
#     as openssh-key-v1, -m PKCS8 is ignored for it), the same key as PKCS#8 v1 with its
#     public key (RFC 8410 section 10.3; written here, no tool in Debian 12 makes one);
#   refused: a passphrase-protected ssh-keygen key, RSA/ECDSA keys from ssh-keygen (openssh
#     and PEM/PKCS#8 forms), encrypted PKCS#8 (openssl), X25519/Ed448 PKCS#8, a public key.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$here/corpus/keyfile
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

kg() { ssh-keygen -q "$@" </dev/null >/dev/null; }
kg -t ed25519 -N '' -C 'user@host' -f "$tmp/ed25519"
kg -t ed25519 -N '' -C '' -f "$tmp/ed25519-nocomment"
kg -t ed25519 -N 'secret' -C 'enc' -f "$tmp/ed25519-encrypted"
kg -t ecdsa -b 256 -N '' -f "$tmp/ecdsa"
kg -t rsa -b 1024 -N '' -f "$tmp/rsa"
cp "$tmp/ecdsa" "$tmp/ecdsa-pem" && kg -p -N '' -m PEM -f "$tmp/ecdsa-pem"
cp "$tmp/rsa" "$tmp/rsa-pkcs8" && kg -p -N '' -m PKCS8 -f "$tmp/rsa-pkcs8"
cp "$tmp/rsa" "$tmp/rsa-pem" && kg -p -N '' -m PEM -f "$tmp/rsa-pem"
openssl genpkey -algorithm ed25519 -out "$tmp/pkcs8" 2>/dev/null
openssl pkcs8 -topk8 -in "$tmp/pkcs8" -passout pass:secret -out "$tmp/pkcs8-encrypted" 2>/dev/null
openssl genpkey -algorithm x25519 -out "$tmp/x25519" 2>/dev/null
openssl genpkey -algorithm ed448 -out "$tmp/ed448" 2>/dev/null

# PKCS#8 v1 (OneAsymmetricKey with publicKey [1]) of the openssl key, and the
# openssh-key-v1 file with CRLF line ends.
python3 - "$tmp" <<'PY'
import base64, subprocess, sys
tmp = sys.argv[1]
der = subprocess.run(["openssl", "pkey", "-in", f"{tmp}/pkcs8", "-outform", "DER"],
                     check=True, capture_output=True).stdout
pub = subprocess.run(["openssl", "pkey", "-in", f"{tmp}/pkcs8", "-pubout", "-outform", "DER"],
                     check=True, capture_output=True).stdout[-32:]
seed = der[-32:]
body = b"\x02\x01\x01\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20" + seed + b"\x81\x21\x00" + pub
v1 = b"\x30" + bytes([len(body)]) + body
b64 = base64.b64encode(v1).decode()
with open(f"{tmp}/pkcs8-v1", "w") as f:
    f.write("-----BEGIN PRIVATE KEY-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
            + "\n-----END PRIVATE KEY-----\n")
with open(f"{tmp}/ed25519", "rb") as f, open(f"{tmp}/ed25519-crlf", "wb") as g:
    g.write(f.read().replace(b"\n", b"\r\n"))
PY

for f in ed25519 ed25519-nocomment ed25519-crlf ed25519-encrypted ecdsa ecdsa-pem rsa rsa-pkcs8 \
	rsa-pem pkcs8 pkcs8-v1 pkcs8-encrypted x25519 ed448; do
	cp "$tmp/$f" "$out/$f"
done
cp "$tmp/ed25519.pub" "$out/ed25519-public"
echo "make-key-seeds: wrote $(ls "$out" | wc -l) seeds to $out"
