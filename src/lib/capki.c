/*
 * capki.c - the checks of a CA certificate from an operator's PKI (capki.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "capki.h"
#include "cert.h"
#include "err.h"
#include "spiffe.h"
#include "util.h"

/* "certificate N (SUBJECT)" of the chain, N from 1 (the CA's own). */
static const char *
which(X509 *x, int i, char *buf, size_t len)
{
	char name[200];

	if (X509_NAME_oneline(X509_get_subject_name(x), name, sizeof(name)) == NULL)
		snprintf(name, sizeof(name), "?");
	snprintf(buf, len, "certificate %d (%s)", i + 1, name);
	return buf;
}

/* A throw-away certificate naming only spiffe://<td>/ca-check: what name constraints are checked on. */
static int
probe_new(const char *td, X509 **out)
{
	char uri[SPIFFE_TD_MAX + sizeof(SPIFFE_SCHEME) + 16];
	X509 *x;
	int r;

	*out = NULL;
	snprintf(uri, sizeof(uri), "%s%s/ca-check", SPIFFE_SCHEME, td);
	if ((x = X509_new()) == NULL)
		return HSM_ENOMEM;
	if ((r = cert_add_uri_san(x, uri, 0)) != 0) {
		X509_free(x);
		return r;
	}
	/* NAME_CONSTRAINTS_check reads the SAN the extension cache holds: fill it now. */
	(void)X509_get_extension_flags(x);
	*out = x;
	return 0;
}

/* Each certificate's name constraints must let spiffe://<td>/... through. */
static int
constraints_check(X509 *ca, STACK_OF(X509) *above, const char *td)
{
	char w[260];
	X509 *probe = NULL;
	int r, n = sk_X509_num(above);

	if ((r = probe_new(td, &probe)) != 0)
		return r;
	for (int i = 0; i <= n && r == 0; i++) {
		X509 *x = i == 0 ? ca : sk_X509_value(above, i - 1);
		NAME_CONSTRAINTS *nc = X509_get_ext_d2i(x, NID_name_constraints, NULL, NULL);
		int rc;

		if (nc == NULL)
			continue;
		if ((rc = NAME_CONSTRAINTS_check(probe, nc)) != X509_V_OK)
			r = hsm_err(HSM_EPOLICY, "the name constraints of %s exclude %s%s: %s",
			    which(x, i, w, sizeof(w)), SPIFFE_SCHEME, td,
			    X509_verify_cert_error_string(rc));
		NAME_CONSTRAINTS_free(nc);
	}
	X509_free(probe);
	return r;
}

/* The CA certificate itself: its key, CA:TRUE, keyCertSign, its trust domain. */
static int
ca_self_check(X509 *ca, const uint8_t keyid[HSM_KEYID_LEN], const char *td)
{
	char want[SPIFFE_TD_MAX + sizeof(SPIFFE_SCHEME)], got_hex[HSM_KEYID_LEN * 2 + 1];
	char want_hex[HSM_KEYID_LEN * 2 + 1], *uri = NULL;
	uint8_t got[HSM_KEYID_LEN];
	GENERAL_NAMES *sans;
	int r;

	if ((r = cert_key_id(ca, got)) != 0)
		return r;
	if (memcmp(got, keyid, HSM_KEYID_LEN) != 0)
		return hsm_err(HSM_EPOLICY, "the certificate's key is not the token's CA key "
		    "(certificate key id %.16s..., token %.16s...)",
		    hsm_hex(got, HSM_KEYID_LEN, got_hex), hsm_hex(keyid, HSM_KEYID_LEN, want_hex));
	if (!(X509_get_extension_flags(ca) & EXFLAG_BCONS) || X509_check_ca(ca) != 1)
		return hsm_err(HSM_EPOLICY, "the certificate is not a CA certificate "
		    "(no basicConstraints CA:TRUE)");
	if ((X509_get_extension_flags(ca) & EXFLAG_KUSAGE) &&
	    !(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN))
		return hsm_err(HSM_EPOLICY, "the certificate's keyUsage lacks keyCertSign");
	/* No SAN is fine (RFC 5280 lets a CA go without); a URI SAN must be this domain. */
	if ((sans = X509_get_ext_d2i(ca, NID_subject_alt_name, NULL, NULL)) == NULL)
		return 0;
	GENERAL_NAMES_free(sans);
	snprintf(want, sizeof(want), "%s%s", SPIFFE_SCHEME, td);
	if (cert_uri_san(ca, &uri) != 0)
		return hsm_err(HSM_EPOLICY, "the certificate's subjectAltName is not one URI %s",
		    want);
	r = strcmp(uri, want) == 0 ? 0 : hsm_err(HSM_EPOLICY,
	    "the certificate names %.200s, not %s", uri, want);
	free(uri);
	return r;
}

/* Every certificate valid at now; every path length room for what is below it. */
static int
times_and_lengths(X509 *ca, STACK_OF(X509) *above, time_t now)
{
	char w[260], t[HSM_TIME_STR];
	int64_t nb, na;
	int r, n = sk_X509_num(above);

	for (int i = 0; i <= n; i++) {
		X509 *x = i == 0 ? ca : sk_X509_value(above, i - 1);
		long plen = X509_get_pathlen(x);

		if ((r = cert_time_unix(X509_get0_notBefore(x), &nb)) != 0 ||
		    (r = cert_time_unix(X509_get0_notAfter(x), &na)) != 0)
			return hsm_err(HSM_EINVAL, "%s has an unreadable validity",
			    which(x, i, w, sizeof(w)));
		if (nb > (int64_t)now)
			return hsm_err(HSM_EPOLICY, "%s is not valid before %s",
			    which(x, i, w, sizeof(w)), hsm_fmt_time(nb, t));
		if (na <= (int64_t)now)
			return hsm_err(HSM_EPOLICY, "%s expired at %s", which(x, i, w, sizeof(w)),
			    hsm_fmt_time(na, t));
		/*
		 * Below certificate i are i CA certificates (the CA's own
		 * included) before the SVIDs: its pathLenConstraint must allow
		 * them (the operator's self-signed root's is checked too, as
		 * OpenSSL does).
		 */
		if (i > 0 && plen >= 0 && plen < i)
			return hsm_err(HSM_EPOLICY, "the path length of %s allows %ld CA "
			    "certificate%s below it, the chain has %d", which(x, i, w, sizeof(w)),
			    plen, plen == 1 ? "" : "s", i);
	}
	return 0;
}

int
capki_chain_check(X509 *ca, STACK_OF(X509) *above, const uint8_t keyid[HSM_KEYID_LEN],
    const char *td, time_t now)
{
	char w[260];
	STACK_OF(X509) *mid = NULL;
	X509_STORE *store = NULL;
	X509_STORE_CTX *sc = NULL;
	X509 *root;
	int r, n = sk_X509_num(above), rc, depth;

	if (ca == NULL)
		return hsm_err(HSM_EINVAL, "no CA certificate");
	if (n <= 0)
		return hsm_err(HSM_EINVAL, "the chain holds only the CA certificate: append the "
		    "certificates above it, the operator's root last");
	if (n + 1 > CAPKI_CHAIN_MAX)
		return hsm_err(HSM_EINVAL, "the chain holds %d certificates, at most %d", n + 1,
		    CAPKI_CHAIN_MAX);
	if ((r = ca_self_check(ca, keyid, td)) != 0 || (r = times_and_lengths(ca, above, now)) != 0)
		return r;
	root = sk_X509_value(above, n - 1);
	if (X509_self_signed(root, 1) != 1)
		return hsm_err(HSM_EPOLICY, "the chain does not end in a self-signed root: %s is "
		    "not self-signed", which(root, n, w, sizeof(w)));
	if ((store = X509_STORE_new()) == NULL || (sc = X509_STORE_CTX_new()) == NULL ||
	    (mid = sk_X509_new_null()) == NULL) {
		r = HSM_ENOMEM;
		goto out;
	}
	for (int i = 0; i < n - 1; i++)
		if (!sk_X509_push(mid, sk_X509_value(above, i))) {
			r = HSM_ENOMEM;
			goto out;
		}
	if (X509_STORE_add_cert(store, root) != 1 || X509_STORE_CTX_init(sc, store, ca, mid) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot set up the chain's verification");
		goto out;
	}
	X509_STORE_CTX_set_flags(sc, X509_V_FLAG_X509_STRICT | X509_V_FLAG_USE_CHECK_TIME);
	X509_STORE_CTX_set_time(sc, 0, now);
	if (X509_verify_cert(sc) != 1) {
		rc = X509_STORE_CTX_get_error(sc);
		depth = X509_STORE_CTX_get_error_depth(sc);
		r = hsm_err(HSM_EPOLICY, "the chain does not verify to its root: %s (at %s)",
		    X509_verify_cert_error_string(rc), depth >= 0 && depth <= n ?
		    which(depth == 0 ? ca : sk_X509_value(above, depth - 1), depth, w, sizeof(w)) :
		    "?");
		goto out;
	}
	/* The path OpenSSL built must be the one given: every certificate of it, in order. */
	if (sk_X509_num(X509_STORE_CTX_get0_chain(sc)) != n + 1) {
		r = hsm_err(HSM_EPOLICY, "the chain verifies through %d certificates, not the %d "
		    "given: remove the ones that are not in the CA's path",
		    sk_X509_num(X509_STORE_CTX_get0_chain(sc)), n + 1);
		goto out;
	}
	r = constraints_check(ca, above, td);
 out:
	sk_X509_free(mid);
	X509_STORE_CTX_free(sc);
	X509_STORE_free(store);
	return r;
}
