/*
 * proxy.h - the sidecar's rooms (`hsmesh proxy -c proxy.yaml`): the types
 * every room shares and the functions one room offers the others.
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
 * job (SSL_MODE_ASYNC, provider_agent.h), so a slow token delays that
 * handshake only. It loads no PKCS#11 module, reads no PIN, reaches
 * neither p11.h nor the keyholder client, and installs a seccomp filter
 * once started.
 *
 * Rooms:
 *   ident.c   identity and policy generations, TLS contexts, peer checks,
 *             outbound session store;
 *   conn.c    the connection state machine (accept, connect, handshake,
 *             codec, close), access log and failure lines;
 *   admission.c  which inbound full handshakes may cost a signature (the
 *             source's rate, the key operations in flight);
 *   revoke.c  the CA's CRL: subscribed from the agent, checked once, held
 *             by each TLS context generation and looked up per handshake
 *             (verify_cb); revoked peers' established connections closed;
 *   tcp.c     `protocol: tcp`, the byte relay codec (lib/relay.c);
 *   http.c, hx.c, pool.c  `protocol: http`, the HTTP codec (httpcodec.h);
 *   worker.c  worker threads: epoll loop, accept, deadlines, memory trims;
 *   main.c    start-up, metrics registration, the agent link, reload,
 *             signals and drain.
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
#ifndef HSM_PROXY_H
#define HSM_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "crl.h"

#include "admit.h"
#include "reason.h"
#include "relay.h"
#include "side.h"

struct agc_client;
struct audit;
struct hsrate;
struct http_metrics;
struct hworker;
struct throttle;
struct metric;
struct metrics;
struct metrics_srv;
struct proxy_config;

#define SWEEP_MS	100	/* deadlines and quiet-connection checks, per worker */
#define SESS_KEEP	4	/* outbound sessions kept per listener for resumption */

/* ---- identity and policy generations (ident.c) ---- */

struct link {				/* one connection to the agent */
	struct agc_client *agc;
	struct agc_client *crlc;	/* a connection of its own for the CRL subscription */
	atomic_int crl_ended;		/* the CRL subscription's final status, 0 while alive */
	atomic_int refs;
	atomic_int ended;		/* the subscription's final status, 0 while alive */
	struct proxy *px;
};

struct ident {
	atomic_int refs;
	struct link *link;
	SSL_CTX *srv, *cli;
	/* what a new generation (a new CRL) is built from again */
	X509 *leaf;
	STACK_OF(X509) *rest, *bundle;
	EVP_PKEY *key;
	/*
	 * The CRL held when this generation was made (NULL: none), already
	 * checked against crl_ca, a CA certificate of the bundle or the chain
	 * (revoke.c): handshakes look the peer's leaf up in it, no signature.
	 */
	X509_CRL *crl;
	X509 *crl_ca;
	struct crl_info crl_info;
	char *id;
	char serial[80];
	int64_t not_after;
};

struct policy {
	atomic_int refs;
	struct proxy_config *cfg;
	struct http_metrics **hm;	/* per listener: its routes' request series (HTTP ones) */
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

/* ---- connections (conn.c) ---- */

/* What an epoll event points at. */
enum ev_kind { EV_LISTEN = 1, EV_WAKE, EV_SIDE, EV_ASYNC };

struct evsrc {
	enum ev_kind kind;
	void *ptr;			/* struct conn, or struct worker for EV_LISTEN/EV_WAKE */
	unsigned idx;			/* EV_LISTEN: listener index; EV_SIDE: DOWN or UP */
};

/*
 * The two sides of a connection: DOWN was accepted (the peer sidecar of an
 * inbound listener, the app of an outbound one), UP is the one the proxy
 * opens (the app, the peer sidecar). The TLS side is DOWN inbound and UP
 * outbound. Bytes read from DOWN are "received", from UP "sent".
 */
enum { DOWN = 0, UP = 1 };

enum conn_state { C_CONNECT = 1, C_HANDSHAKE, C_RELAY, C_DYING, C_FREED };

struct conn;

/*
 * A connection's protocol once its sides are set up and the peer is
 * authorised: the seam between the state machine (conn.c) and what moves
 * the bytes. `protocol: tcp` (tcp.c, the byte relay) is the first codec;
 * an HTTP codec plugs in here without touching the state machine. A codec
 * reads, writes and half-closes c->side[DOWN/UP] through side.h (TLS and
 * plain alike), keeps its state in c->codec_state (or c->rl), registers
 * the events it waits for with conn_watch, keeps c->t_last and c->deadline
 * (activity and its next timeout), and ends the connection with conn_close
 * after fail_set(&c->fail, ...) when it failed. A side may be absent
 * (fd < 0): a codec serving DOWN from a shared upstream session would own
 * that session's events itself.
 *
 * The state machine makes exactly one indirect call per event: readable
 * when the event reports input, an end or an error on the side, else
 * writable. A codec moves what it can in either (level-triggered epoll
 * reports again whatever it still waits for).
 */
struct codec {
	const char *name;
	/*
	 * own_upstream: the codec opens its own upstream connections (an HTTP
	 * pool), so the state machine connects nothing for the connections it
	 * accepts; alpn: the protocols (wire format) offered and selected on
	 * the TLS side of its connections (NULL: no ALPN at all).
	 */
	uint8_t own_upstream;
	const unsigned char *alpn;
	unsigned alpn_len;
	void (*start)(struct conn *c);			/* both sides ready, peer authorised */
	void (*readable)(struct conn *c, int side);	/* input, end or error on side */
	void (*writable)(struct conn *c, int side);	/* side can take output */
	void (*timeout)(struct conn *c);		/* c->deadline passed */
	void (*close)(struct conn *c);			/* the connection ends: free its state */
};

extern const struct codec codec_tcp;
extern const struct codec codec_http;

struct conn {
	struct evsrc es[2], ea;		/* epoll sources: the sides, the async fd */
	struct worker *w;
	struct conn *prev, *next;	/* the worker's list */
	struct conn *dead_next;
	struct conn *gather_next;	/* the worker's gathered connections (codec_tcp) */
	struct ident *ident;
	struct policy *pol;
	const struct codec *codec;
	void *codec_state;		/* a codec's own state (tcp: none, it uses rl) */
	struct side side[2];		/* DOWN, UP */
	struct relay rl;		/* the byte relay's buffers (codec_tcp) */
	unsigned li;
	uint8_t inbound;
	uint8_t tls;			/* the TLS side: DOWN inbound, UP outbound */
	uint8_t codec_on;		/* codec->start ran: codec->close is due */
	uint8_t authorised, resumed;
	uint8_t paused;			/* an async job of the SSL is paused (counted in w->njobs) */
	uint8_t keyop;			/* holds a key-operation slot (admission.c) */
	uint8_t charged;		/* its full handshake was counted against its source */
	uint8_t added[2];		/* the side's fd is in epoll */
	uint8_t pooled;			/* an upstream connection of an HTTP pool (no DOWN socket) */
	uint8_t gathered;		/* on the worker's gather list */
	enum conn_state state;
	int afd;			/* async wait fd */
	uint32_t ev[2];			/* epoll interest registered per side */
	uint32_t hs_want;		/* EPOLLIN/EPOLLOUT wanted by the handshake */
	uint64_t t_accept, t_hs, t_last, deadline, t_async;
	char peer_addr[64];
	struct admit_src src;		/* the peer's address, for admission */
	char *peer_id;
	struct fail fail;		/* why it failed; REASON_NONE while fine */
};

/* The connection's SSL (NULL before the handshake starts). */
static inline SSL *
conn_ssl(const struct conn *c)
{
	return c->side[c->tls].ssl;
}

/* ---- workers (worker.c) ---- */

struct worker {
	struct proxy *px;
	unsigned idx;
	pthread_t th;
	int ep, wake;
	int *lfd;
	struct evsrc *lsrc, wsrc;
	struct conn head;		/* circular list of live connections */
	struct conn *dead;
	struct conn *gather, **gather_tail;	/* read in this batch, to pump at its end (tcp.c) */
	int gathering;			/* within a batch of events: codec_tcp gathers */
	unsigned n;
	struct relay_pool pool;		/* free relay buffers */
	unsigned njobs, jobs_peak;	/* async jobs paused now; most since the pool was dropped */
	unsigned crl_gen;		/* px->crl_gen when this worker last looked for revoked peers */
	unsigned churn, churn_seen;	/* connections opened, closed or made quiet since the last trim; at the last sweep */
	uint64_t now;			/* hsm_now_ms() after the last epoll_wait */
	int listening;
	uint64_t log_sec;
	unsigned log_n, log_dropped;
	struct hworker *http;		/* HTTP listeners' state (httpcodec.h), NULL without one */
};

/* ---- the process (main.c) ---- */

/*
 * Per-listener metric series, registered at start; a failure reason's
 * series on its first failure (so /metrics lists only reasons seen), then
 * kept here, so a storm of failures does not take the registry's lock.
 */
struct lmetrics {
	struct metric *conns, *active, *hs_full, *hs_resumed, *rx, *tx, *hs_time,
	    *limit, *upstream_fail, *up_opened, *up_active;
	_Atomic(struct metric *) fail[REASON_COUNT];
};

struct proxy {
	const char *cfgpath;
	struct proxy_config *cfg;	/* start-up configuration (listeners, workers) */
	pthread_mutex_t mu;		/* cur, pol */
	struct ident *cur;
	struct policy *pol;
	atomic_uint gen;		/* moves when cur or pol is replaced */
	pthread_rwlock_t alog_lock;
	struct audit *alog;
	struct metrics *m;
	struct lmetrics *lm;
	struct metric *keyop_time, *rotations, *not_after, *agent_up, *keyops_now;
	struct metric *crl_number, *crl_next_update, *revoked_closed;
	struct hsrate *hsrate;		/* full handshakes per source; NULL: no per-source limit */
	struct throttle *admlog;	/* admission refusals logged per source and reason */
	atomic_uint keyops;		/* inbound full handshakes admitted, signature not done */
	atomic_uint crl_gen;		/* one more at every new CRL: workers look for revoked peers */
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
	uint8_t *mb_crl;		/* the latest CRL pushed (DER, unchecked) ... */
	size_t mb_crl_len;
	struct link *mb_crl_link;	/* ... on this link */
	/* main thread only */
	struct link *link;		/* current agent connection, NULL while down */
	uint64_t retry_at;
	int agent_warned;
	int ep, sfd;
	struct metrics_srv *msrv;	/* the /metrics endpoint, NULL without one */
	uint64_t drain_end;
	uint8_t *crl_pending;		/* a CRL received before any identity to check it with */
	size_t crl_pending_len;
	X509_CRL *crl;			/* the newest CRL checked (ident->crl of new generations) */
	X509 *crl_ca;			/* ... against this CA certificate */
	struct crl_info crl_info;
};

/* ---- ident.c ---- */

/* Drop a reference; the last one frees. Each accepts NULL. */
void link_put(struct link *l);
void ident_put(struct ident *id);
void policy_put(struct policy *p);

/* The current identity (may be NULL) and policy, each with a reference. */
void proxy_get(struct proxy *px, struct ident **id, struct policy **pol);

/*
 * The peer's SPIFFE ID against the connection's listener policy: one URI
 * SAN, a valid SPIFFE ID, matched by the allow list (inbound) or
 * expect_id (outbound). 0 with c->peer_id set, or -1 with c->fail set.
 */
int check_peer_id(struct conn *c, X509 *leaf);

/* Offer a copy of the next stored session, if any, to an outbound SSL. */
void sess_offer(struct sessions *ss, SSL *ssl);
/* Forget a listener's sessions (a peer failed authorisation). */
void sess_clear(struct sessions *ss);

/*
 * Build an identity from the agent's chain (leaf first) and bundle, with
 * a key signing through ln, proved by a test signature, and make the new
 * current identity (logging ready / rotated / agent back). Main thread.
 */
void install_ident(struct proxy *px, struct link *ln, const char *chain, const char *bundle);

/*
 * A new generation of the current identity: the same certificate and key,
 * new TLS contexts, px->crl as its CRL. Main thread. 0 or an
 * HSM_E* code (the current identity stays).
 */
int ident_regen(struct proxy *px);

/* ---- revoke.c ---- */

/* Subscribe to the CRL on a connection of its own (ln->crlc). Main thread. */
void revoke_subscribe(struct proxy *px, struct link *ln);

/*
 * A CRL the agent pushed (der malloc'd, taken): checked against the
 * current identity's bundle (kept until there is one), then a new TLS
 * context generation and a sweep of established connections. Main thread.
 */
void revoke_take(struct proxy *px, uint8_t *der, size_t len);

/* Apply a CRL kept for want of an identity (install_ident). Main thread. */
void revoke_apply(struct proxy *px);

/*
 * verify_cb at depth 0, once the chain verified: the peer's leaf against
 * the CRL of c's identity generation (a lookup, no signature; issuer: the
 * leaf's verified issuer). X509_V_OK to go on; else the X509_V_ERR_* code
 * to fail the handshake with (c->fail set): the leaf is listed, or no
 * current CRL covers it and revocation.stale is refuse.
 */
int revoke_verify_leaf(struct conn *c, X509 *leaf, X509 *issuer);

/* 1 (c->fail set) when the newest CRL lists the peer's certificate. */
int revoke_check_peer(struct conn *c, X509 *peer);

/* Worker: a new CRL came: close the connections of listed peers (by policy). */
void revoke_sweep(struct worker *w);

/* ---- conn.c ---- */

/* Take the accepted socket fd of listener li on w. */
void accept_one(struct worker *w, unsigned li, int fd, const struct sockaddr_storage *ss,
    socklen_t sl);

/*
 * Open an upstream connection of listener li for an HTTP pool: no DOWN
 * socket; UP connects to the listener's target (and, outbound, does the
 * TLS handshake) like an accepted connection's, then runs codec_http with
 * state as its codec_state. Its codec's close runs however it ends, even
 * before the codec started. *out is set before the connect starts (it may
 * fail and close at once). 0 or HSM_ENOMEM.
 */
int conn_upstream(struct worker *w, unsigned li, void *state, struct conn **out);

/* An event of a connection that is not relaying (set-up, async key operation, dying). */
void conn_setup_event(struct conn *c, enum ev_kind kind, unsigned idx, uint32_t events);

/*
 * An epoll event (EPOLLIN|... in events) on the connection's source
 * kind/idx. Inline, so that a relaying connection's event costs the one
 * indirect call into its codec and nothing more.
 */
static inline void
conn_event(struct conn *c, enum ev_kind kind, unsigned idx, uint32_t events)
{
	if (c->state != C_RELAY)
		conn_setup_event(c, kind, idx, events);
	else if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		c->codec->readable(c, (int)idx);
	else
		c->codec->writable(c, (int)idx);
}

/* A deadline or quiet-connection check at now; may close c. */
void conn_sweep(struct conn *c, uint64_t now);

/*
 * End a connection (after fail_set when it failed). While an async job of
 * its SSL is paused the SSL and its sockets stay until the job ends.
 */
void conn_close(struct conn *c);

/* conn_watch's work when the interest changes. */
void conn_watch_set(struct conn *c, int side, uint32_t events);

/*
 * For codecs: wait for events (0: none) on side (ignored while it has no
 * socket). Inline: most calls change nothing and cost a comparison.
 */
static inline void
conn_watch(struct conn *c, int side, uint32_t events)
{
	if (events != (c->added[side] ? c->ev[side] : 0))
		conn_watch_set(c, side, events);
}

/* ---- admission.c ---- */

/* The per-source table and the refusal log of px->cfg->adm. 0, HSM_EINVAL or HSM_ENOMEM. */
int admission_init(struct proxy *px);
/* Summaries of the refusals still counted, then free. */
void admission_fini(struct proxy *px);
/* Summary lines of refusals whose interval ended by now (all: every one). */
void admission_flush(struct proxy *px, uint64_t now, int all);

/*
 * The server SSL_CTX's certificate callback (SSL_CTX_set_cert_cb): run for
 * full handshakes only, before anything is signed. 1 admits (the
 * connection holds a key-operation slot), 0 refuses with c->fail set.
 */
int admission_cert_cb(SSL *ssl, void *arg);

/* The connection's key operation is done or it ends: give its slot back. */
void admission_release(struct conn *c);

/* ---- worker.c ---- */

int worker_init(struct proxy *px, struct worker *w, unsigned idx);
int worker_listen(struct worker *w);
void worker_fini(struct worker *w);
void *worker_main(void *arg);
/* Wake every worker's epoll_wait (drain, stop). */
void wake_workers(struct proxy *px);

/* ---- tcp.c ---- */

/*
 * Pump every connection gathered in the batch of events just handled
 * (relay_gather in relay.h), in the order of their first event. The
 * worker calls it after each batch, before freeing the batch's dead.
 */
void tcp_flush(struct worker *w);

/* ---- http.c (the HTTP codec's worker hooks) ---- */

/* The worker's HTTP state, when a listener is HTTP. 0 or HSM_ENOMEM. */
int http_worker_init(struct worker *w);
void http_worker_fini(struct worker *w);
/* Write every connection the last events touched (after each batch and sweep). */
void http_flush(struct worker *w);
/* 1 when connections must be read again without waiting for epoll (the worker polls, not sleeps). */
int http_busy(const struct worker *w);
/* The proxy drains: GOAWAY and Connection: close to clients, pools close when idle. */
void http_drain(struct worker *w);

/* ---- main.c ---- */

/* The per-route request series of every HTTP listener of p (p->hm). 0 or an HSM_E code. */
int policy_http_metrics(struct proxy *px, struct policy *p);

#endif
