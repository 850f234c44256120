/*
 * ingest.h: catalogue loading, ratings ingestion and the outbox relay.
 *
 * recsys_ingest_csv() (ingest.c) checks permissions and the file, then hands the job
 * to a dynamic background worker (ingest_worker.c) through a small dynamic shared
 * memory segment (IngestShared): the parameters go in, the job id, the final counts
 * and the error, if any, come back.  The worker commits the job row and its progress
 * in recsys.ingest_jobs as it goes; the caller only waits (synchronous mode) or
 * returns as soon as the job row exists (async).
 *
 * The relay worker (outbox.c) sends the rows of recsys.outbox to the event log and
 * marks the jobs of dead ingest workers failed.
 */
#ifndef RECSYS_INGEST_H
#define RECSYS_INGEST_H

#include "datatype/timestamp.h"
#include "storage/spin.h"

/* states of an ingest job, as seen through IngestShared */
#define INGEST_STARTING		0	/* the worker has not committed the job row yet */
#define INGEST_RUNNING		1	/* job row committed, job_id set */
#define INGEST_DONE			2	/* succeeded: events and rejected set */
#define INGEST_FAILED		3	/* failed: sqlerrcode and message set */

typedef struct IngestShared
{
	slock_t		mutex;

	/* set by the caller */
	Oid			database;
	int64		resume_job;		/* recsys_ingest_resume: the job to go on with (else 0) */
	int			caller_procno;
	bool		stop_mode;		/* on_error = 'stop' */
	int			kafka_timeout_ms;
	char		path[MAXPGPATH];
	char		submitted_by[NAMEDATALEN];
	char		brokers[1024];	/* empty: the queue table */
	char		topic[256];
	char		properties[4096];

	/* set by the worker */
	int			state;
	int64		job_id;
	int64		events;
	int64		rejected;
	int			sqlerrcode;
	char		message[1024];
	char		detail[1024];
	char		hint[512];
} IngestShared;

extern void IngestInit(void);

/* the entry points of the background workers (bgw_function_name) */
extern PGDLLEXPORT void IngestWorkerMain(Datum main_arg);
extern PGDLLEXPORT void OutboxRelayMain(Datum main_arg);

/* Register the relay worker (called from IngestInit while preloading). */
extern void OutboxInit(void);

/* Raise an error unless the current user may read server files (as COPY FROM file). */
extern void IngestCheckFileAccess(void);

/* Tell the caller of an ingest job that its state changed. */
extern void IngestNotifyCaller(IngestShared *sh);

/* bytes of a file's start that its fingerprint hashes */
#define INGEST_HEAD_BYTES	(1024 * 1024)

/*
 * Fingerprint a regular file: size, modification time and the SHA-256 of its first
 * INGEST_HEAD_BYTES (hex).  False, with a message in err, when it cannot be read.
 */
extern bool IngestFileFingerprint(const char *path, int64 *size, TimestampTz *mtime,
								  char *sha256_hex, char *err, size_t errlen);

/*
 * SQL text marking failed the jobs whose worker is gone (for the relay and workers).
 * A 'reject' job on Kafka may have sent events after its last progress commit (line
 * `lines`) whose acknowledgement it never recorded: events_unconfirmed stays NULL
 * (unknown) and the error says so.  A 'stop' job's events were inside its Kafka
 * transaction (aborted) or its one queue transaction (rolled back): none counts.
 */
#define INGEST_RECONCILE_SQL \
	"UPDATE recsys.ingest_jobs j SET status = 'failed', finished_at = now(), " \
	"updated_at = now(), " \
	"error = coalesce(j.error, 'the ingest worker exited without finishing the job' || " \
	"CASE WHEN j.on_error = 'reject' AND j.target LIKE 'kafka:%' THEN " \
	"format(': events counts the acknowledged events of its first %s data lines; events of later lines may have reached the log uncounted (events_unconfirmed is unknown); recsys_ingest_resume(%s) sends them again with the same event ids', j.lines, j.job_id) " \
	"ELSE '' END), " \
	"events = CASE WHEN j.on_error = 'stop' THEN 0 ELSE j.events END, " \
	"events_unconfirmed = CASE WHEN j.on_error = 'reject' AND j.target LIKE 'kafka:%' THEN NULL ELSE 0 END, " \
	"kafka_txn_pending = (j.on_error = 'stop' AND j.target LIKE 'kafka:%') " \
	"WHERE j.status IN ('queued', 'running') AND j.target <> 'outbox' " \
	"AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a " \
	"WHERE a.pid = j.worker_pid AND a.backend_type = 'recsys ingest')"

/* the transactional.id of a 'stop' job's Kafka transaction */
#define INGEST_TXN_ID_FORMAT "recsys-ingest-%lld"

#endif							/* RECSYS_INGEST_H */
