#!/usr/bin/env bash
# 310-aggregate-upgrade.t: a database created at 0.1.0 (the install script frozen as it
# shipped) that already holds archived events is upgraded with ALTER EXTENSION recsys
# UPDATE while the workers run; the next aggregate picks those events up, and the
# upgraded schema equals a fresh install's: every table's columns, indexes and
# constraints, views, functions and grants, and the extension's members.
source "$(dirname "$0")/3-aggregate-lib.bash"

CURRENT=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO_DIR/recsys.control")

agg_switch
psql -X -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -c "DROP EXTENSION IF EXISTS pg_cron" \
    -c "DROP EXTENSION IF EXISTS recsys CASCADE" -c "CREATE EXTENSION recsys VERSION '0.1.0'" >/dev/null
is "$(psql_val "SELECT extversion FROM pg_extension WHERE extname = 'recsys'")" 0.1.0 "a database at 0.1.0"
wait_for 30 archiver_on queue "local:$AGG_ARCHIVE"
ok $? "the workers archive it (queue table to a local directory)"
find "$AGG_ARCHIVE" -mindepth 1 -delete
is "$(psql_val "SELECT recsys_load_movies('$FX/movies.csv')")" 9 "0.1.0 loads the catalogue"
put_events <<'EOF'
1 1 1 4.0 1000
2 1 3 5.0 1500
3 2 1 3.0 1000
EOF
echo "4 2 3 2.5 1200" | put_events
is "$(psql_val "SELECT count(*) || ' ' || sum(events) FROM recsys.archive_manifest")" "2 4" "0.1.0 holds 4 archived events in 2 objects"

out=$(psql -X -q -v ON_ERROR_STOP=1 -c "ALTER EXTENSION recsys UPDATE" 2>&1)
ok $? "ALTER EXTENSION recsys UPDATE succeeds with the workers running" || diag "$out"
is "$(psql_val "SELECT extversion FROM pg_extension WHERE extname = 'recsys'")" "$CURRENT" "now at $CURRENT"
psql_val "CREATE EXTENSION pg_cron SCHEMA public" >/dev/null
is "$(aggregate)" "2 4 2 2" "the next aggregate picks up the 4 events archived before the upgrade"
is "$(psql_val "SELECT string_agg(user_id || ':' || movie_id || '=' || rating, ' ' ORDER BY user_id, movie_id) FROM recsys.ratings")" \
    "1:1=4.0 1:3=5.0 2:1=3.0 2:3=2.5" "their ratings"
echo "5 3 11 4.0 100" | put_events
is "$(aggregate)" "1 1 1 1" "events archived after the upgrade follow"

# --- the upgraded schema equals a fresh install's
schema() {
    psql -X -qtA -d "$1" -c "
      SELECT 'col ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
        FROM information_schema.columns WHERE table_schema = 'recsys'
      UNION ALL SELECT 'idx ' || tablename || ' ' || regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON')
        FROM pg_indexes WHERE schemaname = 'recsys'
      UNION ALL SELECT 'con ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'recsys'::regnamespace
      UNION ALL SELECT 'view ' || viewname || ' ' || md5(definition) FROM pg_views WHERE schemaname = 'recsys'
      UNION ALL SELECT 'fn ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '')
        FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'recsys'
      UNION ALL SELECT 'acl ' || c.oid::regclass || ' ' || coalesce(c.relacl::text, '')
        FROM pg_class c WHERE c.relnamespace = 'recsys'::regnamespace
      UNION ALL SELECT 'member ' || pg_describe_object(d.classid, d.objid, 0)
        FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'recsys' WHERE d.deptype = 'e'
      UNION ALL SELECT 'dump ' || unnest(extconfig)::regclass FROM pg_extension WHERE extname = 'recsys'
      ORDER BY 1"
}
for d in recsys_t_fresh recsys_t_upgraded; do psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $d" -c "CREATE DATABASE $d" >/dev/null; done
psql -X -q -d recsys_t_fresh -c "CREATE EXTENSION recsys" >/dev/null
psql -X -q -d recsys_t_upgraded -c "CREATE EXTENSION recsys VERSION '0.1.0'" -c "ALTER EXTENSION recsys UPDATE" >/dev/null
fresh=$(schema recsys_t_fresh)
upgraded=$(schema recsys_t_upgraded)
diffs=$(diff <(echo "$fresh") <(echo "$upgraded"))
is "$diffs" "" "the upgraded schema equals a fresh install's ($(echo "$fresh" | wc -l) items compared)"
like "$(echo "$fresh" | grep -c '^col recsys.aggregate_runs\|^col aggregate_runs')" '^[1-9]' "the comparison covers the new tables"
for d in recsys_t_fresh recsys_t_upgraded; do psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $d" >/dev/null; done

# back to a current, empty extension for the suites that follow
recreate_extension
done_testing
