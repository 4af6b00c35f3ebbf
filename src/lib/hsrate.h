/*
 * hsrate.h - a rate limit of full TLS handshakes per source, for the
 * proxy's inbound listeners: a full handshake costs a signature on the
 * node's token, and anyone who can send a ClientHello can ask for one.
 *
 * Each source has a token bucket: it holds at most `burst` handshakes and
 * refills at `rate` a second; a handshake takes one, and a source whose
 * bucket is empty is refused until it refills. A source is an IPv4
 * address cut to `v4_prefix` bits or an IPv6 address cut to `v6_prefix`
 * bits (a /64 by default: one host usually owns a whole /64); an
 * IPv4-mapped IPv6 address is its IPv4 address.
 *
 * The table is bounded: at most `max_sources` sources (rounded up to a
 * power of two), in sets of HSRATE_WAYS chosen by a hash with a random
 * key. A new source in a full set takes the place of the set's fullest
 * bucket (after refill). Forgetting a full bucket loses nothing (a source
 * seen again starts full); a source only ever gains by being forgotten,
 * so an attacker with many addresses cannot use the table to lock out
 * another source, and cannot grow it. Times are passed in (monotonic ms),
 * so the logic is tested without a clock. Thread-safe.
 */
#ifndef HSM_HSRATE_H
#define HSM_HSRATE_H

#include <stddef.h>
#include <stdint.h>

#include "admit.h"	/* struct admit_src */

#define HSRATE_WAYS 8

struct hsrate;

struct hsrate_conf {
	unsigned rate;		/* handshakes a second per source, 1..1000000 */
	unsigned burst;		/* handshakes at once per source, 1..1000000 */
	unsigned v4_prefix;	/* 1..32 */
	unsigned v6_prefix;	/* 1..128 */
	unsigned max_sources;	/* HSRATE_WAYS..4194304 */
};

/* A table for conf. 0, HSM_EINVAL (a value out of range) or HSM_ENOMEM. */
int hsrate_new(const struct hsrate_conf *conf, struct hsrate **out);
/* Free it. Accepts NULL. */
void hsrate_free(struct hsrate *h);

/*
 * One full handshake from src at now_ms: 1 when its source's bucket had a
 * handshake left (taken), 0 when it is refused.
 */
int hsrate_take(struct hsrate *h, const struct admit_src *src, uint64_t now_ms);

/* Sources tracked now (at most the table's size). */
size_t hsrate_sources(struct hsrate *h);

/* The source src counts under, "192.0.2.0/24" or "2001:db8::/64", in buf; returns buf. */
char *hsrate_source_str(const struct hsrate *h, const struct admit_src *src, char *buf,
    size_t cap);

#endif
