/*
 * sgxverify.c - SGX DCAP quote verification: the steps of sgxverify.h in
 * their order, over the quote (sgxquote.h), the certificate chains
 * (sgxchain.h), the PCK certificate's TCB (sgxpck.h) and the collateral's
 * documents (sgxtcb.h).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include "cert.h"
#include "err.h"
#include "sgxchain.h"
#include "sgxcollateral.h"
#include "sgxpck.h"
#include "sgxquote.h"
#include "sgxtcb.h"
#include "sgxverify.h"

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

/* ---- the collateral step ---- */

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
	if ((rc = sgx_json_dates(ti, "tcb_info", &x)) != 0 ||
	    (rc = sgx_json_dates(qi, "qe_identity", &x)) != 0 ||
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

/* The documents' verdict into the result. */
static void
verdict_copy(struct sgx_verify_result *r, const struct sgx_tcb_verdict *v)
{
	_Static_assert(sizeof(r->advisories) == sizeof(v->advisories) &&
	    sizeof(r->tdx_module_id) == sizeof(v->tdx_module_id),
	    "sgx_verify_result and sgx_tcb_verdict");
	r->tcb_status = v->tcb_status;
	r->platform_status = v->platform_status;
	r->qe_status = v->qe_status;
	r->sgx_level_status = v->sgx_level_status;
	r->tdx_module_status = v->tdx_module_status;
	memcpy(r->tdx_module_id, v->tdx_module_id, sizeof(r->tdx_module_id));
	memcpy(r->advisories, v->advisories, sizeof(r->advisories));
}

/* ---- test hook (sgxverify.h) ---- */

int
sgx_tcb_evaluate_unverified(const char *tcb_info, size_t len,
    const uint16_t comp[16], uint16_t pcesvn, const struct sgx_quote *q,
    enum sgx_tcb_status qe_status, struct sgx_verify_result *res)
{
	struct sgx_verify_result r;
	struct sgx_tcb_verdict tv;
	struct json_tokener *tok;
	struct json_object *ti = NULL, *ident = NULL;
	struct sgx_pck_tcb pt;
	int rc;

	memset(res, 0, sizeof(*res));
	memset(&r, 0, sizeof(r));
	memset(&tv, 0, sizeof(tv));
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
	tv.qe_status = qe_status;
	if (q->tee_type == SGX_TEE_TDX) {
		r.failed_step = SGX_STEP_TDX_MODULE;
		if ((rc = sgx_tdx_module_check(ti, &q->td, &ident,
		    tv.tdx_module_id, sizeof(tv.tdx_module_id))) != 0)
			goto out;
	}
	r.failed_step = SGX_STEP_TCB_LEVEL;
	if ((rc = sgx_tcb_level(ti, &pt, q, ident, NULL, &tv)) != 0)
		goto out;
	verdict_copy(&r, &tv);
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

/* ---- the steps ---- */

int
sgx_verify_quote(const uint8_t *quote, size_t len,
    const struct sgx_collateral *c, const struct sgx_verify_opts *opts,
    struct sgx_verify_result *res)
{
	struct sgx_verify_result r;
	struct sgx_tcb_verdict tv;
	struct sgx_quote q;
	struct sgx_pck_tcb pt;
	struct vctx vc;
	struct sgx_chain pck, tcbch, qech, crlch;
	enum sgx_chain_kind pck_kind = SGX_CHAIN_PCK_QUOTE;
	EVP_PKEY *attkey = NULL, *pckkey;
	EVP_MD_CTX *md = NULL;
	struct json_object *ti = NULL, *qi = NULL, *lvl = NULL;
	struct json_object *ident = NULL;
	uint8_t hash[32];
	unsigned int hl = 0;
	int rc, tdx;

	memset(res, 0, sizeof(*res));
	memset(&r, 0, sizeof(r));
	memset(&tv, 0, sizeof(tv));
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
	    (rc = sgx_pck_tcb_parse(sgx_chain_leaf(&pck), &pt)) != 0)
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
	    &tcbch, SGX_CHAIN_TCB_INFO, &vc, "tcb_info", &ti)) != 0 ||
	    (rc = sgx_tcb_info_check(ti, &q, &pt)) != 0)
		goto out;

	/* tdx_module */
	if (tdx) {
		r.failed_step = SGX_STEP_TDX_MODULE;
		if ((rc = sgx_tdx_module_check(ti, &q.td, &ident,
		    tv.tdx_module_id, sizeof(tv.tdx_module_id))) != 0)
			goto out;
	}

	/* qe_identity */
	r.failed_step = SGX_STEP_QE_IDENTITY;
	if ((rc = signed_json(c->qe_identity, c->qe_identity_len,
	    c->qe_identity_sig, &qech, SGX_CHAIN_QE_IDENTITY, &vc,
	    "qe_identity", &qi)) != 0 ||
	    (rc = sgx_qe_identity_check(qi, &q, &lvl, &tv)) != 0)
		goto out;

	/* tcb_level */
	r.failed_step = SGX_STEP_TCB_LEVEL;
	if ((rc = sgx_tcb_level(ti, &pt, &q, ident, lvl, &tv)) != 0)
		goto out;

	verdict_copy(&r, &tv);
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
