/*
 * pool.c - the upstream connections of an HTTP listener on one worker
 * (see httpcodec.h): outbound, HTTP/2 over mutual TLS to the peer's sidecar
 * (HTTP/1.1 when the peer's ALPN says so); inbound, to the application
 * as app_protocol says.
 *
 * A request goes on the least-loaded connection with a stream to spare
 * (HTTP/2: at most limits.max_streams each; HTTP/1.1: one request at a
 * time). When none has one, it waits in a queue of at most
 * POOL_QUEUE_MAX (beyond: 503) while the pool opens connections, as
 * many as the queue needs and at most POOL_H2_MAX (POOL_H1_MAX for
 * HTTP/1.1); a request that waited longer than a connect and a
 * handshake is answered 503, and one whose every attempt failed 502.
 * So a burst of application connections costs the peer no handshake
 * once a connection is up, and a burst of requests costs one handshake
 * per max_streams of them.
 *
 * A connection that received GOAWAY, that a rotation (a new certificate)
 * or a reload (another target, expect_id or SNI; inbound another
 * application) left behind, or that the proxy's drain reached, takes no
 * new request and closes once its last one ended; one idle for
 * timeouts.idle closes; an HTTP/2 one quiet for POOL_PING_MS is PINGed
 * and closed if the answer does not come within timeouts.handshake.
 */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "httpcodec.h"
#include "proxyconf.h"

void
pool_kick(struct pool *p)
{
	if (p->service)
		return;
	p->service = 1;
	p->snext = p->hw->service;
	p->hw->service = p;
}

/* The connection a request goes on now: the least loaded HTTP/2 one, or an idle HTTP/1.1 one. */
static struct hconn *
pick(struct pool *p)
{
	struct hconn *hc, *best = NULL;

	for (hc = p->conns; hc != NULL; hc = hc->pnext) {
		if (!hc->started || hc->dead || hc->closing || hc->shut)
			continue;
		if (hc->kind == HK_H2) {
			if (h2_can_open(hc->h2) > 0 && (best == NULL || hc->nx < best->nx))
				best = hc;
		} else if (hc->cur == NULL && hc->out.len == 0 && hc->in.len == 0) {
			return hc;
		}
	}
	return best;
}

static struct hx *
dequeue(struct pool *p)
{
	struct hx *x = p->qhead;

	if (x != NULL)
		pool_unqueue(x);
	return x;
}

void
pool_unqueue(struct hx *x)
{
	struct pool *p = x->queued;

	if (p == NULL)
		return;
	if (x->uprev != NULL)
		x->uprev->unext = x->unext;
	else
		p->qhead = x->unext;
	if (x->unext != NULL)
		x->unext->uprev = x->uprev;
	else
		p->qtail = x->uprev;
	x->uprev = x->unext = NULL;
	x->queued = NULL;
	p->nq--;
}

void
pool_submit(struct hx *x)
{
	struct pool *p = &x->hw->pools[x->down->c->li];
	const struct proxy_config *cfg = x->pol->cfg;
	struct hconn *hc;

	if (p->nq == 0 && (hc = pick(p)) != NULL) {
		hx_dispatch(x, hc);
		return;
	}
	if (p->nq >= POOL_QUEUE_MAX) {
		hx_answer(x, 503, "upstream_busy");
		return;
	}
	x->queued = p;
	x->t_wait = x->hw->w->now + cfg->connect_timeout_ms + cfg->handshake_timeout_ms;
	x->unext = NULL;
	x->uprev = p->qtail;
	if (p->qtail != NULL)
		p->qtail->unext = x;
	else
		p->qhead = x;
	p->qtail = x;
	p->nq++;
	if (x->down->xdl == 0 || x->t_wait < x->down->xdl)
		x->down->xdl = x->t_wait;
	pool_kick(p);
}

/* Open one more connection. 0, or -1 when it could not be opened (the pool knows why). */
static int
pool_open(struct pool *p)
{
	struct hconn *hc;
	struct conn *c;

	if ((hc = calloc(1, sizeof(*hc))) == NULL) {
		fail_set(&p->last, REASON_INTERNAL, "out of memory");
		p->failed = 1;
		return -1;
	}
	hc->hw = p->hw;
	hc->side = UP;
	hc->pool = p;
	hc->proto = "HTTP/1.1";
	hc->pnext = p->conns;
	if (p->conns != NULL)
		p->conns->pprev = hc;
	p->conns = hc;
	p->n++;
	p->nsetup++;
	p->opening = hc;
	p->open_gone = 0;
	if (conn_upstream(p->hw->w, p->li, hc, &c) != 0) {
		p->opening = NULL;
		pool_gone(hc);
		free(hc);
		fail_set(&p->last, REASON_INTERNAL, "out of memory");
		return -1;
	}
	p->opening = NULL;
	if (p->open_gone)
		return -1;	/* it failed at once (pool_gone recorded why) */
	hc->c = c;
	return 0;
}

void
pool_service(struct pool *p)
{
	struct hworker *hw = p->hw;
	const struct proxy_listener *l;
	const char *why;
	struct hconn *hc;
	struct hx *x;
	unsigned per, max;
	int h2;

	while (p->qhead != NULL && (hc = pick(p)) != NULL)
		hx_dispatch(dequeue(p), hc);
	if (p->qhead == NULL)
		return;
	if (p->failed && p->nsetup == 0) {
		/* every attempt failed: the waiting requests learn it now, not at their deadline */
		why = reason_label(p->last.reason);
		while ((x = dequeue(p)) != NULL)
			hx_answer(x, 502, why != NULL ? why : "upstream_unavailable");
		p->failed = 0;
		memset(&p->last, 0, sizeof(p->last));
		return;
	}
	hw_refresh(hw);
	l = &hw->pol->cfg->lst[p->li];
	h2 = l->inbound ? l->app_h2c : !p->h1_seen;
	per = h2 ? hw->pol->cfg->max_streams : 1;
	max = h2 ? POOL_H2_MAX : POOL_H1_MAX;
	while (p->n < max && p->nsetup * per < p->nq && !hw->draining)
		if (pool_open(p) != 0)
			break;
}

void
pool_ready(struct hconn *hc)
{
	struct pool *p = hc->pool;

	if (p == NULL)
		return;
	p->nsetup--;
	p->failed = 0;
	if (hc->kind == HK_H1 && !hc->c->inbound)
		p->h1_seen = 1;
	pool_kick(p);
}

void
pool_gone(struct hconn *hc)
{
	struct pool *p = hc->pool;

	if (p == NULL)
		return;
	if (p->opening == hc)
		p->open_gone = 1;
	if (hc->pprev != NULL)
		hc->pprev->pnext = hc->pnext;
	else
		p->conns = hc->pnext;
	if (hc->pnext != NULL)
		hc->pnext->pprev = hc->pprev;
	hc->pprev = hc->pnext = NULL;
	p->n--;
	if (!hc->started) {
		p->nsetup--;
		p->failed = 1;
		if (hc->c != NULL && hc->c->fail.reason != REASON_NONE)
			p->last = hc->c->fail;
		else
			fail_set(&p->last, REASON_CONNECT_FAILED, "closed before it was ready");
	}
	hc->pool = NULL;
	if (p->nq > 0)
		pool_kick(p);
}

void
pool_released(struct hconn *hc)
{
	if (hc->dead)
		return;
	if (hc->kind == HK_H1) {
		hc->reused = 1;
		if (!hc->p.keep_alive || hc->closing) {
			hc_kill(hc, REASON_NONE, "%s", "");
			return;
		}
	}
	if (hc->pool != NULL && hc->pool->nq > 0)
		pool_kick(hc->pool);
}

void
pool_goaway(struct hconn *hc)
{
	hc->closing = 1;
	hc_dirty(hc);
	if (hc->pool != NULL && hc->pool->nq > 0)
		pool_kick(hc->pool);
}

void
pool_conn_timeout(struct hconn *hc, uint64_t now)
{
	const struct proxy_config *cfg = hc->c->pol->cfg;

	if (hc->nx == 0 && now >= hc->t_idle + cfg->idle_timeout_ms) {
		hc->closing = 1;
		return;
	}
	if (hc->kind != HK_H2)
		return;
	if (h2_ping_pending(hc->h2)) {
		if (now >= hc->t_ping + cfg->handshake_timeout_ms)
			hc_kill(hc, REASON_HTTP_ERROR, "no answer to a PING within %u ms",
			    cfg->handshake_timeout_ms);
	} else if (now >= hc->c->t_last + POOL_PING_MS && h2_ping(hc->h2) == 0) {
		hc->t_ping = now;
	}
}

/* 1 when listener a and b open the same upstream connections. */
static int
same_upstream(const struct proxy_listener *a, const struct proxy_listener *b)
{
	if (strcmp(a->target, b->target) != 0 || a->app_h2c != b->app_h2c)
		return 0;
	if (a->inbound)
		return 1;
	if (strcmp(a->allow[0], b->allow[0]) != 0)
		return 0;
	if (a->server_name == NULL || b->server_name == NULL)
		return a->server_name == b->server_name;
	return strcmp(a->server_name, b->server_name) == 0;
}

void
pool_recheck(struct hworker *hw)
{
	const struct proxy_config *cur = hw->pol->cfg;
	struct hconn *hc;
	struct conn *c;
	size_t i;

	for (i = 0; i < cur->nlst; i++) {
		struct pool *p = &hw->pools[i];

		if (!cur->lst[i].http)
			continue;
		for (hc = p->conns; hc != NULL; hc = hc->pnext) {
			if (hc->closing || (c = hc->c) == NULL)
				continue;
			if (same_upstream(&c->pol->cfg->lst[i], &cur->lst[i]) &&
			    (c->inbound || c->ident == hw->ident))
				continue;
			hc->closing = 1;	/* drains: its requests finish, no new one */
			if (hc->started)
				hc_dirty(hc);
		}
		if (p->nq > 0)
			pool_kick(p);
	}
}
