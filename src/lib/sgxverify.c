/* sgxverify.c - SGX DCAP quote verification (PCK chain, QE, TCB). */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "cert.h"
#include "err.h"
#include "sgxchain.h"
#include "sgxquote.h"
#include "sgxverify.h"
#include "util.h"

#define SGX_EXT_OID	"1.2.840.113741.1.13.1"
#define SGX_COLL_MAX	(1U << 20)

const char *
sgx_step_name(enum sgx_step s)
{
	switch (s) {
	case SGX_STEP_NONE:		return "none";
	case SGX_STEP_PARSE:		return "parse";
	case SGX_STEP_COLLATERAL:	return "collateral";
	case SGX_STEP_PCK_CHAIN:	return "pck_chain";
	case SGX_STEP_QE_REPORT_SIG:	return "qe_report_sig";
	case SGX_STEP_QE_REPORT_DATA:	return "qe_report_data";
	case SGX_STEP_QUOTE_SIG:	return "quote_sig";
	case SGX_STEP_TCB_INFO:		return "tcb_info";
	case SGX_STEP_QE_IDENTITY:	return "qe_identity";
	case SGX_STEP_TCB_LEVEL:	return "tcb_level";
	case SGX_STEP_TDX_MODULE:	return "tdx_module";
	}
	return "unknown";
}

static const struct {
	enum sgx_tcb_status	 st;
	const char		*name;
} tcb_names[] = {
	{ SGX_TCB_UP_TO_DATE, "UpToDate" },
	{ SGX_TCB_SW_HARDENING_NEEDED, "SWHardeningNeeded" },
	{ SGX_TCB_CONFIGURATION_NEEDED, "ConfigurationNeeded" },
	{ SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED,
	    "ConfigurationAndSWHardeningNeeded" },
	{ SGX_TCB_OUT_OF_DATE, "OutOfDate" },
	{ SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED,
	    "OutOfDateConfigurationNeeded" },
	{ SGX_TCB_REVOKED, "Revoked" },
	{ SGX_TCB_TD_RELAUNCH_ADVISED, "TDRelaunchAdvised" },
	{ SGX_TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
	    "TDRelaunchAdvisedConfigurationNeeded" },
};

const char *
sgx_tcb_status_name(enum sgx_tcb_status s)
{
	for (size_t i = 0; i < sizeof(tcb_names) / sizeof(tcb_names[0]); i++)
		if (tcb_names[i].st == s)
			return tcb_names[i].name;
	return "Unknown";
}

/* A status a TCB Info / identity level may carry (not a computed one). */
static enum sgx_tcb_status
tcb_status_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(tcb_names) / sizeof(tcb_names[0]); i++)
		if (strcmp(tcb_names[i].name, s) == 0 &&
		    tcb_names[i].st <= SGX_TCB_REVOKED)
			return tcb_names[i].st;
	return SGX_TCB_UNKNOWN;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int
digits(const char *s, size_t n, unsigned *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		*v = *v * 10 + (unsigned)(s[i] - '0');
	}
	return 0;
}

int
sgx_parse_time(const char *s, time_t *t)
{
	unsigned y, mo, d, h, mi, se;

	*t = 0;
	if (s == NULL || strlen(s) != 20 || s[4] != '-' || s[7] != '-' ||
	    s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z' ||
	    digits(s, 4, &y) || digits(s + 5, 2, &mo) ||
	    digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
	    digits(s + 14, 2, &mi) || digits(s + 17, 2, &se) ||
	    mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    se > 60)
		return hsm_err(HSM_EINVAL, "bad time '%.40s'", s ? s : "");
	*t = (time_t)(days_from_civil(y, mo, d) * 86400 + h * 3600 +
	    mi * 60 + se);
	return 0;
}

/* ---- collateral ---- */

static int
json_str(struct json_object *o, const char *key, const char **s, size_t *n)
{
	struct json_object *v;

	*s = NULL;
	*n = 0;
	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return hsm_err(HSM_EPROTO, "collateral: member '%s' missing "
		    "or not a string", key);
	*s = json_object_get_string(v);
	*n = (size_t)json_object_get_string_len(v);
	return 0;
}

static int
dup_member(struct json_object *o, const char *key, char **out, size_t *len)
{
	const char *s;
	size_t n;
	int rc;

	*out = NULL;
	if ((rc = json_str(o, key, &s, &n)) != 0)
		return rc;
	if ((*out = strndup(s, n)) == NULL)
		return hsm_err(HSM_ENOMEM, "collateral: out of memory");
	if (len != NULL)
		*len = n;
	return 0;
}

static int
hex_member(struct json_object *o, const char *key, uint8_t *fixed,
    size_t fixedlen, uint8_t **out, size_t *outlen)
{
	const char *s;
	size_t n;
	uint8_t *b;
	int rc;

	if ((rc = json_str(o, key, &s, &n)) != 0)
		return rc;
	if (fixed != NULL) {
		if (n != 2 * fixedlen || hsm_unhex(s, n, fixed) != 0)
			return hsm_err(HSM_EPROTO, "collateral: member '%s' "
			    "is not %zu bytes of hex", key, fixedlen);
		return 0;
	}
	*out = NULL;
	*outlen = 0;
	if (n == 0 || n % 2 != 0)
		return hsm_err(HSM_EPROTO, "collateral: member '%s' is not "
		    "hex", key);
	if ((b = malloc(n / 2)) == NULL)
		return hsm_err(HSM_ENOMEM, "collateral: out of memory");
	if (hsm_unhex(s, n, b) != 0) {
		free(b);
		return hsm_err(HSM_EPROTO, "collateral: member '%s' is not "
		    "hex", key);
	}
	*out = b;
	*outlen = n / 2;
	return 0;
}

void
sgx_collateral_free(struct sgx_collateral *c)
{
	if (c == NULL)
		return;
	free(c->tcb_info);
	free(c->tcb_info_chain);
	free(c->qe_identity);
	free(c->qe_identity_chain);
	free(c->root_crl);
	free(c->pck_crl);
	free(c->pck_chain);
	free(c->pck_crl_chain);
	memset(c, 0, sizeof(*c));
}

int
sgx_collateral_from_json(const char *json, size_t len,
    struct sgx_collateral *c)
{
	struct sgx_collateral t;
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	memset(&t, 0, sizeof(t));
	if (json == NULL || len == 0 || len > SGX_COLL_MAX)
		return hsm_err(HSM_EPROTO, "collateral: empty or too large");
	if ((tok = json_tokener_new()) == NULL) {
		rc = hsm_err(HSM_ENOMEM, "collateral: out of memory");
		goto out;
	}
	o = json_tokener_parse_ex(tok, json, (int)len);
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		rc = hsm_err(HSM_EPROTO, "collateral: not a JSON object");
		goto out;
	}
	if ((rc = dup_member(o, "tcb_info", &t.tcb_info,
	    &t.tcb_info_len)) != 0 ||
	    (rc = hex_member(o, "tcb_info_signature", t.tcb_info_sig, 64,
	    NULL, NULL)) != 0 ||
	    (rc = dup_member(o, "tcb_info_issuer_chain", &t.tcb_info_chain,
	    NULL)) != 0 ||
	    (rc = dup_member(o, "qe_identity", &t.qe_identity,
	    &t.qe_identity_len)) != 0 ||
	    (rc = hex_member(o, "qe_identity_signature", t.qe_identity_sig,
	    64, NULL, NULL)) != 0 ||
	    (rc = dup_member(o, "qe_identity_issuer_chain",
	    &t.qe_identity_chain, NULL)) != 0 ||
	    (rc = hex_member(o, "root_ca_crl", NULL, 0, &t.root_crl,
	    &t.root_crl_len)) != 0 ||
	    (rc = hex_member(o, "pck_crl", NULL, 0, &t.pck_crl,
	    &t.pck_crl_len)) != 0 ||
	    (rc = dup_member(o, "pck_crl_issuer_chain", &t.pck_crl_chain,
	    NULL)) != 0)
		goto out;
	*c = t;
	memset(&t, 0, sizeof(t));
	rc = 0;
 out:
	sgx_collateral_free(&t);
	json_object_put(o);
	if (tok != NULL)
		json_tokener_free(tok);
	return rc;
}

/* Skip JSON whitespace from *i. */
static void
skip_ws(const char *t, size_t len, size_t *i)
{
	while (*i < len && (t[*i] == ' ' || t[*i] == '\t' || t[*i] == '\n' ||
	    t[*i] == '\r'))
		(*i)++;
}

/* *i at an opening quote: move past the closing one. */
static int
skip_string(const char *t, size_t len, size_t *i)
{
	if (*i >= len || t[*i] != '"')
		return -1;
	for ((*i)++; *i < len; (*i)++) {
		if (t[*i] == '\\') {
			(*i)++;
			continue;
		}
		if (t[*i] == '"') {
			(*i)++;
			return 0;
		}
	}
	return -1;
}

/* *i at a value: move past it. */
static int
skip_value(const char *t, size_t len, size_t *i)
{
	size_t depth = 0;

	if (*i >= len)
		return -1;
	if (t[*i] == '"')
		return skip_string(t, len, i);
	if (t[*i] != '{' && t[*i] != '[') {
		while (*i < len && t[*i] != ',' && t[*i] != '}' &&
		    t[*i] != ']')
			(*i)++;
		return *i < len ? 0 : -1;
	}
	while (*i < len) {
		if (t[*i] == '"') {
			if (skip_string(t, len, i) != 0)
				return -1;
			continue;
		}
		if (t[*i] == '{' || t[*i] == '[')
			depth++;
		else if (t[*i] == '}' || t[*i] == ']') {
			if (depth == 0)
				return -1;
			if (--depth == 0) {
				(*i)++;
				return 0;
			}
		}
		(*i)++;
	}
	return -1;
}

/*
 * The exact text of member key's value in the top-level object t
 * (a key without escapes). The text must also be valid JSON: the caller
 * parses it again with json-c.
 */
static int
json_raw_member(const char *t, size_t len, const char *key,
    const char **v, size_t *vl)
{
	size_t i = 0, ks, ke, kl = strlen(key), vs;

	*v = NULL;
	*vl = 0;
	skip_ws(t, len, &i);
	if (i >= len || t[i] != '{')
		return -1;
	i++;
	for (;;) {
		skip_ws(t, len, &i);
		ks = i;
		if (skip_string(t, len, &i) != 0)
			return -1;
		ke = i;
		skip_ws(t, len, &i);
		if (i >= len || t[i] != ':')
			return -1;
		i++;
		skip_ws(t, len, &i);
		vs = i;
		if (skip_value(t, len, &i) != 0)
			return -1;
		if (ke - ks == kl + 2 && memcmp(t + ks + 1, key, kl) == 0) {
			*v = t + vs;
			*vl = i - vs;
			return 0;
		}
		skip_ws(t, len, &i);
		if (i >= len || t[i] != ',')
			return -1;
		i++;
	}
}

/* Signed object + hex signature from an Intel-format collateral file. */
static int
intel_signed(const char *txt, size_t len, const char *key, char **obj,
    size_t *objlen, uint8_t *sig)
{
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL;
	const char *raw;
	size_t rl;
	int rc;

	*obj = NULL;
	*objlen = 0;
	if (txt == NULL || len == 0 || len > SGX_COLL_MAX)
		return hsm_err(HSM_EPROTO, "collateral: %s: empty or too "
		    "large", key);
	if ((tok = json_tokener_new()) == NULL)
		return hsm_err(HSM_ENOMEM, "collateral: out of memory");
	o = json_tokener_parse_ex(tok, txt, (int)len);
	json_tokener_free(tok);
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		rc = hsm_err(HSM_EPROTO, "collateral: %s: not a JSON object",
		    key);
		goto out;
	}
	if ((rc = hex_member(o, "signature", sig, 64, NULL, NULL)) != 0)
		goto out;
	if (json_raw_member(txt, len, key, &raw, &rl) != 0 || rl == 0 ||
	    raw[0] != '{') {
		rc = hsm_err(HSM_EPROTO, "collateral: member '%s' missing or "
		    "not an object", key);
		goto out;
	}
	if ((*obj = strndup(raw, rl)) == NULL) {
		rc = hsm_err(HSM_ENOMEM, "collateral: out of memory");
		goto out;
	}
	*objlen = rl;
	rc = 0;
 out:
	json_object_put(o);
	return rc;
}

static int
dup_bytes(const void *p, size_t n, uint8_t **out, size_t *outlen,
    const char *what)
{
	*out = NULL;
	*outlen = 0;
	if (p == NULL || n == 0 || n > SGX_COLL_MAX)
		return hsm_err(HSM_EPROTO, "collateral: %s missing", what);
	if ((*out = malloc(n)) == NULL)
		return hsm_err(HSM_ENOMEM, "collateral: out of memory");
	memcpy(*out, p, n);
	*outlen = n;
	return 0;
}

int
sgx_collateral_from_intel(const char *tcbinfo, size_t tcbinfo_len,
    const char *qeid, size_t qeid_len, const char *tcb_chain,
    const uint8_t *root_crl, size_t root_crl_len,
    const uint8_t *pck_crl, size_t pck_crl_len, const char *pck_chain,
    struct sgx_collateral *c)
{
	struct sgx_collateral t;
	int rc;

	memset(c, 0, sizeof(*c));
	memset(&t, 0, sizeof(t));
	if (tcb_chain == NULL) {
		rc = hsm_err(HSM_EPROTO, "collateral: TCB signing chain "
		    "missing");
		goto out;
	}
	if ((rc = intel_signed(tcbinfo, tcbinfo_len, "tcbInfo", &t.tcb_info,
	    &t.tcb_info_len, t.tcb_info_sig)) != 0 ||
	    (rc = intel_signed(qeid, qeid_len, "enclaveIdentity",
	    &t.qe_identity, &t.qe_identity_len, t.qe_identity_sig)) != 0 ||
	    (rc = dup_bytes(root_crl, root_crl_len, &t.root_crl,
	    &t.root_crl_len, "root CA CRL")) != 0 ||
	    (rc = dup_bytes(pck_crl, pck_crl_len, &t.pck_crl,
	    &t.pck_crl_len, "PCK CRL")) != 0)
		goto out;
	if ((t.tcb_info_chain = strdup(tcb_chain)) == NULL ||
	    (t.qe_identity_chain = strdup(tcb_chain)) == NULL ||
	    (pck_chain != NULL &&
	    (t.pck_chain = strdup(pck_chain)) == NULL)) {
		rc = hsm_err(HSM_ENOMEM, "collateral: out of memory");
		goto out;
	}
	*c = t;
	memset(&t, 0, sizeof(t));
	rc = 0;
 out:
	sgx_collateral_free(&t);
	return rc;
}

/* ---- crypto helpers ---- */

/* ECDSA P-256/SHA-256 over msg with a raw r||s signature. */
static int
ecdsa_verify_raw(EVP_PKEY *pk, const uint8_t *msg, size_t len,
    const uint8_t *sig)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	EVP_MD_CTX *md = NULL;
	unsigned char *der = NULL;
	int derlen, rc = HSM_ECRYPTO;

	if ((es = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(sig, 32, NULL)) == NULL ||
	    (s = BN_bin2bn(sig + 32, 32, NULL)) == NULL)
		goto out;
	if (ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = s = NULL;
	if ((derlen = i2d_ECDSA_SIG(es, &der)) <= 0)
		goto out;
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) != 1)
		goto out;
	rc = EVP_DigestVerify(md, der, (size_t)derlen, msg, len) == 1 ?
	    0 : HSM_EPERM;
 out:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return rc;
}

/* A P-256 public key from raw x||y. */
static EVP_PKEY *
p256_from_raw(const uint8_t *xy)
{
	EVP_PKEY_CTX *kc = NULL;
	EVP_PKEY *pk = NULL;
	uint8_t pt[65];
	char group[] = "prime256v1";
	OSSL_PARAM params[3];

	pt[0] = 0x04;
	memcpy(pt + 1, xy, 64);
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(
	    OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
	params[2] = OSSL_PARAM_construct_end();
	if ((kc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(kc) != 1 ||
	    EVP_PKEY_fromdata(kc, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		EVP_PKEY_free(pk);
		pk = NULL;
	}
	ERR_clear_error();
	EVP_PKEY_CTX_free(kc);
	return pk;
}

/* ---- minimal DER reader for the PCK SGX extension ---- */

struct der {
	const uint8_t	*p;
	size_t		 left;
};

/* Read one TLV; val/vlen is its content. */
static int
der_next(struct der *d, int *tag, const uint8_t **val, size_t *vlen)
{
	size_t n, l = 0;

	*tag = -1;
	*val = NULL;
	*vlen = 0;
	if (d->left < 2)
		return -1;
	*tag = d->p[0];
	n = d->p[1];
	d->p += 2;
	d->left -= 2;
	if (n & 0x80) {
		n &= 0x7f;
		if (n == 0 || n > 3 || n > d->left)
			return -1;
		for (size_t i = 0; i < n; i++)
			l = l << 8 | d->p[i];
		d->p += n;
		d->left -= n;
	} else
		l = n;
	if (l > d->left)
		return -1;
	*val = d->p;
	*vlen = l;
	d->p += l;
	d->left -= l;
	return 0;
}

/* Small non-negative INTEGER. */
static int
der_uint(const uint8_t *v, size_t n, unsigned *out)
{
	*out = 0;
	if (n == 0 || n > 3 || (v[0] & 0x80))
		return -1;
	for (size_t i = 0; i < n; i++)
		*out = *out << 8 | v[i];
	return 0;
}

struct pck_tcb {
	unsigned	comp[16];
	unsigned	pcesvn;
	uint8_t		fmspc[6];
	uint8_t		pceid[2];
	int		have;	/* bit 0 tcb, 1 fmspc, 2 pceid */
};

/* The last arc of a DER OID body under 1.2.840.113741.1.13.1. */
static int
oid_arcs(const uint8_t *v, size_t n, const uint8_t *base, size_t bl,
    unsigned *arc)
{
	*arc = 0;
	if (n != bl + 1 || memcmp(v, base, bl) != 0 || (v[bl] & 0x80))
		return -1;
	*arc = v[bl];
	return 0;
}

static int
pck_tcb_parse(X509 *leaf, struct pck_tcb *pt)
{
	/* DER body of OID 1.2.840.113741.1.13.1 */
	static const uint8_t base[] = { 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d,
	    0x01, 0x0d, 0x01 };
	static const uint8_t tcbbase[] = { 0x2a, 0x86, 0x48, 0x86, 0xf8,
	    0x4d, 0x01, 0x0d, 0x01, 0x02 };
	ASN1_OBJECT *obj = NULL;
	const ASN1_OCTET_STRING *os;
	X509_EXTENSION *ext;
	struct der top, seq, item, tcb, comp;
	const uint8_t *v, *ov, *iv;
	size_t vl, ol, il;
	unsigned arc, n;
	int tag, idx, rc = HSM_EPROTO;

	memset(pt, 0, sizeof(*pt));
	if ((obj = OBJ_txt2obj(SGX_EXT_OID, 1)) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "pck: OID");
	idx = X509_get_ext_by_OBJ(leaf, obj, -1);
	ASN1_OBJECT_free(obj);
	if (idx < 0 || (ext = X509_get_ext(leaf, idx)) == NULL ||
	    (os = X509_EXTENSION_get_data(ext)) == NULL)
		return hsm_err(HSM_EPROTO, "pck: no SGX extension");
	top.p = ASN1_STRING_get0_data(os);
	top.left = (size_t)ASN1_STRING_length(os);
	if (der_next(&top, &tag, &v, &vl) != 0 || tag != 0x30)
		goto bad;
	seq.p = v;
	seq.left = vl;
	while (seq.left > 0) {
		if (der_next(&seq, &tag, &v, &vl) != 0 || tag != 0x30)
			goto bad;
		item.p = v;
		item.left = vl;
		if (der_next(&item, &tag, &ov, &ol) != 0 || tag != 0x06 ||
		    der_next(&item, &tag, &iv, &il) != 0)
			goto bad;
		if (oid_arcs(ov, ol, base, sizeof(base), &arc) != 0)
			continue;
		if (arc == 2 && tag == 0x30) {
			tcb.p = iv;
			tcb.left = il;
			while (tcb.left > 0) {
				if (der_next(&tcb, &tag, &v, &vl) != 0 ||
				    tag != 0x30)
					goto bad;
				comp.p = v;
				comp.left = vl;
				if (der_next(&comp, &tag, &ov, &ol) != 0 ||
				    tag != 0x06 ||
				    oid_arcs(ov, ol, tcbbase, sizeof(tcbbase),
				    &arc) != 0 ||
				    der_next(&comp, &tag, &iv, &il) != 0)
					goto bad;
				if (arc >= 1 && arc <= 17) {
					if (tag != 0x02 ||
					    der_uint(iv, il, &n) != 0)
						goto bad;
					if (arc == 17)
						pt->pcesvn = n;
					else
						pt->comp[arc - 1] = n;
				}
			}
			pt->have |= 1;
		} else if (arc == 3 && tag == 0x04 && il == 2) {
			memcpy(pt->pceid, iv, 2);
			pt->have |= 4;
		} else if (arc == 4 && tag == 0x04 && il == 6) {
			memcpy(pt->fmspc, iv, 6);
			pt->have |= 2;
		}
	}
	if (pt->have != 7)
		goto bad;
	return 0;
 bad:
	rc = hsm_err(HSM_EPROTO, "pck: malformed SGX extension");
	memset(pt, 0, sizeof(*pt));
	return rc;
}

/* ---- JSON collateral checks ---- */

static struct json_object *
jget(struct json_object *o, const char *key, enum json_type type)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, type))
		return NULL;
	return v;
}

static int
jtime(struct json_object *o, const char *key, time_t *t)
{
	struct json_object *v;

	*t = 0;
	if ((v = jget(o, key, json_type_string)) == NULL)
		return -1;
	return sgx_parse_time(json_object_get_string(v), t) == 0 ? 0 : -1;
}

/* issueDate <= the verification time; nextUpdate noted in x. */
static int
json_dates(struct json_object *o, const char *what, struct sgx_expiry *x)
{
	time_t issue, next;

	if (jtime(o, "issueDate", &issue) != 0 ||
	    jtime(o, "nextUpdate", &next) != 0)
		return hsm_err(HSM_EPROTO, "%s: issueDate/nextUpdate missing "
		    "or malformed", what);
	if (x->at < issue)
		return hsm_err(HSM_EPOLICY, "%s: not yet valid at the "
		    "verification time", what);
	return sgx_expiry_note(x, what, "nextUpdate", next);
}

/* lastUpdate <= the verification time; nextUpdate noted in x. */
static int
crl_dates(X509_CRL *crl, const char *what, struct sgx_expiry *x)
{
	int64_t last, next;

	if (cert_time_unix(X509_CRL_get0_lastUpdate(crl), &last) != 0 ||
	    cert_time_unix(X509_CRL_get0_nextUpdate(crl), &next) != 0)
		return hsm_err(HSM_EPROTO, "%s: no lastUpdate or nextUpdate",
		    what);
	if (x->at < last)
		return hsm_err(HSM_EPOLICY, "%s: not yet valid at the "
		    "verification time", what);
	return sgx_expiry_note(x, what, "nextUpdate", next);
}

static int
hexfield_eq(struct json_object *o, const char *key, const uint8_t *want,
    size_t n)
{
	struct json_object *v;
	uint8_t buf[64];
	const char *s;

	if (n > sizeof(buf) || (v = jget(o, key, json_type_string)) == NULL)
		return -1;
	s = json_object_get_string(v);
	if (strlen(s) != 2 * n || hsm_unhex(s, 2 * n, buf) != 0)
		return -1;
	return CRYPTO_memcmp(buf, want, n) == 0 ? 0 : 1;
}

/* Append advisory IDs of level to res->advisories, without duplicates. */
static void
add_advisories(struct json_object *level, struct sgx_verify_result *res)
{
	struct json_object *a, *e;
	const char *id;
	size_t n, cur, il;

	if ((a = jget(level, "advisoryIDs", json_type_array)) == NULL)
		return;
	n = json_object_array_length(a);
	for (size_t i = 0; i < n; i++) {
		e = json_object_array_get_idx(a, i);
		if (!json_object_is_type(e, json_type_string))
			continue;
		id = json_object_get_string(e);
		il = strlen(id);
		/* already present as a whole comma-separated token? */
		for (const char *p = res->advisories; (p = strstr(p, id)) != NULL;
		    p += il) {
			if ((p == res->advisories || p[-1] == ',') &&
			    (p[il] == ',' || p[il] == '\0'))
				goto next;
		}
		cur = strlen(res->advisories);
		if (cur + (cur ? 1 : 0) + il + 1 > sizeof(res->advisories))
			return;
		snprintf(res->advisories + cur, sizeof(res->advisories) - cur,
		    "%s%s", cur ? "," : "", id);
 next:
		;
	}
}

static int
jint(struct json_object *o, const char *key, unsigned *v)
{
	struct json_object *x;
	int64_t i;

	*v = 0;
	if ((x = jget(o, key, json_type_int)) == NULL)
		return -1;
	i = json_object_get_int64(x);
	if (i < 0 || i > 65535)
		return -1;
	*v = (unsigned)i;
	return 0;
}

/* *ok = whether the PCK TCB reaches level l (index i) of TCB Info v2/v3. */
static int
sgx_level_reached(struct json_object *l, size_t i, const struct pck_tcb *pt,
    int *ok)
{
	struct json_object *tcb, *comps, *c;
	unsigned svn, pcesvn;
	char key[32];

	*ok = 0;
	if ((tcb = jget(l, "tcb", json_type_object)) == NULL ||
	    jint(tcb, "pcesvn", &pcesvn) != 0)
		return hsm_err(HSM_EPROTO, "tcb_info: tcbLevels[%zu] "
		    "malformed", i);
	comps = jget(tcb, "sgxtcbcomponents", json_type_array);
	if (comps != NULL && json_object_array_length(comps) != 16)
		return hsm_err(HSM_EPROTO, "tcb_info: tcbLevels[%zu] "
		    "needs 16 sgxtcbcomponents", i);
	*ok = pt->pcesvn >= pcesvn;
	for (unsigned k = 0; k < 16; k++) {
		if (comps != NULL) {
			c = json_object_array_get_idx(comps, k);
			if (jint(c, "svn", &svn) != 0)
				return hsm_err(HSM_EPROTO, "tcb_info: "
				    "tcbLevels[%zu] component %u", i, k);
		} else {
			snprintf(key, sizeof(key), "sgxtcbcomp%02usvn", k + 1);
			if (jint(tcb, key, &svn) != 0)
				return hsm_err(HSM_EPROTO, "tcb_info: "
				    "tcbLevels[%zu] %s", i, key);
		}
		if (pt->comp[k] < svn)
			*ok = 0;
	}
	return 0;
}

/*
 * *ok = whether TEE_TCB_SVN reaches the tdxtcbcomponents of level l.
 * When TEE_TCB_SVN[1] (the TDX module's major version) is not zero, the
 * first two bytes are the module's and are judged by its identity
 * instead (as Intel's QVL does).
 */
static int
tdx_level_reached(struct json_object *l, size_t i, const uint8_t *teesvn,
    int *ok)
{
	struct json_object *tcb, *comps;
	unsigned svn;

	*ok = 0;
	if ((tcb = jget(l, "tcb", json_type_object)) == NULL ||
	    (comps = jget(tcb, "tdxtcbcomponents", json_type_array)) == NULL ||
	    json_object_array_length(comps) != 16)
		return hsm_err(HSM_EPROTO, "tcb_info: tcbLevels[%zu] needs 16 "
		    "tdxtcbcomponents", i);
	*ok = 1;
	for (unsigned k = teesvn[1] > 0 ? 2 : 0; k < 16; k++) {
		if (jint(json_object_array_get_idx(comps, k), "svn", &svn) != 0)
			return hsm_err(HSM_EPROTO, "tcb_info: tcbLevels[%zu] "
			    "tdx component %u", i, k);
		if (teesvn[k] < svn)
			*ok = 0;
	}
	return 0;
}

/*
 * TCB level matching (TCB Info v2 and v3). SGX (teesvn NULL): *sgxl is
 * the first level the PCK TCB is at or above. TDX: *sgxl is that level
 * too, and *tdxl the first level from it on whose SGX components and
 * TDX components (TEE_TCB_SVN) are both reached.
 */
static int
match_levels(struct json_object *ti, const struct pck_tcb *pt,
    const uint8_t *teesvn, struct json_object **sgxl,
    struct json_object **tdxl)
{
	struct json_object *levels, *l;
	size_t n;
	int ok, rc;

	*sgxl = *tdxl = NULL;
	if ((levels = jget(ti, "tcbLevels", json_type_array)) == NULL)
		return hsm_err(HSM_EPROTO, "tcb_info: no tcbLevels");
	n = json_object_array_length(levels);
	for (size_t i = 0; i < n; i++) {
		l = json_object_array_get_idx(levels, i);
		if ((rc = sgx_level_reached(l, i, pt, &ok)) != 0)
			return rc;
		if (!ok)
			continue;
		if (*sgxl == NULL)
			*sgxl = l;
		if (teesvn == NULL)
			return 0;
		if ((rc = tdx_level_reached(l, i, teesvn, &ok)) != 0)
			return rc;
		if (ok) {
			*tdxl = l;
			return 0;
		}
	}
	if (*sgxl == NULL)
		return hsm_err(HSM_EPERM, "tcb_level: platform TCB below every "
		    "tcbLevel (TCB not supported)");
	return hsm_err(HSM_EPERM, "tcb_level: TDX TCB (TEE_TCB_SVN) below "
	    "every tcbLevel the platform reaches (TCB not supported)");
}

/*
 * Converge status st with another component's (the QE's, the TDX
 * module's) as Intel's QVL does: that one OutOfDate makes an UpToDate or
 * SWHardeningNeeded st OutOfDate and a ConfigurationNeeded one
 * OutOfDateConfigurationNeeded; Revoked makes anything Revoked.
 */
static enum sgx_tcb_status
converge(enum sgx_tcb_status st, enum sgx_tcb_status other)
{
	if (other == SGX_TCB_REVOKED)
		return SGX_TCB_REVOKED;
	if (other != SGX_TCB_OUT_OF_DATE)
		return st;
	switch (st) {
	case SGX_TCB_UP_TO_DATE:
	case SGX_TCB_SW_HARDENING_NEEDED:
		return SGX_TCB_OUT_OF_DATE;
	case SGX_TCB_CONFIGURATION_NEEDED:
	case SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED:
		return SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED;
	default:
		return st;
	}
}

static enum sgx_tcb_status
level_status(struct json_object *l)
{
	struct json_object *s;

	if ((s = jget(l, "tcbStatus", json_type_string)) == NULL)
		return SGX_TCB_UNKNOWN;
	return tcb_status_parse(json_object_get_string(s));
}

/* ---- TDX module (TCB Info v3 "tdxModule" / "tdxModuleIdentities") ---- */

/* tdxModuleIdentities entry whose id is "TDX_%02X" of major (any case). */
static struct json_object *
tdx_module_identity(struct json_object *ti, unsigned major)
{
	struct json_object *ids, *e, *id;
	char want[8];
	size_t n;

	if ((ids = jget(ti, "tdxModuleIdentities", json_type_array)) == NULL)
		return NULL;
	snprintf(want, sizeof(want), "TDX_%02X", major & 0xffU);
	n = json_object_array_length(ids);
	for (size_t i = 0; i < n; i++) {
		e = json_object_array_get_idx(ids, i);
		if ((id = jget(e, "id", json_type_string)) != NULL &&
		    strcasecmp(json_object_get_string(id), want) == 0)
			return e;
	}
	return NULL;
}

/*
 * The module the TD report names must be the one the TCB Info describes:
 * MRSIGNERSEAM equal to mrsigner, SEAMATTRIBUTES equal to attributes
 * under attributesMask. The description is tdxModule, or the identity
 * TDX_<TEE_TCB_SVN[1]> when that byte (the module's major version) is
 * not zero; *ident is that identity, else NULL.
 */
static int
tdx_module_check(struct json_object *ti, const struct sgx_td_report *td,
    struct json_object **ident, char *idname, size_t idlen)
{
	struct json_object *m, *a, *am;
	uint8_t attr[8], mask[8];

	*ident = NULL;
	idname[0] = '\0';
	if ((m = jget(ti, "tdxModule", json_type_object)) == NULL)
		return hsm_err(HSM_EPROTO, "tdx_module: TCB Info has no "
		    "tdxModule");
	if (td->tee_tcb_svn[1] > 0) {
		snprintf(idname, idlen, "TDX_%02X", td->tee_tcb_svn[1]);
		if ((m = tdx_module_identity(ti, td->tee_tcb_svn[1])) == NULL)
			return hsm_err(HSM_EPERM, "tdx_module: TCB Info has no "
			    "tdxModuleIdentities entry %s for the TD's module "
			    "(TEE_TCB_SVN[1] = %u)", idname,
			    td->tee_tcb_svn[1]);
		*ident = m;
	}
	a = jget(m, "attributes", json_type_string);
	am = jget(m, "attributesMask", json_type_string);
	if (a == NULL || am == NULL ||
	    strlen(json_object_get_string(a)) != 16 ||
	    strlen(json_object_get_string(am)) != 16 ||
	    hsm_unhex(json_object_get_string(a), 16, attr) != 0 ||
	    hsm_unhex(json_object_get_string(am), 16, mask) != 0)
		return hsm_err(HSM_EPROTO, "tdx_module: %s attributes "
		    "malformed", idname[0] ? idname : "tdxModule");
	switch (hexfield_eq(m, "mrsigner", td->mrsignerseam, 48)) {
	case 0:
		break;
	case 1:
		return hsm_err(HSM_EPERM, "tdx_module: MRSIGNERSEAM does not "
		    "match the TCB Info's %s mrsigner",
		    idname[0] ? idname : "tdxModule");
	default:
		return hsm_err(HSM_EPROTO, "tdx_module: %s mrsigner "
		    "malformed", idname[0] ? idname : "tdxModule");
	}
	for (size_t i = 0; i < 8; i++)
		if ((td->seam_attributes[i] & mask[i]) != (attr[i] & mask[i]))
			return hsm_err(HSM_EPERM, "tdx_module: SEAMATTRIBUTES "
			    "do not match the TCB Info's %s attributes",
			    idname[0] ? idname : "tdxModule");
	return 0;
}

/* First level of a module identity whose isvsvn the module SVN reaches. */
static int
tdx_module_level(struct json_object *ident, unsigned svn,
    struct json_object **lvl)
{
	struct json_object *levels, *l, *tcb;
	unsigned v;
	size_t n;

	*lvl = NULL;
	if ((levels = jget(ident, "tcbLevels", json_type_array)) == NULL)
		return hsm_err(HSM_EPROTO, "tcb_level: TDX module identity has "
		    "no tcbLevels");
	n = json_object_array_length(levels);
	for (size_t i = 0; i < n; i++) {
		l = json_object_array_get_idx(levels, i);
		if ((tcb = jget(l, "tcb", json_type_object)) == NULL ||
		    jint(tcb, "isvsvn", &v) != 0)
			return hsm_err(HSM_EPROTO, "tcb_level: TDX module "
			    "tcbLevels[%zu] malformed", i);
		if (svn >= v) {
			*lvl = l;
			return 0;
		}
	}
	return hsm_err(HSM_EPERM, "tcb_level: TDX module SVN %u below every "
	    "level of its identity (TCB not supported)", svn);
}

static int
config_needed(enum sgx_tcb_status st)
{
	return st == SGX_TCB_CONFIGURATION_NEEDED ||
	    st == SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED ||
	    st == SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED ||
	    st == SGX_TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED;
}

/* svn of tdxtcbcomponents[k] of level l, or -1. */
static long
tdx_comp(struct json_object *l, unsigned k)
{
	struct json_object *tcb, *comps;
	unsigned v;

	if ((tcb = jget(l, "tcb", json_type_object)) == NULL ||
	    (comps = jget(tcb, "tdxtcbcomponents", json_type_array)) == NULL ||
	    json_object_array_length(comps) != 16 ||
	    jint(json_object_array_get_idx(comps, k), "svn", &v) != 0)
		return -1;
	return (long)v;
}

/*
 * TD report 1.5: a TD whose platform was updated since it launched (its
 * TEE_TCB_SVN2, the current module, reaches the newest level while
 * TEE_TCB_SVN, the one it was launched on, is OutOfDate) is told to
 * relaunch rather than judged out of date: Intel's QVL check, where sgx
 * is the SGX level's status, tdx the TDX level converged with the module,
 * module the module's own status (UNKNOWN if no identity applied).
 */
static int
td_relaunch(struct json_object *ti, const struct sgx_td_report *td,
    enum sgx_tcb_status sgx, enum sgx_tcb_status module,
    enum sgx_tcb_status qe, enum sgx_tcb_status *tdx)
{
	struct json_object *levels, *latest, *ident, *ml, *tcb;
	const uint8_t *s2 = td->tee_tcb_svn2;
	unsigned need0;
	long c;

	if (qe == SGX_TCB_OUT_OF_DATE || qe == SGX_TCB_REVOKED)
		return 0;
	if (sgx != SGX_TCB_UP_TO_DATE && sgx != SGX_TCB_SW_HARDENING_NEEDED &&
	    sgx != SGX_TCB_CONFIGURATION_NEEDED &&
	    sgx != SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED)
		return 0;
	if (*tdx != SGX_TCB_OUT_OF_DATE &&
	    *tdx != SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED)
		return 0;
	if (module != SGX_TCB_OUT_OF_DATE)
		return 0;
	if ((levels = jget(ti, "tcbLevels", json_type_array)) == NULL ||
	    json_object_array_length(levels) == 0)
		return hsm_err(HSM_EPERM, "tcb_level: no TDX TCB level (TCB "
		    "not supported)");
	latest = json_object_array_get_idx(levels, 0);
	if (s2[1] == 0) {
		if ((c = tdx_comp(latest, 0)) < 0)
			return hsm_err(HSM_EPROTO, "tcb_level: tcbLevels[0] "
			    "tdx components");
		need0 = (unsigned)c;
	} else {
		if ((ident = tdx_module_identity(ti, s2[1])) == NULL)
			return hsm_err(HSM_EPERM, "tcb_level: TCB Info has no "
			    "identity TDX_%02X for TEE_TCB_SVN2", s2[1]);
		if ((levels = jget(ident, "tcbLevels",
		    json_type_array)) == NULL ||
		    json_object_array_length(levels) == 0)
			return hsm_err(HSM_EPERM, "tcb_level: TDX module "
			    "identity without levels (TCB not supported)");
		ml = json_object_array_get_idx(levels, 0);
		if ((tcb = jget(ml, "tcb", json_type_object)) == NULL ||
		    jint(tcb, "isvsvn", &need0) != 0)
			return hsm_err(HSM_EPROTO, "tcb_level: TDX module "
			    "tcbLevels[0] malformed");
	}
	if ((c = tdx_comp(latest, 2)) < 0)
		return hsm_err(HSM_EPROTO, "tcb_level: tcbLevels[0] tdx "
		    "components");
	if (s2[0] >= need0 && s2[2] >= (unsigned long)c)
		*tdx = config_needed(sgx) || config_needed(*tdx) ?
		    SGX_TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED :
		    SGX_TCB_TD_RELAUNCH_ADVISED;
	return 0;
}

/*
 * The tcb_level step: the platform's status from TCB Info ti (already
 * verified), for PCK TCB pt and quote q, converged with r->qe_status as
 * Intel's QVL does; ident is the TDX module identity tdx_module_check()
 * chose (NULL: none applies). Sets r's statuses; adds the advisories of
 * the TCB level and the module level.
 */
static int
tcb_eval(struct json_object *ti, const struct pck_tcb *pt,
    const struct sgx_quote *q, struct json_object *ident,
    struct sgx_verify_result *r)
{
	struct json_object *l, *tl, *ml, *tmp;
	int rc, tdx = q->tee_type == SGX_TEE_TDX;

	if ((rc = match_levels(ti, pt, tdx ? q->td.tee_tcb_svn : NULL, &l,
	    &tl)) != 0)
		return rc;
	if (tdx) {
		if ((r->sgx_level_status = level_status(l)) ==
		    SGX_TCB_UNKNOWN)
			goto unknown;
		l = tl;
	}
	if ((r->platform_status = level_status(l)) == SGX_TCB_UNKNOWN)
		goto unknown;
	add_advisories(l, r);
	if (ident != NULL) {
		/* the TDX module: its SVN against its identity's levels */
		if ((rc = tdx_module_level(ident, q->td.tee_tcb_svn[0],
		    &ml)) != 0)
			return rc;
		r->tdx_module_status = level_status(ml);
		if (r->tdx_module_status != SGX_TCB_UP_TO_DATE &&
		    r->tdx_module_status != SGX_TCB_OUT_OF_DATE &&
		    r->tdx_module_status != SGX_TCB_REVOKED)
			return hsm_err(HSM_EPROTO, "tcb_level: TDX module "
			    "level status not UpToDate, OutOfDate or Revoked");
		add_advisories(ml, r);
		r->platform_status = converge(r->platform_status,
		    r->tdx_module_status);
	}
	if (tdx && q->body_type == SGX_BODY_TD15 &&
	    r->platform_status != SGX_TCB_REVOKED &&
	    (rc = td_relaunch(ti, &q->td, r->sgx_level_status,
	    r->tdx_module_status, r->qe_status, &r->platform_status)) != 0)
		return rc;
	/* Converge platform and QE status as Intel's QVL does. */
	r->tcb_status = converge(r->platform_status, r->qe_status);
	return 0;
 unknown:
	tmp = jget(l, "tcbStatus", json_type_string);
	return hsm_err(HSM_EPROTO, "tcb_level: unknown tcbStatus '%.40s'",
	    tmp != NULL ? json_object_get_string(tmp) : "?");
}

/* ---- test hook (sgxverify.h) ---- */

int
sgx_tcb_evaluate_unverified(const char *tcb_info, size_t len,
    const uint16_t comp[16], uint16_t pcesvn, const struct sgx_quote *q,
    enum sgx_tcb_status qe_status, struct sgx_verify_result *res)
{
	struct sgx_verify_result r;
	struct json_tokener *tok;
	struct json_object *ti = NULL, *ident = NULL;
	struct pck_tcb pt;
	int rc;

	memset(res, 0, sizeof(*res));
	memset(&r, 0, sizeof(r));
	memset(&pt, 0, sizeof(pt));
	r.failed_step = SGX_STEP_TCB_INFO;
	if (tcb_info == NULL || len > SGX_COLL_MAX || q == NULL ||
	    (tok = json_tokener_new()) == NULL) {
		res->failed_step = r.failed_step;
		return hsm_err(HSM_EINVAL, "tcb evaluate: bad arguments");
	}
	ti = json_tokener_parse_ex(tok, tcb_info, (int)len);
	json_tokener_free(tok);
	if (ti == NULL || !json_object_is_type(ti, json_type_object)) {
		rc = hsm_err(HSM_EPROTO, "tcb_info: not a JSON object");
		goto out;
	}
	for (size_t i = 0; i < 16; i++)
		pt.comp[i] = comp[i];
	pt.pcesvn = pcesvn;
	r.qe_status = qe_status;
	if (q->tee_type == SGX_TEE_TDX) {
		r.failed_step = SGX_STEP_TDX_MODULE;
		if ((rc = tdx_module_check(ti, &q->td, &ident,
		    r.tdx_module_id, sizeof(r.tdx_module_id))) != 0)
			goto out;
	}
	r.failed_step = SGX_STEP_TCB_LEVEL;
	if ((rc = tcb_eval(ti, &pt, q, ident, &r)) != 0)
		goto out;
	r.tee_type = q->tee_type;
	r.quote_version = q->version;
	r.td = q->td;
	r.enclave = q->enclave;
	r.failed_step = SGX_STEP_NONE;
	*res = r;
 out:
	if (rc != 0)
		res->failed_step = r.failed_step;
	json_object_put(ti);
	return rc;
}

/* What the steps share: the trust anchor, the CRLs, the time and grace. */
struct vctx {
	struct sgx_cert	 root;
	X509_CRL	*rcrl, *pcrl;
	time_t		 at;
	int64_t		 grace;
};

/* Verify a signed JSON object by its issuer chain and parse it. */
static int
signed_json(const char *txt, size_t len, const uint8_t *sig,
    const struct sgx_chain *chain, enum sgx_chain_kind k,
    const struct vctx *v, const char *what, struct json_object **out)
{
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL;
	EVP_PKEY *pk;
	int rc;

	*out = NULL;
	if ((rc = sgx_chain_check(chain, k, &v->root)) != 0 ||
	    (rc = sgx_chain_verify_path(chain, k, &v->root, v->rcrl, NULL,
	    v->at, v->grace)) != 0)
		goto out;
	if ((pk = X509_get0_pubkey(sgx_chain_leaf(chain))) == NULL) {
		rc = hsm_err(HSM_EPROTO, "%s: signer key", what);
		goto out;
	}
	if ((rc = ecdsa_verify_raw(pk, (const uint8_t *)txt, len, sig)) != 0) {
		rc = hsm_err(HSM_EPERM, "%s: signature does not verify", what);
		goto out;
	}
	if (len > INT32_MAX || (tok = json_tokener_new()) == NULL ||
	    (o = json_tokener_parse_ex(tok, txt, (int)len)) == NULL ||
	    !json_object_is_type(o, json_type_object)) {
		rc = hsm_err(HSM_EPROTO, "%s: not a JSON object", what);
		goto out;
	}
	*out = o;
	o = NULL;
	rc = 0;
 out:
	ERR_clear_error();
	json_object_put(o);
	if (tok != NULL)
		json_tokener_free(tok);
	return rc;
}

static X509_CRL *
crl_from_der(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;

	if (der == NULL || len == 0 || len > INT32_MAX)
		return NULL;
	return d2i_X509_CRL(NULL, &p, (long)len);
}

/* JSON text of n bytes, or NULL. */
static struct json_object *
json_text(const char *t, size_t n)
{
	struct json_tokener *tok;
	struct json_object *o = NULL;

	if (t == NULL || n > INT32_MAX || (tok = json_tokener_new()) == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, t, (int)n);
	json_tokener_free(tok);
	return o;
}

/*
 * The collateral step: decode it, refuse what is not yet valid, and
 * weigh what has expired against the grace (sgxchain.h), over the TCB
 * Info, the QE Identity, both CRLs and every certificate of pck and of
 * the issuer chains (read here into tcbch, qech and crlch).
 */
static int
collateral_dates(const struct sgx_collateral *c, const struct sgx_chain *pck,
    struct vctx *v, struct sgx_chain *tcbch, struct sgx_chain *qech,
    struct sgx_chain *crlch, struct sgx_verify_result *r)
{
	struct sgx_expiry x;
	struct json_object *ti = NULL, *qi = NULL;
	int rc;

	if ((v->rcrl = crl_from_der(c->root_crl, c->root_crl_len)) == NULL ||
	    (v->pcrl = crl_from_der(c->pck_crl, c->pck_crl_len)) == NULL) {
		rc = hsm_err(HSM_EPROTO, "collateral: root or PCK CRL is not "
		    "DER");
		goto out;
	}
	if ((ti = json_text(c->tcb_info, c->tcb_info_len)) == NULL ||
	    (qi = json_text(c->qe_identity, c->qe_identity_len)) == NULL) {
		rc = hsm_err(HSM_EPROTO, "collateral: tcb_info or qe_identity "
		    "is not JSON");
		goto out;
	}
	if ((rc = sgx_chain_read(c->tcb_info_chain, strlen(c->tcb_info_chain),
	    SGX_CHAIN_TCB_INFO, tcbch)) != 0 ||
	    (rc = sgx_chain_read(c->qe_identity_chain,
	    strlen(c->qe_identity_chain), SGX_CHAIN_QE_IDENTITY, qech)) != 0 ||
	    (c->pck_crl_chain != NULL && (rc = sgx_chain_read(c->pck_crl_chain,
	    strlen(c->pck_crl_chain), SGX_CHAIN_PCK_CRL, crlch)) != 0))
		goto out;
	sgx_expiry_init(&x, v->at, v->grace);
	if ((rc = json_dates(ti, "tcb_info", &x)) != 0 ||
	    (rc = json_dates(qi, "qe_identity", &x)) != 0 ||
	    (rc = crl_dates(v->rcrl, "root_ca_crl", &x)) != 0 ||
	    (rc = crl_dates(v->pcrl, "pck_crl", &x)) != 0 ||
	    (rc = sgx_expiry_note_chain(&x, pck, SGX_CHAIN_PCK_QUOTE)) != 0 ||
	    (rc = sgx_expiry_note_chain(&x, tcbch, SGX_CHAIN_TCB_INFO)) != 0 ||
	    (rc = sgx_expiry_note_chain(&x, qech, SGX_CHAIN_QE_IDENTITY)) != 0 ||
	    (rc = sgx_expiry_note_chain(&x, crlch, SGX_CHAIN_PCK_CRL)) != 0 ||
	    (rc = sgx_expiry_decide(&x, &r->collateral_expiry,
	    &r->collateral_expired_by, r->collateral_expired_items,
	    sizeof(r->collateral_expired_items))) != 0)
		goto out;
	r->collateral_expired = r->collateral_expired_items[0] != '\0';
	rc = 0;
 out:
	json_object_put(ti);
	json_object_put(qi);
	return rc;
}

/*
 * The PCK CRL's issuer chain, when the collateral has one: its shape,
 * and the PCK CRL issued and signed by its CA.
 */
static int
pck_crl_chain_check(const struct sgx_chain *crlch, const struct vctx *v)
{
	const char *name = sgx_chain_name(SGX_CHAIN_PCK_CRL);
	X509 *ca;
	EVP_PKEY *k;
	int rc, ok;

	if (crlch->n == 0)
		return 0;	/* Intel's directory form: none */
	if ((rc = sgx_chain_check(crlch, SGX_CHAIN_PCK_CRL, &v->root)) != 0)
		return rc;
	ca = sgx_chain_leaf(crlch);
	if (X509_NAME_cmp(X509_CRL_get_issuer(v->pcrl),
	    X509_get_subject_name(ca)) != 0)
		return hsm_err(HSM_EPERM, "%s: the PCK CRL is not issued by "
		    "the chain's CA", name);
	k = X509_get0_pubkey(ca);
	ok = k != NULL && X509_CRL_verify(v->pcrl, k) == 1;
	ERR_clear_error();
	if (!ok)
		return hsm_err(HSM_EPERM, "%s: the PCK CRL's signature does not "
		    "verify under the chain's CA", name);
	return 0;
}

int
sgx_verify_quote(const uint8_t *quote, size_t len,
    const struct sgx_collateral *c, const struct sgx_verify_opts *opts,
    struct sgx_verify_result *res)
{
	struct sgx_verify_result r;
	struct sgx_quote q;
	struct pck_tcb pt;
	struct vctx vc;
	struct sgx_chain pck, tcbch, qech, crlch;
	enum sgx_chain_kind pck_kind = SGX_CHAIN_PCK_QUOTE;
	EVP_PKEY *attkey = NULL, *pckkey;
	EVP_MD_CTX *md = NULL;
	struct json_object *ti = NULL, *qi = NULL, *lvl, *levels, *l, *tmp;
	struct json_object *ident = NULL;
	uint8_t hash[32];
	unsigned int hl = 0, v, misc, miscmask, svn;
	uint8_t attr[16], amask[16];
	size_t n;
	int rc, tdx;

	memset(res, 0, sizeof(*res));
	memset(&r, 0, sizeof(r));
	memset(&pt, 0, sizeof(pt));
	memset(&vc, 0, sizeof(vc));
	memset(&pck, 0, sizeof(pck));
	memset(&tcbch, 0, sizeof(tcbch));
	memset(&qech, 0, sizeof(qech));
	memset(&crlch, 0, sizeof(crlch));
	if (c == NULL || opts == NULL || opts->at <= 0 ||
	    opts->collateral_grace < 0 ||
	    c->tcb_info == NULL || c->qe_identity == NULL ||
	    c->tcb_info_chain == NULL || c->qe_identity_chain == NULL) {
		res->failed_step = SGX_STEP_COLLATERAL;
		return hsm_err(HSM_EINVAL, "sgx verify: missing collateral, "
		    "verification time or a negative collateral_grace");
	}
	vc.at = opts->at;
	vc.grace = opts->collateral_grace;

	/* parse */
	r.failed_step = SGX_STEP_PARSE;
	if ((rc = sgx_quote_parse(quote, len, &q)) != 0)
		goto out;
	tdx = q.tee_type == SGX_TEE_TDX;
	if (q.cert_type == SGX_CERT_PCK_CHAIN) {
		pck_kind = SGX_CHAIN_PCK_QUOTE;
		rc = sgx_chain_read(q.cert_data, q.cert_len, pck_kind, &pck);
	} else if (q.cert_type >= 1 && q.cert_type <= 3 &&
	    c->pck_chain != NULL) {
		pck_kind = SGX_CHAIN_PCK_COLLATERAL;
		rc = sgx_chain_read(c->pck_chain, strlen(c->pck_chain),
		    pck_kind, &pck);
	} else
		rc = hsm_err(HSM_EUNSUPPORTED, "sgx verify: certification "
		    "data type %u and no PCK chain in the collateral",
		    q.cert_type);
	if (rc != 0)
		goto out;

	/* the trust anchor (a bad test root is a configuration error) */
	r.failed_step = SGX_STEP_COLLATERAL;
	if ((rc = sgx_trust_root(opts->insecure_test_root_pem, &vc.root)) != 0)
		goto out;

	/* pck_chain: the quote's chain, as QvE takes it, before any date */
	r.failed_step = SGX_STEP_PCK_CHAIN;
	if ((rc = sgx_chain_check(&pck, pck_kind, &vc.root)) != 0)
		goto out;

	/* collateral: decode and date it */
	r.failed_step = SGX_STEP_COLLATERAL;
	if ((rc = collateral_dates(c, &pck, &vc, &tcbch, &qech, &crlch,
	    &r)) != 0)
		goto out;

	/* pck_chain: the CRLs' issuer, then the path with revocation */
	r.failed_step = SGX_STEP_PCK_CHAIN;
	if ((rc = pck_crl_chain_check(&crlch, &vc)) != 0 ||
	    (rc = sgx_chain_verify_path(&pck, pck_kind, &vc.root, vc.rcrl,
	    vc.pcrl, vc.at, vc.grace)) != 0 ||
	    (rc = pck_tcb_parse(sgx_chain_leaf(&pck), &pt)) != 0)
		goto out;

	/* qe_report_sig */
	r.failed_step = SGX_STEP_QE_REPORT_SIG;
	if ((pckkey = X509_get0_pubkey(sgx_chain_leaf(&pck))) == NULL ||
	    ecdsa_verify_raw(pckkey, q.qe_report_raw, SGX_REPORT_BODY_LEN,
	    q.qe_report_sig) != 0) {
		rc = hsm_err(HSM_EPERM, "qe_report_sig: QE report signature "
		    "does not verify with the PCK key");
		goto out;
	}

	/* qe_report_data */
	r.failed_step = SGX_STEP_QE_REPORT_DATA;
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, q.att_key, SGX_ECDSA_KEY_LEN) != 1 ||
	    (q.qe_auth_len > 0 &&
	    EVP_DigestUpdate(md, q.qe_auth, q.qe_auth_len) != 1) ||
	    EVP_DigestFinal_ex(md, hash, &hl) != 1 || hl != 32) {
		rc = hsm_err_ossl(HSM_ECRYPTO, "qe_report_data: SHA-256");
		goto out;
	}
	{
		static const uint8_t zero[32];

		if (CRYPTO_memcmp(q.qe_report.report_data, hash, 32) != 0 ||
		    CRYPTO_memcmp(q.qe_report.report_data + 32, zero,
		    32) != 0) {
			rc = hsm_err(HSM_EPERM, "qe_report_data: QE report "
			    "does not bind the attestation key");
			goto out;
		}
	}

	/* quote_sig */
	r.failed_step = SGX_STEP_QUOTE_SIG;
	if ((attkey = p256_from_raw(q.att_key)) == NULL) {
		rc = hsm_err(HSM_EPERM, "quote_sig: attestation key is not a "
		    "P-256 point");
		goto out;
	}
	if (ecdsa_verify_raw(attkey, q.signed_data, q.signed_len,
	    q.sig) != 0) {
		rc = hsm_err(HSM_EPERM, "quote_sig: %s signature does not "
		    "verify with the attestation key", tdx ? "TD report" :
		    "enclave report");
		goto out;
	}

	/* tcb_info */
	r.failed_step = SGX_STEP_TCB_INFO;
	if ((rc = signed_json(c->tcb_info, c->tcb_info_len, c->tcb_info_sig,
	    &tcbch, SGX_CHAIN_TCB_INFO, &vc, "tcb_info", &ti)) != 0)
		goto out;
	if (jint(ti, "version", &v) != 0 || (v != 2 && v != 3)) {
		rc = hsm_err(HSM_EUNSUPPORTED, "tcb_info: version not 2 or 3");
		goto out;
	}
	/* v3 names the TEE; v2 is SGX only and has no id */
	tmp = jget(ti, "id", json_type_string);
	if (tdx && (v != 3 || tmp == NULL ||
	    strcmp(json_object_get_string(tmp), "TDX") != 0)) {
		rc = hsm_err(HSM_EPERM, "tcb_info: not a TDX TCB Info (id "
		    "TDX, version 3) for a TDX quote");
		goto out;
	}
	if (!tdx && ((v == 3 && tmp == NULL) || (tmp != NULL &&
	    strcmp(json_object_get_string(tmp), "SGX") != 0))) {
		rc = hsm_err(HSM_EPROTO, "tcb_info: id is not SGX");
		goto out;
	}
	if (jget(ti, "tcbType", json_type_int) != NULL &&
	    (jint(ti, "tcbType", &v) != 0 || v != 0)) {
		rc = hsm_err(HSM_EUNSUPPORTED, "tcb_info: tcbType not 0");
		goto out;
	}
	if (hexfield_eq(ti, "fmspc", pt.fmspc, 6) != 0 ||
	    hexfield_eq(ti, "pceId", pt.pceid, 2) != 0) {
		rc = hsm_err(HSM_EPERM, "tcb_info: FMSPC or PCEID does not "
		    "match the PCK certificate");
		goto out;
	}

	/* tdx_module */
	if (tdx) {
		r.failed_step = SGX_STEP_TDX_MODULE;
		if ((rc = tdx_module_check(ti, &q.td, &ident, r.tdx_module_id,
		    sizeof(r.tdx_module_id))) != 0)
			goto out;
	}

	/* qe_identity */
	r.failed_step = SGX_STEP_QE_IDENTITY;
	if ((rc = signed_json(c->qe_identity, c->qe_identity_len,
	    c->qe_identity_sig, &qech, SGX_CHAIN_QE_IDENTITY, &vc,
	    "qe_identity", &qi)) != 0)
		goto out;
	/* TDX quotes come from the TD QE, described by an identity v2 */
	if ((tmp = jget(qi, "id", json_type_string)) == NULL ||
	    strcmp(json_object_get_string(tmp), tdx ? "TD_QE" : "QE") != 0 ||
	    (tdx && (jint(qi, "version", &v) != 0 || v != 2))) {
		rc = hsm_err(tdx ? HSM_EPERM : HSM_EPROTO, "qe_identity: id "
		    "is not %s", tdx ? "TD_QE (version 2)" : "QE");
		goto out;
	}
	{
		uint8_t mb[4], mm[4];

		tmp = jget(qi, "miscselect", json_type_string);
		l = jget(qi, "miscselectMask", json_type_string);
		if (tmp == NULL || l == NULL ||
		    strlen(json_object_get_string(tmp)) != 8 ||
		    strlen(json_object_get_string(l)) != 8 ||
		    hsm_unhex(json_object_get_string(tmp), 8, mb) != 0 ||
		    hsm_unhex(json_object_get_string(l), 8, mm) != 0) {
			rc = hsm_err(HSM_EPROTO, "qe_identity: miscselect");
			goto out;
		}
		/*
		 * The hex text is the field's bytes in report order (as
		 * Intel's QVL reads it), i.e. a little-endian u32.
		 */
		misc = (unsigned)mb[3] << 24 | (unsigned)mb[2] << 16 |
		    (unsigned)mb[1] << 8 | mb[0];
		miscmask = (unsigned)mm[3] << 24 | (unsigned)mm[2] << 16 |
		    (unsigned)mm[1] << 8 | mm[0];
	}
	tmp = jget(qi, "attributes", json_type_string);
	l = jget(qi, "attributesMask", json_type_string);
	if (tmp == NULL || l == NULL ||
	    strlen(json_object_get_string(tmp)) != 32 ||
	    strlen(json_object_get_string(l)) != 32 ||
	    hsm_unhex(json_object_get_string(tmp), 32, attr) != 0 ||
	    hsm_unhex(json_object_get_string(l), 32, amask) != 0 ||
	    jint(qi, "isvprodid", &v) != 0) {
		rc = hsm_err(HSM_EPROTO, "qe_identity: attributes or "
		    "isvprodid malformed");
		goto out;
	}
	if ((q.qe_report.miscselect & miscmask) != (misc & miscmask)) {
		rc = hsm_err(HSM_EPERM, "qe_identity: QE miscselect mismatch");
		goto out;
	}
	for (size_t i = 0; i < 16; i++) {
		if ((q.qe_report.attributes[i] & amask[i]) !=
		    (attr[i] & amask[i])) {
			rc = hsm_err(HSM_EPERM, "qe_identity: QE attributes "
			    "mismatch");
			goto out;
		}
	}
	if (hexfield_eq(qi, "mrsigner", q.qe_report.mrsigner, 32) != 0 ||
	    q.qe_report.isv_prod_id != v) {
		rc = hsm_err(HSM_EPERM, "qe_identity: QE MRSIGNER or ISVPRODID "
		    "mismatch");
		goto out;
	}
	if ((levels = jget(qi, "tcbLevels", json_type_array)) == NULL) {
		rc = hsm_err(HSM_EPROTO, "qe_identity: no tcbLevels");
		goto out;
	}
	/* Below every level: revoked, as in Intel's QVL. */
	r.qe_status = SGX_TCB_REVOKED;
	lvl = NULL;
	n = json_object_array_length(levels);
	for (size_t i = 0; i < n; i++) {
		l = json_object_array_get_idx(levels, i);
		if ((tmp = jget(l, "tcb", json_type_object)) == NULL ||
		    jint(tmp, "isvsvn", &svn) != 0) {
			rc = hsm_err(HSM_EPROTO, "qe_identity: tcbLevels[%zu] "
			    "malformed", i);
			goto out;
		}
		if (q.qe_report.isv_svn >= svn) {
			lvl = l;
			r.qe_status = level_status(l);
			break;
		}
	}
	if (r.qe_status == SGX_TCB_UNKNOWN) {
		rc = hsm_err(HSM_EPROTO, "qe_identity: unknown tcbStatus");
		goto out;
	}

	/* tcb_level */
	r.failed_step = SGX_STEP_TCB_LEVEL;
	if ((rc = tcb_eval(ti, &pt, &q, ident, &r)) != 0)
		goto out;
	if (lvl != NULL)
		add_advisories(lvl, &r);

	r.enclave = q.enclave;	/* zero for TDX */
	r.td = q.td;		/* zero for SGX */
	r.tee_type = q.tee_type;
	r.quote_version = q.version;
	memcpy(r.fmspc, pt.fmspc, sizeof(r.fmspc));
	memcpy(r.pceid, pt.pceid, sizeof(r.pceid));
	r.pcesvn = (uint16_t)pt.pcesvn;
	r.failed_step = SGX_STEP_NONE;
	*res = r;
	rc = 0;
 out:
	if (rc != 0)
		res->failed_step = r.failed_step;
	json_object_put(ti);
	json_object_put(qi);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(attkey);
	sgx_cert_free(&vc.root);
	X509_CRL_free(vc.rcrl);
	X509_CRL_free(vc.pcrl);
	sgx_chain_free(&pck);
	sgx_chain_free(&tcbch);
	sgx_chain_free(&qech);
	sgx_chain_free(&crlch);
	ERR_clear_error();
	return rc;
}
