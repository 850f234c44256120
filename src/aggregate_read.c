/*
 * aggregate_read.c: which archived objects a run reads, and reading them.
 *
 * The watermark is recsys.aggregate_objects: one row per object consumed (or
 * quarantined), with the size it had.  An incremental run reads the manifest's
 * objects that have no such row of the same size, in (topic, partition, first offset)
 * order; a re-archived object (same key, new bytes) is read again, which changes
 * nothing because the merge is idempotent per event id (aggregate_ratings.c).  A
 * rebuild lists the store itself (not the manifest: it is the disaster-recovery
 * path), after deleting every derived row in the same transaction.
 *
 * Failures: an object the store answers 404 for, or whose gzip or JSON is corrupt,
 * is quarantined whole (its events are dropped from the run, the object is recorded
 * with its error and the run goes on); any other store error (timeout, 5xx, refused
 * connection) fails the run, so the watermark and the derived tables stay as they
 * were and the next run retries.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "aggregate.h"
#include "cache.h"
#include "ingest_event.h"

typedef struct StreamMap
{
	char	   *topic;
	int32		partition;
	int32		stream;
} StreamMap;

typedef struct ListState
{
	AggRun	   *run;
	int			cap;
	int64		skipped;
} ListState;

typedef struct ObjParse
{
	AggRun	   *run;
	AggObject  *obj;
} ObjParse;

static void clear_derived(void);
static int	list_cb(const char *key, int64 size, void *arg);
static int	cmp_object(const void *a, const void *b);
static void assign_streams(AggRun *run);
static int	event_cb(const EventRecord *ev, int64 line, void *arg);
static void quarantine(AggRun *run, AggObject *obj, const char *error);

/* Choose the run's objects: the new ones of the manifest, or (rebuild) the store's. */
void
AggListObjects(AggRun *run)
{
	int			i;
	bool		isnull;

	if (run->rebuild)
	{
		ListState	ls = {run, 0, 0};
		char		err[1024];

		AggProgressPhase("clearing the derived tables");
		clear_derived();
		CacheInvalidateAllAfterCommit();
		AggProgressPhase("listing the object store");
		if (ArchiveStoreList(run->store, list_cb, &ls, err, sizeof(err)) != ARCHIVE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not list the archive in %s: %s", run->store->description, err),
					 errdetail("Nothing was changed."),
					 errhint("Check that the object store is up, then run recsys_aggregate(rebuild => true) again.")));
		if (ls.skipped > 0)
			ereport(WARNING,
					(errmsg("%lld objects of the store are not archive objects and were skipped",
							(long long) ls.skipped)));
		if (run->nobjects > 1)
			qsort(run->objects, run->nobjects, sizeof(AggObject), cmp_object);
	}
	else
	{
		uint64		n;

		AggProgressPhase("finding new objects");
		if (SPI_execute("SELECT m.object_key, m.topic, m.partition, m.first_offset, m.bytes, m.events,"
						" m.storage = 'local'"
						" FROM recsys.archive_manifest m"
						" WHERE NOT EXISTS (SELECT 1 FROM recsys.aggregate_objects a"
						"  WHERE a.object_key = m.object_key AND a.bytes = m.bytes)"
						" ORDER BY m.topic, m.partition, m.first_offset",
						false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read recsys.archive_manifest");
		n = SPI_processed;
		run->objects = palloc0(sizeof(AggObject) * Max(n, 1));
		for (i = 0; i < (int) n; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	d = SPI_tuptable->tupdesc;
			AggObject  *o = &run->objects[i];

			o->key = TextDatumGetCString(SPI_getbinval(t, d, 1, &isnull));
			o->topic = TextDatumGetCString(SPI_getbinval(t, d, 2, &isnull));
			o->partition = DatumGetInt32(SPI_getbinval(t, d, 3, &isnull));
			o->first_offset = DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
			o->bytes = DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
			o->events = DatumGetInt64(SPI_getbinval(t, d, 6, &isnull));
			o->local = DatumGetBool(SPI_getbinval(t, d, 7, &isnull));
		}
		run->nobjects = (int) n;
		SPI_freetuptable(SPI_tuptable);
	}
	assign_streams(run);

	if (SPI_execute("SELECT NOT EXISTS (SELECT 1 FROM recsys.ratings)", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.ratings");
	run->first_load = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
}

/* Delete every derived row (in the run's transaction: readers keep the old ones). */
static void
clear_derived(void)
{
	static const char *const sql[] = {
		"DELETE FROM recsys.ratings",
		"DELETE FROM recsys.user_profiles",
		"DELETE FROM recsys.movie_stats",
		"DELETE FROM recsys.item_neighbors",
		"DELETE FROM recsys.genre_top",
		"DELETE FROM recsys.aggregate_objects",
		"UPDATE recsys.aggregate_state SET neighbors_run_id = NULL, neighbors_ratings = 0,"
		" ratings_changed_since = 0",
		NULL
	};
	int			i;

	for (i = 0; sql[i]; i++)
	{
		int			rc = SPI_execute(sql[i], false, 0);

		if (rc != SPI_OK_DELETE && rc != SPI_OK_UPDATE)
			elog(ERROR, "could not clear the derived tables: %s", sql[i]);
		CHECK_FOR_INTERRUPTS();
	}
}

/* One key of the store's listing. */
static int
list_cb(const char *key, int64 size, void *arg)
{
	ListState  *ls = arg;
	AggRun	   *run = ls->run;
	char		topic[256];
	int32		partition;
	int64		first;
	AggObject  *o;

	CHECK_FOR_INTERRUPTS();
	if (!ArchiveObjectKeyParse(key, topic, sizeof(topic), &partition, &first))
	{
		ls->skipped++;
		return 0;
	}
	if (run->nobjects == ls->cap)
	{
		ls->cap = ls->cap ? ls->cap * 2 : 256;
		run->objects = run->objects
			? repalloc(run->objects, sizeof(AggObject) * ls->cap)
			: palloc(sizeof(AggObject) * ls->cap);
	}
	o = &run->objects[run->nobjects++];
	memset(o, 0, sizeof(AggObject));
	o->key = pstrdup(key);
	o->topic = pstrdup(topic);
	o->partition = partition;
	o->first_offset = first;
	o->bytes = size;
	o->events = -1;
	o->local = !run->store->use_s3;
	return 0;
}

static int
cmp_object(const void *a, const void *b)
{
	const AggObject *x = a;
	const AggObject *y = b;
	int			c = strcmp(x->topic, y->topic);

	if (c != 0)
		return c;
	if (x->partition != y->partition)
		return x->partition < y->partition ? -1 : 1;
	if (x->first_offset != y->first_offset)
		return x->first_offset < y->first_offset ? -1 : 1;
	return 0;
}

/* Give each object the id of its (topic, partition), creating the ids it needs. */
static void
assign_streams(AggRun *run)
{
	StreamMap  *map;
	int			nmap = 0;
	int			next = 1;
	int			i,
				j;
	bool		isnull;

	if (SPI_execute("SELECT stream, topic, partition FROM recsys.aggregate_streams", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.aggregate_streams");
	map = palloc(sizeof(StreamMap) * (SPI_processed + run->nobjects + 1));
	for (i = 0; i < (int) SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;

		map[nmap].stream = DatumGetInt32(SPI_getbinval(t, d, 1, &isnull));
		map[nmap].topic = TextDatumGetCString(SPI_getbinval(t, d, 2, &isnull));
		map[nmap].partition = DatumGetInt32(SPI_getbinval(t, d, 3, &isnull));
		if (map[nmap].stream >= next)
			next = map[nmap].stream + 1;
		nmap++;
	}
	SPI_freetuptable(SPI_tuptable);

	for (i = 0; i < run->nobjects; i++)
	{
		AggObject  *o = &run->objects[i];

		for (j = 0; j < nmap; j++)
			if (map[j].partition == o->partition && strcmp(map[j].topic, o->topic) == 0)
				break;
		if (j == nmap)
		{
			Oid			types[3] = {INT4OID, TEXTOID, INT4OID};
			Datum		values[3];

			map[nmap].stream = next++;
			map[nmap].topic = o->topic;
			map[nmap].partition = o->partition;
			values[0] = Int32GetDatum(map[nmap].stream);
			values[1] = CStringGetTextDatum(o->topic);
			values[2] = Int32GetDatum(o->partition);
			if (SPI_execute_with_args("INSERT INTO recsys.aggregate_streams (stream, topic, partition)"
									  " VALUES ($1, $2, $3)", 3, types, values, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not insert into recsys.aggregate_streams");
			nmap++;
		}
		o->stream = map[j].stream;
	}
}

/* Append one parsed event to the run's array. */
static int
event_cb(const EventRecord *ev, int64 line, void *arg)
{
	ObjParse *ps = arg;
	AggRun	   *run = ps->run;
	AggEvent   *e;

	if (ev->event_id < INGEST_EVENT_ID_FACTOR)
		run->max_rt_event_id = Max(run->max_rt_event_id, ev->event_id);
	else
		run->max_job_id = Max(run->max_job_id, ev->event_id / INGEST_EVENT_ID_FACTOR);
	if (ev->forget)
	{
		/* a tombstone: remembered apart (aggregate_ratings.c applies it) */
		if (run->ntomb == run->tombcap)
		{
			run->tombcap = run->tombcap ? run->tombcap * 2 : 64;
			run->tomb_user = run->tomb_user
				? repalloc(run->tomb_user, sizeof(int64) * run->tombcap)
				: MemoryContextAlloc(run->cxt, sizeof(int64) * run->tombcap);
			run->tomb_ts = run->tomb_ts
				? repalloc(run->tomb_ts, sizeof(int64) * run->tombcap)
				: MemoryContextAlloc(run->cxt, sizeof(int64) * run->tombcap);
		}
		run->tomb_user[run->ntomb] = ev->user_id;
		run->tomb_ts[run->ntomb] = ev->ts;
		run->ntomb++;
		return 0;
	}
	if (run->nev == run->evcap)
	{
		int64		cap = run->evcap < 65536 ? 65536 : run->evcap * 2;

		run->ev = run->ev
			? repalloc_huge(run->ev, sizeof(AggEvent) * cap)
			: MemoryContextAllocHuge(run->cxt, sizeof(AggEvent) * cap);
		run->evcap = cap;
	}
	e = &run->ev[run->nev++];
	e->event_id = ev->event_id;
	e->user_id = ev->user_id;
	e->movie_id = ev->movie_id;
	e->ts = ev->ts;
	e->pos = ps->obj->first_offset + line;
	e->stream = ps->obj->stream;
	e->halves = (int16) ev->halves;
	e->dup = 0;
	return 0;
}

/* Fetch and parse every chosen object into run->ev. */
void
AggReadObjects(AggRun *run)
{
	int64		expected = 0;
	int			i;
	S3Buffer	gz = {0};
	S3Buffer	plain = {0};
	char		err[1024];

	for (i = 0; i < run->nobjects; i++)
		expected += run->objects[i].events > 0 ? run->objects[i].events : 0;
	AggProgressTotals(run->nobjects, expected);
	AggProgressPhase("reading objects");
	if (expected > 0)
	{
		run->evcap = expected;
		run->ev = MemoryContextAllocHuge(run->cxt, sizeof(AggEvent) * expected);
	}

	PG_TRY();
	{
		for (i = 0; i < run->nobjects; i++)
		{
			AggObject  *o = &run->objects[i];
			int64		before = run->nev;
			ObjParse	ps = {run, o};
			ArchiveStore *from = run->store;
			int			rc;

			CHECK_FOR_INTERRUPTS();
			/* an object is read from the store it was written to */
			if (o->local && from->use_s3)
			{
				if (run->local == NULL)
				{
					MemoryContext old = MemoryContextSwitchTo(run->cxt);

					run->local = ArchiveStoreOpenLocal();
					MemoryContextSwitchTo(old);
				}
				from = run->local;
			}
			else if (!o->local && !from->use_s3)
			{
				quarantine(run, o, "the object was written to S3, and recsys.s3_endpoint is no longer set");
				continue;
			}
			rc = ArchiveStoreGet(from, o->key, &gz, err, sizeof(err));
			CHECK_FOR_INTERRUPTS();
			if (rc == ARCHIVE_NOT_FOUND)
			{
				quarantine(run, o, psprintf("the store has no such object (%s)", err));
				continue;
			}
			if (rc != ARCHIVE_OK)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not read archive object \"%s\" from %s: %s",
								o->key, from->description, err),
						 errdetail("The aggregate was rolled back: the derived tables and the watermark are unchanged."),
						 errhint("The next run reads the same objects again once the store answers.")));
			if (run->rebuild)
				o->bytes = (int64) gz.len;
			rc = ArchiveObjectParse(gz.data, gz.len, &plain, event_cb, &ps, err, sizeof(err));
			if (rc != ARCHIVE_OK)
			{
				run->nev = before;
				quarantine(run, o, err);
				continue;
			}
			o->events_read = run->nev - before;
			run->objects_read++;
			AggProgressDone(i + 1, run->nev);
		}
	}
	PG_FINALLY();
	{
		S3BufferFree(&gz);
		S3BufferFree(&plain);
	}
	PG_END_TRY();
	AggProgressDone(run->nobjects, run->nev);
}

/* Set an object aside: recorded with its error, its events out of the run. */
static void
quarantine(AggRun *run, AggObject *obj, const char *error)
{
	obj->quarantined = true;
	obj->error = pstrdup(error);
	obj->events_read = 0;
	run->quarantined++;
	ereport(WARNING,
			(errmsg("recsys aggregate quarantined archive object \"%s\": %s", obj->key, error),
			 errdetail("Its events are left out; the run goes on with the other objects."),
			 errhint("See recsys.aggregate_objects; delete its row there to read it again.")));
}

/* Record every object read or quarantined: the new watermark (same transaction). */
void
AggRecordObjects(AggRun *run)
{
	int			n = run->nobjects;
	Datum	   *keys,
			   *bytes,
			   *events,
			   *status,
			   *errors;
	bool	   *errnulls;
	int			dims[1];
	int			lbs[1] = {1};
	int			i;
	Oid			types[6] = {TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8OID};
	Datum		values[6];

	if (n == 0)
		return;
	AggProgressPhase("recording the watermark");
	keys = palloc(sizeof(Datum) * n);
	bytes = palloc(sizeof(Datum) * n);
	events = palloc(sizeof(Datum) * n);
	status = palloc(sizeof(Datum) * n);
	errors = palloc(sizeof(Datum) * n);
	errnulls = palloc0(sizeof(bool) * n);
	for (i = 0; i < n; i++)
	{
		AggObject  *o = &run->objects[i];

		keys[i] = CStringGetTextDatum(o->key);
		bytes[i] = Int64GetDatum(o->bytes);
		events[i] = Int64GetDatum(o->events_read);
		status[i] = CStringGetTextDatum(o->quarantined ? "quarantined" : "aggregated");
		if (o->error)
			errors[i] = CStringGetTextDatum(o->error);
		else
		{
			errors[i] = (Datum) 0;
			errnulls[i] = true;
		}
	}
	dims[0] = n;
	values[0] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(bytes, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(events, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[3] = PointerGetDatum(construct_array(status, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_md_array(errors, errnulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	values[5] = Int64GetDatum(run->run_id);
	if (SPI_execute_with_args("INSERT INTO recsys.aggregate_objects (object_key, bytes, events, status, error, run_id)"
							  " SELECT * , $6 FROM unnest($1, $2, $3, $4, $5)"
							  " ON CONFLICT (object_key) DO UPDATE SET bytes = excluded.bytes,"
							  " events = excluded.events, status = excluded.status, error = excluded.error,"
							  " run_id = excluded.run_id, at = now()",
							  6, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the aggregated objects");
}
