/*
 * fuzz_metrics_http.c - the metrics endpoint: any bytes get "read more" or
 * one well-formed, self-consistent response, never a crash or an overrun;
 * and the same bytes sent to the /metrics server (metrics_srv) over a
 * socketpair in two pieces, then an EOF, get exactly the answer the
 * server's buffering calls for (the answer to the first piece if that is
 * a whole request, else to both within the request buffer), or none.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "http.h"
#include "metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct metrics *reg;
static struct metrics_srv *srv;

/* A registry with a series of each type, labels that need escaping included. */
static void
setup(void)
{
	static const double bounds[] = { 0.001, 0.1, 1 };
	struct metric *s;

	if (metrics_new(&reg) != 0 ||
	    metrics_get(reg, METRIC_COUNTER, "fz_requests_total", "Requests\\n \"all\"",
	    (const char *const[]){ "listener", "a\"b\\c\nd", NULL }, &s) != 0)
		abort();
	metric_add(s, 12345);
	if (metrics_get(reg, METRIC_GAUGE, "fz_active", "Open now.", NULL, &s) != 0)
		abort();
	metric_gauge_add(s, -2);
	if (metrics_histogram(reg, "fz_seconds", "Latency.", bounds, 3,
	    (const char *const[]){ "listener", "web", NULL }, &s) != 0)
		abort();
	metric_observe(s, 0.05);
	metric_observe(s, 7);
	if (metrics_srv_new(reg, -1, &srv) != 0)
		abort();
}

/* Write all of buf to the non-blocking fd (the socketpair holds far more than we send). */
static void
put(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n <= 0)
			abort();
		buf += n;
		len -= (size_t)n;
	}
}

/*
 * What the server must answer when it reads a then b (each read takes what
 * is there, up to the room left in its HTTP_MAX_HEAD buffer). *out is
 * malloc'd, or NULL with *olen 0 when the server must close without one.
 */
static void
expected(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, uint8_t **out,
    size_t *olen)
{
	static uint8_t buf[HTTP_MAX_HEAD];
	size_t len = alen < sizeof(buf) ? alen : sizeof(buf), more;
	int r;

	*out = NULL;
	*olen = 0;
	memcpy(buf, a, len);
	if (len > 0 && (r = metrics_http_answer(reg, buf, len, out, olen)) != HSM_EAGAIN)
		return;
	more = blen < sizeof(buf) - len ? blen : sizeof(buf) - len;
	if (more == 0)
		return;		/* the next read is the EOF: closed without an answer */
	memcpy(buf + len, b, more);
	len += more;
	if ((r = metrics_http_answer(reg, buf, len, out, olen)) == HSM_EAGAIN) {
		if (len >= sizeof(buf))
			abort();	/* a full buffer always has an answer */
		*out = NULL;
		*olen = 0;
	}
}

/* Feed data to the server in two pieces and an EOF; compare what comes back. */
static void
through_server(const uint8_t *data, size_t size)
{
	static uint8_t got[1 << 16];
	size_t cut = size > 0 ? data[0] % (size + 1) : 0, glen = 0, wlen;
	uint8_t *want = NULL;
	ssize_t n;
	int sv[2];

	if (size > 3 * HTTP_MAX_HEAD)
		size = 3 * HTTP_MAX_HEAD;
	if (cut > size)
		cut = size;
	expected(data, cut, data + cut, size - cut, &want, &wlen);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0 ||
	    metrics_srv_adopt(srv, sv[0], 0) != 0)
		abort();
	put(sv[1], data, cut);
	metrics_srv_run(srv, 0);
	/* the second piece only if the server is still reading (it closed after answering) */
	n = recv(sv[1], got, sizeof(got), MSG_PEEK);
	if (n < 0 && errno == EAGAIN) {
		put(sv[1], data + cut, size - cut);
		metrics_srv_run(srv, 0);
	}
	shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 8; i++) {
		metrics_srv_run(srv, 0);
		while ((n = read(sv[1], got + glen, sizeof(got) - glen)) > 0)
			glen += (size_t)n;
		if (n == 0)
			break;
	}
	if (n != 0)
		abort();	/* the server always closes */
	if (glen != wlen || (wlen > 0 && memcmp(got, want, wlen) != 0))
		abort();
	free(want);
	close(sv[1]);
}

/* The decimal number at p (digits up to CR), or -1. */
static long
number(const uint8_t *p, const uint8_t *end)
{
	long v = 0;

	if (p >= end || *p < '0' || *p > '9')
		return -1;
	for (; p < end && *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (*p - '0');
	return p < end && *p == '\r' ? v : -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char ok[] = "HTTP/1.1 ";
	const uint8_t *head_end, *cl;
	uint8_t *resp = NULL;
	size_t rlen = 0, hlen;
	long status, clen;
	int r;

	if (reg == NULL)
		setup();
	r = metrics_http_answer(reg, data, size, &resp, &rlen);
	if (r == HSM_EAGAIN) {
		/* Only a prefix shorter than the head limit waits for more. */
		if (resp != NULL || rlen != 0 || size >= HTTP_MAX_HEAD)
			abort();
		through_server(data, size);
		return 0;
	}
	if (r != 0 || resp == NULL || rlen < sizeof(ok) + 3)
		abort();
	if (memcmp(resp, ok, sizeof(ok) - 1) != 0)
		abort();
	status = (resp[9] - '0') * 100 + (resp[10] - '0') * 10 + (resp[11] - '0');
	switch (status) {
	case 200: case 400: case 404: case 405: case 411: case 413: case 414: case 431:
	case 501: case 505:
		break;
	default:
		abort();
	}
	/* One head, closing the connection, whose Content-Length frames the body. */
	if ((head_end = memmem(resp, rlen, "\r\n\r\n", 4)) == NULL)
		abort();
	hlen = (size_t)(head_end - resp) + 4;
	if (memmem(resp, hlen, "\r\nConnection: close\r\n", 21) == NULL ||
	    (cl = memmem(resp, hlen, "\r\nContent-Length: ", 18)) == NULL ||
	    (clen = number(cl + 18, head_end + 2)) < 0)
		abort();
	/* The body is all there, or absent when the request was HEAD. */
	if (rlen - hlen != (size_t)clen && rlen != hlen)
		abort();
	if (rlen == hlen && clen > 0 && (size < 5 || memcmp(data, "HEAD ", 5) != 0))
		abort();
	free(resp);
	through_server(data, size);
	return 0;
}
