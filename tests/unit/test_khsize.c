/*
 * test_khsize.c - the keyholder's session sizing (khsize.h) against
 * modelled tokens on an injected clock: a token with latency whatever the
 * concurrency (a network HSM, the slow-token test setting), a serial one
 * (a TPM), one with a few parallel units, and closed-loop clients that each
 * keep one request in the keyholder (as the handshakes of the bench do).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "khsize.h"

#define T KHSIZE_TICK_MS

/*
 * A token with `units` parallel units (0: unlimited) of latency lat_us each,
 * and `clients` requests always in the keyholder: what one interval of T ms
 * at s->cur sessions completes.
 */
static struct khsize_sample
model(const struct khsize *s, int units, uint64_t lat_us, int clients)
{
	struct khsize_sample m = { 0, 0, 0, 0 };
	uint64_t busy = (uint64_t)(clients < s->cur ? clients : s->cur), w = lat_us;

	if (clients == 0)
		return m;
	if (units > 0 && busy > (uint64_t)units)
		w = lat_us * busy / (uint64_t)units;	/* the rest wait inside the token */
	m.n = busy * T * 1000 / w;
	m.service_us = m.n * w;
	m.sojourn_us = (uint64_t)clients * T * 1000;
	m.outstanding = clients;
	return m;
}

/* Run ticks of the model until now reaches `until`; returns the time. */
static uint64_t
run(struct khsize *s, uint64_t now, uint64_t until, int units, uint64_t lat_us, int clients)
{
	while (now < until) {
		struct khsize_sample m = model(s, units, lat_us, clients);

		now += T;
		khsize_tick(s, &m, now);
	}
	return now;
}

/* As run for n ticks; returns the largest size seen after a tick. */
static int
peak(struct khsize *s, uint64_t *now, int n, int units, uint64_t lat_us, int clients)
{
	int max = 0;

	for (int i = 0; i < n; i++) {
		*now = run(s, *now, *now + T, units, lat_us, clients);
		if (s->cur > max)
			max = s->cur;
	}
	return max;
}

/* A sizer between min and max with the default periods; returns the clock. */
static uint64_t
start(struct khsize *s, int min, int max)
{
	struct khsize_conf c = { min, max, 0, 0 };

	khsize_init(s, &c, 1000);
	return 1000;
}

static void
grows_to_little_with_headroom(void **state)
{
	struct khsize s;
	struct khsize_sample m;
	uint64_t now = start(&s, 2, 64);
	int prev, r, ticks = 0;

	assert_int_equal(s.cur, 2);
	/* 40 clients on a 5 ms token: 40 + 10 sessions, at most 4x per tick. */
	while (s.cur < 50 && ticks < 10) {
		prev = s.cur;
		m = model(&s, 0, 5000, 40);
		now += T;
		r = khsize_tick(&s, &m, now);
		assert_int_equal(r, s.cur);
		assert_int_equal(s.why, KHSIZE_GROW);
		assert_true(s.cur <= 4 * prev);
		ticks++;
	}
	assert_int_equal(s.cur, 50);
	assert_int_equal(ticks, 3);		/* 8, 32, 50 */
	/* Enough now: no queue, the demand is the 40 busy sessions. */
	now = run(&s, now, now + 20 * T, 0, 5000, 40);
	assert_int_equal(s.cur, 50);
	assert_int_equal(s.cap, 0);
	assert_int_equal(s.busy_milli, 40000);
	assert_int_equal(s.w_us, 5000);
}

static void
bounded_by_max_and_fixed_size(void **state)
{
	struct khsize_conf c = { 2, 16, 0, 0 }, fixed = { 8, 8, 0, 0 }, bad = { 0, -3, 0, 0 };
	struct khsize s;
	uint64_t now = 1000;

	khsize_init(&s, &c, now);
	now = run(&s, now, now + 20 * T, 0, 20000, 64);
	assert_int_equal(s.cur, 16);
	/* min == max: the size set by hand, whatever the load. */
	khsize_init(&s, &fixed, now);
	now = run(&s, now, now + 20 * T, 0, 20000, 64);
	assert_int_equal(s.cur, 8);
	now = run(&s, now, now + 400 * T, 0, 20000, 0);
	assert_int_equal(s.cur, 8);
	/* Nonsense bounds become 1..1. */
	khsize_init(&s, &bad, now);
	assert_int_equal(s.c.min, 1);
	assert_int_equal(s.c.max, 1);
	assert_int_equal(s.cur, 1);
}

static void
shrinks_after_quiet_period(void **state)
{
	struct khsize_conf c = { 2, 64, 5000, 0 };
	struct khsize s;
	uint64_t now = 1000, quiet;

	khsize_init(&s, &c, now);
	now = run(&s, now, now + 10 * T, 0, 5000, 40);
	assert_int_equal(s.cur, 50);
	/* 10 clients: the target is 12, but only 5 s after the first tick below the size. */
	quiet = now + T;
	now = run(&s, now, quiet + 4800, 0, 5000, 10);
	assert_int_equal(s.cur, 50);
	now = run(&s, now, quiet + 5000, 0, 5000, 10);
	assert_int_equal(s.cur, 12);
	assert_int_equal(s.why, KHSIZE_SHRINK);
	/* A burst within a quiet period restarts it and sets the floor of the shrink. */
	now = run(&s, now, now + T, 0, 5000, 40);
	assert_int_equal(s.cur, 48);		/* the ramp: 12 -> 48 -> 50 */
	now = run(&s, now, now + 2 * T, 0, 5000, 40);
	assert_int_equal(s.cur, 50);
	quiet = now + T;
	now = run(&s, now, quiet + 2000, 0, 5000, 0);
	now = run(&s, now, now + T, 0, 5000, 20);	/* 20 + 5 */
	now = run(&s, now, quiet + 5000, 0, 5000, 0);
	assert_int_equal(s.cur, 25);
	/* Idle: back to min after one more quiet period. */
	now = run(&s, now, now + 5000 + T, 0, 5000, 0);
	assert_int_equal(s.cur, 2);
	/* Requests waiting while none completes (a very slow token) are demand too. */
	{
		struct khsize_sample m = { 0, 0, 0, 6 };

		now += T;
		assert_int_equal(khsize_tick(&s, &m, now), 7);
	}
	/* After an idle spell, the first interval of a burst starts with it. */
	{
		struct khsize_sample m = { 40, 40 * 5000, 40 * 5000 + 39 * 5000 * 20, 0 };

		now += 10000;
		khsize_restart(&s, now - T);
		assert_int_equal(khsize_tick(&s, &m, now), 28);	/* D 41 -> 51, at most 4 x 7 */
		khsize_restart(&s, now - 5 * T);		/* never backwards */
		assert_int_equal(s.last, now);
	}
}

static void
serial_token_kept_at_useful_concurrency(void **state)
{
	struct khsize_conf c = { 2, 64, 0, 30000 };
	struct khsize s;
	uint64_t now = 1000, capped;

	khsize_init(&s, &c, now);
	/* A TPM: 3 ms per signature, one at a time, 64 clients waiting. */
	assert_int_equal(peak(&s, &now, 50, 1, 3000, 64), 8);		/* one step above, caught there */
	assert_int_equal(s.cur, 2);
	assert_int_equal(s.cap, 2);
	capped = s.cap_until;
	/* After reprobe_ms, measured again: one step up, capped again. */
	now = run(&s, now, capped - T, 1, 3000, 64);
	assert_int_equal(s.cap, 2);
	now = run(&s, now, capped, 1, 3000, 64);
	assert_int_equal(s.cap, 0);
	assert_int_equal(s.cur, 8);
	assert_int_equal(peak(&s, &now, 20, 1, 3000, 64), 2);
	assert_int_equal(s.cur, 2);
	assert_int_equal(s.cap, 2);
}

static void
partly_parallel_token(void **state)
{
	struct khsize s;
	uint64_t now = start(&s, 2, 64);

	/* 4 parallel units of 2 ms: 2 -> 8, where the latency doubles: 4. */
	now = run(&s, now, now + 30 * T, 4, 2000, 64);
	assert_int_equal(s.cap, 4);
	assert_int_equal(s.cur, 4);
}

static void
parallel_token_with_jitter_is_not_serial(void **state)
{
	struct khsize s;
	uint64_t now = start(&s, 2, 64);

	/* 20 ms, one interval in three at 1.8x: never a cap. */
	for (int i = 0; i < 60; i++) {
		struct khsize_sample m = model(&s, 0, i % 3 == 2 ? 36000 : 20000, 64);

		now += T;
		khsize_tick(&s, &m, now);
		assert_int_equal(s.cap, 0);
	}
	assert_int_equal(s.cur, 64);
}

static void
slower_token_is_not_mistaken_for_serial(void **state)
{
	struct khsize s;
	uint64_t now = start(&s, 2, 64);

	now = run(&s, now, now + 10 * T, 0, 5000, 40);
	assert_int_equal(s.cur, 50);
	/* The same token becomes 4x slower under full load: it looks serial for a moment... */
	now = run(&s, now, now + T, 0, 20000, 40);
	assert_int_equal(s.why, KHSIZE_SERIAL);
	assert_int_equal(s.cur, 10);
	/* ...but the latency stays at the capped size: relearnt, sized up again. */
	now = run(&s, now, now + 2 * T, 0, 20000, 40);
	assert_int_equal(s.cap, 10);
	now = run(&s, now, now + T, 0, 20000, 40);
	assert_int_equal(s.cap, 0);
	assert_int_equal(s.cur, 40);
	now = run(&s, now, now + 10 * T, 0, 20000, 40);
	assert_int_equal(s.cur, 50);
	assert_int_equal(s.cap, 0);
}

static void
parse_bounds(void **state)
{
	struct khsize_conf c = { 0, 0, 7, 9 };

	assert_int_equal(khsize_parse("8", 64, &c), 0);
	assert_int_equal(c.min, 8);
	assert_int_equal(c.max, 8);
	assert_int_equal(c.shrink_ms, 7);
	assert_int_equal(khsize_parse("1-64", 64, &c), 0);
	assert_int_equal(c.min, 1);
	assert_int_equal(c.max, 64);
	assert_int_equal(khsize_parse("4-4", 64, &c), 0);
	assert_int_equal(c.min, 4);
	assert_int_equal(c.max, 4);
	static const char *const bad[] = { "", "0", "65", "-", "2-", "-8", "8-2", "2-65", "+2", " 2",
	    "2 ", "2-8-9", "0x10", "00002", "2--8" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (khsize_parse(bad[i], 64, &c) != HSM_EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	assert_int_equal(c.min, 4);
}

static void
clock_not_moving(void **state)
{
	struct khsize_conf c = { 2, 64, 0, 0 };
	struct khsize s;
	struct khsize_sample m = { 1000, 20000000, 64000000, 64 };

	khsize_init(&s, &c, 5000);
	assert_int_equal(khsize_tick(&s, &m, 5000), 2);
	assert_int_equal(khsize_tick(&s, &m, 4000), 2);
	assert_int_equal(s.why, KHSIZE_SAME);
	assert_string_equal(khsize_why_name(KHSIZE_GROW), "grow");
	assert_string_equal(khsize_why_name(KHSIZE_SERIAL), "serial");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(grows_to_little_with_headroom),
		cmocka_unit_test(bounded_by_max_and_fixed_size),
		cmocka_unit_test(shrinks_after_quiet_period),
		cmocka_unit_test(serial_token_kept_at_useful_concurrency),
		cmocka_unit_test(partly_parallel_token),
		cmocka_unit_test(parallel_token_with_jitter_is_not_serial),
		cmocka_unit_test(slower_token_is_not_mistaken_for_serial),
		cmocka_unit_test(parse_bounds),
		cmocka_unit_test(clock_not_moving),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
