/*
 * aggregate_ratings.c: the run's events into recsys.ratings.
 *
 * 1. Drop duplicate event ids, then reduce the events to one candidate set per
 *    (user, movie): the events of its latest ts (ratings_merge.c).
 * 2. Unless recsys.ratings was empty, look up the stored row of each (user, movie)
 *    (one index probe each, in chunks) and merge: a later ts replaces the row; the
 *    same ts adds the new candidates to the stored winner and its ties (the
 *    ratings.tied column) and picks the winner again, dropping candidates whose
 *    event id is already there; an earlier ts changes nothing.  So reading an event
 *    again (a relay resend, an object archived twice) changes nothing, and a run
 *    over events A then a run over B leave what one run over A and B leaves.
 * 3. Delete the rows that change and COPY the new versions in (bulkcopy.c), and
 *    keep the list of changes (old and new rating of each (user, movie)) for the
 *    profiles and statistics, which are updated from it alone.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "aggregate.h"
#include "bulkcopy.h"

#define LOOKUP_CHUNK	200000

/* One row to write: its candidates at ts and the winner among them. */
typedef struct OutRow
{
	int64		user_id;
	int64		movie_id;
	int64		ts;
	AggTie	   *cands;
	int32		ncand;
	int32		winner;
} OutRow;

typedef struct RowGen
{
	OutRow	   *rows;			/* NULL: the rows of run->r (a first load) */
	int64		n;
	int64		i;
	AggRun	   *run;
	OutRow		one;
} RowGen;

static bool rating_row(StringInfo buf, void *arg);
static void lookup_and_merge(AggRun *run, OutRow **out, int64 *nout);
static void delete_pairs(OutRow *rows, int64 n, const bool *existed);
static bool tie_present(const AggTie *c, int n, int64 event_id);
static void apply_tombstones(AggRun *run);

/* Reduce, merge and write the run's ratings; fill run->changes. */
void
AggMergeRatings(AggRun *run)
{
	int			rc;
	OutRow	   *rows = NULL;
	int64		nrows = 0;
	RowGen		gen;
	static const char *const cols[] = {"user_id", "movie_id", "rating", "rated_at", "event_id",
	"log_stream", "log_pos", "tied", NULL};

	apply_tombstones(run);
	AggProgressPhase("dropping duplicate events");
	rc = MergeMarkDuplicates(run->ev, run->nev, &run->duplicates, AggInterrupt, NULL);
	AggKernelCheck(rc, "dropping duplicate events");
	AggProgressPhase("reducing to the latest ratings");
	rc = MergeReduce(run->ev, run->nev, &run->r, &run->nr, &run->ties, &run->nties,
					 AggInterrupt, NULL);
	AggKernelCheck(rc, "reducing events to ratings");
	/* the events are no longer needed: the candidates hold all that counts */
	if (run->ev)
	{
		pfree(run->ev);
		run->ev = NULL;
		run->evcap = 0;
	}
	if (run->nr == 0)
		return;

	AggProgressPhase(run->first_load ? "preparing ratings" : "merging with stored ratings");
	lookup_and_merge(run, &rows, &nrows);

	AggProgressPhase("writing ratings");
	gen.rows = rows;
	gen.n = rows ? nrows : run->nr;
	gen.i = 0;
	gen.run = run;
	if (gen.n > 0)
		BulkCopy("recsys", "ratings", cols, rating_row, &gen);
	CommandCounterIncrement();
	if (rows)
		pfree(rows);

	/* ratings made with recsys_rate() that this run now holds (recommend.c reads the rest) */
	if (SPI_execute("DELETE FROM recsys.recent_ratings r USING recsys.ratings x"
					" WHERE x.user_id = r.user_id AND x.movie_id = r.movie_id"
					" AND (x.event_id = r.event_id OR x.rated_at >= r.rated_at)",
					false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from recsys.recent_ratings");
	/* run->changes holds what the later steps need; the reduction can go */
	free(run->r);
	free(run->ties);
	run->r = NULL;
	run->ties = NULL;
}

/*
 * Tombstones (recsys_forget): record this run's in recsys.forgotten_users (recsys_forget
 * wrote its own there already), then drop every event of a forgotten user up to the
 * time they were forgotten, so neither this run nor a rebuild brings them back.
 */
static void
apply_tombstones(AggRun *run)
{
	uint64		n,
				k;
	int64	   *fu,
			   *ft;
	int64		i;
	int			t;

	for (t = 0; t < run->ntomb; t++)
	{
		Oid			types[2] = {INT8OID, INT8OID};
		Datum		values[2];

		values[0] = Int64GetDatum(run->tomb_user[t]);
		values[1] = Int64GetDatum(run->tomb_ts[t]);
		if (SPI_execute_with_args("INSERT INTO recsys.forgotten_users (user_id, forgotten_at)"
								  " VALUES ($1, to_timestamp($2)) ON CONFLICT (user_id) DO UPDATE"
								  " SET forgotten_at = greatest(recsys.forgotten_users.forgotten_at, excluded.forgotten_at)",
								  2, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record a tombstone");
	}
	if (SPI_execute("SELECT user_id, floor(extract(epoch FROM forgotten_at))::int8 FROM recsys.forgotten_users",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.forgotten_users");
	n = SPI_processed;
	if (n == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return;
	}
	fu = palloc(sizeof(int64) * n);
	ft = palloc(sizeof(int64) * n);
	for (k = 0; k < n; k++)
	{
		bool		isnull;

		fu[k] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 1, &isnull));
		ft[k] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	/* few users are ever forgotten: a linear look-up per event is enough */
	for (i = 0; i < run->nev; i++)
	{
		for (k = 0; k < n; k++)
			if (run->ev[i].user_id == fu[k] && run->ev[i].ts <= ft[k])
			{
				run->ev[i].dup = 2;
				run->forgotten++;
				break;
			}
		if ((i & 0xfffff) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	/* compact: the kernels see only the events that count */
	if (run->forgotten > 0)
	{
		int64		j = 0;

		for (i = 0; i < run->nev; i++)
			if (run->ev[i].dup != 2)
				run->ev[j++] = run->ev[i];
		run->nev = j;
	}
	pfree(fu);
	pfree(ft);
}

/* Is event_id among the candidates? */
static bool
tie_present(const AggTie *c, int n, int64 event_id)
{
	int			i;

	for (i = 0; i < n; i++)
		if (c[i].event_id == event_id)
			return true;
	return false;
}

/*
 * Merge the run's reduction with the stored rows; return the rows to write and fill
 * run->changes with the (user, movie)s whose rating or time changes.
 */
static void
lookup_and_merge(AggRun *run, OutRow **out, int64 *nout)
{
	OutRow	   *rows;
	bool	   *existed;
	int64		nrows = 0;
	int64		i;
	int64		nchanges = 0;

	run->changes = MemoryContextAllocHuge(run->cxt, sizeof(AggChange) * run->nr);

	if (run->first_load)
	{
		/* every (user, movie) is new: the rows are written straight from run->r */
		for (i = 0; i < run->nr; i++)
		{
			AggRating  *r = &run->r[i];
			AggTie	   *w = &run->ties[r->first_tie + r->winner];
			AggChange  *c = &run->changes[nchanges++];

			c->user_id = r->user_id;
			c->movie_id = r->movie_id;
			c->old_halves = 0;
			c->old_ts = 0;
			c->new_halves = (int16) w->halves;
			c->new_ts = r->ts;
			if ((i & 0xfffff) == 0)
				CHECK_FOR_INTERRUPTS();
		}
		run->nchanges = nchanges;
		*out = NULL;
		*nout = 0;
		return;
	}

	rows = MemoryContextAllocHuge(run->cxt, sizeof(OutRow) * run->nr);
	existed = MemoryContextAllocHuge(run->cxt, sizeof(bool) * run->nr);

	/* one index probe per (user, movie): a nested loop, whatever the estimates */
	SPI_execute("SET LOCAL enable_hashjoin = off", false, 0);
	SPI_execute("SET LOCAL enable_mergejoin = off", false, 0);
	for (i = 0; i < run->nr; i += LOOKUP_CHUNK)
	{
		int64		n = Min(LOOKUP_CHUNK, run->nr - i);
		Datum	   *u = palloc(sizeof(Datum) * n);
		Datum	   *m = palloc(sizeof(Datum) * n);
		int64		j;
		Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
		Datum		values[2];
		uint64		k;
		/* stored state of each pair of the chunk, -1: none */
		int64	   *found = palloc(sizeof(int64) * n);

		for (j = 0; j < n; j++)
		{
			u[j] = Int64GetDatum(run->r[i + j].user_id);
			m[j] = Int64GetDatum(run->r[i + j].movie_id);
			found[j] = -1;
		}
		values[0] = PointerGetDatum(construct_array(u, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[1] = PointerGetDatum(construct_array(m, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (SPI_execute_with_args("SELECT k.i::int8, (r.rating * 2)::int4, r.rated_at, r.event_id,"
								  " r.log_stream, r.log_pos, r.tied"
								  " FROM unnest($1, $2) WITH ORDINALITY AS k(u, m, i)"
								  " JOIN recsys.ratings r ON r.user_id = k.u AND r.movie_id = k.m",
								  2, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read recsys.ratings");
		for (k = 0; k < SPI_processed; k++)
		{
			bool		isnull;
			int64		idx = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 1, &isnull)) - 1;

			if (idx >= 0 && idx < n)
				found[idx] = (int64) k;
		}

		for (j = 0; j < n; j++)
		{
			AggRating  *r = &run->r[i + j];
			AggTie	   *nc = &run->ties[r->first_tie];
			AggTie	   *nw = &nc[r->winner];
			OutRow	   *o = &rows[nrows];
			int16		old_halves = 0;
			int64		old_ts = 0;
			AggTie	   *ow = NULL;

			if (found[j] < 0)
			{
				/* a new (user, movie) */
				o->user_id = r->user_id;
				o->movie_id = r->movie_id;
				o->ts = r->ts;
				o->cands = nc;
				o->ncand = r->ntie;
				o->winner = r->winner;
				existed[nrows] = false;
				nrows++;
			}
			else
			{
				HeapTuple	t = SPI_tuptable->vals[found[j]];
				TupleDesc	d = SPI_tuptable->tupdesc;
				bool		isnull;
				int64		sts;
				AggTie	   *sc;
				int			nsc = 1;
				Datum		tied;
				int			q;

				old_halves = (int16) DatumGetInt32(SPI_getbinval(t, d, 2, &isnull));
				sts = BulkTimestampToEpoch(DatumGetTimestampTz(SPI_getbinval(t, d, 3, &isnull)));
				old_ts = sts;
				if (r->ts < sts)
					continue;	/* older than what is stored: nothing changes */
				tied = SPI_getbinval(t, d, 7, &isnull);
				if (!isnull)
				{
					ArrayType  *a = DatumGetArrayTypeP(tied);
					int			na = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
					int64	   *v = (int64 *) ARR_DATA_PTR(a);

					sc = palloc(sizeof(AggTie) * (1 + na / 4 + r->ntie));
					for (q = 0; q + 3 < na; q += 4)
					{
						sc[nsc].event_id = v[q];
						sc[nsc].stream = (int32) v[q + 1];
						sc[nsc].pos = v[q + 2];
						sc[nsc].halves = (int32) v[q + 3];
						nsc++;
					}
				}
				else
					sc = palloc(sizeof(AggTie) * (1 + r->ntie));
				sc[0].event_id = DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
				sc[0].stream = DatumGetInt32(SPI_getbinval(t, d, 5, &isnull));
				sc[0].pos = DatumGetInt64(SPI_getbinval(t, d, 6, &isnull));
				sc[0].halves = old_halves;
				ow = &sc[0];

				if (r->ts == sts)
				{
					/* the same ts: add the candidates not yet there */
					int			before = nsc;

					for (q = 0; q < r->ntie; q++)
						if (!tie_present(sc, before, nc[q].event_id))
							sc[nsc++] = nc[q];
					if (nsc == before)
					{
						pfree(sc);
						continue;	/* every candidate was known: nothing changes */
					}
					o->cands = sc;
					o->ncand = nsc;
					o->winner = MergePickWinner(sc, nsc);
				}
				else
				{
					pfree(sc);
					o->cands = nc;
					o->ncand = r->ntie;
					o->winner = r->winner;
				}
				o->user_id = r->user_id;
				o->movie_id = r->movie_id;
				o->ts = r->ts;
				nw = &o->cands[o->winner];
				existed[nrows] = true;
				nrows++;
				if (ow && ow->halves == nw->halves && old_ts == r->ts)
					continue;	/* a tie added: the rating itself is the same */
			}
			{
				AggChange  *c = &run->changes[nchanges++];

				c->user_id = r->user_id;
				c->movie_id = r->movie_id;
				c->old_halves = old_halves;
				c->old_ts = old_ts;
				c->new_halves = (int16) nw->halves;
				c->new_ts = r->ts;
			}
		}
		SPI_freetuptable(SPI_tuptable);
		pfree(found);
		pfree(u);
		pfree(m);
		CHECK_FOR_INTERRUPTS();
	}
	delete_pairs(rows, nrows, existed);
	SPI_execute("SET LOCAL enable_hashjoin = on", false, 0);
	SPI_execute("SET LOCAL enable_mergejoin = on", false, 0);
	pfree(existed);
	run->nchanges = nchanges;
	*out = rows;
	*nout = nrows;
}

/*
 * Delete the stored rows that are about to be written again, by index probes (the
 * caller has turned the hash and merge joins off).
 */
static void
delete_pairs(OutRow *rows, int64 n, const bool *existed)
{
	int64		i = 0;

	while (i < n)
	{
		Datum	   *u = palloc(sizeof(Datum) * Min(LOOKUP_CHUNK, n - i));
		Datum	   *m = palloc(sizeof(Datum) * Min(LOOKUP_CHUNK, n - i));
		int			k = 0;
		Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
		Datum		values[2];

		for (; i < n && k < LOOKUP_CHUNK; i++)
			if (existed[i])
			{
				u[k] = Int64GetDatum(rows[i].user_id);
				m[k] = Int64GetDatum(rows[i].movie_id);
				k++;
			}
		if (k > 0)
		{
			values[0] = PointerGetDatum(construct_array(u, k, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			values[1] = PointerGetDatum(construct_array(m, k, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			if (SPI_execute_with_args("DELETE FROM recsys.ratings r USING unnest($1, $2) AS k(u, m)"
									  " WHERE r.user_id = k.u AND r.movie_id = k.m",
									  2, types, values, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not delete from recsys.ratings");
		}
		pfree(u);
		pfree(m);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The next row of recsys.ratings for COPY. */
static bool
rating_row(StringInfo buf, void *arg)
{
	RowGen	   *g = arg;
	OutRow	   *o;
	AggTie	   *w;

	if (g->i >= g->n)
		return false;
	if (g->rows)
		o = &g->rows[g->i++];
	else
	{
		/* a first load: straight from the reduction */
		AggRating  *r = &g->run->r[g->i++];

		g->one.user_id = r->user_id;
		g->one.movie_id = r->movie_id;
		g->one.ts = r->ts;
		g->one.cands = &g->run->ties[r->first_tie];
		g->one.ncand = r->ntie;
		g->one.winner = r->winner;
		o = &g->one;
	}
	w = &o->cands[o->winner];
	BulkRowBegin(buf, 8);
	BulkPutInt8(buf, o->user_id);
	BulkPutInt8(buf, o->movie_id);
	BulkPutHalves(buf, w->halves);
	BulkPutEpoch(buf, o->ts);
	BulkPutInt8(buf, w->event_id);
	BulkPutInt4(buf, w->stream);
	BulkPutInt8(buf, w->pos);
	if (o->ncand <= 1)
		BulkPutNull(buf);
	else
	{
		int64	   *v = palloc(sizeof(int64) * 4 * (o->ncand - 1));
		int			q,
					k = 0;

		for (q = 0; q < o->ncand; q++)
		{
			if (q == o->winner)
				continue;
			v[k++] = o->cands[q].event_id;
			v[k++] = o->cands[q].stream;
			v[k++] = o->cands[q].pos;
			v[k++] = o->cands[q].halves;
		}
		BulkPutInt8Array(buf, v, k);
		pfree(v);
	}
	if ((g->i & 0xffff) == 0)
	{
		CHECK_FOR_INTERRUPTS();
		AggProgressDone(g->run->objects_read, g->run->nev);
	}
	return true;
}
