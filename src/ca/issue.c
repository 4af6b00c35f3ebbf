/*
 * issue.c - issuance: `hsmesh ca issue` (offline, one CSR, PEM on stdout)
 * and ca_issue(), which every path that issues shares (ca issue, and the
 * CMP server through serve.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "cert.h"
#include "crl.h"
#include "err.h"
#include "ledger.h"
#include "log.h"
#include "spiffe.h"
#include "util.h"

#define SERIAL_TRIES 3		/* issuances tried when the random serial is taken */

/* The ledger's record of x (der borrowed from *der, which the caller frees). */
static int
ledger_record(X509 *x, const struct ca_issue_req *rq, struct ledger_cert *lc,
    unsigned char **der)
{
	uint8_t kid[HSM_KEYID_LEN];
	int n, r;

	memset(lc, 0, sizeof(*lc));
	*der = NULL;
	snprintf(lc->spiffe_id, sizeof(lc->spiffe_id), "%s", rq->spiffe_id);
	if ((r = cert_serial_hex(X509_get0_serialNumber(x), lc->serial, sizeof(lc->serial))) != 0 ||
	    (r = cert_key_id(x, kid)) != 0 ||
	    (r = cert_time_unix(X509_get0_notBefore(x), &lc->not_before)) != 0 ||
	    (r = cert_time_unix(X509_get0_notAfter(x), &lc->not_after)) != 0)
		return r;
	hsm_hex(kid, sizeof(kid), lc->spki_id);
	snprintf(lc->auth, sizeof(lc->auth), "%s", rq->auth);
	snprintf(lc->parent_serial, sizeof(lc->parent_serial), "%s",
	    rq->parent != NULL ? rq->parent : "");
	snprintf(lc->txn, sizeof(lc->txn), "%s", rq->txn != NULL ? rq->txn : "");
	lc->kind = rq->kind == LEDGER_NODE ? LEDGER_NODE : LEDGER_WORKLOAD;
	snprintf(lc->node_id, sizeof(lc->node_id), "%s", rq->node_id != NULL ? rq->node_id : "");
	if ((n = i2d_X509(x, der)) <= 0)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot encode the certificate");
	lc->der = *der;
	lc->der_len = (size_t)n;
	return 0;
}

/* The key id of the CA that signs (ledger.h: retiring a CA counts what it issued). */
static int
issuer_record(struct signer *sg, struct ledger_cert *lc)
{
	uint8_t kid[HSM_KEYID_LEN];
	int r;

	if ((r = cert_key_id(sg->root, kid)) == 0)
		hsm_hex(kid, sizeof(kid), lc->issuer);
	return r;
}

/* The "issued" audit line, written inside the ledger transaction (ledger_issue_with). */
struct issue_audit {
	struct audit *au;
	const struct ca_issue_req *rq;
	const struct ledger_cert *lc;
	const struct ca_profile *prof;
};

static int
audit_issued(void *arg)
{
	const struct issue_audit *ia = arg;
	const struct ca_issue_req *rq = ia->rq;
	int nf = ia->prof->kind == PROFILE_3GPP_NF;

	return audit_event(ia->au, "issued", "op", rq->op, "peer", rq->peer, "id", rq->spiffe_id,
	    "serial", ia->lc->serial, "spki_id", ia->lc->spki_id, "auth", rq->auth,
	    "parent_serial", rq->parent, "kind", rq->kind == LEDGER_NODE ? "node" : NULL,
	    "node", rq->node_id, "profile", nf ? NF_PROFILE_NAME : NULL,
	    "nf_types", nf ? ia->prof->nf_types : NULL, "fqdn", nf ? ia->prof->fqdn : NULL, NULL);
}

/*
 * The certificate of rq's profile. A refusal of the profile (what the ID
 * gets, NF fields missing or not fitting ca.yaml, a TTL over its cap)
 * sets *refused.
 */
static int
make_cert(const struct ca_config *cfg, struct signer *sg, struct ledger *lg,
    const struct ca_issue_req *rq, STACK_OF(X509_EXTENSION) *exts, struct ca_profile *prof,
    X509 **x, int *refused)
{
	struct nf_params np;
	char why[400];
	int r;

	if ((r = ca_profile_for(cfg, lg, rq->spiffe_id, rq->kind, rq->nf_types, rq->fqdn,
	    prof)) != 0) {
		*refused = r == HSM_EPOLICY;
		return r;
	}
	if (prof->kind != PROFILE_3GPP_NF)
		return cert_issue_svid_ext(sg->root, sg->key, rq->pub, rq->spiffe_id, rq->ttl,
		    exts, x);
	ca_nf_params(cfg, prof, &np);
	if ((r = nf_params_check(&np)) != 0 || (r = nf_ttl_check(rq->ttl)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		*refused = 1;
		return hsm_err(r, "profile %s (from %s): %s", NF_PROFILE_NAME, prof->source, why);
	}
	return nf_issue(sg->root, sg->key, rq->pub, rq->spiffe_id, rq->ttl, &np, exts, x);
}

int
ca_issue(const struct ca_config *cfg, struct signer *sg, struct ledger *lg, struct audit *au,
    const struct ca_issue_req *rq, X509 **out, int *refused)
{
	struct ledger_cert lc;
	struct issue_audit ia;
	struct ca_profile prof;
	unsigned char *der = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;	/* borrows rq->extra */
	X509_EXTENSION *cdp = NULL;
	X509 *x = NULL;
	int r, hook_ran = 0, prof_refused = 0;

	*out = NULL;
	if (refused != NULL)
		*refused = 0;
	if ((exts = sk_X509_EXTENSION_new_null()) == NULL) {
		r = HSM_ENOMEM;
		goto out;
	}
	if (rq->extra != NULL && !sk_X509_EXTENSION_push(exts, rq->extra)) {
		r = HSM_ENOMEM;
		goto out;
	}
	/* Every certificate names the CRL (crl.h): relying parties find it there. */
	if (sg->crl_url[0] != '\0' && ((r = crl_cdp_ext(sg->crl_url, &cdp)) != 0 ||
	    !sk_X509_EXTENSION_push(exts, cdp))) {
		r = r != 0 ? r : HSM_ENOMEM;
		goto out;
	}
	if ((r = cert_key_check(rq->pub)) != 0)
		goto out;
	ia.au = au;
	ia.rq = rq;
	ia.lc = &lc;
	ia.prof = &prof;
	for (int attempt = 0;; attempt++) {
		prof_refused = 0;
		if ((r = make_cert(cfg, sg, lg, rq, exts, &prof, &x, &prof_refused)) != 0) {
			if (refused != NULL)
				*refused = prof_refused;
			goto out;
		}
		if ((r = ledger_record(x, rq, &lc, &der)) != 0 || (r = issuer_record(sg, &lc)) != 0)
			goto out;
		/*
		 * The token, the renewal, the certificate and its audit line: all
		 * or nothing. The line is written (and synced) inside the ledger
		 * transaction, which commits only then; if the commit still fails,
		 * a second line says the issuance was rolled back.
		 */
		if ((r = ledger_issue_with(lg, &lc, rq->token_ref, rq->now, audit_issued, &ia,
		    &hook_ran)) == 0)
			break;
		if (hook_ran) {
			char why[300];

			snprintf(why, sizeof(why), "ledger commit failed: %s", hsm_err_msg(r));
			if (audit_event_urgent(au, "rolled_back", "op", rq->op, "peer", rq->peer, "id",
			    rq->spiffe_id, "serial", lc.serial, "reason", why, NULL) != 0)
				log_err("issuance of serial %s rolled back (%s), and the audit log "
				    "cannot say so: its \"issued\" line stands for nothing", lc.serial, why);
			r = hsm_err(r, "%s", why);
		}
		if (hook_ran || r != HSM_EEXIST || attempt + 1 >= SERIAL_TRIES) {
			if (refused != NULL)
				*refused = r == HSM_EPOLICY || r == HSM_ENOENT;
			goto out;
		}
		/* 128 random bits taken already: draw (and sign) again. */
		log_warn("serial %s is taken; issuing again with another", lc.serial);
		OPENSSL_free(der);
		der = NULL;
		X509_free(x);
		x = NULL;
	}
	*out = x;
	x = NULL;
 out:
	sk_X509_EXTENSION_free(exts);
	X509_EXTENSION_free(cdp);
	OPENSSL_free(der);
	X509_free(x);
	return r;
}

int
ca_cmd_issue(const char *cfgpath, const char *csrpath, const char *id, const char *ttl_text,
    const char *nf_types, const char *fqdn)
{
	char *pem = NULL, why[512], nocrl[300];
	uint8_t *csrbuf = NULL;
	size_t csrlen = 0, pemlen = 0;
	struct ca_config *cfg = NULL;
	struct ca_issue_req rq;
	struct signer sg;
	struct ledger *lg = NULL;
	struct audit *au = NULL;
	X509_REQ *req = NULL;
	X509 *svid = NULL;
	int64_t ttl;
	int r;

	memset(&sg, 0, sizeof(sg));
	sg.k.pid = -1;
	if ((r = ca_config_load(cfgpath, &cfg)) != 0)
		goto out;

	/* Arguments are checked before the token is touched. */
	ttl = cfg->svid_ttl;
	if (ttl_text != NULL && (r = hsm_parse_duration(ttl_text, &ttl)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		r = hsm_err(HSM_EINVAL, "--ttl: %s", why);
		goto out;
	}
	if (ttl > cfg->max_ttl) {
		r = hsm_err(HSM_EPOLICY, "TTL %s exceeds max_ttl %s",
		    ttl_text != NULL ? ttl_text : cfg->svid_ttl_text, cfg->max_ttl_text);
		goto out;
	}
	if ((r = spiffe_id_check_domain(id, cfg->trust_domain)) != 0 ||
	    (r = signer_load_root(cfg, &sg)) != 0)
		goto out;
	ca_crl_url_offline(cfg, sg.crl_url, sizeof(sg.crl_url), nocrl, sizeof(nocrl));
	if ((r = ca_records_open(cfg, &lg, &au)) != 0 || (r = signer_use_set(&sg, lg)) != 0)
		goto out;
	if (ledger_id_revoked(lg, id)) {
		r = hsm_err(HSM_EPOLICY, "identity %s is revoked", id);
		goto out;
	}

	/*
	 * Start the keyholder before reading the CSR: the token (PIN, key) is
	 * proven while the request may still be arriving on a pipe, and a
	 * token problem is reported before the CSR's.
	 */
	if ((r = signer_start(cfg, &sg)) != 0)
		goto out;
	if ((r = hsm_read_file(csrpath, CERT_MAX_INPUT, &csrbuf, &csrlen)) != 0 ||
	    (r = cert_csr_parse(csrbuf, csrlen, &req)) != 0 ||
	    (r = cert_csr_verify(req)) != 0)
		goto out;
	memset(&rq, 0, sizeof(rq));
	rq.pub = X509_REQ_get0_pubkey(req);
	rq.spiffe_id = id;
	rq.ttl = ttl;
	rq.auth = "offline";
	rq.op = "issue";
	rq.peer = "local";
	rq.nf_types = nf_types;
	rq.fqdn = fqdn;
	if ((r = ca_issue(cfg, &sg, lg, au, &rq, &svid, NULL)) != 0 ||
	    (r = cert_pem(svid, &pem, &pemlen)) != 0)
		goto out;
	if (fwrite(pem, 1, pemlen, stdout) != pemlen || fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
	else if (sg.crl_url[0] == '\0')
		log_warn("the certificate names no CRL: %s", nocrl);
 out:
	signer_close(&sg);
	X509_free(svid);
	X509_REQ_free(req);
	free(csrbuf);
	free(pem);
	ledger_close(lg);
	audit_close(au);
	ca_config_free(cfg);
	return r == 0 ? 0 : ca_fail("issue", r);
}
