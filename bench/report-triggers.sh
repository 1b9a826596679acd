#!/usr/bin/env bash
# What the rollup triggers cost the event writer: 100,000 opens and clicks
# through store::track::insert_hits (the SQL of `cartero serve`'s writer),
# 1,000 per transaction, into a fresh database with the rollup triggers on
# and one with them off; ROUNDS rounds alternating, every figure printed.
#
# Usage: bench/report-triggers.sh sqlite|postgres [EVENTS]
#   ROUNDS=2; PGURL=postgres://postgres@127.0.0.1:5432 for PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:?sqlite or postgres}"
events="${2:-100000}"
cargo build --release --quiet --example report-triggers
bin=target/release/examples/report-triggers
work="$(mktemp -d)"
pg="${PGURL:-postgres://postgres@127.0.0.1:5432}"
dbs=()
cleanup() {
  for d in "${dbs[@]}"; do psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $d" >/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
echo "load: $(uptime)"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for mode in on off; do
    if [ "$backend" = sqlite ]; then
      url="sqlite://$work/r$round-$mode.db"
    else
      d="cartero_bench_triggers_$$_${round}_$mode"
      psql "$pg/postgres" -qc "CREATE DATABASE $d" >/dev/null
      dbs+=("$d")
      url="$pg/$d"
    fi
    "$bin" "$url" "$events" 1000 $([ "$mode" = off ] && echo --without)
  done
done
echo "load: $(uptime)"
