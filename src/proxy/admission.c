/*
 * admission.c - which inbound full handshakes may cost a signature (see
 * proxy.h and docs/PROXY.md, "Handshake admission").
 *
 * A full handshake's signature is a key operation on the node's token,
 * and anyone who can send a ClientHello could ask for one. The server
 * context's certificate callback runs once the ClientHello is read and
 * the session-resumption decision is made, only for a full handshake, and
 * before anything is signed: there the source's token bucket (lib/hsrate)
 * and the process-wide count of key operations in flight decide. A
 * refusal fails that handshake with a TLS alert (internal_error, the one
 * libssl sends when the callback says no); nothing reaches the agent. A
 * resumed session costs no signature and is never charged.
 *
 * An admitted handshake holds one of admission.max_key_operations slots
 * until its signature is done (the SSL no longer waits for its async job)
 * or it ends, so a slow client cannot hold a slot beyond the key operation.
 * Refusals are counted per listener and reason
 * (hsmesh_proxy_handshake_failures_total) and logged once per source and
 * reason a minute, the rest summarised.
 */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/ssl.h>

#include "hsrate.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "proxyconf.h"
#include "throttle.h"
#include "util.h"

#define ADM_LOG_MS	60000	/* one full line per source and reason a minute */
#define ADM_LOG_KEYS	1024	/* more sources at once share one summary ("*") */

int
admission_init(struct proxy *px)
{
	const struct proxy_admission *a = &px->cfg->adm;
	int st;

	if (a->handshake_rate > 0) {
		struct hsrate_conf hc = { a->handshake_rate, a->handshake_burst, a->ipv4_prefix,
		    a->ipv6_prefix, a->sources };

		if ((st = hsrate_new(&hc, &px->hsrate)) != 0)
			return st;
	}
	return throttle_new(ADM_LOG_KEYS, ADM_LOG_MS, &px->admlog);
}

void
admission_fini(struct proxy *px)
{
	admission_flush(px, hsm_now_ms(), 1);
	hsrate_free(px->hsrate);
	throttle_free(px->admlog);
	px->hsrate = NULL;
	px->admlog = NULL;
}

static void
summary(void *arg, const char *src, const char *reason, uint64_t count, uint64_t since_ms)
{
	log_warn("inbound: refused %llu more full handshake%s from %s in the last %llu s: %s",
	    (unsigned long long)count, count == 1 ? "" : "s", src,
	    (unsigned long long)((hsm_now_ms() - since_ms) / 1000), reason);
}

void
admission_flush(struct proxy *px, uint64_t now, int all)
{
	throttle_flush(px->admlog, now, all, summary, NULL);
}

/* Refuse c's handshake for r: recorded, logged (throttled), and 0 for libssl. */
static int
refuse(struct conn *c, enum reason r, const char *src)
{
	struct proxy *px = c->w->px;

	if (r == REASON_RATE_LIMITED)
		fail_set(&c->fail, r, "more than %u full handshakes from %s (%u a second after "
		    "a burst of %u)", px->cfg->adm.handshake_burst, src,
		    px->cfg->adm.handshake_rate, px->cfg->adm.handshake_burst);
	else
		fail_set(&c->fail, r, "%u key operations in flight (admission.max_key_operations)",
		    px->cfg->adm.max_key_ops);
	if (throttle_hit(px->admlog, src, reason_label(r), hsm_now_ms()))
		log_warn("inbound %s: %s refused: %s: %s; more from %s are counted, not logged",
		    px->cfg->lst[c->li].name, c->peer_addr, reason_label(r), c->fail.detail, src);
	return 0;
}

int
admission_cert_cb(SSL *ssl, void *arg)
{
	struct conn *c = SSL_get_app_data(ssl);
	struct proxy *px;
	char src[64];

	(void)arg;
	if (c == NULL || !c->inbound || c->keyop)
		return 1;
	px = c->w->px;
	if (px->hsrate != NULL)
		hsrate_source_str(px->hsrate, &c->src, src, sizeof(src));
	else
		admit_src_str(&c->src, src, sizeof(src));
	/* Busy first: a refusal for load takes nothing from the source's bucket. */
	if (atomic_load(&px->keyops) >= px->cfg->adm.max_key_ops)
		return refuse(c, REASON_KEY_OPS_BUSY, src);
	if (!c->charged) {
		/* once per connection (a HelloRetryRequest brings a second ClientHello) */
		if (px->hsrate != NULL && !hsrate_take(px->hsrate, &c->src, c->w->now))
			return refuse(c, REASON_RATE_LIMITED, src);
		c->charged = 1;
	}
	if (atomic_fetch_add(&px->keyops, 1) >= px->cfg->adm.max_key_ops) {
		atomic_fetch_sub(&px->keyops, 1);
		return refuse(c, REASON_KEY_OPS_BUSY, src);
	}
	c->keyop = 1;
	metric_gauge_add(px->keyops_now, 1);
	return 1;
}

void
admission_release(struct conn *c)
{
	if (!c->keyop)
		return;
	c->keyop = 0;
	atomic_fetch_sub(&c->w->px->keyops, 1);
	metric_gauge_add(c->w->px->keyops_now, -1);
}
