#!/usr/bin/env bash
# 260-embedded-defaults.t: nothing configured but PostgreSQL. With recsys.kafka_brokers
# and recsys.s3_endpoint reset to empty and recsys.archive_dir at its default (a
# directory the archiver makes in the data directory), the pipeline runs end to end:
# the catalogue loads, a ratings file and real-time ratings go to the queue table, the
# archiver writes them as objects under the default directory, and recsys_health()
# names each stand-in.
source "$(dirname "$0")/1-ingest-lib.bash"
PGDATA_DIR=$(psql -X -qtA -c 'SHOW data_directory')
ARCHIVE="$PGDATA_DIR/recsys_archive"

conf() {
    psql -X -qtA -c "ALTER SYSTEM SET recsys.kafka_brokers = ''" -c "ALTER SYSTEM SET recsys.s3_endpoint = ''" \
        -c "ALTER SYSTEM SET recsys.redis_url = ''" -c "ALTER SYSTEM RESET recsys.archive_dir" \
        -c "ALTER SYSTEM SET recsys.archive_flush_interval = '300ms'" -c "SELECT pg_reload_conf()" >/dev/null
}
restore() {
    psql -X -qtA -c "ALTER SYSTEM RESET recsys.kafka_brokers" -c "ALTER SYSTEM RESET recsys.s3_endpoint" \
        -c "ALTER SYSTEM RESET recsys.redis_url" -c "ALTER SYSTEM RESET recsys.archive_flush_interval" \
        -c "SELECT pg_reload_conf()" >/dev/null 2>&1
    rm -rf "$FX"
}
trap restore EXIT
# rows another suite left in the queue are archived too: count them first
before=$(psql_val "SELECT coalesce(sum(events + dead_letters), 0) FROM recsys.archive_manifest WHERE topic = 'queue'")
pending=$(psql_val "SELECT count(*) FROM recsys.event_queue")
conf
archiver_mode_is_queue() {
    [ "$(psql -X -qtA -c "SELECT value FROM recsys.status WHERE metric = 'mode'")" = queue ] &&
        psql -X -qtA -c "SELECT value FROM recsys.status WHERE metric = 'storage'" | grep -q "^local:$ARCHIVE\$"
}
wait_for 30 archiver_mode_is_queue
ok $? "the archiver drains the queue table into the default directory $ARCHIVE"

health=$(psql_val "SELECT string_agg(component || '=' || configured || '/' || ok, ',' ORDER BY component) FROM recsys_health() WHERE component IN ('kafka', 's3', 'redis')")
is "$health" "kafka=false/true,redis=false/true,s3=false/true" "health: kafka, s3 and redis not configured, their stand-ins ok"
like "$(psql_val "SELECT detail FROM recsys_health() WHERE component = 's3'")" "the archive is the local directory $ARCHIVE" "health names the default archive directory"

is "$(load_catalogue)" 9 "the catalogue loads"
res=$(psql_val "SELECT events || ' ' || rejected FROM recsys_ingest_csv('$FX/ratings.csv')")
is "$res" "10 0" "a ratings file goes to the queue table: 10 events"
psql_val "BEGIN; SELECT recsys_rate(260001, 1, 4.5); SELECT recsys_rate(260002, 3, 2); COMMIT" >/dev/null
psql_val "BEGIN; SELECT recsys_rate(260003, 1, 1); ROLLBACK" >/dev/null
archived=$(psql_val "SELECT recsys_archive_sync('60 s')")
like "$archived" '^[0-9]+$' "recsys_archive_sync returns the events archived"
is "$(psql_val "SELECT sum(events + dead_letters) - $before - $pending FROM recsys.archive_manifest WHERE topic = 'queue'")" 12 \
    "12 more events archived: the file's 10 and the 2 committed ratings"
is "$(psql_val "SELECT count(*) FROM recsys.event_queue")" 0 "the queue is empty"
lines=$(find "$ARCHIVE/events/topic=queue/partition=0" -name '*.ndjson.gz' -newer "$FX/ratings.csv" -exec zcat {} + 2>/dev/null)
is "$(grep -c '"user_id":26000[12],' <<<"$lines")" 2 "the committed ratings are in the archive's files"
is "$(grep -c '"user_id":260003,' <<<"$lines")" 0 "the rolled-back rating is not"

done_testing
