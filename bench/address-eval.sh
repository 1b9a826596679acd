#!/usr/bin/env bash
# Agreement of `cartero address check` with the shared address corpus:
# verdict (vs the `expect` column and the others), normalised form and flags,
# scored by ../shared/tools/address-eval.py (its header defines the metrics).
#
# Usage: bench/address-eval.sh [CASES.jsonl ...]
#   default cases: ../shared/corpus/addresses/cases.jsonl (the dev split)
#   SHARED=/path/to/shared overrides where shared/ is; CARTERO=path a built binary.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${SHARED:-$root/../shared}"
[ -d "$shared" ] || { echo "no shared/ at $shared (set SHARED=...)" >&2; exit 2; }
eval_py="$shared/tools/address-eval.py"
if [ "$#" -eq 0 ]; then set -- "$shared/corpus/addresses/cases.jsonl"; fi
cases=()
for c in "$@"; do cases+=(--cases "$c"); done

if [ -z "${CARTERO:-}" ]; then
  (cd "$root" && cargo build --release --quiet --bin cartero)
  CARTERO="$root/target/release/cartero"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 "$eval_py" inputs "${cases[@]}" > "$work/inputs.jsonl"
# Exit 1 just means some address is invalid.
(cd "$work" && "$CARTERO" address check --json-input --format json \
  < "$work/inputs.jsonl" > "$work/output.jsonl") || [ $? -eq 1 ]
echo "cartero address check vs $*"
python3 "$eval_py" score "${cases[@]}" --output "$work/output.jsonl" --min-accuracy 0.99
