/*
 * tap.h: the few TAP helpers the C unit tests share (header-only).
 *
 *   ok(cond, "what");   ...   return tap_done();
 */
#ifndef RECSYS_TAP_H
#define RECSYS_TAP_H

#include <stdio.h>

static int	testno = 0;
static int	failures = 0;

/* Print one TAP result line. */
static void
ok(int cond, const char *what)
{
	testno++;
	printf("%sok %d - %s\n", cond ? "" : "not ", testno, what);
	if (!cond)
		failures++;
}

/* Print the plan; the exit status: 0 when every check passed. */
static int
tap_done(void)
{
	printf("1..%d\n", testno);
	return failures ? 1 : 0;
}

#endif							/* RECSYS_TAP_H */
