/* test_sgxquote.c - SGX DCAP quote parser and verifier on real quotes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "err.h"
#include "sgxquote.h"
#include "sgxverify.h"
#include "util.h"

#define PHALA	"testdata/sgx/phala-dcap-qvl/"
#define INTEL	"testdata/sgx/intel-qvl-sample/"

/* $HSMESH_SHARED, else $HSMESH_ROOT/../shared, else ../shared. */
static void
shared_path(char *buf, size_t len, const char *rel)
{
	const char *d = getenv("HSMESH_SHARED"), *root;
	int n;

	if (d != NULL && *d != '\0')
		n = snprintf(buf, len, "%s/%s", d, rel);
	else if ((root = getenv("HSMESH_ROOT")) != NULL && *root != '\0')
		n = snprintf(buf, len, "%s/../shared/%s", root, rel);
	else
		n = snprintf(buf, len, "../shared/%s", rel);
	if (n < 0 || (size_t)n >= len)
		fail_msg("path too long");
}

static void
load(const char *rel, uint8_t **buf, size_t *len)
{
	char path[1024];

	shared_path(path, sizeof(path), rel);
	if (hsm_read_file(path, 1U << 20, buf, len) != 0)
		fail_msg("%s: %s", path, hsm_err_detail());
}

static void
unhex_str(const char *h, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			fail_msg("bad hex");
		out[i] = (uint8_t)v;
	}
}

static void
assert_hex(const uint8_t *got, size_t n, const char *want)
{
	uint8_t w[64];

	assert_true(n <= sizeof(w) && strlen(want) == 2 * n);
	unhex_str(want, w, n);
	assert_memory_equal(got, w, n);
}

/* Shared fixture: the primary quote and its collateral. */
struct fx {
	uint8_t			*quote;
	size_t			 qlen;
	struct sgx_collateral	 coll;
	struct sgx_verify_opts	 opts;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	uint8_t *j;
	size_t jl;

	if (f == NULL)
		return -1;
	load(PHALA "sgx_quote", &f->quote, &f->qlen);
	load(PHALA "sgx_quote_collateral.json", &j, &jl);
	if (sgx_collateral_from_json((const char *)j, jl, &f->coll) != 0) {
		fprintf(stderr, "collateral: %s\n", hsm_err_detail());
		free(j);
		return -1;
	}
	free(j);
	if (sgx_parse_time("2025-07-19T10:01:17Z", &f->opts.at) != 0)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	sgx_collateral_free(&f->coll);
	free(f->quote);
	free(f);
	return 0;
}

static void
parse_real_v3(void **state)
{
	struct fx *f = *state;
	struct sgx_quote q;
	static const char rd[] = "Hello, world!";

	assert_int_equal(f->qlen, 4600);
	if (sgx_quote_parse(f->quote, f->qlen, &q) != 0)
		fail_msg("%s", hsm_err_detail());
	assert_int_equal(q.version, 3);
	assert_int_equal(q.att_key_type, SGX_ATT_KEY_ECDSA_P256);
	assert_int_equal(q.tee_type, SGX_TEE_SGX);
	assert_int_equal(q.qe_svn, 10);
	assert_int_equal(q.pce_svn, 15);
	assert_hex(q.enclave.mrenclave, 32,
	    "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb");
	assert_hex(q.enclave.mrsigner, 32,
	    "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6");
	assert_hex(q.enclave.attributes, 16,
	    "0500000000000000e700000000000000");
	assert_int_equal(q.enclave.attributes[0] & SGX_ATTR_DEBUG, 0);
	assert_int_equal(q.enclave.isv_prod_id, 0);
	assert_int_equal(q.enclave.isv_svn, 0);
	assert_memory_equal(q.enclave.report_data, rd, strlen(rd));
	for (size_t i = strlen(rd); i < 64; i++)
		assert_int_equal(q.enclave.report_data[i], 0);
	assert_int_equal(q.signed_len, SGX_QUOTE_HEADER_LEN +
	    SGX_REPORT_BODY_LEN);
	assert_int_equal(q.cert_type, SGX_CERT_PCK_CHAIN);
	assert_true(q.cert_len > 0);
	assert_true(q.cert_data + q.cert_len == f->quote + f->qlen);
}

static void
parse_other_samples(void **state)
{
	static const struct {
		const char	*file;
		uint16_t	 version;
		uint32_t	 tee;
		uint16_t	 cert;
	} s[] = {
		{ PHALA "tdx_quote", 4, SGX_TEE_TDX, SGX_CERT_PCK_CHAIN },
		{ INTEL "quote.dat", 3, SGX_TEE_SGX, SGX_CERT_PPID_CLEAR },
		{ INTEL "tdx/quote.dat", 4, SGX_TEE_TDX, 0 },
	};
	struct sgx_quote q;
	uint8_t *b;
	size_t len;

	/* TDX 1.5 quote (version 5): refused as unsupported */
	load(PHALA "tdx_quote_outdated", &b, &len);
	assert_int_equal(sgx_quote_parse(b, len, &q), HSM_EUNSUPPORTED);
	assert_non_null(strstr(hsm_err_detail(), "version 5"));
	free(b);
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		load(s[i].file, &b, &len);
		if (sgx_quote_parse(b, len, &q) != 0)
			fail_msg("%s: %s", s[i].file, hsm_err_detail());
		assert_int_equal(q.version, s[i].version);
		assert_int_equal(q.tee_type, s[i].tee);
		if (s[i].cert != 0)
			assert_int_equal(q.cert_type, s[i].cert);
		if (q.tee_type == SGX_TEE_TDX)
			assert_non_null(q.td_body);
		free(b);
	}
}

/* Every proper prefix is refused, never read past. */
static void
parse_truncated(void **state)
{
	struct fx *f = *state;
	struct sgx_quote q;
	uint8_t *b;

	for (size_t n = 0; n < f->qlen; n++) {
		/* an exact-size heap copy so ASan sees any overread */
		if ((b = malloc(n ? n : 1)) == NULL)
			fail();
		memcpy(b, f->quote, n);
		assert_int_equal(sgx_quote_parse(b, n, &q), HSM_EPROTO);
		assert_null(q.sig);
		free(b);
	}
	assert_int_equal(sgx_quote_parse(f->quote, 100, &q), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "report body"));
}

static void
set_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void
parse_bad_lengths(void **state)
{
	struct fx *f = *state;
	struct sgx_quote q;
	uint8_t *b;
	size_t off = SGX_QUOTE_HEADER_LEN + SGX_REPORT_BODY_LEN;
	size_t auth = off + 4 + 64 + 64 + 384 + 64;

	if ((b = malloc(f->qlen + 1)) == NULL)
		fail();
	/* oversized signature data length */
	memcpy(b, f->quote, f->qlen);
	set_le32(b + off, 0xfffffff0U);
	assert_int_equal(sgx_quote_parse(b, f->qlen, &q), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "signature data length"));
	/* a trailing zero byte is padding; a non-zero one is refused */
	memcpy(b, f->quote, f->qlen);
	b[f->qlen] = 0;
	assert_int_equal(sgx_quote_parse(b, f->qlen + 1, &q), 0);
	assert_int_equal(q.padding_len, 1);
	b[f->qlen] = 1;
	assert_int_equal(sgx_quote_parse(b, f->qlen + 1, &q), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "signature data length"));
	/* signature data length one short: the cert data no longer fits */
	memcpy(b, f->quote, f->qlen);
	b[f->qlen] = 0;
	set_le32(b + off, (uint32_t)(f->qlen - off - 4 - 1));
	assert_int_equal(sgx_quote_parse(b, f->qlen, &q), HSM_EPROTO);
	/* oversized QE auth data length */
	memcpy(b, f->quote, f->qlen);
	b[auth] = 0xff;
	b[auth + 1] = 0xff;
	assert_int_equal(sgx_quote_parse(b, f->qlen, &q), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "qe auth data length"));
	/* certification data size one too large */
	memcpy(b, f->quote, f->qlen);
	{
		size_t al = (size_t)(b[auth] | b[auth + 1] << 8);
		size_t co = auth + 2 + al + 2;
		uint32_t sz = (uint32_t)(b[co] | b[co + 1] << 8 |
		    b[co + 2] << 16 | (uint32_t)b[co + 3] << 24);

		set_le32(b + co, sz + 1);
		assert_int_equal(sgx_quote_parse(b, f->qlen, &q), HSM_EPROTO);
		assert_non_null(strstr(hsm_err_detail(),
		    "certification data size"));
	}
	/* unsupported version and key type */
	memcpy(b, f->quote, f->qlen);
	b[0] = 5;
	assert_int_equal(sgx_quote_parse(b, f->qlen, &q), HSM_EUNSUPPORTED);
	memcpy(b, f->quote, f->qlen);
	b[2] = 3;
	assert_int_equal(sgx_quote_parse(b, f->qlen, &q), HSM_EUNSUPPORTED);
	free(b);
}

static void
verify_real(void **state)
{
	struct fx *f = *state;
	struct sgx_verify_result r;

	if (sgx_verify_quote(f->quote, f->qlen, &f->coll, &f->opts, &r) != 0)
		fail_msg("step %s: %s", sgx_step_name(r.failed_step),
		    hsm_err_detail());
	assert_int_equal(r.failed_step, SGX_STEP_NONE);
	assert_string_equal(sgx_tcb_status_name(r.tcb_status),
	    "ConfigurationAndSWHardeningNeeded");
	assert_int_equal(r.platform_status,
	    SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED);
	assert_int_equal(r.qe_status, SGX_TCB_UP_TO_DATE);
	assert_string_equal(r.advisories, "INTEL-SA-00289,INTEL-SA-00615");
	assert_hex(r.fmspc, 6, "00A067110000");
	assert_hex(r.pceid, 2, "0000");
	assert_int_equal(r.pcesvn, 13);
	assert_hex(r.enclave.mrenclave, 32,
	    "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb");
	{
		time_t exp;

		assert_int_equal(sgx_parse_time("2025-07-19T10:01:18Z", &exp),
		    0);
		assert_true(r.collateral_expiry == exp);
	}
	/* A policy accepting only UpToDate must refuse this one. */
	assert_int_not_equal(r.tcb_status, SGX_TCB_UP_TO_DATE);
}

static void
expect_fail(struct fx *f, const uint8_t *quote, size_t len,
    const struct sgx_collateral *c, const struct sgx_verify_opts *o,
    int code, enum sgx_step step, const char *words)
{
	struct sgx_verify_result r;
	int rc;

	rc = sgx_verify_quote(quote, len, c ? c : &f->coll, o ? o : &f->opts,
	    &r);
	if (rc != code || r.failed_step != step ||
	    strstr(hsm_err_detail(), words) == NULL)
		fail_msg("rc %d step %s detail '%s'; wanted %d %s '%s'", rc,
		    sgx_step_name(r.failed_step), hsm_err_detail(), code,
		    sgx_step_name(step), words);
	assert_int_equal(r.tcb_status, SGX_TCB_UNKNOWN);
	assert_string_equal(r.advisories, "");
}

static void
verify_expired_and_early(void **state)
{
	struct fx *f = *state;
	struct sgx_verify_opts o = f->opts;

	o.at = time(NULL);
	expect_fail(f, f->quote, f->qlen, NULL, &o, HSM_EPOLICY,
	    SGX_STEP_COLLATERAL, "expired");
	assert_int_equal(sgx_parse_time("2025-07-19T10:01:18Z", &o.at), 0);
	expect_fail(f, f->quote, f->qlen, NULL, &o, HSM_EPOLICY,
	    SGX_STEP_COLLATERAL, "qe_identity: collateral expired");
	assert_int_equal(sgx_parse_time("2025-06-19T10:00:00Z", &o.at), 0);
	expect_fail(f, f->quote, f->qlen, NULL, &o, HSM_EPOLICY,
	    SGX_STEP_COLLATERAL, "not yet valid");
}

static void
verify_tampered_quote(void **state)
{
	struct fx *f = *state;
	uint8_t *b;
	size_t rd = SGX_QUOTE_HEADER_LEN + 320;
	size_t sig = SGX_QUOTE_HEADER_LEN + SGX_REPORT_BODY_LEN + 4;
	size_t qer = sig + 128, auth = qer + 384 + 64;

	if ((b = malloc(f->qlen)) == NULL)
		fail();
	/* flipped report data byte */
	memcpy(b, f->quote, f->qlen);
	b[rd] ^= 0x01;
	expect_fail(f, b, f->qlen, NULL, NULL, HSM_EPERM, SGX_STEP_QUOTE_SIG,
	    "enclave report signature");
	/* flipped header byte (user data) */
	memcpy(b, f->quote, f->qlen);
	b[40] ^= 0x80;
	expect_fail(f, b, f->qlen, NULL, NULL, HSM_EPERM, SGX_STEP_QUOTE_SIG,
	    "quote_sig");
	/* flipped QE report byte */
	memcpy(b, f->quote, f->qlen);
	b[qer + 64] ^= 0x01;
	expect_fail(f, b, f->qlen, NULL, NULL, HSM_EPERM,
	    SGX_STEP_QE_REPORT_SIG, "PCK key");
	/* another attestation key: QE report no longer binds it */
	memcpy(b, f->quote, f->qlen);
	b[sig + 64 + 10] ^= 0x01;
	expect_fail(f, b, f->qlen, NULL, NULL, HSM_EPERM,
	    SGX_STEP_QE_REPORT_DATA, "attestation key");
	/* QE auth data changed, if there is any */
	memcpy(b, f->quote, f->qlen);
	if ((b[auth] | b[auth + 1]) != 0) {
		b[auth + 2] ^= 0x01;
		expect_fail(f, b, f->qlen, NULL, NULL, HSM_EPERM,
		    SGX_STEP_QE_REPORT_DATA, "attestation key");
	}
	/* truncated and oversized length: refused at parse */
	expect_fail(f, f->quote, f->qlen - 1, NULL, NULL, HSM_EPROTO,
	    SGX_STEP_PARSE, "signature data length");
	memcpy(b, f->quote, f->qlen);
	set_le32(b + sig - 4, 0x7fffffffU);
	expect_fail(f, b, f->qlen, NULL, NULL, HSM_EPROTO, SGX_STEP_PARSE,
	    "signature data length");
	free(b);
}

static void
verify_tdx_unsupported(void **state)
{
	struct fx *f = *state;
	uint8_t *q;
	size_t ql;

	load(PHALA "tdx_quote", &q, &ql);
	expect_fail(f, q, ql, NULL, NULL, HSM_EUNSUPPORTED, SGX_STEP_PARSE,
	    "TDX");
	free(q);
}

static void
verify_wrong_root(void **state)
{
	struct fx *f = *state;
	struct sgx_verify_opts o = f->opts;
	uint8_t *pem, *z;
	size_t len;

	load(INTEL "trustedRootCaCert.pem", &pem, &len);
	if ((z = realloc(pem, len + 1)) == NULL)
		fail();
	z[len] = '\0';
	o.insecure_test_root_pem = (const char *)z;
	expect_fail(f, f->quote, f->qlen, NULL, &o, HSM_EPERM,
	    SGX_STEP_PCK_CHAIN, "pck_chain");
	free(z);
}

static void
verify_tampered_collateral(void **state)
{
	struct fx *f = *state;
	struct sgx_collateral c = f->coll;
	char *p, *t;
	uint8_t sig[64];

	/* one byte of the signed TCB Info text changed */
	if ((t = strndup(f->coll.tcb_info, f->coll.tcb_info_len)) == NULL)
		fail();
	if ((p = strstr(t, "ConfigurationAndSWHardeningNeeded")) == NULL)
		fail();
	memcpy(p, "UpToDate\",\"x\":\"xxxxxxxxxxxxxxxxxxx", 33);
	c.tcb_info = t;
	expect_fail(f, f->quote, f->qlen, &c, NULL, HSM_EPERM,
	    SGX_STEP_TCB_INFO, "tcb_info: signature does not verify");
	free(t);

	/* QE identity signature altered */
	c = f->coll;
	memcpy(sig, f->coll.qe_identity_sig, sizeof(sig));
	sig[5] ^= 0x01;
	memcpy(c.qe_identity_sig, sig, sizeof(sig));
	expect_fail(f, f->quote, f->qlen, &c, NULL, HSM_EPERM,
	    SGX_STEP_QE_IDENTITY, "qe_identity: signature does not verify");

	/* the root CRL used as the PCK CRL: wrong issuer, no CRL for PCK */
	c = f->coll;
	c.pck_crl = f->coll.root_crl;
	c.pck_crl_len = f->coll.root_crl_len;
	expect_fail(f, f->quote, f->qlen, &c, NULL, HSM_EPERM,
	    SGX_STEP_PCK_CHAIN, "CRL");
}

static void
collateral_json_errors(void **state)
{
	struct sgx_collateral c;
	static const char *bad[] = {
		"",
		"[]",
		"{\"tcb_info\":1}",
		"{\"tcb_info\":\"{}\",\"tcb_info_signature\":\"zz\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_not_equal(sgx_collateral_from_json(bad[i],
		    strlen(bad[i]), &c), 0);
		assert_null(c.tcb_info);
	}
	assert_int_equal(sgx_collateral_from_json("{}", 2, &c), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "'tcb_info'"));
}

static void
time_parse(void **state)
{
	time_t t;

	assert_int_equal(sgx_parse_time("1970-01-01T00:00:00Z", &t), 0);
	assert_true(t == 0);
	assert_int_equal(sgx_parse_time("2025-07-19T10:01:18Z", &t), 0);
	assert_true(t == 1752919278);
	assert_int_equal(sgx_parse_time("2025-07-19 10:01:18Z", &t),
	    HSM_EINVAL);
	assert_int_equal(sgx_parse_time("2025-13-19T10:01:18Z", &t),
	    HSM_EINVAL);
	assert_int_equal(sgx_parse_time("2025-07-19T10:01:18", &t),
	    HSM_EINVAL);
}

/* Load the Intel synthetic sample as collateral (PCK chain separate). */
static void
intel_collateral(const char *dir, struct sgx_collateral *c)
{
	char rel[256];
	uint8_t *ti, *qi, *tc, *rc, *pc, *leaf, *chain;
	size_t til, qil, tcl, rcl, pcl, leafl, chainl;
	char *pck, *tcs;

	snprintf(rel, sizeof(rel), "%s/tcbInfo.json", dir);
	load(rel, &ti, &til);
	snprintf(rel, sizeof(rel), "%s/qeIdentity.json", dir);
	load(rel, &qi, &qil);
	snprintf(rel, sizeof(rel), "%s/tcbSignChain.pem", dir);
	load(rel, &tc, &tcl);
	snprintf(rel, sizeof(rel), "%s/rootCaCrl.der", dir);
	load(rel, &rc, &rcl);
	snprintf(rel, sizeof(rel), "%s/intermediateCaCrl.der", dir);
	load(rel, &pc, &pcl);
	snprintf(rel, sizeof(rel), "%s/pckCert.pem", dir);
	load(rel, &leaf, &leafl);
	snprintf(rel, sizeof(rel), "%s/pckSignChain.pem", dir);
	load(rel, &chain, &chainl);
	if ((pck = malloc(leafl + chainl + 1)) == NULL ||
	    (tcs = strndup((const char *)tc, tcl)) == NULL)
		fail();
	memcpy(pck, leaf, leafl);
	memcpy(pck + leafl, chain, chainl);
	pck[leafl + chainl] = '\0';
	if (sgx_collateral_from_intel((const char *)ti, til,
	    (const char *)qi, qil, tcs, rc, rcl, pc, pcl, pck, c) != 0)
		fail_msg("intel collateral: %s", hsm_err_detail());
	free(ti);
	free(qi);
	free(tc);
	free(tcs);
	free(rc);
	free(pc);
	free(leaf);
	free(chain);
	free(pck);
}

static char *
load_str(const char *rel)
{
	uint8_t *b;
	size_t len;
	char *s;

	load(rel, &b, &len);
	if ((s = strndup((const char *)b, len)) == NULL)
		fail();
	free(b);
	return s;
}

static void
verify_intel_sample(void **state)
{
	struct sgx_collateral c;
	struct sgx_verify_opts o;
	struct sgx_verify_result r;
	static const uint8_t zero[64];
	uint8_t *q;
	size_t ql;
	char *root;
	int rc;

	intel_collateral(INTEL, &c);
	/* the signed text is the verbatim inner object */
	assert_true(c.tcb_info_len > 2 && c.tcb_info[0] == '{' &&
	    c.tcb_info[c.tcb_info_len - 1] == '}');
	assert_true(strncmp(c.qe_identity, "{\"id\":\"QE\"", 10) == 0);
	load(INTEL "quote.dat", &q, &ql);
	root = load_str(INTEL "trustedRootCaCert.pem");
	memset(&o, 0, sizeof(o));
	assert_int_equal(sgx_parse_time("2025-01-01T00:00:00Z", &o.at), 0);

	/* Intel's real root (the default): the test root's chain is refused */
	rc = sgx_verify_quote(q, ql, &c, &o, &r);
	assert_int_equal(rc, HSM_EPERM);
	assert_int_equal(r.failed_step, SGX_STEP_PCK_CHAIN);

	/* explicitly configured test root: valid, UpToDate */
	o.insecure_test_root_pem = root;
	if (sgx_verify_quote(q, ql, &c, &o, &r) != 0)
		fail_msg("step %s: %s", sgx_step_name(r.failed_step),
		    hsm_err_detail());
	assert_int_equal(r.tcb_status, SGX_TCB_UP_TO_DATE);
	assert_int_equal(r.qe_status, SGX_TCB_UP_TO_DATE);
	assert_string_equal(r.advisories, "");
	assert_hex(r.fmspc, 6, "00707F000000");
	assert_int_equal(r.pcesvn, 3);
	assert_memory_equal(r.enclave.mrenclave, zero, 32);
	assert_memory_equal(r.enclave.mrsigner, zero, 32);
	assert_memory_equal(r.enclave.report_data, zero, 64);

	/* no PCK chain available for a type-1 quote: unsupported */
	free(c.pck_chain);
	c.pck_chain = NULL;
	assert_int_equal(sgx_verify_quote(q, ql, &c, &o, &r),
	    HSM_EUNSUPPORTED);
	assert_int_equal(r.failed_step, SGX_STEP_PARSE);

	free(root);
	free(q);
	sgx_collateral_free(&c);
}

static void
intel_collateral_errors(void **state)
{
	struct sgx_collateral c;
	static const uint8_t crl[1] = { 0x30 };
	static const char *bad[] = {
		"{\"signature\":\"00\"}",
		"{\"tcbInfo\":[],\"signature\":\"" "0000000000000000000000000000"
		    "000000000000000000000000000000000000000000000000000000000000"
		    "000000000000000000000000000000000000000000\"}",
		"{\"x\":{\"a\":\"}\\\"\"},\"signature\":1}",
		"{\"tcbInfo\":{",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sgx_collateral_from_intel(bad[i],
		    strlen(bad[i]), bad[i], strlen(bad[i]), "", crl, 1, crl, 1,
		    NULL, &c), HSM_EPROTO);
		assert_null(c.tcb_info);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(time_parse),
		cmocka_unit_test(collateral_json_errors),
		cmocka_unit_test(parse_real_v3),
		cmocka_unit_test(parse_other_samples),
		cmocka_unit_test(parse_truncated),
		cmocka_unit_test(parse_bad_lengths),
		cmocka_unit_test(verify_real),
		cmocka_unit_test(verify_expired_and_early),
		cmocka_unit_test(verify_tampered_quote),
		cmocka_unit_test(verify_tdx_unsupported),
		cmocka_unit_test(verify_wrong_root),
		cmocka_unit_test(verify_tampered_collateral),
		cmocka_unit_test(verify_intel_sample),
		cmocka_unit_test(intel_collateral_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
