/*
 * test_cert.c - root and X.509-SVID building, CSR checks, the inspector.
 * Ordinary in-memory OpenSSL keys stand in for keyholder keys: cert.c
 * only sees EVP_PKEYs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "certinspect.h"
#include "err.h"
#include "util.h"

static EVP_PKEY *p256, *p384, *rsa;

static int
setup(void **state)
{
	p256 = EVP_EC_gen("P-256");
	p384 = EVP_EC_gen("P-384");
	rsa = EVP_RSA_gen(2048);
	return p256 != NULL && p384 != NULL && rsa != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(rsa);
	return 0;
}

static time_t
to_time(const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
	return timegm(&tm);
}

static int
ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	assert_true(i >= 0);
	return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

/* Verify leaf against root alone, strictly, for a TLS purpose. */
static int
verify_chain(X509 *root, X509 *leaf, int purpose)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok;

	assert_non_null(st);
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_add_cert(st, root), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, st, leaf, NULL), 1);
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
	assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
	ok = X509_verify_cert(ctx);
	if (ok != 1)
		print_error("verify: %s\n",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	return ok;
}

static char *
name_str(const X509_NAME *n)
{
	static char buf[256];

	X509_NAME_oneline(n, buf, sizeof(buf));
	return buf;
}

static void
root_p256(void **state)
{
	X509 *root = (X509 *)1;
	BASIC_CONSTRAINTS *bc;
	const ASN1_OCTET_STRING *ski, *aki;
	char *uri = NULL;
	time_t now = time(NULL);

	assert_int_equal(cert_make_root(p256, p256, "example.org", 3650LL * 86400, &root), 0);
	assert_string_equal(name_str(X509_get_subject_name(root)),
	    "/O=example.org/CN=hsmesh CA example.org");
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(root), X509_get_issuer_name(root)), 0);
	assert_int_equal(X509_get_version(root), X509_VERSION_3);
	assert_int_equal(X509_verify(root, p256), 1);
	assert_int_equal(X509_get_signature_nid(root), NID_ecdsa_with_SHA256);

	/* Serial: positive, 128 random bits. */
	assert_int_equal(X509_get0_serialNumber(root)->type, V_ASN1_INTEGER);	/* not negative */
	assert_true(ASN1_STRING_length(X509_get0_serialNumber(root)) <= 16);
	assert_true(ASN1_STRING_length(X509_get0_serialNumber(root)) >= 8);

	bc = X509_get_ext_d2i(root, NID_basic_constraints, NULL, NULL);
	assert_non_null(bc);
	assert_true(bc->ca);
	BASIC_CONSTRAINTS_free(bc);
	assert_true(ext_critical(root, NID_basic_constraints));
	assert_true(ext_critical(root, NID_key_usage));
	assert_int_equal(X509_get_key_usage(root),
	    KU_KEY_CERT_SIGN | KU_CRL_SIGN | KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_check_ca(root), 1);

	ski = X509_get0_subject_key_id(root);
	aki = X509_get0_authority_key_id(root);
	assert_non_null(ski);
	assert_non_null(aki);
	assert_int_equal(ASN1_OCTET_STRING_cmp(ski, aki), 0);

	assert_int_equal(cert_uri_san(root, &uri), 0);
	assert_string_equal(uri, "spiffe://example.org");
	free(uri);

	assert_true(to_time(X509_get0_notBefore(root)) <= now - CERT_BACKDATE);
	assert_true(to_time(X509_get0_notBefore(root)) >= now - CERT_BACKDATE - 5);
	assert_true(to_time(X509_get0_notAfter(root)) >= now + 3650LL * 86400 - 5);
	assert_true(to_time(X509_get0_notAfter(root)) <= now + 3650LL * 86400 + 5);

	/* A root must verify as a trust anchor for itself under strict rules. */
	assert_int_equal(verify_chain(root, root, X509_PURPOSE_ANY), 1);
	X509_free(root);
}

static void
root_p384_and_errors(void **state)
{
	char td[300];
	X509 *root = NULL;

	assert_int_equal(cert_make_root(p384, p384, "example.org", 86400, &root), 0);
	assert_int_equal(X509_get_signature_nid(root), NID_ecdsa_with_SHA384);
	X509_free(root);
	assert_int_equal(cert_make_root(rsa, rsa, "example.org", 86400, &root), 0);
	assert_int_equal(X509_get_signature_nid(root), NID_sha256WithRSAEncryption);
	X509_free(root);

	/* A long trust domain: names cut to 64, the SAN keeps it whole. */
	memset(td, 'a', 200);
	td[200] = '\0';
	assert_int_equal(cert_make_root(p256, p256, td, 86400, &root), 0);
	X509_free(root);

	root = (X509 *)1;
	assert_int_equal(cert_make_root(p256, p256, "Example.org", 86400, &root), HSM_EINVAL);
	assert_null(root);
	assert_int_equal(cert_make_root(p256, p256, "example.org", 0, &root), HSM_EINVAL);
	/* Signer and public key that do not match are caught before returning. */
	assert_int_equal(cert_make_root(p256, p384, "example.org", 86400, &root), HSM_ECRYPTO);
	assert_null(root);
}

static void
svid_p256(void **state)
{
	X509 *root = NULL, *svid = NULL;
	EVP_PKEY *leaf = EVP_EC_gen("P-256");
	EXTENDED_KEY_USAGE *eku;
	GENERAL_NAMES *gens;
	GENERAL_NAME *g;
	char *uri = NULL;
	time_t now = time(NULL), nb, na;

	assert_non_null(leaf);
	assert_int_equal(cert_make_root(p256, p256, "example.org", 86400 * 365, &root), 0);
	assert_int_equal(cert_issue_svid(root, p256, leaf, "spiffe://example.org/ns/web", 3600,
	    &svid), 0);

	assert_int_equal(verify_chain(root, svid, X509_PURPOSE_SSL_CLIENT), 1);
	assert_int_equal(verify_chain(root, svid, X509_PURPOSE_SSL_SERVER), 1);
	assert_int_equal(X509_check_issued(root, svid), X509_V_OK);

	assert_string_equal(name_str(X509_get_subject_name(svid)), "/O=SPIFFE");
	/* Exactly one SAN entry, a URI, and the extension is not critical. */
	gens = X509_get_ext_d2i(svid, NID_subject_alt_name, NULL, NULL);
	assert_non_null(gens);
	assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
	g = sk_GENERAL_NAME_value(gens, 0);
	assert_int_equal(g->type, GEN_URI);
	GENERAL_NAMES_free(gens);
	assert_false(ext_critical(svid, NID_subject_alt_name));
	assert_int_equal(cert_uri_san(svid, &uri), 0);
	assert_string_equal(uri, "spiffe://example.org/ns/web");
	free(uri);

	assert_int_equal(X509_check_ca(svid), 0);
	assert_true(ext_critical(svid, NID_basic_constraints));
	assert_true(ext_critical(svid, NID_key_usage));
	assert_int_equal(X509_get_key_usage(svid), KU_DIGITAL_SIGNATURE);
	eku = X509_get_ext_d2i(svid, NID_ext_key_usage, NULL, NULL);
	assert_non_null(eku);
	assert_int_equal(sk_ASN1_OBJECT_num(eku), 2);
	assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_server_auth);
	assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 1)), NID_client_auth);
	EXTENDED_KEY_USAGE_free(eku);
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(svid),
	    X509_get0_subject_key_id(root)), 0);
	assert_non_null(X509_get0_subject_key_id(svid));

	/* Backdated 60 s, and never longer than the TTL from now. */
	nb = to_time(X509_get0_notBefore(svid));
	na = to_time(X509_get0_notAfter(svid));
	assert_true(nb <= now - CERT_BACKDATE && nb >= now - CERT_BACKDATE - 5);
	assert_true(na - now <= 3600 && na - now >= 3595);
	/* Serials differ. */
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(svid),
	    X509_get0_serialNumber(root)), 0);

	X509_free(svid);
	X509_free(root);
	EVP_PKEY_free(leaf);
}

static void
svid_rsa_leaf_p384_ca(void **state)
{
	X509 *root = NULL, *svid = NULL;

	assert_int_equal(cert_make_root(p384, p384, "example.org", 86400, &root), 0);
	assert_int_equal(cert_issue_svid(root, p384, rsa, "spiffe://example.org/r", 600, &svid), 0);
	assert_int_equal(X509_get_signature_nid(svid), NID_ecdsa_with_SHA384);
	assert_int_equal(X509_get_key_usage(svid), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
	assert_int_equal(verify_chain(root, svid, X509_PURPOSE_SSL_SERVER), 1);
	X509_free(svid);
	X509_free(root);
}

static void
ttl_capped_by_ca(void **state)
{
	X509 *root = NULL, *svid = NULL;

	assert_int_equal(cert_make_root(p256, p256, "example.org", 7200, &root), 0);
	assert_int_equal(cert_issue_svid(root, p256, p256, "spiffe://example.org/x", 86400, &svid), 0);
	assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(svid), X509_get0_notAfter(root)), 0);
	assert_int_equal(verify_chain(root, svid, X509_PURPOSE_SSL_CLIENT), 1);
	X509_free(svid);

	/* An expired CA issues nothing. */
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(root), time(NULL) - 10));
	svid = (X509 *)1;
	assert_int_equal(cert_issue_svid(root, p256, p256, "spiffe://example.org/x", 60, &svid),
	    HSM_EPOLICY);
	assert_null(svid);
	X509_free(root);
}

static void
svid_refusals(void **state)
{
	EVP_PKEY *k1 = EVP_EC_gen("secp256k1"), *small = EVP_RSA_gen(1024);
	X509 *root = NULL, *svid = NULL;

	assert_non_null(k1);
	assert_non_null(small);
	assert_int_equal(cert_make_root(p256, p256, "example.org", 86400, &root), 0);
	assert_int_equal(cert_issue_svid(root, p256, k1, "spiffe://example.org/x", 60, &svid),
	    HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "EC secp256k1"));
	assert_int_equal(cert_issue_svid(root, p256, small, "spiffe://example.org/x", 60, &svid),
	    HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_detail(), "RSA-1024"));
	assert_int_equal(cert_issue_svid(root, p256, p256, "spiffe://example.org/../x", 60, &svid),
	    HSM_EINVAL);
	assert_int_equal(cert_issue_svid(root, p256, p256, "spiffe://example.org/x", 0, &svid),
	    HSM_EINVAL);
	/* The wrong CA key: the check after signing refuses to hand it out. */
	assert_int_equal(cert_issue_svid(root, p384, p256, "spiffe://example.org/x", 60, &svid),
	    HSM_ECRYPTO);
	assert_null(svid);
	X509_free(root);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(small);
}

static X509_REQ *
make_csr(EVP_PKEY *k)
{
	X509_REQ *req = X509_REQ_new();

	assert_non_null(req);
	assert_int_equal(X509_REQ_set_pubkey(req, k), 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN",
	    MBSTRING_ASC, (const unsigned char *)"w", -1, -1, 0), 1);
	assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);
	return req;
}

static void
csrs(void **state)
{
	X509_REQ *req = make_csr(p256), *got = NULL;
	unsigned char *der = NULL;
	char *pem;
	long pemlen;
	BIO *b = BIO_new(BIO_s_mem());
	int n;

	assert_non_null(b);
	assert_int_equal(PEM_write_bio_X509_REQ(b, req), 1);
	pemlen = BIO_get_mem_data(b, &pem);
	assert_int_equal(cert_csr_parse((uint8_t *)pem, (size_t)pemlen, &got), 0);
	assert_int_equal(cert_csr_verify(got), 0);
	X509_REQ_free(got);

	n = i2d_X509_REQ(req, &der);
	assert_true(n > 0);
	assert_int_equal(cert_csr_parse(der, (size_t)n, &got), 0);
	assert_int_equal(cert_csr_verify(got), 0);
	X509_REQ_free(got);

	/* Trailing bytes after DER are refused. */
	got = (X509_REQ *)1;
	assert_int_equal(cert_csr_parse(der, (size_t)n - 1, &got), HSM_EINVAL);
	assert_null(got);

	/* A flipped bit in the signature. */
	der[n - 3] ^= 0x01;
	assert_int_equal(cert_csr_parse(der, (size_t)n, &got), 0);
	assert_int_equal(cert_csr_verify(got), HSM_EINVAL);
	assert_string_equal(hsm_err_detail(), "CSR signature does not verify");
	X509_REQ_free(got);

	assert_int_equal(cert_csr_parse((const uint8_t *)"hello", 5, &got), HSM_EINVAL);
	OPENSSL_free(der);
	BIO_free(b);
	X509_REQ_free(req);
}

/* Run the inspector into a temporary file and return its text. */
static char *
inspect(const uint8_t *buf, size_t len, int *r)
{
	FILE *f = tmpfile();
	char *out = calloc(1, 16384);
	size_t n;

	assert_non_null(f);
	assert_non_null(out);
	*r = cert_inspect(buf, len, f);
	rewind(f);
	n = fread(out, 1, 16383, f);
	out[n] = '\0';
	fclose(f);
	return out;
}

static void
inspector(void **state)
{
	X509 *root = NULL, *svid = NULL;
	X509_REQ *req = make_csr(p256);
	char *pem = NULL, *pem2 = NULL, *out, *both, line[200], hex[HSM_KEYID_LEN * 2 + 1];
	uint8_t id[HSM_KEYID_LEN];
	unsigned char *der = NULL;
	size_t len = 0, len2 = 0;
	int r, n;

	assert_int_equal(cert_make_root(p256, p256, "example.org", 86400, &root), 0);
	assert_int_equal(cert_issue_svid(root, p256, rsa, "spiffe://example.org/web", 3600, &svid), 0);
	assert_int_equal(cert_pem(svid, &pem, &len), 0);
	out = inspect((uint8_t *)pem, len, &r);
	assert_int_equal(r, 0);
	assert_non_null(strstr(out, "type:          X.509 certificate\n"));
	assert_non_null(strstr(out, "subject:       O=SPIFFE\n"));
	assert_non_null(strstr(out, "issuer:        O=example.org, CN=hsmesh CA example.org\n"));
	assert_non_null(strstr(out, "spiffe id:     spiffe://example.org/web\n"));
	assert_non_null(strstr(out, "key:           RSA-2048\n"));
	assert_int_equal(cert_key_id(svid, id), 0);
	snprintf(line, sizeof(line), "key id:        %s\n", hsm_hex(id, sizeof(id), hex));
	assert_non_null(strstr(out, line));
	assert_true(strstr(out, "(valid for 0h 59m)") != NULL || strstr(out, "(valid for 1h 0m)") != NULL);
	assert_non_null(strstr(out, "ca:            no (critical)\n"));
	assert_non_null(strstr(out, "key usage:     digitalSignature, keyEncipherment (critical)\n"));
	assert_non_null(strstr(out, "ext key usage: serverAuth, clientAuth\n"));
	free(out);

	/* A bundle: root + SVID, both printed. */
	assert_int_equal(cert_pem(root, &pem2, &len2), 0);
	assert_non_null(both = malloc(len + len2 + 1));
	memcpy(both, pem2, len2);
	memcpy(both + len2, pem, len + 1);
	out = inspect((uint8_t *)both, len + len2, &r);
	assert_int_equal(r, 0);
	assert_non_null(strstr(out, "ca:            yes (critical)\n"));
	assert_non_null(strstr(out, "(self-signed, verifies)"));
	assert_non_null(strstr(out, "spiffe id:     spiffe://example.org/web\n"));
	free(out);
	free(both);

	/* DER certificate. */
	n = i2d_X509(svid, &der);
	out = inspect(der, (size_t)n, &r);
	assert_int_equal(r, 0);
	assert_non_null(strstr(out, "spiffe id:     spiffe://example.org/web\n"));
	free(out);
	OPENSSL_free(der);
	der = NULL;

	/* DER CSR. */
	n = i2d_X509_REQ(req, &der);
	out = inspect(der, (size_t)n, &r);
	assert_int_equal(r, 0);
	assert_non_null(strstr(out, "type:          certificate request (PKCS#10)\n"));
	assert_non_null(strstr(out, "key:           EC P-256\n"));
	assert_non_null(strstr(out, "(verifies)"));
	free(out);
	OPENSSL_free(der);

	/* Garbage, a truncated PEM, and a private key print nothing. */
	out = inspect((const uint8_t *)"garbage", 7, &r);
	assert_int_equal(r, HSM_EINVAL);
	assert_string_equal(out, "");
	free(out);
	out = inspect((uint8_t *)pem, len / 2, &r);
	assert_int_equal(r, HSM_EINVAL);
	assert_string_equal(out, "");
	free(out);
	{
		BIO *b = BIO_new(BIO_s_mem());
		char *kp;
		long kl;

		assert_int_equal(PEM_write_bio_PrivateKey(b, p256, NULL, NULL, 0, NULL, NULL), 1);
		kl = BIO_get_mem_data(b, &kp);
		out = inspect((uint8_t *)kp, (size_t)kl, &r);
		assert_int_equal(r, HSM_EINVAL);
		assert_non_null(strstr(hsm_err_detail(), "private key"));
		assert_string_equal(out, "");
		free(out);
		BIO_free(b);
	}

	free(pem);
	free(pem2);
	X509_REQ_free(req);
	X509_free(svid);
	X509_free(root);
}

static void
parse_cert_and_ids(void **state)
{
	X509 *root = NULL, *got = NULL;
	uint8_t id1[HSM_KEYID_LEN], id2[HSM_KEYID_LEN];
	unsigned char *spki = NULL;
	char *pem = NULL;
	size_t len = 0;
	int n;

	assert_int_equal(cert_make_root(p256, p256, "example.org", 86400, &root), 0);
	assert_int_equal(cert_pem(root, &pem, &len), 0);
	assert_int_equal(cert_parse((uint8_t *)pem, len, &got), 0);
	assert_int_equal(X509_cmp(root, got), 0);
	/* The key id is SHA-256 of the SPKI, however it is reached. */
	assert_int_equal(cert_key_id(got, id1), 0);
	n = i2d_PUBKEY(p256, &spki);
	assert_true(n > 0);
	assert_int_equal(cert_spki_id(spki, (size_t)n, id2), 0);
	assert_memory_equal(id1, id2, sizeof(id1));
	OPENSSL_free(spki);
	X509_free(got);
	assert_int_equal(cert_parse((const uint8_t *)"x", 1, &got), HSM_EINVAL);
	{
		/* One spelling of a serial: the ledger's, whatever its top nibble. */
		ASN1_INTEGER *ai = ASN1_INTEGER_new();
		char hex[8];

		assert_non_null(ai);
		assert_int_equal(ASN1_INTEGER_set(ai, 0x0a1b2c), 1);
		assert_int_equal(cert_serial_hex(ai, hex, sizeof(hex)), 0);
		assert_string_equal(hex, "a1b2c");
		assert_int_equal(ASN1_INTEGER_set(ai, 0), 1);
		assert_int_equal(cert_serial_hex(ai, hex, sizeof(hex)), 0);
		assert_string_equal(hex, "0");
		assert_int_equal(ASN1_INTEGER_set(ai, 0x1234567890LL), 1);
		assert_int_equal(cert_serial_hex(ai, hex, sizeof(hex)), HSM_EINVAL);
		assert_string_equal(hex, "");
		ASN1_INTEGER_free(ai);
	}
	free(pem);
	X509_free(root);
}

/* cert_pubkey_parse: the EC fast path reads what d2i_PUBKEY reads, and refuses what it refuses. */
static void
pubkey_parse(void **state)
{
	const char *curves[] = { "P-256", "P-384" };
	unsigned char *der = NULL;
	const unsigned char *p;
	EVP_PKEY *k, *got = NULL, *ref = NULL, *rk;
	X509 *ca, *leaf = NULL;
	int n;

	for (size_t i = 0; i < 2; i++) {
		assert_non_null(k = EVP_EC_gen(curves[i]));
		assert_true((n = i2d_PUBKEY(k, &der)) > 0);
		assert_int_equal(cert_pubkey_parse(der, (size_t)n, &got), 0);
		p = der;
		assert_non_null(ref = d2i_PUBKEY(NULL, &p, n));
		assert_int_equal(EVP_PKEY_eq(got, ref), 1);
		assert_int_equal(EVP_PKEY_eq(got, k), 1);
		/* an SVID for it certifies exactly these bytes */
		assert_int_equal(cert_make_root(k, k, "example.org", 3600, &ca), 0);
		assert_int_equal(cert_issue_svid(ca, k, got, "spiffe://example.org/w", 600, &leaf), 0);
		{
			unsigned char *ld = NULL;
			int m = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &ld);

			assert_int_equal(m, n);
			assert_memory_equal(ld, der, (size_t)n);
			assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), k), 1);
			OPENSSL_free(ld);
		}
		assert_int_equal(X509_verify(leaf, k), 1);
		X509_free(leaf);
		X509_free(ca);
		EVP_PKEY_free(got);
		EVP_PKEY_free(ref);
		/* a point off the curve, a trailing byte, a cut */
		der[n - 1] ^= 0x01;
		assert_int_equal(cert_pubkey_parse(der, (size_t)n, &got), HSM_EINVAL);
		assert_null(got);
		der[n - 1] ^= 0x01;
		assert_int_equal(cert_pubkey_parse(der, (size_t)n - 1, &got), HSM_EINVAL);
		OPENSSL_free(der);
		der = NULL;
		EVP_PKEY_free(k);
	}
	/* the general way: RSA */
	assert_non_null(rk = EVP_RSA_gen(2048));
	assert_true((n = i2d_PUBKEY(rk, &der)) > 0);
	assert_int_equal(cert_pubkey_parse(der, (size_t)n, &got), 0);
	assert_int_equal(EVP_PKEY_eq(got, rk), 1);
	EVP_PKEY_free(got);
	assert_int_equal(cert_pubkey_parse((const uint8_t *)"junk", 4, &got), HSM_EINVAL);
	OPENSSL_free(der);
	EVP_PKEY_free(rk);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(root_p256),
		cmocka_unit_test(root_p384_and_errors),
		cmocka_unit_test(svid_p256),
		cmocka_unit_test(svid_rsa_leaf_p384_ca),
		cmocka_unit_test(ttl_capped_by_ca),
		cmocka_unit_test(svid_refusals),
		cmocka_unit_test(csrs),
		cmocka_unit_test(inspector),
		cmocka_unit_test(parse_cert_and_ids),
		cmocka_unit_test(pubkey_parse),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
