/*
 * recommend.h: recsys_recommend() (recommend.c), ranked in the database.
 *
 * The tuning settings of the ranking are defined in guc.c; their meaning is in the
 * header of recommend.c and in README.md ("Recommendations").
 */
#ifndef RECSYS_RECOMMEND_H
#define RECSYS_RECOMMEND_H

extern int	recsys_recommend_seeds;
extern double recsys_recommend_neutral;
extern double recsys_recommend_half_life;
extern double recsys_recommend_genre_weight;
extern double recsys_recommend_popularity_weight;

/* Register the LLM counters' shared memory (when preloaded). */
extern void RecommendInit(void);

#endif							/* RECSYS_RECOMMEND_H */
