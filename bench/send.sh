#!/usr/bin/env bash
# Sending benchmark (issue 2): N personalised messages of about 10 KB sent by
# `cartero campaign send` to Postfix's smtp-sink on loopback, against
# Postfix's own smtp-source pushing the same number and size of messages over
# the same number of connections, in the same run.
#
# For each concurrency (smtp.concurrency = number of smtp-source sessions)
# and each signing mode (none, RSA-2048, Ed25519), each repeated RUNS times:
#   cartero   wall time of the whole `campaign send` process (snapshot of the
#             recipients, rendering, signing, SMTP, one recorded row per
#             message), messages/s, peak RSS (/usr/bin/time -v)
#   smtp-source -d -s C -m N -l 10240: wall time, messages/s
# and at the end the medians and the ratio cartero / smtp-source.
#
# Usage: bench/send.sh [N] [RUNS] [CONCURRENCIES] [MODES]
#        defaults: 20000 3 "4 16" "none rsa ed25519"
# Env:   PORT (default 42525) for smtp-sink; KEEP=1 keeps the temp dir;
#        TEMPLATE=newsletter (default) or catalogue (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000}"
RUNS="${2:-3}"
CONCS="${3:-4 16}"
MODES="${4:-none rsa ed25519}"
PORT="${PORT:-42525}"
TEMPLATE="${TEMPLATE:-newsletter}"
SIZE=10240

for tool in /usr/sbin/smtp-sink /usr/sbin/smtp-source openssl python3 bc; do
    command -v "$tool" >/dev/null || { echo "send bench: $tool not found (apt-get install postfix openssl bc)" >&2; exit 2; }
done

cargo build --release --quiet
BIN="$PWD/target/release/cartero"
TMP="$(mktemp -d)"
SINK_PID=
cleanup() {
    [[ -n "$SINK_PID" ]] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
    if [[ "${KEEP:-}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

echo "# machine: $(nproc) cores; $(uptime)"

# The sink: accepts everything, keeps nothing. Started once for the whole run.
/usr/sbin/smtp-sink -u postfix -m 1000 "127.0.0.1:$PORT" 1024 </dev/null >"$TMP/sink.log" 2>&1 &
SINK_PID=$!
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

# --- The project: N contacts, a ~10 KB personalised template, three configs.
P="$TMP/project"
mkdir -p "$P/campaigns" "$P/templates"
python3 - "$N" "$P/contacts.csv" <<'EOF'
import csv, random, sys
n, out = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(7)
first = ["Ana", "Bruno", "Chloé", "Dmitri", "Elif", "Grace", "Hiro", "Inés", "João", "Zoë"]
last = ["García", "Silva", "Martin", "Ivanov", "Yılmaz", "Smith", "Tanaka", "Müller"]
with open(out, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["email", "first_name", "last_name", "locale", "tags", "country", "plan", "orders"])
    for i in range(n):
        a, b = rnd.choice(first), rnd.choice(last)
        w.writerow([f"user{i}@example.com", a, b, rnd.choice(["en", "es", "fr"]),
                    rnd.choice(["vip", "", "early,vip"]), rnd.choice(["ES", "FR", "DE"]),
                    rnd.choice(["free", "pro"]), rnd.randint(0, 40)])
EOF

# Two templates (TEMPLATE=newsletter|catalogue), both about 10 KB a message:
# - newsletter: what marketers mostly send, an edition of static articles
#   with a dozen personal fields (greeting, plan and country sentences, a
#   four-item selection, the unsubscribe link);
# - catalogue: every one of 36 rows carries the contact's data, three
#   lookups and arithmetic a row, the heaviest rendering per byte.
if [[ "$TEMPLATE" == catalogue ]]; then
cat >"$P/templates/bench.html" <<'EOF'
<!doctype html>
<html lang="{{ contact.locale | default(value='en') }}">
<body style="font-family: sans-serif">
<h1>Hello {{ contact.first_name }} {{ contact.last_name }}!</h1>
<p>As a {{ contact.attributes.plan }} member in {{ contact.attributes.country }} with
{{ contact.attributes.orders }} orders, here is your personal selection.</p>
<table>
{% for i in range(end=36) %}<tr><td>Item {{ i }} picked for {{ contact.first_name }}</td><td>{{ contact.attributes.country }}-{{ contact.attributes.orders * 7 + i }}</td><td><a href="https://shop.example/p/{{ i }}?for={{ contact.email | urlencode }}">See it</a></td></tr>
{% endfor %}</table>
<p style="font-size: small">You get this because you subscribed to our newsletter.
<a href="{{ unsubscribe_url }}">Unsubscribe</a> at any time.</p>
</body>
</html>
EOF
cat >"$P/templates/bench.txt" <<'EOF'
Hello {{ contact.first_name }} {{ contact.last_name }}!

As a {{ contact.attributes.plan }} member in {{ contact.attributes.country }} with {{ contact.attributes.orders }} orders, here is your personal selection.
{% for i in range(end=36) %}
- Item {{ i }} picked for {{ contact.first_name }} ({{ contact.attributes.country }}-{{ contact.attributes.orders * 7 + i }}): https://shop.example/p/{{ i }}
{%- endfor %}

Unsubscribe: {{ unsubscribe_url }}
EOF
else
python3 - "$P/templates" <<'EOF'
import sys
out = sys.argv[1]
topics = [
    ("Autumn collection", "The new season brings wool blends, recycled down and a palette of rust, moss and slate."),
    ("Behind the seams", "We visited the family workshop in Guimarães that has stitched our jackets since 1998."),
    ("Care guide", "Wash cold, dry flat and store folded: knitwear lasts for years when it is not hung."),
    ("Repair programme", "Bring any garment we made back to a store and we mend it free of charge, whatever its age."),
    ("Community", "Readers sent more than four hundred photos of their oldest pieces; a few of them are below."),
    ("Shipping", "Orders placed before noon leave the warehouse the same day; returns stay free for 60 days."),
    ("Materials", "Our wool is mulesing-free and traceable to three farms; the cotton is organic and rain-fed."),
    ("Events", "Join us for the winter market: mending workshops, a swap rail and hot chocolate in every store."),
]
para = ("{body} Our designers spent the summer testing fabrics in the mountains and by the sea, "
        "and only what survived both made it into the shop. Each piece has a page with its full "
        "origin: where the fibre was grown, spun, dyed and sewn, and by whom. ")
html = ['<!doctype html>', '<html lang="{{ contact.locale | default(value=\'en\') }}">',
        '<body style="margin:0;padding:0;background:#f4f1ec;font-family:Georgia,serif;color:#222">',
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">',
        '<table role="presentation" width="600" cellpadding="24" cellspacing="0" style="background:#fff">',
        '<tr><td><h1 style="font-size:26px">Hello {{ contact.first_name }}!</h1>',
        '<p>{% if contact.attributes.plan == "pro" %}Thank you for being a Pro member: free express shipping is on us this month.'
        '{% else %}Members get free express shipping and early access: join from your account page.{% endif %}</p>',
        '<p>Prices and delivery times below are for {{ contact.attributes.country }}.</p></td></tr>']
text = ['Hello {{ contact.first_name }}!', '',
        '{% if contact.attributes.plan == "pro" %}Thank you for being a Pro member: free express shipping is on us this month.'
        '{% else %}Members get free express shipping and early access: join from your account page.{% endif %}', '',
        'Prices and delivery times below are for {{ contact.attributes.country }}.', '']
for i, (title, body) in enumerate(topics):
    html.append(f'<tr><td><h2 style="font-size:20px">{title}</h2><p style="line-height:1.5">{para.format(body=body)}</p>'
                f'<p><a href="https://shop.example/journal/{i}" style="color:#8a3b12">Read the story</a></p></td></tr>')
    text += [title.upper(), para.format(body=body), f'Read the story: https://shop.example/journal/{i}', '']
html.append('<tr><td><h2 style="font-size:20px">Picked for you, {{ contact.first_name }}</h2><ul>'
            '{% for p in ["Merino crew", "Waxed field jacket", "Linen overshirt", "Wool beanie"] %}'
            '<li><a href="https://shop.example/p/{{ loop.index }}?c={{ contact.attributes.country }}">{{ p }}</a></li>{% endfor %}</ul></td></tr>')
text += ['PICKED FOR YOU, {{ contact.first_name | upper }}',
         '{% for p in ["Merino crew", "Waxed field jacket", "Linen overshirt", "Wool beanie"] %}- {{ p }}: https://shop.example/p/{{ loop.index }}\n{% endfor %}']
html += ['<tr><td style="font-size:12px;color:#666">You get this because {{ contact.email }} subscribed to our newsletter. '
         '<a href="{{ unsubscribe_url }}">Unsubscribe</a> in one click, at any time.</td></tr>',
         '</table></td></tr></table></body></html>']
text += ['You get this because {{ contact.email }} subscribed to our newsletter.', 'Unsubscribe: {{ unsubscribe_url }}']
open(f"{out}/bench.html", "w").write("\n".join(html) + "\n")
open(f"{out}/bench.txt", "w").write("\n".join(text) + "\n")
EOF
fi
cat >"$P/campaigns/bench.toml" <<'EOF'
name = "Bench"
subject = "{{ contact.first_name }}, your personal selection"
from = "Cartero Shop <news@shop.example>"
reply_to = "Customer care <care@shop.example>"
list = "bench"

[template]
html = "bench.html"
text = "bench.txt"

[tracking]
opens = false
clicks = false
EOF

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$P/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$P/ed25519.pem" 2>/dev/null

# config MODE CONCURRENCY: writes cartero.toml
config() {
    cat >"$P/cartero.toml" <<EOF
[database]
url = "sqlite://run.db"

[sender]
bounce_domain = "bounces.shop.example"
base_url = "https://news.shop.example"
unsubscribe_mailto = "unsubscribe@bounces.shop.example"
message_id_domain = "shop.example"
secret = "bench-secret-0123456789abcdef"

[smtp]
host = "127.0.0.1"
port = $PORT
tls = "none"
helo_name = "bench.shop.example"
concurrency = $2
EOF
    case "$1" in
        rsa) printf '\n[dkim]\ndomain = "shop.example"\nselector = "bench"\nprivate_key = "rsa.pem"\nalgorithm = "rsa"\n' >>"$P/cartero.toml" ;;
        ed25519) printf '\n[dkim]\ndomain = "shop.example"\nselector = "bench"\nprivate_key = "ed25519.pem"\nalgorithm = "ed25519"\n' >>"$P/cartero.toml" ;;
    esac
}

# Import once; every run starts from a copy of this database.
config none 4
(cd "$P" && CARTERO_DATABASE_URL="sqlite://base.db" "$BIN" contacts import contacts.csv \
    --list bench --consent-source "bench" >/dev/null)
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()" "$P/base.db"
size=$(cd "$P" && CARTERO_DATABASE_URL="sqlite://base.db" "$BIN" campaign preview campaigns/bench.toml --contact user0@example.com | wc -c)
echo "# $N recipients, template $TEMPLATE; message size for the first contact: $size bytes unsigned (smtp-source: -l $SIZE)"

# cartero_run MODE C: one send, appends "secs rss_kb" to its results file.
cartero_run() {
    local mode="$1" c="$2"
    config "$mode" "$c"
    rm -f "$P"/run.db*
    cp "$P/base.db" "$P/run.db"
    local start end
    start=$(date +%s.%N)
    (cd "$P" && /usr/bin/time -v -o "$TMP/time.log" "$BIN" campaign send campaigns/bench.toml \
        >"$TMP/send.out" 2>"$TMP/send.err") || { echo "campaign send failed:"; cat "$TMP/send.err"; exit 1; }
    end=$(date +%s.%N)
    local accepted
    accepted=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM sends WHERE state='accepted'\").fetchone()[0])" "$P/run.db")
    [[ "$accepted" == "$N" ]] || { echo "only $accepted of $N accepted"; cat "$TMP/send.out" "$TMP/send.err"; exit 1; }
    local secs rss
    secs=$(echo "$end - $start" | bc -l)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TMP/time.log")
    echo "$secs $rss" >>"$TMP/cartero-$mode-$c"
    printf '  cartero %-8s c=%-3s %7.2f s %8.0f msg/s  peak RSS %6.1f MB\n' \
        "$mode" "$c" "$secs" "$(echo "$N / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
}

# source_run C: smtp-source with the same count, size and connections.
source_run() {
    local c="$1" start end secs
    start=$(date +%s.%N)
    /usr/sbin/smtp-source -d -s "$c" -m "$N" -l "$SIZE" -f bench@shop.example -t rcpt@example.com \
        "127.0.0.1:$PORT" </dev/null
    end=$(date +%s.%N)
    secs=$(echo "$end - $start" | bc -l)
    echo "$secs" >>"$TMP/source-$c"
    printf '  smtp-source       c=%-3s %7.2f s %8.0f msg/s\n' "$c" "$secs" "$(echo "$N / $secs" | bc -l)"
}

for run in $(seq 1 "$RUNS"); do
    echo "# run $run ($(uptime | sed 's/.*load/load/'))"
    for c in $CONCS; do
        source_run "$c"
        for mode in $MODES; do
            cartero_run "$mode" "$c"
        done
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "# medians of $RUNS runs, N=$N, ~10 KB, template $TEMPLATE ($(uptime | sed 's/.*load/load/'))"
printf '%-22s %5s %9s %10s %12s %10s\n' sender conns seconds "msg/s" "peak RSS MB" "vs source"
for c in $CONCS; do
    s=$(median <"$TMP/source-$c")
    src_rate=$(echo "$N / $s" | bc -l)
    printf '%-22s %5s %9.2f %10.0f %12s %10s\n' "smtp-source" "$c" "$s" "$src_rate" "-" "1.00"
    for mode in $MODES; do
        m=$(cut -d' ' -f1 "$TMP/cartero-$mode-$c" | median)
        r=$(cut -d' ' -f2 "$TMP/cartero-$mode-$c" | median)
        rate=$(echo "$N / $m" | bc -l)
        printf '%-22s %5s %9.2f %10.0f %12.1f %10.2f\n' "cartero dkim=$mode" "$c" "$m" "$rate" \
            "$(echo "$r / 1024" | bc -l)" "$(echo "$rate / $src_rate" | bc -l)"
    done
done
