#!/usr/bin/env bash
# Addresses checked per second on one core: cartero's parser + risk flags
# in-process (bench/address_bench.rs, no process start-up, no output) against
# Python email-validator (check_deliverability=False, allow_smtputf8=True) on
# the same input in the same run. Prints both rates and the ratio.
#
# Input: the valid cases of ../shared/corpus/addresses/cases.jsonl repeated
# 100 times (when shared/ is there) plus 100,000 generated plain ASCII
# addresses like those of a typical import, shuffled with a fixed seed.
#
# Usage: bench/address-speed.sh [ROUNDS]   (best of ROUNDS, default 5)
#   SHARED=/path/to/shared overrides where shared/ is.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${SHARED:-$root/../shared}"
rounds="${1:-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi

python3 - "$shared/corpus/addresses/cases.jsonl" "$work/input.jsonl" <<'PY'
import json, os, random, sys
random.seed(20261123)
out = []
if os.path.exists(sys.argv[1]):
    with open(sys.argv[1], encoding="utf-8") as f:
        valid = [c["address"] for c in map(json.loads, filter(str.strip, f)) if c["expect"] == "valid"]
    out += valid * 100
first = ["maria", "john", "wei", "priya", "anna", "olivier", "kenji", "fatima", "sven", "j", "li", "noor"]
last = ["garcia", "smith", "zhang", "patel", "k", "martin", "sato", "ali", "larsson", "doe", "lee", "nguyen"]
doms = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "example.com", "example.org",
        "company.co.uk", "mail.example.net", "icloud.com", "web.de", "gmx.de", "uni-heidelberg.de"]
for _ in range(100_000):
    sep = random.choice([".", "_", "", "+news."])
    out.append(f"{random.choice(first)}{sep}{random.choice(last)}{random.randint(0, 999)}@{random.choice(doms)}")
random.shuffle(out)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for a in out:
        f.write(json.dumps(a, ensure_ascii=False) + "\n")
PY

(cd "$root" && cargo build --release --quiet --example address-bench)

py_line=$("${pin[@]}" python3 - "$work/input.jsonl" "$rounds" <<'PY'
import json, sys, time
from email_validator import validate_email, EmailNotValidError, __version__
with open(sys.argv[1], encoding="utf-8") as f:
    inputs = [json.loads(l) for l in f if l.strip()]
best = float("inf")
for _ in range(int(sys.argv[2])):
    valid = 0
    t = time.perf_counter()
    for a in inputs:
        try:
            validate_email(a, check_deliverability=False, allow_smtputf8=True)
            valid += 1
        except EmailNotValidError:
            pass
    best = min(best, time.perf_counter() - t)
print(f"{len(inputs) / best:.0f} email-validator {__version__}: {len(inputs)} addresses ({valid} valid), "
      f"best of {sys.argv[2]}: {best:.3f} s, {best * 1e6 / len(inputs):.2f} us/address, {len(inputs) / best:.0f} addresses/s")
PY
)
rs_line=$("${pin[@]}" "$root/target/release/examples/address-bench" "$work/input.jsonl" "$rounds")

py_rate=${py_line%% *}
rs_rate=$(echo "$rs_line" | sed -E 's/.* ([0-9]+) addresses\/s$/\1/')
echo "${py_line#* }"
echo "$rs_line"
python3 -c "import sys; print(f'ratio: cartero is {int(sys.argv[1]) / int(sys.argv[2]):.1f}x email-validator (one core, parser + flags vs parser)')" "$rs_rate" "$py_rate"
