#!/usr/bin/env bash
# Bounce classification speed: messages per second over the shared bounce
# corpus, for `cartero feedback parse` on one core and on all cores, and for
# Debian's Sisimai 4.25 (libsisimai-perl) on the same files in the same run.
#
# Every tool reads the same list of files ROUNDS times (default 20) so that
# start-up is a small share; the figures include start-up and reading files.
#
# Usage: bench/bounce-speed.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${CARTERO_SHARED:-../shared}"
CORPUS="$SHARED/corpus/bounces/maildir"
if [[ ! -d "$CORPUS" ]]; then
    echo "bounce-speed: $CORPUS not found; this benchmark needs the shared corpus beside the checkout (set CARTERO_SHARED to point elsewhere)." >&2
    exit 2
fi
ROUNDS="${1:-20}"
CORES="$(nproc)"
cargo build --release --quiet
BIN="$PWD/target/release/cartero"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

find "$CORPUS" -type f -name '*.eml' | sort > "$WORK/files"
N_FILES="$(wc -l < "$WORK/files")"
for _ in $(seq "$ROUNDS"); do cat "$WORK/files"; done > "$WORK/list"
N="$(wc -l < "$WORK/list")"
echo "corpus: $N_FILES files x $ROUNDS rounds = $N messages; $CORES cores"

now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{int(sys.argv[1])/float(sys.argv[2]):,.0f}')" "$1" "$2"; }

# Warm the page cache so no tool pays for the first read.
xargs cat < "$WORK/files" > /dev/null

t0="$(now)"
xargs -a "$WORK/list" -s 1000000 "$BIN" feedback parse --format json > /dev/null
t1="$(now)"
cartero_1="$(python3 -c "print($t1-$t0)")"

# All cores: one process per core, each with its share of the list.
split -n "l/$CORES" "$WORK/list" "$WORK/part."
t0="$(now)"
for p in "$WORK"/part.*; do
    xargs -a "$p" -s 1000000 "$BIN" feedback parse --format json > /dev/null &
done
wait
t1="$(now)"
cartero_n="$(python3 -c "print($t1-$t0)")"

sisimai_s=""
if perl -MSisimai -e 1 2>/dev/null; then
    t0="$(now)"
    perl -MSisimai -e '
        open my $fh, "<", $ARGV[0] or die "$ARGV[0]: $!";
        my $n = 0;
        while (my $f = <$fh>) { chomp $f; my $r = Sisimai->make($f); $n += $r ? scalar @$r : 0 }
        print STDERR "sisimai records: $n\n";
    ' "$WORK/list" 2> "$WORK/sisimai.err" > /dev/null
    t1="$(now)"
    sisimai_s="$(python3 -c "print($t1-$t0)")"
else
    echo "Sisimai (libsisimai-perl) not installed; skipping the comparison." >&2
fi

printf '%-34s %10s %14s\n' "tool" "seconds" "messages/s"
printf '%-34s %10.3f %14s\n' "cartero feedback parse, 1 process" "$cartero_1" "$(rate "$N" "$cartero_1")"
printf '%-34s %10.3f %14s\n' "cartero feedback parse, $CORES procs" "$cartero_n" "$(rate "$N" "$cartero_n")"
if [[ -n "$sisimai_s" ]]; then
    printf '%-34s %10.3f %14s\n' "Sisimai $(perl -MSisimai -e 'print $Sisimai::VERSION'), 1 process" "$sisimai_s" "$(rate "$N" "$sisimai_s")"
    python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'ratio (one core): cartero is {b/a:.1f}x Sisimai')" "$cartero_1" "$sisimai_s"
fi
