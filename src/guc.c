/*
 * guc.c: every recsys.* setting, defined in one place.
 *
 * Where a setting is read:
 * - connection settings (brokers, endpoints, URLs) are PGC_SUSET: the server's
 *   configuration applies to every backend and worker, and a superuser may override
 *   them in a session (tests and health checks do);
 * - settings that shape shared memory or the set of workers are PGC_POSTMASTER;
 * - recsys.secrets_file is PGC_SIGHUP: only the server's configuration names it.
 * Secrets themselves are never settings (see secrets.c): recsys.kafka_properties takes
 * only the librdkafka properties of an allow-list (names of mechanisms, users, paths,
 * tuning; no password, key, token or OAuth configuration, and none that would weaken
 * the pipeline's guarantees, such as acks or isolation.level), and recsys.redis_url no
 * password.  Their errors name the property, never the value.
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "guc.h"
#include "recommend.h"

char	   *recsys_database = NULL;
char	   *recsys_kafka_brokers = NULL;
char	   *recsys_kafka_topic = NULL;
char	   *recsys_kafka_properties = NULL;
int			recsys_kafka_timeout_ms = 10000;
int			recsys_archive_flush_events = 100000;
int			recsys_archive_flush_interval_ms = 5000;
int			recsys_archiver_workers = 1;
char	   *recsys_s3_endpoint = NULL;
char	   *recsys_s3_bucket = NULL;
char	   *recsys_s3_region = NULL;
int			recsys_s3_timeout_ms = 10000;
char	   *recsys_archive_dir = NULL;
char	   *recsys_redis_url = NULL;
int			recsys_redis_timeout_ms = 2000;
int			recsys_cache_ttl_s = 3600;
char	   *recsys_llm_endpoint = NULL;
char	   *recsys_llm_model = NULL;
int			recsys_llm_timeout_ms = 10000;
char	   *recsys_secrets_file = NULL;

static bool check_kafka_properties(char **newval, void **extra, GucSource source);
static bool check_redis_url(char **newval, void **extra, GucSource source);
static bool kafka_property_allowed(const char *name);

/*
 * librdkafka properties that recsys.kafka_properties may set: none carries a secret
 * (those come from recsys.secrets_file as kafka.<property>), none overrides what the
 * pipeline's guarantees rest on (acks, enable.idempotence, transactional.id,
 * isolation.level, group and offset handling), none runs a command.
 */
static const char *const kafka_allowed_properties[] = {
	"client.id", "client.rack", "broker.address.family", "broker.version.fallback",
	"api.version.request", "api.version.request.timeout.ms", "api.version.fallback.ms",
	"security.protocol",
	"sasl.mechanism", "sasl.mechanisms", "sasl.username",
	"sasl.kerberos.service.name", "sasl.kerberos.principal", "sasl.kerberos.keytab",
	"sasl.kerberos.min.time.before.relogin",
	"sasl.oauthbearer.method", "sasl.oauthbearer.client.id", "sasl.oauthbearer.scope",
	"sasl.oauthbearer.token.endpoint.url",
	"ssl.ca.location", "ssl.ca.certificate.stores", "ssl.crl.location",
	"ssl.certificate.location", "ssl.key.location", "ssl.keystore.location",
	"ssl.endpoint.identification.algorithm", "enable.ssl.certificate.verification",
	"ssl.cipher.suites", "ssl.curves.list", "ssl.sigalgs.list",
	"compression.type", "compression.codec", "compression.level",
	"linger.ms", "queue.buffering.max.ms", "queue.buffering.max.messages",
	"queue.buffering.max.kbytes", "batch.num.messages", "batch.size",
	"message.max.bytes", "message.copy.max.bytes", "receive.message.max.bytes",
	"message.timeout.ms", "delivery.timeout.ms", "request.timeout.ms",
	"socket.timeout.ms", "socket.keepalive.enable", "socket.nagle.disable",
	"socket.send.buffer.bytes", "socket.receive.buffer.bytes",
	"socket.connection.setup.timeout.ms", "connections.max.idle.ms",
	"reconnect.backoff.ms", "reconnect.backoff.max.ms", "retry.backoff.ms",
	"retry.backoff.max.ms", "retries", "message.send.max.retries",
	"metadata.max.age.ms", "topic.metadata.refresh.interval.ms",
	"topic.metadata.refresh.fast.interval.ms", "topic.metadata.propagation.max.ms",
	"fetch.min.bytes", "fetch.max.bytes", "fetch.wait.max.ms", "fetch.error.backoff.ms",
	"fetch.message.max.bytes", "max.partition.fetch.bytes",
	"queued.min.messages", "queued.max.messages.kbytes",
	"session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms",
	"client.dns.lookup", "sticky.partitioning.linger.ms",
	NULL
};

/* Define every recsys.* setting and reserve the prefix. */
void
GucInit(void)
{
	DefineCustomStringVariable("recsys.database",
							   "Database the recsys background workers connect to.",
							   "The database where CREATE EXTENSION recsys was run.",
							   &recsys_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("recsys.kafka_brokers",
							   "Kafka bootstrap servers (host:port,...); empty for the embedded queue table.",
							   "When empty, events go to the table recsys.event_queue.",
							   &recsys_kafka_brokers, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("recsys.kafka_topic",
							   "Kafka topic that carries rating events.",
							   NULL,
							   &recsys_kafka_topic, "recsys-events",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("recsys.kafka_properties",
							   "Extra librdkafka properties, as key=value pairs separated by commas.",
							   "For SASL and TLS settings. Passwords belong in recsys.secrets_file.",
							   &recsys_kafka_properties, "",
							   PGC_SUSET, 0, check_kafka_properties, NULL, NULL);
	DefineCustomIntVariable("recsys.kafka_timeout",
							"Longest wait for Kafka: metadata, delivery, flush.",
							NULL,
							&recsys_kafka_timeout_ms, 10000, 100, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("recsys.archive_flush_events",
							"Events per partition that make the archiver write an object.",
							NULL,
							&recsys_archive_flush_events, 100000, 1, 100000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("recsys.archive_flush_interval",
							"Longest time the archiver holds events before writing an object.",
							NULL,
							&recsys_archive_flush_interval_ms, 5000, 10, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("recsys.archiver_workers",
							"Number of archiver background workers; each owns a share of the partitions.",
							NULL,
							&recsys_archiver_workers, 1, 0, 64,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("recsys.s3_endpoint",
							   "S3 endpoint URL (https://s3.amazonaws.com, http://127.0.0.1:9000); empty for a local directory.",
							   "When empty, the archive is written to recsys.archive_dir.",
							   &recsys_s3_endpoint, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("recsys.s3_bucket",
							   "S3 bucket of the event archive.",
							   NULL,
							   &recsys_s3_bucket, "recsys",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("recsys.s3_region",
							   "S3 region used in request signatures.",
							   NULL,
							   &recsys_s3_region, "us-east-1",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("recsys.s3_timeout",
							"Longest wait for one S3 request.",
							NULL,
							&recsys_s3_timeout_ms, 10000, 100, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("recsys.archive_dir",
							   "Local archive directory used when recsys.s3_endpoint is empty.",
							   "Relative paths are taken from the data directory.",
							   &recsys_archive_dir, "recsys_archive",
							   PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("recsys.redis_url",
							   "Redis URL for the recommendation cache (redis://host:port[/db]); empty for no cache.",
							   "A password belongs in recsys.secrets_file (redis_password), not in the URL.",
							   &recsys_redis_url, "",
							   PGC_SUSET, 0, check_redis_url, NULL, NULL);
	DefineCustomIntVariable("recsys.redis_timeout",
							"Longest wait for one Redis connection or reply.",
							NULL,
							&recsys_redis_timeout_ms, 2000, 10, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("recsys.cache_ttl",
							"Lifetime of a cached recommendation list.",
							NULL,
							&recsys_cache_ttl_s, 3600, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomStringVariable("recsys.llm_endpoint",
							   "Base URL of an OpenAI-compatible API (https://api.openai.com/v1); empty for in-database ranking only.",
							   NULL,
							   &recsys_llm_endpoint, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("recsys.llm_model",
							   "Model name sent to the LLM endpoint.",
							   NULL,
							   &recsys_llm_model, "gpt-4o-mini",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("recsys.llm_timeout",
							"Longest wait for one LLM request.",
							NULL,
							&recsys_llm_timeout_ms, 10000, 100, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomStringVariable("recsys.secrets_file",
							   "File with the S3 keys, LLM API key and passwords (key=value lines).",
							   "It must belong to the server's OS user and be readable by it alone.",
							   &recsys_secrets_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);

	/* aggregation (neighbors.c): the item neighbours and their refresh policy */
	DefineCustomIntVariable("recsys.neighbors_k",
							"Neighbours kept per movie in recsys.item_neighbors.",
							"A change takes effect at the next aggregate, which recomputes every movie's neighbours.",
							&recsys_neighbors_k, 50, 1, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("recsys.neighbors_refresh",
							 "Share of changed ratings that makes an aggregate recompute the item neighbours.",
							 "0 recomputes them every run; 0.1 once 10 % of the ratings changed since the last computation.",
							 &recsys_neighbors_refresh, 0.1, 0.0, 1000.0,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("recsys.neighbors_user_cap",
							"Most recent ratings of a user that count for item similarities (0: all).",
							"Caps the cost of very active users, whose ratings say least about any one pair.",
							&recsys_neighbors_user_cap, 500, 0, INT_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("recsys.neighbors_alpha",
							 "User damping of item similarities: a user counts 1 / n^alpha.",
							 NULL, &recsys_neighbors_alpha, 0.25, 0.0, 2.0,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("recsys.neighbors_beta",
							 "Asymmetric cosine exponent of item similarities (0.5: cosine).",
							 NULL, &recsys_neighbors_beta, 0.5, 0.0, 1.0,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("recsys.neighbors_shrink",
							 "Shrinkage added to the denominator of item similarities.",
							 NULL, &recsys_neighbors_shrink, 5.0, 0.0, 1e6,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("recsys.neighbors_min_common",
							"Fewest users who rated both movies for them to be neighbours.",
							NULL, &recsys_neighbors_min_common, 3, 1, INT_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("recsys.neighbors_threads",
							"Threads of the aggregating worker that compute item neighbours.",
							NULL, &recsys_neighbors_threads, 2, 1, 64,
							PGC_SUSET, 0, NULL, NULL, NULL);

	/* recommendations (recommend.c): the ranking's parameters */
	DefineCustomIntVariable("recsys.recommend_seeds",
							"Most recent ratings of a user that seed the ranking.",
							"Caps the cost of a very active user's call.",
							&recsys_recommend_seeds, 20, 1, 10000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("recsys.recommend_neutral",
							 "Rating that counts as neither a like nor a dislike in the ranking.",
							 "A seed weighs (rating - this): below it, its neighbours are pushed down.",
							 &recsys_recommend_neutral, 3.0, 0.0, 5.0,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("recsys.recommend_half_life",
							 "Days after which a seed counts half, relative to the user's latest rating.",
							 "0 or less: no decay.",
							 &recsys_recommend_half_life, 365.0, -1.0, 1e6,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("recsys.recommend_genre_weight",
							 "Weight of the favourite genres' best Bayesian averages in the ranking.",
							 NULL, &recsys_recommend_genre_weight, 0.2, 0.0, 1e6,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("recsys.recommend_popularity_weight",
							 "Weight of well-rated popularity in the ranking.",
							 NULL, &recsys_recommend_popularity_weight, 0.6, 0.0, 1e6,
							 PGC_SUSET, 0, NULL, NULL, NULL);

	MarkGUCPrefixReserved("recsys");
}

/* Return recsys.archive_dir as an absolute path (palloc'd). */
char *
GucArchiveDir(void)
{
	if (recsys_archive_dir == NULL || recsys_archive_dir[0] == '\0')
		return psprintf("%s/recsys_archive", DataDir);
	if (is_absolute_path(recsys_archive_dir))
		return pstrdup(recsys_archive_dir);
	return psprintf("%s/%s", DataDir, recsys_archive_dir);
}

/* Return recsys.kafka_properties followed by the kafka.<property> secrets. */
char *
GucKafkaProperties(void)
{
	char	   *secrets = SecretKafkaProperties();
	char	   *props;

	props = psprintf("%s\n%s", recsys_kafka_properties, secrets);
	explicit_bzero(secrets, strlen(secrets));
	pfree(secrets);
	return props;
}

/* Is name on the allow-list of recsys.kafka_properties? */
static bool
kafka_property_allowed(const char *name)
{
	int			i;

	for (i = 0; kafka_allowed_properties[i] != NULL; i++)
		if (strcmp(kafka_allowed_properties[i], name) == 0)
			return true;
	return false;
}

/*
 * Accept only key=value entries (separated by commas or newlines) whose keys are on
 * the allow-list; name the first offending key, never a value.
 */
static bool
check_kafka_properties(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;
	int			entry = 0;

	if (p == NULL)
		return true;
	while (*p)
	{
		const char *end = p + strcspn(p, ",\n");
		const char *eq = memchr(p, '=', end - p);
		const char *k = p;
		const char *kend;
		char		name[128];

		while (k < end && isspace((unsigned char) *k))
			k++;
		if (k < end && *k != '#')
		{
			entry++;
			if (eq == NULL)
			{
				GUC_check_errmsg("entry %d of recsys.kafka_properties is not of the form key=value", entry);
				return false;
			}
			for (kend = eq; kend > k && isspace((unsigned char) kend[-1]); kend--)
				;
			if (kend == k)
			{
				GUC_check_errmsg("entry %d of recsys.kafka_properties has no property name", entry);
				return false;
			}
			if ((size_t) (kend - k) >= sizeof(name))
			{
				GUC_check_errmsg("entry %d of recsys.kafka_properties has an overlong property name", entry);
				return false;
			}
			memcpy(name, k, kend - k);
			name[kend - k] = '\0';
			if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(name))
			{
				/* not a property name: perhaps a pasted value, so do not show it */
				GUC_check_errmsg("entry %d of recsys.kafka_properties has an invalid property name", entry);
				return false;
			}
			if (!kafka_property_allowed(name))
			{
				GUC_check_errmsg("recsys.kafka_properties may not set the Kafka property \"%s\"", name);
				GUC_check_errdetail("It takes only non-secret librdkafka properties (security.protocol, sasl.mechanism, sasl.username, ssl.ca.location, client.id, compression and timeouts, ...), listed in the README.");
				GUC_check_errhint("Put secrets (passwords, keys, tokens, sasl.oauthbearer.config) in recsys.secrets_file as kafka.<property> = <value>.");
				return false;
			}
		}
		p = *end ? end + 1 : end;
	}
	return true;
}

/* Refuse a password (or any user information) inside recsys.redis_url. */
static bool
check_redis_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;

	if (url == NULL || strncmp(url, "redis://", 8) != 0)
		return true;			/* other mistakes are reported by the health check */
	/* the database part is a number: an '@' anywhere is user information */
	if (strchr(url + 8, '@') != NULL)
	{
		GUC_check_errmsg("recsys.redis_url must not carry a password");
		GUC_check_errdetail("A setting can be read back with SHOW, logged, or written to postgresql.auto.conf.");
		GUC_check_errhint("Use redis://host:port[/db] and put the password in recsys.secrets_file as redis_password.");
		return false;
	}
	return true;
}
