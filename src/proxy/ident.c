/*
 * ident.c - the sidecar's identity and policy generations: reference
 * counts, the TLS contexts built from each certificate the agent pushes,
 * the peer's SPIFFE ID against the listener's policy, and the outbound
 * listeners' session store (see proxy.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agclient.h"
#include "cert.h"
#include "err.h"
#include "httplog.h"
#include "log.h"
#include "metrics.h"
#include "provider_agent.h"
#include "provider_core.h"
#include "proxy.h"
#include "proxyconf.h"
#include "spiffe.h"
#include "util.h"

void
link_put(struct link *l)
{
	if (l != NULL && atomic_fetch_sub(&l->refs, 1) == 1) {
		agc_free(l->crlc);
		agc_free(l->agc);
		free(l);
	}
}

/* Free id and what it holds (its reference to the link too). */
static void
ident_free(struct ident *id)
{
	SSL_CTX_free(id->srv);
	SSL_CTX_free(id->cli);
	X509_free(id->leaf);
	sk_X509_pop_free(id->rest, X509_free);
	sk_X509_pop_free(id->bundle, X509_free);
	EVP_PKEY_free(id->key);
	X509_CRL_free(id->crl);
	X509_free(id->crl_ca);
	free(id->id);
	link_put(id->link);
	free(id);
}

void
ident_put(struct ident *id)
{
	if (id == NULL || atomic_fetch_sub(&id->refs, 1) != 1)
		return;
	ident_free(id);
}

void
policy_put(struct policy *p)
{
	if (p != NULL && atomic_fetch_sub(&p->refs, 1) == 1) {
		if (p->hm != NULL)
			for (size_t i = 0; i < p->cfg->nlst; i++)
				http_metrics_free(p->hm[i]);
		free(p->hm);
		proxy_config_free(p->cfg);
		free(p);
	}
}

void
proxy_get(struct proxy *px, struct ident **id, struct policy **pol)
{
	pthread_mutex_lock(&px->mu);
	if ((*id = px->cur) != NULL)
		atomic_fetch_add(&(*id)->refs, 1);
	*pol = px->pol;
	atomic_fetch_add(&(*pol)->refs, 1);
	pthread_mutex_unlock(&px->mu);
}

/* ---- TLS contexts ---- */

static enum reason
verify_reason(int err)
{
	switch (err) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return REASON_CERT_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return REASON_CERT_NOT_YET_VALID;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return REASON_UNTRUSTED;
	default:
		return REASON_CERT_INVALID;
	}
}

int
check_peer_id(struct conn *c, X509 *leaf)
{
	const struct proxy_listener *l = &c->pol->cfg->lst[c->li];
	struct spiffe_id *sid;
	char *id = NULL;
	int st;

	if (cert_uri_san(leaf, &id) != 0) {
		fail_set(&c->fail, REASON_BAD_SPIFFE_ID, "peer certificate has not exactly one URI SAN");
		return -1;
	}
	if ((sid = malloc(sizeof(*sid))) == NULL) {
		free(id);
		fail_set(&c->fail, REASON_INTERNAL, "out of memory");
		return -1;
	}
	st = spiffe_id_parse(id, sid);
	free(sid);
	if (st != 0) {
		fail_set(&c->fail, REASON_BAD_SPIFFE_ID, "%s", hsm_err_msg(st));
		free(id);
		return -1;
	}
	free(c->peer_id);
	c->peer_id = id;
	if (!proxy_listener_allows(l, id)) {
		fail_set(&c->fail, c->inbound ? REASON_NOT_ALLOWED : REASON_UNEXPECTED_ID,
		    c->inbound ? "%s is not in the allow list" : "peer is %s, expected %s", id,
		    l->allow[0]);
		return -1;
	}
	return 0;
}

static int
verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct conn *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
	int err = X509_STORE_CTX_get_error(xs);

	if (c == NULL)
		return 0;
	if (!ok) {
		fail_set(&c->fail, verify_reason(err), "peer certificate (depth %d): %s",
		    X509_STORE_CTX_get_error_depth(xs), X509_verify_cert_error_string(err));
		return 0;
	}
	if (X509_STORE_CTX_get_error_depth(xs) != 0)
		return 1;
	/* The leaf, its signature verified: revocation (the alert names the error set). */
	if ((err = revoke_verify_leaf(c, X509_STORE_CTX_get_current_cert(xs),
	    X509_STORE_CTX_get0_current_issuer(xs))) != X509_V_OK) {
		X509_STORE_CTX_set_error(xs, err);
		return 0;
	}
	if (check_peer_id(c, X509_STORE_CTX_get_current_cert(xs)) != 0) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

/*
 * ALPN on the server side: a connection whose codec speaks HTTP selects
 * h2 or http/1.1 (the server's preference first) among what the client
 * offers; any other (protocol: tcp) selects nothing, as if the extension
 * were not there, and so does a client that offers neither.
 */
static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
    unsigned inlen, void *arg)
{
	struct conn *c = SSL_get_app_data(ssl);
	unsigned char *sel;

	if (c == NULL || c->codec->alpn == NULL ||
	    SSL_select_next_proto(&sel, outlen, c->codec->alpn, c->codec->alpn_len, in,
	    inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int
new_session_cb(SSL *ssl, SSL_SESSION *s)
{
	struct conn *c = SSL_get_app_data(ssl);
	struct sessions *ss;

	if (c == NULL || c->inbound || c->fail.reason != REASON_NONE)
		return 0;
	ss = &c->w->px->sess[c->li];
	if ((s = SSL_SESSION_dup(s)) == NULL)
		return 0;
	pthread_mutex_lock(&ss->mu);
	SSL_SESSION_free(ss->s[ss->put]);
	ss->s[ss->put] = s;
	ss->put = (ss->put + 1) % SESS_KEEP;
	pthread_mutex_unlock(&ss->mu);
	return 0;	/* the SSL's reference stays its own */
}

void
sess_offer(struct sessions *ss, SSL *ssl)
{
	SSL_SESSION *s = NULL;

	pthread_mutex_lock(&ss->mu);
	for (unsigned i = 0; i < SESS_KEEP && s == NULL; i++) {
		SSL_SESSION *cand = ss->s[ss->get++ % SESS_KEEP];

		if (cand != NULL && SSL_SESSION_is_resumable(cand))
			s = SSL_SESSION_dup(cand);
	}
	pthread_mutex_unlock(&ss->mu);
	if (s != NULL) {
		SSL_set_session(ssl, s);	/* takes its own reference */
		SSL_SESSION_free(s);
	}
}

void
sess_clear(struct sessions *ss)
{
	pthread_mutex_lock(&ss->mu);
	for (unsigned i = 0; i < SESS_KEEP; i++) {
		SSL_SESSION_free(ss->s[i]);
		ss->s[i] = NULL;
	}
	pthread_mutex_unlock(&ss->mu);
}

static SSL_CTX *
ctx_new(const struct proxy_config *cfg, int server, X509 *leaf, STACK_OF(X509) *chain,
    EVP_PKEY *key, X509_STORE *store)
{
	static const unsigned char sid_ctx[] = "hsmesh-proxy";
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE;
	int i;

	if (ctx == NULL)
		return NULL;
	if (!cfg->tickets)
		opts |= SSL_OP_NO_TICKET;
	SSL_CTX_set_options(ctx, opts);
	if (SSL_CTX_set_min_proto_version(ctx, cfg->tls_min_version) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1 ||
	    SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1 ||
	    SSL_CTX_use_certificate(ctx, leaf) != 1)
		goto fail;
	for (i = 0; i < sk_X509_num(chain); i++)
		if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i)) != 1)
			goto fail;
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	if (!X509_STORE_up_ref(store))
		goto fail;
	SSL_CTX_set_cert_store(ctx, store);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
	SSL_CTX_set_verify_depth(ctx, 4);
	/*
	 * The chain sent is the leaf and the agent's intermediates (the root
	 * excluded: the peer has it). Without NO_AUTO_CHAIN, OpenSSL builds it
	 * from the trust store at every handshake when there is no intermediate
	 * (X509_verify_cert of our own certificate, then the root sent and
	 * parsed by the peer): ~30 % of a full handshake's CPU on each side.
	 *
	 * RELEASE_BUFFERS: OpenSSL's two ~17 KB record buffers go back to
	 * malloc as soon as a read or write empties them, so under load the
	 * next connection to read reuses the same, cache-warm memory. Kept
	 * per connection until it is quiet (sweep), a thousand keep-alive
	 * connections spread 34 MB of cold buffers per proxy; releasing them
	 * measured 3-5 % more requests/s at 1000 connections, the same at 100
	 * and the same bulk throughput.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_ASYNC | SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN |
	    SSL_MODE_RELEASE_BUFFERS);
	/* A record in one read(2), not a header and then a body. */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (server) {
		if (SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1)
			goto fail;
		SSL_CTX_set_num_tickets(ctx, cfg->tickets ? 1 : 0);
		SSL_CTX_set_timeout(ctx, 300);
		SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
		/* full handshakes only, before the signature: admission.c */
		SSL_CTX_set_cert_cb(ctx, admission_cert_cb, NULL);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
		    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	}
	return ctx;
 fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * id's two TLS contexts from its leaf, chain and key, over a new verify
 * store: its bundle and strict checks. px->crl, when one is held, becomes
 * id->crl, which verify_cb looks the peer's leaf up in (revoke.c); it is
 * not in the store, whose CRL check (X509_V_FLAG_CRL_CHECK) would verify
 * its signature again at every handshake.
 */
static int
ident_ctxs(struct proxy *px, struct ident *id)
{
	X509_STORE *store = X509_STORE_new();
	int st = HSM_ECRYPTO;

	if (store == NULL)
		return HSM_ENOMEM;
	for (int i = 0; i < sk_X509_num(id->bundle); i++)
		if (X509_STORE_add_cert(store, sk_X509_value(id->bundle, i)) != 1) {
			st = hsm_err_ossl(HSM_ECRYPTO, "trust bundle into the verify store");
			goto out;
		}
	if (px->crl != NULL) {
		X509_CRL_up_ref(px->crl);
		id->crl = px->crl;
		X509_up_ref(px->crl_ca);
		id->crl_ca = px->crl_ca;
		id->crl_info = px->crl_info;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_X509_STRICT);
	if ((id->srv = ctx_new(px->cfg, 1, id->leaf, id->rest, id->key, store)) == NULL ||
	    (id->cli = ctx_new(px->cfg, 0, id->leaf, id->rest, id->key, store)) == NULL) {
		st = hsm_err_ossl(HSM_ECRYPTO, "TLS context for the certificate");
		goto out;
	}
	st = 0;
 out:
	X509_STORE_free(store);
	return st;
}

int
ident_regen(struct proxy *px)
{
	struct ident *cur = px->cur, *id, *old;
	int st;

	if (cur == NULL)
		return 0;
	if ((id = calloc(1, sizeof(*id))) == NULL)
		return HSM_ENOMEM;
	atomic_init(&id->refs, 1);
	if ((id->id = strdup(cur->id)) == NULL ||
	    (id->rest = X509_chain_up_ref(cur->rest)) == NULL ||
	    (id->bundle = X509_chain_up_ref(cur->bundle)) == NULL) {
		st = HSM_ENOMEM;
		goto fail;
	}
	X509_up_ref(cur->leaf);
	id->leaf = cur->leaf;
	EVP_PKEY_up_ref(cur->key);
	id->key = cur->key;
	memcpy(id->serial, cur->serial, sizeof(id->serial));
	id->not_after = cur->not_after;
	atomic_fetch_add(&cur->link->refs, 1);
	id->link = cur->link;
	if ((st = ident_ctxs(px, id)) != 0)
		goto fail;
	pthread_mutex_lock(&px->mu);
	old = px->cur;
	px->cur = id;
	pthread_mutex_unlock(&px->mu);
	ident_put(old);
	return 0;
 fail:
	ident_free(id);
	return st;
}

/*
 * Build an identity from the agent's chain (leaf first) and bundle: parse,
 * make the agent-backed key for the leaf, prove it with a test signature,
 * and make both SSL_CTX. Runs on the main thread.
 */
static int
ident_build(struct proxy *px, struct link *ln, const char *chain_pem, const char *bundle_pem,
    struct ident **out)
{
	struct ident *id = calloc(1, sizeof(*id));
	X509 *x;
	uint8_t *spki = NULL;
	BIO *b = NULL;
	int n, st = HSM_ECRYPTO;

	*out = NULL;
	if (id == NULL)
		return HSM_ENOMEM;
	atomic_init(&id->refs, 1);
	if ((id->rest = sk_X509_new_null()) == NULL || (id->bundle = sk_X509_new_null()) == NULL) {
		st = HSM_ENOMEM;
		goto out;
	}
	if ((b = BIO_new_mem_buf(chain_pem, -1)) == NULL ||
	    (id->leaf = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		st = hsm_err(HSM_EPROTO, "the agent's certificate chain is not PEM");
		goto out;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(id->rest, x)) {
			X509_free(x);
			st = HSM_ENOMEM;
			goto out;
		}
	ERR_clear_error();
	BIO_free(b);
	if ((b = BIO_new_mem_buf(bundle_pem, -1)) == NULL) {
		st = HSM_ENOMEM;
		goto out;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(id->bundle, x)) {
			X509_free(x);
			st = HSM_ENOMEM;
			goto out;
		}
	ERR_clear_error();
	if (sk_X509_num(id->bundle) == 0) {
		st = hsm_err(HSM_EPROTO, "the agent's trust bundle has no certificate");
		goto out;
	}
	if ((st = cert_uri_san(id->leaf, &id->id)) != 0 ||
	    (st = cert_time_unix(X509_get0_notAfter(id->leaf), &id->not_after)) != 0)
		goto out;
	cert_serial_hex(X509_get0_serialNumber(id->leaf), id->serial, sizeof(id->serial));
	if ((n = i2d_PUBKEY(X509_get0_pubkey(id->leaf), &spki)) <= 0) {
		st = hsm_err_ossl(HSM_ECRYPTO, "certificate public key");
		goto out;
	}
	if ((st = hsm_pkey_new_agent(ln->agc, px->cfg->agent_id, spki, (size_t)n,
	    px->cfg->key_timeout_ms, &id->key)) != 0)
		goto out;
	if ((st = hsm_pkey_selftest(id->key)) != 0) {
		st = hsm_err(st, "test signature through the agent: %s", hsm_err_msg(st));
		goto out;
	}
	if ((st = ident_ctxs(px, id)) != 0)
		goto out;
	atomic_fetch_add(&ln->refs, 1);
	id->link = ln;
	*out = id;
	id = NULL;
	st = 0;
 out:
	if (id != NULL)
		ident_free(id);
	OPENSSL_free(spki);
	BIO_free(b);
	return st;
}

void
install_ident(struct proxy *px, struct link *ln, const char *chain, const char *bundle)
{
	struct ident *id, *old;
	char until[HSM_TIME_STR];
	int st;

	if ((st = ident_build(px, ln, chain, bundle, &id)) != 0) {
		log_err("cannot use the certificate from the agent: %s", hsm_err_msg(st));
		return;
	}
	hsm_fmt_time(id->not_after, until);
	pthread_mutex_lock(&px->mu);
	old = px->cur;
	px->cur = id;
	atomic_fetch_add(&px->gen, 1);
	pthread_mutex_unlock(&px->mu);
	if (old == NULL)
		log_info("ready: serving %s with certificate serial %s valid until %s", id->id,
		    id->serial, until);
	else if (strcmp(old->serial, id->serial) != 0) {
		log_info("rotated: new handshakes use certificate serial %s valid until %s "
		    "(was %s); established connections continue", id->serial, until, old->serial);
		metric_inc(px->rotations);
	} else
		log_info("agent back: certificate serial %s valid until %s", id->serial, until);
	metric_gauge_set(px->not_after, (double)id->not_after);
	ident_put(old);
	revoke_apply(px);	/* a CRL that came before any identity to check it with */
}
