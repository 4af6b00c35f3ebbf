/*
 * test_renew.c - renewal and backoff scheduling (renew.h): exact points
 * with the random value passed in, the floor for certificates that look
 * due, expired ones, zero and negative lifetimes, a notBefore in the
 * future, huge values, and the capped, jittered backoff.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>

#include <cmocka.h>

#include "renew.h"

#define NB 1700000000LL			/* a notBefore (Unix seconds) */
#define HOUR 3600LL

static void
point_is_renew_at_of_the_lifetime_plus_jitter(void **state)
{
	int64_t now = NB * 1000, life = HOUR * 1000;

	/* No jitter: notBefore + 0.5 x 1 h. */
	assert_int_equal(renew_point_ms(NB, NB + HOUR, 0.5, now, 0), now + life / 2);
	/* The largest jitter is a tenth of the lifetime (rnd modulo life/10 + 1). */
	assert_int_equal(renew_point_ms(NB, NB + HOUR, 0.5, now, (uint64_t)life / 10),
	    now + life / 2 + life / 10);
	assert_int_equal(renew_point_ms(NB, NB + HOUR, 0.5, now, (uint64_t)life / 10 + 1),
	    now + life / 2);
	assert_int_equal(renew_point_ms(NB, NB + HOUR, 0.5, now, 12345), now + life / 2 + 12345);
	/* Any random value stays within [0, life/10]. */
	for (uint64_t r = UINT64_MAX - 5; r != 5; r++) {
		int64_t at = renew_point_ms(NB, NB + HOUR, 0.5, now, r);

		assert_true(at >= now + life / 2 && at <= now + life / 2 + life / 10);
	}
	/* Other fractions. */
	assert_int_equal(renew_point_ms(NB, NB + HOUR, 0.8, now, 0), now + life * 8 / 10);
	assert_int_equal(renew_point_ms(NB, NB + 100, 0.25, now, 0), now + 25000);
	assert_int_equal(renew_delay_ms(renew_point_ms(NB, NB + HOUR, 0.5, now, 0), now), life / 2);
}

static void
already_past_the_renew_point(void **state)
{
	int64_t life = HOUR * 1000, na = (NB + HOUR) * 1000;
	int64_t now = NB * 1000 + life * 9 / 10;	/* 90 % gone, still valid */
	int64_t at = renew_point_ms(NB, NB + HOUR, 0.5, now, 0);

	/* Not at once: after renew_at / 2 of what is left (a quarter of 6 minutes). */
	assert_int_equal(at, now + (na - now) / 4);
	assert_int_equal(renew_delay_ms(at, now), 90000);
	/* Jitter cannot pull it below that floor either. */
	assert_int_equal(renew_point_ms(NB, NB + HOUR, 0.5, now, 777), at);
	/* One second before expiry: a quarter of a second later. */
	now = na - 1000;
	assert_int_equal(renew_point_ms(NB, NB + HOUR, 0.5, now, 0), now + 250);
}

static void
already_expired(void **state)
{
	int64_t now = (NB + 2 * HOUR) * 1000, at = renew_point_ms(NB, NB + HOUR, 0.5, now, 0);

	/* The formula alone: in the past, so renew now. */
	assert_int_equal(at, NB * 1000 + HOUR * 500);
	assert_int_equal(renew_delay_ms(at, now), 0);
	/* Expired exactly now: no floor either. */
	now = (NB + HOUR) * 1000;
	assert_int_equal(renew_delay_ms(renew_point_ms(NB, NB + HOUR, 0.5, now, 0), now), 0);
}

static void
zero_and_negative_lifetimes(void **state)
{
	int64_t now = NB * 1000 - 10000;

	/* A lifetime of 0 counts as one second; jitter up to 100 ms. */
	assert_int_equal(renew_point_ms(NB, NB, 0.5, now, 0), NB * 1000 + 500);
	assert_int_equal(renew_point_ms(NB, NB, 0.5, now, 100), NB * 1000 + 600);
	assert_int_equal(renew_point_ms(NB, NB, 0.5, now, 101), NB * 1000 + 500);
	/* notAfter before notBefore: the same one second after notBefore. */
	assert_int_equal(renew_point_ms(NB, NB - HOUR, 0.5, now, 0), NB * 1000 + 500);
	/* ... and never a negative delay. */
	assert_int_equal(renew_delay_ms(renew_point_ms(NB, NB - HOUR, 0.5, NB * 1000 + 5000, 0),
	    NB * 1000 + 5000), 0);
}

static void
not_before_in_the_future(void **state)
{
	/* The CA's clock is 10 minutes ahead: notBefore lies in our future. */
	int64_t now = NB * 1000 - 600000, at = renew_point_ms(NB, NB + HOUR, 0.5, now, 0);

	assert_int_equal(at, NB * 1000 + HOUR * 500);
	assert_int_equal(renew_delay_ms(at, now), 600000 + HOUR * 500);
}

static void
huge_values_saturate(void **state)
{
	int64_t at;

	/* Far future: no overflow, a defined far point. */
	at = renew_point_ms(INT64_MAX / 2, INT64_MAX, 0.5, NB * 1000, UINT64_MAX);
	assert_int_equal(at, INT64_MAX);
	assert_int_equal(renew_delay_ms(at, NB * 1000), INT64_MAX - NB * 1000);
	/* The widest validity there is. */
	at = renew_point_ms(INT64_MIN, INT64_MAX, 0.5, NB * 1000, UINT64_MAX);
	assert_true(at >= NB * 1000);
	at = renew_point_ms(INT64_MIN, INT64_MIN, 0.5, INT64_MIN, 0);
	assert_int_equal(renew_delay_ms(at, INT64_MAX), 0);
	assert_int_equal(renew_delay_ms(INT64_MAX, INT64_MIN), INT64_MAX);
	assert_int_equal(renew_delay_ms(INT64_MIN, INT64_MAX), 0);
	/* Odd fractions are clamped, never undefined. */
	assert_int_equal(renew_point_ms(NB, NB + HOUR, NAN, NB * 1000 + HOUR * 2000, 0), NB * 1000);
	assert_int_equal(renew_point_ms(NB, NB + HOUR, 7.0, NB * 1000 + HOUR * 2000, 0),
	    (NB + HOUR) * 1000);
	assert_int_equal(renew_point_ms(NB, NB + HOUR, -1.0, NB * 1000 + HOUR * 2000, 0), NB * 1000);
}

static void
backoff_doubles_to_the_cap(void **state)
{
	int64_t b = 0, seen[8];

	for (int i = 0; i < 8; i++)
		seen[i] = b = renew_backoff_next(b, 1000, 60000);
	assert_int_equal(seen[0], 1000);
	assert_int_equal(seen[1], 2000);
	assert_int_equal(seen[4], 16000);
	assert_int_equal(seen[5], 32000);
	assert_int_equal(seen[6], 60000);	/* capped, not 64000 */
	assert_int_equal(seen[7], 60000);
	assert_int_equal(renew_backoff_next(30000, 1000, 60000), 60000);
	assert_int_equal(renew_backoff_next(30001, 1000, 60000), 60000);
	/* Odd limits: min at least 1 ms, max at least min; no overflow. */
	assert_int_equal(renew_backoff_next(0, 0, 0), 1);
	assert_int_equal(renew_backoff_next(0, 5000, 1000), 5000);
	assert_int_equal(renew_backoff_next(5000, 5000, 1000), 5000);
	assert_int_equal(renew_backoff_next(INT64_MAX, 1000, INT64_MAX), INT64_MAX);
	assert_int_equal(renew_backoff_next(INT64_MAX / 2, 1, INT64_MAX), INT64_MAX - 1);
	/* A step below min after a config change starts again at min. */
	assert_int_equal(renew_backoff_next(100, 1000, 60000), 1000);
}

static void
backoff_jitter_is_ten_percent(void **state)
{
	assert_int_equal(renew_backoff_jitter(1000, 0), 900);
	assert_int_equal(renew_backoff_jitter(1000, 200), 1100);
	assert_int_equal(renew_backoff_jitter(1000, 201), 900);
	assert_int_equal(renew_backoff_jitter(1000, 100), 1000);
	for (uint64_t r = 0; r < 1000; r += 7) {
		int64_t d = renew_backoff_jitter(60000, r * 2654435761u);

		assert_true(d >= 54000 && d <= 66000);
	}
	/* Too small to jitter, never below 1 ms, never overflowing. */
	assert_int_equal(renew_backoff_jitter(5, 12345), 5);
	assert_int_equal(renew_backoff_jitter(0, 12345), 1);
	assert_int_equal(renew_backoff_jitter(-7, 12345), 1);
	assert_int_equal(renew_backoff_jitter(INT64_MAX, 2 * (uint64_t)(INT64_MAX / 10)), INT64_MAX);
	assert_true(renew_backoff_jitter(INT64_MAX, 0) < INT64_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(point_is_renew_at_of_the_lifetime_plus_jitter),
		cmocka_unit_test(already_past_the_renew_point),
		cmocka_unit_test(already_expired),
		cmocka_unit_test(zero_and_negative_lifetimes),
		cmocka_unit_test(not_before_in_the_future),
		cmocka_unit_test(huge_values_saturate),
		cmocka_unit_test(backoff_doubles_to_the_cap),
		cmocka_unit_test(backoff_jitter_is_ten_percent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
