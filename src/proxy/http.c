/*
 * http.c - `protocol: http`, the sidecar's HTTP codec (see httpcodec.h): one
 * HTTP/1.1 or HTTP/2 end per connection, chosen by ALPN on a TLS side
 * ("h2", else HTTP/1.1), by the h2c preface on a client's plaintext side
 * (prior knowledge, else HTTP/1.1) and by app_protocol towards an
 * application; its reads, its writes, its epoll interest and deadline;
 * and the worker's flush, which writes every connection an event
 * touched once the batch of events is handled.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "err.h"
#include "httpcodec.h"
#include "proxyconf.h"
#include "util.h"
#include "xfcc.h"

#define PREFACE		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PREFACE_LEN	24
#define READS_PER_EVENT	4	/* reads of one connection per event, then the others' turn */

/* ALPN, wire format: h2 first, the server's preference (ident.c selects, conn.c offers). */
static const unsigned char alpn_list[] = "\x02h2\x08http/1.1";

/* ---- the worker's state ---- */

int
http_worker_init(struct worker *w)
{
	struct hworker *hw;
	size_t n = w->px->cfg->nlst;

	if ((hw = calloc(1, sizeof(*hw))) == NULL ||
	    (hw->pools = calloc(n, sizeof(*hw->pools))) == NULL) {
		free(hw);
		return HSM_ENOMEM;
	}
	hw->w = w;
	for (size_t i = 0; i < n; i++) {
		hw->pools[i].hw = hw;
		hw->pools[i].li = (unsigned)i;
	}
	w->http = hw;
	return 0;
}

void
http_worker_fini(struct worker *w)
{
	struct hworker *hw = w->http;

	if (hw == NULL)
		return;
	ident_put(hw->ident);
	policy_put(hw->pol);
	free(hw->pools);
	free(hw);
	w->http = NULL;
}

void
hw_refresh(struct hworker *hw)
{
	struct proxy *px = hw->w->px;
	unsigned gen = atomic_load(&px->gen);
	struct ident *id;
	struct policy *pol;

	if (gen == hw->gen && hw->pol != NULL)
		return;
	proxy_get(px, &id, &pol);
	ident_put(hw->ident);
	policy_put(hw->pol);
	hw->ident = id;
	hw->pol = pol;
	hw->gen = gen;
	pool_recheck(hw);
}

/* ---- marks, kills, limits ---- */

void
hc_dirty(struct hconn *hc)
{
	if (hc->dirty || hc->freeing)
		return;
	hc->dirty = 1;
	hc->dnext = hc->hw->dirty;
	hc->hw->dirty = hc;
}

void
hc_kill(struct hconn *hc, enum reason r, const char *fmt, ...)
{
	char detail[FAIL_DETAIL_MAX];
	va_list ap;

	if (r != REASON_NONE) {
		va_start(ap, fmt);
		vsnprintf(detail, sizeof(detail), fmt, ap);
		va_end(ap);
		fail_set(&hc->c->fail, r, "%s", detail);
	}
	hc->dead = 1;
	hc_dirty(hc);
}

void
hc_limits(const struct hconn *hc, struct h1_limits *h1, struct h2_limits *h2)
{
	const struct proxy_config *cfg = hc->c->pol->cfg;

	if (h1 != NULL) {
		h1->max_head = cfg->max_header_bytes;
		h1->max_fields = cfg->max_headers;
	}
	if (h2 != NULL) {
		h2_limits_default(h2);
		h2->max_streams = cfg->max_streams;
		h2->max_header_bytes = cfg->max_header_bytes;
		h2->max_headers = cfg->max_headers;
		h2->send_buffer = H2_SEND_QUEUE;
	}
}

/* ---- HTTP/2 callbacks: the stream's exchange, by the role of the connection ---- */

static void
on_head(void *arg, struct h2_stream *st, struct hmsg *m, int end, int refuse)
{
	struct hconn *hc = arg;
	struct hx *x;

	if (hc->server)
		hx_request(hc, st, m, end, refuse);
	else if ((x = h2_stream_user(st)) != NULL)
		hx_response(x, m, end, refuse);
}

static void
on_data(void *arg, struct h2_stream *st)
{
	struct hconn *hc = arg;
	struct hx *x = h2_stream_user(st);

	if (x != NULL)
		hx_move(x, hc->server ? REQ : RSP);
}

static void
on_end(void *arg, struct h2_stream *st, struct hmsg *t)
{
	struct hconn *hc = arg;
	struct hx *x = h2_stream_user(st);

	if (x != NULL)
		hx_end(x, hc->server ? REQ : RSP, t);
}

static void
on_room(void *arg, struct h2_stream *st)
{
	struct hconn *hc = arg;
	struct hx *x = h2_stream_user(st);

	/* the stream's send queue is the destination of the other direction */
	if (x != NULL)
		hx_room_opened(x, hc->server ? RSP : REQ);
}

static void
on_close(void *arg, struct h2_stream *st, uint32_t code)
{
	struct hconn *hc = arg;
	struct hx *x = h2_stream_user(st);

	if (x != NULL)
		hx_stream_closed(x, hc, code);
	else
		h2_stream_done(hc->h2, st);
	hc_dirty(hc);
}

static void
on_goaway(void *arg, int32_t last_id, uint32_t code)
{
	struct hconn *hc = arg;

	if (!hc->server)
		pool_goaway(hc);
}

static const struct h2_ops h2ops = {
	.head = on_head,
	.data = on_data,
	.end = on_end,
	.room = on_room,
	.close = on_close,
	.goaway = on_goaway,
};

int
hc_begin(struct hconn *hc, enum hkind kind)
{
	struct h1_limits l1;
	struct h2_limits l2;
	SSL *ssl = hc->c->side[hc->side].ssl;
	int st;

	hc_limits(hc, &l1, &l2);
	hc->kind = (uint8_t)kind;
	if (kind == HK_H2) {
		/*
		 * An HTTP/2 session over TLS carries many requests: keep its
		 * record buffers between records instead of a malloc and free
		 * of ~17 KB for each (the sweep still frees them once quiet).
		 */
		if (ssl != NULL)
			SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
		hc->proto = "HTTP/2";
		if ((st = h2_new(hc->server ? H2_SERVER : H2_CLIENT, &l2, &h2ops, hc, &hc->h2)) != 0)
			return st;
	} else {
		hc->proto = "HTTP/1.1";
		h1_init(&hc->p, hc->server ? H1_REQUEST : H1_RESPONSE, &l1);
	}
	hc_dirty(hc);
	return 0;
}

/* 1 when the TLS side's ALPN chose h2. */
static int
alpn_h2(SSL *ssl)
{
	const unsigned char *p;
	unsigned n;

	if (ssl == NULL)
		return 0;
	SSL_get0_alpn_selected(ssl, &p, &n);
	return n == 2 && memcmp(p, "h2", 2) == 0;
}

/* The x-forwarded-client-cert value of an inbound connection: its peer, our identity. */
static int
make_xfcc(struct hconn *hc)
{
	struct conn *c = hc->c;
	X509 *peer = SSL_get0_peer_certificate(conn_ssl(c));
	unsigned char *der = NULL;
	int n, st;

	if (peer == NULL || c->peer_id == NULL || (n = i2d_X509(peer, &der)) <= 0)
		return hsm_err(HSM_ECRYPTO, "the peer's certificate is not at hand");
	st = xfcc_value(c->ident->id, der, (size_t)n, c->peer_id, &hc->xfcc);
	OPENSSL_free(der);
	return st;
}

/* ---- the codec ---- */

static void
http_start(struct conn *c)
{
	struct hworker *hw = c->w->http;
	const struct proxy_listener *l = &c->pol->cfg->lst[c->li];
	struct hconn *hc;
	int st;

	if (c->pooled) {
		hc = c->codec_state;
		hc->c = c;
		hc->started = 1;
		c->authorised = 1;	/* an application connection has no TLS to authorise */
		hc->t_idle = c->t_last;
		st = hc_begin(hc, (c->inbound ? l->app_h2c : alpn_h2(conn_ssl(c))) ? HK_H2 : HK_H1);
		if (st != 0) {
			hc_kill(hc, REASON_INTERNAL, "%s", hsm_err_msg(st));
			return;
		}
		pool_ready(hc);
		return;
	}
	if ((hc = calloc(1, sizeof(*hc))) == NULL) {
		fail_set(&c->fail, REASON_INTERNAL, "out of memory");
		conn_close(c);
		return;
	}
	hc->c = c;
	hc->hw = hw;
	hc->side = DOWN;
	hc->server = 1;
	hc->started = 1;
	hc->proto = "HTTP/1.1";
	c->codec_state = hc;
	if (c->inbound) {
		if ((st = make_xfcc(hc)) != 0 ||
		    (st = hc_begin(hc, alpn_h2(conn_ssl(c)) ? HK_H2 : HK_H1)) != 0) {
			hc_kill(hc, REASON_INTERNAL, "%s", hsm_err_msg(st));
			return;
		}
	} else {
		c->authorised = 1;	/* the local application: nothing to authorise */
		hc->kind = HK_SNIFF;	/* HTTP/1.1, or the h2c preface: the first bytes say */
	}
	hc_dirty(hc);
}

/* HTTP/1.1 or h2c: decide from the first bytes of the client's plaintext side. */
static void
sniff(struct hconn *hc)
{
	size_t n = hc->in.len < PREFACE_LEN ? hc->in.len : PREFACE_LEN;
	int st;

	if (memcmp(hc->in.data + hc->in.off, PREFACE, n) != 0) {
		if ((st = hc_begin(hc, HK_H1)) != 0)
			hc_kill(hc, REASON_INTERNAL, "%s", hsm_err_msg(st));
		else
			hc_h1_pump(hc);
		return;
	}
	if (n < PREFACE_LEN)
		return;		/* a prefix of the preface so far */
	if ((st = hc_begin(hc, HK_H2)) != 0) {
		hc_kill(hc, REASON_INTERNAL, "%s", hsm_err_msg(st));
		return;
	}
	if (h2_feed(hc->h2, hc->in.data + hc->in.off, hc->in.len) != 0)
		hc->closing = 1;	/* a GOAWAY is queued: send it, then end */
	hc->in.len = 0;
}

/* A side that ended or failed while reading. */
static void
read_end(struct hconn *hc, enum side_st st)
{
	if (st == SIDE_FAILED) {
		hc_kill(hc, REASON_NONE, "%s", "");	/* side_read recorded why */
		return;
	}
	/* SIDE_END: an HTTP/1.1 parser still has its say about what it held */
	if (hc->kind == HK_H1 && !hc->shut)
		hc_h1_pump(hc);
	else
		hc_kill(hc, REASON_NONE, "%s", "");
}

/* Read what the side has (a few reads at most) and hand it to the protocol. */
static void
hc_read(struct hconn *hc)
{
	struct conn *c = hc->c;
	struct side *s = &c->side[hc->side];
	struct relay_pool *pool = &c->w->pool;
	enum side_st st = SIDE_OK;
	size_t n;
	int i;

	if (ERR_peek_error() != 0)
		ERR_clear_error();
	for (i = 0; i < READS_PER_EVENT && !hc->dead && !s->eof; i++) {
		hc->in.cap = c->pol->cfg->buffer_size;
		if (hc->in.data == NULL && relay_buf_take(pool, &hc->in) != 0) {
			hc_kill(hc, REASON_INTERNAL, "out of memory");
			return;
		}
		if (hc->in.off > 0 && (hc->in.len == 0 || hc->in.off + hc->in.len == hc->in.cap)) {
			memmove(hc->in.data, hc->in.data + hc->in.off, hc->in.len);
			hc->in.off = 0;
		}
		if (hc->in.off + hc->in.len == hc->in.cap)
			break;		/* full: the parser holds what it can, read later */
		st = side_read(s, hc->in.data + hc->in.off + hc->in.len,
		    hc->in.cap - hc->in.off - hc->in.len, &n, &c->fail);
		if (st != SIDE_OK)
			break;
		c->t_last = c->w->now;
		if (hc->shut) {		/* lingering: what comes now is dropped */
			hc->in.len = 0;
			continue;
		}
		hc->in.len += n;
		switch (hc->kind) {
		case HK_SNIFF:
			sniff(hc);
			break;
		case HK_H2:
			if (h2_feed(hc->h2, hc->in.data + hc->in.off, hc->in.len) != 0 &&
			    !hc->closing) {
				fail_set(&c->fail, REASON_HTTP_ERROR, "%s", hsm_err_msg(HSM_EPROTO));
				hc->closing = 1;	/* its GOAWAY goes out, then the end */
			}
			hc->in.len = 0;
			break;
		default:
			hc_h1_pump(hc);
			break;
		}
		if (s->dry)
			break;
	}
	if (hc->in.len == 0)
		relay_buf_give(pool, &hc->in, 0);
	if (st == SIDE_END || st == SIDE_FAILED)
		read_end(hc, st);
	hc_dirty(hc);
}

/* Write what is queued (HTTP/2: drained from the session into the out buffer). */
static void
hc_write(struct hconn *hc)
{
	struct conn *c = hc->c;
	struct side *s = &c->side[hc->side];
	struct relay_pool *pool = &c->w->pool;
	enum side_st st;
	size_t n;
	int moved = 0;

	if (!hc->started || s->fd < 0 || s->shut)
		return;
	if (ERR_peek_error() != 0)
		ERR_clear_error();
	for (;;) {
		if (hc->out.len == 0) {
			if (hc->kind != HK_H2 || !h2_want_write(hc->h2))
				break;
			hc->out.cap = c->pol->cfg->buffer_size;
			if (relay_buf_take(pool, &hc->out) != 0) {
				hc_kill(hc, REASON_INTERNAL, "out of memory");
				return;
			}
			if (h2_drain(hc->h2, hc->out.data, hc->out.cap, &n) != 0) {
				hc_kill(hc, REASON_INTERNAL, "%s", hsm_err_msg(HSM_EPROTO));
				return;
			}
			hc->out.off = 0;
			hc->out.len = n;
			if (n == 0)
				break;
		}
		st = side_write(s, hc->out.data + hc->out.off, hc->out.len, &n, &c->fail);
		if (st == SIDE_FAILED) {
			hc_kill(hc, REASON_NONE, "%s", "");
			return;
		}
		if (st != SIDE_OK)
			break;
		hc->out.off += n;
		hc->out.len -= n;
		moved = 1;
		/* a client-facing connection's UP reads nothing: what it was sent counts there */
		if (hc->server)
			c->side[UP].nread += n;
		if (s->ssl == NULL && s->full)
			break;
	}
	if (hc->out.len == 0)
		relay_buf_give(pool, &hc->out, 0);
	if (!moved)
		return;
	c->t_last = c->w->now;
	/* room in an HTTP/1.1 out buffer: its exchange's source may go on */
	if (hc->kind == HK_H1 && hc->cur != NULL)
		hx_room_opened(hc->cur, hc->server ? RSP : REQ);
	if (hc->pend_rst)
		hx_sent_resets(hc);
}

/* Half-close once everything is out, then read on (dropping it) until EOF or LINGER_MS. */
static void
hc_shutdown(struct hconn *hc)
{
	struct side *s = &hc->c->side[hc->side];

	if (!hc->shut) {
		hc->shut = 1;
		hc->linger_end = hc->c->w->now + LINGER_MS;
	}
	if (!s->shut && side_shutdown(s) != SIDE_WAIT && s->eof)
		hc_kill(hc, REASON_NONE, "%s", "");
}

/* A connection with nothing left to do: end it the way its role asks. */
static void
hc_end(struct hconn *hc)
{
	/* an upstream connection just closes: nothing of ours is in flight on it */
	if (!hc->server || hc->c->side[hc->side].eof) {
		hc_kill(hc, REASON_NONE, "%s", "");
		return;
	}
	hc_shutdown(hc);
}

/* After a flush: end what is done, register the events hc waits for, set its deadline. */
static void
hc_after(struct hconn *hc)
{
	struct conn *c = hc->c;
	const struct proxy_config *cfg = c->pol->cfg;
	struct side *s = &c->side[hc->side];
	uint64_t dl = UINT64_MAX, t;
	uint32_t ev = 0;

	if (!hc->started)
		return;
	if (hc->shut && !s->shut) {
		hc_shutdown(hc);	/* a close_notify that had to wait */
		if (hc->dead)
			return;
	}
	if (hc->out.len == 0 && !hc->shut) {
		if (hc->kind == HK_H2 && !h2_want_read(hc->h2) && !h2_want_write(hc->h2)) {
			hc_end(hc);	/* GOAWAY sent or received, every stream done */
		} else if (hc->closing && hc->nx == 0) {
			if (hc->kind == HK_H2) {
				h2_goaway(hc->h2, H2_NO_ERROR);
				if (h2_want_write(hc->h2)) {
					hc_dirty(hc);
					return;
				}
			}
			hc_end(hc);
		}
		if (hc->dead)
			return;
	}
	if (!s->eof && (hc->shut || (hc->kind == HK_H2 ? h2_want_read(hc->h2) :
	    hc->in.data == NULL || hc->in.off + hc->in.len < hc->in.cap || hc->in.off > 0))) {
		/*
		 * rd_want 0: TLS holds more than the last read took (or a
		 * whole record read ahead): no socket event announces it, so
		 * it is read again at the next flush, after the other
		 * connections had their turn.
		 */
		if (s->ssl != NULL && (s->rd_want == 0 || SSL_has_pending(s->ssl))) {
			ev |= EPOLLIN;
			if (!hc->rdq) {
				hc->rdq = 1;
				hc->rnext = hc->hw->rdq;
				hc->hw->rdq = hc;
			}
		} else {
			ev |= s->rd_want;
		}
	}
	if (hc->out.len > 0)
		ev |= s->wr_want;
	if (hc->shut && !s->shut)
		ev |= s->sd_want;
	conn_watch(c, hc->side, ev);

	if (hc->shut)
		dl = hc->linger_end;
	else if (hc->nx == 0)
		dl = c->t_last + cfg->idle_timeout_ms;
	if (hc->xdl != 0 && hc->xdl < dl)
		dl = hc->xdl;
	if (!hc->server && hc->kind == HK_H2 && !hc->shut) {
		t = h2_ping_pending(hc->h2) ? hc->t_ping + cfg->handshake_timeout_ms :
		    c->t_last + POOL_PING_MS;
		if (t < dl)
			dl = t;
	}
	c->deadline = dl;
}

static void
http_readable(struct conn *c, int side)
{
	struct hconn *hc = c->codec_state;

	if (hc == NULL || side != hc->side || hc->dead)
		return;
	hc_read(hc);
}

static void
http_writable(struct conn *c, int side)
{
	struct hconn *hc = c->codec_state;
	struct side *s;

	if (hc == NULL || side != hc->side || hc->dead)
		return;
	s = &c->side[side];
	/* TLS may need the socket writable to read */
	if (s->rd_want == EPOLLOUT)
		hc_read(hc);
	hc_dirty(hc);
}

static void
http_timeout(struct conn *c)
{
	struct hconn *hc = c->codec_state;
	const struct proxy_config *cfg = c->pol->cfg;
	uint64_t now = c->w->now;

	if (hc == NULL || hc->dead)
		return;
	hc_dirty(hc);
	if (hc->shut) {
		if (now >= hc->linger_end)
			hc_kill(hc, REASON_NONE, "%s", "");
		return;
	}
	if (!hc->server) {
		pool_conn_timeout(hc, now);
		return;
	}
	if (hc->nx == 0 && now >= c->t_last + cfg->idle_timeout_ms) {
		fail_set(&c->fail, REASON_IDLE_TIMEOUT, "idle for %u ms", cfg->idle_timeout_ms);
		hc->closing = 1;
		return;
	}
	hc->xdl = hx_timeouts(hc, now);
}

/* Take hc off the worker's flush list. */
static void
undirty(struct hconn *hc)
{
	struct hconn **pp;

	if (!hc->dirty)
		return;
	for (pp = &hc->hw->dirty; *pp != NULL; pp = &(*pp)->dnext)
		if (*pp == hc) {
			*pp = hc->dnext;
			break;
		}
	hc->dirty = 0;
}

static void
http_close(struct conn *c)
{
	struct hconn *hc = c->codec_state;
	struct relay_pool *pool = &c->w->pool;

	if (hc == NULL)
		return;
	hc->c = c;
	hc->freeing = 1;	/* what it tells its exchanges may not put it back on the flush list */
	undirty(hc);
	if (hc->rdq) {
		struct hconn **pp;

		for (pp = &hc->hw->rdq; *pp != NULL; pp = &(*pp)->rnext)
			if (*pp == hc) {
				*pp = hc->rnext;
				break;
			}
	}
	hx_conn_lost(hc);
	if (hc->pool != NULL)
		pool_gone(hc);
	h2_free(hc->h2);
	if (hc->kind == HK_H1)
		h1_free(&hc->p);
	relay_buf_give(pool, &hc->in, 1);
	relay_buf_give(pool, &hc->out, 1);
	free(hc->xfcc);
	free(hc);
	c->codec_state = NULL;
}

int
http_busy(const struct worker *w)
{
	return w->http->rdq != NULL;
}

void
http_flush(struct worker *w)
{
	struct hworker *hw = w->http;
	struct hconn *hc, *rq;
	struct pool *p;

	/* what TLS held back from the last round's reads, once each */
	rq = hw->rdq;
	hw->rdq = NULL;
	while ((hc = rq) != NULL) {
		rq = hc->rnext;
		hc->rdq = 0;
		if (!hc->dead)
			hc_read(hc);
	}
	for (;;) {
		if ((p = hw->service) != NULL) {
			hw->service = p->snext;
			p->service = 0;
			pool_service(p);
			continue;
		}
		if ((hc = hw->dirty) == NULL)
			break;
		hw->dirty = hc->dnext;
		hc->dirty = 0;
		/* an HTTP/1.1 source whose destination made room, or a next request */
		if (!hc->dead && hc->kind == HK_H1 && hc->in.len > 0)
			hc_h1_pump(hc);
		if (!hc->dead)
			hc_write(hc);
		if (!hc->dead)
			hc_after(hc);
		if (hc->dead)
			conn_close(hc->c);	/* http_close frees hc */
	}
}

void
http_drain(struct worker *w)
{
	struct conn *c;
	struct hconn *hc;

	w->http->draining = 1;
	for (c = w->head.next; c != &w->head; c = c->next) {
		if (c->codec != &codec_http || (hc = c->codec_state) == NULL || !hc->started)
			continue;
		hc->closing = 1;
		if (hc->kind == HK_H2 && hc->server)
			h2_goaway(hc->h2, H2_NO_ERROR);
		hc_dirty(hc);
	}
}

const struct codec codec_http = {
	.name = "http",
	.own_upstream = 1,
	.alpn = alpn_list,
	.alpn_len = sizeof(alpn_list) - 1,
	.start = http_start,
	.readable = http_readable,
	.writable = http_writable,
	.timeout = http_timeout,
	.close = http_close,
};

/* ---- HTTP/1.1 parsing ---- */

/* The end of an HTTP/1.1 connection's stream: what its parser says of the bytes it held. */
static void
h1_at_eof(struct hconn *hc)
{
	struct h1_event ev;
	struct hx *x = hc->cur;
	int dir = hc->server ? REQ : RSP;

	if (h1_eof(&hc->p, hc->in.len, &ev) != 0) {
		hx_h1_broken(hc, hc->p.status, hsm_err_msg(HSM_EPROTO));
		return;
	}
	if (ev.type == H1_END && x != NULL) {
		hx_end(x, dir, NULL);	/* a body delimited by the close */
		return;
	}
	/* a clean end between messages, or after the request (a half-close) */
	hc->closing = 1;
	if (x == NULL)
		hc_kill(hc, REASON_NONE, "%s", "");
}

static void h1_pump_loop(struct hconn *hc);

void
hc_h1_pump(struct hconn *hc)
{
	if (hc->kind != HK_H1 || hc->dead || hc->shut)
		return;
	if (hc->pumping) {
		hc_dirty(hc);	/* the flush parses on */
		return;
	}
	hc->pumping = 1;
	h1_pump_loop(hc);
	hc->pumping = 0;
}

static void
h1_pump_loop(struct hconn *hc)
{
	struct side *s = &hc->c->side[hc->side];
	struct h1_event ev;
	struct hx *x;
	size_t used, max;
	int dir = hc->server ? REQ : RSP, r;

	for (;;) {
		x = hc->cur;
		if (x == NULL) {
			if (!hc->server) {
				/* an upstream connection without exchange owes us nothing */
				if (hc->in.len > 0 || s->eof)
					hc_kill(hc, REASON_NONE, "%s", "");
				return;
			}
			/* the next request once the last response has left */
			if (hc->closing || hc->out.len > 0)
				return;
			max = 0;
		} else if (x->in_end[dir]) {
			return;		/* complete: a pipelined request waits for the response */
		} else {
			max = hx_room(x, dir);
		}
		if (dir == REQ && x != NULL)
			hx_blocked(x, max == 0 && hc->in.len > 0);
		/* with no byte too: an end that needs none (a bodyless message) comes out */
		r = h1_parse(&hc->p, hc->in.len > 0 ? hc->in.data + hc->in.off : NULL, hc->in.len,
		    max, &used, &ev);
		hc->in.off += used;
		hc->in.len -= used;
		if (r != 0) {
			hx_h1_broken(hc, hc->p.status, hsm_err_msg(r));
			return;
		}
		switch (ev.type) {
		case H1_HEAD:
			if (hc->server)
				hx_request(hc, NULL, &hc->p.msg, hc->p.body == H1_BODY_NONE, 0);
			else
				hx_response(x, &hc->p.msg, hc->p.body == H1_BODY_NONE &&
				    hc->p.msg.status >= 200, 0);
			break;
		case H1_DATA:
			hx_data(x, dir, ev.data, ev.len);
			break;
		case H1_END:
			hx_end(x, dir, &hc->p.trailers);
			break;
		default:
			if (s->eof)
				h1_at_eof(hc);
			return;
		}
		if (hc->dead || hc->shut)
			return;
	}
}
