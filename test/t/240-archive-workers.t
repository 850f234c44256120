#!/usr/bin/env bash
# 240-archive-workers.t: recsys.archiver_workers = 2 share the partitions of a topic.
#
# Each worker owns the partitions p with p % 2 = its index; together they archive every
# event exactly once, and both show up in pg_stat_activity as 'recsys archiver'.
source "$(dirname "$0")/2-archive-lib.bash"
restart() {
    "$STACK" stop postgres >/dev/null 2>&1
    "$STACK" start postgres >/dev/null 2>&1
    wait_pg
}
trap 'psql -X -qtA -c "ALTER SYSTEM RESET recsys.archiver_workers" >/dev/null; restore_defaults; restart' EXIT
tmp=$(mktemp -d)
T=arch240-$$-$RANDOM

create_topic "$T" 4
psql -X -qtA -c "ALTER SYSTEM SET recsys.archiver_workers = 2" -c "ALTER SYSTEM SET recsys.kafka_topic = '$T'" >/dev/null
restart
wait_for 30 bash -c "[ \"\$(psql -X -qtA -c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'recsys archiver'\")\" = 2 ]"
ok $? "two workers with backend_type 'recsys archiver'"
is "$(psql_val "SELECT value FROM recsys.status WHERE metric = 'workers'")" "2 of 2 running" "status: 2 of 2 running"
wait_for 30 bash -c "[ \"\$(psql -X -qtA -c \"SELECT count(*) FROM recsys.status WHERE metric LIKE '$T/%archived_offset'\")\" = 4 ]"
ok $? "the 4 partitions are taken"
gen_events 1 40000 >"$tmp/events"
produce "$T" <"$tmp/events"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
cut -d'|' -f2- "$tmp/events" | LC_ALL=C sort >"$tmp/expected"
archive_lines "$T" >"$tmp/archived"
if cmp -s "$tmp/expected" "$tmp/archived"; then ok 0 "two workers: every event archived exactly once"; else
    ok 1 "two workers: every event archived exactly once"; diag "expected $(wc -l <"$tmp/expected"), got $(wc -l <"$tmp/archived")"; fi
is "$(psql_val "SELECT count(DISTINCT partition) FROM recsys.archive_manifest WHERE topic = '$T'")" 4 "objects in all 4 partitions"
is "$(manifest_overlaps "$T")" 0 "no overlapping ranges"
like "$(grep -c "recsys archiver [01] archives 2 of the 4 partitions of topic \"$T\"" "${RECSYS_STACK_DIR:-/var/tmp/recsys-stack}/logs/postgres.log")" '^[2-9]' "each worker logs its 2 of the 4 partitions"
rm -rf "$tmp"
done_testing
