/*
 * csvreader.c: streaming CSV reader over libcsv (plain C; see csvreader.h).
 *
 * Design: the file is read in CSV_BUFSIZE blocks and handed to libcsv one physical
 * line at a time (memchr for '\n'), which gives line numbers and each record's raw
 * text for free.  Only '\n' ends a record (libcsv's term function); '\r' counts as a
 * space, so the CR of a CRLF line end is trimmed like trailing blanks, while a CR
 * inside quotes is kept.  libcsv's field callback copies each field into an arena
 * owned by the reader; its record callback marks the record complete, and the pull
 * API returns it.  The arena and the raw buffer are reused for every record, so
 * memory stays at one block plus the largest record (capped at CSV_MAX_RECORD).
 *
 * Bad records (see csvreader.h) are returned with an error, never raised, so a
 * caller in 'reject' mode goes on:
 * - a NUL byte is looked for once a line (memchr), then in each field of that record
 *   by the field callback, to name the field;
 * - a record growing past CSV_MAX_RECORD bytes (or CSV_MAX_FIELDS fields) switches
 *   the reader to skipping: libcsv is still fed, so it finds the record's real end
 *   (quotes included), but fields are dropped and libcsv's entry buffer is cut back
 *   to its last few bytes after each line, so memory stays bounded however long the
 *   record is;
 * - at the end of the file, libcsv in a quoted field (pstate FIELD_BEGUN, quoted)
 *   means the quote never closed: the record is reported at its first line with the
 *   count of lines it took, and the next call seeks back to the start of that
 *   record's second line and reads on from there with a fresh parser.  The records
 *   after the opening line were swallowed, never returned, so none is returned twice.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "csvreader.h"
#include "libutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csv.h>

#ifndef CSV_BUFSIZE
#define CSV_BUFSIZE		(1024 * 1024)	/* a fuzzing build makes it tiny */
#endif
#ifndef CSV_MAX_FIELDS
#define CSV_MAX_FIELDS	65536	/* fields in one record, at most */
#endif
#ifndef CSV_ARENA_INIT
#define CSV_ARENA_INIT	4096	/* first size of the record's arena */
#endif

/* libcsv's parser states (libcsv.c) */
#define LIBCSV_ROW_NOT_BEGUN	0
#define LIBCSV_FIELD_BEGUN		2

struct CsvReader
{
	int			fd;
	char	   *path;
	int64_t		size;
	int64_t		consumed;		/* bytes handed to libcsv */
	int64_t		furthest;		/* the most consumed ever was (re-reads go back) */
	struct csv_parser parser;

	char	   *buf;			/* read buffer */
	size_t		pos;			/* next byte to feed */
	size_t		len;			/* bytes in buf */
	bool		eof;			/* read() returned 0 */
	bool		finished;		/* csv_fini done */
	bool		first_block;	/* BOM check pending */

	int64_t		line;			/* number of the line being fed (1-based) */
	int			header_width;	/* fields in the header */
	int			resumes;		/* re-reads after unterminated quotes so far */
	int64_t		resume_off;		/* >= 0: re-read from this byte at the next call */
	int64_t		resume_line;	/* ... which starts this line */

	/* the record being assembled */
	char	   *arena;
	size_t		arena_used;
	size_t		arena_size;
	size_t	   *offsets;
	size_t	   *lens;
	int			nfields;
	int			maxfields;
	bool		utf8_ok;
	bool		complete;
	bool		overflow;		/* out of memory or record too long */
	bool		skipping;		/* record too long: dropping it up to its end */
	bool		unterminated;	/* the file ended inside a quoted field */
	bool		has_nul;		/* a line of the record holds a NUL byte */
	int			nul_field;		/* 1-based field holding it, or 0 */
	int64_t		first_line_end; /* offset after the record's first line, or -1 */
	int64_t		last_line;		/* last line the record takes */
	char		raw[CSV_RAW_MAX + 1];
	size_t		raw_len;
	char		error[CSV_ERROR_MAX];

	CsvRecord	rec;
	char	  **fieldptrs;
	int			nfieldptrs;		/* allocated length of fieldptrs */
};

static void field_cb(void *data, size_t len, void *arg);
static void record_cb(int c, void *arg);
static int	is_space(unsigned char c);
static int	is_term(unsigned char c);
static void record_reset(CsvReader *r);
static void raw_append(CsvReader *r, const char *s, size_t n);
static int	fill(CsvReader *r, char *err, size_t errlen);
static void check_length(CsvReader *r);
static void trim_entry(CsvReader *r);
static void record_error(CsvReader *r);
static int	resume(CsvReader *r, char *err, size_t errlen);
static int	check_regular(const char *path, const struct stat *st, char *err, size_t errlen);

/* Blanks around unquoted fields, and the CR of CRLF. */
static int
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Only LF ends a record (a CR before it is a space). */
static int
is_term(unsigned char c)
{
	return c == '\n';
}

/* Return true when buf[0..len) is valid UTF-8. */
bool
CsvValidUtf8(const char *buf, size_t len)
{
	const unsigned char *s = (const unsigned char *) buf;
	const unsigned char *end = s + len;

	while (s < end)
	{
		unsigned char c = *s;

		if (c < 0x80)
		{
			s++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
		{
			if (end - s < 2 || (s[1] & 0xC0) != 0x80)
				return false;
			s += 2;
		}
		else if (c >= 0xE0 && c <= 0xEF)
		{
			if (end - s < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
				return false;
			if (c == 0xE0 && s[1] < 0xA0)
				return false;	/* overlong */
			if (c == 0xED && s[1] > 0x9F)
				return false;	/* surrogate */
			s += 3;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			if (end - s < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
				(s[3] & 0xC0) != 0x80)
				return false;
			if (c == 0xF0 && s[1] < 0x90)
				return false;	/* overlong */
			if (c == 0xF4 && s[1] > 0x8F)
				return false;	/* above U+10FFFF */
			s += 4;
		}
		else
			return false;
	}
	return true;
}

/* libcsv field callback: copy the field into the arena. */
static void
field_cb(void *data, size_t len, void *arg)
{
	CsvReader  *r = (CsvReader *) arg;

	if (r->overflow)
		return;
	if (r->nfields == r->maxfields)
	{
		int			n = r->maxfields * 2;
		size_t	   *o;
		size_t	   *l;

		if (n > CSV_MAX_FIELDS)
		{
			r->overflow = true;
			return;
		}
		o = realloc(r->offsets, n * sizeof(size_t));
		if (o == NULL)
		{
			r->overflow = true;
			return;
		}
		r->offsets = o;
		l = realloc(r->lens, n * sizeof(size_t));
		if (l == NULL)
		{
			r->overflow = true;
			return;
		}
		r->lens = l;
		r->maxfields = n;
	}
	if (r->arena_used + len + 1 > r->arena_size)
	{
		size_t		n = r->arena_size;
		char	   *a;

		while (r->arena_used + len + 1 > n)
			n *= 2;
		if (n > 2 * CSV_MAX_RECORD + 1024 || (a = realloc(r->arena, n)) == NULL)
		{
			r->overflow = true;
			return;
		}
		r->arena = a;
		r->arena_size = n;
	}
	if (len > 0)
		memcpy(r->arena + r->arena_used, data, len);
	r->arena[r->arena_used + len] = '\0';
	if (r->utf8_ok && !CsvValidUtf8(data, len))
		r->utf8_ok = false;
	if (r->has_nul && r->nul_field == 0 && len > 0 && memchr(data, '\0', len) != NULL)
		r->nul_field = r->nfields + 1;
	r->offsets[r->nfields] = r->arena_used;
	r->lens[r->nfields] = len;
	r->nfields++;
	r->arena_used += len + 1;
}

/* libcsv record callback: the record is complete. */
static void
record_cb(int c, void *arg)
{
	CsvReader  *r = (CsvReader *) arg;

	(void) c;
	r->complete = true;
}

/* Forget the previous record. */
static void
record_reset(CsvReader *r)
{
	r->nfields = 0;
	r->arena_used = 0;
	r->utf8_ok = true;
	r->complete = false;
	r->overflow = false;
	r->skipping = false;
	r->unterminated = false;
	r->has_nul = false;
	r->nul_field = 0;
	r->first_line_end = -1;
	r->last_line = r->line;
	r->raw_len = 0;
	r->rec.line = r->line;
	r->rec.error = NULL;
}

/* Once the record is too long, drop it, but read on to its real end. */
static void
check_length(CsvReader *r)
{
	if (!r->skipping &&
		(r->overflow ||
		 r->arena_used + (r->complete ? 0 : r->parser.entry_pos) > CSV_MAX_RECORD))
	{
		r->skipping = true;
		r->overflow = true;
	}
}

/*
 * While skipping a too long record, drop what libcsv holds of the current field but
 * its last spaces + 1 bytes (libcsv takes that many back off when the field ends).
 */
static void
trim_entry(CsvReader *r)
{
	struct csv_parser *p = &r->parser;
	size_t		keep = p->spaces + 1;

	if (p->entry_pos > keep)
	{
		memmove(p->entry_buf, p->entry_buf + p->entry_pos - keep, keep);
		p->entry_pos = keep;
	}
}

/* Say why the record just completed cannot be used, if so; arrange a re-read. */
static void
record_error(CsvReader *r)
{
	long long	first = (long long) r->rec.line;
	long long	nlines = (long long) (r->last_line - r->rec.line + 1);

	if (r->unterminated)
	{
		int			n = snprintf(r->error, sizeof(r->error),
								 "unterminated quoted field starting at line %lld: no closing quote in the %lld line%s to the end of the file",
								 first, nlines, nlines == 1 ? "" : "s");

		if (r->first_line_end >= 0 && r->first_line_end < r->size)
		{
			if (r->resumes < CSV_MAX_RESUMES)
			{
				r->resumes++;
				r->resume_off = r->first_line_end;
				r->resume_line = r->rec.line + 1;
				snprintf(r->error + n, sizeof(r->error) - n, "; reading resumed at line %lld",
						 first + 1);
			}
			else
				snprintf(r->error + n, sizeof(r->error) - n,
						 "; the rest of the file is not read (%d unterminated quotes before)",
						 CSV_MAX_RESUMES);
		}
		r->nfields = 0;
	}
	else if (r->skipping)
	{
		snprintf(r->error, sizeof(r->error),
				 "record starting at line %lld is too long: more than %d bytes or %d fields (lines %lld to %lld)",
				 first, CSV_MAX_RECORD, CSV_MAX_FIELDS, first, (long long) r->last_line);
		r->nfields = 0;
	}
	else if (r->nul_field > 0)
		snprintf(r->error, sizeof(r->error), "NUL byte in field %d at line %lld",
				 r->nul_field, first);
	else
		return;
	r->rec.error = r->error;
}

/* Go back to resume_off with a fresh parser (csv_fini has reset it). */
static int
resume(CsvReader *r, char *err, size_t errlen)
{
	if (lseek(r->fd, (off_t) r->resume_off, SEEK_SET) < 0)
	{
		LibSetError(err, errlen, "could not seek in file \"%s\": %s", r->path, strerror(errno));
		return -1;
	}
	r->pos = 0;
	r->len = 0;
	r->eof = false;
	r->finished = false;
	r->first_block = false;
	if (r->consumed > r->furthest)
		r->furthest = r->consumed;
	r->consumed = r->resume_off;
	r->line = r->resume_line;
	r->resume_off = -1;
	record_reset(r);
	return 0;
}

/* Keep up to CSV_RAW_MAX bytes of the record's text. */
static void
raw_append(CsvReader *r, const char *s, size_t n)
{
	size_t		room = CSV_RAW_MAX - r->raw_len;

	if (n > room)
		n = room;
	memcpy(r->raw + r->raw_len, s, n);
	r->raw_len += n;
}

/* Refuse anything but a regular file: 0, or -1 with a message in err. */
static int
check_regular(const char *path, const struct stat *st, char *err, size_t errlen)
{
	const char *what;

	if (S_ISREG(st->st_mode))
		return 0;
	if (S_ISDIR(st->st_mode))
	{
		LibSetError(err, errlen, "\"%s\" is a directory", path);
		return -1;
	}
	what = S_ISFIFO(st->st_mode) ? "a FIFO" :
		S_ISSOCK(st->st_mode) ? "a socket" :
		S_ISCHR(st->st_mode) ? "a character device" :
		S_ISBLK(st->st_mode) ? "a block device" : "not a file";
	LibSetError(err, errlen, "\"%s\" is not a regular file: it is %s", path, what);
	return -1;
}

/*
 * Open a regular file for reading: stat it first, open it without blocking (a FIFO
 * swapped in meanwhile would block open() until a writer came), check the open file
 * is regular too, then make reads blocking again.
 */
CsvReader *
CsvReaderOpen(const char *path, char *err, size_t errlen)
{
	CsvReader  *r;
	struct stat st;
	int			fd;
	int			flags;

	if (stat(path, &st) != 0)
	{
		LibSetError(err, errlen, "could not open file \"%s\" for reading: %s", path, strerror(errno));
		return NULL;
	}
	if (check_regular(path, &st, err, errlen) != 0)
		return NULL;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
	{
		LibSetError(err, errlen, "could not open file \"%s\" for reading: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0)
	{
		LibSetError(err, errlen, "could not stat file \"%s\": %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (check_regular(path, &st, err, errlen) != 0)
	{
		close(fd);
		return NULL;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
	{
		LibSetError(err, errlen, "could not set file \"%s\" to blocking reads: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	r = calloc(1, sizeof(CsvReader));
	if (r == NULL)
		goto oom;
	r->fd = fd;
	r->size = (int64_t) st.st_size;
	r->resume_off = -1;
	r->path = strdup(path);
	r->buf = malloc(CSV_BUFSIZE);
	r->arena_size = CSV_ARENA_INIT;
	r->arena = malloc(r->arena_size);
	r->maxfields = 16;
	r->offsets = malloc(r->maxfields * sizeof(size_t));
	r->lens = malloc(r->maxfields * sizeof(size_t));
	if (!r->path || !r->buf || !r->arena || !r->offsets || !r->lens ||
		csv_init(&r->parser, CSV_APPEND_NULL) != 0)
	{
		CsvReaderClose(r);
		LibSetError(err, errlen, "out of memory");
		return NULL;
	}
	csv_set_space_func(&r->parser, is_space);
	csv_set_term_func(&r->parser, is_term);
	r->first_block = true;
	r->line = 1;
	record_reset(r);
#ifdef POSIX_FADV_SEQUENTIAL
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
	return r;

oom:
	close(fd);
	LibSetError(err, errlen, "out of memory");
	return NULL;
}

/* Move unfed bytes to the front and read more; -1 on a read error. */
static int
fill(CsvReader *r, char *err, size_t errlen)
{
	ssize_t		n;

	if (r->pos > 0)
	{
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->pos = 0;
	}
	do
		n = read(r->fd, r->buf + r->len, CSV_BUFSIZE - r->len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
	{
		LibSetError(err, errlen, "could not read file \"%s\": %s", r->path, strerror(errno));
		return -1;
	}
	if (n == 0)
		r->eof = true;
	r->len += n;
	if (r->first_block && r->len >= 3)
	{
		r->first_block = false;
		if ((unsigned char) r->buf[0] == 0xEF && (unsigned char) r->buf[1] == 0xBB &&
			(unsigned char) r->buf[2] == 0xBF)
		{
			r->pos = 3;
			r->consumed = 3;
		}
	}
	else if (r->eof)
		r->first_block = false;
	return 0;
}

/* Return the next record. */
int
CsvReaderNext(CsvReader *r, CsvRecord **rec, char *err, size_t errlen)
{
	if (r->complete)
		record_reset(r);
	if (r->resume_off >= 0 && resume(r, err, errlen) != 0)
		return -1;

	while (!r->complete)
	{
		char	   *start;
		char	   *nl;
		size_t		avail,
					n;
		bool		whole_line;

		if (r->finished)
			return 0;
		avail = r->len - r->pos;
		start = r->buf + r->pos;
		nl = avail > 0 ? memchr(start, '\n', avail) : NULL;
		if (nl == NULL && !r->eof && (r->pos > 0 || r->len < CSV_BUFSIZE))
		{
			if (fill(r, err, errlen) != 0)
				return -1;
			continue;
		}
		if (nl == NULL && avail == 0 && r->eof)
		{
			/* end of input: flush a last record without a line end */
			r->unterminated = r->parser.pstate == LIBCSV_FIELD_BEGUN && r->parser.quoted;
			if (csv_fini(&r->parser, field_cb, record_cb, r) != 0)
			{
				LibSetError(err, errlen, "could not parse file \"%s\" at line %lld: %s",
						r->path, (long long) r->line, csv_strerror(csv_error(&r->parser)));
				return -1;
			}
			r->finished = true;
			if (!r->complete)
				return 0;
			check_length(r);
			break;
		}
		whole_line = nl != NULL;
		n = whole_line ? (size_t) (nl - start) + 1 : avail;

		/* a record starts here unless one is already under way */
		if (r->nfields == 0 && r->parser.pstate == LIBCSV_ROW_NOT_BEGUN && !r->skipping)
		{
			r->rec.line = r->line;
			r->raw_len = 0;
			r->first_line_end = -1;
		}
		{
			size_t		rn = n;

			if (whole_line)
			{
				/* keep the line end inside a multi-line record, drop the final one */
				rn--;
				if (rn > 0 && start[rn - 1] == '\r')
					rn--;
			}
			raw_append(r, start, rn);
		}
		/* one scan a line; the field callback then looks for the field that has it */
		if (!r->has_nul && memchr(start, '\0', n) != NULL)
			r->has_nul = true;
		if (csv_parse(&r->parser, start, n, field_cb, record_cb, r) != n)
		{
			LibSetError(err, errlen, "could not parse file \"%s\" at line %lld: %s",
					r->path, (long long) r->line, csv_strerror(csv_error(&r->parser)));
			return -1;
		}
		r->pos += n;
		r->consumed += n;
		if (n > 0)
			r->last_line = r->line;
		if (whole_line)
		{
			if (r->line == r->rec.line && r->first_line_end < 0)
				r->first_line_end = r->consumed;
			r->line++;
			if (!r->complete)
				raw_append(r, "\n", 1);
		}
		check_length(r);
		if (r->skipping && !r->complete)
			trim_entry(r);
	}
	record_error(r);

	/* hand out the record */
	{
		int			i;

		if (r->nfields > r->nfieldptrs)
		{
			char	  **fp = realloc(r->fieldptrs, r->maxfields * sizeof(char *));

			if (fp == NULL)
			{
				LibSetError(err, errlen, "out of memory");
				return -1;
			}
			r->fieldptrs = fp;
			r->nfieldptrs = r->maxfields;
		}
		for (i = 0; i < r->nfields; i++)
			r->fieldptrs[i] = r->arena + r->offsets[i];
		/* the raw buffer ends with the line end of the last line: trim it */
		while (r->raw_len > 0 && (r->raw[r->raw_len - 1] == '\n' || r->raw[r->raw_len - 1] == '\r'))
			r->raw_len--;
		r->raw[r->raw_len] = '\0';
		r->rec.nfields = r->nfields;
		r->rec.fields = r->fieldptrs;
		r->rec.lens = r->lens;
		r->rec.raw = r->raw;
		r->rec.raw_len = r->raw_len;
		r->rec.utf8_ok = r->utf8_ok;
		*rec = &r->rec;
	}
	return 1;
}

/* Read the header and map names to column indexes. */
int
CsvReaderHeader(CsvReader *r, int n, const char *const *names, int *index,
				char *err, size_t errlen)
{
	CsvRecord  *rec;
	int			rc = CsvReaderNext(r, &rec, err, errlen);
	int			i,
				j;

	if (rc < 0)
		return -1;
	if (rc == 0)
	{
		LibSetError(err, errlen, "file \"%s\" is empty: a header line is expected", r->path);
		return -1;
	}
	if (rec->error)
	{
		/* the caller stops here: whether reading would resume does not matter */
		char	   *cut = strstr(r->error, "; reading resumed");

		if (cut)
			*cut = '\0';
		LibSetError(err, errlen, "header of file \"%s\" is unreadable: %s", r->path, rec->error);
		return -1;
	}
	if (!rec->utf8_ok)
	{
		LibSetError(err, errlen, "header of file \"%s\" is not valid UTF-8", r->path);
		return -1;
	}
	r->header_width = rec->nfields;
	for (i = 0; i < n; i++)
	{
		index[i] = -1;
		for (j = 0; j < rec->nfields; j++)
			if (strcmp(rec->fields[j], names[i]) == 0)
			{
				if (index[i] >= 0)
				{
					LibSetError(err, errlen, "column \"%s\" appears twice in the header of file \"%s\" (columns %d and %d)",
								names[i], r->path, index[i] + 1, j + 1);
					return -1;
				}
				index[i] = j;
			}
	}
	return 0;
}

/* Return the header's number of fields. */
int
CsvReaderHeaderWidth(const CsvReader *r)
{
	return r->header_width;
}

/* Bytes read so far: never less than before a re-read. */
int64_t
CsvReaderBytesRead(const CsvReader *r)
{
	return r->consumed > r->furthest ? r->consumed : r->furthest;
}

/* The file's size when it was opened. */
int64_t
CsvReaderSize(const CsvReader *r)
{
	return r->size;
}

/* Close the file and free everything. */
void
CsvReaderClose(CsvReader *r)
{
	if (r == NULL)
		return;
	if (r->fd >= 0)
		close(r->fd);
	csv_free(&r->parser);
	free(r->path);
	free(r->buf);
	free(r->arena);
	free(r->offsets);
	free(r->lens);
	free(r->fieldptrs);
	free(r);
}
