/*
 * khclient.c - client side of the keyholder protocol (see khclient.h),
 * on the request/reply core of rpc.h: its reader thread ends every
 * request, by reply, deadline or the keyholder's death; a request may
 * outlive the client (an OpenSSL async job still holding it).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "khclient.h"
#include "khproto.h"
#include "rpc.h"
#include "util.h"

struct kh_req {
	struct rpc_req rpc;		/* first: the core's view */
	uint8_t *reply;			/* a successful reply's body */
	size_t replylen;
	kh_sign_cb cb;			/* kh_sign_call */
	kh_pool_cb pcb;			/* kh_pool_call */
	void *arg;
};

/* How an owner-less request ends (kh_sign_call, kh_pool_call): done calls sign or pool. */
struct req_cb {
	void (*done)(struct rpc_req *);
	kh_sign_cb sign;
	kh_pool_cb pool;
	void *arg;
};

struct kh_client {
	struct rpc_conn rpc;		/* first: the core's view */
};

static void
kh_req_release(struct rpc_req *rr)
{
	struct kh_req *r = (struct kh_req *)rr;

	free(r->reply);
	free(r);
}

static void
kh_conn_free(struct rpc_conn *rc)
{
	free((struct kh_client *)rc);
}

/* One frame from the keyholder: match it to its request. */
static int
kh_on_frame(struct rpc_conn *rc, const uint8_t *buf, size_t len)
{
	struct kh_frame f;
	struct kh_req *r;
	int flen, status;

	if ((flen = kh_frame_parse(buf, len, &f)) <= 0)
		return flen;
	rpc_lock(rc);
	r = (struct kh_req *)rpc_req_find_locked(rc, f.id);
	/* A reply for a request that already timed out is dropped. */
	if (r != NULL && f.type == (r->rpc.type | KH_T_REPLY)) {
		status = -(int)f.arg;
		if (f.arg > (uint32_t)-HSM_ERR_MIN)
			status = HSM_EPROTO;
		if (status == 0 && f.bodylen > 0) {
			if ((r->reply = malloc(f.bodylen)) == NULL) {
				status = HSM_ENOMEM;
			} else {
				memcpy(r->reply, f.body, f.bodylen);
				r->replylen = f.bodylen;
			}
		}
		rpc_req_end_locked(&r->rpc, status, (const char *)f.body,
		    status != 0 ? f.bodylen : 0);
	}
	rpc_unlock(rc);
	return flen;
}

static const struct rpc_ops kh_ops = {
	.peer = "keyholder",
	.bufsize = 2 * KH_MAX_FRAME,
	.frame = kh_on_frame,
	.req_free = kh_req_release,
	.conn_free = kh_conn_free,
};

int
kh_client_new(int fd, struct kh_client **out)
{
	struct rpc_conn *rc;
	int st = rpc_conn_new(sizeof(struct kh_client), fd, &kh_ops, &rc);

	*out = (struct kh_client *)rc;
	return st;
}

void
kh_client_free(struct kh_client *c)
{
	if (c != NULL)
		rpc_conn_close(&c->rpc);
}

int
kh_connect(const char *path, struct kh_client **out)
{
	struct rpc_conn *rc;
	int st = rpc_conn_connect(path, sizeof(struct kh_client), &kh_ops, &rc);

	*out = (struct kh_client *)rc;
	return st;
}

/* A kh_sign_call request ended: hand its result to the caller's callback (reader thread). */
static void
kh_sign_done(struct rpc_req *rr)
{
	struct kh_req *r = (struct kh_req *)rr;
	int st = rpc_req_status(rr);

	if (st == 0 && (r->replylen == 0 || r->replylen > HSM_MAX_SIG))
		st = hsm_err(HSM_EPROTO, "keyholder sent a malformed signature");
	if (st != 0)
		r->cb(r->arg, st, NULL, 0);
	else
		r->cb(r->arg, 0, r->reply, r->replylen);
}

/* A kh_pool_call request ended: its parsed reply to the caller's callback (reader thread). */
static void
kh_pool_done(struct rpc_req *rr)
{
	struct kh_req *r = (struct kh_req *)rr;
	struct kh_pool p;
	int st = rpc_req_status(rr);

	if (st == 0 && kh_pool_parse(r->reply, r->replylen, &p) != 0)
		st = hsm_err(HSM_EPROTO, "keyholder sent a malformed pool reply");
	r->pcb(r->arg, st, st == 0 ? &p : NULL);
}

/*
 * Queue a request and send its frame. On success *out holds the owner's
 * reference; with cb there is no owner (out may be NULL) and cb->done gets the end.
 */
static int
req_send(struct kh_client *c, uint8_t type, unsigned timeout_ms, const uint8_t *b1, size_t l1,
    const uint8_t *b2, size_t l2, int notify_fd, const struct req_cb *cb, struct kh_req **out)
{
	uint8_t frame[KH_MAX_FRAME];
	struct kh_req *r;
	int n, st;

	if (out != NULL)
		*out = NULL;
	if (timeout_ms == 0)
		timeout_ms = KH_DEFAULT_TIMEOUT_MS;
	if (timeout_ms > KH_MAX_DEADLINE_MS)
		timeout_ms = KH_MAX_DEADLINE_MS;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return HSM_ENOMEM;
	if (cb != NULL) {
		r->cb = cb->sign;
		r->pcb = cb->pool;
		r->arg = cb->arg;
		r->rpc.done_cb = cb->done;
	}
	if ((st = rpc_req_queue(&c->rpc, &r->rpc, type, timeout_ms, notify_fd)) != 0) {
		free(r);
		return st;
	}
	n = kh_frame_encode(frame, sizeof(frame), type, r->rpc.id, timeout_ms, b1, l1, b2, l2);
	if (n < 0) {
		rpc_req_cancel(&r->rpc);
		return hsm_err(HSM_EINVAL, "keyholder request too large");
	}
	if (cb != NULL)
		return rpc_req_send_cb(&r->rpc, frame, (size_t)n);
	if ((st = rpc_req_send(&r->rpc, frame, (size_t)n)) != 0)
		return st;
	*out = r;
	return 0;
}

int
kh_req_done(struct kh_req *r)
{
	return rpc_req_done(&r->rpc);
}

void
kh_req_free(struct kh_req *r)
{
	if (r != NULL)
		rpc_req_free(&r->rpc);
}

/* Send, wait, and hand back the reply body (owned by the caller). */
static int
call(struct kh_client *c, uint8_t type, unsigned timeout_ms, const uint8_t *b1, size_t l1,
    const uint8_t *b2, size_t l2, uint8_t **body, size_t *bodylen)
{
	struct kh_req *r;
	int st;

	*body = NULL;
	*bodylen = 0;
	if ((st = req_send(c, type, timeout_ms, b1, l1, b2, l2, -1, NULL, &r)) != 0)
		return st;
	if ((st = rpc_req_wait(&r->rpc)) == 0) {
		/* The reader is done with r: its reply is ours to take. */
		*body = r->reply;
		*bodylen = r->replylen;
		r->reply = NULL;
	}
	kh_req_free(r);
	return st;
}

int
kh_ping(struct kh_client *c, unsigned timeout_ms)
{
	uint8_t *b;
	size_t bl;
	int st;

	st = call(c, KH_T_PING, timeout_ms, NULL, 0, NULL, 0, &b, &bl);
	free(b);
	return st;
}

int
kh_pool(struct kh_client *c, unsigned timeout_ms, struct kh_pool *out)
{
	uint8_t *b;
	size_t bl;
	int st;

	memset(out, 0, sizeof(*out));
	if ((st = call(c, KH_T_POOL, timeout_ms, NULL, 0, NULL, 0, &b, &bl)) != 0)
		return st;
	if (kh_pool_parse(b, bl, out) != 0)
		st = hsm_err(HSM_EPROTO, "keyholder sent a malformed pool reply");
	free(b);
	return st;
}

/* Split a keyid + SPKI reply. */
static int
keyid_spki(uint8_t *b, size_t bl, uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	if (bl <= HSM_KEYID_LEN || bl > HSM_KEYID_LEN + HSM_MAX_SPKI) {
		free(b);
		return hsm_err(HSM_EPROTO, "keyholder sent a malformed key reply");
	}
	memcpy(keyid, b, HSM_KEYID_LEN);
	memmove(b, b + HSM_KEYID_LEN, bl - HSM_KEYID_LEN);
	*spki = b;
	*spkilen = bl - HSM_KEYID_LEN;
	return 0;
}

static int
label_body(const char *label, uint8_t *lb, size_t *len)
{
	size_t n = label == NULL ? 0 : strlen(label);

	if (n > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label longer than %d bytes", HSM_MAX_LABEL);
	lb[0] = (uint8_t)n;
	if (n > 0)
		memcpy(lb + 1, label, n);
	*len = n + 1;
	return 0;
}

/* A request of type whose body is a non-empty label, answered with a key id and its SPKI. */
static int
label_key(struct kh_client *c, uint8_t type, const char *label, unsigned timeout_ms,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	uint8_t lb[HSM_MAX_LABEL + 1], *b;
	size_t ll, bl;
	int st;

	*spki = NULL;
	*spkilen = 0;
	if (label == NULL || *label == '\0')
		return hsm_err(HSM_EINVAL, "empty key label");
	if ((st = label_body(label, lb, &ll)) != 0 ||
	    (st = call(c, type, timeout_ms, lb, ll, NULL, 0, &b, &bl)) != 0)
		return st;
	return keyid_spki(b, bl, keyid, spki, spkilen);
}

int
kh_generate_flags(struct kh_client *c, enum hsm_keytype kt, const char *label, unsigned flags,
    unsigned timeout_ms, uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	uint8_t lb[HSM_MAX_LABEL + 2], k = (uint8_t)kt, *b;
	size_t ll, bl;
	int st;

	*spki = NULL;
	*spkilen = 0;
	if ((flags & ~HSM_GEN_ALL) != 0)
		return hsm_err(HSM_EINVAL, "unknown key generation flags 0x%x", flags);
	if ((st = label_body(label, lb, &ll)) != 0)
		return st;
	if (flags != 0)
		lb[ll++] = (uint8_t)flags;	/* the optional byte after the label */
	if ((st = call(c, KH_T_GENERATE, timeout_ms, &k, 1, lb, ll, &b, &bl)) != 0)
		return st;
	return keyid_spki(b, bl, keyid, spki, spkilen);
}

int
kh_generate(struct kh_client *c, enum hsm_keytype kt, const char *label, unsigned timeout_ms,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	return kh_generate_flags(c, kt, label, 0, timeout_ms, keyid, spki, spkilen);
}

int
kh_unwrapping_key(struct kh_client *c, const char *label, unsigned timeout_ms,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	return label_key(c, KH_T_UNWRAPPING_KEY, label, timeout_ms, keyid, spki, spkilen);
}

int
kh_wrap(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], const uint8_t *target_spki,
    size_t target_len, unsigned timeout_ms, struct hsm_wrapped *out)
{
	uint8_t *b = NULL;
	size_t bl = 0, tl;
	int st;

	memset(out, 0, sizeof(*out));
	if (target_spki == NULL || target_len == 0 || target_len > HSM_MAX_SPKI)
		return hsm_err(HSM_EINVAL, "wrapping key: 1..%d bytes of SPKI", HSM_MAX_SPKI);
	if ((st = call(c, KH_T_WRAP, timeout_ms, keyid, HSM_KEYID_LEN, target_spki, target_len,
	    &b, &bl)) != 0)
		return st;
	/* u8 oaep, u16 tlen, transport, the wrapped key: checked before use */
	if (bl < 3 || (b[0] != HSM_OAEP_SHA1 && b[0] != HSM_OAEP_SHA256) ||
	    (tl = hsm_get16(b + 1)) == 0 || tl > HSM_TRANSPORT_MAX || bl - 3 < tl + 16 ||
	    bl - 3 - tl > HSM_WRAPPED_MAX) {
		st = hsm_err(HSM_EPROTO, "keyholder sent a malformed wrapped key");
	} else {
		out->oaep = b[0];
		memcpy(out->transport, b + 3, tl);
		out->tlen = tl;
		memcpy(out->key, b + 3 + tl, bl - 3 - tl);
		out->klen = bl - 3 - tl;
	}
	if (b != NULL)
		OPENSSL_cleanse(b, bl);
	free(b);
	return st;
}

int
kh_unwrap(struct kh_client *c, const uint8_t wrapkey_id[HSM_KEYID_LEN],
    const struct hsm_wrapped *w, const uint8_t *spki, size_t spkilen, const char *label,
    unsigned timeout_ms, uint8_t keyid[HSM_KEYID_LEN])
{
	uint8_t body[KH_MAX_FRAME], *b = NULL, *p = body;
	size_t ll = label != NULL ? strlen(label) : 0, bl = 0;
	int st;

	memset(keyid, 0, HSM_KEYID_LEN);
	if (w->tlen == 0 || w->tlen > HSM_TRANSPORT_MAX || w->klen < 16 ||
	    w->klen > HSM_WRAPPED_MAX || spki == NULL || spkilen == 0 || spkilen > HSM_MAX_SPKI ||
	    ll > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "unwrap: a malformed wrapped key, public key or label");
	memcpy(p, wrapkey_id, HSM_KEYID_LEN);
	p += HSM_KEYID_LEN;
	*p++ = w->oaep;
	hsm_put16(p, (uint16_t)w->tlen);
	memcpy(p + 2, w->transport, w->tlen);
	p += 2 + w->tlen;
	hsm_put16(p, (uint16_t)spkilen);
	memcpy(p + 2, spki, spkilen);
	p += 2 + spkilen;
	*p++ = (uint8_t)ll;
	memcpy(p, label != NULL ? label : "", ll);
	p += ll;
	st = call(c, KH_T_UNWRAP, timeout_ms, body, (size_t)(p - body), w->key, w->klen, &b, &bl);
	OPENSSL_cleanse(body, sizeof(body));
	if (st != 0)
		return st;
	if (bl != HSM_KEYID_LEN)
		st = hsm_err(HSM_EPROTO, "keyholder sent a malformed key id");
	else
		memcpy(keyid, b, HSM_KEYID_LEN);
	free(b);
	return st;
}

int
kh_find(struct kh_client *c, const char *label, unsigned timeout_ms,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	return label_key(c, KH_T_FIND, label, timeout_ms, keyid, spki, spkilen);
}

int
kh_pubkey(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], unsigned timeout_ms,
    uint8_t **spki, size_t *spkilen)
{
	uint8_t *b;
	size_t bl;
	int st;

	*spki = NULL;
	*spkilen = 0;
	if ((st = call(c, KH_T_PUBKEY, timeout_ms, keyid, HSM_KEYID_LEN, NULL, 0, &b, &bl)) != 0)
		return st;
	if (bl == 0 || bl > HSM_MAX_SPKI) {
		free(b);
		return hsm_err(HSM_EPROTO, "keyholder sent a malformed public key");
	}
	*spki = b;
	*spkilen = bl;
	return 0;
}

int
kh_destroy(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], unsigned timeout_ms)
{
	uint8_t *b;
	size_t bl;
	int st;

	st = call(c, KH_T_DESTROY, timeout_ms, keyid, HSM_KEYID_LEN, NULL, 0, &b, &bl);
	free(b);
	return st;
}

int
kh_attrs(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], unsigned timeout_ms,
    uint8_t *flags)
{
	uint8_t *b;
	size_t bl;
	int st;

	*flags = 0;
	if ((st = call(c, KH_T_ATTRS, timeout_ms, keyid, HSM_KEYID_LEN, NULL, 0, &b, &bl)) != 0)
		return st;
	if (bl != 1 || (b[0] & ~KH_ATTR_ALL) != 0)
		st = hsm_err(HSM_EPROTO, "keyholder sent malformed key attributes");
	else
		*flags = b[0];
	free(b);
	return st;
}

int
kh_list(struct kh_client *c, const char *prefix, unsigned timeout_ms, kh_list_cb cb, void *arg)
{
	uint8_t after[HSM_KEYID_LEN], lb[HSM_MAX_LABEL + 1], *b;
	struct kh_list_entry e[KH_LIST_MAX];
	size_t ll, bl, n;
	int st;

	if (prefix == NULL || *prefix == '\0')
		return hsm_err(HSM_EINVAL, "empty key label prefix");
	if ((st = label_body(prefix, lb, &ll)) != 0)
		return st;
	memset(after, 0, sizeof(after));
	for (;;) {
		if ((st = call(c, KH_T_LIST, timeout_ms, after, sizeof(after), lb, ll, &b, &bl)) != 0)
			return st;
		st = kh_list_parse(b, bl, after, prefix, e, &n);
		free(b);
		if (st != 0)
			return hsm_err(HSM_EPROTO, "keyholder sent a malformed key list");
		if (n == 0)
			return 0;
		for (size_t i = 0; i < n; i++)
			if ((st = cb(arg, e[i].keyid, e[i].label)) != 0)
				return st;
		memcpy(after, e[n - 1].keyid, HSM_KEYID_LEN);
	}
}

static int
sign_body(const uint8_t keyid[HSM_KEYID_LEN], int alg, const uint8_t *dgst, size_t dlen,
    uint8_t *body, size_t *len)
{
	if (dlen < 20 || dlen > 64 || alg < 1 || alg > 255)
		return hsm_err(HSM_EINVAL, "bad digest length %zu or algorithm %d", dlen, alg);
	memcpy(body, keyid, HSM_KEYID_LEN);
	body[HSM_KEYID_LEN] = (uint8_t)alg;
	body[HSM_KEYID_LEN + 1] = (uint8_t)dlen;
	memcpy(body + HSM_KEYID_LEN + 2, dgst, dlen);
	*len = HSM_KEYID_LEN + 2 + dlen;
	return 0;
}

int
kh_sign(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, uint8_t *sig, size_t *siglen)
{
	uint8_t body[HSM_KEYID_LEN + 2 + 64], *b;
	size_t len = 0, bl;
	int st;

	*siglen = 0;
	if ((st = sign_body(keyid, alg, dgst, dlen, body, &len)) != 0)
		return st;
	if ((st = call(c, KH_T_SIGN, timeout_ms, body, len, NULL, 0, &b, &bl)) != 0)
		return st;
	if (bl == 0 || bl > HSM_MAX_SIG) {
		free(b);
		return hsm_err(HSM_EPROTO, "keyholder sent a malformed signature");
	}
	memcpy(sig, b, bl);
	*siglen = bl;
	free(b);
	return 0;
}

int
kh_sign_start(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, int notify_fd, struct kh_req **out)
{
	uint8_t body[HSM_KEYID_LEN + 2 + 64];
	size_t len = 0;
	int st;

	*out = NULL;
	if ((st = sign_body(keyid, alg, dgst, dlen, body, &len)) != 0)
		return st;
	return req_send(c, KH_T_SIGN, timeout_ms, body, len, NULL, 0, notify_fd, NULL, out);
}

int
kh_sign_call(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, kh_sign_cb cb, void *arg)
{
	uint8_t body[HSM_KEYID_LEN + 2 + 64];
	size_t len = 0;
	int st;

	if ((st = sign_body(keyid, alg, dgst, dlen, body, &len)) != 0)
		return st;
	return req_send(c, KH_T_SIGN, timeout_ms, body, len, NULL, 0, -1,
	    &(struct req_cb){ kh_sign_done, cb, NULL, arg }, NULL);
}

int
kh_pool_call(struct kh_client *c, unsigned timeout_ms, kh_pool_cb cb, void *arg)
{
	return req_send(c, KH_T_POOL, timeout_ms, NULL, 0, NULL, 0, -1,
	    &(struct req_cb){ kh_pool_done, NULL, cb, arg }, NULL);
}

int
kh_req_result(struct kh_req *r, uint8_t *sig, size_t *siglen)
{
	int st;

	*siglen = 0;
	if (!rpc_req_done(&r->rpc))
		return HSM_EAGAIN;
	if ((st = rpc_req_status(&r->rpc)) != 0)
		return st;
	if (r->replylen == 0 || r->replylen > HSM_MAX_SIG)
		return hsm_err(HSM_EPROTO, "keyholder sent a malformed signature");
	memcpy(sig, r->reply, r->replylen);
	*siglen = r->replylen;
	return 0;
}

/* fork + exec a keyholder on a socketpair: *fd is our end, *pid the child. */
static int
spawn_child(const struct kh_spawn_opts *o, int *fd, pid_t *pid)
{
	char delay[16], workers[32], shrink[16];
	const char *argv[28];
	int sv[2], n = 0;
	pid_t p;

	*fd = -1;
	*pid = -1;
	if (o->module == NULL || o->token_uri == NULL || (o->pin_file == NULL) == (o->pin_env == NULL))
		return hsm_err(HSM_EINVAL, "keyholder needs a module, a token URI and one PIN source");
	snprintf(delay, sizeof(delay), "%u", o->sign_delay_ms);
	if (o->workers > 0)
		snprintf(workers, sizeof(workers), "%d", o->workers);
	else
		snprintf(workers, sizeof(workers), "%d-%d", o->workers_min > 0 ? o->workers_min : 2,
		    o->workers_max > 0 ? o->workers_max : 64);
	snprintf(shrink, sizeof(shrink), "%u", o->shrink_ms);
	argv[n++] = "hsmesh";
	argv[n++] = "keyholder";
	argv[n++] = "--fd";
	argv[n++] = "3";
	argv[n++] = "--quiet";
	argv[n++] = "--module";
	argv[n++] = o->module;
	argv[n++] = "--token";
	argv[n++] = o->token_uri;
	argv[n++] = o->pin_file != NULL ? "--pin-file" : "--pin-env";
	argv[n++] = o->pin_file != NULL ? o->pin_file : o->pin_env;
	if (o->so_pin_file != NULL || o->so_pin_env != NULL) {
		argv[n++] = o->so_pin_file != NULL ? "--so-pin-file" : "--so-pin-env";
		argv[n++] = o->so_pin_file != NULL ? o->so_pin_file : o->so_pin_env;
	}
	if (o->sign_delay_ms > 0) {
		argv[n++] = "--sign-delay-ms";
		argv[n++] = delay;
	}
	if (o->workers > 0 || o->workers_min > 0 || o->workers_max > 0) {
		argv[n++] = "--workers";
		argv[n++] = workers;
	}
	if (o->shrink_ms > 0) {
		argv[n++] = "--shrink-after-ms";
		argv[n++] = shrink;
	}
	argv[n] = NULL;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return hsm_err(HSM_EIO, "socketpair: %s", strerror(errno));
	if ((p = fork()) < 0) {
		close(sv[0]);
		close(sv[1]);
		return hsm_err(HSM_EIO, "fork: %s", strerror(errno));
	}
	if (p == 0) {
		/* Child: fd 3 is the keyholder's end; everything else closes on exec. */
		if (sv[1] == 3)
			fcntl(3, F_SETFD, 0);
		else if (dup2(sv[1], 3) < 0)
			_exit(127);
		execv(o->exe != NULL ? o->exe : "/proc/self/exe", (char *const *)argv);
		_exit(127);
	}
	close(sv[1]);
	*fd = sv[0];
	*pid = p;
	return 0;
}

/*
 * The first answer says whether the token opened (a TPM login can be
 * slow). On failure the child is killed and reaped and the reason kept.
 */
static int
first_ping(struct kh_client *c, pid_t p)
{
	char why[512];
	int st;

	if ((st = kh_ping(c, 60000)) == 0)
		return 0;
	snprintf(why, sizeof(why), "%s", hsm_err_msg(st));
	/* It exits after reporting; a hung one must not hang us. */
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	if (st == HSM_ECLOSED)
		snprintf(why, sizeof(why), "keyholder exited during start-up");
	return hsm_err(st, "%s", why);
}

int
kh_spawn(const struct kh_spawn_opts *o, struct kh_client **out, pid_t *pid)
{
	int fd, st;
	pid_t p;

	*out = NULL;
	*pid = -1;
	if ((st = spawn_child(o, &fd, &p)) != 0)
		return st;
	if ((st = kh_client_new(fd, out)) != 0) {
		close(fd);
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		return st;
	}
	if ((st = first_ping(*out, p)) != 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", hsm_err_msg(st));
		kh_client_free(*out);
		*out = NULL;
		return hsm_err(st, "%s", why);
	}
	*pid = p;
	return 0;
}

int
kh_respawn(struct kh_client *c, const struct kh_spawn_opts *o, pid_t *pid)
{
	int fd, st;
	pid_t p;

	*pid = -1;
	if ((st = spawn_child(o, &fd, &p)) != 0)
		return st;
	if ((st = rpc_conn_reset(&c->rpc, fd)) != 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", hsm_err_msg(st));
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		return hsm_err(st, "%s", why);
	}
	if ((st = first_ping(c, p)) != 0)
		return st;
	*pid = p;
	return 0;
}

void
kh_client_set_gone(struct kh_client *c, const char *why)
{
	rpc_conn_set_gone(&c->rpc, why);
}
