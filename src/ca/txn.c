/*
 * txn.c - one CMP message from bytes to answer, and the transactions that
 * outlive a message (see cmp.h).
 *
 * One OSSL_CMP_SRV_CTX carries one transaction (its nonces and
 * transactionID), and an explicit certConf must reach the context that
 * issued, so contexts live in a map keyed by transactionID until the
 * transaction ends or expires. A context is used by one thread at a time
 * (busy); a second message for a busy transaction is answered HTTP 409.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/cmp.h>
#include <openssl/err.h>

#include "attest.h"
#include "audit.h"
#include "cmp.h"
#include "cmpder.h"
#include "log.h"
#include "metrics.h"
#include "throttle.h"
#include "util.h"

#define TXN_MAX 4096
#define TXN_TTL_MS 60000

static void
txn_free(struct txn *t)
{
	if (t == NULL)
		return;
	OSSL_CMP_SRV_CTX_free(t->srv);
	X509_free(t->signer);
	OPENSSL_clear_free(t, sizeof(*t));
}

void
txn_free_all(struct server *s)
{
	while (s->txns != NULL) {
		struct txn *t = s->txns;

		s->txns = t->next;
		txn_free(t);
	}
	s->ntxns = 0;
}

/*
 * Find the transaction tid or make one (*fresh set); it comes back busy.
 * NULL when the map is full, tid is unusable, or (*busy set) another
 * thread has it. Expired idle transactions are swept on the way.
 */
static struct txn *
txn_get(struct server *s, const ASN1_OCTET_STRING *tid, int *busy, int *fresh)
{
	struct txn *t, **pp;
	uint64_t now = hsm_now_ms();

	*busy = 0;
	*fresh = 0;
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
	if ((t->srv = cmp_srv_new(s, t)) == NULL) {
		pthread_mutex_lock(&s->mu);
		t->busy = 0;
		t->expires = 0;
		pthread_mutex_unlock(&s->mu);
		return NULL;
	}
	*fresh = 1;
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
 * Walk the DER for what OpenSSL 3.0 has no getter for, and find the
 * evidence of the first kind the attestation policy accepts that the
 * header's generalInfo carries. 0 or HSM_EPROTO.
 */
static int
parse_header(struct server *s, const uint8_t *body, size_t len, struct cmp_der_info *di,
    enum ev_type *type)
{
	const struct ev_type_info *e;
	int st;

	*type = EV_NONE;
	if ((e = attest_accepted(s->cfg->attest, 0)) == NULL)
		return cmp_der_parse_geninfo(body, len, NULL, di);
	for (size_t i = 0; e != NULL; e = attest_accepted(s->cfg->attest, ++i)) {
		if ((st = cmp_der_parse_geninfo(body, len, e->evidence_oid, di)) != 0)
			return st;
		if (di->geninfo_value != NULL) {
			*type = e->type;
			return 0;
		}
	}
	return 0;
}

/* ---- refusals of messages that prove nothing ---- */

/* The StatusString of each (the same for a wrong secret and an unknown REF). */
static const char *const unauth_text[UNAUTH_N] = {
	[UNAUTH_MALFORMED] = "malformed CMP message",
	[UNAUTH_BAD_MAC] = "MAC check failed (wrong secret or unknown join token)",
	[UNAUTH_PBM_COST] = "PBM iteration count over " CMP_PBM_MAX_ITERATIONS_TEXT,
	[UNAUTH_UNKNOWN_SIGNER] = "signer certificate unknown",
	[UNAUTH_BAD_SIGNATURE] = "signature check failed",
	[UNAUTH_UNPROTECTED] = "unprotected message (no attestation policy)",
	[UNAUTH_SIGNER_DOWN] = "CA keyholder restarting",
};

static const char *const unauth_label[UNAUTH_N] = {
	[UNAUTH_MALFORMED] = "malformed", [UNAUTH_BAD_MAC] = "bad_mac",
	[UNAUTH_PBM_COST] = "pbm_cost", [UNAUTH_UNKNOWN_SIGNER] = "unknown_signer",
	[UNAUTH_BAD_SIGNATURE] = "bad_signature", [UNAUTH_UNPROTECTED] = "unprotected",
	[UNAUTH_SIGNER_DOWN] = "keyholder_restarting",
};

/*
 * Count a refusal of kind why from peer; the first of its source and
 * reason per interval is audited and logged in full, the rest summarised
 * by cmp_refusals_flush.
 */
static void
note_unauth(struct server *s, const char *peer, const char *src, enum cmp_unauth why)
{
	metric_inc(s->m_unauth[why]);
	if (throttle_hit(s->refusals, src, unauth_text[why], hsm_now_ms()) == 0)
		return;
	log_info("refused %s: %s", peer, unauth_text[why]);
	audit_event(s->cfg->audit, "refused", "peer", peer, "reason", unauth_text[why], NULL);
}

static void
summary(void *arg, const char *src, const char *reason, uint64_t count, uint64_t since_ms)
{
	struct server *s = arg;
	char n[24], when[HSM_TIME_STR];
	uint64_t ago = hsm_now_ms() - since_ms;

	snprintf(n, sizeof(n), "%llu", (unsigned long long)count);
	hsm_fmt_time((int64_t)time(NULL) - (int64_t)(ago / 1000), when);
	log_info("refused %s more message%s from %s since %s: %s", n, count == 1 ? "" : "s", src,
	    when, reason);
	audit_event(s->cfg->audit, "refused_repeated", "peer", src, "reason", reason, "count", n,
	    "since", when, NULL);
}

void
cmp_refusal_metrics(struct server *s)
{
	for (int i = 0; i < UNAUTH_N; i++)
		(void)metrics_get(s->cfg->metrics, METRIC_COUNTER, "hsmesh_ca_cmp_refused_total",
		    "CMP messages refused before anything was signed, by reason",
		    (const char *const[]){ "reason", unauth_label[i], NULL }, &s->m_unauth[i]);
}

void
cmp_refusals_flush(struct server *s, int all)
{
	throttle_flush(s->refusals, hsm_now_ms(), all, summary, s);
}

/*
 * Answer a message that proves nothing with an unprotected CMP error
 * (rejection, failInfo failbit, the reason as StatusString): no signature
 * of ours, no transaction kept; HTTP 400 if even that cannot be made.
 */
static void
answer_unsigned(struct server *s, const struct cmp_der_info *di, const char *peer,
    const char *src, enum cmp_unauth why, int failbit, struct cmp_answer *a)
{
	note_unauth(s, peer, src, why);
	if (cmp_der_error_new(di, X509_get_subject_name(s->cfg->cacert), failbit, unauth_text[why],
	    &a->body, &a->len) != 0) {
		a->status = 400;
		a->errtext = "message refused\n";
	}
}

static int
signer_down(const struct server *s)
{
	return s->cfg->signer_ready != NULL && !s->cfg->signer_ready(s->cfg->signer_arg);
}

void
cmp_handle(struct server *s, const uint8_t *body, size_t len, const char *peer,
    const char *src, struct cmp_answer *a)
{
	OSSL_CMP_MSG *req = NULL, *rsp = NULL;
	BIO *bio = NULL;
	struct cmp_der_info di;
	struct txn *t = NULL;
	enum ev_type evt;
	enum cmp_unauth why;
	int busy, fresh, type, rtype;
	BUF_MEM *bm;

	memset(a, 0, sizeof(*a));
	a->status = 200;
	if (parse_header(s, body, len, &di, &evt) != 0 ||
	    (bio = BIO_new_mem_buf(body, (int)len)) == NULL ||
	    (req = d2i_OSSL_CMP_MSG_bio(bio, NULL)) == NULL) {
		note_unauth(s, peer, src, UNAUTH_MALFORMED);
		a->status = 400;
		a->errtext = "malformed CMP message (not a DER PKIMessage)\n";
		goto out;
	}
	/* What a MAC check will cost is the client's choice: bound it first. */
	if (di.pbm_iterations > CMP_PBM_MAX_ITERATIONS) {
		answer_unsigned(s, &di, peer, src, UNAUTH_PBM_COST,
		    OSSL_CMP_PKIFAILUREINFO_badMessageCheck, a);
		goto out;
	}
	/* Nothing can be signed now: say so at once, unsigned. */
	if (signer_down(s)) {
		answer_unsigned(s, &di, peer, src, UNAUTH_SIGNER_DOWN,
		    OSSL_CMP_PKIFAILUREINFO_systemFailure, a);
		goto out;
	}
	type = OSSL_CMP_MSG_get_bodytype(req);
	t = txn_get(s, OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(req)), &busy,
	    &fresh);
	if (t == NULL) {
		a->status = busy ? 409 : 503;
		a->errtext = busy ? "transaction busy\n" : "server busy or bad transaction ID\n";
		goto out;
	}
	t->peer = peer;
	t->ev_type = evt;
	t->evidence = di.geninfo_value;
	t->evidence_len = di.geninfo_value_len;
	t->lasterr[0] = '\0';
	cmp_log_to(t);
	if (cmp_auth_prepare(s, t, req, &di, &why) != 0) {
		/*
		 * Unsigned, the same for a wrong secret and an unknown REF; the
		 * secret is gone from the context at once. A transaction this
		 * message did not open is left as it was.
		 */
		OSSL_CMP_CTX_set1_secretValue(OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv),
		    (unsigned char *)"", 0);
		answer_unsigned(s, &di, peer, src, why, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, a);
		txn_put(s, t, fresh);
		t = NULL;
		goto out;
	}
	ERR_clear_error();
	rsp = OSSL_CMP_SRV_process_request(t->srv, req);
	/* The secret is only needed while a message is checked and answered. */
	OSSL_CMP_CTX_set1_secretValue(OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv), (unsigned char *)"", 0);
	if (rsp == NULL) {
		/* Most likely the answer could not be signed: the keyholder went away. */
		if (signer_down(s)) {
			answer_unsigned(s, &di, peer, src, UNAUTH_SIGNER_DOWN,
			    OSSL_CMP_PKIFAILUREINFO_systemFailure, a);
			txn_put(s, t, 1);
			t = NULL;
			goto out;
		}
		a->status = 500;
		a->errtext = "CMP processing failed\n";
		log_warn("CMP processing for %s failed: %s", peer, t->lasterr);
		goto out;
	}
	rtype = OSSL_CMP_MSG_get_bodytype(rsp);
	if (rtype == BODY_ERROR && type != BODY_ERROR) {
		log_info("error answer to %s: %s", peer, t->lasterr[0] ? t->lasterr : "(no detail)");
		audit_event(s->cfg->audit, "refused", "peer", peer, "reason",
		    t->lasterr[0] ? t->lasterr : "CMP error", NULL);
	}
	BIO_free(bio);
	if ((bio = BIO_new(BIO_s_mem())) == NULL || i2d_OSSL_CMP_MSG_bio(bio, rsp) <= 0) {
		a->status = 500;
		a->errtext = "cannot encode the response\n";
		goto out;
	}
	BIO_get_mem_ptr(bio, &bm);
	if ((a->body = malloc(bm->length)) != NULL) {
		memcpy(a->body, bm->data, bm->length);
		a->len = bm->length;
	}
	/*
	 * A transaction ends with these answers; ip/cp/kup wait for certConf
	 * or expire, unless the request asked for implicit confirmation, which
	 * the server grants: nothing more comes.
	 */
	if (rtype == BODY_PKICONF || rtype == BODY_RP || rtype == BODY_GENP || rtype == BODY_ERROR ||
	    (di.implicit_confirm && (rtype == BODY_IP || rtype == BODY_CP || rtype == BODY_KUP))) {
		txn_put(s, t, 1);
		t = NULL;
	}
out:
	cmp_log_to(NULL);
	if (t != NULL)
		txn_put(s, t, 0);
	OSSL_CMP_MSG_free(req);
	OSSL_CMP_MSG_free(rsp);
	BIO_free(bio);
}
