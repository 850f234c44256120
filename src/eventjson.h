/*
 * eventjson.h: validation of rating events read from the event log (plain C, jansson).
 *
 * No PostgreSQL header here or in eventjson.c: jansson's json_object() clashes with the
 * server's symbol of that name (see CONVENTIONS.md).
 */
#ifndef RECSYS_EVENTJSON_H
#define RECSYS_EVENTJSON_H

#include <stddef.h>
#include <stdint.h>

typedef struct EventRecord
{
	int64_t		event_id;
	int64_t		user_id;
	int64_t		movie_id;
	int64_t		ts;				/* epoch seconds */
	int			halves;			/* rating * 2: 1 .. 10 (0 for a tombstone) */
	int			forget;			/* 1: a tombstone {"event_id","user_id","forget":true,"ts"}
								 * of recsys_forget; movie_id and halves are 0 */
} EventRecord;

/*
 * Check one message: value must be {"event_id":…,"user_id":…,"movie_id":…,
 * "rating":…,"ts":…} (ids positive integers, rating 0.5 .. 5 in steps of 0.5, ts an
 * integer) and key the user id in decimal (a message without a key is invalid).  0
 * when valid (and *ev filled in), else -1 with the reason in reason.
 */
extern int	EventParse(const char *value, size_t len, const char *key, size_t keylen,
					   EventRecord *ev, char *reason, size_t reasonlen);

/* The same checks of the value alone: an archived line carries no key. */
extern int	EventParseValue(const char *value, size_t len, EventRecord *ev,
							char *reason, size_t reasonlen);

#endif							/* RECSYS_EVENTJSON_H */
