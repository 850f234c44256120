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
