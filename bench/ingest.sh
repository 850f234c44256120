#!/usr/bin/env bash
# bench/ingest.sh: recsys_ingest_csv into Kafka against COPY of the same file.
#
#   eval "$(test/stack.sh env)"     # a running stack (Kafka configured)
#   bench/ingest.sh [ROWS ...]      # default: 1000000 10000000
#
# For each size: generate a MovieLens-format ratings.csv with bench/gen_ratings (the
# project's own generator, deterministic), then in one run
#   1. SELECT * FROM recsys_ingest_csv(file)  -> events acknowledged by Kafka per second,
#      while sampling the ingest worker's memory from /proc (VmHWM, peak RssAnon);
#   2. COPY the same file into an UNLOGGED table -> rows per second;
# and print one line per size.  Files live in $BENCH_DIR (default /tmp/recsys-bench),
# readable by the server's OS user; run as root or as that user (for /proc).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/recsys-bench}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 10000000)
MOVIES=50000
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -tA)
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR"
cc -O2 -o "$BENCH_DIR/gen_ratings" "$HERE/gen_ratings.c"

[ -n "$("${PSQL[@]}" -c "SHOW recsys.kafka_brokers")" ] ||
    echo "bench: warning: recsys.kafka_brokers is empty: events go to recsys.event_queue" >&2

# a catalogue covering every generated movie id
if [ ! -f "$BENCH_DIR/movies.csv" ]; then
    { echo "movieId,title,genres"; seq 1 $MOVIES | awk '{print $1",Movie "$1" (2000),Drama|Comedy"}'; } \
        > "$BENCH_DIR/movies.csv"
fi
chmod 644 "$BENCH_DIR/movies.csv"
"${PSQL[@]}" -c "SELECT recsys_load_movies('$BENCH_DIR/movies.csv')" >/dev/null

# sample_memory OUTFILE: follow the ingest worker, keep the peaks (kB) until killed
sample_memory() {
    local out=$1 pid="" hwm=0 anon=0 first=""
    trap 'echo "$hwm $anon ${first:-0}" > "$out"; exit 0' TERM
    while :; do
        if [ -z "$pid" ] || [ ! -r "/proc/$pid/status" ]; then
            pid=$("${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'recsys ingest' LIMIT 1" 2>/dev/null || true)
        fi
        if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
            local h a
            h=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
            a=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
            [ -n "$first" ] || first=$a
            [ "${h:-0}" -gt "$hwm" ] && hwm=$h
            [ "${a:-0}" -gt "$anon" ] && anon=$a
        fi
        sleep 0.1
    done
}

now() { date +%s.%N; }

printf '%-10s %10s %14s %10s %14s %7s %10s %12s %12s\n' rows ingest_s events/s copy_s copy_rows/s ratio VmHWM_MB RssAnon_MB growth_MB
for n in "${SIZES[@]}"; do
    f="$BENCH_DIR/ratings_$n.csv"
    [ -f "$f" ] || "$BENCH_DIR/gen_ratings" "$n" $MOVIES > "$f"
    chmod 644 "$f"
    cat "$f" > /dev/null  # page cache warm for both contenders

    memfile=$(mktemp)
    sample_memory "$memfile" &
    sampler=$!
    t0=$(now)
    res=$("${PSQL[@]}" -c "SELECT events || ' ' || rejected FROM recsys_ingest_csv('$f')")
    t1=$(now)
    kill -TERM $sampler; wait $sampler 2>/dev/null || true
    read -r hwm anon first < "$memfile"; rm -f "$memfile"
    events=${res%% *}

    "${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_copy; CREATE UNLOGGED TABLE bench_copy (user_id bigint, movie_id bigint, rating real, ts bigint)"
    t2=$(now)
    "${PSQL[@]}" -c "COPY bench_copy FROM '$f' WITH (FORMAT csv, HEADER true)"
    t3=$(now)
    "${PSQL[@]}" -c "DROP TABLE bench_copy"

    awk -v n="$n" -v ev="$events" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" \
        -v hwm="$hwm" -v anon="$anon" -v first="$first" 'BEGIN {
            ing = t1 - t0; cp = t3 - t2;
            printf "%-10d %10.2f %14.0f %10.2f %14.0f %7.2f %10.1f %12.1f %12.1f\n",
                n, ing, ev / ing, cp, n / cp, (ev / ing) / (n / cp), hwm / 1024, anon / 1024,
                (anon - first) / 1024 }'
    [ "$events" = "$n" ] || echo "bench: warning: $events events acknowledged of $n rows" >&2
done
