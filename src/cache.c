/*
 * cache.c: the Redis cache of the recommendation stage.
 *
 * Design
 * - Keys: recsys:<database oid>:<namespace>:rec:<user_id>. The namespace is the
 *   counter recsys:<database oid>:ns (missing = 0); each backend caches it for at most
 *   CACHE_NS_MAX_AGE_MS, so a bump (a rebuild, or too many users to drop one by one)
 *   is seen within a second. Correctness never rests on the namespace: an entry is
 *   served only when its stored profile version equals the caller's.
 * - Values: text, "RSC1 <user_id> <version> <n>\n" then n lines
 *   "<movie_id> <score> <source> <len>:<reason>\n" (the reason is <len> bytes, "N" for
 *   none). Parsing is defensive: a value that is not exactly that (bad numbers, more
 *   than CACHE_MAX_ENTRIES entries, another user's id, a reason that is not valid in
 *   the database encoding, trailing bytes) is a miss, counted as corrupt.
 * - One persistent connection per backend, made on first use and again after any
 *   failure (or when recsys.redis_url or recsys.redis_timeout changed); every connect
 *   and reply is bounded by recsys.redis_timeout. A connection the server had closed
 *   (a restart) is retried once at once on a new one.
 * - Failures: a connect or I/O failure (a timeout included) is a miss, counted, and
 *   puts Redis "down" in shared memory with a retry time: 250 ms, doubling up to 10 s,
 *   reset by the first success. While down, every backend skips Redis without waiting
 *   (counted as backoff_skips); once the retry time passes, the first backend to look
 *   claims the probe (the retry time moves past its timeout), so one caller at a time
 *   waits on a server that still hangs. The change of state is logged once: a WARNING
 *   when Redis goes down, a LOG line when it answers again. An error reply (the server
 *   answered) is counted and closes the connection but does not back off.
 * - Invalidation: CacheInvalidateAfterCommit() remembers the user ids in backend
 *   memory (at most CACHE_MAX_INVALIDATIONS per transaction, beyond that a namespace
 *   bump), with the URL, timeout and password of that moment. The transaction
 *   callback, at XACT_EVENT_COMMIT, sends one pipelined DEL batch (or one INCR of the
 *   namespace); on abort or PREPARE it forgets them. The callback allocates nothing
 *   from PostgreSQL, runs no SPI, raises nothing (a PG_TRY catches what could), and
 *   while Redis is down it skips like any call. A lost invalidation costs nothing but
 *   freshness of the TTL's order: the version check still refuses a stale entry.
 *   Ids remembered in a subtransaction that rolls back are dropped anyway (a harmless
 *   extra miss).
 * - Counters (hits, misses, stale, corrupt, errors, skips, stores, invalidated keys,
 *   namespace bumps, commits whose invalidations were lost) are atomics in shared memory when recsys is preloaded, and
 *   backend-local otherwise; recsys.cache_status() reports them in recsys.status.
 */
#include "postgres.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "cache.h"
#include "guc.h"
#include "redis.h"

#define CACHE_NS_MAX_AGE_MS		1000
#define CACHE_BACKOFF_MIN_MS	250
#define CACHE_BACKOFF_MAX_MS	10000
#define CACHE_KEY_LEN			96
#define CACHE_URL_LEN			1024
#define CACHE_PASSWORD_LEN		256

typedef struct CacheShared
{
	pg_atomic_uint64 hits;
	pg_atomic_uint64 misses;		/* every miss, the kinds below included */
	pg_atomic_uint64 stale;
	pg_atomic_uint64 corrupt;
	pg_atomic_uint64 errors;		/* failed calls: connect, I/O, error replies */
	pg_atomic_uint64 skips;			/* calls that skipped Redis during the backoff */
	pg_atomic_uint64 stores;
	pg_atomic_uint64 invalidated;	/* keys sent in DEL batches that succeeded */
	pg_atomic_uint64 bumps;			/* namespace bumps */
	pg_atomic_uint64 lost;			/* commits whose invalidations were not sent */
	pg_atomic_uint32 down;			/* read without the lock on the fast path */
	slock_t		mutex;				/* protects the fields below */
	TimestampTz retry_at;
	int			backoff_ms;
	TimestampTz last_error_at;
	char		last_error[256];
} CacheShared;

typedef enum CallResult
{
	CALL_OK,
	CALL_SKIPPED,				/* the backoff: Redis was not asked */
	CALL_FAILED,				/* connect or I/O failure: now down */
	CALL_REPLY_ERROR			/* the server answered with an error */
} CallResult;

/* One operation on a connection: >= 0 on success, -1 with a message in err. */
typedef int (*CacheOp) (RedisConn *conn, void *arg, char *err, size_t errlen);

typedef struct GetArg
{
	int64		user_id;
	char	   *buf;			/* malloc'd by RedisGet */
	size_t		len;
} GetArg;

typedef struct PutArg
{
	int64		user_id;
	const char *val;
	size_t		len;
	int			ttl_s;
} PutArg;

typedef enum DecodeResult
{
	DECODE_OK,
	DECODE_STALE,
	DECODE_CORRUPT
} DecodeResult;

static CacheShared *Shared = NULL;
static CacheShared LocalShared;
static bool LocalSharedReady = false;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* this backend's connection and namespace */
static RedisConn *Conn = NULL;
static char ConnUrl[CACHE_URL_LEN];
static int	ConnTimeoutMs = 0;
static int64 NsValue = 0;
static TimestampTz NsReadAt = 0;	/* 0: unknown */

/* invalidations waiting for the commit, and where to send them */
static int64 *Pending = NULL;		/* TopMemoryContext */
static int	PendingN = 0;
static int	PendingCap = 0;
static bool PendingAll = false;
static char PendingUrl[CACHE_URL_LEN];
static int	PendingTimeoutMs = 0;
static char PendingPassword[CACHE_PASSWORD_LEN];
static bool PendingHasPassword = false;
static bool CallbackWarned = false;

PG_FUNCTION_INFO_V1(recsys_cache_status);
PG_FUNCTION_INFO_V1(recsys_cache_debug_put);
PG_FUNCTION_INFO_V1(recsys_cache_debug_get);
PG_FUNCTION_INFO_V1(recsys_cache_debug_invalidate);
PG_FUNCTION_INFO_V1(recsys_cache_debug_invalidate_all);

static void cache_shmem_request(void);
static void cache_shmem_startup(void);
static void cache_shared_init(CacheShared *sh);
static CacheShared *cache_shared(void);
static bool backoff_allows(CacheShared *sh, int timeout_ms);
static void cache_failure(CacheShared *sh, const char *err);
static void cache_success(CacheShared *sh);
static void cache_note_error(CacheShared *sh, const char *err);
static void cache_disconnect(void);
static CallResult cache_call(const char *url, int timeout_ms, bool at_commit,
							 CacheOp op, void *arg, int *rc);
static int	cache_namespace(RedisConn *conn, int64 *ns, char *err, size_t errlen);
static void cache_key(char *key, int64 ns, int64 user_id);
static int	op_get(RedisConn *conn, void *arg, char *err, size_t errlen);
static int	op_put(RedisConn *conn, void *arg, char *err, size_t errlen);
static int	op_invalidate(RedisConn *conn, void *arg, char *err, size_t errlen);
static void cache_encode(StringInfo buf, int64 user_id, const CacheList *list);
static DecodeResult cache_decode(const char *buf, size_t len, int64 user_id,
								 int64 version, CacheList *out);
static DecodeResult cache_decode_free(char *buf, size_t len, int64 user_id,
									  int64 version, CacheList *out);
static void cache_remember_target(void);
static void cache_forget_pending(void);
static void cache_send_pending(void);
static void cache_xact_callback(XactEvent event, void *arg);

/* Request the shared counters and backoff (when preloaded); register the callback. */
void
CacheInit(void)
{
	RegisterXactCallback(cache_xact_callback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = cache_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = cache_shmem_startup;
}

static void
cache_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CacheShared)));
}

static void
cache_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	Shared = ShmemInitStruct("recsys cache", sizeof(CacheShared), &found);
	if (!found)
		cache_shared_init(Shared);
	LWLockRelease(AddinShmemInitLock);
}

/* Zero the counters and mark Redis up. */
static void
cache_shared_init(CacheShared *sh)
{
	memset(sh, 0, sizeof(CacheShared));
	pg_atomic_init_u64(&sh->hits, 0);
	pg_atomic_init_u64(&sh->misses, 0);
	pg_atomic_init_u64(&sh->stale, 0);
	pg_atomic_init_u64(&sh->corrupt, 0);
	pg_atomic_init_u64(&sh->errors, 0);
	pg_atomic_init_u64(&sh->skips, 0);
	pg_atomic_init_u64(&sh->stores, 0);
	pg_atomic_init_u64(&sh->invalidated, 0);
	pg_atomic_init_u64(&sh->bumps, 0);
	pg_atomic_init_u64(&sh->lost, 0);
	pg_atomic_init_u32(&sh->down, 0);
	SpinLockInit(&sh->mutex);
}

/* The shared state, or this backend's own when recsys is not preloaded. */
static CacheShared *
cache_shared(void)
{
	if (Shared)
		return Shared;
	if (!LocalSharedReady)
	{
		cache_shared_init(&LocalShared);
		LocalSharedReady = true;
	}
	return &LocalShared;
}

/* true when recsys.redis_url is set. */
bool
CacheEnabled(void)
{
	return RecsysRedisConfigured();
}

/*
 * May this call ask Redis? Yes while it is up; while it is down, only once the retry
 * time has passed, and then this caller claims the probe.
 */
static bool
backoff_allows(CacheShared *sh, int timeout_ms)
{
	TimestampTz now;
	bool		allowed;

	if (pg_atomic_read_u32(&sh->down) == 0)
		return true;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&sh->mutex);
	if (pg_atomic_read_u32(&sh->down) == 0)
		allowed = true;
	else if (now < sh->retry_at)
		allowed = false;
	else
	{
		sh->retry_at = now + ((int64) timeout_ms + sh->backoff_ms) * 1000;
		allowed = true;
	}
	SpinLockRelease(&sh->mutex);
	return allowed;
}

/* Redis failed: count it, back off (longer each time), log the change to down once. */
static void
cache_failure(CacheShared *sh, const char *err)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		was_down;
	int			backoff;

	pg_atomic_fetch_add_u64(&sh->errors, 1);
	SpinLockAcquire(&sh->mutex);
	was_down = pg_atomic_read_u32(&sh->down) != 0;
	backoff = was_down ? Min(Max(sh->backoff_ms, CACHE_BACKOFF_MIN_MS) * 2, CACHE_BACKOFF_MAX_MS)
		: CACHE_BACKOFF_MIN_MS;
	sh->backoff_ms = backoff;
	sh->retry_at = now + (int64) backoff * 1000;
	sh->last_error_at = now;
	strlcpy(sh->last_error, err, sizeof(sh->last_error));
	pg_atomic_write_u32(&sh->down, 1);
	SpinLockRelease(&sh->mutex);
	if (!was_down)
		ereport(WARNING,
				(errmsg("recommendation cache bypassed: Redis is unavailable"),
				 errdetail_internal("%s", err),
				 errhint("Calls skip Redis for a growing interval (up to 10 s) until it answers again; recsys.status shows the cache state.")));
}

/* Redis answered: clear the backoff, log the change to up once. */
static void
cache_success(CacheShared *sh)
{
	bool		was_down;

	if (pg_atomic_read_u32(&sh->down) == 0)
		return;
	SpinLockAcquire(&sh->mutex);
	was_down = pg_atomic_read_u32(&sh->down) != 0;
	pg_atomic_write_u32(&sh->down, 0);
	sh->backoff_ms = 0;
	sh->retry_at = 0;
	SpinLockRelease(&sh->mutex);
	if (was_down)
		ereport(LOG, (errmsg("recommendation cache: Redis answers again")));
}

/* Count an error that is no reason to back off, and keep its message. */
static void
cache_note_error(CacheShared *sh, const char *err)
{
	TimestampTz now = GetCurrentTimestamp();

	pg_atomic_fetch_add_u64(&sh->errors, 1);
	SpinLockAcquire(&sh->mutex);
	sh->last_error_at = now;
	strlcpy(sh->last_error, err, sizeof(sh->last_error));
	SpinLockRelease(&sh->mutex);
}

/* Close this backend's connection; the next call makes a new one. */
static void
cache_disconnect(void)
{
	if (Conn)
		RedisClose(Conn);
	Conn = NULL;
	NsReadAt = 0;
}

/*
 * Run op on this backend's connection (made first if needed), unless the backoff says
 * to skip; *rc is op's result when CALL_OK. Raises nothing: only plain C and the
 * shared state here, and at_commit takes the password remembered before the commit.
 */
static CallResult
cache_call(const char *url, int timeout_ms, bool at_commit, CacheOp op, void *arg, int *rc)
{
	CacheShared *sh = cache_shared();
	char		err[512];
	bool		fresh = false;
	int			attempt;

	*rc = -1;
	if (!backoff_allows(sh, timeout_ms))
	{
		pg_atomic_fetch_add_u64(&sh->skips, 1);
		return CALL_SKIPPED;
	}
	for (attempt = 0;; attempt++)
	{
		int			broken;

		if (Conn && (strcmp(ConnUrl, url) != 0 || ConnTimeoutMs != timeout_ms))
			cache_disconnect();
		if (Conn == NULL)
		{
			const char *password;

			if (strlen(url) >= sizeof(ConnUrl))
			{
				cache_failure(sh, "recsys.redis_url is too long");
				return CALL_FAILED;
			}
			if (at_commit)
				password = PendingHasPassword ? PendingPassword : NULL;
			else
				password = SecretGet("redis_password");
			Conn = RedisConnect(url, password, timeout_ms, err, sizeof(err));
			if (Conn == NULL)
			{
				cache_failure(sh, err);
				return CALL_FAILED;
			}
			strlcpy(ConnUrl, url, sizeof(ConnUrl));
			ConnTimeoutMs = timeout_ms;
			NsReadAt = 0;
			fresh = true;
		}
		*rc = op(Conn, arg, err, sizeof(err));
		if (*rc >= 0)
		{
			cache_success(sh);
			return CALL_OK;
		}
		broken = RedisBroken(Conn);
		cache_disconnect();
		if (broken == 0)
		{
			/* the server answered (or we ran out of memory): no reason to wait */
			cache_success(sh);
			cache_note_error(sh, err);
			return CALL_REPLY_ERROR;
		}
		if (broken == REDIS_BROKEN_CLOSED && !fresh && attempt == 0)
			continue;			/* a restarted server: once more, on a new connection */
		cache_failure(sh, err);
		return CALL_FAILED;
	}
}

/* The namespace, from this backend's copy when it is fresh enough, else from Redis. */
static int
cache_namespace(RedisConn *conn, int64 *ns, char *err, size_t errlen)
{
	TimestampTz now = GetCurrentTimestamp();
	char		key[CACHE_KEY_LEN];
	char	   *buf = NULL;
	size_t		len = 0;
	int			rc;
	int64		value = 0;

	if (NsReadAt != 0 && now >= NsReadAt &&
		now - NsReadAt < (int64) CACHE_NS_MAX_AGE_MS * 1000)
	{
		*ns = NsValue;
		return 0;
	}
	snprintf(key, sizeof(key), "recsys:%u:ns", MyDatabaseId);
	rc = RedisGet(conn, key, &buf, &len, err, errlen);
	if (rc < 0)
		return -1;
	if (rc == 1)
	{
		char	   *end;
		long long	v;

		errno = 0;
		v = strtoll(buf, &end, 10);
		if (errno != 0 || end == buf || *end != '\0' || v < 0)
		{
			free(buf);
			snprintf(err, errlen, "Redis key %s is not a namespace counter", key);
			return -1;
		}
		value = v;
		free(buf);
	}
	NsValue = value;
	NsReadAt = now;
	*ns = value;
	return 0;
}

/* Write the key of a user's entry under namespace ns. */
static void
cache_key(char *key, int64 ns, int64 user_id)
{
	snprintf(key, CACHE_KEY_LEN, "recsys:%u:" INT64_FORMAT ":rec:" INT64_FORMAT,
			 MyDatabaseId, ns, user_id);
}

/* GET the user's entry. */
static int
op_get(RedisConn *conn, void *arg, char *err, size_t errlen)
{
	GetArg	   *a = (GetArg *) arg;
	char		key[CACHE_KEY_LEN];
	int64		ns;

	if (cache_namespace(conn, &ns, err, errlen) != 0)
		return -1;
	cache_key(key, ns, a->user_id);
	return RedisGet(conn, key, &a->buf, &a->len, err, errlen);
}

/* SET the user's entry with its expiry. */
static int
op_put(RedisConn *conn, void *arg, char *err, size_t errlen)
{
	PutArg	   *a = (PutArg *) arg;
	char		key[CACHE_KEY_LEN];
	int64		ns;

	if (cache_namespace(conn, &ns, err, errlen) != 0)
		return -1;
	cache_key(key, ns, a->user_id);
	return RedisSetEx(conn, key, a->val, a->len, a->ttl_s, err, errlen);
}

/* Send the pending invalidations: one INCR of the namespace, or one DEL batch. */
static int
op_invalidate(RedisConn *conn, void *arg, char *err, size_t errlen)
{
	char	  **keys;
	char	   *buf;
	int64		ns;
	long		rc;
	int			i;

	if (PendingAll)
	{
		char		key[CACHE_KEY_LEN];
		long long	v;

		snprintf(key, sizeof(key), "recsys:%u:ns", MyDatabaseId);
		if (RedisIncr(conn, key, &v, err, errlen) != 0)
			return -1;
		NsValue = v;
		NsReadAt = GetCurrentTimestamp();
		return 0;
	}
	if (cache_namespace(conn, &ns, err, errlen) != 0)
		return -1;
	keys = malloc(sizeof(char *) * PendingN);
	buf = malloc((size_t) CACHE_KEY_LEN * PendingN);
	if (keys == NULL || buf == NULL)
	{
		free(keys);
		free(buf);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < PendingN; i++)
	{
		keys[i] = buf + (size_t) i * CACHE_KEY_LEN;
		cache_key(keys[i], ns, Pending[i]);
	}
	rc = RedisDelMany(conn, (const char *const *) keys, PendingN, err, errlen);
	free(keys);
	free(buf);
	return rc < 0 ? -1 : 0;
}

/* Serialize a list (see the file header for the format). */
static void
cache_encode(StringInfo buf, int64 user_id, const CacheList *list)
{
	int			n = Min(Max(list->n, 0), CACHE_MAX_ENTRIES);
	int			i;

	appendStringInfo(buf, "RSC1 " INT64_FORMAT " " INT64_FORMAT " %d\n",
					 user_id, list->version, n);
	for (i = 0; i < n; i++)
	{
		const CacheEntry *e = &list->entries[i];

		appendStringInfo(buf, INT64_FORMAT " %.17g %c ", e->movie_id, e->score, e->source);
		if (e->reason == NULL)
			appendStringInfoString(buf, "N\n");
		else
		{
			int			len = strlen(e->reason);

			if (len > CACHE_MAX_REASON)
				len = pg_mbcliplen(e->reason, len, CACHE_MAX_REASON);
			appendStringInfo(buf, "%d:", len);
			appendBinaryStringInfo(buf, e->reason, len);
			appendStringInfoChar(buf, '\n');
		}
	}
}

/* Read a decimal integer at *p (before end), then the separator sep. */
static bool
parse_int64(const char **p, const char *end, char sep, int64 *out)
{
	const char *s = *p;
	char	   *e;
	long long	v;

	if (s >= end || !(isdigit((unsigned char) *s) || *s == '-'))
		return false;
	errno = 0;
	v = strtoll(s, &e, 10);
	if (errno != 0 || e == s || e >= end || *e != sep)
		return false;
	*out = v;
	*p = e + 1;
	return true;
}

/*
 * Parse a stored value (NUL-terminated at buf[len]) into out, palloc'd; stale when it
 * was ranked from another profile version, corrupt when it is not exactly a list.
 */
static DecodeResult
cache_decode(const char *buf, size_t len, int64 user_id, int64 version, CacheList *out)
{
	const char *p = buf;
	const char *end = buf + len;
	int64		stored_user;
	int64		stored_version;
	int64		n;
	int			i;

	if (len < 5 || memcmp(p, "RSC1 ", 5) != 0)
		return DECODE_CORRUPT;
	p += 5;
	if (!parse_int64(&p, end, ' ', &stored_user) || stored_user != user_id ||
		!parse_int64(&p, end, ' ', &stored_version) ||
		!parse_int64(&p, end, '\n', &n) || n < 0 || n > CACHE_MAX_ENTRIES)
		return DECODE_CORRUPT;
	if (stored_version != version)
		return DECODE_STALE;

	out->version = stored_version;
	out->n = 0;
	out->entries = palloc0(sizeof(CacheEntry) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		CacheEntry *e = &out->entries[i];
		char	   *se;
		int64		rlen;

		if (!parse_int64(&p, end, ' ', &e->movie_id))
			return DECODE_CORRUPT;
		if (p >= end || !(isdigit((unsigned char) *p) || *p == '-'))
			return DECODE_CORRUPT;
		errno = 0;
		e->score = strtod(p, &se);
		if (errno != 0 || se == p || se >= end || *se != ' ' || !isfinite(e->score))
			return DECODE_CORRUPT;
		p = se + 1;
		if (end - p < 3 || !(*p >= 'a' && *p <= 'z') || p[1] != ' ')
			return DECODE_CORRUPT;
		e->source = *p;
		p += 2;
		if (*p == 'N')
		{
			if (p + 1 >= end || p[1] != '\n')
				return DECODE_CORRUPT;
			e->reason = NULL;
			p += 2;
			continue;
		}
		if (!isdigit((unsigned char) *p) || !parse_int64(&p, end, ':', &rlen) ||
			rlen < 0 || rlen > CACHE_MAX_REASON || rlen >= end - p || p[rlen] != '\n' ||
			memchr(p, '\0', rlen) != NULL || !pg_verifymbstr(p, (int) rlen, true))
			return DECODE_CORRUPT;
		e->reason = pnstrdup(p, rlen);
		p += rlen + 1;
	}
	if (p != end)
		return DECODE_CORRUPT;
	out->n = (int) n;
	return DECODE_OK;
}

/* Parse a value GET returned (malloc'd) into out, and free it on every path. */
static DecodeResult
cache_decode_free(char *buf, size_t len, int64 user_id, int64 version, CacheList *out)
{
	volatile DecodeResult d = DECODE_CORRUPT;

	PG_TRY();
	{
		d = cache_decode(buf, len, user_id, version, out);
	}
	PG_FINALLY();
	{
		free(buf);
	}
	PG_END_TRY();
	return d;
}

/* Look the user's list up; a hit only when the stored version is the caller's. */
bool
CacheGet(int64 user_id, int64 version, CacheList *out)
{
	CacheShared *sh;
	GetArg		a = {user_id, NULL, 0};
	int			rc;
	bool		hit = false;

	memset(out, 0, sizeof(CacheList));
	if (!CacheEnabled())
		return false;
	sh = cache_shared();
	if (cache_call(recsys_redis_url, recsys_redis_timeout_ms, false, op_get, &a, &rc) == CALL_OK &&
		rc == 1)
	{
		DecodeResult d = cache_decode_free(a.buf, a.len, user_id, version, out);

		if (d == DECODE_OK)
			hit = true;
		else
		{
			memset(out, 0, sizeof(CacheList));
			if (d == DECODE_STALE)
				pg_atomic_fetch_add_u64(&sh->stale, 1);
			else
			{
				char		msg[128];

				pg_atomic_fetch_add_u64(&sh->corrupt, 1);
				snprintf(msg, sizeof(msg), "corrupt cache entry for user " INT64_FORMAT " ignored",
						 user_id);
				SpinLockAcquire(&sh->mutex);
				sh->last_error_at = GetCurrentTimestamp();
				strlcpy(sh->last_error, msg, sizeof(sh->last_error));
				SpinLockRelease(&sh->mutex);
			}
		}
	}
	pg_atomic_fetch_add_u64(hit ? &sh->hits : &sh->misses, 1);
	CHECK_FOR_INTERRUPTS();
	return hit;
}

/* Store the user's list for recsys.cache_ttl. */
void
CachePut(int64 user_id, const CacheList *list)
{
	StringInfoData buf;
	PutArg		a;
	int			rc;
	int			i;

	if (!CacheEnabled() || list == NULL || list->n < 0 || (list->n > 0 && list->entries == NULL))
		return;
	for (i = 0; i < Min(list->n, CACHE_MAX_ENTRIES); i++)
	{
		char		s = list->entries[i].source;

		if (!isfinite(list->entries[i].score) || !(s >= 'a' && s <= 'z'))
		{
			elog(DEBUG1, "recsys cache: list of user " INT64_FORMAT " not stored (entry %d)",
				 user_id, i);
			return;
		}
	}
	initStringInfo(&buf);
	cache_encode(&buf, user_id, list);
	a.user_id = user_id;
	a.val = buf.data;
	a.len = buf.len;
	a.ttl_s = recsys_cache_ttl_s;
	if (cache_call(recsys_redis_url, recsys_redis_timeout_ms, false, op_put, &a, &rc) == CALL_OK)
		pg_atomic_fetch_add_u64(&cache_shared()->stores, 1);
	pfree(buf.data);
	CHECK_FOR_INTERRUPTS();
}

/* Remember where the commit callback sends the invalidations (the settings of now). */
static void
cache_remember_target(void)
{
	const char *password = SecretGet("redis_password");

	strlcpy(PendingUrl, recsys_redis_url, sizeof(PendingUrl));
	PendingTimeoutMs = recsys_redis_timeout_ms;
	PendingHasPassword = password != NULL;
	if (password)
		strlcpy(PendingPassword, password, sizeof(PendingPassword));
}

/* Drop these users' entries after the current transaction commits. */
void
CacheInvalidateAfterCommit(const int64 *user_ids, int n)
{
	if (!CacheEnabled() || n <= 0)
		return;
	cache_remember_target();
	if (PendingAll)
		return;
	if (n > CACHE_MAX_INVALIDATIONS - PendingN)
	{
		PendingAll = true;
		PendingN = 0;
		return;
	}
	if (PendingN + n > PendingCap)
	{
		int			cap = Min(Max(Max(PendingCap * 2, PendingN + n), 64), CACHE_MAX_INVALIDATIONS);

		if (Pending == NULL)
			Pending = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * cap);
		else
			Pending = repalloc(Pending, sizeof(int64) * cap);
		PendingCap = cap;
	}
	memcpy(Pending + PendingN, user_ids, sizeof(int64) * n);
	PendingN += n;
}

/* Invalidate every entry after commit: a namespace bump. */
void
CacheInvalidateAllAfterCommit(void)
{
	if (!CacheEnabled())
		return;
	cache_remember_target();
	PendingAll = true;
	PendingN = 0;
}

/* Forget the pending invalidations (and the password kept for them). */
static void
cache_forget_pending(void)
{
	PendingN = 0;
	PendingAll = false;
	explicit_bzero(PendingPassword, sizeof(PendingPassword));
	PendingHasPassword = false;
	if (PendingCap > 1024)
	{
		/* keep a small array for the next transaction, give a big one back */
		pfree(Pending);
		Pending = NULL;
		PendingCap = 0;
	}
}

/* Send the pending invalidations; never raises (called after the commit). */
static void
cache_send_pending(void)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		CacheShared *sh = cache_shared();
		int			n = PendingN;
		bool		all = PendingAll;
		int			rc;

		if (cache_call(PendingUrl, PendingTimeoutMs, true, op_invalidate, NULL, &rc) == CALL_OK)
		{
			if (all)
				pg_atomic_fetch_add_u64(&sh->bumps, 1);
			else
				pg_atomic_fetch_add_u64(&sh->invalidated, n);
		}
		else
			pg_atomic_fetch_add_u64(&sh->lost, 1);
		CallbackWarned = false;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		FlushErrorState();
		if (!CallbackWarned)
		{
			CallbackWarned = true;
			ereport(WARNING,
					(errmsg("recommendation cache entries not dropped after commit"),
					 errdetail("An error occurred while sending the invalidations to Redis."),
					 errhint("The profile version check still keeps stale lists from being served.")));
		}
	}
	PG_END_TRY();
}

/* At commit, send the invalidations; on abort or PREPARE, forget them. */
static void
cache_xact_callback(XactEvent event, void *arg)
{
	if (PendingN == 0 && !PendingAll)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			cache_send_pending();
			cache_forget_pending();
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			cache_forget_pending();
			break;
		default:
			break;
	}
}

/* recsys.cache_status(): the cache's counters and state, as recsys.status rows. */
Datum
recsys_cache_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CacheShared *sh = cache_shared();
	struct
	{
		const char *metric;
		pg_atomic_uint64 *value;
	}			counters[] = {
		{"hits", &sh->hits}, {"misses", &sh->misses}, {"stale", &sh->stale},
		{"corrupt", &sh->corrupt}, {"errors", &sh->errors},
		{"backoff_skips", &sh->skips}, {"stores", &sh->stores},
		{"invalidated", &sh->invalidated}, {"namespace_bumps", &sh->bumps},
		{"invalidations_lost", &sh->lost},
	};
	bool		down;
	TimestampTz retry_at;
	int			backoff_ms;
	TimestampTz last_error_at;
	char		last_error[256];
	char	   *state;
	char	   *last;
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	SpinLockAcquire(&sh->mutex);
	down = pg_atomic_read_u32(&sh->down) != 0;
	retry_at = sh->retry_at;
	backoff_ms = sh->backoff_ms;
	last_error_at = sh->last_error_at;
	strlcpy(last_error, sh->last_error, sizeof(last_error));
	SpinLockRelease(&sh->mutex);

	if (!CacheEnabled())
		state = pstrdup("not configured");
	else if (down)
		state = psprintf("down until %s (backoff %d ms)", timestamptz_to_str(retry_at), backoff_ms);
	else
		state = pstrdup("up");
	last = last_error_at == 0 ? pstrdup("")
		: psprintf("%s: %s", timestamptz_to_str(last_error_at), last_error);

	for (i = 0; i < lengthof(counters) + 2; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CStringGetTextDatum("cache");
		if (i < lengthof(counters))
		{
			values[1] = CStringGetTextDatum(counters[i].metric);
			values[2] = CStringGetTextDatum(psprintf(UINT64_FORMAT,
													 pg_atomic_read_u64(counters[i].value)));
		}
		else if (i == lengthof(counters))
		{
			values[1] = CStringGetTextDatum("state");
			values[2] = CStringGetTextDatum(state);
		}
		else
		{
			values[1] = CStringGetTextDatum("last_error");
			values[2] = CStringGetTextDatum(last);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Test hook recsys.cache_debug_put(user_id, version, movie_ids, reasons): store a list
 * of these movies, scored n, n-1, ..., sources alternating engine and llm, reasons
 * from reasons[] (or "reason <id>"), through CachePut.
 */
Datum
recsys_cache_debug_put(PG_FUNCTION_ARGS)
{
	CacheList	list;
	Datum	   *ids;
	bool	   *idnulls;
	Datum	   *reasons = NULL;
	bool	   *rnulls = NULL;
	int			n;
	int			nreasons = 0;
	int			i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_id, version and movie_ids must not be null")));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &ids, &idnulls, &n);
	if (!PG_ARGISNULL(3))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT,
						  &reasons, &rnulls, &nreasons);
	list.version = PG_GETARG_INT64(1);
	list.n = n;
	list.entries = palloc0(sizeof(CacheEntry) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (idnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("movie_ids must not contain nulls")));
		list.entries[i].movie_id = DatumGetInt64(ids[i]);
		list.entries[i].score = n - i;
		list.entries[i].source = (i % 2 == 0) ? 'e' : 'l';
		if (i < nreasons)
			list.entries[i].reason = rnulls[i] ? NULL : TextDatumGetCString(reasons[i]);
		else
			list.entries[i].reason = psprintf("reason " INT64_FORMAT, list.entries[i].movie_id);
	}
	CachePut(PG_GETARG_INT64(0), &list);
	PG_RETURN_VOID();
}

/*
 * Test hook recsys.cache_debug_get(user_id, version): the cached list through
 * CacheGet, one row per entry; no rows on a miss.
 */
Datum
recsys_cache_debug_get(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CacheList	list;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (!CacheGet(PG_GETARG_INT64(0), PG_GETARG_INT64(1), &list))
		return (Datum) 0;
	for (i = 0; i < list.n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		char		source[2] = {list.entries[i].source, '\0'};

		values[0] = Int64GetDatum(list.entries[i].movie_id);
		values[1] = Float8GetDatum(list.entries[i].score);
		values[2] = CStringGetTextDatum(source);
		if (list.entries[i].reason)
			values[3] = CStringGetTextDatum(list.entries[i].reason);
		else
			nulls[3] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* Test hook recsys.cache_debug_invalidate(user_ids): CacheInvalidateAfterCommit. */
Datum
recsys_cache_debug_invalidate(PG_FUNCTION_ARGS)
{
	Datum	   *ids;
	bool	   *nulls;
	int64	   *users;
	int			n;
	int			i;

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &ids, &nulls, &n);
	users = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("user_ids must not contain nulls")));
		users[i] = DatumGetInt64(ids[i]);
	}
	CacheInvalidateAfterCommit(users, n);
	PG_RETURN_VOID();
}

/* Test hook recsys.cache_debug_invalidate_all(): CacheInvalidateAllAfterCommit. */
Datum
recsys_cache_debug_invalidate_all(PG_FUNCTION_ARGS)
{
	CacheInvalidateAllAfterCommit();
	PG_RETURN_VOID();
}
