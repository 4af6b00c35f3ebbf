/*
 * hx.c - exchanges of the HTTP codec (see httpcodec.h): one request from a
 * client-facing connection and its response from an upstream one.
 *
 * A request head is judged first (inbound: its path brought to normal
 * form, the first matching route's allow list against the peer's
 * SPIFFE ID; a refusal is answered by the sidecar and logged with the
 * route), stripped of connection-specific fields, given the caller's
 * x-forwarded-client-cert (inbound: any the client sent is removed
 * first), and handed to the listener's pool. Bodies then move each way
 * only as fast as the destination takes them: an HTTP/2 source's bytes
 * stay in its stream (and unacknowledged, so its window closes) until
 * the destination's queue takes them; an HTTP/1.1 source is parsed no
 * further than its destination has room for.
 *
 * Each side lets go of the exchange when its part is done (the client's
 * when the response is out and the request in, the upstream's when the
 * request is out and the response in), or when it fails; the exchange
 * is freed once both have. The access-log line and the per-route
 * metrics are written when the client's side lets go.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "err.h"
#include "http.h"
#include "httpcodec.h"
#include "httplog.h"
#include "proxyconf.h"
#include "route.h"
#include "scache.h"
#include "xfcc.h"

#define DROP_ROOM	65536	/* request body taken at a time when it goes nowhere */

static void hx_check(struct hx *x);
static void note_deadline(struct hx *x);

static uint64_t
now_of(const struct hx *x)
{
	return x->hw->w->now;
}

static const struct proxy_config *
cfg_of(const struct hx *x)
{
	return x->pol->cfg;
}

/* The connections and streams of direction dir: where it comes from and goes to. */
static struct hconn *
src_of(const struct hx *x, int dir)
{
	return dir == REQ ? x->down : x->up;
}

static struct hconn *
dst_of(const struct hx *x, int dir)
{
	return dir == REQ ? x->up : x->down;
}

static struct h2_stream *
src_stream(const struct hx *x, int dir)
{
	return dir == REQ ? x->dst : x->ust;
}

static struct h2_stream *
dst_stream(const struct hx *x, int dir)
{
	return dir == REQ ? x->ust : x->dst;
}

/* ---- the access log and metrics ---- */

static void
hx_log(struct hx *x)
{
	struct hconn *d = x->down;
	struct conn *c = d->c;
	struct proxy *px = c->w->px;
	const struct proxy_listener *l = &cfg_of(x)->lst[c->li];
	struct http_log_entry e;
	uint64_t dur = now_of(x) - x->t0;

	if (x->logged)
		return;
	x->logged = 1;
	http_metrics_record(x->hm, x->route, x->status, (double)dur / 1000.0);
	memset(&e, 0, sizeof(e));
	e.listener = l->name;
	e.direction = c->inbound ? "inbound" : "outbound";
	e.protocol = d->proto;
	e.client = c->peer_addr;
	/* inbound: the caller; outbound: the peer sidecar that served it */
	e.peer_id = c->inbound ? c->peer_id : x->peer;
	e.method = x->method[0] != '\0' ? x->method : NULL;
	e.path = x->path;
	e.route = x->route < l->nroutes ? l->routes[x->route].name : HTTPLOG_NOROUTE;
	e.reason = x->why;
	e.status = x->status;
	e.bytes_received = x->bytes[REQ];
	e.bytes_sent = x->bytes[RSP];
	e.duration_ms = dur;
	pthread_rwlock_rdlock(&px->alog_lock);
	http_access_log(px->alog, &e);
	pthread_rwlock_unlock(&px->alog_lock);
}

/* ---- letting go ---- */

static void
hx_free(struct hx *x)
{
	hmsg_clear(&x->req);
	hmsg_clear(&x->trl[REQ]);
	hmsg_clear(&x->trl[RSP]);
	policy_put(x->pol);
	sc_free(x->path);
	free(x->peer);
	sc_free(x);
}

static void
maybe_free(struct hx *x)
{
	if (x->down == NULL && x->up == NULL && x->queued == NULL)
		hx_free(x);
}

/* The upstream side lets go (its stream given back, its connection free for another). */
static void
up_detach(struct hx *x)
{
	struct hconn *up = x->up;

	if (up == NULL)
		return;
	if (x->ust != NULL && up->h2 != NULL)
		h2_stream_done(up->h2, x->ust);	/* resets it if still open */
	x->ust = NULL;
	if (x->uprev != NULL)
		x->uprev->unext = x->unext;
	else
		up->xs = x->unext;
	if (x->unext != NULL)
		x->unext->uprev = x->uprev;
	x->uprev = x->unext = NULL;
	if (up->cur == x)
		up->cur = NULL;
	if (--up->nx == 0)
		up->t_idle = now_of(x);
	x->up = NULL;
	hc_dirty(up);
	pool_released(up);
}

/* The client's side lets go: the access-log line, its stream back, its connection on. */
static void
down_detach(struct hx *x)
{
	struct hconn *d = x->down;

	if (d == NULL)
		return;
	hx_log(x);
	if (x->rst_due) {
		x->rst_due = 0;
		d->pend_rst--;
	}
	if (x->dst != NULL && d->h2 != NULL)
		h2_stream_done(d->h2, x->dst);
	x->dst = NULL;
	if (x->dprev != NULL)
		x->dprev->dnext = x->dnext;
	else
		d->xs = x->dnext;
	if (x->dnext != NULL)
		x->dnext->dprev = x->dprev;
	x->dprev = x->dnext = NULL;
	if (d->cur == x)
		d->cur = NULL;
	d->nx--;
	x->down = NULL;
	hc_dirty(d);
}

/* The upstream part is abandoned: out of the queue; its stream reset, or its connection closed. */
static void
abort_up(struct hx *x)
{
	struct hconn *up = x->up;

	if (x->queued != NULL)
		pool_unqueue(x);
	if (up == NULL)
		return;
	/* an HTTP/1.1 connection in the middle of a message cannot carry another */
	if (up->kind == HK_H1 && !(x->in_end[RSP] && (x->out_end[REQ] || !x->head_out[REQ])))
		hc_kill(up, REASON_NONE, "%s", "");
	up_detach(x);
}

/* The client's part ends without its response: its stream reset, or its HTTP/1.1 connection closed. */
static void
abort_down(struct hx *x, const char *why)
{
	struct hconn *d = x->down;

	if (d == NULL)
		return;
	if (x->why == NULL)
		x->why = why;
	if (d->kind == HK_H1)
		hc_kill(d, REASON_RESET, "%s", why);
	down_detach(x);	/* an HTTP/2 stream still open is reset (CANCEL) */
}

/* ---- the destination of a direction ---- */

/* Room for need bytes at the end of an HTTP/1.1 connection's out buffer, or NULL. */
static uint8_t *
h1_out(struct hconn *d, size_t need)
{
	struct relay_buf *b = &d->out;

	if (b->data == NULL) {
		b->cap = d->c->pol->cfg->buffer_size;
		if (relay_buf_take(&d->c->w->pool, b) != 0)
			return NULL;
	}
	if (b->off + b->len + need > b->cap && b->off > 0) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	if (b->len + need > b->cap)
		return NULL;
	return b->data + b->off + b->len;
}

size_t
hx_room(const struct hx *x, int dir)
{
	const struct hconn *d = dst_of(x, dir);
	size_t in, out, room;

	if (dir == REQ && x->req_drop)
		return DROP_ROOM;
	if (d == NULL || !x->head_out[dir] || x->out_end[dir])
		return 0;
	if (d->kind == HK_H2) {
		if (dst_stream(x, dir) == NULL)
			return 0;
		h2_stream_buffered(dst_stream(x, dir), &in, &out);
		return out < H2_SEND_QUEUE ? H2_SEND_QUEUE - out : 0;
	}
	room = d->c->pol->cfg->buffer_size - d->out.len;
	if (x->fr[dir] == H1_FRAME_CHUNKED)
		room = room > H1_CHUNK_HEAD_MAX + 2 ? room - H1_CHUNK_HEAD_MAX - 2 : 0;
	return room;
}

/* Send head m to the destination of dir (end: no body follows). 0 or an HSM_E code. */
static int
dest_head(struct hx *x, int dir, const struct hmsg *m, int end)
{
	struct hconn *d = dst_of(x, dir);
	enum h1_framing fr;
	size_t len, cap;
	uint8_t *p;
	int st, close = 0, final = dir == REQ || m->status >= 200;

	if (d->kind == HK_H2) {
		if (dir == REQ)
			st = h2_request(d->h2, m, end, x, &x->ust);
		else
			st = h2_response(d->h2, x->dst, m, end);
		if (st != 0)
			return st;
	} else {
		if (dir == REQ) {
			fr = h1_framing_for(m, end, 1);
			h1_expect(&d->p, x->method);
		} else {
			fr = h1_framing_for(m, end || hmsg_response_bodyless(x->method, m->status),
			    d->p.minor);
			/* HTTP/1.0, an unfinished request or a body ended by the close: the last response */
			if (final && (d->closing || !x->in_end[REQ] || !d->p.keep_alive ||
			    d->p.minor == 0 || fr == H1_FRAME_CLOSE)) {
				d->closing = 1;
				close = 1;
			}
		}
		cap = d->c->pol->cfg->buffer_size;
		if ((p = h1_out(d, cap - d->out.len)) == NULL)
			return hsm_err(HSM_ENOMEM, "out of memory");
		if ((st = h1_write_head(m, fr, close, p, cap - d->out.len, &len)) != 0)
			return st;
		d->out.len += len;
		if (final)
			x->fr[dir] = fr;
		if (fr == H1_FRAME_NONE)
			end = 1;
	}
	if (final) {
		x->head_out[dir] = 1;
		if (end)
			x->out_end[dir] = 1;
	}
	hc_dirty(d);
	return 0;
}

/* Body bytes to the destination of dir (n <= hx_room). */
static void
dest_body(struct hx *x, int dir, const uint8_t *p, size_t n)
{
	struct hconn *d = dst_of(x, dir);
	uint8_t *q, ch[H1_CHUNK_HEAD_MAX];
	size_t taken, k;

	x->bytes[dir] += n;
	x->t_last = now_of(x);
	/* the body rate is measured from its first byte (not while a client waits for 100) */
	if (dir == REQ && x->t_bstart == 0 && n > 0) {
		x->t_bstart = x->t_body = x->t_last;
		note_deadline(x);
	}
	if ((dir == REQ && x->req_drop) || d == NULL || n == 0)
		return;
	x->moved[dir] = 1;
	hc_dirty(d);
	if (d->kind == HK_H2) {
		if (h2_write(d->h2, dst_stream(x, dir), p, n, &taken) != 0 || taken < n)
			abort_down(x, "internal");	/* cannot happen within hx_room */
		return;
	}
	if (x->fr[dir] != H1_FRAME_CHUNKED) {
		if ((q = h1_out(d, n)) != NULL) {
			memcpy(q, p, n);
			d->out.len += n;
		}
		return;
	}
	k = h1_chunk_head(ch, n);
	if ((q = h1_out(d, k + n + 2)) == NULL)
		return;
	memcpy(q, ch, k);
	memcpy(q + k, p, n);
	memcpy(q + k + n, "\r\n", 2);
	d->out.len += k + n + 2;
}

/* The end of dir to its destination, with trailer fields t (may be empty). */
static void
dest_end(struct hx *x, int dir, const struct hmsg *t)
{
	struct hconn *d = dst_of(x, dir);
	size_t len, cap;
	uint8_t *p;

	if (x->out_end[dir])
		return;
	x->out_end[dir] = 1;
	if ((dir == REQ && x->req_drop) || d == NULL)
		return;
	hc_dirty(d);
	if (d->kind == HK_H2) {
		if (h2_end(d->h2, dst_stream(x, dir), t->nf > 0 ? t : NULL) != 0 && dir == RSP)
			abort_down(x, "internal");
		return;
	}
	if (x->fr[dir] != H1_FRAME_CHUNKED)
		return;
	cap = d->c->pol->cfg->buffer_size;
	if ((p = h1_out(d, cap - d->out.len)) == NULL ||
	    h1_write_last_chunk(t, p, cap - d->out.len, &len) != 0)
		len = 0;
	if (len == 0 && p != NULL && cap - d->out.len >= 5) {
		memcpy(p, "0\r\n\r\n", 5);	/* trailers that cannot be written are left out */
		len = 5;
	}
	d->out.len += len;
}

/* ---- bodies ---- */

void
hx_blocked(struct hx *x, int on)
{
	uint64_t now = now_of(x);

	if (on && x->blk_since == 0)
		x->blk_since = now;
	else if (!on && x->blk_since != 0) {
		x->blk_ms += now - x->blk_since;
		x->blk_since = 0;
	}
}

/* Move an HTTP/2 source's bytes and its end as far as the destination takes them. */
static void
move(struct hx *x, int dir)
{
	struct hconn *s = src_of(x, dir);
	struct h2_stream *st = src_stream(x, dir);
	const uint8_t *p;
	size_t n = 0, room, k;

	if (!x->head_out[dir] && !(dir == REQ && x->req_drop))
		return;
	if (s != NULL && s->kind == HK_H2 && st != NULL) {
		for (;;) {
			h2_peek(s->h2, st, &p, &n);
			if (n == 0 || (room = hx_room(x, dir)) == 0)
				break;
			k = n < room ? n : room;
			dest_body(x, dir, p, k);
			/* acknowledged to the sender only now: its window reopens */
			h2_consume(s->h2, st, k);
			hc_dirty(s);
		}
		if (dir == REQ)
			hx_blocked(x, n > 0);
	}
	if (x->in_end[dir] && n == 0)
		dest_end(x, dir, &x->trl[dir]);
}

void
hx_move(struct hx *x, int dir)
{
	move(x, dir);
	hx_check(x);
}

void
hx_data(struct hx *x, int dir, const uint8_t *p, size_t n)
{
	dest_body(x, dir, p, n);
}

void
hx_end(struct hx *x, int dir, struct hmsg *t)
{
	if (x->in_end[dir])
		return;
	x->in_end[dir] = 1;
	if (t != NULL && t->nf > 0)
		hmsg_move(&x->trl[dir], t);
	hx_move(x, dir);
}

void
hx_room_opened(struct hx *x, int dir)
{
	struct hconn *s = src_of(x, dir);

	if (s == NULL)
		return;
	if (s->kind == HK_H2)
		hx_move(x, dir);
	else
		hc_dirty(s);	/* the flush parses on (never under a parse of its own) */
}

/* ---- the sidecar's own answers ---- */

void
hx_answer(struct hx *x, int status, const char *why)
{
	struct hmsg m;
	char body[96];
	int n;

	abort_up(x);
	if (x->why == NULL)
		x->why = why;
	if (x->down == NULL)
		goto out;
	if (x->head_out[RSP]) {
		abort_down(x, why);
		goto out;
	}
	x->req_drop = 1;	/* what more of the request comes goes nowhere */
	n = snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status) != NULL ?
	    http_reason(status) : "");
	hmsg_init(&m, 0);
	m.status = status;
	m.content_length = n;
	if (hmsg_add(&m, "content-type", 12, "text/plain", 10) != 0 ||
	    dest_head(x, RSP, &m, 0) != 0) {
		hmsg_clear(&m);
		abort_down(x, why);
		goto out;
	}
	hmsg_clear(&m);
	x->status = status;
	dest_body(x, RSP, (const uint8_t *)body, (size_t)n);
	dest_end(x, RSP, &x->trl[RSP]);
	move(x, REQ);	/* drop what the client sent already */
 out:
	hx_check(x);
}

/* The upstream failed x: a 502 if nothing was answered yet, else the client's side ends too. */
static void
upstream_failed(struct hx *x, const char *why)
{
	if (x->status == 0)
		hx_answer(x, 502, why);
	else {
		abort_up(x);
		abort_down(x, why);
		hx_check(x);
	}
}

/* Send x again on another connection (one retry: nothing of it can have been processed). */
static int
retry(struct hx *x)
{
	if (x->retried || x->status != 0 || x->moved[REQ] || x->req.method == NULL ||
	    x->down == NULL)
		return 0;
	x->retried = 1;
	x->head_out[REQ] = x->out_end[REQ] = 0;
	x->fr[REQ] = H1_FRAME_NONE;
	pool_submit(x);
	return 1;
}

/* ---- requests ---- */

/* Normal form, route and allow list: 0 to go on, -1 when answered. */
static int
judge(struct hx *x, const struct proxy_listener *l, const char *peer_id)
{
	const struct route *r;
	size_t len, olen, plen;
	char *norm;

	if (x->req.method == NULL || x->req.path == NULL) {
		hx_answer(x, 400, "bad_request");
		return -1;
	}
	len = strlen(x->req.path);
	if ((norm = sc_malloc(len + 1)) == NULL) {
		hx_answer(x, 500, "internal");
		return -1;
	}
	if (route_path_norm(x->req.path, len, norm, len + 1, &olen, &plen) != 0) {
		sc_free(norm);
		hx_answer(x, 400, "bad_path");
		return -1;
	}
	if (hmsg_set(&x->req, HMSG_PATH, norm, olen) != 0) {
		sc_free(norm);
		hx_answer(x, 500, "internal");
		return -1;
	}
	sc_free(x->path);
	x->path = norm;
	if (l->nroutes == 0)
		return 0;
	if ((r = route_find(l->routes, l->nroutes, x->method, norm, plen)) == NULL) {
		hx_answer(x, 403, "no_route");
		return -1;
	}
	x->route = (size_t)(r - l->routes);
	if (!route_allows(r, peer_id)) {
		hx_answer(x, 403, "route_denied");
		return -1;
	}
	if (r->timeout_ms != 0)
		x->timeout_ms = r->timeout_ms;
	return 0;
}

/* The earliest time something about x is due. */
static uint64_t
deadline(const struct hx *x)
{
	const struct proxy_config *cfg = cfg_of(x);
	uint64_t dl = x->t_last + cfg->stream_idle_ms, t;

	if (!x->out_end[RSP] && (t = x->t0 + x->timeout_ms) < dl)
		dl = t;
	if (x->queued != NULL && x->t_wait < dl)
		dl = x->t_wait;
	if (cfg->min_body_rate > 0 && !x->in_end[REQ] && x->t_bstart != 0 &&
	    (t = x->t_body + 1000) < dl)
		dl = t;
	return dl;
}

static void
note_deadline(struct hx *x)
{
	uint64_t dl = deadline(x);

	if (x->down != NULL && (x->down->xdl == 0 || dl < x->down->xdl))
		x->down->xdl = dl;
}

void
hx_request(struct hconn *hc, struct h2_stream *st, struct hmsg *m, int end, int refuse)
{
	struct conn *c = hc->c;
	struct hworker *hw = hc->hw;
	const struct proxy_listener *l;
	struct hx *x;
	size_t n;

	if ((x = sc_calloc(1, sizeof(*x))) == NULL) {
		if (st != NULL)
			h2_stream_done(hc->h2, st);	/* reset: nothing was sent on it */
		else
			hc_kill(hc, REASON_INTERNAL, "out of memory");
		return;
	}
	x->hw = hw;
	x->down = hc;
	x->dnext = hc->xs;
	if (hc->xs != NULL)
		hc->xs->dprev = x;
	hc->xs = x;
	hc->nx++;
	if (st != NULL) {
		x->dst = st;
		h2_stream_set_user(st, x);
	} else {
		hc->cur = x;
	}
	x->t0 = x->t_last = hw->w->now;
	hmsg_init(&x->req, 1);
	hmsg_init(&x->trl[REQ], 0);
	hmsg_init(&x->trl[RSP], 0);
	hmsg_move(&x->req, m);
	if (x->req.method != NULL && (n = strlen(x->req.method)) < sizeof(x->method))
		memcpy(x->method, x->req.method, n + 1);
	if (x->req.path != NULL && (x->path = sc_malloc((n = strlen(x->req.path)) + 1)) != NULL)
		memcpy(x->path, x->req.path, n + 1);
	hw_refresh(hw);
	x->pol = hw->pol;
	atomic_fetch_add(&x->pol->refs, 1);
	l = &x->pol->cfg->lst[c->li];
	x->hm = x->pol->hm != NULL ? x->pol->hm[c->li] : NULL;
	x->route = l->nroutes;
	x->timeout_ms = x->pol->cfg->request_timeout_ms;
	if (refuse != 0) {
		hx_answer(x, refuse, refuse == 431 || refuse == 414 ? "header_limit" : "bad_request");
		return;
	}
	if (c->inbound && judge(x, l, c->peer_id) != 0)
		return;
	hmsg_strip_hop(&x->req);
	if ((c->inbound && xfcc_set(&x->req, hc->xfcc, NULL) != 0) ||
	    (x->req.scheme == NULL && hmsg_set(&x->req, HMSG_SCHEME, "http", 4) != 0) ||
	    ((x->req.authority == NULL || x->req.authority[0] == '\0') &&
	    hmsg_set(&x->req, HMSG_AUTHORITY, l->target, strlen(l->target)) != 0)) {
		hx_answer(x, 500, "internal");
		return;
	}
	x->bodyless = end != 0;	/* its end event (hx_end) follows the head */
	note_deadline(x);	/* with the route's timeout */
	pool_submit(x);
}

void
hx_dispatch(struct hx *x, struct hconn *up)
{
	struct hconn *s = x->down;
	const uint8_t *p;
	size_t n = 0;
	int end;

	x->up = up;
	x->unext = up->xs;
	x->uprev = NULL;
	if (up->xs != NULL)
		up->xs->uprev = x;
	up->xs = x;
	up->nx++;
	if (up->kind == HK_H1)
		up->cur = x;
	x->blk_ms = x->blk_since = 0;
	if (s->kind == HK_H2 && x->dst != NULL)
		h2_peek(s->h2, x->dst, &p, &n);
	/* a request that already ended, with nothing buffered, goes as one head */
	end = (x->in_end[REQ] || x->bodyless) && n == 0 && x->trl[REQ].nf == 0;
	if (dest_head(x, REQ, &x->req, end) != 0) {
		up_detach(x);
		hx_answer(x, 502, "upstream_refused_request");
		return;
	}
	hc_dirty(up);
	hc_dirty(s);		/* an HTTP/1.1 source parses its body on at the flush */
	hx_move(x, REQ);
}

/* ---- responses ---- */

void
hx_response(struct hx *x, struct hmsg *m, int end, int refuse)
{
	if (refuse != 0 || x->down == NULL) {
		upstream_failed(x, "bad_response");
		return;
	}
	hmsg_strip_hop(m);
	if (m->status < 200) {
		/* informational (100 Continue, 103): passed on, the final one follows */
		if (m->status != 101 && !x->head_out[RSP])
			(void)dest_head(x, RSP, m, 0);
		return;
	}
	hmsg_clear(&x->req);	/* answered: no retry from here on */
	if (!x->down->c->inbound && x->peer == NULL && x->up != NULL && x->up->c->peer_id != NULL)
		x->peer = strdup(x->up->c->peer_id);
	if (dest_head(x, RSP, m, end) != 0) {
		upstream_failed(x, "bad_response");
		return;
	}
	x->status = m->status;
	x->t_last = now_of(x);
	hx_check(x);
}

/* ---- streams and connections that end ---- */

void
hx_stream_closed(struct hx *x, struct hconn *hc, uint32_t code)
{
	char why[48];

	if (hc == x->down) {
		if (code != 0 || !x->out_end[RSP]) {
			/* the client reset its stream, or its connection failed */
			abort_up(x);
			abort_down(x, "client_reset");
		} else {
			down_detach(x);
		}
		hx_check(x);
		return;
	}
	if (code == 0) {
		/*
		 * Both ways ended (the response may still wait in the stream for
		 * the client to take it: the handle stays until then). An early
		 * answer may leave our request body unsent: it goes nowhere now.
		 */
		if (!x->out_end[REQ])
			x->req_drop = 1;
		x->up_closed = 1;
		hx_move(x, RSP);
		return;
	}
	up_detach(x);		/* the stream is given back */
	if (code == H2_REFUSED_STREAM && retry(x))
		return;
	snprintf(why, sizeof(why), "upstream_reset");
	upstream_failed(x, why);
}

/* Decide what each side's part allows now: let go of what is done; free x when nothing holds it. */
static void
hx_check(struct hx *x)
{
	struct hconn *up = x->up, *d = x->down;

	if (up != NULL) {
		if (up->kind == HK_H2) {
			if (x->up_closed && x->out_end[RSP])
				up_detach(x);
		} else if (x->in_end[RSP]) {
			/* an answer before the whole request: that connection carries no other */
			if (!x->out_end[REQ]) {
				x->req_drop = 1;
				hc_kill(up, REASON_NONE, "%s", "");
			}
			up_detach(x);
		}
	}
	if (d != NULL && x->out_end[RSP]) {
		if (d->kind == HK_H1) {
			if (x->in_end[REQ] || d->closing)
				down_detach(x);
		} else if (!x->in_end[REQ] && !x->rst_due && x->dst != NULL) {
			/* answered early: reset the request (NO_ERROR) once the response has left */
			x->rst_due = 1;
			x->req_drop = 1;
			d->pend_rst++;
		}
	}
	maybe_free(x);
}

void
hx_sent_resets(struct hconn *hc)
{
	struct hx *x, *nx;

	for (x = hc->xs; x != NULL && hc->pend_rst > 0; x = nx) {
		nx = x->dnext;
		if (x->rst_due && x->dst != NULL && h2_stream_sent(hc->h2, x->dst)) {
			down_detach(x);
			maybe_free(x);
		}
	}
}

void
hx_conn_lost(struct hconn *hc)
{
	const char *why = reason_label(hc->c->fail.reason);
	struct hx *x;

	hc->dead = hc->closing = 1;	/* no pool hands it another exchange */
	while ((x = hc->xs) != NULL) {
		if (x->down == hc) {
			/* the client is gone: its stream goes with its session */
			x->dst = NULL;
			abort_up(x);
			if (!(x->out_end[RSP] && x->in_end[REQ]) && x->why == NULL)
				x->why = "client_closed";
			down_detach(x);
			maybe_free(x);
			continue;
		}
		x->ust = NULL;
		up_detach(x);
		if (x->in_end[RSP]) {
			hx_check(x);
			continue;
		}
		/* an idle HTTP/1.1 connection the application closed as we reused it */
		if (hc->kind == HK_H1 && hc->reused && x->status == 0 &&
		    hmsg_bodyless_method(x->method) && retry(x))
			continue;
		upstream_failed(x, why != NULL ? why : "upstream_closed");
	}
}

void
hx_h1_broken(struct hconn *hc, int status, const char *why)
{
	struct hx *x = hc->cur;
	struct hmsg m;

	fail_set(&hc->c->fail, REASON_HTTP_ERROR, "%s", why);
	if (!hc->server) {
		hc_kill(hc, REASON_NONE, "%s", "");
		if (x != NULL)
			upstream_failed(x, "bad_response");
		return;
	}
	hc->closing = 1;
	if (status < 400 || status > 599)
		status = 400;
	if (x == NULL) {
		/* a head that broke: answered on an exchange of its own, then the end */
		hmsg_init(&m, 1);
		hmsg_move(&m, &hc->p.msg);
		hx_request(hc, NULL, &m, 1, status);
		hmsg_clear(&m);
		return;
	}
	/* a body that broke: the upstream cannot have a whole request */
	x->in_end[REQ] = 1;
	abort_up(x);
	if (x->status == 0)
		hx_answer(x, status, "bad_request");
	else {
		abort_down(x, "bad_request");
		hx_check(x);
	}
}

/* ---- time ---- */

static void
timed_out(struct hx *x, int status, const char *why)
{
	if (x->status == 0) {
		hx_answer(x, status, why);
		return;
	}
	abort_up(x);
	abort_down(x, why);
	hx_check(x);
}

static void
expire(struct hx *x, uint64_t now)
{
	const struct proxy_config *cfg = cfg_of(x);
	uint64_t el;

	if (x->queued != NULL && now >= x->t_wait) {
		hx_answer(x, 503, "upstream_unavailable");
		return;
	}
	if (!x->out_end[RSP] && now >= x->t0 + x->timeout_ms) {
		timed_out(x, 504, "request_timeout");
		return;
	}
	if (now >= x->t_last + cfg->stream_idle_ms) {
		timed_out(x, x->in_end[REQ] ? 504 : 408, "stream_idle");
		return;
	}
	if (cfg->min_body_rate > 0 && !x->in_end[REQ] && x->t_bstart != 0 && now >= x->t_body + 1000) {
		/* the time the body could have come, not the time it waited on the upstream */
		el = now - x->t_bstart - x->blk_ms - (x->blk_since != 0 ? now - x->blk_since : 0);
		if (el >= 1000 && x->bytes[REQ] * 1000 < (uint64_t)cfg->min_body_rate * el) {
			timed_out(x, 408, "min_body_rate");
			return;
		}
		x->t_body = now;
	}
}

uint64_t
hx_timeouts(struct hconn *hc, uint64_t now)
{
	struct hx *x, *nx;
	uint64_t next = 0, dl;

	for (x = hc->xs; x != NULL; x = nx) {
		nx = x->dnext;
		if (deadline(x) <= now)
			expire(x, now);
	}
	for (x = hc->xs; x != NULL; x = x->dnext)
		if ((dl = deadline(x)) < next || next == 0)
			next = dl;
	return next;
}
