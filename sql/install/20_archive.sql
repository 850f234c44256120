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
