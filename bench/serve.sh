#!/usr/bin/env bash
# `cartero serve` benchmark: wrk on loopback against the open pixel and the
# click redirect of a real message (sent to the outbox first), with every
# event persisted, and nginx serving the same 43-byte GIF and the same 302
# as the reference, in the same run.
#
# For each target (pixel, click) and server (cartero, nginx):
#   wrk -t THREADS -c CONNS -d SECONDS: requests/s, p50 and p99 latency
# and for cartero, after a SIGTERM (which drains the event queue): events
# written to the database against requests answered by wrk, and events
# dropped by a full queue (from /metrics just before the stop).
#
# Usage: bench/serve.sh [SECONDS] [CONNS] [THREADS] [DB]
#        defaults: 10 64 2 sqlite   (DB: sqlite, or a postgres:// URL of an
#        empty database the bench may fill)
# Env:   PORT (default 48080) for cartero, NGINX_PORT (default 48081); KEEP=1
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"
CONNS="${2:-64}"
THREADS="${3:-2}"
DB="${4:-sqlite}"
PORT="${PORT:-48080}"
NGINX_PORT="${NGINX_PORT:-48081}"

for tool in wrk nginx python3; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || {
        echo "serve bench: $tool not found (apt-get install wrk nginx-light python3)" >&2
        exit 2
    }
done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

cargo build --release --quiet --bin cartero
BIN="$PWD/target/release/cartero"
TMP="$(mktemp -d)"
SERVE_PID=
NGINX_PID=
cleanup() {
    [[ -n "$SERVE_PID" ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
    [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2>/dev/null
    if [[ "${KEEP:-}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

echo "# machine: $(nproc) cores; $(uptime)"
echo "# wrk -t$THREADS -c$CONNS -d${SECS}s; database: ${DB%%://*}"

# --- A project with one contact and one message in the outbox.
P="$TMP/project"
mkdir -p "$P/campaigns" "$P/templates"
if [[ "$DB" == sqlite ]]; then DB_URL="sqlite://$P/cartero.db"; else DB_URL="$DB"; fi
cat >"$P/cartero.toml" <<EOF
[database]
url = "$DB_URL"
[sender]
bounce_domain = "bounces.example.org"
base_url = "http://127.0.0.1:$PORT"
unsubscribe_mailto = "unsubscribe@example.org"
message_id_domain = "example.org"
secret = "bench-secret-$(date +%s%N)"
[serve]
listen = "127.0.0.1:$PORT"
ip_storage = "full"
EOF
cat >"$P/templates/c.html" <<'EOF'
<html><body><p>Hola {{ contact.first_name }}</p><p><a href="https://shop.example/spring">Spring</a></p></body></html>
EOF
cat >"$P/campaigns/c.toml" <<'EOF'
name = "Bench"
subject = "Hola"
from = "Shop <news@shop.example>"
list = "newsletter"
[template]
html = "c.html"
[utm]
source = "cartero"
EOF
printf 'email,first_name\nana@example.com,Ana\n' >"$P/contacts.csv"
(cd "$P" && "$BIN" --quiet contacts import contacts.csv --list newsletter --consent-source bench >/dev/null)
(cd "$P" && "$BIN" --quiet campaign send campaigns/c.toml >/dev/null)
EML="$(ls "$P"/outbox/c/*.eml | head -1)"
read -r PIXEL CLICK < <(python3 - "$EML" <<'EOF'
import email, re, sys
from email import policy
msg = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
html = msg.get_body(("html",)).get_content()
pixel = re.search(r'src="(http://[^"]+/o/[^"]+)"', html).group(1)
click = re.search(r'href="(http://[^"]+/c/[^"]+)"', html).group(1).replace("&amp;", "&")
print(pixel, click)
EOF
)
PIXEL_PATH="/${PIXEL#http://*/}"
CLICK_PATH="/${CLICK#http://*/}"

# --- nginx: the same GIF with the same headers, the same 302.
mkdir -p "$TMP/nginx/o" "$TMP/nginx/logs"
# nginx's workers run as an unprivileged user: mktemp's 0700 would make
# every pixel a 403.
chmod 755 "$TMP"
python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex("4749463839610100010080000000000000ffffff21f90401000000002c00000000010001000002024401003b"))' \
    >"$TMP/nginx/o/pixel.gif"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes $THREADS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /o/pixel.gif {
            root $TMP/nginx;
            default_type image/gif;
            add_header Cache-Control "no-store, no-cache, must-revalidate, private, max-age=0";
        }
        location = /c/x { return 302 https://shop.example/spring?utm_source=cartero; }
    }
}
EOF
"$NGINX" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -g 'daemon off;' &
NGINX_PID=$!

# --- cartero serve.
(cd "$P" && exec "$BIN" --quiet serve) >"$TMP/serve.out" 2>"$TMP/serve.err" &
SERVE_PID=$!
for _ in $(seq 1 100); do
    grep -q listening "$TMP/serve.out" 2>/dev/null && break
    sleep 0.1
done
grep -q listening "$TMP/serve.out" || { cat "$TMP/serve.err"; exit 1; }

run_wrk() { # label url
    local out
    # A browser-like agent: hits without one are classified as a scanner's
    # and skip the contact's engagement counters, which should be measured.
    out="$(wrk --latency -t"$THREADS" -c"$CONNS" -d"${SECS}s" -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench" "$2")"
    local rps p50 p99 reqs non2xx
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
    non2xx="$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")"
    printf '%-16s %10s req/s  p50 %8s  p99 %8s  requests %9s  non-2xx/3xx %s\n' \
        "$1" "$rps" "$p50" "$p99" "$reqs" "${non2xx:-0}"
    LAST_REQS="$reqs"
}

run_wrk "nginx pixel" "http://127.0.0.1:$NGINX_PORT/o/pixel.gif"
run_wrk "cartero pixel" "http://127.0.0.1:$PORT$PIXEL_PATH"
PIXEL_REQS="$LAST_REQS"
run_wrk "nginx redirect" "http://127.0.0.1:$NGINX_PORT/c/x"
run_wrk "cartero redirect" "http://127.0.0.1:$PORT$CLICK_PATH"
CLICK_REQS="$LAST_REQS"

DROPPED="$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$PORT/metrics').read().decode())" \
    | awk '$1 == "cartero_events_dropped_total" {print $2}')"
kill -TERM "$SERVE_PID"
wait "$SERVE_PID" && echo "cartero serve: exit 0 after SIGTERM"
SERVE_PID=

count() { # kind
    if [[ "$DB" == sqlite ]]; then
        python3 -c "import sqlite3,sys; print(sqlite3.connect('$P/cartero.db').execute(\"SELECT COUNT(*) FROM events WHERE kind = '$1'\").fetchone()[0])"
    else
        psql -Atq "$DB" -c "SELECT COUNT(*) FROM events WHERE kind = '$1'"
    fi
}
echo "opens written:  $(count open) of $PIXEL_REQS answered; clicks written: $(count click) of $CLICK_REQS answered; dropped (queue full): $DROPPED"
