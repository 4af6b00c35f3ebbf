/*
 * test_caconf.c - ca.yaml's front:, metrics:, profile and plmn: sections:
 * every limit, its default, each refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "caconf.h"
#include "err.h"
#include "nfprofile.h"

#define BASE "trust_domain: example.org\ntoken:\n  module: /m.so\n  uri: \"pkcs11:token=ca\"\n" \
    "  pin_file: /p\nstate_dir: /var/lib/ca\n"

static int
parse(const char *extra, struct ca_config **c)
{
	char text[2048];

	snprintf(text, sizeof(text), "%s%s", BASE, extra);
	return ca_config_parse("ca.yaml", "/etc/hsmesh", (const uint8_t *)text, strlen(text), c);
}

static void
refuse(const char *extra, const char *needle)
{
	struct ca_config *c = NULL;

	assert_int_equal(parse(extra, &c), HSM_ECONFIG);
	assert_null(c);
	if (strstr(hsm_err_detail(), needle) == NULL)
		fail_msg("detail '%s' lacks '%s'", hsm_err_detail(), needle);
}

static void
defaults(void **state)
{
	struct ca_config *c = NULL;

	assert_int_equal(parse("", &c), 0);
	assert_null(c->metrics_listen);
	assert_int_equal(c->front.max_connections, 4096);
	assert_int_equal(c->front.max_connections_per_source, 64);
	assert_true(c->front.workers >= 2 && c->front.workers <= 32);
	assert_int_equal(c->front.request_timeout, 10);
	assert_int_equal(c->front.idle_timeout, 5);
	assert_int_equal(c->front.write_timeout, 10);
	assert_int_equal(c->front.max_body, 262144);
	assert_int_equal(c->front.max_buffered, 67108864);
	ca_config_free(c);
}

static void
values(void **state)
{
	struct ca_config *c = NULL;

	assert_int_equal(parse("listen: 127.0.0.1:8443\nmetrics:\n  listen: 127.0.0.1:9443\n"
	    "front:\n  max_connections: 100\n  max_connections_per_source: 7\n  workers: 3\n"
	    "  request_timeout: 30s\n  idle_timeout: 2s\n  write_timeout: 1m\n  max_body: 4096\n"
	    "  max_buffered: 100000\n", &c), 0);
	assert_string_equal(c->metrics_listen, "127.0.0.1:9443");
	assert_int_equal(c->front.max_connections, 100);
	assert_int_equal(c->front.max_connections_per_source, 7);
	assert_int_equal(c->front.workers, 3);
	assert_int_equal(c->front.request_timeout, 30);
	assert_int_equal(c->front.idle_timeout, 2);
	assert_int_equal(c->front.write_timeout, 60);
	assert_int_equal(c->front.max_body, 4096);
	assert_int_equal(c->front.max_buffered, 100000);
	ca_config_free(c);
	/* Fewer connections than the per-source default: the default follows. */
	assert_int_equal(parse("front:\n  max_connections: 10\n", &c), 0);
	assert_int_equal(c->front.max_connections_per_source, 10);
	ca_config_free(c);
	/* Port 0 twice is two ports. */
	assert_int_equal(parse("listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\n", &c), 0);
	ca_config_free(c);
}

static void
refusals(void **state)
{
	refuse("front:\n  max_connections: 0\n", "front.max_connections");
	refuse("front:\n  max_connections: 10\n  max_connections_per_source: 11\n",
	    "front.max_connections_per_source");
	refuse("front:\n  workers: 0\n", "front.workers");
	refuse("front:\n  request_timeout: soon\n", "front.request_timeout");
	refuse("front:\n  idle_timeout: 0\n", "front.idle_timeout");
	refuse("front:\n  max_body: 100\n", "front.max_body");
	refuse("front:\n  max_body: 262144\n  max_buffered: 100000\n", "must hold at least one request");
	refuse("front:\n  colour: blue\n", "unknown key 'front.colour'");
	refuse("metrics:\n  listen: nowhere\n", "'metrics.listen' must be HOST:PORT");
	refuse("listen: 127.0.0.1:8443\nmetrics:\n  listen: 127.0.0.1:8443\n", "must differ from 'listen'");
}

/* profile and plmn: the 3GPP NF profile's home network (nfprofile.h). */
static void
profile(void **state)
{
	struct ca_config *c = NULL;

	assert_int_equal(parse("", &c), 0);
	assert_int_equal(c->profile, PROFILE_SPIFFE);
	assert_null(c->plmn_mcc);
	ca_config_free(c);
	assert_int_equal(parse("profile: 3gpp-nf\nplmn:\n  mcc: \"001\"\n  mnc: \"01\"\n"
	    "  country: FI\nsvid_ttl: 1095d\nmax_ttl: 1095d\n", &c), 0);
	assert_int_equal(c->profile, PROFILE_3GPP_NF);
	assert_string_equal(c->plmn_mcc, "001");
	assert_string_equal(c->plmn_mnc, "01");
	assert_string_equal(c->plmn_country, "FI");
	ca_config_free(c);
	/* plmn: without the profile: entries may ask for it. */
	assert_int_equal(parse("plmn:\n  mcc: \"310\"\n  mnc: \"410\"\n  country: US\n", &c), 0);
	assert_int_equal(c->profile, PROFILE_SPIFFE);
	ca_config_free(c);
	refuse("profile: 3gpp\n", "unknown certificate profile '3gpp'");
	refuse("profile: 3gpp-nf\n", "needs the home network");
	refuse("plmn:\n  mcc: \"001\"\n  mnc: \"01\"\n", "plmn.country");
	refuse("plmn:\n  mcc: \"01\"\n  mnc: \"01\"\n  country: FI\n", "MCC '01' must be 3 digits");
	refuse("plmn:\n  mcc: \"001\"\n  mnc: \"1\"\n  country: FI\n", "MNC '1'");
	refuse("plmn:\n  mcc: \"001\"\n  mnc: \"01\"\n  country: fi\n", "'plmn.country'");
	refuse("plmn:\n  mcc: \"001\"\n  mnc: \"01\"\n  country: FI\n  tac: 1\n",
	    "unknown key 'plmn.tac'");
	refuse("profile: 3gpp-nf\nplmn:\n  mcc: \"001\"\n  mnc: \"01\"\n  country: FI\n"
	    "svid_ttl: 1096d\nmax_ttl: 2000d\n", "exceeds the 1095 days");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults),
		cmocka_unit_test(values),
		cmocka_unit_test(refusals),
		cmocka_unit_test(profile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
