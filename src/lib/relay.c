/*
 * relay.c - the byte relay between two sides (see relay.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "relay.h"

void
relay_init(struct relay *r, size_t cap)
{
	memset(r, 0, sizeof(*r));
	r->buf[0].cap = r->buf[1].cap = cap;
}

/* Lend b a buffer of b->cap bytes (kept if it has one). 0, or -1 when memory is short. */
static int
buf_take(struct relay_pool *p, struct relay_buf *b)
{
	if (b->data != NULL)
		return 0;
	b->off = b->len = 0;
	if (p->n > 0 && p->cap == b->cap) {
		b->data = p->buf[--p->n];
		return 0;
	}
	if (p->n > 0)	/* the buffer size changed (a reload): let the old size go */
		free(p->buf[--p->n]);
	return (b->data = malloc(b->cap)) != NULL ? 0 : -1;
}

/* Give an empty buffer back to the pool (drop: even one with bytes left). */
static void
buf_give(struct relay_pool *p, struct relay_buf *b, int drop)
{
	if (b->data == NULL || (b->len > 0 && !drop))
		return;
	if (p->n == 0)
		p->cap = b->cap;
	if (p->n < RELAY_POOL_KEEP && p->cap == b->cap)
		p->buf[p->n++] = b->data;
	else
		free(b->data);
	b->data = NULL;
	b->off = b->len = 0;
}

/* Room at the end of b, moving its bytes to the front when they reached the end. */
static size_t
buf_space(struct relay_buf *b)
{
	if (b->data == NULL)
		return 0;
	if (b->len == 0)
		b->off = 0;
	else if (b->off + b->len == b->cap && b->off > 0) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	return b->cap - b->off - b->len;
}

enum relay_st
relay_pump(struct relay *r, struct side s[2], int why, struct relay_pool *pool, struct fail *f)
{
	int progress, moved = 0, i;
	int dry[2], full[2] = { 0, 0 };
	struct relay_buf *b;
	enum side_st st;
	size_t sp, n;

	if (buf_take(pool, &r->buf[0]) != 0 || buf_take(pool, &r->buf[1]) != 0) {
		fail_set(f, REASON_INTERNAL, "out of memory");
		goto fail;
	}
	for (i = 0; i < 2; i++) {
		s[i].bufs = 1;
		dry[i] = why == !i && s[i].dry && !side_pending(&s[i]);
	}
	/*
	 * SSL_get_error reads a stale error on the queue as the failure of
	 * the call: start clean. Calls that succeed or want I/O add nothing,
	 * and a failure ends the pump, so once per pump is enough.
	 */
	if (ERR_peek_error() != 0)
		ERR_clear_error();
	do {
		progress = 0;
		for (i = 0; i < 2; i++) {
			struct side *in = &s[i], *out = &s[!i];

			b = &r->buf[i];
			if (!in->eof && !dry[i] && (sp = buf_space(b)) > 0) {
				/* n is 0 unless SIDE_OK; an end is progress too */
				if ((st = side_read(in, b->data + b->off + b->len, sp, &n, f)) == SIDE_FAILED)
					goto fail;
				b->len += n;
				progress |= st != SIDE_WAIT;
				dry[i] = in->dry;
			}
			if (b->len > 0 && !full[!i]) {
				if (side_write(out, b->data + b->off, b->len, &n, f) == SIDE_FAILED)
					goto fail;
				b->off += n;
				b->len -= n;
				progress |= n > 0;
				full[!i] = out->full;
			}
			if (in->eof && b->len == 0 && !out->shut &&
			    side_shutdown(out) == SIDE_OK)
				progress = 1;
		}
		moved |= progress;
	} while (progress);
	r->moved = (uint8_t)moved;
	if (s[0].eof && s[1].eof && s[0].shut && s[1].shut && r->buf[0].len == 0 &&
	    r->buf[1].len == 0)
		return RELAY_DONE;
	buf_give(pool, &r->buf[0], 0);
	buf_give(pool, &r->buf[1], 0);
	return RELAY_OPEN;
 fail:
	ERR_clear_error();
	return RELAY_FAILED;
}

uint32_t
relay_events(const struct relay *r, const struct side s[2], int i)
{
	const struct relay_buf *in = &r->buf[i], *out = &r->buf[!i];
	uint32_t ev = 0;

	if (!s[i].eof && in->cap - in->len > 0)
		ev |= s[i].rd_want;
	if (out->len > 0)
		ev |= s[i].wr_want;
	if (s[!i].eof && !s[i].shut)
		ev |= s[i].sd_want;
	return ev;
}

void
relay_release(struct relay *r, struct relay_pool *pool)
{
	buf_give(pool, &r->buf[0], 1);
	buf_give(pool, &r->buf[1], 1);
}

void
relay_pool_drain(struct relay_pool *pool)
{
	while (pool->n > 0)
		free(pool->buf[--pool->n]);
}
