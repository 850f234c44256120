#!/usr/bin/env bash
# bench/quality.sh: offline quality of recsys_recommend on real MovieLens data, against
# a most-popular baseline, tuned on a validation cut only (protocol in bench/quality.py).
#
#   test/stack.sh up && eval "$(test/stack.sh env)"
#   bench/quality.sh [DATA_DIR]      # default: scripts/movielens.sh's ml-latest-small
#
# The run gets a world of its own on the running stack: the workers are switched to the
# queue table and a fresh local archive directory, and the extension is dropped and
# created again before each of the two phases (tuning, then test), so it needs a stack
# whose data may be thrown away (the settings are restored afterwards). Prints the
# result as JSON (metrics, the bootstrap interval, the chosen parameters); the tuning
# log goes to stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
DATA=${1:-/var/tmp/recsys-demo-data}
[ -s "$DATA/ratings.csv" ] || bash "$REPO/scripts/movielens.sh" "$DATA" >&2
[ -n "${PGHOST:-}" ] || { echo "quality: no stack in the environment: eval \"\$(test/stack.sh env)\" first" >&2; exit 1; }

WORK=$(mktemp -d /tmp/recsys-quality.XXXXXX)
ARCHIVE=$(mktemp -d /tmp/recsys-quality-archive.XXXXXX)
chmod 0755 "$WORK" "$ARCHIVE"
chown recsys: "$ARCHIVE" 2>/dev/null || true
restore() {
    psql -X -qtA -c "ALTER SYSTEM RESET recsys.kafka_brokers" -c "ALTER SYSTEM RESET recsys.s3_endpoint" \
        -c "ALTER SYSTEM RESET recsys.archive_dir" -c "ALTER SYSTEM RESET recsys.archive_flush_interval" \
        -c "ALTER SYSTEM RESET recsys.redis_url" -c "ALTER SYSTEM RESET recsys.llm_endpoint" \
        -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    rm -rf "$WORK" "$ARCHIVE"
}
trap restore EXIT
# the engine alone (no cache, no LLM), the embedded queue and a directory of its own
psql -X -qtA -c "ALTER SYSTEM SET recsys.kafka_brokers = ''" -c "ALTER SYSTEM SET recsys.s3_endpoint = ''" \
    -c "ALTER SYSTEM SET recsys.archive_dir = '$ARCHIVE'" -c "ALTER SYSTEM SET recsys.archive_flush_interval = '200ms'" \
    -c "ALTER SYSTEM SET recsys.redis_url = ''" -c "ALTER SYSTEM SET recsys.llm_endpoint = ''" \
    -c "SELECT pg_reload_conf()" >/dev/null
sleep 2
python3 "$HERE/quality.py" "$DATA" "$WORK"
