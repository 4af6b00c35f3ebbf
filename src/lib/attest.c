/*
 * attest.c - the CA's attestation policy and the quote-to-key binding
 * (see attest.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "attest.h"
#include "config.h"
#include "err.h"
#include "spiffe.h"
#include "util.h"

#define COLLATERAL_MAX (1024 * 1024)
#define NONCE_LABEL "hsmesh attestation nonce v1"
#define NONCE_SKEW 30		/* seconds a replica's clock may run ahead */
#define DEFAULT_TEMPLATE "spiffe://{trust_domain}/sgx/{mrsigner}/{isv_prod_id}"

/* ---- collateral files ---- */

/* Read DIR/NAME; an absent optional file leaves *buf NULL. */
static int
read_in(const char *dir, const char *name, int optional, uint8_t **buf, size_t *len)
{
	char path[4096];
	int r;

	*buf = NULL;
	*len = 0;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return hsm_err(HSM_EINVAL, "collateral path too long");
	r = hsm_read_file(path, COLLATERAL_MAX, buf, len);
	if (r == HSM_ENOENT && optional)
		return 0;
	return r;
}

int
attest_collateral_load(const char *path, struct sgx_collateral *c)
{
	uint8_t *f[7] = { NULL };
	size_t n[7] = { 0 };
	char *pck = NULL;
	int r;

	memset(c, 0, sizeof(*c));
	/* A file is JSON collateral; a directory holds Intel's files. */
	if ((r = hsm_read_file(path, COLLATERAL_MAX, &f[0], &n[0])) == 0) {
		r = sgx_collateral_from_json((const char *)f[0], n[0], c);
		goto out;
	}
	if ((r = read_in(path, "tcbInfo.json", 0, &f[0], &n[0])) != 0 ||
	    (r = read_in(path, "qeIdentity.json", 0, &f[1], &n[1])) != 0 ||
	    (r = read_in(path, "tcbSignChain.pem", 0, &f[2], &n[2])) != 0 ||
	    (r = read_in(path, "rootCaCrl.der", 0, &f[3], &n[3])) != 0 ||
	    (r = read_in(path, "intermediateCaCrl.der", 0, &f[4], &n[4])) != 0 ||
	    (r = read_in(path, "pckCert.pem", 1, &f[5], &n[5])) != 0 ||
	    (r = read_in(path, "pckSignChain.pem", 1, &f[6], &n[6])) != 0)
		goto out;
	if (f[5] != NULL && f[6] != NULL) {
		/* The PCK chain for quotes that do not carry it: leaf, then its CA. */
		if ((pck = malloc(n[5] + n[6] + 2)) == NULL) {
			r = HSM_ENOMEM;
			goto out;
		}
		memcpy(pck, f[5], n[5]);
		pck[n[5]] = '\n';
		memcpy(pck + n[5] + 1, f[6], n[6]);
		pck[n[5] + n[6] + 1] = '\0';
	}
	/* hsm_read_file NUL-terminates: the texts can be passed as they are. */
	r = sgx_collateral_from_intel((const char *)f[0], n[0], (const char *)f[1], n[1],
	    (const char *)f[2], f[3], n[3], f[4], n[4], pck, c);
 out:
	for (int i = 0; i < 7; i++)
		free(f[i]);
	free(pck);
	return r;
}

/* ---- nonces ---- */

void
attest_nonce_key(const uint8_t token_key[32], uint8_t out[32])
{
	unsigned int len = 32;

	HMAC(EVP_sha256(), token_key, 32, (const unsigned char *)NONCE_LABEL,
	    sizeof(NONCE_LABEL) - 1, out, &len);
}

static void
nonce_mac(const uint8_t key[32], const uint8_t ts[8], uint8_t mac[32])
{
	uint8_t msg[sizeof(NONCE_LABEL) - 1 + 8];
	unsigned int len = 32;

	memcpy(msg, NONCE_LABEL, sizeof(NONCE_LABEL) - 1);
	memcpy(msg + sizeof(NONCE_LABEL) - 1, ts, 8);
	HMAC(EVP_sha256(), key, 32, msg, sizeof(msg), mac, &len);
}

void
attest_nonce_make(const uint8_t key[32], time_t now, uint8_t out[ATTEST_NONCE_LEN])
{
	uint64_t t = (uint64_t)now;
	uint8_t mac[32];

	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(t >> (56 - 8 * i));
	nonce_mac(key, out, mac);
	memcpy(out + 8, mac, ATTEST_NONCE_LEN - 8);
}

int
attest_nonce_check(const uint8_t key[32], const uint8_t nonce[ATTEST_NONCE_LEN], time_t now,
    int64_t ttl)
{
	uint8_t mac[32];
	uint64_t t = 0;

	nonce_mac(key, nonce, mac);
	if (CRYPTO_memcmp(mac, nonce + 8, ATTEST_NONCE_LEN - 8) != 0)
		return hsm_err(HSM_EPOLICY, "the quote's nonce was not issued by this CA");
	for (int i = 0; i < 8; i++)
		t = t << 8 | nonce[i];
	if ((int64_t)t > (int64_t)now + NONCE_SKEW)
		return hsm_err(HSM_EPOLICY, "the quote's nonce is from the future");
	if ((int64_t)t + ttl < (int64_t)now)
		return hsm_err(HSM_EPOLICY, "the quote's nonce expired %llds ago (nonce_ttl %llds)",
		    (long long)((int64_t)now - (int64_t)t - ttl), (long long)ttl);
	return 0;
}

/* ---- SPIFFE ID template ---- */

int
attest_expand_id(const char *tmpl, const char *trust_domain, const struct sgx_report_body *b,
    char *out, size_t cap)
{
	size_t o = 0;
	char val[80];
	const char *p = tmpl, *close, *v;

	while (*p != '\0') {
		if (*p != '{') {
			if (o + 1 >= cap)
				return hsm_err(HSM_EINVAL, "SPIFFE ID template expands too long");
			out[o++] = *p++;
			continue;
		}
		if ((close = strchr(p, '}')) == NULL)
			return hsm_err(HSM_EINVAL, "unclosed '{' in SPIFFE ID template");
#define NAME_IS(s) ((size_t)(close - p - 1) == sizeof(s) - 1 && strncmp(p + 1, s, sizeof(s) - 1) == 0)
		if (NAME_IS("trust_domain"))
			v = trust_domain;
		else if (NAME_IS("mrenclave"))
			v = hsm_hex(b->mrenclave, 32, val);
		else if (NAME_IS("mrsigner"))
			v = hsm_hex(b->mrsigner, 32, val);
		else if (NAME_IS("isv_prod_id")) {
			snprintf(val, sizeof(val), "%u", b->isv_prod_id);
			v = val;
		} else if (NAME_IS("isv_svn")) {
			snprintf(val, sizeof(val), "%u", b->isv_svn);
			v = val;
		} else
			return hsm_err(HSM_EINVAL, "unknown name '%.*s' in SPIFFE ID template "
			    "(trust_domain, mrenclave, mrsigner, isv_prod_id, isv_svn)",
			    (int)(close - p - 1 > 40 ? 40 : close - p - 1), p + 1);
#undef NAME_IS
		if (o + strlen(v) >= cap)
			return hsm_err(HSM_EINVAL, "SPIFFE ID template expands too long");
		memcpy(out + o, v, strlen(v));
		o += strlen(v);
		p = close + 1;
	}
	if (o >= cap)
		return hsm_err(HSM_EINVAL, "SPIFFE ID template expands too long");
	out[o] = '\0';
	return 0;
}

/* ---- policy ---- */

static int
in_list(uint8_t (*list)[32], size_t n, const uint8_t v[32])
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(list[i], v, 32) == 0)
			return 1;
	return 0;
}

int
attest_evaluate(const struct attest_policy *p, const struct sgx_verify_result *v,
    const uint8_t *spki, size_t spkilen, const uint8_t nonce_key[32], time_t now,
    struct attest_result *r)
{
	const struct sgx_report_body *b = &v->enclave;
	uint8_t h[32];
	int st;

	r->why[0] = '\0';
	r->spiffe_id[0] = '\0';
	SHA256(spki, spkilen, h);
	if (CRYPTO_memcmp(h, b->report_data, 32) != 0) {
		snprintf(r->why, sizeof(r->why), "the quote's report data does not match the "
		    "request's key (first 32 bytes must be SHA-256 of its SubjectPublicKeyInfo)");
		return HSM_EPERM;
	}
	if ((st = attest_nonce_check(nonce_key, b->report_data + 32, now, p->nonce_ttl)) != 0) {
		snprintf(r->why, sizeof(r->why), "%s", hsm_err_msg(st));
		return st;
	}
	if ((b->attributes[0] & SGX_ATTR_DEBUG) != 0 && !p->allow_debug) {
		snprintf(r->why, sizeof(r->why), "debug enclave refused (allow_debug is false)");
		return HSM_EPOLICY;
	}
	if (p->n_mrsigner > 0 && !in_list(p->mrsigner, p->n_mrsigner, b->mrsigner)) {
		snprintf(r->why, sizeof(r->why), "MRSIGNER not allowed");
		return HSM_EPOLICY;
	}
	if (p->n_mrenclave > 0 && !in_list(p->mrenclave, p->n_mrenclave, b->mrenclave)) {
		snprintf(r->why, sizeof(r->why), "MRENCLAVE not allowed");
		return HSM_EPOLICY;
	}
	if (p->has_prod_id && b->isv_prod_id != p->prod_id) {
		snprintf(r->why, sizeof(r->why), "ISV product id %u is not %u", b->isv_prod_id,
		    p->prod_id);
		return HSM_EPOLICY;
	}
	if (b->isv_svn < p->min_isv_svn) {
		snprintf(r->why, sizeof(r->why), "ISV SVN %u is below min_isv_svn %u", b->isv_svn,
		    p->min_isv_svn);
		return HSM_EPOLICY;
	}
	if ((p->tcb_ok & (1u << v->tcb_status)) == 0) {
		/* The advisories go to the audit log; they can be long. */
		snprintf(r->why, sizeof(r->why), "TCB status %s not accepted",
		    sgx_tcb_status_name(v->tcb_status));
		return HSM_EPOLICY;
	}
	if ((st = attest_expand_id(p->id_template, p->trust_domain, b, r->spiffe_id,
	    sizeof(r->spiffe_id))) != 0) {
		snprintf(r->why, sizeof(r->why), "%s", hsm_err_msg(st));
		return HSM_EPOLICY;
	}
	return 0;
}

int
attest_check(const struct attest_policy *p, const uint8_t *quote, size_t len,
    const uint8_t *spki, size_t spkilen, const uint8_t nonce_key[32], time_t now,
    struct attest_result *r)
{
	struct sgx_collateral c;
	struct sgx_verify_opts o;
	int st;

	memset(r, 0, sizeof(*r));
	if ((st = attest_collateral_load(p->collateral, &c)) != 0) {
		snprintf(r->why, sizeof(r->why), "collateral %s: %s", p->collateral, hsm_err_msg(st));
		return HSM_EPOLICY;
	}
	memset(&o, 0, sizeof(o));
	o.at = now;
	o.insecure_test_root_pem = p->test_root_pem;
	st = sgx_verify_quote(quote, len, &c, &o, &r->v);
	sgx_collateral_free(&c);
	if (st != 0) {
		snprintf(r->why, sizeof(r->why), "quote refused at step %s: %s",
		    sgx_step_name(r->v.failed_step), hsm_err_msg(st));
		return st;
	}
	r->verified = 1;
	/* A TD's report is no enclave's: the policy speaks of SGX enclaves only. */
	if (r->v.tee_type != SGX_TEE_SGX) {
		snprintf(r->why, sizeof(r->why), "a TDX quote is not accepted: the CA certifies "
		    "keys held by SGX enclaves");
		return HSM_EPOLICY;
	}
	return attest_evaluate(p, &r->v, spki, spkilen, nonce_key, now, r);
}

/* ---- the identity in the certificate ---- */

static int
push_any(STACK_OF(ASN1_TYPE) *sk, int type, const void *v, int len)
{
	ASN1_TYPE *t = ASN1_TYPE_new();
	ASN1_STRING *str = NULL;
	ASN1_INTEGER *i = NULL;

	if (t == NULL)
		return 0;
	if (type == V_ASN1_INTEGER) {
		if ((i = ASN1_INTEGER_new()) == NULL || !ASN1_INTEGER_set(i, *(const long *)v))
			goto fail;
		ASN1_TYPE_set(t, type, i);
	} else {
		if ((str = ASN1_STRING_type_new(type)) == NULL || !ASN1_STRING_set(str, v, len))
			goto fail;
		ASN1_TYPE_set(t, type, str);
	}
	if (sk_ASN1_TYPE_push(sk, t) > 0)
		return 1;
	ASN1_TYPE_free(t);
	return 0;
 fail:
	ASN1_INTEGER_free(i);
	ASN1_STRING_free(str);
	ASN1_TYPE_free(t);
	return 0;
}

int
attest_identity_ext(const struct sgx_verify_result *v, X509_EXTENSION **out)
{
	const struct sgx_report_body *b = &v->enclave;
	STACK_OF(ASN1_TYPE) *sk = sk_ASN1_TYPE_new_null();
	const char *status = sgx_tcb_status_name(v->tcb_status);
	long prod = b->isv_prod_id, svn = b->isv_svn;
	unsigned char *der = NULL;
	ASN1_OCTET_STRING *os = NULL;
	ASN1_OBJECT *oid = NULL;
	int n, r = HSM_ECRYPTO;

	*out = NULL;
	if (sk == NULL || !push_any(sk, V_ASN1_OCTET_STRING, b->mrenclave, 32) ||
	    !push_any(sk, V_ASN1_OCTET_STRING, b->mrsigner, 32) ||
	    !push_any(sk, V_ASN1_INTEGER, &prod, 0) || !push_any(sk, V_ASN1_INTEGER, &svn, 0) ||
	    !push_any(sk, V_ASN1_OCTET_STRING, b->attributes, 16) ||
	    !push_any(sk, V_ASN1_UTF8STRING, status, (int)strlen(status)) ||
	    (n = i2d_ASN1_SEQUENCE_ANY(sk, &der)) <= 0 ||
	    (os = ASN1_OCTET_STRING_new()) == NULL || !ASN1_OCTET_STRING_set(os, der, n) ||
	    (oid = OBJ_txt2obj(HSM_OID_SGX_IDENTITY, 1)) == NULL ||
	    (*out = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, os)) == NULL)
		r = hsm_err_ossl(HSM_ECRYPTO, "encoding the SGX identity extension");
	else
		r = 0;
	sk_ASN1_TYPE_pop_free(sk, ASN1_TYPE_free);
	OPENSSL_free(der);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(oid);
	return r;
}

int
attest_identity_describe(X509 *x, char *buf, size_t cap)
{
	ASN1_OBJECT *oid = OBJ_txt2obj(HSM_OID_SGX_IDENTITY, 1);
	X509_EXTENSION *ext;
	const ASN1_OCTET_STRING *os;
	const unsigned char *p;
	STACK_OF(ASN1_TYPE) *sk = NULL;
	ASN1_TYPE *t[6];
	static const int want[6] = { V_ASN1_OCTET_STRING, V_ASN1_OCTET_STRING, V_ASN1_INTEGER,
	    V_ASN1_INTEGER, V_ASN1_OCTET_STRING, V_ASN1_UTF8STRING };
	char mre[65], mrs[65];
	int idx, r = HSM_EPROTO;

	if (oid == NULL)
		return HSM_ECRYPTO;
	idx = X509_get_ext_by_OBJ(x, oid, -1);
	ASN1_OBJECT_free(oid);
	if (idx < 0)
		return 0;
	ext = X509_get_ext(x, idx);
	os = X509_EXTENSION_get_data(ext);
	p = ASN1_STRING_get0_data(os);
	if ((sk = d2i_ASN1_SEQUENCE_ANY(NULL, &p, ASN1_STRING_length(os))) == NULL ||
	    p != ASN1_STRING_get0_data(os) + ASN1_STRING_length(os) || sk_ASN1_TYPE_num(sk) != 6)
		goto out;
	for (int i = 0; i < 6; i++)
		if ((t[i] = sk_ASN1_TYPE_value(sk, i))->type != want[i])
			goto out;
	for (int i = 0; i < ASN1_STRING_length(t[5]->value.utf8string); i++) {
		unsigned char ch = ASN1_STRING_get0_data(t[5]->value.utf8string)[i];

		if (ch < 0x20 || ch > 0x7e)
			goto out;	/* never echo control bytes to a terminal */
	}
	if (ASN1_STRING_length(t[0]->value.octet_string) != 32 ||
	    ASN1_STRING_length(t[1]->value.octet_string) != 32 ||
	    ASN1_STRING_length(t[4]->value.octet_string) != 16)
		goto out;
	snprintf(buf, cap, "MRENCLAVE %s, MRSIGNER %s, ISV product %ld, SVN %ld, %s enclave, TCB %.*s",
	    hsm_hex(ASN1_STRING_get0_data(t[0]->value.octet_string), 32, mre),
	    hsm_hex(ASN1_STRING_get0_data(t[1]->value.octet_string), 32, mrs),
	    ASN1_INTEGER_get(t[2]->value.integer), ASN1_INTEGER_get(t[3]->value.integer),
	    (ASN1_STRING_get0_data(t[4]->value.octet_string)[0] & SGX_ATTR_DEBUG) ? "DEBUG" :
	    "production", ASN1_STRING_length(t[5]->value.utf8string) > 40 ? 40 :
	    ASN1_STRING_length(t[5]->value.utf8string),
	    (const char *)ASN1_STRING_get0_data(t[5]->value.utf8string));
	r = 1;
 out:
	sk_ASN1_TYPE_pop_free(sk, ASN1_TYPE_free);
	return r;
}

/* ---- configuration ---- */

void
attest_policy_free(struct attest_policy *p)
{
	if (p == NULL)
		return;
	free(p->collateral);
	free(p->test_root_pem);
	free(p->mrsigner);
	free(p->mrenclave);
	free(p->id_template);
	free(p->trust_domain);
	free(p);
}

/* A list of 64-hex-digit measurements at key. */
static int
load_hashes(const struct cfg_doc *d, const struct cfg_node *sect, const char *section,
    const char *key, uint8_t (**out)[32], size_t *n)
{
	const struct cfg_node *seq, *it;
	const char *v;
	size_t cnt = 0;
	char name[96];
	int r;

	*out = NULL;
	*n = 0;
	if ((r = cfg_node_list(d, sect, section, key, &seq)) != 0 || seq == NULL)
		return r;
	for (it = seq->child; it != NULL; it = it->next)
		cnt++;
	if (cnt == 0)
		return 0;
	if ((*out = calloc(cnt, 32)) == NULL)
		return HSM_ENOMEM;
	snprintf(name, sizeof(name), "%s.%s", section, key);
	for (it = seq->child; it != NULL; it = it->next) {
		if ((r = cfg_node_value(d, it, name, &v)) != 0)
			return r;
		if (strlen(v) != 64 || hsm_unhex(v, 64, (*out)[*n]) != 0)
			return cfg_node_err(d, it, "'%s' entries must be 64 hex digits, not '%.70s'",
			    name, v);
		(*n)++;
	}
	return 0;
}

static int
load_statuses(const struct cfg_doc *d, const struct cfg_node *sect, const char *section,
    unsigned *mask)
{
	const struct cfg_node *seq, *it;
	const char *v;
	char name[96];
	int r, found;

	*mask = 1u << SGX_TCB_UP_TO_DATE;
	if ((r = cfg_node_list(d, sect, section, "tcb_status", &seq)) != 0 || seq == NULL)
		return r;
	*mask = 0;
	snprintf(name, sizeof(name), "%s.tcb_status", section);
	for (it = seq->child; it != NULL; it = it->next) {
		if ((r = cfg_node_value(d, it, name, &v)) != 0)
			return r;
		found = 0;
		for (int s = SGX_TCB_UP_TO_DATE; s <= SGX_TCB_REVOKED; s++)
			if (strcmp(v, sgx_tcb_status_name((enum sgx_tcb_status)s)) == 0) {
				if (s == SGX_TCB_REVOKED)
					return cfg_node_err(d, it, "'%s': a Revoked TCB is never "
					    "accepted", name);
				*mask |= 1u << s;
				found = 1;
			}
		if (!found)
			return cfg_node_err(d, it, "'%s': unknown TCB status '%.40s' (UpToDate, "
			    "SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, "
			    "OutOfDate, OutOfDateConfigurationNeeded)", name, v);
	}
	if (*mask == 0)
		return cfg_node_err(d, seq, "'%s' accepts no status", name);
	return 0;
}

int
attest_policy_load(const struct cfg_doc *d, const char *section, const char *trust_domain,
    struct attest_policy **out)
{
	const struct cfg_node *sect = cfg_find(d, section);
	struct attest_policy *p;
	struct sgx_collateral c;
	struct sgx_report_body zero;
	struct spiffe_id sid;
	char key[96], *root = NULL, id[2049], why[300];
	uint8_t *buf = NULL;
	size_t len;
	unsigned long long u;
	int r;

	*out = NULL;
	if (sect == NULL)
		return 0;
	if (sect->type != CFG_MAP)
		return cfg_err(d, section, "'%s' must be a mapping", section);
	if ((p = calloc(1, sizeof(*p))) == NULL || (p->trust_domain = strdup(trust_domain)) == NULL) {
		attest_policy_free(p);
		return HSM_ENOMEM;
	}
#define K(s) (snprintf(key, sizeof(key), "%s.%s", section, s), key)
	if ((r = cfg_require(d, K("collateral"))) != 0 ||
	    (r = cfg_get_path(d, K("collateral"), NULL, &p->collateral)) != 0 ||
	    (r = cfg_get_path(d, K("insecure_test_root"), NULL, &root)) != 0 ||
	    (r = load_hashes(d, sect, section, "mrsigner", &p->mrsigner, &p->n_mrsigner)) != 0 ||
	    (r = load_hashes(d, sect, section, "mrenclave", &p->mrenclave, &p->n_mrenclave)) != 0 ||
	    (r = load_statuses(d, sect, section, &p->tcb_ok)) != 0 ||
	    (r = cfg_get_uint(d, K("min_isv_svn"), 0, 0, 65535, &u)) != 0)
		goto out;
	p->min_isv_svn = (uint16_t)u;
	if (cfg_find(d, K("isv_prod_id")) != NULL) {
		if ((r = cfg_get_uint(d, key, 0, 0, 65535, &u)) != 0)
			goto out;
		p->has_prod_id = 1;
		p->prod_id = (uint16_t)u;
	}
	if ((r = cfg_get_bool(d, K("allow_debug"), 0, &p->allow_debug)) != 0 ||
	    (r = cfg_get_bool(d, K("require"), 0, &p->require)) != 0 ||
	    (r = cfg_get_duration(d, K("nonce_ttl"), "5m", &p->nonce_ttl)) != 0 ||
	    (r = cfg_get_str(d, K("spiffe_id"), DEFAULT_TEMPLATE, &p->id_template)) != 0)
		goto out;
	if (p->n_mrsigner == 0 && p->n_mrenclave == 0) {
		r = cfg_err(d, section, "'%s' needs a list of allowed mrsigner or mrenclave values "
		    "(else any enclave would do)", section);
		goto out;
	}
	if (p->nonce_ttl <= 0 || p->nonce_ttl > 3600) {
		r = cfg_err(d, K("nonce_ttl"), "'%s' must be from 1s to 1h", key);
		goto out;
	}
	/* The template must give an ID in our trust domain whatever is measured. */
	memset(&zero, 0, sizeof(zero));
	if ((r = attest_expand_id(p->id_template, trust_domain, &zero, id, sizeof(id))) != 0 ||
	    (r = spiffe_id_parse(id, &sid)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		r = cfg_err(d, K("spiffe_id"), "'%s': %s", key, why);
		goto out;
	}
	if (strcmp(sid.trust_domain, trust_domain) != 0 || sid.path[0] == '\0') {
		r = cfg_err(d, K("spiffe_id"), "'%s' must name a workload in trust domain %s",
		    key, trust_domain);
		goto out;
	}
	if (root != NULL) {
		if ((r = hsm_read_file(root, 1024 * 1024, &buf, &len)) != 0) {
			snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
			r = cfg_err(d, K("insecure_test_root"), "'%s': %s", key, why);
			goto out;
		}
		p->test_root_pem = (char *)buf;	/* NUL-terminated by hsm_read_file */
		buf = NULL;
	}
	if ((r = attest_collateral_load(p->collateral, &c)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		r = cfg_err(d, K("collateral"), "'%s' %s: %s", key, p->collateral, why);
		goto out;
	}
	sgx_collateral_free(&c);
#undef K
	*out = p;
	p = NULL;
	r = 0;
 out:
	free(root);
	free(buf);
	attest_policy_free(p);
	return r == 0 || r == HSM_ENOMEM ? r : HSM_ECONFIG;
}
