#!/usr/bin/env bash
# CPU time (user + system, every thread) that server processes spend per
# request answered under wrk: a figure the machine's other load moves much
# less than requests/s, since it counts the server's work, not its share of
# the cores. Used beside bench/tracking.sh (docs/PERFORMANCE.md).
#
# Usage: bench/cpu-per-request.sh LABEL URL PID...
#        (nginx: its worker PIDs; cartero: the serve PID; PostgreSQL: the
#        backends of the database, from pg_stat_activity)
# Env:   SECS (default 8), CONNS (64), THREADS (2)
set -euo pipefail
label=$1
url=$2
shift 2
tick=$(getconf CLK_TCK)
cpu() {
    local s=0 t
    for p in "$@"; do
        for t in /proc/"$p"/task/*/stat; do
            s=$((s + $(awk '{print $14 + $15}' "$t")))
        done
    done
    echo "$s"
}
before=$(cpu "$@")
out=$(wrk -t"${THREADS:-2}" -c"${CONNS:-64}" -d"${SECS:-8}s" -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench" "$url")
after=$(cpu "$@")
reqs=$(awk '/requests in/ {print $1}' <<<"$out")
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
python3 - "$label" "$rps" "$reqs" "$before" "$after" "$tick" <<'PY'
import sys
label, rps, reqs, a, b, tick = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), *map(int, sys.argv[4:])
cpu = (b - a) / tick
print(f"{label:32s} {rps:10.0f} req/s  cpu {cpu:6.2f} s  {cpu / reqs * 1e6:6.1f} us/request")
PY
