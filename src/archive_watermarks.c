/*
 * archive_watermarks.c: a thread that keeps the log's watermarks (see the header).
 *
 * State shared with the thread sits behind one mutex.  The thread owns its librdkafka
 * handle; when asked to stop it returns at the end of the round in progress and frees
 * what it owns (the structure included), so the caller never waits for it and never
 * touches the structure after ArchiveWatermarksStop.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "archive_watermarks.h"
#include "kafka.h"
#include "libutil.h"

typedef struct Slot
{
	int32_t		partition;
	int64_t		low;
	int64_t		high;
	int64_t		asked_ms;
} Slot;

struct ArchiveWatermarks
{
	pthread_mutex_t mutex;
	rd_kafka_t *rk;
	char	   *topic;
	int			n;
	Slot	   *slots;
	int			interval_ms;
	int			stop;
	int64_t		last_round_ms;	/* when the last complete round started */
	char		error[256];
};

static void *wm_main(void *arg);
static void wm_free(ArchiveWatermarks *w);
static void wm_quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

int64_t
ArchiveWatermarksNow(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
wm_quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
}

/* Start the watermark thread for the given partitions; NULL with a message in err. */
ArchiveWatermarks *
ArchiveWatermarksStart(const char *brokers, const char *properties, const char *topic, int n,
					   const int32_t *partitions, int interval_ms, char *err, size_t errlen)
{
	ArchiveWatermarks *w = calloc(1, sizeof(ArchiveWatermarks));
	rd_kafka_conf_t *conf;
	char		e[512];
	sigset_t	old;
	pthread_t	thread;
	pthread_attr_t attr;
	int			i,
				ok;

	if (w == NULL || (w->topic = strdup(topic)) == NULL ||
		(w->slots = calloc(n > 0 ? n : 1, sizeof(Slot))) == NULL)
	{
		snprintf(err, errlen, "out of memory");
		wm_free(w);
		return NULL;
	}
	pthread_mutex_init(&w->mutex, NULL);
	w->n = n;
	w->interval_ms = interval_ms;
	w->last_round_ms = -1;
	for (i = 0; i < n; i++)
	{
		w->slots[i].partition = partitions[i];
		w->slots[i].low = w->slots[i].high = w->slots[i].asked_ms = -1;
	}
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, wm_quiet_log);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof(e)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "client.id", "recsys-archiver-watermarks", e, sizeof(e)) != RD_KAFKA_CONF_OK ||
		KafkaConfApplyProperties(conf, properties, err, errlen) != 0)
	{
		if (err[0] == '\0')
			snprintf(err, errlen, "bad Kafka configuration");
		rd_kafka_conf_destroy(conf);
		wm_free(w);
		return NULL;
	}

	/* librdkafka's threads and ours must never run PostgreSQL's signal handlers */
	LibBlockSignals(&old);
	w->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	ok = w->rk != NULL;
	if (ok)
	{
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		ok = pthread_create(&thread, &attr, wm_main, w) == 0;
		pthread_attr_destroy(&attr);
	}
	LibRestoreSignals(&old);
	if (!ok)
	{
		snprintf(err, errlen, "could not start the watermark thread: %s", w->rk ? "pthread_create failed" : e);
		if (w->rk == NULL)
			rd_kafka_conf_destroy(conf);
		wm_free(w);
		return NULL;
	}
	return w;
}

static void
wm_free(ArchiveWatermarks *w)
{
	if (w == NULL)
		return;
	if (w->rk)
		rd_kafka_destroy(w->rk);
	free(w->topic);
	free(w->slots);
	free(w);
}

/* The thread: one round over the partitions every interval, until asked to stop. */
static void *
wm_main(void *arg)
{
	ArchiveWatermarks *w = arg;

	for (;;)
	{
		int64_t		round_start = ArchiveWatermarksNow();
		int			i,
					all = 1,
					stop;
		char		error[256] = "";

		for (i = 0; i < w->n; i++)
		{
			int64_t		low = -1,
						high = -1;
			int64_t		asked = ArchiveWatermarksNow();
			rd_kafka_resp_err_t rc;

			rc = rd_kafka_query_watermark_offsets(w->rk, w->topic, w->slots[i].partition,
												  &low, &high, 2000);
			pthread_mutex_lock(&w->mutex);
			if (rc == RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				w->slots[i].low = low;
				w->slots[i].high = high;
				w->slots[i].asked_ms = asked;
			}
			else
			{
				all = 0;
				snprintf(error, sizeof(error), "could not read the offsets of partition %d: %s",
						 (int) w->slots[i].partition, rd_kafka_err2str(rc));
			}
			stop = w->stop;
			pthread_mutex_unlock(&w->mutex);
			if (stop)
				break;
		}
		pthread_mutex_lock(&w->mutex);
		if (all)
			w->last_round_ms = round_start;
		snprintf(w->error, sizeof(w->error), "%s", error);
		stop = w->stop;
		pthread_mutex_unlock(&w->mutex);
		if (stop)
			break;
		{
			int64_t		left = round_start + w->interval_ms - ArchiveWatermarksNow();

			if (left > 0)
			{
				struct timespec ts = {left / 1000, (left % 1000) * 1000000L};

				nanosleep(&ts, NULL);
			}
		}
	}
	pthread_mutex_destroy(&w->mutex);
	wm_free(w);
	return NULL;
}

int
ArchiveWatermarksGet(ArchiveWatermarks *w, int32_t partition, int64_t *low, int64_t *high,
					 int64_t *asked_ms)
{
	int			i,
				rc = -1;

	pthread_mutex_lock(&w->mutex);
	for (i = 0; i < w->n; i++)
		if (w->slots[i].partition == partition && w->slots[i].asked_ms >= 0)
		{
			*low = w->slots[i].low;
			*high = w->slots[i].high;
			*asked_ms = w->slots[i].asked_ms;
			rc = 0;
		}
	pthread_mutex_unlock(&w->mutex);
	return rc;
}

int64_t
ArchiveWatermarksAge(ArchiveWatermarks *w, char *err, size_t errlen)
{
	int64_t		age;

	pthread_mutex_lock(&w->mutex);
	age = w->last_round_ms < 0 ? -1 : ArchiveWatermarksNow() - w->last_round_ms;
	if (err)
		snprintf(err, errlen, "%s", w->error[0] ? w->error : "no answer from Kafka yet");
	pthread_mutex_unlock(&w->mutex);
	return age;
}

void
ArchiveWatermarksStop(ArchiveWatermarks *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mutex);
	w->stop = 1;
	pthread_mutex_unlock(&w->mutex);
}
