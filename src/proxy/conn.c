/*
 * conn.c - the sidecar's connection state machine (see proxy.h):
 *
 *   inbound:  accept (TLS DOWN) -> C_HANDSHAKE -> C_CONNECT (app UP) -> C_RELAY
 *   outbound: accept (plain DOWN) -> C_CONNECT (peer UP) -> C_HANDSHAKE -> C_RELAY
 *
 * then C_DYING (closed, perhaps waiting for a paused key operation) and
 * C_FREED. In C_RELAY the connection's codec moves the bytes. A codec
 * that opens its own upstream connections (HTTP pools) skips C_CONNECT
 * for what it accepts, and its pools' connections start at C_CONNECT
 * with no DOWN socket (conn_upstream). One
 * conn_event takes every event; one conn_update says what each state
 * waits for. The access log line and the stderr failure line are written
 * when a connection ends.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "audit.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "proxy.h"
#include "proxyconf.h"
#include "util.h"

#define LOG_BURST	20	/* failure lines per worker per second before suppression */

static void conn_update(struct conn *c);
static void tls_start(struct conn *c);
static void connect_start(struct conn *c);
static void codec_start(struct conn *c);

/* ---- access log and failure lines ---- */

static void
access_log(struct conn *c, uint64_t now)
{
	struct proxy *px = c->w->px;
	const struct proxy_listener *l = &px->cfg->lst[c->li];
	char rx[24], tx[24], hs[24], dur[24];
	const char *decision;
	enum reason r = c->fail.reason;

	if (c->authorised)
		decision = "allow";
	else if (reason_is_denial(r))
		decision = "deny";
	else
		decision = "error";
	snprintf(rx, sizeof(rx), "%llu", (unsigned long long)c->side[DOWN].nread);
	snprintf(tx, sizeof(tx), "%llu", (unsigned long long)c->side[UP].nread);
	snprintf(hs, sizeof(hs), "%llu", (unsigned long long)(c->t_hs != 0 ? c->t_hs - c->t_accept : 0));
	snprintf(dur, sizeof(dur), "%llu", (unsigned long long)(now - c->t_accept));
	pthread_rwlock_rdlock(&px->alog_lock);
	if (px->alog != NULL)
		audit_event(px->alog, "connection", "listener", l->name,
		    "direction", c->inbound ? "inbound" : "outbound", "client", c->peer_addr,
		    "peer_id", c->peer_id, "decision", decision, "reason", reason_label(r),
		    "detail", r != REASON_NONE ? c->fail.detail : NULL,
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
	hsm_log(reason_is_denial(c->fail.reason) ? HSM_LOG_INFO : HSM_LOG_WARN,
	    "%s %s: %s %s: %s: %s", c->inbound ? "inbound" : "outbound", l->name, c->peer_addr,
	    c->inbound ? "refused" : "failed", reason_label(c->fail.reason), c->fail.detail);
}

/* ---- epoll ---- */

static void
ep_set(struct worker *w, int fd, struct evsrc *src, uint32_t want, uint32_t *cur, uint8_t *added)
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
ep_del(struct worker *w, int fd, uint8_t *added)
{
	if (fd >= 0 && *added)
		epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL);
	*added = 0;
}

void
conn_watch_set(struct conn *c, int side, uint32_t events)
{
	/* EPOLLRDHUP is not needed: reads see EOF. Errors arrive as EPOLLERR/HUP. */
	ep_set(c->w, c->side[side].fd, &c->es[side], events, &c->ev[side], &c->added[side]);
}

/* Register the epoll interest the connection's set-up state asks for. */
static void
conn_update(struct conn *c)
{
	switch (c->state) {
	case C_CONNECT:
		/* only the connecting socket (UP); the other side waits */
		conn_watch(c, DOWN, 0);
		conn_watch(c, UP, EPOLLOUT);
		break;
	case C_HANDSHAKE:
		conn_watch(c, c->tls, c->hs_want);
		conn_watch(c, !c->tls, 0);
		break;
	default:
		/* C_RELAY: the codec registers what it waits for */
		break;
	}
}

/* Reconcile epoll with the SSL's async wait fds (one stable eventfd per SSL). */
static void
watch_async(struct conn *c)
{
	OSSL_ASYNC_FD fds[4];
	size_t n = 0;

	if (!SSL_get_all_async_fds(conn_ssl(c), NULL, &n) || n == 0 || n > 4 ||
	    !SSL_get_all_async_fds(conn_ssl(c), fds, &n))
		return;
	if (c->afd != fds[0]) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->ea };

		if (c->afd >= 0)
			epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->afd, NULL);
		c->afd = fds[0];
		epoll_ctl(c->w->ep, EPOLL_CTL_ADD, c->afd, &ev);
	}
}

/* ---- closing ---- */

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
	if (c->fail.reason != REASON_NONE && !reason_is_admission(c->fail.reason) &&
	    (!c->authorised || reason_is_unreachable(c->fail.reason)))
		log_failure(c, now);
	admission_release(c);
	if (c->codec_on)
		c->codec->close(c);
	if (c->afd >= 0)
		epoll_ctl(w->ep, EPOLL_CTL_DEL, c->afd, NULL);
	for (int i = 0; i < 2; i++) {
		ep_del(w, c->side[i].fd, &c->added[i]);
		SSL_free(c->side[i].ssl);
		if (c->side[i].fd >= 0)
			close(c->side[i].fd);
	}
	free(c->peer_id);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	w->n--;
	metric_gauge_add(c->pooled ? px->lm[c->li].up_active : px->lm[c->li].active, -1);
	ident_put(c->ident);
	policy_put(c->pol);
	atomic_fetch_sub(&px->nconns, 1);
	c->state = C_FREED;
	c->dead_next = w->dead;
	w->dead = c;		/* freed after this batch of events */
}

/* The failure counter of a listener and reason (NULL if it cannot be made). */
static struct metric *
fail_counter(struct proxy *px, unsigned li, enum reason r)
{
	struct metric *m;

	if ((m = atomic_load(&px->lm[li].fail[r])) != NULL)
		return m;
	metrics_get(px->m, METRIC_COUNTER, "hsmesh_proxy_handshake_failures_total",
	    "TLS handshakes that failed or were refused, by reason",
	    (const char *const[]){ "listener", px->cfg->lst[li].name, "reason", reason_label(r),
	    NULL }, &m);
	if (m != NULL)
		atomic_store(&px->lm[li].fail[r], m);
	return m;
}

void
conn_close(struct conn *c)
{
	/* freed: an HTTP connection's close may have ended one a caller still iterates to */
	if (c->state == C_DYING || c->state == C_FREED)
		return;
	c->w->churn++;
	if (c->fail.reason != REASON_NONE && c->state == C_HANDSHAKE)
		metric_inc(fail_counter(c->w->px, c->li, c->fail.reason));
	if (conn_ssl(c) != NULL && SSL_waiting_for_async(conn_ssl(c))) {
		/* the SSL must not be freed, nor its socket reused: wait on the async fd */
		c->state = C_DYING;
		ep_del(c->w, c->side[DOWN].fd, &c->added[DOWN]);
		ep_del(c->w, c->side[UP].fd, &c->added[UP]);
		return;
	}
	c->state = C_DYING;
	conn_free_now(c);
}

/* ---- TLS handshake ---- */

static void
handshake_done(struct conn *c)
{
	struct proxy *px = c->w->px;
	struct lmetrics *lm = &px->lm[c->li];
	SSL *ssl = conn_ssl(c);
	X509 *peer = SSL_get0_peer_certificate(ssl);
	uint64_t now = hsm_now_ms();

	c->resumed = (uint8_t)SSL_session_reused(ssl);
	/* A resumed session skips verify_cb: check the session's peer again. */
	if (peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK) {
		fail_set(&c->fail, REASON_UNTRUSTED, "peer certificate not verified");
	} else if (c->resumed || c->peer_id == NULL) {
		check_peer_id(c, peer);
	}
	/* The newest CRL: a resumed session, or one that arrived during the handshake. */
	if (c->fail.reason == REASON_NONE && peer != NULL)
		revoke_check_peer(c, peer);
	if (c->fail.reason != REASON_NONE) {
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
	SSL_clear_mode(ssl, SSL_MODE_ASYNC);
	if (c->afd >= 0) {
		epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->afd, NULL);
		c->afd = -1;
	}
	if (c->inbound && !c->codec->own_upstream)
		connect_start(c);
	else
		codec_start(c);
}

static void
handshake_step(struct conn *c)
{
	SSL *ssl = conn_ssl(c);
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(ssl);
	if (c->paused != SSL_waiting_for_async(ssl)) {
		c->paused = !c->paused;
		if (c->paused && ++c->w->njobs > c->w->jobs_peak)
			c->w->jobs_peak = c->w->njobs;
		else if (!c->paused)
			c->w->njobs--;
	}
	/* the signature is done (or was never started): the slot goes back */
	if (c->keyop && !c->paused)
		admission_release(c);
	if (c->state == C_DYING) {
		if (!SSL_waiting_for_async(ssl))
			conn_free_now(c);
		return;
	}
	switch (tls_status(ssl, r, &c->fail)) {
	case TLS_DONE:
		handshake_done(c);
		return;
	case TLS_WANT_READ:
		c->hs_want = EPOLLIN;
		break;
	case TLS_WANT_WRITE:
		c->hs_want = EPOLLOUT;
		break;
	case TLS_WANT_ASYNC:
		c->hs_want = 0;
		c->t_async = hsm_now_ms();
		watch_async(c);
		break;
	case TLS_CLOSED:
		tls_fail_closed(&c->fail);
		conn_close(c);
		return;
	default:
		conn_close(c);
		return;
	}
	conn_update(c);
}

static void
tls_start(struct conn *c)
{
	const struct proxy_listener *l = &c->pol->cfg->lst[c->li];
	struct side *t = &c->side[c->tls];
	SSL *ssl;

	if ((ssl = SSL_new(c->inbound ? c->ident->srv : c->ident->cli)) == NULL ||
	    sockbio_attach(ssl, t->fd) != 1 || SSL_set_app_data(ssl, c) != 1) {
		SSL_free(ssl);
		fail_set(&c->fail, REASON_INTERNAL, "SSL_new failed");
		conn_close(c);
		return;
	}
	side_init(t, t->fd, ssl, "the peer");
	t->count = c->tls == DOWN ? c->w->px->lm[c->li].rx : c->w->px->lm[c->li].tx;
	if (c->inbound) {
		SSL_set_accept_state(ssl);
	} else {
		SSL_set_connect_state(ssl);
		if (l->server_name != NULL)
			SSL_set_tlsext_host_name(ssl, l->server_name);
		/* an HTTP pool's connection offers h2 and http/1.1; a tcp one offers nothing */
		if (c->codec->alpn != NULL)
			SSL_set_alpn_protos(ssl, c->codec->alpn, c->codec->alpn_len);
		sess_offer(&c->w->px->sess[c->li], ssl);
	}
	c->state = C_HANDSHAKE;
	/* inbound: from accept (the wait for the first byte counts) */
	c->deadline = (c->inbound ? c->t_accept : hsm_now_ms()) + c->pol->cfg->handshake_timeout_ms;
	handshake_step(c);
}

/*
 * An inbound connection waits for its first byte without an SSL: libssl's
 * state for a server handshake (the SSL, a 16 KB handshake buffer, the
 * write buffer) cost ~42 KiB per connection that has sent nothing yet,
 * twice what a handshaken quiet connection costs. tls_start runs when the
 * socket turns readable; one silent until the handshake deadline is closed
 * then (handshake_timeout), as before.
 */
static void
tls_wait(struct conn *c)
{
	c->state = C_HANDSHAKE;
	c->deadline = c->t_accept + c->pol->cfg->handshake_timeout_ms;
	c->hs_want = EPOLLIN;
	conn_update(c);
}

/* ---- connecting to the target ---- */

/* Connect to the listener's target (inbound: the app; outbound: the peer sidecar). */
static void
connect_start(struct conn *c)
{
	const struct proxy_listener *l = &c->pol->cfg->lst[c->li];
	struct side *up = &c->side[UP];
	int fd, one = 1;

	c->state = C_CONNECT;
	c->deadline = hsm_now_ms() + c->pol->cfg->connect_timeout_ms;
	fd = socket(l->target_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fail_set(&c->fail, REASON_CONNECT_FAILED, "socket: %s", strerror(errno));
		goto fail;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	up->fd = fd;
	if (connect(fd, (const struct sockaddr *)&l->target_addr, l->target_len) == 0) {
		if (c->inbound)
			codec_start(c);
		else
			tls_start(c);
		return;
	}
	if (errno != EINPROGRESS) {
		fail_set(&c->fail, REASON_CONNECT_FAILED, "connect %s: %s", l->target, strerror(errno));
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
	int err = 0;
	socklen_t sl = sizeof(err);

	if (getsockopt(c->side[UP].fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0)
		err = errno;
	if (err == EINPROGRESS)
		return;
	if (err != 0) {
		fail_set(&c->fail, REASON_CONNECT_FAILED, "connect %s: %s", l->target, strerror(err));
		metric_inc(c->w->px->lm[c->li].upstream_fail);
		conn_close(c);
		return;
	}
	if (c->inbound)
		codec_start(c);
	else
		tls_start(c);
}

/* ---- the codec ---- */

static void
codec_start(struct conn *c)
{
	c->state = C_RELAY;
	c->codec_on = 1;
	c->t_last = hsm_now_ms();
	c->codec->start(c);
}

void
conn_setup_event(struct conn *c, enum ev_kind kind, unsigned idx, uint32_t events)
{
	switch (c->state) {
	case C_HANDSHAKE:
		if (conn_ssl(c) == NULL) {
			if (kind == EV_SIDE)
				tls_start(c);	/* the first bytes of a ClientHello, or an end */
			break;
		}
		if (kind == EV_ASYNC && c->t_async != 0) {
			metric_observe(c->w->px->keyop_time, (double)(hsm_now_ms() - c->t_async) / 1000.0);
			c->t_async = 0;
		}
		handshake_step(c);
		break;
	case C_CONNECT:
		/* only the connecting socket's events; the other side waits */
		if (kind == EV_SIDE && idx == UP)
			connect_done(c);
		break;
	case C_DYING:
		if (kind == EV_ASYNC)
			handshake_step(c);
		break;
	default:
		break;
	}
}

void
conn_sweep(struct conn *c, uint64_t now)
{
	/*
	 * RELEASE_BUFFERS does not free every record buffer: with a
	 * thousand connections each waiting for a response, an outbound
	 * sidecar still held ~10 KB more per connection than with this. A
	 * connection quiet since the last sweep lets what is left go. Never
	 * while they hold bytes (before 3.0.14 SSL_free_buffers freed a
	 * buffer still in use).
	 */
	if (c->state == C_RELAY && c->t_last + SWEEP_MS <= now && side_release(&c->side[c->tls]))
		c->w->churn++;
	if (c->state == C_DYING || c->state == C_FREED || now < c->deadline)
		return;
	switch (c->state) {
	case C_HANDSHAKE:
		fail_set(&c->fail, REASON_HANDSHAKE_TIMEOUT, "no complete handshake within %u ms",
		    c->pol->cfg->handshake_timeout_ms);
		break;
	case C_CONNECT:
		fail_set(&c->fail, REASON_CONNECT_TIMEOUT, "connect %s: no answer within %u ms",
		    c->pol->cfg->lst[c->li].target, c->pol->cfg->connect_timeout_ms);
		metric_inc(c->w->px->lm[c->li].upstream_fail);
		break;
	case C_RELAY:
		c->codec->timeout(c);
		return;
	default:
		break;
	}
	conn_close(c);
}

/* ---- accept ---- */

void
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
	c->inbound = (uint8_t)px->cfg->lst[li].inbound;
	c->tls = c->inbound ? DOWN : UP;
	c->codec = px->cfg->lst[li].http ? &codec_http : &codec_tcp;
	c->es[DOWN] = (struct evsrc){ EV_SIDE, c, DOWN };
	c->es[UP] = (struct evsrc){ EV_SIDE, c, UP };
	c->ea = (struct evsrc){ EV_ASYNC, c, 0 };
	/* the TLS side becomes TLS in tls_start; the app's plain side names "the app" or "the client" */
	side_init(&c->side[DOWN], fd, NULL, c->inbound ? "the peer" : "the client");
	side_init(&c->side[UP], -1, NULL, c->inbound ? "the app" : "the peer");
	c->side[DOWN].count = lm->rx;
	c->side[UP].count = lm->tx;
	c->afd = -1;
	c->t_accept = hsm_now_ms();
	net_addr_str(ss, sl, c->peer_addr, sizeof(c->peer_addr));
	(void)admit_src_of(ss, &c->src);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	proxy_get(px, &c->ident, &c->pol);
	c->next = &w->head;
	c->prev = w->head.prev;
	w->head.prev->next = c;
	w->head.prev = c;
	w->n++;
	metric_gauge_add(lm->active, 1);
	if (c->ident == NULL) {
		c->state = C_HANDSHAKE;	/* counted as a failed handshake */
		fail_set(&c->fail, REASON_NO_IDENTITY, "no certificate from the agent yet");
		conn_close(c);
		return;
	}
	if (c->inbound)
		tls_wait(c);
	else if (c->codec->own_upstream)
		codec_start(c);
	else
		connect_start(c);
}

int
conn_upstream(struct worker *w, unsigned li, void *state, struct conn **out)
{
	struct proxy *px = w->px;
	struct lmetrics *lm = &px->lm[li];
	struct conn *c;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return HSM_ENOMEM;
	c->w = w;
	c->li = li;
	c->inbound = (uint8_t)px->cfg->lst[li].inbound;
	c->tls = c->inbound ? DOWN : UP;
	c->codec = &codec_http;
	c->codec_state = state;
	c->codec_on = 1;	/* its pool hears of its end, even before it starts */
	c->pooled = 1;
	c->es[DOWN] = (struct evsrc){ EV_SIDE, c, DOWN };
	c->es[UP] = (struct evsrc){ EV_SIDE, c, UP };
	c->ea = (struct evsrc){ EV_ASYNC, c, 0 };
	side_init(&c->side[DOWN], -1, NULL, "the pool");
	side_init(&c->side[UP], -1, NULL, c->inbound ? "the app" : "the peer");
	c->side[UP].count = lm->tx;
	c->afd = -1;
	c->t_accept = hsm_now_ms();
	snprintf(c->peer_addr, sizeof(c->peer_addr), "pool");
	proxy_get(px, &c->ident, &c->pol);
	atomic_fetch_add(&px->nconns, 1);
	c->next = &w->head;
	c->prev = w->head.prev;
	w->head.prev->next = c;
	w->head.prev = c;
	w->n++;
	w->churn++;
	metric_inc(lm->up_opened);
	metric_gauge_add(lm->up_active, 1);
	*out = c;
	if (!c->inbound && c->ident == NULL) {
		c->state = C_HANDSHAKE;	/* counted as a failed handshake */
		fail_set(&c->fail, REASON_NO_IDENTITY, "no certificate from the agent yet");
		conn_close(c);
		return 0;
	}
	connect_start(c);
	return 0;
}
