/*
 * recsys.c: the extension's entry point.
 *
 * _PG_init reads like a table of contents: each module defines its settings, shared
 * memory and background workers in its own XxxInit(). Nothing here talks to a server:
 * connections are made lazily by the functions and workers that need them. It also
 * holds what several modules share: the preload check, the test fault points, and the
 * start of a dynamic worker that a SQL call hands its work to and waits for.
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"

#include "aggregate.h"
#include "archiver.h"
#include "cache.h"
#include "guc.h"
#include "ingest.h"
#include "rank.h"
#include "recommend.h"
#include "recsys.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

bool		RecsysPreloaded = false;

/* Define settings, then shared memory and workers when preloaded. */
void
_PG_init(void)
{
	RecsysPreloaded = process_shared_preload_libraries_in_progress;
	GucInit();
	IngestInit();
	ArchiverInit();
	AggregateInit();
	CacheInit();
	RecommendInit();
	RankInit();
}

/* Raise an error when a function that needs the workers runs without preloading. */
void
RecsysRequirePreload(const char *what)
{
	if (!RecsysPreloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires recsys to be loaded via shared_preload_libraries", what),
				 errhint("Add recsys to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Test hook of the crash and cancel suites: when the file recsys_<who>_fault in the
 * data directory names this point, remove it, write recsys_<who>_paused ("point pid")
 * and pause up to 60 s there, so a test can kill the process, stop the server or
 * look at the tables at exactly that point.  With release, the pause also ends when
 * the test removes the paused file, and it waits on the latch, so a cancel or a
 * termination works during it; without, it sleeps through signals.  One failed
 * fopen() a call otherwise.
 */
void
RecsysFaultPoint(const char *who, const char *point, bool release)
{
	char		path[MAXPGPATH];
	char		buf[64] = "";
	FILE	   *f;
	int			i;

	snprintf(path, sizeof(path), "%s/recsys_%s_fault", DataDir, who);
	if ((f = fopen(path, "r")) == NULL)
		return;
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, " \r\n")] = '\0';
	if (strcmp(buf, point) != 0)
		return;
	unlink(path);
	snprintf(path, sizeof(path), "%s/recsys_%s_paused", DataDir, who);
	if ((f = fopen(path, "w")) != NULL)
	{
		fprintf(f, "%s %d\n", point, MyProcPid);
		fclose(f);
	}
	ereport(LOG, (errmsg("recsys %s paused at fault point %s", who, point)));
	for (i = 0; i < 600; i++)
	{
		if (release)
		{
			struct stat st;

			if (stat(path, &st) != 0)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		else
		{
			if (!PostmasterIsAlive())
				break;
			pg_usleep(100000L);
		}
	}
	unlink(path);
}

/* Start the worker on seg and wait until l->done says so, the worker exits or we are cancelled. */
void
RecsysRunWorker(const RecsysWorkerLaunch *l, dsm_segment *seg)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "recsys");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", l->function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", l->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", l->type);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("%s", l->start_error),
				 errhint("%s", l->start_hint)));

	PG_TRY();
	{
		while (!l->done(l->arg))
		{
			pid_t		pid;
			BgwHandleStatus status = GetBackgroundWorkerPid(handle, &pid);

			if (status == BGWH_STOPPED || status == BGWH_POSTMASTER_DIED)
			{
				/* it may have finished just before it exited */
				if (l->done(l->arg))
					break;
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("%s", l->exit_error),
						 errhint("%s", l->exit_hint)));
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 l->poll_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		if (l->terminate_on_cancel)
			TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Raise the error a worker reported (copied out of seg first), detaching seg. */
void
RecsysRaiseWorkerError(dsm_segment *seg, int sqlerrcode, const char *message,
					   const char *detail, const char *hint)
{
	char		m[1024],
				d[1024],
				h[512];

	strlcpy(m, message, sizeof(m));
	strlcpy(d, detail, sizeof(d));
	strlcpy(h, hint, sizeof(h));
	dsm_detach(seg);
	ereport(ERROR,
			(errcode(sqlerrcode ? sqlerrcode : ERRCODE_INTERNAL_ERROR),
			 errmsg_internal("%s", m),
			 d[0] ? errdetail_internal("%s", d) : 0,
			 h[0] ? errhint("%s", h) : 0));
}
