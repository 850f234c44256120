/*
 * event_test.c: standalone checks of src/ingest_event.c (row validation, event text).
 *
 *   cc -g -fsanitize=address,undefined -Wall -Wextra -Werror -Isrc -o /tmp/event_test \
 *      test/unit/event_test.c src/ingest_event.c -lm && /tmp/event_test
 */
#include "ingest_event.h"

#include <stdio.h>
#include <string.h>

#include "tap.h"

static int
good(const char *u, const char *m, const char *r, const char *t, const char *expect)
{
	IngestRating x;
	char		reason[INGEST_REASON_MAX],
				value[INGEST_VALUE_MAX];

	if (!IngestParseRating(u, m, r, t, &x, reason, sizeof(reason)))
	{
		printf("# unexpected reject: %s\n", reason);
		return 0;
	}
	IngestFormatValue(value, INT64_C(30000000002), &x);
	if (strcmp(value, expect) != 0)
		printf("# got %s\n", value);
	return strcmp(value, expect) == 0;
}

static int
bad(const char *u, const char *m, const char *r, const char *t, const char *why)
{
	IngestRating x;
	char		reason[INGEST_REASON_MAX];

	if (IngestParseRating(u, m, r, t, &x, reason, sizeof(reason)))
		return 0;
	if (strstr(reason, why) == NULL)
		printf("# reason: %s\n", reason);
	return strstr(reason, why) != NULL;
}

int
main(void)
{
	char		key[INGEST_KEY_MAX],
				buf[64];
	IngestRating x = {42, 7, 9, 0};

	ok(good("1", "31", "2.5", "1260759144",
			"{\"event_id\":30000000002,\"user_id\":1,\"movie_id\":31,\"rating\":2.5,\"ts\":1260759144}"),
	   "epoch row");
	ok(good("007", "1", "5", "2005-04-02 23:53:47",
			"{\"event_id\":30000000002,\"user_id\":7,\"movie_id\":1,\"rating\":5.0,\"ts\":1112486027}"),
	   "ISO date-time read as UTC, leading zeros");
	ok(good("1", "1", "0.5", "2005-04-02T23:53:47.250+02:00",
			"{\"event_id\":30000000002,\"user_id\":1,\"movie_id\":1,\"rating\":0.5,\"ts\":1112478827}"),
	   "ISO with fraction and offset");
	ok(good("1", "1", "4.50", "2000-01-01",
			"{\"event_id\":30000000002,\"user_id\":1,\"movie_id\":1,\"rating\":4.5,\"ts\":946684800}"),
	   "date only, rating 4.50");
	ok(good("1", "1", "3", "0", "{\"event_id\":30000000002,\"user_id\":1,\"movie_id\":1,\"rating\":3.0,\"ts\":0}"),
	   "epoch 0");
	ok(bad("0", "1", "3", "1", "userId"), "user 0");
	ok(bad("-1", "1", "3", "1", "userId"), "negative user");
	ok(bad("1.5", "1", "3", "1", "userId"), "fractional user");
	ok(bad("", "1", "3", "1", "userId"), "empty user");
	ok(bad("99999999999999999999", "1", "3", "1", "userId"), "user overflow");
	ok(bad("1", "x", "3", "1", "movieId"), "bad movie");
	ok(bad("1", "1", "0", "1", "between 0.5 and 5"), "rating 0");
	ok(bad("1", "1", "5.5", "1", "between 0.5 and 5"), "rating 5.5");
	ok(bad("1", "1", "4.2", "1", "steps of 0.5"), "rating 4.2");
	ok(bad("1", "1", "-1", "1", "between"), "rating -1");
	ok(bad("1", "1", "nan", "1", "not a number"), "rating nan");
	ok(bad("1", "1", "0x4", "1", "not a number"), "rating hex");
	ok(bad("1", "1", "", "1", "not a number"), "rating empty");
	ok(bad("1", "1", "3", "", "timestamp"), "empty timestamp");
	ok(bad("1", "1", "3", "-5", "timestamp"), "negative timestamp");
	ok(bad("1", "1", "3", "12ab", "timestamp"), "garbage timestamp");
	ok(bad("1", "1", "3", "2005-02-30 10:00:00", "timestamp"), "31 February");
	ok(bad("1", "1", "3", "2005-04-02 25:00:00", "timestamp"), "hour 25");
	ok(bad("1", "1", "3", "2005-04-02 23:53:47 UTC", "timestamp"), "trailing text");
	ok(bad("1", "1", "3", "99999999999999", "timestamp"), "epoch beyond year 9999");
	ok(bad("1", "1", "3", "253402300800", "timestamp"), "epoch 10000-01-01 refused");
	ok(good("1", "1", "3", "253402300799",
			"{\"event_id\":30000000002,\"user_id\":1,\"movie_id\":1,\"rating\":3.0,\"ts\":253402300799}"),
	   "epoch 9999-12-31 23:59:59 accepted");
	ok(good("1", "1", "3", "9999-12-31T23:59:59Z",
			"{\"event_id\":30000000002,\"user_id\":1,\"movie_id\":1,\"rating\":3.0,\"ts\":253402300799}"),
	   "ISO 9999-12-31 23:59:59Z accepted, the same last second");
	ok(bad("1", "1", "3", "9999-12-31T23:59:59-23:59", "timestamp"),
	   "ISO with an offset that reaches year 10000 refused, as the epoch value is");
	ok(bad("1", "1", "3", "9999-12-31T00:01-00:00:01", "timestamp"), "offset with seconds refused");
	ok(bad("1", "1", "3", "1970-01-01T00:30+01:00", "timestamp"), "ISO before 1970 UTC refused");
	IngestFormatKey(key, &x);
	ok(strcmp(key, "42") == 0, "key is the user id");
	{
		/* numbers of every length, and around each power of ten, as printf writes them */
		int64_t		samples[] = {0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 12345, 99999,
		100000, 1234567, 9999999999LL, 10000000000LL, 250000000017LL,
		9223372036854775807LL};
		int			mismatches = 0;
		size_t		i;

		for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
		{
			IngestRating r = {samples[i], samples[i], 7, samples[i]};
			char		expect[INGEST_VALUE_MAX],
						value[INGEST_VALUE_MAX];

			snprintf(expect, sizeof(expect),
					 "{\"event_id\":%lld,\"user_id\":%lld,\"movie_id\":%lld,\"rating\":3.5,\"ts\":%lld}",
					 (long long) samples[i], (long long) samples[i], (long long) samples[i],
					 (long long) samples[i]);
			IngestFormatValue(value, samples[i], &r);
			if (strcmp(value, expect) != 0)
			{
				printf("# got %s\n# expected %s\n", value, expect);
				mismatches++;
			}
		}
		ok(mismatches == 0, "integers of every length are written as printf writes them");
	}
	IngestSanitize(buf, "a\xff" "b\0c\xc3\xa9", 7, 100);
	ok(strcmp(buf, "a\\xFFb\\x00c\xc3\xa9") == 0, "sanitize escapes bad bytes and NUL");
	return tap_done();
}
