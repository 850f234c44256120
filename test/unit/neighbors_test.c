/*
 * neighbors_test.c: standalone checks of src/neighbors_kernel.c (run it under valgrind).
 *
 *   cc -g -O1 -Wall -Wextra -Werror -Isrc -o /tmp/neighbors_test \
 *      test/unit/neighbors_test.c src/neighbors_kernel.c src/libutil.c -lpthread -lm
 *   /tmp/neighbors_test       # TAP
 *
 * A hand-checked fixture (exact values, order, ties), min_common, the cap, k beyond the
 * neighbours there are, bad input, the same rows with 1, 2 and 3 threads, interrupts,
 * and a naive O(items^2 * users) reference on random instances.
 */
#include "neighbors_kernel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

/* A CSR instance built by the tests. */
typedef struct Inst
{
	int32_t		n_users,
				n_items;
	int64_t    *ptr;
	int32_t    *items;
	int64_t    *ts;
} Inst;

/* An output of n_items * k slots, filled with garbage so unwritten slots show. */
typedef struct Out
{
	int			k;
	int32_t		n_items;
	NbOutput	o;
} Out;

static uint64_t rng_state;

/* xorshift64*: the next pseudo-random value. */
static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/* Allocate an output for n items, k slots each, filled with garbage. */
static void
out_init(Out *out, int32_t n, int k)
{
	out->k = k;
	out->n_items = n;
	out->o.nbr = malloc(sizeof(int32_t) * (size_t) n * k + 1);
	out->o.sim = malloc(sizeof(float) * (size_t) n * k + 1);
	out->o.count = malloc(sizeof(int32_t) * (size_t) n + 1);
	memset(out->o.nbr, 0x5a, sizeof(int32_t) * (size_t) n * k);
	memset(out->o.sim, 0x5a, sizeof(float) * (size_t) n * k);
	memset(out->o.count, 0x5a, sizeof(int32_t) * (size_t) n);
}

static void
out_free(Out *out)
{
	free(out->o.nbr);
	free(out->o.sim);
	free(out->o.count);
}

/* True when two outputs hold the same rows, bit for bit. */
static int
out_equal(const Out *a, const Out *b)
{
	size_t		n = (size_t) a->n_items * a->k;

	return memcmp(a->o.nbr, b->o.nbr, n * sizeof(int32_t)) == 0 &&
		memcmp(a->o.sim, b->o.sim, n * sizeof(float)) == 0 &&
		memcmp(a->o.count, b->o.count, a->n_items * sizeof(int32_t)) == 0;
}

/* True when row i is exactly nbr[0..n) with sims sim[0..n) (1e-6) and padded. */
static int
row_is(const Out *out, int32_t i, int n, const int32_t *nbr, const double *sim)
{
	int			r;
	const int32_t *on = out->o.nbr + (size_t) i * out->k;
	const float *os = out->o.sim + (size_t) i * out->k;

	if (out->o.count[i] != n)
	{
		printf("# row %d: count %d, expected %d\n", i, out->o.count[i], n);
		return 0;
	}
	for (r = 0; r < out->k; r++)
	{
		int32_t		en = r < n ? nbr[r] : -1;
		double		es = r < n ? sim[r] : 0.0;

		if (on[r] != en || fabs(os[r] - es) > 1e-6)
		{
			printf("# row %d slot %d: %d %.9f, expected %d %.9f\n",
				   i, r, on[r], os[r], en, es);
			return 0;
		}
	}
	return 1;
}

/* Build an instance from per-user lists of items (ascending), -1 ending each. */
static void
inst_from_lists(Inst *in, int32_t nu, int32_t ni, const int32_t *lists,
				const int64_t *times)
{
	int64_t		n = 0,
				q;
	int32_t		u = 0;

	for (q = 0; u < nu; q++)
		if (lists[q] < 0)
			u++;
		else
			n++;
	in->n_users = nu;
	in->n_items = ni;
	in->ptr = malloc(sizeof(int64_t) * (nu + 1));
	in->items = malloc(sizeof(int32_t) * (n + 1));
	in->ts = times ? malloc(sizeof(int64_t) * (n + 1)) : NULL;
	in->ptr[0] = 0;
	n = 0;
	u = 0;
	for (q = 0; u < nu; q++)
	{
		if (lists[q] < 0)
		{
			in->ptr[++u] = n;
			continue;
		}
		if (times)
			in->ts[n] = times[q];
		in->items[n++] = lists[q];
	}
}

/* A random instance: each user rates lo..hi distinct items, skewed to low indexes. */
static void
inst_random(Inst *in, int32_t nu, int32_t ni, int lo, int hi, uint64_t seed)
{
	char	   *mark = calloc(ni, 1);
	int64_t		cap = (int64_t) nu * hi,
				n = 0;
	int32_t		u,
				j;

	rng_state = 0x9E3779B97F4A7C15ULL ^ seed;
	in->n_users = nu;
	in->n_items = ni;
	in->ptr = malloc(sizeof(int64_t) * (nu + 1));
	in->items = malloc(sizeof(int32_t) * cap);
	in->ts = malloc(sizeof(int64_t) * cap);
	in->ptr[0] = 0;
	for (u = 0; u < nu; u++)
	{
		int			m = lo + (int) (rng() % (uint64_t) (hi - lo + 1)),
					got = 0;

		if (m > ni)
			m = ni;
		while (got < m)
		{
			/* the product of two uniforms: popular low indexes */
			j = (int32_t) ((rng() % (uint64_t) ni) * (rng() % (uint64_t) ni) / ni);
			if (!mark[j])
			{
				mark[j] = 1;
				got++;
			}
		}
		for (j = 0; j < ni; j++)
			if (mark[j])
			{
				mark[j] = 0;
				in->items[n] = j;
				in->ts[n] = 1000 + (int64_t) (rng() % 50);	/* many equal times */
				n++;
			}
		in->ptr[u + 1] = n;
	}
	free(mark);
}

static void
inst_free(Inst *in)
{
	free(in->ptr);
	free(in->items);
	free(in->ts);
}

/* Run the kernel on an instance; the return code. */
static int
run(const Inst *in, const NbParams *p, Out *out, int (*intr) (void *), void *arg,
	char *err, size_t errlen)
{
	NbInput		ni;

	ni.n_users = in->n_users;
	ni.n_items = in->n_items;
	ni.user_ptr = in->ptr;
	ni.user_items = in->items;
	ni.user_ts = in->ts;
	err[0] = '\0';
	return NeighborsCompute(&ni, p, &out->o, intr, arg, err, errlen);
}

/* Default parameters: cosine, no damping, no shrinkage, one thread. */
static NbParams
params(int k)
{
	NbParams	p;

	memset(&p, 0, sizeof(p));
	p.k = k;
	p.user_cap = 0;
	p.alpha = 0.0;
	p.beta = 0.5;
	p.shrink = 0.0;
	p.min_common = 1;
	p.threads = 1;
	return p;
}

/* The naive reference: the same definition, pair by pair, sorted in full. */
typedef struct RefCand
{
	double		s;
	int32_t		j;
} RefCand;

static int
cmp_ref(const void *a, const void *b)
{
	const RefCand *x = a,
			   *y = b;

	if (x->s != y->s)
		return x->s > y->s ? -1 : 1;
	return x->j < y->j ? -1 : x->j > y->j;
}

/* Order (time desc, item desc) for the reference cap. */
static int
cmp_recent(const void *a, const void *b)
{
	const int64_t *x = a,
			   *y = b;

	if (x[0] != y[0])
		return x[0] > y[0] ? -1 : 1;
	return x[1] > y[1] ? -1 : x[1] < y[1];
}

/* Compare the kernel's output with the reference; count of differing rows. */
static int
reference_diff(const Inst *in, const NbParams *p, const Out *out)
{
	int32_t		nu = in->n_users,
				ni = in->n_items,
				u,
				i,
				j;
	char	   *has = calloc((size_t) nu * ni, 1);
	double	   *w = calloc(nu, sizeof(double)),
			   *W = calloc(ni, sizeof(double));
	RefCand    *c = malloc(sizeof(RefCand) * ni);
	int			bad = 0;

	for (u = 0; u < nu; u++)
	{
		int64_t		b = in->ptr[u],
					n = in->ptr[u + 1] - b,
					q;
		int64_t    *tmp = malloc(sizeof(int64_t) * 2 * (n + 1));

		for (q = 0; q < n; q++)
		{
			tmp[2 * q] = in->ts ? in->ts[b + q] : 0;
			tmp[2 * q + 1] = in->items[b + q];
		}
		qsort(tmp, n, 2 * sizeof(int64_t), cmp_recent);
		if (p->user_cap > 0 && n > p->user_cap)
			n = p->user_cap;
		for (q = 0; q < n; q++)
			has[(size_t) u * ni + tmp[2 * q + 1]] = 1;
		w[u] = n ? 1.0 / pow((double) n, p->alpha) : 0;
		free(tmp);
	}
	for (i = 0; i < ni; i++)
		for (u = 0; u < nu; u++)
			if (has[(size_t) u * ni + i])
				W[i] += w[u];
	for (i = 0; i < ni; i++)
	{
		int			nc = 0,
					r,
					cnt = out->o.count[i];

		for (j = 0; j < ni; j++)
		{
			double		co = 0;
			int			cc = 0;

			if (j == i)
				continue;
			for (u = 0; u < nu; u++)
				if (has[(size_t) u * ni + i] && has[(size_t) u * ni + j])
				{
					co += w[u];
					cc++;
				}
			if (cc >= p->min_common && cc > 0)
			{
				c[nc].s = co / (pow(W[i], p->beta) * pow(W[j], 1 - p->beta) + p->shrink);
				c[nc].j = j;
				nc++;
			}
		}
		qsort(c, nc, sizeof(RefCand), cmp_ref);
		if (nc > p->k)
			nc = p->k;
		if (cnt != nc)
		{
			if (bad++ < 3)
				printf("# reference row %d: count %d, expected %d\n", i, cnt, nc);
			continue;
		}
		for (r = 0; r < p->k; r++)
		{
			int32_t		en = r < nc ? c[r].j : -1;
			double		es = r < nc ? c[r].s : 0;
			int32_t		gn = out->o.nbr[(size_t) i * p->k + r];
			float		gs = out->o.sim[(size_t) i * p->k + r];

			if (gn != en || fabs(gs - es) > 1e-6 * (1 + fabs(es)))
			{
				if (bad++ < 3)
					printf("# reference row %d slot %d: %d %.9g, expected %d %.9g\n",
						   i, r, gn, gs, en, es);
				break;
			}
		}
	}
	free(has);
	free(w);
	free(W);
	free(c);
	return bad;
}

/* Interrupt after a given number of polls; counts the polls. */
typedef struct Poll
{
	int			calls;
	int			stop_at;		/* 0: never */
} Poll;

static int
poll_cb(void *arg)
{
	Poll	   *p = arg;

	p->calls++;
	return p->stop_at > 0 && p->calls >= p->stop_at;
}

int
main(void)
{
	char		err[512];
	NbParams	p;
	Out			out,
				out2;
	Inst		fx;
	int			rc;

	/*
	 * The fixture: 5 users, 6 items (item 5 rated by nobody).
	 *   u0 {0,1,2}  u1 {0,1}  u2 {1,2,3}  u3 {0,3,4}  u4 {2,3}
	 * Raters: W0 = W1 = W2 = W3 = 3, W4 = 1 (alpha 0, every w_u = 1).  Co-raters:
	 *   c(0,1)=2 (u0,u1)  c(0,2)=1  c(0,3)=1  c(0,4)=1 (u3)  c(1,2)=2 (u0,u2)  c(1,3)=1
	 *   c(2,3)=2 (u2,u4)  c(3,4)=1 (u3)  c(1,4)=c(2,4)=0
	 * Cosine (beta 0.5, shrink 0): co / sqrt(Wi Wj): 2/3 or 1/3 between the four, and
	 * 1/sqrt(3) = 0.577350 with item 4.  k = 3:
	 *   row 0: 1 (2/3), 4 (0.577350), 2 (1/3)    [2 and 3 tie at 1/3: 2 first]
	 *   row 1: 0 (2/3), 2 (2/3), 3 (1/3)         [0 and 2 tie]
	 *   row 2: 1 (2/3), 3 (2/3), 0 (1/3)         [0 and 1 tie at 1/3: 0 kept]
	 *   row 3: 2 (2/3), 4 (0.577350), 0 (1/3)    [0 and 1 tie: 0 kept]
	 *   row 4: 0, 3 (both 0.577350), one slot unused
	 *   row 5: empty
	 */
	{
		static const int32_t lists[] = {0, 1, 2, -1, 0, 1, -1, 1, 2, 3, -1, 0, 3, 4, -1, 2, 3, -1};
		const double t = 2.0 / 3,
					h = 1.0 / 3,
					r3 = 0.5773502691896258;

		inst_from_lists(&fx, 5, 6, lists, NULL);
		p = params(3);
		out_init(&out, 6, 3);
		rc = run(&fx, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK, "fixture: NB_OK");
		ok(row_is(&out, 0, 3, (int32_t[]) {1, 4, 2}, (double[]) {t, r3, h}),
		   "fixture row 0: exact cosines, tie to the lower index");
		ok(row_is(&out, 1, 3, (int32_t[]) {0, 2, 3}, (double[]) {t, t, h}),
		   "fixture row 1: equal top pair in index order");
		ok(row_is(&out, 2, 3, (int32_t[]) {1, 3, 0}, (double[]) {t, t, h}),
		   "fixture row 2: the lower of two tied items kept in the last slot");
		ok(row_is(&out, 3, 3, (int32_t[]) {2, 4, 0}, (double[]) {t, r3, h}),
		   "fixture row 3");
		ok(row_is(&out, 4, 2, (int32_t[]) {0, 3}, (double[]) {r3, r3}),
		   "fixture row 4: two neighbours, the third slot -1 and 0");
		ok(row_is(&out, 5, 0, NULL, NULL), "fixture row 5: an unrated item has none");

		/* the same with two and three threads */
		p.threads = 2;
		out_init(&out2, 6, 3);
		rc = run(&fx, &p, &out2, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK && out_equal(&out, &out2), "fixture: two threads, the same rows");
		out_free(&out2);
		p.threads = 3;
		out_init(&out2, 6, 3);
		rc = run(&fx, &p, &out2, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK && out_equal(&out, &out2), "fixture: three threads, the same rows");
		out_free(&out2);
		out_free(&out);

		/*
		 * Damping, asymmetry, shrinkage: alpha 1, beta 0.7, shrink 1.  n_u = 3, 2, 3,
		 * 3, 2, so w = 1/3, 1/2, 1/3, 1/3, 1/2; W0 = w0+w1+w3 = 7/6, W1 = w0+w1+w2 =
		 * 7/6, W2 = w0+w2+w4 = 7/6, W3 = w2+w3+w4 = 7/6, W4 = w3 = 1/3.
		 *   between 0..3 the denominator is (7/6)^0.7 (7/6)^0.3 + 1 = 13/6:
		 *     co(0,1) = w0+w1 = 5/6 -> 5/13 = 0.384615; co(0,2) = w0 = 1/3 -> 2/13
		 *     = 0.153846; co(0,3) = w3 -> 2/13; co(3,2) = w2+w4 = 5/6 -> 5/13;
		 *     co(3,0) = w3, co(3,1) = w2 -> 2/13
		 *   sim(0,4) = (1/3) / ((7/6)^0.7 (1/3)^0.3 + 1) = (1/3) / 1.801254 = 0.185065
		 *   sim(4,0) = (1/3) / ((1/3)^0.7 (7/6)^0.3 + 1) = (1/3) / 1.485399 = 0.224407
		 *   row 0: 1 (5/13), 4 (0.185065), 2 (2/13)   [2 and 3 tie]
		 *   row 3: 2 (5/13), 4 (0.185065), 0 (2/13)   [0 and 1 tie]
		 *   row 4: 0, 3 (both 0.224407: co(4,3) = w3, W3 = W0)
		 */
		p = params(3);
		p.alpha = 1.0;
		p.beta = 0.7;
		p.shrink = 1.0;
		out_init(&out, 6, 3);
		rc = run(&fx, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK &&
		   row_is(&out, 0, 3, (int32_t[]) {1, 4, 2}, (double[]) {5.0 / 13, 0.18506457, 2.0 / 13}),
		   "damped asymmetric row 0");
		ok(row_is(&out, 3, 3, (int32_t[]) {2, 4, 0}, (double[]) {5.0 / 13, 0.18506457, 2.0 / 13}),
		   "damped asymmetric row 3");
		ok(row_is(&out, 4, 2, (int32_t[]) {0, 3}, (double[]) {0.22440655, 0.22440655}),
		   "damped asymmetric row 4: sim(4,0) differs from sim(0,4)");
		out_free(&out);

		/* min_common 2: only (0,1), (1,2), (2,3) have two co-raters */
		p = params(3);
		p.min_common = 2;
		out_init(&out, 6, 3);
		rc = run(&fx, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK &&
		   row_is(&out, 0, 1, (int32_t[]) {1}, (double[]) {t}) &&
		   row_is(&out, 1, 2, (int32_t[]) {0, 2}, (double[]) {t, t}) &&
		   row_is(&out, 2, 2, (int32_t[]) {1, 3}, (double[]) {t, t}) &&
		   row_is(&out, 3, 1, (int32_t[]) {2}, (double[]) {t}) &&
		   row_is(&out, 4, 0, NULL, NULL) && row_is(&out, 5, 0, NULL, NULL),
		   "min_common 2 drops the pairs with one co-rater");
		out_free(&out);
		p.min_common = 4;
		out_init(&out, 6, 3);
		rc = run(&fx, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK && out.o.count[0] + out.o.count[1] + out.o.count[2] +
		   out.o.count[3] + out.o.count[4] + out.o.count[5] == 0,
		   "min_common 4: no neighbours at all");
		out_free(&out);

		/* k = 10, more than any item has */
		p = params(10);
		out_init(&out, 6, 10);
		rc = run(&fx, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK &&
		   row_is(&out, 0, 4, (int32_t[]) {1, 4, 2, 3}, (double[]) {t, r3, h, h}) &&
		   row_is(&out, 1, 3, (int32_t[]) {0, 2, 3}, (double[]) {t, t, h}) &&
		   row_is(&out, 4, 2, (int32_t[]) {0, 3}, (double[]) {r3, r3}) &&
		   row_is(&out, 5, 0, NULL, NULL),
		   "k 10: counts say how many, the rest -1 and 0");
		out_free(&out);
	}

	/*
	 * The cap: uA rates 0,1,2,3 at times 100,300,200,300; uB rates 0,2 at time 5.
	 * Most recent first, equal times to the higher item: (300,3) (300,1) (200,2)
	 * (100,0), so cap 2 keeps {1,3} and cap 3 keeps {1,2,3}.
	 */
	{
		static const int32_t lists[] = {0, 1, 2, 3, -1, 0, 2, -1};
		static const int64_t times[] = {100, 300, 200, 300, 0, 5, 5, 0};
		Inst		cp;

		inst_from_lists(&cp, 2, 4, lists, times);
		p = params(3);
		p.user_cap = 2;
		out_init(&out, 4, 3);
		rc = run(&cp, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK &&
		   row_is(&out, 0, 1, (int32_t[]) {2}, (double[]) {1}) &&
		   row_is(&out, 1, 1, (int32_t[]) {3}, (double[]) {1}) &&
		   row_is(&out, 2, 1, (int32_t[]) {0}, (double[]) {1}) &&
		   row_is(&out, 3, 1, (int32_t[]) {1}, (double[]) {1}),
		   "cap 2 keeps the two most recent (equal times: the higher item)");
		out_free(&out);

		/* weights from the ratings kept: w_A = 1/2, sim(1,3) = 0.5 / (0.5 + 1) */
		p.alpha = 1.0;
		p.shrink = 1.0;
		out_init(&out, 4, 3);
		rc = run(&cp, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK && row_is(&out, 1, 1, (int32_t[]) {3}, (double[]) {1.0 / 3}),
		   "cap: the weight counts the kept ratings (1/2, not 1/4)");
		out_free(&out);

		/* cap 3: uA {1,2,3}, uB {0,2}; W2 = 2, others 1 */
		p = params(3);
		p.user_cap = 3;
		out_init(&out, 4, 3);
		rc = run(&cp, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK &&
		   row_is(&out, 1, 2, (int32_t[]) {3, 2}, (double[]) {1, 0.70710678}) &&
		   row_is(&out, 0, 1, (int32_t[]) {2}, (double[]) {0.70710678}),
		   "cap 3 keeps {1,2,3}: item 0 only meets item 2");
		out_free(&out);

		/* no times: the highest indexes, {2,3} */
		free(cp.ts);
		cp.ts = NULL;
		p.user_cap = 2;
		out_init(&out, 4, 3);
		rc = run(&cp, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK &&
		   row_is(&out, 3, 1, (int32_t[]) {2}, (double[]) {0.70710678}) &&
		   row_is(&out, 1, 0, NULL, NULL),
		   "cap without times keeps the highest item indexes");
		out_free(&out);

		/* no cap */
		p.user_cap = 0;
		out_init(&out, 4, 3);
		rc = run(&cp, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK && out.o.count[1] == 3 && out.o.count[0] == 3,
		   "cap 0: every rating used");
		out_free(&out);
		inst_free(&cp);
	}

	/* a user with no ratings in the middle; no users at all; no items at all */
	{
		static const int32_t lists[] = {0, 1, -1, -1, 1, 2, -1};
		Inst		em;

		inst_from_lists(&em, 3, 3, lists, NULL);
		p = params(2);
		p.threads = 2;
		p.alpha = 1.0;
		out_init(&out, 3, 2);
		rc = run(&em, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK &&
		   row_is(&out, 1, 2, (int32_t[]) {0, 2}, (double[]) {0.70710678, 0.70710678}),
		   "a user without ratings is skipped");
		out_free(&out);
		em.n_users = 0;
		out_init(&out, 3, 2);
		rc = run(&em, &p, &out, NULL, NULL, err, sizeof(err));
		ok(rc == NB_OK && row_is(&out, 0, 0, NULL, NULL) && row_is(&out, 1, 0, NULL, NULL) &&
		   row_is(&out, 2, 0, NULL, NULL), "no users: every row empty");
		out_free(&out);
		em.n_items = 0;
		out_init(&out, 1, 2);
		ok(run(&em, &p, &out, NULL, NULL, err, sizeof(err)) == NB_OK, "no items: NB_OK");
		out_free(&out);
		inst_free(&em);
	}

	/* bad input and parameters */
	{
		int32_t		saved = fx.items[1];

		p = params(0);
		out_init(&out, 6, 1);
		ok(run(&fx, &p, &out, NULL, NULL, err, sizeof(err)) == NB_ERROR &&
		   strstr(err, "k 0") != NULL, "k 0 is an error with a message");
		p = params(3);
		p.beta = 1.5;
		ok(run(&fx, &p, &out, NULL, NULL, err, sizeof(err)) == NB_ERROR &&
		   strstr(err, "beta") != NULL, "beta 1.5 is an error");
		p = params(3);
		p.min_common = 0;
		ok(run(&fx, &p, &out, NULL, NULL, err, sizeof(err)) == NB_ERROR,
		   "min_common 0 is an error");
		p = params(3);
		p.threads = 0;
		ok(run(&fx, &p, &out, NULL, NULL, err, sizeof(err)) == NB_ERROR,
		   "threads 0 is an error");
		p = params(1);
		fx.items[1] = 0;		/* u0 {0,0,2} */
		ok(run(&fx, &p, &out, NULL, NULL, err, sizeof(err)) == NB_ERROR &&
		   strstr(err, "user 0 has item 0 out of order") != NULL,
		   "an item twice is an error naming the user");
		fx.items[1] = 7;
		ok(run(&fx, &p, &out, NULL, NULL, err, sizeof(err)) == NB_ERROR &&
		   strstr(err, "out of range") != NULL, "an item out of range is an error");
		fx.items[1] = saved;
		out_free(&out);
		inst_free(&fx);
	}

	/* the same rows whatever the thread count (both accumulation modes) */
	{
		Inst		md;
		Out			o1,
					o2,
					o3;
		int			mc;

		inst_random(&md, 2000, 500, 3, 60, 7);
		for (mc = 1; mc <= 2; mc++)
		{
			char		what[128];

			p = params(20);
			p.user_cap = 40;
			p.alpha = 0.5;
			p.shrink = 5;
			p.min_common = mc;
			out_init(&o1, 500, 20);
			out_init(&o2, 500, 20);
			out_init(&o3, 500, 20);
			rc = run(&md, &p, &o1, NULL, NULL, err, sizeof(err));
			p.threads = 2;
			rc |= run(&md, &p, &o2, NULL, NULL, err, sizeof(err));
			p.threads = 3;
			rc |= run(&md, &p, &o3, NULL, NULL, err, sizeof(err));
			snprintf(what, sizeof(what), "2000 x 500, min_common %d: 1, 2 and 3 threads "
					 "give identical rows", mc);
			ok(rc == NB_OK && out_equal(&o1, &o2) && out_equal(&o1, &o3) &&
			   o1.o.count[0] == 20, what);
			out_free(&o1);
			out_free(&o2);
			out_free(&o3);
		}

		/* a poll that never stops changes nothing */
		{
			Poll		pl = {0, 0};

			p.threads = 1;
			out_init(&o1, 500, 20);
			out_init(&o2, 500, 20);
			rc = run(&md, &p, &o1, NULL, NULL, err, sizeof(err));
			p.threads = 2;
			rc |= run(&md, &p, &o2, poll_cb, &pl, err, sizeof(err));
			ok(rc == NB_OK && out_equal(&o1, &o2) && pl.calls > 0,
			   "a callback answering 0 is polled and changes nothing");
			out_free(&o1);
			out_free(&o2);
		}
		inst_free(&md);
	}

	/*
	 * Interrupts at the 1st, 3rd and 30th poll, with 1 and 2 threads.  The kernel
	 * polls on entry, then every 2^20 steps: preparing 20000 users (1.2M ratings)
	 * polls about 5 times, the work (about 8e7 accumulations) about 80 times.
	 */
	{
		Inst		big;
		int			th;

		inst_random(&big, 20000, 3000, 20, 100, 11);
		for (th = 1; th <= 2; th++)
		{
			/*
			 * With 2 threads the calling thread's share of the work (and so its number
			 * of polls) depends on the scheduling: stop at a poll it always reaches.
			 */
			Poll		at_once = {0, 1},
						prep = {0, 3},
						later = {0, th == 1 ? 30 : 10};
			char		what[128];

			p = params(20);
			p.threads = th;
			out_init(&out, 3000, 20);
			rc = run(&big, &p, &out, poll_cb, &at_once, err, sizeof(err));
			snprintf(what, sizeof(what), "%d thread(s): interrupted at the first poll", th);
			ok(rc == NB_INTERRUPTED && at_once.calls == 1, what);
			rc = run(&big, &p, &out, poll_cb, &prep, err, sizeof(err));
			snprintf(what, sizeof(what), "%d thread(s): interrupted while preparing "
					 "(3rd poll), not polled again", th);
			ok(rc == NB_INTERRUPTED && prep.calls == 3, what);
			rc = run(&big, &p, &out, poll_cb, &later, err, sizeof(err));
			snprintf(what, sizeof(what), "%d thread(s): interrupted during the work "
					 "(poll %d), not polled again", th, later.stop_at);
			ok(rc == NB_INTERRUPTED && later.calls == later.stop_at, what);
			out_free(&out);
		}
		inst_free(&big);
	}

	/* the naive reference on random small instances */
	{
		static const struct
		{
			int			cap,
						k,
						min_common;
			double		alpha,
						beta,
						shrink;
		}			cf[] = {
			{0, 5, 1, 0.0, 0.5, 0.0},
			{8, 5, 2, 0.7, 0.3, 0.5},
			{12, 40, 1, 1.0, 0.9, 2.0},
			{5, 3, 3, 0.5, 0.5, 10.0},
		};
		int			c;

		for (c = 0; c < (int) (sizeof(cf) / sizeof(cf[0])); c++)
		{
			Inst		sm;
			char		what[160];
			int			bad;

			inst_random(&sm, 80, 40, 1, 15, 100 + c);
			p = params(cf[c].k);
			p.user_cap = cf[c].cap;
			p.min_common = cf[c].min_common;
			p.alpha = cf[c].alpha;
			p.beta = cf[c].beta;
			p.shrink = cf[c].shrink;
			p.threads = 1 + c % 2;
			out_init(&out, 40, cf[c].k);
			rc = run(&sm, &p, &out, NULL, NULL, err, sizeof(err));
			bad = rc == NB_OK ? reference_diff(&sm, &p, &out) : -1;
			snprintf(what, sizeof(what), "reference: cap %d k %d min_common %d alpha %g "
					 "beta %g shrink %g, %d thread(s): every row equal",
					 cf[c].cap, cf[c].k, cf[c].min_common, cf[c].alpha, cf[c].beta,
					 cf[c].shrink, p.threads);
			ok(bad == 0, what);
			out_free(&out);
			inst_free(&sm);
		}
	}

	return tap_done();
}
