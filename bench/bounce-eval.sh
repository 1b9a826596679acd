#!/usr/bin/env bash
# Bounce classification accuracy on the shared dev corpus.
#
# Runs `cartero feedback parse --format json` once over every corpus file and
# scores the output with ../shared/tools/bounce-eval.py (its header defines
# the metrics), for the as-published files (--scope primary) and for the CRLF
# and CR-only copies (--scope variants).
#
# Usage: bench/bounce-eval.sh [--debug] [extra score options, e.g. --worst 40]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${CARTERO_SHARED:-../shared}"
CORPUS="$SHARED/corpus/bounces"
EVAL="$SHARED/tools/bounce-eval.py"
if [[ ! -f "$CORPUS/expected.jsonl" || ! -f "$EVAL" ]]; then
    echo "bounce-eval: $CORPUS/expected.jsonl or $EVAL not found; this benchmark needs the shared corpus beside the checkout (set CARTERO_SHARED to point elsewhere)." >&2
    exit 2
fi
PROFILE=release
if [[ "${1:-}" == "--debug" ]]; then PROFILE=debug; shift; fi
if [[ "$PROFILE" == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
BIN="$PWD/target/$PROFILE/cartero"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# One invocation over all files; `file` is printed as given (relative to the
# corpus root, which is what the gold file uses).
( cd "$CORPUS" && python3 -c 'import json,sys; print("\n".join(sorted({json.loads(l)["file"] for l in open("expected.jsonl")})))' \
    | xargs "$BIN" feedback parse --format json ) > "$OUT/out.jsonl"
for scope in primary variants; do
    echo "### scope=$scope"
    python3 "$EVAL" score --gold "$CORPUS/expected.jsonl" --outputs "$OUT/out.jsonl" --scope "$scope" "$@"
    echo
done
