/*
 * neighbors.c: recsys.item_neighbors, the top recsys.neighbors_k most similar movies
 * of each movie, from co-ratings (the similarity is described in neighbors_kernel.c).
 *
 * Refresh policy: the neighbours are recomputed in full, from every rating, when a
 * run is a rebuild, when they were never computed, when recsys.neighbors_k changed,
 * or when the (user, movie) ratings changed since their last computation reach
 * recsys.neighbors_refresh (default 10 %) of the ratings they were computed from.
 * Otherwise a run keeps them and only adds its changes to the count: a similarity
 * is a sum over all users, so updating one movie's top-K exactly would need every
 * pair's co-rating sum, which is O(movies^2) to keep; at a 1 % daily increment the
 * neighbours are therefore at most 10 % behind, and recomputed about every ten days.
 * The input comes from memory after a first load or a rebuild, else from a scan of
 * recsys.ratings (the run's own rows included).  Writing them replaces every row in
 * the run's transaction.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "aggregate.h"
#include "bulkcopy.h"
#include "guc.h"
#include "neighbors_kernel.h"

int			recsys_neighbors_k = 50;
double		recsys_neighbors_refresh = 0.1;
int			recsys_neighbors_user_cap = 500;
double		recsys_neighbors_alpha = 0.25;
double		recsys_neighbors_beta = 0.5;
double		recsys_neighbors_shrink = 5.0;
int			recsys_neighbors_min_common = 3;
int			recsys_neighbors_threads = 2;

typedef struct Triples
{
	int64	   *user;
	int64	   *movie;
	int64	   *ts;
	int64		n;
	bool		sorted;			/* by user, then movie */
} Triples;

typedef struct NbGen
{
	const int64 *item_ids;
	NbOutput   *out;
	int32		n_items;
	int			k;
	int32		i;
	int			slot;
} NbGen;

static bool needs_refresh(AggRun *run, int64 *ratings_now);
static void triples_from_run(AggRun *run, Triples *t);
static void triples_from_table(Triples *t);
static void compute_and_write(AggRun *run, Triples *t);
static bool neighbor_row(StringInfo buf, void *arg);

/* Recompute item_neighbors when the refresh policy says so. */
void
AggUpdateNeighbors(AggRun *run)
{
	int64		ratings_now = 0;
	Triples		t;
	Oid			types[3] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3];

	AggProgressPhase("item neighbours");
	if (!needs_refresh(run, &ratings_now))
	{
		values[0] = Int64GetDatum(run->nchanges);
		if (SPI_execute_with_args("UPDATE recsys.aggregate_state"
								  " SET ratings_changed_since = ratings_changed_since + $1",
								  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update recsys.aggregate_state");
		return;
	}
	memset(&t, 0, sizeof(t));
	if (run->first_load)
	{
		triples_from_run(run, &t);
		/* nothing after this step reads the changes */
		pfree(run->changes);
		run->changes = NULL;
	}
	else
		triples_from_table(&t);
	compute_and_write(run, &t);
	run->neighbors_refreshed = true;

	values[0] = Int64GetDatum(run->run_id);
	values[1] = Int64GetDatum(t.n);
	values[2] = Int32GetDatum(recsys_neighbors_k);
	if (SPI_execute_with_args("UPDATE recsys.aggregate_state SET neighbors_run_id = $1,"
							  " neighbors_ratings = $2, ratings_changed_since = 0, neighbors_k = $3",
							  3, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update recsys.aggregate_state");
}

/* The refresh policy (see the file header). */
static bool
needs_refresh(AggRun *run, int64 *ratings_now)
{
	bool		isnull;
	bool		never;
	int64		base,
				since;
	int32		k;
	HeapTuple	tup;
	TupleDesc	d;

	if (SPI_execute("SELECT neighbors_run_id IS NULL, neighbors_ratings, ratings_changed_since,"
					" coalesce(neighbors_k, 0), NOT EXISTS (SELECT 1 FROM recsys.ratings)"
					" FROM recsys.aggregate_state", false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read recsys.aggregate_state");
	tup = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	never = DatumGetBool(SPI_getbinval(tup, d, 1, &isnull));
	base = DatumGetInt64(SPI_getbinval(tup, d, 2, &isnull));
	since = DatumGetInt64(SPI_getbinval(tup, d, 3, &isnull));
	k = DatumGetInt32(SPI_getbinval(tup, d, 4, &isnull));
	if (DatumGetBool(SPI_getbinval(tup, d, 5, &isnull)))
	{
		SPI_freetuptable(SPI_tuptable);
		/* no rating at all: nothing to compute; stale rows go */
		if (SPI_execute("DELETE FROM recsys.item_neighbors", false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not delete from recsys.item_neighbors");
		return false;
	}
	SPI_freetuptable(SPI_tuptable);
	*ratings_now = base;
	if (run->rebuild || run->first_load || never || k != recsys_neighbors_k)
		return true;
	return (double) (since + run->nchanges) >= recsys_neighbors_refresh * (double) Max(base, 1);
}

/* Every rating, from the run's changes (recsys.ratings was empty before it). */
static void
triples_from_run(AggRun *run, Triples *t)
{
	int64		i;

	t->n = run->nchanges;
	t->user = MemoryContextAllocHuge(run->cxt, sizeof(int64) * Max(t->n, 1));
	t->movie = MemoryContextAllocHuge(run->cxt, sizeof(int64) * Max(t->n, 1));
	t->ts = MemoryContextAllocHuge(run->cxt, sizeof(int64) * Max(t->n, 1));
	for (i = 0; i < t->n; i++)
	{
		t->user[i] = run->changes[i].user_id;
		t->movie[i] = run->changes[i].movie_id;
		t->ts[i] = run->changes[i].new_ts;
	}
	t->sorted = true;
}

/* Every rating, from a scan of recsys.ratings (this transaction's rows included). */
static void
triples_from_table(Triples *t)
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	int64		cap = 1 << 20;
	Snapshot	snap;

	AggProgressPhase("item neighbours: reading ratings");
	CommandCounterIncrement();
	snap = RegisterSnapshot(GetLatestSnapshot());
	rel = table_openrv(makeRangeVar("recsys", "ratings", -1), AccessShareLock);
	t->user = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * cap);
	t->movie = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * cap);
	t->ts = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * cap);
	t->n = 0;
	t->sorted = false;
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;

		if (t->n == cap)
		{
			cap *= 2;
			t->user = repalloc_huge(t->user, sizeof(int64) * cap);
			t->movie = repalloc_huge(t->movie, sizeof(int64) * cap);
			t->ts = repalloc_huge(t->ts, sizeof(int64) * cap);
		}
		/* columns 1 user_id, 2 movie_id, 4 rated_at */
		t->user[t->n] = DatumGetInt64(slot_getattr(slot, 1, &isnull));
		t->movie[t->n] = DatumGetInt64(slot_getattr(slot, 2, &isnull));
		t->ts[t->n] = BulkTimestampToEpoch(DatumGetTimestampTz(slot_getattr(slot, 4, &isnull)));
		t->n++;
		if ((t->n & 0xffff) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snap);
}

/* Build the user -> items CSR, run the kernel, replace item_neighbors. */
static void
compute_and_write(AggRun *run, Triples *t)
{
	int64	   *item_ids;
	int64		n_items = 0,
				n_users = 0;
	int64		i,
				k;
	AggIdMap	items;
	int64	   *order = NULL;
	NbInput		in;
	NbParams	p;
	NbOutput	out;
	NbGen		gen;
	char		err[512];
	int			rc;
	int64	   *user_ptr;
	int32	   *user_items;
	int64	   *user_ts;
	static const char *const cols[] = {"movie_id", "rank", "neighbor_id", "similarity", NULL};

	AggProgressPhase("item neighbours: preparing");
	/* item index = rank of the movie id */
	item_ids = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * Max(t->n, 1));
	memcpy(item_ids, t->movie, sizeof(int64) * t->n);
	AggIdMapBuild(&items, item_ids, t->n);
	n_items = items.n;
	if (n_items > PG_INT32_MAX - 1)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("too many movies")));

	/* the ratings in (user, movie) order, when the scan did not give them so */
	if (!t->sorted)
	{
		MergePair  *pp = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(MergePair) * Max(t->n, 1));
		MergePair  *tmp = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(MergePair) * Max(t->n, 1));

		for (i = 0; i < t->n; i++)
			if (t->user[i] < 0 || t->user[i] > (int64) PG_UINT32_MAX ||
				t->movie[i] < 0 || t->movie[i] > (int64) PG_UINT32_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("item neighbours need user and movie ids below 2^32")));
		for (i = 0; i < t->n; i++)
		{
			pp[i].key = ((uint64) t->user[i] << 32) | (uint64) t->movie[i];
			pp[i].val = (uint64) i;
		}
		AggKernelCheck(MergeRadixSort(pp, tmp, t->n, AggInterrupt, NULL), "sorting ratings");
		order = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * Max(t->n, 1));
		for (i = 0; i < t->n; i++)
			order[i] = (int64) pp[i].val;
		pfree(pp);
		pfree(tmp);
	}

	user_ptr = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * (t->n + 2));
	user_items = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int32) * Max(t->n, 1));
	user_ts = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * Max(t->n, 1));
	user_ptr[0] = 0;
	for (k = 0; k < t->n; k++)
	{
		int64		j = order ? order[k] : k;
		int64		mid = t->movie[j];
		int32		item;

		if (k > 0)
		{
			int64		pj = order ? order[k - 1] : k - 1;

			if (t->user[pj] != t->user[j])
				user_ptr[++n_users] = k;
		}
		item = (int32) AggIdMapFind(&items, mid);
		user_items[k] = item;
		user_ts[k] = t->ts[j];
		if ((k & 0xfffff) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	if (t->n > 0)
		user_ptr[++n_users] = t->n;

	memset(&in, 0, sizeof(in));
	in.n_users = (int32) n_users;
	in.n_items = (int32) n_items;
	in.user_ptr = user_ptr;
	in.user_items = user_items;
	in.user_ts = user_ts;
	memset(&p, 0, sizeof(p));
	p.k = recsys_neighbors_k;
	p.user_cap = recsys_neighbors_user_cap;
	p.alpha = recsys_neighbors_alpha;
	p.beta = recsys_neighbors_beta;
	p.shrink = recsys_neighbors_shrink;
	p.min_common = recsys_neighbors_min_common;
	p.threads = recsys_neighbors_threads;
	out.nbr = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int32) * Max(n_items, 1) * p.k);
	out.sim = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(float) * Max(n_items, 1) * p.k);
	out.count = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int32) * Max(n_items, 1));

	AggProgressPhase("item neighbours: computing");
	rc = NeighborsCompute(&in, &p, &out, AggInterrupt, NULL, err, sizeof(err));
	if (rc == NB_INTERRUPTED)
		AggKernelCheck(MERGE_INTERRUPTED, "computing item neighbours");
	if (rc != NB_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not compute item neighbours: %s", err)));

	AggProgressPhase("item neighbours: writing");
	if (SPI_execute("DELETE FROM recsys.item_neighbors", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from recsys.item_neighbors");
	gen.item_ids = items.ids;
	gen.out = &out;
	gen.n_items = (int32) n_items;
	gen.k = p.k;
	gen.i = 0;
	gen.slot = 0;
	BulkCopy("recsys", "item_neighbors", cols, neighbor_row, &gen);
	CommandCounterIncrement();

	pfree(user_ptr);
	pfree(user_items);
	pfree(user_ts);
	pfree(out.nbr);
	pfree(out.sim);
	pfree(out.count);
	if (order)
		pfree(order);
	if (items.dense)
		pfree(items.dense);
}

/* The next item_neighbors row for COPY. */
static bool
neighbor_row(StringInfo buf, void *arg)
{
	NbGen	   *g = arg;
	int64		at;

	while (g->i < g->n_items && g->slot >= g->out->count[g->i])
	{
		g->i++;
		g->slot = 0;
	}
	if (g->i >= g->n_items)
		return false;
	at = (int64) g->i * g->k + g->slot;
	BulkRowBegin(buf, 4);
	BulkPutInt8(buf, g->item_ids[g->i]);
	BulkPutInt4(buf, g->slot + 1);
	BulkPutInt8(buf, g->item_ids[g->out->nbr[at]]);
	BulkPutFloat8(buf, (double) g->out->sim[at]);
	g->slot++;
	return true;
}
