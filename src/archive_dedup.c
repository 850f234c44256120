/*
 * archive_dedup.c: drop real-time events a producer sent twice (see archive_dedup.h).
 *
 * Per partition: a hash of event_id -> offset of the real-time events archived last
 * (at most 2 * ARCHIVE_DEDUP_WINDOW, pruned back to the newest ARCHIVE_DEDUP_WINDOW by
 * offset), and the open batch's new ids and duplicates.  The batch's ids enter the
 * hash at once, so a duplicate inside one batch is caught too; a batch rolled back
 * (the queue path's failed PUT) takes its ids out again.  The hash mirrors
 * recsys.archive_recent_ids as committed, plus the open batch.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "archive_dedup.h"
#include "ingest_event.h"

typedef struct DedupEntry
{
	int64		event_id;		/* hash key */
	int64		offset;			/* where it was archived (or sits in the open batch) */
	int64		value_hash;		/* hash_bytes_extended of the message value */
} DedupEntry;

/* A growing array of int64. */
typedef struct Int64Array
{
	int64	   *v;
	int			n;
	int			cap;
} Int64Array;

struct ArchiveDedup
{
	char		topic[256];
	int32		partition;
	MemoryContext cxt;
	HTAB	   *ids;
	/* the open batch */
	Int64Array	new_ids;
	Int64Array	new_offsets;
	Int64Array	new_hashes;
	Int64Array	old_offsets;	/* an id seen before with another value: what it had */
	Int64Array	old_hashes;
	Int64Array	dup_offsets;
	Int64Array	dup_ids;
	Int64Array	dup_archived;
	Int64Array	dup_queue;
};

static void push(MemoryContext cxt, Int64Array *a, int64 x);
static Datum int8_array(Int64Array *a);
static void prune(ArchiveDedup *d);
static int	cmp_int64(const void *a, const void *b);
static bool tables_exist(void);

/* Append x to a. */
static void
push(MemoryContext cxt, Int64Array *a, int64 x)
{
	if (a->n == a->cap)
	{
		a->cap = a->cap ? a->cap * 2 : 256;
		a->v = a->v ? repalloc(a->v, sizeof(int64) * a->cap) :
			MemoryContextAlloc(cxt, sizeof(int64) * a->cap);
	}
	a->v[a->n++] = x;
}

/* a as a bigint[] datum (in the current memory context). */
static Datum
int8_array(Int64Array *a)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(a->n, 1));
	int			i;

	for (i = 0; i < a->n; i++)
		d[i] = Int64GetDatum(a->v[i]);
	return PointerGetDatum(construct_array(d, a->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* Whether recsys.archive_recent_ids and archive_duplicates exist (in a transaction). */
static bool
tables_exist(void)
{
	Oid			ns = get_namespace_oid("recsys", true);

	return OidIsValid(ns) &&
		OidIsValid(get_relname_relid("archive_recent_ids", ns)) &&
		OidIsValid(get_relname_relid("archive_duplicates", ns));
}

/* Load the window of one partition, in a transaction of its own. */
ArchiveDedup *
ArchiveDedupOpen(const char *topic, int32 partition)
{
	ArchiveDedup *d = NULL;
	HASHCTL		ctl;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	uint64		i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (tables_exist())
	{
		MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "recsys archiver dedup",
												  ALLOCSET_DEFAULT_SIZES);

		d = MemoryContextAllocZero(cxt, sizeof(ArchiveDedup));
		d->cxt = cxt;
		strlcpy(d->topic, topic, sizeof(d->topic));
		d->partition = partition;
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(DedupEntry);
		ctl.hcxt = cxt;
		d->ids = hash_create("recsys archiver recent event ids", 1024, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		values[0] = CStringGetTextDatum(topic);
		values[1] = Int32GetDatum(partition);
		if (SPI_execute_with_args("SELECT event_id, \"offset\", value_hash FROM recsys.archive_recent_ids"
								  " WHERE topic = $1 AND partition = $2",
								  2, types, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "recsys archiver: could not read recsys.archive_recent_ids");
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			DedupEntry *e = hash_search(d->ids, &id, HASH_ENTER, NULL);

			e->offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
			e->value_hash = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return d;
}

/* Check one valid event of the open batch; true when it is a resend (recorded). */
bool
ArchiveDedupCheck(ArchiveDedup *d, int64 event_id, const char *value, size_t len,
				  int64 offset, int64 queue_id)
{
	DedupEntry *e;
	bool		found;
	int64		h;

	if (d == NULL || event_id >= INGEST_EVENT_ID_FACTOR)
		return false;
	h = (int64) hash_bytes_extended((const unsigned char *) value, (int) len, 0);
	e = hash_search(d->ids, &event_id, HASH_ENTER, &found);
	if (found && e->value_hash == h)
	{
		push(d->cxt, &d->dup_offsets, offset);
		push(d->cxt, &d->dup_ids, event_id);
		push(d->cxt, &d->dup_archived, e->offset);
		push(d->cxt, &d->dup_queue, queue_id);
		return true;
	}
	/* new, or the same id with another value (no resend): archived, remembered */
	push(d->cxt, &d->new_ids, event_id);
	push(d->cxt, &d->new_offsets, offset);
	push(d->cxt, &d->new_hashes, h);
	push(d->cxt, &d->old_offsets, found ? e->offset : -1);
	push(d->cxt, &d->old_hashes, found ? e->value_hash : 0);
	e->offset = offset;
	e->value_hash = h;
	return false;
}

/* Duplicates dropped from the open batch. */
int64
ArchiveDedupBatchDuplicates(ArchiveDedup *d)
{
	return d ? d->dup_offsets.n : 0;
}

/* Keep the newest ARCHIVE_DEDUP_WINDOW ids (by offset) once the hash holds twice that. */
static void
prune(ArchiveDedup *d)
{
	long		n = hash_get_num_entries(d->ids);
	int64	   *offs;
	int64		threshold;
	HASH_SEQ_STATUS seq;
	DedupEntry *e;
	long		i = 0;
	Oid			types[3] = {TEXTOID, INT4OID, INT8OID};
	Datum		values[3];

	if (n <= 2 * ARCHIVE_DEDUP_WINDOW)
		return;
	offs = palloc(sizeof(int64) * n);
	hash_seq_init(&seq, d->ids);
	while ((e = hash_seq_search(&seq)) != NULL)
		offs[i++] = e->offset;
	qsort(offs, i, sizeof(int64), cmp_int64);
	threshold = offs[i - ARCHIVE_DEDUP_WINDOW];
	pfree(offs);
	hash_seq_init(&seq, d->ids);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->offset < threshold)
			(void) hash_search(d->ids, &e->event_id, HASH_REMOVE, NULL);
	values[0] = CStringGetTextDatum(d->topic);
	values[1] = Int32GetDatum(d->partition);
	values[2] = Int64GetDatum(threshold);
	if (SPI_execute_with_args("DELETE FROM recsys.archive_recent_ids"
							  " WHERE topic = $1 AND partition = $2 AND \"offset\" < $3",
							  3, types, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "recsys archiver: could not prune recsys.archive_recent_ids");
}

/* Record the open batch's duplicates and ids in the caller's transaction. */
void
ArchiveDedupRecord(ArchiveDedup *d)
{
	if (d == NULL)
		return;
	if (d->dup_offsets.n > 0)
	{
		Oid			types[6] = {TEXTOID, INT4OID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
		Datum		values[6];

		values[0] = CStringGetTextDatum(d->topic);
		values[1] = Int32GetDatum(d->partition);
		values[2] = int8_array(&d->dup_offsets);
		values[3] = int8_array(&d->dup_ids);
		values[4] = int8_array(&d->dup_archived);
		values[5] = int8_array(&d->dup_queue);
		if (SPI_execute_with_args("INSERT INTO recsys.archive_duplicates"
								  " (topic, partition, \"offset\", event_id, archived_offset, queue_id)"
								  " SELECT $1, $2, o, e, a, nullif(q, -1)"
								  " FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) AS u(o, e, a, q)"
								  " ON CONFLICT DO NOTHING",
								  6, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "recsys archiver: could not record duplicates");
	}
	if (d->new_ids.n > 0)
	{
		Oid			types[5] = {TEXTOID, INT4OID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
		Datum		values[5];

		values[0] = CStringGetTextDatum(d->topic);
		values[1] = Int32GetDatum(d->partition);
		values[2] = int8_array(&d->new_ids);
		values[3] = int8_array(&d->new_offsets);
		values[4] = int8_array(&d->new_hashes);
		/* (an id twice in one batch with two values: the later one is kept) */
		if (SPI_execute_with_args("INSERT INTO recsys.archive_recent_ids (topic, partition, event_id, \"offset\", value_hash)"
								  " SELECT DISTINCT ON (e) $1, $2, e, o, h"
								  " FROM unnest($3::bigint[], $4::bigint[], $5::bigint[]) AS u(e, o, h) ORDER BY e, o DESC"
								  " ON CONFLICT (topic, partition, event_id) DO UPDATE"
								  " SET \"offset\" = excluded.\"offset\", value_hash = excluded.value_hash",
								  5, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "recsys archiver: could not record recent event ids");
	}
	prune(d);
	d->new_ids.n = d->new_offsets.n = d->new_hashes.n = d->old_offsets.n = d->old_hashes.n = 0;
	d->dup_offsets.n = d->dup_ids.n = d->dup_archived.n = d->dup_queue.n = 0;
}

/* Forget the open batch: its ids leave the hash, its duplicates are dropped. */
void
ArchiveDedupForget(ArchiveDedup *d)
{
	int			i;

	if (d == NULL)
		return;
	/* newest first, so an id twice in the batch gets back what it had before it */
	for (i = d->new_ids.n - 1; i >= 0; i--)
	{
		if (d->old_offsets.v[i] < 0)
			(void) hash_search(d->ids, &d->new_ids.v[i], HASH_REMOVE, NULL);
		else
		{
			DedupEntry *e = hash_search(d->ids, &d->new_ids.v[i], HASH_ENTER, NULL);

			e->offset = d->old_offsets.v[i];
			e->value_hash = d->old_hashes.v[i];
		}
	}
	d->new_ids.n = d->new_offsets.n = d->new_hashes.n = d->old_offsets.n = d->old_hashes.n = 0;
	d->dup_offsets.n = d->dup_ids.n = d->dup_archived.n = d->dup_queue.n = 0;
}

/* Free the state of a partition. */
void
ArchiveDedupClose(ArchiveDedup *d)
{
	if (d)
		MemoryContextDelete(d->cxt);
}

/* Duplicates recorded so far (inside a transaction, SPI connected). */
int64
ArchiveDedupTotal(void)
{
	bool		isnull;
	int64		n;

	if (!tables_exist())
		return 0;
	if (SPI_execute("SELECT count(*) FROM recsys.archive_duplicates", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "recsys archiver: could not count recsys.archive_duplicates");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return n;
}
