#!/bin/bash
# Run the unit tests of the S3 client (against a private MinIO) and of the event validator.
#   test/unit/s3_run.sh            build and run
#   VALGRIND=1 test/unit/s3_run.sh the same under valgrind (leaks and bad reads fail it)
# MINIO (default: minio on PATH, else ~/go/bin/minio) and UNIT_S3_PORT (19500).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${UNIT_S3_PORT:-19500}
minio=${MINIO:-$(command -v minio || echo "$HOME/go/bin/minio")}
dir=$(mktemp -d /tmp/recsys-unit-s3.XXXXXX)
pid=

cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT

make -s -f "$here/unit.mk"
export S3_ENDPOINT=http://127.0.0.1:$port S3_BUCKET=unit-test
export S3_ACCESS_KEY=unitadmin S3_SECRET_KEY=unit-secret-$RANDOM$RANDOM
MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY \
	"$minio" server "$dir/data" --address "127.0.0.1:$port" \
	--console-address "127.0.0.1:$((port + 1))" >"$dir/minio.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
	curl -sf "$S3_ENDPOINT/minio/health/live" >/dev/null && break
	sleep 0.1
done

for t in s3_test eventjson_test; do
	if [ "${VALGRIND:-0}" = 1 ]; then
		valgrind --quiet --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
			"$here/bin/$t"
	else
		"$here/bin/$t"
	fi
done
