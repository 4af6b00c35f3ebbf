/*
 * test_hsrate.c - full handshakes per source: the bucket (burst, refill,
 * cap), prefixes (IPv4, IPv6 /64, mapped IPv4), the bounded table (a flood
 * of sources neither grows it nor locks out a source it forgets), the
 * settings' ranges. The clock is passed in: no test waits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "admit.h"
#include "err.h"
#include "hsrate.h"

static struct admit_src
src(const char *ip)
{
	struct sockaddr_storage ss;
	struct admit_src s;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		ss.ss_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
	} else {
		ss.ss_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr), 1);
	}
	assert_int_equal(admit_src_of(&ss, &s), 0);
	return s;
}

static struct hsrate *
mk(unsigned rate, unsigned burst, unsigned max_sources)
{
	struct hsrate_conf c = { rate, burst, 32, 64, max_sources };
	struct hsrate *h;

	assert_int_equal(hsrate_new(&c, &h), 0);
	return h;
}

/* Takes n handshakes of s at now; returns how many were let through. */
static unsigned
take_n(struct hsrate *h, const char *ip, unsigned n, uint64_t now)
{
	struct admit_src s = src(ip);
	unsigned ok = 0;

	for (unsigned i = 0; i < n; i++)
		ok += (unsigned)hsrate_take(h, &s, now);
	return ok;
}

static void
bucket(void **state)
{
	struct hsrate *h = mk(10, 5, 64);

	(void)state;
	/* a burst of 5 at once, then nothing until the bucket refills */
	assert_int_equal(take_n(h, "192.0.2.1", 8, 1000), 5);
	assert_int_equal(take_n(h, "192.0.2.1", 1, 1099), 0);
	/* 10 a second: one every 100 ms */
	assert_int_equal(take_n(h, "192.0.2.1", 3, 1100), 1);
	assert_int_equal(take_n(h, "192.0.2.1", 3, 1350), 2);
	/* the half handshake left at 1350 is kept, not lost: with 50 ms more it is one */
	assert_int_equal(take_n(h, "192.0.2.1", 1, 1400), 1);
	assert_int_equal(take_n(h, "192.0.2.1", 1, 1450), 0);
	/* a long pause fills the bucket to its burst, never beyond */
	assert_int_equal(take_n(h, "192.0.2.1", 9, 1000000), 5);
	/* another source has its own bucket */
	assert_int_equal(take_n(h, "192.0.2.2", 9, 1000000), 5);
	/* a clock that goes back refills nothing and breaks nothing */
	assert_int_equal(take_n(h, "192.0.2.1", 1, 500), 0);
	assert_int_equal(hsrate_sources(h), 2);
	hsrate_free(h);
	hsrate_free(NULL);
}

static void
prefixes(void **state)
{
	struct hsrate_conf c = { 1, 2, 24, 64, 64 };
	struct hsrate *h;
	struct admit_src s;
	char buf[64];

	(void)state;
	assert_int_equal(hsrate_new(&c, &h), 0);
	/* one /24 shares a bucket */
	assert_int_equal(take_n(h, "192.0.2.1", 1, 0), 1);
	assert_int_equal(take_n(h, "192.0.2.200", 2, 0), 1);
	assert_int_equal(take_n(h, "192.0.3.1", 2, 0), 2);
	/* an IPv4-mapped IPv6 address is its IPv4 address */
	assert_int_equal(take_n(h, "::ffff:192.0.3.9", 1, 0), 0);
	/* an IPv6 /64 shares a bucket; the next /64 does not */
	assert_int_equal(take_n(h, "2001:db8:0:1::1", 1, 0), 1);
	assert_int_equal(take_n(h, "2001:db8:0:1:ffff:1:2:3", 2, 0), 1);
	assert_int_equal(take_n(h, "2001:db8:0:2::1", 2, 0), 2);
	s = src("192.0.2.77");
	assert_string_equal(hsrate_source_str(h, &s, buf, sizeof(buf)), "192.0.2.0/24");
	s = src("2001:db8:0:1:ffff:1:2:3");
	assert_string_equal(hsrate_source_str(h, &s, buf, sizeof(buf)), "2001:db8:0:1::/64");
	hsrate_free(h);
	/* an odd prefix cuts inside a byte */
	c = (struct hsrate_conf){ 1, 1, 20, 60, 64 };
	assert_int_equal(hsrate_new(&c, &h), 0);
	s = src("192.0.31.255");
	assert_string_equal(hsrate_source_str(h, &s, buf, sizeof(buf)), "192.0.16.0/20");
	s = src("2001:db8:0:1f::1");
	assert_string_equal(hsrate_source_str(h, &s, buf, sizeof(buf)), "2001:db8:0:10::/60");
	assert_int_equal(take_n(h, "192.0.16.1", 1, 0), 1);
	assert_int_equal(take_n(h, "192.0.31.1", 1, 0), 0);
	assert_int_equal(take_n(h, "192.0.32.1", 1, 0), 1);
	hsrate_free(h);
}

/*
 * A flood of distinct sources: the table never holds more than its size,
 * a forgotten source starts full (never locked out), and a source that
 * keeps its bucket empty stays refused while the flood goes on, as long
 * as its set has fuller buckets to give up.
 */
static void
bounded(void **state)
{
	struct hsrate *h = mk(1, 3, 64);
	char ip[32];
	unsigned refused = 0;

	(void)state;
	/* the attacker empties its bucket */
	assert_int_equal(take_n(h, "198.51.100.7", 5, 0), 3);
	for (unsigned i = 0; i < 5000; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		/* each new source spends one of its 3 handshakes */
		assert_int_equal(take_n(h, ip, 1, 0), 1);
		assert_true(hsrate_sources(h) <= 64);
		refused += 1 - (unsigned)take_n(h, "198.51.100.7", 1, 0);
	}
	assert_int_equal(hsrate_sources(h), 64);
	/*
	 * The flood's buckets hold 2 each, the attacker's 0: a new source
	 * takes a flood source's place, never the attacker's, so it stayed
	 * refused throughout.
	 */
	assert_int_equal(refused, 5000);
	hsrate_free(h);
}

static void
settings(void **state)
{
	struct hsrate *h = (struct hsrate *)&h;
	static const struct hsrate_conf bad[] = {
		{ 0, 1, 32, 64, 64 }, { 1, 0, 32, 64, 64 }, { 1000001, 1, 32, 64, 64 },
		{ 1, 1000001, 32, 64, 64 }, { 1, 1, 0, 64, 64 }, { 1, 1, 33, 64, 64 },
		{ 1, 1, 32, 0, 64 }, { 1, 1, 32, 129, 64 }, { 1, 1, 32, 64, HSRATE_WAYS - 1 },
		{ 1, 1, 32, 64, 4194305 },
	};
	struct hsrate_conf top = { 1000000, 1000000, 32, 128, 100 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(hsrate_new(&bad[i], &h), HSM_EINVAL);
		assert_null(h);
	}
	/* the largest bucket neither overflows nor refills beyond its burst */
	assert_int_equal(hsrate_new(&top, &h), 0);
	assert_int_equal(take_n(h, "2001:db8::1", 1000, 0), 1000);
	assert_int_equal(take_n(h, "2001:db8::1", 1, UINT64_MAX), 1);
	assert_int_equal(take_n(h, "2001:db8::2", 1, UINT64_MAX), 1);
	hsrate_free(h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bucket),
		cmocka_unit_test(prefixes),
		cmocka_unit_test(bounded),
		cmocka_unit_test(settings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
