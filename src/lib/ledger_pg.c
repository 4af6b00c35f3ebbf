/*
 * ledger_pg.c - the PostgreSQL backend of the ledger (ledger_be.h), with
 * libpq, for CA replicas that share one database.
 *
 * One connection per struct ledger. Every statement is prepared once per
 * connection and sent with binary parameters and binary results (no
 * quoting, no text conversions of integers or DER). Everything runs at
 * READ COMMITTED with explicit locks (ledger_be.h): a conditional UPDATE
 * waits for a concurrent writer of its row and then re-checks its WHERE
 * clause on the committed row, so of two racing callers exactly one
 * changes it; id_lock() is a transaction-level advisory lock on a 64-bit
 * hash of the SPIFFE ID, and since every statement at READ COMMITTED
 * takes a new snapshot, what runs after the lock sees what the previous
 * holder committed. (SERIALIZABLE would order the same transactions, but
 * under load an identity's revocation could lose every retry to the
 * enrollments it conflicts with; a lock waits its turn.) A deadlock
 * (SQLSTATE 40P01) or serialization failure (40001) is HSM_EAGAIN: ledger.c
 * runs the transaction again.
 *
 * Nothing waits forever: every exchange with the server has a deadline
 * (PG_OP_TIMEOUT_MS), after which the connection is dropped; a lost
 * connection is opened again at the next call, at most once per
 * PG_RETRY_PAUSE_MS while the server stays unreachable (calls in between
 * fail at once), and the statements are prepared again on it. A call that
 * failed because the connection was lost is HSM_EIO: the caller (the CA)
 * answers systemFailure and the client tries again.
 *
 * libpq is loaded (dlopen) by the first ledger_open of a postgresql://
 * URI, not linked: its dependencies (Kerberos, LDAP, GnuTLS...) would
 * otherwise be mapped into every hsmesh process, the keyholder and the
 * sidecar included, and an SQLite CA needs none of it.
 *
 * A URI with a password is refused: a password belongs in a passfile
 * (passfile=PATH in the URI, or PGPASSFILE), like every secret outside
 * ca.yaml. Messages name the server by host, port and database only.
 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "err.h"
#include "ledger.h"
#include "ledger_be.h"
#include "log.h"
#include "util.h"

#define PG_OP_TIMEOUT_MS 10000		/* one exchange with the server */
#define PG_RETRY_PAUSE_MS 1000		/* between attempts to reach a lost server */
#define PG_STMT_TRIES 5			/* a single statement in a deadlock, outside a transaction */
#define PG_CONNECT_TIMEOUT "5"		/* seconds, unless the URI says otherwise */
#define PG_MIGRATE_LOCK "7526478463497757"	/* advisory lock key of the migration */
#define PG_CA_LOCK "7526478463497758"		/* advisory lock key of the CA set */

/* Type OIDs of the parameters (pg_type.h is not part of libpq-dev). */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT4 23
#define OID_TEXT 25

#define MAX_PARAMS 13

/*
 * Schema migrations (run by ledger.c): migrations[i] takes a ledger from
 * version i to i+1, the same steps as ledger_sqlite.c's in PostgreSQL's
 * dialect. certs.seq orders rows by insertion (SQLite's rowid). Append
 * only; never edit a released step.
 */
static const char *const migrations[LEDGER_SCHEMA_VERSION] = {
	/* 0 -> 1 */
	"CREATE TABLE tokens ("
	"  ref TEXT PRIMARY KEY NOT NULL,"
	"  secret_hash BYTEA NOT NULL CHECK (length(secret_hash) = 32),"
	"  spiffe_id TEXT NOT NULL,"
	"  created BIGINT NOT NULL,"
	"  expires BIGINT NOT NULL,"
	"  used_at BIGINT"
	");"
	"CREATE TABLE certs ("
	"  serial TEXT PRIMARY KEY NOT NULL,"
	"  seq BIGINT GENERATED ALWAYS AS IDENTITY,"
	"  spiffe_id TEXT NOT NULL,"
	"  spki_id TEXT NOT NULL,"
	"  not_before BIGINT NOT NULL,"
	"  not_after BIGINT NOT NULL,"
	"  auth TEXT NOT NULL,"
	"  parent_serial TEXT,"
	"  recorded BIGINT NOT NULL,"
	"  revoked_at BIGINT,"
	"  reason INTEGER,"
	"  der BYTEA NOT NULL"
	");"
	"CREATE INDEX certs_by_id ON certs (spiffe_id, not_before);"
	"CREATE INDEX certs_by_parent ON certs (parent_serial);"
	"CREATE TABLE revoked_ids ("
	"  spiffe_id TEXT PRIMARY KEY NOT NULL,"
	"  revoked_at BIGINT NOT NULL,"
	"  reason INTEGER NOT NULL"
	");",
	/* 1 -> 2: superseded_by, the first recorded renewal counting (as in SQLite) */
	"ALTER TABLE certs ADD COLUMN superseded_by TEXT;"
	"UPDATE certs SET superseded_by = (SELECT c.serial FROM certs AS c"
	"  WHERE c.parent_serial = certs.serial ORDER BY c.seq LIMIT 1);",
	/*
	 * 2 -> 3: node identities and registration entries (kinds: 0
	 * workload, 1 node); entries.seq orders entries of one second by
	 * insertion (SQLite's rowid).
	 */
	"ALTER TABLE tokens ADD COLUMN kind INTEGER NOT NULL DEFAULT 0 CHECK (kind IN (0, 1));"
	"ALTER TABLE certs ADD COLUMN kind INTEGER NOT NULL DEFAULT 0 CHECK (kind IN (0, 1));"
	"ALTER TABLE certs ADD COLUMN node_id TEXT;"
	"CREATE TABLE entries ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  seq BIGINT GENERATED ALWAYS AS IDENTITY,"
	"  spiffe_id TEXT NOT NULL,"
	"  node TEXT NOT NULL,"
	"  node_is_pattern INTEGER NOT NULL,"
	"  selectors TEXT NOT NULL,"
	"  ttl BIGINT NOT NULL,"
	"  self_managed INTEGER NOT NULL,"
	"  created BIGINT NOT NULL"
	");"
	"CREATE INDEX entries_by_id ON entries (spiffe_id);"
	"CREATE INDEX entries_by_node ON entries (node);",
	/* 3 -> 4: the certificate a token paid for, the transaction a certificate answered */
	"ALTER TABLE tokens ADD COLUMN serial TEXT;"
	"ALTER TABLE certs ADD COLUMN txn TEXT;",
	/*
	 * 4 -> 5: the revocation sequence (one more for every revocation that
	 * changed a row, in its transaction; the UPDATE of its one row orders
	 * revocations across replicas), starting at the revocations already
	 * recorded; and an index for the CRL's list.
	 */
	"CREATE TABLE revocation_seq ("
	"  one INTEGER PRIMARY KEY NOT NULL CHECK (one = 1),"
	"  seq BIGINT NOT NULL"
	");"
	"INSERT INTO revocation_seq (one, seq) "
	"  SELECT 1, count(*) FROM certs WHERE revoked_at IS NOT NULL;"
	"CREATE INDEX certs_revoked ON certs (revoked_at) WHERE revoked_at IS NOT NULL;",
	/*
	 * 5 -> 6: an entry names the certificate profile of its identity
	 * ("": the CA's default) and, for the 3GPP NF profile, the NF types
	 * (comma-separated) and the NF's FQDN (as in SQLite).
	 */
	"ALTER TABLE entries ADD COLUMN profile TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE entries ADD COLUMN nf_types TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE entries ADD COLUMN fqdn TEXT NOT NULL DEFAULT '';",
	/*
	 * 6 -> 7: the CA set (as in SQLite): certs.issuer, the key id of the
	 * CA that signed a certificate (NULL before, claimed by the first CA
	 * recorded); the cas table, at most one CA active; seq grows with
	 * every change. No index on issuer (only rotate retire and status
	 * count by it).
	 */
	"ALTER TABLE certs ADD COLUMN issuer TEXT;"
	"CREATE TABLE cas ("
	"  key_id TEXT PRIMARY KEY NOT NULL,"
	"  gen INTEGER NOT NULL UNIQUE,"
	"  state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 4),"
	"  cert BYTEA,"
	"  chain TEXT NOT NULL DEFAULT '',"
	"  links TEXT NOT NULL DEFAULT '',"
	"  created BIGINT NOT NULL,"
	"  changed BIGINT NOT NULL,"
	"  seq BIGINT NOT NULL"
	");"
	"CREATE UNIQUE INDEX cas_one_active ON cas (state) WHERE state = 2;",
};

#define CERT_COLS "serial, spiffe_id, spki_id, not_before, not_after, auth, " \
	"parent_serial, revoked_at, reason, der, superseded_by, kind, node_id, txn, issuer"
#define CERT_NCOLS 15
#define CA_COLS "gen, key_id, state, cert, chain, links, created, changed"
#define CA_NCOLS 8
#define CA_NEXT_SEQ "(SELECT coalesce(max(seq), 0) + 1 FROM cas)"
#define ENTRY_COLS "id, spiffe_id, node, node_is_pattern, selectors, ttl, self_managed, created, " \
	"profile, nf_types, fqdn"
#define ENTRY_NCOLS 11

enum stmt_id {
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
	S_ID_LOCK,
	S_CERT_KINDS,
	S_ENTRY_ADD,
	S_ENTRY_GET,
	S_ENTRY_DEL,
	S_ENTRY_LIST,
	S_ENTRY_LIST_ID,
	S_ENTRY_NODE,
	S_REV_SEQ,
	S_REV_BUMP,
	S_REV_LIST,
	S_CA_LOCK_SH,
	S_CA_LOCK,
	S_CA_ADD,
	S_CA_LIST,
	S_CA_CERT,
	S_CA_MOVE,
	S_CA_SEQ,
	S_CERTS_OUT,
	S_CERTS_TAG,
	S_COUNT
};

static const struct {
	const char *sql;
	int n;
	Oid types[MAX_PARAMS];
} stmts[S_COUNT] = {
	[S_TOKEN_ADD] = { "INSERT INTO tokens (ref, secret_hash, spiffe_id, created, expires, kind) "
	    "VALUES ($1, $2, $3, $4, $5, $6)", 6,
	    { OID_TEXT, OID_BYTEA, OID_TEXT, OID_INT8, OID_INT8, OID_INT4 } },
	[S_TOKEN_GET] = { "SELECT secret_hash, spiffe_id, created, expires, used_at, serial, kind "
	    "FROM tokens WHERE ref = $1", 1, { OID_TEXT } },
	[S_TOKEN_USE] = { "UPDATE tokens SET used_at = $2, serial = $3 "
	    "WHERE ref = $1 AND used_at IS NULL AND expires > $2", 3,
	    { OID_TEXT, OID_INT8, OID_TEXT } },
	[S_TOKEN_UNUSE] = { "UPDATE tokens SET used_at = NULL, serial = NULL "
	    "WHERE ref = $1 AND used_at = $2", 2, { OID_TEXT, OID_INT8 } },
	[S_CERT_ADD] = { "INSERT INTO certs (serial, spiffe_id, spki_id, not_before, not_after, "
	    "auth, parent_serial, recorded, der, txn, kind, node_id, issuer) "
	    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)", 13,
	    { OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8, OID_INT8, OID_TEXT, OID_TEXT, OID_INT8,
	    OID_BYTEA, OID_TEXT, OID_INT4, OID_TEXT, OID_TEXT } },
	[S_CERT_GET] = { "SELECT " CERT_COLS " FROM certs WHERE serial = $1", 1, { OID_TEXT } },
	[S_CERT_SUPERSEDE] = { "UPDATE certs SET superseded_by = $2 "
	    "WHERE serial = $1 AND superseded_by IS NULL AND revoked_at IS NULL", 2,
	    { OID_TEXT, OID_TEXT } },
	[S_CERT_REVOKE] = { "UPDATE certs SET revoked_at = $3, reason = $2 "
	    "WHERE serial = $1 AND revoked_at IS NULL", 3, { OID_TEXT, OID_INT4, OID_INT8 } },
	[S_CERT_REVOKE_ID] = { "UPDATE certs SET revoked_at = $3, reason = $2 "
	    "WHERE spiffe_id = $1 AND revoked_at IS NULL AND not_after > $3", 3,
	    { OID_TEXT, OID_INT4, OID_INT8 } },
	[S_CERT_COUNT] = { "SELECT count(*) FROM certs", 0, { 0 } },
	[S_CERT_LIST] = { "SELECT " CERT_COLS " FROM certs WHERE spiffe_id = $1 "
	    "ORDER BY not_before, seq", 1, { OID_TEXT } },
	[S_ID_ADD] = { "INSERT INTO revoked_ids (spiffe_id, revoked_at, reason) "
	    "VALUES ($1, $3, $2) ON CONFLICT (spiffe_id) DO NOTHING", 3,
	    { OID_TEXT, OID_INT4, OID_INT8 } },
	[S_ID_GET] = { "SELECT 1 FROM revoked_ids WHERE spiffe_id = $1", 1, { OID_TEXT } },
	[S_ID_DEL] = { "DELETE FROM revoked_ids WHERE spiffe_id = $1", 1, { OID_TEXT } },
	[S_ID_LOCK] = { "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", 1, { OID_TEXT } },
	[S_CERT_KINDS] = { "SELECT count(*) FILTER (WHERE kind = 1), count(*) FILTER (WHERE kind = 0) "
	    "FROM certs WHERE spiffe_id = $1", 1, { OID_TEXT } },
	[S_ENTRY_ADD] = { "INSERT INTO entries (" ENTRY_COLS ") "
	    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", 11,
	    { OID_TEXT, OID_TEXT, OID_TEXT, OID_INT4, OID_TEXT, OID_INT8, OID_INT4, OID_INT8,
	    OID_TEXT, OID_TEXT, OID_TEXT } },
	[S_ENTRY_GET] = { "SELECT " ENTRY_COLS " FROM entries WHERE id = $1", 1, { OID_TEXT } },
	[S_ENTRY_DEL] = { "DELETE FROM entries WHERE id = $1", 1, { OID_TEXT } },
	[S_ENTRY_LIST] = { "SELECT " ENTRY_COLS " FROM entries ORDER BY created, seq", 0, { 0 } },
	[S_ENTRY_LIST_ID] = { "SELECT " ENTRY_COLS " FROM entries WHERE spiffe_id = $1 "
	    "ORDER BY created, seq", 1, { OID_TEXT } },
	[S_ENTRY_NODE] = { "SELECT 1 FROM entries WHERE node = $1 AND node_is_pattern = 0 "
	    "AND self_managed = 0 LIMIT 1", 1, { OID_TEXT } },
	[S_REV_SEQ] = { "SELECT seq FROM revocation_seq WHERE one = 1", 0, { 0 } },
	[S_REV_BUMP] = { "UPDATE revocation_seq SET seq = seq + 1 WHERE one = 1", 0, { 0 } },
	[S_REV_LIST] = { "SELECT serial, revoked_at, reason FROM certs "
	    "WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY revoked_at, seq", 1,
	    { OID_INT8 } },
	[S_CA_LOCK_SH] = { "SELECT pg_advisory_xact_lock_shared(" PG_CA_LOCK ")", 0, { 0 } },
	[S_CA_LOCK] = { "SELECT pg_advisory_xact_lock(" PG_CA_LOCK ")", 0, { 0 } },
	[S_CA_ADD] = { "INSERT INTO cas (key_id, gen, state, cert, chain, links, created, changed, "
	    "seq) VALUES ($1, (SELECT coalesce(max(gen), 0) + 1 FROM cas), $2, $3, $4, $5, $6, $6, "
	    CA_NEXT_SEQ ") RETURNING gen", 6,
	    { OID_TEXT, OID_INT4, OID_BYTEA, OID_TEXT, OID_TEXT, OID_INT8 } },
	[S_CA_LIST] = { "SELECT " CA_COLS " FROM cas ORDER BY gen", 0, { 0 } },
	[S_CA_CERT] = { "UPDATE cas SET cert = $2, chain = $3, links = $4, changed = $6, "
	    "state = CASE state WHEN 0 THEN 1 ELSE state END, seq = " CA_NEXT_SEQ " "
	    "WHERE key_id = $1 AND ((1 << state) & $5) != 0", 6,
	    { OID_TEXT, OID_BYTEA, OID_TEXT, OID_TEXT, OID_INT4, OID_INT8 } },
	[S_CA_MOVE] = { "UPDATE cas SET state = $3, changed = $4, seq = " CA_NEXT_SEQ " "
	    "WHERE key_id = $1 AND state = $2", 4, { OID_TEXT, OID_INT4, OID_INT4, OID_INT8 } },
	[S_CA_SEQ] = { "SELECT coalesce(max(seq), 0) FROM cas", 0, { 0 } },
	[S_CERTS_OUT] = { "SELECT count(*), coalesce(max(not_after), 0) FROM certs "
	    "WHERE (issuer = $1 OR issuer IS NULL) AND not_after > $2 AND revoked_at IS NULL", 2,
	    { OID_TEXT, OID_INT8 } },
	[S_CERTS_TAG] = { "UPDATE certs SET issuer = $1 WHERE issuer IS NULL", 1, { OID_TEXT } },
};

struct ledger_be {
	char *location;			/* the URI (it holds no password) */
	char where[200];		/* "host H port P database D", for messages */
	PGconn *conn;
	int ready;			/* ready() was called: prepare on every connection */
	int in_tx;			/* a transaction is open on conn */
	int tx_lost;			/* it died with its connection: fail until rollback */
	int lost;			/* conn is unusable: reconnect at the next call */
	uint64_t retry_at;		/* no reconnection attempt before this (hsm_now_ms) */
	char last[300];			/* why the server could not be reached */
};

/* ---- libpq, loaded on first use ---- */

#define PQ_SONAME "libpq.so.5"
#define PQ_FUNCS(X) \
	X(PQclear) X(PQcmdTuples) X(PQconnectdbParams) X(PQconninfoFree) \
	X(PQconninfoParse) X(PQconsumeInput) X(PQerrorMessage) X(PQfinish) \
	X(PQflush) X(PQfreemem) X(PQgetResult) X(PQgetisnull) \
	X(PQgetlength) X(PQgetvalue) X(PQisBusy) X(PQnfields) \
	X(PQntuples) X(PQresultErrorField) X(PQresultStatus) X(PQsendPrepare) \
	X(PQsendQuery) X(PQsendQueryPrepared) X(PQsetNoticeProcessor) X(PQsocket) \
	X(PQstatus)

static struct {
#define X(f) __typeof__(f) *f##_;
	PQ_FUNCS(X)
#undef X
} pqf;
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;
static char pq_failed[256];	/* why libpq could not be loaded, or "" */

static void
pq_load(void)
{
	void *dl = dlopen(PQ_SONAME, RTLD_NOW | RTLD_LOCAL);

	if (dl == NULL) {
		snprintf(pq_failed, sizeof(pq_failed), "%s", dlerror());
		return;
	}
#define X(f) \
	if ((pqf.f##_ = (__typeof__(f) *)dlsym(dl, #f)) == NULL) { \
		snprintf(pq_failed, sizeof(pq_failed), "%s has no %s", PQ_SONAME, #f); \
		return; \
	}
	PQ_FUNCS(X)
#undef X
}

/* libpq, loaded once; HSM_EUNSUPPORTED when it is not installed. */
static int
pq_ready(void)
{
	pthread_once(&pq_once, pq_load);
	if (pq_failed[0] != '\0')
		return hsm_err(HSM_EUNSUPPORTED, "ledger: PostgreSQL needs libpq (Debian: libpq5): %s",
		    pq_failed);
	return 0;
}

/* Binary parameters of one statement. */
struct params {
	int n;
	const char *v[MAX_PARAMS];
	int len[MAX_PARAMS];
	int fmt[MAX_PARAMS];
	uint8_t num[MAX_PARAMS][8];
};

static void
p_bytes(struct params *p, const void *b, size_t len)
{
	p->v[p->n] = b;
	p->len[p->n] = (int)len;
	p->fmt[p->n++] = 1;
}

/* A text parameter; NULL or "" is SQL NULL when null_if_empty. */
static void
p_text(struct params *p, const char *s, int null_if_empty)
{
	if (s == NULL || (null_if_empty && s[0] == '\0')) {
		p->v[p->n] = NULL;
		p->len[p->n] = 0;
		p->fmt[p->n++] = 1;
		return;
	}
	p_bytes(p, s, strlen(s));
}

static void
p_i64(struct params *p, int64_t x)
{
	uint64_t u = (uint64_t)x;

	hsm_put32(p->num[p->n], (uint32_t)(u >> 32));
	hsm_put32(p->num[p->n] + 4, (uint32_t)u);
	p_bytes(p, p->num[p->n], 8);
}

static void
p_i32(struct params *p, int32_t x)
{
	hsm_put32(p->num[p->n], (uint32_t)x);
	p_bytes(p, p->num[p->n], 4);
}

/* ---- errors ---- */

/* The server's one-line message for res (or the connection's), without a newline. */
static void
pg_message(struct ledger_be *be, const PGresult *res, char *out, size_t cap)
{
	const char *m = res != NULL ? pqf.PQresultErrorField_(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	size_t n;

	if (m == NULL || *m == '\0')
		m = be->conn != NULL ? pqf.PQerrorMessage_(be->conn) : "no connection";
	snprintf(out, cap, "%s", m);
	for (n = strlen(out); n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '); n--)
		out[n - 1] = '\0';
	for (char *q = out; *q != '\0'; q++)
		if (*q == '\n' || *q == '\r')
			*q = ' ';
}

/* The connection is gone: drop it, the next call opens a new one. */
static void
conn_lost(struct ledger_be *be)
{
	be->lost = 1;
	if (be->in_tx)
		be->tx_lost = 1;
	be->in_tx = 0;
}

/*
 * The failure of a statement (res may be NULL: no result at all):
 * HSM_EAGAIN for a conflict to retry, HSM_EEXIST for a unique key taken,
 * else HSM_EIO "ledger: WHAT: MESSAGE". A failure of the connection marks
 * it lost.
 */
static int
pg_fail(struct ledger_be *be, const PGresult *res, const char *what)
{
	const char *st = res != NULL ? pqf.PQresultErrorField_(res, PG_DIAG_SQLSTATE) : NULL;
	char msg[300];

	pg_message(be, res, msg, sizeof(msg));
	if (be->conn == NULL || pqf.PQstatus_(be->conn) != CONNECTION_OK || st == NULL ||
	    strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0) {
		conn_lost(be);
		return hsm_err(HSM_EIO, "ledger: %s: PostgreSQL (%s): %s", what, be->where, msg);
	}
	if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)
		return hsm_err(HSM_EAGAIN, "ledger: %s: %s", what, msg);
	if (strcmp(st, "23505") == 0)
		return hsm_err(HSM_EEXIST, "ledger: %s: %s", what, msg);
	return hsm_err(HSM_EIO, "ledger: %s: %s", what, msg);
}

/* ---- one exchange with a deadline ---- */

/*
 * Wait for the results of what was sent and keep the one that matters
 * (the first failure, else the last): *out is NULL only when the
 * connection failed or the deadline passed (the connection is then
 * dropped: a statement cannot be taken back). 0 or HSM_EIO.
 */
static int
collect(struct ledger_be *be, const char *what, PGresult **out)
{
	uint64_t deadline = hsm_now_ms() + PG_OP_TIMEOUT_MS;
	PGresult *keep = NULL, *r;
	int st;

	*out = NULL;
	for (;;) {
		while ((st = pqf.PQflush_(be->conn)) != 0 || pqf.PQisBusy_(be->conn)) {
			struct pollfd pfd = { pqf.PQsocket_(be->conn), POLLIN | (st == 1 ? POLLOUT : 0), 0 };
			uint64_t now = hsm_now_ms();
			int n;

			if (st < 0 || pfd.fd < 0)
				goto lost;
			if (now >= deadline) {
				pqf.PQclear_(keep);
				conn_lost(be);
				return hsm_err(HSM_EIO, "ledger: %s: PostgreSQL (%s) did not answer "
				    "within %d ms", what, be->where, PG_OP_TIMEOUT_MS);
			}
			n = poll(&pfd, 1, (int)(deadline - now));
			if (n < 0 && errno != EINTR)
				goto lost;
			if (n > 0 && (pfd.revents & (POLLIN | POLLERR | POLLHUP)) &&
			    pqf.PQconsumeInput_(be->conn) == 0)
				goto lost;
		}
		if ((r = pqf.PQgetResult_(be->conn)) == NULL)
			break;
		if (keep == NULL || (pqf.PQresultStatus_(keep) != PGRES_FATAL_ERROR &&
		    pqf.PQresultStatus_(r) == PGRES_FATAL_ERROR)) {
			pqf.PQclear_(keep);
			keep = r;
		} else {
			pqf.PQclear_(r);
		}
	}
	if (keep == NULL)
		goto lost;
	*out = keep;
	return 0;
 lost:
	pqf.PQclear_(keep);
	return pg_fail(be, NULL, what);
}

/* Take a command's result: *res when it produced rows (caller clears it), else cleared. */
static int
result(struct ledger_be *be, PGresult *r, const char *what, PGresult **res)
{
	ExecStatusType s = pqf.PQresultStatus_(r);
	int st;

	if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
		if (res != NULL)
			*res = r;
		else
			pqf.PQclear_(r);
		return 0;
	}
	st = pg_fail(be, r, what);
	pqf.PQclear_(r);
	return st;
}

/* Run sql (one or more statements, no parameters), text protocol. */
static int
run_sql(struct ledger_be *be, const char *sql, const char *what, PGresult **res)
{
	PGresult *r;
	int st;

	if (res != NULL)
		*res = NULL;
	if (pqf.PQsendQuery_(be->conn, sql) != 1)
		return pg_fail(be, NULL, what);
	if ((st = collect(be, what, &r)) != 0)
		return st;
	return result(be, r, what, res);
}

/* Notices ("relation already exists, skipping") are not errors: debug lines. */
static void
quiet_notice(void *arg, const char *msg)
{
	log_debug("ledger: PostgreSQL: %.*s", (int)strcspn(msg, "\n"), msg);
}

/* Open the connection (again). 0 or HSM_EIO. */
static int
pg_connect(struct ledger_be *be)
{
	const char *const kw[] = { "connect_timeout", "application_name", "dbname", NULL };
	const char *const val[] = { PG_CONNECT_TIMEOUT, "hsmesh-ca", be->location, NULL };
	char msg[300];

	if (be->conn != NULL)
		pqf.PQfinish_(be->conn);
	be->lost = 1;
	be->in_tx = 0;
	/* The URI's own settings (dbname expanded last) override the defaults before it. */
	if ((be->conn = pqf.PQconnectdbParams_(kw, val, 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	if (pqf.PQstatus_(be->conn) != CONNECTION_OK) {
		pg_message(be, NULL, msg, sizeof(msg));
		snprintf(be->last, sizeof(be->last), "%s", msg);
		return hsm_err(HSM_EIO, "ledger: cannot connect to PostgreSQL (%s): %s", be->where,
		    msg);
	}
	pqf.PQsetNoticeProcessor_(be->conn, quiet_notice, NULL);
	be->lost = 0;
	return 0;
}

/* Prepare every statement on the connection. */
static int
prepare_all(struct ledger_be *be)
{
	char name[16];
	PGresult *r;
	int st;

	for (int i = 0; i < S_COUNT; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		if (pqf.PQsendPrepare_(be->conn, name, stmts[i].sql, stmts[i].n, stmts[i].types) != 1)
			return pg_fail(be, NULL, "prepare");
		if ((st = collect(be, "prepare", &r)) != 0 || (st = result(be, r, "prepare", NULL)) != 0)
			return st;
	}
	return 0;
}

/*
 * A usable connection for the next statement: a lost one is opened again
 * (outside a transaction only: a transaction dies with its connection),
 * at most once per PG_RETRY_PAUSE_MS.
 */
static int
usable(struct ledger_be *be, const char *what)
{
	uint64_t now;
	int st;

	if (be->tx_lost)
		return hsm_err(HSM_EIO, "ledger: %s: the transaction was lost with its connection to "
		    "PostgreSQL (%s)", what, be->where);
	if (!be->lost)
		return 0;
	now = hsm_now_ms();
	if (now < be->retry_at)
		return hsm_err(HSM_EIO, "ledger: %s: PostgreSQL (%s) unreachable: %s", what,
		    be->where, be->last);
	if ((st = pg_connect(be)) == 0 && be->ready && (st = prepare_all(be)) != 0)
		pg_message(be, NULL, be->last, sizeof(be->last));
	if (st != 0) {
		be->lost = 1;
		be->retry_at = now + PG_RETRY_PAUSE_MS;
		return st;
	}
	log_info("ledger: connected to PostgreSQL (%s)", be->where);
	return 0;
}

/*
 * Run prepared statement id with p. *res receives the rows of a query
 * (caller clears it; may be NULL), *changed the rows an UPDATE/INSERT/
 * DELETE changed (may be NULL). A deadlock outside a transaction is run
 * again (the statement is atomic on its own).
 */
static int
run(struct ledger_be *be, enum stmt_id id, const struct params *p, const char *what,
    PGresult **res, int *changed)
{
	char name[16];
	PGresult *r = NULL;
	int st = HSM_EIO;

	if (res != NULL)
		*res = NULL;
	if (changed != NULL)
		*changed = 0;
	snprintf(name, sizeof(name), "s%d", (int)id);
	for (int attempt = 0; attempt < PG_STMT_TRIES; attempt++) {
		if ((st = usable(be, what)) != 0)
			return st;
		if (pqf.PQsendQueryPrepared_(be->conn, name, p != NULL ? p->n : 0, p != NULL ? p->v : NULL,
		    p != NULL ? p->len : NULL, p != NULL ? p->fmt : NULL, 1) != 1)
			return pg_fail(be, NULL, what);
		if ((st = collect(be, what, &r)) != 0)
			return st;
		if ((st = result(be, r, what, &r)) == 0)
			break;
		if (st != HSM_EAGAIN || be->in_tx)
			return st;
	}
	if (st != 0)
		return st;
	if (changed != NULL) {
		const char *t = pqf.PQcmdTuples_(r);

		*changed = t != NULL && *t != '\0' ? (int)strtol(t, NULL, 10) : 0;
	}
	if (res != NULL)
		*res = r;
	else
		pqf.PQclear_(r);
	return 0;
}

/* ---- reading binary results ---- */

static int64_t
col_i64(const PGresult *r, int row, int col)
{
	const uint8_t *v = (const uint8_t *)pqf.PQgetvalue_(r, row, col);
	int n = pqf.PQgetlength_(r, row, col);

	if (n == 8)
		return (int64_t)((uint64_t)hsm_get32(v) << 32 | hsm_get32(v + 4));
	if (n == 4)
		return (int32_t)hsm_get32(v);
	return 0;
}

/* Copy a text column into buf; NULL reads as "". -1 if it does not fit or holds a NUL. */
static int
col_text(const PGresult *r, int row, int col, char *buf, size_t size)
{
	int n = pqf.PQgetlength_(r, row, col);
	const char *v = pqf.PQgetvalue_(r, row, col);

	buf[0] = '\0';
	if (pqf.PQgetisnull_(r, row, col))
		return 0;
	if (n < 0 || (size_t)n >= size || memchr(v, '\0', (size_t)n) != NULL)
		return -1;
	memcpy(buf, v, (size_t)n);
	buf[n] = '\0';
	return 0;
}

/*
 * Fill c from a row of CERT_COLS; with copy_der the DER is malloc'd,
 * else c->der points into the result.
 */
static int
cert_from_row(const PGresult *r, int row, struct ledger_cert *c, int copy_der)
{
	int n;

	if (pqf.PQnfields_(r) != CERT_NCOLS || col_text(r, row, 0, c->serial, sizeof(c->serial)) != 0 ||
	    col_text(r, row, 1, c->spiffe_id, sizeof(c->spiffe_id)) != 0 ||
	    col_text(r, row, 2, c->spki_id, sizeof(c->spki_id)) != 0 ||
	    col_text(r, row, 5, c->auth, sizeof(c->auth)) != 0 ||
	    col_text(r, row, 6, c->parent_serial, sizeof(c->parent_serial)) != 0 ||
	    col_text(r, row, 10, c->superseded_by, sizeof(c->superseded_by)) != 0 ||
	    col_text(r, row, 12, c->node_id, sizeof(c->node_id)) != 0 ||
	    col_text(r, row, 13, c->txn, sizeof(c->txn)) != 0 ||
	    col_text(r, row, 14, c->issuer, sizeof(c->issuer)) != 0)
		return hsm_err(HSM_EIO, "ledger: corrupt certificate row");
	c->kind = col_i64(r, row, 11) == LEDGER_NODE ? LEDGER_NODE : LEDGER_WORKLOAD;
	c->not_before = col_i64(r, row, 3);
	c->not_after = col_i64(r, row, 4);
	if (!pqf.PQgetisnull_(r, row, 7)) {
		c->revoked = 1;
		c->revoked_at = col_i64(r, row, 7);
		c->reason = (int)col_i64(r, row, 8);
	}
	if (pqf.PQgetisnull_(r, row, 9) || (n = pqf.PQgetlength_(r, row, 9)) <= 0)
		return hsm_err(HSM_EIO, "ledger: certificate %s has no DER", c->serial);
	if (!copy_der) {
		c->der = (uint8_t *)pqf.PQgetvalue_(r, row, 9);	/* read-only for the callback */
	} else {
		if ((c->der = malloc((size_t)n)) == NULL)
			return hsm_err(HSM_ENOMEM, "ledger: out of memory");
		memcpy(c->der, pqf.PQgetvalue_(r, row, 9), (size_t)n);
	}
	c->der_len = (size_t)n;
	return 0;
}

/* ---- open, close, schema ---- */

static int
pg_claims(const char *location)
{
	return strncmp(location, "postgresql://", 13) == 0 ||
	    strncmp(location, "postgres://", 11) == 0;
}

static void
pg_close(struct ledger_be *be)
{
	if (be == NULL)
		return;
	if (be->conn != NULL)
		pqf.PQfinish_(be->conn);
	free(be->location);
	free(be);
}

/*
 * Check the URI without connecting: it parses, and it holds no password.
 * Fill be->where from its host, port and database.
 */
static int
check_uri(struct ledger_be *be, const char *uri)
{
	PQconninfoOption *opts, *o;
	const char *host = NULL, *port = NULL, *db = NULL;
	char *err = NULL;
	int r = 0;

	if ((opts = pqf.PQconninfoParse_(uri, &err)) == NULL) {
		if (err != NULL) {
			char msg[200];

			snprintf(msg, sizeof(msg), "%s", err);
			msg[strcspn(msg, "\n")] = '\0';
			pqf.PQfreemem_(err);
			return hsm_err(HSM_EINVAL, "ledger: bad PostgreSQL URI: %s", msg);
		}
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	}
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "password") == 0)
			r = hsm_err(HSM_EINVAL, "ledger: the PostgreSQL URI holds a password: put it "
			    "in a passfile (passfile=PATH in the URI, or PGPASSFILE) instead");
		else if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			db = o->val;
	}
	snprintf(be->where, sizeof(be->where), "host %.80s port %.16s database %.64s",
	    host != NULL ? host : "(default)", port != NULL ? port : "(default)",
	    db != NULL ? db : "(default)");
	pqf.PQconninfoFree_(opts);
	return r;
}

static int
pg_open(const char *location, struct ledger_be **out)
{
	struct ledger_be *be;
	int r;

	*out = NULL;
	if ((r = pq_ready()) != 0)
		return r;
	if ((be = calloc(1, sizeof(*be))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	if ((r = check_uri(be, location)) != 0)
		goto fail;
	if ((be->location = strdup(location)) == NULL) {
		r = hsm_err(HSM_ENOMEM, "ledger: out of memory");
		goto fail;
	}
	if ((r = pg_connect(be)) != 0)
		goto fail;
	*out = be;
	return 0;
 fail:
	pg_close(be);
	return r;
}

/*
 * The migration runs in one transaction holding an advisory lock: a
 * second replica starting at once waits for it, then finds the schema
 * up to date.
 */
static int
pg_migrate_begin(struct ledger_be *be)
{
	int r;

	if ((r = run_sql(be, "BEGIN ISOLATION LEVEL READ COMMITTED;"
	    "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", "migrate", NULL)) == 0)
		be->in_tx = 1;
	return r;
}

static int
pg_schema_version(struct ledger_be *be, int64_t *version)
{
	PGresult *r = NULL;
	int st;

	*version = 0;
	if ((st = run_sql(be, "CREATE TABLE IF NOT EXISTS schema_version "
	    "(version INTEGER NOT NULL)", "create schema_version", NULL)) != 0 ||
	    (st = run_sql(be, "SELECT coalesce(max(version), 0) FROM schema_version",
	    "read schema version", &r)) != 0)
		return st;
	if (pqf.PQntuples_(r) != 1 || pqf.PQgetisnull_(r, 0, 0))
		st = hsm_err(HSM_EIO, "ledger: read schema version: no row");
	else
		*version = strtoll(pqf.PQgetvalue_(r, 0, 0), NULL, 10);
	pqf.PQclear_(r);
	return st;
}

static int
pg_exec(struct ledger_be *be, const char *sql)
{
	return run_sql(be, sql, "migrate", NULL);
}

static int
pg_version_add(struct ledger_be *be, int64_t version)
{
	char sql[96];

	snprintf(sql, sizeof(sql), "INSERT INTO schema_version (version) VALUES (%lld)",
	    (long long)version);
	return run_sql(be, sql, "write schema version", NULL);
}

static int
pg_ready(struct ledger_be *be)
{
	be->ready = 1;
	return prepare_all(be);
}

/* ---- transactions ---- */

static int
pg_begin(struct ledger_be *be)
{
	int r;

	if ((r = usable(be, "begin")) != 0 ||
	    (r = run_sql(be, "BEGIN ISOLATION LEVEL READ COMMITTED", "begin", NULL)) != 0)
		return r;
	be->in_tx = 1;
	return 0;
}

static int
pg_id_lock(struct ledger_be *be, const char *spiffe_id)
{
	struct params p = { 0 };

	p_text(&p, spiffe_id, 0);
	return run(be, S_ID_LOCK, &p, "lock identity", NULL, NULL);
}

static int
pg_commit(struct ledger_be *be)
{
	int r;

	if (!be->in_tx) {
		be->tx_lost = 0;
		return hsm_err(HSM_EIO, "ledger: commit: the transaction was lost with its "
		    "connection to PostgreSQL (%s)", be->where);
	}
	r = run_sql(be, "COMMIT", "commit", NULL);
	be->in_tx = 0;
	return r;
}

static void
pg_rollback(struct ledger_be *be)
{
	be->tx_lost = 0;
	if (!be->in_tx || be->lost) {
		be->in_tx = 0;
		return;
	}
	(void)run_sql(be, "ROLLBACK", "rollback", NULL);
	be->in_tx = 0;
}

/* ---- join tokens ---- */

static int
pg_token_insert(struct ledger_be *be, const char *ref, const uint8_t *hash,
    const char *spiffe_id, int64_t created, int64_t expires, int kind)
{
	struct params p = { 0 };
	int r;

	p_text(&p, ref, 0);
	p_bytes(&p, hash, LEDGER_HASH_LEN);
	p_text(&p, spiffe_id, 0);
	p_i64(&p, created);
	p_i64(&p, expires);
	p_i32(&p, kind);
	r = run(be, S_TOKEN_ADD, &p, "add token", NULL, NULL);
	if (r == HSM_EEXIST)
		r = hsm_err(HSM_EEXIST, "ledger: join token '%s' already exists", ref);
	return r;
}

static int
pg_token_get(struct ledger_be *be, const char *ref, struct ledger_token *t)
{
	struct params p = { 0 };
	PGresult *res = NULL;
	int r;

	memset(t, 0, sizeof(*t));
	p_text(&p, ref, 0);
	if ((r = run(be, S_TOKEN_GET, &p, "look up token", &res, NULL)) != 0)
		return r;
	if (pqf.PQntuples_(res) == 0) {
		r = hsm_err(HSM_ENOENT, "join token unknown");
	} else if (pqf.PQnfields_(res) != 7 || pqf.PQgetlength_(res, 0, 0) != LEDGER_HASH_LEN ||
	    col_text(res, 0, 1, t->spiffe_id, sizeof(t->spiffe_id)) != 0 ||
	    col_text(res, 0, 5, t->serial, sizeof(t->serial)) != 0) {
		r = hsm_err(HSM_EIO, "ledger: corrupt join token row");
	} else {
		memcpy(t->hash, pqf.PQgetvalue_(res, 0, 0), LEDGER_HASH_LEN);
		t->created = col_i64(res, 0, 2);
		t->expires = col_i64(res, 0, 3);
		if (!pqf.PQgetisnull_(res, 0, 4)) {
			t->used = 1;
			t->used_at = col_i64(res, 0, 4);
		}
		t->kind = col_i64(res, 0, 6) == LEDGER_NODE ? LEDGER_NODE : LEDGER_WORKLOAD;
	}
	pqf.PQclear_(res);
	return r;
}

static int
pg_token_use(struct ledger_be *be, const char *ref, int64_t now, const char *serial)
{
	struct params p = { 0 };
	int r, n;

	p_text(&p, ref, 0);
	p_i64(&p, now);
	p_text(&p, serial, 1);
	r = run(be, S_TOKEN_USE, &p, "consume token", NULL, &n);
	return r != 0 ? r : n;
}

static int
pg_token_unuse(struct ledger_be *be, const char *ref, int64_t used_at)
{
	struct params p = { 0 };
	int r, n;

	p_text(&p, ref, 0);
	p_i64(&p, used_at);
	r = run(be, S_TOKEN_UNUSE, &p, "give back token", NULL, &n);
	return r != 0 ? r : n;
}

/* ---- certificates ---- */

static int
pg_cert_insert(struct ledger_be *be, const struct ledger_cert *c, int64_t recorded)
{
	struct params p = { 0 };
	int r;

	p_text(&p, c->serial, 0);
	p_text(&p, c->spiffe_id, 0);
	p_text(&p, c->spki_id, 0);
	p_i64(&p, c->not_before);
	p_i64(&p, c->not_after);
	p_text(&p, c->auth, 0);
	p_text(&p, c->parent_serial, 1);
	p_i64(&p, recorded);
	p_bytes(&p, c->der, c->der_len);
	p_text(&p, c->txn, 1);
	p_i32(&p, (int32_t)c->kind);
	p_text(&p, c->node_id, 1);
	p_text(&p, c->issuer, 1);
	r = run(be, S_CERT_ADD, &p, "add certificate", NULL, NULL);
	if (r == HSM_EEXIST)
		r = hsm_err(HSM_EEXIST, "ledger: certificate serial %s already recorded", c->serial);
	return r;
}

static int
pg_cert_get(struct ledger_be *be, const char *serial, struct ledger_cert *c)
{
	struct params p = { 0 };
	PGresult *res = NULL;
	int r;

	memset(c, 0, sizeof(*c));
	p_text(&p, serial, 0);
	if ((r = run(be, S_CERT_GET, &p, "get certificate", &res, NULL)) != 0)
		return r;
	if (pqf.PQntuples_(res) == 0)
		r = hsm_err(HSM_ENOENT, "ledger: no certificate with serial %s", serial);
	else if ((r = cert_from_row(res, 0, c, 1)) != 0) {
		free(c->der);
		memset(c, 0, sizeof(*c));
	}
	pqf.PQclear_(res);
	return r;
}

static int
pg_cert_supersede(struct ledger_be *be, const char *parent, const char *child)
{
	struct params p = { 0 };
	int r, n;

	p_text(&p, parent, 0);
	p_text(&p, child, 0);
	r = run(be, S_CERT_SUPERSEDE, &p, "record renewal", NULL, &n);
	return r != 0 ? r : n;
}

static int
pg_cert_revoke(struct ledger_be *be, const char *serial, int reason, int64_t now)
{
	struct params p = { 0 };
	int r, n;

	p_text(&p, serial, 0);
	p_i32(&p, reason);
	p_i64(&p, now);
	r = run(be, S_CERT_REVOKE, &p, "revoke certificate", NULL, &n);
	return r != 0 ? r : n;
}

static int
pg_certs_revoke_id(struct ledger_be *be, const char *spiffe_id, int reason, int64_t now,
    unsigned *n)
{
	struct params p = { 0 };
	int r, k;

	*n = 0;
	p_text(&p, spiffe_id, 0);
	p_i32(&p, reason);
	p_i64(&p, now);
	if ((r = run(be, S_CERT_REVOKE_ID, &p, "revoke identity", NULL, &k)) == 0)
		*n = (unsigned)k;
	return r;
}

static int
pg_id_revoke(struct ledger_be *be, const char *spiffe_id, int reason, int64_t now)
{
	struct params p = { 0 };

	p_text(&p, spiffe_id, 0);
	p_i32(&p, reason);
	p_i64(&p, now);
	return run(be, S_ID_ADD, &p, "revoke identity", NULL, NULL);
}

static int
pg_id_revoked(struct ledger_be *be, const char *spiffe_id)
{
	struct params p = { 0 };
	PGresult *res = NULL;
	int r;

	p_text(&p, spiffe_id, 0);
	if ((r = run(be, S_ID_GET, &p, "identity revocation check", &res, NULL)) != 0)
		return r;
	r = pqf.PQntuples_(res) > 0;
	pqf.PQclear_(res);
	return r;
}

static int
pg_id_reinstate(struct ledger_be *be, const char *spiffe_id)
{
	struct params p = { 0 };
	int r, n;

	p_text(&p, spiffe_id, 0);
	r = run(be, S_ID_DEL, &p, "reinstate identity", NULL, &n);
	return r != 0 ? r : n;
}

static int
pg_cert_count(struct ledger_be *be, uint64_t *n)
{
	PGresult *res = NULL;
	int r;

	*n = 0;
	if ((r = run(be, S_CERT_COUNT, NULL, "count certificates", &res, NULL)) != 0)
		return r;
	if (pqf.PQntuples_(res) != 1)
		r = hsm_err(HSM_EIO, "ledger: count certificates: no row");
	else
		*n = (uint64_t)col_i64(res, 0, 0);
	pqf.PQclear_(res);
	return r;
}

static int
pg_cert_list_id(struct ledger_be *be, const char *spiffe_id, ledger_cert_cb cb, void *arg)
{
	struct params p = { 0 };
	struct ledger_cert *c;
	PGresult *res = NULL;
	int r;

	if ((c = malloc(sizeof(*c))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	p_text(&p, spiffe_id, 0);
	if ((r = run(be, S_CERT_LIST, &p, "list certificates", &res, NULL)) == 0) {
		for (int i = 0; i < pqf.PQntuples_(res) && r == 0; i++) {
			memset(c, 0, sizeof(*c));
			if ((r = cert_from_row(res, i, c, 0)) == 0)
				r = cb(c, arg);
		}
	}
	pqf.PQclear_(res);
	free(c);
	return r;
}

static int
pg_cert_kinds(struct ledger_be *be, const char *spiffe_id, unsigned *nodes, unsigned *workloads)
{
	struct params p = { 0 };
	PGresult *res = NULL;
	int r;

	*nodes = *workloads = 0;
	p_text(&p, spiffe_id, 0);
	if ((r = run(be, S_CERT_KINDS, &p, "kinds of an identity", &res, NULL)) != 0)
		return r;
	if (pqf.PQntuples_(res) != 1 || pqf.PQnfields_(res) != 2) {
		r = hsm_err(HSM_EIO, "ledger: kinds of an identity: no row");
	} else {
		*nodes = (unsigned)col_i64(res, 0, 0);
		*workloads = (unsigned)col_i64(res, 0, 1);
	}
	pqf.PQclear_(res);
	return r;
}

/* ---- registration entries ---- */

static int
pg_entry_insert(struct ledger_be *be, const struct ledger_entry *e)
{
	struct params p = { 0 };
	int r;

	p_text(&p, e->id, 0);
	p_text(&p, e->spiffe_id, 0);
	p_text(&p, e->node, 0);
	p_i32(&p, e->node_is_pattern != 0);
	p_text(&p, e->selectors, 0);
	p_i64(&p, e->ttl);
	p_i32(&p, e->self_managed != 0);
	p_i64(&p, e->created);
	p_text(&p, e->profile, 0);
	p_text(&p, e->nf_types, 0);
	p_text(&p, e->fqdn, 0);
	r = run(be, S_ENTRY_ADD, &p, "add entry", NULL, NULL);
	if (r == HSM_EEXIST)
		r = hsm_err(HSM_EEXIST, "ledger: entry %s already exists", e->id);
	return r;
}

/* Fill e from a row of ENTRY_COLS. */
static int
entry_from_row(const PGresult *r, int row, struct ledger_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (pqf.PQnfields_(r) != ENTRY_NCOLS || col_text(r, row, 0, e->id, sizeof(e->id)) != 0 ||
	    col_text(r, row, 1, e->spiffe_id, sizeof(e->spiffe_id)) != 0 ||
	    col_text(r, row, 2, e->node, sizeof(e->node)) != 0 ||
	    col_text(r, row, 4, e->selectors, sizeof(e->selectors)) != 0 ||
	    col_text(r, row, 8, e->profile, sizeof(e->profile)) != 0 ||
	    col_text(r, row, 9, e->nf_types, sizeof(e->nf_types)) != 0 ||
	    col_text(r, row, 10, e->fqdn, sizeof(e->fqdn)) != 0)
		return hsm_err(HSM_EIO, "ledger: corrupt entry row");
	e->node_is_pattern = col_i64(r, row, 3) != 0;
	e->ttl = col_i64(r, row, 5);
	e->self_managed = col_i64(r, row, 6) != 0;
	e->created = col_i64(r, row, 7);
	return 0;
}

static int
pg_entry_get(struct ledger_be *be, const char *id, struct ledger_entry *e)
{
	struct params p = { 0 };
	PGresult *res = NULL;
	int r;

	memset(e, 0, sizeof(*e));
	p_text(&p, id, 0);
	if ((r = run(be, S_ENTRY_GET, &p, "get entry", &res, NULL)) != 0)
		return r;
	if (pqf.PQntuples_(res) == 0)
		r = hsm_err(HSM_ENOENT, "no registration entry %s", id);
	else
		r = entry_from_row(res, 0, e);
	pqf.PQclear_(res);
	return r;
}

static int
pg_entry_delete(struct ledger_be *be, const char *id)
{
	struct params p = { 0 };
	int r, n;

	p_text(&p, id, 0);
	r = run(be, S_ENTRY_DEL, &p, "remove entry", NULL, &n);
	return r != 0 ? r : n;
}

static int
pg_entry_list(struct ledger_be *be, const char *spiffe_id, ledger_entry_cb cb, void *arg)
{
	struct params p = { 0 };
	struct ledger_entry *e;
	PGresult *res = NULL;
	int r;

	if ((e = malloc(sizeof(*e))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	if (spiffe_id != NULL)
		p_text(&p, spiffe_id, 0);
	if ((r = run(be, spiffe_id != NULL ? S_ENTRY_LIST_ID : S_ENTRY_LIST,
	    spiffe_id != NULL ? &p : NULL, "list entries", &res, NULL)) == 0) {
		for (int i = 0; i < pqf.PQntuples_(res) && r == 0; i++) {
			if ((r = entry_from_row(res, i, e)) == 0)
				r = cb(e, arg);
		}
	}
	pqf.PQclear_(res);
	free(e);
	return r;
}

static int
pg_entry_names_node(struct ledger_be *be, const char *id)
{
	struct params p = { 0 };
	PGresult *res = NULL;
	int r;

	p_text(&p, id, 0);
	if ((r = run(be, S_ENTRY_NODE, &p, "entries naming a node", &res, NULL)) != 0)
		return r;
	r = pqf.PQntuples_(res) > 0;
	pqf.PQclear_(res);
	return r;
}

static int
pg_revocation_seq(struct ledger_be *be, uint64_t *seq)
{
	PGresult *res = NULL;
	int r;

	*seq = 0;
	if ((r = run(be, S_REV_SEQ, NULL, "read the revocation sequence", &res, NULL)) != 0)
		return r;
	if (pqf.PQntuples_(res) != 1 || col_i64(res, 0, 0) < 0)
		r = hsm_err(HSM_EIO, "ledger: no revocation sequence row");
	else
		*seq = (uint64_t)col_i64(res, 0, 0);
	pqf.PQclear_(res);
	return r;
}

static int
pg_revocation_bump(struct ledger_be *be)
{
	int n = 0, r = run(be, S_REV_BUMP, NULL, "advance the revocation sequence", NULL, &n);

	return r != 0 ? r : n == 1 ? 0 : hsm_err(HSM_EIO, "ledger: no revocation sequence row");
}

static int
pg_revoked_list(struct ledger_be *be, int64_t now,
    int (*cb)(const char *serial, int64_t revoked_at, int reason, void *arg), void *arg)
{
	char serial[LEDGER_SERIAL_MAX + 1];
	struct params p = { 0 };
	PGresult *res = NULL;
	int r;

	p_i64(&p, now);
	if ((r = run(be, S_REV_LIST, &p, "list revoked certificates", &res, NULL)) == 0) {
		for (int i = 0; i < pqf.PQntuples_(res) && r == 0; i++) {
			if (col_text(res, i, 0, serial, sizeof(serial)) != 0) {
				r = hsm_err(HSM_EIO, "ledger: a revoked serial is too long");
				break;
			}
			r = cb(serial, col_i64(res, i, 1), (int)col_i64(res, i, 2), arg);
		}
	}
	pqf.PQclear_(res);
	return r;
}

/* ---- the CA set ---- */

/*
 * Inside a transaction, the CA set is read under a shared advisory lock
 * and changed under the exclusive one: an issuance (which reads the set)
 * never overlaps an activation or a retirement, and two changes of the
 * set run one after the other (two that both read first deadlock; the
 * server breaks it and ledger.c runs the loser again). Outside a
 * transaction a statement is atomic on its own.
 */
static int
ca_lock(struct ledger_be *be, int exclusive)
{
	if (!be->in_tx)
		return 0;
	return run(be, exclusive ? S_CA_LOCK : S_CA_LOCK_SH, NULL, "lock the CA set", NULL, NULL);
}

static int
pg_ca_insert(struct ledger_be *be, struct ledger_ca *c)
{
	struct params p = { 0 };
	PGresult *res = NULL;
	int r;

	if ((r = ca_lock(be, 1)) != 0)
		return r;
	p_text(&p, c->key_id, 0);
	p_i32(&p, (int32_t)c->state);
	if (c->cert != NULL)
		p_bytes(&p, c->cert, c->cert_len);
	else
		p_text(&p, NULL, 1);
	p_text(&p, c->chain, 0);
	p_text(&p, c->links, 0);
	p_i64(&p, c->created);
	r = run(be, S_CA_ADD, &p, "add CA", &res, NULL);
	if (r == HSM_EEXIST)
		return hsm_err(HSM_EEXIST, "ledger: CA key %.16s... already recorded (or a second "
		    "active CA)", c->key_id);
	if (r != 0)
		return r;
	if (pqf.PQntuples_(res) != 1)
		r = hsm_err(HSM_EIO, "ledger: add CA: no generation");
	else
		c->gen = (int)col_i64(res, 0, 0);
	pqf.PQclear_(res);
	return r;
}

static int
pg_ca_list(struct ledger_be *be, int (*cb)(const struct ledger_ca *c, void *arg), void *arg)
{
	struct ledger_ca c;
	PGresult *res = NULL;
	int r, n;

	if ((r = ca_lock(be, 0)) != 0 ||
	    (r = run(be, S_CA_LIST, NULL, "list CAs", &res, NULL)) != 0)
		return r;
	if (pqf.PQnfields_(res) != CA_NCOLS)
		r = hsm_err(HSM_EIO, "ledger: corrupt CA row");
	for (int i = 0; i < pqf.PQntuples_(res) && r == 0; i++) {
		memset(&c, 0, sizeof(c));
		c.gen = (int)col_i64(res, i, 0);
		if (col_text(res, i, 1, c.key_id, sizeof(c.key_id)) != 0) {
			r = hsm_err(HSM_EIO, "ledger: corrupt CA row");
			break;
		}
		c.state = (enum ledger_ca_state)col_i64(res, i, 2);
		if (!pqf.PQgetisnull_(res, i, 3)) {
			if ((n = pqf.PQgetlength_(res, i, 3)) <= 0) {
				r = hsm_err(HSM_EIO, "ledger: CA %d has an empty certificate", c.gen);
				break;
			}
			c.cert = (const uint8_t *)pqf.PQgetvalue_(res, i, 3);
			c.cert_len = (size_t)n;
		}
		/* libpq ends every value with a NUL; a NUL inside would cut the text short. */
		c.chain = pqf.PQgetisnull_(res, i, 4) ? "" : pqf.PQgetvalue_(res, i, 4);
		c.links = pqf.PQgetisnull_(res, i, 5) ? "" : pqf.PQgetvalue_(res, i, 5);
		c.created = col_i64(res, i, 6);
		c.changed = col_i64(res, i, 7);
		r = cb(&c, arg);
	}
	pqf.PQclear_(res);
	return r;
}

static int
pg_ca_set_cert(struct ledger_be *be, const char *key_id, const uint8_t *cert, size_t cert_len,
    const char *chain, const char *links, unsigned from_mask, int64_t now)
{
	struct params p = { 0 };
	int r, n;

	if ((r = ca_lock(be, 1)) != 0)
		return r;
	p_text(&p, key_id, 0);
	p_bytes(&p, cert, cert_len);
	p_text(&p, chain, 0);
	p_text(&p, links, 0);
	p_i32(&p, (int32_t)from_mask);
	p_i64(&p, now);
	r = run(be, S_CA_CERT, &p, "install CA certificate", NULL, &n);
	return r != 0 ? r : n;
}

static int
pg_ca_move(struct ledger_be *be, const char *key_id, int from, int to, int64_t now)
{
	struct params p = { 0 };
	int r, n;

	if ((r = ca_lock(be, 1)) != 0)
		return r;
	p_text(&p, key_id, 0);
	p_i32(&p, from);
	p_i32(&p, to);
	p_i64(&p, now);
	r = run(be, S_CA_MOVE, &p, "change CA state", NULL, &n);
	return r != 0 ? r : n;
}

static int
pg_ca_seq(struct ledger_be *be, int64_t *seq)
{
	PGresult *res = NULL;
	int r;

	*seq = 0;
	if ((r = run(be, S_CA_SEQ, NULL, "read CA sequence", &res, NULL)) != 0)
		return r;
	if (pqf.PQntuples_(res) != 1)
		r = hsm_err(HSM_EIO, "ledger: read CA sequence: no row");
	else
		*seq = col_i64(res, 0, 0);
	pqf.PQclear_(res);
	return r;
}

static int
pg_certs_outstanding(struct ledger_be *be, const char *key_id, int64_t now, unsigned *n,
    int64_t *latest)
{
	struct params p = { 0 };
	PGresult *res = NULL;
	int r;

	*n = 0;
	*latest = 0;
	p_text(&p, key_id, 0);
	p_i64(&p, now);
	if ((r = run(be, S_CERTS_OUT, &p, "count outstanding certificates", &res, NULL)) != 0)
		return r;
	if (pqf.PQntuples_(res) != 1 || pqf.PQnfields_(res) != 2) {
		r = hsm_err(HSM_EIO, "ledger: count outstanding certificates: no row");
	} else {
		*n = (unsigned)col_i64(res, 0, 0);
		*latest = col_i64(res, 0, 1);
	}
	pqf.PQclear_(res);
	return r;
}

static int
pg_certs_tag_issuer(struct ledger_be *be, const char *key_id)
{
	struct params p = { 0 };

	p_text(&p, key_id, 0);
	return run(be, S_CERTS_TAG, &p, "record the issuer of earlier certificates", NULL, NULL);
}

const struct ledger_ops ledger_pg_ops = {
	.name = "postgresql",
	.claims = pg_claims,
	.open = pg_open,
	.close = pg_close,
	.migrations = migrations,
	.migrate_begin = pg_migrate_begin,
	.schema_version = pg_schema_version,
	.exec = pg_exec,
	.version_add = pg_version_add,
	.ready = pg_ready,
	.begin = pg_begin,
	.id_lock = pg_id_lock,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.token_insert = pg_token_insert,
	.token_get = pg_token_get,
	.token_use = pg_token_use,
	.token_unuse = pg_token_unuse,
	.cert_insert = pg_cert_insert,
	.cert_get = pg_cert_get,
	.cert_supersede = pg_cert_supersede,
	.cert_revoke = pg_cert_revoke,
	.certs_revoke_id = pg_certs_revoke_id,
	.id_revoke = pg_id_revoke,
	.id_revoked = pg_id_revoked,
	.id_reinstate = pg_id_reinstate,
	.cert_count = pg_cert_count,
	.cert_list_id = pg_cert_list_id,
	.cert_kinds = pg_cert_kinds,
	.entry_insert = pg_entry_insert,
	.entry_get = pg_entry_get,
	.entry_delete = pg_entry_delete,
	.entry_list = pg_entry_list,
	.entry_names_node = pg_entry_names_node,
	.revocation_seq = pg_revocation_seq,
	.revocation_bump = pg_revocation_bump,
	.revoked_list = pg_revoked_list,
	.ca_insert = pg_ca_insert,
	.ca_list = pg_ca_list,
	.ca_set_cert = pg_ca_set_cert,
	.ca_move = pg_ca_move,
	.ca_seq = pg_ca_seq,
	.certs_outstanding = pg_certs_outstanding,
	.certs_tag_issuer = pg_certs_tag_issuer,
};
