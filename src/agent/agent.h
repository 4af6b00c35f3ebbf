/*
 * agent.h - the node agent's rooms (`hsmesh agent -c agent.yaml`), private
 * to src/agent/. docs/AGENT.md tells the whole story; in short:
 *
 * One agent per node. For every workload identity in agent.yaml, and for
 * every one the CA's registration entries give its node, it keeps an
 * X.509-SVID whose key lives in the node's token: it reuses the
 * certificate in its state directory when it is still good, else asks its
 * keyholder for a new key and enrolls with CMPv2; at renew_at x lifetime
 * it renews with a NEW key, keeping the old key for a grace period; and it
 * serves certificates and signatures to local clients (proxies) on a Unix
 * socket, each identity only to processes its selectors select.
 *
 * With a node: section the agent first keeps a node identity of its own
 * (enrolled with a node join token or evidence, renewed by its own kur),
 * whose key is never reachable through the local API: it is not among
 * ag->wl. That certificate protects the agent's genm for its entries and
 * the ir/kur of every entry's identity (node-protected enrollment). A
 * workload only in agent.yaml is enrolled as before (join token ir, kur
 * signed by its own certificate).
 *
 * Whom it talks to: its private keyholder (khsup.h: started on a
 * socketpair and restarted with backoff if it dies; this process never
 * loads PKCS#11 nor reads a PIN), the CA over HTTP
 * (cmpclient.h), and local clients on a Unix socket speaking agentproto.h,
 * authorised by SO_PEERCRED uid (frameserver.h).
 *
 * Rooms:
 *   main.c    the daemon: start-up, the epoll loop, signals, the keyholder
 *             process, timers, shutdown
 *   state.c   per-workload state: the current SVID in memory and on disk
 *             (reuse at start, atomic writes of cert.pem and bundle.pem);
 *             the list of identities, who may use each (selectors)
 *   enroll.c  jobs: enrollment and renewal (CMP), key destruction,
 *             renewal and retry scheduling, retired keys
 *   entries.c the node's registration entries: asked of the CA, cached,
 *             and turned into identities to keep (or to drop)
 *   api.c     the local API server: authorisation (selectors, checked
 *             against the client's process as it was when it connected),
 *             GET_SVID, SUBSCRIBE and its UPDATEs, SIGN through the keyholder
 *   hygiene.c at start, the token's orphaned keys of our label schemes
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
#include "crl.h"
#include "keytypes.h"
#include "selector.h"
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
	/*
	 * The CMP transactionID of every request for this key, made with it:
	 * a retry after a lost answer is the same transaction, which the CA
	 * answers with the certificate it recorded (docs/PROTOCOL.md, Retries)
	 * instead of refusing a join token or a certificate already spent.
	 */
	uint8_t tid[16];
};

/* One identity: a workload's, or the node's own (ag->node). */
struct wl {
	const struct agent_workload *c;	/* its id and join token: agent.yaml's, or own */
	struct agent_workload own;	/* what c points at for an entry's or the node's */
	uint64_t wid;			/* never reused: subscriptions name it */
	int is_node;			/* the node identity: never served */
	int from_conf;			/* listed in agent.yaml's workloads: */
	int node_managed;		/* an entry gives it to this node: node-protected */
	int removed;			/* its entry went while a job ran: freed after the job */
	struct wl *zombie_next;		/* ag->zombies, while removed */
	int waiting_logged;		/* "waiting for the node identity" said */
	int mark;			/* entries.c: named by the list being applied */
	/* Who may use it: a client whose process matches any one set. */
	struct sel_set *sels;
	size_t nsels;
	uint64_t sels_gen;		/* changes whenever sels do (clients' cached decisions) */
	int root_any;			/* agent.yaml without selectors: uid 0 may use it too */
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
	int revoked;			/* the CRL lists its certificate: not served, re-enrolling */
	struct job *job;		/* the running enrollment, if any */
};

enum job_kind { JOB_ENROLL = 1, JOB_DESTROY = 2, JOB_ENTRIES = 3, JOB_CRL = 4 };

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
	X509 *nodecert;			/* node-protected: the node's certificate and key */
	EVP_PKEY *nodekey;
	struct agent_key key;		/* in: pending key (maybe unset); out: the new key */
	int st;
	int unreachable;		/* no valid answer from the CA */
	int keep_key;			/* on failure: keep key for the next attempt */
	char why[512];
	X509 *cert;
	STACK_OF(X509) *chain;		/* intermediates between cert and root */
	/* JOB_DESTROY */
	uint8_t keyid[HSM_KEYID_LEN];
	/* JOB_ENTRIES */
	struct entry_list *entries;
	uint8_t *entries_der;
	size_t entries_len;
	int64_t crl_hint;		/* the CA's revocation sequence, -1 when not sent */
	/* JOB_CRL */
	char crl_url[1040];
	uint8_t *crl_der;
	size_t crl_len;
};

/* A key replaced by a rotation: it still signs when named, until destroy_ms. */
struct retired {
	struct retired *next;
	const struct wl *w;
	uint8_t id[HSM_KEYID_LEN];
	uint64_t destroy_ms;
};

struct kh_client;
struct khsup;
struct fsrv;
struct entry_list;
struct api;

struct agent {
	struct agent_config *conf;
	struct cmpc_ca ca;		/* the CA as cmpclient sees it (conf's addresses, root) */
	struct kh_client *kh;		/* khsup's client: the same across keyholder restarts */
	struct khsup *khsup;		/* the supervised keyholder (khsup.h) */
	X509 *root;
	/*
	 * The bundle served (root and the CA roots learned from the CA's
	 * signed answers while it rotates: agent_learn); anchors_mu guards
	 * learned, root_pem and root_pemlen (enrollment threads learn).
	 */
	pthread_mutex_t anchors_mu;
	STACK_OF(X509) *learned;
	/*
	 * The CA certificates of the last chain installed (verified to the
	 * root): under an operator's root, the CA that signs the CRL is one
	 * (crl.c). Guarded by anchors_mu.
	 */
	STACK_OF(X509) *issuers;
	char *root_pem;
	size_t root_pemlen;
	char td[SPIFFE_TD_MAX + 1];	/* the root's trust domain ("" when it names none) */
	struct wl **wl;			/* the identities served (never the node's) */
	size_t nwl, capwl;
	uint64_t next_wid;
	struct wl *node;		/* the node identity, or NULL without node: */
	struct wl *zombies;		/* removed while a job ran (linked by ->zombie_next) */
	/* registration entries */
	uint64_t entries_next_ms;	/* next genm for them (monotonic), 0: none planned */
	int64_t entries_backoff_ms;
	struct job *entries_job;
	int64_t entries_refresh;	/* seconds, as last decided */
	int entries_known;		/* a list was applied (from the CA or the cache) */
	uint8_t entries_hash[32];	/* SHA-256 of the last list applied (its DER) */
	/* the CRL (crl.c): the last good one, as checked and as received */
	X509_CRL *crl;
	uint8_t *crl_der;
	size_t crl_len;
	struct crl_info crl_info;
	uint64_t crl_next_ms;		/* next fetch (monotonic), 0: none planned */
	int64_t crl_backoff_ms;
	struct job *crl_job;
	int crl_stale_logged;
	int ep, sfd, job_efd;
	struct fsrv *api;		/* the local API's server */
	struct api *apis;		/* the local API's own state (api.c) */
	struct job *jobs;
	struct retired *retired;
	int quit;			/* 1: a signal asked to stop */
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
 * A new identity: c (agent.yaml's workload, copied when own is set: an
 * entry's or the node's), its state directory (created), file paths and
 * token label ("hsmesh-node-" or "hsmesh-wl-" and 8 hex digits of
 * SHA-256(ID)). Not yet in ag->wl. *out NULL on entry; 0 or an error.
 */
int wl_new(struct agent *ag, const struct agent_workload *c, int own, int is_node,
    struct wl **out);
/* Free w and what it holds. Accepts NULL. */
void wl_free(struct wl *w);
/* Append w to the identities served (ag->wl). 0 or HSM_ENOMEM. */
int wl_add(struct agent *ag, struct wl *w);
/* Take w out of ag->wl (it is then no longer served). */
void wl_unlist(struct agent *ag, struct wl *w);
/* The identity served under id, or NULL. */
struct wl *wl_find(struct agent *ag, const char *id);
/* Who may use w: agent.yaml's uid and selectors (root too when it has no selectors). */
int wl_sels_from_conf(struct wl *w);
/* Replace who may use w by the selector sets of entries (one set per entry). */
int wl_sels_set(struct wl *w, const struct sel_set *sets, size_t n);
/*
 * May the process p use w? 1 yes; 0 no, with *why (may be NULL) the
 * first reason of the last set tried.
 */
int wl_allows(const struct wl *w, struct sel_proc *p, const char **why);
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

/* A uniform random 64-bit value for the schedules' jitter (0 when RAND fails). */
uint64_t agent_rand64(void);

/* Start an enrollment (ir) or renewal (kur) for w on a job thread. */
void enroll_start(struct agent *ag, struct wl *w);
/* Run j on a new job thread (linked into ag->jobs). 0 or an error with detail. */
int enroll_job_start(struct agent *ag, struct job *j);
/*
 * w's identity is no longer this node's (its entry went): take it out of
 * service at once, destroy its keys and state files; freed now, or when
 * its running job ends.
 */
void enroll_drop(struct agent *ag, struct wl *w);
/* The node identity was renewed or enrolled: workloads waiting for it may go. */
void enroll_node_ready(struct agent *ag);
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

/* ---- entries.c ---- */

/* Start-up: the entries cached in state_dir, if any, applied. */
void entries_load_cache(struct agent *ag);
/* Start a genm for the node's entries when one is due (from enroll_run_timers). */
void entries_maybe_fetch(struct agent *ag);
/* Main thread: a finished entries job (applied, cached, next one scheduled). */
void entries_done(struct agent *ag, struct job *j);
/* The job thread of JOB_ENTRIES. */
void entries_job_run(struct job *j);
/* Ask again soon (a renewal was refused: the entries may have changed). */
void entries_refresh_soon(struct agent *ag);

/* ---- crl.c ---- */

/* Start-up: the CRL kept in state_dir, if it still checks, and the first fetch planned. */
void crl_load_cache(struct agent *ag);
/* Fetch the CRL when due (from enroll_run_timers). */
void crl_maybe_fetch(struct agent *ag);
/* Fetch now (SIGHUP, or the CA's hint says a newer CRL exists). */
void crl_fetch_now(struct agent *ag, const char *why);
/* The CA's revocation sequence from an entries genp: fetch when it is newer than ours. */
void crl_hint(struct agent *ag, int64_t seq);
/* The job thread of JOB_CRL: HTTP GET of the CRL. */
void crl_job_run(struct job *j);
/* Main thread: a finished CRL job (checked, kept, pushed, our identities checked). */
void crl_done(struct agent *ag, struct job *j);
/* Shutdown: free what the agent holds of the CRL. */
void crl_free(struct agent *ag);

/* ---- api.c ---- */

/*
 * Listen on the configured socket and register the listener, the output
 * watch and (later) every client with ag->ep. 0 or an error with detail.
 */
int api_start(struct agent *ag);
/* Log the local API's line (its limits), once the agent's start-up went well. */
void api_log_ready(struct agent *ag);
/* An event of ag->ep whose tag is none of main.c's: the listener, the output watch or a client. */
void api_event(struct agent *ag, void *tag);
/* A new CRL: an AG_T_CRL push to every client that sent CRL_SUBSCRIBE. */
void api_push_crl(struct agent *ag);
/* After a rotation: an UPDATE to every client subscribed to w. */
void api_push_update(struct agent *ag, struct wl *w);
/* w is no longer served: its subscribers are disconnected (they read the end). */
void api_workload_gone(struct agent *ag, struct wl *w);
/* Close every client and the socket. */
void api_stop(struct agent *ag);

/* ---- hygiene.c ---- */

/*
 * At start: destroy the keys of the agent's own label schemes
 * (hsmesh-wl-*, hsmesh-node-*) that no certificate in the state
 * directory references, one log line each; never any other key.
 */
void agent_token_hygiene(struct agent *ag);

/* ---- client.c ---- */

/* `hsmesh agent client ...` (argv[0] is "client"). Exit status. */
int agent_client_main(int argc, char **argv);

#endif
