/*
 * test_attest.c - the CA's attestation policy (attest.h), its SGX kind
 * (attest_sgx.h), nonces (evtype.h), ID templates and binding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "attest.h"
#include "attest_sgx.h"
#include "caconf.h"
#include "evtype.h"
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

	ev_nonce_make(key, t0, n);
	assert_int_equal(ev_nonce_check(key, n, t0, 300), 0);
	assert_int_equal(ev_nonce_check(key, n, t0 + 300, 300), 0);
	assert_int_equal(ev_nonce_check(key, n, t0 + 301, 300), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "expired 1s ago"));
	/* made "in the future" beyond the allowed skew */
	assert_int_equal(ev_nonce_check(key, n, t0 - 60, 300), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "future"));
	/* another CA's key, a flipped bit, a forged time */
	memcpy(other, key, 32);
	other[31] ^= 1;
	assert_int_equal(ev_nonce_check(other, n, t0, 300), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "not issued by this CA"));
	n[20] ^= 0x80;
	assert_int_equal(ev_nonce_check(key, n, t0, 300), HSM_EPOLICY);
	n[20] ^= 0x80;
	n[7] ^= 1;
	assert_int_equal(ev_nonce_check(key, n, t0, 300), HSM_EPOLICY);
	/* the derived key depends on the join-token key */
	ev_nonce_key(key, other);
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
	assert_int_equal(attest_sgx_expand_id("spiffe://{trust_domain}/sgx/{mrsigner}/{isv_prod_id}",
	    "example.org", &b, out, sizeof(out)), 0);
	assert_string_equal(out, "spiffe://example.org/sgx/"
	    "abababababababababababababababababababababababababababababababab/7");
	assert_int_equal(attest_sgx_expand_id("spiffe://td/{mrenclave}/v{isv_svn}", "x", &b, out,
	    sizeof(out)), 0);
	assert_string_equal(out, "spiffe://td/"
	    "0101010101010101010101010101010101010101010101010101010101010101/v65535");
	assert_int_equal(attest_sgx_expand_id("spiffe://td/{nope}", "x", &b, out, sizeof(out)),
	    HSM_EINVAL);
	assert_non_null(strstr(hsm_err_detail(), "unknown name 'nope'"));
	assert_int_equal(attest_sgx_expand_id("spiffe://td/{mrsigner", "x", &b, out, sizeof(out)),
	    HSM_EINVAL);
	assert_int_equal(attest_sgx_expand_id("spiffe://td/{mrsigner}", "x", &b, out, 40), HSM_EINVAL);
	assert_int_equal(attest_sgx_expand_id("spiffe://td/abc", "x", &b, out, 15), HSM_EINVAL);
	assert_int_equal(attest_sgx_expand_id("spiffe://td/abc", "x", &b, out, 16), 0);
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
	const struct attest_sgx_policy *p;

	assert_int_equal(parse(MRS, &c), 0);
	assert_non_null(c->attest);
	assert_non_null(p = attest_sgx_policy_of(c->attest));
	assert_ptr_equal(attest_accepted(c->attest, 0), ev_type_get(EV_SGX));
	assert_null(attest_accepted(c->attest, 1));
	assert_int_equal(p->n_mrsigner, 1);
	assert_int_equal(p->mrsigner[0][0], 0xab);
	assert_int_equal(p->n_mrenclave, 0);
	assert_int_equal(p->tcb_ok, 1u << SGX_TCB_UP_TO_DATE);
	assert_false(p->allow_debug);
	assert_false(c->attest->require);
	assert_false(p->has_prod_id);
	assert_int_equal(c->attest->nonce_ttl, 300);
	assert_null(p->test_root_pem);
	assert_string_equal(p->id_template, "spiffe://{trust_domain}/sgx/{mrsigner}/{isv_prod_id}");
	ca_config_free(c);

	assert_int_equal(parse(MRS "  tcb_status: [UpToDate, SWHardeningNeeded, OutOfDate]\n"
	    "  isv_prod_id: 3\n  min_isv_svn: 2\n  allow_debug: yes\n  require: true\n"
	    "  nonce_ttl: 1m\n  spiffe_id: \"spiffe://{trust_domain}/e/{mrenclave}\"\n", &c), 0);
	p = attest_sgx_policy_of(c->attest);
	assert_int_equal(p->tcb_ok, (1u << SGX_TCB_UP_TO_DATE) |
	    (1u << SGX_TCB_SW_HARDENING_NEEDED) | (1u << SGX_TCB_OUT_OF_DATE));
	assert_true(p->has_prod_id);
	assert_int_equal(p->prod_id, 3);
	assert_int_equal(p->min_isv_svn, 2);
	assert_true(p->allow_debug);
	assert_true(c->attest->require);
	assert_int_equal(c->attest->nonce_ttl, 60);
	ca_config_free(c);

	/* absent: no policy */
	{
		const char *t = "trust_domain: example.org\ntoken:\n  module: /m.so\n"
		    "  uri: \"pkcs11:token=ca\"\n  pin_file: /p\nstate_dir: /s\n";

		assert_int_equal(ca_config_parse("ca.yaml", "/", (const uint8_t *)t, strlen(t), &c), 0);
	}
	assert_null(c->attest);
	assert_null(attest_sgx_policy_of(c->attest));
	assert_null(attest_accepted(c->attest, 0));
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
	struct attest_sgx_policy p;
	struct attest_policy gp;
	struct sgx_verify_result v;
	struct attest_result r;
	uint8_t spki[91], allowed[1][32];
	time_t now = 1800000000;

	memset(spki, 0x5a, sizeof(spki));
	memset(&p, 0, sizeof(p));
	memset(&gp, 0, sizeof(gp));
	memset(allowed, 0xab, sizeof(allowed));
	p.mrsigner = allowed;
	p.n_mrsigner = 1;
	p.tcb_ok = 1u << SGX_TCB_UP_TO_DATE;
	gp.nonce_ttl = 300;
	p.id_template = (char *)"spiffe://{trust_domain}/sgx/{isv_prod_id}";
	gp.trust_domain = (char *)"example.org";
	gp.sgx = &p;
	memset(&v, 0, sizeof(v));
	v.tcb_status = SGX_TCB_UP_TO_DATE;
	memset(v.enclave.mrsigner, 0xab, 32);
	v.enclave.isv_prod_id = 4;
	v.enclave.isv_svn = 2;
	SHA256(spki, sizeof(spki), v.enclave.report_data);
	ev_nonce_make(key, now - 10, v.enclave.report_data + 32);

	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), 0);
	assert_string_equal(r.spiffe_id, "spiffe://example.org/sgx/4");

	/* another key */
	spki[0] ^= 1;
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), HSM_EPERM);
	assert_non_null(strstr(r.why, "does not match the request's key"));
	spki[0] ^= 1;
	/* stale nonce */
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now + 400, &r),
	    HSM_EPOLICY);
	assert_non_null(strstr(r.why, "nonce expired"));
	/* debug enclave */
	v.enclave.attributes[0] |= SGX_ATTR_DEBUG;
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_non_null(strstr(r.why, "debug enclave"));
	p.allow_debug = 1;
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), 0);
	/* signer, enclave, product, SVN, TCB */
	v.enclave.mrsigner[5] = 0;
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "MRSIGNER not allowed");
	v.enclave.mrsigner[5] = 0xab;
	p.mrenclave = allowed;
	p.n_mrenclave = 1;
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "MRENCLAVE not allowed");
	p.n_mrenclave = 0;
	p.has_prod_id = 1;
	p.prod_id = 5;
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "ISV product id 4 is not 5");
	p.prod_id = 4;
	p.min_isv_svn = 3;
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "ISV SVN 2 is below min_isv_svn 3");
	p.min_isv_svn = 2;
	v.tcb_status = SGX_TCB_OUT_OF_DATE;
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), HSM_EPOLICY);
	assert_string_equal(r.why, "TCB status OutOfDate not accepted");
	p.tcb_ok |= 1u << SGX_TCB_OUT_OF_DATE;
	assert_int_equal(attest_sgx_evaluate(&p, &gp, &v, spki, sizeof(spki), key, now, &r), 0);
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
	assert_int_equal(attest_check(c->attest, EV_SGX, q, qlen, spki, sizeof(spki), key, at, &r), HSM_EPERM);
	assert_true(r.verified);
	assert_non_null(strstr(r.why, "report data does not match"));
	/* today its collateral has expired: refused at verification, not verified */
	assert_int_not_equal(attest_check(c->attest, EV_SGX, q, qlen, spki, sizeof(spki), key,
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
	assert_int_equal(attest_check(c->attest, EV_SGX, q, qlen, spki, sizeof(spki), key, at, &r),
	    HSM_EPOLICY);
	assert_true(r.verified);
	assert_string_equal(r.why, "a TDX quote is not accepted: the CA certifies keys held by SGX "
	    "enclaves");
	free(q);
	assert_int_equal(parse(MRS, &c2), 0);
	assert_int_equal(hsm_read_file(quote_path, 1 << 20, &q, &qlen), 0);
	assert_int_equal(sgx_parse_time("2025-07-19T10:01:17Z", &at), 0);
	/* a truncated quote */
	assert_int_not_equal(attest_check(c2->attest, EV_SGX, q, 100, spki, sizeof(spki), key, at, &r), 0);
	assert_non_null(strstr(r.why, "quote refused at step parse"));
	free(q);
	ca_config_free(c);
	ca_config_free(c2);
}

/*
 * collateral_grace: collateral past its nextUpdate is refused by default,
 * and accepted within the grace, with what had expired and by how long in
 * the audit fields. The real quote, verified just after its collateral's
 * earliest expiry.
 */
static void
collateral_grace(void **state)
{
	struct ca_config *c = NULL;
	struct attest_result r;
	struct attest_audit a;
	uint8_t *q = NULL, spki[91];
	size_t qlen;
	time_t at, expiry;
	const char *by = NULL, *items = NULL, *when = NULL;

	assert_int_equal(parse(MRS, &c), 0);
	assert_int_equal(attest_sgx_policy_of(c->attest)->collateral_grace, 0);
	assert_int_equal(hsm_read_file(quote_path, 1 << 20, &q, &qlen), 0);
	memset(spki, 1, sizeof(spki));
	assert_int_equal(sgx_parse_time("2025-07-19T10:01:17Z", &at), 0);
	(void)attest_check(c->attest, EV_SGX, q, qlen, spki, sizeof(spki), key, at, &r);
	assert_true(r.verified);
	assert_false(r.u.sgx.collateral_expired);
	expiry = r.u.sgx.collateral_expiry;
	assert_true(expiry > at);
	/* An hour past it, without a grace: refused at the collateral step. */
	assert_int_not_equal(attest_check(c->attest, EV_SGX, q, qlen, spki, sizeof(spki), key,
	    expiry + 3600, &r), 0);
	assert_false(r.verified);
	assert_non_null(strstr(r.why, "quote refused at step collateral"));
	assert_non_null(strstr(r.why, "collateral_grace 0s"));
	ca_config_free(c);
	/* "0" is no grace either. */
	assert_int_equal(parse(MRS "  collateral_grace: 0\n", &c), 0);
	assert_int_equal(attest_sgx_policy_of(c->attest)->collateral_grace, 0);
	ca_config_free(c);
	/* A day of grace: the same quote verifies (its binding is what fails here), flagged. */
	assert_int_equal(parse(MRS "  collateral_grace: 1d\n", &c), 0);
	assert_int_equal(attest_sgx_policy_of(c->attest)->collateral_grace, 86400);
	assert_int_equal(attest_check(c->attest, EV_SGX, q, qlen, spki, sizeof(spki), key,
	    expiry + 3600, &r), HSM_EPERM);
	assert_true(r.verified);
	assert_non_null(strstr(r.why, "report data does not match"));
	assert_true(r.u.sgx.collateral_expired);
	assert_int_equal(r.u.sgx.collateral_expired_by, 3600);
	attest_audit_fields(&r, &a);
	for (size_t i = 0; a.kv[i] != NULL; i += 2) {
		if (strcmp(a.kv[i], "collateral_expired_by") == 0)
			by = a.kv[i + 1];
		else if (strcmp(a.kv[i], "collateral_expired_items") == 0)
			items = a.kv[i + 1];
		else if (strcmp(a.kv[i], "collateral_expiry") == 0)
			when = a.kv[i + 1];
	}
	assert_non_null(by);
	assert_string_equal(by, "3600");
	assert_non_null(items);
	assert_true(items[0] != '\0');
	assert_non_null(when);
	/* Past the grace: refused again. */
	assert_int_not_equal(attest_check(c->attest, EV_SGX, q, qlen, spki, sizeof(spki), key,
	    expiry + 86400 + 1, &r), 0);
	assert_false(r.verified);
	ca_config_free(c);
	refuse(MRS "  collateral_grace: soon\n", "collateral_grace");
	free(q);
}

/*
 * Intel's directory form: pckSignChain.pem (the PCK CA, root) is also the
 * PCK CRL's issuer chain, so the loader sets it and the verifier checks it.
 */
static void
intel_directory_pck_crl_chain(void **state)
{
	char d[1024], f[1100], *root = NULL;
	struct sgx_collateral c;
	struct sgx_verify_opts o;
	struct sgx_verify_result v;
	uint8_t *sign = NULL, *q = NULL, *rt = NULL;
	size_t sl, ql, rl;

	shared_path(d, sizeof(d), "testdata/sgx/intel-qvl-sample");
	assert_int_equal(attest_sgx_collateral_load(d, &c), 0);
	snprintf(f, sizeof(f), "%s/pckSignChain.pem", d);
	assert_int_equal(hsm_read_file(f, 1 << 20, &sign, &sl), 0);
	assert_non_null(c.pck_crl_chain);
	assert_string_equal(c.pck_crl_chain, (const char *)sign);
	snprintf(f, sizeof(f), "%s/quote.dat", d);
	assert_int_equal(hsm_read_file(f, 1 << 20, &q, &ql), 0);
	snprintf(f, sizeof(f), "%s/trustedRootCaCert.pem", d);
	assert_int_equal(hsm_read_file(f, 1 << 20, &rt, &rl), 0);
	root = (char *)rt;
	memset(&o, 0, sizeof(o));
	o.insecure_test_root_pem = root;
	assert_int_equal(sgx_parse_time("2025-01-01T00:00:00Z", &o.at), 0);
	assert_int_equal(sgx_verify_quote(q, ql, &c, &o, &v), 0);
	/* A chain that is not the CRL's issuer's is refused: the check is real. */
	free(c.pck_crl_chain);
	c.pck_crl_chain = strdup(root);
	assert_int_not_equal(sgx_verify_quote(q, ql, &c, &o, &v), 0);
	sgx_collateral_free(&c);
	free(sign);
	free(q);
	free(rt);
}

/* The tagged result: every operation dispatches on its type. */
static void
typed_result(void **state)
{
	struct attest_result *r = calloc(1, sizeof(*r));
	struct attest_audit a;
	X509_EXTENSION *ext = NULL;
	X509 *x = X509_new();
	const char *label = NULL;
	char line[300];
	static const char *const want[] = { "evidence", "sgx", "mrenclave",
	    "1111111111111111111111111111111111111111111111111111111111111111", "mrsigner",
	    "2222222222222222222222222222222222222222222222222222222222222222", "isv_prod_id", "3",
	    "isv_svn", "9", "debug", "false", "tcb_status", "UpToDate", "id",
	    "spiffe://example.org/sgx/x", NULL };
	size_t i;

	assert_non_null(r);
	assert_non_null(x);
	/* A kind this CA does not accept, or no policy at all. */
	assert_int_equal(attest_check(NULL, EV_SGX, (const uint8_t *)"q", 1, (const uint8_t *)"k", 1,
	    key, 0, r), HSM_EUNSUPPORTED);
	assert_int_equal(r->type, EV_SGX);
	assert_int_equal(attest_check(NULL, EV_NONE, NULL, 0, NULL, 0, key, 0, r), HSM_EUNSUPPORTED);
	/* Nothing verified: nothing to record but the refusal. */
	r->type = EV_SGX;
	snprintf(r->why, sizeof(r->why), "quote refused at step parse: short");
	assert_int_equal(attest_identity_ext(r, &ext), HSM_EINVAL);
	assert_null(ext);
	attest_audit_fields(r, &a);
	assert_string_equal(a.kv[0], "evidence");
	assert_string_equal(a.kv[1], "sgx");
	assert_string_equal(a.kv[2], "reason");
	assert_string_equal(a.kv[3], r->why);
	assert_null(a.kv[4]);
	attest_auth_tag(r, line, sizeof(line));
	assert_string_equal(line, "");

	/* Verified: the SGX kind's measurements, in the audit log's order. */
	r->verified = 1;
	r->why[0] = '\0';
	snprintf(r->spiffe_id, sizeof(r->spiffe_id), "spiffe://example.org/sgx/x");
	memset(r->u.sgx.enclave.mrenclave, 0x11, 32);
	memset(r->u.sgx.enclave.mrsigner, 0x22, 32);
	r->u.sgx.enclave.isv_prod_id = 3;
	r->u.sgx.enclave.isv_svn = 9;
	r->u.sgx.tcb_status = SGX_TCB_UP_TO_DATE;
	attest_audit_fields(r, &a);
	for (i = 0; want[i] != NULL; i++) {
		assert_non_null(a.kv[i]);
		assert_string_equal(a.kv[i], want[i]);
	}
	assert_null(a.kv[i]);
	attest_auth_tag(r, line, sizeof(line));
	assert_string_equal(line, "sgx:1111111111111111");

	/* The certificate extension, and how inspect finds it again. */
	assert_int_equal(attest_identity_describe(x, 0, &label, line, sizeof(line)), 0);
	assert_string_equal(label, "sgx identity");
	assert_int_equal(attest_identity_ext(r, &ext), 0);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	assert_int_equal(attest_identity_describe(x, 0, &label, line, sizeof(line)), 1);
	assert_non_null(strstr(line, "ISV product 3, SVN 9, production enclave, TCB UpToDate"));
	assert_int_equal(attest_identity_describe(x, 1, &label, line, sizeof(line)), HSM_ENOENT);
	X509_EXTENSION_free(ext);
	X509_free(x);
	free(r);
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
		cmocka_unit_test(collateral_grace),
		cmocka_unit_test(intel_directory_pck_crl_chain),
		cmocka_unit_test(typed_result),
	};

	shared_path(coll_path, sizeof(coll_path), PHALA "sgx_quote_collateral.json");
	shared_path(quote_path, sizeof(quote_path), PHALA "sgx_quote");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
