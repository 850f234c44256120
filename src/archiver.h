/*
 * archiver.h: the "recsys archiver" background workers (event log -> object store).
 *
 * See archiver.c for the design.  SQL: recsys_archive_sync(), recsys.archive_status()
 * (part of the recsys.status view).
 */
#ifndef RECSYS_ARCHIVER_H
#define RECSYS_ARCHIVER_H

#include "postgres.h"

/* Register the workers and their shared memory (when preloaded). */
extern void ArchiverInit(void);

/* Entry point of one worker; the argument is its index (0 .. archiver_workers - 1). */
extern PGDLLEXPORT void ArchiverMain(Datum main_arg);

#endif							/* RECSYS_ARCHIVER_H */
