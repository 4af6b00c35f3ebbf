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
 * subscriber gets an UPDATE. A SIGN goes to the keyholder with
 * kh_sign_call(): the keyholder client's reader thread writes the reply
 * to the client itself (sign_done), so the token never blocks the loop
 * and a signature wakes the loop once (its request), not twice. Each
 * client may have MAX_SIGN_INFLIGHT signatures in flight; more is "busy".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "agentproto.h"
#include "err.h"
#include "frameserver.h"
#include "khclient.h"
#include "log.h"
#include "util.h"

#define MAX_CONNS 256
#define MAX_REQ 8192			/* largest request frame a client may send */
#define MAX_OUTBUF (8 * 1024 * 1024)	/* a client that does not read is dropped */
#define MAX_SIGN_INFLIGHT 1024		/* per client (a proxy): a burst of handshakes queues */

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
		st = ag_encode_error(AG_T_SIGN | AG_T_REPLY, ps->id, st, hsm_err_msg(st), &f, &len);
	if (st != 0)
		fsrv_kill(ps->conn);
	else
		(void)fsrv_send(ps->conn, f, len);
	/* Only now: a signature counts as in flight until its reply is out. */
	fsrv_end(ps->conn);
	free(f);
	free(ps);
}

static int
handle_sign(struct agent *ag, struct fsrv_conn *c, const struct ag_request *rq, struct wl *w)
{
	const struct fsrv_peer *p = fsrv_peer(c);
	struct pending_sign *ps;
	const uint8_t *key = w->key.id;
	char hex[AGENT_KEYID_HEX];
	int r;

	if (rq->has_keyid && (key = enroll_signing_key(ag, w, rq->keyid)) == NULL) {
		r = hsm_err(HSM_ENOENT, "key %.16s is not a current or retired key of %s",
		    agent_keyid_hex(rq->keyid, hex), w->c->id);
		log_warn(PEER_FMT ": %s", PEER_ARGS(p), hsm_err_msg(r));
		return send_error(c, AG_T_SIGN | AG_T_REPLY, rq->id, r, hsm_err_msg(r));
	}
	/* A slot in flight (and a reference), given back by sign_done (reader thread) or below. */
	if (fsrv_begin(c, MAX_SIGN_INFLIGHT) != 0)
		return send_error(c, AG_T_SIGN | AG_T_REPLY, rq->id, HSM_EBUSY,
		    "too many signatures in flight");
	if ((ps = calloc(1, sizeof(*ps))) == NULL) {
		fsrv_end(c);
		return HSM_ENOMEM;
	}
	ps->conn = c;
	ps->id = rq->id;
	/* From here sign_done may run on the reader thread at any time. */
	if ((r = kh_sign_call(ag->kh, key, rq->alg, rq->digest, rq->dlen, AGENT_SIGN_TIMEOUT_MS,
	    sign_done, ps)) != 0) {
		fsrv_end(c);		/* never the last reference: the read side holds one */
		free(ps);
		return send_error(c, AG_T_SIGN | AG_T_REPLY, rq->id, r, hsm_err_msg(r));
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

	if ((r = resolve(ag, cl, rq->spiffe_id, &w)) != 0) {
		log_warn(PEER_FMT ": %s", PEER_ARGS(p), hsm_err_msg(r));
		return send_error(c, rtype, rq->id, r, hsm_err_msg(r));
	}
	if (rq->type == AG_T_SUBSCRIBE && (r = sub_add(cl, w, rq->id)) != 0)
		return r;
	if (!wl_valid(w))
		return send_error(c, rtype, rq->id, HSM_EAGAIN, w->have ?
		    "certificate expired; renewal in progress" : "not enrolled yet");
	switch (rq->type) {
	case AG_T_GET_SVID:
	case AG_T_SUBSCRIBE:
		log_debug(PEER_FMT ": %s %s", PEER_ARGS(p),
		    rq->type == AG_T_GET_SVID ? "GET_SVID" : "SUBSCRIBE", w->c->id);
		return send_svid(c, rtype, rq->id, w);
	case AG_T_SIGN:
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
	if (fsrv_count(ag->api) >= MAX_CONNS) {
		log_warn("refused " PEER_FMT ": too many clients", PEER_ARGS(p));
		return HSM_EBUSY;
	}
	if ((cl = calloc(1, sizeof(*cl))) == NULL)
		return HSM_ENOMEM;
	/* The process, once, tied to the socket through its pidfd (selector.h). */
	if ((r = sel_proc_from_socket(fsrv_conn_fd(c), &cl->proc, &weak)) != 0) {
		log_warn("refused " PEER_FMT ": %s", PEER_ARGS(p), hsm_err_msg(r));
		free(cl);
		return HSM_EPERM;
	}
	if (weak && !weak_logged) {
		weak_logged = 1;
		log_warn("this kernel has no SO_PEERPIDFD: a local client's process is found by its "
		    "PID at accept (a PID reused between connect and accept goes unnoticed)");
	}
	for (size_t i = 0; i < ag->nwl && !allowed; i++)
		allowed = wl_allows(ag->wl[i], &cl->proc, &why);
	if (!allowed) {
		log_warn("refused " PEER_FMT ": no workload identity for this process%s%s%s", PEER_ARGS(p),
		    ag->nwl > 0 && why != NULL ? " (selectors: " : "",
		    ag->nwl > 0 && why != NULL ? why : "", ag->nwl > 0 && why != NULL ? ")" : "");
		sel_proc_clear(&cl->proc);
		free(cl);
		return HSM_EPERM;
	}
	fsrv_set_udata(c, cl);
	log_debug(PEER_FMT " connected (%s)", PEER_ARGS(p), cl->proc.have_exe ? cl->proc.exe :
	    "executable unknown");
	return 0;
}

/* Frame server: a client's read side ended. */
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
	.max_frame = MAX_REQ,
	.max_out = MAX_OUTBUF,
	.read_batch = 1,
	.check = api_check,
	.accept = api_accept,
	.frame = api_frame,
	.closed = api_closed,
};

int
api_start(struct agent *ag)
{
	int r;

	if ((r = fsrv_new(&api_ops, ag, ag->ep, &ag->api)) != 0 ||
	    (r = fsrv_listen(ag->api, ag->conf->socket, 0666)) != 0 ||
	    (r = agent_epoll_add(ag->ep, fsrv_listen_fd(ag->api), &tag_listen)) != 0 ||
	    (r = agent_epoll_add(ag->ep, fsrv_watch_fd(ag->api), &tag_watch)) != 0)
		return r;
	return 0;
}

void
api_event(struct agent *ag, void *tag)
{
	if (tag == &tag_listen)
		fsrv_accept(ag->api);
	else if (tag == &tag_watch)
		fsrv_flush_ready(ag->api);
	else
		fsrv_readable(tag, NULL);
}

void
api_stop(struct agent *ag)
{
	fsrv_free(ag->api);
	ag->api = NULL;
}
