/* fuzz_cmpder.c - the DER walks the CA runs on CMP requests before OpenSSL does. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/cmp.h>
#include <openssl/x509.h>

#include "attest.h"
#include "cmpder.h"
#include "keytypes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cmp_der_info info;
	uint8_t spki[HSM_MAX_SPKI];
	size_t n;

	if (cmp_der_parse(data, size, &info) == 0 && info.first_extra_cert != NULL) {
		/* the pointers must lie inside the input */
		if (info.first_extra_cert < data ||
		    info.first_extra_cert + info.first_extra_cert_len > data + size)
			__builtin_trap();
	}
	if (cmp_der_parse_geninfo(data, size, HSM_OID_SGX_QUOTE, &info) == 0 &&
	    info.geninfo_value != NULL &&
	    (info.geninfo_value < data || info.geninfo_value + info.geninfo_value_len > data + size))
		__builtin_trap();
	(void)cmp_der_template_spki(data, size, spki, sizeof(spki), &n);
	/* Whatever parses can be answered, and the answer is a PKIMessage OpenSSL reads. */
	if (cmp_der_parse(data, size, &info) == 0) {
		static X509_NAME *ca;
		uint8_t *err = NULL;
		size_t elen = 0;
		const unsigned char *p;
		OSSL_CMP_MSG *m;

		if ((info.sender != NULL && (info.sender < data || info.sender + info.sender_len > data + size)) ||
		    (info.transaction_id != NULL && info.transaction_id + info.transaction_id_len > data + size) ||
		    (info.sender_nonce != NULL && info.sender_nonce + info.sender_nonce_len > data + size))
			__builtin_trap();
		if (ca == NULL && (ca = X509_NAME_new()) != NULL)
			X509_NAME_add_entry_by_txt(ca, "CN", MBSTRING_ASC, (const unsigned char *)"ca", -1, -1, 0);
		if (ca != NULL && cmp_der_error_new(&info, ca, 25, "refused", &err, &elen) == 0) {
			p = err;
			if ((m = d2i_OSSL_CMP_MSG(NULL, &p, (long)elen)) == NULL)
				__builtin_trap();
			OSSL_CMP_MSG_free(m);
			free(err);
		}
	}
	return 0;
}
