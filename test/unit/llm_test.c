/*
 * llm_test.c: checks of src/llm.c against the project's LLM test server.
 *
 *   eval "$(test/stack.sh env)"      # LLM_ENDPOINT and LLM_API_KEY
 *   test/unit/bin/llm_test [--no-slow]
 *
 * Sets the server's mode through its control API (test/llm_server.py) and checks each
 * outcome: the re-ranked order and reasons, every fault mode's code, the dropped
 * counts, a wrong key refused and counted by the server, the interrupt callback, the
 * key never in a message. --no-slow skips the two checks that wait on a slow server
 * (the valgrind run). Prints TAP; leaves the server in mode "ok" with its counts reset.
 */
#include "llm.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "tap.h"

#define NCAND 8

static const char *endpoint;
static const char *api_key;
static char control_base[512];
static int	key_leaked = 0;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t
collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
	char	  **out = arg;
	size_t		old = *out ? strlen(*out) : 0;
	char	   *p = realloc(*out, old + size * nmemb + 1);

	if (p == NULL)
		return 0;
	memcpy(p + old, ptr, size * nmemb);
	p[old + size * nmemb] = '\0';
	*out = p;
	return size * nmemb;
}

/* GET (body NULL) or POST a control URL of the test server; return the parsed reply. */
static json_t *
control(const char *path, const char *body)
{
	CURL	   *h = curl_easy_init();
	char		url[600];
	char	   *out = NULL;
	json_t	   *j = NULL;
	long		status = 0;

	snprintf(url, sizeof(url), "%s%s", control_base, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	if (status == 200 && out)
		j = json_loads(out, 0, NULL);
	free(out);
	return j;
}

static int
set_mode(const char *mode)
{
	char		body[128];
	json_t	   *j;
	int			okay;

	snprintf(body, sizeof(body), "{\"mode\": \"%s\"}", mode);
	j = control("/control", body);
	okay = j != NULL && strcmp(json_string_value(json_object_get(j, "mode")), mode) == 0;
	json_decref(j);
	return okay;
}

static long
stat_value(const char *name)
{
	json_t	   *j = control("/control/stats", NULL);
	long		v = j ? (long) json_integer_value(json_object_get(j, name)) : -1;

	json_decref(j);
	return v;
}

static double interrupt_at;

static int
interrupt_later(void *arg)
{
	(void) arg;
	return now_ms() >= interrupt_at;
}

static volatile sig_atomic_t got_alarm = 0;

static void
on_alarm(int signo)
{
	(void) signo;
	got_alarm = 1;
}

/* An interrupt flag set by a signal handler, as PostgreSQL's are. */
static int
interrupt_on_signal(void *arg)
{
	(void) arg;
	return got_alarm;
}

/* Note a message that carries the key. */
static void
check_err(const char *err)
{
	if (api_key && api_key[0] && strstr(err, api_key))
		key_leaked++;
	if (strstr(err, "not-the-key-0123456789"))
		key_leaked++;
}

static const char *liked_titles[] = {"Alien", "Heat"};
static char long_title[400];

int
main(int argc, char **argv)
{
	int			slow = !(argc > 1 && strcmp(argv[1], "--no-slow") == 0);
	const char *genres[] = {"Sci-Fi", "Comedy"};
	LlmMovie	liked[2];
	LlmMovie	cand[NCAND];
	LlmPick		picks[10];
	LlmResult	res;
	LlmRequest	req;
	char		err[1024];
	char		what[256];
	int			rc;
	int			i;
	double		t0;

	endpoint = getenv("LLM_ENDPOINT");
	api_key = getenv("LLM_API_KEY");
	if (endpoint == NULL || endpoint[0] == '\0' || api_key == NULL || api_key[0] == '\0')
	{
		printf("# LLM_ENDPOINT and LLM_API_KEY must be set: eval \"$(test/stack.sh env)\"\n");
		ok(0, "the test server's endpoint and key are in the environment");
		return tap_done();
	}
	snprintf(control_base, sizeof(control_base), "%s", endpoint);
	if (strlen(control_base) > 3 && strcmp(control_base + strlen(control_base) - 3, "/v1") == 0)
		control_base[strlen(control_base) - 3] = '\0';
	curl_global_init(CURL_GLOBAL_DEFAULT);

	/* a 300-byte title of 2-byte characters: its reason must be cut on a boundary */
	for (i = 0; i < 150; i++)
		memcpy(long_title + 2 * i, "\xc3\xa9", 2);	/* é */
	long_title[300] = '\0';

	memset(liked, 0, sizeof(liked));
	for (i = 0; i < 2; i++)
	{
		liked[i].movie_id = 1000 + i;
		liked[i].title = liked_titles[i];
		liked[i].year = 1979 + 16 * i;
		liked[i].genres = i == 0 ? "Horror|Sci-Fi" : "Crime|Thriller";
	}
	memset(cand, 0, sizeof(cand));
	for (i = 0; i < NCAND; i++)
	{
		cand[i].movie_id = 10 + i;
		cand[i].title = "Plain Movie";
		cand[i].year = 1990 + i;
		cand[i].genres = "Drama";
		cand[i].score = 1.0 - i * 0.1;
	}
	cand[7].title = "Am\xc3\xa9lie";	/* UTF-8 */
	cand[6].title = "Pipe | and\nnewline";
	cand[6].year = 0;
	cand[6].genres = NULL;
	cand[5].title = long_title;

	memset(&req, 0, sizeof(req));
	req.endpoint = endpoint;
	req.model = "gpt-4o-mini";
	req.api_key = api_key;
	req.timeout_ms = 2000;
	req.favorite_genres = genres;
	req.nfavorite = 2;
	req.liked = liked;
	req.nliked = 2;
	req.candidates = cand;
	req.ncandidates = NCAND;
	req.n_wanted = 5;
	memset(&res, 0, sizeof(res));
	res.picks = picks;

	json_decref(control("/control", "{\"mode\": \"ok\", \"reset_stats\": true}"));
	ok(set_mode("ok") && stat_value("requests") == 0, "the test server answers its control API, counts reset");

	/* ok: the candidates reversed, the first n, with the server's reasons */
	rc = LlmRerank(&req, &res, err, sizeof(err));
	check_err(err);
	ok(rc == LLM_OK && res.http_status == 200, "ok: LLM_OK with HTTP 200");
	if (rc != LLM_OK)
		printf("# rc %d: %s\n", rc, err);
	ok(res.npicks == 5 && picks[0].movie_id == 17 && picks[1].movie_id == 16 &&
	   picks[2].movie_id == 15 && picks[3].movie_id == 14 && picks[4].movie_id == 13,
	   "ok: five picks in the server's order (the candidates reversed)");
	ok(res.dropped_unknown == 0 && res.dropped_duplicate == 0, "ok: nothing dropped");
	ok(strcmp(picks[0].reason, "Picked by the test LLM: Am\xc3\xa9lie") == 0,
	   "ok: the reason comes from the model (UTF-8 title kept)");
	ok(strcmp(picks[1].reason, "Picked by the test LLM: Pipe / and newline") == 0,
	   "ok: '|' and a newline in a title reach the model as '/' and ' ' (no year when 0)");
	ok(strlen(picks[2].reason) <= 255 && strlen(picks[2].reason) >= 250 &&
	   (strlen(picks[2].reason) - strlen("Picked by the test LLM: ")) % 2 == 0 &&
	   strncmp(picks[2].reason, "Picked by the test LLM: \xc3\xa9", 26) == 0,
	   "ok: a long reason is cut to at most 255 bytes on a UTF-8 character boundary");
	ok(strcmp(picks[3].reason, "Picked by the test LLM: Plain Movie") == 0,
	   "ok: the reason names the title without its year");
	{
		json_t	   *last = control("/control/last", NULL);
		json_t	   *r = json_object_get(last, "request");
		const char *user = json_string_value(json_object_get(json_array_get(json_object_get(r, "messages"), 1), "content"));
		const char *sys = json_string_value(json_object_get(json_array_get(json_object_get(r, "messages"), 0), "role"));

		ok(json_integer_value(json_object_get(last, "picks_wanted")) == 5 &&
		   json_array_size(json_object_get(last, "candidates")) == NCAND,
		   "ok: the server read 5 picks wanted and 8 candidates from the prompt");
		ok(sys && strcmp(sys, "system") == 0 && user &&
		   strstr(user, "favourite genres: Sci-Fi, Comedy\n") &&
		   strstr(user, "liked 1000 | Alien (1979) | Horror, Sci-Fi\n") &&
		   strstr(user, "candidate 10 | Plain Movie (1990) | Drama\n") &&
		   strstr(user, "candidate 16 | Pipe / and newline | unknown genres\n"),
		   "ok: the prompt has the system message, favourite genres, liked movies and candidate lines");
		ok(json_real_value(json_object_get(r, "temperature")) == 0.0 &&
		   json_is_number(json_object_get(r, "temperature")) &&
		   strcmp(json_string_value(json_object_get(json_object_get(r, "response_format"), "type")), "json_object") == 0,
		   "ok: temperature 0 and response_format json_object");
		json_decref(last);
	}

	/* fewer candidates than wanted: all of them */
	req.ncandidates = 3;
	rc = LlmRerank(&req, &res, err, sizeof(err));
	ok(rc == LLM_OK && res.npicks == 3 && picks[0].movie_id == 12 && picks[2].movie_id == 10,
	   "ok: with 3 candidates and 5 wanted, the 3 come back reversed");
	{
		json_t	   *last = control("/control/last", NULL);

		ok(json_integer_value(json_object_get(last, "picks_wanted")) == 3,
		   "ok: with 3 candidates, the prompt asks for 3 picks");
		json_decref(last);
	}
	req.ncandidates = NCAND;

	/* invent: unknown ids and a duplicate dropped and counted, valid picks kept */
	ok(set_mode("invent"), "mode invent");
	rc = LlmRerank(&req, &res, err, sizeof(err));
	check_err(err);
	ok(rc == LLM_OK && res.npicks == 3 && picks[0].movie_id == 17 && picks[1].movie_id == 16 &&
	   picks[2].movie_id == 15, "invent: the three valid picks kept in order");
	ok(res.dropped_unknown == 2 && res.dropped_duplicate == 1,
	   "invent: two unknown ids and one duplicate dropped and counted");

	/* the fault modes */
	{
		static const struct
		{
			const char *mode;
			int			rc;
			long		status;
			const char *text;
		}			faults[] = {
			{"429", LLM_HTTP_ERROR, 429, "Retry-After: 1"},
			{"500", LLM_HTTP_ERROR, 500, "HTTP 500"},
			{"badjson", LLM_BAD_REPLY, 200, "not a JSON object"},
			{"nochoices", LLM_BAD_REPLY, 200, "no choices"},
			{"unknown", LLM_BAD_REPLY, 200, "picked no candidate (5 unknown"},
			{"empty", LLM_BAD_REPLY, 200, "picked no candidate (0 unknown"},
		};

		for (i = 0; i < (int) (sizeof(faults) / sizeof(faults[0])); i++)
		{
			set_mode(faults[i].mode);
			rc = LlmRerank(&req, &res, err, sizeof(err));
			check_err(err);
			snprintf(what, sizeof(what), "%s: %s with HTTP %ld, npicks 0, message says so",
					 faults[i].mode, LlmStatusName(faults[i].rc), faults[i].status);
			ok(rc == faults[i].rc && res.http_status == faults[i].status && res.npicks == 0 &&
			   strstr(err, faults[i].text) != NULL, what);
			if (strstr(err, faults[i].text) == NULL)
				printf("# rc %d status %ld: %s\n", rc, res.http_status, err);
		}
	}
	ok(set_mode("ok"), "mode ok again");
	ok(stat_value("rejected") == 0, "the server rejected none of the client's requests");

	/* a wrong key: 401, counted as rejected by the server; neither key in the message */
	req.api_key = "not-the-key-0123456789";
	rc = LlmRerank(&req, &res, err, sizeof(err));
	check_err(err);
	ok(rc == LLM_HTTP_ERROR && res.http_status == 401 && strstr(err, "Incorrect API key"),
	   "a wrong key: LLM_HTTP_ERROR, HTTP 401, the server's message");
	ok(stat_value("rejected") == 1, "a wrong key: the server counted one rejected request");
	req.api_key = NULL;
	rc = LlmRerank(&req, &res, err, sizeof(err));
	ok(rc == LLM_HTTP_ERROR && res.http_status == 401, "no key: HTTP 401");
	req.api_key = api_key;
	req.model = "gpt-4o";
	rc = LlmRerank(&req, &res, err, sizeof(err));
	check_err(err);
	ok(rc == LLM_HTTP_ERROR && res.http_status == 404 && strstr(err, "model"),
	   "a model the server does not serve: HTTP 404 naming the model");
	req.model = "gpt-4o-mini";
	ok(stat_value("rejected") == 3, "the server counted the three refused requests");
	json_decref(control("/control", "{\"reset_stats\": true}"));
	ok(stat_value("rejected") == 0 && stat_value("requests") == 0, "the server's counts reset");

	/* nothing listening: LLM_ERROR, no status */
	req.endpoint = "http://127.0.0.1:1/v1";
	rc = LlmRerank(&req, &res, err, sizeof(err));
	ok(rc == LLM_ERROR && res.http_status == 0 && strstr(err, "127.0.0.1:1"),
	   "nothing listening: LLM_ERROR naming the URL");
	req.endpoint = endpoint;

	/* bad arguments */
	req.n_wanted = 0;
	ok(LlmRerank(&req, &res, err, sizeof(err)) == LLM_ERROR, "n_wanted 0: LLM_ERROR");
	req.n_wanted = 5;
	req.ncandidates = 0;
	ok(LlmRerank(&req, &res, err, sizeof(err)) == LLM_ERROR, "no candidates: LLM_ERROR");
	req.ncandidates = NCAND;

	/* an interrupt that is already set: nothing sent */
	interrupt_at = 0;
	req.interrupt = interrupt_later;
	ok(LlmRerank(&req, &res, err, sizeof(err)) == LLM_INTERRUPTED, "interrupt already set: LLM_INTERRUPTED");
	req.interrupt = NULL;

	if (slow)
	{
		double		elapsed;

		/* slow: the timeout, a little after timeout_ms */
		set_mode("slow");
		req.timeout_ms = 1000;
		t0 = now_ms();
		rc = LlmRerank(&req, &res, err, sizeof(err));
		elapsed = now_ms() - t0;
		check_err(err);
		ok(rc == LLM_TIMEOUT && res.http_status == 0 && strstr(err, "within 1000 ms"),
		   "slow: LLM_TIMEOUT, the message names the timeout");
		ok(elapsed >= 900 && elapsed < 3000, "slow: it returned after about timeout_ms (1 s, margin 2 s)");
		printf("# slow: returned after %.0f ms\n", elapsed);

		/* the interrupt callback stops a slow request within about 100 ms */
		req.timeout_ms = 10000;
		req.interrupt = interrupt_later;
		t0 = now_ms();
		interrupt_at = t0 + 300;
		rc = LlmRerank(&req, &res, err, sizeof(err));
		elapsed = now_ms() - interrupt_at;
		ok(rc == LLM_INTERRUPTED && strstr(err, "interrupted"), "interrupt: LLM_INTERRUPTED");
		ok(elapsed >= 0 && elapsed < 500, "interrupt: returned soon after the callback fired (100 ms polls, margin 500 ms)");
		printf("# interrupt: returned %.0f ms after the callback fired\n", elapsed);
		req.interrupt = NULL;

		/* a signal sets the flag: it reaches this thread during the wait and stops it */
		{
			struct sigaction sa;
			struct itimerval it;
			sigset_t	cur;

			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = on_alarm;
			sigaction(SIGALRM, &sa, NULL);
			memset(&it, 0, sizeof(it));
			it.it_value.tv_usec = 300 * 1000;
			req.interrupt = interrupt_on_signal;
			t0 = now_ms();
			setitimer(ITIMER_REAL, &it, NULL);
			rc = LlmRerank(&req, &res, err, sizeof(err));
			elapsed = now_ms() - t0;
			ok(rc == LLM_INTERRUPTED && got_alarm && elapsed < 800,
			   "a signal during the wait: its handler ran and the request stopped (300 ms, margin 500 ms)");
			printf("# signal: returned after %.0f ms\n", elapsed);
			sigprocmask(SIG_BLOCK, NULL, &cur);
			ok(!sigismember(&cur, SIGALRM) && !sigismember(&cur, SIGINT),
			   "the caller's signal mask is restored");
			req.interrupt = NULL;
		}
		req.timeout_ms = 2000;
		set_mode("ok");

		/* the next call after an aborted one still works */
		rc = LlmRerank(&req, &res, err, sizeof(err));
		ok(rc == LLM_OK && res.npicks == 5 && picks[0].movie_id == 17, "after a timeout and an interrupt, ok again");
	}

	ok(key_leaked == 0, "no message carried the API key");
	ok(stat_value("rejected") == 0, "the server rejected none of the later requests");
	json_decref(control("/control", "{\"mode\": \"ok\", \"reset_stats\": true}"));
	return tap_done();
}
