/*
 * entries.h - the registration entries the CA gives a node: the value of
 * the genp answering a node's genm for HSM_OID_ENTRIES (docs/PROTOCOL.md,
 * "Registration entries"). The CA encodes, the agent decodes: the decoder
 * distrusts every byte (fuzzed by tests/fuzz/fuzz_entries.c).
 *
 *   HsmeshEntries ::= SEQUENCE {
 *       version    INTEGER,                -- 1
 *       node       UTF8String,             -- the node's SPIFFE ID (the genm's signer)
 *       issued     INTEGER,                -- the CA's clock, Unix seconds
 *       refresh    INTEGER,                -- seconds: ask again within this (1..86400)
 *       entries    SEQUENCE OF HsmeshEntry }
 *
 *   HsmeshEntry ::= SEQUENCE {
 *       id         UTF8String,             -- the entry's ID: 1..32 lower-case hex digits
 *       spiffeId   UTF8String,             -- the workload ID (with a path)
 *       ttl        INTEGER,                -- seconds its certificates live; 0: the CA's svid_ttl
 *       selectors  SEQUENCE OF UTF8String }  -- 1..16 selectors (selector.h), all must match,
 *                                             -- each once, in its canonical spelling
 *
 * DER only: a value that does not re-encode to exactly its own bytes is
 * refused. At most ENTRIES_MAX entries; entry IDs unique.
 */
#ifndef HSM_ENTRIES_H
#define HSM_ENTRIES_H

#include <stddef.h>
#include <stdint.h>

#include "selector.h"

#define ENTRIES_VERSION 1
#define ENTRIES_MAX 4096		/* entries for one node */
#define ENTRIES_DER_MAX (4 << 20)	/* largest encoding accepted */
#define ENTRY_ID_MAX 32			/* hex digits of an entry's ID */

struct entry {
	char id[ENTRY_ID_MAX + 1];
	char *spiffe_id;
	int64_t ttl;			/* seconds, 0: the CA's default */
	struct sel_set sel;		/* all must match */
};

struct entry_list {
	char *node;
	int64_t issued;
	int64_t refresh;
	struct entry *v;
	size_t n;
};

/*
 * DER of l (its values checked as the decoder checks them) into *der
 * (OPENSSL_malloc'd: OPENSSL_free). 0, HSM_EINVAL (a value out of
 * bounds, with a detail), HSM_ENOMEM or HSM_ECRYPTO.
 */
int entries_encode(const struct entry_list *l, uint8_t **der, size_t *len);

/*
 * Decode and check len bytes (from the CA, or from the agent's cache
 * file). Caller frees *out with entries_free. 0, or HSM_EPROTO with a
 * one-line detail ("entries: entry 3: invalid SPIFFE ID ..."), HSM_ENOMEM.
 */
int entries_decode(const uint8_t *der, size_t len, struct entry_list **out);

/* Free l. Accepts NULL. */
void entries_free(struct entry_list *l);

#endif
