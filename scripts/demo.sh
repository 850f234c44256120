#!/usr/bin/env bash
# scripts/demo.sh: the README's demo command. On a fresh Debian 12 machine, as root:
#
#   sudo bash scripts/demo.sh
#
# installs and builds everything (scripts/setup.sh), starts the stack (test/stack.sh),
# writes real MovieLens data (scripts/movielens.sh), loads the catalogue, streams the
# ratings into Kafka, waits until the archiver has them in MinIO, and shows what each
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
printf '\nThe stack is still up. Connect with: eval "$(test/stack.sh env)"; psql\n'
