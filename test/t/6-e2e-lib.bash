# test/t/6-e2e-lib.bash: helpers of the end-to-end fault suites (test/t/6*.t).
#
# The whole pipeline as a user runs it, on the stack's default topology (Kafka +
# MinIO), in a world of its own: a fresh topic (3 partitions) archived by the workers
# and a new, empty extension, so the archive and recsys.ratings can be compared,
# exactly, with what the suite produced. What the suite knows it produced is kept in
# plain files, never read back from recsys's tables:
#
#   $E/accepted   "event_id scenario": events acknowledged to the caller (every line of
#                 an ingest job that succeeded, possibly after a resume; every
#                 recsys_rate call that returned)
#   $E/events     "user movie rating ts order": the same events' contents; order breaks
#                 ties of one (user, movie, ts), the later wins (see expected_ratings):
#                 the event id for a job's lines, the call's number for a rate client
#   $E/doubt      "user movie rating ts scenario order": recsys_rate calls that failed
#                 (a crash in the middle): may be committed or not, never half
#
# A rate client identifies each call by its content (user, movie, rating, ts), unique
# across the suite, and learns the event id of the calls that returned from
# currval('recsys.rating_event_id_seq') in the same transaction.

source "$(dirname "${BASH_SOURCE[0]}")/2-archive-lib.bash"
source "$(dirname "${BASH_SOURCE[0]}")/3-aggregate-lib.bash"   # recreate_extension, aggregate fault points

E=$(fixture_dir)
: >"$E/accepted"; : >"$E/events"; : >"$E/doubt"
FIGURES=${RECSYS_STACK_DIR:-/var/tmp/recsys-stack}/reliability-figures.jsonl
PGLOG=${RECSYS_STACK_DIR:-/var/tmp/recsys-stack}/logs/postgres.log
cc -O2 -o "$E/gen_ratings" "$REPO_DIR/bench/gen_ratings.c" || { echo "Bail out! cannot build gen_ratings"; exit 1; }
E2E_MOVIES=2000
# the suite's ingest sessions wait up to 10 s for Kafka (the stack's 5 s is short on a
# loaded 2-core machine: a job or a resume could fail without a fault)
KTIMEOUT="SET recsys.kafka_timeout = '10s';"
# a producer held to some 20,000 events a second, so that a fault lands mid-job
THROTTLE="$KTIMEOUT SET recsys.kafka_properties = 'queue.buffering.max.messages=1000,linger.ms=20';"

now() { echo "$EPOCHREALTIME"; }
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# e2e_cleanup: put the stack back as the suite found it (every part running, settings
# reset, the default topic archived), whatever happened; called on exit.
e2e_cleanup() {
    local p
    for p in $(jobs -p); do kill "$p" 2>/dev/null; done
    "$STACK" start postgres >/dev/null 2>&1      # the settings first: fast, and what matters most
    psql -X -qtA -c "ALTER SYSTEM RESET recsys.archive_flush_events" >/dev/null 2>&1
    restore_defaults
    agg_restore
    for p in minio kafka; do "$STACK" start "$p" >/dev/null 2>&1; done
    # the suite's topic goes: a Kafka killed with -9 recovers every partition at its
    # restart, so the topics of earlier runs would make each restart slower
    if [ -n "${T:-}" ]; then
        wait_for 60 bash -c "psql -X -qtA -c \"SELECT count(*) FROM recsys.status WHERE metric LIKE '$T/%'\" | grep -qx 0"
        kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" --delete --topic "$T" >/dev/null 2>&1
    fi
    rm -rf "$E"
}

# e2e_world: the suite's topic, then a new extension and the catalogue.
e2e_world() {
    T=e2e600-$$-$RANDOM
    create_topic "$T" 3
    use_topic "$T"
    set_conf recsys.archive_flush_interval '300ms'
    recreate_extension
    wait_for 60 bash -c "psql -X -qtA -c \"SELECT count(*) FROM recsys.status WHERE metric LIKE '$T/%archived_offset' AND value <> '-1'\" | grep -qv '^0$'"
    awk -v n=$E2E_MOVIES 'BEGIN { print "movieId,title,genres"; split("Action|Comedy|Drama|Thriller|Romance|Sci-Fi|Horror|Children", g, "|");
        for (i = 1; i <= n; i++) printf "%d,Movie %d (%d),%s|%s\n", i, i, 1950 + i % 70, g[i % 8 + 1], g[(i * 3) % 8 + 1] }' >"$E/movies.csv"
    chmod 0644 "$E/movies.csv"
    psql_val "SELECT recsys_load_movies('$E/movies.csv')"
}

# gen_csv FILE ROWS SEED USER_BASE: a MovieLens ratings file whose users start above
# USER_BASE (each scenario's users are its own), plus one tie in about 500 rows: a
# line repeating an earlier line's user, movie and timestamp with another rating,
# which wins (ties go to the later log position, the later line).
gen_csv() {
    "$E/gen_ratings" "$2" $E2E_MOVIES "$3" | awk -F, -v base="$4" 'NR == 1 { print; next }
        { u = $1 + base; print u "," $2 "," $3 "," $4; n++
          if (n % 500 == 250) { r = ($3 >= 3) ? $3 - 2 : $3 + 2; print u "," $2 "," r "," $4 } }' >"$1"
    chmod 0644 "$1"
}

# accept_job JOB FILE SCENARIO: every line of the succeeded job's file is accepted
# (event id = job * 10^10 + line, the header being line 1).
accept_job() {
    awk -F, -v job="$1" -v sc="$3" -v acc="$E/accepted" -v ev="$E/events" 'NR > 1 {
        id = job sprintf("%010d", NR); print id, sc >> acc   # (mawk prints big numbers as 1e+10)
        printf "%s %s %.1f %s %s\n", $1, $2, $3, $4, id >> ev }' "$2"
}

# job_status JOB / job_is JOB STATUS
job_status() { psql -X -qtA -c "SELECT status FROM recsys.ingest_jobs WHERE job_id = $1" 2>/dev/null; }
job_is() { [ "$(job_status "$1")" = "$2" ]; }
job_progress() { [ "$(psql -X -qtA -c "SELECT status = 'running' AND lines > 0 FROM recsys.ingest_jobs WHERE job_id = $1" 2>/dev/null)" = t ]; }

# rate_client DIR C USER_BASE: recsys_rate calls, one transaction each, until DIR/stop
# exists; logs to DIR/rate.C: "ack TIME CALL event_id user movie rating ts", or "doubt
# TIME CALL user movie rating ts" with the error's first line in DIR/err.C. Calls come in pairs
# of the same user, movie and ts with another rating: the second of a pair wins.
rate_client() {
    local dir=$1 c=$2 base=$3 i=0 p u m r ts out rc
    : >"$dir/rate.$c"; : >"$dir/err.$c"
    while [ ! -f "$dir/stop" ]; do
        p=$((i / 2)); u=$((base + c * 1000 + p % 40)); m=$(((p * 37 + c) % E2E_MOVIES + 1))
        r=$((1 + (p + c) % 4)).$((i % 2 * 5)); ts=$((1700000000 + p))
        out=$(timeout 30 psql -X -q -tA -v ON_ERROR_STOP=1 \
              -c "SELECT recsys_rate($u, $m, $r, to_timestamp($ts)); SELECT currval('recsys.rating_event_id_seq')" 2>&1)
        rc=$?
        if [ $rc -eq 0 ] && [[ "${out##*$'\n'}" =~ ^[0-9]+$ ]]; then
            echo "ack $EPOCHREALTIME $i ${out##*$'\n'} $u $m $r $ts" >>"$dir/rate.$c"
        else
            echo "doubt $EPOCHREALTIME $i $u $m $r $ts" >>"$dir/rate.$c"
            echo "rc=$rc $(head -n 1 <<<"$out")" >>"$dir/err.$c"
            sleep 0.1
        fi
        i=$((i + 1))
    done
}

# accept_rates DIR SCENARIO: the clients' acknowledged calls are accepted, the failed
# ones in doubt.
accept_rates() {
    cat "$1"/rate.* | awk -v sc="$2" -v acc="$E/accepted" -v ev="$E/events" -v dbt="$E/doubt" '
        $1 == "ack" { print $4, sc >> acc; printf "%s %s %.1f %s %s\n", $5, $6, $7, $8, $3 >> ev }
        $1 == "doubt" { printf "%s %s %.1f %s %s %s\n", $4, $5, $6, $7, sc, $3 >> dbt }'
}

# archived: "event_id user movie rating ts" of every archived line of the suite's topic
archived() {
    archive_lines "$T" | sed -nE 's/^\{"event_id":([0-9]+),"user_id":([0-9]+),"movie_id":([0-9]+),"rating":([0-9.]+),"ts":([0-9]+)\}$/\1 \2 \3 \4 \5/p' |
        awk '{ printf "%s %s %s %.1f %s\n", $1, $2, $3, $4, $5 }'
}

# check_archive_e2e NAME SCENARIO: (a) every accepted event is in the archive; every
# archived event is accepted or a call in doubt; one id, one content; resends counted.
# Leaves "$E/present" (calls in doubt found in the archive) and sets FIG_* figures.
check_archive_e2e() {
    local name=$1 sc=$2 res
    archived >"$E/archived"
    : >"$E/present"
    res=$(awk -v sc="$sc" -v pres="$E/present" '
        FILENAME == ARGV[1] { acc[$1] = $2; next }
        FILENAME == ARGV[2] { dbt[$1 " " $2 " " $3 " " $4] = $5 " " $6; next }
        { n[$1]++; c = $2 " " $3 " " $4 " " $5
          if (($1 in body) && body[$1] != c) conflict++
          body[$1] = c; lines++ }
        END {
            for (id in acc) { if (!(id in n)) missing++; else if (acc[id] == sc) { got++; res += n[id] - 1 } }
            for (id in n) { dup += n[id] - 1
                if (!(id in acc)) { if (body[id] in dbt) { printf "%s %s\n", body[id], dbt[body[id]] > pres
                                                         split(dbt[body[id]], d, " "); if (d[1] == sc) present++ }
                                  else unknown++ } }
            print lines + 0, length(n) + 0, missing + 0, unknown + 0, conflict + 0, dup + 0, got + 0, res + 0, present + 0
        }' "$E/accepted" "$E/doubt" "$E/archived")
    read -r FIG_LINES FIG_DISTINCT missing unknown conflict FIG_DUPS FIG_ARCHIVED FIG_RESENDS FIG_PRESENT <<<"$res"
    is "$missing" 0 "$name: every accepted event is in the archive ($(wc -l <"$E/accepted") accepted so far)"
    is "$unknown" 0 "$name: every archived event was accepted or is a call in doubt"
    is "$conflict" 0 "$name: an event id archived twice carries the same event"
    diag "$name: archive holds $FIG_LINES lines, $FIG_DISTINCT distinct events, $FIG_DUPS resends in all ($FIG_RESENDS of this scenario's events), $FIG_PRESENT of this scenario's calls in doubt present"
}

# expected_ratings: the latest-wins reduction of the accepted events and the calls in
# doubt found in the archive (README: latest ts wins, ties to the later log position;
# a scenario's ties are within one job or one rate client, where that is the later
# line or call): "user movie rating ts", sorted
expected_ratings() {
    { cat "$E/events"; awk '{ print $1, $2, $3, $4, $6 }' "$E/present"; } | awk '
        { k = $1 " " $2
          if (!(k in ts) || $4 > ts[k] || ($4 == ts[k] && $5 + 0 > ord[k])) { ts[k] = $4; ord[k] = $5 + 0; r[k] = $3 } }
        END { for (k in r) print k, r[k], ts[k] }' | LC_ALL=C sort
}

# check_ratings NAME: (b) recsys.ratings equals the reduction, row for row.
check_ratings() {
    expected_ratings >"$E/expected"
    psql -X -qtA -F ' ' -c "SELECT user_id, movie_id, rating, extract(epoch FROM rated_at)::bigint FROM recsys.ratings" |
        LC_ALL=C sort >"$E/got"
    if cmp -s "$E/expected" "$E/got"; then
        ok 0 "$1: recsys.ratings is the latest-wins reduction of the accepted events, row for row ($(wc -l <"$E/got") rows)"
    else
        ok 1 "$1: recsys.ratings is the latest-wins reduction of the accepted events, row for row"
        diag "expected $(wc -l <"$E/expected") rows, got $(wc -l <"$E/got"); first differences:"
        diff "$E/expected" "$E/got" | head -n 6 | sed 's/^/#   /'
    fi
}

# run_aggregate NAME: recsys_aggregate() succeeds
run_aggregate() {
    local out
    out=$(psql -X -qtA -v ON_ERROR_STOP=1 -c "SELECT objects || ' ' || events FROM recsys_aggregate()" 2>&1)
    like "$out" '^[0-9]+ [0-9]+$' "$1: recsys_aggregate() succeeds ($out)"
}

# lag_zero: every partition of the suite's topic archived to the log's end
lag_zero() {
    [ "$(psql -X -qtA -c "SELECT count(*) || ' ' || coalesce(sum(value::bigint), -1) FROM recsys.status
         WHERE component = 'event_log' AND metric LIKE '$T/% lag'" 2>/dev/null)" = "3 0" ]
}

# kafka_ends: "p end" of the suite's topic, from Kafka itself
kafka_ends() {
    kcat -b "$KAFKA_BROKERS" -Q -t "$T:0:-1" -t "$T:1:-1" -t "$T:2:-1" 2>/dev/null |
        sed -nE 's/.*\[([0-9]+)\] offset ([0-9]+).*/\1 \2/p' | sort
}

# status_ends: "p end" of the suite's topic, as recsys.status shows them
status_ends() {
    psql -X -qtA -F ' ' -c "SELECT split_part(split_part(metric, '/', 2), ' ', 1), value FROM recsys.status
        WHERE component = 'event_log' AND metric LIKE '$T/% end_offset'" 2>/dev/null | sort
}

# healthy: (d) the workers run on their own and recsys.status says so, with the end
# offsets Kafka itself gives (an old answer once showed lag 0 while far behind)
healthy() {
    [ "$(status_ends)" = "$(kafka_ends)" ] &&
    [ "$(psql -X -qtA -c "SELECT string_agg(metric || '=' || value, ',' ORDER BY metric) FROM recsys.status
         WHERE component = 'archiver' AND metric IN ('workers', 'state', 'store', 'kafka')" 2>/dev/null)" = \
      "kafka=ok,state=ok,store=ok,workers=1 of 1 running" ] &&
    [ "$(psql -X -qtA -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'recsys relay'" 2>/dev/null)" = 1 ] &&
    lag_zero
}

# check_recovered NAME RESTART_TIME: status healthy and lag 0 without a manual step;
# sets FIG_RECOVERY (seconds from the part's restart to lag 0)
check_recovered() {
    wait_for 120 healthy
    ok $? "$1: the workers recovered on their own: archiver and relay running, status ok, lag 0"
    FIG_RECOVERY=$(secs_since "$2")
    diag "$1: healthy with lag 0 ${FIG_RECOVERY}s after the restart"
    healthy || psql -X -qtA -c "SELECT component, metric, value FROM recsys.status WHERE component IN ('archiver', 'event_log')" | sed 's/^/#   /'
    is "$(psql_val "SELECT count(*) FROM recsys.outbox")" 0 "$1: the outbox is empty"
}

# figure SCENARIO TAG FAULTS [RECOVERY]: the figures of the scenario whose events are
# tagged TAG, as a diag line and a JSON line; recovery_s counts from the restart of the
# part (its start command), part_start_s is how long that command took (FIG_PART)
figure() {
    local rec=${4:-$FIG_RECOVERY} in
    in=$(awk -v sc="$2" '$2 == sc' "$E/accepted" | wc -l | tr -d ' ')
    diag "figure: scenario=$1 events_in=$in archived=$FIG_ARCHIVED resends=$FIG_RESENDS in_doubt_present=$FIG_PRESENT faults=$3 recovery_s=$rec part_start_s=$FIG_PART"
    printf '{"suite":"600","scenario":"%s","events_in":%s,"archived":%s,"resends":%s,"faults":%s,"recovery_s":%s,"part_start_s":%s,"at":"%s"}\n' \
        "$1" "$in" "$FIG_ARCHIVED" "$FIG_RESENDS" "$3" "$rec" "$FIG_PART" "$(date -u +%FT%TZ)" >>"$FIGURES"
}
