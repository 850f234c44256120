# test/t/1-ingest-lib.bash: helpers of the ingestion suites (test/t/1*.t).
#
# Events of one job are told apart by their ids (job_id * 10^10 + line), so the suites
# can share the topic with others; reading starts at a timestamp taken before the job.

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# copy the fixtures where the server's OS user can read them
FX=$(fixture_dir)
cp "$REPO_DIR"/test/fixtures/* "$FX"/
chmod 0644 "$FX"/*
trap 'rm -rf "$FX"' EXIT

now_ms() { date +%s%3N; }

# the topic the server produces to (other suites may have switched it with ALTER SYSTEM)
KAFKA_TOPIC=$(psql -X -qtA -c 'SHOW recsys.kafka_topic')

# kafka_values SINCE_MS: "key<TAB>value" of every committed event since SINCE_MS
kafka_values() {
    kcat -C -b "$KAFKA_BROKERS" -t "$KAFKA_TOPIC" -X isolation.level=read_committed \
        -o "s@$1" -e -q -f '%k\t%s\n' 2>/dev/null
}

# parse: "event_id key user movie rating ts" from kafka_values lines (other shapes dropped)
parse_events() {
    sed -nE 's/^([0-9]+)\t\{"event_id":([0-9]+),"user_id":([0-9]+),"movie_id":([0-9]+),"rating":([0-9.]+),"ts":([0-9]+)\}$/\2 \1 \3 \4 \5 \6/p'
}

# job_events JOB SINCE_MS: "line key user movie rating ts" of the job's events, by line
job_events() {
    kafka_values "$2" | parse_events |
        awk -v job="$1" '{ base = job * 10000000000;
                           if ($1 > base && $1 < base + 10000000000) { $1 = $1 - base; print } }' |
        sort -n
}

# job_col JOB COLUMN: one column of the job's row in recsys.ingest_jobs
job_col() { psql_val "SELECT $2 FROM recsys.ingest_jobs WHERE job_id = $1"; }

# load the fixture catalogue
load_catalogue() { psql_val "SELECT recsys_load_movies('$FX/movies.csv')"; }
