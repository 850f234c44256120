/*
 * archive_store.c: the archive's objects: keys, the two stores (S3 / MinIO through
 * s3.c, or a local directory), and the object format (gzip NDJSON, one event a line).
 * See archive_store.h for the layout.
 *
 * The archiver (archiver.c) writes objects with ArchiveStorePut; the aggregate
 * (aggregate_read.c) lists, fetches and parses them.  Errors are returned as a code
 * and a plain message, never raised, so that callers decide what a failure means (the
 * archiver backs off, the aggregate quarantines a corrupt object or fails the run).
 * No message carries a credential.
 */
#include "postgres.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "nodes/pg_list.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "archive_store.h"
#include "guc.h"

typedef struct LocalEntry
{
	char	   *key;
	int64		size;
} LocalEntry;

static int	local_put(ArchiveStore *store, const char *key, const void *data, size_t len,
					  char *err, size_t errlen);
static int	local_get(ArchiveStore *store, const char *key, S3Buffer *out,
					  char *err, size_t errlen);
static int	local_list(ArchiveStore *store, ArchiveListFn fn, void *arg,
					   char *err, size_t errlen);
static bool local_walk(const char *root, const char *rel, List **out, char *err, size_t errlen);
static int	cmp_entry(const void *a, const void *b);
static bool key_is_safe(const char *key);
static bool have_credentials(const ArchiveStore *store, char *err, size_t errlen);

/* Open the configured store. */
ArchiveStore *
ArchiveStoreOpen(S3InterruptFn interrupt, void *interrupt_arg, int max_retries)
{
	ArchiveStore *store = palloc0(sizeof(ArchiveStore));

	store->use_s3 = RecsysS3Configured();
	if (store->use_s3)
	{
		const char *s;

		s = SecretGet("s3_access_key");
		store->access_key = pstrdup(s ? s : "");
		s = SecretGet("s3_secret_key");
		store->secret_key = pstrdup(s ? s : "");
		store->s3.endpoint = pstrdup(recsys_s3_endpoint);
		store->s3.bucket = pstrdup(recsys_s3_bucket);
		store->s3.region = pstrdup(recsys_s3_region ? recsys_s3_region : "");
		store->s3.access_key = store->access_key;
		store->s3.secret_key = store->secret_key;
		store->s3.timeout_ms = recsys_s3_timeout_ms;
		store->s3.max_retries = max_retries;
		store->s3.interrupt = interrupt;
		store->s3.interrupt_arg = interrupt_arg;
		snprintf(store->description, sizeof(store->description), "s3://%s (%s)",
				 recsys_s3_bucket, recsys_s3_endpoint);
	}
	else
	{
		store->dir = GucArchiveDir();
		snprintf(store->description, sizeof(store->description), "local:%s", store->dir);
	}
	return store;
}

/* Open the local-directory store (recsys.archive_dir), whatever is configured. */
ArchiveStore *
ArchiveStoreOpenLocal(void)
{
	ArchiveStore *store = palloc0(sizeof(ArchiveStore));

	store->dir = GucArchiveDir();
	snprintf(store->description, sizeof(store->description), "local:%s", store->dir);
	return store;
}

/* Free the store, wiping its credentials. */
void
ArchiveStoreClose(ArchiveStore *store)
{
	if (store == NULL)
		return;
	if (store->secret_key)
	{
		explicit_bzero(store->secret_key, strlen(store->secret_key));
		pfree(store->secret_key);
	}
	if (store->access_key)
		pfree(store->access_key);
	if (store->dir)
		pfree(store->dir);
	pfree(store);
}

const char *
ArchiveStoreKind(const ArchiveStore *store)
{
	return store->use_s3 ? "s3" : "local";
}

/* The object key of a range: deterministic, so a replay overwrites. */
char *
ArchiveObjectKey(const char *topic, int32 partition, int64 first)
{
	return psprintf(ARCHIVE_PREFIX "topic=%s/partition=%d/%s+%d+%020lld" ARCHIVE_SUFFIX,
					topic, partition, topic, partition, (long long) first);
}

/* Parse a key made by ArchiveObjectKey (and nothing else). */
bool
ArchiveObjectKeyParse(const char *key, char *topic, size_t topiclen,
					  int32 *partition, int64 *first)
{
	const char *base = strrchr(key, '/');
	const char *p;
	const char *plus1;
	const char *plus2;
	size_t		tlen;
	char	   *end;
	long		part;
	long long	off;
	char	   *expect;
	bool		same;

	if (base == NULL || strncmp(key, ARCHIVE_PREFIX "topic=", strlen(ARCHIVE_PREFIX "topic=")) != 0)
		return false;
	base++;
	/* <topic>+<p>+<20 digits>.ndjson.gz; the topic itself may not hold '+' */
	plus2 = strrchr(base, '+');
	if (plus2 == NULL || plus2 == base)
		return false;
	for (p = plus2 - 1; p > base && *p != '+'; p--)
		;
	if (*p != '+')
		return false;
	plus1 = p;
	tlen = plus1 - base;
	if (tlen == 0 || tlen >= topiclen)
		return false;
	errno = 0;
	part = strtol(plus1 + 1, &end, 10);
	if (errno != 0 || end != plus2 || part < 0 || part > PG_INT32_MAX)
		return false;
	off = strtoll(plus2 + 1, &end, 10);
	if (errno != 0 || end != plus2 + 21 || off < 0 || strcmp(end, ARCHIVE_SUFFIX) != 0)
		return false;
	memcpy(topic, base, tlen);
	topic[tlen] = '\0';
	*partition = (int32) part;
	*first = (int64) off;
	/* the whole key must be the canonical one */
	expect = ArchiveObjectKey(topic, *partition, *first);
	same = strcmp(expect, key) == 0;
	pfree(expect);
	return same;
}

/* Store an object in S3 or the local directory. */
int
ArchiveStorePut(ArchiveStore *store, const char *key, const void *data, size_t len,
				char *err, size_t errlen)
{
	if (!key_is_safe(key))
	{
		snprintf(err, errlen, "invalid object key \"%s\"", key);
		return ARCHIVE_ERROR;
	}
	if (store->use_s3)
	{
		if (!have_credentials(store, err, errlen))
			return ARCHIVE_ERROR;
		return S3Put(&store->s3, key, data, len, ARCHIVE_CONTENT_TYPE, err, errlen) == S3_OK
			? ARCHIVE_OK : ARCHIVE_ERROR;
	}
	return local_put(store, key, data, len, err, errlen);
}

/* Fetch an object from S3 or the local directory. */
int
ArchiveStoreGet(ArchiveStore *store, const char *key, S3Buffer *out, char *err, size_t errlen)
{
	if (!key_is_safe(key))
	{
		snprintf(err, errlen, "invalid object key \"%s\"", key);
		return ARCHIVE_ERROR;
	}
	if (store->use_s3)
	{
		if (!have_credentials(store, err, errlen))
			return ARCHIVE_ERROR;
		return S3Get(&store->s3, key, out, err, errlen);
	}
	return local_get(store, key, out, err, errlen);
}

/* Shared by the two listings: forward one key to the caller's function. */
typedef struct ListState
{
	ArchiveListFn fn;
	void	   *arg;
} ListState;

static int
s3_list_cb(const char *key, int64_t size, void *arg)
{
	ListState  *ls = arg;

	return ls->fn(key, (int64) size, ls->arg);
}

/* List every object under ARCHIVE_PREFIX, in key order. */
int
ArchiveStoreList(ArchiveStore *store, ArchiveListFn fn, void *arg, char *err, size_t errlen)
{
	if (store->use_s3)
	{
		ListState	ls = {fn, arg};

		if (!have_credentials(store, err, errlen))
			return ARCHIVE_ERROR;
		return S3List(&store->s3, ARCHIVE_PREFIX, NULL, s3_list_cb, &ls, err, errlen) == S3_OK
			? ARCHIVE_OK : ARCHIVE_ERROR;
	}
	return local_list(store, fn, arg, err, errlen);
}

/* Decompress an object and hand each line, parsed as an event, to fn. */
int
ArchiveObjectParse(const void *gz, size_t len, S3Buffer *plain,
				   ArchiveEventFn fn, void *arg, char *err, size_t errlen)
{
	const char *p;
	const char *end;
	int64		line = 0;
	char		reason[256];

	if (S3Gunzip(gz, len, plain, err, errlen) != 0)
		return ARCHIVE_ERROR;
	p = plain->data;
	end = plain->data + plain->len;
	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);
		const char *eol = nl ? nl : end;
		EventRecord ev;
		int			rc;

		if (eol > p)
		{
			if (EventParseValue(p, eol - p, &ev, reason, sizeof(reason)) != 0)
			{
				snprintf(err, errlen, "line %lld is not an event: %s", (long long) line + 1, reason);
				return ARCHIVE_ERROR;
			}
			if ((rc = fn(&ev, line, arg)) != 0)
				return rc;
			line++;
		}
		p = nl ? nl + 1 : end;
	}
	return ARCHIVE_OK;
}

/* S3 needs both keys of the secrets file; false with a message when one is missing. */
static bool
have_credentials(const ArchiveStore *store, char *err, size_t errlen)
{
	if (store->access_key[0] != '\0' && store->secret_key[0] != '\0')
		return true;
	snprintf(err, errlen, "no S3 credentials: set s3_access_key and s3_secret_key in recsys.secrets_file");
	return false;
}

/* A key that cannot leave the archive directory. */
static bool
key_is_safe(const char *key)
{
	return strncmp(key, ARCHIVE_PREFIX, strlen(ARCHIVE_PREFIX)) == 0 &&
		strstr(key, "..") == NULL && strstr(key, "//") == NULL;
}

/* Write dir/key atomically: a temporary file, fsync, rename, fsync of the directory. */
static int
local_put(ArchiveStore *store, const char *key, const void *data, size_t len,
		  char *err, size_t errlen)
{
	char	   *path = psprintf("%s/%s", store->dir, key);
	char	   *tmp = psprintf("%s.tmp%d", path, MyProcPid);
	char	   *slash;
	int			fd;
	size_t		done = 0;
	int			rc = ARCHIVE_ERROR;

	/* make the object's directory and every missing parent (archive_dir too) */
	slash = strrchr(path, '/');
	*slash = '\0';
	if (pg_mkdir_p(path, pg_dir_create_mode) != 0)
	{
		snprintf(err, errlen, "could not create directory \"%s\": %m", path);
		goto out;
	}
	*slash = '/';
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, S_IRUSR | S_IWUSR);
	if (fd < 0)
	{
		snprintf(err, errlen, "could not create file \"%s\": %m", tmp);
		goto out;
	}
	while (done < len)
	{
		ssize_t		n = write(fd, (const char *) data + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			snprintf(err, errlen, "could not write file \"%s\": %m", tmp);
			close(fd);
			unlink(tmp);
			goto out;
		}
		done += n;
	}
	if (fsync(fd) != 0 || close(fd) != 0)
	{
		snprintf(err, errlen, "could not fsync file \"%s\": %m", tmp);
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, path) != 0)
	{
		snprintf(err, errlen, "could not rename \"%s\": %m", tmp);
		unlink(tmp);
		goto out;
	}
	*slash = '\0';
	fd = open(path, O_RDONLY);
	if (fd < 0 || fsync(fd) != 0)
	{
		snprintf(err, errlen, "could not fsync directory \"%s\": %m", path);
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	rc = ARCHIVE_OK;

out:
	pfree(path);
	pfree(tmp);
	return rc;
}

/* Read dir/key into out. */
static int
local_get(ArchiveStore *store, const char *key, S3Buffer *out, char *err, size_t errlen)
{
	char	   *path = psprintf("%s/%s", store->dir, key);
	int			fd;
	int			rc = ARCHIVE_ERROR;
	char		buf[65536];

	S3BufferReset(out);
	fd = open(path, O_RDONLY);
	if (fd < 0)
	{
		rc = errno == ENOENT ? ARCHIVE_NOT_FOUND : ARCHIVE_ERROR;
		snprintf(err, errlen, "could not open file \"%s\": %m", path);
		pfree(path);
		return rc;
	}
	for (;;)
	{
		ssize_t		n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			snprintf(err, errlen, "could not read file \"%s\": %m", path);
			goto out;
		}
		if (n == 0)
			break;
		if (S3BufferAppend(out, buf, n) != 0)
		{
			snprintf(err, errlen, "out of memory reading \"%s\"", path);
			goto out;
		}
	}
	rc = ARCHIVE_OK;
out:
	close(fd);
	pfree(path);
	return rc;
}

/* Collect the object files under root/rel (recursively) into *out. */
static bool
local_walk(const char *root, const char *rel, List **out, char *err, size_t errlen)
{
	char	   *path = psprintf("%s/%s", root, rel);
	DIR		   *d = opendir(path);
	struct dirent *de;

	if (d == NULL)
	{
		if (errno == ENOENT)
		{
			pfree(path);
			return true;		/* nothing archived yet */
		}
		snprintf(err, errlen, "could not open directory \"%s\": %m", path);
		pfree(path);
		return false;
	}
	while ((de = readdir(d)) != NULL)
	{
		char	   *child;
		char	   *full;
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		child = psprintf("%s/%s", rel, de->d_name);
		full = psprintf("%s/%s", root, child);
		if (lstat(full, &st) != 0)
		{
			pfree(full);
			pfree(child);
			continue;			/* gone meanwhile (a temporary file renamed) */
		}
		if (S_ISDIR(st.st_mode))
		{
			if (!local_walk(root, child, out, err, errlen))
			{
				closedir(d);
				pfree(path);
				return false;
			}
			pfree(child);
		}
		else if (S_ISREG(st.st_mode) &&
				 strlen(child) > strlen(ARCHIVE_SUFFIX) &&
				 strcmp(child + strlen(child) - strlen(ARCHIVE_SUFFIX), ARCHIVE_SUFFIX) == 0)
		{
			LocalEntry *e = palloc(sizeof(LocalEntry));

			e->key = child;
			e->size = (int64) st.st_size;
			*out = lappend(*out, e);
		}
		else
			pfree(child);
		pfree(full);
	}
	closedir(d);
	pfree(path);
	return true;
}

static int
cmp_entry(const void *a, const void *b)
{
	const LocalEntry *x = *(LocalEntry *const *) a;
	const LocalEntry *y = *(LocalEntry *const *) b;

	return strcmp(x->key, y->key);
}

/* List the local archive's objects in key order. */
static int
local_list(ArchiveStore *store, ArchiveListFn fn, void *arg, char *err, size_t errlen)
{
	List	   *entries = NIL;
	LocalEntry **arr;
	int			n,
				i,
				rc = ARCHIVE_OK;
	char		rel[] = "events";

	if (!local_walk(store->dir, rel, &entries, err, errlen))
		return ARCHIVE_ERROR;
	n = list_length(entries);
	if (n == 0)
		return ARCHIVE_OK;
	arr = palloc(sizeof(LocalEntry *) * n);
	for (i = 0; i < n; i++)
		arr[i] = list_nth(entries, i);
	qsort(arr, n, sizeof(LocalEntry *), cmp_entry);
	for (i = 0; i < n && rc == ARCHIVE_OK; i++)
	{
		int			r = fn(arr[i]->key, arr[i]->size, arg);

		if (r != 0)
			rc = r;
	}
	for (i = 0; i < n; i++)
	{
		pfree(arr[i]->key);
		pfree(arr[i]);
	}
	pfree(arr);
	list_free(entries);
	return rc;
}
