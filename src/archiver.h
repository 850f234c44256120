/* archiver.h: the archiver background workers (placeholder). */
#ifndef RECSYS_ARCHIVER_H
#define RECSYS_ARCHIVER_H
extern void ArchiverInit(void);
#endif
