/*
 * ledger_ca.c - the CA set in the ledger (see ledger.h): the CAs of a
 * rotation, their states and the moves between them.
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
	if (ledgeri_norm_hex(in, LEDGER_SPKI_ID_LEN, LEDGER_SPKI_ID_LEN, out, LEDGER_SPKI_ID_LEN + 1) != 0)
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

	if ((r = ledgeri_ca_find_locked(lg, NULL, &f)) != 0)
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
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = ledgeri_in_txn(lg, "add CA", ca_add_body, &n);
	ledgeri_unlock(lg);
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

	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->ca_list(lg->be, cb, arg);
	ledgeri_unlock(lg);
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
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	if ((r = lg->ops->ca_set_cert(lg->be, kid, cert, cert_len, chain != NULL ? chain : "",
	    links != NULL ? links : "", mask, now)) == 1) {
		r = 0;
	} else if (r == 0 && (r = ledgeri_ca_find_locked(lg, kid, &f)) == 0) {
		r = !f.found ? hsm_err(HSM_ENOENT, "ledger: no CA with key %.16s...", kid) :
		    hsm_err(HSM_EPOLICY, "CA %d is %s", f.gen, ledger_ca_state_name(f.state));
	}
	ledgeri_unlock(lg);
	return r;
}

/* Move CA kid (found as *f) to state to; ledgeri_lock and transaction held. */
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

	if ((r = ledgeri_ca_find_locked(lg, a->kid, &f)) != 0 || (r = ledgeri_ca_find_locked(lg, NULL, &cur)) != 0)
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
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = ledgeri_in_txn(lg, "activate CA", ca_activate_body, &a);
	ledgeri_unlock(lg);
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
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->certs_outstanding(lg->be, kid, now, n, latest);
	ledgeri_unlock(lg);
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
	if ((r = ledgeri_ca_find_locked(lg, a->kid, &f)) != 0)
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
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = ledgeri_in_txn(lg, "retire CA", ca_retire_body, &a);
	ledgeri_unlock(lg);
	return r;
}

int
ledger_ca_seq(struct ledger *lg, int64_t *seq)
{
	int r;

	*seq = 0;
	if ((r = ledgeri_lock(lg)) != 0)
		return r;
	r = lg->ops->ca_seq(lg->be, seq);
	ledgeri_unlock(lg);
	return r;
}
