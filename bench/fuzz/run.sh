#!/usr/bin/env bash
# bench/fuzz/run.sh TARGET SECONDS: fuzz one target (csv, row or event) on one core
# for SECONDS, starting from its corpus in bench/fuzz/corpus/TARGET, then merge what
# the fuzzer found interesting back into that corpus (libFuzzer -merge=1: only inputs
# that add coverage are kept, so the corpus stays small).  A crash is left as
# bench/fuzz/crash-* (or leak-*, timeout-*): fix the bug, add the input to the corpus,
# and the suite (test/t/010-unit.t) replays it from then on.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
target=${1:?usage: run.sh TARGET SECONDS (TARGET: csv, row or event)}
secs=${2:?usage: run.sh TARGET SECONDS}
case "$target" in csv|row|event) ;; *) echo "unknown target $target" >&2; exit 2 ;; esac

make -s -C "$HERE" "bin/fuzz_$target"
corpus="$HERE/corpus/$target"
work=$(mktemp -d "/tmp/recsys-fuzz-$target.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/new" "$work/merged"
cp "$corpus"/* "$work/new/"
mkdir -p "$work/seeds"
cp "$corpus"/seed-* "$work/seeds/" 2>/dev/null || true

cd "$HERE"
# one job, one core; inputs up to 4 kB; a slow input (>10 s) is a finding too
set +e
"$HERE/bin/fuzz_$target" -max_total_time="$secs" -max_len=4096 -timeout=10 \
    -rss_limit_mb=1024 -print_final_stats=1 "$work/new" > "$work/log" 2>&1
status=$?
set -e
grep -E '^#|stat::|ERROR|SUMMARY|fuzz_' "$work/log" | tail -n 25
"$HERE/bin/fuzz_$target" -merge=1 "$work/merged" "$work/new" >/dev/null 2>&1
rm -f "$corpus"/*
cp "$work/merged"/* "$corpus/"
# keep the hand-written seeds under their names
cp "$work/seeds"/* "$corpus/" 2>/dev/null || true
echo "corpus/$target: $(ls "$corpus" | wc -l) files; fuzzer exit status $status"
exit "$status"
