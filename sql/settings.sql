--
-- Every recsys.* setting exists, with its unit and the context that decides who may
-- change it; the prefix is reserved, so a typo is an error, not a silent new variable.
--
SELECT name, vartype, unit, context
FROM pg_settings WHERE name LIKE 'recsys.%' ORDER BY name;

-- defaults that do not depend on the stack
SELECT name, boot_val FROM pg_settings
WHERE name IN ('recsys.kafka_topic', 'recsys.kafka_timeout', 'recsys.archive_flush_events',
               'recsys.archive_flush_interval', 'recsys.s3_bucket', 'recsys.s3_region',
               'recsys.cache_ttl', 'recsys.llm_model', 'recsys.llm_timeout')
ORDER BY name;

-- durations take units
SET recsys.kafka_timeout = '2s';
SHOW recsys.kafka_timeout;
SET recsys.kafka_timeout = '250ms';
SHOW recsys.kafka_timeout;
RESET recsys.kafka_timeout;
SET recsys.kafka_timeout = 'soon';

-- the prefix is reserved
SET recsys.kafka_broker = 'localhost:9092';
SET recsys.s3_secret_key = 'abc';

-- settings that shape workers or name the secrets file are not session settings
SET recsys.archiver_workers = 4;
SET recsys.secrets_file = '/tmp/secrets';
SET recsys.archive_flush_events = 10;

-- a password has no place in a setting
SET recsys.kafka_properties = 'security.protocol=SASL_SSL,sasl.password=hunter2';
SET recsys.kafka_properties = 'security.protocol=SASL_SSL,sasl.mechanism=PLAIN';
SHOW recsys.kafka_properties;
RESET recsys.kafka_properties;

-- an ordinary user may not point recsys elsewhere
CREATE ROLE recsys_regress_user;
SET ROLE recsys_regress_user;
SET recsys.kafka_brokers = 'attacker:9092';
RESET ROLE;
DROP ROLE recsys_regress_user;
