/*
 * neighbors_kernel.h: the item-neighbour kernel of the aggregation stage (plain C, no
 * PostgreSQL header, so it can be tested alone under valgrind).
 *
 * Input: the ratings as a CSR by user (item indexes 0..n_items-1, ascending within
 * each user) and optionally each rating's time.  Output: for every item its k most
 * similar items, most similar first.  The similarity (binary co-occurrence, user
 * damping, asymmetric cosine, shrinkage), the cap rule and the threading are stated in
 * neighbors_kernel.c's opening block.
 */
#ifndef RECSYS_NEIGHBORS_KERNEL_H
#define RECSYS_NEIGHBORS_KERNEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct NbInput
{
	int32_t		n_users,
				n_items;
	const int64_t *user_ptr;	/* n_users + 1 offsets into user_items (CSR by user) */
	const int32_t *user_items;	/* item indexes 0..n_items-1, ascending within each
								 * user */
	const int64_t *user_ts;		/* same length as user_items: rating time (epoch s),
								 * or NULL */
} NbInput;

typedef struct NbParams
{
	int			k;				/* neighbours kept per item (>= 1) */
	int			user_cap;		/* use at most this many of a user's ratings: the most
								 * recent by user_ts, ties (and every rating when
								 * user_ts is NULL) to the higher item index; 0 = no
								 * cap */
	double		alpha;			/* user damping: w_u = 1 / n_u^alpha (n_u = ratings
								 * used), >= 0 */
	double		beta;			/* asymmetric cosine exponent in [0, 1]: 0.5 = cosine */
	double		shrink;			/* shrinkage added to the denominator, >= 0 */
	int			min_common;		/* pairs with fewer co-raters than this are not
								 * neighbours (>= 1) */
	int			threads;		/* worker threads, 1..NB_MAX_THREADS (1 = everything
								 * in the calling thread) */
} NbParams;

/* Output, caller-allocated: n_items * k slots each; unused slots nbr = -1, sim = 0. */
typedef struct NbOutput
{
	int32_t    *nbr;			/* row i: slots [i*k, i*k + k) */
	float	   *sim;
	int32_t    *count;			/* count[i] = slots used */
} NbOutput;

#define NB_OK 0
#define NB_ERROR (-1)
#define NB_INTERRUPTED 1

#define NB_MAX_THREADS 64

/*
 * Compute every item's k nearest neighbours into out.  interrupt (may be NULL) is
 * polled by the calling thread only, at least every ~50 ms; it must return (never
 * longjmp) and a nonzero result stops the computation: every thread is joined and
 * NB_INTERRUPTED returned.  NB_ERROR (bad input or parameters, out of memory) leaves a
 * message in err.  On anything but NB_OK the contents of out are unspecified.  Only
 * libc and pthreads are used, the calling thread's signal mask is unchanged, and all
 * memory the call allocates is freed before it returns.
 */
extern int	NeighborsCompute(const NbInput *in, const NbParams *p, NbOutput *out,
							 int (*interrupt) (void *arg), void *arg,
							 char *err, size_t errlen);

/*
 * The work the main phase does for these inputs: the sum over users of n_u^2, n_u the
 * ratings used (after the cap).  For benchmarks and for sizing a run.
 */
extern int64_t NeighborsWork(const NbInput *in, int user_cap);

#endif							/* RECSYS_NEIGHBORS_KERNEL_H */
