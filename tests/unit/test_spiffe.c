/* test_spiffe.c - SPIFFE ID and trust domain validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "spiffe.h"

static void
valid_ids(void **state)
{
	static const char *const ok[] = {
		"spiffe://example.org",
		"spiffe://example.org/web",
		"spiffe://example.org/ns/prod/sa/web-frontend",
		"spiffe://my_domain-1.example.org/A.b-c_D/0",
		"spiffe://example.org/.../x",	/* "..." is an ordinary segment */
		"spiffe://example.org/.a/b.",
		"spiffe://1.2.3.4/x",
	};
	struct spiffe_id id;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (spiffe_id_parse(ok[i], &id) != 0)
			fail_msg("%s: %s", ok[i], hsm_err_detail());
	}
	assert_int_equal(spiffe_id_parse("spiffe://example.org/ns/web", &id), 0);
	assert_string_equal(id.trust_domain, "example.org");
	assert_string_equal(id.path, "/ns/web");
	assert_int_equal(spiffe_id_parse("spiffe://example.org", &id), 0);
	assert_string_equal(id.path, "");
}

/* Each bad ID with the words its error must contain. */
static void
invalid_ids(void **state)
{
	static const struct { const char *id, *why; } bad[] = {
		{ "", "empty" },
		{ "http://example.org/x", "scheme" },
		{ "SPIFFE://example.org/x", "lowercase" },
		{ "spiffe:/example.org/x", "scheme" },
		{ "spiffe://", "trust domain is empty" },
		{ "spiffe:///x", "trust domain is empty" },
		{ "spiffe://Example.org/x", "lowercase" },
		{ "spiffe://example.org/../x", "path segment '..' is not allowed" },
		{ "spiffe://example.org/./x", "path segment '.' is not allowed" },
		{ "spiffe://example.org/x/..", "'..'" },
		{ "spiffe://example.org/x?q", "query" },
		{ "spiffe://example.org/x#f", "fragment" },
		{ "spiffe://example.org?q", "query" },
		{ "spiffe://example.org#f", "fragment" },
		{ "spiffe://example.org/%2e%2e/x", "percent" },
		{ "spiffe://example%2eorg/x", "percent" },
		{ "spiffe://example.org/x/", "trailing slash" },
		{ "spiffe://example.org/", "trailing slash" },
		{ "spiffe://example.org//x", "empty path segment" },
		{ "spiffe://example.org/a//b", "empty path segment" },
		{ "spiffe://example.org:8443/x", "port" },
		{ "spiffe://user@example.org/x", "userinfo" },
		{ "spiffe://example.org/a b", "byte 0x20" },
		{ "spiffe://example.org/a*b", "'*'" },
		{ "spiffe://exa mple.org/x", "trust domain" },
		{ "spiffe://example.org/caf\xc3\xa9", "byte 0xc3" },
		{ "spiffe://example.org/a\nb", "byte 0x0a" },
		{ " spiffe://example.org/x", "scheme" },
	};
	struct spiffe_id id;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&id, 'x', sizeof(id));
		hsm_err_clear();
		if (spiffe_id_parse(bad[i].id, &id) != HSM_EINVAL)
			fail_msg("accepted '%s'", bad[i].id);
		if (strstr(hsm_err_detail(), bad[i].why) == NULL)
			fail_msg("'%s': detail '%s' lacks '%s'", bad[i].id, hsm_err_detail(), bad[i].why);
		/* One line, naming the input, and the out-param left cleared. */
		assert_null(strchr(hsm_err_detail(), '\n'));
		assert_int_equal(id.trust_domain[0], '\0');
		assert_int_equal(id.path[0], '\0');
	}
	assert_int_equal(spiffe_id_parse(NULL, &id), HSM_EINVAL);
}

static void
exact_message(void **state)
{
	struct spiffe_id id;

	assert_int_equal(spiffe_id_parse("spiffe://example.org/../x", &id), HSM_EINVAL);
	assert_string_equal(hsm_err_detail(),
	    "invalid SPIFFE ID 'spiffe://example.org/../x': path segment '..' is not allowed");
}

static void
lengths(void **state)
{
	char td[300], buf[SPIFFE_ID_MAX + 64];
	struct spiffe_id id;
	size_t n;

	/* Trust domain: 255 accepted, 256 refused. */
	memset(td, 'a', 255);
	td[255] = '\0';
	snprintf(buf, sizeof(buf), "spiffe://%s/x", td);
	assert_int_equal(spiffe_id_parse(buf, &id), 0);
	assert_int_equal(spiffe_td_check(td), 0);
	memset(td, 'a', 256);
	td[256] = '\0';
	snprintf(buf, sizeof(buf), "spiffe://%s/x", td);
	assert_int_equal(spiffe_id_parse(buf, &id), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_detail(), "longer than 255"));
	assert_int_equal(spiffe_td_check(td), HSM_EINVAL);

	/* Whole ID: 2048 accepted, 2049 refused; the detail stays bounded. */
	n = (size_t)snprintf(buf, sizeof(buf), "spiffe://example.org/");
	memset(buf + n, 'p', SPIFFE_ID_MAX - n);
	buf[SPIFFE_ID_MAX] = '\0';
	assert_int_equal(spiffe_id_parse(buf, &id), 0);
	assert_int_equal(strlen(id.path), SPIFFE_ID_MAX - strlen("spiffe://example.org"));
	buf[SPIFFE_ID_MAX] = 'p';
	buf[SPIFFE_ID_MAX + 1] = '\0';
	assert_int_equal(spiffe_id_parse(buf, &id), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_detail(), "longer than 2048"));
	assert_non_null(strstr(hsm_err_detail(), "..."));
	assert_true(strlen(hsm_err_detail()) < 300);
}

static void
trust_domains(void **state)
{
	assert_int_equal(spiffe_td_check("example.org"), 0);
	assert_int_equal(spiffe_td_check("a_b-c.9"), 0);
	assert_int_equal(spiffe_td_check(""), HSM_EINVAL);
	assert_int_equal(spiffe_td_check("Example.org"), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_detail(), "lowercase"));
	assert_int_equal(spiffe_td_check("spiffe://example.org"), HSM_EINVAL);
	assert_int_equal(spiffe_td_check("example.org/x"), HSM_EINVAL);
	assert_int_equal(spiffe_td_check("example.org:1"), HSM_EINVAL);
	assert_int_equal(spiffe_td_check(NULL), HSM_EINVAL);
}

static void
check_domain(void **state)
{
	assert_int_equal(spiffe_id_check_domain("spiffe://example.org/web", "example.org"), 0);
	assert_int_equal(spiffe_id_check_domain("spiffe://other.org/web", "example.org"),
	    HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(),
	    "SPIFFE ID 'spiffe://other.org/web' is not in trust domain 'example.org'");
	/* A suffix or prefix of the domain is another domain. */
	assert_int_equal(spiffe_id_check_domain("spiffe://example.org.evil/x", "example.org"),
	    HSM_EPOLICY);
	assert_int_equal(spiffe_id_check_domain("spiffe://x.example.org/x", "example.org"),
	    HSM_EPOLICY);
	assert_int_equal(spiffe_id_check_domain("spiffe://example.org", "example.org"),
	    HSM_EPOLICY);
	assert_int_equal(spiffe_id_check_domain("spiffe://example.org/../x", "example.org"),
	    HSM_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(valid_ids),
		cmocka_unit_test(invalid_ids),
		cmocka_unit_test(exact_message),
		cmocka_unit_test(lengths),
		cmocka_unit_test(trust_domains),
		cmocka_unit_test(check_domain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
