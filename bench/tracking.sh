#!/usr/bin/env bash
# Tracking benchmark of `cartero serve`: wrk on loopback against the open
# pixel and the click redirect of a real message (sent to the outbox
# first), with every event persisted, on SQLite and on PostgreSQL, beside a
# private nginx serving the same 43-byte GIF and the same 302 in the same
# run; then two `cartero serve` nodes on one PostgreSQL behind that nginx
# as a loopback load balancer.
#
# Printed for each run: requests/s, p50 and p99 latency (wrk --latency),
# the machine's load (`uptime`) beside it; and for cartero, after SIGTERM
# (which drains the event queue): events written to the database against
# requests the server answered (its /metrics, counted before the stop) and
# against requests wrk counted (wrk does not count the requests in flight
# when its time is up, so the server may have answered a few more), and
# events dropped by a full queue.
#
# Usage: bench/tracking.sh [SECONDS] [CONNS] [THREADS] [PG_URL]
#        defaults: 10 64 2 postgres://postgres@127.0.0.1:5432/postgres
#        (PG_URL names a server where the bench may create and drop the
#        databases cartero_tracking_bench*; "none" skips PostgreSQL)
# Env:   CARTERO_BIN: a built binary (default: build and use the release one)
#        PORT (default 48080; the second node uses PORT+1), NGINX_PORT
#        (default 48081), LB_PORT (default 48082), KEEP=1 keeps the files.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"
CONNS="${2:-64}"
THREADS="${3:-2}"
PG="${4:-postgres://postgres@127.0.0.1:5432/postgres}"
PORT="${PORT:-48080}"
PORT2=$((PORT + 1))
NGINX_PORT="${NGINX_PORT:-48081}"
LB_PORT="${LB_PORT:-48082}"
[[ "$PORT2" == "$NGINX_PORT" ]] && NGINX_PORT=$((PORT + 3))

for tool in wrk python3 curl; do
    command -v "$tool" >/dev/null || {
        echo "tracking bench: $tool not found (apt-get install wrk nginx-light python3 curl)" >&2
        exit 2
    }
done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[[ -x "$NGINX" ]] || { echo "tracking bench: nginx not found" >&2; exit 2; }

if [[ -n "${CARTERO_BIN:-}" ]]; then
    BIN="$CARTERO_BIN"   # e.g. target/debug/cartero when no release build fits the time
else
    cargo build --release --quiet --bin cartero
    BIN="$PWD/target/release/cartero"
fi
TMP="$(mktemp -d)"
PIDS=()
NGINX_PID=
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2>/dev/null
    if [[ "${KEEP:-}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
# nginx's workers run as an unprivileged user: mktemp's 0700 would make
# every pixel a 403.
chmod 755 "$TMP"

load() { uptime | sed 's/.*load average: //'; }
echo "# $(date -u +%FT%TZ); machine: $(nproc) cores; load $(load)"
echo "# binary: $BIN"
echo "# wrk -t$THREADS -c$CONNS -d${SECS}s --latency; browser user agent"

# --- nginx: the reference (a static GIF, a fixed 302) and the balancer.
mkdir -p "$TMP/nginx/o" "$TMP/nginx/logs"
python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex("4749463839610100010080000000000000ffffff21f90401000000002c00000000010001000002024401003b"))' \
    >"$TMP/nginx/o/pixel.gif"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes $THREADS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    upstream cartero {
        server 127.0.0.1:$PORT;
        server 127.0.0.1:$PORT2;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /o/pixel.gif {
            root $TMP/nginx;
            default_type image/gif;
            add_header Cache-Control "no-store, no-cache, must-revalidate, private, max-age=0";
        }
        location = /c/x { return 302 https://shop.example/spring?utm_source=cartero; }
    }
    server {
        listen 127.0.0.1:$LB_PORT;
        location / {
            proxy_pass http://cartero;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
EOF
"$NGINX" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -g 'daemon off;' &
NGINX_PID=$!

run_wrk() { # label url -> prints a line; sets LAST_REQS
    local out rps p50 p99 reqs non2xx
    out="$(wrk --latency -t"$THREADS" -c"$CONNS" -d"${SECS}s" -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench" "$2")"
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
    non2xx="$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")"
    printf '%-28s %10s req/s  p50 %8s  p99 %8s  requests %9s  non-2xx/3xx %-6s load %s\n' \
        "$1" "$rps" "$p50" "$p99" "$reqs" "${non2xx:-0}" "$(load)"
    LAST_REQS="$reqs"
}

# A project with one contact and one message in the outbox, on DB_URL.
project() { # dir db_url
    local P="$1"
    mkdir -p "$P/campaigns" "$P/templates"
    cat >"$P/cartero.toml" <<EOF
[database]
url = "$2"
[sender]
bounce_domain = "bounces.example.org"
base_url = "http://127.0.0.1:$PORT"
unsubscribe_mailto = "unsubscribe@example.org"
message_id_domain = "example.org"
secret = "bench-secret-$(date +%s%N)"
[serve]
listen = "127.0.0.1:$PORT"
ip_storage = "full"
trusted_proxies = ["127.0.0.1"]
[feedback]
interval_secs = 0
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
    local eml
    eml="$(ls "$P"/outbox/c/*.eml | head -1)"
    read -r PIXEL_PATH CLICK_PATH < <(python3 - "$eml" <<'EOF'
import email, re, sys
from email import policy
msg = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
html = msg.get_body(("html",)).get_content()
pixel = re.search(r'src="http://[^/"]+(/o/[^"]+)"', html).group(1)
click = re.search(r'href="http://[^/"]+(/c/[^"]+)"', html).group(1).replace("&amp;", "&")
print(pixel, click)
EOF
)
}

start_node() { # dir port -> sets NODE_PID
    (cd "$1" && exec "$BIN" --quiet serve --listen "127.0.0.1:$2") >"$1/serve-$2.out" 2>"$1/serve-$2.err" &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    for _ in $(seq 1 100); do
        grep -q listening "$1/serve-$2.out" 2>/dev/null && return
        sleep 0.1
    done
    cat "$1/serve-$2.err"
    exit 1
}

metric() { # port name -> value (sum over label sets)
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" 'index($1, n) == 1 {s += $2} END {print s + 0}'
}

stop_node() { # pid
    kill -TERM "$1"
    wait "$1" || { echo "cartero serve exited $?"; exit 1; }
}

count() { # db_url kind
    if [[ "$1" == sqlite://* ]]; then
        python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM events WHERE kind = '$2'\").fetchone()[0])" "${1#sqlite://}"
    else
        psql -Atq "$1" -c "SELECT COUNT(*) FROM events WHERE kind = '$2'"
    fi
}

pg_db() { # name -> url of a fresh database
    psql -Atq "$PG" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    echo "${PG%/*}/$1"
}

single() { # label db_url
    local P="$TMP/$1" url="$2"
    project "$P" "$url"
    start_node "$P" "$PORT"
    local pid="$NODE_PID"
    echo "## $1: one node"
    run_wrk "nginx pixel" "http://127.0.0.1:$NGINX_PORT/o/pixel.gif"
    run_wrk "cartero pixel ($1)" "http://127.0.0.1:$PORT$PIXEL_PATH"
    local pixel_wrk="$LAST_REQS"
    run_wrk "nginx redirect" "http://127.0.0.1:$NGINX_PORT/c/x"
    run_wrk "cartero redirect ($1)" "http://127.0.0.1:$PORT$CLICK_PATH"
    local click_wrk="$LAST_REQS"
    local pixel_ok click_ok dropped
    pixel_ok="$(metric "$PORT" 'cartero_http_requests_total{route="/o/{file}",status="200"}')"
    click_ok="$(metric "$PORT" 'cartero_http_requests_total{route="/c/{token}",status="302"}')"
    dropped="$(metric "$PORT" cartero_events_dropped_total)"
    waited="$(metric "$PORT" cartero_events_waited_total)"
    batches="$(metric "$PORT" cartero_event_batches_total)"
    written="$(metric "$PORT" cartero_events_written_total)"
    stop_node "$pid"
    echo "opens  written $(count "$url" open) / answered $pixel_ok (wrk counted $pixel_wrk)"
    echo "clicks written $(count "$url" click) / answered $click_ok (wrk counted $click_wrk)"
    echo "dropped (queue full): $dropped; waited for room: $waited; cartero serve exit 0 after SIGTERM"
    echo "writer: $written events in $batches transactions before the stop"
}

single sqlite "sqlite://$TMP/sqlite/cartero.db"
if [[ "$PG" != none ]]; then
    single postgres "$(pg_db cartero_tracking_bench)"

    # --- Two nodes on one PostgreSQL behind nginx.
    url="$(pg_db cartero_tracking_bench_lb)"
    P="$TMP/lb"
    project "$P" "$url"
    start_node "$P" "$PORT"
    n1="$NODE_PID"
    start_node "$P" "$PORT2"
    n2="$NODE_PID"
    echo "## postgres: two nodes behind nginx (127.0.0.1:$LB_PORT -> :$PORT, :$PORT2)"
    run_wrk "lb pixel (2 nodes)" "http://127.0.0.1:$LB_PORT$PIXEL_PATH"
    pixel_wrk="$LAST_REQS"
    run_wrk "lb redirect (2 nodes)" "http://127.0.0.1:$LB_PORT$CLICK_PATH"
    click_wrk="$LAST_REQS"
    ok() { echo $(( $(metric "$PORT" "$1") + $(metric "$PORT2" "$1") )); }
    pixel_ok="$(ok 'cartero_http_requests_total{route="/o/{file}",status="200"}')"
    click_ok="$(ok 'cartero_http_requests_total{route="/c/{token}",status="302"}')"
    per_node="$(metric "$PORT" 'cartero_http_requests_total{route="/o/{file}",status="200"}') + $(metric "$PORT2" 'cartero_http_requests_total{route="/o/{file}",status="200"}')"
    dropped="$(ok cartero_events_dropped_total)"
    waited="$(ok cartero_events_waited_total)"
    stop_node "$n1"
    stop_node "$n2"
    echo "opens  written $(count "$url" open) / answered $pixel_ok ($per_node per node; wrk counted $pixel_wrk)"
    echo "clicks written $(count "$url" click) / answered $click_ok (wrk counted $click_wrk)"
    echo "dropped (queue full): $dropped; waited for room: $waited; both nodes exit 0 after SIGTERM"
    psql -Atq "$PG" -c "DROP DATABASE cartero_tracking_bench" -c "DROP DATABASE cartero_tracking_bench_lb" >/dev/null
fi
echo "# end $(date -u +%FT%TZ); load $(load)"
