/*
 * libutil.c: plain-C helpers shared by the library wrappers; see libutil.h.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "libutil.h"

/* Format a message into err. */
void
LibSetError(char *err, size_t errlen, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Block every signal in this thread, saving the previous mask. */
void
LibBlockSignals(sigset_t *old)
{
	sigset_t	all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, old);
}

/* Restore a mask saved by LibBlockSignals. */
void
LibRestoreSignals(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}
