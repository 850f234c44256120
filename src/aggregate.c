/*
 * aggregate.c: recsys_aggregate(), its "recsys aggregate" worker, the run's history
 * and its progress.
 *
 * Design
 * - The caller (a session, or pg_cron's job) starts a dynamic background worker and
 *   waits for it, like recsys_ingest_csv: the worker's transactions are its own, so
 *   the run's history row is committed whatever the caller's transaction does, and a
 *   failed run is recorded too.  A cancel of the caller (or statement_timeout)
 *   terminates the worker; its SIGTERM handler turns into a query cancel, so the
 *   worker aborts at its next interrupt check, which every kernel reaches within a
 *   second.  The result and any error come back through a small DSM segment.
 * - The worker runs three transactions: (1) record the run as 'running' (and mark
 *   failed the runs whose worker is gone: a crash leaves them 'running'); (2) the run
 *   itself, under a transaction-level advisory lock, so a second aggregate waits for
 *   the first; every derived table and the watermark (recsys.aggregate_objects)
 *   change in this one transaction, together with the run row's 'succeeded'; (3) on
 *   failure only, after the abort: the run row's 'failed' and its error.  A crash or
 *   an immediate stop inside (2) therefore leaves the derived tables and the
 *   watermark as they were, and the next run starts from the same place.
 * - Readers never wait: the run only inserts, deletes and updates rows (COPY's bulk
 *   path for the big loads), never TRUNCATE, ALTER or a rename, so it takes no lock
 *   that conflicts with SELECT; readers see the previous run until (2) commits.
 *   Every derived table is WAL-logged, so a crash cannot empty one behind the
 *   watermark's back.
 * - Shared memory holds one progress slot per running aggregate (phase, objects and
 *   events done of the total), read by recsys.aggregate_progress.
 * - Memory: the run's working set lives in its own context (huge allocations for the
 *   event array, malloc inside the plain-C kernels, freed on every path).
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "aggregate.h"
#include "guc.h"
#include "rank.h"
#include "recsys.h"

#define AGG_PROGRESS_SLOTS	8
#define AGG_LOCK_KEY		INT64CONST(7310309281234567) /* pg_advisory_xact_lock key */
#define AGG_RUNS_KEPT		1000

/* states of a run, as seen through AggCall */
#define AGG_STARTING	0
#define AGG_DONE		1
#define AGG_FAILED		2

/* The caller's and the worker's shared view of one call. */
typedef struct AggCall
{
	slock_t		mutex;
	Oid			database;
	bool		rebuild;
	char		submitted_by[NAMEDATALEN];
	/* the caller's settings of the stage, so that SET in a session applies */
	int			neighbors_k;
	double		neighbors_refresh;
	int			neighbors_user_cap;
	double		neighbors_alpha;
	double		neighbors_beta;
	double		neighbors_shrink;
	int			neighbors_min_common;
	int			neighbors_threads;
	int			state;
	int64		run_id;
	int64		objects;
	int64		events;
	int64		users;
	int64		movies;
	double		seconds;
	int			sqlerrcode;
	char		message[1024];
	char		detail[1024];
	char		hint[512];
} AggCall;

typedef struct AggProgressSlot
{
	pid_t		pid;			/* 0: free */
	int64		run_id;
	bool		rebuild;
	char		phase[64];
	int64		objects_done;
	int64		objects_total;
	int64		events_done;
	int64		events_total;
	TimestampTz started_at;
	TimestampTz phase_at;
} AggProgressSlot;

typedef struct AggShared
{
	slock_t		mutex;
	AggProgressSlot slots[AGG_PROGRESS_SLOTS];
} AggShared;

static AggShared *Shared = NULL;
static AggProgressSlot *MySlot = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static volatile sig_atomic_t got_sigterm = false;

PG_FUNCTION_INFO_V1(recsys_aggregate);
PG_FUNCTION_INFO_V1(recsys_aggregate_progress);

static void agg_shmem_request(void);
static void agg_shmem_startup(void);
static void agg_sigterm(SIGNAL_ARGS);
static void agg_release_slot(int code, Datum arg);
static void agg_claim_slot(AggRun *run);
static int64 begin_run(AggRun *run, const char *submitted_by);
static void do_run(AggRun *run, AggCall *call);
static void fail_run(AggRun *run, ErrorData *edata);
static int64 peak_memory_bytes(void);
static void free_run(AggRun *run);
static void analyze_changed(AggRun *run);
static void advance_id_sequences(AggRun *run);

/* The crash and cancel suites' pause points (recsys.c), released by the suite. */
void
AggFaultPoint(const char *point)
{
	RecsysFaultPoint("aggregate", point, true);
}

/* Register the progress slots' shared memory (only when preloaded). */
void
AggregateInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = agg_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = agg_shmem_startup;
}

static void
agg_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(AggShared)));
}

static void
agg_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	Shared = ShmemInitStruct("recsys aggregate", sizeof(AggShared), &found);
	if (!found)
	{
		memset(Shared, 0, sizeof(AggShared));
		SpinLockInit(&Shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* SIGTERM (the caller was cancelled, a terminate, a shutdown): cancel the run. */
static void
agg_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Nonzero when the run must stop (kernels poll this; see AggKernelCheck). */
int
AggInterrupt(void *arg)
{
	return got_sigterm || QueryCancelPending || ProcDiePending;
}

/* Raise what a kernel's return code means. */
void
AggKernelCheck(int rc, const char *what)
{
	if (rc == MERGE_OK)
		return;
	if (rc == MERGE_INTERRUPTED)
	{
		CHECK_FOR_INTERRUPTS();
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("aggregate cancelled while %s", what)));
	}
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory while %s", what),
			 errdetail_internal("kernel code %d", rc)));
}

/* ---------------------------------------------------------------------------------
 * Ids to slots (movie ids for the statistics, the profiles and the neighbours)
 * ---------------------------------------------------------------------------------
 */

/* Build the map from ids (sorted and deduplicated here; the array is kept). */
void
AggIdMapBuild(AggIdMap *m, int64 *ids, int64 n)
{
	int64		i,
				k = 0;

	if (n > 1)
	{
		MergePair  *p = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(MergePair) * n);
		MergePair  *tmp = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(MergePair) * n);

		for (i = 0; i < n; i++)
		{
			p[i].key = (uint64) ids[i] ^ ((uint64) 1 << 63);
			p[i].val = 0;
		}
		AggKernelCheck(MergeRadixSort(p, tmp, n, AggInterrupt, NULL), "sorting movie ids");
		for (i = 0; i < n; i++)
		{
			int64		id = (int64) (p[i].key ^ ((uint64) 1 << 63));

			if (k == 0 || ids[k - 1] != id)
				ids[k++] = id;
		}
		pfree(p);
		pfree(tmp);
	}
	else
		k = n;
	m->ids = ids;
	m->n = k;
	m->dense = NULL;
	m->dense_n = 0;
	if (k > 0 && ids[0] >= 0 && ids[k - 1] < AGG_DENSE_MAX_ID)
	{
		m->dense_n = ids[k - 1] + 1;
		m->dense = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int32) * m->dense_n);
		memset(m->dense, 0xff, sizeof(int32) * m->dense_n);
		for (i = 0; i < k; i++)
			m->dense[ids[i]] = (int32) i;
	}
}

/* The slot of id, or -1. */
int64
AggIdMapFind(const AggIdMap *m, int64 id)
{
	int64		lo = 0,
				hi = m->n - 1;

	if (m->dense)
		return (id >= 0 && id < m->dense_n) ? m->dense[id] : -1;
	while (lo <= hi)
	{
		int64		mid = lo + (hi - lo) / 2;

		if (m->ids[mid] == id)
			return mid;
		if (m->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* ---------------------------------------------------------------------------------
 * Progress
 * ---------------------------------------------------------------------------------
 */

static void
agg_claim_slot(AggRun *run)
{
	int			i;

	if (Shared == NULL)
		return;
	SpinLockAcquire(&Shared->mutex);
	for (i = 0; i < AGG_PROGRESS_SLOTS; i++)
		if (Shared->slots[i].pid == 0)
		{
			MySlot = &Shared->slots[i];
			memset(MySlot, 0, sizeof(AggProgressSlot));
			MySlot->pid = MyProcPid;
			MySlot->run_id = run->run_id;
			MySlot->rebuild = run->rebuild;
			MySlot->started_at = MySlot->phase_at = GetCurrentTimestamp();
			strlcpy(MySlot->phase, "starting", sizeof(MySlot->phase));
			break;
		}
	SpinLockRelease(&Shared->mutex);
	if (MySlot)
		before_shmem_exit(agg_release_slot, (Datum) 0);
}

static void
agg_release_slot(int code, Datum arg)
{
	if (Shared == NULL || MySlot == NULL)
		return;
	SpinLockAcquire(&Shared->mutex);
	MySlot->pid = 0;
	SpinLockRelease(&Shared->mutex);
	MySlot = NULL;
}

/* Enter a phase: shown in recsys.aggregate_progress and pg_stat_activity. */
void
AggProgressPhase(const char *phase)
{
	char		activity[96];

	snprintf(activity, sizeof(activity), "recsys aggregate: %s", phase);
	pgstat_report_activity(STATE_RUNNING, activity);
	if (MySlot == NULL)
		return;
	SpinLockAcquire(&Shared->mutex);
	strlcpy(MySlot->phase, phase, sizeof(MySlot->phase));
	MySlot->phase_at = GetCurrentTimestamp();
	SpinLockRelease(&Shared->mutex);
}

void
AggProgressTotals(int64 objects, int64 events)
{
	if (MySlot == NULL)
		return;
	SpinLockAcquire(&Shared->mutex);
	MySlot->objects_total = objects;
	MySlot->events_total = events;
	SpinLockRelease(&Shared->mutex);
}

void
AggProgressDone(int64 objects, int64 events)
{
	if (MySlot == NULL)
		return;
	SpinLockAcquire(&Shared->mutex);
	MySlot->objects_done = objects;
	MySlot->events_done = events;
	SpinLockRelease(&Shared->mutex);
}

/* recsys.aggregate_progress_info(): one row per running aggregate. */
Datum
recsys_aggregate_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AggProgressSlot slots[AGG_PROGRESS_SLOTS];
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (Shared == NULL)
		return (Datum) 0;
	SpinLockAcquire(&Shared->mutex);
	memcpy(slots, Shared->slots, sizeof(slots));
	SpinLockRelease(&Shared->mutex);
	for (i = 0; i < AGG_PROGRESS_SLOTS; i++)
	{
		Datum		v[10];
		bool		n[10] = {0};

		if (slots[i].pid == 0)
			continue;
		v[0] = Int32GetDatum(slots[i].pid);
		v[1] = Int64GetDatum(slots[i].run_id);
		v[2] = BoolGetDatum(slots[i].rebuild);
		v[3] = CStringGetTextDatum(slots[i].phase);
		v[4] = Int64GetDatum(slots[i].objects_done);
		v[5] = Int64GetDatum(slots[i].objects_total);
		v[6] = Int64GetDatum(slots[i].events_done);
		v[7] = Int64GetDatum(slots[i].events_total);
		v[8] = TimestampTzGetDatum(slots[i].started_at);
		v[9] = TimestampTzGetDatum(slots[i].phase_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------------------
 * The SQL function: start the worker, wait, return its result or raise its error
 * ---------------------------------------------------------------------------------
 */
/* Has the worker taken the call further than starting (done or failed)? */
static bool
agg_call_started(void *arg)
{
	AggCall    *call = arg;
	int			state;

	SpinLockAcquire(&call->mutex);
	state = call->state;
	SpinLockRelease(&call->mutex);
	return state != AGG_STARTING;
}

Datum
recsys_aggregate(PG_FUNCTION_ARGS)
{
	bool		rebuild = PG_GETARG_BOOL(0);
	TupleDesc	tupdesc;
	dsm_segment *seg;
	AggCall    *call;
	RecsysWorkerLaunch launch;
	int			state;
	Datum		values[5];
	bool		nulls[5] = {0};

	RecsysRequirePreload("recsys_aggregate()");
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("recsys_aggregate() cannot run on a standby"),
				 errhint("Run it on the primary; the derived tables reach standbys by replication.")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	seg = dsm_create(sizeof(AggCall), 0);
	call = (AggCall *) dsm_segment_address(seg);
	memset(call, 0, sizeof(AggCall));
	SpinLockInit(&call->mutex);
	call->database = MyDatabaseId;
	call->rebuild = rebuild;
	strlcpy(call->submitted_by, GetUserNameFromId(GetUserId(), false), sizeof(call->submitted_by));
	call->neighbors_k = recsys_neighbors_k;
	call->neighbors_refresh = recsys_neighbors_refresh;
	call->neighbors_user_cap = recsys_neighbors_user_cap;
	call->neighbors_alpha = recsys_neighbors_alpha;
	call->neighbors_beta = recsys_neighbors_beta;
	call->neighbors_shrink = recsys_neighbors_shrink;
	call->neighbors_min_common = recsys_neighbors_min_common;
	call->neighbors_threads = recsys_neighbors_threads;

	launch.function = "AggregateWorkerMain";
	launch.name = psprintf("recsys aggregate for %s", call->submitted_by);
	launch.type = "recsys aggregate";
	launch.done = agg_call_started;
	launch.arg = call;
	launch.terminate_on_cancel = true;		/* cancelled while waiting: the run dies with us */
	launch.poll_ms = 100;
	launch.start_error = "could not start the aggregate background worker";
	launch.start_hint = "Raise max_worker_processes, or wait for other recsys jobs to finish.";
	launch.exit_error = "the aggregate worker exited without finishing its run";
	launch.exit_hint = "See the server log; the derived tables are unchanged.";
	RecsysRunWorker(&launch, seg);
	SpinLockAcquire(&call->mutex);
	state = call->state;
	SpinLockRelease(&call->mutex);

	if (state == AGG_FAILED)
		RecsysRaiseWorkerError(seg, call->sqlerrcode, call->message, call->detail, call->hint);
	values[0] = Int64GetDatum(call->objects);
	values[1] = Int64GetDatum(call->events);
	values[2] = Int64GetDatum(call->users);
	values[3] = Int64GetDatum(call->movies);
	values[4] = Float8GetDatum(call->seconds);
	dsm_detach(seg);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---------------------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------------------
 */
void
AggregateWorkerMain(Datum main_arg)
{
	dsm_segment *seg;
	AggCall    *call;
	AggRun	   *run;
	MemoryContext runcxt;
	TimestampTz start;

	pqsignal(SIGTERM, agg_sigterm);
	BackgroundWorkerUnblockSignals();

	CurrentResourceOwner = ResourceOwnerCreate(NULL, "recsys aggregate");
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the caller of this aggregate has gone")));
	dsm_pin_mapping(seg);
	call = (AggCall *) dsm_segment_address(seg);

	BackgroundWorkerInitializeConnectionByOid(call->database, InvalidOid, 0);
	pgstat_report_appname("recsys aggregate");
	recsys_neighbors_k = call->neighbors_k;
	recsys_neighbors_refresh = call->neighbors_refresh;
	recsys_neighbors_user_cap = call->neighbors_user_cap;
	recsys_neighbors_alpha = call->neighbors_alpha;
	recsys_neighbors_beta = call->neighbors_beta;
	recsys_neighbors_shrink = call->neighbors_shrink;
	recsys_neighbors_min_common = call->neighbors_min_common;
	recsys_neighbors_threads = call->neighbors_threads;

	runcxt = AllocSetContextCreate(TopMemoryContext, "recsys aggregate", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(runcxt);
	run = palloc0(sizeof(AggRun));
	run->cxt = AllocSetContextCreate(runcxt, "recsys aggregate run", ALLOCSET_DEFAULT_SIZES);
	run->rebuild = call->rebuild;
	start = GetCurrentTimestamp();

	PG_TRY();
	{
		run->run_id = begin_run(run, call->submitted_by);
		agg_claim_slot(run);
		do_run(run, call);
		SpinLockAcquire(&call->mutex);
		call->run_id = run->run_id;
		call->objects = run->objects_read;
		call->events = run->nev;
		call->users = run->users;
		call->movies = run->movies;
		call->seconds = (double) (GetCurrentTimestamp() - start) / 1000000.0;
		call->state = AGG_DONE;
		SpinLockRelease(&call->mutex);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(runcxt);
		edata = CopyErrorData();
		FlushErrorState();
		free_run(run);
		fail_run(run, edata);
		SpinLockAcquire(&call->mutex);
		call->run_id = run->run_id;
		call->sqlerrcode = edata->sqlerrcode;
		strlcpy(call->message, edata->message ? edata->message : "aggregate failed", sizeof(call->message));
		if (edata->detail)
			strlcpy(call->detail, edata->detail, sizeof(call->detail));
		if (edata->hint)
			strlcpy(call->hint, edata->hint, sizeof(call->hint));
		call->state = AGG_FAILED;
		SpinLockRelease(&call->mutex);
	}
	PG_END_TRY();

	dsm_detach(seg);
	proc_exit(0);
}

/*
 * Transaction 1: mark failed the runs whose worker is gone, keep the newest
 * AGG_RUNS_KEPT rows, record this run as 'running'; return its id.
 */
static int64
begin_run(AggRun *run, const char *submitted_by)
{
	Oid			types[3] = {BOOLOID, TEXTOID, INT4OID};
	Datum		values[3];
	int64		run_id;
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	AggProgressPhase("starting");

	if (SPI_execute("UPDATE recsys.aggregate_runs r SET status = 'failed', finished_at = now(),"
					" error = coalesce(r.error, 'the aggregate worker exited without finishing the run"
					" (server crash, immediate shutdown or kill); its changes were rolled back')"
					" WHERE r.status = 'running' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a"
					" WHERE a.pid = r.worker_pid AND a.backend_type = 'recsys aggregate')",
					false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not reconcile recsys.aggregate_runs");
	if (SPI_execute("DELETE FROM recsys.aggregate_runs WHERE run_id <= "
					"(SELECT run_id FROM recsys.aggregate_runs ORDER BY run_id DESC"
					" OFFSET " CppAsString2(AGG_RUNS_KEPT) " LIMIT 1)",
					false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not trim recsys.aggregate_runs");

	values[0] = BoolGetDatum(run->rebuild);
	values[1] = CStringGetTextDatum(submitted_by);
	values[2] = Int32GetDatum(MyProcPid);
	if (SPI_execute_with_args("INSERT INTO recsys.aggregate_runs (rebuild, submitted_by, worker_pid)"
							  " VALUES ($1, $2, $3) RETURNING run_id",
							  3, types, values, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into recsys.aggregate_runs");
	run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return run_id;
}

/* Transaction 2: the run.  Errors propagate to AggregateWorkerMain. */
static void
do_run(AggRun *run, AggCall *call)
{
	TimestampTz start = GetCurrentTimestamp();
	Oid			types[10] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	BOOLOID, FLOAT8OID, INT8OID};
	Datum		values[10];
	char		lockq[128];

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	/* the ranking's copies of the movie statistics are reloaded once this commits */
	RankDataChangedAfterCommit();

	/* a second aggregate waits for the first */
	AggProgressPhase("waiting for another aggregate");
	snprintf(lockq, sizeof(lockq), "SELECT pg_catalog.pg_advisory_xact_lock(" INT64_FORMAT ")",
			 AGG_LOCK_KEY);
	if (SPI_execute(lockq, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not take the aggregate lock");

	MemoryContextSwitchTo(run->cxt);
	run->store = ArchiveStoreOpen(AggInterrupt, NULL, 2);

	AggListObjects(run);
	AggReadObjects(run);
	AggFaultPoint("after_read");
	AggMergeRatings(run);
	AggFaultPoint("after_ratings");
	AggUpdateProfiles(run);
	AggUpdateMovieStats(run);
	AggUpdateNeighbors(run);
	AggRecordObjects(run);
	analyze_changed(run);
	advance_id_sequences(run);
	AggFaultPoint("before_commit");

	AggProgressPhase("committing");
	values[0] = Int64GetDatum(run->run_id);
	values[1] = Int64GetDatum(run->objects_read);
	values[2] = Int64GetDatum(run->quarantined);
	values[3] = Int64GetDatum(run->nev);
	values[4] = Int64GetDatum(run->duplicates);
	values[5] = Int64GetDatum(run->nchanges);
	values[6] = Int64GetDatum(run->users);
	values[7] = BoolGetDatum(run->neighbors_refreshed);
	values[8] = Float8GetDatum((double) (GetCurrentTimestamp() - start) / 1000000.0);
	values[9] = Int64GetDatum(run->movies);
	if (SPI_execute_with_args("UPDATE recsys.aggregate_runs SET status = 'succeeded',"
							  " finished_at = clock_timestamp(), objects = $2, quarantined = $3,"
							  " events = $4, duplicates = $5, ratings_changed = $6, users = $7,"
							  " neighbors_refreshed = $8, seconds = $9, movies = $10"
							  " WHERE run_id = $1",
							  10, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update recsys.aggregate_runs");
	{
		Oid			t2[2] = {INT8OID, INT8OID};
		Datum		v2[2];

		v2[0] = Int64GetDatum(run->run_id);
		v2[1] = Int64GetDatum(peak_memory_bytes());
		SPI_execute_with_args("UPDATE recsys.aggregate_runs SET peak_memory_bytes = $2 WHERE run_id = $1",
							  2, t2, v2, NULL, false, 0);
	}

	free_run(run);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	ereport(LOG,
			(errmsg("recsys aggregate run " INT64_FORMAT " done: %lld objects, %lld events (%lld duplicates), %lld ratings changed, %lld users, %lld movies%s",
					run->run_id, (long long) run->objects_read, (long long) run->nev,
					(long long) run->duplicates, (long long) run->nchanges,
					(long long) run->users, (long long) run->movies,
					run->neighbors_refreshed ? ", neighbours recomputed" : "")));
}

/*
 * Move recsys.rating_event_id_seq and recsys.ingest_jobs_job_id_seq past the largest
 * real-time id and job id the run read, when they are behind: a database recreated
 * from the object store (a rebuild into a new extension) must never hand out an
 * event id the archive holds already, or the aggregate would drop the new event as a
 * duplicate.  setval is not transactional: a failed run leaves the sequences ahead,
 * which only skips ids.
 */
static void
advance_id_sequences(AggRun *run)
{
	static const char *const seqs[2] = {"recsys.rating_event_id_seq", "recsys.ingest_jobs_job_id_seq"};
	int64		maxima[2] = {run->max_rt_event_id, run->max_job_id};
	int			i;

	for (i = 0; i < 2; i++)
	{
		char		q[384];
		Oid			types[1] = {INT8OID};
		Datum		values[1];

		if (maxima[i] <= 0)
			continue;
		values[0] = Int64GetDatum(maxima[i]);
		snprintf(q, sizeof(q),
				 "SELECT pg_catalog.setval('%s', $1) FROM %s"
				 " WHERE last_value < $1 OR (NOT is_called AND last_value = $1)", seqs[i], seqs[i]);
		if (SPI_execute_with_args(q, 1, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not advance %s", seqs[i]);
	}
}

/* Transaction 3, after a failure: record it on the run's row. */
static void
fail_run(AggRun *run, ErrorData *edata)
{
	AbortOutOfAnyTransaction();
	if (run->run_id <= 0)
		return;
	PG_TRY();
	{
		Oid			types[2] = {INT8OID, TEXTOID};
		Datum		values[2];

		/* the failure record must not be cancelled by the signal that caused it */
		QueryCancelPending = false;
		got_sigterm = false;
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		values[0] = Int64GetDatum(run->run_id);
		values[1] = CStringGetTextDatum(edata->message ? edata->message : "aggregate failed");
		SPI_execute_with_args("UPDATE recsys.aggregate_runs SET status = 'failed',"
							  " finished_at = clock_timestamp(), error = $2,"
							  " seconds = extract(epoch FROM clock_timestamp() - started_at)"
							  " WHERE run_id = $1",
							  2, types, values, NULL, false, 0);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		FlushErrorState();
		AbortOutOfAnyTransaction();
	}
	PG_END_TRY();
	ereport(LOG,
			(errmsg("recsys aggregate run " INT64_FORMAT " failed: %s", run->run_id,
					edata->message ? edata->message : "unknown error")));
}

/*
 * Refresh the planner's statistics of the tables a run rewrote wholesale (a first
 * load, a rebuild, a neighbour refresh), so the readers' plans fit the new data at
 * once rather than after autovacuum.  ANALYZE takes a lock that SELECT never waits on.
 */
static void
analyze_changed(AggRun *run)
{
	if (!(run->first_load || run->rebuild || run->neighbors_refreshed))
		return;
	AggProgressPhase("analyzing");
	if (run->first_load || run->rebuild)
	{
		SPI_execute("ANALYZE recsys.ratings", false, 0);
		SPI_execute("ANALYZE recsys.user_profiles", false, 0);
		SPI_execute("ANALYZE recsys.movie_stats", false, 0);
		SPI_execute("ANALYZE recsys.genre_top", false, 0);
	}
	SPI_execute("ANALYZE recsys.item_neighbors", false, 0);
}

/* Free what the kernels malloc'd (the rest goes with the run's memory context). */
static void
free_run(AggRun *run)
{
	free(run->r);
	free(run->ties);
	run->r = NULL;
	run->ties = NULL;
	ArchiveStoreClose(run->store);
	ArchiveStoreClose(run->local);
	run->store = run->local = NULL;
}

/* The process's peak resident memory (VmHWM), in bytes; 0 when unknown. */
static int64
peak_memory_bytes(void)
{
	FILE	   *f = fopen("/proc/self/status", "r");
	char		line[256];
	int64		kb = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmHWM:", 6) == 0)
		{
			kb = strtoll(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return kb * 1024;
}
