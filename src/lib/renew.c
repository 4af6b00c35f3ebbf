/*
 * renew.c - renewal and backoff scheduling (see renew.h). Pure: no clock,
 * no randomness of its own.
 */
#include <math.h>
#include <stdint.h>

#include "renew.h"

static int64_t
sat_add(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

static int64_t
sat_sub(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_sub_overflow(a, b, &r))
		return b < 0 ? INT64_MAX : INT64_MIN;
	return r;
}

static int64_t
sat_mul(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_mul_overflow(a, b, &r))
		return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
	return r;
}

/* x * f for a fraction f in [0, 1], rounded down, without overflow. */
static int64_t
scale(int64_t x, double f)
{
	long double v = (long double)x * (long double)f;

	if (v >= (long double)INT64_MAX)
		return INT64_MAX;
	if (v <= (long double)INT64_MIN)
		return INT64_MIN;
	return (int64_t)floorl(v);
}

int64_t
renew_point_ms(int64_t not_before, int64_t not_after, double renew_at, int64_t now_ms,
    uint64_t rnd)
{
	int64_t nb_ms = sat_mul(not_before, 1000), na_ms = sat_mul(not_after, 1000);
	int64_t life_ms = sat_sub(na_ms, nb_ms), at;

	if (!(renew_at > 0.0))		/* also NaN */
		renew_at = 0.0;
	if (renew_at > 1.0)
		renew_at = 1.0;
	if (life_ms < 1000)
		life_ms = 1000;
	at = sat_add(sat_add(nb_ms, scale(life_ms, renew_at)),
	    (int64_t)(rnd % ((uint64_t)life_ms / 10 + 1)));
	if (na_ms > now_ms) {
		int64_t floor_ms = sat_add(now_ms, scale(sat_sub(na_ms, now_ms), renew_at / 2));

		if (at < floor_ms)
			at = floor_ms;
	}
	return at;
}

int64_t
renew_delay_ms(int64_t point_ms, int64_t now_ms)
{
	int64_t d = sat_sub(point_ms, now_ms);

	return d < 0 ? 0 : d;
}

int64_t
renew_backoff_next(int64_t prev_ms, int64_t min_ms, int64_t max_ms)
{
	if (min_ms < 1)
		min_ms = 1;
	if (max_ms < min_ms)
		max_ms = min_ms;
	if (prev_ms <= 0)
		return min_ms;
	if (prev_ms > max_ms / 2)
		return max_ms;
	return prev_ms * 2 < min_ms ? min_ms : prev_ms * 2;
}

int64_t
renew_backoff_jitter(int64_t step_ms, uint64_t rnd)
{
	int64_t j, d;

	if (step_ms < 1)
		return 1;
	j = step_ms / 10;
	d = sat_add(step_ms - j, (int64_t)(rnd % (uint64_t)(2 * j + 1)));
	return d < 1 ? 1 : d;
}
