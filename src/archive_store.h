/*
 * archive_store.h: the archive's objects, written down once for every stage that
 * touches them (the archiver writes them, the aggregate reads them).
 *
 * Layout (the Kafka Connect S3 sink's rule, so that a replay overwrites instead of
 * duplicating):
 *
 *   events/topic=<topic>/partition=<p>/<topic>+<p>+<first offset, 20 digits>.ndjson.gz
 *
 * one event a line (the message value as produced: {"event_id":…,"user_id":…,
 * "movie_id":…,"rating":…,"ts":…}), gzip.  The embedded queue table is topic "queue",
 * partition 0.  The store is S3 / MinIO when recsys.s3_endpoint is set, else the
 * local directory recsys.archive_dir with the same keys as relative paths, written
 * atomically (temporary file, fsync, rename, fsync of the directory).
 */
#ifndef RECSYS_ARCHIVE_STORE_H
#define RECSYS_ARCHIVE_STORE_H

#include "postgres.h"

#include "eventjson.h"
#include "s3.h"

#define ARCHIVE_PREFIX			"events/"
#define ARCHIVE_SUFFIX			".ndjson.gz"
#define ARCHIVE_CONTENT_TYPE	"application/gzip"
#define ARCHIVE_QUEUE_TOPIC		"queue"

/* Return codes of the object calls (those of s3.h). */
#define ARCHIVE_OK			S3_OK
#define ARCHIVE_ERROR		S3_ERROR
#define ARCHIVE_NOT_FOUND	S3_NOT_FOUND

typedef struct ArchiveStore
{
	bool		use_s3;
	S3Config	s3;
	char	   *access_key;		/* palloc'd; wiped by ArchiveStoreClose */
	char	   *secret_key;
	char	   *dir;			/* the local archive directory (absolute) */
	char		description[512];	/* "s3://bucket (endpoint)" or "local:<dir>" */
} ArchiveStore;

/*
 * Open the configured store, in the current memory context.  interrupt (may be NULL)
 * is polled while an S3 request waits; max_retries as in S3Config.
 */
extern ArchiveStore *ArchiveStoreOpen(S3InterruptFn interrupt, void *interrupt_arg,
									  int max_retries);

/* Open the local-directory store (recsys.archive_dir), whatever is configured. */
extern ArchiveStore *ArchiveStoreOpenLocal(void);

/* Free the store, wiping its credentials. */
extern void ArchiveStoreClose(ArchiveStore *store);

/* "s3" or "local", as recorded in recsys.archive_manifest.storage */
extern const char *ArchiveStoreKind(const ArchiveStore *store);

/* The key of the object of topic/partition starting at first (palloc'd). */
extern char *ArchiveObjectKey(const char *topic, int32 partition, int64 first);

/* Parse a key made by ArchiveObjectKey; false when it is not one. */
extern bool ArchiveObjectKeyParse(const char *key, char *topic, size_t topiclen,
								  int32 *partition, int64 *first);

/* Store an object: ARCHIVE_OK, or ARCHIVE_ERROR with a message in err. */
extern int	ArchiveStorePut(ArchiveStore *store, const char *key, const void *data, size_t len,
							char *err, size_t errlen);

/* Fetch an object into out: ARCHIVE_OK, ARCHIVE_NOT_FOUND or ARCHIVE_ERROR. */
extern int	ArchiveStoreGet(ArchiveStore *store, const char *key, S3Buffer *out,
							char *err, size_t errlen);

/* Called once per object of a listing, in key order; return nonzero to stop. */
typedef int (*ArchiveListFn) (const char *key, int64 size, void *arg);

/* List every object key under ARCHIVE_PREFIX, in key order. */
extern int	ArchiveStoreList(ArchiveStore *store, ArchiveListFn fn, void *arg,
							 char *err, size_t errlen);

/* Called once per event of an object, with its 0-based line number. */
typedef int (*ArchiveEventFn) (const EventRecord *ev, int64 line, void *arg);

/*
 * Decompress an object and parse each of its lines as an event.  ARCHIVE_OK, or
 * ARCHIVE_ERROR with the reason (bad gzip, or the line and why it is not an event)
 * in err; a nonzero return of fn stops the walk and is returned.  plain is a scratch
 * buffer the caller keeps between calls (reset here).
 */
extern int	ArchiveObjectParse(const void *gz, size_t len, S3Buffer *plain,
							   ArchiveEventFn fn, void *arg, char *err, size_t errlen);

#endif							/* RECSYS_ARCHIVE_STORE_H */
