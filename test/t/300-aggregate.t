#!/usr/bin/env bash
# 300-aggregate.t: recsys_aggregate() on a small hand-checked fixture, in a world of its
# own (queue table, a fresh local archive, a new extension): exact ratings (duplicates
# dropped first, latest wins, ties to the later log position), profiles, statistics and
# neighbours; incremental runs equal a rebuild from the store; a re-archived object
# changes nothing; a corrupt and a missing object are quarantined and the rest
# aggregated; progress is visible and readers are not blocked while a run works; a
# second run waits for the first; a cancel and an immediate stop leave the tables as
# they were and the next run completes; pg_cron runs the scheduled job.
source "$(dirname "$0")/3-aggregate-lib.bash"

agg_isolate
is "$(psql_val "SELECT recsys_load_movies('$FX/movies.csv')")" 9 "the catalogue loads"

# ---- run 1: duplicates, latest wins, a tie --------------------------------------
put_events <<'EOF'
1 1 1 4.0 1000
2 1 1 2.0 2000
3 1 3 5.0 1500
4 2 1 3.0 1000
5 2 3 4.0 1000
6 2 3 1.0 1000
7 3 1 5.0 1000
8 3 3 4.5 1100
9 3 11 3.0 1200
4 2 1 3.0 1000
10 4 2 4.0 100
10 4 2 1.0 200
EOF
is "$(aggregate "${NB[@]}")" "1 12 4 4" "run 1: 1 object, 12 events, 4 users, 4 movies"
is "$(psql_val "SELECT duplicates || ' ' || ratings_changed FROM recsys.aggregate_runs ORDER BY run_id DESC LIMIT 1")" \
    "2 8" "run 1: 2 duplicate event ids dropped, 8 ratings"
is "$(psql_val "SELECT rating FROM recsys.ratings WHERE user_id = 4 AND movie_id = 2")" 4.0 \
    "a duplicate event id is dropped even with a later ts: its first occurrence counts"
is "$(psql_val "SELECT rating || ' ' || event_id || ' ' || tied::text FROM recsys.ratings
                WHERE user_id = 2 AND movie_id = 3")" "1.0 6 {5,1,4,8}" \
    "same ts: the later position wins, the other event is kept as a tie"

# ---- run 2: a tie across objects, a resend, new ratings -------------------------
put_events <<'EOF'
11 1 3 3.0 1500
2 1 1 2.0 2000
12 4 11 4.0 300
13 5 1 4.5 50
EOF
is "$(aggregate "${NB[@]}")" "1 4 3 3" "run 2: 1 object, 4 events, 3 users and 3 movies touched"
is "$(psql_val "SELECT string_agg(user_id || ':' || movie_id || '=' || rating, ' ' ORDER BY user_id, movie_id) FROM recsys.ratings")" \
    "1:1=2.0 1:3=3.0 2:1=3.0 2:3=1.0 3:1=5.0 3:3=4.5 3:11=3.0 4:2=4.0 4:11=4.0 5:1=4.5" \
    "ratings: latest wins, ties to the later position, the resend changed nothing"

# ---- profiles -------------------------------------------------------------------
is "$(psql_val "SELECT n_ratings || ' ' || mean_rating || ' ' || top_movies::text || ' ' || favorite_genres::text || ' '
                       || (SELECT string_agg(round(s::numeric, 6)::text, ',') FROM unnest(favorite_scores) s)
                  FROM recsys.user_profiles WHERE user_id = 1")" \
    "2 2.5 {3,1} {Romance} 0.083333" "user 1: count, mean, top movies, favourite genre (3 - 2.5) / (1 + 5)"
is "$(psql_val "SELECT favorite_genres::text || ' ' || (SELECT string_agg(round(s::numeric, 6)::text, ',') FROM unnest(favorite_scores) s)
                  FROM recsys.user_profiles WHERE user_id = 3")" \
    "{Adventure,Animation,Children} 0.138889,0.138889,0.138889" \
    "user 3: four genres tie at (5 - 12.5/3) / 6; the first three by name"
is "$(psql_val "SELECT top_movies::text || ' ' || favorite_genres::text FROM recsys.user_profiles WHERE user_id = 4")" \
    "{11,2} {}" "user 4: equal ratings rank the more recent first; no genre above the mean"
is "$(psql_val "SELECT count(*) FROM recsys.user_profiles")" 5 "one profile per user"

# ---- movie statistics: m = 34 / 10, bayes = (10 m + sum) / (10 + n) -------------
is "$(psql_val "SELECT string_agg(movie_id || ':' || n_ratings || '/' || round(mean_rating::numeric, 4) || '/'
                       || round(bayes_avg::numeric, 6) || '/' || n_liked, ' ' ORDER BY movie_id) FROM recsys.movie_stats")" \
    "1:4/3.6250/3.464286/2 2:1/4.0000/3.454545/1 3:3/2.8333/3.269231/1 11:2/3.5000/3.416667/1" \
    "movie statistics: count, mean, Bayesian average with the global mean as prior, likes"

# ---- neighbours: cosine of the rater sets ----------------------------------------
is "$(psql_val "SELECT string_agg(movie_id || '>' || neighbor_id || '=' || round(similarity::numeric, 4), ' '
                       ORDER BY movie_id, rank) FROM recsys.item_neighbors")" \
    "1>3=0.8660 1>11=0.3536 2>11=0.7071 3>1=0.8660 3>11=0.4082 11>2=0.7071 11>3=0.4082 11>1=0.3536" \
    "item neighbours: 3/sqrt(12), 1/sqrt(8), 1/sqrt(2), 1/sqrt(6), best first"

# ---- incremental == rebuild ------------------------------------------------------
before=$(snapshot)
is "$(aggregate "${NB[@]}")" "0 0 0 0" "a run with nothing new changes nothing"
is "$(rebuild "${NB[@]}")" "2 16" "a rebuild lists the store: 2 objects, 16 events"
after=$(snapshot)
is "$(diff <(echo "$before") <(echo "$after") && echo same)" same "the rebuild equals the incremental runs, row for row"
is "$(echo "$after" | wc -l)" 27 "10 ratings, 5 profiles, 4 statistics and 8 neighbour rows compared"

# ---- a re-archived object changes nothing -----------------------------------------
psql_val "UPDATE recsys.archive_manifest SET bytes = bytes + 1 WHERE first_offset = 0" >/dev/null
is "$(aggregate "${NB[@]}")" "1 12 0 0" "an object archived again is read again: 12 events, nothing changes"
is "$(snapshot | diff - <(echo "$before") && echo same)" same "the derived rows are the same"

# ---- quarantine: a corrupt and a missing object, the rest aggregated --------------
echo "20 6 1 3.0 10" | put_events
echo "21 6 3 4.0 10" | put_events
echo "22 7 2 5.0 10" | put_events
keys=$(psql_val "SELECT object_key FROM recsys.archive_manifest ORDER BY first_offset DESC LIMIT 3" | tac)
k1=$(sed -n 1p <<<"$keys"); k2=$(sed -n 2p <<<"$keys")
echo "not gzip at all" >"$AGG_ARCHIVE/$k1"
rm -f "$AGG_ARCHIVE/$k2"
out=$(aggregate "${NB[@]}")
is "$out" "1 1 1 1" "the good object is aggregated: 1 object, 1 event, 1 user, 1 movie"
is "$(psql_val "SELECT rating FROM recsys.ratings WHERE user_id = 7")" 5.0 "its rating is in recsys.ratings"
is "$(psql_val "SELECT count(*) FROM recsys.ratings WHERE user_id = 6")" 0 "the quarantined objects' events are not"
like "$(psql_val "SELECT error FROM recsys.aggregate_objects WHERE object_key = '$k1'")" "gzip|header|data" \
    "the corrupt object is quarantined with the gzip error"
like "$(psql_val "SELECT error FROM recsys.aggregate_objects WHERE object_key = '$k2'")" "no such object" \
    "the missing object is quarantined as missing"
is "$(psql_val "SELECT value FROM recsys.status WHERE component = 'aggregate' AND metric = 'objects_quarantined'")" 2 \
    "recsys.status shows 2 quarantined objects"
is "$(psql_val "SELECT value FROM recsys.status WHERE component = 'aggregate' AND metric = 'objects_pending'")" 0 \
    "and nothing pending: a quarantined object does not block later runs"
is "$(aggregate "${NB[@]}")" "0 0 0 0" "the next run does not retry them"

# ---- progress, readers and a second run while one works; a cancel ----------------
echo "23 8 1 4.0 10" | put_events
before=$(snapshot)
fault after_ratings
psql -X -qtA -c "SELECT * FROM recsys_aggregate()" >"$FX/first.out" 2>&1 &
first=$!
wait_for 30 paused
ok $? "the run pauses after writing its ratings"
like "$(psql_val "SELECT phase || ' ' || objects_done || '/' || objects_total || ' ' || events_done || '/' || events_total FROM recsys.aggregate_progress")" \
    "^writing ratings 1/1 1/1$" "recsys.aggregate_progress shows the phase, objects and events done"
t0=$(date +%s%N)
readers=$(psql -X -qtA -c "SET lock_timeout = '200ms'" -c "SELECT (SELECT count(*) FROM recsys.ratings) || ' ' ||
          (SELECT count(*) FROM recsys.user_profiles) || ' ' || (SELECT count(*) FROM recsys.movie_stats) || ' ' ||
          (SELECT count(*) FROM recsys.item_neighbors) || ' ' || (SELECT count(*) FROM recsys.ratings WHERE user_id = 8)" 2>&1)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$readers" "11 6 4 8 0" "readers see the previous run's rows, under lock_timeout = 200ms"
diag "the readers' statement took ${ms} ms"
psql -X -qtA -c "SELECT * FROM recsys_aggregate()" >"$FX/second.out" 2>&1 &
second=$!
wait_for 10 bash -c "psql -X -qtA -c \"SELECT count(*) FROM recsys.aggregate_progress WHERE phase = 'waiting for another aggregate'\" | grep -qx 1"
ok $? "a second run waits for the first"
caller=$(psql_val "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT * FROM recsys_aggregate()%' AND backend_type = 'client backend' ORDER BY backend_start LIMIT 1")
psql_val "SELECT pg_cancel_backend($caller)" >/dev/null
wait $first
like "$(cat "$FX/first.out")" "canceling statement due to user request" "the cancelled caller gets the cancel error"
unpause
wait $second
is "$(tail -n 1 "$FX/second.out" | cut -d'|' -f1-4)" "1|1|1|1" "the second run then does the work: 1 object, 1 event"
is "$(psql_val "SELECT status || ': ' || error FROM recsys.aggregate_runs ORDER BY run_id DESC OFFSET 1 LIMIT 1")" \
    "failed: canceling statement due to user request" "the cancelled run is recorded as failed, with its error"
is "$(psql_val "SELECT rating FROM recsys.ratings WHERE user_id = 8")" 4.0 "the rating the cancelled run had written is there once"

# ---- an immediate stop mid-run ----------------------------------------------------
echo "24 9 1 1.0 10" | put_events
before=$(snapshot)
fault before_commit
psql -X -qtA -c "SELECT * FROM recsys_aggregate()" >/dev/null 2>&1 &
crashed=$!
wait_for 30 paused
ok $? "a run pauses before its commit"
"$STACK" stop postgres immediate >/dev/null 2>&1
wait $crashed
unpause
"$STACK" start postgres >/dev/null 2>&1
wait_for 30 archiver_on queue "local:$AGG_ARCHIVE"
is "$(snapshot | diff - <(echo "$before") && echo same)" same "after an immediate stop the derived rows are as they were"
is "$(psql_val "SELECT count(*) FROM recsys.archive_manifest m WHERE NOT EXISTS (SELECT 1 FROM recsys.aggregate_objects a WHERE a.object_key = m.object_key)")" 1 \
    "and the watermark did not move: one object pending"
is "$(aggregate)" "1 1 1 1" "the next run completes"
like "$(psql_val "SELECT status || ': ' || error FROM recsys.aggregate_runs ORDER BY run_id DESC OFFSET 1 LIMIT 1")" \
    "^failed: the aggregate worker exited without finishing" "the crashed run is marked failed"

# ---- pg_cron --------------------------------------------------------------------
job=$(psql -X -qtA -c "SELECT recsys_schedule('* * * * *')" 2>/dev/null)
like "$job" '^[0-9]+$' "recsys_schedule returns the pg_cron job id"
is "$(psql -X -qtA -c "SELECT recsys_schedule('* * * * *') <> $job" 2>/dev/null)" t "scheduling again replaces the job"
is "$(psql_val "SELECT count(*) || ' ' || min(command) || ' ' || min(schedule) FROM cron.job WHERE jobname = 'recsys-aggregate'")" \
    "1 SELECT * FROM public.recsys_aggregate() * * * * *" "one job, its command schema-qualified"
echo "25 10 3 2.0 10" | put_events
wait_for 150 bash -c "psql -X -qtA -c \"SELECT count(*) FROM recsys.ratings WHERE user_id = 10\" | grep -qx 1"
ok $? "the job ran within a minute or two and aggregated the new event"
is "$(psql_val "SELECT status FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'recsys-aggregate' ORDER BY runid DESC LIMIT 1")" \
    succeeded "cron.job_run_details records the run as succeeded"
is "$(psql_val "SELECT recsys_unschedule()") $(psql_val "SELECT recsys_unschedule()")" "t f" "recsys_unschedule removes it once"
psql_val "DROP EXTENSION pg_cron" >/dev/null
like "$(psql_err "SELECT recsys_schedule()")" "pg_cron is not installed in database" "without pg_cron: a clear error"
psql_val "CREATE EXTENSION pg_cron SCHEMA public" >/dev/null

# ---- permissions ----------------------------------------------------------------
psql_val "DROP ROLE IF EXISTS agg_nobody; CREATE ROLE agg_nobody LOGIN" >/dev/null
like "$(psql -X -qtA -U agg_nobody -c "SELECT * FROM recsys_aggregate()" 2>&1)" "permission denied for function recsys_aggregate" \
    "an ordinary role may not run the aggregate"
like "$(psql -X -qtA -U agg_nobody -c "SELECT recsys_schedule()" 2>&1)" "permission denied for function recsys_schedule" \
    "nor schedule it"
psql_val "DROP ROLE agg_nobody" >/dev/null

done_testing
