/*
 * recommend.c: recsys_recommend(user_id, n, genres, exclude), n movies with a reason.
 *
 * Ranking (the engine, rank.c: a few index reads and the shared movie statistics
 * each backend keeps in memory):
 *   seeds    the user's ratings (the latest of each movie), recsys.ratings and the not yet aggregated
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
#include "rank.h"
#include "recommend.h"

int			recsys_recommend_seeds = 20;
double		recsys_recommend_neutral = 3.0;
double		recsys_recommend_half_life = 365.0;
double		recsys_recommend_genre_weight = 0.2;
double		recsys_recommend_popularity_weight = 0.6;

#define DEEP_LIST		100		/* the engine's list, cut to n after filtering */
#define LLM_CANDIDATES	20		/* the engine's best, sent to the LLM */
#define LLM_PICKS		10		/* picks asked of it */

PG_FUNCTION_INFO_V1(recsys_recommend);
PG_FUNCTION_INFO_V1(recsys_llm_status);
PG_FUNCTION_INFO_V1(recsys_forget_cache);

static SPIPlanPtr taste_plan = NULL;

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

static void prepare_plan(void);
static void emit_rows(ReturnSetInfo *rsinfo, const RankedMovie *rows, int n);
static char *format_reason(const RankedMovie *r, double gweight);

/* Prepare the user's statements once per backend. */
static void
prepare_plan(void)
{
	Oid			stypes[1] = {INT8OID};

	if (taste_plan)
		return;
	taste_plan = RankKeepPlan(TASTE_SQL, 1, stypes);
}

/* The reason of one ranked row, in words. */
static char *
format_reason(const RankedMovie *r, double gweight)
{
	if (r->has_best && r->best > 0)
	{
		char		rbuf[16];
		char		ybuf[16];

		if (r->why_rating == floor(r->why_rating))
			snprintf(rbuf, sizeof(rbuf), "%.0f", r->why_rating);
		else
			snprintf(rbuf, sizeof(rbuf), "%.1f", r->why_rating);
		if (r->why_title == NULL)
			return psprintf("Because you rated a movie %s/5", rbuf);
		snprintf(ybuf, sizeof(ybuf), "%d", r->why_year);
		/* the title already ends in its year when the catalogue kept it there */
		if (r->why_year != 0 && strstr(r->why_title, ybuf) == NULL)
			return psprintf("Because you rated %s (%s) %s/5", r->why_title, ybuf, rbuf);
		return psprintf("Because you rated %s %s/5", r->why_title, rbuf);
	}
	if (r->genre != NULL && gweight > 0)
		return psprintf("Top rated in %s, one of your favourite genres", r->genre);
	if (r->has_stats)
		return psprintf("Popular and highly rated: %.1f average from %d rating%s",
						r->mean_rating, r->n_ratings, r->n_ratings == 1 ? "" : "s");
	return pstrdup("New in the catalogue: nobody has rated it yet");
}

/* Return ranked rows as result rows, ranks from 1. */
static void
emit_rows(ReturnSetInfo *rsinfo, const RankedMovie *rows, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		const RankedMovie *r = &rows[i];
		Datum		out[7];
		bool		onull[7] = {0};
		MemoryContext old;
		char	   *reason = format_reason(r, recsys_recommend_genre_weight);

		old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		out[0] = Int32GetDatum(i + 1);
		out[1] = Int64GetDatum(r->movie_id);
		out[2] = CStringGetTextDatum(r->title);
		out[3] = datumCopy(r->genres, false, -1);
		out[4] = Float8GetDatum(r->score);
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
	memset(st, 0, sizeof(*st));
	RankUserState(user_id, &st->version, &st->recent, &st->nrecent);
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
	RankedMovie *rows;
	int			nrows,
				i;
	int			k = 0;

	nrows = RankMovies(user_id, DEEP_LIST, NULL, NULL, false, &rows);
	out->version = st->version;
	out->entries = palloc0(sizeof(CacheEntry) * Max(nrows, 1));
	out->n = 0;

	if (RecsysLlmConfigured() && nrows > 0)
	{
		int			ncand = Min(nrows, LLM_CANDIDATES);
		LlmMovie   *cand = palloc0(sizeof(LlmMovie) * ncand);
		LlmRequest	req;
		LlmResult	res;
		char		err[512];
		int			rc;
		const char *key = SecretGet("llm_api_key");

		/* (the ranked rows stay valid: SPI frees a result only at SPI_finish) */
		load_taste(user_id, st);

		for (i = 0; i < ncand; i++)
		{
			cand[i].movie_id = rows[i].movie_id;
			cand[i].title = rows[i].title;
			cand[i].year = rows[i].year;
			cand[i].genres = genres_string(rows[i].genres);
			cand[i].score = rows[i].score;
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
				for (i = 0; i < ncand; i++)
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
		int64		id = rows[i].movie_id;
		int			j;
		bool		picked = false;

		for (j = 0; j < k; j++)
			if (out->entries[j].movie_id == id)
				picked = true;
		if (picked)
			continue;
		out->entries[out->n].movie_id = id;
		out->entries[out->n].score = rows[i].score;
		out->entries[out->n].source = 'e';
		out->entries[out->n].reason = format_reason(&rows[i], recsys_recommend_genre_weight);
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
	int64	   *ids;
	MovieInfo  *info;
	int			i,
				got = 0;
	int		   *pick;
	char	  **fgen = NULL;
	int			nfgen = 0;
	int64	   *excl = NULL;
	int			nexcl = 0;
	int			want;

	if (cl->n == 0)
		return false;
	if (genres)
		fgen = RankGenresWanted(genres, &nfgen);
	if (exclude)
		excl = int8_values(exclude, &nexcl);
	/* without a genre filter only the first n + (movies to skip) entries can count */
	want = genres ? cl->n : Min(cl->n, n + st->nrecent + nexcl);
	ids = palloc(sizeof(int64) * want);
	info = palloc(sizeof(MovieInfo) * want);
	for (i = 0; i < want; i++)
		ids[i] = cl->entries[i].movie_id;
	RankMovieInfo(ids, want, info);
	pick = palloc(sizeof(int) * n);
	for (i = 0; i < want && got < n; i++)
	{
		const CacheEntry *e = &cl->entries[i];

		if (!info[i].found || id_in(st->recent, st->nrecent, e->movie_id) ||
			(excl && id_in(excl, nexcl, e->movie_id)))
			continue;
		if (genres && !RankGenresMatch(info[i].genres, fgen, nfgen))
			continue;
		pick[got++] = i;
	}
	if (got < n)
		return false;
	for (i = 0; i < got; i++)
	{
		const CacheEntry *e = &cl->entries[pick[i]];
		const MovieInfo *m = &info[pick[i]];
		Datum		out[7];
		bool		onull[7] = {0};
		MemoryContext old;

		old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		out[0] = Int32GetDatum(i + 1);
		out[1] = Int64GetDatum(e->movie_id);
		out[2] = CStringGetTextDatum(m->title);
		out[3] = datumCopy(m->genres, false, -1);
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
	/* recsys_forget changed the movie statistics too */
	RankDataChangedAfterCommit();
	PG_RETURN_VOID();
}

/* recsys_recommend(user_id, n, genres, exclude) */
Datum
recsys_recommend(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		user_id;
	int32		n;

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
	RankBeginCall();

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

	{
		RankedMovie *rows;
		int			got = RankMovies(user_id, n,
									 PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2),
									 PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3), true, &rows);

		emit_rows(rsinfo, rows, got);
	}
	SPI_finish();
	return (Datum) 0;
}
