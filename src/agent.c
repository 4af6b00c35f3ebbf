/*
 * agent.c - the node agent (`hsmesh agent -c agent.yaml`).
 *
 * One agent per node. For every workload identity in agent.yaml it keeps
 * an X.509-SVID whose key lives in the node's token:
 *
 *   - at start, reuses <state_dir>/<name>/cert.pem when its key (named by
 *     the SHA-256 of the certificate's SubjectPublicKeyInfo) is still in
 *     the token, the certificate is unexpired, carries exactly the
 *     workload's SPIFFE ID and chains to the configured root;
 *   - otherwise asks its keyholder for a new key and enrolls with CMPv2
 *     (ir, protected by the one-time join token REF:SECRET as a PBM MAC,
 *     and/or carrying an SGX quote from the evidence producer over the new
 *     key and a CA nonce, evidence.h; with evidence and no token the ir is
 *     unprotected and the CA names the identity from the measurements);
 *   - at renew_at x lifetime (+ up to 10 % jitter) generates a NEW key and
 *     renews with kur signed by the current certificate and key; the old
 *     key is destroyed after a grace period. A CA that is down or refuses
 *     leaves the current certificate in place; attempts are retried with
 *     capped exponential backoff.
 *
 * Whom it talks to: its private keyholder (kh_spawn, a socketpair; this
 * process never loads PKCS#11 nor reads a PIN), the CA over HTTP (CMP,
 * OpenSSL's client), and local clients (proxies) on a Unix socket speaking
 * agentproto.h, authorised by SO_PEERCRED uid against each workload's uid
 * (root may use every identity). A malformed frame closes that peer only.
 *
 * Threads: the main thread runs an epoll loop (local API, signals, timers).
 * A CA exchange or a key generation/destruction runs on a job thread that
 * reports through an eventfd; signatures for local clients go to the
 * keyholder with kh_sign_call(): the keyholder client's reader thread
 * writes each reply to its local client itself (sign_done), so neither the
 * token nor the CA ever blocks the loop, and a signature wakes the loop
 * once (its request), not twice.
 *
 * Also here: `hsmesh agent client ...`, a small debugging client of the
 * local API used by the tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "agentproto.h"
#include "attest.h"
#include "cert.h"
#include "cmds.h"
#include "cmpder.h"
#include "config.h"
#include "err.h"
#include "evidence.h"
#include "khclient.h"
#include "keytypes.h"
#include "log.h"
#include "provider.h"
#include "spiffe.h"
#include "util.h"

#define MAX_CONNS 256
#define MAX_REQ 8192			/* largest request frame a client may send */
#define MAX_OUTBUF (8 * 1024 * 1024)	/* a client that does not read is dropped */
#define MAX_SIGN_INFLIGHT 1024	/* per client (a proxy): a burst of handshakes queues; more is "busy" */
#define MAX_CERT_FILE (256 * 1024)
#define GRACE_MS 30000			/* an old key outlives its rotation by this */
#define SIGN_TIMEOUT_MS 5000
#define KH_GEN_TIMEOUT_MS 60000		/* RSA-3072 on a TPM is slow */
#define CMP_MSG_TIMEOUT 10		/* seconds per HTTP exchange */
#define CMP_TOTAL_TIMEOUT 30		/* seconds per CMP transaction */

/* ---- configuration ---- */

struct wl_conf {
	char *id;
	uid_t uid;
	char *join_token_file;		/* may be NULL: no enrollment possible */
};

struct agent_conf {
	char *path;
	struct cfg_token token;
	char *ca_url;
	char *ca_host;
	char *ca_path;
	int ca_port;
	char *root;
	char *state_dir;
	char *socket;
	enum hsm_keytype key_type;
	double renew_at;
	int64_t retry_min, retry_max;	/* seconds */
	struct wl_conf *wl;
	size_t nwl;
	struct evidence_conf evidence;	/* attestation:, kind EVIDENCE_NONE when absent */
};

/* ---- runtime ---- */

struct key {
	int set;
	uint8_t id[HSM_KEYID_LEN];
	uint8_t *spki;
	size_t spkilen;
	EVP_PKEY *pkey;			/* keyholder-backed (borrows the kh client) */
};

struct wl {
	const struct wl_conf *c;
	size_t idx;
	char *dir, *cert_path, *bundle_path;
	char label[HSM_MAX_LABEL + 1];
	/* The current SVID; have == 0 before the first enrollment. */
	int have;
	X509 *cert;
	struct key key;
	char *chain_pem, *bundle_pem;
	size_t chain_len, bundle_len;
	int64_t nb, na;
	char serial[96];
	/* A key generated for an attempt that failed, reused by the next one. */
	struct key pending;
	uint64_t next_ms;		/* monotonic time of the next attempt; 0 = none */
	int64_t backoff_ms;		/* 0 = last attempt succeeded */
	int expired_logged;
	struct job *job;		/* the running enrollment, if any */
};

enum { JOB_ENROLL = 1, JOB_DESTROY = 2 };

struct job {
	struct job *next;
	struct agent *ag;
	int kind;
	pthread_t th;
	atomic_int done;
	/* JOB_ENROLL */
	struct wl *w;
	int kur;
	X509 *oldcert;
	EVP_PKEY *oldkey;
	struct key key;			/* in: pending key (maybe unset); out: the new key */
	int st;
	int unreachable;		/* no valid answer from the CA */
	int rejected;			/* we refused what the CA issued */
	int keep_key;			/* on failure: keep key for the next attempt */
	char why[512];
	X509 *cert;
	STACK_OF(X509) *chain;		/* intermediates between cert and root */
	/* JOB_DESTROY */
	uint8_t keyid[HSM_KEYID_LEN];
};

/* A key replaced by a rotation: it still signs when named, until destroy_ms. */
struct retired {
	struct retired *next;
	const struct wl *w;
	uint8_t id[HSM_KEYID_LEN];
	uint64_t destroy_ms;
};

/*
 * A signature in flight: its reply goes from the keyholder client's reader
 * thread straight to the client's socket (sign_done), without waking the
 * main loop. It holds a reference to its conn.
 */
struct pending_sign {
	struct agent *ag;
	struct conn *conn;
	uint32_t id;
};

/*
 * A local client. The main thread owns it (list, input, subscriptions);
 * the output side is shared with the keyholder client's reader thread,
 * which writes signature replies: out, outlen, outcap, want_out and closed
 * are under mu, and fd is written to only under mu while !closed; signs
 * (in flight) is atomic.
 * The struct lives while referenced (the main loop's, one per signature in
 * flight).
 */
struct conn {
	struct conn *next;
	int fd;
	uid_t uid;
	pid_t pid;
	atomic_int refs;
	pthread_mutex_t mu;
	int closed;
	uint8_t in[2 * MAX_REQ];
	size_t inlen;
	uint8_t *out;
	size_t outlen, outcap;
	int want_out;
	atomic_int signs;
	uint8_t *sub;			/* per workload: subscribed */
	uint32_t *subid;		/* per workload: the SUBSCRIBE's id */
};

struct agent {
	struct agent_conf *conf;
	struct kh_client *kh;
	pid_t khpid;
	X509 *root;
	char *root_pem;
	size_t root_pemlen;
	struct wl *wl;
	size_t nwl;
	int ep, lfd, sfd, job_efd;
	struct conn *conns;
	int nconns;
	struct job *jobs;
	struct retired *retired;
	int quit;
	int debug;
};

/* ---- small helpers ---- */

static void
certs_free(STACK_OF(X509) *sk)
{
	sk_X509_pop_free(sk, X509_free);
}

static void
key_clear(struct key *k)
{
	if (k == NULL)
		return;
	free(k->spki);
	EVP_PKEY_free(k->pkey);
	memset(k, 0, sizeof(*k));
}

static char *
keyid_hex(const uint8_t id[HSM_KEYID_LEN], char out[2 * HSM_KEYID_LEN + 1])
{
	return hsm_hex(id, HSM_KEYID_LEN, out);
}

/* Uniform random in [0, n) (n > 0); falls back to 0 when RAND fails. */
static uint64_t
rand_below(uint64_t n)
{
	uint64_t r;

	if (n == 0 || RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		return 0;
	return r % n;
}

/*
 * Serials are logged as openssl x509 -serial prints them: upper case, an
 * even number of digits ("0A1B2C", where the ledger has "a1b2c").
 */
static void
cert_serial(X509 *x, char *out, size_t len)
{
	size_t n, i;

	if (len < 2 || cert_serial_hex(X509_get0_serialNumber(x), out + 1, len - 1) != 0) {
		snprintf(out, len, "?");
		return;
	}
	n = strlen(out + 1);
	if (n % 2 == 1)
		out[0] = '0';
	else
		memmove(out, out + 1, n + 1);
	for (i = 0; out[i] != '\0'; i++)
		if (out[i] >= 'a' && out[i] <= 'f')
			out[i] = (char)(out[i] - 'a' + 'A');
}

/* DER SubjectPublicKeyInfo of a certificate, malloc'd. */
static int
cert_spki(X509 *x, uint8_t **out, size_t *len)
{
	unsigned char *der = NULL;
	int n;

	*out = NULL;
	*len = 0;
	if ((n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der)) <= 0)
		return hsm_err_ossl(HSM_ECRYPTO, "encoding the certificate's public key");
	if ((*out = malloc((size_t)n)) == NULL) {
		OPENSSL_free(der);
		return HSM_ENOMEM;
	}
	memcpy(*out, der, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(der);
	return 0;
}

/* Read every certificate of a PEM file: the first into *leaf, the rest into *rest. */
static int
load_certs(const char *path, X509 **leaf, STACK_OF(X509) **rest)
{
	uint8_t *buf = NULL;
	size_t len;
	BIO *b = NULL;
	X509 *x;
	int r;

	*leaf = NULL;
	*rest = NULL;
	if ((r = hsm_read_file(path, MAX_CERT_FILE, &buf, &len)) != 0)
		return r;
	r = HSM_ENOMEM;
	if ((b = BIO_new_mem_buf(buf, (int)len)) == NULL || (*rest = sk_X509_new_null()) == NULL)
		goto out;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (*leaf == NULL)
			*leaf = x;
		else if (!sk_X509_push(*rest, x)) {
			X509_free(x);
			goto out;
		}
	}
	ERR_clear_error();
	if (*leaf == NULL) {
		r = hsm_err(HSM_EINVAL, "%s: no PEM certificate", path);
		goto out;
	}
	r = 0;
 out:
	if (r != 0) {
		X509_free(*leaf);
		certs_free(*rest);
		*leaf = NULL;
		*rest = NULL;
	}
	BIO_free(b);
	free(buf);
	return r;
}

/*
 * The X.509-SVID contract for a certificate the agent is about to use:
 * it certifies spki, carries exactly one URI SAN equal to id, is not a CA,
 * and chains to the configured root (untrusted may hold intermediates).
 * On success *chain (if not NULL) receives the intermediates, root excluded.
 */
static int
verify_svid(X509 *root, const char *id, X509 *leaf, STACK_OF(X509) *untrusted,
    const uint8_t *spki, size_t spkilen, STACK_OF(X509) **chain)
{
	GENERAL_NAMES *sans = NULL;
	X509_STORE *store = NULL;
	X509_STORE_CTX *sc = NULL;
	STACK_OF(X509) *full = NULL;
	uint8_t *got = NULL;
	size_t gotlen;
	int r, nuri = 0, match = 0;

	if (chain != NULL)
		*chain = NULL;
	if ((r = cert_spki(leaf, &got, &gotlen)) != 0)
		goto out;
	if (gotlen != spkilen || memcmp(got, spki, spkilen) != 0) {
		r = hsm_err(HSM_EPOLICY, "certificate does not certify our key");
		goto out;
	}
	sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);

		if (g->type != GEN_URI)
			continue;
		nuri++;
		if ((size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier) == strlen(id) &&
		    memcmp(ASN1_STRING_get0_data(g->d.uniformResourceIdentifier), id,
		    strlen(id)) == 0)
			match = 1;
	}
	if (nuri != 1 || !match) {
		r = hsm_err(HSM_EPOLICY, "certificate does not carry exactly the URI SAN %s "
		    "(%d URI SANs)", id, nuri);
		goto out;
	}
	if (X509_check_ca(leaf) != 0) {
		r = hsm_err(HSM_EPOLICY, "certificate is a CA certificate");
		goto out;
	}
	r = HSM_ENOMEM;
	if ((store = X509_STORE_new()) == NULL || (sc = X509_STORE_CTX_new()) == NULL)
		goto out;
	if (X509_STORE_add_cert(store, root) != 1 ||
	    X509_STORE_CTX_init(sc, store, leaf, untrusted) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "certificate verification set-up");
		goto out;
	}
	X509_STORE_CTX_set_flags(sc, X509_V_FLAG_X509_STRICT);
	if (X509_verify_cert(sc) != 1) {
		r = hsm_err(HSM_EPOLICY, "certificate does not chain to the root: %s",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(sc)));
		ERR_clear_error();
		goto out;
	}
	if (chain != NULL) {
		if ((full = X509_STORE_CTX_get1_chain(sc)) == NULL)
			goto out;
		/* Drop the leaf (first) and the root (last). */
		X509_free(sk_X509_shift(full));
		if (sk_X509_num(full) > 0)
			X509_free(sk_X509_pop(full));
		*chain = full;
		full = NULL;
	}
	r = 0;
 out:
	certs_free(full);
	X509_STORE_CTX_free(sc);
	X509_STORE_free(store);
	GENERAL_NAMES_free(sans);
	free(got);
	return r;
}

/* ---- agent.yaml ---- */

static void
conf_free(struct agent_conf *c)
{
	if (c == NULL)
		return;
	free(c->path);
	cfg_token_clear(&c->token);
	evidence_conf_clear(&c->evidence);
	free(c->ca_url);
	free(c->ca_host);
	free(c->ca_path);
	free(c->root);
	free(c->state_dir);
	free(c->socket);
	for (size_t i = 0; i < c->nwl; i++) {
		free(c->wl[i].id);
		free(c->wl[i].join_token_file);
	}
	free(c->wl);
	free(c);
}

/* http://HOST[:PORT][/PATH]; HOST may be [v6]. */
static int
parse_url(const struct cfg_doc *d, struct agent_conf *c)
{
	const char *u = c->ca_url, *h, *e, *p;
	unsigned long port = 80;
	char *end;

	if (strncmp(u, "http://", 7) != 0)
		return cfg_err(d, "ca.url", "'ca.url' must be an http:// URL (got '%.80s')", u);
	h = u + 7;
	if (*h == '[') {
		if ((e = strchr(h, ']')) == NULL)
			return cfg_err(d, "ca.url", "'ca.url': unterminated [ in host");
		h++;
		p = e + 1;
	} else {
		e = h + strcspn(h, ":/");
		p = e;
	}
	if (e == h)
		return cfg_err(d, "ca.url", "'ca.url' has no host");
	if ((c->ca_host = strndup(h, (size_t)(e - h))) == NULL)
		return HSM_ENOMEM;
	if (*p == ':') {
		p++;
		if (*p < '0' || *p > '9')
			return cfg_err(d, "ca.url", "'ca.url' has a bad port");
		errno = 0;
		port = strtoul(p, &end, 10);
		if (errno != 0 || port == 0 || port > 65535 || (*end != '\0' && *end != '/'))
			return cfg_err(d, "ca.url", "'ca.url' has a bad port");
		p = end;
	}
	if (*p != '\0' && *p != '/')
		return cfg_err(d, "ca.url", "'ca.url' is malformed");
	c->ca_port = (int)port;
	if ((c->ca_path = strdup(*p == '\0' ? "/" : p)) == NULL)
		return HSM_ENOMEM;
	return 0;
}

/* "NAME: MSG A B at line N"; msg may be err.c's buffer, so it is copied first. */
static int
wl_err(const struct cfg_doc *d, const struct cfg_node *n, const char *msg, const char *a,
    const char *b)
{
	char m[400];

	snprintf(m, sizeof(m), "%s%s%s", msg, a, b);
	return hsm_err(HSM_ECONFIG, "%s: %s at line %u", d->name, m, n->line);
}

static int
parse_uid(const char *s, uid_t *out)
{
	unsigned long long v;
	char *end;

	*out = 0;
	if (*s < '0' || *s > '9' || strlen(s) > 10)
		return HSM_EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v >= 4294967295ULL)
		return HSM_EINVAL;
	*out = (uid_t)v;
	return 0;
}

static int
parse_workloads(const struct cfg_doc *d, struct agent_conf *c)
{
	const struct cfg_node *seq = cfg_find(d, "workloads"), *it, *e;
	struct spiffe_id sid;
	size_t n = 0;
	int r;

	if (seq == NULL)
		return cfg_err(d, NULL, "missing required key 'workloads'");
	if (seq->type != CFG_SEQ || seq->child == NULL)
		return cfg_err(d, "workloads", "'workloads' must be a non-empty sequence");
	for (it = seq->child; it != NULL; it = it->next)
		n++;
	if ((c->wl = calloc(n, sizeof(*c->wl))) == NULL)
		return HSM_ENOMEM;
	for (it = seq->child; it != NULL; it = it->next) {
		struct wl_conf *w = &c->wl[c->nwl++];
		int have_uid = 0;

		if (it->type != CFG_MAP)
			return wl_err(d, it, "each workload must be a mapping with id, uid and "
			    "join_token_file", "", "");
		for (e = it->child; e != NULL; e = e->next) {
			if (strcmp(e->key, "id") != 0 && strcmp(e->key, "uid") != 0 &&
			    strcmp(e->key, "join_token_file") != 0)
				return wl_err(d, e, "unknown key 'workloads.", e->key, "'");
			if (e->type != CFG_SCALAR || e->is_null || e->value == NULL ||
			    e->value[0] == '\0')
				return wl_err(d, e, "'workloads.", e->key, "' needs a value");
			if (strcmp(e->key, "id") == 0) {
				if ((r = spiffe_id_parse(e->value, &sid)) != 0)
					return wl_err(d, e, hsm_err_msg(r), "", "");
				if (sid.path[0] == '\0')
					return wl_err(d, e, "workload ID '", e->value,
					    "' has no path (a trust domain is not a workload)");
				free(w->id);
				if ((w->id = strdup(e->value)) == NULL)
					return HSM_ENOMEM;
			} else if (strcmp(e->key, "uid") == 0) {
				if (parse_uid(e->value, &w->uid) != 0)
					return wl_err(d, e, "'workloads.uid' must be a number, not '",
					    e->value, "'");
				have_uid = 1;
			} else {
				free(w->join_token_file);
				if ((r = cfg_resolve_path(d->dir, e->value, &w->join_token_file)) != 0)
					return r;
			}
		}
		if (w->id == NULL)
			return wl_err(d, it, "workload without 'id'", "", "");
		if (!have_uid)
			return wl_err(d, it, "workload ", w->id, " without 'uid'");
		for (size_t i = 0; i + 1 < c->nwl; i++)
			if (strcmp(c->wl[i].id, w->id) == 0)
				return wl_err(d, it, "workload ", w->id, " listed twice");
	}
	return 0;
}

static int
parse_fraction(const struct cfg_doc *d, const char *key, double def, double *out)
{
	const struct cfg_node *n = cfg_find(d, key);
	char *end;
	double v;

	*out = def;
	if (n == NULL)
		return 0;
	if (n->type != CFG_SCALAR || n->value == NULL || n->value[0] == '\0')
		return cfg_err(d, key, "'%s' must be a number", key);
	errno = 0;
	v = strtod(n->value, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v) || v <= 0.0 || v >= 1.0)
		return cfg_err(d, key, "'%s' must be a fraction of the lifetime between 0 and 1, "
		    "not '%.40s'", key, n->value);
	*out = v;
	return 0;
}

static int
conf_from_doc(const struct cfg_doc *d, struct agent_conf **out)
{
	static const char *const known[] = {
		"token.module", "token.uri", "token.pin_file", "token.pin_env",
		"token.test_sign_delay_ms", "token.workers", "ca.url", "ca.root", "state_dir", "socket", "key.type", "renew_at",
		"retry.min", "retry.max", "workloads", "attestation.producer", "attestation.path",
		"attestation.command", "attestation.timeout", NULL
	};
	struct agent_conf *c;
	char *kt = NULL;
	int r;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return HSM_ENOMEM;
	if ((r = cfg_check_known(d, known)) != 0 ||
	    (r = cfg_token_load(d, "token", &c->token)) != 0 ||
	    (r = cfg_require(d, "ca.url")) != 0 || (r = cfg_require(d, "ca.root")) != 0 ||
	    (r = cfg_require(d, "state_dir")) != 0 || (r = cfg_require(d, "socket")) != 0 ||
	    (r = cfg_get_str(d, "ca.url", NULL, &c->ca_url)) != 0 ||
	    (r = cfg_get_path(d, "ca.root", NULL, &c->root)) != 0 ||
	    (r = cfg_get_path(d, "state_dir", NULL, &c->state_dir)) != 0 ||
	    (r = cfg_get_path(d, "socket", NULL, &c->socket)) != 0 ||
	    (r = cfg_get_str(d, "key.type", "ec-p256", &kt)) != 0 ||
	    (r = parse_fraction(d, "renew_at", 0.5, &c->renew_at)) != 0 ||
	    (r = cfg_get_duration(d, "retry.min", "1s", &c->retry_min)) != 0 ||
	    (r = cfg_get_duration(d, "retry.max", "60s", &c->retry_max)) != 0 ||
	    (r = parse_url(d, c)) != 0 || (r = parse_workloads(d, c)) != 0 ||
	    (r = evidence_conf_load(d, "attestation", &c->evidence)) != 0)
		goto out;
	if (hsm_keytype_parse(kt, &c->key_type) != 0) {
		r = cfg_err(d, "key.type", "'key.type' must be ec-p256, ec-p384 or rsa-3072, "
		    "not '%.40s'", kt);
		goto out;
	}
	if (c->retry_max < c->retry_min) {
		r = cfg_err(d, "retry.max", "'retry.max' is shorter than 'retry.min'");
		goto out;
	}
	if (strlen(c->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		r = cfg_err(d, "socket", "'socket' path is too long for a Unix socket");
		goto out;
	}
	*out = c;
	c = NULL;
	r = 0;
 out:
	free(kt);
	conf_free(c);
	return r == HSM_ENOMEM ? r : (r != 0 ? HSM_ECONFIG : 0);
}

static int
conf_load(const char *path, struct agent_conf **out)
{
	struct cfg_doc *d = NULL;
	int r;

	*out = NULL;
	if ((r = cfg_doc_load(path, &d)) != 0)
		return r;
	if ((r = conf_from_doc(d, out)) == 0 && ((*out)->path = strdup(path)) == NULL) {
		conf_free(*out);
		*out = NULL;
		r = HSM_ENOMEM;
	}
	cfg_doc_free(d);
	return r;
}

/* ---- per-workload state on disk ---- */

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

static int
wl_init(struct agent *ag, struct wl *w, size_t idx)
{
	const struct wl_conf *c = &ag->conf->wl[idx];
	char name[256], hex[2 * SHA256_DIGEST_LENGTH + 1];
	uint8_t md[SHA256_DIGEST_LENGTH];
	int r;

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
	if ((r = hsm_mkdir_p(w->dir, 0755)) != 0)
		return r;
	return 0;
}

static void
wl_clear_current(struct wl *w)
{
	X509_free(w->cert);
	w->cert = NULL;
	key_clear(&w->key);
	free(w->chain_pem);
	free(w->bundle_pem);
	w->chain_pem = w->bundle_pem = NULL;
	w->chain_len = w->bundle_len = 0;
	w->have = 0;
}

static void
wl_free(struct wl *w)
{
	if (w == NULL)
		return;
	wl_clear_current(w);
	key_clear(&w->pending);
	free(w->dir);
	free(w->cert_path);
	free(w->bundle_path);
}

/*
 * Install cert (+ intermediates) with key as w's current SVID. Takes
 * ownership of cert, chain and key's contents on success.
 */
static int
wl_install(struct agent *ag, struct wl *w, X509 *cert, STACK_OF(X509) *chain, struct key *k)
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
	certs_free(chain);
	w->key = *k;
	memset(k, 0, sizeof(*k));
	w->chain_pem = pem;
	w->chain_len = pemlen;
	w->bundle_pem = bundle;
	w->bundle_len = bundlelen;
	w->nb = nb;
	w->na = na;
	cert_serial(cert, w->serial, sizeof(w->serial));
	w->have = 1;
	w->expired_logged = 0;
	return 0;
}

/*
 * Startup: reuse cert.pem when its key is still in the token and it is
 * still a valid SVID for this workload. 0 when reused, else a reason.
 */
static int
wl_try_reuse(struct agent *ag, struct wl *w)
{
	X509 *leaf = NULL;
	STACK_OF(X509) *rest = NULL, *chain = NULL;
	struct key k = { 0 };
	uint8_t *tok = NULL;
	size_t toklen;
	char na[HSM_TIME_STR], hex[2 * HSM_KEYID_LEN + 1];
	int r;

	if ((r = load_certs(w->cert_path, &leaf, &rest)) != 0)
		goto out;
	if ((r = cert_spki(leaf, &k.spki, &k.spkilen)) != 0)
		goto out;
	SHA256(k.spki, k.spkilen, k.id);
	k.set = 1;
	if ((r = kh_pubkey(ag->kh, k.id, 0, &tok, &toklen)) != 0) {
		r = hsm_err(r, "key %s of %s is not in the token (%s)", keyid_hex(k.id, hex),
		    w->cert_path, hsm_strerror(r));
		goto out;
	}
	if (toklen != k.spkilen || memcmp(tok, k.spki, toklen) != 0) {
		r = hsm_err(HSM_EPOLICY, "the token's key %s differs from %s's", keyid_hex(k.id, hex),
		    w->cert_path);
		goto out;
	}
	if ((r = verify_svid(ag->root, w->c->id, leaf, rest, k.spki, k.spkilen, &chain)) != 0)
		goto out;
	if ((r = hsm_pkey_new(ag->kh, k.id, k.spki, k.spkilen, 0, &k.pkey)) != 0)
		goto out;
	if ((r = wl_install(ag, w, leaf, chain, &k)) != 0)
		goto out;
	leaf = NULL;
	chain = NULL;
	hsm_fmt_time(w->na, na);
	log_info("%s: reusing certificate serial %s valid until %s (key %s)", w->c->id, w->serial,
	    na, keyid_hex(w->key.id, hex));
 out:
	X509_free(leaf);
	certs_free(rest);
	certs_free(chain);
	key_clear(&k);
	free(tok);
	return r;
}

/* Write cert.pem (leaf + intermediates) and bundle.pem atomically. */
static int
wl_store(struct agent *ag, const struct wl *w)
{
	int r;

	if ((r = hsm_write_file_atomic(w->cert_path, w->chain_pem, w->chain_len, 0644)) != 0 ||
	    (r = hsm_write_file_atomic(w->bundle_path, w->bundle_pem, w->bundle_len, 0644)) != 0)
		return r;
	return 0;
}

/* ---- CA exchanges (job threads) ---- */

static __thread char cmp_last_error[256];

static int
cmp_log_cb(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
	if (level <= OSSL_CMP_LOG_ERR)
		snprintf(cmp_last_error, sizeof(cmp_last_error), "%s", msg);
	log_debug("CMP: %s", msg);
	return 1;
}

/* The last OpenSSL error, with its data, as one line; clears the queue. */
static void
ossl_reason(char *out, size_t len)
{
	unsigned long e, last = 0;
	const char *data = NULL, *d;
	int flags;

	while ((e = ERR_get_error_all(NULL, NULL, NULL, &d, &flags)) != 0) {
		log_debug("OpenSSL: %s%s%s", ERR_reason_error_string(e) != NULL ?
		    ERR_reason_error_string(e) : "?", (flags & ERR_TXT_STRING) != 0 ? ": " : "",
		    (flags & ERR_TXT_STRING) != 0 ? d : "");
		/* Keep the first error that says something about the transport. */
		if (last == 0 || ERR_GET_LIB(last) == ERR_LIB_CMP) {
			last = e;
			data = (flags & ERR_TXT_STRING) != 0 ? d : NULL;
		}
	}
	if (last == 0) {
		snprintf(out, len, "%s", cmp_last_error[0] != '\0' ? cmp_last_error : "no answer");
		return;
	}
	snprintf(out, len, "%s%s%s", ERR_reason_error_string(last) != NULL ?
	    ERR_reason_error_string(last) : "error", data != NULL && *data != '\0' ? ": " : "",
	    data != NULL ? data : "");
	ERR_clear_error();
}

/* certConf callback: accept only a certificate that is a valid SVID for our key. */
static int
certconf_cb(OSSL_CMP_CTX *ctx, X509 *cert, int fail_info, const char **txt)
{
	struct job *j = OSSL_CMP_CTX_get_certConf_cb_arg(ctx);
	STACK_OF(X509) *untrusted = NULL, *caps = NULL, *chain = NULL;
	int r;

	/*
	 * OpenSSL 3.0's only pre-decision (fail_info) is its own comparison of
	 * the certificate's key with ours, which cannot always compare a
	 * keyholder-backed key; verify_svid compares the SPKI bytes instead.
	 */
	(void)fail_info;
	untrusted = OSSL_CMP_CTX_get1_extraCertsIn(ctx);
	caps = OSSL_CMP_CTX_get1_caPubs(ctx);
	if (untrusted == NULL)
		untrusted = sk_X509_new_null();
	for (int i = 0; untrusted != NULL && caps != NULL && i < sk_X509_num(caps); i++) {
		X509 *x = sk_X509_value(caps, i);

		if (X509_up_ref(x) == 1 && !sk_X509_push(untrusted, x))
			X509_free(x);
	}
	r = verify_svid(j->ag->root, j->w->c->id, cert, untrusted, j->key.spki, j->key.spkilen,
	    &chain);
	certs_free(untrusted);
	certs_free(caps);
	if (r != 0) {
		snprintf(j->why, sizeof(j->why), "issued certificate refused: %s", hsm_err_msg(r));
		j->rejected = 1;
		*txt = "certificate is not a valid SVID for the requested identity and key";
		return 1 << OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
	}
	certs_free(j->chain);
	j->chain = chain;
	return 0;
}

/* Read REF:SECRET from the join token file into ctx. The file's bytes are wiped. */
static int
set_join_token(OSSL_CMP_CTX *ctx, const char *path)
{
	char *tok = NULL, *colon;
	size_t len;
	int r;

	if (path == NULL)
		return hsm_err(HSM_ENOENT, "no join_token_file configured");
	if ((r = hsm_secret_read_file(path, &tok, &len)) != 0)
		return hsm_err(r, "join token %s: %s", path, hsm_err_msg(r));
	if ((colon = memchr(tok, ':', len)) == NULL || colon == tok || colon + 1 == tok + len) {
		r = hsm_err(HSM_EINVAL, "join token in %s is not REF:SECRET", path);
		goto out;
	}
	if (OSSL_CMP_CTX_set1_referenceValue(ctx, (unsigned char *)tok, (int)(colon - tok)) != 1 ||
	    OSSL_CMP_CTX_set1_secretValue(ctx, (unsigned char *)colon + 1,
	    (int)(len - (size_t)(colon + 1 - tok))) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "setting the join token");
		goto out;
	}
	r = 0;
 out:
	hsm_secret_free(tok, len);
	return r;
}

/*
 * The certificate request message, built here rather than by the CMP
 * library: the library encodes the new key's public half from the
 * EVP_PKEY, which a keyholder-backed key cannot export. The template's key
 * comes from the SPKI the keyholder returned; the proof of possession is
 * signed through the keyholder. The template asks for exactly the
 * workload's URI SAN; kur also names the certificate it replaces (oldCertID, RFC 4210 D.6).
 */
/*
 * The subject we ask for and send as CMP sender: O=<trust domain>,
 * CN=<path>, cut to the X.520 upper bound of 64.
 */
static X509_NAME *
workload_name(const char *id)
{
	X509_NAME *name;
	struct spiffe_id sid;

	if ((name = X509_NAME_new()) == NULL || spiffe_id_parse(id, &sid) != 0 ||
	    X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
	    (const unsigned char *)sid.trust_domain, (int)strnlen(sid.trust_domain, 64), -1, 0) != 1 ||
	    X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)sid.path + 1, (int)strnlen(sid.path + 1, 64), -1, 0) != 1) {
		X509_NAME_free(name);
		return NULL;
	}
	return name;
}

static int
build_crm(struct job *j, OSSL_CRMF_MSG **out)
{
	OSSL_CRMF_MSG *crm = NULL;
	OSSL_CRMF_CERTID *cid = NULL;
	X509_EXTENSIONS *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	GENERAL_NAME *gn = NULL;
	ASN1_IA5STRING *uri = NULL;
	EVP_PKEY *pub = NULL;
	const unsigned char *p = j->key.spki;
	const EVP_MD *md = j->ag->conf->key_type == HSM_KEY_EC_P384 ? EVP_sha384() : EVP_sha256();
	const X509_NAME *subject = NULL, *issuer = NULL;
	X509_NAME *name = NULL;
	const char *id = j->w->c->id;
	int r = HSM_ECRYPTO;

	*out = NULL;
	if ((pub = d2i_PUBKEY(NULL, &p, (long)j->key.spkilen)) == NULL ||
	    (crm = OSSL_CRMF_MSG_new()) == NULL || OSSL_CRMF_MSG_set_certReqId(crm, 0) != 1)
		goto fail;
	/*
	 * A signature POPO needs a subject (RFC 4211 4.1: else POPOSigningKeyInput,
	 * which OpenSSL does not verify). The SPIFFE ID itself is the URI SAN;
	 * the CA may well rewrite the subject.
	 */
	if ((name = workload_name(id)) == NULL)
		goto fail;
	subject = name;
	if (j->kur) {
		if (X509_NAME_entry_count(X509_get_subject_name(j->oldcert)) > 0)
			subject = X509_get_subject_name(j->oldcert);
		issuer = X509_get_issuer_name(j->oldcert);
		if ((cid = OSSL_CRMF_CERTID_gen(issuer, X509_get0_serialNumber(j->oldcert))) == NULL ||
		    OSSL_CRMF_MSG_set1_regCtrl_oldCertID(crm, cid) != 1)
			goto fail;
	}
	if (OSSL_CRMF_CERTTEMPLATE_fill(OSSL_CRMF_MSG_get0_tmpl(crm), pub, subject, issuer,
	    NULL) != 1)
		goto fail;
	if ((gens = sk_GENERAL_NAME_new_null()) == NULL || (uri = ASN1_IA5STRING_new()) == NULL ||
	    (gn = GENERAL_NAME_new()) == NULL || ASN1_STRING_set(uri, id, (int)strlen(id)) != 1)
		goto fail;
	GENERAL_NAME_set0_value(gn, GEN_URI, uri);
	uri = NULL;
	if (!sk_GENERAL_NAME_push(gens, gn))
		goto fail;
	gn = NULL;
	if (X509V3_add1_i2d(&exts, NID_subject_alt_name, gens, subject == NULL,
	    X509V3_ADD_DEFAULT) != 1 || OSSL_CRMF_MSG_set0_extensions(crm, exts) != 1)
		goto fail;
	exts = NULL;
	if (OSSL_CRMF_MSG_create_popo(OSSL_CRMF_POPO_SIGNATURE, crm, j->key.pkey, md, NULL,
	    NULL) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "signing the proof of possession through the keyholder");
		goto out;
	}
	*out = crm;
	crm = NULL;
	r = 0;
	goto out;
 fail:
	r = hsm_err_ossl(HSM_ECRYPTO, "building the certificate request");
 out:
	OSSL_CRMF_MSG_free(crm);
	OSSL_CRMF_CERTID_free(cid);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	GENERAL_NAME_free(gn);
	ASN1_IA5STRING_free(uri);
	EVP_PKEY_free(pub);
	X509_NAME_free(name);
	return r;
}

/* A CMP client context for our CA, its answers checked against the root. */
static int
cmp_ctx_new(struct agent *ag, OSSL_CMP_CTX **out)
{
	const struct agent_conf *c = ag->conf;
	OSSL_CMP_CTX *ctx;
	X509_STORE *store = NULL;

	*out = NULL;
	if ((ctx = OSSL_CMP_CTX_new(NULL, NULL)) == NULL || (store = X509_STORE_new()) == NULL)
		goto fail;
	if (X509_STORE_add_cert(store, ag->root) != 1 ||
	    OSSL_CMP_CTX_set_log_cb(ctx, cmp_log_cb) != 1 ||
	    OSSL_CMP_CTX_set_log_verbosity(ctx, ag->debug ? OSSL_CMP_LOG_DEBUG : OSSL_CMP_LOG_ERR) != 1 ||
	    OSSL_CMP_CTX_set1_server(ctx, c->ca_host) != 1 ||
	    OSSL_CMP_CTX_set_serverPort(ctx, c->ca_port) != 1 ||
	    OSSL_CMP_CTX_set1_serverPath(ctx, c->ca_path) != 1 ||
	    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT, CMP_MSG_TIMEOUT) != 1 ||
	    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_TOTAL_TIMEOUT, CMP_TOTAL_TIMEOUT) != 1 ||
	    OSSL_CMP_CTX_set0_trustedStore(ctx, store) != 1)
		goto fail;
	*out = ctx;
	return 0;
 fail:
	X509_STORE_free(store);
	OSSL_CMP_CTX_free(ctx);
	return hsm_err_ossl(HSM_ECRYPTO, "CMP set-up");
}

/* Ask the CA for an attestation nonce (an unprotected genm, attest.h). */
static int
get_nonce(struct job *j, uint8_t nonce[ATTEST_NONCE_LEN])
{
	OSSL_CMP_CTX *ctx = NULL;
	OSSL_CMP_ITAV *itav;
	STACK_OF(OSSL_CMP_ITAV) *got = NULL;
	X509_NAME *name = NULL;
	const ASN1_TYPE *v;
	int r;

	if ((r = cmp_ctx_new(j->ag, &ctx)) != 0)
		return r;
	r = HSM_ECRYPTO;
	if ((itav = cmp_itav_new(HSM_OID_ATTEST_NONCE, V_ASN1_OCTET_STRING, NULL, 0)) == NULL ||
	    OSSL_CMP_CTX_push0_genm_ITAV(ctx, itav) != 1) {
		OSSL_CMP_ITAV_free(itav);
		r = hsm_err_ossl(HSM_ECRYPTO, "CMP set-up");
		goto out;
	}
	/* An unprotected message names its sender: the workload's subject. */
	if ((name = workload_name(j->w->c->id)) == NULL ||
	    OSSL_CMP_CTX_set1_subjectName(ctx, name) != 1 ||
	    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_UNPROTECTED_SEND, 1) != 1 ||
	    OSSL_CMP_CTX_set1_recipient(ctx, X509_get_subject_name(j->ag->root)) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "CMP set-up");
		goto out;
	}
	if ((got = OSSL_CMP_exec_GENM_ses(ctx)) == NULL) {
		char reason[300];

		ossl_reason(reason, sizeof(reason));
		j->unreachable = 1;
		r = hsm_err(HSM_EIO, "asking the CA for an attestation nonce: %s", reason);
		goto out;
	}
	itav = cmp_itav_find(got, HSM_OID_ATTEST_NONCE);
	v = itav != NULL ? OSSL_CMP_ITAV_get0_value(itav) : NULL;
	if (v != NULL && v->type == V_ASN1_OCTET_STRING &&
	    ASN1_STRING_length(v->value.octet_string) == ATTEST_NONCE_LEN) {
		memcpy(nonce, ASN1_STRING_get0_data(v->value.octet_string), ATTEST_NONCE_LEN);
		r = 0;
	} else {
		r = hsm_err(HSM_EPROTO, "the CA sent no attestation nonce (is attestation "
		    "configured in its ca.yaml?)");
	}
 out:
	sk_OSSL_CMP_ITAV_pop_free(got, OSSL_CMP_ITAV_free);
	X509_NAME_free(name);
	OSSL_CMP_CTX_free(ctx);
	return r;
}

/*
 * Attestation: a fresh nonce from the CA, a quote over SHA-256(new key's
 * SPKI) || nonce from the evidence producer, carried in the request's
 * generalInfo.
 */
static int
attach_evidence(struct job *j, OSSL_CMP_CTX *ctx)
{
	uint8_t rd[64], *quote = NULL;
	size_t qlen = 0;
	OSSL_CMP_ITAV *itav;
	int r;

	if ((r = get_nonce(j, rd + 32)) != 0)
		return r;
	SHA256(j->key.spki, j->key.spkilen, rd);
	if ((r = evidence_quote(&j->ag->conf->evidence, rd, &quote, &qlen)) != 0)
		return r;
	log_info("%s: %zu-byte quote from the %s evidence producer for key SHA-256 %02x%02x%02x%02x…",
	    j->w->c->id, qlen, evidence_kind_name(j->ag->conf->evidence.kind), rd[0], rd[1], rd[2],
	    rd[3]);
	itav = cmp_itav_new(HSM_OID_SGX_QUOTE, V_ASN1_OCTET_STRING, quote, qlen);
	free(quote);
	if (itav == NULL || OSSL_CMP_CTX_push0_geninfo_ITAV(ctx, itav) != 1) {
		OSSL_CMP_ITAV_free(itav);
		return hsm_err_ossl(HSM_ECRYPTO, "CMP set-up");
	}
	return 0;
}

static void
job_enroll(struct job *j)
{
	struct agent *ag = j->ag;
	const struct agent_conf *c = ag->conf;
	OSSL_CMP_CTX *ctx = NULL;
	OSSL_CRMF_MSG *crm = NULL;
	X509 *got;
	char reason[300], hex[2 * HSM_KEYID_LEN + 1];
	int r, status;

	cmp_last_error[0] = '\0';
	j->keep_key = 1;
	if (!j->key.set) {
		if ((r = kh_generate(ag->kh, c->key_type, j->w->label, KH_GEN_TIMEOUT_MS, j->key.id,
		    &j->key.spki, &j->key.spkilen)) != 0) {
			j->st = r;
			snprintf(j->why, sizeof(j->why), "keyholder: %s", hsm_err_msg(r));
			return;
		}
		j->key.set = 1;
		log_info("%s: generated %s key %s in the token for %s", j->w->c->id,
		    hsm_keytype_name(c->key_type), keyid_hex(j->key.id, hex),
		    j->kur ? "renewal" : "enrollment");
	}
	if (j->key.pkey == NULL &&
	    (r = hsm_pkey_new(ag->kh, j->key.id, j->key.spki, j->key.spkilen, 0, &j->key.pkey)) != 0) {
		j->st = r;
		j->keep_key = 0;
		snprintf(j->why, sizeof(j->why), "key %s: %s", keyid_hex(j->key.id, hex), hsm_err_msg(r));
		return;
	}

	if ((r = cmp_ctx_new(ag, &ctx)) != 0)
		goto fail;
	if (OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1) != 1 ||
	    OSSL_CMP_CTX_set_certConf_cb(ctx, certconf_cb) != 1 ||
	    OSSL_CMP_CTX_set_certConf_cb_arg(ctx, j) != 1)
		goto ossl_fail;
	if (EVP_PKEY_up_ref(j->key.pkey) != 1)
		goto ossl_fail;
	if (OSSL_CMP_CTX_set0_newPkey(ctx, 1, j->key.pkey) != 1) {
		EVP_PKEY_free(j->key.pkey);
		goto ossl_fail;
	}
	if (j->kur) {
		if (OSSL_CMP_CTX_set1_cert(ctx, j->oldcert) != 1 ||
		    OSSL_CMP_CTX_set1_pkey(ctx, j->oldkey) != 1)
			goto ossl_fail;
	} else {
		/* With attestation evidence a join token is optional. */
		if (c->evidence.kind != EVIDENCE_NONE && j->w->c->join_token_file == NULL) {
			X509_NAME *name = workload_name(j->w->c->id);
			int ok = name != NULL && OSSL_CMP_CTX_set1_subjectName(ctx, name) == 1 &&
			    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_UNPROTECTED_SEND, 1) == 1;

			X509_NAME_free(name);
			if (!ok)
				goto ossl_fail;
		} else if ((r = set_join_token(ctx, j->w->c->join_token_file)) != 0) {
			j->st = r;
			snprintf(j->why, sizeof(j->why), "%s", hsm_err_msg(r));
			goto out;
		}
		if (OSSL_CMP_CTX_set1_recipient(ctx, X509_get_subject_name(ag->root)) != 1)
			goto ossl_fail;
	}
	if (c->evidence.kind != EVIDENCE_NONE && (r = attach_evidence(j, ctx)) != 0) {
		j->st = r;
		snprintf(j->why, sizeof(j->why), "%s", hsm_err_msg(r));
		goto out;
	}
	if ((r = build_crm(j, &crm)) != 0) {
		j->st = r;
		j->keep_key = 0;
		snprintf(j->why, sizeof(j->why), "%s", hsm_err_msg(r));
		goto out;
	}
	got = OSSL_CMP_exec_certreq(ctx, j->kur ? OSSL_CMP_KUR : OSSL_CMP_IR, crm);
	if (got == NULL) {
		status = OSSL_CMP_CTX_get_status(ctx);
		if (j->rejected) {
			j->st = HSM_EPOLICY;
			ERR_clear_error();
		} else if (status < 0 || status == OSSL_CMP_PKISTATUS_accepted ||
		    status == OSSL_CMP_PKISTATUS_grantedWithMods) {
			/* No (valid) answer: transport error, timeout, bad protection. */
			ossl_reason(reason, sizeof(reason));
			j->st = HSM_EIO;
			j->unreachable = 1;
			snprintf(j->why, sizeof(j->why), "%s", reason);
		} else {
			char buf[256];

			ERR_clear_error();
			j->st = HSM_EPOLICY;
			snprintf(j->why, sizeof(j->why), "CA refused: %s",
			    OSSL_CMP_CTX_snprint_PKIStatus(ctx, buf, sizeof(buf)) != NULL ? buf :
			    "rejection");
		}
		goto out;
	}
	if (j->chain == NULL) {
		/* The library did not call us (it always should): check now. */
		j->st = hsm_err(HSM_EPOLICY, "issued certificate was not checked");
		snprintf(j->why, sizeof(j->why), "%s", hsm_err_msg(j->st));
		goto out;
	}
	if (X509_up_ref(got) != 1)
		goto ossl_fail;
	j->cert = got;
	j->st = 0;
	goto out;
 ossl_fail:
	r = hsm_err_ossl(HSM_ECRYPTO, "CMP set-up");
 fail:
	j->st = r;
	snprintf(j->why, sizeof(j->why), "%s", hsm_err_msg(r));
 out:
	OSSL_CRMF_MSG_free(crm);
	OSSL_CMP_CTX_free(ctx);
}

static void *
job_main(void *arg)
{
	struct job *j = arg;
	uint64_t one = 1;
	char hex[2 * HSM_KEYID_LEN + 1];
	int r;

	if (j->kind == JOB_ENROLL) {
		job_enroll(j);
	} else if ((r = kh_destroy(j->ag->kh, j->keyid, 0)) != 0 && r != HSM_ENOENT) {
		log_warn("destroying retired key %s: %s", keyid_hex(j->keyid, hex), hsm_err_msg(r));
	} else {
		log_info("destroyed retired key %s", keyid_hex(j->keyid, hex));
	}
	atomic_store(&j->done, 1);
	if (write(j->ag->job_efd, &one, sizeof(one)) != sizeof(one))
		log_warn("job eventfd: %s", strerror(errno));
	return NULL;
}

static void
job_free(struct job *j)
{
	if (j == NULL)
		return;
	X509_free(j->oldcert);
	EVP_PKEY_free(j->oldkey);
	key_clear(&j->key);
	X509_free(j->cert);
	certs_free(j->chain);
	free(j);
}

static int
job_start(struct agent *ag, struct job *j)
{
	int r;

	j->ag = ag;
	if ((r = pthread_create(&j->th, NULL, job_main, j)) != 0)
		return hsm_err(HSM_EIO, "pthread_create: %s", strerror(r));
	j->next = ag->jobs;
	ag->jobs = j;
	return 0;
}

static void
start_destroy(struct agent *ag, const uint8_t id[HSM_KEYID_LEN])
{
	struct job *j = calloc(1, sizeof(*j));
	int r;

	if (j == NULL) {
		log_err("out of memory: retired key left in the token");
		return;
	}
	j->kind = JOB_DESTROY;
	memcpy(j->keyid, id, HSM_KEYID_LEN);
	if ((r = job_start(ag, j)) != 0) {
		log_err("%s", hsm_err_msg(r));
		free(j);
	}
}

/* Start an enrollment (ir) or renewal (kur) for w on a job thread. */
static void
start_enroll(struct agent *ag, struct wl *w)
{
	struct job *j;
	time_t now = time(NULL);
	char t[HSM_TIME_STR];
	int r;

	w->next_ms = 0;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		log_err("%s: out of memory", w->c->id);
		w->next_ms = hsm_now_ms() + 1000;
		return;
	}
	j->kind = JOB_ENROLL;
	j->w = w;
	if (w->have && now < w->na) {
		j->kur = 1;
		j->oldcert = w->cert;
		X509_up_ref(w->cert);
		j->oldkey = w->key.pkey;
		EVP_PKEY_up_ref(w->key.pkey);
	} else if (w->have && !w->expired_logged && ag->conf->evidence.kind != EVIDENCE_NONE &&
	    w->c->join_token_file == NULL) {
		hsm_fmt_time(w->na, t);
		log_err("%s: certificate serial %s EXPIRED at %s and could not be renewed: "
		    "enrolling again with attestation evidence", w->c->id, w->serial, t);
		w->expired_logged = 1;
	} else if (w->have && !w->expired_logged) {
		hsm_fmt_time(w->na, t);
		log_err("%s: certificate serial %s EXPIRED at %s and could not be renewed: "
		    "enrolling again with the join token in %s (a fresh one is needed if it "
		    "was used: hsmesh ca token --id %s)", w->c->id, w->serial, t,
		    w->c->join_token_file != NULL ? w->c->join_token_file : "(none configured)",
		    w->c->id);
		w->expired_logged = 1;
	}
	j->key = w->pending;
	memset(&w->pending, 0, sizeof(w->pending));
	if ((r = job_start(ag, j)) != 0) {
		log_err("%s: %s", w->c->id, hsm_err_msg(r));
		w->pending = j->key;
		memset(&j->key, 0, sizeof(j->key));
		job_free(j);
		w->next_ms = hsm_now_ms() + 1000;
		return;
	}
	w->job = j;
}

/* When to renew: renew_at x lifetime after notBefore, plus up to 10 % of the lifetime. */
static void
schedule_renewal(struct agent *ag, struct wl *w)
{
	int64_t life_ms = ((int64_t)w->na - (int64_t)w->nb) * 1000, at_ms, delay_ms;
	int64_t now_ms = (int64_t)time(NULL) * 1000;
	char t[HSM_TIME_STR];

	if (life_ms < 1000)
		life_ms = 1000;
	at_ms = (int64_t)w->nb * 1000 + (int64_t)(ag->conf->renew_at * (double)life_ms) +
	    (int64_t)rand_below((uint64_t)life_ms / 10 + 1);
	/*
	 * Never sooner than half the renew_at share of what is left: a
	 * certificate that already looks due (a backdated notBefore, an agent
	 * restarted late) is renewed soon, but a renewal can never chain into
	 * an immediate next one.
	 */
	if ((int64_t)w->na * 1000 > now_ms) {
		int64_t floor_ms = now_ms + (int64_t)(ag->conf->renew_at / 2 *
		    (double)((int64_t)w->na * 1000 - now_ms));

		if (at_ms < floor_ms)
			at_ms = floor_ms;
	}
	delay_ms = at_ms - now_ms;
	if (delay_ms < 0)
		delay_ms = 0;
	w->next_ms = hsm_now_ms() + (uint64_t)delay_ms;
	hsm_fmt_time((time_t)(at_ms / 1000), t);
	log_info("%s: renewal of serial %s scheduled in %llds (%s)", w->c->id, w->serial,
	    (long long)(delay_ms / 1000), t);
}

/* Next retry after a failure: retry.min doubling to retry.max, +-10 % jitter. */
static int64_t
schedule_retry(struct agent *ag, struct wl *w)
{
	int64_t min = ag->conf->retry_min * 1000, max = ag->conf->retry_max * 1000, d, j;

	if (w->backoff_ms == 0)
		w->backoff_ms = min;
	else if (w->backoff_ms > max / 2)
		w->backoff_ms = max;
	else
		w->backoff_ms *= 2;
	j = w->backoff_ms / 10;
	d = w->backoff_ms - j + (int64_t)rand_below((uint64_t)(2 * j + 1));
	if (d < 1)
		d = 1;
	w->next_ms = hsm_now_ms() + (uint64_t)d;
	return d;
}

static void push_update(struct agent *ag, struct wl *w);

static void
retire_key(struct agent *ag, const struct wl *w, const uint8_t id[HSM_KEYID_LEN])
{
	struct retired *rk = calloc(1, sizeof(*rk));

	if (rk == NULL) {
		start_destroy(ag, id);
		return;
	}
	rk->w = w;
	memcpy(rk->id, id, HSM_KEYID_LEN);
	rk->destroy_ms = hsm_now_ms() + GRACE_MS;
	rk->next = ag->retired;
	ag->retired = rk;
}

/* Main thread: a finished enrollment job for w. */
static void
enroll_done(struct agent *ag, struct job *j)
{
	struct wl *w = j->w;
	char oldser[96], oldhex[2 * HSM_KEYID_LEN + 1], hex[2 * HSM_KEYID_LEN + 1], t[32];
	uint8_t oldid[HSM_KEYID_LEN];
	int had = w->have, r;
	int64_t d;

	w->job = NULL;
	if (j->st == 0) {
		snprintf(oldser, sizeof(oldser), "%s", w->serial);
		memcpy(oldid, w->key.id, HSM_KEYID_LEN);
		if ((r = wl_install(ag, w, j->cert, j->chain, &j->key)) != 0) {
			j->st = r;
			snprintf(j->why, sizeof(j->why), "%s", hsm_err_msg(r));
			goto failed;
		}
		j->cert = NULL;
		j->chain = NULL;
		if ((r = wl_store(ag, w)) != 0)
			log_err("%s: %s (the certificate is in use but not saved)", w->c->id,
			    hsm_err_msg(r));
		hsm_fmt_time(w->na, t);
		if (had) {
			log_info("%s: rotated certificate serial %s -> %s (key %s -> %s), valid until %s",
			    w->c->id, oldser, w->serial, keyid_hex(oldid, oldhex),
			    keyid_hex(w->key.id, hex), t);
			retire_key(ag, w, oldid);
		} else {
			log_info("%s: enrolled certificate serial %s (key %s), valid until %s",
			    w->c->id, w->serial, keyid_hex(w->key.id, hex), t);
		}
		w->backoff_ms = 0;
		schedule_renewal(ag, w);
		push_update(ag, w);
		return;
	}
 failed:
	if (j->key.set) {
		if (j->keep_key) {
			w->pending = j->key;
			memset(&j->key, 0, sizeof(j->key));
		} else {
			start_destroy(ag, j->key.id);
		}
	}
	d = schedule_retry(ag, w);
	if (w->have && time(NULL) < w->na) {
		hsm_fmt_time(w->na, t);
		log_warn("%s: %s (%s): keeping certificate serial %s valid until %s; retrying in %llds",
		    w->c->id, j->unreachable ? "CA unreachable" : "renewal failed", j->why,
		    w->serial, t, (long long)((d + 500) / 1000));
	} else if (w->have && ag->conf->evidence.kind != EVIDENCE_NONE &&
	    w->c->join_token_file == NULL) {
		hsm_fmt_time(w->na, t);
		log_err("%s: certificate serial %s EXPIRED at %s and enrollment with attestation "
		    "evidence failed (%s%s); retrying in %llds", w->c->id, w->serial, t,
		    j->unreachable ? "CA unreachable: " : "", j->why, (long long)((d + 500) / 1000));
	} else if (w->have) {
		hsm_fmt_time(w->na, t);
		log_err("%s: certificate serial %s EXPIRED at %s and enrollment failed (%s%s): a new "
		    "join token is needed in %s; retrying in %llds", w->c->id, w->serial, t,
		    j->unreachable ? "CA unreachable: " : "", j->why,
		    w->c->join_token_file != NULL ? w->c->join_token_file : "join_token_file",
		    (long long)((d + 500) / 1000));
	} else {
		log_warn("%s: enrollment failed (%s%s): no certificate yet; retrying in %llds",
		    w->c->id, j->unreachable ? "CA unreachable: " : "", j->why,
		    (long long)((d + 500) / 1000));
	}
}

/* Join and apply every finished job. */
static void
reap_jobs(struct agent *ag)
{
	struct job **pp = &ag->jobs, *j;

	while ((j = *pp) != NULL) {
		if (!atomic_load(&j->done)) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		pthread_join(j->th, NULL);
		if (j->kind == JOB_ENROLL)
			enroll_done(ag, j);
		job_free(j);
	}
}

/* ---- local API ---- */

static void conn_close(struct agent *ag, struct conn *c);

static void
conn_unref(struct conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&c->mu);
	free(c->out);
	free(c);
}

/* Write what is buffered; c->mu held. */
static int
conn_flush_locked(struct agent *ag, struct conn *c)
{
	struct epoll_event ev = { .data.ptr = c };
	size_t off = 0;
	ssize_t n;

	if (c->closed)
		return HSM_ECLOSED;
	while (off < c->outlen) {
		n = send(c->fd, c->out + off, c->outlen - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return HSM_ECLOSED;
		off += (size_t)n;
	}
	memmove(c->out, c->out + off, c->outlen - off);
	c->outlen -= off;
	if ((c->outlen > 0) != c->want_out) {
		c->want_out = c->outlen > 0;
		ev.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
		if (epoll_ctl(ag->ep, EPOLL_CTL_MOD, c->fd, &ev) == -1)
			return HSM_EIO;
	}
	return 0;
}

static int
conn_flush(struct agent *ag, struct conn *c)
{
	int r;

	pthread_mutex_lock(&c->mu);
	r = conn_flush_locked(ag, c);
	pthread_mutex_unlock(&c->mu);
	return r;
}

/* Queue a frame (owned by the caller) for c; c->mu held. 0 or an error after which c must go. */
static int
conn_send_locked(struct agent *ag, struct conn *c, const uint8_t *frame, size_t len)
{
	uint8_t *p;
	size_t cap;

	if (c->closed)
		return HSM_ECLOSED;
	if (c->outlen + len > MAX_OUTBUF)
		return hsm_err(HSM_EBUSY, "client pid %ld does not read its replies", (long)c->pid);
	if (c->outlen + len > c->outcap) {
		cap = c->outcap == 0 ? 16384 : c->outcap;
		while (cap < c->outlen + len)
			cap *= 2;
		if ((p = realloc(c->out, cap)) == NULL)
			return HSM_ENOMEM;
		c->out = p;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, frame, len);
	c->outlen += len;
	return conn_flush_locked(ag, c);
}

/* Queue a frame (owned by the caller) for c; 0 or an error after which c must be closed. */
static int
conn_send(struct agent *ag, struct conn *c, const uint8_t *frame, size_t len)
{
	int r;

	pthread_mutex_lock(&c->mu);
	r = conn_send_locked(ag, c, frame, len);
	pthread_mutex_unlock(&c->mu);
	return r;
}

static int
send_error(struct agent *ag, struct conn *c, uint8_t type, uint32_t id, int st, const char *text)
{
	uint8_t *f;
	size_t len;
	int r;

	if ((r = ag_encode_error(type, id, st, text, &f, &len)) != 0)
		return r;
	r = conn_send(ag, c, f, len);
	free(f);
	return r;
}

static int
wl_valid(const struct wl *w)
{
	return w->have && time(NULL) < w->na;
}

static int
send_svid(struct agent *ag, struct conn *c, uint8_t type, uint32_t id, const struct wl *w)
{
	struct ag_svid s;
	uint8_t *f;
	size_t len;
	int r;

	memset(&s, 0, sizeof(s));
	snprintf(s.spiffe_id, sizeof(s.spiffe_id), "%s", w->c->id);
	s.not_after = (uint64_t)w->na;
	s.chain = (const uint8_t *)w->chain_pem;
	s.chainlen = w->chain_len;
	s.bundle = (const uint8_t *)w->bundle_pem;
	s.bundlelen = w->bundle_len;
	if ((r = ag_encode_svid(type, id, &s, &f, &len)) != 0)
		return r;
	r = conn_send(ag, c, f, len);
	free(f);
	return r;
}

/* After a rotation: an UPDATE to every client subscribed to w. */
static void
push_update(struct agent *ag, struct wl *w)
{
	struct conn *c, *next;
	int n = 0;

	for (c = ag->conns; c != NULL; c = next) {
		next = c->next;
		if (!c->sub[w->idx])
			continue;
		if (send_svid(ag, c, AG_T_UPDATE, c->subid[w->idx], w) != 0)
			conn_close(ag, c);
		else
			n++;
	}
	if (n > 0)
		log_info("%s: pushed the new certificate to %d subscriber%s", w->c->id, n,
		    n == 1 ? "" : "s");
}

/*
 * Which workload a request from uid names. An empty ID means the only one
 * uid may use. Another uid's ID reads like an unknown one.
 */
static int
resolve(struct agent *ag, uid_t uid, const char *id, struct wl **out)
{
	struct wl *found = NULL;
	int n = 0;

	*out = NULL;
	for (size_t i = 0; i < ag->nwl; i++) {
		struct wl *w = &ag->wl[i];

		if (uid != 0 && w->c->uid != uid)
			continue;
		if (id[0] != '\0' && strcmp(w->c->id, id) != 0)
			continue;
		found = w;
		n++;
	}
	if (n == 0)
		return hsm_err(HSM_EPERM, id[0] != '\0' ? "uid %lu may not use this SPIFFE ID" :
		    "uid %lu has no workload identity", (unsigned long)uid);
	if (n > 1)
		return hsm_err(HSM_EINVAL, "uid %lu may use several SPIFFE IDs: name one",
		    (unsigned long)uid);
	*out = found;
	return 0;
}

/*
 * The key a SIGN may name for w: its current key, or one a rotation
 * retired less than GRACE_MS ago (a proxy still presenting the old
 * certificate). NULL for any other.
 */
static const uint8_t *
wl_signing_key(const struct agent *ag, const struct wl *w, const uint8_t id[HSM_KEYID_LEN])
{
	uint64_t now = hsm_now_ms();

	if (memcmp(w->key.id, id, HSM_KEYID_LEN) == 0)
		return w->key.id;
	for (const struct retired *rk = ag->retired; rk != NULL; rk = rk->next)
		if (rk->w == w && rk->destroy_ms > now && memcmp(rk->id, id, HSM_KEYID_LEN) == 0)
			return rk->id;
	return NULL;
}

/*
 * A signature ended: reply to its client at once, from the keyholder
 * client's reader thread (kh_sign_call), under the client's lock. A client
 * gone meanwhile (closed) gets nothing; a reply it cannot take makes it go
 * (the main loop then sees the shut socket and closes it).
 */
static void
sign_done(void *arg, int st, const uint8_t *sig, size_t siglen)
{
	struct pending_sign *ps = arg;
	struct conn *c = ps->conn;
	uint8_t *f = NULL;
	size_t len = 0;

	if (st == 0)
		st = ag_encode_sig(ps->id, sig, siglen, &f, &len);
	else
		st = ag_encode_error(AG_T_SIGN | AG_T_REPLY, ps->id, st, hsm_err_msg(st), &f, &len);
	pthread_mutex_lock(&c->mu);
	if (!c->closed && (st != 0 || conn_send_locked(ps->ag, c, f, len) != 0))
		shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->mu);
	/* Only now: shutdown_agent waits for signs to reach 0 to know the reply is out. */
	atomic_fetch_sub(&c->signs, 1);
	free(f);
	conn_unref(c);
	free(ps);
}

static int
handle_sign(struct agent *ag, struct conn *c, const struct ag_request *rq, struct wl *w)
{
	struct pending_sign *ps;
	const uint8_t *key = w->key.id;
	char hex[2 * HSM_KEYID_LEN + 1];
	int r;

	if (rq->has_keyid && (key = wl_signing_key(ag, w, rq->keyid)) == NULL) {
		r = hsm_err(HSM_ENOENT, "key %.16s is not a current or retired key of %s",
		    keyid_hex(rq->keyid, hex), w->c->id);
		log_warn("local client uid %lu pid %ld: %s", (unsigned long)c->uid, (long)c->pid,
		    hsm_err_msg(r));
		return send_error(ag, c, AG_T_SIGN | AG_T_REPLY, rq->id, r, hsm_err_msg(r));
	}
	/* A slot in flight, given back by sign_done (reader thread) or below. */
	if (atomic_fetch_add(&c->signs, 1) >= MAX_SIGN_INFLIGHT) {
		atomic_fetch_sub(&c->signs, 1);
		return send_error(ag, c, AG_T_SIGN | AG_T_REPLY, rq->id, HSM_EBUSY,
		    "too many signatures in flight");
	}
	if ((ps = calloc(1, sizeof(*ps))) == NULL) {
		atomic_fetch_sub(&c->signs, 1);
		return HSM_ENOMEM;
	}
	ps->ag = ag;
	ps->conn = c;
	ps->id = rq->id;
	atomic_fetch_add(&c->refs, 1);
	/* From here sign_done may run on the reader thread at any time. */
	if ((r = kh_sign_call(ag->kh, key, rq->alg, rq->digest, rq->dlen, SIGN_TIMEOUT_MS,
	    sign_done, ps)) != 0) {
		atomic_fetch_sub(&c->signs, 1);
		atomic_fetch_sub(&c->refs, 1);	/* never the last: the loop holds one */
		free(ps);
		return send_error(ag, c, AG_T_SIGN | AG_T_REPLY, rq->id, r, hsm_err_msg(r));
	}
	return 0;
}

/* One validated request; 0, or an error after which c is closed. */
static int
handle_request(struct agent *ag, struct conn *c, const struct ag_request *rq)
{
	uint8_t rtype = rq->type | AG_T_REPLY;
	struct wl *w;
	int r;

	if ((r = resolve(ag, c->uid, rq->spiffe_id, &w)) != 0) {
		log_warn("local client uid %lu pid %ld: %s", (unsigned long)c->uid, (long)c->pid,
		    hsm_err_msg(r));
		return send_error(ag, c, rtype, rq->id, r, hsm_err_msg(r));
	}
	if (rq->type == AG_T_SUBSCRIBE) {
		c->sub[w->idx] = 1;
		c->subid[w->idx] = rq->id;
	}
	if (!wl_valid(w))
		return send_error(ag, c, rtype, rq->id, HSM_EAGAIN, w->have ?
		    "certificate expired; renewal in progress" : "not enrolled yet");
	switch (rq->type) {
	case AG_T_GET_SVID:
	case AG_T_SUBSCRIBE:
		log_debug("local client uid %lu pid %ld: %s %s", (unsigned long)c->uid, (long)c->pid,
		    rq->type == AG_T_GET_SVID ? "GET_SVID" : "SUBSCRIBE", w->c->id);
		return send_svid(ag, c, rtype, rq->id, w);
	case AG_T_SIGN:
		return handle_sign(ag, c, rq, w);
	default:
		return HSM_EPROTO;
	}
}

static void
conn_read(struct agent *ag, struct conn *c)
{
	ssize_t n;
	size_t off = 0;
	int r;

	n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		conn_close(ag, c);
		return;
	}
	c->inlen += (size_t)n;
	for (;;) {
		struct ag_frame f;
		struct ag_request rq;
		int flen = ag_frame_parse(c->in + off, c->inlen - off, &f);

		if (flen == 0) {
			/* Incomplete: a request never needs more than MAX_REQ bytes. */
			if (c->inlen - off >= 4 && ((uint32_t)c->in[off] << 24 |
			    (uint32_t)c->in[off + 1] << 16 | (uint32_t)c->in[off + 2] << 8 |
			    c->in[off + 3]) > MAX_REQ - 4)
				flen = HSM_EPROTO;
			else
				break;
		}
		if (flen < 0 || (size_t)flen > MAX_REQ || ag_request_decode(&f, &rq) != 0) {
			log_warn("local client uid %lu pid %ld sent a malformed frame: closed",
			    (unsigned long)c->uid, (long)c->pid);
			conn_close(ag, c);
			return;
		}
		off += (size_t)flen;
		if ((r = handle_request(ag, c, &rq)) != 0) {
			log_warn("local client uid %lu pid %ld: %s: closed", (unsigned long)c->uid,
			    (long)c->pid, hsm_err_msg(r));
			conn_close(ag, c);
			return;
		}
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
}

static void
conn_close(struct agent *ag, struct conn *c)
{
	struct conn **pp;

	for (pp = &ag->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	/* Signatures still in flight see closed and drop their replies. */
	pthread_mutex_lock(&c->mu);
	c->closed = 1;
	epoll_ctl(ag->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	pthread_mutex_unlock(&c->mu);
	free(c->sub);
	free(c->subid);
	c->sub = NULL;
	c->subid = NULL;
	conn_unref(c);
	ag->nconns--;
}

static void
accept_conn(struct agent *ag)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct epoll_event ev;
	struct conn *c;
	int fd, allowed = 0;

	if ((fd = accept4(ag->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == -1) {
		close(fd);
		return;
	}
	for (size_t i = 0; i < ag->nwl; i++)
		if (ag->wl[i].c->uid == cred.uid)
			allowed = 1;
	if (cred.uid != 0 && !allowed) {
		log_warn("refused local client uid %lu pid %ld: no workload for this uid",
		    (unsigned long)cred.uid, (long)cred.pid);
		close(fd);
		return;
	}
	if (ag->nconns >= MAX_CONNS) {
		log_warn("refused local client uid %lu pid %ld: too many clients",
		    (unsigned long)cred.uid, (long)cred.pid);
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->sub = calloc(ag->nwl, 1)) == NULL ||
	    (c->subid = calloc(ag->nwl, sizeof(*c->subid))) == NULL) {
		if (c != NULL) {
			free(c->sub);
			free(c);
		}
		close(fd);
		return;
	}
	c->fd = fd;
	c->uid = cred.uid;
	c->pid = cred.pid;
	atomic_init(&c->refs, 1);	/* the main loop's */
	atomic_init(&c->signs, 0);
	pthread_mutex_init(&c->mu, NULL);
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(ag->ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
		close(fd);
		free(c->sub);
		free(c->subid);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return;
	}
	c->next = ag->conns;
	ag->conns = c;
	ag->nconns++;
	log_debug("local client uid %lu pid %ld connected", (unsigned long)c->uid, (long)c->pid);
}

static int
listen_socket(struct agent *ag)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	const char *path = ag->conf->socket;
	struct stat sb;
	int fd;

	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode))
			return hsm_err(HSM_EEXIST, "%s exists and is not a socket", path);
		unlink(path);
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return hsm_err(HSM_EIO, "socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    chmod(path, 0666) == -1 || listen(fd, 64) == -1) {
		int e = errno;

		close(fd);
		return hsm_err(HSM_EIO, "socket %s: %s", path, strerror(e));
	}
	ag->lfd = fd;
	return 0;
}

/* ---- the daemon ---- */

static int
load_root(struct agent *ag)
{
	X509 *leaf = NULL;
	STACK_OF(X509) *rest = NULL;
	int r;

	char why[300];

	if ((r = load_certs(ag->conf->root, &leaf, &rest)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		return hsm_err(HSM_ECONFIG, "%s: ca.root: %s", ag->conf->path, why);
	}
	certs_free(rest);
	if (X509_check_ca(leaf) == 0) {
		X509_free(leaf);
		return hsm_err(HSM_ECONFIG, "%s: ca.root %s is not a CA certificate",
		    ag->conf->path, ag->conf->root);
	}
	ag->root = leaf;
	return cert_pem_chain(leaf, NULL, &ag->root_pem, &ag->root_pemlen);
}

static int
epoll_add(int ep, int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		return hsm_err(HSM_EIO, "epoll_ctl: %s", strerror(errno));
	return 0;
}

/* Tags for the fixed fds (conns are tagged with their struct conn). */
static char tag_listen, tag_signal, tag_job;

static int
next_timeout(struct agent *ag)
{
	uint64_t now = hsm_now_ms(), soonest = 0;

	for (size_t i = 0; i < ag->nwl; i++) {
		const struct wl *w = &ag->wl[i];

		if (w->job == NULL && w->next_ms != 0 && (soonest == 0 || w->next_ms < soonest))
			soonest = w->next_ms;
	}
	for (struct retired *rk = ag->retired; rk != NULL; rk = rk->next)
		if (soonest == 0 || rk->destroy_ms < soonest)
			soonest = rk->destroy_ms;
	if (soonest == 0)
		return -1;
	if (soonest <= now)
		return 0;
	return soonest - now > 60000 ? 60000 : (int)(soonest - now);
}

static void
run_timers(struct agent *ag)
{
	uint64_t now = hsm_now_ms();
	struct retired **pp = &ag->retired, *rk;

	for (size_t i = 0; i < ag->nwl; i++) {
		struct wl *w = &ag->wl[i];

		if (w->job == NULL && w->next_ms != 0 && w->next_ms <= now)
			start_enroll(ag, w);
	}
	while ((rk = *pp) != NULL) {
		if (rk->destroy_ms > now) {
			pp = &rk->next;
			continue;
		}
		*pp = rk->next;
		start_destroy(ag, rk->id);
		free(rk);
	}
}

/* SIGTERM/SIGINT: quit; SIGCHLD: the keyholder died, which is fatal. */
static void
handle_signals(struct agent *ag)
{
	struct signalfd_siginfo si;
	int status;

	while (read(ag->sfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD) {
			if (ag->khpid > 0 && waitpid(ag->khpid, &status, WNOHANG) == ag->khpid) {
				ag->khpid = 0;
				if (ag->quit)
					continue;
				log_err("keyholder exited (%s %d): stopping",
				    WIFSIGNALED(status) ? "signal" : "status",
				    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
				ag->quit = 2;
			}
			continue;
		}
		log_info("signal %d: shutting down", (int)si.ssi_signo);
		ag->quit = 1;
	}
}

static int
loop(struct agent *ag)
{
	struct epoll_event evs[64];
	int n;

	while (!ag->quit) {
		n = epoll_wait(ag->ep, evs, 64, next_timeout(ag));
		if (n < 0 && errno != EINTR)
			return hsm_err(HSM_EIO, "epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;

			if (tag == &tag_listen) {
				accept_conn(ag);
			} else if (tag == &tag_signal) {
				handle_signals(ag);
			} else if (tag == &tag_job) {
				uint64_t v;

				if (read(ag->job_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					log_warn("job eventfd: %s", strerror(errno));
				reap_jobs(ag);
			} else {
				struct conn *c = tag;
				int live = 0;

				/* Skip a conn closed by an earlier event of this batch. */
				for (struct conn *x = ag->conns; x != NULL; x = x->next)
					if (x == c)
						live = 1;
				if (!live)
					continue;
				if ((evs[i].events & EPOLLOUT) != 0 && conn_flush(ag, c) != 0) {
					conn_close(ag, c);
					continue;
				}
				if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0)
					conn_read(ag, c);
			}
		}
		run_timers(ag);
	}
	return 0;
}

/*
 * The keyholder died: its client's reader fails every signature in flight
 * (sign_done), and each client must read that error, not a bare close.
 * Wait (at most a second) for those replies before the clients go.
 */
static void
await_failed_signs(struct agent *ag)
{
	for (uint64_t until = hsm_now_ms() + 1000; hsm_now_ms() < until; usleep(5000)) {
		int busy = 0;

		for (struct conn *c = ag->conns; c != NULL && !busy; c = c->next)
			busy = atomic_load(&c->signs) != 0;
		if (!busy)
			return;
	}
	log_warn("closing local clients with signatures still in flight");
}

static void
shutdown_agent(struct agent *ag)
{
	struct job *j;
	int status;

	if (ag->quit == 2)
		await_failed_signs(ag);

	while (ag->conns != NULL)
		conn_close(ag, ag->conns);
	if (ag->lfd != -1) {
		close(ag->lfd);
		unlink(ag->conf->socket);
	}
	/*
	 * A CA exchange cannot be cancelled. Give running jobs a moment; past
	 * that, stop the keyholder and leave at once without freeing what
	 * their threads still use.
	 */
	for (uint64_t until = hsm_now_ms() + 3000; ag->jobs != NULL; ) {
		int running = 0;

		for (j = ag->jobs; j != NULL; j = j->next)
			if (!atomic_load(&j->done))
				running = 1;
		if (!running)
			break;
		if (hsm_now_ms() >= until) {
			log_warn("abandoning a CA exchange in progress");
			if (ag->khpid > 0) {
				kill(ag->khpid, SIGTERM);
				waitpid(ag->khpid, &status, 0);
			}
			fflush(stderr);
			_exit(ag->quit == 2 ? 1 : 0);
		}
		usleep(20000);
	}
	while ((j = ag->jobs) != NULL) {
		ag->jobs = j->next;
		pthread_join(j->th, NULL);
		if (j->kind == JOB_ENROLL) {
			/* Keep a certificate we got; drop keys nothing will use. */
			enroll_done(ag, j);
		}
		job_free(j);
	}
	/* Retired and pending keys would be orphans in the token: destroy them now. */
	for (struct retired *rk = ag->retired, *next; rk != NULL; rk = next) {
		next = rk->next;
		if (ag->kh != NULL && ag->khpid > 0)
			(void)kh_destroy(ag->kh, rk->id, 2000);
		free(rk);
	}
	ag->retired = NULL;
	for (size_t i = 0; i < ag->nwl; i++) {
		if (ag->wl[i].pending.set && ag->kh != NULL && ag->khpid > 0)
			(void)kh_destroy(ag->kh, ag->wl[i].pending.id, 2000);
		wl_free(&ag->wl[i]);
	}
	free(ag->wl);
	ag->wl = NULL;
	kh_client_free(ag->kh);
	ag->kh = NULL;
	if (ag->khpid > 0)
		waitpid(ag->khpid, &status, 0);
	X509_free(ag->root);
	free(ag->root_pem);
	if (ag->ep != -1)
		close(ag->ep);
	if (ag->sfd != -1)
		close(ag->sfd);
	if (ag->job_efd != -1)
		close(ag->job_efd);
}

static void
agent_usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh agent -c agent.yaml [-d]\n"
	    "       hsmesh agent client --socket PATH get [SPIFFE_ID] [--bundle FILE]\n"
	    "       hsmesh agent client --socket PATH sign [SPIFFE_ID] [--key HEX] < DATA > SIG.der\n"
	    "       hsmesh agent client --socket PATH watch [SPIFFE_ID] [--count N]\n"
	    "\n"
	    "The node agent: keeps an X.509-SVID per workload (keys in the token, enrolment\n"
	    "and renewal with CMP) and serves them on a local Unix socket.\n"
	    "\n"
	    "  -c FILE   agent.yaml (see docs/AGENT.md)\n"
	    "  -d        debug logging\n"
	    "\n"
	    "'agent client' is a debugging client of the local API: 'get' prints the\n"
	    "certificate chain (PEM), 'sign' signs the SHA-256 of stdin with the\n"
	    "workload's current key, or with the key --key names (64 hex digits: the\n"
	    "SHA-256 of its SubjectPublicKeyInfo; current or just retired), DER\n"
	    "signature on stdout; 'watch' prints one line per certificate received\n"
	    "(the current one, then each rotation).\n");
}

/* ---- hsmesh agent client ---- */

static int
client_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return hsm_err(HSM_EINVAL, "socket path too long");
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return hsm_err(HSM_EIO, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int e = errno;

		close(fd);
		return hsm_err(HSM_EIO, "connect %s: %s", path, strerror(e));
	}
	return fd;
}

#define CLOSED_MSG "the agent closed the connection (is this uid allowed?)"

/* Write everything; a socket gets send(MSG_NOSIGNAL) so a closed peer is an error, not SIGPIPE. */
static int
write_all(int fd, const uint8_t *p, size_t len, int sock)
{
	while (len > 0) {
		ssize_t n = sock ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && sock && (errno == EPIPE || errno == ECONNRESET))
			return hsm_err(HSM_ECLOSED, CLOSED_MSG);
		if (n <= 0)
			return hsm_err(HSM_EIO, "write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read one frame into buf (AG_MAX_FRAME bytes) and decode it as a reply. */
static int
client_read(int fd, uint8_t *buf, size_t *have, struct ag_reply *r, size_t *used)
{
	struct ag_frame f;
	ssize_t n;
	int flen;

	for (;;) {
		if ((flen = ag_frame_parse(buf, *have, &f)) < 0)
			return hsm_err(HSM_EPROTO, "malformed frame from the agent");
		if (flen > 0)
			break;
		n = read(fd, buf + *have, AG_MAX_FRAME - *have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return hsm_err(HSM_ECLOSED, CLOSED_MSG);
		if (n < 0)
			return hsm_err(HSM_EIO, "read: %s", strerror(errno));
		*have += (size_t)n;
	}
	if (ag_reply_decode(&f, r) != 0)
		return hsm_err(HSM_EPROTO, "malformed reply from the agent");
	*used = (size_t)flen;
	if (r->status != 0)
		return hsm_err(r->status, "agent: %s", r->errtext[0] != '\0' ? r->errtext :
		    hsm_strerror(r->status));
	return 0;
}

static void
print_svid_line(const struct ag_reply *r)
{
	BIO *b = BIO_new_mem_buf(r->svid.chain, (int)r->svid.chainlen);
	X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	char serial[96] = "?", hex[2 * HSM_KEYID_LEN + 1] = "?";
	uint8_t *spki = NULL, md[SHA256_DIGEST_LENGTH];
	size_t len;

	if (x != NULL) {
		cert_serial(x, serial, sizeof(serial));
		if (cert_spki(x, &spki, &len) == 0) {
			SHA256(spki, len, md);
			hsm_hex(md, sizeof(md), hex);
		}
	}
	printf("%s %s serial %s key %s not_after %llu\n",
	    r->type == AG_T_UPDATE ? "update" : "svid", r->svid.spiffe_id, serial, hex,
	    (unsigned long long)r->svid.not_after);
	fflush(stdout);
	free(spki);
	X509_free(x);
	BIO_free(b);
}

static int
client_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "bundle", required_argument, NULL, 'b' },
		{ "count", required_argument, NULL, 'n' },
		{ "key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *sock = NULL, *bundle = NULL, *cmd, *id = "";
	uint8_t *buf = NULL, *req = NULL, *data = NULL, md[SHA256_DIGEST_LENGTH];
	uint8_t keyid[HSM_KEYID_LEN];
	int has_key = 0;
	size_t have = 0, used, reqlen, dlen = 0, cap = 0;
	unsigned long count = 0, seen = 0;
	struct ag_reply r;
	struct timeval tv = { 30, 0 };
	char *end;
	int ch, fd = -1, st, ret = 1;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:b:n:k:h", lopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			sock = optarg;
			break;
		case 'b':
			bundle = optarg;
			break;
		case 'n':
			errno = 0;
			count = strtoul(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || optarg[0] == '-') {
				fprintf(stderr, "hsmesh agent client: bad --count\n");
				return 2;
			}
			break;
		case 'k':
			if (strlen(optarg) != 2 * HSM_KEYID_LEN ||
			    hsm_unhex(optarg, strlen(optarg), keyid) != 0) {
				fprintf(stderr, "hsmesh agent client: --key wants %d hex digits\n",
				    2 * HSM_KEYID_LEN);
				return 2;
			}
			has_key = 1;
			break;
		case 'h':
			agent_usage(stdout);
			return 0;
		default:
			agent_usage(stderr);
			return 2;
		}
	}
	if (sock == NULL || optind >= argc || argc - optind > 2) {
		agent_usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	if (argc - optind == 2)
		id = argv[optind + 1];
	if (has_key && strcmp(cmd, "sign") != 0) {
		fprintf(stderr, "hsmesh agent client: --key goes with 'sign' only\n");
		return 2;
	}
	if ((buf = malloc(AG_MAX_FRAME)) == NULL) {
		st = HSM_ENOMEM;
		goto out;
	}
	if (strcmp(cmd, "get") == 0 || strcmp(cmd, "watch") == 0) {
		st = ag_encode_get(cmd[0] == 'g' ? AG_T_GET_SVID : AG_T_SUBSCRIBE, 1, id, &req,
		    &reqlen);
	} else if (strcmp(cmd, "sign") == 0) {
		/* Hash stdin (at most 16 MiB). */
		for (;;) {
			ssize_t n;

			if (dlen == cap) {
				uint8_t *p;

				if (cap >= 16 * 1024 * 1024) {
					st = hsm_err(HSM_EINVAL, "input larger than 16 MiB");
					goto out;
				}
				cap = cap == 0 ? 65536 : cap * 2;
				if ((p = realloc(data, cap)) == NULL) {
					st = HSM_ENOMEM;
					goto out;
				}
				data = p;
			}
			n = read(0, data + dlen, cap - dlen);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				st = hsm_err(HSM_EIO, "stdin: %s", strerror(errno));
				goto out;
			}
			if (n == 0)
				break;
			dlen += (size_t)n;
		}
		SHA256(data, dlen, md);
		st = ag_encode_sign(1, id, has_key ? keyid : NULL, HSM_SIG_ECDSA, md, sizeof(md), &req,
		    &reqlen);
	} else {
		fprintf(stderr, "hsmesh agent client: unknown command '%s'\n", cmd);
		ret = 2;
		goto done;
	}
	if (st != 0) {
		st = hsm_err(st, "bad request (SPIFFE ID '%s'?)", id);
		goto out;
	}
	if ((fd = client_connect(sock)) < 0) {
		st = fd;
		goto out;
	}
	if (strcmp(cmd, "watch") != 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if ((st = write_all(fd, req, reqlen, 1)) != 0 ||
	    (st = client_read(fd, buf, &have, &r, &used)) != 0)
		goto out;
	if (strcmp(cmd, "get") == 0) {
		if ((st = write_all(1, r.svid.chain, r.svid.chainlen, 0)) != 0)
			goto out;
		if (bundle != NULL && (st = hsm_write_file_atomic(bundle, r.svid.bundle,
		    r.svid.bundlelen, 0644)) != 0)
			goto out;
	} else if (strcmp(cmd, "sign") == 0) {
		if ((st = write_all(1, r.sig, r.siglen, 0)) != 0)
			goto out;
	} else {
		for (;;) {
			print_svid_line(&r);
			if (count != 0 && ++seen >= count)
				break;
			memmove(buf, buf + used, have - used);
			have -= used;
			if ((st = client_read(fd, buf, &have, &r, &used)) != 0)
				goto out;
		}
	}
	st = 0;
 out:
	if (st != 0)
		fprintf(stderr, "hsmesh agent client: %s\n", hsm_err_msg(st));
	else
		ret = 0;
 done:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(req);
	free(data);
	return ret;
}

int
agent_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct agent ag = { .ep = -1, .lfd = -1, .sfd = -1, .job_efd = -1 };
	struct kh_spawn_opts ko = { 0 };
	const char *path = NULL;
	sigset_t sigs;
	int ch, r, debug = 0, ret = 1;

	if (argc >= 2 && strcmp(argv[1], "client") == 0)
		return client_main(argc - 1, argv + 1);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:dh", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'h':
			agent_usage(stdout);
			return 0;
		default:
			agent_usage(stderr);
			return 2;
		}
	}
	if (path == NULL || optind != argc) {
		agent_usage(stderr);
		return 2;
	}
	hsm_log_init("hsmesh agent", debug ? HSM_LOG_DEBUG : HSM_LOG_INFO);
	ag.debug = debug;
	if ((r = conf_load(path, &ag.conf)) != 0) {
		fprintf(stderr, "hsmesh agent: %s\n", hsm_err_msg(r));
		return 1;
	}
	if ((r = load_root(&ag)) != 0 || (r = hsm_mkdir_p(ag.conf->state_dir, 0755)) != 0) {
		fprintf(stderr, "hsmesh agent: %s\n", hsm_err_msg(r));
		goto out;
	}
	if ((ag.wl = calloc(ag.conf->nwl, sizeof(*ag.wl))) == NULL) {
		r = HSM_ENOMEM;
		goto fail;
	}
	ag.nwl = ag.conf->nwl;
	for (size_t i = 0; i < ag.nwl; i++)
		if ((r = wl_init(&ag, &ag.wl[i], i)) != 0)
			goto fail;
	if ((r = hsm_provider_init()) != 0)
		goto fail;

	/* The keyholder first: it must not inherit our blocked signals. */
	ko.module = ag.conf->token.module;
	ko.token_uri = ag.conf->token.uri;
	ko.pin_file = ag.conf->token.pin_file;
	ko.pin_env = ag.conf->token.pin_env;
	ko.sign_delay_ms = ag.conf->token.sign_delay_ms;
	ko.workers = (int)ag.conf->token.workers;
	if ((r = kh_spawn(&ko, &ag.kh, &ag.khpid)) != 0)
		goto fail;
	log_info("keyholder started (pid %ld) for %s", (long)ag.khpid, ag.conf->token.uri);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGCHLD);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if ((ag.sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) == -1 ||
	    (ag.job_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1 ||
	    (ag.ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		r = hsm_err(HSM_EIO, "event set-up: %s", strerror(errno));
		goto fail;
	}
	if ((r = listen_socket(&ag)) != 0 || (r = epoll_add(ag.ep, ag.lfd, &tag_listen)) != 0 ||
	    (r = epoll_add(ag.ep, ag.sfd, &tag_signal)) != 0 ||
	    (r = epoll_add(ag.ep, ag.job_efd, &tag_job)) != 0)
		goto fail;

	for (size_t i = 0; i < ag.nwl; i++) {
		struct wl *w = &ag.wl[i];

		if (access(w->cert_path, F_OK) == 0) {
			if ((r = wl_try_reuse(&ag, w)) == 0) {
				schedule_renewal(&ag, w);
				continue;
			}
			log_warn("%s: not reusing %s: %s", w->c->id, w->cert_path, hsm_err_msg(r));
		}
		w->next_ms = hsm_now_ms();	/* enroll at once */
	}
	log_info("serving %zu workload identit%s on %s", ag.nwl, ag.nwl == 1 ? "y" : "ies",
	    ag.conf->socket);
	if ((r = loop(&ag)) != 0)
		goto fail;
	ret = ag.quit == 2 ? 1 : 0;
	goto out;
 fail:
	log_err("%s", hsm_err_msg(r));
 out:
	shutdown_agent(&ag);
	conf_free(ag.conf);
	return ret;
}
