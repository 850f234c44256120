/*
 * recommend.c: recsys_recommend(user_id, n, genres, exclude), n movies with a reason.
 *
 * Ranking (the engine), one SQL statement prepared once per backend:
 *   seeds    the user's ratings, recsys.ratings and the not yet aggregated
 *            recsys.recent_ratings, the recsys.recommend_seeds most recent (so a very
 *            heavy user costs as much as a moderate one);
 *   weight   w_s = (r_s - recsys.recommend_neutral) * 0.5^(age_s / half-life), age_s
 *            the seed's age relative to the user's own latest rating (not the wall
 *            clock: results are reproducible), half-life recsys.recommend_half_life
 *            days; a rating below the neutral point is a dislike: w_s < 0 pushes its
 *            neighbours down;
 *   score    sum over seeds of w_s * sim(s, c) over the item neighbours of the seeds
 *            + recsys.recommend_genre_weight * max over the user's favourite genres g of
 *              c of score_g * (bayes_avg(c) - 2.5), for the 50 best Bayesian averages of
 *              each favourite genre (recsys.genre_top)
 *            + recsys.recommend_popularity_weight * pop(c),
 *              pop(c) = ln(1 + n_c) / ln(1 + n_max) * bayes_avg(c) / 5 (well-rated and
 *              popular), for the most popular movies: what a cold user gets;
 *   filters  movies the user rated never come back; genres (any of) and exclude apply
 *            before the top is cut.
 * Reasons: the seed that contributed most ("Because you rated Alien (1979) 5/5"), else
 * the favourite genre ("Top rated in Sci-Fi, one of your favourite genres"), else
 * popularity ("Popular and highly rated: 4.3 average from 329 ratings").
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"

#include "cache.h"
#include "guc.h"
#include "llm.h"
#include "recommend.h"

int			recsys_recommend_seeds = 20;
double		recsys_recommend_neutral = 3.0;
double		recsys_recommend_half_life = 365.0;
double		recsys_recommend_genre_weight = 0.2;
double		recsys_recommend_popularity_weight = 0.6;

#define DEEP_LIST		100		/* the engine's list, cut to n after filtering */
#define LLM_CANDIDATES	20		/* the engine's best, sent to the LLM */
#define LLM_PICKS		10		/* picks asked of it */
#define POPULAR_POOL	200		/* popular candidates */
#define GENRE_POOL		50		/* candidates per favourite genre */

PG_FUNCTION_INFO_V1(recsys_recommend);
PG_FUNCTION_INFO_V1(recsys_llm_status);
PG_FUNCTION_INFO_V1(recsys_forget_cache);

static SPIPlanPtr rank_plan = NULL;
static SPIPlanPtr fill_plan = NULL;
static SPIPlanPtr state_plan = NULL;
static SPIPlanPtr taste_plan = NULL;
static SPIPlanPtr movies_plan = NULL;

/*
 * The user's state for the cache and the LLM: profile version (0: none), movies rated
 * with recsys_rate since the last aggregate, favourite genres, a few top movies.
 */
static const char *const STATE_SQL =
"SELECT coalesce((SELECT p.version FROM recsys.user_profiles p WHERE p.user_id = $1), 0),"
"       ARRAY(SELECT r.movie_id FROM recsys.recent_ratings r WHERE r.user_id = $1)";

/* What the LLM is told of the user: favourite genres and a few top movies. */
static const char *const TASTE_SQL =
"SELECT coalesce(p.favorite_genres, '{}'),"
"       ARRAY(SELECT m.title FROM unnest(p.top_movies[1:5]) WITH ORDINALITY t(id, i)"
"             JOIN recsys.movies m ON m.movie_id = t.id ORDER BY t.i),"
"       ARRAY(SELECT coalesce(m.year, 0) FROM unnest(p.top_movies[1:5]) WITH ORDINALITY t(id, i)"
"             JOIN recsys.movies m ON m.movie_id = t.id ORDER BY t.i),"
"       ARRAY(SELECT array_to_string(m.genres, '|') FROM unnest(p.top_movies[1:5]) WITH ORDINALITY t(id, i)"
"             JOIN recsys.movies m ON m.movie_id = t.id ORDER BY t.i)"
"  FROM (SELECT 1) one LEFT JOIN recsys.user_profiles p ON p.user_id = $1";

/* titles and genres of a list's movies */
static const char *const MOVIES_SQL =
"SELECT m.movie_id, m.title, m.genres FROM recsys.movies m WHERE m.movie_id = ANY ($1)";

/*
 * When the ranked candidates run short (a small catalogue, narrow filters): movies no
 * one has rated yet, in id order.  $1 user, $2 genres, $3 exclude, $4 already listed,
 * $5 how many.  Same columns as RANK_SQL.
 */
static const char *const FILL_SQL =
"SELECT m.movie_id, m.title, m.genres, 0::float8, NULL::float8, NULL::bigint, NULL::float8,"
"       NULL::text, NULL::int, NULL::text, NULL::float8, NULL::int, m.year"
"  FROM recsys.movies m"
" WHERE NOT EXISTS (SELECT 1 FROM recsys.movie_stats s WHERE s.movie_id = m.movie_id)"
"   AND NOT EXISTS (SELECT 1 FROM recsys.ratings r WHERE r.user_id = $1 AND r.movie_id = m.movie_id)"
"   AND NOT EXISTS (SELECT 1 FROM recsys.recent_ratings r WHERE r.user_id = $1 AND r.movie_id = m.movie_id)"
"   AND ($2::text[] IS NULL OR m.genres && $2)"
"   AND ($3::bigint[] IS NULL OR m.movie_id <> ALL ($3))"
"   AND m.movie_id <> ALL ($4)"
" ORDER BY m.movie_id LIMIT $5";

/*
 * $1 user, $2 seeds, $3 neutral, $4 half-life (days), $5 genre weight, $6 popularity
 * weight, $7 limit, $8 genres filter (NULL: none), $9 exclude (NULL: none)
 */
static const char *const RANK_SQL =
"WITH rated AS ("
"  SELECT r.movie_id, r.rating::float8 AS rating, r.rated_at FROM recsys.ratings r WHERE r.user_id = $1"
"  UNION ALL"
"  SELECT r.movie_id, r.rating::float8, r.rated_at FROM recsys.recent_ratings r WHERE r.user_id = $1),"
" latest AS (SELECT max(rated_at) AS t FROM rated),"
" seeds AS ("
"  SELECT r.movie_id, r.rating,"
"         (r.rating - $3) * power(0.5, extract(epoch FROM (l.t - r.rated_at))::float8 / ($4 * 86400.0)) AS w"
"    FROM rated r, latest l ORDER BY r.rated_at DESC, r.movie_id LIMIT $2),"
" nb AS ("
"  SELECT n.neighbor_id AS movie_id, sum(s.w * n.similarity) AS score,"
"         (array_agg(s.movie_id ORDER BY s.w * n.similarity DESC, s.movie_id))[1] AS why,"
"         (array_agg(s.rating ORDER BY s.w * n.similarity DESC, s.movie_id))[1] AS why_rating,"
"         max(s.w * n.similarity) AS best"
"    FROM seeds s CROSS JOIN LATERAL (SELECT nn.neighbor_id, nn.similarity FROM recsys.item_neighbors nn"
"                                      WHERE nn.movie_id = s.movie_id) n"
"   GROUP BY n.neighbor_id),"
" fav AS ("
"  SELECT f.genre, f.gscore FROM recsys.user_profiles p,"
"         unnest(p.favorite_genres, p.favorite_scores) AS f(genre, gscore) WHERE p.user_id = $1),"
" gen AS ("
"  SELECT g.movie_id, max(f.gscore * (g.bayes_avg - 2.5)) AS score,"
"         (array_agg(f.genre ORDER BY f.gscore * (g.bayes_avg - 2.5) DESC, f.genre))[1] AS genre"
"    FROM fav f JOIN recsys.genre_top g ON g.genre = f.genre AND g.rank <= " CppAsString2(GENRE_POOL)
"   GROUP BY g.movie_id),"
" top AS (SELECT max(n_ratings) AS n FROM recsys.movie_stats),"
" cand AS ("
"  SELECT movie_id FROM nb UNION SELECT movie_id FROM gen"
"  UNION (SELECT s.movie_id FROM recsys.movie_stats s ORDER BY s.n_ratings DESC, s.movie_id"
"         LIMIT " CppAsString2(POPULAR_POOL) " + coalesce(cardinality($9::bigint[]), 0))"
"  UNION SELECT g.movie_id FROM recsys.genre_top g WHERE g.genre = ANY ($8::text[])),"
" scored AS ("
"  SELECT c.movie_id, coalesce(nb.score, 0) + $5 * coalesce(gen.score, 0)"
"           + $6 * coalesce(ln(1 + ms.n_ratings) / nullif(ln(1 + top.n), 0) * ms.bayes_avg / 5, 0) AS score,"
"         nb.best, nb.why, nb.why_rating, gen.genre, ms.mean_rating, ms.n_ratings"
"    FROM cand c CROSS JOIN top"
"    LEFT JOIN nb ON nb.movie_id = c.movie_id"
"    LEFT JOIN gen ON gen.movie_id = c.movie_id"
"    LEFT JOIN LATERAL (SELECT s.n_ratings, s.bayes_avg, s.mean_rating FROM recsys.movie_stats s"
"                        WHERE s.movie_id = c.movie_id) ms ON true"
"   WHERE NOT EXISTS (SELECT 1 FROM rated r WHERE r.movie_id = c.movie_id)"
"     AND ($9::bigint[] IS NULL OR c.movie_id <> ALL ($9))"
"     AND ($8::text[] IS NULL OR EXISTS (SELECT 1 FROM recsys.movies mm"
"                                        WHERE mm.movie_id = c.movie_id AND mm.genres && $8))"
"   ORDER BY 2 DESC, c.movie_id LIMIT $7)"
" SELECT s.movie_id, m.title, m.genres, s.score, s.best, s.why, s.why_rating, wm.title, wm.year,"
"        s.genre, s.mean_rating, s.n_ratings, m.year"
"   FROM scored s"
"   CROSS JOIN LATERAL (SELECT mv.title, mv.genres, mv.year FROM recsys.movies mv WHERE mv.movie_id = s.movie_id) m"
"   LEFT JOIN LATERAL (SELECT mw.title, mw.year FROM recsys.movies mw WHERE mw.movie_id = s.why) wm ON true"
"  ORDER BY s.score DESC, s.movie_id";

static void prepare_plan(void);
static void emit_rows(ReturnSetInfo *rsinfo, SPITupleTable *tab, uint64 n, int first_rank);
static char *format_reason(HeapTuple tup, TupleDesc desc, double gweight);

/* Prepare the ranking statement once per backend. */
static void
prepare_plan(void)
{
	Oid			types[9] = {INT8OID, INT4OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID,
	INT4OID, TEXTARRAYOID, INT8ARRAYOID};
	SPIPlanPtr	p;

	if (rank_plan)
		return;
	{
		Oid			ftypes[5] = {INT8OID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT4OID};

		fill_plan = SPI_prepare(FILL_SQL, 5, ftypes);
		if (fill_plan == NULL || SPI_keepplan(fill_plan) != 0)
			elog(ERROR, "could not prepare the fill statement");
	}
	{
		Oid			stypes[1] = {INT8OID};
		Oid			mtypes[1] = {INT8ARRAYOID};

		state_plan = SPI_prepare(STATE_SQL, 1, stypes);
		if (state_plan == NULL || SPI_keepplan(state_plan) != 0)
			elog(ERROR, "could not prepare the state statement");
		taste_plan = SPI_prepare(TASTE_SQL, 1, stypes);
		if (taste_plan == NULL || SPI_keepplan(taste_plan) != 0)
			elog(ERROR, "could not prepare the taste statement");
		movies_plan = SPI_prepare(MOVIES_SQL, 1, mtypes);
		if (movies_plan == NULL || SPI_keepplan(movies_plan) != 0)
			elog(ERROR, "could not prepare the movies statement");
	}
	p = SPI_prepare(RANK_SQL, 9, types);
	if (p == NULL)
		elog(ERROR, "could not prepare the ranking statement: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(p) != 0)
		elog(ERROR, "could not keep the ranking statement");
	rank_plan = p;
}

/* The reason of one ranked row, in words. */
static char *
format_reason(HeapTuple tup, TupleDesc desc, double gweight)
{
	bool		isnull;
	bool		best_null,
				genre_null;
	double		best = 0;
	Datum		d;

	d = SPI_getbinval(tup, desc, 5, &best_null);
	if (!best_null)
		best = DatumGetFloat8(d);
	(void) SPI_getbinval(tup, desc, 10, &genre_null);
	if (!best_null && best > 0)
	{
		double		r = DatumGetFloat8(SPI_getbinval(tup, desc, 7, &isnull));
		char	   *title = SPI_getvalue(tup, desc, 8);
		char	   *year = SPI_getvalue(tup, desc, 9);
		char		rbuf[16];

		if (r == floor(r))
			snprintf(rbuf, sizeof(rbuf), "%.0f", r);
		else
			snprintf(rbuf, sizeof(rbuf), "%.1f", r);
		/* the title already ends in its year when the catalogue kept it there */
		if (year && title && strstr(title, year) == NULL)
			return psprintf("Because you rated %s (%s) %s/5", title, year, rbuf);
		return psprintf("Because you rated %s %s/5", title ? title : "a movie", rbuf);
	}
	if (!genre_null && gweight > 0)
		return psprintf("Top rated in %s, one of your favourite genres", SPI_getvalue(tup, desc, 10));
	d = SPI_getbinval(tup, desc, 11, &isnull);
	if (!isnull)
	{
		double		avg = DatumGetFloat8(d);
		int32		n = DatumGetInt32(SPI_getbinval(tup, desc, 12, &isnull));

		return psprintf("Popular and highly rated: %.1f average from %d rating%s", avg, n, n == 1 ? "" : "s");
	}
	return pstrdup("New in the catalogue: nobody has rated it yet");
}

/* Return ranked rows (columns of RANK_SQL) as result rows, ranks from first_rank + 1. */
static void
emit_rows(ReturnSetInfo *rsinfo, SPITupleTable *tab, uint64 n, int first_rank)
{
	uint64		i;

	for (i = 0; i < n; i++)
	{
		HeapTuple	t = tab->vals[i];
		TupleDesc	d = tab->tupdesc;
		Datum		out[7];
		bool		onull[7] = {0};
		bool		isnull;
		MemoryContext old;
		char	   *reason = format_reason(t, d, recsys_recommend_genre_weight);
		char	   *title = SPI_getvalue(t, d, 2);

		old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		out[0] = Int32GetDatum(first_rank + (int32) i + 1);
		out[1] = SPI_getbinval(t, d, 1, &isnull);
		out[2] = CStringGetTextDatum(title ? title : "");
		out[3] = datumCopy(SPI_getbinval(t, d, 3, &isnull), false, -1);
		out[4] = SPI_getbinval(t, d, 4, &isnull);
		out[5] = CStringGetTextDatum(reason);
		out[6] = CStringGetTextDatum("engine");
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, onull);
		MemoryContextSwitchTo(old);
	}
}

/* ---------------------------------------------------------------------------------
 * The LLM's counters (shared memory), shown in recsys.status
 * ---------------------------------------------------------------------------------
 */
typedef struct LlmCounters
{
	pg_atomic_uint64 calls;
	pg_atomic_uint64 ok;
	pg_atomic_uint64 failed[LLM_ERROR + 1];	/* by LLM_* code */
	pg_atomic_uint64 dropped_unknown;
	pg_atomic_uint64 dropped_duplicate;
} LlmCounters;

static LlmCounters *Counters = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
rec_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(LlmCounters)));
}

static void
rec_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	Counters = ShmemInitStruct("recsys llm counters", sizeof(LlmCounters), &found);
	if (!found)
	{
		pg_atomic_init_u64(&Counters->calls, 0);
		pg_atomic_init_u64(&Counters->ok, 0);
		for (i = 0; i <= LLM_ERROR; i++)
			pg_atomic_init_u64(&Counters->failed[i], 0);
		pg_atomic_init_u64(&Counters->dropped_unknown, 0);
		pg_atomic_init_u64(&Counters->dropped_duplicate, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Register the LLM counters' shared memory (when preloaded). */
void
RecommendInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rec_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rec_shmem_startup;
}

/* recsys.llm_status(): the LLM's rows of recsys.status. */
Datum
recsys_llm_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
#define LLM_ROW(metric, value) \
	do { \
		Datum		v_[3]; \
		bool		n_[3] = {0}; \
		v_[0] = CStringGetTextDatum("llm"); \
		v_[1] = CStringGetTextDatum(metric); \
		v_[2] = CStringGetTextDatum(value); \
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v_, n_); \
	} while (0)
	LLM_ROW("configuration", RecsysLlmConfigured() ? "re-ranking cache misses" : "not configured: the engine's ranking alone");
	if (Counters == NULL)
		return (Datum) 0;
	LLM_ROW("calls", psprintf(UINT64_FORMAT, pg_atomic_read_u64(&Counters->calls)));
	LLM_ROW("calls_ok", psprintf(UINT64_FORMAT, pg_atomic_read_u64(&Counters->ok)));
	for (i = 1; i <= LLM_ERROR; i++)
		LLM_ROW(psprintf("failures_%s", LlmStatusName(i)),
				psprintf(UINT64_FORMAT, pg_atomic_read_u64(&Counters->failed[i])));
	LLM_ROW("dropped_unknown_ids", psprintf(UINT64_FORMAT, pg_atomic_read_u64(&Counters->dropped_unknown)));
	LLM_ROW("dropped_duplicate_ids", psprintf(UINT64_FORMAT, pg_atomic_read_u64(&Counters->dropped_duplicate)));
	return (Datum) 0;
}

/* ---------------------------------------------------------------------------------
 * recsys_recommend
 * ---------------------------------------------------------------------------------
 */

/* What the cache and the LLM need to know of the user. */
typedef struct UserState
{
	int64		version;
	int64	   *recent;			/* movies rated since the last aggregate */
	int			nrecent;
	const char **fav;
	int			nfav;
	LlmMovie   *liked;
	int			nliked;
} UserState;

static int
llm_interrupt(void *arg)
{
	return QueryCancelPending || ProcDiePending;
}

/* The elements of a bigint[] (palloc'd; a NULL reads as 0); *n their count. */
static int64 *
int8_values(ArrayType *a, int *n)
{
	Datum	   *e;
	bool	   *nn;
	int64	   *v;
	int			i;

	deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &e, &nn, n);
	v = palloc(sizeof(int64) * Max(*n, 1));
	for (i = 0; i < *n; i++)
		v[i] = DatumGetInt64(e[i]);
	return v;
}

/* Read the user's state: the profile version and the ratings since the last aggregate. */
static void
load_state(int64 user_id, UserState *st)
{
	Datum		v[1];
	HeapTuple	t;
	TupleDesc	d;
	bool		isnull;

	memset(st, 0, sizeof(*st));
	v[0] = Int64GetDatum(user_id);
	if (SPI_execute_plan(state_plan, v, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the state of user %lld", (long long) user_id);
	t = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	st->version = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
	st->recent = int8_values(DatumGetArrayTypeP(SPI_getbinval(t, d, 2, &isnull)), &st->nrecent);
}

/* Read what the LLM is told of the user (only on a miss that asks it). */
static void
load_taste(int64 user_id, UserState *st)
{
	Datum		v[1];
	HeapTuple	t;
	TupleDesc	d;
	bool		isnull;
	Datum	   *e;
	bool	   *en;
	int			ne,
				i;
	Datum	   *years,
			   *gens;
	int			ny,
				ng;

	v[0] = Int64GetDatum(user_id);
	if (SPI_execute_plan(taste_plan, v, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the profile of user %lld", (long long) user_id);
	t = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 1, &isnull)), TEXTOID, -1, false,
					  TYPALIGN_INT, &e, &en, &ne);
	st->fav = palloc(sizeof(char *) * Max(ne, 1));
	for (i = 0; i < ne; i++)
		st->fav[i] = TextDatumGetCString(e[i]);
	st->nfav = ne;
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 2, &isnull)), TEXTOID, -1, false,
					  TYPALIGN_INT, &e, &en, &ne);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 3, &isnull)), INT4OID, 4, true,
					  TYPALIGN_INT, &years, &en, &ny);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 4, &isnull)), TEXTOID, -1, false,
					  TYPALIGN_INT, &gens, &en, &ng);
	st->liked = palloc0(sizeof(LlmMovie) * Max(ne, 1));
	for (i = 0; i < ne && i < ny && i < ng; i++)
	{
		st->liked[i].title = TextDatumGetCString(e[i]);
		st->liked[i].year = DatumGetInt32(years[i]);
		st->liked[i].genres = TextDatumGetCString(gens[i]);
	}
	st->nliked = i;
}

/* A text[] of genres as "Action|Sci-Fi". */
static char *
genres_string(Datum arr)
{
	Datum	   *e;
	bool	   *nn;
	int			n,
				i;
	StringInfoData buf;

	initStringInfo(&buf);
	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT, &e, &nn, &n);
	for (i = 0; i < n; i++)
		if (!nn[i])
			appendStringInfo(&buf, "%s%s", buf.len ? "|" : "", TextDatumGetCString(e[i]));
	return buf.data;
}

/* The ranking statement's parameters $1 .. $7 (the filters $8, $9 are the caller's). */
static void
bind_rank(Datum *values, int64 user_id, int32 limit)
{
	values[0] = Int64GetDatum(user_id);
	values[1] = Int32GetDatum(recsys_recommend_seeds);
	values[2] = Float8GetDatum(recsys_recommend_neutral);
	values[3] = Float8GetDatum(recsys_recommend_half_life > 0 ? recsys_recommend_half_life : 1e9);
	values[4] = Float8GetDatum(recsys_recommend_genre_weight);
	values[5] = Float8GetDatum(recsys_recommend_popularity_weight);
	values[6] = Int32GetDatum(limit);
}

/* Is id among the n ids? */
static bool
id_in(const int64 *ids, int n, int64 id)
{
	int			i;

	for (i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/*
 * The engine's deep list, unfiltered, re-ranked by the LLM when one is configured:
 * its picks first (source 'l', the model's reasons), then the engine's order.
 */
static void
deep_list(int64 user_id, UserState *st, CacheList *out)
{
	Datum		values[9];
	char		nulls[9] = "       nn";
	uint64		i,
				nrows;
	SPITupleTable *tab;
	int			k = 0;

	bind_rank(values, user_id, DEEP_LIST);
	if (SPI_execute_plan(rank_plan, values, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not rank movies for user %lld", (long long) user_id);
	tab = SPI_tuptable;
	nrows = SPI_processed;
	out->version = st->version;
	out->entries = palloc0(sizeof(CacheEntry) * Max(nrows, 1));
	out->n = 0;

	if (RecsysLlmConfigured() && nrows > 0)
	{
		int			ncand = (int) Min(nrows, (uint64) LLM_CANDIDATES);
		LlmMovie   *cand = palloc0(sizeof(LlmMovie) * ncand);
		LlmRequest	req;
		LlmResult	res;
		char		err[512];
		int			rc;
		const char *key = SecretGet("llm_api_key");

		/* (the ranked rows stay valid: SPI frees a result only at SPI_finish) */
		load_taste(user_id, st);

		for (i = 0; i < (uint64) ncand; i++)
		{
			bool		isnull;
			Datum		g = SPI_getbinval(tab->vals[i], tab->tupdesc, 3, &isnull);
			Datum		y = SPI_getbinval(tab->vals[i], tab->tupdesc, 13, &isnull);

			cand[i].movie_id = DatumGetInt64(SPI_getbinval(tab->vals[i], tab->tupdesc, 1, &isnull));
			cand[i].title = SPI_getvalue(tab->vals[i], tab->tupdesc, 2);
			cand[i].year = isnull ? 0 : DatumGetInt32(y);
			cand[i].genres = genres_string(g);
			cand[i].score = DatumGetFloat8(SPI_getbinval(tab->vals[i], tab->tupdesc, 4, &isnull));
		}
		memset(&req, 0, sizeof(req));
		req.endpoint = recsys_llm_endpoint;
		req.model = recsys_llm_model;
		req.api_key = key;
		req.timeout_ms = recsys_llm_timeout_ms;
		req.favorite_genres = st->fav;
		req.nfavorite = st->nfav;
		req.liked = st->liked;
		req.nliked = st->nliked;
		req.candidates = cand;
		req.ncandidates = ncand;
		req.n_wanted = Min(ncand, LLM_PICKS);
		req.interrupt = llm_interrupt;
		memset(&res, 0, sizeof(res));
		res.picks = palloc0(sizeof(LlmPick) * req.n_wanted);
		rc = LlmRerank(&req, &res, err, sizeof(err));
		if (Counters)
		{
			pg_atomic_fetch_add_u64(&Counters->calls, 1);
			pg_atomic_fetch_add_u64(&Counters->dropped_unknown, res.dropped_unknown);
			pg_atomic_fetch_add_u64(&Counters->dropped_duplicate, res.dropped_duplicate);
			if (rc == LLM_OK)
				pg_atomic_fetch_add_u64(&Counters->ok, 1);
			else if (rc >= 1 && rc <= LLM_ERROR)
				pg_atomic_fetch_add_u64(&Counters->failed[rc], 1);
		}
		if (rc == LLM_INTERRUPTED)
			CHECK_FOR_INTERRUPTS();
		if (rc == LLM_OK)
		{
			for (k = 0; k < res.npicks; k++)
			{
				CacheEntry *e = &out->entries[out->n++];

				e->movie_id = res.picks[k].movie_id;
				for (i = 0; i < (uint64) ncand; i++)
					if (cand[i].movie_id == e->movie_id)
						e->score = cand[i].score;
				e->source = 'l';
				e->reason = pstrdup(res.picks[k].reason[0] ? res.picks[k].reason
									: "Picked for you by the language model");
			}
		}
		else
			ereport(DEBUG1,
					(errmsg("recsys: the LLM re-ranking failed (%s: %s); the engine's ranking is used",
							LlmStatusName(rc), err)));
	}
	for (i = 0; i < nrows; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tab->vals[i], tab->tupdesc, 1, &isnull));
		int			j;
		bool		picked = false;

		for (j = 0; j < k; j++)
			if (out->entries[j].movie_id == id)
				picked = true;
		if (picked)
			continue;
		out->entries[out->n].movie_id = id;
		out->entries[out->n].score = DatumGetFloat8(SPI_getbinval(tab->vals[i], tab->tupdesc, 4, &isnull));
		out->entries[out->n].source = 'e';
		out->entries[out->n].reason = format_reason(tab->vals[i], tab->tupdesc, recsys_recommend_genre_weight);
		out->n++;
	}
}

/*
 * Return n rows of the list, applying the filters and the recent ratings; false (and
 * nothing returned) when fewer than n qualify.
 */
static bool
serve_list(ReturnSetInfo *rsinfo, const CacheList *cl, int n, ArrayType *genres,
		   ArrayType *exclude, const UserState *st, bool from_cache)
{
	Datum	   *ids;
	Datum		v[1];
	uint64		r;
	int			i,
				got = 0;
	int		   *pick;
	HeapTuple  *rowof;
	Datum	   *fgen = NULL;
	int			nfgen = 0;
	int64	   *excl = NULL;
	int			nexcl = 0;
	int			want;

	if (cl->n == 0)
		return false;
	if (genres)
	{
		bool	   *nn;

		deconstruct_array(genres, TEXTOID, -1, false, TYPALIGN_INT, &fgen, &nn, &nfgen);
	}
	if (exclude)
		excl = int8_values(exclude, &nexcl);
	/* without a genre filter only the first n + (movies to skip) entries can count */
	want = genres ? cl->n : Min(cl->n, n + st->nrecent + nexcl);
	ids = palloc(sizeof(Datum) * want);
	for (i = 0; i < want; i++)
		ids[i] = Int64GetDatum(cl->entries[i].movie_id);
	v[0] = PointerGetDatum(construct_array(ids, want, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (SPI_execute_plan(movies_plan, v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the movies of a list");
	rowof = palloc0(sizeof(HeapTuple) * cl->n);
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));

		for (i = 0; i < want; i++)
			if (cl->entries[i].movie_id == id)
				rowof[i] = SPI_tuptable->vals[r];
	}
	pick = palloc(sizeof(int) * n);
	for (i = 0; i < want && got < n; i++)
	{
		const CacheEntry *e = &cl->entries[i];

		if (rowof[i] == NULL || id_in(st->recent, st->nrecent, e->movie_id) ||
			(excl && id_in(excl, nexcl, e->movie_id)))
			continue;
		if (genres)
		{
			bool		isnull;
			Datum	   *mg;
			bool	   *nn;
			int			nmg,
						a,
						b;
			bool		match = false;

			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(rowof[i], SPI_tuptable->tupdesc, 3, &isnull)),
							  TEXTOID, -1, false, TYPALIGN_INT, &mg, &nn, &nmg);
			for (a = 0; a < nmg && !match; a++)
				for (b = 0; b < nfgen && !match; b++)
					match = DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID,
																 mg[a], fgen[b]));
			if (!match)
				continue;
		}
		pick[got++] = i;
	}
	if (got < n)
		return false;
	for (i = 0; i < got; i++)
	{
		const CacheEntry *e = &cl->entries[pick[i]];
		HeapTuple	t = rowof[pick[i]];
		Datum		out[7];
		bool		onull[7] = {0};
		bool		isnull;
		MemoryContext old;
		char	   *title = SPI_getvalue(t, SPI_tuptable->tupdesc, 2);

		old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		out[0] = Int32GetDatum(i + 1);
		out[1] = Int64GetDatum(e->movie_id);
		out[2] = CStringGetTextDatum(title ? title : "");
		out[3] = datumCopy(SPI_getbinval(t, SPI_tuptable->tupdesc, 3, &isnull), false, -1);
		out[4] = Float8GetDatum(e->score);
		out[5] = CStringGetTextDatum(e->reason ? e->reason : "");
		out[6] = CStringGetTextDatum(from_cache ? "cache" : (e->source == 'l' ? "llm" : "engine"));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, onull);
		MemoryContextSwitchTo(old);
	}
	return true;
}

/* recsys.forget_cache(user_id): drop the user's cached list when the transaction commits. */
Datum
recsys_forget_cache(PG_FUNCTION_ARGS)
{
	int64		user_id = PG_GETARG_INT64(0);

	if (CacheEnabled())
		CacheInvalidateAfterCommit(&user_id, 1);
	PG_RETURN_VOID();
}

/* recsys_recommend(user_id, n, genres, exclude) */
Datum
recsys_recommend(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		user_id;
	int32		n;
	Datum		values[9];
	char		nulls[9] = "         ";
	uint64		i,
				got;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_id must not be null")));
	user_id = PG_GETARG_INT64(0);
	n = PG_ARGISNULL(1) ? 5 : PG_GETARG_INT32(1);
	if (n < 1 || n > 100)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("n must be between 1 and 100, not %d", n)));

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	prepare_plan();

	/*
	 * With a cache or an LLM: the user's deep list (from the cache when its version is
	 * the profile's, else ranked, re-ranked and stored), cut to n after the filters;
	 * when the filters leave fewer than n of it, the engine ranks with them.
	 */
	if (CacheEnabled() || RecsysLlmConfigured())
	{
		UserState	st;
		CacheList	cl;
		bool		hit = false;
		ArrayType  *genres = PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2);
		ArrayType  *exclude = PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3);

		load_state(user_id, &st);
		if (CacheEnabled())
			hit = CacheGet(user_id, st.version, &cl);
		if (hit && serve_list(rsinfo, &cl, n, genres, exclude, &st, true))
		{
			SPI_finish();
			return (Datum) 0;
		}
		if (!hit)
		{
			deep_list(user_id, &st, &cl);
			if (CacheEnabled())
				CachePut(user_id, &cl);
			if (serve_list(rsinfo, &cl, n, genres, exclude, &st, false))
			{
				SPI_finish();
				return (Datum) 0;
			}
		}
	}

	bind_rank(values, user_id, n);
	if (PG_ARGISNULL(2))
		nulls[7] = 'n';
	else
		values[7] = PG_GETARG_DATUM(2);
	if (PG_ARGISNULL(3))
		nulls[8] = 'n';
	else
		values[8] = PG_GETARG_DATUM(3);
	if (SPI_execute_plan(rank_plan, values, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not rank movies for user %lld", (long long) user_id);

	emit_rows(rsinfo, SPI_tuptable, SPI_processed, 0);
	got = SPI_processed;
	if (got < (uint64) n)
	{
		Datum		fv[5];
		char		fn[5] = "     ";
		Datum	   *listed = palloc(sizeof(Datum) * Max(got, 1));
		SPITupleTable *ranked = SPI_tuptable;

		for (i = 0; i < got; i++)
		{
			bool		isnull;

			listed[i] = SPI_getbinval(ranked->vals[i], ranked->tupdesc, 1, &isnull);
		}
		fv[0] = values[0];
		fv[1] = values[7];
		fn[1] = nulls[7];
		fv[2] = values[8];
		fn[2] = nulls[8];
		fv[3] = PointerGetDatum(construct_array(listed, (int) got, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		fv[4] = Int32GetDatum(n - (int32) got);
		if (SPI_execute_plan(fill_plan, fv, fn, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not complete the list for user %lld", (long long) user_id);
		emit_rows(rsinfo, SPI_tuptable, SPI_processed, (int) got);
	}
	SPI_finish();
	return (Datum) 0;
}
