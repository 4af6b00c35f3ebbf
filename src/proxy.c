/*
 * proxy.c - the sidecar (`hsmesh proxy -c proxy.yaml`).
 *
 * One proxy per workload. Inbound listeners terminate mutual TLS from other
 * sidecars, authorise the peer's SPIFFE ID against the listener's allow
 * list and forward plaintext to the local app; outbound listeners take
 * plaintext from the local app and open mutual TLS to a peer sidecar whose
 * ID must match expect_id.
 *
 * The proxy holds certificates, never keys. Its certificate chain and
 * trust bundle come from the node agent (a SUBSCRIBE on the agent's local
 * API, pushed again at every rotation); the private-key operation of a
 * handshake is a request to the agent made from inside an OpenSSL async
 * job (SSL_MODE_ASYNC, provider.c), so a slow token delays that handshake
 * only. It loads no PKCS#11 module, reads no PIN, and installs a seccomp
 * filter once started.
 *
 * Threads:
 *   - main: signals (SIGTERM/SIGINT drain, SIGHUP reload), identity updates
 *     from the agent, the metrics endpoint, agent reconnection;
 *   - N workers, each with its own epoll loop and its own SO_REUSEPORT
 *     socket per listener; a connection lives on one worker for its life;
 *   - agclient's reader thread (replies and pushes from the agent).
 *
 * An identity ("ident") is one certificate generation: the server and
 * client SSL_CTX built from one chain, with a key that signs through one
 * agent connection. A connection holds a reference to the ident it
 * started with; a rotation swaps the current ident for new handshakes and
 * leaves established connections alone. Policy (allow lists, targets,
 * timeouts) is reloaded the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agclient.h"
#include "audit.h"
#include "cert.h"
#include "cmds.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "provider.h"
#include "proxyconf.h"
#include "sandbox.h"
#include "spiffe.h"
#include "util.h"

#define MAX_EVENTS	256
#define ACCEPT_BURST	64
#define SWEEP_MS	100
#define LOG_BURST	20	/* failure lines per worker per second before suppression */
#define BUF_POOL	16	/* free relay buffers a worker keeps for reuse */
#define JOBS_KEEP	16	/* async jobs a worker's pool may keep after a burst */
#define CHURN_TRIM	64	/* connections opened, closed or made quiet in a burst that call for a malloc_trim */
#define SESS_KEEP	4	/* outbound sessions kept per listener for resumption */

/* ---- identity and policy generations ---- */

struct link {				/* one connection to the agent */
	struct agc_client *agc;
	atomic_int refs;
	atomic_int ended;		/* the subscription's final status, 0 while alive */
	struct proxy *px;
};

struct ident {
	atomic_int refs;
	struct link *link;
	SSL_CTX *srv, *cli;
	char *id;
	char serial[80];
	int64_t not_after;
};

struct policy {
	atomic_int refs;
	struct proxy_config *cfg;
};

/* What an epoll event points at. */
enum ev_kind { EV_LISTEN = 1, EV_WAKE, EV_TLS, EV_PLAIN, EV_ASYNC };

struct evsrc {
	enum ev_kind kind;
	void *ptr;			/* struct conn, or struct worker for EV_LISTEN/EV_WAKE */
	unsigned idx;			/* EV_LISTEN: listener index */
};

struct buf {
	uint8_t *data;			/* lent by the worker's pool while bytes are in flight */
	size_t off, len, cap;
};

enum conn_state { C_CONNECT = 1, C_HANDSHAKE, C_RELAY, C_DYING, C_FREED };

struct conn {
	struct evsrc et, ep, ea;
	struct worker *w;
	struct conn *prev, *next;	/* the worker's list */
	struct conn *dead_next;
	struct ident *ident;
	struct policy *pol;
	unsigned li;
	int inbound;
	enum conn_state state;
	int tfd, pfd, afd;		/* TLS side, plaintext side, async wait fd */
	uint32_t tev, pev;		/* epoll interest registered (0 = not added) */
	int tadded, padded;
	SSL *ssl;
	int hs_want;			/* EPOLLIN/EPOLLOUT wanted by the handshake */
	int rd_want, wr_want, sd_want;	/* wanted by SSL_read, SSL_write, SSL_shutdown */
	struct buf tp, pt;		/* TLS->plain, plain->TLS */
	int t_eof, p_eof, t_shut, p_shut;
	int authorised, resumed;
	int paused;			/* an async job of the SSL is paused (counted in w->njobs) */
	int ssl_bufs;			/* the SSL may hold record buffers (relay) */
	int p_dry;			/* the last read of the plaintext side found it dry */
	uint64_t t_accept, t_hs, t_last, deadline, t_async;
	uint64_t n_tp, n_pt;		/* bytes moved each way */
	char peer_addr[64];
	char *peer_id;
	const char *reason;		/* why it failed; NULL while fine */
	char detail[200];
};

struct worker {
	struct proxy *px;
	unsigned idx;
	pthread_t th;
	int ep, wake;
	int *lfd;
	struct evsrc *lsrc, wsrc;
	struct conn head;		/* circular list of live connections */
	struct conn *dead;
	unsigned n;
	uint8_t *pool[BUF_POOL];	/* free relay buffers of pool_cap bytes */
	unsigned npool;
	size_t pool_cap;
	unsigned njobs, jobs_peak;	/* async jobs paused now; most since the pool was dropped */
	unsigned churn, churn_seen;	/* connections opened, closed or made quiet since the last trim; at the last sweep */
	uint64_t now;			/* hsm_now_ms() after the last epoll_wait */
	int listening;
	uint64_t log_sec;
	unsigned log_n, log_dropped;
};

/*
 * An outbound listener's sessions to resume, shared by the workers: the
 * newest SESS_KEEP, handed out in turn, so a burst of new connections on
 * any worker resumes as soon as one session exists. The store keeps
 * private copies and gives each connection its own: libssl marks the
 * session object of an SSL not resumable on some paths (an SSL ended or
 * cleared without close_notify), and with one object shared by many
 * SSLs that had turned about a fifth of the resumptions under load into
 * full handshakes.
 */
struct sessions {
	pthread_mutex_t mu;
	SSL_SESSION *s[SESS_KEEP];
	unsigned put, get;
};

/* Handshake failure reasons (docs/PROXY.md), each counted per listener. */
static const char *const fail_reasons[] = { "no_client_cert", "untrusted", "cert_expired",
    "cert_not_yet_valid", "cert_invalid", "bad_spiffe_id", "not_allowed", "unexpected_id",
    "handshake_timeout", "key_operation", "no_identity", "peer_closed", "tls_error",
    "internal", "shutdown" };
#define NFAIL (sizeof(fail_reasons) / sizeof(fail_reasons[0]))

/*
 * Per-listener metric series, registered at start; a failure reason's
 * series on its first failure (so /metrics lists only reasons seen), then
 * kept here, so a storm of failures does not take the registry's lock.
 */
struct lmetrics {
	struct metric *conns, *active, *hs_full, *hs_resumed, *rx, *tx, *hs_time,
	    *limit, *upstream_fail;
	_Atomic(struct metric *) fail[NFAIL];
};

struct proxy {
	const char *cfgpath;
	struct proxy_config *cfg;	/* start-up configuration (listeners, workers) */
	pthread_mutex_t mu;		/* cur, pol, alog */
	struct ident *cur;
	struct policy *pol;
	pthread_rwlock_t alog_lock;
	struct audit *alog;
	struct metrics *m;
	struct lmetrics *lm;
	struct metric *keyop_time, *rotations, *not_after, *agent_up;
	struct sessions *sess;		/* per listener (outbound ones used) */
	struct worker *w;
	unsigned nw;
	atomic_uint nconns;
	atomic_int draining, stopping;
	/* identity updates from the agent's reader thread */
	pthread_mutex_t mbox_mu;
	int mbox_evfd;
	char *mb_chain, *mb_bundle;	/* the latest SVID pushed ... */
	struct link *mb_link;		/* ... on this link */
	/* main thread only */
	struct link *link;		/* current agent connection, NULL while down */
	uint64_t retry_at;
	int agent_warned;
	int ep, sfd, mfd;
	uint64_t drain_end;
};

static int conn_idx = -1;

static void
link_put(struct link *l)
{
	if (l != NULL && atomic_fetch_sub(&l->refs, 1) == 1) {
		agc_free(l->agc);
		free(l);
	}
}

static void
ident_put(struct ident *id)
{
	if (id == NULL || atomic_fetch_sub(&id->refs, 1) != 1)
		return;
	SSL_CTX_free(id->srv);
	SSL_CTX_free(id->cli);
	free(id->id);
	link_put(id->link);
	free(id);
}

static void
policy_put(struct policy *p)
{
	if (p != NULL && atomic_fetch_sub(&p->refs, 1) == 1) {
		proxy_config_free(p->cfg);
		free(p);
	}
}

/* The current identity (may be NULL) and policy, each with a reference. */
static void
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

static const char *
verify_reason(int err)
{
	switch (err) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return "cert_expired";
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "cert_not_yet_valid";
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return "untrusted";
	default:
		return "cert_invalid";
	}
}

static void
conn_fail_reason(struct conn *c, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
conn_fail_reason(struct conn *c, const char *reason, const char *fmt, ...)
{
	va_list ap;

	if (c->reason != NULL)
		return;
	c->reason = reason;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
}

/*
 * The peer's SPIFFE ID against the listener's policy: one URI SAN, a valid
 * SPIFFE ID, matched by the allow list (inbound) or expect_id (outbound).
 * 0 with c->peer_id set, or -1 with c->reason set.
 */
static int
check_peer_id(struct conn *c, X509 *leaf)
{
	const struct proxy_listener *l = &c->pol->cfg->lst[c->li];
	struct spiffe_id *sid;
	char *id = NULL;
	int st;

	if (cert_uri_san(leaf, &id) != 0) {
		conn_fail_reason(c, "bad_spiffe_id", "peer certificate has not exactly one URI SAN");
		return -1;
	}
	if ((sid = malloc(sizeof(*sid))) == NULL) {
		free(id);
		conn_fail_reason(c, "internal", "out of memory");
		return -1;
	}
	st = spiffe_id_parse(id, sid);
	free(sid);
	if (st != 0) {
		conn_fail_reason(c, "bad_spiffe_id", "%s", hsm_err_msg(st));
		free(id);
		return -1;
	}
	free(c->peer_id);
	c->peer_id = id;
	if (!proxy_listener_allows(l, id)) {
		conn_fail_reason(c, c->inbound ? "not_allowed" : "unexpected_id",
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
	struct conn *c = ssl != NULL ? SSL_get_ex_data(ssl, conn_idx) : NULL;
	int err = X509_STORE_CTX_get_error(xs);

	if (c == NULL)
		return 0;
	if (!ok) {
		conn_fail_reason(c, verify_reason(err), "peer certificate (depth %d): %s",
		    X509_STORE_CTX_get_error_depth(xs), X509_verify_cert_error_string(err));
		return 0;
	}
	if (X509_STORE_CTX_get_error_depth(xs) != 0)
		return 1;
	if (check_peer_id(c, X509_STORE_CTX_get_current_cert(xs)) != 0) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

static int
new_session_cb(SSL *ssl, SSL_SESSION *s)
{
	struct conn *c = SSL_get_ex_data(ssl, conn_idx);
	struct sessions *ss;

	if (c == NULL || c->inbound || c->reason != NULL)
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

/* Offer a copy of the next stored session, if any, to an outbound SSL. */
static void
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

/* Forget a listener's sessions (a peer failed authorisation). */
static void
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
 * Build an identity from the agent's chain (leaf first) and bundle: parse,
 * make the agent-backed key for the leaf, prove it with a test signature,
 * and make both SSL_CTX. Runs on the main thread.
 */
static int
ident_build(struct proxy *px, struct link *ln, const char *chain_pem, const char *bundle_pem,
    struct ident **out)
{
	STACK_OF(X509) *rest = sk_X509_new_null();
	X509_STORE *store = X509_STORE_new();
	struct ident *id = calloc(1, sizeof(*id));
	X509 *leaf = NULL, *x;
	EVP_PKEY *key = NULL;
	uint8_t *spki = NULL;
	BIO *b = NULL;
	int n, st = HSM_ECRYPTO, nb = 0;

	*out = NULL;
	if (rest == NULL || store == NULL || id == NULL) {
		st = HSM_ENOMEM;
		goto out;
	}
	if ((b = BIO_new_mem_buf(chain_pem, -1)) == NULL ||
	    (leaf = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		st = hsm_err(HSM_EPROTO, "the agent's certificate chain is not PEM");
		goto out;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(rest, x)) {
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
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		X509_STORE_add_cert(store, x);
		X509_free(x);
		nb++;
	}
	ERR_clear_error();
	if (nb == 0) {
		st = hsm_err(HSM_EPROTO, "the agent's trust bundle has no certificate");
		goto out;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_X509_STRICT);
	if ((st = cert_uri_san(leaf, &id->id)) != 0 ||
	    (st = cert_time_unix(X509_get0_notAfter(leaf), &id->not_after)) != 0)
		goto out;
	cert_serial_hex(X509_get0_serialNumber(leaf), id->serial, sizeof(id->serial));
	if ((n = i2d_PUBKEY(X509_get0_pubkey(leaf), &spki)) <= 0) {
		st = hsm_err_ossl(HSM_ECRYPTO, "certificate public key");
		goto out;
	}
	if ((st = hsm_pkey_new_agent(ln->agc, px->cfg->agent_id, spki, (size_t)n,
	    px->cfg->key_timeout_ms, &key)) != 0)
		goto out;
	if ((st = hsm_pkey_selftest(key)) != 0) {
		st = hsm_err(st, "test signature through the agent: %s", hsm_err_msg(st));
		goto out;
	}
	if ((id->srv = ctx_new(px->cfg, 1, leaf, rest, key, store)) == NULL ||
	    (id->cli = ctx_new(px->cfg, 0, leaf, rest, key, store)) == NULL) {
		st = hsm_err_ossl(HSM_ECRYPTO, "TLS context for the new certificate");
		goto out;
	}
	atomic_init(&id->refs, 1);
	atomic_fetch_add(&ln->refs, 1);
	id->link = ln;
	*out = id;
	id = NULL;
	st = 0;
 out:
	if (id != NULL) {
		SSL_CTX_free(id->srv);
		SSL_CTX_free(id->cli);
		free(id->id);
		free(id);
	}
	OPENSSL_free(spki);
	EVP_PKEY_free(key);
	X509_free(leaf);
	sk_X509_pop_free(rest, X509_free);
	X509_STORE_free(store);
	BIO_free(b);
	return st;
}

/* ---- access log and failure lines ---- */

static int
is_policy_reason(const char *r)
{
	static const char *const deny[] = { "not_allowed", "unexpected_id", "no_client_cert",
	    "untrusted", "cert_expired", "cert_not_yet_valid", "cert_invalid", "bad_spiffe_id",
	    NULL };

	for (int i = 0; r != NULL && deny[i] != NULL; i++)
		if (strcmp(r, deny[i]) == 0)
			return 1;
	return 0;
}

static void
access_log(struct conn *c, uint64_t now)
{
	struct proxy *px = c->w->px;
	const struct proxy_listener *l = &px->cfg->lst[c->li];
	char rx[24], tx[24], hs[24], dur[24];
	const char *decision;
	uint64_t nrx = c->inbound ? c->n_tp : c->n_pt, ntx = c->inbound ? c->n_pt : c->n_tp;

	if (c->authorised)
		decision = "allow";
	else if (is_policy_reason(c->reason))
		decision = "deny";
	else
		decision = "error";
	snprintf(rx, sizeof(rx), "%llu", (unsigned long long)nrx);
	snprintf(tx, sizeof(tx), "%llu", (unsigned long long)ntx);
	snprintf(hs, sizeof(hs), "%llu", (unsigned long long)(c->t_hs != 0 ? c->t_hs - c->t_accept : 0));
	snprintf(dur, sizeof(dur), "%llu", (unsigned long long)(now - c->t_accept));
	pthread_rwlock_rdlock(&px->alog_lock);
	if (px->alog != NULL)
		audit_event(px->alog, "connection", "listener", l->name,
		    "direction", c->inbound ? "inbound" : "outbound", "client", c->peer_addr,
		    "peer_id", c->peer_id, "decision", decision, "reason", c->reason,
		    "detail", c->reason != NULL ? c->detail : NULL,
		    "resumed", c->authorised ? (c->resumed ? "true" : "false") : NULL,
		    "bytes_received", rx, "bytes_sent", tx, "handshake_ms", hs,
		    "duration_ms", dur, NULL);
	pthread_rwlock_unlock(&px->alog_lock);
}

/* One stderr line per failed connection, at most LOG_BURST a second per worker. */
static void
log_failure(struct conn *c, uint64_t now)
{
	struct worker *w = c->w;
	const struct proxy_listener *l = &w->px->cfg->lst[c->li];

	if (now / 1000 != w->log_sec) {
		if (w->log_dropped > 0)
			log_warn("worker %u: %u more failed connections not logged", w->idx,
			    w->log_dropped);
		w->log_sec = now / 1000;
		w->log_n = w->log_dropped = 0;
	}
	if (w->log_n++ >= LOG_BURST) {
		w->log_dropped++;
		return;
	}
	hsm_log(is_policy_reason(c->reason) ? HSM_LOG_INFO : HSM_LOG_WARN,
	    "%s %s: %s %s: %s: %s", c->inbound ? "inbound" : "outbound", l->name, c->peer_addr,
	    c->inbound ? "refused" : "failed", c->reason, c->detail);
}

/* ---- connections ---- */

/*
 * Relay buffers are lent to a connection only while it has bytes in
 * flight: the pump takes one per direction from the worker's pool and
 * gives it back when it stops with the buffer empty. An idle connection
 * (or one waiting for a reply) holds none, so a few buffers serve all of
 * a worker's connections. 0, or -1 when memory is short.
 */
static int
buf_take(struct worker *w, struct buf *b)
{
	if (b->data != NULL)
		return 0;
	b->off = b->len = 0;
	if (w->npool > 0 && w->pool_cap == b->cap) {
		b->data = w->pool[--w->npool];
		return 0;
	}
	if (w->npool > 0)	/* a reload changed buffer_size: let the old size go */
		free(w->pool[--w->npool]);
	return (b->data = malloc(b->cap)) != NULL ? 0 : -1;
}

/* Give an empty buffer back to the pool (drop: even one with bytes left). */
static void
buf_give(struct worker *w, struct buf *b, int drop)
{
	if (b->data == NULL || (b->len > 0 && !drop))
		return;
	if (w->npool == 0)
		w->pool_cap = b->cap;
	if (w->npool < BUF_POOL && w->pool_cap == b->cap)
		w->pool[w->npool++] = b->data;
	else
		free(b->data);
	b->data = NULL;
	b->off = b->len = 0;
}

static size_t
buf_space(struct buf *b)
{
	if (b->data == NULL)
		return 0;
	if (b->len == 0)
		b->off = 0;
	else if (b->off + b->len == b->cap && b->off > 0) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	return b->cap - b->off - b->len;
}

static void
ep_set(struct worker *w, int fd, struct evsrc *src, uint32_t want, uint32_t *cur, int *added)
{
	struct epoll_event ev = { .events = want, .data.ptr = src };

	if (fd < 0 || (*added && want == *cur))
		return;
	if (want == 0) {
		/* not "MOD 0": EPOLLHUP/EPOLLERR would still be reported, over and over */
		if (*added)
			epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL);
		*added = 0;
		*cur = 0;
		return;
	}
	if (!*added) {
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) == 0)
			*added = 1;
	} else {
		epoll_ctl(w->ep, EPOLL_CTL_MOD, fd, &ev);
	}
	*cur = want;
}

static void
ep_del(struct worker *w, int fd, int *added)
{
	if (fd >= 0 && *added)
		epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL);
	*added = 0;
}

static void
conn_free_now(struct conn *c)
{
	struct worker *w = c->w;
	struct proxy *px = w->px;
	uint64_t now = hsm_now_ms();

	access_log(c, now);
	/*
	 * Refusals and failed set-ups go to stderr; how an authorised
	 * connection ended (idle, reset, shutdown) only to the access log,
	 * except that the app or peer could not be reached.
	 */
	if (c->reason != NULL && (!c->authorised || strncmp(c->reason, "connect_", 8) == 0))
		log_failure(c, now);
	if (c->afd >= 0)
		epoll_ctl(w->ep, EPOLL_CTL_DEL, c->afd, NULL);
	ep_del(w, c->tfd, &c->tadded);
	ep_del(w, c->pfd, &c->padded);
	SSL_free(c->ssl);
	if (c->tfd >= 0)
		close(c->tfd);
	if (c->pfd >= 0)
		close(c->pfd);
	buf_give(w, &c->tp, 1);
	buf_give(w, &c->pt, 1);
	free(c->peer_id);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	w->n--;
	metric_gauge_add(px->lm[c->li].active, -1);
	ident_put(c->ident);
	policy_put(c->pol);
	atomic_fetch_sub(&px->nconns, 1);
	c->state = C_FREED;
	c->dead_next = w->dead;
	w->dead = c;		/* freed after this batch of events */
}

/* The failure counter of a listener and reason (NULL if it cannot be made). */
static struct metric *
fail_counter(struct proxy *px, unsigned li, const char *reason)
{
	struct metric *m = NULL;
	size_t i;

	for (i = 0; i < NFAIL && strcmp(fail_reasons[i], reason) != 0; i++)
		;
	if (i < NFAIL && (m = atomic_load(&px->lm[li].fail[i])) != NULL)
		return m;
	metrics_get(px->m, METRIC_COUNTER, "hsmesh_proxy_handshake_failures_total",
	    "TLS handshakes that failed or were refused, by reason",
	    (const char *const[]){ "listener", px->cfg->lst[li].name, "reason", reason, NULL }, &m);
	if (i < NFAIL && m != NULL)
		atomic_store(&px->lm[li].fail[i], m);
	return m;
}

/*
 * End a connection. While an async job of its SSL is paused (a key
 * operation in flight) the SSL must not be freed and its socket must stay
 * ours: stop watching the sockets and wait for the job on the async fd.
 */
static void
conn_close(struct conn *c)
{
	if (c->state == C_DYING)
		return;
	c->w->churn++;
	if (c->reason != NULL && c->state == C_HANDSHAKE)
		metric_inc(fail_counter(c->w->px, c->li, c->reason));
	if (c->ssl != NULL && SSL_waiting_for_async(c->ssl)) {
		c->state = C_DYING;
		ep_del(c->w, c->tfd, &c->tadded);
		ep_del(c->w, c->pfd, &c->padded);
		return;
	}
	c->state = C_DYING;
	conn_free_now(c);
}

/* Reconcile epoll with the SSL's async wait fds (one stable eventfd per SSL). */
static void
watch_async(struct conn *c)
{
	OSSL_ASYNC_FD fds[4];
	size_t n = 0;

	if (!SSL_get_all_async_fds(c->ssl, NULL, &n) || n == 0 || n > 4 ||
	    !SSL_get_all_async_fds(c->ssl, fds, &n))
		return;
	if (c->afd != fds[0]) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->ea };

		if (c->afd >= 0)
			epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->afd, NULL);
		c->afd = fds[0];
		epoll_ctl(c->w->ep, EPOLL_CTL_ADD, c->afd, &ev);
	}
}

static void
classify_tls_error(struct conn *c, int sslerr)
{
	const char *data = NULL;
	unsigned long e, first = 0;
	int flags = 0;

	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		if (first == 0)
			first = e;
		if (ERR_GET_LIB(e) == ERR_LIB_PROV && data != NULL && (flags & ERR_TXT_STRING) &&
		    strchr(data, ':') != NULL) {
			conn_fail_reason(c, "key_operation", "private-key operation failed: %s", data);
			ERR_clear_error();
			return;
		}
	}
	if (first != 0 && ERR_GET_LIB(first) == ERR_LIB_SSL) {
		switch (ERR_GET_REASON(first)) {
		case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
			conn_fail_reason(c, "no_client_cert", "the client sent no certificate");
			return;
		case SSL_R_UNEXPECTED_EOF_WHILE_READING:
			conn_fail_reason(c, "peer_closed", "the peer closed during the handshake");
			return;
		default:
			break;
		}
	}
	if (first != 0) {
		char buf[160];

		ERR_error_string_n(first, buf, sizeof(buf));
		conn_fail_reason(c, "tls_error", "%s", buf);
	} else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
		conn_fail_reason(c, "peer_closed", "the peer closed during the handshake");
	} else {
		conn_fail_reason(c, "tls_error", "TLS error %d", sslerr);
	}
}

static void conn_update(struct conn *c);
static void relay_start(struct conn *c);
static void connect_start(struct conn *c);

static void
handshake_done(struct conn *c)
{
	struct proxy *px = c->w->px;
	struct lmetrics *lm = &px->lm[c->li];
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	uint64_t now = hsm_now_ms();

	c->resumed = SSL_session_reused(c->ssl);
	/* A resumed session skips verify_cb: check the session's peer again. */
	if (peer == NULL || SSL_get_verify_result(c->ssl) != X509_V_OK) {
		conn_fail_reason(c, "untrusted", "peer certificate not verified");
	} else if (c->resumed || c->peer_id == NULL) {
		check_peer_id(c, peer);
	}
	if (c->reason != NULL) {
		if (!c->inbound)
			sess_clear(&px->sess[c->li]);
		conn_close(c);
		return;
	}
	c->t_hs = now;
	c->authorised = 1;
	metric_inc(c->resumed ? lm->hs_resumed : lm->hs_full);
	metric_observe(lm->hs_time, (double)(now - c->t_accept) / 1000.0);
	/* The key operation is over: relay without the async-job overhead. */
	SSL_clear_mode(c->ssl, SSL_MODE_ASYNC);
	if (c->afd >= 0) {
		epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->afd, NULL);
		c->afd = -1;
	}
	if (c->inbound)
		connect_start(c);
	else
		relay_start(c);
}

static void
handshake_step(struct conn *c)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (c->paused != SSL_waiting_for_async(c->ssl)) {
		c->paused = !c->paused;
		if (c->paused && ++c->w->njobs > c->w->jobs_peak)
			c->w->jobs_peak = c->w->njobs;
		else if (!c->paused)
			c->w->njobs--;
	}
	if (c->state == C_DYING) {
		if (!SSL_waiting_for_async(c->ssl))
			conn_free_now(c);
		return;
	}
	if (r == 1) {
		handshake_done(c);
		return;
	}
	switch ((e = SSL_get_error(c->ssl, r))) {
	case SSL_ERROR_WANT_READ:
		c->hs_want = EPOLLIN;
		break;
	case SSL_ERROR_WANT_WRITE:
		c->hs_want = EPOLLOUT;
		break;
	case SSL_ERROR_WANT_ASYNC:
		c->hs_want = 0;
		c->t_async = hsm_now_ms();
		watch_async(c);
		break;
	default:
		if (c->reason == NULL)
			classify_tls_error(c, e);
		ERR_clear_error();
		conn_close(c);
		return;
	}
	conn_update(c);
}

static void
tls_start(struct conn *c)
{
	const struct proxy_listener *l = &c->pol->cfg->lst[c->li];

	if ((c->ssl = SSL_new(c->inbound ? c->ident->srv : c->ident->cli)) == NULL ||
	    SSL_set_fd(c->ssl, c->tfd) != 1 || SSL_set_ex_data(c->ssl, conn_idx, c) != 1) {
		conn_fail_reason(c, "internal", "SSL_new failed");
		conn_close(c);
		return;
	}
	if (c->inbound) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		if (l->server_name != NULL)
			SSL_set_tlsext_host_name(c->ssl, l->server_name);
		sess_offer(&c->w->px->sess[c->li], c->ssl);
	}
	c->state = C_HANDSHAKE;
	c->deadline = hsm_now_ms() + c->pol->cfg->handshake_timeout_ms;
	handshake_step(c);
}

/* Connect to the listener's target (inbound: the app; outbound: the peer sidecar). */
static void
connect_start(struct conn *c)
{
	const struct proxy_listener *l = &c->pol->cfg->lst[c->li];
	int fd, one = 1;

	c->state = C_CONNECT;
	c->deadline = hsm_now_ms() + c->pol->cfg->connect_timeout_ms;
	fd = socket(l->target_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_fail_reason(c, "connect_failed", "socket: %s", strerror(errno));
		goto fail;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (c->inbound)
		c->pfd = fd;
	else
		c->tfd = fd;
	if (connect(fd, (const struct sockaddr *)&l->target_addr, l->target_len) == 0) {
		if (c->inbound)
			relay_start(c);
		else
			tls_start(c);
		return;
	}
	if (errno != EINPROGRESS) {
		conn_fail_reason(c, "connect_failed", "connect %s: %s", l->target, strerror(errno));
		goto fail;
	}
	conn_update(c);
	return;
 fail:
	metric_inc(c->w->px->lm[c->li].upstream_fail);
	conn_close(c);
}

static void
connect_done(struct conn *c)
{
	const struct proxy_listener *l = &c->pol->cfg->lst[c->li];
	int fd = c->inbound ? c->pfd : c->tfd, err = 0;
	socklen_t sl = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0)
		err = errno;
	if (err == EINPROGRESS)
		return;
	if (err != 0) {
		conn_fail_reason(c, "connect_failed", "connect %s: %s", l->target, strerror(err));
		metric_inc(c->w->px->lm[c->li].upstream_fail);
		conn_close(c);
		return;
	}
	if (c->inbound)
		relay_start(c);
	else
		tls_start(c);
}

static void relay_pump(struct conn *c, enum ev_kind why);

static void
relay_start(struct conn *c)
{
	c->tp.cap = c->pt.cap = c->pol->cfg->buffer_size;
	c->state = C_RELAY;
	c->rd_want = EPOLLIN;
	c->t_last = hsm_now_ms();
	c->deadline = c->t_last + c->pol->cfg->idle_timeout_ms;
	relay_pump(c, 0);
}

/*
 * Move bytes both ways until nothing moves; then half-close and watch.
 * A side is read again in the same pump only when its last read filled
 * the space offered (or OpenSSL holds more), and the plaintext side is
 * written again only when its last write took everything: a short read or
 * write means the socket is dry or full, and level-triggered epoll calls
 * us back when it is not. That saves a read(2) that fails with EAGAIN per
 * direction and request. Likewise an event on one socket (why) does not
 * retry a read of the other that last found it dry: its own event comes
 * if it has bytes. (A partial SSL_write is one record written, not a full
 * socket: it is retried.)
 */
static void
relay_pump(struct conn *c, enum ev_kind why)
{
	struct worker *w = c->w;
	struct lmetrics *lm = &w->px->lm[c->li];
	int progress, moved = 0, r, e;
	int t_dry = why == EV_PLAIN && c->rd_want == EPOLLIN && !SSL_has_pending(c->ssl);
	int p_dry = why == EV_TLS && c->p_dry, t_full = 0, p_full = 0;
	ssize_t n;
	size_t sp;

	if (buf_take(w, &c->tp) != 0 || buf_take(w, &c->pt) != 0) {
		conn_fail_reason(c, "internal", "out of memory");
		goto abort;
	}
	c->ssl_bufs = 1;
	/*
	 * SSL_get_error reads a stale error on the queue as the failure of
	 * the call: start clean. Calls that succeed or want I/O add nothing,
	 * and a failure ends the pump, so once per pump is enough.
	 */
	if (ERR_peek_error() != 0)
		ERR_clear_error();
	do {
		progress = 0;
		/* TLS -> plain */
		if (!c->t_eof && !t_dry && (sp = buf_space(&c->tp)) > 0) {
			r = SSL_read(c->ssl, c->tp.data + c->tp.off + c->tp.len, (int)(sp > INT32_MAX ? INT32_MAX : sp));
			if (r > 0) {
				c->tp.len += (size_t)r;
				c->n_tp += (uint64_t)r;
				metric_add(c->inbound ? lm->rx : lm->tx, (uint64_t)r);
				c->rd_want = 0;
				progress = 1;
				if ((size_t)r < sp && !SSL_has_pending(c->ssl)) {
					t_dry = 1;
					c->rd_want = EPOLLIN;
				}
			} else {
				switch ((e = SSL_get_error(c->ssl, r))) {
				case SSL_ERROR_WANT_READ:
					c->rd_want = EPOLLIN;
					t_dry = 1;
					break;
				case SSL_ERROR_WANT_WRITE:
					c->rd_want = EPOLLOUT;
					break;
				case SSL_ERROR_ZERO_RETURN:
					c->t_eof = 1;
					progress = 1;
					break;
				default:
					classify_tls_error(c, e);
					if (c->reason != NULL && strcmp(c->reason, "peer_closed") == 0)
						c->reason = "reset";
					goto abort;
				}
			}
		}
		if (c->tp.len > 0 && !p_full) {
			n = write(c->pfd, c->tp.data + c->tp.off, c->tp.len);
			if (n > 0) {
				p_full = (size_t)n < c->tp.len;
				c->tp.off += (size_t)n;
				c->tp.len -= (size_t)n;
				progress = 1;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				conn_fail_reason(c, "reset", "write to %s: %s",
				    c->inbound ? "the app" : "the client", strerror(errno));
				goto abort;
			} else {
				p_full = errno != EINTR;
			}
		}
		if (c->t_eof && c->tp.len == 0 && !c->p_shut) {
			shutdown(c->pfd, SHUT_WR);
			c->p_shut = 1;
		}
		/* plain -> TLS */
		if (!c->p_eof && !p_dry && (sp = buf_space(&c->pt)) > 0) {
			n = read(c->pfd, c->pt.data + c->pt.off + c->pt.len, sp);
			if (n > 0) {
				c->pt.len += (size_t)n;
				c->n_pt += (uint64_t)n;
				metric_add(c->inbound ? lm->tx : lm->rx, (uint64_t)n);
				progress = 1;
				p_dry = (size_t)n < sp;
				c->p_dry = p_dry;
			} else if (n == 0) {
				c->p_eof = 1;
				progress = 1;
			} else if (errno != EAGAIN && errno != EINTR) {
				conn_fail_reason(c, "reset", "read from %s: %s",
				    c->inbound ? "the app" : "the client", strerror(errno));
				goto abort;
			} else {
				c->p_dry = p_dry = errno != EINTR;
			}
		}
		if (c->pt.len > 0 && !t_full) {
			r = SSL_write(c->ssl, c->pt.data + c->pt.off, (int)(c->pt.len > INT32_MAX ? INT32_MAX : c->pt.len));
			if (r > 0) {
				c->pt.off += (size_t)r;
				c->pt.len -= (size_t)r;
				c->wr_want = 0;
				progress = 1;
			} else {
				switch ((e = SSL_get_error(c->ssl, r))) {
				case SSL_ERROR_WANT_READ:
					c->wr_want = EPOLLIN;
					t_full = 1;
					break;
				case SSL_ERROR_WANT_WRITE:
					c->wr_want = EPOLLOUT;
					t_full = 1;
					break;
				default:
					classify_tls_error(c, e);
					c->reason = "reset";
					goto abort;
				}
			}
		}
		if (c->p_eof && c->pt.len == 0 && !c->t_shut) {
			r = SSL_shutdown(c->ssl);
			if (r >= 0) {
				c->t_shut = 1;
				c->sd_want = 0;
				progress = 1;
			} else if ((e = SSL_get_error(c->ssl, r)) == SSL_ERROR_WANT_WRITE) {
				c->sd_want = EPOLLOUT;
			} else if (e == SSL_ERROR_WANT_READ) {
				c->sd_want = EPOLLIN;
			} else {
				ERR_clear_error();
				c->t_shut = 1;	/* the peer is gone: nothing more to say */
			}
		}
		moved |= progress;
	} while (progress);
	if (moved)
		c->t_last = w->now;
	if (c->t_eof && c->p_eof && c->t_shut && c->p_shut && c->tp.len == 0 && c->pt.len == 0) {
		conn_close(c);
		return;
	}
	c->deadline = c->t_last + c->pol->cfg->idle_timeout_ms;
	buf_give(w, &c->tp, 0);
	buf_give(w, &c->pt, 0);
	conn_update(c);
	return;
 abort:
	ERR_clear_error();
	/* Data was cut: no close_notify, the peer must not read a clean end. */
	conn_close(c);
}

/* Register the epoll interest the connection's state asks for. */
static void
conn_update(struct conn *c)
{
	uint32_t t = 0, p = 0;

	switch (c->state) {
	case C_CONNECT:
		if (c->inbound)
			p = EPOLLOUT;
		else
			t = EPOLLOUT;
		break;
	case C_HANDSHAKE:
		t = (uint32_t)c->hs_want;
		break;
	case C_RELAY:
		if (!c->t_eof && c->tp.cap - c->tp.len > 0)
			t |= (uint32_t)c->rd_want;
		if (c->pt.len > 0)
			t |= (uint32_t)c->wr_want;
		if (c->p_eof && !c->t_shut)
			t |= (uint32_t)c->sd_want;
		if (!c->p_eof && c->pt.cap - c->pt.len > 0)
			p |= EPOLLIN;
		if (c->tp.len > 0)
			p |= EPOLLOUT;
		break;
	default:
		return;
	}
	/* EPOLLRDHUP is not needed: reads see EOF. Errors arrive as EPOLLERR/HUP. */
	ep_set(c->w, c->tfd, &c->et, t, &c->tev, &c->tadded);
	ep_set(c->w, c->pfd, &c->ep, p, &c->pev, &c->padded);
}

static void
conn_event(struct conn *c, enum ev_kind kind)
{
	if (c->state == C_FREED)
		return;
	if (c->state == C_DYING) {
		if (kind == EV_ASYNC)
			handshake_step(c);
		return;
	}
	switch (c->state) {
	case C_CONNECT:
		/* only the connecting socket's events; the other side waits */
		if (kind == (c->inbound ? EV_PLAIN : EV_TLS))
			connect_done(c);
		break;
	case C_HANDSHAKE:
		if (kind == EV_ASYNC && c->t_async != 0) {
			metric_observe(c->w->px->keyop_time, (double)(hsm_now_ms() - c->t_async) / 1000.0);
			c->t_async = 0;
		}
		handshake_step(c);
		break;
	case C_RELAY:
		relay_pump(c, kind);
		break;
	default:
		break;
	}
}

static void
accept_one(struct worker *w, unsigned li, int fd, const struct sockaddr_storage *ss,
    socklen_t sl)
{
	struct proxy *px = w->px;
	struct lmetrics *lm = &px->lm[li];
	struct conn *c;
	int one = 1;

	metric_inc(lm->conns);
	w->churn++;
	if (atomic_fetch_add(&px->nconns, 1) >= px->cfg->max_connections) {
		atomic_fetch_sub(&px->nconns, 1);
		metric_inc(lm->limit);
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		atomic_fetch_sub(&px->nconns, 1);
		close(fd);
		return;
	}
	c->w = w;
	c->li = li;
	c->inbound = px->cfg->lst[li].inbound;
	c->et = (struct evsrc){ EV_TLS, c, 0 };
	c->ep = (struct evsrc){ EV_PLAIN, c, 0 };
	c->ea = (struct evsrc){ EV_ASYNC, c, 0 };
	c->tfd = c->pfd = c->afd = -1;
	c->t_accept = hsm_now_ms();
	net_addr_str(ss, sl, c->peer_addr, sizeof(c->peer_addr));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	proxy_get(px, &c->ident, &c->pol);
	c->next = &w->head;
	c->prev = w->head.prev;
	w->head.prev->next = c;
	w->head.prev = c;
	w->n++;
	metric_gauge_add(lm->active, 1);
	if (c->inbound)
		c->tfd = fd;
	else
		c->pfd = fd;
	if (c->ident == NULL) {
		c->state = C_HANDSHAKE;	/* counted as a failed handshake */
		conn_fail_reason(c, "no_identity", "no certificate from the agent yet");
		conn_close(c);
		return;
	}
	if (c->inbound)
		tls_start(c);
	else
		connect_start(c);
}

static void
accept_burst(struct worker *w, unsigned li)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, i;

	for (i = 0; i < ACCEPT_BURST && w->listening; i++) {
		sl = sizeof(ss);
		fd = accept4(w->lfd[li], (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		accept_one(w, li, fd, &ss, sl);
	}
}

/* Handshake, connect and idle deadlines. */
static void
sweep(struct worker *w, uint64_t now)
{
	struct conn *c, *next;
	int trim = 0;

	for (c = w->head.next; c != &w->head; c = next) {
		next = c->next;
		/*
		 * RELEASE_BUFFERS does not free every record buffer: with a
		 * thousand connections each waiting for a response, an
		 * outbound sidecar still held ~10 KB more per connection than
		 * with this. A relay quiet since the last sweep lets what is
		 * left go. Never while they hold bytes (before 3.0.14
		 * SSL_free_buffers freed a buffer still in use).
		 */
		if (c->ssl_bufs && c->state == C_RELAY && c->t_last + SWEEP_MS <= now &&
		    !SSL_has_pending(c->ssl)) {
			SSL_free_buffers(c->ssl);
			c->ssl_bufs = 0;
			w->churn++;
		}
		if (c->state == C_DYING || now < c->deadline)
			continue;
		switch (c->state) {
		case C_HANDSHAKE:
			conn_fail_reason(c, "handshake_timeout", "no complete handshake within %u ms",
			    c->pol->cfg->handshake_timeout_ms);
			break;
		case C_CONNECT:
			conn_fail_reason(c, "connect_timeout", "connect %s: no answer within %u ms",
			    c->pol->cfg->lst[c->li].target, c->pol->cfg->connect_timeout_ms);
			metric_inc(w->px->lm[c->li].upstream_fail);
			break;
		default:
			conn_fail_reason(c, "idle_timeout", "idle for %u ms",
			    c->pol->cfg->idle_timeout_ms);
			/* an idle close is a normal end for an authorised connection */
			break;
		}
		conn_close(c);
	}
	/*
	 * OpenSSL keeps every async job it made (a 32 KB stack each) in the
	 * thread's pool: after a burst of concurrent key operations, drop the
	 * pool once none is paused (the next handshake makes a new one).
	 * A handshake also leaves freed memory behind (record buffers and
	 * handshake state), scattered among the live connections, where
	 * malloc keeps it mapped, and so do a closed connection and the
	 * buffers freed above. After a burst of those, once a sweep period
	 * passed with none, give the free pages back to the system (never
	 * during steady churn: the pages would fault back in).
	 */
	if (w->njobs == 0 && w->jobs_peak > JOBS_KEEP) {
		ASYNC_cleanup_thread();
		w->jobs_peak = 0;
		trim = 1;
	}
	if (w->churn >= CHURN_TRIM && w->churn == w->churn_seen)
		trim = 1;
	if (trim) {
		malloc_trim(0);
		w->churn = 0;
	}
	w->churn_seen = w->churn;
}

static void
stop_listening(struct worker *w)
{
	if (!w->listening)
		return;
	w->listening = 0;
	for (size_t i = 0; i < w->px->cfg->nlst; i++) {
		if (w->lfd[i] >= 0) {
			epoll_ctl(w->ep, EPOLL_CTL_DEL, w->lfd[i], NULL);
			close(w->lfd[i]);
			w->lfd[i] = -1;
		}
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct proxy *px = w->px;
	struct epoll_event evs[MAX_EVENTS];
	uint64_t next_sweep = 0, stop_end = 0, now, v;
	struct conn *c;
	int n, i;

	for (;;) {
		if (atomic_load(&px->draining))
			stop_listening(w);
		if (atomic_load(&px->stopping)) {
			struct conn *nx;

			for (c = w->head.next; c != &w->head; c = nx) {
				nx = c->next;
				if (c->state != C_DYING) {
					conn_fail_reason(c, "shutdown", "the proxy is stopping");
					conn_close(c);
				}
			}
			/* Left: connections waiting for a key operation, which ends by its deadline. */
			if (stop_end == 0)
				stop_end = hsm_now_ms() + px->cfg->key_timeout_ms + 1000;
			if (w->n == 0 || hsm_now_ms() > stop_end)
				break;
		}
		n = epoll_wait(w->ep, evs, MAX_EVENTS, SWEEP_MS);
		w->now = now = hsm_now_ms();
		for (i = 0; i < n; i++) {
			struct evsrc *s = evs[i].data.ptr;

			switch (s->kind) {
			case EV_LISTEN:
				accept_burst(w, s->idx);
				break;
			case EV_WAKE:
				if (read(w->wake, &v, sizeof(v)) < 0) {
					/* EAGAIN: already drained */
				}
				break;
			default:
				conn_event(s->ptr, s->kind);
				break;
			}
		}
		while ((c = w->dead) != NULL) {
			w->dead = c->dead_next;
			free(c);
		}
		if (now >= next_sweep) {
			sweep(w, now);
			next_sweep = now + SWEEP_MS;
			while ((c = w->dead) != NULL) {
				w->dead = c->dead_next;
				free(c);
			}
		}
	}
	/* Connections still waiting for a key operation are left to exit(). */
	while ((c = w->dead) != NULL) {
		w->dead = c->dead_next;
		free(c);
	}
	ASYNC_cleanup_thread();
	OPENSSL_thread_stop();
	return NULL;
}

static void
wake_workers(struct proxy *px)
{
	uint64_t one = 1;

	for (unsigned i = 0; i < px->nw; i++)
		if (write(px->w[i].wake, &one, sizeof(one)) < 0) {
			/* the counter saturates only after 2^64 wakes */
		}
}

/* ---- main thread: agent link, identity updates, metrics, signals ---- */

/* agclient's reader thread: hand the SVID to the main thread. */
static void
on_update(void *arg, int status, const struct agc_svid *sv)
{
	struct link *ln = arg;
	struct proxy *px = ln->px;
	char *chain = NULL, *bundle = NULL;
	uint64_t one = 1;

	if (status == 0) {
		chain = strdup(sv->chain_pem);
		bundle = strdup(sv->bundle_pem != NULL ? sv->bundle_pem : "");
		if (chain == NULL || bundle == NULL) {
			free(chain);
			free(bundle);
			return;
		}
		pthread_mutex_lock(&px->mbox_mu);
		free(px->mb_chain);
		free(px->mb_bundle);
		px->mb_chain = chain;
		px->mb_bundle = bundle;
		px->mb_link = ln;
		pthread_mutex_unlock(&px->mbox_mu);
	} else {
		atomic_store(&ln->ended, status);
	}
	if (write(px->mbox_evfd, &one, sizeof(one)) < 0) {
		/* saturated counter: the main thread is awake anyway */
	}
}

static void
install_ident(struct proxy *px, const char *chain, const char *bundle)
{
	struct ident *id, *old;
	char until[HSM_TIME_STR];
	int st;

	if ((st = ident_build(px, px->link, chain, bundle, &id)) != 0) {
		log_err("cannot use the certificate from the agent: %s", hsm_err_msg(st));
		return;
	}
	hsm_fmt_time(id->not_after, until);
	pthread_mutex_lock(&px->mu);
	old = px->cur;
	px->cur = id;
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
}

static void
link_connect(struct proxy *px, uint64_t now)
{
	struct agc_client *agc = NULL;
	struct link *ln;
	int st;

	px->retry_at = now + 1000;
	if ((st = agc_connect(px->cfg->agent_socket, &agc)) != 0) {
		if (!px->agent_warned)
			log_warn("agent at %s unreachable (%s): new full handshakes fail until it "
			    "is back; retrying every second", px->cfg->agent_socket, hsm_err_msg(st));
		px->agent_warned = 1;
		return;
	}
	if ((ln = calloc(1, sizeof(*ln))) == NULL) {
		agc_free(agc);
		return;
	}
	ln->agc = agc;
	ln->px = px;
	atomic_init(&ln->refs, 1);
	atomic_init(&ln->ended, 0);
	if ((st = agc_subscribe(agc, px->cfg->agent_id, on_update, ln)) != 0) {
		if (!px->agent_warned)
			log_warn("agent at %s: subscription failed (%s); retrying every second",
			    px->cfg->agent_socket, hsm_err_msg(st));
		px->agent_warned = 1;
		link_put(ln);
		return;
	}
	if (px->agent_warned)
		log_info("connected to the agent at %s again", px->cfg->agent_socket);
	px->agent_warned = 0;
	px->link = ln;
	metric_gauge_set(px->agent_up, 1);
}

static void
agent_events(struct proxy *px, uint64_t now)
{
	char *chain, *bundle;
	struct link *ln;
	uint64_t v;
	int st;

	if (read(px->mbox_evfd, &v, sizeof(v)) < 0) {
		/* EAGAIN */
	}
	pthread_mutex_lock(&px->mbox_mu);
	chain = px->mb_chain;
	bundle = px->mb_bundle;
	ln = px->mb_link;
	px->mb_chain = px->mb_bundle = NULL;
	px->mb_link = NULL;
	pthread_mutex_unlock(&px->mbox_mu);
	if (chain != NULL && ln == px->link && px->link != NULL)
		install_ident(px, chain, bundle);
	free(chain);
	free(bundle);
	if (px->link != NULL && (st = atomic_load(&px->link->ended)) != 0) {
		if (st == HSM_EAGAIN)
			log_warn("the agent has no certificate for us yet (%s); retrying every second",
			    hsm_strerror(st));
		else
			log_warn("agent connection lost (%s): established connections continue; new "
			    "full handshakes fail until it is back; reconnecting", hsm_strerror(st));
		px->agent_warned = 1;
		metric_gauge_set(px->agent_up, 0);
		link_put(px->link);
		px->link = NULL;
		px->retry_at = now + (st == HSM_EAGAIN ? 1000 : 200);
	}
}

static int
audit_swap(struct proxy *px, const char *path)
{
	struct audit *a = NULL, *old;
	int st;

	if (path != NULL && (st = audit_open(strcmp(path, "-") == 0 ? NULL : path, &a)) != 0)
		return st;
	pthread_rwlock_wrlock(&px->alog_lock);
	old = px->alog;
	px->alog = a;
	pthread_rwlock_unlock(&px->alog_lock);
	audit_close(old);
	return 0;
}

/*
 * SIGHUP: re-read proxy.yaml. Allow lists, expect_id, targets, SNI and
 * timeouts apply to new connections; the listener set itself (names and
 * addresses) needs a restart. The access log is reopened (log rotation).
 */
static void
reload(struct proxy *px)
{
	struct proxy_config *nc = NULL;
	struct policy *p, *old;
	size_t i;
	int st;

	if ((st = proxy_config_load(px->cfgpath, &nc)) != 0) {
		log_err("reload refused, keeping the running configuration: %s", hsm_err_msg(st));
		return;
	}
	if (nc->nlst != px->cfg->nlst)
		goto incompatible;
	for (i = 0; i < nc->nlst; i++)
		if (strcmp(nc->lst[i].name, px->cfg->lst[i].name) != 0 ||
		    nc->lst[i].inbound != px->cfg->lst[i].inbound ||
		    strcmp(nc->lst[i].listen, px->cfg->lst[i].listen) != 0)
			goto incompatible;
	if (strcmp(nc->agent_socket, px->cfg->agent_socket) != 0 ||
	    strcmp(nc->agent_id, px->cfg->agent_id) != 0 || nc->workers != px->cfg->workers ||
	    nc->tls_min_version != px->cfg->tls_min_version || nc->tickets != px->cfg->tickets ||
	    nc->max_connections != px->cfg->max_connections ||
	    (nc->metrics_listen == NULL) != (px->cfg->metrics_listen == NULL) ||
	    (nc->metrics_listen != NULL && strcmp(nc->metrics_listen, px->cfg->metrics_listen) != 0))
		log_warn("reload: changes to agent, workers, tls, limits.max_connections or metrics "
		    "take effect at the next restart");
	if ((st = audit_swap(px, nc->access_log)) != 0)
		log_err("reload: access log: %s (access logging stopped)", hsm_err_msg(st));
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		proxy_config_free(nc);
		return;
	}
	p->cfg = nc;
	atomic_init(&p->refs, 1);
	pthread_mutex_lock(&px->mu);
	old = px->pol;
	px->pol = p;
	pthread_mutex_unlock(&px->mu);
	policy_put(old);
	log_info("reloaded %s: new connections use the new policy of %zu listeners", px->cfgpath,
	    nc->nlst);
	return;
 incompatible:
	log_err("reload refused, keeping the running configuration: the set of listeners "
	    "(names, directions, listen addresses) changed; restart the proxy for that");
	proxy_config_free(nc);
}

/* ---- metrics endpoint (main thread) ---- */

#define MCONN_MAX 16
#define MREQ_MAX 8192

struct mconn {
	int fd;
	size_t len;
	uint64_t deadline;
	uint8_t buf[MREQ_MAX];
};

static struct mconn mconns[MCONN_MAX];
static int mconn_tag[MCONN_MAX];

static void
mconn_close(struct proxy *px, struct mconn *mc)
{
	epoll_ctl(px->ep, EPOLL_CTL_DEL, mc->fd, NULL);
	close(mc->fd);
	mc->fd = -1;
}

static void
metrics_accept(struct proxy *px, uint64_t now)
{
	int fd, i;

	while ((fd = accept4(px->mfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		for (i = 0; i < MCONN_MAX && mconns[i].fd >= 0; i++)
			;
		if (i == MCONN_MAX) {
			close(fd);
			continue;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &mconn_tag[i] };

		mconns[i].fd = fd;
		mconns[i].len = 0;
		mconns[i].deadline = now + 2000;
		if (epoll_ctl(px->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			mconns[i].fd = -1;
		}
	}
}

static void
metrics_read(struct proxy *px, struct mconn *mc)
{
	uint8_t *resp = NULL;
	size_t rlen = 0;
	ssize_t n;
	int st;

	n = read(mc->fd, mc->buf + mc->len, sizeof(mc->buf) - mc->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		mconn_close(px, mc);
		return;
	}
	mc->len += (size_t)n;
	st = metrics_http_answer(px->m, mc->buf, mc->len, &resp, &rlen);
	if (st == HSM_EAGAIN && mc->len < sizeof(mc->buf))
		return;
	if (st == 0)
		http_write_all(mc->fd, resp, rlen, 1000);
	free(resp);
	mconn_close(px, mc);
}

/* ---- start-up ---- */

static int
register_metrics(struct proxy *px)
{
	static const double hs_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	    0.25, 0.5, 1, 2.5, 5 };
	struct proxy_config *cfg = px->cfg;
	int st = 0;

	if ((px->lm = calloc(cfg->nlst, sizeof(*px->lm))) == NULL)
		return HSM_ENOMEM;
	for (size_t i = 0; i < cfg->nlst && st == 0; i++) {
		const char *name = cfg->lst[i].name, *dir = cfg->lst[i].inbound ? "inbound" : "outbound";
		struct lmetrics *lm = &px->lm[i];

		if ((st = metrics_get(px->m, METRIC_COUNTER, "hsmesh_proxy_connections_total",
		    "Connections accepted", (const char *const[]){ "listener", name, "direction", dir,
		    NULL }, &lm->conns)) != 0 ||
		    (st = metrics_get(px->m, METRIC_GAUGE, "hsmesh_proxy_connections_active",
		    "Connections open now", (const char *const[]){ "listener", name, NULL },
		    &lm->active)) != 0 ||
		    (st = metrics_get(px->m, METRIC_COUNTER, "hsmesh_proxy_handshakes_total",
		    "Completed and authorised TLS handshakes", (const char *const[]){ "listener",
		    name, "resumed", "false", NULL }, &lm->hs_full)) != 0 ||
		    (st = metrics_get(px->m, METRIC_COUNTER, "hsmesh_proxy_handshakes_total", NULL,
		    (const char *const[]){ "listener", name, "resumed", "true", NULL },
		    &lm->hs_resumed)) != 0 ||
		    (st = metrics_get(px->m, METRIC_COUNTER, "hsmesh_proxy_bytes_total",
		    "Bytes relayed, seen from the connecting client",
		    (const char *const[]){ "listener", name, "direction", "received", NULL },
		    &lm->rx)) != 0 ||
		    (st = metrics_get(px->m, METRIC_COUNTER, "hsmesh_proxy_bytes_total", NULL,
		    (const char *const[]){ "listener", name, "direction", "sent", NULL },
		    &lm->tx)) != 0 ||
		    (st = metrics_histogram(px->m, "hsmesh_proxy_handshake_seconds",
		    "From accept to an authorised TLS session", hs_bounds,
		    sizeof(hs_bounds) / sizeof(hs_bounds[0]), (const char *const[]){ "listener",
		    name, NULL }, &lm->hs_time)) != 0 ||
		    (st = metrics_get(px->m, METRIC_COUNTER, "hsmesh_proxy_connections_refused_total",
		    "Connections closed at accept because limits.max_connections was reached",
		    (const char *const[]){ "listener", name, NULL }, &lm->limit)) != 0 ||
		    (st = metrics_get(px->m, METRIC_COUNTER,
		    "hsmesh_proxy_upstream_connect_failures_total",
		    "Connections to forward_to/connect that failed or timed out",
		    (const char *const[]){ "listener", name, NULL }, &lm->upstream_fail)) != 0)
			break;
	}
	if (st == 0 &&
	    ((st = metrics_histogram(px->m, "hsmesh_proxy_key_operation_seconds",
	    "Private-key operations through the agent, as seen by the handshake", hs_bounds,
	    sizeof(hs_bounds) / sizeof(hs_bounds[0]), NULL, &px->keyop_time)) != 0 ||
	    (st = metrics_get(px->m, METRIC_COUNTER, "hsmesh_proxy_certificate_rotations_total",
	    "Certificates replaced by a rotation pushed from the agent", NULL,
	    &px->rotations)) != 0 ||
	    (st = metrics_get(px->m, METRIC_GAUGE, "hsmesh_proxy_certificate_expiry_timestamp_seconds",
	    "notAfter of the certificate new handshakes use (Unix time)", NULL,
	    &px->not_after)) != 0 ||
	    (st = metrics_get(px->m, METRIC_GAUGE, "hsmesh_proxy_agent_connected",
	    "1 while the proxy is connected to the node agent", NULL, &px->agent_up)) != 0))
		return st;
	return st;
}

/* Bind every listener once per worker (SO_REUSEPORT); port 0 resolves on the first. */
/* Append "NAME PORT\n" to the ports-file text. */
static int
ports_add(char **ports, size_t *plen, const char *name, int port)
{
	char line[128], *np;
	size_t n;

	snprintf(line, sizeof(line), "%s %d\n", name, port);
	n = strlen(line);
	if ((np = realloc(*ports, *plen + n + 1)) == NULL)
		return HSM_ENOMEM;
	memcpy(np + *plen, line, n + 1);
	*ports = np;
	*plen += n;
	return 0;
}

static int
bind_listeners(struct proxy *px, char **ports, size_t *plen)
{
	struct proxy_config *cfg = px->cfg;
	char addr[96];
	int st = 0;

	for (size_t i = 0; i < cfg->nlst; i++) {
		const struct proxy_listener *l = &cfg->lst[i];
		struct sockaddr_storage ss = l->listen_addr;
		socklen_t sl = l->listen_len;

		for (unsigned k = 0; k < px->nw; k++) {
			if ((st = net_listen(&ss, sl, 1, 1, 1024, &px->w[k].lfd[i])) != 0) {
				st = hsm_err(st, "listener %s: %s", l->name, hsm_err_msg(st));
				goto out;
			}
			if (k == 0) {
				sl = sizeof(ss);
				getsockname(px->w[0].lfd[i], (struct sockaddr *)&ss, &sl);
			}
		}
		net_addr_str(&ss, sl, addr, sizeof(addr));
		log_info("%s %s listening on %s -> %s%s%s", l->inbound ? "inbound" : "outbound",
		    l->name, addr, l->target, l->inbound ? "" : " expecting ",
		    l->inbound ? "" : l->allow[0]);
		if ((st = ports_add(ports, plen, l->name, net_local_port(px->w[0].lfd[i]))) != 0)
			break;
	}
 out:
	return st;
}

static int
worker_init(struct proxy *px, struct worker *w, unsigned idx)
{
	struct epoll_event ev;
	size_t n = px->cfg->nlst;

	w->px = px;
	w->idx = idx;
	w->head.next = w->head.prev = &w->head;
	w->listening = 1;
	if ((w->lfd = malloc(n * sizeof(*w->lfd))) == NULL ||
	    (w->lsrc = calloc(n, sizeof(*w->lsrc))) == NULL)
		return HSM_ENOMEM;
	for (size_t i = 0; i < n; i++)
		w->lfd[i] = -1;
	if ((w->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (w->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		return hsm_err(HSM_EIO, "epoll/eventfd: %s", strerror(errno));
	w->wsrc = (struct evsrc){ EV_WAKE, w, 0 };
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &w->wsrc };
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wake, &ev) != 0)
		return hsm_err(HSM_EIO, "epoll_ctl: %s", strerror(errno));
	return 0;
}

static int
worker_listen(struct worker *w)
{
	for (size_t i = 0; i < w->px->cfg->nlst; i++) {
		struct epoll_event ev;

		w->lsrc[i] = (struct evsrc){ EV_LISTEN, w, (unsigned)i };
		ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &w->lsrc[i] };
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd[i], &ev) != 0)
			return hsm_err(HSM_EIO, "epoll_ctl: %s", strerror(errno));
	}
	return 0;
}

static void
worker_fini(struct worker *w)
{
	if (w->lfd != NULL)
		for (size_t i = 0; i < w->px->cfg->nlst; i++)
			if (w->lfd[i] >= 0)
				close(w->lfd[i]);
	while (w->npool > 0)
		free(w->pool[--w->npool]);
	if (w->ep > 0)
		close(w->ep);
	if (w->wake > 0)
		close(w->wake);
	free(w->lfd);
	free(w->lsrc);
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
proxy_usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh proxy -c proxy.yaml [-d] [--ports-file FILE] [--check]\n"
	    "\n"
	    "The sidecar: mutual TLS in front of (inbound) and for (outbound) one workload.\n"
	    "Certificates come from the node agent; every private-key operation is done by\n"
	    "the agent's token, asynchronously. See docs/PROXY.md.\n"
	    "\n"
	    "  -c, --config FILE    proxy.yaml\n"
	    "  -d, --debug          debug log lines\n"
	    "      --ports-file F   write 'NAME PORT' per listener once bound (port 0 picks one)\n"
	    "      --check          check proxy.yaml and exit\n"
	    "  -h, --help           this text\n"
	    "\n"
	    "Signals: SIGTERM/SIGINT drain (stop accepting, let connections finish for up to\n"
	    "timeouts.drain, a second signal stops at once); SIGHUP reloads the policy and\n"
	    "reopens the access log.\n");
}

static int
main_loop(struct proxy *px)
{
	struct epoll_event evs[32];
	struct signalfd_siginfo si;
	uint64_t now;
	int n, i;

	for (;;) {
		n = epoll_wait(px->ep, evs, 32, 100);
		now = hsm_now_ms();
		for (i = 0; i < n; i++) {
			int *tag = evs[i].data.ptr;

			if (tag == &px->sfd) {
				while (read(px->sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						reload(px);
					} else if (atomic_load(&px->draining)) {
						log_info("second signal: stopping now");
						px->drain_end = now;
					} else {
						log_info("%s: draining %u connections (up to %u ms)",
						    strsignal((int)si.ssi_signo),
						    atomic_load(&px->nconns), px->cfg->drain_timeout_ms);
						atomic_store(&px->draining, 1);
						px->drain_end = now + px->cfg->drain_timeout_ms;
						wake_workers(px);
					}
				}
			} else if (tag == &px->mbox_evfd) {
				agent_events(px, now);
			} else if (tag == &px->mfd) {
				metrics_accept(px, now);
			} else {
				metrics_read(px, &mconns[tag - mconn_tag]);
			}
		}
		for (i = 0; i < MCONN_MAX; i++)
			if (mconns[i].fd >= 0 && now >= mconns[i].deadline)
				mconn_close(px, &mconns[i]);
		if (px->link == NULL && now >= px->retry_at && !atomic_load(&px->draining))
			link_connect(px, now);
		if (atomic_load(&px->draining) &&
		    (atomic_load(&px->nconns) == 0 || now >= px->drain_end)) {
			unsigned left = atomic_load(&px->nconns);

			if (left > 0)
				log_warn("drain time over: closing %u connections", left);
			atomic_store(&px->stopping, 1);
			wake_workers(px);
			return 0;
		}
	}
}

int
proxy_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		{ "ports-file", required_argument, NULL, 'p' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct proxy px;
	const char *ports_file = NULL;
	char *ports = NULL;
	size_t plen = 0;
	struct policy *pol = NULL;
	struct epoll_event ev;
	sigset_t sigs;
	int ch, debug = 0, check = 0, st, ret = 1;
	unsigned started = 0, i;

	memset(&px, 0, sizeof(px));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:dh", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			px.cfgpath = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'p':
			ports_file = optarg;
			break;
		case 'k':
			check = 1;
			break;
		case 'h':
			proxy_usage(stdout);
			return 0;
		default:
			proxy_usage(stderr);
			return 2;
		}
	}
	if (px.cfgpath == NULL || optind != argc) {
		fprintf(stderr, "hsmesh proxy: %s\n", px.cfgpath == NULL ? "missing -c proxy.yaml" :
		    "unexpected argument");
		return 2;
	}
	hsm_log_init("hsmesh proxy", debug ? HSM_LOG_DEBUG : HSM_LOG_INFO);
	if ((st = proxy_config_load(px.cfgpath, &px.cfg)) != 0) {
		fprintf(stderr, "hsmesh proxy: %s\n", hsm_err_msg(st));
		return 1;
	}
	if (check) {
		printf("%s: ok (%zu listeners)\n", px.cfgpath, px.cfg->nlst);
		proxy_config_free(px.cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	pthread_mutex_init(&px.mu, NULL);
	pthread_mutex_init(&px.mbox_mu, NULL);
	pthread_rwlock_init(&px.alog_lock, NULL);
	px.ep = px.sfd = px.mfd = px.mbox_evfd = -1;
	for (i = 0; i < MCONN_MAX; i++)
		mconns[i].fd = -1;
	px.nw = px.cfg->workers;
	/* The policy in force starts as a second copy of the start-up file. */
	if ((pol = calloc(1, sizeof(*pol))) == NULL || (st = proxy_config_load(px.cfgpath,
	    &pol->cfg)) != 0) {
		st = pol == NULL ? HSM_ENOMEM : st;
		free(pol);
		goto fail;
	}
	atomic_init(&pol->refs, 1);
	px.pol = pol;
	if ((st = hsm_provider_init()) != 0 ||
	    (conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL)) < 0) {
		st = hsm_err(HSM_ECRYPTO, "OpenSSL initialisation failed");
		goto fail;
	}
	if ((st = metrics_new(&px.m)) != 0 || (st = register_metrics(&px)) != 0 ||
	    (st = audit_swap(&px, px.cfg->access_log)) != 0)
		goto fail;
	if ((px.sess = calloc(px.cfg->nlst, sizeof(*px.sess))) == NULL) {
		st = HSM_ENOMEM;
		goto fail;
	}
	for (i = 0; i < px.cfg->nlst; i++)
		pthread_mutex_init(&px.sess[i].mu, NULL);
	if ((px.w = calloc(px.nw, sizeof(*px.w))) == NULL) {
		st = HSM_ENOMEM;
		goto fail;
	}
	for (i = 0; i < px.nw; i++)
		if ((st = worker_init(&px, &px.w[i], i)) != 0)
			goto fail;
	if ((st = bind_listeners(&px, &ports, &plen)) != 0)
		goto fail;
	for (i = 0; i < px.nw; i++)
		if ((st = worker_listen(&px.w[i])) != 0)
			goto fail;
	if (px.cfg->metrics_listen != NULL) {
		char addr[96];
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if ((st = net_listen(&px.cfg->metrics_addr, px.cfg->metrics_len, 0, 1, 64,
		    &px.mfd)) != 0)
			goto fail;
		getsockname(px.mfd, (struct sockaddr *)&ss, &sl);
		log_info("metrics on http://%s/metrics", net_addr_str(&ss, sl, addr, sizeof(addr)));
		if ((st = ports_add(&ports, &plen, "metrics", net_local_port(px.mfd))) != 0)
			goto fail;
	}
	if (ports_file != NULL && (st = hsm_write_file_atomic(ports_file, ports, plen, 0644)) != 0)
		goto fail;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if ((px.sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    (px.mbox_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    (px.ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		st = hsm_err(HSM_EIO, "signalfd/eventfd/epoll: %s", strerror(errno));
		goto fail;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &px.sfd };
	epoll_ctl(px.ep, EPOLL_CTL_ADD, px.sfd, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &px.mbox_evfd };
	epoll_ctl(px.ep, EPOLL_CTL_ADD, px.mbox_evfd, &ev);
	if (px.mfd >= 0) {
		ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &px.mfd };
		epoll_ctl(px.ep, EPOLL_CTL_ADD, px.mfd, &ev);
	}
	for (i = 0; i < px.nw; i++) {
		if (pthread_create(&px.w[i].th, NULL, worker_main, &px.w[i]) != 0) {
			st = hsm_err(HSM_EIO, "cannot start worker threads");
			goto fail;
		}
		started++;
	}
	link_connect(&px, hsm_now_ms());
	if ((st = sandbox_enter()) != 0)
		goto fail;
	log_info("started: %u workers, %zu listeners, agent %s", px.nw, px.cfg->nlst,
	    px.cfg->agent_socket);
	ret = main_loop(&px) == 0 ? 0 : 1;
	goto out;
 fail:
	fprintf(stderr, "hsmesh proxy: %s\n", hsm_err_msg(st));
	atomic_store(&px.stopping, 1);
	atomic_store(&px.draining, 1);
	wake_workers(&px);
	ret = 1;
 out:
	for (i = 0; i < started; i++)
		pthread_join(px.w[i].th, NULL);
	if (ret == 0)
		log_info("stopped");
	/*
	 * Connections whose key operation is still paused cannot be freed
	 * (their async job would leak or resume into freed memory): exit()
	 * reclaims them. Everything else is released for leak checkers.
	 */
	link_put(px.link);
	if (px.w != NULL)
		for (i = 0; i < px.nw; i++)
			worker_fini(&px.w[i]);
	free(px.w);
	for (i = 0; i < MCONN_MAX; i++)
		if (mconns[i].fd >= 0)
			close(mconns[i].fd);
	ident_put(px.cur);
	policy_put(px.pol);
	audit_close(px.alog);
	metrics_free(px.m);
	free(px.lm);
	if (px.sess != NULL)
		for (i = 0; i < px.cfg->nlst; i++)
			sess_clear(&px.sess[i]);
	free(px.sess);
	free(px.mb_chain);
	free(px.mb_bundle);
	if (px.mfd >= 0)
		close(px.mfd);
	if (px.sfd >= 0)
		close(px.sfd);
	if (px.mbox_evfd >= 0)
		close(px.mbox_evfd);
	if (px.ep >= 0)
		close(px.ep);
	proxy_config_free(px.cfg);
	free(ports);
	return ret;
}
