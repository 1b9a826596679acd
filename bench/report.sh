#!/usr/bin/env bash
# Report speed at 1M and 10M events: builds CONTACTS contacts, 20 campaigns
# (the first sent to every contact, the others to a tenth each), then
# EVENTS events in two steps (a tenth, then the rest), and after each step
# times `cartero report campaign` and `cartero report kpis` (best of 3).
# Reports read the rollups, so the time should stay flat as events grow.
#
# The rows are generated with SQL directly (sqlite3 / psql), with the
# rollup triggers running as they do for cartero's writers. BULK=rebuild
# instead drops (SQLite) or disables (PostgreSQL) the events trigger during
# the insert and times `cartero report rebuild`.
#
# Usage: bench/report.sh sqlite|postgres [CONTACTS] [EVENTS]
#   defaults 1000000 10000000; CARTERO=path a built binary (default: release);
#   BULK=triggers (default) | rebuild;
#   PGURL=postgres://postgres@127.0.0.1:5432 for PostgreSQL.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
backend="${1:?sqlite or postgres}"
contacts="${2:-1000000}"
events="${3:-10000000}"
if [ -z "${CARTERO:-}" ]; then
  (cd "$root" && cargo build --release --quiet --bin cartero)
  CARTERO="$root/target/release/cartero"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '[sender]\nbounce_domain = "example.org"\n' > "$work/cartero.toml"

case "$backend" in
  sqlite)
    url="sqlite://$work/bench.db"
    sql() { sqlite3 "$work/bench.db"; }
    ;;
  postgres)
    pg="${PGURL:-postgres://postgres@127.0.0.1:5432}"
    db="cartero_bench_report_$$"
    psql "$pg/postgres" -qc "CREATE DATABASE $db" >/dev/null
    trap 'psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null; rm -rf "$work"' EXIT
    url="$pg/$db"
    sql() { psql -q -v ON_ERROR_STOP=1 "$url" >/dev/null; }
    ;;
  *) echo "sqlite or postgres" >&2; exit 2 ;;
esac
cartero() { (cd "$work" && "$CARTERO" --quiet --database-url "$url" "$@"); }
# Migrations.
cartero report rebuild >/dev/null

seq_sql() { # a numbers source 1..N, per dialect
  if [ "$backend" = sqlite ]; then
    echo "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) SELECT i FROM n"
  else
    echo "SELECT i FROM generate_series(1::bigint, $1) AS g(i)"
  fi
}
t0=1767225600000 # 2026-01-01
echo "building $contacts contacts and 20 campaigns ($backend)..."
start=$(date +%s)
{
  echo "BEGIN;"
  echo "INSERT INTO contacts (email, domain, first_name, status, created_at, updated_at)
        SELECT 'c' || i || '@' || d, d, 'N' || i, 'active', $t0 + i * 1000, $t0 + i * 1000
        FROM (SELECT i, CASE i % 10 WHEN 0 THEN 'gmail.com' WHEN 1 THEN 'gmail.com' WHEN 2 THEN 'outlook.com'
              WHEN 3 THEN 'hotmail.com' WHEN 4 THEN 'yahoo.com' WHEN 5 THEN 'aol.com'
              ELSE 'corp' || (i % 500) || '.example' END AS d FROM ($(seq_sql "$contacts")) s) x;"
  echo "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at, started_at)
        SELECT 'c' || i, 'Campaign ' || i, 'c.toml', 'x', 'newsletter', $t0, $t0 + i * 7 * 86400000
        FROM ($(seq_sql 20)) s;"
  # Campaign 1: every contact; campaigns 2..20: a tenth each.
  echo "INSERT INTO sends (campaign_id, contact_id, email, state, skip_reason, created_at, updated_at)
        SELECT CASE WHEN i <= $contacts THEN 1 ELSE 2 + (i - $contacts - 1) / ($contacts / 10) END,
               CASE WHEN i <= $contacts THEN i ELSE 1 + (i - $contacts - 1) % $contacts END,
               'x', CASE WHEN i % 50 = 0 THEN 'skipped' WHEN i % 97 = 0 THEN 'failed' ELSE 'accepted' END,
               CASE WHEN i % 50 = 0 THEN 'unsubscribed' END, $t0, $t0 + 60000
        FROM ($(seq_sql $((contacts + contacts / 10 * 19)))) s;"
  echo "COMMIT;"
} | sql
echo "  $(( $(date +%s) - start )) s"
nsends=$((contacts + contacts / 10 * 19))

add_events() { # from to: events numbered from..to, spread over the sends
  local from=$1 to=$2
  if [ "$backend" = sqlite ]; then
    local n="WITH RECURSIVE n(i) AS (SELECT $from UNION ALL SELECT i + 1 FROM n WHERE i < $to) SELECT i FROM n"
  else
    local n="SELECT i FROM generate_series(${from}::bigint, $to) AS g(i)"
  fi
  echo "INSERT INTO events (contact_id, campaign_id, send_id, kind, occurred_at, data)
        SELECT s.contact_id, s.campaign_id, s.id, k.kind, $t0 + (k.i % 200) * 3600000 + k.i % 3600000,
               CASE WHEN k.kind = 'click' THEN '{\"class\":\"' || k.class || '\",\"url\":\"https://shop.example/p' || (k.i % 20) || '\"}'
                    WHEN k.kind LIKE 'bounce%' THEN '{\"reason\":\"mailbox_unknown\"}'
                    ELSE '{\"class\":\"' || k.class || '\"}' END
        FROM (SELECT i, 1 + (i * 7919) % $nsends AS sid,
                     CASE WHEN i % 100 < 70 THEN 'open' WHEN i % 100 < 95 THEN 'click' WHEN i % 100 < 97 THEN 'bounce_hard'
                          WHEN i % 100 < 98 THEN 'bounce_soft' WHEN i % 100 < 99 THEN 'unsubscribe' ELSE 'complaint' END AS kind,
                     CASE WHEN i % 7 = 0 THEN 'prefetch' WHEN i % 11 = 0 THEN 'scanner' ELSE 'human' END AS class
              FROM ($n) x) k
        JOIN sends s ON s.id = k.sid;"
}
bulk_events() {
  local from=$1 to=$2 start
  start=$(date +%s)
  if [ "${BULK:-triggers}" = triggers ]; then
    # The rollup triggers run as they do for cartero's own writers.
    { echo "BEGIN;"; add_events "$from" "$to"; echo "COMMIT;";
      [ "$backend" = postgres ] && echo "VACUUM ANALYZE;"; } | sql
    echo "  events $from..$to inserted, rollups kept by the triggers, in $(( $(date +%s) - start )) s"
    return
  fi
  if [ "$backend" = sqlite ]; then
    trig=$(sqlite3 "$work/bench.db" "SELECT sql FROM sqlite_master WHERE name = 'events_report'")
    { echo "BEGIN; DROP TRIGGER events_report;"; add_events "$from" "$to"; echo "$trig;"; echo "COMMIT;"; } | sql
  else
    { echo "BEGIN; ALTER TABLE events DISABLE TRIGGER events_report;"; add_events "$from" "$to";
      echo "ALTER TABLE events ENABLE TRIGGER events_report; COMMIT; VACUUM ANALYZE;"; } | sql
  fi
  echo "  events $from..$to inserted in $(( $(date +%s) - start )) s"
  start=$(date +%s%N)
  cartero report rebuild >/dev/null
  echo "  report rebuild: $(( ($(date +%s%N) - start) / 1000000 )) ms"
}
best_of_3() {
  local best=999999999 t
  for _ in 1 2 3; do
    t=$(date +%s%N); cartero "$@" >/dev/null || [ $? -eq 1 ]; t=$(( ($(date +%s%N) - t) / 1000000 ))
    [ "$t" -lt "$best" ] && best=$t
  done
  echo "$best"
}
measure() {
  local label=$1
  echo "$label: $(sql_count) events; report campaign c1 (${contacts} recipients): $(best_of_3 report campaign c1 --format json) ms;" \
       "report campaign c5: $(best_of_3 report campaign c5 --format json) ms; report kpis: $(best_of_3 report kpis --format json) ms"
}
sql_count() {
  if [ "$backend" = sqlite ]; then sqlite3 "$work/bench.db" "SELECT count(*) FROM events"
  else psql -At "$url" -c "SELECT count(*) FROM events"; fi
}
echo "load: $(uptime)"
bulk_events 1 $((events / 10))
measure "step 1"
bulk_events $((events / 10 + 1)) "$events"
measure "step 2"
echo "load: $(uptime)"
