/*
 * redis.c: the Redis client used by the recommendation cache and the health check.
 *
 * Plain C over hiredis; no PostgreSQL headers. hiredis starts no threads, and every
 * call is bounded by the connect and command timeouts set at connect time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "redis.h"

struct RedisConn
{
	redisContext *ctx;
	RedisUrl	url;
};

static int	reply_error(redisContext *ctx, redisReply *reply, const char *what,
						char *err, size_t errlen);

/* Parse redis://host:port[/db]; a URL with a password is refused. */
int
RedisParseUrl(const char *url, RedisUrl *out, char *err, size_t errlen)
{
	const char *p;
	const char *at;
	const char *colon;
	const char *slash;
	size_t		hostlen;

	memset(out, 0, sizeof(*out));
	out->port = 6379;
	if (strncmp(url, "redis://", 8) != 0)
	{
		snprintf(err, errlen, "Redis URL must start with redis://");
		return -1;
	}
	p = url + 8;
	at = strchr(p, '@');
	if (at)
	{
		/* never copy or echo it: the password comes from the secrets file */
		snprintf(err, errlen, "Redis URL must not carry a password (use redis_password in recsys.secrets_file)");
		return -1;
	}
	slash = strchr(p, '/');
	colon = strchr(p, ':');
	if (colon && slash && colon > slash)
		colon = NULL;
	hostlen = colon ? (size_t) (colon - p) : slash ? (size_t) (slash - p) : strlen(p);
	if (hostlen == 0 || hostlen >= sizeof(out->host))
	{
		snprintf(err, errlen, "Redis URL has no host");
		return -1;
	}
	memcpy(out->host, p, hostlen);
	if (colon)
	{
		char	   *end;
		long		port = strtol(colon + 1, &end, 10);

		if (end == colon + 1 || port <= 0 || port > 65535 || (*end && *end != '/'))
		{
			snprintf(err, errlen, "Redis URL has a bad port");
			return -1;
		}
		out->port = (int) port;
	}
	if (slash && slash[1])
	{
		char	   *end;
		long		db = strtol(slash + 1, &end, 10);

		if (*end || db < 0 || db > 1000000)
		{
			snprintf(err, errlen, "Redis URL has a bad database number");
			return -1;
		}
		out->db = (int) db;
	}
	return 0;
}

/* Connect with a bounded timeout, authenticate and select the database. */
RedisConn *
RedisConnect(const char *url, const char *password, int timeout_ms,
			 char *err, size_t errlen)
{
	RedisConn  *conn;
	struct timeval tv;
	redisReply *reply;

	conn = calloc(1, sizeof(RedisConn));
	if (conn == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (RedisParseUrl(url, &conn->url, err, errlen) != 0)
	{
		free(conn);
		return NULL;
	}
	if (conn->url.password[0] == '\0' && password)
		snprintf(conn->url.password, sizeof(conn->url.password), "%s", password);

	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	conn->ctx = redisConnectWithTimeout(conn->url.host, conn->url.port, tv);
	if (conn->ctx == NULL || conn->ctx->err)
	{
		snprintf(err, errlen, "could not connect to Redis at %s:%d: %s",
				 conn->url.host, conn->url.port,
				 conn->ctx ? conn->ctx->errstr : "out of memory");
		RedisClose(conn);
		return NULL;
	}
	if (redisSetTimeout(conn->ctx, tv) != REDIS_OK)
	{
		snprintf(err, errlen, "could not set the Redis timeout");
		RedisClose(conn);
		return NULL;
	}
	if (conn->url.password[0])
	{
		reply = redisCommand(conn->ctx, "AUTH %s", conn->url.password);
		if (reply_error(conn->ctx, reply, "AUTH", err, errlen))
		{
			RedisClose(conn);
			return NULL;
		}
		freeReplyObject(reply);
	}
	if (conn->url.db != 0)
	{
		reply = redisCommand(conn->ctx, "SELECT %d", conn->url.db);
		if (reply_error(conn->ctx, reply, "SELECT", err, errlen))
		{
			RedisClose(conn);
			return NULL;
		}
		freeReplyObject(reply);
	}
	return conn;
}

/* Close the connection and wipe the password. */
void
RedisClose(RedisConn *conn)
{
	if (conn == NULL)
		return;
	if (conn->ctx)
		redisFree(conn->ctx);
	memset(conn->url.password, 0, sizeof(conn->url.password));
	free(conn);
}

/* PING the server. */
int
RedisPing(RedisConn *conn, char *err, size_t errlen)
{
	redisReply *reply = redisCommand(conn->ctx, "PING");
	int			rc = 0;

	if (reply_error(conn->ctx, reply, "PING", err, errlen))
		return -1;
	if (reply->type != REDIS_REPLY_STATUS || strcmp(reply->str, "PONG") != 0)
	{
		snprintf(err, errlen, "Redis answered PING with something other than PONG");
		rc = -1;
	}
	freeReplyObject(reply);
	return rc;
}

/* Describe the server: version, address and database. */
void
RedisDescribe(RedisConn *conn, char *out, size_t outlen)
{
	redisReply *reply = redisCommand(conn->ctx, "INFO server");
	char		version[64] = "?";

	if (reply && reply->type == REDIS_REPLY_STRING)
	{
		const char *v = strstr(reply->str, "redis_version:");

		if (v)
			sscanf(v + 14, "%63[^\r\n]", version);
	}
	if (reply)
		freeReplyObject(reply);
	snprintf(out, outlen, "redis %s at %s:%d db %d, PING answered PONG",
			 version, conn->url.host, conn->url.port, conn->url.db);
}

/* GET a key. */
int
RedisGet(RedisConn *conn, const char *key, char **out, size_t *outlen,
		 char *err, size_t errlen)
{
	redisReply *reply = redisCommand(conn->ctx, "GET %s", key);

	if (reply_error(conn->ctx, reply, "GET", err, errlen))
		return -1;
	if (reply->type == REDIS_REPLY_NIL)
	{
		freeReplyObject(reply);
		return 0;
	}
	*out = malloc(reply->len + 1);
	if (*out == NULL)
	{
		freeReplyObject(reply);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(*out, reply->str, reply->len);
	(*out)[reply->len] = '\0';
	*outlen = reply->len;
	freeReplyObject(reply);
	return 1;
}

/* SET a key with an expiry. */
int
RedisSetEx(RedisConn *conn, const char *key, const char *val, size_t vallen,
		   int ttl_s, char *err, size_t errlen)
{
	redisReply *reply = redisCommand(conn->ctx, "SET %s %b EX %d", key, val, vallen, ttl_s);

	if (reply_error(conn->ctx, reply, "SET", err, errlen))
		return -1;
	freeReplyObject(reply);
	return 0;
}

/* DEL keys in one pipelined round trip. */
long
RedisDelMany(RedisConn *conn, const char *const *keys, int nkeys, char *err, size_t errlen)
{
	long		deleted = 0;
	int			i;

	for (i = 0; i < nkeys; i++)
		if (redisAppendCommand(conn->ctx, "DEL %s", keys[i]) != REDIS_OK)
		{
			snprintf(err, errlen, "Redis DEL failed: %s", conn->ctx->errstr);
			return -1;
		}
	for (i = 0; i < nkeys; i++)
	{
		redisReply *reply = NULL;

		if (redisGetReply(conn->ctx, (void **) &reply) != REDIS_OK ||
			reply_error(conn->ctx, reply, "DEL", err, errlen))
			return -1;
		if (reply->type == REDIS_REPLY_INTEGER)
			deleted += reply->integer;
		freeReplyObject(reply);
	}
	return deleted;
}

/* INCR a counter. */
int
RedisIncr(RedisConn *conn, const char *key, long long *out, char *err, size_t errlen)
{
	redisReply *reply = redisCommand(conn->ctx, "INCR %s", key);

	if (reply_error(conn->ctx, reply, "INCR", err, errlen))
		return -1;
	if (reply->type != REDIS_REPLY_INTEGER)
	{
		snprintf(err, errlen, "Redis answered INCR with something other than an integer");
		freeReplyObject(reply);
		return -1;
	}
	*out = reply->integer;
	freeReplyObject(reply);
	return 0;
}

/* Tell a reply error from a closed connection and from other I/O failures. */
int
RedisBroken(RedisConn *conn)
{
	redisContext *ctx = conn->ctx;

	if (ctx == NULL || ctx->err == 0)
		return 0;
	if (ctx->err == REDIS_ERR_EOF ||
		(ctx->err == REDIS_ERR_IO &&
		 (strcmp(ctx->errstr, strerror(ECONNRESET)) == 0 ||
		  strcmp(ctx->errstr, strerror(EPIPE)) == 0)))
		return REDIS_BROKEN_CLOSED;
	return REDIS_BROKEN_IO;
}

/* Turn a failed or error reply into a message; nonzero when the reply is unusable. */
static int
reply_error(redisContext *ctx, redisReply *reply, const char *what, char *err, size_t errlen)
{
	if (reply == NULL)
	{
		snprintf(err, errlen, "Redis %s failed: %s", what,
				 ctx->err ? ctx->errstr : "no reply");
		return 1;
	}
	if (reply->type == REDIS_REPLY_ERROR)
	{
		snprintf(err, errlen, "Redis %s failed: %s", what, reply->str);
		freeReplyObject(reply);
		return 1;
	}
	return 0;
}
