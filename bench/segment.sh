#!/usr/bin/env bash
# Segment counting speed: `cartero segment count --filter ...` (parse, check,
# compile to parameterised SQL, run) against the same condition written by
# hand in the database's own client (sqlite3, psql), on N generated contacts,
# in the same run. Each figure is the median of ROUNDS runs and includes
# process start-up for both sides.
#
# Usage: bench/segment.sh [N] [ROUNDS]      (defaults: 1000000 contacts, 3 rounds)
# CARTERO_BIN=path skips the release build and uses that binary.
# Needs: sqlite3, psql, PostgreSQL at postgres://postgres@127.0.0.1:5432 (trust).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
ROUNDS="${2:-3}"
PG_ADMIN="${CARTERO_BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
PG_DB="cartero_bench_segment_$$"
if [[ -n "${CARTERO_BIN:-}" ]]; then
    BIN="$CARTERO_BIN"   # e.g. a debug build, to try the script quickly
else
    cargo build --release --quiet
    BIN="$PWD/target/release/cartero"
fi
WORK="$(mktemp -d)"
SQLITE_DB="$WORK/bench.db"
cleanup() {
    rm -rf "$WORK"
    psql "$PG_ADMIN/postgres" -qAtc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

NOW_MS="$(date +%s%3N)"
DAY=86400000
CUTOFF=$((NOW_MS - 90 * DAY))

echo "generating $N contacts (1 in 10 tagged vip, 1 in 5 in ES, clicks spread over a year) ..."
# The schema comes from cartero's own migrations.
"$BIN" --database-url "sqlite://$SQLITE_DB" segment count --filter false >/dev/null
sqlite3 "$SQLITE_DB" <<SQL
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $N),
d(i, dom) AS (SELECT i, CASE i % 4 WHEN 0 THEN 'gmail.com' WHEN 1 THEN 'yahoo.com'
                             WHEN 2 THEN 'example.org' ELSE 'x.test' END FROM s)
INSERT INTO contacts (email, domain, first_name, attributes, status, created_at, updated_at,
                      last_click_at, open_count)
SELECT 'user' || i || '@' || dom, dom, 'Name' || (i % 1000),
       json_object('country', CASE i % 5 WHEN 0 THEN 'ES' WHEN 1 THEN 'FR' WHEN 2 THEN 'US'
                                          WHEN 3 THEN 'DE' ELSE 'IT' END,
                   'age', i % 80, 'vip', json(CASE WHEN i % 7 = 0 THEN 'true' ELSE 'false' END)),
       'active', $NOW_MS, $NOW_MS, $NOW_MS - (i % 365) * $DAY, i % 50
FROM d;
INSERT INTO contact_tags (contact_id, tag) SELECT id, 'vip' FROM contacts WHERE id % 10 = 0;
ANALYZE;
SQL

psql "$PG_ADMIN/postgres" -qAtc "CREATE DATABASE $PG_DB" >/dev/null
PG_URL="$PG_ADMIN/$PG_DB"
"$BIN" --database-url "$PG_URL" segment count --filter false >/dev/null
psql "$PG_URL" -qAt >/dev/null <<SQL
INSERT INTO contacts (email, domain, first_name, attributes, status, created_at, updated_at,
                      last_click_at, open_count)
SELECT 'user' || i || '@' || dom, dom, 'Name' || (i % 1000),
       jsonb_build_object('country', CASE i % 5 WHEN 0 THEN 'ES' WHEN 1 THEN 'FR' WHEN 2 THEN 'US'
                                                WHEN 3 THEN 'DE' ELSE 'IT' END,
                          'age', i % 80, 'vip', i % 7 = 0),
       'active', $NOW_MS, $NOW_MS, $NOW_MS - (i % 365) * $DAY::bigint, i % 50
FROM (SELECT i, CASE i % 4 WHEN 0 THEN 'gmail.com' WHEN 1 THEN 'yahoo.com'
                           WHEN 2 THEN 'example.org' ELSE 'x.test' END AS dom
      FROM generate_series(1, $N) AS i) d;
INSERT INTO contact_tags (contact_id, tag) SELECT id, 'vip' FROM contacts WHERE id % 10 = 0;
VACUUM ANALYZE;
SQL

# name | cartero filter | hand-written SQLite condition | hand-written PostgreSQL condition
CASES=(
    "issue example|attributes.country == \"ES\" and \"vip\" in tags and last_click_at > now() - 90d|json_extract(c.attributes, '\$.country') = 'ES' AND EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_id = c.id AND t.tag = 'vip') AND c.last_click_at > $CUTOFF|c.attributes->>'country' = 'ES' AND EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_id = c.id AND t.tag = 'vip') AND c.last_click_at > $CUTOFF"
    "number attribute + domain|attributes.age >= 30 and domain in [\"gmail.com\", \"yahoo.com\"]|json_extract(c.attributes, '\$.age') >= 30 AND c.domain IN ('gmail.com', 'yahoo.com')|(c.attributes->>'age')::numeric >= 30 AND c.domain IN ('gmail.com', 'yahoo.com')"
    "boolean attribute or text match|attributes.vip or email contains \"99@\"|json_extract(c.attributes, '\$.vip') = 1 OR instr(c.email, '99@') > 0|(c.attributes->>'vip')::boolean OR c.email LIKE '%99@%'"
)

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
clock() { date +%s.%N; }
# time_of CMD...: seconds for one run, output to $WORK/out
time_of() {
    local t0 t1
    t0="$(clock)"
    "$@" >"$WORK/out"
    t1="$(clock)"
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

printf '\n%-32s %-10s %12s %12s %8s %s\n' "filter" "backend" "cartero s" "hand SQL s" "ratio" "counts"
for case in "${CASES[@]}"; do
    IFS='|' read -r name filter lite pg <<<"$case"
    for backend in sqlite postgres; do
        if [[ $backend == sqlite ]]; then
            url="sqlite://$SQLITE_DB"
            ref=(sqlite3 "$SQLITE_DB" "SELECT count(*) FROM contacts c WHERE $lite")
        else
            url="$PG_URL"
            ref=(psql "$PG_URL" -qAtc "SELECT count(*) FROM contacts c WHERE $pg")
        fi
        ours=(); theirs=()
        for _ in $(seq "$ROUNDS"); do
            ours+=("$(time_of "$BIN" --database-url "$url" segment count --filter "$filter" --format json)")
            n_ours="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['total'])" "$WORK/out")"
            theirs+=("$(time_of "${ref[@]}")")
            n_theirs="$(tr -d '[:space:]' <"$WORK/out")"
        done
        a="$(printf '%s\n' "${ours[@]}" | median)"
        b="$(printf '%s\n' "${theirs[@]}" | median)"
        ratio="$(python3 -c "print(f'{$a / $b:.2f}')")"
        same="$n_ours"
        [[ $n_ours == "$n_theirs" ]] || same="MISMATCH $n_ours vs $n_theirs"
        printf '%-32s %-10s %12s %12s %8s %s\n' "$name" "$backend" "$a" "$b" "$ratio" "$same"
    done
done
echo
echo "N=$N contacts, median of $ROUNDS runs, $(nproc) cores; ratio = cartero / hand-written SQL (lower is better)."
