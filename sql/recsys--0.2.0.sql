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
/*
 * recsys install script, part 10: catalogue loading, ratings ingestion, the outbox.
 *
 * - recsys_load_movies(path): movies.csv into recsys.movies (upsert).
 * - recsys_ingest_csv(path, async, on_error): ratings.csv into the event log, the work
 *   done by a background worker ("recsys ingest") that commits its progress in
 *   recsys.ingest_jobs as it goes; bad rows go to recsys.ingest_rejects.
 * - recsys_rate(...): one real-time event, written to recsys.outbox in the caller's
 *   transaction and relayed to the event log by the "recsys relay" worker.
 * - recsys.ratings_inbox: a view a client can \copy a ratings.csv into; its rows are
 *   validated like recsys_ingest_csv's and flow to the event log through the outbox.
 */

/* Ingestion jobs: one row per recsys_ingest_csv call (or per \copy into the inbox). */
CREATE SEQUENCE recsys.ingest_jobs_job_id_seq;
CREATE TABLE recsys.ingest_jobs (
	job_id		bigint PRIMARY KEY DEFAULT nextval('recsys.ingest_jobs_job_id_seq'),
	path		text NOT NULL,
	status		text NOT NULL DEFAULT 'queued'
				CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
	on_error	text NOT NULL DEFAULT 'reject' CHECK (on_error IN ('reject', 'stop')),
	target		text NOT NULL,			-- 'kafka:<topic>' or 'queue'
	bytes_read	bigint NOT NULL DEFAULT 0,
	bytes_total	bigint,
	-- data lines settled: each one's event acknowledged by the log (queue: committed)
	-- or the row in ingest_rejects; a resume goes on after them
	lines		bigint NOT NULL DEFAULT 0,
	events		bigint NOT NULL DEFAULT 0,	-- events of those lines the log acknowledged
	rejected	bigint NOT NULL DEFAULT 0,
	submitted_by text NOT NULL DEFAULT current_user,
	worker_pid	int,
	created_at	timestamptz NOT NULL DEFAULT now(),
	started_at	timestamptz,
	finished_at	timestamptz,
	updated_at	timestamptz NOT NULL DEFAULT now(),
	error		text,
	-- 'stop' jobs on Kafka: the job's Kafka transaction may still be open (the worker
	-- died, or could not abort it); the relay aborts it by fencing its transactional.id
	kafka_txn_pending boolean NOT NULL DEFAULT false,
	-- the file as the job began, so recsys_ingest_resume can refuse a changed one
	-- (its size is bytes_total)
	file_mtime	timestamptz,
	file_head_sha256 text,					-- SHA-256 of its first 1 MB, hex
	-- events sent to the log after line `lines` that `events` does not count (some may
	-- be in the log): NULL while running and when the worker died (unknown: up to one
	-- progress batch, 200,000 lines or one second of reading), 0 once it succeeded
	events_unconfirmed bigint DEFAULT 0,
	resumes		int NOT NULL DEFAULT 0,		-- times recsys_ingest_resume restarted it
	resumed_at	timestamptz
);
ALTER SEQUENCE recsys.ingest_jobs_job_id_seq OWNED BY recsys.ingest_jobs.job_id;
SELECT pg_catalog.pg_extension_config_dump('recsys.ingest_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.ingest_jobs_job_id_seq', '');

/* Rows that were not ingested, and why. */
CREATE TABLE recsys.ingest_rejects (
	job_id		bigint NOT NULL REFERENCES recsys.ingest_jobs ON DELETE CASCADE,
	line		bigint NOT NULL,
	raw			text NOT NULL,			-- the row's text, truncated to 1000 bytes
	reason		text NOT NULL,
	file		text NOT NULL,
	PRIMARY KEY (job_id, line)
);
SELECT pg_catalog.pg_extension_config_dump('recsys.ingest_rejects', '');

/*
 * The transactional outbox: recsys_rate() and the inbox write here in the caller's
 * transaction; the relay worker sends rows to the event log, then deletes them.
 */
CREATE TABLE recsys.outbox (
	id			bigserial PRIMARY KEY,
	event_id	bigint NOT NULL,
	key			text NOT NULL,
	value		text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('recsys.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.outbox_id_seq', '');

/* Event ids of real-time ratings: below 10^10, where ingested ids never are. */
CREATE SEQUENCE recsys.rating_event_id_seq MAXVALUE 9999999999;
SELECT pg_catalog.pg_extension_config_dump('recsys.rating_event_id_seq', '');

CREATE FUNCTION recsys_load_movies(path text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'recsys_load_movies'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION recsys_load_movies(text) IS
	'Load a MovieLens movies.csv (movieId,title,genres) from the server into recsys.movies (upsert)';

CREATE FUNCTION recsys_ingest_csv(path text, async boolean DEFAULT false,
								  on_error text DEFAULT 'reject')
RETURNS TABLE (job_id bigint, events bigint, rejected bigint)
AS 'MODULE_PATHNAME', 'recsys_ingest_csv'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION recsys_ingest_csv(text, boolean, text) IS
	'Stream a MovieLens ratings.csv from the server into the event log, in a background worker';

CREATE FUNCTION recsys_ingest_resume(job_id bigint, async boolean DEFAULT false)
RETURNS TABLE (job_id bigint, events bigint, rejected bigint)
AS 'MODULE_PATHNAME', 'recsys_ingest_resume'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION recsys_ingest_resume(bigint, boolean) IS
	'Resume a failed ingest job after its last settled line, with the same event ids; refused if the file changed';

/*
 * Validate one rating and build its event: key and value, or the reason it is bad.
 * The same C code validates the rows of recsys_ingest_csv.
 */
CREATE FUNCTION recsys.rating_event(event_id bigint, user_id text, movie_id text,
									rating text, ts text,
									OUT key text, OUT value text, OUT reason text)
AS 'MODULE_PATHNAME', 'recsys_rating_event'
LANGUAGE C VOLATILE;

CREATE FUNCTION recsys_rate(user_id bigint, movie_id bigint, rating numeric,
							rated_at timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ev record;
	eid bigint;
BEGIN
	IF user_id IS NULL OR movie_id IS NULL OR rating IS NULL OR rated_at IS NULL THEN
		RAISE EXCEPTION 'recsys_rate arguments must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF user_id > 999999999999999999 OR movie_id > 999999999999999999 THEN
		RAISE EXCEPTION 'invalid rating: % % is out of range',
				CASE WHEN user_id > 999999999999999999 THEN 'user_id' ELSE 'movie_id' END,
				CASE WHEN user_id > 999999999999999999 THEN user_id ELSE movie_id END
			USING ERRCODE = 'numeric_value_out_of_range',
				  DETAIL = 'User and movie ids must be between 1 and 999999999999999999.';
	END IF;
	IF NOT isfinite(rated_at) OR rated_at < '1970-01-01 00:00:00+00'
	   OR rated_at >= '10000-01-01 00:00:00+00' THEN
		RAISE EXCEPTION 'invalid rating: rated_at % is out of range', rated_at
			USING ERRCODE = 'datetime_field_overflow',
				  DETAIL = 'Ratings carry times from 1970-01-01 to 9999-12-31 (UTC).';
	END IF;
	eid := nextval('recsys.rating_event_id_seq');
	SELECT * INTO ev FROM recsys.rating_event(eid,
		user_id::text, movie_id::text, rating::text,
		floor(extract(epoch FROM rated_at))::bigint::text);
	IF ev.reason IS NOT NULL THEN
		RAISE EXCEPTION 'invalid rating: %', ev.reason
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM recsys.movies m WHERE m.movie_id = recsys_rate.movie_id) THEN
		RAISE EXCEPTION 'invalid rating: movie % is not in the catalogue', movie_id
			USING ERRCODE = 'foreign_key_violation',
				  HINT = 'Load the catalogue with recsys_load_movies() first.';
	END IF;
	INSERT INTO recsys.outbox (event_id, key, value)
		VALUES (eid, ev.key, ev.value);
	-- read by recsys_recommend() until an aggregate includes it (part 41)
	INSERT INTO recsys.recent_ratings (user_id, movie_id, rating, rated_at, event_id)
		VALUES (recsys_rate.user_id, recsys_rate.movie_id, recsys_rate.rating,
				to_timestamp(floor(extract(epoch FROM recsys_rate.rated_at))), eid);
END
$$;
COMMENT ON FUNCTION recsys_rate(bigint, bigint, numeric, timestamptz) IS
	'Record one rating: an event in the outbox, in the caller''s transaction, relayed to the event log';

/*
 * The client-side path: \copy recsys.ratings_inbox FROM 'ratings.csv' CSV HEADER.
 * Columns are text so that bad values reach the validation instead of failing the
 * COPY. Each statement is a job in recsys.ingest_jobs (path 'client:<user>'); line N
 * of the statement is line N + 1 of the file (the header being line 1). Good rows go
 * to the outbox in the caller's transaction, bad ones to recsys.ingest_rejects.
 */
CREATE VIEW recsys.ratings_inbox AS
	SELECT NULL::text AS "userId", NULL::text AS "movieId", NULL::text AS rating,
		   NULL::text AS "timestamp"
	WHERE false;
COMMENT ON VIEW recsys.ratings_inbox IS
	'\copy a ratings.csv into this view: rows are validated and sent to the event log';

/*
 * The per-statement state of an insert into the inbox (job id, line counter) lives in
 * backend-local memory (see src/ingest.c), where the caller cannot change it: only the
 * triggers below, security definers, may call these.
 */
CREATE FUNCTION recsys.inbox_begin(job_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'recsys_inbox_begin'
LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION recsys.inbox_line(OUT job_id bigint, OUT line bigint)
AS 'MODULE_PATHNAME', 'recsys_inbox_line'
LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION recsys.inbox_end(OUT job_id bigint, OUT lines bigint)
AS 'MODULE_PATHNAME', 'recsys_inbox_end'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION recsys.ratings_inbox_begin()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job bigint;
BEGIN
	-- fails with the preload hint when the relay cannot run
	PERFORM recsys.rating_event(0, '1', '1', '1', '0');
	-- session_user: the role that logged in and ran the insert, not this function's owner
	INSERT INTO recsys.ingest_jobs (path, status, on_error, target, started_at, worker_pid,
									submitted_by)
		VALUES ('client:' || session_user, 'running', 'reject', 'outbox', now(),
				pg_backend_pid(), session_user)
		RETURNING job_id INTO job;
	PERFORM recsys.inbox_begin(job);
	RETURN NULL;
END
$$;

CREATE FUNCTION recsys.ratings_inbox_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	st record;
	eid bigint;
	ev record;
	why text;
	mid bigint;
BEGIN
	SELECT * INTO st FROM recsys.inbox_line();
	eid := st.job_id * 10000000000 + st.line;
	SELECT * INTO ev FROM recsys.rating_event(eid,
		NEW."userId", NEW."movieId", NEW.rating, NEW."timestamp");
	why := ev.reason;
	IF why IS NULL THEN
		mid := (ev.value::json ->> 'movie_id')::bigint;
		IF NOT EXISTS (SELECT 1 FROM recsys.movies m WHERE m.movie_id = mid) THEN
			why := format('movieId %s is not in the catalogue', mid);
		END IF;
	END IF;
	IF why IS NULL THEN
		INSERT INTO recsys.outbox (event_id, key, value) VALUES (eid, ev.key, ev.value);
	ELSE
		INSERT INTO recsys.ingest_rejects (job_id, line, raw, reason, file)
			VALUES (st.job_id, st.line,
					left(concat_ws(',', NEW."userId", NEW."movieId", NEW.rating, NEW."timestamp"), 1000),
					why, 'client:' || session_user);
	END IF;
	RETURN NEW;
END
$$;

CREATE FUNCTION recsys.ratings_inbox_end()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	st record;
	bad bigint;
BEGIN
	SELECT * INTO st FROM recsys.inbox_end();
	SELECT count(*) INTO bad FROM recsys.ingest_rejects r WHERE r.job_id = st.job_id;
	UPDATE recsys.ingest_jobs SET status = 'succeeded', finished_at = clock_timestamp(),
		updated_at = clock_timestamp(),
		lines = st.lines, events = st.lines - bad, rejected = bad
		WHERE job_id = st.job_id;
	RETURN NULL;
END
$$;

CREATE TRIGGER ratings_inbox_begin BEFORE INSERT ON recsys.ratings_inbox
	FOR EACH STATEMENT EXECUTE FUNCTION recsys.ratings_inbox_begin();
CREATE TRIGGER ratings_inbox_row INSTEAD OF INSERT ON recsys.ratings_inbox
	FOR EACH ROW EXECUTE FUNCTION recsys.ratings_inbox_row();
CREATE TRIGGER ratings_inbox_end AFTER INSERT ON recsys.ratings_inbox
	FOR EACH STATEMENT EXECUTE FUNCTION recsys.ratings_inbox_end();

/* Permissions: see part 00. The inbox itself is granted per role (INSERT). */
REVOKE ALL ON FUNCTION recsys_load_movies(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys_ingest_csv(text, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys_ingest_resume(bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys_rate(bigint, bigint, numeric, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.rating_event(bigint, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.inbox_begin(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.inbox_line() FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.inbox_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.ratings_inbox_begin() FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.ratings_inbox_row() FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.ratings_inbox_end() FROM PUBLIC;
/*
 * recsys install script, part 20: the archive (event log -> S3 / MinIO or a directory).
 *
 * The "recsys archiver" background workers write the events of each partition as
 * gzip NDJSON objects under deterministic keys, and only after an object is stored
 * record it in archive_manifest together with the partition's new offset in
 * archive_offsets, in one transaction.  A replay after a crash therefore rewrites the
 * same key and nothing is listed twice.  Offsets of the embedded queue (topic 'queue',
 * partition 0) are assigned by the archiver in commit order of the queue rows, so that
 * object ranges never overlap even when producers commit out of id order.
 */

/* Every archived object, with its partition and offset range. */
CREATE TABLE recsys.archive_manifest (
	object_key	text PRIMARY KEY,
	topic		text NOT NULL,
	partition	int NOT NULL,
	first_offset bigint NOT NULL,
	last_offset	bigint NOT NULL,
	events		bigint NOT NULL,			-- events in the object
	dead_letters bigint NOT NULL DEFAULT 0,	-- messages of the range set aside
	bytes		bigint NOT NULL,			-- compressed size
	storage		text NOT NULL CHECK (storage IN ('s3', 'local')),
	archived_at	timestamptz NOT NULL DEFAULT now(),
	-- real-time events of the range dropped as sent again (see archive_duplicates):
	-- last_offset - first_offset + 1 >= events + dead_letters + duplicates
	duplicates	bigint NOT NULL DEFAULT 0,
	CHECK (first_offset <= last_offset),
	UNIQUE (topic, partition, first_offset)
);
CREATE INDEX ON recsys.archive_manifest (archived_at);
SELECT pg_catalog.pg_extension_config_dump('recsys.archive_manifest', '');

/* The next offset to archive, per partition: committed with each manifest row. */
CREATE TABLE recsys.archive_offsets (
	topic		text NOT NULL,
	partition	int NOT NULL,
	next_offset	bigint NOT NULL CHECK (next_offset >= 0),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (topic, partition)
);
SELECT pg_catalog.pg_extension_config_dump('recsys.archive_offsets', '');

/* Messages that are not valid events: kept with where they came from, never blocking. */
CREATE TABLE recsys.archive_dead_letters (
	topic		text NOT NULL,
	partition	int NOT NULL,
	"offset"	bigint NOT NULL,
	key			bytea,
	value		bytea,
	reason		text NOT NULL,
	queue_id	bigint,						-- the event_queue row id (topic 'queue')
	created_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (topic, partition, "offset")
);
SELECT pg_catalog.pg_extension_config_dump('recsys.archive_dead_letters', '');

/*
 * Real-time events (event_id < 10^10) that a producer sent again (a relay killed
 * between Kafka's acknowledgement and its commit): the archiver drops each one whose
 * event id and message value it archived already, among the partition's last 100,000
 * real-time events, and records its offset here, in the transaction of the batch it
 * came in, so that every offset of the log is accounted for: archived, a dead letter,
 * a duplicate.  (Kafka topics only: the queue table is filled exactly once.)
 */
CREATE TABLE recsys.archive_duplicates (
	topic		text NOT NULL,
	partition	int NOT NULL,
	"offset"	bigint NOT NULL,
	event_id	bigint NOT NULL,
	archived_offset bigint NOT NULL,		-- the offset of the copy that was archived
	queue_id	bigint,						-- the event_queue row id (topic 'queue')
	created_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (topic, partition, "offset")
);
SELECT pg_catalog.pg_extension_config_dump('recsys.archive_duplicates', '');

/* The archiver's window of recently archived real-time event ids, per partition. */
CREATE TABLE recsys.archive_recent_ids (
	topic		text NOT NULL,
	partition	int NOT NULL,
	event_id	bigint NOT NULL,
	"offset"	bigint NOT NULL,
	value_hash	bigint NOT NULL,			-- of the message value: a resend is the same text
	PRIMARY KEY (topic, partition, event_id)
);
CREATE INDEX archive_recent_ids_offset ON recsys.archive_recent_ids (topic, partition, "offset");
SELECT pg_catalog.pg_extension_config_dump('recsys.archive_recent_ids', '');

/*
 * Offsets the event log deleted (retention) before they were archived: reported
 * loudly, in the server log and in recsys.status, never skipped in silence.
 */
CREATE TABLE recsys.archive_gaps (
	topic		text NOT NULL,
	partition	int NOT NULL,
	from_offset	bigint NOT NULL,			-- first offset lost
	to_offset	bigint NOT NULL,			-- first offset still available
	detected_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (topic, partition, from_offset)
);
SELECT pg_catalog.pg_extension_config_dump('recsys.archive_gaps', '');

/*
 * A security definer, so that a role granted EXECUTE needs no rights on the tables it
 * watches (recsys.outbox, event_queue, archive_manifest); it reveals only counts.
 */
CREATE FUNCTION recsys_archive_sync(timeout interval DEFAULT '60 s')
RETURNS bigint
AS 'MODULE_PATHNAME', 'recsys_archive_sync'
LANGUAGE C STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION recsys_archive_sync(interval) IS
	'Wait until every event produced before the call is archived; returns the events archived so far';

/* The archiver's part of recsys.status: state kept in shared memory by the workers. */
CREATE FUNCTION recsys.archive_status()
RETURNS TABLE (component text, metric text, value text)
AS 'MODULE_PATHNAME', 'recsys_archive_status'
LANGUAGE C STRICT VOLATILE;

/*
 * Permissions: see part 00. Reading recsys.status (part 90) takes SELECT on the view
 * and EXECUTE on recsys.archive_status() (a view's functions run with the reader's rights).
 */
REVOKE ALL ON FUNCTION recsys_archive_sync(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.archive_status() FROM PUBLIC;

/* recsys.status, the view over every stage's state, is defined in part 90. */
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
 * recsys install script, part 90: recsys.status, one view over every stage's state
 * (the archiver's shared memory, the manifest, the aggregate's runs and watermark, the
 * recommendation cache's shared memory).
 */
CREATE VIEW recsys.status AS
	SELECT s.component, s.metric, s.value FROM recsys.archive_status() s
	UNION ALL
	SELECT 'archive', 'objects', count(*)::text FROM recsys.archive_manifest
	UNION ALL
	SELECT 'archive', 'events', coalesce(sum(events), 0)::text FROM recsys.archive_manifest
	UNION ALL
	SELECT 'archive', 'dead_letters', count(*)::text FROM recsys.archive_dead_letters
	UNION ALL
	SELECT 'archive', 'retention_gap_offsets', coalesce(sum(to_offset - from_offset), 0)::text
	  FROM recsys.archive_gaps
	UNION ALL
	SELECT 'aggregate', m.metric, m.value
	  FROM (SELECT * FROM recsys.aggregate_runs ORDER BY run_id DESC LIMIT 1) r,
		   LATERAL (VALUES
			('last_run', r.run_id::text || ' ' || r.status ||
				CASE WHEN r.rebuild THEN ' (rebuild)' ELSE '' END),
			('last_run_started', r.started_at::text),
			('last_run_finished', coalesce(r.finished_at::text, '')),
			('last_run_seconds', coalesce(round(r.seconds::numeric, 3)::text, '')),
			('last_run_events', coalesce(r.events::text, '')),
			('last_run_error', coalesce(r.error, ''))) m(metric, value)
	UNION ALL
	SELECT 'aggregate', 'last_success', coalesce(max(finished_at)::text, 'never')
	  FROM recsys.aggregate_runs WHERE status = 'succeeded'
	UNION ALL
	SELECT 'aggregate', 'objects_pending', count(*)::text
	  FROM recsys.archive_manifest m
	 WHERE NOT EXISTS (SELECT 1 FROM recsys.aggregate_objects a
						WHERE a.object_key = m.object_key AND a.bytes = m.bytes)
	UNION ALL
	SELECT 'aggregate', 'objects_quarantined', count(*)::text
	  FROM recsys.aggregate_objects WHERE status = 'quarantined'
	UNION ALL
	SELECT 'aggregate', 'last_quarantined', coalesce(
		(SELECT object_key || ': ' || error FROM recsys.aggregate_objects
		  WHERE status = 'quarantined' ORDER BY at DESC, object_key LIMIT 1), '')
	UNION ALL
	SELECT * FROM recsys.cache_status()
	UNION ALL
	SELECT * FROM recsys.llm_status();
COMMENT ON VIEW recsys.status IS
	'Pipeline state: event log lag per partition, archive objects and events, last flush and error, last aggregate, cache, ...';
