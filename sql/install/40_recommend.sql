/*
 * recsys install script, part 40: recommendations (the ranking, its Redis cache).
 *
 * The cache (src/cache.c) keeps one entry per user in Redis, the deep ranked list and
 * the profile version it was ranked from, under recsys:<database oid>:<namespace>:rec:
 * <user_id>; it is dropped after an aggregate touching the user commits, and a hit is
 * served only while its version is the user's current one.
 */

-- cache

/*
 * The cache's part of recsys.status (part 90): counters and state kept in shared
 * memory. Reading recsys.status takes EXECUTE on it (README "Permission model").
 */
CREATE FUNCTION recsys.cache_status()
RETURNS TABLE (component text, metric text, value text)
AS 'MODULE_PATHNAME', 'recsys_cache_status'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION recsys.cache_status() FROM PUBLIC;

/*
 * Test hooks of test/t/400-cache.t (superusers only): store, read and invalidate a
 * list through the cache's C interface, as recsys_recommend does.
 */
CREATE FUNCTION recsys.cache_debug_put(user_id bigint, version bigint, movie_ids bigint[],
									   reasons text[] DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'recsys_cache_debug_put'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION recsys.cache_debug_put(bigint, bigint, bigint[], text[]) IS
	'Test hook: cache a list of these movies for the user at this profile version';
REVOKE ALL ON FUNCTION recsys.cache_debug_put(bigint, bigint, bigint[], text[]) FROM PUBLIC;

CREATE FUNCTION recsys.cache_debug_get(user_id bigint, version bigint)
RETURNS TABLE (movie_id bigint, score float8, source text, reason text)
AS 'MODULE_PATHNAME', 'recsys_cache_debug_get'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION recsys.cache_debug_get(bigint, bigint) IS
	'Test hook: the user''s cached list if its profile version is this one; no rows on a miss';
REVOKE ALL ON FUNCTION recsys.cache_debug_get(bigint, bigint) FROM PUBLIC;

CREATE FUNCTION recsys.cache_debug_invalidate(user_ids bigint[])
RETURNS void
AS 'MODULE_PATHNAME', 'recsys_cache_debug_invalidate'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION recsys.cache_debug_invalidate(bigint[]) IS
	'Test hook: drop these users'' cached lists when the transaction commits';
REVOKE ALL ON FUNCTION recsys.cache_debug_invalidate(bigint[]) FROM PUBLIC;

CREATE FUNCTION recsys.cache_debug_invalidate_all()
RETURNS void
AS 'MODULE_PATHNAME', 'recsys_cache_debug_invalidate_all'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION recsys.cache_debug_invalidate_all() IS
	'Test hook: bump the cache namespace (every cached list) when the transaction commits';
REVOKE ALL ON FUNCTION recsys.cache_debug_invalidate_all() FROM PUBLIC;

-- end of cache
