/*
 * bulkcopy.h: load rows built in C into a table through COPY's own bulk path.
 *
 * The aggregate writes millions of rows at once.  Instead of one INSERT per row, it
 * runs COPY ... FROM a callback in binary format: CopyFrom batches the heap inserts
 * (table_multi_insert), maintains the indexes and checks the constraints, and binary
 * input costs no text parsing.  The caller supplies a row generator; rows are encoded
 * on demand as COPY pulls them, so no second copy of the data is ever held.
 */
#ifndef RECSYS_BULKCOPY_H
#define RECSYS_BULKCOPY_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/*
 * Append the next row to buf (BulkRowBegin, then one BulkPut* per column, in the
 * column order given to BulkCopy) and return true, or return false at the end.
 */
typedef bool (*BulkRowFn) (StringInfo buf, void *arg);

/*
 * COPY schema.table (columns...) FROM the rows of next(arg); returns the rows loaded.
 * columns is a NULL-terminated array of column names.
 */
extern uint64 BulkCopy(const char *schema, const char *table, const char *const *columns,
					   BulkRowFn next, void *arg);

/* Encoders of the binary COPY format (network byte order, as the types' recv). */
extern void BulkRowBegin(StringInfo buf, int16 ncolumns);
extern void BulkPutNull(StringInfo buf);
extern void BulkPutInt4(StringInfo buf, int32 v);
extern void BulkPutInt8(StringInfo buf, int64 v);
extern void BulkPutFloat8(StringInfo buf, double v);
extern void BulkPutBool(StringInfo buf, bool v);
/* a numeric(2,1) rating given in half stars (1 .. 10) */
extern void BulkPutHalves(StringInfo buf, int halves);
/* a timestamptz given in epoch seconds */
extern void BulkPutEpoch(StringInfo buf, int64 epoch_seconds);
extern void BulkPutText(StringInfo buf, const char *s, int len);
extern void BulkPutInt8Array(StringInfo buf, const int64 *v, int n);
extern void BulkPutInt4Array(StringInfo buf, const int32 *v, int n);
extern void BulkPutFloat8Array(StringInfo buf, const double *v, int n);
extern void BulkPutTextArray(StringInfo buf, const char *const *v, int n);

/* TimestampTz <-> epoch seconds */
extern int64 BulkTimestampToEpoch(int64 ts);
extern int64 BulkEpochToTimestamp(int64 epoch_seconds);

#endif							/* RECSYS_BULKCOPY_H */
