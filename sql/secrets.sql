--
-- Secrets come from recsys.secrets_file (or the server's environment), never from SQL:
-- no setting, view or health detail shows them. The stack's secrets file holds the S3
-- keys; read it here, as a superuser, to know what must never be seen.
--
SELECT current_setting('recsys.secrets_file') <> '' AS has_secrets_file;
CREATE TEMP TABLE secret AS
SELECT (regexp_match(pg_read_file(current_setting('recsys.secrets_file')),
                     's3_secret_key\s*=\s*(\S+)'))[1] AS value;
SELECT length(value) >= 16 AS secret_is_set FROM secret;

-- not a setting, so SHOW and SET refuse it
SHOW recsys.s3_secret_key;
SET recsys.s3_secret_key = 'x';

-- never in pg_settings, in any column
SELECT count(*) AS settings_with_secret
FROM pg_settings, secret
WHERE strpos(coalesce(setting, '') || coalesce(reset_val, '') || coalesce(boot_val, ''), value) > 0;

-- never in recsys_health(), reachable or not
SELECT count(*) AS health_rows_with_secret
FROM recsys_health(), secret WHERE strpos(detail, value) > 0;
SET recsys.s3_endpoint = 'http://127.0.0.1:1';
SET recsys.s3_timeout = '1s';
SELECT count(*) AS failed_health_rows_with_secret
FROM recsys_health(), secret WHERE strpos(detail, value) > 0;
RESET ALL;

-- never in any view of the recsys schema
DO $$
DECLARE
    v record;
    n bigint;
    total bigint := 0;
BEGIN
    FOR v IN SELECT schemaname, viewname FROM pg_views WHERE schemaname = 'recsys' LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I t, secret WHERE strpos(t::text, secret.value) > 0',
                       v.schemaname, v.viewname) INTO n;
        total := total + n;
    END LOOP;
    RAISE NOTICE 'rows of recsys views showing the secret: %', total;
END $$;

-- never in pg_stat_activity
SELECT count(*) AS activity_with_secret
FROM pg_stat_activity, secret WHERE strpos(coalesce(query, ''), value) > 0
  AND pid <> pg_backend_pid();
