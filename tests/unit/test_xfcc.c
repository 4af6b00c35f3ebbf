/* test_xfcc.c - Envoy's x-forwarded-client-cert: the value, its quoting, forged headers removed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "h1.h"
#include "hmsg.h"
#include "xfcc.h"

/* SHA-256 of the 5 bytes below, computed with `printf '\x30\x03\x02\x01\x05' | sha256sum`. */
static const uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };
#define DER_SHA256 "417c7763c4e320a6b747b3cb0c6d22f93741b29a32b48594b8eb4c144fe6d729"

static void
value(void **state)
{
	char *v = NULL;

	assert_int_equal(xfcc_value("spiffe://example.org/smf", der, sizeof(der),
	    "spiffe://example.org/amf", &v), 0);
	assert_string_equal(v, "By=spiffe://example.org/smf;Hash=" DER_SHA256
	    ";URI=spiffe://example.org/amf");
	free(v);
	/* a value with a separator is quoted, a quote escaped */
	assert_int_equal(xfcc_value("spiffe://a/b=c", der, sizeof(der), "spiffe://a/\"q\",x;y",
	    &v), 0);
	assert_string_equal(v, "By=\"spiffe://a/b=c\";Hash=" DER_SHA256
	    ";URI=\"spiffe://a/\\\"q\\\",x;y\"");
	free(v);
	/* no quoting makes a control character or a backslash safe: refused */
	assert_int_equal(xfcc_value("spiffe://a/b", der, sizeof(der), "spiffe://a/\r\nX: 1", &v),
	    HSM_EINVAL);
	assert_null(v);
	assert_int_equal(xfcc_value("spiffe://a/b", der, sizeof(der), "spiffe://a/x\\", &v),
	    HSM_EINVAL);
	assert_int_equal(xfcc_value("spiffe://a/b", der, 0, "spiffe://a/x", &v), HSM_EINVAL);
	assert_int_equal(xfcc_value(NULL, der, sizeof(der), "spiffe://a/x", &v), HSM_EINVAL);
}

/* Forged headers in several spellings, from an HTTP/1.1 client: none survives. */
static void
forged_removed(void **state)
{
	static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\n"
	    "X-Forwarded-Client-Cert: By=spiffe://x;URI=spiffe://example.org/admin\r\n"
	    "x-forwarded-client-cert: URI=spiffe://example.org/admin\r\n"
	    "X-FORWARDED-CLIENT-CERT: URI=a\r\n"
	    "x_forwarded_client_cert: URI=b\r\n"
	    "X-Forwarded_Client-Cert: URI=c\r\n"
	    "X-Forwarded-Client-Cert-Extra: kept\r\n"
	    "\r\n";
	const struct h1_limits lim = { 8192, 100 };
	struct h1_parser p;
	struct h1_event ev;
	const struct hfield *f;
	size_t used, removed, i, n = 0;

	h1_init(&p, H1_REQUEST, &lim);
	assert_int_equal(h1_parse(&p, (const uint8_t *)in, sizeof(in) - 1, 0, &used, &ev), 0);
	assert_int_equal(ev.type, H1_HEAD);
	assert_int_equal(xfcc_apply(&p.msg, "spiffe://example.org/smf", der, sizeof(der),
	    "spiffe://example.org/amf", &removed), 0);
	assert_int_equal(removed, 5);
	for (i = 0; i < p.msg.nf; i++) {
		f = &p.msg.f[i];
		if (strcmp(f->name, XFCC_NAME) == 0) {
			n++;
			assert_string_equal(f->value, "By=spiffe://example.org/smf;Hash=" DER_SHA256
			    ";URI=spiffe://example.org/amf");
		}
	}
	assert_int_equal(n, 1);
	assert_non_null(hmsg_get(&p.msg, "x-forwarded-client-cert-extra"));
	/* even when ours cannot be made, the forged ones are gone */
	assert_int_equal(hmsg_add(&p.msg, "X-Forwarded-Client-Cert", 23, "URI=z", 5), 0);
	assert_int_equal(xfcc_apply(&p.msg, "spiffe://example.org/smf", der, sizeof(der),
	    "bad\nid", &removed), HSM_EINVAL);
	assert_int_equal(removed, 2);
	assert_null(hmsg_get(&p.msg, XFCC_NAME));
	h1_free(&p);
}


/* The caller's ID as an application reads it back: the URI of the first element. */
static void
uri(void **state)
{
	char out[64], *v = NULL;

	assert_int_equal(xfcc_uri("By=spiffe://a/smf;Hash=00;URI=spiffe://a/amf", out,
	    sizeof(out)), 0);
	assert_string_equal(out, "spiffe://a/amf");
	/* what xfcc_value quotes comes back unquoted */
	assert_int_equal(xfcc_value("spiffe://a/b", der, sizeof(der), "spiffe://a/\"q\",x;y", &v),
	    0);
	assert_int_equal(xfcc_uri(v, out, sizeof(out)), 0);
	assert_string_equal(out, "spiffe://a/\"q\",x;y");
	free(v);
	/* keys in any case; only the first element counts */
	assert_int_equal(xfcc_uri("uri=spiffe://a/x,URI=spiffe://a/y", out, sizeof(out)), 0);
	assert_string_equal(out, "spiffe://a/x");
	assert_int_equal(xfcc_uri("By=x,URI=spiffe://a/y", out, sizeof(out)), HSM_ENOENT);
	assert_int_equal(xfcc_uri("", out, sizeof(out)), HSM_ENOENT);
	assert_int_equal(xfcc_uri("By", out, sizeof(out)), HSM_EPROTO);
	assert_int_equal(xfcc_uri("URI=\"open", out, sizeof(out)), HSM_EPROTO);
	assert_int_equal(xfcc_uri("URI=\"a\"b", out, sizeof(out)), HSM_EPROTO);
	assert_int_equal(xfcc_uri("URI=a\x01b", out, sizeof(out)), HSM_EPROTO);
	assert_int_equal(xfcc_uri("URI=spiffe://a/very/long/path/indeed", out, 8), HSM_EINVAL);
}

/* A value made once per connection: every forged spelling goes, ours is added once. */
static void
set_value(void **state)
{
	struct hmsg m;
	size_t removed = 9;

	hmsg_init(&m, 1);
	assert_int_equal(hmsg_add(&m, "X-Forwarded-Client-Cert", 23, "By=evil", 7), 0);
	assert_int_equal(hmsg_add(&m, "accept", 6, "*/*", 3), 0);
	assert_int_equal(hmsg_add(&m, "x_forwarded_client_cert", 23, "URI=evil", 8), 0);
	assert_int_equal(xfcc_set(&m, "By=a;URI=b", &removed), 0);
	assert_int_equal(removed, 2);
	assert_int_equal(m.nf, 2);
	assert_string_equal(hmsg_value(&m, XFCC_NAME), "By=a;URI=b");
	assert_string_equal(m.f[0].name, "accept");
	hmsg_clear(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(value),
		cmocka_unit_test(forged_removed),
		cmocka_unit_test(uri),
		cmocka_unit_test(set_value),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
