#!/usr/bin/env bash
# 600-e2e-faults.t: the whole pipeline under faults, end to end (issue 10), on the
# stack's default topology (Kafka + MinIO), as a user runs it: recsys_ingest_csv of a
# generated ratings file, recsys_rate from concurrent clients, the archiver,
# recsys_aggregate. Each scenario injects one fault, then checks
#   (a) every accepted event (a job's lines after it succeeded, resumed if it failed;
#       a recsys_rate call that returned) is in the archive, resends counted, nothing
#       unknown; a call in doubt at a crash is committed whole or not at all;
#   (b) after recsys_aggregate, recsys.ratings is the latest-wins reduction of the
#       accepted events, computed here from the generated files and the clients' logs;
#   (c) the user saw a clear error (its text checked) or nothing;
#   (d) the system recovered with no manual step but the documented resume of a failed
#       job: workers back, recsys.status ok, lag 0.
# Scenarios: Kafka killed (kill -9) mid-ingest; MinIO killed while archiving; MinIO
# killed during an aggregate's reads; PostgreSQL stopped in immediate mode while
# archiving, during an aggregate and during a burst of recsys_rate calls.
# Figures go to diag lines "# figure: ..." and $RECSYS_STACK_DIR/reliability-figures.jsonl.
# RECSYS_E2E_ROWS (default 150000) sizes the generated files, for longer runs by hand.
source "$(dirname "$0")/6-e2e-lib.bash"
trap e2e_cleanup EXIT
ROWS=${RECSYS_E2E_ROWS:-150000}
SMALL=$((ROWS / 3))
USER_ERRORS='connection to server .* failed|server closed the connection unexpectedly|terminating connection due to (immediate shutdown|administrator command)|the database system is (shutting down|starting up|in recovery mode|not yet accepting connections)|no connection to the server'

job_done() { local s; s=$(job_status "$1"); [ "$s" = succeeded ] || [ "$s" = failed ]; }
job_get() { psql -X -qtA -c "SELECT $2 FROM recsys.ingest_jobs WHERE job_id = $1"; }
archive_events() { psql -X -qtA -c "SELECT value FROM recsys.status WHERE component = 'archive' AND metric = 'events'"; }
archived_more_than() { [ "$(archive_events 2>/dev/null || echo 0)" -gt "$1" ]; }
ratings_md5() { psql -X -qtA -c "SELECT md5(coalesce(string_agg(user_id || ' ' || movie_id || ' ' || rating || ' ' || rated_at, ',' ORDER BY user_id, movie_id), '')) FROM recsys.ratings"; }
lines_of() { echo $(($(wc -l <"$1") - 1)); }

# start_part PART: restart a part of the stack (a second try if a loaded machine made
# the first one time out)
start_part() {
    "$STACK" start "$1" >/dev/null || { diag "$1 did not start at the first try; again"; "$STACK" start "$1" >/dev/null; }
}

# resume_if_failed NAME JOB FILE: the documented manual step for a failed job (tried
# again, up to 3 times, while Kafka is still coming back); the job's events are
# accepted once it succeeded
resume_if_failed() {
    local res try
    FIG_RESUMES=0
    for try in 1 2 3; do
        [ "$(job_status "$2")" = failed ] || break
        res=$(psql -X -qtA -F ' ' -c "$KTIMEOUT" -c "SELECT events, rejected FROM recsys_ingest_resume($2)" 2>&1)
        FIG_RESUMES=$try
        [ "$res" = "$(lines_of "$3") 0" ] && break
        diag "$1: resume $try of job $2 failed: $(head -n 1 <<<"$res")"
        like "$res" 'Kafka' "$1: a resume that fails says why (Kafka)"
        wait_for 60 bash -c "psql -X -qtA -c \"SELECT value FROM recsys.status WHERE component = 'archiver' AND metric = 'kafka'\" | grep -qx ok"
    done
    if [ "$FIG_RESUMES" -gt 0 ]; then
        is "$res" "$(lines_of "$3") 0" "$1: recsys_ingest_resume completes the job, every line counted once ($FIG_RESUMES resume(s))"
    else
        diag "$1: the job was not failed ($(job_status "$2")): no resume"
    fi
    is "$(job_get "$2" "status || ' ' || events || ' ' || rejected")" "succeeded $(lines_of "$3") 0" "$1: the job succeeded with every line"
    accept_job "$2" "$3" "$1"
}

sync_archive() {
    like "$(psql_val "SELECT recsys_archive_sync('120 s')")" '^[0-9]+$' "$1: recsys_archive_sync after recovery"
}

e2e_world >"$E/world"
is "$(tail -n 1 "$E/world")" "$E2E_MOVIES" "a world of its own: topic $T, a new extension, the catalogue"

# ---- 1. Kafka killed (kill -9) mid-ingest, restarted; the failed job resumed ------
diag "scenario 1 begins at ${SECONDS}s"
gen_csv "$E/s1.csv" "$ROWS" 11 1000000
job=$(psql_val "$THROTTLE SELECT job_id FROM recsys_ingest_csv('$E/s1.csv', async => true)")
wait_for 60 job_progress "$job"
ok $? "kafka: the job commits progress ($(job_get "$job" lines) lines)"
"$STACK" kill kafka
diag "kafka: killed at $(job_get "$job" "lines || ' of $(lines_of "$E/s1.csv") lines settled, status ' || status")"
wait_for 60 job_done "$job"
ok $? "kafka: the job ends (does not hang) with its broker gone"
if [ "$(job_status "$job")" = failed ]; then
    like "$(job_get "$job" error)" 'Kafka' "kafka: the job's error names Kafka"
fi
restart=$(now)
start_part kafka
FIG_PART=$(secs_since "$restart")
resume_if_failed kafka "$job" "$E/s1.csv"
check_recovered kafka "$restart"
sync_archive kafka
check_archive_e2e kafka kafka
run_aggregate kafka
check_ratings kafka
figure kafka-kill-ingest kafka 1

# ---- 2. MinIO killed while archiving (events flowing), restarted ------------------
diag "scenario 2 begins at ${SECONDS}s"
gen_csv "$E/s2.csv" "$SMALL" 22 2000000
mkdir -p "$E/r2"
rate_client "$E/r2" 1 9200000 & rater=$!
before=$(archive_events)
job=$(psql_val "$THROTTLE SELECT job_id FROM recsys_ingest_csv('$E/s2.csv', async => true)")
wait_for 60 job_progress "$job"
wait_for 60 archived_more_than "$before"
ok $? "minio-archive: the job's events are being archived"
"$STACK" kill minio
store_down() { psql -X -qtA -c "SELECT value FROM recsys.status WHERE component = 'archiver' AND metric = 'state'" | grep -q 'archive store is unavailable'; }
wait_for 60 store_down
ok $? "minio-archive: recsys.status says the archive store is unavailable"
err=$(psql_err "SELECT recsys_archive_sync('1 s')")
like "$err" 'recsys_archive_sync timed out after 1000 ms.*' "minio-archive: recsys_archive_sync times out"
like "$err" 'the archive store is unavailable since .*S3' "minio-archive: ... and says the archive store is down"
wait_for 90 job_done "$job"
if [ "$(job_status "$job")" = succeeded ]; then
    ok 0 "minio-archive: ingesting into Kafka goes on: the job succeeds (the user sees nothing)"
else    # a loaded machine can make Kafka miss recsys.kafka_timeout: then the error names Kafka
    like "$(job_get "$job" error)" 'Kafka' "minio-archive: the job failed with an error naming Kafka, not the store: $(job_get "$job" error | head -c 120)"
fi
restart=$(now)
start_part minio
FIG_PART=$(secs_since "$restart")
touch "$E/r2/stop"; wait "$rater"
accept_rates "$E/r2" minio-archive
is "$(grep -c '^doubt' "$E/r2/rate.1")" 0 "minio-archive: every recsys_rate call returned ($(grep -c '^ack' "$E/r2/rate.1") calls)"
check_recovered minio-archive "$restart"
resume_if_failed minio-archive "$job" "$E/s2.csv"
sync_archive minio-archive
check_archive_e2e minio-archive minio-archive
run_aggregate minio-archive
check_ratings minio-archive
figure minio-kill-archive minio-archive 1

# ---- 3. MinIO killed during an aggregate's reads ----------------------------------
diag "scenario 3 begins at ${SECONDS}s"
set_conf recsys.archive_flush_events 80      # many objects (about 630): reading them takes a while
gen_csv "$E/s3.csv" "$SMALL" 33 3000000
is "$(psql -X -qtA -F ' ' -c "$KTIMEOUT" -c "SELECT events, rejected FROM recsys_ingest_csv('$E/s3.csv')")" "$(lines_of "$E/s3.csv") 0" "minio-aggregate: the file is ingested"
job=$(psql_val "SELECT max(job_id) FROM recsys.ingest_jobs")
accept_job "$job" "$E/s3.csv" minio-aggregate
sync_archive minio-aggregate
reset_conf recsys.archive_flush_events
pending=$(psql_val "SELECT value FROM recsys.status WHERE component = 'aggregate' AND metric = 'objects_pending'")
md5_before=$(ratings_md5)
psql -X -qtA -c "SELECT objects || ' ' || events FROM recsys_aggregate()" >"$E/agg3.out" 2>&1 & agg=$!
phase=""
while kill -0 "$agg" 2>/dev/null; do
    phase=$(psql -X -qtA -c "SELECT phase || ' ' || objects_done || '/' || objects_total FROM recsys.aggregate_progress" 2>/dev/null)
    case "$phase" in "reading objects "[1-9]*) break ;; esac
done
"$STACK" kill minio
wait "$agg"; rc=$?
diag "minio-aggregate: killed MinIO at '$phase' of $pending pending objects; the aggregate said: $(head -n 1 "$E/agg3.out")"
if [ $rc -ne 0 ]; then
    like "$(cat "$E/agg3.out")" 'could not read archive object ".*" from .*' "minio-aggregate: the aggregate fails with a clear error naming the object and the store"
    like "$(cat "$E/agg3.out")" 'The aggregate was rolled back' "minio-aggregate: ... and says nothing changed"
    is "$(ratings_md5)" "$md5_before" "minio-aggregate: recsys.ratings is as it was"
    is "$(psql_val "SELECT value FROM recsys.status WHERE component = 'aggregate' AND metric = 'objects_pending'")" "$pending" \
        "minio-aggregate: the watermark did not move"
else
    like "$(cat "$E/agg3.out")" '^[0-9]+ [0-9]+$' "minio-aggregate: the aggregate completed before it needed the store"
fi
restart=$(now)
start_part minio
FIG_PART=$(secs_since "$restart")
run_aggregate minio-aggregate
agg_recovery=$(secs_since "$restart")
check_recovered minio-aggregate "$restart"
check_archive_e2e minio-aggregate minio-aggregate
check_ratings minio-aggregate
figure minio-kill-aggregate minio-aggregate 1 "$agg_recovery"

# ---- 4a. PostgreSQL stopped (immediate) while archiving ---------------------------
diag "scenario 4a begins at ${SECONDS}s"
gen_csv "$E/s4a.csv" "$SMALL" 44 4000000
before=$(archive_events)
job=$(psql_val "$THROTTLE SELECT job_id FROM recsys_ingest_csv('$E/s4a.csv', async => true)")
wait_for 60 job_progress "$job"
wait_for 60 archived_more_than "$before"
ok $? "pg-archive: the job's events are being archived"
"$STACK" stop postgres immediate >/dev/null 2>&1
restart=$(now)
start_part postgres 2>/dev/null
FIG_PART=$(secs_since "$restart")
wait_for 60 job_done "$job"
ok $? "pg-archive: the job of the crashed worker is marked ended by itself"
if [ "$(job_status "$job")" = failed ]; then
    like "$(job_get "$job" error)" 'exited without finishing the job' "pg-archive: the job's error says its worker exited without finishing"
fi
resume_if_failed pg-archive "$job" "$E/s4a.csv"
check_recovered pg-archive "$restart"
sync_archive pg-archive
check_archive_e2e pg-archive pg-archive
run_aggregate pg-archive
check_ratings pg-archive
figure pg-immediate-archive pg-archive 1

# ---- 4b. PostgreSQL stopped (immediate) during an aggregate -----------------------
diag "scenario 4b begins at ${SECONDS}s"
mkdir -p "$E/r4b"
rate_client "$E/r4b" 1 9400000 & rater=$!
wait_for 60 bash -c "[ \$(grep -c '^ack' '$E/r4b/rate.1') -ge 100 ]"
touch "$E/r4b/stop"; wait "$rater"
accept_rates "$E/r4b" pg-aggregate
is "$(grep -c '^doubt' "$E/r4b/rate.1")" 0 "pg-aggregate: every recsys_rate call returned"
sync_archive pg-aggregate
md5_before=$(ratings_md5)
fault after_ratings
psql -X -qtA -c "SELECT objects || ' ' || events FROM recsys_aggregate()" >"$E/agg4.out" 2>&1 & agg=$!
wait_for 30 paused
ok $? "pg-aggregate: the aggregate is mid-run (its ratings written, not committed)"
"$STACK" stop postgres immediate >/dev/null 2>&1
wait "$agg"
unpause
like "$(cat "$E/agg4.out")" "$USER_ERRORS" "pg-aggregate: the caller gets a clear error ($(head -n 1 "$E/agg4.out"))"
restart=$(now)
start_part postgres 2>/dev/null
FIG_PART=$(secs_since "$restart")
is "$(ratings_md5)" "$md5_before" "pg-aggregate: recsys.ratings is as it was before the run"
run_aggregate pg-aggregate
agg_recovery=$(secs_since "$restart")
like "$(psql_val "SELECT status || ': ' || error FROM recsys.aggregate_runs ORDER BY run_id DESC OFFSET 1 LIMIT 1")" \
    '^failed: the aggregate worker exited without finishing' "pg-aggregate: the crashed run is recorded as failed"
check_recovered pg-aggregate "$restart"
check_archive_e2e pg-aggregate pg-aggregate
check_ratings pg-aggregate
figure pg-immediate-aggregate pg-aggregate 1 "$agg_recovery"

# ---- 4c. PostgreSQL stopped (immediate) during a burst of recsys_rate calls -------
diag "scenario 4c begins at ${SECONDS}s"
mkdir -p "$E/r4c"
raters=()
for c in 1 2 3 4; do rate_client "$E/r4c" "$c" 9600000 & raters+=($!); done
wait_for 60 bash -c "[ \$(cat '$E'/r4c/rate.* | grep -c '^ack') -ge 80 ]"
"$STACK" stop postgres immediate >/dev/null 2>&1
restart=$(now)
start_part postgres 2>/dev/null
FIG_PART=$(secs_since "$restart")
acked_after() { [ "$(cat "$E"/r4c/rate.* | awk -v t="$restart" '$1 == "ack" && $2 > t' | wc -l)" -ge 20 ]; }
wait_for 90 acked_after
ok $? "pg-rate: the clients' calls succeed again after the restart"
touch "$E/r4c/stop"; wait "${raters[@]}"
rate_recovery=$(cat "$E"/r4c/rate.* | awk -v t="$restart" '$1 == "ack" && $2 > t { if (m == "" || $2 < m) m = $2 } END { printf "%.1f", m - t }')
accept_rates "$E/r4c" pg-rate
n_ack=$(cat "$E"/r4c/rate.* | grep -c '^ack'); n_doubt=$(cat "$E"/r4c/rate.* | grep -c '^doubt')
diag "pg-rate: $n_ack calls acknowledged, $n_doubt failed (in doubt) around the crash"
ok $([ "$n_doubt" -ge 1 ] && echo 0 || echo 1) "pg-rate: the crash landed during the burst (some calls failed)"
is "$(cat "$E"/r4c/err.* | grep -vE "$USER_ERRORS" | wc -l)" 0 "pg-rate: every failed call got a clear error (connection lost, server starting up)"
cat "$E"/r4c/err.* | sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -n 5 | sed 's/^/# pg-rate: user saw: /'
check_recovered pg-rate "$restart"
sync_archive pg-rate
check_archive_e2e pg-rate pg-rate
# never half: a call is committed whole (its recent rating and its event) or not at all
awk '$2 >= 9600000 && $2 < 9700000 { print $2, $3, $4, $5 }' "$E/archived" | LC_ALL=C sort -u >"$E/4c.archived"
psql -X -qtA -F ' ' -c "SELECT user_id, movie_id, to_char(rating, 'FM0.0'), extract(epoch FROM rated_at)::bigint FROM recsys.recent_ratings
                        WHERE user_id >= 9600000 AND user_id < 9700000" | LC_ALL=C sort -u >"$E/4c.recent"
is "$(LC_ALL=C comm -3 "$E/4c.archived" "$E/4c.recent" | wc -l)" 0 \
   "pg-rate: the calls in the archive are exactly the calls recorded in recsys.recent_ratings ($(wc -l <"$E/4c.recent")): none half done"
diag "pg-rate: of $n_doubt calls in doubt, $(awk '$5 == "pg-rate"' "$E/present" | wc -l) committed, the rest not"
run_aggregate pg-rate
check_ratings pg-rate
diag "pg-rate: relay resends dropped by the archiver so far: $(psql_val "SELECT value FROM recsys.status WHERE component = 'archive' AND metric = 'duplicates_dropped'")"
figure pg-immediate-rate pg-rate 1 "$rate_recovery"

diag "the suite took ${SECONDS}s"
done_testing
