--
-- Ingestion: the error messages of recsys_ingest_csv, recsys_load_movies and
-- recsys_rate, the rejects of bad rows, and the event built for a row.
-- (Fixture files are written with COPY TO, as the server's OS user, under /tmp.)
-- Events go to this database's queue table, not to the stack's Kafka topic: the job
-- ids of this scratch database would repeat those of the real one.
--
SET recsys.kafka_brokers = '';
INSERT INTO recsys.movies (movie_id, title, year, genres) VALUES (1, 'Toy Story (1995)', 1995, '{Animation}');

-- a missing file, a directory, an empty file, missing columns, a bad on_error
SELECT * FROM recsys_ingest_csv('/nonexistent/ratings.csv');
SELECT * FROM recsys_ingest_csv('/');
SELECT * FROM recsys_ingest_csv('/dev/null');
COPY (SELECT 'userId,movieId') TO '/tmp/recsys_regress_nocol.csv';
SELECT * FROM recsys_ingest_csv('/tmp/recsys_regress_nocol.csv');
SELECT * FROM recsys_ingest_csv('/tmp/recsys_regress_nocol.csv', on_error => 'ignore');

-- 'stop': the first bad row fails the call, naming the file and the line
COPY (VALUES ('userId,movieId,rating,timestamp'), ('1,1,4.0,964982703'), ('1,1,7,964982703'),
             ('2,1,3.5,2005-04-02 23:53:47'), ('3,2,3.5,964982703'), ('4,1,4,soon'))
  TO '/tmp/recsys_regress_bad.csv';
SELECT * FROM recsys_ingest_csv('/tmp/recsys_regress_bad.csv', on_error => 'stop');

-- 'reject': bad rows are recorded, good rows go through
SELECT events, rejected FROM recsys_ingest_csv('/tmp/recsys_regress_bad.csv');
SELECT line, raw, reason FROM recsys.ingest_rejects ORDER BY job_id, line;
SELECT status, on_error, target, lines, events, rejected, bytes_read = bytes_total AS all_read, error
  FROM recsys.ingest_jobs ORDER BY job_id;
SELECT key, value FROM recsys.event_queue ORDER BY id;

-- recsys_ingest_resume: refused for a job that succeeded or does not exist, or when
-- the event log changed; a failed 'stop' job starts over (and fails at the same row)
SELECT * FROM recsys_ingest_resume((SELECT max(job_id) FROM recsys.ingest_jobs WHERE status = 'succeeded'));
SELECT * FROM recsys_ingest_resume(0);
SELECT * FROM recsys_ingest_resume(424242);
SET recsys.kafka_brokers = '127.0.0.1:1';
SELECT * FROM recsys_ingest_resume((SELECT min(job_id) FROM recsys.ingest_jobs WHERE status = 'failed'));
SET recsys.kafka_brokers = '';
SELECT * FROM recsys_ingest_resume((SELECT min(job_id) FROM recsys.ingest_jobs WHERE status = 'failed'));
SELECT job_id, status, on_error, lines, events, rejected, events_unconfirmed, resumes
  FROM recsys.ingest_jobs ORDER BY job_id;

-- reading server files needs superuser or pg_read_server_files
CREATE ROLE recsys_regress_nobody;
SET ROLE recsys_regress_nobody;
SELECT * FROM recsys_ingest_csv('/tmp/recsys_regress_bad.csv');
SELECT recsys_load_movies('/tmp/recsys_regress_bad.csv');
SELECT * FROM recsys_ingest_resume(1);
RESET ROLE;
DROP ROLE recsys_regress_nobody;

-- recsys_load_movies
SELECT recsys_load_movies('/nonexistent/movies.csv');
SELECT recsys_load_movies('/tmp/recsys_regress_bad.csv');
COPY (VALUES ('movieId,title,genres'), ('x,Bad Movie (2000),Drama')) TO '/tmp/recsys_regress_movies_bad.csv';
SELECT recsys_load_movies('/tmp/recsys_regress_movies_bad.csv');
COPY (VALUES ('movieId,title,genres'), ('2,"Jumanji (1995)",Adventure|Children'), ('3,Untitled,(no genres listed)'))
  TO '/tmp/recsys_regress_movies.csv';
SELECT recsys_load_movies('/tmp/recsys_regress_movies.csv');
SELECT movie_id, title, year, genres FROM recsys.movies ORDER BY movie_id;

-- recsys_rate validates at once, and writes the outbox in the caller's transaction
SELECT recsys_rate(1, 1, 4.2);
SELECT recsys_rate(0, 1, 4);
SELECT recsys_rate(1, 99, 4);
SELECT recsys_rate(1, 1, NULL);
BEGIN;
SELECT recsys_rate(1, 1, 4.5, '2020-01-01 00:00:00+00');
SELECT event_id < 10000000000 AS realtime_id, key, regexp_replace(value, '"event_id":[0-9]+', '"event_id":N') AS value
  FROM recsys.outbox;
ROLLBACK;
SELECT count(*) AS outbox_after_rollback FROM recsys.outbox;

-- the event of one row, and the reasons rows are rejected
SELECT * FROM recsys.rating_event(30000000002, '1', '31', '2.5', '2005-04-02 23:53:47');
SELECT * FROM recsys.rating_event(30000000002, '7', '1', '5', '2015-02-25T06:51:30+01:00');
SELECT user_id, movie_id, rating, ts, (recsys.rating_event(1, user_id, movie_id, rating, ts)).reason
  FROM (VALUES ('1.5', '1', '4', '0'), ('1', '-2', '4', '0'), ('1', '1', '0', '0'),
               ('1', '1', '5.5', '0'), ('1', '1', 'four', '0'), ('1', '1', '4', '2019-13-01'),
               ('1', '1', '4', '2019-02-29 10:00:00'), ('1', '1', '4', '')) AS t(user_id, movie_id, rating, ts);
