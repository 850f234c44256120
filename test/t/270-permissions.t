#!/usr/bin/env bash
# The permission model (README "Permission model"), checked on every function of the
# extension, read from the catalogue (pg_depend, deptype 'e'), so that functions added
# later are covered without editing this file:
#   - no function is executable by PUBLIC (the allow-list below is empty today), no
#     table, view or sequence grants anything to PUBLIC, every security definer pins
#     search_path with pg_temp last;
#   - the README's four recipes (app, analyst, operator, uploader) are run as written;
#     each role logs in and may execute exactly the functions of its set below, calls
#     to every other function are refused ("permission denied for function"), and it
#     can do what its job needs (rate / read aggregates / ingest files / upload) and
#     nothing more;
#   - a database upgraded from 0.1.0 ends with the same functions, attributes and
#     grants as a fresh install.
source "$(dirname "$0")/../lib.sh"

# functions PUBLIC may execute: read-only, revealing neither configuration nor any
# user's data. None today (recsys_health shows the configuration: operators only).
PUBLIC_OK=""
# functions each role may execute (schema-qualified when not in the extension's schema);
# names of later stages are listed already, so that the rule holds when they arrive
APP_FUNCS="recsys_rate recsys_recommend recsys_similar"
ANALYST_FUNCS="recsys.archive_status recsys.cache_status recsys.llm_status"
OPERATOR_FUNCS="recsys_load_movies recsys_ingest_csv recsys_ingest_resume recsys_archive_sync recsys_health recsys.archive_status recsys.cache_status recsys.llm_status
                recsys_aggregate recsys_schedule recsys_unschedule recsys.aggregate_progress_info recsys_forget"
UPLOADER_FUNCS=""

FX=$(fixture_dir)
cp "$REPO_DIR"/test/fixtures/movies.csv "$REPO_DIR"/test/fixtures/ratings.csv "$FX"/
chmod 0644 "$FX"/*
ROLES="recsys_t_app recsys_t_analyst recsys_t_operator recsys_t_uploader recsys_t_nobody"
cleanup() {
    for r in $ROLES; do
        psql -X -q -c "DROP OWNED BY $r" -c "DROP ROLE IF EXISTS $r" >/dev/null 2>&1
    done
    for d in recsys_t_fresh recsys_t_upgraded; do
        psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1
    done
    rm -rf "$FX"
}
trap cleanup EXIT
cleanup_roles_only() { for r in $ROLES; do psql -X -q -c "DROP OWNED BY $r" -c "DROP ROLE IF EXISTS $r" >/dev/null 2>&1; done; }

# as ROLE SQL: run SQL logged in as ROLE; print the result or the error
as() {
    psql -X -q -v ON_ERROR_STOP=1 -tA -U "$1" -c "$2" 2>&1 </dev/null
}

# ext_functions [DB]: "name<TAB>call with NULL arguments<TAB>oid" of every function of the
# extension (each NULL in a subquery: the planner folds a strict function of a constant
# NULL to NULL without calling it, and so without checking the privilege)
ext_functions() {
    psql -X -q -tA -F $'\t' -d "${1:-$PGDATABASE}" -c "
      SELECT CASE WHEN n.nspname = e.extnamespace::regnamespace::text THEN p.proname
                  ELSE n.nspname || '.' || p.proname END,
             format('SELECT %I.%I(%s)', n.nspname, p.proname,
                    (SELECT string_agg('(SELECT NULL::' || format_type(t, NULL) || ')', ', ' ORDER BY i)
                       FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i))),
             p.oid
        FROM pg_extension e
        JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                        AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
        JOIN pg_proc p ON p.oid = d.objid
        JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE e.extname = 'recsys'
       ORDER BY 1, 2"
}

# in_set NAME SET: is NAME one of the words of SET?
in_set() { case " $(echo $2) " in *" $1 "*) return 0 ;; esac; return 1; }

# recipe NAME: the README's SQL block after <!-- recipe:NAME -->, for the test's roles
recipe() {
    awk -v m="<!-- recipe:$1 -->" '$0 == m { on = 1; next }
        on && /^```sql/ { inb = 1; next } inb && /^```/ { exit } inb { print }' "$REPO_DIR/README.md" |
        sed -E 's/\brecsys_(app|analyst|operator|uploader)\b/recsys_t_\1/g'
}

# --- the catalogue: PUBLIC, security definers, relations
nfuncs=$(ext_functions | wc -l)
ok $([ "$nfuncs" -ge 10 ]; echo $?) "the extension's functions are found in the catalogue ($nfuncs)"
public_exec() {
    psql -X -q -tA -d "${1:-$PGDATABASE}" -c "
      SELECT string_agg(p.oid::regprocedure::text, ' ' ORDER BY 1)
        FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
       WHERE d.refclassid = 'pg_extension'::regclass
         AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'recsys')
         AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
         AND EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                      WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
         AND NOT (p.proname = ANY (string_to_array('$PUBLIC_OK', ' ')))"
}
is "$(public_exec)" "" "no function of the extension is executable by PUBLIC (beyond the allow-list)"
unpinned() {
    psql -X -q -tA -d "${1:-$PGDATABASE}" -c "
      SELECT string_agg(p.oid::regprocedure::text, ' ' ORDER BY 1)
        FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
       WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'recsys')
         AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e' AND p.prosecdef
         AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c
                          WHERE c ~ '^search_path=' AND c ~ 'pg_temp\"?\$'
                            AND c !~ '\\\$user|public')"
}
is "$(unpinned)" "" "every security definer pins search_path (pg_temp last, no public)"
ndefiner=$(psql_val "SELECT count(*) FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
                      WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'recsys')
                        AND d.deptype = 'e' AND p.prosecdef")
ok $([ "$ndefiner" -ge 5 ]; echo $?) "security definers found ($ndefiner: recsys_rate, recsys_archive_sync, the inbox triggers)"
public_rels() {
    psql -X -q -tA -d "${1:-$PGDATABASE}" -c "
      SELECT string_agg(c.oid::regclass::text || ':' || a.privilege_type, ' ' ORDER BY 1)
        FROM pg_depend d JOIN pg_class c ON c.oid = d.objid,
             aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))) a
       WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'recsys')
         AND d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND a.grantee = 0"
}
is "$(public_rels)" "" "no table, view or sequence of the extension grants anything to PUBLIC"
is "$(psql_val "SELECT has_schema_privilege('public', 'recsys', 'USAGE')")" f "schema recsys: no USAGE for PUBLIC"

# --- the recipes, as the README writes them
cleanup_roles_only
for r in $ROLES; do psql_val "CREATE ROLE $r LOGIN" >/dev/null; done
psql_val "GRANT USAGE ON SCHEMA recsys TO recsys_t_nobody" >/dev/null	# the most a stranger could have
for who in app analyst operator uploader; do
    sql=$(recipe "$who")
    ok $([ -n "$sql" ]; echo $?) "README has the $who recipe"
    errs=""
    while IFS= read -r stmt; do
        [ -n "${stmt// /}" ] || continue
        errs="$errs$(psql -X -q -tA -c "$stmt" 2>&1 | grep ERROR)"
    done < <(printf '%s\n' "$sql" | tr '\n' ' ' | sed 's/;/;\n/g')
    is "$errs" "" "the $who recipe runs"
done

# --- every function, for every role: exactly its set is executable, the rest refused
psql_val "SELECT recsys_load_movies('$FX/movies.csv')" >/dev/null
declare -A SETS=([recsys_t_app]="$APP_FUNCS" [recsys_t_analyst]="$ANALYST_FUNCS"
                 [recsys_t_operator]="$OPERATOR_FUNCS" [recsys_t_uploader]="$UPLOADER_FUNCS"
                 [recsys_t_nobody]="")
for r in $ROLES; do
    wrong=""
    while IFS=$'\t' read -r name call oid; do
        if in_set "$name" "${SETS[$r]}"; then
            [ "$(psql_val "SELECT has_function_privilege('$r', $oid, 'EXECUTE')")" = t ] ||
                wrong="$wrong $name(not granted)"
        else
            # refused: for the function, or (roles without USAGE) for its schema
            out=$(as "$r" "$call")
            refused="permission denied for function ${name#recsys.}\$"
            [ "$r" = recsys_t_nobody ] || refused="$refused|permission denied for schema recsys"
            printf '%s' "$out" | head -1 | grep -Eq "$refused" || wrong="$wrong $name(${out:0:60})"
        fi
    done < <(ext_functions)
    is "$wrong" "" "$r: executes exactly its functions; every other call is refused"
done

# --- (a) the application: rates, reads nothing
is "$(as recsys_t_app "SELECT recsys_rate(270001, 1, 4.5)")" "" "app: recsys_rate works"
like "$(as recsys_t_app "SELECT count(*) FROM recsys.ratings")" "permission denied for schema recsys" "app: reads no table"
like "$(as recsys_t_app "INSERT INTO recsys.outbox (event_id, key, value) VALUES (1, '1', '{}')")" "permission denied" "app: cannot write the outbox directly"
like "$(as recsys_t_app "SELECT * FROM recsys_ingest_csv('$FX/ratings.csv')")" "permission denied for function recsys_ingest_csv" "app: reads no server file"

# --- (b) the analyst: reads ratings, catalogue, status; writes nothing
like "$(as recsys_t_analyst "SELECT count(*) FROM recsys.ratings")" '^[0-9]+$' "analyst: reads recsys.ratings"
like "$(as recsys_t_analyst "SELECT count(*) FROM recsys.movies")" '^[0-9]+$' "analyst: reads recsys.movies"
like "$(as recsys_t_analyst "SELECT count(*) FROM recsys.status")" '^[1-9][0-9]*$' "analyst: reads recsys.status"
for rel in user_profiles movie_stats item_neighbors aggregate_runs; do
    like "$(as recsys_t_analyst "SELECT count(*) FROM recsys.$rel")" '^[0-9]+$' "analyst: reads recsys.$rel"
done
for rel in outbox event_queue ingest_jobs ingest_rejects archive_offsets; do
    like "$(as recsys_t_analyst "SELECT count(*) FROM recsys.$rel")" "permission denied for table $rel" "analyst: no access to recsys.$rel"
done
like "$(as recsys_t_analyst "DELETE FROM recsys.ratings")" "permission denied for table ratings" "analyst: cannot change ratings"
like "$(as recsys_t_analyst "SELECT recsys_rate(270002, 1, 3)")" "permission denied for function recsys_rate" "analyst: cannot rate"

# --- (c) the operator: loads and ingests server files, watches, waits for the archive
is "$(as recsys_t_operator "SELECT recsys_load_movies('$FX/movies.csv')")" 9 "operator: loads the catalogue"
is "$(as recsys_t_operator "SELECT events FROM recsys_ingest_csv('$FX/ratings.csv')")" 10 "operator: ingests a server file"
is "$(as recsys_t_operator "SELECT submitted_by FROM recsys.ingest_jobs ORDER BY job_id DESC LIMIT 1")" recsys_t_operator "operator: follows its job"
like "$(as recsys_t_operator "SELECT recsys_archive_sync('60 s')")" '^[0-9]+$' "operator: recsys_archive_sync works (a security definer)"
like "$(as recsys_t_operator "SELECT count(*) FROM recsys_health()")" '^5$' "operator: recsys_health works"
like "$(as recsys_t_operator "SELECT recsys_rate(270003, 1, 3)")" "permission denied for function recsys_rate" "operator: does not rate"
psql_val "REVOKE pg_read_server_files FROM recsys_t_operator" >/dev/null
like "$(as recsys_t_operator "SELECT recsys_load_movies('$FX/movies.csv')")" "permission denied to read files on the server" \
     "operator without pg_read_server_files: no server file, as with COPY FROM"

# --- (d) the uploader: \copy into the inbox, nothing else
printf 'userId,movieId,rating,timestamp\n270004,1,4,964982703\n' > "$FX/inbox.csv"
out=$(psql -X -q -v ON_ERROR_STOP=1 -U recsys_t_uploader -c "\\copy recsys.ratings_inbox FROM '$FX/inbox.csv' CSV HEADER" 2>&1)
ok $? "uploader: \\copy into recsys.ratings_inbox"
is "$(psql_val "SELECT submitted_by || ' ' || status || ' ' || events FROM recsys.ingest_jobs WHERE target = 'outbox' ORDER BY job_id DESC LIMIT 1")" \
   "recsys_t_uploader succeeded 1" "uploader: its job is recorded under its own name"
like "$(as recsys_t_uploader "SELECT count(*) FROM recsys.ingest_jobs")" "permission denied for table ingest_jobs" "uploader: reads no table"

# --- a database upgraded from 0.1.0 ends like a fresh install
signature() {
    psql -X -q -tA -d "$1" -c "
      SELECT p.oid::regprocedure || ' ' || p.prosecdef || ' ' || coalesce(array_to_string(p.proconfig, ','), '-')
             || ' ' || coalesce(p.proacl::text, 'default') || ' ' || md5(p.prosrc)
        FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
       WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'recsys')
         AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
      UNION ALL
      SELECT c.oid::regclass || ' ' || coalesce(c.relacl::text, 'default')
        FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
       WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'recsys')
         AND d.classid = 'pg_class'::regclass AND d.deptype = 'e'
      ORDER BY 1" | sed "s/$(psql -X -tA -c 'SELECT current_user')=/OWNER=/g"
}
psql -X -q -d postgres -c "CREATE DATABASE recsys_t_fresh" -c "CREATE DATABASE recsys_t_upgraded" >/dev/null
psql -X -q -d recsys_t_fresh -c "CREATE EXTENSION recsys" >/dev/null 2>&1
out=$(psql -X -q -v ON_ERROR_STOP=1 -d recsys_t_upgraded -c "CREATE EXTENSION recsys VERSION '0.1.0'" \
      -c "ALTER EXTENSION recsys UPDATE" 2>&1)
ok $? "0.1.0 upgrades to the current version"
is "$(public_exec recsys_t_upgraded)" "" "upgraded: no function executable by PUBLIC"
is "$(unpinned recsys_t_upgraded)" "" "upgraded: every security definer pins search_path"
is "$(public_rels recsys_t_upgraded)" "" "upgraded: no relation grants anything to PUBLIC"
fresh=$(signature recsys_t_fresh)
upgraded=$(signature recsys_t_upgraded)
is "$(diff <(echo "$fresh") <(echo "$upgraded") | grep '^[<>]')" "" "upgraded: functions (attributes, grants, bodies) and relation grants equal a fresh install's"

done_testing
