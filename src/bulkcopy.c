/*
 * bulkcopy.c: COPY ... FROM a row generator, in binary format (see bulkcopy.h).
 *
 * CopyFrom pulls its input through a callback that takes no argument, so the state
 * of the one COPY in progress lives in file-level variables; BulkCopy is therefore
 * not reentrant (it never needs to be: the aggregate runs one COPY at a time).  The
 * callback encodes rows until it has what COPY asked for; an error raised by the
 * generator or by COPY aborts the transaction, and the next BulkCopy starts afresh.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "datatype/timestamp.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/rel.h"

#include "bulkcopy.h"

static int	bulk_source_cb(void *outbuf, int minread, int maxread);
static void put_header(StringInfo buf);
static void put_uint16(StringInfo buf, uint16 v);
static void put_uint32(StringInfo buf, uint32 v);
static void put_uint64(StringInfo buf, uint64 v);
static void put_array_header(StringInfo buf, int n, Oid elemtype);

/* the COPY in progress */
static BulkRowFn cur_next = NULL;
static void *cur_arg = NULL;
static StringInfoData cur_buf;
static int	cur_pos = 0;
static bool cur_done = false;

#define UNIX_TO_PG_EPOCH_SECS	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)

/* Run COPY schema.table (columns) FROM the generator, in binary format. */
uint64
BulkCopy(const char *schema, const char *table, const char *const *columns,
		 BulkRowFn next, void *arg)
{
	Relation	rel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	CopyFromState cstate;
	List	   *attnames = NIL;
	List	   *options;
	uint64		rows;
	int			i;

	for (i = 0; columns[i] != NULL; i++)
		attnames = lappend(attnames, makeString(pstrdup(columns[i])));
	options = list_make1(makeDefElem("format", (Node *) makeString("binary"), -1));

	rel = table_openrv(makeRangeVar((char *) schema, (char *) table, -1), RowExclusiveLock);
	pstate = make_parsestate(NULL);
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT;

	initStringInfo(&cur_buf);
	cur_next = next;
	cur_arg = arg;
	cur_pos = 0;
	cur_done = false;
	put_header(&cur_buf);
	/* an error aborts the transaction; the next call starts afresh */
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, bulk_source_cb, attnames, options);
	rows = CopyFrom(cstate);
	EndCopyFrom(cstate);
	cur_next = NULL;
	cur_arg = NULL;
	pfree(cur_buf.data);
	cur_buf.data = NULL;
	free_parsestate(pstate);
	table_close(rel, NoLock);
	return rows;
}

/* COPY's input: encode rows until maxread bytes are ready (or the end), hand them over. */
static int
bulk_source_cb(void *outbuf, int minread, int maxread)
{
	int			n;

	if (cur_pos > 0)
	{
		memmove(cur_buf.data, cur_buf.data + cur_pos, cur_buf.len - cur_pos);
		cur_buf.len -= cur_pos;
		cur_pos = 0;
	}
	while (!cur_done && cur_buf.len < maxread)
	{
		if (!cur_next(&cur_buf, cur_arg))
		{
			put_uint16(&cur_buf, (uint16) -1);	/* the trailer */
			cur_done = true;
		}
	}
	n = Min(maxread, cur_buf.len);
	memcpy(outbuf, cur_buf.data, n);
	cur_pos = n;
	return n;
}

static void
put_header(StringInfo buf)
{
	static const char sig[11] = "PGCOPY\n\377\r\n\0";

	appendBinaryStringInfo(buf, sig, 11);
	put_uint32(buf, 0);			/* flags */
	put_uint32(buf, 0);			/* header extension length */
}

static void
put_uint16(StringInfo buf, uint16 v)
{
	uint16		n = pg_hton16(v);

	appendBinaryStringInfo(buf, (char *) &n, 2);
}

static void
put_uint32(StringInfo buf, uint32 v)
{
	uint32		n = pg_hton32(v);

	appendBinaryStringInfo(buf, (char *) &n, 4);
}

static void
put_uint64(StringInfo buf, uint64 v)
{
	uint64		n = pg_hton64(v);

	appendBinaryStringInfo(buf, (char *) &n, 8);
}

void
BulkRowBegin(StringInfo buf, int16 ncolumns)
{
	put_uint16(buf, (uint16) ncolumns);
}

void
BulkPutNull(StringInfo buf)
{
	put_uint32(buf, (uint32) -1);
}

void
BulkPutInt4(StringInfo buf, int32 v)
{
	put_uint32(buf, 4);
	put_uint32(buf, (uint32) v);
}

void
BulkPutInt8(StringInfo buf, int64 v)
{
	put_uint32(buf, 8);
	put_uint64(buf, (uint64) v);
}

void
BulkPutFloat8(StringInfo buf, double v)
{
	union
	{
		double		d;
		uint64		u;
	}			x;

	x.d = v;
	put_uint32(buf, 8);
	put_uint64(buf, x.u);
}

void
BulkPutBool(StringInfo buf, bool v)
{
	put_uint32(buf, 1);
	appendStringInfoChar(buf, v ? 1 : 0);
}

/* numeric's binary form: ndigits, weight, sign, dscale, then base-10000 digits */
void
BulkPutHalves(StringInfo buf, int halves)
{
	int			whole = halves / 2;
	bool		half = (halves % 2) != 0;

	if (whole > 0 && half)
	{
		put_uint32(buf, 12);
		put_uint16(buf, 2);
		put_uint16(buf, 0);
		put_uint16(buf, 0);
		put_uint16(buf, 1);
		put_uint16(buf, (uint16) whole);
		put_uint16(buf, 5000);
	}
	else if (whole > 0)
	{
		put_uint32(buf, 10);
		put_uint16(buf, 1);
		put_uint16(buf, 0);
		put_uint16(buf, 0);
		put_uint16(buf, 1);
		put_uint16(buf, (uint16) whole);
	}
	else
	{
		put_uint32(buf, 10);
		put_uint16(buf, 1);
		put_uint16(buf, (uint16) -1);
		put_uint16(buf, 0);
		put_uint16(buf, 1);
		put_uint16(buf, half ? 5000 : 0);
	}
}

void
BulkPutEpoch(StringInfo buf, int64 epoch_seconds)
{
	BulkPutInt8(buf, BulkEpochToTimestamp(epoch_seconds));
}

int64
BulkEpochToTimestamp(int64 epoch_seconds)
{
	return (epoch_seconds - UNIX_TO_PG_EPOCH_SECS) * USECS_PER_SEC;
}

int64
BulkTimestampToEpoch(int64 ts)
{
	/* floor division: times before 2000 are negative */
	int64		secs = ts / USECS_PER_SEC;

	if (ts % USECS_PER_SEC < 0)
		secs--;
	return secs + UNIX_TO_PG_EPOCH_SECS;
}

void
BulkPutText(StringInfo buf, const char *s, int len)
{
	put_uint32(buf, (uint32) len);
	appendBinaryStringInfo(buf, s, len);
}

/* array_recv's header: ndim, flags, element type, then each dimension's size and lbound */
static void
put_array_header(StringInfo buf, int n, Oid elemtype)
{
	put_uint32(buf, n > 0 ? 1 : 0);
	put_uint32(buf, 0);
	put_uint32(buf, elemtype);
	if (n > 0)
	{
		put_uint32(buf, (uint32) n);
		put_uint32(buf, 1);
	}
}

/* Reserve the length word of a field; return its position for patch_length. */
static int
begin_field(StringInfo buf)
{
	int			at = buf->len;

	put_uint32(buf, 0);
	return at;
}

static void
patch_length(StringInfo buf, int at)
{
	uint32		n = pg_hton32((uint32) (buf->len - at - 4));

	memcpy(buf->data + at, &n, 4);
}

void
BulkPutInt8Array(StringInfo buf, const int64 *v, int n)
{
	int			at = begin_field(buf);
	int			i;

	put_array_header(buf, n, INT8OID);
	for (i = 0; i < n; i++)
	{
		put_uint32(buf, 8);
		put_uint64(buf, (uint64) v[i]);
	}
	patch_length(buf, at);
}

void
BulkPutInt4Array(StringInfo buf, const int32 *v, int n)
{
	int			at = begin_field(buf);
	int			i;

	put_array_header(buf, n, INT4OID);
	for (i = 0; i < n; i++)
	{
		put_uint32(buf, 4);
		put_uint32(buf, (uint32) v[i]);
	}
	patch_length(buf, at);
}

void
BulkPutFloat8Array(StringInfo buf, const double *v, int n)
{
	int			at = begin_field(buf);
	int			i;

	put_array_header(buf, n, FLOAT8OID);
	for (i = 0; i < n; i++)
	{
		union
		{
			double		d;
			uint64		u;
		}			x;

		x.d = v[i];
		put_uint32(buf, 8);
		put_uint64(buf, x.u);
	}
	patch_length(buf, at);
}

void
BulkPutTextArray(StringInfo buf, const char *const *v, int n)
{
	int			at = begin_field(buf);
	int			i;

	put_array_header(buf, n, TEXTOID);
	for (i = 0; i < n; i++)
	{
		int			len = strlen(v[i]);

		put_uint32(buf, (uint32) len);
		appendBinaryStringInfo(buf, v[i], len);
	}
	patch_length(buf, at);
}
