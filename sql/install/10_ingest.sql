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
