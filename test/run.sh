#!/usr/bin/env bash
# test/run.sh: the full recsys test suite against a running stack.
#
#   test/run.sh [SUITE.t ...]
#
# Runs pg_regress (make installcheck) and the integration suites test/t/*.t (TAP),
# each bounded in time, then prints one summary line: "N passed, M failed", counting
# each pg_regress test and each TAP assertion. Exits non-zero when anything failed.
# The stack must be up (test/stack.sh up); scripts/test.sh does all of it from scratch.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"
eval "$("$HERE/stack.sh" env)"
SUITE_TIMEOUT=${RECSYS_SUITE_TIMEOUT:-600}

passed=0
failed=0
failures=()

"$HERE/stack.sh" status >/dev/null || { echo "run: the stack is not up (test/stack.sh up)" >&2; exit 1; }

if [ $# -eq 0 ]; then
    echo "== pg_regress (make installcheck)"
    out=$(make -s installcheck 2>&1)
    echo "$out"
    p=$(grep -cE '^(ok|test) .* ok( |$)|^(ok|test) .*\.\.\. ok' <<<"$out")
    f=$(grep -cE 'FAILED|failed \(ignored\)' <<<"$out")
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -gt 0 ] || ! grep -qE 'All [0-9]+ tests passed' <<<"$out"; then
        [ "$f" -gt 0 ] || failed=$((failed + 1))
        failures+=("pg_regress (see regression.diffs)")
        [ -f regression.diffs ] && head -n 80 regression.diffs
    fi
    set -- "$HERE"/t/*.t
fi

for t in "$@"; do
    [ -f "$t" ] || continue
    name=$(basename "$t")
    echo "== $name"
    start=$SECONDS
    out=$(timeout --kill-after=10 "$SUITE_TIMEOUT" bash "$t" 2>&1)
    rc=$?
    echo "$out"
    p=$(grep -cE '^ok [0-9]+' <<<"$out")
    f=$(grep -cE '^not ok [0-9]+' <<<"$out")
    planned=$(sed -nE 's/^1\.\.([0-9]+)$/\1/p' <<<"$out" | tail -n 1)
    passed=$((passed + p))
    failed=$((failed + f))
    if [ $rc -ne 0 ] || [ -z "$planned" ] || [ "$planned" -ne $((p + f)) ]; then
        if [ "$f" -eq 0 ]; then
            failed=$((failed + 1))
            echo "not ok - $name ended early (exit $rc${planned:+, plan $planned})"
        fi
        failures+=("$name")
    fi
    echo "-- $name: $p passed, $f failed, $((SECONDS - start))s"
done

echo
if [ ${#failures[@]} -gt 0 ]; then
    echo "failed suites: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
