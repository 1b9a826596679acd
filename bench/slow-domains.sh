#!/usr/bin/env bash
# Slow recipient domains (issue 16 item 10): N recipients, a share of them at
# a domain whose server takes SLOW seconds to accept each message, sent by
# `cartero campaign send` to a loopback SMTP server (bench/slow_smtp.py).
# Prints, for each binary given, the whole send's wall time and the time
# until every recipient at the other (fast) domains was accepted: how long
# the slow domain held the others up. A comparison, not a timed test: run
# it with the binary before a change and after, in the same run.
#
# Usage: bench/slow-domains.sh [N] [SLOW_SHARE_PERCENT] [SLOW_SECONDS] [CONCURRENCY]
#        defaults: 1000 5 2 4
# Env:   BINARIES="label=/path/to/cartero ..." (default: this tree's debug
#        build, built first); PORT (default 42526); KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
SHARE="${2:-5}"
SLOW="${3:-2}"
CONC="${4:-4}"
PORT="${PORT:-42526}"
if [[ -z "${BINARIES:-}" ]]; then
    cargo build --quiet
    BINARIES="this-tree=$PWD/target/debug/cartero"
fi
TMP="$(mktemp -d)"
SERVER_PID=
cleanup() {
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    if [[ "${KEEP:-}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

echo "# machine: $(nproc) cores; $(uptime)"
echo "# $N recipients, $SHARE% at slow.example (${SLOW} s a message), the rest over 10 fast domains; concurrency $CONC"

python3 - "$N" "$SHARE" "$TMP/contacts.csv" <<'PY'
import sys
n, share, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
every = max(1, round(100 / share)) if share else n + 1
with open(out, "w") as f:
    f.write("email,first_name\n")
    for i in range(n):
        domain = "slow.example" if i % every == every - 1 else f"fast{i % 10}.example"
        f.write(f"user{i}@{domain},User{i}\n")
PY

printf '%-14s %10s %16s %8s %8s\n' binary total_s fast_all_done_s slow fast
for pair in $BINARIES; do
    label="${pair%%=*}"
    bin="${pair#*=}"
    P="$TMP/$label"
    mkdir -p "$P/campaigns" "$P/templates"
    cp "$TMP/contacts.csv" "$P/contacts.csv"
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
TOML
    printf '<p>Hello {{ contact.first_name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n' >"$P/templates/b.html"
    printf 'name = "Bench"\nsubject = "Hello"\nfrom = "Shop <news@shop.example>"\nlist = "newsletter"\n\n[template]\nhtml = "b.html"\n' >"$P/campaigns/b.toml"
    (cd "$P" && "$bin" --database-url "sqlite://$P/cartero.db" --quiet contacts import contacts.csv \
        --list newsletter --consent-source "bench" >/dev/null)
    LOG="$P/accepted.log"
    : >"$LOG"
    python3 bench/slow_smtp.py "$PORT" "$LOG" "$SLOW" slow.example &
    SERVER_PID=$!
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    start=$(date +%s.%N)
    (cd "$P" && "$bin" --database-url "sqlite://$P/cartero.db" --quiet campaign send campaigns/b.toml >/dev/null)
    end=$(date +%s.%N)
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    python3 - "$LOG" "$start" "$end" "$label" <<'PY'
import sys
log, start, end, label = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
fast, slow = [], []
for line in open(log):
    t, rcpt = line.split()
    (slow if rcpt.endswith("@slow.example") else fast).append(float(t))
print(f"{label:<14} {end - start:10.1f} {max(fast) - start if fast else 0:16.1f} {len(slow):8d} {len(fast):8d}")
PY
done
