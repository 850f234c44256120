/* recsys.h: state shared by every module of the extension. */
#ifndef RECSYS_H
#define RECSYS_H

#include "storage/dsm.h"

/* true when recsys was loaded by shared_preload_libraries (its workers run) */
extern bool RecsysPreloaded;

/* Raise an error, with a hint, when recsys is not preloaded; what names the caller. */
extern void RecsysRequirePreload(const char *what);

/*
 * Pause at a named test fault point of process kind who ("archiver", "relay",
 * "aggregate") when the suite armed it (see recsys.c).
 */
extern void RecsysFaultPoint(const char *who, const char *point, bool release);

/*
 * A call handed to a dynamic background worker of recsys through a DSM segment: what
 * RecsysRunWorker() needs to start it and to know when to stop waiting.
 */
typedef struct RecsysWorkerLaunch
{
	const char *function;		/* its entry point in recsys.so */
	const char *name;			/* bgw_name */
	const char *type;			/* bgw_type */
	bool		(*done) (void *arg);	/* read the call's state: stop waiting? */
	void	   *arg;
	bool		terminate_on_cancel;	/* the run dies with a cancelled caller */
	long		poll_ms;
	const char *start_error;	/* could not register the worker: errmsg, errhint */
	const char *start_hint;
	const char *exit_error;		/* it exited before done: errmsg, errhint */
	const char *exit_hint;
} RecsysWorkerLaunch;

/* Start the worker on seg and wait until l->done says so, the worker exits or we are cancelled. */
extern void RecsysRunWorker(const RecsysWorkerLaunch *l, dsm_segment *seg);

/* Raise the error a worker reported (copied out of seg first), detaching seg. */
extern void RecsysRaiseWorkerError(dsm_segment *seg, int sqlerrcode, const char *message,
								   const char *detail, const char *hint) pg_attribute_noreturn();

#endif							/* RECSYS_H */
