/*
 * ca_cmp.c - the CMPv2 issuer (RFC 4210, Lightweight CMP profile RFC 9483)
 * over HTTP (RFC 6712), built on OpenSSL's OSSL_CMP_SRV_CTX.
 *
 * Authentication:
 *   ir/cr/p10cr  password-based MAC with a one-time join token: senderKID
 *                is the token's REF; the token, not the request, decides
 *                the SPIFFE ID; the token is consumed atomically.
 *   kur, rr      signed by a current certificate of ours, sent as the first
 *                extraCert; it must be in the ledger byte for byte, not
 *                expired, not revoked, its ID not revoked.
 *   genm         either of the above; answered with the CA certificates.
 *
 * Attestation (attest.h, when ca.yaml has "attestation:"): an ir, cr,
 * p10cr or kur may carry an SGX quote in the header's generalInfo; it must
 * verify, satisfy the policy and bind the request's key and a fresh nonce,
 * or the request is refused before its join token is consumed. An
 * UNPROTECTED ir/cr/p10cr is then accepted when its quote passes: the
 * policy's SPIFFE ID template, fed by the measured values, names the
 * identity. An unprotected genm asking for HSM_OID_ATTEST_NONCE gets a
 * nonce; nothing else unprotected is answered but with an error.
 *
 * What OpenSSL 3.0 leaves to us (DESIGN.md): there is no getter for the
 * header's protectionAlg, senderKID or extraCerts (cmpder.c walks the
 * DER); one OSSL_CMP_SRV_CTX carries one transaction, so contexts live in
 * a map keyed by transactionID until the transaction ends or expires; we
 * check a MAC ourselves before the library sees the secret, and a request
 * whose MAC fails (or whose REF is unknown: a random secret makes both
 * cases identical) is answered by a fresh context that holds no secret,
 * so no error is ever protected with the token's secret (no offline
 * guessing oracle); for kur/rr, pinning the signer certificate makes the
 * library check exactly that certificate's signature and nothing else, so
 * the path, expiry and revocation are checked here.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "attest.h"
#include "audit.h"
#include "ca_cmp.h"
#include "cert.h"
#include "cmpder.h"
#include "err.h"
#include "http.h"
#include "keytypes.h"
#include "ledger.h"
#include "log.h"
#include "netaddr.h"
#include "util.h"

#define CMP_PATH "/.well-known/cmp"
#define TXN_MAX 4096
#define TXN_TTL_MS 60000
#define IO_TIMEOUT_S 10

/* PKIBody choice numbers (RFC 4210 5.1.2); OpenSSL 3.0 does not export them all. */
enum {
	BODY_IR = 0, BODY_CR = 2, BODY_P10CR = 4, BODY_KUR = 7, BODY_RR = 11, BODY_RP = 12,
	BODY_PKICONF = 19, BODY_GENP = 22, BODY_ERROR = 23,
};

enum auth { AUTH_NONE, AUTH_TOKEN, AUTH_CERT };
enum signer_state { SIGNER_OK, SIGNER_EXPIRED, SIGNER_REVOKED, SIGNER_ID_REVOKED };

struct server;

struct txn {
	struct txn *next;
	struct server *s;
	uint8_t tid[64];
	size_t tidlen;
	OSSL_CMP_SRV_CTX *srv;
	uint64_t expires;
	int busy;
	/* State of the message being processed (valid while busy). */
	enum auth auth;
	char ref[HSM_MAX_LABEL + 1];		/* AUTH_TOKEN */
	char token_id[2049];
	X509 *signer;				/* AUTH_CERT */
	enum signer_state signer_state;
	char signer_serial[80];
	char signer_id[2049];
	const char *peer;
	const uint8_t *quote;			/* generalInfo SGX quote, or NULL */
	size_t quotelen;
	char lasterr[256];			/* captured from the library's log */
};

struct server {
	const struct cmp_server_cfg *cfg;
	int lfd;
	pthread_mutex_t mu;
	struct txn *txns;
	int ntxns;
	uint8_t nonce_key[32];			/* attestation nonces (attest.h) */
	volatile sig_atomic_t stop;
};

void
cmp_token_secret(const uint8_t key[32], const char *ref, char secret[33])
{
	uint8_t mac[32];
	unsigned int len = sizeof(mac);
	char hex[65];

	HMAC(EVP_sha256(), key, 32, (const unsigned char *)ref, strlen(ref), mac, &len);
	hsm_hex(mac, 16, hex);
	memcpy(secret, hex, 33);
	OPENSSL_cleanse(mac, sizeof(mac));
	OPENSSL_cleanse(hex, sizeof(hex));
}

/* ---- helpers ---- */

static OSSL_CMP_PKISI *
reject(struct txn *t, int failbit, const char *why)
{
	log_info("refused %s: %s", t->peer, why);
	return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, 1 << failbit, why);
}

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

static void
log_cb_capture(struct txn *t, const char *msg)
{
	if (t != NULL && t->lasterr[0] == '\0')
		snprintf(t->lasterr, sizeof(t->lasterr), "%s", msg);
}

static __thread struct txn *cur_txn;

static int
cmp_log_cb(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
	if (level <= OSSL_CMP_LOG_WARNING) {
		log_cb_capture(cur_txn, msg);
		log_debug("cmp: %s", msg);
	}
	return 1;
}

/* ---- callbacks ---- */

/*
 * The request's public key, and its SubjectPublicKeyInfo DER as the
 * request carries it (the bytes an attestation quote must name).
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
	if (cmp_der_template_spki(der, (size_t)n, spki, HSM_MAX_SPKI, spkilen) == 0)
		pk = d2i_PUBKEY(NULL, &p, (long)*spkilen);
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

/* One audit line per attestation decision, with what was measured. */
static void
audit_attest(struct server *s, struct txn *t, const char *what, const struct attest_result *ar,
    const char *event)
{
	const char *kv[4 + ATTEST_AUDIT_KV + 1] = { "op", what, "peer", t->peer };
	struct attest_audit a;
	size_t n = 4;

	attest_audit_fields(ar, &a);
	for (size_t i = 0; a.kv[i] != NULL; i++)
		kv[n++] = a.kv[i];
	kv[n] = NULL;
	audit_event_kv(s->cfg->audit, event, kv);
}

static OSSL_CMP_PKISI *
cb_cert_request(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
    const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
    STACK_OF(X509) **chainOut, STACK_OF(X509) **caPubs)
{
	struct txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	struct server *s = t->s;
	int type = OSSL_CMP_MSG_get_bodytype(req), st;
	EVP_PKEY *pub = NULL;
	X509 *cert = NULL;
	OSSL_CMP_PKISI *si = NULL;
	char auth[128], serial[80], spkiid[65], oldspki[65];
	const char *id, *parent = NULL, *what;
	int64_t consumed_at = 0;
	uint8_t spki[HSM_MAX_SPKI];
	size_t spkilen;
	struct attest_result *ar = NULL;
	X509_EXTENSION *ext = NULL;
	int attested = 0;

	*certOut = NULL;
	*chainOut = NULL;
	*caPubs = NULL;
	what = type == BODY_KUR ? "kur" : type == BODY_P10CR ? "p10cr" :
	    type == BODY_CR ? "cr" : "ir";
	if ((pub = request_pubkey(crm, p10cr, spki, &spkilen)) == NULL)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "request carries no public key");
	if (!key_acceptable(pub)) {
		si = reject(t, OSSL_CMP_PKIFAILUREINFO_badAlg, "key type not accepted (EC P-256/P-384, RSA >= 2048)");
		goto out;
	}
	spki_id_hex(pub, spkiid);

	/* The signer of a kur, before any evidence is weighed. */
	if (type == BODY_KUR) {
		if (t->auth != AUTH_CERT) {
			si = reject(t, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "kur must be signed by a current certificate");
			goto out;
		}
		if (t->signer_state != SIGNER_OK) {
			si = reject(t, OSSL_CMP_PKIFAILUREINFO_certRevoked,
			    t->signer_state == SIGNER_EXPIRED ? "certificate expired" :
			    t->signer_state == SIGNER_REVOKED ? "certificate revoked" : "identity revoked");
			audit_event(s->cfg->audit, "refused", "op", what, "peer", t->peer, "id", t->signer_id,
			    "old_serial", t->signer_serial, "reason", "signer not current", NULL);
			goto out;
		}
		spki_id_hex(X509_get0_pubkey(t->signer), oldspki);
		if (strcmp(oldspki, spkiid) == 0) {
			si = reject(t, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "kur must carry a new key");
			goto out;
		}
	}

	/* Evidence next: a refusal must not cost a join token. */
	if (s->cfg->attest != NULL &&
	    (t->quote != NULL || t->auth == AUTH_NONE || s->cfg->attest->require)) {
		if (t->quote == NULL) {
			si = reject(t, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, t->auth == AUTH_NONE ?
			    "enrollment needs a join token (MAC) or attestation evidence" :
			    "attestation evidence required");
			audit_event(s->cfg->audit, "refused", "op", what, "peer", t->peer, "reason",
			    "no attestation evidence", NULL);
			goto out;
		}
		if ((ar = malloc(sizeof(*ar))) == NULL) {
			si = reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure, "out of memory");
			goto out;
		}
		if (attest_check(s->cfg->attest, EV_SGX, t->quote, t->quotelen, spki, spkilen,
		    s->nonce_key, time(NULL), ar) != 0) {
			si = reject(t, OSSL_CMP_PKIFAILUREINFO_badPOP, ar->why);
			audit_attest(s, t, what, ar, "refused");
			goto out;
		}
		/* The certificate records what was measured. */
		if (attest_identity_ext(ar, &ext) != 0) {
			si = reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure,
			    "cannot encode the SGX identity");
			goto out;
		}
		attested = 1;
		audit_attest(s, t, what, ar, "attested");
	} else if (t->quote != NULL) {
		log_info("%s: attestation evidence ignored (no attestation policy)", t->peer);
	}

	if (type == BODY_KUR) {
		id = t->signer_id;
		parent = t->signer_serial;
		snprintf(auth, sizeof(auth), "kur:%s", t->signer_serial);
	} else if (t->auth == AUTH_NONE && attested) {
		id = ar->spiffe_id;
		attest_auth_tag(ar, auth, sizeof(auth));
	} else {
		if (t->auth != AUTH_TOKEN) {
			si = reject(t, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "enrollment needs a join token (MAC)");
			goto out;
		}
		consumed_at = (int64_t)time(NULL);
		if ((st = ledger_token_consume(s->cfg->ledger, t->ref, consumed_at)) != 0) {
			const char *why = st == HSM_ENOENT ? "unknown join token" : hsm_err_msg(st);

			si = reject(t, OSSL_CMP_PKIFAILUREINFO_badRequest, why);
			audit_event(s->cfg->audit, "refused", "op", what, "peer", t->peer, "token", t->ref,
			    "reason", why, NULL);
			goto out;
		}
		id = t->token_id;
		snprintf(auth, sizeof(auth), "token:%s", t->ref);
	}
	if (attested && t->auth != AUTH_NONE) {
		char tag[64];
		size_t l = strlen(auth);

		attest_auth_tag(ar, tag, sizeof(tag));
		snprintf(auth + l, sizeof(auth) - l, ",%s", tag);
	}
	if (ledger_id_revoked(s->cfg->ledger, id)) {
		si = reject(t, OSSL_CMP_PKIFAILUREINFO_certRevoked, "identity revoked");
		goto out;
	}
	if ((st = s->cfg->issue(s->cfg->issue_arg, pub, id, s->cfg->svid_ttl, auth, parent, what,
	    t->peer, ext, &cert)) != 0) {
		char why[300];

		snprintf(why, sizeof(why), "issuance failed: %s", hsm_err_msg(st));
		/* A failure of ours must not cost the workload its one-time token. */
		if (consumed_at != 0)
			(void)ledger_token_unconsume(s->cfg->ledger, t->ref, consumed_at);
		si = reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure, why);
		audit_event(s->cfg->audit, "error", "op", what, "peer", t->peer, "id", id, "reason", why, NULL);
		goto out;
	}
	cert_serial_hex(X509_get0_serialNumber(cert), serial, sizeof(serial));
	log_info("issued %s serial %s to %s (%s)", id, serial, t->peer, auth);
	if (type == BODY_IR) {
		if ((*caPubs = sk_X509_new_null()) == NULL || !X509_add_cert(*caPubs, s->cfg->cacert, X509_ADD_FLAG_UP_REF)) {
			sk_X509_pop_free(*caPubs, X509_free);
			*caPubs = NULL;
		}
	}
	*certOut = cert;
	cert = NULL;
	si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
out:
	X509_EXTENSION_free(ext);
	free(ar);
	X509_free(cert);
	EVP_PKEY_free(pub);
	return si;
}

static OSSL_CMP_PKISI *
cb_rr(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
    const ASN1_INTEGER *serial)
{
	struct txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
	struct server *s = t->s;
	struct ledger_cert lc;
	char hex[80];
	int st;
	OSSL_CMP_PKISI *si;

	if (t->auth != AUTH_CERT || t->signer_state == SIGNER_EXPIRED)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
		    "rr must be signed by a current certificate");
	if (cert_serial_hex(serial, hex, sizeof(hex)) != 0)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_badCertId, "no serial number");
	memset(&lc, 0, sizeof(lc));
	if ((st = ledger_cert_get(s->cfg->ledger, hex, &lc)) != 0)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_badCertId, "unknown certificate");
	/* A workload may revoke its own identity's certificates, nothing else. */
	if (strcmp(lc.spiffe_id, t->signer_id) != 0) {
		ledger_cert_clear(&lc);
		return reject(t, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "certificate belongs to another identity");
	}
	ledger_cert_clear(&lc);
	if ((st = ledger_cert_revoke(s->cfg->ledger, hex, 0, (int64_t)time(NULL))) != 0)
		return reject(t, OSSL_CMP_PKIFAILUREINFO_systemFailure, "ledger write failed");
	audit_event(s->cfg->audit, "revoked", "op", "rr", "peer", t->peer, "id", t->signer_id,
	    "serial", hex, NULL);
	log_info("revoked serial %s of %s (rr from %s)", hex, t->signer_id, t->peer);
	si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
	return si;
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
 * bytes, attest.h) when asked for one; otherwise id-it-caCerts (RFC 9483
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
	ok = genp_one("1.3.6.1.5.5.7.4.17", V_ASN1_SEQUENCE, buf, (size_t)total, out);
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

/* ---- transactions ---- */

static OSSL_CMP_SRV_CTX *
srv_new(struct server *s, struct txn *t)
{
	OSSL_CMP_SRV_CTX *srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);
	OSSL_CMP_CTX *ctx;

	if (srv == NULL)
		return NULL;
	ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(srv);
	if (!OSSL_CMP_SRV_CTX_init(srv, t, cb_cert_request, cb_rr, cb_genm, cb_error, cb_certconf, cb_pollreq) ||
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

static void
txn_free(struct txn *t)
{
	if (t == NULL)
		return;
	OSSL_CMP_SRV_CTX_free(t->srv);
	X509_free(t->signer);
	OPENSSL_clear_free(t, sizeof(*t));
}

/* Find the transaction or make one; it comes back busy. NULL when full or busy. */
static struct txn *
txn_get(struct server *s, const ASN1_OCTET_STRING *tid, int *busy)
{
	struct txn *t, **pp;
	uint64_t now = hsm_now_ms();

	*busy = 0;
	if (tid == NULL || tid->length <= 0 || tid->length > (int)sizeof(t->tid))
		return NULL;
	pthread_mutex_lock(&s->mu);
	for (pp = &s->txns; (t = *pp) != NULL;) {
		if (!t->busy && t->expires < now) {	/* sweep */
			*pp = t->next;
			s->ntxns--;
			txn_free(t);
			continue;
		}
		if (t->tidlen == (size_t)tid->length && memcmp(t->tid, tid->data, t->tidlen) == 0)
			break;
		pp = &t->next;
	}
	if (t != NULL) {
		if (t->busy) {
			*busy = 1;
			t = NULL;
		} else {
			t->busy = 1;
		}
		pthread_mutex_unlock(&s->mu);
		return t;
	}
	if (s->ntxns >= TXN_MAX || (t = OPENSSL_zalloc(sizeof(*t))) == NULL) {
		pthread_mutex_unlock(&s->mu);
		return NULL;
	}
	t->s = s;
	t->tidlen = (size_t)tid->length;
	memcpy(t->tid, tid->data, t->tidlen);
	t->busy = 1;
	t->next = s->txns;
	s->txns = t;
	s->ntxns++;
	pthread_mutex_unlock(&s->mu);
	if ((t->srv = srv_new(s, t)) == NULL) {
		pthread_mutex_lock(&s->mu);
		t->busy = 0;
		t->expires = 0;
		pthread_mutex_unlock(&s->mu);
		return NULL;
	}
	return t;
}

/* Release t; end it now when the transaction is over. */
static void
txn_put(struct server *s, struct txn *t, int ended)
{
	struct txn **pp;

	pthread_mutex_lock(&s->mu);
	t->busy = 0;
	t->expires = hsm_now_ms() + TXN_TTL_MS;
	X509_free(t->signer);
	t->signer = NULL;
	if (ended) {
		for (pp = &s->txns; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == t) {
				*pp = t->next;
				s->ntxns--;
				break;
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
	if (ended)
		txn_free(t);
}

/*
 * Decide how the message authenticates and prepare the context so that
 * the library's own protection check agrees. Returns 1 when the MAC was
 * wrong (the caller then answers with a context that has no secret).
 */
static int
prepare_auth(struct server *s, struct txn *t, const OSSL_CMP_MSG *req, const struct cmp_der_info *di)
{
	OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
	struct ledger_token tok;
	char secret[33];
	uint8_t h[32];
	int known;

	t->auth = AUTH_NONE;
	t->ref[0] = t->token_id[0] = t->signer_id[0] = t->signer_serial[0] = '\0';
	OSSL_CMP_CTX_set1_srvCert(ctx, NULL);
	if (di->has_protection_alg && strcmp(di->protection_alg, CMP_OID_PBM) == 0) {
		size_t n = di->sender_kid_len;

		known = 0;
		if (di->sender_kid != NULL && n > 0 && n <= HSM_MAX_LABEL) {
			memcpy(t->ref, di->sender_kid, n);
			t->ref[n] = '\0';
			memset(&tok, 0, sizeof(tok));
			if (strlen(t->ref) == n && ledger_token_lookup(s->cfg->ledger, t->ref, &tok) == 0) {
				cmp_token_secret(s->cfg->token_key, t->ref, secret);
				SHA256((const unsigned char *)secret, strlen(secret), h);
				known = CRYPTO_memcmp(h, tok.hash, 32) == 0;
				snprintf(t->token_id, sizeof(t->token_id), "%s", tok.spiffe_id);
			}
		}
		/* An unknown REF gets a random secret: it fails exactly like a wrong one. */
		if (!known) {
			uint8_t rnd[16];

			RAND_bytes(rnd, sizeof(rnd));
			hsm_hex(rnd, sizeof(rnd), secret);
		}
		if (di->sender_kid != NULL)
			OSSL_CMP_CTX_set1_referenceValue(ctx, di->sender_kid, di->sender_kid_len);
		OSSL_CMP_CTX_set1_secretValue(ctx, (unsigned char *)secret, strlen(secret));
		OPENSSL_cleanse(secret, sizeof(secret));
		if (OSSL_CMP_validate_msg(ctx, req) != 1) {
			ERR_clear_error();
			audit_event(s->cfg->audit, "refused", "peer", t->peer, "reason",
			    "MAC check failed (wrong secret or unknown join token)", NULL);
			log_info("refused %s: MAC check failed", t->peer);
			return 1;
		}
		t->auth = AUTH_TOKEN;
		return 0;
	}
	/* An unprotected message proves nothing, whatever certificate it carries. */
	if (di->first_extra_cert != NULL && di->has_protection_alg) {
		const unsigned char *p = di->first_extra_cert;
		X509 *x = d2i_X509(NULL, &p, (long)di->first_extra_cert_len);
		struct ledger_cert lc;
		unsigned char *der = NULL;
		int n;

		if (x == NULL)
			return 0;
		cert_serial_hex(X509_get0_serialNumber(x), t->signer_serial, sizeof(t->signer_serial));
		memset(&lc, 0, sizeof(lc));
		n = i2d_X509(x, &der);
		/* Ours, byte for byte: then its signature on the request is worth checking. */
		if (n > 0 && ledger_cert_get(s->cfg->ledger, t->signer_serial, &lc) == 0 &&
		    lc.der_len == (size_t)n && memcmp(lc.der, der, (size_t)n) == 0) {
			snprintf(t->signer_id, sizeof(t->signer_id), "%s", lc.spiffe_id);
			t->signer_state = SIGNER_OK;
			if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
				t->signer_state = SIGNER_EXPIRED;
			else if (lc.revoked)
				t->signer_state = SIGNER_REVOKED;
			else if (ledger_id_revoked(s->cfg->ledger, lc.spiffe_id))
				t->signer_state = SIGNER_ID_REVOKED;
			OSSL_CMP_CTX_set1_srvCert(ctx, x);
			t->signer = x;
			x = NULL;
			t->auth = AUTH_CERT;
		} else {
			audit_event(s->cfg->audit, "refused", "peer", t->peer, "serial", t->signer_serial,
			    "reason", "unknown certificate", NULL);
		}
		ledger_cert_clear(&lc);
		OPENSSL_free(der);
		X509_free(x);
	}
	return 0;
}

/* Process one CMP request body. *resp is malloc'd DER, or NULL with *status set. */
static void
handle_cmp(struct server *s, const uint8_t *body, size_t len, const char *peer,
    uint8_t **resp, size_t *resplen, int *status, const char **errtext)
{
	OSSL_CMP_MSG *req = NULL, *rsp = NULL;
	BIO *bio = NULL;
	struct cmp_der_info di;
	struct txn *t = NULL, scratch;
	OSSL_CMP_SRV_CTX *srv;
	int busy, type, rtype, badmac;
	BUF_MEM *bm;

	*resp = NULL;
	*resplen = 0;
	*status = 200;
	*errtext = NULL;
	if (cmp_der_parse_geninfo(body, len, s->cfg->attest != NULL ? HSM_OID_SGX_QUOTE : NULL, &di) != 0 ||
	    (bio = BIO_new_mem_buf(body, (int)len)) == NULL ||
	    (req = d2i_OSSL_CMP_MSG_bio(bio, NULL)) == NULL) {
		*status = 400;
		*errtext = "malformed CMP message (not a DER PKIMessage)\n";
		audit_event(s->cfg->audit, "refused", "peer", peer, "reason", "malformed CMP message", NULL);
		goto out;
	}
	type = OSSL_CMP_MSG_get_bodytype(req);
	if ((t = txn_get(s, OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(req)), &busy)) == NULL) {
		*status = busy ? 409 : 503;
		*errtext = busy ? "transaction busy\n" : "server busy or bad transaction ID\n";
		goto out;
	}
	t->peer = peer;
	t->quote = di.geninfo_value;
	t->quotelen = di.geninfo_value_len;
	t->lasterr[0] = '\0';
	cur_txn = t;
	badmac = prepare_auth(s, t, req, &di);
	srv = t->srv;
	if (badmac) {
		/* Answer from a context that never saw the secret; end the transaction. */
		memset(&scratch, 0, sizeof(scratch));
		scratch.s = s;
		scratch.peer = peer;
		cur_txn = &scratch;
		if ((srv = srv_new(s, &scratch)) == NULL) {
			*status = 500;
			*errtext = "out of memory\n";
			goto out;
		}
	}
	ERR_clear_error();
	rsp = OSSL_CMP_SRV_process_request(srv, req);
	if (badmac)
		OSSL_CMP_SRV_CTX_free(srv);
	/* The secret is only needed while a message is checked and answered. */
	OSSL_CMP_CTX_set1_secretValue(OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv), (unsigned char *)"", 0);
	if (rsp == NULL) {
		*status = 500;
		*errtext = "CMP processing failed\n";
		log_warn("CMP processing for %s failed: %s", peer, t->lasterr);
		goto out;
	}
	rtype = OSSL_CMP_MSG_get_bodytype(rsp);
	if (rtype == BODY_ERROR && type != BODY_ERROR) {
		log_info("error answer to %s: %s", peer, t->lasterr[0] ? t->lasterr : "(no detail)");
		if (!badmac)
			audit_event(s->cfg->audit, "refused", "peer", peer, "reason",
			    t->lasterr[0] ? t->lasterr : "CMP error", NULL);
	}
	BIO_free(bio);
	if ((bio = BIO_new(BIO_s_mem())) == NULL || i2d_OSSL_CMP_MSG_bio(bio, rsp) <= 0) {
		*status = 500;
		*errtext = "cannot encode the response\n";
		goto out;
	}
	BIO_get_mem_ptr(bio, &bm);
	if ((*resp = malloc(bm->length)) != NULL) {
		memcpy(*resp, bm->data, bm->length);
		*resplen = bm->length;
	}
	/* A transaction ends with these answers (ip/cp/kup wait for certConf or expire). */
	if (badmac || rtype == BODY_PKICONF || rtype == BODY_RP ||
	    rtype == BODY_GENP || rtype == BODY_ERROR) {
		txn_put(s, t, 1);
		t = NULL;
	}
out:
	cur_txn = NULL;
	if (t != NULL)
		txn_put(s, t, 0);
	OSSL_CMP_MSG_free(req);
	OSSL_CMP_MSG_free(rsp);
	BIO_free(bio);
}

/* ---- HTTP ---- */

static void
send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void
respond(int fd, int status, const char *ctype, const uint8_t *body, size_t len)
{
	size_t cap = len + 512, n = 0;
	uint8_t *out = malloc(cap);

	if (out == NULL)
		return;
	if (http_response(out, cap, status, ctype, body, len, &n) == 0)
		send_all(fd, out, n);
	free(out);
}

static void
serve_conn(struct server *s, int fd, const char *peer)
{
	size_t cap = s->cfg->max_body + 16384, have = 0;
	uint8_t *buf = malloc(cap);
	struct http_req hr;
	int n = 0;

	if (buf == NULL)
		return;
	for (;;) {
		ssize_t got = recv(fd, buf + have, cap - have, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			goto out;	/* closed, or the I/O timeout: nothing to answer */
		have += (size_t)got;
		if ((n = http_parse(buf, have, s->cfg->max_body, &hr)) != 0)
			break;
		if (have == cap) {
			n = HSM_EPROTO;
			hr.status = 413;
			break;
		}
	}
	if (n < 0) {
		char msg[64];

		snprintf(msg, sizeof(msg), "bad HTTP request (%d)\n", hr.status);
		respond(fd, hr.status ? hr.status : 400, "text/plain", (const uint8_t *)msg, strlen(msg));
		log_info("refused %s: HTTP %d", peer, hr.status);
		goto out;
	}
	if (strcmp(hr.target, CMP_PATH) != 0) {
		respond(fd, 404, "text/plain", (const uint8_t *)"no such path (use " CMP_PATH ")\n",
		    sizeof("no such path (use " CMP_PATH ")\n") - 1);
		goto out;
	}
	if (strcmp(hr.method, "POST") != 0) {
		respond(fd, 405, "text/plain", (const uint8_t *)"use POST\n", 9);
		goto out;
	}
	{
		uint8_t *r;
		size_t rl;
		int status;
		const char *err;

		handle_cmp(s, hr.body, hr.body_len, peer, &r, &rl, &status, &err);
		if (r != NULL)
			respond(fd, 200, "application/pkixcmp", r, rl);
		else
			respond(fd, status == 200 ? 500 : status, "text/plain", (const uint8_t *)(err ? err : "error\n"),
			    strlen(err ? err : "error\n"));
		free(r);
	}
out:
	free(buf);
}

static void *
worker_main(void *arg)
{
	struct server *s = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	while (!s->stop) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char peer[96];
		struct timeval tv = { IO_TIMEOUT_S, 0 };
		int one = 1, fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
				if (errno == EMFILE || errno == ENFILE)
					usleep(10000);
				continue;
			}
			break;	/* listener shut down */
		}
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		serve_conn(s, fd, net_addr_str(&ss, sl, peer, sizeof(peer)));
		close(fd);
	}
	return NULL;
}

/* Listen on spec ("host:port"); bound receives the address actually bound (port 0 resolved). */
static int
listen_tcp(const char *spec, int *out, char *bound, size_t boundcap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char why[400];
	int fd, st;

	*out = -1;
	if ((st = net_parse_addr(spec, 1, &ss, &sl)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(st));
		return hsm_err(HSM_ECONFIG, "listen %s", why);
	}
	if ((st = net_listen(&ss, sl, 0, 0, 256, &fd)) != 0)
		return st;
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		st = hsm_err(HSM_EIO, "cannot listen on %s: %s", spec, strerror(errno));
		close(fd);
		return st;
	}
	net_addr_str(&ss, sl, bound, boundcap);
	*out = fd;
	return 0;
}

int
cmp_serve(const struct cmp_server_cfg *cfg)
{
	struct server s;
	pthread_t th[64];
	int nth = cfg->threads > 0 && cfg->threads <= 64 ? cfg->threads : 8, st, sig;
	char bound[96], line[300];
	sigset_t sigs;

	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	ev_nonce_key(cfg->token_key, s.nonce_key);
	if ((st = listen_tcp(cfg->listen, &s.lfd, bound, sizeof(bound))) != 0)
		return st;
	if (cfg->port_file != NULL) {
		const char *port = strrchr(bound, ':') + 1;

		if ((st = hsm_write_file_atomic(cfg->port_file, port, strlen(port), 0644)) != 0) {
			close(s.lfd);
			return st;
		}
	}
	pthread_mutex_init(&s.mu, NULL);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < nth; i++) {
		if (pthread_create(&th[i], NULL, worker_main, &s) != 0) {
			nth = i;
			break;
		}
	}
	log_info("serving CMP at http://%s%s with %d handlers", bound, CMP_PATH, nth);
	for (size_t i = 0; attest_describe(cfg->attest, i, line, sizeof(line)); i++)
		log_info("attestation: %s", line);
	audit_event(cfg->audit, "start", "listen", bound, NULL);
	while (sigwait(&sigs, &sig) != 0)
		;
	log_info("stopping on signal %d", sig);
	s.stop = 1;
	shutdown(s.lfd, SHUT_RDWR);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	close(s.lfd);
	while (s.txns != NULL) {
		struct txn *t = s.txns;

		s.txns = t->next;
		txn_free(t);
	}
	pthread_mutex_destroy(&s.mu);
	audit_event(cfg->audit, "stop", NULL);
	return 0;
}
