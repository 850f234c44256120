#!/usr/bin/env bash
# 220-archive-faults.t: the archiver under faults.
#
# - MinIO down: nothing advances, status says so, the log has one line for the outage
#   (not one per retry), and everything is archived by itself once MinIO is back. The
#   backlog is larger than archive_flush_events, so full batches meet the failed PUT:
#   the worker keeps them open and keeps running (no restart loop).
# - Kafka down and back: the worker reconnects and archives what comes next.
# - recsys.status describes the present (issue 9, item 9): during an outage its state
#   row names the component down and since when, the lag keeps up with the log,
#   recsys_archive_sync blames the right component; after it, the state is ok and the
#   last error is marked resolved, with its time.
# - Retention: offsets deleted from the log before they were archived are recorded in
#   recsys.archive_gaps, with a WARNING and in recsys.status; the rest is archived.
source "$(dirname "$0")/2-archive-lib.bash"
trap 'restore_defaults; "$STACK" start minio >/dev/null 2>&1; "$STACK" start kafka >/dev/null 2>&1' EXIT
tmp=$(mktemp -d)
T=arch220-$$-$RANDOM
PGLOG=${RECSYS_STACK_DIR:-/var/tmp/recsys-stack}/logs/postgres.log
: >"$tmp/produced"

create_topic "$T" 3
use_topic "$T"
set_conf recsys.archive_flush_interval '300ms'

check() {
    cut -d'|' -f2- "$tmp/produced" | LC_ALL=C sort >"$tmp/expected"
    check_archive "$T" "$tmp/expected" "$1"
}

# ---- MinIO down
gen_events 1 1000 >"$tmp/b"; produce "$T" <"$tmp/b"; cat "$tmp/b" >>"$tmp/produced"
psql_val "SELECT recsys_archive_sync('30 s')" >/dev/null
offsets_before=$(psql_val "SELECT string_agg(next_offset::text, ',' ORDER BY partition) FROM recsys.archive_offsets WHERE topic = '$T'")
objects_before=$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = '$T'")
set_conf recsys.archive_flush_events 500
sleep 1
pid_before=$(archiver_pids)
log_start=$(wc -c <"$PGLOG")
"$STACK" stop minio >/dev/null
end_offsets() { psql -X -qtA -c "SELECT coalesce(sum(value::bigint), 0) FROM recsys.status WHERE component = 'event_log' AND metric LIKE '$T/%end_offset'"; }
sleep 3
end_before=$(end_offsets)
gen_events 1001 3000 >"$tmp/b"; produce "$T" <"$tmp/b"; cat "$tmp/b" >>"$tmp/produced"
sleep 8
is "$(end_offsets)" "$((end_before + 3000))" "MinIO down: the log's end offsets in recsys.status keep up (lag not frozen)"
like "$(status state)" '^the archive store is unavailable since [0-9-]+ [0-9:.+]+: S3 PUT' "MinIO down: state names the store, since when and why"
is "$(status last_error_resolved_at)" current "MinIO down: the last error is current"
like "$(status last_error_at)" '^[0-9]{4}-' "MinIO down: the time of the last error"
is "$(archiver_pids)" "$pid_before" "MinIO down with a backlog over archive_flush_events: the worker keeps running"
is "$(tail -c +$((log_start + 1)) "$PGLOG" | grep -c 'recsys archiver.*ERROR\|ERROR.*compressing')" 0 "MinIO down with a backlog: no error in the log"
is "$(status store)" "unavailable (retrying)" "MinIO down: status store unavailable"
like "$(status last_error)" "S3 PUT recsys/events/topic=$T/.*(connect|Connection)" "MinIO down: last_error names the PUT and the cause"
is "$(psql_val "SELECT string_agg(next_offset::text, ',' ORDER BY partition) FROM recsys.archive_offsets WHERE topic = '$T'")" "$offsets_before" "MinIO down: no offset advanced"
is "$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = '$T'")" "$objects_before" "MinIO down: no manifest row added"
err=$(psql_err "SELECT recsys_archive_sync('2 s')")
like "$err" 'recsys_archive_sync timed out after 2000 ms' "MinIO down: sync times out"
like "$err" 'Last archiver error: the archive store is unavailable since .*S3 PUT' "MinIO down: the timeout error says why"
unlike "$err" 'Kafka' "MinIO down: the timeout error does not blame Kafka"
is "$(tail -c +$((log_start + 1)) "$PGLOG" | grep -c 'cannot write to the archive')" 1 "MinIO down: logged once, not per retry"
"$STACK" start minio >/dev/null
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
reset_conf recsys.archive_flush_events
is "$(status store)" ok "MinIO back: status ok"
is "$(status state)" ok "MinIO back: state ok"
like "$(status last_error_resolved_at)" '^[0-9]{4}-' "MinIO back: the last error is marked resolved, with the time"
is "$(tail -c +$((log_start + 1)) "$PGLOG" | grep -c 'can write to the archive again')" 1 "MinIO back: logged once"
check "MinIO outage"

# ---- Kafka down and back
"$STACK" stop kafka >/dev/null
sleep 4
like "$(status kafka)" 'unreachable' "Kafka down: status kafka unreachable"
like "$(status state)" '^Kafka is unreachable since ' "Kafka down: state names Kafka"
pid=$(archiver_pids)
start=$(date +%s%N)
psql_val "SELECT pg_terminate_backend($pid)" >/dev/null
while [ -d "/proc/$pid" ] && [ $(( ($(date +%s%N) - start) / 1000000 )) -lt 10000 ]; do sleep 0.05; done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
ok $([ $ms -lt 5000 ] && echo 0 || echo 1) "Kafka down: SIGTERM still exits within 5 s (${ms} ms)"
wait_pg
"$STACK" start kafka >/dev/null
gen_events 5001 2000 >"$tmp/b"; produce "$T" <"$tmp/b"; cat "$tmp/b" >>"$tmp/produced"
psql_val "SELECT recsys_archive_sync('90 s')" >/dev/null
wait_for 15 bash -c "[ \"\$(psql -X -qtA -c \"SELECT value FROM recsys.status WHERE component = 'archiver' AND metric = 'kafka'\")\" = ok ]"
ok $? "Kafka back: status ok"
is "$(status state)" ok "Kafka back: state ok"
like "$(status last_error_resolved_at)" '^[0-9]{4}-' "Kafka back: the last error is marked resolved"
check "Kafka outage"

# ---- retention deleted offsets before they were archived
G=arch220g-$$-$RANDOM
create_topic "$G" 1
gen_events 100001 100 | produce "$G"
echo "{\"partitions\":[{\"topic\":\"$G\",\"partition\":0,\"offset\":40}],\"version\":1}" >"$tmp/del.json"
kafka_tool org.apache.kafka.tools.DeleteRecordsCommand --bootstrap-server "$KAFKA_BROKERS" \
    --offset-json-file "$tmp/del.json" >/dev/null
log_start=$(wc -c <"$PGLOG")
use_topic "$G"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
is "$(psql_val "SELECT from_offset || '-' || to_offset FROM recsys.archive_gaps WHERE topic = '$G'")" "0-40" "retention: gap 0..40 recorded"
like "$(tail -c +$((log_start + 1)) "$PGLOG" | grep 'WARNING' | grep -c 'deleted by the log.s retention')" '^[1-9]' "retention: a WARNING in the log"
like "$(psql_val "SELECT value FROM recsys.status WHERE metric = 'retention_gap_offsets'")" '^[1-9][0-9]*$' "retention: recsys.status shows lost offsets"
like "$(status last_error)" "offsets 0 to 39 of $G partition 0 were deleted" "retention: last_error says which"
is "$(archive_lines "$G" | wc -l | tr -d ' ')" 60 "retention: the 60 events still in the log are archived"
is "$(archive_lines "$G" | head -1 | grep -o '"event_id":[0-9]*')" '"event_id":100041' "retention: archiving resumed at the first offset left"

# ---- a gap in one of several partitions: the re-assignment after it must not deliver
# again what the other partitions' batches already hold
H=arch220h-$$-$RANDOM
create_topic "$H" 3
gen_events 200001 3000 >"$tmp/h"; produce "$H" <"$tmp/h"
kcat -C -b "$KAFKA_BROKERS" -t "$H" -p 0 -o beginning -c 30 -e -q -f '%s\n' 2>/dev/null | LC_ALL=C sort >"$tmp/h.deleted"
echo "{\"partitions\":[{\"topic\":\"$H\",\"partition\":0,\"offset\":30}],\"version\":1}" >"$tmp/delh.json"
kafka_tool org.apache.kafka.tools.DeleteRecordsCommand --bootstrap-server "$KAFKA_BROKERS" \
    --offset-json-file "$tmp/delh.json" >/dev/null
use_topic "$H"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
is "$(psql_val "SELECT from_offset || '-' || to_offset FROM recsys.archive_gaps WHERE topic = '$H'")" "0-30" "gap in one of 3 partitions: recorded"
cut -d'|' -f2- "$tmp/h" | LC_ALL=C sort | LC_ALL=C comm -23 - "$tmp/h.deleted" >"$tmp/h.expected"
check_archive "$H" "$tmp/h.expected" "gap in one of 3 partitions, the others"

rm -rf "$tmp"
done_testing
