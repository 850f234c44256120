/*
 * secrets.c: credentials from recsys.secrets_file or the server's environment.
 *
 * Secrets (S3 keys, the LLM API key, passwords) never pass through SQL: a setting can
 * be read back with SHOW, logged, or written to postgresql.auto.conf. They live in a
 * file of "name = value" lines ('#' starts a comment) that belongs to the server's OS
 * user and is readable by it alone, like ssl_key_file. A name missing from the file is
 * looked up in the environment as RECSYS_<NAME> (upper case, '.' as '_').
 *
 * Known names: s3_access_key, s3_secret_key, llm_api_key, redis_password, and
 * kafka.<librdkafka property> (for example kafka.sasl.password).
 *
 * The file is read lazily and read again when its path, inode, size, mode, or
 * modification or change time changes. A file that cannot be used is reported once per change as a WARNING (the
 * message names the file, never its content) and its secrets count as unset.
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "guc.h"

typedef struct SecretEntry
{
	char	   *name;
	char	   *value;
} SecretEntry;

static SecretEntry *entries = NULL;
static int	n_entries = 0;
static char *loaded_path = NULL;
static struct stat loaded_stat;
static char *reported_problem = NULL;

static void secrets_refresh(void);
static void secrets_clear(void);
static void secrets_problem(const char *fmt, const char *path);
static char *trim(char *s);

/* Return the secret NAME, or NULL when neither the file nor the environment has it. */
const char *
SecretGet(const char *name)
{
	char		envname[128];
	int			i;
	const char *env;

	secrets_refresh();
	for (i = 0; i < n_entries; i++)
		if (strcmp(entries[i].name, name) == 0)
			return entries[i].value;

	snprintf(envname, sizeof(envname), "RECSYS_%s", name);
	for (i = 7; envname[i]; i++)
		envname[i] = (envname[i] == '.') ? '_' : pg_toupper((unsigned char) envname[i]);
	env = getenv(envname);
	return (env && env[0]) ? env : NULL;
}

/*
 * Return the librdkafka properties named kafka.<property> in the secrets file, as
 * "property=value" lines (palloc'd, possibly empty).
 */
char *
SecretKafkaProperties(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	secrets_refresh();
	for (i = 0; i < n_entries; i++)
		if (strncmp(entries[i].name, "kafka.", 6) == 0)
			appendStringInfo(&buf, "%s=%s\n", entries[i].name + 6, entries[i].value);
	return buf.data;
}

/* Reload the secrets file if the setting or the file changed since the last read. */
static void
secrets_refresh(void)
{
	const char *path = recsys_secrets_file;
	struct stat st;
	FILE	   *f;
	char		line[4096];
	int			cap = 16;
	MemoryContext old;

	if (path == NULL || path[0] == '\0')
	{
		secrets_clear();
		return;
	}
	if (stat(path, &st) != 0)
	{
		secrets_clear();
		secrets_problem("could not stat recsys.secrets_file \"%s\": %m", path);
		return;
	}
	if (loaded_path && strcmp(loaded_path, path) == 0 &&
		st.st_mtime == loaded_stat.st_mtime && st.st_size == loaded_stat.st_size &&
		st.st_ino == loaded_stat.st_ino && st.st_mode == loaded_stat.st_mode &&
		st.st_ctime == loaded_stat.st_ctime)
		return;

	secrets_clear();
	if (!S_ISREG(st.st_mode))
	{
		secrets_problem("recsys.secrets_file \"%s\" is not a regular file", path);
		return;
	}
	if (st.st_uid != geteuid() || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		secrets_problem("recsys.secrets_file \"%s\" must belong to the server's OS user and have no group or other access (chmod 600)", path);
		return;
	}
	f = fopen(path, "r");
	if (f == NULL)
	{
		secrets_problem("could not open recsys.secrets_file \"%s\": %m", path);
		return;
	}

	old = MemoryContextSwitchTo(TopMemoryContext);
	entries = palloc(cap * sizeof(SecretEntry));
	while (fgets(line, sizeof(line), f))
	{
		char	   *eq;
		char	   *name;

		name = trim(line);
		if (name[0] == '\0' || name[0] == '#')
			continue;
		eq = strchr(name, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		if (n_entries == cap)
		{
			cap *= 2;
			entries = repalloc(entries, cap * sizeof(SecretEntry));
		}
		entries[n_entries].name = pstrdup(trim(name));
		entries[n_entries].value = pstrdup(trim(eq + 1));
		n_entries++;
	}
	fclose(f);
	explicit_bzero(line, sizeof(line));
	loaded_path = pstrdup(path);
	loaded_stat = st;
	MemoryContextSwitchTo(old);
	if (reported_problem)
	{
		pfree(reported_problem);
		reported_problem = NULL;
	}
}

/* Forget every loaded secret, wiping the values. */
static void
secrets_clear(void)
{
	int			i;

	for (i = 0; i < n_entries; i++)
	{
		explicit_bzero(entries[i].value, strlen(entries[i].value));
		pfree(entries[i].name);
		pfree(entries[i].value);
	}
	if (entries)
		pfree(entries);
	entries = NULL;
	n_entries = 0;
	if (loaded_path)
		pfree(loaded_path);
	loaded_path = NULL;
}

/* Warn about an unusable secrets file, once per distinct problem. */
static void
secrets_problem(const char *fmt, const char *path)
{
	char		msg[1024];
	int			save_errno = errno;

	errno = save_errno;
	snprintf(msg, sizeof(msg), fmt, path);
	if (reported_problem && strcmp(reported_problem, msg) == 0)
		return;
	if (reported_problem)
		pfree(reported_problem);
	reported_problem = MemoryContextStrdup(TopMemoryContext, msg);
	ereport(WARNING,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg_internal("%s", msg),
			 errhint("Secrets in that file count as unset until it is fixed.")));
}

/* Strip leading and trailing white space in place. */
static char *
trim(char *s)
{
	char	   *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}
