/*
 * test_ratelog.c - throttled log lines (ratelog.h): at most per_sec lines
 * a second over all keys, the rest counted per key and summarised once
 * per interval, keys beyond the table counted together, and the pending
 * count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ratelog.h"

struct sum {
	int calls;
	uint64_t key[RATELOG_KEYS + 2];
	unsigned long n[RATELOG_KEYS + 2];
	uint64_t since[RATELOG_KEYS + 2];
};

static void
on_summary(void *arg, uint64_t key, unsigned long n, uint64_t since)
{
	struct sum *s = arg;

	assert_true(s->calls < RATELOG_KEYS + 2);
	s->key[s->calls] = key;
	s->n[s->calls] = n;
	s->since[s->calls++] = since;
}

static void
per_second_then_counted(void **state)
{
	struct ratelog r;
	struct sum s = { 0 };
	int logged = 0;

	ratelog_init(&r, 3, 10000);
	/* 100 lines of uid 7 in the first second: 3 logged, 97 counted. */
	for (int i = 0; i < 100; i++)
		logged += ratelog_hit(&r, 7, 5000 + (uint64_t)i);
	assert_int_equal(logged, 3);
	assert_int_equal(ratelog_pending(&r), 97);
	/* The next second: 3 more may be logged. */
	assert_true(ratelog_hit(&r, 8, 6000));
	assert_true(ratelog_hit(&r, 7, 6001));
	assert_true(ratelog_hit(&r, 7, 6002));
	assert_false(ratelog_hit(&r, 8, 6003));
	assert_int_equal(ratelog_pending(&r), 98);
	/* Not due before the interval since each key's first unlogged line. */
	ratelog_flush(&r, 14000, on_summary, &s);
	assert_int_equal(s.calls, 0);
	ratelog_flush(&r, 15003, on_summary, &s);
	assert_int_equal(s.calls, 1);
	assert_true(s.key[0] == 7);
	assert_int_equal(s.n[0], 97);
	assert_true(s.since[0] == 5003);
	ratelog_flush(&r, 16003, on_summary, &s);
	assert_int_equal(s.calls, 2);
	assert_true(s.key[1] == 8);
	assert_int_equal(s.n[1], 1);
	assert_int_equal(ratelog_pending(&r), 0);
	/* Summarised: nothing more until new lines are counted. */
	ratelog_flush(&r, 90000, on_summary, &s);
	assert_int_equal(s.calls, 2);
}

static void
many_keys_share_the_last_slot(void **state)
{
	struct ratelog r;
	struct sum s = { 0 };
	unsigned long others = 0, total = 0;

	ratelog_init(&r, 1, 1000);
	assert_true(ratelog_hit(&r, 0, 0));
	for (uint64_t k = 1; k <= RATELOG_KEYS + 10; k++)
		assert_false(ratelog_hit(&r, k, 10));
	ratelog_flush(&r, 2000, on_summary, &s);
	assert_int_equal(s.calls, RATELOG_KEYS + 1);
	for (int i = 0; i < s.calls; i++) {
		total += s.n[i];
		if (s.key[i] == RATELOG_OTHER)
			others = s.n[i];
	}
	assert_int_equal(others, 10);
	assert_int_equal(total, RATELOG_KEYS + 10);
	/* The table is free again. */
	assert_int_equal(r.nkeys, 0);
	assert_int_equal(ratelog_pending(&r), 0);
}

static void
bounds(void **state)
{
	struct ratelog r;

	ratelog_init(&r, 0, 5);		/* at least 1 a second, summaries at most every second */
	assert_int_equal(r.per_sec, 1);
	assert_int_equal(r.interval_ms, 1000);
	assert_true(ratelog_hit(&r, 1, 5000));
	assert_false(ratelog_hit(&r, 1, 5000));
	/* A clock that goes back starts a new second rather than stalling. */
	assert_true(ratelog_hit(&r, 1, 4000));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(per_second_then_counted),
		cmocka_unit_test(many_keys_share_the_last_slot),
		cmocka_unit_test(bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
