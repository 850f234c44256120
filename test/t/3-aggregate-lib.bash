# test/t/3-aggregate-lib.bash: helpers of the aggregation suites (test/t/3*.t).
#
# A suite gets a world of its own: the extension is dropped and created again (an
# empty manifest, no derived rows), events go to the queue table and the archive is a
# fresh local directory (or a bucket of its own), so every expected value is exact.
# Events are written straight into recsys.event_queue, which lets a suite choose
# event ids, duplicates and the order (the log position) of each event.

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

PGDATA_DIR=$(psql -X -qtA -c 'SHOW data_directory')
AGG_ARCHIVE=$(fixture_dir)
chown recsys: "$AGG_ARCHIVE" 2>/dev/null || true
FX=$(fixture_dir)
cp "$REPO_DIR"/test/fixtures/* "$FX"/
chmod 0644 "$FX"/*

agg_restore() {
    psql -X -qtA -c "ALTER SYSTEM RESET recsys.kafka_brokers" -c "ALTER SYSTEM RESET recsys.s3_endpoint" \
        -c "ALTER SYSTEM RESET recsys.s3_bucket" -c "ALTER SYSTEM RESET recsys.archive_dir" \
        -c "ALTER SYSTEM RESET recsys.archive_flush_interval" -c "SELECT pg_reload_conf()" >/dev/null 2>&1
    psql -X -qtA -c "SELECT recsys_unschedule()" >/dev/null 2>&1
    rm -f "$PGDATA_DIR/recsys_aggregate_fault" "$PGDATA_DIR/recsys_aggregate_paused"
    rm -rf "$AGG_ARCHIVE" "$FX"
}
trap agg_restore EXIT

archiver_on() {
    [ "$(psql -X -qtA -c "SELECT value FROM recsys.status WHERE metric = 'mode'")" = "$1" ] &&
        psql -X -qtA -c "SELECT value FROM recsys.status WHERE metric = 'storage'" | grep -q "^$2"
}

# agg_isolate: queue table + a fresh local archive, and a new, empty extension. The
# workers are switched first: a new extension under Kafka would re-archive the topic
# from offset 0. What the old queue still held when the switch happened may reach the
# directory before the drop: it is emptied after it.
agg_isolate() {
    agg_switch
    recreate_extension
    wait_for 30 archiver_on queue "local:$AGG_ARCHIVE"
    find "$AGG_ARCHIVE" -mindepth 1 -delete
}

# agg_switch: the workers on the queue table and the suite's archive directory.
agg_switch() {
    psql -X -qtA -c "ALTER SYSTEM SET recsys.kafka_brokers = ''" -c "ALTER SYSTEM SET recsys.s3_endpoint = ''" \
        -c "ALTER SYSTEM SET recsys.archive_dir = '$AGG_ARCHIVE'" \
        -c "ALTER SYSTEM SET recsys.archive_flush_interval = '200ms'" -c "SELECT pg_reload_conf()" >/dev/null
    wait_for 30 archiver_on queue "local:$AGG_ARCHIVE"
}

# recreate_extension: drop recsys (and pg_cron, which may sit in its schema) and create both.
recreate_extension() {
    psql -X -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
        -c "DROP EXTENSION IF EXISTS pg_cron" -c "DROP EXTENSION IF EXISTS recsys CASCADE" \
        -c "CREATE EXTENSION recsys" -c "CREATE EXTENSION pg_cron SCHEMA public" >/dev/null
}

# put_events < "event_id user movie rating ts" lines: into the queue, in this order;
# then wait until they are archived (one object per call).
put_events() {
    local sql="INSERT INTO recsys.event_queue (key, value) VALUES "
    local sep="" e u m r t
    while read -r e u m r t; do
        [ -n "$e" ] || continue
        sql+="$sep('$u', '{\"event_id\":$e,\"user_id\":$u,\"movie_id\":$m,\"rating\":$r,\"ts\":$t}')"
        sep=","
    done
    psql -X -q -v ON_ERROR_STOP=1 -c "$sql" >/dev/null && psql -X -qtA -c "SELECT recsys_archive_sync('30 s')" >/dev/null
}

# aggregate [SQL settings...]: run recsys_aggregate() after the given SET statements;
# prints "objects events users movies".
aggregate() {
    local args=()
    local s
    for s in "$@"; do args+=(-c "$s"); done
    psql -X -qtA -v ON_ERROR_STOP=1 -F ' ' "${args[@]}" \
        -c "SELECT objects, events, users, movies FROM recsys_aggregate()" 2>&1 | tail -n 1
}

# rebuild [SQL settings...]: recsys_aggregate(rebuild => true); prints "objects events".
rebuild() {
    local args=()
    local s
    for s in "$@"; do args+=(-c "$s"); done
    psql -X -qtA -v ON_ERROR_STOP=1 -F ' ' "${args[@]}" \
        -c "SELECT objects, events FROM recsys_aggregate(rebuild => true)" 2>&1 | tail -n 1
}

# snapshot: every derived row (versions and times left out), one line each, sorted.
snapshot() {
    psql -X -qtA -c "SELECT x FROM (
        SELECT 'r|' || user_id || '|' || movie_id || '|' || rating || '|' || extract(epoch FROM rated_at)
               || '|' || event_id || '|' || log_pos || '|' || coalesce(tied::text, '') FROM recsys.ratings
        UNION ALL
        SELECT 'p|' || user_id || '|' || favorite_genres::text || '|' || favorite_scores::text || '|'
               || top_movies::text || '|' || n_ratings || '|' || mean_rating || '|' || rating_halves || '|'
               || extract(epoch FROM last_rated_at) || '|' || genres::text || genre_n::text || genre_halves::text
          FROM recsys.user_profiles
        UNION ALL
        SELECT 's|' || movie_id || '|' || n_ratings || '|' || mean_rating || '|' || bayes_avg || '|' || n_liked
          FROM recsys.movie_stats
        UNION ALL
        SELECT 'n|' || movie_id || '|' || rank || '|' || neighbor_id || '|' || similarity
          FROM recsys.item_neighbors) t(x) ORDER BY x"
}

# paused: the aggregate worker waits at a fault point
paused() { [ -f "$PGDATA_DIR/recsys_aggregate_paused" ]; }

# fault POINT: make the next aggregate pause at POINT (after_read, after_ratings, before_commit)
fault() { echo "$1" >"$PGDATA_DIR/recsys_aggregate_fault"; chown recsys: "$PGDATA_DIR/recsys_aggregate_fault" 2>/dev/null || true; }
unpause() { rm -f "$PGDATA_DIR/recsys_aggregate_paused"; }

# hand-checkable similarities for the suites' fixtures: plain cosine of who rated what,
# recomputed by every run
NB=("SET recsys.neighbors_alpha = 0" "SET recsys.neighbors_beta = 0.5" "SET recsys.neighbors_shrink = 0"
    "SET recsys.neighbors_min_common = 1" "SET recsys.neighbors_refresh = 0")

# put_recommend_fixture: the catalogue and the ratings of the recommendation suites
# (5 users, 4 rated movies; 500-recommend.t works its scores out), archived; the
# fixture's event ids are small, so recsys_rate's sequence is moved clear of them
put_recommend_fixture() {
    psql_val "SELECT recsys_load_movies('$FX/movies.csv')" >/dev/null
    psql_val "SELECT setval('recsys.rating_event_id_seq', 1000000)" >/dev/null
    put_events <<'FIXTURE'
1 1 1 4.0 1000
2 1 1 2.0 2000
3 1 3 5.0 1500
4 2 1 3.0 1000
6 2 3 1.0 1000
7 3 1 5.0 1000
8 3 3 4.5 1100
9 3 11 3.0 1200
10 4 2 4.0 100
11 1 3 3.0 1600
12 4 11 4.0 300
13 5 1 4.5 50
FIXTURE
}
