/*
 * recsys install script, part 41: recommendations.
 *
 * recsys_recommend(user_id, n, genres, exclude) ranks in the database from the item
 * neighbours of the movies the user rated (weighted by how much they liked each, and
 * by how recently relative to their own latest rating), the best Bayesian averages of
 * their favourite genres and well-rated popular movies; the deep list is cached in
 * Redis when recsys.redis_url is set (part 40) and re-ranked by an LLM when
 * recsys.llm_endpoint is set.  recsys_similar(movie_id, n) is "more like this".
 */

/*
 * Ratings made with recsys_rate() that no aggregate has included yet: written in the
 * rating's transaction (the relay deletes outbox rows as it sends them), read by every
 * recsys_recommend() call, deleted by the aggregate that includes them.  So a movie a
 * user just rated never comes back, whatever the cache holds.
 */
CREATE TABLE recsys.recent_ratings (
	user_id		bigint NOT NULL,
	movie_id	bigint NOT NULL,
	rating		numeric(2,1) NOT NULL,
	rated_at	timestamptz NOT NULL,
	event_id	bigint NOT NULL,
	PRIMARY KEY (user_id, movie_id, event_id)
);
SELECT pg_catalog.pg_extension_config_dump('recsys.recent_ratings', '');

/* the popular movies, for cold users and as a prior */
CREATE INDEX ON recsys.movie_stats (n_ratings DESC, movie_id);

/*
 * The best Bayesian averages of each genre, best first (100 a genre), rewritten by
 * every aggregate with the movie statistics: the ranking reads a user's favourite
 * genres' candidates, and the candidates of a genre filter, from here.
 */
CREATE TABLE recsys.genre_top (
	genre		text NOT NULL,
	rank		int NOT NULL,
	movie_id	bigint NOT NULL,
	bayes_avg	float8 NOT NULL,
	PRIMARY KEY (genre, rank)
);

CREATE FUNCTION recsys_recommend(user_id bigint, n int DEFAULT 5, genres text[] DEFAULT NULL,
	exclude bigint[] DEFAULT NULL)
RETURNS TABLE (rank int, movie_id bigint, title text, genres text[], score float8,
	reason text, source text)
AS 'MODULE_PATHNAME', 'recsys_recommend'
LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION recsys_recommend(bigint, int, text[], bigint[]) IS
	'n movies for a user, best first, each with a reason; source: cache, engine or llm';
REVOKE ALL ON FUNCTION recsys_recommend(bigint, int, text[], bigint[]) FROM PUBLIC;

CREATE FUNCTION recsys_similar(movie_id bigint, n int DEFAULT 10)
RETURNS TABLE (rank int, movie_id bigint, title text, similarity float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
	SELECT nb.rank, nb.neighbor_id, m.title, nb.similarity
	  FROM recsys.item_neighbors nb
	  JOIN recsys.movies m ON m.movie_id = nb.neighbor_id
	 WHERE nb.movie_id = $1 AND nb.rank <= $2
	 ORDER BY nb.rank
$$;
COMMENT ON FUNCTION recsys_similar(bigint, int) IS
	'The movie''s item neighbours, most similar first ("more like this")';
REVOKE ALL ON FUNCTION recsys_similar(bigint, int) FROM PUBLIC;

/* The LLM's part of recsys.status: calls, failures by kind, ids dropped (shared memory). */
CREATE FUNCTION recsys.llm_status()
RETURNS TABLE (component text, metric text, value text)
AS 'MODULE_PATHNAME', 'recsys_llm_status'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION recsys.llm_status() FROM PUBLIC;

/*
 * Users removed with recsys_forget(), and when: every event of such a user up to that
 * time is dropped by the aggregate, so neither a later run nor a rebuild brings their
 * ratings back (the tombstone in the event log says the same for a rebuild elsewhere).
 */
CREATE TABLE recsys.forgotten_users (
	user_id		bigint PRIMARY KEY,
	forgotten_at timestamptz NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('recsys.forgotten_users', '');

/* Drop a user's cached list when the transaction commits (recsys_forget's helper). */
CREATE FUNCTION recsys.forget_cache(user_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'recsys_forget_cache'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION recsys.forget_cache(bigint) FROM PUBLIC;

/*
 * recsys_forget(user_id): the user's ratings, profile, recent ratings and cached list
 * are gone when the caller commits; the movies' statistics lose those ratings at once
 * (their Bayesian averages follow at the next aggregate, as the neighbours do at their
 * next refresh); a tombstone event goes to the event log through the outbox.  Returns
 * the ratings removed.
 */
CREATE FUNCTION recsys_forget(user_id bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	removed bigint;
	eid bigint;
	ts bigint := floor(extract(epoch FROM now()))::bigint;
BEGIN
	WITH gone AS (
		DELETE FROM recsys.ratings r WHERE r.user_id = recsys_forget.user_id
		RETURNING r.movie_id, (r.rating * 2)::int AS halves),
	per_movie AS (
		SELECT g.movie_id, count(*) AS n, sum(g.halves) AS h, count(*) FILTER (WHERE g.halves >= 8) AS liked
		  FROM gone g GROUP BY g.movie_id),
	upd AS (
		UPDATE recsys.movie_stats s
		   SET n_ratings = s.n_ratings - p.n, rating_halves = s.rating_halves - p.h,
			   n_liked = s.n_liked - p.liked,
			   mean_rating = CASE WHEN s.n_ratings > p.n
								  THEN (s.rating_halves - p.h) / 2.0 / (s.n_ratings - p.n) ELSE 0 END,
			   updated_at = now()
		  FROM per_movie p WHERE s.movie_id = p.movie_id
		RETURNING 1)
	SELECT coalesce(sum(n), 0) INTO removed FROM per_movie;
	DELETE FROM recsys.movie_stats WHERE n_ratings <= 0;
	DELETE FROM recsys.user_profiles p WHERE p.user_id = recsys_forget.user_id;
	DELETE FROM recsys.recent_ratings r WHERE r.user_id = recsys_forget.user_id;
	INSERT INTO recsys.forgotten_users AS f (user_id, forgotten_at)
		VALUES (recsys_forget.user_id, to_timestamp(ts))
		ON CONFLICT ON CONSTRAINT forgotten_users_pkey DO UPDATE SET forgotten_at = excluded.forgotten_at;
	eid := nextval('recsys.rating_event_id_seq');
	INSERT INTO recsys.outbox (event_id, key, value)
		VALUES (eid, recsys_forget.user_id::text,
				format('{"event_id":%s,"user_id":%s,"forget":true,"ts":%s}', eid, recsys_forget.user_id, ts));
	PERFORM recsys.forget_cache(recsys_forget.user_id);
	RETURN removed;
END
$$;
COMMENT ON FUNCTION recsys_forget(bigint) IS
	'Remove a user''s ratings, profile and cached list; a tombstone keeps a rebuild from restoring them';
REVOKE ALL ON FUNCTION recsys_forget(bigint) FROM PUBLIC;

/*
 * The catalogue as the ranking sees it: each backend keeps the movies it has shown
 * (titles, genres, years) and the movie statistics in memory, under a generation
 * number in shared memory.  Any change of recsys.movies (recsys_load_movies or plain
 * SQL) bumps it when it commits, so the next call reads them again.
 */
CREATE FUNCTION recsys.catalogue_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'recsys_catalogue_changed'
LANGUAGE C;
REVOKE ALL ON FUNCTION recsys.catalogue_changed() FROM PUBLIC;
CREATE TRIGGER catalogue_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON recsys.movies
	FOR EACH STATEMENT EXECUTE FUNCTION recsys.catalogue_changed();
