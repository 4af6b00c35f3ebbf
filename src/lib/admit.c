/*
 * admit.c - connections counted by source address (see admit.h): an
 * open-addressing table (linear probing, backward-shift deletion, so it
 * never fills with tombstones) sized for max_total distinct sources.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "err.h"

struct src {
	uint8_t addr[16];
	uint8_t v6;
	unsigned count;		/* 0: empty slot */
};

struct admit {
	unsigned max_total, max_src, total;
	struct src *tab;
	size_t mask;
};

int
admit_src_of(const struct sockaddr_storage *ss, struct admit_src *src)
{
	memset(src, 0, sizeof(*src));
	if (ss->ss_family == AF_INET) {
		memcpy(src->addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(src->addr, a->s6_addr + 12, 4);
			return 0;
		}
		memcpy(src->addr, a->s6_addr, 16);
		src->v6 = 1;
		return 0;
	}
	return -1;	/* e.g. AF_UNIX: all such peers share one key */
}

/* The source of ss; 0, or -1 for a family we do not count by address. */
static int
key_of(const struct sockaddr_storage *ss, struct src *k)
{
	struct admit_src s;
	int r = admit_src_of(ss, &s);

	memset(k, 0, sizeof(*k));
	memcpy(k->addr, s.addr, sizeof(k->addr));
	k->v6 = s.v6;
	return r;
}

static size_t
hash_of(const struct src *k)
{
	uint32_t h = 2166136261u ^ k->v6;

	for (size_t i = 0; i < (k->v6 ? 16u : 4u); i++)
		h = (h ^ k->addr[i]) * 16777619u;
	return h;
}

static int
same(const struct src *a, const struct src *b)
{
	return a->v6 == b->v6 && memcmp(a->addr, b->addr, 16) == 0;
}

/* The slot of k: its entry, or the empty slot where it belongs. */
static size_t
slot_of(const struct admit *a, const struct src *k)
{
	size_t i = hash_of(k) & a->mask;

	while (a->tab[i].count != 0 && !same(&a->tab[i], k))
		i = (i + 1) & a->mask;
	return i;
}

int
admit_new(unsigned max_total, unsigned max_per_source, struct admit **out)
{
	struct admit *a;
	size_t n = 1;

	*out = NULL;
	if (max_total == 0 || max_total > 1048576 || max_per_source == 0 ||
	    max_per_source > max_total)
		return hsm_err(HSM_EINVAL, "admit: bad limits %u/%u", max_total, max_per_source);
	while (n < 2 * (size_t)max_total)
		n <<= 1;
	if ((a = calloc(1, sizeof(*a))) == NULL || (a->tab = calloc(n, sizeof(*a->tab))) == NULL) {
		free(a);
		return HSM_ENOMEM;
	}
	a->max_total = max_total;
	a->max_src = max_per_source;
	a->mask = n - 1;
	*out = a;
	return 0;
}

void
admit_free(struct admit *a)
{
	if (a == NULL)
		return;
	free(a->tab);
	free(a);
}

enum admit_why
admit_take(struct admit *a, const struct sockaddr_storage *ss)
{
	struct src k;
	size_t i;

	if (a->total >= a->max_total)
		return ADMIT_TOTAL;
	(void)key_of(ss, &k);
	i = slot_of(a, &k);
	if (a->tab[i].count >= a->max_src)
		return ADMIT_SOURCE;
	if (a->tab[i].count == 0)
		a->tab[i] = k;
	a->tab[i].count++;
	a->total++;
	return ADMIT_OK;
}

void
admit_release(struct admit *a, const struct sockaddr_storage *ss)
{
	struct src k;
	size_t i, j;

	(void)key_of(ss, &k);
	i = slot_of(a, &k);
	if (a->tab[i].count == 0)
		return;		/* never taken: nothing to release */
	a->total--;
	if (--a->tab[i].count > 0)
		return;
	/* Backward-shift deletion: pull later entries of the probe run into the hole. */
	for (j = (i + 1) & a->mask; a->tab[j].count != 0; j = (j + 1) & a->mask) {
		size_t home = hash_of(&a->tab[j]) & a->mask;

		/* Entry j may move to i when i lies cyclically in [home, j). */
		if (((j - home) & a->mask) >= ((j - i) & a->mask)) {
			a->tab[i] = a->tab[j];
			i = j;
		}
	}
	memset(&a->tab[i], 0, sizeof(a->tab[i]));
}

unsigned
admit_source_count(const struct admit *a, const struct sockaddr_storage *ss)
{
	struct src k;

	(void)key_of(ss, &k);
	return a->tab[slot_of(a, &k)].count;
}

unsigned
admit_total(const struct admit *a)
{
	return a->total;
}

char *
admit_src_str(const struct admit_src *src, char *buf, size_t cap)
{
	if (inet_ntop(src->v6 ? AF_INET6 : AF_INET, src->addr, buf, (socklen_t)cap) == NULL)
		snprintf(buf, cap, "?");
	return buf;
}

char *
admit_source_str(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	struct admit_src k;

	if (admit_src_of(ss, &k) != 0) {
		snprintf(buf, cap, "?");
		return buf;
	}
	return admit_src_str(&k, buf, cap);
}
