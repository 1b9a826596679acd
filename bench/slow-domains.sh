#!/usr/bin/env bash
# Slow recipient domains (issue 16, item 10): N recipients, a share of them at
# a domain whose server takes SLOW seconds to accept each message, and one
# recipient refused once with 451 (a retry falls due RETRY_BASE seconds
# later), sent by `cartero campaign send` to a loopback SMTP server
# (bench/slow_smtp.py). Each round runs, in this order:
#   all-fast/off   N recipients at fast domains, domain gate off (slow_domain_ms = 0)
#   all-fast/on    the same with the gate on (the defaults)
#   slow/on        the slow share and the retry, gate on
#   slow/off       the same, gate off (every worker goes wherever its rows lead)
# and prints per run: the whole send's wall time, the time until the last
# recipient at a fast domain was accepted, when the retry fell due and when
# it ran (seconds from the start). The last lines give the medians over the
# rounds and the ratio all-fast/on : all-fast/off (what the gate costs a
# healthy send; should be about 1.0). A comparison, not a timed test.
#
# Usage: bench/slow-domains.sh [N] [SLOW_SHARE_PERCENT] [SLOW_SECONDS] [CONCURRENCY]
#        defaults: 1000 5 2 4
# Env:   BIN (default: this tree's debug build, built first); ROUNDS (default 3);
#        RETRY_BASE (default 5); PORT (default 42526); KEEP=1 keeps the temp dir;
#        FAST_ONLY=1 runs the two all-fast runs only (the gate's cost, on a
#        larger N where a run's start-up is not most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
SHARE="${2:-5}"
SLOW="${3:-2}"
CONC="${4:-4}"
PORT="${PORT:-42526}"
ROUNDS="${ROUNDS:-3}"
RETRY_BASE="${RETRY_BASE:-5}"
if [[ -z "${BIN:-}" ]]; then
    cargo build --quiet
    BIN="$PWD/target/debug/cartero"
fi
TMP="$(mktemp -d)"
SERVER_PID=
cleanup() {
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    if [[ "${KEEP:-}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

echo "# machine: $(nproc) cores; $(uptime)"
echo "# $N recipients; slow runs: $SHARE% at slow.example (${SLOW} s a message) and 1 at retry.example (451 once, retry after ${RETRY_BASE} s), the rest over 10 fast domains; concurrency $CONC; $ROUNDS rounds"

# contacts.csv for a run: all fast, or with the slow share and the retry.
gen() {
    python3 - "$N" "$1" "$2" <<'PY'
import sys
n, share, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
every = max(1, round(100 / share)) if share else n + 1
with open(out, "w") as f:
    f.write("email,first_name\n")
    for i in range(n):
        if share and i == 0:
            domain = "retry.example"
        elif i % every == every - 1:
            domain = "slow.example"
        else:
            domain = f"fast{i % 10}.example"
        f.write(f"user{i}@{domain},User{i}\n")
PY
}
gen 0 "$TMP/fast.csv"
gen "$SHARE" "$TMP/slow.csv"

# run LABEL CSV SLOW_DOMAIN_MS: one send in a fresh project; prints a row
# and appends "label total fast_done" to $TMP/results.
run() {
    local label="$1" csv="$2" slow_ms="$3" P
    P="$(mktemp -d "$TMP/run.XXXX")"
    mkdir -p "$P/campaigns" "$P/templates"
    cp "$csv" "$P/contacts.csv"
    cat >"$P/cartero.toml" <<TOML
[sender]
bounce_domain = "example.org"
bounce_local = "bounces"
base_url = "https://news.shop.example"
unsubscribe_mailto = "unsubscribe@example.org"
message_id_domain = "shop.example"
secret = "bench-secret-0123456789abcdef"

[smtp]
host = "127.0.0.1"
port = $PORT
tls = "none"
concurrency = $CONC
retry_base_secs = $RETRY_BASE
slow_domain_ms = $slow_ms
TOML
    printf '<p>Hello {{ contact.first_name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n' >"$P/templates/b.html"
    printf 'name = "Bench"\nsubject = "Hello"\nfrom = "Shop <news@shop.example>"\nlist = "newsletter"\n\n[template]\nhtml = "b.html"\n' >"$P/campaigns/b.toml"
    (cd "$P" && "$BIN" --database-url "sqlite://$P/cartero.db" --quiet contacts import contacts.csv \
        --list newsletter --consent-source "bench" >/dev/null)
    local LOG="$P/accepted.log"
    : >"$LOG"
    python3 bench/slow_smtp.py "$PORT" "$LOG" "$SLOW" slow.example retry.example &
    SERVER_PID=$!
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    local start end
    start=$(date +%s.%N)
    (cd "$P" && "$BIN" --database-url "sqlite://$P/cartero.db" --quiet campaign send campaigns/b.toml >/dev/null)
    end=$(date +%s.%N)
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    python3 - "$LOG" "$start" "$end" "$label" "$RETRY_BASE" "$TMP/results" <<'PY'
import sys
log, start, end, label, base, results = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5]), sys.argv[6]
fast, slow, refused, retried = [], [], None, None
for line in open(log):
    parts = line.split()
    t, rcpt = float(parts[0]), parts[1]
    if rcpt.endswith("@retry.example"):
        if len(parts) > 2:
            refused = t
        else:
            retried = t
    elif rcpt.endswith("@slow.example"):
        slow.append(t)
    else:
        fast.append(t)
due = f"{refused + base - start:.1f}" if refused else "-"
ran = f"{retried - start:.1f}" if retried else "-"
fast_done = max(fast) - start if fast else 0
print(f"{label:<14} {end - start:9.1f} {fast_done:12.1f} {due:>10} {ran:>10} {len(slow):6d} {len(fast):6d}")
with open(results, "a") as f:
    f.write(f"{label} {end - start:.3f} {fast_done:.3f}\n")
PY
    rm -rf "$P"
}

printf '%-14s %9s %12s %10s %10s %6s %6s\n' run total_s fast_done_s retry_due retry_ran slow fast
for _ in $(seq 1 "$ROUNDS"); do
    run all-fast/off "$TMP/fast.csv" 0
    run all-fast/on "$TMP/fast.csv" 1000
    [[ "${FAST_ONLY:-}" == 1 ]] && continue
    run slow/on "$TMP/slow.csv" 1000
    run slow/off "$TMP/slow.csv" 0
done
python3 - "$TMP/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, total, fast = line.split()
    rows.setdefault(label, []).append((float(total), float(fast)))
print("# medians")
for label, v in rows.items():
    print(f"{label:<14} total {statistics.median(t for t, _ in v):6.1f} s   fast done {statistics.median(f for _, f in v):6.1f} s")
off = statistics.median(t for t, _ in rows["all-fast/off"])
on = statistics.median(t for t, _ in rows["all-fast/on"])
print(f"# all-fast with the gate / without: {on / off:.2f}")
PY
