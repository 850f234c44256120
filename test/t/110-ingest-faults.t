#!/usr/bin/env bash
# Ingestion faults: a stopped broker gives an error within recsys.kafka_timeout, at the
# start or half-way; recsys_rate events survive a stopped broker and a killed relay;
# a terminated or cancelled ingest job ends 'failed'; jobs of dead workers are marked
# failed by the relay.
source "$(dirname "$0")/1-ingest-lib.bash"

load_catalogue >/dev/null
cc -O2 -o "$FX/gen_ratings" "$REPO_DIR/bench/gen_ratings.c"
"$FX/gen_ratings" 100000 3 > "$FX/slow.csv"    # movies 1..3, all in the catalogue
chmod 0644 "$FX/slow.csv"
# a producer throttled to a few thousand events a second, so a job lasts long enough
SLOW="SET recsys.kafka_properties = 'queue.buffering.max.messages=100,linger.ms=50'; SET recsys.kafka_timeout = '3s';"
outbox_empty() { [ "$(psql -XtAc 'SELECT count(*) FROM recsys.outbox')" = 0 ]; }
job_status_is() { [ "$(psql -XtAc "SELECT status FROM recsys.ingest_jobs WHERE job_id = $1")" = "$2" ]; }

# --- broker down at the start
"$STACK" stop kafka >/dev/null 2>&1
start=$SECONDS
err=$(psql_err "SET recsys.kafka_timeout = '3s'; SET statement_timeout = '60s'; SELECT * FROM recsys_ingest_csv('$FX/ratings.csv')")
elapsed=$((SECONDS - start))
like "$err" 'Kafka is not reachable: could not get Kafka metadata .* within 3000 ms' "broker down: a clear error"
ok $([ $elapsed -lt 15 ] && echo 0 || echo 1) "broker down: the error comes within the timeout (${elapsed}s)"
job=$(psql_val "SELECT max(job_id) FROM recsys.ingest_jobs")
like "$(job_col "$job" "status || '|' || error")" '^failed\|Kafka is not reachable' "broker down: job failed with the error"

# --- recsys_rate while the broker is down: kept in the outbox, sent when it is back
t0=$(now_ms)
psql_val "BEGIN; SELECT recsys_rate(778001, 1, 4); SELECT recsys_rate(778002, 2, 3.5); SELECT recsys_rate(778003, 3, 1); COMMIT" >/dev/null
sleep 3
is "$(psql_val "SELECT count(*) FROM recsys.outbox WHERE key IN ('778001', '778002', '778003')")" 3 "broker down: committed ratings wait in the outbox"
"$STACK" start kafka >/dev/null 2>&1
wait_for 90 outbox_empty
ok $? "broker back: the relay empties the outbox"
sleep 1
is "$(kafka_values "$t0" | parse_events | awk '$2 >= 778001 && $2 <= 778003 {print $1}' | sort -u | wc -l)" 3 "broker back: the 3 ratings are in Kafka"

# --- broker stops half-way through a job
job=$(psql_val "$SLOW SELECT job_id FROM recsys_ingest_csv('$FX/slow.csv', async => true)")
wait_for 30 bash -c "[ \$(psql -XtAc 'SELECT events FROM recsys.ingest_jobs WHERE job_id = $job') -gt 0 ]"
ok $? "slow job: events acknowledged while running"
is "$(job_col "$job" status)" running "slow job: running, progress visible"
"$STACK" stop kafka >/dev/null 2>&1
start=$SECONDS
wait_for 30 job_status_is "$job" failed
ok $? "broker stopped mid-way: the job fails"
elapsed=$((SECONDS - start))
ok $([ $elapsed -lt 20 ] && echo 0 || echo 1) "broker stopped mid-way: within the timeout (${elapsed}s)"
like "$(job_col "$job" error)" 'Kafka' "broker stopped mid-way: the error names Kafka"
"$STACK" start kafka >/dev/null 2>&1

# --- 'stop' job, broker stopped inside its Kafka transaction: nothing visible, and
# the relay aborts the transaction left open once the broker is back
t0=$(now_ms)
job=$(psql_val "$SLOW SELECT job_id FROM recsys_ingest_csv('$FX/slow.csv', async => true, on_error => 'stop')")
wait_for 60 bash -c "[ \$(psql -XtAc 'SELECT events FROM recsys.ingest_jobs WHERE job_id = $job') -gt 0 ]"
ok $? "stop job: events acknowledged inside its transaction"
"$STACK" stop kafka >/dev/null 2>&1
wait_for 30 job_status_is "$job" failed
ok $? "stop job: fails when the broker stops"
is "$(job_col "$job" "kafka_txn_pending || ' ' || events")" "true 0" "stop job: its transaction is left pending, no event counted"
"$STACK" start kafka >/dev/null 2>&1
wait_for 90 bash -c "[ \"\$(psql -XtAc 'SELECT kafka_txn_pending FROM recsys.ingest_jobs WHERE job_id = $job')\" = f ]"
ok $? "broker back: the relay aborts the pending transaction"
psql_val "SELECT recsys_rate(778100 + g, 1 + g % 3, 3) FROM generate_series(1, 6) g" >/dev/null
wait_for 60 outbox_empty
sleep 1
is "$(job_events "$job" "$t0" | wc -l)" 0 "stop job: none of its events is visible to read_committed"
is "$(kafka_values "$t0" | parse_events | awk '$2 > 778100 && $2 <= 778106 {print $1}' | sort -u | wc -l)" 6 \
   "read_committed consumers are not held up: later events are visible at once"

# --- killed relay: nothing lost (a re-send keeps its event id)
t0=$(now_ms)
relay=$(psql_val "SELECT pid FROM pg_stat_activity WHERE backend_type = 'recsys relay'")
psql_val "SELECT recsys_rate(779000 + g, 1 + g % 3, 2.5) FROM generate_series(1, 50) g" >/dev/null
psql_val "SELECT pg_terminate_backend($relay)" >/dev/null
wait_for 60 bash -c "[ -n \"\$(psql -XtAc \"SELECT pid FROM pg_stat_activity WHERE backend_type = 'recsys relay' AND pid <> $relay\")\" ]"
ok $? "the relay is restarted"
wait_for 60 outbox_empty
ok $? "the restarted relay empties the outbox"
sleep 1
is "$(kafka_values "$t0" | parse_events | awk '$2 > 779000 && $2 <= 779050 {print $1}' | sort -u | wc -l)" 50 "all 50 ratings reached Kafka"

# --- a terminated ingest worker fails its job
job=$(psql_val "$SLOW SELECT job_id FROM recsys_ingest_csv('$FX/slow.csv', async => true)")
wait_for 30 job_status_is "$job" running
pid=$(job_col "$job" worker_pid)
is "$(psql_val "SELECT backend_type FROM pg_stat_activity WHERE pid = $pid")" "recsys ingest" "the worker shows as 'recsys ingest'"
psql_val "SELECT pg_terminate_backend($pid)" >/dev/null
wait_for 20 job_status_is "$job" failed
ok $? "terminated worker: job failed"
like "$(job_col "$job" error)" 'cancelled' "terminated worker: the error says so"

# --- statement_timeout on a synchronous call cancels the job
err=$(psql_err "$SLOW SET statement_timeout = '2s'; SELECT * FROM recsys_ingest_csv('$FX/slow.csv')")
like "$err" 'canceling statement due to statement timeout' "statement_timeout cancels a synchronous call"
job=$(psql_val "SELECT max(job_id) FROM recsys.ingest_jobs")
wait_for 20 job_status_is "$job" failed
ok $? "the cancelled call's job ends failed"

# --- a job whose worker died is marked failed by the relay
job=$(psql_val "INSERT INTO recsys.ingest_jobs (path, status, target, worker_pid, started_at) VALUES ('/tmp/ghost.csv', 'running', 'queue', 999999, now()) RETURNING job_id" | head -1)
wait_for 20 job_status_is "$job" failed
ok $? "a job of a dead worker is marked failed"
like "$(job_col "$job" error)" 'exited without finishing' "with a clear error"

done_testing
