/*
 * http.c: libcurl helpers shared by the health check and the LLM client.
 *
 * libcurl may start a resolver thread inside the backend, during the transfer: the
 * whole call runs with every signal blocked (it is short and bounded by its timeout),
 * so PostgreSQL's handlers never run on a library thread; signals that arrive
 * meanwhile are delivered when it returns.
 */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "http.h"
#include "libutil.h"

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata);

/* GET url and return the status code. */
long
HttpGetStatus(const char *url, const char *bearer, int timeout_ms, char *err, size_t errlen)
{
	CURL	   *curl = NULL;
	struct curl_slist *headers = NULL;
	char		errbuf[CURL_ERROR_SIZE] = "";
	sigset_t	mask;
	long		status = -1;
	CURLcode	rc;

	curl = curl_easy_init();
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
	LibBlockSignals(&mask);
	rc = curl_easy_perform(curl);
	LibRestoreSignals(&mask);
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
