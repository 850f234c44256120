/*
 * rank.c: the engine's ranking of recsys_recommend, in C over a few index reads.
 *
 * One call reads, straight from their primary keys (the executor's start-up would
 * cost more than these few rows):
 *   - the user's ratings (recsys.ratings and the not yet aggregated
 *     recsys.recent_ratings: one index range each), which give the seeds (the
 *     recsys.recommend_seeds most recent, so a very heavy user costs as much as a
 *     moderate one) and the movies never to return;
 *   - the user's favourite genres and their scores (recsys.user_profiles);
 *   - the item neighbours of the seeds (recsys.item_neighbors: one index range a seed).
 * Everything else it needs is the same for every user and changes only when an
 * aggregate commits (or recsys_forget, or a change of recsys.movies): each movie's
 * count, mean and Bayesian average (recsys.movie_stats), their order by popularity,
 * the best of each genre (recsys.genre_top) and the catalogue rows of the movies shown
 * (read by prepared statements). Each backend keeps those in memory (about 32 bytes a
 * rated movie, at most MOVIES_KEPT_MAX movies shown)
 * under a generation number in shared memory that such a commit bumps
 * (RankDataChangedAfterCommit), and reloads them when the number, or the table itself
 * (a recreated extension), changed; the copy is read through a snapshot taken after
 * the number (not the statement's, which may be older), so it holds at least what
 * every commit up to that generation wrote. Inside a transaction that changed them,
 * or one with a transaction snapshot (repeatable read, serializable), they are read
 * for the call alone, through its own snapshot.
 *
 * Candidates are scored in a hash table (the formula is in recommend.c's header),
 * sorted, and then walked best first: the catalogue rows are read for a batch at a
 * time, so a movie missing from the catalogue or outside a genre filter is skipped
 * before the list is cut, and n rows come back when the catalogue allows. Movies no
 * one has rated complete a list that runs short.
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "rank.h"
#include "recommend.h"

PG_FUNCTION_INFO_V1(recsys_catalogue_changed);

#define POPULAR_POOL	200		/* popular candidates */
#define GENRE_POOL		50		/* candidates per favourite genre */

/* ---------------------------------------------------------------------------------
 * Statements
 * ---------------------------------------------------------------------------------
 */
static const char *const STATS_SQL =
"SELECT s.movie_id, s.n_ratings, s.bayes_avg, s.mean_rating FROM recsys.movie_stats s ORDER BY s.movie_id";

static const char *const GENRE_TOP_SQL =
"SELECT g.genre, g.rank, g.movie_id, g.bayes_avg FROM recsys.genre_top g ORDER BY g.genre COLLATE \"C\", g.rank";

static const char *const MOVIES_SQL =
"SELECT m.movie_id, m.title, m.genres, m.year FROM recsys.movies m WHERE m.movie_id = ANY ($1)";

/* Movies no one has rated, in id order: $1 user, $2 genres, $3 exclude, $4 listed, $5 how many. */
static const char *const FILL_SQL =
"SELECT m.movie_id, m.title, m.genres, m.year FROM recsys.movies m"
" WHERE NOT EXISTS (SELECT 1 FROM recsys.movie_stats s WHERE s.movie_id = m.movie_id)"
"   AND NOT EXISTS (SELECT 1 FROM recsys.ratings r WHERE r.user_id = $1 AND r.movie_id = m.movie_id)"
"   AND NOT EXISTS (SELECT 1 FROM recsys.recent_ratings r WHERE r.user_id = $1 AND r.movie_id = m.movie_id)"
"   AND ($2::text[] IS NULL OR m.genres && $2)"
"   AND ($3::bigint[] IS NULL OR m.movie_id <> ALL ($3))"
"   AND m.movie_id <> ALL ($4)"
" ORDER BY m.movie_id LIMIT $5";

static SPIPlanPtr stats_plan,
			genre_top_plan,
			movies_plan,
			fill_plan;

/*
 * Prepare one statement for the life of the backend, with a generic plan: the ids it
 * looks up change every call, the plan never does, and planning again each time (what
 * the plan cache does for `= ANY ($1)` when it guesses a custom plan cheaper) would
 * cost more than the lookups themselves.
 */
SPIPlanPtr
RankKeepPlan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);

	if (p == NULL || SPI_keepplan(p) != 0)
		elog(ERROR, "could not prepare a ranking statement: %s", SPI_result_code_string(SPI_result));
	return p;
}

/* Prepare the statements once per backend. */
static void
prepare_plans(void)
{
	Oid			ids[1] = {INT8ARRAYOID};
	Oid			fill[5] = {INT8OID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT4OID};

	if (fill_plan)
		return;
	stats_plan = RankKeepPlan(STATS_SQL, 0, NULL);
	genre_top_plan = RankKeepPlan(GENRE_TOP_SQL, 0, NULL);
	movies_plan = RankKeepPlan(MOVIES_SQL, 1, ids);
	fill_plan = RankKeepPlan(FILL_SQL, 5, fill);
}

/* ---------------------------------------------------------------------------------
 * Primary-key reads: the rows of one user or one movie, straight from the index (the
 * executor's start-up would cost more than these few rows)
 * ---------------------------------------------------------------------------------
 */
typedef struct PkScan
{
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData key;
} PkScan;

/* The relation id of recsys.NAME (an error when missing). */
static Oid
recsys_relid(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("recsys", false));

	if (!OidIsValid(relid))
		elog(ERROR, "recsys.%s is missing", name);
	return relid;
}

/* The attribute number of a column of recsys.NAME. */
static AttrNumber
column(PkScan *ps, const char *col)
{
	AttrNumber	a = get_attnum(RelationGetRelid(ps->rel), col);

	if (a == InvalidAttrNumber)
		elog(ERROR, "column %s of recsys.%s is missing", col, RelationGetRelationName(ps->rel));
	return a;
}

/* Open recsys.NAME and its primary key (whose first column is a bigint) for reading. */
static void
pk_open(PkScan *ps, const char *name)
{
	Oid			pk;

	ps->rel = table_open(recsys_relid(name), AccessShareLock);
	pk = RelationGetPrimaryKeyIndex(ps->rel);
	if (!OidIsValid(pk))
		elog(ERROR, "recsys.%s has no primary key", name);
	ps->idx = index_open(pk, AccessShareLock);
	ps->slot = table_slot_create(ps->rel, NULL);
	ps->scan = index_beginscan(ps->rel, ps->idx, GetActiveSnapshot(), 1, 0);
}

/* Start over at the rows whose first key column is key, in key order. */
static void
pk_rescan(PkScan *ps, int64 key)
{
	ScanKeyInit(&ps->key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(key));
	index_rescan(ps->scan, &ps->key, 1, NULL, 0);
}

/* The next row (in ps->slot), false at the end. */
static bool
pk_next(PkScan *ps)
{
	return index_getnext_slot(ps->scan, ForwardScanDirection, ps->slot);
}

static void
pk_close(PkScan *ps)
{
	index_endscan(ps->scan);
	ExecDropSingleTupleTableSlot(ps->slot);
	index_close(ps->idx, AccessShareLock);
	table_close(ps->rel, AccessShareLock);
}

/* A not-null column of the current row. */
static Datum
pk_get(PkScan *ps, AttrNumber a, bool *isnull)
{
	return slot_getattr(ps->slot, a, isnull);
}

/* The version of the user's profile (0: none) and the movies rated since the last aggregate. */
void
RankUserState(int64 user_id, int64 *version, int64 **recent, int *nrecent)
{
	PkScan		ps;
	AttrNumber	a;
	bool		isnull;
	int			cap = 8;

	*version = 0;
	pk_open(&ps, "user_profiles");
	a = column(&ps, "version");
	pk_rescan(&ps, user_id);
	if (pk_next(&ps))
	{
		Datum		v = pk_get(&ps, a, &isnull);

		if (!isnull)
			*version = DatumGetInt64(v);
	}
	pk_close(&ps);

	*nrecent = 0;
	*recent = palloc(sizeof(int64) * cap);
	pk_open(&ps, "recent_ratings");
	a = column(&ps, "movie_id");
	pk_rescan(&ps, user_id);
	while (pk_next(&ps))
	{
		if (*nrecent == cap)
		{
			cap *= 2;
			*recent = repalloc(*recent, sizeof(int64) * cap);
		}
		(*recent)[(*nrecent)++] = DatumGetInt64(pk_get(&ps, a, &isnull));
	}
	pk_close(&ps);
}

/* A bigint[] of n ids. */
static Datum
id_array(const int64 *ids, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a,
				y = *(const int64 *) b;

	return x < y ? -1 : x > y;
}

/* Is id in the sorted array? */
static bool
sorted_has(const int64 *v, int n, int64 id)
{
	return n > 0 && bsearch(&id, v, n, sizeof(int64), cmp_int64) != NULL;
}

/* ---------------------------------------------------------------------------------
 * The shared data (movie statistics, genre tops), kept per backend by generation
 * ---------------------------------------------------------------------------------
 */
typedef struct GenreTop
{
	char	   *genre;
	int			n;
	int64	   *ids;			/* best first */
	double	   *bayes;
	int32	   *rank;
} GenreTop;

/* A movie of the catalogue, as kept (found = false: the catalogue has no such movie). */
typedef struct MovieEntry
{
	int64		movie_id;		/* the hash key */
	bool		found;
	char	   *title;
	Datum		genres;			/* text[], a copy */
	int32		year;
} MovieEntry;

typedef struct RankData
{
	MemoryContext cxt;
	uint64		generation;
	Oid			stats_relid;	/* of recsys.movie_stats when made */
	Oid			movies_relid;	/* of recsys.movies */
	bool		loaded;			/* the statistics below are read */
	int			n;
	int64	   *ids;			/* sorted */
	int32	   *nr;
	double	   *bayes;
	double	   *mean;
	int		   *by_pop;			/* indexes, most rated first, then by id */
	int32		nmax;
	int			ngenres;
	GenreTop   *genres;			/* by name (bytewise) */
	bool		kept;			/* the backend's copy (else the call's own) */
	MemoryContext movies_cxt;	/* the movies shown, at most MOVIES_KEPT_MAX */
	HTAB	   *movies;
	long		nmovies;
} RankData;

#define MOVIES_KEPT_MAX	100000

static pg_atomic_uint64 *Generation = NULL;
static RankData *Kept = NULL;		/* kept across calls */
static RankData *CallData = NULL;	/* what the current call reads */
static bool changed_pending = false;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
rank_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(pg_atomic_uint64)));
}

static void
rank_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	Generation = ShmemInitStruct("recsys ranking generation", sizeof(pg_atomic_uint64), &found);
	if (!found)
		pg_atomic_init_u64(Generation, 1);
	LWLockRelease(AddinShmemInitLock);
}

/* At commit (or PREPARE) of a transaction that changed the data: a new generation. */
static void
rank_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			if (changed_pending && Generation)
				pg_atomic_fetch_add_u64(Generation, 1);
			changed_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			changed_pending = false;
			break;
		default:
			break;
	}
}

/* Request the shared generation counter (when preloaded); register the callback. */
void
RankInit(void)
{
	RegisterXactCallback(rank_xact_callback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rank_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rank_shmem_startup;
}

/* The statistics the ranking reads changed: backends reload them after this commit. */
void
RankDataChangedAfterCommit(void)
{
	changed_pending = true;
}

static RankData *sort_ctx;		/* for cmp_pop */

static int
cmp_pop(const void *a, const void *b)
{
	int			x = *(const int *) a,
				y = *(const int *) b;

	if (sort_ctx->nr[x] != sort_ctx->nr[y])
		return sort_ctx->nr[x] > sort_ctx->nr[y] ? -1 : 1;
	return sort_ctx->ids[x] < sort_ctx->ids[y] ? -1 : sort_ctx->ids[x] > sort_ctx->ids[y];
}

/* A new, empty RankData in a context of its own under parent. */
static RankData *
new_data(MemoryContext parent, uint64 generation, Oid stats_relid, Oid movies_relid)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "recsys ranking data", ALLOCSET_DEFAULT_SIZES);
	RankData   *d = MemoryContextAllocZero(cxt, sizeof(RankData));

	d->cxt = cxt;
	d->generation = generation;
	d->stats_relid = stats_relid;
	d->movies_relid = movies_relid;
	return d;
}

/* Read the statistics and genre tops into d. */
static void
load_stats(RankData *d)
{
	MemoryContext cxt = d->cxt;
	MemoryContext old;
	uint64		i,
				n;
	SPITupleTable *t;
	int			g;

	if (SPI_execute_plan(stats_plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.movie_stats");
	t = SPI_tuptable;
	n = SPI_processed;
	old = MemoryContextSwitchTo(cxt);
	d->n = (int) n;
	d->ids = palloc(sizeof(int64) * Max(n, 1));
	d->nr = palloc(sizeof(int32) * Max(n, 1));
	d->bayes = palloc(sizeof(double) * Max(n, 1));
	d->mean = palloc(sizeof(double) * Max(n, 1));
	d->by_pop = palloc(sizeof(int) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = t->vals[i];
		bool		isnull;

		d->ids[i] = DatumGetInt64(SPI_getbinval(tup, t->tupdesc, 1, &isnull));
		d->nr[i] = DatumGetInt32(SPI_getbinval(tup, t->tupdesc, 2, &isnull));
		d->bayes[i] = DatumGetFloat8(SPI_getbinval(tup, t->tupdesc, 3, &isnull));
		d->mean[i] = DatumGetFloat8(SPI_getbinval(tup, t->tupdesc, 4, &isnull));
		d->by_pop[i] = (int) i;
		if (d->nr[i] > d->nmax)
			d->nmax = d->nr[i];
	}
	sort_ctx = d;
	qsort(d->by_pop, n, sizeof(int), cmp_pop);
	MemoryContextSwitchTo(old);
	SPI_freetuptable(t);

	if (SPI_execute_plan(genre_top_plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.genre_top");
	t = SPI_tuptable;
	n = SPI_processed;
	old = MemoryContextSwitchTo(cxt);
	d->genres = palloc0(sizeof(GenreTop) * Max(n, 1));
	g = -1;
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = t->vals[i];
		bool		isnull;
		char	   *name = TextDatumGetCString(SPI_getbinval(tup, t->tupdesc, 1, &isnull));
		GenreTop   *gt;

		if (g < 0 || strcmp(d->genres[g].genre, name) != 0)
		{
			uint64		j = i;

			g++;
			d->genres[g].genre = name;
			/* its rows are the next ones with that name */
			while (j < n && strcmp(TextDatumGetCString(SPI_getbinval(t->vals[j], t->tupdesc, 1, &isnull)), name) == 0)
				j++;
			d->genres[g].ids = palloc(sizeof(int64) * (j - i));
			d->genres[g].bayes = palloc(sizeof(double) * (j - i));
			d->genres[g].rank = palloc(sizeof(int32) * (j - i));
		}
		gt = &d->genres[g];
		gt->rank[gt->n] = DatumGetInt32(SPI_getbinval(tup, t->tupdesc, 2, &isnull));
		gt->ids[gt->n] = DatumGetInt64(SPI_getbinval(tup, t->tupdesc, 3, &isnull));
		gt->bayes[gt->n] = DatumGetFloat8(SPI_getbinval(tup, t->tupdesc, 4, &isnull));
		gt->n++;
	}
	d->ngenres = g + 1;
	d->loaded = true;
	MemoryContextSwitchTo(old);
	SPI_freetuptable(t);
}

/* May this call use the kept copies? Not without a shared counter, inside a
 * transaction that changed the data itself, or under a transaction snapshot. */
static bool
shareable(void)
{
	return Generation != NULL && !changed_pending && !IsolationUsesXactSnapshot();
}

/*
 * The kept copies, emptied first when a commit changed the data (or the tables are not
 * the ones they were read from: a recreated extension). The generation is read before
 * the data: a commit in between costs a reload, never a stale copy.
 */
static RankData *
kept_data(void)
{
	uint64		generation = pg_atomic_read_u64(Generation);
	Oid			stats = recsys_relid("movie_stats");
	Oid			movies = recsys_relid("movies");

	if (Kept && Kept->generation == generation && Kept->stats_relid == stats &&
		Kept->movies_relid == movies)
		return Kept;
	if (Kept)
		MemoryContextDelete(Kept->cxt);
	Kept = new_data(TopMemoryContext, generation, stats, movies);
	return Kept;
}

/*
 * Begin a call: fix the data it reads (the kept copies when current, else a copy of its
 * own), so that a commit during the call cannot free what the call holds.
 */
void
RankBeginCall(void)
{
	prepare_plans();
	if (!shareable())
	{
		CallData = new_data(CurrentMemoryContext, 0, InvalidOid, InvalidOid);
		return;
	}
	CallData = kept_data();
	CallData->kept = true;
	/* the movies shown are kept up to a bound: past it, start again */
	if (CallData->movies && CallData->nmovies >= MOVIES_KEPT_MAX)
	{
		MemoryContextDelete(CallData->movies_cxt);
		CallData->movies_cxt = NULL;
		CallData->movies = NULL;
		CallData->nmovies = 0;
	}
}

/* The statistics of this call, read on first use. */
static RankData *
current_data(void)
{
	if (CallData == NULL)
		elog(ERROR, "RankBeginCall() was not called");
	if (!CallData->loaded)
	{
		/*
		 * The kept copy is read through a snapshot taken now, after its generation was
		 * read, not the statement's (older, in a long statement): so it holds at least
		 * what every commit up to that generation wrote.
		 */
		if (CallData->kept)
			PushActiveSnapshot(GetLatestSnapshot());
		load_stats(CallData);
		if (CallData->kept)
			PopActiveSnapshot();
	}
	return CallData;
}

/* The index of a movie's statistics, or -1. */
static int
stat_index(const RankData *d, int64 id)
{
	int			lo = 0,
				hi = d->n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (d->ids[mid] == id)
			return mid;
		if (d->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* A genre's top list, or NULL. */
static const GenreTop *
genre_top(const RankData *d, const char *genre)
{
	int			lo = 0,
				hi = d->ngenres - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = strcmp(d->genres[mid].genre, genre);

		if (c == 0)
			return &d->genres[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/* ---------------------------------------------------------------------------------
 * Candidates
 * ---------------------------------------------------------------------------------
 */
typedef struct Cand
{
	int64		movie_id;		/* 0: empty slot */
	double		nb_score;
	bool		has_nb;
	double		best;
	int64		why;
	double		why_rating;
	bool		has_gen;
	double		gen_score;
	const char *genre;
	double		score;
} Cand;

/* Candidates by movie: an open-addressing index over a dense array. */
typedef struct CandTable
{
	int64	   *keys;			/* 0: empty slot */
	int32	   *slot;			/* the candidate of each key */
	uint32		mask;
	Cand	   *cands;
	int			n;
} CandTable;

/* The candidate of a movie, added when new. */
static Cand *
cand_get(CandTable *t, int64 id)
{
	uint32		h = (uint32) (((uint64) id * UINT64CONST(0x9E3779B97F4A7C15)) >> 32) & t->mask;
	Cand	   *c;

	while (t->keys[h] != 0 && t->keys[h] != id)
		h = (h + 1) & t->mask;
	if (t->keys[h] != 0)
		return &t->cands[t->slot[h]];
	t->keys[h] = id;
	t->slot[h] = t->n;
	c = &t->cands[t->n++];
	memset(c, 0, sizeof(Cand));
	c->movie_id = id;
	return c;
}

/* A rating of the user. */
typedef struct Rated
{
	int64		movie_id;
	double		rating;
	TimestampTz rated_at;
	bool		recent;
	double		w;
} Rated;

/* by movie, then the one that counts (the latest; a recent one over an aggregated one) last */
static int
cmp_rated_movie(const void *a, const void *b)
{
	const Rated *x = a,
			   *y = b;

	if (x->movie_id != y->movie_id)
		return x->movie_id < y->movie_id ? -1 : 1;
	if (x->rated_at != y->rated_at)
		return x->rated_at < y->rated_at ? -1 : 1;
	return (int) x->recent - (int) y->recent;
}

/* most recent first, then by movie */
static int
cmp_rated_recent(const void *a, const void *b)
{
	const Rated *x = a,
			   *y = b;

	if (x->rated_at != y->rated_at)
		return x->rated_at > y->rated_at ? -1 : 1;
	return x->movie_id < y->movie_id ? -1 : x->movie_id > y->movie_id;
}

/* best score first, then by movie */
static int
cmp_cand(const void *a, const void *b)
{
	const Cand *x = *(Cand *const *) a,
			   *y = *(Cand *const *) b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return x->movie_id < y->movie_id ? -1 : x->movie_id > y->movie_id;
}

/* The non-null elements of a genres filter (text[]) as C strings; *n their count. */
char	  **
RankGenresWanted(ArrayType *genres, int *n)
{
	Datum	   *e;
	bool	   *nn;
	int			ne,
				j;
	char	  **want;

	deconstruct_array(genres, TEXTOID, -1, false, TYPALIGN_INT, &e, &nn, &ne);
	want = palloc(sizeof(char *) * Max(ne, 1));
	*n = 0;
	for (j = 0; j < ne; j++)
		if (!nn[j])
			want[(*n)++] = TextDatumGetCString(e[j]);
	return want;
}

/* Does a text[] of genres hold one of the wanted? */
bool
RankGenresMatch(Datum genres, char **want, int nwant)
{
	Datum	   *e;
	bool	   *nn;
	int			n,
				i,
				j;

	deconstruct_array(DatumGetArrayTypeP(genres), TEXTOID, -1, false, TYPALIGN_INT, &e, &nn, &n);
	for (i = 0; i < n; i++)
	{
		char	   *g;

		if (nn[i])
			continue;
		g = TextDatumGetCString(e[i]);
		for (j = 0; j < nwant; j++)
			if (strcmp(g, want[j]) == 0)
				return true;
	}
	return false;
}

/* Read the catalogue rows of ids into info (found = false for a missing movie). */
static void
fetch_movies(const int64 *ids, int n, MovieInfo *info)
{
	Datum		v[1];
	uint64		r;
	int			i;

	for (i = 0; i < n; i++)
	{
		memset(&info[i], 0, sizeof(MovieInfo));
		info[i].movie_id = ids[i];
	}
	if (n == 0)
		return;
	v[0] = id_array(ids, n);
	if (SPI_execute_plan(movies_plan, v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the movies of a list");
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
		char	   *title = SPI_getvalue(t, d, 2);
		Datum		genres = SPI_getbinval(t, d, 3, &isnull);
		Datum		year = SPI_getbinval(t, d, 4, &isnull);
		int32		y = isnull ? 0 : DatumGetInt32(year);

		for (i = 0; i < n; i++)
			if (ids[i] == id)
			{
				info[i].found = true;
				info[i].title = title ? title : "";
				info[i].genres = genres;
				info[i].year = y;
			}
	}
}

/* Fill info[i] for ids[i] (found = false when the catalogue has no such movie). */
void
RankMovieInfo(const int64 *ids, int n, MovieInfo *info)
{
	RankData   *d;
	int64	   *miss;
	int		   *miss_at;
	int			nmiss = 0,
				i;
	MovieInfo  *got;

	if (CallData == NULL)
		elog(ERROR, "RankBeginCall() was not called");
	d = CallData;
	if (!d->kept)
	{
		fetch_movies(ids, n, info);
		return;
	}
	if (d->movies == NULL)
	{
		HASHCTL		ctl;

		d->movies_cxt = AllocSetContextCreate(d->cxt, "recsys kept movies", ALLOCSET_DEFAULT_SIZES);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(MovieEntry);
		ctl.hcxt = d->movies_cxt;
		d->movies = hash_create("recsys kept movies", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		d->nmovies = 0;
	}
	miss = palloc(sizeof(int64) * Max(n, 1));
	miss_at = palloc(sizeof(int) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		MovieEntry *e = hash_search(d->movies, &ids[i], HASH_FIND, NULL);

		memset(&info[i], 0, sizeof(MovieInfo));
		info[i].movie_id = ids[i];
		if (e)
		{
			info[i].found = e->found;
			info[i].title = e->title;
			info[i].genres = e->genres;
			info[i].year = e->year;
		}
		else
		{
			miss[nmiss] = ids[i];
			miss_at[nmiss++] = i;
		}
	}
	if (nmiss == 0)
		return;
	got = palloc(sizeof(MovieInfo) * nmiss);
	/* through a snapshot newer than the generation, as current_data() reads the statistics */
	PushActiveSnapshot(GetLatestSnapshot());
	fetch_movies(miss, nmiss, got);
	PopActiveSnapshot();
	for (i = 0; i < nmiss; i++)
	{
		bool		found;
		MovieEntry *e;

		if (d->nmovies >= MOVIES_KEPT_MAX)
		{
			/* full until the next call starts them again: this one reads them */
			info[miss_at[i]] = got[i];
			continue;
		}
		e = hash_search(d->movies, &miss[i], HASH_ENTER, &found);
		if (!found)
		{
			MemoryContext old = MemoryContextSwitchTo(d->movies_cxt);

			e->found = got[i].found;
			e->title = got[i].found ? pstrdup(got[i].title) : NULL;
			e->genres = got[i].found ? datumCopy(got[i].genres, false, -1) : (Datum) 0;
			e->year = got[i].year;
			MemoryContextSwitchTo(old);
			d->nmovies++;
		}
		info[miss_at[i]].found = e->found;
		info[miss_at[i]].title = e->title;
		info[miss_at[i]].genres = e->genres;
		info[miss_at[i]].year = e->year;
	}
}

/* recsys.catalogue_changed(): the statement trigger of recsys.movies. */
Datum
recsys_catalogue_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("recsys.catalogue_changed() is the trigger of recsys.movies, not a function to call")));
	RankDataChangedAfterCommit();
	return PointerGetDatum(NULL);
}

/*
 * Rank up to limit movies for the user, filters applied, rated movies left out (with
 * fill, completed by movies no one has rated). Returns the count; *out is palloc'd.
 */
int
RankMovies(int64 user_id, int limit, ArrayType *genres, ArrayType *exclude, bool fill,
		   RankedMovie **out)
{
	RankData   *d;
	uint64		i,
				nrows;
	Rated	   *rated;
	int			nrated = 0,
				nseeds,
				j;
	int64	   *rated_ids;
	TimestampTz latest = 0;
	char	  **fav = NULL;
	double	   *fav_score = NULL;
	int			nfav = 0;
	char	  **want = NULL;
	int			nwant = 0;
	int64	   *excl = NULL;
	int			nexcl = 0;
	uint64		nnb = 0;
	uint64	   *nb_start;
	int64	   *nb_id = NULL;
	double	   *nb_sim = NULL;
	CandTable	ct;
	uint32		cap;
	Cand	  **order;
	int			ncand = 0,
				got = 0;
	RankedMovie *res;
	double		half_life = recsys_recommend_half_life > 0 ? recsys_recommend_half_life : 1e9;
	double		gw = recsys_recommend_genre_weight;
	double		pw = recsys_recommend_popularity_weight;
	double		lnmax;
	int			popular;

	d = current_data();

	/* the filters */
	if (genres)
		want = RankGenresWanted(genres, &nwant);
	if (exclude)
	{
		Datum	   *e;
		bool	   *nn;
		int			ne;

		deconstruct_array(exclude, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &e, &nn, &ne);
		excl = palloc(sizeof(int64) * Max(ne, 1));
		for (j = 0; j < ne; j++)
			if (!nn[j])
				excl[nexcl++] = DatumGetInt64(e[j]);
		qsort(excl, nexcl, sizeof(int64), cmp_int64);
	}

	/* the user's ratings: one per movie, the latest */
	{
		static const char *const tables[2] = {"ratings", "recent_ratings"};
		int			t;
		uint64		cap = 64;

		nrows = 0;
		rated = palloc(sizeof(Rated) * cap);
		for (t = 0; t < 2; t++)
		{
			PkScan		ps;
			AttrNumber	am,
						ar,
						at;

			pk_open(&ps, tables[t]);
			am = column(&ps, "movie_id");
			ar = column(&ps, "rating");
			at = column(&ps, "rated_at");
			pk_rescan(&ps, user_id);
			while (pk_next(&ps))
			{
				bool		isnull;
				Rated	   *r;

				if (nrows == cap)
				{
					cap *= 2;
					rated = repalloc_huge(rated, sizeof(Rated) * cap);
				}
				r = &rated[nrows++];
				r->movie_id = DatumGetInt64(pk_get(&ps, am, &isnull));
				r->rating = DatumGetFloat8(DirectFunctionCall1(numeric_float8, pk_get(&ps, ar, &isnull)));
				r->rated_at = DatumGetTimestampTz(pk_get(&ps, at, &isnull));
				r->recent = (t == 1);
				if (nrows == 1 || r->rated_at > latest)
					latest = r->rated_at;
			}
			pk_close(&ps);
		}
	}
	qsort(rated, nrows, sizeof(Rated), cmp_rated_movie);
	for (i = 0; i < nrows; i++)
	{
		if (nrated > 0 && rated[nrated - 1].movie_id == rated[i].movie_id)
			rated[nrated - 1] = rated[i];
		else
			rated[nrated++] = rated[i];
	}
	rated_ids = palloc(sizeof(int64) * Max(nrated, 1));
	for (j = 0; j < nrated; j++)
		rated_ids[j] = rated[j].movie_id;

	/* the seeds: the most recent, weighted by rating and age relative to the latest */
	qsort(rated, nrated, sizeof(Rated), cmp_rated_recent);
	nseeds = Min(nrated, recsys_recommend_seeds);
	for (j = 0; j < nseeds; j++)
	{
		double		age = (double) (latest - rated[j].rated_at) / 1000000.0;

		rated[j].w = (rated[j].rating - recsys_recommend_neutral) * pow(0.5, age / (half_life * 86400.0));
	}

	/* the favourite genres */
	{
		PkScan		ps;
		AttrNumber	ag,
					as;

		pk_open(&ps, "user_profiles");
		ag = column(&ps, "favorite_genres");
		as = column(&ps, "favorite_scores");
		pk_rescan(&ps, user_id);
		if (pk_next(&ps))
		{
			bool		gnull,
						snull;
			Datum		gd = pk_get(&ps, ag, &gnull);
			Datum		sd = pk_get(&ps, as, &snull);
			Datum	   *e,
					   *sc;
			bool	   *nn,
					   *sn;
			int			ne = 0,
						ns = 0;

			if (!gnull && !snull)
			{
				deconstruct_array(DatumGetArrayTypeP(gd), TEXTOID, -1, false, TYPALIGN_INT, &e, &nn, &ne);
				deconstruct_array(DatumGetArrayTypeP(sd), FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
								  &sc, &sn, &ns);
			}
			fav = palloc(sizeof(char *) * Max(ne, 1));
			fav_score = palloc(sizeof(double) * Max(ne, 1));
			for (j = 0; j < ne && j < ns; j++)
				if (!nn[j] && !sn[j])
				{
					fav[nfav] = TextDatumGetCString(e[j]);
					fav_score[nfav++] = DatumGetFloat8(sc[j]);
				}
		}
		pk_close(&ps);
	}

	/* the seeds' neighbours, best first: seed j's are nb_id/nb_sim[nb_start[j] .. nb_start[j + 1]) */
	nb_start = palloc(sizeof(uint64) * (nseeds + 1));
	if (nseeds > 0)
	{
		PkScan		ps;
		AttrNumber	an,
					asim;
		uint64		cap = 64;

		nb_id = palloc(sizeof(int64) * cap);
		nb_sim = palloc(sizeof(double) * cap);
		pk_open(&ps, "item_neighbors");
		an = column(&ps, "neighbor_id");
		asim = column(&ps, "similarity");
		for (j = 0; j < nseeds; j++)
		{
			nb_start[j] = nnb;
			pk_rescan(&ps, rated[j].movie_id);
			while (pk_next(&ps))
			{
				bool		isnull;

				if (nnb == cap)
				{
					cap *= 2;
					nb_id = repalloc_huge(nb_id, sizeof(int64) * cap);
					nb_sim = repalloc_huge(nb_sim, sizeof(double) * cap);
				}
				nb_id[nnb] = DatumGetInt64(pk_get(&ps, an, &isnull));
				nb_sim[nnb] = DatumGetFloat8(pk_get(&ps, asim, &isnull));
				nnb++;
			}
		}
		pk_close(&ps);
	}
	nb_start[nseeds] = nnb;

	/* the candidate table */
	popular = Min(d->n, POPULAR_POOL + nexcl);
	cap = 64;
	{
		uint64		need = nnb + popular + (uint64) nfav * GENRE_POOL;

		for (j = 0; j < nwant; j++)
		{
			const GenreTop *gt = genre_top(d, want[j]);

			if (gt)
				need += gt->n;
		}
		while (cap < 2 * need)
			cap <<= 1;
	}
	ct.keys = palloc0(sizeof(int64) * cap);
	ct.slot = palloc(sizeof(int32) * cap);
	ct.cands = palloc(sizeof(Cand) * (cap / 2));
	ct.mask = cap - 1;
	ct.n = 0;

	/* neighbours: sum of w * sim over the seeds, in seed order; the biggest contribution says why */
	for (j = 0; j < nseeds; j++)
	{
		const Rated *sd = &rated[j];

		for (i = nb_start[j]; i < nb_start[j + 1]; i++)
		{
			double		c = sd->w * nb_sim[i];
			Cand	   *cd = cand_get(&ct, nb_id[i]);

			if (!cd->has_nb)
			{
				cd->has_nb = true;
				cd->nb_score = c;
				cd->best = c;
				cd->why = sd->movie_id;
				cd->why_rating = sd->rating;
			}
			else
			{
				cd->nb_score += c;
				if (c > cd->best || (c == cd->best && sd->movie_id < cd->why))
				{
					cd->best = c;
					cd->why = sd->movie_id;
					cd->why_rating = sd->rating;
				}
			}
		}
	}

	/* the best of the favourite genres: score_g * (bayes_avg - 2.5), the largest says why */
	for (j = 0; j < nfav; j++)
	{
		const GenreTop *gt = genre_top(d, fav[j]);
		int			k;

		if (gt == NULL)
			continue;
		for (k = 0; k < gt->n && gt->rank[k] <= GENRE_POOL; k++)
		{
			double		gs = fav_score[j] * (gt->bayes[k] - 2.5);
			Cand	   *cd = cand_get(&ct, gt->ids[k]);

			if (!cd->has_gen || gs > cd->gen_score ||
				(gs == cd->gen_score && strcmp(gt->genre, cd->genre) < 0))
			{
				cd->has_gen = true;
				cd->gen_score = gs;
				cd->genre = gt->genre;
			}
		}
	}

	/* the most popular, and every top movie of a genre asked for */
	for (j = 0; j < popular; j++)
		(void) cand_get(&ct, d->ids[d->by_pop[j]]);
	for (j = 0; j < nwant; j++)
	{
		const GenreTop *gt = genre_top(d, want[j]);
		int			k;

		for (k = 0; gt && k < gt->n; k++)
			(void) cand_get(&ct, gt->ids[k]);
	}

	/* scores, rated and excluded movies left out */
	lnmax = log(1.0 + d->nmax);
	order = palloc(sizeof(Cand *) * Max(ct.n, 1));
	for (i = 0; i < (uint64) ct.n; i++)
	{
		Cand	   *cd = &ct.cands[i];
		int			si;
		double		pop = 0;

		if (sorted_has(rated_ids, nrated, cd->movie_id) ||
			sorted_has(excl, nexcl, cd->movie_id))
			continue;
		si = stat_index(d, cd->movie_id);
		if (si >= 0 && lnmax != 0)
			pop = log(1.0 + d->nr[si]) / lnmax * d->bayes[si] / 5;
		cd->score = (cd->has_nb ? cd->nb_score : 0) + gw * (cd->has_gen ? cd->gen_score : 0) + pw * pop;
		order[ncand++] = cd;
	}
	qsort(order, ncand, sizeof(Cand *), cmp_cand);

	/* best first, a batch of catalogue rows at a time, until limit qualify */
	res = palloc0(sizeof(RankedMovie) * limit);
	j = 0;
	while (got < limit && j < ncand)
	{
		int			batch = Min(ncand - j, (limit - got) * (nwant > 0 ? 4 : 1) + 8);
		int64	   *ids = palloc(sizeof(int64) * batch);
		MovieInfo  *info = palloc(sizeof(MovieInfo) * batch);
		int			k;

		for (k = 0; k < batch; k++)
			ids[k] = order[j + k]->movie_id;
		RankMovieInfo(ids, batch, info);
		for (k = 0; k < batch && got < limit; k++)
		{
			const Cand *cd = order[j + k];
			RankedMovie *r;
			int			si;

			if (!info[k].found || (nwant > 0 && !RankGenresMatch(info[k].genres, want, nwant)))
				continue;
			r = &res[got++];
			r->movie_id = cd->movie_id;
			r->score = cd->score;
			r->has_best = cd->has_nb;
			r->best = cd->best;
			r->why = cd->why;
			r->why_rating = cd->why_rating;
			r->genre = cd->has_gen ? cd->genre : NULL;
			si = stat_index(d, cd->movie_id);
			r->has_stats = si >= 0;
			if (si >= 0)
			{
				r->mean_rating = d->mean[si];
				r->n_ratings = d->nr[si];
			}
			r->title = info[k].title;
			r->genres = info[k].genres;
			r->year = info[k].year;
		}
		j += batch;
	}

	/* movies no one has rated complete a short list */
	if (fill && got < limit)
	{
		Datum		fv[5];
		char		fn[5] = "     ";
		int64	   *listed = palloc(sizeof(int64) * Max(got, 1));
		int			k;

		for (k = 0; k < got; k++)
			listed[k] = res[k].movie_id;
		fv[0] = Int64GetDatum(user_id);
		fv[1] = genres ? PointerGetDatum(genres) : (Datum) 0;
		fn[1] = genres ? ' ' : 'n';
		fv[2] = exclude ? PointerGetDatum(exclude) : (Datum) 0;
		fn[2] = exclude ? ' ' : 'n';
		fv[3] = id_array(listed, got);
		fv[4] = Int32GetDatum(limit - got);
		if (SPI_execute_plan(fill_plan, fv, fn, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not complete the list for user %lld", (long long) user_id);
		for (i = 0; i < SPI_processed && got < limit; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	td = SPI_tuptable->tupdesc;
			bool		isnull;
			RankedMovie *r = &res[got++];
			char	   *title = SPI_getvalue(t, td, 2);
			Datum		y;

			r->movie_id = DatumGetInt64(SPI_getbinval(t, td, 1, &isnull));
			r->title = title ? title : "";
			r->genres = SPI_getbinval(t, td, 3, &isnull);
			y = SPI_getbinval(t, td, 4, &isnull);
			r->year = isnull ? 0 : DatumGetInt32(y);
		}
	}

	/* the seeds' titles, for the reasons */
	{
		int64	   *why = palloc(sizeof(int64) * Max(got, 1));
		MovieInfo  *info = palloc(sizeof(MovieInfo) * Max(got, 1));
		int			nwhy = 0,
					k;

		for (k = 0; k < got; k++)
			if (res[k].has_best && res[k].best > 0)
				why[nwhy++] = res[k].why;
		RankMovieInfo(why, nwhy, info);
		nwhy = 0;
		for (k = 0; k < got; k++)
			if (res[k].has_best && res[k].best > 0)
			{
				if (info[nwhy].found)
				{
					res[k].why_title = info[nwhy].title;
					res[k].why_year = info[nwhy].year;
				}
				nwhy++;
			}
	}
	*out = res;
	return got;
}
