#!/usr/bin/env bash
# 210-archive-crash.t: exactly once across crashes.
#
# The worker is made to pause (a test hook, see fault_point in src/archiver.c) before
# a PUT, between the PUT and the commit, and after the commit; there it is killed with
# kill -9 (the postmaster restarts the cluster) or the whole server is stopped in
# immediate mode.  Then random kill -9s while events stream in.  After each restart
# every produced event must be in exactly one manifest-listed object: none missing,
# none twice, no overlapping offset ranges, no object outside the manifest.
source "$(dirname "$0")/2-archive-lib.bash"
trap restore_defaults EXIT
tmp=$(mktemp -d)
T=arch210-$$-$RANDOM
: >"$tmp/produced"

create_topic "$T" 3
use_topic "$T"
set_conf recsys.archive_flush_interval '500ms'

# check NAME: the archive equals what was produced, exactly once.
check() {
    cut -d'|' -f2- "$tmp/produced" | LC_ALL=C sort >"$tmp/expected"
    check_archive "$T" "$tmp/expected" "$1"
    is "$("$S3_TOOL" list "events/topic=$T/" | wc -l | tr -d ' ')" \
        "$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = '$T'")" "$1: no object outside the manifest"
}

id=1
for point in before_put after_put after_commit; do
    for how in kill9 immediate; do
        fault "$point"
        gen_events $id 700 >"$tmp/batch"; id=$((id + 700))
        produce "$T" <"$tmp/batch"; cat "$tmp/batch" >>"$tmp/produced"
        if ! wait_for 30 paused; then ok 1 "$point/$how: worker reached the fault point"; continue; fi
        if [ $how = kill9 ]; then
            kill -9 "$(awk '{print $2}' "$PGDATA_DIR/recsys_archiver_paused")"
        else
            "$STACK" stop postgres immediate >/dev/null 2>&1
            "$STACK" start postgres >/dev/null 2>&1
        fi
        rm -f "$PGDATA_DIR/recsys_archiver_paused"
        wait_pg
        total=$(psql_val "SELECT recsys_archive_sync('90 s')")
        like "$total" '^[0-9]+$' "$point/$how: sync after the restart"
        check "$point/$how"
    done
done

# random kill -9s while events stream in
set_conf recsys.archive_flush_events 3000
for round in 1 2 3; do
    gen_events $id 20000 >"$tmp/batch"; id=$((id + 20000))
    produce "$T" <"$tmp/batch" & prod=$!
    sleep "0.$((RANDOM % 9 + 1))"
    pid=$(archiver_pids | head -1)
    [ -n "$pid" ] && kill -9 "$pid"
    wait $prod; cat "$tmp/batch" >>"$tmp/produced"
    wait_pg
done
psql_val "SELECT recsys_archive_sync('120 s')" >/dev/null
check "random kill -9 while streaming"
is "$(psql_val "SELECT sum(events) FROM recsys.archive_manifest WHERE topic = '$T'")" "$(wc -l <"$tmp/produced" | tr -d ' ')" "manifest event count = produced"

rm -rf "$tmp"
done_testing
