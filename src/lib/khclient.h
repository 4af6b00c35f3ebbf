/*
 * khclient.h - client side of the keyholder protocol.
 *
 * A kh_client owns one connected stream socket to a keyholder and a
 * reader thread that matches replies to requests by id and fails every
 * request whose deadline passes, so every request ends: by reply, by
 * deadline, or by the keyholder going away (HSM_ECLOSED). Thread-safe:
 * any number of threads may have requests in flight.
 *
 * Blocking calls wait for their own reply. kh_sign_start() is the
 * non-blocking form used inside OpenSSL async jobs: it signals an fd
 * (an eventfd or pipe write end) when the request ends.
 */
#ifndef HSM_KHCLIENT_H
#define HSM_KHCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "keytypes.h"

struct kh_client;
struct kh_req;

#define KH_DEFAULT_TIMEOUT_MS 5000u

/* Options for starting a private keyholder process (hsmesh keyholder). */
struct kh_spawn_opts {
	const char *module;		/* PKCS#11 module path */
	const char *token_uri;		/* pkcs11: URI of the token */
	const char *pin_file;		/* one of pin_file / pin_env */
	const char *pin_env;
	const char *so_pin_file;	/* at most one: the security officer's PIN, */
	const char *so_pin_env;		/* for kh_wrap only (read by the child) */
	unsigned sign_delay_ms;		/* test setting: added per signature (0 = none) */
	int workers;			/* token sessions, fixed (0: sized to the token) */
	int workers_min, workers_max;	/* bounds of the sizing (0: the keyholder's 2 and 64) */
	unsigned shrink_ms;		/* quiet period before the sizing shrinks (0: 30 s) */
	const char *exe;		/* hsmesh binary to run (NULL = /proc/self/exe) */
};

/*
 * Start a keyholder as a child (fork + exec of /proc/self/exe
 * "keyholder --fd N ...") on a socketpair and return a client for it.
 * The PIN is read by the child only. Waits for its first reply (a PING)
 * so token errors (wrong PIN, absent token, missing module) come back
 * here as codes with the child's one-line reason. *pid receives the
 * child's pid; kh_client_free() closes the socket, which makes the child exit.
 */
int kh_spawn(const struct kh_spawn_opts *o, struct kh_client **out, pid_t *pid);

/*
 * Start a new keyholder for c (as kh_spawn does) after its old one died,
 * and move c onto it (rpc_conn_reset): requests pending on the old one
 * have ended with HSM_ECLOSED; later ones go to the new one. Everything
 * that borrows c (keys of hsm_pkey_new) keeps working. Waits for the first
 * reply like kh_spawn. 0 with *pid set, or the error (the child is then
 * reaped and c has no keyholder: its requests fail with HSM_ECLOSED). Not
 * concurrently with kh_client_free. khsup.h supervises with it.
 */
int kh_respawn(struct kh_client *c, const struct kh_spawn_opts *o, pid_t *pid);

/* While c has no keyholder, its requests fail "keyholder is gone (why)". */
void kh_client_set_gone(struct kh_client *c, const char *why);

/* Connect to a keyholder listening on a Unix socket path. */
int kh_connect(const char *path, struct kh_client **out);

/* Adopt a connected stream socket fd (ownership passes on success). */
int kh_client_new(int fd, struct kh_client **out);

/* Close the socket, fail pending requests with HSM_ECLOSED, join the reader thread. Accepts NULL. */
void kh_client_free(struct kh_client *c);

/* Blocking operations. timeout_ms 0 means KH_DEFAULT_TIMEOUT_MS. */
int kh_ping(struct kh_client *c, unsigned timeout_ms);
int kh_generate(struct kh_client *c, enum hsm_keytype kt, const char *label, unsigned timeout_ms,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen);
int kh_find(struct kh_client *c, const char *label, unsigned timeout_ms,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen);
int kh_pubkey(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], unsigned timeout_ms,
    uint8_t **spki, size_t *spkilen);
int kh_destroy(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], unsigned timeout_ms);
/*
 * The keyholder's token session pool: how many sessions it signs on now,
 * its bounds, how many are open and what it measured (khproto.h's POOL).
 * 0, the keyholder's error, or HSM_EPROTO for a malformed reply.
 */
struct kh_pool;
int kh_pool(struct kh_client *c, unsigned timeout_ms, struct kh_pool *out);
/*
 * The same without waiting: cb(arg, status, pool) is called exactly once
 * from the client's reader thread (pool NULL unless status is 0). 0, or an
 * error and cb is never called.
 */
typedef void (*kh_pool_cb)(void *arg, int status, const struct kh_pool *p);
int kh_pool_call(struct kh_client *c, unsigned timeout_ms, kh_pool_cb cb, void *arg);
/*
 * The token's security attributes of private key keyid: *flags receives
 * the KH_ATTR_* bits (khproto.h). HSM_ENOENT when the token holds no such
 * key; HSM_EPROTO for a reply that is not exactly one byte of known bits.
 */
int kh_attrs(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], unsigned timeout_ms,
    uint8_t *flags);
/* kh_generate with flags HSM_GEN_* (keytypes.h): HSM_GEN_REPLICABLE for a CA key of replicas. */
int kh_generate_flags(struct kh_client *c, enum hsm_keytype kt, const char *label, unsigned flags,
    unsigned timeout_ms, uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen);
/*
 * Replication (p11.h, docs/REPLICAS.md): an RSA-3072 key that only
 * unwraps (on the target); wrap key keyid for the holder of target_spki
 * (on the source, whose keyholder was given the SO PIN); unwrap w with
 * unwrapping key wrapkey_id as the key whose public half is spki, labelled
 * label (on the target). HSM_EPROTO for a reply that breaks its format.
 */
int kh_unwrapping_key(struct kh_client *c, const char *label, unsigned timeout_ms,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen);
int kh_wrap(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], const uint8_t *target_spki,
    size_t target_len, unsigned timeout_ms, struct hsm_wrapped *out);
int kh_unwrap(struct kh_client *c, const uint8_t wrapkey_id[HSM_KEYID_LEN],
    const struct hsm_wrapped *w, const uint8_t *spki, size_t spkilen, const char *label,
    unsigned timeout_ms, uint8_t keyid[HSM_KEYID_LEN]);
/*
 * Every private key in the token whose label starts with prefix (1..64
 * bytes, printable, no space) and whose CKA_ID is a key id: cb(arg,
 * keyid, label) once each, in increasing key id order (a page of
 * KH_LIST_MAX per request; timeout_ms bounds each). A non-zero return of
 * cb stops the walk and is returned. 0, the keyholder's error, or
 * HSM_EPROTO for a malformed reply.
 */
typedef int (*kh_list_cb)(void *arg, const uint8_t keyid[HSM_KEYID_LEN], const char *label);
int kh_list(struct kh_client *c, const char *prefix, unsigned timeout_ms, kh_list_cb cb,
    void *arg);
/* sig must hold HSM_MAX_SIG bytes. */
int kh_sign(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, uint8_t *sig, size_t *siglen);

/*
 * Non-blocking sign: send the request and return at once. When it ends
 * the reader thread writes an 8-byte 1 to notify_fd (eventfd semantics;
 * a pipe works too). *out owns the request until kh_req_free().
 */
int kh_sign_start(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, int notify_fd, struct kh_req **out);
/*
 * Signing with a completion callback, for a caller that is itself an
 * event loop and need not be woken: cb(arg, status, sig, siglen) is
 * called exactly once when the request ends (reply, deadline, or the
 * keyholder gone / kh_client_free), on the client's reader thread with no
 * lock held, sig valid only during the call (NULL on failure, whose detail
 * hsm_err_msg(status) reads). It should be quick: replies wait meanwhile.
 * It must not call kh_client_free on this client. 0, or an error
 * (HSM_EINVAL, HSM_ENOMEM, HSM_ECLOSED) and cb is never called.
 */
typedef void (*kh_sign_cb)(void *arg, int status, const uint8_t *sig, size_t siglen);
int kh_sign_call(struct kh_client *c, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *dgst, size_t dlen, unsigned timeout_ms, kh_sign_cb cb, void *arg);

/* Non-zero once the request has ended. */
int kh_req_done(struct kh_req *r);
/* After kh_req_done: status (0 or HSM_E*), signature copied to sig (HSM_MAX_SIG). */
int kh_req_result(struct kh_req *r, uint8_t *sig, size_t *siglen);
/* Free a request; if still pending it is detached and its reply dropped. Accepts NULL. */
void kh_req_free(struct kh_req *r);

#endif
