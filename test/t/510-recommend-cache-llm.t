#!/usr/bin/env bash
# 510-recommend-cache-llm.t: recsys_recommend() with the stack's Redis cache and LLM
# test server, on the fixture of 500-recommend.t: a hit after a miss (source 'cache'),
# the filters applied on a hit, a stale entry not served after an aggregate, Redis
# stopped mid-run (calls still answered, the cache used again once it is back), the
# LLM's re-ranking (source 'llm', the test server's reversed order and reasons) and
# every LLM fault falling back to the engine's list, counted; the test server must
# have rejected no request.
source "$(dirname "$0")/3-aggregate-lib.bash"

CONTROL=${LLM_ENDPOINT%/v1}/control
llm_mode() { curl -fsS -X POST -H 'Content-Type: application/json' -d "{\"mode\": \"$1\"${2:+, $2}}" "$CONTROL" >/dev/null; }
llm_restore() { llm_mode ok 2>/dev/null || true; agg_restore; }
trap llm_restore EXIT

agg_isolate
put_recommend_fixture
is "$(aggregate "${NB[@]}")" "1 12 5 4" "the fixture is aggregated"
ENGINE=(-c "SET recsys.recommend_popularity_weight = 0" -c "SET recsys.recommend_genre_weight = 0"
        -c "SET recsys.recommend_half_life = 0" -c "SET recsys.recommend_neutral = 2.5")
# (Redis going down is one WARNING by design: not part of the answers compared here)
cached() { psql -X -qtA -F '|' "${ENGINE[@]}" -c "SET client_min_messages = error" -c "SET recsys.llm_endpoint = ''" -c "$1" 2>&1; }
llm() { psql -X -qtA -F '|' "${ENGINE[@]}" -c "SET recsys.redis_url = ''" -c "SET recsys.llm_timeout = '2s'" -c "$1" 2>&1; }
status() { psql_val "SELECT value FROM recsys.status WHERE component = '$1' AND metric = '$2'"; }
LIST="SELECT string_agg(movie_id || ':' || source, ' ' ORDER BY rank) FROM recsys_recommend"

# ---- the cache ----------------------------------------------------------------
hits=$(status cache hits)
is "$(cached "$LIST(5, 3)")" "3:engine 11:engine 2:engine" "a miss: the engine's list"
is "$(cached "$LIST(5, 3)")" "3:cache 11:cache 2:cache" "the same call again: a hit, the same list"
is "$(status cache hits)" "$((hits + 1))" "recsys.status counts the hit"
is "$(cached "SELECT reason FROM recsys_recommend(5, 1)")" "Because you rated Toy Story (1995) 4.5/5" "a hit keeps the reasons"
is "$(cached "$LIST(5, 2, exclude => '{3}')")" "11:cache 2:cache" "exclude applied on a hit"
is "$(cached "$LIST(5, 2, genres => '{Comedy}')")" "3:cache 11:cache" "genres applied on a hit"
is "$(cached "$LIST(5, 2, genres => '{Drama}')")" "11:engine 29:engine" \
    "a filter the cached list cannot satisfy: the engine ranks with it"
psql_val "SELECT recsys_rate(5, 11, 2.0)" >/dev/null
is "$(cached "$LIST(5, 2)")" "3:cache 2:cache" "a rating made a moment ago is left out of a hit"

# a stale entry: the aggregate changes user 5's profile version
echo "20 5 2 1.0 60" | put_events
aggregate "${NB[@]}" >/dev/null
stale=$(status cache stale)
is "$(cached "$LIST(5, 2)")" "3:engine 29:engine" "after an aggregate the entry is stale: not served"
ok $([ "$(status cache invalidated)" -gt 0 ]; echo $?) "the aggregate's commit invalidated the entry (counted)"

# Redis stopped mid-run, then back
is "$(cached "$LIST(5, 1)")" "3:cache" "cached again"
"$STACK" stop redis >/dev/null
t0=$(date +%s)
out=""; for i in 1 2 3 4 5; do out="$out$(cached "$LIST(5, 1)") "; done
t1=$(date +%s)
is "$out" "3:engine 3:engine 3:engine 3:engine 3:engine " "Redis down: every call is answered by the engine"
like "$(status cache state)" "^down" "recsys.status says the cache is down"
ok $([ $((t1 - t0)) -lt 15 ]; echo $?) "five calls with Redis down took $((t1 - t0)) s (bounded by the timeout and the shared backoff)"
"$STACK" start redis >/dev/null
wait_for 30 bash -c "psql -X -qtA -c \"SET recsys.llm_endpoint = ''\" -c \"SELECT source FROM recsys_recommend(5, 1)\" | grep -qx cache"
ok $? "once Redis is back the cache is used again, by itself"

# ---- the LLM ------------------------------------------------------------------
curl -fsS -X POST -H 'Content-Type: application/json' -d '{"mode": "ok", "reset_stats": true}' "$CONTROL" >/dev/null
calls=$(status llm calls)
engine=$(psql -X -qtA "${ENGINE[@]}" -c "SET recsys.redis_url = ''" -c "SET recsys.llm_endpoint = ''" \
         -c "SELECT string_agg(movie_id::text, ' ' ORDER BY rank) FROM recsys_recommend(4, 2)")
reversed=$(echo "$engine" | awk '{ for (i = NF; i > 0; i--) printf "%s:llm%s", $i, (i > 1 ? " " : "") }')
like "$engine" '^[0-9]+ [0-9]+$' "user 4's engine list: $engine"
is "$(llm "$LIST(4, 2)")" "$reversed" "the LLM re-ranks the engine's candidates (the test server reverses them)"
like "$(llm "SELECT reason FROM recsys_recommend(4, 1)")" "^Picked by the test LLM: " "with the model's reason"
is "$(status llm calls)" "$((calls + 2))" "recsys.status counts the calls"
last=$(curl -fsS "${LLM_ENDPOINT%/v1}/control/last")
like "$last" "\"candidates\": \\[${engine// /, }\\]" "the request carried the engine's candidates, best first"
like "$last" 'Jumanji' "and the user's top movies"
eng_list=$(echo "$engine" | sed 's/\([0-9]*\)/\1:engine/g')

# (the counters live as long as the server: compare what this suite added)
ft0=$(status llm failures_timeout) fh0=$(status llm 'failures_http error') fb0=$(status llm 'failures_bad reply')
for mode in 429 500 badjson nochoices unknown empty; do
    llm_mode "$mode"
    is "$(llm "$LIST(4, 2)")" "$eng_list" "LLM mode $mode: the engine's list"
done
llm_mode slow '"delay": 5'
t0=$(date +%s%N)
is "$(llm "$LIST(4, 2)")" "$eng_list" "LLM too slow: the engine's list after recsys.llm_timeout"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
ok $([ "$ms" -lt 4500 ]; echo $?) "the slow LLM was given up on within the timeout (${ms} ms for a 2 s timeout)"
ok $([ $(( $(status llm failures_timeout) - ft0 )) -ge 1 ] && [ $(( $(status llm 'failures_http error') - fh0 )) -ge 2 ] &&
     [ $(( $(status llm 'failures_bad reply') - fb0 )) -ge 3 ]; echo $?) \
    "recsys.status counts the timeout, the HTTP errors and the bad replies"
llm_mode invent
dropped=$(status llm dropped_unknown_ids)
like "$(llm "$LIST(4, 2)")" "llm" "invented ids are dropped, the valid picks kept"
ok $([ "$(status llm dropped_unknown_ids)" -gt "$dropped" ]; echo $?) "and the dropped ids are counted"
llm_mode ok
stats=$(curl -fsS "${LLM_ENDPOINT%/v1}/control/stats")
like "$stats" '"rejected": 0' "the LLM test server rejected no request recsys sent"

done_testing
