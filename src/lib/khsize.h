/*
 * khsize.h - how many token sessions the keyholder should sign on: a pure
 * state machine fed with measurements and the time (no clock, no I/O, no
 * locks of its own; the keyholder calls it under its lock).
 *
 * Every tick (the keyholder's: about KHSIZE_TICK_MS) gets what completed
 * since the last one: the number of token operations, the sum of their
 * service times (on the token) and the sum of their times in the
 * keyholder (queue + token), and how many are outstanding now. By
 * Little's law, sum(service)/interval is the mean number of busy sessions
 * L = X * W (throughput X, service latency W) and sum(sojourn)/interval
 * the mean number of requests in the keyholder, D = arrival rate x time in
 * the keyholder. D is the concurrency the demand asks for: it equals
 * X * W when nothing queues and grows with the queue when the sessions are
 * too few. The target is D plus a quarter of headroom (at least one),
 * within [min, max]:
 *
 *   grow    at once, to the target;
 *   shrink  only after the target stayed below the current size for
 *           shrink_ms (a quiet period), to the highest target seen in it;
 *   serial  a token whose latency grows with the concurrency (a TPM: one
 *           command at a time; a CPU-bound software token on few cores)
 *           gains nothing from more sessions. The least latency seen (the
 *           base, relearnt whenever at most 1.5 sessions were busy) tells
 *           it: when L >= 2 and W >= 2 x base, the token did the work of
 *           only L / (W / base) = X * base sessions. That many (at least
 *           min) becomes a cap, and the size drops to it at once. The cap
 *           is lifted and the base relearnt when the latency stays at
 *           2 x base or more for 3 intervals at the capped size (the token
 *           itself became slower: not a queue in it), and in any case
 *           after reprobe_ms, so a token that changed (or a load that
 *           misled) is measured again;
 *   ramp    a grow at most quadruples the size per tick (2, 8, 32, 64 in
 *           0.3 s), so a serial token is caught one step above its useful
 *           concurrency (a TPM must not get 64 sessions even briefly).
 */
#ifndef HSM_KHSIZE_H
#define HSM_KHSIZE_H

#include <stdbool.h>
#include <stdint.h>

#define KHSIZE_TICK_MS		100u	/* the keyholder's measuring interval */
#define KHSIZE_SHRINK_MS	30000u	/* default quiet period before shrinking */
#define KHSIZE_REPROBE_MS	120000u	/* a serial verdict is re-examined after this */

struct khsize_conf {
	int min, max;			/* 1 <= min <= max; min == max: a fixed size */
	uint64_t shrink_ms;		/* quiet period (0: KHSIZE_SHRINK_MS) */
	uint64_t reprobe_ms;		/* serial verdict's life (0: KHSIZE_REPROBE_MS) */
};

/* What completed in one interval (token operations only). */
struct khsize_sample {
	uint64_t n;			/* operations completed */
	uint64_t service_us;		/* sum of their times on the token */
	uint64_t sojourn_us;		/* sum of their times in the keyholder (queue + token) */
	int outstanding;		/* queued + performing at the tick */
};

/* Why the last tick changed the size (for the log), KHSIZE_SAME when it did not. */
enum khsize_why { KHSIZE_SAME = 0, KHSIZE_GROW, KHSIZE_SHRINK, KHSIZE_SERIAL, KHSIZE_REPROBE };

struct khsize {
	struct khsize_conf c;
	int cur;			/* sessions to use now */
	int cap;			/* serial token: its useful concurrency (0: none) */
	uint64_t cap_until;		/* when the cap is re-examined */
	int strikes;			/* capped intervals whose latency stayed >= 2 x base */
	uint64_t last;			/* time of the last tick */
	uint64_t base_us;		/* least service latency seen (0: not yet) */
	uint64_t quiet_since;		/* target below cur since (0: not quiet) */
	int quiet_peak;			/* highest target in the quiet period */
	/* The last interval with operations, for the log and the keyholder's POOL reply. */
	uint64_t w_us;			/* mean service latency */
	uint32_t busy_milli;		/* L x 1000 */
	uint32_t demand_milli;		/* D x 1000 */
	enum khsize_why why;
};

/*
 * Start at min sessions at time now_ms. conf->min and max are clamped to
 * 1..(max >= min); zero durations take the defaults. Never fails.
 */
void khsize_init(struct khsize *s, const struct khsize_conf *conf, uint64_t now_ms);

/*
 * "N" (a fixed size: min = max = N) or "MIN-MAX" (sized between), each
 * 1..limit in decimal digits, MIN <= MAX, into c->min and c->max (nothing
 * else changes). 0 or HSM_EINVAL.
 */
int khsize_parse(const char *s, int limit, struct khsize_conf *c);

/*
 * One tick at now_ms with what completed since the last one (m). Returns
 * the number of sessions to use from now on (s->cur); s->why says whether
 * and why it changed. A tick at or before the last one only records
 * nothing and returns s->cur.
 */
int khsize_tick(struct khsize *s, const struct khsize_sample *m, uint64_t now_ms);

/*
 * The keyholder was idle (nothing queued, performing or completed since
 * the last tick) and work arrives at now_ms: the next interval starts now,
 * so the idle time does not dilute the first measurement of a burst.
 */
void khsize_restart(struct khsize *s, uint64_t now_ms);

/* "grow", "shrink", "serial", "reprobe" or "same". */
const char *khsize_why_name(enum khsize_why why);

#endif
