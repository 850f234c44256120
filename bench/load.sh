#!/usr/bin/env bash
# bench/load.sh: recommendations and ratings under load while a big ingest and an
# aggregate run; errors, deadlocks, lock waits, latency and throughput.
#
#   test/stack.sh up && eval "$(test/stack.sh env)"    # a stack of your own
#   bench/load.sh [EVENTS]                              # default: 10000000
#
# Data: bench/gen_movielens (bench/aggregate.sh's generator, MovieLens 25M's shape)
# writes a base of BENCH_BASE ratings (default EVENTS / 10, at least 100,000) and an
# increment of EVENTS ratings (by the base's users in proportion to their activity,
# plus 0.5 % new users) into $BENCH_DIR/load-BASE-EVENTS, kept for the next run while
# the generator and seed are unchanged.
#
# Like bench/aggregate.sh, the script first STOPS THE STACK OF $RECSYS_STACK_DIR,
# DELETES THAT DIRECTORY and starts a new stack there (BENCH_RESET=0: the stack as it is,
# whatever it holds and points at: test/t/610-e2e-serving.t runs it so on its queue
# table and local archive).  Then:
#   1. prepare (not under load): recsys_load_movies, recsys_ingest_csv of the base,
#      recsys_archive_sync, recsys_aggregate(); the settings log_lock_waits = on and
#      deadlock_timeout = 200ms are set for the run (ALTER SYSTEM, reset at the end);
#   2. the load: BENCH_REC_CLIENTS (32) pgbench clients call
#      SELECT * FROM recsys_recommend(u, 5), u uniform over every user id of the data
#      (the cache on, so the cache warms during the run and the aggregate's
#      invalidations make misses again; recsys.llm_endpoint off unless BENCH_LLM=1),
#      and BENCH_RATE_CLIENTS (8) call recsys_rate(u, m, r) for random users and
#      catalogue movies; pgbench runs in chunks of BENCH_CHUNK (5) seconds until told to
#      stop, with per-transaction logs;
#   3. after BENCH_WARMUP (5) seconds of load: recsys_ingest_csv(increment.csv) (EVENTS
#      events), recsys_archive_sync('60 min'), recsys_aggregate(), each timed; then
#      BENCH_TAIL (5) more seconds of load (at least BENCH_MIN_LOAD seconds in all);
#   4. checks: no error in any client (pgbench's failed transactions, aborted clients,
#      ERROR/FATAL lines, exit status), the ingest's events = EVENTS with no reject, the
#      aggregate read at least EVENTS events, no deadlock (pg_stat_database.deadlocks
#      and "deadlock detected" in the server log), no lock wait of 200 ms or more
#      ("still waiting" in the server log, any process; waits for a relation extension
#      lock, a backend adding a page to a table others insert into too, are counted
#      apart and, with BENCH_STRICT_LOCKS=0, reported without failing the run); ERROR
#      lines of the server log during the run are counted and shown, not checked.
# Output: a summary on stdout, "# figure: NAME VALUE UNIT" lines, the JSON in
# bench/load-last.json (BENCH_JSON), one JSON line appended to
# $RECSYS_STACK_DIR/reliability-figures.jsonl.  Exit status 1 when a check failed.
# Tunables: BENCH_DIR (/tmp/recsys-bench), BENCH_SEED (1), BENCH_SETTLE (10),
# BENCH_SERVER_LOG ($RECSYS_STACK_DIR/logs/postgres.log), BENCH_RATE_TPS (total rate
# calls/s, pgbench -R; default unthrottled).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
EVENTS=${1:-10000000}
BENCH_DIR=${BENCH_DIR:-/tmp/recsys-bench}
SEED=${BENCH_SEED:-1}
RESET=${BENCH_RESET:-1}
SETTLE=${BENCH_SETTLE:-10}
BASE=${BENCH_BASE:-$((EVENTS / 10))}
[ "$BASE" -ge 100000 ] || BASE=100000
REC_CLIENTS=${BENCH_REC_CLIENTS:-32}
RATE_CLIENTS=${BENCH_RATE_CLIENTS:-8}
WARMUP=${BENCH_WARMUP:-5}
TAIL=${BENCH_TAIL:-5}
MIN_LOAD=${BENCH_MIN_LOAD:-0}
CHUNK=${BENCH_CHUNK:-5}
LLM=${BENCH_LLM:-0}
RATE_TPS=${BENCH_RATE_TPS:-}
STRICT_LOCKS=${BENCH_STRICT_LOCKS:-1}
OUT_JSON=${BENCH_JSON:-$HERE/load-last.json}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -tA)
PGBENCH=$(pg_config --bindir)/pgbench
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

die() { echo "load: error: $*" >&2; exit 2; }
source "$HERE/lib.sh"
warn() { echo "load: warning: $*" >&2; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

[ -n "${RECSYS_STACK_DIR:-}" ] && [ -n "${PGHOST:-}" ] ||
    die 'no stack in the environment: run eval "$(test/stack.sh env)" first'
if [ "$RESET" = 1 ] && [ ! -f "$RECSYS_STACK_DIR/pg/data/PG_VERSION" ]; then
    die "$RECSYS_STACK_DIR does not hold a stack (no pg/data/PG_VERSION): not wiping it"
fi
[ -x "$PGBENCH" ] || die "no pgbench at $PGBENCH"

# ---------------------------------------------------------------- data
mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR"
cc -O2 -o "$BENCH_DIR/gen_movielens" "$HERE/gen_movielens.c" -lm
gen_id=$(sha1sum "$HERE/gen_movielens.c" | cut -c1-12)
dir="$BENCH_DIR/load-$BASE-$EVENTS"
stamp="gen_movielens.c $gen_id --ratings $BASE --increment $EVENTS --seed $SEED"
if [ "$(cat "$dir/stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "load: generating $BASE + $EVENTS ratings into $dir" >&2
    mkdir -p "$dir"
    chmod 755 "$dir"
    rm -f "$dir/stamp"
    "$BENCH_DIR/gen_movielens" --ratings "$BASE" --increment "$EVENTS" --seed "$SEED" --out "$dir" \
        2>"$dir/shape.txt" || { cat "$dir/shape.txt" >&2; die "gen_movielens failed"; }
    echo "$stamp" >"$dir/stamp"
fi
chmod 644 "$dir"/*.csv
# every user id of base and increment: 1..U, new users U+1..U+X
max_user=$(sed -n 's/.*new users (ids [0-9]*\.\.\([0-9]*\)).*/\1/p' "$dir/shape.txt")
[ -n "$max_user" ] || max_user=$(sed -n 's/.*: \([0-9]*\) users,.*/\1/p' "$dir/shape.txt")
[ -n "$max_user" ] || die "cannot read the users of $dir/shape.txt"

# ---------------------------------------------------------------- stack
if [ "$RESET" = 1 ]; then
    echo "load: a fresh stack in $RECSYS_STACK_DIR" >&2
    fresh_stack
fi
SERVER_LOG=${BENCH_SERVER_LOG:-$RECSYS_STACK_DIR/logs/postgres.log}
[ -r "$SERVER_LOG" ] || die "cannot read the server log $SERVER_LOG (BENCH_SERVER_LOG)"

WORK=$(mktemp -d /tmp/recsys-load.XXXXXX)
chmod 755 "$WORK"
loaders=()
# the settings this run changes, as postgresql.auto.conf had them
saved=$("${PSQL[@]}" -c "SELECT coalesce(string_agg(name || '=' || setting, ' '), '') FROM pg_file_settings
    WHERE name IN ('log_lock_waits', 'deadlock_timeout') AND sourcefile LIKE '%postgresql.auto.conf'")
cleanup() {
    touch "$WORK/stop"
    local p
    for p in "${loaders[@]}"; do wait "$p" 2>/dev/null || true; done
    local s=(-c "ALTER SYSTEM RESET log_lock_waits" -c "ALTER SYSTEM RESET deadlock_timeout")
    for kv in $saved; do s+=(-c "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}'"); done
    "${PSQL[@]}" "${s[@]}" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    "${PSQL[@]}" -c "DROP TABLE IF EXISTS public.bench_load_movies" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- prepare
echo "load: preparing: catalogue, base of $BASE ratings, aggregate" >&2
t0=$(now)
"${PSQL[@]}" -c "SELECT recsys_load_movies('$dir/movies.csv')" >/dev/null
out=$("${PSQL[@]}" -c "SELECT events || ' ' || rejected FROM recsys_ingest_csv('$dir/ratings.csv')")
[ "$out" = "$BASE 0" ] || warn "base ingest of $BASE rows: events, rejected = $out"
"${PSQL[@]}" -c "SELECT recsys_archive_sync('30 min')" >/dev/null
"${PSQL[@]}" -c "SELECT * FROM recsys_aggregate()" >/dev/null
prep_s=$(secs "$t0" "$(now)")
"${PSQL[@]}" -c "DROP TABLE IF EXISTS public.bench_load_movies" \
    -c "CREATE TABLE public.bench_load_movies AS SELECT row_number() OVER (ORDER BY movie_id)::int AS i, movie_id FROM recsys.movies" \
    -c "ALTER TABLE public.bench_load_movies ADD PRIMARY KEY (i)"
n_movies=$("${PSQL[@]}" -c "SELECT count(*) FROM public.bench_load_movies")
"${PSQL[@]}" -c "ALTER SYSTEM SET log_lock_waits = on" -c "ALTER SYSTEM SET deadlock_timeout = '200ms'" \
    -c "SELECT pg_reload_conf()" >/dev/null
for i in $(seq 50); do
    [ "$("${PSQL[@]}" -c "SHOW deadlock_timeout")" = 200ms ] && break
    sleep 0.1
done
[ "$("${PSQL[@]}" -c "SHOW log_lock_waits") $("${PSQL[@]}" -c "SHOW deadlock_timeout")" = "on 200ms" ] ||
    die "log_lock_waits / deadlock_timeout not in effect"

metric() { "${PSQL[@]}" -c "SELECT value FROM recsys.status WHERE component = '$1' AND metric = '$2'"; }
deadlocks() { "${PSQL[@]}" -c "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"; }

# ---------------------------------------------------------------- the load
printf '\\set u random(1, %s)\nSELECT * FROM recsys_recommend(:u, 5);\n' "$max_user" >"$WORK/recommend.sql"
printf '%s\n' "\\set u random(1, $max_user)" "\\set m random(1, $n_movies)" "\\set r random(1, 10)" \
    "SELECT recsys_rate(:u, movie_id, :r * 0.5) FROM public.bench_load_movies WHERE i = :m;" >"$WORK/rate.sql"

# loader NAME CLIENTS SCRIPT [PGBENCH OPTIONS...]: pgbench chunks of CHUNK seconds until $WORK/stop
loader() {
    local name=$1 clients=$2 script=$3 i=0 jobs
    shift 3
    jobs=$(( clients < 4 ? clients : 4 ))
    mkdir -p "$WORK/$name"
    local opts="$PGOPTIONS -c client_min_messages=error"
    [ "$name" = recommend ] && [ "$LLM" != 1 ] && opts="$opts -c recsys.llm_endpoint="
    now >"$WORK/$name/start"
    while [ ! -f "$WORK/stop" ]; do
        i=$((i + 1))
        (cd "$WORK/$name" && PGOPTIONS="$opts" "$PGBENCH" -n -M prepared -f "$script" -c "$clients" -j "$jobs" \
            -T "$CHUNK" -l --log-prefix="c$i" "$@" >"out.$i" 2>"err.$i"; echo $? >"rc.$i") || true
        [ "$(cat "$WORK/$name/rc.$i")" = 0 ] || sleep 1 # a client that fails at once: do not spin
    done
    now >"$WORK/$name/end"
}

dl0=$(deadlocks)
h0=$(metric cache hits) m0=$(metric cache misses) e0=$(metric cache errors) l0=$(metric llm calls)
log0=$(stat -c %s "$SERVER_LOG")
load_t0=$(now)
loader recommend "$REC_CLIENTS" "$WORK/recommend.sql" &
loaders+=($!)
rate_opts=()
[ -n "$RATE_TPS" ] && rate_opts=(-R "$RATE_TPS")
loader rate "$RATE_CLIENTS" "$WORK/rate.sql" "${rate_opts[@]}" &
loaders+=($!)
echo "load: $REC_CLIENTS recommend + $RATE_CLIENTS rate clients running; ingest of $EVENTS events in $WARMUP s" >&2
sleep "$WARMUP"

busy_t0=$(now)
t0=$(now)
out=$("${PSQL[@]}" -c "SELECT events || ' ' || rejected FROM recsys_ingest_csv('$dir/increment.csv')" 2>&1) || out="failed: $out"
t1=$(now)
ingest_s=$(secs "$t0" "$t1")
read -r ingest_events ingest_rejected <<<"$out" || true
echo "load: ingest ${ingest_s} s ($out)" >&2
sync_out=$("${PSQL[@]}" -c "SELECT recsys_archive_sync('60 min')" 2>&1) || sync_out="failed: $sync_out"
t2=$(now)
archive_s=$(secs "$t1" "$t2")
echo "load: archive sync ${archive_s} s" >&2
agg=$("${PSQL[@]}" -F ' ' -c "SELECT objects, events, users, movies, round(seconds::numeric, 2) FROM recsys_aggregate()" 2>&1) ||
    agg="failed: $agg"
t3=$(now)
aggregate_s=$(secs "$t2" "$t3")
busy_t1=$t3
read -r agg_objects agg_events agg_users agg_movies _ <<<"$agg" || true
echo "load: aggregate ${aggregate_s} s (objects events users movies seconds: $agg)" >&2

sleep "$TAIL"
left=$(awk -v a="$load_t0" -v b="$(now)" -v m="$MIN_LOAD" 'BEGIN { d = m - (b - a); print (d > 0 ? int(d + 0.999) : 0) }')
if [ "$left" -gt 0 ]; then sleep "$left"; fi
touch "$WORK/stop"
for p in "${loaders[@]}"; do wait "$p" || true; done
loaders=()

dl1=$(deadlocks)
hits=$(( $(metric cache hits) - h0 )) misses=$(( $(metric cache misses) - m0 ))
cache_errors=$(( $(metric cache errors) - e0 )) llm_calls=$(( $(metric llm calls) - l0 ))
tail -c +"$((log0 + 1))" "$SERVER_LOG" >"$WORK/server.log"
lock_waits=$(grep -c 'still waiting for' "$WORK/server.log" || true)
# of which waits for PostgreSQL's relation extension lock (a backend adding a page to a
# table others insert into too): the holder was off CPU or stalled writing
extension_waits=$(grep -c 'still waiting for ExclusiveLock on extension of relation' "$WORK/server.log" || true)
other_waits=$((lock_waits - extension_waits))
wait_relations=$({ grep -oE 'still waiting for [A-Za-z]+ on [a-z ]*relation [0-9]+' "$WORK/server.log" || true; } |
    awk '{ print $NF }' | sort -u | while read -r oid; do
        "${PSQL[@]}" -c "SELECT coalesce((SELECT relnamespace::regnamespace || '.' || relname FROM pg_class WHERE oid = $oid), '$oid')"
    done | tr '\n' ' ' | sed 's/ $//')
deadlock_lines=$(grep -c 'deadlock detected' "$WORK/server.log" || true)
server_errors=$(grep -cE '(ERROR|FATAL|PANIC):' "$WORK/server.log" || true)

# stats NAME: "tx errors seconds tps p50 p95 p99 max busy_p99" of a loader (ms)
stats() {
    local d=$WORK/$1 tx errs fails rcs wall
    tx=$(cat "$d"/out.* 2>/dev/null | sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
    fails=$(cat "$d"/out.* 2>/dev/null | sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
    errs=$(cat "$d"/err.* 2>/dev/null | grep -cE 'ERROR|FATAL|aborted|error' || true)
    rcs=$(cat "$d"/rc.* 2>/dev/null | grep -cv '^0$' || true)
    wall=$(secs "$(cat "$d/start")" "$(cat "$d/end")")
    # pgbench log: client tx latency_us script epoch_s epoch_us
    local pct
    pct=$(cat "$d"/c[0-9]* 2>/dev/null | awk -v b0="$busy_t0" -v b1="$busy_t1" '
        { l = $3 / 1000.0; print l, (($5 + $6 / 1e6) >= b0 && ($5 + $6 / 1e6) <= b1) }' | sort -n -k1,1 |
        awk '{ a[NR] = $1; if ($2) b[++nb] = $1 }
             END { if (NR == 0) { print "0 0 0 0 0"; exit }
                   printf "%.2f %.2f %.2f %.2f %.2f", a[int(NR * 0.5) + 1], a[int(NR * 0.95) + 1], a[int(NR * 0.99) + 1], a[NR],
                          (nb ? b[int(nb * 0.99) + 1] : 0) }')
    echo "$tx $((errs + fails + rcs)) $wall $(awk -v t="$tx" -v w="$wall" 'BEGIN { printf "%.1f", (w > 0 ? t / w : 0) }') $pct"
}
read -r rec_tx rec_err rec_wall rec_tps rec_p50 rec_p95 rec_p99 rec_max rec_busy_p99 <<<"$(stats recommend)"
read -r rate_tx rate_err rate_wall rate_tps rate_p50 rate_p95 rate_p99 rate_max rate_busy_p99 <<<"$(stats rate)"
load_s=$(secs "$load_t0" "$(cat "$WORK/recommend/end")")

# ---------------------------------------------------------------- checks
problems=()
[ "$rec_tx" -gt 0 ] || problems+=("no recommend call completed")
[ "$rate_tx" -gt 0 ] || problems+=("no rate call completed")
[ "$rec_err" -eq 0 ] || problems+=("recommend clients saw $rec_err errors")
[ "$rate_err" -eq 0 ] || problems+=("rate clients saw $rate_err errors")
[ "${ingest_events:-x} ${ingest_rejected:-x}" = "$EVENTS 0" ] || problems+=("ingest: events, rejected = $out (want $EVENTS 0)")
case "$sync_out" in failed*) problems+=("archive sync $sync_out") ;; esac
[[ "${agg_events:-x}" =~ ^[0-9]+$ ]] && [ "$agg_events" -ge "$EVENTS" ] || problems+=("aggregate: $agg (want at least $EVENTS events)")
[ "$((dl1 - dl0))" -eq 0 ] || problems+=("pg_stat_database.deadlocks grew by $((dl1 - dl0))")
[ "$deadlock_lines" -eq 0 ] || problems+=("$deadlock_lines 'deadlock detected' lines in the server log")
[ "$other_waits" -eq 0 ] || problems+=("$other_waits lock waits of 200 ms or more ('still waiting' in the server log), not counting relation extension")
if [ "$extension_waits" -gt 0 ]; then
    msg="$extension_waits waits of 200 ms or more for a relation extension lock ($wait_relations)"
    if [ "$STRICT_LOCKS" = 1 ]; then problems+=("$msg"); else warn "$msg (BENCH_STRICT_LOCKS=0: reported, not a failure)"; fi
fi
for name in recommend rate; do
    if [ -n "$(cat "$WORK/$name"/err.* 2>/dev/null)" ]; then
        echo "load: $name clients' stderr (first lines):" >&2
        cat "$WORK/$name"/err.* | sort | uniq -c | sort -rn | head -n 10 >&2
    fi
done
if [ "$lock_waits" -gt 0 ] || [ "$deadlock_lines" -gt 0 ] || [ "$server_errors" -gt 0 ]; then
    echo "load: server log during the run (lock waits, deadlocks, errors; first lines):" >&2
    grep -E -A2 'still waiting for|deadlock detected|(ERROR|FATAL|PANIC):' "$WORK/server.log" | head -n 40 >&2
fi

# ---------------------------------------------------------------- report
status=ok
[ ${#problems[@]} -eq 0 ] || status=failed
json=$(jq -cn \
    --arg status "$status" --arg when "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" --argjson cpus "$(nproc)" \
    --argjson events "$EVENTS" --argjson base "$BASE" --argjson users "$max_user" --argjson reset "$RESET" \
    --argjson rec_clients "$REC_CLIENTS" --argjson rate_clients "$RATE_CLIENTS" --argjson llm "$LLM" \
    --argjson load_s "$load_s" --argjson prep_s "$prep_s" \
    --argjson ingest_s "$ingest_s" --argjson archive_s "$archive_s" --argjson aggregate_s "$aggregate_s" \
    --arg ingest "$out" --arg aggregate "$agg" \
    --argjson rec_tx "$rec_tx" --argjson rec_err "$rec_err" --argjson rec_tps "$rec_tps" \
    --argjson rec_p50 "$rec_p50" --argjson rec_p95 "$rec_p95" --argjson rec_p99 "$rec_p99" --argjson rec_max "$rec_max" \
    --argjson rec_busy_p99 "$rec_busy_p99" \
    --argjson rate_tx "$rate_tx" --argjson rate_err "$rate_err" --argjson rate_tps "$rate_tps" \
    --argjson rate_p50 "$rate_p50" --argjson rate_p95 "$rate_p95" --argjson rate_p99 "$rate_p99" --argjson rate_max "$rate_max" \
    --argjson rate_busy_p99 "$rate_busy_p99" \
    --argjson hits "$hits" --argjson misses "$misses" --argjson cache_errors "$cache_errors" --argjson llm_calls "$llm_calls" \
    --argjson deadlocks "$((dl1 - dl0))" --argjson deadlock_lines "$deadlock_lines" --argjson lock_waits "$lock_waits" \
    --argjson extension_waits "$extension_waits" --arg wait_relations "$wait_relations" \
    --argjson server_errors "$server_errors" \
    --args '{bench: "load", status: $status, when: $when, cpus: $cpus, events: $events, base_events: $base,
        users: $users, fresh_stack: ($reset == 1), llm: ($llm == 1),
        clients: {recommend: $rec_clients, rate: $rate_clients},
        seconds: {prepare: $prep_s, load: $load_s, ingest: $ingest_s, archive_sync: $archive_s, aggregate: $aggregate_s},
        ingest: $ingest, aggregate: $aggregate,
        recommend: {calls: $rec_tx, errors: $rec_err, calls_per_s: $rec_tps, p50_ms: $rec_p50, p95_ms: $rec_p95,
                    p99_ms: $rec_p99, max_ms: $rec_max, p99_ms_during_ingest_and_aggregate: $rec_busy_p99},
        rate: {calls: $rate_tx, errors: $rate_err, calls_per_s: $rate_tps, p50_ms: $rate_p50, p95_ms: $rate_p95,
               p99_ms: $rate_p99, max_ms: $rate_max, p99_ms_during_ingest_and_aggregate: $rate_busy_p99},
        cache: {hits: $hits, misses: $misses, errors: $cache_errors}, llm_calls: $llm_calls,
        deadlocks: $deadlocks, deadlock_log_lines: $deadlock_lines, lock_waits_200ms: $lock_waits,
        lock_waits_200ms_relation_extension: $extension_waits, lock_wait_relations: $wait_relations,
        server_log_errors: $server_errors, problems: $ARGS.positional}' "${problems[@]}")
echo "$json" | jq . >"$OUT_JSON"
echo "$json" >>"$RECSYS_STACK_DIR/reliability-figures.jsonl"

cat <<EOF
Load run of $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) CPUs: base $BASE ratings, $EVENTS events ingested and aggregated under load
($REC_CLIENTS recommend clients over $max_user users, cache on$([ "$LLM" = 1 ] && echo ", LLM on"), $RATE_CLIENTS rate clients; ${load_s} s of load):

| calls | count | errors | calls/s | p50 ms | p95 ms | p99 ms | max ms | p99 ms during ingest + aggregate |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| recsys_recommend | $rec_tx | $rec_err | $rec_tps | $rec_p50 | $rec_p95 | $rec_p99 | $rec_max | $rec_busy_p99 |
| recsys_rate | $rate_tx | $rate_err | $rate_tps | $rate_p50 | $rate_p95 | $rate_p99 | $rate_max | $rate_busy_p99 |

ingest ${ingest_s} s ($out), archive sync ${archive_s} s, aggregate ${aggregate_s} s ($agg); prepare ${prep_s} s
cache hits $hits, misses $misses, errors $cache_errors; LLM calls $llm_calls
deadlocks $((dl1 - dl0)) (log lines $deadlock_lines), lock waits >= 200 ms $lock_waits (relation extension $extension_waits${wait_relations:+: $wait_relations}), server log errors $server_errors
EOF
for f in "recommend.calls $rec_tx calls" "recommend.errors $rec_err errors" "recommend.calls_per_s $rec_tps calls/s" \
    "recommend.p50 $rec_p50 ms" "recommend.p95 $rec_p95 ms" "recommend.p99 $rec_p99 ms" \
    "rate.calls $rate_tx calls" "rate.errors $rate_err errors" "rate.calls_per_s $rate_tps calls/s" \
    "rate.p50 $rate_p50 ms" "rate.p95 $rate_p95 ms" "rate.p99 $rate_p99 ms" \
    "ingest $ingest_s s" "archive_sync $archive_s s" "aggregate $aggregate_s s" \
    "deadlocks $((dl1 - dl0)) count" "lock_waits_200ms $lock_waits count" \
    "lock_waits_200ms_relation_extension $extension_waits count"; do
    echo "# figure: load.$EVENTS.$f"
done
if [ "$status" != ok ]; then
    printf 'load: FAILED: %s\n' "${problems[@]}" >&2
    exit 1
fi
echo "load: every check passed"
