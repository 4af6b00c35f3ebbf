/*
 * ledger.c - the CA's ledger (see ledger.h): input validation, the lock,
 * the reasons given for refusals, and which steps form one transaction.
 * The store is a backend behind struct ledger_ops (ledger_be.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "cert.h"
#include "err.h"
#include "ledger.h"
#include "ledger_be.h"
#include "log.h"
#include "nfprofile.h"
#include "proxyconf.h"
#include "selector.h"
#include "spiffe.h"
#include "util.h"

/* The backends, asked in turn whether a location is theirs. */
static const struct ledger_ops *const backends[] = { &ledger_pg_ops, &ledger_sqlite_ops };

/*
 * A transaction the store found in conflict with a concurrent one
 * (HSM_EAGAIN) is run again, at most this many times in all, after a
 * random pause that doubles from 1 ms up to TXN_PAUSE_MAX_MS.
 */
#define TXN_TRIES 12
#define TXN_PAUSE_MAX_MS 64

struct ledger {
	pthread_mutex_t mu;	/* one call at a time on be */
	const struct ledger_ops *ops;
	struct ledger_be *be;
};

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

/* A random pause of up to 2^attempt ms (at most TXN_PAUSE_MAX_MS) before a retry. */
static void
txn_pause(int attempt)
{
	struct timespec now, ts;
	long cap = 1L << (attempt < 6 ? attempt : 6);

	if (cap > TXN_PAUSE_MAX_MS)
		cap = TXN_PAUSE_MAX_MS;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ts.tv_sec = 0;
	ts.tv_nsec = (now.tv_nsec % (cap * 1000000L)) + 100000L;
	nanosleep(&ts, NULL);
}

/*
 * Run body(lg, arg) in one transaction, with the lock held: committed
 * when body returns 0, rolled back otherwise. A conflict with a
 * concurrent transaction (HSM_EAGAIN from the store) runs the whole of it
 * again, at most TXN_TRIES times; then HSM_EIO. what names it in that
 * detail.
 */
static int
in_txn(struct ledger *lg, const char *what, int (*body)(struct ledger *, void *), void *arg)
{
	int r = HSM_EIO;

	for (int attempt = 0; attempt < TXN_TRIES; attempt++) {
		if (attempt > 0)
			txn_pause(attempt);
		if ((r = lg->ops->begin(lg->be)) == 0 && (r = body(lg, arg)) == 0)
			r = lg->ops->commit(lg->be);
		if (r != 0)
			lg->ops->rollback(lg->be);
		if (r != HSM_EAGAIN)
			return r;
	}
	return hsm_err(HSM_EIO, "ledger: %s: gave up after %d attempts, each in conflict with "
	    "a concurrent transaction", what, TXN_TRIES);
}

/* ---- validation ---- */

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
serial_arg(const char *in, char out[LEDGER_SERIAL_MAX + 1])
{
	if (norm_serial(in, out, LEDGER_SERIAL_MAX + 1) != 0)
		return hsm_err(HSM_EINVAL, "ledger: certificate serial must be 1..%d hex digits",
		    LEDGER_SERIAL_MAX);
	return 0;
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

/* A reference from anywhere (a peer): any string up to the bound, never echoed. */
static int
peer_ref(const char *ref)
{
	return ref != NULL && strnlen(ref, LEDGER_REF_MAX + 1) <= LEDGER_REF_MAX;
}

/* c checked and copied into n in the stored spelling (der borrowed). */
static int
cert_arg(const struct ledger_cert *c, struct ledger_cert *n)
{
	size_t alen;
	int r;

	memset(n, 0, sizeof(*n));
	if (c == NULL)
		return hsm_err(HSM_EINVAL, "ledger: no certificate");
	if (norm_serial(c->serial, n->serial, sizeof(n->serial)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: certificate serial must be 1..%d hex digits",
		    LEDGER_SERIAL_MAX);
	if (c->parent_serial[0] != '\0' &&
	    norm_serial(c->parent_serial, n->parent_serial, sizeof(n->parent_serial)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: parent serial must be 1..%d hex digits",
		    LEDGER_SERIAL_MAX);
	if (norm_hex(c->spki_id, LEDGER_SPKI_ID_LEN, LEDGER_SPKI_ID_LEN, n->spki_id,
	    sizeof(n->spki_id)) != 0)
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
	if (n->parent_serial[0] != '\0' && strcmp(n->parent_serial, n->serial) == 0)
		return hsm_err(HSM_EINVAL, "ledger: a certificate cannot renew itself");
	if (c->txn[0] != '\0' && norm_hex(c->txn, 2, LEDGER_TXN_MAX, n->txn, sizeof(n->txn)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: transaction id must be 2..%d hex digits",
		    LEDGER_TXN_MAX);
	if (c->kind != LEDGER_WORKLOAD && c->kind != LEDGER_NODE)
		return hsm_err(HSM_EINVAL, "ledger: unknown certificate kind %d", (int)c->kind);
	if (strnlen(c->node_id, sizeof(c->node_id)) == sizeof(c->node_id))
		return hsm_err(HSM_EINVAL, "ledger: node ID too long");
	if (c->node_id[0] != '\0' && (c->kind != LEDGER_WORKLOAD || (r = check_id(c->node_id)) != 0))
		return c->kind != LEDGER_WORKLOAD ?
		    hsm_err(HSM_EINVAL, "ledger: a node certificate is issued to no node") : r;
	if (c->issuer[0] != '\0' && norm_hex(c->issuer, LEDGER_SPKI_ID_LEN, LEDGER_SPKI_ID_LEN,
	    n->issuer, sizeof(n->issuer)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: issuer key id must be %d hex digits",
		    LEDGER_SPKI_ID_LEN);
	n->kind = c->kind;
	memcpy(n->node_id, c->node_id, sizeof(n->node_id));
	memcpy(n->spiffe_id, c->spiffe_id, sizeof(n->spiffe_id));
	memcpy(n->auth, c->auth, sizeof(n->auth));
	n->not_before = c->not_before;
	n->not_after = c->not_after;
	n->der = c->der;
	n->der_len = c->der_len;
	return 0;
}

/* ---- open, schema ---- */

/* Bring the store's schema to LEDGER_SCHEMA_VERSION, in one transaction. */
static int
migrate(const struct ledger_ops *ops, struct ledger_be *be)
{
	int64_t v = 0;
	int r;

	if ((r = ops->migrate_begin(be)) != 0)
		return r;
	if ((r = ops->schema_version(be, &v)) != 0)
		goto out;
	if (v < 0 || v > LEDGER_SCHEMA_VERSION) {
		r = hsm_err(HSM_EIO, "ledger: schema version %lld is newer than this program's (%d)",
		    (long long)v, LEDGER_SCHEMA_VERSION);
		goto out;
	}
	for (; v < LEDGER_SCHEMA_VERSION; v++) {
		if ((r = ops->exec(be, ops->migrations[v])) != 0 ||
		    (r = ops->version_add(be, v + 1)) != 0)
			goto out;
	}
	r = ops->commit(be);
 out:
	if (r != 0)
		ops->rollback(be);
	return r;
}

int
ledger_open(const char *location, struct ledger **out)
{
	const struct ledger_ops *ops = NULL;
	struct ledger *lg = NULL;
	pthread_mutexattr_t ma;
	int r, have_mu = 0;

	*out = NULL;
	if (location == NULL || *location == '\0')
		return hsm_err(HSM_EINVAL, "ledger: no database path");
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]) && ops == NULL; i++)
		if (backends[i]->claims(location))
			ops = backends[i];
	if (ops == NULL)
		return hsm_err(HSM_EUNSUPPORTED, "ledger: no backend for database '%.80s' "
		    "(a file path is an SQLite database)", location);
	if ((lg = calloc(1, sizeof(*lg))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	lg->ops = ops;
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
	if ((r = ops->open(location, &lg->be)) != 0)
		goto out;
	if ((r = migrate(ops, lg->be)) != 0 || (r = ops->ready(lg->be)) != 0) {
		ops->close(lg->be);
		goto out;
	}
	*out = lg;
	lg = NULL;
 out:
	if (lg != NULL) {
		if (have_mu)
			pthread_mutex_destroy(&lg->mu);
		free(lg);
	}
	return r;
}

void
ledger_close(struct ledger *lg)
{
	if (lg == NULL)
		return;
	lg->ops->close(lg->be);
	pthread_mutex_destroy(&lg->mu);
	free(lg);
}

/* ---- join tokens ---- */

int
ledger_token_add(struct ledger *lg, const char *ref,
    const uint8_t secret_hash[LEDGER_HASH_LEN], const char *spiffe_id, int64_t expires)
{
	return ledger_token_add_kind(lg, ref, secret_hash, spiffe_id, expires, LEDGER_WORKLOAD);
}

int
ledger_token_add_kind(struct ledger *lg, const char *ref,
    const uint8_t secret_hash[LEDGER_HASH_LEN], const char *spiffe_id, int64_t expires,
    enum ledger_kind kind)
{
	int r;

	if (!valid_ref(ref))
		return hsm_err(HSM_EINVAL, "ledger: join token reference must be 1..%d "
		    "printable characters", LEDGER_REF_MAX);
	if (secret_hash == NULL)
		return hsm_err(HSM_EINVAL, "ledger: missing join token hash");
	if (kind != LEDGER_WORKLOAD && kind != LEDGER_NODE)
		return hsm_err(HSM_EINVAL, "ledger: unknown join token kind %d", (int)kind);
	if ((r = check_id(spiffe_id)) != 0 || (r = lock(lg)) != 0)
		return r;
	r = lg->ops->token_insert(lg->be, ref, secret_hash, spiffe_id, (int64_t)time(NULL),
	    expires, (int)kind);
	unlock(lg);
	return r;
}

int
ledger_token_lookup(struct ledger *lg, const char *ref, struct ledger_token *out)
{
	struct ledger_token t;
	int r;

	memset(out, 0, sizeof(*out));
	/* ref may come from a peer: never echo it. */
	if (!peer_ref(ref))
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = lock(lg)) != 0)
		return r;
	if ((r = lg->ops->token_get(lg->be, ref, &t)) == 0)
		*out = t;
	unlock(lg);
	return r;
}

/* Why a join token cannot be consumed at now, or 0 when it can. */
static int
token_refusal(const struct ledger_token *t, int64_t now)
{
	if (t->used)
		return hsm_err(HSM_EPOLICY, "join token already used");
	if (now >= t->expires)
		return hsm_err(HSM_EPOLICY, "join token expired");
	return 0;
}

/* Consume ref at now, paying for serial (may be NULL); the lock is held. */
static int
consume_locked(struct ledger *lg, const char *ref, int64_t now, const char *serial)
{
	struct ledger_token t;
	int r;

	if ((r = lg->ops->token_use(lg->be, ref, now, serial)) < 0)
		return r;
	if (r == 1)
		return 0;
	/* Refused: say why. */
	if ((r = lg->ops->token_get(lg->be, ref, &t)) != 0)
		return r;
	return (r = token_refusal(&t, now)) != 0 ? r :
	    hsm_err(HSM_EIO, "ledger: join token neither consumed nor refused");
}

int
ledger_token_check(struct ledger *lg, const char *ref, int64_t now)
{
	struct ledger_token t;
	int r;

	if (!peer_ref(ref))
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = lock(lg)) != 0)
		return r;
	if ((r = lg->ops->token_get(lg->be, ref, &t)) == 0)
		r = token_refusal(&t, now);
	unlock(lg);
	return r;
}

int
ledger_token_consume(struct ledger *lg, const char *ref, int64_t now)
{
	int r;

	if (!peer_ref(ref))
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = lock(lg)) != 0)
		return r;
	r = consume_locked(lg, ref, now, NULL);
	unlock(lg);
	return r;
}

int
ledger_token_unconsume(struct ledger *lg, const char *ref, int64_t used_at)
{
	int r;

	if (!peer_ref(ref))
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = lock(lg)) != 0)
		return r;
	if ((r = lg->ops->token_unuse(lg->be, ref, used_at)) == 0)
		r = hsm_err(HSM_ENOENT, "join token not consumed at that time");
	else if (r == 1)
		r = 0;
	unlock(lg);
	return r;
}

/* ---- certificates ---- */

/* Record n as the renewal of its parent; the lock is held, in a transaction. */
static int
supersede_locked(struct ledger *lg, const struct ledger_cert *n)
{
	struct ledger_cert p;
	int r;

	if ((r = lg->ops->cert_supersede(lg->be, n->parent_serial, n->serial)) < 0)
		return r;
	if (r == 1)
		return 0;
	/* Refused: unknown, revoked, or renewed already (a fork, or a replay). */
	if ((r = lg->ops->cert_get(lg->be, n->parent_serial, &p)) != 0) {
		if (r == HSM_ENOENT)
			r = hsm_err(HSM_ENOENT, "ledger: renewal of unknown certificate %s",
			    n->parent_serial);
		return r;
	}
	if (p.superseded_by[0] != '\0')
		r = hsm_err(HSM_EPOLICY, "certificate already renewed (superseded by serial %s)",
		    p.superseded_by);
	else
		r = hsm_err(HSM_EPOLICY, "certificate revoked");
	ledger_cert_clear(&p);
	return r;
}

/* A join token enrolls only its own kind of identity; the lock is held. */
static int
token_kind_locked(struct ledger *lg, const char *ref, enum ledger_kind kind)
{
	struct ledger_token t;
	int r;

	if ((r = lg->ops->token_get(lg->be, ref, &t)) != 0)
		return r;
	if (t.kind == kind)
		return 0;
	return hsm_err(HSM_EPOLICY, t.kind == LEDGER_NODE ?
	    "join token enrolls a node identity, not a workload's" :
	    "join token enrolls a workload identity, not a node's");
}

/*
 * An ID is a node's or a workload's, never both: n's kind must agree with
 * every certificate its ID had, and with the registration entries (an
 * entry's ID is a workload's, an entry's node a node's). Lock held.
 */
static int
kind_locked(struct ledger *lg, const struct ledger_cert *n)
{
	unsigned nodes = 0, workloads = 0;
	int r;

	if ((r = lg->ops->cert_kinds(lg->be, n->spiffe_id, &nodes, &workloads)) != 0)
		return r;
	if (n->kind == LEDGER_NODE && workloads > 0)
		return hsm_err(HSM_EPOLICY, "%s is a workload identity, not a node's", n->spiffe_id);
	if (n->kind == LEDGER_WORKLOAD && nodes > 0)
		return hsm_err(HSM_EPOLICY, "%s is a node identity, not a workload's", n->spiffe_id);
	if (n->kind == LEDGER_WORKLOAD) {
		if ((r = lg->ops->entry_names_node(lg->be, n->spiffe_id)) < 0)
			return r;
		if (r > 0)
			return hsm_err(HSM_EPOLICY, "%s is a node named by a registration entry, "
			    "not a workload identity", n->spiffe_id);
	}
	return 0;
}

/* What ca_find_locked looks for and finds. */
struct ca_find {
	const char *key_id;	/* NULL: the active one */
	int found;
	int gen;
	enum ledger_ca_state state;
	char key[LEDGER_SPKI_ID_LEN + 1];
	unsigned n;		/* CAs in the set */
};

static int
ca_find_cb(const struct ledger_ca *c, void *arg)
{
	struct ca_find *f = arg;

	f->n++;
	if (!f->found && (f->key_id != NULL ? strcmp(c->key_id, f->key_id) == 0 :
	    c->state == LEDGER_CA_ACTIVE)) {
		f->found = 1;
		f->gen = c->gen;
		f->state = c->state;
		memcpy(f->key, c->key_id, sizeof(f->key));
	}
	return 0;
}

/* Find CA key_id (NULL: the active one) in the set; lock held. */
static int
ca_find_locked(struct ledger *lg, const char *key_id, struct ca_find *f)
{
	memset(f, 0, sizeof(*f));
	f->key_id = key_id;
	return lg->ops->ca_list(lg->be, ca_find_cb, f);
}

/* An issuance names its CA: once the ledger has a CA set, it must be the active one. */
static int
issuer_locked(struct ledger *lg, const struct ledger_cert *n)
{
	struct ca_find f;
	int r;

	if (n->issuer[0] == '\0')
		return 0;
	if ((r = ca_find_locked(lg, n->issuer, &f)) != 0)
		return r;
	if (f.n == 0)
		return 0;	/* a ledger without a CA set: the CA's state dir says */
	if (!f.found)
		return hsm_err(HSM_EPOLICY, "CA key %.16s... is not a CA of this ledger", n->issuer);
	if (f.state != LEDGER_CA_ACTIVE)
		return hsm_err(HSM_EAGAIN, "CA %d is not the active CA (it is %s)", f.gen,
		    ledger_ca_state_name(f.state));
	return 0;
}

static int
count_entry(const struct ledger_entry *e, void *arg)
{
	(*(unsigned *)arg)++;
	return 0;
}

/* What ledger_issue_with records, for its transaction's body. */
struct issue_arg {
	const struct ledger_cert *n;
	const char *token_ref;
	int64_t now;
	int (*before_commit)(void *arg);
	void *arg;
	int hook_ran;		/* before_commit succeeded in some attempt */
	char stale[160];	/* the issuer is not the active CA: why */
};

static int
issue_body(struct ledger *lg, void *v)
{
	struct issue_arg *a = v;
	unsigned entries = 0;
	int r;

	/*
	 * The hook's record (the audit line) is made once: when the commit
	 * after it failed in conflict, the issuance is not run again.
	 */
	if (a->hook_ran)
		return hsm_err(HSM_EIO, "ledger: issue: the commit failed after its record was made");
	/*
	 * The identity is checked inside the transaction, under its lock: a
	 * revocation that commits first is seen here, one that commits later
	 * revokes this certificate too.
	 */
	if ((r = lg->ops->id_lock(lg->be, a->n->spiffe_id)) != 0)
		return r;
	if ((r = lg->ops->id_revoked(lg->be, a->n->spiffe_id)) != 0)
		return r < 0 ? r : hsm_err(HSM_EPOLICY, "identity revoked");
	if ((r = kind_locked(lg, a->n)) != 0)
		return r;
	if (a->n->kind == LEDGER_NODE &&
	    (r = lg->ops->entry_list(lg->be, a->n->spiffe_id, count_entry, &entries)) == 0 &&
	    entries > 0)
		r = hsm_err(HSM_EPOLICY, "%s is the ID of a registration entry: a workload "
		    "identity, not a node's", a->n->spiffe_id);
	/*
	 * A CA that is no longer active is no conflict to run again (in_txn
	 * retries HSM_EAGAIN): it ends the transaction, and the caller hears
	 * HSM_EAGAIN once it is over.
	 */
	if (r == 0 && (r = issuer_locked(lg, a->n)) == HSM_EAGAIN) {
		snprintf(a->stale, sizeof(a->stale), "%s", hsm_err_msg(r));
		return hsm_err(HSM_EPOLICY, "%s", a->stale);
	}
	if (r != 0)
		return r;
	if ((a->token_ref == NULL ||
	    ((r = token_kind_locked(lg, a->token_ref, a->n->kind)) == 0 &&
	    (r = consume_locked(lg, a->token_ref, a->now, a->n->serial)) == 0)) &&
	    (a->n->parent_serial[0] == '\0' || (r = supersede_locked(lg, a->n)) == 0) &&
	    (r = lg->ops->cert_insert(lg->be, a->n, (int64_t)time(NULL))) == 0 &&
	    a->before_commit != NULL && (r = a->before_commit(a->arg)) == 0)
		a->hook_ran = 1;
	return r;
}

int
ledger_issue_with(struct ledger *lg, const struct ledger_cert *c, const char *token_ref,
    int64_t now, int (*before_commit)(void *arg), void *arg, int *hook_ran)
{
	struct ledger_cert n;
	struct issue_arg a = { &n, token_ref, now, before_commit, arg, 0, "" };
	int r;

	if (hook_ran != NULL)
		*hook_ran = 0;
	if ((r = cert_arg(c, &n)) != 0)
		return r;
	if (token_ref != NULL && !peer_ref(token_ref))
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = lock(lg)) != 0)
		return r;
	r = in_txn(lg, "issue", issue_body, &a);
	if (r == HSM_EPOLICY && a.stale[0] != '\0')
		r = hsm_err(HSM_EAGAIN, "%s", a.stale);
	if (hook_ran != NULL)
		*hook_ran = a.hook_ran;
	unlock(lg);
	return r;
}

int
ledger_issue(struct ledger *lg, const struct ledger_cert *c, const char *token_ref,
    int64_t now)
{
	return ledger_issue_with(lg, c, token_ref, now, NULL, NULL, NULL);
}

int
ledger_cert_add(struct ledger *lg, const struct ledger_cert *c)
{
	return ledger_issue(lg, c, NULL, 0);
}

int
ledger_cert_get(struct ledger *lg, const char *serial, struct ledger_cert *out)
{
	char hex[LEDGER_SERIAL_MAX + 1];
	struct ledger_cert *c;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = serial_arg(serial, hex)) != 0)
		return r;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return hsm_err(HSM_ENOMEM, "ledger: out of memory");
	if ((r = lock(lg)) == 0) {
		if ((r = lg->ops->cert_get(lg->be, hex, c)) == 0) {
			*out = *c;
			c->der = NULL;	/* now owned by *out */
		}
		unlock(lg);
	}
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

struct cert_revoke_arg {
	const char *hex;
	int reason;
	int64_t now;
};

static int
cert_revoke_body(struct ledger *lg, void *v)
{
	struct cert_revoke_arg *a = v;
	struct ledger_cert c;
	int r;

	/* The sequence moves with the revocation, in its transaction. */
	if ((r = lg->ops->cert_revoke(lg->be, a->hex, a->reason, a->now)) == 1)
		return lg->ops->revocation_bump(lg->be);
	/* Nothing changed: unknown, or already revoked (fine, the first counts). */
	if (r == 0 && (r = lg->ops->cert_get(lg->be, a->hex, &c)) == 0)
		ledger_cert_clear(&c);
	return r;
}

int
ledger_cert_revoke(struct ledger *lg, const char *serial, int reason, int64_t now)
{
	char hex[LEDGER_SERIAL_MAX + 1];
	struct cert_revoke_arg a = { hex, reason, now };
	int r;

	if ((r = serial_arg(serial, hex)) != 0 || (r = check_reason(reason)) != 0 ||
	    (r = lock(lg)) != 0)
		return r;
	r = in_txn(lg, "revoke certificate", cert_revoke_body, &a);
	unlock(lg);
	return r;
}

struct revoke_id_arg {
	const char *spiffe_id;
	int reason;
	int64_t now;
	unsigned n;
};

static int
revoke_id_body(struct ledger *lg, void *v)
{
	struct revoke_id_arg *a = v;
	int r;

	if ((r = lg->ops->id_lock(lg->be, a->spiffe_id)) == 0 &&
	    (r = lg->ops->certs_revoke_id(lg->be, a->spiffe_id, a->reason, a->now, &a->n)) == 0 &&
	    (r = lg->ops->id_revoke(lg->be, a->spiffe_id, a->reason, a->now)) == 0 && a->n > 0)
		/* The sequence moves with the revocations, in their transaction. */
		r = lg->ops->revocation_bump(lg->be);
	return r;
}

int
ledger_revoke_id(struct ledger *lg, const char *spiffe_id, int reason, int64_t now,
    unsigned *count)
{
	struct revoke_id_arg a = { spiffe_id, reason, now, 0 };
	int r;

	if (count != NULL)
		*count = 0;
	if ((r = check_id(spiffe_id)) != 0 || (r = check_reason(reason)) != 0 ||
	    (r = lock(lg)) != 0)
		return r;
	r = in_txn(lg, "revoke identity", revoke_id_body, &a);
	unlock(lg);
	if (r == 0 && count != NULL)
		*count = a.n;
	return r;
}

int
ledger_id_revoked(struct ledger *lg, const char *spiffe_id)
{
	int r;

	if (spiffe_id == NULL)
		return 1;
	if ((r = lock(lg)) != 0) {
		log_err("%s", hsm_err_msg(r));
		return 1;
	}
	r = lg->ops->id_revoked(lg->be, spiffe_id);
	unlock(lg);
	if (r < 0) {
		log_err("ledger: identity revocation check failed (treated as revoked): %s",
		    hsm_err_msg(r));
		return 1;
	}
	return r;
}

int
ledger_id_reinstate(struct ledger *lg, const char *spiffe_id)
{
	int r;

	if (spiffe_id == NULL)
		return hsm_err(HSM_EINVAL, "ledger: missing SPIFFE ID");
	if ((r = lock(lg)) != 0)
		return r;
	if ((r = lg->ops->id_reinstate(lg->be, spiffe_id)) == 0)
		r = hsm_err(HSM_ENOENT, "ledger: identity is not revoked");
	else if (r == 1)
		r = 0;
	unlock(lg);
	return r;
}

int
ledger_revocation_seq(struct ledger *lg, uint64_t *seq)
{
	int r;

	*seq = 0;
	if ((r = lock(lg)) != 0)
		return r;
	r = lg->ops->revocation_seq(lg->be, seq);
	unlock(lg);
	return r;
}

int
ledger_revoked_list(struct ledger *lg, int64_t now, ledger_revoked_cb cb, void *arg)
{
	int r;

	if (cb == NULL)
		return hsm_err(HSM_EINVAL, "ledger: list: missing argument");
	if ((r = lock(lg)) != 0)
		return r;
	r = lg->ops->revoked_list(lg->be, now, cb, arg);
	unlock(lg);
	return r;
}

int
ledger_cert_count(struct ledger *lg, uint64_t *n)
{
	int r;

	*n = 0;
	if ((r = lock(lg)) != 0)
		return r;
	r = lg->ops->cert_count(lg->be, n);
	unlock(lg);
	return r;
}

int
ledger_cert_list_id(struct ledger *lg, const char *spiffe_id, ledger_cert_cb cb, void *arg)
{
	int r;

	if (spiffe_id == NULL || cb == NULL)
		return hsm_err(HSM_EINVAL, "ledger: list: missing argument");
	if ((r = lock(lg)) != 0)
		return r;
	r = lg->ops->cert_list_id(lg->be, spiffe_id, cb, arg);
	unlock(lg);
	return r;
}

int
ledger_id_kinds(struct ledger *lg, const char *spiffe_id, unsigned *nodes, unsigned *workloads)
{
	int r;

	*nodes = *workloads = 0;
	if ((r = check_id(spiffe_id)) != 0 || (r = lock(lg)) != 0)
		return r;
	r = lg->ops->cert_kinds(lg->be, spiffe_id, nodes, workloads);
	unlock(lg);
	return r;
}

/* ---- registration entries ---- */

/* An entry's ID: exactly LEDGER_ENTRY_ID_LEN hex digits, stored lower-case. */
static int
entry_id_arg(const char *in, char out[LEDGER_ENTRY_ID_LEN + 1])
{
	if (norm_hex(in, LEDGER_ENTRY_ID_LEN, LEDGER_ENTRY_ID_LEN, out, LEDGER_ENTRY_ID_LEN + 1) != 0)
		return hsm_err(HSM_EINVAL, "ledger: an entry ID is %d hex digits",
		    LEDGER_ENTRY_ID_LEN);
	return 0;
}

/* A SPIFFE ID with a path (what a workload or a node is called). */
static int
check_path_id(const char *id, const char *what)
{
	struct spiffe_id sid;
	int r;

	if (id == NULL || id[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: missing %s", what);
	if ((r = spiffe_id_parse(id, &sid)) != 0)
		return r;
	if (sid.path[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: the %s %s has no path", what, id);
	return 0;
}

/* selectors: 1..SEL_SET_MAX selectors, one a line, each valid (selector.h). */
static int
check_selectors(const char *text)
{
	char line[SEL_TEXT_MAX + 1];
	struct selector sel;
	size_t n = 0;
	int r;

	for (const char *p = text; *p != '\0';) {
		size_t l = strcspn(p, "\n");

		if (l == 0 || l > SEL_TEXT_MAX)
			return hsm_err(HSM_EINVAL, "ledger: an empty or overlong selector line");
		memcpy(line, p, l);
		line[l] = '\0';
		if ((r = sel_parse(line, &sel)) != 0)
			return r;
		sel_clear(&sel);
		if (++n > SEL_SET_MAX)
			return hsm_err(HSM_EINVAL, "ledger: more than %d selectors", SEL_SET_MAX);
		p += l;
		if (*p == '\n' && *++p == '\0')
			return hsm_err(HSM_EINVAL, "ledger: an empty selector line");
	}
	return 0;
}

/* The certificate profile of e: a known one, with its NF fields exactly when it is 3gpp-nf. */
static int
check_profile(const struct ledger_entry *e)
{
	enum cert_profile_kind k;
	int r;

	if ((r = nf_profile_parse(e->profile, 1, &k)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: %s", hsm_err_detail());
	if (k != PROFILE_3GPP_NF) {
		if (e->nf_types[0] != '\0' || e->fqdn[0] != '\0')
			return hsm_err(HSM_EINVAL, "ledger: NF types and an FQDN go with profile %s "
			    "only", NF_PROFILE_NAME);
		return 0;
	}
	if (e->nf_types[0] == '\0' || e->fqdn[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: profile %s needs NF types and an FQDN",
		    NF_PROFILE_NAME);
	if (nf_types_parse(e->nf_types, NULL) != 0 || nf_fqdn_check(e->fqdn, NULL) != 0)
		return hsm_err(HSM_EINVAL, "ledger: %s", hsm_err_detail());
	return 0;
}

/* e's fields, each within its bounds and consistent with the others. */
static int
entry_arg(const struct ledger_entry *e)
{
	int r;

	if (strnlen(e->spiffe_id, sizeof(e->spiffe_id)) == sizeof(e->spiffe_id) ||
	    strnlen(e->node, sizeof(e->node)) == sizeof(e->node) ||
	    strnlen(e->selectors, sizeof(e->selectors)) == sizeof(e->selectors) ||
	    strnlen(e->profile, sizeof(e->profile)) == sizeof(e->profile) ||
	    strnlen(e->nf_types, sizeof(e->nf_types)) == sizeof(e->nf_types) ||
	    strnlen(e->fqdn, sizeof(e->fqdn)) == sizeof(e->fqdn))
		return hsm_err(HSM_EINVAL, "ledger: an entry field is too long");
	if ((r = check_path_id(e->spiffe_id, "workload ID")) != 0 || (r = check_profile(e)) != 0)
		return r;
	if (e->ttl < 0 || e->ttl > CERT_MAX_TTL)
		return hsm_err(HSM_EINVAL, "ledger: entry TTL out of range");
	if (e->self_managed) {
		if (e->node[0] != '\0' || e->selectors[0] != '\0')
			return hsm_err(HSM_EINVAL, "ledger: a self-managed entry names no node and no "
			    "selectors (no agent serves it)");
		return 0;
	}
	if (e->node[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: a node-managed entry names a node or a node "
		    "pattern");
	if ((r = e->node_is_pattern ? spiffe_pattern_check(e->node) :
	    check_path_id(e->node, "node ID")) != 0)
		return r;
	if (!e->node_is_pattern && strcmp(e->node, e->spiffe_id) == 0)
		return hsm_err(HSM_EINVAL, "ledger: a node cannot be its own workload");
	if (e->selectors[0] == '\0')
		return hsm_err(HSM_EINVAL, "ledger: a node-managed entry needs at least one selector "
		    "(which local processes the agent serves it to)");
	return check_selectors(e->selectors);
}

struct mode_check {
	const struct ledger_entry *e;
	char other[LEDGER_ENTRY_ID_LEN + 1];
};

/* 1 (and m->other set) when x disagrees with m->e on who manages the ID; 2 on its profile. */
static int
mode_conflict(const struct ledger_entry *x, void *arg)
{
	struct mode_check *m = arg;
	const struct ledger_entry *e = m->e;

	if (x->self_managed == e->self_managed && strcmp(x->profile, e->profile) == 0 &&
	    strcmp(x->nf_types, e->nf_types) == 0 && strcmp(x->fqdn, e->fqdn) == 0)
		return 0;
	memcpy(m->other, x->id, sizeof(m->other));
	return x->self_managed != e->self_managed ? 1 : 2;
}

/*
 * ledger_entry_add's transaction. The checks span several IDs, so the
 * body locks each ID it decides on (in one order: two adds never wait
 * on each other in a cycle), as ledger_issue locks the ID it issues:
 * on a store shared by replicas, an entry and a certificate that would
 * contradict each other never both commit.
 */
static int
entry_add_body(struct ledger *lg, void *v)
{
	struct ledger_entry *e = v;
	struct mode_check m = { .e = e };
	unsigned nodes = 0, workloads = 0, named = 0;
	const char *first = e->spiffe_id, *second = NULL;
	int r;

	if (!e->self_managed && !e->node_is_pattern) {
		second = e->node;
		if (strcmp(first, second) > 0) {
			first = e->node;
			second = e->spiffe_id;
		}
	}
	if ((r = lg->ops->id_lock(lg->be, first)) != 0 ||
	    (second != NULL && (r = lg->ops->id_lock(lg->be, second)) != 0))
		return r;
	/* The workload ID is no node's ... */
	if ((r = lg->ops->cert_kinds(lg->be, e->spiffe_id, &nodes, &workloads)) == 0 && nodes > 0)
		r = hsm_err(HSM_EPOLICY, "%s is a node identity (it has node certificates)",
		    e->spiffe_id);
	if (r == 0 && (r = lg->ops->entry_names_node(lg->be, e->spiffe_id)) > 0)
		r = hsm_err(HSM_EPOLICY, "%s is named as a node by another entry", e->spiffe_id);
	/* ... the node no workload's ... */
	if (r == 0 && !e->self_managed && !e->node_is_pattern) {
		if ((r = lg->ops->cert_kinds(lg->be, e->node, &nodes, &workloads)) == 0 && workloads > 0)
			r = hsm_err(HSM_EPOLICY, "%s is a workload identity, not a node's", e->node);
		if (r == 0 && (r = lg->ops->entry_list(lg->be, e->node, count_entry, &named)) == 0 &&
		    named > 0)
			r = hsm_err(HSM_EPOLICY, "%s is the ID of a registration entry, not a node",
			    e->node);
	}
	/* ... and every entry of one ID agrees on who manages it. */
	if (r == 0 && (r = lg->ops->entry_list(lg->be, e->spiffe_id, mode_conflict, &m)) == 1)
		r = hsm_err(HSM_EPOLICY, "%s is %s by entry %s", e->spiffe_id,
		    e->self_managed ? "node-managed" : "self-managed", m.other);
	else if (r == 2)
		r = hsm_err(HSM_EPOLICY, "entry %s of %s has another certificate profile (profile, "
		    "NF types, FQDN): all entries of one ID agree on it", m.other, e->spiffe_id);
	if (r == 0)
		r = lg->ops->entry_insert(lg->be, e);
	return r;
}

int
ledger_entry_add(struct ledger *lg, struct ledger_entry *e)
{
	uint8_t rnd[LEDGER_ENTRY_ID_LEN / 2];
	int r;

	if ((r = entry_arg(e)) != 0)
		return r;
	if (e->id[0] == '\0') {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return hsm_err(HSM_EIO, "ledger: no random bytes for an entry ID");
		hsm_hex(rnd, sizeof(rnd), e->id);
	} else if ((r = entry_id_arg(e->id, e->id)) != 0) {
		return r;
	}
	e->created = (int64_t)time(NULL);
	if ((r = lock(lg)) != 0)
		return r;
	r = in_txn(lg, "add entry", entry_add_body, e);
	unlock(lg);
	return r;
}

int
ledger_entry_get(struct ledger *lg, const char *id, struct ledger_entry *out)
{
	char hex[LEDGER_ENTRY_ID_LEN + 1];
	int r;

	memset(out, 0, sizeof(*out));
	if (id == NULL || (r = entry_id_arg(id, hex)) != 0)
		return id == NULL ? hsm_err(HSM_EINVAL, "ledger: missing entry ID") : r;
	if ((r = lock(lg)) != 0)
		return r;
	r = lg->ops->entry_get(lg->be, hex, out);
	unlock(lg);
	return r;
}

int
ledger_entry_rm(struct ledger *lg, const char *id)
{
	char hex[LEDGER_ENTRY_ID_LEN + 1];
	int r;

	if (id == NULL || (r = entry_id_arg(id, hex)) != 0)
		return id == NULL ? hsm_err(HSM_EINVAL, "ledger: missing entry ID") : r;
	if ((r = lock(lg)) != 0)
		return r;
	if ((r = lg->ops->entry_delete(lg->be, hex)) == 0)
		r = hsm_err(HSM_ENOENT, "no registration entry %s", hex);
	else if (r == 1)
		r = 0;
	unlock(lg);
	return r;
}

int
ledger_entry_list(struct ledger *lg, const char *spiffe_id, ledger_entry_cb cb, void *arg)
{
	int r;

	if (cb == NULL)
		return hsm_err(HSM_EINVAL, "ledger: list: missing callback");
	if ((r = lock(lg)) != 0)
		return r;
	r = lg->ops->entry_list(lg->be, spiffe_id, cb, arg);
	unlock(lg);
	return r;
}

int
ledger_entry_covers(const struct ledger_entry *e, const char *node_id)
{
	if (e->self_managed || node_id == NULL)
		return 0;
	return e->node_is_pattern ? spiffe_pattern_match(e->node, node_id) :
	    strcmp(e->node, node_id) == 0;
}

/* ---- the CA set ---- */

const char *
ledger_ca_state_name(enum ledger_ca_state s)
{
	static const char *const names[LEDGER_CA_STATES] = {
		[LEDGER_CA_PENDING] = "pending", [LEDGER_CA_PREPARED] = "prepared",
		[LEDGER_CA_ACTIVE] = "active", [LEDGER_CA_OLD] = "old",
		[LEDGER_CA_RETIRED] = "retired",
	};

	return (int)s >= 0 && (int)s < LEDGER_CA_STATES ? names[s] : "?";
}

static int
key_id_arg(const char *in, char out[LEDGER_SPKI_ID_LEN + 1])
{
	if (norm_hex(in, LEDGER_SPKI_ID_LEN, LEDGER_SPKI_ID_LEN, out, LEDGER_SPKI_ID_LEN + 1) != 0)
		return hsm_err(HSM_EINVAL, "ledger: CA key id must be %d hex digits",
		    LEDGER_SPKI_ID_LEN);
	return 0;
}

/* Chain or links text: PEM within the bound (NULL reads as ""). */
static int
pem_arg(const char *pem, const char *what)
{
	if (pem != NULL && strnlen(pem, LEDGER_CA_PEM_MAX + 1) > LEDGER_CA_PEM_MAX)
		return hsm_err(HSM_EINVAL, "ledger: CA %s longer than %d bytes", what,
		    LEDGER_CA_PEM_MAX);
	return 0;
}

static int
ca_add_body(struct ledger *lg, void *v)
{
	struct ledger_ca *n = v;
	struct ca_find f;
	int r;

	if ((r = ca_find_locked(lg, NULL, &f)) != 0)
		return r;
	if (n->state == LEDGER_CA_ACTIVE && f.n > 0)
		return hsm_err(HSM_EPOLICY, "the ledger has a CA set already: a new CA is "
		    "prepared, then activated");
	/* The first CA signed what the ledger holds from before CA sets. */
	if (f.n == 0 && (r = lg->ops->certs_tag_issuer(lg->be, n->key_id)) != 0)
		return r;
	return lg->ops->ca_insert(lg->be, n);
}

int
ledger_ca_add(struct ledger *lg, struct ledger_ca *c)
{
	struct ledger_ca n;
	int r;

	if (c == NULL)
		return hsm_err(HSM_EINVAL, "ledger: no CA");
	memset(&n, 0, sizeof(n));
	if ((r = key_id_arg(c->key_id, n.key_id)) != 0 || (r = pem_arg(c->chain, "chain")) != 0 ||
	    (r = pem_arg(c->links, "links")) != 0)
		return r;
	if (c->state != LEDGER_CA_PENDING && c->state != LEDGER_CA_PREPARED &&
	    c->state != LEDGER_CA_ACTIVE)
		return hsm_err(HSM_EINVAL, "ledger: a new CA is pending, prepared or active");
	if ((c->state == LEDGER_CA_PENDING) != (c->cert == NULL) ||
	    (c->cert != NULL && (c->cert_len == 0 || c->cert_len > INT32_MAX)))
		return hsm_err(HSM_EINVAL, "ledger: a CA has a certificate unless it is pending");
	n.state = c->state;
	n.cert = c->cert;
	n.cert_len = c->cert_len;
	n.chain = c->chain != NULL ? c->chain : "";
	n.links = c->links != NULL ? c->links : "";
	n.created = (int64_t)time(NULL);
	if ((r = lock(lg)) != 0)
		return r;
	r = in_txn(lg, "add CA", ca_add_body, &n);
	unlock(lg);
	if (r == 0) {
		c->gen = n.gen;
		c->created = n.created;
	}
	return r;
}

int
ledger_ca_list(struct ledger *lg, ledger_ca_cb cb, void *arg)
{
	int r;

	if ((r = lock(lg)) != 0)
		return r;
	r = lg->ops->ca_list(lg->be, cb, arg);
	unlock(lg);
	return r;
}

int
ledger_ca_install(struct ledger *lg, const char *key_id, const uint8_t *cert, size_t cert_len,
    const char *chain, const char *links, int64_t now)
{
	char kid[LEDGER_SPKI_ID_LEN + 1];
	struct ca_find f;
	unsigned mask = 1u << LEDGER_CA_PENDING | 1u << LEDGER_CA_PREPARED |
	    1u << LEDGER_CA_ACTIVE | 1u << LEDGER_CA_OLD;
	int r;

	if ((r = key_id_arg(key_id, kid)) != 0 || (r = pem_arg(chain, "chain")) != 0 ||
	    (r = pem_arg(links, "links")) != 0)
		return r;
	if (cert == NULL || cert_len == 0 || cert_len > INT32_MAX)
		return hsm_err(HSM_EINVAL, "ledger: no CA certificate");
	if ((r = lock(lg)) != 0)
		return r;
	if ((r = lg->ops->ca_set_cert(lg->be, kid, cert, cert_len, chain != NULL ? chain : "",
	    links != NULL ? links : "", mask, now)) == 1) {
		r = 0;
	} else if (r == 0 && (r = ca_find_locked(lg, kid, &f)) == 0) {
		r = !f.found ? hsm_err(HSM_ENOENT, "ledger: no CA with key %.16s...", kid) :
		    hsm_err(HSM_EPOLICY, "CA %d is %s", f.gen, ledger_ca_state_name(f.state));
	}
	unlock(lg);
	return r;
}

/* Move CA kid (found as *f) to state to; lock and transaction held. */
static int
ca_move_found(struct ledger *lg, const char *kid, const struct ca_find *f, int to, int64_t now)
{
	int r;

	if ((r = lg->ops->ca_move(lg->be, kid, (int)f->state, to, now)) != 1)
		return r < 0 ? r : hsm_err(HSM_EIO, "ledger: CA %d changed meanwhile", f->gen);
	return 0;
}

/* What ledger_ca_activate and ledger_ca_retire change, for their transactions. */
struct ca_step_arg {
	const char *kid;
	int64_t now;
	unsigned *n;		/* retire: outstanding certificates */
	int64_t *latest;
};

static int
ca_activate_body(struct ledger *lg, void *v)
{
	struct ca_step_arg *a = v;
	struct ca_find f, cur;
	int r;

	if ((r = ca_find_locked(lg, a->kid, &f)) != 0 || (r = ca_find_locked(lg, NULL, &cur)) != 0)
		return r;
	if (!f.found)
		return hsm_err(HSM_ENOENT, "ledger: no CA with key %.16s...", a->kid);
	if (f.state != LEDGER_CA_PREPARED && f.state != LEDGER_CA_OLD)
		return hsm_err(HSM_EPOLICY, "CA %d is %s%s", f.gen, f.state == LEDGER_CA_ACTIVE ?
		    "already " : "", f.state == LEDGER_CA_PENDING ?
		    "pending: it has no certificate yet" : ledger_ca_state_name(f.state));
	/* The active one steps down first: the store holds at most one active. */
	if (cur.found && (r = lg->ops->ca_move(lg->be, cur.key, LEDGER_CA_ACTIVE, LEDGER_CA_OLD,
	    a->now)) != 1)
		return r < 0 ? r : hsm_err(HSM_EIO, "ledger: the active CA changed meanwhile");
	return ca_move_found(lg, a->kid, &f, LEDGER_CA_ACTIVE, a->now);
}

int
ledger_ca_activate(struct ledger *lg, const char *key_id, int64_t now)
{
	char kid[LEDGER_SPKI_ID_LEN + 1];
	struct ca_step_arg a = { kid, now, NULL, NULL };
	int r;

	if ((r = key_id_arg(key_id, kid)) != 0)
		return r;
	if ((r = lock(lg)) != 0)
		return r;
	r = in_txn(lg, "activate CA", ca_activate_body, &a);
	unlock(lg);
	return r;
}

int
ledger_ca_outstanding(struct ledger *lg, const char *key_id, int64_t now, unsigned *n,
    int64_t *latest)
{
	char kid[LEDGER_SPKI_ID_LEN + 1];
	int r;

	*n = 0;
	*latest = 0;
	if ((r = key_id_arg(key_id, kid)) != 0)
		return r;
	if ((r = lock(lg)) != 0)
		return r;
	r = lg->ops->certs_outstanding(lg->be, kid, now, n, latest);
	unlock(lg);
	return r;
}

static int
ca_retire_body(struct ledger *lg, void *v)
{
	struct ca_step_arg *a = v;
	struct ca_find f;
	int r;

	*a->n = 0;
	*a->latest = 0;
	if ((r = ca_find_locked(lg, a->kid, &f)) != 0)
		return r;
	if (!f.found)
		return hsm_err(HSM_ENOENT, "ledger: no CA with key %.16s...", a->kid);
	if (f.state == LEDGER_CA_ACTIVE || f.state == LEDGER_CA_RETIRED)
		return hsm_err(HSM_EPOLICY, "CA %d is %s%s", f.gen,
		    f.state == LEDGER_CA_RETIRED ? "already " : "", ledger_ca_state_name(f.state));
	/* Counted and changed in one transaction: no issuance by it can slip in between. */
	if ((r = lg->ops->certs_outstanding(lg->be, a->kid, a->now, a->n, a->latest)) != 0)
		return r;
	if (*a->n > 0)
		return hsm_err(HSM_EBUSY, "%u certificate%s issued by CA %d %s not expired yet",
		    *a->n, *a->n == 1 ? "" : "s", f.gen, *a->n == 1 ? "has" : "have");
	return ca_move_found(lg, a->kid, &f, LEDGER_CA_RETIRED, a->now);
}

int
ledger_ca_retire(struct ledger *lg, const char *key_id, int64_t now, unsigned *n,
    int64_t *latest)
{
	char kid[LEDGER_SPKI_ID_LEN + 1];
	struct ca_step_arg a = { kid, now, n, latest };
	int r;

	*n = 0;
	*latest = 0;
	if ((r = key_id_arg(key_id, kid)) != 0)
		return r;
	if ((r = lock(lg)) != 0)
		return r;
	r = in_txn(lg, "retire CA", ca_retire_body, &a);
	unlock(lg);
	return r;
}

int
ledger_ca_seq(struct ledger *lg, int64_t *seq)
{
	int r;

	*seq = 0;
	if ((r = lock(lg)) != 0)
		return r;
	r = lg->ops->ca_seq(lg->be, seq);
	unlock(lg);
	return r;
}
