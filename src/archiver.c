/* archiver.c: placeholder until the archiver module lands. */
#include "postgres.h"
#include "archiver.h"

/* Register the archiver workers and their shared state. */
void
ArchiverInit(void)
{
}
