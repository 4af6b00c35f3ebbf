/*
 * attest_sgx.c - SGX DCAP quotes as attestation evidence (see
 * attest_sgx.h): collateral, the enclave policy, the quote-to-key binding,
 * and what a certificate and the audit log record of a verified quote.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "attest.h"
#include "attest_sgx.h"
#include "config.h"
#include "err.h"
#include "evtype.h"
#include "log.h"
#include "sgxident.h"
#include "spiffe.h"
#include "util.h"

#define COLLATERAL_MAX (1024 * 1024)
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
attest_sgx_collateral_load(const char *path, struct sgx_collateral *c)
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
	/* The PCK CRL is signed by the PCK certificates' CA: pckSignChain.pem is its issuer chain. */
	if (r == 0 && f[6] != NULL && (c->pck_crl_chain = strdup((const char *)f[6])) == NULL) {
		sgx_collateral_free(c);
		r = HSM_ENOMEM;
	}
 out:
	for (int i = 0; i < 7; i++)
		free(f[i]);
	free(pck);
	return r;
}

/* ---- SPIFFE ID template ---- */

int
attest_sgx_expand_id(const char *tmpl, const char *trust_domain, const struct sgx_report_body *b,
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
attest_sgx_evaluate(const struct attest_sgx_policy *sp, const struct attest_policy *p,
    const struct sgx_verify_result *v, const uint8_t *spki, size_t spkilen,
    const uint8_t nonce_key[32], time_t now, struct attest_result *r)
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
	if ((st = ev_nonce_check(nonce_key, b->report_data + 32, now, p->nonce_ttl)) != 0) {
		snprintf(r->why, sizeof(r->why), "%s", hsm_err_msg(st));
		return st;
	}
	if ((b->attributes[0] & SGX_ATTR_DEBUG) != 0 && !sp->allow_debug) {
		snprintf(r->why, sizeof(r->why), "debug enclave refused (allow_debug is false)");
		return HSM_EPOLICY;
	}
	if (sp->n_mrsigner > 0 && !in_list(sp->mrsigner, sp->n_mrsigner, b->mrsigner)) {
		snprintf(r->why, sizeof(r->why), "MRSIGNER not allowed");
		return HSM_EPOLICY;
	}
	if (sp->n_mrenclave > 0 && !in_list(sp->mrenclave, sp->n_mrenclave, b->mrenclave)) {
		snprintf(r->why, sizeof(r->why), "MRENCLAVE not allowed");
		return HSM_EPOLICY;
	}
	if (sp->has_prod_id && b->isv_prod_id != sp->prod_id) {
		snprintf(r->why, sizeof(r->why), "ISV product id %u is not %u", b->isv_prod_id,
		    sp->prod_id);
		return HSM_EPOLICY;
	}
	if (b->isv_svn < sp->min_isv_svn) {
		snprintf(r->why, sizeof(r->why), "ISV SVN %u is below min_isv_svn %u", b->isv_svn,
		    sp->min_isv_svn);
		return HSM_EPOLICY;
	}
	if ((sp->tcb_ok & (1u << v->tcb_status)) == 0) {
		/* The advisories go to the audit log; they can be long. */
		snprintf(r->why, sizeof(r->why), "TCB status %s not accepted",
		    sgx_tcb_status_name(v->tcb_status));
		return HSM_EPOLICY;
	}
	if ((st = attest_sgx_expand_id(sp->id_template, p->trust_domain, b, r->spiffe_id,
	    sizeof(r->spiffe_id))) != 0) {
		snprintf(r->why, sizeof(r->why), "%s", hsm_err_msg(st));
		return HSM_EPOLICY;
	}
	return 0;
}

/* Verify the quote, then the policy (attest_ops.check). */
static int
sgx_check(const void *kp, const struct attest_policy *p, const uint8_t *quote, size_t len,
    const uint8_t *spki, size_t spkilen, const uint8_t nonce_key[32], time_t now,
    struct attest_result *r)
{
	const struct attest_sgx_policy *sp = kp;
	struct sgx_collateral c;
	struct sgx_verify_opts o;
	int st;

	if ((st = attest_sgx_collateral_load(sp->collateral, &c)) != 0) {
		snprintf(r->why, sizeof(r->why), "collateral %s: %s", sp->collateral, hsm_err_msg(st));
		return HSM_EPOLICY;
	}
	memset(&o, 0, sizeof(o));
	o.at = now;
	o.insecure_test_root_pem = sp->test_root_pem;
	o.collateral_grace = sp->collateral_grace;
	st = sgx_verify_quote(quote, len, &c, &o, &r->u.sgx);
	sgx_collateral_free(&c);
	if (st != 0) {
		snprintf(r->why, sizeof(r->why), "quote refused at step %s: %s",
		    sgx_step_name(r->u.sgx.failed_step), hsm_err_msg(st));
		return st;
	}
	r->verified = 1;
	/* Verified only thanks to the grace: say so (the audit line carries it too). */
	if (r->u.sgx.collateral_expired) {
		char when[HSM_TIME_STR];

		log_warn("attestation: collateral %s expired %lld s ago (%s, at %s); accepted within "
		    "collateral_grace %lld s: refresh it", sp->collateral,
		    (long long)r->u.sgx.collateral_expired_by, r->u.sgx.collateral_expired_items,
		    hsm_fmt_time((int64_t)r->u.sgx.collateral_expiry, when),
		    (long long)sp->collateral_grace);
	}
	/* A TD's report is no enclave's: the policy speaks of SGX enclaves only. */
	if (r->u.sgx.tee_type != SGX_TEE_SGX) {
		snprintf(r->why, sizeof(r->why), "a TDX quote is not accepted: the CA certifies "
		    "keys held by SGX enclaves");
		return HSM_EPOLICY;
	}
	return attest_sgx_evaluate(sp, p, &r->u.sgx, spki, spkilen, nonce_key, now, r);
}

/* ---- what is recorded of a verified quote ---- */

static int
sgx_identity_ext(const struct attest_result *r, X509_EXTENSION **out)
{
	return sgxident_ext(&r->u.sgx, out);
}

static void
sgx_audit_fields(const struct attest_result *r, struct attest_audit *a)
{
	const struct sgx_verify_result *v = &r->u.sgx;
	const struct sgx_report_body *b = &v->enclave;
	char hex[65], num[8];

	attest_audit_add(a, "mrenclave", hsm_hex(b->mrenclave, 32, hex));
	attest_audit_add(a, "mrsigner", hsm_hex(b->mrsigner, 32, hex));
	snprintf(num, sizeof(num), "%u", b->isv_prod_id);
	attest_audit_add(a, "isv_prod_id", num);
	snprintf(num, sizeof(num), "%u", b->isv_svn);
	attest_audit_add(a, "isv_svn", num);
	attest_audit_add(a, "debug", (b->attributes[0] & SGX_ATTR_DEBUG) ? "true" : "false");
	attest_audit_add(a, "tcb_status", sgx_tcb_status_name(v->tcb_status));
	if (v->collateral_expired) {
		char by[24], when[HSM_TIME_STR];

		snprintf(by, sizeof(by), "%lld", (long long)v->collateral_expired_by);
		attest_audit_add(a, "collateral_expired_by", by);
		attest_audit_add(a, "collateral_expired_items", v->collateral_expired_items);
		attest_audit_add(a, "collateral_expiry",
		    hsm_fmt_time((int64_t)v->collateral_expiry, when));
	}
	if (v->advisories[0] != '\0')
		attest_audit_add(a, "advisories", v->advisories);
}

static void
sgx_auth_tag(const struct attest_result *r, char *buf, size_t cap)
{
	char mre[65];

	snprintf(buf, cap, "sgx:%.16s", hsm_hex(r->u.sgx.enclave.mrenclave, 32, mre));
}

static void
sgx_describe(const void *kp, const struct attest_policy *p, char *buf, size_t cap)
{
	const struct attest_sgx_policy *sp = kp;

	char grace[64] = "";

	if (sp->collateral_grace > 0)
		snprintf(grace, sizeof(grace), " (expired collateral accepted for %lld s)",
		    (long long)sp->collateral_grace);
	snprintf(buf, cap, "SGX quotes checked against %s%s%s; %s", sp->collateral, grace,
	    sp->test_root_pem != NULL ? " under an INSECURE test root" : "",
	    p->require ? "required for every certificate request" :
	    "optional with a join token or a current certificate");
}

const struct attest_sgx_policy *
attest_sgx_policy_of(const struct attest_policy *p)
{
	return p != NULL ? p->sgx : NULL;
}

/* ---- configuration ---- */

static void
sgx_policy_free(void *kp)
{
	struct attest_sgx_policy *sp = kp;

	if (sp == NULL)
		return;
	free(sp->collateral);
	free(sp->test_root_pem);
	free(sp->mrsigner);
	free(sp->mrenclave);
	free(sp->id_template);
	free(sp);
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

/* The SGX settings of section (attest_ops.policy_load): collateral is required. */
static int
sgx_policy_load(const struct cfg_doc *d, const char *section, const char *trust_domain,
    void **out)
{
	const struct cfg_node *sect = cfg_find(d, section);
	struct attest_sgx_policy *p;
	struct sgx_collateral c;
	struct sgx_report_body zero;
	struct spiffe_id sid;
	char key[96], *root = NULL, id[ATTEST_ID_MAX], why[300];
	uint8_t *buf = NULL;
	size_t len;
	unsigned long long u;
	int r;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return HSM_ENOMEM;
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
	    (r = cfg_get_str(d, K("spiffe_id"), DEFAULT_TEMPLATE, &p->id_template)) != 0)
		goto out;
	/* collateral_grace: a duration; absent (or "0") means none. */
	if (cfg_find(d, K("collateral_grace")) != NULL) {
		const char *g = cfg_find(d, key)->value;

		if (g != NULL && (strcmp(g, "0") == 0 || strcmp(g, "0s") == 0))
			p->collateral_grace = 0;
		else if ((r = cfg_get_duration(d, key, NULL, &p->collateral_grace)) != 0)
			goto out;
	}
	if (p->n_mrsigner == 0 && p->n_mrenclave == 0) {
		r = cfg_err(d, section, "'%s' needs a list of allowed mrsigner or mrenclave values "
		    "(else any enclave would do)", section);
		goto out;
	}
	/* The template must give an ID in our trust domain whatever is measured. */
	memset(&zero, 0, sizeof(zero));
	if ((r = attest_sgx_expand_id(p->id_template, trust_domain, &zero, id, sizeof(id))) != 0 ||
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
	if ((r = attest_sgx_collateral_load(p->collateral, &c)) != 0) {
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
	sgx_policy_free(p);
	return r;
}

const struct attest_ops attest_sgx_ops = {
	.type = EV_SGX,
	.policy_load = sgx_policy_load,
	.policy_free = sgx_policy_free,
	.check = sgx_check,
	.identity_ext = sgx_identity_ext,
	.identity_describe = sgxident_describe,
	.audit_fields = sgx_audit_fields,
	.auth_tag = sgx_auth_tag,
	.describe = sgx_describe,
};
