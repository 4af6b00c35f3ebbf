/* test_http.c - the strict HTTP/1.1 request parser and response writer. */
#include <sys/socket.h>

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "http.h"

#define MAXB 65536

/* The head OpenSSL 3.0's "openssl cmp" client sends (captured here). */
#define OSSL_HEAD "POST /.well-known/cmp HTTP/1.0\r\n" \
	"Pragma: no-cache\r\n" \
	"Host: 127.0.0.1\r\n" \
	"Content-Type: application/pkixcmp\r\n" \
	"Content-Length: 189\r\n" \
	"\r\n"

/* Parse n bytes from an exact-size heap copy, so ASan sees any over-read. */
static int
parse_n(const void *s, size_t n, size_t max_body, struct http_req *rq)
{
	uint8_t *b = malloc(n ? n : 1);
	int r;

	assert_non_null(b);
	memcpy(b, s, n);
	r = http_parse(b, n, max_body, rq);
	free(b);
	rq->body = NULL;	/* pointed into b */
	return r;
}

static int
parse_s(const char *s, struct http_req *rq)
{
	return parse_n(s, strlen(s), MAXB, rq);
}

/* Expect a refusal with status. */
static void
refused(const char *s, int status)
{
	struct http_req rq;
	int r = parse_s(s, &rq);

	if (r != HSM_EPROTO || rq.status != status)
		fail_msg("'%s': got %d status %d, want status %d", s, r, rq.status, status);
}

static void
good_post_every_split(void **state)
{
	static const char head[] = OSSL_HEAD;
	uint8_t req[sizeof(head) - 1 + 189];
	struct http_req rq;
	size_t hl = sizeof(head) - 1, i;
	uint8_t *b;

	memcpy(req, head, hl);
	/* A binary body that even contains CRLFCRLF and NUL. */
	for (i = 0; i < 189; i++)
		req[hl + i] = (uint8_t)(i * 7);
	memcpy(req + hl + 50, "\r\n\r\n\0", 5);

	for (i = 0; i < sizeof(req); i++) {
		memset(&rq, 0x5a, sizeof(rq));
		if (parse_n(req, i, MAXB, &rq) != 0)
			fail_msg("prefix of %zu bytes: not 0", i);
		assert_int_equal(rq.status, 0);
		assert_int_equal(rq.method[0], '\0');
	}
	b = malloc(sizeof(req));
	assert_non_null(b);
	memcpy(b, req, sizeof(req));
	assert_int_equal(http_parse(b, sizeof(req), MAXB, &rq), (int)sizeof(req));
	assert_int_equal(rq.status, 0);
	assert_string_equal(rq.method, "POST");
	assert_string_equal(rq.target, "/.well-known/cmp");
	assert_string_equal(rq.content_type, HTTP_CT_PKIXCMP);
	assert_string_equal(rq.host, "127.0.0.1");
	assert_int_equal(rq.minor, 0);
	assert_int_equal(rq.has_length, 1);
	assert_int_equal(rq.conn_close, 1);
	assert_ptr_equal(rq.body, b + hl);
	assert_int_equal(rq.body_len, 189);
	assert_memory_equal(rq.body, req + hl, 189);
	free(b);
}

static void
pipelined(void **state)
{
	static const char two[] = "POST /a?x=1 HTTP/1.1\r\nHost: ca\r\nContent-Length: 3\r\n\r\nabc"
	    "POST /b HTTP/1.1\r\nHost: ca\r\nContent-Length: 2\r\nConnection: keep-alive, Close\r\n"
	    "\r\nde" "GET";
	const uint8_t *p = (const uint8_t *)two;
	size_t len = sizeof(two) - 1;
	struct http_req rq;
	int n1, n2;

	n1 = http_parse(p, len, MAXB, &rq);
	assert_true(n1 > 0 && (size_t)n1 < len);
	assert_string_equal(rq.target, "/a");
	assert_int_equal(rq.minor, 1);
	assert_int_equal(rq.conn_close, 0);
	assert_int_equal(rq.body_len, 3);
	assert_memory_equal(rq.body, "abc", 3);
	assert_int_equal(p[n1], 'P');

	n2 = http_parse(p + n1, len - (size_t)n1, MAXB, &rq);
	assert_true(n2 > 0);
	assert_string_equal(rq.target, "/b");
	assert_int_equal(rq.conn_close, 1);
	assert_memory_equal(rq.body, "de", 2);
	/* What is left is an incomplete third request. */
	assert_int_equal(len - (size_t)n1 - (size_t)n2, 3);
	assert_int_equal(http_parse(p + n1 + n2, 3, MAXB, &rq), 0);
}

static void
no_body_requests(void **state)
{
	struct http_req rq;
	const char *s = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

	assert_int_equal(parse_s(s, &rq), (int)strlen(s));
	assert_string_equal(rq.method, "GET");
	assert_null(rq.body);
	assert_int_equal(rq.body_len, 0);
	assert_int_equal(rq.has_length, 0);
	/* POST with an empty body is fine when it says so. */
	s = "POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n";
	assert_int_equal(parse_s(s, &rq), (int)strlen(s));
	assert_int_equal(rq.body_len, 0);
	assert_string_equal(rq.content_type, "");
	/* Any method token is parsed; refusing it is the caller's call. */
	s = "DELETE / HTTP/1.0\r\n\r\n";
	assert_int_equal(parse_s(s, &rq), (int)strlen(s));
	assert_string_equal(rq.method, "DELETE");
}

static void
targets(void **state)
{
	struct http_req rq;

	assert_true(parse_s("POST http://ca.example:8080/.well-known/cmp/p/x?y HTTP/1.1\r\n"
	    "Host: ca.example:8080\r\nContent-Length: 0\r\n\r\n", &rq) > 0);
	assert_string_equal(rq.target, "/.well-known/cmp/p/x");
	assert_true(parse_s("GET HTTPS://ca HTTP/1.0\r\n\r\n", &rq) > 0);
	assert_string_equal(rq.target, "/");
	assert_true(parse_s("GET http://ca?q HTTP/1.0\r\n\r\n", &rq) > 0);
	assert_string_equal(rq.target, "/");
	assert_true(parse_s("GET /?q HTTP/1.0\r\n\r\n", &rq) > 0);
	assert_string_equal(rq.target, "/");
	refused("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	refused("CONNECT ca:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	refused("GET http:///x HTTP/1.0\r\n\r\n", 400);
	refused("GET /a#frag HTTP/1.0\r\n\r\n", 400);
	refused("GET /\xc3\xa9 HTTP/1.0\r\n\r\n", 400);
}

static void
oversize_body(void **state)
{
	struct http_req rq;
	const char *s;

	/* Refused as soon as the head is in, before any body byte. */
	refused("POST / HTTP/1.0\r\nContent-Length: 65537\r\n\r\n", 413);
	assert_int_equal(parse_s("POST / HTTP/1.0\r\nContent-Length: 65536\r\n\r\n", &rq), 0);
	refused("POST / HTTP/1.0\r\nContent-Length: 18446744073709551615\r\n\r\n", 413);
	/* A huge max_body is capped, never overflowing the int result. */
	s = "POST / HTTP/1.0\r\nContent-Length: 4294967296\r\n\r\n";
	assert_int_equal(parse_n(s, strlen(s), SIZE_MAX, &rq), HSM_EPROTO);
	assert_int_equal(rq.status, 413);
}

static char *
repeat(const char *pre, int c, size_t n, const char *post)
{
	size_t a = strlen(pre), b = strlen(post);
	char *s = malloc(a + n + b + 1);

	assert_non_null(s);
	memcpy(s, pre, a);
	memset(s + a, c, n);
	memcpy(s + a + n, post, b + 1);
	return s;
}

static void
limits(void **state)
{
	struct http_req rq;
	char *s, hdrs[64 * 8 + 200];
	size_t off;
	int i;

	/* One header field making the head exceed 8 KiB. */
	s = repeat("POST / HTTP/1.0\r\nX-Big: ", 'a', HTTP_MAX_HEAD, "\r\n\r\n");
	refused(s, 431);
	free(s);
	/* A head of exactly HTTP_MAX_HEAD bytes is fine. */
	s = repeat("GET / HTTP/1.0\r\nX: ", 'a', HTTP_MAX_HEAD - 23, "\r\n\r\n");
	assert_int_equal(strlen(s), HTTP_MAX_HEAD);
	assert_int_equal(parse_s(s, &rq), HTTP_MAX_HEAD);
	free(s);
	s = repeat("GET / HTTP/1.0\r\nX: ", 'a', HTTP_MAX_HEAD - 22, "\r\n\r\n");
	refused(s, 431);
	free(s);
	/* An endless header with no CRLF: refused at the limit, not before. */
	s = repeat("GET / HTTP/1.0\r\nX: ", 'a', HTTP_MAX_HEAD - 100, "");
	assert_int_equal(parse_s(s, &rq), 0);
	free(s);
	s = repeat("GET / HTTP/1.0\r\nX: ", 'a', HTTP_MAX_HEAD, "");
	refused(s, 431);
	free(s);

	/* Request line and target. */
	s = repeat("GET /", 'a', HTTP_MAX_HEAD, " HTTP/1.0\r\n\r\n");
	refused(s, 414);
	free(s);
	s = repeat("GET /", 'a', HTTP_MAX_TARGET, " HTTP/1.0\r\n\r\n");
	refused(s, 414);
	free(s);
	s = repeat("GET /", 'a', HTTP_MAX_TARGET - 1, " HTTP/1.0\r\n\r\n");
	assert_true(parse_s(s, &rq) > 0);
	assert_int_equal(strlen(rq.target), HTTP_MAX_TARGET);
	free(s);
	s = repeat("", 'G', HTTP_MAX_METHOD + 1, " / HTTP/1.0\r\n\r\n");
	refused(s, 501);
	free(s);

	/* 64 header fields pass, 65 do not. */
	off = (size_t)snprintf(hdrs, sizeof(hdrs), "GET / HTTP/1.0\r\n");
	for (i = 0; i < HTTP_MAX_HEADERS; i++)
		off += (size_t)snprintf(hdrs + off, sizeof(hdrs) - off, "X%d: v\r\n", i);
	snprintf(hdrs + off, sizeof(hdrs) - off, "\r\n");
	assert_true(parse_s(hdrs, &rq) > 0);
	snprintf(hdrs + off, sizeof(hdrs) - off, "Y: v\r\n\r\n");
	refused(hdrs, 431);
}

static void
length_rules(void **state)
{
	struct http_req rq;
	const char *s;

	refused("POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411);
	refused("POST / HTTP/1.0\r\nContent-Type: application/pkixcmp\r\n\r\n", 411);
	refused("PUT / HTTP/1.0\r\n\r\n", 411);

	/* Transfer-Encoding, chunked or not, with or without a length. */
	refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
	refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
	    "transfer-encoding: gzip, chunked\r\n\r\nabc", 501);
	refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n"
	    "Content-Length: 3\r\n\r\nabc", 501);

	/* Repeats of the same value are allowed; different ones are not. */
	s = "POST / HTTP/1.0\r\nContent-Length: 3\r\ncontent-length:   3 \r\n\r\nabc";
	assert_int_equal(parse_s(s, &rq), (int)strlen(s));
	assert_int_equal(rq.body_len, 3);
	s = "POST / HTTP/1.0\r\nContent-Length: 003\r\n\r\nabc";
	assert_int_equal(parse_s(s, &rq), (int)strlen(s));
	refused("POST / HTTP/1.0\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400);
	refused("POST / HTTP/1.0\r\nContent-Length: 3, 3\r\n\r\nabc", 400);

	/* Only digits, and no overflow. */
	refused("POST / HTTP/1.0\r\nContent-Length: -1\r\n\r\n", 400);
	refused("POST / HTTP/1.0\r\nContent-Length: +3\r\n\r\nabc", 400);
	refused("POST / HTTP/1.0\r\nContent-Length: 0x10\r\n\r\n", 400);
	refused("POST / HTTP/1.0\r\nContent-Length: 1 2\r\n\r\n", 400);
	refused("POST / HTTP/1.0\r\nContent-Length:\r\n\r\n", 400);
	refused("POST / HTTP/1.0\r\nContent-Length: 18446744073709551616\r\n\r\n", 400);
	refused("POST / HTTP/1.0\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 400);
}

static void
versions(void **state)
{
	refused("POST / HTTP/2.0\r\nContent-Length: 0\r\n\r\n", 505);
	refused("POST / HTTP/1.2\r\nContent-Length: 0\r\n\r\n", 505);
	refused("GET / HTTP/0.9\r\n\r\n", 505);
	refused("GET / HTTP/1.1x\r\n\r\n", 400);
	refused("GET / http/1.1\r\n\r\n", 400);
	refused("GET / HTTP/1\r\n\r\n", 400);
	refused("GET / HTTP/11.1\r\n\r\n", 400);
	refused("GET /\r\n\r\n", 400);
	/* HTTP/1.1 needs exactly one Host; 1.0 does not. */
	refused("GET / HTTP/1.1\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
}

static void
garbage(void **state)
{
	struct http_req rq;
	static const uint8_t tls[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc };

	/* A TLS ClientHello is refused at once, not after 8 KiB. */
	assert_int_equal(parse_n(tls, sizeof(tls), MAXB, &rq), HSM_EPROTO);
	assert_int_equal(rq.status, 400);
	refused("hello world\r\n", 400);
	refused("GET\r\n", 400);
	refused("\r\nGET / HTTP/1.0\r\n\r\n", 400);
	refused(" GET / HTTP/1.0\r\n\r\n", 400);
	refused("GET  / HTTP/1.0\r\n\r\n", 400);
	refused("GET / HTTP/1.0 \r\n\r\n", 400);
	refused("G(T / HTTP/1.0\r\n\r\n", 400);
	refused("GET x HTTP/1.0\r\n\r\n", 400);
	refused("GET / HTTP/1.0\r\nNoColon\r\n\r\n", 400);
	refused("GET / HTTP/1.0\r\nName : v\r\n\r\n", 400);
	refused("GET / HTTP/1.0\r\n: v\r\n\r\n", 400);
	refused("GET / HTTP/1.0\r\nA: b\r\n continued\r\n\r\n", 400);
	refused("POST / HTTP/1.0\r\nContent-Type: a\r\nContent-Type: b\r\n"
	    "Content-Length: 0\r\n\r\n", 400);
	refused("GET / HTTP/1.0\r\nA: b\x7f\r\n\r\n", 400);
	assert_int_equal(parse_n("", 0, MAXB, &rq), 0);
	assert_int_equal(http_parse(NULL, 0, MAXB, &rq), 0);
}

static void
line_endings(void **state)
{
	struct http_req rq;

	/* Strict: CRLF only. */
	refused("GET / HTTP/1.0\n\n", 400);
	refused("GET / HTTP/1.0\r\nHost: x\n\r\n", 400);
	refused("GET / HTTP/1.0\r\n\n", 400);
	refused("GET / HTTP/1.0\rHost: x\r\n\r\n", 400);
	/* Refused before the request is complete. */
	refused("GET / HTTP/1.0\n", 400);
	/* A CR at the end is a prefix. */
	assert_int_equal(parse_s("GET / HTTP/1.0\r", &rq), 0);
	assert_int_equal(parse_s("GET / HTTP/1.0\r\n\r", &rq), 0);
	/* HT is allowed in a value. */
	assert_true(parse_s("GET / HTTP/1.0\r\nX:\tv\tw\t\r\n\r\n", &rq) > 0);
}

static void
nul_bytes(void **state)
{
	struct http_req rq;
	static const char a[] = "GET / HTTP/1.0\r\nX: a\0b\r\n\r\n";
	static const char b[] = "POST / HTTP/1.0\r\nContent-Type: application/pkixcmp\0\r\n"
	    "Content-Length: 0\r\n\r\n";
	static const char c[] = "GET / HTTP/1.0\r\nX: a\0";
	static const char d[] = "GE\0T / HTTP/1.0\r\n\r\n";

	assert_int_equal(parse_n(a, sizeof(a) - 1, MAXB, &rq), HSM_EPROTO);
	assert_int_equal(rq.status, 400);
	assert_int_equal(parse_n(b, sizeof(b) - 1, MAXB, &rq), HSM_EPROTO);
	assert_int_equal(rq.status, 400);
	/* Even an unfinished line. */
	assert_int_equal(parse_n(c, sizeof(c) - 1, MAXB, &rq), HSM_EPROTO);
	assert_int_equal(rq.status, 400);
	assert_int_equal(parse_n(d, sizeof(d) - 1, MAXB, &rq), HSM_EPROTO);
	assert_int_equal(rq.status, 400);
	assert_non_null(strstr(hsm_err_detail(), "control character"));
}

static void
responses(void **state)
{
	static const char want[] = "HTTP/1.1 200 OK\r\nContent-Type: application/pkixcmp\r\n"
	    "Content-Length: 3\r\nConnection: close\r\nCache-Control: no-cache\r\n\r\n\x30\x01\x00";
	uint8_t out[512], big[600];
	size_t n = 99, need = sizeof(want) - 1;

	assert_int_equal(http_response(out, sizeof(out), 200, HTTP_CT_PKIXCMP,
	    (const uint8_t *)"\x30\x01\x00", 3, &n), 0);
	assert_int_equal(n, need);
	assert_memory_equal(out, want, need);
	/* Exactly enough room is enough; one byte less is not. */
	assert_int_equal(http_response(out, need, 200, HTTP_CT_PKIXCMP,
	    (const uint8_t *)"\x30\x01\x00", 3, &n), 0);
	assert_int_equal(http_response(out, need - 1, 200, HTTP_CT_PKIXCMP,
	    (const uint8_t *)"\x30\x01\x00", 3, &n), HSM_EINVAL);
	assert_int_equal(n, 0);

	assert_int_equal(http_response(out, sizeof(out), 405, NULL, NULL, 0, &n), 0);
	out[n] = '\0';
	assert_string_equal((char *)out, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n"
	    "Allow: POST\r\nConnection: close\r\nCache-Control: no-cache\r\n\r\n");
	assert_int_equal(http_response(out, sizeof(out), 413, "text/plain",
	    (const uint8_t *)"too big\n", 8, &n), 0);
	assert_int_equal(memcmp(out, "HTTP/1.1 413 Content Too Large\r\n", 32), 0);

	assert_int_equal(http_response(out, sizeof(out), 299, NULL, NULL, 0, &n), HSM_EINVAL);
	assert_int_equal(http_response(out, sizeof(out), 200, "a\r\nSet-Cookie: x", NULL, 0, &n),
	    HSM_EINVAL);
	assert_int_equal(http_response(out, sizeof(out), 200, NULL, NULL, 1, &n), HSM_EINVAL);
	memset(big, 'x', sizeof(big));
	assert_int_equal(http_response(out, sizeof(out), 200, NULL, big, sizeof(big), &n),
	    HSM_EINVAL);
	assert_non_null(http_reason(431));
	assert_null(http_reason(0));
}

struct reader {
	int fd;
	size_t got;
};

static void *
drain(void *p)
{
	struct reader *rd = p;
	uint8_t buf[4096];
	ssize_t r;

	usleep(50000);
	while ((r = read(rd->fd, buf, sizeof(buf))) > 0)
		rd->got += (size_t)r;
	return NULL;
}

static void
write_all(void **state)
{
	static uint8_t data[1 << 20];
	struct reader rd;
	pthread_t th;
	int sv[2];

	/* Non-blocking sender, slow reader: everything arrives. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	rd.fd = sv[1];
	rd.got = 0;
	assert_int_equal(pthread_create(&th, NULL, drain, &rd), 0);
	assert_int_equal(http_write_all(sv[0], data, sizeof(data), 5000), 0);
	close(sv[0]);
	pthread_join(th, NULL);
	assert_int_equal(rd.got, sizeof(data));
	close(sv[1]);

	/* Nobody reads: a deadline. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(http_write_all(sv[0], data, sizeof(data), 100), HSM_ETIMEDOUT);
	/* Peer gone: no SIGPIPE, a clear error. */
	close(sv[1]);
	assert_int_equal(http_write_all(sv[0], data, 10, 100), HSM_ECLOSED);
	close(sv[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_post_every_split),
		cmocka_unit_test(pipelined),
		cmocka_unit_test(no_body_requests),
		cmocka_unit_test(targets),
		cmocka_unit_test(oversize_body),
		cmocka_unit_test(limits),
		cmocka_unit_test(length_rules),
		cmocka_unit_test(versions),
		cmocka_unit_test(garbage),
		cmocka_unit_test(line_endings),
		cmocka_unit_test(nul_bytes),
		cmocka_unit_test(responses),
		cmocka_unit_test(write_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
