/*
 * state.c - the agent's per-workload state (agent.h): the current SVID in
 * memory, and on disk as <state_dir>/<name>/cert.pem and bundle.pem,
 * reused at start when still good (docs/AGENT.md, "State layout").
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
wl_init(struct agent *ag, struct wl *w, size_t idx)
{
	const struct agent_workload *c = &ag->conf->wl[idx];
	char name[256], hex[2 * SHA256_DIGEST_LENGTH + 1];
	uint8_t md[SHA256_DIGEST_LENGTH];

	memset(w, 0, sizeof(*w));
	w->c = c;
	w->idx = idx;
	sanitise(c->id, name, sizeof(name));
	SHA256((const unsigned char *)c->id, strlen(c->id), md);
	snprintf(w->label, sizeof(w->label), "hsmesh-wl-%.8s", hsm_hex(md, sizeof(md), hex));
	if (asprintf(&w->dir, "%s/%s", ag->conf->state_dir, name) == -1 ||
	    asprintf(&w->cert_path, "%s/cert.pem", w->dir) == -1 ||
	    asprintf(&w->bundle_path, "%s/bundle.pem", w->dir) == -1)
		return HSM_ENOMEM;
	return hsm_mkdir_p(w->dir, 0755);
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
	free(w->dir);
	free(w->cert_path);
	free(w->bundle_path);
}

int
wl_valid(const struct wl *w)
{
	return w->have && time(NULL) < w->na;
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
	if ((bundle = strdup(ag->root_pem)) == NULL) {
		free(pem);
		return HSM_ENOMEM;
	}
	bundlelen = ag->root_pemlen;
	wl_clear_current(w);
	w->cert = cert;
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
