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

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"

#include "recommend.h"

int			recsys_recommend_seeds = 50;
double		recsys_recommend_neutral = 2.5;
double		recsys_recommend_half_life = 365.0;
double		recsys_recommend_genre_weight = 0.2;
double		recsys_recommend_popularity_weight = 0.5;

#define DEEP_LIST		100		/* the engine's list, cut to n after filtering */
#define POPULAR_POOL	200		/* popular candidates */
#define GENRE_POOL		50		/* candidates per favourite genre */

PG_FUNCTION_INFO_V1(recsys_recommend);

static SPIPlanPtr rank_plan = NULL;
static SPIPlanPtr fill_plan = NULL;

/*
 * When the ranked candidates run short (a small catalogue, narrow filters): movies no
 * one has rated yet, in id order.  $1 user, $2 genres, $3 exclude, $4 already listed,
 * $5 how many.  Same columns as RANK_SQL.
 */
static const char *const FILL_SQL =
"SELECT m.movie_id, m.title, m.genres, 0::float8, NULL::float8, NULL::bigint, NULL::float8,"
"       NULL::text, NULL::int, NULL::text, NULL::float8, NULL::int"
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
"        s.genre, s.mean_rating, s.n_ratings"
"   FROM scored s"
"   CROSS JOIN LATERAL (SELECT mv.title, mv.genres FROM recsys.movies mv WHERE mv.movie_id = s.movie_id) m"
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
	values[0] = Int64GetDatum(user_id);
	values[1] = Int32GetDatum(recsys_recommend_seeds);
	values[2] = Float8GetDatum(recsys_recommend_neutral);
	values[3] = Float8GetDatum(recsys_recommend_half_life > 0 ? recsys_recommend_half_life : 1e9);
	values[4] = Float8GetDatum(recsys_recommend_genre_weight);
	values[5] = Float8GetDatum(recsys_recommend_popularity_weight);
	values[6] = Int32GetDatum(n);
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
