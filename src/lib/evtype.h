/*
 * evtype.h - the kinds of attestation evidence hsmesh knows, the object
 * identifiers that carry them on the wire, and the CA's freshness nonces
 * (docs/PROTOCOL.md, "Attestation").
 *
 * Data and wire formats only: the agent (which produces evidence), the CA
 * (which checks it, attest.h) and hsmesh inspect (which prints what a
 * certificate records) share this table. A new kind of evidence (a TPM 2.0
 * key certification is the likely next) is a new enum value, a row of the
 * table and a checker behind attest.h; no OID below ever changes meaning.
 */
#ifndef HSM_EVTYPE_H
#define HSM_EVTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Our OID arc (a UUID arc, X.667): 2.25.87529635398249573420365783529533619489 */
#define HSM_OID_ARC		"2.25.87529635398249573420365783529533619489"
#define HSM_OID_ATTEST_NONCE	HSM_OID_ARC ".1"	/* genm request / genp answer */
#define HSM_OID_SGX_QUOTE	HSM_OID_ARC ".2"	/* generalInfo of ir/cr/p10cr/kur */
#define HSM_OID_SGX_IDENTITY	HSM_OID_ARC ".3"	/* certificate extension */
#define HSM_OID_CRL_HINT	HSM_OID_ARC ".5"	/* genp: the CA's revocation sequence (crl.h) */
#define HSM_OID_ENTRIES		HSM_OID_ARC ".4"	/* genm request / genp answer: a node's
							 * registration entries (entries.h) */

#define ATTEST_NONCE_LEN	32
#define ATTEST_QUOTE_MAX	(64 * 1024)	/* the largest evidence of any kind */

enum ev_type {
	EV_NONE = 0,
	EV_SGX = 1,	/* an Intel SGX DCAP quote (ECDSA P-256, v3/v4/v5) */
};

/* One kind of evidence. */
struct ev_type_info {
	enum ev_type type;
	const char *name;		/* "sgx": the audit field "evidence", the ledger's auth tag */
	const char *evidence_oid;	/* generalInfo InfoTypeAndValue carrying it (OCTET STRING) */
	const char *identity_oid;	/* certificate extension recording what was measured */
	const char *identity_label;	/* how hsmesh inspect names that extension */
	size_t max_len;			/* largest evidence accepted, bytes */
};

/* The row of type t, or NULL when t is not a kind of evidence (EV_NONE included). */
const struct ev_type_info *ev_type_get(enum ev_type t);

/* The row whose evidence_oid is oid (dotted), or NULL. */
const struct ev_type_info *ev_type_by_evidence_oid(const char *oid);

/* Row i of the table (0, 1, ...), NULL past the last: for walking every kind. */
const struct ev_type_info *ev_type_at(size_t i);

/*
 * Freshness nonces: be64(issue time) || HMAC-SHA256(key, label ||
 * be64(time))[:24]. Stateless, so any CA replica sharing the join-token
 * key accepts them and an unauthenticated genm costs no memory. A nonce
 * may be used more than once within its lifetime: a replayed quote is
 * worthless without the private key it names.
 */

/* Derive the nonce key from the CA's join-token key (shared by replicas). */
void ev_nonce_key(const uint8_t token_key[32], uint8_t out[32]);

/* A nonce issued at now. */
void ev_nonce_make(const uint8_t key[32], time_t now, uint8_t out[ATTEST_NONCE_LEN]);

/*
 * 0 when nonce was made with key no more than ttl seconds before now (and
 * not more than a small clock skew after it); else HSM_EPOLICY with a
 * one-line reason.
 */
int ev_nonce_check(const uint8_t key[32], const uint8_t nonce[ATTEST_NONCE_LEN], time_t now,
    int64_t ttl);

#endif
