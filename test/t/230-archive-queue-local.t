#!/usr/bin/env bash
# 230-archive-queue-local.t: the embedded defaults, no Kafka and no S3.
#
# The archiver drains recsys.event_queue (topic 'queue', partition 0) into
# recsys.archive_dir with the same key layout, atomically (no temporary file left);
# rows leave the queue in the transaction of their manifest row; invalid rows become
# dead letters with their queue id; a row committed late, with a lower id, gets a later
# archive offset (ranges never overlap); a crash between the write and the commit
# archives nothing twice.
source "$(dirname "$0")/2-archive-lib.bash"
trap restore_defaults EXIT
tmp=$(mktemp -d)
chmod 0755 "$tmp"
# archive_dir does not exist yet, nor its parent: the archiver makes them
chown "$(stat -c %U "$PGDATA_DIR")" "$tmp"
D=$tmp/archive/recsys

psql -X -qtA -c "ALTER SYSTEM SET recsys.kafka_brokers = ''" -c "ALTER SYSTEM SET recsys.s3_endpoint = ''" \
    -c "ALTER SYSTEM SET recsys.archive_dir = '$D'" -c "ALTER SYSTEM SET recsys.archive_flush_interval = '300ms'" \
    -c "SELECT pg_reload_conf()" >/dev/null
wait_for 30 bash -c "[ \"\$(psql -X -qtA -c \"SELECT value FROM recsys.status WHERE metric = 'mode'\")\" = queue ] && psql -X -qtA -c \"SELECT value FROM recsys.status WHERE metric = 'storage'\" | grep -q '^local:$D\$'"
ok $? "the archiver switched to the queue table and the local directory"

t0=$(psql_val "SELECT now()")
deleted_before=$(psql_val "SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables WHERE schemaname = 'recsys' AND relname = 'event_queue'")
before=$(psql_val "SELECT coalesce(sum(events), 0) FROM recsys.archive_manifest WHERE topic = 'queue'")
gen_events 1 5000 >"$tmp/events"
# rows already waiting in the queue (valid events) are archived with these
psql -X -qtA -F '|' -c "SELECT key, value FROM recsys.event_queue ORDER BY id" >"$tmp/pending"
pending=$(wc -l <"$tmp/pending")
{ cat "$tmp/events"; printf '%s\n' '1|{"event_id":1,"user_id":1' '2|{"event_id":2,"user_id":3,"movie_id":1,"rating":1,"ts":1}'; } >"$tmp/rows"
psql -X -q -c "\\copy recsys.event_queue (key, value) FROM '$tmp/rows' WITH (FORMAT csv, DELIMITER '|', QUOTE e'\\x01')"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
is "$(psql_val "SELECT count(*) FROM recsys.event_queue")" 0 "the queue is drained"
# the worker reports its statistics while it runs, so autovacuum sees the dead rows
queue_deletes_reported() {
    [ "$(psql -X -qtA -c "SELECT coalesce(sum(n_tup_del), 0) - $deleted_before >= 5002 FROM pg_stat_user_tables WHERE schemaname = 'recsys' AND relname = 'event_queue'")" = t ]
}
wait_for 15 queue_deletes_reported
ok $? "the archiver's deletes from the queue reach the table statistics while it runs"
is "$(psql_val "SELECT sum(events) - $before - $pending FROM recsys.archive_manifest WHERE topic = 'queue'")" 5000 "manifest: 5000 more events of topic queue"
is "$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = 'queue' AND archived_at >= '$t0' AND storage <> 'local'")" 0 "storage local"
is "$(find "$D" -type f -name '*.ndjson.gz' | wc -l | tr -d ' ')" "$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = 'queue' AND archived_at >= '$t0'")" "one file per manifest row"
is "$(cd "$D" && find . -type f | sed 's#^\./##' | grep -cvE '^events/topic=queue/partition=0/queue\+0\+[0-9]{20}\.ndjson\.gz$')" 0 "files follow the key layout, no temporary file left"
cat "$tmp/events" "$tmp/pending" | cut -d'|' -f2- | LC_ALL=C sort >"$tmp/expected"
find "$D" -type f -name '*.ndjson.gz' -exec zcat {} + | LC_ALL=C sort >"$tmp/archived"
if cmp -s "$tmp/expected" "$tmp/archived"; then ok 0 "archived events equal the queued events, exactly"; else
    ok 1 "archived events equal the queued events, exactly"; diag "$(diff "$tmp/expected" "$tmp/archived" | head -5)"; fi
is "$(psql_val "SELECT count(*) FROM recsys.archive_dead_letters WHERE topic = 'queue' AND created_at >= '$t0' AND queue_id IS NOT NULL")" 2 "2 dead letters with their queue ids"
is "$(manifest_overlaps queue)" 0 "no overlapping ranges"
is "$(psql_val "SELECT next_offset FROM recsys.archive_offsets WHERE topic = 'queue'")" \
    "$(psql_val "SELECT max(last_offset) + 1 FROM recsys.archive_manifest WHERE topic = 'queue'")" "offset stored with the last manifest row"

# a row that commits after a later id was archived
psql -X -q -c "BEGIN" -c "INSERT INTO recsys.event_queue (key, value) VALUES ('42', '{\"event_id\":900001,\"user_id\":42,\"movie_id\":7,\"rating\":3.5,\"ts\":1700000000}')" \
    -c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null &
slow=$!
sleep 0.5
psql_val "INSERT INTO recsys.event_queue (key, value) VALUES ('43', '{\"event_id\":900002,\"user_id\":43,\"movie_id\":7,\"rating\":3.5,\"ts\":1700000000}')" >/dev/null
psql_val "SELECT recsys_archive_sync('30 s')" >/dev/null
wait $slow
psql_val "SELECT recsys_archive_sync('30 s')" >/dev/null
find "$D" -type f -name '*.ndjson.gz' -exec zcat {} + | grep -c '"event_id":90000[12]' >"$tmp/n"
is "$(cat "$tmp/n")" 2 "the late row and the early one are both archived"
is "$(manifest_overlaps queue)" 0 "no overlapping ranges with out-of-order commits"

# crash between the write and the commit
fault after_put
gen_events 10001 300 >"$tmp/more"
psql -X -q -c "\\copy recsys.event_queue (key, value) FROM '$tmp/more' WITH (FORMAT csv, DELIMITER '|', QUOTE e'\\x01')"
if wait_for 30 paused; then
    kill -9 "$(awk '{print $2}' "$PGDATA_DIR/recsys_archiver_paused")"
    rm -f "$PGDATA_DIR/recsys_archiver_paused"
    wait_pg
    psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
    is "$(find "$D" -type f -name '*.ndjson.gz' -exec zcat {} + | grep -c '"event_id":10[0-9][0-9][0-9],')" 300 "after kill -9 between write and commit: the 300 rows archived once"
else
    ok 1 "the worker reached the fault point"
fi
is "$(find "$D" -type f -name '*.ndjson.gz' | wc -l | tr -d ' ')" "$(psql_val "SELECT count(*) FROM recsys.archive_manifest WHERE topic = 'queue' AND archived_at >= '$t0'")" "still one file per manifest row"

restore_defaults
wait_for 30 bash -c "[ \"\$(psql -X -qtA -c \"SELECT value FROM recsys.status WHERE metric = 'mode'\")\" = kafka ]"
ok $? "back to Kafka and S3 after RESET"
rm -rf "$tmp"
done_testing
