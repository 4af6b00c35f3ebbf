/*
 * h2c.c - `hsmesh app serve` over HTTP/2 with prior knowledge (see
 * h2c.h), on lib/h2.c. A stream's answer is chosen from its head;
 * bodies stream within the stream's send queue (the room callback says
 * when to write more), and an echoed request body is taken from the
 * client only as fast as it goes back, so a client cannot make the app
 * buffer more than a window.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "h2c.h"
#include "err.h"
#include "h2.h"
#include "hmsg.h"
#include "http.h"
#include "xfcc.h"

#define BYTES_MAX	(1024ull * 1024 * 1024)
#define ECHO_MAX	16384	/* the path echo's body */

static uint8_t xs[16384];	/* the body of /bytes, sent again and again */

enum { K_FIXED = 0, K_ECHO, K_BYTES, K_DRAIN };

struct sstate {
	struct sstate *prev, *next;	/* every stream's, freed with the connection */
	int kind;
	uint64_t left;		/* K_BYTES: bytes still to send */
	int in_end;		/* the request ended */
};

struct app_h2c {
	struct h2 *h;
	struct app_h2c_opts o;
	struct sstate *all;
	int failed;
};

/* A response head: status, content type, length (-1: none), end. 0 or -1. */
static int
head(struct app_h2c *a, struct h2_stream *st, int status, const char *ctype, int64_t clen,
    int end)
{
	struct hmsg m;
	int r;

	hmsg_init(&m, 0);
	m.status = status;
	m.content_length = clen;
	r = hmsg_add(&m, "content-type", 12, ctype, strlen(ctype)) != 0 ||
	    h2_response(a->h, st, &m, end) != 0 ? -1 : 0;
	hmsg_clear(&m);
	if (r != 0)
		h2_reset(a->h, st, H2_INTERNAL_ERROR);
	return r;
}

/* The number in "name=N" of the query of path, at most max; -1 when absent or bad. */
static int64_t
query_num(const char *path, const char *name, uint64_t max)
{
	const char *q = strchr(path, '?'), *d;
	size_t nl = strlen(name);
	uint64_t v = 0;

	for (q = q != NULL ? q + 1 : NULL; q != NULL && *q != '\0'; q = strchr(q, '&') ?
	    strchr(q, '&') + 1 : NULL) {
		if (strncmp(q, name, nl) != 0 || q[nl] != '=')
			continue;
		for (d = q + nl + 1; *d >= '0' && *d <= '9' && d - q - nl - 1 < 11; d++)
			v = v * 10 + (uint64_t)(*d - '0');
		if (d == q + nl + 1 || (*d != '\0' && *d != '&') || v > max)
			return -1;
		return (int64_t)v;
	}
	return -1;
}

int
app_echo(char *out, size_t cap, const char *name, const char *method, const char *path,
    const char *const *xfcc, size_t n, size_t *len)
{
	char caller[512];
	size_t k = 0, i;
	int w;

	*len = 0;
	if (n == 0 || xfcc_uri(xfcc[0], caller, sizeof(caller)) != 0)
		snprintf(caller, sizeof(caller), "-");
	w = snprintf(out, cap, "%s %s\n", method, path);
	k = w > 0 ? ((size_t)w < cap ? (size_t)w : cap - 1) : 0;
	for (i = 0; i < n && k + 1 < cap; i++) {
		w = snprintf(out + k, cap - k, "x-forwarded-client-cert: %s\n", xfcc[i]);
		k = w > 0 && (size_t)w < cap - k ? k + (size_t)w : cap - 1;
	}
	*len = k;
	fprintf(stderr, "hsmesh app: %s: %s %.200s from %s\n", name, method, path, caller);
	return strcmp(method, "POST") == 0 ? 201 : 200;
}

/* Answer st with status, a text body and end (the body fits the stream's queue). */
static void
answer(struct app_h2c *a, struct h2_stream *st, int status, const char *ctype, const char *body,
    size_t len)
{
	size_t taken;

	if (head(a, st, status, ctype, (int64_t)len, len == 0) == 0 && len > 0 &&
	    (h2_write(a->h, st, (const uint8_t *)body, len, &taken) != 0 ||
	    h2_end(a->h, st, NULL) != 0))
		h2_reset(a->h, st, H2_INTERNAL_ERROR);
}

/* The path echo of request m on st. */
static void
echo_path(struct app_h2c *a, struct h2_stream *st, const struct hmsg *m)
{
	const char *vals[16];
	char body[ECHO_MAX];
	size_t n = 0, len, i;
	int status;

	for (i = 0; i < m->nf && n < 16; i++)
		if (strcmp(m->f[i].name, XFCC_NAME) == 0)
			vals[n++] = m->f[i].value;
	status = app_echo(body, sizeof(body), a->o.name, m->method, m->path, vals, n, &len);
	answer(a, st, status, "text/plain", body, len);
}

/* Write what fits of a streamed answer; end it when done. */
static void
pump(struct app_h2c *a, struct h2_stream *st)
{
	struct sstate *s = h2_stream_user(st);
	const uint8_t *p;
	size_t n, taken;

	if (s == NULL)
		return;
	if (s->kind == K_BYTES) {
		while (s->left > 0) {
			n = s->left < sizeof(xs) ? (size_t)s->left : sizeof(xs);
			if (h2_write(a->h, st, xs, n, &taken) != 0 || taken == 0)
				return;
			s->left -= taken;
		}
		s->kind = K_DRAIN;
		h2_end(a->h, st, NULL);
		return;
	}
	/* echo and drain: what the client sent goes back, or nowhere */
	for (;;) {
		h2_peek(a->h, st, &p, &n);
		if (n == 0)
			break;
		taken = n;
		if (s->kind == K_ECHO && h2_write(a->h, st, p, n, &taken) != 0)
			taken = n;
		if (taken == 0)
			break;
		h2_consume(a->h, st, taken);
	}
	if (s->kind == K_ECHO && s->in_end && n == 0) {
		s->kind = K_DRAIN;
		h2_end(a->h, st, NULL);
	}
}

static void
on_head(void *arg, struct h2_stream *st, struct hmsg *m, int end, int refuse)
{
	struct app_h2c *a = arg;
	struct sstate *s;
	const char *path = m->path != NULL ? m->path : "", *method = m->method != NULL ?
	    m->method : "";
	char body[128];
	size_t plen = strcspn(path, "?");
	int64_t v;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		h2_stream_done(a->h, st);
		return;
	}
	s->kind = K_DRAIN;
	s->next = a->all;
	if (a->all != NULL)
		a->all->prev = s;
	a->all = s;
	h2_stream_set_user(st, s);
	if (refuse != 0) {
		snprintf(body, sizeof(body), "%d %s\n", refuse, http_reason(refuse));
		answer(a, st, refuse, "text/plain", body, strlen(body));
		return;
	}
	if ((plen == 1 && path[0] == '/') || (plen == 7 && strncmp(path, "/whoami", 7) == 0)) {
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			goto not_allowed;
		snprintf(body, sizeof(body), "%s%s\n", plen == 1 ? "hello from " : "", a->o.name);
		answer(a, st, 200, "text/plain", body, strlen(body));
	} else if (plen == 5 && strncmp(path, "/echo", 5) == 0) {
		if (strcmp(method, "POST") != 0)
			goto not_allowed;
		if (head(a, st, 200, "application/octet-stream", -1, 0) == 0)
			s->kind = K_ECHO;
	} else if (plen == 6 && strncmp(path, "/bytes", 6) == 0) {
		if (strcmp(method, "GET") != 0)
			goto not_allowed;
		if ((v = query_num(path, "n", BYTES_MAX)) < 0) {
			answer(a, st, 400, "text/plain", "want ?n=0..1073741824\n", 22);
			return;
		}
		if (head(a, st, 200, "application/octet-stream", v, v == 0) != 0)
			return;
		s->kind = K_BYTES;
		s->left = (uint64_t)v;
		if (v > 0)
			pump(a, st);
	} else if (a->o.echo) {
		echo_path(a, st, m);
	} else {
		answer(a, st, 404, "text/plain", "Not Found\n", 10);
	}
	return;
 not_allowed:
	answer(a, st, 405, "text/plain", "Method Not Allowed\n", 19);
}

static void
on_data(void *arg, struct h2_stream *st)
{
	pump(arg, st);
}

static void
on_end(void *arg, struct h2_stream *st, struct hmsg *t)
{
	struct sstate *s = h2_stream_user(st);

	if (s != NULL)
		s->in_end = 1;
	pump(arg, st);
}

static void
on_room(void *arg, struct h2_stream *st)
{
	pump(arg, st);
}

static void
on_close(void *arg, struct h2_stream *st, uint32_t code)
{
	struct app_h2c *a = arg;
	struct sstate *s = h2_stream_user(st);

	if (s != NULL) {
		if (s->prev != NULL)
			s->prev->next = s->next;
		else
			a->all = s->next;
		if (s->next != NULL)
			s->next->prev = s->prev;
		free(s);
	}
	h2_stream_set_user(st, NULL);
	h2_stream_done(a->h, st);
}

static const struct h2_ops ops = {
	.head = on_head,
	.data = on_data,
	.end = on_end,
	.room = on_room,
	.close = on_close,
};

int
app_h2c_new(const struct app_h2c_opts *opts, struct app_h2c **out)
{
	struct app_h2c *a;
	int st;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return HSM_ENOMEM;
	a->o = *opts;
	if (xs[0] != 'x')
		memset(xs, 'x', sizeof(xs));
	if ((st = h2_new(H2_SERVER, NULL, &ops, a, &a->h)) != 0) {
		free(a);
		return st;
	}
	*out = a;
	return 0;
}

void
app_h2c_free(struct app_h2c *a)
{
	struct sstate *s;

	if (a == NULL)
		return;
	/* h2_free runs no close callback: the states of streams still open go here */
	while ((s = a->all) != NULL) {
		a->all = s->next;
		free(s);
	}
	h2_free(a->h);
	free(a);
}

int
app_h2c_feed(struct app_h2c *a, const uint8_t *buf, size_t len)
{
	if (h2_feed(a->h, buf, len) != 0)
		a->failed = 1;	/* a GOAWAY is queued: send it, then close */
	return 0;
}

int
app_h2c_send(struct app_h2c *a, int fd)
{
	const uint8_t *p;
	size_t n;
	ssize_t w;

	for (;;) {
		if (h2_out(a->h, &p, &n) != 0)
			return -1;
		if (n == 0)
			return 1;
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		h2_out_done(a->h, (size_t)w);
	}
}

int
app_h2c_alive(const struct app_h2c *a)
{
	return h2_want_read(a->h) || h2_want_write(a->h);
}
