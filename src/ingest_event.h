/*
 * ingest_event.h: validation of one rating row and its event text (plain C, no
 * PostgreSQL headers: shared by the ingest worker, the client-side upload path and
 * recsys_rate, and testable alone).
 *
 * Event contract (DESIGN.md): key = user id as decimal text; value =
 * {"event_id":…,"user_id":…,"movie_id":…,"rating":…,"ts":…}, ts in epoch seconds,
 * rating a number with one decimal.
 */
#ifndef RECSYS_INGEST_EVENT_H
#define RECSYS_INGEST_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ingested rows get event_id = job_id * INGEST_EVENT_ID_FACTOR + line number */
#define INGEST_EVENT_ID_FACTOR	INT64_C(10000000000)

#define INGEST_KEY_MAX		24
#define INGEST_VALUE_MAX	160
#define INGEST_REASON_MAX	160

typedef struct IngestRating
{
	int64_t		user_id;
	int64_t		movie_id;
	int			halves;			/* rating * 2, 1..10 */
	int64_t		ts;				/* epoch seconds */
} IngestRating;

/*
 * Parse and validate the four fields (NUL-terminated).  true on success; false with
 * a reason (for recsys.ingest_rejects or an error message) in reason.
 */
extern bool IngestParseRating(const char *user, const char *movie, const char *rating,
							  const char *ts, IngestRating *out,
							  char *reason, size_t reasonlen);

/* Parse a positive integer id (digits only, > 0, fits in int64). */
extern bool IngestParseId(const char *s, int64_t *out);

/*
 * Parse epoch seconds or an ISO 8601 date-time (UTC unless it carries an offset);
 * either way, 1970-01-01 00:00:00 UTC .. 9999-12-31 23:59:59 UTC.
 */
extern bool IngestParseTimestamp(const char *s, int64_t *out);

/* Write the key (user id) into key; return its length. */
extern int	IngestFormatKey(char *key, const IngestRating *r);

/* Write the event JSON into value (INGEST_VALUE_MAX bytes); return its length. */
extern int	IngestFormatValue(char *value, int64_t event_id, const IngestRating *r);

/*
 * Copy at most maxlen bytes of s into dst (room for maxlen * 4 + 1 bytes), replacing
 * invalid UTF-8 and NUL bytes by \xNN, so the text can be stored.  Returns dst.
 */
extern char *IngestSanitize(char *dst, const char *s, size_t len, size_t maxlen);

#endif							/* RECSYS_INGEST_EVENT_H */
