/*
 * fuzz_xfcc.c - x-forwarded-client-cert as an application reads it back
 * (xfcc_uri): any value, any output room. Never a crash or an overrun;
 * what it returns is NUL-terminated and fits. And the round trip: for
 * any ID the writer (xfcc_value) accepts, the reader gives it back
 * exactly, however it had to be quoted.
 *
 * Input: byte 0: the output room (0..255); the rest, the value (and,
 * split at the first NUL, the ID for the round trip).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "xfcc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };
	char *v, *out, *w = NULL, back[1024];
	size_t cap;

	if (size < 1 || size > 4096)
		return 0;
	cap = data[0];
	if ((v = malloc(size)) == NULL || (out = malloc(cap + 1)) == NULL) {
		free(v);
		return 0;
	}
	memcpy(v, data + 1, size - 1);
	v[size - 1] = '\0';
	out[cap] = 0x5a;	/* a guard byte past the room given */
	if (xfcc_uri(v, out, cap) == 0 && strlen(out) >= cap)
		abort();
	if (out[cap] != 0x5a)
		abort();
	/* round trip: the ID as written by the sidecar comes back unchanged */
	if (xfcc_value("spiffe://example.org/b", der, sizeof(der), v, &w) == 0) {
		if (xfcc_uri(w, back, sizeof(back)) != 0) {
			if (strlen(v) < sizeof(back) / 2)
				abort();
		} else if (strcmp(back, v) != 0) {
			abort();
		}
	}
	free(w);
	free(out);
	free(v);
	return 0;
}
