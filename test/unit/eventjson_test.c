/*
 * eventjson_test.c: the event validator (src/eventjson.c), both paths: the producers'
 * exact layout (fast path) and anything else (jansson).  TAP output; run it under
 * valgrind with test/unit/s3_run.sh's VALGRIND=1 or directly.
 */
#include <stdio.h>
#include <string.h>

#include "eventjson.h"

static int	n = 0,
			failed = 0;

static void
check(const char *value, const char *key, int expect_ok, const char *reason_part, const char *name)
{
	EventRecord ev;
	char		reason[256] = "";
	int			rc = EventParse(value, value ? strlen(value) : 0, key, key ? strlen(key) : 0,
								&ev, reason, sizeof(reason));
	int			good = expect_ok ? rc == 0 : (rc != 0 && strstr(reason, reason_part) != NULL);

	n++;
	if (!good)
		failed++;
	printf("%sok %d - %s\n", good ? "" : "not ", n, name);
	if (!good)
		printf("# rc %d reason '%s'\n", rc, reason);
}

int
main(void)
{
	EventRecord ev;
	char		reason[256];
	const char *v = "{\"event_id\":10000000042,\"user_id\":17,\"movie_id\":3,\"rating\":4.5,\"ts\":1700000000}";

	check(v, "17", 1, NULL, "producer layout");
	n++;
	if (EventParse(v, strlen(v), "17", 2, &ev, reason, sizeof(reason)) == 0 &&
		ev.event_id == 10000000042LL && ev.user_id == 17 && ev.movie_id == 3 && ev.halves == 9 &&
		ev.ts == 1700000000)
		printf("ok %d - fields read\n", n);
	else
	{
		failed++;
		printf("not ok %d - fields read\n", n);
	}
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":5,\"ts\":-5}", "2", 1, NULL, "integer rating, negative ts");
	check("{ \"ts\": 1, \"rating\": 0.5, \"movie_id\": 3, \"user_id\": 2, \"event_id\": 1 }", "2", 1, NULL, "any order and spacing (jansson)");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":4.50,\"ts\":1e3}", "2", 1, NULL, "4.50 and 1e3 (jansson)");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":4.5,\"ts\":1}x", "2", 0, "not JSON", "trailing garbage");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":4.5,\"ts\":1", "2", 0, "not JSON", "truncated");
	check("[1,2,3]", "2", 0, "not a JSON object", "an array");
	/* tombstones of recsys_forget */
	check("{\"event_id\":9,\"user_id\":2,\"forget\":true,\"ts\":1700000000}", "2", 1, NULL, "a tombstone");
	{
		const char *t = "{\"event_id\":9,\"user_id\":2,\"forget\":true,\"ts\":1700000000}";

		int			good = EventParse(t, strlen(t), "2", 1, &ev, reason, sizeof(reason)) == 0 &&
			ev.forget == 1 && ev.movie_id == 0 && ev.halves == 0 && ev.ts == 1700000000;

		n++;
		if (!good)
			failed++;
		printf("%sok %d - a tombstone: forget set, no movie, no rating\n", good ? "" : "not ", n);
	}
	check("{\"event_id\":9,\"user_id\":2,\"forget\":false,\"ts\":1}", "2", 0, "forget must be true", "forget false");
	check("{\"event_id\":9,\"user_id\":2,\"forget\":true,\"movie_id\":3,\"rating\":4,\"ts\":1}", "2", 0,
		  "no movie_id or rating", "a tombstone with a rating");
	check("{\"event_id\":9,\"user_id\":2,\"forget\":true,\"ts\":1}", "3", 0, "key", "a tombstone whose key is another user");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":4.25,\"ts\":1}", "2", 0, "rating", "rating not in 0.5 steps");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":5.5,\"ts\":1}", "2", 0, "rating", "rating above 5 (fast path)");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":0,\"ts\":1}", "2", 0, "rating", "rating 0");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":\"4\",\"ts\":1}", "2", 0, "rating", "rating as a string");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":4,\"ts\":1.5}", "2", 0, "ts", "fractional ts");
	check("{\"event_id\":0,\"user_id\":2,\"movie_id\":3,\"rating\":4,\"ts\":1}", "2", 0, "positive", "event_id 0");
	check("{\"event_id\":1,\"user_id\":2,\"rating\":4,\"ts\":1}", "2", 0, "movie_id", "movie_id missing");
	check("{\"event_id\":1,\"user_id\":2,\"user_id\":2,\"movie_id\":3,\"rating\":4,\"ts\":1}", "2", 0, "not JSON", "duplicate member");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":4.5,\"ts\":1}", "3", 0, "key does not match", "key is another user");
	check("{\"event_id\":1,\"user_id\":2,\"movie_id\":3,\"rating\":4.5,\"ts\":1}", NULL, 0, "no key", "no key");
	check(NULL, "2", 0, "no value", "no value");
	check("{\"event_id\":01,\"user_id\":2,\"movie_id\":3,\"rating\":4.5,\"ts\":1}", "2", 0, "not JSON", "leading zero (invalid JSON)");
	check("{\"event_id\":123456789012345678901,\"user_id\":2,\"movie_id\":3,\"rating\":4.5,\"ts\":1}", "2", 0, "", "id beyond 64 bits");
	check("", "2", 0, "not JSON", "empty value");
	printf("1..%d\n", n);
	return failed ? 1 : 0;
}
