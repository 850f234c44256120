/*
 * archive_dedup.h: the archiver drops real-time events that a producer sent twice.
 *
 * A relay killed between Kafka's acknowledgement and the commit that deletes its
 * outbox rows sends the batch again, with the same event ids (at least once).  Real-
 * time events (event_id < 10^10, recsys_rate and the inbox) are few, so the archiver
 * keeps, per Kafka partition, the ids of the last ARCHIVE_DEDUP_WINDOW real-time
 * events it archived with a hash of each one's message value (in memory, and in
 * recsys.archive_recent_ids, committed with each manifest row, so a restarted worker
 * still knows them).  An event whose id is in that window, or earlier in the open
 * batch, with the same value (a resend is the same text), is not written to the
 * object: its offset goes to recsys.archive_duplicates (with the offset of the copy
 * that was archived), in the batch's transaction, so every offset of the log is still
 * accounted for.  The same id with another value is no resend (a sequence restarted
 * by a new extension on an old topic): it is archived.  The queue table needs none of
 * this: the relay moves rows into it exactly once.  Ingested events (ids from 10^10)
 * repeat only when a job is resumed; the aggregate drops those by event id.
 */
#ifndef RECSYS_ARCHIVE_DEDUP_H
#define RECSYS_ARCHIVE_DEDUP_H

/* real-time events archived per partition whose ids are remembered */
#define ARCHIVE_DEDUP_WINDOW	100000

typedef struct ArchiveDedup ArchiveDedup;

/*
 * Load the window of one partition, in a transaction of its own (none may be open).
 * NULL when the extension's tables predate deduplication (not yet upgraded).
 */
extern ArchiveDedup *ArchiveDedupOpen(const char *topic, int32 partition);

/*
 * Check a valid event of the open batch at offset: true when it is a real-time event
 * already archived or already in the batch (then recorded as a duplicate); else its
 * id is remembered with the batch.  queue_id: the event_queue row, or -1.
 */
extern bool ArchiveDedupCheck(ArchiveDedup *d, int64 event_id, const char *value, size_t len,
							  int64 offset, int64 queue_id);

/* Duplicates dropped from the open batch. */
extern int64 ArchiveDedupBatchDuplicates(ArchiveDedup *d);

/*
 * Record the open batch's duplicates and real-time ids in the caller's transaction
 * (SPI connected, snapshot set), prune the window, and start a new batch.
 */
extern void ArchiveDedupRecord(ArchiveDedup *d);

/* Forget the open batch (its transaction rolled back: it is read again). */
extern void ArchiveDedupForget(ArchiveDedup *d);

/* Free the state of a partition. */
extern void ArchiveDedupClose(ArchiveDedup *d);

/* Duplicates recorded so far in recsys.archive_duplicates (in a transaction). */
extern int64 ArchiveDedupTotal(void);

#endif							/* RECSYS_ARCHIVE_DEDUP_H */
