/*
 * fuzz_nftypes.c - the RFC 9310 nfTypes decoder (nfprofile.h), which reads
 * a peer's certificate in `hsmesh inspect`: any bytes, never a crash, and
 * what it accepts is bounded, printable IA5 and re-encodes to the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "nfprofile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nf_types t;
	uint8_t *der = NULL;
	size_t len = 0;

	if (nf_types_decode(data, size, &t) != 0) {
		if (t.n != 0)
			abort();
		hsm_err_clear();
		return 0;
	}
	if (t.n < 1 || t.n > NF_TYPES_MAX)
		abort();
	for (size_t i = 0; i < t.n; i++) {
		size_t l = strnlen(t.t[i], sizeof(t.t[i]));

		if (l < 1 || l > NF_TYPE_MAX)
			abort();
		for (size_t k = 0; k < l; k++)
			if ((unsigned char)t.t[i][k] > 0x7f)
				abort();
	}
	/* DER only: the accepted value encodes back to exactly these bytes. */
	if (nf_types_encode(&t, &der, &len) != 0 || len != size || memcmp(der, data, size) != 0)
		abort();
	free(der);
	return 0;
}
