/*
 * gen_ratings.c: write a MovieLens-format ratings.csv of any size to stdout.
 *
 *   cc -O2 -o gen_ratings bench/gen_ratings.c
 *   gen_ratings ROWS [MOVIES] [SEED] > ratings.csv
 *
 * userId,movieId,rating,timestamp as in MovieLens 25M: users in ascending order with
 * a few dozen to a few hundred ratings each, movie ids drawn from 1..MOVIES (default
 * 50000, skewed towards popular movies), ratings in half steps from 0.5 to 5, epoch
 * seconds between 1995 and 2019.  Deterministic for a given seed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

static uint64_t state;

static uint64_t
next(void)
{
	/* xorshift64* */
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	return state * 2685821657736338717ULL;
}

int
main(int argc, char **argv)
{
	long		rows = argc > 1 ? atol(argv[1]) : 1000000;
	long		movies = argc > 2 ? atol(argv[2]) : 50000;
	long		seed = argc > 3 ? atol(argv[3]) : 42;
	long		i,
				user = 1,
				left;
	static char buf[1 << 16];

	setvbuf(stdout, buf, _IOFBF, sizeof(buf));
	state = 0x9E3779B97F4A7C15ULL ^ (uint64_t) seed;
	left = 20 + next() % 300;
	fputs("userId,movieId,rating,timestamp\n", stdout);
	for (i = 0; i < rows; i++)
	{
		uint64_t	r = next();
		/* square of a uniform number: low movie ids are more popular */
		double		u = (double) (r >> 11) / 9007199254740992.0;
		long		movie = 1 + (long) (u * u * movies);
		int			half = 1 + (int) (next() % 10);
		long		ts = 789652009L + (long) (next() % 757382400L);

		if (movie > movies)
			movie = movies;
		printf("%ld,%ld,%d.%d,%ld\n", user, movie, half / 2, half % 2 ? 5 : 0, ts);
		if (--left == 0)
		{
			user++;
			left = 20 + next() % 300;
		}
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
