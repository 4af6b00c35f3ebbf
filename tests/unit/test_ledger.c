/*
 * test_ledger.c - the CA ledger: join tokens, certificates, renewals,
 * revocation, transactions, threads.
 *
 * The same suite runs against every backend in backends[] (today SQLite;
 * a PostgreSQL backend adds a row that starts a server and names its
 * database). Tests of what only a file-backed store has (file mode,
 * symbolic links, a missing directory) are skipped for the others.
 */
#include <sys/stat.h>

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

static const struct backend backends[] = {
	{ "sqlite", 1, sqlite_location, sqlite_exec },
};

static const struct backend *be;	/* the backend of the group running */
static char dir[64];
static char dbpath[128];		/* its store's location */

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
	char p[160];
	struct stat st;

	assert_int_equal(ledger_open("", &lg), HSM_EINVAL);
	assert_null(lg);
	lg = (struct ledger *)1;
	assert_int_equal(ledger_open("mysql://db.example.org/ca", &lg), HSM_EUNSUPPORTED);
	assert_null(lg);
	ledger_close(NULL);
	if (!be->is_file)
		skip();

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

/* Take what schema 4 added away from the store at path (it then reads as schema 3). */
static void
drop_v4(const char *path)
{
	assert_int_equal(be->exec(path, "ALTER TABLE certs DROP COLUMN issuer"), 0);
	assert_int_equal(be->exec(path, "DROP TABLE cas"), 0);
}

/* Take what schema 3 added away from the store at path (it then reads as schema 2). */
static void
drop_v3(const char *path)
{
	/* schema 4 first: a store that reads as schema 2 has neither */
	drop_v4(path);
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
	drop_v3(dbpath);
	assert_int_equal(be->exec(dbpath, "UPDATE schema_version SET version = 1"), 0);

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
	drop_v3(dbpath);
	assert_int_equal(be->exec(dbpath, "UPDATE schema_version SET version = 2"), 0);
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
	assert_int_equal(ledger_cert_add(lg, &c), HSM_EAGAIN);
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

/* A schema-3 ledger gains the CA set and the issuer column, its rows kept. */
static void
migrate_v3(void **state)
{
	struct ledger *lg = open_ledger();
	struct ledger_cert c, g;
	struct ca_seen seen;

	make_cert(&c, "a", ID, 1000, 50000, "token:t", NULL);
	assert_int_equal(ledger_cert_add(lg, &c), 0);
	ledger_close(lg);
	drop_v4(dbpath);
	assert_int_equal(be->exec(dbpath, "UPDATE schema_version SET version = 3"), 0);
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
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(token_single_use, setup, teardown),
		cmocka_unit_test_setup_teardown(token_expired, setup, teardown),
		cmocka_unit_test_setup_teardown(token_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(token_unconsume, setup, teardown),
		cmocka_unit_test_setup_teardown(cert_add_get_revoke, setup, teardown),
		cmocka_unit_test_setup_teardown(revoke_id_and_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(renewal_chain_never_forks, setup, teardown),
		cmocka_unit_test_setup_teardown(issue_is_one_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(issue_with_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(schema_version, setup, teardown),
		cmocka_unit_test_setup_teardown(migrate_v1_with_fork, setup, teardown),
		cmocka_unit_test_setup_teardown(migrate_v2, setup, teardown),
		cmocka_unit_test_setup_teardown(entries_add_get_list_rm, setup, teardown),
		cmocka_unit_test_setup_teardown(entries_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(kinds_never_mix, setup, teardown),
		cmocka_unit_test_setup_teardown(race_one_token_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(race_one_token_handles, setup, teardown),
		cmocka_unit_test_setup_teardown(race_many_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(race_many_tokens_handles, setup, teardown),
		cmocka_unit_test_setup_teardown(race_renewal_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(race_renewal_handles, setup, teardown),
		cmocka_unit_test_setup_teardown(ca_set_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(migrate_v3, setup, teardown),
	};
	int failed = 0;

	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		be = &backends[i];
		failed |= cmocka_run_group_tests_name(be->name, tests, NULL, NULL);
	}
	return failed;
}
