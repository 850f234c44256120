/* ingest.c: placeholder until the ingestion module lands. */
#include "postgres.h"
#include "ingest.h"

/* Register ingestion workers and shared state. */
void
IngestInit(void)
{
}
