#!/usr/bin/env bash
# recsys_health() against the real servers: every configured part is ok with the stack
# up; with Kafka, MinIO, Redis or the LLM test server stopped its row turns to a clear
# failure within the part's timeout (statement_timeout guards against a hang), and back
# when it returns.
source "$(dirname "$0")/../lib.sh"

row() { psql_val "SET statement_timeout = '30s'; SELECT ok || '|' || detail FROM recsys_health() WHERE component = '$1'"; }

like "$(row postgres)" '^true\|PostgreSQL 15.*recsys preloaded' "postgres row: recsys preloaded"
like "$(row kafka)" '^true\|1 broker\(s\) at 127.0.0.1:[0-9]+, topic "recsys-events" with 3 partition' "kafka row: brokers and topic"
like "$(row s3)" '^true\|bucket "recsys" at http://127.0.0.1:[0-9]+ reachable with the configured credentials' "s3 row: bucket reachable"
like "$(row redis)" '^true\|redis [0-9.]+ at 127.0.0.1:[0-9]+ db 0, PING answered PONG' "redis row: PONG"
like "$(row llm)" '^true\|http://127.0.0.1:[0-9]+/v1 reachable, model "gpt-4o-mini"' "llm row: the test server answers GET /models with the key"

# Kafka stopped: a failure naming the timeout, then ok again once it is back.
"$STACK" stop kafka >/dev/null 2>&1
like "$(row kafka)" '^false\|brokers 127.0.0.1:[0-9]+ did not answer within recsys.kafka_timeout' "kafka stopped: row fails and says why"
"$STACK" start kafka >/dev/null 2>&1
wait_for 60 bash -c "[ \"\$(psql -XtAc \"SELECT ok FROM recsys_health() WHERE component = 'kafka'\")\" = t ]"
ok $? "kafka back: row ok again"

"$STACK" stop minio >/dev/null 2>&1
like "$(row s3)" '^false\|bucket "recsys" at http://127.0.0.1:[0-9]+: .*(refused|connect)' "minio stopped: row fails and says why"
"$STACK" start minio >/dev/null 2>&1
like "$(row s3)" '^true\|' "minio back: row ok again"

"$STACK" stop redis >/dev/null 2>&1
like "$(row redis)" '^false\|could not connect to Redis at 127.0.0.1:[0-9]+: Connection refused' "redis stopped: row fails and says why"
"$STACK" start redis >/dev/null 2>&1
like "$(row redis)" '^true\|' "redis back: row ok again"

"$STACK" stop llm >/dev/null 2>&1
like "$(row llm)" '^false\|http://127.0.0.1:[0-9]+/v1 did not answer within recsys.llm_timeout \([0-9]+ ms\): .*(refused|connect)' "llm stopped: row fails and says why"
"$STACK" start llm >/dev/null 2>&1
like "$(row llm)" '^true\|' "llm back: row ok again"

# Wrong credentials: MinIO's error code, never the secret.
secrets="$RECSYS_STACK_DIR/secrets"
cp -p "$secrets" "$secrets.orig"
restore() { cp -p "$secrets.orig" "$secrets"; rm -f "$secrets.orig"; }
trap restore EXIT
sed -i 's/^s3_secret_key = .*/s3_secret_key = not-the-right-secret-0123456789/' "$secrets"
touch -d '+2 seconds' "$secrets"
out=$(row s3)
like "$out" '^false\|.*SignatureDoesNotMatch' "a wrong S3 secret gives MinIO's error code"
unlike "$out" 'not-the-right-secret' "the error does not carry the secret"

# A wrong LLM key: the test server refuses it (and counts it), the row says which key.
llm_control="${LLM_ENDPOINT%/v1}/control"
sed -i 's/^llm_api_key = .*/llm_api_key = sk-not-the-right-key-0123456789/' "$secrets"
touch -d '+4 seconds' "$secrets"
out=$(row llm)
like "$out" '^false\|http://127.0.0.1:[0-9]+/v1 answered GET /models with HTTP 401 \(check llm_api_key in recsys.secrets_file\)' "a wrong LLM key gives HTTP 401 and names the setting"
unlike "$out" 'not-the-right-key' "the error does not carry the key"
like "$(curl -s "$llm_control/stats")" '"rejected": 1[,}]' "the test server counted the refused request"
curl -s -o /dev/null -d '{"reset_stats": true}' "$llm_control"

# A secrets file others can read is refused, and the row says what is missing.
restore; cp -p "$secrets" "$secrets.orig"
chmod 0644 "$secrets"
out=$(psql -X -tA -c "SELECT ok || '|' || detail FROM recsys_health() WHERE component = 's3'" 2>&1)
like "$out" 'must belong to the server.s OS user and have no group or other access' "a group- or world-readable secrets file is refused with a warning"
like "$out" 'false\|no S3 credentials' "with the file refused, the s3 row says the credentials are missing"
chmod 0600 "$secrets"
restore
trap - EXIT
like "$(row s3)" '^true\|' "secrets file fixed: row ok again"
like "$(row llm)" '^true\|' "secrets file restored: the llm row is ok again with the right key"
# (the refused secrets file sent GET /models without a key: the test server counted it)
curl -s -o /dev/null -d '{"reset_stats": true}' "$llm_control"

done_testing
