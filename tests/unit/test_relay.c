/*
 * test_relay.c - the byte relay (lib/relay.c) between two real sockets,
 * driven the way the sidecar drives it: relay_pump after each event
 * poll(2) reports for the interest relay_events asks for. Plain sides on
 * socketpairs and loopback TCP, and a TLS side over a socketpair with a
 * test certificate. Covered: data both ways, half-close of each direction
 * (passed on only once the bytes before it are delivered), the relay done
 * when both directions ended, a peer's reset and a TLS stream cut,
 * backpressure (a side that does not read stops the other's reads, with
 * at most one buffer per direction held), the other direction flowing
 * meanwhile, buffers lent only while bytes are in flight, closing with
 * bytes pending, and the pump's dry decisions.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>

#include <cmocka.h>

#include "reason.h"
#include "relay.h"
#include "side.h"
#include "sockbio.h"
#include "tls_fixture.h"

/*
 * The relay between side 0 (socket a[0]) and side 1 (b[0]); the test plays
 * the two far ends a[1] and b[1] (a[1] through cli when side 0 is TLS).
 */
struct fx {
	int a[2], b[2];
	struct side s[2];
	struct relay r;
	struct relay_pool pool;
	struct fail f;
	enum relay_st st;
	SSL_CTX *sctx, *cctx;
	SSL *cli;
};

static void
fx_plain(struct fx *x, size_t cap, int tcp_b)
{
	memset(x, 0, sizeof(*x));
	tf_socketpair(x->a);
	if (tcp_b)
		tf_tcppair(x->b);
	else
		tf_socketpair(x->b);
	side_init(&x->s[0], x->a[0], NULL, "the a");
	side_init(&x->s[1], x->b[0], NULL, "the b");
	relay_init(&x->r, cap);
	x->st = RELAY_OPEN;
}

/* Side 0 a TLS server, the test its client; ignore_eof as the sidecar sets it. */
static void
fx_tls(struct fx *x, size_t cap, int ignore_eof)
{
	SSL *srv;
	int r;

	fx_plain(x, cap, 0);
	x->sctx = tf_ctx(1, 1, 0, ignore_eof);
	x->cctx = tf_ctx(0, 0, 0, ignore_eof);
	assert_non_null(srv = SSL_new(x->sctx));
	assert_non_null(x->cli = SSL_new(x->cctx));
	/* side 0 as the sidecar sets up its TLS sides: a sockbio, read-ahead on */
	assert_int_equal(sockbio_attach(srv, x->a[0]), 1);
	SSL_set_read_ahead(srv, 1);
	SSL_set_fd(x->cli, x->a[1]);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(x->cli);
	assert_int_equal(tf_handshake(srv, x->cli, &r), 1);
	side_init(&x->s[0], x->a[0], srv, "the peer");
}

static void
fx_free(struct fx *x)
{
	relay_release(&x->r, &x->pool);
	relay_pool_drain(&x->pool);
	SSL_free(x->s[0].ssl);
	SSL_free(x->cli);
	SSL_CTX_free(x->sctx);
	SSL_CTX_free(x->cctx);
	for (int i = 0; i < 2; i++) {
		if (x->a[i] >= 0)
			close(x->a[i]);
		if (x->b[i] >= 0)
			close(x->b[i]);
	}
	ERR_clear_error();
}

static void
pump(struct fx *x, int why)
{
	assert_int_equal(x->st, RELAY_OPEN);
	x->st = relay_pump(&x->r, x->s, why, &x->pool, &x->f);
}

/*
 * The sidecar's batch of events (proxy/tcp.c): relay_gather for each side
 * with an event, then one relay_pump(RELAY_AFTER_GATHER). settle() drives
 * the relay this way while gathering is set (the gather_* tests).
 */
static int gathering;

static void
gather(struct fx *x, int why)
{
	assert_int_equal(x->st, RELAY_OPEN);
	x->st = relay_gather(&x->r, x->s, why, &x->pool, &x->f);
}

/*
 * The event loop: while the relay is open, wait (up to 20 ms) for the
 * events it asks for and pump for each side that has one (gathering: a
 * gather for each, then one pump); stop when nothing happens. Bounded: at
 * most 1000 rounds.
 */
static void
settle(struct fx *x)
{
	for (int round = 0; round < 1000 && x->st == RELAY_OPEN; round++) {
		struct pollfd p[2];
		int n;

		for (int i = 0; i < 2; i++) {
			uint32_t ev = relay_events(&x->r, x->s, i);

			p[i].fd = ev != 0 ? x->s[i].fd : -1;
			p[i].events = (short)((ev & EPOLLIN ? POLLIN : 0) | (ev & EPOLLOUT ? POLLOUT : 0));
			p[i].revents = 0;
		}
		if ((n = poll(p, 2, 20)) <= 0)
			return;
		for (int i = 0; i < 2 && x->st == RELAY_OPEN; i++)
			if (p[i].revents != 0) {
				if (gathering)
					gather(x, i);
				else
					pump(x, i);
			}
		if (gathering && x->st == RELAY_OPEN)
			pump(x, RELAY_AFTER_GATHER);
	}
}

/*
 * An event loop for a tcp relay like the sidecar's (proxy/tcp.c, conn.c
 * ep_set, which register level-triggered) but stricter: epoll, each side
 * registered edge-triggered for what relay_events asks
 * (removed while it asks nothing), a pump for each event; stop when no
 * event is ready (every byte here is already in a socket when it is
 * called, so a ready event never needs waiting for). Bounded: 100,000
 * rounds.
 */
struct etloop {
	int ep;
	uint32_t ev[2];
};

static void
settle_et(struct fx *x, struct etloop *l)
{
	for (int round = 0; round < 100000 && x->st == RELAY_OPEN; round++) {
		struct epoll_event e[2];
		int n;

		for (int i = 0; i < 2; i++) {
			uint32_t ev = relay_events(&x->r, x->s, i);
			struct epoll_event want = { .data.u32 = (uint32_t)i };

			want.events = ev != 0 ? ev | EPOLLET : 0;
			if (want.events == l->ev[i])
				continue;
			if (want.events == 0)
				assert_int_equal(epoll_ctl(l->ep, EPOLL_CTL_DEL, x->s[i].fd, NULL), 0);
			else
				assert_int_equal(epoll_ctl(l->ep, l->ev[i] == 0 ? EPOLL_CTL_ADD :
				    EPOLL_CTL_MOD, x->s[i].fd, &want), 0);
			l->ev[i] = want.events;
		}
		if ((n = epoll_wait(l->ep, e, 2, 0)) <= 0)
			return;
		for (int k = 0; k < n && x->st == RELAY_OPEN; k++)
			pump(x, (int)e[k].data.u32);
	}
}

/* Read what the far end fd has (non-blocking), up to cap; -1 at EOF. */
static ssize_t
drain(int fd, uint8_t *buf, size_t cap)
{
	ssize_t n = read(fd, buf, cap);

	if (n == 0)
		return -1;
	return n < 0 ? 0 : n;
}

static void
both_ways(void **state)
{
	struct fx x;
	uint8_t buf[64];

	fx_plain(&x, 16384, 0);
	pump(&x, -1);
	assert_int_equal(x.st, RELAY_OPEN);
	/* idle: both sides wait to read, nothing else, no buffer held */
	assert_int_equal(relay_events(&x.r, x.s, 0), EPOLLIN);
	assert_int_equal(relay_events(&x.r, x.s, 1), EPOLLIN);
	assert_null(x.r.buf[0].data);
	assert_null(x.r.buf[1].data);
	assert_int_equal(x.pool.n, 2);
	assert_int_equal(write(x.a[1], "ping", 4), 4);
	settle(&x);
	assert_int_equal(drain(x.b[1], buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(write(x.b[1], "pong!", 5), 5);
	settle(&x);
	assert_int_equal(drain(x.a[1], buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "pong!", 5);
	assert_int_equal(x.s[0].nread, 4);
	assert_int_equal(x.s[1].nread, 5);
	assert_int_equal(x.st, RELAY_OPEN);
	assert_int_equal(x.f.reason, REASON_NONE);
	/* the buffers went back once empty */
	assert_null(x.r.buf[0].data);
	assert_int_equal(x.pool.n, 2);
	fx_free(&x);
}

/* One direction ends (side `first`), the other keeps flowing, then ends: done. */
static void
half_close(int first)
{
	struct fx x;
	uint8_t buf[64];
	int *f = first == 0 ? x.a : x.b, *o = first == 0 ? x.b : x.a;

	fx_plain(&x, 16384, 0);
	pump(&x, -1);
	assert_int_equal(write(f[1], "last", 4), 4);
	assert_int_equal(shutdown(f[1], SHUT_WR), 0);
	settle(&x);
	assert_int_equal(x.st, RELAY_OPEN);
	assert_int_equal(x.s[first].eof, 1);
	assert_int_equal(x.s[!first].shut, 1);
	assert_int_equal(x.s[first].shut, 0);
	/* the bytes, then the end */
	assert_int_equal(drain(o[1], buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "last", 4);
	assert_int_equal(drain(o[1], buf, sizeof(buf)), -1);
	/* the ended side no longer reads, and the other direction still flows */
	assert_int_equal(relay_events(&x.r, x.s, first) & EPOLLIN, 0);
	assert_int_equal(write(o[1], "reply", 5), 5);
	settle(&x);
	assert_int_equal(drain(f[1], buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "reply", 5);
	assert_int_equal(x.st, RELAY_OPEN);
	assert_int_equal(shutdown(o[1], SHUT_WR), 0);
	settle(&x);
	assert_int_equal(x.st, RELAY_DONE);
	assert_int_equal(drain(f[1], buf, sizeof(buf)), -1);
	assert_int_equal(x.f.reason, REASON_NONE);
	fx_free(&x);
}

static void
half_close_side0(void **state)
{
	half_close(0);
}

static void
half_close_side1(void **state)
{
	half_close(1);
}

/* Fill buf with the counting pattern from stream offset from, up to total; the length filled. */
static size_t
pattern(uint8_t *buf, size_t cap, size_t from, size_t total)
{
	size_t len = cap < total - from ? cap : total - from;

	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((from + i) % 251);
	return len;
}

/* Check that n bytes of buf continue the counting pattern at *seq, and count them. */
static void
pattern_check(const uint8_t *buf, size_t n, size_t *seq)
{
	for (size_t i = 0; i < n; i++)
		assert_int_equal(buf[i], (uint8_t)((*seq + i) % 251));
	*seq += n;
}

/* Write a counting pattern into fd until it would block; returns the bytes written. */
static size_t
fill(int fd, size_t *seq, size_t max)
{
	uint8_t chunk[4096];
	size_t total = 0;
	ssize_t n;

	while (total < max) {
		pattern(chunk, sizeof(chunk), *seq, SIZE_MAX);
		if ((n = write(fd, chunk, sizeof(chunk))) <= 0)
			break;
		*seq += (size_t)n;
		total += (size_t)n;
	}
	return total;
}

/* Read fd until it has nothing; check the counting pattern; -1 at EOF. */
static ssize_t
check_pattern(int fd, size_t *seq)
{
	uint8_t buf[8192];
	ssize_t n, total = 0;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		pattern_check(buf, (size_t)n, seq);
		total += n;
	}
	return n == 0 ? -1 : total;
}

/*
 * Side 1's far end reads nothing: the relay stops reading side 0 once its
 * buffer (4 KiB) is full and the socket towards side 1 is full, so side
 * 0's far end cannot write any more; bytes the other way still flow; and
 * once side 1's end reads, every byte arrives, in order.
 */
static void
backpressure(void **state)
{
	struct fx x;
	size_t wseq = 0, rseq = 0, written = 0;
	uint8_t buf[64];
	ssize_t n;

	fx_plain(&x, 4096, 0);
	pump(&x, -1);
	for (int i = 0; i < 200; i++) {
		size_t w = fill(x.a[1], &wseq, 1 << 20);

		written += w;
		settle(&x);
		if (w == 0)
			break;
	}
	assert_int_equal(x.st, RELAY_OPEN);
	/* bounded: the relay holds at most its buffer, and stopped reading side 0 */
	assert_int_equal(x.r.buf[0].len, 4096);
	assert_int_equal(relay_events(&x.r, x.s, 0) & EPOLLIN, 0);
	assert_int_equal(relay_events(&x.r, x.s, 1) & EPOLLOUT, EPOLLOUT);
	assert_true(x.s[0].nread < written);	/* the rest waits in side 0's socket */
	assert_int_equal(write(x.a[1], "x", 1), -1);	/* and its far end cannot write */
	assert_int_equal(errno, EAGAIN);
	/* the other direction is independent */
	assert_int_equal(write(x.b[1], "hi", 2), 2);
	settle(&x);
	assert_int_equal(drain(x.a[1], buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "hi", 2);
	/* side 1's end reads: everything arrives in order */
	for (int i = 0; i < 1000 && rseq < written; i++) {
		n = check_pattern(x.b[1], &rseq);
		assert_true(n >= 0);
		settle(&x);
	}
	assert_int_equal(rseq, written);
	assert_int_equal(x.s[0].nread, written);
	assert_int_equal(x.st, RELAY_OPEN);
	fx_free(&x);
}

/*
 * Side 0 sends and ends while side 1 cannot take its bytes (its socket is
 * full): the end is not passed on while bytes wait (no early EOF) and the
 * relay is not done; side 1's end gets the bytes, then the EOF.
 */
static void
end_waits_for_bytes(void **state)
{
	struct fx x;
	size_t wseq = 0, rseq = 0, prefilled;
	uint8_t buf[8192];
	ssize_t n;

	fx_plain(&x, 4096, 0);
	/* the socket towards side 1 is full before the relay starts */
	prefilled = fill(x.b[0], &wseq, 1 << 24);
	assert_true(prefilled > 0);
	pump(&x, -1);
	assert_int_equal(write(x.a[1], "tail", 4), 4);
	assert_int_equal(shutdown(x.a[1], SHUT_WR), 0);
	settle(&x);
	assert_int_equal(x.st, RELAY_OPEN);
	assert_int_equal(x.s[0].eof, 1);
	assert_int_equal(x.r.buf[0].len, 4);
	assert_int_equal(x.s[1].shut, 0);
	assert_int_equal(relay_events(&x.r, x.s, 1) & EPOLLOUT, EPOLLOUT);
	/* side 1's end reads: the earlier bytes, "tail", then the end */
	for (int i = 0; i < 1000 && rseq < prefilled; i++) {
		n = read(x.b[1], buf, rseq + sizeof(buf) <= prefilled ? sizeof(buf) : prefilled - rseq);
		if (n > 0) {
			for (ssize_t k = 0; k < n; k++)
				assert_int_equal(buf[k], (uint8_t)((rseq + (size_t)k) % 251));
			rseq += (size_t)n;
		}
		settle(&x);
	}
	assert_int_equal(rseq, prefilled);
	settle(&x);
	assert_true(tf_wait(x.b[1], 0, 1000));
	assert_int_equal(drain(x.b[1], buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "tail", 4);
	assert_int_equal(drain(x.b[1], buf, sizeof(buf)), -1);
	assert_int_equal(x.s[1].shut, 1);
	fx_free(&x);
}

/* Closing while bytes are pending gives both buffers back, bytes and all. */
static void
close_with_bytes_pending(void **state)
{
	struct fx x;
	size_t wseq = 0;

	fx_plain(&x, 4096, 0);
	pump(&x, -1);
	for (int i = 0; i < 50; i++) {
		if (fill(x.a[1], &wseq, 1 << 20) == 0)
			break;
		settle(&x);
	}
	assert_non_null(x.r.buf[0].data);
	assert_true(x.r.buf[0].len > 0);
	relay_release(&x.r, &x.pool);
	assert_null(x.r.buf[0].data);
	assert_null(x.r.buf[1].data);
	assert_int_equal(x.r.buf[0].len, 0);
	assert_int_equal(x.pool.n, 2);
	fx_free(&x);
}

/* Side 1's far end resets its connection (SO_LINGER 0, then close: a TCP RST). */
static void
reset_b(struct fx *x)
{
	struct linger lg = { 1, 0 };

	assert_int_equal(setsockopt(x->b[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(x->b[1]);
	x->b[1] = -1;
}

/* A reset of side 1 (a TCP RST) fails the relay with REASON_RESET naming the side. */
static void
peer_reset(void **state)
{
	struct fx x;

	fx_plain(&x, 16384, 1);
	pump(&x, -1);
	assert_int_equal(write(x.a[1], "data", 4), 4);
	settle(&x);
	reset_b(&x);
	settle(&x);
	assert_int_equal(x.st, RELAY_FAILED);
	assert_int_equal(x.f.reason, REASON_RESET);
	assert_string_equal(x.f.detail, "read from the b: Connection reset by peer");
	fx_free(&x);
}

/*
 * An event on side 1 does not retry a read of side 0 that last found it
 * dry (epoll reports side 0 when it has bytes); an event on side 0 does.
 */
static void
dry_decisions(void **state)
{
	struct fx x;
	uint8_t buf[8];

	fx_plain(&x, 16384, 0);
	pump(&x, -1);
	assert_int_equal(x.s[0].dry, 1);
	assert_int_equal(x.s[1].dry, 1);
	assert_int_equal(x.r.moved, 0);
	assert_int_equal(write(x.a[1], "z", 1), 1);
	pump(&x, 1);
	assert_int_equal(x.s[0].nread, 0);
	assert_int_equal(x.r.moved, 0);
	pump(&x, 0);
	assert_int_equal(x.s[0].nread, 1);
	assert_int_equal(x.r.moved, 1);
	assert_int_equal(drain(x.b[1], buf, sizeof(buf)), 1);
	/* a pump for no side in particular reads both */
	assert_int_equal(write(x.b[1], "y", 1), 1);
	assert_int_equal(write(x.a[1], "w", 1), 1);
	pump(&x, -1);
	assert_int_equal(x.s[0].nread, 2);
	assert_int_equal(x.s[1].nread, 1);
	fx_free(&x);
}

/* A pool keeps one size: a relay of another size (after a reload) lets the old go. */
static void
pool_sizes(void **state)
{
	struct fx x;
	struct relay r2;

	fx_plain(&x, 4096, 0);
	pump(&x, -1);
	assert_int_equal(x.pool.n, 2);
	assert_int_equal(x.pool.cap, 4096);
	relay_init(&r2, 8192);
	x.st = relay_pump(&r2, x.s, -1, &x.pool, &x.f);
	assert_int_equal(x.st, RELAY_OPEN);
	/* the two 4 KiB buffers were freed, two 8 KiB ones made and kept */
	assert_int_equal(x.pool.cap, 8192);
	assert_int_equal(x.pool.n, 2);
	relay_release(&r2, &x.pool);
	fx_free(&x);
}

/*
 * The pool keeps what a batch gave back (up to RELAY_POOL_MAX), and a trim
 * frees what a whole period left unused, down to RELAY_POOL_KEEP.
 */
static void
pool_trim(void **state)
{
	struct relay_pool pool = { .n = 0 };
	struct relay_buf b[40];

	for (int i = 0; i < 40; i++) {
		b[i] = (struct relay_buf){ .cap = 4096 };
		assert_int_equal(relay_buf_take(&pool, &b[i]), 0);
	}
	for (int i = 0; i < 40; i++)
		relay_buf_give(&pool, &b[i], 0);
	assert_int_equal(pool.n, 40);
	assert_int_equal(relay_pool_trim(&pool), 0);	/* all were in use in this period */
	for (int i = 0; i < 5; i++)
		assert_int_equal(relay_buf_take(&pool, &b[i]), 0);
	for (int i = 0; i < 5; i++)
		relay_buf_give(&pool, &b[i], 0);
	/* 35 were never taken in this period: freed down to the 16 kept */
	assert_int_equal(relay_pool_trim(&pool), 24);
	assert_int_equal(pool.n, RELAY_POOL_KEEP);
	assert_int_equal(relay_pool_trim(&pool), 0);
	assert_int_equal(pool.n, RELAY_POOL_KEEP);
	relay_pool_drain(&pool);
	assert_int_equal(pool.n, 0);
}

/* A TLS side: records both ways, larger than one record and than the buffer. */
static void
tls_both_ways(void **state)
{
	static uint8_t big[100000], got[100000];
	struct fx x;
	size_t off = 0, in = 0, seq = 0;
	uint8_t buf[64];
	int r;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i % 251);
	fx_tls(&x, 16384, 1);
	pump(&x, -1);
	/* client -> plain */
	for (int i = 0; i < 2000 && off < sizeof(big); i++) {
		if ((r = SSL_write(x.cli, big + off, (int)(sizeof(big) - off))) > 0)
			off += (size_t)r;
		settle(&x);
		assert_true(check_pattern(x.b[1], &seq) >= 0);
	}
	for (int i = 0; i < 100 && seq < sizeof(big); i++) {
		settle(&x);
		assert_true(check_pattern(x.b[1], &seq) >= 0);
	}
	assert_int_equal(seq, sizeof(big));
	/* plain -> client */
	off = 0;
	for (int i = 0; i < 2000 && in < sizeof(got); i++) {
		ssize_t n;

		if (off < sizeof(big) && (n = write(x.b[1], big + off, sizeof(big) - off)) > 0)
			off += (size_t)n;
		settle(&x);
		while ((r = SSL_read(x.cli, got + in, (int)(sizeof(got) - in))) > 0)
			in += (size_t)r;
	}
	assert_int_equal(in, sizeof(big));
	assert_memory_equal(got, big, sizeof(big));
	assert_int_equal(x.s[0].nread, sizeof(big));
	assert_int_equal(x.s[1].nread, sizeof(big));
	/* the client's close_notify: an EOF to the plain side, the relay still open */
	assert_int_equal(SSL_shutdown(x.cli), 0);
	settle(&x);
	assert_int_equal(x.st, RELAY_OPEN);
	assert_int_equal(drain(x.b[1], buf, sizeof(buf)), -1);
	/* the plain side's EOF: our close_notify to the client, and the relay is done */
	assert_int_equal(shutdown(x.b[1], SHUT_WR), 0);
	settle(&x);
	assert_int_equal(x.st, RELAY_DONE);
	assert_true(tf_wait(x.a[1], 0, 1000));
	assert_int_equal(SSL_read(x.cli, buf, sizeof(buf)), 0);
	assert_int_equal(SSL_get_error(x.cli, 0), SSL_ERROR_ZERO_RETURN);
	fx_free(&x);
}

/* A TLS stream cut without close_notify fails the relay: the plain side gets no clean end. */
static void
tls_cut(void **state)
{
	struct fx x;

	fx_tls(&x, 16384, 0);
	pump(&x, -1);
	assert_int_equal(SSL_write(x.cli, "abc", 3), 3);
	settle(&x);
	close(x.a[1]);
	x.a[1] = -1;
	settle(&x);
	assert_int_equal(x.st, RELAY_FAILED);
	assert_int_equal(x.f.reason, REASON_RESET);
	assert_int_equal(x.s[1].shut, 0);
	fx_free(&x);
}

/*
 * Edge-triggered (stricter than the sidecar's level-triggered loop, so
 * that a side left "dry" too early shows as a stall): a TLS side read with
 * libssl's read-ahead, whose buffer can end exactly at a record's end
 * with more bytes still in the socket. Nothing pending in libssl then
 * does not mean the socket is empty, and without a new edge those bytes
 * would never be read (the stall of a first edge-triggered attempt); the
 * sockbio's "drained" says when it is. Bursts of records of every size
 * from 500 to 2,100 bytes (one of them fills libssl's buffer exactly,
 * whatever its length and alignment), each burst more than libssl's
 * buffer holds, then the relay until no event is ready: every byte must
 * be through. Then a slow reader both ways: 2 MiB each way through a 16 KiB
 * buffer, the far end taking 4 KiB per round (backpressure, and EPOLLOUT
 * edges), all delivered in order.
 */
static void
tls_edge_triggered(void **state)
{
	static uint8_t rec[2200], got[4096];
	struct etloop l = { .ep = epoll_create1(EPOLL_CLOEXEC) };
	struct fx x;
	size_t sent = 0, seq = 0, off, in;
	int r;

	assert_true(l.ep >= 0);
	fx_tls(&x, 16384, 1);
	pump(&x, -1);
	for (size_t p = 500; p <= 2100; p++) {
		for (off = 0; off < 60000; off += p) {
			pattern(rec, p, sent, SIZE_MAX);
			assert_int_equal(SSL_write(x.cli, rec, (int)p), (int)p);
			sent += p;
		}
		settle_et(&x, &l);
		assert_int_equal(x.st, RELAY_OPEN);
		assert_true(check_pattern(x.b[1], &seq) >= 0);
		assert_int_equal(seq, sent);
	}
	/* a slow reader of the plain side: the TLS side is read only as it drains */
	sent = seq = 0;
	x.s[0].nread = 0;
	for (int round = 0; round < 100000 && seq < 2 << 20; round++) {
		ssize_t n;

		while (sent < 2 << 20 &&
		    (r = SSL_write(x.cli, rec, (int)pattern(rec, sizeof(rec), sent, 2 << 20))) > 0)
			sent += (size_t)r;
		settle_et(&x, &l);
		if ((n = read(x.b[1], got, sizeof(got))) > 0)
			pattern_check(got, (size_t)n, &seq);
	}
	assert_int_equal(seq, 2 << 20);
	assert_int_equal(x.s[0].nread, 2 << 20);
	/* a slow reader of the TLS side: the plain side is read only as it drains */
	sent = in = 0;
	for (int round = 0; round < 100000 && in < 2 << 20; round++) {
		ssize_t n;

		while (sent < 2 << 20 &&
		    (n = write(x.b[1], rec, pattern(rec, sizeof(rec), sent, 2 << 20))) > 0)
			sent += (size_t)n;
		settle_et(&x, &l);
		if ((r = SSL_read(x.cli, got, (int)sizeof(got))) > 0)
			pattern_check(got, (size_t)r, &in);
	}
	assert_int_equal(in, 2 << 20);
	assert_int_equal(x.st, RELAY_OPEN);
	close(l.ep);
	fx_free(&x);
}

/*
 * A gather reads and writes nothing; the pump after it writes what was
 * gathered and passes an end on, without reading again a side its gather
 * found dry (bytes that came since wait for their event).
 */
static void
gather_then_pump(void **state)
{
	struct fx x;
	uint8_t buf[16];

	fx_plain(&x, 16384, 0);
	pump(&x, -1);
	assert_int_equal(write(x.a[1], "ping", 4), 4);
	gather(&x, 0);
	assert_int_equal(x.st, RELAY_OPEN);
	assert_int_equal(x.s[0].nread, 4);
	assert_int_equal(x.r.buf[0].len, 4);
	assert_int_equal(x.r.moved, 1);
	assert_int_equal(drain(x.b[1], buf, sizeof(buf)), 0);	/* nothing written yet */
	assert_int_equal(write(x.a[1], "late", 4), 4);
	assert_int_equal(write(x.b[1], "pong", 4), 4);
	gather(&x, 1);
	pump(&x, RELAY_AFTER_GATHER);
	assert_int_equal(x.st, RELAY_OPEN);
	assert_int_equal(x.r.moved, 1);
	assert_int_equal(drain(x.b[1], buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(drain(x.a[1], buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "pong", 4);
	assert_int_equal(x.s[0].nread, 4);	/* "late" waits for side 0's next event */
	assert_null(x.r.buf[0].data);		/* the buffers went back once empty */
	assert_null(x.r.buf[1].data);
	/* side 0's next event: "late" (a short read: dry), then the end at the one after */
	assert_int_equal(shutdown(x.a[1], SHUT_WR), 0);
	gather(&x, 0);
	assert_int_equal(x.s[0].nread, 8);
	pump(&x, RELAY_AFTER_GATHER);
	assert_int_equal(drain(x.b[1], buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "late", 4);
	/* an end: gathered, passed on by the pump */
	gather(&x, 0);
	assert_int_equal(x.s[0].eof, 1);
	assert_int_equal(x.s[1].shut, 0);
	pump(&x, RELAY_AFTER_GATHER);
	assert_int_equal(x.s[1].shut, 1);
	assert_int_equal(drain(x.b[1], buf, sizeof(buf)), -1);
	assert_int_equal(x.f.reason, REASON_NONE);
	fx_free(&x);
}

/* A reset found by a gather fails the relay there, as a pump's would. */
static void
gather_reset(void **state)
{
	struct fx x;

	fx_plain(&x, 16384, 1);
	pump(&x, -1);
	reset_b(&x);
	assert_true(tf_wait(x.b[0], 0, 1000));
	gather(&x, 1);
	assert_int_equal(x.st, RELAY_FAILED);
	assert_int_equal(x.f.reason, REASON_RESET);
	assert_string_equal(x.f.detail, "read from the b: Connection reset by peer");
	fx_free(&x);
}

/* The relay's behaviours of the tests above, driven as the sidecar's batches drive it. */
static void
gather_both_ways(void **state)
{
	gathering = 1;
	both_ways(state);
	half_close_side0(state);
	half_close_side1(state);
	backpressure(state);
	end_waits_for_bytes(state);
	peer_reset(state);
	tls_both_ways(state);
	tls_cut(state);
	gathering = 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(both_ways),
		cmocka_unit_test(half_close_side0),
		cmocka_unit_test(half_close_side1),
		cmocka_unit_test(backpressure),
		cmocka_unit_test(end_waits_for_bytes),
		cmocka_unit_test(close_with_bytes_pending),
		cmocka_unit_test(peer_reset),
		cmocka_unit_test(dry_decisions),
		cmocka_unit_test(pool_sizes),
		cmocka_unit_test(pool_trim),
		cmocka_unit_test(tls_both_ways),
		cmocka_unit_test(tls_cut),
		cmocka_unit_test(tls_edge_triggered),
		cmocka_unit_test(gather_then_pump),
		cmocka_unit_test(gather_reset),
		cmocka_unit_test(gather_both_ways),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, tf_teardown);
}
