/*
 * fuzz_tlssig.c - what the agent signs (tlssig.h), on any bytes a local
 * client may send: never a read past the data, and every acceptance
 * holds what the shapes promise (never a DER SEQUENCE or SET spanning the
 * data; TLS 1.3: 64 spaces and 130 or 146 bytes; TLS 1.2 only when
 * allowed, a ServerKeyExchange's byte 64 is 3, a CertificateVerify input
 * starts with a ClientHello).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tlssig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL, *why12 = NULL;
	enum tlssig_shape s13 = tlssig_classify(data, size, 0, &why);
	enum tlssig_shape s = tlssig_classify(data, size, TLSSIG_ALLOW_TLS12, &why12);

	if ((s13 == TLSSIG_NONE && why == NULL) || (s == TLSSIG_NONE && why12 == NULL))
		abort();
	if (s13 != TLSSIG_NONE && s13 != s)
		abort();
	if (s == TLSSIG_NONE)
		return 0;
	if (tlssig_is_der_whole(data, size) || size > TLSSIG_MAX_TBS)
		abort();
	switch (s) {
	case TLSSIG_TLS13_SERVER_CV:
	case TLSSIG_TLS13_CLIENT_CV:
		for (size_t i = 0; i < 64; i++)
			if (data[i] != 0x20)
				abort();
		if (size != TLSSIG_TLS13_LEN(32) && size != TLSSIG_TLS13_LEN(48))
			abort();
		break;
	case TLSSIG_TLS12_SERVER_KX:
		if (s13 != TLSSIG_NONE || size < 69 || data[64] != 3)
			abort();
		break;
	case TLSSIG_TLS12_CLIENT_CV:
		if (s13 != TLSSIG_NONE || data[0] != 1)
			abort();
		break;
	default:
		abort();
	}
	return 0;
}
