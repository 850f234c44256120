/* recsys 0.2.0 -> 0.3.0: the ranking in C, with the catalogue kept per backend. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION recsys UPDATE TO '0.3.0'" to load this file. \quit

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
