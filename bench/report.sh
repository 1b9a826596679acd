#!/usr/bin/env bash
# Report speed at 1M and 10M events: builds CONTACTS contacts, 20 campaigns
# (the first sent to every contact, the others to a tenth each), then
# EVENTS events in two steps (a tenth, then the rest), and after each step
# times `cartero report campaign` and `cartero report kpis` (best of 5),
# beside the floor every command pays (process start, connection, schema
# check): `report campaign` of a campaign that does not exist.
# Reports read the rollups, so the time should stay flat as events grow.
#
# The rows are generated with SQL directly (sqlite3 / psql), with the
# rollup triggers running as they do for cartero's writers. BULK=rebuild
# instead drops (SQLite) or disables (PostgreSQL) the rollup triggers of
# `sends` and `events` while their rows are inserted and times `cartero
# report rebuild` after each step: the same rollups, built in minutes
# instead of hours at 10M events (the triggers' cost on writes is
# bench/report-triggers.sh's). EXPLAIN=1 prints the plan of every query the
# two reports run, after each step.
#
# Usage: bench/report.sh sqlite|postgres [CONTACTS] [EVENTS]
#   defaults 1000000 10000000; CARTERO=path a built binary (default: release);
#   BULK=triggers (default) | rebuild; EXPLAIN=1;
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
    # A 4 GB page cache: the inserts land in random places of the events
    # and sends indexes, which SQLite's default 2 MB cache turns into
    # reads of the same pages again and again.
    sql() { { echo "PRAGMA cache_size = -4000000; PRAGMA synchronous = OFF;"; cat; } | sqlite3 "$work/bench.db" >/dev/null; }
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

rollup_triggers() { # TABLE: the rollup triggers on it
  if [ "$backend" = sqlite ]; then
    sqlite3 "$work/bench.db" "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '$1' \
                              AND (name LIKE '%report%')"
  else
    psql -At "$url" -c "SELECT tgname FROM pg_trigger WHERE tgrelid = '$1'::regclass AND tgname LIKE '%report%'"
  fi
}
without_rollups() { # TABLE, then SQL on stdin: run it with the table's rollup triggers off
  local t=$1 names body
  names=$(rollup_triggers "$t")
  body=$(cat)
  if [ "$backend" = sqlite ]; then
    local saved
    saved=$(for n in $names; do sqlite3 "$work/bench.db" "SELECT sql || ';' FROM sqlite_master WHERE name = '$n'"; done)
    { echo "BEGIN;"; for n in $names; do echo "DROP TRIGGER $n;"; done
      echo "$body"; echo "$saved"; echo "COMMIT;"; } | sql
  else
    { echo "BEGIN;"; for n in $names; do echo "ALTER TABLE $t DISABLE TRIGGER $n;"; done
      echo "$body"; for n in $names; do echo "ALTER TABLE $t ENABLE TRIGGER $n;"; done
      echo "COMMIT;"; } | sql
  fi
}

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
build_sends() {
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
}
if [ "${BULK:-triggers}" = triggers ]; then
  { echo "BEGIN;"; build_sends; echo "COMMIT;"; } | sql
else
  build_sends | without_rollups sends
fi
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
  add_events "$from" "$to" | without_rollups events
  [ "$backend" = postgres ] && echo "VACUUM ANALYZE;" | sql
  echo "  events $from..$to inserted in $(( $(date +%s) - start )) s"
  start=$(date +%s%N)
  cartero report rebuild >/dev/null
  echo "  report rebuild: $(( ($(date +%s%N) - start) / 1000000 )) ms"
  # What autovacuum would do soon after: the rebuild left the old rows dead.
  [ "$backend" = postgres ] && echo "VACUUM ANALYZE;" | sql
  return 0
}
best_of_5() {
  local best=999999999 t
  for _ in 1 2 3 4 5; do
    t=$(date +%s%N); cartero "$@" >/dev/null || [ $? -eq 1 ]; t=$(( ($(date +%s%N) - t) / 1000000 ))
    [ "$t" -lt "$best" ] && best=$t
  done
  echo "$best"
}
explain() { # the plan of every query of `report campaign c1` and `report kpis`
  local q
  while IFS= read -r q; do
    echo "  $q"
    if [ "$backend" = sqlite ]; then
      sqlite3 "$work/bench.db" "EXPLAIN QUERY PLAN $q" | sed 's/^/    /'
    else
      psql -At "$url" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) $q" | sed 's/^/    /'
    fi
  done <<'Q'
SELECT id, slug, name, list_name, started_at FROM campaigns WHERE slug = 'c1' OR name = 'c1' ORDER BY CASE WHEN slug = 'c1' THEN 0 ELSE 1 END, id LIMIT 1
SELECT domain, outcome, events FROM report_domains WHERE campaign_id = 1
SELECT kind, reason, events FROM report_reasons WHERE campaign_id = 1 AND events <> 0
SELECT kind, machine, sends FROM report_uniques WHERE campaign_id = 1
SELECT kind, machine, hour_at, events FROM report_hourly WHERE campaign_id = 1 AND events <> 0
SELECT url, machine, sends, events FROM report_link_totals WHERE campaign_id = 1
SELECT currency, COUNT(*), CAST(COALESCE(SUM(value_minor), 0) AS BIGINT) FROM conversions WHERE campaign_id = 1 GROUP BY currency ORDER BY 3 DESC, 1
SELECT id, COALESCE(started_at, created_at) FROM campaigns
SELECT campaign_id, domain, outcome, events FROM report_domains WHERE outcome IN ('accepted', 'bounce_hard', 'bounce_soft', 'complaint', 'unsubscribe')
SELECT campaign_id, kind, sends FROM report_uniques WHERE machine = 0 AND kind IN ('open', 'click')
Q
}
measure() {
  local label=$1
  [ -n "${EXPLAIN:-}" ] && { echo "$label: query plans"; explain; }
  # The floor: start the binary, connect, check the schema, find no campaign.
  echo "$label: $(sql_count) events; $(uptime | sed 's/.*load/load/');" \
       "report campaign c1 (${contacts} recipients): $(best_of_5 report campaign c1 --format json) ms;" \
       "report campaign c5: $(best_of_5 report campaign c5 --format json) ms; report kpis: $(best_of_5 report kpis --format json) ms;" \
       "floor (report campaign of no campaign): $(best_of_5 report campaign no-such-campaign) ms"
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
