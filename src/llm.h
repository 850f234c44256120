/*
 * llm.h: the LLM re-ranking client (one OpenAI Chat Completions call).
 *
 * Plain C (libcurl + jansson), no PostgreSQL header: the recommendation code hands it
 * the user's favourite genres, a few liked movies and the engine's top candidates, and
 * gets back the model's picks, each a candidate id with a short reason, in the model's
 * order. Ids that are not candidates and repeated ids are dropped and counted.
 *
 * The prompt's user message holds one line per movie, which the project's test server
 * (test/llm_server.py) reads back:
 *
 *   picks wanted: <n>
 *   liked <id> | <title> (<year>) | <genre>, <genre>
 *   candidate <id> | <title> (<year>) | <genre>, <genre>
 *
 * (" (<year>)" left out when the year is 0; '|' and control characters in titles and
 * genres become '/' and ' '.)
 */
#ifndef RECSYS_LLM_H
#define RECSYS_LLM_H

#include <stddef.h>
#include <stdint.h>

/* Nonzero: stop now (a cancel). Polled at least every 100 ms during the request. */
typedef int (*LlmInterruptFn) (void *arg);

typedef struct LlmMovie
{
	int64_t		movie_id;
	const char *title;
	int			year;			/* 0: unknown */
	const char *genres;			/* "Action|Sci-Fi" (NULL or "": none) */
	double		score;			/* engine score, candidates only (not sent) */
} LlmMovie;

typedef struct LlmRequest
{
	const char *endpoint;		/* base URL, "https://api.openai.com/v1": POST
								 * <endpoint>/chat/completions */
	const char *model;
	const char *api_key;		/* may be NULL: no Authorization header */
	int			timeout_ms;		/* the whole request (<= 0: 10 s) */
	const char *const *favorite_genres;
	int			nfavorite;
	const LlmMovie *liked;		/* a few of the user's top-rated movies */
	int			nliked;
	const LlmMovie *candidates; /* the engine's top candidates, best first */
	int			ncandidates;
	int			n_wanted;		/* how many picks to ask for (at most
								 * ncandidates are asked for) */
	LlmInterruptFn interrupt;	/* may be NULL */
	void	   *interrupt_arg;
} LlmRequest;

typedef struct LlmPick
{
	int64_t		movie_id;		/* always one of the candidates */
	char		reason[256];	/* the model's sentence, valid UTF-8, at most 255
								 * bytes; "" when it gave none */
} LlmPick;

typedef struct LlmResult
{
	LlmPick    *picks;			/* caller-allocated array of n_wanted */
	int			npicks;			/* picks kept, 0..n_wanted, in the model's order */
	int			dropped_unknown;	/* entries whose id is not a candidate (or no id) */
	int			dropped_duplicate;	/* entries repeating a kept id */
	long		http_status;	/* 0 when no answer came */
} LlmResult;

#define LLM_OK			0
#define LLM_TIMEOUT		1		/* no answer within timeout_ms */
#define LLM_HTTP_ERROR	2		/* a status other than 200: http_status says which */
#define LLM_BAD_REPLY	3		/* unparsable JSON, no choices, or no valid
								 * candidate id at all */
#define LLM_INTERRUPTED 4
#define LLM_ERROR		5		/* anything else (connection refused, out of
								 * memory, a bad request) */

/*
 * Ask the model to re-rank req's candidates: one Chat Completions call, bounded by
 * req->timeout_ms and stopped within 100 ms when req->interrupt returns nonzero.
 * Fills res (res->picks must hold req->n_wanted entries) and returns an LLM_* code;
 * on failure a message in err, which never contains the API key. Not thread-safe:
 * one call at a time per process (it reuses one libcurl handle and its connection).
 */
extern int	LlmRerank(const LlmRequest *req, LlmResult *res, char *err, size_t errlen);

/* Return the name of an LLM_* code ("ok", "timeout", "http error", ...). */
extern const char *LlmStatusName(int rc);

#endif							/* RECSYS_LLM_H */
