/*
 * redis.h: a small Redis client over hiredis, with plain C types.
 *
 * Every call is bounded by the timeout given at connect time (connect, read, write).
 * Errors are written to a caller's buffer and never contain the password.
 */
#ifndef RECSYS_REDIS_H
#define RECSYS_REDIS_H

#include <stddef.h>

typedef struct RedisConn RedisConn;

/* Parsed redis://host:port[/db]; password is filled from the secrets file */
typedef struct RedisUrl
{
	char		host[256];
	int			port;
	int			db;
	char		password[256];
} RedisUrl;

/* Parse url into out; 0 on success, -1 with a message in err. */
extern int	RedisParseUrl(const char *url, RedisUrl *out, char *err, size_t errlen);

/*
 * Connect, authenticate (with the password argument, from the secrets file; may be
 * NULL) and select the database. NULL with a message in err on failure.
 */
extern RedisConn *RedisConnect(const char *url, const char *password, int timeout_ms,
							   char *err, size_t errlen);
extern void RedisClose(RedisConn *conn);

/* PING; 0 when the server answered PONG, else -1 with a message in err. */
extern int	RedisPing(RedisConn *conn, char *err, size_t errlen);

/* Describe the server for humans ("redis 7.0.15 at 127.0.0.1:6379 db 0"). */
extern void RedisDescribe(RedisConn *conn, char *out, size_t outlen);

/* GET key into a malloc'd buffer (*out, *outlen); 1 hit, 0 miss, -1 error. */
extern int	RedisGet(RedisConn *conn, const char *key, char **out, size_t *outlen,
					 char *err, size_t errlen);

/* SET key value EX ttl_s; 0 or -1. */
extern int	RedisSetEx(RedisConn *conn, const char *key, const char *val, size_t vallen,
					   int ttl_s, char *err, size_t errlen);

/* DEL the given keys in one pipelined batch; number deleted or -1. */
extern long RedisDelMany(RedisConn *conn, const char *const *keys, int nkeys,
						 char *err, size_t errlen);

/* INCR key, the new value in *out; 0 or -1. */
extern int	RedisIncr(RedisConn *conn, const char *key, long long *out,
					  char *err, size_t errlen);

/*
 * After a call failed: 0 when the server answered with an error reply (the
 * connection still works, though a failed pipeline leaves replies unread: close it),
 * REDIS_BROKEN_CLOSED when the server had closed the connection (a restart: a new
 * connection may well work), REDIS_BROKEN_IO for any other I/O failure, a timeout
 * included.
 */
#define REDIS_BROKEN_CLOSED	1
#define REDIS_BROKEN_IO		2
extern int	RedisBroken(RedisConn *conn);

#endif							/* RECSYS_REDIS_H */
