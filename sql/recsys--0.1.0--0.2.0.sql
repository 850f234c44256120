/* recsys 0.1.0 -> 0.2.0: aggregation (ratings, user profiles, movie statistics, item neighbours). */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION recsys UPDATE TO '0.2.0'" to load this file. \quit

-- hardening (issue 9)
--
-- The same changes as sql/install/*.sql, for databases made with 0.1.0: no function of
-- the extension is executable by PUBLIC (README "Permission model"); the inbox keeps
-- its per-statement state in backend-local memory instead of settings a caller could
-- set, and records the caller as submitted_by; recsys_rate explains out-of-range ids
-- and times; recsys_archive_sync is a security definer with a pinned search_path.

CREATE OR REPLACE FUNCTION recsys_rate(user_id bigint, movie_id bigint, rating numeric,
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
END
$$;

/* The inbox's per-statement state (see src/ingest.c); only its triggers call these. */
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

CREATE OR REPLACE FUNCTION recsys.ratings_inbox_begin()
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

CREATE OR REPLACE FUNCTION recsys.ratings_inbox_row()
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

CREATE OR REPLACE FUNCTION recsys.ratings_inbox_end()
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

REVOKE ALL ON FUNCTION recsys_health() FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys_load_movies(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys_ingest_csv(text, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys_rate(bigint, bigint, numeric, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.rating_event(bigint, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.inbox_begin(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.inbox_line() FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.inbox_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.ratings_inbox_begin() FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.ratings_inbox_row() FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.ratings_inbox_end() FROM PUBLIC;

ALTER FUNCTION recsys_archive_sync(interval) SECURITY DEFINER;
ALTER FUNCTION recsys_archive_sync(interval) SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION recsys_archive_sync(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION recsys.archive_status() FROM PUBLIC;

-- end of hardening (issue 9)
