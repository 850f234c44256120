/*
 * recsys.c: the extension's entry point.
 *
 * _PG_init reads like a table of contents: each module defines its settings, shared
 * memory and background workers in its own XxxInit(). Nothing here talks to a server:
 * connections are made lazily by the functions and workers that need them.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "aggregate.h"
#include "archiver.h"
#include "cache.h"
#include "guc.h"
#include "ingest.h"
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
