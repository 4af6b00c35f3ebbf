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

#include "err.h"
#include "ledger.h"
#include "ledger_be.h"
#include "log.h"
#include "spiffe.h"

/* The backends, asked in turn whether a location is theirs. */
static const struct ledger_ops *const backends[] = { &ledger_sqlite_ops };

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
	memcpy(n->spiffe_id, c->spiffe_id, sizeof(n->spiffe_id));
	memcpy(n->auth, c->auth, sizeof(n->auth));
	n->not_before = c->not_before;
	n->not_after = c->not_after;
	n->der = c->der;
	n->der_len = c->der_len;
	return 0;
}

/* ---- open ---- */

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
	int r;

	if (!valid_ref(ref))
		return hsm_err(HSM_EINVAL, "ledger: join token reference must be 1..%d "
		    "printable characters", LEDGER_REF_MAX);
	if (secret_hash == NULL)
		return hsm_err(HSM_EINVAL, "ledger: missing join token hash");
	if ((r = check_id(spiffe_id)) != 0 || (r = lock(lg)) != 0)
		return r;
	r = lg->ops->token_insert(lg->be, ref, secret_hash, spiffe_id, (int64_t)time(NULL),
	    expires);
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

/* Consume ref at now; the lock is held (inside a transaction or not). */
static int
consume_locked(struct ledger *lg, const char *ref, int64_t now)
{
	struct ledger_token t;
	int r;

	if ((r = lg->ops->token_use(lg->be, ref, now)) < 0)
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
	r = consume_locked(lg, ref, now);
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
	/* Refused: unknown, or renewed already (a fork, or a replay). */
	if ((r = lg->ops->cert_get(lg->be, n->parent_serial, &p)) != 0) {
		if (r == HSM_ENOENT)
			r = hsm_err(HSM_ENOENT, "ledger: renewal of unknown certificate %s",
			    n->parent_serial);
		return r;
	}
	r = hsm_err(HSM_EPOLICY, "certificate already renewed (superseded by serial %s)",
	    p.superseded_by);
	ledger_cert_clear(&p);
	return r;
}

int
ledger_issue_with(struct ledger *lg, const struct ledger_cert *c, const char *token_ref,
    int64_t now, int (*before_commit)(void *arg), void *arg, int *hook_ran)
{
	struct ledger_cert n;
	int r;

	if (hook_ran != NULL)
		*hook_ran = 0;
	if ((r = cert_arg(c, &n)) != 0)
		return r;
	if (token_ref != NULL && !peer_ref(token_ref))
		return hsm_err(HSM_ENOENT, "join token unknown");
	if ((r = lock(lg)) != 0)
		return r;
	if ((r = lg->ops->begin(lg->be)) != 0)
		goto out;
	if ((token_ref == NULL || (r = consume_locked(lg, token_ref, now)) == 0) &&
	    (n.parent_serial[0] == '\0' || (r = supersede_locked(lg, &n)) == 0) &&
	    (r = lg->ops->cert_insert(lg->be, &n, (int64_t)time(NULL))) == 0 &&
	    (before_commit == NULL || (r = before_commit(arg)) == 0)) {
		if (hook_ran != NULL && before_commit != NULL)
			*hook_ran = 1;
		r = lg->ops->commit(lg->be);
	}
	if (r != 0)
		lg->ops->rollback(lg->be);
 out:
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

int
ledger_cert_revoke(struct ledger *lg, const char *serial, int reason, int64_t now)
{
	char hex[LEDGER_SERIAL_MAX + 1];
	struct ledger_cert c;
	int r;

	if ((r = serial_arg(serial, hex)) != 0 || (r = check_reason(reason)) != 0 ||
	    (r = lock(lg)) != 0)
		return r;
	if ((r = lg->ops->cert_revoke(lg->be, hex, reason, now)) == 1) {
		r = 0;
	} else if (r == 0) {
		/* Nothing changed: unknown, or already revoked (fine, the first counts). */
		if ((r = lg->ops->cert_get(lg->be, hex, &c)) == 0)
			ledger_cert_clear(&c);
	}
	unlock(lg);
	return r;
}

int
ledger_revoke_id(struct ledger *lg, const char *spiffe_id, int reason, int64_t now,
    unsigned *count)
{
	unsigned n = 0;
	int r;

	if (count != NULL)
		*count = 0;
	if ((r = check_id(spiffe_id)) != 0 || (r = check_reason(reason)) != 0 ||
	    (r = lock(lg)) != 0)
		return r;
	if ((r = lg->ops->begin(lg->be)) == 0) {
		if ((r = lg->ops->certs_revoke_id(lg->be, spiffe_id, reason, now, &n)) == 0 &&
		    (r = lg->ops->id_revoke(lg->be, spiffe_id, reason, now)) == 0)
			r = lg->ops->commit(lg->be);
		if (r != 0)
			lg->ops->rollback(lg->be);
	}
	unlock(lg);
	if (r == 0 && count != NULL)
		*count = n;
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
