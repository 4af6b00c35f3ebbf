/* scache.c - a per-thread cache of small memory blocks (see scache.h). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scache.h"

#if defined(__SANITIZE_ADDRESS__)
#define SC_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SC_OFF 1
#endif
#endif

#ifndef SC_OFF
#define HDR		16		/* keeps the block 16-byte aligned */
#define NCLASS		8		/* 32, 64, ..., 4096 */
#define BIG		0xff		/* a block malloc'd at its own size */

/*
 * Blocks kept per class: a worker with a few hundred streams in flight
 * holds a few thousand small blocks. At most about 5 MiB a thread, given
 * back by sc_trim when its owner trims its memory after a burst.
 */
static const unsigned keep[NCLASS] = { 4096, 4096, 4096, 2048, 1024, 512, 256, 128 };

struct tcache {
	void *head[NCLASS];
	unsigned n[NCLASS];
};

static __thread struct tcache *tc;
static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* A block's class, or BIG. */
static unsigned
class_of(size_t n)
{
	unsigned c = 0;
	size_t sz = 32;

	while (sz < n) {
		if (++c == NCLASS)
			return BIG;
		sz <<= 1;
	}
	return c;
}

/* Give every block t keeps back to malloc. */
static void
drain(struct tcache *t)
{
	void *b;

	for (unsigned c = 0; c < NCLASS; c++) {
		while ((b = t->head[c]) != NULL) {
			t->head[c] = *(void **)((char *)b + HDR);
			free(b);
		}
		t->n[c] = 0;
	}
}

static void
flush(void *arg)
{
	struct tcache *t = arg;

	if (t == NULL)
		return;
	drain(t);
	free(t);
}

static void
make_key(void)
{
	if (pthread_key_create(&key, flush) != 0)
		key = (pthread_key_t)-1;
}

/* The calling thread's cache, made on first use; NULL when none can be had. */
static struct tcache *
mine(void)
{
	if (tc != NULL)
		return tc;
	pthread_once(&once, make_key);
	if (key == (pthread_key_t)-1 || (tc = calloc(1, sizeof(*tc))) == NULL)
		return NULL;
	if (pthread_setspecific(key, tc) != 0) {
		free(tc);
		tc = NULL;
	}
	return tc;
}
#endif

void *
sc_malloc(size_t n)
{
#ifdef SC_OFF
	return malloc(n);
#else
	struct tcache *t;
	unsigned c = class_of(n);
	uint8_t *b;

	if (n > SIZE_MAX - HDR)
		return NULL;
	if (c != BIG && (t = mine()) != NULL && (b = t->head[c]) != NULL) {
		t->head[c] = *(void **)(b + HDR);
		t->n[c]--;
		return b + HDR;
	}
	if ((b = malloc((c == BIG ? n : (size_t)32 << c) + HDR)) == NULL)
		return NULL;
	b[0] = (uint8_t)c;
	return b + HDR;
#endif
}

void *
sc_calloc(size_t nmemb, size_t size)
{
	void *p;

	if (size != 0 && nmemb > SIZE_MAX / size)
		return NULL;
	if ((p = sc_malloc(nmemb * size)) != NULL)
		memset(p, 0, nmemb * size);
	return p;
}

void
sc_free(void *p)
{
#ifdef SC_OFF
	free(p);
#else
	struct tcache *t;
	uint8_t *b;
	unsigned c;

	if (p == NULL)
		return;
	b = (uint8_t *)p - HDR;
	c = b[0];
	if (c == BIG || (t = mine()) == NULL || t->n[c] >= keep[c]) {
		free(b);
		return;
	}
	*(void **)(b + HDR) = t->head[c];
	t->head[c] = b;
	t->n[c]++;
#endif
}

void
sc_trim(void)
{
#ifndef SC_OFF
	if (tc != NULL)
		drain(tc);
#endif
}

void *
sc_realloc(void *p, size_t n)
{
#ifdef SC_OFF
	return realloc(p, n);
#else
	uint8_t *b, *q;
	unsigned c;
	size_t have;

	if (p == NULL)
		return sc_malloc(n);
	b = (uint8_t *)p - HDR;
	c = b[0];
	if (c != BIG && n <= (size_t)32 << c)
		return p;	/* it fits its class */
	if (c == BIG && class_of(n) == BIG) {
		if (n > SIZE_MAX - HDR || (q = realloc(b, n + HDR)) == NULL)
			return NULL;
		return q + HDR;
	}
	if ((q = sc_malloc(n)) == NULL)
		return NULL;
	have = c == BIG ? n : (size_t)32 << c;
	memcpy(q, p, have < n ? have : n);
	sc_free(p);
	return q;
#endif
}
