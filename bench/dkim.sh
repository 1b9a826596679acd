#!/usr/bin/env bash
# DKIM signing speed, lettre's `dkim` feature against cartero's signer
# (mail-auth), RSA-2048 and Ed25519, on the same ~10 KB message (bench/dkim.rs),
# then one signature of each signer checked with dkimpy, with the public key
# handed to it directly (no DNS), and with openssl's raw RSA-2048 sign rate
# as the reference ceiling.
#
# Usage: bench/dkim.sh [N]     (default 2000 RSA signatures; 10x for Ed25519)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
cargo build --release --quiet --example dkim_bench
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "# machine: $(nproc) cores; $(uptime)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/rsa8.pem" 2>/dev/null
openssl rsa -in "$TMP/rsa8.pem" -traditional -out "$TMP/rsa1.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$TMP/ed8.pem" 2>/dev/null
# lettre wants the raw 32-byte Ed25519 seed in base64: the tail of the PKCS#8 DER.
openssl pkey -in "$TMP/ed8.pem" -outform DER | tail -c 32 | base64 -w0 >"$TMP/ed.seed"
# Public keys as DNS TXT p= values: RSA as SubjectPublicKeyInfo DER, Ed25519 raw (RFC 8463 §4.2).
openssl pkey -in "$TMP/rsa8.pem" -pubout -outform DER | base64 -w0 >"$TMP/rsa.pub"
openssl pkey -in "$TMP/ed8.pem" -pubout -outform DER | tail -c 32 | base64 -w0 >"$TMP/ed.pub"

target/release/examples/dkim_bench "$TMP/rsa8.pem" "$TMP/rsa1.pem" "$TMP/ed8.pem" "$TMP/ed.seed" "$N" "$TMP"

echo
echo "# dkimpy verification (key given directly, no DNS)"
python3 - "$TMP" <<'EOF'
import sys, dkim
tmp = sys.argv[1]
keys = {"rsa-2048": ("rsa", open(f"{tmp}/rsa.pub").read()),
        "ed25519": ("ed25519", open(f"{tmp}/ed.pub").read())}
bad = 0
for signer in ("mail-auth", "lettre"):
    for alg, (k, p) in keys.items():
        msg = open(f"{tmp}/{signer}-{alg}.eml", "rb").read()
        txt = f"v=DKIM1; k={k}; p={p}".encode()
        ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: txt)
        print(f"{signer:<10} {alg:<9} {'pass' if ok else 'FAIL'}")
        bad += not ok
sys.exit(1 if bad else 0)
EOF

echo
echo "# reference: openssl speed rsa2048 (raw sign, one core)"
openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048/ {print "openssl rsa2048 sign/s: " $6}'
