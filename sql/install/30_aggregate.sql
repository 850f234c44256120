/*
 * recsys install script, part 30: aggregation (archive -> ratings, user profiles,
 * movie statistics, item neighbours).
 *
 * recsys_aggregate() hands the run to a background worker ("recsys aggregate"), which
 * reads the archived objects that are not yet aggregated (recsys.aggregate_objects is
 * the watermark: one row per object consumed or quarantined), and updates every
 * derived table in one transaction: readers see the whole run or none of it, and
 * never wait on it (it only inserts, updates and deletes rows).  Each run is
 * recorded in recsys.aggregate_runs, a failed one too.
 */

/* Where a rating's event sits in the log: one id per (topic, partition). */
CREATE TABLE recsys.aggregate_streams (
	stream		int PRIMARY KEY,
	topic		text NOT NULL,
	partition	int NOT NULL,
	UNIQUE (topic, partition)
);

/* The watermark: every archived object the aggregate has consumed or set aside. */
CREATE TABLE recsys.aggregate_objects (
	object_key	text PRIMARY KEY,
	bytes		bigint NOT NULL,			-- the object's size when it was read
	events		bigint NOT NULL,			-- events read from it (0 when quarantined)
	status		text NOT NULL CHECK (status IN ('aggregated', 'quarantined')),
	error		text,						-- why it was quarantined
	run_id		bigint NOT NULL,
	at			timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON recsys.aggregate_objects (status) WHERE status = 'quarantined';

/* Every run of recsys_aggregate(), the failed ones too (newest 1000 kept). */
CREATE TABLE recsys.aggregate_runs (
	run_id		bigserial PRIMARY KEY,
	rebuild		boolean NOT NULL,
	status		text NOT NULL DEFAULT 'running'
				CHECK (status IN ('running', 'succeeded', 'failed')),
	started_at	timestamptz NOT NULL DEFAULT now(),
	finished_at	timestamptz,
	objects		bigint,						-- objects read
	quarantined	bigint,						-- objects set aside
	events		bigint,						-- events read (duplicates included)
	duplicates	bigint,						-- events dropped as duplicate event ids
	ratings_changed bigint,					-- (user, movie) rows inserted or changed
	users		bigint,						-- user profiles updated
	movies		bigint,						-- movie statistics updated
	neighbors_refreshed boolean,
	seconds		float8,
	peak_memory_bytes bigint,				-- the worker's peak resident memory
	submitted_by text NOT NULL DEFAULT current_user,
	worker_pid	int,
	error		text
);
SELECT pg_catalog.pg_extension_config_dump('recsys.aggregate_runs', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.aggregate_runs_run_id_seq', '');

/*
 * One row per user: favourite genres (with their scores), top-rated movies, count and
 * mean, and a version bumped by every run that changed the profile (the
 * recommendation cache compares it).  The genre_* arrays hold the user's count and
 * rating sum (in half stars) per genre, so that an incremental run updates a profile
 * from the new ratings alone; top_* the sort keys of top_movies.
 */
CREATE TABLE recsys.user_profiles (
	user_id		bigint PRIMARY KEY,
	favorite_genres text[] NOT NULL,
	favorite_scores float8[] NOT NULL,
	top_movies	bigint[] NOT NULL,
	n_ratings	int NOT NULL,
	mean_rating	float8 NOT NULL,
	version		bigint NOT NULL,
	updated_at	timestamptz NOT NULL,
	rating_halves bigint NOT NULL,			-- sum of ratings * 2
	last_rated_at timestamptz NOT NULL,
	genres		text[] NOT NULL,			-- every genre the user rated, by name
	genre_n		int[] NOT NULL,
	genre_halves bigint[] NOT NULL,
	top_halves	int[] NOT NULL,
	top_ts		bigint[] NOT NULL
);

/* One row per rated movie: count, mean and a Bayesian average. */
CREATE TABLE recsys.movie_stats (
	movie_id	bigint PRIMARY KEY,
	n_ratings	int NOT NULL,
	mean_rating	float8 NOT NULL,
	bayes_avg	float8 NOT NULL,
	rating_halves bigint NOT NULL,			-- sum of ratings * 2
	n_liked		int NOT NULL,				-- ratings of 4 or more
	updated_at	timestamptz NOT NULL
);
CREATE INDEX ON recsys.movie_stats (bayes_avg DESC, movie_id);

/* The top recsys.neighbors_k most similar movies of each movie, best first. */
CREATE TABLE recsys.item_neighbors (
	movie_id	bigint NOT NULL,
	rank		int NOT NULL,
	neighbor_id	bigint NOT NULL,
	similarity	float8 NOT NULL,
	PRIMARY KEY (movie_id, rank)
);

/* When item_neighbors was last computed, and from how many ratings. */
CREATE TABLE recsys.aggregate_state (
	singleton	boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	neighbors_run_id bigint,
	neighbors_ratings bigint NOT NULL DEFAULT 0,	-- ratings rows they were computed from
	ratings_changed_since bigint NOT NULL DEFAULT 0, -- rows changed by later runs
	neighbors_k	int							-- recsys.neighbors_k they were computed with
);
INSERT INTO recsys.aggregate_state DEFAULT VALUES;

CREATE FUNCTION recsys_aggregate(rebuild boolean DEFAULT false,
	OUT objects bigint, OUT events bigint, OUT users bigint, OUT movies bigint,
	OUT seconds float8)
RETURNS record
AS 'MODULE_PATHNAME', 'recsys_aggregate'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION recsys_aggregate(boolean) IS
	'Aggregate the archived events not yet aggregated (rebuild: every object of the store) into ratings, profiles, statistics and neighbours';
REVOKE ALL ON FUNCTION recsys_aggregate(boolean) FROM PUBLIC;

/* The progress of running aggregates (shared memory). */
CREATE FUNCTION recsys.aggregate_progress_info(
	OUT pid int, OUT run_id bigint, OUT rebuild boolean, OUT phase text,
	OUT objects_done bigint, OUT objects_total bigint,
	OUT events_done bigint, OUT events_total bigint,
	OUT started_at timestamptz, OUT phase_started_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'recsys_aggregate_progress'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION recsys.aggregate_progress_info() FROM PUBLIC;

CREATE VIEW recsys.aggregate_progress AS
	SELECT p.pid, p.run_id, p.rebuild, p.phase,
		   p.objects_done, p.objects_total, p.events_done, p.events_total,
		   CASE WHEN p.events_total > 0
				THEN round(100.0 * p.events_done / p.events_total, 1) END AS events_pct,
		   p.started_at, now() - p.started_at AS elapsed, p.phase_started_at
	  FROM recsys.aggregate_progress_info() p;
COMMENT ON VIEW recsys.aggregate_progress IS
	'Running aggregates: phase, objects and events done of the total';

CREATE FUNCTION recsys_schedule(cron text DEFAULT '0 3 * * *')
RETURNS bigint
AS 'MODULE_PATHNAME', 'recsys_schedule'
LANGUAGE C STRICT VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION recsys_schedule(text) IS
	'Schedule recsys_aggregate() with pg_cron as job recsys-aggregate (times in GMT); replaces the job';
REVOKE ALL ON FUNCTION recsys_schedule(text) FROM PUBLIC;

CREATE FUNCTION recsys_unschedule()
RETURNS boolean
AS 'MODULE_PATHNAME', 'recsys_unschedule'
LANGUAGE C STRICT VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION recsys_unschedule() IS 'Remove the pg_cron job recsys-aggregate; false if there was none';
REVOKE ALL ON FUNCTION recsys_unschedule() FROM PUBLIC;
