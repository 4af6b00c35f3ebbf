/*
 * tcp.c - `protocol: tcp`, the sidecar's first codec (see struct codec in
 * proxy.h): the byte relay of lib/relay.c between the connection's two
 * sides, with the worker's buffer pool, the listener's buffer size and
 * idle timeout. Within a batch of events, a relay_gather per event and
 * one relay_pump per connection at the batch's end (tcp_flush); outside
 * a batch, one relay_pump per event, whichever side and direction.
 */
#include "proxy.h"
#include "proxyconf.h"

/* A pump, then: close, or wait for what each side needs and until the idle deadline. */
static void
tcp_settle(struct conn *c, int why)
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
	conn_watch(c, DOWN, relay_events(&c->rl, c->side, DOWN));
	conn_watch(c, UP, relay_events(&c->rl, c->side, UP));
}

/*
 * An event: within a batch of the worker's events, read only and queue c
 * for tcp_flush (relay_gather: the batch's writes leave together); else
 * the whole pump at once.
 */
static void
tcp_pump(struct conn *c, int why)
{
	struct worker *w = c->w;

	if (!w->gathering) {
		tcp_settle(c, why);
		return;
	}
	if (relay_gather(&c->rl, c->side, why, &w->pool, &c->fail) != RELAY_OPEN) {
		conn_close(c);
		return;
	}
	if (!c->gathered) {
		c->gathered = 1;
		c->gather_next = NULL;
		*w->gather_tail = c;
		w->gather_tail = &c->gather_next;
	}
}

void
tcp_flush(struct worker *w)
{
	struct conn *c;

	while ((c = w->gather) != NULL) {
		if ((w->gather = c->gather_next) == NULL)
			w->gather_tail = &w->gather;
		c->gathered = 0;
		if (c->state == C_RELAY)	/* not closed since its gather */
			tcp_settle(c, RELAY_AFTER_GATHER);
	}
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
