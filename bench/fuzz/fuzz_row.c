/*
 * fuzz_row.c: libFuzzer target for the rating-row validator (src/ingest_event.c).
 *
 * The input is up to four fields separated by '\n' (userId, movieId, rating,
 * timestamp).  A row the validator accepts must be in range (ids positive, rating
 * 0.5 .. 5 in halves, ts 1970 .. 9999) and its event, written by IngestFormatValue,
 * must fit its buffer and be read back by the archiver's parser (EventParse) as the
 * very same rating: the two ends of the event contract agree.  IngestSanitize runs on
 * the whole input and must give valid UTF-8 without NUL bytes, within its bound.
 */
#include "csvreader.h"
#include "eventjson.h"
#include "ingest_event.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TS_MAX		INT64_C(253402300799)
#define SANITIZE_MAX 1000

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with a message: libFuzzer keeps the input as a crash. */
static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_row: %s: %s\n", what, detail ? detail : "");
	abort();
}

/* Validate one row, check its event, sanitize the input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *copy = malloc(size + 1);
	char	   *field[4] = {"", "", "", ""};
	char	   *p = copy;
	int			n = 0;
	IngestRating r;
	char		reason[INGEST_REASON_MAX];
	char	   *clean;
	size_t		cl;

	memcpy(copy, data, size);
	copy[size] = '\0';
	while (n < 4)
	{
		char	   *nl = strchr(p, '\n');

		field[n++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	if (IngestParseRating(field[0], field[1], field[2], field[3], &r, reason, sizeof(reason)))
	{
		char		key[INGEST_KEY_MAX];
		char		value[INGEST_VALUE_MAX];
		char		why[256];
		int			kl,
					vl;
		EventRecord ev;
		int64_t		event_id = INT64_C(999999) * INGEST_EVENT_ID_FACTOR + 9999999999;

		if (r.user_id <= 0 || r.movie_id <= 0 || r.halves < 1 || r.halves > 10 ||
			r.ts < 0 || r.ts > TS_MAX)
			fail("accepted row out of range", field[3]);
		kl = IngestFormatKey(key, &r);
		vl = IngestFormatValue(value, event_id, &r);
		if (kl >= INGEST_KEY_MAX || vl >= INGEST_VALUE_MAX || (int) strlen(value) != vl)
			fail("event too long for its buffer", value);
		if (EventParse(value, vl, key, kl, &ev, why, sizeof(why)) != 0)
			fail("EventParse refuses an event IngestFormatValue wrote", why);
		if (ev.event_id != event_id || ev.user_id != r.user_id || ev.movie_id != r.movie_id ||
			ev.halves != r.halves || ev.ts != r.ts)
			fail("EventParse reads another rating than was written", value);
	}
	else if (strlen(reason) == 0)
		fail("refused without a reason", NULL);

	clean = malloc((size < SANITIZE_MAX ? size : SANITIZE_MAX) * 4 + 1);
	IngestSanitize(clean, (const char *) data, size, SANITIZE_MAX);
	cl = strlen(clean);
	if (cl > (size < SANITIZE_MAX ? size : SANITIZE_MAX) * 4 || !CsvValidUtf8(clean, cl))
		fail("sanitized text is not valid UTF-8 or too long", NULL);
	free(clean);
	free(copy);
	return 0;
}
