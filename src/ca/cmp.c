/*
 * cmp.c - the OpenSSL CMP server callbacks of `hsmesh ca serve` (see
 * cmp.h): certificate requests, revocation requests, general messages.
 *
 * A certificate request (ir, cr, p10cr, kur) goes through four steps, each
 * of which may refuse it, cheapest first, so that a refusal costs no
 * signature and no join token:
 *
 *   check_signer    kur: signed by a current certificate, new key
 *   check_evidence  attestation evidence, when the policy asks for it
 *   claim_identity  which SPIFFE ID it gets and what authorised it (the
 *                   join token is checked here and consumed by issue)
 *   issue           sign, then record the certificate with the token's
 *                   consumption and the parent's renewal in one ledger
 *                   transaction; answer with the certificate
 *
 * A retry is answered with what it already got: when the join token was
 * spent, or the certificate to renew was renewed, on a certificate that
 * answered this very transaction (its transactionID) for this very key,
 * that certificate is delivered again. A client whose answer was lost (a
 * replica that died after recording it) asks another replica with the
 * same transaction and gets it; any other reuse is refused as before.
 *
 * Every refusal is logged, answered with a StatusString that says why,
 * and audited.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "attest.h"
#include "audit.h"
#include "ca.h"
#include "cert.h"
#include "cmp.h"
#include "cmpder.h"
#include "err.h"
#include "ledger.h"
#include "log.h"
#include "util.h"

#define OID_IT_CA_CERTS "1.3.6.1.5.5.7.4.17"	/* id-it-caCerts, RFC 9483 4.3.1 */

/* A certificate request on its way through the steps. */
struct certreq {
	int type;			/* BODY_IR, ... */
	const char *op;			/* "ir", "cr", "p10cr", "kur" */
	EVP_PKEY *pub;			/* the key to certify */
	uint8_t spki[HSM_MAX_SPKI];	/* its SubjectPublicKeyInfo as the request carries it */
	size_t spkilen;
	char spki_id[65];
	struct attest_result *ar;	/* the evidence checked, or NULL */
	X509_EXTENSION *ext;		/* what the evidence measured, for the certificate */
	const char *id;			/* the SPIFFE ID it gets */
	char auth[128];			/* what authorised it, for the ledger */
	const char *parent;		/* kur: the serial it renews */
	const char *token_ref;		/* the join token consumed with it */
	X509 *again;			/* a retry: the certificate it already got */
};

/* ---- refusals ---- */

static OSSL_CMP_PKISI *
reject(struct txn *t, int failbit, const char *why)
{
	log_info("refused %s: %s", t->peer, why);
	return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, 1 << failbit, why);
}

/*
 * Reject with the StatusString why, and audit it (the audit reason is
 * audit_why when not NULL), with who asked as far as the message proved it.
 */
static OSSL_CMP_PKISI *
refuse_as(struct txn *t, const char *op, int failbit, const char *why, const char *audit_why)
{
	audit_event(t->s->cfg->audit, "refused", "op", op, "peer", t->peer,
	    "id", t->auth == AUTH_CERT ? t->signer_id : t->auth == AUTH_TOKEN ? t->token_id : NULL,
	    "signer_serial", t->auth == AUTH_CERT ? t->signer_serial : NULL,
	    "token", t->auth == AUTH_TOKEN ? t->ref : NULL,
	    "reason", audit_why != NULL ? audit_why : why, NULL);
	return reject(t, failbit, why);
}

static OSSL_CMP_PKISI *
refuse(struct txn *t, const char *op, int failbit, const char *why)
{
	return refuse_as(t, op, failbit, why, NULL);
}

/* One audit line per attestation decision, with what was measured. */
static void
audit_attest(struct txn *t, const char *op, const struct attest_result *ar, const char *event)
{
	const char *kv[4 + ATTEST_AUDIT_KV + 1] = { "op", op, "peer", t->peer };
	struct attest_audit a;
	size_t n = 4;

	attest_audit_fields(ar, &a);
	for (size_t i = 0; a.kv[i] != NULL; i++)
		kv[n++] = a.kv[i];
	kv[n] = NULL;
	audit_event_kv(t->s->cfg->audit, event, kv);
}

/* The failInfo bit of a signer's refusal: a ledger that could not say is our failure. */
static int
signer_failbit(const struct txn *t)
{
	return t->signer_state == SIGNER_UNVERIFIED ? OSSL_CMP_PKIFAILUREINFO_systemFailure :
	    OSSL_CMP_PKIFAILUREINFO_certRevoked;
}

/* ---- the key to certify ---- */

static int
spki_id_hex(EVP_PKEY *pk, char out[65])
{
	unsigned char *der = NULL, md[32];
	int n = i2d_PUBKEY(pk, &der);

	if (n <= 0)
		return HSM_ECRYPTO;
	SHA256(der, (size_t)n, md);
	OPENSSL_free(der);
	hsm_hex(md, 32, out);
	return 0;
}

/*
 * The request's public key, and its SubjectPublicKeyInfo DER as the
 * request carries it (the bytes attestation evidence must name).
 */
static EVP_PKEY *
request_pubkey(const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, uint8_t spki[HSM_MAX_SPKI],
    size_t *spkilen)
{
	unsigned char *der = NULL, *q;
	const unsigned char *p = spki;
	int n;
	EVP_PKEY *pk = NULL;

	*spkilen = 0;
	if (p10cr != NULL) {
		EVP_PKEY *k = X509_REQ_get0_pubkey((X509_REQ *)p10cr);

		q = spki;
		if (k == NULL || (n = i2d_PUBKEY(k, NULL)) <= 0 || n > HSM_MAX_SPKI ||
		    i2d_PUBKEY(k, &q) != n || !EVP_PKEY_up_ref(k))
			return NULL;
		*spkilen = (size_t)n;
		return k;
	}
	if (crm == NULL)
		return NULL;
	if ((n = i2d_OSSL_CRMF_CERTTEMPLATE(OSSL_CRMF_MSG_get0_tmpl(crm), &der)) <= 0)
		return NULL;
	if (cmp_der_template_spki(der, (size_t)n, spki, HSM_MAX_SPKI, spkilen) == 0 &&
	    cert_pubkey_parse(p, *spkilen, &pk) != 0)
		pk = NULL;
	OPENSSL_free(der);
	return pk;
}

static int
key_acceptable(EVP_PKEY *pk)
{
	if (EVP_PKEY_is_a(pk, "EC")) {
		char group[32];
		size_t gl;

		if (!EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof(group), &gl))
			return 0;
		return strcmp(group, "prime256v1") == 0 || strcmp(group, "secp384r1") == 0;
	}
	return EVP_PKEY_is_a(pk, "RSA") && EVP_PKEY_get_bits(pk) >= 2048;
}

/* The request's key into cr: present, of an accepted type. NULL, or the refusal. */
static OSSL_CMP_PKISI *
request_key(struct txn *t, struct certreq *cr, const OSSL_CRMF_MSG *crm,
    const X509_REQ *p10cr)
{
	if ((cr->pub = request_pubkey(crm, p10cr, cr->spki, &cr->spkilen)) == NULL)
		return refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
		    "request carries no public key");
	if (!key_acceptable(cr->pub))
		return refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badAlg,
		    "key type not accepted (EC P-256/P-384, RSA >= 2048)");
	if (spki_id_hex(cr->pub, cr->spki_id) != 0)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure, "cannot encode the key");
	return NULL;
}

/* ---- the steps of a certificate request ---- */

/* The hex transactionID of t (LEDGER_TXN_MAX digits at most). */
static void
txn_hex(const struct txn *t, char out[LEDGER_TXN_MAX + 1])
{
	size_t n = t->tidlen <= LEDGER_TXN_MAX / 2 ? t->tidlen : LEDGER_TXN_MAX / 2;

	hsm_hex(t->tid, n, out);
}

/*
 * A retry (see the top of this file): the certificate serial, which the
 * request's join token or renewed certificate was spent on, answered this
 * transaction for this key and is still current. Then cr->again holds it
 * and the answer is "accepted"; else NULL (the caller refuses as usual).
 */
static OSSL_CMP_PKISI *
again(struct txn *t, struct certreq *cr, const char *serial)
{
	const struct cmp_server_cfg *cfg = t->s->cfg;
	char txn[LEDGER_TXN_MAX + 1];
	struct ledger_cert lc;
	const unsigned char *p;
	int same;

	if (serial == NULL || serial[0] == '\0' ||
	    ledger_cert_get(cfg->ledger, serial, &lc) != 0)
		return NULL;
	txn_hex(t, txn);
	same = lc.txn[0] != '\0' && strcmp(lc.txn, txn) == 0 &&
	    strcmp(lc.spki_id, cr->spki_id) == 0 && !lc.revoked &&
	    lc.not_after > (int64_t)time(NULL) && !ledger_id_revoked(cfg->ledger, lc.spiffe_id);
	p = lc.der;
	if (same && (cr->again = d2i_X509(NULL, &p, (long)lc.der_len)) == NULL)
		same = 0;
	if (same) {
		audit_event(cfg->audit, "redelivered", "op", cr->op, "peer", t->peer,
		    "id", lc.spiffe_id, "serial", lc.serial, "spki_id", lc.spki_id, NULL);
		log_info("delivered %s serial %s again to %s (a retry of its transaction)",
		    lc.spiffe_id, lc.serial, t->peer);
	}
	ledger_cert_clear(&lc);
	return same ? OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL) : NULL;
}

/*
 * kur: signed by a current certificate of ours (not expired, not
 * revoked, its ID not revoked, and the newest of its renewal chain), for
 * a new key. Other requests pass. NULL, or the refusal.
 */
static OSSL_CMP_PKISI *
check_signer(struct txn *t, struct certreq *cr)
{
	char buf[160], oldspki[65];
	const char *why;

	if (cr->type != BODY_KUR)
		return NULL;
	if (t->auth != AUTH_CERT)
		return refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
		    "kur must be signed by a current certificate");
	if ((why = cmp_signer_refusal(t, buf, sizeof(buf))) != NULL) {
		OSSL_CMP_PKISI *si = t->signer_state == SIGNER_SUPERSEDED ?
		    again(t, cr, t->signer_next) : NULL;

		return si != NULL ? si : refuse(t, cr->op, signer_failbit(t), why);
	}
	if (spki_id_hex(X509_get0_pubkey(t->signer), oldspki) != 0 ||
	    strcmp(oldspki, cr->spki_id) == 0)
		return refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
		    "kur must carry a new key");
	return NULL;
}

/*
 * Attestation evidence, when the policy asks for it (an unprotected
 * request, require: true) or the request carries some: it must verify,
 * pass the policy and bind cr's key; cr->ar and cr->ext are then set.
 * Evidence without a policy is ignored. Decided before any join token is
 * touched. NULL, or the refusal (audited with what was measured).
 */
static OSSL_CMP_PKISI *
check_evidence(struct txn *t, struct certreq *cr)
{
	const struct attest_policy *p = t->s->cfg->attest;

	if (p == NULL) {
		if (t->evidence != NULL)
			log_info("%s: attestation evidence ignored (no attestation policy)", t->peer);
		return NULL;
	}
	if (t->evidence == NULL && t->auth != AUTH_NONE && !p->require)
		return NULL;
	if (t->evidence == NULL)
		return refuse_as(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
		    t->auth == AUTH_NONE ?
		    "enrollment needs a join token (MAC) or attestation evidence" :
		    "attestation evidence required", "no attestation evidence");
	if ((cr->ar = malloc(sizeof(*cr->ar))) == NULL)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure, "out of memory");
	if (attest_check(p, t->ev_type, t->evidence, t->evidence_len, cr->spki, cr->spkilen,
	    t->s->nonce_key, time(NULL), cr->ar) != 0) {
		audit_attest(t, cr->op, cr->ar, "refused");
		return reject(t, OSSL_CMP_PKIFAILUREINFO_badPOP, cr->ar->why);
	}
	/* The certificate records what was measured. */
	if (attest_identity_ext(cr->ar, &cr->ext) != 0)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure,
		    "cannot encode the attested identity");
	audit_attest(t, cr->op, cr->ar, "attested");
	return NULL;
}

/*
 * Which SPIFFE ID the request gets and what authorised it: a kur keeps
 * its signer's ID and names the serial it renews; an unprotected request
 * gets the ID its evidence's policy names; a MAC-protected one the join
 * token's, whose token must still be usable (checked here, consumed by
 * issue in the same transaction as the certificate). The ID must not be
 * revoked. NULL, or the refusal.
 */
static OSSL_CMP_PKISI *
claim_identity(struct txn *t, struct certreq *cr)
{
	struct ledger_token tok;
	char tag[64];
	size_t l;
	int st;

	if (cr->type == BODY_KUR) {
		cr->id = t->signer_id;
		cr->parent = t->signer_serial;
		snprintf(cr->auth, sizeof(cr->auth), "kur:%s", t->signer_serial);
	} else if (t->auth == AUTH_NONE && cr->ar != NULL) {
		cr->id = cr->ar->spiffe_id;
		attest_auth_tag(cr->ar, cr->auth, sizeof(cr->auth));
	} else {
		if (t->auth != AUTH_TOKEN)
			return refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
			    "enrollment needs a join token (MAC)");
		st = ledger_token_check(t->s->cfg->ledger, t->ref, (int64_t)time(NULL));
		/* The ledger was down at the MAC check and is back: the token's ID now. */
		if (st == 0 && t->token_id[0] == '\0' &&
		    (st = ledger_token_lookup(t->s->cfg->ledger, t->ref, &tok)) == 0)
			snprintf(t->token_id, sizeof(t->token_id), "%s", tok.spiffe_id);
		if (st != 0) {
			OSSL_CMP_PKISI *si = NULL;
			char why[300];

			if (st != HSM_EPOLICY && st != HSM_ENOENT) {
				/* The client reads only that: the detail is the operator's. */
				snprintf(why, sizeof(why), "ledger unavailable: %s", hsm_err_msg(st));
				return refuse_as(t, cr->op, OSSL_CMP_PKIFAILUREINFO_systemFailure,
				    "ledger unavailable", why);
			}
			snprintf(why, sizeof(why), "%s", st == HSM_ENOENT ? "unknown join token" :
			    hsm_err_msg(st));
			if (st == HSM_EPOLICY &&
			    ledger_token_lookup(t->s->cfg->ledger, t->ref, &tok) == 0 && tok.used)
				si = again(t, cr, tok.serial);
			return si != NULL ? si : refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badRequest,
			    why);
		}
		cr->id = t->token_id;
		cr->token_ref = t->ref;
		snprintf(cr->auth, sizeof(cr->auth), "token:%s", t->ref);
	}
	if (cr->ar != NULL && t->auth != AUTH_NONE) {
		attest_auth_tag(cr->ar, tag, sizeof(tag));
		l = strlen(cr->auth);
		snprintf(cr->auth + l, sizeof(cr->auth) - l, ",%s", tag);
	}
	if (ledger_id_revoked(t->s->cfg->ledger, cr->id))
		return refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_certRevoked, "identity revoked");
	return NULL;
}

/*
 * Sign and record (cfg->issue: ca_issue). A refusal by the ledger (the
 * token was used, or the parent renewed, by a concurrent request since it
 * was checked) is a refusal; any other failure a systemFailure that costs
 * the workload nothing. The status, with the certificate in cr->again on
 * success.
 */
static OSSL_CMP_PKISI *
issue(struct txn *t, struct certreq *cr)
{
	const struct cmp_server_cfg *cfg = t->s->cfg;
	struct ca_issue_req rq;
	char why[300], serial[SERIAL_HEX_MAX], txn[LEDGER_TXN_MAX + 1];
	X509 *cert = NULL;
	int st, refused = 0;

	memset(&rq, 0, sizeof(rq));
	rq.pub = cr->pub;
	rq.spiffe_id = cr->id;
	rq.ttl = cfg->svid_ttl;
	rq.auth = cr->auth;
	rq.parent = cr->parent;
	rq.token_ref = cr->token_ref;
	txn_hex(t, txn);
	rq.txn = txn;
	rq.now = (int64_t)time(NULL);
	rq.op = cr->op;
	rq.peer = t->peer;
	rq.extra = cr->ext;
	if ((st = cfg->issue(cfg->issue_arg, &rq, &cert, &refused)) != 0) {
		if (refused)
			return refuse(t, cr->op, cr->token_ref != NULL ?
			    OSSL_CMP_PKIFAILUREINFO_badRequest : OSSL_CMP_PKIFAILUREINFO_certRevoked,
			    hsm_err_msg(st));
		snprintf(why, sizeof(why), "issuance failed: %s", hsm_err_msg(st));
		audit_event(cfg->audit, "error", "op", cr->op, "peer", t->peer, "id", cr->id,
		    "reason", why, NULL);
		return reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure, why);
	}
	cert_serial_hex(X509_get0_serialNumber(cert), serial, sizeof(serial));
	log_info("issued %s serial %s to %s (%s)", cr->id, serial, t->peer, cr->auth);
	cr->again = cert;
	return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

/* The answer's certificate, and for an ir the CA certificate in caPubs. */
static void
deliver(struct txn *t, struct certreq *cr, X509 **certOut, STACK_OF(X509) **caPubs)
{
	if (cr->type == BODY_IR) {
		if ((*caPubs = sk_X509_new_null()) == NULL ||
		    !X509_add_cert(*caPubs, t->s->cfg->cacert, X509_ADD_FLAG_UP_REF)) {
			sk_X509_pop_free(*caPubs, X509_free);
			*caPubs = NULL;
		}
	}
	*certOut = cr->again;
	cr->again = NULL;
}

/* ---- callbacks ---- */

static OSSL_CMP_PKISI *
cb_cert_request(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
    const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
    STACK_OF(X509) **chainOut, STACK_OF(X509) **caPubs)
{
	struct txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	struct certreq *cr;
	OSSL_CMP_PKISI *si;

	*certOut = NULL;
	*chainOut = NULL;
	*caPubs = NULL;
	if ((cr = calloc(1, sizeof(*cr))) == NULL)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure, "out of memory");
	cr->type = OSSL_CMP_MSG_get_bodytype(req);
	cr->op = cr->type == BODY_KUR ? "kur" : cr->type == BODY_P10CR ? "p10cr" :
	    cr->type == BODY_CR ? "cr" : "ir";
	if ((si = request_key(t, cr, crm, p10cr)) == NULL &&
	    (si = check_signer(t, cr)) == NULL &&
	    (si = check_evidence(t, cr)) == NULL &&
	    (si = claim_identity(t, cr)) == NULL)
		si = issue(t, cr);
	if (cr->again != NULL)
		deliver(t, cr, certOut, caPubs);
	X509_EXTENSION_free(cr->ext);
	free(cr->ar);
	EVP_PKEY_free(cr->pub);
	free(cr);
	return si;
}

/*
 * rr: signed by a current certificate (not expired, not revoked, its ID
 * not revoked, not renewed already), for a certificate of the same
 * identity. Every refusal is audited.
 */
static OSSL_CMP_PKISI *
cb_rr(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
    const ASN1_INTEGER *serial)
{
	struct txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	struct server *s = t->s;
	struct ledger_cert lc;
	char hex[SERIAL_HEX_MAX], buf[160];
	const char *why;
	int other;

	if (t->auth != AUTH_CERT)
		return refuse(t, "rr", OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
		    "rr must be signed by a current certificate");
	if ((why = cmp_signer_refusal(t, buf, sizeof(buf))) != NULL)
		return refuse(t, "rr", signer_failbit(t), why);
	if (cert_serial_hex(serial, hex, sizeof(hex)) != 0)
		return refuse(t, "rr", OSSL_CMP_PKIFAILUREINFO_badCertId, "no serial number");
	memset(&lc, 0, sizeof(lc));
	if (ledger_cert_get(s->cfg->ledger, hex, &lc) != 0)
		return refuse(t, "rr", OSSL_CMP_PKIFAILUREINFO_badCertId, "unknown certificate");
	/* A workload may revoke its own identity's certificates, nothing else. */
	other = strcmp(lc.spiffe_id, t->signer_id) != 0;
	ledger_cert_clear(&lc);
	if (other)
		return refuse(t, "rr", OSSL_CMP_PKIFAILUREINFO_notAuthorized,
		    "certificate belongs to another identity");
	if (ledger_cert_revoke(s->cfg->ledger, hex, 0, (int64_t)time(NULL)) != 0) {
		audit_event(s->cfg->audit, "error", "op", "rr", "peer", t->peer, "id", t->signer_id,
		    "serial", hex, "reason", "ledger write failed", NULL);
		return reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure, "ledger write failed");
	}
	audit_event(s->cfg->audit, "revoked", "op", "rr", "peer", t->peer, "id", t->signer_id,
	    "serial", hex, NULL);
	log_info("revoked serial %s of %s (rr from %s)", hex, t->signer_id, t->peer);
	return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

/* A genp body of one ITAV (cmp_itav_new). */
static int
genp_one(const char *oid, int vtype, const uint8_t *data, size_t len,
    STACK_OF(OSSL_CMP_ITAV) **out)
{
	OSSL_CMP_ITAV *itav = cmp_itav_new(oid, vtype, data, len);

	if (itav == NULL || (*out = sk_OSSL_CMP_ITAV_new_null()) == NULL ||
	    !sk_OSSL_CMP_ITAV_push(*out, itav)) {
		sk_OSSL_CMP_ITAV_free(*out);
		*out = NULL;
		OSSL_CMP_ITAV_free(itav);
		return 0;
	}
	return 1;
}

/*
 * genm: an attestation nonce (HSM_OID_ATTEST_NONCE, OCTET STRING of 32
 * bytes, evtype.h) when asked for one; otherwise id-it-caCerts (RFC 9483
 * 4.3.1) with our CA certificate.
 */
static int
cb_genm(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const STACK_OF(OSSL_CMP_ITAV) *in,
    STACK_OF(OSSL_CMP_ITAV) **out)
{
	struct txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	unsigned char *der = NULL, *buf = NULL, *p;
	uint8_t nonce[ATTEST_NONCE_LEN];
	int n, total, ok = 0;

	*out = NULL;
	if (t->s->cfg->attest != NULL && cmp_itav_find(in, HSM_OID_ATTEST_NONCE) != NULL) {
		ev_nonce_make(t->s->nonce_key, time(NULL), nonce);
		log_info("attestation nonce for %s", t->peer);
		return genp_one(HSM_OID_ATTEST_NONCE, V_ASN1_OCTET_STRING, nonce, sizeof(nonce), out);
	}
	if (t->auth == AUTH_NONE)
		return 0;
	/* SEQUENCE OF Certificate holding our one CA certificate. */
	if ((n = i2d_X509(t->s->cfg->cacert, &der)) <= 0)
		goto done;
	total = ASN1_object_size(1, n, V_ASN1_SEQUENCE);
	if (total <= 0 || (buf = OPENSSL_malloc((size_t)total)) == NULL)
		goto done;
	p = buf;
	ASN1_put_object(&p, 1, n, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(p, der, (size_t)n);
	ok = genp_one(OID_IT_CA_CERTS, V_ASN1_SEQUENCE, buf, (size_t)total, out);
done:
	OPENSSL_free(der);
	OPENSSL_free(buf);
	return ok;
}

static void
cb_error(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const OSSL_CMP_PKISI *si,
    const ASN1_INTEGER *errorCode, const OSSL_CMP_PKIFREETEXT *errDetails)
{
	struct txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);

	log_info("client %s reported an error", t->peer);
}

static int
cb_certconf(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
    const ASN1_OCTET_STRING *certHash, const OSSL_CMP_PKISI *si)
{
	return 1;
}

static int
cb_pollreq(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
    OSSL_CMP_MSG **certReq, int64_t *check_after)
{
	return 0;	/* we never answer "waiting" */
}

/* ---- the server context ---- */

/* The transaction whose message this thread processes: the library's log lands there. */
static __thread struct txn *log_txn;

void
cmp_log_to(struct txn *t)
{
	log_txn = t;
}

static int
cmp_log_cb(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
	if (level <= OSSL_CMP_LOG_WARNING) {
		if (log_txn != NULL && log_txn->lasterr[0] == '\0')
			snprintf(log_txn->lasterr, sizeof(log_txn->lasterr), "%s", msg);
		log_debug("cmp: %s", msg);
	}
	return 1;
}

OSSL_CMP_SRV_CTX *
cmp_srv_new(struct server *s, struct txn *t)
{
	OSSL_CMP_SRV_CTX *srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);
	OSSL_CMP_CTX *ctx;

	if (srv == NULL)
		return NULL;
	ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(srv);
	if (!OSSL_CMP_SRV_CTX_init(srv, t, cb_cert_request, cb_rr, cb_genm, cb_error, cb_certconf,
	    cb_pollreq) ||
	    !OSSL_CMP_CTX_set1_cert(ctx, s->cfg->cacert) || !OSSL_CMP_CTX_set1_pkey(ctx, s->cfg->cakey) ||
	    !OSSL_CMP_CTX_set_log_cb(ctx, cmp_log_cb) ||
	    !OSSL_CMP_SRV_CTX_set_grant_implicit_confirm(srv, 1) ||
	    !OSSL_CMP_SRV_CTX_set_accept_unprotected(srv, s->cfg->attest != NULL) ||
	    !OSSL_CMP_SRV_CTX_set_send_unprotected_errors(srv, 0)) {
		OSSL_CMP_SRV_CTX_free(srv);
		return NULL;
	}
	return srv;
}
