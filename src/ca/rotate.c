/*
 * rotate.c - `hsmesh ca rotate prepare|activate|retire|status`: a new CA
 * key replaces the old one while the mesh runs (docs/LIFECYCLE.md,
 * "Rotating the CA"), and signer_use_set(), which makes the ledger's CA
 * set the signer's.
 *
 * The set lives in the ledger (ledger.h "the CA set"): the first step
 * records the CA of the files (root.pem or ca.pem) as generation 1,
 * active. prepare generates a new key in the token (label
 * "<key.label>.g<N>") and its self-signed certificate, published in every
 * bundle from then on but issuing nothing; activate makes it the issuer
 * (the old one stays in the bundles); retire drops an old CA from the
 * bundles once no unexpired, unrevoked certificate it issued remains.
 * Every step is safe to repeat (a step already done says so and succeeds),
 * refuses with its reason when it is too early, has --dry-run, and is
 * audited before the ledger changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "cert.h"
#include "err.h"
#include "khclient.h"
#include "ledger.h"
#include "provider_core.h"
#include "provider_kh.h"
#include "util.h"

#define SET_MAX 32	/* CAs a ledger's set is read into */

/* One CA of the set, copied out of the ledger. */
struct ca_row {
	int gen;
	char key_id[LEDGER_SPKI_ID_LEN + 1];
	enum ledger_ca_state state;
	X509 *cert;		/* NULL while pending */
	char *chain;		/* PEM, "" for none */
	int64_t changed;
};

struct ca_set {
	struct ca_row row[SET_MAX];
	int n;
	int err;
};

static void
set_free(struct ca_set *s)
{
	for (int i = 0; i < s->n; i++) {
		X509_free(s->row[i].cert);
		free(s->row[i].chain);
	}
	s->n = 0;
}

static int
set_cb(const struct ledger_ca *c, void *arg)
{
	struct ca_set *s = arg;
	struct ca_row *w;
	const unsigned char *p = c->cert;

	if (s->n >= SET_MAX)
		return hsm_err(HSM_EINVAL, "the ledger holds more than %d CAs", SET_MAX);
	w = &s->row[s->n];
	memset(w, 0, sizeof(*w));
	w->gen = c->gen;
	memcpy(w->key_id, c->key_id, sizeof(w->key_id));
	w->state = c->state;
	w->changed = c->changed;
	if ((w->chain = strdup(c->chain)) == NULL)
		return HSM_ENOMEM;
	if (c->cert != NULL && (w->cert = d2i_X509(NULL, &p, (long)c->cert_len)) == NULL) {
		free(w->chain);
		return hsm_err(HSM_EIO, "ledger: CA %d's certificate does not parse", c->gen);
	}
	s->n++;
	return 0;
}

static int
set_read(struct ledger *lg, struct ca_set *s)
{
	memset(s, 0, sizeof(*s));
	return ledger_ca_list(lg, set_cb, s);
}

/* The first CA of state st in s, or NULL. */
static struct ca_row *
set_find(struct ca_set *s, enum ledger_ca_state st)
{
	for (int i = 0; i < s->n; i++)
		if (s->row[i].state == st)
			return &s->row[i];
	return NULL;
}

/* PEM certificates of text into sk (appended). */
static int
pem_certs(const char *text, STACK_OF(X509) *sk)
{
	BIO *b;
	X509 *x;
	int r = 0;

	if (text == NULL || text[0] == '\0')
		return 0;
	if ((b = BIO_new_mem_buf(text, -1)) == NULL)
		return HSM_ENOMEM;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			r = HSM_ENOMEM;
			break;
		}
	BIO_free(b);
	return r;
}

int
signer_use_set(struct signer *sg, struct ledger *lg)
{
	STACK_OF(X509) *chain = NULL, *bundle = NULL;
	struct ca_set s;
	struct ca_row *a;
	int r;

	if ((r = set_read(lg, &s)) != 0)
		goto out;
	if (s.n == 0)
		goto out;
	if ((a = set_find(&s, LEDGER_CA_ACTIVE)) == NULL || a->cert == NULL) {
		r = hsm_err(HSM_ECONFIG, "the ledger's CA set has no active CA");
		goto out;
	}
	if ((chain = sk_X509_new_null()) == NULL || (bundle = sk_X509_new_null()) == NULL) {
		r = HSM_ENOMEM;
		goto out;
	}
	if ((r = pem_certs(a->chain, chain)) != 0)
		goto out;
	for (int i = 0; i < s.n; i++) {
		struct ca_row *w = &s.row[i];

		if ((w->state == LEDGER_CA_PREPARED || w->state == LEDGER_CA_OLD) &&
		    w->cert != NULL && !X509_add_cert(bundle, w->cert, X509_ADD_FLAG_UP_REF)) {
			r = HSM_ENOMEM;
			goto out;
		}
	}
	X509_free(sg->root);
	sg->root = a->cert;
	a->cert = NULL;
	sk_X509_pop_free(sg->chain, X509_free);
	sg->chain = chain;
	sk_X509_pop_free(sg->bundle, X509_free);
	sg->bundle = bundle;
	sg->gen = a->gen;
	chain = bundle = NULL;
 out:
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(bundle, X509_free);
	set_free(&s);
	return r;
}

/* ---- the commands ---- */

/* Everything a step works with. */
struct rot {
	struct ca_config *cfg;
	struct signer sg;	/* the CA of the files: generation 1 of a new set */
	struct ledger *lg;
	struct audit *au;
	struct ca_set set;
	int dry_run;
	int64_t now;
};

static const char *
kid16(const char *key_id, char out[17])
{
	memcpy(out, key_id, 16);
	out[16] = '\0';
	return out;
}

/* The set, with the CA of the files recorded as generation 1 (active) when it is empty. */
static int
rot_bootstrap(struct rot *rt)
{
	uint8_t kid[HSM_KEYID_LEN];
	unsigned char *der = NULL;
	char *pem = NULL;
	size_t pemlen = 0;
	struct ledger_ca c;
	int n, r;

	if ((r = set_read(rt->lg, &rt->set)) != 0 || rt->set.n > 0)
		return r;
	if (rt->dry_run) {
		printf("would record the current CA (%s) as CA 1, active\n", rt->sg.root_path);
		return 0;
	}
	memset(&c, 0, sizeof(c));
	if ((r = cert_key_id(rt->sg.root, kid)) != 0)
		return r;
	hsm_hex(kid, sizeof(kid), c.key_id);
	if ((n = i2d_X509(rt->sg.root, &der)) <= 0)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot encode the CA certificate");
	if (sk_X509_num(rt->sg.chain) > 0)
		r = ca_chain_pem(rt->sg.chain, &pem, &pemlen);
	if (r != 0)
		goto out;
	c.state = LEDGER_CA_ACTIVE;
	c.cert = der;
	c.cert_len = (size_t)n;
	c.chain = pem;
	if ((r = audit_event(rt->au, "ca_recorded", "gen", "1", "key_id", c.key_id, "state",
	    "active", NULL)) != 0 || (r = ledger_ca_add(rt->lg, &c)) != 0)
		goto out;
	printf("recorded the current CA (%s) as CA 1, active\n", rt->sg.root_path);
	r = set_read(rt->lg, &rt->set);
 out:
	OPENSSL_free(der);
	free(pem);
	return r;
}

static int
step_prepare(struct rot *rt)
{
	char label[HSM_MAX_LABEL + 1], hex[LEDGER_SPKI_ID_LEN + 1], k16[17], gen[16];
	char until[HSM_TIME_STR];
	uint8_t keyid[HSM_KEYID_LEN], *spki = NULL;
	size_t spkilen = 0;
	struct ca_row *p = set_find(&rt->set, LEDGER_CA_PREPARED);
	struct ca_kh k = { NULL, -1 };
	struct ledger_ca c;
	const unsigned char *q;
	unsigned char *der = NULL;
	EVP_PKEY *pub = NULL, *key = NULL;
	X509 *x = NULL;
	int64_t na = 0;
	int r, n, created = 0, next = rt->set.n + 1;

	if (p != NULL) {
		printf("CA %d is prepared already (key %s...): nothing to do; activate it with "
		    "'hsmesh ca rotate activate'\n", p->gen, kid16(p->key_id, k16));
		return 0;
	}
	if (rt->set.n == 0)
		next = 2;	/* dry run: CA 1 is not recorded yet */
	snprintf(label, sizeof(label), "%s.g%d", rt->cfg->key_label, next);
	if (rt->dry_run) {
		printf("would generate the key '%s' (%s) in the token and a self-signed "
		    "certificate valid %lld days: CA %d, prepared, in every bundle, issuing nothing\n",
		    label, hsm_keytype_name(rt->cfg->key_type), (long long)(rt->cfg->ca_ttl / 86400),
		    next);
		return 0;
	}
	if ((r = ca_kh_start(rt->cfg, &k)) != 0)
		goto out;
	/* An earlier prepare that stopped after generating the key: take its key again. */
	r = kh_find(k.kh, label, 0, keyid, &spki, &spkilen);
	if (r == HSM_ENOENT) {
		r = kh_generate_flags(k.kh, rt->cfg->key_type, label,
		    rt->cfg->key_replicable ? HSM_GEN_REPLICABLE : 0, 120000, keyid, &spki, &spkilen);
		created = r == 0;
	}
	if (r != 0 || (!created &&
	    (r = ca_adopt_check(&k, keyid, label, rt->cfg->key_replicable)) != 0))
		goto out;
	q = spki;
	if ((pub = d2i_PUBKEY(NULL, &q, (long)spkilen)) == NULL) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot parse the new CA public key");
		goto out;
	}
	if ((r = hsm_pkey_new(k.kh, keyid, spki, spkilen, 0, &key)) != 0 ||
	    (r = hsm_pkey_selftest(key)) != 0 ||
	    (r = cert_make_root(key, pub, rt->cfg->trust_domain, rt->cfg->ca_ttl, &x)) != 0)
		goto out;
	if ((n = i2d_X509(x, &der)) <= 0) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot encode the new CA certificate");
		goto out;
	}
	memset(&c, 0, sizeof(c));
	hsm_hex(keyid, sizeof(keyid), hex);
	memcpy(c.key_id, hex, sizeof(c.key_id));
	c.state = LEDGER_CA_PREPARED;
	c.cert = der;
	c.cert_len = (size_t)n;
	(void)cert_time_unix(X509_get0_notAfter(x), &na);
	snprintf(gen, sizeof(gen), "%d", next);
	if ((r = audit_event(rt->au, "ca_prepared", "gen", gen, "key_id", hex, "label", label,
	    "not_after", hsm_fmt_time(na, until), NULL)) != 0 ||
	    (r = ledger_ca_add(rt->lg, &c)) != 0)
		goto out;
	printf("CA %d prepared: key '%s' %s in the token (key %s...), self-signed, valid "
	    "until %s\n", c.gen, label, created ? "generated" : "reused", kid16(hex, k16), until);
	printf("it is in every bundle from now on (agents learn it at their next renewal); "
	    "restart 'hsmesh ca serve', then after svid_ttl (%s) 'hsmesh ca rotate activate'\n",
	    rt->cfg->svid_ttl_text);
 out:
	EVP_PKEY_free(key);	/* before the client it borrows */
	ca_kh_stop(&k);
	EVP_PKEY_free(pub);
	X509_free(x);
	OPENSSL_free(der);
	free(spki);
	return r;
}

static int
step_activate(struct rot *rt)
{
	struct ca_row *p = set_find(&rt->set, LEDGER_CA_PREPARED);
	struct ca_row *a = set_find(&rt->set, LEDGER_CA_ACTIVE);
	char t[HSM_TIME_STR], k16[17], gen[16], old[16];
	int64_t ready;
	int r;

	if (p == NULL) {
		if (a != NULL && a->gen > 1) {
			printf("CA %d is active already: nothing to do\n", a->gen);
			return 0;
		}
		return hsm_err(HSM_ENOENT, "no prepared CA: run 'hsmesh ca rotate prepare' first");
	}
	/*
	 * Every agent renews at half-life and receives the bundle with each
	 * issuance; after svid_ttl every workload it serves holds the new CA
	 * in its bundle, so a certificate of the new CA is trusted everywhere.
	 */
	ready = p->changed + rt->cfg->svid_ttl;
	if (rt->now < ready)
		return hsm_err(HSM_EAGAIN, "CA %d was prepared %lld s ago; agents and sidecars "
		    "learn the new bundle at their next renewal, within svid_ttl (%s): activate "
		    "after %s", p->gen, (long long)(rt->now - p->changed), rt->cfg->svid_ttl_text,
		    hsm_fmt_time(ready, t));
	if (rt->dry_run) {
		printf("would activate CA %d (key %s...): it issues from then on; CA %d becomes "
		    "old and stays in the bundles until retired\n", p->gen, kid16(p->key_id, k16),
		    a != NULL ? a->gen : 0);
		return 0;
	}
	snprintf(gen, sizeof(gen), "%d", p->gen);
	snprintf(old, sizeof(old), "%d", a != NULL ? a->gen : 0);
	if ((r = audit_event(rt->au, "ca_activated", "gen", gen, "key_id", p->key_id,
	    "previous", old, NULL)) != 0 ||
	    (r = ledger_ca_activate(rt->lg, p->key_id, rt->now)) != 0)
		return r;
	printf("CA %d active: restart 'hsmesh ca serve' to issue with it; CA %s is old, in the "
	    "bundles until 'hsmesh ca rotate retire'\n", p->gen, old);
	return 0;
}

static int
step_retire(struct rot *rt)
{
	char t[HSM_TIME_STR], gen[16];
	unsigned n;
	int64_t latest;
	int r, any = 0;

	for (int i = 0; i < rt->set.n; i++) {
		struct ca_row *o = &rt->set.row[i];

		if (o->state != LEDGER_CA_OLD)
			continue;
		any = 1;
		if ((r = ledger_ca_outstanding(rt->lg, o->key_id, rt->now, &n, &latest)) != 0)
			return r;
		if (n > 0)
			return hsm_err(HSM_EBUSY, "CA %d issued %u certificate%s that %s not expired "
			    "(nor revoked) yet: peers still present %s; retire after %s", o->gen, n,
			    n == 1 ? "" : "s", n == 1 ? "has" : "have", n == 1 ? "it" : "them",
			    hsm_fmt_time(latest, t));
		if (rt->dry_run) {
			printf("would retire CA %d: no unexpired certificate chains to it; it leaves "
			    "the bundles\n", o->gen);
			continue;
		}
		snprintf(gen, sizeof(gen), "%d", o->gen);
		if ((r = audit_event(rt->au, "ca_retired", "gen", gen, "key_id", o->key_id,
		    NULL)) != 0 ||
		    (r = ledger_ca_retire(rt->lg, o->key_id, rt->now, &n, &latest)) != 0)
			return r;
		printf("CA %d retired: out of the bundles from the next restart of 'hsmesh ca "
		    "serve' and the agents' next renewal\n", o->gen);
	}
	if (!any)
		printf("no old CA: nothing to retire\n");
	return 0;
}

static int
step_status(struct rot *rt)
{
	char k16[17], t[HSM_TIME_STR], lt[HSM_TIME_STR], subj[200];
	unsigned n;
	int64_t latest, na;
	int r;

	if (rt->set.n == 0) {
		printf("one CA, not rotated yet: %s\n", rt->sg.root_path);
		return 0;
	}
	for (int i = 0; i < rt->set.n; i++) {
		struct ca_row *w = &rt->set.row[i];

		na = 0;
		subj[0] = '\0';
		if (w->cert != NULL) {
			(void)cert_time_unix(X509_get0_notAfter(w->cert), &na);
			X509_NAME_oneline(X509_get_subject_name(w->cert), subj, sizeof(subj));
		}
		if ((r = ledger_ca_outstanding(rt->lg, w->key_id, rt->now, &n, &latest)) != 0)
			return r;
		printf("CA %d  %-8s key %s...  %s  until %s  unexpired certificates: %u", w->gen,
		    ledger_ca_state_name(w->state), kid16(w->key_id, k16), subj,
		    hsm_fmt_time(na, t), n);
		if (n > 0)
			printf(" (last expires %s)", hsm_fmt_time(latest, lt));
		printf("\n");
	}
	return 0;
}

int
ca_cmd_rotate(const char *cfgpath, const char *step, int dry_run)
{
	struct rot rt;
	char sub[32];
	int r;

	memset(&rt, 0, sizeof(rt));
	rt.sg.k.pid = -1;
	rt.dry_run = dry_run;
	rt.now = (int64_t)time(NULL);
	snprintf(sub, sizeof(sub), "rotate %s", step);
	if (strcmp(step, "prepare") != 0 && strcmp(step, "activate") != 0 &&
	    strcmp(step, "retire") != 0 && strcmp(step, "status") != 0) {
		fprintf(stderr, "hsmesh ca rotate: unknown step '%s' (prepare, activate, retire, "
		    "status)\n", step);
		return 2;
	}
	if ((r = ca_config_load(cfgpath, &rt.cfg)) != 0 ||
	    (r = signer_load_root(rt.cfg, &rt.sg)) != 0 ||
	    (r = ca_records_open(rt.cfg, &rt.lg, &rt.au)) != 0)
		goto out;
	if (strcmp(step, "status") == 0) {
		if ((r = set_read(rt.lg, &rt.set)) == 0)
			r = step_status(&rt);
		goto out;
	}
	/* Only prepare starts a set: a refused or empty step records nothing. */
	if (strcmp(step, "prepare") == 0) {
		if ((r = rot_bootstrap(&rt)) == 0)
			r = step_prepare(&rt);
	} else if ((r = set_read(rt.lg, &rt.set)) != 0)
		goto out;
	else if (strcmp(step, "activate") == 0)
		r = step_activate(&rt);
	else
		r = step_retire(&rt);
	if (r == 0 && fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	set_free(&rt.set);
	signer_close(&rt.sg);
	ledger_close(rt.lg);
	audit_close(rt.au);
	ca_config_free(rt.cfg);
	return r == 0 ? 0 : ca_fail(sub, r);
}
