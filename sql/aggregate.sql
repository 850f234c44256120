--
-- The aggregation stage's SQL surface, in the scratch database (which holds no
-- archive): an empty run, its history and status rows, the progress view, pg_cron
-- errors, argument and permission errors. Fixture-based checks of the ratings,
-- profiles, statistics and neighbours are in test/t/300-aggregate.t.
--
SELECT objects, events, users, movies, seconds >= 0 AS timed FROM recsys_aggregate();
SELECT run_id > 0 AS has_id, rebuild, status, objects, events, duplicates, users, movies,
       finished_at >= started_at AS finished, peak_memory_bytes > 0 AS measured, error
  FROM recsys.aggregate_runs ORDER BY run_id DESC LIMIT 1;
SELECT objects, events FROM recsys_aggregate(rebuild => false);
SELECT count(*) AS running FROM recsys.aggregate_progress;
SELECT metric, value FROM recsys.status
 WHERE component = 'aggregate' AND metric IN ('objects_pending', 'objects_quarantined', 'last_quarantined')
 ORDER BY metric;
SELECT value LIKE '% succeeded' AS last_run_succeeded FROM recsys.status WHERE metric = 'last_run';
SELECT count(*) AS ratings FROM recsys.ratings;
SELECT count(*) AS neighbors FROM recsys.item_neighbors;
-- NULL is no choice
SELECT * FROM recsys_aggregate(NULL);
-- pg_cron is not in this database
SELECT recsys_schedule();
SELECT recsys_unschedule();
-- an ordinary role runs none of it
CREATE ROLE recsys_regress_nobody;
SET ROLE recsys_regress_nobody;
SELECT * FROM recsys_aggregate();
SELECT recsys_schedule('0 3 * * *');
SELECT recsys_unschedule();
RESET ROLE;
DROP ROLE recsys_regress_nobody;
-- the settings the stage adds, with their bounds
SET recsys.neighbors_k = 0;
SET recsys.neighbors_refresh = -1;
SET recsys.neighbors_k = 50;
SHOW recsys.neighbors_k;
RESET recsys.neighbors_k;
