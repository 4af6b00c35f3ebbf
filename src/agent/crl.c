/*
 * crl.c - the agent's CRL (agent.h; docs/AGENT.md, "Revocation"): fetched
 * from the CA over HTTP on a schedule (crl.refresh, and well inside the
 * CRL's nextUpdate), at once when the CA's hint in the entries genp says
 * a newer one exists or on SIGHUP; checked against the trust anchor
 * (crl.h), kept in <state_dir>/crl.der, pushed to every local client that
 * sent CRL_SUBSCRIBE (the sidecars), and compared with the agent's own
 * certificates: one the CRL lists is no longer served, and its identity
 * enrolls again with a new key.
 *
 * The fetch runs on a job thread (OpenSSL's HTTP client, a deadline of
 * CRL_FETCH_TIMEOUT); everything else on the main thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "agent.h"
#include "crl.h"
#include "err.h"
#include "log.h"
#include "renew.h"
#include "svid.h"
#include "util.h"

#define CRL_FILE "crl.der"
#define CRL_FETCH_TIMEOUT 10	/* seconds per GET */

static char *
cache_path(const struct agent *ag)
{
	size_t n = strlen(ag->conf->state_dir) + sizeof(CRL_FILE) + 1;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "%s/%s", ag->conf->state_dir, CRL_FILE);
	return p;
}

/* A certificate of ours that the CRL lists: out of service, enrolling again. */
static void
revoked_one(struct agent *ag, struct wl *w)
{
	const char *tok = w->c->join_token_file != NULL ? w->c->join_token_file :
	    "(none configured)";

	w->revoked = 1;
	if (w->is_node)
		log_err("%s: node certificate serial %s REVOKED (CRL %llu): enrolling again with a "
		    "new key and the node join token in %s (a fresh one is needed: hsmesh ca token "
		    "--node --id %s); the workload certificates it enrolled stay in service until "
		    "they expire or are revoked", w->c->id, w->serial,
		    (unsigned long long)ag->crl_info.number, tok, w->c->id);
	else if (w->node_managed)
		log_err("%s: certificate serial %s REVOKED (CRL %llu): no longer served; enrolling "
		    "again with a new key, protected by the node's certificate", w->c->id, w->serial,
		    (unsigned long long)ag->crl_info.number);
	else
		log_err("%s: certificate serial %s REVOKED (CRL %llu): no longer served; enrolling "
		    "again with a new key and the join token in %s (a fresh one is needed: hsmesh ca "
		    "token --id %s)", w->c->id, w->serial, (unsigned long long)ag->crl_info.number,
		    tok, w->c->id);
	if (w->job == NULL)
		w->next_ms = hsm_now_ms();
}

/* Every identity of ours (the node's too) against the CRL held. */
static void
check_ours(struct agent *ag)
{
	for (size_t i = 0; i <= ag->nwl; i++) {
		struct wl *w = i < ag->nwl ? ag->wl[i] : ag->node;

		if (w != NULL && w->have && !w->revoked && crl_lists(ag->crl, w->cert))
			revoked_one(ag, w);
	}
}

/* Hold crl (checked; der its bytes, copied) from now on. */
static void
hold(struct agent *ag, X509_CRL *crl, const uint8_t *der, size_t len,
    const struct crl_info *info)
{
	uint8_t *copy = malloc(len);

	if (copy == NULL) {
		X509_CRL_free(crl);
		return;
	}
	memcpy(copy, der, len);
	X509_CRL_free(ag->crl);
	free(ag->crl_der);
	ag->crl = crl;
	ag->crl_der = copy;
	ag->crl_len = len;
	ag->crl_info = *info;
	ag->crl_stale_logged = 0;
}

/* When to fetch next: crl.refresh, but at most half the time left to nextUpdate. */
static void
schedule(struct agent *ag)
{
	int64_t now = (int64_t)time(NULL), d = ag->conf->crl_refresh;

	if (ag->crl != NULL && ag->crl_info.next_update > now &&
	    (ag->crl_info.next_update - now) / 2 < d)
		d = (ag->crl_info.next_update - now) / 2;
	if (d < 5)
		d = 5;
	ag->crl_next_ms = hsm_now_ms() + (uint64_t)d * 1000;
}

/*
 * crl_check against each CA the agent trusts to sign the CRL: ca.root,
 * the CA roots learned while the CA rotates (the active one signs), and
 * the CA certificates of the last chain installed (under an operator's
 * root the CA signing is one). The first that accepts it; else the
 * refusal by ca.root.
 */
static int
crl_check_any(struct agent *ag, const uint8_t *der, size_t len, X509_CRL **crl,
    struct crl_info *info)
{
	int64_t now = (int64_t)time(NULL);
	STACK_OF(X509) *more;
	char why[300];
	int r, r2;

	if ((r = crl_check(der, len, ag->root, now, crl, info)) == 0 || r == HSM_EAGAIN ||
	    r == HSM_ENOMEM)
		return r;
	snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
	if ((more = sk_X509_new_null()) == NULL)
		return HSM_ENOMEM;
	pthread_mutex_lock(&ag->anchors_mu);
	if ((ag->learned != NULL && !X509_add_certs(more, ag->learned, X509_ADD_FLAG_UP_REF)) ||
	    (ag->issuers != NULL && !X509_add_certs(more, ag->issuers, X509_ADD_FLAG_UP_REF))) {
		pthread_mutex_unlock(&ag->anchors_mu);
		svid_certs_free(more);
		return HSM_ENOMEM;
	}
	pthread_mutex_unlock(&ag->anchors_mu);
	for (int i = 0; i < sk_X509_num(more); i++) {
		X509 *ca = sk_X509_value(more, i);

		if (X509_check_ca(ca) == 0)
			continue;
		r2 = crl_check(der, len, ca, now, crl, info);
		if (r2 == 0 || r2 == HSM_EAGAIN || r2 == HSM_ENOMEM) {
			svid_certs_free(more);
			return r2;
		}
	}
	svid_certs_free(more);
	return hsm_err(r, "%s", why);
}

void
crl_load_cache(struct agent *ag)
{
	struct crl_info info;
	X509_CRL *crl = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	char *path = cache_path(ag);
	int r;

	ag->crl_next_ms = hsm_now_ms();	/* fetch once at start in any case */
	if (path == NULL || hsm_read_file(path, CRL_MAX_DER, &der, &len) != 0)
		goto out;
	r = crl_check_any(ag, der, len, &crl, &info);
	if (r != 0 && r != HSM_EAGAIN) {
		log_warn("%s: %s (ignored)", path, hsm_err_msg(r));
		goto out;
	}
	hold(ag, crl, der, len, &info);
	log_info("CRL %llu from %s: %zu revoked certificate%s%s", (unsigned long long)info.number,
	    path, info.count, info.count == 1 ? "" : "s", r == HSM_EAGAIN ? " (expired)" : "");
	check_ours(ag);
 out:
	free(der);
	free(path);
}

/* The URL to fetch: crl.url, else our certificates' CDP, else the CA's address + /crl. */
static int
fetch_url(struct agent *ag, char *out, size_t cap)
{
	const struct cmpc_server *s;

	if (ag->conf->crl_url != NULL)
		return (size_t)snprintf(out, cap, "%s", ag->conf->crl_url) < cap ? 0 : HSM_EINVAL;
	if (ag->node != NULL && ag->node->have && crl_cdp_url(ag->node->cert, out, cap) == 0)
		return 0;
	for (size_t i = 0; i < ag->nwl; i++)
		if (ag->wl[i]->have && crl_cdp_url(ag->wl[i]->cert, out, cap) == 0)
			return 0;
	if (ag->conf->nca == 0)
		return HSM_ENOENT;
	s = &ag->conf->ca[0];
	return (size_t)snprintf(out, cap, strchr(s->host, ':') != NULL ? "http://[%s]:%d%s" :
	    "http://%s:%d%s", s->host, s->port, CRL_PATH_DEFAULT) < cap ? 0 : HSM_EINVAL;
}

void
crl_maybe_fetch(struct agent *ag)
{
	int64_t now = (int64_t)time(NULL);
	char t[HSM_TIME_STR];
	struct job *j;
	int r;

	if (ag->crl != NULL && now >= ag->crl_info.next_update && !ag->crl_stale_logged) {
		hsm_fmt_time(ag->crl_info.next_update, t);
		log_warn("the CRL (%llu) expired at %s and no fresher one could be fetched: sidecars "
		    "apply their revocation.stale policy", (unsigned long long)ag->crl_info.number, t);
		ag->crl_stale_logged = 1;
	}
	if (ag->crl_job != NULL || ag->crl_next_ms == 0 || hsm_now_ms() < ag->crl_next_ms)
		return;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		ag->crl_next_ms = hsm_now_ms() + 1000;
		return;
	}
	j->kind = JOB_CRL;
	if (fetch_url(ag, j->crl_url, sizeof(j->crl_url)) != 0) {
		free(j);
		ag->crl_next_ms = hsm_now_ms() + 5000;
		return;
	}
	if ((r = enroll_job_start(ag, j)) != 0) {
		log_err("CRL: %s", hsm_err_msg(r));
		free(j);
		ag->crl_next_ms = hsm_now_ms() + 1000;
		return;
	}
	ag->crl_job = j;
	ag->crl_next_ms = 0;
}

void
crl_fetch_now(struct agent *ag, const char *why)
{
	log_info("fetching the CRL now (%s)", why);
	if (ag->crl_job == NULL)
		ag->crl_next_ms = hsm_now_ms();
}

void
crl_hint(struct agent *ag, int64_t seq)
{
	char why[96];

	if (seq < 0 || (ag->crl != NULL && (uint64_t)seq <= ag->crl_info.seq))
		return;
	snprintf(why, sizeof(why), "the CA's revocation sequence is %lld, our CRL's %llu",
	    (long long)seq, (unsigned long long)ag->crl_info.seq);
	crl_fetch_now(ag, why);
}

void
crl_job_run(struct job *j)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	BIO *b;
	int n;

	b = OSSL_HTTP_get(j->crl_url, "", NULL, NULL, NULL, NULL, NULL, 0, NULL,
	    "application/pkix-crl", 1, CRL_MAX_DER, CRL_FETCH_TIMEOUT);
	if (b == NULL) {
		j->st = hsm_err_ossl(HSM_EIO, "GET");
		j->unreachable = 1;
		snprintf(j->why, sizeof(j->why), "GET %.200s: %.250s", j->crl_url, hsm_err_msg(j->st));
		ERR_clear_error();
		return;
	}
	if ((buf = malloc(CRL_MAX_DER + 1)) == NULL) {
		j->st = HSM_ENOMEM;
		snprintf(j->why, sizeof(j->why), "out of memory");
		goto out;
	}
	while (len <= CRL_MAX_DER && (n = BIO_read(b, buf + len, (int)(CRL_MAX_DER + 1 - len))) > 0)
		len += (size_t)n;
	if (len == 0 || len > CRL_MAX_DER) {
		j->st = hsm_err(HSM_EPROTO, "%zu bytes", len);
		snprintf(j->why, sizeof(j->why), "GET %.200s: an answer of %s bytes (1..%d accepted)",
		    j->crl_url, len == 0 ? "0" : "too many", CRL_MAX_DER);
		goto out;
	}
	j->crl_der = buf;
	j->crl_len = len;
	buf = NULL;
	j->st = 0;
 out:
	free(buf);
	BIO_free_all(b);
}

void
crl_done(struct agent *ag, struct job *j)
{
	struct crl_info info;
	X509_CRL *crl = NULL;
	char *path;
	int64_t d;
	int r = 0;

	ag->crl_job = NULL;
	if (j->st == 0) {
		r = crl_check_any(ag, j->crl_der, j->crl_len, &crl, &info);
		if (r != 0 && r != HSM_EAGAIN) {
			j->st = r;
			snprintf(j->why, sizeof(j->why), "CRL from %.200s refused: %.250s", j->crl_url,
			    hsm_err_msg(r));
		}
	}
	if (j->st != 0) {
		ag->crl_backoff_ms = renew_backoff_next(ag->crl_backoff_ms,
		    ag->conf->retry_min * 1000, ag->conf->retry_max * 1000);
		d = renew_backoff_jitter(ag->crl_backoff_ms, agent_rand64());
		ag->crl_next_ms = hsm_now_ms() + (uint64_t)d;
		log_warn("CRL: %s; keeping %s; trying again in %llds", j->why,
		    ag->crl != NULL ? "the last good one" : "none", (long long)((d + 500) / 1000));
		return;
	}
	ag->crl_backoff_ms = 0;
	if (ag->crl != NULL && info.number < ag->crl_info.number) {
		log_warn("CRL from %s refused: number %llu is older than the one held (%llu): a "
		    "replayed CRL, or a CA restored from an old backup", j->crl_url,
		    (unsigned long long)info.number, (unsigned long long)ag->crl_info.number);
		X509_CRL_free(crl);
	} else if (ag->crl != NULL && info.number == ag->crl_info.number) {
		X509_CRL_free(crl);	/* nothing new */
	} else {
		hold(ag, crl, j->crl_der, j->crl_len, &info);
		log_info("CRL %llu from %s: %zu revoked certificate%s, next update in %llds%s",
		    (unsigned long long)info.number, j->crl_url, info.count, info.count == 1 ? "" : "s",
		    (long long)(info.next_update - (int64_t)time(NULL)),
		    r == HSM_EAGAIN ? " (already expired: the CA's clock?)" : "");
		if ((path = cache_path(ag)) != NULL &&
		    (r = hsm_write_file_atomic(path, j->crl_der, j->crl_len, 0644)) != 0)
			log_warn("%s: %s (the CRL applies, but a restart would fetch it again)", path,
			    hsm_err_msg(r));
		free(path);
		api_push_crl(ag);
		check_ours(ag);
	}
	schedule(ag);
}

void
crl_free(struct agent *ag)
{
	X509_CRL_free(ag->crl);
	free(ag->crl_der);
	ag->crl = NULL;
	ag->crl_der = NULL;
	ag->crl_len = 0;
}
