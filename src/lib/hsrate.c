/*
 * hsrate.c - full handshakes per source, token buckets in a bounded
 * set-associative table (see hsrate.h). Buckets count thousandths of a
 * handshake, so a rate of R a second refills R of them a millisecond.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "err.h"
#include "hsrate.h"

#define MILLI 1000u
#define MAX_ELAPSED_MS (1000u * 1000u * 1000u)	/* longer than any bucket takes to fill */

struct ent {
	struct admit_src k;	/* the source, cut to its prefix */
	uint8_t used;
	uint32_t mt;		/* thousandths of a handshake left at `last` */
	uint64_t last;
};

struct hsrate {
	pthread_mutex_t mu;
	struct hsrate_conf conf;
	uint64_t seed;
	struct ent *tab;
	size_t nsets;		/* a power of two */
	size_t used;
};

int
hsrate_new(const struct hsrate_conf *conf, struct hsrate **out)
{
	struct hsrate *h;
	size_t nsets = 1;

	*out = NULL;
	if (conf->rate == 0 || conf->rate > 1000000 || conf->burst == 0 ||
	    conf->burst > 1000000 || conf->v4_prefix == 0 || conf->v4_prefix > 32 ||
	    conf->v6_prefix == 0 || conf->v6_prefix > 128 || conf->max_sources < HSRATE_WAYS ||
	    conf->max_sources > 4194304)
		return hsm_err(HSM_EINVAL, "hsrate: bad settings");
	while (nsets * HSRATE_WAYS < conf->max_sources)
		nsets <<= 1;
	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->tab = calloc(nsets * HSRATE_WAYS, sizeof(*h->tab))) == NULL) {
		free(h);
		return HSM_ENOMEM;
	}
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h->tab);
		free(h);
		return HSM_ENOMEM;
	}
	/* A random key: which sources share a set is not for a peer to choose. */
	if (RAND_bytes((unsigned char *)&h->seed, sizeof(h->seed)) != 1)
		h->seed = (uint64_t)(uintptr_t)h ^ 0x9e3779b97f4a7c15u;
	h->conf = *conf;
	h->nsets = nsets;
	*out = h;
	return 0;
}

void
hsrate_free(struct hsrate *h)
{
	if (h == NULL)
		return;
	pthread_mutex_destroy(&h->mu);
	free(h->tab);
	free(h);
}

/* src cut to the configured prefix of its family. */
static void
cut(const struct hsrate *h, const struct admit_src *src, struct admit_src *k)
{
	unsigned bits = src->v6 ? h->conf.v6_prefix : h->conf.v4_prefix;
	unsigned len = src->v6 ? 16 : 4;

	memset(k, 0, sizeof(*k));
	k->v6 = src->v6 ? 1 : 0;
	for (unsigned i = 0; i < len && bits > 0; i++) {
		unsigned take = bits >= 8 ? 8 : bits;

		k->addr[i] = (uint8_t)(src->addr[i] & (0xffu << (8 - take)));
		bits -= take;
	}
}

static size_t
set_of(const struct hsrate *h, const struct admit_src *k)
{
	uint64_t x = h->seed ^ 0xcbf29ce484222325u;

	for (size_t i = 0; i < sizeof(k->addr); i++)
		x = (x ^ k->addr[i]) * 0x100000001b3u;
	x ^= k->v6;
	/* a finaliser (splitmix64's) so that every bit of x reaches the low ones */
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
	x ^= x >> 31;
	return (size_t)x & (h->nsets - 1);
}

/* e's bucket refilled up to now. */
static uint32_t
level(const struct hsrate *h, const struct ent *e, uint64_t now)
{
	uint64_t full = (uint64_t)h->conf.burst * MILLI, el, mt;

	el = now > e->last ? now - e->last : 0;
	if (el > MAX_ELAPSED_MS)
		el = MAX_ELAPSED_MS;
	mt = e->mt + el * h->conf.rate;
	return (uint32_t)(mt < full ? mt : full);
}

int
hsrate_take(struct hsrate *h, const struct admit_src *src, uint64_t now_ms)
{
	struct admit_src k;
	struct ent *set, *e = NULL;
	uint32_t best = 0;
	int ok;

	cut(h, src, &k);
	pthread_mutex_lock(&h->mu);
	set = &h->tab[set_of(h, &k) * HSRATE_WAYS];
	for (unsigned i = 0; i < HSRATE_WAYS && e == NULL; i++)
		if (set[i].used && memcmp(&set[i].k, &k, sizeof(k)) == 0)
			e = &set[i];
	if (e == NULL) {
		/* a new source: a free way, or the fullest bucket's */
		for (unsigned i = 0; i < HSRATE_WAYS; i++) {
			uint32_t lv;

			if (!set[i].used) {
				e = &set[i];
				h->used++;
				break;
			}
			if ((lv = level(h, &set[i], now_ms)) >= best) {
				best = lv;
				e = &set[i];
			}
		}
		e->k = k;
		e->used = 1;
		e->mt = h->conf.burst * MILLI;
	} else {
		e->mt = level(h, e, now_ms);
	}
	e->last = now_ms;
	if ((ok = e->mt >= MILLI))
		e->mt -= MILLI;
	pthread_mutex_unlock(&h->mu);
	return ok;
}

size_t
hsrate_sources(struct hsrate *h)
{
	size_t n;

	pthread_mutex_lock(&h->mu);
	n = h->used;
	pthread_mutex_unlock(&h->mu);
	return n;
}

char *
hsrate_source_str(const struct hsrate *h, const struct admit_src *src, char *buf, size_t cap)
{
	struct admit_src k;
	char a[INET6_ADDRSTRLEN];

	cut(h, src, &k);
	if (inet_ntop(k.v6 ? AF_INET6 : AF_INET, k.addr, a, sizeof(a)) == NULL)
		snprintf(buf, cap, "?");
	else
		snprintf(buf, cap, "%s/%u", a, k.v6 ? h->conf.v6_prefix : h->conf.v4_prefix);
	return buf;
}
