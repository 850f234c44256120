#!/usr/bin/env bash
# 200-archive-kafka.t: events produced to Kafka end up in MinIO exactly once.
#
# A topic of its own with 3 partitions; N valid events and 3 invalid messages; after
# recsys_archive_sync() the objects are listed, downloaded, gunzipped and compared with
# what was produced, byte for byte; the invalid messages are dead letters with their
# partition and offset; offsets and manifest agree; flush by count; SIGTERM flushes.
source "$(dirname "$0")/2-archive-lib.bash"
trap restore_defaults EXIT
tmp=$(mktemp -d)
T=arch200-$$-$RANDOM
N=20000

create_topic "$T" 3
use_topic "$T"
is "$(archiver_pids | wc -l | tr -d ' ')" 1 "one worker with backend_type 'recsys archiver'"
is "$(status mode)" kafka "status: mode kafka"

gen_events 1 $N >"$tmp/events"
produce "$T" <"$tmp/events"
printf '%s\n' '5|not json at all' \
    '6|{"event_id":7,"user_id":6,"movie_id":1,"rating":9,"ts":1}' \
    '7|{"event_id":8,"user_id":99,"movie_id":1,"rating":1,"ts":1}' | produce "$T"

total=$(psql_val "SELECT recsys_archive_sync('60 s')")
like "$total" '^[0-9]+$' "recsys_archive_sync returns a count ($total)"
is "$(psql_val "SELECT sum(events) FROM recsys.archive_manifest WHERE topic = '$T'")" $N "manifest: $N events"
is "$("$S3_TOOL" list "events/topic=$T/" | wc -l | tr -d ' ')" \
    "$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = '$T'")" \
    "every object in the bucket is in the manifest, and the other way round"
is "$("$S3_TOOL" list "events/topic=$T/" | grep -cvE "^events/topic=$T/partition=[0-2]/$T\+[0-2]\+[0-9]{20}\.ndjson\.gz$")" 0 \
    "object keys follow events/topic=<t>/partition=<p>/<t>+<p>+<offset:20>.ndjson.gz"
cut -d'|' -f2- "$tmp/events" | LC_ALL=C sort >"$tmp/expected"
archive_lines "$T" >"$tmp/archived"
if cmp -s "$tmp/expected" "$tmp/archived"; then ok 0 "archived events equal the produced events, exactly"; else
    ok 1 "archived events equal the produced events, exactly"; diag "$(diff "$tmp/expected" "$tmp/archived" | head -5)"; fi
is "$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = '$T' AND object_key <> format('events/topic=%s/partition=%s/%s+%s+%s.ndjson.gz', topic, partition, topic, partition, lpad(first_offset::text, 20, '0'))")" 0 \
    "each key carries its partition and first offset"
is "$(manifest_overlaps "$T")" 0 "no two objects overlap in offsets"
is "$(psql_val "SELECT count(*) FROM recsys.archive_dead_letters WHERE topic = '$T'")" 3 "3 dead letters"
like "$(psql_val "SELECT string_agg(reason, ' / ' ORDER BY convert_from(key, 'UTF8')) FROM recsys.archive_dead_letters WHERE topic = '$T'")" \
    '^not JSON.* / rating is not between 0.5 and 5.* / key does not match user_id 99$' "dead letters say why"
is "$(psql_val "SELECT count(*) FROM recsys.archive_dead_letters d WHERE topic = '$T' AND EXISTS (SELECT 1 FROM recsys.archive_manifest m WHERE m.topic = d.topic AND m.partition = d.partition AND d.\"offset\" BETWEEN m.first_offset AND m.last_offset) OR (topic = '$T' AND \"offset\" < (SELECT next_offset FROM recsys.archive_offsets o WHERE o.topic = d.topic AND o.partition = d.partition))")" 3 \
    "dead letters keep their partition and an offset the archive has passed"
is "$(psql_val "SELECT sum(next_offset) FROM recsys.archive_offsets WHERE topic = '$T'")" $((N + 3)) "stored offsets = messages produced"
is "$(psql_val "SELECT count(*) FROM recsys.status WHERE component = 'event_log' AND metric LIKE '$T/%lag' AND value = '0'")" 3 "status: lag 0 on the 3 partitions"
like "$(status last_flush)" '^20[0-9]{2}-' "status: last flush"
is "$(psql_val "SELECT recsys_archive_sync('10 s') - $total")" 0 "a second sync finds nothing new"

# flush on recsys.archive_flush_events
set_conf recsys.archive_flush_events 1000
sleep 1
big_before=$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = '$T' AND events > 1000")
gen_events 100001 6000 >"$tmp/events2"
produce "$T" <"$tmp/events2"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
is "$(psql_val "SELECT sum(events) FROM recsys.archive_manifest WHERE topic = '$T'")" $((N + 6000)) "6000 more archived"
is "$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = '$T' AND events > 1000")" "$big_before" "no new object above archive_flush_events"
like "$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = '$T' AND events = 1000")" '^[3-6]$' "full objects hold exactly 1000 events"
reset_conf recsys.archive_flush_events

# SIGTERM flushes what is held and exits within 5 s
set_conf recsys.archive_flush_interval '10min'
sleep 1
before=$(psql_val "SELECT sum(events) FROM recsys.archive_manifest WHERE topic = '$T'")
gen_events 200001 500 | produce "$T"
sleep 3
is "$(psql_val "SELECT sum(events) FROM recsys.archive_manifest WHERE topic = '$T'")" "$before" "held, not flushed yet (10 min interval)"
pid=$(archiver_pids)
start=$(date +%s%N)
psql_val "SELECT pg_terminate_backend($pid)" >/dev/null
while kill -0 "$pid" 2>/dev/null || [ -d "/proc/$pid" ]; do sleep 0.05; [ $(( ($(date +%s%N) - start) / 1000000 )) -gt 10000 ] && break; done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
ok $([ $ms -lt 5000 ] && echo 0 || echo 1) "SIGTERM: the worker exited within 5 s (${ms} ms)"
is "$(psql_val "SELECT sum(events) FROM recsys.archive_manifest WHERE topic = '$T'")" $((before + 500)) "SIGTERM: the 500 held events were flushed first"
wait_for 30 bash -c "[ -n \"\$(psql -X -qtA -c \"SELECT pid FROM pg_stat_activity WHERE backend_type = 'recsys archiver' AND pid <> $pid\")\" ]"
ok $? "the worker is restarted"
reset_conf recsys.archive_flush_interval

rm -rf "$tmp"
done_testing
