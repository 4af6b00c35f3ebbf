/* fuzz_p11uri.c - the RFC 7512 URI parser: any bytes, never a crash or overrun. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p11uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct p11_uri u;
	char *s;

	/* The parser takes a C string: give it one of exactly this size. */
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (p11_uri_parse(s, &u) == 0) {
		/* Every text field must come back NUL-terminated within bounds. */
		if (strlen(u.token) >= sizeof(u.token) || strlen(u.manufacturer) >= sizeof(u.manufacturer) ||
		    strlen(u.serial) >= sizeof(u.serial) || strlen(u.model) >= sizeof(u.model) ||
		    strlen(u.object) >= sizeof(u.object) || strlen(u.type) >= sizeof(u.type) ||
		    strlen(u.pin_source) >= sizeof(u.pin_source) ||
		    strlen(u.module_path) >= sizeof(u.module_path) || u.id_len > sizeof(u.id))
			abort();
		if (u.has_token)
			(void)p11_uri_field_eq((const unsigned char *)"token                           ",
			    32, u.token);
	}
	free(s);
	return 0;
}
