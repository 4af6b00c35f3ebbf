/*
 * throttle.h - count repeated events by (source, reason) and let only the
 * first of each pair per interval through: for the log and audit lines a
 * peer could otherwise multiply at will (one refused connection, one
 * forged MAC: one line each).
 *
 * throttle_hit() says whether an event is the first of its pair in the
 * pair's current interval (write it in full now) or one to count;
 * throttle_flush() then reports every pair whose interval ended with
 * events counted, once, with the count (one summary line each). At most
 * max_keys pairs are tracked at once; an event of a new pair while the
 * table is full is counted under the pair ("*", "*"), so a flood from many
 * sources costs one summary line, never one line per source. Thread-safe.
 */
#ifndef HSM_THROTTLE_H
#define HSM_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#define THROTTLE_SRC_MAX 63	/* longer sources and reasons are cut */
#define THROTTLE_REASON_MAX 127

struct throttle;

/*
 * A throttle of at most max_keys pairs (1..65536), each with an interval
 * of interval_ms (> 0). 0, HSM_EINVAL or HSM_ENOMEM.
 */
int throttle_new(size_t max_keys, uint64_t interval_ms, struct throttle **out);
/* Free it (without a flush). Accepts NULL. */
void throttle_free(struct throttle *t);

/*
 * An event of (src, reason) at now_ms (monotonic): 1 when it is the first
 * of its pair in the pair's interval (the caller writes it in full), 0
 * when it was counted for the pair's summary. A NULL t lets everything
 * through.
 */
int throttle_hit(struct throttle *t, const char *src, const char *reason, uint64_t now_ms);

/*
 * Summaries: cb(arg, src, reason, count, since_ms) for every pair whose
 * interval has ended by now_ms (every pair when all is set) and that
 * counted events (count > 0: the events after the first; since_ms: when
 * its interval began); those pairs are forgotten, so the next event of
 * one is a first again. cb runs without the throttle's lock and may call
 * throttle_hit. Accepts a NULL t.
 */
typedef void (*throttle_cb)(void *arg, const char *src, const char *reason, uint64_t count,
    uint64_t since_ms);
void throttle_flush(struct throttle *t, uint64_t now_ms, int all, throttle_cb cb, void *arg);

/* Milliseconds from now_ms until a pair's interval ends (0: due), or -1 when none is tracked. */
int64_t throttle_next_ms(struct throttle *t, uint64_t now_ms);

#endif
