--
-- The extension installs, drops and installs again cleanly.
--
SELECT extversion FROM pg_extension WHERE extname = 'recsys';
SELECT count(*) > 0 AS has_tables FROM pg_tables WHERE schemaname = 'recsys';
SELECT proname FROM pg_proc WHERE proname = 'recsys_health';
DROP EXTENSION recsys;
SELECT count(*) AS schemas_left FROM pg_namespace WHERE nspname = 'recsys';
SELECT count(*) AS functions_left FROM pg_proc WHERE proname LIKE 'recsys\_%';
CREATE EXTENSION recsys;
SELECT count(*) AS schemas FROM pg_namespace WHERE nspname = 'recsys';
