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

/*
 * The pool's take and give (relay.h), called, not inlined, from the pump:
 * the relay's per-event code stays as it was measured.
 */
static __attribute__((noinline)) int
buf_take(struct relay_pool *p, struct relay_buf *b)
{
	return relay_buf_take(p, b);
}

static __attribute__((noinline)) void
buf_give(struct relay_pool *p, struct relay_buf *b, int drop)
{
	relay_buf_give(p, b, drop);
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

/*
 * One direction, from side in to side out through b: read while there is
 * room (unless dry), write while bytes wait (unless full), pass an end on
 * once b is empty (!write: read only). 1 when something moved or ended,
 * 0 when not, -1 when a side failed (f says why). Inlined with constant
 * sides and write (a loop over both directions cost a fifth more
 * instructions per pump).
 */
static inline __attribute__((always_inline)) int
relay_dir(struct relay_buf *b, struct side *in, struct side *out, int *dry, int *full,
    int write, struct fail *f)
{
	enum side_st st;
	int progress = 0;
	size_t sp, n;

	if (!in->eof && !*dry && (sp = buf_space(b)) > 0) {
		/* n is 0 unless SIDE_OK; an end is progress too */
		if ((st = side_read(in, b->data + b->off + b->len, sp, &n, f)) == SIDE_FAILED)
			return -1;
		b->len += n;
		progress = st != SIDE_WAIT;
		*dry = in->dry;
	}
	if (!write)
		return progress;
	if (b->len > 0 && !*full) {
		if (side_write(out, b->data + b->off, b->len, &n, f) == SIDE_FAILED)
			return -1;
		b->off += n;
		b->len -= n;
		progress |= n > 0;
		*full = out->full;
	}
	if (in->eof && b->len == 0 && !out->shut && side_shutdown(out) == SIDE_OK)
		progress = 1;
	return progress;
}

static inline __attribute__((always_inline)) enum relay_st
pump(struct relay *r, struct side s[2], int why, struct relay_pool *pool, int write,
    struct fail *f)
{
	int p0, p1, moved = 0, dry0, dry1, full0 = 0, full1 = 0;

	if (buf_take(pool, &r->buf[0]) != 0 || buf_take(pool, &r->buf[1]) != 0) {
		fail_set(f, REASON_INTERNAL, "out of memory");
		goto fail;
	}
	s[0].bufs = s[1].bufs = 1;
	/* after a gather, each side was read to dry in this batch or had nothing to say */
	dry0 = (why == 1 || why == RELAY_AFTER_GATHER) && s[0].dry && !side_pending(&s[0]);
	dry1 = (why == 0 || why == RELAY_AFTER_GATHER) && s[1].dry && !side_pending(&s[1]);
	/*
	 * SSL_get_error reads a stale error on the queue as the failure of
	 * the call: start clean. Calls that succeed or want I/O add nothing,
	 * and a failure ends the pump, so once per pump is enough.
	 */
	if (ERR_peek_error() != 0)
		ERR_clear_error();
	do {
		if ((p0 = relay_dir(&r->buf[0], &s[0], &s[1], &dry0, &full1, write, f)) < 0 ||
		    (p1 = relay_dir(&r->buf[1], &s[1], &s[0], &dry1, &full0, write, f)) < 0)
			goto fail;
		moved |= p0 | p1;
	} while (p0 | p1);
	r->moved = (uint8_t)(moved | (why == RELAY_AFTER_GATHER ? r->moved : 0));
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

enum relay_st
relay_pump(struct relay *r, struct side s[2], int why, struct relay_pool *pool, struct fail *f)
{
	return pump(r, s, why, pool, 1, f);
}

enum relay_st
relay_gather(struct relay *r, struct side s[2], int why, struct relay_pool *pool,
    struct fail *f)
{
	return pump(r, s, why, pool, 0, f);
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

unsigned
relay_pool_trim(struct relay_pool *pool)
{
	unsigned freed = 0;

	while (pool->low > 0 && pool->n > RELAY_POOL_KEEP) {
		free(pool->buf[--pool->n]);
		pool->low--;
		freed++;
	}
	pool->low = pool->n;
	return freed;
}
