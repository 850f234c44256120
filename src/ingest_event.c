/*
 * ingest_event.c: validate a rating row and write its event (plain C; see
 * ingest_event.h).  This is the hot path of ingestion: no allocation, no locale, no
 * printf for the event itself (a few hand-written integer conversions), so that a
 * row costs well under a microsecond.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ingest_event.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the last second accepted, either way it is written: 9999-12-31 23:59:59 UTC */
#define TS_MAX		INT64_C(253402300799)

static int	put_int(char *dst, int64_t v);
static bool parse_digits(const char **p, int n, int *out);

/* Parse a positive integer id. */
bool
IngestParseId(const char *s, int64_t *out)
{
	int64_t		v = 0;
	int			n = 0;

	for (; *s; s++, n++)
	{
		if (*s < '0' || *s > '9' || n >= 18)
			return false;
		v = v * 10 + (*s - '0');
	}
	if (n == 0 || v <= 0)
		return false;
	*out = v;
	return true;
}

/* Read exactly n digits at *p. */
static bool
parse_digits(const char **p, int n, int *out)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* Parse epoch seconds, or YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|(+|-)HH[:MM]]. */
bool
IngestParseTimestamp(const char *s, int64_t *out)
{
	const char *p = s;
	int			y,
				mo,
				d,
				h = 0,
				mi = 0,
				sec = 0;
	int64_t		offset = 0;
	struct tm	tm;
	time_t		t;

	if (*s == '\0')
		return false;
	if (s[0] >= '0' && s[0] <= '9' && !(strnlen(s, 5) == 5 && s[4] == '-'))
	{
		/* epoch seconds: digits only, 0 .. year 9999 */
		int64_t		v = 0;

		for (; *p; p++)
		{
			if (*p < '0' || *p > '9' || p - s >= 12)
				return false;
			v = v * 10 + (*p - '0');
		}
		if (v > TS_MAX)
			return false;
		*out = v;
		return true;
	}
	if (!parse_digits(&p, 4, &y) || *p++ != '-' || !parse_digits(&p, 2, &mo) ||
		*p++ != '-' || !parse_digits(&p, 2, &d))
		return false;
	if (*p == 'T' || *p == ' ')
	{
		p++;
		if (!parse_digits(&p, 2, &h) || *p++ != ':' || !parse_digits(&p, 2, &mi))
			return false;
		if (*p == ':')
		{
			p++;
			if (!parse_digits(&p, 2, &sec))
				return false;
			if (*p == '.' || *p == ',')
			{
				p++;
				if (*p < '0' || *p > '9')
					return false;
				while (*p >= '0' && *p <= '9')
					p++;		/* fractions of a second are dropped */
			}
		}
	}
	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		int			sign = *p == '-' ? -1 : 1;
		int			oh,
					om = 0;

		p++;
		if (!parse_digits(&p, 2, &oh))
			return false;
		if (*p == ':')
			p++;
		if (*p && !parse_digits(&p, 2, &om))
			return false;
		if (oh > 23 || om > 59)
			return false;
		offset = sign * (oh * 3600 + om * 60);
	}
	if (*p != '\0')
		return false;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return false;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec == 60 ? 59 : sec;
	t = timegm(&tm);
	/* timegm normalises 31 February into March: refuse such dates */
	if (tm.tm_mday != d || tm.tm_mon != mo - 1)
		return false;
	t -= offset;
	/* an offset may move the date out of range (1970-01-01 00:00+01, 9999-12-31 23:59-23:59) */
	if (t < 0 || (int64_t) t > TS_MAX)
		return false;
	*out = (int64_t) t;
	return true;
}

/* Validate one row. */
bool
IngestParseRating(const char *user, const char *movie, const char *rating,
				  const char *ts, IngestRating *out, char *reason, size_t reasonlen)
{
	char	   *end;
	double		r;

	if (!IngestParseId(user, &out->user_id))
	{
		snprintf(reason, reasonlen, "userId is not a positive integer");
		return false;
	}
	if (!IngestParseId(movie, &out->movie_id))
	{
		snprintf(reason, reasonlen, "movieId is not a positive integer");
		return false;
	}
	/* fast path for the usual "d" and "d.d" */
	if (rating[0] >= '0' && rating[0] <= '9' &&
		(rating[1] == '\0' ||
		 (rating[1] == '.' && rating[2] >= '0' && rating[2] <= '9' && rating[3] == '\0')))
	{
		int			tenths = (rating[0] - '0') * 10 + (rating[1] ? rating[2] - '0' : 0);

		if (tenths < 5 || tenths > 50 || tenths % 5 != 0)
		{
			snprintf(reason, reasonlen, "rating %.10s is not between 0.5 and 5 in steps of 0.5", rating);
			return false;
		}
		out->halves = tenths / 5;
	}
	else
	{
		r = strtod(rating, &end);
		if (end == rating || *end != '\0' || !isfinite(r) ||
			strpbrk(rating, "xXnNiI") != NULL)
		{
			snprintf(reason, reasonlen, "rating is not a number");
			return false;
		}
		if (r < 0.5 || r > 5 || r * 2 != floor(r * 2))
		{
			snprintf(reason, reasonlen, "rating %.10s is not between 0.5 and 5 in steps of 0.5", rating);
			return false;
		}
		out->halves = (int) (r * 2);
	}
	if (!IngestParseTimestamp(ts, &out->ts))
	{
		snprintf(reason, reasonlen, "timestamp is neither epoch seconds nor an ISO 8601 date-time");
		return false;
	}
	return true;
}

/* Write an integer in decimal; return its length. Two digits per division. */
static int
put_int(char *dst, int64_t v)
{
	static const char digits2[] =
		"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
		"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
		"8081828384858687888990919293949596979899";
	char		tmp[24];
	char	   *t = tmp + sizeof(tmp);
	uint64_t	u;
	int			n;

	if (v < 0)
	{
		*dst++ = '-';
		return 1 + put_int(dst, -v);
	}
	u = (uint64_t) v;
	while (u >= 100)
	{
		unsigned	r = (unsigned) (u % 100);

		u /= 100;
		t -= 2;
		t[0] = digits2[2 * r];
		t[1] = digits2[2 * r + 1];
	}
	if (u >= 10)
	{
		t -= 2;
		t[0] = digits2[2 * u];
		t[1] = digits2[2 * u + 1];
	}
	else
		*--t = (char) ('0' + u);
	n = (int) (tmp + sizeof(tmp) - t);
	memcpy(dst, t, n);
	return n;
}

/* Write the key. */
int
IngestFormatKey(char *key, const IngestRating *r)
{
	int			n = put_int(key, r->user_id);

	key[n] = '\0';
	return n;
}

#define PUT_LIT(dst, lit) (memcpy((dst), (lit), sizeof(lit) - 1), (int) sizeof(lit) - 1)

/* Write the event JSON. */
int
IngestFormatValue(char *value, int64_t event_id, const IngestRating *r)
{
	char	   *p = value;

	p += PUT_LIT(p, "{\"event_id\":");
	p += put_int(p, event_id);
	p += PUT_LIT(p, ",\"user_id\":");
	p += put_int(p, r->user_id);
	p += PUT_LIT(p, ",\"movie_id\":");
	p += put_int(p, r->movie_id);
	p += PUT_LIT(p, ",\"rating\":");
	*p++ = (char) ('0' + r->halves / 2);
	*p++ = '.';
	*p++ = (r->halves % 2) ? '5' : '0';
	p += PUT_LIT(p, ",\"ts\":");
	p += put_int(p, r->ts);
	*p++ = '}';
	*p = '\0';
	return (int) (p - value);
}

/* Copy text, escaping bytes that cannot be stored in a UTF-8 database. */
char *
IngestSanitize(char *dst, const char *s, size_t len, size_t maxlen)
{
	const unsigned char *u = (const unsigned char *) s;
	char	   *o = dst;
	size_t		i = 0;

	if (len > maxlen)
		len = maxlen;
	while (i < len)
	{
		unsigned char c = u[i];
		int			n = 0;

		if (c >= 0x01 && c < 0x80)
			n = 1;
		else if (c >= 0xC2 && c <= 0xDF)
			n = 2;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 3;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 4;
		if (n > 1)
		{
			int			k;

			if (i + n > len)
				n = 0;
			for (k = 1; n && k < n; k++)
				if ((u[i + k] & 0xC0) != 0x80)
					n = 0;
			if (n == 3 && ((c == 0xE0 && u[i + 1] < 0xA0) || (c == 0xED && u[i + 1] > 0x9F)))
				n = 0;
			if (n == 4 && ((c == 0xF0 && u[i + 1] < 0x90) || (c == 0xF4 && u[i + 1] > 0x8F)))
				n = 0;
		}
		if (n == 0)
		{
			o += sprintf(o, "\\x%02X", c);
			i++;
		}
		else
		{
			memcpy(o, u + i, n);
			o += n;
			i += n;
		}
	}
	*o = '\0';
	return dst;
}
