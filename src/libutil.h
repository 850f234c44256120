/*
 * libutil.h: small plain-C helpers shared by the library wrappers (csvreader, kafka,
 * s3, http, the archiver's watermark thread). No PostgreSQL header: these modules
 * talk to libraries and hand plain results to the PostgreSQL side.
 */
#ifndef RECSYS_LIBUTIL_H
#define RECSYS_LIBUTIL_H

#include <signal.h>
#include <stddef.h>

/* Format a message into the caller's error buffer (nothing when err is NULL). */
extern void LibSetError(char *err, size_t errlen, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/*
 * Block every signal in this thread, saving the previous mask in *old. Libraries that
 * start threads (librdkafka, libcurl's resolver) create them with the mask of the
 * creating thread: created inside this bracket, they never run PostgreSQL's handlers.
 */
extern void LibBlockSignals(sigset_t *old);

/* Restore the mask saved by LibBlockSignals. */
extern void LibRestoreSignals(const sigset_t *old);

#endif							/* RECSYS_LIBUTIL_H */
