/*
 * test_h2.c - the HTTP/2 adapter around libnghttp2: two real sessions
 * talking through memory and through a socketpair, flow control with a
 * slow reader, limits, resets, GOAWAY, garbage; and real clients (nghttp,
 * curl --http2-prior-knowledge) against an adapter serving on loopback.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "err.h"
#include "h2.h"
#include "hmsg.h"
#include "util.h"
#include "xfcc.h"

#define MAXS 64

/* What one side saw of one stream. */
struct seen {
	struct h2_stream *st;
	struct hmsg head, info, trailers;	/* final head, a 1xx, trailers */
	int nhead, end, closed, refuse, head_end;
	uint32_t code;
	uint8_t *body;
	size_t nbody, capbody;
	uint64_t sum;		/* of the body bytes, weighted by position */
};

struct side {
	struct h2 *h;
	enum h2_role role;
	struct seen s[MAXS];
	size_t n;
	int consume;		/* take body bytes as they come (0: a slow reader) */
	int rooms, goaways;
	int32_t goaway_last;
	uint32_t goaway_code;
	int auto_respond;	/* server: answer 200 "ok" to each request at its end */
};

static struct seen *
seen_of(struct side *sd, struct h2_stream *st)
{
	size_t i;

	for (i = 0; i < sd->n; i++)
		if (sd->s[i].st == st)
			return &sd->s[i];
	assert_true(sd->n < MAXS);
	memset(&sd->s[sd->n], 0, sizeof(sd->s[0]));
	sd->s[sd->n].st = st;
	hmsg_init(&sd->s[sd->n].head, sd->role == H2_SERVER);
	hmsg_init(&sd->s[sd->n].info, 0);
	hmsg_init(&sd->s[sd->n].trailers, 0);
	return &sd->s[sd->n++];
}

/* Take what st holds into the record (all of it, or at most max). */
static void
take(struct side *sd, struct seen *x, size_t max)
{
	const uint8_t *p;
	size_t n, i;

	h2_peek(sd->h, x->st, &p, &n);
	if (n > max)
		n = max;
	if (n == 0)
		return;
	if (x->nbody + n > x->capbody) {
		x->capbody = (x->nbody + n) * 2;
		x->body = realloc(x->body, x->capbody);
		assert_non_null(x->body);
	}
	memcpy(x->body + x->nbody, p, n);
	for (i = 0; i < n; i++)
		x->sum += (uint64_t)p[i] * (x->nbody + i + 1);
	x->nbody += n;
	h2_consume(sd->h, x->st, n);
}

static void
cb_head(void *arg, struct h2_stream *st, struct hmsg *m, int end, int refuse)
{
	struct side *sd = arg;
	struct seen *x = seen_of(sd, st);

	if (!m->request && m->status < 200) {
		hmsg_move(&x->info, m);
		return;
	}
	x->nhead++;
	x->refuse = refuse;
	x->head_end = end;
	hmsg_move(&x->head, m);
}

static void
cb_data(void *arg, struct h2_stream *st)
{
	struct side *sd = arg;

	if (sd->consume)
		take(sd, seen_of(sd, st), SIZE_MAX);
}

static void
respond_ok(struct side *sd, struct h2_stream *st)
{
	struct hmsg r;
	size_t n;

	hmsg_init(&r, 0);
	r.status = 200;
	assert_int_equal(hmsg_add(&r, "content-type", 12, "text/plain", 10), 0);
	assert_int_equal(h2_response(sd->h, st, &r, 0), 0);
	assert_int_equal(h2_write(sd->h, st, (const uint8_t *)"ok", 2, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(h2_end(sd->h, st, NULL), 0);
	hmsg_clear(&r);
}

static void
cb_end(void *arg, struct h2_stream *st, struct hmsg *t)
{
	struct side *sd = arg;
	struct seen *x = seen_of(sd, st);

	x->end++;
	if (t != NULL)
		hmsg_move(&x->trailers, t);
	if (sd->auto_respond)
		respond_ok(sd, st);
}

static void
cb_room(void *arg, struct h2_stream *st)
{
	((struct side *)arg)->rooms++;
}

static void
cb_close(void *arg, struct h2_stream *st, uint32_t code)
{
	struct side *sd = arg;
	struct seen *x = seen_of(sd, st);

	x->closed++;
	x->code = code;
}

static void
cb_goaway(void *arg, int32_t last, uint32_t code)
{
	struct side *sd = arg;

	sd->goaways++;
	sd->goaway_last = last;
	sd->goaway_code = code;
}

static const struct h2_ops ops = {
	.head = cb_head, .data = cb_data, .end = cb_end, .room = cb_room, .close = cb_close,
	.goaway = cb_goaway,
};

static void
side_new(struct side *sd, enum h2_role role, const struct h2_limits *lim)
{
	memset(sd, 0, sizeof(*sd));
	sd->role = role;
	sd->consume = 1;
	assert_int_equal(h2_new(role, lim, &ops, sd, &sd->h), 0);
}

static void
side_free(struct side *sd)
{
	size_t i;

	for (i = 0; i < sd->n; i++) {
		hmsg_clear(&sd->s[i].head);
		hmsg_clear(&sd->s[i].info);
		hmsg_clear(&sd->s[i].trailers);
		free(sd->s[i].body);
	}
	h2_free(sd->h);
	sd->h = NULL;
}

/* Move bytes between a and b through memory until neither has any to send. */
static void
pump(struct side *a, struct side *b)
{
	uint8_t buf[16384];
	size_t n;
	int moved, rounds = 0;

	do {
		moved = 0;
		assert_int_equal(h2_drain(a->h, buf, sizeof(buf), &n), 0);
		if (n > 0) {
			assert_int_equal(h2_feed(b->h, buf, n), 0);
			moved = 1;
		}
		assert_int_equal(h2_drain(b->h, buf, sizeof(buf), &n), 0);
		if (n > 0) {
			assert_int_equal(h2_feed(a->h, buf, n), 0);
			moved = 1;
		}
		assert_true(++rounds < 100000);
	} while (moved);
}

static void
request(struct hmsg *m, const char *method, const char *path)
{
	hmsg_init(m, 1);
	assert_int_equal(hmsg_set(m, HMSG_METHOD, method, strlen(method)), 0);
	assert_int_equal(hmsg_set(m, HMSG_SCHEME, "https", 5), 0);
	assert_int_equal(hmsg_set(m, HMSG_AUTHORITY, "smf.example", 11), 0);
	assert_int_equal(hmsg_set(m, HMSG_PATH, path, strlen(path)), 0);
}

static void
get_and_trailers(void **state)
{
	struct side c, s;
	struct h2_stream *st;
	struct hmsg m, t;
	struct h2_stats stats;
	struct seen *x;
	size_t n;

	side_new(&c, H2_CLIENT, NULL);
	side_new(&s, H2_SERVER, NULL);
	request(&m, "GET", "/nnrf-nfm/v1/nf-instances?limit=1");
	assert_int_equal(hmsg_add(&m, "accept", 6, "application/json", 16), 0);
	assert_int_equal(hmsg_add(&m, "cookie", 6, "a=1", 3), 0);
	assert_int_equal(hmsg_add(&m, "cookie", 6, "b=2", 3), 0);
	assert_int_equal(hmsg_add(&m, "connection", 10, "close", 5), 0);	/* never sent */
	assert_int_equal(h2_request(c.h, &m, 1, &c, &st), 0);
	assert_ptr_equal(h2_stream_user(st), &c);
	assert_int_equal(h2_stream_id(st), 1);
	hmsg_clear(&m);
	pump(&c, &s);

	assert_int_equal(s.n, 1);
	x = &s.s[0];
	assert_int_equal(x->nhead, 1);
	assert_int_equal(x->head_end, 1);
	assert_int_equal(x->end, 1);
	assert_string_equal(x->head.method, "GET");
	assert_string_equal(x->head.scheme, "https");
	assert_string_equal(x->head.authority, "smf.example");
	assert_string_equal(x->head.path, "/nnrf-nfm/v1/nf-instances?limit=1");
	assert_string_equal(hmsg_value(&x->head, "accept"), "application/json");
	assert_null(hmsg_value(&x->head, "connection"));
	assert_int_equal(x->head.nf, 3);

	/* a 103, then 200 with a body and trailers */
	hmsg_init(&m, 0);
	m.status = 103;
	assert_int_equal(hmsg_add(&m, "link", 4, "</a>", 4), 0);
	assert_int_equal(h2_response(s.h, x->st, &m, 0), 0);
	hmsg_clear(&m);
	m.status = 200;
	m.content_length = 11;
	assert_int_equal(h2_response(s.h, x->st, &m, 0), 0);
	assert_int_equal(h2_write(s.h, x->st, (const uint8_t *)"hello ", 6, &n), 0);
	assert_int_equal(h2_write(s.h, x->st, (const uint8_t *)"world", 5, &n), 0);
	hmsg_init(&t, 0);
	assert_int_equal(hmsg_add(&t, "grpc-status", 11, "0", 1), 0);
	assert_int_equal(h2_end(s.h, x->st, &t), 0);
	assert_int_equal(h2_write(s.h, x->st, (const uint8_t *)"x", 1, &n), HSM_ECLOSED);
	hmsg_clear(&t);
	hmsg_clear(&m);
	pump(&c, &s);

	x = &c.s[0];
	assert_ptr_equal(x->st, st);
	assert_int_equal(x->info.status, 103);
	assert_string_equal(hmsg_value(&x->info, "link"), "</a>");
	assert_int_equal(x->head.status, 200);
	assert_int_equal(x->head.content_length, 11);
	assert_int_equal(x->nbody, 11);
	assert_memory_equal(x->body, "hello world", 11);
	assert_int_equal(x->end, 1);
	assert_string_equal(hmsg_value(&x->trailers, "grpc-status"), "0");
	assert_int_equal(x->closed, 1);
	assert_int_equal(x->code, 0);
	assert_int_equal(s.s[0].closed, 1);

	h2_get_stats(c.h, &stats);
	assert_int_equal(stats.streams, 1);	/* lent until given back */
	h2_stream_done(c.h, st);
	h2_stream_done(s.h, s.s[0].st);
	h2_get_stats(c.h, &stats);
	assert_int_equal(stats.streams, 0);
	assert_int_equal(stats.buffered_in, 0);
	h2_get_stats(s.h, &stats);
	assert_int_equal(stats.streams, 0);
	side_free(&c);
	side_free(&s);
}

/* Bytes 0..n-1 of a known pattern. */
static void
pattern(uint8_t *p, size_t off, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)((off + i) * 7 + ((off + i) >> 11));
}

static uint64_t
pattern_sum(size_t n)
{
	uint8_t b;
	uint64_t s = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		pattern(&b, i, 1);
		s += (uint64_t)b * (i + 1);
	}
	return s;
}

/*
 * Write up to total bytes of the pattern on st from *off, as much as the
 * queue takes. Returns 1 when all were written (and ends the body).
 */
static int
feed_body(struct side *sd, struct h2_stream *st, size_t *off, size_t total)
{
	uint8_t buf[8192];
	size_t k, taken;

	while (*off < total) {
		k = total - *off < sizeof(buf) ? total - *off : sizeof(buf);
		pattern(buf, *off, k);
		assert_int_equal(h2_write(sd->h, st, buf, k, &taken), 0);
		*off += taken;
		if (taken < k)
			return 0;
	}
	assert_int_equal(h2_end(sd->h, st, NULL), 0);
	return 1;
}

static void
slow_reader(void **state)
{
	const size_t total = 1024 * 1024;
	struct h2_limits lim;
	struct side c, s;
	struct h2_stream *st;
	struct h2_stats cs, ss;
	struct hmsg m;
	struct seen *x;
	size_t off = 0, in, out;
	int done = 0, rounds = 0;

	h2_limits_default(&lim);
	lim.send_buffer = 16384;
	side_new(&c, H2_CLIENT, &lim);
	side_new(&s, H2_SERVER, &lim);
	s.consume = 0;		/* the application behind the server does not read */
	request(&m, "POST", "/upload");
	assert_int_equal(h2_request(c.h, &m, 0, NULL, &st), 0);
	hmsg_clear(&m);

	/* the writer fills what it may; the reader holds at most a window */
	done = feed_body(&c, st, &off, total);
	pump(&c, &s);
	assert_false(done);
	while (!done && c.rooms > 0 && rounds++ < 100) {
		c.rooms = 0;
		done = feed_body(&c, st, &off, total);
		pump(&c, &s);
	}
	assert_false(done);
	h2_get_stats(s.h, &ss);
	h2_get_stats(c.h, &cs);
	assert_int_equal(s.n, 1);
	x = &s.s[0];
	h2_stream_buffered(x->st, &in, &out);
	assert_true(in <= H2_DEFAULT_WINDOW);
	assert_int_equal(in, H2_DEFAULT_WINDOW);	/* the peer used the window, no more */
	assert_true(ss.buffered_in <= lim.conn_window);
	assert_true(cs.buffered_out <= lim.send_buffer);
	assert_true(off < total / 8);		/* the writer was stopped early */

	/* the reader takes a little at a time: the rest follows, in order */
	rounds = 0;
	while ((!done || x->end == 0) && rounds++ < 10000) {
		take(&s, x, 10000);
		pump(&c, &s);
		if (!done && c.rooms > 0) {
			c.rooms = 0;
			done = feed_body(&c, st, &off, total);
			pump(&c, &s);
		}
		h2_stream_buffered(x->st, &in, &out);
		assert_true(in <= H2_DEFAULT_WINDOW);
	}
	take(&s, x, SIZE_MAX);
	assert_int_equal(x->end, 1);
	assert_int_equal(x->nbody, total);
	assert_true(x->sum == pattern_sum(total));
	side_free(&c);
	side_free(&s);
}

static void
connection_window_and_resets(void **state)
{
	struct h2_limits lim;
	struct side c, s;
	struct h2_stream *st[8], *last;
	struct h2_stats ss;
	struct hmsg m;
	size_t i, off[8] = { 0 }, loff = 0;

	h2_limits_default(&lim);
	lim.conn_window = 3 * H2_DEFAULT_WINDOW;	/* less than 8 streams' windows */
	side_new(&c, H2_CLIENT, &lim);
	side_new(&s, H2_SERVER, &lim);
	s.consume = 0;
	request(&m, "POST", "/many");
	for (i = 0; i < 8; i++) {
		assert_int_equal(h2_request(c.h, &m, 0, NULL, &st[i]), 0);
		feed_body(&c, st[i], &off[i], 200000);
	}
	pump(&c, &s);
	for (i = 0; i < 8; i++)
		feed_body(&c, st[i], &off[i], 200000);
	pump(&c, &s);
	h2_get_stats(s.h, &ss);
	assert_true(ss.buffered_in <= lim.conn_window);
	assert_true(ss.buffered_in >= lim.conn_window - H2_DEFAULT_WINDOW);

	/* the server resets every stream: what it held is given back to the window */
	for (i = 0; i < s.n; i++) {
		h2_reset(s.h, s.s[i].st, H2_CANCEL);
		h2_stream_done(s.h, s.s[i].st);
	}
	pump(&c, &s);
	for (i = 0; i < 8; i++) {
		assert_int_equal(c.s[i].closed, 1);
		assert_int_equal(c.s[i].code, H2_CANCEL);
		h2_stream_done(c.h, st[i]);
	}
	h2_get_stats(s.h, &ss);
	assert_int_equal(ss.buffered_in, 0);
	assert_int_equal(ss.streams, 0);

	/* a new stream still gets a whole body through: no credit was lost */
	s.consume = 1;
	assert_int_equal(h2_request(c.h, &m, 0, NULL, &last), 0);
	while (!feed_body(&c, last, &loff, 500000))
		pump(&c, &s);
	pump(&c, &s);
	assert_int_equal(s.s[s.n - 1].nbody, 500000);
	assert_int_equal(s.s[s.n - 1].end, 1);
	hmsg_clear(&m);
	side_free(&c);
	side_free(&s);
}

static void
stream_limit(void **state)
{
	struct h2_limits lim;
	struct side c, s;
	struct h2_stream *st[6];
	struct hmsg m;
	size_t i, refused = 0, served = 0;

	h2_limits_default(&lim);
	lim.max_streams = 2;
	side_new(&c, H2_CLIENT, NULL);	/* believes the server allows 100 until told */
	side_new(&s, H2_SERVER, &lim);
	s.auto_respond = 1;
	request(&m, "GET", "/");
	for (i = 0; i < 5; i++)
		assert_int_equal(h2_request(c.h, &m, 1, NULL, &st[i]), 0);
	pump(&c, &s);
	for (i = 0; i < 5; i++) {
		struct seen *x = seen_of(&c, st[i]);

		assert_int_equal(x->closed, 1);
		if (x->code == H2_REFUSED_STREAM)
			refused++;
		else if (x->code == 0 && x->head.status == 200)
			served++;
		h2_stream_done(c.h, st[i]);
	}
	assert_int_equal(served + refused, 5);
	assert_true(refused >= 3);
	/* now the client knows: two at a time */
	assert_int_equal(h2_can_open(c.h), 2);
	assert_int_equal(h2_request(c.h, &m, 1, NULL, &st[0]), 0);
	assert_int_equal(h2_request(c.h, &m, 1, NULL, &st[1]), 0);
	assert_int_equal(h2_request(c.h, &m, 1, NULL, &st[2]), HSM_EBUSY);
	assert_null(st[2]);
	pump(&c, &s);
	assert_int_equal(seen_of(&c, st[0])->head.status, 200);
	h2_stream_done(c.h, st[0]);
	h2_stream_done(c.h, st[1]);
	hmsg_clear(&m);
	for (i = 0; i < s.n; i++)
		h2_stream_done(s.h, s.s[i].st);
	side_free(&c);
	side_free(&s);
}

static void
header_limits(void **state)
{
	struct h2_limits lim;
	struct side c, s;
	struct h2_stream *st;
	struct hmsg m;
	char name[16], big[2048];
	size_t i;

	h2_limits_default(&lim);
	lim.max_headers = 8;
	lim.max_header_bytes = 1024;
	side_new(&c, H2_CLIENT, NULL);
	side_new(&s, H2_SERVER, &lim);
	/* too many fields */
	request(&m, "GET", "/");
	for (i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "x-f%zu", i);
		assert_int_equal(hmsg_add(&m, name, strlen(name), "v", 1), 0);
	}
	assert_int_equal(h2_request(c.h, &m, 1, NULL, &st), 0);
	hmsg_clear(&m);
	/* too many bytes */
	request(&m, "GET", "/");
	memset(big, 'a', sizeof(big));
	assert_int_equal(hmsg_add(&m, "x-big", 5, big, sizeof(big)), 0);
	assert_int_equal(h2_request(c.h, &m, 1, NULL, &st), 0);
	hmsg_clear(&m);
	/* and one within them */
	request(&m, "GET", "/fine");
	assert_int_equal(h2_request(c.h, &m, 1, NULL, &st), 0);
	hmsg_clear(&m);
	pump(&c, &s);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.s[0].refuse, 431);
	assert_int_equal(s.s[1].refuse, 431);
	assert_int_equal(s.s[2].refuse, 0);
	assert_string_equal(s.s[2].head.path, "/fine");
	side_free(&c);
	side_free(&s);
}

/*
 * Bytes a plain nghttp2 client sends for one request with the header
 * list nv as given (the adapter would never send such a list): the
 * preface, SETTINGS and HEADERS. *out malloc'd.
 */
static void
raw_request(const nghttp2_nv *nv, size_t n, uint8_t **out, size_t *len)
{
	nghttp2_session_callbacks *cb;
	nghttp2_session *sess;
	const uint8_t *p;
	ssize_t k;

	*out = NULL;
	*len = 0;
	assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
	assert_int_equal(nghttp2_session_client_new(&sess, cb, NULL), 0);
	assert_int_equal(nghttp2_submit_settings(sess, NGHTTP2_FLAG_NONE, NULL, 0), 0);
	assert_true(nghttp2_submit_request(sess, NULL, nv, n, NULL, NULL) > 0);
	while ((k = nghttp2_session_mem_send(sess, &p)) > 0) {
		*out = realloc(*out, *len + (size_t)k);
		assert_non_null(*out);
		memcpy(*out + *len, p, (size_t)k);
		*len += (size_t)k;
	}
	nghttp2_session_del(sess);
	nghttp2_session_callbacks_del(cb);
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0 }

/*
 * The same, but with the header block encoded by nghttp2's HPACK
 * deflater as given (a session would lower-case the names first): the
 * preface, an empty SETTINGS, and one HEADERS frame (END_STREAM).
 */
static void
raw_request_as_is(const nghttp2_nv *nv, size_t n, uint8_t **out, size_t *len)
{
	static const uint8_t start[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	    "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
	nghttp2_hd_deflater *d;
	uint8_t *b;
	ssize_t k;
	size_t hlen = sizeof(start) - 1;

	assert_int_equal(nghttp2_hd_deflate_new(&d, 4096), 0);
	assert_non_null(b = malloc(hlen + 9 + 4096));
	memcpy(b, start, hlen);
	k = nghttp2_hd_deflate_hd(d, b + hlen + 9, 4096, nv, n);
	assert_true(k > 0);
	/* frame header: length, type HEADERS, END_STREAM|END_HEADERS, stream 1 */
	b[hlen] = 0;
	b[hlen + 1] = (uint8_t)(k >> 8);
	b[hlen + 2] = (uint8_t)k;
	b[hlen + 3] = 0x1;
	b[hlen + 4] = 0x5;
	hsm_put32(b + hlen + 5, 1);
	nghttp2_hd_deflate_del(d);
	*out = b;
	*len = hlen + 9 + (size_t)k;
}

static void
raw_peers(void **state)
{
	static const nghttp2_nv host_differs[] = { NV(":method", "GET"), NV(":scheme", "https"),
	    NV(":authority", "smf.example"), NV(":path", "/"), NV("host", "other.example") };
	static const nghttp2_nv host_only[] = { NV(":method", "GET"), NV(":scheme", "https"),
	    NV(":path", "/h"), NV("host", "smf.example:8443") };
	static const nghttp2_nv plain[] = { NV(":method", "GET"), NV(":scheme", "https"),
	    NV(":authority", "a"), NV(":path", "/"), NV("x-forwarded-client-cert", "URI=x") };
	static const nghttp2_nv upper[] = { NV(":method", "GET"), NV(":scheme", "https"),
	    NV(":authority", "a"), NV(":path", "/"),
	    NV("X-Forwarded-Client-Cert", "URI=spiffe://forged") };
	static const nghttp2_nv conn[] = { NV(":method", "GET"), NV(":scheme", "https"),
	    NV(":authority", "a"), NV(":path", "/"), NV("connection", "close") };
	static const nghttp2_nv nopath[] = { NV(":method", "GET"), NV(":scheme", "https"),
	    NV(":authority", "a") };
	static const nghttp2_nv noauth[] = { NV(":method", "GET"), NV(":scheme", "https"),
	    NV(":path", "/") };
	static const nghttp2_nv crlf[] = { NV(":method", "GET"), NV(":scheme", "https"),
	    NV(":authority", "a"), NV(":path", "/"), NV("x-a", "1\r\nx-b: 2") };
	struct { const nghttp2_nv *nv; size_t n; int heads, refuse; } cases[] = {
		{ host_differs, 5, 1, 400 },
		{ host_only, 4, 1, 0 },
		{ plain, 5, 1, 0 },
		/* malformed in HTTP/2: the stream is reset, no head reaches us */
		{ upper, 5, 0, 0 },
		{ conn, 5, 0, 0 },
		{ nopath, 3, 0, 0 },
		{ noauth, 3, 0, 0 },
		{ crlf, 5, 0, 0 },
	};
	struct side s;
	uint8_t *b;
	size_t n, i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		side_new(&s, H2_SERVER, NULL);
		if (cases[i].nv == upper)
			raw_request_as_is(cases[i].nv, cases[i].n, &b, &n);
		else
			raw_request(cases[i].nv, cases[i].n, &b, &n);
		assert_int_equal(h2_feed(s.h, b, n), 0);
		free(b);
		if ((int)s.n != cases[i].heads || (s.n > 0 && s.s[0].refuse != cases[i].refuse))
			fail_msg("case %zu: %zu heads, refuse %d", i, s.n, s.n ? s.s[0].refuse : -1);
		if (i == 1) {
			assert_string_equal(s.s[0].head.authority, "smf.example:8443");
			assert_null(hmsg_value(&s.s[0].head, "host"));
		}
		if (i == 2)
			assert_string_equal(hmsg_value(&s.s[0].head, XFCC_NAME), "URI=x");

		side_free(&s);
	}
}

static void
goaway_drains(void **state)
{
	struct side c, s;
	struct h2_stream *st;
	struct hmsg m;
	size_t n;

	side_new(&c, H2_CLIENT, NULL);
	side_new(&s, H2_SERVER, NULL);
	request(&m, "GET", "/slow");
	assert_int_equal(h2_request(c.h, &m, 1, NULL, &st), 0);
	pump(&c, &s);
	/* the server stops taking streams; the open one may finish */
	h2_goaway(s.h, H2_NO_ERROR);
	pump(&c, &s);
	assert_int_equal(c.goaways, 1);
	assert_int_equal(c.goaway_last, 1);
	assert_int_equal(c.goaway_code, H2_NO_ERROR);
	assert_int_equal(h2_can_open(c.h), 0);
	assert_int_equal(h2_request(c.h, &m, 1, NULL, &st), HSM_EBUSY);
	hmsg_clear(&m);
	hmsg_init(&m, 0);
	m.status = 204;
	assert_int_equal(h2_response(s.h, s.s[0].st, &m, 1), 0);
	hmsg_clear(&m);
	pump(&c, &s);
	assert_int_equal(c.s[0].head.status, 204);
	assert_int_equal(c.s[0].closed, 1);
	h2_stream_done(c.h, c.s[0].st);
	h2_stream_done(s.h, s.s[0].st);
	assert_int_equal(h2_drain(s.h, (uint8_t[64]){ 0 }, 64, &n), 0);
	assert_false(h2_want_read(s.h) && h2_want_write(s.h));
	assert_false(h2_want_write(s.h));
	side_free(&c);
	side_free(&s);
}


/* PING: sent on request, pending until the peer's ACK comes back. */
static void
ping(void **state)
{
	struct side c, s;

	side_new(&c, H2_CLIENT, NULL);
	side_new(&s, H2_SERVER, NULL);
	pump(&c, &s);
	assert_int_equal(h2_ping_pending(c.h), 0);
	assert_int_equal(h2_ping(c.h), 0);
	assert_int_equal(h2_ping_pending(c.h), 1);
	assert_true(h2_want_write(c.h));
	pump(&c, &s);
	assert_int_equal(h2_ping_pending(c.h), 0);
	/* a peer that never answers: still pending after our bytes left */
	assert_int_equal(h2_ping(s.h), 0);
	assert_int_equal(h2_drain(s.h, (uint8_t[256]){ 0 }, 256, &(size_t){ 0 }), 0);
	assert_int_equal(h2_ping_pending(s.h), 1);
	side_free(&c);
	side_free(&s);
}

/*
 * An answer before the request ended: h2_stream_sent says when the
 * response has left, and the stream given back then is reset with
 * NO_ERROR (the client keeps the response), not CANCEL.
 */
static void
early_answer(void **state)
{
	struct side c, s;
	struct h2_stream *st;
	struct hmsg m;
	size_t n;

	side_new(&c, H2_CLIENT, NULL);
	side_new(&s, H2_SERVER, NULL);
	request(&m, "POST", "/upload");
	assert_int_equal(h2_request(c.h, &m, 0, NULL, &st), 0);
	hmsg_clear(&m);
	assert_int_equal(h2_write(c.h, st, (const uint8_t *)"part", 4, &n), 0);
	pump(&c, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.s[0].end, 0);
	hmsg_init(&m, 0);
	m.status = 413;
	assert_int_equal(h2_response(s.h, s.s[0].st, &m, 1), 0);
	hmsg_clear(&m);
	assert_int_equal(h2_stream_sent(s.h, s.s[0].st), 0);	/* queued, not produced yet */
	pump(&c, &s);
	assert_int_equal(h2_stream_sent(s.h, s.s[0].st), 1);
	h2_stream_done(s.h, s.s[0].st);
	pump(&c, &s);
	assert_int_equal(c.s[0].head.status, 413);
	assert_int_equal(c.s[0].closed, 1);
	assert_int_equal(c.s[0].code, H2_NO_ERROR);
	h2_stream_done(c.h, c.s[0].st);
	side_free(&c);
	side_free(&s);
}

/* A caller that writes only what fits still hears when the queue has room again. */
static void
room_when_filled(void **state)
{
	struct side c, s;
	struct h2_limits lim;
	struct h2_stream *st;
	struct hmsg m;
	uint8_t chunk[4096];
	size_t n, in, out, total = 0;

	h2_limits_default(&lim);
	lim.send_buffer = 8192;
	side_new(&c, H2_CLIENT, &lim);
	side_new(&s, H2_SERVER, NULL);
	request(&m, "POST", "/up");
	assert_int_equal(h2_request(c.h, &m, 0, NULL, &st), 0);
	hmsg_clear(&m);
	memset(chunk, 'u', sizeof(chunk));
	/* exactly what fits: the queue is full, nothing was refused */
	assert_int_equal(h2_write(c.h, st, chunk, 4096, &n), 0);
	assert_int_equal(h2_write(c.h, st, chunk, 4096, &n), 0);
	assert_int_equal(n, 4096);
	h2_stream_buffered(st, &in, &out);
	assert_int_equal(out, 8192);
	total = 8192;
	c.rooms = 0;
	pump(&c, &s);
	assert_true(c.rooms >= 1);
	assert_int_equal(h2_write(c.h, st, chunk, 4096, &n), 0);
	total += n;
	assert_int_equal(h2_end(c.h, st, NULL), 0);
	pump(&c, &s);
	assert_int_equal(s.s[0].nbody, total);
	h2_stream_done(c.h, st);
	side_free(&c);
	side_free(&s);
}

static void
garbage(void **state)
{
	static const char http1[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	struct side c, s;
	uint8_t buf[256];
	size_t n;
	int r;

	/* an HTTP/1.1 request to an HTTP/2 server: refused, never a crash */
	side_new(&s, H2_SERVER, NULL);
	assert_int_equal(h2_feed(s.h, (const uint8_t *)http1, sizeof(http1) - 1), HSM_EPROTO);
	assert_false(h2_want_read(s.h));
	assert_int_equal(h2_feed(s.h, (const uint8_t *)"x", 1), HSM_EPROTO);
	side_free(&s);

	/* a client whose server answers nonsense after the preface: GOAWAY is queued */
	side_new(&c, H2_CLIENT, NULL);
	side_new(&s, H2_SERVER, NULL);
	pump(&c, &s);
	memset(buf, 0xff, sizeof(buf));
	r = h2_feed(c.h, buf, sizeof(buf));
	assert_true(r == 0 || r == HSM_EPROTO);
	assert_int_equal(h2_drain(c.h, buf, sizeof(buf), &n), 0);
	assert_true(n >= 17 && buf[3] == 0x7);	/* a GOAWAY frame */
	assert_int_equal(hsm_get32(buf + 13), 0x6);	/* FRAME_SIZE_ERROR */
	/* once it is sent, the connection is over */
	assert_false(h2_want_read(c.h));
	assert_false(h2_want_write(c.h));
	side_free(&c);
	side_free(&s);

	assert_int_equal(h2_new(H2_SERVER, &(struct h2_limits){ 0 }, NULL, NULL,
	    &s.h), HSM_EINVAL);
	assert_null(s.h);
	h2_free(NULL);
}

/* The forged header goes, ours is the only one the application sees. */
static void
xfcc_through_h2(void **state)
{
	static const uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
	struct side c, s;
	struct h2_stream *st;
	struct hmsg m;
	const struct hfield *f;
	size_t i, removed, count = 0;

	side_new(&c, H2_CLIENT, NULL);
	side_new(&s, H2_SERVER, NULL);
	request(&m, "POST", "/nsmf-pdusession/v1/sm-contexts");
	assert_int_equal(hmsg_add(&m, "x-forwarded-client-cert", 23, "By=x;URI=spiffe://evil", 22),
	    0);
	assert_int_equal(hmsg_add(&m, "X-Forwarded-Client-Cert", 23, "URI=spiffe://evil2", 18), 0);
	assert_int_equal(h2_request(c.h, &m, 1, NULL, &st), 0);
	hmsg_clear(&m);
	pump(&c, &s);
	assert_int_equal(xfcc_apply(&s.s[0].head, "spiffe://example.org/smf", der, sizeof(der),
	    "spiffe://example.org/amf", &removed), 0);
	assert_int_equal(removed, 2);
	for (i = 0; i < s.s[0].head.nf; i++) {
		f = &s.s[0].head.f[i];
		if (strcmp(f->name, XFCC_NAME) == 0) {
			count++;
			assert_non_null(strstr(f->value, "URI=spiffe://example.org/amf"));
		}
	}
	assert_int_equal(count, 1);
	side_free(&c);
	side_free(&s);
}

/* ---- over a socketpair, both ends real sessions with real I/O ---- */

static int
io_once(struct h2 *h, int fd, int *eof)
{
	uint8_t buf[8192];
	const uint8_t *p;
	size_t n;
	ssize_t k;
	int moved = 0;

	while ((k = read(fd, buf, sizeof(buf))) > 0) {
		assert_int_equal(h2_feed(h, buf, (size_t)k), 0);
		moved = 1;
	}
	if (k == 0)
		*eof = 1;
	for (;;) {
		assert_int_equal(h2_out(h, &p, &n), 0);
		if (n == 0)
			break;
		k = write(fd, p, n);
		if (k <= 0)
			break;
		h2_out_done(h, (size_t)k);
		moved = 1;
	}
	return moved;
}

static void
socketpair_end_to_end(void **state)
{
	const size_t total = 300000;
	struct side c, s;
	struct h2_stream *st[3];
	struct hmsg m;
	size_t off[3] = { 0 }, i;
	int sv[2], eof = 0, done[3] = { 0 };
	uint64_t deadline = hsm_now_ms() + 10000;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	side_new(&c, H2_CLIENT, NULL);
	side_new(&s, H2_SERVER, NULL);
	s.auto_respond = 1;
	request(&m, "PUT", "/objects/1");
	for (i = 0; i < 3; i++)
		assert_int_equal(h2_request(c.h, &m, 0, NULL, &st[i]), 0);
	hmsg_clear(&m);
	while (hsm_now_ms() < deadline) {
		struct pollfd p[2] = { { sv[0], POLLIN, 0 }, { sv[1], POLLIN, 0 } };

		for (i = 0; i < 3; i++)
			if (!done[i])
				done[i] = feed_body(&c, st[i], &off[i], total);
		io_once(c.h, sv[0], &eof);
		io_once(s.h, sv[1], &eof);
		if (c.n == 3 && c.s[0].closed && c.s[1].closed && c.s[2].closed)
			break;
		if (h2_want_write(c.h))
			p[0].events |= POLLOUT;
		if (h2_want_write(s.h))
			p[1].events |= POLLOUT;
		poll(p, 2, 100);
	}
	assert_int_equal(s.n, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(s.s[i].nbody, total);
		assert_true(s.s[i].sum == pattern_sum(total));
		assert_int_equal(c.s[i].head.status, 200);
		assert_int_equal(c.s[i].nbody, 2);
		assert_int_equal(c.s[i].code, 0);
	}
	close(sv[0]);
	close(sv[1]);
	side_free(&c);
	side_free(&s);
}

/* ---- real clients: nghttp and curl against an adapter on loopback ---- */

/* Run argv with stdout to out (cap bytes); its exit status, or -1. */
static pid_t
spawn(char *const argv[], int *outfd)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	if ((pid = fork()) == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	*outfd = p[0];
	return pid;
}

/* Serve requests on the listener: echo the method, path and the forged-header count. */
struct echo {
	struct side s;
	int served;
};

static void
echo_end(void *arg, struct h2_stream *st, struct hmsg *t)
{
	struct side *sd = arg;
	struct seen *x = seen_of(sd, st);
	static const uint8_t der[] = { 0x30, 0x00 };
	char body[512];
	struct hmsg r;
	size_t removed = 0, n;

	x->end++;
	assert_int_equal(xfcc_apply(&x->head, "spiffe://example.org/smf", der, sizeof(der),
	    "spiffe://example.org/amf", &removed), 0);
	snprintf(body, sizeof(body), "%s %s body=%zu forged=%zu xfcc=%s\n", x->head.method,
	    x->head.path, x->nbody, removed, hmsg_value(&x->head, XFCC_NAME));
	hmsg_init(&r, 0);
	r.status = 200;
	r.content_length = (int64_t)strlen(body);
	assert_int_equal(h2_response(sd->h, st, &r, 0), 0);
	assert_int_equal(h2_write(sd->h, st, (const uint8_t *)body, strlen(body), &n), 0);
	assert_int_equal(h2_end(sd->h, st, NULL), 0);
	hmsg_clear(&r);
}

static const struct h2_ops echo_ops = {
	.head = cb_head, .data = cb_data, .end = echo_end, .close = cb_close,
};

/*
 * Accept one connection on lfd and serve it with an adapter until the
 * client process exits (bounded by 15 s); its output into out.
 */
static int
serve_client(int lfd, pid_t pid, int outfd, char *out, size_t cap)
{
	struct side s;
	size_t got = 0;
	ssize_t k;
	int fd = -1, eof = 0, status = -1, i;
	uint64_t deadline = hsm_now_ms() + 15000;

	memset(&s, 0, sizeof(s));
	s.role = H2_SERVER;
	s.consume = 1;
	assert_int_equal(h2_new(H2_SERVER, NULL, &echo_ops, &s, &s.h), 0);
	while (hsm_now_ms() < deadline) {
		struct pollfd p[3] = { { lfd, POLLIN, 0 }, { fd, POLLIN, 0 }, { outfd, POLLIN, 0 } };

		if (fd >= 0 && h2_want_write(s.h))
			p[1].events |= POLLOUT;
		poll(p, 3, 50);
		if (fd < 0 && (p[0].revents & POLLIN)) {
			fd = accept(lfd, NULL, NULL);
			if (fd >= 0)
				fcntl(fd, F_SETFL, O_NONBLOCK);
		}
		if (fd >= 0 && !eof)
			io_once(s.h, fd, &eof);
		while ((k = read(outfd, out + got, cap - 1 - got)) > 0)
			got += (size_t)k;
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		status = -1;
	}
	if (status == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		status = -1;
	}
	for (i = 0; i < 10 && (k = read(outfd, out + got, cap - 1 - got)) > 0; i++)
		got += (size_t)k;
	out[got] = '\0';
	if (fd >= 0)
		close(fd);
	side_free(&s);
	return status;
}

static int
listen_lo(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static int
have(const char *prog)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

static void
real_clients(void **state)
{
	char url[128], out[16384], data[64];
	int lfd, port, outfd, status, dfd;
	pid_t pid;

	if (!have("nghttp") || !have("curl"))
		fail_msg("nghttp (nghttp2-client) and curl are needed: make installs them");
	signal(SIGPIPE, SIG_IGN);
	lfd = listen_lo(&port);

	/* nghttp: h2c with prior knowledge, a request body, a forged header */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/nsmf-pdusession/v1/sm-contexts?x=1", port);
	snprintf(data, sizeof(data), "/tmp/hsm-h2-body-XXXXXX");
	assert_true((dfd = mkstemp(data)) >= 0);
	assert_int_equal(write(dfd, "{\"ue\":1}", 8), 8);
	close(dfd);
	{
		char *argv[] = { "nghttp", "-H", "X-Forwarded-Client-Cert: URI=spiffe://forged",
		    "-H", "x-forwarded-client-cert: By=me", "-d", data, url, NULL };

		pid = spawn(argv, &outfd);
	}
	status = serve_client(lfd, pid, outfd, out, sizeof(out));
	close(outfd);
	unlink(data);
	if (status != 0 || strstr(out, "POST /nsmf-pdusession/v1/sm-contexts?x=1 body=8 forged=2 "
	    "xfcc=By=spiffe://example.org/smf;Hash=") == NULL ||
	    strstr(out, ";URI=spiffe://example.org/amf\n") == NULL)
		fail_msg("nghttp exited %d with:\n%s", status, out);

	/* curl --http2-prior-knowledge, POST with a body */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/nnrf-nfm/v1/nf-instances", port);
	{
		char *argv[] = { "curl", "-sS", "--http2-prior-knowledge", "--max-time", "10",
		    "-d", "{\"nfType\":\"AMF\"}", "-H", "X_Forwarded_Client_Cert: x", url, NULL };

		pid = spawn(argv, &outfd);
	}
	status = serve_client(lfd, pid, outfd, out, sizeof(out));
	close(outfd);
	if (status != 0 || strstr(out, "POST /nnrf-nfm/v1/nf-instances body=16 forged=1") == NULL)
		fail_msg("curl exited %d with:\n%s", status, out);
	close(lfd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(get_and_trailers),
		cmocka_unit_test(slow_reader),
		cmocka_unit_test(connection_window_and_resets),
		cmocka_unit_test(stream_limit),
		cmocka_unit_test(header_limits),
		cmocka_unit_test(raw_peers),
		cmocka_unit_test(goaway_drains),
		cmocka_unit_test(ping),
		cmocka_unit_test(early_answer),
		cmocka_unit_test(room_when_filled),
		cmocka_unit_test(garbage),
		cmocka_unit_test(xfcc_through_h2),
		cmocka_unit_test(socketpair_end_to_end),
		cmocka_unit_test(real_clients),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
