#!/usr/bin/env bash
# Catalogue and ratings ingestion into the real Kafka: a fixture's events read back
# (read_committed) match the file exactly; planted bad rows give exactly those rejects;
# 'stop' leaves nothing visible; async jobs and progress; errors; permissions.
source "$(dirname "$0")/1-ingest-lib.bash"

# --- catalogue
is "$(load_catalogue)" 9 "recsys_load_movies returns the rows loaded"
is "$(load_catalogue)" 9 "loading again upserts"
is "$(psql_val "SELECT count(*) FROM recsys.movies WHERE movie_id IN (1,2,3,11,29,32,50,100,101)")" 9 "catalogue rows present"
is "$(psql_val "SELECT title || '|' || year || '|' || array_to_string(genres, ',') FROM recsys.movies WHERE movie_id = 3")" \
   "Grumpier Old Men, The (1995)|1995|Comedy,Romance" "quoted title with a comma, year, genres"
is "$(psql_val "SELECT title FROM recsys.movies WHERE movie_id = 29")" \
   "City of Lost Children, The (Cité des enfants perdus, La) (1995)" "UTF-8 title"
is "$(psql_val "SELECT title || '|' || coalesce(year::text, 'null') FROM recsys.movies WHERE movie_id = 100")" \
   'Quote "Test" Movie|null' "doubled quotes, no year"
is "$(psql_val "SELECT genres = '{}' FROM recsys.movies WHERE movie_id = 101")" t "(no genres listed) is an empty array"

# --- a clean file: every event back from Kafka, exactly
t0=$(now_ms)
res=$(psql_val "SELECT job_id || ' ' || events || ' ' || rejected FROM recsys_ingest_csv('$FX/ratings.csv')")
read -r job events rejected <<<"$res"
is "$events $rejected" "10 0" "ratings.csv: 10 events acknowledged, 0 rejected"
is "$(job_col "$job" "status || ' ' || lines || ' ' || (bytes_read = bytes_total) || ' ' || events")" \
   "succeeded 10 true 10" "job row: succeeded, 10 lines, all bytes read"
got=$(job_events "$job" "$t0")
is "$got" "$(cat "$FX/ratings.expected")" "events read back: count, keys, user, movie, rating, ts match the file"

# --- BOM, CRLF, columns in another order
t0=$(now_ms)
job=$(psql_val "SELECT job_id FROM recsys_ingest_csv('$FX/ratings_bom_crlf.csv')")
is "$(job_events "$job" "$t0")" "$(printf '2 7 7 1 4.0 964982703\n3 7 7 2 3.5 964982704')" \
   "BOM, CRLF and reordered columns read correctly"

# --- planted bad rows
t0=$(now_ms)
res=$(psql_val "SELECT job_id || ' ' || events || ' ' || rejected FROM recsys_ingest_csv('$FX/ratings_bad.csv')")
read -r job events rejected <<<"$res"
is "$events $rejected" "2 10" "bad fixture: 2 events, 10 rejected"
is "$(psql_val "SELECT string_agg(line::text, ' ' ORDER BY line) FROM recsys.ingest_rejects WHERE job_id = $job")" \
   "3 4 5 6 7 8 9 10 11 13" "exactly the planted lines are rejected"
is "$(psql_val "SELECT reason FROM recsys.ingest_rejects WHERE job_id = $job AND line = 6")" \
   "movieId 88888888 is not in the catalogue" "reason: movie not in the catalogue"
is "$(psql_val "SELECT reason FROM recsys.ingest_rejects WHERE job_id = $job AND line = 8")" \
   "expected 4 columns, found 3" "reason: wrong column count"
is "$(psql_val "SELECT reason FROM recsys.ingest_rejects WHERE job_id = $job AND line = 4")" \
   "rating 4.2 is not between 0.5 and 5 in steps of 0.5" "reason: rating not a half step"
is "$(psql_val "SELECT raw || '|' || reason FROM recsys.ingest_rejects WHERE job_id = $job AND line = 13")" \
   '5,1,4.5,\xFF\xFE|invalid UTF-8' "invalid UTF-8 row kept, escaped"
is "$(psql_val "SELECT raw || '|' || file FROM recsys.ingest_rejects WHERE job_id = $job AND line = 3")" \
   "x,1,4.0,964982703|$FX/ratings_bad.csv" "raw text and file recorded"
is "$(job_events "$job" "$t0" | awk '{print $1}' | tr '\n' ' ')" "2 12 " "only the good rows reached Kafka"

# --- 'stop': an error naming file and line, nothing visible to read_committed readers
t0=$(now_ms)
err=$(psql_err "SELECT * FROM recsys_ingest_csv('$FX/ratings_bad.csv', on_error => 'stop')")
like "$err" "invalid row at line 3 of file \"$FX/ratings_bad.csv\": userId is not a positive integer" "stop: error names file, line and reason"
stopjob=$(psql_val "SELECT max(job_id) FROM recsys.ingest_jobs WHERE on_error = 'stop'")
like "$(job_col "$stopjob" "status || '|' || error")" '^failed\|invalid row at line 3' "stop: job marked failed with the error"
sleep 1
is "$(job_events "$stopjob" "$t0" | wc -l)" 0 "stop: no event of the call is visible"
t0=$(now_ms)
res=$(psql_val "SELECT job_id || ' ' || events || ' ' || rejected FROM recsys_ingest_csv('$FX/ratings.csv', on_error => 'stop')")
read -r job events rejected <<<"$res"
is "$events $rejected" "10 0" "stop on a clean file: 10 events"
# Kafka writes the commit markers to the partitions just after the commit returns: a
# read_committed reader sees the whole transaction once they land.
visible_events() { [ "$(job_events "$job" "$t0" | wc -l)" -ge 10 ]; }
wait_for 15 visible_events
is "$(job_events "$job" "$t0" | wc -l)" 10 "stop: the committed Kafka transaction is visible to read_committed"

# --- async
res=$(psql_val "SELECT job_id || ' ' || coalesce(events::text, 'null') || ' ' || coalesce(rejected::text, 'null') FROM recsys_ingest_csv('$FX/ratings_bad.csv', async => true)")
read -r job events rejected <<<"$res"
is "$events $rejected" "null null" "async returns at once with NULL counts"
like "$(job_col "$job" status)" '^(running|succeeded)$' "async: the job row exists when the call returns"
wait_for 30 bash -c "[ \"\$(psql -XtAc \"SELECT status FROM recsys.ingest_jobs WHERE job_id = $job\")\" = succeeded ]"
ok $? "async job succeeds"
is "$(job_col "$job" "events || ' ' || rejected || ' ' || lines || ' ' || (finished_at >= started_at)")" "2 10 12 true" "async job: final counts and times"

# --- errors
like "$(psql_err "SELECT * FROM recsys_ingest_csv('$FX/none.csv')")" 'could not open file ".*none.csv" for reading: No such file or directory' "missing file"
like "$(psql_err "SELECT * FROM recsys_ingest_csv('$FX')")" "\"$FX\" is a directory" "directory"
like "$(psql_err "SELECT * FROM recsys_ingest_csv('$FX/ratings_nocol.csv')")" 'lacks the column\(s\) rating' "missing column"
like "$(psql_err "SELECT * FROM recsys_ingest_csv('$FX/ratings.csv', on_error => 'skip')")" "invalid on_error value \"skip\"" "bad on_error"

# --- permissions: superuser or pg_read_server_files, as COPY FROM a file
psql_val "DO \$\$BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'recsys_t_reader') THEN DROP OWNED BY recsys_t_reader; END IF; END\$\$;
          DROP ROLE IF EXISTS recsys_t_reader; CREATE ROLE recsys_t_reader" >/dev/null
like "$(psql_err "SET ROLE recsys_t_reader; SELECT * FROM recsys_ingest_csv('$FX/ratings.csv')")" \
     'permission denied for function recsys_ingest_csv' "recsys_ingest_csv is not executable by PUBLIC"
psql_val "GRANT EXECUTE ON FUNCTION recsys_ingest_csv(text, boolean, text) TO recsys_t_reader" >/dev/null
like "$(psql_err "SET ROLE recsys_t_reader; SELECT * FROM recsys_ingest_csv('$FX/ratings.csv')")" \
     'permission denied to read files on the server' "granted EXECUTE, a plain role still may not read server files"
psql_val "GRANT pg_read_server_files TO recsys_t_reader" >/dev/null
like "$(psql_val "SET ROLE recsys_t_reader; SELECT events FROM recsys_ingest_csv('$FX/ratings.csv')")" '^10$' \
     "with pg_read_server_files it may"
is "$(psql_val "SELECT submitted_by FROM recsys.ingest_jobs ORDER BY job_id DESC LIMIT 1")" recsys_t_reader "the job records who submitted it"

# --- the client-side path: \copy into recsys.ratings_inbox
psql_val "GRANT USAGE ON SCHEMA recsys TO recsys_t_reader; GRANT INSERT ON recsys.ratings_inbox TO recsys_t_reader; REVOKE pg_read_server_files FROM recsys_t_reader" >/dev/null
# COPY itself refuses rows with a wrong column count or bad encoding: leave those out
grep -v -e '^2,1,3.0$' -e $'\xff' "$FX/ratings_bad.csv" > "$FX/inbox.csv"
t0=$(now_ms)
out=$(psql -X -q -v ON_ERROR_STOP=1 -c "SET ROLE recsys_t_reader" -c "\\copy recsys.ratings_inbox FROM '$FX/inbox.csv' CSV HEADER" 2>&1)
ok $? "\\copy into recsys.ratings_inbox as a plain role"
ijob=$(psql_val "SELECT max(job_id) FROM recsys.ingest_jobs WHERE target = 'outbox'")
is "$(job_col "$ijob" "status || ' ' || events || ' ' || rejected")" "succeeded 2 8" "inbox job: 2 events, 8 rejects"
is "$(psql_val "SELECT string_agg(line || ':' || reason, '; ' ORDER BY line) FROM recsys.ingest_rejects WHERE job_id = $ijob AND line IN (3, 6)")" \
   "3:userId is not a positive integer; 6:movieId 88888888 is not in the catalogue" "inbox rejects: same validation as the worker"
wait_for 30 bash -c "[ \$(psql -XtAc 'SELECT count(*) FROM recsys.outbox') = 0 ]"
ok $? "the relay empties the outbox"
sleep 1
is "$(job_events "$ijob" "$t0" | awk '{print $1" "$4}' | tr '\n' ' ')" "2 1 11 50 " "inbox events reached Kafka with the job's event ids"

# --- the inbox's state cannot be forged: set_config of the old recsys_inbox.* settings
# changes nothing, nested inserts keep their own jobs, the job records the caller
psql_val "ALTER ROLE recsys_t_reader LOGIN" >/dev/null
victim_before=$(job_col "$ijob" "status || ' ' || lines || ' ' || events || ' ' || rejected || ' ' || updated_at")
t0=$(now_ms)
out=$(psql -X -q -v ON_ERROR_STOP=1 -U recsys_t_reader -c "INSERT INTO recsys.ratings_inbox
  SELECT CASE WHEN set_config('recsys_inbox.job', '$ijob', true) IS NOT NULL
               AND set_config('recsys_inbox.line', '99', true) IS NOT NULL
               AND set_config('recsys_inbox.events', '-5', true) IS NOT NULL THEN '3' END,
         '1', '4', '964982703'" 2>&1)
ok $? "an insert into the inbox that calls set_config runs"
fjob=$(psql_val "SELECT max(job_id) FROM recsys.ingest_jobs WHERE target = 'outbox'")
is "$(job_col "$ijob" "status || ' ' || lines || ' ' || events || ' ' || rejected || ' ' || updated_at")" "$victim_before" \
   "another job's row is left alone"
is "$(job_col "$fjob" "status || ' ' || lines || ' ' || events || ' ' || rejected || ' ' || submitted_by || ' ' || path")" \
   "succeeded 1 1 0 recsys_t_reader client:recsys_t_reader" "the caller's own job: succeeded, counted, submitted_by the caller"
# nested inserts (from a function the statement calls), one of them failing in a subtransaction
psql_val "CREATE OR REPLACE FUNCTION public.recsys_t_nested(fail boolean) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
  IF fail THEN
    BEGIN
      INSERT INTO recsys.ratings_inbox SELECT '3', '1', '4', (1 / (random() * 0)::int)::text;
    EXCEPTION WHEN division_by_zero THEN NULL;
    END;
  ELSE
    INSERT INTO recsys.ratings_inbox VALUES ('3', '2', '4', '964982703'), ('3', '3', '4', '964982703');
  END IF;
  RETURN '3';
END \$\$; GRANT EXECUTE ON FUNCTION public.recsys_t_nested(boolean) TO recsys_t_reader" >/dev/null
out=$(psql -X -q -v ON_ERROR_STOP=1 -U recsys_t_reader \
      -c "INSERT INTO recsys.ratings_inbox SELECT recsys_t_nested(g = 1), '11', '5', '964982703' FROM generate_series(1, 2) g" 2>&1)
ok $? "nested inserts into the inbox run"
is "$(psql_val "SELECT string_agg(lines || '/' || events, ' ' ORDER BY job_id) FROM recsys.ingest_jobs WHERE target = 'outbox' AND job_id > $fjob")" \
   "2/2 2/2" "outer and nested statements each count their own rows"
njob=$(psql_val "SELECT min(job_id) FROM recsys.ingest_jobs WHERE target = 'outbox' AND job_id > $fjob")
nnjob=$(psql_val "SELECT max(job_id) FROM recsys.ingest_jobs WHERE target = 'outbox' AND job_id > $fjob")
wait_for 30 bash -c "[ \$(psql -XtAc 'SELECT count(*) FROM recsys.outbox') = 0 ]"
sleep 1
is "$(job_events "$fjob" "$t0" | awk '{print $1" "$3" "$4}' | tr '\n' ' ')" "2 3 1 " \
   "the caller's event carries its own job's id and line, not the forged ones"
is "$(job_events "$ijob" "$t0" | wc -l)" 0 "no event under the other job's ids"
is "$(job_events "$njob" "$t0" | awk '{print $1" "$3" "$4}' | tr '\n' ' ')$(job_events "$nnjob" "$t0" | awk '{print $1" "$3" "$4}' | tr '\n' ' ')" \
   "2 3 11 3 3 11 2 3 2 3 3 3 " "outer rows keep the outer job's ids; nested rows their own"
psql_val "DROP FUNCTION public.recsys_t_nested(boolean)" >/dev/null

# --- recsys_rate: validated, transactional
like "$(psql_err "SELECT recsys_rate(1, 1, 4.2)")" 'invalid rating: rating 4.2 is not between 0.5 and 5 in steps of 0.5' "recsys_rate validates the rating"
like "$(psql_err "SELECT recsys_rate(1, 424242, 4)")" 'movie 424242 is not in the catalogue' "recsys_rate validates the movie"
like "$(psql_err "SELECT recsys_rate(0, 1, 4)")" 'userId is not a positive integer' "recsys_rate validates the user"
t0=$(now_ms)
psql_val "BEGIN; SELECT recsys_rate(777001, 1, 4.5, '2020-01-01 00:00:00+00'); ROLLBACK" >/dev/null
psql_val "BEGIN; SELECT recsys_rate(777002, 2, 3, '2020-01-01 00:00:10+00'); COMMIT" >/dev/null
wait_for 30 bash -c "[ \$(psql -XtAc 'SELECT count(*) FROM recsys.outbox') = 0 ]"
sleep 1
got=$(kafka_values "$t0" | parse_events | awk '$2 == 777001 || $2 == 777002 {print $2, $4, $5, $6, ($1 < 10000000000)}')
is "$got" "777002 2 3.0 1577836810 1" "only the committed rating reached Kafka, with a real-time event id"

done_testing
