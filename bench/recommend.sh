#!/usr/bin/env bash
# bench/recommend.sh: recsys_recommend latency and throughput with pgbench.
#
#   test/stack.sh up && eval "$(test/stack.sh env)"
#   bench/recommend.sh [ROWS ...]       # default: 1000000 25000000
#
# For each size: bench/aggregate.sh's data (bench/gen_movielens, MovieLens 25M's shape),
# loaded through the pipeline on a fresh stack (BENCH_RESET=1, the default, like
# bench/aggregate.sh: the stack of $RECSYS_STACK_DIR is recreated) and aggregated.
# BENCH_LOAD=0 skips that and measures the data the running stack already holds (one
# ROWS argument then, only a label). Then shared_buffers is set to BENCH_SHARED_BUFFERS
# (default 2GB: a server sized for its data, not PostgreSQL's 128MB default), the server
# restarted, the derived tables and every recsys index read into it (pg_prewarm; the
# ratings' heap is left to the runs), and pgbench -M prepared run with users drawn
# uniformly from the generated users:
#   misses: recsys.redis_url and recsys.llm_endpoint unset for the session (the
#           in-database ranking on every call): a warm-up run, then 1 client (latency
#           p50/p90/p99 from pgbench's per-transaction log), then 8 clients (calls/s);
#   hits:   the cache warmed with one call per user first (4 sessions side by side),
#           then the same two runs.
# BENCH_SECONDS (default 20) per run. Prints one markdown table per size.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SECONDS_PER_RUN=${BENCH_SECONDS:-20}
BENCH_DIR=${BENCH_DIR:-/tmp/recsys-bench}
LOAD=${BENCH_LOAD:-1}
SHARED_BUFFERS=${BENCH_SHARED_BUFFERS:-2GB}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 25000000)
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -tA)
PGBENCH=$(pg_config --bindir)/pgbench

# percentiles LOGDIR: "p50 p90 p99" in ms of pgbench's per-transaction logs
percentiles() {
    cat "$1"/pgbench_log.* | awk '{print $3 / 1000.0}' | sort -n |
        awk '{a[NR] = $1} END {printf "%.2f %.2f %.2f", a[int(NR * 0.5) + 1], a[int(NR * 0.9) + 1], a[int(NR * 0.99) + 1]}'
}

# run MODE CLIENTS: pgbench; prints "tps p50 p90 p99"
run() {
    local mode=$1 clients=$2 opts="-c client_min_messages=warning"
    local logdir
    logdir=$(mktemp -d)
    [ "$mode" = miss ] && opts="$opts -c recsys.redis_url= -c recsys.llm_endpoint="
    [ "$mode" = hit ] && opts="$opts -c recsys.llm_endpoint="
    local out
    out=$(cd "$logdir" && PGOPTIONS="$opts" "$PGBENCH" -n -M prepared -f "$SCRIPT" -c "$clients" -j "$clients" \
          -T "$SECONDS_PER_RUN" -l 2>&1)
    local tps
    tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$out" | tail -n 1)
    tps=$(printf '%.0f' "${tps:-0}")
    tps=$(printf "%.0f" "$tps")
    echo "$tps $(percentiles "$logdir")"
    rm -rf "$logdir"
}

# restart the server with BENCH_SHARED_BUFFERS and read the derived tables into it
size_server() {
    "${PSQL[@]}" -c "ALTER SYSTEM SET shared_buffers = '$SHARED_BUFFERS'" >/dev/null
    "$REPO/test/stack.sh" stop postgres >/dev/null
    "$REPO/test/stack.sh" start postgres >/dev/null
    "${PSQL[@]}" -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" >/dev/null
    "${PSQL[@]}" -c "SELECT sum(pg_prewarm(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'recsys' AND (c.relkind = 'i' OR (c.relkind = 'r' AND c.relname <> 'ratings'))" >/dev/null
}

for rows in "${SIZES[@]}"; do
    if [ "$LOAD" = 1 ]; then
        echo "size $rows: loading and aggregating (bench/aggregate.sh's data)" >&2
        BENCH_REBUILD_MAX=0 BENCH_DIR="$BENCH_DIR" bash "$HERE/aggregate.sh" "$rows" >/dev/null
    fi
    eval "$("$REPO/test/stack.sh" env)"
    size_server
    users=$("${PSQL[@]}" -c "SELECT max(user_id) FROM recsys.user_profiles")
    nratings=$("${PSQL[@]}" -c "SELECT count(*) FROM recsys.ratings")
    SCRIPT=$(mktemp)
    printf '\\set u random(1, %s)\nSELECT * FROM recsys_recommend(:u, 5);\n' "$users" >"$SCRIPT"
    run miss 2 >/dev/null    # warm-up: each backend reads the movie statistics once
    read -r miss1 mp50 mp90 mp99 <<<"$(run miss 1)"
    read -r miss8 _ _ _ <<<"$(run miss 8)"
    echo "size $rows: warming the cache ($users users)" >&2
    for part in 0 1 2 3; do
        PGOPTIONS="-c recsys.llm_endpoint=" "${PSQL[@]}" -c "SELECT count(*) FROM generate_series(1, $users) u,
            LATERAL recsys_recommend(u, 5) r WHERE u % 4 = $part" >/dev/null &
    done
    wait
    read -r hit1 hp50 hp90 hp99 <<<"$(run hit 1)"
    read -r hit8 _ _ _ <<<"$(run hit 8)"
    hits=$("${PSQL[@]}" -c "SELECT value FROM recsys.status WHERE component = 'cache' AND metric = 'hits'")
    rm -f "$SCRIPT"
    cat <<EOF

Run of $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $rows ratings ($nratings in recsys.ratings, $users users), shared_buffers $SHARED_BUFFERS, pgbench -M prepared, ${SECONDS_PER_RUN} s a run:

| calls | p50 ms (1 client) | p90 ms | p99 ms | calls/s, 1 client | calls/s, 8 clients |
| --- | ---: | ---: | ---: | ---: | ---: |
| misses (in-database ranking) | $mp50 | $mp90 | $mp99 | $miss1 | $miss8 |
| cache hits | $hp50 | $hp90 | $hp99 | $hit1 | $hit8 |

(cache hits counted by recsys.status at the end: $hits)
EOF
done
