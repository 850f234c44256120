/*
 * schedule.c: recsys_schedule(cron) and recsys_unschedule(), the daily aggregate as
 * the pg_cron job "recsys-aggregate".
 *
 * pg_cron 1.4 names jobs per user and runs them in cron.database_name, at times in
 * GMT.  Both functions are SECURITY DEFINER (the extension's owner, a superuser):
 * the job belongs to that owner whoever schedules it, so scheduling again replaces it
 * (the job of that name, of any user, is removed first) and the job's privileges do
 * not depend on the role that called recsys_schedule.  The command names the
 * function with its schema, so the job does not depend on a search_path.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#define JOB_NAME	"recsys-aggregate"

PG_FUNCTION_INFO_V1(recsys_schedule);
PG_FUNCTION_INFO_V1(recsys_unschedule);

static void require_pg_cron(void);
static int64 remove_jobs(void);

/* Raise a clear error unless pg_cron runs its jobs in this database. */
static void
require_pg_cron(void)
{
	const char *dbname = GetConfigOption("cron.database_name", true, false);
	char	   *here = get_database_name(MyDatabaseId);

	if (!OidIsValid(get_extension_oid("pg_cron", true)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron is not installed in database \"%s\"", here),
				 errhint("Install postgresql-15-cron, add pg_cron to shared_preload_libraries, set cron.database_name = '%s', restart, then CREATE EXTENSION pg_cron.", here)));
	if (dbname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron is installed but not loaded"),
				 errhint("Add pg_cron to shared_preload_libraries and restart the server.")));
	if (strcmp(dbname, here) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron runs its jobs in database \"%s\", not in \"%s\" where recsys is",
						dbname, here),
				 errhint("Set cron.database_name = '%s' in postgresql.conf and restart the server.", here)));
}

/* Remove the job named recsys-aggregate, whoever owns it; return how many went. */
static int64
remove_jobs(void)
{
	int64		n;

	if (SPI_execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = '" JOB_NAME "'",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not remove the pg_cron job " JOB_NAME);
	n = (int64) SPI_processed;
	return n;
}

/* recsys_schedule(cron): (re)create the job; returns its pg_cron job id. */
Datum
recsys_schedule(PG_FUNCTION_ARGS)
{
	char	   *cron = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *command;
	char	   *schema;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	int64		jobid;

	require_pg_cron();
	SPI_connect();
	if (SPI_execute("SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e"
					" JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'recsys'",
					true, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not find the schema of extension recsys");
	schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	command = psprintf("SELECT * FROM %s.recsys_aggregate()", schema);
	remove_jobs();
	values[0] = CStringGetTextDatum(cron);
	values[1] = CStringGetTextDatum(command);
	if (SPI_execute_with_args("SELECT cron.schedule('" JOB_NAME "', $1, $2)",
							  2, types, values, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not schedule the pg_cron job " JOB_NAME);
	jobid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	ereport(NOTICE,
			(errmsg("recsys_aggregate() scheduled as pg_cron job %lld \"%s\" at \"%s\" (GMT)",
					(long long) jobid, JOB_NAME, cron)));
	PG_RETURN_INT64(jobid);
}

/* recsys_unschedule(): remove the job; false when there was none. */
Datum
recsys_unschedule(PG_FUNCTION_ARGS)
{
	int64		n;

	require_pg_cron();
	SPI_connect();
	n = remove_jobs();
	SPI_finish();
	PG_RETURN_BOOL(n > 0);
}
