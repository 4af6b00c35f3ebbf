/*
 * ledger_sqlite.c - the SQLite backend of the ledger (ledger_be.h): one
 * file, WAL journal, synchronous=FULL (a consumed token or an issuance
 * survives a power cut), a busy timeout so several processes share it,
 * every statement prepared once with bound parameters.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "err.h"
#include "ledger.h"
#include "ledger_be.h"
#include "log.h"
#include "util.h"

/* How long a writer waits for another process holding the database. */
#define BUSY_MS 5000

/*
 * Schema migrations (run by ledger.c): migrations[i] takes a ledger from
 * version i to i+1. Append only; never edit a released step. ledger_pg.c
 * has the same steps in PostgreSQL's dialect.
 */
static const char *const migrations[LEDGER_SCHEMA_VERSION] = {
	/* 0 -> 1 */
	"CREATE TABLE tokens ("
	"  ref TEXT PRIMARY KEY NOT NULL,"
	"  secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),"
	"  spiffe_id TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  expires INTEGER NOT NULL,"
	"  used_at INTEGER"
	");"
	"CREATE TABLE certs ("
	"  serial TEXT PRIMARY KEY NOT NULL,"
	"  spiffe_id TEXT NOT NULL,"
	"  spki_id TEXT NOT NULL,"
	"  not_before INTEGER NOT NULL,"
	"  not_after INTEGER NOT NULL,"
	"  auth TEXT NOT NULL,"
	"  parent_serial TEXT,"
	"  recorded INTEGER NOT NULL,"
	"  revoked_at INTEGER,"
	"  reason INTEGER,"
	"  der BLOB NOT NULL"
	");"
	"CREATE INDEX certs_by_id ON certs (spiffe_id, not_before);"
	"CREATE INDEX certs_by_parent ON certs (parent_serial);"
	"CREATE TABLE revoked_ids ("
	"  spiffe_id TEXT PRIMARY KEY NOT NULL,"
	"  revoked_at INTEGER NOT NULL,"
	"  reason INTEGER NOT NULL"
	");",
	/*
	 * 1 -> 2: a certificate names its renewal (superseded_by), set only
	 * by a conditional UPDATE in the issuance transaction. A ledger of
	 * version 1 may hold forks (two renewals of one certificate): the
	 * first recorded one counts as the renewal, so the forked parent can
	 * renew no more; each branch's newest certificate still renews.
	 */
	"ALTER TABLE certs ADD COLUMN superseded_by TEXT;"
	"UPDATE certs SET superseded_by = (SELECT c.serial FROM certs AS c"
	"  WHERE c.parent_serial = certs.serial ORDER BY c.rowid LIMIT 1);",
	/*
	 * 2 -> 3: node identities and registration entries. A token and a
	 * certificate have a kind (0 workload, 1 node: every earlier row is a
	 * workload's); a workload certificate a node enrolled names that node
	 * (node_id). An entry names a workload ID, the node (or a pattern of
	 * nodes) that may obtain it, its selectors (one a line), a TTL and
	 * whether a CMP client manages it itself.
	 */
	"ALTER TABLE tokens ADD COLUMN kind INTEGER NOT NULL DEFAULT 0 CHECK (kind IN (0, 1));"
	"ALTER TABLE certs ADD COLUMN kind INTEGER NOT NULL DEFAULT 0 CHECK (kind IN (0, 1));"
	"ALTER TABLE certs ADD COLUMN node_id TEXT;"
	"CREATE TABLE entries ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  spiffe_id TEXT NOT NULL,"
	"  node TEXT NOT NULL,"
	"  node_is_pattern INTEGER NOT NULL,"
	"  selectors TEXT NOT NULL,"
	"  ttl INTEGER NOT NULL,"
	"  self_managed INTEGER NOT NULL,"
	"  created INTEGER NOT NULL"
	");"
	"CREATE INDEX entries_by_id ON entries (spiffe_id);"
	"CREATE INDEX entries_by_node ON entries (node);",
	/*
	 * 3 -> 4: a join token names the certificate it paid for, a
	 * certificate the CMP transaction that asked for it: a retry of that
	 * transaction (a client failing over to another replica) finds it again.
	 */
	"ALTER TABLE tokens ADD COLUMN serial TEXT;"
	"ALTER TABLE certs ADD COLUMN txn TEXT;",
	/*
	 * 4 -> 5: the revocation sequence (one more for every revocation that
	 * changed a row, in its transaction: the CA's CRL number and its hint
	 * to agents derive from it), starting at the revocations already
	 * recorded; and an index for the CRL's list of revoked certificates.
	 */
	"CREATE TABLE revocation_seq ("
	"  one INTEGER PRIMARY KEY NOT NULL CHECK (one = 1),"
	"  seq INTEGER NOT NULL"
	");"
	"INSERT INTO revocation_seq (one, seq) "
	"  SELECT 1, count(*) FROM certs WHERE revoked_at IS NOT NULL;"
	"CREATE INDEX certs_revoked ON certs (revoked_at) WHERE revoked_at IS NOT NULL;",
	/*
	 * 5 -> 6: an entry names the certificate profile of its identity
	 * ("": the CA's default) and, for the 3GPP NF profile, the NF types
	 * (comma-separated) and the NF's FQDN. Every earlier entry takes the
	 * CA's default.
	 */
	"ALTER TABLE entries ADD COLUMN profile TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE entries ADD COLUMN nf_types TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE entries ADD COLUMN fqdn TEXT NOT NULL DEFAULT '';",
	/*
	 * 6 -> 7: the CA set (rotation, a CA under an operator's root). A
	 * certificate names the CA key that signed it (issuer: hex key id;
	 * NULL in rows from before, which the first CA recorded claims). A
	 * CA is a key (key_id), its generation, its state (0 pending, 1
	 * prepared, 2 active, 3 old, 4 retired; at most one active), its
	 * certificate (DER, NULL while pending), the certificates above it
	 * and the cross-certificates published with it (PEM); seq grows with
	 * every change, so a reader polls one number. No index on issuer:
	 * only ca rotate retire and status count by it, and every issuance
	 * would pay for one.
	 */
	"ALTER TABLE certs ADD COLUMN issuer TEXT;"
	"CREATE TABLE cas ("
	"  key_id TEXT PRIMARY KEY NOT NULL,"
	"  gen INTEGER NOT NULL UNIQUE,"
	"  state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 4),"
	"  cert BLOB,"
	"  chain TEXT NOT NULL DEFAULT '',"
	"  links TEXT NOT NULL DEFAULT '',"
	"  created INTEGER NOT NULL,"
	"  changed INTEGER NOT NULL,"
	"  seq INTEGER NOT NULL"
	");"
	"CREATE UNIQUE INDEX cas_one_active ON cas (state) WHERE state = 2;",
};

#define CERT_COLS "serial, spiffe_id, spki_id, not_before, not_after, auth, " \
	"parent_serial, revoked_at, reason, der, superseded_by, kind, node_id, txn, issuer"
#define CA_COLS "gen, key_id, state, cert, chain, links, created, changed"
#define CA_NEXT_SEQ "(SELECT coalesce(max(seq), 0) + 1 FROM cas)"
#define ENTRY_COLS "id, spiffe_id, node, node_is_pattern, selectors, ttl, self_managed, created, " \
	"profile, nf_types, fqdn"

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_TOKEN_ADD,
	S_TOKEN_GET,
	S_TOKEN_USE,
	S_TOKEN_UNUSE,
	S_CERT_ADD,
	S_CERT_GET,
	S_CERT_SUPERSEDE,
	S_CERT_REVOKE,
	S_CERT_REVOKE_ID,
	S_CERT_COUNT,
	S_CERT_LIST,
	S_ID_ADD,
	S_ID_GET,
	S_ID_DEL,
	S_CERT_KINDS,
	S_ENTRY_ADD,
	S_ENTRY_GET,
	S_ENTRY_DEL,
	S_ENTRY_LIST,
	S_ENTRY_LIST_ID,
	S_ENTRY_NODE,
	S_CA_ADD,
	S_CA_GEN,
	S_CA_LIST,
	S_CA_CERT,
	S_CA_MOVE,
	S_CA_SEQ,
	S_CERTS_OUT,
	S_CERTS_TAG,
	S_REV_SEQ,
	S_REV_BUMP,
	S_REV_LIST,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_TOKEN_ADD] = "INSERT INTO tokens (ref, secret_hash, spiffe_id, created, expires, kind) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_TOKEN_GET] = "SELECT secret_hash, spiffe_id, created, expires, used_at, kind, serial "
	    "FROM tokens WHERE ref = ?1",
	[S_TOKEN_USE] = "UPDATE tokens SET used_at = ?2, serial = ?3 "
	    "WHERE ref = ?1 AND used_at IS NULL AND expires > ?2",
	[S_TOKEN_UNUSE] = "UPDATE tokens SET used_at = NULL, serial = NULL "
	    "WHERE ref = ?1 AND used_at = ?2",
	[S_CERT_ADD] = "INSERT INTO certs (serial, spiffe_id, spki_id, not_before, not_after, "
	    "auth, parent_serial, recorded, der, kind, node_id, txn, issuer) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
	[S_CERT_GET] = "SELECT " CERT_COLS " FROM certs WHERE serial = ?1",
	[S_CERT_SUPERSEDE] = "UPDATE certs SET superseded_by = ?2 "
	    "WHERE serial = ?1 AND superseded_by IS NULL AND revoked_at IS NULL",
	[S_CERT_REVOKE] = "UPDATE certs SET revoked_at = ?3, reason = ?2 "
	    "WHERE serial = ?1 AND revoked_at IS NULL",
	[S_CERT_REVOKE_ID] = "UPDATE certs SET revoked_at = ?3, reason = ?2 "
	    "WHERE spiffe_id = ?1 AND revoked_at IS NULL AND not_after > ?3",
	[S_CERT_COUNT] = "SELECT count(*) FROM certs",
	[S_CERT_LIST] = "SELECT " CERT_COLS " FROM certs WHERE spiffe_id = ?1 "
	    "ORDER BY not_before, rowid",
	[S_ID_ADD] = "INSERT INTO revoked_ids (spiffe_id, revoked_at, reason) "
	    "VALUES (?1, ?3, ?2) ON CONFLICT (spiffe_id) DO NOTHING",
	[S_ID_GET] = "SELECT 1 FROM revoked_ids WHERE spiffe_id = ?1",
	[S_ID_DEL] = "DELETE FROM revoked_ids WHERE spiffe_id = ?1",
	[S_CERT_KINDS] = "SELECT coalesce(sum(kind = 1), 0), coalesce(sum(kind = 0), 0) "
	    "FROM certs WHERE spiffe_id = ?1",
	[S_ENTRY_ADD] = "INSERT INTO entries (" ENTRY_COLS ") "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[S_ENTRY_GET] = "SELECT " ENTRY_COLS " FROM entries WHERE id = ?1",
	[S_ENTRY_DEL] = "DELETE FROM entries WHERE id = ?1",
	[S_ENTRY_LIST] = "SELECT " ENTRY_COLS " FROM entries ORDER BY created, rowid",
	[S_ENTRY_LIST_ID] = "SELECT " ENTRY_COLS " FROM entries WHERE spiffe_id = ?1 "
	    "ORDER BY created, rowid",
	[S_ENTRY_NODE] = "SELECT 1 FROM entries WHERE node = ?1 AND node_is_pattern = 0 "
	    "AND self_managed = 0 LIMIT 1",
	[S_CA_ADD] = "INSERT INTO cas (key_id, gen, state, cert, chain, links, created, changed, seq) "
	    "VALUES (?1, (SELECT coalesce(max(gen), 0) + 1 FROM cas), ?2, ?3, ?4, ?5, ?6, ?6, "
	    CA_NEXT_SEQ ")",
	[S_CA_GEN] = "SELECT gen FROM cas WHERE key_id = ?1",
	[S_CA_LIST] = "SELECT " CA_COLS " FROM cas ORDER BY gen",
	[S_CA_CERT] = "UPDATE cas SET cert = ?2, chain = ?3, links = ?4, changed = ?6, "
	    "state = CASE state WHEN 0 THEN 1 ELSE state END, seq = " CA_NEXT_SEQ " "
	    "WHERE key_id = ?1 AND ((1 << state) & ?5) != 0",
	[S_CA_MOVE] = "UPDATE cas SET state = ?3, changed = ?4, seq = " CA_NEXT_SEQ " "
	    "WHERE key_id = ?1 AND state = ?2",
	[S_CA_SEQ] = "SELECT coalesce(max(seq), 0) FROM cas",
	[S_CERTS_OUT] = "SELECT count(*), coalesce(max(not_after), 0) FROM certs "
	    "WHERE (issuer = ?1 OR issuer IS NULL) AND not_after > ?2 AND revoked_at IS NULL",
	[S_CERTS_TAG] = "UPDATE certs SET issuer = ?1 WHERE issuer IS NULL",
	[S_REV_SEQ] = "SELECT seq FROM revocation_seq WHERE one = 1",
	[S_REV_BUMP] = "UPDATE revocation_seq SET seq = seq + 1 WHERE one = 1",
	[S_REV_LIST] = "SELECT serial, revoked_at, reason FROM certs "
	    "WHERE revoked_at IS NOT NULL AND not_after > ?1 ORDER BY revoked_at, rowid",
};

struct ledger_be {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
};

/* Record the connection's last error. */
static int
db_fail(struct ledger_be *be, const char *what)
{
	return hsm_err(HSM_EIO, "ledger: %s: %s", what, sqlite3_errmsg(be->db));
}

/* Make a cached statement ready for the next use. */
static void
release(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Run a statement that returns no rows. */
static int
exec_stmt(struct ledger_be *be, enum stmt_id id, const char *what)
{
	sqlite3_stmt *s = be->stmt[id];
	int rc = sqlite3_step(s);

	release(s);
	return rc == SQLITE_DONE ? 0 : db_fail(be, what);
}

/* Step a bound UPDATE/DELETE: the number of rows it changed (0 or 1 here), or HSM_EIO. */
static int
changed(struct ledger_be *be, sqlite3_stmt *s, int bound, const char *what)
{
	int r;

	if (!bound || sqlite3_step(s) != SQLITE_DONE)
		r = db_fail(be, what);
	else
		r = sqlite3_changes(be->db);
	release(s);
	return r;
}

/* Copy a text column into buf; NULL reads as "". -1 if it does not fit. */
static int
col_text(sqlite3_stmt *s, int col, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	int n = sqlite3_column_bytes(s, col);

	buf[0] = '\0';
	if (t == NULL)
		return 0;
	if (n < 0 || (size_t)n >= size || memchr(t, '\0', (size_t)n) != NULL)
		return -1;
	memcpy(buf, t, (size_t)n);
	buf[n] = '\0';
	return 0;
}

/*
 * Step a bound INSERT: 0, HSM_EEXIST ("ledger: <dup>" when the key is
 * taken) or HSM_EIO. The statement is released.
 */
static int
insert_step(struct ledger_be *be, sqlite3_stmt *s, const char *what, const char *dup)
{
	int rc = sqlite3_step(s), r;

	if (rc == SQLITE_DONE)
		r = 0;
	else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		r = hsm_err(HSM_EEXIST, "ledger: %s", dup);
	else
		r = db_fail(be, what);
	release(s);
	return r;
}

/* Run a query bound to one text arg: 1 when it returns a row, 0 when not, or HSM_EIO. */
static int
row_exists(struct ledger_be *be, enum stmt_id id, const char *arg, const char *what)
{
	sqlite3_stmt *s = be->stmt[id];
	int rc, r;

	if (sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC) != SQLITE_OK)
		rc = SQLITE_ERROR;
	else
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		r = 0;
	else if (rc == SQLITE_ROW)
		r = 1;
	else
		r = db_fail(be, what);
	release(s);
	return r;
}

/* ---- open, schema ---- */

/* The migration transaction: BEGIN IMMEDIATE excludes every other writer. */
static int
sq_migrate_begin(struct ledger_be *be)
{
	return exec_stmt(be, S_BEGIN, "begin");
}

static int
sq_schema_version(struct ledger_be *be, int64_t *version)
{
	sqlite3_stmt *s = NULL;
	int r = 0;

	*version = 0;
	if (sqlite3_exec(be->db, "CREATE TABLE IF NOT EXISTS schema_version "
	    "(version INTEGER NOT NULL)", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(be, "create schema_version");
	if (sqlite3_prepare_v2(be->db, "SELECT coalesce(max(version), 0) FROM schema_version",
	    -1, &s, NULL) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW)
		r = db_fail(be, "read schema version");
	else
		*version = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return r;
}

static int
sq_exec(struct ledger_be *be, const char *sql)
{
	char *msg = NULL;
	int r = 0;

	if (sqlite3_exec(be->db, sql, NULL, NULL, &msg) != SQLITE_OK)
		r = hsm_err(HSM_EIO, "ledger: migrate: %s", msg ? msg : sqlite3_errmsg(be->db));
	sqlite3_free(msg);
	return r;
}

static int
sq_version_add(struct ledger_be *be, int64_t version)
{
	sqlite3_stmt *s = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(be->db, "INSERT INTO schema_version (version) VALUES (?1)", -1,
	    &s, NULL) != SQLITE_OK || sqlite3_bind_int64(s, 1, version) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE)
		r = db_fail(be, "write schema version");
	sqlite3_finalize(s);
	return r;
}

/*
 * Create the file ourselves so it is 0600 whatever the umask (SQLite
 * gives its -wal and -shm files the database file's mode), and so a
 * missing directory reads as such rather than "unable to open".
 */
static int
precreate(const char *path)
{
	int fd, e;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) >= 0) {
		close(fd);
		return 0;
	}
	e = errno;
	if (e == ENOENT)
		return hsm_err(HSM_ENOENT, "ledger: %s: directory does not exist", path);
	return hsm_err(HSM_EIO, "ledger: %s: %s", path, strerror(e));
}

/* Prepare the cached statements from..to-1. */
static int
prepare(struct ledger_be *be, int from, int to)
{
	for (int i = from; i < to; i++) {
		if (sqlite3_prepare_v3(be->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		    &be->stmt[i], NULL) != SQLITE_OK)
			return db_fail(be, "prepare");
	}
	return 0;
}

static void
sq_close(struct ledger_be *be)
{
	if (be == NULL)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(be->stmt[i]);
	if (be->db != NULL && sqlite3_close(be->db) != SQLITE_OK)
		log_err("ledger: close: %s", sqlite3_errmsg(be->db));
	free(be);
}

/* Any location that is no URI: a file path. */
static int
sq_claims(const char *location)
{
	return strstr(location, "://") == NULL;
}

static int
sq_open(const char *path, struct ledger_be **out)
{
	struct ledger_be *be = NULL;
	sqlite3_stmt *s = NULL;
	const unsigned char *mode;
	int r;

	*out = NULL;
	if ((r = precreate(path)) != 0)
		return r;
	if ((be = calloc(1, sizeof(*be))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	/* ledger.c's mutex serialises every use of the connection. */
	if (sqlite3_open_v2(path, &be->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
	    NULL) != SQLITE_OK) {
		r = be->db != NULL ? db_fail(be, path) :
		    hsm_err(HSM_ENOMEM, "ledger: %s: out of memory", path);
		goto out;
	}
	sqlite3_extended_result_codes(be->db, 1);
	if (sqlite3_busy_timeout(be->db, BUSY_MS) != SQLITE_OK) {
		r = db_fail(be, "busy timeout");
		goto out;
	}
	/*
	 * journal_mode answers with the mode in force: insist on WAL. Another
	 * process switching a new file to WAL at the same moment can make it
	 * answer "locked" without the busy handler: try again until BUSY_MS.
	 */
	if (sqlite3_prepare_v2(be->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) != SQLITE_OK) {
		r = db_fail(be, path);
		goto out;
	}
	for (uint64_t until = hsm_now_ms() + BUSY_MS;;) {
		int rc = sqlite3_step(s);

		if (rc == SQLITE_ROW)
			break;
		if ((rc & 0xff) != SQLITE_BUSY || hsm_now_ms() >= until) {
			r = db_fail(be, path);
			goto out;
		}
		sqlite3_reset(s);
		usleep(10000);
	}
	if ((mode = sqlite3_column_text(s, 0)) == NULL ||
	    strcmp((const char *)mode, "wal") != 0) {
		r = hsm_err(HSM_EIO, "ledger: %s: cannot use WAL journal mode (got %s)", path,
		    mode ? (const char *)mode : "nothing");
		goto out;
	}
	sqlite3_finalize(s);
	s = NULL;
	/* A consumed token or an issuance must survive a power cut. */
	if (sqlite3_exec(be->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
	    "PRAGMA trusted_schema = OFF", NULL, NULL, NULL) != SQLITE_OK) {
		r = db_fail(be, "pragmas");
		goto out;
	}
	/* Transaction control now (the migration needs it), the rest once the tables exist. */
	if ((r = prepare(be, S_BEGIN, S_ROLLBACK + 1)) != 0)
		goto out;
	*out = be;
	be = NULL;
	r = 0;
 out:
	sqlite3_finalize(s);
	sq_close(be);
	return r;
}

static int
sq_ready(struct ledger_be *be)
{
	return prepare(be, S_ROLLBACK + 1, S_COUNT);
}

/* ---- transactions ---- */

static int
sq_begin(struct ledger_be *be)
{
	return exec_stmt(be, S_BEGIN, "begin");
}

/* BEGIN IMMEDIATE already excludes every other writer. */
static int
sq_id_lock(struct ledger_be *be, const char *spiffe_id)
{
	return 0;
}

static int
sq_commit(struct ledger_be *be)
{
	return exec_stmt(be, S_COMMIT, "commit");
}

static void
sq_rollback(struct ledger_be *be)
{
	if (!sqlite3_get_autocommit(be->db))
		(void)exec_stmt(be, S_ROLLBACK, "rollback");
}

/* ---- join tokens ---- */

static int
sq_token_insert(struct ledger_be *be, const char *ref, const uint8_t *hash,
    const char *spiffe_id, int64_t created, int64_t expires, int kind)
{
	sqlite3_stmt *s = be->stmt[S_TOKEN_ADD];
	char dup[LEDGER_REF_MAX + 64];
	int r;

	if (sqlite3_bind_text(s, 1, ref, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 2, hash, LEDGER_HASH_LEN, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 3, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 4, created) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 5, expires) != SQLITE_OK ||
	    sqlite3_bind_int(s, 6, kind) != SQLITE_OK) {
		r = db_fail(be, "add token");
		release(s);
		return r;
	}
	snprintf(dup, sizeof(dup), "join token '%s' already exists", ref);
	return insert_step(be, s, "add token", dup);
}

static int
sq_token_get(struct ledger_be *be, const char *ref, struct ledger_token *t)
{
	sqlite3_stmt *s = be->stmt[S_TOKEN_GET];
	int r, rc;

	memset(t, 0, sizeof(*t));
	if (sqlite3_bind_text(s, 1, ref, -1, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(be, "look up token");
		goto out;
	}
	if ((rc = sqlite3_step(s)) == SQLITE_DONE) {
		r = hsm_err(HSM_ENOENT, "join token unknown");
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = db_fail(be, "look up token");
		goto out;
	}
	if (sqlite3_column_bytes(s, 0) != LEDGER_HASH_LEN ||
	    col_text(s, 1, t->spiffe_id, sizeof(t->spiffe_id)) != 0) {
		r = hsm_err(HSM_EIO, "ledger: corrupt join token row");
		goto out;
	}
	memcpy(t->hash, sqlite3_column_blob(s, 0), LEDGER_HASH_LEN);
	t->created = sqlite3_column_int64(s, 2);
	t->expires = sqlite3_column_int64(s, 3);
	if (sqlite3_column_type(s, 4) != SQLITE_NULL) {
		t->used = 1;
		t->used_at = sqlite3_column_int64(s, 4);
	}
	t->kind = sqlite3_column_int(s, 5) == LEDGER_NODE ? LEDGER_NODE : LEDGER_WORKLOAD;
	if (col_text(s, 6, t->serial, sizeof(t->serial)) != 0) {
		r = hsm_err(HSM_EIO, "ledger: corrupt join token row");
		goto out;
	}
	r = 0;
 out:
	release(s);
	return r;
}

static int
sq_token_use(struct ledger_be *be, const char *ref, int64_t now, const char *serial)
{
	sqlite3_stmt *s = be->stmt[S_TOKEN_USE];

	/* The conditional UPDATE is the whole decision: SQLite serialises writers. */
	return changed(be, s, sqlite3_bind_text(s, 1, ref, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int64(s, 2, now) == SQLITE_OK &&
	    (serial != NULL ? sqlite3_bind_text(s, 3, serial, -1, SQLITE_STATIC) :
	    sqlite3_bind_null(s, 3)) == SQLITE_OK, "consume token");
}

static int
sq_token_unuse(struct ledger_be *be, const char *ref, int64_t used_at)
{
	sqlite3_stmt *s = be->stmt[S_TOKEN_UNUSE];

	return changed(be, s, sqlite3_bind_text(s, 1, ref, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int64(s, 2, used_at) == SQLITE_OK, "give back token");
}

/* ---- certificates ---- */

static int
sq_cert_insert(struct ledger_be *be, const struct ledger_cert *c, int64_t recorded)
{
	sqlite3_stmt *s = be->stmt[S_CERT_ADD];
	char dup[LEDGER_SERIAL_MAX + 64];
	int r;

	if (sqlite3_bind_text(s, 1, c->serial, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 2, c->spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 3, c->spki_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 4, c->not_before) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 5, c->not_after) != SQLITE_OK ||
	    sqlite3_bind_text(s, 6, c->auth, -1, SQLITE_STATIC) != SQLITE_OK ||
	    (c->parent_serial[0] != '\0' ?
	    sqlite3_bind_text(s, 7, c->parent_serial, -1, SQLITE_STATIC) :
	    sqlite3_bind_null(s, 7)) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 8, recorded) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 9, c->der, (int)c->der_len, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(s, 10, (int)c->kind) != SQLITE_OK ||
	    (c->node_id[0] != '\0' ?
	    sqlite3_bind_text(s, 11, c->node_id, -1, SQLITE_STATIC) :
	    sqlite3_bind_null(s, 11)) != SQLITE_OK ||
	    (c->txn[0] != '\0' ? sqlite3_bind_text(s, 12, c->txn, -1, SQLITE_STATIC) :
	    sqlite3_bind_null(s, 12)) != SQLITE_OK ||
	    (c->issuer[0] != '\0' ?
	    sqlite3_bind_text(s, 13, c->issuer, -1, SQLITE_STATIC) :
	    sqlite3_bind_null(s, 13)) != SQLITE_OK) {
		r = db_fail(be, "add certificate");
		release(s);
		return r;
	}
	snprintf(dup, sizeof(dup), "certificate serial %s already recorded", c->serial);
	return insert_step(be, s, "add certificate", dup);
}

/*
 * Fill c from a row of CERT_COLS; with copy_der the DER is malloc'd,
 * else c->der points into the statement (valid until the next step).
 */
static int
cert_from_row(sqlite3_stmt *s, struct ledger_cert *c, int copy_der)
{
	const void *der;
	int n;

	if (col_text(s, 0, c->serial, sizeof(c->serial)) != 0 ||
	    col_text(s, 1, c->spiffe_id, sizeof(c->spiffe_id)) != 0 ||
	    col_text(s, 2, c->spki_id, sizeof(c->spki_id)) != 0 ||
	    col_text(s, 5, c->auth, sizeof(c->auth)) != 0 ||
	    col_text(s, 6, c->parent_serial, sizeof(c->parent_serial)) != 0 ||
	    col_text(s, 10, c->superseded_by, sizeof(c->superseded_by)) != 0 ||
	    col_text(s, 12, c->node_id, sizeof(c->node_id)) != 0 ||
	    col_text(s, 13, c->txn, sizeof(c->txn)) != 0 ||
	    col_text(s, 14, c->issuer, sizeof(c->issuer)) != 0)
		return hsm_err(HSM_EIO, "ledger: corrupt certificate row");
	c->kind = sqlite3_column_int(s, 11) == LEDGER_NODE ? LEDGER_NODE : LEDGER_WORKLOAD;
	c->not_before = sqlite3_column_int64(s, 3);
	c->not_after = sqlite3_column_int64(s, 4);
	if (sqlite3_column_type(s, 7) != SQLITE_NULL) {
		c->revoked = 1;
		c->revoked_at = sqlite3_column_int64(s, 7);
		c->reason = sqlite3_column_int(s, 8);
	}
	der = sqlite3_column_blob(s, 9);
	if ((n = sqlite3_column_bytes(s, 9)) <= 0 || der == NULL)
		return hsm_err(HSM_EIO, "ledger: certificate %s has no DER", c->serial);
	if (!copy_der) {
		c->der = (uint8_t *)der;	/* read-only for the callback */
	} else {
		if ((c->der = malloc((size_t)n)) == NULL)
			return hsm_err(HSM_ENOMEM, "ledger: out of memory");
		memcpy(c->der, der, (size_t)n);
	}
	c->der_len = (size_t)n;
	return 0;
}

static int
sq_cert_get(struct ledger_be *be, const char *serial, struct ledger_cert *c)
{
	sqlite3_stmt *s = be->stmt[S_CERT_GET];
	int r, rc;

	memset(c, 0, sizeof(*c));
	if (sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC) != SQLITE_OK)
		r = db_fail(be, "get certificate");
	else if ((rc = sqlite3_step(s)) == SQLITE_DONE)
		r = hsm_err(HSM_ENOENT, "ledger: no certificate with serial %s", serial);
	else if (rc != SQLITE_ROW)
		r = db_fail(be, "get certificate");
	else if ((r = cert_from_row(s, c, 1)) != 0) {
		free(c->der);
		memset(c, 0, sizeof(*c));
	}
	release(s);
	return r;
}

static int
sq_cert_supersede(struct ledger_be *be, const char *parent, const char *child)
{
	sqlite3_stmt *s = be->stmt[S_CERT_SUPERSEDE];

	return changed(be, s, sqlite3_bind_text(s, 1, parent, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(s, 2, child, -1, SQLITE_STATIC) == SQLITE_OK, "record renewal");
}

static int
sq_cert_revoke(struct ledger_be *be, const char *serial, int reason, int64_t now)
{
	sqlite3_stmt *s = be->stmt[S_CERT_REVOKE];

	return changed(be, s, sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int(s, 2, reason) == SQLITE_OK &&
	    sqlite3_bind_int64(s, 3, now) == SQLITE_OK, "revoke certificate");
}

static int
sq_certs_revoke_id(struct ledger_be *be, const char *spiffe_id, int reason, int64_t now,
    unsigned *n)
{
	sqlite3_stmt *s = be->stmt[S_CERT_REVOKE_ID];
	int r;

	*n = 0;
	r = changed(be, s, sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int(s, 2, reason) == SQLITE_OK &&
	    sqlite3_bind_int64(s, 3, now) == SQLITE_OK, "revoke identity");
	if (r < 0)
		return r;
	*n = (unsigned)r;
	return 0;
}

static int
sq_id_revoke(struct ledger_be *be, const char *spiffe_id, int reason, int64_t now)
{
	sqlite3_stmt *s = be->stmt[S_ID_ADD];
	int r;

	r = changed(be, s, sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int(s, 2, reason) == SQLITE_OK &&
	    sqlite3_bind_int64(s, 3, now) == SQLITE_OK, "revoke identity");
	return r < 0 ? r : 0;
}

static int
sq_id_revoked(struct ledger_be *be, const char *spiffe_id)
{
	return row_exists(be, S_ID_GET, spiffe_id, "identity revocation check");
}

static int
sq_id_reinstate(struct ledger_be *be, const char *spiffe_id)
{
	sqlite3_stmt *s = be->stmt[S_ID_DEL];

	return changed(be, s, sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) == SQLITE_OK,
	    "reinstate identity");
}

static int
sq_cert_count(struct ledger_be *be, uint64_t *n)
{
	sqlite3_stmt *s = be->stmt[S_CERT_COUNT];
	int r = 0;

	*n = 0;
	if (sqlite3_step(s) != SQLITE_ROW)
		r = db_fail(be, "count certificates");
	else
		*n = (uint64_t)sqlite3_column_int64(s, 0);
	release(s);
	return r;
}

static int
sq_cert_list_id(struct ledger_be *be, const char *spiffe_id, ledger_cert_cb cb, void *arg)
{
	sqlite3_stmt *s = be->stmt[S_CERT_LIST];
	struct ledger_cert *c;
	int r = 0, rc;

	if ((c = malloc(sizeof(*c))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	if (sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(be, "list certificates");
		goto out;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(c, 0, sizeof(*c));
		if ((r = cert_from_row(s, c, 0)) != 0 || (r = cb(c, arg)) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		r = db_fail(be, "list certificates");
 out:
	release(s);
	free(c);
	return r;
}

static int
sq_cert_kinds(struct ledger_be *be, const char *spiffe_id, unsigned *nodes, unsigned *workloads)
{
	sqlite3_stmt *s = be->stmt[S_CERT_KINDS];
	int r = 0;

	*nodes = *workloads = 0;
	if (sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		r = db_fail(be, "kinds of an identity");
	} else {
		*nodes = (unsigned)sqlite3_column_int64(s, 0);
		*workloads = (unsigned)sqlite3_column_int64(s, 1);
	}
	release(s);
	return r;
}

/* ---- registration entries ---- */

static int
sq_entry_insert(struct ledger_be *be, const struct ledger_entry *e)
{
	sqlite3_stmt *s = be->stmt[S_ENTRY_ADD];
	char dup[LEDGER_ENTRY_ID_LEN + 64];
	int r;

	if (sqlite3_bind_text(s, 1, e->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 2, e->spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 3, e->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(s, 4, e->node_is_pattern != 0) != SQLITE_OK ||
	    sqlite3_bind_text(s, 5, e->selectors, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 6, e->ttl) != SQLITE_OK ||
	    sqlite3_bind_int(s, 7, e->self_managed != 0) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 8, e->created) != SQLITE_OK ||
	    sqlite3_bind_text(s, 9, e->profile, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 10, e->nf_types, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 11, e->fqdn, -1, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(be, "add entry");
		release(s);
		return r;
	}
	snprintf(dup, sizeof(dup), "entry %s already exists", e->id);
	return insert_step(be, s, "add entry", dup);
}

/* Fill e from a row of ENTRY_COLS. */
static int
entry_from_row(sqlite3_stmt *s, struct ledger_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (col_text(s, 0, e->id, sizeof(e->id)) != 0 ||
	    col_text(s, 1, e->spiffe_id, sizeof(e->spiffe_id)) != 0 ||
	    col_text(s, 2, e->node, sizeof(e->node)) != 0 ||
	    col_text(s, 4, e->selectors, sizeof(e->selectors)) != 0 ||
	    col_text(s, 8, e->profile, sizeof(e->profile)) != 0 ||
	    col_text(s, 9, e->nf_types, sizeof(e->nf_types)) != 0 ||
	    col_text(s, 10, e->fqdn, sizeof(e->fqdn)) != 0)
		return hsm_err(HSM_EIO, "ledger: corrupt entry row");
	e->node_is_pattern = sqlite3_column_int(s, 3) != 0;
	e->ttl = sqlite3_column_int64(s, 5);
	e->self_managed = sqlite3_column_int(s, 6) != 0;
	e->created = sqlite3_column_int64(s, 7);
	return 0;
}

static int
sq_entry_get(struct ledger_be *be, const char *id, struct ledger_entry *e)
{
	sqlite3_stmt *s = be->stmt[S_ENTRY_GET];
	int r, rc;

	memset(e, 0, sizeof(*e));
	if (sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
		r = db_fail(be, "get entry");
	else if ((rc = sqlite3_step(s)) == SQLITE_DONE)
		r = hsm_err(HSM_ENOENT, "no registration entry %s", id);
	else if (rc != SQLITE_ROW)
		r = db_fail(be, "get entry");
	else
		r = entry_from_row(s, e);
	release(s);
	return r;
}

static int
sq_entry_delete(struct ledger_be *be, const char *id)
{
	sqlite3_stmt *s = be->stmt[S_ENTRY_DEL];

	return changed(be, s, sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC) == SQLITE_OK,
	    "remove entry");
}

static int
sq_entry_list(struct ledger_be *be, const char *spiffe_id, ledger_entry_cb cb, void *arg)
{
	sqlite3_stmt *s = be->stmt[spiffe_id != NULL ? S_ENTRY_LIST_ID : S_ENTRY_LIST];
	struct ledger_entry *e;
	int r = 0, rc;

	if ((e = malloc(sizeof(*e))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	if (spiffe_id != NULL && sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(be, "list entries");
		goto out;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = entry_from_row(s, e)) != 0 || (r = cb(e, arg)) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		r = db_fail(be, "list entries");
 out:
	release(s);
	free(e);
	return r;
}

static int
sq_entry_names_node(struct ledger_be *be, const char *id)
{
	return row_exists(be, S_ENTRY_NODE, id, "entries naming a node");
}

static int
sq_revocation_seq(struct ledger_be *be, uint64_t *seq)
{
	sqlite3_stmt *s = be->stmt[S_REV_SEQ];
	int r = 0;

	*seq = 0;
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) >= 0)
		*seq = (uint64_t)sqlite3_column_int64(s, 0);
	else
		r = db_fail(be, "read the revocation sequence");
	release(s);
	return r;
}

static int
sq_revocation_bump(struct ledger_be *be)
{
	sqlite3_stmt *s = be->stmt[S_REV_BUMP];
	int r = changed(be, s, 1, "advance the revocation sequence");

	return r == 1 ? 0 : r < 0 ? r : hsm_err(HSM_EIO, "ledger: no revocation sequence row");
}

static int
sq_revoked_list(struct ledger_be *be, int64_t now,
    int (*cb)(const char *serial, int64_t revoked_at, int reason, void *arg), void *arg)
{
	sqlite3_stmt *s = be->stmt[S_REV_LIST];
	char serial[LEDGER_SERIAL_MAX + 1];
	int rc, r = 0;

	if (sqlite3_bind_int64(s, 1, now) != SQLITE_OK) {
		r = db_fail(be, "list revoked certificates");
		goto out;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (col_text(s, 0, serial, sizeof(serial)) != 0) {
			r = hsm_err(HSM_EIO, "ledger: a revoked serial is too long");
			goto out;
		}
		if ((r = cb(serial, sqlite3_column_int64(s, 1), sqlite3_column_int(s, 2), arg)) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		r = db_fail(be, "list revoked certificates");
 out:
	release(s);
	return r;
}


/* ---- the CA set ---- */

static int
sq_ca_insert(struct ledger_be *be, struct ledger_ca *c)
{
	sqlite3_stmt *s = be->stmt[S_CA_ADD];
	char dup[LEDGER_SPKI_ID_LEN + 64];
	int r, rc;

	if (sqlite3_bind_text(s, 1, c->key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(s, 2, (int)c->state) != SQLITE_OK ||
	    (c->cert != NULL ? sqlite3_bind_blob(s, 3, c->cert, (int)c->cert_len, SQLITE_STATIC) :
	    sqlite3_bind_null(s, 3)) != SQLITE_OK ||
	    sqlite3_bind_text(s, 4, c->chain, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 5, c->links, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 6, c->created) != SQLITE_OK) {
		r = db_fail(be, "add CA");
		release(s);
		return r;
	}
	snprintf(dup, sizeof(dup), "CA key %.16s... already recorded (or a second active CA)",
	    c->key_id);
	if ((r = insert_step(be, s, "add CA", dup)) != 0)
		return r;
	s = be->stmt[S_CA_GEN];
	if (sqlite3_bind_text(s, 1, c->key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    (rc = sqlite3_step(s)) != SQLITE_ROW)
		r = db_fail(be, "read CA generation");
	else
		c->gen = sqlite3_column_int(s, 0);
	release(s);
	return r;
}

static int
sq_ca_list(struct ledger_be *be, int (*cb)(const struct ledger_ca *c, void *arg), void *arg)
{
	sqlite3_stmt *s = be->stmt[S_CA_LIST];
	struct ledger_ca c;
	char kid[LEDGER_SPKI_ID_LEN + 1];
	int r = 0, rc, n;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&c, 0, sizeof(c));
		c.gen = sqlite3_column_int(s, 0);
		if (col_text(s, 1, kid, sizeof(kid)) != 0) {
			r = hsm_err(HSM_EIO, "ledger: corrupt CA row");
			goto out;
		}
		memcpy(c.key_id, kid, sizeof(kid));
		c.state = (enum ledger_ca_state)sqlite3_column_int(s, 2);
		if (sqlite3_column_type(s, 3) != SQLITE_NULL) {
			c.cert = sqlite3_column_blob(s, 3);
			if ((n = sqlite3_column_bytes(s, 3)) <= 0 || c.cert == NULL) {
				r = hsm_err(HSM_EIO, "ledger: CA %d has an empty certificate", c.gen);
				goto out;
			}
			c.cert_len = (size_t)n;
		}
		c.chain = (const char *)sqlite3_column_text(s, 4);
		c.links = (const char *)sqlite3_column_text(s, 5);
		if (c.chain == NULL)
			c.chain = "";
		if (c.links == NULL)
			c.links = "";
		c.created = sqlite3_column_int64(s, 6);
		c.changed = sqlite3_column_int64(s, 7);
		if ((r = cb(&c, arg)) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		r = db_fail(be, "list CAs");
 out:
	release(s);
	return r;
}

static int
sq_ca_set_cert(struct ledger_be *be, const char *key_id, const uint8_t *cert, size_t cert_len,
    const char *chain, const char *links, unsigned from_mask, int64_t now)
{
	sqlite3_stmt *s = be->stmt[S_CA_CERT];

	return changed(be, s, sqlite3_bind_text(s, 1, key_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_blob(s, 2, cert, (int)cert_len, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(s, 3, chain, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(s, 4, links, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int(s, 5, (int)from_mask) == SQLITE_OK &&
	    sqlite3_bind_int64(s, 6, now) == SQLITE_OK, "install CA certificate");
}

static int
sq_ca_move(struct ledger_be *be, const char *key_id, int from, int to, int64_t now)
{
	sqlite3_stmt *s = be->stmt[S_CA_MOVE];
	int r;

	r = changed(be, s, sqlite3_bind_text(s, 1, key_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int(s, 2, from) == SQLITE_OK && sqlite3_bind_int(s, 3, to) == SQLITE_OK &&
	    sqlite3_bind_int64(s, 4, now) == SQLITE_OK, "change CA state");
	return r;
}

static int
sq_ca_seq(struct ledger_be *be, int64_t *seq)
{
	sqlite3_stmt *s = be->stmt[S_CA_SEQ];
	int r = 0;

	*seq = 0;
	if (sqlite3_step(s) != SQLITE_ROW)
		r = db_fail(be, "read CA sequence");
	else
		*seq = sqlite3_column_int64(s, 0);
	release(s);
	return r;
}

static int
sq_certs_outstanding(struct ledger_be *be, const char *key_id, int64_t now, unsigned *n,
    int64_t *latest)
{
	sqlite3_stmt *s = be->stmt[S_CERTS_OUT];
	int r = 0;

	*n = 0;
	*latest = 0;
	if (sqlite3_bind_text(s, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, now) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
		r = db_fail(be, "count outstanding certificates");
	} else {
		*n = (unsigned)sqlite3_column_int64(s, 0);
		*latest = sqlite3_column_int64(s, 1);
	}
	release(s);
	return r;
}

static int
sq_certs_tag_issuer(struct ledger_be *be, const char *key_id)
{
	sqlite3_stmt *s = be->stmt[S_CERTS_TAG];
	int r;

	r = changed(be, s, sqlite3_bind_text(s, 1, key_id, -1, SQLITE_STATIC) == SQLITE_OK,
	    "record the issuer of earlier certificates");
	return r < 0 ? r : 0;
}

const struct ledger_ops ledger_sqlite_ops = {
	.name = "sqlite",
	.claims = sq_claims,
	.open = sq_open,
	.close = sq_close,
	.migrations = migrations,
	.migrate_begin = sq_migrate_begin,
	.schema_version = sq_schema_version,
	.exec = sq_exec,
	.version_add = sq_version_add,
	.ready = sq_ready,
	.begin = sq_begin,
	.id_lock = sq_id_lock,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.token_insert = sq_token_insert,
	.token_get = sq_token_get,
	.token_use = sq_token_use,
	.token_unuse = sq_token_unuse,
	.cert_insert = sq_cert_insert,
	.cert_get = sq_cert_get,
	.cert_supersede = sq_cert_supersede,
	.cert_revoke = sq_cert_revoke,
	.certs_revoke_id = sq_certs_revoke_id,
	.id_revoke = sq_id_revoke,
	.id_revoked = sq_id_revoked,
	.id_reinstate = sq_id_reinstate,
	.cert_count = sq_cert_count,
	.cert_list_id = sq_cert_list_id,
	.cert_kinds = sq_cert_kinds,
	.entry_insert = sq_entry_insert,
	.entry_get = sq_entry_get,
	.entry_delete = sq_entry_delete,
	.entry_list = sq_entry_list,
	.entry_names_node = sq_entry_names_node,
	.ca_insert = sq_ca_insert,
	.ca_list = sq_ca_list,
	.ca_set_cert = sq_ca_set_cert,
	.ca_move = sq_ca_move,
	.ca_seq = sq_ca_seq,
	.certs_outstanding = sq_certs_outstanding,
	.certs_tag_issuer = sq_certs_tag_issuer,
	.revocation_seq = sq_revocation_seq,
	.revocation_bump = sq_revocation_bump,
	.revoked_list = sq_revoked_list,
};
