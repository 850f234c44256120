/*
 * outbox.c: the relay worker ("recsys relay") of the transactional outbox.
 *
 * recsys_rate() and the \copy inbox insert events into recsys.outbox in the caller's
 * transaction, so an event exists if and only if that transaction commits.  This
 * worker, started with the server (shared_preload_libraries), connects to
 * recsys.database and loops:
 *
 *   - take up to RELAY_BATCH committed rows in id order (FOR UPDATE SKIP LOCKED);
 *   - Kafka configured: produce them (idempotent producer, kept across batches),
 *     wait for every acknowledgement (bounded by recsys.kafka_timeout), then delete
 *     the rows and commit.  If Kafka fails, the transaction rolls back: the rows stay
 *     and are sent again later (with the same event ids), after a back-off.  A crash
 *     between the acknowledgement and the commit sends a batch twice; nothing is
 *     ever lost.  (The idempotent producer cannot prevent that resend: its sequence
 *     numbers do not outlive the process.  The archiver drops the second copy by
 *     event id, see archive_dedup.h; a test pauses the relay right there, at the
 *     fault point after_ack, to kill it.)
 *   - no Kafka: move the rows into recsys.event_queue in one statement (exactly once).
 *
 * Every few seconds it also marks failed the ingest jobs whose worker is gone, and
 * aborts the Kafka transactions that failed 'stop' jobs left open (a broker down at
 * the time, a worker killed): creating a producer with the job's transactional.id
 * fences the old one and aborts its transaction, so read_committed consumers (the
 * archiver) are not held up until the transaction times out.  On
 * SIGHUP it rereads the configuration (and recreates the producer if the Kafka
 * settings changed); on SIGTERM it finishes the current batch and exits.  PostgreSQL
 * errors make it exit; the postmaster restarts it after bgw_restart_time.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include <unistd.h>
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "ingest.h"
#include "recsys.h"
#include "kafka.h"

#define RELAY_BATCH			5000
#define RELAY_NAP_MS		200
#define RELAY_BACKOFF_MS	2000
#define RECONCILE_MS		5000

static KafkaProducer *producer = NULL;
static char *producer_conf = NULL;	/* brokers, topic, properties it was made with */
static bool kafka_failing = false;

static bool relay_once(MemoryContext loopcxt, bool *more);
static bool relay_kafka(uint64 *sent);
static KafkaProducer *relay_producer(const char *txnid, char *err, size_t errlen);
static uint64 relay_queue(void);
static void relay_drop_producer(void);
static int	relay_interrupt(void *arg);
static void relay_abort_orphans(void);

/* Register the relay worker (while preloading). */
void
OutboxInit(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "recsys");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "OutboxRelayMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "recsys relay");
	snprintf(worker.bgw_type, BGW_MAXLEN, "recsys relay");
	RegisterBackgroundWorker(&worker);
}

/* Stop waits on Kafka when the server shuts down. */
static int
relay_interrupt(void *arg)
{
	return ShutdownRequestPending;
}

/* Free the producer (it is recreated at the next batch). */
static void
relay_drop_producer(void)
{
	KafkaProducerFree(producer);
	producer = NULL;
	if (producer_conf)
		pfree(producer_conf);
	producer_conf = NULL;
}

/* Entry point of the relay worker. */
void
OutboxRelayMain(Datum main_arg)
{
	MemoryContext loopcxt;
	TimestampTz last_reconcile = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(recsys_database, NULL, 0);
	pgstat_report_appname("recsys relay");

	loopcxt = AllocSetContextCreate(TopMemoryContext, "recsys relay loop", ALLOCSET_DEFAULT_SIZES);

	while (!ShutdownRequestPending)
	{
		bool		more = false;
		int			nap = RELAY_NAP_MS;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!RecoveryInProgress())
		{
			bool		reconcile = TimestampDifferenceExceeds(last_reconcile, GetCurrentTimestamp(), RECONCILE_MS);

			if (reconcile)
				last_reconcile = GetCurrentTimestamp();
			if (!relay_once(loopcxt, &more))
				nap = RELAY_BACKOFF_MS;
			if (reconcile)
			{
				SetCurrentStatementStartTimestamp();
				StartTransactionCommand();
				SPI_connect();
				PushActiveSnapshot(GetTransactionSnapshot());
				/* (a database not yet upgraded to 0.2.0 lacks the columns the SQL sets) */
				if (SPI_execute("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute "
								"WHERE attrelid = to_regclass('recsys.ingest_jobs') "
								"AND attname = 'events_unconfirmed' AND NOT attisdropped)",
								true, 0) == SPI_OK_SELECT &&
					SPI_processed == 1 &&
					strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0)
				{
					pgstat_report_activity(STATE_RUNNING, "recsys relay: reconciling ingest jobs");
					SPI_execute(INGEST_RECONCILE_SQL, false, 0);
					if (RecsysKafkaConfigured())
						relay_abort_orphans();
				}
				SPI_finish();
				PopActiveSnapshot();
				CommitTransactionCommand();
				pgstat_report_stat(true);
				pgstat_report_activity(STATE_IDLE, NULL);
			}
		}
		MemoryContextReset(loopcxt);
		if (more)
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	relay_drop_producer();
	/* exit code 1: the postmaster restarts us (after pg_terminate_backend, say) */
	proc_exit(1);
}

/*
 * Relay one batch in one transaction.  *more is set when the batch was full.
 * Returns false when Kafka failed (the caller backs off).
 */
static bool
relay_once(MemoryContext loopcxt, bool *more)
{
	bool		ok = true;
	MemoryContext old;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	old = MemoryContextSwitchTo(loopcxt);

	if (SPI_execute("SELECT to_regclass('recsys.outbox') IS NOT NULL", true, 0) != SPI_OK_SELECT ||
		SPI_processed != 1 ||
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") != 0)
	{
		/* the extension is not installed (yet) in recsys.database */
		MemoryContextSwitchTo(old);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		return true;
	}

	pgstat_report_activity(STATE_RUNNING, "recsys relay: sending the outbox");
	if (RecsysKafkaConfigured())
	{
		uint64		sent = 0;

		ok = relay_kafka(&sent);
		*more = ok && sent >= RELAY_BATCH;
	}
	else
	{
		relay_drop_producer();
		*more = relay_queue() >= RELAY_BATCH;
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
	PopActiveSnapshot();
	if (ok)
		CommitTransactionCommand();
	else
		AbortCurrentTransaction();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/* Move a batch into the queue table, in order, exactly once; return its size. */
static uint64
relay_queue(void)
{
	char	   *sql = psprintf("WITH moved AS (DELETE FROM recsys.outbox WHERE id IN "
							   "(SELECT id FROM recsys.outbox ORDER BY id LIMIT %d FOR UPDATE SKIP LOCKED) "
							   "RETURNING id, key, value) "
							   "INSERT INTO recsys.event_queue (key, value) "
							   "SELECT key, value FROM moved ORDER BY id",
							   RELAY_BATCH);

	if (SPI_execute(sql, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not move the outbox into recsys.event_queue");
	return SPI_processed;
}

/* Create a producer with the relay's settings (transactional when txnid is set). */
static KafkaProducer *
relay_producer(const char *txnid, char *err, size_t errlen)
{
	KafkaProducerOptions o;
	KafkaProducer *p;
	char	   *props = GucKafkaProperties();

	memset(&o, 0, sizeof(o));
	o.brokers = recsys_kafka_brokers;
	o.properties = props;
	o.topic = recsys_kafka_topic;
	o.timeout_ms = recsys_kafka_timeout_ms;
	o.interrupt = relay_interrupt;
	o.transactional_id = txnid;
	p = KafkaProducerNew(&o, err, errlen);
	/* the list may carry kafka.* secrets */
	explicit_bzero(props, strlen(props));
	pfree(props);
	return p;
}

/* Send a batch to Kafka, then delete it; false (rows kept) when Kafka failed. */
static bool
relay_kafka(uint64 *sent)
{
	char	   *conf = psprintf("%s|%s|%s", recsys_kafka_brokers, recsys_kafka_topic,
								recsys_kafka_properties);
	char		err[1024];
	uint64		n,
				i;
	int			rc = KAFKA_OK;
	int64		maxid = 0;

	if (producer && strcmp(conf, producer_conf) != 0)
		relay_drop_producer();

	if (SPI_execute(psprintf("SELECT id, key, value FROM recsys.outbox ORDER BY id "
							 "LIMIT %d FOR UPDATE SKIP LOCKED", RELAY_BATCH),
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.outbox");
	n = SPI_processed;
	if (n == 0)
		return true;

	if (producer == NULL)
	{
		producer = relay_producer(NULL, err, sizeof(err));
		if (producer == NULL)
		{
			ereport(WARNING,
					(errmsg("recsys relay could not create a Kafka producer: %s", err)));
			return false;
		}
		producer_conf = MemoryContextStrdup(TopMemoryContext, conf);
	}
	KafkaProducerResetCounters(producer);

	{
		SPITupleTable *tt = SPI_tuptable;
		int64	   *ids = palloc(sizeof(int64) * n);

		for (i = 0; i < n && rc == KAFKA_OK; i++)
		{
			bool		isnull;
			text	   *key = DatumGetTextPP(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
			text	   *value = DatumGetTextPP(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));

			ids[i] = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
			maxid = Max(maxid, ids[i]);
			rc = KafkaProduce(producer, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
							  VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
		}
		if (rc == KAFKA_OK)
			rc = KafkaProducerFlush(producer, -1);
		if (rc != KAFKA_OK)
		{
			if (!kafka_failing)
				ereport(WARNING,
						(errmsg("recsys relay could not send %llu outbox events to Kafka: %s",
								(unsigned long long) n, KafkaProducerError(producer)),
						 errdetail("The events stay in recsys.outbox and will be sent again.")));
			kafka_failing = true;
			relay_drop_producer();
			return false;
		}
		if (kafka_failing)
			ereport(LOG, (errmsg("recsys relay: Kafka is reachable again")));
		kafka_failing = false;

		RecsysFaultPoint("relay", "after_ack", false);	/* test hook (recsys.c) */

		/* acknowledged: delete exactly the rows we sent */
		{
			Datum		args[1];
			Oid			types[1] = {INT8ARRAYOID};
			Datum	   *d = palloc(sizeof(Datum) * n);

			for (i = 0; i < n; i++)
				d[i] = Int64GetDatum(ids[i]);
			args[0] = PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			if (SPI_execute_with_args("DELETE FROM recsys.outbox WHERE id = ANY($1)",
									  1, types, args, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not delete relayed outbox rows");
		}
		*sent = n;
	}
	return true;
}


/* Abort the Kafka transactions of failed 'stop' jobs that could not abort them. */
static void
relay_abort_orphans(void)
{
	uint64		i,
				n;
	int64	   *jobs;

	if (SPI_execute("SELECT job_id FROM recsys.ingest_jobs WHERE kafka_txn_pending "
					"AND status = 'failed' ORDER BY job_id LIMIT 10", true, 0) != SPI_OK_SELECT)
		return;
	n = SPI_processed;
	jobs = palloc(sizeof(int64) * (n + 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		jobs[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	for (i = 0; i < n; i++)
	{
		KafkaProducer *p;
		char		txnid[64];
		char		err[1024];

		snprintf(txnid, sizeof(txnid), INGEST_TXN_ID_FORMAT, (long long) jobs[i]);
		/* init_transactions fences the old producer and aborts its transaction */
		p = relay_producer(txnid, err, sizeof(err));
		if (p == NULL)
		{
			ereport(LOG,
					(errmsg("recsys relay could not yet abort the Kafka transaction of ingest job %lld: %s",
							(long long) jobs[i], err)));
			break;
		}
		KafkaProducerFree(p);
		SPI_execute_with_args("UPDATE recsys.ingest_jobs SET kafka_txn_pending = false WHERE job_id = $1",
							  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(jobs[i])}, NULL, false, 0);
		ereport(LOG,
				(errmsg("recsys relay aborted the Kafka transaction left open by ingest job %lld",
						(long long) jobs[i])));
	}
}
