/*
 * profiles.c: user profiles and movie statistics, updated from the run's changes.
 *
 * Formulas (README.md, "Derived tables"):
 * - user: n_ratings, mean_rating = sum / n; per genre g the count n_g and sum s_g of
 *   the user's ratings of movies in g; score_g = (s_g - n_g * mean) / (n_g + 5), the
 *   user's total deviation from their own mean in g, shrunk toward zero when n_g is
 *   small; favorite_genres = the (at most) 3 genres of highest positive score, ties
 *   by name; top_movies = the 10 best-rated movies, ties to the more recent rating,
 *   then the lower movie id.
 * - movie: n_ratings, mean_rating, n_liked (ratings of 4 or more) and
 *   bayes_avg = (C * m + sum) / (C + n), the mean shrunk toward the global mean m of
 *   every rating with the weight of C = 10 ratings.
 *
 * Incremental: every quantity is a sum over ratings, kept in integers (half stars),
 * so a run adds the difference of each changed rating (new minus old) and the result
 * equals a recomputation exactly.  The top-10 list is merged from the stored list
 * and the changed ratings, except for a user one of whose top movies changed: that
 * user's ratings are read again (the one place where work follows history).  Movie
 * statistics are rewritten for every movie each run because bayes_avg depends on the
 * global mean (62k rows for MovieLens 25M: O(movies), not O(ratings)).
 * A movie's genres are read from the catalogue when the run happens: a catalogue
 * change of genres reaches old ratings' profiles at the next rebuild.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "aggregate.h"
#include "bulkcopy.h"
#include "cache.h"

#define MAX_GENRES		256
#define MAX_MOVIE_GENRES	32	/* genres of one movie that count (MovieLens has at most 10) */
#define USER_CHUNK		50000


typedef struct Catalogue
{
	char	   *genre[MAX_GENRES];	/* sorted by name */
	int			ngenres;
	AggIdMap		movies;
	int32	   *gstart;			/* per movie slot: its genres in glist */
	int16	   *gcount;
	int16	   *glist;
} Catalogue;

typedef struct TopEntry
{
	int64		movie_id;
	int64		ts;
	int32		halves;
} TopEntry;

typedef struct Profile
{
	int64		user_id;
	int32		n;
	int64		halves;
	int64		last_ts;
	int32	   *gn;				/* per genre of the catalogue (ngenres) */
	int64	   *gh;
	TopEntry	top[AGG_TOP_MOVIES];
	int			ntop;
	bool		exists;
	bool		need_full;
} Profile;

typedef struct ProfileGen
{
	Profile    *p;
	int64		n;
	int64		i;
	Catalogue  *cat;
	int64		version;
	TimestampTz now;
} ProfileGen;

typedef struct MovieStat
{
	int32		n;
	int32		liked;
	int64		halves;
	TimestampTz updated_at;
	bool		changed;
} MovieStat;

typedef struct StatGen
{
	AggIdMap	   *map;
	MovieStat  *s;
	int64		i;
	double		global_mean;
	TimestampTz now;
} StatGen;

static void load_catalogue(Catalogue *cat);
static int	genre_index(Catalogue *cat, const char *name, bool add);
static bool top_before(const TopEntry *a, const TopEntry *b);
static void top_add(Profile *p, int64 movie_id, int32 halves, int64 ts);
static void top_remove(Profile *p, int64 movie_id, bool *was_there);
static void load_profiles(Profile *p, int64 n, Catalogue *cat);
static void reload_top(Profile *p);
static bool profile_row(StringInfo buf, void *arg);
static bool stat_row(StringInfo buf, void *arg);
static Datum int8_array(const int64 *v, int n);

static Catalogue *catalogue = NULL;

/* ---------------------------------------------------------------------------------
 * The catalogue
 * ---------------------------------------------------------------------------------
 */

/* The index of a genre name; added (keeping the order by name) when add is set. */
static int
genre_index(Catalogue *cat, const char *name, bool add)
{
	int			lo = 0,
				hi = cat->ngenres - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(cat->genre[mid], name);

		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	if (!add)
		return -1;
	if (cat->ngenres >= MAX_GENRES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the catalogue has more than %d distinct genres", MAX_GENRES)));
	memmove(&cat->genre[lo + 1], &cat->genre[lo], sizeof(char *) * (cat->ngenres - lo));
	cat->genre[lo] = pstrdup(name);
	cat->ngenres++;
	return lo;
}

/* Load every movie's genres from recsys.movies. */
static void
load_catalogue(Catalogue *cat)
{
	uint64		n,
				i;
	int64	   *ids;
	int64		total = 0;
	char	  **names;
	int		   *counts;
	int64	   *slots;

	memset(cat, 0, sizeof(Catalogue));
	if (SPI_execute("SELECT movie_id, genres FROM recsys.movies", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.movies");
	n = SPI_processed;
	ids = palloc(sizeof(int64) * Max(n, 1));
	counts = palloc0(sizeof(int) * Max(n, 1));
	names = palloc(sizeof(char *) * Max(n, 1) * MAX_MOVIE_GENRES);

	/* first the genre dictionary, sorted by name */
	for (i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		g;

		ids[i] = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
		g = SPI_getbinval(t, d, 2, &isnull);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *nulls;
			int			ne,
						j;

			deconstruct_array(DatumGetArrayTypeP(g), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &ne);
			for (j = 0; j < ne && j < MAX_MOVIE_GENRES; j++)
				if (!nulls[j])
				{
					char	   *s = TextDatumGetCString(elems[j]);

					if (s[0] != '\0')
					{
						names[i * MAX_MOVIE_GENRES + counts[i]++] = s;
						(void) genre_index(cat, s, true);
					}
				}
		}
	}
	/* then each movie's genre indexes, by slot */
	AggIdMapBuild(&cat->movies, ids, (int64) n);
	cat->gstart = palloc0(sizeof(int32) * Max(cat->movies.n, 1));
	cat->gcount = palloc0(sizeof(int16) * Max(cat->movies.n, 1));
	for (i = 0; i < n; i++)
		total += counts[i];
	cat->glist = palloc(sizeof(int16) * Max(total, 1));
	slots = palloc(sizeof(int64) * Max(n, 1));
	total = 0;
	for (i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(t, SPI_tuptable->tupdesc, 1, &isnull));
		int64		slot = AggIdMapFind(&cat->movies, id);
		int			j;

		slots[i] = slot;
		cat->gstart[slot] = (int32) total;
		cat->gcount[slot] = (int16) counts[i];
		for (j = 0; j < counts[i]; j++)
			cat->glist[total++] = (int16) genre_index(cat, names[i * MAX_MOVIE_GENRES + j], false);
	}
	SPI_freetuptable(SPI_tuptable);
	pfree(slots);
	pfree(counts);
	pfree(names);
}

/* ---------------------------------------------------------------------------------
 * Top movies
 * ---------------------------------------------------------------------------------
 */

/* Does a rank before b: higher rating, then more recent, then lower movie id? */
static bool
top_before(const TopEntry *a, const TopEntry *b)
{
	if (a->halves != b->halves)
		return a->halves > b->halves;
	if (a->ts != b->ts)
		return a->ts > b->ts;
	return a->movie_id < b->movie_id;
}

static void
top_add(Profile *p, int64 movie_id, int32 halves, int64 ts)
{
	TopEntry	e = {movie_id, ts, halves};
	int			i;

	if (p->ntop == AGG_TOP_MOVIES && !top_before(&e, &p->top[p->ntop - 1]))
		return;
	if (p->ntop < AGG_TOP_MOVIES)
		p->ntop++;
	for (i = p->ntop - 1; i > 0 && top_before(&e, &p->top[i - 1]); i--)
		p->top[i] = p->top[i - 1];
	p->top[i] = e;
}

static void
top_remove(Profile *p, int64 movie_id, bool *was_there)
{
	int			i;

	for (i = 0; i < p->ntop; i++)
		if (p->top[i].movie_id == movie_id)
		{
			memmove(&p->top[i], &p->top[i + 1], sizeof(TopEntry) * (p->ntop - i - 1));
			p->ntop--;
			*was_there = true;
			return;
		}
}

/* Recompute a user's top list from all of their stored ratings. */
static void
reload_top(Profile *p)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	uint64		i;

	values[0] = Int64GetDatum(p->user_id);
	if (SPI_execute_with_args("SELECT movie_id, (rating * 2)::int4, rated_at FROM recsys.ratings"
							  " WHERE user_id = $1", 1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read recsys.ratings");
	p->ntop = 0;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;

		top_add(p, DatumGetInt64(SPI_getbinval(t, d, 1, &isnull)),
				DatumGetInt32(SPI_getbinval(t, d, 2, &isnull)),
				BulkTimestampToEpoch(DatumGetTimestampTz(SPI_getbinval(t, d, 3, &isnull))));
	}
	SPI_freetuptable(SPI_tuptable);
}

/* ---------------------------------------------------------------------------------
 * User profiles
 * ---------------------------------------------------------------------------------
 */

static Datum
int8_array(const int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* Read the stored profiles of these users (sorted by user id) into p[]. */
static void
load_profiles(Profile *p, int64 n, Catalogue *cat)
{
	int64		i;

	for (i = 0; i < n; i += USER_CHUNK)
	{
		int64		k = Min(USER_CHUNK, n - i);
		int64	   *ids = palloc(sizeof(int64) * k);
		int64		j;
		Oid			types[1] = {INT8ARRAYOID};
		Datum		values[1];
		uint64		r;

		for (j = 0; j < k; j++)
			ids[j] = p[i + j].user_id;
		values[0] = int8_array(ids, (int) k);
		if (SPI_execute_with_args("SELECT user_id, n_ratings, rating_halves, last_rated_at, genres,"
								  " genre_n, genre_halves, top_movies, top_halves, top_ts"
								  " FROM recsys.user_profiles WHERE user_id = ANY ($1)",
								  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read recsys.user_profiles");
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	t = SPI_tuptable->vals[r];
			TupleDesc	d = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		uid = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
			int64		lo = i,
						hi = i + k - 1;
			Profile    *pr = NULL;
			Datum	   *gnames,
					   *gn,
					   *gh,
					   *tm,
					   *th,
					   *tt;
			bool	   *nulls;
			int			ng,
						nt,
						q;

			while (lo <= hi)
			{
				int64		mid = lo + (hi - lo) / 2;

				if (p[mid].user_id == uid)
				{
					pr = &p[mid];
					break;
				}
				if (p[mid].user_id < uid)
					lo = mid + 1;
				else
					hi = mid - 1;
			}
			if (pr == NULL)
				continue;
			pr->exists = true;
			pr->n = DatumGetInt32(SPI_getbinval(t, d, 2, &isnull));
			pr->halves = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
			pr->last_ts = BulkTimestampToEpoch(DatumGetTimestampTz(SPI_getbinval(t, d, 4, &isnull)));
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 5, &isnull)), TEXTOID, -1, false,
							  TYPALIGN_INT, &gnames, &nulls, &ng);
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 6, &isnull)), INT4OID, 4, true,
							  TYPALIGN_INT, &gn, &nulls, &q);
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 7, &isnull)), INT8OID, 8, FLOAT8PASSBYVAL,
							  TYPALIGN_DOUBLE, &gh, &nulls, &q);
			for (q = 0; q < ng; q++)
			{
				/* a genre the catalogue no longer has keeps its sums */
				int			g = genre_index(cat, TextDatumGetCString(gnames[q]), false);

				if (g < 0)
					ereport(ERROR,
							(errcode(ERRCODE_DATA_EXCEPTION),
							 errmsg("user %lld's profile has genre \"%s\", which recsys.movies no longer has",
									(long long) uid, TextDatumGetCString(gnames[q])),
							 errhint("Run recsys_aggregate(rebuild => true) after changing the catalogue's genres.")));
				pr->gn[g] = DatumGetInt32(gn[q]);
				pr->gh[g] = DatumGetInt64(gh[q]);
			}
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 8, &isnull)), INT8OID, 8, FLOAT8PASSBYVAL,
							  TYPALIGN_DOUBLE, &tm, &nulls, &nt);
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 9, &isnull)), INT4OID, 4, true,
							  TYPALIGN_INT, &th, &nulls, &q);
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 10, &isnull)), INT8OID, 8, FLOAT8PASSBYVAL,
							  TYPALIGN_DOUBLE, &tt, &nulls, &q);
			pr->ntop = Min(nt, AGG_TOP_MOVIES);
			for (q = 0; q < pr->ntop; q++)
			{
				pr->top[q].movie_id = DatumGetInt64(tm[q]);
				pr->top[q].halves = DatumGetInt32(th[q]);
				pr->top[q].ts = DatumGetInt64(tt[q]);
			}
		}
		SPI_freetuptable(SPI_tuptable);
		pfree(ids);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Update the profiles of the users the run's changes touch. */
void
AggUpdateProfiles(AggRun *run)
{
	Catalogue  *cat = palloc(sizeof(Catalogue));
	int64		nusers = 0;
	int64		i,
				j,
				u;
	Profile    *p;
	int32	   *gn_pool;
	int64	   *gh_pool;
	ProfileGen	gen;
	static const char *const cols[] = {"user_id", "favorite_genres", "favorite_scores", "top_movies",
		"n_ratings", "mean_rating", "version", "updated_at", "rating_halves", "last_rated_at",
	"genres", "genre_n", "genre_halves", "top_halves", "top_ts", NULL};

	AggProgressPhase("user profiles");
	load_catalogue(cat);
	catalogue = cat;
	if (run->nchanges == 0)
		return;

	/* one profile per distinct user of the changes (they are sorted by user) */
	for (i = 0; i < run->nchanges; i++)
		if (i == 0 || run->changes[i].user_id != run->changes[i - 1].user_id)
			nusers++;
	p = MemoryContextAllocHuge(run->cxt, sizeof(Profile) * nusers);
	gn_pool = MemoryContextAllocHuge(run->cxt, sizeof(int32) * nusers * Max(cat->ngenres, 1));
	gh_pool = MemoryContextAllocHuge(run->cxt, sizeof(int64) * nusers * Max(cat->ngenres, 1));
	memset(gn_pool, 0, sizeof(int32) * nusers * Max(cat->ngenres, 1));
	memset(gh_pool, 0, sizeof(int64) * nusers * Max(cat->ngenres, 1));
	for (i = 0, u = -1; i < run->nchanges; i++)
		if (i == 0 || run->changes[i].user_id != run->changes[i - 1].user_id)
		{
			u++;
			memset(&p[u], 0, sizeof(Profile));
			p[u].user_id = run->changes[i].user_id;
			p[u].gn = gn_pool + u * Max(cat->ngenres, 1);
			p[u].gh = gh_pool + u * Max(cat->ngenres, 1);
		}
	if (!run->first_load)
		load_profiles(p, nusers, cat);

	/* apply each change: remove the old rating, add the new one */
	for (i = 0, u = -1; i < run->nchanges; i++)
	{
		AggChange  *c = &run->changes[i];
		Profile    *pr;
		int64		slot = AggIdMapFind(&cat->movies, c->movie_id);
		int			q;
		bool		was_top = false;

		if (i == 0 || c->user_id != run->changes[i - 1].user_id)
			u++;
		pr = &p[u];
		if (c->old_halves > 0)
		{
			pr->n--;
			pr->halves -= c->old_halves;
			if (slot >= 0)
				for (q = 0; q < cat->gcount[slot]; q++)
				{
					pr->gn[cat->glist[cat->gstart[slot] + q]]--;
					pr->gh[cat->glist[cat->gstart[slot] + q]] -= c->old_halves;
				}
			top_remove(pr, c->movie_id, &was_top);
			if (was_top)
				pr->need_full = true;
		}
		pr->n++;
		pr->halves += c->new_halves;
		if (c->new_ts > pr->last_ts)
			pr->last_ts = c->new_ts;
		if (slot >= 0)
			for (q = 0; q < cat->gcount[slot]; q++)
			{
				pr->gn[cat->glist[cat->gstart[slot] + q]]++;
				pr->gh[cat->glist[cat->gstart[slot] + q]] += c->new_halves;
			}
		top_add(pr, c->movie_id, c->new_halves, c->new_ts);
		if ((i & 0xfffff) == 0)
			CHECK_FOR_INTERRUPTS();
	}

	if (!run->first_load)
	{
		Datum	   *ids = palloc(sizeof(Datum) * Min(nusers, USER_CHUNK));

		/*
		 * A top movie changed: the list may now need one the run did not touch, so
		 * this user's ratings are read again (recsys.ratings holds the run's rows).
		 */
		for (u = 0; u < nusers; u++)
			if (p[u].need_full && p[u].n > p[u].ntop)
			{
				reload_top(&p[u]);
				CHECK_FOR_INTERRUPTS();
			}
		for (i = 0; i < nusers; i += USER_CHUNK)
		{
			int64		k = Min(USER_CHUNK, nusers - i);
			Oid			types[1] = {INT8ARRAYOID};
			Datum		values[1];

			for (j = 0; j < k; j++)
				ids[j] = Int64GetDatum(p[i + j].user_id);
			values[0] = PointerGetDatum(construct_array(ids, (int) k, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			if (SPI_execute_with_args("DELETE FROM recsys.user_profiles WHERE user_id = ANY ($1)",
									  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not delete from recsys.user_profiles");
		}
		pfree(ids);
	}

	gen.p = p;
	gen.n = nusers;
	gen.i = 0;
	gen.cat = cat;
	gen.version = run->run_id;
	gen.now = GetCurrentTransactionStartTimestamp();
	BulkCopy("recsys", "user_profiles", cols, profile_row, &gen);
	CommandCounterIncrement();
	run->users = nusers;

	/* their cached recommendations go when this run commits (the version check is the guarantee) */
	{
		int64	   *ids = MemoryContextAllocHuge(run->cxt, sizeof(int64) * nusers);

		for (u = 0; u < nusers; u++)
			ids[u] = p[u].user_id;
		CacheInvalidateAfterCommit(ids, (int) nusers);
		pfree(ids);
	}
}

/* The next profile row for COPY (users with no rating left are skipped). */
static bool
profile_row(StringInfo buf, void *arg)
{
	ProfileGen *g = arg;
	Catalogue  *cat = g->cat;
	Profile    *pr;
	double		mean;
	int			fav[AGG_FAVORITE_GENRES];
	double		favs[AGG_FAVORITE_GENRES];
	int			nfav = 0;
	const char *favnames[AGG_FAVORITE_GENRES];
	const char *names[MAX_GENRES];
	int32		gn[MAX_GENRES];
	int64		gh[MAX_GENRES];
	int			ng = 0;
	int64		tm[AGG_TOP_MOVIES],
				tt[AGG_TOP_MOVIES];
	int32		th[AGG_TOP_MOVIES];
	int			q,
				k;

	do
	{
		if (g->i >= g->n)
			return false;
		pr = &g->p[g->i++];
	} while (pr->n <= 0);

	mean = (double) pr->halves / (2.0 * pr->n);
	for (q = 0; q < cat->ngenres; q++)
	{
		double		score;

		if (pr->gn[q] <= 0)
			continue;
		names[ng] = cat->genre[q];
		gn[ng] = pr->gn[q];
		gh[ng] = pr->gh[q];
		ng++;
		/* the deviation sum from the user's mean, shrunk: (s_g - n_g * mean) / (n_g + 5) */
		score = ((double) pr->gh[q] / 2.0 - (double) pr->gn[q] * mean) /
			((double) pr->gn[q] + AGG_GENRE_SHRINK);
		if (score <= 0)
			continue;
		/* insert among the best, ties to the earlier name (q ascends by name) */
		for (k = nfav; k > 0 && score > favs[k - 1]; k--)
		{
			if (k < AGG_FAVORITE_GENRES)
			{
				fav[k] = fav[k - 1];
				favs[k] = favs[k - 1];
			}
		}
		if (k < AGG_FAVORITE_GENRES)
		{
			fav[k] = q;
			favs[k] = score;
			if (nfav < AGG_FAVORITE_GENRES)
				nfav++;
		}
	}
	for (k = 0; k < nfav; k++)
		favnames[k] = cat->genre[fav[k]];
	for (k = 0; k < pr->ntop; k++)
	{
		tm[k] = pr->top[k].movie_id;
		th[k] = pr->top[k].halves;
		tt[k] = pr->top[k].ts;
	}

	BulkRowBegin(buf, 15);
	BulkPutInt8(buf, pr->user_id);
	BulkPutTextArray(buf, favnames, nfav);
	BulkPutFloat8Array(buf, favs, nfav);
	BulkPutInt8Array(buf, tm, pr->ntop);
	BulkPutInt4(buf, pr->n);
	BulkPutFloat8(buf, mean);
	BulkPutInt8(buf, g->version);
	BulkPutInt8(buf, g->now);
	BulkPutInt8(buf, pr->halves);
	BulkPutEpoch(buf, pr->last_ts);
	BulkPutTextArray(buf, names, ng);
	BulkPutInt4Array(buf, gn, ng);
	BulkPutInt8Array(buf, gh, ng);
	BulkPutInt4Array(buf, th, pr->ntop);
	BulkPutInt8Array(buf, tt, pr->ntop);
	if ((g->i & 0xffff) == 0)
		CHECK_FOR_INTERRUPTS();
	return true;
}

/* ---------------------------------------------------------------------------------
 * Movie statistics
 * ---------------------------------------------------------------------------------
 */

/* Update every movie's statistics from the changes (and the new global mean). */
void
AggUpdateMovieStats(AggRun *run)
{
	AggIdMap		map;
	int64		nids = 0;
	int64	   *ids;
	MovieStat  *s;
	uint64		nstored = 0,
				r;
	int64		i;
	int64		total_n = 0,
				total_halves = 0;
	StatGen		gen;
	SPITupleTable *stored = NULL;
	static const char *const cols[] = {"movie_id", "n_ratings", "mean_rating", "bayes_avg",
	"rating_halves", "n_liked", "updated_at", NULL};

	AggProgressPhase("movie statistics");
	if (run->nchanges == 0 && !run->rebuild)
		return;
	if (!run->first_load)
	{
		if (SPI_execute("SELECT movie_id, n_ratings, rating_halves, n_liked, updated_at FROM recsys.movie_stats",
						false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read recsys.movie_stats");
		nstored = SPI_processed;
		stored = SPI_tuptable;
	}
	ids = MemoryContextAllocHuge(run->cxt, sizeof(int64) * (nstored + run->nchanges + 1));
	for (r = 0; r < nstored; r++)
	{
		bool		isnull;

		ids[nids++] = DatumGetInt64(SPI_getbinval(stored->vals[r], stored->tupdesc, 1, &isnull));
	}
	for (i = 0; i < run->nchanges; i++)
		ids[nids++] = run->changes[i].movie_id;
	AggIdMapBuild(&map, ids, nids);
	s = MemoryContextAllocHuge(run->cxt, sizeof(MovieStat) * Max(map.n, 1));
	memset(s, 0, sizeof(MovieStat) * Max(map.n, 1));
	for (r = 0; r < nstored; r++)
	{
		HeapTuple	t = stored->vals[r];
		TupleDesc	d = stored->tupdesc;
		bool		isnull;
		int64		k = AggIdMapFind(&map, DatumGetInt64(SPI_getbinval(t, d, 1, &isnull)));

		s[k].n = DatumGetInt32(SPI_getbinval(t, d, 2, &isnull));
		s[k].halves = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
		s[k].liked = DatumGetInt32(SPI_getbinval(t, d, 4, &isnull));
		s[k].updated_at = DatumGetTimestampTz(SPI_getbinval(t, d, 5, &isnull));
	}
	if (stored)
		SPI_freetuptable(stored);

	for (i = 0; i < run->nchanges; i++)
	{
		AggChange  *c = &run->changes[i];
		MovieStat  *m = &s[AggIdMapFind(&map, c->movie_id)];

		if (c->old_halves > 0)
		{
			m->n--;
			m->halves -= c->old_halves;
			if (c->old_halves >= 8)
				m->liked--;
		}
		m->n++;
		m->halves += c->new_halves;
		if (c->new_halves >= 8)
			m->liked++;
		if (!m->changed)
		{
			m->changed = true;
			run->movies++;
		}
		if ((i & 0xfffff) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	for (i = 0; i < map.n; i++)
	{
		total_n += s[i].n;
		total_halves += s[i].halves;
	}
	run->ratings_total = total_n;

	if (!run->first_load &&
		SPI_execute("DELETE FROM recsys.movie_stats", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from recsys.movie_stats");
	gen.map = &map;
	gen.s = s;
	gen.i = 0;
	gen.global_mean = total_n > 0 ? (double) total_halves / (2.0 * total_n) : 0;
	gen.now = GetCurrentTransactionStartTimestamp();
	BulkCopy("recsys", "movie_stats", cols, stat_row, &gen);
	CommandCounterIncrement();

	/* each genre's best Bayesian averages, for the ranking (recommend.c) */
	if (SPI_execute("DELETE FROM recsys.genre_top", false, 0) != SPI_OK_DELETE ||
		SPI_execute("INSERT INTO recsys.genre_top (genre, rank, movie_id, bayes_avg)"
					" SELECT genre, rank, movie_id, bayes_avg FROM ("
					"  SELECT g.genre, s.movie_id, s.bayes_avg, row_number() OVER"
					"         (PARTITION BY g.genre ORDER BY s.bayes_avg DESC, s.movie_id)::int AS rank"
					"    FROM recsys.movie_stats s JOIN recsys.movies m ON m.movie_id = s.movie_id,"
					"         unnest(m.genres) AS g(genre)) t"
					" WHERE rank <= " CppAsString2(AGG_GENRE_TOP), false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not rewrite recsys.genre_top");
	CommandCounterIncrement();
}

/* The next movie_stats row for COPY (movies with no rating left are skipped). */
static bool
stat_row(StringInfo buf, void *arg)
{
	StatGen    *g = arg;
	MovieStat  *m;
	int64		id;
	double		sum;

	do
	{
		if (g->i >= g->map->n)
			return false;
		id = g->map->ids[g->i];
		m = &g->s[g->i++];
	} while (m->n <= 0);
	sum = (double) m->halves / 2.0;
	BulkRowBegin(buf, 7);
	BulkPutInt8(buf, id);
	BulkPutInt4(buf, m->n);
	BulkPutFloat8(buf, sum / m->n);
	BulkPutFloat8(buf, (AGG_BAYES_PRIOR * g->global_mean + sum) / (AGG_BAYES_PRIOR + m->n));
	BulkPutInt8(buf, m->halves);
	BulkPutInt4(buf, m->liked);
	BulkPutInt8(buf, m->changed ? g->now : m->updated_at);
	return true;
}
