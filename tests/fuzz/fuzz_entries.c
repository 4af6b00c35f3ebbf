/*
 * fuzz_entries.c - the agent's decoder of a node's registration entries
 * (the genp value the CA sends, and the agent's cache file): anything that
 * decodes must encode back to exactly the same bytes (DER, canonical
 * selectors).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>

#include "entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct entry_list *l = NULL;
	uint8_t *der = NULL;
	size_t len = 0;

	if (entries_decode(data, size, &l) == 0) {
		if (entries_encode(l, &der, &len) != 0 || len != size || memcmp(der, data, size) != 0)
			__builtin_trap();
		OPENSSL_free(der);
	}
	entries_free(l);
	return 0;
}
