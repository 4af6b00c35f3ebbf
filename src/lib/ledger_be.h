/*
 * ledger_be.h - the storage backends behind ledger.h. Private to ledger.c
 * and the backend files (ledger_sqlite.c, ledger_pg.c).
 *
 * ledger.c owns everything a caller can get wrong or race on: input
 * validation and normalisation (serials lower-case without leading zeros,
 * hex key ids, SPIFFE IDs, CRLReasons), the reasons a refusal gives, the
 * lock that serialises the calls on one handle (a backend sees one call at
 * a time per connection, and a callback that re-enters gets HSM_EBUSY),
 * which steps form one transaction and how often a conflicting one is
 * tried again, and the schema migrations (the runner; each backend has its
 * own steps in its own SQL dialect). A backend stores and fetches rows and
 * nothing else: every input has been checked, every string is
 * NUL-terminated and within its LEDGER_*_MAX.
 *
 * Transactions: begin() opens a write transaction (SQLite: BEGIN
 * IMMEDIATE, one writer at a time across processes; PostgreSQL: BEGIN at
 * READ COMMITTED), and every op called until commit() or rollback() runs
 * in it. The invariants are kept by the store itself, in one of two ways
 * that hold across processes and replicas:
 *
 *   - a conditional op (token_use, cert_supersede, cert_revoke, ...)
 *     decides in one statement (UPDATE ... WHERE), never by a read
 *     followed by a write: the row lock makes of two racing callers
 *     exactly one change the row;
 *   - a decision that reads one thing and writes another (an issuance
 *     checks that its identity is not revoked, a revocation revokes the
 *     identity's certificates) runs under id_lock(), taken first in the
 *     transaction: transactions that lock the same identity run one after
 *     the other, and each statement after the lock sees what the previous
 *     holder committed.
 *
 * A new op follows one of the two. A backend whose store reports a
 * deadlock or a serialization failure (PostgreSQL SQLSTATE 40P01 / 40001)
 * returns HSM_EAGAIN from the op or from commit(); ledger.c then rolls back
 * and runs the whole transaction again, a bounded number of times. Outside
 * a transaction each op is atomic on its own and never returns HSM_EAGAIN
 * (the backend retries a single statement itself).
 *
 * Schema: ledger_open() calls open() (connect), then runs the migration in
 * one transaction opened with migrate_begin() (which also excludes every
 * other migrator: two replicas starting at once migrate once):
 * schema_version() reads the version (0 for an empty store, creating the
 * schema_version table if needed), each missing step of migrations[] runs
 * through exec() and is recorded with version_add(), then commit(). A
 * store of a newer version is refused. Then ready() prepares what the ops
 * need, which may name the tables.
 *
 * Every failure of the store is HSM_EIO with the detail "ledger: <what>:
 * <the store's message>"; a unique-key collision on insert is HSM_EEXIST.
 * A backend that lost its connection reconnects by itself at a later call
 * (the failed call is HSM_EIO); nothing is cached across calls, so every
 * call reads what every replica committed.
 */
#ifndef HSM_LEDGER_BE_H
#define HSM_LEDGER_BE_H

#include <stdint.h>

/* The types of ledger.h, which includes nothing of this file. */
struct ledger_be;
struct ledger_ca;
struct ledger_cert;
struct ledger_entry;
struct ledger_token;

struct ledger_ops {
	const char *name;	/* "sqlite", "postgresql" */
	/* 1 when location (ca.yaml's database) names this backend's kind of store. */
	int (*claims)(const char *location);
	/* Connect to (create if needed) the store at location; no table is touched. */
	int (*open)(const char *location, struct ledger_be **out);
	/* Close. Accepts NULL. No transaction may be open. */
	void (*close)(struct ledger_be *be);

	/*
	 * The migration steps: migrations[v] takes the schema from version v
	 * to v + 1, for v < LEDGER_SCHEMA_VERSION. Append only; never edit a
	 * released step.
	 */
	const char *const *migrations;
	/* Open the migration transaction (excludes other migrators). */
	int (*migrate_begin)(struct ledger_be *be);
	/* The schema version recorded (0: none yet), in the migration transaction. */
	int (*schema_version)(struct ledger_be *be, int64_t *version);
	/* Run one migration step (several statements). */
	int (*exec)(struct ledger_be *be, const char *sql);
	/* Record that the schema is now at version. */
	int (*version_add)(struct ledger_be *be, int64_t version);
	/* After the migration: make the ops ready (prepared statements). */
	int (*ready)(struct ledger_be *be);

	int (*begin)(struct ledger_be *be);
	/*
	 * In a transaction: wait for, then hold until it ends, the lock of
	 * spiffe_id (see above). Backends whose begin() already excludes every
	 * other writer make it a no-op.
	 */
	int (*id_lock)(struct ledger_be *be, const char *spiffe_id);
	int (*commit)(struct ledger_be *be);
	/* Undo an open transaction; a no-op when none is open. */
	void (*rollback)(struct ledger_be *be);

	/* Insert a join token; HSM_EEXIST when ref is taken. */
	/* hash: LEDGER_HASH_LEN bytes; kind: enum ledger_kind (what it enrolls). */
	int (*token_insert)(struct ledger_be *be, const char *ref, const uint8_t *hash,
	    const char *spiffe_id, int64_t created, int64_t expires, int kind);
	/* Fetch a join token; HSM_ENOENT when unknown. */
	int (*token_get)(struct ledger_be *be, const char *ref, struct ledger_token *out);
	/*
	 * Mark ref used at now, paying for certificate serial (NULL: none), if
	 * unused and now < expires: 1 if it changed, 0 if not.
	 */
	int (*token_use)(struct ledger_be *be, const char *ref, int64_t now, const char *serial);
	/* Unmark ref (and its serial) if it was used at exactly used_at: 1 if it changed, 0 if not. */
	int (*token_unuse)(struct ledger_be *be, const char *ref, int64_t used_at);

	/*
	 * Insert c (its revocation and superseded_by ignored; kind and
	 * node_id stored; txn and issuer "" stored as none) as recorded at
	 * recorded; HSM_EEXIST on a serial already taken.
	 */
	int (*cert_insert)(struct ledger_be *be, const struct ledger_cert *c, int64_t recorded);
	/* Fetch by serial, der malloc'd; HSM_ENOENT when unknown. */
	int (*cert_get)(struct ledger_be *be, const char *serial, struct ledger_cert *out);
	/*
	 * Record that child renews parent, if parent exists, is not revoked
	 * and nothing renewed it yet: 1 if it changed, 0 if not.
	 */
	int (*cert_supersede)(struct ledger_be *be, const char *parent, const char *child);
	/* Revoke serial if unrevoked: 1 changed, 0 not (unknown or already revoked). */
	int (*cert_revoke)(struct ledger_be *be, const char *serial, int reason, int64_t now);
	/* Revoke every unrevoked certificate of id with not_after > now; *n how many. */
	int (*certs_revoke_id)(struct ledger_be *be, const char *spiffe_id, int reason, int64_t now,
	    unsigned *n);
	/* Record id as revoked (kept as it is when already recorded). */
	int (*id_revoke)(struct ledger_be *be, const char *spiffe_id, int reason, int64_t now);
	/* 1 when id is recorded as revoked, 0 when not, < 0 on a store error. */
	int (*id_revoked)(struct ledger_be *be, const char *spiffe_id);
	/* Remove id's revocation: 1 changed, 0 not recorded. */
	int (*id_reinstate)(struct ledger_be *be, const char *spiffe_id);

	int (*cert_count)(struct ledger_be *be, uint64_t *n);
	/*
	 * Call cb (a ledger_cert_cb) for the rows of id, oldest first
	 * (not_before, then insertion); c is valid during the call only.
	 */
	int (*cert_list_id)(struct ledger_be *be, const char *spiffe_id,
	    int (*cb)(const struct ledger_cert *c, void *arg), void *arg);
	/* How many certificates of id are of kind node, and of kind workload. */
	int (*cert_kinds)(struct ledger_be *be, const char *spiffe_id, unsigned *nodes,
	    unsigned *workloads);

	/* Registration entries (struct ledger_entry). Insert: HSM_EEXIST on an id taken. */
	int (*entry_insert)(struct ledger_be *be, const struct ledger_entry *e);
	/* Fetch by id; HSM_ENOENT when unknown. */
	int (*entry_get)(struct ledger_be *be, const char *id, struct ledger_entry *out);
	/* Delete by id: 1 deleted, 0 unknown. */
	int (*entry_delete)(struct ledger_be *be, const char *id);
	/*
	 * Call cb (a ledger_entry_cb) for the entries of spiffe_id (NULL:
	 * all), oldest first (created, then insertion); e valid during the
	 * call only.
	 */
	int (*entry_list)(struct ledger_be *be, const char *spiffe_id,
	    int (*cb)(const struct ledger_entry *e, void *arg), void *arg);
	/* 1 when some entry names id as its node (node, not a pattern), 0 not, < 0 error. */
	int (*entry_names_node)(struct ledger_be *be, const char *id);

	/*
	 * The CA set (struct ledger_ca; chain and links "" for none). Every
	 * change also sets the row's seq to one more than the largest seq.
	 * Insert with gen = the largest gen + 1, written back into c->gen;
	 * HSM_EEXIST on a key_id taken. The store keeps at most one CA active
	 * (a unique index): a second is HSM_EEXIST.
	 */
	int (*ca_insert)(struct ledger_be *be, struct ledger_ca *c);
	/* Call cb for every CA, by gen; c valid during the call only. */
	int (*ca_list)(struct ledger_be *be, int (*cb)(const struct ledger_ca *c, void *arg),
	    void *arg);
	/*
	 * Set key_id's certificate, chain and links if its state's bit is in
	 * from_mask (1 << state); a pending one becomes prepared: 1 changed, 0 not.
	 */
	int (*ca_set_cert)(struct ledger_be *be, const char *key_id, const uint8_t *cert,
	    size_t cert_len, const char *chain, const char *links, unsigned from_mask, int64_t now);
	/* Move key_id from state from to state to: 1 changed, 0 not. */
	int (*ca_move)(struct ledger_be *be, const char *key_id, int from, int to, int64_t now);
	/* The largest seq (0 for an empty set). */
	int (*ca_seq)(struct ledger_be *be, int64_t *seq);
	/*
	 * Certificates with not_after > now, not revoked, whose issuer is
	 * key_id or unknown (NULL): how many, and the largest not_after.
	 */
	int (*certs_outstanding)(struct ledger_be *be, const char *key_id, int64_t now,
	    unsigned *n, int64_t *latest);
	/* Record key_id as the issuer of every certificate that has none. */
	int (*certs_tag_issuer)(struct ledger_be *be, const char *key_id);
	/* The revocation sequence (0 in a new store). */
	int (*revocation_seq)(struct ledger_be *be, uint64_t *seq);
	/* Advance it by one (inside the transaction of the revocation). */
	int (*revocation_bump)(struct ledger_be *be);
	/*
	 * Call cb for every revoked certificate with not_after > now, in the
	 * order of revocation; a non-zero return stops the walk and is returned.
	 */
	int (*revoked_list)(struct ledger_be *be, int64_t now,
	    int (*cb)(const char *serial, int64_t revoked_at, int reason, void *arg), void *arg);
};

/* The backends. */
extern const struct ledger_ops ledger_sqlite_ops;	/* ledger_sqlite.c */
extern const struct ledger_ops ledger_pg_ops;		/* ledger_pg.c */

#endif
