/*
 * test_svid.c - the X.509-SVID as its holder checks it (svid.h): a good
 * SVID, and one refused for each rule (another key, another or a second
 * URI SAN, a CA certificate, another root, expired), a path through an
 * intermediate, PEM files, and serials spelled as openssl prints them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "err.h"
#include "svid.h"

#define ID "spiffe://example.org/ns/web"

static EVP_PKEY *root_key, *other_key, *leaf_key, *inter_key;
static X509 *root, *other_root;

static EVP_PKEY *
ec_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

static int
setup(void **state)
{
	root_key = ec_key();
	other_key = ec_key();
	leaf_key = ec_key();
	inter_key = ec_key();
	if (cert_make_root(root_key, root_key, "example.org", 86400, &root) != 0 ||
	    cert_make_root(other_key, other_key, "example.org", 86400, &other_root) != 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	X509_free(root);
	X509_free(other_root);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(other_key);
	EVP_PKEY_free(leaf_key);
	EVP_PKEY_free(inter_key);
	return 0;
}

/* DER SPKI of k. */
static size_t
spki_of(EVP_PKEY *k, uint8_t **out)
{
	int n;

	*out = NULL;
	n = i2d_PUBKEY(k, out);
	assert_true(n > 0);
	return (size_t)n;
}

static X509 *
svid_for(EVP_PKEY *k, const char *id)
{
	X509 *x = NULL;

	assert_int_equal(cert_issue_svid(root, root_key, k, id, 3600, &x), 0);
	return x;
}

/* svid_verify must fail with HSM_EPOLICY and a message starting with want. */
static void
refused_(X509 *leaf, STACK_OF(X509) *untrusted, X509 *anchor, const char *id, EVP_PKEY *k,
    const char *want, int line)
{
	STACK_OF(X509) *chain = (STACK_OF(X509) *)1;
	uint8_t *spki;
	size_t len = spki_of(k, &spki);
	int r = svid_verify(anchor, id, leaf, untrusted, spki, len, &chain);

	OPENSSL_free(spki);
	if (r != HSM_EPOLICY || strncmp(hsm_err_msg(r), want, strlen(want)) != 0)
		fail_msg("line %d: %d '%s', want '%s'", line, r, hsm_err_msg(r), want);
	assert_null(chain);
}
#define refused(l, u, a, id, k, want) refused_(l, u, a, id, k, want, __LINE__)

static void
good_svid(void **state)
{
	X509 *leaf = svid_for(leaf_key, ID);
	STACK_OF(X509) *chain = NULL;
	uint8_t *spki, *got;
	size_t len = spki_of(leaf_key, &spki), gotlen;

	assert_int_equal(svid_verify(root, ID, leaf, NULL, spki, len, &chain), 0);
	assert_non_null(chain);
	assert_int_equal(sk_X509_num(chain), 0);
	svid_certs_free(chain);
	assert_int_equal(svid_verify(root, ID, leaf, NULL, spki, len, NULL), 0);
	/* svid_cert_spki gives the very bytes the check compares. */
	assert_int_equal(svid_cert_spki(leaf, &got, &gotlen), 0);
	assert_int_equal(gotlen, len);
	assert_memory_equal(got, spki, len);
	free(got);
	OPENSSL_free(spki);
	X509_free(leaf);
}

static void
each_rule_refuses(void **state)
{
	X509 *leaf = svid_for(leaf_key, ID), *two = NULL;
	GENERAL_NAMES *gens;
	GENERAL_NAME *gn;
	ASN1_IA5STRING *uri;

	refused(leaf, NULL, root, ID, other_key, "certificate does not certify our key");
	refused(leaf, NULL, root, "spiffe://example.org/ns/db", leaf_key,
	    "certificate does not carry exactly the URI SAN spiffe://example.org/ns/db (1 URI SANs)");
	/* A prefix of the ID is another ID. */
	refused(leaf, NULL, root, "spiffe://example.org/ns/we", leaf_key,
	    "certificate does not carry exactly the URI SAN");
	refused(leaf, NULL, other_root, ID, leaf_key, "certificate does not chain to the root: ");
	/* The root itself for its own ID: a CA certificate. */
	refused(root, NULL, root, "spiffe://example.org", root_key,
	    "certificate is a CA certificate");

	/* Two URI SANs, one of them ours: refused. */
	two = X509_dup(leaf);
	assert_non_null(gens = sk_GENERAL_NAME_new_null());
	for (int i = 0; i < 2; i++) {
		const char *u = i == 0 ? ID : "spiffe://example.org/ns/extra";

		assert_non_null(gn = GENERAL_NAME_new());
		assert_non_null(uri = ASN1_IA5STRING_new());
		assert_int_equal(ASN1_STRING_set(uri, u, (int)strlen(u)), 1);
		GENERAL_NAME_set0_value(gn, GEN_URI, uri);
		assert_true(sk_GENERAL_NAME_push(gens, gn) > 0);
	}
	assert_int_equal(X509_add1_ext_i2d(two, NID_subject_alt_name, gens, 0, X509V3_ADD_REPLACE), 1);
	assert_true(X509_sign(two, root_key, EVP_sha256()) > 0);
	refused(two, NULL, root, ID, leaf_key,
	    "certificate does not carry exactly the URI SAN " ID " (2 URI SANs)");
	GENERAL_NAMES_free(gens);
	X509_free(two);

	/* Expired yesterday: no path to the root any more. */
	two = X509_dup(leaf);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(two), -2 * 86400));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(two), -86400));
	assert_true(X509_sign(two, root_key, EVP_sha256()) > 0);
	refused(two, NULL, root, ID, leaf_key, "certificate does not chain to the root: "
	    "certificate has expired");
	X509_free(two);
	X509_free(leaf);
}

/* An intermediate CA under root, signed by hand (cert.c makes roots and leaves only). */
static X509 *
make_intermediate(void)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	static const char *const exts[][2] = {
		{ "basicConstraints", "critical,CA:TRUE" },
		{ "keyUsage", "critical,keyCertSign,cRLSign,digitalSignature" },
		{ "subjectKeyIdentifier", "hash" },
		{ "authorityKeyIdentifier", "keyid" },
	};

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 4242), 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"intermediate", -1, -1, 0), 1);
	assert_int_equal(X509_set_subject_name(x, n), 1);
	assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(root)), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, inter_key), 1);
	X509V3_set_ctx(&ctx, root, x, NULL, NULL, 0);
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		assert_non_null(ext = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]));
		assert_int_equal(X509_add_ext(x, ext, -1), 1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, root_key, EVP_sha256()) > 0);
	X509_NAME_free(n);
	return x;
}

static void
path_through_an_intermediate(void **state)
{
	X509 *inter = make_intermediate(), *leaf = NULL;
	STACK_OF(X509) *untrusted = sk_X509_new_null(), *chain = NULL;
	uint8_t *spki;
	size_t len = spki_of(leaf_key, &spki);

	assert_int_equal(cert_issue_svid(inter, inter_key, leaf_key, ID, 3600, &leaf), 0);
	/* Without the intermediate there is no path. */
	refused(leaf, NULL, root, ID, leaf_key, "certificate does not chain to the root: ");
	assert_true(sk_X509_push(untrusted, inter) > 0);
	assert_int_equal(svid_verify(root, ID, leaf, untrusted, spki, len, &chain), 0);
	/* The chain: the intermediate only (leaf and root left out). */
	assert_int_equal(sk_X509_num(chain), 1);
	assert_int_equal(X509_cmp(sk_X509_value(chain, 0), inter), 0);
	svid_certs_free(chain);
	sk_X509_free(untrusted);
	OPENSSL_free(spki);
	X509_free(leaf);
	X509_free(inter);
}

static void
pem_files(void **state)
{
	char dir[] = "/tmp/hsm-svid-XXXXXX", path[128];
	X509 *inter = make_intermediate(), *leaf = svid_for(leaf_key, ID), *got = NULL;
	STACK_OF(X509) *rest = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cert.pem", dir);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(PEM_write_X509(f, leaf), 1);
	assert_int_equal(PEM_write_X509(f, inter), 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(svid_load_pem_file(path, &got, &rest), 0);
	assert_int_equal(X509_cmp(got, leaf), 0);
	assert_int_equal(sk_X509_num(rest), 1);
	assert_int_equal(X509_cmp(sk_X509_value(rest, 0), inter), 0);
	X509_free(got);
	svid_certs_free(rest);

	/* Not a certificate; and no file at all. */
	assert_non_null(f = fopen(path, "w"));
	fputs("hello\n", f);
	assert_int_equal(fclose(f), 0);
	got = (X509 *)1;
	assert_int_equal(svid_load_pem_file(path, &got, &rest), HSM_EINVAL);
	assert_null(got);
	assert_null(rest);
	assert_non_null(strstr(hsm_err_msg(HSM_EINVAL), "no PEM certificate"));
	unlink(path);
	assert_int_equal(svid_load_pem_file(path, &got, &rest), HSM_ENOENT);
	rmdir(dir);
	X509_free(inter);
	X509_free(leaf);
}

static void
serials_as_openssl_prints_them(void **state)
{
	X509 *x = X509_new();
	BIGNUM *bn = NULL;
	char out[96];

	assert_non_null(x);
	assert_true(BN_hex2bn(&bn, "A1B2C") > 0);
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	assert_string_equal(svid_serial_text(x, out, sizeof(out)), "0A1B2C");
	assert_true(BN_hex2bn(&bn, "FFEE0102") > 0);
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	assert_string_equal(svid_serial_text(x, out, sizeof(out)), "FFEE0102");
	/* Too small a buffer reads "?". */
	assert_string_equal(svid_serial_text(x, out, 4), "?");
	BN_free(bn);
	X509_free(x);
	svid_certs_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_svid),
		cmocka_unit_test(each_rule_refuses),
		cmocka_unit_test(path_through_an_intermediate),
		cmocka_unit_test(pem_files),
		cmocka_unit_test(serials_as_openssl_prints_them),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
