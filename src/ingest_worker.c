/*
 * ingest_worker.c: the "recsys ingest" background worker behind recsys_ingest_csv().
 *
 * One worker per job.  It reads its parameters from the caller's dynamic shared
 * memory segment, connects to the caller's database (as the bootstrap superuser: the
 * caller's right to read the file was checked before the worker started), and:
 *
 *   1. marks failed the jobs of workers that died, then inserts its job row
 *      ('running') and commits it: the caller may return now (async);
 *   2. loads the movie ids of the catalogue into a bitmap;
 *   3. with on_error = 'stop', validates the whole file first (libcsv reads about
 *      ten million rows a second): the first bad row fails the job before any event
 *      is produced;
 *   4. streams the file, validating each row: bad rows (the reader's unusable
 *      records too: a NUL byte, a record over CSV_MAX_RECORD, an unterminated quote)
 *      are collected and inserted into recsys.ingest_rejects with each batch; good rows become events with
 *      event_id = job_id * 10^10 + line number, so a rerun reproduces the same ids;
 *   5. events go to Kafka (idempotent producer; with 'stop', inside one Kafka
 *      transaction whose transactional.id is the job's, so a failure half-way leaves
 *      nothing visible to read_committed readers), or, without recsys.kafka_brokers,
 *      into recsys.event_queue with COPY's multi-insert path (with 'stop', in one
 *      transaction);
 *   6. each batch (BATCH_ROWS rows or PROGRESS_MS) commits its rejects, its queue
 *      events and the job's progress: bytes read, lines, events acknowledged so far,
 *      rejects.  With Kafka ('reject'), the batch's events are first all acknowledged
 *      (KafkaProducerFlush), so `lines` is a settled prefix of the file: every event
 *      of it is in the log and counted in `events`, every bad row of it in
 *      ingest_rejects.  A worker that dies may have sent at most one batch more;
 *      the job row says so (events_unconfirmed NULL, see INGEST_RECONCILE_SQL);
 *   7. at the end waits, bounded by recsys.kafka_timeout, for every event to be
 *      acknowledged, and marks the job succeeded.
 *
 * A job begins by recording its file's fingerprint (size, mtime, SHA-256 of the first
 * megabyte).  recsys_ingest_resume() runs the same steps for a failed job: it checks
 * the job is failed, its target is the present one and its file unchanged, then reads
 * the file again from the start, skipping the settled lines without producing or
 * rejecting them, and produces the others with the same ids (job_id * 10^10 + line):
 * what the log already had from the failed run comes again under the same ids,
 * which the aggregate drops.  A 'stop' job settles nothing before it succeeds, so it
 * is resumed from its first line.
 *
 * Any error (bad row in 'stop' mode, Kafka failure, cancel) is caught at the top: the
 * Kafka transaction is aborted, the job row marked failed with the message, and the
 * error handed to the caller through shared memory.  SIGTERM (the caller cancelled,
 * or pg_terminate_backend) sets a flag that the row loop and every Kafka wait check,
 * so the job fails cleanly instead of being left 'running'.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include <sys/stat.h>
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "csvreader.h"
#include "guc.h"
#include "ingest.h"
#include "ingest_event.h"
#include "kafka.h"

#define BATCH_ROWS			200000	/* rows between progress commits, at most */
#define PROGRESS_MS			1000	/* ... or this many milliseconds */
#define MAX_BATCH_REJECTS	10000
#define COPY_BUFFER_MAX		(8 * 1024 * 1024)

typedef struct IngestRun
{
	IngestShared *sh;
	char		path[MAXPGPATH];
	bool		stop_mode;
	bool		use_kafka;
	int64		job_id;
	bool		job_created;

	CsvReader  *reader;
	KafkaProducer *producer;
	bool		kafka_txn_open;
	int			col[4];			/* userId, movieId, rating, timestamp */
	int			ncols;

	/* the catalogue: a bitmap of movie ids up to movie_max */
	uint8	   *movie_bits;
	int64		movie_max;

	/* the current batch */
	MemoryContext batchcxt;
	bool		single_xact;	/* queue + stop: everything in one transaction */
	StringInfoData copydata;	/* queue mode: "key\tvalue\n" lines */
	int64		batch_events;
	int			nrejects;
	Datum	   *rej_lines;
	Datum	   *rej_raw;
	Datum	   *rej_reason;
	int64		batch_rows;
	TimestampTz last_flush;

	/* totals */
	int64		lines;
	int64		rejected;
	int64		queued;			/* queue mode: events committed */
	int64		sent;			/* Kafka: events handed to the producer */
	int64		sent_at_commit; /* ... at the last progress commit */

	/* resuming: the job's settled lines and their counts */
	int64		skip_lines;
	int64		base_events;
	int64		base_rejected;
} IngestRun;

static volatile sig_atomic_t got_sigterm = false;

static void ingest_sigterm(SIGNAL_ARGS);
static int	kafka_interrupt(void *arg);
static void check_interrupts(void);
static void run_job(IngestRun *run);
static void run_pass(IngestRun *run, bool produce);
static void begin_job(IngestRun *run);
static void resume_job(IngestRun *run, const char *target);
static void fingerprint(IngestRun *run, int64 *size, TimestampTz *mtime, char *hex);
static void load_catalogue(IngestRun *run);
static void flush_batch(IngestRun *run);
static void copy_events(IngestRun *run);
static int	copy_source_cb(void *outbuf, int minread, int maxread);
static void kafka_fail(IngestRun *run, int rc, const char *what);
static bool cleanup_run(IngestRun *run);
static void finish_failed(IngestRun *run, ErrorData *edata);
static int64 events_so_far(IngestRun *run);

/* the COPY data source of the current batch (copy_source_cb has no argument) */
static StringInfo copy_src = NULL;
static int	copy_pos = 0;

/* SIGTERM: stop at the next row or wait, failing the job. */
static void
ingest_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Tell librdkafka waits to stop (kafka.h's KafkaInterruptFn). */
static int
kafka_interrupt(void *arg)
{
	return got_sigterm || InterruptPending;
}

/* Fail the job on SIGTERM; process other interrupts. */
static void
check_interrupts(void)
{
	if (got_sigterm)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("ingest job was cancelled"),
				 errdetail("The worker received SIGTERM: its caller was cancelled, or it was terminated.")));
	CHECK_FOR_INTERRUPTS();
}

/* Entry point of the worker. */
void
IngestWorkerMain(Datum main_arg)
{
	dsm_segment *seg;
	IngestShared *sh;
	IngestRun  *run;
	MemoryContext runcxt;

	pqsignal(SIGTERM, ingest_sigterm);
	BackgroundWorkerUnblockSignals();

	CurrentResourceOwner = ResourceOwnerCreate(NULL, "recsys ingest");
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the caller of this ingest job has gone")));
	dsm_pin_mapping(seg);
	sh = (IngestShared *) dsm_segment_address(seg);

	BackgroundWorkerInitializeConnectionByOid(sh->database, InvalidOid, 0);

	runcxt = AllocSetContextCreate(TopMemoryContext, "recsys ingest", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(runcxt);
	run = palloc0(sizeof(IngestRun));
	run->sh = sh;
	strlcpy(run->path, sh->path, sizeof(run->path));
	run->stop_mode = sh->stop_mode;
	run->use_kafka = sh->brokers[0] != '\0';
	run->batchcxt = AllocSetContextCreate(runcxt, "recsys ingest batch", ALLOCSET_DEFAULT_SIZES);
	run->rej_lines = palloc(sizeof(Datum) * MAX_BATCH_REJECTS);
	run->rej_raw = palloc(sizeof(Datum) * MAX_BATCH_REJECTS);
	run->rej_reason = palloc(sizeof(Datum) * MAX_BATCH_REJECTS);
	initStringInfo(&run->copydata);

	PG_TRY();
	{
		run_job(run);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(runcxt);
		edata = CopyErrorData();
		FlushErrorState();
		finish_failed(run, edata);
	}
	PG_END_TRY();

	dsm_detach(seg);
	proc_exit(0);
}

/* Run the whole job; errors propagate to IngestWorkerMain. */
static void
run_job(IngestRun *run)
{
	IngestShared *sh = run->sh;
	char		err[1024];

	begin_job(run);
	load_catalogue(run);

	if (run->use_kafka)
	{
		int			nb,
					np;
		char	   *props = psprintf("%s\n%s", sh->properties, SecretKafkaProperties());

		if (KafkaCheckProperties(props, err, sizeof(err)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the Kafka configuration is invalid: %s", err),
					 errhint("Check recsys.kafka_properties and the kafka.<property> entries of recsys.secrets_file.")));
		if (KafkaDescribe(sh->brokers, props, sh->topic, sh->kafka_timeout_ms,
						  &nb, &np, err, sizeof(err)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("Kafka is not reachable: %s", err),
					 errhint("Check recsys.kafka_brokers, or unset it to use the queue table.")));
		if (np == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("Kafka topic \"%s\" does not exist", sh->topic),
					 errhint("Create the topic, or set recsys.kafka_topic.")));
	}

	/* 'stop': a first pass finds the first bad row before anything is produced */
	if (run->stop_mode)
		run_pass(run, false);

	if (run->use_kafka)
	{
		KafkaProducerOptions o;
		char		txnid[64];

		memset(&o, 0, sizeof(o));
		o.brokers = sh->brokers;
		o.properties = psprintf("%s\n%s", sh->properties, SecretKafkaProperties());
		o.topic = sh->topic;
		o.timeout_ms = sh->kafka_timeout_ms;
		o.interrupt = kafka_interrupt;
		if (run->stop_mode)
		{
			snprintf(txnid, sizeof(txnid), INGEST_TXN_ID_FORMAT, (long long) run->job_id);
			o.transactional_id = txnid;
			/* long enough for hundreds of millions of rows; an orphan expires after it */
			o.transaction_timeout_ms = 300000;
		}
		run->producer = KafkaProducerNew(&o, err, sizeof(err));
		if (run->producer == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not create the Kafka producer: %s", err)));
		if (run->stop_mode)
		{
			int			rc = KafkaBeginTransaction(run->producer);

			if (rc != KAFKA_OK)
				kafka_fail(run, rc, "begin the Kafka transaction");
			run->kafka_txn_open = true;
		}
	}
	else if (run->stop_mode)
	{
		run->single_xact = true;
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
	}

	run_pass(run, true);

	if (run->use_kafka)
	{
		int			rc;

		if (run->stop_mode)
		{
			rc = KafkaCommitTransaction(run->producer);
			if (rc != KAFKA_OK)
				kafka_fail(run, rc, "commit the Kafka transaction");
			run->kafka_txn_open = false;
		}
		else
		{
			rc = KafkaProducerFlush(run->producer, -1);
			if (rc != KAFKA_OK)
				kafka_fail(run, rc, "wait for Kafka acknowledgements");
		}
	}
	else if (run->single_xact)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		run->single_xact = false;
	}

	/* the job is done: record it */
	{
		int64		events = events_so_far(run);
		Datum		args[6];
		Oid			types[6] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};

		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		args[0] = Int64GetDatum(run->job_id);
		args[1] = Int64GetDatum(CsvReaderBytesRead(run->reader));
		args[2] = Int64GetDatum(run->lines);
		args[3] = Int64GetDatum(events);
		args[4] = Int64GetDatum(run->rejected);
		args[5] = Int64GetDatum(0);
		SPI_execute_with_args("UPDATE recsys.ingest_jobs SET status = 'succeeded', "
							  "bytes_read = $2, lines = $3, events = $4, rejected = $5, "
							  "events_unconfirmed = 0, "
							  "finished_at = clock_timestamp(), updated_at = clock_timestamp() "
							  "WHERE job_id = $1",
							  5, types, args, NULL, false, 0);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);

		(void) cleanup_run(run);
		SpinLockAcquire(&sh->mutex);
		sh->events = events;
		sh->rejected = run->rejected;
		sh->state = INGEST_DONE;
		SpinLockRelease(&sh->mutex);
		IngestNotifyCaller(sh);
		ereport(LOG,
				(errmsg("recsys ingest job %lld succeeded: %lld events, %lld rejected rows from \"%s\"",
						(long long) run->job_id, (long long) events,
						(long long) run->rejected, run->path)));
	}
}

/*
 * Reconcile dead jobs, insert the job row (or take the resumed job's) and commit it;
 * tell the caller.
 */
static void
begin_job(IngestRun *run)
{
	IngestShared *sh = run->sh;
	char		target[300];
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "recsys ingest: starting");

	SPI_execute(INGEST_RECONCILE_SQL, false, 0);

	if (run->use_kafka)
		snprintf(target, sizeof(target), "kafka:%s", sh->topic);
	else
		strlcpy(target, "queue", sizeof(target));
	if (sh->resume_job > 0)
		resume_job(run, target);
	else
	{
		Datum		args[8];
		Oid			types[8] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, INT4OID,
		TIMESTAMPTZOID, TEXTOID};
		int64		size;
		TimestampTz mtime;
		char		hex[65];

		fingerprint(run, &size, &mtime, hex);
		args[0] = CStringGetTextDatum(run->path);
		args[1] = CStringGetTextDatum(run->stop_mode ? "stop" : "reject");
		args[2] = CStringGetTextDatum(target);
		args[3] = Int64GetDatum(size);
		args[4] = CStringGetTextDatum(sh->submitted_by);
		args[5] = Int32GetDatum(MyProcPid);
		args[6] = TimestampTzGetDatum(mtime);
		args[7] = CStringGetTextDatum(hex);
		if (SPI_execute_with_args("INSERT INTO recsys.ingest_jobs "
								  "(path, status, on_error, target, bytes_total, submitted_by, "
								  " worker_pid, started_at, file_mtime, file_head_sha256, events_unconfirmed) "
								  "VALUES ($1, 'running', $2, $3, $4, $5, $6, clock_timestamp(), $7, $8, NULL) "
								  "RETURNING job_id",
								  8, types, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING ||
			SPI_processed != 1)
			elog(ERROR, "could not insert the ingest job");
		run->job_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	run->job_created = true;

	SpinLockAcquire(&sh->mutex);
	sh->job_id = run->job_id;
	sh->state = INGEST_RUNNING;
	SpinLockRelease(&sh->mutex);
	IngestNotifyCaller(sh);
	pgstat_report_activity(STATE_RUNNING, psprintf("recsys ingest job %lld: %s%s",
												   (long long) run->job_id,
												   sh->resume_job > 0 ? "resuming " : "",
												   run->path));
}

/* Fingerprint the job's file; raise an error when it cannot be read. */
static void
fingerprint(IngestRun *run, int64 *size, TimestampTz *mtime, char *hex)
{
	char		err[1024];

	if (!IngestFileFingerprint(run->path, size, mtime, hex, err, sizeof(err)))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FILE), errmsg_internal("%s", err)));
}

/*
 * Take the failed job sh->resume_job (in begin_job's transaction): check its state,
 * its target and its file, load its settled counts and mark it running again.
 */
static void
resume_job(IngestRun *run, const char *target)
{
	int64		job = run->sh->resume_job;
	Datum		args[1] = {Int64GetDatum(job)};
	Oid			types[1] = {INT8OID};
	HeapTuple	tup;
	TupleDesc	td;
	bool		isnull,
				mtime_null,
				hash_null;
	char	   *status,
			   *jtarget,
			   *hash;
	int64		size,
				now_size;
	TimestampTz mtime,
				now_mtime;
	char		now_hex[65];
	int			pid;
	StringInfoData changed;

	run->job_id = job;
	if (SPI_execute_with_args("SELECT path, status, on_error, target, coalesce(bytes_total, -1), "
							  "file_mtime, file_head_sha256, lines, events, rejected, "
							  "kafka_txn_pending, coalesce(worker_pid, 0) "
							  "FROM recsys.ingest_jobs WHERE job_id = $1 FOR UPDATE",
							  1, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the ingest job");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("ingest job %lld does not exist", (long long) job)));
	tup = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	strlcpy(run->path, SPI_getvalue(tup, td, 1), sizeof(run->path));
	status = SPI_getvalue(tup, td, 2);
	run->stop_mode = strcmp(SPI_getvalue(tup, td, 3), "stop") == 0;
	jtarget = SPI_getvalue(tup, td, 4);
	size = DatumGetInt64(SPI_getbinval(tup, td, 5, &isnull));
	mtime = DatumGetTimestampTz(SPI_getbinval(tup, td, 6, &mtime_null));
	hash = SPI_getvalue(tup, td, 7);
	hash_null = hash == NULL;
	pid = DatumGetInt32(SPI_getbinval(tup, td, 12, &isnull));

	if (strcmp(jtarget, "outbox") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ingest job %lld cannot be resumed: it was a \\copy into recsys.ratings_inbox", (long long) job),
				 errdetail("Its rows came from a client, not from a file on the server.")));
	if (strcmp(status, "succeeded") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ingest job %lld cannot be resumed: it succeeded", (long long) job),
				 errdetail("Every line of \"%s\" was ingested or rejected.", run->path)));
	if (strcmp(status, "failed") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ingest job %lld cannot be resumed: it is still %s", (long long) job, status),
				 errdetail("Its worker, process %d, is alive.", pid),
				 errhint("Wait for it to end, or stop it with pg_terminate_backend(%d) and resume it then.", pid)));
	if (DatumGetBool(SPI_getbinval(tup, td, 11, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ingest job %lld cannot be resumed yet: its Kafka transaction is still open", (long long) job),
				 errhint("The relay aborts it as soon as Kafka answers; try again in a few seconds.")));
	if (strcmp(jtarget, target) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ingest job %lld cannot be resumed: the event log changed", (long long) job),
				 errdetail("The job sent its events to %s; the event log is now %s.", jtarget, target),
				 errhint("Set recsys.kafka_brokers and recsys.kafka_topic back, or ingest the file again with recsys_ingest_csv().")));
	if (hash_null || mtime_null || size < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ingest job %lld cannot be resumed: it did not record its file", (long long) job),
				 errdetail("Jobs that began before recsys 0.2.0 have no fingerprint of their file, so a change could not be detected."),
				 errhint("Ingest the file again with recsys_ingest_csv() (a new job, with new event ids).")));

	fingerprint(run, &now_size, &now_mtime, now_hex);
	initStringInfo(&changed);
	if (now_size != size)
		appendStringInfo(&changed, "its size changed from %lld to %lld bytes",
						 (long long) size, (long long) now_size);
	if (now_mtime != mtime)
	{
		appendStringInfo(&changed, "%sits modification time changed from %s", changed.len ? ", " : "",
						 timestamptz_to_str(mtime));
		appendStringInfo(&changed, " to %s", timestamptz_to_str(now_mtime));
	}
	if (strcmp(now_hex, hash) != 0)
		appendStringInfo(&changed, "%sits first megabyte is different", changed.len ? ", " : "");
	if (changed.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ingest job %lld cannot be resumed: file \"%s\" changed since the job began",
						(long long) job, run->path),
				 errdetail("Since the job began, %s.", changed.data),
				 errhint("Resuming would give other rows this job's event ids. Ingest the file again with recsys_ingest_csv() (a new job).")));

	/* a 'stop' job settled nothing: it starts over */
	if (!run->stop_mode)
	{
		run->skip_lines = DatumGetInt64(SPI_getbinval(tup, td, 8, &isnull));
		run->base_events = DatumGetInt64(SPI_getbinval(tup, td, 9, &isnull));
		run->base_rejected = DatumGetInt64(SPI_getbinval(tup, td, 10, &isnull));
	}
	{
		Datum		uargs[3];
		Oid			utypes[3] = {INT8OID, INT4OID, BOOLOID};

		uargs[0] = Int64GetDatum(job);
		uargs[1] = Int32GetDatum(MyProcPid);
		uargs[2] = BoolGetDatum(run->stop_mode);
		if (SPI_execute_with_args("UPDATE recsys.ingest_jobs SET status = 'running', worker_pid = $2, "
								  "error = NULL, finished_at = NULL, events_unconfirmed = NULL, "
								  "resumes = resumes + 1, resumed_at = clock_timestamp(), "
								  "updated_at = clock_timestamp(), "
								  "lines = CASE WHEN $3 THEN 0 ELSE lines END, "
								  "events = CASE WHEN $3 THEN 0 ELSE events END, "
								  "rejected = CASE WHEN $3 THEN 0 ELSE rejected END "
								  "WHERE job_id = $1",
								  3, utypes, uargs, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update the ingest job");
	}
	ereport(LOG,
			(errmsg("recsys ingest job %lld resumes after the %lld settled data lines of \"%s\"",
					(long long) job, (long long) run->skip_lines, run->path)));
}

/* Load the movie ids of the catalogue into a bitmap. */
static void
load_catalogue(IngestRun *run)
{
	uint64		i;
	bool		isnull;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT coalesce(max(movie_id), 0) FROM recsys.movies", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.movies");
	run->movie_max = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (run->movie_max > (int64) 1 << 32)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("movie ids above 2^32 are not supported for ingestion")));
	run->movie_bits = MemoryContextAllocZero(GetMemoryChunkContext(run),
											 (Size) (run->movie_max / 8 + 1));
	if (SPI_execute("SELECT movie_id FROM recsys.movies", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.movies");
	for (i = 0; i < SPI_processed; i++)
	{
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		run->movie_bits[id / 8] |= (uint8) (1 << (id % 8));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* Read the file once: validate every row; produce events unless validating only. */
static void
run_pass(IngestRun *run, bool produce)
{
	static const char *const names[] = {"userId", "movieId", "rating", "timestamp"};
	char		err[1024];
	CsvRecord  *rec;
	int			rc;
	int			i;
	char		key[INGEST_KEY_MAX];
	char		value[INGEST_VALUE_MAX];
	char		reason[INGEST_REASON_MAX];
	IngestRating r;
	int64		base = run->job_id * INGEST_EVENT_ID_FACTOR;

	if (run->reader)
		CsvReaderClose(run->reader);
	run->reader = CsvReaderOpen(run->path, err, sizeof(err));
	if (run->reader == NULL)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FILE), errmsg_internal("%s", err)));
	if (CsvReaderHeader(run->reader, 4, names, run->col, err, sizeof(err)) != 0)
		ereport(ERROR, (errcode(ERRCODE_BAD_COPY_FILE_FORMAT), errmsg_internal("%s", err)));
	for (i = 0; i < 4; i++)
		if (run->col[i] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
					 errmsg("file \"%s\" lacks the column %s", run->path, names[i])));
	/* the header's field count is the expected count of every row */
	run->ncols = CsvReaderHeaderWidth(run->reader);
	run->lines = 0;
	run->rejected = produce ? run->base_rejected : 0;
	run->batch_rows = 0;
	run->last_flush = GetCurrentTimestamp();

	MemoryContextSwitchTo(run->batchcxt);
	while ((rc = CsvReaderNext(run->reader, &rec, err, sizeof(err))) == 1)
	{
		const char *why = NULL;

		run->lines++;
		if (produce && run->lines <= run->skip_lines)
		{
			/* resuming: a settled line, produced or rejected by the failed run */
			if ((++run->batch_rows & 4095) == 0)
			{
				check_interrupts();
				if (TimestampDifferenceExceeds(run->last_flush, GetCurrentTimestamp(), PROGRESS_MS))
				{
					char		activity[128];

					snprintf(activity, sizeof(activity),
							 "recsys ingest job %lld: skipping settled lines (%lld of %lld)",
							 (long long) run->job_id, (long long) run->lines,
							 (long long) run->skip_lines);
					pgstat_report_activity(STATE_RUNNING, activity);
					run->last_flush = GetCurrentTimestamp();
				}
			}
			if (run->lines == run->skip_lines)
				run->batch_rows = 0;
			continue;
		}
		if (rec->error != NULL)
			why = rec->error;	/* NUL byte, too long, unterminated quote */
		else if (rec->nfields != run->ncols)
		{
			snprintf(reason, sizeof(reason), "expected %d columns, found %d",
					 run->ncols, rec->nfields);
			why = reason;
		}
		else if (!rec->utf8_ok)
			why = "invalid UTF-8";
		else if (!IngestParseRating(rec->fields[run->col[0]], rec->fields[run->col[1]],
									rec->fields[run->col[2]], rec->fields[run->col[3]],
									&r, reason, sizeof(reason)))
			why = reason;
		else if (r.movie_id > run->movie_max ||
				 (run->movie_bits[r.movie_id / 8] & (1 << (r.movie_id % 8))) == 0)
		{
			snprintf(reason, sizeof(reason), "movieId %lld is not in the catalogue",
					 (long long) r.movie_id);
			why = reason;
		}

		if (why != NULL)
		{
			char	   *raw = palloc(rec->raw_len * 4 + 1);

			IngestSanitize(raw, rec->raw, rec->raw_len, CSV_RAW_MAX);
			if (run->stop_mode)
				ereport(ERROR,
						(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
						 errmsg("invalid row at line %lld of file \"%s\": %s",
								(long long) rec->line, run->path, why),
						 errdetail("The row is: %s", raw),
						 errhint("No event of this call was produced. Fix the row, or use on_error => 'reject' to record bad rows in recsys.ingest_rejects.")));
			run->rej_lines[run->nrejects] = Int64GetDatum(rec->line);
			run->rej_raw[run->nrejects] = CStringGetTextDatum(raw);
			run->rej_reason[run->nrejects] = CStringGetTextDatum(why);
			run->nrejects++;
			run->rejected++;
		}
		else if (produce)
		{
			int			kl = IngestFormatKey(key, &r);
			int			vl = IngestFormatValue(value, base + rec->line, &r);

			if (run->use_kafka)
			{
				rc = KafkaProduce(run->producer, key, kl, value, vl);
				if (rc != KAFKA_OK)
					kafka_fail(run, rc, "send events to Kafka");
				run->sent++;
			}
			else
			{
				StringInfo	s = &run->copydata;

				enlargeStringInfo(s, kl + vl + 2);
				memcpy(s->data + s->len, key, kl);
				s->len += kl;
				s->data[s->len++] = '\t';
				memcpy(s->data + s->len, value, vl);
				s->len += vl;
				s->data[s->len++] = '\n';
				s->data[s->len] = '\0';
				run->batch_events++;
			}
		}

		if (++run->batch_rows >= BATCH_ROWS || run->nrejects >= MAX_BATCH_REJECTS ||
			run->copydata.len >= COPY_BUFFER_MAX)
			flush_batch(run);
		else if ((run->batch_rows & 4095) == 0)
		{
			check_interrupts();
			if (TimestampDifferenceExceeds(run->last_flush, GetCurrentTimestamp(), PROGRESS_MS))
				flush_batch(run);
		}
	}
	if (rc < 0)
		ereport(ERROR, (errcode(ERRCODE_BAD_COPY_FILE_FORMAT), errmsg_internal("%s", err)));
	flush_batch(run);
}

/* Commit the batch: queue events, rejects, progress. */
static void
flush_batch(IngestRun *run)
{
	check_interrupts();
	MemoryContextSwitchTo(TopMemoryContext);
	if (run->use_kafka && run->producer)
	{
		KafkaProducerPoll(run->producer);
		/* 'reject': every event sent so far acknowledged before the progress says so */
		if (!run->stop_mode && run->sent > run->sent_at_commit)
		{
			int			rc = KafkaProducerFlush(run->producer, -1);

			if (rc != KAFKA_OK)
				kafka_fail(run, rc, "wait for Kafka acknowledgements");
		}
	}

	if (run->single_xact)
	{
		/* queue + stop: one transaction for every event, progress at the end */
		if (run->batch_events > 0)
			copy_events(run);
		run->queued += run->batch_events;
	}
	else
	{
		Datum		args[6];
		Oid			types[6] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (run->batch_events > 0)
			copy_events(run);
		if (run->nrejects > 0)
		{
			Datum		rargs[5];
			Oid			rtypes[5] = {INT8OID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID};

			rargs[0] = Int64GetDatum(run->job_id);
			rargs[1] = PointerGetDatum(construct_array(run->rej_lines, run->nrejects, INT8OID,
													   8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			rargs[2] = PointerGetDatum(construct_array(run->rej_raw, run->nrejects, TEXTOID,
													   -1, false, TYPALIGN_INT));
			rargs[3] = PointerGetDatum(construct_array(run->rej_reason, run->nrejects, TEXTOID,
													   -1, false, TYPALIGN_INT));
			rargs[4] = CStringGetTextDatum(run->path);
			SPI_execute_with_args("INSERT INTO recsys.ingest_rejects (job_id, line, raw, reason, file) "
								  "SELECT $1, l, r, w, $5 FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u(l, r, w) "
								  "ON CONFLICT (job_id, line) DO NOTHING",
								  5, rtypes, rargs, NULL, false, 0);
		}
		run->queued += run->batch_events;
		args[0] = Int64GetDatum(run->job_id);
		args[1] = Int64GetDatum(CsvReaderBytesRead(run->reader));
		args[2] = Int64GetDatum(run->lines);
		args[3] = Int64GetDatum(events_so_far(run));
		args[4] = Int64GetDatum(run->rejected);
		args[5] = Int64GetDatum(0);
		SPI_execute_with_args("UPDATE recsys.ingest_jobs SET bytes_read = $2, lines = $3, "
							  "events = $4, rejected = $5, updated_at = clock_timestamp() "
							  "WHERE job_id = $1",
							  5, types, args, NULL, false, 0);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		run->sent_at_commit = run->sent;
	}

	run->batch_events = 0;
	run->nrejects = 0;
	run->batch_rows = 0;
	resetStringInfo(&run->copydata);
	MemoryContextReset(run->batchcxt);
	MemoryContextSwitchTo(run->batchcxt);
	run->last_flush = GetCurrentTimestamp();
}

/* Events acknowledged (Kafka) or committed (queue) so far, a resumed job's before too. */
static int64
events_so_far(IngestRun *run)
{
	if (run->use_kafka)
		return run->base_events + (run->producer ? KafkaProducerAcked(run->producer) : 0);
	return run->base_events + run->queued;
}

/* Feed the batch's COPY data to CopyFrom. */
static int
copy_source_cb(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_src->len - copy_pos);

	memcpy(outbuf, copy_src->data + copy_pos, n);
	copy_pos += n;
	return n;
}

/* Insert the batch's events into recsys.event_queue with COPY's multi-insert path. */
static void
copy_events(IngestRun *run)
{
	Relation	rel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	CopyFromState cstate;

	rel = table_openrv(makeRangeVar("recsys", "event_queue", -1), RowExclusiveLock);
	pstate = make_parsestate(NULL);
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT;
	copy_src = &run->copydata;
	copy_pos = 0;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_source_cb,
						   list_make2(makeString("key"), makeString("value")), NIL);
	CopyFrom(cstate);
	EndCopyFrom(cstate);
	free_parsestate(pstate);
	table_close(rel, NoLock);
	copy_src = NULL;
}

/* Raise the producer's failure (or the pending interrupt). */
static void
kafka_fail(IngestRun *run, int rc, const char *what)
{
	int64		acked = KafkaProducerAcked(run->producer);

	if (rc == KAFKA_INTERRUPTED)
		check_interrupts();
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not %s: %s", what, KafkaProducerError(run->producer)),
			 errdetail("%lld events of ingest job %lld had been acknowledged%s.",
					   (long long) acked, (long long) run->job_id,
					   run->stop_mode ? " inside its Kafka transaction, which is aborted" : ""),
			 errhint("Check that the brokers of recsys.kafka_brokers are up; recsys.kafka_timeout bounds the wait.")));
}

/* Free library handles, aborting an open Kafka transaction; false if that failed. */
static bool
cleanup_run(IngestRun *run)
{
	bool		aborted = true;

	if (run->producer)
	{
		if (run->kafka_txn_open)
			aborted = KafkaAbortTransaction(run->producer) == KAFKA_OK;
		run->kafka_txn_open = false;
		KafkaProducerFree(run->producer);
		run->producer = NULL;
	}
	if (run->reader)
	{
		CsvReaderClose(run->reader);
		run->reader = NULL;
	}
	return aborted;
}

/* After an error: clean up, mark the job failed, hand the error to the caller. */
static void
finish_failed(IngestRun *run, ErrorData *edata)
{
	IngestShared *sh = run->sh;
	int64		events = run->producer ? KafkaProducerAcked(run->producer) : run->queued;

	bool		txn_pending;

	/* a failed 'stop' job published nothing */
	if (run->stop_mode)
		events = 0;
	txn_pending = !cleanup_run(run);
	AbortCurrentTransaction();
	run->single_xact = false;

	ereport(LOG,
			(errmsg("recsys ingest job %lld failed: %s", (long long) run->job_id, edata->message)));

	/*
	 * A 'reject' job keeps the progress of its last commit (a settled prefix, where a
	 * resume goes on) and says how many events it sent after it: those may be in the
	 * log.  A 'stop' job published nothing.
	 */
	if (run->job_created)
	{
		Datum		args[7];
		Oid			types[7] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID, BOOLOID, INT8OID};

		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		args[0] = Int64GetDatum(run->job_id);
		args[1] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
		args[2] = Int64GetDatum(events);
		args[3] = Int64GetDatum(run->lines);
		args[4] = Int64GetDatum(run->rejected);
		args[5] = BoolGetDatum(txn_pending);
		args[6] = Int64GetDatum(run->stop_mode ? 0 : run->sent - run->sent_at_commit);
		SPI_execute_with_args(run->stop_mode ?
							  "UPDATE recsys.ingest_jobs SET status = 'failed', error = $2, "
							  "events = $3, lines = $4, rejected = $5, kafka_txn_pending = $6, "
							  "events_unconfirmed = $7, "
							  "finished_at = clock_timestamp(), updated_at = clock_timestamp() "
							  "WHERE job_id = $1" :
							  "UPDATE recsys.ingest_jobs SET status = 'failed', error = $2, "
							  "kafka_txn_pending = $6, events_unconfirmed = $7, "
							  "finished_at = clock_timestamp(), updated_at = clock_timestamp() "
							  "WHERE job_id = $1",
							  7, types, args, NULL, false, 0);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}

	SpinLockAcquire(&sh->mutex);
	sh->sqlerrcode = edata->sqlerrcode;
	strlcpy(sh->message, edata->message ? edata->message : "unknown error", sizeof(sh->message));
	strlcpy(sh->detail, edata->detail ? edata->detail : "", sizeof(sh->detail));
	strlcpy(sh->hint, edata->hint ? edata->hint : "", sizeof(sh->hint));
	sh->events = events;
	sh->rejected = run->rejected;
	sh->state = INGEST_FAILED;
	SpinLockRelease(&sh->mutex);
	IngestNotifyCaller(sh);
}
