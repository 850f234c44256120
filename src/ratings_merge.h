/*
 * ratings_merge.h: the aggregate's reduction of rating events to one rating per user
 * and movie (plain C, no PostgreSQL header, tested on its own in test/unit/).
 *
 * The rule (DESIGN.md): duplicate event ids are dropped first (the first occurrence,
 * the lowest (stream, position), is kept); then a user's latest rating of a movie
 * wins: the latest ts; among the events of that ts, if they all sit in one log
 * partition (stream), the one at the later position, else the one with the higher
 * event id.  The winner of a set is a function of the set alone, whatever order it
 * was read in, so an incremental run (which adds new events to the stored winner and
 * its ties) and a rebuild (which sees every event at once) agree exactly.
 */
#ifndef RECSYS_RATINGS_MERGE_H
#define RECSYS_RATINGS_MERGE_H

#include <stddef.h>
#include <stdint.h>

/* One event read from the archive. */
typedef struct AggEvent
{
	int64_t		event_id;
	int64_t		user_id;
	int64_t		movie_id;
	int64_t		ts;				/* epoch seconds */
	int64_t		pos;			/* object's first offset + line: orders a stream */
	int32_t		stream;			/* the (topic, partition) it came from */
	int16_t		halves;			/* rating * 2: 1 .. 10 */
	int16_t		dup;			/* set by MergeMarkDuplicates */
} AggEvent;

/* A candidate for the winner of one (user, movie): an event at the latest ts. */
typedef struct AggTie
{
	int64_t		event_id;
	int64_t		pos;
	int32_t		stream;
	int32_t		halves;
} AggTie;

/* The reduction of one (user, movie)'s events. */
typedef struct AggRating
{
	int64_t		user_id;
	int64_t		movie_id;
	int64_t		ts;				/* the latest ts */
	int64_t		first_tie;		/* index of its candidates in the AggTie array */
	int32_t		ntie;			/* candidates at ts (>= 1), the winner among them */
	int32_t		winner;			/* index of the winner within its candidates */
} AggRating;

/* Return nonzero to stop a long computation (a pending cancel). */
typedef int (*MergeInterruptFn) (void *arg);

#define MERGE_OK			0
#define MERGE_NOMEM			(-1)
#define MERGE_INTERRUPTED	1

/* Index of the winner among n candidates of one ts (n >= 1). */
extern int	MergePickWinner(const AggTie *c, int n);

/*
 * Set ev[i].dup for every event whose event id occurred earlier (a lower (stream,
 * pos)); *ndup = how many.  MERGE_OK, MERGE_NOMEM or MERGE_INTERRUPTED.
 */
extern int	MergeMarkDuplicates(AggEvent *ev, int64_t n, int64_t *ndup,
								MergeInterruptFn interrupt, void *arg);

/*
 * Reduce the events not marked dup to one AggRating per (user, movie), sorted by
 * user then movie; *out and *ties are malloc'd (free them with free()), *nout and
 * *nties their lengths.
 */
extern int	MergeReduce(const AggEvent *ev, int64_t n, AggRating **out, int64_t *nout,
						AggTie **ties, int64_t *nties, MergeInterruptFn interrupt, void *arg);

/*
 * Sort n (key, value) pairs by key with a stable LSD radix sort (16-bit digits, the
 * digits all keys share skipped); tmp is scratch space for n pairs.  Exposed for the
 * other kernels of the aggregate.
 */
typedef struct MergePair
{
	uint64_t	key;
	uint64_t	val;
} MergePair;

extern int	MergeRadixSort(MergePair *a, MergePair *tmp, int64_t n,
						   MergeInterruptFn interrupt, void *arg);

#endif							/* RECSYS_RATINGS_MERGE_H */
