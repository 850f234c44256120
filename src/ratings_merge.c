/*
 * ratings_merge.c: duplicates and latest-wins over an array of rating events (see
 * ratings_merge.h for the rule).
 *
 * Design: both steps sort (key, index) pairs with an LSD radix sort, which is linear
 * in the events and, unlike a comparison sort, costs the same on 25 million events
 * as its few memory passes (16-bit digits; digits that every key shares are skipped,
 * so event ids of 44 bits take three passes).  Duplicates: sort by event id, keep the
 * lowest (stream, pos) of each group.  Latest wins: sort by (user, movie) packed in
 * 64 bits when both fit in 32 bits (MovieLens ids do), else by a comparison sort of
 * the events themselves.  Memory: two pair arrays of 16 bytes an event at most.
 * Long loops poll the interrupt callback every 2^20 elements.
 */
#include <stdlib.h>
#include <string.h>

#include "ratings_merge.h"

#define POLL_MASK	((1 << 20) - 1)

static int	cmp_event_ptr(const void *a, const void *b);

/* Index of the winner among n candidates of one ts (n >= 1). */
int
MergePickWinner(const AggTie *c, int n)
{
	int			i;
	int			best = 0;
	int			one_stream = 1;

	for (i = 1; i < n; i++)
		if (c[i].stream != c[0].stream)
			one_stream = 0;
	for (i = 1; i < n; i++)
	{
		if (one_stream ? (c[i].pos > c[best].pos ||
						  (c[i].pos == c[best].pos && c[i].event_id > c[best].event_id))
			: (c[i].event_id > c[best].event_id ||
			   (c[i].event_id == c[best].event_id &&
				(c[i].stream > c[best].stream ||
				 (c[i].stream == c[best].stream && c[i].pos > c[best].pos)))))
			best = i;
	}
	return best;
}

/* Stable LSD radix sort of (key, val) pairs by key. */
int
MergeRadixSort(MergePair *a, MergePair *tmp, int64_t n, MergeInterruptFn interrupt, void *arg)
{
	int64_t    *count;
	int			d;
	int64_t		i;
	MergePair  *src = a;
	MergePair  *dst = tmp;

	if (n < 2)
		return MERGE_OK;
	count = calloc((size_t) 4 * 65536, sizeof(int64_t));
	if (count == NULL)
		return MERGE_NOMEM;
	for (i = 0; i < n; i++)
	{
		uint64_t	k = a[i].key;

		count[0 * 65536 + (k & 0xffff)]++;
		count[1 * 65536 + ((k >> 16) & 0xffff)]++;
		count[2 * 65536 + ((k >> 32) & 0xffff)]++;
		count[3 * 65536 + ((k >> 48) & 0xffff)]++;
		if ((i & POLL_MASK) == 0 && interrupt && interrupt(arg))
		{
			free(count);
			return MERGE_INTERRUPTED;
		}
	}
	for (d = 0; d < 4; d++)
	{
		int64_t    *c = count + (size_t) d * 65536;
		int64_t		sum = 0;
		int			shift = d * 16;
		int			j;

		/* every key has the same digit here: nothing to do */
		if (c[(a[0].key >> shift) & 0xffff] == n)
			continue;
		for (j = 0; j < 65536; j++)
		{
			int64_t		t = c[j];

			c[j] = sum;
			sum += t;
		}
		for (i = 0; i < n; i++)
		{
			dst[c[(src[i].key >> shift) & 0xffff]++] = src[i];
			if ((i & POLL_MASK) == 0 && interrupt && interrupt(arg))
			{
				free(count);
				return MERGE_INTERRUPTED;
			}
		}
		{
			MergePair  *t = src;

			src = dst;
			dst = t;
		}
	}
	if (src != a)
		memcpy(a, src, sizeof(MergePair) * (size_t) n);
	free(count);
	return MERGE_OK;
}

/* Mark every occurrence of an event id but its first (lowest stream, pos). */
int
MergeMarkDuplicates(AggEvent *ev, int64_t n, int64_t *ndup, MergeInterruptFn interrupt, void *arg)
{
	MergePair  *p;
	MergePair  *tmp;
	int64_t		i,
				j;
	int			rc;

	*ndup = 0;
	if (n == 0)
		return MERGE_OK;
	p = malloc(sizeof(MergePair) * (size_t) n);
	tmp = malloc(sizeof(MergePair) * (size_t) n);
	if (p == NULL || tmp == NULL)
	{
		free(p);
		free(tmp);
		return MERGE_NOMEM;
	}
	for (i = 0; i < n; i++)
	{
		/* event ids are positive: the order of the signed values */
		p[i].key = (uint64_t) ev[i].event_id ^ ((uint64_t) 1 << 63);
		p[i].val = (uint64_t) i;
		ev[i].dup = 0;
	}
	rc = MergeRadixSort(p, tmp, n, interrupt, arg);
	free(tmp);
	if (rc != MERGE_OK)
	{
		free(p);
		return rc;
	}
	for (i = 0; i < n; i = j)
	{
		int64_t		first = (int64_t) p[i].val;

		for (j = i + 1; j < n && p[j].key == p[i].key; j++)
		{
			int64_t		k = (int64_t) p[j].val;

			if (ev[k].stream < ev[first].stream ||
				(ev[k].stream == ev[first].stream && ev[k].pos < ev[first].pos))
				first = k;
		}
		if (j - i > 1)
		{
			int64_t		m;

			for (m = i; m < j; m++)
				if ((int64_t) p[m].val != first)
				{
					ev[p[m].val].dup = 1;
					(*ndup)++;
				}
		}
		if ((i & POLL_MASK) == 0 && interrupt && interrupt(arg))
		{
			free(p);
			return MERGE_INTERRUPTED;
		}
	}
	free(p);
	return MERGE_OK;
}

static int
cmp_event_ptr(const void *a, const void *b)
{
	const AggEvent *x = *(const AggEvent *const *) a;
	const AggEvent *y = *(const AggEvent *const *) b;

	if (x->user_id != y->user_id)
		return x->user_id < y->user_id ? -1 : 1;
	if (x->movie_id != y->movie_id)
		return x->movie_id < y->movie_id ? -1 : 1;
	return x < y ? -1 : (x > y ? 1 : 0);
}

/* Reduce the events not marked dup to one AggRating per (user, movie). */
int
MergeReduce(const AggEvent *ev, int64_t n, AggRating **out, int64_t *nout,
			AggTie **ties, int64_t *nties, MergeInterruptFn interrupt, void *arg)
{
	int64_t		live = 0;
	int64_t		i,
				j,
				k;
	int			packed = 1;
	const AggEvent **order;
	AggRating  *r = NULL;
	AggTie	   *t = NULL;
	int64_t		nr = 0,
				nt = 0,
				tcap;

	*out = NULL;
	*ties = NULL;
	*nout = *nties = 0;
	for (i = 0; i < n; i++)
	{
		if (ev[i].dup)
			continue;
		live++;
		if (ev[i].user_id < 0 || ev[i].user_id > (int64_t) UINT32_MAX ||
			ev[i].movie_id < 0 || ev[i].movie_id > (int64_t) UINT32_MAX)
			packed = 0;
	}
	if (live == 0)
		return MERGE_OK;
	order = malloc(sizeof(AggEvent *) * (size_t) live);
	if (order == NULL)
		return MERGE_NOMEM;
	if (packed)
	{
		MergePair  *p = malloc(sizeof(MergePair) * (size_t) live);
		MergePair  *tmp = malloc(sizeof(MergePair) * (size_t) live);
		int			rc;

		if (p == NULL || tmp == NULL)
		{
			free(p);
			free(tmp);
			free(order);
			return MERGE_NOMEM;
		}
		for (i = 0, k = 0; i < n; i++)
		{
			if (ev[i].dup)
				continue;
			p[k].key = ((uint64_t) ev[i].user_id << 32) | (uint64_t) ev[i].movie_id;
			p[k].val = (uint64_t) i;
			k++;
		}
		rc = MergeRadixSort(p, tmp, live, interrupt, arg);
		free(tmp);
		if (rc != MERGE_OK)
		{
			free(p);
			free(order);
			return rc;
		}
		for (k = 0; k < live; k++)
			order[k] = &ev[p[k].val];
		free(p);
	}
	else
	{
		for (i = 0, k = 0; i < n; i++)
			if (!ev[i].dup)
				order[k++] = &ev[i];
		qsort(order, (size_t) live, sizeof(AggEvent *), cmp_event_ptr);
	}

	/* at most one rating per event; ties are rare, grow their array on demand */
	r = malloc(sizeof(AggRating) * (size_t) live);
	tcap = live < 1024 ? live : live / 8 + 1024;
	t = malloc(sizeof(AggTie) * (size_t) tcap);
	if (r == NULL || t == NULL)
		goto nomem;
	for (i = 0; i < live; i = j)
	{
		int64_t		maxts = order[i]->ts;
		AggRating  *cur;

		for (j = i + 1; j < live && order[j]->user_id == order[i]->user_id &&
			 order[j]->movie_id == order[i]->movie_id; j++)
			if (order[j]->ts > maxts)
				maxts = order[j]->ts;
		cur = &r[nr++];
		cur->user_id = order[i]->user_id;
		cur->movie_id = order[i]->movie_id;
		cur->ts = maxts;
		cur->first_tie = nt;
		cur->ntie = 0;
		for (k = i; k < j; k++)
		{
			if (order[k]->ts != maxts)
				continue;
			if (nt == tcap)
			{
				AggTie	   *bigger;

				tcap *= 2;
				bigger = realloc(t, sizeof(AggTie) * (size_t) tcap);
				if (bigger == NULL)
					goto nomem;
				t = bigger;
			}
			t[nt].event_id = order[k]->event_id;
			t[nt].pos = order[k]->pos;
			t[nt].stream = order[k]->stream;
			t[nt].halves = order[k]->halves;
			nt++;
			cur->ntie++;
		}
		cur->winner = MergePickWinner(&t[cur->first_tie], cur->ntie);
		if ((i & POLL_MASK) == 0 && interrupt && interrupt(arg))
		{
			free(order);
			free(r);
			free(t);
			return MERGE_INTERRUPTED;
		}
	}
	free(order);
	*out = r;
	*nout = nr;
	*ties = t;
	*nties = nt;
	return MERGE_OK;

nomem:
	free(order);
	free(r);
	free(t);
	return MERGE_NOMEM;
}
