#!/usr/bin/env bash
# 610-e2e-serving.t: serving recommendations end to end, under load and faults, on data
# that went through the pipeline (recsys_ingest_csv of generated MovieLens-shaped files
# into the queue table, the archiver's local archive, recsys_aggregate), in a world of
# its own (3-aggregate-lib.bash's agg_isolate):
#   1. the short load test: bench/load.sh with 150,000 events (16 recommend clients, cache
#      on, and 4 recsys_rate clients while the ingest and the aggregate run): no client
#      error, no deadlock, no lock wait of 200 ms or more (waits for PostgreSQL's relation
#      extension lock, which inserting clients meet when the machine starves the one
#      adding a page, are reported, not checked), every event ingested and aggregated;
#      its latency figures are reported, not checked;
#   2. Redis SIGKILLed (test/stack.sh kill redis) while 4 clients call
#      recsys_recommend, then started again: every call answers with 5 rows and no
#      error, the calls made while it is down come from the engine and are counted as
#      misses, most of them skip Redis (the shared backoff: far fewer Redis errors than
#      calls), and once it is back the cache serves hits again with no manual step;
#   3. each LLM fault (slow past recsys.llm_timeout, 429, 500, bad JSON, no choices,
#      unknown ids, no picks, invented ids) while 4 clients call recsys_recommend (cache
#      off, so every call asks the LLM): every call answers with 5 rows, from the engine
#      on a failure, and recsys.status counts each call under its kind; invented ids are
#      dropped and counted and the valid picks kept; the LLM healthy again gives 'llm'.
# Each call of 2 and 3 is logged by the client itself into a table (start, end, user,
# rows, sources), so the checks read what every client saw. No timing is checked.
source "$(dirname "$0")/3-aggregate-lib.bash"

CONTROL=${LLM_ENDPOINT%/v1}/control
PGBENCH=$(pg_config --bindir)/pgbench
llm_mode() { curl -fsS -X POST -H 'Content-Type: application/json' -d "{\"mode\": \"$1\"${2:+, $2}}" "$CONTROL" >/dev/null; }
WORK=$(fixture_dir)
loader_pids=()
e2e_restore() {
    touch "$WORK/stop"
    local p
    for p in "${loader_pids[@]}"; do wait "$p" 2>/dev/null; done
    llm_mode ok 2>/dev/null || true
    "$STACK" start redis >/dev/null 2>&1
    psql -X -qtA -c "DROP TABLE IF EXISTS public.e2e_calls" >/dev/null 2>&1
    rm -rf "$WORK"
    agg_restore
}
trap e2e_restore EXIT

status() { psql_val "SELECT value FROM recsys.status WHERE component = '$1' AND metric = '$2'"; }
clock() { psql_val "SELECT clock_timestamp()"; }
calls() { psql_val "SELECT count(*) FROM public.e2e_calls WHERE $1"; }

# script PHASE: a pgbench script that calls recsys_recommend for a random user and logs
# what it got into public.e2e_calls
script() {
    printf '%s\n' "\\set u random(1, $MAXU)" \
        "INSERT INTO public.e2e_calls (phase, started, user_id, n, sources)
         SELECT '$1', statement_timestamp(), :u, r.n, r.s
           FROM (SELECT count(*) AS n, string_agg(DISTINCT source, ',' ORDER BY source) AS s
                   FROM recsys_recommend(:u, 5)) r;" >"$WORK/$1.sql"
    echo "$WORK/$1.sql"
}
# pgb PHASE PGOPTIONS PGBENCH-ARGS...: one pgbench run of PHASE's script, output in $WORK/PHASE.*
pgb() {
    local phase=$1 opts=$2 s
    shift 2
    s=$(script "$phase")
    PGOPTIONS="-c client_min_messages=error $opts" "$PGBENCH" -n -f "$s" "$@" \
        >>"$WORK/$phase.out" 2>>"$WORK/$phase.err"
    local rc=$?
    echo $rc >>"$WORK/$phase.rc"
    [ $rc -eq 0 ] || sleep 0.5 # a client that fails at once: do not spin
}
# loader PHASE PGOPTIONS CLIENTS: pgbench in 2-second chunks until $WORK/stop
loader() {
    rm -f "$WORK/stop"
    while [ ! -f "$WORK/stop" ]; do pgb "$1" "$2" -c "$3" -j "$3" -T 2; done
}
stop_loaders() {
    touch "$WORK/stop"
    local p
    for p in "${loader_pids[@]}"; do wait "$p" 2>/dev/null; done
    loader_pids=()
}
# client_errors PHASE: what the clients of PHASE reported (errors, failed transactions, exit status)
client_errors() {
    {
        grep -hE 'ERROR|FATAL|aborted|error' "$WORK/$1.err" 2>/dev/null | sort | uniq -c | head -n 5
        sed -nE 's/^number of failed transactions: ([1-9][0-9]*).*/failed transactions: \1/p' "$WORK/$1.out" 2>/dev/null
        grep -v '^0$' "$WORK/$1.rc" 2>/dev/null | sed 's/^/pgbench exit status /' | sort | uniq -c
    } | tr '\n' ' '
}
# latency PHASE WHERE: "calls p50 p99 max" in ms of the logged calls
latency() {
    psql_val "SELECT count(*) || ' calls, p50 ' || round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 1)
                  || ' ms, p99 ' || round((percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::numeric, 1)
                  || ' ms, max ' || round(max(ms)::numeric, 1) || ' ms'
                FROM (SELECT extract(epoch FROM finished - started) * 1000 AS ms FROM public.e2e_calls
                       WHERE phase = '$1' AND $2) t"
}

# ---- 1. the data through the pipeline, and the short load test ----------------------
agg_isolate
diag "isolated world ready after ${SECONDS} s"
out=$(BENCH_RESET=0 BENCH_STRICT_LOCKS=0 BENCH_JSON="$WORK/load.json" BENCH_DIR=${BENCH_DIR:-/tmp/recsys-bench} BENCH_BASE=100000 \
      BENCH_REC_CLIENTS=16 BENCH_RATE_CLIENTS=4 BENCH_WARMUP=3 BENCH_TAIL=3 BENCH_MIN_LOAD=20 BENCH_CHUNK=3 \
      bash "$REPO_DIR/bench/load.sh" 150000 2>&1)
rc=$?
diag "bench/load.sh done after ${SECONDS} s"
ok $rc "bench/load.sh 150000 (16 recommend + 4 rate clients during the ingest and the aggregate) passed its checks"
[ $rc -eq 0 ] || echo "$out" | tail -n 30 | sed 's/^/#   /'
echo "$out" | grep -E '^(# figure:|\| recsys_|ingest |cache hits|deadlocks)' | sed 's/^# //; s/^/# /'
J=$WORK/load.json
is "$(jq -r '"\(.recommend.errors) \(.rate.errors)"' "$J" 2>&1)" "0 0" "no recommend or rate client saw an error"
is "$(jq -r '"\(.deadlocks) \(.deadlock_log_lines) \(.lock_waits_200ms - .lock_waits_200ms_relation_extension)"' "$J" 2>&1)" "0 0 0" \
   "no deadlock, no lock wait of 200 ms or more (log_lock_waits, deadlock_timeout = 200ms) but relation extension's"
diag "relation extension lock waits of 200 ms or more (reported, not checked): $(jq -r '"\(.lock_waits_200ms_relation_extension) \(.lock_wait_relations)"' "$J" 2>&1)"
is "$(jq -r '.ingest' "$J" 2>&1)" "150000 0" "the ingest under load: 150,000 events, no reject"
ok $(jq -e '(.aggregate | split(" ")[1] | tonumber) >= 150000 and .recommend.calls > 0 and .rate.calls > 0' "$J" >/dev/null 2>&1; echo $?) \
   "the aggregate under load read every event (and the rate clients'); both kinds of call completed"
ok $(jq -e '.cache.hits > 0 and .cache.misses > 0' "$J" >/dev/null 2>&1; echo $?) "the load had cache hits and misses"
is "$(psql_val "SHOW log_lock_waits") $(psql_val "SHOW deadlock_timeout")" "off 1s" "bench/load.sh put the lock settings back"
MAXU=$(psql_val "SELECT max(user_id) FROM recsys.user_profiles")
like "$MAXU" '^[0-9]{3,}$' "the users' profiles are there ($MAXU users)"
psql_val "CREATE TABLE public.e2e_calls (phase text, started timestamptz, finished timestamptz DEFAULT clock_timestamp(),
                                         user_id bigint, n bigint, sources text)" >/dev/null

# ---- 2. Redis killed and restarted under load -----------------------------------------
NOLLM="-c recsys.llm_endpoint="
loader redis "$NOLLM" 4 &
loader_pids+=($!)
wait_for 30 bash -c "[ \$(psql -X -qtA -c \"SELECT count(*) FROM public.e2e_calls WHERE phase = 'redis' AND sources = 'cache'\") -gt 0 ]"
ok $? "under load, before the fault: the cache serves hits"
m0=$(status cache misses) e0=$(status cache errors) k0=$(status cache backoff_skips)
"$STACK" kill redis
t_kill=$(clock) # (after the kill returned: the process is gone)
wait_for 30 bash -c "[ \$(psql -X -qtA -c \"SELECT count(*) FROM public.e2e_calls WHERE phase = 'redis' AND started > '$t_kill'\") -ge 100 ]"
ok $? "calls go on with Redis killed"
state_down=$(status cache state)
sleep 2
t_start=$(clock)
m1=$(status cache misses) e1=$(status cache errors) k1=$(status cache backoff_skips) h1=$(status cache hits)
"$STACK" start redis >/dev/null
wait_for 40 bash -c "[ \$(psql -X -qtA -c \"SELECT count(*) FROM public.e2e_calls WHERE phase = 'redis' AND started > '$t_start' AND sources = 'cache'\") -gt 0 ]"
ok $? "after the restart the cache serves hits again, by itself"
sleep 1
stop_loaders
h2=$(status cache hits)

is "$(client_errors redis)" "" "no client saw an error while Redis was killed and restarted"
is "$(calls "phase = 'redis' AND n <> 5")" 0 "every call answered with 5 rows ($(calls "phase = 'redis'") calls)"
down=$(calls "phase = 'redis' AND started > '$t_kill' AND finished < '$t_start'")
is "$(calls "phase = 'redis' AND started > '$t_kill' AND finished < '$t_start' AND sources <> 'engine'")" 0 \
   "while Redis was down every call came from the engine ($down calls)"
like "$state_down" '^down until ' "recsys.status: cache state 'down until ...' while Redis was down"
ok $([ $((m1 - m0)) -ge "$down" ]; echo $?) "the calls made while it was down are counted as misses ($((m1 - m0)) misses >= $down calls)"
ok $([ $((k1 - k0)) -gt 0 ] && [ $((e1 - e0)) -ge 1 ] && [ $((e1 - e0)) -lt $((down / 2)) ]; echo $?) \
   "the shared backoff: $((k1 - k0)) calls skipped Redis, only $((e1 - e0)) met its error (of $down calls)"
ok $([ $((h2 - h1)) -gt 0 ]; echo $?) "the hit counter grows again after the restart (+$((h2 - h1)))"
is "$(status cache state)" up "recsys.status: cache state up"
diag "latency before the kill: $(latency redis "finished < '$t_kill'")"
diag "latency while Redis was down: $(latency redis "started > '$t_kill' AND finished < '$t_start'")"
diag "latency after the restart: $(latency redis "started > '$t_start'")"

diag "Redis part done after ${SECONDS} s"

# ---- 3. the LLM's faults under load (cache off: every call asks the LLM) --------------
curl -fsS -X POST -H 'Content-Type: application/json' -d '{"mode": "ok", "reset_stats": true}' "$CONTROL" >/dev/null
LLMOPTS="-c recsys.redis_url= -c recsys.llm_timeout=1s"
K=4 T=3 N=$((4 * 3))
# mode PHASE MODE KIND [DELAY]: the LLM in MODE while 4 clients make 3 calls each; checks
# the answers and that recsys.status counted every call under KIND (a failures_ metric, or ok)
mode() {
    local p=$1 m=$2 kind=$3 c0 f0 c1 f1 metric=calls_ok want=engine
    [ "$kind" = ok ] || metric="failures_$kind"
    [ "$kind" = ok ] && want=llm
    llm_mode "$m" ${4:+"\"delay\": $4"}
    c0=$(status llm calls) f0=$(status llm "$metric")
    pgb "$p" "$LLMOPTS" -c $K -j $K -t $T
    c1=$(status llm calls) f1=$(status llm "$metric")
    is "$(client_errors "$p")" "" "LLM $m: no client saw an error"
    is "$(psql_val "SELECT count(*) || ' ' || string_agg(DISTINCT n || ':' || sources, ',') FROM public.e2e_calls WHERE phase = '$p'")" \
       "$N 5:$want" "LLM $m: all $N calls answered 5 rows from the $want"
    is "$((c1 - c0)) $((f1 - f0))" "$N $N" "LLM $m: recsys.status counts $N calls, $N under $metric"
}
mode llm-ok ok ok
mode llm-slow slow timeout 3
diag "LLM slow (3 s, recsys.llm_timeout 1 s): $(latency llm-slow true)"
mode llm-429 429 "http error"
mode llm-500 500 "http error"
mode llm-badjson badjson "bad reply"
mode llm-nochoices nochoices "bad reply"
mode llm-unknown unknown "bad reply"
mode llm-empty empty "bad reply"
du0=$(status llm dropped_unknown_ids) dd0=$(status llm dropped_duplicate_ids)
mode llm-invent invent ok
is "$(( $(status llm dropped_unknown_ids) - du0 )) $(( $(status llm dropped_duplicate_ids) - dd0 ))" "$((2 * N)) $N" \
   "LLM invent: the invented ids (2 a call) and the duplicate (1 a call) are dropped and counted"
mode llm-healthy-again ok ok
stats=$(curl -fsS "$CONTROL/stats")
like "$stats" '"rejected": 0' "the LLM test server rejected no request recsys sent"
is "$(psql_val "SELECT count(*) FROM public.e2e_calls WHERE phase LIKE 'llm-%' AND n <> 5")" 0 "every LLM-phase call answered 5 rows"
diag "LLM part done after ${SECONDS} s"

done_testing
