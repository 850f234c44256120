/* ingest.h: catalogue loading, ratings ingestion and the outbox relay (placeholder). */
#ifndef RECSYS_INGEST_H
#define RECSYS_INGEST_H
extern void IngestInit(void);
#endif
