/*
 * reason.h - why a proxied connection failed or ended: one enum and one
 * table giving each reason its label (the `reason` of the access log, the
 * stderr line and the `reason` label of
 * hsmesh_proxy_handshake_failures_total) and whether it is a policy
 * denial. A connection keeps the first reason recorded (struct fail).
 */
#ifndef HSM_REASON_H
#define HSM_REASON_H

#include <stddef.h>

enum reason {
	REASON_NONE = 0,
	/* refused by policy or certificate checks (decision "deny") */
	REASON_NO_CLIENT_CERT,
	REASON_UNTRUSTED,
	REASON_CERT_EXPIRED,
	REASON_CERT_NOT_YET_VALID,
	REASON_CERT_INVALID,
	REASON_BAD_SPIFFE_ID,
	REASON_NOT_ALLOWED,
	REASON_UNEXPECTED_ID,
	REASON_CERT_REVOKED,		/* the CRL lists the peer's certificate */
	REASON_CRL_UNAVAILABLE,		/* no current CRL and revocation.stale: refuse */
	/* failed set-ups (decision "error") */
	REASON_HANDSHAKE_TIMEOUT,
	REASON_KEY_OPERATION,
	REASON_NO_IDENTITY,
	REASON_PEER_CLOSED,
	REASON_TLS_ERROR,
	REASON_INTERNAL,
	REASON_SHUTDOWN,
	/* refused by handshake admission before any key operation (decision "error") */
	REASON_RATE_LIMITED,
	REASON_KEY_OPS_BUSY,
	/* the target (forward_to / connect) could not be reached */
	REASON_CONNECT_FAILED,
	REASON_CONNECT_TIMEOUT,
	/* how an established relay ended */
	REASON_RESET,
	REASON_IDLE_TIMEOUT,
	REASON_HTTP_ERROR,	/* the peer broke HTTP/1.1 or HTTP/2 (protocol: http) */
	REASON_COUNT
};

#define FAIL_DETAIL_MAX 200

/* A reason and its one-line detail; reason REASON_NONE while all is well. */
struct fail {
	enum reason reason;
	char detail[FAIL_DETAIL_MAX];
};

/* The label of r ("not_allowed"); NULL for REASON_NONE or a value out of range. */
const char *reason_label(enum reason r);

/* 1 when r is a refusal by policy or certificate checks, else 0. */
int reason_is_denial(enum reason r);

/*
 * 1 when r says the target (the app or the peer sidecar) could not be
 * reached: logged to stderr even for an authorised connection.
 */
int reason_is_unreachable(enum reason r);

/*
 * 1 when r is a refusal by handshake admission (the source's rate, the key
 * operations in flight): logged by admission, throttled per source, not
 * once per connection.
 */
int reason_is_admission(enum reason r);

/*
 * Record r with a printf-style detail in f unless f already holds a
 * reason (the first cause wins: a later symptom never hides it).
 */
void fail_set(struct fail *f, enum reason r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
