/*
 * archiver.c: the "recsys archiver" background workers, exactly once from the event log
 * (Kafka, or the embedded queue table) to the object store (S3 / MinIO, or a local
 * directory).
 *
 * Design
 * - recsys.archiver_workers workers are registered at preload time.  With Kafka, worker
 *   i owns the partitions p with p % workers = i; it assigns them by hand (no consumer
 *   group) at the offsets stored in recsys.archive_offsets, reads read_committed, and
 *   keeps one batch per partition: a gzip stream of the valid events (one JSON line
 *   each, the message value as it was produced) plus the messages that are not valid
 *   events (dead letters).  Without Kafka, worker 0 drains recsys.event_queue and the
 *   others idle.
 * - A batch is flushed when it holds recsys.archive_flush_events messages, when its
 *   first message is recsys.archive_flush_interval old, when recsys_archive_sync()
 *   waits for its offsets, and at shutdown.  Flushing = PUT the object under
 *   events/topic=<t>/partition=<p>/<t>+<p>+<first offset, 20 digits>.ndjson.gz, then,
 *   only if the PUT succeeded, one transaction: check that the stored offset is still
 *   the batch's start (no one else archived the range), insert the manifest row and
 *   the dead letters, store the new offset.  A crash anywhere replays from the stored
 *   offset, so the same first offset gives the same key and the replay overwrites
 *   the unlisted object: every event ends up in exactly one listed object.
 * - The queue table: one transaction takes the oldest committed rows (DELETE ...
 *   RETURNING, FOR UPDATE SKIP LOCKED), PUTs them, inserts the manifest row and stores
 *   the offset; a failed PUT rolls the deletion back.  Queue offsets are assigned here,
 *   in the order rows are archived, so ranges never overlap even when producers commit
 *   out of id order; the row id is kept with dead letters.
 * - Duplicates: a real-time event (id below 10^10) whose id the partition archived
 *   lately, or holds in the open batch, is dropped and its offset recorded in
 *   recsys.archive_duplicates with the batch (archive_dedup.c), so a relay's resend
 *   is archived once and every offset stays accounted for.
 * - Failures: a failed PUT keeps the batch, stops reading (the watermarks, hence the
 *   lag, stay current) and retries with capped backoff; the log gets one line per
 *   change of state (down, back up).  Shared memory keeps the present state of the
 *   store and of Kafka (down since when, why) and the last error with what it was
 *   about, marked resolved when that component works again, for recsys.status.  Offsets that Kafka's retention
 *   deleted before they were archived are recorded in recsys.archive_gaps with a
 *   WARNING, never skipped in silence.
 * - Start: a worker waits for CREATE EXTENSION recsys in recsys.database, and while a
 *   pg_restore session is connected to it (a restore that is not one transaction
 *   shows the extension before the offsets are in).
 * - Signals: SIGHUP reloads the settings (a switch between Kafka and the queue
 *   restarts the worker); SIGTERM flushes, bounded to 4 s, and exits.  Any PostgreSQL
 *   error exits the worker, which the postmaster restarts after 1 s.
 * - Shared memory holds, per partition, the committed offset, the log's watermarks and
 *   the offset recsys_archive_sync() waits for, plus counters and the last error.
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "common/file_perm.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "archive_dedup.h"
#include "archive_store.h"
#include "archiver.h"
#include "eventjson.h"
#include "guc.h"
#include "archive_watermarks.h"
#include "kafka.h"
#include "recsys.h"
#include "s3.h"

#define ARCHIVER_MAX_WORKERS		64
#define ARCHIVER_MAX_PARTITIONS		256
#define ARCHIVER_POLL_BATCH			10000	/* messages per KafkaConsumerPoll */
#define ARCHIVER_STAGE_BYTES		(256 * 1024)	/* plain text handed to gzip at once */
#define ARCHIVER_GZIP_LEVEL			1
#define ARCHIVER_SHUTDOWN_MS		4000	/* flush budget after SIGTERM */
#define ARCHIVER_RETRY_MIN_MS		500
#define ARCHIVER_RETRY_MAX_MS		10000
#define ARCHIVER_TICK_MS			1000	/* watermarks, idle offsets, status */
#define QUEUE_TOPIC					ARCHIVE_QUEUE_TOPIC

/* Per-partition state in shared memory. */
typedef struct ArchiverPartition
{
	int32		partition;		/* -1: free slot */
	int32		worker;
	int64		committed;		/* next offset whose archive is committed, -1 unknown */
	int64		low;			/* log watermarks (queue: committed + rows waiting) */
	int64		high;
	int64		want;			/* recsys_archive_sync waits for committed >= want */
	TimestampTz high_at;		/* when high was asked for (0: never) */
} ArchiverPartition;

typedef struct ArchiverShared
{
	slock_t		mutex;
	char		mode[16];		/* "kafka", "queue" or "" before a worker started */
	char		topic[256];
	int			topic_partitions;	/* partitions of the Kafka topic, 0 unknown */
	char		storage[512];	/* "s3://bucket" or "local:<dir>" */
	int			store_down;		/* the last PUT failed */
	int			log_down;		/* Kafka unreachable */
	TimestampTz store_down_since;
	TimestampTz log_down_since;
	char		store_error[512];	/* why the store is down (while it is) */
	char		log_error[512];	/* why Kafka is unreachable (while it is) */
	pid_t		pid[ARCHIVER_MAX_WORKERS];
	Latch	   *latch[ARCHIVER_MAX_WORKERS];
	uint64		flush_request;	/* bumped by recsys_archive_sync (queue mode) */
	int64		objects;		/* written since the server started */
	int64		events;
	int64		bytes;
	int64		dead_letters;
	int64		gap_offsets;
	int64		duplicates;		/* recorded in recsys.archive_duplicates, all time */
	bool		duplicates_known;	/* duplicates was counted from the table */
	TimestampTz last_flush;
	TimestampTz last_error_at;
	TimestampTz last_error_resolved_at; /* 0: the last error still holds */
	int			last_error_source;	/* ERROR_SOURCE_* */
	char		last_error[512];
	ArchiverPartition parts[ARCHIVER_MAX_PARTITIONS];
} ArchiverShared;

/* what the last error was about: it is resolved when that component recovers */
#define ERROR_SOURCE_OTHER	0
#define ERROR_SOURCE_STORE	1
#define ERROR_SOURCE_LOG	2
#define ERROR_SOURCE_EVENT	3		/* a past event (a retention gap): resolved at once */

/* Kafka gets this long to answer the first watermark request before it is "down" */
#define ARCHIVER_FIRST_ANSWER_MS	5000

/* A message set aside. */
typedef struct DeadLetter
{
	int64		offset;
	int64		queue_id;		/* -1 for Kafka */
	bytea	   *key;
	bytea	   *value;
	char	   *reason;
} DeadLetter;

/* The open batch of one partition (worker-local). */
typedef struct Batch
{
	int32		partition;
	int			slot;			/* index in shared parts[] */
	int64		committed;		/* next offset committed in PostgreSQL */
	int64		first;			/* first offset of the batch, -1 when empty */
	int64		last;
	int64		events;
	int64		ndead;
	int64		ndup;			/* real-time events dropped as duplicates */
	ArchiveDedup *dedup;		/* NULL: tables not upgraded yet */
	TimestampTz started;
	S3GzipWriter *gz;
	StringInfoData stage;		/* plain lines not yet compressed */
	List	   *dead;			/* DeadLetter *, in ctx */
	MemoryContext ctx;
} Batch;

static ArchiverShared *Shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* worker-local state */
static int	MyIndex = -1;
static volatile sig_atomic_t got_sigterm = false;
static TimestampTz shutdown_deadline = 0;
static ArchiveStore *store = NULL;
static bool store_down = false;
static TimestampTz store_retry_at = 0;
static int	store_backoff_ms = 0;
static bool log_down = false;
static TimestampTz watermarks_started = 0;
static char topic[256];
static Batch *batches = NULL;
static ArchiveWatermarks *watermarks = NULL;
static int	nbatches = 0;

PG_FUNCTION_INFO_V1(recsys_archive_sync);

/* recsys_archive_sync waits at most this long (24 days) */
#define SYNC_MAX_TIMEOUT_MS (24.0 * SECS_PER_DAY * 1000.0)
PG_FUNCTION_INFO_V1(recsys_archive_status);

static void archiver_shmem_request(void);
static void archiver_shmem_startup(void);
static Size archiver_shmem_size(void);
static void archiver_sigterm(SIGNAL_ARGS);
static void archiver_detach(int code, Datum arg);
static int	archiver_interrupt(void *arg);
static void load_settings(void);
static bool wait_for_extension(void);
static bool restore_connected(void);
static void kafka_loop(void);
static void queue_loop(void);
static void idle_loop(void);
static void sleep_ms(long ms);
static int	claim_slot(int32 partition);
static void release_slots(void);
static void batch_init(Batch *b, int32 partition, int64 committed);
static void batch_reset(Batch *b);
static void batch_free(Batch *b);
static void seed_duplicates(void);
static void batch_add(Batch *b, int64 offset, int64 queue_id, const char *key, size_t keylen,
					  const char *value, size_t len);
static bool batch_flush(Batch *b, int64 next_offset);
static bool flush_all(KafkaConsumer *c);
static void set_error(int source, const char *msg);
static void resolve_error(int source);
static void watermark_tick(KafkaConsumer *c, TimestampTz now);
static void store_state(bool ok, const char *err);
static void log_state(bool ok, const char *err);
static void commit_batch(Batch *b, const char *key, int64 next_offset, int64 bytes);
static void record_batch(Batch *b, const char *key, int64 next_offset, int64 bytes);
static void publish_flush(Batch *b, int64 next_offset, int64 bytes);
static void store_offset(int32 partition, int64 expected, int64 next_offset,
						 int64 gap_from, int64 gap_to);
static List *load_offsets(void);
static int64 offset_of(List *offsets, int32 partition);
static int64 kafka_position(KafkaConsumer *c, Batch *b);
static bool handle_gap(KafkaConsumer *c, Batch *b, int64 low, int64 high);
static bool assign_all(KafkaConsumer *c);
static int64 queue_pending(int64 limit);
static bool queue_flush(int limit);
static int	cmp_int64(const void *a, const void *b);
static void fault_point(const char *point);

/* ---------------------------------------------------------------------------------
 * Registration and shared memory
 * ---------------------------------------------------------------------------------
 */

/* Register the workers and shared memory; a no-op unless preloaded. */
void
ArchiverInit(void)
{
	BackgroundWorker worker;
	int			i;

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = archiver_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = archiver_shmem_startup;

	for (i = 0; i < recsys_archiver_workers && i < ARCHIVER_MAX_WORKERS; i++)
	{
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		/* only on a primary: start once recovery is over (a promoted standby too) */
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "recsys");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "ArchiverMain");
		snprintf(worker.bgw_name, BGW_MAXLEN, "recsys archiver %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "recsys archiver");
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

static Size
archiver_shmem_size(void)
{
	return MAXALIGN(sizeof(ArchiverShared));
}

static void
archiver_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(archiver_shmem_size());
}

static void
archiver_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	Shared = ShmemInitStruct("recsys archiver", archiver_shmem_size(), &found);
	if (!found)
	{
		memset(Shared, 0, sizeof(ArchiverShared));
		SpinLockInit(&Shared->mutex);
		for (i = 0; i < ARCHIVER_MAX_PARTITIONS; i++)
			Shared->parts[i].partition = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* ---------------------------------------------------------------------------------
 * Worker: entry, signals, settings
 * ---------------------------------------------------------------------------------
 */

static void
archiver_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Leave shared memory: our pid, latch and partitions. */
static void
archiver_detach(int code, Datum arg)
{
	if (Shared == NULL || MyIndex < 0)
		return;
	SpinLockAcquire(&Shared->mutex);
	Shared->pid[MyIndex] = 0;
	Shared->latch[MyIndex] = NULL;
	SpinLockRelease(&Shared->mutex);
}

/* Polled by the S3 and Kafka clients: stop waiting at postmaster death or at the end of
 * the shutdown budget. */
static int
archiver_interrupt(void *arg)
{
	if (!PostmasterIsAlive())
		return 1;
	if (got_sigterm)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (shutdown_deadline == 0)
			shutdown_deadline = TimestampTzPlusMilliseconds(now, ARCHIVER_SHUTDOWN_MS);
		return now >= shutdown_deadline;
	}
	return 0;
}

/* Copy the settings the worker uses; called at start and after SIGHUP. */
static void
load_settings(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	ArchiveStoreClose(store);
	store = ArchiveStoreOpen(archiver_interrupt, NULL, 2);
	MemoryContextSwitchTo(old);

	if (Shared)
	{
		SpinLockAcquire(&Shared->mutex);
		strlcpy(Shared->storage, store->description, sizeof(Shared->storage));
		SpinLockRelease(&Shared->mutex);
	}
}

/* Sleep on the latch, waking for signals. */
static void
sleep_ms(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/* Handle SIGHUP: reload; false when the mode changed and the worker must restart. */
static bool
reload_if_asked(bool kafka_mode)
{
	if (!ConfigReloadPending)
		return true;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	load_settings();
	return RecsysKafkaConfigured() == kafka_mode &&
		(!kafka_mode || strcmp(topic, recsys_kafka_topic) == 0);
}

/*
 * Is a pg_restore session connected to our database?  A restore that is not one
 * transaction shows the extension, with empty offsets, before its data is in: the
 * worker must not start on it (it would archive the topic again from offset 0).
 */
static bool
restore_connected(void)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			i;

	for (i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);

		if (l != NULL && l->backendStatus.st_databaseid == MyDatabaseId &&
			l->backendStatus.st_appname != NULL &&
			strcmp(l->backendStatus.st_appname, "pg_restore") == 0)
			return true;
	}
	return false;
}

/*
 * Wait until CREATE EXTENSION recsys has run in the database and no pg_restore is
 * connected to it; false on SIGTERM.
 */
static bool
wait_for_extension(void)
{
	bool		logged = false;
	bool		logged_restore = false;

	for (;;)
	{
		bool		ready;
		bool		restoring = false;

		if (got_sigterm)
			return false;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		ready = OidIsValid(get_namespace_oid("recsys", true)) &&
			OidIsValid(get_relname_relid("archive_offsets", get_namespace_oid("recsys", true)));
		if (ready)
			restoring = restore_connected();
		CommitTransactionCommand();
		if (ready && !restoring && !RecoveryInProgress())
			return true;
		if (restoring && !logged_restore)
			ereport(LOG,
					(errmsg("recsys archiver waiting for pg_restore to finish in database \"%s\"",
							recsys_database)));
		logged_restore |= restoring;
		if (!logged && !restoring)
		{
			ereport(LOG,
					(errmsg("recsys archiver waiting for CREATE EXTENSION recsys in database \"%s\"",
							recsys_database)));
			logged = true;
		}
		sleep_ms(2000);
	}
}

/* Entry point of a worker. */
void
ArchiverMain(Datum main_arg)
{
	MyIndex = DatumGetInt32(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, archiver_sigterm);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(recsys_database, NULL, 0);
	pgstat_report_appname("recsys archiver");

	SpinLockAcquire(&Shared->mutex);
	Shared->pid[MyIndex] = MyProcPid;
	Shared->latch[MyIndex] = MyLatch;
	SpinLockRelease(&Shared->mutex);
	before_shmem_exit(archiver_detach, (Datum) 0);

	if (!wait_for_extension())
		proc_exit(0);
	load_settings();
	release_slots();

	if (RecsysKafkaConfigured())
		kafka_loop();
	else if (MyIndex == 0)
		queue_loop();
	else
		idle_loop();
	/* exit 1: restarted after bgw_restart_time unless the server is shutting down */
	proc_exit(1);
}

/* Workers beyond the first have nothing to do with the queue table. */
static void
idle_loop(void)
{
	while (!got_sigterm)
	{
		if (!reload_if_asked(false))
			return;
		sleep_ms(10000);
	}
}

/* ---------------------------------------------------------------------------------
 * Shared state helpers
 * ---------------------------------------------------------------------------------
 */

/* Find or take the shared slot of a partition of our topic. */
static int
claim_slot(int32 partition)
{
	int			i,
				free_slot = -1;

	SpinLockAcquire(&Shared->mutex);
	for (i = 0; i < ARCHIVER_MAX_PARTITIONS; i++)
	{
		if (Shared->parts[i].partition == partition)
			break;
		if (Shared->parts[i].partition < 0 && free_slot < 0)
			free_slot = i;
	}
	if (i == ARCHIVER_MAX_PARTITIONS)
		i = free_slot;
	if (i >= 0)
	{
		ArchiverPartition *p = &Shared->parts[i];

		if (p->partition != partition)
		{
			p->partition = partition;
			p->want = -1;
			p->low = p->high = -1;
		}
		p->worker = MyIndex;
		p->committed = -1;
	}
	SpinLockRelease(&Shared->mutex);
	if (i < 0)
		elog(ERROR, "recsys archiver: more than %d partitions", ARCHIVER_MAX_PARTITIONS);
	return i;
}

/* Free the slots this worker held (at start; the mode or topic may have changed). */
static void
release_slots(void)
{
	int			i;

	SpinLockAcquire(&Shared->mutex);
	for (i = 0; i < ARCHIVER_MAX_PARTITIONS; i++)
		if (Shared->parts[i].partition >= 0 && Shared->parts[i].worker == MyIndex)
			Shared->parts[i].partition = -1;
	if (MyIndex == 0)
	{
		/* the mode is recorded by worker 0, the one that always runs */
		snprintf(Shared->mode, sizeof(Shared->mode), "%s",
				 RecsysKafkaConfigured() ? "kafka" : "queue");
		snprintf(Shared->topic, sizeof(Shared->topic), "%s",
				 RecsysKafkaConfigured() ? recsys_kafka_topic : QUEUE_TOPIC);
		for (i = 0; i < ARCHIVER_MAX_PARTITIONS; i++)
			if (Shared->parts[i].partition >= 0 && Shared->pid[Shared->parts[i].worker] == 0)
				Shared->parts[i].partition = -1;
	}
	SpinLockRelease(&Shared->mutex);
}

/*
 * Record the last error for recsys.status, with what it is about (ERROR_SOURCE_*): it
 * stays "current" until that component recovers (resolve_error).
 */
static void
set_error(int source, const char *msg)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&Shared->mutex);
	strlcpy(Shared->last_error, msg, sizeof(Shared->last_error));
	Shared->last_error_at = now;
	Shared->last_error_source = source;
	Shared->last_error_resolved_at = source == ERROR_SOURCE_EVENT ? now : 0;
	SpinLockRelease(&Shared->mutex);
}

/* The component source works again: mark the last error past if it was about it. */
static void
resolve_error(int source)
{
	SpinLockAcquire(&Shared->mutex);
	if (Shared->last_error_resolved_at == 0 && Shared->last_error[0] != '\0' &&
		Shared->last_error_source == source)
		Shared->last_error_resolved_at = GetCurrentTimestamp();
	SpinLockRelease(&Shared->mutex);
}

/* Track the object store's state; log only when it changes. */
static void
store_state(bool ok, const char *err)
{
	if (!ok)
	{
		set_error(ERROR_SOURCE_STORE, err);
		if (!store_down)
			ereport(LOG,
					(errmsg("recsys archiver cannot write to the archive, retrying with backoff: %s", err)));
		SpinLockAcquire(&Shared->mutex);
		if (!Shared->store_down || !store_down)
			Shared->store_down_since = GetCurrentTimestamp();
		strlcpy(Shared->store_error, err, sizeof(Shared->store_error));
		SpinLockRelease(&Shared->mutex);
		store_down = true;
		store_backoff_ms = store_backoff_ms ? Min(store_backoff_ms * 2, ARCHIVER_RETRY_MAX_MS) :
			ARCHIVER_RETRY_MIN_MS;
		store_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), store_backoff_ms);
	}
	else if (store_down)
	{
		ereport(LOG, (errmsg("recsys archiver can write to the archive again; catching up")));
		store_down = false;
		store_backoff_ms = 0;
		resolve_error(ERROR_SOURCE_STORE);
	}
	else
		resolve_error(ERROR_SOURCE_STORE);
	SpinLockAcquire(&Shared->mutex);
	Shared->store_down = store_down;
	if (!store_down)
		Shared->store_error[0] = '\0';
	SpinLockRelease(&Shared->mutex);
}

/* Track the event log's state; log only when it changes. */
static void
log_state(bool ok, const char *err)
{
	if (!ok)
	{
		set_error(ERROR_SOURCE_LOG, err);
		if (!log_down)
			ereport(LOG, (errmsg("recsys archiver cannot reach Kafka, retrying: %s", err)));
		SpinLockAcquire(&Shared->mutex);
		if (!Shared->log_down || !log_down)
			Shared->log_down_since = GetCurrentTimestamp();
		strlcpy(Shared->log_error, err, sizeof(Shared->log_error));
		SpinLockRelease(&Shared->mutex);
		log_down = true;
	}
	else
	{
		if (log_down)
			ereport(LOG, (errmsg("recsys archiver reached Kafka again")));
		log_down = false;
		resolve_error(ERROR_SOURCE_LOG);
	}
	SpinLockAcquire(&Shared->mutex);
	Shared->log_down = log_down;
	if (!log_down)
		Shared->log_error[0] = '\0';
	SpinLockRelease(&Shared->mutex);
}

/* ---------------------------------------------------------------------------------
 * Fault points
 * ---------------------------------------------------------------------------------
 */

/* The crash suites' pause points (recsys.c): before_put, after_put, after_commit. */
static void
fault_point(const char *point)
{
	RecsysFaultPoint("archiver", point, false);
}

/* ---------------------------------------------------------------------------------
 * Batches
 * ---------------------------------------------------------------------------------
 */

static void
batch_init(Batch *b, int32 partition, int64 committed)
{
	memset(b, 0, sizeof(Batch));
	b->partition = partition;
	b->slot = claim_slot(partition);
	b->committed = committed;
	b->first = -1;
	b->ctx = AllocSetContextCreate(TopMemoryContext, "recsys archiver batch",
								   ALLOCSET_DEFAULT_SIZES);
	/* the queue table is filled exactly once (the relay moves rows in one statement) */
	b->dedup = strcmp(topic, QUEUE_TOPIC) == 0 ? NULL : ArchiveDedupOpen(topic, partition);
	SpinLockAcquire(&Shared->mutex);
	Shared->parts[b->slot].committed = committed;
	SpinLockRelease(&Shared->mutex);
	seed_duplicates();
}

/* Free a batch and its deduplication state. */
static void
batch_free(Batch *b)
{
	MemoryContextDelete(b->ctx);
	ArchiveDedupClose(b->dedup);
	b->dedup = NULL;
}

/* Count the duplicates recorded so far, once per server start, for recsys.status. */
static void
seed_duplicates(void)
{
	bool		known;
	int64		n;

	SpinLockAcquire(&Shared->mutex);
	known = Shared->duplicates_known;
	SpinLockRelease(&Shared->mutex);
	if (known)
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	n = ArchiveDedupTotal();
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	SpinLockAcquire(&Shared->mutex);
	if (!Shared->duplicates_known)
	{
		/* flushes of other workers may have counted theirs already */
		Shared->duplicates = n;
		Shared->duplicates_known = true;
	}
	SpinLockRelease(&Shared->mutex);
}

/* Empty a batch after its flush (or to forget it). */
static void
batch_reset(Batch *b)
{
	S3GzipFree(b->gz);
	b->gz = NULL;
	MemoryContextReset(b->ctx);
	b->stage.data = NULL;
	b->dead = NIL;
	b->first = b->last = -1;
	b->events = b->ndead = b->ndup = 0;
}

/* Add one message: a valid event to the gzip stream, anything else to dead letters. */
static void
batch_add(Batch *b, int64 offset, int64 queue_id, const char *key, size_t keylen,
		  const char *value, size_t len)
{
	EventRecord ev;
	char		reason[256];

	if (b->first < 0)
	{
		b->first = offset;
		b->started = GetCurrentTimestamp();
	}
	b->last = offset;
	if (EventParse(value, len, key, keylen, &ev, reason, sizeof(reason)) == 0)
	{
		size_t		i;

		/* a real-time event sent again (a relay's resend): dropped, its offset recorded */
		if (ArchiveDedupCheck(b->dedup, ev.event_id, value, len, offset, queue_id))
		{
			b->ndup++;
			return;
		}

		if (b->stage.data == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(b->ctx);

			initStringInfo(&b->stage);
			enlargeStringInfo(&b->stage, ARCHIVER_STAGE_BYTES + 1024);
			MemoryContextSwitchTo(old);
		}
		if (b->gz == NULL && (b->gz = S3GzipBegin(ARCHIVER_GZIP_LEVEL)) == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		i = b->stage.len;
		appendBinaryStringInfo(&b->stage, value, len);
		/* one event a line: raw newlines in a JSON value can only be whitespace */
		for (; i < b->stage.len; i++)
			if (b->stage.data[i] == '\n' || b->stage.data[i] == '\r')
				b->stage.data[i] = ' ';
		appendStringInfoChar(&b->stage, '\n');
		if (b->stage.len >= ARCHIVER_STAGE_BYTES)
		{
			if (S3GzipWrite(b->gz, b->stage.data, b->stage.len) != 0)
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory compressing events")));
			resetStringInfo(&b->stage);
		}
		b->events++;
	}
	else
	{
		MemoryContext old = MemoryContextSwitchTo(b->ctx);
		DeadLetter *d = palloc(sizeof(DeadLetter));

		d->offset = offset;
		d->queue_id = queue_id;
		d->key = NULL;
		if (key)
		{
			d->key = palloc(VARHDRSZ + keylen);
			SET_VARSIZE(d->key, VARHDRSZ + keylen);
			memcpy(VARDATA(d->key), key, keylen);
		}
		d->value = NULL;
		if (value)
		{
			d->value = palloc(VARHDRSZ + len);
			SET_VARSIZE(d->value, VARHDRSZ + len);
			memcpy(VARDATA(d->value), value, len);
		}
		d->reason = pstrdup(reason);
		b->dead = lappend(b->dead, d);
		b->ndead++;
		MemoryContextSwitchTo(old);
	}
}

/*
 * Write the batch's object and commit its manifest row, dead letters and next_offset
 * (>= last + 1).  False, batch kept, when the object could not be stored.
 */
static bool
batch_flush(Batch *b, int64 next_offset)
{
	char		err[1024];
	char	   *key = NULL;
	size_t		len = 0;

	if (b->first < 0)
		return true;
	if (next_offset < b->last + 1)
		next_offset = b->last + 1;
	if (b->events > 0)
	{
		S3Buffer	object;
		bool		stored;

		if (b->stage.len > 0)
		{
			if (S3GzipWrite(b->gz, b->stage.data, b->stage.len) != 0)
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory compressing events")));
			resetStringInfo(&b->stage);
		}

		/*
		 * Finish a copy of the stream: when the PUT fails, the batch stays open and
		 * takes more events until the store is back.
		 */
		if (S3GzipFinishCopy(b->gz, &object) != 0)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory compressing events")));
		len = object.len;
		key = ArchiveObjectKey(topic, b->partition, b->first);
		pgstat_report_activity(STATE_RUNNING, "writing an archive object");
		fault_point("before_put");
		stored = ArchiveStorePut(store, key, object.data, object.len, err, sizeof(err)) == ARCHIVE_OK;
		S3BufferFree(&object);
		if (!stored)
		{
			pfree(key);
			pgstat_report_activity(STATE_IDLE, NULL);
			store_state(false, err);
			return false;
		}
		store_state(true, NULL);
		fault_point("after_put");
	}
	commit_batch(b, key, next_offset, (int64) len);
	fault_point("after_commit");
	pgstat_report_activity(STATE_IDLE, NULL);

	publish_flush(b, next_offset, (int64) len);

	if (key)
		pfree(key);
	batch_reset(b);
	return true;
}

/* Publish a committed batch: shared counters for recsys.status, the new offset. */
static void
publish_flush(Batch *b, int64 next_offset, int64 bytes)
{
	SpinLockAcquire(&Shared->mutex);
	Shared->parts[b->slot].committed = next_offset;
	if (b->events > 0)
		Shared->objects++;
	Shared->events += b->events;
	Shared->bytes += bytes;
	Shared->dead_letters += b->ndead;
	Shared->duplicates += b->ndup;
	Shared->last_flush = GetCurrentTimestamp();
	SpinLockRelease(&Shared->mutex);
	b->committed = next_offset;
	resolve_error(ERROR_SOURCE_OTHER);
}

/* One transaction: check the stored offset, insert manifest row and dead letters, store
 * the new offset.  Errors exit the worker (and the replay rewrites the object). */
static void
commit_batch(Batch *b, const char *key, int64 next_offset, int64 bytes)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	record_batch(b, key, next_offset, bytes);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* a background worker reports its table statistics itself (at most once a second) */
	pgstat_report_stat(false);
}

/*
 * Record a written batch, in the caller's transaction (SPI connected, snapshot set):
 * check and store the partition's new offset, insert the manifest row (when an
 * object was written) and the dead letters. The Kafka and the queue paths share it.
 */
static void
record_batch(Batch *b, const char *key, int64 next_offset, int64 bytes)
{
	ListCell   *lc;

	store_offset(b->partition, b->committed, next_offset, -1, -1);
	if (key)
	{
		Oid			types[10] = {TEXTOID, TEXTOID, INT4OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, INT8OID};
		Datum		values[10];

		values[0] = CStringGetTextDatum(key);
		values[1] = CStringGetTextDatum(topic);
		values[2] = Int32GetDatum(b->partition);
		values[3] = Int64GetDatum(b->first);
		values[4] = Int64GetDatum(b->last);
		values[5] = Int64GetDatum(b->events);
		values[6] = Int64GetDatum(b->ndead);
		values[7] = Int64GetDatum(bytes);
		values[8] = CStringGetTextDatum(ArchiveStoreKind(store));
		values[9] = Int64GetDatum(b->ndup);
		/* without the dedup tables (not upgraded yet, or the queue), no such column */
		if (SPI_execute_with_args(b->dedup ?
								  "INSERT INTO recsys.archive_manifest (object_key, topic, partition,"
								  " first_offset, last_offset, events, dead_letters, bytes, storage, duplicates)"
								  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)" :
								  "INSERT INTO recsys.archive_manifest (object_key, topic, partition,"
								  " first_offset, last_offset, events, dead_letters, bytes, storage)"
								  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
								  b->dedup ? 10 : 9, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "recsys archiver: could not insert the manifest row");
	}
	foreach(lc, b->dead)
	{
		DeadLetter *d = lfirst(lc);
		Oid			types[7] = {TEXTOID, INT4OID, INT8OID, BYTEAOID, BYTEAOID, TEXTOID, INT8OID};
		Datum		values[7];
		char		nulls[7] = "       ";

		values[0] = CStringGetTextDatum(topic);
		values[1] = Int32GetDatum(b->partition);
		values[2] = Int64GetDatum(d->offset);
		values[3] = PointerGetDatum(d->key);
		values[4] = PointerGetDatum(d->value);
		values[5] = CStringGetTextDatum(d->reason);
		values[6] = Int64GetDatum(d->queue_id);
		if (d->key == NULL)
			nulls[3] = 'n';
		if (d->value == NULL)
			nulls[4] = 'n';
		if (d->queue_id < 0)
			nulls[6] = 'n';
		if (SPI_execute_with_args("INSERT INTO recsys.archive_dead_letters (topic, partition, \"offset\","
								  " key, value, reason, queue_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
								  " ON CONFLICT DO NOTHING",
								  7, types, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "recsys archiver: could not insert a dead letter");
	}
	ArchiveDedupRecord(b->dedup);
	if (b->ndup > 0)
		ereport(LOG,
				(errmsg("recsys archiver dropped %lld real-time events of %s partition %d sent again (their event ids were archived already); recorded in recsys.archive_duplicates",
						(long long) b->ndup,
						strcmp(topic, QUEUE_TOPIC) == 0 ? "the event queue" : "Kafka",
						b->partition)));
	if (b->ndead > 0)
		ereport(LOG,
				(errmsg("recsys archiver set aside %lld invalid messages of %s partition %d in recsys.archive_dead_letters",
						(long long) b->ndead,
						strcmp(topic, QUEUE_TOPIC) == 0 ? "the event queue" : "Kafka",
						b->partition)));
}

/*
 * Store next_offset for a partition (inside a transaction, SPI connected), after
 * checking that the stored one is still expected: an archive range is never written
 * twice.  gap_from >= 0 also records a retention gap.
 */
static void
store_offset(int32 partition, int64 expected, int64 next_offset, int64 gap_from, int64 gap_to)
{
	Oid			types[4] = {TEXTOID, INT4OID, INT8OID, INT8OID};
	Datum		values[4];
	int64		stored = 0;

	values[0] = CStringGetTextDatum(topic);
	values[1] = Int32GetDatum(partition);
	if (SPI_execute_with_args("SELECT next_offset FROM recsys.archive_offsets"
							  " WHERE topic = $1 AND partition = $2 FOR UPDATE",
							  2, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "recsys archiver: could not read the offsets");
	if (SPI_processed > 0)
	{
		bool		isnull;

		stored = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (stored != expected)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("recsys archiver: the stored offset of %s partition %d is %lld, expected %lld",
						topic, partition, (long long) stored, (long long) expected),
				 errdetail("Another process archived this partition; this worker restarts and rereads its offsets.")));
	if (gap_from >= 0)
	{
		values[2] = Int64GetDatum(gap_from);
		values[3] = Int64GetDatum(gap_to);
		if (SPI_execute_with_args("INSERT INTO recsys.archive_gaps (topic, partition, from_offset, to_offset)"
								  " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
								  4, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "recsys archiver: could not record a gap");
	}
	values[2] = Int64GetDatum(next_offset);
	if (SPI_execute_with_args("INSERT INTO recsys.archive_offsets (topic, partition, next_offset)"
							  " VALUES ($1, $2, $3) ON CONFLICT (topic, partition) DO UPDATE"
							  " SET next_offset = excluded.next_offset, updated_at = now()",
							  3, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "recsys archiver: could not store the offsets");
}

/* Read the stored offsets of our topic: a list of (partition, next_offset) pairs. */
static List *
load_offsets(void)
{
	List	   *result = NIL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	uint64		i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = CStringGetTextDatum(topic);
	if (SPI_execute_with_args("SELECT partition, next_offset FROM recsys.archive_offsets WHERE topic = $1",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "recsys archiver: could not read the offsets");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		int64	   *pair = palloc(2 * sizeof(int64));

		MemoryContextSwitchTo(old);
		pair[0] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		pair[1] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		old = MemoryContextSwitchTo(TopMemoryContext);
		result = lappend(result, pair);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return result;
}

static int64
offset_of(List *offsets, int32 partition)
{
	ListCell   *lc;

	foreach(lc, offsets)
	{
		int64	   *pair = lfirst(lc);

		if (pair[0] == partition)
			return pair[1];
	}
	return 0;
}

/* ---------------------------------------------------------------------------------
 * Kafka
 * ---------------------------------------------------------------------------------
 */

/* Next offset to read in a partition: at least last + 1 of what we hold. */
static int64
kafka_position(KafkaConsumer *c, Batch *b)
{
	int64		pos = -1;
	int64		floor_pos = b->first >= 0 ? b->last + 1 : b->committed;

	if (KafkaConsumerPosition(c, b->partition, &pos) != KAFKA_OK || pos < floor_pos)
		pos = floor_pos;
	return pos;
}

/* Flush every batch; false if one could not be stored. */
static bool
flush_all(KafkaConsumer *c)
{
	int			i;

	for (i = 0; i < nbatches; i++)
	{
		Batch	   *b = &batches[i];

		if (b->first >= 0 && !batch_flush(b, c ? kafka_position(c, b) : b->last + 1))
			return false;
	}
	return true;
}

/* (Re)assign our partitions at their committed offsets; batches must be empty. */
static bool
assign_all(KafkaConsumer *c)
{
	int32	   *parts = palloc(sizeof(int32) * Max(nbatches, 1));
	int64	   *offs = palloc(sizeof(int64) * Max(nbatches, 1));
	char		err[512] = "";
	int			i;

	/*
	 * Each partition resumes where its batch ends (or at its committed offset when
	 * empty): a re-assignment after a retention gap must not deliver again the events
	 * other partitions' batches already hold.
	 */
	for (i = 0; i < nbatches; i++)
	{
		parts[i] = batches[i].partition;
		offs[i] = kafka_position(c, &batches[i]);
	}
	if (KafkaConsumerAssign(c, nbatches, parts, offs, err, sizeof(err)) != KAFKA_OK)
	{
		log_state(false, err);
		pfree(parts);
		pfree(offs);
		return false;
	}
	if (watermarks == NULL && nbatches > 0)
	{
		char	   *props = GucKafkaProperties();

		watermarks = ArchiveWatermarksStart(recsys_kafka_brokers, props, topic,
											nbatches, parts, 250, err, sizeof(err));
		watermarks_started = GetCurrentTimestamp();
		explicit_bzero(props, strlen(props));
		pfree(props);
		if (watermarks == NULL)
		{
			log_state(false, err);
			pfree(parts);
			pfree(offs);
			return false;
		}
	}
	pfree(parts);
	pfree(offs);
	return true;
}

/*
 * The log no longer has the offsets we need (retention): record the gap loudly and
 * continue at the low watermark.  The batch is empty here.  False when the gap cannot
 * be resolved (offset beyond the end: the topic was recreated).
 */
static bool
handle_gap(KafkaConsumer *c, Batch *b, int64 low, int64 high)
{
	char		msg[512];

	if (b->committed > high)
	{
		snprintf(msg, sizeof(msg),
				 "archived offset %lld of %s partition %d is beyond the end of the log (%lld): was the topic recreated? Delete its rows from recsys.archive_offsets to start over",
				 (long long) b->committed, topic, b->partition, (long long) high);
		set_error(ERROR_SOURCE_OTHER, msg);
		ereport(WARNING, (errmsg("recsys archiver: %s", msg)));
		return false;
	}
	if (b->committed >= low)
		return true;
	snprintf(msg, sizeof(msg),
			 "offsets %lld to %lld of %s partition %d were deleted by the log's retention before they were archived; recorded in recsys.archive_gaps",
			 (long long) b->committed, (long long) low - 1, topic, b->partition);
	ereport(WARNING, (errmsg("recsys archiver: %s", msg)));
	set_error(ERROR_SOURCE_EVENT, msg);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	store_offset(b->partition, b->committed, low, b->committed, low);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	SpinLockAcquire(&Shared->mutex);
	Shared->gap_offsets += low - b->committed;
	Shared->parts[b->slot].committed = low;
	SpinLockRelease(&Shared->mutex);
	b->committed = low;
	return assign_all(c);
}

/*
 * Read the watermark thread's last answers: the log's end offsets (lag) in shared
 * memory, whether Kafka answers, and retention gaps of empty batches.
 */
static void
watermark_tick(KafkaConsumer *c, TimestampTz now)
{
	char		err[1024];
	int64		age = ArchiveWatermarksAge(watermarks, err, sizeof(err));
	int64		mono = ArchiveWatermarksNow();
	int			i;

	/* no answer yet, just after the thread started, is no outage */
	if (age >= 0)
		log_state(age < 3000, err);
	else if (TimestampDifferenceExceeds(watermarks_started, now, ARCHIVER_FIRST_ANSWER_MS))
		log_state(false, err);
	for (i = 0; i < nbatches; i++)
	{
		Batch	   *b = &batches[i];
		int64		low,
					high,
					asked;

		if (ArchiveWatermarksGet(watermarks, b->partition, &low, &high, &asked) != 0)
			continue;
		SpinLockAcquire(&Shared->mutex);
		Shared->parts[b->slot].low = low;
		Shared->parts[b->slot].high = high;
		Shared->parts[b->slot].high_at = TimestampTzPlusMilliseconds(now, -(mono - asked));
		SpinLockRelease(&Shared->mutex);
		/* an empty batch positioned before the log's start: retention deleted it */
		if (b->first < 0 && !store_down && kafka_position(c, b) < low)
			(void) handle_gap(c, b, low, high);
	}
}

/* The main loop with Kafka. */
static void
kafka_loop(void)
{
	KafkaConsumer *c = NULL;
	KafkaMessage *msgs = palloc(sizeof(KafkaMessage) * ARCHIVER_POLL_BATCH);
	TimestampTz next_tick = 0;
	TimestampTz next_partcheck = 0;
	TimestampTz connect_at = 0;
	int			connect_backoff = 0;
	char		err[1024];
	int			i;

	strlcpy(topic, recsys_kafka_topic, sizeof(topic));
	for (;;)
	{
		TimestampTz now;
		int			n;
		int32		bad = -1;

		CHECK_FOR_INTERRUPTS();
		if (!reload_if_asked(true))
		{
			flush_all(c);
			break;
		}
		if (got_sigterm)
		{
			(void) archiver_interrupt(NULL);	/* start the shutdown clock */
			if (!flush_all(c))
				ereport(LOG, (errmsg("recsys archiver exits with unarchived events; they are archived after the restart")));
			break;
		}
		now = GetCurrentTimestamp();

		/* connect, learn the partitions, assign ours */
		if (c == NULL || now >= next_partcheck)
		{
			int			nparts = 0;

			if (c == NULL)
			{
				char	   *props;
				char	   *user_props;

				if (now < connect_at)
				{
					sleep_ms(100);
					continue;
				}
				/*
				 * Fetch big: librdkafka's defaults (1 MB per partition and fetch) cap a
				 * backlog at about 200,000 events/s here, 16 MB lets it go 3 times
				 * faster (4 MB: about 380,000/s).  The price is memory: the worker
				 * peaks near 650 MB resident while it catches up a 10M-event backlog
				 * (200 MB with 4 MB fetches); the prefetch queue is capped at 32 MB.
				 * recsys.kafka_properties come after, so they win.
				 */
				user_props = GucKafkaProperties();
				props = psprintf("max.partition.fetch.bytes=16777216,fetch.max.bytes=67108864,"
								 "queued.max.messages.kbytes=32768,fetch.wait.max.ms=100\n%s",
								 user_props);

				c = KafkaConsumerNew(recsys_kafka_brokers, props, topic, NULL,
									 archiver_interrupt, NULL, err, sizeof(err));
				/* the list may carry kafka.* secrets: wipe both copies */
				explicit_bzero(user_props, strlen(user_props));
				explicit_bzero(props, strlen(props));
				pfree(user_props);
				pfree(props);
				if (c == NULL)
				{
					log_state(false, err);
					connect_backoff = connect_backoff ? Min(connect_backoff * 2, ARCHIVER_RETRY_MAX_MS) : ARCHIVER_RETRY_MIN_MS;
					connect_at = TimestampTzPlusMilliseconds(now, connect_backoff);
					continue;
				}
			}
			err[0] = '\0';
			if (KafkaConsumerPartitions(c, Min(recsys_kafka_timeout_ms, 2000), &nparts, err, sizeof(err)) != KAFKA_OK ||
				nparts == 0)
			{
				if (nparts == 0 && err[0] == '\0')
					snprintf(err, sizeof(err), "topic \"%s\" does not exist", topic);
				log_state(false, err);
				next_partcheck = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 2000);
				if (nbatches == 0)
				{
					sleep_ms(500);
					continue;
				}
			}
			else
			{
				int			mine = 0;

				log_state(true, NULL);
				connect_backoff = 0;
				SpinLockAcquire(&Shared->mutex);
				Shared->topic_partitions = nparts;
				SpinLockRelease(&Shared->mutex);
				for (i = 0; i < nparts; i++)
					if (i % recsys_archiver_workers == MyIndex)
						mine++;
				if (mine != nbatches)
				{
					/* first time, or the topic has new partitions: start over */
					List	   *offsets;
					int			k = 0;

					if (!flush_all(c))
					{
						sleep_ms(200);
						continue;
					}
					offsets = load_offsets();
					for (i = 0; i < nbatches; i++)
						batch_free(&batches[i]);
					if (batches)
						pfree(batches);
					ArchiveWatermarksStop(watermarks);
					watermarks = NULL;
					batches = MemoryContextAllocZero(TopMemoryContext, sizeof(Batch) * Max(mine, 1));
					nbatches = mine;
					for (i = 0; i < nparts; i++)
						if (i % recsys_archiver_workers == MyIndex)
							batch_init(&batches[k++], i, offset_of(offsets, i));
					list_free_deep(offsets);
					if (!assign_all(c))
					{
						/* retried after a pause, from scratch */
						for (i = 0; i < nbatches; i++)
							batch_free(&batches[i]);
						pfree(batches);
						batches = NULL;
						nbatches = 0;
						sleep_ms(500);
						continue;
					}
					if (nbatches > 0)
						ereport(LOG,
								(errmsg("recsys archiver %d archives %d of the %d partitions of topic \"%s\"",
										MyIndex, nbatches, nparts, topic)));
				}
				next_partcheck = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 30000);
			}
		}
		if (nbatches == 0)
		{
			/* more workers than partitions */
			sleep_ms(1000);
			continue;
		}

		/*
		 * The store is down: retry the pending flushes with backoff, read nothing; the
		 * log's watermarks (lag, Kafka's state) stay current meanwhile.
		 */
		if (store_down)
		{
			if (watermarks && GetCurrentTimestamp() >= next_tick)
			{
				watermark_tick(c, GetCurrentTimestamp());
				next_tick = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ARCHIVER_TICK_MS);
			}
			if (GetCurrentTimestamp() < store_retry_at)
			{
				sleep_ms(100);
				continue;
			}
			if (!flush_all(c))
				continue;
		}

		n = KafkaConsumerPoll(c, msgs, ARCHIVER_POLL_BATCH, 100, &bad, err, sizeof(err));
		for (i = 0; i < n; i++)
		{
			KafkaMessage *m = &msgs[i];
			int			k;

			for (k = 0; k < nbatches; k++)
				if (batches[k].partition == m->partition)
					break;
			if (k == nbatches)
				continue;		/* not ours: cannot happen with manual assignment */
			batch_add(&batches[k], m->offset, -1, m->key, m->key_len, m->value, m->value_len);
			/* full: flush now, up to this message (more of the poll may follow) */
			if (batches[k].events + batches[k].ndead + batches[k].ndup >= recsys_archive_flush_events && !store_down)
				(void) batch_flush(&batches[k], batches[k].last + 1);
		}
		if (n == KAFKA_OUT_OF_RANGE)
		{
			/* the tick below compares the position with fresh watermarks */
			ereport(LOG, (errmsg("recsys archiver: %s", err)));
			next_tick = 0;
		}
		else if (n < 0 && n != KAFKA_INTERRUPTED)
			log_state(false, err);

		/* flush what is due */
		now = GetCurrentTimestamp();
		for (i = 0; i < nbatches && !store_down; i++)
		{
			Batch	   *b = &batches[i];
			int64		want;

			SpinLockAcquire(&Shared->mutex);
			want = Shared->parts[b->slot].want;
			SpinLockRelease(&Shared->mutex);
			if (b->first >= 0 &&
				(b->events + b->ndead + b->ndup >= recsys_archive_flush_events ||
				 TimestampDifferenceExceeds(b->started, now, recsys_archive_flush_interval_ms) ||
				 (want > b->committed && kafka_position(c, b) >= want)))
				(void) batch_flush(b, kafka_position(c, b));
			else if (b->first < 0 && want > b->committed)
			{
				/* only transaction markers or aborted messages since: move on */
				int64		pos = kafka_position(c, b);

				if (pos > b->committed)
				{
					SetCurrentStatementStartTimestamp();
					StartTransactionCommand();
					SPI_connect();
					PushActiveSnapshot(GetTransactionSnapshot());
					store_offset(b->partition, b->committed, pos, -1, -1);
					SPI_finish();
					PopActiveSnapshot();
					CommitTransactionCommand();
					b->committed = pos;
					SpinLockAcquire(&Shared->mutex);
					Shared->parts[b->slot].committed = pos;
					SpinLockRelease(&Shared->mutex);
				}
			}
		}

		/* once a second: watermarks from the watermark thread (lag, gaps, Kafka up?) */
		if (now >= next_tick && watermarks)
		{
			watermark_tick(c, now);
			next_tick = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ARCHIVER_TICK_MS);
		}
	}
	if (watermarks)
		ArchiveWatermarksStop(watermarks);
	watermarks = NULL;

	/*
	 * The consumer is not destroyed: the process exits next, the consumer has no group
	 * to leave and no offsets in Kafka, and rd_kafka_destroy() can wait forever for a
	 * broker thread (seen after the topic was deleted), which would make the worker
	 * miss its exit deadline.
	 */
}

/* ---------------------------------------------------------------------------------
 * The queue table
 * ---------------------------------------------------------------------------------
 */

/* Rows waiting in the queue, counted up to limit. */
static int64
queue_pending(int64 limit)
{
	int64		n;
	bool		isnull;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(limit)};

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("SELECT count(*) FROM (SELECT 1 FROM recsys.event_queue LIMIT $1) s",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "recsys archiver: could not count the queue");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return n;
}

typedef struct QueueRow
{
	int64		id;
	HeapTuple	tuple;
} QueueRow;

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = ((const QueueRow *) a)->id;
	int64		y = ((const QueueRow *) b)->id;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * Archive up to limit of the oldest queue rows in one transaction: take and delete
 * them, PUT, manifest and offset, commit.  False when the PUT failed (rolled back).
 */
static bool
queue_flush(int limit)
{
	Batch	   *b = &batches[0];
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(limit)};
	QueueRow   *rows;
	uint64		n,
				i;
	char		err[1024];
	char	   *key = NULL;
	const char *data = NULL;
	size_t		len = 0;
	int64		next_offset;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "archiving the event queue");
	if (SPI_execute_with_args("DELETE FROM recsys.event_queue WHERE id IN"
							  " (SELECT id FROM recsys.event_queue ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
							  " RETURNING id, key, value",
							  1, types, values, NULL, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "recsys archiver: could not take rows from recsys.event_queue");
	n = SPI_processed;
	if (n == 0)
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		return true;
	}
	rows = palloc(sizeof(QueueRow) * n);
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		rows[i].tuple = SPI_tuptable->vals[i];
		rows[i].id = DatumGetInt64(SPI_getbinval(rows[i].tuple, SPI_tuptable->tupdesc, 1, &isnull));
	}
	qsort(rows, n, sizeof(QueueRow), cmp_int64);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		text	   *k = DatumGetTextPP(SPI_getbinval(rows[i].tuple, SPI_tuptable->tupdesc, 2, &isnull));
		text	   *v = DatumGetTextPP(SPI_getbinval(rows[i].tuple, SPI_tuptable->tupdesc, 3, &isnull));

		batch_add(b, b->committed + (int64) i, rows[i].id, VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k),
				  VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
	}
	next_offset = b->last + 1;

	if (b->events > 0)
	{
		if (b->stage.len > 0 && S3GzipWrite(b->gz, b->stage.data, b->stage.len) != 0)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory compressing events")));
		resetStringInfo(&b->stage);
		if (S3GzipFinish(b->gz) != 0)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory compressing events")));
		data = S3GzipOutput(b->gz)->data;
		len = S3GzipOutput(b->gz)->len;
		key = ArchiveObjectKey(QUEUE_TOPIC, 0, b->first);
		fault_point("before_put");
		if (ArchiveStorePut(store, key, data, len, err, sizeof(err)) != ARCHIVE_OK)
		{
			/* roll the deletion back: the rows wait for the next try */
			SPI_finish();
			PopActiveSnapshot();
			AbortCurrentTransaction();
			ArchiveDedupForget(b->dedup);
			batch_reset(b);
			store_state(false, err);
			pgstat_report_activity(STATE_IDLE, NULL);
			return false;
		}
		store_state(true, NULL);
		fault_point("after_put");
	}
	/*
	 * Same transaction and SPI connection: offset, manifest row, dead letters. (The
	 * key lives in SPI's memory: finishing SPI here would free it.)
	 */
	SPI_freetuptable(SPI_tuptable);
	record_batch(b, key, next_offset, (int64) len);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* let autovacuum see the queue's dead rows while the worker runs */
	pgstat_report_stat(false);
	fault_point("after_commit");
	pgstat_report_activity(STATE_IDLE, NULL);

	publish_flush(b, next_offset, (int64) len);
	batch_reset(b);
	return true;
}

/* The main loop without Kafka: drain recsys.event_queue. */
static void
queue_loop(void)
{
	List	   *offsets;
	TimestampTz waiting_since = 0;
	uint64		seen_request;

	strlcpy(topic, QUEUE_TOPIC, sizeof(topic));
	offsets = load_offsets();
	batches = MemoryContextAllocZero(TopMemoryContext, sizeof(Batch));
	nbatches = 1;
	batch_init(&batches[0], 0, offset_of(offsets, 0));
	SpinLockAcquire(&Shared->mutex);
	seen_request = Shared->flush_request;
	SpinLockRelease(&Shared->mutex);

	for (;;)
	{
		int64		pending;
		uint64		request;
		bool		due;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (!reload_if_asked(false))
			break;
		if (store_down && !got_sigterm && GetCurrentTimestamp() < store_retry_at)
		{
			sleep_ms(100);
			continue;
		}
		pending = queue_pending(recsys_archive_flush_events);
		now = GetCurrentTimestamp();
		SpinLockAcquire(&Shared->mutex);
		request = Shared->flush_request;
		Shared->parts[batches[0].slot].low = batches[0].committed;
		Shared->parts[batches[0].slot].high = batches[0].committed + pending;
		SpinLockRelease(&Shared->mutex);

		if (pending == 0)
			waiting_since = 0;
		else if (waiting_since == 0)
			waiting_since = now;
		due = pending > 0 &&
			(pending >= recsys_archive_flush_events || request != seen_request || got_sigterm ||
			 TimestampDifferenceExceeds(waiting_since, now, recsys_archive_flush_interval_ms));
		if (due)
		{
			if (request != seen_request)
				seen_request = request;
			if (queue_flush(recsys_archive_flush_events))
			{
				waiting_since = 0;
				continue;		/* more may be waiting */
			}
			if (got_sigterm)
				break;
			continue;
		}
		if (got_sigterm)
			break;
		sleep_ms(pending > 0 ? 100 : 250);
	}
}

/* ---------------------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------------------
 */

static void
require_archiver(void)
{
	if (Shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the recsys archiver is not running"),
				 errhint("Add recsys to shared_preload_libraries and restart the server.")));
	if (recsys_archiver_workers == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the recsys archiver is not running"),
				 errhint("Set recsys.archiver_workers to 1 or more and restart the server.")));
}

/* Sleep a little while waiting; raises on cancel or statement_timeout. */
static void
sync_sleep(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/* Run a query returning one bigint (NULL -> -1). */
static int64
query_int8(const char *sql)
{
	bool		isnull;
	int64		v;

	if (SPI_execute(sql, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "recsys: query failed: %s", sql);
	v = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	/* sync polls this every few milliseconds: free each result */
	SPI_freetuptable(SPI_tuptable);
	return isnull ? -1 : v;
}

/* Describe the archiver's present problems ("" when none) into buf. */
static void
describe_state(ArchiverShared *copy, StringInfo buf)
{
	if (copy->store_down)
		appendStringInfo(buf, "the archive store is unavailable since %s: %s",
						 timestamptz_to_str(copy->store_down_since), copy->store_error);
	if (copy->log_down && strcmp(copy->mode, "kafka") == 0)
		appendStringInfo(buf, "%sKafka is unreachable since %s: %s", buf->len ? "; " : "",
						 timestamptz_to_str(copy->log_down_since), copy->log_error);
}

/* Raise the timeout of recsys_archive_sync: what it waited for, and why, today. */
static void
sync_timeout(const char *what, int64 timeout_ms)
{
	ArchiverShared *copy = palloc(sizeof(ArchiverShared));
	StringInfoData why;

	SpinLockAcquire(&Shared->mutex);
	memcpy(copy, Shared, sizeof(ArchiverShared));
	SpinLockRelease(&Shared->mutex);
	initStringInfo(&why);
	describe_state(copy, &why);
	if (why.len == 0 && copy->last_error[0] && copy->last_error_resolved_at == 0)
		appendStringInfo(&why, "%s", copy->last_error);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("recsys_archive_sync timed out after %lld ms", (long long) timeout_ms),
			 errdetail("%s%s%s%s", what, why.len ? " Last archiver error: " : "", why.data,
					   why.len ? "." : ""),
			 errhint("See recsys.status and the server log.")));
}

/*
 * recsys_archive_sync(timeout): wait until every event produced before the call (the
 * outbox relayed, then each partition's offsets up to the log's end at that moment)
 * is archived; return the events archived so far.
 */
Datum
recsys_archive_sync(PG_FUNCTION_ARGS)
{
	Interval   *iv = PG_GETARG_INTERVAL_P(0);
	/* in double: months and days of a huge interval overflow int64 microseconds */
	double		span_ms = iv->time / 1000.0 +
		((double) iv->day + (double) iv->month * DAYS_PER_MONTH) * (SECS_PER_DAY * 1000.0);
	int64		timeout_ms;
	TimestampTz deadline;
	char		mode[16];
	int64		result;
	int			i;

	if (span_ms < 0 || span_ms > SYNC_MAX_TIMEOUT_MS)
		ereport(ERROR,
				(errcode(span_ms < 0 ? ERRCODE_INVALID_PARAMETER_VALUE : ERRCODE_INTERVAL_FIELD_OVERFLOW),
				 errmsg("recsys_archive_sync timeout \"%s\" is out of range",
						DatumGetCString(DirectFunctionCall1(interval_out, PG_GETARG_DATUM(0)))),
				 errdetail("The timeout must be between 0 seconds and 24 days.")));
	timeout_ms = (int64) span_ms;
	require_archiver();
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("recsys_archive_sync cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errhint("Call it in a READ COMMITTED transaction: it must see the archiver's commits.")));
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	SpinLockAcquire(&Shared->mutex);
	strlcpy(mode, Shared->mode, sizeof(mode));
	SpinLockRelease(&Shared->mutex);
	if (mode[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the recsys archiver has not started yet")));

	SPI_connect();

	/* 1. real-time ratings still in the outbox must reach the log first */
	if (OidIsValid(get_relname_relid("outbox", get_namespace_oid("recsys", false))))
	{
		int64		max_id = query_int8("SELECT max(id) FROM recsys.outbox");

		if (max_id >= 0)
		{
			char	   *q = psprintf("SELECT count(*) FROM recsys.outbox WHERE id <= %lld", (long long) max_id);

			while (query_int8(q) > 0)
			{
				if (GetCurrentTimestamp() >= deadline)
					sync_timeout("Ratings of recsys.outbox are not yet relayed to the event log.", timeout_ms);
				sync_sleep(10);
			}
		}
	}

	if (strcmp(mode, "queue") == 0)
	{
		int64		max_id = query_int8("SELECT max(id) FROM recsys.event_queue");

		if (max_id >= 0)
		{
			char	   *q = psprintf("SELECT count(*) FROM recsys.event_queue WHERE id <= %lld", (long long) max_id);

			while (query_int8(q) > 0)
			{
				SpinLockAcquire(&Shared->mutex);
				Shared->flush_request++;
				if (Shared->latch[0])
					SetLatch(Shared->latch[0]);
				SpinLockRelease(&Shared->mutex);
				if (GetCurrentTimestamp() >= deadline)
					sync_timeout("Rows of recsys.event_queue are not yet archived.", timeout_ms);
				sync_sleep(10);
			}
		}
	}
	else
	{
		/*
		 * The workers' watermark threads ask the log for its end offsets several times
		 * a second: wait for answers asked after this call began, then for the
		 * archive to reach them.
		 */
		TimestampTz start = GetCurrentTimestamp();
		int			nparts;
		int64	   *target;

		for (;;)
		{
			SpinLockAcquire(&Shared->mutex);
			nparts = Shared->topic_partitions;
			SpinLockRelease(&Shared->mutex);
			if (nparts > 0)
				break;
			if (GetCurrentTimestamp() >= deadline)
				sync_timeout("The archiver has not reached Kafka yet.", timeout_ms);
			sync_sleep(10);
		}
		target = palloc(sizeof(int64) * nparts);
		for (i = 0; i < nparts; i++)
			target[i] = -1;
		for (;;)
		{
			bool		done = true;
			char		what[256] = "";

			SpinLockAcquire(&Shared->mutex);
			for (i = 0; i < nparts; i++)
			{
				ArchiverPartition *p = NULL;
				int			s;

				for (s = 0; s < ARCHIVER_MAX_PARTITIONS; s++)
					if (Shared->parts[s].partition == i)
						p = &Shared->parts[s];
				if (p == NULL)
				{
					done = false;
					snprintf(what, sizeof(what), "No archiver worker has partition %d yet.", i);
					continue;
				}
				if (target[i] < 0 && p->high_at > start)
					target[i] = p->high;
				if (target[i] < 0)
				{
					done = false;
					snprintf(what, sizeof(what), "The end offset of partition %d is not known yet (is Kafka reachable?).", i);
				}
				else if (p->committed < target[i])
				{
					done = false;
					if (p->want < target[i])
						p->want = target[i];
					snprintf(what, sizeof(what), "Partition %d is archived up to offset %lld of %lld.",
							 i, (long long) p->committed, (long long) target[i]);
				}
			}
			SpinLockRelease(&Shared->mutex);
			if (done)
				break;
			if (GetCurrentTimestamp() >= deadline)
				sync_timeout(what, timeout_ms);
			sync_sleep(10);
		}
	}

	result = query_int8("SELECT coalesce(sum(events), 0)::bigint FROM recsys.archive_manifest");
	SPI_finish();
	PG_RETURN_INT64(result);
}

/* recsys.archive_status(): the archiver's rows of recsys.status. */
Datum
recsys_archive_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArchiverShared *copy;
	int			running = 0;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
#define ROW(c, m, v) do { \
		Datum	vals[3]; bool nulls[3] = {false, false, false}; \
		vals[0] = CStringGetTextDatum(c); vals[1] = CStringGetTextDatum(m); \
		vals[2] = CStringGetTextDatum(v); \
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, vals, nulls); \
	} while (0)

	if (Shared == NULL)
	{
		ROW("archiver", "state", "not running: recsys is not in shared_preload_libraries");
		return (Datum) 0;
	}
	copy = palloc(sizeof(ArchiverShared));
	SpinLockAcquire(&Shared->mutex);
	memcpy(copy, Shared, sizeof(ArchiverShared));
	SpinLockRelease(&Shared->mutex);

	for (i = 0; i < ARCHIVER_MAX_WORKERS; i++)
		if (copy->pid[i] != 0)
			running++;
	ROW("archiver", "workers", psprintf("%d of %d running", running, recsys_archiver_workers));
	ROW("archiver", "mode", copy->mode[0] ? copy->mode : "not started");
	ROW("archiver", "storage", copy->storage);
	{
		StringInfoData st;

		initStringInfo(&st);
		describe_state(copy, &st);
		ROW("archiver", "state", !copy->mode[0] ? "not started" : st.len ? st.data : "ok");
	}
	ROW("archiver", "store", copy->store_down ? "unavailable (retrying)" : "ok");
	ROW("archiver", "store_down_since", copy->store_down ? timestamptz_to_str(copy->store_down_since) : "");
	if (strcmp(copy->mode, "kafka") == 0)
	{
		ROW("archiver", "kafka", copy->log_down ? "unreachable (retrying)" : "ok");
		ROW("archiver", "kafka_down_since", copy->log_down ? timestamptz_to_str(copy->log_down_since) : "");
	}
	ROW("archiver", "objects_since_start", psprintf(INT64_FORMAT, copy->objects));
	ROW("archiver", "events_since_start", psprintf(INT64_FORMAT, copy->events));
	ROW("archiver", "bytes_since_start", psprintf(INT64_FORMAT, copy->bytes));
	ROW("archiver", "last_flush", copy->last_flush ? timestamptz_to_str(copy->last_flush) : "");
	ROW("archiver", "last_error", copy->last_error);
	ROW("archiver", "last_error_at", copy->last_error_at ? timestamptz_to_str(copy->last_error_at) : "");
	/* "current" while the failing component is still down, else when it recovered */
	ROW("archiver", "last_error_resolved_at",
		!copy->last_error[0] ? "" :
		copy->last_error_resolved_at ? timestamptz_to_str(copy->last_error_resolved_at) : "current");
	ROW("archive", "duplicates_dropped",
		copy->duplicates_known ? psprintf(INT64_FORMAT, copy->duplicates) : "unknown (archiver not started)");
	ROW("archiver", "retention_gap_offsets_since_start", psprintf(INT64_FORMAT, copy->gap_offsets));
	for (i = 0; i < ARCHIVER_MAX_PARTITIONS; i++)
	{
		ArchiverPartition *p = &copy->parts[i];

		if (p->partition < 0)
			continue;
		ROW("event_log", psprintf("%s/%d archived_offset", copy->topic, p->partition),
			psprintf(INT64_FORMAT, p->committed));
		ROW("event_log", psprintf("%s/%d end_offset", copy->topic, p->partition),
			psprintf(INT64_FORMAT, p->high));
		/* an end offset below the archived one is an old answer (Kafka restarted): not lag 0 */
		ROW("event_log", psprintf("%s/%d lag", copy->topic, p->partition),
			p->high >= 0 && p->committed >= 0 && p->high >= p->committed ?
			psprintf(INT64_FORMAT, p->high - p->committed) : "unknown");
	}
	return (Datum) 0;
}
