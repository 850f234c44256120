#!/usr/bin/env bash
# 620-soak.t: bench/soak.sh for 2.5 minutes, the same code and checks as the long run:
# the pipeline as pg_cron schedules it (an aggregate every minute, so at least two
# scheduled runs), ratings from 3 recsys_rate clients and a small ingest each minute,
# recommendations with the cache on; the memory of the archiver and the relay flat
# (RssAnon, last third against first, +1024 KB at most, no restart), the outbox
# bounded, the archive and aggregate lags and the hit rate stable, no error anywhere,
# a succeeded aggregate in every minute. Each check of the script is one assertion;
# its JSON goes to $RECSYS_STACK_DIR/soak-620.json (bench/soak-last.json is the long
# run's).
source "$(dirname "$0")/../lib.sh"
out=$(RECSYS_SOAK_OUT="${RECSYS_STACK_DIR:-/var/tmp/recsys-stack}/soak-620.json" \
      bash "$REPO_DIR/bench/soak.sh" 2.5 2>&1)
rc=$?
grep '^# figure:' <<<"$out"
n=0
while IFS= read -r line; do
    case "$line" in
        "ok - "*) ok 0 "${line#ok - }"; n=$((n + 1)) ;;
        "not ok - "*) ok 1 "${line#not ok - }"; n=$((n + 1)) ;;
    esac
done <<<"$out"
[ "$n" -ge 14 ] || { ok 1 "bench/soak.sh ran its checks (exit $rc)"; tail -n 20 <<<"$out" | sed 's/^/# /'; }
is "$rc" "$( [ "$(grep -c '^not ok - ' <<<"$out")" = 0 ] && echo 0 || echo 1)" "bench/soak.sh's exit status agrees with its checks"
done_testing
