/*
 * agclient.c - client side of the agent's local API (see agclient.h).
 *
 * On the request/reply core of rpc.h, like khclient.c: its reader thread
 * ends every request, by reply, deadline or the agent's death; a request
 * may outlive the client (an OpenSSL async job still holding it). The one
 * subscription a client may have lives in the client itself, under the
 * core's lock, and ends at the latest when the reader does (agc_tick,
 * agc_closed). Frames are made and checked by agentproto.c only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agclient.h"
#include "agentproto.h"
#include "err.h"
#include "keytypes.h"
#include "rpc.h"
#include "util.h"

struct agc_req {
	struct rpc_req rpc;		/* first: the core's view */
	uint8_t sig[HSM_MAX_SIG];	/* SIGN_TBS */
	size_t siglen;
	char *chain, *bundle;		/* GET_SVID, NUL-terminated */
	uint64_t not_after;
	int refused;			/* ended by the agent's error reply */
};

/* The client's subscription; cb == NULL when there is none. */
struct agc_sub {
	agc_update_fn cb;
	void *arg;
	uint32_t id;			/* the SUBSCRIBE's; its UPDATEs carry it too */
	uint64_t deadline;		/* monotonic ms for the reply; 0 once answered */
	int nowait;			/* AGC_SUB_NOWAIT */
};

/* A callback decided under the lock, made by the reader after dropping it. */
struct sub_call {
	agc_update_fn cb;		/* NULL: nothing to call */
	void *arg;
	int status;			/* 0: svid below; else the final status */
	const char *why;		/* its detail */
	struct agc_svid svid;
	char *pem;			/* svid's chain and bundle, NUL-terminated */
};

/* The client's CRL subscription; cb == NULL when there is none. */
struct agc_crlsub {
	agc_crl_fn cb;
	void *arg;
	uint32_t id;			/* the CRL_SUBSCRIBE's; its pushes carry it too */
	uint64_t deadline;		/* monotonic ms for the reply; 0 once answered */
};

/* A CRL callback decided under the lock, made by the reader after dropping it. */
struct crl_call {
	agc_crl_fn cb;
	void *arg;
	int status;
	const char *why;
	uint8_t *der;			/* a copy, or NULL (none yet) */
	size_t len;
};

struct agc_client {
	struct rpc_conn rpc;		/* first: the core's view; its lock guards sub, crl */
	struct agc_sub sub;
	int sub_refused;		/* the last subscription ended by the agent's error reply */
	struct agc_crlsub crl;
};

/* End the CRL subscription, if any, with status; its final call to *call. Lock held. */
static void
crl_end_locked(struct agc_client *c, int status, const char *why, struct crl_call *call)
{
	if (c->crl.cb == NULL)
		return;
	call->cb = c->crl.cb;
	call->arg = c->crl.arg;
	call->status = status;
	call->why = why;
	memset(&c->crl, 0, sizeof(c->crl));
}

/* A frame for the CRL subscription (its reply or a push); lock held. */
static void
crl_frame_locked(struct agc_client *c, const struct ag_reply *rep, struct crl_call *call)
{
	if (rep->type != AG_T_CRL && rep->type != (AG_T_CRL_SUBSCRIBE | AG_T_REPLY)) {
		crl_end_locked(c, HSM_EPROTO, "agent answered with another reply type", call);
		return;
	}
	if (rep->status != 0) {
		crl_end_locked(c, rep->status, rep->errtext, call);
		return;
	}
	c->crl.deadline = 0;
	if (rep->crllen > 0 && (call->der = malloc(rep->crllen)) == NULL) {
		crl_end_locked(c, HSM_ENOMEM, "out of memory for a CRL from the agent", call);
		return;
	}
	if (rep->crllen > 0)
		memcpy(call->der, rep->crl, rep->crllen);
	call->len = rep->crllen;
	call->cb = c->crl.cb;
	call->arg = c->crl.arg;
}

/* Make a decided CRL callback; reader thread, the lock not held. */
static void
crl_call_run(struct crl_call *call)
{
	if (call->cb != NULL) {
		if (call->status != 0)
			(void)hsm_err(call->status, "%s", call->why != NULL && call->why[0] != '\0' ?
			    call->why : hsm_strerror(call->status));
		call->cb(call->arg, call->status, call->der, call->len);
	}
	free(call->der);
	memset(call, 0, sizeof(*call));
}

static void
agc_req_release(struct rpc_req *rr)
{
	struct agc_req *r = (struct agc_req *)rr;

	free(r->chain);
	free(r->bundle);
	free(r);
}

static void
agc_conn_free(struct rpc_conn *rc)
{
	free((struct agc_client *)rc);
}

/* End r with the agent's reply; lock held. The reply was validated by ag_reply_decode. */
static void
req_finish_locked(struct agc_req *r, const struct ag_reply *rep)
{
	int status = rep->status;

	r->refused = status != 0;
	if (status == 0 && r->rpc.type == AG_T_SIGN_TBS) {
		memcpy(r->sig, rep->sig, rep->siglen);
		r->siglen = rep->siglen;
	} else if (status == 0) {
		r->not_after = rep->svid.not_after;
		if ((r->chain = malloc(rep->svid.chainlen + 1)) == NULL ||
		    (r->bundle = malloc(rep->svid.bundlelen + 1)) == NULL) {
			free(r->chain);
			r->chain = NULL;
			status = HSM_ENOMEM;
		} else {
			memcpy(r->chain, rep->svid.chain, rep->svid.chainlen);
			r->chain[rep->svid.chainlen] = '\0';
			if (rep->svid.bundlelen > 0)
				memcpy(r->bundle, rep->svid.bundle, rep->svid.bundlelen);
			r->bundle[rep->svid.bundlelen] = '\0';
		}
	}
	rpc_req_end_locked(&r->rpc, status, rep->errtext, status != 0 ? strlen(rep->errtext) : 0);
}

#define WRONG_TYPE "agent answered with another reply type"

/*
 * End the subscription, if any, with status (refused: the agent's error
 * reply): its final call goes to *call. The lock held.
 */
static void
sub_end_locked(struct agc_client *c, int status, int refused, const char *why,
    struct sub_call *call)
{
	if (c->sub.cb == NULL)
		return;
	call->cb = c->sub.cb;
	call->arg = c->sub.arg;
	call->status = status;
	call->why = why;
	c->sub_refused = refused;
	memset(&c->sub, 0, sizeof(c->sub));
}

/*
 * A frame for the subscription (its reply or an UPDATE); the lock held. A
 * "not enrolled yet" (HSM_EAGAIN) reply ends nothing: the agent keeps the
 * subscription and its first UPDATE follows the enrollment.
 */
static void
sub_frame_locked(struct agc_client *c, const struct ag_reply *rep, struct sub_call *call)
{
	const struct ag_svid *s = &rep->svid;

	if (rep->type != AG_T_UPDATE && rep->type != (AG_T_SUBSCRIBE | AG_T_REPLY)) {
		sub_end_locked(c, HSM_EPROTO, 0, WRONG_TYPE, call);
		return;
	}
	if (rep->status == HSM_EAGAIN && rep->type != AG_T_UPDATE && !c->sub.nowait) {
		c->sub.deadline = 0;
		return;
	}
	if (rep->status != 0) {
		sub_end_locked(c, rep->status, 1, rep->errtext, call);
		return;
	}
	c->sub.deadline = 0;
	if ((call->pem = malloc(s->chainlen + 1 + s->bundlelen + 1)) == NULL) {
		sub_end_locked(c, HSM_ENOMEM, 0, "out of memory for an SVID from the agent", call);
		return;
	}
	memcpy(call->pem, s->chain, s->chainlen);
	call->pem[s->chainlen] = '\0';
	if (s->bundlelen > 0)
		memcpy(call->pem + s->chainlen + 1, s->bundle, s->bundlelen);
	call->pem[s->chainlen + 1 + s->bundlelen] = '\0';
	call->svid.spiffe_id = s->spiffe_id;
	call->svid.chain_pem = call->pem;
	call->svid.bundle_pem = call->pem + s->chainlen + 1;
	call->svid.not_after = s->not_after;
	call->svid.update = rep->type == AG_T_UPDATE;
	call->cb = c->sub.cb;
	call->arg = c->sub.arg;
}

/* Make a decided callback; reader thread, the lock not held. */
static void
sub_call_run(struct sub_call *call)
{
	if (call->cb != NULL) {
		if (call->status == 0) {
			call->cb(call->arg, 0, &call->svid);
		} else {
			/* The callback may read the detail with hsm_err_msg(status). */
			(void)hsm_err(call->status, "%s", call->why[0] != '\0' ? call->why :
			    hsm_strerror(call->status));
			call->cb(call->arg, call->status, NULL);
		}
	}
	free(call->pem);
	memset(call, 0, sizeof(*call));
}

/* One validated frame from the agent. UPDATEs for no subscription are dropped. */
static void
handle_reply(struct agc_client *c, const struct ag_reply *rep)
{
	struct sub_call call = { 0 };
	struct crl_call ccall = { 0 };
	struct agc_req *r;

	rpc_lock(&c->rpc);
	if (c->crl.cb != NULL && rep->id == c->crl.id) {
		crl_frame_locked(c, rep, &ccall);
		rpc_unlock(&c->rpc);
		crl_call_run(&ccall);
		return;
	}
	if (rep->type == AG_T_CRL) {
		rpc_unlock(&c->rpc);
		return;
	}
	if (c->sub.cb != NULL && rep->id == c->sub.id) {
		sub_frame_locked(c, rep, &call);
		rpc_unlock(&c->rpc);
		sub_call_run(&call);
		return;
	}
	if (rep->type == AG_T_UPDATE) {
		rpc_unlock(&c->rpc);
		return;
	}
	/* A reply for a request that already timed out is dropped. */
	if ((r = (struct agc_req *)rpc_req_find_locked(&c->rpc, rep->id)) != NULL) {
		if (rep->type == (r->rpc.type | AG_T_REPLY))
			req_finish_locked(r, rep);
		else
			rpc_req_end_locked(&r->rpc, HSM_EPROTO, WRONG_TYPE, sizeof(WRONG_TYPE) - 1);
	}
	rpc_unlock(&c->rpc);
}

static int
agc_on_frame(struct rpc_conn *rc, const uint8_t *buf, size_t len)
{
	struct ag_frame f;
	struct ag_reply rep;
	int flen = ag_frame_parse(buf, len, &f);

	if (flen <= 0)
		return flen;
	if (ag_reply_decode(&f, &rep) != 0)
		return -1;
	handle_reply((struct agc_client *)rc, &rep);
	return flen;
}

/* The subscription's reply deadline; ms to it, or -1. Reader thread. */
static int
agc_tick(struct rpc_conn *rc, uint64_t now)
{
	struct agc_client *c = (struct agc_client *)rc;
	struct sub_call call = { 0 };
	struct crl_call ccall = { 0 };
	int ms = -1;

	rpc_lock(rc);
	if (c->sub.cb != NULL && c->sub.deadline != 0) {
		if (c->sub.deadline <= now)
			sub_end_locked(c, HSM_ETIMEDOUT, 0,
			    "agent did not answer the subscription before the deadline", &call);
		else
			ms = (int)(c->sub.deadline - now);
	}
	if (c->crl.cb != NULL && c->crl.deadline != 0) {
		if (c->crl.deadline <= now)
			crl_end_locked(c, HSM_ETIMEDOUT,
			    "agent did not answer the CRL subscription before the deadline", &ccall);
		else if (ms < 0 || (int)(c->crl.deadline - now) < ms)
			ms = (int)(c->crl.deadline - now);
	}
	rpc_unlock(rc);
	if (call.cb != NULL || ccall.cb != NULL) {
		sub_call_run(&call);
		crl_call_run(&ccall);
		ms = 0;		/* time passed in the callback: look again */
	}
	return ms;
}

/* The connection ended: so does the subscription. Reader thread. */
static void
agc_closed(struct rpc_conn *rc, const char *why)
{
	struct agc_client *c = (struct agc_client *)rc;
	struct sub_call call = { 0 };
	struct crl_call ccall = { 0 };

	rpc_lock(rc);
	sub_end_locked(c, HSM_ECLOSED, 0, why, &call);
	crl_end_locked(c, HSM_ECLOSED, why, &ccall);
	rpc_unlock(rc);
	sub_call_run(&call);
	crl_call_run(&ccall);
}

static const struct rpc_ops agc_ops = {
	.peer = "the agent",
	/* A whole frame always fits: ag_frame_parse refuses longer ones. */
	.bufsize = AG_MAX_FRAME,
	.frame = agc_on_frame,
	.tick = agc_tick,
	.closed = agc_closed,
	.req_free = agc_req_release,
	.conn_free = agc_conn_free,
};

int
agc_client_new(int fd, struct agc_client **out)
{
	struct rpc_conn *rc;
	int st = rpc_conn_new(sizeof(struct agc_client), fd, &agc_ops, &rc);

	*out = (struct agc_client *)rc;
	return st;
}

void
agc_free(struct agc_client *c)
{
	if (c != NULL)
		rpc_conn_close(&c->rpc);
}

int
agc_connect(const char *path, struct agc_client **out)
{
	struct rpc_conn *rc;
	int st = rpc_conn_connect(path, sizeof(struct agc_client), &agc_ops, &rc);

	*out = (struct agc_client *)rc;
	return st;
}

/* What a SIGN_TBS carries (req_send's). */
struct sign_args {
	const uint8_t *keyid;
	int alg, hash;
	const uint8_t *tbs;
	size_t tbslen;
};

/*
 * Queue a request, encode its frame with the id it was given and send it:
 * SIGN_TBS (sa) or GET_SVID (sa NULL). On success *out holds the owner's
 * reference. Runs inside OpenSSL async jobs: keep the stack small.
 */
static int
req_send(struct agc_client *c, uint8_t type, const char *spiffe_id, const struct sign_args *sa,
    unsigned timeout_ms, int notify_fd, struct agc_req **out)
{
	struct agc_req *r;
	uint8_t *frame = NULL;
	size_t len = 0;
	int st;

	*out = NULL;
	if (sa != NULL && (sa->alg < 1 || sa->alg > 255 || sa->hash < 1 || sa->hash > 255))
		return hsm_err(HSM_EINVAL, "bad signature algorithm %d or hash %d", sa->alg, sa->hash);
	if (sa != NULL && sa->tbslen > AG_MAX_TBS)
		return hsm_err(HSM_EINVAL, "%zu bytes to sign: the agent signs at most %d",
		    sa->tbslen, AG_MAX_TBS);
	if (timeout_ms == 0)
		timeout_ms = AGC_DEFAULT_TIMEOUT_MS;
	if (timeout_ms > AGC_MAX_TIMEOUT_MS)
		timeout_ms = AGC_MAX_TIMEOUT_MS;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return HSM_ENOMEM;
	if ((st = rpc_req_queue(&c->rpc, &r->rpc, type, timeout_ms, notify_fd)) != 0) {
		free(r);
		return st;
	}
	if (sa != NULL)
		st = ag_encode_sign_tbs(r->rpc.id, spiffe_id, sa->keyid, (uint8_t)sa->alg,
		    (uint8_t)sa->hash, sa->tbs, sa->tbslen, &frame, &len);
	else
		st = ag_encode_get(type, r->rpc.id, spiffe_id, &frame, &len);
	if (st != 0) {
		rpc_req_cancel(&r->rpc);
		return hsm_err(st, "cannot encode the request (SPIFFE ID, algorithm or hash)");
	}
	st = rpc_req_send(&r->rpc, frame, len);
	free(frame);
	if (st != 0)
		return st;
	*out = r;
	return 0;
}

int
agc_req_done(struct agc_req *r)
{
	return rpc_req_done(&r->rpc);
}

void
agc_req_free(struct agc_req *r)
{
	if (r != NULL)
		rpc_req_free(&r->rpc);
}

int
agc_get_start(struct agc_client *c, const char *spiffe_id, unsigned timeout_ms,
    struct agc_req **out)
{
	return req_send(c, AG_T_GET_SVID, spiffe_id, NULL, timeout_ms, -1, out);
}

int
agc_req_wait(struct agc_req *r)
{
	return rpc_req_wait(&r->rpc);
}

int
agc_req_refused(struct agc_req *r)
{
	return rpc_req_done(&r->rpc) && r->refused;
}

int
agc_req_svid(struct agc_req *r, char **chain_pem, char **bundle_pem, uint64_t *not_after)
{
	int st;

	*chain_pem = NULL;
	*bundle_pem = NULL;
	*not_after = 0;
	if (!rpc_req_done(&r->rpc))
		return HSM_EAGAIN;
	if ((st = rpc_req_status(&r->rpc)) != 0)
		return st;
	if (r->rpc.type != AG_T_GET_SVID || r->chain == NULL)
		return hsm_err(HSM_EINVAL, "not a finished GET_SVID request");
	/* The reader is done with r: its fields are ours to take. */
	*chain_pem = r->chain;
	*bundle_pem = r->bundle;
	*not_after = r->not_after;
	r->chain = r->bundle = NULL;
	return 0;
}

int
agc_get_svid(struct agc_client *c, const char *spiffe_id, unsigned timeout_ms,
    char **chain_pem, char **bundle_pem, uint64_t *not_after)
{
	struct agc_req *r;
	int st;

	*chain_pem = NULL;
	*bundle_pem = NULL;
	*not_after = 0;
	if ((st = agc_get_start(c, spiffe_id, timeout_ms, &r)) != 0)
		return st;
	if ((st = agc_req_wait(r)) == 0)
		st = agc_req_svid(r, chain_pem, bundle_pem, not_after);
	agc_req_free(r);
	return st;
}

int
agc_sign_start(struct agc_client *c, const char *spiffe_id, const uint8_t *keyid, int alg,
    int hash, const uint8_t *tbs, size_t tbslen, unsigned timeout_ms, int notify_fd,
    struct agc_req **out)
{
	struct sign_args sa = { keyid, alg, hash, tbs, tbslen };

	return req_send(c, AG_T_SIGN_TBS, spiffe_id, &sa, timeout_ms, notify_fd, out);
}

int
agc_req_result(struct agc_req *r, uint8_t *sig, size_t *siglen)
{
	int st;

	*siglen = 0;
	if (!rpc_req_done(&r->rpc))
		return HSM_EAGAIN;
	if ((st = rpc_req_status(&r->rpc)) != 0)
		return st;
	if (r->rpc.type != AG_T_SIGN_TBS || r->siglen == 0)
		return hsm_err(HSM_EINVAL, "not a finished signature request");
	memcpy(sig, r->sig, r->siglen);
	*siglen = r->siglen;
	return 0;
}

int
agc_sign(struct agc_client *c, const char *spiffe_id, const uint8_t *keyid, int alg, int hash,
    const uint8_t *tbs, size_t tbslen, unsigned timeout_ms, uint8_t *sig, size_t *siglen)
{
	struct agc_req *r;
	int st;

	*siglen = 0;
	if ((st = agc_sign_start(c, spiffe_id, keyid, alg, hash, tbs, tbslen, timeout_ms, -1,
	    &r)) != 0)
		return st;
	if ((st = agc_req_wait(r)) == 0)
		st = agc_req_result(r, sig, siglen);
	agc_req_free(r);
	return st;
}

int
agc_subscribe(struct agc_client *c, const char *spiffe_id, agc_update_fn cb, void *arg)
{
	return agc_subscribe_flags(c, spiffe_id, 0, cb, arg);
}

int
agc_sub_refused(struct agc_client *c)
{
	int r;

	rpc_lock(&c->rpc);
	r = c->sub_refused;
	rpc_unlock(&c->rpc);
	return r;
}

/*
 * Send a subscription's frame (freed here), registered with id as the
 * SVID subscription (crl 0) or the CRL one (crl 1). Not sent: unless the
 * reader has ended the subscription meanwhile (the agent went away; the
 * final call is then made), it never began.
 */
static int
sub_send(struct agc_client *c, uint8_t *frame, size_t len, uint32_t id, int crl)
{
	int st = rpc_send(&c->rpc, frame, len);

	free(frame);
	if (st == 0)
		return 0;
	rpc_lock(&c->rpc);
	if (crl && c->crl.cb != NULL && c->crl.id == id)
		memset(&c->crl, 0, sizeof(c->crl));
	else if (!crl && c->sub.cb != NULL && c->sub.id == id)
		memset(&c->sub, 0, sizeof(c->sub));
	else
		st = 0;
	rpc_unlock(&c->rpc);
	return st;
}

int
agc_subscribe_flags(struct agc_client *c, const char *spiffe_id, unsigned flags, agc_update_fn cb,
    void *arg)
{
	uint8_t *frame = NULL;
	size_t len = 0;
	uint32_t id;
	int st;

	if (cb == NULL)
		return hsm_err(HSM_EINVAL, "agc_subscribe: no callback");
	rpc_lock(&c->rpc);
	if (c->rpc.closed || c->sub.cb != NULL) {
		st = c->rpc.closed ? hsm_err(HSM_ECLOSED, "the agent is gone") :
		    hsm_err(HSM_EBUSY, "this agent client already has a subscription");
		rpc_unlock(&c->rpc);
		return st;
	}
	id = rpc_next_id_locked(&c->rpc);
	/* Encoded first: a request that cannot be sent registers nothing. */
	if ((st = ag_encode_get(AG_T_SUBSCRIBE, id, spiffe_id, &frame, &len)) == 0)
		c->sub = (struct agc_sub){ cb, arg, id, hsm_now_ms() + AGC_DEFAULT_TIMEOUT_MS,
		    (flags & AGC_SUB_NOWAIT) != 0 };
	c->sub_refused = 0;
	rpc_unlock(&c->rpc);
	if (st != 0)
		return hsm_err(st, "cannot encode the subscription (bad SPIFFE ID?)");
	return sub_send(c, frame, len, id, 0);
}

int
agc_subscribe_crl(struct agc_client *c, agc_crl_fn cb, void *arg)
{
	uint8_t *frame = NULL;
	size_t len = 0;
	uint32_t id;
	int st;

	if (cb == NULL)
		return hsm_err(HSM_EINVAL, "agc_subscribe_crl: no callback");
	rpc_lock(&c->rpc);
	if (c->rpc.closed || c->crl.cb != NULL) {
		st = c->rpc.closed ? hsm_err(HSM_ECLOSED, "the agent is gone") :
		    hsm_err(HSM_EBUSY, "this agent client already follows the CRL");
		rpc_unlock(&c->rpc);
		return st;
	}
	id = rpc_next_id_locked(&c->rpc);
	if ((st = ag_encode_crl_subscribe(id, &frame, &len)) == 0)
		c->crl = (struct agc_crlsub){ cb, arg, id, hsm_now_ms() + AGC_DEFAULT_TIMEOUT_MS };
	rpc_unlock(&c->rpc);
	if (st != 0)
		return st;
	return sub_send(c, frame, len, id, 1);
}
