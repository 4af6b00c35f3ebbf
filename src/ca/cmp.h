/*
 * cmp.h - the CA's CMPv2 issuer (RFC 4210, Lightweight CMP profile RFC
 * 9483) over HTTP (RFC 6712), built on OpenSSL's OSSL_CMP_SRV_CTX: `hsmesh
 * ca serve` (private to src/ca/).
 *
 * The front process of the CA: it parses HTTP and CMP (peer input) and
 * never holds the CA key, which signs through the keyholder behind cakey
 * (an EVP_PKEY of the hsmesh provider). Its rooms:
 *
 *   front.c  the HTTP front: listener, connection handlers, reading and
 *            parsing a request, answering it (cmp_serve)
 *   txn.c    one CMP message from bytes to answer (cmp_handle), and the
 *            transactions that outlive a message (certConf)
 *   auth.c   how a message authenticates: a join token's MAC, or a
 *            signature by a certificate of ours, and that signer's state
 *   cmp.c    the OpenSSL server callbacks: certificate requests (signer,
 *            evidence, identity, issuance), revocation
 *   genm.c   general messages: nonce, a node's entries, CA certificates
 *
 * Authentication (docs/PROTOCOL.md, "CMP profile" and its decision table):
 *   ir/cr/p10cr  password-based MAC with a one-time join token: senderKID
 *                is the token's REF; the token, not the request, decides
 *                the SPIFFE ID (and whether it is a node's); the token is
 *                consumed with the issuance. Or signed by a current NODE
 *                certificate (node-protected): the request's URI SAN names
 *                the workload ID, which a registration entry must
 *                authorise for that node.
 *   kur, rr      signed by a current certificate of ours, sent as the first
 *                extraCert: in the ledger byte for byte, not expired, not
 *                revoked, its ID not revoked, not renewed already. A kur
 *                signed by a node certificate whose oldCertID names one of
 *                that node's workload certificates renews that one, if an
 *                entry still authorises the node; a workload's own kur is
 *                refused for a node-managed identity.
 *   genm         either of the above; answered with the CA certificates.
 *                A node's genm for HSM_OID_ENTRIES is answered with its
 *                registration entries (entries.h).
 *
 * Attestation (attest.h, when ca.yaml has "attestation:"): an ir, cr,
 * p10cr or kur may carry evidence in the header's generalInfo; it must
 * verify, satisfy the policy and bind the request's key and a fresh nonce,
 * or the request is refused before its join token is touched. An
 * UNPROTECTED ir/cr/p10cr is then accepted when its evidence passes: the
 * policy names the identity. An unprotected genm asking for
 * HSM_OID_ATTEST_NONCE gets a nonce; nothing else unprotected is answered
 * but with an error.
 *
 * What OpenSSL 3.0's server side leaves to us is in docs/OPENSSL.md.
 */
#ifndef HSM_CA_CMP_H
#define HSM_CA_CMP_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/cmp.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "evtype.h"
#include "keytypes.h"
#include "spiffe.h"

struct attest_policy;
struct audit;
struct ca_issue_req;
struct cmp_der_info;
struct ledger;
struct metric;
struct metrics;
struct throttle;

/*
 * Issue and record a certificate (ca_issue's contract, ca.h): *refused set
 * when the ledger refused it (token used, parent renewed already).
 */
typedef int (*cmp_issue_fn)(void *arg, const struct ca_issue_req *rq, X509 **out,
    int *refused);

/*
 * The limits of the HTTP front (front.c; docs/CA.md lists each with its
 * default, ca.yaml's "front:" section, and how a refusal shows).
 */
struct cmp_limits {
	unsigned max_conns;		/* connections at once, all sources */
	unsigned max_conns_per_source;	/* from one address */
	unsigned workers;		/* threads doing the CMP and crypto work */
	uint64_t request_timeout_ms;	/* from accept until the whole request is in */
	uint64_t idle_timeout_ms;	/* longest silence while a request arrives */
	uint64_t write_timeout_ms;	/* for the answer to be taken */
	size_t max_body;		/* largest CMP message accepted */
	size_t max_buffered;		/* request bytes held for all connections */
};

struct cmp_server_cfg {
	const char *listen;		/* host:port; port 0 picks one (logged) */
	const char *port_file;		/* if set, the bound port is written here */
	const char *trust_domain;	/* IDs a node-protected request may name */
	const char *metrics_listen;	/* host:port of /metrics, or NULL */
	struct metrics *metrics;	/* its registry (NULL without metrics_listen) */
	X509 *cacert;			/* signs responses, sent in caPubs / genp */
	STACK_OF(X509) *cachain;	/* above cacert (an operator's PKI), maybe empty: sent too */
	STACK_OF(X509) *cabundle;	/* the other CAs of a rotation (prepared, old), or NULL */
	EVP_PKEY *cakey;		/* keyholder-backed */
	/*
	 * 1 when cakey can sign now; 0 while its keyholder restarts: then a
	 * message is answered with an unprotected systemFailure "CA keyholder
	 * restarting" and nothing is signed. NULL: always.
	 */
	int (*signer_ready)(void *arg);
	void *signer_arg;
	struct ledger *ledger;
	struct audit *audit;
	const uint8_t *token_key;	/* 32 bytes: derives join-token secrets */
	int64_t svid_ttl;
	int64_t max_ttl;		/* a registration entry's ttl is cut to this */
	cmp_issue_fn issue;
	void *issue_arg;
	const struct attest_policy *attest;	/* attestation policy, or NULL */
	struct cmp_limits lim;
	/*
	 * The CRL (ca.h's ca_crl): GET crl_path is answered with crl_get's
	 * DER (application/pkix-crl) by a worker; NULL crl_path: no CRL.
	 */
	const char *crl_path;
	int (*crl_get)(void *arg, uint8_t **der, size_t *len, uint64_t *seq);
	void *crl_arg;
	/* Called once the listener is bound, before serving (may be NULL). */
	void (*on_bound)(void *arg, unsigned port);
	void *bound_arg;
	/* listeners bound beforehand (cmp_bind): lfd, and mfd when metrics_listen */
	int prebound;
	int lfd, mfd;
	/* the front's seccomp filter, entered once set up (sandbox_enter_named) */
	const char *seccomp_mode;
	const char *seccomp_allow;
};

/*
 * Bind the listeners of cfg (listen, and metrics_listen when set) into
 * cfg->lfd and cfg->mfd and set cfg->prebound: before a `user:` switch
 * (a port below 1024 needs root). 0 or HSM_ECONFIG / HSM_EIO.
 */
int cmp_bind(struct cmp_server_cfg *cfg);

/*
 * Serve until SIGTERM or SIGINT (front.c). The listeners are taken over
 * when prebound. 0, or an error before serving started.
 */
int cmp_serve(const struct cmp_server_cfg *cfg);

/* ---- inside the server ---- */

/* PKIBody choice numbers (RFC 4210 5.1.2); OpenSSL 3.0 does not export them all. */
enum {
	BODY_IR = 0, BODY_IP = 1, BODY_CR = 2, BODY_CP = 3, BODY_P10CR = 4, BODY_KUR = 7,
	BODY_KUP = 8, BODY_RR = 11, BODY_RP = 12,
	BODY_PKICONF = 19, BODY_GENP = 22, BODY_ERROR = 23,
};

/* How the message being processed authenticated. */
enum cmp_auth { AUTH_NONE, AUTH_TOKEN, AUTH_CERT };

/*
 * The state of an AUTH_CERT signer: only SIGNER_OK may renew or revoke.
 * SIGNER_UNVERIFIED: the ledger could not be read (a replica whose
 * database is down): refused as a systemFailure, so the client tries
 * another replica.
 */
enum signer_state {
	SIGNER_OK, SIGNER_EXPIRED, SIGNER_REVOKED, SIGNER_ID_REVOKED, SIGNER_SUPERSEDED,
	SIGNER_UNVERIFIED,
};

#define SERIAL_HEX_MAX 80
#define CMP_ENTRIES_REFRESH 30		/* seconds: how often a node should ask for its entries */

/*
 * The most PBM iterations a MAC-protected message may ask the CA to
 * compute (OpenSSL would take up to 100000, about 30 ms of CPU per
 * forged message); `openssl cmp` and the agent use 500.
 */
#define CMP_PBM_MAX_ITERATIONS 10000
#define CMP_PBM_MAX_ITERATIONS_TEXT "10000"

struct server;

/* One CMP transaction (one OSSL_CMP_SRV_CTX), found again by its transactionID. */
struct txn {
	struct txn *next;
	struct server *s;
	uint8_t tid[64];
	size_t tidlen;
	OSSL_CMP_SRV_CTX *srv;
	uint64_t expires;
	int busy;
	/* State of the message being processed (valid while busy). */
	enum cmp_auth auth;
	char ref[HSM_MAX_LABEL + 1];		/* AUTH_TOKEN */
	char token_id[SPIFFE_ID_MAX + 1];
	int token_kind;				/* AUTH_TOKEN: enum ledger_kind */
	X509 *signer;				/* AUTH_CERT */
	enum signer_state signer_state;
	int signer_kind;			/* enum ledger_kind */
	char signer_node[SPIFFE_ID_MAX + 1];	/* the node it was issued to, or "" */
	char signer_serial[SERIAL_HEX_MAX];
	char signer_next[SERIAL_HEX_MAX];	/* SIGNER_SUPERSEDED: its renewal */
	char signer_id[SPIFFE_ID_MAX + 1];
	const char *peer;
	enum ev_type ev_type;			/* evidence in generalInfo, or EV_NONE */
	const uint8_t *evidence;
	size_t evidence_len;
	char lasterr[256];			/* captured from the library's log */
};

/* How a message that proved nothing was refused: for the metrics, by reason. */
enum cmp_unauth {
	UNAUTH_MALFORMED, UNAUTH_BAD_MAC, UNAUTH_PBM_COST, UNAUTH_UNKNOWN_SIGNER,
	UNAUTH_BAD_SIGNATURE, UNAUTH_UNPROTECTED, UNAUTH_SIGNER_DOWN, UNAUTH_N
};

struct server {
	const struct cmp_server_cfg *cfg;
	pthread_mutex_t mu;
	struct txn *txns;
	int ntxns;
	uint8_t nonce_key[32];			/* attestation nonces (evtype.h) */
	/*
	 * Refusals of messages that prove nothing (malformed, a wrong MAC or
	 * unknown join token, an unknown signer...): the first per source and
	 * reason per interval is audited and logged in full, the rest counted
	 * (throttle.h) and summarised by the front's loop.
	 */
	struct throttle *refusals;
	struct metric *m_unauth[UNAUTH_N];	/* hsmesh_ca_cmp_refused_total{reason} */
};

/* What cmp_handle answers: a DER PKIMessage (status 200), or an HTTP error. */
struct cmp_answer {
	uint8_t *body;		/* malloc'd DER, or NULL */
	size_t len;
	int status;		/* HTTP status */
	const char *errtext;	/* when body is NULL */
};


/*
 * cmp.c: a server context for t with our callbacks, certificate and key
 * (NULL on failure); and which transaction the library's log messages of
 * this thread belong to (NULL: none).
 */
OSSL_CMP_SRV_CTX *cmp_srv_new(struct server *s, struct txn *t);
void cmp_log_to(struct txn *t);
/*
 * cmp.c: reject the request with the StatusString why (failbit: an
 * OSSL_CMP_PKIFAILUREINFO_* bit number), log it and audit it with who
 * asked as far as the message proved it. The status to answer with
 * (NULL when out of memory).
 */
OSSL_CMP_PKISI *cmp_refuse(struct txn *t, const char *op, int failbit, const char *why);
/*
 * genm.c: the OpenSSL server's genm callback (OSSL_cmp_srv_genm_cb_t):
 * an attestation nonce, a node's registration entries, or the CA
 * certificates. 1 with *out set, else 0.
 */
int cmp_genm(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const STACK_OF(OSSL_CMP_ITAV) *in,
    STACK_OF(OSSL_CMP_ITAV) **out);

/*
 * auth.c: decide how req authenticates and prepare t's context so that
 * the library's own protection check agrees. 0 when the message may be
 * processed (t->auth says what was proven; AUTH_NONE for an unprotected
 * message under an attestation policy). 1 when its protection proves
 * nothing, *why saying how: a wrong MAC or an unknown REF (the same
 * UNAUTH_BAD_MAC for both: no oracle), a signer certificate not ours, a
 * signature that does not verify, or no protection without an
 * attestation policy. Nothing is signed or recorded for it here.
 */
int cmp_auth_prepare(struct server *s, struct txn *t, const OSSL_CMP_MSG *req,
    const struct cmp_der_info *di, enum cmp_unauth *why);
/*
 * auth.c: why t's signer may not act now (expired, revoked, identity
 * revoked, renewed already: the StatusString), or NULL when it is
 * current. buf holds a reason that names a serial.
 */
const char *cmp_signer_refusal(const struct txn *t, char *buf, size_t cap);

/*
 * txn.c: process one CMP request body from peer (address:port; src is the
 * address alone, for the refusal counts) into *a (body malloc'd, the
 * caller frees it).
 */
void cmp_handle(struct server *s, const uint8_t *body, size_t len, const char *peer,
    const char *src, struct cmp_answer *a);
/* txn.c: register the refusal counters in cfg->metrics (none without a registry). */
void cmp_refusal_metrics(struct server *s);
/* txn.c: write the summaries of throttled refusals whose interval ended (all: every one). */
void cmp_refusals_flush(struct server *s, int all);
/* txn.c: free every transaction left (at shutdown, no handler running). */
void txn_free_all(struct server *s);

#endif
