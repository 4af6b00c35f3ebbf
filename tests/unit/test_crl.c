/*
 * test_crl.c - which certificates a checked CRL speaks for (crl.h):
 * crl_lists by serial and issuer name, crl_covers by issuer name and key
 * (the sidecar's per-handshake lookup, which no longer verifies the CRL's
 * signature). A CRL of the CA lists and covers its certificate; a
 * certificate with the same serial from another CA (another name, or the
 * same name with another key, as after a CA re-key) is neither listed nor
 * covered; an unlisted certificate of the CA is covered, not listed.
 * crl_verdict: what the sidecar decides for a peer's leaf, by
 * revocation.stale, with a current CRL, one past its nextUpdate, one not
 * yet valid, none, and another CA's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "crl.h"
#include "err.h"

#define TTL 3600

static EVP_PKEY *
ec_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

static X509 *
root_of(EVP_PKEY *k, const char *td)
{
	X509 *x = NULL;

	assert_int_equal(cert_make_root(k, k, td, TTL, &x), 0);
	return x;
}

static X509 *
svid(X509 *ca, EVP_PKEY *ca_key, const char *id)
{
	EVP_PKEY *k = ec_key();
	X509 *x = NULL;

	assert_int_equal(cert_issue_svid(ca, ca_key, k, id, TTL, &x), 0);
	EVP_PKEY_free(k);
	return x;
}

/* x with serial's number, signed again by ca_key. */
static void
set_serial(X509 *x, const ASN1_INTEGER *serial, EVP_PKEY *ca_key)
{
	assert_int_equal(X509_set_serialNumber(x, (ASN1_INTEGER *)serial), 1);
	assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
}

/* A CRL of ca listing x, checked against ca as the sidecar checks it (into *info). */
static X509_CRL *
crl_listing_info(X509 *ca, EVP_PKEY *ca_key, X509 *x, struct crl_info *info)
{
	char hex[80];
	struct crl_revoked r = { hex, 0, 1 };
	X509_CRL *crl = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	int64_t now = (int64_t)time(NULL);

	r.when = now - 10;
	assert_int_equal(cert_serial_hex(X509_get0_serialNumber(x), hex, sizeof(hex)), 0);
	assert_int_equal(crl_build(ca, ca_key, &r, 1, 1, now, 600, &der, &len), 0);
	assert_int_equal(crl_check(der, len, ca, now, &crl, info), 0);
	assert_int_equal((int)info->count, 1);
	free(der);
	return crl;
}

static X509_CRL *
crl_listing(X509 *ca, EVP_PKEY *ca_key, X509 *x)
{
	struct crl_info info;

	return crl_listing_info(ca, ca_key, x, &info);
}

static void
same_ca_lists_and_covers(void **state)
{
	EVP_PKEY *k = ec_key();
	X509 *ca = root_of(k, "example.org");
	X509 *revoked = svid(ca, k, "spiffe://example.org/a");
	X509 *good = svid(ca, k, "spiffe://example.org/b");
	X509_CRL *crl = crl_listing(ca, k, revoked);

	(void)state;
	assert_int_equal(crl_lists(crl, revoked), 1);
	assert_int_equal(crl_covers(crl, ca, revoked, ca), 1);		/* the verified issuer */
	assert_int_equal(crl_covers(crl, ca, revoked, NULL), 1);	/* a resumed session: AKI */
	assert_int_equal(crl_lists(crl, good), 0);
	assert_int_equal(crl_covers(crl, ca, good, ca), 1);
	assert_int_equal(crl_covers(NULL, ca, good, ca), 0);
	assert_int_equal(crl_covers(crl, NULL, good, ca), 0);
	assert_int_equal(crl_lists(NULL, good), 0);
	X509_CRL_free(crl);
	X509_free(good);
	X509_free(revoked);
	X509_free(ca);
	EVP_PKEY_free(k);
}

/* Another CA's certificate with the listed serial: not revoked by this CRL. */
static void
another_ca_same_serial(void **state)
{
	EVP_PKEY *k = ec_key(), *k2 = ec_key();
	X509 *ca = root_of(k, "example.org"), *other = root_of(k2, "other.example");
	X509 *revoked = svid(ca, k, "spiffe://example.org/a");
	X509 *theirs = svid(other, k2, "spiffe://other.example/a");
	X509_CRL *crl = crl_listing(ca, k, revoked);

	(void)state;
	set_serial(theirs, X509_get0_serialNumber(revoked), k2);
	assert_int_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(theirs),
	    X509_get0_serialNumber(revoked)), 0);
	assert_int_equal(crl_lists(crl, theirs), 0);
	assert_int_equal(crl_covers(crl, ca, theirs, other), 0);
	assert_int_equal(crl_covers(crl, ca, theirs, NULL), 0);
	X509_CRL_free(crl);
	X509_free(theirs);
	X509_free(revoked);
	X509_free(other);
	X509_free(ca);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k);
}

/*
 * A CA of the same name with another key (a re-keyed CA): its certificate
 * with the listed serial has the CRL's issuer name, but the CRL, signed
 * by the other key, does not cover it (by the verified issuer's key, or
 * by the authority key identifier when the chain is not known).
 */
static void
same_name_another_key(void **state)
{
	EVP_PKEY *k = ec_key(), *k2 = ec_key();
	X509 *ca = root_of(k, "example.org"), *rekeyed = root_of(k2, "example.org");
	X509 *revoked = svid(ca, k, "spiffe://example.org/a");
	X509 *theirs = svid(rekeyed, k2, "spiffe://example.org/a");
	X509_CRL *crl = crl_listing(ca, k, revoked);

	(void)state;
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(ca), X509_get_subject_name(rekeyed)), 0);
	set_serial(theirs, X509_get0_serialNumber(revoked), k2);
	assert_int_equal(crl_covers(crl, ca, theirs, rekeyed), 0);
	assert_int_equal(crl_covers(crl, ca, theirs, NULL), 0);
	/* ... while the CA's own certificate is covered whichever way */
	assert_int_equal(crl_covers(crl, ca, revoked, ca), 1);
	assert_int_equal(crl_covers(crl, ca, revoked, rekeyed), 0);	/* a wrong issuer given */
	X509_CRL_free(crl);
	X509_free(theirs);
	X509_free(revoked);
	X509_free(rekeyed);
	X509_free(ca);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k);
}

/* The verdict for a leaf, by the CRL's dates and revocation.stale (keep 0, refuse 1). */
static void
verdicts(void **state)
{
	EVP_PKEY *k = ec_key(), *k2 = ec_key();
	X509 *ca = root_of(k, "example.org"), *other = root_of(k2, "other.example");
	X509 *revoked = svid(ca, k, "spiffe://example.org/a");
	X509 *good = svid(ca, k, "spiffe://example.org/b");
	X509 *theirs = svid(other, k2, "spiffe://other.example/a");
	struct crl_info info;
	X509_CRL *crl = crl_listing_info(ca, k, revoked, &info);
	int64_t now = info.this_update + 1, past = info.next_update, early = info.this_update - 1;

	(void)state;
	set_serial(theirs, X509_get0_serialNumber(revoked), k2);
	/* a current CRL: its entries refuse, whatever the policy */
	for (int refuse = 0; refuse < 2; refuse++) {
		assert_int_equal(crl_verdict(crl, ca, &info, revoked, ca, now, refuse),
		    X509_V_ERR_CERT_REVOKED);
		assert_int_equal(crl_verdict(crl, ca, &info, revoked, NULL, now, refuse),
		    X509_V_ERR_CERT_REVOKED);
		assert_int_equal(crl_verdict(crl, ca, &info, good, ca, now, refuse), X509_V_OK);
	}
	/* past its nextUpdate: keep goes on with its entries, refuse refuses everyone */
	assert_int_equal(crl_verdict(crl, ca, &info, revoked, ca, past, 0), X509_V_ERR_CERT_REVOKED);
	assert_int_equal(crl_verdict(crl, ca, &info, good, ca, past, 0), X509_V_OK);
	assert_int_equal(crl_verdict(crl, ca, &info, good, ca, past, 1), X509_V_ERR_CRL_HAS_EXPIRED);
	assert_int_equal(crl_verdict(crl, ca, &info, revoked, ca, past, 1), X509_V_ERR_CRL_HAS_EXPIRED);
	/* not yet valid (a clock behind the CA's) */
	assert_int_equal(crl_verdict(crl, ca, &info, revoked, ca, early, 0), X509_V_ERR_CERT_REVOKED);
	assert_int_equal(crl_verdict(crl, ca, &info, good, ca, early, 0), X509_V_OK);
	assert_int_equal(crl_verdict(crl, ca, &info, good, ca, early, 1), X509_V_ERR_CRL_NOT_YET_VALID);
	/* no CRL held */
	assert_int_equal(crl_verdict(NULL, NULL, NULL, good, ca, now, 0), X509_V_OK);
	assert_int_equal(crl_verdict(NULL, NULL, NULL, good, ca, now, 1), X509_V_ERR_UNABLE_TO_GET_CRL);
	/* another CA's certificate with a listed serial: no CRL for it */
	assert_int_equal(crl_verdict(crl, ca, &info, theirs, other, now, 0), X509_V_OK);
	assert_int_equal(crl_verdict(crl, ca, &info, theirs, other, now, 1), X509_V_ERR_UNABLE_TO_GET_CRL);
	assert_int_equal(crl_verdict(crl, ca, &info, theirs, NULL, now, 0), X509_V_OK);
	X509_CRL_free(crl);
	X509_free(theirs);
	X509_free(good);
	X509_free(revoked);
	X509_free(other);
	X509_free(ca);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(same_ca_lists_and_covers),
		cmocka_unit_test(another_ca_same_serial),
		cmocka_unit_test(same_name_another_key),
		cmocka_unit_test(verdicts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
