/*
 * s3.h: a small S3 client (AWS S3, MinIO) on libcurl, libxml2, zlib and OpenSSL.
 *
 * Plain C: no PostgreSQL header may be included here or in s3.c, so the module can be
 * tested on its own (test/unit/) and so library code never meets ereport().  Every
 * call reports failure by its return value and a plain-text message in a buffer the
 * caller supplies; the message carries the S3 error code and message but never a
 * secret.  Requests are signed with SigV4 by libcurl and sent path-style
 * (<endpoint>/<bucket>/<key>), which MinIO and S3 both accept.
 *
 * The client is not thread-safe: it keeps one libcurl handle per process (a backend
 * is single-threaded) so that connections are reused between requests.
 */
#ifndef RECSYS_S3_H
#define RECSYS_S3_H

#include <stddef.h>
#include <stdint.h>

/* Return codes of the object calls. */
#define S3_OK			0
#define S3_ERROR		(-1)
#define S3_NOT_FOUND	1		/* S3Get / S3Head: no such key */

/* Return nonzero to abort a request at once (a pending cancel, a shutdown). */
typedef int (*S3InterruptFn) (void *arg);

typedef struct S3Config
{
	const char *endpoint;		/* e.g. "http://127.0.0.1:9000" */
	const char *bucket;
	const char *region;			/* NULL or "" = "us-east-1" */
	const char *access_key;
	const char *secret_key;
	int			timeout_ms;		/* per attempt; 0 = 30 s */
	/* optional; callers zero-initialise the struct, and 0 means the default */
	int			connect_timeout_ms; /* 0 = min(timeout, 5 s) */
	int			max_retries;	/* retries after the first try; 0 = 3, < 0 = none */
	int			retry_base_ms;	/* first backoff; 0 = 100 ms, doubled each retry */
	int			retry_max_ms;	/* cap of one backoff; 0 = 2 s */
	size_t		multipart_threshold;	/* S3Put goes multipart above; 0 = 64 MiB */
	size_t		part_size;		/* multipart part size; 0 = 16 MiB, at least 5 MiB */
	int			list_page_size; /* max-keys of one ListObjectsV2 page; 0 = 1000 */
	const char *ca_file;		/* CA bundle for https; NULL = the system's */
	int			insecure;		/* 1 = do not verify https certificates (tests only) */
	S3InterruptFn interrupt;	/* polled at least every 100 ms while waiting */
	void	   *interrupt_arg;
} S3Config;

/* A growable byte buffer, malloc'd; free it with S3BufferFree. */
typedef struct S3Buffer
{
	char	   *data;
	size_t		len;
	size_t		cap;
} S3Buffer;

/* Called once per listed object; return nonzero to stop the listing. */
typedef int (*S3ListFn) (const char *key, int64_t size, void *arg);

/* 0 when the bucket answers HEAD with these credentials; else -1 and a message in err */
extern int	S3CheckBucket(const S3Config *cfg, char *err, size_t errlen);

/* Create the bucket; 0 also when it exists already and is ours. */
extern int	S3CreateBucket(const S3Config *cfg, char *err, size_t errlen);

/* Store an object (multipart above cfg->multipart_threshold). */
extern int	S3Put(const S3Config *cfg, const char *key, const void *data, size_t len,
				  const char *content_type, char *err, size_t errlen);

/* Store an object by multipart upload, in parts of part_size bytes (>= 5 MiB). */
extern int	S3PutMultipart(const S3Config *cfg, const char *key, const void *data,
						   size_t len, size_t part_size, const char *content_type,
						   char *err, size_t errlen);

/* Fetch an object into out (reset first): S3_OK, S3_NOT_FOUND or S3_ERROR. */
extern int	S3Get(const S3Config *cfg, const char *key, S3Buffer *out,
				  char *err, size_t errlen);

/* Look an object up: S3_OK (and its size), S3_NOT_FOUND or S3_ERROR. */
extern int	S3Head(const S3Config *cfg, const char *key, int64_t *size,
				   char *err, size_t errlen);

/* Delete an object; deleting a missing key succeeds, as in S3. */
extern int	S3Delete(const S3Config *cfg, const char *key, char *err, size_t errlen);

/*
 * List the keys under prefix in key order, after start_after (NULL: from the start),
 * following continuation tokens; fn is called once per key.
 */
extern int	S3List(const S3Config *cfg, const char *prefix, const char *start_after,
				   S3ListFn fn, void *arg, char *err, size_t errlen);

/* Append to a buffer; -1 when out of memory. */
extern int	S3BufferAppend(S3Buffer *buf, const void *data, size_t len);
extern void S3BufferReset(S3Buffer *buf);
extern void S3BufferFree(S3Buffer *buf);

/*
 * gzip with zlib.  A writer compresses a stream into a buffer as it comes, so that a
 * batch never exists uncompressed in memory.
 */
typedef struct S3GzipWriter S3GzipWriter;

extern S3GzipWriter *S3GzipBegin(int level);
extern int	S3GzipWrite(S3GzipWriter *w, const void *data, size_t len);
/* Finish the stream; the compressed bytes stay in *S3GzipOutput(w) until S3GzipFree. */
extern int	S3GzipFinish(S3GzipWriter *w);
extern S3Buffer *S3GzipOutput(S3GzipWriter *w);
/*
 * Finish a copy of the stream into *out (free it with S3BufferFree), leaving the
 * writer open for more input: for an upload that may fail and be tried again later
 * with more data.  0, or -1 when out of memory.
 */
extern int	S3GzipFinishCopy(S3GzipWriter *w, S3Buffer *out);
/* Uncompressed bytes written so far. */
extern size_t S3GzipInputBytes(const S3GzipWriter *w);
extern void S3GzipFree(S3GzipWriter *w);

/* Decompress gzip data (one or more members) into out (reset first). */
extern int	S3Gunzip(const void *data, size_t len, S3Buffer *out, char *err, size_t errlen);

/* Percent-encode an object key for a URL path ('/' kept); malloc'd, NULL if no memory. */
extern char *S3EncodeKey(const char *key);

#endif							/* RECSYS_S3_H */
