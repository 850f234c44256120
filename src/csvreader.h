/*
 * csvreader.h: a streaming, pull-style CSV reader over libcsv (plain C, no PostgreSQL
 * headers, so it can be tested alone under ASan or valgrind).
 *
 * RFC 4180 as libcsv parses it: quoted fields with doubled quotes, commas and newlines
 * inside quotes, LF or CRLF line ends.  A UTF-8 byte order mark at the start of the
 * file is skipped.  Columns are found by header name.  Each record carries the line
 * number it starts on (the header is line 1), its raw text (truncated) and whether it
 * is valid UTF-8.  Memory is bounded: one read buffer, one record; a record longer
 * than CSV_MAX_RECORD bytes is an error.
 */
#ifndef RECSYS_CSVREADER_H
#define RECSYS_CSVREADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CSV_MAX_RECORD		(1024 * 1024)	/* bytes in one record, at most */
#define CSV_RAW_MAX			1000	/* bytes of raw text kept per record */

typedef struct CsvReader CsvReader;

typedef struct CsvRecord
{
	int			nfields;
	char	  **fields;			/* NUL-terminated */
	size_t	   *lens;
	int64_t		line;			/* physical line the record starts on (header: 1) */
	const char *raw;			/* the record's text, up to CSV_RAW_MAX bytes, no EOL */
	size_t		raw_len;
	bool		utf8_ok;		/* every field is valid UTF-8 */
} CsvRecord;

/* Open path for reading; NULL with a message in err (missing, a directory...). */
extern CsvReader *CsvReaderOpen(const char *path, char *err, size_t errlen);

/*
 * Read the header and find each of names[0..n-1] (exact match after trimming spaces),
 * storing its column index in index[] (-1 for a column not found).  Returns 0, or -1
 * with a message in err when the file is empty, the header unreadable or not UTF-8.
 */
extern int	CsvReaderHeader(CsvReader *r, int n, const char *const *names, int *index,
							char *err, size_t errlen);

/* Next record: 1 and *rec set, 0 at end of file, -1 with a message in err. */
extern int	CsvReaderNext(CsvReader *r, CsvRecord **rec, char *err, size_t errlen);

/* Bytes consumed so far, and the file's size when opened. */
extern int64_t CsvReaderBytesRead(const CsvReader *r);
extern int64_t CsvReaderSize(const CsvReader *r);

extern void CsvReaderClose(CsvReader *r);

/* True when buf[0..len) is valid UTF-8 (no overlongs, no surrogates). */
extern bool CsvValidUtf8(const char *buf, size_t len);

#endif							/* RECSYS_CSVREADER_H */
