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

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "err.h"
#include "sgxquote.h"
#include "sgxverify.h"
#include "util.h"

#include "sgx_testdata.h"

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
		{ PHALA "tdx_quote_outdated", 5, SGX_TEE_TDX,
		    SGX_CERT_PCK_CHAIN },
		{ INTEL "quote.dat", 3, SGX_TEE_SGX, SGX_CERT_PPID_CLEAR },
		{ INTEL "tdx/quote.dat", 4, SGX_TEE_TDX, 0 },
	};
	struct sgx_quote q;
	uint8_t *b;
	size_t len;

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
	b[0] = 6;
	assert_int_equal(sgx_quote_parse(b, f->qlen, &q), HSM_EUNSUPPORTED);
	assert_non_null(strstr(hsm_err_detail(), "version 6"));
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

/* ---- TDX (quote v4 with a TD 1.0 body, v5 with a TD 1.5 body) ---- */

#define TDX_AT		"2025-07-01T00:00:00Z"	/* inside tdx_quote's window */
#define TDX_OLD_AT	"2026-03-01T00:00:00Z"	/* inside the outdated one's */
/* TD report body offsets (after the 48-byte header; v5: + 6) */
#define TD_MRTD		136
#define TD_RTMR3	(328 + 3 * 48)
#define TD_REPORTDATA	520

struct tdx {
	uint8_t			*quote;
	size_t			 qlen;
	struct sgx_collateral	 coll;
	struct sgx_verify_opts	 opts;
};

static void
tdx_load(struct tdx *t, const char *quote, const char *coll, const char *at)
{
	uint8_t *j;
	size_t jl;

	memset(t, 0, sizeof(*t));
	load(quote, &t->quote, &t->qlen);
	load(coll, &j, &jl);
	if (sgx_collateral_from_json((const char *)j, jl, &t->coll) != 0)
		fail_msg("%s: %s", coll, hsm_err_detail());
	free(j);
	assert_int_equal(sgx_parse_time(at, &t->opts.at), 0);
}

static void
tdx_free(struct tdx *t)
{
	sgx_collateral_free(&t->coll);
	free(t->quote);
}

static void
parse_tdx(void **state)
{
	struct sgx_quote q;
	struct tdx t;

	tdx_load(&t, PHALA "tdx_quote", PHALA "tdx_quote_collateral.json",
	    TDX_AT);
	if (sgx_quote_parse(t.quote, t.qlen, &q) != 0)
		fail_msg("%s", hsm_err_detail());
	assert_int_equal(q.version, 4);
	assert_int_equal(q.tee_type, SGX_TEE_TDX);
	assert_int_equal(q.body_type, SGX_BODY_TD10);
	assert_int_equal(q.td_body_len, SGX_TDX10_BODY_LEN);
	assert_true(q.td_body == t.quote + SGX_QUOTE_HEADER_LEN);
	assert_int_equal(q.signed_len, SGX_QUOTE_HEADER_LEN +
	    SGX_TDX10_BODY_LEN);
	assert_int_equal(q.cert_type, SGX_CERT_PCK_CHAIN);
	assert_int_equal(q.padding_len, 70);
	assert_hex(q.td.tee_tcb_svn, 16, "06010300000000000000000000000000");
	assert_hex(q.td.mrtd, 48, "91eb2b44d141d4ece09f0c75c2c53d247a3c68"
	    "edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7");
	assert_hex(q.td.rtmr[0], 48, "44c0197b39157fdd7a4dcc44767f9d6b0bb397"
	    "7c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0");
	assert_hex(q.td.rtmr[2], 48, "d833feef2cd945148aa38ead2c53e9b7f13819"
	    "0aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132");
	assert_hex(q.td.mrseam, 48, "5b38e33a6487958b72c3c12a938eaa5e3fd4510"
	    "c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1");
	assert_hex(q.td.td_attributes, 8, "0000001000000000");
	assert_int_equal(q.td.td_attributes[0] & SGX_TD_ATTR_DEBUG, 0);
	assert_hex(q.td.xfam, 8, "e702060000000000");
	assert_hex(q.td.report_data, 32, "9a9d48e7f6799642d3d1b34e1e5e1742d4b"
	    "b02dd6ddd551862c1211d35c304f9");
	assert_memory_equal(q.td.report_data, t.quote + SGX_QUOTE_HEADER_LEN +
	    TD_REPORTDATA, 64);
	/* an SGX body is all zero in a TDX quote */
	{
		struct sgx_report_body zero;

		memset(&zero, 0, sizeof(zero));
		assert_memory_equal(&q.enclave, &zero, sizeof(zero));
	}
	tdx_free(&t);

	/* version 5: body descriptor type 3 (TD 1.5), 648 bytes */
	tdx_load(&t, PHALA "tdx_quote_outdated",
	    PHALA "tdx_quote_outdated_collateral.json", TDX_OLD_AT);
	if (sgx_quote_parse(t.quote, t.qlen, &q) != 0)
		fail_msg("%s", hsm_err_detail());
	assert_int_equal(q.version, 5);
	assert_int_equal(q.body_type, SGX_BODY_TD15);
	assert_int_equal(q.td_body_len, SGX_TDX15_BODY_LEN);
	assert_true(q.td_body == t.quote + SGX_QUOTE_HEADER_LEN +
	    SGX_BODY_DESC_LEN);
	assert_int_equal(q.signed_len, SGX_QUOTE_HEADER_LEN +
	    SGX_BODY_DESC_LEN + SGX_TDX15_BODY_LEN);
	assert_int_equal(q.padding_len, 0);
	assert_hex(q.td.tee_tcb_svn, 16, "07010300000000000000000000000000");
	assert_hex(q.td.tee_tcb_svn2, 16, "0d010300000000000000000000000000");
	assert_hex(q.td.mrtd, 16, "273828c46252fcbdd8ad2dd907130222");
	assert_hex(q.td.report_data, 32, "d2142b643598eb5fae2bc8529dd79a558b2"
	    "9f868ccbb6531cb28dab9dce47728");
	tdx_free(&t);
}

/* Every proper prefix (short of the zero padding) is refused. */
static void
parse_tdx_truncated(void **state)
{
	static const char *files[] = { PHALA "tdx_quote",
	    PHALA "tdx_quote_outdated" };
	struct sgx_quote q;
	uint8_t *full, *b;
	size_t len, pad;

	for (size_t i = 0; i < 2; i++) {
		load(files[i], &full, &len);
		assert_int_equal(sgx_quote_parse(full, len, &q), 0);
		pad = q.padding_len;
		for (size_t n = 0; n < len - pad; n++) {
			if ((b = malloc(n ? n : 1)) == NULL)
				fail();
			memcpy(b, full, n);
			assert_int_equal(sgx_quote_parse(b, n, &q),
			    HSM_EPROTO);
			assert_null(q.td_body);
			free(b);
		}
		free(full);
	}
}

static void
parse_v5_bad(void **state)
{
	struct sgx_quote q;
	uint8_t *b;
	size_t len, sig = SGX_QUOTE_HEADER_LEN + SGX_BODY_DESC_LEN +
	    SGX_TDX15_BODY_LEN + 4;
	uint8_t *c;

	load(PHALA "tdx_quote_outdated", &b, &len);
	if ((c = malloc(len)) == NULL)
		fail();
	/* unknown body type */
	memcpy(c, b, len);
	c[48] = 9;
	assert_int_equal(sgx_quote_parse(c, len, &q), HSM_EUNSUPPORTED);
	assert_non_null(strstr(hsm_err_detail(), "body type 9"));
	/* body size disagreeing with the type */
	memcpy(c, b, len);
	set_le32(c + 50, SGX_TDX10_BODY_LEN);
	assert_int_equal(sgx_quote_parse(c, len, &q), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "body size"));
	/* a TD body under an SGX header */
	memcpy(c, b, len);
	c[4] = 0;
	assert_int_equal(sgx_quote_parse(c, len, &q), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "does not match tee type"));
	/* an SGX body type under a TDX header */
	memcpy(c, b, len);
	c[48] = SGX_BODY_SGX;
	set_le32(c + 50, SGX_REPORT_BODY_LEN);
	assert_int_equal(sgx_quote_parse(c, len, &q), HSM_EPROTO);
	/* outer certification data not of type 6 */
	memcpy(c, b, len);
	c[sig + 128] = SGX_CERT_PCK_CHAIN;
	assert_int_equal(sgx_quote_parse(c, len, &q), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "outer certification"));
	/* unknown tee type */
	memcpy(c, b, len);
	c[4] = 0x82;
	assert_int_equal(sgx_quote_parse(c, len, &q), HSM_EUNSUPPORTED);
	free(c);
	free(b);
}

static void
verify_tdx_uptodate(void **state)
{
	struct sgx_verify_result r;
	struct sgx_report_body zero;
	struct tdx t;
	time_t exp;

	tdx_load(&t, PHALA "tdx_quote", PHALA "tdx_quote_collateral.json",
	    TDX_AT);
	if (sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts, &r) != 0)
		fail_msg("step %s: %s", sgx_step_name(r.failed_step),
		    hsm_err_detail());
	assert_int_equal(r.failed_step, SGX_STEP_NONE);
	assert_int_equal(r.tee_type, SGX_TEE_TDX);
	assert_int_equal(r.quote_version, 4);
	assert_string_equal(sgx_tcb_status_name(r.tcb_status), "UpToDate");
	assert_int_equal(r.platform_status, SGX_TCB_UP_TO_DATE);
	assert_int_equal(r.qe_status, SGX_TCB_UP_TO_DATE);
	assert_int_equal(r.sgx_level_status, SGX_TCB_UP_TO_DATE);
	assert_string_equal(r.tdx_module_id, "TDX_01");
	assert_int_equal(r.tdx_module_status, SGX_TCB_UP_TO_DATE);
	assert_string_equal(r.advisories, "");
	assert_hex(r.fmspc, 6, "B0C06F000000");
	assert_int_equal(r.pcesvn, 11);
	assert_hex(r.td.mrtd, 16, "91eb2b44d141d4ece09f0c75c2c53d24");
	assert_hex(r.td.rtmr[1], 16, "0084452c01668329d4bc06acdf58a720");
	assert_hex(r.td.report_data, 16, "9a9d48e7f6799642d3d1b34e1e5e1742");
	/* policies reading res.enclave must see nothing for a TD */
	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(&r.enclave, &zero, sizeof(zero));
	assert_int_equal(sgx_parse_time("2025-07-19T10:00:35Z", &exp), 0);
	assert_true(r.collateral_expiry == exp);

	/* the same one second before that: still verifies */
	t.opts.at = exp - 1;
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts,
	    &r), 0);
	/* ... and at it, at today's date, before issue: refused */
	t.opts.at = exp;
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts,
	    &r), HSM_EPOLICY);
	assert_int_equal(r.failed_step, SGX_STEP_COLLATERAL);
	assert_non_null(strstr(hsm_err_detail(), "collateral expired"));
	assert_int_equal(r.tcb_status, SGX_TCB_UNKNOWN);
	t.opts.at = time(NULL);
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts,
	    &r), HSM_EPOLICY);
	assert_int_equal(r.failed_step, SGX_STEP_COLLATERAL);
	assert_non_null(strstr(hsm_err_detail(), "expired"));
	assert_int_equal(sgx_parse_time("2025-06-19T10:00:00Z", &t.opts.at),
	    0);
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts,
	    &r), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "not yet valid"));
	tdx_free(&t);
}

/*
 * The "outdated" sample: every signature and the chain verify, but its
 * PCK certificate's SGX TCB component 8 is 3 while every level of its
 * TCB Info demands 5, so no TCB level matches: Intel's QVL answers
 * STATUS_TCB_NOT_SUPPORTED, a refusal, not a status.
 */
static void
verify_tdx_outdated(void **state)
{
	struct sgx_verify_result r;
	struct tdx t;
	time_t now = time(NULL);

	tdx_load(&t, PHALA "tdx_quote_outdated",
	    PHALA "tdx_quote_outdated_collateral.json", TDX_OLD_AT);
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts,
	    &r), HSM_EPERM);
	assert_int_equal(r.failed_step, SGX_STEP_TCB_LEVEL);
	assert_non_null(strstr(hsm_err_detail(), "TCB not supported"));
	assert_int_equal(r.tcb_status, SGX_TCB_UNKNOWN);
	t.opts.at = now;
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts,
	    &r), HSM_EPOLICY);
	assert_int_equal(r.failed_step, SGX_STEP_COLLATERAL);
	assert_non_null(strstr(hsm_err_detail(), "expired"));
	tdx_free(&t);
}

static void
tdx_expect(struct tdx *t, const uint8_t *quote, size_t len,
    const struct sgx_collateral *c, int code, enum sgx_step step,
    const char *words)
{
	struct sgx_verify_result r;
	int rc;

	rc = sgx_verify_quote(quote, len, c ? c : &t->coll, &t->opts, &r);
	if (rc != code || r.failed_step != step ||
	    strstr(hsm_err_detail(), words) == NULL)
		fail_msg("rc %d step %s detail '%s'; wanted %d %s '%s'", rc,
		    sgx_step_name(r.failed_step), hsm_err_detail(), code,
		    sgx_step_name(step), words);
	assert_int_equal(r.tcb_status, SGX_TCB_UNKNOWN);
	assert_int_equal(r.tee_type, 0);
	assert_string_equal(r.advisories, "");
}

static void
verify_tdx_tampered(void **state)
{
	struct tdx t, o;
	uint8_t *b;
	size_t sig = SGX_QUOTE_HEADER_LEN + SGX_TDX10_BODY_LEN + 4;
	size_t qer = sig + 128 + 6, qes = qer + 384, auth = qes + 64;
	size_t osig = SGX_QUOTE_HEADER_LEN + SGX_BODY_DESC_LEN +
	    SGX_TDX15_BODY_LEN + 4;
	size_t oqes = osig + 128 + 6 + 384;
	static const size_t body[] = { 0, 16, 64, 112, 120, 128, TD_MRTD,
	    184, 232, 280, 328, TD_RTMR3, TD_REPORTDATA, TD_REPORTDATA + 63 };

	tdx_load(&t, PHALA "tdx_quote", PHALA "tdx_quote_collateral.json",
	    TDX_AT);
	tdx_load(&o, PHALA "tdx_quote_outdated",
	    PHALA "tdx_quote_outdated_collateral.json", TDX_OLD_AT);
	if ((b = malloc(t.qlen + 1)) == NULL)
		fail();
	/* one flipped byte anywhere in the TD report: the quote signature */
	for (size_t i = 0; i < sizeof(body) / sizeof(body[0]); i++) {
		memcpy(b, t.quote, t.qlen);
		b[SGX_QUOTE_HEADER_LEN + body[i]] ^= 0x01;
		tdx_expect(&t, b, t.qlen, NULL, HSM_EPERM, SGX_STEP_QUOTE_SIG,
		    "quote_sig");
	}
	/* ... or in the header (QE SVN) */
	memcpy(b, t.quote, t.qlen);
	b[8] ^= 0x01;
	tdx_expect(&t, b, t.qlen, NULL, HSM_EPERM, SGX_STEP_QUOTE_SIG,
	    "quote_sig");
	/* the other quote's QE report signature */
	memcpy(b, t.quote, t.qlen);
	memcpy(b + qes, o.quote + oqes, 64);
	assert_memory_not_equal(b + qes, t.quote + qes, 64);
	tdx_expect(&t, b, t.qlen, NULL, HSM_EPERM, SGX_STEP_QE_REPORT_SIG,
	    "PCK key");
	/* a flipped QE report byte */
	memcpy(b, t.quote, t.qlen);
	b[qer + 256] ^= 0x01;
	tdx_expect(&t, b, t.qlen, NULL, HSM_EPERM, SGX_STEP_QE_REPORT_SIG,
	    "qe_report_sig");
	/* QE auth data or attestation key changed: no longer bound */
	assert_int_equal(t.quote[auth] | t.quote[auth + 1] << 8, 32);
	memcpy(b, t.quote, t.qlen);
	b[auth + 2] ^= 0x01;
	tdx_expect(&t, b, t.qlen, NULL, HSM_EPERM, SGX_STEP_QE_REPORT_DATA,
	    "attestation key");
	memcpy(b, t.quote, t.qlen);
	b[sig + 64 + 5] ^= 0x01;
	tdx_expect(&t, b, t.qlen, NULL, HSM_EPERM, SGX_STEP_QE_REPORT_DATA,
	    "attestation key");
	/* the quote signature itself */
	memcpy(b, t.quote, t.qlen);
	b[sig + 7] ^= 0x01;
	tdx_expect(&t, b, t.qlen, NULL, HSM_EPERM, SGX_STEP_QUOTE_SIG,
	    "quote_sig");
	/* truncated, oversized length, non-zero trailing byte: parse */
	tdx_expect(&t, t.quote, t.qlen - 71, NULL, HSM_EPROTO,
	    SGX_STEP_PARSE, "signature data length");
	tdx_expect(&t, t.quote, SGX_QUOTE_HEADER_LEN + 100, NULL, HSM_EPROTO,
	    SGX_STEP_PARSE, "report body");
	memcpy(b, t.quote, t.qlen);
	set_le32(b + sig - 4, 0x7fffffffU);
	tdx_expect(&t, b, t.qlen, NULL, HSM_EPROTO, SGX_STEP_PARSE,
	    "signature data length");
	memcpy(b, t.quote, t.qlen);
	b[t.qlen] = 0x01;
	tdx_expect(&t, b, t.qlen + 1, NULL, HSM_EPROTO, SGX_STEP_PARSE,
	    "not zero padding");
	memcpy(b, t.quote, t.qlen);
	set_le32(b + sig + 130, 5000);	/* outer certification data size */
	tdx_expect(&t, b, t.qlen, NULL, HSM_EPROTO, SGX_STEP_PARSE,
	    "outer certification data");
	free(b);

	/* v5: TEE_TCB_SVN2 and the body descriptor are signed too */
	if ((b = malloc(o.qlen)) == NULL)
		fail();
	memcpy(b, o.quote, o.qlen);
	b[SGX_QUOTE_HEADER_LEN + SGX_BODY_DESC_LEN + 584] ^= 0x01;
	tdx_expect(&o, b, o.qlen, NULL, HSM_EPERM, SGX_STEP_QUOTE_SIG,
	    "quote_sig");
	memcpy(b, o.quote, o.qlen);
	b[SGX_QUOTE_HEADER_LEN + SGX_BODY_DESC_LEN + TD_REPORTDATA] ^= 0x80;
	tdx_expect(&o, b, o.qlen, NULL, HSM_EPERM, SGX_STEP_QUOTE_SIG,
	    "quote_sig");
	free(b);
	tdx_free(&o);
	tdx_free(&t);
}

static void
verify_tdx_collateral(void **state)
{
	struct sgx_collateral c, sgx;
	struct tdx t;
	uint8_t *j, sig[64];
	size_t jl;
	char *txt, *p;

	tdx_load(&t, PHALA "tdx_quote", PHALA "tdx_quote_collateral.json",
	    TDX_AT);
	load(PHALA "sgx_quote_collateral.json", &j, &jl);
	assert_int_equal(sgx_collateral_from_json((const char *)j, jl, &sgx),
	    0);
	free(j);

	/* altered TCB Info text: its signature no longer verifies */
	c = t.coll;
	if ((txt = strndup(t.coll.tcb_info, t.coll.tcb_info_len)) == NULL ||
	    (p = strstr(txt, "\"isvsvn\":4")) == NULL)
		fail();
	p[9] = '1';
	c.tcb_info = txt;
	tdx_expect(&t, t.quote, t.qlen, &c, HSM_EPERM, SGX_STEP_TCB_INFO,
	    "tcb_info: signature does not verify");
	free(txt);
	/* altered signature */
	c = t.coll;
	memcpy(sig, t.coll.tcb_info_sig, 64);
	sig[40] ^= 0x01;
	memcpy(c.tcb_info_sig, sig, 64);
	tdx_expect(&t, t.quote, t.qlen, &c, HSM_EPERM, SGX_STEP_TCB_INFO,
	    "tcb_info: signature does not verify");
	/* a genuine SGX TCB Info (signed, current) for a TDX quote */
	c = t.coll;
	c.tcb_info = sgx.tcb_info;
	c.tcb_info_len = sgx.tcb_info_len;
	memcpy(c.tcb_info_sig, sgx.tcb_info_sig, 64);
	tdx_expect(&t, t.quote, t.qlen, &c, HSM_EPERM, SGX_STEP_TCB_INFO,
	    "not a TDX TCB Info");
	/* a genuine SGX QE Identity (id QE) for a TDX quote */
	c = t.coll;
	c.qe_identity = sgx.qe_identity;
	c.qe_identity_len = sgx.qe_identity_len;
	memcpy(c.qe_identity_sig, sgx.qe_identity_sig, 64);
	tdx_expect(&t, t.quote, t.qlen, &c, HSM_EPERM, SGX_STEP_QE_IDENTITY,
	    "TD_QE");
	/* the other TDX platform's collateral: not valid yet at TDX_AT */
	{
		struct tdx o;

		tdx_load(&o, PHALA "tdx_quote_outdated",
		    PHALA "tdx_quote_outdated_collateral.json", TDX_OLD_AT);
		c = o.coll;
		c.root_crl = t.coll.root_crl;
		c.root_crl_len = t.coll.root_crl_len;
		c.pck_crl = t.coll.pck_crl;
		c.pck_crl_len = t.coll.pck_crl_len;
		tdx_expect(&t, t.quote, t.qlen, &c, HSM_EPOLICY,
		    SGX_STEP_COLLATERAL, "not yet valid");
		tdx_free(&o);
	}
	/* the SGX quote against TDX collateral: refused */
	{
		uint8_t *q;
		size_t ql;

		load(PHALA "sgx_quote", &q, &ql);
		c = sgx;
		c.tcb_info = t.coll.tcb_info;
		c.tcb_info_len = t.coll.tcb_info_len;
		memcpy(c.tcb_info_sig, t.coll.tcb_info_sig, 64);
		tdx_expect(&t, q, ql, &c, HSM_EPROTO, SGX_STEP_TCB_INFO,
		    "id is not SGX");
		free(q);
	}
	sgx_collateral_free(&sgx);
	tdx_free(&t);
}

/*
 * Intel's TDX sample with its certification data re-encoded the way the
 * format wants it: the DER certificates (root first) as a PEM chain, leaf
 * first. Neither signature covers the certification data, so the quote
 * stays genuine. *out is malloc'd.
 */
static void
intel_tdx_pem(const uint8_t *b, size_t len, uint8_t **out, size_t *outlen)
{
	struct sgx_quote q;
	X509 *x[8];
	const unsigned char *p;
	BIO *bio;
	char *pem;
	long pl;
	size_t n = 0, sd, outer, o = 0;
	uint8_t *nb;

	assert_int_equal(sgx_quote_parse(b, len, &q), 0);
	p = q.cert_data;
	while (p < q.cert_data + q.cert_len) {
		assert_true(n < 8);
		x[n] = d2i_X509(NULL, &p, (long)(q.cert_data + q.cert_len - p));
		assert_non_null(x[n]);
		n++;
	}
	assert_int_equal(n, 3);
	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		fail();
	while (n > 0) {
		assert_int_equal(PEM_write_bio_X509(bio, x[n - 1]), 1);
		X509_free(x[--n]);
	}
	pl = BIO_get_mem_data(bio, &pem);
	outer = SGX_REPORT_BODY_LEN + 64 + 2 + q.qe_auth_len + 6 + (size_t)pl;
	sd = 64 + 64 + 6 + outer;
	if ((nb = malloc(q.signed_len + 4 + sd)) == NULL)
		fail();
	memcpy(nb, b, q.signed_len);
	o = q.signed_len;
	set_le32(nb + o, (uint32_t)sd);
	memcpy(nb + o + 4, q.sig, 64);
	memcpy(nb + o + 68, q.att_key, 64);
	o += 132;
	nb[o] = SGX_CERT_QE_REPORT;
	nb[o + 1] = 0;
	set_le32(nb + o + 2, (uint32_t)outer);
	o += 6;
	memcpy(nb + o, q.qe_report_raw, SGX_REPORT_BODY_LEN);
	memcpy(nb + o + 384, q.qe_report_sig, 64);
	nb[o + 448] = (uint8_t)q.qe_auth_len;
	nb[o + 449] = (uint8_t)(q.qe_auth_len >> 8);
	o += 450;
	if (q.qe_auth_len > 0)
		memcpy(nb + o, q.qe_auth, q.qe_auth_len);
	o += q.qe_auth_len;
	nb[o] = SGX_CERT_PCK_CHAIN;
	nb[o + 1] = 0;
	set_le32(nb + o + 2, (uint32_t)pl);
	memcpy(nb + o + 6, pem, (size_t)pl);
	o += 6 + (size_t)pl;
	assert_int_equal(o, q.signed_len + 4 + sd);
	BIO_free(bio);
	*out = nb;
	*outlen = o;
}

/*
 * Intel's synthetic TDX sample (DCAP 1.19 generator, its test root). It
 * predates what Intel's QVL now checks and cannot verify: its type-5
 * certification data holds DER (the format says PEM), its TCB signing
 * chain lists the root first, its TCB Info has no tdxModuleIdentities
 * though TEE_TCB_SVN[1] is 0xC1, its TCB levels carry 16-bit SVNs no
 * PCK certificate reaches, and its QE's MRSIGNER is not its TD_QE
 * identity's. What it does prove: re-encoded as PEM, its PCK chain, QE
 * report signature, attestation-key binding and TD quote signature all
 * verify here, with Intel's own generator on the other side.
 */
static void
verify_intel_tdx_sample(void **state)
{
	struct sgx_collateral c;
	struct sgx_verify_opts o;
	struct sgx_verify_result r;
	struct sgx_quote q;
	uint8_t *b, *pq;
	size_t len, pl;
	char *root, *swap, *second;

	intel_collateral(INTEL "tdx", &c);
	assert_true(strncmp(c.qe_identity, "{\"id\":\"TD_QE\"", 13) == 0);
	load(INTEL "tdx/quote.dat", &b, &len);
	assert_int_equal(sgx_quote_parse(b, len, &q), 0);
	assert_int_equal(q.cert_type, SGX_CERT_PCK_CHAIN);
	root = load_str(INTEL "tdx/trustedRootCaCert.pem");
	memset(&o, 0, sizeof(o));
	o.insecure_test_root_pem = root;
	assert_int_equal(sgx_parse_time("2025-01-01T00:00:00Z", &o.at), 0);
	/* as it is: DER in type-5 certification data, refused at parse */
	assert_int_equal(sgx_verify_quote(b, len, &c, &o, &r), HSM_EPROTO);
	assert_int_equal(r.failed_step, SGX_STEP_PARSE);
	assert_non_null(strstr(hsm_err_detail(), "PEM"));

	/* PEM: every quote signature verifies; the TCB signing chain is
	 * root first, so its first certificate is not the signer */
	intel_tdx_pem(b, len, &pq, &pl);
	assert_int_equal(sgx_verify_quote(pq, pl, &c, &o, &r), HSM_EPERM);
	assert_int_equal(r.failed_step, SGX_STEP_TCB_INFO);
	assert_non_null(strstr(hsm_err_detail(), "TCB Signing"));
	/* ... signer first: its TCB Info has no identity for module 0xC1 */
	second = strstr(c.tcb_info_chain + 1, "-----BEGIN");
	assert_non_null(second);
	{
		size_t total = strlen(c.tcb_info_chain), head = (size_t)(second - c.tcb_info_chain);

		/* the second certificate, then the first */
		if ((swap = malloc(total + 1)) == NULL)
			fail();
		memcpy(swap, second, total - head);
		memcpy(swap + total - head, c.tcb_info_chain, head);
		swap[total] = '\0';
	}
	free(c.tcb_info_chain);
	c.tcb_info_chain = swap;
	assert_int_equal(sgx_verify_quote(pq, pl, &c, &o, &r), HSM_EPERM);
	assert_int_equal(r.failed_step, SGX_STEP_TDX_MODULE);
	assert_non_null(strstr(hsm_err_detail(), "TDX_C1"));

	free(pq);
	free(root);
	free(b);
	sgx_collateral_free(&c);
}

/* ---- the TDX TCB status computation, on the real TCB Infos ---- */

static void
eval_q(const char *file, struct sgx_quote *q, uint8_t **buf)
{
	size_t len;

	load(file, buf, &len);
	if (sgx_quote_parse(*buf, len, q) != 0)
		fail_msg("%s: %s", file, hsm_err_detail());
}

static int
eval(const struct sgx_collateral *c, const uint16_t comp[16],
    uint16_t pcesvn, const struct sgx_quote *q, enum sgx_tcb_status qe,
    struct sgx_verify_result *r)
{
	return sgx_tcb_evaluate_unverified(c->tcb_info, c->tcb_info_len,
	    comp, pcesvn, q, qe, r);
}

/*
 * eval of q (PCESVN 13, QE UpToDate) is refused: HSM_EPERM at step (not
 * checked when -1), with text in the detail (not checked when NULL).
 */
static void
refused(const struct sgx_collateral *c, const uint16_t comp[16], const struct sgx_quote *q,
    int step, const char *text)
{
	struct sgx_verify_result r;

	assert_int_equal(eval(c, comp, 13, q, SGX_TCB_UP_TO_DATE, &r), HSM_EPERM);
	if (step >= 0)
		assert_int_equal(r.failed_step, step);
	if (text != NULL)
		assert_non_null(strstr(hsm_err_detail(), text));
}

/*
 * c's TCB Info text (unsigned from here on) with the top TCB level's
 * status and the first TDX_01 module level's status replaced.
 */
static char *
restatus(const struct sgx_collateral *c, const char *top, const char *mod)
{
	static const char lv[] = "\"tcbLevels\":[{\"tcb\":{\"sgxtcbcomponents\"";
	static const char st[] = "\"tcbStatus\":\"";
	const char *t = c->tcb_info, *p = NULL, *m = NULL, *e;
	char *out;
	size_t n = c->tcb_info_len + 64;

	if ((out = malloc(n)) == NULL ||
	    (m = strstr(t, "\"TDX_01\"")) == NULL ||
	    (m = strstr(m, st)) == NULL || (p = strstr(t, lv)) == NULL ||
	    (p = strstr(p, st)) == NULL || m > p)
		fail();
	m += strlen(st);
	p += strlen(st);
	e = strchr(p, '"');
	snprintf(out, n, "%.*s%s%.*s%s%s", (int)(m - t), t, mod,
	    (int)(p - strchr(m, '"')), strchr(m, '"'), top, e);
	return out;
}

static void
tdx_tcb_levels(void **state)
{
	/* the two real PCK certificates' TCBs */
	static const uint16_t pck_new[16] = { 3, 3, 2, 2, 4, 1, 0, 5 };
	static const uint16_t pck_old[16] = { 3, 3, 2, 2, 4, 1, 0, 3 };
	uint16_t comp[16];
	struct sgx_verify_result r;
	struct sgx_quote q, q2;
	struct tdx t, o;
	uint8_t *b, *b2;
	static const char *l1 = "INTEL-SA-01036,INTEL-SA-01079,"
	    "INTEL-SA-01099,INTEL-SA-01103,INTEL-SA-01111";
	static const char notdx[] = "{\"tdxModule\":{\"mrsigner\":\""
	    "000000000000000000000000000000000000000000000000"
	    "000000000000000000000000000000000000000000000000\","
	    "\"attributes\":\"0000000000000000\","
	    "\"attributesMask\":\"FFFFFFFFFFFFFFFF\"},"
	    "\"tdxModuleIdentities\":[{\"id\":\"tdx_01\",\"mrsigner\":\""
	    "000000000000000000000000000000000000000000000000"
	    "000000000000000000000000000000000000000000000000\","
	    "\"attributes\":\"0000000000000000\","
	    "\"attributesMask\":\"FFFFFFFFFFFFFFFF\","
	    "\"tcbLevels\":[{\"tcb\":{\"isvsvn\":0},"
	    "\"tcbStatus\":\"UpToDate\"}]}],"
	    "\"tcbLevels\":[{\"tcb\":{\"sgxtcbcomponents\":["
	    "{\"svn\":0},{\"svn\":0},{\"svn\":0},{\"svn\":0},"
	    "{\"svn\":0},{\"svn\":0},{\"svn\":0},{\"svn\":0},"
	    "{\"svn\":0},{\"svn\":0},{\"svn\":0},{\"svn\":0},"
	    "{\"svn\":0},{\"svn\":0},{\"svn\":0},{\"svn\":0}],"
	    "\"pcesvn\":0},\"tcbStatus\":\"UpToDate\"}]}";

	tdx_load(&t, PHALA "tdx_quote", PHALA "tdx_quote_collateral.json",
	    TDX_AT);
	tdx_load(&o, PHALA "tdx_quote_outdated",
	    PHALA "tdx_quote_outdated_collateral.json", TDX_OLD_AT);
	eval_q(PHALA "tdx_quote", &q, &b);
	eval_q(PHALA "tdx_quote_outdated", &q2, &b2);

	/* what sgx_verify_quote computes for the real quotes */
	assert_int_equal(eval(&t.coll, pck_new, 11, &q, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_UP_TO_DATE);
	assert_int_equal(eval(&o.coll, pck_old, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), HSM_EPERM);
	assert_int_equal(r.failed_step, SGX_STEP_TCB_LEVEL);
	assert_non_null(strstr(hsm_err_detail(), "platform TCB below"));

	/*
	 * The outdated platform with SGX component 8 raised to 5 and
	 * component 5 lowered to 3: the second level (OutOfDate), whose
	 * TDX components TEE_TCB_SVN (from byte 2: 3 >= 2) reaches.
	 */
	memcpy(comp, pck_old, sizeof(comp));
	comp[7] = 5;
	comp[4] = 3;
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_OUT_OF_DATE);
	assert_int_equal(r.sgx_level_status, SGX_TCB_OUT_OF_DATE);
	assert_string_equal(r.tdx_module_id, "TDX_01");
	assert_int_equal(r.tdx_module_status, SGX_TCB_UP_TO_DATE);
	assert_string_equal(r.advisories, l1);
	/* PCESVN below 13: the lowest level */
	assert_int_equal(eval(&o.coll, comp, 12, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_OUT_OF_DATE);
	assert_non_null(strstr(r.advisories, "INTEL-SA-00106"));

	/* component 8 raised only: the top level, UpToDate */
	comp[4] = 4;
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_UP_TO_DATE);
	assert_string_equal(r.advisories, "");
	/* a QE OutOfDate / Revoked converges */
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_OUT_OF_DATE,
	    &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_OUT_OF_DATE);
	assert_int_equal(r.platform_status, SGX_TCB_UP_TO_DATE);
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_REVOKED, &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_REVOKED);

	/* TEE_TCB_SVN[2] below every level's TDX component 2 */
	q2.td.tee_tcb_svn[2] = 1;
	refused(&o.coll, comp, &q2, -1, "TEE_TCB_SVN");
	/* TEE_TCB_SVN[2] = 2: the TDX level is the second, OutOfDate */
	q2.td.tee_tcb_svn[2] = 2;
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_OUT_OF_DATE);
	assert_int_equal(r.sgx_level_status, SGX_TCB_UP_TO_DATE);
	assert_string_equal(r.advisories, l1);
	q2.td.tee_tcb_svn[2] = 3;

	/*
	 * The TDX module at SVN 5 (TDX_01 level isvsvn 4: OutOfDate) under
	 * an UpToDate TCB level: OutOfDate, with the module level's
	 * advisories. The TD 1.5 body's TEE_TCB_SVN2 (0d 01 03) reaches
	 * the newest module level and TDX level: the TD was launched on an
	 * old module since updated, so QVL says TDRelaunchAdvised.
	 */
	q2.td.tee_tcb_svn[0] = 5;
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_int_equal(r.tdx_module_status, SGX_TCB_OUT_OF_DATE);
	assert_string_equal(sgx_tcb_status_name(r.tcb_status),
	    "TDRelaunchAdvised");
	assert_string_equal(r.advisories, "INTEL-SA-01036,INTEL-SA-01099");
	/* ... not with a QE out of date, nor for a TD 1.0 body */
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_OUT_OF_DATE,
	    &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_OUT_OF_DATE);
	q2.body_type = SGX_BODY_TD10;
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_OUT_OF_DATE);
	q2.body_type = SGX_BODY_TD15;
	/* ... nor when TEE_TCB_SVN2 is itself behind the newest level */
	q2.td.tee_tcb_svn2[0] = 5;
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_int_equal(r.tcb_status, SGX_TCB_OUT_OF_DATE);
	q2.td.tee_tcb_svn2[0] = 0x0d;
	/* the same with a top level ConfigurationNeeded: the configuration
	 * variant; with SWHardeningNeeded, the plain one */
	{
		char *ti;

		ti = restatus(&o.coll, "ConfigurationNeeded", "OutOfDate");
		assert_non_null(strstr(ti, "\"tcbStatus\":\"ConfigurationNeeded"
		    "\"},{\"tcb\""));
		assert_int_equal(sgx_tcb_evaluate_unverified(ti, strlen(ti),
		    comp, 13, &q2, SGX_TCB_UP_TO_DATE, &r), 0);
		assert_string_equal(sgx_tcb_status_name(r.tcb_status),
		    "TDRelaunchAdvisedConfigurationNeeded");
		/* a QE out of date: OutOfDateConfigurationNeeded */
		assert_int_equal(sgx_tcb_evaluate_unverified(ti, strlen(ti),
		    comp, 13, &q2, SGX_TCB_OUT_OF_DATE, &r), 0);
		assert_int_equal(r.tcb_status,
		    SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED);
		free(ti);
		ti = restatus(&o.coll, "SWHardeningNeeded", "OutOfDate");
		assert_int_equal(sgx_tcb_evaluate_unverified(ti, strlen(ti),
		    comp, 13, &q2, SGX_TCB_UP_TO_DATE, &r), 0);
		assert_int_equal(r.tcb_status, SGX_TCB_TD_RELAUNCH_ADVISED);
		free(ti);
		/* a revoked module (SVN 7: the first TDX_01 level) revokes */
		ti = restatus(&o.coll, "UpToDate", "Revoked");
		q2.td.tee_tcb_svn[0] = 7;
		assert_int_equal(sgx_tcb_evaluate_unverified(ti, strlen(ti),
		    comp, 13, &q2, SGX_TCB_UP_TO_DATE, &r), 0);
		assert_int_equal(r.tdx_module_status, SGX_TCB_REVOKED);
		assert_int_equal(r.tcb_status, SGX_TCB_REVOKED);
		q2.td.tee_tcb_svn[0] = 5;
		free(ti);
		/* a level may not claim a computed status */
		ti = restatus(&o.coll, "TDRelaunchAdvised", "OutOfDate");
		assert_int_equal(sgx_tcb_evaluate_unverified(ti, strlen(ti),
		    comp, 13, &q2, SGX_TCB_UP_TO_DATE, &r), HSM_EPROTO);
		assert_non_null(strstr(hsm_err_detail(), "unknown tcbStatus"));
		free(ti);
	}
	/* module SVN below every module level */
	q2.td.tee_tcb_svn[0] = 1;
	refused(&o.coll, comp, &q2, SGX_STEP_TCB_LEVEL, "TDX module SVN 1");
	q2.td.tee_tcb_svn[0] = 7;

	/* module identity TDX_03 (major version 3): UpToDate from SVN 3 */
	q2.td.tee_tcb_svn[1] = 3;
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_string_equal(r.tdx_module_id, "TDX_03");
	assert_int_equal(r.tdx_module_status, SGX_TCB_UP_TO_DATE);
	/* no identity for major version 2: the module is not the one */
	q2.td.tee_tcb_svn[1] = 2;
	refused(&o.coll, comp, &q2, SGX_STEP_TDX_MODULE, "TDX_02");
	/* major version 0: tdxModule, TDX components compared from 0 */
	q2.td.tee_tcb_svn[1] = 0;
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);
	assert_string_equal(r.tdx_module_id, "");
	assert_int_equal(r.tdx_module_status, SGX_TCB_UNKNOWN);
	assert_int_equal(r.tcb_status, SGX_TCB_UP_TO_DATE);
	q2.td.tee_tcb_svn[0] = 4;	/* below component 0 (5) of all */
	refused(&o.coll, comp, &q2, SGX_STEP_TCB_LEVEL, NULL);
	q2.td.tee_tcb_svn[0] = 7;
	q2.td.tee_tcb_svn[1] = 1;

	/* MRSIGNERSEAM or SEAMATTRIBUTES not the TCB Info's module's */
	q2.td.mrsignerseam[47] = 1;
	refused(&o.coll, comp, &q2, SGX_STEP_TDX_MODULE, "MRSIGNERSEAM");
	q2.td.mrsignerseam[47] = 0;
	q2.td.seam_attributes[0] = 0x80;
	refused(&o.coll, comp, &q2, -1, "SEAMATTRIBUTES");
	q2.td.seam_attributes[0] = 0;
	assert_int_equal(eval(&o.coll, comp, 13, &q2, SGX_TCB_UP_TO_DATE,
	    &r), 0);

	/* a TCB Info without TDX components, or not JSON */
	assert_int_equal(sgx_tcb_evaluate_unverified(notdx, strlen(notdx),
	    comp, 13, &q2, SGX_TCB_UP_TO_DATE, &r), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "tdxtcbcomponents"));
	assert_int_equal(sgx_tcb_evaluate_unverified("{", 1, comp, 13, &q2,
	    SGX_TCB_UP_TO_DATE, &r), HSM_EPROTO);

	free(b);
	free(b2);
	tdx_free(&o);
	tdx_free(&t);
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
		cmocka_unit_test(verify_wrong_root),
		cmocka_unit_test(verify_tampered_collateral),
		cmocka_unit_test(verify_intel_sample),
		cmocka_unit_test(intel_collateral_errors),
		cmocka_unit_test(parse_tdx),
		cmocka_unit_test(parse_tdx_truncated),
		cmocka_unit_test(parse_v5_bad),
		cmocka_unit_test(verify_tdx_uptodate),
		cmocka_unit_test(verify_tdx_outdated),
		cmocka_unit_test(verify_tdx_tampered),
		cmocka_unit_test(verify_tdx_collateral),
		cmocka_unit_test(verify_intel_tdx_sample),
		cmocka_unit_test(tdx_tcb_levels),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
