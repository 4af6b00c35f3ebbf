/*
 * test_ledger.c - the CA ledger: join tokens, certificates, renewals,
 * revocation, transactions, threads, and processes sharing one store as
 * CA replicas do.
 *
 * The same suite runs against every backend in backends[]: SQLite, and
 * PostgreSQL on the server named by $HSMESH_TEST_PG (a libpq URI; tests/
 * integration/pg.sh starts a throwaway one and tests/run.sh runs this
 * program under it with HSMESH_TEST_LEDGER=postgresql). Each test gets a
 * store of its own: an SQLite file in a temporary directory, or a
 * PostgreSQL schema (search_path) in that database. Tests of what only a
 * file-backed store has (file mode, symbolic links, a missing directory)
 * run for SQLite only, and those of a server (a password in the URI, a
 * lost connection) for PostgreSQL only.
 *
 * HSMESH_TEST_LEDGER picks the backends: "sqlite", "postgresql" (then
 * HSMESH_TEST_PG must be set: a missing server is a failure, never a
 * skip), or unset: SQLite, and PostgreSQL too when HSMESH_TEST_PG is set.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "err.h"
#include "ledger.h"

#define NTHREADS 8
#define NTOKENS 200
#define ID "spiffe://example.org/ns/web"

/* A store the suite runs against. */
struct backend {
	const char *name;
	int is_file;	/* a file path: mode, links and directories apply */
	/* The location (ca.yaml's database) of a fresh store for one test in dir. */
	int (*location)(const char *dir, char *buf, size_t cap);
	/* Run SQL on the store behind location, beside the ledger (schema tests). */
	int (*exec)(const char *location, const char *sql);
};

static int
sqlite_location(const char *d, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/ledger.db", d);

	return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int
sqlite_exec(const char *location, const char *sql)
{
	sqlite3 *db = NULL;
	int rc;

	if (sqlite3_open(location, &db) != SQLITE_OK) {
		sqlite3_close(db);
		return -1;
	}
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

/* The PostgreSQL server of the run, and a schema per test in its database. */
static int
pg_location(const char *d, char *buf, size_t cap)
{
	static unsigned n;
	const char *base = getenv("HSMESH_TEST_PG");
	char schema[64], sql[128];
	PGconn *c;
	PGresult *r;
	int ok, k;

	if (base == NULL)
		return -1;
	snprintf(schema, sizeof(schema), "t%u_%u", (unsigned)getpid(), n++);
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
	if ((c = PQconnectdb(base)) == NULL || PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "# cannot reach $HSMESH_TEST_PG: %s", c ? PQerrorMessage(c) : "?");
		PQfinish(c);
		return -1;
	}
	r = PQexec(c, sql);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	PQfinish(c);
	k = snprintf(buf, cap, "%s%coptions=-c%%20search_path%%3D%s", base,
	    strchr(base, '?') != NULL ? '&' : '?', schema);
	return ok && k > 0 && (size_t)k < cap ? 0 : -1;
}

static int
pg_exec(const char *location, const char *sql)
{
	PGconn *c = PQconnectdb(location);
	PGresult *r;
	int ok;

	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		PQfinish(c);
		return -1;
	}
	r = PQexec(c, sql);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "# %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return ok ? 0 : -1;
}

static const struct backend backends[] = {
	{ "sqlite", 1, sqlite_location, sqlite_exec },
	{ "postgresql", 0, pg_location, pg_exec },
};

static const struct backend *be;	/* the backend of the group running */
static char dir[64];
static char dbpath[1024];		/* its store's location */

static int
setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hsmesh-test-ledger-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	return be->location(dir, dbpath, sizeof(dbpath));
}

static int
teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct ledger *
open_ledger(void)
{
	struct ledger *lg = NULL;

	assert_int_equal(ledger_open(dbpath, &lg), 0);
	assert_non_null(lg);
	return lg;
}

static void
hash_of(const char *secret, uint8_t h[LEDGER_HASH_LEN])
{
	size_t i;

	/* Any 32 bytes will do: the ledger never sees the secret. */
	memset(h, 0, LEDGER_HASH_LEN);
	for (i = 0; secret[i] != '\0'; i++)
		h[i % LEDGER_HASH_LEN] ^= (uint8_t)(secret[i] + i);
}

/* A certificate record with a fake DER. */
static void
make_cert(struct ledger_cert *c, const char *serial, const char *id, int64_t nb, int64_t na,
    const char *auth, const char *parent)
{
	static uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };

	memset(c, 0, sizeof(*c));
	snprintf(c->serial, sizeof(c->serial), "%s", serial);
	snprintf(c->spiffe_id, sizeof(c->spiffe_id), "%s", id);
	snprintf(c->spki_id, sizeof(c->spki_id), "%064x", (unsigned)nb);
	c->not_before = nb;
	c->not_after = na;
	snprintf(c->auth, sizeof(c->auth), "%s", auth);
	snprintf(c->parent_serial, sizeof(c->parent_serial), "%s", parent ? parent : "");
	c->der = der;
	c->der_len = sizeof(der);
}

/* A consumption that led to no certificate can be given back, once. */
static void
token_unconsume(void **state)
{
	struct ledger *lg = open_ledger();
	uint8_t h[LEDGER_HASH_LEN];
	int64_t now = 1000000;

	hash_of("s", h);
	assert_int_equal(ledger_token_add(lg, "ref-u", h, "spiffe://example.org/u", now + 60), 0);
	assert_int_equal(ledger_token_consume(lg, "ref-u", now), 0);
	/* Only the consumption at that exact time is undone. */
	assert_int_equal(ledger_token_unconsume(lg, "ref-u", now + 1), HSM_ENOENT);
	assert_int_equal(ledger_token_unconsume(lg, "ref-u", now), 0);
	assert_int_equal(ledger_token_unconsume(lg, "ref-u", now), HSM_ENOENT);
	assert_int_equal(ledger_token_unconsume(lg, "no-such", now), HSM_ENOENT);
	/* Usable again, and single-use again. */
	assert_int_equal(ledger_token_consume(lg, "ref-u", now + 2), 0);
	assert_int_equal(ledger_token_consume(lg, "ref-u", now + 3), HSM_EPOLICY);
	ledger_close(lg);
}

static void
open_errors(void **state)
{
	struct ledger *lg = (struct ledger *)1;

	assert_int_equal(ledger_open("", &lg), HSM_EINVAL);
	assert_null(lg);
	lg = (struct ledger *)1;
	assert_int_equal(ledger_open("mysql://db.example.org/ca", &lg), HSM_EUNSUPPORTED);
	assert_null(lg);
	ledger_close(NULL);
}

/* What only a file-backed store has: a missing directory, the file's mode, links. */
static void
open_errors_file(void **state)
{
	struct ledger *lg = (struct ledger *)1;
	char p[160];
	struct stat st;

	snprintf(p, sizeof(p), "%s/missing/ledger.db", dir);
	assert_int_equal(ledger_open(p, &lg), HSM_ENOENT);
	assert_null(lg);
	assert_non_null(strstr(hsm_err_detail(), "directory does not exist"));

	lg = open_ledger();
	assert_int_equal(stat(dbpath, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	ledger_close(lg);

	/* The database file itself may not be a symbolic link. */
	snprintf(p, sizeof(p), "%s/link.db", dir);
	assert_int_equal(symlink(dbpath, p), 0);
	assert_int_equal(ledger_open(p, &lg), HSM_EIO);
	assert_null(lg);
}

static void
token_single_use(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_token t;
	uint8_t h[LEDGER_HASH_LEN];
	int64_t now = time(NULL);

	hash_of("s3cret", h);
	assert_int_equal(ledger_token_add(lg, "tok1", h, ID, now + 600), 0);
	assert_int_equal(ledger_token_add(lg, "tok1", h, ID, now + 600), HSM_EEXIST);

	assert_int_equal(ledger_token_lookup(lg, "tok1", &t), 0);
	assert_memory_equal(t.hash, h, sizeof(h));
	assert_string_equal(t.spiffe_id, ID);
	assert_int_equal(t.expires, now + 600);
	assert_true(t.created >= now - 1 && t.created <= now + 5);
	assert_int_equal(t.used, 0);

	/* checking is not consuming */
	assert_int_equal(ledger_token_check(lg, "tok1", now), 0);
	assert_int_equal(ledger_token_check(lg, "tok1", now), 0);
	assert_int_equal(ledger_token_consume(lg, "tok1", now), 0);
	assert_int_equal(ledger_token_consume(lg, "tok1", now + 1), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "join token already used");
	assert_int_equal(ledger_token_check(lg, "tok1", now + 1), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "join token already used");
	assert_int_equal(ledger_token_check(lg, "nope", now), HSM_ENOENT);
	assert_int_equal(ledger_token_check(lg, NULL, now), HSM_ENOENT);

	assert_int_equal(ledger_token_lookup(lg, "tok1", &t), 0);
	assert_int_equal(t.used, 1);
	assert_int_equal(t.used_at, now);
	ledger_close(lg);

	/* Still used after a reopen. */
	lg = open_ledger();
	assert_int_equal(ledger_token_consume(lg, "tok1", now + 2), HSM_EPOLICY);
	ledger_close(lg);
}

static void
token_expired(void **state)
{
	struct ledger *lg = open_ledger();
	uint8_t h[LEDGER_HASH_LEN];

	hash_of("x", h);
	assert_int_equal(ledger_token_add(lg, "old", h, ID, 1000), 0);
	/* Valid while now < expires. */
	assert_int_equal(ledger_token_check(lg, "old", 999), 0);
	assert_int_equal(ledger_token_check(lg, "old", 1000), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "join token expired");
	assert_int_equal(ledger_token_consume(lg, "old", 1000), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "join token expired");
	assert_int_equal(ledger_token_consume(lg, "old", 5000), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "join token expired");
	assert_int_equal(ledger_token_consume(lg, "old", 999), 0);
	assert_int_equal(ledger_token_consume(lg, "old", 999), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "join token already used");
	ledger_close(lg);
}

static void
token_unknown(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_token t;
	uint8_t h[LEDGER_HASH_LEN];
	char longref[LEDGER_REF_MAX + 2];

	memset(&t, 0xa5, sizeof(t));
	assert_int_equal(ledger_token_lookup(lg, "nope", &t), HSM_ENOENT);
	assert_int_equal(t.used, 0);
	assert_int_equal(t.spiffe_id[0], '\0');
	assert_int_equal(ledger_token_consume(lg, "nope", time(NULL)), HSM_ENOENT);
	/* Peer-supplied junk is just unknown, including SQL. */
	assert_int_equal(ledger_token_consume(lg, "' OR 1=1 --", time(NULL)), HSM_ENOENT);
	memset(longref, 'a', sizeof(longref) - 1);
	longref[sizeof(longref) - 1] = '\0';
	assert_int_equal(ledger_token_lookup(lg, longref, &t), HSM_ENOENT);
	assert_int_equal(ledger_token_consume(lg, NULL, 0), HSM_ENOENT);

	/* What a caller may create is checked. */
	hash_of("x", h);
	assert_int_equal(ledger_token_add(lg, longref, h, ID, 10), HSM_EINVAL);
	assert_int_equal(ledger_token_add(lg, "", h, ID, 10), HSM_EINVAL);
	assert_int_equal(ledger_token_add(lg, "has space", h, ID, 10), HSM_EINVAL);
	assert_int_equal(ledger_token_add(lg, "ok", h, "not-a-spiffe-id", 10), HSM_EINVAL);
	assert_int_equal(ledger_token_add(lg, "ok", NULL, ID, 10), HSM_EINVAL);
	ledger_close(lg);
}

static void
cert_add_get_revoke(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_cert c, g;
	uint64_t n = 99;

	make_cert(&c, "0A1B2C", ID, 100, 4000000000LL, "token:tok1", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	/*
	 * Serials compare case-insensitively and without leading zeros
	 * (stored lower-case, stripped): openssl x509 -serial prints "0A1B2C".
	 */
	make_cert(&c, "0a1b2c", ID, 100, 4000000000LL, "token:tok1", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EEXIST);
	make_cert(&c, "A1B2C", ID, 100, 4000000000LL, "token:tok1", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EEXIST);
	assert_int_equal(ledger_cert_count(lg, &n), 0);
	assert_int_equal(n, 1);

	assert_int_equal(ledger_cert_get(lg, "000a1b2c", &g), 0);
	ledger_cert_clear(&g);
	assert_int_equal(ledger_cert_get(lg, "0a1b2c", &g), 0);
	assert_string_equal(g.serial, "a1b2c");
	assert_string_equal(g.spiffe_id, ID);
	assert_int_equal(strlen(g.spki_id), LEDGER_SPKI_ID_LEN);
	assert_int_equal(g.not_before, 100);
	assert_int_equal(g.not_after, 4000000000LL);
	assert_string_equal(g.auth, "token:tok1");
	assert_string_equal(g.parent_serial, "");
	assert_int_equal(g.revoked, 0);
	assert_int_equal(g.der_len, c.der_len);
	assert_memory_equal(g.der, c.der, c.der_len);
	assert_true(g.der != c.der);
	ledger_cert_clear(&g);
	assert_null(g.der);
	ledger_cert_clear(NULL);

	assert_int_equal(ledger_cert_get(lg, "ffff", &g), HSM_ENOENT);
	assert_null(g.der);
	assert_int_equal(ledger_cert_get(lg, "xyz", &g), HSM_EINVAL);
	assert_int_equal(ledger_cert_revoke(lg, "ffff", 1, 200), HSM_ENOENT);
	assert_int_equal(ledger_cert_revoke(lg, "0A1B2C", 7, 200), HSM_EINVAL);
	assert_int_equal(ledger_cert_revoke(lg, "0A1B2C", 11, 200), HSM_EINVAL);

	assert_int_equal(ledger_cert_revoke(lg, "0A1B2C", 1, 200), 0);
	/* A second revocation succeeds and keeps the first. */
	assert_int_equal(ledger_cert_revoke(lg, "a1b2c", 4, 300), 0);
	assert_int_equal(ledger_cert_get(lg, "0A1B2C", &g), 0);
	assert_int_equal(g.revoked, 1);
	assert_int_equal(g.revoked_at, 200);
	assert_int_equal(g.reason, 1);
	ledger_cert_clear(&g);

	/* Bad records are refused. */
	make_cert(&c, "01", ID, 100, 50, "offline", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	make_cert(&c, "01", ID, 100, 200, "", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	make_cert(&c, "01", ID, 100, 200, "offline", "zz");
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	make_cert(&c, "01", "spiffe://", 100, 200, "offline", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	make_cert(&c, "01", ID, 100, 200, "offline", NULL);
	c.spki_id[10] = 'g';
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	make_cert(&c, "01", ID, 100, 200, "offline", NULL);
	c.der_len = 0;
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	assert_int_equal(ledger_cert_count(lg, &n), 0);
	assert_int_equal(n, 1);
	ledger_close(lg);
}

struct chain {
	int n;
	char serials[8][LEDGER_SERIAL_MAX + 1];
	char parents[8][LEDGER_SERIAL_MAX + 1];
	struct ledger *lg;
	int stop_at;
};

static int
collect(const struct ledger_cert *c, void *arg)
{
	struct chain *ch = arg;

	if (ch->lg != NULL)	/* re-entry is refused, not a deadlock */
		return ledger_cert_count(ch->lg, &(uint64_t){ 0 });
	if (ch->n >= 8)
		return -100;
	snprintf(ch->serials[ch->n], sizeof(ch->serials[0]), "%s", c->serial);
	snprintf(ch->parents[ch->n], sizeof(ch->parents[0]), "%s", c->parent_serial);
	ch->n++;
	return ch->n == ch->stop_at ? 42 : 0;
}

static void
revoke_id_and_chain(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_cert c, g;
	struct chain ch;
	int64_t now = 10000;
	unsigned count = 99;

	/* A renewal chain a -> b -> c, an expired one and another ID. */
	make_cert(&c, "0a", ID, 1000, 5000, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	make_cert(&c, "0b", ID, 4000, 20000, "kur:0a", "0a");
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	make_cert(&c, "0c", ID, 9000, 30000, "kur:0b", "0B");
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	make_cert(&c, "0d", "spiffe://example.org/other", 9000, 30000, "offline", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);

	memset(&ch, 0, sizeof(ch));
	assert_int_equal(ledger_cert_list_id(lg, ID, collect, &ch), 0);
	assert_int_equal(ch.n, 3);
	/* Stored in the one spelling: lower case, no leading zeros. */
	assert_string_equal(ch.serials[0], "a");
	assert_string_equal(ch.serials[1], "b");
	assert_string_equal(ch.serials[2], "c");
	assert_string_equal(ch.parents[0], "");
	assert_string_equal(ch.parents[1], "a");
	assert_string_equal(ch.parents[2], "b");
	memset(&ch, 0, sizeof(ch));
	ch.stop_at = 2;
	assert_int_equal(ledger_cert_list_id(lg, ID, collect, &ch), 42);
	assert_int_equal(ch.n, 2);
	memset(&ch, 0, sizeof(ch));
	ch.lg = lg;
	assert_int_equal(ledger_cert_list_id(lg, ID, collect, &ch), HSM_EBUSY);
	/* And the ledger still works after that. */
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(ledger_cert_list_id(lg, "spiffe://example.org/none", collect, &ch), 0);
	assert_int_equal(ch.n, 0);

	assert_false(ledger_id_revoked(lg, ID));
	assert_int_equal(ledger_revoke_id(lg, ID, 1, now, &count), 0);
	/* 0a had expired: only 0b and 0c were current. */
	assert_int_equal(count, 2);
	assert_true(ledger_id_revoked(lg, ID));
	assert_false(ledger_id_revoked(lg, "spiffe://example.org/other"));
	assert_int_equal(ledger_cert_get(lg, "0a", &g), 0);
	assert_int_equal(g.revoked, 0);
	ledger_cert_clear(&g);
	assert_int_equal(ledger_cert_get(lg, "0c", &g), 0);
	assert_int_equal(g.revoked, 1);
	assert_int_equal(g.revoked_at, now);
	ledger_cert_clear(&g);
	assert_int_equal(ledger_cert_get(lg, "0d", &g), 0);
	assert_int_equal(g.revoked, 0);
	ledger_cert_clear(&g);

	/* Again: nothing left to revoke, still revoked. */
	assert_int_equal(ledger_revoke_id(lg, ID, 1, now + 1, &count), 0);
	assert_int_equal(count, 0);
	assert_true(ledger_id_revoked(lg, ID));
	ledger_close(lg);

	lg = open_ledger();
	assert_true(ledger_id_revoked(lg, ID));
	assert_int_equal(ledger_revoke_id(lg, "bogus", 1, now, &count), HSM_EINVAL);
	assert_int_equal(ledger_id_reinstate(lg, ID), 0);
	assert_false(ledger_id_revoked(lg, ID));
	assert_int_equal(ledger_id_reinstate(lg, ID), HSM_ENOENT);
	/* Revoking an ID with no certificate still records it. */
	assert_int_equal(ledger_revoke_id(lg, "spiffe://example.org/new", 0, now, NULL), 0);
	assert_true(ledger_id_revoked(lg, "spiffe://example.org/new"));
	ledger_close(lg);
}

static void
schema_version(void **state)
{
	struct ledger *lg = open_ledger();
	uint8_t h[LEDGER_HASH_LEN];

	hash_of("k", h);
	assert_int_equal(ledger_token_add(lg, "keep", h, ID, 4000000000LL), 0);
	ledger_close(lg);
	/* Reopening an up-to-date ledger keeps its rows. */
	lg = open_ledger();
	assert_int_equal(ledger_token_consume(lg, "keep", 1), 0);
	ledger_close(lg);

	/* A ledger from a newer program is refused. */
	assert_int_equal(be->exec(dbpath, "UPDATE schema_version SET version = 99"), 0);
	lg = (struct ledger *)1;
	assert_int_equal(ledger_open(dbpath, &lg), HSM_EIO);
	assert_null(lg);
	assert_non_null(strstr(hsm_err_detail(), "newer"));
}

/* Threads: a shared handle, or one handle each (like separate processes). */
struct race {
	struct ledger *shared;
	int ntok;
	int wins[NTHREADS];
	int errors[NTHREADS];
	int idx;
	pthread_barrier_t *bar;
};

struct race_arg {
	struct race *race;
	int idx;
};

static void *
racer(void *p)
{
	struct race_arg *a = p;
	struct race *rc = a->race;
	struct ledger *lg = rc->shared;
	struct ledger_cert c;
	char ref[32], serial[32];
	int i, r, start;

	if (lg == NULL && ledger_open(dbpath, &lg) != 0) {
		rc->errors[a->idx]++;
		pthread_barrier_wait(rc->bar);
		return NULL;
	}
	pthread_barrier_wait(rc->bar);
	/* Each thread walks the tokens from a different place. */
	start = a->idx * (rc->ntok / NTHREADS + 1);
	for (i = 0; i < rc->ntok; i++) {
		int k = (start + i) % rc->ntok;

		snprintf(ref, sizeof(ref), "race%d", k);
		r = ledger_token_consume(lg, ref, 1000);
		if (r == 0) {
			rc->wins[a->idx]++;
			snprintf(serial, sizeof(serial), "%x", 0x1000 + k);
			make_cert(&c, serial, ID, 1000 + k, 2000000, "token:race", NULL);
			if (ledger_cert_add(lg, &c) != 0)
				rc->errors[a->idx]++;
		} else if (r != HSM_EPOLICY) {
			rc->errors[a->idx]++;
		}
	}
	if (rc->shared == NULL)
		ledger_close(lg);
	return NULL;
}

static void
run_race(int ntok, int shared, int *wins)
{
	pthread_t th[NTHREADS];
	struct race_arg args[NTHREADS];
	pthread_barrier_t bar;
	struct race rc;
	struct ledger *lg = open_ledger();
	uint8_t h[LEDGER_HASH_LEN];
	uint64_t n = 0;
	char ref[32];
	int i;

	hash_of("race", h);
	for (i = 0; i < ntok; i++) {
		snprintf(ref, sizeof(ref), "race%d", i);
		assert_int_equal(ledger_token_add(lg, ref, h, ID, 2000), 0);
	}
	memset(&rc, 0, sizeof(rc));
	rc.shared = shared ? lg : NULL;
	rc.ntok = ntok;
	rc.bar = &bar;
	assert_int_equal(pthread_barrier_init(&bar, NULL, NTHREADS), 0);
	for (i = 0; i < NTHREADS; i++) {
		args[i].race = &rc;
		args[i].idx = i;
		assert_int_equal(pthread_create(&th[i], NULL, racer, &args[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	*wins = 0;
	for (i = 0; i < NTHREADS; i++) {
		assert_int_equal(rc.errors[i], 0);
		*wins += rc.wins[i];
	}
	assert_int_equal(ledger_cert_count(lg, &n), 0);
	assert_int_equal(n, (uint64_t)*wins);
	ledger_close(lg);
}

static void
race_one_token_shared(void **state)
{
	int wins;

	run_race(1, 1, &wins);
	assert_int_equal(wins, 1);
}

static void
race_one_token_handles(void **state)
{
	int wins;

	run_race(1, 0, &wins);
	assert_int_equal(wins, 1);
}

static void
race_many_tokens(void **state)
{
	int wins;

	run_race(NTOKENS, 1, &wins);
	assert_int_equal(wins, NTOKENS);
}

static void
race_many_tokens_handles(void **state)
{
	int wins;

	run_race(NTOKENS, 0, &wins);
	assert_int_equal(wins, NTOKENS);
}

/* The ledger says serial was renewed by want ("" when by nothing). */
static void
assert_renewed_by(struct ledger *lg, const char *serial, const char *want)
{
	struct ledger_cert g;

	assert_int_equal(ledger_cert_get(lg, serial, &g), 0);
	assert_string_equal(g.superseded_by, want);
	ledger_cert_clear(&g);
}

/* Each certificate is renewed at most once: the chain's newest may renew, nothing else. */
static void
renewal_chain_never_forks(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_cert c, g;
	uint64_t n = 0;

	make_cert(&c, "0a", ID, 1000, 50000, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	assert_renewed_by(lg, "a", "");
	make_cert(&c, "0b", ID, 2000, 50000, "kur:a", "0A");
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	/* a second renewal of a: refused, with the serial that renewed it */
	make_cert(&c, "0c", ID, 3000, 50000, "kur:a", "a");
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "certificate already renewed (superseded by serial b)");
	assert_int_equal(ledger_cert_get(lg, "c", &g), HSM_ENOENT);
	assert_renewed_by(lg, "a", "b");
	/* the newest renews */
	make_cert(&c, "0c", ID, 3000, 50000, "kur:b", "b");
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	assert_int_equal(ledger_cert_get(lg, "b", &g), 0);
	assert_string_equal(g.superseded_by, "c");
	assert_string_equal(g.parent_serial, "a");
	ledger_cert_clear(&g);
	/* a renewal of nothing known, and of itself */
	make_cert(&c, "0d", ID, 3000, 50000, "kur:ff", "ff");
	assert_int_equal(ledger_cert_add(lg, &c), HSM_ENOENT);
	make_cert(&c, "0d", ID, 3000, 50000, "kur:d", "d");
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	/* a revoked certificate renews nothing, even when it is the newest */
	assert_int_equal(ledger_cert_revoke(lg, "c", 1, 4000), 0);
	make_cert(&c, "0d", ID, 3000, 50000, "kur:c", "c");
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "certificate revoked");
	assert_renewed_by(lg, "c", "");
	assert_int_equal(ledger_cert_count(lg, &n), 0);
	assert_int_equal(n, 3);
	ledger_close(lg);
}

/* ledger_issue: the token, the renewal and the certificate, all or nothing. */
static void
issue_is_one_transaction(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_token t;
	struct ledger_cert c, g;
	uint8_t h[LEDGER_HASH_LEN];
	int64_t now = 100000;
	uint64_t n = 0;
	char ref[8];

	hash_of("tx", h);
	for (int i = 1; i <= 6; i++) {
		snprintf(ref, sizeof(ref), "t%d", i);
		assert_int_equal(ledger_token_add(lg, ref, h, ID, i == 5 ? now : now + 600), 0);
	}
	make_cert(&c, "10", ID, now, now + 3600, "token:t1", NULL);
	assert_int_equal(ledger_issue(lg, &c, "t1", now), 0);
	assert_int_equal(ledger_token_lookup(lg, "t1", &t), 0);
	assert_int_equal(t.used, 1);
	assert_int_equal(t.used_at, now);
	/* the certificate cannot be recorded (its serial is taken): the token stays unused */
	make_cert(&c, "10", ID, now, now + 3600, "token:t2", NULL);
	assert_int_equal(ledger_issue(lg, &c, "t2", now), HSM_EEXIST);
	assert_int_equal(ledger_token_lookup(lg, "t2", &t), 0);
	assert_int_equal(t.used, 0);
	/* a renewal already made: neither the token nor the certificate */
	make_cert(&c, "11", ID, now, now + 3600, "kur:10", "10");
	assert_int_equal(ledger_issue(lg, &c, "t3", now), 0);
	make_cert(&c, "12", ID, now, now + 3600, "kur:10", "10");
	assert_int_equal(ledger_issue(lg, &c, "t4", now), HSM_EPOLICY);
	assert_int_equal(ledger_token_lookup(lg, "t4", &t), 0);
	assert_int_equal(t.used, 0);
	/* a renewal of an unknown certificate */
	make_cert(&c, "12", ID, now, now + 3600, "kur:99", "99");
	assert_int_equal(ledger_issue(lg, &c, "t4", now), HSM_ENOENT);
	assert_int_equal(ledger_token_lookup(lg, "t4", &t), 0);
	assert_int_equal(t.used, 0);
	/* a used, an expired, an unknown token: no certificate */
	make_cert(&c, "12", ID, now, now + 3600, "token:t1", NULL);
	assert_int_equal(ledger_issue(lg, &c, "t1", now + 1), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "join token already used");
	assert_int_equal(ledger_issue(lg, &c, "t5", now), HSM_EPOLICY);
	assert_string_equal(hsm_err_detail(), "join token expired");
	assert_int_equal(ledger_issue(lg, &c, "nope", now), HSM_ENOENT);
	assert_int_equal(ledger_cert_get(lg, "12", &g), HSM_ENOENT);
	assert_int_equal(ledger_cert_count(lg, &n), 0);
	assert_int_equal(n, 2);
	/* and the tokens left unused still work, once */
	assert_int_equal(ledger_issue(lg, &c, "t4", now), 0);
	assert_int_equal(ledger_issue(lg, &c, "t6", now), HSM_EEXIST);
	ledger_close(lg);
}

/* Take what schema 7 added away from the store at path (it then reads as schema 6). */
static void
drop_v7(const char *path)
{
	assert_int_equal(be->exec(path, "ALTER TABLE certs DROP COLUMN issuer"), 0);
	assert_int_equal(be->exec(path, "DROP TABLE cas"), 0);
}

/* Take what schema 6 and later added away from the store at path (it then reads as schema 5). */
static void
drop_v6(const char *path)
{
	drop_v7(path);
	assert_int_equal(be->exec(path, "ALTER TABLE entries DROP COLUMN profile"), 0);
	assert_int_equal(be->exec(path, "ALTER TABLE entries DROP COLUMN nf_types"), 0);
	assert_int_equal(be->exec(path, "ALTER TABLE entries DROP COLUMN fqdn"), 0);
}

/* Take what schema 5 and later added away from the store at path (it then reads as schema 4). */
static void
drop_v5(const char *path)
{
	drop_v6(path);
	assert_int_equal(be->exec(path, "DROP INDEX certs_revoked"), 0);
	assert_int_equal(be->exec(path, "DROP TABLE revocation_seq"), 0);
}

/* Take what schema 4 and later added away from the store at path (it then reads as schema 3). */
static void
drop_v4(const char *path)
{
	drop_v5(path);
	assert_int_equal(be->exec(path, "ALTER TABLE certs DROP COLUMN txn"), 0);
	assert_int_equal(be->exec(path, "ALTER TABLE tokens DROP COLUMN serial"), 0);
}

/* Make the store at path read as schema version v. */
static void
set_version(const char *path, int v)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "DELETE FROM schema_version;"
	    "INSERT INTO schema_version (version) VALUES (%d)", v);
	assert_int_equal(be->exec(path, sql), 0);
}

/* Take what schema 3 added away from the store at path (it then reads as schema 2). */
static void
drop_v3(const char *path)
{
	assert_int_equal(be->exec(path, "ALTER TABLE tokens DROP COLUMN kind"), 0);
	assert_int_equal(be->exec(path, "ALTER TABLE certs DROP COLUMN kind"), 0);
	assert_int_equal(be->exec(path, "ALTER TABLE certs DROP COLUMN node_id"), 0);
	assert_int_equal(be->exec(path, "DROP TABLE entries"), 0);
}

/* ledger_issue_with's hook: its record decides, inside the transaction. */
struct hook {
	int calls, ret;
	struct ledger *lg;
	int busy;		/* what a ledger call from inside the hook returned */
};

static int
hook_fn(void *arg)
{
	struct hook *h = arg;
	struct ledger_token t;

	h->calls++;
	/* The ledger is held by the transaction: re-entering it is refused, not a deadlock. */
	h->busy = ledger_token_lookup(h->lg, "h1", &t);
	return h->ret;
}

static void
issue_with_hook(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_token t;
	struct ledger_cert c, g;
	struct hook h = { 0, 0, NULL, 0 };
	uint8_t hh[LEDGER_HASH_LEN];
	int64_t now = 100000;
	int ran = -1;

	h.lg = lg;
	hash_of("hk", hh);
	assert_int_equal(ledger_token_add(lg, "h1", hh, ID, now + 600), 0);
	assert_int_equal(ledger_token_add(lg, "h2", hh, ID, now + 600), 0);
	/* The hook fails (the audit line could not be written): nothing happened. */
	h.ret = hsm_err(HSM_EIO, "audit log write failed: No space left on device");
	make_cert(&c, "20", ID, now, now + 3600, "token:h1", NULL);
	assert_int_equal(ledger_issue_with(lg, &c, "h1", now, hook_fn, &h, &ran), HSM_EIO);
	assert_int_equal(h.calls, 1);
	assert_int_equal(h.busy, HSM_EBUSY);
	assert_int_equal(ran, 0);
	assert_int_equal(ledger_token_lookup(lg, "h1", &t), 0);
	assert_int_equal(t.used, 0);
	assert_int_equal(ledger_cert_get(lg, "20", &g), HSM_ENOENT);
	/* A refusal before it: the hook is never asked (no record of an issuance that is not). */
	h.ret = 0;
	h.calls = 0;
	make_cert(&c, "21", ID, now, now + 3600, "kur:99", "99");
	assert_int_equal(ledger_issue_with(lg, &c, "h2", now, hook_fn, &h, &ran), HSM_ENOENT);
	assert_int_equal(h.calls, 0);
	assert_int_equal(ran, 0);
	/* The hook succeeds: all of it is recorded, and ran says so. */
	make_cert(&c, "20", ID, now, now + 3600, "token:h1", NULL);
	assert_int_equal(ledger_issue_with(lg, &c, "h1", now, hook_fn, &h, &ran), 0);
	assert_int_equal(h.calls, 1);
	assert_int_equal(ran, 1);
	assert_int_equal(ledger_token_lookup(lg, "h1", &t), 0);
	assert_int_equal(t.used, 1);
	assert_int_equal(ledger_cert_get(lg, "20", &g), 0);
	ledger_cert_clear(&g);
	ledger_close(lg);
}

/*
 * A ledger of schema 1 that already holds a fork (two renewals of one
 * certificate, as that program allowed): the first renewal counts.
 */
static void
migrate_v1_with_fork(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_cert c, g;

	make_cert(&c, "a", ID, 1000, 50000, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	make_cert(&c, "b", ID, 2000, 50000, "kur:a", "a");
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	ledger_close(lg);
	/* what schema 1 looked like, with the fork a -> c beside a -> b */
	assert_int_equal(be->exec(dbpath, "INSERT INTO certs (serial, spiffe_id, spki_id, "
	    "not_before, not_after, auth, parent_serial, recorded, der) SELECT 'c', spiffe_id, "
	    "spki_id, not_before, not_after, auth, parent_serial, recorded, der FROM certs "
	    "WHERE serial = 'b'"), 0);
	assert_int_equal(be->exec(dbpath, "ALTER TABLE certs DROP COLUMN superseded_by"), 0);
	drop_v4(dbpath);
	drop_v3(dbpath);
	set_version(dbpath, 1);

	lg = open_ledger();
	assert_renewed_by(lg, "a", "b");
	assert_int_equal(ledger_cert_get(lg, "c", &g), 0);
	assert_string_equal(g.parent_serial, "a");
	assert_string_equal(g.superseded_by, "");
	ledger_cert_clear(&g);
	make_cert(&c, "d", ID, 3000, 50000, "kur:a", "a");
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EPOLICY);
	make_cert(&c, "d", ID, 3000, 50000, "kur:b", "b");
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	ledger_close(lg);
	/* and reopening a migrated ledger changes nothing */
	lg = open_ledger();
	assert_renewed_by(lg, "b", "d");
	ledger_close(lg);
}

/*
 * A join token names the certificate it paid for, a certificate the CMP
 * transaction that asked for it (so a retry of that transaction on
 * another replica finds it again); a given-back token names nothing.
 */
static void
token_pays_for_cert(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_token t;
	struct ledger_cert c, g;
	uint8_t h[LEDGER_HASH_LEN];

	hash_of("pay", h);
	assert_int_equal(ledger_token_add(lg, "pay", h, ID, 90000), 0);
	assert_int_equal(ledger_token_add(lg, "pay2", h, ID, 90000), 0);
	make_cert(&c, "0Fa", ID, 1000, 90000, "token:pay", NULL);
	snprintf(c.txn, sizeof(c.txn), "00A1b2C3");
	assert_int_equal(ledger_issue(lg, &c, "pay", 1000), 0);
	assert_int_equal(ledger_token_lookup(lg, "pay", &t), 0);
	assert_string_equal(t.serial, "fa");
	assert_int_equal(ledger_cert_get(lg, "fa", &g), 0);
	assert_string_equal(g.txn, "00a1b2c3");
	ledger_cert_clear(&g);
	/* no transaction: none recorded */
	make_cert(&c, "fb", ID, 1000, 90000, "offline", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	assert_int_equal(ledger_cert_get(lg, "fb", &g), 0);
	assert_string_equal(g.txn, "");
	ledger_cert_clear(&g);
	/* a transaction id is hex, 2..LEDGER_TXN_MAX digits */
	make_cert(&c, "fc", ID, 1000, 90000, "offline", NULL);
	snprintf(c.txn, sizeof(c.txn), "xyz");
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	snprintf(c.txn, sizeof(c.txn), "a");
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	memset(c.txn, 'a', LEDGER_TXN_MAX);
	c.txn[LEDGER_TXN_MAX] = '\0';
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	/* consumed without a certificate, given back: nothing named */
	assert_int_equal(ledger_token_consume(lg, "pay2", 1000), 0);
	assert_int_equal(ledger_token_lookup(lg, "pay2", &t), 0);
	assert_string_equal(t.serial, "");
	assert_int_equal(ledger_token_unconsume(lg, "pay2", 1000), 0);
	make_cert(&c, "fd", ID, 1000, 90000, "token:pay2", NULL);
	assert_int_equal(ledger_issue(lg, &c, "pay2", 1001), 0);
	assert_int_equal(ledger_token_lookup(lg, "pay2", &t), 0);
	assert_string_equal(t.serial, "fd");
	ledger_close(lg);
}

/* A ledger of schema 3 gains the columns of 4; its rows name nothing. */
static void
migrate_v3(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_token t;
	struct ledger_cert c, g;
	uint8_t h[LEDGER_HASH_LEN];

	hash_of("m", h);
	assert_int_equal(ledger_token_add(lg, "m", h, ID, 90000), 0);
	make_cert(&c, "e1", ID, 1000, 90000, "token:m", NULL);
	assert_int_equal(ledger_issue(lg, &c, "m", 1000), 0);
	ledger_close(lg);
	drop_v4(dbpath);
	set_version(dbpath, 3);
	lg = open_ledger();
	assert_int_equal(ledger_token_lookup(lg, "m", &t), 0);
	assert_int_equal(t.used, 1);
	assert_string_equal(t.serial, "");
	assert_int_equal(ledger_cert_get(lg, "e1", &g), 0);
	assert_string_equal(g.txn, "");
	ledger_cert_clear(&g);
	ledger_close(lg);
}

/* Schema 5 -> 6: an entry of before names no profile (the CA's default). */
static void
migrate_v5(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_entry e, g;

	memset(&e, 0, sizeof(e));
	snprintf(e.spiffe_id, sizeof(e.spiffe_id), "%s", ID);
	e.self_managed = 1;
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	ledger_close(lg);
	drop_v6(dbpath);
	set_version(dbpath, 5);
	lg = open_ledger();
	assert_int_equal(ledger_entry_get(lg, e.id, &g), 0);
	assert_string_equal(g.spiffe_id, ID);
	assert_string_equal(g.profile, "");
	assert_string_equal(g.nf_types, "");
	assert_string_equal(g.fqdn, "");
	ledger_close(lg);
}

/* Many renewals of one certificate at once, as concurrent kur would record them. */
struct renew_race {
	struct ledger *shared;
	pthread_barrier_t bar;
	int result[NTHREADS];
};

struct renew_arg {
	struct renew_race *rr;
	int idx;
};

static void *
renewer(void *p)
{
	struct renew_arg *a = p;
	struct ledger *lg = a->rr->shared;
	struct ledger_cert c;
	char serial[16];

	if (lg == NULL && ledger_open(dbpath, &lg) != 0) {
		a->rr->result[a->idx] = -1000;
		pthread_barrier_wait(&a->rr->bar);
		return NULL;
	}
	snprintf(serial, sizeof(serial), "%x", 0x500 + a->idx);
	make_cert(&c, serial, ID, 2000 + a->idx, 90000, "kur:100", "100");
	pthread_barrier_wait(&a->rr->bar);
	a->rr->result[a->idx] = ledger_cert_add(lg, &c);
	if (a->rr->shared == NULL)
		ledger_close(lg);
	return NULL;
}

static void
run_renewal_race(int shared)
{
	pthread_t th[NTHREADS];
	struct renew_arg args[NTHREADS];
	struct renew_race rr;
	struct ledger *lg = open_ledger();
	struct ledger_cert c;
	uint64_t n = 0;
	int wins = 0, i;

	make_cert(&c, "100", ID, 1000, 90000, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	memset(&rr, 0, sizeof(rr));
	rr.shared = shared ? lg : NULL;
	assert_int_equal(pthread_barrier_init(&rr.bar, NULL, NTHREADS), 0);
	for (i = 0; i < NTHREADS; i++) {
		args[i].rr = &rr;
		args[i].idx = i;
		assert_int_equal(pthread_create(&th[i], NULL, renewer, &args[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&rr.bar);
	for (i = 0; i < NTHREADS; i++) {
		if (rr.result[i] == 0)
			wins++;
		else
			assert_int_equal(rr.result[i], HSM_EPOLICY);
	}
	assert_int_equal(wins, 1);
	assert_int_equal(ledger_cert_count(lg, &n), 0);
	assert_int_equal(n, 2);
	ledger_close(lg);
}

static void
race_renewal_shared(void **state)
{
	run_renewal_race(1);
}

static void
race_renewal_handles(void **state)
{
	run_renewal_race(0);
}

/* ---- a server's own failures (PostgreSQL) ---- */

/* A location like dbpath with one more URI parameter (or a replaced host). */
static void
uri_with(char *out, size_t cap, const char *extra)
{
	snprintf(out, cap, "%s&%s", dbpath, extra);
}

static void
server_errors(void **state)
{
	struct ledger *lg = (struct ledger *)1;
	char p[1200];
	uint64_t t0;

	/* A password belongs in a passfile, never in ca.yaml. */
	assert_int_equal(ledger_open("postgresql://ca:s3cret@db.example.org/ca", &lg), HSM_EINVAL);
	assert_null(lg);
	assert_non_null(strstr(hsm_err_detail(), "passfile"));
	assert_null(strstr(hsm_err_detail(), "s3cret"));
	uri_with(p, sizeof(p), "password=s3cret");
	assert_int_equal(ledger_open(p, &lg), HSM_EINVAL);
	assert_null(strstr(hsm_err_detail(), "s3cret"));
	assert_int_equal(ledger_open("postgresql://[::1", &lg), HSM_EINVAL);
	/* No server there: an error at once, naming where. */
	t0 = (uint64_t)time(NULL);
	assert_int_equal(ledger_open("postgresql:///hsmesh?host=/nonexistent&port=1", &lg),
	    HSM_EIO);
	assert_null(lg);
	assert_non_null(strstr(hsm_err_detail(), "host /nonexistent port 1 database hsmesh"));
	assert_true((uint64_t)time(NULL) - t0 < 5);
	/* A database that does not exist. */
	uri_with(p, sizeof(p), "dbname=no_such_db");
	assert_int_equal(ledger_open(p, &lg), HSM_EIO);
	assert_non_null(strstr(hsm_err_detail(), "no_such_db"));
}

/* The server ends our connection: that call fails, the next one reconnects by itself. */
static void
reconnects(void **state)
{
	struct ledger *lg;
	uint8_t h[LEDGER_HASH_LEN];
	uint64_t n = 0;
	int r;

	lg = open_ledger();
	hash_of("r", h);
	assert_int_equal(ledger_token_add(lg, "before", h, ID, 4000000000LL), 0);
	assert_int_equal(be->exec(dbpath, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	    "WHERE application_name = 'hsmesh-ca' AND pid <> pg_backend_pid()"), 0);
	r = ledger_cert_count(lg, &n);
	assert_true(r == HSM_EIO || r == 0);
	if (r == HSM_EIO)
		assert_non_null(strstr(hsm_err_detail(), "PostgreSQL"));
	/* Reconnected, statements prepared again, the data still there. */
	assert_int_equal(ledger_token_consume(lg, "before", 1), 0);
	assert_int_equal(ledger_token_add(lg, "after", h, ID, 4000000000LL), 0);
	ledger_close(lg);
}

/* Its hook ends our session to the server (the ledger lost at commit). */
static int
hook_kill(void *arg)
{
	int *calls = arg;

	(*calls)++;
	return be->exec(dbpath, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	    "WHERE application_name = 'hsmesh-ca' AND pid <> pg_backend_pid()");
}

/*
 * The commit fails after the hook made its record (the audit line): the
 * call fails with *hook_ran set (the caller then says the issuance was
 * rolled back), it is not run again, and nothing of it was recorded.
 */
static void
issue_commit_lost_after_hook(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_token t;
	struct ledger_cert c, g;
	uint8_t hh[LEDGER_HASH_LEN];
	int64_t now = 100000;
	int calls = 0, ran = -1, r;

	hash_of("hk", hh);
	assert_int_equal(ledger_token_add(lg, "h1", hh, ID, now + 600), 0);
	make_cert(&c, "20", ID, now, now + 3600, "token:h1", NULL);
	r = ledger_issue_with(lg, &c, "h1", now, hook_kill, &calls, &ran);
	assert_int_not_equal(r, 0);
	assert_int_equal(calls, 1);
	assert_int_equal(ran, 1);
	/* Reconnected: the token unspent, no certificate; the issuance can be made again. */
	assert_int_equal(ledger_token_lookup(lg, "h1", &t), 0);
	assert_int_equal(t.used, 0);
	assert_int_equal(ledger_cert_get(lg, "20", &g), HSM_ENOENT);
	assert_int_equal(ledger_issue(lg, &c, "h1", now), 0);
	assert_int_equal(ledger_token_lookup(lg, "h1", &t), 0);
	assert_int_equal(t.used, 1);
	ledger_close(lg);
}

/* ---- several processes on one store, as CA replicas ---- */

#define NPROCS 3
#define PROC_N 60

/* Run fn(i) in NPROCS child processes at once; each one's exit status into st[i]. */
static void
in_processes(int (*fn)(int idx), int st[NPROCS])
{
	pid_t pids[NPROCS];
	int go[2], status;
	char c = 'g';

	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < NPROCS; i++) {
		assert_true((pids[i] = fork()) >= 0);
		if (pids[i] == 0) {
			close(go[1]);
			/* Start together: wait for the parent's go. */
			if (read(go[0], &c, 1) != 1)
				_exit(99);
			_exit(fn(i));
		}
	}
	close(go[0]);
	for (int i = 0; i < NPROCS; i++)
		assert_int_equal(write(go[1], &c, 1), 1);
	close(go[1]);
	for (int i = 0; i < NPROCS; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		st[i] = WEXITSTATUS(status);
	}
}

/*
 * Each replica walks the same PROC_N tokens (from its own starting point),
 * consuming and recording with ledger_issue; exit status: how many it won
 * (100 + errors on a failure of another kind).
 */
static int
proc_tokens(int idx)
{
	struct ledger *lg = NULL;
	struct ledger_cert c;
	char ref[32], serial[32];
	int wins = 0, r;

	if (ledger_open(dbpath, &lg) != 0)
		return 200;
	for (int i = 0; i < PROC_N; i++) {
		int k = (i + idx * (PROC_N / NPROCS)) % PROC_N;

		snprintf(ref, sizeof(ref), "p%d", k);
		snprintf(serial, sizeof(serial), "%x", 0x7000 + k * 16 + idx);
		make_cert(&c, serial, ID, 1000 + k, 2000000, "token:p", NULL);
		if ((r = ledger_issue(lg, &c, ref, 1000)) == 0)
			wins++;
		else if (r != HSM_EPOLICY) {
			fprintf(stderr, "# replica %d: %s\n", idx, hsm_err_msg(r));
			ledger_close(lg);
			return 100 + wins;
		}
	}
	ledger_close(lg);
	return wins;
}

/* A join token is consumed once, whichever replica tries. */
static void
replicas_consume_once(void **state)
{
	struct ledger *lg = open_ledger();
	uint8_t h[LEDGER_HASH_LEN];
	uint64_t n = 0;
	int st[NPROCS], wins = 0;
	char ref[32];

	hash_of("p", h);
	for (int i = 0; i < PROC_N; i++) {
		snprintf(ref, sizeof(ref), "p%d", i);
		assert_int_equal(ledger_token_add(lg, ref, h, ID, 2000), 0);
	}
	in_processes(proc_tokens, st);
	for (int i = 0; i < NPROCS; i++) {
		assert_true(st[i] <= PROC_N);
		wins += st[i];
	}
	assert_int_equal(wins, PROC_N);
	assert_int_equal(ledger_cert_count(lg, &n), 0);
	assert_int_equal(n, PROC_N);
	ledger_close(lg);
}

/* Every replica records the same serials: each is recorded once, the others get HSM_EEXIST. */
static int
proc_serials(int idx)
{
	struct ledger *lg = NULL;
	struct ledger_cert c;
	char serial[32];
	int wins = 0, r;

	if (ledger_open(dbpath, &lg) != 0)
		return 200;
	for (int i = 0; i < PROC_N; i++) {
		int k = (i + idx * 7) % PROC_N;

		snprintf(serial, sizeof(serial), "%x", 0x9000 + k);
		make_cert(&c, serial, ID, 1000 + idx, 2000000, "offline", NULL);
		if ((r = ledger_cert_add(lg, &c)) == 0)
			wins++;
		else if (r != HSM_EEXIST) {
			fprintf(stderr, "# replica %d: %s\n", idx, hsm_err_msg(r));
			ledger_close(lg);
			return 100 + wins;
		}
	}
	ledger_close(lg);
	return wins;
}

static void
replicas_serial_once(void **state)
{
	struct ledger *lg = open_ledger();
	uint64_t n = 0;
	int st[NPROCS], wins = 0;

	in_processes(proc_serials, st);
	for (int i = 0; i < NPROCS; i++) {
		assert_true(st[i] <= PROC_N);
		wins += st[i];
	}
	assert_int_equal(wins, PROC_N);
	assert_int_equal(ledger_cert_count(lg, &n), 0);
	assert_int_equal(n, PROC_N);
	ledger_close(lg);
}

/* Every replica renews the same certificate: exactly one renewal is recorded. */
static int
proc_renew(int idx)
{
	struct ledger *lg = NULL;
	struct ledger_cert c;
	char serial[16];
	int r;

	if (ledger_open(dbpath, &lg) != 0)
		return 200;
	snprintf(serial, sizeof(serial), "%x", 0x600 + idx);
	make_cert(&c, serial, ID, 2000 + idx, 90000, "kur:100", "100");
	r = ledger_cert_add(lg, &c);
	if (r != 0 && r != HSM_EPOLICY)
		fprintf(stderr, "# replica %d: %s\n", idx, hsm_err_msg(r));
	ledger_close(lg);
	return r == 0 ? 1 : r == HSM_EPOLICY ? 0 : 100;
}

static void
replicas_chain_never_forks(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_cert c, g;
	int st[NPROCS], wins = 0;

	make_cert(&c, "100", ID, 1000, 90000, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	in_processes(proc_renew, st);
	for (int i = 0; i < NPROCS; i++) {
		assert_true(st[i] <= 1);
		wins += st[i];
	}
	assert_int_equal(wins, 1);
	assert_int_equal(ledger_cert_get(lg, "100", &g), 0);
	assert_true(g.superseded_by[0] != '\0');
	ledger_cert_clear(&g);
	ledger_close(lg);
}

/*
 * One replica issues certificates of ID while another revokes ID: once
 * the revocation has committed no certificate of ID is recorded, and
 * every one recorded before it is revoked. Replica 0 revokes, the others
 * issue until refused; exit status: 0, or 100 on an unexpected error.
 */
static int
proc_revoke_or_issue(int idx)
{
	struct ledger *lg = NULL;
	struct ledger_cert c;
	char serial[32];
	int r = 0;

	if (ledger_open(dbpath, &lg) != 0)
		return 200;
	if (idx == 0) {
		uint64_t n = 0;

		/* once the others are issuing */
		for (int i = 0; i < 500 && n < 2 * (NPROCS - 1); i++) {
			usleep(10000);
			if ((r = ledger_cert_count(lg, &n)) != 0)
				break;
		}
		if (r == 0)
			r = ledger_revoke_id(lg, ID, 1, 10000, NULL);
	} else {
		time_t end = time(NULL) + 10;

		for (int i = 0; time(NULL) < end; i++) {
			snprintf(serial, sizeof(serial), "%x", 0x100000 * idx + i);
			make_cert(&c, serial, ID, 1000, 90000, "offline", NULL);
			if ((r = ledger_cert_add(lg, &c)) != 0)
				break;
			/*
			 * At the pace of a busy CA rather than flat out: SQLite's
			 * busy handler is not fair, and writers that never pause
			 * would starve the revocation's BEGIN IMMEDIATE.
			 */
			usleep(500);
		}
		/* refused once revoked */
		if (r == HSM_EPOLICY && strcmp(hsm_err_msg(r), "identity revoked") == 0)
			r = 0;
		else if (r == 0)
			r = hsm_err(HSM_EIO, "never refused");
	}
	if (r != 0)
		fprintf(stderr, "# replica %d: %s\n", idx, hsm_err_msg(r));
	ledger_close(lg);
	return r == 0 ? 0 : 100;
}

struct unrevoked {
	int n, total;
};

static int
count_unrevoked(const struct ledger_cert *c, void *arg)
{
	struct unrevoked *u = arg;

	u->total++;
	if (!c->revoked)
		u->n++;
	return 0;
}

static void
replicas_revocation_vs_issuance(void **state)
{
	struct ledger *lg = open_ledger();
	struct unrevoked u = { 0, 0 };
	int st[NPROCS];

	in_processes(proc_revoke_or_issue, st);
	for (int i = 0; i < NPROCS; i++)
		assert_int_equal(st[i], 0);
	assert_true(ledger_id_revoked(lg, ID));
	assert_int_equal(ledger_cert_list_id(lg, ID, count_unrevoked, &u), 0);
	assert_true(u.total > 0);
	assert_int_equal(u.n, 0);
	ledger_close(lg);
}

/* What one replica commits, another sees at its next call: nothing is cached. */
static void
replicas_see_changes_at_once(void **state)
{
	struct ledger *a = open_ledger(), *b = open_ledger();
	struct ledger_cert c, g;
	uint8_t h[LEDGER_HASH_LEN];

	hash_of("v", h);
	make_cert(&c, "ab", ID, 1000, 90000, "offline", NULL);
	assert_int_equal(ledger_cert_add(a, &c), 0);
	assert_int_equal(ledger_cert_get(b, "ab", &g), 0);
	assert_int_equal(g.revoked, 0);
	ledger_cert_clear(&g);
	assert_false(ledger_id_revoked(b, ID));
	assert_int_equal(ledger_token_add(b, "vis", h, ID, 90000), 0);
	assert_int_equal(ledger_token_check(a, "vis", 100), 0);

	assert_int_equal(ledger_cert_revoke(a, "ab", 4, 2000), 0);
	assert_int_equal(ledger_cert_get(b, "ab", &g), 0);
	assert_int_equal(g.revoked, 1);
	ledger_cert_clear(&g);
	assert_int_equal(ledger_token_consume(b, "vis", 100), 0);
	assert_int_equal(ledger_token_check(a, "vis", 100), HSM_EPOLICY);
	assert_int_equal(ledger_revoke_id(b, ID, 1, 3000, NULL), 0);
	assert_true(ledger_id_revoked(a, ID));
	make_cert(&c, "ac", ID, 1000, 90000, "offline", NULL);
	assert_int_equal(ledger_cert_add(a, &c), HSM_EPOLICY);
	assert_int_equal(ledger_id_reinstate(a, ID), 0);
	assert_false(ledger_id_revoked(b, ID));
	ledger_close(a);
	ledger_close(b);
}

/* Two replicas opening one new store at once migrate it once. */
static int
proc_open(int idx)
{
	struct ledger *lg = NULL;
	int r = ledger_open(dbpath, &lg);

	if (r != 0)
		fprintf(stderr, "# replica %d: %s\n", idx, hsm_err_msg(r));
	ledger_close(lg);
	return r == 0 ? 0 : 100;
}

static void
replicas_migrate_once(void **state)
{
	struct ledger *lg;
	char sql[256];
	int st[NPROCS];

	in_processes(proc_open, st);
	for (int i = 0; i < NPROCS; i++)
		assert_int_equal(st[i], 0);
	lg = open_ledger();
	ledger_close(lg);
	/* one row per step, each step once (the CHECK fails otherwise) */
	snprintf(sql, sizeof(sql), "CREATE TABLE steps (n INTEGER CHECK (n = %d));"
	    "INSERT INTO steps SELECT count(DISTINCT version) FROM schema_version;"
	    "INSERT INTO steps SELECT count(*) FROM schema_version", LEDGER_SCHEMA_VERSION);
	assert_int_equal(be->exec(dbpath, sql), 0);
	assert_int_not_equal(be->exec(dbpath, "INSERT INTO steps SELECT 1"), 0);
}

/* ---- node identities and registration entries ---- */

#define NODE "spiffe://example.org/node/n1"
#define WL2 "spiffe://example.org/ns/db"

static void
make_entry(struct ledger_entry *e, const char *id, const char *node, int pattern,
    const char *selectors)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->spiffe_id, sizeof(e->spiffe_id), "%s", id);
	snprintf(e->node, sizeof(e->node), "%s", node != NULL ? node : "");
	e->node_is_pattern = pattern;
	snprintf(e->selectors, sizeof(e->selectors), "%s", selectors != NULL ? selectors : "");
	e->self_managed = node == NULL;
}

/*
 * Replicas racing on what an ID is: one adds registration entries naming
 * IDs as nodes while the others issue workload certificates to the same
 * IDs. Each ID ends up one or the other, never both.
 */
#define KIND_IDS 24

static int
proc_kinds(int idx)
{
	struct ledger *lg = NULL;
	struct ledger_entry e;
	struct ledger_cert c;
	char id[64], serial[32];
	int r = 0;

	if (ledger_open(dbpath, &lg) != 0)
		return 200;
	for (int i = 0; i < KIND_IDS && r == 0; i++) {
		int k = (i + idx * 5) % KIND_IDS;

		snprintf(id, sizeof(id), "spiffe://example.org/n/%d", k);
		if (idx == 0) {
			make_entry(&e, WL2, id, 0, "uid:1");
			r = ledger_entry_add(lg, &e);
		} else {
			snprintf(serial, sizeof(serial), "%x", 0x1000 * idx + k);
			make_cert(&c, serial, id, 1000, 90000, "offline", NULL);
			r = ledger_cert_add(lg, &c);
		}
		if (r == HSM_EPOLICY)
			r = 0;
	}
	if (r != 0)
		fprintf(stderr, "# replica %d: %s\n", idx, hsm_err_msg(r));
	ledger_close(lg);
	return r == 0 ? 0 : 100;
}

static int
mark_node(const struct ledger_entry *e, void *arg)
{
	int k;

	if (sscanf(e->node, "spiffe://example.org/n/%d", &k) == 1 && k >= 0 && k < KIND_IDS)
		((int *)arg)[k] = 1;
	return 0;
}

static void
replicas_kinds_never_mix(void **state)
{
	struct ledger *lg;
	int st[NPROCS], named[KIND_IDS] = { 0 }, nodes = 0, workloads = 0;
	char id[64];

	in_processes(proc_kinds, st);
	for (int i = 0; i < NPROCS; i++)
		assert_int_equal(st[i], 0);
	lg = open_ledger();
	assert_int_equal(ledger_entry_list(lg, NULL, mark_node, named), 0);
	for (int k = 0; k < KIND_IDS; k++) {
		unsigned n = 0, w = 0;

		snprintf(id, sizeof(id), "spiffe://example.org/n/%d", k);
		assert_int_equal(ledger_id_kinds(lg, id, &n, &w), 0);
		if (named[k] && w > 0)
			fail_msg("%s is named as a node and has %u workload certificates", id, w);
		nodes += named[k];
		workloads += w > 0;
	}
	/* each ID went one way or the other */
	assert_int_equal(nodes + workloads, KIND_IDS);
	ledger_close(lg);
}

static int
collect_ids(const struct ledger_entry *e, void *arg)
{
	char *buf = arg;
	size_t l = strlen(buf);

	snprintf(buf + l, 512 - l, "%s%s", l > 0 ? "," : "", e->spiffe_id);
	return 0;
}

static void
entries_add_get_list_rm(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_entry e, g;
	char id1[LEDGER_ENTRY_ID_LEN + 1], list[512] = "";

	make_entry(&e, ID, NODE, 0, "uid:1000\npath:/usr/bin/web");
	e.ttl = 600;
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	assert_int_equal(strlen(e.id), LEDGER_ENTRY_ID_LEN);
	memcpy(id1, e.id, sizeof(id1));
	assert_int_equal(ledger_entry_get(lg, id1, &g), 0);
	assert_string_equal(g.spiffe_id, ID);
	assert_string_equal(g.node, NODE);
	assert_false(g.node_is_pattern);
	assert_false(g.self_managed);
	assert_string_equal(g.selectors, "uid:1000\npath:/usr/bin/web");
	assert_int_equal(g.ttl, 600);
	assert_true(g.created > 0);
	/* who it covers */
	assert_true(ledger_entry_covers(&g, NODE));
	assert_false(ledger_entry_covers(&g, "spiffe://example.org/node/n2"));
	make_entry(&e, WL2, "spiffe://example.org/node/*", 1, "gid:5");
	snprintf(e.id, sizeof(e.id), "00000000000000AB");	/* given, stored lower-case */
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	assert_string_equal(e.id, "00000000000000ab");
	assert_int_equal(ledger_entry_add(lg, &e), HSM_EEXIST);
	assert_int_equal(ledger_entry_get(lg, "00000000000000AB", &g), 0);
	assert_true(g.node_is_pattern);
	assert_true(ledger_entry_covers(&g, NODE));
	assert_true(ledger_entry_covers(&g, "spiffe://example.org/node/rack1/n9"));
	assert_false(ledger_entry_covers(&g, "spiffe://example.org/nodes/n1"));
	/* a second entry of ID: another node */
	make_entry(&e, ID, "spiffe://example.org/node/n2", 0, "uid:1000");
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	assert_int_equal(ledger_entry_list(lg, NULL, collect_ids, list), 0);
	assert_string_equal(list, ID "," WL2 "," ID);
	list[0] = '\0';
	assert_int_equal(ledger_entry_list(lg, ID, collect_ids, list), 0);
	assert_string_equal(list, ID "," ID);
	/* remove */
	assert_int_equal(ledger_entry_rm(lg, id1), 0);
	assert_int_equal(ledger_entry_get(lg, id1, &g), HSM_ENOENT);
	assert_int_equal(ledger_entry_rm(lg, id1), HSM_ENOENT);
	assert_int_equal(ledger_entry_rm(lg, "not hex"), HSM_EINVAL);
	/* a self-managed entry covers no node */
	make_entry(&e, "spiffe://example.org/ns/cli", NULL, 0, NULL);
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	assert_int_equal(ledger_entry_get(lg, e.id, &g), 0);
	assert_true(g.self_managed);
	assert_false(ledger_entry_covers(&g, NODE));
	ledger_close(lg);
}

static void
entries_refused(void **state)
{
	static const struct {
		const char *id, *node, *sel;
		int pattern, self;
		int64_t ttl;
		const char *why;
	} bad[] = {
		{ "spiffe://example.org", NODE, "uid:1", 0, 0, 0, "no path" },
		{ "spiffe://Example.org/x", NODE, "uid:1", 0, 0, 0, "invalid SPIFFE ID" },
		{ ID, "", "uid:1", 0, 0, 0, "names a node" },
		{ ID, "spiffe://example.org", "uid:1", 0, 0, 0, "no path" },
		{ ID, NODE, "", 0, 0, 0, "at least one selector" },
		{ ID, NODE, "uid:x", 0, 0, 0, "uid must be a number" },
		{ ID, NODE, "uid:1\n", 0, 0, 0, "empty selector line" },
		{ ID, NODE, "uid:1\n\npath:/x", 0, 0, 0, "empty or overlong" },
		{ ID, "spiffe://example.org/node/*/x", "uid:1", 1, 0, 0, "'*'" },
		{ ID, ID, "uid:1", 0, 0, 0, "its own workload" },
		{ ID, NODE, "uid:1", 0, 0, -1, "TTL" },
		{ ID, NODE, "", 0, 1, 0, "self-managed" },
		{ ID, "", "uid:1", 0, 1, 0, "self-managed" },
	};
	struct ledger *lg = open_ledger();
	struct ledger_entry e;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make_entry(&e, bad[i].id, bad[i].node, bad[i].pattern, bad[i].sel);
		e.self_managed = bad[i].self;
		e.ttl = bad[i].ttl;
		if (ledger_entry_add(lg, &e) != HSM_EINVAL)
			fail_msg("entry %zu was not refused as invalid", i);
		if (strstr(hsm_err_msg(HSM_EINVAL), bad[i].why) == NULL)
			fail_msg("entry %zu: '%s' does not say '%s'", i, hsm_err_msg(HSM_EINVAL),
			    bad[i].why);
	}
	ledger_close(lg);
}

/* An entry's certificate profile (nfprofile.h): stored, checked, the same for every entry of an ID. */
static void
entries_profile(void **state)
{
	static const struct {
		const char *profile, *types, *fqdn, *why;
	} bad[] = {
		{ "", "AMF", "", "go with profile 3gpp-nf only" },
		{ "spiffe", "", "amf1.example.org", "go with profile 3gpp-nf only" },
		{ "3gpp-nf", "", "amf1.example.org", "needs NF types and an FQDN" },
		{ "3gpp-nf", "AMF", "", "needs NF types and an FQDN" },
		{ "3gpp-nf", "amf", "amf1.example.org", "NF type 'amf'" },
		{ "3gpp-nf", "AMF,AMF", "amf1.example.org", "twice" },
		{ "3gpp-nf", "AMF", "amf1", "not fully qualified" },
		{ "5g", "", "", "unknown certificate profile" },
	};
	struct ledger *lg = open_ledger();
	struct ledger_entry e, g;

	make_entry(&e, ID, NULL, 0, NULL);
	snprintf(e.profile, sizeof(e.profile), "3gpp-nf");
	snprintf(e.nf_types, sizeof(e.nf_types), "AMF,SMF");
	snprintf(e.fqdn, sizeof(e.fqdn), "amf1.5gc.mnc001.mcc001.3gppnetwork.org");
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	assert_int_equal(ledger_entry_get(lg, e.id, &g), 0);
	assert_string_equal(g.profile, "3gpp-nf");
	assert_string_equal(g.nf_types, "AMF,SMF");
	assert_string_equal(g.fqdn, "amf1.5gc.mnc001.mcc001.3gppnetwork.org");
	/* A second entry of the ID: the same profile, or refused naming the first. */
	memset(e.id, 0, sizeof(e.id));
	snprintf(e.nf_types, sizeof(e.nf_types), "AMF");
	assert_int_equal(ledger_entry_add(lg, &e), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "another certificate profile"));
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), g.id));
	snprintf(e.nf_types, sizeof(e.nf_types), "AMF,SMF");
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	/* An entry without a profile takes the CA's default ("" stored). */
	make_entry(&e, WL2, NULL, 0, NULL);
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	assert_int_equal(ledger_entry_get(lg, e.id, &g), 0);
	assert_string_equal(g.profile, "");
	assert_string_equal(g.nf_types, "");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make_entry(&e, "spiffe://example.org/ns/nf", NULL, 0, NULL);
		snprintf(e.profile, sizeof(e.profile), "%s", bad[i].profile);
		snprintf(e.nf_types, sizeof(e.nf_types), "%s", bad[i].types);
		snprintf(e.fqdn, sizeof(e.fqdn), "%s", bad[i].fqdn);
		if (ledger_entry_add(lg, &e) != HSM_EINVAL)
			fail_msg("profile entry %zu was not refused as invalid", i);
		if (strstr(hsm_err_msg(HSM_EINVAL), bad[i].why) == NULL)
			fail_msg("profile entry %zu: '%s' does not say '%s'", i,
			    hsm_err_msg(HSM_EINVAL), bad[i].why);
	}
	ledger_close(lg);
}

/* An ID is a node's or a workload's, never both; one ID is managed one way. */
static void
kinds_never_mix(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_entry e;
	struct ledger_cert c, g;
	uint8_t h[LEDGER_HASH_LEN];
	struct ledger_token t;
	unsigned nodes, workloads;
	int64_t now = (int64_t)time(NULL);

	/* a node certificate, issued to nobody */
	make_cert(&c, "10", NODE, 1000, now + 3600, "token:n", NULL);
	c.kind = LEDGER_NODE;
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	assert_int_equal(ledger_cert_get(lg, "10", &g), 0);
	assert_int_equal(g.kind, LEDGER_NODE);
	assert_string_equal(g.node_id, "");
	ledger_cert_clear(&g);
	assert_int_equal(ledger_id_kinds(lg, NODE, &nodes, &workloads), 0);
	assert_int_equal(nodes, 1);
	assert_int_equal(workloads, 0);
	/* ... so the ID can be no workload's: not a certificate, not an entry */
	make_cert(&c, "11", NODE, 1000, now + 3600, "offline", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "is a node identity"));
	make_entry(&e, NODE, "spiffe://example.org/node/n2", 0, "uid:1");
	assert_int_equal(ledger_entry_add(lg, &e), HSM_EPOLICY);
	/* a workload certificate the node enrolled: it says so */
	make_cert(&c, "20", ID, 1000, now + 3600, "node:10", NULL);
	snprintf(c.node_id, sizeof(c.node_id), "%s", NODE);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	assert_int_equal(ledger_cert_get(lg, "20", &g), 0);
	assert_int_equal(g.kind, LEDGER_WORKLOAD);
	assert_string_equal(g.node_id, NODE);
	ledger_cert_clear(&g);
	/* ... so ID can be no node's; nor may an entry name it as a node */
	make_cert(&c, "21", ID, 1000, now + 3600, "token:x", NULL);
	c.kind = LEDGER_NODE;
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EPOLICY);
	make_entry(&e, WL2, ID, 0, "uid:1");
	assert_int_equal(ledger_entry_add(lg, &e), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "workload identity"));
	/* a node certificate names no node it was issued to */
	make_cert(&c, "22", "spiffe://example.org/node/n3", 1000, now + 3600, "token:y", NULL);
	c.kind = LEDGER_NODE;
	snprintf(c.node_id, sizeof(c.node_id), "%s", NODE);
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EINVAL);
	/* an entry's node named as such cannot become a workload */
	make_entry(&e, WL2, "spiffe://example.org/node/n4", 0, "uid:1");
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	make_cert(&c, "23", "spiffe://example.org/node/n4", 1000, now + 3600, "offline", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EPOLICY);
	/* ... nor an entry's ID a node */
	make_cert(&c, "24", WL2, 1000, now + 3600, "token:z", NULL);
	c.kind = LEDGER_NODE;
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EPOLICY);
	/* one ID is node-managed or self-managed, not both */
	make_entry(&e, WL2, NULL, 0, NULL);
	assert_int_equal(ledger_entry_add(lg, &e), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "node-managed by entry"));
	/* a token enrolls its own kind only */
	hash_of("s", h);
	assert_int_equal(ledger_token_add_kind(lg, "tn", h, "spiffe://example.org/node/n5",
	    now + 3600, LEDGER_NODE), 0);
	assert_int_equal(ledger_token_lookup(lg, "tn", &t), 0);
	assert_int_equal(t.kind, LEDGER_NODE);
	make_cert(&c, "30", "spiffe://example.org/node/n5", 1000, now + 3600, "token:tn", NULL);
	assert_int_equal(ledger_issue(lg, &c, "tn", now), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "enrolls a node identity"));
	c.kind = LEDGER_NODE;
	assert_int_equal(ledger_issue(lg, &c, "tn", now), 0);
	assert_int_equal(ledger_token_add(lg, "tw", h, "spiffe://example.org/ns/q", now + 3600), 0);
	assert_int_equal(ledger_token_lookup(lg, "tw", &t), 0);
	assert_int_equal(t.kind, LEDGER_WORKLOAD);
	make_cert(&c, "31", "spiffe://example.org/ns/q", 1000, now + 3600, "token:tw", NULL);
	c.kind = LEDGER_NODE;
	assert_int_equal(ledger_issue(lg, &c, "tw", now), HSM_EPOLICY);
	assert_int_equal(ledger_token_check(lg, "tw", now), 0);	/* not consumed */
	ledger_close(lg);
}

/* The CRL's view: revocations that changed a row move the sequence, in their transaction. */
struct revoked {
	char serials[8][LEDGER_SERIAL_MAX + 1];
	int64_t at[8];
	int reasons[8];
	int n;
};

static int
revoked_cb(const char *serial, int64_t at, int reason, void *arg)
{
	struct revoked *v = arg;

	if (v->n == 8)
		return 42;
	snprintf(v->serials[v->n], sizeof(v->serials[v->n]), "%s", serial);
	v->at[v->n] = at;
	v->reasons[v->n++] = reason;
	return 0;
}

static void
revocation_sequence(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_cert c;
	struct revoked v;
	uint64_t seq = 99;
	unsigned count;

	assert_int_equal(ledger_revocation_seq(lg, &seq), 0);
	assert_int_equal(seq, 0);
	make_cert(&c, "0a", ID, 1000, 5000, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	make_cert(&c, "0b", ID, 1000, 30000, "offline", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	make_cert(&c, "0c", "spiffe://example.org/other", 1000, 30000, "offline", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);

	assert_int_equal(ledger_cert_revoke(lg, "0b", 1, 2000), 0);
	assert_int_equal(ledger_revocation_seq(lg, &seq), 0);
	assert_int_equal(seq, 1);
	/* Again, unknown, refused: the sequence stays. */
	assert_int_equal(ledger_cert_revoke(lg, "0b", 4, 2100), 0);
	assert_int_equal(ledger_cert_revoke(lg, "ff", 1, 2100), HSM_ENOENT);
	assert_int_equal(ledger_revocation_seq(lg, &seq), 0);
	assert_int_equal(seq, 1);
	/* By ID: one more when it revoked something, not when nothing was left. */
	assert_int_equal(ledger_cert_revoke(lg, "0a", 0, 2200), 0);
	assert_int_equal(ledger_revoke_id(lg, "spiffe://example.org/other", 5, 2300, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(ledger_revoke_id(lg, "spiffe://example.org/other", 5, 2400, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(ledger_revocation_seq(lg, &seq), 0);
	assert_int_equal(seq, 3);
	ledger_close(lg);

	/* Kept across a reopen; the list holds what has not expired, in order of revocation. */
	lg = open_ledger();
	assert_int_equal(ledger_revocation_seq(lg, &seq), 0);
	assert_int_equal(seq, 3);
	memset(&v, 0, sizeof(v));
	assert_int_equal(ledger_revoked_list(lg, 4000, revoked_cb, &v), 0);
	assert_int_equal(v.n, 3);
	assert_string_equal(v.serials[0], "b");
	assert_int_equal(v.at[0], 2000);
	assert_int_equal(v.reasons[0], 1);
	assert_string_equal(v.serials[1], "a");
	assert_string_equal(v.serials[2], "c");
	assert_int_equal(v.reasons[2], 5);
	memset(&v, 0, sizeof(v));
	assert_int_equal(ledger_revoked_list(lg, 5000, revoked_cb, &v), 0);
	assert_int_equal(v.n, 2);		/* 0a expired at 5000 */
	assert_int_equal(ledger_revoked_list(lg, 5000, NULL, &v), HSM_EINVAL);
	ledger_close(lg);

	/* A ledger of schema 4 starts its sequence at the revocations it holds. */
	drop_v5(dbpath);
	set_version(dbpath, 4);
	lg = open_ledger();
	assert_int_equal(ledger_revocation_seq(lg, &seq), 0);
	assert_int_equal(seq, 3);
	ledger_close(lg);
}

/* A ledger of schema 2 (before node identities): every row a workload's, entries empty. */
static void
migrate_v2(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_cert c, g;
	struct ledger_token t;
	struct ledger_entry e;
	uint8_t h[LEDGER_HASH_LEN];
	unsigned nodes, workloads;

	hash_of("x", h);
	assert_int_equal(ledger_token_add(lg, "t", h, ID, (int64_t)time(NULL) + 60), 0);
	make_cert(&c, "a", ID, 1000, 50000, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	ledger_close(lg);
	drop_v4(dbpath);
	drop_v3(dbpath);
	set_version(dbpath, 2);
	lg = open_ledger();
	assert_int_equal(ledger_token_lookup(lg, "t", &t), 0);
	assert_int_equal(t.kind, LEDGER_WORKLOAD);
	assert_int_equal(ledger_cert_get(lg, "a", &g), 0);
	assert_int_equal(g.kind, LEDGER_WORKLOAD);
	assert_string_equal(g.node_id, "");
	ledger_cert_clear(&g);
	assert_int_equal(ledger_id_kinds(lg, ID, &nodes, &workloads), 0);
	assert_int_equal(workloads, 1);
	make_entry(&e, ID, NODE, 0, "uid:1");
	assert_int_equal(ledger_entry_add(lg, &e), 0);
	ledger_close(lg);
}

/* ---- the CA set ---- */

static const uint8_t ca_der[] = { 0x30, 0x03, 0x02, 0x01, 0x07 };

static void
make_ca(struct ledger_ca *c, char k, enum ledger_ca_state st)
{
	memset(c, 0, sizeof(*c));
	memset(c->key_id, k, LEDGER_SPKI_ID_LEN);
	c->state = st;
	if (st != LEDGER_CA_PENDING) {
		c->cert = ca_der;
		c->cert_len = sizeof(ca_der);
	}
}

struct ca_seen {
	int n;
	int gen[8];
	enum ledger_ca_state st[8];
};

static int
ca_seen_cb(const struct ledger_ca *c, void *arg)
{
	struct ca_seen *s = arg;

	if (s->n < 8) {
		s->gen[s->n] = c->gen;
		s->st[s->n] = c->state;
	}
	s->n++;
	return 0;
}

/*
 * Prepare, activate, retire: one active at a time, issuance only by the
 * active CA, retirement refused while a certificate it issued lives.
 */
static void
ca_set_rotation(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_ca a, b;
	struct ledger_cert c;
	struct ca_seen seen;
	char ka[LEDGER_SPKI_ID_LEN + 1], kb[LEDGER_SPKI_ID_LEN + 1];
	int64_t now = (int64_t)time(NULL), seq0, seq1, latest;
	unsigned n;

	/* a certificate from before the set: the first CA claims it */
	make_cert(&c, "dd1", ID, now - 10, now + 100, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	make_ca(&a, 'a', LEDGER_CA_ACTIVE);
	memcpy(ka, a.key_id, sizeof(ka));
	ka[LEDGER_SPKI_ID_LEN] = '\0';
	assert_int_equal(ledger_ca_add(lg, &a), 0);
	assert_int_equal(a.gen, 1);
	assert_int_equal(ledger_ca_outstanding(lg, ka, now, &n, &latest), 0);
	assert_int_equal(n, 1);
	assert_int_equal(latest, now + 100);
	/* a second active one is refused; a prepared one is CA 2 */
	make_ca(&b, 'b', LEDGER_CA_ACTIVE);
	assert_int_equal(ledger_ca_add(lg, &b), HSM_EPOLICY);
	make_ca(&b, 'b', LEDGER_CA_PREPARED);
	memcpy(kb, b.key_id, sizeof(kb));
	kb[LEDGER_SPKI_ID_LEN] = '\0';
	assert_int_equal(ledger_ca_seq(lg, &seq0), 0);
	assert_int_equal(ledger_ca_add(lg, &b), 0);
	assert_int_equal(b.gen, 2);
	assert_int_equal(ledger_ca_add(lg, &b), HSM_EEXIST);
	assert_int_equal(ledger_ca_seq(lg, &seq1), 0);
	assert_true(seq1 > seq0);
	/* the prepared CA issues nothing */
	make_cert(&c, "e1", ID, now - 10, now + 100, "token:t", NULL);
	memcpy(c.issuer, kb, sizeof(c.issuer));
	/* at once, not run again as a conflict would be (in_txn) */
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EAGAIN);
	assert_non_null(strstr(hsm_err_msg(HSM_EAGAIN), "CA 2 is not the active CA (it is prepared)"));
	memcpy(c.issuer, ka, sizeof(c.issuer));
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	/* activate: b active, a old; again: refused with its reason */
	assert_int_equal(ledger_ca_activate(lg, kb, now), 0);
	assert_int_equal(ledger_ca_activate(lg, kb, now), HSM_EPOLICY);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(ledger_ca_list(lg, ca_seen_cb, &seen), 0);
	assert_int_equal(seen.n, 2);
	assert_int_equal(seen.st[0], LEDGER_CA_OLD);
	assert_int_equal(seen.st[1], LEDGER_CA_ACTIVE);
	make_cert(&c, "e2", ID, now - 10, now + 50, "token:t", NULL);
	memcpy(c.issuer, ka, sizeof(c.issuer));
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EAGAIN);
	memcpy(c.issuer, kb, sizeof(c.issuer));
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	/* retire: refused while a's two certificates live; the active one never */
	assert_int_equal(ledger_ca_retire(lg, ka, now, &n, &latest), HSM_EBUSY);
	assert_int_equal(n, 2);
	assert_int_equal(ledger_ca_retire(lg, kb, now, &n, &latest), HSM_EPOLICY);
	/* revoked or expired, they no longer count */
	assert_int_equal(ledger_cert_revoke(lg, "e1", 1, now), 0);
	assert_int_equal(ledger_ca_retire(lg, ka, now + 101, &n, &latest), 0);
	assert_int_equal(ledger_ca_retire(lg, ka, now + 101, &n, &latest), HSM_EPOLICY);
	ledger_close(lg);
}

/*
 * Replicas 0 and 1 activate CA b at once while replica 2 issues with CA a:
 * exactly one activation happens (the other hears "already active"), and
 * once an issuance with a was refused (HSM_EAGAIN: a is old) none with a
 * succeeds again. Exit status: activators 0 (done) or 1 (already),
 * the issuer its successes; 200 and up for anything else.
 */
static int
proc_ca_race(int idx)
{
	struct ledger *lg = NULL;
	struct ledger_cert c;
	struct ledger_ca a;
	char kb[LEDGER_SPKI_ID_LEN + 1], serial[32];
	int wins = 0, refused = 0, r;

	if (ledger_open(dbpath, &lg) != 0)
		return 200;
	if (idx < 2) {
		memset(kb, 'b', LEDGER_SPKI_ID_LEN);
		kb[LEDGER_SPKI_ID_LEN] = '\0';
		usleep(20000);
		r = ledger_ca_activate(lg, kb, 3000);
		ledger_close(lg);
		return r == 0 ? 0 : r == HSM_EPOLICY ? 1 : 201;
	}
	make_ca(&a, 'a', LEDGER_CA_ACTIVE);
	for (int i = 0; i < PROC_N; i++) {
		snprintf(serial, sizeof(serial), "%x", 0xa000 + i);
		make_cert(&c, serial, ID, 1000, 2000000, "offline", NULL);
		memcpy(c.issuer, a.key_id, sizeof(c.issuer));
		if ((r = ledger_cert_add(lg, &c)) == 0) {
			if (refused) {
				ledger_close(lg);
				return 202;
			}
			wins++;
		} else if (r == HSM_EAGAIN) {
			refused = 1;
		} else {
			fprintf(stderr, "# replica %d: %s\n", idx, hsm_err_msg(r));
			ledger_close(lg);
			return 203;
		}
		usleep(1000);
	}
	ledger_close(lg);
	return wins;
}

static void
replicas_ca_activate_once(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_ca a, b;
	struct ca_seen seen;
	int st[NPROCS];
	unsigned n;
	int64_t latest;
	char ka[LEDGER_SPKI_ID_LEN + 1];

	make_ca(&a, 'a', LEDGER_CA_ACTIVE);
	assert_int_equal(ledger_ca_add(lg, &a), 0);
	make_ca(&b, 'b', LEDGER_CA_PREPARED);
	assert_int_equal(ledger_ca_add(lg, &b), 0);
	in_processes(proc_ca_race, st);
	assert_int_equal(st[0] + st[1], 1);
	assert_true(st[2] <= PROC_N);
	memcpy(ka, a.key_id, sizeof(ka));
	ka[LEDGER_SPKI_ID_LEN] = '\0';
	assert_int_equal(ledger_ca_outstanding(lg, ka, 1500, &n, &latest), 0);
	assert_int_equal(n, (unsigned)st[2]);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(ledger_ca_list(lg, ca_seen_cb, &seen), 0);
	assert_int_equal(seen.n, 2);
	assert_int_equal(seen.st[0], LEDGER_CA_OLD);
	assert_int_equal(seen.st[1], LEDGER_CA_ACTIVE);
	ledger_close(lg);
}

/* Schema 6 -> 7: a ledger gains the CA set and the issuer column, its rows kept. */
static void
migrate_v6(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_cert c, g;
	struct ca_seen seen;

	make_cert(&c, "a", ID, 1000, 50000, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	ledger_close(lg);
	drop_v7(dbpath);
	set_version(dbpath, 6);
	lg = open_ledger();
	assert_int_equal(ledger_cert_get(lg, "a", &g), 0);
	assert_string_equal(g.issuer, "");
	ledger_cert_clear(&g);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(ledger_ca_list(lg, ca_seen_cb, &seen), 0);
	assert_int_equal(seen.n, 0);
	ledger_close(lg);
}

int
main(void)
{
	/* Each test and the kind of store it applies to: 0 every one, 'f' files, 's' servers. */
	static const struct {
		struct CMUnitTest t;
		char only;
	} all[] = {
#define T(fn, only) { cmocka_unit_test_setup_teardown(fn, setup, teardown), only }
		T(open_errors, 0),
		T(open_errors_file, 'f'),
		T(server_errors, 's'),
		T(reconnects, 's'),
		T(issue_commit_lost_after_hook, 's'),
		T(token_single_use, 0),
		T(token_expired, 0),
		T(token_unknown, 0),
		T(token_unconsume, 0),
		T(cert_add_get_revoke, 0),
		T(revoke_id_and_chain, 0),
		T(renewal_chain_never_forks, 0),
		T(issue_is_one_transaction, 0),
		T(issue_with_hook, 0),
		T(schema_version, 0),
		T(migrate_v1_with_fork, 0),
		T(token_pays_for_cert, 0),
		T(migrate_v2, 0),
		T(migrate_v3, 0),
		T(revocation_sequence, 0),
		T(migrate_v5, 0),
		T(migrate_v6, 0),
		T(ca_set_rotation, 0),
		T(replicas_ca_activate_once, 0),
		T(entries_add_get_list_rm, 0),
		T(entries_refused, 0),
		T(entries_profile, 0),
		T(kinds_never_mix, 0),
		T(race_one_token_shared, 0),
		T(race_one_token_handles, 0),
		T(race_many_tokens, 0),
		T(race_many_tokens_handles, 0),
		T(race_renewal_shared, 0),
		T(race_renewal_handles, 0),
		T(replicas_consume_once, 0),
		T(replicas_serial_once, 0),
		T(replicas_chain_never_forks, 0),
		T(replicas_revocation_vs_issuance, 0),
		T(replicas_see_changes_at_once, 0),
		T(replicas_migrate_once, 0),
		T(replicas_kinds_never_mix, 0),
#undef T
	};
	struct CMUnitTest tests[sizeof(all) / sizeof(all[0])];
	size_t ntests;
	const char *want = getenv("HSMESH_TEST_LEDGER");
	int failed = 0;

	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		be = &backends[i];
		if (want != NULL ? strcmp(want, be->name) != 0 && strcmp(want, "all") != 0 :
		    !be->is_file && getenv("HSMESH_TEST_PG") == NULL)
			continue;
		if (!be->is_file && getenv("HSMESH_TEST_PG") == NULL) {
			/* Asked for, not there: a failure, never a silent skip. */
			printf("not ok 1 - %s: HSMESH_TEST_PG is not set (run under "
			    "tests/integration/pg.sh's pg_run)\n", be->name);
			failed = 1;
			continue;
		}
		ntests = 0;
		for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
			if (all[k].only == 0 || all[k].only == (be->is_file ? 'f' : 's'))
				tests[ntests++] = all[k].t;
		failed |= _cmocka_run_group_tests(be->name, tests, ntests, NULL, NULL);
	}
	return failed;
}
