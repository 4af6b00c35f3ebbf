/*
 * tcp.c - `protocol: tcp`, the sidecar's first codec (see struct codec in
 * proxy.h): the byte relay of lib/relay.c between the connection's two
 * sides, with the worker's buffer pool, the listener's buffer size and
 * idle timeout. One relay_pump per event, whichever side and direction.
 *
 * The relay's sockets are watched edge-triggered (EPOLLET) once the
 * connection is authorised (the handshake stays level-triggered). The
 * pump leaves a side only dry (the kernel's queue was empty at its last
 * receive, so new bytes make a new edge: a plain read that was short or
 * hit EAGAIN; a TLS read that was short, with nothing pending in libssl
 * and its sockbio's last recv short or EAGAIN, lib/sockbio.h: libssl's
 * read-ahead stops at the end of its own buffer, so "nothing pending"
 * alone is not dry), ended, or not read for backpressure (no EPOLLIN in
 * its interest; adding it back is an epoll_ctl MOD, which reports bytes
 * that are already there); and it writes until a write is short or would
 * block (a new edge comes when the peer's acknowledgements free space).
 * Level-triggered, every event cost a second poll of its socket in the
 * next epoll_wait, which only found it drained: at 1,000 keep-alive
 * connections the kernel's epoll functions (sock_poll, tcp_poll,
 * ep_item_poll, ep_send_events) took 5.9 % of the pair's CPU samples,
 * edge-triggered 2.6 % (bench/kaprofile.sh, KPROF=1). Worker threads
 * block every signal, and a non-blocking socket reports EAGAIN, never
 * EINTR, so a read or write ends dry or full, not interrupted.
 */
#include "proxy.h"
#include "proxyconf.h"

/* What side i waits for, edge-triggered (0: nothing, no registration). */
static inline uint32_t
tcp_events(const struct conn *c, int i)
{
	uint32_t ev = relay_events(&c->rl, c->side, i);

	return ev != 0 ? ev | EPOLLET : 0;
}

/* After a pump: close, or wait for what each side needs and until the idle deadline. */
static void
tcp_pump(struct conn *c, int why)
{
	struct worker *w = c->w;

	/*
	 * Done: both directions ended cleanly. Failed: data was cut, and
	 * closing sends no close_notify, so the peer cannot read a clean end.
	 */
	if (relay_pump(&c->rl, c->side, why, &w->pool, &c->fail) != RELAY_OPEN) {
		conn_close(c);
		return;
	}
	if (c->rl.moved)
		c->t_last = w->now;
	c->deadline = c->t_last + c->pol->cfg->idle_timeout_ms;
	conn_watch(c, DOWN, tcp_events(c, DOWN));
	conn_watch(c, UP, tcp_events(c, UP));
}

static void
tcp_start(struct conn *c)
{
	relay_init(&c->rl, c->pol->cfg->buffer_size);
	tcp_pump(c, -1);
}

static void
tcp_timeout(struct conn *c)
{
	/* an idle close is a normal end for an authorised connection */
	fail_set(&c->fail, REASON_IDLE_TIMEOUT, "idle for %u ms", c->pol->cfg->idle_timeout_ms);
	conn_close(c);
}

static void
tcp_close(struct conn *c)
{
	relay_release(&c->rl, &c->w->pool);
}

const struct codec codec_tcp = {
	.name = "tcp",
	.start = tcp_start,
	.readable = tcp_pump,
	.writable = tcp_pump,
	.timeout = tcp_timeout,
	.close = tcp_close,
};
