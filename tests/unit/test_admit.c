/* test_admit.c - connections counted by source address: both limits, release, IPv6 and mapped IPv4. */
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

static struct sockaddr_storage
v4(const char *ip, int port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage
v6(const char *ip, int port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	return ss;
}

static void
limits(void **state)
{
	struct admit *a;
	struct sockaddr_storage x = v4("192.0.2.1", 1000), y = v4("192.0.2.2", 1);
	struct sockaddr_storage xm = v6("::ffff:192.0.2.1", 7), z = v6("2001:db8::1", 9);
	char buf[64];

	assert_int_equal(admit_new(0, 1, &a), HSM_EINVAL);
	assert_int_equal(admit_new(4, 5, &a), HSM_EINVAL);
	assert_int_equal(admit_new(5, 2, &a), 0);
	/* Ports do not matter; a mapped IPv4 address is its IPv4 address. */
	assert_int_equal(admit_take(a, &x), ADMIT_OK);
	assert_int_equal(admit_take(a, &xm), ADMIT_OK);
	assert_int_equal(admit_take(a, &x), ADMIT_SOURCE);
	assert_int_equal(admit_source_count(a, &x), 2);
	assert_int_equal(admit_take(a, &y), ADMIT_OK);
	assert_int_equal(admit_take(a, &z), ADMIT_OK);
	assert_int_equal(admit_take(a, &z), ADMIT_OK);
	assert_int_equal(admit_total(a), 5);
	/* The total is reached: even a new source waits. */
	assert_int_equal(admit_take(a, &y), ADMIT_TOTAL);
	admit_release(a, &x);
	assert_int_equal(admit_source_count(a, &x), 1);
	assert_int_equal(admit_take(a, &y), ADMIT_OK);
	assert_int_equal(admit_source_count(a, &y), 2);
	assert_string_equal(admit_source_str(&xm, buf, sizeof(buf)), "192.0.2.1");
	assert_string_equal(admit_source_str(&z, buf, sizeof(buf)), "2001:db8::1");
	admit_free(a);
	admit_free(NULL);
}

/* Many sources in and out: the table stays consistent (backward-shift deletion). */
static void
churn(void **state)
{
	struct admit *a;
	struct sockaddr_storage ss[300];
	char ip[32];

	assert_int_equal(admit_new(300, 3, &a), 0);
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 300; i++) {
			snprintf(ip, sizeof(ip), "10.%d.%d.%d", round, i / 250, i % 250);
			ss[i] = v4(ip, i);
			assert_int_equal(admit_take(a, &ss[i]), ADMIT_OK);
		}
		assert_int_equal(admit_total(a), 300);
		for (int i = 0; i < 300; i += 2)
			admit_release(a, &ss[i]);
		for (int i = 1; i < 300; i += 2)
			assert_int_equal(admit_source_count(a, &ss[i]), 1);
		for (int i = 1; i < 300; i += 2)
			admit_release(a, &ss[i]);
		assert_int_equal(admit_total(a), 0);
		for (int i = 0; i < 300; i++)
			assert_int_equal(admit_source_count(a, &ss[i]), 0);
	}
	/* Releasing what was never taken changes nothing. */
	admit_release(a, &ss[0]);
	assert_int_equal(admit_total(a), 0);
	admit_free(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(limits),
		cmocka_unit_test(churn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
