#!/usr/bin/env bash
# 500-recommend.t: recsys_recommend() and recsys_similar() on the hand-checked fixture of
# 300-aggregate.t (in a world of its own): exact rankings and scores from the item
# neighbours (cosine of who rated what), the reasons, a dislike pushing its neighbours
# down, a fresh recsys_rate excluded before any aggregate, the genres and exclude
# filters applied before the cut, cold and unknown users, argument errors; and that
# what a backend keeps between calls (movie statistics, titles) follows every commit
# that changes it: an aggregate, recsys_forget, an edit of recsys.movies.
source "$(dirname "$0")/3-aggregate-lib.bash"

agg_isolate
put_recommend_fixture
is "$(aggregate "${NB[@]}")" "1 12 5 4" "the fixture is aggregated"

# neighbours only: no popularity, no genres, no decay
R=(-c "SET recsys.redis_url = ''" -c "SET recsys.llm_endpoint = ''" -c "SET recsys.recommend_popularity_weight = 0" -c "SET recsys.recommend_genre_weight = 0"
   -c "SET recsys.recommend_half_life = 0" -c "SET recsys.recommend_neutral = 2.5")
rec() { psql -X -qtA -F '|' "${R[@]}" -c "$1" 2>&1; }

is "$(rec "SELECT string_agg(movie_id || '=' || round(score::numeric, 4), ' ' ORDER BY rank) FROM recsys_recommend(5, 5)")" \
    "3=1.7321 11=0.7071 2=0.0000 29=0.0000 32=0.0000" \
    "user 5 (Toy Story 4.5): (4.5 - 2.5) x sim; then a movie with no neighbour link; then unrated catalogue movies"
is "$(rec "SELECT reason FROM recsys_recommend(5, 1)")" "Because you rated Toy Story (1995) 4.5/5" "the reason names the seed"
is "$(rec "SELECT rank || ' ' || title || ' ' || genres::text || ' ' || source FROM recsys_recommend(5, 1)")" \
    "1 Grumpier Old Men, The (1995) {Comedy,Romance} engine" "title, genres and source"
# one backend keeps the titles it has shown: a change of the catalogue by another session,
# then by its own, shows at its next call
T="SELECT title FROM recsys_recommend(5, 1)"
kept=$(psql -X -qtA "${R[@]}" -c "$T" \
    -c "\\! psql -X -qtA -c \"UPDATE recsys.movies SET title = 'Grumpier Old Men (restored)' WHERE movie_id = 3\" >/dev/null" \
    -c "$T" -c "UPDATE recsys.movies SET title = 'Grumpier Old Men, The (1995)' WHERE movie_id = 3" -c "$T" 2>&1)
is "$(tr '\n' '|' <<<"$kept")" "Grumpier Old Men, The (1995)|Grumpier Old Men (restored)|Grumpier Old Men, The (1995)|" \
    "a session shows a title changed by another session, then by itself"
like "$(rec "SELECT reason FROM recsys_recommend(5, 3) WHERE movie_id = 2")" "^Popular and highly rated: 4.0 average from 1 rating$" \
    "a movie only the popularity pool brought has that reason"
is "$(rec "SELECT string_agg(movie_id::text, ' ' ORDER BY rank) FROM recsys_recommend(3, 5)")" "2 29 32 50 100" \
    "a user who rated every linked movie gets the rest of the catalogue"

# a dislike: user 2 rated Grumpier Old Men 1.0 (1.5 below neutral)
is "$(rec "SELECT string_agg(movie_id || '=' || round(score::numeric, 4), ' ' ORDER BY rank) FROM recsys_recommend(2, 2)")" \
    "2=0.0000 11=-0.4356" \
    "a dislike pushes its neighbours down: 0.5 x 0.3536 - 1.5 x 0.4082 < 0, below an unlinked movie"

# a fresh rating, not yet aggregated, never comes back
psql_val "SELECT recsys_rate(5, 3, 4.0)" >/dev/null
is "$(rec "SELECT string_agg(movie_id::text, ' ' ORDER BY rank) FROM recsys_recommend(5, 3)")" "11 2 29" \
    "a movie rated with recsys_rate a moment ago is excluded at once"
is "$(psql_val "SELECT count(*) FROM recsys.recent_ratings WHERE user_id = 5")" 1 "it waits in recsys.recent_ratings"
psql_val "SELECT recsys_archive_sync('30 s')" >/dev/null
# one backend keeps the movie statistics between calls: an unknown user's list (made of
# them alone) before this aggregate, after it in the same session, and in a new session
COLD="SELECT string_agg(movie_id || '=' || round(score::numeric, 4), ' ' ORDER BY rank) FROM recsys_recommend(999, 4)"
cold_before=$(psql -X -qtA -c "SET recsys.redis_url = ''" -c "SET recsys.llm_endpoint = ''" -c "SET recsys.recommend_popularity_weight = 1" -c "$COLD")
kept=$(psql -X -qtA -c "SET recsys.redis_url = ''" -c "SET recsys.llm_endpoint = ''" -c "SET recsys.recommend_popularity_weight = 1" -c "$COLD" \
    -c "SET recsys.neighbors_alpha = 0" -c "SET recsys.neighbors_beta = 0.5" -c "SET recsys.neighbors_shrink = 0" \
    -c "SET recsys.neighbors_min_common = 1" -c "SET recsys.neighbors_refresh = 0" \
    -c "SELECT events FROM recsys_aggregate()" -c "$COLD" 2>&1)
cold_after=$(psql -X -qtA -c "SET recsys.redis_url = ''" -c "SET recsys.llm_endpoint = ''" -c "SET recsys.recommend_popularity_weight = 1" -c "$COLD")
is "$(sed -n 1p <<<"$kept")" "$cold_before" "one session: its first list is a new session's"
ok "$([ "$cold_before" != "$cold_after" ]; echo $?)" "the aggregate changed them (Grumpier Old Men gains a rating): $cold_before -> $cold_after"
is "$(sed -n 3p <<<"$kept")" "$cold_after" "the same session sees them at once after the worker's aggregate commits"
is "$(sed -n 2p <<<"$kept")" 1 "(that aggregate took the fresh rating)"
is "$(psql_val "SELECT count(*) FROM recsys.recent_ratings WHERE user_id = 5") $(psql_val "SELECT rating FROM recsys.ratings WHERE user_id = 5 AND movie_id = 3")" \
    "0 4.0" "the aggregate that includes it moves it to recsys.ratings"
is "$(rec "SELECT string_agg(movie_id::text, ' ' ORDER BY rank) FROM recsys_recommend(5, 3)")" "11 2 29" \
    "and it stays excluded"

# filters, applied before the top is cut
is "$(rec "SELECT string_agg(movie_id::text, ' ' ORDER BY rank) FROM recsys_recommend(5, 2, genres => '{Drama}')")" "11 29" \
    "genres => {Drama}: only Drama movies, still n rows"
is "$(rec "SELECT string_agg(movie_id::text, ' ' ORDER BY rank) FROM recsys_recommend(5, 2, genres => '{Sci-Fi,Crime}')")" "29 32" \
    "genres => {Sci-Fi,Crime}: any of them"
is "$(rec "SELECT string_agg(movie_id::text, ' ' ORDER BY rank) FROM recsys_recommend(5, 2, exclude => '{11}')")" "2 29" \
    "exclude => {11}: not returned, the next one takes its place"

# cold and unknown users: well-rated popular movies
is "$(psql -X -qtA -c "SET recsys.redis_url = ''" -c "SET recsys.llm_endpoint = ''" -c "SET recsys.recommend_popularity_weight = 1" -c "SELECT string_agg(movie_id || '=' || round(score::numeric, 4), ' ' ORDER BY rank) FROM recsys_recommend(999, 4)")" \
    "1=0.7006 3=0.6721 11=0.4727 2=0.3018" \
    "an unknown user: ln(1 + n) / ln(1 + n_max) x bayes_avg / 5 (m = 38 / 11; Grumpier Old Men now has 4 ratings)"
is "$(psql -X -qtA -c "SET recsys.redis_url = ''" -c "SET recsys.llm_endpoint = ''" -c "SELECT reason FROM recsys_recommend(999, 1)")" "Popular and highly rated: 3.6 average from 4 ratings" \
    "with the popularity reason"

# more like this
is "$(psql_val "SELECT string_agg(rank || ':' || movie_id || ':' || title || ':' || round(similarity::numeric, 4), ' | ' ORDER BY rank) FROM recsys_similar(1, 5)")" \
    "1:3:Grumpier Old Men, The (1995):1.0000 | 2:11:American President, The (1995):0.3536" \
    "recsys_similar: the item neighbours with titles (the same four raters: 4 / sqrt(4 x 4))"
is "$(psql_val "SELECT count(*) FROM recsys_similar(11, 1)")" 1 "recsys_similar: n cuts"

# errors
like "$(psql_err "SELECT * FROM recsys_recommend(5, 0)")" "n must be between 1 and 100, not 0" "n = 0 is an error"
like "$(psql_err "SELECT * FROM recsys_recommend(5, 101)")" "n must be between 1 and 100, not 101" "n = 101 is an error"
like "$(psql_err "SELECT * FROM recsys_recommend(NULL)")" "user_id must not be null" "a NULL user is an error"

# forgetting a user: gone at once, and neither a later run nor a rebuild brings them back
before_m1=$(psql_val "SELECT n_ratings FROM recsys.movie_stats WHERE movie_id = 1")
C=(-c "SET recsys.redis_url = ''" -c "SET recsys.llm_endpoint = ''" -c "SET recsys.recommend_popularity_weight = 1")
kept=$(psql -X -qtA "${C[@]}" -c "$COLD" -c "BEGIN" -c "SELECT recsys_forget(3)" -c "$COLD" -c "COMMIT" -c "$COLD" 2>&1)
is "$(sed -n 2p <<<"$kept")" 3 "recsys_forget removes user 3's 3 ratings"
cold_forgot=$(psql -X -qtA "${C[@]}" -c "$COLD")
ok "$([ "$(sed -n 1p <<<"$kept")" != "$cold_forgot" ]; echo $?)" "that changed the movie statistics: $(sed -n 1p <<<"$kept") -> $cold_forgot"
is "$(sed -n 3p <<<"$kept")" "$cold_forgot" "the session that forgets sees its own change before it commits"
is "$(sed -n 4p <<<"$kept")" "$cold_forgot" "and after"
is "$(psql_val "SELECT (SELECT count(*) FROM recsys.ratings WHERE user_id = 3) || ' ' || (SELECT count(*) FROM recsys.user_profiles WHERE user_id = 3)")" \
    "0 0" "their ratings and profile are gone"
is "$(psql_val "SELECT n_ratings FROM recsys.movie_stats WHERE movie_id = 1")" "$((before_m1 - 1))" "and Toy Story's statistics lost their rating"
like "$(psql -X -qtA -c "SET recsys.llm_endpoint = ''" -c "SELECT string_agg(reason, ' | ') FROM recsys_recommend(3, 2)")" "^Popular and highly rated" "user 3 now gets a cold user's list"
psql_val "SELECT recsys_archive_sync('30 s')" >/dev/null
like "$(find "$AGG_ARCHIVE" -name '*.ndjson.gz' -exec zcat {} + | grep -c '"user_id":3,"forget":true')" '^1$' "the tombstone is in the archive"
aggregate "${NB[@]}" >/dev/null
is "$(psql_val "SELECT count(*) FROM recsys.ratings WHERE user_id = 3")" 0 "the next aggregate does not bring them back"
others=$(psql_val "SELECT string_agg(user_id || ':' || movie_id || '=' || rating, ' ' ORDER BY 1, 2) FROM recsys.ratings")
is "$(rebuild "${NB[@]}" >/dev/null; psql_val "SELECT count(*) FROM recsys.ratings WHERE user_id = 3")" 0 "nor a rebuild from the store"
is "$(psql_val "SELECT string_agg(user_id || ':' || movie_id || '=' || rating, ' ' ORDER BY 1, 2) FROM recsys.ratings")" "$others" \
    "the rebuild equals the incremental runs for everyone else"
echo "30 3 2 4.0 $(( $(date +%s) + 100 ))" | put_events
aggregate "${NB[@]}" >/dev/null
is "$(psql_val "SELECT string_agg(movie_id || '=' || rating, ' ') FROM recsys.ratings WHERE user_id = 3")" "2=4.0" \
    "a rating made after the forget counts"

# a long statement: a backend that reloads the statistics in the middle of one (an
# aggregate committed after the statement began) reads them as they are now, not as
# the statement's older snapshot had them, so its next statement is not served stale
ok_runs=$(psql_val "SELECT count(*) FROM recsys.aggregate_runs WHERE status = 'succeeded'")
echo "41 8 11 5.0 $(( $(date +%s) + 200 ))" | put_events
LONG="SELECT count(*) FROM (VALUES (1), (2)) s(g)
  CROSS JOIN LATERAL (SELECT CASE WHEN s.g = 2 THEN pg_temp.wait_runs($((ok_runs + 1))) ELSE 0 END AS w) w
  CROSS JOIN LATERAL recsys_recommend(999 + w.w * 0, 4)"
( wait_for 30 psql -X -qtA -c "SELECT 1/count(*) FROM pg_stat_activity WHERE query LIKE '%(VALUES (1), (2)) s(g)%' AND state = 'active' AND pid <> pg_backend_pid()" \
    && aggregate "${NB[@]}" >/dev/null ) &
agg_pid=$!
kept=$(psql -X -qtA "${C[@]}" -c "CREATE FUNCTION pg_temp.wait_runs(n bigint) RETURNS int LANGUAGE plpgsql AS \$\$
        BEGIN FOR i IN 1..600 LOOP
            IF (SELECT count(*) FROM recsys.aggregate_runs WHERE status = 'succeeded') >= n THEN RETURN 1; END IF;
            PERFORM pg_sleep(0.1); END LOOP; RETURN 0; END \$\$" \
    -c "$COLD" -c "$LONG" -c "$COLD" 2>&1)
wait "$agg_pid"
cold_new=$(psql -X -qtA "${C[@]}" -c "$COLD")
is "$(sed -n 2p <<<"$kept")" 8 "the long statement ran its 2 calls while the aggregate committed"
ok "$([ "$(sed -n 1p <<<"$kept")" != "$cold_new" ]; echo $?)" "that aggregate changed the statistics: $(sed -n 1p <<<"$kept") -> $cold_new"
is "$(sed -n 3p <<<"$kept")" "$cold_new" "the statement after it sees them as a new session does"

done_testing
