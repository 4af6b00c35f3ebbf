/*
 * revoke.c - the CA's CRL in the sidecar (docs/PROXY.md, "Revocation").
 *
 * The proxy subscribes to the CRL on an agent connection of its own
 * (CRL_SUBSCRIBE; an agent without it closes only that connection). Every
 * CRL pushed is checked against a CA certificate of the trust bundle
 * (crl_check: signature, issuer, times, a number no older than the one
 * held) once, and then made the CRL of a new generation of TLS contexts:
 * new handshakes look the peer's leaf up in it from verify_cb
 * (revoke_verify_leaf: its serial, for a leaf of the CA that signed the
 * CRL, no signature checked again), resumed ones are checked by
 * handshake_done, and the workers close the established connections of a
 * listed peer at their next sweep (revocation.close_established).
 * OpenSSL's own CRL check (X509_V_FLAG_CRL_CHECK) verified the CRL's
 * signature at every handshake: one ECDSA verification, ~8 % of the
 * proxy's instructions per full handshake (docs/PROXY.md, "Revocation").
 *
 * Only the leaf is looked up: the CRL is that of the CA issuing the
 * workload certificates, and an intermediate above it (an operator's CA)
 * is listed only in its own issuer's CRL, which the mesh does not carry.
 *
 * No current CRL (none received yet, the one held is past its
 * nextUpdate or before its thisUpdate, or the peer is of another CA than
 * the CRL's): revocation.stale decides. "keep" (the default) goes on
 * with the last CRL, whose entries still refuse, or with no check at all
 * before the first; "refuse" refuses every peer until a current CRL
 * arrives.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "agclient.h"
#include "cert.h"
#include "crl.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "proxyconf.h"
#include "util.h"

/* agclient's reader thread: hand the CRL to the main thread. */
static void
on_crl(void *arg, int status, const uint8_t *der, size_t len)
{
	struct link *ln = arg;
	struct proxy *px = ln->px;
	uint64_t one = 1;
	uint8_t *copy;

	if (status != 0) {
		atomic_store(&ln->crl_ended, status);
	} else {
		if (len == 0)
			return;		/* the agent holds no CRL yet: it pushes one later */
		if ((copy = malloc(len)) == NULL)
			return;
		memcpy(copy, der, len);
		pthread_mutex_lock(&px->mbox_mu);
		free(px->mb_crl);
		px->mb_crl = copy;
		px->mb_crl_len = len;
		px->mb_crl_link = ln;
		pthread_mutex_unlock(&px->mbox_mu);
	}
	if (write(px->mbox_evfd, &one, sizeof(one)) < 0) {
		/* saturated counter: the main thread is awake anyway */
	}
}

void
revoke_subscribe(struct proxy *px, struct link *ln)
{
	int st;

	if ((st = agc_connect(px->cfg->agent_socket, &ln->crlc)) != 0 ||
	    (st = agc_subscribe_crl(ln->crlc, on_crl, ln)) != 0) {
		log_warn("agent at %s: no CRL subscription (%s): revocation.stale applies until "
		    "the next agent connection", px->cfg->agent_socket, hsm_err_msg(st));
		agc_free(ln->crlc);
		ln->crlc = NULL;
	}
}

/*
 * Check der against the bundle of the current identity, then the CA
 * certificates of its own chain (under an operator's root, the CA that
 * signs the CRL is there, not in the bundle); 0 (or HSM_EAGAIN: expired)
 * with *out and *ca_out (the CA it verified with, a reference).
 */
static int
check_against_bundle(struct proxy *px, const uint8_t *der, size_t len, X509_CRL **out,
    X509 **ca_out, struct crl_info *info)
{
	STACK_OF(X509) *const sets[2] = { px->cur->bundle, px->cur->rest };
	int64_t now = (int64_t)time(NULL);
	int r = hsm_err(HSM_EPROTO, "the trust bundle has no CA certificate"), first = 0;
	char why[300] = "";

	for (int s = 0; s < 2; s++)
		for (int i = 0; i < sk_X509_num(sets[s]); i++) {
			X509 *ca = sk_X509_value(sets[s], i);

			if (s == 1 && X509_check_ca(ca) == 0)
				continue;
			r = crl_check(der, len, ca, now, out, info);
			if (r == 0 || r == HSM_EAGAIN) {
				X509_up_ref(ca);
				*ca_out = ca;
				return r;
			}
			if (r == HSM_ENOMEM)
				return r;
			if (first == 0) {
				first = r;
				snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
			}
		}
	return first != 0 ? hsm_err(first, "%s", why) : r;
}

void
revoke_apply(struct proxy *px)
{
	struct crl_info info;
	X509_CRL *crl = NULL;
	X509 *ca = NULL;
	char t[HSM_TIME_STR];
	int r;

	if (px->crl_pending == NULL || px->cur == NULL)
		return;
	r = check_against_bundle(px, px->crl_pending, px->crl_pending_len, &crl, &ca, &info);
	free(px->crl_pending);
	px->crl_pending = NULL;
	px->crl_pending_len = 0;
	if (r != 0 && r != HSM_EAGAIN) {
		log_warn("CRL from the agent refused: %s; keeping %s", hsm_err_msg(r),
		    px->crl != NULL ? "the last one" : "none");
		return;
	}
	if (px->crl != NULL && info.number <= px->crl_info.number) {
		if (info.number < px->crl_info.number)
			log_warn("CRL %llu from the agent refused: older than the one held (%llu)",
			    (unsigned long long)info.number,
			    (unsigned long long)px->crl_info.number);
		X509_CRL_free(crl);
		X509_free(ca);
		return;
	}
	X509_CRL_free(px->crl);
	X509_free(px->crl_ca);
	px->crl = crl;
	px->crl_ca = ca;
	px->crl_info = info;
	metric_gauge_set(px->crl_number, (double)info.number);
	metric_gauge_set(px->crl_next_update, (double)info.next_update);
	hsm_fmt_time(info.next_update, t);
	log_info("CRL %llu: %zu revoked certificate%s, next update %s%s",
	    (unsigned long long)info.number, info.count, info.count == 1 ? "" : "s", t,
	    r == HSM_EAGAIN ? " (already past: revocation.stale applies)" : "");
	if ((r = ident_regen(px)) != 0) {
		log_err("new TLS contexts with CRL %llu: %s (handshakes use the previous CRL)",
		    (unsigned long long)info.number, hsm_err_msg(r));
		return;
	}
	/* Stored outbound sessions may be with a peer revoked since: full handshakes. */
	for (size_t i = 0; i < px->cfg->nlst; i++)
		sess_clear(&px->sess[i]);
	atomic_fetch_add(&px->crl_gen, 1);
}

void
revoke_take(struct proxy *px, uint8_t *der, size_t len)
{
	free(px->crl_pending);
	px->crl_pending = der;
	px->crl_pending_len = len;
	revoke_apply(px);
}

int
revoke_verify_leaf(struct conn *c, X509 *leaf, X509 *issuer)
{
	const struct ident *id = c->ident;
	char serial[80];
	int err = crl_verdict(id->crl, id->crl_ca, &id->crl_info, leaf, issuer,
	    (int64_t)time(NULL), c->pol->cfg->crl_refuse_stale);

	if (err == X509_V_ERR_CERT_REVOKED) {
		cert_serial_hex(X509_get0_serialNumber(leaf), serial, sizeof(serial));
		fail_set(&c->fail, REASON_CERT_REVOKED, "peer certificate serial %s is revoked "
		    "(the CA's CRL lists it)", serial);
	} else if (err != X509_V_OK) {
		fail_set(&c->fail, REASON_CRL_UNAVAILABLE, "no current CRL for the peer's "
		    "certificate (%s) and revocation.stale is refuse",
		    X509_verify_cert_error_string(err));
	}
	return err;
}

/* The current identity, with a reference, or NULL. */
static struct ident *
current_ident(struct proxy *px)
{
	struct ident *id;

	pthread_mutex_lock(&px->mu);
	if ((id = px->cur) != NULL)
		atomic_fetch_add(&id->refs, 1);
	pthread_mutex_unlock(&px->mu);
	return id;
}

/* The verified issuer of ssl's peer, or NULL (a resumed session keeps no chain). */
static X509 *
peer_issuer(SSL *ssl)
{
	STACK_OF(X509) *chain = ssl != NULL ? SSL_get0_verified_chain(ssl) : NULL;

	return sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
}

/* 1 when id's CRL is that of peer's issuer and lists peer. */
static int
ident_lists(const struct ident *id, X509 *peer, SSL *ssl)
{
	return id != NULL && id->crl != NULL &&
	    crl_covers(id->crl, id->crl_ca, peer, peer_issuer(ssl)) && crl_lists(id->crl, peer);
}

/* Record why c's peer is refused: its certificate is listed. */
static void
fail_revoked(struct conn *c, X509 *peer, const char *when)
{
	char serial[80];

	cert_serial_hex(X509_get0_serialNumber(peer), serial, sizeof(serial));
	fail_set(&c->fail, REASON_CERT_REVOKED, "peer %s certificate serial %s is revoked (the "
	    "CA's CRL lists it)%s", c->peer_id != NULL ? c->peer_id : "", serial, when);
}

int
revoke_check_peer(struct conn *c, X509 *peer)
{
	struct ident *id = current_ident(c->w->px);
	int listed = ident_lists(id, peer, conn_ssl(c));

	if (listed)
		fail_revoked(c, peer, c->resumed ? "; a resumed session" : "");
	ident_put(id);
	return listed;
}

void
revoke_sweep(struct worker *w)
{
	struct proxy *px = w->px;
	unsigned g = atomic_load(&px->crl_gen), n = 0;
	struct policy *pol;
	struct ident *id;
	struct conn *c, *next;
	X509 *peer;

	if (g == w->crl_gen)
		return;
	w->crl_gen = g;
	proxy_get(px, &id, &pol);
	if (id != NULL && id->crl != NULL && pol->cfg->crl_close) {
		for (c = w->head.next; c != &w->head; c = next) {
			next = c->next;
			if (!c->authorised || (c->state != C_RELAY && c->state != C_CONNECT) ||
			    conn_ssl(c) == NULL ||
			    (peer = SSL_get0_peer_certificate(conn_ssl(c))) == NULL ||
			    !ident_lists(id, peer, conn_ssl(c)))
				continue;
			fail_revoked(c, peer, "; established connection closed");
			metric_inc(px->revoked_closed);
			conn_close(c);
			n++;
		}
	}
	if (n > 0)
		log_warn("closed %u established connection%s of revoked peers "
		    "(revocation.close_established)", n, n == 1 ? "" : "s");
	ident_put(id);
	policy_put(pol);
}
