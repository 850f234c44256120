/*
 * kafka.c: the librdkafka wrapper behind kafka.h (plain C, no PostgreSQL headers).
 *
 * Design:
 * - Every handle is created with all signals blocked in the calling thread, so the
 *   threads librdkafka starts inherit a full signal mask and PostgreSQL's handlers
 *   only ever run on the backend's own thread.
 * - Callbacks (delivery reports, errors) run on the calling thread from rd_kafka_poll
 *   and only count and record: the first failure is kept in a fixed buffer and
 *   returned; the PostgreSQL side raises it after the call returned.
 * - Every wait is a loop of short polls (KAFKA_INTERRUPT_POLL_MS) bounded by a
 *   deadline, asking the caller's interrupt callback between polls.
 * - Error texts name the failing operation and librdkafka's reason, never a property
 *   value: properties may carry SASL passwords or TLS keys.
 */
#ifndef _GNU_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#endif
#include "kafka.h"
#include "libutil.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define KAFKA_ERRLEN 512

/*
 * Messages are handed to librdkafka KAFKA_LOCAL_BATCH at a time with
 * rd_kafka_produce_batch(): it reads the clocks and takes the topic's locks once per
 * batch instead of once per message, which is most of the producing thread's cost
 * besides parsing.
 */
#define KAFKA_LOCAL_BATCH		1024

struct KafkaProducer
{
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	int			timeout_ms;
	int			queue_max;		/* queue.buffering.max.messages */
	int			batch_max;		/* local batch size: at most queue_max */
	/* the local batch: keys and values copied into arena, described by msgs */
	int			nlocal;
	rd_kafka_message_t msgs[KAFKA_LOCAL_BATCH];
	size_t		key_off[KAFKA_LOCAL_BATCH];
	size_t		value_off[KAFKA_LOCAL_BATCH];
	char	   *arena;
	size_t		arena_len;
	size_t		arena_cap;
	bool		transactional;
	KafkaInterruptFn interrupt;
	void	   *interrupt_arg;
	int64_t		acked;
	int64_t		failed;
	bool		fatal;
	char		error[KAFKA_ERRLEN];
};

struct KafkaConsumer
{
	rd_kafka_t *rk;
	char	   *topic;
	KafkaInterruptFn interrupt;
	void	   *interrupt_arg;
	rd_kafka_message_t **held;	/* messages returned by the last poll */
	int			nheld;
	int			maxheld;
	/* next offset per partition, as far as we know (assignment, messages, EOF) */
	int64_t    *next;
	int			nnext;
	/* an error met after messages were collected: returned by the next poll */
	int			pending_rc;
	int32_t		pending_partition;
	char		pending_err[512];
};

static int64_t now_ms(void);
static int	conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
					 char *err, size_t errlen);
static rd_kafka_t *new_handle(rd_kafka_type_t type, rd_kafka_conf_t *conf,
							  char *err, size_t errlen);
static void producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque);
static void producer_error_cb(rd_kafka_t *rk, int errcode, const char *reason,
							  void *opaque);
static void producer_record(KafkaProducer *p, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
static int	producer_txn_result(KafkaProducer *p, rd_kafka_error_t *error,
								const char *what);
static void quiet_log_cb(const rd_kafka_t *rk, int level, const char *fac,
						 const char *buf);
static void consumer_release(KafkaConsumer *c);
static void consumer_track(KafkaConsumer *c, int32_t partition, int64_t next);

/* Return a monotonic clock in milliseconds. */
static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Set one configuration property; the message names the property, not its value. */
static int
conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
		 char *err, size_t errlen)
{
	char		errstr[256];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		/* librdkafka's message may quote the value: keep only the property name */
		LibSetError(err, errlen, "invalid Kafka property \"%s\"", name);
		return -1;
	}
	return 0;
}

/* Apply "k=v" pairs separated by commas or newlines; blank entries are skipped. */
int
KafkaConfApplyProperties(rd_kafka_conf_t *conf, const char *properties, char *err, size_t errlen)
{
	char	   *copy;
	char	   *item;
	char	   *save = NULL;
	int			rc = 0;

	if (properties == NULL || properties[0] == '\0')
		return 0;
	copy = strdup(properties);
	if (copy == NULL)
	{
		LibSetError(err, errlen, "out of memory");
		return -1;
	}
	for (item = strtok_r(copy, ",\n", &save); item != NULL; item = strtok_r(NULL, ",\n", &save))
	{
		char	   *eq;
		char	   *k,
				   *v,
				   *end;

		while (isspace((unsigned char) *item))
			item++;
		if (*item == '\0' || *item == '#')
			continue;
		eq = strchr(item, '=');
		if (eq == NULL)
		{
			LibSetError(err, errlen, "invalid entry in Kafka properties: expected key=value");
			rc = -1;
			break;
		}
		*eq = '\0';
		k = item;
		v = eq + 1;
		for (end = eq - 1; end >= k && isspace((unsigned char) *end); end--)
			*end = '\0';
		while (isspace((unsigned char) *v))
			v++;
		for (end = v + strlen(v) - 1; end >= v && isspace((unsigned char) *end); end--)
			*end = '\0';
		if (conf_set(conf, k, v, err, errlen) != 0)
		{
			rc = -1;
			break;
		}
	}
	free(copy);
	return rc;
}

/* Apply properties to a scratch configuration: are they all valid for librdkafka? */
int
KafkaCheckProperties(const char *properties, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	int			rc = KafkaConfApplyProperties(conf, properties, err, errlen);

	rd_kafka_conf_destroy(conf);
	return rc;
}

/* Keep librdkafka from writing to the server's stderr; errors come back by value. */
static void
quiet_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void) rk;
	(void) level;
	(void) fac;
	(void) buf;
}

/* Create a handle with every signal blocked, so librdkafka's threads block them too. */
static rd_kafka_t *
new_handle(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *err, size_t errlen)
{
	sigset_t	old;
	rd_kafka_t *rk;
	char		errstr[256];

	LibBlockSignals(&old);
	rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
	LibRestoreSignals(&old);
	if (rk == NULL)
	{
		LibSetError(err, errlen, "could not create Kafka client: %s", errstr);
		rd_kafka_conf_destroy(conf);
	}
	return rk;
}

/* Return librdkafka's version string. */
const char *
KafkaVersion(void)
{
	return rd_kafka_version_str();
}

/* Ask the brokers for metadata: number of brokers and of partitions of topic. */
int
KafkaDescribe(const char *brokers, const char *properties, const char *topic,
			  int timeout_ms, int *n_brokers, int *n_partitions,
			  char *err, size_t errlen)
{
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t rc;
	int			i;

	*n_brokers = 0;
	*n_partitions = 0;
	if (brokers == NULL || brokers[0] == '\0')
	{
		LibSetError(err, errlen, "no Kafka brokers configured");
		return -1;
	}
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
	if (conf_set(conf, "bootstrap.servers", brokers, err, errlen) != 0 ||
		conf_set(conf, "allow.auto.create.topics", "false", err, errlen) != 0 ||
		KafkaConfApplyProperties(conf, properties, err, errlen) != 0)
	{
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rk = new_handle(RD_KAFKA_PRODUCER, conf, err, errlen);
	if (rk == NULL)
		return -1;

	/* all topics: asking for one would create it where auto-creation is on */
	rc = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
	if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		LibSetError(err, errlen, "could not get Kafka metadata from %s within %d ms: %s",
				brokers, timeout_ms, rd_kafka_err2str(rc));
		rd_kafka_destroy(rk);
		return -1;
	}
	*n_brokers = md->broker_cnt;
	for (i = 0; i < md->topic_cnt; i++)
	{
		if (topic != NULL && strcmp(md->topics[i].topic, topic) == 0 &&
			md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
			*n_partitions = md->topics[i].partition_cnt;
	}
	rd_kafka_metadata_destroy(md);
	rd_kafka_destroy(rk);
	return 0;
}

/* ---------------------------------------------------------------------------------
 * Producer
 * ---------------------------------------------------------------------------------
 */

/* Record the first failure of a producer. */
static void
producer_record(KafkaProducer *p, const char *fmt,...)
{
	va_list		ap;

	if (p->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(p->error, sizeof(p->error), fmt, ap);
	va_end(ap);
}

/* Count a delivery report (runs inside rd_kafka_poll on the caller's thread). */
static void
producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	KafkaProducer *p = (KafkaProducer *) opaque;

	(void) rk;
	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		p->acked++;
	else
	{
		p->failed++;
		producer_record(p, "Kafka delivery failed: %s", rd_kafka_err2str(msg->err));
	}
}

/* Record fatal errors and "all brokers down"; other errors are retried by librdkafka. */
static void
producer_error_cb(rd_kafka_t *rk, int errcode, const char *reason, void *opaque)
{
	KafkaProducer *p = (KafkaProducer *) opaque;

	if (errcode == RD_KAFKA_RESP_ERR__FATAL)
	{
		char		buf[256];
		rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));

		p->fatal = true;
		producer_record(p, "Kafka producer fatal error: %s: %s",
						rd_kafka_err2name(orig), buf);
	}
	(void) reason;
}

/* Create a producer. */
KafkaProducer *
KafkaProducerNew(const KafkaProducerOptions *opts, char *err, size_t errlen)
{
	KafkaProducer *p;
	rd_kafka_conf_t *conf;
	char		buf[64];

	if (opts->brokers == NULL || opts->brokers[0] == '\0')
	{
		LibSetError(err, errlen, "no Kafka brokers configured");
		return NULL;
	}
	p = calloc(1, sizeof(KafkaProducer));
	if (p == NULL)
	{
		LibSetError(err, errlen, "out of memory");
		return NULL;
	}
	p->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
	p->interrupt = opts->interrupt;
	p->interrupt_arg = opts->interrupt_arg;
	p->transactional = opts->transactional_id != NULL;

	conf = rd_kafka_conf_new();
	rd_kafka_conf_set_opaque(conf, p);
	rd_kafka_conf_set_dr_msg_cb(conf, producer_dr_cb);
	rd_kafka_conf_set_error_cb(conf, producer_error_cb);
	rd_kafka_conf_set_log_cb(conf, quiet_log_cb);

	snprintf(buf, sizeof(buf), "%d", p->timeout_ms);
	if (conf_set(conf, "bootstrap.servers", opts->brokers, err, errlen) != 0 ||
		conf_set(conf, "client.id", "recsys", err, errlen) != 0 ||
		conf_set(conf, "enable.idempotence", "true", err, errlen) != 0 ||
		conf_set(conf, "acks", "all", err, errlen) != 0 ||
		conf_set(conf, "compression.type", "lz4", err, errlen) != 0 ||
		conf_set(conf, "partitioner", "murmur2_random", err, errlen) != 0 ||
		conf_set(conf, "linger.ms", "20", err, errlen) != 0 ||
		conf_set(conf, "batch.num.messages", "20000", err, errlen) != 0 ||
		conf_set(conf, "batch.size", "4000000", err, errlen) != 0 ||
		conf_set(conf, "queue.buffering.max.messages", "100000", err, errlen) != 0 ||
		conf_set(conf, "message.timeout.ms", buf, err, errlen) != 0 ||
		conf_set(conf, "socket.timeout.ms", buf, err, errlen) != 0)
		goto fail;
	snprintf(buf, sizeof(buf), "%zu", opts->queue_kbytes > 0 ? opts->queue_kbytes : 32768);
	if (conf_set(conf, "queue.buffering.max.kbytes", buf, err, errlen) != 0)
		goto fail;
	if (p->transactional)
	{
		if (conf_set(conf, "transactional.id", opts->transactional_id, err, errlen) != 0)
			goto fail;
		snprintf(buf, sizeof(buf), "%d",
				 opts->transaction_timeout_ms > 0 ? opts->transaction_timeout_ms : 60000);
		if (conf_set(conf, "transaction.timeout.ms", buf, err, errlen) != 0)
			goto fail;
	}
	if (KafkaConfApplyProperties(conf, opts->properties, err, errlen) != 0)
		goto fail;
	{
		size_t		size = sizeof(buf);

		p->queue_max = 100000;
		if (rd_kafka_conf_get(conf, "queue.buffering.max.messages", buf, &size) == RD_KAFKA_CONF_OK)
			p->queue_max = atoi(buf);
		if (p->queue_max < 1)
			p->queue_max = 1;
		p->batch_max = p->queue_max < KAFKA_LOCAL_BATCH ? p->queue_max : KAFKA_LOCAL_BATCH;
	}

	p->rk = new_handle(RD_KAFKA_PRODUCER, conf, err, errlen);
	if (p->rk == NULL)
	{
		free(p);
		return NULL;
	}
	p->rkt = rd_kafka_topic_new(p->rk, opts->topic, NULL);
	if (p->rkt == NULL)
	{
		LibSetError(err, errlen, "could not create Kafka topic handle: %s",
				rd_kafka_err2str(rd_kafka_last_error()));
		rd_kafka_destroy(p->rk);
		free(p);
		return NULL;
	}
	if (p->transactional)
	{
		rd_kafka_error_t *error = rd_kafka_init_transactions(p->rk, p->timeout_ms);

		if (error != NULL)
		{
			LibSetError(err, errlen, "could not initialize Kafka transactions: %s",
					rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
			KafkaProducerFree(p);
			return NULL;
		}
	}
	return p;

fail:
	rd_kafka_conf_destroy(conf);
	free(p);
	return NULL;
}

/*
 * Hand the local batch to librdkafka, in order. A part is offered only when the queue
 * has room for all of it by count; should the byte limit refuse some messages anyway,
 * they are the part's tail (nothing leaves the queue during the call) and are offered
 * again after waiting, so one key's messages keep their order. Waiting serves delivery
 * reports, is bounded by the producer's timeout without progress, and interruptible.
 */
static int
producer_hand_over(KafkaProducer *p)
{
	int64_t		deadline = now_ms() + p->timeout_ms;
	int64_t		last_acked = p->acked;
	int			first = 0;
	int			n = p->nlocal;
	int			i;

	for (i = 0; i < n; i++)
	{
		p->msgs[i].payload = p->arena + p->value_off[i];
		p->msgs[i].key = p->arena + p->key_off[i];
		p->msgs[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
	}
	p->nlocal = 0;
	p->arena_len = 0;
	while (first < n)
	{
		if (rd_kafka_outq_len(p->rk) + (n - first) <= p->queue_max)
		{
			int			queued = rd_kafka_produce_batch(p->rkt, RD_KAFKA_PARTITION_UA,
														RD_KAFKA_MSG_F_COPY,
														p->msgs + first, n - first);

			if (queued == n - first)
				break;
			for (i = first; i < n && p->msgs[i].err == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
				;
			first = i;
			for (; i < n; i++)
				if (p->msgs[i].err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				{
					producer_record(p, "could not queue Kafka message: %s",
									rd_kafka_err2str(p->msgs[i].err));
					return p->fatal ? KAFKA_FATAL : KAFKA_ERROR;
				}
		}

		/* no room: serve delivery reports until there is */
		if (p->acked != last_acked)
		{
			deadline = now_ms() + p->timeout_ms;
			last_acked = p->acked;
		}
		rd_kafka_poll(p->rk, 10);
		if (p->failed > 0)
			return KAFKA_ERROR;
		if (p->fatal)
			return KAFKA_FATAL;
		if (p->interrupt && p->interrupt(p->interrupt_arg))
		{
			producer_record(p, "interrupted while producing to Kafka");
			return KAFKA_INTERRUPTED;
		}
		if (now_ms() > deadline)
		{
			producer_record(p, "Kafka producer queue stayed full for %d ms: no broker acknowledged messages",
							p->timeout_ms);
			return KAFKA_TIMEOUT;
		}
	}
	rd_kafka_poll(p->rk, 0);
	return KAFKA_OK;
}

/* Add one message to the local batch, handing the batch over when it is full. */
int
KafkaProduce(KafkaProducer *p, const char *key, size_t keylen,
			 const char *value, size_t valuelen)
{
	rd_kafka_message_t *m;

	if (p->failed > 0)
		return KAFKA_ERROR;
	if (p->fatal)
		return KAFKA_FATAL;
	if (p->arena_len + keylen + valuelen > p->arena_cap)
	{
		size_t		cap = p->arena_cap ? p->arena_cap : 256 * 1024;
		char	   *a;

		while (cap < p->arena_len + keylen + valuelen)
			cap *= 2;
		a = realloc(p->arena, cap);
		if (a == NULL)
		{
			producer_record(p, "out of memory queueing a Kafka message");
			return KAFKA_ERROR;
		}
		p->arena = a;
		p->arena_cap = cap;
	}
	m = &p->msgs[p->nlocal];
	memset(m, 0, sizeof(*m));
	p->key_off[p->nlocal] = p->arena_len;
	memcpy(p->arena + p->arena_len, key, keylen);
	p->arena_len += keylen;
	m->key_len = keylen;
	p->value_off[p->nlocal] = p->arena_len;
	memcpy(p->arena + p->arena_len, value, valuelen);
	p->arena_len += valuelen;
	m->len = valuelen;
	if (++p->nlocal == p->batch_max)
		return producer_hand_over(p);
	return KAFKA_OK;
}

/* Serve delivery reports without blocking. */
void
KafkaProducerPoll(KafkaProducer *p)
{
	if (p->nlocal > 0 && p->failed == 0 && !p->fatal)
		(void) producer_hand_over(p);	/* an error is recorded for the next call */
	rd_kafka_poll(p->rk, 0);
}

/* Wait, bounded, until every queued message is acknowledged or failed. */
int
KafkaProducerFlush(KafkaProducer *p, int timeout_ms)
{
	int64_t		deadline = now_ms() + (timeout_ms < 0 ? p->timeout_ms : timeout_ms);

	if (p->nlocal > 0)
	{
		int			rc;

		if (p->failed > 0)
			return KAFKA_ERROR;
		if (p->fatal)
			return KAFKA_FATAL;
		if ((rc = producer_hand_over(p)) != KAFKA_OK)
			return rc;
	}
	for (;;)
	{
		rd_kafka_resp_err_t rc = rd_kafka_flush(p->rk, KAFKA_INTERRUPT_POLL_MS);

		if (rc == RD_KAFKA_RESP_ERR_NO_ERROR && rd_kafka_outq_len(p->rk) == 0)
			break;
		if (p->interrupt && p->interrupt(p->interrupt_arg))
		{
			producer_record(p, "interrupted while waiting for Kafka acknowledgements");
			return KAFKA_INTERRUPTED;
		}
		if (now_ms() > deadline)
		{
			producer_record(p, "timed out after %d ms waiting for Kafka to acknowledge %d messages",
							timeout_ms < 0 ? p->timeout_ms : timeout_ms,
							rd_kafka_outq_len(p->rk));
			return KAFKA_TIMEOUT;
		}
	}
	rd_kafka_poll(p->rk, 0);
	if (p->fatal)
		return KAFKA_FATAL;
	if (p->failed > 0)
		return KAFKA_ERROR;
	return KAFKA_OK;
}

/* Turn a transaction API result into a return code, recording the error. */
static int
producer_txn_result(KafkaProducer *p, rd_kafka_error_t *error, const char *what)
{
	int			rc;

	if (error == NULL)
		return KAFKA_OK;
	producer_record(p, "could not %s Kafka transaction: %s", what,
					rd_kafka_error_string(error));
	if (rd_kafka_error_is_fatal(error))
	{
		p->fatal = true;
		rc = KAFKA_FATAL;
	}
	else if (rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__TIMED_OUT)
		rc = KAFKA_TIMEOUT;
	else
		rc = KAFKA_ERROR;
	rd_kafka_error_destroy(error);
	return rc;
}

/* Begin a transaction. */
int
KafkaBeginTransaction(KafkaProducer *p)
{
	return producer_txn_result(p, rd_kafka_begin_transaction(p->rk), "begin");
}

/* Flush (bounded, interruptible) and commit the transaction. */
int
KafkaCommitTransaction(KafkaProducer *p)
{
	int			rc = KafkaProducerFlush(p, -1);

	if (rc != KAFKA_OK)
		return rc;
	return producer_txn_result(p, rd_kafka_commit_transaction(p->rk, p->timeout_ms),
							   "commit");
}

/* Abort the transaction: nothing of it becomes visible to read_committed readers. */
int
KafkaAbortTransaction(KafkaProducer *p)
{
	p->nlocal = 0;				/* never handed over: nothing to abort of them */
	p->arena_len = 0;
	return producer_txn_result(p, rd_kafka_abort_transaction(p->rk, p->timeout_ms),
							   "abort");
}

int64_t
KafkaProducerAcked(const KafkaProducer *p)
{
	return p->acked;
}

int64_t
KafkaProducerFailed(const KafkaProducer *p)
{
	return p->failed;
}

int64_t
KafkaProducerInFlight(const KafkaProducer *p)
{
	return rd_kafka_outq_len(p->rk) + p->nlocal;
}

/* Reset counters and the recorded error. */
void
KafkaProducerResetCounters(KafkaProducer *p)
{
	p->acked = 0;
	p->failed = 0;
	p->error[0] = '\0';
}

const char *
KafkaProducerError(const KafkaProducer *p)
{
	return p->error;
}

/* Destroy the producer; unsent messages are purged first so this does not wait. */
void
KafkaProducerFree(KafkaProducer *p)
{
	if (p == NULL)
		return;
	free(p->arena);
	if (p->rk)
	{
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_poll(p->rk, 0);
		if (p->rkt)
			rd_kafka_topic_destroy(p->rkt);
		rd_kafka_destroy_flags(p->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	}
	free(p);
}

/* ---------------------------------------------------------------------------------
 * Consumer
 * ---------------------------------------------------------------------------------
 */

/* Create a consumer with manual assignment in mind. */
KafkaConsumer *
KafkaConsumerNew(const char *brokers, const char *properties, const char *topic,
				 const char *group_id, KafkaInterruptFn interrupt, void *interrupt_arg,
				 char *err, size_t errlen)
{
	KafkaConsumer *c;
	rd_kafka_conf_t *conf;

	if (brokers == NULL || brokers[0] == '\0')
	{
		LibSetError(err, errlen, "no Kafka brokers configured");
		return NULL;
	}
	c = calloc(1, sizeof(KafkaConsumer));
	if (c == NULL || (c->topic = strdup(topic)) == NULL)
	{
		free(c);
		LibSetError(err, errlen, "out of memory");
		return NULL;
	}
	c->interrupt = interrupt;
	c->interrupt_arg = interrupt_arg;
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
	if (conf_set(conf, "bootstrap.servers", brokers, err, errlen) != 0 ||
		conf_set(conf, "client.id", "recsys", err, errlen) != 0 ||
		conf_set(conf, "group.id", group_id ? group_id : "recsys-archiver", err, errlen) != 0 ||
		conf_set(conf, "isolation.level", "read_committed", err, errlen) != 0 ||
		conf_set(conf, "enable.auto.commit", "false", err, errlen) != 0 ||
		conf_set(conf, "enable.auto.offset.store", "false", err, errlen) != 0 ||
		conf_set(conf, "auto.offset.reset", "error", err, errlen) != 0 ||
		conf_set(conf, "enable.partition.eof", "true", err, errlen) != 0 ||
		conf_set(conf, "allow.auto.create.topics", "false", err, errlen) != 0 ||
		KafkaConfApplyProperties(conf, properties, err, errlen) != 0)
	{
		rd_kafka_conf_destroy(conf);
		free(c->topic);
		free(c);
		return NULL;
	}
	c->rk = new_handle(RD_KAFKA_CONSUMER, conf, err, errlen);
	if (c->rk == NULL)
	{
		free(c->topic);
		free(c);
		return NULL;
	}
	rd_kafka_poll_set_consumer(c->rk);
	return c;
}

/* Assign partitions with starting offsets. */
int
KafkaConsumerAssign(KafkaConsumer *c, int n, const int32_t *partitions,
					const int64_t *offsets, char *err, size_t errlen)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
	rd_kafka_resp_err_t rc;
	int			i;

	consumer_release(c);
	for (i = 0; i < c->nnext; i++)
		c->next[i] = -1;
	for (i = 0; i < n; i++)
	{
		rd_kafka_topic_partition_list_add(list, c->topic, partitions[i])->offset = offsets[i];
		consumer_track(c, partitions[i], offsets[i]);
	}
	rc = rd_kafka_assign(c->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		LibSetError(err, errlen, "could not assign Kafka partitions: %s", rd_kafka_err2str(rc));
		return KAFKA_ERROR;
	}
	return KAFKA_OK;
}

/* Remember the next offset of a partition (only ever moving forward). */
static void
consumer_track(KafkaConsumer *c, int32_t partition, int64_t next)
{
	if (partition < 0)
		return;
	if (partition >= c->nnext)
	{
		int			n = partition + 16;
		int64_t    *a = realloc(c->next, sizeof(int64_t) * n);
		int			i;

		if (a == NULL)
			return;
		for (i = c->nnext; i < n; i++)
			a[i] = -1;
		c->next = a;
		c->nnext = n;
	}
	if (next >= 0 && next > c->next[partition])
		c->next[partition] = next;
}

/* Destroy the messages handed out by the previous poll. */
static void
consumer_release(KafkaConsumer *c)
{
	int			i;

	for (i = 0; i < c->nheld; i++)
		rd_kafka_message_destroy(c->held[i]);
	c->nheld = 0;
}

/* Fetch up to max messages, waiting at most timeout_ms for the first. */
int
KafkaConsumerPoll(KafkaConsumer *c, KafkaMessage *msgs, int max, int timeout_ms,
				  int32_t *bad_partition, char *err, size_t errlen)
{
	int64_t		deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int			n = 0;

	consumer_release(c);
	if (c->pending_rc != KAFKA_OK)
	{
		int			rc = c->pending_rc;

		LibSetError(err, errlen, "%s", c->pending_err);
		if (bad_partition)
			*bad_partition = c->pending_partition;
		c->pending_rc = KAFKA_OK;
		return rc;
	}
	if (max > c->maxheld)
	{
		rd_kafka_message_t **h = realloc(c->held, sizeof(*h) * max);

		if (h == NULL)
		{
			LibSetError(err, errlen, "out of memory");
			return KAFKA_ERROR;
		}
		c->held = h;
		c->maxheld = max;
	}
	while (n < max)
	{
		int			wait;
		rd_kafka_message_t *m;

		if (n > 0)
			wait = 0;
		else
		{
			int64_t		left = deadline - now_ms();

			if (left <= 0)
				break;
			wait = left < KAFKA_INTERRUPT_POLL_MS ? (int) left : KAFKA_INTERRUPT_POLL_MS;
		}
		m = rd_kafka_consumer_poll(c->rk, wait);
		if (m == NULL)
		{
			if (n > 0)
				break;
			if (c->interrupt && c->interrupt(c->interrupt_arg))
			{
				LibSetError(err, errlen, "interrupted while reading from Kafka");
				return KAFKA_INTERRUPTED;
			}
			continue;
		}
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			int			rc = KAFKA_ERROR;

			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				/* the end of what we may read: past markers and aborted messages */
				consumer_track(c, m->partition, m->offset);
				rd_kafka_message_destroy(m);
				if (n > 0)
					break;
				continue;
			}
			if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
				m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
			{
				rc = KAFKA_OUT_OF_RANGE;
				if (bad_partition)
					*bad_partition = m->partition;
				LibSetError(err, errlen, "Kafka offset out of range in partition %d: %s",
						(int) m->partition, rd_kafka_message_errstr(m));
			}
			else if (m->err == RD_KAFKA_RESP_ERR__TRANSPORT ||
					 m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
					 m->err == RD_KAFKA_RESP_ERR__RESOLVE)
			{
				/* transient: librdkafka retries; keep waiting within the deadline */
				rd_kafka_message_destroy(m);
				continue;
			}
			else
				LibSetError(err, errlen, "Kafka consumer error in partition %d: %s",
						(int) m->partition, rd_kafka_message_errstr(m));
			if (n > 0)
			{
				/* hand out what came before the error; the next poll reports it */
				c->pending_rc = rc;
				c->pending_partition = m->partition;
				snprintf(c->pending_err, sizeof(c->pending_err), "%s", err);
				rd_kafka_message_destroy(m);
				return n;
			}
			rd_kafka_message_destroy(m);
			return rc;
		}
		c->held[c->nheld++] = m;
		consumer_track(c, m->partition, m->offset + 1);
		msgs[n].partition = m->partition;
		msgs[n].offset = m->offset;
		msgs[n].key = m->key;
		msgs[n].key_len = m->key_len;
		msgs[n].value = m->payload;
		msgs[n].value_len = m->len;
		{
			rd_kafka_timestamp_type_t tstype;

			msgs[n].timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
		}
		n++;
	}
	return n;
}

/* The next offset the consumer will read in partition. */
int
KafkaConsumerPosition(KafkaConsumer *c, int32_t partition, int64_t *offset)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	int64_t		best = (partition >= 0 && partition < c->nnext) ? c->next[partition] : -1;

	rd_kafka_topic_partition_list_add(list, c->topic, partition);
	if (rd_kafka_position(c->rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR &&
		list->elems[0].offset > best)
		best = list->elems[0].offset;
	rd_kafka_topic_partition_list_destroy(list);
	if (best < 0)
		return KAFKA_ERROR;
	*offset = best;
	return KAFKA_OK;
}

/* Ask the broker for the watermarks of a partition. */
int
KafkaConsumerWatermarks(KafkaConsumer *c, int32_t partition, int64_t *low, int64_t *high,
						int timeout_ms, char *err, size_t errlen)
{
	rd_kafka_resp_err_t rc = rd_kafka_query_watermark_offsets(c->rk, c->topic, partition,
															   low, high, timeout_ms);

	if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		LibSetError(err, errlen, "could not query Kafka offsets of partition %d: %s",
				(int) partition, rd_kafka_err2str(rc));
		return rc == RD_KAFKA_RESP_ERR__TIMED_OUT ? KAFKA_TIMEOUT : KAFKA_ERROR;
	}
	return KAFKA_OK;
}

/* Number of partitions of the consumer's topic. */
int
KafkaConsumerPartitions(KafkaConsumer *c, int timeout_ms, int *n_partitions,
						char *err, size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, c->topic, NULL);
	rd_kafka_resp_err_t rc;

	*n_partitions = 0;
	rc = rd_kafka_metadata(c->rk, 0, rkt, &md, timeout_ms);
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		LibSetError(err, errlen, "could not get Kafka metadata within %d ms: %s",
				timeout_ms, rd_kafka_err2str(rc));
		return rc == RD_KAFKA_RESP_ERR__TIMED_OUT ? KAFKA_TIMEOUT : KAFKA_ERROR;
	}
	if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
		*n_partitions = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	return KAFKA_OK;
}

/* Close and destroy the consumer. */
void
KafkaConsumerFree(KafkaConsumer *c)
{
	if (c == NULL)
		return;
	consumer_release(c);
	free(c->held);
	free(c->next);
	if (c->rk)
	{
		rd_kafka_assign(c->rk, NULL);
		rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	}
	free(c->topic);
	free(c);
}
