/*
 * s3_test.c: tests of the S3 client (src/s3.c) against a real MinIO, with TAP output.
 *
 * Environment: S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, and S3_BUCKET (created by the
 * test when missing).  A few cases also run a tiny fake HTTP server of their own on a
 * loopback port, to check the retry policy (5xx retried, 4xx not), timeouts and the
 * interrupt callback.  test/unit/run.sh starts a private MinIO and runs this.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "s3.h"

static int	ntests = 0;
static int	nfailed = 0;

static void
ok(int cond, const char *name, const char *diag)
{
	ntests++;
	if (!cond)
		nfailed++;
	printf("%sok %d - %s\n", cond ? "" : "not ", ntests, name);
	if (!cond && diag && diag[0])
		printf("# %s\n", diag);
	fflush(stdout);
}

static double
now_s(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6;
}

/* ---- a fake HTTP server: answers every request with one fixed response ---- */
typedef struct Fake
{
	int			fd;
	int			port;
	int			status;			/* 0: accept and never answer */
	const char *body;
	int			requests;
	int			stop;
} Fake;

static void *
fake_main(void *arg)
{
	Fake	   *f = arg;

	while (!f->stop)
	{
		int			c = accept(f->fd, NULL, NULL);
		char		buf[8192];
		size_t		got = 0;

		if (c < 0)
			continue;
		while (got < sizeof(buf) - 1)
		{
			ssize_t		n = recv(c, buf + got, sizeof(buf) - 1 - got, 0);

			if (n <= 0)
				break;
			got += n;
			buf[got] = 0;
			if (strstr(buf, "\r\n\r\n"))
				break;
		}
		f->requests++;
		if (f->status == 0)
		{
			sleep(3);
			close(c);
			continue;
		}
		snprintf(buf, sizeof(buf),
				 "HTTP/1.1 %d X\r\nContent-Type: application/xml\r\nContent-Length: %zu\r\n"
				 "Connection: close\r\n\r\n%s", f->status, strlen(f->body), f->body);
		if (send(c, buf, strlen(buf), 0) < 0)
			perror("send");
		close(c);
	}
	return NULL;
}

static void
fake_start(Fake *f, pthread_t *t)
{
	struct sockaddr_in a;
	socklen_t	al = sizeof(a);
	int			one = 1;

	f->fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(f->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = 0;
	if (bind(f->fd, (struct sockaddr *) &a, sizeof(a)) != 0 || listen(f->fd, 16) != 0)
	{
		perror("fake server");
		exit(2);
	}
	getsockname(f->fd, (struct sockaddr *) &a, &al);
	f->port = ntohs(a.sin_port);
	pthread_create(t, NULL, fake_main, f);
}

static void
fake_stop(Fake *f, pthread_t t)
{
	f->stop = 1;
	shutdown(f->fd, SHUT_RDWR);
	close(f->fd);
	pthread_cancel(t);
	pthread_join(t, NULL);
}

/* ---- listing helpers ---- */
typedef struct ListAcc
{
	int			n;
	int			sorted;
	char		last[1024];
	int			found_special;
	const char *special;
} ListAcc;

static int
list_cb(const char *key, int64_t size, void *arg)
{
	ListAcc    *a = arg;

	if (a->n > 0 && strcmp(a->last, key) >= 0)
		a->sorted = 0;
	snprintf(a->last, sizeof(a->last), "%s", key);
	if (a->special && strcmp(key, a->special) == 0)
		a->found_special = 1;
	a->n++;
	return 0;
}

/* Delete every key listed (used to start from an empty bucket). */
static int
delete_cb(const char *key, int64_t size, void *arg)
{
	char		err[512];

	return S3Delete((const S3Config *) arg, key, err, sizeof(err)) != S3_OK;
}

static int	interrupt_calls = 0;
static double interrupt_at = 0;

static int
interrupt_cb(void *arg)
{
	interrupt_calls++;
	return now_s() >= interrupt_at;
}

int
main(void)
{
	S3Config	cfg = {0};
	char		err[1024];
	S3Buffer	got = {0};
	int64_t		size = 0;
	int			rc;
	int			i;
	const char *keys[] = {
		"plain/a.txt",
		"events/topic=recsys-events/partition=0/recsys-events+0+00000000000000000042.ndjson.gz",
		"odd/k=v+x y/\xc3\xbc\xe5\x90\x8d\xe5\x89\x8d.txt",	/* ü名前 */
		"odd/a%b&c?d#e;f,g:h@i!j$k'l(m)n*o[p]{q}|r^s`t\"u<v>w\\x",
	};

	cfg.endpoint = getenv("S3_ENDPOINT");
	cfg.bucket = getenv("S3_BUCKET");
	cfg.access_key = getenv("S3_ACCESS_KEY");
	cfg.secret_key = getenv("S3_SECRET_KEY");
	cfg.region = "us-east-1";
	cfg.timeout_ms = 10000;
	if (!cfg.endpoint || !cfg.bucket || !cfg.access_key || !cfg.secret_key)
	{
		fprintf(stderr, "set S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY and S3_SECRET_KEY\n");
		return 2;
	}

	rc = S3CreateBucket(&cfg, err, sizeof(err));
	ok(rc == 0, "create bucket", err);
	rc = S3CreateBucket(&cfg, err, sizeof(err));
	ok(rc == 0, "create bucket again (already ours)", err);
	rc = S3CheckBucket(&cfg, err, sizeof(err));
	ok(rc == 0, "check bucket", err);
	rc = S3List(&cfg, "", NULL, delete_cb, &cfg, err, sizeof(err));
	ok(rc == 0, "empty the bucket", err);

	/* round trips with awkward keys */
	for (i = 0; i < (int) (sizeof(keys) / sizeof(keys[0])); i++)
	{
		char		body[256];
		char		name[256];

		snprintf(body, sizeof(body), "body of %s\n", keys[i]);
		rc = S3Put(&cfg, keys[i], body, strlen(body), "text/plain", err, sizeof(err));
		snprintf(name, sizeof(name), "put key %d", i);
		ok(rc == S3_OK, name, err);
		rc = S3Get(&cfg, keys[i], &got, err, sizeof(err));
		snprintf(name, sizeof(name), "get key %d returns the same bytes", i);
		ok(rc == S3_OK && got.len == strlen(body) && memcmp(got.data, body, got.len) == 0,
		   name, err);
		rc = S3Head(&cfg, keys[i], &size, err, sizeof(err));
		snprintf(name, sizeof(name), "head key %d gives its size", i);
		ok(rc == S3_OK && size == (int64_t) strlen(body), name, err);
	}
	{
		ListAcc		a = {0};

		a.sorted = 1;
		a.special = keys[2];
		rc = S3List(&cfg, "odd/", NULL, list_cb, &a, err, sizeof(err));
		ok(rc == S3_OK && a.n == 2 && a.found_special && a.sorted,
		   "listing returns awkward keys decoded", err);
	}
	rc = S3Delete(&cfg, keys[0], err, sizeof(err));
	ok(rc == S3_OK, "delete", err);
	rc = S3Head(&cfg, keys[0], &size, err, sizeof(err));
	ok(rc == S3_NOT_FOUND, "head after delete: not found", err);
	rc = S3Get(&cfg, "no/such/key", &got, err, sizeof(err));
	ok(rc == S3_NOT_FOUND && strstr(err, "NoSuchKey") != NULL, "get missing: NoSuchKey", err);
	rc = S3Delete(&cfg, "no/such/key", err, sizeof(err));
	ok(rc == S3_OK, "delete missing key succeeds", err);

	/* listing past one page */
	{
		ListAcc		a = {0};
		double		t0 = now_s();
		int			failed = 0;

		for (i = 0; i < 2500 && !failed; i++)
		{
			char		key[64];

			snprintf(key, sizeof(key), "many/k%05d", i);
			if (S3Put(&cfg, key, "x", 1, NULL, err, sizeof(err)) != S3_OK)
				failed = 1;
		}
		ok(!failed, "put 2500 small objects", err);
		printf("# 2500 PUTs in %.2f s\n", now_s() - t0);
		a.sorted = 1;
		rc = S3List(&cfg, "many/", NULL, list_cb, &a, err, sizeof(err));
		ok(rc == S3_OK && a.n == 2500 && a.sorted, "list 2500 keys over 3 pages, in order", err);
		memset(&a, 0, sizeof(a));
		a.sorted = 1;
		cfg.list_page_size = 333;
		rc = S3List(&cfg, "many/", "many/k01999", list_cb, &a, err, sizeof(err));
		ok(rc == S3_OK && a.n == 500 && a.sorted && strcmp(a.last, "many/k02499") == 0,
		   "list with start-after and small pages", err);
		cfg.list_page_size = 0;
	}

	/* multipart */
	{
		size_t		n = 12 * 1024 * 1024 + 12345;
		char	   *big = malloc(n);
		size_t		j;
		unsigned int x = 12345;

		for (j = 0; j < n; j++)
		{
			x = x * 1103515245 + 12345;
			big[j] = (char) (x >> 16);
		}
		cfg.multipart_threshold = 6 * 1024 * 1024;
		cfg.part_size = 5 * 1024 * 1024;
		rc = S3Put(&cfg, "big/object.bin", big, n, NULL, err, sizeof(err));
		ok(rc == S3_OK, "multipart put of 12 MiB in 3 parts", err);
		rc = S3Get(&cfg, "big/object.bin", &got, err, sizeof(err));
		ok(rc == S3_OK && got.len == n && memcmp(got.data, big, n) == 0,
		   "multipart object reads back identical", err);
		rc = S3Head(&cfg, "big/object.bin", &size, err, sizeof(err));
		ok(rc == S3_OK && size == (int64_t) n, "multipart object has the right size", err);
		cfg.multipart_threshold = 0;
		cfg.part_size = 0;
		free(big);
	}

	/* gzip */
	{
		S3GzipWriter *w = S3GzipBegin(1);
		S3GzipWriter *w2 = S3GzipBegin(6);
		S3Buffer	both = {0};
		S3Buffer	plain = {0};
		char		line[128];
		int			good = 1;

		for (i = 0; i < 100000; i++)
		{
			int			len = snprintf(line, sizeof(line),
									   "{\"event_id\":%d,\"user_id\":%d,\"movie_id\":%d,\"rating\":4.5,\"ts\":1700000000}\n",
									   i, i % 1000, i % 777);

			good &= S3GzipWrite(w, line, len) == 0;
			good &= S3BufferAppend(&plain, line, len) == 0;
		}
		good &= S3GzipWrite(w2, "tail\n", 5) == 0;
		good &= S3GzipFinish(w) == 0 && S3GzipFinish(w2) == 0;
		ok(good && S3GzipInputBytes(w) == plain.len, "gzip writer", "");
		rc = S3Gunzip(S3GzipOutput(w)->data, S3GzipOutput(w)->len, &got, err, sizeof(err));
		ok(rc == 0 && got.len == plain.len && memcmp(got.data, plain.data, plain.len) == 0,
		   "gunzip round trip", err);
		S3BufferAppend(&both, S3GzipOutput(w)->data, S3GzipOutput(w)->len);
		S3BufferAppend(&both, S3GzipOutput(w2)->data, S3GzipOutput(w2)->len);
		rc = S3Gunzip(both.data, both.len, &got, err, sizeof(err));
		ok(rc == 0 && got.len == plain.len + 5 && memcmp(got.data + plain.len, "tail\n", 5) == 0,
		   "gunzip of two concatenated members", err);
		rc = S3Gunzip(both.data, both.len / 2, &got, err, sizeof(err));
		ok(rc != 0, "gunzip of truncated data fails", err);
		rc = S3Gunzip("not gzip at all", 15, &got, err, sizeof(err));
		ok(rc != 0 && strstr(err, "gunzip") != NULL, "gunzip of garbage fails", err);
		S3GzipFree(w);
		S3GzipFree(w2);
		S3BufferFree(&both);
		S3BufferFree(&plain);
	}

	/* wrong secret: SignatureDoesNotMatch, and the secret never in the message */
	{
		S3Config	bad = cfg;

		bad.secret_key = "WRONG-SECRET-value-1234";
		rc = S3CheckBucket(&bad, err, sizeof(err));
		ok(rc == -1 && strstr(err, "SignatureDoesNotMatch") != NULL &&
		   strstr(err, bad.secret_key) == NULL && strstr(err, cfg.secret_key) == NULL,
		   "check bucket with a wrong secret: SignatureDoesNotMatch", err);
		printf("# %s\n", err);
		rc = S3Put(&bad, "plain/b.txt", "x", 1, NULL, err, sizeof(err));
		ok(rc == S3_ERROR && strstr(err, "SignatureDoesNotMatch") != NULL &&
		   strstr(err, bad.secret_key) == NULL, "put with a wrong secret", err);
		printf("# %s\n", err);
		bad = cfg;
		bad.access_key = "nosuchuser";
		rc = S3CheckBucket(&bad, err, sizeof(err));
		ok(rc == -1 && strstr(err, "InvalidAccessKeyId") != NULL,
		   "check bucket with an unknown access key", err);
		bad = cfg;
		bad.bucket = "no-such-bucket-here";
		rc = S3CheckBucket(&bad, err, sizeof(err));
		ok(rc == -1 && strstr(err, "NoSuchBucket") != NULL, "check a missing bucket", err);
		printf("# %s\n", err);
	}

	/* server down: bounded, with retries */
	{
		S3Config	down = cfg;
		double		t0 = now_s();

		down.endpoint = "http://127.0.0.1:1";
		rc = S3CheckBucket(&down, err, sizeof(err));
		ok(rc == -1 && now_s() - t0 < 5 && strstr(err, "after 4 attempts") != NULL,
		   "server down: bounded error after 4 attempts", err);
		printf("# %.2f s: %s\n", now_s() - t0, err);
	}

	/* retry policy with a fake server: 5xx retried, 4xx final */
	{
		Fake		f = {0};
		pthread_t	t;
		S3Config	fc = cfg;
		char		ep[64];

		f.status = 503;
		f.body = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
		fake_start(&f, &t);
		snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", f.port);
		fc.endpoint = ep;
		fc.max_retries = 2;
		fc.retry_base_ms = 20;
		rc = S3Put(&fc, "x", "x", 1, NULL, err, sizeof(err));
		ok(rc == S3_ERROR && f.requests == 3 && strstr(err, "SlowDown") != NULL,
		   "503 is retried (3 requests) and reported with its S3 code", err);
		f.requests = 0;
		f.status = 400;
		f.body = "<Error><Code>InvalidArgument</Code><Message>bad &amp; wrong</Message></Error>";
		rc = S3Put(&fc, "x", "x", 1, NULL, err, sizeof(err));
		ok(rc == S3_ERROR && f.requests == 1 && strstr(err, "InvalidArgument: bad & wrong") != NULL,
		   "400 is not retried; XML entities decoded", err);
		f.requests = 0;
		f.status = 500;
		f.body = "<html>not xml";
		rc = S3Put(&fc, "x", "x", 1, NULL, err, sizeof(err));
		ok(rc == S3_ERROR && f.requests == 3 && strstr(err, "HTTP 500") != NULL,
		   "500 with a non-XML body", err);

		/* a server that never answers: timeout, and the interrupt callback */
		f.status = 0;
		f.requests = 0;
		fc.max_retries = -1;
		fc.timeout_ms = 500;
		{
			double		t0 = now_s();

			rc = S3Put(&fc, "x", "x", 1, NULL, err, sizeof(err));
			ok(rc == S3_ERROR && now_s() - t0 < 2 && strstr(err, "imed out") != NULL,
			   "silent server: times out", err);
			printf("# %.2f s: %s\n", now_s() - t0, err);
		}
		fc.timeout_ms = 60000;
		fc.interrupt = interrupt_cb;
		interrupt_at = now_s() + 0.3;
		{
			double		t0 = now_s();

			rc = S3Put(&fc, "x", "x", 1, NULL, err, sizeof(err));
			ok(rc == S3_ERROR && now_s() - t0 < 1 && strstr(err, "interrupted") != NULL &&
			   interrupt_calls > 0, "interrupt callback aborts a wait", err);
			printf("# %.2f s: %s\n", now_s() - t0, err);
		}
		fake_stop(&f, t);
	}

	/* endpoint validation */
	{
		S3Config	bad = cfg;

		bad.endpoint = "ftp://127.0.0.1:1";
		rc = S3CheckBucket(&bad, err, sizeof(err));
		ok(rc == -1 && strstr(err, "http://") != NULL, "non-http endpoint refused", err);
	}

	S3BufferFree(&got);
	printf("1..%d\n", ntests);
	return nfailed ? 1 : 0;
}
