/*
 * renew.h - when the agent renews a certificate and when it retries:
 * pure functions of the certificate's validity, the clock and a random
 * value the caller passes in (so tests are exact). docs/AGENT.md, "Life
 * cycle of one identity".
 *
 * Times are Unix seconds (validity) and milliseconds (the rest). Every
 * computation saturates instead of overflowing: a certificate valid until
 * the year 9999, or a corrupt one claiming INT64_MAX, gives a far but
 * defined time.
 */
#ifndef HSM_RENEW_H
#define HSM_RENEW_H

#include <stdint.h>

/*
 * The renewal point, Unix ms:
 *
 *   notBefore + renew_at x lifetime + jitter,
 *
 * jitter uniform in [0, lifetime / 10] (rnd modulo lifetime/10 + 1; the
 * caller draws rnd uniformly from all 64-bit values). A lifetime below
 * one second (zero, negative: a corrupt certificate) counts as one second.
 * A certificate that is still valid at now_ms is never renewed sooner than
 * renew_at / 2 of what is left of it: one that already looks due (a
 * backdated or future notBefore, an agent restarted late) is renewed soon,
 * but a renewal never chains into an immediate next one. An expired one
 * gets its point from the formula alone (in the past: renew now).
 * renew_at is a fraction in (0, 1); values outside are clamped.
 */
int64_t renew_point_ms(int64_t not_before, int64_t not_after, double renew_at, int64_t now_ms,
    uint64_t rnd);

/* Milliseconds from now_ms to point_ms, never negative. */
int64_t renew_delay_ms(int64_t point_ms, int64_t now_ms);

/*
 * The next backoff step after a failed attempt: min_ms after a success
 * (prev_ms 0), else prev_ms doubled, capped at max_ms. min_ms below 1
 * counts as 1, max_ms below min_ms as min_ms.
 */
int64_t renew_backoff_next(int64_t prev_ms, int64_t min_ms, int64_t max_ms);

/*
 * The wait for a backoff step: step_ms +- 10 % (step_ms - step_ms/10 +
 * rnd modulo (2 x step_ms/10 + 1)), at least 1 ms.
 */
int64_t renew_backoff_jitter(int64_t step_ms, uint64_t rnd);

#endif
