/*
 * api.c - the agent's local API server (agent.h; wire format in
 * agentproto.h and docs/PROTOCOL.md, "Agent local API").
 *
 * Local clients (proxies) connect to a Unix socket; the frame server
 * (frameserver.h) accepts them with their SO_PEERCRED credentials and
 * splits their frames. When a client connects its process is inspected
 * once (selector.h: uid, gid, executable, cgroup, through its pidfd, so
 * a PID reused meanwhile cannot stand in for it); a client whose process
 * no identity's selectors select is refused at once. Each request is
 * authorised against that snapshot and the identities' current selectors
 * (an identity without selectors in agent.yaml: its uid, and root). The
 * node's own identity is not among the identities served: no client can
 * name it. A malformed frame closes that client only. GET_SVID
 * and SUBSCRIBE are answered from memory; after each rotation every
 * subscriber gets an UPDATE. A SIGN_TBS carries the whole data to sign:
 * the agent signs only TLS handshake signature inputs (tlssig.h), hashes
 * them itself and has the keyholder sign the digest with kh_sign_call():
 * the keyholder client's reader thread writes the reply to the client
 * itself (sign_done), so the token never blocks the loop and a signature
 * wakes the loop once (its request), not twice. Each client may have
 * MAX_SIGN_INFLIGHT signatures in flight; more is "busy". Anything else
 * to sign (an old SIGN of a digest, data of no TLS shape) is refused,
 * counted and logged, throttled per uid (struct api).
 *
 * The frame server enforces the limits of agent.yaml's api: section (open
 * clients, per uid, idle and incomplete-frame timeouts) and logs its
 * refusals, throttled. With metrics.listen, the counts are also served on
 * /metrics (lib/metrics.h), from the same loop.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent.h"
#include "agentproto.h"
#include "err.h"
#include "frameserver.h"
#include "khclient.h"
#include "khproto.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "ratelog.h"
#include "tlssig.h"
#include "util.h"

#define MAX_OUTBUF (8 * 1024 * 1024)	/* a client that does not read is dropped */
#define MAX_SIGN_INFLIGHT 1024		/* per client (a proxy): a burst of handshakes queues */
#define FD_RESERVE 64			/* descriptors kept for everything but clients */
#define LOG_PER_SEC 5			/* refused signatures logged per second */
#define LOG_SUMMARY_MS 10000

_Static_assert(AG_MAX_TBS == TLSSIG_MAX_TBS, "the frame carries what the check accepts");

/* Why a signature was refused: counted per reason. */
enum refusal {
	REFUSED_DIGEST,			/* an old SIGN of a digest */
	REFUSED_NOT_TLS,		/* data of no TLS handshake signature shape */
	REFUSED_TLS12_OFF,		/* a TLS 1.2 shape with api.tls12 false */
	REFUSED_N
};
static const char *const refusal_name[REFUSED_N] = { "digest", "not_tls", "tls12_off" };

/* The API's own state (main thread only: requests and the frame server's tick run there). */
struct api {
	unsigned long refused[REFUSED_N];	/* signatures refused, by reason */
	struct ratelog rlog;			/* refused signatures' log lines, per uid */
	/* /metrics (metrics.listen): the series, NULL without */
	struct metrics *m;
	struct metrics_srv *msrv;
	struct metric *m_refused[REFUSED_N], *m_signed, *m_clients;
	struct metric *m_conn_limit, *m_conn_denied, *m_closed_stalled, *m_closed_idle;
	struct metric *m_kh_sessions, *m_kh_open, *m_kh_max, *m_kh_cap, *m_kh_latency;
	struct fsrv_stats seen;			/* the frame server's counts already added */
};

/* A subscription: the identity (its wid) and the SUBSCRIBE's id. */
struct sub {
	uint64_t wid;
	uint32_t id;
};

/* A decision about one identity for one client, valid while its selectors stay (gen). */
struct allow {
	uint64_t wid, gen;
	int ok;
	const char *why;		/* when not ok: static or the client's proc's */
};

/* What the agent keeps per client (the frame server's udata); main thread only. */
struct client {
	struct sel_proc proc;		/* its process when it connected */
	struct sub *subs;
	size_t nsubs, capsubs;
	/*
	 * Decided once per identity and selectors: the process is the one that
	 * connected, so a file replaced at a selector's path later (an upgrade)
	 * does not take an identity from a client that had it.
	 */
	struct allow *allow;
	size_t nallow, capallow;
	int crl_sub;			/* sent CRL_SUBSCRIBE: gets every new CRL ... */
	uint32_t crl_id;		/* ... with this id */
};

/* May cl use w? Decided with its process as it connected, and remembered. */
static int
client_allows(struct agent *ag, struct client *cl, struct wl *w, const char **why)
{
	struct allow *a = NULL, *v;

	for (size_t i = 0; i < cl->nallow; i++)
		if (cl->allow[i].wid == w->wid)
			a = &cl->allow[i];
	if (a == NULL) {
		/* Identities come and go: forget the decisions about gone ones now and then. */
		if (cl->nallow >= 2 * ag->nwl + 16)
			cl->nallow = 0;
		if (cl->nallow == cl->capallow) {
			size_t cap = cl->capallow == 0 ? 8 : 2 * cl->capallow;

			if ((v = realloc(cl->allow, cap * sizeof(*v))) == NULL) {
				*why = "out of memory";
				return 0;
			}
			cl->allow = v;
			cl->capallow = cap;
		}
		a = &cl->allow[cl->nallow++];
		a->wid = w->wid;
		a->gen = 0;
	}
	if (a->gen != w->sels_gen) {
		a->ok = wl_allows(w, &cl->proc, &a->why);
		a->gen = w->sels_gen;
	}
	*why = a->why;
	return a->ok;
}

/*
 * A signature in flight: its reply goes from the keyholder client's reader
 * thread straight to the client's socket (sign_done). It holds the
 * client's connection (fsrv_begin) until then.
 */
struct pending_sign {
	struct fsrv_conn *conn;
	uint32_t id;
};

/* Tags of ag->ep for the listener and the output watch (clients are tagged with themselves). */
static char tag_listen, tag_watch;

#define PEER_FMT "local client uid %lu pid %ld"
#define PEER_ARGS(p) (unsigned long)(p)->uid, (long)(p)->pid

/* Queue a frame for c. 0, or an error after which c goes. */
static int
api_send(struct fsrv_conn *c, const uint8_t *f, size_t len)
{
	int r = fsrv_send(c, f, len);

	if (r == HSM_EBUSY)
		r = hsm_err(HSM_EBUSY, "client pid %ld does not read its replies",
		    (long)fsrv_peer(c)->pid);
	return r;
}

static int
send_error(struct fsrv_conn *c, uint8_t type, uint32_t id, int st, const char *text)
{
	uint8_t *f;
	size_t len;
	int r;

	if ((r = ag_encode_error(type, id, st, text, &f, &len)) != 0)
		return r;
	r = api_send(c, f, len);
	free(f);
	return r;
}

static int
send_svid(struct fsrv_conn *c, uint8_t type, uint32_t id, const struct wl *w)
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
	r = api_send(c, f, len);
	free(f);
	return r;
}

/* The subscription of cl to w, or NULL. */
static struct sub *
sub_find(const struct client *cl, const struct wl *w)
{
	for (size_t i = 0; i < cl->nsubs; i++)
		if (cl->subs[i].wid == w->wid)
			return &cl->subs[i];
	return NULL;
}

/* Subscribe cl to w with id (replacing the id of an earlier SUBSCRIBE). 0 or HSM_ENOMEM. */
static int
sub_add(struct client *cl, const struct wl *w, uint32_t id)
{
	struct sub *s = sub_find(cl, w), *v;

	if (s == NULL) {
		if (cl->nsubs == cl->capsubs) {
			size_t cap = cl->capsubs == 0 ? 4 : 2 * cl->capsubs;

			if ((v = realloc(cl->subs, cap * sizeof(*v))) == NULL)
				return HSM_ENOMEM;
			cl->subs = v;
			cl->capsubs = cap;
		}
		s = &cl->subs[cl->nsubs++];
		s->wid = w->wid;
	}
	s->id = id;
	return 0;
}

struct push {
	const struct wl *w;
	int n;
};

static void
push_one(void *arg, struct fsrv_conn *c)
{
	struct push *p = arg;
	const struct client *cl = fsrv_udata(c);
	const struct sub *s = cl != NULL ? sub_find(cl, p->w) : NULL;

	if (s == NULL)
		return;
	/* A client that cannot take it goes (its socket is shut; the loop then closes it). */
	if (send_svid(c, AG_T_UPDATE, s->id, p->w) != 0)
		fsrv_kill(c);
	else
		p->n++;
}

static void
gone_one(void *arg, struct fsrv_conn *c)
{
	struct push *p = arg;
	const struct client *cl = fsrv_udata(c);

	if (cl != NULL && sub_find(cl, p->w) != NULL) {
		fsrv_kill(c);
		p->n++;
	}
}

void
api_workload_gone(struct agent *ag, struct wl *w)
{
	struct push p = { w, 0 };

	if (ag->api == NULL)
		return;
	fsrv_foreach(ag->api, gone_one, &p);
	if (p.n > 0)
		log_info("%s: disconnected %d subscriber%s", w->c->id, p.n, p.n == 1 ? "" : "s");
}

/* The CRL the agent holds (none: an empty reply) as type to c. */
static int
send_crl(struct agent *ag, struct fsrv_conn *c, uint8_t type, uint32_t id)
{
	uint8_t *f;
	size_t len;
	int r;

	if ((r = ag_encode_crl(type, id, ag->crl_der, ag->crl_len, &f, &len)) != 0)
		return r;
	r = api_send(c, f, len);
	free(f);
	return r;
}

struct crl_push {
	struct agent *ag;
	int n;
};

static void
crl_push_one(void *arg, struct fsrv_conn *c)
{
	struct crl_push *p = arg;
	const struct client *cl = fsrv_udata(c);

	if (cl == NULL || !cl->crl_sub)
		return;
	if (send_crl(p->ag, c, AG_T_CRL, cl->crl_id) != 0)
		fsrv_kill(c);
	else
		p->n++;
}

void
api_push_crl(struct agent *ag)
{
	struct crl_push p = { ag, 0 };

	if (ag->api == NULL || ag->crl_len == 0)
		return;
	fsrv_foreach(ag->api, crl_push_one, &p);
	if (p.n > 0)
		log_info("pushed the new CRL to %d subscriber%s", p.n, p.n == 1 ? "" : "s");
}

void
api_push_update(struct agent *ag, struct wl *w)
{
	struct push p = { w, 0 };

	if (ag->api == NULL)
		return;
	fsrv_foreach(ag->api, push_one, &p);
	if (p.n > 0)
		log_info("%s: pushed the new certificate to %d subscriber%s", w->c->id, p.n,
		    p.n == 1 ? "" : "s");
}

/*
 * Which workload a request from the client cl names. An empty ID means
 * the only one its process may use. An ID it may not use reads like an
 * unknown one (and so does the node's, which is not among them); why the
 * selectors refused is logged, never told to the client.
 */
static int
resolve(struct agent *ag, struct client *cl, const char *id, struct wl **out)
{
	struct sel_proc *p = &cl->proc;
	struct wl *found = NULL;
	const char *why = NULL;
	uid_t uid = p->uid;
	int n = 0;

	*out = NULL;
	for (size_t i = 0; i < ag->nwl; i++) {
		struct wl *w = ag->wl[i];

		if (id[0] != '\0' && strcmp(w->c->id, id) != 0)
			continue;
		if (!client_allows(ag, cl, w, &why)) {
			if (id[0] != '\0')
				log_warn(PEER_FMT ": %s not selected (%s)", (unsigned long)uid,
				    (long)p->pid, id, why);
			continue;
		}
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
 * A signature ended: reply to its client at once, from the keyholder
 * client's reader thread (kh_sign_call). A client gone meanwhile gets
 * nothing; a reply it cannot take makes it go (the frame server shuts its
 * socket, and the loop then closes it).
 */
static void
sign_done(void *arg, int st, const uint8_t *sig, size_t siglen)
{
	struct pending_sign *ps = arg;
	uint8_t *f = NULL;
	size_t len = 0;

	if (st == 0)
		st = ag_encode_sig(ps->id, sig, siglen, &f, &len);
	else
		st = ag_encode_error(AG_T_SIGN_TBS | AG_T_REPLY, ps->id, st, hsm_err_msg(st), &f,
		    &len);
	if (st != 0)
		fsrv_kill(ps->conn);
	else
		(void)fsrv_send(ps->conn, f, len);
	/* Only now: a signature counts as in flight until its reply is out. */
	fsrv_end(ps->conn);
	free(f);
	free(ps);
}

/*
 * Refuse a signature (st, with its detail recorded): counted, logged
 * unless this uid's lines are throttled, answered.
 */
static int
refuse_sign(struct agent *ag, struct fsrv_conn *c, const struct ag_request *rq,
    const struct wl *w, enum refusal why, int st)
{
	const struct fsrv_peer *p = fsrv_peer(c);
	struct api *a = ag->apis;

	a->refused[why]++;
	metric_inc(a->m_refused[why]);
	if (ratelog_hit(&a->rlog, p->uid, hsm_now_ms()))
		log_warn(PEER_FMT ": refused to sign for %s: %s (%lu refused so far)", PEER_ARGS(p),
		    w->c->id, hsm_err_msg(st), a->refused[why]);
	return send_error(c, rq->type | AG_T_REPLY, rq->id, st, hsm_err_msg(st));
}

/* ratelog_flush's: a uid's refused signatures not logged. */
static void
sign_summary(void *arg, uint64_t uid, unsigned long n, uint64_t since)
{
	const struct api *a = arg;
	char who[48];

	if (uid == RATELOG_OTHER)
		snprintf(who, sizeof(who), "other uids");
	else
		snprintf(who, sizeof(who), "uid %lu", (unsigned long)uid);
	log_warn("%lu more refused signature requests of %s not logged in the last %llu s "
	    "(refused so far: %s %lu, %s %lu, %s %lu)", n, who,
	    (unsigned long long)((hsm_now_ms() - since + 999) / 1000),
	    refusal_name[REFUSED_DIGEST], a->refused[REFUSED_DIGEST],
	    refusal_name[REFUSED_NOT_TLS], a->refused[REFUSED_NOT_TLS],
	    refusal_name[REFUSED_TLS12_OFF], a->refused[REFUSED_TLS12_OFF]);
}

/*
 * The keyholder's token session pool, from its last POOL reply: written by
 * kh_pool_call's callback on the client's reader thread, read by the tick.
 * Process-wide (one agent per process), so a reply that comes after the
 * agent's structures are gone writes nothing that was freed.
 */
static struct {
	atomic_int busy;			/* a POOL request in flight */
	atomic_int valid, sessions, open, max, cap;
	atomic_uint latency_us;
} khpool;

static void
khpool_done(void *arg, int st, const struct kh_pool *p)
{
	if (st == 0) {
		atomic_store(&khpool.sessions, p->sessions);
		atomic_store(&khpool.open, p->open);
		atomic_store(&khpool.max, p->max);
		atomic_store(&khpool.cap, p->cap);
		atomic_store(&khpool.latency_us, p->latency_us);
		atomic_store(&khpool.valid, 1);
	}
	atomic_store(&khpool.busy, 0);
}

/* The last POOL reply into the gauges, and the next request (one at a time). */
static void
khpool_to_metrics(struct agent *ag)
{
	struct api *a = ag->apis;

	if (atomic_load(&khpool.valid)) {
		metric_gauge_set(a->m_kh_sessions, atomic_load(&khpool.sessions));
		metric_gauge_set(a->m_kh_open, atomic_load(&khpool.open));
		metric_gauge_set(a->m_kh_max, atomic_load(&khpool.max));
		metric_gauge_set(a->m_kh_cap, atomic_load(&khpool.cap));
		metric_gauge_set(a->m_kh_latency, atomic_load(&khpool.latency_us) / 1e6);
	}
	if (ag->kh != NULL && !atomic_exchange(&khpool.busy, 1) &&
	    kh_pool_call(ag->kh, 1000, khpool_done, NULL) != 0)
		atomic_store(&khpool.busy, 0);
}

/* The frame server's counts into the metrics (what grew since the last look). */
static void
stats_to_metrics(struct agent *ag)
{
	struct api *a = ag->apis;
	struct fsrv_stats st;

	fsrv_stats(ag->api, &st);
	metric_add(a->m_conn_limit, st.refused_limit - a->seen.refused_limit);
	metric_add(a->m_conn_denied, st.refused_owner - a->seen.refused_owner);
	metric_add(a->m_closed_stalled, st.closed_stalled - a->seen.closed_stalled);
	metric_add(a->m_closed_idle, st.closed_idle - a->seen.closed_idle);
	metric_gauge_set(a->m_clients, fsrv_count(ag->api));
	a->seen = st;
	khpool_to_metrics(ag);
}

/* Frame server: its timer (main thread). */
static void
api_tick(void *ctx, uint64_t now)
{
	struct agent *ag = ctx;

	if (ag->apis == NULL)
		return;
	ratelog_flush(&ag->apis->rlog, now, sign_summary, ag->apis);
	if (ag->apis->msrv != NULL && ag->api != NULL) {
		stats_to_metrics(ag);
		metrics_srv_expire(ag->apis->msrv, now);
	}
}

static const EVP_MD *
md_of(int hash)
{
	switch (hash) {
	case AG_HASH_SHA256: return EVP_sha256();
	case AG_HASH_SHA384: return EVP_sha384();
	case AG_HASH_SHA512: return EVP_sha512();
	default: return NULL;
	}
}

/*
 * A SIGN_TBS: a TLS handshake signature input (else refused), hashed here
 * into dg (64 bytes). 0, or the refusal already answered (*done set).
 */
static int
sign_input(struct agent *ag, struct fsrv_conn *c, const struct ag_request *rq,
    const struct wl *w, uint8_t *dg, size_t *dlen, int *done)
{
	unsigned flags = ag->conf->api.tls12 ? TLSSIG_ALLOW_TLS12 : 0;
	const char *why = NULL;
	unsigned n = 0;
	int st;

	*done = 0;
	if (rq->type == AG_T_SIGN) {
		*done = 1;
		st = hsm_err(HSM_EUNSUPPORTED, "digest signing is no longer offered: the agent "
		    "signs whole TLS handshake inputs (SIGN_TBS) only; upgrade this client");
		return refuse_sign(ag, c, rq, w, REFUSED_DIGEST, st);
	}
	if (tlssig_classify(rq->tbs, rq->tbslen, flags, &why) == TLSSIG_NONE) {
		*done = 1;
		st = hsm_err(HSM_EPOLICY, "not a TLS handshake signature input: %s; refusing to "
		    "sign", why);
		/* The same shape with TLS 1.2 allowed: it was the setting. */
		return refuse_sign(ag, c, rq, w, flags == 0 && tlssig_classify(rq->tbs,
		    rq->tbslen, TLSSIG_ALLOW_TLS12, NULL) != TLSSIG_NONE ? REFUSED_TLS12_OFF :
		    REFUSED_NOT_TLS, st);
	}
	if (md_of(rq->hash) == NULL ||
	    EVP_Digest(rq->tbs, rq->tbslen, dg, &n, md_of(rq->hash), NULL) != 1)
		return hsm_err(HSM_ECRYPTO, "cannot hash the data to sign");
	*dlen = n;
	return 0;
}

static int
handle_sign(struct agent *ag, struct fsrv_conn *c, const struct ag_request *rq, struct wl *w)
{
	const struct fsrv_peer *p = fsrv_peer(c);
	struct pending_sign *ps;
	const uint8_t *key = w->key.id;
	char hex[AGENT_KEYID_HEX];
	uint8_t dg[EVP_MAX_MD_SIZE];
	size_t dlen = 0;
	int r, done;

	if (rq->has_keyid && (key = enroll_signing_key(ag, w, rq->keyid)) == NULL) {
		r = hsm_err(HSM_ENOENT, "key %.16s is not a current or retired key of %s",
		    agent_keyid_hex(rq->keyid, hex), w->c->id);
		log_warn(PEER_FMT ": %s", PEER_ARGS(p), hsm_err_msg(r));
		return send_error(c, rq->type | AG_T_REPLY, rq->id, r, hsm_err_msg(r));
	}
	if ((r = sign_input(ag, c, rq, w, dg, &dlen, &done)) != 0 || done)
		return r;
	/* A slot in flight (and a reference), given back by sign_done (reader thread) or below. */
	if (fsrv_begin(c, MAX_SIGN_INFLIGHT) != 0)
		return send_error(c, AG_T_SIGN_TBS | AG_T_REPLY, rq->id, HSM_EBUSY,
		    "too many signatures in flight");
	if ((ps = calloc(1, sizeof(*ps))) == NULL) {
		fsrv_end(c);
		return HSM_ENOMEM;
	}
	ps->conn = c;
	ps->id = rq->id;
	/* From here sign_done may run on the reader thread at any time. */
	metric_inc(ag->apis->m_signed);
	if ((r = kh_sign_call(ag->kh, key, rq->alg, dg, dlen, AGENT_SIGN_TIMEOUT_MS,
	    sign_done, ps)) != 0) {
		fsrv_end(c);		/* never the last reference: the read side holds one */
		free(ps);
		return send_error(c, AG_T_SIGN_TBS | AG_T_REPLY, rq->id, r, hsm_err_msg(r));
	}
	return 0;
}

/* One validated request; 0, or an error after which c is closed. */
static int
handle_request(struct agent *ag, struct fsrv_conn *c, const struct ag_request *rq)
{
	const struct fsrv_peer *p = fsrv_peer(c);
	struct client *cl = fsrv_udata(c);
	uint8_t rtype = rq->type | AG_T_REPLY;
	struct wl *w;
	int r;

	if (rq->type == AG_T_CRL_SUBSCRIBE) {
		/* The CRL is public: any client the agent serves may follow it. */
		cl->crl_sub = 1;
		cl->crl_id = rq->id;
		fsrv_keep(c, 1);
		log_debug(PEER_FMT ": CRL_SUBSCRIBE", PEER_ARGS(p));
		return send_crl(ag, c, rtype, rq->id);
	}
	if ((r = resolve(ag, cl, rq->spiffe_id, &w)) != 0) {
		log_warn(PEER_FMT ": %s", PEER_ARGS(p), hsm_err_msg(r));
		return send_error(c, rtype, rq->id, r, hsm_err_msg(r));
	}
	if (rq->type == AG_T_SUBSCRIBE) {
		if ((r = sub_add(cl, w, rq->id)) != 0)
			return r;
		fsrv_keep(c, 1);	/* a subscriber waits for UPDATEs: never idle */
	}
	if (!wl_valid(w))
		return send_error(c, rtype, rq->id, HSM_EAGAIN, w->revoked ?
		    "certificate revoked; re-enrolling" : w->have ?
		    "certificate expired; renewal in progress" : "not enrolled yet");
	switch (rq->type) {
	case AG_T_GET_SVID:
	case AG_T_SUBSCRIBE:
		log_debug(PEER_FMT ": %s %s", PEER_ARGS(p),
		    rq->type == AG_T_GET_SVID ? "GET_SVID" : "SUBSCRIBE", w->c->id);
		return send_svid(c, rtype, rq->id, w);
	case AG_T_SIGN:
	case AG_T_SIGN_TBS:
		return handle_sign(ag, c, rq, w);
	default:
		return HSM_EPROTO;
	}
}

/* Frame server: the first bytes of an incomplete frame (garbage closes at once). */
static int
api_check(const uint8_t *buf, size_t len)
{
	struct ag_frame f;

	return ag_frame_parse(buf, len, &f) < 0 ? -1 : 0;
}

/* Frame server: one whole frame from c. */
static int
api_frame(void *ctx, struct fsrv_conn *c, void *turn, const uint8_t *buf, size_t len)
{
	const struct fsrv_peer *p = fsrv_peer(c);
	struct ag_frame f;
	struct ag_request rq;
	int r;

	if (ag_frame_parse(buf, len, &f) != (int)len || ag_request_decode(&f, &rq) != 0) {
		log_warn(PEER_FMT " sent a malformed frame: closed", PEER_ARGS(p));
		return HSM_EPROTO;
	}
	if ((r = handle_request(ctx, c, &rq)) != 0) {
		log_warn(PEER_FMT ": %s: closed", PEER_ARGS(p), hsm_err_msg(r));
		return r;
	}
	return 0;
}

/* Frame server: a client connected. */
static int
api_accept(void *ctx, struct fsrv_conn *c, const struct fsrv_peer *p)
{
	struct agent *ag = ctx;
	struct client *cl;
	const char *why = NULL;
	static int weak_logged;
	int allowed = 0, weak = 0, r;

	if (p == NULL)
		return HSM_EPERM;
	if ((cl = calloc(1, sizeof(*cl))) == NULL)
		return HSM_ENOMEM;
	/* The process, once, tied to the socket through its pidfd (selector.h). */
	if ((r = sel_proc_from_socket(fsrv_conn_fd(c), &cl->proc, &weak)) != 0) {
		/* The frame server logs the refusal (throttled), with this reason. */
		r = hsm_err(HSM_EPERM, "%s", hsm_err_msg(r));
		free(cl);
		return r;
	}
	if (weak && !weak_logged) {
		weak_logged = 1;
		log_warn("this kernel has no SO_PEERPIDFD: a local client's process is found by its "
		    "PID at accept (a PID reused between connect and accept goes unnoticed)");
	}
	for (size_t i = 0; i < ag->nwl && !allowed; i++)
		allowed = wl_allows(ag->wl[i], &cl->proc, &why);
	if (!allowed) {
		/* The frame server logs the refusal (throttled), with this reason. */
		r = hsm_err(HSM_EPERM, "no workload identity for this process%s%s%s",
		    ag->nwl > 0 && why != NULL ? " (selectors: " : "",
		    ag->nwl > 0 && why != NULL ? why : "", ag->nwl > 0 && why != NULL ? ")" : "");
		sel_proc_clear(&cl->proc);
		free(cl);
		return r;
	}
	fsrv_set_udata(c, cl);
	log_debug(PEER_FMT " connected (%s)", PEER_ARGS(p), cl->proc.have_exe ? cl->proc.exe :
	    "executable unknown");
	return 0;
}

/* Frame server: a client's read side ended (timeouts: the frame server logs them). */
static void
api_closed(void *ctx, struct fsrv_conn *c, enum fsrv_why why)
{
	struct client *cl = fsrv_udata(c);

	if (why == FSRV_MALFORMED)
		log_warn(PEER_FMT " sent a malformed frame: closed", PEER_ARGS(fsrv_peer(c)));
	fsrv_set_udata(c, NULL);
	if (cl != NULL) {
		sel_proc_clear(&cl->proc);
		free(cl->subs);
		free(cl->allow);
		free(cl);
	}
}

static const struct fsrv_ops api_ops = {
	.min_frame = AG_HDR_LEN,
	.max_frame = AG_MAX_REQUEST,
	.max_out = MAX_OUTBUF,
	.read_batch = 1,
	.what = "local client",
	.check = api_check,
	.accept = api_accept,
	.frame = api_frame,
	.closed = api_closed,
	.tick = api_tick,
};

/*
 * Room for max_conns clients in the descriptor limit: raise the soft limit
 * as far as needed (and allowed); what the hard limit does not allow is
 * cut from max_conns, and said.
 */
static unsigned
fit_fd_limit(unsigned max_conns)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)max_conns + FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
		return max_conns;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
		unsigned fit = rl.rlim_cur > 2 * FD_RESERVE ? (unsigned)(rl.rlim_cur - FD_RESERVE) :
		    FD_RESERVE;

		log_warn("api.max_connections %u: the descriptor limit is %llu; serving at most %u "
		    "clients", max_conns, (unsigned long long)rl.rlim_cur, fit);
		return fit;
	}
	return max_conns;
}

/* metrics.listen: the series and the /metrics server, its socket in ag->ep (tagged msrv). */
static int
metrics_start(struct agent *ag)
{
	const struct agent_api_conf *ac = &ag->conf->api;
	struct api *a = ag->apis;
	char addr[96];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, r;

	if (ac->metrics_listen == NULL)
		return 0;
	if ((r = metrics_new(&a->m)) != 0)
		return r;
	for (int i = 0; i < REFUSED_N; i++)
		metrics_get(a->m, METRIC_COUNTER, "hsmesh_agent_sign_refused_total",
		    "Signature requests refused: not a TLS handshake signature input (not_tls), "
		    "the old digest SIGN (digest), a TLS 1.2 input with api.tls12 false "
		    "(tls12_off)",
		    (const char *const[]){ "reason", refusal_name[i], NULL }, &a->m_refused[i]);
	metrics_get(a->m, METRIC_COUNTER, "hsmesh_agent_signatures_total",
	    "Signatures asked of the keyholder for local clients", NULL, &a->m_signed);
	metrics_get(a->m, METRIC_GAUGE, "hsmesh_agent_local_clients",
	    "Local API clients connected", NULL, &a->m_clients);
	metrics_get(a->m, METRIC_COUNTER, "hsmesh_agent_local_refused_total",
	    "Local API connections refused: beyond api.max_connections(_per_uid) (limit), "
	    "a uid without a workload (not_allowed)", (const char *const[]){ "reason", "limit", NULL },
	    &a->m_conn_limit);
	metrics_get(a->m, METRIC_COUNTER, "hsmesh_agent_local_refused_total", NULL,
	    (const char *const[]){ "reason", "not_allowed", NULL }, &a->m_conn_denied);
	metrics_get(a->m, METRIC_COUNTER, "hsmesh_agent_local_closed_total",
	    "Local API connections closed on a timeout: api.frame_timeout (incomplete_frame), "
	    "api.idle_timeout (idle)", (const char *const[]){ "reason", "incomplete_frame", NULL },
	    &a->m_closed_stalled);
	metrics_get(a->m, METRIC_COUNTER, "hsmesh_agent_local_closed_total", NULL,
	    (const char *const[]){ "reason", "idle", NULL }, &a->m_closed_idle);
	metrics_get(a->m, METRIC_GAUGE, "hsmesh_agent_keyholder_sessions",
	    "Token sessions the keyholder signs on now (sized to the token within "
	    "token.workers_min..max, or token.workers)", NULL, &a->m_kh_sessions);
	metrics_get(a->m, METRIC_GAUGE, "hsmesh_agent_keyholder_sessions_open",
	    "Token sessions open", NULL, &a->m_kh_open);
	metrics_get(a->m, METRIC_GAUGE, "hsmesh_agent_keyholder_sessions_max",
	    "The most token sessions the keyholder may use", NULL, &a->m_kh_max);
	metrics_get(a->m, METRIC_GAUGE, "hsmesh_agent_keyholder_sessions_cap",
	    "A serial token's useful concurrency found by the keyholder (0: none)", NULL,
	    &a->m_kh_cap);
	metrics_get(a->m, METRIC_GAUGE, "hsmesh_agent_keyholder_signature_seconds",
	    "Mean time of a signature on the token in the keyholder's last measured interval",
	    NULL, &a->m_kh_latency);
	if ((r = net_listen(&ac->metrics_addr, ac->metrics_len, 0, 1, 16, &fd)) != 0)
		return r;
	if ((r = metrics_srv_new(a->m, fd, &a->msrv)) != 0) {
		close(fd);
		return r;
	}
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	log_info("metrics on http://%s/metrics", net_addr_str(&ss, sl, addr, sizeof(addr)));
	return agent_epoll_add(ag->ep, metrics_srv_fd(a->msrv), a->msrv);
}

int
api_start(struct agent *ag)
{
	const struct agent_api_conf *ac = &ag->conf->api;
	struct fsrv_ops ops = api_ops;
	int r;

	if ((ag->apis = calloc(1, sizeof(*ag->apis))) == NULL)
		return HSM_ENOMEM;
	ratelog_init(&ag->apis->rlog, LOG_PER_SEC, LOG_SUMMARY_MS);
	if ((r = metrics_start(ag)) != 0)
		return r;
	ops.max_conns = (int)fit_fd_limit(ac->max_conns);
	ops.max_conns_uid = (int)ac->max_conns_uid;
	ops.idle_ms = ac->idle_ms;
	ops.frame_ms = ac->frame_ms;
	if ((r = fsrv_new(&ops, ag, ag->ep, &ag->api)) != 0 ||
	    (r = fsrv_listen(ag->api, ag->conf->socket, 0666)) != 0 ||
	    (r = agent_epoll_add(ag->ep, fsrv_listen_fd(ag->api), &tag_listen)) != 0 ||
	    (r = agent_epoll_add(ag->ep, fsrv_watch_fd(ag->api), &tag_watch)) != 0)
		return r;
	log_info("local API on %s: at most %d clients, %d per uid (root not counted); idle "
	    "timeout %us, incomplete frames %us; signs TLS 1.3%s handshake inputs only",
	    ag->conf->socket, ops.max_conns, ops.max_conns_uid, ac->idle_ms / 1000,
	    ac->frame_ms / 1000, ac->tls12 ? " and 1.2" : "");
	return 0;
}

void
api_event(struct agent *ag, void *tag)
{
	if (tag == &tag_listen)
		fsrv_accept(ag->api);
	else if (tag == &tag_watch)
		fsrv_flush_ready(ag->api);
	else if (ag->apis != NULL && ag->apis->msrv != NULL && tag == ag->apis->msrv) {
		stats_to_metrics(ag);	/* fresh counts for whoever asks */
		metrics_srv_run(ag->apis->msrv, hsm_now_ms());
	}
	else
		fsrv_readable(tag, NULL);
}

void
api_stop(struct agent *ag)
{
	fsrv_free(ag->api);
	ag->api = NULL;
	if (ag->apis != NULL) {
		metrics_srv_free(ag->apis->msrv);
		metrics_free(ag->apis->m);
	}
	free(ag->apis);
	ag->apis = NULL;
}
