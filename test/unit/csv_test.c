/*
 * csv_test.c: standalone checks of src/csvreader.c (run it under ASan or valgrind).
 *
 *   cc -g -fsanitize=address,undefined -Wall -Wextra -Werror -Isrc -o /tmp/csv_test \
 *      test/unit/csv_test.c src/csvreader.c src/libutil.c -lcsv -lpthread
 *   /tmp/csv_test            # TAP on built-in cases
 *   /tmp/csv_test FILE       # count records of FILE and print the speed
 */
#include "csvreader.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

/* An open() that blocks (a FIFO without a writer) fails the test instead of hanging it. */
static void
on_alarm(int sig)
{
	static const char msg[] = "not ok - CsvReaderOpen blocked on a FIFO\n";

	(void) sig;
	if (write(1, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(2);
}

/* Open data as a file and read its header "a,b" (2 columns). */
static CsvReader *
open_data(const char *data, size_t len, char *err, size_t errlen);

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

static CsvReader *
open_data(const char *data, size_t len, char *err, size_t errlen)
{
	CsvReader  *r = CsvReaderOpen(write_tmp(data, len), err, errlen);
	CsvRecord  *rec;

	if (r && CsvReaderNext(r, &rec, err, errlen) != 1)
	{
		CsvReaderClose(r);
		return NULL;
	}
	return r;
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
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 2 && rec->error &&
		   strstr(rec->error, "record starting at line 2 is too long: more than 1048576 bytes") &&
		   rec->nfields == 0 && rec->raw_len == CSV_RAW_MAX,
		   "record over the limit is returned with an error, its raw text truncated");
		printf("# %s\n", rec->error ? rec->error : err);
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 3 && !rec->error &&
		   strcmp(rec->fields[1], "y") == 0, "the record after it is read");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 0, "then the end of the file");
		CsvReaderClose(r);

		/* unquoted, 3 MB on one line, longer than the read buffer too */
		len = sprintf(big, "a,b\n1,");
		for (i = 0; i < n - 100; i++)
			big[len++] = i % 1000 == 999 ? ',' : 'x';
		len += sprintf(big + len, "\n2,z\n");
		path = write_tmp(big, len);
		r = CsvReaderOpen(path, err, sizeof(err));
		CsvReaderNext(r, &rec, err, sizeof(err));
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->error &&
		   strstr(rec->error, "(lines 2 to 2)"), "unquoted 3 MB record: an error");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 3 && !rec->error &&
		   strcmp(rec->fields[1], "z") == 0, "the record after it is read");
		CsvReaderClose(r);

		/* an unterminated quote in a big file: too long, and unterminated */
		len = sprintf(big, "a,b\n1,\"open\n");
		for (i = 0; i < 200000; i++)
			len += sprintf(big + len, "%d,ok\n", (int) i);
		path = write_tmp(big, len);
		r = CsvReaderOpen(path, err, sizeof(err));
		CsvReaderNext(r, &rec, err, sizeof(err));
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 2 && rec->error &&
		   strstr(rec->error, "unterminated quoted field starting at line 2: no closing quote in the 200001 lines to the end of the file; reading resumed at line 3"),
		   "unterminated quote over the record limit: reported as unterminated");
		printf("# %s\n", rec->error ? rec->error : err);
		{
			long		good = 0;
			int64_t		last = 0;

			while (CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && !rec->error)
			{
				good++;
				last = rec->line;
			}
			ok(good == 200000 && last == 200002, "every row after it is read, once");
		}
		ok(CsvReaderBytesRead(r) == CsvReaderSize(r), "all bytes consumed");
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

	/* a NUL byte inside a field (it would cut the text short) */
	{
		const char	data[] = "a,b\n12\0garbage,1\n2,\"Jum\0anji (1995)\"\n3,ok\n";

		r = open_data(data, sizeof(data) - 1, err, sizeof(err));
		ok(r && CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 2 && rec->error &&
		   strcmp(rec->error, "NUL byte in field 1 at line 2") == 0, "NUL byte in an unquoted field");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 3 && rec->error &&
		   strcmp(rec->error, "NUL byte in field 2 at line 3") == 0, "NUL byte in a quoted field");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 4 && !rec->error,
		   "the next row is fine");
		CsvReaderClose(r);
	}
	/* an unterminated quote: reported at its line, the rows after it read again */
	{
		const char	data[] = "a,b\n1,x\n2,\"Jum, anji\n3,y\n4,z\n\n5,w\n";

		r = open_data(data, sizeof(data) - 1, err, sizeof(err));
		ok(r && CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 2 && !rec->error,
		   "row before the quote");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 3 && rec->error &&
		   strcmp(rec->error, "unterminated quoted field starting at line 3: no closing quote in the 5 lines to the end of the file; reading resumed at line 4") == 0 &&
		   strcmp(rec->raw, "2,\"Jum, anji\n3,y\n4,z\n\n5,w") == 0,
		   "unterminated quote: its line, the lines it took, its raw text");
		printf("# %s\n", rec->error ? rec->error : err);
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 4 && !rec->error &&
		   strcmp(rec->fields[1], "y") == 0, "the row after it is read again");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 5 &&
		   CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 7 &&
		   strcmp(rec->fields[1], "w") == 0, "and the rows after that, once");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 0, "end of file");
		CsvReaderClose(r);
	}
	/* an unterminated quote on the last line, without a line end */
	{
		const char	data[] = "a,b\n1,x\n2,\"abc";

		r = open_data(data, sizeof(data) - 1, err, sizeof(err));
		CsvReaderNext(r, &rec, err, sizeof(err));
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 1 && rec->line == 3 && rec->error &&
		   strcmp(rec->error, "unterminated quoted field starting at line 3: no closing quote in the 1 line to the end of the file") == 0,
		   "unterminated quote on the last line");
		ok(CsvReaderNext(r, &rec, err, sizeof(err)) == 0, "end of file");
		CsvReaderClose(r);
	}
	/* every line opens a quote: re-reads are bounded */
	{
		size_t		cap = 300 * 8 + 16,
					len = 0;
		char	   *d = malloc(cap);
		int			i,
					nerr = 0,
					nrec = 0;
		char		last[CSV_ERROR_MAX] = "";

		len = sprintf(d, "a,b\n");
		for (i = 0; i < 300; i++)
			len += sprintf(d + len, "%d,\"q\n", i % 10);
		r = open_data(d, len, err, sizeof(err));
		while (CsvReaderNext(r, &rec, err, sizeof(err)) == 1)
		{
			nrec++;
			nerr += rec->error != NULL;
			snprintf(last, sizeof(last), "%s", rec->error ? rec->error : "");
		}
		printf("# %d records, %d errors, last: %s\n", nrec, nerr, last);
		ok(nrec == CSV_MAX_RESUMES + 1 && nerr == nrec && strstr(last, "the rest of the file is not read"),
		   "at most CSV_MAX_RESUMES re-reads, then the rest of the file is one reject");
		CsvReaderClose(r);
		free(d);
	}
	/* a duplicate column in the header */
	{
		const char	data[] = "userId,movieId,rating,timestamp,userId\n1,2,3,4,5\n";
		const char *one[] = {"rating"};

		path = write_tmp(data, sizeof(data) - 1);
		r = CsvReaderOpen(path, err, sizeof(err));
		ok(CsvReaderHeader(r, 4, names, idx, err, sizeof(err)) == -1 &&
		   strstr(err, "column \"userId\" appears twice in the header") && strstr(err, "(columns 1 and 5)"),
		   "a duplicate column is an error naming it");
		CsvReaderClose(r);
		r = CsvReaderOpen(path, err, sizeof(err));
		ok(CsvReaderHeader(r, 1, one, idx, err, sizeof(err)) == 0 && idx[0] == 2 &&
		   CsvReaderHeaderWidth(r) == 5, "a duplicate of an unused column is harmless; header width");
		CsvReaderClose(r);
	}
	/* an unterminated quote in the header */
	{
		const char	data[] = "userId,\"movieId,rating,timestamp\n1,2,3,4\n";

		path = write_tmp(data, sizeof(data) - 1);
		r = CsvReaderOpen(path, err, sizeof(err));
		ok(CsvReaderHeader(r, 4, names, idx, err, sizeof(err)) == -1 &&
		   strstr(err, "is unreadable: unterminated quoted field starting at line 1: no closing quote in the 2 lines to the end of the file") &&
		   !strstr(err, "resumed"), "an unterminated quote in the header is an error");
		printf("# %s\n", err);
		CsvReaderClose(r);
	}
	/* a NUL byte in the header */
	{
		const char	data[] = "userId\0x,movieId,rating,timestamp\n";

		path = write_tmp(data, sizeof(data) - 1);
		r = CsvReaderOpen(path, err, sizeof(err));
		ok(CsvReaderHeader(r, 4, names, idx, err, sizeof(err)) == -1 &&
		   strstr(err, "NUL byte in field 1 at line 1"), "a NUL byte in the header is an error");
		CsvReaderClose(r);
	}
	unlink(path);

	/* anything but a regular file is refused, and opening never blocks */
	{
		char		fifo[64];

		snprintf(fifo, sizeof(fifo), "/tmp/csv_test_%d.fifo", (int) getpid());
		unlink(fifo);
		signal(SIGALRM, on_alarm);
		alarm(10);
		ok(mkfifo(fifo, 0600) == 0 && CsvReaderOpen(fifo, err, sizeof(err)) == NULL &&
		   strstr(err, "is not a regular file: it is a FIFO"), "a FIFO is refused without blocking");
		printf("# %s\n", err);
		alarm(0);
		unlink(fifo);
		ok(CsvReaderOpen("/dev/null", err, sizeof(err)) == NULL &&
		   strstr(err, "is not a regular file: it is a character device"), "a device is refused");
	}
	return tap_done();
}
