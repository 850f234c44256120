#!/usr/bin/env bash
# test/stack.sh: the whole recsys stack on loopback, for tests, benchmarks and the demo.
#
#   test/stack.sh up | down | status | env
#   test/stack.sh stop PART [immediate] | start PART     PART: postgres kafka minio redis llm
#   test/stack.sh kill PART      SIGKILL by its recorded PID (kafka minio redis llm: a crash;
#                                PostgreSQL's own crash is `stop postgres immediate`)
#
# PostgreSQL 15 (recsys and pg_cron preloaded, a private cluster run by an unprivileged
# OS user), Kafka (KRaft, single node, topic recsys-events with 3 partitions), MinIO
# (bucket created, real credentials), Redis and the project's OpenAI-protocol LLM test
# server (test/llm_server.py), each on a port of its own:
#
#   RECSYS_PORT_BASE + 0 postgres   + 1 kafka   + 2 kafka controller   + 3 minio
#                    + 4 minio console          + 5 redis              + 6 llm test server
#
# RECSYS_STACK_DIR (data, logs, pid files; default /var/tmp/recsys-stack) and
# RECSYS_PORT_BASE (default 15400) let several stacks run side by side. `up` is
# idempotent and installs nothing: what it needs comes from scripts/setup.sh. Every
# server is stopped by the PID it recorded when it started, never by name.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
DIR=${RECSYS_STACK_DIR:-/var/tmp/recsys-stack}
BASE=${RECSYS_PORT_BASE:-15400}
TOOLS=${RECSYS_TOOLS_DIR:-/opt/recsys-tools}
STACK_USER=${RECSYS_STACK_USER:-recsys}
DB=recsys
TOPIC=recsys-events
BUCKET=recsys
S3_ACCESS_KEY=recsys-admin

PG_PORT=$BASE
KAFKA_PORT=$((BASE + 1))
CONTROLLER_PORT=$((BASE + 2))
MINIO_PORT=$((BASE + 3))
MINIO_CONSOLE_PORT=$((BASE + 4))
REDIS_PORT=$((BASE + 5))
LLM_PORT=$((BASE + 6))

PGBIN=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
# The system interpreter (the stack user may not see a per-user one such as pyenv's shims,
# and a shim would not exec, so its PID would not be the server's).
PYTHON=${RECSYS_PYTHON:-$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3 || true)}
LLM_ENDPOINT="http://127.0.0.1:$LLM_PORT/v1"
SETUP_HINT="run the set-up command first: sudo bash scripts/setup.sh"

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

# Run a command as the stack's OS user (the caller itself when not root).
as_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$STACK_USER" -- "$@"
    else
        "$@"
    fi
}

# Fail at once, naming the set-up command, when something the stack needs is missing.
check_installed() {
    local missing=()
    [ -x "$PGBIN/initdb" ] || missing+=("PostgreSQL 15 server ($PGBIN/initdb)")
    [ -f "$(pg_config --pkglibdir 2>/dev/null)/recsys.so" ] || missing+=("the recsys extension (make install)")
    [ -f "$(pg_config --pkglibdir 2>/dev/null)/pg_cron.so" ] || missing+=("pg_cron")
    command -v java >/dev/null || missing+=("java")
    compgen -G "$TOOLS/kafka/libs/kafka_2.13-*.jar" >/dev/null || missing+=("Kafka jars in $TOOLS/kafka/libs")
    [ -x "$TOOLS/bin/minio" ] || missing+=("MinIO ($TOOLS/bin/minio)")
    command -v redis-server >/dev/null || missing+=("redis-server")
    [ -n "$PYTHON" ] && [ -x "$PYTHON" ] || missing+=("python3 (for the LLM test server)")
    if [ "$(id -u)" -eq 0 ] && ! id "$STACK_USER" >/dev/null 2>&1; then
        missing+=("the OS user $STACK_USER")
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        die "not set up: missing $(IFS=';'; echo "${missing[*]}"); $SETUP_HINT"
    fi
}

pidfile() { echo "$DIR/run/$1.pid"; }

# True when PART's recorded process is alive.
running() {
    local f pid
    f=$(pidfile "$1")
    [ -f "$f" ] || return 1
    pid=$(cat "$f" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Start a long-running server as the stack user, in its own session, recording its PID.
spawn() {
    local part=$1; shift
    local f
    f=$(pidfile "$part")
    rm -f "$f"
    # The child writes its own PID, then becomes the server (exec keeps the PID).
    as_user setsid bash -c 'echo $$ > "$0"; exec "$@"' "$f" "$@" \
        >>"$DIR/logs/$part.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 50); do [ -s "$f" ] && return 0; sleep 0.1; done
    die "$part did not start; see $DIR/logs/$part.log"
}

# Wait until a readiness probe succeeds, or fail naming the log.
wait_ready() {
    local part=$1 seconds=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ! running "$part"; then
            tail -n 20 "$DIR/logs/$part.log" >&2 || true
            die "$part exited during start-up; see $DIR/logs/$part.log"
        fi
        [ $SECONDS -lt $deadline ] || die "$part not ready after ${seconds}s; see $DIR/logs/$part.log"
        sleep 0.2
    done
}

# Stop PART by its recorded PID: TERM, wait, then KILL.
stop_pid() {
    local part=$1 timeout=${2:-30}
    local f pid
    f=$(pidfile "$part")
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + timeout))
        while kill -0 "$pid" 2>/dev/null; do
            if [ $SECONDS -ge $deadline ]; then
                log "$part (pid $pid) did not stop in ${timeout}s: killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.1
        done
    fi
    rm -f "$f"
}

prepare_dir() {
    mkdir -p "$DIR"/{logs,run,pg,kafka,minio,redis,llm}
    if [ "$(id -u)" -eq 0 ]; then
        chown -R "$STACK_USER:" "$DIR"
    fi
    chmod 0755 "$DIR"
    # The S3 secret and the LLM API key are made once per stack and kept in the secrets
    # file, readable by the stack user alone (recsys.secrets_file); the LLM test server
    # reads its key from the same file. A stack made before the LLM server gets its key
    # line added.
    if [ ! -f "$DIR/secrets" ]; then
        local secret
        secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
        as_user bash -c "umask 077; printf '%s\n' '# recsys secrets (recsys.secrets_file): name = value' \
            's3_access_key = $S3_ACCESS_KEY' 's3_secret_key = $secret' > '$DIR/secrets'"
    fi
    if ! grep -q '^llm_api_key = ' "$DIR/secrets"; then
        local key
        key=sk-test-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
        as_user bash -c "printf '%s\n' 'llm_api_key = $key' >> '$DIR/secrets'"
    fi
}

s3_secret() { sed -n 's/^s3_secret_key = //p' "$DIR/secrets"; }
llm_key() { sed -n 's/^llm_api_key = //p' "$DIR/secrets"; }

# ---------------------------------------------------------------- PostgreSQL
pg_ready() { "$PGBIN/pg_isready" -q -h "$DIR/run" -p "$PG_PORT"; }
psql_stack() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/run" -p "$PG_PORT" -U "$STACK_USER" "$@"; }

start_postgres() {
    local data=$DIR/pg/data
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initdb $data"
        as_user "$PGBIN/initdb" -D "$data" -U "$STACK_USER" -A trust -E UTF8 --locale=C.UTF-8 \
            >>"$DIR/logs/postgres.log" 2>&1 || die "initdb failed; see $DIR/logs/postgres.log"
        cat >>"$data/postgresql.conf" <<EOF

# ---- written by test/stack.sh ----
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR/run'
shared_preload_libraries = 'recsys,pg_cron'
max_worker_processes = 32
fsync = off
logging_collector = off
log_line_prefix = '%m [%p] %b '
cron.database_name = '$DB'
cron.use_background_workers = on
recsys.database = '$DB'
recsys.kafka_brokers = '127.0.0.1:$KAFKA_PORT'
recsys.kafka_topic = '$TOPIC'
recsys.kafka_timeout = '5s'
recsys.s3_endpoint = 'http://127.0.0.1:$MINIO_PORT'
recsys.s3_bucket = '$BUCKET'
recsys.s3_timeout = '5s'
recsys.redis_url = 'redis://127.0.0.1:$REDIS_PORT/0'
recsys.redis_timeout = '2s'
recsys.secrets_file = '$DIR/secrets'
recsys.llm_endpoint = '$LLM_ENDPOINT'
EOF
    fi
    # a cluster made before the LLM test server was part of the stack: point it there
    if ! grep -q '^recsys.llm_endpoint' "$data/postgresql.conf"; then
        as_user bash -c "printf '%s\n' \"recsys.llm_endpoint = '$LLM_ENDPOINT'\" >> '$data/postgresql.conf'"
        if running postgres; then
            as_user "$PGBIN/pg_ctl" -D "$data" reload >>"$DIR/logs/postgres.log" 2>&1 || true
        fi
    fi
    if ! running postgres; then
        rm -f "$data/postmaster.pid.stale"
        spawn postgres "$PGBIN/postgres" -D "$data"
    fi
    wait_ready postgres 60 pg_ready
    if ! psql_stack -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
        psql_stack -d postgres -c "CREATE DATABASE $DB"
    fi
    psql_stack -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS recsys" -c "CREATE EXTENSION IF NOT EXISTS pg_cron SCHEMA public"
}

stop_postgres() {
    local mode=${1:-fast}
    local data=$DIR/pg/data
    if running postgres; then
        as_user "$PGBIN/pg_ctl" -D "$data" -m "$mode" -w -t 60 stop >>"$DIR/logs/postgres.log" 2>&1 ||
            stop_pid postgres 30
    fi
    rm -f "$(pidfile postgres)"
}

# ---------------------------------------------------------------- Kafka
kafka_ready() { kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 >/dev/null 2>&1; }
kafka_topic_ready() {
    kcat -b "127.0.0.1:$KAFKA_PORT" -L -t "$TOPIC" -m 2 2>/dev/null | grep -q "topic \"$TOPIC\" with 3 partitions"
}
kafka_java() {
    as_user java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$DIR/kafka/log4j.properties" \
        -cp "$TOOLS/kafka/libs/*" "$@"
}

start_kafka() {
    local conf=$DIR/kafka/server.properties
    if [ ! -f "$conf" ]; then
        cat >"$conf" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/kafka/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
EOF
        cat >"$DIR/kafka/log4j.properties" <<EOF
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
EOF
        [ "$(id -u)" -eq 0 ] && chown -R "$STACK_USER:" "$DIR/kafka"
    fi
    if [ ! -f "$DIR/kafka/data/meta.properties" ]; then
        local cluster_id
        # a random KRaft cluster id (base64url: it may start with "-", hence --cluster-id=)
        cluster_id=$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
        kafka_java kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$conf" \
            >>"$DIR/logs/kafka.log" 2>&1 || die "formatting Kafka storage failed; see $DIR/logs/kafka.log"
    fi
    if ! running kafka; then
        spawn kafka java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
            -Dlog4j.configuration="file:$DIR/kafka/log4j.properties" \
            -cp "$TOOLS/kafka/libs/*" kafka.Kafka "$conf"
    fi
    wait_ready kafka 120 kafka_ready
    if ! kafka_topic_ready; then
        kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
            --create --if-not-exists --topic "$TOPIC" --partitions 3 --replication-factor 1 \
            >>"$DIR/logs/kafka.log" 2>&1 || die "creating topic $TOPIC failed; see $DIR/logs/kafka.log"
        wait_ready kafka 60 kafka_topic_ready
    fi
}

# ---------------------------------------------------------------- MinIO
minio_ready() { curl -fsS -o /dev/null "http://127.0.0.1:$MINIO_PORT/minio/health/ready"; }
s3_curl() {
    curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$(s3_secret)" \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$@"
}
bucket_ready() { [ "$(s3_curl -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$MINIO_PORT/$BUCKET")" = 200 ]; }

start_minio() {
    if ! running minio; then
        spawn minio env MINIO_ROOT_USER="$S3_ACCESS_KEY" MINIO_ROOT_PASSWORD="$(s3_secret)" \
            MINIO_BROWSER=off MINIO_UPDATE=off \
            "$TOOLS/bin/minio" server --quiet --address "127.0.0.1:$MINIO_PORT" \
            --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" "$DIR/minio/data"
    fi
    wait_ready minio 60 minio_ready
    # MinIO may answer 503 for a moment after its health check first passes
    local i
    for i in $(seq 1 20); do
        bucket_ready && break
        s3_curl -f -o /dev/null -X PUT "http://127.0.0.1:$MINIO_PORT/$BUCKET" 2>/dev/null && break
        sleep 0.5
    done
    bucket_ready || die "creating bucket $BUCKET failed"
}

# ---------------------------------------------------------------- Redis
redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

start_redis() {
    if ! running redis; then
        spawn redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" \
            --save '' --appendonly no --daemonize no --protected-mode yes
    fi
    wait_ready redis 30 redis_ready
}

# ---------------------------------------------------------------- LLM test server
# test/llm_server.py: OpenAI Chat Completions on LLM_PORT, key from the secrets file,
# model gpt-4o-mini (recsys.llm_model's default); recsys.llm_endpoint points at it.
# Its control API (mode, counts) is described at the top of the script.
# ready when the server on the port is the one just started (its stats carry its PID)
llm_ready() {
    [ "$(curl -fsS -m 2 "http://127.0.0.1:$LLM_PORT/control/stats" | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')" = \
        "$(cat "$(pidfile llm)" 2>/dev/null)" ]
}

start_llm() {
    if ! running llm; then
        spawn llm "$PYTHON" "$HERE/llm_server.py" --port "$LLM_PORT" --key-file "$DIR/secrets"
    fi
    wait_ready llm 30 llm_ready
}
stop_llm() { stop_pid llm 10; }

# ---------------------------------------------------------------- commands
start_part() {
    case "$1" in
        postgres) start_postgres ;;
        kafka) start_kafka ;;
        minio) start_minio ;;
        redis) start_redis ;;
        llm) start_llm ;;
        *) die "unknown part '$1' (postgres kafka minio redis llm)" ;;
    esac
}

stop_part() {
    case "$1" in
        postgres) stop_postgres "${2:-fast}" ;;
        kafka) stop_pid kafka 60 ;;
        minio) stop_pid minio 30 ;;
        redis) stop_pid redis 30 ;;
        llm) stop_llm ;;
        *) die "unknown part '$1' (postgres kafka minio redis llm)" ;;
    esac
}

# kill_part PART: a crash, not a stop: SIGKILL to the PID the part recorded.
kill_part() {
    local f pid
    case "$1" in
        kafka|minio|redis|llm) ;;
        *) die "kill takes kafka, minio, redis or llm (PostgreSQL: stop postgres immediate)" ;;
    esac
    f=$(pidfile "$1")
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
    rm -f "$f"
}

cmd_up() {
    check_installed
    prepare_dir
    # Kafka first: its JVM takes longest, and PostgreSQL's workers connect to it.
    start_kafka
    start_minio
    start_redis
    start_llm
    start_postgres
    log "up: postgres :$PG_PORT, kafka :$KAFKA_PORT, minio :$MINIO_PORT, redis :$REDIS_PORT, llm :$LLM_PORT (logs in $DIR/logs)"
}

cmd_down() {
    local part
    for part in postgres llm redis minio kafka; do
        stop_part "$part"
    done
    log "down: every server of $DIR stopped"
}

cmd_status() {
    local part rc=0
    for part in postgres kafka minio redis llm; do
        if running "$part"; then
            printf '%-9s running (pid %s)%s\n' "$part" "$(cat "$(pidfile "$part")")" \
                "$([ "$part" = llm ] && echo ", endpoint $LLM_ENDPOINT")"
        else
            printf '%-9s stopped\n' "$part"
            rc=1
        fi
    done
    return $rc
}

cmd_env() {
    cat <<EOF
export RECSYS_STACK_DIR='$DIR'
export RECSYS_PORT_BASE='$BASE'
export PGHOST='$DIR/run'
export PGPORT='$PG_PORT'
export PGUSER='$STACK_USER'
export PGDATABASE='$DB'
export KAFKA_BROKERS='127.0.0.1:$KAFKA_PORT'
export KAFKA_TOPIC='$TOPIC'
export S3_ENDPOINT='http://127.0.0.1:$MINIO_PORT'
export S3_BUCKET='$BUCKET'
export S3_ACCESS_KEY='$S3_ACCESS_KEY'
export S3_SECRET_KEY='$( [ -f "$DIR/secrets" ] && s3_secret )'
export REDIS_URL='redis://127.0.0.1:$REDIS_PORT/0'
export LLM_ENDPOINT='$LLM_ENDPOINT'
export LLM_API_KEY='$( [ -f "$DIR/secrets" ] && llm_key )'
EOF
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    stop) [ $# -ge 2 ] || die "usage: $0 stop PART [immediate]"; stop_part "$2" "${3:-fast}" ;;
    start) [ $# -ge 2 ] || die "usage: $0 start PART"; check_installed; prepare_dir; start_part "$2" ;;
    kill) [ $# -ge 2 ] || die "usage: $0 kill PART"; kill_part "$2" ;;
    *) echo "usage: $0 up|down|status|env|stop PART [immediate]|start PART|kill PART" >&2; exit 2 ;;
esac
