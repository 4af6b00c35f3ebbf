/*
 * ratelog.c - throttled log lines with per-key summaries (see ratelog.h).
 */
#include <string.h>

#include "ratelog.h"

void
ratelog_init(struct ratelog *r, unsigned per_sec, unsigned interval_ms)
{
	memset(r, 0, sizeof(*r));
	r->per_sec = per_sec > 0 ? per_sec : 1;
	r->interval_ms = interval_ms >= 1000 ? interval_ms : 1000;
}

/* The slot counting key's lines (RATELOG_OTHER's when the table is full). */
static struct ratelog_key *
slot(struct ratelog *r, uint64_t key)
{
	for (unsigned i = 0; i < r->nkeys; i++)
		if (r->keys[i].key == key)
			return &r->keys[i];
	if (key != RATELOG_OTHER && r->nkeys < RATELOG_KEYS) {
		r->keys[r->nkeys].key = key;
		return &r->keys[r->nkeys++];
	}
	r->keys[RATELOG_KEYS].key = RATELOG_OTHER;
	return &r->keys[RATELOG_KEYS];
}

int
ratelog_hit(struct ratelog *r, uint64_t key, uint64_t now_ms)
{
	struct ratelog_key *k;

	if (now_ms - r->window >= 1000 || now_ms < r->window) {
		r->window = now_ms;
		r->logged = 0;
	}
	if (r->logged < r->per_sec) {
		r->logged++;
		return 1;
	}
	k = slot(r, key);
	if (k->unlogged++ == 0)
		k->since = now_ms;
	r->total_unlogged++;
	return 0;
}

void
ratelog_flush(struct ratelog *r, uint64_t now_ms,
    void (*fn)(void *arg, uint64_t key, unsigned long n, uint64_t since_ms), void *arg)
{
	struct ratelog_key k, *other = &r->keys[RATELOG_KEYS];

	for (unsigned i = 0; i < r->nkeys;) {
		k = r->keys[i];
		if (now_ms - k.since < r->interval_ms) {
			i++;
			continue;
		}
		/* Summarised: the key leaves the table (every key in it has lines unlogged). */
		r->keys[i] = r->keys[--r->nkeys];
		memset(&r->keys[r->nkeys], 0, sizeof(r->keys[0]));
		r->total_unlogged -= k.unlogged;
		fn(arg, k.key, k.unlogged, k.since);
	}
	if (other->unlogged > 0 && now_ms - other->since >= r->interval_ms) {
		k = *other;
		other->unlogged = 0;
		r->total_unlogged -= k.unlogged;
		fn(arg, RATELOG_OTHER, k.unlogged, k.since);
	}
}

unsigned long
ratelog_pending(const struct ratelog *r)
{
	return r->total_unlogged;
}
