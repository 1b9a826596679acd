#!/usr/bin/env bash
# Contact import benchmark (issues 2 and 17): 1,000,000 realistic CSV rows
# into a fresh SQLite database and a fresh PostgreSQL database, and into a
# non-empty one of each (500 contacts imported first, whose import leaves
# planner statistics behind: issue 17 found SQLite then scanning the table
# for every batch, 482 s instead of 40 s).
#
# Prints, per backend and per run: elapsed seconds, rows/s, cartero's CPU
# seconds and peak RSS (from /usr/bin/time -v) and the load average before
# the run, then a second run of the same file (idempotent: everything
# unchanged). The summary gives the median and the best of the runs and the
# non-empty/empty ratio. The CSV has ~2% invalid rows and ~1% duplicates
# (bench/gen_contacts.py), and the import subscribes everyone to a list with
# consent evidence, as the README's command does.
#
# Usage: bench/import.sh [ROWS] [RUNS]      (defaults: 1000000 rows, 3 runs)
# Env:   PG_URL   server to create the scratch database on
#                 (default postgres://postgres@127.0.0.1:5432; set PG_URL=none to skip)
#        KEEP=1   keep the temp dir (CSV, databases, logs)
#        CARTERO_BIN  a built binary instead of building the release one
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
RUNS="${2:-3}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"

if [[ -n "${CARTERO_BIN:-}" ]]; then
    BIN="$CARTERO_BIN"   # a release binary built earlier (the tree may have moved on)
else
    cargo build --release --quiet
    BIN="$PWD/target/release/cartero"
fi
TMP="$(mktemp -d)"
PGDB="cartero_bench_import_$$"
cleanup() {
    if [[ "$PG_URL" != none ]]; then
        for i in $(seq 1 "$RUNS"); do
            psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS ${PGDB}_$i" >/dev/null 2>&1 || true
        done
    fi
    if [[ "${KEEP:-}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

echo "# machine: $(nproc) cores; $(uptime)"
echo "# generating $ROWS rows ..."
python3 bench/gen_contacts.py "$ROWS" "$TMP/contacts.csv"
echo "# $(wc -c <"$TMP/contacts.csv") bytes"
python3 bench/gen_contacts.py 500 "$TMP/few.csv" 17
# Other addresses than the big file's: a non-empty database, not a re-import.
sed -i '2,$s/@/.few@/' "$TMP/few.csv"

# A project directory with only what import needs.
cat >"$TMP/cartero.toml" <<EOF
[sender]
secret = "bench-secret-0123456789abcdef"
EOF

# run LABEL DB_URL [FILE]: one import, prints a line of figures.
run() {
    local label="$1" url="$2" file="${3:-contacts.csv}"
    local log="$TMP/$label.time"
    local start end load
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    start=$(date +%s.%N)
    # Exit status 3 means "imported, some rows rejected": expected here.
    (cd "$TMP" && CARTERO_DATABASE_URL="$url" /usr/bin/time -v -o "$log" \
        "$BIN" contacts import "$file" --list newsletter \
        --consent-source "bench import" --rejects "$TMP/rejects.csv" \
        >"$TMP/$label.out" 2>"$TMP/$label.err") || [[ $? == 3 ]] || {
        echo "import failed ($label):"; cat "$TMP/$label.err"; exit 1; }
    end=$(date +%s.%N)
    local secs rss cpu
    secs=$(echo "$end - $start" | bc -l)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    # cartero's own CPU (user + system): less sensitive than wall time to
    # other tenants' load; the PostgreSQL server's CPU is not in it.
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$log")
    printf '%-22s %8.2f s %10.0f rows/s  cpu %7.2f s  peak RSS %6.1f MB  load %s  | %s\n' \
        "$label" "$secs" "$(echo "$ROWS / $secs" | bc -l)" "$cpu" "$(echo "$rss / 1024" | bc -l)" \
        "$load" "$(tr -s ' \n' ' ' <"$TMP/$label.out" | sed 's/rejected rows written to [^ ]*//')"
    echo "$secs" >>"$TMP/$label.secs"
}

median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
best() { sort -n "$1" | head -1; }

for i in $(seq 1 "$RUNS"); do
    rm -f "$TMP/cartero.db"*
    run "sqlite-first" "sqlite://$TMP/cartero.db"
    run "sqlite-again" "sqlite://$TMP/cartero.db"
    rm -f "$TMP/cartero.db"*
    run "sqlite-few" "sqlite://$TMP/cartero.db" few.csv >/dev/null
    run "sqlite-nonempty" "sqlite://$TMP/cartero.db"
    if [[ "$PG_URL" != none ]]; then
        psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS ${PGDB}_$i" >/dev/null
        psql "$PG_URL/postgres" -qc "CREATE DATABASE ${PGDB}_$i" >/dev/null
        run "postgres-first" "$PG_URL/${PGDB}_$i"
        run "postgres-again" "$PG_URL/${PGDB}_$i"
        psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS ${PGDB}_$i" >/dev/null
        psql "$PG_URL/postgres" -qc "CREATE DATABASE ${PGDB}_$i" >/dev/null
        run "postgres-few" "$PG_URL/${PGDB}_$i" few.csv >/dev/null
        run "postgres-nonempty" "$PG_URL/${PGDB}_$i"
        psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS ${PGDB}_$i" >/dev/null
    fi
done

echo
echo "# median and best of $RUNS runs, $ROWS rows ($(uptime | sed 's/.*load/load/'))"
for label in sqlite-first sqlite-again sqlite-nonempty postgres-first postgres-again postgres-nonempty; do
    [[ -f "$TMP/$label.secs" ]] || continue
    m=$(median "$TMP/$label.secs")
    b=$(best "$TMP/$label.secs")
    printf '%-22s median %8.2f s %10.0f rows/s   best %8.2f s\n' "$label" "$m" "$(echo "$ROWS / $m" | bc -l)" "$b"
done
# The cliff issue 17 found: into a non-empty database against an empty one
# (aim: at most 1.5x), best against best.
for b in sqlite postgres; do
    [[ -f "$TMP/$b-first.secs" && -f "$TMP/$b-nonempty.secs" ]] || continue
    printf '%-22s %8.2f x\n' "$b nonempty/first" \
        "$(echo "$(best "$TMP/$b-nonempty.secs") / $(best "$TMP/$b-first.secs")" | bc -l)"
done
