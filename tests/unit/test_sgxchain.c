/*
 * test_sgxchain.c - the certificate chains of SGX DCAP verification, taken
 * the way Intel's QVL/QvE take them, and expired collateral accepted only
 * within collateral_grace. On the real quote (Intel's root), Intel's QVL
 * sample (its test root) and the test PKI of tests/tools/sgx_testpki:
 * every tampered root variant of every chain (the quote's PCK chain, the
 * TCB Info, QE Identity and PCK CRL issuer chains) is refused with a
 * reason naming the chain, and the untouched chains still verify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "sgxchain.h"
#include "sgxquote.h"
#include "sgxverify.h"
#include "util.h"

#include "sgx_testdata.h"

#define PHALA_AT	"2025-07-19T10:01:17Z"	/* 1 s before the earliest nextUpdate */
#define PHALA_EXPIRY	"2025-07-19T10:01:18Z"
#define DAY		86400

static char dir[64];	/* the test PKIs live here */

/* ---- files ---- */

/* A file as a NUL-terminated string (hsm_read_file terminates it). */
static char *
load_path(const char *path)
{
	uint8_t *b;
	size_t len;

	if (hsm_read_file(path, 1U << 20, &b, &len) != 0)
		fail_msg("%s: %s", path, hsm_err_detail());
	return (char *)b;
}

/* ---- certificates, with OpenSSL only (not the code under test) ---- */

/* The certificates of a PEM text, in order; returns how many. */
static size_t
pem_read(const char *pem, X509 **out, size_t max)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	size_t n = 0;

	assert_non_null(b);
	while (n < max && (out[n] = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		n++;
	BIO_free(b);
	return n;
}

/* A malloc'd NUL-terminated PEM of x[0..n). */
static char *
pem_write(X509 *const *x, size_t n)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long len;

	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(PEM_write_bio_X509(b, x[i]), 1);
	len = BIO_get_mem_data(b, &p);
	assert_true(len > 0);
	s = strndup(p, (size_t)len);
	assert_non_null(s);
	BIO_free(b);
	return s;
}

/* x with one bit flipped: in the signature (tbs 0) or in the serial number. */
static X509 *
flipped(X509 *x, int tbs)
{
	unsigned char *der = NULL, *p;
	const unsigned char *c;
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	int len = i2d_X509(x, &der);
	X509 *y;

	assert_true(len > 0);
	if (tbs) {
		/* the serial's last byte, found by its bytes in the DER */
		p = memmem(der, (size_t)len, ASN1_STRING_get0_data(sn),
		    (size_t)ASN1_STRING_length(sn));
		assert_non_null(p);
		p[ASN1_STRING_length(sn) - 1] ^= 0x01;
	} else
		der[len - 1] ^= 0x01;	/* the last byte of s */
	c = der;
	y = d2i_X509(NULL, &c, len);
	assert_non_null(y);
	OPENSSL_free(der);
	return y;
}

static EVP_PKEY *
p256(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

/* A certificate for pub named subject, issued as issuer, signed by signer. */
static X509 *
forge(const X509_NAME *subject, const X509_NAME *issuer, EVP_PKEY *pub,
    EVP_PKEY *signer, int ca, long serial)
{
	X509 *x = X509_new();
	X509V3_CTX v3;
	X509_EXTENSION *e;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
	assert_int_equal(X509_set_subject_name(x, subject), 1);
	assert_int_equal(X509_set_issuer_name(x, issuer), 1);
	assert_non_null(ASN1_TIME_set_string(X509_getm_notBefore(x), "20000101000000Z"));
	assert_non_null(ASN1_TIME_set_string(X509_getm_notAfter(x), "20491231235959Z"));
	assert_int_equal(X509_set_pubkey(x, pub), 1);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	    ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
	assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
	return x;
}

/* A name with CN cn (and nothing else). */
static X509_NAME *
cn_name(const char *cn)
{
	X509_NAME *n = X509_NAME_new();

	assert_non_null(n);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0), 1);
	return n;
}

/* ---- what is being verified, and how a chain is swapped in ---- */

enum which { W_PCK_QUOTE, W_PCK_COLL, W_TCB, W_QE, W_CRL };

struct target {
	const char		*name;
	uint8_t			*quote;
	size_t			 qlen;
	struct sgx_collateral	 coll;
	struct sgx_verify_opts	 opts;
	char			*root;	/* test root PEM, or NULL */
};

/* quote (v3, type 5, no padding) with its certification data replaced by pem. */
static uint8_t *
splice(const uint8_t *quote, size_t qlen, const char *pem, size_t *outlen)
{
	struct sgx_quote q;
	size_t off, plen = strlen(pem);
	uint8_t *b;

	assert_int_equal(sgx_quote_parse(quote, qlen, &q), 0);
	assert_int_equal(q.version, 3);
	assert_int_equal(q.cert_type, SGX_CERT_PCK_CHAIN);
	off = (size_t)(q.cert_data - quote);
	assert_true(off + q.cert_len + q.padding_len == qlen);
	b = malloc(off + plen);
	assert_non_null(b);
	memcpy(b, quote, off);
	memcpy(b + off, pem, plen);
	set_le32(b + off - 4, (uint32_t)plen);
	set_le32(b + q.signed_len, (uint32_t)(off + plen - q.signed_len - 4));
	*outlen = off + plen;
	return b;
}

/* The chain w of t as carried now. */
static const char *
chain_of(struct target *t, enum which w, char **owned)
{
	struct sgx_quote q;

	*owned = NULL;
	switch (w) {
	case W_PCK_QUOTE:
		assert_int_equal(sgx_quote_parse(t->quote, t->qlen, &q), 0);
		*owned = strndup((const char *)q.cert_data, q.cert_len);
		assert_non_null(*owned);
		return *owned;
	case W_PCK_COLL:
		return t->coll.pck_chain;
	case W_TCB:
		return t->coll.tcb_info_chain;
	case W_QE:
		return t->coll.qe_identity_chain;
	case W_CRL:
		return t->coll.pck_crl_chain;
	}
	return NULL;
}

/* Verify t with chain w replaced by pem. */
static int
run(struct target *t, enum which w, const char *pem, struct sgx_verify_result *r)
{
	struct sgx_collateral c = t->coll;	/* shallow: nothing freed */
	uint8_t *q = t->quote;
	size_t qlen = t->qlen;
	int rc;

	switch (w) {
	case W_PCK_QUOTE:
		q = splice(t->quote, t->qlen, pem, &qlen);
		break;
	case W_PCK_COLL:
		c.pck_chain = (char *)pem;
		break;
	case W_TCB:
		c.tcb_info_chain = (char *)pem;
		break;
	case W_QE:
		c.qe_identity_chain = (char *)pem;
		break;
	case W_CRL:
		c.pck_crl_chain = (char *)pem;
		break;
	}
	rc = sgx_verify_quote(q, qlen, &c, &t->opts, r);
	if (q != t->quote)
		free(q);
	return rc;
}

static void
verifies(struct target *t, const char *why)
{
	struct sgx_verify_result r;

	if (sgx_verify_quote(t->quote, t->qlen, &t->coll, &t->opts, &r) != 0)
		fail_msg("%s: %s: step %s: %s", t->name, why,
		    sgx_step_name(r.failed_step), hsm_err_detail());
	assert_int_equal(r.failed_step, SGX_STEP_NONE);
}

/*
 * The variants of a chain, by symbol: c its certificates below the root
 * (leaf[, intermediate]), l its first, L its first when it has an
 * intermediate, r its root, s / t the root with a bit flipped in its
 * signature / inside its TBS (the serial), f a self-made root with the
 * root's name, w a wrong certificate under the root (the intermediate's or
 * the signer's name, another key). A variant with another count than the
 * chain's is refused for its count; reason NULL: the issuer below the root
 * does not verify.
 */
static const struct {
	const char	*desc, *pattern, *reason;
} variants[] = {
	{ "a bit flipped in the root's signature", "cs", "root signature does not verify" },
	{ "a bit flipped inside the root's TBS (serial)", "ct", "root signature does not verify" },
	{ "the root dropped", "c", "" },
	{ "a self-made root with the real root's name", "cf", "root is not the trusted root" },
	{ "an extra certificate after the root", "crl", "" },
	{ "a wrong certificate under the root", "Lwr", NULL },
	{ "the root first", "rc", "not in the order" },
	{ "the root twice", "lrr", "more than one self-issued certificate" },
};

/*
 * Every tampered variant of chain w of t is refused at the step that
 * uses it, with a reason naming the chain; re-encoded untouched, it
 * still verifies.
 */
static void
tampered_roots(struct target *t, enum which w)
{
	static const struct {
		const char		*chain, *what, *leaf;
		enum sgx_step		 step;
		size_t			 len;
	} k[] = {
		[W_PCK_QUOTE] = { "pck_chain", "the quote's chain", "leaf",
		    SGX_STEP_PCK_CHAIN, 3 },
		[W_PCK_COLL] = { "pck_chain", "the collateral's PCK chain",
		    "leaf", SGX_STEP_PCK_CHAIN, 3 },
		[W_TCB] = { "tcb_info chain", "the issuer chain", "signer",
		    SGX_STEP_TCB_INFO, 2 },
		[W_QE] = { "qe_identity chain", "the issuer chain", "signer",
		    SGX_STEP_QE_IDENTITY, 2 },
		[W_CRL] = { "pck_crl chain", "the issuer chain", "CA",
		    SGX_STEP_PCK_CHAIN, 2 },
	};
	struct sgx_verify_result r;
	X509 *orig[4], *forged[4], *v[8];
	EVP_PKEY *a = p256(), *b = p256();
	char *owned, *pem, want[160];
	size_t n, nv, len = k[w].len;
	const char *text = chain_of(t, w, &owned), *p;
	X509 *root;
	int rc;

	assert_non_null(text);
	n = pem_read(text, orig, 4);
	assert_int_equal(n, len);
	root = orig[len - 1];
	forged[0] = flipped(root, 0);
	forged[1] = flipped(root, 1);
	forged[2] = forge(X509_get_subject_name(root),
	    X509_get_subject_name(root), a, a, 1, 7);
	forged[3] = forge(X509_get_subject_name(orig[len - 2]),
	    X509_get_subject_name(root), b, a, 1, 8);

	/* control: the untouched chain, re-encoded */
	pem = pem_write(orig, n);
	if (run(t, w, pem, &r) != 0)
		fail_msg("%s: %s re-encoded: step %s: %s", t->name, k[w].chain,
		    sgx_step_name(r.failed_step), hsm_err_detail());
	free(pem);

	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		nv = 0;
		for (p = variants[i].pattern; *p != '\0'; p++) {
			switch (*p) {
			case 'c':
				for (size_t j = 0; j + 1 < len; j++)
					v[nv++] = orig[j];
				break;
			case 'L':
				if (len == 3)
					v[nv++] = orig[0];
				break;
			case 'l': v[nv++] = orig[0]; break;
			case 'r': v[nv++] = root; break;
			case 's': v[nv++] = forged[0]; break;
			case 't': v[nv++] = forged[1]; break;
			case 'f': v[nv++] = forged[2]; break;
			case 'w': v[nv++] = forged[3]; break;
			}
		}
		if (nv != len)
			snprintf(want, sizeof(want), "%s: %s has %zu certificate%s, "
			    "not %zu", k[w].chain, k[w].what, nv, nv == 1 ? "" : "s",
			    len);
		else if (variants[i].reason == NULL)
			snprintf(want, sizeof(want), "%s: %s signature does not "
			    "verify under the root", k[w].chain,
			    len == 3 ? "intermediate" : k[w].leaf);
		else
			snprintf(want, sizeof(want), "%s: %s", k[w].chain,
			    variants[i].reason);
		pem = pem_write(v, nv);
		rc = run(t, w, pem, &r);
		free(pem);
		if (rc != HSM_EPERM || r.failed_step != k[w].step ||
		    strstr(hsm_err_detail(), want) == NULL)
			fail_msg("%s, %s, %s: rc %d step %s '%s'; wanted step %s "
			    "'%s'", t->name, k[w].chain, variants[i].desc, rc,
			    sgx_step_name(r.failed_step), hsm_err_detail(),
			    sgx_step_name(k[w].step), want);
		print_message("# refused: %s, %s, %s: %s\n", t->name,
		    k[w].chain, variants[i].desc, hsm_err_detail());
	}
	for (size_t j = 0; j < n; j++)
		X509_free(orig[j]);
	for (size_t j = 0; j < 4; j++)
		X509_free(forged[j]);
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	free(owned);
}

/* ---- the three targets ---- */

static void
target_free(struct target *t)
{
	sgx_collateral_free(&t->coll);
	free(t->quote);
	free(t->root);
	memset(t, 0, sizeof(*t));
}

/* The real quote and collateral (Intel's real root), inside its window. */
static void
phala(struct target *t)
{
	uint8_t *j;
	size_t jl;

	memset(t, 0, sizeof(*t));
	t->name = "real quote";
	load(PHALA "sgx_quote", &t->quote, &t->qlen);
	load(PHALA "sgx_quote_collateral.json", &j, &jl);
	if (sgx_collateral_from_json((const char *)j, jl, &t->coll) != 0)
		fail_msg("collateral: %s", hsm_err_detail());
	free(j);
	assert_int_equal(sgx_parse_time(PHALA_AT, &t->opts.at), 0);
}

/*
 * Intel's QVL sample with its test root: a type-1 quote whose PCK chain
 * comes with the collateral (pckCert.pem + pckSignChain.pem); its
 * pckSignChain.pem (Processor CA, root) is the PCK CRL's issuer chain.
 */
static void
intel(struct target *t)
{
	uint8_t *rc, *pc;
	size_t rcl, pcl;
	char *ti, *qi, *tc, *leaf, *sign, *pck;

	memset(t, 0, sizeof(*t));
	t->name = "Intel's QVL sample";
	load(INTEL "quote.dat", &t->quote, &t->qlen);
	ti = load_str(INTEL "tcbInfo.json");
	qi = load_str(INTEL "qeIdentity.json");
	tc = load_str(INTEL "tcbSignChain.pem");
	leaf = load_str(INTEL "pckCert.pem");
	sign = load_str(INTEL "pckSignChain.pem");
	load(INTEL "rootCaCrl.der", &rc, &rcl);
	load(INTEL "intermediateCaCrl.der", &pc, &pcl);
	pck = malloc(strlen(leaf) + strlen(sign) + 1);
	assert_non_null(pck);
	memcpy(pck, leaf, strlen(leaf));
	memcpy(pck + strlen(leaf), sign, strlen(sign) + 1);
	if (sgx_collateral_from_intel(ti, strlen(ti), qi, strlen(qi), tc, rc, rcl,
	    pc, pcl, pck, &t->coll) != 0)
		fail_msg("intel collateral: %s", hsm_err_detail());
	t->coll.pck_crl_chain = sign;
	t->root = load_str(INTEL "trustedRootCaCert.pem");
	t->opts.insecure_test_root_pem = t->root;
	assert_int_equal(sgx_parse_time("2025-01-01T00:00:00Z", &t->opts.at), 0);
	free(ti);
	free(qi);
	free(tc);
	free(leaf);
	free(pck);
	free(rc);
	free(pc);
}

/* tests/tools/sgx_testpki, built next to the tests. */
static void
tool_path(char *buf, size_t len)
{
	const char *b = getenv("HSMESH_BUILD");

	snprintf(buf, len, "%s/tests/tools/sgx_testpki",
	    b != NULL && *b != '\0' ? b : "build");
	if (access(buf, X_OK) != 0)
		fail_msg("%s is not built (make check-build)", buf);
}

/* A fresh test PKI in dir/name (init options opt) and a quote from it. */
static void
testpki(struct target *t, const char *name, const char *opt)
{
	char tool[1024], cmd[4096], path[1200];
	uint8_t *j;
	size_t jl;

	memset(t, 0, sizeof(*t));
	t->name = "test PKI";
	tool_path(tool, sizeof(tool));
	snprintf(cmd, sizeof(cmd), "'%s' init '%s/%s' %s && printf '%%0128d\\n' 0 | "
	    "'%s' quote '%s/%s' >'%s/%s.q'", tool, dir, name, opt, tool, dir,
	    name, dir, name);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/%s.q", dir, name);
	assert_int_equal(hsm_read_file(path, 1U << 20, &t->quote, &t->qlen), 0);
	snprintf(path, sizeof(path), "%s/%s/collateral.json", dir, name);
	assert_int_equal(hsm_read_file(path, 1U << 20, &j, &jl), 0);
	if (sgx_collateral_from_json((const char *)j, jl, &t->coll) != 0)
		fail_msg("collateral: %s", hsm_err_detail());
	free(j);
	snprintf(path, sizeof(path), "%s/%s/root.pem", dir, name);
	t->root = load_path(path);
	t->opts.insecure_test_root_pem = t->root;
	t->opts.at = time(NULL);
}

/* ---- tests ---- */

static int
setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hsmesh-test-sgxchain-XXXXXX");
	return mkdtemp(dir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* t verifies, and every tampered variant of each of its chains is refused. */
static void
all_chains(struct target *t, enum which pck)
{
	verifies(t, "as it is");
	tampered_roots(t, pck);
	tampered_roots(t, W_TCB);
	tampered_roots(t, W_QE);
	tampered_roots(t, W_CRL);
	target_free(t);
}

static void
real_quote_chains(void **state)
{
	struct target t;

	phala(&t);
	all_chains(&t, W_PCK_QUOTE);
}

/* its PCK chain comes with the collateral, and so its CRL issuer chain */
static void
intel_sample_chains(void **state)
{
	struct target t;

	intel(&t);
	all_chains(&t, W_PCK_COLL);
}

static void
testpki_chains(void **state)
{
	struct target t;

	testpki(&t, "pki", "");
	all_chains(&t, W_PCK_QUOTE);
}

/* The real root is never a test root, nor the other way round. */
static void
roots_are_not_interchangeable(void **state)
{
	struct sgx_verify_result r;
	struct target t;
	char *real;
	uint8_t *der;
	size_t len;

	/* the real quote against Intel's sample root */
	phala(&t);
	t.root = load_str(INTEL "trustedRootCaCert.pem");
	t.opts.insecure_test_root_pem = t.root;
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts, &r),
	    HSM_EPERM);
	assert_int_equal(r.failed_step, SGX_STEP_PCK_CHAIN);
	assert_non_null(strstr(hsm_err_detail(),
	    "pck_chain: root is not the trusted root"));
	/* Intel's real root given as a test root: the real quote verifies */
	load(PHALA "TrustedRootCA.der", &der, &len);
	{
		const unsigned char *p = der;
		X509 *x = d2i_X509(NULL, &p, (long)len);

		assert_non_null(x);
		real = pem_write(&x, 1);
		X509_free(x);
	}
	free(t.root);
	t.root = real;
	t.opts.insecure_test_root_pem = t.root;
	verifies(&t, "with Intel's root passed explicitly");
	/* a test root that is not one self-signed certificate: configuration error */
	free(t.root);
	assert_non_null(chain_of(&t, W_PCK_QUOTE, &t.root));	/* leaf, intermediate, root */
	t.opts.insecure_test_root_pem = t.root;
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts, &r),
	    HSM_ECONFIG);
	assert_int_equal(r.failed_step, SGX_STEP_COLLATERAL);
	free(der);
	target_free(&t);
}

/* The PCK CRL's issuer chain: the CRL must be its CA's. */
static void
pck_crl_chain(void **state)
{
	struct sgx_verify_result r;
	struct sgx_collateral c;
	struct target t;
	uint8_t *j;
	size_t jl;
	char *platform;

	phala(&t);
	/* the TDX collateral's chain names the Platform CA, this CRL the Processor CA's */
	load(PHALA "tdx_quote_collateral.json", &j, &jl);
	assert_int_equal(sgx_collateral_from_json((const char *)j, jl, &c), 0);
	free(j);
	platform = c.pck_crl_chain;
	assert_int_equal(run(&t, W_CRL, platform, &r), HSM_EPERM);
	assert_int_equal(r.failed_step, SGX_STEP_PCK_CHAIN);
	assert_non_null(strstr(hsm_err_detail(),
	    "pck_crl chain: the PCK CRL is not issued by the chain's CA"));
	sgx_collateral_free(&c);
	/* JSON collateral without it is malformed */
	load(PHALA "sgx_quote_collateral.json", &j, &jl);
	{
		struct json_object *o = json_tokener_parse((const char *)j);
		const char *text;

		assert_non_null(o);
		json_object_object_del(o, "pck_crl_issuer_chain");
		text = json_object_to_json_string(o);
		assert_int_equal(sgx_collateral_from_json(text, strlen(text), &c),
		    HSM_EPROTO);
		assert_non_null(strstr(hsm_err_detail(), "'pck_crl_issuer_chain'"));
		json_object_put(o);
	}
	free(j);
	target_free(&t);
}

/* The shape rules on a PKI made here, where every key is at hand. */
static void
chain_rules(void **state)
{
	EVP_PKEY *rk = p256(), *ck = p256(), *lk = p256();
	X509_NAME *rn = cn_name("Intel SGX Root CA"), *cn = cn_name("Intel SGX PCK Processor CA");
	X509_NAME *ln = cn_name("Intel SGX PCK Certificate"), *bad = cn_name("Intel SGX Something Else");
	X509 *root = forge(rn, rn, rk, rk, 1, 1), *root2 = forge(rn, rn, rk, rk, 1, 2);
	X509 *ca = forge(cn, rn, ck, rk, 1, 3), *leaf = forge(ln, cn, lk, ck, 0, 4);
	X509 *badca = forge(bad, rn, ck, rk, 1, 5), *badleaf = forge(bad, cn, lk, ck, 0, 6);
	X509 *leaf_of_bad = forge(ln, bad, lk, ck, 0, 7);
	struct sgx_cert trusted;
	static const struct {
		int	 c[3];	/* 0 root, 1 root2, 2 ca, 3 leaf, 4 badca, 5 badleaf, 6 leaf_of_bad */
		int	 rc;
		const char *want;
	} cases[] = {
		{ { 3, 2, 0 }, 0, NULL },
		{ { 3, 2, 1 }, HSM_EPERM, "pck_chain: root is not the trusted root (same key, another certificate)" },
		{ { 5, 2, 0 }, HSM_EPERM, "pck_chain: leaf is not an Intel SGX PCK Certificate" },
		{ { 6, 4, 0 }, HSM_EPERM, "pck_chain: intermediate is not an Intel SGX PCK Processor or Platform CA" },
		{ { 6, 2, 0 }, HSM_EPERM, "pck_chain: leaf is not issued by the intermediate" },
		{ { 2, 3, 0 }, HSM_EPERM, "pck_chain: intermediate is not issued by the root" },
	};
	X509 *all[7] = { root, root2, ca, leaf, badca, badleaf, leaf_of_bad };
	struct sgx_chain ch;
	char *pem;

	pem = pem_write(&root, 1);
	assert_int_equal(sgx_trust_root(pem, &trusted), 0);
	free(pem);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509 *v[3];

		for (int j = 0; j < 3; j++)
			v[j] = all[cases[i].c[j]];
		pem = pem_write(v, 3);
		assert_int_equal(sgx_chain_read(pem, strlen(pem), SGX_CHAIN_PCK_QUOTE,
		    &ch), 0);
		free(pem);
		if (sgx_chain_check(&ch, SGX_CHAIN_PCK_QUOTE, &trusted) != cases[i].rc ||
		    (cases[i].want != NULL && strcmp(hsm_err_detail(), cases[i].want) != 0))
			fail_msg("case %zu: '%s', wanted '%s'", i, hsm_err_detail(),
			    cases[i].want ? cases[i].want : "accepted");
		sgx_chain_free(&ch);
	}
	/* what is not a chain of certificates */
	assert_int_equal(sgx_chain_read("", 0, SGX_CHAIN_TCB_INFO, &ch), HSM_EPROTO);
	assert_int_equal(sgx_chain_read("hello", 5, SGX_CHAIN_TCB_INFO, &ch), HSM_EPROTO);
	assert_non_null(strstr(hsm_err_detail(), "tcb_info chain: the issuer chain"));
	{
		static const char key[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
		static const char junk[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

		assert_int_equal(sgx_chain_read(key, strlen(key), SGX_CHAIN_PCK_QUOTE, &ch),
		    HSM_EPROTO);
		assert_non_null(strstr(hsm_err_detail(), "not a plain CERTIFICATE"));
		assert_int_equal(sgx_chain_read(junk, strlen(junk), SGX_CHAIN_PCK_QUOTE, &ch),
		    HSM_EPROTO);
		assert_non_null(strstr(hsm_err_detail(), "not one DER X.509 certificate"));
	}
	/* nine certificates: read as too long, refused as such */
	{
		X509 *nine[9];

		for (int j = 0; j < 9; j++)
			nine[j] = leaf;
		pem = pem_write(nine, 9);
		assert_int_equal(sgx_chain_read(pem, strlen(pem), SGX_CHAIN_PCK_QUOTE, &ch), 0);
		assert_true(ch.too_long);
		assert_int_equal(sgx_chain_check(&ch, SGX_CHAIN_PCK_QUOTE, &trusted), HSM_EPERM);
		assert_non_null(strstr(hsm_err_detail(), "has more than 8 certificates, not 3"));
		sgx_chain_free(&ch);
		free(pem);
	}
	sgx_cert_free(&trusted);
	for (int j = 0; j < 7; j++)
		X509_free(all[j]);
	X509_NAME_free(rn);
	X509_NAME_free(cn);
	X509_NAME_free(ln);
	X509_NAME_free(bad);
	EVP_PKEY_free(rk);
	EVP_PKEY_free(ck);
	EVP_PKEY_free(lk);
}

/* ---- expired collateral and collateral_grace ---- */

static void
refused_expired(struct target *t, int64_t grace, const char *words)
{
	struct sgx_verify_result r;

	t->opts.collateral_grace = grace;
	if (sgx_verify_quote(t->quote, t->qlen, &t->coll, &t->opts, &r) !=
	    HSM_EPOLICY || r.failed_step != SGX_STEP_COLLATERAL ||
	    strstr(hsm_err_detail(), words) == NULL)
		fail_msg("%s, grace %lld: step %s '%s'; wanted collateral '%s'",
		    t->name, (long long)grace, sgx_step_name(r.failed_step),
		    hsm_err_detail(), words);
	assert_int_equal(r.collateral_expired, 0);
}

static void
real_quote_grace(void **state)
{
	struct sgx_verify_result r;
	struct target t;
	time_t expiry;

	phala(&t);
	assert_int_equal(sgx_parse_time(PHALA_EXPIRY, &expiry), 0);
	/* inside the window: nothing expired, no grace used */
	verifies(&t, "inside its window");
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts, &r), 0);
	assert_int_equal(r.collateral_expired, 0);
	assert_int_equal(r.collateral_expired_by, 0);
	assert_string_equal(r.collateral_expired_items, "");
	assert_true(r.collateral_expiry == expiry);

	/* one day past nextUpdate: refused by default */
	t.opts.at = expiry + DAY;
	refused_expired(&t, 0, "qe_identity: collateral expired (nextUpdate "
	    PHALA_EXPIRY ", 1d 0h 0m 0s before the verification time; "
	    "collateral_grace 0s)");
	/* ... and with a grace of exactly one day (the grace is exclusive) */
	refused_expired(&t, DAY, "collateral_grace 1d 0h 0m 0s");
	/* ... accepted within a grace, and flagged */
	t.opts.collateral_grace = DAY + 1;
	if (sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts, &r) != 0)
		fail_msg("grace: step %s: %s", sgx_step_name(r.failed_step),
		    hsm_err_detail());
	assert_int_equal(r.collateral_expired, 1);
	assert_int_equal(r.collateral_expired_by, DAY);
	assert_true(r.collateral_expiry == expiry);
	assert_non_null(strstr(r.collateral_expired_items, "qe_identity"));
	assert_null(strstr(r.collateral_expired_items, "pck_chain"));
	assert_string_equal(sgx_tcb_status_name(r.tcb_status),
	    "ConfigurationAndSWHardeningNeeded");
	/* far beyond it: today */
	t.opts.at = time(NULL);
	refused_expired(&t, 30 * DAY, "qe_identity: collateral expired");
	t.opts.collateral_grace = 0;

	/* the grace is no licence for collateral not yet valid */
	assert_int_equal(sgx_parse_time("2025-06-19T10:00:00Z", &t.opts.at), 0);
	t.opts.collateral_grace = 1000 * DAY;
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts, &r),
	    HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "not yet valid"));
	/* a negative grace is a bad argument */
	t.opts.collateral_grace = -1;
	assert_int_equal(sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts, &r),
	    HSM_EINVAL);
	target_free(&t);
}

/*
 * A test PKI whose collateral and certificates all end one day from now:
 * three days on, the CRLs and every certificate of every chain have
 * expired too, and OpenSSL's path validation must take the grace.
 */
static void
testpki_grace(void **state)
{
	struct sgx_verify_result r;
	struct target t;
	static const char *const items[] = { "tcb_info", "qe_identity",
	    "root_ca_crl", "pck_crl", "pck_chain leaf", "pck_chain intermediate",
	    "root", "tcb_info signer", "qe_identity signer", "pck_crl CA" };

	testpki(&t, "short", "--days 1");
	t.opts.at = time(NULL) + 3 * DAY;
	refused_expired(&t, 0, "collateral expired");
	refused_expired(&t, DAY, "collateral_grace 1d 0h 0m 0s");
	t.opts.collateral_grace = 3 * DAY;
	if (sgx_verify_quote(t.quote, t.qlen, &t.coll, &t.opts, &r) != 0)
		fail_msg("grace: step %s: %s", sgx_step_name(r.failed_step),
		    hsm_err_detail());
	assert_int_equal(r.collateral_expired, 1);
	assert_true(r.collateral_expired_by > DAY && r.collateral_expired_by < 3 * DAY);
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++)
		if (strstr(r.collateral_expired_items, items[i]) == NULL)
			fail_msg("'%s' not in '%s'", items[i], r.collateral_expired_items);
	assert_int_equal(r.tcb_status, SGX_TCB_UP_TO_DATE);
	/* a day later, still a day's grace short of covering it */
	t.opts.at += 2 * DAY;
	refused_expired(&t, 3 * DAY, "collateral expired");
	target_free(&t);
}

/* The expiry arithmetic alone. */
static void
expiry_decide(void **state)
{
	struct sgx_expiry x;
	time_t earliest;
	int64_t by;
	char items[64], span[48];

	sgx_expiry_init(&x, 1000, 100);
	assert_int_equal(sgx_expiry_decide(&x, &earliest, &by, items, sizeof(items)), 0);
	assert_true(earliest == 0 && by == 0 && items[0] == '\0');
	assert_int_equal(sgx_expiry_note(&x, "a", "nextUpdate", 2000), 0);
	assert_int_equal(sgx_expiry_note(&x, "root", "notAfter", 950), 0);
	assert_int_equal(sgx_expiry_note(&x, "b", "nextUpdate", 1000), 0);
	assert_int_equal(sgx_expiry_note(&x, "root", "notAfter", 950), 0);
	/* expired at 950 and at 1000 (at the very second counts), within 100 s */
	assert_int_equal(sgx_expiry_decide(&x, &earliest, &by, items, sizeof(items)), 0);
	assert_true(earliest == 950);
	assert_int_equal(by, 50);
	assert_string_equal(items, "root,b");
	/* a grace of 50 s does not cover 50 s */
	x.grace = 50;
	assert_int_equal(sgx_expiry_decide(&x, &earliest, &by, items, sizeof(items)),
	    HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "root: collateral expired (notAfter "
	    "1970-01-01T00:15:50Z, 50s before"));
	assert_int_equal(by, 0);
	/* full */
	for (size_t i = x.n; i < SGX_EXPIRY_ITEMS; i++)
		assert_int_equal(sgx_expiry_note(&x, "c", "notAfter", 5000), 0);
	assert_int_equal(sgx_expiry_note(&x, "d", "notAfter", 5000), HSM_EINVAL);
	assert_string_equal(sgx_fmt_span(0, span, sizeof(span)), "0s");
	assert_string_equal(sgx_fmt_span(3725, span, sizeof(span)), "1h 2m 5s");
	assert_string_equal(sgx_fmt_span(2 * DAY + 61, span, sizeof(span)),
	    "2d 0h 1m 1s");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(chain_rules),
		cmocka_unit_test(expiry_decide),
		cmocka_unit_test(real_quote_chains),
		cmocka_unit_test(intel_sample_chains),
		cmocka_unit_test(testpki_chains),
		cmocka_unit_test(roots_are_not_interchangeable),
		cmocka_unit_test(pck_crl_chain),
		cmocka_unit_test(real_quote_grace),
		cmocka_unit_test(testpki_grace),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
