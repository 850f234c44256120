/*
 * llm.c: the LLM re-ranking client (see llm.h).
 *
 * Design
 * - One request = one POST <endpoint>/chat/completions with
 *   {"model", "messages": [system, user], "response_format": {"type": "json_object"},
 *   "temperature": 0}; the reply's choices[0].message.content is parsed as the JSON
 *   object {"picks": [{"movie_id", "reason"}, ...]} the prompt asks for.
 * - libcurl: one easy handle driven by a private multi handle, both made once per
 *   process and reused (the connection to the endpoint stays open between calls).
 *   Every call into libcurl that can start a thread (handle creation, and
 *   curl_multi_perform, where the threaded resolver starts) runs with all signals
 *   blocked, so PostgreSQL's handlers never run on a library thread; the waits between
 *   them (curl_multi_poll, at most 100 ms each) run with the caller's mask, so a
 *   backend still receives its signals, and the interrupt callback is polled after
 *   every wait (and from libcurl's progress callback), which stops a request within
 *   about 100 ms. CURLOPT_TIMEOUT_MS bounds the whole request.
 * - Failures map to one code each (llm.h): a timeout, an HTTP status other than 200,
 *   a reply that cannot be used, an interrupt, anything else. Messages name the URL
 *   and what went wrong; the API key is only ever handed to libcurl, and is scrubbed
 *   from a message should a server echo it.
 * - jansson builds the request with json_pack() (never json_object(), whose name
 *   clashes with a PostgreSQL server symbol) and parses the reply.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "libutil.h"
#include "llm.h"

#define LLM_POLL_MS			100
#define LLM_MAX_REPLY		((size_t) 4 * 1024 * 1024)
#define LLM_SYSTEM_PROMPT \
	"You re-rank movie recommendations for one user of a movie site. " \
	"You choose only among the candidate movies you are given, and you answer with a JSON object only."

/* A growable byte buffer (NUL-terminated). */
typedef struct LlmBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	int			failed;			/* out of memory, or over its limit */
} LlmBuf;

/* What the libcurl callbacks see. */
typedef struct LlmTransfer
{
	const LlmRequest *req;
	LlmBuf		body;
	int			interrupted;
	char		retry_after[32];
} LlmTransfer;

static CURLM *llm_multi = NULL;
static CURL *llm_easy = NULL;

static int	llm_init(char *err, size_t errlen);
static char *llm_build_body(const LlmRequest *req);
static void llm_append_movie(LlmBuf *b, const char *kind, const LlmMovie *m);
static void llm_append_clean(LlmBuf *b, const char *s, int genres);
static int	llm_perform(LlmTransfer *t, const char *url, const char *body, long *status,
						char *err, size_t errlen);
static int	llm_parse_reply(const LlmRequest *req, const LlmBuf *reply, LlmResult *res,
							char *err, size_t errlen);
static json_t *llm_parse_content(const char *content);
static int	llm_pick_id(json_t *pick, int64_t *id);
static void llm_copy_reason(char *dst, size_t dstlen, const char *src);
static void llm_error_detail(const LlmBuf *reply, char *out, size_t outlen);
static void llm_scrub(char *err, const char *secret);
static void buf_append(LlmBuf *b, const char *s, size_t n);
static void buf_appendf(LlmBuf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
static size_t llm_write_cb(char *ptr, size_t size, size_t nmemb, void *arg);
static size_t llm_header_cb(char *ptr, size_t size, size_t nmemb, void *arg);
static int	llm_progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow,
							curl_off_t ultotal, curl_off_t ulnow);
static size_t utf8_seq_len(const unsigned char *s, size_t avail);

/* Re-rank the candidates with one Chat Completions call. */
int
LlmRerank(const LlmRequest *req, LlmResult *res, char *err, size_t errlen)
{
	LlmTransfer t;
	char	   *body = NULL;
	char	   *url = NULL;
	size_t		n;
	long		status = 0;
	int			rc;

	if (err && errlen)
		err[0] = '\0';
	res->npicks = 0;
	res->dropped_unknown = 0;
	res->dropped_duplicate = 0;
	res->http_status = 0;
	if (req->endpoint == NULL || req->endpoint[0] == '\0' || req->model == NULL ||
		req->n_wanted < 1 || req->ncandidates < 1 || req->candidates == NULL ||
		res->picks == NULL)
	{
		LibSetError(err, errlen, "bad LLM request: an endpoint, a model, candidates and n_wanted >= 1 are required");
		return LLM_ERROR;
	}
	if (req->interrupt && req->interrupt(req->interrupt_arg))
	{
		LibSetError(err, errlen, "LLM request interrupted before it started");
		return LLM_INTERRUPTED;
	}
	if (llm_init(err, errlen) != 0)
		return LLM_ERROR;

	n = strlen(req->endpoint);
	while (n > 0 && req->endpoint[n - 1] == '/')
		n--;
	url = malloc(n + sizeof("/chat/completions"));
	body = llm_build_body(req);
	if (url == NULL || body == NULL)
	{
		free(url);
		free(body);
		LibSetError(err, errlen, "could not build the LLM request: out of memory or a string that is not valid JSON text");
		return LLM_ERROR;
	}
	memcpy(url, req->endpoint, n);
	strcpy(url + n, "/chat/completions");

	memset(&t, 0, sizeof(t));
	t.req = req;
	rc = llm_perform(&t, url, body, &status, err, errlen);
	res->http_status = status;
	if (rc == LLM_OK && status != 200)
	{
		char		detail[300];

		llm_error_detail(&t.body, detail, sizeof(detail));
		LibSetError(err, errlen, "LLM endpoint %s answered HTTP %ld%s%s%s%s%s", url, status,
					detail[0] ? ": " : "", detail,
					t.retry_after[0] ? " (Retry-After: " : "", t.retry_after,
					t.retry_after[0] ? ")" : "");
		rc = LLM_HTTP_ERROR;
	}
	else if (rc == LLM_OK)
		rc = llm_parse_reply(req, &t.body, res, err, errlen);
	if (rc != LLM_OK)
		res->npicks = 0;
	if (req->api_key && req->api_key[0])
		llm_scrub(err, req->api_key);
	free(t.body.data);
	free(body);
	free(url);
	return rc;
}

/* Return the name of an LLM_* code. */
const char *
LlmStatusName(int rc)
{
	switch (rc)
	{
		case LLM_OK:
			return "ok";
		case LLM_TIMEOUT:
			return "timeout";
		case LLM_HTTP_ERROR:
			return "http error";
		case LLM_BAD_REPLY:
			return "bad reply";
		case LLM_INTERRUPTED:
			return "interrupted";
		default:
			return "error";
	}
}

/* Make the process's libcurl handles once, with every signal blocked. */
static int
llm_init(char *err, size_t errlen)
{
	sigset_t	old;

	if (llm_multi != NULL && llm_easy != NULL)
		return 0;
	LibBlockSignals(&old);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK)
	{
		if (llm_multi == NULL)
			llm_multi = curl_multi_init();
		if (llm_easy == NULL)
			llm_easy = curl_easy_init();
	}
	LibRestoreSignals(&old);
	if (llm_multi == NULL || llm_easy == NULL)
	{
		LibSetError(err, errlen, "could not initialise libcurl for the LLM client");
		return -1;
	}
	return 0;
}

/* Build the JSON request body (malloc'd), or NULL. */
static char *
llm_build_body(const LlmRequest *req)
{
	LlmBuf		u = {0};
	json_t	   *root;
	char	   *out;
	int			wanted = req->n_wanted < req->ncandidates ? req->n_wanted : req->ncandidates;
	int			i;

	buf_appendf(&u, "Re-rank the recommendations for one user: pick the %d candidate movie%s this user "
				"is most likely to enjoy, best first.\n\n", wanted, wanted == 1 ? "" : "s");
	buf_appendf(&u, "favourite genres: ");
	for (i = 0; i < req->nfavorite; i++)
	{
		if (i > 0)
			buf_appendf(&u, ", ");
		llm_append_clean(&u, req->favorite_genres[i], 0);
	}
	buf_appendf(&u, "%s\n\n", req->nfavorite > 0 ? "" : "none known");
	buf_appendf(&u, "movies the user rated highest (liked <id> | <title> (<year>) | <genres>):\n");
	for (i = 0; i < req->nliked; i++)
		llm_append_movie(&u, "liked", &req->liked[i]);
	if (req->nliked == 0)
		buf_appendf(&u, "none known\n");
	buf_appendf(&u, "\ncandidates, best first by the recommendation engine "
				"(candidate <id> | <title> (<year>) | <genres>):\n");
	for (i = 0; i < req->ncandidates; i++)
		llm_append_movie(&u, "candidate", &req->candidates[i]);
	buf_appendf(&u, "\npicks wanted: %d\n\n", wanted);
	buf_appendf(&u, "Answer with a JSON object of exactly this shape: "
				"{\"picks\":[{\"movie_id\":<candidate id>,\"reason\":\"<one short sentence>\"}]}, "
				"with exactly %d picks, best first. Every movie_id must be one of the candidate ids "
				"above, each at most once; never name a movie that is not a candidate. Each reason is "
				"one short sentence addressed to the user, saying why the movie suits them "
				"(for example a liked movie or a favourite genre it relates to).\n",
				wanted);
	if (u.failed)
	{
		free(u.data);
		return NULL;
	}

	root = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}], s:{s:s}, s:f}",
					 "model", req->model,
					 "messages",
					 "role", "system", "content", LLM_SYSTEM_PROMPT,
					 "role", "user", "content", u.data,
					 "response_format", "type", "json_object",
					 "temperature", 0.0);
	free(u.data);
	if (root == NULL)
		return NULL;
	out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return out;
}

/* Append one "<kind> <id> | <title> (<year>) | <genres>" line. */
static void
llm_append_movie(LlmBuf *b, const char *kind, const LlmMovie *m)
{
	buf_appendf(b, "%s %lld | ", kind, (long long) m->movie_id);
	llm_append_clean(b, m->title && m->title[0] ? m->title : "untitled", 0);
	if (m->year > 0)
		buf_appendf(b, " (%d)", m->year);
	buf_appendf(b, " | ");
	if (m->genres && m->genres[0])
		llm_append_clean(b, m->genres, 1);
	else
		buf_appendf(b, "unknown genres");
	buf_appendf(b, "\n");
}

/*
 * Append s to the prompt keeping its line format readable: control characters become
 * spaces, '|' becomes '/' (or ", " between genres), bytes that are not valid UTF-8
 * become '?'.
 */
static void
llm_append_clean(LlmBuf *b, const char *s, int genres)
{
	const unsigned char *p = (const unsigned char *) (s ? s : "");
	size_t		avail = strlen((const char *) p);

	while (avail > 0)
	{
		size_t		n = utf8_seq_len(p, avail);

		if (n == 0)
		{
			buf_append(b, "?", 1);
			n = 1;
		}
		else if (*p == '|')
			buf_append(b, genres ? ", " : "/", genres ? 2 : 1);
		else if (*p < 0x20 || *p == 0x7f)
			buf_append(b, " ", 1);
		else
			buf_append(b, (const char *) p, n);
		p += n;
		avail -= n;
	}
}

/*
 * Run the POST to its end, an error, the timeout or an interrupt. Returns LLM_OK when a
 * response came (its status in *status, its body in t->body), else the failure code.
 */
static int
llm_perform(LlmTransfer *t, const char *url, const char *body, long *status,
			char *err, size_t errlen)
{
	const LlmRequest *req = t->req;
	CURL	   *h = llm_easy;
	struct curl_slist *headers = NULL;
	char		curlerr[CURL_ERROR_SIZE] = "";
	CURLcode	result = CURLE_OK;
	int			done = 0;
	int			rc;
	sigset_t	old;

	curl_easy_reset(h);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, "Accept: application/json");
	headers = curl_slist_append(headers, "Expect:");
	if (req->api_key && req->api_key[0])
	{
		size_t		len = strlen(req->api_key) + sizeof("Authorization: Bearer ");
		char	   *auth = malloc(len);

		struct curl_slist *more = NULL;

		if (auth != NULL)
		{
			snprintf(auth, len, "Authorization: Bearer %s", req->api_key);
			more = curl_slist_append(headers, auth);
			explicit_bzero(auth, len);
			free(auth);
		}
		if (more == NULL)
		{
			curl_slist_free_all(headers);
			headers = NULL;
		}
		else
			headers = more;
	}
	if (headers == NULL)
	{
		LibSetError(err, errlen, "could not build the LLM request headers: out of memory");
		return LLM_ERROR;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) (req->timeout_ms > 0 ? req->timeout_ms : 10000));
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curlerr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, llm_write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, llm_header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, llm_progress_cb);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "recsys-llm/1");

	curl_multi_add_handle(llm_multi, h);
	while (!done)
	{
		int			running = 0;
		CURLMcode	mc;
		CURLMsg    *msg;
		int			left;

		LibBlockSignals(&old);
		mc = curl_multi_perform(llm_multi, &running);
		LibRestoreSignals(&old);
		if (mc != CURLM_OK)
		{
			result = CURLE_FAILED_INIT;
			snprintf(curlerr, sizeof(curlerr), "%s", curl_multi_strerror(mc));
			break;
		}
		while ((msg = curl_multi_info_read(llm_multi, &left)) != NULL)
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == h)
			{
				result = msg->data.result;
				done = 1;
			}
		if (done)
			break;
		if (t->interrupted || (req->interrupt && req->interrupt(req->interrupt_arg)))
		{
			t->interrupted = 1;
			break;
		}
		curl_multi_poll(llm_multi, NULL, 0, LLM_POLL_MS, NULL);
	}
	curl_multi_remove_handle(llm_multi, h);
	curl_slist_free_all(headers);
	/* the handle keeps no pointer to our buffers once the next call resets it */

	if (t->interrupted || (done && result == CURLE_ABORTED_BY_CALLBACK))
	{
		LibSetError(err, errlen, "LLM request to %s interrupted", url);
		rc = LLM_INTERRUPTED;
	}
	else if (done && result == CURLE_OK)
	{
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
		rc = LLM_OK;
	}
	else if (done && result == CURLE_OPERATION_TIMEDOUT)
	{
		LibSetError(err, errlen, "LLM endpoint %s did not answer within %d ms", url, req->timeout_ms);
		rc = LLM_TIMEOUT;
	}
	else if (done && result == CURLE_WRITE_ERROR && t->body.failed)
	{
		LibSetError(err, errlen, "LLM endpoint %s sent a reply larger than %zu bytes or memory ran out",
					url, LLM_MAX_REPLY);
		rc = LLM_BAD_REPLY;
	}
	else
	{
		LibSetError(err, errlen, "LLM request to %s failed: %s", url,
					curlerr[0] ? curlerr : curl_easy_strerror(result));
		rc = LLM_ERROR;
	}
	return rc;
}

/* Parse a 200 reply into res; LLM_OK when at least one candidate was picked. */
static int
llm_parse_reply(const LlmRequest *req, const LlmBuf *reply, LlmResult *res,
				char *err, size_t errlen)
{
	json_t	   *root;
	json_t	   *choices;
	json_t	   *content;
	json_t	   *obj;
	json_t	   *picks;
	json_error_t jerr;
	size_t		i;

	root = json_loadb(reply->data ? reply->data : "", reply->len, 0, &jerr);
	if (root == NULL)
	{
		LibSetError(err, errlen, "LLM reply is not JSON: %s", jerr.text);
		return LLM_BAD_REPLY;
	}
	choices = json_object_get(root, "choices");
	if (!json_is_array(choices) || json_array_size(choices) == 0)
	{
		json_decref(root);
		LibSetError(err, errlen, "LLM reply has no choices");
		return LLM_BAD_REPLY;
	}
	content = json_object_get(json_object_get(json_array_get(choices, 0), "message"), "content");
	if (!json_is_string(content))
	{
		json_decref(root);
		LibSetError(err, errlen, "LLM reply has no message content in choices[0]");
		return LLM_BAD_REPLY;
	}
	obj = llm_parse_content(json_string_value(content));
	json_decref(root);
	if (obj == NULL)
	{
		LibSetError(err, errlen, "LLM message content is not a JSON object");
		return LLM_BAD_REPLY;
	}
	picks = json_object_get(obj, "picks");
	if (!json_is_array(picks))
	{
		json_decref(obj);
		LibSetError(err, errlen, "LLM message content has no \"picks\" array");
		return LLM_BAD_REPLY;
	}
	for (i = 0; i < json_array_size(picks) && res->npicks < req->n_wanted; i++)
	{
		json_t	   *pick = json_array_get(picks, i);
		int64_t		id;
		int			known = 0;
		int			dup = 0;
		int			j;

		if (llm_pick_id(pick, &id) == 0)
			for (j = 0; j < req->ncandidates && !known; j++)
				known = (req->candidates[j].movie_id == id);
		if (!known)
		{
			res->dropped_unknown++;
			continue;
		}
		for (j = 0; j < res->npicks && !dup; j++)
			dup = (res->picks[j].movie_id == id);
		if (dup)
		{
			res->dropped_duplicate++;
			continue;
		}
		res->picks[res->npicks].movie_id = id;
		llm_copy_reason(res->picks[res->npicks].reason, sizeof(res->picks[0].reason),
						json_string_value(json_object_get(pick, "reason")));
		res->npicks++;
	}
	json_decref(obj);
	if (res->npicks == 0)
	{
		LibSetError(err, errlen, "LLM reply picked no candidate (%d unknown id(s), %d duplicate(s))",
					res->dropped_unknown, res->dropped_duplicate);
		return LLM_BAD_REPLY;
	}
	return LLM_OK;
}

/*
 * Parse the message content as a JSON object; tolerate text around it (a Markdown
 * fence, say) by trying the span from the first '{' to the last '}'.
 */
static json_t *
llm_parse_content(const char *content)
{
	json_t	   *obj;
	const char *open;
	const char *close;

	obj = json_loads(content, 0, NULL);
	if (obj == NULL)
	{
		open = strchr(content, '{');
		close = strrchr(content, '}');
		if (open != NULL && close != NULL && close > open)
			obj = json_loadb(open, close - open + 1, 0, NULL);
	}
	if (obj != NULL && !json_is_object(obj))
	{
		json_decref(obj);
		obj = NULL;
	}
	return obj;
}

/* Read a pick's movie_id (an integer, or a string of digits); 0 on success. */
static int
llm_pick_id(json_t *pick, int64_t *id)
{
	json_t	   *v = json_is_object(pick) ? json_object_get(pick, "movie_id") : NULL;

	if (json_is_integer(v))
	{
		*id = (int64_t) json_integer_value(v);
		return 0;
	}
	if (json_is_real(v) && json_real_value(v) == (double) (int64_t) json_real_value(v))
	{
		*id = (int64_t) json_real_value(v);
		return 0;
	}
	if (json_is_string(v))
	{
		const char *s = json_string_value(v);
		char	   *end;
		long long	n;

		n = strtoll(s, &end, 10);
		if (end != s && *end == '\0')
		{
			*id = (int64_t) n;
			return 0;
		}
	}
	return -1;
}

/*
 * Copy a reason: whitespace trimmed, control characters as spaces, cut at a UTF-8
 * character boundary to fit dstlen - 1 bytes ("" when src is NULL).
 */
static void
llm_copy_reason(char *dst, size_t dstlen, const char *src)
{
	const unsigned char *p = (const unsigned char *) (src ? src : "");
	size_t		avail;
	size_t		len = 0;

	while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
		p++;
	avail = strlen((const char *) p);
	while (avail > 0)
	{
		size_t		n = utf8_seq_len(p, avail);

		if (n == 0)
			break;				/* jansson strings are valid UTF-8: cannot happen */
		if (len + n > dstlen - 1)
			break;
		if (n == 1 && (*p < 0x20 || *p == 0x7f))
			dst[len] = ' ';
		else
			memcpy(dst + len, p, n);
		len += n;
		p += n;
		avail -= n;
	}
	while (len > 0 && dst[len - 1] == ' ')
		len--;
	dst[len] = '\0';
}

/* Summarise an error reply: OpenAI's error.message, or the start of the body. */
static void
llm_error_detail(const LlmBuf *reply, char *out, size_t outlen)
{
	json_t	   *root;
	json_t	   *msg;
	LlmBuf		clean = {0};

	out[0] = '\0';
	if (reply->data == NULL || reply->len == 0)
		return;
	root = json_loadb(reply->data, reply->len, 0, NULL);
	msg = json_object_get(json_object_get(root, "error"), "message");
	if (json_is_string(msg))
		llm_append_clean(&clean, json_string_value(msg), 0);
	else
	{
		char		head[200];
		size_t		n = reply->len < sizeof(head) - 1 ? reply->len : sizeof(head) - 1;

		memcpy(head, reply->data, n);
		head[n] = '\0';
		llm_append_clean(&clean, head, 0);
	}
	json_decref(root);
	if (clean.data)
		llm_copy_reason(out, outlen, clean.data);
	free(clean.data);
}

/* Replace every occurrence of secret in err by "***". */
static void
llm_scrub(char *err, const char *secret)
{
	size_t		slen = strlen(secret);
	char	   *hit;

	if (err == NULL || slen == 0)
		return;
	while ((hit = strstr(err, secret)) != NULL)
	{
		memmove(hit + 3, hit + slen, strlen(hit + slen) + 1);
		memcpy(hit, "***", 3);
	}
}

/* Append n bytes to b (keeping it NUL-terminated), or mark it failed. */
static void
buf_append(LlmBuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap * 2 : 4096;
		char	   *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->data, cap);
		if (p == NULL)
		{
			b->failed = 1;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

/* Append a formatted string to b. */
static void
buf_appendf(LlmBuf *b, const char *fmt,...)
{
	char		tmp[256];
	char	   *big;
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
	{
		b->failed = 1;
		return;
	}
	if ((size_t) n < sizeof(tmp))
	{
		buf_append(b, tmp, n);
		return;
	}
	big = malloc(n + 1);
	if (big == NULL)
	{
		b->failed = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, n + 1, fmt, ap);
	va_end(ap);
	buf_append(b, big, n);
	free(big);
}

/* libcurl write callback: collect the body, up to LLM_MAX_REPLY bytes. */
static size_t
llm_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	LlmTransfer *t = arg;
	size_t		n = size * nmemb;

	if (t->body.len + n > LLM_MAX_REPLY)
		t->body.failed = 1;
	buf_append(&t->body, ptr, n);
	return t->body.failed ? 0 : n;
}

/* libcurl header callback: note Retry-After (a new response starts afresh). */
static size_t
llm_header_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	LlmTransfer *t = arg;
	size_t		n = size * nmemb;
	static const char name[] = "retry-after:";

	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0)
		t->retry_after[0] = '\0';
	else if (n > sizeof(name) - 1 && strncasecmp(ptr, name, sizeof(name) - 1) == 0)
	{
		const char *v = ptr + sizeof(name) - 1;
		size_t		vlen = n - (sizeof(name) - 1);
		size_t		k = 0;

		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (k < vlen && k < sizeof(t->retry_after) - 1 && v[k] >= 0x21 && v[k] <= 0x7e)
		{
			t->retry_after[k] = v[k];
			k++;
		}
		t->retry_after[k] = '\0';
	}
	return n;
}

/* libcurl progress callback: abort the transfer when the caller's interrupt fires. */
static int
llm_progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow,
				curl_off_t ultotal, curl_off_t ulnow)
{
	LlmTransfer *t = arg;

	if (t->req->interrupt && t->req->interrupt(t->req->interrupt_arg))
		t->interrupted = 1;
	return t->interrupted;
}

/*
 * Return the length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there
 * are not one (overlong forms, surrogates and code points above U+10FFFF included).
 */
static size_t
utf8_seq_len(const unsigned char *s, size_t avail)
{
	size_t		n;
	size_t		i;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (avail < n)
		return 0;
	for (i = 1; i < n; i++)
	{
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		(cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}
