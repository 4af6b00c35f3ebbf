/* test_throttle.c - first per (source, reason) per interval, the rest counted and summarised. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "throttle.h"

struct seen {
	int n;
	char src[8][64], reason[8][128];
	uint64_t count[8], since[8];
};

static void
cb(void *arg, const char *src, const char *reason, uint64_t count, uint64_t since)
{
	struct seen *s = arg;

	if (s->n < 8) {
		snprintf(s->src[s->n], sizeof(s->src[0]), "%s", src);
		snprintf(s->reason[s->n], sizeof(s->reason[0]), "%s", reason);
		s->count[s->n] = count;
		s->since[s->n] = since;
	}
	s->n++;
}

static void
first_then_counted(void **state)
{
	struct throttle *t;
	struct seen s;

	assert_int_equal(throttle_new(0, 10, &t), HSM_EINVAL);
	assert_int_equal(throttle_new(4, 0, &t), HSM_EINVAL);
	assert_int_equal(throttle_new(4, 1000, &t), 0);
	assert_int_equal(throttle_next_ms(t, 0), -1);
	assert_int_equal(throttle_hit(t, "10.0.0.1", "bad MAC", 100), 1);
	assert_int_equal(throttle_hit(t, "10.0.0.1", "bad MAC", 200), 0);
	assert_int_equal(throttle_hit(t, "10.0.0.1", "bad MAC", 300), 0);
	assert_int_equal(throttle_hit(t, "10.0.0.1", "malformed", 300), 1);
	assert_int_equal(throttle_hit(t, "10.0.0.2", "bad MAC", 300), 1);
	assert_int_equal(throttle_next_ms(t, 500), 600);
	/* Nothing is due before the interval ends. */
	memset(&s, 0, sizeof(s));
	throttle_flush(t, 1099, 0, cb, &s);
	assert_int_equal(s.n, 0);
	/* Then the pair that counted events is summarised once; the others are forgotten. */
	throttle_flush(t, 1100, 0, cb, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.src[0], "10.0.0.1");
	assert_string_equal(s.reason[0], "bad MAC");
	assert_int_equal(s.count[0], 2);
	assert_int_equal(s.since[0], 100);
	/* Its next event is a first again. */
	assert_int_equal(throttle_hit(t, "10.0.0.1", "bad MAC", 1200), 1);
	memset(&s, 0, sizeof(s));
	throttle_flush(t, 1300, 0, cb, &s);
	assert_int_equal(s.n, 0);		/* the other two were quiet: dropped without a line */
	assert_int_equal(throttle_hit(t, "10.0.0.2", "bad MAC", 1300), 1);
	throttle_free(t);
	throttle_free(NULL);
	assert_int_equal(throttle_hit(NULL, "x", "y", 0), 1);
}

/* A flood of sources costs one summary line, not one line each. */
static void
overflow(void **state)
{
	struct throttle *t;
	struct seen s;
	char src[32];
	int firsts = 0;

	assert_int_equal(throttle_new(3, 1000, &t), 0);
	for (int i = 0; i < 100; i++) {
		snprintf(src, sizeof(src), "10.0.%d.%d", i / 250, i % 250);
		firsts += throttle_hit(t, src, "bad MAC", 10);
	}
	assert_int_equal(firsts, 3);
	memset(&s, 0, sizeof(s));
	throttle_flush(t, 0, 1, cb, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.src[0], "*");
	assert_int_equal(s.count[0], 97);
	/* After the flush the table has room again. */
	assert_int_equal(throttle_hit(t, "10.9.9.9", "bad MAC", 20), 1);
	throttle_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(first_then_counted),
		cmocka_unit_test(overflow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
