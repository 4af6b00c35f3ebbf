/*
 * fuzz_csr.c - what the CA does with a CSR from outside: parse (DER and
 * PEM paths), verify the proof of possession, check the key type, and
 * print it with the inspector (with the evidence identities an attested
 * key's certificate records, attest.h). Any bytes: no crash, no leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "attest.h"
#include "cert.h"
#include "certinspect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	X509_REQ *req = NULL;

	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	/* Raw d2i first, as a peer's bytes would meet it. */
	if ((req = d2i_X509_REQ(NULL, &p, (long)size)) != NULL) {
		(void)cert_csr_verify(req);
		(void)cert_key_check(X509_REQ_get0_pubkey(req));
		X509_REQ_free(req);
		req = NULL;
	}
	if (cert_csr_parse(data, size, &req) == 0) {
		if (cert_csr_verify(req) == 0)
			(void)cert_key_check(X509_REQ_get0_pubkey(req));
		X509_REQ_free(req);
	}
	(void)cert_inspect_ext(data, size, attest_identity_describe, devnull);
	ERR_clear_error();
	return 0;
}
