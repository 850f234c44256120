/*
 * http.h: small libcurl helpers shared by the health check and the LLM client.
 * Plain C; no PostgreSQL headers.
 */
#ifndef RECSYS_HTTP_H
#define RECSYS_HTTP_H

#include <stddef.h>

/*
 * GET url (with "Authorization: Bearer <bearer>" when bearer is not NULL) within
 * timeout_ms. Returns the HTTP status, or -1 with a message in err when no response
 * came. The bearer token never appears in err.
 */
extern long HttpGetStatus(const char *url, const char *bearer, int timeout_ms,
						  char *err, size_t errlen);

#endif							/* RECSYS_HTTP_H */
