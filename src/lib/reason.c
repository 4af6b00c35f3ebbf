/*
 * reason.c - the table of connection failure reasons (see reason.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "reason.h"

struct reason_info {
	const char *label;
	unsigned denial : 1;		/* refused by policy: decision "deny", logged at info */
	unsigned unreachable : 1;	/* the target was not reached: always on stderr */
	unsigned admission : 1;		/* refused by admission: its own throttled log */
};

/* Indexed by enum reason; the labels are part of the metrics and log contract. */
static const struct reason_info reasons[REASON_COUNT] = {
	[REASON_NONE] = { NULL, 0, 0 },
	[REASON_NO_CLIENT_CERT] = { "no_client_cert", 1, 0 },
	[REASON_UNTRUSTED] = { "untrusted", 1, 0 },
	[REASON_CERT_EXPIRED] = { "cert_expired", 1, 0 },
	[REASON_CERT_NOT_YET_VALID] = { "cert_not_yet_valid", 1, 0 },
	[REASON_CERT_INVALID] = { "cert_invalid", 1, 0 },
	[REASON_BAD_SPIFFE_ID] = { "bad_spiffe_id", 1, 0 },
	[REASON_NOT_ALLOWED] = { "not_allowed", 1, 0 },
	[REASON_UNEXPECTED_ID] = { "unexpected_id", 1, 0 },
	[REASON_CERT_REVOKED] = { "cert_revoked", 1, 0 },
	[REASON_CRL_UNAVAILABLE] = { "crl_unavailable", 1, 0 },
	[REASON_HANDSHAKE_TIMEOUT] = { "handshake_timeout", 0, 0 },
	[REASON_KEY_OPERATION] = { "key_operation", 0, 0 },
	[REASON_NO_IDENTITY] = { "no_identity", 0, 0 },
	[REASON_PEER_CLOSED] = { "peer_closed", 0, 0 },
	[REASON_TLS_ERROR] = { "tls_error", 0, 0 },
	[REASON_INTERNAL] = { "internal", 0, 0 },
	[REASON_SHUTDOWN] = { "shutdown", 0, 0 },
	[REASON_RATE_LIMITED] = { "rate_limited", 0, 0, 1 },
	[REASON_KEY_OPS_BUSY] = { "key_ops_busy", 0, 0, 1 },
	[REASON_CONNECT_FAILED] = { "connect_failed", 0, 1 },
	[REASON_CONNECT_TIMEOUT] = { "connect_timeout", 0, 1 },
	[REASON_RESET] = { "reset", 0, 0 },
	[REASON_IDLE_TIMEOUT] = { "idle_timeout", 0, 0 },
	[REASON_HTTP_ERROR] = { "http_error", 0, 0 },
};

const char *
reason_label(enum reason r)
{
	return (unsigned)r < REASON_COUNT ? reasons[r].label : NULL;
}

int
reason_is_denial(enum reason r)
{
	return (unsigned)r < REASON_COUNT && reasons[r].denial;
}

int
reason_is_unreachable(enum reason r)
{
	return (unsigned)r < REASON_COUNT && reasons[r].unreachable;
}

int
reason_is_admission(enum reason r)
{
	return (unsigned)r < REASON_COUNT && reasons[r].admission;
}

void
fail_set(struct fail *f, enum reason r, const char *fmt, ...)
{
	va_list ap;

	if (f->reason != REASON_NONE)
		return;
	f->reason = r;
	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
	va_end(ap);
}
