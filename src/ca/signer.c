/*
 * signer.c - the CA ready to sign (see ca.h): a private keyholder,
 * root.pem and the CA key behind it; the ledger and the audit log; the one
 * failure line every command ends with.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "cert.h"
#include "err.h"
#include "khclient.h"
#include "khsup.h"
#include "ledger.h"
#include "provider_core.h"
#include "provider_kh.h"
#include "spiffe.h"
#include "util.h"

#define KH_EXIT_WAIT_MS 5000	/* how long a keyholder may take to exit after we hang up */

int
ca_fail(const char *sub, int code)
{
	char msg[600];

	snprintf(msg, sizeof(msg), "%s", hsm_err_msg(code));
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "hsmesh ca %s: %s\n", sub, msg);
	return 1;
}

int
ca_path(const char *dir, const char *name, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= len)
		return hsm_err(HSM_EINVAL, "path too long: %s/%s", dir, name);
	return 0;
}

/* ---- the keyholder ---- */

void
ca_kh_stop(struct ca_kh *k)
{
	int waited = 0;
	pid_t r;

	kh_client_free(k->kh);
	k->kh = NULL;
	if (k->pid <= 0)
		return;
	/* Hanging up makes it exit; a stuck token must not hang the CLI forever. */
	while ((r = waitpid(k->pid, NULL, WNOHANG)) == 0 && waited < KH_EXIT_WAIT_MS) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		waited += 10;
	}
	if (r == 0) {
		kill(k->pid, SIGKILL);
		waitpid(k->pid, NULL, 0);
	}
	k->pid = -1;
}

/* How to start the keyholder of ca.yaml's token. */
static void
spawn_opts(const struct ca_config *cfg, struct kh_spawn_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->module = cfg->token.module;
	o->token_uri = cfg->token.uri;
	o->pin_file = cfg->token.pin_file;
	o->pin_env = cfg->token.pin_env;
	o->workers = (int)cfg->token.workers;
	o->workers_min = (int)cfg->token.workers_min;
	o->workers_max = (int)cfg->token.workers_max;
	o->sign_delay_ms = cfg->token.sign_delay_ms;
	o->seccomp = cfg->confine.mode;
	o->seccomp_allow = cfg->confine.kh_allow;
}

int
ca_kh_start(const struct ca_config *cfg, struct ca_kh *k)
{
	struct kh_spawn_opts o;
	int r;

	k->kh = NULL;
	k->pid = -1;
	spawn_opts(cfg, &o);
	if ((r = kh_spawn(&o, &k->kh, &k->pid)) != 0)
		return r;
	if ((r = hsm_provider_init()) != 0) {
		ca_kh_stop(k);
		return r;
	}
	return 0;
}

int
ca_kh_pubkey(struct ca_kh *k, const uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki,
    size_t *spkilen)
{
	char hex[HSM_KEYID_LEN * 2 + 1];
	uint8_t got[HSM_KEYID_LEN];
	int r;

	if ((r = kh_pubkey(k->kh, keyid, 0, spki, spkilen)) != 0)
		return r;
	/* The key it names must be the key we asked for. */
	if ((r = cert_spki_id(*spki, *spkilen, got)) == 0 &&
	    memcmp(got, keyid, HSM_KEYID_LEN) != 0)
		r = hsm_err(HSM_EPROTO, "the keyholder returned a different key for key id %s",
		    hsm_hex(keyid, HSM_KEYID_LEN, hex));
	if (r != 0) {
		free(*spki);
		*spki = NULL;
		*spkilen = 0;
	}
	return r;
}

/* ---- root.pem ---- */

int
ca_root_load(const struct ca_config *cfg, const char *path, X509 **out, int *exists)
{
	char want[SPIFFE_TD_MAX + sizeof(SPIFFE_SCHEME)], *uri = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	X509 *x = NULL;
	int r;

	*out = NULL;
	*exists = 0;
	if ((r = hsm_read_file(path, CERT_MAX_INPUT, &buf, &len)) == HSM_ENOENT)
		return 0;
	if (r != 0)
		return r;
	*exists = 1;
	if (cert_parse(buf, len, &x) != 0) {
		r = hsm_err(HSM_EINVAL, "%s is not a certificate", path);
		goto out;
	}
	snprintf(want, sizeof(want), "%s%s", SPIFFE_SCHEME, cfg->trust_domain);
	if (cert_uri_san(x, &uri) != 0 || strcmp(uri, want) != 0) {
		r = hsm_err(HSM_ECONFIG, "%s is not the root of trust domain '%s' (%s)", path,
		    cfg->trust_domain, uri != NULL ? "it names another" : "no SPIFFE ID");
		goto out;
	}
	*out = x;
	x = NULL;
	r = 0;
 out:
	free(uri);
	free(buf);
	X509_free(x);
	return r;
}

/* ---- the signer ---- */

void
signer_close(struct signer *sg)
{
	EVP_PKEY_free(sg->key);
	sg->key = NULL;
	if (sg->sup != NULL) {
		khsup_stop(sg->sup);	/* frees the client too */
		sg->sup = NULL;
		sg->k.kh = NULL;
	}
	ca_kh_stop(&sg->k);
	X509_free(sg->root);
	sg->root = NULL;
	sk_X509_pop_free(sg->chain, X509_free);
	sg->chain = NULL;
	sk_X509_pop_free(sg->bundle, X509_free);
	sg->bundle = NULL;
}

int
signer_load_root(const struct ca_config *cfg, struct signer *sg)
{
	int r, exists = 0;

	memset(sg, 0, sizeof(*sg));
	sg->k.pid = -1;
	if ((r = ca_installed_load(cfg, &sg->root, &sg->chain)) != 0)
		return r;
	if (sg->root != NULL)
		return ca_path(cfg->state_dir, CA_CERT_FILE, sg->root_path, sizeof(sg->root_path));
	if ((sg->chain = sk_X509_new_null()) == NULL)
		return HSM_ENOMEM;
	if ((r = ca_path(cfg->state_dir, CA_ROOT_FILE, sg->root_path, sizeof(sg->root_path))) != 0 ||
	    (r = ca_root_load(cfg, sg->root_path, &sg->root, &exists)) != 0)
		return r;
	if (!exists)
		return hsm_err(HSM_ENOENT, "no root certificate at %s; run 'hsmesh ca init' first",
		    sg->root_path);
	return 0;
}

/* The signing key for the loaded root, through the keyholder sg->k.kh already runs. */
static int
signer_key(struct signer *sg)
{
	char hex[HSM_KEYID_LEN * 2 + 1];
	uint8_t root_id[HSM_KEYID_LEN], *spki = NULL;
	size_t spkilen = 0;
	int r;

	if ((r = cert_key_id(sg->root, root_id)) != 0)
		return r;
	r = ca_kh_pubkey(&sg->k, root_id, &spki, &spkilen);
	if (r == HSM_ENOENT)
		r = hsm_err(HSM_ENOENT, "the token holds no key for %s (key id %s)", sg->root_path,
		    hsm_hex(root_id, sizeof(root_id), hex));
	if (r == 0)
		r = hsm_pkey_new(sg->k.kh, root_id, spki, spkilen, 0, &sg->key);
	free(spki);
	return r;
}

int
signer_start(const struct ca_config *cfg, struct signer *sg)
{
	int r;

	if ((r = ca_kh_start(cfg, &sg->k)) != 0)
		return r;
	return signer_key(sg);
}

int
signer_start_supervised(const struct ca_config *cfg, struct signer *sg,
    void (*state_cb)(void *arg, int up), void *arg)
{
	struct kh_spawn_opts o;
	int r;

	spawn_opts(cfg, &o);
	if ((r = khsup_start(&o, "CA", state_cb, arg, &sg->sup)) != 0)
		return r;
	sg->k.kh = khsup_client(sg->sup);
	sg->k.pid = -1;		/* the supervisor's to reap */
	if ((r = hsm_provider_init()) != 0)
		return r;
	return signer_key(sg);
}

int
signer_ready(struct signer *sg)
{
	return sg->sup == NULL || khsup_up(sg->sup);
}

/* ---- records ---- */

int
ca_records_open(const struct ca_config *cfg, struct ledger **lg, struct audit **au)
{
	int r;

	*lg = NULL;
	*au = NULL;
	if ((r = ledger_open(cfg->database, lg)) != 0)
		return r;
	if ((r = audit_open_flags(cfg->audit_log, AUDIT_DURABLE, au)) != 0) {
		ledger_close(*lg);
		*lg = NULL;
	}
	return r;
}
