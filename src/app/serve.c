/*
 * serve.c - `hsmesh app serve`: a plaintext HTTP/1.1 server, the workload
 * behind an inbound sidecar (app.h). One epoll loop, non-blocking sockets,
 * keep-alive and pipelining, at most APP_MAX_CONNS connections; a
 * connection is answered one request at a time and bounded in what it may
 * make the server buffer.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "h2c.h"
#include "err.h"
#include "http.h"
#include "netaddr.h"
#include "util.h"

#define APP_MAX_CONNS	1024
#define APP_MAX_BODY	(1024 * 1024)		/* POST /echo */
#define APP_MAX_BYTES	(1024 * 1024 * 1024)	/* GET /bytes?n= (bulk benchmarks) */
#define APP_MAX_SLOW_MS	60000			/* GET /slow?ms= */
#define APP_IDLE_MS	60000
#define APP_LINGER_MS	2000	/* after the last response, to let the client read it */
#define APP_MAX_NAME	64
#define APP_IN_MIN	16384
#define APP_IN_MAX	(HTTP_MAX_HEAD + APP_MAX_BODY)
#define APP_KEEP_BUF	(64 * 1024)	/* buffers larger than this are freed when empty */
#define ACCEPT_BURST	64
#define MAX_EVENTS	64

struct conn {
	int fd;
	int slot;		/* index in app.conns */
	uint32_t events;	/* the epoll interest now */
	uint8_t *in;		/* received, not yet answered */
	size_t in_len, in_cap;
	uint8_t *out;		/* response bytes not yet sent */
	size_t out_off, out_len, out_cap;
	uint64_t stream;	/* 'x' bytes to send after out (GET /bytes) */
	uint64_t deadline;	/* idle, linger or /slow deadline (hsm_now_ms) */
	int minor;		/* HTTP version of the request being answered */
	int slow;		/* answer GET /slow when the deadline comes */
	int close_after;	/* close once the response is sent */
	int lingering;		/* writing shut down; reading until EOF or the deadline */
	unsigned requests;
	struct app_h2c *h2;	/* the client spoke h2c (prior knowledge): h2c.c serves it */
};

struct app {
	const char *name;
	int epfd, lfd, sigfd;
	int spare;		/* a descriptor given up to accept-and-close when out of them */
	int idle_ms;
	unsigned max_requests;	/* per connection, 0: no limit */
	int echo;		/* --echo: any other path answers with the path echo */
	uint64_t now;		/* loop time */
	uint64_t next_sweep;	/* the earliest deadline, or earlier; UINT64_MAX: none */
	int nconns;
	struct conn *conns[APP_MAX_CONNS];
};

/* The body of GET /bytes, sent again and again. */
static uint8_t xs[128 * 1024];

static void
set_deadline(struct app *a, struct conn *c, uint64_t ms)
{
	c->deadline = a->now + ms;
	if (c->deadline < a->next_sweep)
		a->next_sweep = c->deadline;
}

static void
conn_want(struct app *a, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events != events && epoll_ctl(a->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = events;
}

static void
conn_free(struct app *a, struct conn *c)
{
	app_h2c_free(c->h2);
	close(c->fd);
	free(c->in);
	free(c->out);
	a->nconns--;
	a->conns[c->slot] = a->conns[a->nconns];
	a->conns[c->slot]->slot = c->slot;
	a->conns[a->nconns] = NULL;
	free(c);
}

static int
conn_new(struct app *a, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct conn *c;
	int one = 1;

	if (a->nconns >= APP_MAX_CONNS || (c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	c->fd = fd;
	c->events = EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		free(c);
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->slot = a->nconns;
	a->conns[a->nconns++] = c;
	set_deadline(a, c, (uint64_t)a->idle_ms);
	return 0;
}

/*
 * Queue a response: the head, len bytes of body, then stream bytes of 'x'.
 * The connection's close_after and minor decide the Connection field.
 * 0, or -1 when out of memory (the connection is then dropped).
 */
static int
respond(struct conn *c, int status, const char *ctype, const void *body, size_t len,
    uint64_t stream, const char *allow)
{
	const char *reason = http_reason(status);
	char head[512];
	size_t need;
	uint8_t *nb;
	int n;

	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %" PRIu64 "\r\n%s%s%s%s\r\n", status, reason ? reason : "Unknown",
	    ctype, (uint64_t)len + stream, allow ? "Allow: " : "", allow ? allow : "",
	    allow ? "\r\n" : "", c->close_after ? "Connection: close\r\n" :
	    c->minor == 0 ? "Connection: keep-alive\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	need = c->out_len + (size_t)n + len;
	if (need > c->out_cap) {
		if ((nb = realloc(c->out, need)) == NULL)
			return -1;
		c->out = nb;
		c->out_cap = need;
	}
	memcpy(c->out + c->out_len, head, (size_t)n);
	if (len > 0)
		memcpy(c->out + c->out_len + n, body, len);
	c->out_len = need;
	c->stream = stream;
	return 0;
}

/* An error response, its body "Reason[: why]\n". */
static int
respond_error(struct conn *c, int status, const char *why, const char *allow)
{
	const char *reason = http_reason(status);
	char body[256];
	int n;

	n = snprintf(body, sizeof(body), "%s%s%s\n", reason ? reason : "Error",
	    why ? ": " : "", why ? why : "");
	if (n < 0 || (size_t)n >= sizeof(body))
		return -1;
	return respond(c, status, "text/plain", body, (size_t)n, 0, allow);
}

/*
 * The number in "name=N" in the query of the request line at raw, which
 * http_parse accepted ("METHOD SP target SP HTTP/1.x CRLF"; it keeps the
 * path only): at most max, or -1 when absent or not 1 to 10 digits within
 * [0, max].
 */
static int64_t
query_num(const uint8_t *raw, size_t len, const char *name, int64_t max)
{
	const uint8_t *t, *end, *q, *amp, *d;
	size_t nl = strlen(name);
	int64_t v = 0;

	if ((t = memchr(raw, ' ', len)) == NULL)
		return -1;
	t++;
	if ((end = memchr(t, ' ', len - (size_t)(t - raw))) == NULL ||
	    (q = memchr(t, '?', (size_t)(end - t))) == NULL)
		return -1;
	for (q++; q < end; q = amp + 1) {
		if ((amp = memchr(q, '&', (size_t)(end - q))) == NULL)
			amp = end;
		if ((size_t)(amp - q) <= nl || memcmp(q, name, nl) != 0 || q[nl] != '=')
			continue;
		d = q + nl + 1;
		if (amp - d < 1 || amp - d > 10)
			return -1;
		for (; d < amp; d++) {
			if (*d < '0' || *d > '9')
				return -1;
			v = v * 10 + (*d - '0');
		}
		return v <= max ? v : -1;
	}
	return -1;
}

/* 1 when the header line at l (n bytes) is an x-forwarded-client-cert field, in any spelling. */
static int
is_xfcc_line(const uint8_t *l, size_t n)
{
	static const char name[] = "x-forwarded-client-cert";
	size_t i, k = sizeof(name) - 1;

	if (n <= k || l[k] != ':')
		return 0;
	for (i = 0; i < k; i++)
		if ((l[i] == '_' ? '-' : tolower(l[i])) != name[i])
			return 0;
	return 1;
}

/*
 * --echo: the path echo (app_echo) of a request the other routes do not
 * serve, with the x-forwarded-client-cert values of its head (raw: the
 * request's bytes, which http_parse accepted).
 */
static int
echo_h1(struct app *a, struct conn *c, const struct http_req *rq, const uint8_t *raw,
    size_t rawlen)
{
	char vals[8][1024], body[16384];
	const char *v[8];
	const uint8_t *l = raw, *e, *end = raw + rawlen, *val;
	size_t n = 0, len, vl;
	int status;

	while (l < end && (e = memchr(l, '\n', (size_t)(end - l))) != NULL && e - l > 1 && n < 8) {
		if (is_xfcc_line(l, (size_t)(e - l - 1))) {
			for (val = l + 24; val < e && (*val == ' ' || *val == '\t'); val++)
				;
			vl = (size_t)(e - 1 - val);
			snprintf(vals[n], sizeof(vals[n]), "%.*s", (int)vl, (const char *)val);
			v[n] = vals[n];
			n++;
		}
		l = e + 1;
	}
	status = app_echo(body, sizeof(body), a->name, rq->method, rq->target, v, n, &len);
	return respond(c, status, "text/plain", body, len, 0, NULL);
}

/* Answer one parsed request (raw: its bytes, for the query). 0 or -1. */
static int
route(struct app *a, struct conn *c, const struct http_req *rq, const uint8_t *raw, size_t rawlen)
{
	const char *t = rq->target;
	int get = strcmp(rq->method, "GET") == 0;
	char body[APP_MAX_NAME + 32];
	int64_t v;

	if (strcmp(t, "/") == 0 || strcmp(t, "/whoami") == 0) {
		if (!get)
			return respond_error(c, 405, NULL, "GET");
		snprintf(body, sizeof(body), "%s%s\n", t[1] == '\0' ? "hello from " : "", a->name);
		return respond(c, 200, "text/plain", body, strlen(body), 0, NULL);
	}
	if (strcmp(t, "/echo") == 0) {
		if (strcmp(rq->method, "POST") != 0)
			return respond_error(c, 405, NULL, "POST");
		return respond(c, 200, "application/octet-stream", rq->body, rq->body_len, 0, NULL);
	}
	if (strcmp(t, "/bytes") == 0) {
		if (!get)
			return respond_error(c, 405, NULL, "GET");
		if ((v = query_num(raw, rawlen, "n", APP_MAX_BYTES)) < 0)
			return respond_error(c, 400, "want ?n=0..67108864", NULL);
		return respond(c, 200, "application/octet-stream", NULL, 0, (uint64_t)v, NULL);
	}
	if (strcmp(t, "/slow") == 0) {
		if (!get)
			return respond_error(c, 405, NULL, "GET");
		if ((v = query_num(raw, rawlen, "ms", APP_MAX_SLOW_MS)) < 0)
			return respond_error(c, 400, "want ?ms=0..60000", NULL);
		/* Answered by sweep() when the deadline comes. */
		c->slow = 1;
		set_deadline(a, c, (uint64_t)v);
		return 0;
	}
	if (a->echo)
		return echo_h1(a, c, rq, raw, rawlen);
	return respond_error(c, 404, NULL, NULL);
}

/* An emptied buffer that grew for one large message is given back. */
static void
shrink(uint8_t **buf, size_t *cap)
{
	if (*cap > APP_KEEP_BUF) {
		free(*buf);
		*buf = NULL;
		*cap = 0;
	}
}

/*
 * The first bytes of a connection: the h2c preface hands it to
 * h2c.c. 1: HTTP/1.1 (parse on), 0: a prefix of the preface so far,
 * 2: now HTTP/2 (conn_run serves it), -1: drop.
 */
static int
h2c_start(struct app *a, struct conn *c)
{
	struct app_h2c_opts o = { .name = a->name, .echo = a->echo };
	size_t n = c->in_len < APP_H2C_PREFACE_LEN ? c->in_len : APP_H2C_PREFACE_LEN;

	if (memcmp(c->in, APP_H2C_PREFACE, n) != 0)
		return 1;
	if (n < APP_H2C_PREFACE_LEN)
		return 0;
	if (app_h2c_new(&o, &c->h2) != 0 || app_h2c_feed(c->h2, c->in, c->in_len) != 0)
		return -1;
	c->in_len = 0;
	return 2;
}

/* An h2c connection: send, read and feed until the socket says wait. c may be freed. */
static void
h2c_run(struct app *a, struct conn *c)
{
	uint8_t buf[16384];
	ssize_t r;
	int s;

	for (;;) {
		if ((s = app_h2c_send(c->h2, c->fd)) < 0 || !app_h2c_alive(c->h2))
			break;
		do
			r = recv(c->fd, buf, sizeof(buf), 0);
		while (r < 0 && errno == EINTR);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			break;
		if (r < 0) {
			conn_want(a, c, s == 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
			return;
		}
		set_deadline(a, c, (uint64_t)a->idle_ms);
		if (app_h2c_feed(c->h2, buf, (size_t)r) != 0)
			break;
	}
	conn_free(a, c);
}

/* Parse and answer the next buffered request: 1 answered, 0 need more bytes, -1 drop. */
static int
conn_request(struct app *a, struct conn *c)
{
	struct http_req rq;
	int n;

	if (c->requests == 0 && c->in_len > 0 && (n = h2c_start(a, c)) != 1)
		return n;
	if (c->in_len == 0 || (n = http_parse(c->in, c->in_len, APP_MAX_BODY, &rq)) == 0)
		return 0;
	if (n < 0) {
		/* Malformed: answer, then close; what follows is not read. */
		c->close_after = 1;
		c->minor = 1;
		c->in_len = 0;
		return respond_error(c, rq.status, NULL, NULL) == 0 ? 1 : -1;
	}
	c->requests++;
	c->minor = rq.minor;
	if (rq.conn_close || (a->max_requests > 0 && c->requests >= a->max_requests))
		c->close_after = 1;
	if (route(a, c, &rq, c->in, (size_t)n) != 0)
		return -1;
	memmove(c->in, c->in + n, c->in_len - (size_t)n);
	c->in_len -= (size_t)n;
	if (c->in_len == 0)
		shrink(&c->in, &c->in_cap);
	return 1;
}

/* Send what is queued: 1 all sent, 0 would block, -1 drop. */
static int
conn_flush(struct app *a, struct conn *c)
{
	ssize_t w;

	while (c->out_off < c->out_len || c->stream > 0) {
		if (c->out_off < c->out_len)
			/* The head and a streamed body leave in one segment (MSG_MORE). */
			w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			    MSG_NOSIGNAL | (c->stream > 0 ? MSG_MORE : 0));
		else
			w = send(c->fd, xs, c->stream < sizeof(xs) ? (size_t)c->stream : sizeof(xs),
			    MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		set_deadline(a, c, (uint64_t)a->idle_ms);
		if (c->out_off < c->out_len)
			c->out_off += (size_t)w;
		else
			c->stream -= (uint64_t)w;
		if (c->out_off == c->out_len) {
			c->out_off = c->out_len = 0;
			shrink(&c->out, &c->out_cap);
		}
	}
	return 1;
}

/* Receive into the request buffer: 1 got bytes, 0 would block, -1 EOF or drop. */
static int
conn_read(struct app *a, struct conn *c)
{
	size_t cap;
	uint8_t *nb;
	ssize_t r;

	if (c->in_len == c->in_cap) {
		/* http_parse refuses a request before it outgrows APP_IN_MAX. */
		if (c->in_cap >= APP_IN_MAX)
			return -1;
		cap = c->in_cap == 0 ? APP_IN_MIN : c->in_cap * 2;
		if (cap > APP_IN_MAX)
			cap = APP_IN_MAX;
		if ((nb = realloc(c->in, cap)) == NULL)
			return -1;
		c->in = nb;
		c->in_cap = cap;
	}
	do
		r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	if (r == 0)
		return -1;
	c->in_len += (size_t)r;
	set_deadline(a, c, (uint64_t)a->idle_ms);
	return 1;
}

/* After the last response: discard what the client still sends. 0 would block, -1 done. */
static int
conn_drain(struct conn *c)
{
	uint8_t buf[4096];
	ssize_t r;

	while ((r = recv(c->fd, buf, sizeof(buf), 0)) > 0 || (r < 0 && errno == EINTR))
		;
	return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
}

/*
 * Move a connection as far as it goes without blocking: send, then answer
 * the next buffered request, then read. One response at a time, so a
 * pipelining client gets its answers in order and cannot make the server
 * buffer more than one request and one response. c may be freed.
 */
static void
conn_run(struct app *a, struct conn *c)
{
	int r;

	for (;;) {
		if (c->h2 != NULL) {
			h2c_run(a, c);
			return;
		}
		if (c->slow) {
			/* Only whether the client goes meanwhile (a FIN, as nginx reads it). */
			conn_want(a, c, EPOLLRDHUP);
			return;
		}
		if ((r = conn_flush(a, c)) <= 0) {
			if (r < 0)
				break;
			conn_want(a, c, EPOLLOUT);
			return;
		}
		if (c->lingering) {
			if (conn_drain(c) < 0)
				break;
			conn_want(a, c, EPOLLIN);
			return;
		}
		if (c->close_after) {
			/* Half-close and read on: closing with unread bytes would reset the response. */
			shutdown(c->fd, SHUT_WR);
			c->lingering = 1;
			set_deadline(a, c, APP_LINGER_MS);
			continue;
		}
		if ((r = conn_request(a, c)) > 0)
			continue;
		if (r < 0 || (r = conn_read(a, c)) < 0)
			break;
		if (r == 0) {
			conn_want(a, c, EPOLLIN);
			return;
		}
	}
	conn_free(a, c);
}

/* A deadline passed: answer /slow, or close an idle or lingering connection. */
static void
conn_expire(struct app *a, struct conn *c)
{
	if (!c->slow) {
		conn_free(a, c);
		return;
	}
	c->slow = 0;
	set_deadline(a, c, (uint64_t)a->idle_ms);
	if (respond(c, 200, "text/plain", "slow\n", 5, 0, NULL) != 0)
		conn_free(a, c);
	else
		conn_run(a, c);
}

static void
sweep(struct app *a)
{
	uint64_t next = UINT64_MAX;
	struct conn *c;
	int i = 0;

	a->next_sweep = UINT64_MAX;
	while (i < a->nconns) {
		c = a->conns[i];
		if (c->deadline <= a->now) {
			conn_expire(a, c);
			/* Freed: slot i now holds the last connection, look at it. */
			if (i >= a->nconns || a->conns[i] != c)
				continue;
		}
		if (c->deadline < next)
			next = c->deadline;
		i++;
	}
	if (next < a->next_sweep)
		a->next_sweep = next;
}

static void
accept_all(struct app *a)
{
	int fd, i;

	for (i = 0; i < ACCEPT_BURST; i++) {
		fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (fd < 0 && (errno == EMFILE || errno == ENFILE) && a->spare >= 0) {
			/* Out of descriptors: take the connection off the queue and close it. */
			close(a->spare);
			if ((fd = accept(a->lfd, NULL, NULL)) >= 0)
				close(fd);
			a->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
			continue;
		}
		if (fd < 0)
			return;
		/* Beyond APP_MAX_CONNS: accepted and closed at once. */
		if (conn_new(a, fd) != 0)
			close(fd);
	}
}

/* Room for APP_MAX_CONNS descriptors, when the hard limit allows it. */
static void
raise_nofile(void)
{
	struct rlimit rl;
	rlim_t want = APP_MAX_CONNS + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int
serve_loop(struct app *a)
{
	struct epoll_event ev[MAX_EVENTS];
	struct signalfd_siginfo si;
	int n, i, timeout;

	for (;;) {
		a->now = hsm_now_ms();
		timeout = -1;
		if (a->next_sweep != UINT64_MAX)
			timeout = a->next_sweep <= a->now ? 0 : a->next_sweep - a->now > INT_MAX ?
			    INT_MAX : (int)(a->next_sweep - a->now);
		if ((n = epoll_wait(a->epfd, ev, MAX_EVENTS, timeout)) < 0) {
			if (errno == EINTR)
				continue;
			return hsm_err(HSM_EIO, "epoll_wait: %s", strerror(errno));
		}
		a->now = hsm_now_ms();
		for (i = 0; i < n; i++) {
			if (ev[i].data.ptr == &a->sigfd) {
				if (read(a->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					return 0;
			} else if (ev[i].data.ptr == &a->lfd) {
				accept_all(a);
			} else {
				struct conn *c = ev[i].data.ptr;

				/*
				 * Gone while waiting for /slow: nothing to wait for, and
				 * its slot (of APP_MAX_CONNS) is free at once, not at the
				 * deadline. A client that only half-closed is taken as gone.
				 */
				if (c->slow && (ev[i].events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
					conn_free(a, c);
				else
					conn_run(a, c);
			}
		}
		if (a->now >= a->next_sweep)
			sweep(a);
	}
}

static void
serve_usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh app serve --listen HOST:PORT --name NAME [--port-file FILE]\n"
	    "                        [--idle-timeout MS] [--max-requests N] [--echo]\n"
	    "\n"
	    "A plaintext HTTP/1.1 server (keep-alive, pipelining) for the workload side of\n"
	    "a sidecar, which also speaks HTTP/2 to a client that starts with the h2c preface\n"
	    "(prior knowledge; there /slow is not served):\n"
	    "  GET  /              200 'hello from NAME'\n"
	    "  GET  /whoami        200 'NAME'\n"
	    "  POST /echo          200 with the request body (at most 1 MiB)\n"
	    "  GET  /bytes?n=N     200 with N bytes of 'x' (N at most 1 GiB), streamed\n"
	    "  GET  /slow?ms=N     200 'slow' after N ms (at most 60000), other connections go on;\n"
	    "                      a client that closes (or half-closes) meanwhile gets nothing\n"
	    "Any other path is 404, another method 405, a malformed request 400 (then close).\n"
	    "  --echo              any other path answers 201 (POST) or 200 with the path echo:\n"
	    "                      'METHOD PATH' and each x-forwarded-client-cert it carried,\n"
	    "                      one line each, and logs 'NAME: METHOD PATH from CALLER' (the\n"
	    "                      caller's SPIFFE ID from the header, as the sidecar sets it)\n"
	    "  --listen HOST:PORT  address to listen on (port 0 picks a free one)\n"
	    "  --name NAME         the name in the answers (letters, digits, '.', '_', '-')\n"
	    "  --port-file FILE    write the bound port to FILE once listening\n"
	    "  --idle-timeout MS   close connections idle this long (default 60000)\n"
	    "  --max-requests N    close a connection after N responses (default: no limit)\n"
	    "SIGTERM or SIGINT stops it with status 0.\n");
}

static int
valid_name(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= APP_MAX_NAME && strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

int
app_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "name", required_argument, NULL, 'n' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "idle-timeout", required_argument, NULL, 'i' },
		{ "max-requests", required_argument, NULL, 'm' },
		{ "echo", no_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_spec = NULL, *port_file = NULL;
	struct epoll_event ev = { .events = EPOLLIN };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct app *a = NULL;
	char addr[128], port[16];
	sigset_t sigs;
	long idle = APP_IDLE_MS, maxreq = 0;
	int ch, r, status = 1;

	if ((a = calloc(1, sizeof(*a))) == NULL) {
		fprintf(stderr, "hsmesh app serve: out of memory\n");
		return 1;
	}
	a->epfd = a->lfd = a->sigfd = a->spare = -1;
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': listen_spec = optarg; break;
		case 'n': a->name = optarg; break;
		case 'p': port_file = optarg; break;
		case 'i':
			if ((status = app_num_arg("serve", "--idle-timeout", optarg, 1, APP_MAX_MS,
			    &idle)) != 0)
				goto out;
			break;
		case 'm':
			if ((status = app_num_arg("serve", "--max-requests", optarg, 1, INT_MAX,
			    &maxreq)) != 0)
				goto out;
			break;
		case 'e':
			a->echo = 1;
			break;
		case 'h':
			serve_usage(stdout);
			status = 0;
			goto out;
		default:
			status = app_bad_option("serve", ch, argv);
			goto out;
		}
	}
	status = 2;
	if (optind != argc) {
		fprintf(stderr, "hsmesh app serve: unexpected argument '%s'\n", argv[optind]);
		goto out;
	}
	if (listen_spec == NULL || a->name == NULL) {
		fprintf(stderr, "hsmesh app serve: --listen and --name are required\n");
		goto out;
	}
	if (!valid_name(a->name)) {
		fprintf(stderr, "hsmesh app serve: --name wants 1 to %d letters, digits, '.', '_' "
		    "or '-'\n", APP_MAX_NAME);
		goto out;
	}
	a->idle_ms = (int)idle;
	a->max_requests = (unsigned)maxreq;
	a->next_sweep = UINT64_MAX;
	status = 1;
	memset(xs, 'x', sizeof(xs));
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	/*
	 * SIGTERM and SIGINT are read from a signalfd, so blocked; and not
	 * ignored, which a shell's background job inherits for SIGINT.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) != 0 || signal(SIGTERM, SIG_DFL) == SIG_ERR ||
	    signal(SIGINT, SIG_DFL) == SIG_ERR ||
	    (a->sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    (a->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		r = hsm_err(HSM_EIO, "cannot set up the event loop: %s", strerror(errno));
		goto fail;
	}
	if ((r = net_parse_addr(listen_spec, 1, &ss, &sl)) != 0 ||
	    (r = net_listen(&ss, sl, 0, 1, SOMAXCONN, &a->lfd)) != 0)
		goto fail;
	/* The listener and the signals are told from connections by their data.ptr. */
	for (int *fd = &a->lfd; fd != NULL; fd = fd == &a->lfd ? &a->sigfd : NULL) {
		ev.data.ptr = fd;
		if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, *fd, &ev) != 0) {
			r = hsm_err(HSM_EIO, "epoll_ctl: %s", strerror(errno));
			goto fail;
		}
	}
	a->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);

	sl = sizeof(ss);
	if (getsockname(a->lfd, (struct sockaddr *)&ss, &sl) != 0) {
		r = hsm_err(HSM_EIO, "getsockname: %s", strerror(errno));
		goto fail;
	}
	snprintf(port, sizeof(port), "%d\n", net_local_port(a->lfd));
	if (port_file != NULL &&
	    (r = hsm_write_file_atomic(port_file, port, strlen(port), 0644)) != 0)
		goto fail;
	fprintf(stderr, "hsmesh app: %s listening on %s\n", a->name,
	    net_addr_str(&ss, sl, addr, sizeof(addr)));
	if ((r = serve_loop(a)) != 0)
		goto fail;
	status = 0;
	goto out;
fail:
	fprintf(stderr, "hsmesh app serve: %s\n", hsm_err_msg(r));
out:
	while (a->nconns > 0)
		conn_free(a, a->conns[0]);
	if (a->spare >= 0)
		close(a->spare);
	if (a->epfd >= 0)
		close(a->epfd);
	if (a->sigfd >= 0)
		close(a->sigfd);
	if (a->lfd >= 0)
		close(a->lfd);
	free(a);
	return status;
}

