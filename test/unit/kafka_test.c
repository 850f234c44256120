/*
 * kafka_test.c: standalone checks of src/kafka.c against a real broker.
 *
 *   cc -O2 -Wall -Wextra -Werror -Isrc -o /tmp/kafka_test test/unit/kafka_test.c \
 *      src/kafka.c src/libutil.c -lrdkafka -lpthread
 *   /tmp/kafka_test BROKERS TOPIC [N]
 *
 * TOPIC (default recsys-unit) must exist; do not use the pipeline's topic, since the
 * values written here are not events.  The test reads back only
 * what it produced, from the high watermarks taken before, told apart by a tag in the
 * values.  Prints TAP.  With N, also measures the producer's acknowledged events per
 * second for N events.
 */
#include "kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
never(void *arg)
{
	(void) arg;
	return 0;
}

static int
always(void *arg)
{
	(void) arg;
	return 1;
}

int
main(int argc, char **argv)
{
	const char *brokers = argc > 1 ? argv[1] : "127.0.0.1:19600";
	const char *topic = argc > 2 ? argv[2] : "recsys-unit";
	long		nbench = argc > 3 ? atol(argv[3]) : 0;
	char		absent[64],
				tag[32],
				err[512];
	int64_t		start[64];
	int			n_part = 0;
	int			nb,
				np,
				rc,
				i;
	KafkaProducerOptions o = {0};
	KafkaProducer *p;
	KafkaConsumer *c;
	KafkaMessage msgs[100];
	int32_t		parts[64];
	int64_t		lo,
				hi;
	int32_t		badp = -1;

	for (i = 0; i < 64; i++)
		parts[i] = i;
	snprintf(absent, sizeof(absent), "recsys-unit-absent-%d", (int) getpid());
	snprintf(tag, sizeof(tag), "unit-%d-%ld", (int) getpid(), (long) time(NULL));

	/* describe: a dead port fails within the timeout */
	{
		double		t0 = now_s();

		rc = KafkaDescribe("127.0.0.1:1", NULL, topic, 1500, &nb, &np, err, sizeof(err));
		ok(rc == -1 && now_s() - t0 < 3.0, "describe of a dead broker fails within the timeout");
		printf("# %s\n", err);
	}
	rc = KafkaDescribe(brokers, "socket.keepalive.enable=true, client.id = x\n", absent,
					   5000, &nb, &np, err, sizeof(err));
	ok(rc == 0 && nb == 1 && np == 0, "describe: one broker, topic absent");
	rc = KafkaDescribe(brokers, NULL, topic, 5000, &nb, &np, err, sizeof(err));
	ok(rc == 0 && np >= 1 && np <= 64, "describe: the topic exists");
	printf("# partitions %d\n", np);

	/* the high watermarks before we produce: we read back from there */
	c = KafkaConsumerNew(brokers, NULL, topic, NULL, never, NULL, err, sizeof(err));
	KafkaConsumerPartitions(c, 5000, &n_part, err, sizeof(err));
	ok(n_part == np, "consumer sees the partition count");
	for (i = 0; i < n_part; i++)
		KafkaConsumerWatermarks(c, i, &lo, &start[i], 5000, err, sizeof(err));
	KafkaConsumerFree(c);
	rc = KafkaDescribe(brokers, "no.such.property=secret", topic, 5000, &nb, &np, err, sizeof(err));
	ok(rc == -1 && strstr(err, "no.such.property") && !strstr(err, "secret"),
	   "describe: bad property named, value hidden");
	printf("# %s\n", err);

	/* producer: 1000 keyed events */
	o.brokers = brokers;
	o.topic = topic;
	o.timeout_ms = 10000;
	o.interrupt = never;
	p = KafkaProducerNew(&o, err, sizeof(err));
	ok(p != NULL, "producer created");
	if (!p)
	{
		printf("# %s\n", err);
		return 1;
	}
	for (i = 0; i < 1000; i++)
	{
		char		k[32],
					v[128];
		int			kl = snprintf(k, sizeof(k), "%d", i % 17);
		int			vl = snprintf(v, sizeof(v), "%s {\"event_id\":%d}", tag, i);

		if (KafkaProduce(p, k, kl, v, vl) != KAFKA_OK)
			break;
	}
	rc = KafkaProducerFlush(p, -1);
	ok(rc == KAFKA_OK && KafkaProducerAcked(p) == 1000 && KafkaProducerFailed(p) == 0,
	   "1000 events acknowledged");
	KafkaProducerFree(p);

	/* consumer: read everything back from the beginning */
	c = KafkaConsumerNew(brokers, NULL, topic, NULL, never, NULL, err, sizeof(err));
	ok(c != NULL, "consumer created");
	{
		long		total = 0;
		double		t0 = now_s();

		KafkaConsumerAssign(c, n_part, parts, start, err, sizeof(err));
		while (total < 1000 && now_s() - t0 < 20)
		{
			rc = KafkaConsumerPoll(c, msgs, 100, 1000, &badp, err, sizeof(err));
			if (rc < 0)
			{
				printf("# poll: %s\n", err);
				break;
			}
			for (i = 0; i < rc; i++)
				if (msgs[i].value_len > strlen(tag) && memcmp(msgs[i].value, tag, strlen(tag)) == 0)
					total++;
		}
		ok(total == 1000, "consumer read back 1000 events");
		hi = -1;
		{
			long		sum = 0;

			for (i = 0; i < n_part; i++)
			{
				KafkaConsumerWatermarks(c, i, &lo, &hi, 5000, err, sizeof(err));
				sum += hi - start[i];
			}
			ok(sum >= 1000, "watermarks moved by at least 1000");
		}
		{
			int64_t		pos = -1;

			KafkaConsumerPosition(c, 0, &pos);
			KafkaConsumerWatermarks(c, 0, &lo, &hi, 5000, err, sizeof(err));
			ok(pos == hi, "position of partition 0 is its high watermark");
		}
		/* out of range */
		{
			int32_t		p0 = 0;
			int64_t		off = hi + 1000;

			KafkaConsumerAssign(c, 1, &p0, &off, err, sizeof(err));
			rc = KafkaConsumerPoll(c, msgs, 10, 5000, &badp, err, sizeof(err));
			ok(rc == KAFKA_OUT_OF_RANGE && badp == 0, "offset out of range reported");
			printf("# %s\n", err);
		}
	}
	KafkaConsumerFree(c);

	/* transactions: aborted events are invisible to read_committed consumers */
	o.transactional_id = "recsys-unit-txn";
	p = KafkaProducerNew(&o, err, sizeof(err));
	ok(p != NULL, "transactional producer created");
	if (p)
	{
		char		aborted[64],
					committed[64];
		int			al = snprintf(aborted, sizeof(aborted), "%s aborted", tag);
		int			cl = snprintf(committed, sizeof(committed), "%s committed", tag);

		c = KafkaConsumerNew(brokers, NULL, topic, NULL, never, NULL, err, sizeof(err));
		for (i = 0; i < n_part; i++)
			KafkaConsumerWatermarks(c, i, &lo, &start[i], 5000, err, sizeof(err));
		KafkaConsumerFree(c);
		KafkaBeginTransaction(p);
		for (i = 0; i < 10; i++)
			KafkaProduce(p, "a", 1, aborted, al);
		KafkaProducerFlush(p, -1);
		ok(KafkaAbortTransaction(p) == KAFKA_OK, "transaction aborted");
		KafkaBeginTransaction(p);
		for (i = 0; i < 5; i++)
			KafkaProduce(p, "c", 1, committed, cl);
		ok(KafkaCommitTransaction(p) == KAFKA_OK, "transaction committed");
		KafkaProducerFree(p);
		c = KafkaConsumerNew(brokers, NULL, topic, NULL, never, NULL, err, sizeof(err));
		{
			int			ncommitted = 0,
						naborted = 0;
			double		t0 = now_s();

			KafkaConsumerAssign(c, n_part, parts, start, err, sizeof(err));
			while (now_s() - t0 < 5)
			{
				rc = KafkaConsumerPoll(c, msgs, 100, 500, &badp, err, sizeof(err));
				for (i = 0; i < rc; i++)
				{
					if (msgs[i].value_len == (size_t) cl && memcmp(msgs[i].value, committed, cl) == 0)
						ncommitted++;
					else if (msgs[i].value_len == (size_t) al && memcmp(msgs[i].value, aborted, al) == 0)
						naborted++;
				}
				if (ncommitted == 5)
					break;
			}
			ok(ncommitted == 5 && naborted == 0, "read_committed sees only the committed 5");
			/* once caught up, positions pass the transaction markers */
			{
				int			same = 0;
				double		t1 = now_s();

				while (now_s() - t1 < 5 && same < n_part)
				{
					same = 0;
					KafkaConsumerPoll(c, msgs, 100, 200, &badp, err, sizeof(err));
					for (i = 0; i < n_part; i++)
					{
						int64_t		pos = -1;

						KafkaConsumerWatermarks(c, i, &lo, &hi, 5000, err, sizeof(err));
						if (KafkaConsumerPosition(c, i, &pos) == KAFKA_OK && pos == hi)
							same++;
						else if (now_s() - t1 > 4.5)
							printf("# partition %d: position %lld, high watermark %lld\n",
								   i, (long long) pos, (long long) hi);
					}
				}
				ok(same == n_part, "caught up: every position equals its high watermark");
			}
		}
		KafkaConsumerFree(c);
	}

	/* interrupt callback stops a wait on a dead broker */
	{
		KafkaProducerOptions d = {0};
		double		t0;

		d.brokers = "127.0.0.1:1";
		d.topic = topic;
		d.timeout_ms = 30000;
		d.interrupt = always;
		p = KafkaProducerNew(&d, err, sizeof(err));
		KafkaProduce(p, "k", 1, "v", 1);
		t0 = now_s();
		rc = KafkaProducerFlush(p, -1);
		ok(rc == KAFKA_INTERRUPTED && now_s() - t0 < 1.0, "interrupt stops the flush");
		KafkaProducerFree(p);

		d.interrupt = never;
		d.timeout_ms = 2000;
		p = KafkaProducerNew(&d, err, sizeof(err));
		KafkaProduce(p, "k", 1, "v", 1);
		t0 = now_s();
		rc = KafkaProducerFlush(p, -1);
		ok(rc != KAFKA_OK && now_s() - t0 < 4.0, "dead broker: flush fails within the timeout");
		printf("# %s\n", KafkaProducerError(p));
		KafkaProducerFree(p);
	}

	if (nbench > 0)
	{
		double		t0;
		char		v[128];

		o.topic = topic;
		o.transactional_id = NULL;
		p = KafkaProducerNew(&o, err, sizeof(err));
		t0 = now_s();
		for (i = 0; i < nbench; i++)
		{
			char		k[24];
			int			kl = snprintf(k, sizeof(k), "%d", i % 100000);
			int			vl = snprintf(v, sizeof(v),
									  "{\"event_id\":%ld,\"user_id\":%d,\"movie_id\":%d,\"rating\":%.1f,\"ts\":%d}",
									  10000000000L + i, i % 100000, i % 50000, (i % 10 + 1) / 2.0, 1112486027 + i);

			if (KafkaProduce(p, k, kl, v, vl) != KAFKA_OK)
				break;
		}
		rc = KafkaProducerFlush(p, 60000);
		printf("# bench: %ld acked, %ld failed in %.2f s: %.0f events/s\n",
			   (long) KafkaProducerAcked(p), (long) KafkaProducerFailed(p), now_s() - t0,
			   KafkaProducerAcked(p) / (now_s() - t0));
		KafkaProducerFree(p);
	}
	return tap_done();
}
