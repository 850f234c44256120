/*
 * http.c: libcurl helpers shared by the health check and the LLM client.
 *
 * libcurl may start a resolver thread inside the backend: handles are created with
 * every signal blocked, so PostgreSQL's handlers never run on a library thread.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "http.h"

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata);
static void create_handle(void *arg);

/* Run fn(arg) with all signals blocked in this thread, then restore the mask. */
void
HttpBlockSignals(void (*fn) (void *), void *arg)
{
	sigset_t	all;
	sigset_t	old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	fn(arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* GET url and return the status code. */
long
HttpGetStatus(const char *url, const char *bearer, int timeout_ms, char *err, size_t errlen)
{
	CURL	   *curl = NULL;
	struct curl_slist *headers = NULL;
	char		errbuf[CURL_ERROR_SIZE] = "";
	long		status = -1;
	CURLcode	rc;

	HttpBlockSignals(create_handle, &curl);
	if (curl == NULL)
	{
		snprintf(err, errlen, "could not create a libcurl handle");
		return -1;
	}
	if (bearer)
	{
		char		auth[1024];

		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
		headers = curl_slist_append(headers, auth);
		memset(auth, 0, sizeof(auth));
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) timeout_ms);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	else
		snprintf(err, errlen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return status;
}

static size_t
discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

static void
create_handle(void *arg)
{
	*(CURL **) arg = curl_easy_init();
}
