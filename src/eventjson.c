/*
 * eventjson.c: validation of rating events (see eventjson.h).
 *
 * Design: events are parsed with jansson.  The archiver checks every event it archives
 * (500,000 a second is the target), and jansson costs about 2.5 us an event because it
 * builds a hash table per object, so a fast path comes first: the exact byte layout
 * our own producers write with a format string (IngestFormatValue, recsys_rate):
 *   {"event_id":<int>,"user_id":<int>,"movie_id":<int>,"rating":<d>[.<d>],"ts":<int>}
 * is recognised by a strict byte-for-byte match, which accepts nothing that jansson
 * would reject.  Anything else, any whitespace, order or number format, goes to
 * jansson, which decides.  Both paths then apply the same range checks.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "eventjson.h"

static int	fast_int(const char **p, const char *end, int64_t *out);
static int	fast_lit(const char **p, const char *end, const char *lit, size_t n);
static int	fast_parse(const char *v, size_t len, EventRecord *ev);
static int	slow_parse(const char *v, size_t len, EventRecord *ev, char *reason,
					   size_t reasonlen);
static int	json_int_field(json_t *root, const char *name, int64_t *out);

#define LIT(p, end, s) fast_lit((p), (end), (s), sizeof(s) - 1)

/* Match a literal. */
static int
fast_lit(const char **p, const char *end, const char *lit, size_t n)
{
	if ((size_t) (end - *p) < n || memcmp(*p, lit, n) != 0)
		return 0;
	*p += n;
	return 1;
}

/* Match a JSON integer as our producers write it: -?(0|[1-9][0-9]{0,17}). */
static int
fast_int(const char **p, const char *end, int64_t *out)
{
	const char *s = *p;
	int			neg = 0;
	int64_t		v = 0;
	int			digits = 0;

	if (s < end && *s == '-')
	{
		neg = 1;
		s++;
	}
	if (s >= end || *s < '0' || *s > '9' || (*s == '0' && s + 1 < end && s[1] >= '0' && s[1] <= '9'))
		return 0;
	while (s < end && *s >= '0' && *s <= '9' && digits < 18)
	{
		v = v * 10 + (*s - '0');
		s++;
		digits++;
	}
	if (s < end && *s >= '0' && *s <= '9')
		return 0;				/* too long for the fast path */
	*out = neg ? -v : v;
	*p = s;
	return 1;
}

/* The producers' exact layout; 1 when it matched (ranges not yet checked). */
static int
fast_parse(const char *v, size_t len, EventRecord *ev)
{
	const char *p = v;
	const char *end = v + len;
	int			whole,
				frac = 0;

	if (!LIT(&p, end, "{\"event_id\":") || !fast_int(&p, end, &ev->event_id) ||
		!LIT(&p, end, ",\"user_id\":") || !fast_int(&p, end, &ev->user_id) ||
		!LIT(&p, end, ",\"movie_id\":") || !fast_int(&p, end, &ev->movie_id) ||
		!LIT(&p, end, ",\"rating\":"))
		return 0;
	if (p >= end || *p < '0' || *p > '9')
		return 0;
	whole = *p++ - '0';
	if (p < end && *p == '.')
	{
		p++;
		if (p >= end || (*p != '0' && *p != '5'))
			return 0;
		frac = *p++ == '5';
	}
	if (p < end && ((*p >= '0' && *p <= '9') || *p == 'e' || *p == 'E' || *p == '.'))
		return 0;
	if (!LIT(&p, end, ",\"ts\":") || !fast_int(&p, end, &ev->ts) || !LIT(&p, end, "}") || p != end)
		return 0;
	ev->halves = whole * 2 + frac;
	return 1;
}

/* Read an integer member (an integral real is accepted); 0 when absent or not one. */
static int
json_int_field(json_t *root, const char *name, int64_t *out)
{
	json_t	   *f = json_object_get(root, name);

	if (json_is_integer(f))
	{
		*out = (int64_t) json_integer_value(f);
		return 1;
	}
	if (json_is_real(f))
	{
		double		d = json_real_value(f);

		if (d == floor(d) && fabs(d) < 9e15)
		{
			*out = (int64_t) d;
			return 1;
		}
	}
	return 0;
}

/* Parse any valid JSON with jansson. */
static int
slow_parse(const char *v, size_t len, EventRecord *ev, char *reason, size_t reasonlen)
{
	json_error_t jerr;
	json_t	   *root = json_loadb(v, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t	   *r;
	double		rating;
	const char *bad = NULL;

	if (root == NULL)
	{
		snprintf(reason, reasonlen, "not JSON: %s at byte %d", jerr.text, jerr.position);
		return -1;
	}
	ev->forget = 0;
	if (!json_is_object(root))
		bad = "not a JSON object";
	else if (!json_int_field(root, "event_id", &ev->event_id))
		bad = "event_id missing or not an integer";
	else if (!json_int_field(root, "user_id", &ev->user_id))
		bad = "user_id missing or not an integer";
	else if (json_object_get(root, "forget") != NULL)
	{
		/* a tombstone (recsys_forget): the user's ratings up to ts are gone */
		if (!json_is_true(json_object_get(root, "forget")))
			bad = "forget must be true";
		else if (json_object_get(root, "movie_id") != NULL || json_object_get(root, "rating") != NULL)
			bad = "a forget event carries no movie_id or rating";
		else if (!json_int_field(root, "ts", &ev->ts))
			bad = "ts missing or not an integer";
		else
		{
			ev->forget = 1;
			ev->movie_id = 0;
			ev->halves = 0;
		}
	}
	else if (!json_int_field(root, "movie_id", &ev->movie_id))
		bad = "movie_id missing or not an integer";
	else if (!json_int_field(root, "ts", &ev->ts))
		bad = "ts missing or not an integer";
	else if (!json_is_number(r = json_object_get(root, "rating")))
		bad = "rating missing or not a number";
	else
	{
		rating = json_number_value(r);
		if (!(rating * 2 == floor(rating * 2)) || rating < 0.5 || rating > 5)
			bad = "rating is not between 0.5 and 5 in steps of 0.5";
		else
			ev->halves = (int) (rating * 2);
	}
	json_decref(root);
	if (bad)
	{
		snprintf(reason, reasonlen, "%s", bad);
		return -1;
	}
	return 0;
}

/* Check an event's value alone (an archived line carries no key). */
int
EventParseValue(const char *value, size_t len, EventRecord *ev, char *reason, size_t reasonlen)
{
	if (value == NULL)
	{
		snprintf(reason, reasonlen, "empty message (no value)");
		return -1;
	}
	ev->forget = 0;
	if (!fast_parse(value, len, ev) && slow_parse(value, len, ev, reason, reasonlen) != 0)
		return -1;
	if (ev->forget)
	{
		if (ev->event_id <= 0 || ev->user_id <= 0)
		{
			snprintf(reason, reasonlen, "event_id and user_id must be positive");
			return -1;
		}
		return 0;
	}
	if (ev->event_id <= 0 || ev->user_id <= 0 || ev->movie_id <= 0)
	{
		snprintf(reason, reasonlen, "event_id, user_id and movie_id must be positive");
		return -1;
	}
	if (ev->halves < 1 || ev->halves > 10)
	{
		snprintf(reason, reasonlen, "rating is not between 0.5 and 5 in steps of 0.5");
		return -1;
	}
	return 0;
}

int
EventParse(const char *value, size_t len, const char *key, size_t keylen,
		   EventRecord *ev, char *reason, size_t reasonlen)
{
	char		kbuf[32];
	int			n;

	if (EventParseValue(value, len, ev, reason, reasonlen) != 0)
		return -1;
	if (key == NULL)
	{
		snprintf(reason, reasonlen, "message has no key (the user id)");
		return -1;
	}
	n = snprintf(kbuf, sizeof(kbuf), "%lld", (long long) ev->user_id);
	if ((size_t) n != keylen || memcmp(kbuf, key, keylen) != 0)
	{
		snprintf(reason, reasonlen, "key does not match user_id %lld", (long long) ev->user_id);
		return -1;
	}
	return 0;
}
