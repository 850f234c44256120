/*
 * kafka.h: a small plain-C interface over librdkafka for the event log.
 *
 * No PostgreSQL header is included here or in kafka.c: the PostgreSQL side calls these
 * functions, gets plain return codes and an error message, and raises errors itself
 * after the call returned.  Nothing in kafka.c ever longjmps: librdkafka callbacks only
 * count and record the first error.
 *
 * Handles are created with every signal blocked (pthread_sigmask) so that the threads
 * librdkafka starts never run PostgreSQL's signal handlers.
 *
 * Every wait is bounded and calls the caller's interrupt callback (KafkaInterruptFn)
 * at least every KAFKA_INTERRUPT_POLL_MS; when it returns non-zero the wait stops and
 * the function returns KAFKA_INTERRUPTED, so the caller can free the handle and then
 * process the interrupt (CHECK_FOR_INTERRUPTS) itself.
 *
 * Error messages never contain property values (SASL passwords, TLS keys).
 */
#ifndef RECSYS_KAFKA_H
#define RECSYS_KAFKA_H

#include <stddef.h>
#include <stdint.h>

/* return codes (all failures are negative; a message is in the error buffer) */
#define KAFKA_OK				0
#define KAFKA_ERROR				(-1)	/* generic failure, see the message */
#define KAFKA_TIMEOUT			(-2)	/* the bounded wait expired */
#define KAFKA_INTERRUPTED		(-3)	/* the interrupt callback asked to stop */
#define KAFKA_OUT_OF_RANGE		(-4)	/* consumer: a fetch offset is out of range */
#define KAFKA_FATAL				(-5)	/* producer: fenced, or idempotence broken */

/* special starting offsets for KafkaConsumerAssign */
#define KAFKA_OFFSET_BEGINNING	(-2)
#define KAFKA_OFFSET_END		(-1)

#define KAFKA_INTERRUPT_POLL_MS	100

/* Return non-zero to stop the current wait (for example when InterruptPending). */
typedef int (*KafkaInterruptFn) (void *arg);

/*
 * Ask the brokers for metadata within timeout_ms.  0 on success with the number of
 * brokers and of partitions of topic (0 if the topic does not exist); -1 with a
 * message in err (no secrets) on failure or timeout.  properties: "k=v" pairs
 * separated by commas or newlines, may be NULL/empty.
 */
/*
 * Apply "k=v" properties (commas or newlines between pairs; blank entries and '#'
 * comments skipped) to a librdkafka configuration. 0, or -1 with a message in err
 * that names the property, never its value. For modules that make their own handle.
 */
struct rd_kafka_conf_s;
extern int	KafkaConfApplyProperties(struct rd_kafka_conf_s *conf, const char *properties,
									 char *err, size_t errlen);

/*
 * Check properties ("k=v" pairs) against librdkafka's configuration, without any
 * network: 0, or -1 with a message naming the property (never its value) in err.
 */
extern int	KafkaCheckProperties(const char *properties, char *err, size_t errlen);

extern int	KafkaDescribe(const char *brokers, const char *properties, const char *topic,
						  int timeout_ms, int *n_brokers, int *n_partitions,
						  char *err, size_t errlen);

/* ---------------------------------------------------------------------------------
 * Producer
 *
 * Idempotent (enable.idempotence=true, acks=all), lz4-compressed, batched.  Messages
 * are keyed; the partitioner is murmur2_random (the Java client's), so one user's
 * events stay in one partition in order.  Delivery reports are counted: acked is the
 * number of messages the brokers acknowledged, failed the number that will never be.
 * message.timeout.ms is the producer's timeout_ms, so a broker that is down makes
 * messages fail within it instead of waiting forever.
 * ---------------------------------------------------------------------------------
 */
typedef struct KafkaProducer KafkaProducer;

typedef struct KafkaProducerOptions
{
	const char *brokers;		/* bootstrap.servers, required */
	const char *properties;		/* extra "k=v" pairs (commas or newlines), or NULL */
	const char *topic;			/* the topic every message goes to, required */
	const char *transactional_id;	/* non-NULL: a transactional producer */
	int			timeout_ms;		/* message timeout and bound of every wait */
	int			transaction_timeout_ms; /* transactional: transaction.timeout.ms, 0 =
										 * default (60 s) */
	size_t		queue_kbytes;	/* queue.buffering.max.kbytes, 0 = default (32 MB) */
	KafkaInterruptFn interrupt;	/* may be NULL */
	void	   *interrupt_arg;
} KafkaProducerOptions;

/* Create a producer; NULL with a message in err on failure (bad property, say). */
extern KafkaProducer *KafkaProducerNew(const KafkaProducerOptions *opts,
									   char *err, size_t errlen);

/*
 * Queue one message (key and value are copied).  Messages are handed to librdkafka
 * in order, 1024 at a time (and by KafkaProducerPoll, KafkaProducerFlush and
 * KafkaCommitTransaction); when librdkafka's queue is full, delivery reports are
 * served until there is room, at most timeout_ms without progress.  Returns
 * KAFKA_OK, or a negative code when the producer has failed (a delivery failed, a
 * fatal error, timeout, interrupt): stop producing and call KafkaProducerError.
 */
extern int	KafkaProduce(KafkaProducer *p, const char *key, size_t keylen,
						 const char *value, size_t valuelen);

/*
 * Hand over the messages collected so far and serve delivery reports, without
 * blocking (call now and then while producing).
 */
extern void KafkaProducerPoll(KafkaProducer *p);

/*
 * Wait until every queued message is acknowledged or failed, at most timeout_ms
 * (the producer's timeout when timeout_ms < 0).  KAFKA_OK only if none failed.
 */
extern int	KafkaProducerFlush(KafkaProducer *p, int timeout_ms);

/* Transactions (transactional producers only); each waits at most the timeout. */
extern int	KafkaBeginTransaction(KafkaProducer *p);
extern int	KafkaCommitTransaction(KafkaProducer *p);
extern int	KafkaAbortTransaction(KafkaProducer *p);

/* Counters from delivery reports, and messages still in flight. */
extern int64_t KafkaProducerAcked(const KafkaProducer *p);
extern int64_t KafkaProducerFailed(const KafkaProducer *p);
extern int64_t KafkaProducerInFlight(const KafkaProducer *p);

/* Reset acked/failed counters and the recorded error (the relay reuses a producer). */
extern void KafkaProducerResetCounters(KafkaProducer *p);

/* The first error recorded (a delivery failure, a fatal error), or "" if none. */
extern const char *KafkaProducerError(const KafkaProducer *p);

/* Destroy the producer, waiting for nothing (unsent messages are dropped). */
extern void KafkaProducerFree(KafkaProducer *p);

/* ---------------------------------------------------------------------------------
 * Consumer (for the archiver)
 *
 * Manual partition assignment with explicit starting offsets (no group rebalancing,
 * no offsets committed to Kafka: the archiver keeps its offsets in PostgreSQL).
 * isolation.level=read_committed, enable.auto.commit=false,
 * auto.offset.reset=error: an offset that is out of range makes KafkaConsumerPoll
 * return KAFKA_OUT_OF_RANGE naming the partition, instead of silently skipping.
 * ---------------------------------------------------------------------------------
 */
typedef struct KafkaConsumer KafkaConsumer;

typedef struct KafkaMessage
{
	int32_t		partition;
	int64_t		offset;
	const char *key;			/* not NUL-terminated; NULL if the message has none */
	size_t		key_len;
	const char *value;			/* not NUL-terminated; NULL for a tombstone */
	size_t		value_len;
	int64_t		timestamp_ms;	/* -1 if unknown */
} KafkaMessage;

/*
 * Create a consumer of topic.  group_id may be NULL (a fixed private one is used;
 * nothing is committed).  interrupt may be NULL.
 */
extern KafkaConsumer *KafkaConsumerNew(const char *brokers, const char *properties,
									   const char *topic, const char *group_id,
									   KafkaInterruptFn interrupt, void *interrupt_arg,
									   char *err, size_t errlen);

/*
 * Assign n partitions with their starting offsets (absolute offsets, or
 * KAFKA_OFFSET_BEGINNING / KAFKA_OFFSET_END).  Replaces any previous assignment.
 */
extern int	KafkaConsumerAssign(KafkaConsumer *c, int n, const int32_t *partitions,
								const int64_t *offsets, char *err, size_t errlen);

/*
 * Fetch up to max messages, waiting at most timeout_ms for the first one and
 * returning as soon as no more are immediately available after that (or a partition's
 * end is reached).  Returns the
 * number of messages put into msgs (0 on timeout), or a negative code with a message
 * in err; for KAFKA_OUT_OF_RANGE *bad_partition is set (may be NULL).  An error met after
 * some messages were collected is kept and returned by the next call, so it is never
 * lost behind the messages that preceded it.  The messages
 * stay valid until the next KafkaConsumerPoll or KafkaConsumerFree.
 */
extern int	KafkaConsumerPoll(KafkaConsumer *c, KafkaMessage *msgs, int max,
							  int timeout_ms, int32_t *bad_partition,
							  char *err, size_t errlen);

/*
 * The next offset the consumer will read in partition, as far as it knows: the
 * furthest of the assigned starting offset, the last message returned + 1, and the
 * end-of-partition offset librdkafka reports once the consumer has read everything
 * (which passes transaction markers and aborted messages: once caught up, a
 * read_committed consumer's position equals the high watermark unless a transaction
 * is still open).  KAFKA_OK, or negative if unknown (started at BEGINNING/END and
 * nothing read yet).
 */
extern int	KafkaConsumerPosition(KafkaConsumer *c, int32_t partition, int64_t *offset);

/*
 * Ask the broker for the low and high watermarks of partition (high = the offset
 * after the last message; with read_committed consumers, positions can stop short of
 * it while a transaction is open).  Bounded by timeout_ms.
 */
extern int	KafkaConsumerWatermarks(KafkaConsumer *c, int32_t partition,
									int64_t *low, int64_t *high, int timeout_ms,
									char *err, size_t errlen);

/* Number of partitions of the consumer's topic (0 if absent), bounded by timeout_ms. */
extern int	KafkaConsumerPartitions(KafkaConsumer *c, int timeout_ms, int *n_partitions,
									char *err, size_t errlen);

/* Close and destroy the consumer (bounded: no group to leave). */
extern void KafkaConsumerFree(KafkaConsumer *c);

/* ---------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------
 */

/* librdkafka's version string, for recsys_health details. */
extern const char *KafkaVersion(void);

#endif							/* RECSYS_KAFKA_H */
