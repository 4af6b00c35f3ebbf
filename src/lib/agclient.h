/*
 * agclient.h - client side of the agent's local API (docs/PROTOCOL.md,
 * "Agent local API"; frames in agentproto.h).
 *
 * The proxy's only door to its identity: it asks the node agent for the
 * current SVID and for signatures, never a keyholder or a token. The
 * shape is khclient's: an agc_client owns one connected Unix stream
 * socket and a reader thread that matches replies to requests by id and
 * fails every request whose deadline passes, so every request ends: by
 * reply, by deadline (HSM_ETIMEDOUT), or by the agent going away
 * (HSM_ECLOSED). Thread-safe: any number of threads may have requests in
 * flight. A request may outlive its client (it then only reads its own
 * result).
 *
 * A client may also hold one subscription (agc_subscribe): the reader
 * thread calls its callback with the current SVID and again with every
 * one the agent pushes after a rotation, until the subscription ends.
 */
#ifndef HSM_AGCLIENT_H
#define HSM_AGCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "keytypes.h"

struct agc_client;
struct agc_req;

/*
 * The agent gives its keyholder 5 s per signature: wait a little longer,
 * so the agent's own HSM_ETIMEDOUT arrives before ours.
 */
#define AGC_DEFAULT_TIMEOUT_MS 6000u
#define AGC_MAX_TIMEOUT_MS 60000u	/* longer timeouts are cut to this */

/*
 * Connect to the agent's socket at path and start the reader thread.
 * 0, HSM_EINVAL (path too long), HSM_ECLOSED (nothing listens there),
 * HSM_EIO or HSM_ENOMEM. Caller frees *out with agc_free().
 */
int agc_connect(const char *path, struct agc_client **out);

/* Adopt a connected stream socket fd (ownership passes on success only). */
int agc_client_new(int fd, struct agc_client **out);

/*
 * Close the socket, fail pending requests with HSM_ECLOSED, end the
 * subscription (its callback gets HSM_ECLOSED, on the reader thread,
 * before this returns) and join the reader thread. Requests not yet freed
 * stay readable. Accepts NULL. Must not be called from the subscription's
 * callback, nor while holding a lock that callback takes.
 */
void agc_free(struct agc_client *c);

/*
 * Blocking GET_SVID. spiffe_id NULL or "" asks for the caller's only ID.
 * timeout_ms 0 means AGC_DEFAULT_TIMEOUT_MS. On success *chain_pem (leaf
 * first) and *bundle_pem (trusted CAs; may be "") are NUL-terminated
 * strings the caller frees, *not_after is Unix seconds. Errors: the
 * agent's (HSM_EPERM, HSM_EAGAIN not enrolled yet, HSM_EINVAL several
 * IDs), HSM_ETIMEDOUT, HSM_ECLOSED, HSM_EPROTO.
 */
int agc_get_svid(struct agc_client *c, const char *spiffe_id, unsigned timeout_ms,
    char **chain_pem, char **bundle_pem, uint64_t *not_after);

/*
 * Non-blocking GET_SVID: send the request and return; agc_req_wait then
 * agc_req_svid take the answer. *out owns the request until agc_req_free().
 */
int agc_get_start(struct agc_client *c, const char *spiffe_id, unsigned timeout_ms,
    struct agc_req **out);

/*
 * After a GET_SVID ended: the status, and on success the SVID as
 * agc_get_svid gives it (the strings move to the caller, once).
 * HSM_EAGAIN while pending.
 */
int agc_req_svid(struct agc_req *r, char **chain_pem, char **bundle_pem, uint64_t *not_after);

/*
 * Blocking SIGN_TBS: the agent hashes tbs[0..tbslen) with hash (enum
 * ag_hash) and signs it with alg (enum hsm_sigalg; for RSA its own hash),
 * if tbs is a TLS handshake signature input (tlssig.h): anything else is
 * refused (HSM_EPOLICY, "not a TLS handshake signature input: ...").
 * keyid names the key: the SHA-256 of the SubjectPublicKeyInfo of the
 * certificate the signature is for (HSM_KEYID_LEN bytes). The agent signs
 * with it while it is the ID's current key or a key retired by a rotation
 * less than its grace period ago (30 s), and answers HSM_ENOENT for any
 * other. keyid NULL: whatever key is current. tbslen is at most AG_MAX_TBS.
 * sig must hold HSM_MAX_SIG bytes. 0 or an error as for agc_get_svid (plus
 * HSM_EPOLICY, HSM_ENOENT and the keyholder's errors, passed on by the
 * agent; HSM_EINVAL for arguments that cannot be encoded).
 */
int agc_sign(struct agc_client *c, const char *spiffe_id, const uint8_t *keyid, int alg, int hash,
    const uint8_t *tbs, size_t tbslen, unsigned timeout_ms, uint8_t *sig, size_t *siglen);

/*
 * Non-blocking SIGN_TBS: send the request and return at once. When it ends
 * (reply, deadline or close) the reader thread writes an 8-byte 1 to
 * notify_fd (eventfd semantics; a pipe works too; -1 for none). *out owns
 * the request until agc_req_free(). Uses little stack: callable inside an
 * OpenSSL async job (the frame is built on the heap).
 */
int agc_sign_start(struct agc_client *c, const char *spiffe_id, const uint8_t *keyid, int alg,
    int hash, const uint8_t *tbs, size_t tbslen, unsigned timeout_ms, int notify_fd,
    struct agc_req **out);

/* An SVID delivered to a subscriber. */
struct agc_svid {
	const char *spiffe_id;
	const char *chain_pem;		/* leaf first, NUL-terminated */
	const char *bundle_pem;		/* trusted CAs, may be "" */
	uint64_t not_after;		/* Unix seconds */
	int update;			/* 0: the SUBSCRIBE's reply; 1: an UPDATE after a rotation */
};

/*
 * A subscription's callback, called on the client's reader thread, one
 * call at a time: cb(arg, 0, svid) for the SUBSCRIBE reply and for every
 * UPDATE (each rotation); cb(arg, status, NULL) once when the subscription
 * ends with an error, after which cb is never called again. svid and its
 * strings are valid only during the call. For a final call
 * hsm_err_msg(status) reads the detail (e.g. the agent's text).
 *
 * The callback must not call agc_free() on its own client (the reader
 * cannot join itself), nor wait for a blocking request of that client
 * (agc_get_svid, agc_sign: the reader would answer it); agc_sign_start is
 * fine. It should return soon: replies wait while it runs.
 */
typedef void (*agc_update_fn)(void *arg, int status, const struct agc_svid *svid);

/*
 * Send SUBSCRIBE for spiffe_id (NULL or "" = the caller's only ID) and
 * return; what follows comes to cb. Final statuses: the agent's error reply
 * (HSM_EPERM, HSM_EINVAL several IDs, ...), HSM_ETIMEDOUT when the agent
 * does not answer within AGC_DEFAULT_TIMEOUT_MS, HSM_EPROTO, HSM_ENOMEM, or
 * HSM_ECLOSED when the connection ends (agent gone, agc_free). The agent
 * answers "not enrolled yet" / "certificate expired" (HSM_EAGAIN) but keeps
 * the subscription: that reply is not passed on, and the first call is the
 * UPDATE sent when the ID gets its certificate.
 *
 * One subscription per client: HSM_EBUSY while one is active (after its
 * final call another may be made; UPDATEs of the old one are then dropped).
 * 0, or an error when the request could not be sent (HSM_EINVAL bad ID,
 * HSM_ECLOSED, HSM_ENOMEM): then cb is never called.
 */
int agc_subscribe(struct agc_client *c, const char *spiffe_id, agc_update_fn cb, void *arg);

/*
 * agc_subscribe with flags. AGC_SUB_NOWAIT: the agent's "not enrolled yet"
 * / "certificate expired" (HSM_EAGAIN) reply ends the subscription (a
 * final call) instead of waiting for the first UPDATE.
 */
#define AGC_SUB_NOWAIT 1u
int agc_subscribe_flags(struct agc_client *c, const char *spiffe_id, unsigned flags,
    agc_update_fn cb, void *arg);

/*
 * After a subscription's final call: non-zero when its status was the
 * agent's own error reply (a refusal), 0 when the client ended it (closed,
 * deadline, malformed answer).
 */
int agc_sub_refused(struct agc_client *c);

/*
 * A CRL subscription's callback (reader thread, one call at a time):
 * cb(arg, 0, der, len) for the CRL_SUBSCRIBE reply (len 0, der NULL: the
 * agent holds no CRL yet) and for every CRL the agent pushes; cb(arg,
 * status, NULL, 0) once when it ends (HSM_ECLOSED: the connection ended,
 * which is also how an agent older than CRL_SUBSCRIBE answers it;
 * HSM_ETIMEDOUT; HSM_EPROTO). der is valid during the call only and is
 * NOT checked here: it is whatever the agent sent. The same rules as for
 * agc_update_fn.
 */
typedef void (*agc_crl_fn)(void *arg, int status, const uint8_t *der, size_t len);

/*
 * Send CRL_SUBSCRIBE and return; what follows comes to cb. One CRL
 * subscription per client (HSM_EBUSY). Use a connection of its own: an
 * agent older than CRL_SUBSCRIBE closes the connection it came on.
 * 0, HSM_ECLOSED or HSM_ENOMEM (then cb is never called).
 */
int agc_subscribe_crl(struct agc_client *c, agc_crl_fn cb, void *arg);

/* Non-zero once the request has ended. */
int agc_req_done(struct agc_req *r);

/* Wait until the request ends; its status (detail recorded for this thread). */
int agc_req_wait(struct agc_req *r);

/*
 * Non-zero when the request ended with the agent's error reply (a
 * refusal), 0 while pending, on success, or when it ended here (closed,
 * deadline, malformed answer).
 */
int agc_req_refused(struct agc_req *r);

/*
 * After agc_req_done: the status (0 or HSM_E*, detail set with hsm_err)
 * and, on success, the signature copied to sig (HSM_MAX_SIG bytes).
 * HSM_EAGAIN while the request is pending.
 */
int agc_req_result(struct agc_req *r, uint8_t *sig, size_t *siglen);

/* Free a request; a pending one is detached and its reply dropped. Accepts NULL. */
void agc_req_free(struct agc_req *r);

#endif
