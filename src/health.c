/*
 * health.c: recsys_health(), the first thing to run when something is wrong.
 *
 * One row per component (postgres, kafka, s3, redis, llm): whether it is configured,
 * whether it answered, and a sentence for a human. An unconfigured part names the
 * embedded default that stands in for it. Every probe is bounded by its component's
 * timeout setting, so a stopped server gives a failed row, never a hang. Messages
 * never carry a secret.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "guc.h"
#include "http.h"
#include "kafka.h"
#include "recsys.h"
#include "redis.h"
#include "s3.h"

PG_FUNCTION_INFO_V1(recsys_health);

typedef struct HealthRow
{
	const char *component;
	bool		configured;
	bool		ok;
	char		detail[1024];
} HealthRow;

static void health_postgres(HealthRow *row);
static void health_kafka(HealthRow *row);
static void health_s3(HealthRow *row);
static void health_redis(HealthRow *row);
static void health_llm(HealthRow *row);

/* Return one row per component: configured, ok, detail. */
Datum
recsys_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HealthRow	rows[5];
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	memset(rows, 0, sizeof(rows));
	rows[0].component = "postgres";
	rows[1].component = "kafka";
	rows[2].component = "s3";
	rows[3].component = "redis";
	rows[4].component = "llm";
	health_postgres(&rows[0]);
	health_kafka(&rows[1]);
	health_s3(&rows[2]);
	health_redis(&rows[3]);
	health_llm(&rows[4]);

	for (i = 0; i < lengthof(rows); i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = CStringGetTextDatum(rows[i].component);
		values[1] = BoolGetDatum(rows[i].configured);
		values[2] = BoolGetDatum(rows[i].ok);
		values[3] = CStringGetTextDatum(rows[i].detail);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* PostgreSQL itself: is recsys preloaded, so that its workers run? */
static void
health_postgres(HealthRow *row)
{
	row->configured = true;
	row->ok = RecsysPreloaded;
	if (RecsysPreloaded)
		snprintf(row->detail, sizeof(row->detail),
				 "PostgreSQL %s, recsys preloaded, workers use database \"%s\"",
				 PG_VERSION, recsys_database);
	else
		snprintf(row->detail, sizeof(row->detail),
				 "PostgreSQL %s, but recsys is not in shared_preload_libraries: "
				 "its background workers are not running", PG_VERSION);
}

/* Kafka: ask the brokers for metadata and look for the topic. */
static void
health_kafka(HealthRow *row)
{
	char		err[512] = "";
	int			n_brokers = 0;
	int			n_partitions = 0;
	char	   *props;

	if (!RecsysKafkaConfigured())
	{
		snprintf(row->detail, sizeof(row->detail),
				 "not configured (recsys.kafka_brokers is empty): events go to the queue table recsys.event_queue");
		row->ok = true;
		return;
	}
	row->configured = true;
	props = GucKafkaProperties();
	if (KafkaCheckProperties(props, err, sizeof(err)) != 0)
		snprintf(row->detail, sizeof(row->detail),
				 "the Kafka configuration is invalid: %s (see recsys.kafka_properties and the kafka.<property> entries of recsys.secrets_file)",
				 err);
	else if (KafkaDescribe(recsys_kafka_brokers, props, recsys_kafka_topic,
					  recsys_kafka_timeout_ms, &n_brokers, &n_partitions,
					  err, sizeof(err)) != 0)
		snprintf(row->detail, sizeof(row->detail),
				 "brokers %s did not answer within recsys.kafka_timeout (%d ms): %s",
				 recsys_kafka_brokers, recsys_kafka_timeout_ms, err);
	else if (n_partitions == 0)
		snprintf(row->detail, sizeof(row->detail),
				 "%d broker(s) at %s, but topic \"%s\" does not exist",
				 n_brokers, recsys_kafka_brokers, recsys_kafka_topic);
	else
	{
		row->ok = true;
		snprintf(row->detail, sizeof(row->detail),
				 "%d broker(s) at %s, topic \"%s\" with %d partition(s)",
				 n_brokers, recsys_kafka_brokers, recsys_kafka_topic, n_partitions);
	}
	CHECK_FOR_INTERRUPTS();
}

/* S3: HEAD the bucket with the configured credentials. */
static void
health_s3(HealthRow *row)
{
	S3Config	cfg;
	char		err[1024] = "";
	int			rc;

	if (!RecsysS3Configured())
	{
		char	   *dir = GucArchiveDir();

		snprintf(row->detail, sizeof(row->detail),
				 "not configured (recsys.s3_endpoint is empty): the archive is the local directory %s",
				 dir);
		row->ok = true;
		return;
	}
	row->configured = true;
	memset(&cfg, 0, sizeof(cfg));
	cfg.endpoint = recsys_s3_endpoint;
	cfg.bucket = recsys_s3_bucket;
	cfg.region = recsys_s3_region;
	/* copies: reading one secret may reload the file and free the other */
	cfg.access_key = SecretGet("s3_access_key") ? pstrdup(SecretGet("s3_access_key")) : NULL;
	cfg.secret_key = SecretGet("s3_secret_key") ? pstrdup(SecretGet("s3_secret_key")) : NULL;
	cfg.timeout_ms = recsys_s3_timeout_ms;
	if (cfg.access_key == NULL || cfg.secret_key == NULL)
	{
		snprintf(row->detail, sizeof(row->detail),
				 "no S3 credentials: set s3_access_key and s3_secret_key in recsys.secrets_file");
		return;
	}
	rc = S3CheckBucket(&cfg, err, sizeof(err));
	explicit_bzero(unconstify(char *, cfg.secret_key), strlen(cfg.secret_key));
	if (rc != 0)
		snprintf(row->detail, sizeof(row->detail), "bucket \"%s\" at %s: %s",
				 recsys_s3_bucket, recsys_s3_endpoint, err);
	else
	{
		row->ok = true;
		snprintf(row->detail, sizeof(row->detail),
				 "bucket \"%s\" at %s reachable with the configured credentials",
				 recsys_s3_bucket, recsys_s3_endpoint);
	}
	CHECK_FOR_INTERRUPTS();
}

/* Redis: connect, authenticate, PING. */
static void
health_redis(HealthRow *row)
{
	RedisConn  *conn;
	RedisUrl	url;
	char		err[512] = "";

	if (!RecsysRedisConfigured())
	{
		snprintf(row->detail, sizeof(row->detail),
				 "not configured (recsys.redis_url is empty): recommendations are not cached");
		row->ok = true;
		return;
	}
	row->configured = true;
	if (RedisParseUrl(recsys_redis_url, &url, err, sizeof(err)) != 0)
	{
		snprintf(row->detail, sizeof(row->detail), "bad recsys.redis_url: %s", err);
		return;
	}
	conn = RedisConnect(recsys_redis_url, SecretGet("redis_password"),
						recsys_redis_timeout_ms, err, sizeof(err));
	if (conn == NULL || RedisPing(conn, err, sizeof(err)) != 0)
		snprintf(row->detail, sizeof(row->detail), "%s (recsys.redis_timeout is %d ms)",
				 err, recsys_redis_timeout_ms);
	else
	{
		row->ok = true;
		RedisDescribe(conn, row->detail, sizeof(row->detail));
	}
	RedisClose(conn);
	CHECK_FOR_INTERRUPTS();
}

/* LLM: the endpoint answers GET /models with the configured key. */
static void
health_llm(HealthRow *row)
{
	char		err[512] = "";
	char	   *url;
	long		status;

	if (!RecsysLlmConfigured())
	{
		snprintf(row->detail, sizeof(row->detail),
				 "not configured (recsys.llm_endpoint is empty): recommendations use the in-database ranking alone");
		row->ok = true;
		return;
	}
	row->configured = true;
	url = psprintf("%s/models", recsys_llm_endpoint);
	status = HttpGetStatus(url, SecretGet("llm_api_key"), recsys_llm_timeout_ms,
						   err, sizeof(err));
	if (status < 0)
		snprintf(row->detail, sizeof(row->detail), "%s did not answer within recsys.llm_timeout (%d ms): %s",
				 recsys_llm_endpoint, recsys_llm_timeout_ms, err);
	else if (status != 200)
		snprintf(row->detail, sizeof(row->detail), "%s answered GET /models with HTTP %ld%s",
				 recsys_llm_endpoint, status,
				 status == 401 ? " (check llm_api_key in recsys.secrets_file)" : "");
	else
	{
		row->ok = true;
		snprintf(row->detail, sizeof(row->detail), "%s reachable, model \"%s\"",
				 recsys_llm_endpoint, recsys_llm_model);
	}
	CHECK_FOR_INTERRUPTS();
}
