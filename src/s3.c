/*
 * s3.c: the S3 client (see s3.h).
 *
 * Design
 * - One request = one easy handle driven by a private multi handle.  libcurl may start
 *   threads (the threaded resolver) inside curl_multi_perform, so every call into
 *   libcurl that can create one runs with all signals blocked (pthread_sigmask); the
 *   waits between them (curl_multi_poll, at most 100 ms each) run with the caller's
 *   mask, so a PostgreSQL backend still receives its signals and the interrupt
 *   callback can abort the request within 100 ms.
 * - Signing: CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3" plus an x-amz-content-sha256
 *   header holding the SHA-256 of the body (OpenSSL).  libcurl 7.88 signs the path and
 *   the query exactly as sent, so keys are percent-encoded here (everything but
 *   A-Za-z0-9-._~ and '/') and query parameters are built already sorted and encoded.
 * - Retries: connection-level failures and HTTP 5xx only, with exponential backoff
 *   (base, doubled, capped, with jitter); 4xx answers are final.
 * - Errors: "<op> <bucket>/<key>: <S3 Code>: <Message> (HTTP n)" from the XML error
 *   body, parsed with libxml2.  Credentials are only ever handed to libcurl, never
 *   copied into a message.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "s3.h"
#include "libutil.h"

#define S3_DEFAULT_TIMEOUT_MS		30000
#define S3_DEFAULT_CONNECT_MS		5000
#define S3_DEFAULT_RETRIES			3
#define S3_DEFAULT_RETRY_BASE_MS	100
#define S3_DEFAULT_RETRY_MAX_MS		2000
#define S3_DEFAULT_MP_THRESHOLD		((size_t) 64 * 1024 * 1024)
#define S3_DEFAULT_PART_SIZE		((size_t) 16 * 1024 * 1024)
#define S3_MIN_PART_SIZE			((size_t) 5 * 1024 * 1024)
#define S3_POLL_MS					100

/* One HTTP request and what came back. */
typedef struct S3Request
{
	const char *op;				/* for messages: "PUT", "GET", ... */
	const char *method;			/* HTTP method */
	const char *key;			/* object key, or NULL for the bucket */
	const char *query;			/* canonical query (sorted, encoded) or NULL */
	const char *content_type;
	const char *body;
	size_t		body_len;
	size_t		body_pos;		/* read position of the upload */
	S3Buffer	resp;			/* response body */
	long		status;
	char		etag[256];
	int64_t		content_length;
	char		code[64];		/* S3 error code of the last answer, if any */
} S3Request;

typedef struct S3ListState
{
	S3ListFn	fn;
	void	   *arg;
	int			stopped;
	int			truncated;
	char	   *next_token;
	int			nkeys;
} S3ListState;

struct S3GzipWriter
{
	z_stream	zs;
	S3Buffer	out;
	size_t		in_bytes;
	int			finished;
};

static CURLM *s3_multi = NULL;
static CURL *s3_easy = NULL;
static int	s3_initialised = 0;

static int	s3_init(char *err, size_t errlen);
static int	s3_request(const S3Config *cfg, S3Request *req, char *err, size_t errlen);
static CURLcode s3_perform_once(const S3Config *cfg, S3Request *req, int *aborted,
								char *curlerr);
static int	s3_transient_curl(CURLcode rc);
static void s3_backoff(const S3Config *cfg, int attempt);
static void s3_format_error(const S3Config *cfg, S3Request *req, char *err, size_t errlen);
static void s3_sha256_hex(const void *data, size_t len, char *hex);
static char *s3_encode(const char *s, int keep_slash);
static char *s3_url(const S3Config *cfg, const char *key, const char *query);
static size_t s3_write_cb(char *ptr, size_t size, size_t nmemb, void *arg);
static size_t s3_read_cb(char *ptr, size_t size, size_t nmemb, void *arg);
static size_t s3_header_cb(char *ptr, size_t size, size_t nmemb, void *arg);
static xmlDocPtr s3_parse_xml(const S3Buffer *buf);
static xmlNodePtr s3_child(xmlNodePtr node, const char *name);
static char *s3_child_text(xmlNodePtr node, const char *name);
static int	s3_parse_list(const S3Buffer *buf, S3ListState *st, char *err, size_t errlen);
static char *s3_url_decode(const char *s);
static void s3_printable(const char *in, char *out, size_t outlen);

/* Initialise libcurl and libxml2 once per process, with signals blocked. */
static int
s3_init(char *err, size_t errlen)
{
	sigset_t	old;
	int			ok = 1;

	if (s3_initialised)
		return 0;
	LibBlockSignals(&old);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ok = 0;
	else
	{
		xmlInitParser();
		s3_multi = curl_multi_init();
		s3_easy = curl_easy_init();
		if (s3_multi == NULL || s3_easy == NULL)
			ok = 0;
	}
	LibRestoreSignals(&old);
	if (!ok)
	{
		LibSetError(err, errlen, "S3: could not initialise libcurl");
		return -1;
	}
	s3_initialised = 1;
	return 0;
}

/* Buffers. */
int
S3BufferAppend(S3Buffer *buf, const void *data, size_t len)
{
	if (buf->len + len + 1 > buf->cap)
	{
		size_t		ncap = buf->cap ? buf->cap : 4096;
		char	   *n;

		while (ncap < buf->len + len + 1)
			ncap *= 2;
		n = realloc(buf->data, ncap);
		if (n == NULL)
			return -1;
		buf->data = n;
		buf->cap = ncap;
	}
	if (len > 0)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
	return 0;
}

void
S3BufferReset(S3Buffer *buf)
{
	buf->len = 0;
	if (buf->data)
		buf->data[0] = '\0';
}

void
S3BufferFree(S3Buffer *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

/* Hex SHA-256 of data (65 bytes with the terminator). */
static void
s3_sha256_hex(const void *data, size_t len, char *hex)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	static const char digits[] = "0123456789abcdef";
	int			i;

	SHA256((const unsigned char *) (data ? data : ""), len, md);
	for (i = 0; i < SHA256_DIGEST_LENGTH; i++)
	{
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 0xf];
	}
	hex[2 * SHA256_DIGEST_LENGTH] = '\0';
}

/* Percent-encode all but the unreserved bytes (and '/' when keep_slash). */
static char *
s3_encode(const char *s, int keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t		n = strlen(s);
	char	   *out = malloc(3 * n + 1);
	char	   *p = out;

	if (out == NULL)
		return NULL;
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
			c == '~' || (keep_slash && c == '/'))
			*p++ = (char) c;
		else
		{
			*p++ = '%';
			*p++ = digits[c >> 4];
			*p++ = digits[c & 0xf];
		}
	}
	*p = '\0';
	return out;
}

char *
S3EncodeKey(const char *key)
{
	return s3_encode(key, 1);
}

/* Decode a key of a listing sent with encoding-type=url ('+' is a space). */
static char *
s3_url_decode(const char *s)
{
	char	   *out = malloc(strlen(s) + 1);
	char	   *p = out;

	if (out == NULL)
		return NULL;
	while (*s)
	{
		if (*s == '%' && isxdigit((unsigned char) s[1]) && isxdigit((unsigned char) s[2]))
		{
			char		hx[3] = {s[1], s[2], 0};

			*p++ = (char) strtol(hx, NULL, 16);
			s += 3;
		}
		else if (*s == '+')
		{
			*p++ = ' ';
			s++;
		}
		else
			*p++ = *s++;
	}
	*p = '\0';
	return out;
}

/* Build <endpoint>/<bucket>[/<encoded key>][?query]; malloc'd. */
static char *
s3_url(const S3Config *cfg, const char *key, const char *query)
{
	size_t		elen = strlen(cfg->endpoint);
	char	   *bucket = s3_encode(cfg->bucket, 0);
	char	   *ekey = key ? s3_encode(key, 1) : NULL;
	char	   *url;
	size_t		n;

	while (elen > 0 && cfg->endpoint[elen - 1] == '/')
		elen--;
	if (bucket == NULL || (key && ekey == NULL))
	{
		free(bucket);
		free(ekey);
		return NULL;
	}
	n = elen + strlen(bucket) + (ekey ? strlen(ekey) : 0) + (query ? strlen(query) : 0) + 8;
	url = malloc(n);
	if (url)
		snprintf(url, n, "%.*s/%s%s%s%s%s", (int) elen, cfg->endpoint, bucket,
				 ekey ? "/" : "", ekey ? ekey : "",
				 query ? "?" : "", query ? query : "");
	free(bucket);
	free(ekey);
	return url;
}

static size_t
s3_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	S3Request  *req = arg;

	if (S3BufferAppend(&req->resp, ptr, size * nmemb) != 0)
		return 0;				/* aborts the transfer */
	return size * nmemb;
}

static size_t
s3_read_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	S3Request  *req = arg;
	size_t		n = size * nmemb;

	if (n > req->body_len - req->body_pos)
		n = req->body_len - req->body_pos;
	if (n > 0)
		memcpy(ptr, req->body + req->body_pos, n);
	req->body_pos += n;
	return n;
}

/* Keep the ETag response header (multipart parts need it). */
static size_t
s3_header_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	S3Request  *req = arg;
	size_t		n = size * nmemb;

	if (n > 5 && strncasecmp(ptr, "ETag:", 5) == 0)
	{
		size_t		i = 5,
					j;

		while (i < n && (ptr[i] == ' ' || ptr[i] == '\t'))
			i++;
		j = n;
		while (j > i && (ptr[j - 1] == '\r' || ptr[j - 1] == '\n' || ptr[j - 1] == ' '))
			j--;
		if (j - i < sizeof(req->etag))
		{
			memcpy(req->etag, ptr + i, j - i);
			req->etag[j - i] = '\0';
		}
	}
	return n;
}

/* Whether a libcurl failure is worth a retry (the connection, not the request). */
static int
s3_transient_curl(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_COULDNT_CONNECT:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_PARTIAL_FILE:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
		case CURLE_SSL_CONNECT_ERROR:
			return 1;
		default:
			return 0;
	}
}

/* Sleep before retry number attempt (1-based), waking early on an interrupt. */
static void
s3_backoff(const S3Config *cfg, int attempt)
{
	long		base = cfg->retry_base_ms > 0 ? cfg->retry_base_ms : S3_DEFAULT_RETRY_BASE_MS;
	long		cap = cfg->retry_max_ms > 0 ? cfg->retry_max_ms : S3_DEFAULT_RETRY_MAX_MS;
	long		ms = base;
	long		slept = 0;
	int			i;

	for (i = 1; i < attempt && ms < cap; i++)
		ms *= 2;
	if (ms > cap)
		ms = cap;
	/* jitter: between half and all of it */
	ms = ms / 2 + (long) (rand() % (ms / 2 + 1));
	while (slept < ms)
	{
		long		step = ms - slept < 50 ? ms - slept : 50;
		struct timespec ts = {0, step * 1000000L};

		if (cfg->interrupt && cfg->interrupt(cfg->interrupt_arg))
			return;
		nanosleep(&ts, NULL);
		slept += step;
	}
}

/* Run one attempt of a request; *aborted is set when the interrupt callback fired. */
static CURLcode
s3_perform_once(const S3Config *cfg, S3Request *req, int *aborted, char *curlerr)
{
	CURL	   *h = s3_easy;
	struct curl_slist *hdrs = NULL;
	char		hash[2 * SHA256_DIGEST_LENGTH + 1];
	char		line[256];
	char		sigv4[128];
	char	   *url;
	CURLcode	rc = CURLE_OK;
	CURLMsg    *msg;
	int			running = 1;
	int			left;
	int			timeout = cfg->timeout_ms > 0 ? cfg->timeout_ms : S3_DEFAULT_TIMEOUT_MS;
	int			ctimeout = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms :
		(timeout < S3_DEFAULT_CONNECT_MS ? timeout : S3_DEFAULT_CONNECT_MS);
	sigset_t	old;

	*aborted = 0;
	curlerr[0] = '\0';
	req->body_pos = 0;
	req->status = 0;
	req->etag[0] = '\0';
	req->content_length = -1;
	S3BufferReset(&req->resp);

	url = s3_url(cfg, req->key, req->query);
	if (url == NULL)
		return CURLE_OUT_OF_MEMORY;

	s3_sha256_hex(req->body, req->body_len, hash);
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", hash);
	hdrs = curl_slist_append(hdrs, line);
	if (req->content_type)
	{
		snprintf(line, sizeof(line), "Content-Type: %s", req->content_type);
		hdrs = curl_slist_append(hdrs, line);
	}
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3",
			 cfg->region && cfg->region[0] ? cfg->region : "us-east-1");

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curlerr);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "recsys/0.1");
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4);
	curl_easy_setopt(h, CURLOPT_USERNAME, cfg->access_key ? cfg->access_key : "");
	curl_easy_setopt(h, CURLOPT_PASSWORD, cfg->secret_key ? cfg->secret_key : "");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) timeout);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) ctimeout);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, cfg->insecure ? 0L : 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, cfg->insecure ? 0L : 2L);
	if (cfg->ca_file && cfg->ca_file[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s3_write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s3_header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, req);

	if (strcmp(req->method, "PUT") == 0)
	{
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, s3_read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, req);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t) req->body_len);
	}
	else if (strcmp(req->method, "POST") == 0)
	{
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	}
	else if (strcmp(req->method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	else if (strcmp(req->method, "DELETE") == 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");

	LibBlockSignals(&old);
	curl_multi_add_handle(s3_multi, h);
	LibRestoreSignals(&old);
	while (running)
	{
		CURLMcode	mc;

		LibBlockSignals(&old);
		mc = curl_multi_perform(s3_multi, &running);
		LibRestoreSignals(&old);
		if (mc != CURLM_OK)
		{
			snprintf(curlerr, CURL_ERROR_SIZE, "%s", curl_multi_strerror(mc));
			rc = CURLE_FAILED_INIT;
			break;
		}
		if (!running)
			break;
		if (cfg->interrupt && cfg->interrupt(cfg->interrupt_arg))
		{
			*aborted = 1;
			rc = CURLE_ABORTED_BY_CALLBACK;
			break;
		}
		curl_multi_poll(s3_multi, NULL, 0, S3_POLL_MS, NULL);
	}
	if (!*aborted && rc == CURLE_OK)
	{
		rc = CURLE_GOT_NOTHING;
		while ((msg = curl_multi_info_read(s3_multi, &left)) != NULL)
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == h)
				rc = msg->data.result;
	}
	LibBlockSignals(&old);
	curl_multi_remove_handle(s3_multi, h);
	LibRestoreSignals(&old);

	if (rc == CURLE_OK)
	{
		curl_off_t	cl = -1;

		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &req->status);
		if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK)
			req->content_length = (int64_t) cl;
	}
	if (rc != CURLE_OK && curlerr[0] == '\0')
		snprintf(curlerr, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
	/* the handle must not keep pointers to our header list or URL */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(hdrs);
	free(url);
	return rc;
}

/*
 * Run a request with retries.  Returns 0 on a 2xx answer, S3_NOT_FOUND on 404, else
 * S3_ERROR with a message.
 */
static int
s3_request(const S3Config *cfg, S3Request *req, char *err, size_t errlen)
{
	int			retries = cfg->max_retries == 0 ? S3_DEFAULT_RETRIES :
		(cfg->max_retries < 0 ? 0 : cfg->max_retries);
	int			attempt;
	char		curlerr[CURL_ERROR_SIZE];
	char		pkey[256];

	if (s3_init(err, errlen) != 0)
		return S3_ERROR;
	if (cfg->endpoint == NULL || cfg->bucket == NULL || cfg->bucket[0] == '\0' ||
		(strncmp(cfg->endpoint, "http://", 7) != 0 &&
		 strncmp(cfg->endpoint, "https://", 8) != 0))
	{
		LibSetError(err, errlen, "S3 %s: the endpoint must be an http:// or https:// URL and a bucket must be set",
				   req->op);
		return S3_ERROR;
	}
	s3_printable(req->key ? req->key : "", pkey, sizeof(pkey));

	for (attempt = 0;; attempt++)
	{
		int			aborted;
		CURLcode	rc = s3_perform_once(cfg, req, &aborted, curlerr);

		if (aborted)
		{
			LibSetError(err, errlen, "S3 %s %s%s%s: interrupted", req->op, cfg->bucket,
					   req->key ? "/" : "", pkey);
			return S3_ERROR;
		}
		if (rc == CURLE_OK && req->status >= 200 && req->status < 300)
			return S3_OK;
		if (rc == CURLE_OK && req->status == 404 && req->key != NULL)
		{
			s3_format_error(cfg, req, err, errlen);
			if (strcmp(req->code, "NoSuchBucket") != 0)
				return S3_NOT_FOUND;
			return S3_ERROR;
		}
		if (attempt < retries &&
			((rc != CURLE_OK && s3_transient_curl(rc)) ||
			 (rc == CURLE_OK && req->status >= 500)))
		{
			s3_backoff(cfg, attempt + 1);
			continue;
		}
		if (rc != CURLE_OK)
			LibSetError(err, errlen, "S3 %s %s%s%s: %s (after %d attempt%s)", req->op,
					   cfg->bucket, req->key ? "/" : "", pkey, curlerr, attempt + 1,
					   attempt ? "s" : "");
		else
			s3_format_error(cfg, req, err, errlen);
		return S3_ERROR;
	}
}

/* Copy s for a message, replacing control bytes and truncating. */
static void
s3_printable(const char *in, char *out, size_t outlen)
{
	size_t		i;

	for (i = 0; in[i] && i + 1 < outlen; i++)
		out[i] = ((unsigned char) in[i] < 0x20 || in[i] == 0x7f) ? '?' : in[i];
	out[i] = '\0';
}

/* Parse an XML body with libxml2, quietly and without network access. */
static xmlDocPtr
s3_parse_xml(const S3Buffer *buf)
{
	if (buf->data == NULL || buf->len == 0)
		return NULL;
	return xmlReadMemory(buf->data, (int) buf->len, "s3.xml", NULL,
						 XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

/* First child element of node with this local name. */
static xmlNodePtr
s3_child(xmlNodePtr node, const char *name)
{
	xmlNodePtr	c;

	for (c = node ? node->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && strcmp((const char *) c->name, name) == 0)
			return c;
	return NULL;
}

/* Text of the first child element with this name, malloc'd (NULL when absent). */
static char *
s3_child_text(xmlNodePtr node, const char *name)
{
	xmlNodePtr	c = s3_child(node, name);
	xmlChar    *t;
	char	   *s;

	if (c == NULL)
		return NULL;
	t = xmlNodeGetContent(c);
	if (t == NULL)
		return NULL;
	s = strdup((const char *) t);
	xmlFree(t);
	return s;
}

/* Describe a failed answer from its XML <Error> body (or its status alone). */
static void
s3_format_error(const S3Config *cfg, S3Request *req, char *err, size_t errlen)
{
	xmlDocPtr	doc = s3_parse_xml(&req->resp);
	xmlNodePtr	root = doc ? xmlDocGetRootElement(doc) : NULL;
	char	   *code = NULL;
	char	   *message = NULL;
	char		pkey[256];
	char		pmsg[512];

	req->code[0] = '\0';
	if (root && strcmp((const char *) root->name, "Error") == 0)
	{
		code = s3_child_text(root, "Code");
		message = s3_child_text(root, "Message");
		if (code)
			s3_printable(code, req->code, sizeof(req->code));
	}
	pkey[0] = '/';
	s3_printable(req->key ? req->key : "", pkey + 1, sizeof(pkey) - 1);
	if (req->key == NULL)
		pkey[0] = '\0';
	s3_printable(message ? message : "", pmsg, sizeof(pmsg));
	if (code)
		LibSetError(err, errlen, "S3 %s %s%s: %s: %s (HTTP %ld)", req->op, cfg->bucket,
				   pkey, code, pmsg, req->status);
	else if (strcmp(req->method, "HEAD") == 0)
		LibSetError(err, errlen, "S3 %s %s%s: HTTP %ld%s", req->op, cfg->bucket, pkey,
				   req->status,
				   req->status == 404 ? " (not found)" :
				   req->status == 403 ? " (access denied or bad signature)" : "");
	else
		LibSetError(err, errlen, "S3 %s %s%s: HTTP %ld with no S3 error body", req->op,
				   cfg->bucket, pkey, req->status);
	free(code);
	free(message);
	if (doc)
		xmlFreeDoc(doc);
}

int
S3CheckBucket(const S3Config *cfg, char *err, size_t errlen)
{
	S3Request	req = {0};
	int			rc;

	req.op = "HEAD bucket";
	req.method = "HEAD";
	rc = s3_request(cfg, &req, err, errlen);
	if (rc != S3_OK && req.status >= 400)
	{
		/* HEAD has no body: ask again with a GET to learn the S3 error code */
		S3Request	again = {0};

		again.op = "HEAD bucket";
		again.method = "GET";
		again.query = "list-type=2&max-keys=1";
		if (s3_request(cfg, &again, err, errlen) == S3_OK)
			LibSetError(err, errlen, "S3 HEAD bucket %s: HTTP %ld", cfg->bucket, req.status);
		S3BufferFree(&again.resp);
	}
	S3BufferFree(&req.resp);
	return rc == S3_OK ? 0 : -1;
}

int
S3CreateBucket(const S3Config *cfg, char *err, size_t errlen)
{
	S3Request	req = {0};
	char		body[256];
	int			rc;

	req.op = "create bucket";
	req.method = "PUT";
	if (cfg->region && cfg->region[0] && strcmp(cfg->region, "us-east-1") != 0)
	{
		snprintf(body, sizeof(body),
				 "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
				 "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
				 cfg->region);
		req.body = body;
		req.body_len = strlen(body);
		req.content_type = "application/xml";
	}
	rc = s3_request(cfg, &req, err, errlen);
	if (rc != S3_OK && strcmp(req.code, "BucketAlreadyOwnedByYou") == 0)
		rc = S3_OK;
	S3BufferFree(&req.resp);
	return rc == S3_OK ? 0 : -1;
}

int
S3Put(const S3Config *cfg, const char *key, const void *data, size_t len,
	  const char *content_type, char *err, size_t errlen)
{
	S3Request	req = {0};
	size_t		threshold = cfg->multipart_threshold ? cfg->multipart_threshold :
		S3_DEFAULT_MP_THRESHOLD;
	int			rc;

	if (len > threshold)
		return S3PutMultipart(cfg, key, data, len, cfg->part_size, content_type,
							  err, errlen);
	req.op = "PUT";
	req.method = "PUT";
	req.key = key;
	req.body = data;
	req.body_len = len;
	req.content_type = content_type ? content_type : "application/octet-stream";
	rc = s3_request(cfg, &req, err, errlen);
	S3BufferFree(&req.resp);
	return rc == S3_OK ? S3_OK : S3_ERROR;
}

int
S3PutMultipart(const S3Config *cfg, const char *key, const void *data, size_t len,
			   size_t part_size, const char *content_type, char *err, size_t errlen)
{
	S3Request	req = {0};
	S3Buffer	complete = {0};
	xmlDocPtr	doc;
	char	   *upload_id = NULL;
	char	   *eid = NULL;
	char		query[1024];
	size_t		off;
	int			part;
	int			rc = S3_ERROR;

	if (part_size == 0)
		part_size = cfg->part_size ? cfg->part_size : S3_DEFAULT_PART_SIZE;
	if (part_size < S3_MIN_PART_SIZE)
		part_size = S3_MIN_PART_SIZE;

	/* initiate */
	req.op = "multipart initiate";
	req.method = "POST";
	req.key = key;
	req.query = "uploads=";
	req.content_type = content_type ? content_type : "application/octet-stream";
	if (s3_request(cfg, &req, err, errlen) != S3_OK)
		goto done;
	doc = s3_parse_xml(&req.resp);
	if (doc)
	{
		upload_id = s3_child_text(xmlDocGetRootElement(doc), "UploadId");
		xmlFreeDoc(doc);
	}
	if (upload_id == NULL || (eid = s3_encode(upload_id, 0)) == NULL)
	{
		LibSetError(err, errlen, "S3 multipart initiate %s: no UploadId in the answer", cfg->bucket);
		goto done;
	}

	/* parts; query parameters in sorted order: partNumber < uploadId */
	if (S3BufferAppend(&complete, "<CompleteMultipartUpload>", 25) != 0)
		goto oom;
	for (off = 0, part = 1; off < len || part == 1; off += part_size, part++)
	{
		size_t		n = len - off < part_size ? len - off : part_size;
		char		item[512];

		req.op = "multipart part";
		req.method = "PUT";
		req.content_type = NULL;
		snprintf(query, sizeof(query), "partNumber=%d&uploadId=%s", part, eid);
		req.query = query;
		req.body = (const char *) data + off;
		req.body_len = n;
		if (s3_request(cfg, &req, err, errlen) != S3_OK)
			goto abort;
		snprintf(item, sizeof(item),
				 "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", part, req.etag);
		if (S3BufferAppend(&complete, item, strlen(item)) != 0)
			goto oom;
		if (off + n >= len)
			break;
	}
	if (S3BufferAppend(&complete, "</CompleteMultipartUpload>", 26) != 0)
		goto oom;

	/* complete: an error may come back with status 200, in the body */
	req.op = "multipart complete";
	req.method = "POST";
	snprintf(query, sizeof(query), "uploadId=%s", eid);
	req.query = query;
	req.body = complete.data;
	req.body_len = complete.len;
	req.content_type = "application/xml";
	if (s3_request(cfg, &req, err, errlen) != S3_OK)
		goto abort;
	doc = s3_parse_xml(&req.resp);
	if (doc == NULL || strcmp((const char *) xmlDocGetRootElement(doc)->name, "Error") == 0)
	{
		if (doc)
			xmlFreeDoc(doc);
		s3_format_error(cfg, &req, err, errlen);
		goto abort;
	}
	xmlFreeDoc(doc);
	rc = S3_OK;
	goto done;

oom:
	LibSetError(err, errlen, "S3 multipart upload %s: out of memory", cfg->bucket);
abort:
	{
		/* best effort: do not leave the parts behind */
		char		ignore[256];

		req.op = "multipart abort";
		req.method = "DELETE";
		snprintf(query, sizeof(query), "uploadId=%s", eid);
		req.query = query;
		req.body = NULL;
		req.body_len = 0;
		req.content_type = NULL;
		s3_request(cfg, &req, ignore, sizeof(ignore));
	}
done:
	free(upload_id);
	free(eid);
	S3BufferFree(&complete);
	S3BufferFree(&req.resp);
	return rc;
}

int
S3Get(const S3Config *cfg, const char *key, S3Buffer *out, char *err, size_t errlen)
{
	S3Request	req = {0};
	int			rc;

	req.op = "GET";
	req.method = "GET";
	req.key = key;
	rc = s3_request(cfg, &req, err, errlen);
	S3BufferFree(out);
	if (rc == S3_OK)
		*out = req.resp;		/* hand the buffer over */
	else
		S3BufferFree(&req.resp);
	return rc;
}

int
S3Head(const S3Config *cfg, const char *key, int64_t *size, char *err, size_t errlen)
{
	S3Request	req = {0};
	int			rc;

	req.op = "HEAD";
	req.method = "HEAD";
	req.key = key;
	rc = s3_request(cfg, &req, err, errlen);
	if (rc == S3_OK && size)
		*size = req.content_length;
	S3BufferFree(&req.resp);
	return rc;
}

int
S3Delete(const S3Config *cfg, const char *key, char *err, size_t errlen)
{
	S3Request	req = {0};
	int			rc;

	req.op = "DELETE";
	req.method = "DELETE";
	req.key = key;
	rc = s3_request(cfg, &req, err, errlen);
	S3BufferFree(&req.resp);
	return rc == S3_ERROR ? S3_ERROR : S3_OK;
}

/* Parse one ListObjectsV2 page, calling the callback per key. */
static int
s3_parse_list(const S3Buffer *buf, S3ListState *st, char *err, size_t errlen)
{
	xmlDocPtr	doc = s3_parse_xml(buf);
	xmlNodePtr	root = doc ? xmlDocGetRootElement(doc) : NULL;
	xmlNodePtr	c;
	char	   *s;
	int			url_encoded = 0;

	if (root == NULL || strcmp((const char *) root->name, "ListBucketResult") != 0)
	{
		if (doc)
			xmlFreeDoc(doc);
		LibSetError(err, errlen, "S3 list: the answer is not a ListBucketResult");
		return -1;
	}
	s = s3_child_text(root, "EncodingType");
	url_encoded = s && strcmp(s, "url") == 0;
	free(s);
	s = s3_child_text(root, "IsTruncated");
	st->truncated = s && strcmp(s, "true") == 0;
	free(s);
	free(st->next_token);
	st->next_token = s3_child_text(root, "NextContinuationToken");

	for (c = root->children; c && !st->stopped; c = c->next)
	{
		char	   *key,
				   *size;

		if (c->type != XML_ELEMENT_NODE || strcmp((const char *) c->name, "Contents") != 0)
			continue;
		key = s3_child_text(c, "Key");
		size = s3_child_text(c, "Size");
		if (key && url_encoded)
		{
			char	   *d = s3_url_decode(key);

			free(key);
			key = d;
		}
		if (key)
		{
			st->nkeys++;
			if (st->fn(key, size ? strtoll(size, NULL, 10) : -1, st->arg) != 0)
				st->stopped = 1;
		}
		free(key);
		free(size);
	}
	xmlFreeDoc(doc);
	return 0;
}

int
S3List(const S3Config *cfg, const char *prefix, const char *start_after,
	   S3ListFn fn, void *arg, char *err, size_t errlen)
{
	S3ListState st = {0};
	S3Request	req = {0};
	int			rc = S3_OK;
	int			page = cfg->list_page_size > 0 ? cfg->list_page_size : 1000;
	char	   *eprefix = s3_encode(prefix ? prefix : "", 0);
	char	   *eafter = s3_encode(start_after ? start_after : "", 0);

	st.fn = fn;
	st.arg = arg;
	if (eprefix == NULL || eafter == NULL)
	{
		LibSetError(err, errlen, "S3 list: out of memory");
		rc = S3_ERROR;
	}
	while (rc == S3_OK)
	{
		char	   *etoken = st.next_token ? s3_encode(st.next_token, 0) : NULL;
		size_t		qlen = strlen(eprefix) + strlen(eafter) + (etoken ? strlen(etoken) : 0) + 128;
		char	   *query = malloc(qlen);

		if (query == NULL)
		{
			free(etoken);
			LibSetError(err, errlen, "S3 list: out of memory");
			rc = S3_ERROR;
			break;
		}
		/* parameters in sorted order, as SigV4 wants them */
		snprintf(query, qlen, "%s%s%sencoding-type=url&list-type=2&max-keys=%d&prefix=%s%s%s",
				 etoken ? "continuation-token=" : "", etoken ? etoken : "", etoken ? "&" : "",
				 page, eprefix,
				 eafter[0] && !etoken ? "&start-after=" : "", eafter[0] && !etoken ? eafter : "");
		req.op = "LIST";
		req.method = "GET";
		req.query = query;
		rc = s3_request(cfg, &req, err, errlen);
		if (rc == S3_OK && s3_parse_list(&req.resp, &st, err, errlen) != 0)
			rc = S3_ERROR;
		free(query);
		free(etoken);
		if (rc != S3_OK || st.stopped || !st.truncated)
			break;
		if (st.next_token == NULL)
		{
			LibSetError(err, errlen, "S3 list: truncated answer without a continuation token");
			rc = S3_ERROR;
		}
	}
	free(st.next_token);
	free(eprefix);
	free(eafter);
	S3BufferFree(&req.resp);
	return rc == S3_OK ? S3_OK : S3_ERROR;
}

/* gzip writer. */
S3GzipWriter *
S3GzipBegin(int level)
{
	S3GzipWriter *w = calloc(1, sizeof(S3GzipWriter));

	if (w == NULL)
		return NULL;
	/* windowBits 15 + 16: a gzip header and trailer */
	if (deflateInit2(&w->zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
	{
		free(w);
		return NULL;
	}
	return w;
}

/* Run deflate over the pending input with the given flush mode. */
static int
s3_gzip_run(S3GzipWriter *w, int flush)
{
	for (;;)
	{
		int			zrc;
		size_t		room;

		if (w->out.cap - w->out.len < 65536)
		{
			size_t		need = w->out.len + 65536 + 1;
			size_t		ncap = w->out.cap ? w->out.cap : 65536;
			char	   *n;

			while (ncap < need)
				ncap *= 2;
			n = realloc(w->out.data, ncap);
			if (n == NULL)
				return -1;
			w->out.data = n;
			w->out.cap = ncap;
		}
		room = w->out.cap - w->out.len - 1;
		w->zs.next_out = (Bytef *) w->out.data + w->out.len;
		w->zs.avail_out = (uInt) room;
		zrc = deflate(&w->zs, flush);
		w->out.len += room - w->zs.avail_out;
		w->out.data[w->out.len] = '\0';
		if (zrc == Z_STREAM_END)
			return 0;
		if (zrc != Z_OK && zrc != Z_BUF_ERROR)
			return -1;
		if (flush == Z_NO_FLUSH && w->zs.avail_in == 0)
			return 0;
		if (flush == Z_FINISH && zrc == Z_BUF_ERROR && w->zs.avail_out != 0)
			return -1;
	}
}

int
S3GzipWrite(S3GzipWriter *w, const void *data, size_t len)
{
	if (w->finished)
		return -1;
	w->in_bytes += len;
	while (len > 0)
	{
		uInt		n = len > (1u << 30) ? (1u << 30) : (uInt) len;

		w->zs.next_in = (Bytef *) data;
		w->zs.avail_in = n;
		if (s3_gzip_run(w, Z_NO_FLUSH) != 0)
			return -1;
		data = (const char *) data + n;
		len -= n;
	}
	return 0;
}

int
S3GzipFinish(S3GzipWriter *w)
{
	if (w->finished)
		return 0;
	w->zs.next_in = NULL;
	w->zs.avail_in = 0;
	if (s3_gzip_run(w, Z_FINISH) != 0)
		return -1;
	w->finished = 1;
	return 0;
}

/*
 * Finish a copy of the stream into *out (malloc'd; free with S3BufferFree), leaving
 * the writer open: a caller whose upload of the result fails can go on writing.
 */
int
S3GzipFinishCopy(S3GzipWriter *w, S3Buffer *out)
{
	S3GzipWriter copy;
	int			rc;

	memset(out, 0, sizeof(*out));
	if (w->finished)
		return -1;
	memset(&copy, 0, sizeof(copy));
	if (deflateCopy(&copy.zs, &w->zs) != Z_OK)
		return -1;
	copy.out.cap = w->out.len + 65536 + 1;
	copy.out.data = malloc(copy.out.cap);
	if (copy.out.data == NULL)
	{
		deflateEnd(&copy.zs);
		return -1;
	}
	memcpy(copy.out.data, w->out.data, w->out.len);
	copy.out.len = w->out.len;
	copy.zs.next_in = NULL;
	copy.zs.avail_in = 0;
	rc = s3_gzip_run(&copy, Z_FINISH);
	deflateEnd(&copy.zs);
	if (rc != 0)
	{
		S3BufferFree(&copy.out);
		return -1;
	}
	*out = copy.out;
	return 0;
}

S3Buffer *
S3GzipOutput(S3GzipWriter *w)
{
	return &w->out;
}

size_t
S3GzipInputBytes(const S3GzipWriter *w)
{
	return w->in_bytes;
}

void
S3GzipFree(S3GzipWriter *w)
{
	if (w == NULL)
		return;
	deflateEnd(&w->zs);
	S3BufferFree(&w->out);
	free(w);
}

int
S3Gunzip(const void *data, size_t len, S3Buffer *out, char *err, size_t errlen)
{
	z_stream	zs;
	char		chunk[65536];
	int			zrc = Z_OK;

	S3BufferReset(out);
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 15 + 16) != Z_OK)
	{
		LibSetError(err, errlen, "gunzip: could not initialise zlib");
		return -1;
	}
	zs.next_in = (Bytef *) data;
	zs.avail_in = (uInt) len;
	while (zs.avail_in > 0 || zrc != Z_STREAM_END)
	{
		zs.next_out = (Bytef *) chunk;
		zs.avail_out = sizeof(chunk);
		zrc = inflate(&zs, Z_NO_FLUSH);
		if (zrc != Z_OK && zrc != Z_STREAM_END)
		{
			LibSetError(err, errlen, "gunzip: %s", zs.msg ? zs.msg : "corrupt or truncated data");
			inflateEnd(&zs);
			return -1;
		}
		if (S3BufferAppend(out, chunk, sizeof(chunk) - zs.avail_out) != 0)
		{
			LibSetError(err, errlen, "gunzip: out of memory");
			inflateEnd(&zs);
			return -1;
		}
		if (zrc == Z_STREAM_END)
		{
			if (zs.avail_in == 0)
				break;
			inflateReset(&zs);	/* another gzip member follows */
			zrc = Z_OK;
		}
	}
	inflateEnd(&zs);
	if (out->data == NULL && S3BufferAppend(out, "", 0) != 0)
		return -1;
	return 0;
}
