/*
 * rank.h: the engine's ranking of recsys_recommend (rank.c), in C over a few index reads.
 *
 * The formula is in the header of recommend.c and in README.md ("Recommendations").
 * RankMovies() returns the best movies of one user, most recommended first, with what
 * their reasons need; RankMovieInfo() the catalogue rows of a list.
 */
#ifndef RECSYS_RANK_H
#define RECSYS_RANK_H

#include "executor/spi.h"
#include "utils/array.h"

/* One ranked movie: its score and what its reason is made of. */
typedef struct RankedMovie
{
	int64		movie_id;
	double		score;
	bool		has_best;		/* it is a neighbour of a seed */
	double		best;			/* the largest contribution of one seed */
	int64		why;			/* that seed */
	double		why_rating;		/* and the user's rating of it */
	const char *genre;			/* the favourite genre it is top rated in, or NULL */
	bool		has_stats;		/* someone rated it */
	double		mean_rating;
	int32		n_ratings;
	const char *title;			/* from recsys.movies */
	Datum		genres;			/* text[] */
	int32		year;			/* 0: unknown */
	const char *why_title;		/* the seed's title and year, NULL when none */
	int32		why_year;
} RankedMovie;

/* A movie of the catalogue (RankMovieInfo). */
typedef struct MovieInfo
{
	int64		movie_id;
	bool		found;
	const char *title;
	Datum		genres;			/* text[] */
	int32		year;
} MovieInfo;

/* Begin a call of recsys_recommend (inside SPI): fix the data the functions below read. */
extern void RankBeginCall(void);

/*
 * Rank up to limit movies for the user, filters applied (genres: any of them; exclude:
 * movie ids), rated movies left out; with fill, movies no one has rated come last, in
 * id order, when the ranked ones run short. Returns the count; *out is palloc'd. Call
 * inside SPI.
 */
extern int	RankMovies(int64 user_id, int limit, ArrayType *genres, ArrayType *exclude,
					   bool fill, RankedMovie **out);

/* The non-null elements of a genres filter (text[]) as C strings; *n their count. */
extern char **RankGenresWanted(ArrayType *genres, int *n);

/* Does a text[] of genres hold one of the wanted? */
extern bool RankGenresMatch(Datum genres, char **want, int nwant);

/* Prepare a statement for the life of the backend, with a generic plan. */
extern SPIPlanPtr RankKeepPlan(const char *sql, int nargs, Oid *types);

/* The version of the user's profile (0: none) and the movies rated since the last aggregate. */
extern void RankUserState(int64 user_id, int64 *version, int64 **recent, int *nrecent);

/* Fill info[i] for ids[i] (found = false when the catalogue has no such movie). */
extern void RankMovieInfo(const int64 *ids, int n, MovieInfo *info);

/* The statistics the ranking reads changed: backends reload them after this commit. */
extern void RankDataChangedAfterCommit(void);

/* Request the shared generation counter (when preloaded); register the callback. */
extern void RankInit(void);

#endif							/* RECSYS_RANK_H */
