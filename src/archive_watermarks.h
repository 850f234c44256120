/*
 * archive_watermarks.h: the log's watermarks for the archiver, without ever blocking it.
 *
 * librdkafka's rd_kafka_query_watermark_offsets() can block far past its timeout while
 * the broker is down, and an archiver blocked there would miss SIGTERM.  So a thread
 * of this module (plain C, no PostgreSQL header; it only ever calls librdkafka, on a
 * handle of its own, created with every signal blocked) asks for the low and high
 * watermarks of the given partitions in a loop, and the worker reads the last answers
 * from memory.  The age of the last answer also tells whether Kafka is reachable.
 */
#ifndef RECSYS_ARCHIVE_WATERMARKS_H
#define RECSYS_ARCHIVE_WATERMARKS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ArchiveWatermarks ArchiveWatermarks;

/* Start the thread for these partitions of topic; NULL with a message on failure. */
extern ArchiveWatermarks *ArchiveWatermarksStart(const char *brokers, const char *properties,
												 const char *topic, int n,
												 const int32_t *partitions,
												 int interval_ms, char *err, size_t errlen);

/*
 * The last watermarks of a partition and when they were asked for (the caller's
 * CLOCK_MONOTONIC milliseconds at the time the request was sent); -1 when unknown.
 */
extern int	ArchiveWatermarksGet(ArchiveWatermarks *w, int32_t partition,
								 int64_t *low, int64_t *high, int64_t *asked_ms);

/* Milliseconds since the last round that reached every partition (-1: never). */
extern int64_t ArchiveWatermarksAge(ArchiveWatermarks *w, char *err, size_t errlen);

/* CLOCK_MONOTONIC in milliseconds, the clock of asked_ms. */
extern int64_t ArchiveWatermarksNow(void);

/* Ask the thread to stop; does not wait (it may be inside a blocked call). */
extern void ArchiveWatermarksStop(ArchiveWatermarks *w);

#endif							/* RECSYS_ARCHIVE_WATERMARKS_H */
