/*
 * cache.h: the Redis cache of the recommendation stage.
 *
 * One entry per user holds a deep ranked list (up to CACHE_MAX_ENTRIES) and the
 * profile version it was ranked from; a caller applies n and its filters on read.
 * Redis trouble never raises: a timeout, an error or the shared backoff is a miss,
 * counted in recsys.status (see cache.c for the design).
 */
#ifndef RECSYS_CACHE_H
#define RECSYS_CACHE_H

#include "fmgr.h"

/* Most entries stored per user, and most bytes of one entry's reason. */
#define CACHE_MAX_ENTRIES	100
#define CACHE_MAX_REASON	1024

/* Most users one transaction invalidates one by one; beyond, a namespace bump. */
#define CACHE_MAX_INVALIDATIONS 10000

/* One ranked entry of a user's deep list. */
typedef struct CacheEntry
{
	int64		movie_id;
	double		score;
	char		source;			/* 'e' engine, 'l' llm */
	char	   *reason;
} CacheEntry;

/* A user's deep list (palloc'd) and the profile version it was ranked from. */
typedef struct CacheList
{
	int64		version;
	int			n;
	CacheEntry *entries;
} CacheList;

/* Request the shared counters and backoff, register the transaction callback. */
extern void CacheInit(void);

/* true when recsys.redis_url is set. */
extern bool CacheEnabled(void);

/*
 * Look the user's list up; true on a hit whose stored version == version (a stale
 * entry is a miss, counted as stale). Never raises for Redis trouble: a timeout, an
 * error, a corrupt value or the backoff is a miss (counted).
 */
extern bool CacheGet(int64 user_id, int64 version, CacheList *out);

/* Store the list (expires after recsys.cache_ttl); never raises for Redis trouble. */
extern void CachePut(int64 user_id, const CacheList *list);

/*
 * Drop these users' entries after the current transaction commits (nothing on
 * abort): one pipelined DEL batch from the commit callback, which never raises.
 * Beyond CACHE_MAX_INVALIDATIONS users in one transaction, the namespace is bumped.
 */
extern void CacheInvalidateAfterCommit(const int64 *user_ids, int n);

/* Invalidate every entry after commit (a namespace bump), for a rebuild. */
extern void CacheInvalidateAllAfterCommit(void);

/* recsys.cache_status(): the cache's rows of recsys.status. */
extern Datum recsys_cache_status(PG_FUNCTION_ARGS);

#endif							/* RECSYS_CACHE_H */
