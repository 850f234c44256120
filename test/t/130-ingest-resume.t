#!/usr/bin/env bash
# 130-ingest-resume.t: recsys_ingest_resume (issue 9, item 7).  A failed job (cancelled,
# or its worker killed with kill -9) is resumed: its events keep their ids (job_id *
# 10^10 + line), every line ends up in the log under its one id, the lines the job row
# had settled are not sent again; a resume is refused for a job that succeeded, that
# still runs, or whose file changed (size, mtime, content of its first megabyte).
# After a crash the job row says that events beyond its count may be in the log.
source "$(dirname "$0")/1-ingest-lib.bash"

load_catalogue >/dev/null
cc -O2 -o "$FX/gen_ratings" "$REPO_DIR/bench/gen_ratings.c"
"$FX/gen_ratings" 100000 3 > "$FX/slow.csv"    # movies 1..3, all in the catalogue
chmod 0644 "$FX/slow.csv"
N=100000
SLOW="SET recsys.kafka_properties = 'queue.buffering.max.messages=100,linger.ms=50'; SET recsys.kafka_timeout = '5s';"
job_status_is() { [ "$(psql -XtAc "SELECT status FROM recsys.ingest_jobs WHERE job_id = $1")" = "$2" ]; }
job_has_events() { [ "$(psql -XtAc "SELECT events FROM recsys.ingest_jobs WHERE job_id = $1")" -gt "${2:-0}" ]; }
PGDATA_DIR=$(psql -X -qtA -c 'SHOW data_directory')

# lines of the job in the log: "distinct total min max"
log_lines() { job_events "$1" "$2" | awk '{n++; if (!($1 in s)) {s[$1]; d++}; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1}
                                          END {print d + 0, n + 0, min, max}'; }

# --- refusals that need no file change
like "$(psql_err "SELECT * FROM recsys_ingest_resume(987654321)")" 'ingest job 987654321 does not exist' "unknown job: refused"
ok_job=$(psql_val "SELECT job_id FROM recsys_ingest_csv('$FX/ratings.csv')")
like "$(psql_err "SELECT * FROM recsys_ingest_resume($ok_job)")" "ingest job $ok_job cannot be resumed: it succeeded" "succeeded job: refused"
is "$(job_col "$ok_job" "file_head_sha256 ~ '^[0-9a-f]{64}\$' AND file_mtime IS NOT NULL AND bytes_total = $(stat -c %s "$FX/ratings.csv") AND events_unconfirmed = 0")" t \
   "a job records its file's size, mtime and a SHA-256 of its start; nothing unconfirmed once it succeeded"
is "$(job_col "$ok_job" "file_head_sha256")" "$(head -c 1048576 "$FX/ratings.csv" | sha256sum | cut -d' ' -f1)" "the hash is the SHA-256 of the file's first megabyte"

# --- a cancelled job, resumed: same ids, nothing settled sent again
t0=$(now_ms)
job=$(psql_val "$SLOW SELECT job_id FROM recsys_ingest_csv('$FX/slow.csv', async => true)")
wait_for 60 job_has_events "$job" 2000
ok $? "slow job: progress committed"
like "$(psql_err "SELECT * FROM recsys_ingest_resume($job)")" "ingest job $job cannot be resumed: it is still running" "running job: refused"
psql_val "SELECT pg_terminate_backend(worker_pid) FROM recsys.ingest_jobs WHERE job_id = $job" >/dev/null
wait_for 30 job_status_is "$job" failed
ok $? "terminated: the job failed"
read -r settled events unconf <<<"$(job_col "$job" "lines || ' ' || events || ' ' || coalesce(events_unconfirmed::text, 'NULL')")"
like "$settled $events $unconf" '^[1-9][0-9]* [1-9][0-9]* [0-9]+$' "failed job: settled lines, their events, and the count sent after them ($settled $events $unconf)"
is "$events" "$settled" "every settled line's event was acknowledged (all rows are good)"
sleep 1
read -r d n min max <<<"$(log_lines "$job" "$t0")"
ok $([ "$d" -ge "$events" ] && [ "$d" -le $((events + unconf)) ] && echo 0 || echo 1) \
   "the log holds what the row claims, and at most events_unconfirmed more ($d in the log, $events + $unconf)"
res=$(psql_val "SELECT job_id || ' ' || events || ' ' || rejected FROM recsys_ingest_resume($job)")
is "$res" "$job $N 0" "resumed: the same job, every line counted once"
is "$(job_col "$job" "status || ' ' || lines || ' ' || resumes || ' ' || events_unconfirmed || ' ' || (error IS NULL)")" "succeeded $N 1 0 true" "resumed job row"
sleep 1
read -r d n min max <<<"$(log_lines "$job" "$t0")"
is "$d $min $max" "$N 2 $((N + 1))" "every line is in the log under its one id (job_id * 10^10 + line)"
ok $([ $((n - d)) -le "$unconf" ] && echo 0 || echo 1) "sent twice: only lines after the settled ones ($((n - d)) <= $unconf)"
is "$(job_events "$job" "$t0" | awk -v s=$((settled + 1)) '$1 <= s {print $1}' | sort | uniq -d | wc -l)" 0 "no settled line was sent again"
like "$(psql_err "SELECT * FROM recsys_ingest_resume($job)")" "cannot be resumed: it succeeded" "resumed to the end: no second resume"

# --- the file changed: refused, naming what changed
cp "$FX/slow.csv" "$FX/changing.csv"; chmod 0644 "$FX/changing.csv"
job=$(psql_val "$SLOW SELECT job_id FROM recsys_ingest_csv('$FX/changing.csv', async => true)")
wait_for 60 job_has_events "$job"
psql_val "SELECT pg_terminate_backend(worker_pid) FROM recsys.ingest_jobs WHERE job_id = $job" >/dev/null
wait_for 30 job_status_is "$job" failed
mtime=$(stat -c %y "$FX/changing.csv")     # with its nanoseconds
touch -d "$mtime + 60 seconds" "$FX/changing.csv"
err=$(psql_err "SELECT * FROM recsys_ingest_resume($job)")
like "$err" "ingest job $job cannot be resumed: file \"$FX/changing.csv\" changed since the job began" "touched file: refused, naming the job and the file"
like "$err" "its modification time changed from" "touched file: says the mtime changed"
echo "1,2,3.5,1600000000" >>"$FX/changing.csv"
like "$(psql_err "SELECT * FROM recsys_ingest_resume($job)")" "its size changed from $(stat -c %s "$FX/slow.csv") to $(stat -c %s "$FX/changing.csv") bytes" "grown file: says the size changed"
cp "$FX/slow.csv" "$FX/changing.csv"; sed -i '2s/^1,/7,/' "$FX/changing.csv"    # same size
touch -d "$mtime" "$FX/changing.csv"
err=$(psql_err "SELECT * FROM recsys_ingest_resume($job)")
like "$err" "its first megabyte is different" "same size and mtime, other content: refused"
unlike "$err" "size changed|modification time" "... naming only the content"
is "$(job_col "$job" status)" failed "a refused resume leaves the job as it was"
cp "$FX/slow.csv" "$FX/changing.csv"; touch -d "$mtime" "$FX/changing.csv"
res=$(psql_val "SELECT events FROM recsys_ingest_resume($job)")
is "$res" "$N" "the file restored as it was: the resume goes through"

# --- kill -9 of the worker: the row says events may be uncounted; resume completes it
t0=$(now_ms)
job=$(psql_val "$SLOW SELECT job_id FROM recsys_ingest_csv('$FX/slow.csv', async => true)")
wait_for 60 job_has_events "$job" 2000
pid=$(job_col "$job" worker_pid)
kill -9 "$pid"
# the postmaster restarts the cluster; the relay marks the job failed
wait_for 90 job_status_is "$job" failed
ok $? "killed worker: job failed"
is "$(job_col "$job" "events_unconfirmed IS NULL")" t "killed worker: events_unconfirmed is unknown (NULL)"
like "$(job_col "$job" error)" "exited without finishing the job: events counts the acknowledged events of its first [0-9]+ data lines; events of later lines may have reached the log uncounted" \
     "killed worker: the error says that more events may be in the log"
read -r settled events <<<"$(job_col "$job" "lines || ' ' || events")"
sleep 1
read -r d n min max <<<"$(log_lines "$job" "$t0")"
ok $([ "$d" -ge "$events" ] && echo 0 || echo 1) "killed worker: the log holds at least what the row claims ($d >= $events)"
is "$(job_events "$job" "$t0" | awk -v s=$((settled + 1)) '$1 <= s {print $1}' | sort -u | wc -l)" "$settled" "killed worker: every settled line is in the log"
res=$(psql_val "SELECT events || ' ' || rejected FROM recsys_ingest_resume($job)")
is "$res" "$N 0" "killed worker, resumed: every line counted once"
sleep 1
read -r d n min max <<<"$(log_lines "$job" "$t0")"
is "$d $min $max" "$N 2 $((N + 1))" "killed worker, resumed: every line in the log under its one id"
is "$(job_events "$job" "$t0" | awk -v s=$((settled + 1)) '$1 <= s {print $1}' | sort | uniq -d | wc -l)" 0 "killed worker, resumed: no settled line sent again"

done_testing
