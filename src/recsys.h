/* recsys.h: state shared by every module of the extension. */
#ifndef RECSYS_H
#define RECSYS_H

/* true when recsys was loaded by shared_preload_libraries (its workers run) */
extern bool RecsysPreloaded;

/* Raise an error, with a hint, when recsys is not preloaded; what names the caller. */
extern void RecsysRequirePreload(const char *what);

#endif							/* RECSYS_H */
