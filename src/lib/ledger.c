/* ledger.c - the CA's SQLite ledger (see ledger.h). */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "err.h"
#include "ledger.h"
#include "log.h"
#include "spiffe.h"

/* How long a writer waits for another process holding the database. */
#define LEDGER_BUSY_MS 5000

/*
 * Schema migrations: migrations[i] takes a ledger from version i to i+1.
 * Append only; never edit a released step.
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
};

#define CERT_COLS "serial, spiffe_id, spki_id, not_before, not_after, auth, " \
	"parent_serial, revoked_at, reason, der"

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
	S_CERT_REVOKE,
	S_CERT_REVOKE_ID,
	S_CERT_COUNT,
	S_CERT_LIST,
	S_ID_ADD,
	S_ID_GET,
	S_ID_DEL,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_TOKEN_ADD] = "INSERT INTO tokens (ref, secret_hash, spiffe_id, created, expires) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_TOKEN_GET] = "SELECT secret_hash, spiffe_id, created, expires, used_at "
	    "FROM tokens WHERE ref = ?1",
	[S_TOKEN_USE] = "UPDATE tokens SET used_at = ?2 "
	    "WHERE ref = ?1 AND used_at IS NULL AND expires > ?2",
	/* Give back a token whose consumption (at ?2) led to no certificate. */
	[S_TOKEN_UNUSE] = "UPDATE tokens SET used_at = NULL WHERE ref = ?1 AND used_at = ?2",
	[S_CERT_ADD] = "INSERT INTO certs (serial, spiffe_id, spki_id, not_before, not_after, "
	    "auth, parent_serial, recorded, der) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[S_CERT_GET] = "SELECT " CERT_COLS " FROM certs WHERE serial = ?1",
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
};

struct ledger {
	pthread_mutex_t mu;	/* guards db, stmt and each statement's state */
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
};

/* Record the connection's last error; call with the lock held. */
static int
db_fail(struct ledger *lg, const char *what)
{
	return hsm_err(HSM_EIO, "ledger: %s: %s", what, sqlite3_errmsg(lg->db));
}

/*
 * The mutex is error-checking: a callback that calls back into the
 * ledger gets HSM_EBUSY instead of a deadlock.
 */
static int
lock(struct ledger *lg)
{
	int e;

	if (lg == NULL)
		return hsm_err(HSM_EINVAL, "ledger: not open");
	if ((e = pthread_mutex_lock(&lg->mu)) == EDEADLK)
		return hsm_err(HSM_EBUSY, "ledger: re-entered from a callback");
	if (e != 0)
		return hsm_err(HSM_EIO, "ledger: lock: %s", strerror(e));
	return 0;
}

static void
unlock(struct ledger *lg)
{
	pthread_mutex_unlock(&lg->mu);
}

/* Make a cached statement ready for the next use. */
static void
release(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Run a statement that returns no rows; lock held. */
static int
exec_stmt(struct ledger *lg, enum stmt_id id, const char *what)
{
	sqlite3_stmt *s = lg->stmt[id];
	int rc = sqlite3_step(s);

	release(s);
	return rc == SQLITE_DONE ? 0 : db_fail(lg, what);
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
 * Copy hex text in into out (size bytes) in lower case, requiring
 * minlen..maxlen hex digits. 0 or -1.
 */
static int
norm_hex(const char *in, size_t minlen, size_t maxlen, char *out, size_t size)
{
	size_t i, n;

	if (in == NULL || (n = strnlen(in, maxlen + 1)) < minlen || n > maxlen || n >= size)
		return -1;
	for (i = 0; i < n; i++) {
		char c = in[i];

		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -1;
		out[i] = c;
	}
	out[n] = '\0';
	return 0;
}

/*
 * A serial number in its one stored spelling: lower-case hex without
 * leading zeros, so "0A1b" (as openssl x509 -serial prints it) and "a1b"
 * name the same certificate.
 */
static int
norm_serial(const char *in, char *out, size_t size)
{
	if (in == NULL)
		return -1;
	while (in[0] == '0' && in[1] != '\0')
		in++;
	return norm_hex(in, 1, LEDGER_SERIAL_MAX, out, size);
}

static int
check_id(const char *id)
{
	struct spiffe_id sid;

	if (id == NULL)
		return hsm_err(HSM_EINVAL, "ledger: missing SPIFFE ID");
	return spiffe_id_parse(id, &sid);
}

static int
check_reason(int reason)
{
	if (reason < 0 || reason > LEDGER_REASON_MAX || reason == 7)
		return hsm_err(HSM_EINVAL, "ledger: revocation reason %d is not a CRLReason",
		    reason);
	return 0;
}

/* Schema: create or migrate inside one write transaction. */
static int
migrate(struct ledger *lg)
{
	sqlite3_stmt *s = NULL;
	char *msg = NULL;
	int64_t version;
	int r;

	if ((r = exec_stmt(lg, S_BEGIN, "begin")) != 0)
		return r;
	if (sqlite3_exec(lg->db, "CREATE TABLE IF NOT EXISTS schema_version "
	    "(version INTEGER NOT NULL)", NULL, NULL, NULL) != SQLITE_OK) {
		r = db_fail(lg, "create schema_version");
		goto out;
	}
	if (sqlite3_prepare_v2(lg->db, "SELECT coalesce(max(version), 0) FROM schema_version",
	    -1, &s, NULL) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
		r = db_fail(lg, "read schema version");
		goto out;
	}
	version = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	s = NULL;
	if (version < 0 || version > LEDGER_SCHEMA_VERSION) {
		r = hsm_err(HSM_EIO, "ledger: schema version %lld is newer than this "
		    "program's (%d)", (long long)version, LEDGER_SCHEMA_VERSION);
		goto out;
	}
	if (version == LEDGER_SCHEMA_VERSION) {
		r = exec_stmt(lg, S_COMMIT, "commit");
		goto out;
	}
	for (; version < LEDGER_SCHEMA_VERSION; version++) {
		if (sqlite3_exec(lg->db, migrations[version], NULL, NULL, &msg) != SQLITE_OK) {
			r = hsm_err(HSM_EIO, "ledger: migrate to schema %lld: %s",
			    (long long)version + 1, msg ? msg : "unknown error");
			goto out;
		}
	}
	if (sqlite3_exec(lg->db, "DELETE FROM schema_version", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(lg->db, "INSERT INTO schema_version (version) VALUES (?1)", -1,
	    &s, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 1, LEDGER_SCHEMA_VERSION) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE) {
		r = db_fail(lg, "write schema version");
		goto out;
	}
	r = exec_stmt(lg, S_COMMIT, "commit");
 out:
	sqlite3_free(msg);
	sqlite3_finalize(s);
	if (r != 0 && !sqlite3_get_autocommit(lg->db))
		(void)sqlite3_exec(lg->db, "ROLLBACK", NULL, NULL, NULL);
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
prepare(struct ledger *lg, int from, int to)
{
	int i;

	for (i = from; i < to; i++) {
		if (sqlite3_prepare_v3(lg->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		    &lg->stmt[i], NULL) != SQLITE_OK)
			return db_fail(lg, "prepare");
	}
	return 0;
}

int
ledger_open(const char *path, struct ledger **out)
{
	struct ledger *lg = NULL;
	sqlite3_stmt *s = NULL;
	pthread_mutexattr_t ma;
	const unsigned char *mode;
	int r, i, have_mu = 0;

	*out = NULL;
	if (path == NULL || *path == '\0')
		return hsm_err(HSM_EINVAL, "ledger: no database path");
	if ((r = precreate(path)) != 0)
		return r;
	if ((lg = calloc(1, sizeof(*lg))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	if (pthread_mutexattr_init(&ma) != 0) {
		r = hsm_err(HSM_ENOMEM, "ledger: mutex attributes");
		goto out;
	}
	(void)pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
	have_mu = pthread_mutex_init(&lg->mu, &ma) == 0;
	pthread_mutexattr_destroy(&ma);
	if (!have_mu) {
		r = hsm_err(HSM_ENOMEM, "ledger: mutex");
		goto out;
	}
	/* Our mutex serialises every use of the connection. */
	if (sqlite3_open_v2(path, &lg->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
	    NULL) != SQLITE_OK) {
		r = lg->db != NULL ? db_fail(lg, path) :
		    hsm_err(HSM_ENOMEM, "ledger: %s: out of memory", path);
		goto out;
	}
	sqlite3_extended_result_codes(lg->db, 1);
	if (sqlite3_busy_timeout(lg->db, LEDGER_BUSY_MS) != SQLITE_OK) {
		r = db_fail(lg, "busy timeout");
		goto out;
	}
	/* journal_mode answers with the mode in force: insist on WAL. */
	if (sqlite3_prepare_v2(lg->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		r = db_fail(lg, path);
		goto out;
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
	if (sqlite3_exec(lg->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
	    "PRAGMA trusted_schema = OFF", NULL, NULL, NULL) != SQLITE_OK) {
		r = db_fail(lg, "pragmas");
		goto out;
	}
	/* Transaction control first: the migration needs it, tables not yet. */
	if ((r = prepare(lg, S_BEGIN, S_ROLLBACK + 1)) != 0 || (r = migrate(lg)) != 0 ||
	    (r = prepare(lg, S_ROLLBACK + 1, S_COUNT)) != 0)
		goto out;
	*out = lg;
	lg = NULL;
	r = 0;
 out:
	sqlite3_finalize(s);
	if (lg != NULL) {
		for (i = 0; i < S_COUNT; i++)
			sqlite3_finalize(lg->stmt[i]);
		sqlite3_close(lg->db);
		if (have_mu)
			pthread_mutex_destroy(&lg->mu);
		free(lg);
	}
	return r;
}

void
ledger_close(struct ledger *lg)
{
	int i;

	if (lg == NULL)
		return;
	for (i = 0; i < S_COUNT; i++)
		sqlite3_finalize(lg->stmt[i]);
	if (sqlite3_close(lg->db) != SQLITE_OK)
		log_err("ledger: close: %s", sqlite3_errmsg(lg->db));
	pthread_mutex_destroy(&lg->mu);
	free(lg);
}

/* A reference a caller may create: printable ASCII without spaces. */
static int
valid_ref(const char *ref)
{
	size_t i, n;

	if (ref == NULL || (n = strnlen(ref, LEDGER_REF_MAX + 1)) == 0 || n > LEDGER_REF_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (ref[i] < 0x21 || ref[i] > 0x7e)
			return 0;
	return 1;
}

int
ledger_token_add(struct ledger *lg, const char *ref,
    const uint8_t secret_hash[LEDGER_HASH_LEN], const char *spiffe_id, int64_t expires)
{
	sqlite3_stmt *s;
	int r, rc;

	if (!valid_ref(ref))
		return hsm_err(HSM_EINVAL, "ledger: join token reference must be 1..%d "
		    "printable characters", LEDGER_REF_MAX);
	if (secret_hash == NULL)
		return hsm_err(HSM_EINVAL, "ledger: missing join token hash");
	if ((r = check_id(spiffe_id)) != 0)
		return r;
	if ((r = lock(lg)) != 0)
		return r;
	s = lg->stmt[S_TOKEN_ADD];
	if (sqlite3_bind_text(s, 1, ref, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 2, secret_hash, LEDGER_HASH_LEN, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 3, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 4, (int64_t)time(NULL)) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 5, expires) != SQLITE_OK) {
		r = db_fail(lg, "add token");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		r = 0;
	else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		r = hsm_err(HSM_EEXIST, "ledger: join token '%s' already exists", ref);
	else
		r = db_fail(lg, "add token");
 out:
	release(s);
	unlock(lg);
	return r;
}

int
ledger_token_lookup(struct ledger *lg, const char *ref, struct ledger_token *out)
{
	struct ledger_token t;
	sqlite3_stmt *s;
	int r, rc;

	memset(out, 0, sizeof(*out));
	memset(&t, 0, sizeof(t));
	/* ref may come from a peer: never echo it. */
	if (ref == NULL || strnlen(ref, LEDGER_REF_MAX + 1) > LEDGER_REF_MAX)
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = lock(lg)) != 0)
		return r;
	s = lg->stmt[S_TOKEN_GET];
	if (sqlite3_bind_text(s, 1, ref, -1, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(lg, "look up token");
		goto out;
	}
	if ((rc = sqlite3_step(s)) == SQLITE_DONE) {
		r = hsm_err(HSM_ENOENT, "join token unknown");
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = db_fail(lg, "look up token");
		goto out;
	}
	if (sqlite3_column_bytes(s, 0) != LEDGER_HASH_LEN ||
	    col_text(s, 1, t.spiffe_id, sizeof(t.spiffe_id)) != 0) {
		r = hsm_err(HSM_EIO, "ledger: corrupt join token row");
		goto out;
	}
	memcpy(t.hash, sqlite3_column_blob(s, 0), LEDGER_HASH_LEN);
	t.created = sqlite3_column_int64(s, 2);
	t.expires = sqlite3_column_int64(s, 3);
	if (sqlite3_column_type(s, 4) != SQLITE_NULL) {
		t.used = 1;
		t.used_at = sqlite3_column_int64(s, 4);
	}
	*out = t;
	r = 0;
 out:
	release(s);
	unlock(lg);
	return r;
}

int
ledger_token_consume(struct ledger *lg, const char *ref, int64_t now)
{
	sqlite3_stmt *s;
	int r, rc;

	if (ref == NULL || strnlen(ref, LEDGER_REF_MAX + 1) > LEDGER_REF_MAX)
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = lock(lg)) != 0)
		return r;
	/*
	 * The conditional UPDATE is the whole decision: SQLite serialises
	 * writers (across processes too), so only one caller changes the row.
	 */
	s = lg->stmt[S_TOKEN_USE];
	if (sqlite3_bind_text(s, 1, ref, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, now) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE) {
		r = db_fail(lg, "consume token");
		release(s);
		goto out;
	}
	release(s);
	if (sqlite3_changes(lg->db) == 1) {
		r = 0;
		goto out;
	}
	/* Refused: say why. */
	s = lg->stmt[S_TOKEN_GET];
	if (sqlite3_bind_text(s, 1, ref, -1, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(lg, "look up token");
	} else if ((rc = sqlite3_step(s)) == SQLITE_DONE) {
		r = hsm_err(HSM_ENOENT, "join token unknown");
	} else if (rc != SQLITE_ROW) {
		r = db_fail(lg, "look up token");
	} else if (sqlite3_column_type(s, 4) != SQLITE_NULL) {
		r = hsm_err(HSM_EPOLICY, "join token already used");
	} else {
		r = hsm_err(HSM_EPOLICY, "join token expired");
	}
	release(s);
 out:
	unlock(lg);
	return r;
}

int
ledger_token_unconsume(struct ledger *lg, const char *ref, int64_t used_at)
{
	sqlite3_stmt *s;
	int r;

	if (ref == NULL || strnlen(ref, LEDGER_REF_MAX + 1) > LEDGER_REF_MAX)
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = lock(lg)) != 0)
		return r;
	s = lg->stmt[S_TOKEN_UNUSE];
	if (sqlite3_bind_text(s, 1, ref, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, used_at) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE)
		r = db_fail(lg, "give back token");
	else if (sqlite3_changes(lg->db) != 1)
		r = hsm_err(HSM_ENOENT, "join token not consumed at that time");
	release(s);
	unlock(lg);
	return r;
}

int
ledger_cert_add(struct ledger *lg, const struct ledger_cert *c)
{
	char serial[LEDGER_SERIAL_MAX + 1], parent[LEDGER_SERIAL_MAX + 1];
	char spki[LEDGER_SPKI_ID_LEN + 1];
	sqlite3_stmt *s;
	size_t alen;
	int r, rc, has_parent;

	if (c == NULL)
		return hsm_err(HSM_EINVAL, "ledger: no certificate");
	if (norm_serial(c->serial, serial, sizeof(serial)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: certificate serial must be 1..%d hex digits",
		    LEDGER_SERIAL_MAX);
	has_parent = c->parent_serial[0] != '\0';
	if (has_parent && norm_serial(c->parent_serial, parent, sizeof(parent)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: parent serial must be 1..%d hex digits",
		    LEDGER_SERIAL_MAX);
	if (norm_hex(c->spki_id, LEDGER_SPKI_ID_LEN, LEDGER_SPKI_ID_LEN, spki, sizeof(spki)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: key id must be %d hex digits",
		    LEDGER_SPKI_ID_LEN);
	if (strnlen(c->spiffe_id, sizeof(c->spiffe_id)) == sizeof(c->spiffe_id))
		return hsm_err(HSM_EINVAL, "ledger: SPIFFE ID too long");
	if ((r = check_id(c->spiffe_id)) != 0)
		return r;
	if ((alen = strnlen(c->auth, sizeof(c->auth))) == 0 || alen == sizeof(c->auth))
		return hsm_err(HSM_EINVAL, "ledger: certificate authorisation must be 1..%d bytes",
		    LEDGER_AUTH_MAX);
	if (c->not_after < c->not_before)
		return hsm_err(HSM_EINVAL, "ledger: certificate expires before it starts");
	if (c->der == NULL || c->der_len == 0 || c->der_len > INT32_MAX)
		return hsm_err(HSM_EINVAL, "ledger: missing certificate DER");
	if ((r = lock(lg)) != 0)
		return r;
	s = lg->stmt[S_CERT_ADD];
	if (sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 2, c->spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 3, spki, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 4, c->not_before) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 5, c->not_after) != SQLITE_OK ||
	    sqlite3_bind_text(s, 6, c->auth, (int)alen, SQLITE_STATIC) != SQLITE_OK ||
	    (has_parent ? sqlite3_bind_text(s, 7, parent, -1, SQLITE_STATIC) :
	    sqlite3_bind_null(s, 7)) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 8, (int64_t)time(NULL)) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 9, c->der, (int)c->der_len, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(lg, "add certificate");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		r = 0;
	else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		r = hsm_err(HSM_EEXIST, "ledger: certificate serial %s already recorded", serial);
	else
		r = db_fail(lg, "add certificate");
 out:
	release(s);
	unlock(lg);
	return r;
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
	    col_text(s, 6, c->parent_serial, sizeof(c->parent_serial)) != 0)
		return hsm_err(HSM_EIO, "ledger: corrupt certificate row");
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

int
ledger_cert_get(struct ledger *lg, const char *serial, struct ledger_cert *out)
{
	char hex[LEDGER_SERIAL_MAX + 1];
	struct ledger_cert *c = NULL;
	sqlite3_stmt *s;
	int r, rc;

	memset(out, 0, sizeof(*out));
	if (norm_serial(serial, hex, sizeof(hex)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: certificate serial must be 1..%d hex digits",
		    LEDGER_SERIAL_MAX);
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	if ((r = lock(lg)) != 0) {
		free(c);
		return r;
	}
	s = lg->stmt[S_CERT_GET];
	if (sqlite3_bind_text(s, 1, hex, -1, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(lg, "get certificate");
	} else if ((rc = sqlite3_step(s)) == SQLITE_DONE) {
		r = hsm_err(HSM_ENOENT, "ledger: no certificate with serial %s", hex);
	} else if (rc != SQLITE_ROW) {
		r = db_fail(lg, "get certificate");
	} else if ((r = cert_from_row(s, c, 1)) == 0) {
		*out = *c;
		c->der = NULL;	/* now owned by *out */
	}
	release(s);
	unlock(lg);
	ledger_cert_clear(c);
	free(c);
	return r;
}

void
ledger_cert_clear(struct ledger_cert *c)
{
	if (c == NULL)
		return;
	free(c->der);
	memset(c, 0, sizeof(*c));
}

int
ledger_cert_revoke(struct ledger *lg, const char *serial, int reason, int64_t now)
{
	char hex[LEDGER_SERIAL_MAX + 1];
	sqlite3_stmt *s;
	int r, rc;

	if (norm_serial(serial, hex, sizeof(hex)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: certificate serial must be 1..%d hex digits",
		    LEDGER_SERIAL_MAX);
	if ((r = check_reason(reason)) != 0)
		return r;
	if ((r = lock(lg)) != 0)
		return r;
	s = lg->stmt[S_CERT_REVOKE];
	if (sqlite3_bind_text(s, 1, hex, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(s, 2, reason) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 3, now) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE) {
		r = db_fail(lg, "revoke certificate");
		release(s);
		goto out;
	}
	release(s);
	if (sqlite3_changes(lg->db) == 1) {
		r = 0;
		goto out;
	}
	/* Nothing changed: unknown, or already revoked (fine). */
	s = lg->stmt[S_CERT_GET];
	if (sqlite3_bind_text(s, 1, hex, -1, SQLITE_STATIC) != SQLITE_OK)
		r = db_fail(lg, "get certificate");
	else if ((rc = sqlite3_step(s)) == SQLITE_DONE)
		r = hsm_err(HSM_ENOENT, "ledger: no certificate with serial %s", hex);
	else if (rc != SQLITE_ROW)
		r = db_fail(lg, "get certificate");
	else
		r = 0;
	release(s);
 out:
	unlock(lg);
	return r;
}

int
ledger_revoke_id(struct ledger *lg, const char *spiffe_id, int reason, int64_t now,
    unsigned *count)
{
	sqlite3_stmt *s;
	unsigned n = 0;
	int r;

	if (count != NULL)
		*count = 0;
	if ((r = check_id(spiffe_id)) != 0 || (r = check_reason(reason)) != 0)
		return r;
	if ((r = lock(lg)) != 0)
		return r;
	if ((r = exec_stmt(lg, S_BEGIN, "begin")) != 0)
		goto out;
	s = lg->stmt[S_CERT_REVOKE_ID];
	if (sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(s, 2, reason) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 3, now) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE) {
		r = db_fail(lg, "revoke identity");
		release(s);
		goto out;
	}
	release(s);
	n = (unsigned)sqlite3_changes(lg->db);
	s = lg->stmt[S_ID_ADD];
	if (sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(s, 2, reason) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 3, now) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE) {
		r = db_fail(lg, "revoke identity");
		release(s);
		goto out;
	}
	release(s);
	if ((r = exec_stmt(lg, S_COMMIT, "commit")) != 0)
		goto out;
	if (count != NULL)
		*count = n;
 out:
	if (r != 0 && !sqlite3_get_autocommit(lg->db))
		(void)exec_stmt(lg, S_ROLLBACK, "rollback");
	unlock(lg);
	return r;
}

int
ledger_id_revoked(struct ledger *lg, const char *spiffe_id)
{
	sqlite3_stmt *s;
	int rc, revoked;

	if (spiffe_id == NULL)
		return 1;
	if (lock(lg) != 0) {
		log_err("%s", hsm_err_detail());
		return 1;
	}
	s = lg->stmt[S_ID_GET];
	if (sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK)
		rc = SQLITE_ERROR;
	else
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		revoked = 0;
	} else {
		revoked = 1;
		if (rc != SQLITE_ROW)
			log_err("ledger: identity revocation check failed (treated as revoked): %s",
			    sqlite3_errmsg(lg->db));
	}
	release(s);
	unlock(lg);
	return revoked;
}

int
ledger_id_reinstate(struct ledger *lg, const char *spiffe_id)
{
	sqlite3_stmt *s;
	int r;

	if (spiffe_id == NULL)
		return hsm_err(HSM_EINVAL, "ledger: missing SPIFFE ID");
	if ((r = lock(lg)) != 0)
		return r;
	s = lg->stmt[S_ID_DEL];
	if (sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE)
		r = db_fail(lg, "reinstate identity");
	else if (sqlite3_changes(lg->db) != 1)
		r = hsm_err(HSM_ENOENT, "ledger: identity is not revoked");
	release(s);
	unlock(lg);
	return r;
}

int
ledger_cert_count(struct ledger *lg, uint64_t *n)
{
	sqlite3_stmt *s;
	int r;

	*n = 0;
	if ((r = lock(lg)) != 0)
		return r;
	s = lg->stmt[S_CERT_COUNT];
	if (sqlite3_step(s) != SQLITE_ROW)
		r = db_fail(lg, "count certificates");
	else
		*n = (uint64_t)sqlite3_column_int64(s, 0);
	release(s);
	unlock(lg);
	return r;
}

int
ledger_cert_list_id(struct ledger *lg, const char *spiffe_id, ledger_cert_cb cb, void *arg)
{
	struct ledger_cert *c;
	sqlite3_stmt *s;
	int r, rc;

	if (spiffe_id == NULL || cb == NULL)
		return hsm_err(HSM_EINVAL, "ledger: list: missing argument");
	if ((c = malloc(sizeof(*c))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	if ((r = lock(lg)) != 0) {
		free(c);
		return r;
	}
	s = lg->stmt[S_CERT_LIST];
	if (sqlite3_bind_text(s, 1, spiffe_id, -1, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(lg, "list certificates");
		goto out;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(c, 0, sizeof(*c));
		if ((r = cert_from_row(s, c, 0)) != 0 || (r = cb(c, arg)) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		r = db_fail(lg, "list certificates");
 out:
	release(s);
	unlock(lg);
	free(c);
	return r;
}
