/* h2.c - an HTTP/2 connection around libnghttp2, fed through caller buffers (see h2.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "err.h"
#include "h2.h"
#include "hmsg.h"
#include "httptok.h"
#include "scache.h"

#define BUF_MIN 1024		/* first allocation of a stream buffer (it doubles as it fills) */
#define NV_STACK 32		/* name/value pairs of a head built on the stack */

struct sbuf {
	uint8_t *p;
	size_t off, len, cap;
};

struct h2_stream {
	struct h2 *h;
	struct h2_stream *prev, *next;	/* every handle of the connection */
	int32_t id;
	void *user;
	struct sbuf in, out;	/* received and not consumed; queued to send */
	struct hmsg blk;	/* the HEADERS block being received */
	struct hmsg *tr_out;	/* trailers to send after the body */
	size_t blk_fields, blk_bytes;
	uint32_t code;
	uint8_t lent;		/* the caller holds the handle */
	uint8_t closed;		/* nghttp2 closed the stream */
	uint8_t incb;		/* a callback naming it runs: free later */
	uint8_t out_eof;	/* our body ended (h2_end, or a head with end) */
	uint8_t deferred;	/* the data source said DEFERRED: resume on write */
	uint8_t blocked;	/* an h2_write did not take everything */
	uint8_t room_due;	/* call room after the next send */
	uint8_t has_provider;	/* a DATA source was given with the head */
	uint8_t blk_status;	/* the block has :status (a response head) */
	int refuse;		/* the head is refused with this status */
};

struct h2 {
	nghttp2_session *s;
	enum h2_role role;
	struct h2_limits lim;
	struct h2_ops ops;
	void *arg;
	struct h2_stream all;		/* list head */
	size_t nstreams;
	size_t in_total, out_total;
	const uint8_t *pend;		/* produced by nghttp2_session_mem_send, not yet sent */
	size_t npend;
	int room_due;
	int broken;
	int ping_out;		/* a PING of ours waits for its ACK */
};

/* nghttp2's allocations through the per-thread cache (scache.h): dozens per request. */
static void *
ng_malloc(size_t n, void *ud)
{
	return sc_malloc(n);
}

static void
ng_free(void *p, void *ud)
{
	sc_free(p);
}

static void *
ng_calloc(size_t nmemb, size_t size, void *ud)
{
	return sc_calloc(nmemb, size);
}

static void *
ng_realloc(void *p, size_t n, void *ud)
{
	return sc_realloc(p, n);
}

void
h2_limits_default(struct h2_limits *l)
{
	l->max_streams = 100;
	l->max_header_bytes = 16384;
	l->max_headers = 100;
	l->stream_window = H2_DEFAULT_WINDOW;
	l->conn_window = 1024 * 1024;
	l->send_buffer = 65536;
}

/* ---- stream handles ---- */

static struct h2_stream *
stream_new(struct h2 *h, int request)
{
	struct h2_stream *st;

	if ((st = sc_calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->h = h;
	hmsg_init(&st->blk, request);
	st->next = h->all.next;
	st->prev = &h->all;
	h->all.next->prev = st;
	h->all.next = st;
	h->nstreams++;
	return st;
}

static void
sbuf_free(struct sbuf *b)
{
	sc_free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Drop what st holds for the caller, acknowledging it so the windows reopen. */
static void
drop_in(struct h2 *h, struct h2_stream *st)
{
	/* for a stream nghttp2 no longer has, this reopens the connection window only */
	if (st->in.len > 0) {
		nghttp2_session_consume(h->s, st->id, st->in.len);
		h->in_total -= st->in.len;
	}
	sbuf_free(&st->in);
}

static void
drop_out(struct h2 *h, struct h2_stream *st)
{
	h->out_total -= st->out.len;
	sbuf_free(&st->out);
	hmsg_clear(st->tr_out);
	sc_free(st->tr_out);
	st->tr_out = NULL;
}

static void
stream_free(struct h2 *h, struct h2_stream *st)
{
	drop_in(h, st);
	drop_out(h, st);
	hmsg_clear(&st->blk);
	st->prev->next = st->next;
	st->next->prev = st->prev;
	h->nstreams--;
	if (!st->closed && st->id > 0)
		nghttp2_session_set_stream_user_data(h->s, st->id, NULL);
	sc_free(st);
}

/* Free st once nghttp2 and the caller are both done with it and no callback runs. */
static void
maybe_free(struct h2 *h, struct h2_stream *st)
{
	if (st->closed && !st->lent && st->incb == 0)
		stream_free(h, st);
}

static struct h2_stream *
stream_of(struct h2 *h, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(h->s, id) : NULL;
}

/* Room for n more bytes in b, growing it up to max. 0 or -1. */
static int
sbuf_room(struct sbuf *b, size_t n, size_t max)
{
	size_t cap;
	uint8_t *p;

	if (b->len + n > max)
		return -1;
	if (b->off > 0 && b->off + b->len + n > b->cap) {
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
	}
	if (b->off + b->len + n <= b->cap)
		return 0;
	cap = b->cap == 0 ? BUF_MIN : b->cap;
	while (cap < b->len + n)
		cap *= 2;
	if (cap > max)
		cap = max;
	if ((p = sc_realloc(b->p, cap)) == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* ---- header blocks ---- */

static int
is_pseudo(const uint8_t *name, size_t n, const char *s)
{
	return strlen(s) == n && memcmp(name, s, n) == 0;
}

/* One received field into st->blk (limits counted even past a refusal). */
static int
on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nlen,
    const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	struct h2 *h = ud;
	struct h2_stream *st = stream_of(h, fr->hd.stream_id);
	struct hmsg *m;
	uint64_t cl;
	int r = 0;

	/*
	 * nghttp2 checked the field (RFC 9113 8.2: lower-case token names,
	 * no CR, LF or NUL, no connection-specific field) and resets a
	 * stream whose head breaks those rules before we see it.
	 */
	if (st == NULL || fr->hd.type != NGHTTP2_HEADERS)
		return 0;
	m = &st->blk;
	st->blk_fields++;
	st->blk_bytes += nlen + vlen + HMSG_FIELD_OVERHEAD;
	if (st->blk_fields > h->lim.max_headers || st->blk_bytes > h->lim.max_header_bytes)
		st->refuse = 431;
	if (st->refuse)
		return 0;
	if (nlen > 0 && name[0] == ':') {
		if (is_pseudo(name, nlen, ":method"))
			r = hmsg_set(m, HMSG_METHOD, (const char *)value, vlen);
		else if (is_pseudo(name, nlen, ":scheme"))
			r = hmsg_set(m, HMSG_SCHEME, (const char *)value, vlen);
		else if (is_pseudo(name, nlen, ":authority"))
			r = hmsg_set(m, HMSG_AUTHORITY, (const char *)value, vlen);
		else if (is_pseudo(name, nlen, ":path"))
			r = hmsg_set(m, HMSG_PATH, (const char *)value, vlen);
		else if (is_pseudo(name, nlen, ":status") && vlen == 3) {
			m->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
			st->blk_status = 1;
		}
	} else if (is_pseudo(name, nlen, "content-length")) {
		/* nghttp2 checked the digits and holds DATA to this length */
		if (http_digits(value, vlen, &cl) == 0 && cl <= INT64_MAX)
			m->content_length = (int64_t)cl;
	} else if (is_pseudo(name, nlen, "host")) {
		/* RFC 9113 8.3.1: :authority wins, and must not disagree */
		if (m->authority == NULL)
			r = hmsg_set(m, HMSG_AUTHORITY, (const char *)value, vlen);
		else if (strlen(m->authority) != vlen || memcmp(m->authority, value, vlen) != 0)
			st->refuse = 400;
	} else {
		r = hmsg_add(m, (const char *)name, nlen, (const char *)value, vlen);
	}
	return r == 0 ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int
on_begin_headers(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
	struct h2 *h = ud;
	struct h2_stream *st;

	if (fr->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (h->role == H2_SERVER && fr->headers.cat == NGHTTP2_HCAT_REQUEST) {
		/*
		 * Handles the caller has not given back count too: a peer that
		 * opens and resets streams faster than the caller finishes them
		 * is refused rather than given more memory.
		 */
		if (h->nstreams >= 2 * (size_t)h->lim.max_streams ||
		    (st = stream_new(h, 1)) == NULL) {
			nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, fr->hd.stream_id,
			    NGHTTP2_REFUSED_STREAM);
			return 0;
		}
		st->id = fr->hd.stream_id;
		nghttp2_session_set_stream_user_data(s, st->id, st);
		return 0;
	}
	if ((st = stream_of(h, fr->hd.stream_id)) == NULL)
		return 0;
	hmsg_clear(&st->blk);
	st->blk.request = h->role == H2_SERVER;
	st->blk_fields = st->blk_bytes = 0;
	st->blk_status = 0;
	return 0;
}

/* ---- receiving ---- */

static int
on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
    void *ud)
{
	struct h2 *h = ud;
	struct h2_stream *st = stream_of(h, id);
	size_t cap = h->lim.stream_window;

	if (st == NULL || !st->lent) {
		/* nobody reads it: acknowledge at once */
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	if (h->in_total + len > h->lim.conn_window || sbuf_room(&st->in, len, cap) != 0) {
		/* over the window we granted (or out of memory): not buffered */
		nghttp2_session_consume(s, id, len);
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_FLOW_CONTROL_ERROR);
		return 0;
	}
	memcpy(st->in.p + st->in.off + st->in.len, data, len);
	st->in.len += len;
	h->in_total += len;
	if (h->ops.data != NULL) {
		st->incb++;
		h->ops.data(h->arg, st);
		st->incb--;
		maybe_free(h, st);
	}
	return 0;
}

/* A HEADERS frame ended: a request or response head, or trailers. */
static void
headers_done(struct h2 *h, struct h2_stream *st, const nghttp2_frame *fr)
{
	int end = (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0, head;

	if (h->role == H2_SERVER)
		head = fr->headers.cat == NGHTTP2_HCAT_REQUEST;
	else if (!st->lent)
		return;		/* given back: nobody wants its response */
	else
		head = st->blk_status;
	st->incb++;
	if (head) {
		if (h->role == H2_SERVER)
			st->lent = 1;
		if (h->ops.head != NULL)
			h->ops.head(h->arg, st, &st->blk, end, st->refuse);
		hmsg_clear(&st->blk);
		if (end && st->lent && h->ops.end != NULL)
			h->ops.end(h->arg, st, NULL);
	} else if (st->lent && h->ops.end != NULL) {
		h->ops.end(h->arg, st, st->refuse ? NULL : &st->blk);
	}
	hmsg_clear(&st->blk);
	st->refuse = 0;
	st->incb--;
	maybe_free(h, st);
}

static int
on_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
	struct h2 *h = ud;
	struct h2_stream *st;

	switch (fr->hd.type) {
	case NGHTTP2_HEADERS:
		if ((st = stream_of(h, fr->hd.stream_id)) != NULL)
			headers_done(h, st, fr);
		break;
	case NGHTTP2_DATA:
		if ((fr->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
		    (st = stream_of(h, fr->hd.stream_id)) != NULL && st->lent &&
		    h->ops.end != NULL) {
			st->incb++;
			h->ops.end(h->arg, st, NULL);
			st->incb--;
			maybe_free(h, st);
		}
		break;
	case NGHTTP2_PING:
		if (fr->hd.flags & NGHTTP2_FLAG_ACK)
			h->ping_out = 0;
		break;
	case NGHTTP2_GOAWAY:
		if (h->ops.goaway != NULL)
			h->ops.goaway(h->arg, fr->goaway.last_stream_id, fr->goaway.error_code);
		break;
	default:
		break;
	}
	return 0;
}

static int
on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct h2 *h = ud;
	struct h2_stream *st = stream_of(h, id);

	if (st == NULL)
		return 0;
	st->closed = 1;
	st->code = code;
	if (code != 0)
		drop_in(h, st);
	drop_out(h, st);
	if (st->lent && h->ops.close != NULL) {
		st->incb++;
		h->ops.close(h->arg, st, code);
		st->incb--;
	}
	if (!st->lent && st->incb == 0)
		stream_free(h, st);
	return 0;
}

/* ---- sending ---- */

/* Connection-specific fields (RFC 9113 8.2.2), and Host and Content-Length (control data here). */
static int
not_sent(const struct hfield *f)
{
	switch (f->nlen) {
	case 2:
		return memcmp(f->name, "te", 2) == 0 && strcmp(f->value, "trailers") != 0;
	case 4:
		return memcmp(f->name, "host", 4) == 0;
	case 7:
		return memcmp(f->name, "upgrade", 7) == 0;
	case 10:
		return memcmp(f->name, "connection", 10) == 0 || memcmp(f->name, "keep-alive", 10) == 0;
	case 14:
		return memcmp(f->name, "content-length", 14) == 0;
	case 16:
		return memcmp(f->name, "proxy-connection", 16) == 0;
	case 17:
		return memcmp(f->name, "transfer-encoding", 17) == 0;
	default:
		return f->nlen == 0 || f->name[0] == ':';
	}
}

/* Credentials stay out of the HPACK tables (no compression oracle). */
static int
never_indexed(const struct hfield *f)
{
	return (f->nlen == 13 && memcmp(f->name, "authorization", 13) == 0) ||
	    (f->nlen == 19 && memcmp(f->name, "proxy-authorization", 19) == 0) ||
	    (f->nlen == 6 && memcmp(f->name, "cookie", 6) == 0);
}

/* v (< 10^20) in decimal into out (at least 21 bytes); its length. */
static size_t
u64_dec(uint64_t v, char *out)
{
	char tmp[24];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return n;
}

/*
 * Fields of m as nghttp2 name/value pairs (pseudo-headers first), in
 * stack (nstack entries) when they fit, else in an allocation: free *nv
 * with sc_free when it is not stack.
 */
static int
to_nv(const struct hmsg *m, char status[4], char clen[24], nghttp2_nv *stack, size_t nstack,
    nghttp2_nv **nv, size_t *n)
{
	nghttp2_nv *v;
	size_t i, k = 0, cl = 0;

#define NV(nm, nl, val, vl, fl) do { \
	v[k].name = (uint8_t *)(nm); v[k].namelen = (nl); \
	v[k].value = (uint8_t *)(val); v[k].valuelen = (vl); v[k].flags = (fl); k++; \
} while (0)

	*nv = NULL;
	*n = 0;
	if (m->nf + 6 <= nstack)
		v = stack;
	else if ((v = sc_calloc(m->nf + 6, sizeof(*v))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	if (m->request) {
		/* nghttp2 (as RFC 9113 8.3.1 asks) takes no request without an authority */
		if (m->method == NULL || m->path == NULL || m->scheme == NULL ||
		    m->authority == NULL || m->authority[0] == '\0') {
			if (v != stack)
				sc_free(v);
			return hsm_err(HSM_EPROTO, "http2: a request needs a method, scheme, "
			    "authority and path");
		}
		NV(":method", 7, m->method, strlen(m->method), NGHTTP2_NV_FLAG_NONE);
		NV(":scheme", 7, m->scheme, strlen(m->scheme), NGHTTP2_NV_FLAG_NONE);
		NV(":authority", 10, m->authority, strlen(m->authority), NGHTTP2_NV_FLAG_NONE);
		NV(":path", 5, m->path, strlen(m->path), NGHTTP2_NV_FLAG_NONE);
	} else {
		if (m->status < 100 || m->status > 599) {
			if (v != stack)
				sc_free(v);
			return hsm_err(HSM_EPROTO, "http2: status %d cannot be sent", m->status);
		}
		status[0] = (char)('0' + m->status / 100);
		status[1] = (char)('0' + m->status / 10 % 10);
		status[2] = (char)('0' + m->status % 10);
		status[3] = '\0';
		NV(":status", 7, status, 3, NGHTTP2_NV_FLAG_NONE);
	}
	if (m->content_length >= 0) {
		cl = u64_dec((uint64_t)m->content_length, clen);
		NV("content-length", 14, clen, cl, NGHTTP2_NV_FLAG_NONE);
	}
	for (i = 0; i < m->nf; i++) {
		const struct hfield *f = &m->f[i];

		if (not_sent(f))
			continue;
		NV(f->name, f->nlen, f->value, f->vlen, never_indexed(f) ?
		    NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE);
	}
#undef NV
	*nv = v;
	*n = k;
	return 0;
}

/* Trailer fields: regular fields only. */
static int
trailers_nv(const struct hmsg *t, nghttp2_nv *stack, size_t nstack, nghttp2_nv **nv, size_t *n)
{
	struct hmsg tmp = *t;

	tmp.request = 0;
	tmp.status = 200;
	tmp.content_length = -1;
	if (to_nv(&tmp, (char[4]){ 0 }, (char[24]){ 0 }, stack, nstack, nv, n) != 0)
		return -1;
	/* drop the :status the response form put first */
	memmove(*nv, *nv + 1, (*n - 1) * sizeof(**nv));
	(*n)--;
	return 0;
}

static ssize_t
data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
    nghttp2_data_source *src, void *ud)
{
	struct h2 *h = ud;
	struct h2_stream *st = src->ptr;
	nghttp2_nv *nv, stk[NV_STACK];
	size_t n = st->out.len < len ? st->out.len : len, nnv;

	if (n > 0) {
		memcpy(buf, st->out.p + st->out.off, n);
		st->out.off += n;
		st->out.len -= n;
		h->out_total -= n;
		if (st->out.len == 0)
			sbuf_free(&st->out);
		if (st->blocked && st->out.len <= h->lim.send_buffer / 2) {
			st->blocked = 0;
			st->room_due = 1;
			h->room_due = 1;
		}
	}
	if (st->out.len == 0 && st->out_eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->tr_out != NULL) {
			if (trailers_nv(st->tr_out, stk, NV_STACK, &nv, &nnv) == 0) {
				if (nghttp2_submit_trailer(s, id, nv, nnv) == 0)
					*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
				if (nv != stk)
					sc_free(nv);
			}
		}
		return (ssize_t)n;
	}
	if (n == 0) {
		st->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

static void
resume(struct h2 *h, struct h2_stream *st)
{
	if (st->deferred && !st->closed && st->id > 0) {
		st->deferred = 0;
		nghttp2_session_resume_data(h->s, st->id);
	}
}

/* ---- the connection ---- */

int
h2_new(enum h2_role role, const struct h2_limits *lim, const struct h2_ops *ops, void *arg,
    struct h2 **out)
{
	static nghttp2_mem ngmem = { NULL, ng_malloc, ng_free, ng_calloc, ng_realloc };
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;
	nghttp2_settings_entry set[5];
	struct h2 *h;
	size_t ns = 0;
	int r = HSM_ENOMEM;

	*out = NULL;
	if ((h = sc_calloc(1, sizeof(*h))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	h->role = role;
	if (lim != NULL)
		h->lim = *lim;
	else
		h2_limits_default(&h->lim);
	if (ops != NULL)
		h->ops = *ops;
	h->arg = arg;
	h->all.next = h->all.prev = &h->all;
	if (h->lim.max_streams == 0 || h->lim.max_headers == 0 || h->lim.max_header_bytes == 0 ||
	    h->lim.stream_window < H2_DEFAULT_WINDOW || h->lim.stream_window > INT32_MAX ||
	    h->lim.conn_window < h->lim.stream_window || h->lim.conn_window > INT32_MAX ||
	    h->lim.send_buffer == 0) {
		sc_free(h);
		return hsm_err(HSM_EINVAL, "http2: limits out of range");
	}
	if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
		goto out;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	/* acknowledge DATA only when consumed: end-to-end backpressure */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_no_closed_streams(opt, 1);
	nghttp2_option_set_peer_max_concurrent_streams(opt, h->lim.max_streams);
	if ((role == H2_SERVER ? nghttp2_session_server_new3(&h->s, cb, h, opt, &ngmem) :
	    nghttp2_session_client_new3(&h->s, cb, h, opt, &ngmem)) != 0)
		goto out;
	set[ns++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
	    role == H2_SERVER ? h->lim.max_streams : 0 };
	set[ns++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
	    h->lim.stream_window };
	set[ns++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
	    h->lim.max_header_bytes };
	if (role == H2_CLIENT)
		set[ns++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 };
	if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, set, ns) != 0 ||
	    nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0,
	    (int32_t)h->lim.conn_window) != 0)
		goto out;
	r = 0;
 out:
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (r != 0) {
		h2_free(h);
		return hsm_err(r, "http2: cannot set up a session");
	}
	*out = h;
	return 0;
}

void
h2_free(struct h2 *h)
{
	struct h2_stream *st, *nx;

	if (h == NULL)
		return;
	for (st = h->all.next; st != NULL && st != &h->all; st = nx) {
		nx = st->next;
		hmsg_clear(&st->blk);
		if (st->tr_out != NULL)
			hmsg_clear(st->tr_out);
		sc_free(st->tr_out);
		sc_free(st->in.p);
		sc_free(st->out.p);
		sc_free(st);
	}
	nghttp2_session_del(h->s);
	sc_free(h);
}

int
h2_feed(struct h2 *h, const uint8_t *buf, size_t len)
{
	ssize_t r;

	if (h->broken)
		return hsm_err(HSM_EPROTO, "http2: the connection failed before");
	if (len == 0)
		return 0;
	r = nghttp2_session_mem_recv(h->s, buf, len);
	if (r < 0) {
		h->broken = 1;
		nghttp2_session_terminate_session(h->s, r == NGHTTP2_ERR_FLOODED ?
		    NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
		return hsm_err(r == NGHTTP2_ERR_NOMEM ? HSM_ENOMEM : HSM_EPROTO, "http2: %s",
		    nghttp2_strerror((int)r));
	}
	return 0;
}

/* Tell the caller which streams' queues have room again. */
static void
room_calls(struct h2 *h)
{
	struct h2_stream *st, *nx;

	if (!h->room_due)
		return;
	h->room_due = 0;
	for (st = h->all.next; st != &h->all; st = nx) {
		st->incb++;
		if (st->room_due) {
			st->room_due = 0;
			if (st->lent && !st->closed && h->ops.room != NULL)
				h->ops.room(h->arg, st);
		}
		nx = st->next;
		st->incb--;
		maybe_free(h, st);
	}
}

int
h2_out(struct h2 *h, const uint8_t **p, size_t *n)
{
	const uint8_t *data;
	ssize_t r;

	*p = NULL;
	*n = 0;
	if (h->npend == 0) {
		r = nghttp2_session_mem_send(h->s, &data);
		if (r < 0) {
			h->broken = 1;
			return hsm_err(r == NGHTTP2_ERR_NOMEM ? HSM_ENOMEM : HSM_EPROTO,
			    "http2: %s", nghttp2_strerror((int)r));
		}
		h->pend = data;
		h->npend = (size_t)r;
		room_calls(h);
	}
	*p = h->pend;
	*n = h->npend;
	return 0;
}

void
h2_out_done(struct h2 *h, size_t k)
{
	if (k > h->npend)
		k = h->npend;
	h->pend += k;
	h->npend -= k;
}

int
h2_drain(struct h2 *h, uint8_t *buf, size_t cap, size_t *n)
{
	const uint8_t *p;
	size_t k, got = 0;
	int r;

	*n = 0;
	while (got < cap) {
		if ((r = h2_out(h, &p, &k)) != 0)
			return r;
		if (k == 0)
			break;
		if (k > cap - got)
			k = cap - got;
		memcpy(buf + got, p, k);
		h2_out_done(h, k);
		got += k;
	}
	*n = got;
	return 0;
}

int
h2_want_read(const struct h2 *h)
{
	return !h->broken && nghttp2_session_want_read(h->s);
}

int
h2_want_write(const struct h2 *h)
{
	return h->npend > 0 || nghttp2_session_want_write(h->s);
}

/* ---- streams ---- */

int
h2_request(struct h2 *h, const struct hmsg *m, int end, void *user, struct h2_stream **out)
{
	nghttp2_data_provider prd;
	struct h2_stream *st;
	nghttp2_nv *nv, stk[NV_STACK];
	char status[4], clen[24];
	size_t n;
	int32_t id;
	int r;

	*out = NULL;
	if (h->role != H2_CLIENT || !m->request)
		return hsm_err(HSM_EINVAL, "http2: only a client sends requests");
	if (h2_can_open(h) == 0)
		return hsm_err(HSM_EBUSY, "http2: no stream can be opened now");
	if ((r = to_nv(m, status, clen, stk, NV_STACK, &nv, &n)) != 0)
		return r;
	if ((st = stream_new(h, 0)) == NULL) {
		if (nv != stk)
			sc_free(nv);
		return hsm_err(HSM_ENOMEM, "out of memory");
	}
	st->user = user;
	st->lent = 1;
	st->out_eof = end != 0;
	st->has_provider = !end;
	prd.source.ptr = st;
	prd.read_callback = data_read;
	id = nghttp2_submit_request(h->s, NULL, nv, n, end ? NULL : &prd, st);
	if (nv != stk)
		sc_free(nv);
	if (id < 0) {
		st->closed = 1;
		st->lent = 0;
		stream_free(h, st);
		return hsm_err(HSM_EPROTO, "http2: request not sent: %s", nghttp2_strerror(id));
	}
	st->id = id;
	*out = st;
	return 0;
}

int
h2_response(struct h2 *h, struct h2_stream *st, const struct hmsg *m, int end)
{
	nghttp2_data_provider prd;
	nghttp2_nv *nv, stk[NV_STACK];
	char status[4], clen[24];
	size_t n;
	int r;

	if (h->role != H2_SERVER || m->request)
		return hsm_err(HSM_EINVAL, "http2: only a server sends responses");
	if (st->closed)
		return hsm_err(HSM_ECLOSED, "http2: stream %d is closed", st->id);
	if ((r = to_nv(m, status, clen, stk, NV_STACK, &nv, &n)) != 0)
		return r;
	if (m->status < 200) {
		r = nghttp2_submit_headers(h->s, NGHTTP2_FLAG_NONE, st->id, NULL, nv, n, NULL);
	} else {
		prd.source.ptr = st;
		prd.read_callback = data_read;
		st->out_eof = st->out_eof || end;
		st->has_provider = !end;
		r = nghttp2_submit_response(h->s, st->id, nv, n, end ? NULL : &prd);
	}
	if (nv != stk)
		sc_free(nv);
	if (r != 0)
		return hsm_err(HSM_EPROTO, "http2: response not sent: %s", nghttp2_strerror(r));
	return 0;
}

int
h2_write(struct h2 *h, struct h2_stream *st, const uint8_t *buf, size_t len, size_t *taken)
{
	size_t room, k;

	*taken = 0;
	if (st->closed || st->out_eof)
		return hsm_err(HSM_ECLOSED, "http2: stream %d takes no more body", st->id);
	room = h->lim.send_buffer - st->out.len;
	k = len < room ? len : room;
	if (k > 0) {
		if (sbuf_room(&st->out, k, h->lim.send_buffer) != 0)
			return hsm_err(HSM_ENOMEM, "out of memory");
		memcpy(st->out.p + st->out.off + st->out.len, buf, k);
		st->out.len += k;
		h->out_total += k;
		resume(h, st);
	}
	/* a queue left full asks for the room callback too: the caller may write only what fits */
	if (k < len || st->out.len == h->lim.send_buffer)
		st->blocked = 1;
	*taken = k;
	return 0;
}

int
h2_end(struct h2 *h, struct h2_stream *st, const struct hmsg *t)
{
	struct hmsg *c;
	size_t i;

	if (st->closed || st->out_eof)
		return hsm_err(HSM_ECLOSED, "http2: stream %d takes no more body", st->id);
	if (t != NULL && t->nf > 0) {
		if ((c = sc_calloc(1, sizeof(*c))) == NULL)
			return hsm_err(HSM_ENOMEM, "out of memory");
		hmsg_init(c, 0);
		for (i = 0; i < t->nf; i++)
			if (hmsg_add(c, t->f[i].name, t->f[i].nlen, t->f[i].value,
			    t->f[i].vlen) != 0) {
				hmsg_clear(c);
				sc_free(c);
				return HSM_ENOMEM;
			}
		st->tr_out = c;
	}
	st->out_eof = 1;
	resume(h, st);
	return 0;
}

void
h2_peek(struct h2 *h, struct h2_stream *st, const uint8_t **p, size_t *n)
{
	*p = st->in.len > 0 ? st->in.p + st->in.off : NULL;
	*n = st->in.len;
}

void
h2_consume(struct h2 *h, struct h2_stream *st, size_t n)
{
	if (n > st->in.len)
		n = st->in.len;
	if (n == 0)
		return;
	st->in.off += n;
	st->in.len -= n;
	h->in_total -= n;
	nghttp2_session_consume(h->s, st->id, n);
	if (st->in.len == 0)
		sbuf_free(&st->in);
}

void
h2_reset(struct h2 *h, struct h2_stream *st, uint32_t code)
{
	drop_in(h, st);
	drop_out(h, st);
	st->out_eof = 1;
	if (!st->closed && st->id > 0)
		nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, code);
}

void
h2_stream_done(struct h2 *h, struct h2_stream *st)
{
	int ours_ended;

	if (st == NULL || !st->lent)
		return;
	st->lent = 0;
	if (!st->closed) {
		/* RFC 9113 8.1: NO_ERROR after a complete response ends a request early */
		ours_ended = st->out_eof && st->out.len == 0 && st->id > 0 &&
		    nghttp2_session_get_stream_local_close(h->s, st->id) == 1;
		h2_reset(h, st, ours_ended ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
		return;	/* freed when nghttp2 closes it */
	}
	drop_in(h, st);
	maybe_free(h, st);
}

void
h2_stream_set_user(struct h2_stream *st, void *user)
{
	st->user = user;
}

void *
h2_stream_user(const struct h2_stream *st)
{
	return st->user;
}

int32_t
h2_stream_id(const struct h2_stream *st)
{
	return st->id;
}

int
h2_stream_sent(struct h2 *h, const struct h2_stream *st)
{
	if (!st->out_eof || st->out.len > 0)
		return 0;
	return st->closed || st->id <= 0 ||
	    nghttp2_session_get_stream_local_close(h->s, st->id) == 1;
}

int
h2_ping(struct h2 *h)
{
	static const uint8_t opaque[8] = { 'h', 's', 'm', 'e', 's', 'h', 0, 1 };
	int r;

	if ((r = nghttp2_submit_ping(h->s, NGHTTP2_FLAG_NONE, opaque)) != 0)
		return hsm_err(r == NGHTTP2_ERR_NOMEM ? HSM_ENOMEM : HSM_EPROTO, "http2: PING: %s",
		    nghttp2_strerror(r));
	h->ping_out = 1;
	return 0;
}

int
h2_ping_pending(const struct h2 *h)
{
	return h->ping_out;
}

size_t
h2_can_open(const struct h2 *h)
{
	uint32_t peer, max;

	if (h->role != H2_CLIENT || h->broken || !nghttp2_session_check_request_allowed(h->s))
		return 0;
	peer = nghttp2_session_get_remote_settings(h->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	max = peer < h->lim.max_streams ? peer : h->lim.max_streams;
	/* handles not given back hold buffers: they count as well */
	return h->nstreams >= max ? 0 : max - h->nstreams;
}

void
h2_goaway(struct h2 *h, uint32_t code)
{
	nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE,
	    nghttp2_session_get_last_proc_stream_id(h->s), code, NULL, 0);
}

void
h2_get_stats(const struct h2 *h, struct h2_stats *s)
{
	s->streams = h->nstreams;
	s->buffered_in = h->in_total;
	s->buffered_out = h->out_total;
	s->pending_out = h->npend;
}

void
h2_stream_buffered(const struct h2_stream *st, size_t *in, size_t *out)
{
	*in = st->in.len;
	*out = st->out.len;
}
