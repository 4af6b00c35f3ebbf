/*
 * test_hmsg.c - the protocol-neutral message: fields, hop-by-hop removal,
 * and the translations HTTP/1.1 <-> HTTP/2 through it (h1 parser and
 * writer on one side, a real nghttp2 session pair on the other).
 */
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
#include "h2.h"
#include "hmsg.h"

static void
add(struct hmsg *m, const char *n, const char *v)
{
	assert_int_equal(hmsg_add(m, n, strlen(n), v, strlen(v)), 0);
}

static void
fields(void **state)
{
	struct hmsg m, n;
	size_t size;

	hmsg_init(&m, 1);
	assert_int_equal(m.content_length, -1);
	add(&m, "Accept", "a");
	add(&m, "X-Forwarded-Client-Cert", "forged1");
	add(&m, "x-forwarded-client-cert", "forged2");
	add(&m, "X_FORWARDED_CLIENT_CERT", "forged3");
	add(&m, "x-forwarded-client-certx", "kept");
	assert_string_equal(m.f[0].name, "accept");
	size = m.size;
	assert_int_equal(size, 5 * 32 + 6 + 1 + 3 * (23 + 7) + 24 + 4);
	/* every spelling goes, '_' for '-' included; a longer name stays */
	assert_int_equal(hmsg_del(&m, "x-forwarded-client-cert"), 3);
	assert_int_equal(m.nf, 2);
	assert_string_equal(hmsg_value(&m, "x-forwarded-client-certx"), "kept");
	assert_int_equal(m.size, 2 * 32 + 6 + 1 + 24 + 4);
	assert_int_equal(hmsg_set(&m, HMSG_PATH, "/a", 2), 0);
	assert_int_equal(hmsg_set(&m, HMSG_PATH, "/abc", 4), 0);
	assert_string_equal(m.path, "/abc");
	assert_int_equal(m.size, 2 * 32 + 6 + 1 + 24 + 4 + 32 + 4);
	hmsg_init(&n, 1);
	hmsg_move(&n, &m);
	assert_int_equal(m.nf, 0);
	assert_null(m.path);
	assert_int_equal(m.content_length, -1);
	assert_string_equal(n.path, "/abc");
	hmsg_clear(&n);
	hmsg_clear(&m);
	hmsg_clear(NULL);
}

static void
hop_by_hop(void **state)
{
	struct hmsg m;

	hmsg_init(&m, 1);
	add(&m, "connection", "keep-alive, X-Private, Upgrade");
	add(&m, "keep-alive", "timeout=5");
	add(&m, "x-private", "secret hop");
	add(&m, "proxy-connection", "keep-alive");
	add(&m, "te", "trailers");
	add(&m, "transfer-encoding", "chunked");
	add(&m, "upgrade", "h2c");
	add(&m, "host", "a");
	add(&m, "content-length", "3");
	add(&m, "accept", "x");
	add(&m, "Connection", "close");
	assert_int_equal(hmsg_strip_hop(&m), 9);
	assert_int_equal(m.nf, 2);
	assert_string_equal(hmsg_value(&m, "te"), "trailers");
	assert_string_equal(hmsg_value(&m, "accept"), "x");
	hmsg_clear(&m);
	add(&m, "te", "gzip, trailers");
	add(&m, "TE", "Trailers");
	assert_int_equal(hmsg_strip_hop(&m), 1);
	assert_string_equal(m.f[0].value, "Trailers");
	hmsg_clear(&m);

	assert_true(hmsg_response_bodyless(NULL, 100));
	assert_true(hmsg_response_bodyless(NULL, 204));
	assert_true(hmsg_response_bodyless(NULL, 304));
	assert_true(hmsg_response_bodyless("HEAD", 200));
	assert_false(hmsg_response_bodyless("GET", 200));
	assert_false(hmsg_response_bodyless(NULL, 205));
	assert_true(hmsg_bodyless_method("GET"));
	assert_false(hmsg_bodyless_method("POST"));
	assert_false(hmsg_bodyless_method(NULL));
}

/* ---- HTTP/1.1 -> HTTP/2 -> HTTP/1.1, the way two sidecars carry a request ---- */

struct hop {
	struct hmsg got;
	int nhead, end;
};

static void
hop_head(void *arg, struct h2_stream *st, struct hmsg *m, int end, int refuse)
{
	struct hop *h = arg;

	assert_int_equal(refuse, 0);
	h->nhead++;
	h->end = end;
	hmsg_move(&h->got, m);
}

static void
pump(struct h2 *a, struct h2 *b)
{
	uint8_t buf[16384];
	size_t n;
	int moved;

	do {
		moved = 0;
		assert_int_equal(h2_drain(a, buf, sizeof(buf), &n), 0);
		if (n > 0 && (moved = 1))
			assert_int_equal(h2_feed(b, buf, n), 0);
		assert_int_equal(h2_drain(b, buf, sizeof(buf), &n), 0);
		if (n > 0 && (moved = 1))
			assert_int_equal(h2_feed(a, buf, n), 0);
	} while (moved);
}

static void
h1_to_h2_to_h1(void **state)
{
	static const char in[] = "POST /nsmf-pdusession/v1/sm-contexts?a=1 HTTP/1.1\r\n"
	    "Host: smf.example:8080\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: 2\r\n"
	    "Connection: keep-alive, X-Hop\r\n"
	    "X-Hop: dropped\r\n"
	    "Keep-Alive: timeout=5\r\n"
	    "TE: trailers\r\n"
	    "Cookie: a=1\r\n"
	    "Cookie: b=2\r\n"
	    "\r\n{}";
	const struct h1_limits lim = { 8192, 100 };
	struct h2_ops ops = { .head = hop_head };
	struct h1_parser p;
	struct h1_event ev;
	struct h2 *c, *s;
	struct h2_stream *st;
	struct hop got;
	uint8_t out[1024];
	size_t used, n;

	/* the app's HTTP/1.1 request */
	h1_init(&p, H1_REQUEST, &lim);
	assert_int_equal(h1_parse(&p, (const uint8_t *)in, sizeof(in) - 1, 1024, &used, &ev), 0);
	assert_int_equal(ev.type, H1_HEAD);
	hmsg_strip_hop(&p.msg);
	assert_int_equal(hmsg_set(&p.msg, HMSG_SCHEME, "https", 5), 0);

	/* across HTTP/2 */
	memset(&got, 0, sizeof(got));
	hmsg_init(&got.got, 1);
	assert_int_equal(h2_new(H2_CLIENT, NULL, NULL, NULL, &c), 0);
	assert_int_equal(h2_new(H2_SERVER, NULL, &ops, &got, &s), 0);
	assert_int_equal(h2_request(c, &p.msg, 0, NULL, &st), 0);
	pump(c, s);
	assert_int_equal(got.nhead, 1);
	assert_int_equal(got.end, 0);
	assert_string_equal(got.got.method, "POST");
	assert_string_equal(got.got.scheme, "https");
	assert_string_equal(got.got.authority, "smf.example:8080");
	assert_string_equal(got.got.path, "/nsmf-pdusession/v1/sm-contexts?a=1");
	assert_int_equal(got.got.content_length, 2);
	assert_string_equal(hmsg_value(&got.got, "te"), "trailers");
	assert_null(hmsg_value(&got.got, "x-hop"));
	assert_null(hmsg_value(&got.got, "keep-alive"));
	assert_null(hmsg_value(&got.got, "connection"));
	assert_null(hmsg_value(&got.got, "host"));

	/* and to the other app as HTTP/1.1: Host from :authority, cookies joined */
	hmsg_strip_hop(&got.got);
	assert_int_equal(h1_write_head(&got.got, h1_framing_for(&got.got, 0, 1), 0, out,
	    sizeof(out), &n), 0);
	out[n] = '\0';
	assert_string_equal((char *)out, "POST /nsmf-pdusession/v1/sm-contexts?a=1 HTTP/1.1\r\n"
	    "host: smf.example:8080\r\n"
	    "content-type: application/json\r\n"
	    "cookie: a=1; b=2\r\n"
	    "content-length: 2\r\n\r\n");
	h2_free(c);
	h2_free(s);
	h1_free(&p);
	hmsg_clear(&got.got);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fields),
		cmocka_unit_test(hop_by_hop),
		cmocka_unit_test(h1_to_h2_to_h1),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
