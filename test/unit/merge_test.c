/*
 * merge_test.c: unit test of ratings_merge.c (duplicates, latest wins, ties, the radix
 * sort), run under valgrind by test/t/010-unit.t.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratings_merge.h"
#include "tap.h"

static int	stop_now = 0;

static int
interrupt_cb(void *arg)
{
	return stop_now;
}

static AggEvent
ev(int64_t id, int64_t u, int64_t m, int halves, int64_t ts, int32_t stream, int64_t pos)
{
	AggEvent	e;

	memset(&e, 0, sizeof(e));
	e.event_id = id;
	e.user_id = u;
	e.movie_id = m;
	e.halves = (int16_t) halves;
	e.ts = ts;
	e.stream = stream;
	e.pos = pos;
	return e;
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* The winner of a set by brute force: the rule of ratings_merge.h, stated directly. */
static int
brute_winner(const AggTie *c, int n)
{
	int			i,
				j,
				same = 1;

	for (i = 1; i < n; i++)
		if (c[i].stream != c[0].stream)
			same = 0;
	for (i = 0; i < n; i++)
	{
		int			beats_all = 1;

		for (j = 0; j < n; j++)
		{
			if (i == j)
				continue;
			if (same ? !(c[i].pos > c[j].pos || (c[i].pos == c[j].pos && c[i].event_id >= c[j].event_id))
				: !(c[i].event_id > c[j].event_id ||
					(c[i].event_id == c[j].event_id && (c[i].stream > c[j].stream ||
														(c[i].stream == c[j].stream && c[i].pos >= c[j].pos)))))
				beats_all = 0;
		}
		if (beats_all)
			return i;
	}
	return -1;
}

int
main(void)
{
	AggEvent	e[12];
	int64_t		ndup;
	AggRating  *r;
	AggTie	   *t;
	int64_t		nr,
				nt;
	int			rc,
				i;

	/* the fixture of test/t/300-aggregate.t, run 1 (stream 1, positions 0..11) */
	e[0] = ev(1, 1, 1, 8, 1000, 1, 0);
	e[1] = ev(2, 1, 1, 4, 2000, 1, 1);
	e[2] = ev(3, 1, 3, 10, 1500, 1, 2);
	e[3] = ev(4, 2, 1, 6, 1000, 1, 3);
	e[4] = ev(5, 2, 3, 8, 1000, 1, 4);
	e[5] = ev(6, 2, 3, 2, 1000, 1, 5);
	e[6] = ev(7, 3, 1, 10, 1000, 1, 6);
	e[7] = ev(8, 3, 3, 9, 1100, 1, 7);
	e[8] = ev(9, 3, 11, 6, 1200, 1, 8);
	e[9] = ev(4, 2, 1, 6, 1000, 1, 9);
	e[10] = ev(10, 4, 2, 8, 100, 1, 10);
	e[11] = ev(10, 4, 2, 2, 200, 1, 11);
	rc = MergeMarkDuplicates(e, 12, &ndup, interrupt_cb, NULL);
	ok(rc == MERGE_OK && ndup == 2, "two duplicate event ids");
	ok(e[9].dup && e[11].dup && !e[3].dup && !e[10].dup, "the later occurrences are the duplicates");
	rc = MergeReduce(e, 12, &r, &nr, &t, &nt, interrupt_cb, NULL);
	ok(rc == MERGE_OK && nr == 8, "eight (user, movie) pairs");
	ok(r[0].user_id == 1 && r[0].movie_id == 1 && r[0].ts == 2000 && r[0].ntie == 1 &&
	   t[r[0].first_tie + r[0].winner].halves == 4, "user 1 movie 1: the latest ts wins");
	ok(r[3].user_id == 2 && r[3].movie_id == 3 && r[3].ntie == 2 &&
	   t[r[3].first_tie + r[3].winner].event_id == 6, "user 2 movie 3: a tie goes to the later position");
	ok(r[7].user_id == 4 && t[r[7].first_tie + r[7].winner].halves == 8 && r[7].ts == 100,
	   "user 4 movie 2: the duplicate's later ts does not count");
	for (i = 1; i < nr; i++)
		if (r[i - 1].user_id > r[i].user_id ||
			(r[i - 1].user_id == r[i].user_id && r[i - 1].movie_id >= r[i].movie_id))
			break;
	ok(i == nr, "sorted by user, then movie");
	free(r);
	free(t);

	/* ties across partitions go to the higher event id */
	{
		AggTie		c[3] = {{5, 100, 1, 2}, {9, 1, 2, 4}, {7, 500, 1, 6}};

		ok(MergePickWinner(c, 3) == 1, "different partitions: the higher event id wins");
		c[1].stream = 1;
		ok(MergePickWinner(c, 3) == 2, "one partition: the later position wins");
	}

	/* the winner of random sets equals the brute-force rule, whatever their order */
	{
		int			trial,
					bad = 0;

		for (trial = 0; trial < 2000; trial++)
		{
			AggTie		c[6];
			int			n = 1 + (int) (next_rand() % 6);
			int			w,
						k;

			for (k = 0; k < n; k++)
			{
				c[k].event_id = 1 + (int64_t) (next_rand() % 50) + k * 100;
				c[k].stream = (int32_t) (next_rand() % 2);
				c[k].pos = (int64_t) (next_rand() % 1000) * 10 + k;
				c[k].halves = 1 + (int32_t) (next_rand() % 10);
			}
			w = MergePickWinner(c, n);
			if (w != brute_winner(c, n))
				bad++;
		}
		ok(bad == 0, "the winner is the brute-force rule's on 2000 random sets");
	}

	/* radix sort: stable, and equal to a simple sort, on keys with skipped digits */
	{
		int64_t		n = 100000,
					k;
		MergePair  *a = malloc(sizeof(MergePair) * n);
		MergePair  *tmp = malloc(sizeof(MergePair) * n);
		int			sorted = 1,
					stable = 1;

		for (k = 0; k < n; k++)
		{
			a[k].key = ((next_rand() % 1000) << 32) | 0x1234;
			a[k].val = (uint64_t) k;
		}
		rc = MergeRadixSort(a, tmp, n, interrupt_cb, NULL);
		for (k = 1; k < n; k++)
		{
			if (a[k - 1].key > a[k].key)
				sorted = 0;
			if (a[k - 1].key == a[k].key && a[k - 1].val > a[k].val)
				stable = 0;
		}
		ok(rc == MERGE_OK && sorted && stable, "radix sort: sorted and stable");
		stop_now = 1;
		rc = MergeRadixSort(a, tmp, n, interrupt_cb, NULL);
		ok(rc == MERGE_INTERRUPTED, "radix sort: stops when interrupted");
		stop_now = 0;
		free(a);
		free(tmp);
	}

	/* a larger random reduction against a brute-force one */
	{
		int64_t		n = 20000,
					k,
					j;
		AggEvent   *big = malloc(sizeof(AggEvent) * n);
		int			bad = 0;

		for (k = 0; k < n; k++)
			big[k] = ev(1 + (int64_t) (next_rand() % (n - 500)), 1 + (int64_t) (next_rand() % 50),
						1 + (int64_t) (next_rand() % 40), 1 + (int) (next_rand() % 10),
						(int64_t) (next_rand() % 5), (int32_t) (next_rand() % 2), k);
		rc = MergeMarkDuplicates(big, n, &ndup, interrupt_cb, NULL);
		ok(rc == MERGE_OK && ndup > 0, "random events: duplicates found");
		rc = MergeReduce(big, n, &r, &nr, &t, &nt, interrupt_cb, NULL);
		ok(rc == MERGE_OK && nr > 1000, "random events: reduced");
		for (j = 0; j < nr; j++)
		{
			AggTie		c[64];
			int			nc = 0;
			int64_t		maxts = -1;

			for (k = 0; k < n; k++)
				if (!big[k].dup && big[k].user_id == r[j].user_id && big[k].movie_id == r[j].movie_id &&
					big[k].ts > maxts)
					maxts = big[k].ts;
			for (k = 0; k < n && nc < 64; k++)
				if (!big[k].dup && big[k].user_id == r[j].user_id && big[k].movie_id == r[j].movie_id &&
					big[k].ts == maxts)
				{
					c[nc].event_id = big[k].event_id;
					c[nc].stream = big[k].stream;
					c[nc].pos = big[k].pos;
					c[nc].halves = big[k].halves;
					nc++;
				}
			if (maxts != r[j].ts || nc != r[j].ntie ||
				t[r[j].first_tie + r[j].winner].event_id != c[brute_winner(c, nc)].event_id)
				bad++;
		}
		ok(bad == 0, "random events: every (user, movie) equals the brute-force reduction");
		free(r);
		free(t);
		free(big);
	}
	return tap_done();
}
