/* fuzz_certseq.c - the agent's reading of the CA's certificates (a caCerts genp value). */
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "cmpclient.h"
#include "svid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	STACK_OF(X509) *certs = NULL;

	if (cmpc_cert_seq_parse(data, size, &certs) == 0) {
		if (certs == NULL || sk_X509_num(certs) > CMPC_CERT_SEQ_MAX)
			__builtin_trap();
		for (int i = 0; i < sk_X509_num(certs); i++)
			(void)X509_self_signed(sk_X509_value(certs, i), 0);
	} else if (certs != NULL) {
		__builtin_trap();
	}
	svid_certs_free(certs);
	return 0;
}
