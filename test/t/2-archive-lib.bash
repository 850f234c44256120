# test/t/2-archive-lib.bash: helpers of the archiver suites (test/t/2*.t).
#
# Each suite archives a Kafka topic of its own (recsys.kafka_topic is switched with
# ALTER SYSTEM and a reload, which restarts the archiver on that topic), so that what
# is in the archive can be compared, exactly, with what the suite produced.

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

S3_TOOL="$REPO_DIR/test/unit/bin/s3_tool"
make -s -f "$REPO_DIR/test/unit/unit.mk" >/dev/null || { echo "Bail out! cannot build s3_tool"; exit 1; }
TOOLS=${RECSYS_TOOLS_DIR:-/opt/recsys-tools}
PGDATA_DIR=$(psql -X -qtA -c 'SHOW data_directory')

# kafka_tool CLASS ARGS...: run one of Kafka's command-line tools.
kafka_tool() {
    java -Xms64m -Xmx256m -cp "$TOOLS/kafka/libs/*" "$@" 2>/dev/null
}

# create_topic NAME PARTITIONS
create_topic() {
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" \
        --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor 1 >/dev/null
}

# archiver_pids: pids of the archiver workers.
archiver_pids() {
    psql -X -qtA -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'recsys archiver' ORDER BY pid"
}

# status METRIC [COMPONENT]: one value of recsys.status.
status() {
    psql -X -qtA -c "SELECT value FROM recsys.status WHERE metric = '$1' AND component = '${2:-archiver}'"
}

# use_topic NAME: archive NAME from now on, and wait until the workers run on it.
use_topic() {
    psql -X -qtA -c "ALTER SYSTEM SET recsys.kafka_topic = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
    wait_for 60 bash -c "psql -X -qtA -c \"SELECT count(*) FROM recsys.status WHERE metric LIKE '$1/%archived_offset' AND value <> '-1'\" | grep -qv '^0$'"
}

# set_conf NAME VALUE / reset_conf NAME: change a reloadable setting.
set_conf() {
    psql -X -qtA -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
}
reset_conf() {
    psql -X -qtA -c "ALTER SYSTEM RESET $1" -c "SELECT pg_reload_conf()" >/dev/null
}

# restore_defaults: undo what the suites change (called on exit).
restore_defaults() {
    psql -X -qtA -c "ALTER SYSTEM RESET recsys.kafka_topic" -c "ALTER SYSTEM RESET recsys.archive_flush_interval" \
        -c "ALTER SYSTEM RESET recsys.archive_flush_events" -c "ALTER SYSTEM RESET recsys.kafka_brokers" \
        -c "ALTER SYSTEM RESET recsys.s3_endpoint" -c "ALTER SYSTEM RESET recsys.archive_dir" \
        -c "SELECT pg_reload_conf()" >/dev/null 2>&1
    rm -f "$PGDATA_DIR/recsys_archiver_fault" "$PGDATA_DIR/recsys_archiver_paused" 2>/dev/null
}

# gen_events FIRST_ID COUNT: lines "user|json" of valid events with ids FIRST_ID...
gen_events() {
    awk -v first="$1" -v n="$2" 'BEGIN {
        for (i = first; i < first + n; i++) {
            u = (i * 7919) % 997 + 1; m = (i * 104729) % 5000 + 1; r = (i % 10) / 2 + 0.5;
            printf "%d|{\"event_id\":%d,\"user_id\":%d,\"movie_id\":%d,\"rating\":%.1f,\"ts\":%d}\n", u, i, u, m, r, 1600000000 + i
        }
    }'
}

# produce TOPIC < lines: send "key|value" lines.
produce() {
    kcat -P -b "$KAFKA_BROKERS" -t "$1" -K '|' -z lz4
}

# archive_lines TOPIC: every archived event line of the topic, sorted.
archive_lines() {
    "$S3_TOOL" catall "events/topic=$1/" | LC_ALL=C sort
}

# check_archive TOPIC EXPECTED NAME: the topic's archive holds exactly the sorted event
# lines of the file EXPECTED, each once, in objects whose offset ranges do not overlap.
check_archive() {
    local got
    got=$(mktemp)
    archive_lines "$1" >"$got"
    if cmp -s "$2" "$got"; then ok 0 "$3: every event archived exactly once ($(wc -l <"$2"))"
    else ok 1 "$3: every event archived exactly once"
        diag "expected $(wc -l <"$2"), archived $(wc -l <"$got"), distinct $(uniq "$got" | wc -l)"; fi
    rm -f "$got"
    is "$(manifest_overlaps "$1")" 0 "$3: no overlapping ranges"
}

# manifest_overlaps TOPIC: pairs of manifest rows whose offset ranges overlap.
manifest_overlaps() {
    psql -X -qtA -c "SELECT count(*) FROM recsys.archive_manifest a JOIN recsys.archive_manifest b
        ON a.topic = b.topic AND a.partition = b.partition AND a.object_key < b.object_key
        AND a.first_offset <= b.last_offset AND b.first_offset <= a.last_offset WHERE a.topic = '$1'"
}

# fault POINT: make the next flush pause at POINT (before_put, after_put, after_commit).
fault() {
    rm -f "$PGDATA_DIR/recsys_archiver_paused"
    echo "$1" >"$PGDATA_DIR/recsys_archiver_fault"
    chmod 0666 "$PGDATA_DIR/recsys_archiver_fault"
}
paused() { [ -f "$PGDATA_DIR/recsys_archiver_paused" ]; }

# wait_pg: wait until the server accepts connections and the archiver is back.
wait_pg() {
    wait_for 90 psql -X -qtA -c "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'recsys archiver'" -c "SELECT 1/count(*) FROM pg_stat_activity WHERE backend_type = 'recsys archiver'"
}
