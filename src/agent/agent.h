/*
 * agent.h - the node agent's rooms (`hsmesh agent -c agent.yaml`), private
 * to src/agent/. docs/AGENT.md tells the whole story; in short:
 *
 * One agent per node. For every workload identity in agent.yaml it keeps
 * an X.509-SVID whose key lives in the node's token: it reuses the
 * certificate in its state directory when it is still good, else asks its
 * keyholder for a new key and enrolls with CMPv2 (ir with a join token
 * and/or attestation evidence); at renew_at x lifetime it renews with a
 * NEW key (kur signed by the current one), keeping the old key for a grace
 * period; and it serves certificates and signatures to local clients
 * (proxies) on a Unix socket.
 *
 * Whom it talks to: its private keyholder (kh_spawn, a socketpair; this
 * process never loads PKCS#11 nor reads a PIN), the CA over HTTP
 * (cmpclient.h), and local clients on a Unix socket speaking agentproto.h,
 * authorised by SO_PEERCRED uid (frameserver.h).
 *
 * Rooms:
 *   main.c    the daemon: start-up, the epoll loop, signals, the keyholder
 *             process, timers, shutdown
 *   state.c   per-workload state: the current SVID in memory and on disk
 *             (reuse at start, atomic writes of cert.pem and bundle.pem)
 *   enroll.c  jobs: enrollment and renewal (CMP), key destruction,
 *             renewal and retry scheduling, retired keys
 *   api.c     the local API server: authorisation, GET_SVID, SUBSCRIBE
 *             and its UPDATEs, SIGN through the keyholder
 *   client.c  `hsmesh agent client ...`, a debugging client of the API
 *
 * Threads: the main thread runs the loop and owns every struct here. A CA
 * exchange or a key generation/destruction runs on a job thread that owns
 * its struct job until it sets done and writes the job eventfd. Signature
 * replies are written by the keyholder client's reader thread straight to
 * the local client (api.c), through the frame server's thread-safe send.
 */
#ifndef HSM_AGENT_ROOMS_H
#define HSM_AGENT_ROOMS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "agentconf.h"
#include "cmpclient.h"
#include "keytypes.h"
#include "spiffe.h"

#define AGENT_GRACE_MS 30000		/* an old key outlives its rotation by this */
#define AGENT_SIGN_TIMEOUT_MS 5000	/* per signature at the keyholder */
#define AGENT_KH_GEN_TIMEOUT_MS 60000	/* RSA-3072 on a TPM is slow */
#define AGENT_KEYID_HEX (2 * HSM_KEYID_LEN + 1)

/* A key in the token and what the agent holds of it. */
struct agent_key {
	int set;
	uint8_t id[HSM_KEYID_LEN];	/* SHA-256 of spki */
	uint8_t *spki;
	size_t spkilen;
	EVP_PKEY *pkey;			/* keyholder-backed (borrows the kh client) */
};

/* One workload identity. */
struct wl {
	const struct agent_workload *c;
	size_t idx;
	char *dir, *cert_path, *bundle_path;
	char label[HSM_MAX_LABEL + 1];	/* of its keys in the token */
	/* The current SVID; have == 0 before the first enrollment. */
	int have;
	X509 *cert;
	struct agent_key key;
	char *chain_pem, *bundle_pem;
	size_t chain_len, bundle_len;
	int64_t nb, na;			/* validity, Unix seconds */
	char serial[96];		/* as openssl x509 -serial prints it */
	/* A key generated for an attempt that failed, reused by the next one. */
	struct agent_key pending;
	uint64_t next_ms;		/* monotonic time of the next attempt; 0 = none */
	int64_t backoff_ms;		/* 0 = last attempt succeeded */
	int expired_logged;
	struct job *job;		/* the running enrollment, if any */
};

enum job_kind { JOB_ENROLL = 1, JOB_DESTROY = 2 };

/* Work for a job thread. */
struct job {
	struct job *next;
	struct agent *ag;
	enum job_kind kind;
	pthread_t th;
	atomic_int done;
	/* JOB_ENROLL */
	struct wl *w;
	int kur;
	X509 *oldcert;
	EVP_PKEY *oldkey;
	struct agent_key key;		/* in: pending key (maybe unset); out: the new key */
	int st;
	int unreachable;		/* no valid answer from the CA */
	int keep_key;			/* on failure: keep key for the next attempt */
	char why[512];
	X509 *cert;
	STACK_OF(X509) *chain;		/* intermediates between cert and root */
	/* JOB_DESTROY */
	uint8_t keyid[HSM_KEYID_LEN];
};

/* A key replaced by a rotation: it still signs when named, until destroy_ms. */
struct retired {
	struct retired *next;
	const struct wl *w;
	uint8_t id[HSM_KEYID_LEN];
	uint64_t destroy_ms;
};

struct kh_client;
struct fsrv;
struct api;

struct agent {
	struct agent_config *conf;
	struct cmpc_ca ca;		/* the CA as cmpclient sees it (conf's addresses, root) */
	struct kh_client *kh;
	pid_t khpid;
	X509 *root;
	char *root_pem;
	size_t root_pemlen;
	struct wl *wl;
	size_t nwl;
	int ep, sfd, job_efd;
	struct fsrv *api;		/* the local API's server */
	struct api *apis;		/* the local API's own state (api.c) */
	struct job *jobs;
	struct retired *retired;
	int quit;			/* 1: signal; 2: the keyholder died */
	int debug;
};

/* ---- main.c ---- */

/* `hsmesh agent` usage text on f. */
void agent_usage(FILE *f);
/* Watch fd for EPOLLIN in ep with tag as data.ptr. 0 or HSM_EIO. */
int agent_epoll_add(int ep, int fd, void *tag);

/* ---- state.c ---- */

/* Free what k holds and clear it. Accepts NULL. */
void agent_key_clear(struct agent_key *k);
/* Lower-case hex of a key id into out. Returns out. */
char *agent_keyid_hex(const uint8_t id[HSM_KEYID_LEN], char out[AGENT_KEYID_HEX]);
/*
 * Set up w for workload idx of the configuration: its state directory
 * (created), file paths and token label. 0 or an error with detail.
 */
int wl_init(struct agent *ag, struct wl *w, size_t idx);
/* Free w's contents. Accepts NULL. */
void wl_free(struct wl *w);
/* w has a certificate that has not expired. */
int wl_valid(const struct wl *w);
/*
 * Install cert (+ intermediates in chain) with key k as w's current SVID,
 * replacing the one before. Takes ownership of cert, chain and k's
 * contents on success only. 0 or an error with detail.
 */
int wl_install(struct agent *ag, struct wl *w, X509 *cert, STACK_OF(X509) *chain,
    struct agent_key *k);
/*
 * Start-up: reuse cert.pem when its key is still in the token and it is
 * still a valid SVID for this workload (logged). 0 when reused, else an
 * error whose detail says why not.
 */
int wl_try_reuse(struct agent *ag, struct wl *w);
/* Write cert.pem (leaf + intermediates) and bundle.pem atomically. */
int wl_store(const struct wl *w);

/* ---- enroll.c ---- */

/* Start an enrollment (ir) or renewal (kur) for w on a job thread. */
void enroll_start(struct agent *ag, struct wl *w);
/* Destroy a key in the token on a job thread (logged). */
void enroll_destroy_key(struct agent *ag, const uint8_t id[HSM_KEYID_LEN]);
/* Schedule w's renewal (renew.h) and log when. */
void enroll_schedule_renewal(struct agent *ag, struct wl *w);
/* Join and apply every finished job (main thread). */
void enroll_reap(struct agent *ag);
/*
 * Shutdown: give running jobs up to ms; 0 when all finished (then joined
 * and applied), -1 when one is still running.
 */
int enroll_finish(struct agent *ag, unsigned ms);
/* Milliseconds to the next timer (an attempt, a retired key's end); -1 for none. */
int enroll_next_timeout(const struct agent *ag);
/* Run the timers that are due: attempts, destruction of retired keys. */
void enroll_run_timers(struct agent *ag);
/*
 * The key a SIGN may name for w: its current key, or one a rotation retired
 * less than AGENT_GRACE_MS ago. NULL for any other.
 */
const uint8_t *enroll_signing_key(const struct agent *ag, const struct wl *w,
    const uint8_t id[HSM_KEYID_LEN]);
/* Shutdown: destroy retired and unused pending keys (when the keyholder lives). */
void enroll_drop_keys(struct agent *ag);

/* ---- api.c ---- */

/*
 * Listen on the configured socket and register the listener, the output
 * watch and (later) every client with ag->ep. 0 or an error with detail.
 */
int api_start(struct agent *ag);
/* An event of ag->ep whose tag is none of main.c's: the listener, the output watch or a client. */
void api_event(struct agent *ag, void *tag);
/* After a rotation: an UPDATE to every client subscribed to w. */
void api_push_update(struct agent *ag, struct wl *w);
/*
 * The keyholder died: wait (at most a second) until every signature in
 * flight has had its error reply written.
 */
void api_await_failed_signs(struct agent *ag);
/* Close every client and the socket. */
void api_stop(struct agent *ag);

/* ---- client.c ---- */

/* `hsmesh agent client ...` (argv[0] is "client"). Exit status. */
int agent_client_main(int argc, char **argv);

#endif
