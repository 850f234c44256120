#!/usr/bin/env bash
# 630-disaster-recovery.t: the database is lost and brought back, two ways, with the
# steps of README.md's "Disaster recovery" section.
#
# Data goes through the real pipeline (a generated ratings file through
# recsys_ingest_csv, some recsys_rate, Kafka, the archiver, MinIO, recsys_aggregate),
# on a topic and a bucket of the suite's own. The recommendations of 30 users
# (n = 10: rank, movie and reason) are recorded, then the database is dropped and:
#  (a) restored from pg_dump -Fc with pg_restore --single-transaction: the workers do
#      not archive into the half-restored database (a restore held open after CREATE
#      EXTENSION leaves the manifest, the offsets and the store as they were; so does
#      one in many transactions by a session named pg_restore, which the archiver
#      waits for), the id
#      sequences come back (a new recsys_rate and a new ingest job get ids above every
#      old one), new events are archived exactly once, and after a rebuild the
#      recommendations equal those before;
#  (b) recreated from the object store alone (a new database, a new extension, the
#      catalogue, recsys_aggregate(rebuild => true)): the same recommendations, and the
#      rebuild moves the id sequences past every archived id, so a new rating is not
#      taken for a duplicate of an old event and survives the next rebuild.
# The stack is left as found: database recsys with both extensions, default settings,
# the workers and pg_cron's scheduler running (the drop ends the latter: README's steps
# restart the server).
source "$(dirname "$0")/2-archive-lib.bash"
T=dr630-$$-$RANDOM
B=dr630-$$-$RANDOM
tmp=$(fixture_dir)
dr_restore() {
    psql -X -qtA -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'recsys'" | grep -q 1 ||
        { createdb recsys; psql -X -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION recsys" \
              -c "CREATE EXTENSION pg_cron SCHEMA public"; } >/dev/null 2>&1
    psql -X -qtA -c "ALTER SYSTEM RESET recsys.s3_bucket" >/dev/null 2>&1
    restore_defaults
    [ "$(psql -X -qtA -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'")" = 1 ] ||
        { "$STACK" stop postgres; "$STACK" start postgres; } >/dev/null 2>&1
    S3_BUCKET=$B "$S3_TOOL" rmall "events/" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap dr_restore EXIT
s3_put_bucket() {
    curl -sS -f -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$S3_ENDPOINT/$1"
}
on_topic() {
    [ "$(psql -X -qtA -c "SELECT count(*) FROM recsys.status WHERE metric LIKE '$T/%archived_offset' AND value <> '-1'" 2>/dev/null)" = 3 ]
}
recs() {
    psql -X -qtA -F '|' -c "SET recsys.redis_url = ''" -c "SET recsys.llm_endpoint = ''" \
        -c "SELECT u, r.rank, r.movie_id, r.reason FROM generate_series(1, 30) u, LATERAL recsys_recommend(u, 10) r ORDER BY u, r.rank"
}
manifest() {
    psql -X -qtA -F ' ' -c "SELECT object_key, partition, first_offset, last_offset, events FROM recsys.archive_manifest ORDER BY 1"
}
offsets() {
    psql -X -qtA -F ' ' -c "SELECT topic, partition, next_offset FROM recsys.archive_offsets ORDER BY 1, 2"
}
now_ms() { date +%s%3N; }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
objects() { S3_BUCKET=$B "$S3_TOOL" list "events/"; }
# restart_pg: the README's restart; true when pg_cron's scheduler and the archiver run again
restart_pg() {
    "$STACK" stop postgres >/dev/null 2>&1 && "$STACK" start postgres >/dev/null 2>&1 &&
        wait_for 60 bash -c "psql -X -qtA -c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('pg_cron launcher', 'recsys archiver')\" | grep -qx 2"
}
drop_db() {
    psql -X -q -d postgres -c "DROP DATABASE recsys WITH (FORCE)" >/dev/null
}

# ---- a world of its own: topic T, bucket B, a new extension ------------------------
s3_put_bucket "$B" || { echo "Bail out! cannot create bucket $B"; exit 1; }
export S3_BUCKET=$B
create_topic "$T" 3
# the topic first: an archiver still catching up on another topic (a suite before this
# one may have left it re-archiving recsys-events) flushes that into the old bucket,
# not into B; then the bucket, then the new extension
use_topic "$T"
psql -X -qtA -c "ALTER SYSTEM SET recsys.s3_bucket = '$B'" -c "SELECT pg_reload_conf()" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -c "DROP EXTENSION IF EXISTS pg_cron" \
    -c "DROP EXTENSION recsys CASCADE" -c "CREATE EXTENSION recsys" -c "CREATE EXTENSION pg_cron SCHEMA public" >/dev/null
wait_for 60 on_topic
ok $? "a new extension, archiving topic $T into bucket $B"

# ---- data through the pipeline ------------------------------------------------------
awk 'BEGIN { split("Action Comedy Drama Sci-Fi Romance Thriller Animation Crime", g, " ");
    print "movieId,title,genres";
    for (m = 1; m <= 300; m++) printf "%d,Movie %d (%d),%s|%s\n", m, m, 1950 + m % 70, g[m % 8 + 1], g[(m * 3) % 8 + 1] }' >"$tmp/movies.csv"
awk 'BEGIN { print "userId,movieId,rating,timestamp";
    for (u = 1; u <= 200; u++) for (k = 0; k < 25; k++) {
        m = ((u % 10) * 30 + (k * 7 + u) % 45) % 300 + 1; r = ((u * 3 + m) % 10) / 2 + 0.5;
        printf "%d,%d,%.1f,%d\n", u, m, r, 1500000000 + u * 1000 + k } }' >"$tmp/ratings.csv"
chmod 644 "$tmp"/*.csv
is "$(psql_val "SELECT recsys_load_movies('$tmp/movies.csv')")" 300 "the catalogue: 300 movies"
is "$(psql_val "SELECT events || ' ' || rejected FROM recsys_ingest_csv('$tmp/ratings.csv')")" "5000 0" \
    "recsys_ingest_csv: 5000 events"
psql -X -q -v ON_ERROR_STOP=1 -c "SELECT recsys_rate(u, (u * 11) % 300 + 1, 4.5) FROM generate_series(1, 40) u" >/dev/null
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
is "$(archive_lines "$T" | wc -l)" 5040 "5040 events archived"
like "$(psql_val "SELECT events FROM recsys_aggregate()")" '^5040$' "aggregated"
psql_val "SELECT objects FROM recsys_aggregate(rebuild => true)" >/dev/null
recs >"$tmp/recs.before"
is "$(wc -l <"$tmp/recs.before")" 300 "30 users x 10 recommendations recorded"
manifest >"$tmp/manifest.before"
offsets >"$tmp/offsets.before"
objects >"$tmp/objects.before"
seq_before=$(psql_val "SELECT last_value FROM recsys.rating_event_id_seq")
job_before=$(psql_val "SELECT max(job_id) FROM recsys.ingest_jobs")
max_rt=$(archive_lines "$T" | grep -oE '"event_id":[0-9]+' | cut -d: -f2 | awk '$1 < 10000000000 && $1 > m { m = $1 } END { print m + 0 }')
is "$seq_before" "$max_rt" "the sequence stands at the largest real-time id archived ($max_rt)"

# ---- (a) pg_dump, drop, createdb, pg_restore --single-transaction ------------------
pg_dump -Fc -f "$tmp/recsys.dump" recsys
ok $? "pg_dump -Fc"
# the same restore as a script, held open for 8 s after CREATE EXTENSION recsys
pg_restore -f "$tmp/restore.sql" "$tmp/recsys.dump"
sed -i '/^CREATE EXTENSION IF NOT EXISTS recsys /a SELECT pg_sleep(8);' "$tmp/restore.sql"
is "$(grep -c '^SELECT pg_sleep(8);' "$tmp/restore.sql")" 1 "the pause follows CREATE EXTENSION recsys in the script"
drop_db
ok $? "DROP DATABASE recsys WITH (FORCE)"
createdb recsys
psql -X -q -v ON_ERROR_STOP=1 --single-transaction -f "$tmp/restore.sql" >"$tmp/restore.out" 2>&1 &
restore_pid=$!
wait_for 30 bash -c "psql -X -qtA -c \"SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(8)%' AND state = 'active'\" | grep -q 1"
ok $? "the restore is held open after CREATE EXTENSION recsys"
sleep 4
is "$(psql -X -qtA -c "SELECT count(*) FROM pg_extension WHERE extname = 'recsys'")" 0 \
    "meanwhile other sessions see no extension"
like "$(psql -X -qtA -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'recsys archiver' AND datname = 'recsys'")" '^[1-9]' \
    "the archiver is connected to the new database, waiting"
wait "$restore_pid"
ok $? "the held restore commits without an error"
grep -E 'ERROR' "$tmp/restore.out" | head -n 3 | sed 's/^/# /'
wait_for 60 on_topic
ok $? "the archiver runs on $T again"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
cmp -s "$tmp/manifest.before" <(manifest); ok $? "the manifest is as dumped: nothing archived into the half-restored database"
cmp -s "$tmp/offsets.before" <(offsets); ok $? "the offsets are as dumped"
cmp -s "$tmp/objects.before" <(objects); ok $? "the store holds the same objects: nothing archived again from offset 0"

# a restore in many transactions, held open the same way, by a session named pg_restore
# (pg_restore without --single-transaction): the archiver waits until it disconnects
drop_db && createdb recsys
PGAPPNAME=pg_restore psql -X -q -f "$tmp/restore.sql" >"$tmp/restore2.out" 2>&1 &
restore_pid=$!
wait_for 30 bash -c "psql -X -qtA -c \"SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(8)%' AND state = 'active'\" | grep -q 1"
ok $? "a restore in many transactions is held open after CREATE EXTENSION recsys"
sleep 4
is "$(psql -X -qtA -c "SELECT count(*) FROM pg_extension WHERE extname = 'recsys'")" 1 "meanwhile the extension is visible"
wait "$restore_pid"
is "$(grep -c ERROR "$tmp/restore2.out")" 0 "the restore ends without an error (no key the archiver took first)"
grep -E 'ERROR' "$tmp/restore2.out" | head -n 3 | sed 's/^/# /'
wait_for 60 on_topic
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
cmp -s "$tmp/manifest.before" <(manifest); ok $? "the manifest is as dumped: the archiver waited for pg_restore"
cmp -s "$tmp/offsets.before" <(offsets); ok $? "the offsets are as dumped"
cmp -s "$tmp/objects.before" <(objects); ok $? "the store holds the same objects"
like "$(grep -c 'recsys archiver waiting for pg_restore to finish' "${RECSYS_STACK_DIR:-/var/tmp/recsys-stack}/logs/postgres.log")" '^[1-9]' \
    "the archiver logged that it waits for pg_restore"

# the documented steps, exactly
t0=$(now_ms)
drop_db && createdb recsys && pg_restore --single-transaction --exit-on-error -d recsys "$tmp/recsys.dump"
ok $? "README: DROP DATABASE, createdb, pg_restore --single-transaction --exit-on-error"
restart_pg
ok $? "README: the server restarted; pg_cron's scheduler runs again"
wait_for 60 on_topic
ok $? "the workers start on the restored database"
is "$(psql_val "SELECT last_value FROM recsys.rating_event_id_seq")" "$seq_before" "recsys.rating_event_id_seq restored"
is "$(psql_val "SELECT objects || ' ' || events FROM recsys_aggregate(rebuild => true)")" \
    "$(awk '{ o++; e += $5 } END { print o, e }' "$tmp/manifest.before")" "README: recsys_aggregate(rebuild => true) reads every object"
recs >"$tmp/recs.a"
secs_a=$(secs_since "$t0")
if cmp -s "$tmp/recs.before" "$tmp/recs.a"; then ok 0 "(a) the 30 users' recommendations equal those before"
else ok 1 "(a) the 30 users' recommendations equal those before"; diff "$tmp/recs.before" "$tmp/recs.a" | head -n 5 | sed 's/^/# /'; fi
diag "figure: dr_pg_restore_seconds=$secs_a (drop, createdb, pg_restore, workers back, rebuild, recommendations)"

# new events after the restore: new ids, archived exactly once
psql_val "SELECT recsys_rate(7, 299, 1.0)" >/dev/null
new_rt=$(psql_val "SELECT last_value FROM recsys.rating_event_id_seq")
like "$(( new_rt > max_rt ))" '^1$' "a new recsys_rate gets id $new_rt, above every id before ($max_rt)"
printf 'userId,movieId,rating,timestamp\n201,1,4.0,1700000000\n201,2,3.5,1700000001\n' >"$tmp/new.csv"; chmod 644 "$tmp/new.csv"
new_job=$(psql_val "SELECT job_id FROM recsys_ingest_csv('$tmp/new.csv')")
like "$(( new_job > job_before ))" '^1$' "a new ingest job gets id $new_job, above every job before ($job_before)"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
archive_lines "$T" >"$tmp/archived.a"
is "$(wc -l <"$tmp/archived.a") $(uniq "$tmp/archived.a" | wc -l)" "5043 5043" "the 3 new events are archived, each once"
is "$(grep -c "\"event_id\":$new_rt," "$tmp/archived.a")" 1 "the new rating is archived once"
is "$(manifest_overlaps "$T")" 0 "no overlapping ranges"
is "$(comm -23 "$tmp/manifest.before" <(manifest) | wc -l) $(( $(manifest | wc -l) - $(wc -l <"$tmp/manifest.before") ))" "0 $(manifest | comm -13 "$tmp/manifest.before" - | wc -l)" \
    "the old manifest rows are unchanged; only new ones were added"
seq_a=$new_rt
job_a=$new_job
psql_val "SELECT objects FROM recsys_aggregate(rebuild => true)" >/dev/null
recs >"$tmp/recs.before_b"

# ---- (b) from the object store alone ------------------------------------------------
t0=$(now_ms)
drop_db && createdb recsys && psql -X -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
    -c "CREATE EXTENSION recsys" -c "CREATE EXTENSION pg_cron SCHEMA public" >/dev/null
ok $? "README: a new database and a new extension"
is "$(psql_val "SELECT recsys_load_movies('$tmp/movies.csv')")" 300 "README: the catalogue loaded again"
is "$(psql -X -qtA -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'")" 0 \
    "the drop ended pg_cron's scheduler, which does not come back by itself"
restart_pg
ok $? "README: the server restarted; pg_cron's scheduler runs again"
wait_for 60 on_topic
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
like "$(psql_val "SELECT events FROM recsys_aggregate(rebuild => true)")" '^[0-9]+$' "README: recsys_aggregate(rebuild => true) from the store"
is "$(psql_val "SELECT count(*) FROM recsys.ratings WHERE user_id = 201")" 2 "the ratings of the job ingested after (a) are there"
recs >"$tmp/recs.b"
secs_b=$(secs_since "$t0")
if cmp -s "$tmp/recs.before_b" "$tmp/recs.b" && [ "$(wc -l <"$tmp/recs.b")" = 300 ]; then
    ok 0 "(b) the 30 users' recommendations equal those before the drop"
else ok 1 "(b) the 30 users' recommendations equal those before the drop"; diff "$tmp/recs.before_b" "$tmp/recs.b" | head -n 5 | sed 's/^/# /'; fi
diag "figure: dr_store_rebuild_seconds=$secs_b (drop, createdb, extension, catalogue, re-archive sync, rebuild, recommendations)"
seq_b=$(psql_val "SELECT last_value FROM recsys.rating_event_id_seq")
is "$seq_b" "$seq_a" "the rebuild moved recsys.rating_event_id_seq to the largest archived real-time id"
psql_val "SELECT recsys_rate(8, 298, 5)" >/dev/null
like "$(( $(psql_val "SELECT last_value FROM recsys.rating_event_id_seq") > seq_a ))" '^1$' "a new recsys_rate gets an id never archived"
new_job=$(psql_val "SELECT job_id FROM recsys_ingest_csv('$tmp/new.csv')")
like "$(( new_job > job_a ))" '^1$' "a new ingest job gets id $new_job, above every archived job ($job_a)"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
psql_val "SELECT events FROM recsys_aggregate()" >/dev/null
is "$(psql_val "SELECT rating FROM recsys.ratings WHERE user_id = 8 AND movie_id = 298")" 5.0 "the new rating is aggregated"
psql_val "SELECT events FROM recsys_aggregate(rebuild => true)" >/dev/null
is "$(psql_val "SELECT rating FROM recsys.ratings WHERE user_id = 8 AND movie_id = 298")" 5.0 \
    "and survives a rebuild: no archived event has its id"
is "$(psql_val "SELECT duplicates FROM recsys.aggregate_runs ORDER BY run_id DESC LIMIT 1")" \
    "$(archive_lines "$T" | grep -oE '"event_id":[0-9]+' | sort | uniq -c | awk '{ d += $1 - 1 } END { print d + 0 }')" \
    "the rebuild drops as duplicates exactly the extra copies the store holds"
diag "the new extension archived topic $T again from offset 0: $(psql_val "SELECT duplicates FROM recsys.aggregate_runs ORDER BY run_id DESC LIMIT 1") events are in the store twice"
echo "{\"scenario\":\"disaster-recovery\",\"pg_restore_seconds\":$secs_a,\"store_rebuild_seconds\":$secs_b,\"users\":30,\"n\":10,\"at\":\"$(date -u +%FT%TZ)\"}" \
    >>"${RECSYS_STACK_DIR:-/var/tmp/recsys-stack}/reliability-figures.jsonl"
done_testing
