/*
 * neighbors_kernel.c: item neighbours from binary co-occurrence (plain C and pthreads,
 * no PostgreSQL header); see neighbors_kernel.h for the interface.
 *
 * Similarity.  A rating counts as "u rated i", whatever its value.  Each user first
 * keeps at most user_cap ratings: the most recent by user_ts; among equal times (and
 * for every rating when user_ts is NULL) the higher item index is kept first, so the
 * kept set is a pure function of the input.  With n_u the ratings kept, the user's
 * weight is w_u = n_u^-alpha (alpha = 0: every user counts 1; larger alpha damps heavy
 * users, whose ratings say less about any one pair).  Then
 *
 *     W_i     = sum of w_u over the users u who rated i
 *     co(i,j) = sum of w_u over the users who rated both i and j
 *     c(i,j)  = number of users who rated both
 *     sim(i,j) = co(i,j) / (W_i^beta * W_j^(1-beta) + shrink)
 *
 * defined for j != i with c(i,j) >= min_common.  beta = 0.5 is the cosine of the
 * weighted binary vectors; beta > 0.5 favours popular neighbours j, beta < 0.5 rare
 * ones.  shrink pulls the scores of pairs with little support towards 0.  Each item's
 * row holds its k neighbours of highest sim, ties to the lower item index, most similar
 * first; fewer than k when fewer qualify (count[i] says how many, the rest nbr = -1,
 * sim = 0).  sim is not symmetric unless beta = 0.5.
 *
 * Algorithm.  Once, in the calling thread: each user's kept ratings; the items
 * relabelled by popularity (raters kept, descending), so that the dense entries
 * touched most often share a few cache lines (rows, output and ties stay in the
 * input's labels); the weights; the transpose (item -> users, users ascending) with
 * W_i and each item's cost (sum of n_u over its users); the users' lists rebuilt from
 * the transpose (new labels, ascending, no sort); the items ordered by cost,
 * descending.  Then each thread repeatedly takes the next item i of that order (one
 * atomic counter: the heavy items go first and the tail balances), accumulates
 * co(i,.) and c(i,.) over u in U_i, j in items(u) into its dense arrays of n_items
 * entries (prefetching the next users' lists, which lie all over memory), noting each
 * item touched the first time, scores the touched items into a bounded heap of k
 * (partial selection), writes row i and clears only the touched entries.  Time is
 * O(sum over users of n_u^2), memory O(nnz + threads * n_items) besides the caller's
 * arrays: about 8 bytes per kept rating, 24 per user and 70 per item, 16 per item
 * and thread (and 16 per rating of the heaviest user, to cap it).  When
 * min_common <= 1 and every weight is positive the counts are not kept at all (a
 * zero sum marks an untouched item).
 *
 * Determinism.  Row i is computed by one thread alone, summing in double precision in
 * a fixed order (users ascending), so every row is bit-identical whatever the thread
 * count and the scheduling.
 *
 * Threads and interrupts.  threads - 1 workers are started with every signal blocked
 * (this runs inside a PostgreSQL backend: its handlers must only run on the calling
 * thread); the calling thread works too and polls interrupt() on entry, then every
 * NB_POLL_OPS steps of preparation or accumulation (a few milliseconds), and every 2
 * ms while it waits for the workers.  A nonzero poll sets a shared flag that the workers test at the same
 * cadence; everyone stops, the workers are joined and NB_INTERRUPTED is returned.
 * Workers call nothing but libc; everything they use is allocated before they start,
 * so they cannot fail.  If a worker cannot be started the others (and the calling
 * thread) do its share: the result is the same.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libutil.h"
#include "neighbors_kernel.h"

#define NB_POLL_OPS		(1 << 20)	/* accumulations (or preparation steps) between
									 * interrupt polls: a few milliseconds */
#define NB_AHEAD		2		/* prefetch the item list of the user this far on */
#define NB_AHEAD_FAR	6		/* and the offsets of the user this far on */

/* What every thread reads (and the three shared counters). */
typedef struct NbShared
{
	int32_t		n_items;
	int			k;
	int			min_common;
	int			fast;			/* no counts: min_common <= 1, every w_u > 0 */
	double		shrink;
	const int64_t *cptr;		/* capped CSR by user */
	const int32_t *citems;
	const int64_t *iptr;		/* transpose: users of each item, ascending */
	const int32_t *iusers;
	const double *w;			/* w_u */
	const double *wa;			/* W_i^beta */
	const double *wb;			/* W_i^(1-beta) */
	const int32_t *order;		/* items by cost, descending */
	const int32_t *orig;		/* the input's label of each item */
	NbOutput   *out;
	/* the counters written while the others read: a cache line of their own */
	int64_t		next __attribute__((aligned(64)));	/* atomic: next position */
	int			stop;			/* atomic: set once interrupted */
	int			running;		/* atomic: workers not yet finished */
	char		pad[64 - sizeof(int64_t) - 2 * sizeof(int)];
} NbShared;

/* One thread's scratch space (index 0 is the calling thread). */
typedef struct NbWorker
{
	NbShared   *sh;
	double	   *acc;			/* n_items: co(i, j) being summed */
	int32_t    *cnt;			/* n_items: c(i, j) (NULL in the fast mode) */
	int32_t    *touched;		/* n_items: items with acc or cnt nonzero */
	double	   *hsim;			/* k: the heap of the best neighbours so far */
	int32_t    *hidx;
	int64_t		ops;			/* accumulations since the last poll */
	int			(*interrupt) (void *arg);	/* calling thread only, else NULL */
	void	   *arg;
	pthread_t	tid;
	int			started;
	char		pad[64];		/* no false sharing of ops between workers */
} NbWorker;

/* A rating to rank while capping a user: later first, then higher item first. */
typedef struct NbRated
{
	int64_t		ts;
	int32_t		item;
} NbRated;

/* An item and its cost, to order the work. */
typedef struct NbCost
{
	int64_t		cost;
	int32_t		item;
} NbCost;

static int	check_input(const NbInput *in, const NbParams *p, const NbOutput *out,
						char *err, size_t errlen);
static int	poll_stop(NbWorker *wk);
static int	prep_poll(NbWorker *wk, int64_t n);
static int	cmp_rated(const void *a, const void *b);
static int	cmp_cost(const void *a, const void *b);
static void heap_sift_down(double *hs, int32_t *hi, int n, int pos);
static int	compute_row(NbWorker *wk, int32_t i);
static void work_loop(NbWorker *wk);
static void *worker_main(void *arg);

/* Compute every item's neighbours: prepare, start the workers, work, join. */
int
NeighborsCompute(const NbInput *in, const NbParams *p, NbOutput *out,
				 int (*interrupt) (void *arg), void *arg, char *err, size_t errlen)
{
	int32_t		nu,
				ni;
	int			nthreads,
				t,
				rc = NB_OK,
				capped = 0,
				allpos = 1;
	int64_t		nnz,
				u,
				i,
				q;
	int64_t    *cptr_own = NULL,
			   *iptr = NULL,
			   *fill = NULL,
			   *ufill = NULL;
	int32_t    *citems_own = NULL,
			   *iusers = NULL,
			   *order = NULL,
			   *orig = NULL,
			   *newid = NULL;
	const int64_t *cptr;
	const int32_t *citems;
	double	   *w = NULL,
			   *wsum = NULL,
			   *wa = NULL,
			   *wb = NULL;
	NbRated    *rated = NULL;
	NbCost	   *costs = NULL;
	NbWorker   *wk = NULL;
	NbShared	sh;
	NbWorker	poller;

	if (check_input(in, p, out, err, errlen) != 0)
		return NB_ERROR;
	nu = in->n_users;
	ni = in->n_items;
	if (ni == 0)
		return NB_OK;
	nthreads = p->threads;

	/* the calling thread polls through this while it prepares */
	memset(&poller, 0, sizeof(poller));
	memset(&sh, 0, sizeof(sh));
	poller.sh = &sh;
	poller.interrupt = interrupt;
	poller.arg = arg;
	if (poll_stop(&poller))
		return NB_INTERRUPTED;

	/* the ratings each user keeps (input labels) */
	{
		int64_t		maxn = 0;

		nnz = 0;
		for (u = 0; u < nu; u++)
		{
			int64_t		n = in->user_ptr[u + 1] - in->user_ptr[u];

			if (n > maxn)
				maxn = n;
			if (p->user_cap > 0 && n > p->user_cap)
			{
				capped = 1;
				n = p->user_cap;
			}
			nnz += n;
		}
		cptr_own = malloc(sizeof(int64_t) * ((size_t) nu + 1));
		citems_own = malloc(sizeof(int32_t) * (size_t) (nnz > 0 ? nnz : 1));
		if (capped && in->user_ts)
			rated = malloc(sizeof(NbRated) * (size_t) maxn);
		if (!cptr_own || !citems_own || (capped && in->user_ts && !rated))
			goto oom;
	}
	cptr_own[0] = 0;
	for (u = 0; u < nu; u++)
	{
		int64_t		b = in->user_ptr[u],
					e = in->user_ptr[u + 1],
					n = e - b,
					o = cptr_own[u];

		if (!capped || n <= p->user_cap)
			memcpy(citems_own + o, in->user_items + b, sizeof(int32_t) * (size_t) n);
		else if (!in->user_ts)
		{
			/* all times equal: the highest item indexes */
			n = p->user_cap;
			memcpy(citems_own + o, in->user_items + e - n, sizeof(int32_t) * (size_t) n);
		}
		else
		{
			for (q = 0; q < n; q++)
			{
				rated[q].ts = in->user_ts[b + q];
				rated[q].item = in->user_items[b + q];
			}
			qsort(rated, (size_t) n, sizeof(NbRated), cmp_rated);
			n = p->user_cap;
			for (q = 0; q < n; q++)
				citems_own[o + q] = rated[q].item;	/* in any order: see below */
		}
		cptr_own[u + 1] = o + n;
		if (prep_poll(&poller, e - b + 1))
			goto interrupted;
	}
	free(rated);
	rated = NULL;

	/*
	 * Relabel the items by popularity (raters kept, descending; ties by index), so
	 * the entries of the dense arrays touched most often share a few cache lines.
	 * Rows keep the input's labels in the output and in every tie.
	 */
	costs = calloc((size_t) ni, sizeof(NbCost));
	orig = malloc(sizeof(int32_t) * (size_t) ni);
	newid = malloc(sizeof(int32_t) * (size_t) ni);
	if (!costs || !orig || !newid)
		goto oom;
	for (i = 0; i < ni; i++)
		costs[i].item = (int32_t) i;
	for (q = 0; q < nnz; q++)
		costs[citems_own[q]].cost++;
	qsort(costs, (size_t) ni, sizeof(NbCost), cmp_cost);
	for (i = 0; i < ni; i++)
	{
		orig[i] = costs[i].item;
		newid[costs[i].item] = (int32_t) i;
	}
	free(costs);
	costs = NULL;

	/* the weights, the transpose in the new labels (users ascending), W_i, costs */
	w = malloc(sizeof(double) * (size_t) (nu > 0 ? nu : 1));
	iptr = calloc((size_t) ni + 1, sizeof(int64_t));
	fill = malloc(sizeof(int64_t) * (size_t) ni);
	ufill = malloc(sizeof(int64_t) * (size_t) (nu > 0 ? nu : 1));
	iusers = malloc(sizeof(int32_t) * (size_t) (nnz > 0 ? nnz : 1));
	wsum = calloc((size_t) ni, sizeof(double));
	costs = calloc((size_t) ni, sizeof(NbCost));
	if (!w || !iptr || !fill || !ufill || !iusers || !wsum || !costs)
		goto oom;
	for (u = 0; u < nu; u++)
	{
		int64_t		n = cptr_own[u + 1] - cptr_own[u];

		w[u] = n > 0 ? pow((double) n, -p->alpha) : 0.0;
		if (n > 0 && !(w[u] > 0.0))
			allpos = 0;
		for (q = cptr_own[u]; q < cptr_own[u + 1]; q++)
		{
			int32_t		j = newid[citems_own[q]];

			iptr[j + 1]++;
			wsum[j] += w[u];
			costs[j].cost += n;
		}
		if (prep_poll(&poller, n + 1))
			goto interrupted;
	}
	for (i = 0; i < ni; i++)
	{
		iptr[i + 1] += iptr[i];
		fill[i] = iptr[i];
	}
	for (u = 0; u < nu; u++)
	{
		for (q = cptr_own[u]; q < cptr_own[u + 1]; q++)
			iusers[fill[newid[citems_own[q]]]++] = (int32_t) u;
		if (prep_poll(&poller, cptr_own[u + 1] - cptr_own[u] + 1))
			goto interrupted;
	}
	free(fill);
	fill = NULL;
	free(newid);
	newid = NULL;

	/* each user's list again from the transpose: new labels, ascending, no sort */
	for (u = 0; u < nu; u++)
		ufill[u] = cptr_own[u];
	for (i = 0; i < ni; i++)
	{
		for (q = iptr[i]; q < iptr[i + 1]; q++)
			citems_own[ufill[iusers[q]]++] = (int32_t) i;
		if (prep_poll(&poller, iptr[i + 1] - iptr[i] + 1))
			goto interrupted;
	}
	free(ufill);
	ufill = NULL;
	cptr = cptr_own;
	citems = citems_own;

	/* W_i^beta, W_i^(1-beta); the items by cost */
	wa = malloc(sizeof(double) * (size_t) ni);
	wb = malloc(sizeof(double) * (size_t) ni);
	order = malloc(sizeof(int32_t) * (size_t) ni);
	if (!wa || !wb || !order)
		goto oom;
	for (i = 0; i < ni; i++)
	{
		wa[i] = pow(wsum[i], p->beta);
		wb[i] = pow(wsum[i], 1.0 - p->beta);
		costs[i].item = (int32_t) i;
	}
	free(wsum);
	wsum = NULL;
	qsort(costs, (size_t) ni, sizeof(NbCost), cmp_cost);
	for (i = 0; i < ni; i++)
		order[i] = costs[i].item;
	free(costs);
	costs = NULL;
	if (poll_stop(&poller))
		goto interrupted;

	sh.n_items = ni;
	sh.k = p->k;
	sh.min_common = p->min_common;
	sh.fast = p->min_common <= 1 && allpos;
	sh.shrink = p->shrink;
	sh.cptr = cptr;
	sh.citems = citems;
	sh.iptr = iptr;
	sh.iusers = iusers;
	sh.w = w;
	sh.wa = wa;
	sh.wb = wb;
	sh.order = order;
	sh.orig = orig;
	sh.out = out;

	/* every thread's scratch space, before any thread starts */
	wk = calloc((size_t) nthreads, sizeof(NbWorker));
	if (!wk)
		goto oom;
	for (t = 0; t < nthreads; t++)
	{
		wk[t].sh = &sh;
		wk[t].acc = calloc((size_t) ni, sizeof(double));
		wk[t].touched = malloc(sizeof(int32_t) * (size_t) ni);
		wk[t].hsim = malloc(sizeof(double) * (size_t) p->k);
		wk[t].hidx = malloc(sizeof(int32_t) * (size_t) p->k);
		if (!sh.fast)
			wk[t].cnt = calloc((size_t) ni, sizeof(int32_t));
		if (!wk[t].acc || !wk[t].touched || !wk[t].hsim || !wk[t].hidx ||
			(!sh.fast && !wk[t].cnt))
			goto oom;
	}
	wk[0].interrupt = interrupt;
	wk[0].arg = arg;

	/* start the workers with every signal blocked; a failed start just means fewer */
	if (nthreads > 1)
	{
		sigset_t	old;

		LibBlockSignals(&old);
		for (t = 1; t < nthreads; t++)
		{
			__atomic_add_fetch(&sh.running, 1, __ATOMIC_SEQ_CST);
			if (pthread_create(&wk[t].tid, NULL, worker_main, &wk[t]) == 0)
				wk[t].started = 1;
			else
				__atomic_sub_fetch(&sh.running, 1, __ATOMIC_SEQ_CST);
		}
		LibRestoreSignals(&old);
	}

	/* work, then poll while the workers finish their last items */
	work_loop(&wk[0]);
	while (__atomic_load_n(&sh.running, __ATOMIC_ACQUIRE) > 0)
	{
		struct timespec ts = {0, 2 * 1000 * 1000};

		poll_stop(&wk[0]);
		nanosleep(&ts, NULL);
	}
	for (t = 1; t < nthreads; t++)
		if (wk[t].started)
			pthread_join(wk[t].tid, NULL);
	if (__atomic_load_n(&sh.stop, __ATOMIC_ACQUIRE))
		rc = NB_INTERRUPTED;
	goto done;

oom:
	LibSetError(err, errlen, "out of memory computing the neighbours of %d items", (int) ni);
	rc = NB_ERROR;
	goto done;

interrupted:
	rc = NB_INTERRUPTED;

done:
	if (wk)
	{
		for (t = 0; t < nthreads; t++)
		{
			free(wk[t].acc);
			free(wk[t].cnt);
			free(wk[t].touched);
			free(wk[t].hsim);
			free(wk[t].hidx);
		}
		free(wk);
	}
	free(cptr_own);
	free(citems_own);
	free(rated);
	free(w);
	free(iptr);
	free(fill);
	free(ufill);
	free(iusers);
	free(wsum);
	free(costs);
	free(wa);
	free(wb);
	free(order);
	free(orig);
	free(newid);
	return rc;
}

/* Return the sum over users of min(n_u, user_cap)^2 (user_cap 0: no cap). */
int64_t
NeighborsWork(const NbInput *in, int user_cap)
{
	int64_t		s = 0;
	int32_t		u;

	for (u = 0; u < in->n_users; u++)
	{
		int64_t		n = in->user_ptr[u + 1] - in->user_ptr[u];

		if (user_cap > 0 && n > user_cap)
			n = user_cap;
		s += n * n;
	}
	return s;
}

/* Check the parameters, the output arrays and the CSR (offsets, range, order). */
static int
check_input(const NbInput *in, const NbParams *p, const NbOutput *out,
			char *err, size_t errlen)
{
	int32_t		u;

	if (!in || !p || !out)
	{
		LibSetError(err, errlen, "no input, parameters or output");
		return -1;
	}
	if (p->k < 1 || p->user_cap < 0 || p->min_common < 1 ||
		p->threads < 1 || p->threads > NB_MAX_THREADS)
	{
		LibSetError(err, errlen, "invalid neighbour parameters: k %d, user cap %d, "
					"min common %d, threads %d (k, min common and threads must be at "
					"least 1, threads at most %d, the cap 0 or more)",
					p->k, p->user_cap, p->min_common, p->threads, NB_MAX_THREADS);
		return -1;
	}
	if (!(p->alpha >= 0.0 && p->alpha < 1e6) || !(p->beta >= 0.0 && p->beta <= 1.0) ||
		!(p->shrink >= 0.0 && p->shrink < 1e300))
	{
		LibSetError(err, errlen, "invalid neighbour parameters: alpha %g, beta %g, "
					"shrink %g (alpha and shrink must be finite and not negative, "
					"beta between 0 and 1)", p->alpha, p->beta, p->shrink);
		return -1;
	}
	if (in->n_users < 0 || in->n_items < 0 || !in->user_ptr ||
		(in->n_items > 0 && (!out->nbr || !out->sim || !out->count)))
	{
		LibSetError(err, errlen, "invalid ratings or output: %d users, %d items",
					(int) in->n_users, (int) in->n_items);
		return -1;
	}
	if (in->user_ptr[0] < 0)
	{
		LibSetError(err, errlen, "invalid ratings: the first offset is negative");
		return -1;
	}
	for (u = 0; u < in->n_users; u++)
	{
		int64_t		b = in->user_ptr[u],
					e = in->user_ptr[u + 1],
					q;

		if (e < b)
		{
			LibSetError(err, errlen, "invalid ratings: the offsets of user %d decrease",
						(int) u);
			return -1;
		}
		if (e > b && !in->user_items)
		{
			LibSetError(err, errlen, "invalid ratings: no items");
			return -1;
		}
		for (q = b; q < e; q++)
		{
			int32_t		j = in->user_items[q];

			if (j < 0 || j >= in->n_items || (q > b && j <= in->user_items[q - 1]))
			{
				LibSetError(err, errlen, "invalid ratings: user %d has item %d %s",
							(int) u, (int) j,
							j < 0 || j >= in->n_items ? "out of range" :
							"out of order or twice");
				return -1;
			}
		}
	}
	return 0;
}

/* Poll for a stop: the interrupt callback (calling thread) or the shared flag. */
static int
poll_stop(NbWorker *wk)
{
	if (__atomic_load_n(&wk->sh->stop, __ATOMIC_RELAXED))
		return 1;
	if (wk->interrupt && wk->interrupt(wk->arg))
	{
		__atomic_store_n(&wk->sh->stop, 1, __ATOMIC_RELEASE);
		return 1;
	}
	return 0;
}

/* Count n steps of preparation; poll once every NB_POLL_OPS of them. */
static int
prep_poll(NbWorker *wk, int64_t n)
{
	wk->ops += n;
	if (wk->ops < NB_POLL_OPS)
		return 0;
	wk->ops = 0;
	return poll_stop(wk);
}

/* Order ratings later first, then higher item first. */
static int
cmp_rated(const void *a, const void *b)
{
	const NbRated *x = a,
			   *y = b;

	if (x->ts != y->ts)
		return x->ts > y->ts ? -1 : 1;
	return x->item > y->item ? -1 : x->item < y->item;
}

/* Order items by cost descending, then index ascending. */
static int
cmp_cost(const void *a, const void *b)
{
	const NbCost *x = a,
			   *y = b;

	if (x->cost != y->cost)
		return x->cost > y->cost ? -1 : 1;
	return x->item < y->item ? -1 : x->item > y->item;
}

/* True when (s1, j1) ranks below (s2, j2): lower sim, or equal sim and higher item. */
#define NB_WORSE(s1, j1, s2, j2) ((s1) < (s2) || ((s1) == (s2) && (j1) > (j2)))

/* Restore the heap (worst at the root) below pos. */
static void
heap_sift_down(double *hs, int32_t *hi, int n, int pos)
{
	double		s = hs[pos];
	int32_t		j = hi[pos];

	for (;;)
	{
		int			c = 2 * pos + 1;

		if (c >= n)
			break;
		if (c + 1 < n && NB_WORSE(hs[c + 1], hi[c + 1], hs[c], hi[c]))
			c++;
		if (!NB_WORSE(hs[c], hi[c], s, j))
			break;
		hs[pos] = hs[c];
		hi[pos] = hi[c];
		pos = c;
	}
	hs[pos] = s;
	hi[pos] = j;
}

/*
 * Compute and write row i: accumulate over its users, select the best k of the touched
 * items, clear them.  Returns 1 (row unwritten) when told to stop.
 */
static int
compute_row(NbWorker *wk, int32_t i)
{
	const NbShared *sh = wk->sh;
	const int64_t *cptr = sh->cptr;
	const int32_t *citems = sh->citems;
	double	   *acc = wk->acc;
	int32_t    *cnt = wk->cnt;
	int32_t    *touched = wk->touched;
	double	   *hs = wk->hsim;
	int32_t    *hi = wk->hidx;
	int			k = sh->k,
				hn = 0,
				r;
	int64_t		nt = 0,
				p,
				q,
				t;
	double		wai = sh->wa[i];
	int64_t		pbeg = sh->iptr[i],
				pend = sh->iptr[i + 1];
	int32_t    *onbr = sh->out->nbr + (size_t) sh->orig[i] * k;
	float	   *osim = sh->out->sim + (size_t) sh->orig[i] * k;

	for (p = pbeg; p < pend; p++)
	{
		int32_t		u = sh->iusers[p];
		double		wu = sh->w[u];
		int64_t		b = cptr[u],
					e = cptr[u + 1];

		/*
		 * The users' lists lie all over memory: fetch ahead the offsets and weight
		 * of the user NB_AHEAD_FAR places on, and the list of the one NB_AHEAD
		 * places on (whose offsets were fetched earlier).
		 */
		if (p + NB_AHEAD_FAR < pend)
		{
			int32_t		uf = sh->iusers[p + NB_AHEAD_FAR];

			__builtin_prefetch(&cptr[uf]);
			__builtin_prefetch(&cptr[uf + 1]);
			__builtin_prefetch(&sh->w[uf]);
		}
		if (p + NB_AHEAD < pend)
		{
			int32_t		un = sh->iusers[p + NB_AHEAD];
			const int32_t *l = citems + cptr[un],
					   *le = citems + cptr[un + 1];

			for (; l < le; l += 16)
				__builtin_prefetch(l);
			__builtin_prefetch(le - 1);
		}

		/*
		 * A branch, not a branchless append: nt would then depend on the previous
		 * load, serialising the loop on cache latency.  First touches are rare.
		 */
		if (sh->fast)
		{
			for (q = b; q < e; q++)
			{
				int32_t		j = citems[q];

				if (__builtin_expect(acc[j] == 0.0, 0))
					touched[nt++] = j;
				acc[j] += wu;
			}
		}
		else
		{
			for (q = b; q < e; q++)
			{
				int32_t		j = citems[q];

				if (__builtin_expect(cnt[j]++ == 0, 0))
					touched[nt++] = j;
				acc[j] += wu;
			}
		}
		wk->ops += e - b;
		if (wk->ops >= NB_POLL_OPS)
		{
			wk->ops = 0;
			if (poll_stop(wk))
				goto stop;
		}
	}

	/* score the touched items into the heap, clearing them */
	for (t = 0; t < nt; t++)
	{
		int32_t		j = touched[t];

		if (j != i && (sh->fast || cnt[j] >= sh->min_common))
		{
			double		den = wai * sh->wb[j] + sh->shrink;

			if (den > 0.0)
			{
				double		s = acc[j] / den;
				int32_t		jo = sh->orig[j];	/* ties and output: input labels */

				if (hn < k)
				{
					/* sift up */
					int			pos = hn++;

					while (pos > 0)
					{
						int			par = (pos - 1) / 2;

						if (!NB_WORSE(s, jo, hs[par], hi[par]))
							break;
						hs[pos] = hs[par];
						hi[pos] = hi[par];
						pos = par;
					}
					hs[pos] = s;
					hi[pos] = jo;
				}
				else if (NB_WORSE(hs[0], hi[0], s, jo))
				{
					hs[0] = s;
					hi[0] = jo;
					heap_sift_down(hs, hi, hn, 0);
				}
			}
		}
		acc[j] = 0.0;
		if (cnt)
			cnt[j] = 0;
	}
	wk->ops += nt + 1;

	/* write the row best first: pop the worst into the last free slot */
	sh->out->count[sh->orig[i]] = hn;
	for (r = hn; r < k; r++)
	{
		onbr[r] = -1;
		osim[r] = 0.0f;
	}
	for (r = hn - 1; r >= 0; r--)
	{
		onbr[r] = hi[0];
		osim[r] = (float) hs[0];
		hs[0] = hs[r];
		hi[0] = hi[r];
		heap_sift_down(hs, hi, r, 0);
	}
	return 0;

stop:
	/* leave the scratch arrays clean anyway */
	for (t = 0; t < nt; t++)
	{
		acc[touched[t]] = 0.0;
		if (cnt)
			cnt[touched[t]] = 0;
	}
	return 1;
}

/* Take items from the shared order until none is left or told to stop. */
static void
work_loop(NbWorker *wk)
{
	NbShared   *sh = wk->sh;

	for (;;)
	{
		int64_t		pos;

		if (__atomic_load_n(&sh->stop, __ATOMIC_RELAXED))
			break;
		pos = __atomic_fetch_add(&sh->next, 1, __ATOMIC_RELAXED);
		if (pos >= sh->n_items)
			break;
		if (compute_row(wk, sh->order[pos]))
			break;
	}
}

/* A worker thread: work, then say so. */
static void *
worker_main(void *arg)
{
	NbWorker   *wk = arg;

	work_loop(wk);
	__atomic_sub_fetch(&wk->sh->running, 1, __ATOMIC_RELEASE);
	return NULL;
}
