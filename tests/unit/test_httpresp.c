/* test_httpresp.c - the HTTP response parser of `hsmesh app get`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "httpresp.h"

/* Head of s from an exact-size heap copy, so ASan sees any over-read. */
static int
head(const char *s, int head_req, struct httpresp *r)
{
	size_t n = strlen(s);
	uint8_t *b = malloc(n ? n : 1);
	int h;

	assert_non_null(b);
	memcpy(b, s, n);
	h = httpresp_head(b, n, head_req, r);
	free(b);
	return h;
}

/* The whole body of s after its head, fed step bytes at a time; returns 1/0/error. */
static int
body(const char *s, size_t step, char *out, size_t cap, size_t *outlen)
{
	struct httpresp r;
	size_t n = strlen(s), off, used, dlen;
	const uint8_t *d;
	int h = head(s, 0, &r), st = 0;

	assert_true(h > 0);
	*outlen = 0;
	for (off = (size_t)h; off < n;) {
		size_t avail = n - off < step ? n - off : step;

		st = httpresp_body(&r, (const uint8_t *)s + off, avail, &used, &d, &dlen);
		if (st < 0)
			return st;
		assert_true(*outlen + dlen <= cap);
		if (dlen > 0)
			memcpy(out + *outlen, d, dlen);
		*outlen += dlen;
		off += used;
		if (st == 1)
			break;
		if (used == 0) {
			if (avail == n - off)
				break;
			step++;
		}
	}
	if (st == 0 && off == n)
		st = httpresp_complete(&r) ? 1 : (httpresp_eof(&r) == 1 ? 1 : 0);
	return st;
}

static void
heads(void **state)
{
	struct httpresp r;

	assert_true(head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0, &r) > 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.framing, HTTPRESP_LENGTH);
	assert_int_equal(r.length, 5);
	assert_false(r.conn_close);
	assert_true(head("HTTP/1.1 204 No Content\r\n\r\n", 0, &r) > 0);
	assert_int_equal(r.framing, HTTPRESP_NOBODY);
	assert_true(head("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", 1, &r) > 0);
	assert_int_equal(r.framing, HTTPRESP_NOBODY);
	assert_true(head("HTTP/1.0 200 OK\r\n\r\n", 0, &r) > 0);
	assert_int_equal(r.framing, HTTPRESP_UNTIL_CLOSE);
	assert_true(r.conn_close);
	assert_true(head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 0, &r) > 0);
	assert_true(r.conn_close);
	/* prefixes ask for more */
	assert_int_equal(head("HTTP/1.1 200 OK\r\nContent-Le", 0, &r), 0);
	assert_int_equal(head("", 0, &r), 0);
}

static void
refusals(void **state)
{
	static const char *const bad[] = {
		"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",		/* bare LF */
		"HTTP/2.0 200 OK\r\n\r\n",
		"HTTP/1.1 99 Low\r\n\r\n",
		"HTTP/1.1 600 High\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
		"garbage\r\n\r\n",
		NULL,
	};
	struct httpresp r;
	char *big;

	for (int i = 0; bad[i] != NULL; i++) {
		hsm_err_clear();
		assert_int_equal(head(bad[i], 0, &r), HSM_EPROTO);
		assert_true(strlen(hsm_err_detail()) > 0);
	}
	/* a head over the limit */
	big = malloc(HTTPRESP_MAX_HEAD + 64);
	assert_non_null(big);
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(big + 20, 'a', HTTPRESP_MAX_HEAD);
	big[HTTPRESP_MAX_HEAD + 20] = '\0';
	assert_int_equal(head(big, 0, &r), HSM_EPROTO);
	free(big);
}

static void
bodies(void **state)
{
	static const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";
	char out[64];
	size_t n;

	for (size_t step = 1; step < 80; step += 3) {
		assert_int_equal(body("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT", step,
		    out, sizeof(out), &n), 1);
		assert_int_equal(n, 5);
		assert_memory_equal(out, "hello", 5);
		assert_int_equal(body(chunked, step, out, sizeof(out), &n), 1);
		assert_int_equal(n, 12);
		assert_memory_equal(out, "hello, world", 12);
	}
	assert_int_equal(body("HTTP/1.0 200 OK\r\n\r\nuntil the end", 4, out, sizeof(out), &n), 1);
	assert_int_equal(n, 13);
	/* bad chunk framing */
	assert_int_equal(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 100,
	    out, sizeof(out), &n), HSM_EPROTO);
	assert_int_equal(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "1234567890abcdef0\r\n", 100, out, sizeof(out), &n), HSM_EPROTO);
}

static void
truncation(void **state)
{
	struct httpresp r;
	size_t used, dlen;
	const uint8_t *d;
	static const char s[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf";
	int h = head(s, 0, &r);

	assert_true(h > 0);
	assert_int_equal(httpresp_body(&r, (const uint8_t *)s + h, strlen(s) - (size_t)h, &used,
	    &d, &dlen), 0);
	assert_int_equal(dlen, 4);
	assert_false(httpresp_complete(&r));
	assert_int_equal(httpresp_eof(&r), HSM_EPROTO);
}

static void
prefixes(void **state)
{
	static const char s[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	    "Content-Length: 3\r\n\r\n";
	struct httpresp r;
	char buf[sizeof(s)];

	/* Every proper prefix of a good head is "need more", never an error. */
	for (size_t i = 0; i < sizeof(s) - 1; i++) {
		memcpy(buf, s, i);
		buf[i] = '\0';
		assert_int_equal(head(buf, 0, &r), 0);
	}
	assert_int_equal(head(s, 0, &r), (int)sizeof(s) - 1);
	/* An interim response has no body; HTTP/1.0 keep-alive stays open. */
	assert_true(head("HTTP/1.1 100 Continue\r\n\r\n", 0, &r) > 0);
	assert_int_equal(r.framing, HTTPRESP_NOBODY);
	assert_true(httpresp_complete(&r));
	assert_true(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
	    0, &r) > 0);
	assert_false(r.conn_close);
	assert_true(httpresp_complete(&r));
	assert_true(head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
	    0, &r) > 0);
	assert_true(r.conn_close);
}

static void
framing_errors(void **state)
{
	static const char *const bad[] = {
		"HTTP/1.1 200 OK\r\nX\x01: y\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
		"HTTP/1.1 200 OK\rX: y\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		NULL,
	};
	static const char *const badbody[] = {
		"3\r\nabcX\r\n0\r\n\r\n",		/* data not followed by CRLF */
		"3\nabc\r\n",				/* bare LF after the size */
		";x\r\n",				/* no size */
		"0\r\nX: \x02\r\n\r\n",			/* control character in a trailer */
		NULL,
	};
	static const char th[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	struct httpresp r;
	char buf[256], out[64], *big;
	size_t n, used, dlen;
	const uint8_t *d;
	int h;

	for (int i = 0; bad[i] != NULL; i++)
		assert_int_equal(head(bad[i], 0, &r), HSM_EPROTO);
	for (int i = 0; badbody[i] != NULL; i++) {
		snprintf(buf, sizeof(buf), "%s%s", th, badbody[i]);
		assert_int_equal(body(buf, 1, out, sizeof(out), &n), HSM_EPROTO);
	}
	/* A chunk-size line and a trailer are bounded, and an error sticks. */
	big = malloc(HTTPRESP_MAX_HEAD * 2);
	assert_non_null(big);
	h = head(th, 0, &r);
	assert_true(h > 0);
	memset(big, ' ', HTTPRESP_MAX_LINE + 2);
	big[0] = '1';
	big[1] = ';';
	assert_int_equal(httpresp_body(&r, (uint8_t *)big, HTTPRESP_MAX_LINE + 2, &used, &d, &dlen),
	    HSM_EPROTO);
	assert_int_equal(httpresp_body(&r, (const uint8_t *)"\r\n", 2, &used, &d, &dlen), HSM_EPROTO);
	assert_int_equal(httpresp_eof(&r), HSM_EPROTO);
	h = head(th, 0, &r);
	memcpy(big, "0\r\n", 3);
	for (n = 3; n < HTTPRESP_MAX_HEAD * 2 - 3; n += 4)
		memcpy(big + n, "X:y\r\n", 4);
	assert_int_equal(httpresp_body(&r, (uint8_t *)big, n, &used, &d, &dlen), HSM_EPROTO);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(heads),
		cmocka_unit_test(refusals),
		cmocka_unit_test(bodies),
		cmocka_unit_test(truncation),
		cmocka_unit_test(prefixes),
		cmocka_unit_test(framing_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
