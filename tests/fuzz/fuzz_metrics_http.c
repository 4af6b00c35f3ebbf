/*
 * fuzz_metrics_http.c - the metrics endpoint: any bytes get "read more" or
 * one well-formed, self-consistent response, never a crash or an overrun.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "http.h"
#include "metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct metrics *reg;

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
	return 0;
}
