/*
 * guc.h: recsys settings (recsys.*) and secrets.
 *
 * Settings are defined once, in GucInit(), called from _PG_init. Secrets (S3 keys, the
 * LLM API key, the Redis password) are never settings: they come from the file named
 * by recsys.secrets_file, or from the server's environment (see secrets.c).
 */
#ifndef RECSYS_GUC_H
#define RECSYS_GUC_H

extern char *recsys_database;
extern char *recsys_kafka_brokers;
extern char *recsys_kafka_topic;
extern char *recsys_kafka_properties;
extern int	recsys_kafka_timeout_ms;
extern int	recsys_archive_flush_events;
extern int	recsys_archive_flush_interval_ms;
extern int	recsys_archiver_workers;
extern char *recsys_s3_endpoint;
extern char *recsys_s3_bucket;
extern char *recsys_s3_region;
extern int	recsys_s3_timeout_ms;
extern char *recsys_archive_dir;
extern char *recsys_redis_url;
extern int	recsys_redis_timeout_ms;
extern int	recsys_cache_ttl_s;
extern char *recsys_llm_endpoint;
extern char *recsys_llm_model;
extern int	recsys_llm_timeout_ms;
extern char *recsys_secrets_file;
extern int	recsys_neighbors_k;
extern double recsys_neighbors_refresh;
extern int	recsys_neighbors_user_cap;
extern double recsys_neighbors_alpha;
extern double recsys_neighbors_beta;
extern double recsys_neighbors_shrink;
extern int	recsys_neighbors_min_common;
extern int	recsys_neighbors_threads;

/* true when the corresponding external part is configured */
#define RecsysKafkaConfigured()	(recsys_kafka_brokers && recsys_kafka_brokers[0] != '\0')
#define RecsysS3Configured()	(recsys_s3_endpoint && recsys_s3_endpoint[0] != '\0')
#define RecsysRedisConfigured()	(recsys_redis_url && recsys_redis_url[0] != '\0')
#define RecsysLlmConfigured()	(recsys_llm_endpoint && recsys_llm_endpoint[0] != '\0')

extern void GucInit(void);

/* Absolute path of the local archive directory (recsys.archive_dir, made absolute). */
extern char *GucArchiveDir(void);

/*
 * Return the secret NAME (for example "s3_access_key"), or NULL when it is not set.
 * The string is owned by the secrets cache: copy it if it must outlive the next call.
 */
extern const char *SecretGet(const char *name);

/* librdkafka properties from kafka.<property> secrets, as "k=v" lines (palloc'd). */
extern char *SecretKafkaProperties(void);

/*
 * Every librdkafka property recsys passes to its clients: recsys.kafka_properties,
 * then the kafka.<property> secrets, as one "k=v" list (palloc'd).
 */
extern char *GucKafkaProperties(void);

#endif							/* RECSYS_GUC_H */
