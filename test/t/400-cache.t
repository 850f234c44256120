#!/usr/bin/env bash
# The recommendation cache (src/cache.c), through its test hooks recsys.cache_debug_put,
# cache_debug_get, cache_debug_invalidate and cache_debug_invalidate_all, which call the
# C interface recsys_recommend uses:
#   - put then get is a hit that returns the list as stored (ids, scores, sources,
#     reasons); another profile version is a miss counted as stale; entries expire
#     after recsys.cache_ttl;
#   - invalidation happens after COMMIT only (the entry is still there inside the
#     transaction, and after a ROLLBACK); a namespace bump hides every entry, also from
#     a backend that had read the namespace before; more than 10,000 users bump it;
#   - a corrupt value (wrong format, bad numbers, too many entries, another user's id,
#     bad UTF-8, trailing bytes, a key of another type) is a miss, counted;
#   - Redis hanging (CLIENT PAUSE) or stopped: every call still answers (a miss), the
#     shared backoff keeps later backends from waiting on recsys.redis_timeout (20
#     backends take far less than 20 timeouts), one WARNING per outage, a commit with
#     pending invalidations succeeds; once Redis is back the cache hits again by itself;
#   - the counters and the state in recsys.status move accordingly.
source "$(dirname "$0")/../lib.sh"

REDIS_PORT=${REDIS_URL#redis://*:}
REDIS_PORT=${REDIS_PORT%%/*}
FX=$(fixture_dir)
cleanup() {
    "$STACK" start redis >/dev/null 2>&1
    rm -rf "$FX"
}
trap cleanup EXIT

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
PGDATA_DIR=$(psql_val "SHOW data_directory")
DBOID=$(psql_val "SELECT oid FROM pg_database WHERE datname = current_database()")
ns() { local v; v=$(rcli GET "recsys:$DBOID:ns"); echo "${v:-0}"; }
key() { echo "recsys:$DBOID:$(ns):rec:$1"; }
# metric NAME: a cache row of recsys.status
metric() { psql_val "SELECT value FROM recsys.status WHERE component = 'cache' AND metric = '$1'"; }
# put USER VERSION IDS [REASONS]; ids USER VERSION: the cached ids in rank order, or "miss"
put() { psql_val "SELECT recsys.cache_debug_put($1, $2, '{$3}'${4:+, '$4'})" >/dev/null; }
GETSQL="SELECT coalesce(string_agg(movie_id::text, ',' ORDER BY score DESC), 'miss') FROM recsys.cache_debug_get"
ids() { psql_val "$GETSQL($1, $2)"; }
# delta NAME BEFORE: how much a counter moved
delta() { echo $(( $(metric "$1") - $2 )); }

l0=$(metric invalidations_lost)
# a clean slate: no entry of this database, namespace 0
rcli --scan --pattern "recsys:$DBOID:*" | while read -r k; do rcli DEL "$k" >/dev/null; done

is "$(psql_val "SELECT count(*) FROM recsys.status WHERE component = 'cache'")" 12 "recsys.status has the cache's rows"
is "$(metric state)" up "cache state: up"
is "$(psql -X -qtA -c "SET recsys.redis_url = ''" -c "SELECT value FROM recsys.status WHERE component = 'cache' AND metric = 'state'")" \
   "not configured" "cache state without recsys.redis_url: not configured"

# --- put, get, stale
h0=$(metric hits); m0=$(metric misses); s0=$(metric stale); st0=$(metric stores)
put 400001 7 "10,20,30" '{"Because you rated Alien (1979) 5/5","Top rated in Sci-Fi, one of your favourite genres: é ü"}'
is "$(rcli EXISTS "recsys:$DBOID:0:rec:400001")" 1 "the entry is stored under recsys:<db oid>:<namespace>:rec:<user>"
is "$(ids 400001 7)" "10,20,30" "put then get: a hit, the ids in rank order"
is "$(psql_val "SELECT string_agg(movie_id || '|' || score || '|' || source || '|' || coalesce(reason, '-'), ';' ORDER BY score DESC)
                  FROM recsys.cache_debug_get(400001, 7)")" \
   "10|3|e|Because you rated Alien (1979) 5/5;20|2|l|Top rated in Sci-Fi, one of your favourite genres: é ü;30|1|e|reason 30" \
   "scores, sources and reasons come back as stored"
is "$(delta hits "$h0") $(delta stores "$st0")" "2 1" "hits and stores counted"
is "$(ids 400001 8)" miss "another profile version: a miss"
is "$(delta stale "$s0") $(delta misses "$m0")" "1 1" "the stale entry counted as stale and as a miss"
is "$(ids 400999 1)" miss "a user never cached: a miss"
is "$(delta stale "$s0") $(delta misses "$m0")" "1 2" "a plain miss is not stale"
put 400001 8 "40"
is "$(ids 400001 8)" 40 "a newer list replaces the old one"

# --- TTL (recsys.cache_ttl is read per call)
PGOPTIONS="-c recsys.cache_ttl=1" psql_val "SELECT recsys.cache_debug_put(400002, 1, '{5,6}')" >/dev/null
ttl=$(rcli TTL "$(key 400002)")
ok $([ "$ttl" -ge 0 ] && [ "$ttl" -le 1 ]; echo $?) "recsys.cache_ttl = 1s sets the entry's expiry (TTL $ttl)"
sleep 2.2
is "$(ids 400002 1)" miss "the entry expired after recsys.cache_ttl"

# --- invalidation after commit, not after rollback
put 400003 1 "1,2"
i0=$(metric invalidated)
out=$(psql -X -q -v ON_ERROR_STOP=1 -tA <<EOF 2>&1
BEGIN;
SELECT recsys.cache_debug_invalidate('{400003,400998}');
$GETSQL(400003, 1);
\! redis-cli -h 127.0.0.1 -p $REDIS_PORT EXISTS $(key 400003) > $FX/inside
COMMIT;
EOF
)
is "$(echo $out)" "1,2" "inside the transaction the entry is still served"
is "$(cat "$FX/inside")" 1 "inside the transaction the key is still in Redis"
is "$(rcli EXISTS "$(key 400003)")" 0 "after COMMIT the key is gone"
is "$(ids 400003 1)" miss "after COMMIT: a miss"
is "$(delta invalidated "$i0")" 2 "invalidated counts the keys of the DEL batch"

put 400004 1 "3,4"
psql -X -q -v ON_ERROR_STOP=1 -tA >/dev/null 2>&1 <<EOF
BEGIN;
SELECT recsys.cache_debug_invalidate('{400004}');
ROLLBACK;
EOF
is "$(ids 400004 1)" "3,4" "after ROLLBACK the entry is still there"
psql -X -q -tA >/dev/null 2>&1 <<EOF
BEGIN;
SELECT recsys.cache_debug_invalidate('{400004}');
SELECT 1 / 0;
COMMIT;
EOF
is "$(ids 400004 1)" "3,4" "after a failed transaction the entry is still there"
is "$(delta invalidated "$i0")" 2 "nothing invalidated by the aborted transactions"

# --- namespace bumps
put 400005 1 "7"
ns0=$(ns); b0=$(metric namespace_bumps)
out=$(psql -X -q -v ON_ERROR_STOP=1 -tA <<EOF 2>&1
BEGIN;
SELECT recsys.cache_debug_invalidate_all();
$GETSQL(400005, 1);
COMMIT;
$GETSQL(400005, 1);
EOF
)
is "$(echo $out)" "7 miss" "invalidate_all: served inside the transaction, a miss after COMMIT"
is "$(ns) $(delta namespace_bumps "$b0")" "$((ns0 + 1)) 1" "the namespace counter was bumped once"
put 400006 1 "8"
out=$(psql -X -q -v ON_ERROR_STOP=1 -tA <<EOF 2>&1
$GETSQL(400006, 1);
\! redis-cli -h 127.0.0.1 -p $REDIS_PORT INCR recsys:$DBOID:ns > /dev/null
SELECT pg_sleep(1.3);
$GETSQL(400006, 1);
EOF
)
is "$(echo $out)" "8 miss" "a backend that had read the namespace sees a bump within a second or two"
ns1=$(ns)
users=$(seq -s, 410001 420001)
psql_val "SELECT recsys.cache_debug_invalidate('{$users}')" >/dev/null
is "$(ns)" "$((ns1 + 1))" "invalidating more than 10,000 users bumps the namespace instead"

# --- corrupt values
U=400007
c0=$(metric corrupt); m0=$(metric misses)
rcli SET "$(key $U)" $'RSC1 400007 5 2\n1 2.5 e 3:abc\n2 1 l N\n' >/dev/null
is "$(ids $U 5)" "1,2" "a value written by hand in the format is a hit"
bad=(
    'garbage'
    $'RSC1 400007 5 2\n1 2.5 e 3:abc\n'
    $'RSC1 400007 5 1\n1 2.5 e 3:abc\nextra'
    $'RSC1 400007 5 1\n1 2.5 e 9:abc\n'
    $'RSC1 400007 5 1\nx 2.5 e 3:abc\n'
    $'RSC1 400007 5 1\n1 nan e 3:abc\n'
    $'RSC1 400007 5 1\n1 2.5 E 3:abc\n'
    $'RSC1 400007 5 1\n1 2.5 e 2:\xff\xfe\n'
    $'RSC1 400007 5 101\n'
    $'RSC1 400008 5 1\n1 2.5 e 3:abc\n'
    $'RSC1 400007 5 -1\n'
    $'RSC1 99999999999999999999 5 0\n'
)
wrong=""
for v in "${bad[@]}"; do
    rcli SET "$(key $U)" "$v" >/dev/null
    got=$(ids $U 5)
    [ "$got" = miss ] || wrong="$wrong [$v]->$got"
done
is "$wrong" "" "every corrupt value is a miss (${#bad[@]} kinds)"
is "$(delta corrupt "$c0") $(delta misses "$m0")" "${#bad[@]} ${#bad[@]}" "each counted as corrupt and as a miss"
like "$(metric last_error)" "corrupt cache entry for user $U" "last_error names the corrupt entry"
# every truncation of a valid value is a miss
good=$'RSC1 400007 5 2\n1 2.5 e 3:abc\n2 1 l N\n'
wrong=""
for ((i = 0; i < ${#good}; i++)); do
    rcli SET "$(key $U)" "${good:0:i}" >/dev/null
    got=$(ids $U 5)
    [ "$got" = miss ] || wrong="$wrong $i:$got"
done
is "$wrong" "" "every truncation of a valid value is a miss (${#good} lengths)"
e0=$(metric errors)
rcli DEL "$(key $U)" >/dev/null; rcli RPUSH "$(key $U)" x >/dev/null
is "$(ids $U 5)" miss "a key of another type: a miss"
is "$(delta errors "$e0") $(metric state)" "1 up" "the error reply is counted, and is no reason to back off"

# --- Redis hanging: the timeout, then the shared backoff
put 400010 1 "11,12"
e0=$(metric errors); k0=$(metric backoff_skips); m0=$(metric misses)
rcli CLIENT PAUSE 9000 ALL >/dev/null
t0=$(date +%s.%N)
answers=""; warnings=0
for i in $(seq 20); do
    got=$(PGOPTIONS="-c recsys.redis_timeout=2000" psql -X -q -tA -c "$GETSQL(400010, 1)" 2>"$FX/err") || got="failed"
    answers="$answers $got"
    warnings=$((warnings + $(grep -c 'WARNING:  recommendation cache bypassed' "$FX/err")))
done
t1=$(date +%s.%N)
elapsed=$(echo "$t1 - $t0" | bc)
diag "20 calls in $elapsed s with Redis paused (recsys.redis_timeout 2 s)"
is "$(echo $answers | tr ' ' '\n' | sort -u | tr '\n' ' ')" "miss " "Redis hanging: all 20 calls answer (a miss)"
ok $(echo "$elapsed < 20" | bc | grep -q 1; echo $?) "20 backends took far less than 20 timeouts (${elapsed}s < 20s of 40s)"
skips=$(delta backoff_skips "$k0")
ok $([ "$skips" -ge 10 ]; echo $?) "most calls skipped Redis thanks to the shared backoff ($skips of 20)"
ok $([ "$(delta errors "$e0")" -ge 1 ]; echo $?) "the timeouts are counted as errors"
is "$(delta misses "$m0")" 20 "every call counted as a miss"
is "$warnings" 1 "one WARNING for the outage, not one per call"
like "$(metric state)" '^down until [0-9]{4}-' "state: down until ..."
like "$(metric last_error)" 'Resource temporarily unavailable|timed out|timeout' "last_error tells the timeout"
# the pause ends 9 s after it began: the cache serves hits again by itself
wait_for 25 bash -c "psql -X -q -tA -c \"$GETSQL(400010, 1)\" 2>/dev/null | grep -qx '11,12'"
ok $? "after the pause the cache hits again"
is "$(metric state)" up "state: up again"
is "$(delta invalidations_lost "$l0")" 0 "no invalidation lost so far"

# --- Redis stopped
put 400011 1 "13"
"$STACK" stop redis >/dev/null
e0=$(metric errors); k0=$(metric backoff_skips)
t0=$(date +%s.%N)
answers=""; warnings=0
for i in $(seq 20); do
    got=$(PGOPTIONS="-c recsys.redis_timeout=2000" psql -X -q -tA -c "$GETSQL(400011, 1)" 2>"$FX/err") || got="failed"
    answers="$answers $got"
    warnings=$((warnings + $(grep -c 'WARNING:  recommendation cache bypassed' "$FX/err")))
done
elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
diag "20 calls in $elapsed s with Redis stopped"
is "$(echo $answers | tr ' ' '\n' | sort -u | tr '\n' ' ')" "miss " "Redis stopped: all 20 calls answer (a miss)"
ok $(echo "$elapsed < 20" | bc | grep -q 1; echo $?) "and fast (${elapsed}s)"
ok $([ "$(delta errors "$e0")" -ge 1 ] && [ "$(delta backoff_skips "$k0")" -ge 1 ]; echo $?) "errors and backoff skips counted"
is "$warnings" 1 "one WARNING for this outage"
out=$(psql -X -q -v ON_ERROR_STOP=1 -tA 2>&1 <<EOF
SELECT recsys.cache_debug_put(400012, 1, '{1}');
BEGIN;
SELECT recsys.cache_debug_invalidate('{400011}');
COMMIT;
SELECT 'committed';
EOF
)
like "$out" "committed" "put and a commit with pending invalidations succeed while Redis is down"
unlike "$out" "ERROR" "no error raised"
is "$(delta invalidations_lost "$l0")" 1 "the commit's invalidations are counted as lost"
"$STACK" start redis >/dev/null
# the stack's Redis keeps nothing across a restart: store again once the backoff expires
wait_for 25 bash -c "psql -X -q -tA -c \"SELECT recsys.cache_debug_put(400011, 1, '{13}')\" -c \"$GETSQL(400011, 1)\" 2>/dev/null | grep -qx 13"
ok $? "after Redis is back the client reconnects and the cache hits again"
is "$(metric state)" up "state: up"

# --- the password comes from the secrets file (redis_password)
PW="pw-$RANDOM-$RANDOM"
ORIG_SECRETS=$(psql_val "SHOW recsys.secrets_file")
SECRETS="$FX/secrets"
{ [ -n "$ORIG_SECRETS" ] && cat "$ORIG_SECRETS"; echo "redis_password = $PW"; } > "$SECRETS"
chown "$(stat -c %U "$PGDATA_DIR")" "$SECRETS"; chmod 0600 "$SECRETS"
cleanup_password() {
    psql -X -qtA -c "ALTER SYSTEM RESET recsys.secrets_file" -c "SELECT pg_reload_conf()" >/dev/null 2>&1
    REDISCLI_AUTH=$PW rcli CONFIG SET requirepass "" >/dev/null 2>&1
    unset REDISCLI_AUTH
}
trap 'cleanup_password; cleanup' EXIT
rcli CONFIG SET requirepass "$PW" >/dev/null
export REDISCLI_AUTH=$PW
e0=$(metric errors)
is "$(psql_val "SELECT recsys.cache_debug_put(400020, 1, '{21}')" >/dev/null; ids 400020 1)" miss \
   "Redis asks for a password the server does not have: a miss"
ok $([ "$(delta errors "$e0")" -ge 2 ]; echo $?) "the refusals (NOAUTH) are counted as errors"
psql -X -qtA -c "ALTER SYSTEM SET recsys.secrets_file = '$SECRETS'" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 10 bash -c "[ \"\$(psql -X -qtA -c 'SHOW recsys.secrets_file')\" = '$SECRETS' ]"
put 400020 1 "21"
is "$(ids 400020 1)" 21 "with redis_password in recsys.secrets_file the cache works"
is "$(rcli EXISTS "$(key 400020)")" 1 "the entry is in Redis"
unlike "$(psql_val "SELECT string_agg(value, ' ') FROM recsys.status WHERE component = 'cache'") $(psql_val "SELECT string_agg(detail, ' ') FROM recsys_health()")" \
   "$PW" "the password shows nowhere in recsys.status or recsys_health()"
cleanup_password

done_testing
