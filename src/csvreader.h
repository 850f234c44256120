/*
 * csvreader.h: a streaming, pull-style CSV reader over libcsv (plain C, no PostgreSQL
 * headers, so it can be tested alone under ASan or valgrind).
 *
 * RFC 4180 as libcsv parses it: quoted fields with doubled quotes, commas and newlines
 * inside quotes, LF or CRLF line ends.  A UTF-8 byte order mark at the start of the
 * file is skipped.  Columns are found by header name.  Each record carries the line
 * number it starts on (the header is line 1), its raw text (truncated) and whether it
 * is valid UTF-8.  Memory is bounded: one read buffer, one record.
 *
 * Only regular files are read: anything else (a FIFO, a device, a directory) is
 * refused before it is opened, and it is opened without blocking, so a path swapped
 * for a FIFO in between cannot hang the caller.
 *
 * A record that cannot be used is still returned, with its line and raw text, and
 * error set to one sentence saying why, so that a caller can reject it and go on:
 * a field holding a NUL byte (its text would be cut short); a record longer than
 * CSV_MAX_RECORD bytes (skipped to its end, whatever its length); a quoted field
 * whose quote is never closed.  libcsv cannot know where such a quote should have
 * closed: it reads to the end of the file; the reader then reports the record at the
 * line where the quote opened, with the number of lines it took, and reads the file
 * again from the next line (at most CSV_MAX_RESUMES times a file), so the rows after
 * it are not lost.  Records are never returned twice.
 */
#ifndef RECSYS_CSVREADER_H
#define RECSYS_CSVREADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef CSV_MAX_RECORD
#define CSV_MAX_RECORD		(1024 * 1024)	/* bytes in one record, at most */
#endif
#define CSV_RAW_MAX			1000	/* bytes of raw text kept per record */
#define CSV_MAX_RESUMES		100		/* re-reads after unterminated quotes, a file */
#define CSV_ERROR_MAX		200		/* bytes of a record's error text */

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
	const char *error;			/* NULL, or why the record cannot be used */
} CsvRecord;

/*
 * Open path for reading; NULL with a message in err (missing, a directory, not a
 * regular file...).
 */
extern CsvReader *CsvReaderOpen(const char *path, char *err, size_t errlen);

/*
 * Read the header and find each of names[0..n-1] (exact match after trimming spaces),
 * storing its column index in index[] (-1 for a column not found).  Returns 0, or -1
 * with a message in err when the file is empty, the header unreadable or not UTF-8,
 * or one of names appears twice in it.
 */
extern int	CsvReaderHeader(CsvReader *r, int n, const char *const *names, int *index,
							char *err, size_t errlen);

/* Number of fields in the header read by CsvReaderHeader. */
extern int	CsvReaderHeaderWidth(const CsvReader *r);

/*
 * Next record: 1 and *rec set (check (*rec)->error), 0 at end of file, -1 with a
 * message in err (a read error, out of memory).
 */
extern int	CsvReaderNext(CsvReader *r, CsvRecord **rec, char *err, size_t errlen);

/* Bytes consumed so far (the furthest point reached), and the file's size when opened. */
extern int64_t CsvReaderBytesRead(const CsvReader *r);
extern int64_t CsvReaderSize(const CsvReader *r);

extern void CsvReaderClose(CsvReader *r);

/* True when buf[0..len) is valid UTF-8 (no overlongs, no surrogates). */
extern bool CsvValidUtf8(const char *buf, size_t len);

#endif							/* RECSYS_CSVREADER_H */
