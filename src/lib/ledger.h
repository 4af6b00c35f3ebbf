/*
 * ledger.h - the CA's ledger: one-time join tokens, every certificate
 * issued, renewals, revocations, and the registration entries that say
 * which node may obtain which workload identity.
 *
 * This interface validates every input and decides which steps form one
 * transaction; the store behind it is a backend (ledger_be.h):
 *
 *   SQLite      a file path (ledger_sqlite.c: WAL mode, synchronous=FULL,
 *               a busy timeout so a second process such as "hsmesh ca
 *               token" can write while "hsmesh ca serve" runs)
 *   PostgreSQL  a libpq URI, postgresql://... or postgres://...
 *               (ledger_pg.c), shared by any number of CA replicas
 *
 * A struct ledger is one connection guarded by a mutex: any function may
 * be called from any thread. The schema is created or migrated on open, in
 * numbered steps recorded in a schema_version table; a ledger written by a
 * newer program is refused. Nothing is cached: every call reads what every
 * process and replica has committed.
 *
 * Invariants, kept by the store itself so that they hold between
 * processes (and, with a shared store, replicas): a join token is consumed
 * once; a serial is recorded once; a certificate is renewed at most once,
 * so a renewal chain never forks (only its newest certificate may renew);
 * no certificate is recorded for an identity once its revocation has
 * committed. A transaction in conflict with a concurrent one is run again
 * (a bounded number of times).
 *
 * Store failures return HSM_EIO with the detail "ledger: <what>: <the
 * store's message>". Join token secrets never reach the ledger: only
 * their SHA-256.
 */
#ifndef HSM_LEDGER_H
#define HSM_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "spiffe.h"

#define LEDGER_SCHEMA_VERSION 7
#define LEDGER_REF_MAX 64	/* join token reference, bytes */
#define LEDGER_HASH_LEN 32	/* SHA-256 of a join token secret */
#define LEDGER_SERIAL_MAX 64	/* certificate serial, hex digits */
#define LEDGER_SPKI_ID_LEN 64	/* hex SHA-256 of a SubjectPublicKeyInfo */
#define LEDGER_AUTH_MAX 255	/* "token:<ref>", "kur:<serial>", "offline", ... */
#define LEDGER_REASON_MAX 10	/* CRLReason codes 0..10 (RFC 5280 5.3.1) */
#define LEDGER_TXN_MAX 128	/* a CMP transactionID, hex digits */
#define LEDGER_ENTRY_ID_LEN 16	/* hex digits of a registration entry's ID */
#define LEDGER_SELECTORS_MAX 4096	/* an entry's selectors, one a line */
#define LEDGER_CA_PEM_MAX (256 * 1024)	/* a CA's chain or links (PEM) */
#define LEDGER_PROFILE_MAX 15		/* an entry's certificate profile name */
#define LEDGER_NF_TYPES_MAX 1055	/* "AMF,SMF": nfprofile.h's NF_TYPES_TEXT_MAX - 1 */
#define LEDGER_FQDN_MAX 253		/* a DNS name */

/*
 * What a join token enrolls and what a certificate is: a workload's
 * identity, or a node's (an agent's own identity, which protects the
 * enrollment of its workloads). The two never mix: a node token issues
 * only node certificates, a workload token only workload certificates.
 */
enum ledger_kind { LEDGER_WORKLOAD = 0, LEDGER_NODE = 1 };

struct ledger;

struct ledger_token {
	uint8_t hash[LEDGER_HASH_LEN];
	char spiffe_id[SPIFFE_ID_MAX + 1];
	int64_t created;	/* unix seconds */
	int64_t expires;	/* valid while now < expires */
	int used;		/* 1 once consumed */
	int64_t used_at;	/* 0 unless used */
	enum ledger_kind kind;	/* what it enrolls */
	char serial[LEDGER_SERIAL_MAX + 1];	/* the certificate it paid for, or "" */
};

/*
 * One certificate. Strings are NUL-terminated within their arrays;
 * parent_serial is "" when the certificate renews nothing, superseded_by
 * "" while no certificate renews it. For ledger_cert_add / ledger_issue
 * the caller fills every field except the revocation ones and
 * superseded_by, which are ignored; der is only read. ledger_cert_get
 * fills everything and der is malloc'd: release it with ledger_cert_clear().
 */
struct ledger_cert {
	char serial[LEDGER_SERIAL_MAX + 1];	/* hex, stored lower-case */
	char spiffe_id[SPIFFE_ID_MAX + 1];
	char spki_id[LEDGER_SPKI_ID_LEN + 1];	/* hex, stored lower-case */
	int64_t not_before;
	int64_t not_after;
	char auth[LEDGER_AUTH_MAX + 1];
	char parent_serial[LEDGER_SERIAL_MAX + 1];
	char superseded_by[LEDGER_SERIAL_MAX + 1];	/* the renewal of this one, or "" */
	char txn[LEDGER_TXN_MAX + 1];	/* hex CMP transactionID that asked for it, or "" */
	int revoked;
	int64_t revoked_at;	/* 0 unless revoked */
	int reason;		/* CRLReason, meaningful when revoked */
	enum ledger_kind kind;	/* a workload's or a node's certificate */
	char node_id[SPIFFE_ID_MAX + 1];	/* issued to this node (node-protected), or "" */
	char issuer[LEDGER_SPKI_ID_LEN + 1];	/* key id (hex) of the CA that signed it, or "" */
	uint8_t *der;
	size_t der_len;
};

/*
 * A registration entry: which node(s) may obtain a workload identity and
 * which local processes the node's agent serves it to. node is a node's
 * SPIFFE ID, or with node_is_pattern a pattern of them (proxyconf.h's
 * syntax: an ID, or an ID followed by "/" + "*" for everything below it).
 * A self-managed entry (a CMP client manages the identity itself: join
 * token ir, kur by its own certificate) names no node and no selectors.
 * selectors: one selector a line (selector.h), "" for none.
 *
 * The certificate profile of the identity's certificates (nfprofile.h):
 * profile "" (the CA's default: ca.yaml's profile), "spiffe" or
 * "3gpp-nf"; nf_types ("AMF" or "AMF,SMF") and fqdn are set exactly
 * when the profile is "3gpp-nf" (the home network, and so whether the
 * FQDN lies in it, is the CA's to check). All entries of one ID agree on
 * these three.
 */
struct ledger_entry {
	char id[LEDGER_ENTRY_ID_LEN + 1];	/* lower-case hex */
	char spiffe_id[SPIFFE_ID_MAX + 1];
	char node[SPIFFE_ID_MAX + 1];
	int node_is_pattern;
	char selectors[LEDGER_SELECTORS_MAX + 1];
	int64_t ttl;		/* seconds its certificates live; 0: svid_ttl */
	int self_managed;
	int64_t created;	/* set by ledger_entry_add */
	char profile[LEDGER_PROFILE_MAX + 1];
	char nf_types[LEDGER_NF_TYPES_MAX + 1];
	char fqdn[LEDGER_FQDN_MAX + 1];
};

/*
 * Open the ledger at location (ca.yaml's database) and bring its schema up
 * to date. A file path is an SQLite database, created with mode 0600 if
 * needed; its directory must exist (it is not created) and a symbolic
 * link as the file itself is refused. A postgresql:// URI is a PostgreSQL
 * database, which must exist; a URI with a password in it is refused (use
 * a passfile). 0 with *out set; HSM_EINVAL, HSM_ENOENT (directory
 * missing), HSM_EUNSUPPORTED (no backend for that kind of location),
 * HSM_ENOMEM, HSM_EIO (store error, unreachable server, or a newer
 * schema).
 */
int ledger_open(const char *location, struct ledger **out);

/* Close the ledger. Accepts NULL. No call may be in progress. */
void ledger_close(struct ledger *lg);

/*
 * Record a join token: ref (1..LEDGER_REF_MAX printable ASCII bytes),
 * the SHA-256 of its secret, the SPIFFE ID it enrolls and when it
 * expires (unix seconds). 0; HSM_EEXIST if ref is taken; HSM_EINVAL;
 * HSM_EIO.
 */
int ledger_token_add(struct ledger *lg, const char *ref,
    const uint8_t secret_hash[LEDGER_HASH_LEN], const char *spiffe_id, int64_t expires);
/* ledger_token_add for a token of kind (LEDGER_NODE: it enrolls a node identity). */
int ledger_token_add_kind(struct ledger *lg, const char *ref,
    const uint8_t secret_hash[LEDGER_HASH_LEN], const char *spiffe_id, int64_t expires,
    enum ledger_kind kind);

/*
 * Look a join token up by ref (which may come from a peer: any string is
 * accepted). It is reported whether used or expired. 0 with *out filled;
 * HSM_ENOENT if unknown; HSM_EIO. *out is cleared on entry.
 */
int ledger_token_lookup(struct ledger *lg, const char *ref, struct ledger_token *out);

/*
 * Consume a join token at time now, atomically: it is marked used only
 * if it was unused and now < expires, so of many concurrent callers (or
 * processes) exactly one succeeds. 0 if this call consumed it;
 * HSM_EPOLICY ("join token already used" / "join token expired");
 * HSM_ENOENT if unknown; HSM_EIO.
 */
int ledger_token_consume(struct ledger *lg, const char *ref, int64_t now);

/*
 * Whether ref could be consumed at now, without consuming it: the cheap
 * check a server makes before it spends a signature (ledger_issue decides
 * again, atomically). 0; HSM_EPOLICY ("join token already used" / "join
 * token expired"); HSM_ENOENT; HSM_EIO.
 */
int ledger_token_check(struct ledger *lg, const char *ref, int64_t now);

/*
 * Undo ledger_token_consume(lg, ref, used_at) when no certificate came of
 * it (the token or keyholder failed): the token is usable again, until it
 * expires. Only a consumption at exactly used_at is undone. 0; HSM_ENOENT;
 * HSM_EIO.
 */
int ledger_token_unconsume(struct ledger *lg, const char *ref, int64_t used_at);

/*
 * Record an issued certificate, in one transaction with what authorised
 * it: when token_ref is not NULL, consume that join token at now (as
 * ledger_token_consume) and record that it paid for c (the token's
 * serial, so that a retry of the same request finds c again); when
 * c->parent_serial is set, record c as the renewal of that certificate,
 * which must exist, not be revoked and not have been renewed before; and
 * c->spiffe_id must not be revoked; when c->issuer is set and the ledger
 * knows a CA set, that CA must be the active one (HSM_EAGAIN "CA 2 is not
 * the active CA (it is old)": a rotation happened since the caller
 * looked; issue again). Either all of it is recorded or nothing. The serials and spki_id are hex (either case, stored
 * lower-case, serials without leading zeros); c->txn is "" or hex (stored
 * lower-case). 0; HSM_EEXIST if the serial is already recorded;
 * HSM_EPOLICY "identity revoked" / "join token already used" / "join
 * token expired" / "certificate already renewed (superseded by serial S)"
 * / "certificate revoked" (the parent); HSM_ENOENT (unknown token or
 * parent); HSM_EINVAL; HSM_EIO.
 */
int ledger_issue(struct ledger *lg, const struct ledger_cert *c, const char *token_ref,
    int64_t now);

/*
 * ledger_issue with one more step in its transaction: once every row is
 * written, before_commit(arg) runs (the ledger locked, the transaction
 * open); a non-zero return rolls everything back and is returned, so a
 * record that must go with the issuance (the CA's audit line) decides
 * whether it happens. *hook_ran (may be NULL) is set when before_commit
 * succeeded: if the call still fails, the commit itself failed after the
 * hook's record was made (the caller compensates for it). A transaction
 * in conflict with a concurrent one runs again, but before_commit's record
 * is made at most once: a commit failing after it is not retried. The same
 * codes as ledger_issue, or before_commit's.
 */
int ledger_issue_with(struct ledger *lg, const struct ledger_cert *c, const char *token_ref,
    int64_t now, int (*before_commit)(void *arg), void *arg, int *hook_ran);

/* ledger_issue without a join token. */
int ledger_cert_add(struct ledger *lg, const struct ledger_cert *c);

/*
 * Fetch a certificate by serial (hex, either case). 0 with *out filled
 * (release with ledger_cert_clear); HSM_ENOENT; HSM_ENOMEM; HSM_EIO.
 * *out is cleared on entry.
 */
int ledger_cert_get(struct ledger *lg, const char *serial, struct ledger_cert *out);

/* Free the DER held by c and clear c. Accepts NULL. */
void ledger_cert_clear(struct ledger_cert *c);

/*
 * Revoke one certificate with a CRLReason (0..10, not 7) at time now.
 * Revoking a revoked certificate succeeds and keeps the first time and
 * reason. 0; HSM_ENOENT if the serial is unknown; HSM_EINVAL; HSM_EIO.
 */
int ledger_cert_revoke(struct ledger *lg, const char *serial, int reason, int64_t now);

/*
 * Revoke an identity: in one transaction, revoke every current
 * (unrevoked, not_after > now) certificate of spiffe_id and record the
 * ID as revoked so that ledger_id_revoked() reports it and renewals are
 * refused. *count (may be NULL) receives the number of certificates
 * revoked, possibly 0. 0; HSM_EINVAL; HSM_EIO.
 */
int ledger_revoke_id(struct ledger *lg, const char *spiffe_id, int reason, int64_t now,
    unsigned *count);

/*
 * Whether spiffe_id was revoked with ledger_revoke_id (and not
 * reinstated). A database error reads as revoked (fail closed) and is
 * logged.
 */
int ledger_id_revoked(struct ledger *lg, const char *spiffe_id);

/*
 * Lift an identity revocation so the ID may enroll again (with a new
 * join token: its old certificates stay revoked). 0; HSM_ENOENT if the
 * ID was not revoked; HSM_EIO.
 */
int ledger_id_reinstate(struct ledger *lg, const char *spiffe_id);

/*
 * The revocation sequence: one more for every ledger_cert_revoke that
 * revoked a certificate and every ledger_revoke_id that revoked at least
 * one, in the same transaction, so that it never goes back and a reader
 * that sees it has also seen those revocations (every process and replica
 * sharing the store). 0; HSM_EIO. *seq is 0 on failure.
 */
int ledger_revocation_seq(struct ledger *lg, uint64_t *seq);

/*
 * Call cb for every revoked certificate that has not expired at now
 * (not_after > now), in the order of revocation: its serial (hex), when
 * and why (CRLReason). cb runs with the ledger locked (no ledger calls);
 * a non-zero return stops the walk and is returned. 0; HSM_EIO.
 */
typedef int (*ledger_revoked_cb)(const char *serial, int64_t revoked_at, int reason, void *arg);
int ledger_revoked_list(struct ledger *lg, int64_t now, ledger_revoked_cb cb, void *arg);

/* Number of certificates recorded. 0 or HSM_EIO; *n is 0 on failure. */
int ledger_cert_count(struct ledger *lg, uint64_t *n);

/*
 * Call cb for every certificate of spiffe_id, oldest first (by
 * not_before, then insertion): the renewal chain, linked by
 * parent_serial. c (and c->der) is valid only during the call. cb runs
 * with the ledger locked and must not call ledger functions (that
 * returns HSM_EBUSY). A non-zero return from cb stops the walk and is
 * returned. 0 when every row was visited; HSM_EIO; HSM_ENOMEM.
 */
typedef int (*ledger_cert_cb)(const struct ledger_cert *c, void *arg);
int ledger_cert_list_id(struct ledger *lg, const char *spiffe_id, ledger_cert_cb cb, void *arg);

/*
 * How many certificates of each kind spiffe_id has ever had: an ID is a
 * node's or a workload's, never both. 0; HSM_EIO. A store error is
 * reported, never read as "none".
 */
int ledger_id_kinds(struct ledger *lg, const char *spiffe_id, unsigned *nodes,
    unsigned *workloads);

/* ---- registration entries ---- */

/*
 * Record e (its created is set here; e->id, when "", is made: 16 random
 * hex digits, copied back into e). In one transaction the ledger refuses
 * what would contradict itself: HSM_EPOLICY when spiffe_id is a node's
 * identity (it has node certificates, or an entry names it as a node),
 * when the node named is a workload's identity, or when another entry of
 * the same ID disagrees on self-managed or on the certificate profile
 * (profile, nf_types, fqdn). HSM_EINVAL (a field malformed: IDs,
 * pattern, selectors, ttl, self-managed with a node or selectors, a
 * node-managed entry without a node or without selectors, a profile
 * unknown or its NF fields missing, malformed or given without it); HSM_EEXIST
 * (id taken); HSM_EIO. Trust-domain and max_ttl checks are the caller's.
 */
int ledger_entry_add(struct ledger *lg, struct ledger_entry *e);

/* Fetch entry id. 0 with *out filled; HSM_ENOENT; HSM_EINVAL; HSM_EIO. */
int ledger_entry_get(struct ledger *lg, const char *id, struct ledger_entry *out);

/* Remove entry id. 0; HSM_ENOENT; HSM_EINVAL; HSM_EIO. */
int ledger_entry_rm(struct ledger *lg, const char *id);

/*
 * Call cb for every entry of spiffe_id (NULL: every entry), oldest first.
 * e is valid during the call only; cb runs with the ledger locked and must
 * not call ledger functions. A non-zero return from cb stops the walk and
 * is returned. 0; HSM_EIO; HSM_ENOMEM.
 */
typedef int (*ledger_entry_cb)(const struct ledger_entry *e, void *arg);
int ledger_entry_list(struct ledger *lg, const char *spiffe_id, ledger_entry_cb cb, void *arg);

/* 1 when e is node-managed and names node_id (exactly, or by its pattern), else 0. */
int ledger_entry_covers(const struct ledger_entry *e, const char *node_id);

/* ---- the CA set: the trust domain's CA keys and certificates ---- */

/*
 * The life of a CA key (docs/LIFECYCLE.md, "Rotate the CA"). Exactly one
 * CA is active once the set is not empty (the store keeps it so); the
 * trust bundle holds the certificates of the prepared, active and old
 * ones.
 */
enum ledger_ca_state {
	LEDGER_CA_PENDING = 0,	/* key in the token, no certificate yet (a CSR is out) */
	LEDGER_CA_PREPARED = 1,	/* certificate in place, in the bundles; issues nothing */
	LEDGER_CA_ACTIVE = 2,	/* issues every certificate */
	LEDGER_CA_OLD = 3,	/* issued before; in the bundles while its certificates live */
	LEDGER_CA_RETIRED = 4,	/* out of the bundles; issues nothing, ever */
};
#define LEDGER_CA_STATES 5

/*
 * One CA. For ledger_ca_list every field is valid during the callback
 * only; chain and links are NUL-terminated PEM ("" for none).
 */
struct ledger_ca {
	int gen;				/* 1, 2, ...: the order they were made in */
	char key_id[LEDGER_SPKI_ID_LEN + 1];	/* hex SHA-256 of its SubjectPublicKeyInfo */
	enum ledger_ca_state state;
	const uint8_t *cert;			/* DER; NULL while pending */
	size_t cert_len;
	const char *chain;			/* the certificates above it: intermediates, root */
	const char *links;			/* cross-certificates published with it */
	int64_t created;
	int64_t changed;			/* last change of state or certificate */
};

/* "pending", "prepared", "active", "old", "retired" ("?" for another value). */
const char *ledger_ca_state_name(enum ledger_ca_state s);

/*
 * Record a new CA (pending, prepared, or active when the set is empty:
 * the first CA); c->gen and c->created are set here. The first CA of a
 * ledger also becomes the issuer of every certificate recorded without
 * one (a ledger from before CA sets). 0; HSM_EEXIST (its key is
 * recorded); HSM_EPOLICY (active, but the set is not empty); HSM_EINVAL;
 * HSM_EIO.
 */
int ledger_ca_add(struct ledger *lg, struct ledger_ca *c);

/*
 * Call cb for every CA, oldest first. cb runs with the ledger locked and
 * must not call ledger functions. 0; HSM_EIO; HSM_ENOMEM; cb's non-zero.
 */
typedef int (*ledger_ca_cb)(const struct ledger_ca *c, void *arg);
int ledger_ca_list(struct ledger *lg, ledger_ca_cb cb, void *arg);

/*
 * Give CA key_id its certificate (DER) and chain and links (PEM, "" for
 * none): a pending CA becomes prepared; a prepared, active or old one
 * keeps its state with the new certificate (its key's certificate
 * re-issued). 0; HSM_ENOENT (no such CA); HSM_EPOLICY (retired);
 * HSM_EINVAL; HSM_EIO.
 */
int ledger_ca_install(struct ledger *lg, const char *key_id, const uint8_t *cert,
    size_t cert_len, const char *chain, const char *links, int64_t now);

/*
 * Make CA key_id (prepared, or old: a roll-back) the active one; the
 * active one becomes old. One transaction. 0; HSM_ENOENT; HSM_EPOLICY
 * ("CA 3 is already active", "CA 3 is pending: it has no certificate
 * yet", "... is retired"); HSM_EIO.
 */
int ledger_ca_activate(struct ledger *lg, const char *key_id, int64_t now);

/*
 * The certificates that still chain to CA key_id at now: recorded with
 * it as their issuer (or with no issuer recorded), not expired, not
 * revoked. *n their number, *latest the last notAfter among them (0 when
 * none). 0; HSM_EINVAL; HSM_EIO.
 */
int ledger_ca_outstanding(struct ledger *lg, const char *key_id, int64_t now, unsigned *n,
    int64_t *latest);

/*
 * Retire CA key_id (old, prepared or pending) if no certificate chains to
 * it any more (ledger_ca_outstanding, decided in the same transaction).
 * 0; HSM_EBUSY with *n and *latest set when certificates are
 * outstanding; HSM_ENOENT; HSM_EPOLICY (active, or retired already);
 * HSM_EIO.
 */
int ledger_ca_retire(struct ledger *lg, const char *key_id, int64_t now, unsigned *n,
    int64_t *latest);

/*
 * A number that changes whenever the CA set does (any process, any
 * replica): cheap to poll. 0 for an empty set. 0; HSM_EIO.
 */
int ledger_ca_seq(struct ledger *lg, int64_t *seq);

#endif
