/* test_scache.c - the per-thread cache of small blocks: malloc's contracts kept, blocks reused, threads. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scache.h"

/* Every size class and beyond: aligned, writable to its size, freed. */
static void
sizes(void **state)
{
	static const size_t n[] = { 0, 1, 31, 32, 33, 100, 1024, 4095, 4096, 4097, 100000 };
	uint8_t *p;

	for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		assert_non_null(p = sc_malloc(n[i]));
		assert_int_equal((uintptr_t)p % 16, 0);
		memset(p, 0xa5, n[i]);
		sc_free(p);
	}
	sc_free(NULL);
}

/* calloc zeroes (also a reused, dirty block) and refuses an overflowing product. */
static void
calloc_zero(void **state)
{
	uint8_t *p, *q;

	assert_non_null(p = sc_malloc(200));
	memset(p, 0xff, 200);
	sc_free(p);
	assert_non_null(q = sc_calloc(10, 20));
	for (size_t i = 0; i < 200; i++)
		assert_int_equal(q[i], 0);
	sc_free(q);
	assert_null(sc_calloc(SIZE_MAX / 2, 4));
}

/* realloc keeps the bytes, growing within a class, across classes, to and from large blocks. */
static void
realloc_keeps(void **state)
{
	uint8_t *p;
	size_t n;

	assert_non_null(p = sc_realloc(NULL, 10));
	for (n = 0; n < 10; n++)
		p[n] = (uint8_t)n;
	for (size_t to = 20; to <= 70000; to = to * 3 + 1) {
		assert_non_null(p = sc_realloc(p, to));
		for (n = 0; n < 10; n++)
			assert_int_equal(p[n], (uint8_t)n);
		memset(p + 10, 0x11, to - 10);
	}
	assert_non_null(p = sc_realloc(p, 16));
	for (n = 0; n < 10; n++)
		assert_int_equal(p[n], (uint8_t)n);
	sc_free(p);
}

/*
 * A block given back is handed out again to the same thread (that is
 * the point); under AddressSanitizer the cache is off, so a freed block
 * waits in the sanitizer's quarantine instead and a use after free is
 * still caught.
 */
static void
reuse(void **state)
{
	void *p, *q;

	assert_non_null(p = sc_malloc(64));
	sc_free(p);
	assert_non_null(q = sc_malloc(60));
#if defined(__SANITIZE_ADDRESS__)
	assert_ptr_not_equal(p, q);
#else
	assert_ptr_equal(p, q);
#endif
	sc_free(q);
	sc_trim();	/* all given back; the cache works on */
	assert_non_null(q = sc_malloc(60));
	sc_free(q);
}

static void *
free_there(void *arg)
{
	void **v = arg;

	for (int i = 0; i < 1000; i++)
		sc_free(v[i]);
	return NULL;
}

static void *
churn(void *arg)
{
	void *v[300];

	for (int r = 0; r < 50; r++) {
		for (int i = 0; i < 300; i++) {
			v[i] = sc_malloc((size_t)(i * 13) % 5000);
			memset(v[i], r, (size_t)(i * 13) % 5000);
		}
		for (int i = 299; i >= 0; i--)
			sc_free(v[i]);
	}
	return NULL;
}

/* Blocks freed by another thread, threads churning at once, threads ending with full caches. */
static void
threads(void **state)
{
	void *v[1000];
	pthread_t t[4];

	for (int i = 0; i < 1000; i++)
		assert_non_null(v[i] = sc_malloc((size_t)i * 7 % 3000));
	assert_int_equal(pthread_create(&t[0], NULL, free_there, v), 0);
	assert_int_equal(pthread_join(t[0], NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn, NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sizes),
		cmocka_unit_test(calloc_zero),
		cmocka_unit_test(realloc_keeps),
		cmocka_unit_test(reuse),
		cmocka_unit_test(threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
