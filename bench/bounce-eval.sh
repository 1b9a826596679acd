#!/usr/bin/env bash
# Bounce classification accuracy on the shared dev corpus.
#
# Runs `cartero feedback parse --format json` once over every corpus file and
# scores the output with ../shared/tools/bounce-eval.py (its header defines
# the metrics), for the as-published files (--scope primary) and for the CRLF
# and CR-only copies (--scope variants). When Debian's Sisimai 4.25
# (libsisimai-perl) is installed, it reads the same files in the same run and
# is scored the same way, for comparison (CARTERO_EVAL_SISIMAI=0 skips it).
#
# Usage: bench/bounce-eval.sh [--debug] [extra score options, e.g. --worst 40]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${CARTERO_SHARED:-../shared}"
CORPUS="$SHARED/corpus/bounces"
EVAL="$SHARED/tools/bounce-eval.py"
if [[ ! -f "$CORPUS/expected.jsonl" || ! -f "$EVAL" ]]; then
    echo "bounce-eval: $CORPUS/expected.jsonl or $EVAL not found; this benchmark needs the shared corpus beside the checkout (set CARTERO_SHARED to point elsewhere)." >&2
    exit 2
fi
PROFILE=release
if [[ "${1:-}" == "--debug" ]]; then PROFILE=debug; shift; fi
if [[ "$PROFILE" == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
BIN="$PWD/target/$PROFILE/cartero"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# One invocation over all files; `file` is printed as given (relative to the
# corpus root, which is what the gold file uses).
( cd "$CORPUS" && python3 -c 'import json,sys; print("\n".join(sorted({json.loads(l)["file"] for l in open("expected.jsonl")})))' \
    | xargs "$BIN" feedback parse --format json ) > "$OUT/out.jsonl"
for scope in primary variants; do
    echo "### cartero scope=$scope"
    python3 "$EVAL" score --gold "$CORPUS/expected.jsonl" --outputs "$OUT/out.jsonl" --scope "$scope" "$@"
    echo
done
if [[ "${CARTERO_EVAL_SISIMAI:-1}" != 0 ]] && perl -MSisimai -MJSON::PP -e 1 2>/dev/null; then
    # Sisimai 4.x has no hard-bounce flag: softbounce 0 is hard, 1 soft.
    ( cd "$CORPUS" && python3 -c 'import json,sys; print("\n".join(sorted({json.loads(l)["file"] for l in open("expected.jsonl")})))' \
        | xargs perl -MSisimai -MJSON::PP -e '
            my $js = JSON::PP->new->canonical;
            my %kind = (feedback => "complaint", vacation => "autoreply", delivered => "none");
            for my $f (@ARGV) {
                my $v = eval { Sisimai->make($f, delivered => 1) } // [];
                print $js->encode({file => $f, kind => "none"}), "\n" unless @$v;
                for my $r (@$v) {
                    my $reason = $r->reason // "";
                    my $k = $kind{$reason} // ($r->softbounce == 0 ? "hard" : "soft");
                    print $js->encode({file => $f, recipient => $r->recipient->address,
                        kind => $k, reason => $reason, status => $r->deliverystatus // ""}), "\n";
                }
            }' ) > "$OUT/sisimai.jsonl" 2> "$OUT/sisimai.err" || true
    for scope in primary variants; do
        echo "### Sisimai $(perl -MSisimai -e 'print $Sisimai::VERSION') scope=$scope"
        python3 "$EVAL" score --gold "$CORPUS/expected.jsonl" --outputs "$OUT/sisimai.jsonl" --scope "$scope" --worst 0
        echo
    done
fi
