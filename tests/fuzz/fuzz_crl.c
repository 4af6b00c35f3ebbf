/*
 * fuzz_crl.c - crl_check(), the check of a CRL an agent fetched from the
 * network (and a sidecar receives from its agent), and crl_lists().
 *
 * The input is checked as it is, against a CA made once at start; when it
 * parses as a CRL at all, it is also re-signed by that CA (issuer set to
 * the CA's subject) and checked again, so that everything after the
 * signature (extensions, crlNumber, dates, entries) is reached too. A CRL
 * that passes must report what it holds consistently.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "crl.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *ca_key;
static X509 *ca;

/* The fuzzer's CA: an EC P-256 key and a self-signed certificate. */
static void
make_ca(void)
{
	X509_NAME *n;

	if ((ca_key = EVP_EC_gen("P-256")) == NULL || (ca = X509_new()) == NULL ||
	    (n = X509_get_subject_name(ca)) == NULL ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz CA",
	    -1, -1, 0) || !X509_set_issuer_name(ca, n) || !X509_set_pubkey(ca, ca_key) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(ca), 1) ||
	    X509_gmtime_adj(X509_getm_notBefore(ca), 0) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(ca), 86400) == NULL ||
	    !X509_sign(ca, ca_key, EVP_sha256()))
		__builtin_trap();
}

static void
check(const uint8_t *der, size_t len)
{
	struct crl_info info;
	X509_CRL *crl = NULL;
	int r = crl_check(der, len, ca, 1800000000, &crl, &info);

	if (r == 0 || r == HSM_EAGAIN) {
		if (crl == NULL || info.seq != info.number >> 32 ||
		    info.next_update <= info.this_update || crl_lists(crl, ca) < 0 ||
		    crl_covers(crl, ca, ca, NULL) < 0 || crl_covers(crl, ca, ca, ca) < 0)
			__builtin_trap();
	} else if (crl != NULL) {
		__builtin_trap();
	}
	X509_CRL_free(crl);
	ERR_clear_error();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	unsigned char *der = NULL;
	X509_CRL *crl;
	int n;

	if (ca == NULL)
		make_ca();
	check(data, size);
	if ((crl = d2i_X509_CRL(NULL, &p, (long)size)) != NULL) {
		if (X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) &&
		    X509_CRL_sign(crl, ca_key, EVP_sha256()) > 0 &&
		    (n = i2d_X509_CRL(crl, &der)) > 0)
			check(der, (size_t)n);
		OPENSSL_free(der);
		X509_CRL_free(crl);
	}
	ERR_clear_error();
	return 0;
}
