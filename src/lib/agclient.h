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
 * Subscriptions are not offered yet: the reader drops UPDATE frames. They
 * are meant to come as agc_subscribe(c, id, callback, arg), the reader
 * calling the callback (on its own thread) for the SUBSCRIBE reply and
 * every UPDATE carrying that request's id.
 */
#ifndef HSM_AGCLIENT_H
#define HSM_AGCLIENT_H

#include <stddef.h>
#include <stdint.h>

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
 * Close the socket, fail pending requests with HSM_ECLOSED and join the
 * reader thread. Requests not yet freed stay readable. Accepts NULL.
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
 * Blocking SIGN of a digest (the caller hashes) with the ID's current key.
 * alg is an enum hsm_sigalg; sig must hold HSM_MAX_SIG bytes. 0 or an
 * error as for agc_get_svid (plus the keyholder's, passed on by the agent).
 */
int agc_sign(struct agc_client *c, const char *spiffe_id, int alg, const uint8_t *dgst,
    size_t dlen, unsigned timeout_ms, uint8_t *sig, size_t *siglen);

/*
 * Non-blocking SIGN: send the request and return at once. When it ends
 * (reply, deadline or close) the reader thread writes an 8-byte 1 to
 * notify_fd (eventfd semantics; a pipe works too; -1 for none). *out owns
 * the request until agc_req_free().
 */
int agc_sign_start(struct agc_client *c, const char *spiffe_id, int alg, const uint8_t *dgst,
    size_t dlen, unsigned timeout_ms, int notify_fd, struct agc_req **out);

/* Non-zero once the request has ended. */
int agc_req_done(struct agc_req *r);

/*
 * After agc_req_done: the status (0 or HSM_E*, detail set with hsm_err)
 * and, on success, the signature copied to sig (HSM_MAX_SIG bytes).
 * HSM_EAGAIN while the request is pending.
 */
int agc_req_result(struct agc_req *r, uint8_t *sig, size_t *siglen);

/* Free a request; a pending one is detached and its reply dropped. Accepts NULL. */
void agc_req_free(struct agc_req *r);

#endif
