/*
 * cmp.c - the OpenSSL CMP server callbacks of `hsmesh ca serve` (see
 * cmp.h): certificate requests, revocation requests, general messages.
 *
 * A certificate request (ir, cr, p10cr, kur) goes through four steps, each
 * of which may refuse it, cheapest first, so that a refusal costs no
 * signature and no join token:
 *
 *   check_signer    signed requests: a current certificate; kur: a new key,
 *                   and for a node's kur the workload certificate it renews
 *   check_evidence  attestation evidence, when the policy asks for it
 *   claim_identity  which SPIFFE ID it gets, whether a node's or a
 *                   workload's, and what authorised it: a join token
 *                   (checked here, consumed by issue), evidence, the
 *                   signer's own ID (kur), or a registration entry that
 *                   authorises the signing node (node-protected requests)
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
	const OSSL_CRMF_MSG *crm;	/* the request (NULL for p10cr) */
	const X509_REQ *p10cr;
	const char *id;			/* the SPIFFE ID it gets */
	char auth[LEDGER_AUTH_MAX + 1];	/* what authorised it, for the ledger */
	const char *parent;		/* kur: the serial it renews */
	const char *token_ref;		/* the join token consumed with it */
	X509 *again;			/* a retry: the certificate it already got */
	int kind;			/* enum ledger_kind of the certificate */
	const char *node_id;		/* the node it is issued to, or NULL */
	int64_t ttl;			/* a registration entry's, or 0: svid_ttl */
	char reqid[SPIFFE_ID_MAX + 1];	/* node-protected ir/cr/p10cr: the ID asked for */
	/* A node's kur of one of its workloads: the certificate renewed. */
	int node_kur;
	char old_serial[SERIAL_HEX_MAX];
	char old_id[SPIFFE_ID_MAX + 1];
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

OSSL_CMP_PKISI *
cmp_refuse(struct txn *t, const char *op, int failbit, const char *why)
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
		return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
		    "request carries no public key");
	if (!key_acceptable(cr->pub))
		return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badAlg,
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

/* ---- what a request asks for ---- */

/*
 * The one SPIFFE ID a node-protected request names: its template's (or
 * CSR's) subjectAltName must hold exactly one name, a URI. 0, or a reason.
 */
static const char *
request_uri_id(const struct certreq *cr, char *out, size_t cap)
{
	const STACK_OF(X509_EXTENSION) *exts = NULL;
	STACK_OF(X509_EXTENSION) *owned = NULL;
	GENERAL_NAMES *gens = NULL;
	const GENERAL_NAME *gn;
	const char *why = "the request names no SPIFFE ID (one URI SAN)";
	int type;

	out[0] = '\0';
	if (cr->crm != NULL)
		exts = OSSL_CRMF_CERTTEMPLATE_get0_extensions(OSSL_CRMF_MSG_get0_tmpl(cr->crm));
	else if (cr->p10cr != NULL)
		exts = owned = X509_REQ_get_extensions((X509_REQ *)cr->p10cr);
	if (exts != NULL)
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	if (gens != NULL && sk_GENERAL_NAME_num(gens) == 1 &&
	    (gn = sk_GENERAL_NAME_value(gens, 0)) != NULL) {
		const ASN1_IA5STRING *uri = GENERAL_NAME_get0_value(gn, &type);
		int n = type == GEN_URI ? ASN1_STRING_length(uri) : -1;

		if (n > 0 && (size_t)n < cap &&
		    memchr(ASN1_STRING_get0_data(uri), '\0', (size_t)n) == NULL) {
			memcpy(out, ASN1_STRING_get0_data(uri), (size_t)n);
			out[n] = '\0';
			why = NULL;
		}
	}
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(owned, X509_EXTENSION_free);
	return why;
}

/* A kur's oldCertID serial (hex) into out; 0 when it names one, -1 when absent or unreadable. */
static int
old_cert_serial(const struct certreq *cr, char *out, size_t cap)
{
	OSSL_CRMF_CERTID *cid;

	out[0] = '\0';
	if (cr->crm == NULL || (cid = OSSL_CRMF_MSG_get0_regCtrl_oldCertID(cr->crm)) == NULL)
		return -1;
	return cert_serial_hex(OSSL_CRMF_CERTID_get0_serialNumber(cid), out, cap) == 0 ? 0 : -1;
}

/* What the registration entries of one ID say (entry_scan). */
struct entry_scan {
	const char *node;	/* the node asking, or NULL */
	int node_managed;	/* some entry names nodes for it */
	int self_managed;	/* some entry leaves it to a CMP client */
	int authorised;		/* some entry names node */
	int64_t ttl;		/* the smallest ttl of the entries that apply */
};

static int
scan_one(const struct ledger_entry *e, void *arg)
{
	struct entry_scan *es = arg;
	int applies = 0;

	if (e->self_managed) {
		es->self_managed = 1;
		applies = 1;
	} else {
		es->node_managed = 1;
		if (es->node != NULL && ledger_entry_covers(e, es->node))
			es->authorised = applies = 1;
	}
	if (applies && e->ttl > 0 && (es->ttl == 0 || e->ttl < es->ttl))
		es->ttl = e->ttl;
	return 0;
}

/* The entries of id, for node (may be NULL) into *es. 0, or the refusal (the ledger failed). */
static OSSL_CMP_PKISI *
scan_entries(struct txn *t, struct certreq *cr, const char *id, const char *node,
    struct entry_scan *es)
{
	memset(es, 0, sizeof(*es));
	es->node = node;
	if (ledger_entry_list(t->s->cfg->ledger, id, scan_one, es) != 0)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure,
		    "registration entries unreadable");
	return NULL;
}

/* ---- the steps of a certificate request ---- */

/*
 * A node's kur naming one of its workload certificates (old): that
 * certificate must be ours, a workload's, issued to this very node, and
 * current (not expired, revoked, renewed; its ID not revoked); the new
 * key must differ from its key. NULL, or the refusal.
 */
static OSSL_CMP_PKISI *
check_node_kur(struct txn *t, struct certreq *cr)
{
	struct ledger_cert lc;
	char buf[200], next[LEDGER_SERIAL_MAX + 1] = "";
	const char *why = NULL;
	OSSL_CMP_PKISI *si;
	int fail = OSSL_CMP_PKIFAILUREINFO_certRevoked;

	memset(&lc, 0, sizeof(lc));
	if (ledger_cert_get(t->s->cfg->ledger, cr->old_serial, &lc) != 0)
		return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badCertId,
		    "oldCertID names an unknown certificate");
	if (lc.kind != LEDGER_WORKLOAD || strcmp(lc.node_id, t->signer_id) != 0) {
		snprintf(buf, sizeof(buf), "certificate %s was not issued to this node", cr->old_serial);
		why = buf;
		fail = OSSL_CMP_PKIFAILUREINFO_notAuthorized;
	} else if (lc.not_after <= (int64_t)time(NULL)) {
		why = "the certificate renewed has expired (enroll again)";
	} else if (lc.revoked) {
		why = "the certificate renewed is revoked";
	} else if (lc.superseded_by[0] != '\0') {
		snprintf(buf, sizeof(buf), "certificate already renewed (superseded by serial %s)",
		    lc.superseded_by);
		why = buf;
		snprintf(next, sizeof(next), "%s", lc.superseded_by);
	} else if (ledger_id_revoked(t->s->cfg->ledger, lc.spiffe_id)) {
		why = "identity revoked";
	} else if (strcmp(lc.spki_id, cr->spki_id) == 0) {
		why = "kur must carry a new key";
		fail = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
	}
	snprintf(cr->old_id, sizeof(cr->old_id), "%s", lc.spiffe_id);
	ledger_cert_clear(&lc);
	/* A retry of the transaction that renewed it gets that renewal again. */
	if (next[0] != '\0' && (si = again(t, cr, next)) != NULL)
		return si;
	return why != NULL ? cmp_refuse(t, cr->op, fail, why) : NULL;
}

/*
 * A signed request: by a current certificate of ours (not expired, not
 * revoked, its ID not revoked, and the newest of its renewal chain). An
 * ir/cr/p10cr so signed must be a node's. A kur renews its signer (new
 * key), or, signed by a node, the workload certificate its oldCertID
 * names. An unsigned kur is refused; other unsigned requests pass. NULL,
 * or the refusal.
 */
static OSSL_CMP_PKISI *
check_signer(struct txn *t, struct certreq *cr)
{
	char buf[160], oldspki[65];
	const char *why;

	if (t->auth != AUTH_CERT) {
		if (cr->type == BODY_KUR)
			return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
			    "kur must be signed by a current certificate");
		return NULL;
	}
	if ((why = cmp_signer_refusal(t, buf, sizeof(buf))) != NULL) {
		OSSL_CMP_PKISI *si = cr->type == BODY_KUR && t->signer_state == SIGNER_SUPERSEDED ?
		    again(t, cr, t->signer_next) : NULL;

		return si != NULL ? si : cmp_refuse(t, cr->op, signer_failbit(t), why);
	}
	if (cr->type != BODY_KUR) {
		if (t->signer_kind != LEDGER_NODE)
			return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
			    "enrollment needs a join token (MAC), attestation evidence or the "
			    "signature of an authorised node");
		return NULL;
	}
	if (old_cert_serial(cr, cr->old_serial, sizeof(cr->old_serial)) == 0 &&
	    strcmp(cr->old_serial, t->signer_serial) != 0) {
		if (t->signer_kind != LEDGER_NODE)
			return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badCertId,
			    "kur: oldCertID must name the certificate that signs it");
		cr->node_kur = 1;
		return check_node_kur(t, cr);
	}
	if (spki_id_hex(X509_get0_pubkey(t->signer), oldspki) != 0 ||
	    strcmp(oldspki, cr->spki_id) == 0)
		return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
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

/* "no registration entry authorises node N for ID", audited. */
static OSSL_CMP_PKISI *
refuse_unauthorised(struct txn *t, struct certreq *cr, const char *id)
{
	char why[2 * SPIFFE_ID_MAX + 80];

	snprintf(why, sizeof(why), "no registration entry authorises node %s for %s",
	    t->signer_id, id);
	return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_notAuthorized, why);
}

/*
 * A node-protected request: the workload ID it names (or, for a kur, the
 * ID of the certificate it renews) must be authorised for the signing node
 * by a registration entry. NULL, or the refusal.
 */
static OSSL_CMP_PKISI *
claim_for_node(struct txn *t, struct certreq *cr)
{
	struct entry_scan es;
	OSSL_CMP_PKISI *si;
	const char *why;

	if (cr->node_kur) {
		cr->id = cr->old_id;
		cr->parent = cr->old_serial;
		snprintf(cr->auth, sizeof(cr->auth), "node:%s,kur:%s", t->signer_serial,
		    cr->old_serial);
	} else {
		if ((why = request_uri_id(cr, cr->reqid, sizeof(cr->reqid))) != NULL)
			return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, why);
		if (spiffe_id_check_domain(cr->reqid, t->s->cfg->trust_domain) != 0)
			return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
			    "the request's SPIFFE ID is not a workload ID of this trust domain");
		cr->id = cr->reqid;
		snprintf(cr->auth, sizeof(cr->auth), "node:%s", t->signer_serial);
	}
	if ((si = scan_entries(t, cr, cr->id, t->signer_id, &es)) != NULL)
		return si;
	if (!es.authorised)
		return refuse_unauthorised(t, cr, cr->id);
	cr->kind = LEDGER_WORKLOAD;
	cr->node_id = t->signer_id;
	cr->ttl = es.ttl;
	return NULL;
}

/*
 * A workload ID that registration entries leave to nodes cannot be
 * enrolled or renewed by anything but an authorised node. NULL when id is
 * not node-managed (cr->ttl then a self-managed entry's), or the refusal.
 */
static OSSL_CMP_PKISI *
not_node_managed(struct txn *t, struct certreq *cr, const char *id, const char *what)
{
	struct entry_scan es;
	OSSL_CMP_PKISI *si;
	char why[160];

	if ((si = scan_entries(t, cr, id, NULL, &es)) != NULL)
		return si;
	if (!es.node_managed)  {
		cr->ttl = es.ttl;
		return NULL;
	}
	snprintf(why, sizeof(why), "ID is node-managed: %s must be protected by an authorised "
	    "node", what);
	return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_notAuthorized, why);
}

/*
 * Which SPIFFE ID the request gets, whether a node's or a workload's, and
 * what authorised it:
 *   - signed by a node (ir/cr/p10cr, or a kur naming a workload
 *     certificate): the ID its registration entries authorise
 *     (claim_for_node);
 *   - any other kur keeps its signer's ID and kind; a workload renewing
 *     itself is refused when its identity is node-managed (an entry names
 *     nodes for it, or the signer was issued to a node);
 *   - an unprotected request gets the ID its evidence's policy names (a
 *     node's with identity: node);
 *   - a MAC-protected one the join token's ID and kind (the token must
 *     still be usable: checked here, consumed by issue in the same
 *     transaction as the certificate); a workload token for a
 *     node-managed ID is refused.
 * The ID must not be revoked. NULL, or the refusal.
 */
static OSSL_CMP_PKISI *
claim_identity(struct txn *t, struct certreq *cr)
{
	struct ledger_token tok;
	OSSL_CMP_PKISI *si;
	char tag[64];
	size_t l;
	int st;

	if (t->auth == AUTH_CERT && t->signer_kind == LEDGER_NODE &&
	    (cr->type != BODY_KUR || cr->node_kur)) {
		if ((si = claim_for_node(t, cr)) != NULL)
			return si;
	} else if (cr->type == BODY_KUR) {
		cr->id = t->signer_id;
		cr->parent = t->signer_serial;
		cr->kind = t->signer_kind;
		snprintf(cr->auth, sizeof(cr->auth), "kur:%s", t->signer_serial);
		if (cr->kind == LEDGER_WORKLOAD) {
			if (t->signer_node[0] != '\0')
				return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
				    "ID is node-managed: renewal must be protected by an authorised node");
			if ((si = not_node_managed(t, cr, cr->id, "renewal")) != NULL)
				return si;
		}
	} else if (t->auth == AUTH_NONE && cr->ar != NULL) {
		cr->id = cr->ar->spiffe_id;
		cr->kind = t->s->cfg->attest->node_identity ? LEDGER_NODE : LEDGER_WORKLOAD;
		attest_auth_tag(cr->ar, cr->auth, sizeof(cr->auth));
		if (cr->kind == LEDGER_WORKLOAD &&
		    (si = not_node_managed(t, cr, cr->id, "enrollment")) != NULL)
			return si;
	} else {
		if (t->auth != AUTH_TOKEN)
			return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
			    "enrollment needs a join token (MAC)");
		st = ledger_token_check(t->s->cfg->ledger, t->ref, (int64_t)time(NULL));
		/* The ledger was down at the MAC check and is back: the token's ID now. */
		if (st == 0 && t->token_id[0] == '\0' &&
		    (st = ledger_token_lookup(t->s->cfg->ledger, t->ref, &tok)) == 0) {
			snprintf(t->token_id, sizeof(t->token_id), "%s", tok.spiffe_id);
			t->token_kind = tok.kind;
		}
		if (st != 0) {
			char why[300];

			si = NULL;

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
			return si != NULL ? si : cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_badRequest,
			    why);
		}
		cr->id = t->token_id;
		cr->kind = t->token_kind;
		cr->token_ref = t->ref;
		snprintf(cr->auth, sizeof(cr->auth), "token:%s", t->ref);
		if (cr->kind == LEDGER_WORKLOAD &&
		    (si = not_node_managed(t, cr, cr->id, "enrollment")) != NULL)
			return si;
	}
	if (cr->ar != NULL && t->auth != AUTH_NONE) {
		attest_auth_tag(cr->ar, tag, sizeof(tag));
		l = strlen(cr->auth);
		snprintf(cr->auth + l, sizeof(cr->auth) - l, ",%s", tag);
	}
	if (ledger_id_revoked(t->s->cfg->ledger, cr->id))
		return cmp_refuse(t, cr->op, OSSL_CMP_PKIFAILUREINFO_certRevoked, "identity revoked");
	return NULL;
}

/*
 * Sign and record (cfg->issue: ca_issue). A refusal by the ledger (the
 * token was used, or the parent renewed, by a concurrent request since it
 * was checked) is a refusal; any other failure a systemFailure that costs
 * the workload nothing. The status, with the certificate in cr->again on
 * success (deliver() hands it out).
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
	rq.ttl = cr->ttl <= 0 ? cfg->svid_ttl : cr->ttl < cfg->max_ttl ? cr->ttl : cfg->max_ttl;
	rq.kind = cr->kind;
	rq.node_id = cr->node_id;
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
			return cmp_refuse(t, cr->op, cr->token_ref != NULL ?
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

/*
 * The answer's certificate, and the bundle in the signed body (caPubs):
 * the CA certificate, the chain above it and the other CAs of a rotation.
 * Every answer that carries a certificate carries it (a redelivered one
 * too): how an agent learns a CA being rotated in, at each enrollment and
 * renewal.
 */
static void
deliver(struct txn *t, struct certreq *cr, X509 **certOut, STACK_OF(X509) **caPubs)
{
	const struct cmp_server_cfg *cfg = t->s->cfg;

	if ((*caPubs = sk_X509_new_null()) == NULL ||
	    !X509_add_cert(*caPubs, cfg->cacert, X509_ADD_FLAG_UP_REF) ||
	    !X509_add_certs(*caPubs, cfg->cachain, X509_ADD_FLAG_UP_REF) ||
	    !X509_add_certs(*caPubs, cfg->cabundle, X509_ADD_FLAG_UP_REF)) {
		sk_X509_pop_free(*caPubs, X509_free);
		*caPubs = NULL;
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
	cr->crm = crm;
	cr->p10cr = p10cr;
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
		return cmp_refuse(t, "rr", OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
		    "rr must be signed by a current certificate");
	if ((why = cmp_signer_refusal(t, buf, sizeof(buf))) != NULL)
		return cmp_refuse(t, "rr", signer_failbit(t), why);
	if (cert_serial_hex(serial, hex, sizeof(hex)) != 0)
		return cmp_refuse(t, "rr", OSSL_CMP_PKIFAILUREINFO_badCertId, "no serial number");
	memset(&lc, 0, sizeof(lc));
	if (ledger_cert_get(s->cfg->ledger, hex, &lc) != 0)
		return cmp_refuse(t, "rr", OSSL_CMP_PKIFAILUREINFO_badCertId, "unknown certificate");
	/* A workload may revoke its own identity's certificates, nothing else. */
	other = strcmp(lc.spiffe_id, t->signer_id) != 0;
	ledger_cert_clear(&lc);
	if (other)
		return cmp_refuse(t, "rr", OSSL_CMP_PKIFAILUREINFO_notAuthorized,
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
	if (!OSSL_CMP_SRV_CTX_init(srv, t, cb_cert_request, cb_rr, cmp_genm, cb_error, cb_certconf,
	    cb_pollreq) ||
	    !OSSL_CMP_CTX_set1_cert(ctx, s->cfg->cacert) || !OSSL_CMP_CTX_set1_pkey(ctx, s->cfg->cakey) ||
	    /* Under an operator's root: extraCerts carry the path to it (the root excepted). */
	    (sk_X509_num(s->cfg->cachain) > 0 &&
	    !OSSL_CMP_CTX_set1_untrusted(ctx, s->cfg->cachain)) ||
	    !OSSL_CMP_CTX_set_log_cb(ctx, cmp_log_cb) ||
	    !OSSL_CMP_SRV_CTX_set_grant_implicit_confirm(srv, 1) ||
	    !OSSL_CMP_SRV_CTX_set_accept_unprotected(srv, s->cfg->attest != NULL) ||
	    !OSSL_CMP_SRV_CTX_set_send_unprotected_errors(srv, 0)) {
		OSSL_CMP_SRV_CTX_free(srv);
		return NULL;
	}
	return srv;
}
