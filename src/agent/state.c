/*
 * state.c - the agent's per-workload state (agent.h): the current SVID in
 * memory, and on disk as <state_dir>/<name>/cert.pem and bundle.pem,
 * reused at start when still good (docs/AGENT.md, "State layout"); the
 * list of identities served and who may use each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "agent.h"
#include "cert.h"
#include "err.h"
#include "khclient.h"
#include "log.h"
#include "provider_kh.h"
#include "svid.h"
#include "util.h"

void
agent_key_clear(struct agent_key *k)
{
	if (k == NULL)
		return;
	free(k->spki);
	EVP_PKEY_free(k->pkey);
	memset(k, 0, sizeof(*k));
}

char *
agent_keyid_hex(const uint8_t id[HSM_KEYID_LEN], char out[AGENT_KEYID_HEX])
{
	return hsm_hex(id, HSM_KEYID_LEN, out);
}

/*
 * Directory name for an ID: "spiffe://" dropped and '/' written as '+'
 * (neither appears in a SPIFFE ID otherwise, so the mapping is one-to-one).
 * IDs too long for a file name are cut and suffixed with a hash.
 */
static void
sanitise(const char *id, char *out, size_t len)
{
	const char *s = id + strlen(SPIFFE_SCHEME);
	uint8_t md[SHA256_DIGEST_LENGTH];
	char hex[2 * SHA256_DIGEST_LENGTH + 1];
	size_t i, n = strlen(s), keep = n < 200 ? n : 180;

	for (i = 0; i < keep && i + 1 < len; i++)
		out[i] = s[i] == '/' ? '+' : s[i];
	out[i] = '\0';
	if (keep < n) {
		SHA256((const unsigned char *)id, strlen(id), md);
		snprintf(out + i, len - i, "-%.16s", hsm_hex(md, sizeof(md), hex));
	}
}

int
wl_new(struct agent *ag, const struct agent_workload *c, int own, int is_node, struct wl **out)
{
	char name[256], hex[2 * SHA256_DIGEST_LENGTH + 1];
	uint8_t md[SHA256_DIGEST_LENGTH];
	struct wl *w;
	int r;

	*out = NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return HSM_ENOMEM;
	w->wid = ++ag->next_wid;
	w->is_node = is_node;
	w->c = c;
	if (own) {
		if ((w->own.id = strdup(c->id)) == NULL ||
		    (c->join_token_file != NULL &&
		    (w->own.join_token_file = strdup(c->join_token_file)) == NULL)) {
			wl_free(w);
			return HSM_ENOMEM;
		}
		w->c = &w->own;
	}
	/* The node's directory and key labels cannot be taken for a workload's. */
	if (is_node)
		snprintf(name, sizeof(name), "node");
	else
		sanitise(c->id, name, sizeof(name));
	SHA256((const unsigned char *)c->id, strlen(c->id), md);
	snprintf(w->label, sizeof(w->label), "%s-%.8s", is_node ? "hsmesh-node" : "hsmesh-wl",
	    hsm_hex(md, sizeof(md), hex));
	if (asprintf(&w->dir, "%s/%s", ag->conf->state_dir, name) == -1 ||
	    asprintf(&w->cert_path, "%s/cert.pem", w->dir) == -1 ||
	    asprintf(&w->bundle_path, "%s/bundle.pem", w->dir) == -1) {
		wl_free(w);
		return HSM_ENOMEM;
	}
	if ((r = hsm_mkdir_p(w->dir, 0755)) != 0) {
		wl_free(w);
		return r;
	}
	*out = w;
	return 0;
}

int
wl_add(struct agent *ag, struct wl *w)
{
	struct wl **v;

	if (ag->nwl == ag->capwl) {
		size_t cap = ag->capwl == 0 ? 8 : 2 * ag->capwl;

		if ((v = realloc(ag->wl, cap * sizeof(*v))) == NULL)
			return HSM_ENOMEM;
		ag->wl = v;
		ag->capwl = cap;
	}
	ag->wl[ag->nwl++] = w;
	return 0;
}

void
wl_unlist(struct agent *ag, struct wl *w)
{
	for (size_t i = 0; i < ag->nwl; i++) {
		if (ag->wl[i] == w) {
			memmove(&ag->wl[i], &ag->wl[i + 1], (ag->nwl - i - 1) * sizeof(*ag->wl));
			ag->nwl--;
			return;
		}
	}
}

struct wl *
wl_find(struct agent *ag, const char *id)
{
	for (size_t i = 0; i < ag->nwl; i++)
		if (strcmp(ag->wl[i]->c->id, id) == 0)
			return ag->wl[i];
	return NULL;
}

/* Every change of any identity's selectors gets a new number. */
static uint64_t sels_generation;

static void
wl_sels_clear(struct wl *w)
{
	for (size_t i = 0; i < w->nsels; i++)
		sel_set_clear(&w->sels[i]);
	free(w->sels);
	w->sels = NULL;
	w->nsels = 0;
	w->root_any = 0;
}

int
wl_sels_set(struct wl *w, const struct sel_set *sets, size_t n)
{
	struct sel_set *v = NULL;

	if (n > 0 && (v = calloc(n, sizeof(*v))) == NULL)
		return HSM_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (sel_set_copy(&v[i], &sets[i]) != 0) {
			while (i-- > 0)
				sel_set_clear(&v[i]);
			free(v);
			return HSM_ENOMEM;
		}
	}
	wl_sels_clear(w);
	w->sels = v;
	w->nsels = n;
	w->sels_gen = ++sels_generation;
	return 0;
}

int
wl_sels_from_conf(struct wl *w)
{
	int r;

	if ((r = wl_sels_set(w, &w->c->sel, 1)) != 0)
		return r;
	/* As before selectors: root may use a workload whose entry names none. */
	w->root_any = !w->c->has_selectors;
	w->sels_gen = ++sels_generation;
	return 0;
}

int
wl_allows(const struct wl *w, struct sel_proc *p, const char **why)
{
	if (why != NULL)
		*why = "no selector set";
	if (w->is_node)
		return 0;
	if (w->root_any && p->uid == 0)
		return 1;
	for (size_t i = 0; i < w->nsels; i++)
		if (sel_match(&w->sels[i], p, why))
			return 1;
	return 0;
}

static void
wl_clear_current(struct wl *w)
{
	X509_free(w->cert);
	w->cert = NULL;
	agent_key_clear(&w->key);
	free(w->chain_pem);
	free(w->bundle_pem);
	w->chain_pem = w->bundle_pem = NULL;
	w->chain_len = w->bundle_len = 0;
	w->have = 0;
}

void
wl_free(struct wl *w)
{
	if (w == NULL)
		return;
	wl_clear_current(w);
	agent_key_clear(&w->pending);
	wl_sels_clear(w);
	free(w->own.id);
	free(w->own.join_token_file);
	free(w->dir);
	free(w->cert_path);
	free(w->bundle_path);
	free(w);
}

int
wl_valid(const struct wl *w)
{
	return w->have && !w->revoked && time(NULL) < w->na;
}

int
wl_install(struct agent *ag, struct wl *w, X509 *cert, STACK_OF(X509) *chain,
    struct agent_key *k)
{
	char *pem = NULL, *bundle = NULL;
	size_t pemlen, bundlelen;
	int64_t nb, na;
	int r;

	if ((r = cert_time_unix(X509_get0_notBefore(cert), &nb)) != 0 ||
	    (r = cert_time_unix(X509_get0_notAfter(cert), &na)) != 0)
		return hsm_err(r, "certificate has unreadable validity dates");
	if ((r = cert_pem_chain(cert, chain, &pem, &pemlen)) != 0)
		return r;
	pthread_mutex_lock(&ag->anchors_mu);
	bundle = strdup(ag->root_pem);
	bundlelen = ag->root_pemlen;
	pthread_mutex_unlock(&ag->anchors_mu);
	if (bundle == NULL) {
		free(pem);
		return HSM_ENOMEM;
	}
	wl_clear_current(w);
	w->cert = cert;
	if (chain != NULL && sk_X509_num(chain) > 0) {
		pthread_mutex_lock(&ag->anchors_mu);
		svid_certs_free(ag->issuers);
		ag->issuers = chain;
		chain = NULL;
		pthread_mutex_unlock(&ag->anchors_mu);
	}
	svid_certs_free(chain);
	w->key = *k;
	memset(k, 0, sizeof(*k));
	w->chain_pem = pem;
	w->chain_len = pemlen;
	w->bundle_pem = bundle;
	w->bundle_len = bundlelen;
	w->nb = nb;
	w->na = na;
	svid_serial_text(cert, w->serial, sizeof(w->serial));
	w->have = 1;
	w->expired_logged = 0;
	w->revoked = 0;
	return 0;
}

int
wl_try_reuse(struct agent *ag, struct wl *w)
{
	X509 *leaf = NULL;
	STACK_OF(X509) *rest = NULL, *chain = NULL;
	struct agent_key k = { 0 };
	uint8_t *tok = NULL;
	size_t toklen;
	char na[HSM_TIME_STR], hex[AGENT_KEYID_HEX];
	int r;

	if ((r = svid_load_pem_file(w->cert_path, &leaf, &rest)) != 0)
		goto out;
	if ((r = svid_cert_spki(leaf, &k.spki, &k.spkilen)) != 0)
		goto out;
	SHA256(k.spki, k.spkilen, k.id);
	k.set = 1;
	if ((r = kh_pubkey(ag->kh, k.id, 0, &tok, &toklen)) != 0) {
		r = hsm_err(r, "key %s of %s is not in the token (%s)", agent_keyid_hex(k.id, hex),
		    w->cert_path, hsm_strerror(r));
		goto out;
	}
	if (toklen != k.spkilen || memcmp(tok, k.spki, toklen) != 0) {
		r = hsm_err(HSM_EPOLICY, "the token's key %s differs from %s's",
		    agent_keyid_hex(k.id, hex), w->cert_path);
		goto out;
	}
	if ((r = svid_verify(ag->root, w->c->id, leaf, rest, k.spki, k.spkilen, &chain)) != 0)
		goto out;
	if ((r = hsm_pkey_new(ag->kh, k.id, k.spki, k.spkilen, 0, &k.pkey)) != 0)
		goto out;
	if ((r = wl_install(ag, w, leaf, chain, &k)) != 0)
		goto out;
	leaf = NULL;
	chain = NULL;
	hsm_fmt_time(w->na, na);
	log_info("%s: reusing certificate serial %s valid until %s (key %s)", w->c->id, w->serial,
	    na, agent_keyid_hex(w->key.id, hex));
 out:
	X509_free(leaf);
	svid_certs_free(rest);
	svid_certs_free(chain);
	agent_key_clear(&k);
	free(tok);
	return r;
}

int
wl_store(const struct wl *w)
{
	int r;

	if ((r = hsm_write_file_atomic(w->cert_path, w->chain_pem, w->chain_len, 0644)) != 0 ||
	    (r = hsm_write_file_atomic(w->bundle_path, w->bundle_pem, w->bundle_len, 0644)) != 0)
		return r;
	return 0;
}
