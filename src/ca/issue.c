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
#include "err.h"
#include "ledger.h"
#include "log.h"
#include "spiffe.h"
#include "util.h"

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
};

static int
audit_issued(void *arg)
{
	const struct issue_audit *ia = arg;
	const struct ca_issue_req *rq = ia->rq;

	return audit_event(ia->au, "issued", "op", rq->op, "peer", rq->peer, "id", rq->spiffe_id,
	    "serial", ia->lc->serial, "spki_id", ia->lc->spki_id, "auth", rq->auth,
	    "parent_serial", rq->parent, "kind", rq->kind == LEDGER_NODE ? "node" : NULL,
	    "node", rq->node_id, NULL);
}

int
ca_issue(struct signer *sg, struct ledger *lg, struct audit *au,
    const struct ca_issue_req *rq, X509 **out, int *refused)
{
	struct ledger_cert lc;
	struct issue_audit ia;
	unsigned char *der = NULL;
	X509 *x = NULL;
	int r, hook_ran = 0;

	*out = NULL;
	if (refused != NULL)
		*refused = 0;
	if ((r = cert_key_check(rq->pub)) != 0 ||
	    (r = cert_issue_svid_ext(sg->root, sg->key, rq->pub, rq->spiffe_id, rq->ttl, rq->extra,
	    &x)) != 0 ||
	    (r = ledger_record(x, rq, &lc, &der)) != 0 ||
	    (r = issuer_record(sg, &lc)) != 0)
		goto out;
	/*
	 * The token, the renewal, the certificate and its audit line: all or
	 * nothing. The line is written (and synced) inside the ledger
	 * transaction, which commits only then; if the commit still fails, a
	 * second line says the issuance was rolled back.
	 */
	ia.au = au;
	ia.rq = rq;
	ia.lc = &lc;
	if ((r = ledger_issue_with(lg, &lc, rq->token_ref, rq->now, audit_issued, &ia,
	    &hook_ran)) != 0) {
		if (hook_ran) {
			char why[300];

			snprintf(why, sizeof(why), "ledger commit failed: %s", hsm_err_msg(r));
			if (audit_event_urgent(au, "rolled_back", "op", rq->op, "peer", rq->peer, "id",
			    rq->spiffe_id, "serial", lc.serial, "reason", why, NULL) != 0)
				log_err("issuance of serial %s rolled back (%s), and the audit log "
				    "cannot say so: its \"issued\" line stands for nothing", lc.serial, why);
			r = hsm_err(r, "%s", why);
		}
		if (refused != NULL)
			*refused = r == HSM_EPOLICY || r == HSM_ENOENT;
		goto out;
	}
	*out = x;
	x = NULL;
 out:
	OPENSSL_free(der);
	X509_free(x);
	return r;
}

int
ca_cmd_issue(const char *cfgpath, const char *csrpath, const char *id, const char *ttl_text)
{
	char *pem = NULL, why[512];
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
	if ((r = ca_issue(&sg, lg, au, &rq, &svid, NULL)) != 0 ||
	    (r = cert_pem(svid, &pem, &pemlen)) != 0)
		goto out;
	if (fwrite(pem, 1, pemlen, stdout) != pemlen || fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
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
