/* recsys.h: state shared by every module of the extension. */
#ifndef RECSYS_H
#define RECSYS_H

/* true when recsys was loaded by shared_preload_libraries (its workers run) */
extern bool RecsysPreloaded;

/* Raise an error, with a hint, when recsys is not preloaded; what names the caller. */
extern void RecsysRequirePreload(const char *what);

/*
 * Pause at a named test fault point of process kind who ("archiver", "relay",
 * "aggregate") when the suite armed it (see recsys.c).
 */
extern void RecsysFaultPoint(const char *who, const char *point, bool release);

#endif							/* RECSYS_H */
