/*
 * throttle.c - first-of-a-kind per interval, the rest counted (see
 * throttle.h). Pairs live in an array; an open-addressing index (linear
 * probing, FNV-1a) finds them. A flush compacts the array and rebuilds
 * the index, so nothing is ever deleted from the index in place.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "throttle.h"

struct pair {
	char src[THROTTLE_SRC_MAX + 1];
	char reason[THROTTLE_REASON_MAX + 1];
	uint64_t since;		/* start of its interval */
	uint64_t count;		/* events after the first */
};

struct throttle {
	pthread_mutex_t mu;
	uint64_t interval;
	struct pair *pairs;
	size_t npairs, max;
	uint32_t *index;	/* pair number + 1; 0 = empty */
	size_t mask;		/* index size - 1 (a power of two >= 2 * max) */
	struct pair overflow;	/* ("*", "*") while the table is full */
	int overflow_used;
};

static uint32_t
hash2(const char *a, const char *b)
{
	uint32_t h = 2166136261u;

	for (; *a != '\0'; a++)
		h = (h ^ (uint8_t)*a) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (; *b != '\0'; b++)
		h = (h ^ (uint8_t)*b) * 16777619u;
	return h;
}

int
throttle_new(size_t max_keys, uint64_t interval_ms, struct throttle **out)
{
	struct throttle *t;
	size_t n = 1;

	*out = NULL;
	if (max_keys == 0 || max_keys > 65536 || interval_ms == 0)
		return hsm_err(HSM_EINVAL, "throttle: bad size or interval");
	while (n < 2 * max_keys)
		n <<= 1;
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->pairs = calloc(max_keys, sizeof(*t->pairs))) == NULL ||
	    (t->index = calloc(n, sizeof(*t->index))) == NULL) {
		if (t != NULL)
			free(t->pairs);
		free(t);
		return HSM_ENOMEM;
	}
	t->interval = interval_ms;
	t->max = max_keys;
	t->mask = n - 1;
	snprintf(t->overflow.src, sizeof(t->overflow.src), "*");
	snprintf(t->overflow.reason, sizeof(t->overflow.reason), "*");
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return 0;
}

void
throttle_free(struct throttle *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->mu);
	free(t->pairs);
	free(t->index);
	free(t);
}

/* The index slot of (src, reason): its pair, or the empty slot where it belongs. */
static size_t
slot_of(const struct throttle *t, const char *src, const char *reason)
{
	size_t i = hash2(src, reason) & t->mask;

	while (t->index[i] != 0) {
		const struct pair *p = &t->pairs[t->index[i] - 1];

		if (strcmp(p->src, src) == 0 && strcmp(p->reason, reason) == 0)
			break;
		i = (i + 1) & t->mask;
	}
	return i;
}

int
throttle_hit(struct throttle *t, const char *src, const char *reason, uint64_t now_ms)
{
	char s[THROTTLE_SRC_MAX + 1], r[THROTTLE_REASON_MAX + 1];
	struct pair *p;
	size_t i;
	int first = 0;

	if (t == NULL)
		return 1;
	snprintf(s, sizeof(s), "%s", src != NULL ? src : "?");
	snprintf(r, sizeof(r), "%s", reason != NULL ? reason : "?");
	pthread_mutex_lock(&t->mu);
	i = slot_of(t, s, r);
	if (t->index[i] != 0) {
		p = &t->pairs[t->index[i] - 1];
		p->count++;
	} else if (t->npairs < t->max) {
		p = &t->pairs[t->npairs++];
		memcpy(p->src, s, sizeof(s));
		memcpy(p->reason, r, sizeof(r));
		p->since = now_ms;
		p->count = 0;
		t->index[i] = (uint32_t)t->npairs;
		first = 1;
	} else {
		if (!t->overflow_used) {
			t->overflow_used = 1;
			t->overflow.since = now_ms;
		}
		t->overflow.count++;
	}
	pthread_mutex_unlock(&t->mu);
	return first;
}

void
throttle_flush(struct throttle *t, uint64_t now_ms, int all, throttle_cb cb, void *arg)
{
	struct pair *due = NULL;
	size_t ndue = 0, keep = 0;

	if (t == NULL)
		return;
	pthread_mutex_lock(&t->mu);
	/* At most every pair plus the overflow pair is due. */
	due = malloc((t->npairs + 1) * sizeof(*due));
	for (size_t i = 0; i < t->npairs; i++) {
		struct pair *p = &t->pairs[i];

		if (all || now_ms - p->since >= t->interval) {
			if (p->count > 0 && due != NULL)
				due[ndue++] = *p;
			continue;
		}
		if (keep != i)
			t->pairs[keep] = *p;
		keep++;
	}
	if (t->overflow_used && (all || now_ms - t->overflow.since >= t->interval)) {
		if (due != NULL)
			due[ndue++] = t->overflow;
		t->overflow_used = 0;
		t->overflow.count = 0;
	}
	if (keep != t->npairs) {
		t->npairs = keep;
		memset(t->index, 0, (t->mask + 1) * sizeof(*t->index));
		for (size_t i = 0; i < keep; i++)
			t->index[slot_of(t, t->pairs[i].src, t->pairs[i].reason)] = (uint32_t)(i + 1);
	}
	pthread_mutex_unlock(&t->mu);
	for (size_t i = 0; i < ndue; i++)
		cb(arg, due[i].src, due[i].reason, due[i].count, due[i].since);
	free(due);
}

int64_t
throttle_next_ms(struct throttle *t, uint64_t now_ms)
{
	uint64_t soonest = UINT64_MAX;

	if (t == NULL)
		return -1;
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->npairs; i++)
		if (t->pairs[i].since + t->interval < soonest)
			soonest = t->pairs[i].since + t->interval;
	if (t->overflow_used && t->overflow.since + t->interval < soonest)
		soonest = t->overflow.since + t->interval;
	pthread_mutex_unlock(&t->mu);
	if (soonest == UINT64_MAX)
		return -1;
	return soonest <= now_ms ? 0 : (int64_t)(soonest - now_ms);
}
