/*
 * auth.c - how a CMP message authenticates (see cmp.h): a join token's
 * password-based MAC, checked here before the library sees any secret, or
 * a signature by a certificate of ours, whose state (expired, revoked,
 * renewed) is read from the ledger because the library checks only the
 * signature of the certificate it is given (docs/OPENSSL.md).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/cmp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "audit.h"
#include "ca.h"
#include "cert.h"
#include "cmp.h"
#include "cmpder.h"
#include "err.h"
#include "ledger.h"
#include "log.h"
#include "util.h"

/*
 * A MAC-protected message: its REF names a join token; check the MAC with
 * the token's secret (or, for an unknown REF, a random one: it then fails
 * exactly like a wrong secret). When the ledger cannot be read the secret
 * is still derived from REF (only a token of ours has it), so a right MAC
 * goes on to be refused as a systemFailure that sends the client to
 * another replica. 1 when the MAC is wrong, else 0. The caller answers
 * both the same, unsigned (no guessing oracle).
 */
static int
auth_mac(struct server *s, struct txn *t, OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req,
    const struct cmp_der_info *di)
{
	struct ledger_token tok;
	char secret[CA_TOKEN_SECRET_LEN + 1];
	uint8_t h[32];
	size_t n = di->sender_kid_len;
	int known = 0, st;

	if (di->sender_kid != NULL && n > 0 && n <= HSM_MAX_LABEL) {
		memcpy(t->ref, di->sender_kid, n);
		t->ref[n] = '\0';
		memset(&tok, 0, sizeof(tok));
		if (strlen(t->ref) == n &&
		    ((st = ledger_token_lookup(s->cfg->ledger, t->ref, &tok)) == 0 || st != HSM_ENOENT)) {
			ca_token_secret(s->cfg->token_key, t->ref, secret);
			SHA256((const unsigned char *)secret, strlen(secret), h);
			known = st != 0 || CRYPTO_memcmp(h, tok.hash, 32) == 0;
			snprintf(t->token_id, sizeof(t->token_id), "%s", tok.spiffe_id);
			t->token_kind = tok.kind;
		}
	}
	if (!known) {
		uint8_t rnd[16];

		RAND_bytes(rnd, sizeof(rnd));
		hsm_hex(rnd, sizeof(rnd), secret);
	}
	if (di->sender_kid != NULL)
		OSSL_CMP_CTX_set1_referenceValue(ctx, di->sender_kid, di->sender_kid_len);
	OSSL_CMP_CTX_set1_secretValue(ctx, (unsigned char *)secret, strlen(secret));
	OPENSSL_cleanse(secret, sizeof(secret));
	if (OSSL_CMP_validate_msg(ctx, req) != 1) {
		ERR_clear_error();
		return 1;
	}
	t->auth = AUTH_TOKEN;
	return 0;
}

/* The state of a signer of ours, from its ledger row. */
static void
signer_state(struct server *s, struct txn *t, X509 *x, const struct ledger_cert *lc)
{
	snprintf(t->signer_id, sizeof(t->signer_id), "%s", lc->spiffe_id);
	snprintf(t->signer_node, sizeof(t->signer_node), "%s", lc->node_id);
	t->signer_kind = lc->kind;
	t->signer_state = SIGNER_OK;
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
		t->signer_state = SIGNER_EXPIRED;
	else if (lc->revoked)
		t->signer_state = SIGNER_REVOKED;
	else if (ledger_id_revoked(s->cfg->ledger, lc->spiffe_id))
		t->signer_state = SIGNER_ID_REVOKED;
	else if (lc->superseded_by[0] != '\0') {
		t->signer_state = SIGNER_SUPERSEDED;
		snprintf(t->signer_next, sizeof(t->signer_next), "%s", lc->superseded_by);
	}
}

/*
 * A signed message: its first extraCert must be a certificate of ours,
 * byte for byte; then pinning it makes the library check the signature
 * with exactly that certificate, which is checked here first (one
 * verification, no signature of ours). 0, or the refusal.
 */
static int
auth_cert(struct server *s, struct txn *t, OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req,
    const struct cmp_der_info *di, enum cmp_unauth *why)
{
	const unsigned char *p = di->first_extra_cert;
	X509 *x = d2i_X509(NULL, &p, (long)di->first_extra_cert_len);
	struct ledger_cert lc;
	unsigned char *der = NULL;
	int n, st, r = 1;

	*why = UNAUTH_UNKNOWN_SIGNER;
	if (x == NULL)
		return 1;
	cert_serial_hex(X509_get0_serialNumber(x), t->signer_serial, sizeof(t->signer_serial));
	memset(&lc, 0, sizeof(lc));
	n = i2d_X509(x, &der);
	st = n > 0 ? ledger_cert_get(s->cfg->ledger, t->signer_serial, &lc) : HSM_ENOENT;
	/*
	 * A certificate of ours; or the ledger cannot say: the signature is
	 * checked all the same, then the request is refused as a
	 * systemFailure (another replica may reach the ledger).
	 */
	if ((st == 0 && lc.der_len == (size_t)n && memcmp(lc.der, der, (size_t)n) == 0) ||
	    (st != 0 && st != HSM_ENOENT)) {
		OSSL_CMP_CTX_set1_srvCert(ctx, x);
		if (OSSL_CMP_validate_msg(ctx, req) != 1) {
			ERR_clear_error();
			OSSL_CMP_CTX_set1_srvCert(ctx, NULL);
			*why = UNAUTH_BAD_SIGNATURE;
		} else {
			if (st == 0)
				signer_state(s, t, x, &lc);
			else
				t->signer_state = SIGNER_UNVERIFIED;
			t->signer = x;
			x = NULL;
			t->auth = AUTH_CERT;
			r = 0;
		}
	}
	ledger_cert_clear(&lc);
	OPENSSL_free(der);
	X509_free(x);
	return r;
}

int
cmp_auth_prepare(struct server *s, struct txn *t, const OSSL_CMP_MSG *req,
    const struct cmp_der_info *di, enum cmp_unauth *why)
{
	OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);

	t->auth = AUTH_NONE;
	t->ref[0] = t->token_id[0] = t->signer_id[0] = t->signer_serial[0] = '\0';
	t->signer_next[0] = t->signer_node[0] = '\0';
	t->token_kind = t->signer_kind = LEDGER_WORKLOAD;
	OSSL_CMP_CTX_set1_srvCert(ctx, NULL);
	if (di->has_protection_alg && strcmp(di->protection_alg, CMP_OID_PBM) == 0) {
		*why = UNAUTH_BAD_MAC;
		return auth_mac(s, t, ctx, req, di);
	}
	if (di->has_protection_alg) {
		/* A signature: by a certificate of ours that it carries, or nothing. */
		*why = UNAUTH_UNKNOWN_SIGNER;
		return di->first_extra_cert != NULL ? auth_cert(s, t, ctx, req, di, why) : 1;
	}
	/* Unprotected: proves nothing; only evidence may then stand for it. */
	*why = UNAUTH_UNPROTECTED;
	return s->cfg->attest == NULL;
}

const char *
cmp_signer_refusal(const struct txn *t, char *buf, size_t cap)
{
	switch (t->signer_state) {
	case SIGNER_OK:
		return NULL;
	case SIGNER_EXPIRED:
		return "certificate expired";
	case SIGNER_REVOKED:
		return "certificate revoked";
	case SIGNER_ID_REVOKED:
		return "identity revoked";
	case SIGNER_SUPERSEDED:
		snprintf(buf, cap, "certificate already renewed (superseded by serial %s)",
		    t->signer_next);
		return buf;
	case SIGNER_UNVERIFIED:
		return "ledger unavailable: the certificate's state cannot be read";
	}
	return "certificate not current";
}
