/*
 * ingest.c: the SQL surface of ingestion.
 *
 * - recsys_load_movies(path): movies.csv into recsys.movies, upserted in batches in
 *   the caller's transaction (one transaction: a bad row, or a record the reader
 *   cannot use, fails the whole load).
 * - recsys_ingest_csv(path, async, on_error): checks the caller's right to read
 *   server files and the file itself (so a missing file, anything but a regular file
 *   or missing columns fail at once, in both modes), then starts a "recsys ingest"
 *   background worker (ingest_worker.c) and talks to it through a dynamic shared
 *   memory segment.
 *   Synchronous: wait on our latch until the worker is done, re-raise its error; a
 *   cancel or statement_timeout terminates the worker (which marks its job failed).
 *   Async: return once the worker has committed the job row.
 * - recsys_ingest_resume(job_id, async): the same worker goes on with a failed job after
 *   its last settled line, with the job's event ids; the worker checks the job (its
 *   state, its target, its file against the fingerprint taken when it began) and a
 *   refusal comes back as the call's error, in both modes.
 * - recsys.rating_event(...): the row validation shared with the worker, for
 *   recsys_rate() and the \copy inbox; both need the relay, hence preloading.
 * - recsys.inbox_begin/inbox_line/inbox_end: the per-statement state of an insert into
 *   recsys.ratings_inbox (its job id and line counter), kept here in backend-local
 *   memory, never in settings a caller could set.  Only the inbox's triggers (security
 *   definers) may call them: EXECUTE is revoked from PUBLIC.  The state is a stack, one
 *   entry per statement (a statement may run another insert into the inbox from a
 *   function it calls): the BEFORE STATEMENT trigger pushes, the row trigger numbers
 *   the rows of the entry on top, the AFTER STATEMENT trigger pops.  Each entry
 *   remembers the subtransaction that pushed it: a subtransaction abort drops the
 *   entries it left (their job rows were rolled back with it), the end of the
 *   transaction drops everything.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/wait_event.h"

#include "csvreader.h"
#include "guc.h"
#include "ingest.h"
#include "ingest_event.h"
#include "recsys.h"

#define MOVIES_BATCH 5000

PG_FUNCTION_INFO_V1(recsys_load_movies);
PG_FUNCTION_INFO_V1(recsys_ingest_csv);
PG_FUNCTION_INFO_V1(recsys_ingest_resume);
PG_FUNCTION_INFO_V1(recsys_rating_event);
PG_FUNCTION_INFO_V1(recsys_inbox_begin);
PG_FUNCTION_INFO_V1(recsys_inbox_line);
PG_FUNCTION_INFO_V1(recsys_inbox_end);

/* Statements inserting into recsys.ratings_inbox may nest this deep. */
#define INBOX_MAX_DEPTH 32

typedef struct InboxStatement
{
	int64		job_id;
	int64		line;			/* last line numbered (the header is line 1) */
	SubTransactionId subid;		/* subtransaction that began the statement */
} InboxStatement;

static InboxStatement inbox_stack[INBOX_MAX_DEPTH];
static int	inbox_depth = 0;
static bool inbox_callbacks = false;

static void check_ratings_file(const char *path);
static void run_ingest_job(FunctionCallInfo fcinfo, const char *abspath, bool async,
						   bool stop_mode, int64 resume_job);
static void raise_reader_error(const char *err);
static void movies_flush(int n, Datum *ids, Datum *titles, Datum *years, bool *year_nulls,
						 Datum *genres);
static int	title_year(const char *title);
static char *movies_genres(const char *genres);
static void check_path_argument(const char *path);
static void inbox_xact_callback(XactEvent event, void *arg);
static void inbox_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								   SubTransactionId parentSubid, void *arg);
static InboxStatement *inbox_top(void);

/* Register the relay worker when preloaded. */
void
IngestInit(void)
{
	if (process_shared_preload_libraries_in_progress)
		OutboxInit();
}

/* Raise an error unless the current user may read server files, as COPY FROM does. */
void
IngestCheckFileAccess(void)
{
	if (!superuser() && !has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read files on the server"),
				 errdetail("Only superusers and roles with privileges of the \"pg_read_server_files\" role may read server files, as with COPY FROM a file."),
				 errhint("To send a file from the client, use \\copy recsys.ratings_inbox FROM 'ratings.csv' CSV HEADER.")));
}

/* Refuse an empty path: it would name the data directory. */
static void
check_path_argument(const char *path)
{
	if (path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("path must not be empty"),
				 errhint("Give the path of a CSV file on the server, such as '/srv/movielens/ratings.csv'.")));
}

/* Set the latch of the backend waiting for an ingest job. */
void
IngestNotifyCaller(IngestShared *sh)
{
	if (sh->caller_procno >= 0 && sh->caller_procno < (int) ProcGlobal->allProcCount)
		SetLatch(&GetPGProcByNumber(sh->caller_procno)->procLatch);
}

/* Raise a CsvReader open/read error with a fitting SQLSTATE. */
static void
raise_reader_error(const char *err)
{
	int			code = ERRCODE_BAD_COPY_FILE_FORMAT;

	if (strstr(err, "No such file") != NULL)
		code = ERRCODE_UNDEFINED_FILE;
	else if (strstr(err, "is a directory") != NULL || strstr(err, "is not a regular file") != NULL)
		code = ERRCODE_WRONG_OBJECT_TYPE;
	else if (strstr(err, "Permission denied") != NULL)
		code = ERRCODE_INSUFFICIENT_PRIVILEGE;
	else if (strstr(err, "could not") != NULL)
		code = ERRCODE_IO_ERROR;
	ereport(ERROR, (errcode(code), errmsg_internal("%s", err)));
}

/*
 * Fingerprint a regular file: size, modification time, SHA-256 of its first
 * INGEST_HEAD_BYTES in hex (65 bytes with the NUL).  Opened without blocking, so a
 * FIFO swapped in cannot hang us.
 */
bool
IngestFileFingerprint(const char *path, int64 *size, TimestampTz *mtime,
					  char *sha256_hex, char *err, size_t errlen)
{
	static char buf[65536];
	struct stat st;
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	int64		left = INGEST_HEAD_BYTES;
	int			fd;
	int			i;

	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
	{
		snprintf(err, errlen, "could not open file \"%s\": %s", path, strerror(errno));
		return false;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		snprintf(err, errlen, "\"%s\" is not a regular file", path);
		close(fd);
		return false;
	}
	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
	{
		snprintf(err, errlen, "could not start a SHA-256 hash");
		pg_cryptohash_free(ctx);
		close(fd);
		return false;
	}
	while (left > 0)
	{
		ssize_t		n = read(fd, buf, Min((int64) sizeof(buf), left));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			snprintf(err, errlen, "could not read file \"%s\": %s", path, strerror(errno));
			pg_cryptohash_free(ctx);
			close(fd);
			return false;
		}
		if (n == 0)
			break;
		if (pg_cryptohash_update(ctx, (uint8 *) buf, n) < 0)
		{
			snprintf(err, errlen, "could not hash file \"%s\"", path);
			pg_cryptohash_free(ctx);
			close(fd);
			return false;
		}
		left -= n;
	}
	close(fd);
	if (pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
	{
		snprintf(err, errlen, "could not finish a SHA-256 hash");
		pg_cryptohash_free(ctx);
		return false;
	}
	pg_cryptohash_free(ctx);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(sha256_hex + 2 * i, 3, "%02x", digest[i]);
	*size = (int64) st.st_size;
	*mtime = time_t_to_timestamptz(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec / 1000;
	return true;
}

/* Check that path is a readable ratings.csv with the needed columns. */
static void
check_ratings_file(const char *path)
{
	static const char *const names[] = {"userId", "movieId", "rating", "timestamp"};
	char		err[1024];
	int			idx[4];
	CsvReader  *r = CsvReaderOpen(path, err, sizeof(err));
	StringInfoData missing;
	int			i;

	if (r == NULL)
		raise_reader_error(err);
	if (CsvReaderHeader(r, 4, names, idx, err, sizeof(err)) != 0)
	{
		CsvReaderClose(r);
		raise_reader_error(err);
	}
	CsvReaderClose(r);
	initStringInfo(&missing);
	for (i = 0; i < 4; i++)
		if (idx[i] < 0)
			appendStringInfo(&missing, "%s%s", missing.len ? ", " : "", names[i]);
	if (missing.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
				 errmsg("file \"%s\" lacks the column(s) %s", path, missing.data),
				 errdetail("A MovieLens ratings file has the header userId,movieId,rating,timestamp (in any order).")));
}

/*
 * recsys_ingest_csv(path text, async boolean, on_error text)
 *   RETURNS TABLE (job_id bigint, events bigint, rejected bigint)
 */
Datum
recsys_ingest_csv(PG_FUNCTION_ARGS)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		async = PG_GETARG_BOOL(1);
	char	   *on_error = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *abspath;
	char		copy[MAXPGPATH];

	if (strcmp(on_error, "reject") != 0 && strcmp(on_error, "stop") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid on_error value \"%s\"", on_error),
				 errhint("Use 'reject' (bad rows go to recsys.ingest_rejects) or 'stop' (the first bad row fails the call).")));
	IngestCheckFileAccess();
	check_path_argument(path);
	abspath = make_absolute_path(path);
	if (strlen(abspath) >= MAXPGPATH)
		ereport(ERROR, (errcode(ERRCODE_NAME_TOO_LONG), errmsg("file path too long")));
	strlcpy(copy, abspath, sizeof(copy));
	free(abspath);
	check_ratings_file(copy);
	run_ingest_job(fcinfo, copy, async, strcmp(on_error, "stop") == 0, 0);
	return (Datum) 0;
}

/*
 * recsys_ingest_resume(job_id bigint, async boolean)
 *   RETURNS TABLE (job_id bigint, events bigint, rejected bigint)
 *
 * The worker reads the job row (the caller may have no right to), refuses a job
 * that is not failed or whose file changed, and goes on after its settled lines.
 */
Datum
recsys_ingest_resume(PG_FUNCTION_ARGS)
{
	int64		job_id = PG_GETARG_INT64(0);
	bool		async = PG_GETARG_BOOL(1);

	IngestCheckFileAccess();
	if (job_id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ingest job %lld does not exist", (long long) job_id)));
	run_ingest_job(fcinfo, "", async, false, job_id);
	return (Datum) 0;
}

/* What the caller of a job waits for: its end, or only its start when async. */
typedef struct IngestWait
{
	IngestShared *sh;
	bool		async;
} IngestWait;

/* Is the wait over: the job ended, or (async) its row is committed? */
static bool
ingest_wait_over(void *arg)
{
	IngestWait *w = arg;
	int			state;

	SpinLockAcquire(&w->sh->mutex);
	state = w->sh->state;
	SpinLockRelease(&w->sh->mutex);
	return state == INGEST_DONE || state == INGEST_FAILED || (w->async && state == INGEST_RUNNING);
}

/*
 * Start an ingest worker for a new job on abspath (resume_job = 0) or to resume a
 * job, wait for it (async: until its job row is committed), and return its row.
 */
static void
run_ingest_job(FunctionCallInfo fcinfo, const char *abspath, bool async, bool stop_mode,
			   int64 resume_job)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	dsm_segment *seg;
	IngestShared *sh;
	IngestWait	wait;
	RecsysWorkerLaunch launch;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int			state;
	char	   *props;

	InitMaterializedSRF(fcinfo, 0);

	props = RecsysKafkaConfigured() ? recsys_kafka_properties : "";
	seg = dsm_create(sizeof(IngestShared), 0);
	sh = (IngestShared *) dsm_segment_address(seg);
	memset(sh, 0, sizeof(IngestShared));
	SpinLockInit(&sh->mutex);
	sh->database = MyDatabaseId;
	sh->caller_procno = MyProc->pgprocno;
	sh->stop_mode = stop_mode;
	sh->resume_job = resume_job;
	sh->kafka_timeout_ms = recsys_kafka_timeout_ms;
	strlcpy(sh->path, abspath, sizeof(sh->path));
	strlcpy(sh->submitted_by, GetUserNameFromId(GetUserId(), false), sizeof(sh->submitted_by));
	if (RecsysKafkaConfigured())
	{
		if (strlen(recsys_kafka_brokers) >= sizeof(sh->brokers) ||
			strlen(recsys_kafka_topic) >= sizeof(sh->topic) ||
			strlen(props) >= sizeof(sh->properties))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("recsys.kafka_brokers, recsys.kafka_topic or recsys.kafka_properties is too long")));
		strlcpy(sh->brokers, recsys_kafka_brokers, sizeof(sh->brokers));
		strlcpy(sh->topic, recsys_kafka_topic, sizeof(sh->topic));
		strlcpy(sh->properties, props, sizeof(sh->properties));
	}

	wait.sh = sh;
	wait.async = async;
	launch.function = "IngestWorkerMain";
	launch.name = psprintf("recsys ingest for %s", sh->submitted_by);
	launch.type = "recsys ingest";
	launch.done = ingest_wait_over;
	launch.arg = &wait;
	launch.terminate_on_cancel = !async;	/* a synchronous job dies with its caller */
	launch.poll_ms = 200;
	launch.start_error = "could not start an ingest background worker";
	launch.start_hint = "Raise max_worker_processes, or wait for running jobs to finish.";
	launch.exit_error = "the ingest worker exited without finishing its job";
	launch.exit_hint = "See the server log; recsys.ingest_jobs shows the job.";
	RecsysRunWorker(&launch, seg);
	SpinLockAcquire(&sh->mutex);
	state = sh->state;
	SpinLockRelease(&sh->mutex);

	if (state == INGEST_FAILED)
		RecsysRaiseWorkerError(seg, sh->sqlerrcode, sh->message, sh->detail, sh->hint);

	values[0] = Int64GetDatum(sh->job_id);
	if (async && state != INGEST_DONE)
		nulls[1] = nulls[2] = true;
	else
	{
		values[1] = Int64GetDatum(sh->events);
		values[2] = Int64GetDatum(sh->rejected);
	}
	dsm_detach(seg);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * recsys.rating_event(event_id, user_id, movie_id, rating, ts, OUT key, OUT value,
 * OUT reason): validate one rating as the ingest worker does and build its event.
 */
Datum
recsys_rating_event(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};
	const char *f[4];
	int			i;
	IngestRating r;
	char		reason[INGEST_REASON_MAX];

	RecsysRequirePreload("recsys_rate() and recsys.ratings_inbox");
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	for (i = 0; i < 4; i++)
		f[i] = PG_ARGISNULL(i + 1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(i + 1));

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("event_id must not be null")));
	if (IngestParseRating(f[0], f[1], f[2], f[3], &r, reason, sizeof(reason)))
	{
		char		key[INGEST_KEY_MAX];
		char		value[INGEST_VALUE_MAX];

		IngestFormatKey(key, &r);
		IngestFormatValue(value, PG_GETARG_INT64(0), &r);
		values[0] = CStringGetTextDatum(key);
		values[1] = CStringGetTextDatum(value);
		nulls[0] = nulls[1] = false;
	}
	else
	{
		values[2] = CStringGetTextDatum(reason);
		nulls[2] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* Drop every inbox statement at the end of the transaction. */
static void
inbox_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			inbox_depth = 0;
			break;
		default:
			break;
	}
}

/* Drop the statements of an aborted subtransaction; hand a committed one's to its parent. */
static void
inbox_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			i;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		while (inbox_depth > 0 && inbox_stack[inbox_depth - 1].subid >= mySubid)
			inbox_depth--;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (i = 0; i < inbox_depth; i++)
			if (inbox_stack[i].subid == mySubid)
				inbox_stack[i].subid = parentSubid;
	}
}

/* Return the innermost inbox statement; raise an error outside of one. */
static InboxStatement *
inbox_top(void)
{
	if (inbox_depth == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no insert into recsys.ratings_inbox is running"),
				 errdetail("This function serves the triggers of recsys.ratings_inbox only.")));
	return &inbox_stack[inbox_depth - 1];
}

/* recsys.inbox_begin(job_id bigint): an insert into the inbox begins, as job job_id. */
Datum
recsys_inbox_begin(PG_FUNCTION_ARGS)
{
	InboxStatement *st;

	if (!inbox_callbacks)
	{
		RegisterXactCallback(inbox_xact_callback, NULL);
		RegisterSubXactCallback(inbox_subxact_callback, NULL);
		inbox_callbacks = true;
	}
	if (inbox_depth >= INBOX_MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("inserts into recsys.ratings_inbox nest too deep"),
				 errdetail("At most %d such inserts may run inside one another.", INBOX_MAX_DEPTH)));
	st = &inbox_stack[inbox_depth++];
	st->job_id = PG_GETARG_INT64(0);
	st->line = 1;
	st->subid = GetCurrentSubTransactionId();
	PG_RETURN_VOID();
}

/*
 * recsys.inbox_line(OUT job_id bigint, OUT line bigint): number the next row of the
 * innermost insert into the inbox.
 */
Datum
recsys_inbox_line(PG_FUNCTION_ARGS)
{
	InboxStatement *st = inbox_top();
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	st->line++;
	values[0] = Int64GetDatum(st->job_id);
	values[1] = Int64GetDatum(st->line);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * recsys.inbox_end(OUT job_id bigint, OUT lines bigint): the innermost insert into
 * the inbox ends; return its job and the data lines it read.
 */
Datum
recsys_inbox_end(PG_FUNCTION_ARGS)
{
	InboxStatement *st = inbox_top();
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(st->job_id);
	values[1] = Int64GetDatum(st->line - 1);
	inbox_depth--;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* Return the year in "Title (YYYY)" (trailing blanks allowed), or -1. */
static int
title_year(const char *title)
{
	size_t		n = strlen(title);
	int			year = 0,
				i;

	while (n > 0 && (title[n - 1] == ' ' || title[n - 1] == '\t'))
		n--;
	if (n < 6 || title[n - 1] != ')' || title[n - 6] != '(')
		return -1;
	for (i = n - 5; i < (int) n - 1; i++)
	{
		if (title[i] < '0' || title[i] > '9')
			return -1;
		year = year * 10 + (title[i] - '0');
	}
	return year;
}

/*
 * Return genres as a '|'-separated list for string_to_array ("" for none); empty
 * names ("Adventure|||") are dropped by movies_flush.
 */
static char *
movies_genres(const char *genres)
{
	if (strcmp(genres, "(no genres listed)") == 0)
		return "";
	return (char *) genres;
}

/* Upsert one batch of movies (the last duplicate of an id wins). */
static void
movies_flush(int n, Datum *ids, Datum *titles, Datum *years, bool *year_nulls, Datum *genres)
{
	static const char *sql =
		"INSERT INTO recsys.movies AS m (movie_id, title, year, genres) "
		"SELECT DISTINCT ON (id) id, title, year, "
		"       coalesce(array_remove(string_to_array(genres, '|'), ''), '{}') "
		"FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[]) "
		"     WITH ORDINALITY AS u(id, title, year, genres, ord) "
		"ORDER BY id, ord DESC "
		"ON CONFLICT (movie_id) DO UPDATE SET title = excluded.title, "
		"year = excluded.year, genres = excluded.genres, loaded_at = now()";
	Oid			types[4] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
	Datum		args[4];
	int			dims[1] = {n};
	int			lbs[1] = {1};

	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(titles, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_md_array(years, year_nulls, 1, dims, lbs, INT4OID, 4, true, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_array(genres, n, TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_with_args(sql, 4, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not upsert movies");
}

/* recsys_load_movies(path text) RETURNS bigint */
Datum
recsys_load_movies(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"movieId", "title", "genres"};
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char		err[1024];
	int			idx[3];
	CsvReader  *volatile r = NULL;
	int64		loaded = 0;
	MemoryContext batchcxt;
	MemoryContext oldcxt;

	IngestCheckFileAccess();
	check_path_argument(path);
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "recsys_load_movies batch",
									 ALLOCSET_DEFAULT_SIZES);
	PG_TRY();
	{
		CsvRecord  *rec;
		Datum	   *ids = palloc(sizeof(Datum) * MOVIES_BATCH);
		Datum	   *titles = palloc(sizeof(Datum) * MOVIES_BATCH);
		Datum	   *years = palloc(sizeof(Datum) * MOVIES_BATCH);
		bool	   *year_nulls = palloc(sizeof(bool) * MOVIES_BATCH);
		Datum	   *genres = palloc(sizeof(Datum) * MOVIES_BATCH);
		int			n = 0;
		int			rc;
		int			ncols;

		r = CsvReaderOpen(path, err, sizeof(err));
		if (r == NULL)
			raise_reader_error(err);
		if (CsvReaderHeader(r, 3, names, idx, err, sizeof(err)) != 0)
			raise_reader_error(err);
		if (idx[0] < 0 || idx[1] < 0 || idx[2] < 0)
		{
			StringInfoData missing;
			int			i;

			initStringInfo(&missing);
			for (i = 0; i < 3; i++)
				if (idx[i] < 0)
					appendStringInfo(&missing, "%s%s", missing.len ? ", " : "", names[i]);
			ereport(ERROR,
					(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
					 errmsg("file \"%s\" lacks the column(s) %s", path, missing.data),
					 errdetail("A MovieLens movies file has the header movieId,title,genres (in any order).")));
		}
		ncols = Max(idx[0], Max(idx[1], idx[2])) + 1;

		SPI_connect();
		oldcxt = MemoryContextSwitchTo(batchcxt);
		while ((rc = CsvReaderNext(r, &rec, err, sizeof(err))) == 1)
		{
			int64		id;
			const char *title;
			int			year;

			if (rec->error != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
						 errmsg("line %lld of file \"%s\" cannot be read: %s",
								(long long) rec->line, path, rec->error),
						 errdetail("No movie of this file was loaded.")));
			if (rec->nfields < ncols)
				ereport(ERROR,
						(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
						 errmsg("line %lld of file \"%s\" has %d columns, expected %d",
								(long long) rec->line, path, rec->nfields, ncols)));
			if (!rec->utf8_ok)
				ereport(ERROR,
						(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
						 errmsg("line %lld of file \"%s\" is not valid UTF-8",
								(long long) rec->line, path)));
			if (!IngestParseId(rec->fields[idx[0]], &id))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("line %lld of file \"%s\": movieId \"%s\" is not a positive integer",
								(long long) rec->line, path, rec->fields[idx[0]])));
			title = rec->fields[idx[1]];
			if (title[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("line %lld of file \"%s\": empty title", (long long) rec->line, path)));
			year = title_year(title);
			ids[n] = Int64GetDatum(id);
			titles[n] = CStringGetTextDatum(title);
			years[n] = Int32GetDatum(year);
			year_nulls[n] = year < 0;
			genres[n] = CStringGetTextDatum(movies_genres(rec->fields[idx[2]]));
			if (++n == MOVIES_BATCH)
			{
				MemoryContextSwitchTo(oldcxt);
				movies_flush(n, ids, titles, years, year_nulls, genres);
				loaded += n;
				n = 0;
				MemoryContextReset(batchcxt);
				MemoryContextSwitchTo(batchcxt);
				CHECK_FOR_INTERRUPTS();
			}
		}
		if (rc < 0)
			raise_reader_error(err);
		MemoryContextSwitchTo(oldcxt);
		if (n > 0)
			movies_flush(n, ids, titles, years, year_nulls, genres);
		loaded += n;
		SPI_finish();
	}
	PG_FINALLY();
	{
		CsvReaderClose(r);
	}
	PG_END_TRY();
	MemoryContextDelete(batchcxt);
	PG_RETURN_INT64(loaded);
}
