#!/usr/bin/env bash
# Bounce classification on crafted hostile inputs (issue 15 item 2): time
# and peak memory of `cartero feedback parse` per input, with time per MB and
# per recipient, so that a non-linear cost shows as a growing per-unit figure.
#
# Inputs (bench/bounce_hostile_gen.py): DSNs and prose notices naming 1,000
# and 8,000 recipients; one-recipient DSNs of 1, 12 and 100 MB; a 12 MB
# storm of address-like tokens. Each runs with the default limits and, for
# the byte-sized inputs, with the byte cap lifted (--max-bytes 0) to show the
# uncapped cost is linear too.
#
# Usage: bench/bounce-hostile.sh [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=release
if [[ "${1:-}" == "--debug" ]]; then PROFILE=debug; shift; fi
if [[ "$PROFILE" == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
BIN="$PWD/target/$PROFILE/cartero"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
gen() { python3 bench/bounce_hostile_gen.py "$@"; }

gen dsn-rcpts 1000 "$WORK/dsn-1k.eml"
gen dsn-rcpts 8000 "$WORK/dsn-8k.eml"
gen prose-rcpts 1000 "$WORK/prose-1k.eml"
gen prose-rcpts 8000 "$WORK/prose-8k.eml"
gen dsn-bytes 1000000 "$WORK/dsn-1mb.eml"
gen dsn-bytes 12000000 "$WORK/dsn-12mb.eml"
gen dsn-bytes 100000000 "$WORK/dsn-100mb.eml"
gen at-storm 12000000 "$WORK/storm-12mb.eml"

printf '%-16s %-16s %9s %8s %9s %10s %12s %12s\n' input limits MB rcpts records seconds "s/MB" "ms/rcpt"
run() { # name file recipients-in-input [extra args]
    local name="$1" file="$2" rcpts="$3"; shift 3
    local limits="default"; [[ $# -gt 0 ]] && limits="$*"
    local out="$WORK/out.jsonl" t="$WORK/time"
    /usr/bin/time -f '%e %M' -o "$t" "$BIN" feedback parse --format json "$@" "$file" > "$out"
    read -r secs kb < "$t"
    local recs; recs="$(wc -l < "$out")"
    python3 - "$name" "$limits" "$(stat -c %s "$file")" "$rcpts" "$recs" "$secs" "$kb" <<'PY'
import sys
name, limits, size, rcpts, recs, secs, kb = sys.argv[1:]
mb = int(size) / 1e6; secs = float(secs); rcpts = int(rcpts)
per_rcpt = f"{1000 * secs / rcpts:.3f}" if rcpts > 1 else "-"
print(f"{name:<16} {limits:<16} {mb:9.1f} {rcpts:8} {recs:>9} {secs:10.2f} {secs / mb:12.3f} {per_rcpt:>12}   peak {int(kb) / 1024:,.0f} MiB")
PY
}
run dsn-1k "$WORK/dsn-1k.eml" 1000
run dsn-8k "$WORK/dsn-8k.eml" 8000
run dsn-8k-all "$WORK/dsn-8k.eml" 8000 --max-recipients 0
run prose-1k "$WORK/prose-1k.eml" 1000
run prose-8k "$WORK/prose-8k.eml" 8000
run prose-8k-all "$WORK/prose-8k.eml" 8000 --max-recipients 0
run dsn-1mb "$WORK/dsn-1mb.eml" 1
run dsn-12mb "$WORK/dsn-12mb.eml" 1
run dsn-100mb "$WORK/dsn-100mb.eml" 1
run dsn-12mb-whole "$WORK/dsn-12mb.eml" 1 --max-bytes 0
run dsn-100mb-whole "$WORK/dsn-100mb.eml" 1 --max-bytes 0
run storm-12mb "$WORK/storm-12mb.eml" 1
run storm-12mb-whole "$WORK/storm-12mb.eml" 1 --max-bytes 0 --max-recipients 0
