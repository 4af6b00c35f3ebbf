/* test_heap.c - a daemon's heap kept small: freed memory back to the kernel, arenas capped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>
#include <pthread.h>

#include "heap.h"

#define NCHUNK 2048
#define CHUNK 4096		/* below the mmap threshold: from the heap */
#define NTHREADS 6

#if !defined(__SANITIZE_ADDRESS__)	/* glibc's allocator (ASan's: below) */
/* This process's resident anonymous memory, KiB (/proc/self/status RssAnon). */
static long
rss_anon_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "RssAnon: %ld kB", &v) == 1)
			break;
	fclose(f);
	assert_true(v >= 0);
	return v;
}

/* 8 MiB freed below a chunk still in use: only a trim gives its pages back. */
static void
trim_gives_back(void **state)
{
	static char *chunk[NCHUNK];
	char *pin;
	long before, held, after;

	before = rss_anon_kib();
	for (int i = 0; i < NCHUNK; i++) {
		assert_non_null(chunk[i] = malloc(CHUNK));
		memset(chunk[i], 0x5a, CHUNK);
	}
	assert_non_null(pin = malloc(64));
	for (int i = 0; i < NCHUNK; i++)
		free(chunk[i]);
	held = rss_anon_kib();
	/* glibc keeps the pages of a free block that is not the heap's top */
	assert_true(held - before >= NCHUNK * CHUNK / 1024 / 2);
	hsm_heap_trim();
	after = rss_anon_kib();
	assert_true(held - after >= NCHUNK * CHUNK / 1024 / 2);
	free(pin);
	hsm_heap_trim();	/* idempotent, nothing left to give */
}

static pthread_barrier_t bar;
static void *volatile held[NTHREADS];	/* volatile: the compiler keeps every malloc */

/* Allocate while every other thread holds its allocation too. */
static void *
allocating(void *arg)
{
	int i = (int)(intptr_t)arg;

	held[i] = malloc(1000);
	memset(held[i], 1, 1000);
	pthread_barrier_wait(&bar);
	free(held[i]);
	return NULL;
}

/* Threads that allocate at once share at most the arenas allowed. */
static void
arenas_capped(void **state)
{
	pthread_t th[NTHREADS];
	char *info = NULL;
	size_t len = 0;
	int heaps = 0;
	FILE *f;

	hsm_heap_lean(2);
	assert_int_equal(pthread_barrier_init(&bar, NULL, NTHREADS), 0);
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, allocating, (void *)(intptr_t)i), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	/* malloc_info lists one <heap nr="N"> per arena */
	assert_non_null(f = open_memstream(&info, &len));
	assert_int_equal(malloc_info(0, f), 0);
	fclose(f);
	for (const char *p = info; (p = strstr(p, "<heap nr=")) != NULL; p++)
		heaps++;
	free(info);
	assert_true(heaps >= 1);
	assert_true(heaps <= 2);
}
#else
/*
 * Under ASan, malloc is the sanitizer's: glibc's arenas and trim have
 * nothing to act on. Both calls must still leave allocation working.
 */
static void
trim_gives_back(void **state)
{
	char *p = malloc(CHUNK);

	assert_non_null(p);
	memset(p, 0x5a, CHUNK);
	free(p);
	hsm_heap_trim();
	assert_non_null(p = malloc(CHUNK));
	free(p);
}

static void
arenas_capped(void **state)
{
	char *p;

	hsm_heap_lean(2);
	assert_non_null(p = malloc(CHUNK));
	free(p);
}
#endif

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(trim_gives_back),
		cmocka_unit_test(arenas_capped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
