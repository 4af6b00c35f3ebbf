/* test_h1.c - HTTP/1.1 message framing for the sidecar: parser, smuggling refusals, writers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "h1.h"
#include "hmsg.h"

static const struct h1_limits lim = { .max_head = 4096, .max_fields = 20 };

/*
 * What parsing a stream gave: one letter per event (H head, D data, E
 * end) and the body bytes, plus the first head and trailers.
 */
struct run {
	char ev[256];
	char body[8192];
	size_t nbody;
	int r, status, keep_alive;
	enum h1_body bodykind;
	struct hmsg head, trailers;
	size_t left;		/* bytes never used */
};

static void
ev_add(struct run *o, char c)
{
	size_t n = strlen(o->ev);

	if (n + 1 < sizeof(o->ev)) {
		o->ev[n] = c;
		o->ev[n + 1] = '\0';
	}
}

static void
run_free(struct run *o)
{
	hmsg_clear(&o->head);
	hmsg_clear(&o->trailers);
}

/*
 * Parse text as a stream arriving step bytes at a time (0: all at once),
 * with a consumer that takes at most take bytes per data event, the way
 * a proxy does: a buffer that keeps unused bytes and appends new ones.
 * eof: tell the parser the stream ended after the last byte.
 */
static void
parse(enum h1_kind kind, const char *method, const char *text, size_t step, size_t take,
    int eof, struct run *o)
{
	struct h1_parser p;
	struct h1_event ev;
	size_t total = strlen(text), fed = 0, have = 0, used, k;
	uint8_t *buf = malloc(total + 1);
	int r = 0;

	assert_non_null(buf);
	memset(o, 0, sizeof(*o));
	hmsg_init(&o->head, kind == H1_REQUEST);
	hmsg_init(&o->trailers, kind == H1_REQUEST);
	h1_init(&p, kind, &lim);
	if (method != NULL)
		h1_expect(&p, method);
	for (;;) {
		if ((r = h1_parse(&p, buf, have, take, &used, &ev)) != 0)
			break;
		assert_true(used <= have);
		if (ev.type == H1_DATA) {
			assert_true(ev.len > 0 && ev.len <= take && ev.data >= buf &&
			    ev.data + ev.len <= buf + used);
			assert_true(o->nbody + ev.len <= sizeof(o->body));
			memcpy(o->body + o->nbody, ev.data, ev.len);
			o->nbody += ev.len;
		}
		if (ev.type == H1_HEAD && o->head.nf == 0 && o->head.method == NULL &&
		    o->head.status == 0) {
			hmsg_move(&o->head, &p.msg);
			o->bodykind = p.body;
		}
		if (ev.type == H1_END && p.trailers.nf > 0)
			hmsg_move(&o->trailers, &p.trailers);
		if (ev.type != H1_NEED)
			ev_add(o, ev.type == H1_HEAD ? 'H' : ev.type == H1_DATA ? 'D' : 'E');
		memmove(buf, buf + used, have - used);
		have -= used;
		if (ev.type != H1_NEED)
			continue;
		if (fed == total) {
			if (eof) {
				r = h1_eof(&p, have, &ev);
				if (r == 0 && ev.type == H1_END)
					ev_add(o, 'E');
			}
			break;
		}
		k = step == 0 || total - fed < step ? total - fed : step;
		memcpy(buf + have, text + fed, k);
		have += k;
		fed += k;
	}
	o->r = r;
	o->status = p.status;
	o->keep_alive = p.keep_alive;
	o->left = have + (total - fed);
	h1_free(&p);
	free(buf);
}

/* The same result whatever the arrival steps and consumer size. */
static void
parse_all_ways(enum h1_kind kind, const char *method, const char *text, int eof, struct run *o)
{
	static const size_t steps[] = { 0, 1, 2, 3, 7, 64 }, takes[] = { 1, 5, 65536 };
	struct run x;
	size_t i, j;

	parse(kind, method, text, 0, 65536, eof, o);
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		for (j = 0; j < sizeof(takes) / sizeof(takes[0]); j++) {
			parse(kind, method, text, steps[i], takes[j], eof, &x);
			if (x.r != o->r || x.status != o->status || x.nbody != o->nbody ||
			    memcmp(x.body, o->body, x.nbody) != 0 || (o->r == 0 && x.left != o->left))
				fail_msg("step %zu take %zu: r %d status %d body %zu left %zu; whole: "
				    "r %d status %d body %zu left %zu", steps[i], takes[j], x.r,
				    x.status, x.nbody, x.left, o->r, o->status, o->nbody, o->left);
			run_free(&x);
		}
}

static void
refused_(enum h1_kind kind, const char *text, int status, int line)
{
	struct run o;

	parse_all_ways(kind, NULL, text, 0, &o);
	if (o.r != HSM_EPROTO || o.status != status)
		fail_msg("line %d: got %d status %d, want status %d", line, o.r, o.status, status);
	run_free(&o);
}
#define refused(text, status) refused_(H1_REQUEST, text, status, __LINE__)
#define refused_resp(text) refused_(H1_RESPONSE, text, 502, __LINE__)

static void
simple_requests(void **state)
{
	struct run o;

	parse_all_ways(H1_REQUEST, NULL, "GET /a/b?x=1 HTTP/1.1\r\nHost: svc.example\r\n"
	    "Accept: */*\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n", 0, &o);
	assert_int_equal(o.r, 0);
	assert_string_equal(o.ev, "HE");
	assert_string_equal(o.head.method, "GET");
	assert_string_equal(o.head.path, "/a/b?x=1");
	assert_string_equal(o.head.authority, "svc.example");
	assert_null(hmsg_get(&o.head, "host"));
	assert_string_equal(hmsg_value(&o.head, "accept"), "*/*");
	assert_int_equal(o.head.nf, 3);
	assert_string_equal(o.head.f[1].name, "x-multi");
	assert_string_equal(o.head.f[2].value, "2");
	assert_int_equal(o.head.content_length, -1);
	assert_int_equal(o.bodykind, H1_BODY_NONE);
	assert_int_equal(o.keep_alive, 1);
	run_free(&o);

	/* absolute-form: the target's authority wins over Host */
	parse_all_ways(H1_REQUEST, NULL, "GET http://Real.Example:8080?q HTTP/1.1\r\n"
	    "Host: other\r\n\r\n", 0, &o);
	assert_int_equal(o.r, 0);
	assert_string_equal(o.head.authority, "Real.Example:8080");
	assert_string_equal(o.head.path, "/?q");
	run_free(&o);

	/* OPTIONS * and HTTP/1.0 without keep-alive */
	parse_all_ways(H1_REQUEST, NULL, "OPTIONS * HTTP/1.0\r\n\r\n", 0, &o);
	assert_int_equal(o.r, 0);
	assert_string_equal(o.head.path, "*");
	assert_int_equal(o.keep_alive, 0);
	run_free(&o);

	/* HTTP/1.0 with keep-alive; a tolerated CRLF before the request line */
	parse_all_ways(H1_REQUEST, NULL, "\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0,
	    &o);
	assert_int_equal(o.r, 0);
	assert_int_equal(o.keep_alive, 1);
	run_free(&o);

	/* Connection: close ends keep-alive; nothing after it is parsed */
	parse_all_ways(H1_REQUEST, NULL, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	    "GET /next HTTP/1.1\r\nHost: a\r\n\r\n", 0, &o);
	assert_int_equal(o.r, 0);
	assert_string_equal(o.ev, "HE");
	assert_int_equal(o.keep_alive, 0);
	assert_int_equal(o.left, strlen("GET /next HTTP/1.1\r\nHost: a\r\n\r\n"));
	run_free(&o);
}

static void
bodies(void **state)
{
	struct run o;

	parse_all_ways(H1_REQUEST, NULL, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
	    "hello world", 0, &o);
	assert_int_equal(o.r, 0);
	assert_int_equal(o.bodykind, H1_BODY_LENGTH);
	assert_int_equal(o.head.content_length, 11);
	assert_int_equal(o.nbody, 11);
	assert_memory_equal(o.body, "hello world", 11);
	assert_int_equal(o.ev[0], 'H');
	assert_int_equal(o.ev[strlen(o.ev) - 1], 'E');
	run_free(&o);

	/* chunked, with an extension, upper-case hex, trailers; then a pipelined request */
	parse_all_ways(H1_REQUEST, NULL, "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n"
	    "\r\n5;ext=\"v\"\r\nhello\r\n1A\r\n-abcdefghijklmnopqrstuvwxy\r\n0\r\n"
	    "Grpc-Status: 0\r\nX-T: 1\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", 0, &o);
	assert_int_equal(o.r, 0);
	assert_int_equal(o.bodykind, H1_BODY_CHUNKED);
	assert_int_equal(o.head.content_length, -1);
	assert_int_equal(o.nbody, 5 + 26);
	assert_memory_equal(o.body, "hello-abcdefghijklmnopqrstuvwxy", 31);
	assert_string_equal(hmsg_value(&o.trailers, "grpc-status"), "0");
	assert_string_equal(hmsg_value(&o.trailers, "x-t"), "1");
	/* the second request's head and end came too */
	assert_int_equal(o.ev[strlen(o.ev) - 1], 'E');
	assert_int_equal(o.ev[strlen(o.ev) - 2], 'H');
	assert_int_equal(o.left, 0);
	run_free(&o);

	/* Content-Length: 0 and a repeated equal Content-Length */
	parse_all_ways(H1_REQUEST, NULL, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
	    "Content-Length: 0\r\n\r\n", 0, &o);
	assert_int_equal(o.r, 0);
	assert_string_equal(o.ev, "HE");
	assert_int_equal(o.head.content_length, 0);
	run_free(&o);
}

static void
smuggling_refused(void **state)
{
	refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
	    "\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
	    "\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 501);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 400);
	refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400);
	refused("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
	refused("GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	refused("GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	refused("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	refused("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
	refused("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
	refused("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501);
	refused("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	refused("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	/* chunk framing */
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n",
	    400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n"
	    "\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n",
	    400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "1000000000000000\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
	    "Content-Length: 5\r\n\r\n", 400);
}

static void
limits(void **state)
{
	char big[8192], *p;
	size_t i;

	/* head over max_head: 431; request line over it: 414 */
	p = big + snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	for (i = 0; i < 4100; i++)
		*p++ = 'a';
	memcpy(p, "\r\n\r\n", 5);
	refused(big, 431);
	p = big + snprintf(big, sizeof(big), "GET /");
	for (i = 0; i < 4100; i++)
		*p++ = 'a';
	memcpy(p, " HTTP/1.1\r\n\r\n", 14);
	refused(big, 414);
	/* more fields than max_fields */
	p = big + snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (i = 0; i < 21; i++)
		p += snprintf(p, 16, "X%zu: y\r\n", i);
	memcpy(p, "\r\n", 3);
	refused(big, 431);
	/* a long method */
	refused("GETGETGETGETGETGETGETGETGETGETGETGET / HTTP/1.1\r\nHost: a\r\n\r\n", 501);
}

static void
responses(void **state)
{
	struct run o;

	parse_all_ways(H1_RESPONSE, "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
	    "Set-Cookie: a=1\r\n\r\nabc", 0, &o);
	assert_int_equal(o.r, 0);
	assert_int_equal(o.head.status, 200);
	assert_int_equal(o.nbody, 3);
	assert_int_equal(o.keep_alive, 1);
	run_free(&o);

	/* a response to HEAD has no body whatever its length says */
	parse_all_ways(H1_RESPONSE, "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n", 0, &o);
	assert_int_equal(o.r, 0);
	assert_string_equal(o.ev, "HE");
	assert_int_equal(o.head.content_length, 30);
	run_free(&o);

	/* 204 and 304: no body */
	parse_all_ways(H1_RESPONSE, "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
	    0, &o);
	assert_string_equal(o.ev, "HE");
	run_free(&o);

	/* 100 Continue first, then the final response; no reason phrase */
	parse_all_ways(H1_RESPONSE, "POST", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 0, &o);
	assert_int_equal(o.r, 0);
	assert_string_equal(o.ev, "HHDE");
	assert_int_equal(o.head.status, 100);
	assert_int_equal(o.nbody, 2);
	run_free(&o);

	/* no length: the body runs until the connection ends */
	parse_all_ways(H1_RESPONSE, "GET", "HTTP/1.0 200 OK\r\n\r\nuntil the end", 1, &o);
	assert_int_equal(o.r, 0);
	assert_int_equal(o.bodykind, H1_BODY_CLOSE);
	assert_int_equal(o.nbody, 13);
	assert_int_equal(o.ev[strlen(o.ev) - 1], 'E');
	assert_int_equal(o.keep_alive, 0);
	run_free(&o);

	/* cut short: 502 */
	parse_all_ways(H1_RESPONSE, "GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1, &o);
	assert_int_equal(o.r, HSM_EPROTO);
	assert_int_equal(o.status, 502);
	run_free(&o);
	parse_all_ways(H1_RESPONSE, "GET", "", 1, &o);
	assert_int_equal(o.r, HSM_EPROTO);
	assert_int_equal(o.status, 502);
	run_free(&o);

	refused_resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
	refused_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
	refused_resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	refused_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n");
	refused_resp("HTTP/1.1 999 What\r\n\r\n");
	refused_resp("HTTP/1.1 20 OK\r\n\r\n");
	refused_resp("HTTP/1.1 200OK\r\n\r\n");
	refused_resp("ICY 200 OK\r\n\r\n");
	refused_resp("HTTP/1.1 200 OK\r\nX: 1\n\r\n");
}

static void
eof_between_messages(void **state)
{
	struct run o;

	parse_all_ways(H1_REQUEST, NULL, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1, &o);
	assert_int_equal(o.r, 0);
	assert_string_equal(o.ev, "HE");
	run_free(&o);
	parse_all_ways(H1_REQUEST, NULL, "GET / HTTP/1.1\r\nHost: a\r\n", 1, &o);
	assert_int_equal(o.r, HSM_EPROTO);
	assert_int_equal(o.status, 400);
	run_free(&o);
	parse_all_ways(H1_REQUEST, NULL, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab",
	    1, &o);
	assert_int_equal(o.r, HSM_EPROTO);
	run_free(&o);
}

/* Write m and parse it back. */
static void
roundtrip(const struct hmsg *m, enum h1_framing fr, const char *want)
{
	uint8_t out[2048];
	size_t n;

	assert_int_equal(h1_write_head(m, fr, 0, out, sizeof(out), &n), 0);
	if (want != NULL && (n != strlen(want) || memcmp(out, want, n) != 0))
		fail_msg("wrote '%.*s', want '%s'", (int)n, out, want);
}

static void
writers(void **state)
{
	struct hmsg m;
	uint8_t out[256];
	size_t n;

	hmsg_init(&m, 1);
	assert_int_equal(hmsg_set(&m, HMSG_METHOD, "POST", 4), 0);
	assert_int_equal(hmsg_set(&m, HMSG_PATH, "/x?y", 4), 0);
	assert_int_equal(hmsg_set(&m, HMSG_AUTHORITY, "svc:80", 6), 0);
	assert_int_equal(hmsg_add(&m, "Cookie", 6, "a=1", 3), 0);
	assert_int_equal(hmsg_add(&m, "accept", 6, "*/*", 3), 0);
	assert_int_equal(hmsg_add(&m, "cookie", 6, "b=2", 3), 0);
	assert_int_equal(hmsg_add(&m, "content-length", 14, "999", 3), 0);
	roundtrip(&m, H1_FRAME_CHUNKED, "POST /x?y HTTP/1.1\r\nhost: svc:80\r\naccept: */*\r\n"
	    "cookie: a=1; b=2\r\ntransfer-encoding: chunked\r\n\r\n");
	m.content_length = 12;
	roundtrip(&m, H1_FRAME_LENGTH, "POST /x?y HTTP/1.1\r\nhost: svc:80\r\naccept: */*\r\n"
	    "cookie: a=1; b=2\r\ncontent-length: 12\r\n\r\n");
	assert_int_equal(h1_framing_for(&m, 0, 1), H1_FRAME_LENGTH);
	m.content_length = -1;
	assert_int_equal(h1_framing_for(&m, 0, 1), H1_FRAME_CHUNKED);
	assert_int_equal(h1_framing_for(&m, 1, 1), H1_FRAME_NONE);
	/* a POST without body says so */
	roundtrip(&m, H1_FRAME_NONE, "POST /x?y HTTP/1.1\r\nhost: svc:80\r\naccept: */*\r\n"
	    "cookie: a=1; b=2\r\ncontent-length: 0\r\n\r\n");

	/* a value that would split the head is refused */
	assert_int_equal(hmsg_add(&m, "x-evil", 6, "a\r\nx-injected: 1", 17), 0);
	assert_int_equal(h1_write_head(&m, H1_FRAME_NONE, 0, out, sizeof(out), &n), HSM_EPROTO);
	hmsg_clear(&m);
	assert_int_equal(hmsg_set(&m, HMSG_METHOD, "GET", 3), 0);
	assert_int_equal(hmsg_set(&m, HMSG_PATH, "/a b", 4), 0);
	assert_int_equal(h1_write_head(&m, H1_FRAME_NONE, 0, out, sizeof(out), &n), HSM_EPROTO);
	assert_int_equal(hmsg_set(&m, HMSG_PATH, "/", 1), 0);
	assert_int_equal(hmsg_set(&m, HMSG_AUTHORITY, "a\r\nb", 4), 0);
	assert_int_equal(h1_write_head(&m, H1_FRAME_NONE, 0, out, sizeof(out), &n), HSM_EPROTO);
	/* too small a buffer */
	assert_int_equal(hmsg_set(&m, HMSG_AUTHORITY, "a", 1), 0);
	assert_int_equal(h1_write_head(&m, H1_FRAME_NONE, 0, out, 10, &n), HSM_EINVAL);
	assert_int_equal(n, 0);
	hmsg_clear(&m);

	/* responses: reason phrases, HEAD/304 keep their length, 1.0 clients get close */
	hmsg_init(&m, 0);
	m.status = 404;
	m.content_length = 5;
	roundtrip(&m, H1_FRAME_LENGTH, "HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\n");
	m.status = 304;
	assert_int_equal(h1_framing_for(&m, 0, 1), H1_FRAME_NONE);
	roundtrip(&m, H1_FRAME_NONE, "HTTP/1.1 304 \r\ncontent-length: 5\r\n\r\n");
	m.status = 299;
	m.content_length = -1;
	assert_int_equal(h1_framing_for(&m, 0, 0), H1_FRAME_CLOSE);
	roundtrip(&m, H1_FRAME_CLOSE, "HTTP/1.1 299 \r\nconnection: close\r\n\r\n");
	m.status = 600;
	assert_int_equal(h1_write_head(&m, H1_FRAME_NONE, 0, out, sizeof(out), &n), HSM_EPROTO);

	/* chunks */
	assert_int_equal(h1_chunk_head(out, 0x1a2b), 6);
	assert_memory_equal(out, "1a2b\r\n", 6);
	hmsg_clear(&m);
	assert_int_equal(hmsg_add(&m, "grpc-status", 11, "0", 1), 0);
	assert_int_equal(h1_write_last_chunk(&m, out, sizeof(out), &n), 0);
	assert_int_equal(n, strlen("0\r\ngrpc-status: 0\r\n\r\n"));
	assert_memory_equal(out, "0\r\ngrpc-status: 0\r\n\r\n", n);
	assert_int_equal(h1_write_last_chunk(NULL, out, sizeof(out), &n), 0);
	assert_memory_equal(out, "0\r\n\r\n", 5);
	hmsg_clear(&m);
}

/* A parsed request written again parses to the same message. */
static void
parse_write_parse(void **state)
{
	struct run a, b;
	uint8_t out[4096];
	char text[4200];
	size_t n;

	parse_all_ways(H1_REQUEST, NULL, "PUT /p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"
	    "Accept: x\r\nCookie: c=1\r\n\r\nok", 0, &a);
	assert_int_equal(a.r, 0);
	assert_int_equal(h1_write_head(&a.head, h1_framing_for(&a.head, 0, 1), 0, out,
	    sizeof(out), &n), 0);
	memcpy(text, out, n);
	memcpy(text + n, "ok", 3);
	parse_all_ways(H1_REQUEST, NULL, text, 0, &b);
	assert_int_equal(b.r, 0);
	assert_string_equal(b.head.method, "PUT");
	assert_string_equal(b.head.path, "/p?q");
	assert_string_equal(b.head.authority, "h");
	assert_int_equal(b.head.content_length, 2);
	assert_int_equal(b.nbody, 2);
	assert_int_equal(b.head.nf, a.head.nf);
	run_free(&a);
	run_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(simple_requests),
		cmocka_unit_test(bodies),
		cmocka_unit_test(smuggling_refused),
		cmocka_unit_test(limits),
		cmocka_unit_test(responses),
		cmocka_unit_test(eof_between_messages),
		cmocka_unit_test(writers),
		cmocka_unit_test(parse_write_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
