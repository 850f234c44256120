#!/usr/bin/env bash
# bench/archive.sh: the archiver's throughput and its lag behind an ingest.
#
#   eval "$(test/stack.sh env)"     # a running stack (Kafka and MinIO configured)
#   bench/archive.sh [ROWS ...]     # default: 1000000 10000000
#
# For each size, with a MovieLens-format ratings.csv from bench/gen_ratings:
#   A. backlog: recsys_ingest_csv into a fresh topic the archiver does not read (the
#      session's recsys.kafka_topic), then point the archiver at it and time
#      recsys_archive_sync(): events archived per second from a full backlog;
#   B. live: point the archiver at another fresh topic, then recsys_ingest_csv into it
#      (the archiver works during the ingest) and time recsys_archive_sync() after the
#      ingest returned: the lag between the end of the ingest and the end of archiving,
#      beside the ingest rate of the same run.
# Settings are the server's (recsys.archiver_workers, archive_flush_events, ...).
# The topics are deleted afterwards; the objects stay in the bucket.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/recsys-bench}
TOOLS=${RECSYS_TOOLS_DIR:-/opt/recsys-tools}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 10000000)
MOVIES=50000
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -tA)
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

[ -n "$("${PSQL[@]}" -c "SHOW recsys.kafka_brokers")" ] || { echo "bench: recsys.kafka_brokers is empty" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR"
cc -O2 -o "$BENCH_DIR/gen_ratings" "$HERE/gen_ratings.c"

# a catalogue covering every generated movie id (the ingest rejects unknown movies)
if [ ! -f "$BENCH_DIR/movies.csv" ]; then
    { echo "movieId,title,genres"; seq 1 $MOVIES | awk '{print $1",Movie "$1" (2000),Drama|Comedy"}'; } \
        >"$BENCH_DIR/movies.csv"
fi
chmod 644 "$BENCH_DIR/movies.csv"
"${PSQL[@]}" -c "SELECT recsys_load_movies('$BENCH_DIR/movies.csv')" >/dev/null

now() { date +%s.%N; }
topic_cmd() {
    java -Xms64m -Xmx256m -cp "$TOOLS/kafka/libs/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$KAFKA_BROKERS" "$@" >/dev/null 2>&1
}
# archive_topic T: point the archiver at T and wait until it holds its partitions.
archive_topic() {
    "${PSQL[@]}" -c "ALTER SYSTEM SET recsys.kafka_topic = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 1 300); do
        [ "$("${PSQL[@]}" -c "SELECT count(*) FROM recsys.status WHERE metric LIKE '$1/%archived_offset' AND value <> '-1'")" -gt 0 ] && return 0
        sleep 0.05
    done
    echo "bench: the archiver did not start on $1" >&2; exit 1
}
cleanup() {
    "${PSQL[@]}" -c "ALTER SYSTEM RESET recsys.kafka_topic" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
}
trap cleanup EXIT

workers=$("${PSQL[@]}" -c "SHOW recsys.archiver_workers")
flush=$("${PSQL[@]}" -c "SHOW recsys.archive_flush_events")
echo "archiver_workers=$workers archive_flush_events=$flush, $(nproc) CPUs"
printf '%-10s %12s %14s %14s %12s %14s %12s %8s\n' rows backlog_s archived/s live_ingest_s ingest_ev/s archive_end_s lag_s objects
for n in "${SIZES[@]}"; do
    f="$BENCH_DIR/ratings_$n.csv"
    [ -f "$f" ] || "$BENCH_DIR/gen_ratings" "$n" $MOVIES >"$f"
    chmod 644 "$f"
    cat "$f" >/dev/null

    # A. backlog
    A=bench-archive-a-$n-$$
    topic_cmd --create --topic "$A" --partitions 3 --replication-factor 1
    ev=$("${PSQL[@]}" -c "SET recsys.kafka_topic = '$A'" -c "SELECT events FROM recsys_ingest_csv('$f')")
    archive_topic "$A"
    ta0=$(now)
    "${PSQL[@]}" -c "SELECT recsys_archive_sync('1800 s')" >/dev/null
    ta1=$(now)
    archived=$("${PSQL[@]}" -c "SELECT coalesce(sum(events), 0) FROM recsys.archive_manifest WHERE topic = '$A'")
    [ "$archived" = "$ev" ] || echo "bench: warning: $archived archived of $ev ingested ($A)" >&2

    # B. live
    B=bench-archive-b-$n-$$
    topic_cmd --create --topic "$B" --partitions 3 --replication-factor 1
    archive_topic "$B"
    tb0=$(now)
    evb=$("${PSQL[@]}" -c "SELECT events FROM recsys_ingest_csv('$f')")
    tb1=$(now)
    "${PSQL[@]}" -c "SELECT recsys_archive_sync('1800 s')" >/dev/null
    tb2=$(now)
    archived=$("${PSQL[@]}" -c "SELECT coalesce(sum(events), 0) FROM recsys.archive_manifest WHERE topic = '$B'")
    objects=$("${PSQL[@]}" -c "SELECT count(*) FROM recsys.archive_manifest WHERE topic = '$B'")
    [ "$archived" = "$evb" ] || echo "bench: warning: $archived archived of $evb ingested ($B)" >&2

    awk -v n="$n" -v ev="$ev" -v ta0="$ta0" -v ta1="$ta1" -v tb0="$tb0" -v tb1="$tb1" -v tb2="$tb2" -v o="$objects" 'BEGIN {
        printf "%-10d %12.2f %14.0f %14.2f %12.0f %14.2f %12.2f %8d\n",
            n, ta1 - ta0, ev / (ta1 - ta0), tb1 - tb0, n / (tb1 - tb0), tb2 - tb0, tb2 - tb1, o }'
    topic_cmd --delete --topic "$A"
    topic_cmd --delete --topic "$B"
done
