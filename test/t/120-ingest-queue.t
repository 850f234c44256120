#!/usr/bin/env bash
# Without recsys.kafka_brokers, recsys_ingest_csv writes the events into the queue table
# recsys.event_queue (COPY's multi-insert path): the rows match the file; 'stop' adds
# nothing; rejects as with Kafka.
source "$(dirname "$0")/1-ingest-lib.bash"

load_catalogue >/dev/null
NOKAFKA="SET recsys.kafka_brokers = '';"
# The server's archiver reads Kafka, not this queue: remove the rows this suite adds,
# so that they do not turn up when a later suite switches the archiver to the queue.
q0=$(psql_val "SELECT coalesce(max(id), 0) FROM recsys.event_queue")
trap 'psql_val "DELETE FROM recsys.event_queue WHERE id > $q0" >/dev/null; rm -rf "$FX"' EXIT
# queue_events JOB: "line key user movie rating ts" of the job's rows in the queue table
queue_events() {
    psql -X -qtA -F $'\t' -c "SELECT key, value FROM recsys.event_queue WHERE value LIKE '{\"event_id\":$1__________,%' ORDER BY id" |
        parse_events | awk -v job="$1" '{ $1 = $1 - job * 10000000000; print }'
}

res=$(psql_val "$NOKAFKA SELECT job_id || ' ' || events || ' ' || rejected FROM recsys_ingest_csv('$FX/ratings.csv')")
read -r job events rejected <<<"$res"
is "$events $rejected" "10 0" "queue: 10 events, 0 rejected"
is "$(job_col "$job" "target || ' ' || status")" "queue succeeded" "queue: job target and status"
is "$(queue_events "$job")" "$(cat "$FX/ratings.expected")" "queue rows match the file, in file order"

before=$(psql_val "SELECT count(*) FROM recsys.event_queue")
like "$(psql_err "$NOKAFKA SELECT * FROM recsys_ingest_csv('$FX/ratings_bad.csv', on_error => 'stop')")" \
     'invalid row at line 3 of file' "queue, stop: error names the line"
is "$(psql_val "SELECT count(*) FROM recsys.event_queue")" "$before" "queue, stop: no row added"

res=$(psql_val "$NOKAFKA SELECT job_id || ' ' || events || ' ' || rejected FROM recsys_ingest_csv('$FX/ratings_bad.csv')")
read -r job events rejected <<<"$res"
is "$events $rejected" "2 10" "queue, reject: 2 events, 10 rejected"
is "$(queue_events "$job" | awk '{print $1}' | tr '\n' ' ')" "2 12 " "queue, reject: the good rows only"

res=$(psql_val "$NOKAFKA SELECT job_id || ' ' || events FROM recsys_ingest_csv('$FX/ratings.csv', on_error => 'stop')")
read -r job events <<<"$res"
is "$events" 10 "queue, stop on a clean file: 10 events"
is "$(queue_events "$job" | wc -l)" 10 "queue, stop on a clean file: 10 rows committed"

done_testing
