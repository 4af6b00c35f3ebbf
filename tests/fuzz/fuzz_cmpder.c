/* fuzz_cmpder.c - the DER walks the CA runs on CMP requests before OpenSSL does. */
#include <stddef.h>
#include <stdint.h>

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
	return 0;
}
