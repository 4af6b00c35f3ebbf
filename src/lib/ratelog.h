/*
 * ratelog.h - log lines that peers can provoke (a refused connection, a
 * refused signature), throttled so that a peer cannot flood the log: at
 * most per_sec lines a second over all keys, the rest counted per key (a
 * uid, say) and reported as one summary line per key and interval ("57
 * more refused connections from uid 1000 not logged").
 *
 * Not thread-safe: the owner serialises calls. Pure bookkeeping: the
 * caller prints, with the times it passes (monotonic ms).
 */
#ifndef HSM_RATELOG_H
#define HSM_RATELOG_H

#include <stdint.h>

#define RATELOG_KEYS 64			/* keys counted apart; more share RATELOG_OTHER */
#define RATELOG_OTHER UINT64_MAX	/* the key of the lines of every key beyond them */

struct ratelog_key {
	uint64_t key;
	unsigned long unlogged;		/* lines not logged since the last summary */
	uint64_t since;			/* monotonic ms of the first of them */
};

struct ratelog {
	unsigned per_sec;		/* lines logged per second, over all keys */
	unsigned interval_ms;		/* a key's summary at most this often */
	uint64_t window;		/* start of the current second */
	unsigned logged;		/* lines logged in it */
	unsigned long total_unlogged;
	struct ratelog_key keys[RATELOG_KEYS + 1];	/* the last one: RATELOG_OTHER */
	unsigned nkeys;
};

/* Set up r: per_sec lines a second (at least 1), summaries every interval_ms (at least 1000). */
void ratelog_init(struct ratelog *r, unsigned per_sec, unsigned interval_ms);

/*
 * One line for key at now: 1 when it may be logged now, 0 when it is
 * counted for key's summary instead.
 */
int ratelog_hit(struct ratelog *r, uint64_t key, uint64_t now_ms);

/*
 * Summaries due at now: fn(arg, key, n, since_ms) for every key whose
 * first unlogged line is at least interval_ms old (key RATELOG_OTHER for
 * keys beyond RATELOG_KEYS), after which its count starts again. fn may
 * log; it must not call back into r.
 */
void ratelog_flush(struct ratelog *r, uint64_t now_ms,
    void (*fn)(void *arg, uint64_t key, unsigned long n, uint64_t since_ms), void *arg);

/* Lines counted and not yet summarised, over all keys. */
unsigned long ratelog_pending(const struct ratelog *r);

#endif
