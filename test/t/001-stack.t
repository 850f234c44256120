#!/usr/bin/env bash
# The stack itself: `up` is idempotent, a second stack with its own directory and ports
# runs beside the first without touching it, and `down` leaves no process behind.
source "$(dirname "$0")/../lib.sh"

pids_of() { cat "$1"/run/*.pid 2>/dev/null | sort | tr '\n' ' '; }
alive_count() {
    local n=0 p
    for p in $1; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done
    echo "$n"
}

first_pids=$(pids_of "$RECSYS_STACK_DIR")
"$STACK" up >/dev/null 2>&1
ok $? "up on a running stack succeeds"
is "$(pids_of "$RECSYS_STACK_DIR")" "$first_pids" "up on a running stack starts nothing new"

SECOND_DIR=$(mktemp -d /var/tmp/recsys-second-stack.XXXXXX)
SECOND_BASE=$((RECSYS_PORT_BASE + 20))
second() { RECSYS_STACK_DIR=$SECOND_DIR RECSYS_PORT_BASE=$SECOND_BASE "$STACK" "$@"; }
cleanup() { second down >/dev/null 2>&1; rm -rf "$SECOND_DIR"; }
trap cleanup EXIT

second up >"$SECOND_DIR/up.log" 2>&1
ok $? "a second stack starts with its own directory and ports" || diag "$(tail -n 5 "$SECOND_DIR/up.log")"
second up >/dev/null 2>&1
ok $? "up twice on the second stack succeeds"
second_pids=$(pids_of "$SECOND_DIR")
is "$(alive_count "$second_pids")" 5 "the second stack runs postgres, kafka, minio, redis and the llm test server"

second_port=$(eval "$(second env)"; echo "$PGPORT")
is "$second_port" "$SECOND_BASE" "the second stack's env points at its own ports"
health2=$(eval "$(second env)"; psql_val "SELECT string_agg(component || '=' || ok, ',' ORDER BY component) FROM recsys_health() WHERE configured")
is "$health2" "kafka=true,llm=true,postgres=true,redis=true,s3=true" "the second stack is healthy"
(eval "$(second env)"; psql_val "CREATE TABLE only_in_second(x int)" >/dev/null)
is "$(psql_val "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_second'")" 0 \
    "a table made in the second stack is not in the first"
health=$(psql_val "SELECT string_agg(component || '=' || ok, ',' ORDER BY component) FROM recsys_health() WHERE configured")
is "$health" "kafka=true,llm=true,postgres=true,redis=true,s3=true" "the first stack is still healthy beside the second"

second down >/dev/null 2>&1
ok $? "down stops the second stack"
is "$(alive_count "$second_pids")" 0 "no process of the second stack is left"
left=$(pgrep -f "$SECOND_DIR" | wc -l)
is "$left" 0 "no process mentions the second stack's directory"
is "$(alive_count "$first_pids")" "$(echo $first_pids | wc -w)" "the first stack's servers are untouched"

done_testing
