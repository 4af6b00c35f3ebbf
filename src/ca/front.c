/*
 * front.c - the HTTP front of the CMP server (RFC 6712; see cmp.h). One
 * event loop (epoll, this thread) owns the listeners and every
 * connection; a complete request goes to a small pool of worker threads,
 * which do the CMP and crypto work (txn.c: the CA key signs through the
 * keyholder) and hand the answer back to the loop to be written.
 *
 * No thread ever waits for a peer. Reads and writes are non-blocking, and
 * each connection has a whole-request deadline (request_timeout from
 * accept), a progress rule (no silence longer than idle_timeout while the
 * request arrives; both answered 408 and closed) and a deadline for its
 * answer to be taken (write_timeout). Admission (admit.h): at most
 * max_conns connections at once and max_conns_per_source from one
 * address; a connection over a limit is answered 503 with a short body in
 * one non-blocking send and closed, before anything of it is read. When
 * the process has no file descriptor left it is accepted on a spare one
 * and closed without a word. Request bytes held for all connections are
 * bounded (max_buffered: 503 past it), and a request that waited for a
 * worker longer than request_timeout is answered 503 unprocessed.
 *
 * Each refused connection is counted in the metrics; the log gets the
 * first refusal per source and reason per interval and a summary of the
 * rest (throttle.h). Answers go out with Connection: close (no keep-alive
 * avoided a Nagle/delayed-ACK stall on certConf, docs/OPENSSL.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admit.h"
#include "attest.h"
#include "audit.h"
#include "cmp.h"
#include "err.h"
#include "evtype.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "throttle.h"
#include "util.h"

#define CMP_PATH "/.well-known/cmp"
#define FIRST_BUF 4096		/* a connection's first read buffer */
#define SWEEP_MS 250		/* deadlines are checked this often */
#define THROTTLE_MS 60000	/* one log line per source and reason per minute */
#define THROTTLE_KEYS 4096
#define FD_RESERVE 64		/* descriptors besides connections: listeners, ledger, ... */
#define ACCEPT_BATCH 64		/* accepts per wake-up, so a flood cannot starve the rest */

enum tag_kind { TAG_CMP_LISTEN, TAG_METRICS_LISTEN, TAG_DONE, TAG_SIGNAL, TAG_CONN };

struct tag {
	enum tag_kind kind;
};

enum conn_state { CS_READ, CS_WORK, CS_WRITE };

struct conn {
	struct tag tag;			/* first: TAG_CONN */
	struct conn *prev, *next;	/* every connection (loop) */
	struct conn *qnext;		/* work queue or done list (under the queue lock) */
	int fd;
	int in_ep;			/* registered with epoll */
	enum conn_state state;
	struct sockaddr_storage ss;
	char peer[64];			/* address:port */
	char src[48];			/* address */
	uint8_t *buf;			/* the request */
	size_t have, cap;
	struct http_req hr;
	int get;			/* a GET of the CRL (cfg->crl_path) */
	uint8_t *out;			/* the answer */
	size_t outlen, outoff;
	uint64_t accepted, last_read, queued, write_by;
};

/* Why a connection ended early: a label of hsmesh_ca_connections_refused_total. */
enum refusal {
	REF_TOTAL, REF_SOURCE, REF_FDS, REF_MEMORY, REF_DEADLINE, REF_IDLE, REF_QUEUE, REF_WRITE,
	REF_N
};

static const char *const ref_label[REF_N] = {
	"max_connections", "max_connections_per_source", "no_file_descriptor", "max_buffered",
	"request_timeout", "idle_timeout", "queue_timeout", "write_timeout",
};

static const char *const ref_text[REF_N] = {
	"connection limit reached", "per-source connection limit reached",
	"no file descriptor left", "request memory limit reached",
	"request not complete within request_timeout", "silent for longer than idle_timeout",
	"waited for a worker longer than request_timeout", "answer not taken within write_timeout",
};

struct front {
	struct server *s;
	const struct cmp_server_cfg *cfg;
	struct cmp_limits lim;
	int ep, lfd, done_efd, sfd, spare_fd;
	struct tag t_lfd, t_mfd, t_done, t_sig;
	struct conn *conns;
	struct metrics_srv *msrv;	/* /metrics (metrics.h), on this loop */
	size_t buffered;
	struct admit *adm;
	struct throttle *connlog;
	uint64_t next_sweep;
	/* The workers' queue and the loop's done list. */
	pthread_mutex_t qmu;
	pthread_cond_t qcv;
	struct conn *qhead, *qtail, *done;
	int stopping;
	pthread_t th[64];
	unsigned nth;
	struct metric *m_refused[REF_N], *m_conns, *m_requests, *m_crl, *m_crl_fail;
};

/* ---- connections ---- */

static void
ep_set(struct front *f, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (epoll_ctl(f->ep, c->in_ep ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) == 0)
		c->in_ep = 1;
}

static void
ep_del(struct front *f, struct conn *c)
{
	if (c->in_ep)
		epoll_ctl(f->ep, EPOLL_CTL_DEL, c->fd, NULL);
	c->in_ep = 0;
}

static void
conn_close(struct front *f, struct conn *c)
{
	ep_del(f, c);
	close(c->fd);
	admit_release(f->adm, &c->ss);
	f->buffered -= c->cap;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		f->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	metric_gauge_add(f->m_conns, -1);
	free(c->buf);
	free(c->out);
	free(c);
}

/* Log a refusal: the first per source and reason per interval, the rest counted. */
static void
note_refusal(struct front *f, const char *peer, const char *src, enum refusal why)
{
	metric_inc(f->m_refused[why]);
	if (throttle_hit(f->connlog, src, ref_text[why], hsm_now_ms()))
		log_info("refused connection %s: %s", peer, ref_text[why]);
}

static void
conn_summary(void *arg, const char *src, const char *reason, uint64_t count, uint64_t since_ms)
{
	log_info("refused %llu more connection%s from %s in the last %llu s: %s",
	    (unsigned long long)count, count == 1 ? "" : "s", src,
	    (unsigned long long)((hsm_now_ms() - since_ms) / 1000), reason);
}

/*
 * A short answer sent at once with one non-blocking send (whatever the
 * socket takes), for refusals that must cost nothing more.
 */
static void
send_short(int fd, int status, const char *text)
{
	uint8_t out[HTTP_RESPONSE_OVERHEAD + 128];
	uint8_t drain[2048];
	size_t n = 0;

	/* What the client already sent would turn our close into a reset: read it once. */
	(void)recv(fd, drain, sizeof(drain), MSG_DONTWAIT);
	if (http_response(out, sizeof(out), status, "text/plain", (const uint8_t *)text,
	    strlen(text), &n) == 0)
		(void)send(fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Queue an answer for c and start writing it; the connection closes once it is out. */
static void
conn_answer_bytes(struct front *f, struct conn *c, uint8_t *out, size_t n)
{
	free(c->out);
	c->out = out;
	c->outlen = n;
	c->outoff = 0;
	c->state = CS_WRITE;
	c->write_by = hsm_now_ms() + f->lim.write_timeout_ms;
	/* The request is no longer needed. */
	f->buffered -= c->cap;
	free(c->buf);
	c->buf = NULL;
	c->have = c->cap = 0;
}

static void conn_write(struct front *f, struct conn *c);

static void
conn_answer(struct front *f, struct conn *c, int status, const char *ctype, const uint8_t *body,
    size_t len)
{
	size_t cap = len + HTTP_RESPONSE_OVERHEAD, n = 0;
	uint8_t *out = malloc(cap);

	if (out == NULL || http_response(out, cap, status, ctype, body, len, &n) != 0) {
		free(out);
		conn_close(f, c);
		return;
	}
	conn_answer_bytes(f, c, out, n);
	conn_write(f, c);
}

static void
conn_text(struct front *f, struct conn *c, int status, const char *text)
{
	conn_answer(f, c, status, "text/plain", (const uint8_t *)text, strlen(text));
}

static void
conn_write(struct front *f, struct conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ep_set(f, c, EPOLLOUT);
			return;
		}
		if (w <= 0)
			break;
		c->outoff += (size_t)w;
	}
	/* All out (or the peer went away): done. */
	shutdown(c->fd, SHUT_WR);
	conn_close(f, c);
}

/* ---- the workers ---- */

/*
 * A worker answers GET crl_path: the CRL as it is now (ca_crl_get reads
 * the ledger's revocation sequence first), or 503 when none can be had.
 */
static void
crl_answer(struct front *f, struct conn *c, uint8_t **out, size_t *n)
{
	uint8_t *der = NULL;
	size_t len = 0, cap;
	uint64_t seq = 0;
	int st;
	static const char busy[] = "no CRL available now: try again\n";

	*out = NULL;
	*n = 0;
	metric_inc(f->m_crl);
	if ((st = f->cfg->crl_get(f->cfg->crl_arg, &der, &len, &seq)) != 0) {
		metric_inc(f->m_crl_fail);
		log_warn("CRL for %s: %s", c->peer, hsm_err_msg(st));
		if ((*out = malloc(sizeof(busy) + HTTP_RESPONSE_OVERHEAD)) != NULL &&
		    http_response(*out, sizeof(busy) + HTTP_RESPONSE_OVERHEAD, 503, "text/plain",
		    (const uint8_t *)busy, sizeof(busy) - 1, n) != 0) {
			free(*out);
			*out = NULL;
		}
		return;
	}
	cap = len + HTTP_RESPONSE_OVERHEAD;
	if ((*out = malloc(cap)) != NULL &&
	    http_response(*out, cap, 200, "application/pkix-crl", der, len, n) != 0) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	free(der);
}

static void *
worker_main(void *arg)
{
	struct front *f = arg;
	sigset_t all;
	uint64_t one = 1;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&f->qmu);
	for (;;) {
		struct conn *c;
		struct cmp_answer a;
		const char *err;
		uint8_t *out = NULL;
		size_t cap, n = 0;
		int status = 200;

		while (f->qhead == NULL && !f->stopping)
			pthread_cond_wait(&f->qcv, &f->qmu);
		if (f->stopping)
			break;
		c = f->qhead;
		if ((f->qhead = c->qnext) == NULL)
			f->qtail = NULL;
		c->qnext = NULL;
		pthread_mutex_unlock(&f->qmu);

		memset(&a, 0, sizeof(a));
		if (hsm_now_ms() - c->queued > f->lim.request_timeout_ms) {
			status = 503;
			a.errtext = "server busy: try again\n";
		} else if (c->get) {
			crl_answer(f, c, &out, &n);
			c->outlen = n;
			pthread_mutex_lock(&f->qmu);
			c->out = out;
			c->qnext = f->done;
			f->done = c;
			if (write(f->done_efd, &one, sizeof(one)) < 0) {
				/* an eventfd only fails on overflow, which still reads as ready */
			}
			continue;
		} else {
			cmp_handle(f->s, c->hr.body, c->hr.body_len, c->peer, c->src, &a);
			if (a.body == NULL)
				status = a.status == 200 ? 500 : a.status;
		}
		err = a.errtext != NULL ? a.errtext : "error\n";
		cap = (a.body != NULL ? a.len : strlen(err)) + HTTP_RESPONSE_OVERHEAD;
		if ((c->out = malloc(cap)) != NULL &&
		    (a.body != NULL ? http_response(c->out, cap, 200, HTTP_CT_PKIXCMP, a.body, a.len, &n) :
		    http_response(c->out, cap, status, "text/plain", (const uint8_t *)err, strlen(err),
		    &n)) == 0)
			c->outlen = n;
		free(a.body);

		pthread_mutex_lock(&f->qmu);
		c->qnext = f->done;
		f->done = c;
		if (write(f->done_efd, &one, sizeof(one)) < 0) {
			/* an eventfd only fails on overflow, which still reads as ready */
		}
	}
	pthread_mutex_unlock(&f->qmu);
	return NULL;
}

/* The loop: answers the workers finished. */
static void
take_done(struct front *f)
{
	struct conn *list, *c;
	uint64_t v;

	if (read(f->done_efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing new */
	}
	pthread_mutex_lock(&f->qmu);
	list = f->done;
	f->done = NULL;
	pthread_mutex_unlock(&f->qmu);
	while ((c = list) != NULL) {
		uint8_t *out = c->out;

		list = c->qnext;
		c->qnext = NULL;
		c->out = NULL;
		if (out == NULL || c->outlen == 0) {
			free(out);
			conn_close(f, c);
			continue;
		}
		conn_answer_bytes(f, c, out, c->outlen);
		conn_write(f, c);
	}
}

/* ---- requests ---- */

/* A whole CMP request: route it, and hand a POST to the workers. */
static void
dispatch(struct front *f, struct conn *c)
{
	metric_inc(f->m_requests);
	if (f->cfg->crl_path != NULL && strcmp(c->hr.target, f->cfg->crl_path) == 0) {
		/* The CRL: GET only; a worker reads the ledger and answers. */
		if (strcmp(c->hr.method, "GET") != 0) {
			conn_text(f, c, 405, "use GET for the CRL\n");
			return;
		}
		c->get = 1;
	} else if (strcmp(c->hr.target, CMP_PATH) != 0) {
		conn_text(f, c, 404, "no such path (use " CMP_PATH ")\n");
		return;
	} else if (strcmp(c->hr.method, "POST") != 0) {
		conn_text(f, c, 405, "use POST\n");
		return;
	}
	ep_del(f, c);
	c->state = CS_WORK;
	c->queued = hsm_now_ms();
	pthread_mutex_lock(&f->qmu);
	if (f->qtail != NULL)
		f->qtail->qnext = c;
	else
		f->qhead = c;
	f->qtail = c;
	pthread_cond_signal(&f->qcv);
	pthread_mutex_unlock(&f->qmu);
}

/* Room for more of the request: grow the buffer within max_buffered. 0 or -1. */
static int
grow(struct front *f, struct conn *c)
{
	size_t limit = HTTP_MAX_HEAD + f->lim.max_body, cap;
	uint8_t *nb;

	cap = c->cap == 0 ? FIRST_BUF : c->cap * 2;
	if (cap > limit)
		cap = limit;
	if (cap <= c->cap)
		return -1;
	if (f->buffered + (cap - c->cap) > f->lim.max_buffered) {
		note_refusal(f, c->peer, c->src, REF_MEMORY);
		return -1;
	}
	if ((nb = realloc(c->buf, cap)) == NULL)
		return -1;
	f->buffered += cap - c->cap;
	c->buf = nb;
	c->cap = cap;
	return 0;
}

static void
conn_read(struct front *f, struct conn *c)
{
	int st;

	for (;;) {
		ssize_t got;

		if (c->have == c->cap && grow(f, c) != 0) {
			/* At the size limit it is too large; otherwise memory ran out. */
			if (c->cap >= HTTP_MAX_HEAD + f->lim.max_body)
				conn_text(f, c, 413, "request too large\n");
			else
				conn_text(f, c, 503, "server busy: try again\n");
			return;
		}
		got = recv(c->fd, c->buf + c->have, c->cap - c->have, MSG_DONTWAIT);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (got <= 0) {
			conn_close(f, c);	/* gone before the request was whole: nothing to answer */
			return;
		}
		c->have += (size_t)got;
		c->last_read = hsm_now_ms();
		if ((st = http_parse(c->buf, c->have, f->lim.max_body, &c->hr)) == 0)
			continue;
		if (st < 0) {
			char msg[64];

			snprintf(msg, sizeof(msg), "bad HTTP request (%d)\n", c->hr.status);
			log_info("refused %s: HTTP %d", c->peer, c->hr.status);
			conn_text(f, c, c->hr.status ? c->hr.status : 400, msg);
			return;
		}
		dispatch(f, c);
		return;
	}
}

/* ---- accepting ---- */

/* Accept the connection waiting on lfd and close it at once: no descriptor is left for it. */
static void
accept_and_drop(struct front *f, int lfd)
{
	int fd;

	if (f->spare_fd < 0)
		return;
	close(f->spare_fd);
	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(fd);
	f->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	metric_inc(f->m_refused[REF_FDS]);
	if (throttle_hit(f->connlog, "*", ref_text[REF_FDS], hsm_now_ms()))
		log_warn("refused a connection: %s (raise RLIMIT_NOFILE or lower "
		    "front.max_connections)", ref_text[REF_FDS]);
}

static void
on_accept(struct front *f, int lfd)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct conn *c;
		char peer[64], src[48];
		enum admit_why why = ADMIT_OK;
		int one = 1, fd;

		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE)
				accept_and_drop(f, lfd);
			return;		/* EAGAIN: all taken */
		}
		net_addr_str(&ss, sl, peer, sizeof(peer));
		admit_source_str(&ss, src, sizeof(src));
		if ((why = admit_take(f->adm, &ss)) != ADMIT_OK) {
			enum refusal r = why == ADMIT_SOURCE ? REF_SOURCE : REF_TOTAL;

			send_short(fd, 503, why == ADMIT_SOURCE ?
			    "too many connections from your address: try again\n" :
			    "too many connections: try again\n");
			close(fd);
			note_refusal(f, peer, src, r);
			continue;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			admit_release(f->adm, &ss);
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->tag.kind = TAG_CONN;
		c->fd = fd;
		c->ss = ss;
		memcpy(c->peer, peer, sizeof(c->peer));
		memcpy(c->src, src, sizeof(c->src));
		c->accepted = c->last_read = hsm_now_ms();
		c->state = CS_READ;
		if ((c->next = f->conns) != NULL)
			c->next->prev = c;
		f->conns = c;
		metric_gauge_add(f->m_conns, 1);
		ep_set(f, c, EPOLLIN | EPOLLRDHUP);
	}
}

/* ---- deadlines ---- */

static void
sweep(struct front *f, uint64_t now)
{
	struct conn *c, *next;

	for (c = f->conns; c != NULL; c = next) {
		enum refusal why = REF_N;

		next = c->next;
		if (c->state == CS_READ) {
			if (now - c->accepted >= f->lim.request_timeout_ms)
				why = REF_DEADLINE;
			else if (now - c->last_read >= f->lim.idle_timeout_ms)
				why = REF_IDLE;
		} else if (c->state == CS_WRITE && now >= c->write_by) {
			why = REF_WRITE;
		}
		if (why == REF_N)
			continue;
		note_refusal(f, c->peer, c->src, why);
		if (why != REF_WRITE)
			send_short(c->fd, 408, "request not complete in time\n");
		conn_close(f, c);
	}
}

/* ---- set-up ---- */

/* Listen on spec ("host:port"); bound receives the address actually bound (port 0 resolved). */
static int
listen_tcp(const char *spec, int *out, char *bound, size_t boundcap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char why[400];
	int fd, st;

	*out = -1;
	if ((st = net_parse_addr(spec, 1, &ss, &sl)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(st));
		return hsm_err(HSM_ECONFIG, "listen %s", why);
	}
	if ((st = net_listen(&ss, sl, 0, 1, 4096, &fd)) != 0)
		return st;
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		st = hsm_err(HSM_EIO, "cannot listen on %s: %s", spec, strerror(errno));
		close(fd);
		return st;
	}
	net_addr_str(&ss, sl, bound, boundcap);
	*out = fd;
	return 0;
}

/*
 * Enough file descriptors for max_conns: raise the soft RLIMIT_NOFILE up
 * to the hard one; past that, fewer connections (logged).
 */
static void
fd_budget(struct cmp_limits *lim)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)lim->max_conns + METRICS_SRV_CONNS + FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		rl.rlim_cur = rl.rlim_max;
		if (rl.rlim_max > (rlim_t)(METRICS_SRV_CONNS + FD_RESERVE + 1))
			lim->max_conns = (unsigned)(rl.rlim_max - METRICS_SRV_CONNS - FD_RESERVE);
		else
			lim->max_conns = 1;
		if (lim->max_conns_per_source > lim->max_conns)
			lim->max_conns_per_source = lim->max_conns;
		log_warn("RLIMIT_NOFILE allows %llu descriptors: front.max_connections lowered to %u",
		    (unsigned long long)rl.rlim_max, lim->max_conns);
	} else {
		rl.rlim_cur = want;
	}
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		log_warn("cannot raise RLIMIT_NOFILE: %s", strerror(errno));
}

static int
metrics_setup(struct front *f)
{
	struct metrics *m = f->cfg->metrics;
	int st = 0;

	for (int i = 0; i < REF_N && st == 0; i++)
		st = metrics_get(m, METRIC_COUNTER, "hsmesh_ca_connections_refused_total",
		    "Connections refused or ended early by the CA front, by limit",
		    (const char *const[]){ "reason", ref_label[i], NULL }, &f->m_refused[i]);
	if (st == 0)
		st = metrics_get(m, METRIC_GAUGE, "hsmesh_ca_connections",
		    "Connections open at the CA front", NULL, &f->m_conns);
	if (st == 0)
		st = metrics_get(m, METRIC_COUNTER, "hsmesh_ca_http_requests_total",
		    "Whole HTTP requests read by the CA front", NULL, &f->m_requests);
	if (st == 0)
		st = metrics_get(m, METRIC_COUNTER, "hsmesh_ca_crl_requests_total",
		    "GET requests for the CRL answered by the CA front", NULL, &f->m_crl);
	if (st == 0)
		st = metrics_get(m, METRIC_COUNTER, "hsmesh_ca_crl_unavailable_total",
		    "CRL requests answered 503: no current CRL could be had", NULL, &f->m_crl_fail);
	if (st == 0)
		cmp_refusal_metrics(f->s);
	return m == NULL ? 0 : st;
}

static void
front_stop(struct front *f)
{
	pthread_mutex_lock(&f->qmu);
	f->stopping = 1;
	pthread_cond_broadcast(&f->qcv);
	pthread_mutex_unlock(&f->qmu);
	for (unsigned i = 0; i < f->nth; i++)
		pthread_join(f->th[i], NULL);
	/* Requests still queued or answered: their connections just close. */
	while (f->conns != NULL)
		conn_close(f, f->conns);
}

static int
loop(struct front *f)
{
	struct epoll_event evs[128];

	for (;;) {
		uint64_t now = hsm_now_ms();
		int64_t tl = throttle_next_ms(f->connlog, now), tr = throttle_next_ms(f->s->refusals, now);
		int timeout = f->conns != NULL || f->msrv != NULL ? SWEEP_MS : -1, n;

		if (tl >= 0 && (timeout < 0 || tl < timeout))
			timeout = (int)tl;
		if (tr >= 0 && (timeout < 0 || tr < timeout))
			timeout = (int)tr;
		n = epoll_wait(f->ep, evs, 128, timeout);
		if (n < 0 && errno != EINTR)
			return hsm_err(HSM_EIO, "epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			struct tag *t = evs[i].data.ptr;
			struct conn *c;

			switch (t->kind) {
			case TAG_CMP_LISTEN:
				on_accept(f, f->lfd);
				break;
			case TAG_METRICS_LISTEN:
				metrics_srv_run(f->msrv, hsm_now_ms());
				break;
			case TAG_DONE:
				take_done(f);
				break;
			case TAG_SIGNAL: {
				struct signalfd_siginfo si;

				if (read(f->sfd, &si, sizeof(si)) == sizeof(si)) {
					log_info("stopping on signal %d", (int)si.ssi_signo);
					return 0;
				}
				break;
			}
			case TAG_CONN:
				c = (struct conn *)t;
				if (c->state == CS_READ)
					conn_read(f, c);
				else if (c->state == CS_WRITE)
					conn_write(f, c);
				break;
			}
		}
		now = hsm_now_ms();
		if (now >= f->next_sweep) {
			sweep(f, now);
			if (f->msrv != NULL)
				metrics_srv_expire(f->msrv, now);
			f->next_sweep = now + SWEEP_MS;
		}
		throttle_flush(f->connlog, now, 0, conn_summary, NULL);
		cmp_refusals_flush(f->s, 0);
	}
}

int
cmp_serve(const struct cmp_server_cfg *cfg)
{
	struct server s;
	struct front f;
	char bound[96], mbound[96], line[300];
	sigset_t sigs;
	int st, mfd = -1;

	memset(&s, 0, sizeof(s));
	memset(&f, 0, sizeof(f));
	f.ep = f.lfd = f.done_efd = f.sfd = f.spare_fd = -1;
	s.cfg = cfg;
	f.s = &s;
	f.cfg = cfg;
	f.lim = cfg->lim;
	ev_nonce_key(cfg->token_key, s.nonce_key);
	pthread_mutex_init(&s.mu, NULL);
	pthread_mutex_init(&f.qmu, NULL);
	pthread_cond_init(&f.qcv, NULL);
	fd_budget(&f.lim);
	f.t_lfd.kind = TAG_CMP_LISTEN;
	f.t_mfd.kind = TAG_METRICS_LISTEN;
	f.t_done.kind = TAG_DONE;
	f.t_sig.kind = TAG_SIGNAL;

	if ((st = admit_new(f.lim.max_conns, f.lim.max_conns_per_source, &f.adm)) != 0 ||
	    (st = throttle_new(THROTTLE_KEYS, THROTTLE_MS, &f.connlog)) != 0 ||
	    (st = throttle_new(THROTTLE_KEYS, THROTTLE_MS, &s.refusals)) != 0 ||
	    (st = metrics_setup(&f)) != 0 ||
	    (st = listen_tcp(cfg->listen, &f.lfd, bound, sizeof(bound))) != 0 ||
	    (cfg->metrics_listen != NULL &&
	    (st = listen_tcp(cfg->metrics_listen, &mfd, mbound, sizeof(mbound))) != 0))
		goto out;
	if (mfd >= 0) {
		if ((st = metrics_srv_new(cfg->metrics, mfd, &f.msrv)) != 0)
			goto out;
		mfd = -1;	/* the server's now */
	}
	if (cfg->on_bound != NULL)
		cfg->on_bound(cfg->bound_arg, (unsigned)strtoul(strrchr(bound, ':') + 1, NULL, 10));
	if (cfg->port_file != NULL) {
		const char *port = strrchr(bound, ':') + 1;

		if ((st = hsm_write_file_atomic(cfg->port_file, port, strlen(port), 0644)) != 0)
			goto out;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((f.ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (f.done_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    (f.sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    (f.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		st = hsm_err(HSM_EIO, "event set-up: %s", strerror(errno));
		goto out;
	}
	{
		struct epoll_event e1 = { .events = EPOLLIN, .data.ptr = &f.t_lfd };
		struct epoll_event e2 = { .events = EPOLLIN, .data.ptr = &f.t_mfd };
		int msfd = f.msrv != NULL ? metrics_srv_fd(f.msrv) : -1;
		struct epoll_event e3 = { .events = EPOLLIN, .data.ptr = &f.t_done };
		struct epoll_event e4 = { .events = EPOLLIN, .data.ptr = &f.t_sig };

		if (epoll_ctl(f.ep, EPOLL_CTL_ADD, f.lfd, &e1) != 0 ||
		    (msfd >= 0 && epoll_ctl(f.ep, EPOLL_CTL_ADD, msfd, &e2) != 0) ||
		    epoll_ctl(f.ep, EPOLL_CTL_ADD, f.done_efd, &e3) != 0 ||
		    epoll_ctl(f.ep, EPOLL_CTL_ADD, f.sfd, &e4) != 0) {
			st = hsm_err(HSM_EIO, "epoll_ctl: %s", strerror(errno));
			goto out;
		}
	}
	for (unsigned i = 0; i < f.lim.workers && i < 64; i++) {
		if (pthread_create(&f.th[i], NULL, worker_main, &f) != 0)
			break;
		f.nth = i + 1;
	}
	if (f.nth == 0) {
		st = hsm_err(HSM_EIO, "cannot start worker threads");
		goto out;
	}
	log_info("serving CMP at http://%s%s with %u workers; at most %u connections, %u per "
	    "source; requests whole within %llu s", bound, CMP_PATH, f.nth, f.lim.max_conns,
	    f.lim.max_conns_per_source, (unsigned long long)(f.lim.request_timeout_ms / 1000));
	if (cfg->crl_path != NULL)
		log_info("serving the CRL at http://%s%s", bound, cfg->crl_path);
	if (f.msrv != NULL)
		log_info("metrics at http://%s/metrics", mbound);
	for (size_t i = 0; attest_describe(cfg->attest, i, line, sizeof(line)); i++)
		log_info("attestation: %s", line);
	audit_event(cfg->audit, "start", "listen", bound, NULL);
	st = loop(&f);
	front_stop(&f);
	cmp_refusals_flush(&s, 1);
	throttle_flush(f.connlog, hsm_now_ms(), 1, conn_summary, NULL);
	audit_event(cfg->audit, "stop", NULL);
 out:
	if (f.nth > 0 && !f.stopping)
		front_stop(&f);
	if (f.lfd >= 0)
		close(f.lfd);
	if (mfd >= 0)
		close(mfd);
	metrics_srv_free(f.msrv);
	if (f.ep >= 0)
		close(f.ep);
	if (f.done_efd >= 0)
		close(f.done_efd);
	if (f.sfd >= 0)
		close(f.sfd);
	if (f.spare_fd >= 0)
		close(f.spare_fd);
	txn_free_all(&s);
	admit_free(f.adm);
	throttle_free(f.connlog);
	throttle_free(s.refusals);
	pthread_cond_destroy(&f.qcv);
	pthread_mutex_destroy(&f.qmu);
	pthread_mutex_destroy(&s.mu);
	return st;
}
