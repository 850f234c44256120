--
-- recsys_health(): one row per component. With nothing configured but PostgreSQL,
-- each row says what stands in for the missing part.
--
SET recsys.kafka_brokers = '';
SET recsys.s3_endpoint = '';
SET recsys.redis_url = '';
SET recsys.llm_endpoint = '';
SET recsys.archive_dir = '/srv/recsys/archive';
SELECT component, configured, ok,
       regexp_replace(detail, 'PostgreSQL [^,]+', 'PostgreSQL N') AS detail
FROM recsys_health();

-- a configured part that does not answer fails its row, within its timeout
SET recsys.redis_url = 'redis://127.0.0.1:1/0';
SELECT component, configured, ok, detail FROM recsys_health() WHERE component = 'redis';
SET recsys.redis_url = 'http://127.0.0.1:6379';
SELECT component, configured, ok, detail FROM recsys_health() WHERE component = 'redis';
SET recsys.redis_url = 'redis://127.0.0.1:x/0';
SELECT component, configured, ok, detail FROM recsys_health() WHERE component = 'redis';

SET recsys.kafka_brokers = '127.0.0.1:1';
SET recsys.kafka_timeout = '1s';
SELECT component, configured, ok,
       detail LIKE 'brokers 127.0.0.1:1 did not answer within recsys.kafka_timeout (1000 ms): %' AS says_why
FROM recsys_health() WHERE component = 'kafka';

SET recsys.s3_endpoint = 'http://127.0.0.1:1';
SET recsys.s3_timeout = '1s';
SELECT component, configured, ok,
       detail LIKE 'bucket "recsys" at http://127.0.0.1:1: %' AS says_why
FROM recsys_health() WHERE component = 's3';

SET recsys.llm_endpoint = 'http://127.0.0.1:1/v1';
SET recsys.llm_timeout = '1s';
SELECT component, configured, ok,
       detail LIKE 'http://127.0.0.1:1/v1 did not answer within recsys.llm_timeout (1000 ms): %' AS says_why
FROM recsys_health() WHERE component = 'llm';
RESET ALL;
