/*
 * relay.h - the byte relay between the two sides of a connection
 * (side.h), independent of what the sides are (TLS or plain) and of the
 * event loop: buffers, pump decisions, half-close, backpressure and the
 * epoll interest each side needs next.
 *
 * Each direction has one buffer of at most cap bytes: bytes read from a
 * side wait there until the other side takes them, and a side whose bytes
 * the other has not taken is not read (backpressure: nothing is buffered
 * beyond 2 * cap per connection). Buffers are lent from a pool only while
 * bytes are in flight, so an idle connection holds none. An end of one
 * side's stream is passed on as a half-close of the other once its bytes
 * are delivered; the relay is done when both directions have ended. A
 * reset or error on either side fails the relay: the caller closes both
 * sides without close_notify, so the other end never takes a cut stream
 * for a complete one.
 *
 * Lifecycle: relay_init, then relay_pump after each event on either side
 * (and once at start), registering relay_events(r, s, i) for each side
 * while it returns RELAY_OPEN; relay_release when the connection ends.
 * An event loop may split a pump in two: relay_gather at each event of a
 * batch (reads only), then relay_pump(..., RELAY_AFTER_GATHER, ...) once
 * per connection when the batch is done, so that the batch's writes leave
 * together (see relay_gather).
 */
#ifndef HSM_RELAY_H
#define HSM_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "reason.h"
#include "side.h"

#define RELAY_POOL_KEEP 16	/* free buffers a pool keeps however quiet */
#define RELAY_POOL_MAX	512	/* at most (a batch of 256 events gathers 2 per connection) */

/*
 * Free relay buffers of one size, for one thread (no lock). A batch of
 * events that gathers (relay_gather) holds a buffer per connection read
 * until its end, so the pool keeps up to RELAY_POOL_MAX: a malloc and
 * free of a buffer per request cost more than the relay's own code. What
 * a whole period between two relay_pool_trim calls left unused (its low
 * water mark) is freed then, down to RELAY_POOL_KEEP.
 */
struct relay_pool {
	uint8_t *buf[RELAY_POOL_MAX];
	unsigned n;
	unsigned low;		/* the fewest free buffers since the last trim */
	size_t cap;		/* size of the buffers kept */
};

struct relay_buf {
	uint8_t *data;		/* lent by the pool while bytes are in flight */
	size_t off, len, cap;
};

struct relay {
	struct relay_buf buf[2];	/* buf[i]: read from side i, for side !i */
	uint8_t moved;			/* the last pump moved bytes */
};

enum relay_st {
	RELAY_OPEN,	/* wait for the events relay_events names */
	RELAY_DONE,	/* both directions ended and every byte was delivered */
	RELAY_FAILED,	/* a side was reset or broke: f says why; close both */
};

/*
 * Lend b a buffer of b->cap bytes from p (kept if it has one). 0, or -1
 * when memory is short. Inline: the relay's pump takes its buffers for
 * every event (and the HTTP codec uses the same pool).
 */
static inline int
relay_buf_take(struct relay_pool *p, struct relay_buf *b)
{
	if (b->data != NULL)
		return 0;
	b->off = b->len = 0;
	if (p->n > 0 && p->cap == b->cap) {
		b->data = p->buf[--p->n];
		if (p->n < p->low)
			p->low = p->n;
		return 0;
	}
	p->low = 0;
	if (p->n > 0)	/* the buffer size changed (a reload): let the old size go */
		free(p->buf[--p->n]);
	return (b->data = malloc(b->cap)) != NULL ? 0 : -1;
}

/* Give an empty buffer back to p (drop: even one with bytes left). */
static inline void
relay_buf_give(struct relay_pool *p, struct relay_buf *b, int drop)
{
	if (b->data == NULL || (b->len > 0 && !drop))
		return;
	if (p->n == 0)
		p->cap = b->cap;
	if (p->n < RELAY_POOL_MAX && p->cap == b->cap)
		p->buf[p->n++] = b->data;
	else
		free(b->data);
	b->data = NULL;
	b->off = b->len = 0;
}

/* Start a relay whose buffers hold cap > 0 bytes each (none taken yet). */
void relay_init(struct relay *r, size_t cap);

/*
 * Move bytes both ways until nothing moves, then pass on half-closes.
 * why is the side (0 or 1) whose event called us, or -1 (start, or any).
 * A side is read again in the same pump only when its last read filled
 * the space offered (or TLS holds more), and a plain side is written
 * again only when its last write took everything: a short read or write
 * means dry or full, and level-triggered epoll reports when that changes
 * (a TLS side is dry only once its socket was found empty, side.h).
 * Likewise an event on one side does not retry a read of the other that
 * last found it dry. Buffers come from pool and go back when empty.
 * Starts by clearing a stale OpenSSL error queue. RELAY_OPEN,
 * RELAY_DONE, or RELAY_FAILED with f set (REASON_INTERNAL when no
 * buffer could be had).
 */
enum relay_st relay_pump(struct relay *r, struct side s[2], int why, struct relay_pool *pool,
    struct fail *f);

/* relay_pump's why after relay_gather: neither side is read again when its gather found it dry. */
#define RELAY_AFTER_GATHER	(-2)

/*
 * The reading half of relay_pump (same why, same results; never writes
 * nor half-closes). An event loop gathers at each event of a batch and
 * pumps each gathered connection with RELAY_AFTER_GATHER once the batch
 * is done: the writes of a batch then leave back to back. A process that
 * reads what we write (the app, the client) is woken once per batch rather
 * than once per write: on a VM each wake of an idle CPU is an IPI that
 * costs the writer microseconds (bench/kaprofile.sh IPI=1). Reads stop at
 * the buffer's room (backpressure as relay_pump); bytes gathered wait in
 * the buffer only until the batch's end.
 */
enum relay_st relay_gather(struct relay *r, struct side s[2], int why, struct relay_pool *pool,
    struct fail *f);

/*
 * The epoll events side i waits for now: its read's when it may read and
 * its buffer has room, its write's while bytes wait for it, its shutdown's
 * while a half-close waits to be sent. 0 = nothing (no interest).
 */
static inline uint32_t
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

/* Give both buffers back to pool, even with bytes in them (the relay ended). */
void relay_release(struct relay *r, struct relay_pool *pool);

/* Free the pool's buffers. */
void relay_pool_drain(struct relay_pool *pool);

/*
 * Free the buffers the pool held unused since the last call (beyond
 * RELAY_POOL_KEEP) and start a new period; the number freed. A worker
 * calls it at each sweep: after a burst, the extra buffers go within two.
 */
unsigned relay_pool_trim(struct relay_pool *pool);

#endif
