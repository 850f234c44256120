#!/usr/bin/env bash
# scripts/demo.sh: the README's demo command. On a fresh Debian 12 machine, as root:
#
#   sudo bash scripts/demo.sh
#
# installs and builds everything (scripts/setup.sh), starts the stack (test/stack.sh),
# writes real MovieLens data (scripts/movielens.sh), loads the catalogue, streams the
# ratings into Kafka, waits until the archiver has them in MinIO, aggregates them into
# ratings, profiles, statistics and neighbours, schedules the daily aggregate with
# pg_cron, shows a user's 5 recommendations with their reasons (from the engine, then
# from the cache), rates the first one and shows that it is gone, and shows what each
# step did. The stack keeps running afterwards: `test/stack.sh env` prints how to
# connect, `test/stack.sh down` stops it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
DATA=${RECSYS_DEMO_DATA:-/var/tmp/recsys-demo-data}

bash "$HERE/setup.sh"
"$REPO/test/stack.sh" up
eval "$("$REPO/test/stack.sh" env)"
[ -s "$DATA/ratings.csv" ] || bash "$HERE/movielens.sh" "$DATA"

run() { printf '\n$ psql -c "%s"\n' "$1"; psql -X -v ON_ERROR_STOP=1 -c "$1"; }
run "SELECT * FROM recsys_health()"
run "SELECT recsys_load_movies('$DATA/movies.csv') AS movies_loaded"
run "SELECT * FROM recsys_ingest_csv('$DATA/ratings.csv')"
run "SELECT job_id, status, lines, events, rejected, finished_at - started_at AS took FROM recsys.ingest_jobs ORDER BY job_id DESC LIMIT 1"
run "SELECT recsys_archive_sync('120 s') AS events_archived"
run "SELECT topic, partition, count(*) AS objects, sum(events) AS events, max(archived_at) AS last_object FROM recsys.archive_manifest WHERE topic IN (current_setting('recsys.kafka_topic'), 'queue') GROUP BY 1, 2 ORDER BY 1, 2"
run "SELECT object_key, first_offset, last_offset, events, bytes FROM recsys.archive_manifest ORDER BY archived_at DESC LIMIT 3"
run "SELECT component, metric, value FROM recsys.status WHERE metric LIKE '%lag' OR metric IN ('mode', 'storage', 'last_flush', 'last_error')"
run "SELECT * FROM recsys_aggregate()"
run "SELECT run_id, status, objects, events, duplicates, ratings_changed, users, movies, neighbors_refreshed, round(seconds::numeric, 2) AS seconds, pg_size_pretty(peak_memory_bytes) AS peak_memory FROM recsys.aggregate_runs ORDER BY run_id DESC LIMIT 1"
run "SELECT p.user_id, p.n_ratings, round(p.mean_rating::numeric, 2) AS mean, p.favorite_genres, (SELECT array_agg(round(s::numeric, 3)) FROM unnest(p.favorite_scores) s) AS scores, (SELECT string_agg(m.title, ' | ' ORDER BY t.i) FROM unnest(p.top_movies[1:5]) WITH ORDINALITY t(id, i) JOIN recsys.movies m ON m.movie_id = t.id) AS top_5 FROM recsys.user_profiles p WHERE p.user_id = 15"
run "SELECT m.title, s.n_ratings, round(s.mean_rating::numeric, 2) AS mean, round(s.bayes_avg::numeric, 3) AS bayes_avg FROM recsys.movie_stats s JOIN recsys.movies m USING (movie_id) ORDER BY s.bayes_avg DESC, s.movie_id LIMIT 5"
run "SELECT n.rank, m.title, round(n.similarity::numeric, 3) AS similarity FROM recsys.item_neighbors n JOIN recsys.movies m ON m.movie_id = n.neighbor_id WHERE n.movie_id = 1 ORDER BY n.rank LIMIT 5"
run "SELECT recsys_schedule('0 3 * * *') AS cron_job_id"
run "SELECT component, metric, value FROM recsys.status WHERE component = 'aggregate'"
# recommendations for user 15: the in-database ranking (the stack's LLM is a test server)
rec() { printf '\n$ psql -c "%s"\n' "$1"; PGOPTIONS="-c recsys.llm_endpoint=" psql -X -v ON_ERROR_STOP=1 -c "$1"; }
rec "SELECT rank, title, round(score::numeric, 3) AS score, reason, source FROM recsys_recommend(15, 5)"
rec "SELECT rank, title, reason, source FROM recsys_recommend(15, 5)"
first=$(PGOPTIONS="-c recsys.llm_endpoint=" psql -X -qtA -c "SELECT movie_id FROM recsys_recommend(15, 1)")
run "SELECT recsys_rate(15, $first, 4.5)"
rec "SELECT rank, title, round(score::numeric, 3) AS score, reason, source FROM recsys_recommend(15, 5)"
run "SELECT rank, title, similarity FROM recsys_similar($first, 5)"
printf '\nThe stack is still up. Connect with: eval "$(test/stack.sh env)"; psql\n'
