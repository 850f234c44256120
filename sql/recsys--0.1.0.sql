/*
 * recsys install script, part 00: the schema and the tables every module shares.
 *
 * The install script sql/recsys--0.1.0.sql is built by the Makefile from the files of
 * sql/install/ in name order, one file per concern (TimescaleDB builds its script the
 * same way), so that each module keeps its SQL beside the others without conflicts.
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

/* One row per user and movie: the latest rating (latest ts, ties by log position). */
CREATE TABLE recsys.ratings (
	user_id		bigint NOT NULL,
	movie_id	bigint NOT NULL,
	rating		numeric(2,1) NOT NULL CHECK (rating BETWEEN 0.5 AND 5),
	rated_at	timestamptz NOT NULL,
	event_id	bigint NOT NULL,
	PRIMARY KEY (user_id, movie_id)
);
CREATE INDEX ON recsys.ratings (movie_id);

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
	lines		bigint NOT NULL DEFAULT 0,	-- data lines read so far
	events		bigint NOT NULL DEFAULT 0,	-- events the log acknowledged
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
	kafka_txn_pending boolean NOT NULL DEFAULT false
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
	INSERT INTO recsys.ingest_jobs (path, status, on_error, target, started_at, worker_pid)
		VALUES ('client:' || session_user, 'running', 'reject', 'outbox', now(), pg_backend_pid())
		RETURNING job_id INTO job;
	PERFORM set_config('recsys_inbox.job', job::text, true);
	PERFORM set_config('recsys_inbox.line', '1', true);
	PERFORM set_config('recsys_inbox.events', '0', true);
	PERFORM set_config('recsys_inbox.rejected', '0', true);
	RETURN NULL;
END
$$;

CREATE FUNCTION recsys.ratings_inbox_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job bigint := current_setting('recsys_inbox.job')::bigint;
	line bigint := current_setting('recsys_inbox.line')::bigint + 1;
	ev record;
	why text;
	mid bigint;
BEGIN
	PERFORM set_config('recsys_inbox.line', line::text, true);
	SELECT * INTO ev FROM recsys.rating_event(job * 10000000000 + line,
		NEW."userId", NEW."movieId", NEW.rating, NEW."timestamp");
	why := ev.reason;
	IF why IS NULL THEN
		mid := (ev.value::json ->> 'movie_id')::bigint;
		IF NOT EXISTS (SELECT 1 FROM recsys.movies m WHERE m.movie_id = mid) THEN
			why := format('movieId %s is not in the catalogue', mid);
		END IF;
	END IF;
	IF why IS NULL THEN
		INSERT INTO recsys.outbox (event_id, key, value)
			VALUES (job * 10000000000 + line, ev.key, ev.value);
		PERFORM set_config('recsys_inbox.events',
			(current_setting('recsys_inbox.events')::bigint + 1)::text, true);
	ELSE
		INSERT INTO recsys.ingest_rejects (job_id, line, raw, reason, file)
			VALUES (job, line,
					left(concat_ws(',', NEW."userId", NEW."movieId", NEW.rating, NEW."timestamp"), 1000),
					why, 'client:' || session_user);
		PERFORM set_config('recsys_inbox.rejected',
			(current_setting('recsys_inbox.rejected')::bigint + 1)::text, true);
	END IF;
	RETURN NEW;
END
$$;

CREATE FUNCTION recsys.ratings_inbox_end()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE recsys.ingest_jobs SET status = 'succeeded', finished_at = clock_timestamp(),
		updated_at = clock_timestamp(),
		lines = current_setting('recsys_inbox.line')::bigint - 1,
		events = current_setting('recsys_inbox.events')::bigint,
		rejected = current_setting('recsys_inbox.rejected')::bigint
		WHERE job_id = current_setting('recsys_inbox.job')::bigint;
	RETURN NULL;
END
$$;

CREATE TRIGGER ratings_inbox_begin BEFORE INSERT ON recsys.ratings_inbox
	FOR EACH STATEMENT EXECUTE FUNCTION recsys.ratings_inbox_begin();
CREATE TRIGGER ratings_inbox_row INSTEAD OF INSERT ON recsys.ratings_inbox
	FOR EACH ROW EXECUTE FUNCTION recsys.ratings_inbox_row();
CREATE TRIGGER ratings_inbox_end AFTER INSERT ON recsys.ratings_inbox
	FOR EACH STATEMENT EXECUTE FUNCTION recsys.ratings_inbox_end();
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

CREATE FUNCTION recsys_archive_sync(timeout interval DEFAULT '60 s')
RETURNS bigint
AS 'MODULE_PATHNAME', 'recsys_archive_sync'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION recsys_archive_sync(interval) IS
	'Wait until every event produced before the call is archived; returns the events archived so far';

/* The archiver's part of recsys.status: state kept in shared memory by the workers. */
CREATE FUNCTION recsys.archive_status()
RETURNS TABLE (component text, metric text, value text)
AS 'MODULE_PATHNAME', 'recsys_archive_status'
LANGUAGE C STRICT VOLATILE;

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
	  FROM recsys.archive_gaps;
COMMENT ON VIEW recsys.status IS
	'Pipeline state: event log lag per partition, archive objects and events, last flush and error, ...';
