/*
 * recsys install script, part 90: recsys.status, one view over every stage's state
 * (the archiver's shared memory, the manifest, the aggregate's runs and watermark, the
 * recommendation cache's shared memory).
 */
CREATE VIEW recsys.status AS
	SELECT s.component, s.metric, s.value FROM recsys.archive_status() s
	UNION ALL
	SELECT 'archive', 'objects', count(*)::text FROM recsys.archive_manifest
	UNION ALL
	SELECT 'archive', 'events', coalesce(sum(events), 0)::text FROM recsys.archive_manifest
	UNION ALL
	SELECT 'archive', 'dead_letters', count(*)::text FROM recsys.archive_dead_letters
	UNION ALL
	SELECT 'archive', 'retention_gap_offsets', coalesce(sum(to_offset - from_offset), 0)::text
	  FROM recsys.archive_gaps
	UNION ALL
	SELECT 'aggregate', m.metric, m.value
	  FROM (SELECT * FROM recsys.aggregate_runs ORDER BY run_id DESC LIMIT 1) r,
		   LATERAL (VALUES
			('last_run', r.run_id::text || ' ' || r.status ||
				CASE WHEN r.rebuild THEN ' (rebuild)' ELSE '' END),
			('last_run_started', r.started_at::text),
			('last_run_finished', coalesce(r.finished_at::text, '')),
			('last_run_seconds', coalesce(round(r.seconds::numeric, 3)::text, '')),
			('last_run_events', coalesce(r.events::text, '')),
			('last_run_error', coalesce(r.error, ''))) m(metric, value)
	UNION ALL
	SELECT 'aggregate', 'last_success', coalesce(max(finished_at)::text, 'never')
	  FROM recsys.aggregate_runs WHERE status = 'succeeded'
	UNION ALL
	SELECT 'aggregate', 'objects_pending', count(*)::text
	  FROM recsys.archive_manifest m
	 WHERE NOT EXISTS (SELECT 1 FROM recsys.aggregate_objects a
						WHERE a.object_key = m.object_key AND a.bytes = m.bytes)
	UNION ALL
	SELECT 'aggregate', 'objects_quarantined', count(*)::text
	  FROM recsys.aggregate_objects WHERE status = 'quarantined'
	UNION ALL
	SELECT 'aggregate', 'last_quarantined', coalesce(
		(SELECT object_key || ': ' || error FROM recsys.aggregate_objects
		  WHERE status = 'quarantined' ORDER BY at DESC, object_key LIMIT 1), '')
	UNION ALL
	SELECT * FROM recsys.cache_status()
	UNION ALL
	SELECT * FROM recsys.llm_status();
COMMENT ON VIEW recsys.status IS
	'Pipeline state: event log lag per partition, archive objects and events, last flush and error, last aggregate, cache, ...';
