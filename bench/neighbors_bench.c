/*
 * neighbors_bench.c: time the item-neighbour kernel (src/neighbors_kernel.c) on a
 * MovieLens-25M-shaped instance generated in memory.  Not part of the test suite.
 *
 *   cc -O2 -Wall -Isrc -o /tmp/neighbors_bench bench/neighbors_bench.c \
 *      src/neighbors_kernel.c src/libutil.c -lpthread -lm
 *   /tmp/neighbors_bench RATINGS USERS ITEMS CAP THREADS [K [SEED [MIN_COMMON]]]
 *   /tmp/neighbors_bench 25000000 162541 62423 500 2      # MovieLens 25M's shape
 *
 * The instance (deterministic for a seed): each user has 20 + X ratings, X lognormal
 * (median 51, sigma 1.39: MovieLens 25M's mean 154 and median 71 ratings per user,
 * a few users with thousands), scaled so the total is RATINGS; items drawn without
 * repetition with Zipf-like popularity p(rank r) ~ 1 / (r + 50) (the most popular of
 * 62k items in about 0.3% of the ratings, as in MovieLens), ranks shuffled over the
 * item indexes; each rating a time within the user's own span of up to three years
 * between 1995 and 2019, many equal times.  Prints the work (sum over users of
 * min(n_u, cap)^2), the time of NeighborsCompute alone, and the peak RSS before and
 * after it.  Parameters: alpha 0.5, beta 0.5, shrink 10, min_common as given (2).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "neighbors_kernel.h"

static uint64_t rng_state;

/* xorshift64*: the next pseudo-random 64-bit value. */
static uint64_t
rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/* A uniform double in (0, 1). */
static double
rng_unit(void)
{
	return ((rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

/* A standard normal value (Box-Muller). */
static double
rng_normal(void)
{
	return sqrt(-2.0 * log(rng_unit())) * cos(6.283185307179586 * rng_unit());
}

typedef struct Rated
{
	int32_t		item;
	int64_t		ts;
} Rated;

/* Order ratings by item. */
static int
cmp_item(const void *a, const void *b)
{
	const Rated *x = a,
			   *y = b;

	return x->item < y->item ? -1 : x->item > y->item;
}

/* Peak resident set size so far, in MB. */
static double
peak_rss_mb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss / 1024.0;
}

/* CPU seconds (user and system, every thread) used so far. */
static double
cpu_secs(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Generate, compute once, print one line of figures. */
int
main(int argc, char **argv)
{
	int64_t		ratings,
				total = 0,
				q;
	int32_t		nu,
				ni,
				u,
				r;
	int			cap,
				threads,
				k,
				min_common,
				rc;
	uint64_t	seed;
	double	   *extra,
			   *cum,
				sum = 0,
				scale,
				secs;
	int32_t    *rank2item,
			   *mark;
	int64_t    *ptr,
			   *ts;
	int32_t    *items;
	Rated	   *buf;
	NbInput		in;
	NbParams	p;
	NbOutput	out;
	char		err[256];
	struct timespec t0,
				t1;
	double		rss_before,
				cpu0;

	if (argc < 6)
	{
		fprintf(stderr, "usage: %s RATINGS USERS ITEMS CAP THREADS [K [SEED [MIN_COMMON]]]\n",
				argv[0]);
		return 2;
	}
	ratings = atoll(argv[1]);
	nu = atoi(argv[2]);
	ni = atoi(argv[3]);
	cap = atoi(argv[4]);
	threads = atoi(argv[5]);
	k = argc > 6 ? atoi(argv[6]) : 20;
	seed = argc > 7 ? strtoull(argv[7], NULL, 10) : 42;
	min_common = argc > 8 ? atoi(argv[8]) : 2;
	rng_state = 0x9E3779B97F4A7C15ULL ^ seed;

	/* ratings per user: 20 + lognormal, scaled to the total, at most ITEMS / 2 */
	extra = malloc(sizeof(double) * nu);
	ptr = malloc(sizeof(int64_t) * ((size_t) nu + 1));
	for (u = 0; u < nu; u++)
	{
		extra[u] = 51.0 * exp(1.39 * rng_normal());
		sum += extra[u];
	}
	scale = (double) (ratings - 20LL * nu) / sum;
	ptr[0] = 0;
	for (u = 0; u < nu; u++)
	{
		int64_t		n = 20 + (int64_t) (extra[u] * scale + rng_unit());

		if (n > ni / 2)
			n = ni / 2;
		ptr[u + 1] = ptr[u] + n;
	}
	total = ptr[nu];
	free(extra);

	/* item popularity: p(rank r) ~ 1 / (r + 50), ranks shuffled over the indexes */
	cum = malloc(sizeof(double) * ni);
	rank2item = malloc(sizeof(int32_t) * ni);
	mark = malloc(sizeof(int32_t) * ni);
	for (r = 0; r < ni; r++)
	{
		cum[r] = (r ? cum[r - 1] : 0.0) + 1.0 / (r + 50.0);
		rank2item[r] = r;
		mark[r] = -1;
	}
	for (r = ni - 1; r > 0; r--)
	{
		int32_t		s = (int32_t) (rng_next() % (uint64_t) (r + 1)),
					x = rank2item[r];

		rank2item[r] = rank2item[s];
		rank2item[s] = x;
	}

	items = malloc(sizeof(int32_t) * (size_t) total);
	ts = malloc(sizeof(int64_t) * (size_t) total);
	buf = malloc(sizeof(Rated) * (size_t) (ni / 2 + 1));
	for (u = 0; u < nu; u++)
	{
		int64_t		n = ptr[u + 1] - ptr[u],
					got = 0,
					tries = 0;
		int64_t		start = 788918400 + (int64_t) (rng_next() % 757382400ULL);	/* 1995..2019 */
		int64_t		span = 1 + (int64_t) (rng_next() % (3 * 31536000ULL));

		while (got < n)
		{
			int32_t		item;

			if (tries++ < 50 * n)
			{
				double		x = rng_unit() * cum[ni - 1];
				int32_t		lo = 0,
							hi = ni - 1;

				while (lo < hi)
				{
					int32_t		mid = (lo + hi) / 2;

					if (cum[mid] < x)
						lo = mid + 1;
					else
						hi = mid;
				}
				item = rank2item[lo];
			}
			else
				item = (int32_t) (rng_next() % (uint64_t) ni);	/* the rare heavy user */
			if (mark[item] == u)
				continue;
			mark[item] = u;
			buf[got].item = item;
			/* times at a 10-minute grain: many ratings share one */
			buf[got].ts = start + (int64_t) (rng_next() % (uint64_t) span) / 600 * 600;
			got++;
		}
		qsort(buf, (size_t) n, sizeof(Rated), cmp_item);
		for (q = 0; q < n; q++)
		{
			items[ptr[u] + q] = buf[q].item;
			ts[ptr[u] + q] = buf[q].ts;
		}
	}
	free(buf);
	free(cum);
	free(rank2item);
	free(mark);

	in.n_users = nu;
	in.n_items = ni;
	in.user_ptr = ptr;
	in.user_items = items;
	in.user_ts = ts;
	p.k = k;
	p.user_cap = cap;
	p.alpha = 0.5;
	p.beta = 0.5;
	p.shrink = 10.0;
	p.min_common = min_common;
	p.threads = threads;
	out.nbr = malloc(sizeof(int32_t) * (size_t) ni * k);
	out.sim = malloc(sizeof(float) * (size_t) ni * k);
	out.count = malloc(sizeof(int32_t) * (size_t) ni);

	rss_before = peak_rss_mb();
	cpu0 = cpu_secs();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = NeighborsCompute(&in, &p, &out, NULL, NULL, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (rc != NB_OK)
	{
		fprintf(stderr, "NeighborsCompute: %d %s\n", rc, err);
		return 1;
	}
	{
		int64_t		slots = 0;
		double		chk = 0;
		size_t		z;

		for (r = 0; r < ni; r++)
			slots += out.count[r];
		for (z = 0; z < (size_t) ni * k; z++)
			chk += out.sim[z] * (double) ((z % 7) + 1) + out.nbr[z] % 13;
		printf("ratings %lld users %d items %d cap %d threads %d k %d: work %.3g "
			   "(sum min(n_u,cap)^2), %.2f s (CPU %.2f s), peak RSS %.0f MB before, %.0f MB after "
			   "(kernel extra %.0f MB), slots %lld, checksum %.6g\n",
			   (long long) total, nu, ni, cap, threads, k,
			   (double) NeighborsWork(&in, cap), secs, cpu_secs() - cpu0, rss_before, peak_rss_mb(),
			   peak_rss_mb() - rss_before, (long long) slots, chk);
	}
	free(out.nbr);
	free(out.sim);
	free(out.count);
	free(ptr);
	free(items);
	free(ts);
	return 0;
}
