/* h1.c - HTTP/1.1 message framing for the sidecar (see h1.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "h1.h"
#include "http.h"
#include "httptok.h"
#include "util.h"

enum {
	S_HEAD = 0,	/* start line and fields */
	S_LENGTH,	/* Content-Length body */
	S_CHUNK_SIZE,	/* a chunk-size line */
	S_CHUNK_DATA,
	S_CHUNK_CRLF,	/* the CRLF after a chunk's data */
	S_TRAILERS,	/* the trailer section after the last chunk */
	S_CLOSE,	/* body until the connection ends */
	S_END,		/* report H1_END next */
	S_DONE,		/* the connection carries no further message */
	S_FAIL,
};

static int
bad(struct h1_parser *p, int status, const char *why)
{
	if (p->kind == H1_RESPONSE)
		status = 502;
	p->status = status;
	p->state = S_FAIL;
	return hsm_err(HSM_EPROTO, "http: %d %s: %s%s", status, http_reason(status),
	    p->kind == H1_RESPONSE ? "response: " : "", why);
}

static void next_message(struct h1_parser *p);

void
h1_init(struct h1_parser *p, enum h1_kind kind, const struct h1_limits *lim)
{
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->lim = *lim;
	hmsg_init(&p->msg, kind == H1_REQUEST);
	hmsg_init(&p->trailers, kind == H1_REQUEST);
	next_message(p);
}

void
h1_free(struct h1_parser *p)
{
	if (p == NULL)
		return;
	hmsg_clear(&p->msg);
	hmsg_clear(&p->trailers);
}

void
h1_expect(struct h1_parser *p, const char *method)
{
	snprintf(p->req_method, sizeof(p->req_method), "%s", method != NULL ? method : "");
}

/* Ready for the next message's head. */
static void
next_message(struct h1_parser *p)
{
	p->state = S_HEAD;
	p->scan = p->nlines = p->nempty = 0;
	p->body = H1_BODY_NONE;
	p->remain = p->body_bytes = 0;
	p->conn_close = p->conn_keep = p->nhost = p->te = p->te_other = p->abs_auth = 0;
	p->cl = -1;
}

/*
 * The next complete line of the section starting at s (n bytes), from
 * p->scan, within limit bytes of the section: 1 with [*ls, *le) the line
 * without its CRLF (p->scan moves past it), 0 when more bytes are needed,
 * or HSM_EPROTO (big: the status for a section over limit).
 */
static int
next_line(struct h1_parser *p, const uint8_t *s, size_t n, size_t limit, int big,
    const char *what, size_t *ls, size_t *le)
{
	char why[64];
	size_t i;

	switch (http_line_end(s, n, p->scan, limit, &i)) {
	case HTTP_LINE_OK:
		break;
	case HTTP_LINE_MORE:
		return 0;
	case HTTP_LINE_BIG:
		snprintf(why, sizeof(why), "%s over %zu bytes", what, limit);
		return bad(p, big, why);
	case HTTP_LINE_BARE_LF:
		return bad(p, 400, "bare LF (lines must end in CRLF)");
	case HTTP_LINE_CTL:
		return bad(p, 400, "control character in a head");
	default:
		return bad(p, 400, "CR not followed by LF");
	}
	*ls = p->scan;
	*le = i;
	p->scan = i + 2;
	return 1;
}

static int host_ok(const uint8_t *v, size_t n);

/* A request target (RFC 9112 3.2) into msg.path (and msg.authority for absolute-form). */
static int
request_target(struct h1_parser *p, const uint8_t *t, size_t n)
{
	const uint8_t *a, *end = t + n, *q;
	char *path;
	size_t skip;
	int r;

	if (memchr(t, '#', n) != NULL)
		return bad(p, 400, "fragment in request target");
	if (n == 1 && t[0] == '*') {
		if (strcmp(p->msg.method, "OPTIONS") != 0)
			return bad(p, 400, "'*' target is for OPTIONS only");
		return hmsg_set(&p->msg, HMSG_PATH, "*", 1);
	}
	if (t[0] == '/')
		return hmsg_set(&p->msg, HMSG_PATH, (const char *)t, n);
	if (n > 7 && http_ieq(t, 7, "http://"))
		skip = 7;
	else if (n > 8 && http_ieq(t, 8, "https://"))
		skip = 8;
	else
		return bad(p, 400, "request target is not a path or an http URI");
	a = t + skip;
	for (q = a; q < end && *q != '/' && *q != '?'; q++)
		;
	if (q == a)
		return bad(p, 400, "request target has no authority");
	if (memchr(a, '@', (size_t)(q - a)) != NULL)
		return bad(p, 400, "userinfo in request target");
	if (!host_ok(a, (size_t)(q - a)))
		return bad(p, 400, "bad authority in request target");
	if ((r = hmsg_set(&p->msg, HMSG_AUTHORITY, (const char *)a, (size_t)(q - a))) != 0)
		return r;
	p->abs_auth = 1;
	if (q == end)
		return hmsg_set(&p->msg, HMSG_PATH, "/", 1);
	if (*q == '/')
		return hmsg_set(&p->msg, HMSG_PATH, (const char *)q, (size_t)(end - q));
	/* "http://h?x" is "/?x" */
	if ((path = malloc((size_t)(end - q) + 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	path[0] = '/';
	memcpy(path + 1, q, (size_t)(end - q));
	r = hmsg_set(&p->msg, HMSG_PATH, path, (size_t)(end - q) + 1);
	free(path);
	return r;
}

/* request-line = method SP request-target SP HTTP-version */
static int
request_line(struct h1_parser *p, const uint8_t *l, size_t n)
{
	size_t i = 0, m, v;
	int r;

	while (i < n && http_tchar(l[i]))
		i++;
	if (i == 0 || i >= n || l[i] != ' ')
		return bad(p, 400, "malformed request line");
	if (i > H1_MAX_METHOD)
		return bad(p, 501, "method too long");
	if ((r = hmsg_set(&p->msg, HMSG_METHOD, (const char *)l, i)) != 0)
		return r;
	m = ++i;
	while (i < n && l[i] > 0x20 && l[i] < 0x7f)
		i++;
	if (i == m || i >= n || l[i] != ' ')
		return bad(p, 400, "malformed request line");
	v = i + 1;
	if ((r = http_version(l + v, n - v, &p->minor)) == -1)
		return bad(p, 400, "malformed HTTP version");
	if (r == -2)
		return bad(p, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
	if (strcmp(p->msg.method, "CONNECT") == 0)
		return bad(p, 501, "CONNECT is not supported");
	return request_target(p, l + m, i - m);
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] (the SP may be missing) */
static int
status_line(struct h1_parser *p, const uint8_t *l, size_t n)
{
	int s;

	if (n < 12 || http_version(l, 8, &p->minor) != 0 || l[8] != ' ')
		return bad(p, 502, "malformed status line");
	if (l[9] < '1' || l[9] > '5' || l[10] < '0' || l[10] > '9' || l[11] < '0' ||
	    l[11] > '9' || (n > 12 && l[12] != ' '))
		return bad(p, 502, "malformed status code");
	s = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	if (s == 101)
		return bad(p, 502, "protocol upgrades are not relayed");
	p->msg.status = s;
	return 0;
}

/* Host = uri-host [ ":" port ]: the characters of a reg-name, an IP literal and a port. */
static int
host_ok(const uint8_t *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = v[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    (c != '\0' && strchr("-._~!$&'()*+,;=:[]%", c) != NULL)))
			return 0;
	}
	return 1;
}

/* Transfer-Encoding: count "chunked" and anything else. */
static void
transfer_coding(struct h1_parser *p, const uint8_t *v, size_t n)
{
	const uint8_t *t;
	size_t pos = 0, tn;

	if (n == 0)
		p->te_other = 1;
	while (http_list_next(v, n, &pos, &t, &tn)) {
		if (http_ieq(t, tn, "chunked"))
			p->te++;
		else
			p->te_other = 1;
	}
	if (p->te == 0)
		p->te_other = 1;
}

/* field-line = field-name ":" OWS field-value OWS, into dst. */
static int
field_line(struct h1_parser *p, const uint8_t *l, size_t n, struct hmsg *dst, int trailer)
{
	const uint8_t *v, *t;
	size_t i, vn, pos, tn;
	uint64_t len;
	int r;

	if ((r = http_field_split(l, n, &i, &v, &vn)) == -1)
		return bad(p, 400, "obsolete line folding");
	if (r != 0)
		return bad(p, 400, "malformed header field");

	if (http_ieq(l, i, "content-length") || http_ieq(l, i, "transfer-encoding") ||
	    http_ieq(l, i, "host")) {
		if (trailer)
			return bad(p, 400, "framing or routing field in trailers");
		if (http_ieq(l, i, "content-length")) {
			if (http_digits(v, vn, &len) != 0 || len > INT64_MAX)
				return bad(p, 400, "bad Content-Length");
			if (p->cl >= 0 && (uint64_t)p->cl != len)
				return bad(p, 400, "conflicting Content-Length");
			p->cl = (int64_t)len;
			return 0;
		}
		if (http_ieq(l, i, "host")) {
			if (p->nhost++)
				return bad(p, 400, "repeated Host");
			if (!host_ok(v, vn))
				return bad(p, 400, "bad Host");
			if (p->abs_auth)	/* RFC 9112 3.2.2: the target's authority wins */
				return 0;
			return hmsg_set(&p->msg, HMSG_AUTHORITY, (const char *)v, vn);
		}
		transfer_coding(p, v, vn);
	} else if (!trailer && http_ieq(l, i, "connection")) {
		pos = 0;
		while (http_list_next(v, vn, &pos, &t, &tn)) {
			if (http_ieq(t, tn, "close"))
				p->conn_close = 1;
			else if (http_ieq(t, tn, "keep-alive"))
				p->conn_keep = 1;
		}
	}
	return hmsg_add(dst, (const char *)l, i, (const char *)v, vn);
}

/* The head is complete: decide how its body is delimited. */
static int
head_done(struct h1_parser *p)
{
	struct hmsg *m = &p->msg;
	int req = p->kind == H1_REQUEST;

	m->content_length = p->cl;
	p->keep_alive = p->minor == 1 ? !p->conn_close : p->conn_keep && !p->conn_close;
	if (req && p->minor == 1 && p->nhost == 0)
		return bad(p, 400, "HTTP/1.1 request without Host");
	if (!req && hmsg_response_bodyless(p->req_method, m->status)) {
		p->body = H1_BODY_NONE;
		return 0;
	}
	if (p->te || p->te_other) {
		if (p->minor == 0)
			return bad(p, 400, "Transfer-Encoding in an HTTP/1.0 message");
		if (p->cl >= 0)
			return bad(p, 400, "both Content-Length and Transfer-Encoding");
		if (p->te_other)
			return bad(p, 501, "Transfer-Encoding other than chunked");
		if (p->te > 1)
			return bad(p, 400, "chunked applied more than once");
		p->body = H1_BODY_CHUNKED;
	} else if (p->cl > 0) {
		p->body = H1_BODY_LENGTH;
		p->remain = (uint64_t)p->cl;
	} else if (p->cl == 0 || req) {
		p->body = H1_BODY_NONE;
	} else {
		p->body = H1_BODY_CLOSE;
		p->keep_alive = 0;
	}
	return 0;
}

/* Parse head lines from s (n bytes). 1: head complete (p->scan its length); 0: need more. */
static int
head(struct h1_parser *p, const uint8_t *s, size_t n)
{
	int req = p->kind == H1_REQUEST, r;
	size_t ls, le;

	if (p->scan == 0 && p->nlines == 0 && p->nempty == 0) {
		hmsg_clear(&p->msg);
		hmsg_clear(&p->trailers);
	}
	for (;;) {
		r = next_line(p, s, n, p->lim.max_head, p->nlines == 0 && req ? 414 : 431,
		    p->nlines == 0 ? "request line" : "header section", &ls, &le);
		if (r <= 0)
			return r;
		if (p->nlines == 0) {
			if (le == ls) {
				if (!req || ++p->nempty > H1_MAX_EMPTY_LINES)
					return bad(p, 400, "empty line before the start line");
				continue;
			}
			if ((r = req ? request_line(p, s + ls, le - ls) : status_line(p, s + ls,
			    le - ls)) != 0)
				return r;
		} else if (le == ls) {
			return head_done(p) == 0 ? 1 : HSM_EPROTO;
		} else {
			if (p->nlines > p->lim.max_fields)
				return bad(p, 431, "too many header fields");
			if ((r = field_line(p, s + ls, le - ls, &p->msg, 0)) != 0)
				return r;
		}
		p->nlines++;
	}
}

/* A chunk-size line: 1*HEXDIG [ BWS ";" chunk-ext ]. 1 done, 0 need more, < 0 error. */
static int
chunk_size(struct h1_parser *p, const uint8_t *s, size_t n)
{
	size_t ls, le, i;
	uint64_t v = 0;
	int r, d;

	if ((r = next_line(p, s, n, H1_MAX_CHUNK_LINE, 400, "chunk-size line", &ls, &le)) <= 0)
		return r;
	for (i = ls; i < le && (d = hsm_hexval(s[i])) >= 0; i++) {
		if (i - ls >= 15)
			return bad(p, 400, "chunk size too large");
		v = v << 4 | (uint64_t)d;
	}
	if (i == ls)
		return bad(p, 400, "malformed chunk size");
	while (i < le && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i < le && s[i] != ';')
		return bad(p, 400, "malformed chunk size");
	p->remain = v;
	return 1;
}

/* Body bytes from s (n available): an H1_DATA of at most max bytes, or 0 for none. */
static size_t
body_slice(struct h1_parser *p, size_t n, size_t max, int bounded)
{
	uint64_t k = n < max ? n : max;

	if (bounded && p->remain < k)
		k = p->remain;
	if (bounded)
		p->remain -= k;
	p->body_bytes += k;
	return (size_t)k;
}

int
h1_parse(struct h1_parser *p, const uint8_t *buf, size_t len, size_t max_data, size_t *used,
    struct h1_event *ev)
{
	size_t off = 0, k, ls, le;
	int r;

	*used = 0;
	memset(ev, 0, sizeof(*ev));
	if (buf == NULL)
		len = 0;
	for (;;) {
		const uint8_t *s = buf + off;
		size_t n = len - off;

		switch (p->state) {
		case S_FAIL:
			return hsm_err(HSM_EPROTO, "http: %d %s: the stream failed before",
			    p->status, http_reason(p->status));
		case S_DONE:
			goto need;
		case S_HEAD:
			if (n == 0)
				goto need;
			if ((r = head(p, s, n)) < 0)
				return r;
			if (r == 0)
				goto need;
			off += p->scan;
			p->scan = 0;
			if (p->kind == H1_RESPONSE && p->msg.status < 200) {
				p->nlines = p->nempty = 0;	/* 1xx: the final response follows */
				p->te = p->te_other = p->nhost = 0;
				p->cl = -1;
			} else {
				p->state = p->body == H1_BODY_LENGTH ? S_LENGTH :
				    p->body == H1_BODY_CHUNKED ? S_CHUNK_SIZE :
				    p->body == H1_BODY_CLOSE ? S_CLOSE : S_END;
			}
			ev->type = H1_HEAD;
			*used = off;
			return 0;
		case S_LENGTH:
		case S_CHUNK_DATA:
		case S_CLOSE:
			if ((k = body_slice(p, n, max_data, p->state != S_CLOSE)) == 0)
				goto need;
			ev->type = H1_DATA;
			ev->data = s;
			ev->len = k;
			*used = off + k;
			if (p->state == S_LENGTH && p->remain == 0)
				p->state = S_END;
			else if (p->state == S_CHUNK_DATA && p->remain == 0)
				p->state = S_CHUNK_CRLF;
			return 0;
		case S_CHUNK_SIZE:
			if ((r = chunk_size(p, s, n)) < 0)
				return r;
			if (r == 0)
				goto need;
			off += p->scan;
			p->scan = 0;
			p->state = p->remain > 0 ? S_CHUNK_DATA : S_TRAILERS;
			p->nlines = 0;
			break;
		case S_CHUNK_CRLF:
			if (n >= 1 && s[0] != '\r')
				return bad(p, 400, "chunk data not followed by CRLF");
			if (n < 2)
				goto need;
			if (s[1] != '\n')
				return bad(p, 400, "chunk data not followed by CRLF");
			off += 2;
			p->state = S_CHUNK_SIZE;
			break;
		case S_TRAILERS:
			r = next_line(p, s, n, p->lim.max_head, 431, "trailer section", &ls, &le);
			if (r < 0)
				return r;
			if (r == 0)
				goto need;
			if (le == ls) {
				off += p->scan;
				p->scan = 0;
				p->state = S_END;
				break;
			}
			if (++p->nlines > p->lim.max_fields)
				return bad(p, 431, "too many trailer fields");
			if ((r = field_line(p, s + ls, le - ls, &p->trailers, 1)) != 0)
				return r;
			break;
		case S_END:
			ev->type = H1_END;
			*used = off;
			r = p->keep_alive;
			next_message(p);
			p->keep_alive = r;
			p->req_method[0] = '\0';
			if (!r)
				p->state = S_DONE;
			return 0;
		default:
			return bad(p, 500, "internal state");
		}
	}
 need:
	ev->type = H1_NEED;
	*used = off;
	return 0;
}

int
h1_eof(struct h1_parser *p, size_t pending, struct h1_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	switch (p->state) {
	case S_CLOSE:
		ev->type = H1_END;
		p->keep_alive = 0;
		p->state = S_DONE;
		return 0;
	case S_DONE:
		return 0;
	case S_HEAD:
		if (p->kind == H1_RESPONSE && p->req_method[0] != '\0')
			return bad(p, 502, "the connection ended before the response");
		if (pending == 0 && p->nlines == 0 && p->scan == 0)
			return 0;
		return bad(p, 400, "the connection ended inside a head");
	case S_FAIL:
		return hsm_err(HSM_EPROTO, "http: %d %s: the stream failed before", p->status,
		    http_reason(p->status));
	default:
		return bad(p, 400, "the connection ended inside a body");
	}
}

/* ---- writers ---- */

struct out {
	uint8_t *p;
	size_t cap, len;
	int err;
};

static void
put(struct out *o, const void *b, size_t n)
{
	if (o->err != 0)
		return;
	if (o->cap - o->len < n) {
		o->err = hsm_err(HSM_EINVAL, "http: a head of more than %zu bytes", o->cap);
		return;
	}
	memcpy(o->p + o->len, b, n);
	o->len += n;
}

static void
puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Bytes that may go in a field value: no control character but HT. */
static int
value_ok(const char *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = (uint8_t)v[i];

		if (c < 0x20 ? c != '\t' : c == 0x7f)
			return 0;
	}
	return 1;
}

/* A request-line element: visible ASCII, no space. */
static int
token_chars_ok(const char *v)
{
	for (; *v != '\0'; v++)
		if ((uint8_t)*v <= 0x20 || (uint8_t)*v >= 0x7f)
			return 0;
	return 1;
}

static int
name_ok(const char *n, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if (!http_tchar((uint8_t)n[i]))
			return 0;
	return 1;
}

/*
 * Fields the writer never copies: the framing and Host it writes itself,
 * and TE, which in HTTP/1.1 concerns one connection (RFC 9110 10.1.4)
 * and would need a Connection: TE of its own.
 */
static int
owned_by_writer(const char *name)
{
	return strcmp(name, "host") == 0 || strcmp(name, "content-length") == 0 ||
	    strcmp(name, "transfer-encoding") == 0 || strcmp(name, "connection") == 0 ||
	    strcmp(name, "te") == 0;
}

/* The fields of m but the writer's own; request cookies joined into one line. */
static int
put_fields(struct out *o, const struct hmsg *m, int trailers)
{
	const struct hfield *f;
	size_t i, ncookie = 0;

	for (i = 0; i < m->nf; i++) {
		f = &m->f[i];
		if (!name_ok(f->name, f->nlen) || !value_ok(f->value, f->vlen))
			return hsm_err(HSM_EPROTO, "http: field '%.40s' cannot be written in "
			    "HTTP/1.1", f->name);
		if (owned_by_writer(f->name))
			continue;
		if (m->request && !trailers && strcmp(f->name, "cookie") == 0) {
			ncookie++;
			continue;
		}
		put(o, f->name, f->nlen);
		put(o, ": ", 2);
		put(o, f->value, f->vlen);
		put(o, "\r\n", 2);
	}
	if (ncookie > 0) {
		puts_(o, "cookie: ");
		for (i = 0; i < m->nf; i++) {
			f = &m->f[i];
			if (strcmp(f->name, "cookie") != 0)
				continue;
			put(o, f->value, f->vlen);
			if (--ncookie > 0)
				put(o, "; ", 2);
		}
		put(o, "\r\n", 2);
	}
	return 0;
}

enum h1_framing
h1_framing_for(const struct hmsg *m, int bodyless, int peer_minor)
{
	if (bodyless || (!m->request && hmsg_response_bodyless(NULL, m->status)))
		return H1_FRAME_NONE;
	if (m->content_length >= 0)
		return H1_FRAME_LENGTH;
	if (!m->request && peer_minor == 0)
		return H1_FRAME_CLOSE;
	return H1_FRAME_CHUNKED;
}

int
h1_write_head(const struct hmsg *m, enum h1_framing fr, int conn_close, uint8_t *out,
    size_t cap, size_t *len)
{
	struct out o = { .p = out, .cap = cap };
	const char *reason;
	char num[48];
	int r;

	*len = 0;
	if (m->request) {
		if (m->method == NULL || m->path == NULL || m->method[0] == '\0' ||
		    !name_ok(m->method, strlen(m->method)) || !token_chars_ok(m->path) ||
		    m->path[0] == '\0' || (m->authority != NULL && (!token_chars_ok(m->authority) ||
		    !host_ok((const uint8_t *)m->authority, strlen(m->authority)))))
			return hsm_err(HSM_EPROTO, "http: request line cannot be written in HTTP/1.1");
		puts_(&o, m->method);
		put(&o, " ", 1);
		puts_(&o, m->path);
		puts_(&o, " HTTP/1.1\r\nhost: ");
		if (m->authority != NULL)
			puts_(&o, m->authority);
		put(&o, "\r\n", 2);
	} else {
		if (m->status < 100 || m->status > 599)
			return hsm_err(HSM_EPROTO, "http: status %d cannot be written", m->status);
		reason = http_reason(m->status);
		snprintf(num, sizeof(num), "HTTP/1.1 %d %s\r\n", m->status, reason ? reason : "");
		puts_(&o, num);
	}
	if ((r = put_fields(&o, m, 0)) != 0)
		return r;
	switch (fr) {
	case H1_FRAME_CHUNKED:
		puts_(&o, "transfer-encoding: chunked\r\n");
		break;
	case H1_FRAME_LENGTH:
		snprintf(num, sizeof(num), "content-length: %lld\r\n",
		    (long long)(m->content_length > 0 ? m->content_length : 0));
		puts_(&o, num);
		break;
	case H1_FRAME_NONE:
		/* a response to HEAD or a 304 tells the length it would have had */
		if (!m->request && m->content_length >= 0 && m->status >= 200 && m->status != 204) {
			snprintf(num, sizeof(num), "content-length: %lld\r\n",
			    (long long)m->content_length);
			puts_(&o, num);
		} else if (m->request && !hmsg_bodyless_method(m->method)) {
			puts_(&o, "content-length: 0\r\n");
		}
		break;
	default:
		break;
	}
	if (conn_close || fr == H1_FRAME_CLOSE)
		puts_(&o, "connection: close\r\n");
	put(&o, "\r\n", 2);
	if (o.err != 0)
		return o.err;
	*len = o.len;
	return 0;
}

size_t
h1_chunk_head(uint8_t out[H1_CHUNK_HEAD_MAX], size_t n)
{
	int k = snprintf((char *)out, H1_CHUNK_HEAD_MAX, "%zx\r\n", n);

	return k > 0 && k < H1_CHUNK_HEAD_MAX ? (size_t)k : 0;
}

int
h1_write_last_chunk(const struct hmsg *t, uint8_t *out, size_t cap, size_t *len)
{
	struct out o = { .p = out, .cap = cap };
	int r;

	*len = 0;
	puts_(&o, "0\r\n");
	if (t != NULL && (r = put_fields(&o, t, 1)) != 0)
		return r;
	put(&o, "\r\n", 2);
	if (o.err != 0)
		return o.err;
	*len = o.len;
	return 0;
}
