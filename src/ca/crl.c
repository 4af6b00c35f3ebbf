/*
 * crl.c - the CRL `ca serve` publishes (ca.h, crl.h) and the URL every
 * certificate names.
 *
 * Freshness: every request reads the ledger's revocation sequence (one
 * indexed row) before answering, so a CRL is never served that misses a
 * revocation committed before the request arrived, whichever process
 * (`ca revoke`, an `rr` at another replica) recorded it. A CRL is also
 * rebuilt once half of crl.next_update has passed, so whoever fetches one
 * holds it for at least that long.
 *
 * One CA signing key and certificate today: with CA rotation, a CRL per
 * issuer is a second struct ca_crl over the other certificate and key,
 * listing that issuer's certificates (crl_collect is the place to filter).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca.h"
#include "caconf.h"
#include "crl.h"
#include "err.h"
#include "ledger.h"
#include "log.h"
#include "util.h"

#define CRL_URL_FILE "crl.url"

struct ca_crl {
	pthread_mutex_t mu;
	X509 *cacert;
	EVP_PKEY *cakey;
	struct ledger *lg;
	int64_t next_update;
	int (*ready)(void *arg);
	void *arg;
	/* the cached CRL */
	uint8_t *der;
	size_t len;
	uint64_t seq;
	int64_t this_update;
};

int
ca_crl_new(X509 *cacert, EVP_PKEY *cakey, struct ledger *lg, int64_t next_update,
    int (*ready)(void *arg), void *arg, struct ca_crl **out)
{
	struct ca_crl *c;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return HSM_ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	c->cacert = cacert;
	c->cakey = cakey;
	c->lg = lg;
	c->next_update = next_update;
	c->ready = ready;
	c->arg = arg;
	*out = c;
	return 0;
}

void
ca_crl_free(struct ca_crl *c)
{
	if (c == NULL)
		return;
	pthread_mutex_destroy(&c->mu);
	free(c->der);
	free(c);
}

/* The revoked certificates collected from the ledger. */
struct collect {
	struct crl_revoked *v;
	char (*serials)[LEDGER_SERIAL_MAX + 1];
	size_t n, cap;
};

static int
crl_collect(const char *serial, int64_t revoked_at, int reason, void *arg)
{
	struct collect *k = arg;

	if (k->n == k->cap) {
		size_t cap = k->cap == 0 ? 64 : 2 * k->cap;
		struct crl_revoked *v = realloc(k->v, cap * sizeof(*v));
		char (*s)[LEDGER_SERIAL_MAX + 1];

		if (v == NULL)
			return HSM_ENOMEM;
		k->v = v;
		if ((s = realloc(k->serials, cap * sizeof(*s))) == NULL)
			return HSM_ENOMEM;
		k->serials = s;
		k->cap = cap;
	}
	snprintf(k->serials[k->n], sizeof(k->serials[k->n]), "%s", serial);
	k->v[k->n].when = revoked_at;
	k->v[k->n].reason = reason;
	k->n++;
	return 0;
}

/* Build the CRL of sequence seq at now into the cache (c->mu held). */
static int
rebuild(struct ca_crl *c, uint64_t seq, int64_t now)
{
	struct collect k = { 0 };
	uint8_t *der = NULL;
	size_t len = 0;
	int r;

	if ((r = ledger_revoked_list(c->lg, now, crl_collect, &k)) != 0)
		goto out;
	for (size_t i = 0; i < k.n; i++)
		k.v[i].serial = k.serials[i];
	if ((r = crl_build(c->cacert, c->cakey, k.v, k.n, seq, now, c->next_update, &der,
	    &len)) != 0)
		goto out;
	if (len > CRL_MAX_DER)
		log_warn("the CRL is %zu bytes (%zu certificates): agents take at most %d", len, k.n,
		    CRL_MAX_DER);
	free(c->der);
	c->der = der;
	c->len = len;
	c->seq = seq;
	c->this_update = now;
	log_info("CRL %llu built: %zu revoked certificate%s, valid for %lld s",
	    (unsigned long long)crl_number_make(seq, now), k.n, k.n == 1 ? "" : "s",
	    (long long)c->next_update);
 out:
	free(k.v);
	free(k.serials);
	return r;
}

int
ca_crl_get(struct ca_crl *c, uint8_t **der, size_t *len, uint64_t *seq)
{
	int64_t now = (int64_t)time(NULL);
	uint64_t cur;
	int r;

	*der = NULL;
	*len = 0;
	*seq = 0;
	if ((r = ledger_revocation_seq(c->lg, &cur)) != 0)
		return r;
	pthread_mutex_lock(&c->mu);
	if (c->der == NULL || c->seq != cur || now - c->this_update >= c->next_update / 2 ||
	    now < c->this_update) {
		if (c->ready != NULL && !c->ready(c->arg)) {
			/* Nothing can be signed now: the cached CRL only if it is current. */
			if (c->der == NULL || c->seq != cur ||
			    now >= c->this_update + c->next_update) {
				r = hsm_err(HSM_EAGAIN, "CA keyholder restarting: no current CRL");
				goto out;
			}
		} else if ((r = rebuild(c, cur, now)) != 0) {
			goto out;
		}
	}
	if ((*der = malloc(c->len)) == NULL) {
		r = HSM_ENOMEM;
		goto out;
	}
	memcpy(*der, c->der, c->len);
	*len = c->len;
	*seq = c->seq;
 out:
	pthread_mutex_unlock(&c->mu);
	return r;
}

int
ca_crl_url(const struct ca_config *cfg, unsigned bound_port, char *out, size_t cap)
{
	if (cfg->crl.url != NULL) {
		if ((size_t)snprintf(out, cap, "%s", cfg->crl.url) >= cap)
			return hsm_err(HSM_EINVAL, "crl.url too long");
		return 0;
	}
	return crl_url_default(cfg->listen, bound_port, out, cap);
}

int
ca_crl_url_save(const struct ca_config *cfg, const char *url)
{
	char path[PATH_MAX];
	int r;

	if ((r = ca_path(cfg->state_dir, CRL_URL_FILE, path, sizeof(path))) != 0)
		return r;
	return hsm_write_file_atomic(path, url, strlen(url), 0644);
}

void
ca_crl_url_offline(const struct ca_config *cfg, char *out, size_t cap, char *why,
    size_t whycap)
{
	char path[PATH_MAX];
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	why[0] = '\0';
	if ((r = ca_crl_url(cfg, 0, out, cap)) == 0)
		return;
	snprintf(why, whycap, "%s", hsm_err_msg(r));
	out[0] = '\0';
	if (ca_path(cfg->state_dir, CRL_URL_FILE, path, sizeof(path)) == 0 &&
	    hsm_read_file(path, cap - 1, &buf, &len) == 0 && len > 0 &&
	    memchr(buf, '\0', len) == NULL) {
		const char *p;

		memcpy(out, buf, len);
		out[len] = '\0';
		free(buf);
		if (crl_url_path(out, &p) == 0)
			return;
		out[0] = '\0';
		snprintf(why, whycap, "%s holds no URL", path);
		return;
	}
	free(buf);
}
