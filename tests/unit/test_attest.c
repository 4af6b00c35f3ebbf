/* test_attest.c - the CA's attestation policy, nonces, ID templates and binding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "attest.h"
#include "config.h"
#include "err.h"
#include "util.h"

#include "shared_path.h"

#define PHALA "testdata/sgx/phala-dcap-qvl/"

static char coll_path[1024], quote_path[1024];

static const uint8_t key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

static void
nonces(void **state)
{
	uint8_t n[ATTEST_NONCE_LEN], other[32];
	time_t t0 = 1800000000;

	attest_nonce_make(key, t0, n);
	assert_int_equal(attest_nonce_check(key, n, t0, 300), 0);
	assert_int_equal(attest_nonce_check(key, n, t0 + 300, 300), 0);
	assert_int_equal(attest_nonce_check(key, n, t0 + 301, 300), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "expired 1s ago"));
	/* made "in the future" beyond the allowed skew */
	assert_int_equal(attest_nonce_check(key, n, t0 - 60, 300), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "future"));
	/* another CA's key, a flipped bit, a forged time */
	memcpy(other, key, 32);
	other[31] ^= 1;
	assert_int_equal(attest_nonce_check(other, n, t0, 300), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "not issued by this CA"));
	n[20] ^= 0x80;
	assert_int_equal(attest_nonce_check(key, n, t0, 300), HSM_EPOLICY);
	n[20] ^= 0x80;
	n[7] ^= 1;
	assert_int_equal(attest_nonce_check(key, n, t0, 300), HSM_EPOLICY);
	/* the derived key depends on the join-token key */
	attest_nonce_key(key, other);
	assert_memory_not_equal(other, key, 32);
}

static void
templates(void **state)
{
	struct sgx_report_body b;
	char out[300];

	memset(&b, 0, sizeof(b));
	memset(b.mrsigner, 0xab, 32);
	memset(b.mrenclave, 0x01, 32);
	b.isv_prod_id = 7;
	b.isv_svn = 65535;
	assert_int_equal(attest_expand_id("spiffe://{trust_domain}/sgx/{mrsigner}/{isv_prod_id}",
	    "example.org", &b, out, sizeof(out)), 0);
	assert_string_equal(out, "spiffe://example.org/sgx/"
	    "abababababababababababababababababababababababababababababababab/7");
	assert_int_equal(attest_expand_id("spiffe://td/{mrenclave}/v{isv_svn}", "x", &b, out,
	    sizeof(out)), 0);
	assert_string_equal(out, "spiffe://td/"
	    "0101010101010101010101010101010101010101010101010101010101010101/v65535");
	assert_int_equal(attest_expand_id("spiffe://td/{nope}", "x", &b, out, sizeof(out)),
	    HSM_EINVAL);
	assert_non_null(strstr(hsm_err_detail(), "unknown name 'nope'"));
	assert_int_equal(attest_expand_id("spiffe://td/{mrsigner", "x", &b, out, sizeof(out)),
	    HSM_EINVAL);
	assert_int_equal(attest_expand_id("spiffe://td/{mrsigner}", "x", &b, out, 40), HSM_EINVAL);
	assert_int_equal(attest_expand_id("spiffe://td/abc", "x", &b, out, 15), HSM_EINVAL);
	assert_int_equal(attest_expand_id("spiffe://td/abc", "x", &b, out, 16), 0);
}

static int
parse(const char *attest_yaml, struct ca_config **c)
{
	char text[4096];

	snprintf(text, sizeof(text),
	    "trust_domain: example.org\n"
	    "token:\n  module: /m.so\n  uri: \"pkcs11:token=ca\"\n  pin_file: /p\n"
	    "state_dir: /var/lib/ca\n"
	    "attestation:\n  collateral: %s\n%s", coll_path, attest_yaml);
	return ca_config_parse("ca.yaml", "/etc/hsmesh", (const uint8_t *)text, strlen(text), c);
}

static void
refuse(const char *yaml, const char *needle)
{
	struct ca_config *c = NULL;

	hsm_err_clear();
	assert_int_equal(parse(yaml, &c), HSM_ECONFIG);
	assert_null(c);
	if (strstr(hsm_err_detail(), needle) == NULL)
		fail_msg("detail '%s' lacks '%s'", hsm_err_detail(), needle);
}

#define MRS "  mrsigner: [\"abababababababababababababababababababababababababababababababab\"]\n"

static void
config(void **state)
{
	struct ca_config *c = NULL;
	struct attest_policy *p;

	assert_int_equal(parse(MRS, &c), 0);
	assert_non_null(p = c->attest);
	assert_int_equal(p->n_mrsigner, 1);
	assert_int_equal(p->mrsigner[0][0], 0xab);
	assert_int_equal(p->n_mrenclave, 0);
	assert_int_equal(p->tcb_ok, 1u << SGX_TCB_UP_TO_DATE);
	assert_false(p->allow_debug);
	assert_false(p->require);
	assert_false(p->has_prod_id);
	assert_int_equal(p->nonce_ttl, 300);
	assert_null(p->test_root_pem);
	assert_string_equal(p->id_template, "spiffe://{trust_domain}/sgx/{mrsigner}/{isv_prod_id}");
	ca_config_free(c);

	assert_int_equal(parse(MRS "  tcb_status: [UpToDate, SWHardeningNeeded, OutOfDate]\n"
	    "  isv_prod_id: 3\n  min_isv_svn: 2\n  allow_debug: yes\n  require: true\n"
	    "  nonce_ttl: 1m\n  spiffe_id: \"spiffe://{trust_domain}/e/{mrenclave}\"\n", &c), 0);
	p = c->attest;
	assert_int_equal(p->tcb_ok, (1u << SGX_TCB_UP_TO_DATE) |
	    (1u << SGX_TCB_SW_HARDENING_NEEDED) | (1u << SGX_TCB_OUT_OF_DATE));
	assert_true(p->has_prod_id);
	assert_int_equal(p->prod_id, 3);
	assert_int_equal(p->min_isv_svn, 2);
	assert_true(p->allow_debug);
	assert_true(p->require);
	assert_int_equal(p->nonce_ttl, 60);
	ca_config_free(c);

	/* absent: no policy */
	{
		const char *t = "trust_domain: example.org\ntoken:\n  module: /m.so\n"
		    "  uri: \"pkcs11:token=ca\"\n  pin_file: /p\nstate_dir: /s\n";

		assert_int_equal(ca_config_parse("ca.yaml", "/", (const uint8_t *)t, strlen(t), &c), 0);
	}
	assert_null(c->attest);
	ca_config_free(c);

	refuse("", "needs a list of allowed mrsigner or mrenclave");
	refuse("  mrsigner: [abc]\n", "64 hex digits");
	refuse("  mrsigner: abab\n", "list");
	refuse(MRS "  tcb_status: [Revoked]\n", "Revoked TCB is never accepted");
	refuse(MRS "  tcb_status: [Fine]\n", "unknown TCB status 'Fine'");
	refuse(MRS "  spiffe_id: \"spiffe://other.org/x/{mrsigner}\"\n", "trust domain example.org");
	refuse(MRS "  spiffe_id: \"spiffe://{trust_domain}/{bogus}\"\n", "unknown name 'bogus'");
	refuse(MRS "  spiffe_id: \"spiffe://{trust_domain}\"\n", "must name a workload");
	refuse(MRS "  nonce_ttl: 2h\n", "from 1s to 1h");
	refuse(MRS "  isv_prod_id: 70000\n", "isv_prod_id");
	refuse(MRS "  colour: blue\n", "unknown key 'attestation.colour'");
	refuse(MRS "  insecure_test_root: /nonexistent/root.pem\n", "insecure_test_root");
}

static void
config_bad_collateral(void **state)
{
	struct ca_config *c = NULL;
	const char *text = "trust_domain: example.org\n"
	    "token:\n  module: /m.so\n  uri: \"pkcs11:token=ca\"\n  pin_file: /p\n"
	    "state_dir: /var/lib/ca\n"
	    "attestation:\n  collateral: /nonexistent/coll.json\n" MRS;

	assert_int_equal(ca_config_parse("ca.yaml", "/", (const uint8_t *)text, strlen(text), &c),
	    HSM_ECONFIG);
	assert_non_null(strstr(hsm_err_detail(), "'attestation.collateral' /nonexistent/coll.json"));
}

/* A policy over a verified result, without a quote. */
static void
evaluate(void **state)
{
	struct attest_policy p;
	struct sgx_verify_result v;
	struct attest_result r;
	uint8_t spki[91], allowed[1][32];
	time_t now = 1800000000;

	memset(spki, 0x5a, sizeof(spki));
	memset(&p, 0, sizeof(p));
	memset(allowed, 0xab, sizeof(allowed));
	p.mrsigner = allowed;
	p.n_mrsigner = 1;
	p.tcb_ok = 1u << SGX_TCB_UP_TO_DATE;
	p.nonce_ttl = 300;
	p.id_template = (char *)"spiffe://{trust_domain}/sgx/{isv_prod_id}";
	p.trust_domain = (char *)"example.org";
	memset(&v, 0, sizeof(v));
	v.tcb_status = SGX_TCB_UP_TO_DATE;
	memset(v.enclave.mrsigner, 0xab, 32);
	v.enclave.isv_prod_id = 4;
	v.enclave.isv_svn = 2;
	SHA256(spki, sizeof(spki), v.enclave.report_data);
	attest_nonce_make(key, now - 10, v.enclave.report_data + 32);

	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), 0);
	assert_string_equal(r.spiffe_id, "spiffe://example.org/sgx/4");

	/* another key */
	spki[0] ^= 1;
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), HSM_EPERM);
	assert_non_null(strstr(r.why, "does not match the request's key"));
	spki[0] ^= 1;
	/* stale nonce */
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now + 400, &r),
	    HSM_EPOLICY);
	assert_non_null(strstr(r.why, "nonce expired"));
	/* debug enclave */
	v.enclave.attributes[0] |= SGX_ATTR_DEBUG;
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_non_null(strstr(r.why, "debug enclave"));
	p.allow_debug = 1;
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), 0);
	/* signer, enclave, product, SVN, TCB */
	v.enclave.mrsigner[5] = 0;
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "MRSIGNER not allowed");
	v.enclave.mrsigner[5] = 0xab;
	p.mrenclave = allowed;
	p.n_mrenclave = 1;
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "MRENCLAVE not allowed");
	p.n_mrenclave = 0;
	p.has_prod_id = 1;
	p.prod_id = 5;
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "ISV product id 4 is not 5");
	p.prod_id = 4;
	p.min_isv_svn = 3;
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "ISV SVN 2 is below min_isv_svn 3");
	p.min_isv_svn = 2;
	v.tcb_status = SGX_TCB_OUT_OF_DATE;
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "TCB status OutOfDate not accepted");
	p.tcb_ok |= 1u << SGX_TCB_OUT_OF_DATE;
	assert_int_equal(attest_evaluate(&p, &v, spki, sizeof(spki), key, now, &r), 0);
}

/* A real quote verifies, then fails the binding: its report data names no key of ours. */
static void
real_quote_unbound(void **state)
{
	struct ca_config *c = NULL, *c2 = NULL;
	struct attest_result r;
	uint8_t *q = NULL, spki[91];
	size_t qlen;
	time_t at;

	assert_int_equal(parse(MRS, &c), 0);
	assert_int_equal(hsm_read_file(quote_path, 1 << 20, &q, &qlen), 0);
	memset(spki, 1, sizeof(spki));
	assert_int_equal(sgx_parse_time("2025-07-19T10:01:17Z", &at), 0);
	assert_int_equal(attest_check(c->attest, q, qlen, spki, sizeof(spki), key, at, &r), HSM_EPERM);
	assert_true(r.verified);
	assert_non_null(strstr(r.why, "report data does not match"));
	/* today its collateral has expired: refused at verification, not verified */
	assert_int_not_equal(attest_check(c->attest, q, qlen, spki, sizeof(spki), key,
	    at + 400 * 86400, &r), 0);
	assert_false(r.verified);
	assert_non_null(strstr(r.why, "quote refused at step collateral"));
	free(q);
	/* a genuine TDX quote verifies but names no enclave: refused as such */
	{
		char tq[1024];

		shared_path(tq, sizeof(tq), PHALA "tdx_quote");
		assert_int_equal(hsm_read_file(tq, 1 << 20, &q, &qlen), 0);
	}
	ca_config_free(c);
	{
		char tc[1024], text[2048];

		shared_path(tc, sizeof(tc), PHALA "tdx_quote_collateral.json");
		snprintf(text, sizeof(text), "trust_domain: example.org\n"
		    "token:\n  module: /m.so\n  uri: \"pkcs11:token=ca\"\n  pin_file: /p\n"
		    "state_dir: /var/lib/ca\nattestation:\n  collateral: %s\n" MRS, tc);
		assert_int_equal(ca_config_parse("ca.yaml", "/", (const uint8_t *)text, strlen(text),
		    &c), 0);
	}
	/* inside its collateral's window, as t_inspect_quote.sh verifies it */
	assert_int_equal(sgx_parse_time("2025-07-01T00:00:00Z", &at), 0);
	assert_int_equal(attest_check(c->attest, q, qlen, spki, sizeof(spki), key, at, &r),
	    HSM_EPOLICY);
	assert_true(r.verified);
	assert_string_equal(r.why, "a TDX quote is not accepted: the CA certifies keys held by SGX "
	    "enclaves");
	free(q);
	assert_int_equal(parse(MRS, &c2), 0);
	assert_int_equal(hsm_read_file(quote_path, 1 << 20, &q, &qlen), 0);
	assert_int_equal(sgx_parse_time("2025-07-19T10:01:17Z", &at), 0);
	/* a truncated quote */
	assert_int_not_equal(attest_check(c2->attest, q, 100, spki, sizeof(spki), key, at, &r), 0);
	assert_non_null(strstr(r.why, "quote refused at step parse"));
	free(q);
	ca_config_free(c);
	ca_config_free(c2);
}

static void
identity_extension(void **state)
{
	struct sgx_verify_result v;
	X509_EXTENSION *ext = NULL;
	X509 *x = X509_new();
	char line[300];

	memset(&v, 0, sizeof(v));
	memset(v.enclave.mrenclave, 0x11, 32);
	memset(v.enclave.mrsigner, 0x22, 32);
	v.enclave.isv_prod_id = 65535;
	v.enclave.isv_svn = 9;
	v.enclave.attributes[0] = SGX_ATTR_DEBUG;
	v.tcb_status = SGX_TCB_SW_HARDENING_NEEDED;
	assert_int_equal(attest_identity_describe(x, line, sizeof(line)), 0);
	assert_int_equal(attest_identity_ext(&v, &ext), 0);
	assert_false(X509_EXTENSION_get_critical(ext));
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	assert_int_equal(attest_identity_describe(x, line, sizeof(line)), 1);
	assert_string_equal(line, "MRENCLAVE 1111111111111111111111111111111111111111111111111111111111111111, "
	    "MRSIGNER 2222222222222222222222222222222222222222222222222222222222222222, "
	    "ISV product 65535, SVN 9, DEBUG enclave, TCB SWHardeningNeeded");
	X509_EXTENSION_free(ext);
	X509_free(x);

	/* malformed: the right OID over other bytes */
	x = X509_new();
	assert_non_null(x);
	{
		ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
		ASN1_OBJECT *o = OBJ_txt2obj(HSM_OID_SGX_IDENTITY, 1);

		ASN1_OCTET_STRING_set(os, (const unsigned char *)"\x30\x03\x02\x01\x05", 5);
		ext = X509_EXTENSION_create_by_OBJ(NULL, o, 0, os);
		assert_int_equal(X509_add_ext(x, ext, -1), 1);
		assert_int_equal(attest_identity_describe(x, line, sizeof(line)), HSM_EPROTO);
		X509_EXTENSION_free(ext);
		ASN1_OCTET_STRING_free(os);
		ASN1_OBJECT_free(o);
	}
	X509_free(x);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nonces),
		cmocka_unit_test(templates),
		cmocka_unit_test(config),
		cmocka_unit_test(config_bad_collateral),
		cmocka_unit_test(evaluate),
		cmocka_unit_test(real_quote_unbound),
		cmocka_unit_test(identity_extension),
	};

	shared_path(coll_path, sizeof(coll_path), PHALA "sgx_quote_collateral.json");
	shared_path(quote_path, sizeof(quote_path), PHALA "sgx_quote");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
