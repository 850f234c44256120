#!/usr/bin/env bash
# docker/: no Docker engine runs here, so validate what can be: the compose file parses
# with Debian's docker-compose, has the four real services, and names only recsys.*
# settings that the extension defines; the Dockerfile copies paths that exist.
source "$(dirname "$0")/../lib.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$REPO_DIR/docker" "$work/"
printf 's3_access_key = recsys-admin\ns3_secret_key = %s\n' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$work/docker/secrets.conf"
echo "example-password" >"$work/docker/pg_password"
compose() { (cd "$work" && docker-compose -f docker/docker-compose.yml "$@"); }

compose config -q 2>"$work/err"
ok $? "docker-compose config accepts docker/docker-compose.yml"
[ -s "$work/err" ] && diag "$(cat "$work/err")"
is "$(compose config --services 2>/dev/null | sort | tr '\n' ' ')" "db kafka kafka-init minio minio-init redis " \
    "services: the database, Kafka (and its topic), MinIO (and its bucket), Redis"

settings=$(grep -oE 'recsys\.[a-z_0-9]+=' "$REPO_DIR/docker/docker-compose.yml" | tr -d '=' | sort -u)
unknown=""
for s in $settings; do
    [ "$(psql_val "SELECT count(*) FROM pg_settings WHERE name = '$s'")" = 1 ] || unknown="$unknown $s"
done
is "$unknown" "" "every recsys.* setting in the compose file is one the extension defines"
like "$settings" 'recsys.kafka_brokers' "the compose file points recsys at Kafka"
like "$settings" 'recsys.secrets_file' "the compose file hands secrets over as a file"
unlike "$(cat "$REPO_DIR/docker/docker-compose.yml")" 's3_secret_key *= *[A-Za-z0-9]{8,}' "no secret is written into the compose file"

missing=""
for src in $(awk '/^COPY/ { for (i = 2; i < NF; i++) print $i }' "$REPO_DIR/docker/Dockerfile"); do
    [ -e "$REPO_DIR/$src" ] || missing="$missing $src"
done
is "$missing" "" "every path the Dockerfile copies exists in the repository"

done_testing
