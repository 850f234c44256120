/*
 * fuzz_event.c: libFuzzer target for the event parser (src/eventjson.c), which the
 * archiver runs on every message it reads from the log.
 *
 * The input is "key\nvalue" (without '\n': a value with no key).  eventjson.c is
 * included, so its static fast path can be checked against jansson: whatever the
 * byte-for-byte fast path accepts (with a rating in range: the fast path leaves that
 * check to EventParse), jansson must accept as the same event (the file's own claim).  An accepted event must be in range and survive a round trip through
 * IngestFormatValue, the producers' writer.
 */
#include "../../src/eventjson.c"

#include "ingest_event.h"

#include <stdint.h>
#include <stdlib.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with a message: libFuzzer keeps the input as a crash. */
static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_event: %s: %s\n", what, detail ? detail : "");
	abort();
}

/* Parse one message both ways. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *) data;
	const char *nl = memchr(d, '\n', size);
	const char *key = NULL;
	size_t		keylen = 0;
	const char *value = d;
	size_t		len = size;
	char	   *v;
	EventRecord fast,
				slow,
				ev;
	char		reason[256];

	if (nl != NULL)
	{
		key = d;
		keylen = nl - d;
		value = nl + 1;
		len = size - keylen - 1;
	}
	/* a copy of exactly len bytes, so that ASan sees any read past the end */
	v = malloc(len ? len : 1);
	memcpy(v, value, len);

	memset(&fast, 0, sizeof(fast));
	memset(&slow, 0, sizeof(slow));
	if (fast_parse(v, len, &fast))
	{
		/* the fast path leaves the rating's range to EventParse; jansson checks it */
		int			slow_rc = slow_parse(v, len, &slow, reason, sizeof(reason));

		if (fast.halves < 1 || fast.halves > 10)
		{
			if (slow_rc == 0)
				fail("jansson accepts a rating out of range", NULL);
		}
		else if (slow_rc != 0)
			fail("the fast path accepts what jansson refuses", reason);
		else if (fast.event_id != slow.event_id || fast.user_id != slow.user_id ||
				 fast.movie_id != slow.movie_id || fast.ts != slow.ts ||
				 fast.halves != slow.halves)
			fail("the fast path and jansson read different events", NULL);
	}

	if (EventParse(v, len, key, keylen, &ev, reason, sizeof(reason)) == 0 && ev.forget)
	{
		/* a tombstone (recsys_forget): ids in range, no movie, no rating */
		if (ev.event_id <= 0 || ev.user_id <= 0 || ev.movie_id != 0 || ev.halves != 0)
			fail("accepted tombstone out of range", NULL);
	}
	else if (EventParse(v, len, key, keylen, &ev, reason, sizeof(reason)) == 0)
	{
		IngestRating r;
		char		out[INGEST_VALUE_MAX];
		int			n;
		EventRecord back;
		char		kbuf[32];
		int			kl;

		if (ev.event_id <= 0 || ev.user_id <= 0 || ev.movie_id <= 0 || ev.halves < 1 ||
			ev.halves > 10)
			fail("accepted event out of range", NULL);
		r.user_id = ev.user_id;
		r.movie_id = ev.movie_id;
		r.halves = ev.halves;
		r.ts = ev.ts;
		n = IngestFormatValue(out, ev.event_id, &r);
		kl = snprintf(kbuf, sizeof(kbuf), "%lld", (long long) ev.user_id);
		if (n >= INGEST_VALUE_MAX)
			fail("event too long for the writer's buffer", NULL);
		if (EventParse(out, n, kbuf, kl, &back, reason, sizeof(reason)) != 0 ||
			back.event_id != ev.event_id || back.user_id != ev.user_id ||
			back.movie_id != ev.movie_id || back.halves != ev.halves || back.ts != ev.ts)
			fail("round trip through IngestFormatValue changes the event", out);
	}
	free(v);
	return 0;
}
