/*
 * s3_tool.c: a small S3 command-line tool on the project's S3 client, for the
 * integration tests (test/t/2*.t) and the benchmark.
 *
 *   s3_tool list PREFIX      keys under PREFIX, one a line
 *   s3_tool cat KEY          the object, gunzipped when it is gzip
 *   s3_tool catall PREFIX    every object under PREFIX, gunzipped, in key order
 *   s3_tool rmall PREFIX     delete every object under PREFIX
 *
 * Environment: S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

static S3Config cfg;
static char err[1024];

/* Print one object, gunzipped when it starts with the gzip magic. */
static int
cat_key(const char *key)
{
	S3Buffer	buf = {0};
	S3Buffer	plain = {0};

	if (S3Get(&cfg, key, &buf, err, sizeof(err)) != S3_OK)
	{
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (buf.len >= 2 && (unsigned char) buf.data[0] == 0x1f && (unsigned char) buf.data[1] == 0x8b)
	{
		if (S3Gunzip(buf.data, buf.len, &plain, err, sizeof(err)) != 0)
		{
			fprintf(stderr, "%s: %s\n", key, err);
			return 1;
		}
		fwrite(plain.data, 1, plain.len, stdout);
	}
	else
		fwrite(buf.data, 1, buf.len, stdout);
	S3BufferFree(&buf);
	S3BufferFree(&plain);
	return 0;
}

static int
print_cb(const char *key, int64_t size, void *arg)
{
	printf("%s\n", key);
	return 0;
}

static int
cat_cb(const char *key, int64_t size, void *arg)
{
	return cat_key(key);
}

static int
rm_cb(const char *key, int64_t size, void *arg)
{
	return S3Delete(&cfg, key, err, sizeof(err)) != S3_OK;
}

int
main(int argc, char **argv)
{
	int			rc = 2;

	cfg.endpoint = getenv("S3_ENDPOINT");
	cfg.bucket = getenv("S3_BUCKET");
	cfg.access_key = getenv("S3_ACCESS_KEY");
	cfg.secret_key = getenv("S3_SECRET_KEY");
	cfg.timeout_ms = 30000;
	if (argc != 3 || !cfg.endpoint || !cfg.bucket || !cfg.access_key || !cfg.secret_key)
	{
		fprintf(stderr, "usage: s3_tool list|cat|catall|rmall ARG (with S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY)\n");
		return 2;
	}
	if (strcmp(argv[1], "list") == 0)
		rc = S3List(&cfg, argv[2], NULL, print_cb, NULL, err, sizeof(err)) != S3_OK;
	else if (strcmp(argv[1], "cat") == 0)
		return cat_key(argv[2]);
	else if (strcmp(argv[1], "catall") == 0)
		rc = S3List(&cfg, argv[2], NULL, cat_cb, NULL, err, sizeof(err)) != S3_OK;
	else if (strcmp(argv[1], "rmall") == 0)
		rc = S3List(&cfg, argv[2], NULL, rm_cb, NULL, err, sizeof(err)) != S3_OK;
	if (rc == 1)
		fprintf(stderr, "%s\n", err);
	return rc;
}
