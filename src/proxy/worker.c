/*
 * worker.c - the sidecar's worker threads (see proxy.h): each runs its
 * own epoll loop over its own SO_REUSEPORT listening sockets and the
 * connections it accepted, checks deadlines every SWEEP_MS, and gives
 * memory back after bursts.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "proxy.h"
#include "proxyconf.h"
#include "scache.h"
#include "util.h"

#define MAX_EVENTS	256
#define ACCEPT_BURST	64
#define JOBS_KEEP	16	/* async jobs a worker's pool may keep after a burst */
#define CHURN_TRIM	64	/* connections opened, closed or made quiet in a burst that call for a malloc_trim */

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

/* Handshake, connect and idle deadlines, quiet connections, memory after bursts. */
static void
sweep(struct worker *w, uint64_t now)
{
	struct conn *c, *next;
	int trim = 0;

	revoke_sweep(w);
	for (c = w->head.next; c != &w->head; c = next) {
		next = c->next;
		conn_sweep(c, now);
	}
	/* relay buffers a whole sweep period left unused (a burst's): freed, and trimmed below once quiet */
	w->churn += relay_pool_trim(&w->pool);
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
		sc_trim();	/* the HTTP paths' small blocks this thread keeps (scache.h) */
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

void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct proxy *px = w->px;
	struct epoll_event evs[MAX_EVENTS];
	uint64_t next_sweep = 0, stop_end = 0, now, v;
	struct conn *c;
	int n, i;

	for (;;) {
		if (atomic_load(&px->draining)) {
			if (w->listening && w->http != NULL)
				http_drain(w);
			stop_listening(w);
		}
		if (atomic_load(&px->stopping)) {
			struct conn *nx;

			for (c = w->head.next; c != &w->head; c = nx) {
				nx = c->next;
				if (c->state != C_DYING) {
					fail_set(&c->fail, REASON_SHUTDOWN, "the proxy is stopping");
					conn_close(c);
				}
			}
			if (w->http != NULL)
				http_flush(w);
			/* Left: connections waiting for a key operation, which ends by its deadline. */
			if (stop_end == 0)
				stop_end = hsm_now_ms() + px->cfg->key_timeout_ms + 1000;
			if (w->n == 0 || hsm_now_ms() > stop_end)
				break;
		}
		n = epoll_wait(w->ep, evs, MAX_EVENTS, w->http != NULL && http_busy(w) ? 0 : SWEEP_MS);
		w->now = now = hsm_now_ms();
		w->gathering = 1;
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
				conn_event(s->ptr, s->kind, s->idx, evs[i].events);
				break;
			}
		}
		w->gathering = 0;
		/* what this batch's events gave TCP and HTTP connections leaves together */
		tcp_flush(w);
		if (w->http != NULL)
			http_flush(w);
		while ((c = w->dead) != NULL) {
			w->dead = c->dead_next;
			free(c);
		}
		if (now >= next_sweep) {
			sweep(w, now);
			if (w->http != NULL)
				http_flush(w);
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

void
wake_workers(struct proxy *px)
{
	uint64_t one = 1;

	for (unsigned i = 0; i < px->nw; i++)
		if (write(px->w[i].wake, &one, sizeof(one)) < 0) {
			/* the counter saturates only after 2^64 wakes */
		}
}

int
worker_init(struct proxy *px, struct worker *w, unsigned idx)
{
	struct epoll_event ev;
	size_t n = px->cfg->nlst;

	w->px = px;
	w->idx = idx;
	w->head.next = w->head.prev = &w->head;
	w->gather_tail = &w->gather;
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
	for (size_t i = 0; i < n; i++)
		if (px->cfg->lst[i].http)
			return http_worker_init(w);
	return 0;
}

int
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

void
worker_fini(struct worker *w)
{
	if (w->lfd != NULL)
		for (size_t i = 0; i < w->px->cfg->nlst; i++)
			if (w->lfd[i] >= 0)
				close(w->lfd[i]);
	http_worker_fini(w);
	relay_pool_drain(&w->pool);
	if (w->ep > 0)
		close(w->ep);
	if (w->wake > 0)
		close(w->wake);
	free(w->lfd);
	free(w->lsrc);
}

