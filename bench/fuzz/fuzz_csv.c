/*
 * fuzz_csv.c: libFuzzer target for the CSV reader (src/csvreader.c).
 *
 * The input is the whole file.  It is written to a memfd and read through
 * /proc/self/fd/N, so every run goes through CsvReaderOpen's checks.  The target is
 * built with a tiny read buffer and record limit (CSV_BUFSIZE, CSV_MAX_RECORD, see the
 * Makefile), so that lines across buffer boundaries, over-long records, skipping and
 * the re-reads after an unterminated quote are reached by small inputs.  Besides what
 * the sanitizers catch, it checks the reader's promises and aborts when one breaks:
 * records come in strictly increasing line order (none twice), no usable field holds
 * a NUL byte, the raw text is bounded, every byte is consumed, no read error.
 */
#define _GNU_SOURCE
#include "csvreader.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with a message: libFuzzer keeps the input as a crash. */
static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_csv: %s: %s\n", what, detail ? detail : "");
	abort();
}

/* Run the reader over one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	fd = -1;
	static char path[64];
	static const char *const names[] = {"userId", "movieId", "rating", "timestamp"};
	char		err[512];
	int			idx[4];
	CsvReader  *r;
	CsvRecord  *rec;
	int			rc;
	int64_t		last = 0;
	int64_t		nlines = 1;
	size_t		i;

	if (fd < 0)
	{
		fd = memfd_create("fuzz_csv", 0);
		if (fd < 0)
			fail("memfd_create", NULL);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t) size)
		fail("write", NULL);
	for (i = 0; i < size; i++)
		nlines += data[i] == '\n';

	r = CsvReaderOpen(path, err, sizeof(err));
	if (r == NULL)
		fail("open", err);
	/* the header may be refused (empty, a NUL byte, a duplicate...): read on anyway */
	(void) CsvReaderHeader(r, 4, names, idx, err, sizeof(err));
	while ((rc = CsvReaderNext(r, &rec, err, sizeof(err))) == 1)
	{
		int			f;

		if (rec->line <= last || rec->line > nlines)
			fail("record line out of order or beyond the file", rec->error);
		last = rec->line;
		if (rec->raw_len > CSV_RAW_MAX || rec->raw[rec->raw_len] != '\0')
			fail("raw text too long or not terminated", NULL);
		if (rec->error != NULL)
		{
			if (strlen(rec->error) >= CSV_ERROR_MAX)
				fail("error text too long", rec->error);
			continue;
		}
		for (f = 0; f < rec->nfields; f++)
			if (strlen(rec->fields[f]) != rec->lens[f] || rec->lens[f] > CSV_MAX_RECORD)
				fail("a usable field holds a NUL byte or is too long", NULL);
		if (rec->utf8_ok)
			for (f = 0; f < rec->nfields; f++)
				if (!CsvValidUtf8(rec->fields[f], rec->lens[f]))
					fail("record flagged valid UTF-8 is not", NULL);
	}
	if (rc < 0)
		fail("read error", err);
	if (CsvReaderBytesRead(r) != CsvReaderSize(r))
	{
		snprintf(err, sizeof(err), "%lld of %lld", (long long) CsvReaderBytesRead(r),
				 (long long) CsvReaderSize(r));
		fail("not every byte consumed", err);
	}
	CsvReaderClose(r);
	return 0;
}
