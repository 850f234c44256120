/*
 * recsys install script, part 00: the schema and the tables every module shares.
 *
 * The current version's install script (sql/recsys--<default_version>.sql) is built by
 * the Makefile from the files of sql/install/ in name order, one file per concern
 * (TimescaleDB builds its script the same way), so that each module keeps its SQL
 * beside the others without conflicts.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION recsys" to load this file. \quit

CREATE SCHEMA recsys;
COMMENT ON SCHEMA recsys IS 'recsys: catalogue, ratings, pipeline state and derived tables';

/* The movie catalogue, loaded by recsys_load_movies(). */
CREATE TABLE recsys.movies (
	movie_id	bigint PRIMARY KEY CHECK (movie_id > 0),
	title		text NOT NULL,
	year		int,
	genres		text[] NOT NULL DEFAULT '{}',
	loaded_at	timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('recsys.movies', '');

/*
 * One row per user and movie: the latest rating, derived from the archive by
 * recsys_aggregate() (see part 30).  Duplicate event ids are dropped first; then the
 * latest ts wins, ties to the later position in the same log partition, else to the
 * higher event id.  log_stream and log_pos say where the winning event sits in the
 * log (recsys.aggregate_streams; the position is the object's first offset plus the
 * line, which orders a partition as its offsets do); tied holds the other events of
 * the same ts as (event_id, stream, pos, rating * 2) quadruples, almost always NULL,
 * so that an incremental run resolves a tie exactly as a rebuild would.
 */
CREATE TABLE recsys.ratings (
	user_id		bigint NOT NULL,
	movie_id	bigint NOT NULL,
	rating		numeric(2,1) NOT NULL CHECK (rating BETWEEN 0.5 AND 5),
	rated_at	timestamptz NOT NULL,
	event_id	bigint NOT NULL,
	log_stream	int NOT NULL DEFAULT 0,
	log_pos		bigint NOT NULL DEFAULT 0,
	tied		bigint[],
	PRIMARY KEY (user_id, movie_id)
);

/*
 * The embedded event log, used when recsys.kafka_brokers is unset: producers insert
 * events here, the archiver takes committed rows in id order (FOR UPDATE SKIP LOCKED)
 * and deletes them in the same transaction as their manifest row. It counts as topic
 * 'queue', partition 0. Offsets are not row ids: a row that commits late may carry a
 * lower id, so the archiver numbers rows in the order it archives them (see
 * recsys.archive_offsets) and object ranges never overlap.
 */
CREATE TABLE recsys.event_queue (
	id			bigserial PRIMARY KEY,
	key			text NOT NULL,
	value		text NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('recsys.event_queue', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.event_queue_id_seq', '');

/* One row per component: is it configured, does it answer, and what a human should know. */
CREATE FUNCTION recsys_health(
	OUT component text, OUT configured bool, OUT ok bool, OUT detail text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'recsys_health'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION recsys_health() IS 'health of postgres, kafka, s3, redis and llm: configured, ok, detail';

/*
 * Permissions (README "Permission model"): nothing that writes, reads server files or
 * reads other users' data is executable by PUBLIC, so every function of the extension
 * is revoked from PUBLIC where it is created and a deployment grants what each role
 * needs; security definers pin search_path. recsys_health() reveals the configuration
 * (brokers, endpoints): operators and monitoring only.
 */
REVOKE ALL ON FUNCTION recsys_health() FROM PUBLIC;
