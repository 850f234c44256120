--
-- Hardening (issue 9): secrets refused in settings without echoing them, and one
-- clear sentence about the caller's input for odd arguments.
--
SET recsys.kafka_brokers = '';

-- recsys.kafka_properties: an allow-list of non-secret librdkafka properties; the
-- error names the property, never the value
SET recsys.kafka_properties = 'security.protocol=SSL,ssl.key.pem=-----BEGIN PRIVATE KEY-----MIIEvQ';
SET recsys.kafka_properties = 'sasl.mechanism=OAUTHBEARER,sasl.oauthbearer.config=principal=admin clientSecret=s3cr3t';
SET recsys.kafka_properties = 'sasl.password=hunter2';
SET recsys.kafka_properties = 'ssl.keystore.password=hunter2';
SET recsys.kafka_properties = 'SASL.PASSWORD=hunter2';
SET recsys.kafka_properties = 'acks=0';
SET recsys.kafka_properties = 'client.id=x,hunter2';
SET recsys.kafka_properties = ' =hunter2';
SET recsys.kafka_properties = 'sasl.password:hunter2 = x';
SET recsys.kafka_properties = 'security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512, sasl.username=recsys,
  ssl.ca.location=/etc/ssl/certs/ca.pem, ssl.endpoint.identification.algorithm=https, client.id=recsys,
  compression.type=lz4, linger.ms=5, request.timeout.ms=30000';
SHOW recsys.kafka_properties;
RESET recsys.kafka_properties;

-- recsys.redis_url: the password comes from the secrets file (redis_password)
SET recsys.redis_url = 'redis://:hunter2@127.0.0.1:6379/0';
SET recsys.redis_url = 'redis://default:hunter2@127.0.0.1:6379';
SET recsys.redis_url = 'redis://127.0.0.1:6379/0';
RESET recsys.redis_url;

-- a bad value of an allowed property is a configuration error, not "Kafka is not reachable"
INSERT INTO recsys.movies (movie_id, title, year, genres) VALUES (1, 'Toy Story (1995)', 1995, '{Animation}')
  ON CONFLICT DO NOTHING;
COPY (VALUES ('userId,movieId,rating,timestamp'), ('1,1,4.0,964982703')) TO '/tmp/recsys_regress_hardening.csv';
SET recsys.kafka_brokers = '127.0.0.1:1';
SET recsys.kafka_properties = 'security.protocol=carrier_pigeon';
SELECT * FROM recsys_ingest_csv('/tmp/recsys_regress_hardening.csv');
SELECT detail FROM recsys_health() WHERE component = 'kafka';
RESET recsys.kafka_properties;
SET recsys.kafka_brokers = '';

-- recsys_rate: ids and times out of range say so, with the range
SELECT recsys_rate(9223372036854775807, 1, 4);
SELECT recsys_rate(1, 1000000000000000000, 4);
SELECT recsys_rate(1, 1, 4, 'infinity');
SELECT recsys_rate(1, 1, 4, '-infinity');
SELECT recsys_rate(1, 1, 4, '1969-12-31 23:59:59+00');
SELECT recsys_rate(999999999999999999, 1, 4, '9999-12-31 23:59:59+00');
SELECT count(*) AS rated FROM recsys.outbox WHERE key = '999999999999999999';

-- an empty path is not the data directory
SELECT * FROM recsys_ingest_csv('');
SELECT recsys_load_movies('');

-- recsys_archive_sync: a timeout out of range says so, whatever its size
SELECT recsys_archive_sync('1000000 years');
SELECT recsys_archive_sync('-1 s');
SELECT recsys_archive_sync('25 days');

-- an ordinary role is refused plainly, without the function's SQL
CREATE ROLE recsys_regress_plain;
SET ROLE recsys_regress_plain;
SELECT recsys_archive_sync('1 s');
SELECT recsys_rate(1, 1, 4);
SELECT * FROM recsys_health();
RESET ROLE;
DROP ROLE recsys_regress_plain;
