#!/usr/bin/env bash
# MX checks per second against a local dnsmasq, cartero's MxChecker beside
# the reference, email-validator's deliverability check (dnspython), on the
# same domains in the same run. Three runs each; prints every figure.
#
#   bench/mx.sh            # N=20000 domains
#   N=5000 bench/mx.sh
#
# Zone: N domains under bench.test: 60% MX with a resolving host, 20% A
# only, 10% null MX, 10% absent (NXDOMAIN). Needs dnsmasq-base and
# python3-email-validator (pip: email-validator).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
RUNS=${RUNS:-3}
tmp=$(mktemp -d)
dnsmasq_pid=""
cleanup() {
    [[ -n "$dnsmasq_pid" ]] && kill "$dnsmasq_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

python3 - "$N" "$tmp" <<'PY'
import sys
n, tmp = int(sys.argv[1]), sys.argv[2]
zone, domains = [], []
for i in range(n):
    d = f"d{i}.bench.test"
    domains.append(d)
    k = i % 10
    if k < 6:
        zone.append(f"mx-host={d},mx{i}.bench.test,10")
        zone.append(f"host-record=mx{i}.bench.test,198.51.{(i >> 8) & 255}.{i & 255}")
    elif k < 8:
        zone.append(f"host-record={d},198.18.{(i >> 8) & 255}.{i & 255}")
    elif k < 9:
        zone.append(f"dns-rr={d},15,000000")
    # k == 9: not in the zone, NXDOMAIN
open(f"{tmp}/zone.conf", "w").write("\n".join(zone) + "\n")
open(f"{tmp}/domains.txt", "w").write("\n".join(domains) + "\n")
PY

cat > "$tmp/dnsmasq.conf" <<CONF
port=$port
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-poll
local=/test/
local-ttl=300
user=root
cache-size=0
conf-file=$tmp/zone.conf
CONF
/usr/sbin/dnsmasq --keep-in-foreground --conf-file="$tmp/dnsmasq.conf" </dev/null >"$tmp/dnsmasq.log" 2>&1 &
dnsmasq_pid=$!
for _ in $(seq 1 50); do
    dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 d0.bench.test MX >/dev/null 2>&1 && break
    sleep 0.1
done

cargo build --release --quiet --example mx_bench
bin=target/release/examples/mx_bench

echo "== $N domains, dnsmasq on 127.0.0.1:$port, $(nproc) cores"
for c in 1 32; do
    for r in $(seq 1 "$RUNS"); do
        echo "run $r: $bin 127.0.0.1:$port domains.txt $c"
        "$bin" "127.0.0.1:$port" "$tmp/domains.txt" "$c"
    done
done

echo "== reference: email_validator.deliverability.validate_email_deliverability (dnspython, sequential)"
for r in $(seq 1 "$RUNS"); do
    python3 - "$port" "$tmp/domains.txt" <<'PY'
import sys, time
import dns.resolver
from email_validator.deliverability import validate_email_deliverability
from email_validator import EmailUndeliverableError
port, path = int(sys.argv[1]), sys.argv[2]
domains = open(path).read().split()
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = port
r.lifetime = 3
r.cache = None  # cold, like cartero's first pass
t = time.perf_counter()
undeliverable = 0
for d in domains:
    try:
        validate_email_deliverability(d, d, dns_resolver=r)
    except EmailUndeliverableError:
        undeliverable += 1
dt = time.perf_counter() - t
print(f"email-validator: {len(domains)} domains: {len(domains)/dt:.0f} checks/s ({dt:.2f} s), undeliverable {undeliverable}")
PY
done
