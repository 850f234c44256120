/*
 * csv_test.c: standalone checks of src/csvreader.c (run it under ASan or valgrind).
 *
 *   cc -g -fsanitize=address,undefined -Wall -Wextra -Werror -Isrc -o /tmp/csv_test \
 *      test/unit/csv_test.c src/csvreader.c src/libutil.c -lcsv -lpthread
 *   /tmp/csv_test            # TAP on built-in cases
 *   /tmp/csv_test FILE       # count records of FILE and print the speed
 */
#include "csvreader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

static const char *
write_tmp(const char *content, size_t len)
{
	static char path[64];
	FILE	   *f;

	snprintf(path, sizeof(path), "/tmp/csv_test_%d.csv", (int) getpid());
	f = fopen(path, "wb");
	fwrite(content, 1, len, f);
	fclose(f);
	return path;
}

int
main(int argc, char **argv)
{
	char		err[512];
	CsvReader  *r;
	CsvRecord  *rec;
	const char *names[] = {"userId", "movieId", "rating", "timestamp"};
	int			idx[4];
	const char *path;

	if (argc > 1)
	{
		struct timespec t0,
					t1;
		long		n = 0;
		double		s;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		r = CsvReaderOpen(argv[1], err, sizeof(err));
		if (!r)
		{
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		while (CsvReaderNext(r, &rec, err, sizeof(err)) == 1)
			n++;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
		printf("%ld records in %.3f s: %.0f records/s\n", n, s, n / s);
		CsvReaderClose(r);
		return 0;
	}

	/* BOM, CRLF, columns in another order, quotes, blank line */
	{
		const char	data[] = "\xEF\xBB\xBFtimestamp,rating,movieId,userId\r\n"
			"100,4.5,10,1\r\n"
			"\r\n"
			"\"200\",\"3\",\"2\"\"0\",2\r\n"
			"300,1,\"a,b\nc\",3\r\n"
			"400,2,5,4";

		path = write_tmp(data, sizeof(data) - 1);
		r = CsvReaderOpen(path, err, sizeof(err));
		ok(r && CsvReaderHeader(r, 4, names, idx, err, sizeof(err)) == 0, "header read");
		ok(idx[0] == 3 && idx[1] == 2 && idx[2] == 1 && idx[3] == 0, "BOM skipped, columns by name");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->nfields == 4 &&
		   strcmp(rec->fields[0], "100") == 0 && strcmp(rec->fields[3], "1") == 0 &&
		   rec->line == 2 && strcmp(rec->raw, "100,4.5,10,1") == 0, "CRLF record, line 2, raw");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 4 &&
		   strcmp(rec->fields[2], "2\"0") == 0 && strcmp(rec->fields[0], "200") == 0,
		   "blank line skipped, doubled quote, line 4");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 5 &&
		   strcmp(rec->fields[2], "a,b\nc") == 0 && strcmp(rec->fields[3], "3") == 0,
		   "comma and newline inside quotes");
		printf("# raw: [%s]\n", rec->raw);
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 7 &&
		   strcmp(rec->fields[3], "4") == 0, "last record without line end");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 0, "end of file");
		ok(CsvReaderBytesRead(r) == CsvReaderSize(r), "all bytes consumed");
		CsvReaderClose(r);
	}
	/* invalid UTF-8 */
	{
		const char	data[] = "a,b\n1,caf\xC3\xA9\n2,bad\xC3\x28\n3,\xED\xA0\x80\n";

		path = write_tmp(data, sizeof(data) - 1);
		r = CsvReaderOpen(path, err, sizeof(err));
		CsvReaderNext(r, &rec, err, sizeof(err));
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->utf8_ok, "valid UTF-8");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && !rec->utf8_ok, "invalid UTF-8 flagged");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && !rec->utf8_ok, "surrogate flagged");
		CsvReaderClose(r);
	}
	/* errors */
	ok(CsvReaderOpen("/nonexistent/x.csv", err, sizeof(err)) == NULL && strstr(err, "No such file"),
	   "missing file");
	ok(CsvReaderOpen("/tmp", err, sizeof(err)) == NULL && strstr(err, "is a directory"),
	   "directory");
	path = write_tmp("", 0);
	r = CsvReaderOpen(path, err, sizeof(err));
	ok(CsvReaderHeader(r, 4, names, idx, err, sizeof(err)) == -1 && strstr(err, "empty"), "empty file");
	CsvReaderClose(r);
	/* a record longer than the read buffer, and one longer than the limit */
	{
		size_t		n = 3 * 1024 * 1024;
		char	   *big = malloc(n + 64);
		size_t		i,
					len;

		len = sprintf(big, "a,b\n1,\"");
		for (i = 0; i < 1500000; i++)
			big[len++] = 'x';
		len += sprintf(big + len, "\"\n2,y\n");
		path = write_tmp(big, len);
		r = CsvReaderOpen(path, err, sizeof(err));
		CsvReaderNext(r, &rec, err, sizeof(err));
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == -1 && strstr(err, "longer than"),
		   "record over the limit is an error");
		printf("# %s\n", err);
		CsvReaderClose(r);

		len = sprintf(big, "a,b\n1,\"");
		for (i = 0; i < 900000; i++)
			big[len++] = i % 100 == 0 ? '\n' : 'x';
		len += sprintf(big + len, "\"\n2,y\n");
		path = write_tmp(big, len);
		r = CsvReaderOpen(path, err, sizeof(err));
		CsvReaderNext(r, &rec, err, sizeof(err));
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->lens[1] == 900000 &&
		   rec->raw_len == CSV_RAW_MAX, "large multi-line field, raw truncated");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 9003 &&
		   strcmp(rec->fields[1], "y") == 0, "line count after a multi-line field");
		CsvReaderClose(r);
		free(big);
	}
	unlink(path);
	return tap_done();
}
