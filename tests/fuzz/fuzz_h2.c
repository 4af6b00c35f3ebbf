/*
 * fuzz_h2.c - the HTTP/2 adapter (h2.c around libnghttp2): any bytes
 * from a peer, to a server connection and to a client connection that
 * has sent two requests, fed whole or in pieces, by an application that
 * reads at once or lags behind, answers, resets and gives streams back.
 * Never a crash, a leak or an overrun, and the buffering stays bounded:
 * what a stream holds never exceeds its window, what the connection
 * holds never exceeds the connection window, the handles alive stay
 * within the stream limit, and the bytes produced per feed are bounded.
 *
 * Input: byte 0: bit 0 client (else server), bit 1 slow reader, bit 2
 * server: the client preface is sent for the input (so the frames after
 * it are reached), bit 3 the application resets what it is given; byte 1
 * the piece size (0: whole); the rest is what the peer sends.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "h2.h"
#include "hmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXH 512
#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

struct app {
	struct h2 *h;
	struct h2_limits lim;
	struct h2_stream *st[MAXH];	/* handles lent to us */
	size_t n;
	int slow, resets, role;
};

static void
keep(struct app *a, struct h2_stream *st)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		if (a->st[i] == st)
			return;
	if (a->n == MAXH)
		abort();	/* more handles than the limits allow */
	a->st[a->n++] = st;
}

static void
give_back(struct app *a, struct h2_stream *st)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		if (a->st[i] == st) {
			a->st[i] = a->st[--a->n];
			break;
		}
	h2_stream_done(a->h, st);
}

static void
take(struct app *a, struct h2_stream *st, size_t max)
{
	const uint8_t *p;
	size_t n;

	h2_peek(a->h, st, &p, &n);
	if (n > a->lim.stream_window)
		abort();
	if (n > 0 && p == NULL)
		abort();
	h2_consume(a->h, st, n < max ? n : max);
}

static void
on_head(void *arg, struct h2_stream *st, struct hmsg *m, int end, int refuse)
{
	struct app *a = arg;
	struct hmsg r;

	keep(a, st);
	if (a->role == H2_CLIENT)
		return;
	if (a->resets) {
		h2_reset(a->h, st, H2_CANCEL);
		return;
	}
	/* answer every request at once: refusals as the adapter asked, else a short body */
	hmsg_init(&r, 0);
	r.status = refuse ? refuse : 200;
	if (hmsg_add(&r, "content-type", 12, "text/plain", 10) == 0 &&
	    h2_response(a->h, st, &r, refuse != 0) == 0 && !refuse) {
		size_t n;

		h2_write(a->h, st, (const uint8_t *)"hello", 5, &n);
		h2_end(a->h, st, NULL);
	}
	hmsg_clear(&r);
}

static void
on_data(void *arg, struct h2_stream *st)
{
	struct app *a = arg;

	if (!a->slow)
		take(a, st, SIZE_MAX);
}

static void
on_close(void *arg, struct h2_stream *st, uint32_t code)
{
	struct app *a = arg;

	if (!a->slow)
		give_back(a, st);
}

static const struct h2_ops ops = {
	.head = on_head, .data = on_data, .close = on_close,
};

/* Everything the connection has to send now, bounded. */
static void
drain(struct app *a)
{
	uint8_t buf[16384];
	size_t n, total = 0;

	do {
		if (h2_drain(a->h, buf, sizeof(buf), &n) != 0)
			return;
		total += n;
		if (total > 64u << 20)
			abort();	/* output without bound */
	} while (n > 0);
}

static void
check(struct app *a)
{
	struct h2_stats s;
	size_t i, in, out;

	h2_get_stats(a->h, &s);
	if (s.buffered_in > a->lim.conn_window || s.streams > 2 * (size_t)a->lim.max_streams + 2)
		abort();
	for (i = 0; i < a->n; i++) {
		h2_stream_buffered(a->st[i], &in, &out);
		if (in > a->lim.stream_window || out > a->lim.send_buffer)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct app a;
	struct hmsg m;
	struct h2_stream *st;
	size_t step, off, k, i, n;

	if (size < 2)
		return 0;
	memset(&a, 0, sizeof(a));
	a.role = data[0] & 1 ? H2_CLIENT : H2_SERVER;
	a.slow = (data[0] & 2) != 0;
	a.resets = (data[0] & 8) != 0;
	h2_limits_default(&a.lim);
	a.lim.max_streams = 8;
	a.lim.max_headers = 20;
	a.lim.max_header_bytes = 2048;
	a.lim.conn_window = 2 * H2_DEFAULT_WINDOW;
	a.lim.send_buffer = 4096;
	step = data[1];
	data += 2;
	size -= 2;
	if (h2_new(a.role, &a.lim, &ops, &a, &a.h) != 0)
		return 0;
	if (a.role == H2_CLIENT) {
		/* two requests out: a GET, and a POST with a body still coming */
		hmsg_init(&m, 1);
		if (hmsg_set(&m, HMSG_METHOD, "GET", 3) == 0 && hmsg_set(&m, HMSG_SCHEME, "https",
		    5) == 0 && hmsg_set(&m, HMSG_PATH, "/", 1) == 0 &&
		    hmsg_set(&m, HMSG_AUTHORITY, "smf", 3) == 0 &&
		    h2_request(a.h, &m, 1, NULL, &st) == 0)
			keep(&a, st);
		if (hmsg_set(&m, HMSG_METHOD, "POST", 4) == 0 &&
		    h2_request(a.h, &m, 0, NULL, &st) == 0) {
			keep(&a, st);
			h2_write(a.h, st, (const uint8_t *)"body", 4, &n);
		}
		hmsg_clear(&m);
	} else if (data[-2] & 4) {
		h2_feed(a.h, (const uint8_t *)PREFACE, sizeof(PREFACE) - 1);
	}
	drain(&a);
	for (off = 0; off < size; off += k) {
		k = step == 0 || size - off < step ? size - off : step;
		if (h2_feed(a.h, data + off, k) != 0)
			break;
		check(&a);
		drain(&a);
		/* a slow reader takes a little of each stream now and then */
		for (i = 0; a.slow && i < a.n; i++)
			take(&a, a.st[i], 100);
		check(&a);
	}
	drain(&a);
	while (a.n > 0)
		give_back(&a, a.st[0]);
	drain(&a);
	check(&a);
	h2_free(a.h);
	return 0;
}
