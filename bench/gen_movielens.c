/*
 * gen_movielens.c: a synthetic data set with MovieLens 25M's shape, for the benchmarks.
 *
 *   cc -O2 -o gen_movielens bench/gen_movielens.c -lm
 *   gen_movielens [--ratings N] [--seed S] [--out DIR] [--users U] [--movies M]
 *                 [--increment K] [--new-users X] [--quiet]
 *
 * Writes, in MovieLens's formats (header line first):
 *   DIR/movies.csv     movieId,title,genres  the catalogue, M movies (default 62,423)
 *   DIR/ratings.csv    userId,movieId,rating,timestamp  exactly N ratings (default
 *                      1,000,000), users 1..U in order, each user's ratings in time order
 *   DIR/increment.csv  K ratings (default 1 % of N; --increment 0 writes no file), all
 *                      later than every rating of ratings.csv, in time order
 * and a summary of the shape on stderr (--quiet: none).  Everything is a function of
 * the seed (default 1) and the sizes; the catalogue depends on the seed and M only, so
 * every N shares one movies.csv.
 *
 * The shape, after MovieLens 25M (162,541 users, 62,423 movies, 25,000,095 ratings):
 *  - Users: U defaults to N * 162541 / 25000095 (about 154 ratings a user); the
 *    catalogue stays at 62,423 movies at every N, so a smaller N looks like a random
 *    sample of MovieLens's users (the same catalogue, each movie with N/25M of its
 *    ratings, the tail unrated), which is what a smaller MovieLens would be.
 *  - Activity: 20 + a lognormal (median 51, sigma 1.39), so the median user has about
 *    70 ratings, the mean is 154 and a few have thousands; capped at M/4; then scaled
 *    so the total is exactly N.
 *  - Movies: each has a popularity weight on a curve approximating MovieLens 25M's
 *    rank-count curve (log-log interpolation through rank 1: 190,000, 10: 100,000,
 *    100: 46,000, 1,000: 7,000, 3,800: 1,000, 13,000: 100, 29,500: 6, 59,000: 1; the
 *    head is raised because a user rates a movie once: at 25M the most rated movie
 *    gets about 68,000 ratings, MovieLens's 81,491): a Zipf-like curve with a soft head
 *    and a steep tail, so most ratings fall on a few thousand movies and tens of
 *    thousands have 1 to 5 (or, at smaller N, none).  Lower ids lean popular.  Ids
 *    increase with gaps up to about 209,000, as MovieLens's do; titles "Movie 123
 *    (1997)", one in twenty "Movie 123, The (1997)" (quoted, it has a comma), one in
 *    two hundred with a quoted word ("" inside quotes); genres from MovieLens's 19 plus
 *    "(no genres listed)", each drawn with its share of the MovieLens 25M catalogue
 *    (Drama 41 %, Comedy 27 %, ..., IMAX 0.3 %), in alphabetical order.
 *  - Tastes: each user favours 2 or 3 genres (drawn by their share of all ratings) and
 *    draws 60 % of its movies from them; a user never rates a movie twice (a bitmap of
 *    the user's movies, rejection sampling, a scan when rejection stalls).
 *  - Ratings: a latent score = user bias N(0, 0.45) + movie quality N(0, 0.5) (higher
 *    for popular movies) + 0.4 on a favoured genre + noise N(0, 0.8), cut into half
 *    stars at the quantiles of MovieLens 25M's histogram (4.0 26.6 %, 3.0 19.6 %, 5.0
 *    14.4 %, 3.5 12.6 %, ...), the quantiles measured on the first users' ratings
 *    (about 500,000, drawn exactly as the main pass draws them), so the file's
 *    histogram is MovieLens's to within half a point per star value.
 *  - Time: a user rates over an activity period (start uniform between 1995-01-09 and
 *    2019-11-21, length lognormal, median 3 days, at least 30 s a rating), timestamps
 *    strictly increasing.  The increment's ratings fall in the week after 2019-11-21.
 *  - Increment: K - (new users' ratings) new ratings by existing users, each drawn with
 *    a probability proportional to the user's base activity, of movies the user has
 *    not rated (the base file's sets are known: a user's base and increment ratings
 *    are drawn in one pass from the user's own random stream), plus X new users
 *    (default 0.5 % of U, at least 1; ids U+1..U+X), each with one session of 20 to 80
 *    ratings (mean about 32) in that week; new users take at most half of K.
 *
 * Not modelled: a movie's release year against its ratings' dates, tags, MovieLens's
 * whole-star-only years before 2003.  Speed: 25M ratings in 10 to 15 s on one core of
 * the project's machine (7 s of CPU; the rest is writing 680 MB); memory about 40 MB.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define ML_USERS 162541.0
#define ML_RATINGS 25000095.0
#define ML_MOVIES 62423
#define T_START 789652009L		/* 1995-01-09 11:46:49 UTC, MovieLens's first */
#define T_END 1574327703L		/* 2019-11-21 09:15:03 UTC, MovieLens 25M's last */
#define INC_SPAN (7L * 86400L)	/* the increment's week */
#define FAV_SHARE 0.6			/* share of a user's draws from favoured genres */
#define FAV_BONUS 0.4			/* latent bonus of a favoured genre */
#define NGENRES 19
#define NLEVELS 10
#define PILOT 500000

typedef struct Rng
{
	uint64_t	s[4];
} Rng;

typedef struct Alias
{
	int			n;
	double	   *prob;
	int		   *alias;
	int		   *item;			/* what index i stands for (NULL: i itself) */
} Alias;

typedef struct Movie
{
	long		id;
	int			year;
	uint32_t	genres;			/* bit g: genre g; 0: (no genres listed) */
	double		quality;
} Movie;

typedef struct User
{
	long		n;				/* base ratings */
	long		inc;			/* increment ratings */
	double		bias;
	int			nfav;
	int			fav[3];
	uint32_t	favmask;
	long		start;
	long		span;
} User;

typedef struct Event
{
	long		ts;
	long		user;
	long		movie;
	int			level;
} Event;

typedef struct KeyIndex
{
	double		key;
	long		index;
} KeyIndex;

typedef struct Out
{
	FILE	   *f;
	const char *path;
	char	   *buf;
	size_t		len;
} Out;

/* MovieLens's genres in alphabetical order, with their share of the 25M catalogue. */
static const char *const genre_names[NGENRES] = {
	"Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
	"Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance",
	"Sci-Fi", "Thriller", "War", "Western"
};
static const double genre_movies[NGENRES] = {
	7348, 4145, 2929, 2935, 16870, 5319, 5605, 25606, 2731, 353, 5989, 195, 1054, 2925,
	7719, 3595, 8654, 1874, 1399
};
#define NO_GENRES_MOVIES 5062

/* MovieLens 25M's ratings histogram, 0.5 to 5.0 (per cent). */
static const double level_share[NLEVELS] = {
	1.57, 3.14, 1.60, 6.63, 5.04, 19.61, 12.57, 26.59, 8.48, 14.40
};

/* MovieLens 25M's rank-count curve: (rank, ratings) knots, log-log interpolated. */
static const double pop_knots[][2] = {
	{1, 190000}, {10, 100000}, {100, 46000}, {1000, 7000}, {3800, 1000}, {13000, 100}, {29500, 6},
	{59000, 1}, {62423, 0.3}
};

static long opt_ratings = 1000000;
static long opt_seed = 1;
static const char *opt_out = ".";
static long opt_users = -1;
static long opt_movies = ML_MOVIES;
static long opt_increment = -1;
static long opt_new_users = -1;
static int	opt_quiet = 0;

static Movie *movies;			/* indexed by popularity rank */
static double *pop;				/* popularity weight by rank */
static Alias global_alias;
static Alias genre_alias[NGENRES];
static double genre_mass[NGENRES];	/* share of ratings' draws per genre */
static Alias genre_pick;
static User *users;
static double thresholds[NLEVELS - 1];
static long *movie_count;
static long level_count[NLEVELS];
static long inc_new_ratings;
static long inc_level_count[NLEVELS];

static uint64_t splitmix(uint64_t *x);
static void rng_seed(Rng *r, uint64_t a, uint64_t b);
static uint64_t rng_next(Rng *r);
static double rng_unif(Rng *r);
static double rng_normal(Rng *r);
static void alias_build(Alias *a, const double *w, int *item, int n);
static int	alias_draw(const Alias *a, Rng *r);
static void make_movies(void);
static void make_users(long nusers, long total);
static int	draw_movie(const User *u, Rng *r, uint8_t *seen);
static int	rating_level(const User *u, const Movie *m, Rng *r);
static double latent(const User *u, const Movie *m, Rng *r);
static void calibrate(long nusers, uint8_t *seen, int *ranks);
static void allocate_increment(long nusers, long k);
static void out_open(Out *o, const char *dir, const char *name, const char *header);
static void out_reserve(Out *o, size_t n);
static void out_close(Out *o);
static void out_rating(Out *o, long user, long movie, int level, long ts);
static char *put_long(char *p, long v);
static void write_movies(void);
static int	cmp_key_index(const void *a, const void *b);
static int	cmp_double(const void *a, const void *b);
static int	cmp_long_desc(const void *a, const void *b);
static int	cmp_long(const void *a, const void *b);
static int	cmp_event(const void *a, const void *b);
static long spread(long span, long i, long n, Rng *r);
static long quantile(const long *v, long n, double q);
static long parse_long(const char *opt, const char *s);
static void summary(long nusers, long nratings, const Event *inc, long ninc,
					long newusers, double seconds);
static void usage(const char *msg);
static void die(const char *what, const char *path);

/* Advance a splitmix64 state and return its next output. */
static uint64_t
splitmix(uint64_t *x)
{
	uint64_t	z = (*x += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* Seed a xoshiro256** stream from the run's seed and a stream number. */
static void
rng_seed(Rng *r, uint64_t a, uint64_t b)
{
	uint64_t	x = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL) * 0xD1B54A32D192ED03ULL;
	int			i;

	for (i = 0; i < 4; i++)
		r->s[i] = splitmix(&x);
}

/* Return the next 64 bits of a xoshiro256** stream. */
static uint64_t
rng_next(Rng *r)
{
	uint64_t   *s = r->s;
	uint64_t	x = s[1] * 5;
	uint64_t	result = ((x << 7) | (x >> 57)) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = (s[3] << 45) | (s[3] >> 19);
	return result;
}

/* Return a uniform number in [0, 1). */
static double
rng_unif(Rng *r)
{
	return (double) (rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Return a standard normal number (Box-Muller, one of the pair). */
static double
rng_normal(Rng *r)
{
	double		u = 1.0 - rng_unif(r);
	double		v = rng_unif(r);

	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Build a Walker-Vose alias table over n weights; item maps entries to values. */
static void
alias_build(Alias *a, const double *w, int *item, int n)
{
	double	   *p = malloc(sizeof(double) * n);
	int		   *small = malloc(sizeof(int) * n),
			   *large = malloc(sizeof(int) * n);
	int			ns = 0,
				nl = 0,
				i;
	double		sum = 0;

	a->n = n;
	a->prob = malloc(sizeof(double) * n);
	a->alias = malloc(sizeof(int) * n);
	a->item = item;
	if (!p || !small || !large || !a->prob || !a->alias)
		die("out of memory", NULL);
	for (i = 0; i < n; i++)
		sum += w[i];
	for (i = 0; i < n; i++)
	{
		p[i] = w[i] * n / sum;
		if (p[i] < 1.0)
			small[ns++] = i;
		else
			large[nl++] = i;
	}
	while (ns > 0 && nl > 0)
	{
		int			s = small[--ns],
					l = large[--nl];

		a->prob[s] = p[s];
		a->alias[s] = l;
		p[l] -= 1.0 - p[s];
		if (p[l] < 1.0)
			small[ns++] = l;
		else
			large[nl++] = l;
	}
	while (nl > 0)
	{
		i = large[--nl];
		a->prob[i] = 1.0;
		a->alias[i] = i;
	}
	while (ns > 0)
	{
		i = small[--ns];
		a->prob[i] = 1.0;
		a->alias[i] = i;
	}
	free(p);
	free(small);
	free(large);
}

/* Draw one value from an alias table. */
static int
alias_draw(const Alias *a, Rng *r)
{
	uint64_t	x = rng_next(r);
	int			i = (int) (((x >> 32) * (uint64_t) a->n) >> 32);
	double		u = (double) (x & 0xFFFFFFFFULL) * (1.0 / 4294967296.0);
	int			j = u < a->prob[i] ? i : a->alias[i];

	return a->item ? a->item[j] : j;
}

/* Make the catalogue: popularity by rank, ids, years, genres, quality; the samplers. */
static void
make_movies(void)
{
	long		m = opt_movies,
				i,
				k;
	Rng			r;
	KeyIndex   *kv = malloc(sizeof(KeyIndex) * m);
	long	   *ids = malloc(sizeof(long) * m);
	double		scale = (double) ML_MOVIES / m;
	int			g;
	double		genre_total = 0,
				mass_total = 0;

	movies = calloc(m, sizeof(Movie));
	pop = malloc(sizeof(double) * m);
	movie_count = calloc(m, sizeof(long));
	if (!kv || !ids || !movies || !pop || !movie_count)
		die("out of memory", NULL);
	rng_seed(&r, opt_seed, 0xCA7A1066ULL);

	/* the popularity curve, its ranks stretched to the catalogue's size */
	for (i = 0; i < m; i++)
	{
		double		rank = (i + 1) * scale;
		int			nk = sizeof(pop_knots) / sizeof(pop_knots[0]);

		for (k = 0; k < nk - 2 && rank > pop_knots[k + 1][0]; k++)
			;
		pop[i] = exp(log(pop_knots[k][1]) +
					 (log(rank) - log(pop_knots[k][0])) /
					 (log(pop_knots[k + 1][0]) - log(pop_knots[k][0])) *
					 (log(pop_knots[k + 1][1]) - log(pop_knots[k][1])));
	}

	/* ids increase with gaps (mean 3.35: about 209,000 at 62,423 movies) */
	ids[0] = 1;
	for (i = 1; i < m; i++)
		ids[i] = ids[i - 1] + 1 + (long) (-2.35 * log(1.0 - rng_unif(&r)) + 0.5);

	for (g = 0; g < NGENRES; g++)
		genre_total += genre_movies[g];

	/* which id gets which popularity rank: random, lower ids leaning popular */
	for (i = 0; i < m; i++)
	{
		kv[i].key = rng_unif(&r) * (0.25 + (double) i / m);
		kv[i].index = i;
	}
	qsort(kv, m, sizeof(KeyIndex), cmp_key_index);

	for (i = 0; i < m; i++)
	{
		Movie	   *mv = &movies[i];
		double		e = -log(1.0 - rng_unif(&r));
		uint32_t	gs = 0;

		mv->id = ids[kv[i].index];
		mv->year = 2019 - (int) (22.0 * e);
		if (mv->year < 1902)
			mv->year = 1902 + (int) (rng_next(&r) % 30);
		if (rng_unif(&r) >= (double) NO_GENRES_MOVIES / ML_MOVIES)
		{
			for (g = 0; g < NGENRES; g++)
				if (rng_unif(&r) < genre_movies[g] / (ML_MOVIES - NO_GENRES_MOVIES) * 0.9)
					gs |= 1u << g;
			if (gs == 0)
			{
				double		u = rng_unif(&r) * genre_total;

				for (g = 0; g < NGENRES - 1 && u >= genre_movies[g]; g++)
					u -= genre_movies[g];
				gs = 1u << g;
			}
		}
		mv->genres = gs;
		/* popular movies are rated higher, as in MovieLens */
		mv->quality = 0.5 * rng_normal(&r) + 0.35 * (0.5 - log1p((double) i) / log1p((double) m));
	}

	alias_build(&global_alias, pop, NULL, (int) m);
	for (g = 0; g < NGENRES; g++)
	{
		int		   *item = malloc(sizeof(int) * m);
		double	   *w = malloc(sizeof(double) * m);
		int			n = 0;

		if (!item || !w)
			die("out of memory", NULL);
		genre_mass[g] = 0;
		for (i = 0; i < m; i++)
			if (movies[i].genres & (1u << g))
			{
				item[n] = (int) i;
				w[n++] = pop[i];
				genre_mass[g] += pop[i];
			}
		if (n == 0)
		{
			item[n] = 0;
			w[n++] = 1;
		}
		alias_build(&genre_alias[g], w, item, n);
		mass_total += genre_mass[g];
		free(w);
	}
	for (g = 0; g < NGENRES; g++)
		genre_mass[g] /= mass_total;
	alias_build(&genre_pick, genre_mass, NULL, NGENRES);
	free(kv);
	free(ids);
}

/* Compare two (key, index) pairs by key. */
static int
cmp_key_index(const void *a, const void *b)
{
	double		x = ((const KeyIndex *) a)->key,
				y = ((const KeyIndex *) b)->key;

	return x < y ? -1 : x > y;
}

/* Compare two doubles, ascending. */
static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* Make the users: activity summing to total, biases, favoured genres, periods. */
static void
make_users(long nusers, long total)
{
	long		i,
				sum = 0,
				cap = opt_movies / 4;
	Rng			r;
	double		excess = 0,
				want,
				f,
				carry = 0;

	if (cap < 20)
		cap = 20;
	users = calloc(nusers + 1, sizeof(User));
	if (!users)
		die("out of memory", NULL);
	rng_seed(&r, opt_seed, 0x05E75ULL);
	for (i = 1; i <= nusers; i++)
	{
		User	   *u = &users[i];
		double		x = 51.0 * exp(1.39 * rng_normal(&r));
		int			k;

		u->n = 20 + (long) x;
		if (u->n > cap)
			u->n = cap;
		u->bias = 0.45 * rng_normal(&r);
		u->nfav = 2 + (rng_unif(&r) < 0.5);
		u->favmask = 0;
		for (k = 0; k < u->nfav; k++)
		{
			int			g;

			do
				g = alias_draw(&genre_pick, &r);
			while (u->favmask & (1u << g));
			u->fav[k] = g;
			u->favmask |= 1u << g;
		}
		u->start = T_START + (long) (rng_unif(&r) * (T_END - T_START));
		u->span = (long) (3 * 86400.0 * exp(2.0 * rng_normal(&r)));
	}

	/* scale the activity above 20 so that the total is exactly the file's size */
	for (i = 1; i <= nusers; i++)
		excess += users[i].n - 20;
	want = (double) total - 20.0 * nusers;
	f = excess > 0 ? want / excess : 0;
	for (i = 1; i <= nusers; i++)
	{
		double		x = (users[i].n - 20) * f + carry;
		long		add = (long) floor(x + 0.5);

		carry = x - add;
		users[i].n = 20 + add;
		if (users[i].n > cap)
			users[i].n = cap;
		if (users[i].n < 20)
			users[i].n = 20;
		sum += users[i].n;
	}
	/* what rounding and the cap left over: one rating at a time, on random users */
	while (sum != total)
	{
		User	   *u = &users[1 + rng_next(&r) % nusers];

		if (sum < total && u->n < cap)
			u->n++, sum++;
		else if (sum > total && u->n > 20)
			u->n--, sum--;
	}
	for (i = 1; i <= nusers; i++)
	{
		long		min_span = 30 * (users[i].n + 1);

		if (users[i].span < min_span)
			users[i].span = min_span;
		if (users[i].start + users[i].span > T_END)
			users[i].start = T_END - users[i].span;
		if (users[i].start < T_START)
		{
			users[i].start = T_START;
			if (users[i].span > T_END - T_START)
				users[i].span = T_END - T_START;
		}
	}
}

/* Draw a movie (its rank) the user has not rated yet, and mark it. */
static int
draw_movie(const User *u, Rng *r, uint8_t *seen)
{
	int			tries,
				mv = 0;

	for (tries = 0; tries < 200; tries++)
	{
		if (rng_unif(r) < FAV_SHARE)
			mv = alias_draw(&genre_alias[u->fav[rng_next(r) % u->nfav]], r);
		else
			mv = alias_draw(&global_alias, r);
		if (!(seen[mv >> 3] & (1 << (mv & 7))))
			break;
	}
	/* rejection stalls only for the heaviest users: take the next unrated rank */
	while (seen[mv >> 3] & (1 << (mv & 7)))
		mv = (mv + 1) % (int) opt_movies;
	seen[mv >> 3] |= 1 << (mv & 7);
	return mv;
}

/* Return the user's latent score for the movie. */
static double
latent(const User *u, const Movie *m, Rng *r)
{
	double		z = u->bias + m->quality + 0.8 * rng_normal(r);

	if (m->genres & u->favmask)
		z += FAV_BONUS;
	return z;
}

/* Return the half-star level (0: 0.5 .. 9: 5.0) the user gives the movie. */
static int
rating_level(const User *u, const Movie *m, Rng *r)
{
	double		z = latent(u, m, r);
	int			l = 0;

	while (l < NLEVELS - 1 && z >= thresholds[l])
		l++;
	return l;
}

/*
 * Set the level thresholds to the quantiles of MovieLens's histogram among the first
 * users' base ratings (about PILOT of them), drawn exactly as the main pass draws them
 * (same streams, same calls: keep the two in step), so that the no-repeat rule's pull
 * of heavy users towards the tail is part of the calibration.
 */
static void
calibrate(long nusers, uint8_t *seen, int *ranks)
{
	double	   *z = malloc(sizeof(double) * (PILOT + opt_movies));
	long		nz = 0,
				u,
				i;
	double		acc = 0;
	int			l;

	if (!z)
		die("out of memory", NULL);
	for (u = 1; u <= nusers && nz < PILOT; u++)
	{
		const User *x = &users[u];
		Rng			r;

		rng_seed(&r, opt_seed, (uint64_t) u);
		for (i = 0; i < x->n; i++)
		{
			int			mv = draw_movie(x, &r, seen);

			ranks[i] = mv;
			z[nz++] = latent(x, &movies[mv], &r);
			(void) spread(x->span, i, x->n, &r);
		}
		for (i = 0; i < x->n; i++)
			seen[ranks[i] >> 3] = 0;
	}
	qsort(z, nz, sizeof(double), cmp_double);
	for (l = 0; l < NLEVELS - 1; l++)
	{
		acc += level_share[l] / 100.0;
		thresholds[l] = z[(long) (acc * (nz - 1))];
	}
	free(z);
}

/*
 * Return the offset of the i-th of n times spread over span seconds: slot i of n, and
 * a jitter that keeps the times strictly increasing (a slot is at least 2 s long).
 */
static long
spread(long span, long i, long n, Rng *r)
{
	double		w = (double) span / n;
	long		slot = (long) floor(w);

	return (long) floor(i * w) + (long) (rng_unif(r) * (slot - 1));
}

/* Spread the existing users' k increment ratings in proportion to their activity. */
static void
allocate_increment(long nusers, long k)
{
	long	   *cum = malloc(sizeof(long) * (nusers + 1));
	long		i,
				cap = opt_movies / 2;
	Rng			r;

	if (!cum)
		die("out of memory", NULL);
	cum[0] = 0;
	for (i = 1; i <= nusers; i++)
		cum[i] = cum[i - 1] + users[i].n;
	if (k > 0 && cap * nusers - cum[nusers] < k + nusers)
		usage("--increment is too large: existing users would rate over half the catalogue");
	rng_seed(&r, opt_seed, 0x1AC0ULL);
	while (k > 0)
	{
		long		x = (long) (rng_next(&r) % (uint64_t) cum[nusers]),
					lo = 1,
					hi = nusers;

		while (lo < hi)
		{
			long		mid = (lo + hi) / 2;

			if (cum[mid] > x)
				hi = mid;
			else
				lo = mid + 1;
		}
		if (users[lo].n + users[lo].inc < cap)
		{
			users[lo].inc++;
			k--;
		}
	}
	free(cum);
}

/* Open DIR/NAME for writing and write its header line. */
static void
out_open(Out *o, const char *dir, const char *name, const char *header)
{
	size_t		n = strlen(dir) + strlen(name) + 2;
	char	   *path = malloc(n);

	if (!path)
		die("out of memory", NULL);
	snprintf(path, n, "%s/%s", dir, name);
	o->path = path;
	o->f = fopen(path, "w");
	if (!o->f)
		die("cannot open", path);
	o->buf = malloc(1 << 20);
	if (!o->buf)
		die("out of memory", NULL);
	o->len = 0;
	out_reserve(o, strlen(header) + 1);
	memcpy(o->buf, header, strlen(header));
	o->len = strlen(header);
	o->buf[o->len++] = '\n';
}

/* Make room for n more bytes in the buffer, writing it out when full. */
static void
out_reserve(Out *o, size_t n)
{
	if (o->len + n <= (1 << 20))
		return;
	if (fwrite(o->buf, 1, o->len, o->f) != o->len)
		die("cannot write", o->path);
	o->len = 0;
}

/* Write the rest of the buffer and close the file. */
static void
out_close(Out *o)
{
	if (o->len > 0 && fwrite(o->buf, 1, o->len, o->f) != o->len)
		die("cannot write", o->path);
	if (fclose(o->f) != 0)
		die("cannot write", o->path);
	chmod(o->path, 0644);
	free(o->buf);
	free((char *) o->path);
}

/* Write one userId,movieId,rating,timestamp line. */
static void
out_rating(Out *o, long user, long movie, int level, long ts)
{
	char	   *p;

	out_reserve(o, 80);
	p = o->buf + o->len;
	p = put_long(p, user);
	*p++ = ',';
	p = put_long(p, movie);
	*p++ = ',';
	*p++ = '0' + (level + 1) / 2;
	*p++ = '.';
	*p++ = (level % 2 == 0) ? '5' : '0';
	*p++ = ',';
	p = put_long(p, ts);
	*p++ = '\n';
	o->len = p - o->buf;
}

/* Write a non-negative number in decimal; return the end. */
static char *
put_long(char *p, long v)
{
	char		tmp[24];
	int			n = 0;

	do
	{
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v > 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

/* Write DIR/movies.csv in id order. */
static void
write_movies(void)
{
	Out			o;
	long		m = opt_movies,
				i;
	long	   *byid = malloc(sizeof(long) * m);
	Rng			r;

	if (!byid)
		die("out of memory", NULL);
	/* ranks in id order: sort id * 2^20 + rank (ids are distinct, ranks < 2^20) */
	for (i = 0; i < m; i++)
		byid[i] = movies[i].id * 1048576L + i;
	qsort(byid, m, sizeof(long), cmp_long);
	rng_seed(&r, opt_seed, 0x717135ULL);
	out_open(&o, opt_out, "movies.csv", "movieId,title,genres");
	for (i = 0; i < m; i++)
	{
		const Movie *mv = &movies[byid[i] % 1048576L];
		double		u = rng_unif(&r);
		char	   *p;
		int			g,
					first = 1;

		out_reserve(&o, 512);
		p = o.buf + o.len;
		p = put_long(p, mv->id);
		if (u < 0.05)
			p += sprintf(p, ",\"Movie %ld, The (%d)\",", mv->id, mv->year);
		else if (u < 0.055)
			p += sprintf(p, ",\"Movie %ld \"\"Redux\"\" (%d)\",", mv->id, mv->year);
		else
			p += sprintf(p, ",Movie %ld (%d),", mv->id, mv->year);
		if (mv->genres == 0)
			p += sprintf(p, "(no genres listed)");
		for (g = 0; g < NGENRES; g++)
			if (mv->genres & (1u << g))
			{
				if (!first)
					*p++ = '|';
				p += sprintf(p, "%s", genre_names[g]);
				first = 0;
			}
		*p++ = '\n';
		o.len = p - o.buf;
	}
	out_close(&o);
	free(byid);
}

/* Compare two longs, descending. */
static int
cmp_long_desc(const void *a, const void *b)
{
	long		x = *(const long *) a,
				y = *(const long *) b;

	return x > y ? -1 : x < y;
}

/* Compare two longs, ascending. */
static int
cmp_long(const void *a, const void *b)
{
	long		x = *(const long *) a,
				y = *(const long *) b;

	return x < y ? -1 : x > y;
}

/* Order events by time, then user, then movie. */
static int
cmp_event(const void *a, const void *b)
{
	const Event *x = a,
			   *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	if (x->user != y->user)
		return x->user < y->user ? -1 : 1;
	return x->movie < y->movie ? -1 : x->movie > y->movie;
}

/* Return the value at quantile q of a sorted array. */
static long
quantile(const long *v, long n, double q)
{
	long		i = (long) (q * (n - 1) + 0.5);

	return v[i];
}

/* Print the data set's shape to stderr. */
static void
summary(long nusers, long nratings, const Event *inc, long ninc, long newusers,
		double seconds)
{
	long	   *v = malloc(sizeof(long) * (nusers > opt_movies ? nusers : opt_movies));
	long		i,
				rated = 0,
				tail = 0,
				top = 0,
				top10 = 0,
				ntop = (opt_movies + 99) / 100,
				incusers = 0,
				genre_count[NGENRES + 1] = {0};
	double		mean = 0;
	int			l,
				g;

	if (!v)
		die("out of memory", NULL);
	for (i = 1; i <= nusers; i++)
		v[i - 1] = users[i].n;
	qsort(v, nusers, sizeof(long), cmp_long);
	fprintf(stderr, "gen_movielens: seed %ld: %ld users, %ld movies, %ld ratings in %.1f s (%.2f M ratings/s)\n",
			opt_seed, nusers, opt_movies, nratings, seconds, nratings / seconds / 1e6);
	fprintf(stderr, "  ratings per user: min %ld, p10 %ld, p25 %ld, median %ld, p75 %ld, p90 %ld, p99 %ld, p99.9 %ld, max %ld, mean %.1f\n",
			v[0], quantile(v, nusers, 0.10), quantile(v, nusers, 0.25), quantile(v, nusers, 0.5),
			quantile(v, nusers, 0.75), quantile(v, nusers, 0.90), quantile(v, nusers, 0.99),
			quantile(v, nusers, 0.999), v[nusers - 1], (double) nratings / nusers);
	for (i = 0; i < opt_movies; i++)
	{
		v[i] = movie_count[i];
		rated += v[i] > 0;
		tail += v[i] >= 1 && v[i] <= 5;
	}
	qsort(v, opt_movies, sizeof(long), cmp_long_desc);
	for (i = 0; i < opt_movies; i++)
	{
		if (i < ntop)
			top += v[i];
		if (i < ntop * 10)
			top10 += v[i];
	}
	fprintf(stderr, "  movies rated: %ld of %ld; ratings per rated movie: median %ld; %ld movies with 1-5 ratings\n",
			rated, opt_movies, rated > 0 ? v[rated / 2] : 0, tail);
	fprintf(stderr, "  ratings of the movie ranked");
	for (i = 1; i <= opt_movies; i *= 10)
		fprintf(stderr, " %ld: %ld,", i, v[i - 1]);
	fprintf(stderr, " %ld: %ld\n", opt_movies / 2, v[opt_movies / 2 - 1]);
	fprintf(stderr, "  share of ratings on the top 1%% of movies (%ld): %.1f%%, top 10%% (%ld): %.1f%%\n",
			ntop, 100.0 * top / nratings, ntop * 10, 100.0 * top10 / nratings);
	for (i = 0; i < opt_movies; i++)
	{
		if (movies[i].genres == 0)
			genre_count[NGENRES]++;
		for (g = 0; g < NGENRES; g++)
			if (movies[i].genres & (1u << g))
				genre_count[g]++;
	}
	fprintf(stderr, "  catalogue genres:");
	for (g = 0; g < NGENRES; g++)
		fprintf(stderr, " %s %.1f%%,", genre_names[g], 100.0 * genre_count[g] / opt_movies);
	fprintf(stderr, " (no genres listed) %.1f%%\n", 100.0 * genre_count[NGENRES] / opt_movies);
	fprintf(stderr, "  ratings:");
	for (l = 0; l < NLEVELS; l++)
	{
		fprintf(stderr, " %d.%d %.1f%%", (l + 1) / 2, l % 2 == 0 ? 5 : 0,
				100.0 * level_count[l] / nratings);
		mean += (l + 1) * 0.5 * level_count[l];
	}
	fprintf(stderr, "; mean %.3f\n", mean / nratings);
	if (ninc > 0)
	{
		for (i = 1; i <= nusers; i++)
			incusers += users[i].inc > 0;
		mean = 0;
		for (l = 0; l < NLEVELS; l++)
			mean += (l + 1) * 0.5 * inc_level_count[l];
		fprintf(stderr, "  increment: %ld ratings, %ld by %ld existing users, %ld by %ld new users (ids %ld..%ld); timestamps %ld..%ld (base ends %ld); mean %.3f\n",
				ninc, ninc - inc_new_ratings, incusers, inc_new_ratings, newusers,
				nusers + 1, nusers + newusers, inc[0].ts, inc[ninc - 1].ts, T_END, mean / ninc);
	}
	free(v);
}

/* Print the usage, with a message, and exit. */
static void
usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "gen_movielens: %s\n", msg);
	fprintf(stderr, "usage: gen_movielens [--ratings N] [--seed S] [--out DIR] [--users U] [--movies M]\n"
			"                     [--increment K] [--new-users X] [--quiet]\n");
	exit(2);
}

/* Report a fatal error and exit. */
static void
die(const char *what, const char *path)
{
	if (path)
		fprintf(stderr, "gen_movielens: %s %s: %s\n", what, path, strerror(errno));
	else
		fprintf(stderr, "gen_movielens: %s\n", what);
	exit(1);
}

/* Parse a non-negative integer option value. */
static long
parse_long(const char *opt, const char *s)
{
	char	   *end;
	double		v;

	if (!s)
		usage("an option lacks its value");
	errno = 0;
	v = strtod(s, &end);		/* accepts 25e6 */
	if (errno || *end || v < 0 || v > 4e18 || v != floor(v))
	{
		fprintf(stderr, "gen_movielens: bad value for %s: %s\n", opt, s);
		exit(2);
	}
	return (long) v;
}

int
main(int argc, char **argv)
{
	int			a;
	long		nusers,
				k,
				newusers,
				new_total = 0,
				u,
				ninc = 0,
				capinc = 0;
	Out			base,
				incf;
	uint8_t    *seen;
	int		   *ranks;
	Event	   *inc = NULL;
	User	   *nu = NULL;
	struct timespec t0,
				t1;

	for (a = 1; a < argc; a++)
	{
		const char *o = argv[a],
				   *v = a + 1 < argc ? argv[a + 1] : NULL;

		if (strcmp(o, "--ratings") == 0)
			opt_ratings = parse_long(o, v), a++;
		else if (strcmp(o, "--seed") == 0)
			opt_seed = parse_long(o, v), a++;
		else if (strcmp(o, "--out") == 0)
		{
			if (!v)
				usage("--out lacks its value");
			opt_out = v, a++;
		}
		else if (strcmp(o, "--users") == 0)
			opt_users = parse_long(o, v), a++;
		else if (strcmp(o, "--movies") == 0)
			opt_movies = parse_long(o, v), a++;
		else if (strcmp(o, "--increment") == 0)
			opt_increment = parse_long(o, v), a++;
		else if (strcmp(o, "--new-users") == 0)
			opt_new_users = parse_long(o, v), a++;
		else if (strcmp(o, "--quiet") == 0)
			opt_quiet = 1;
		else if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0)
			usage(NULL);
		else
			usage("unknown option");
	}
	nusers = opt_users >= 0 ? opt_users : (long) (opt_ratings * (ML_USERS / ML_RATINGS) + 0.5);
	if (nusers < 1)
		nusers = 1;
	if (opt_movies < 100 || opt_movies > (1L << 20) - 1)
		usage("--movies must be between 100 and 1048575");
	if (opt_ratings < 20 * nusers || opt_ratings > nusers * (opt_movies / 4 < 20 ? 20 : opt_movies / 4))
		usage("--ratings must be between 20 and M/4 ratings a user");
	k = opt_increment >= 0 ? opt_increment : opt_ratings / 100;
	newusers = opt_new_users >= 0 ? opt_new_users : (k > 0 ? (nusers + 199) / 200 : 0);
	mkdir(opt_out, 0755);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	make_movies();
	make_users(nusers, opt_ratings);
	write_movies();

	/* the new users: a first session each, 20 to about 60 ratings, in the week after */
	if (newusers > 0)
	{
		Rng			r;
		long		j;

		nu = calloc(newusers, sizeof(User));
		if (!nu)
			die("out of memory", NULL);
		rng_seed(&r, opt_seed, 0x2E3ULL);
		for (j = 0; j < newusers; j++)
		{
			User	   *x = &nu[j];
			int			f;

			x->n = 20 + (long) (-12.0 * log(1.0 - rng_unif(&r)));
			if (x->n > 80)
				x->n = 80;
			x->bias = 0.45 * rng_normal(&r);
			x->nfav = 2 + (rng_unif(&r) < 0.5);
			for (f = 0; f < x->nfav; f++)
			{
				int			g;

				do
					g = alias_draw(&genre_pick, &r);
				while (x->favmask & (1u << g));
				x->fav[f] = g;
				x->favmask |= 1u << g;
			}
			x->span = 30 * (x->n + 1) + (long) (rng_unif(&r) * 3600);
			x->start = T_END + 1 + (long) (rng_unif(&r) * (INC_SPAN - x->span));
		}
		/* new users take at most half of the increment */
		for (j = 0; j < newusers && new_total + nu[j].n <= k / 2; j++)
			new_total += nu[j].n;
		newusers = j;
	}
	inc_new_ratings = new_total;
	allocate_increment(nusers, k - new_total);

	seen = calloc((opt_movies + 7) / 8, 1);
	ranks = malloc(sizeof(int) * opt_movies);
	if (k > 0)
	{
		inc = malloc(sizeof(Event) * k);
		if (!inc)
			die("out of memory", NULL);
		capinc = k;
	}
	if (!seen || !ranks)
		die("out of memory", NULL);
	calibrate(nusers, seen, ranks);

	out_open(&base, opt_out, "ratings.csv", "userId,movieId,rating,timestamp");
	for (u = 1; u <= nusers + newusers; u++)
	{
		User	   *x = u <= nusers ? &users[u] : &nu[u - nusers - 1];
		long		n = u <= nusers ? x->n : 0,
					ni = u <= nusers ? x->inc : x->n,
					i;
		Rng			r;

		rng_seed(&r, opt_seed, (uint64_t) u);
		for (i = 0; i < n; i++)
		{
			int			mv = draw_movie(x, &r, seen);
			int			l = rating_level(x, &movies[mv], &r);
			long		ts = x->start + spread(x->span, i, n, &r);

			ranks[i] = mv;
			movie_count[mv]++;
			level_count[l]++;
			out_rating(&base, u, movies[mv].id, l, ts);
		}
		for (i = 0; i < ni; i++)
		{
			int			mv = draw_movie(x, &r, seen);
			Event	   *e = &inc[ninc++];
			long		from = u <= nusers ? T_END + 1 : x->start,
						span = u <= nusers ? INC_SPAN : x->span;

			ranks[n + i] = mv;
			e->user = u;
			e->movie = movies[mv].id;
			e->level = rating_level(x, &movies[mv], &r);
			e->ts = from + spread(span, i, ni, &r);
			inc_level_count[e->level]++;
		}
		for (i = 0; i < n + ni; i++)
			seen[ranks[i] >> 3] = 0;
	}
	out_close(&base);

	if (k == 0)
	{
		/* no increment: leave no stale one beside the new files */
		size_t		n = strlen(opt_out) + 16;
		char	   *path = malloc(n);

		if (!path)
			die("out of memory", NULL);
		snprintf(path, n, "%s/increment.csv", opt_out);
		if (remove(path) != 0 && errno != ENOENT)
			die("cannot remove", path);
		free(path);
	}
	else
	{
		long		i;

		if (ninc != capinc)
			die("internal error: increment count", NULL);
		qsort(inc, ninc, sizeof(Event), cmp_event);
		out_open(&incf, opt_out, "increment.csv", "userId,movieId,rating,timestamp");
		for (i = 0; i < ninc; i++)
			out_rating(&incf, inc[i].user, inc[i].movie, inc[i].level, inc[i].ts);
		out_close(&incf);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!opt_quiet)
		summary(nusers, opt_ratings, inc, ninc, newusers,
				(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
