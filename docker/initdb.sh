#!/usr/bin/env bash
# Runs once, when the container's data directory is first created.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE EXTENSION IF NOT EXISTS recsys;
CREATE EXTENSION IF NOT EXISTS pg_cron;
SQL
