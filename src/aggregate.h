/*
 * aggregate.h: recsys_aggregate(), the stage that turns archived events into
 * recsys.ratings, user profiles, movie statistics and item neighbours.
 *
 * Modules of the stage (each with its own design note):
 *   aggregate.c         the SQL functions, the "recsys aggregate" worker, the run's
 *                       transaction, its history row and its progress in shared memory
 *   aggregate_read.c    which objects are new (the watermark), fetching and parsing them
 *   aggregate_ratings.c dropping duplicates, latest wins, merging with the stored
 *                       ratings and writing them (ratings_merge.c holds the kernels)
 *   profiles.c          user profiles and movie statistics, updated from the changes
 *   neighbors.c         item neighbours (neighbors_kernel.c computes them)
 *   schedule.c          recsys_schedule() / recsys_unschedule() with pg_cron
 */
#ifndef RECSYS_AGGREGATE_H
#define RECSYS_AGGREGATE_H

#include "postgres.h"

#include "archive_store.h"
#include "ratings_merge.h"

/* Constants of the derived tables' formulas (documented in README.md). */
#define AGG_TOP_MOVIES			10	/* user_profiles.top_movies */
#define AGG_FAVORITE_GENRES		3	/* user_profiles.favorite_genres, at most */
#define AGG_GENRE_SHRINK		5.0 /* genre score: deviation sum / (n + this) */
#define AGG_BAYES_PRIOR			10.0	/* movie_stats.bayes_avg: weight of the global mean */
#define AGG_GENRE_TOP			100 /* recsys.genre_top: movies kept per genre */

/* One archived object to read. */
typedef struct AggObject
{
	char	   *key;
	char	   *topic;
	int32		partition;
	int64		first_offset;
	int64		bytes;			/* manifest (or listing) size */
	int64		events;			/* manifest count, -1 unknown */
	int32		stream;
	bool		local;			/* written to the local directory (manifest storage) */
	bool		quarantined;
	char	   *error;
	int64		events_read;
} AggObject;

/* A (user, movie) whose stored rating changes in this run. */
typedef struct AggChange
{
	int64		user_id;
	int64		movie_id;
	int16		old_halves;		/* 0: no rating before */
	int16		new_halves;
	int64		old_ts;
	int64		new_ts;
} AggChange;

/* The state of one run, in the worker. */
typedef struct AggRun
{
	int64		run_id;
	bool		rebuild;
	bool		first_load;		/* recsys.ratings was empty: nothing to merge with */
	MemoryContext cxt;
	ArchiveStore *store;		/* the configured store */
	ArchiveStore *local;		/* the local directory, for objects written there */

	/* objects */
	AggObject  *objects;
	int			nobjects;
	int64		objects_read;
	int64		quarantined;

	/* events (huge allocation) */
	AggEvent   *ev;
	int64		nev;
	int64		evcap;
	int64		duplicates;
	int64		forgotten;		/* events dropped by a tombstone (recsys_forget) */

	/* tombstones read in this run: (user, ts) pairs */
	int64	   *tomb_user;
	int64	   *tomb_ts;
	int			ntomb;
	int			tombcap;

	/* the reduction of the run's events (malloc'd by ratings_merge.c) */
	AggRating  *r;
	int64		nr;
	AggTie	   *ties;
	int64		nties;

	/* what changes in recsys.ratings, sorted by user then movie */
	AggChange  *changes;
	int64		nchanges;

	/* results */
	int64		users;
	int64		movies;
	bool		neighbors_refreshed;
	int64		ratings_total;	/* rows of recsys.ratings after the run */

	/* the largest ids read, so the sequences never hand them out again */
	int64		max_rt_event_id;	/* real-time (recsys_rate, inbox, forget), 0 none */
	int64		max_job_id;		/* ingest job (event id / 10^10), 0 none */
} AggRun;

/*
 * Ids to slots: ids[] sorted and unique (slot = rank), with a dense table when the
 * largest id is below AGG_DENSE_MAX_ID, else a binary search.
 */
#define AGG_DENSE_MAX_ID	(16 * 1024 * 1024)

typedef struct AggIdMap
{
	int64	   *ids;			/* sorted, unique */
	int64		n;
	int32	   *dense;			/* ids[k] = id => dense[id] = k, -1 absent */
	int64		dense_n;
} AggIdMap;

/* Build the map from n ids (sorted and deduplicated in place; the array is kept). */
extern void AggIdMapBuild(AggIdMap *m, int64 *ids, int64 n);

/* The slot of id, or -1. */
extern int64 AggIdMapFind(const AggIdMap *m, int64 id);

/* Register the shared memory of the progress view (when preloaded). */
extern void AggregateInit(void);

/* Entry point of the "recsys aggregate" worker. */
extern PGDLLEXPORT void AggregateWorkerMain(Datum main_arg);

/* Progress, shown in recsys.aggregate_progress. */
extern void AggProgressPhase(const char *phase);
extern void AggProgressTotals(int64 objects, int64 events);
extern void AggProgressDone(int64 objects, int64 events);

/* A named pause for the crash and cancel tests (see aggregate.c). */
extern void AggFaultPoint(const char *point);

/* Polled by the kernels: nonzero when a cancel or termination is pending. */
extern int	AggInterrupt(void *arg);

/* Raise the error a kernel's return code stands for (interrupt, out of memory). */
extern void AggKernelCheck(int rc, const char *what);

/* aggregate_read.c: choose the objects (watermark or store listing) and read them. */
extern void AggListObjects(AggRun *run);
extern void AggReadObjects(AggRun *run);
extern void AggRecordObjects(AggRun *run);

/* aggregate_ratings.c: reduce the events, merge with recsys.ratings, write it. */
extern void AggMergeRatings(AggRun *run);

/* profiles.c: user profiles and movie statistics from run->changes. */
extern void AggUpdateProfiles(AggRun *run);
extern void AggUpdateMovieStats(AggRun *run);

/* neighbors.c: recompute item_neighbors when the refresh policy says so. */
extern void AggUpdateNeighbors(AggRun *run);

#endif							/* RECSYS_AGGREGATE_H */
