/*
 * ledger.c - the CA's ledger (see ledger.h): input validation, the lock,
 * the reasons given for refusals, and which steps form one transaction.
 * The store is a backend behind struct ledger_ops (ledger_be.h).
 * Registration entries are in ledger_entry.c, the CA set in ledger_ca.c
 * (shared parts: ledger_int.h).
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
#include "ledger_int.h"

/* The backends, asked in turn whether a location is theirs. */
static const struct ledger_ops *const backends[] = { &ledger_pg_ops, &ledger_sqlite_ops };

/*
 * The mutex is error-checking: a callback that calls back into the
 * ledger gets HSM_EBUSY instead of a deadlock.
 */
int
ledgeri_lock(struct ledger *lg)
{
	int e;

	if (lg == NULL)
		return hsm_err(HSM_EINVAL, "ledger: not open");
	if ((e = pthread_mutex_lock(&lg->mu)) == EDEADLK)
		return hsm_err(HSM_EBUSY, "ledger: re-entered from a callback");
	if (e != 0)
		return hsm_err(HSM_EIO, "ledger: ledgeri_lock: %s", strerror(e));
	return 0;
}

void
ledgeri_unlock(struct ledger *lg)
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
 * Run body(lg, arg) in one transaction, with the ledgeri_lock held: committed
 * when body returns 0, rolled back otherwise. A conflict with a
 * concurrent transaction (HSM_EAGAIN from the store) runs the whole of it
 * again, at most TXN_TRIES times; then HSM_EIO. what names it in that
 * detail.
 */
int
ledgeri_in_txn(struct ledger *lg, const char *what, int (*body)(struct ledger *, void *), void *arg)
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
int
ledgeri_norm_hex(const char *in, size_t minlen, size_t maxlen, char *out, size_t size)
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
	return ledgeri_norm_hex(in, 1, LEDGER_SERIAL_MAX, out, size);
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
	if (ledgeri_norm_hex(c->spki_id, LEDGER_SPKI_ID_LEN, LEDGER_SPKI_ID_LEN, n->spki_id,
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
	if (c->txn[0] != '\0' && ledgeri_norm_hex(c->txn, 2, LEDGER_TXN_MAX, n->txn, sizeof(n->txn)) != 0)
		return hsm_err(HSM_EINVAL, "ledger: transaction id must be 2..%d hex digits",
		    LEDGER_TXN_MAX);
	if (c->kind != LEDGER_WORKLOAD && c->kind != LEDGER_NODE)
		return hsm_err(HSM_EINVAL, "ledger: unknown certificate kind %d", (int)c->kind);
	if (strnlen(c->node_id, sizeof(c->node_id)) == sizeof(c->node_id))
		return hsm_err(HSM_EINVAL, "ledger: node ID too long");
	if (c->node_id[0] != '\0' && (c->kind != LEDGER_WORKLOAD || (r = check_id(c->node_id)) != 0))
		return c->kind != LEDGER_WORKLOAD ?
		    hsm_err(HSM_EINVAL, "ledger: a node certificate is issued to no node") : r;
	if (c->issuer[0] != '\0' && ledgeri_norm_hex(c->issuer, LEDGER_SPKI_ID_LEN, LEDGER_SPKI_ID_LEN,
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
	if ((r = check_id(spiffe_id)) != 0 || (r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->token_insert(lg->be, ref, secret_hash, spiffe_id, (int64_t)time(NULL),
	    expires, (int)kind);
	ledgeri_unlock(lg);
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
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	if ((r = lg->ops->token_get(lg->be, ref, &t)) == 0)
		*out = t;
	ledgeri_unlock(lg);
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

/* Consume ref at now, paying for serial (may be NULL); the ledgeri_lock is held. */
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
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	if ((r = lg->ops->token_get(lg->be, ref, &t)) == 0)
		r = token_refusal(&t, now);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_token_consume(struct ledger *lg, const char *ref, int64_t now)
{
	int r;

	if (!peer_ref(ref))
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = consume_locked(lg, ref, now, NULL);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_token_unconsume(struct ledger *lg, const char *ref, int64_t used_at)
{
	int r;

	if (!peer_ref(ref))
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	if ((r = lg->ops->token_unuse(lg->be, ref, used_at)) == 0)
		r = hsm_err(HSM_ENOENT, "join token not consumed at that time");
	else if (r == 1)
		r = 0;
	ledgeri_unlock(lg);
	return r;
}

/* ---- certificates ---- */

/* Record n as the renewal of its parent; the ledgeri_lock is held, in a transaction. */
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

/* A join token enrolls only its own kind of identity; the ledgeri_lock is held. */
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

/* Find CA key_id (NULL: the active one) in the set; ledgeri_lock held. */
int
ledgeri_ca_find_locked(struct ledger *lg, const char *key_id, struct ca_find *f)
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
	if ((r = ledgeri_ca_find_locked(lg, n->issuer, &f)) != 0)
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

/* A ledger_entry_cb that counts the entries it is given in *(unsigned *)arg. */
int
ledgeri_count_entry(const struct ledger_entry *e, void *arg)
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
	 * The identity is checked inside the transaction, under its ledgeri_lock: a
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
	    (r = lg->ops->entry_list(lg->be, a->n->spiffe_id, ledgeri_count_entry, &entries)) == 0 &&
	    entries > 0)
		r = hsm_err(HSM_EPOLICY, "%s is the ID of a registration entry: a workload "
		    "identity, not a node's", a->n->spiffe_id);
	/*
	 * A CA that is no longer active is no conflict to run again (ledgeri_in_txn
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
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = ledgeri_in_txn(lg, "issue", issue_body, &a);
	if (r == HSM_EPOLICY && a.stale[0] != '\0')
		r = hsm_err(HSM_EAGAIN, "%s", a.stale);
	if (hook_ran != NULL)
		*hook_ran = a.hook_ran;
	ledgeri_unlock(lg);
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
	if ((r = ledgeri_lock(lg)) == 0) {
		if ((r = lg->ops->cert_get(lg->be, hex, c)) == 0) {
			*out = *c;
			c->der = NULL;	/* now owned by *out */
		}
		ledgeri_unlock(lg);
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
	    (r = ledgeri_lock(lg)) != 0)
		return r;
	r = ledgeri_in_txn(lg, "revoke certificate", cert_revoke_body, &a);
	ledgeri_unlock(lg);
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
	    (r = ledgeri_lock(lg)) != 0)
		return r;
	r = ledgeri_in_txn(lg, "revoke identity", revoke_id_body, &a);
	ledgeri_unlock(lg);
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
	if ((r = ledgeri_lock(lg)) != 0) {
		log_err("%s", hsm_err_msg(r));
		return 1;
	}
	r = lg->ops->id_revoked(lg->be, spiffe_id);
	ledgeri_unlock(lg);
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
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	if ((r = lg->ops->id_reinstate(lg->be, spiffe_id)) == 0)
		r = hsm_err(HSM_ENOENT, "ledger: identity is not revoked");
	else if (r == 1)
		r = 0;
	ledgeri_unlock(lg);
	return r;
}

int
ledger_revocation_seq(struct ledger *lg, uint64_t *seq)
{
	int r;

	*seq = 0;
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->revocation_seq(lg->be, seq);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_revoked_list(struct ledger *lg, int64_t now, ledger_revoked_cb cb, void *arg)
{
	int r;

	if (cb == NULL)
		return hsm_err(HSM_EINVAL, "ledger: list: missing argument");
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->revoked_list(lg->be, now, cb, arg);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_cert_count(struct ledger *lg, uint64_t *n)
{
	int r;

	*n = 0;
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->cert_count(lg->be, n);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_cert_list_id(struct ledger *lg, const char *spiffe_id, ledger_cert_cb cb, void *arg)
{
	int r;

	if (spiffe_id == NULL || cb == NULL)
		return hsm_err(HSM_EINVAL, "ledger: list: missing argument");
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->cert_list_id(lg->be, spiffe_id, cb, arg);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_id_kinds(struct ledger *lg, const char *spiffe_id, unsigned *nodes, unsigned *workloads)
{
	int r;

	*nodes = *workloads = 0;
	if ((r = check_id(spiffe_id)) != 0 || (r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->cert_kinds(lg->be, spiffe_id, nodes, workloads);
	ledgeri_unlock(lg);
	return r;
}
