/*
 * p11uri.h - RFC 7512 "pkcs11:" URIs. Pure parsing, no PKCS#11 calls:
 * fuzzed by tests/fuzz/fuzz_p11uri.c.
 */
#ifndef HSM_P11URI_H
#define HSM_P11URI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parsed URI. Absent attributes have has_* false. Text attributes are
 * percent-decoded and NUL-terminated; lengths are bounded by the PKCS#11
 * fixed field sizes (token 32, manufacturer 32, serial 16, model 16,
 * object label 64). id is binary (pct-decoded).
 */
struct p11_uri {
	bool has_token, has_manufacturer, has_serial, has_model, has_slot_id;
	bool has_object, has_id, has_type, has_pin_source, has_module_path;
	char token[33];
	char manufacturer[33];
	char serial[17];
	char model[17];
	unsigned long slot_id;
	char object[65];
	uint8_t id[64];
	size_t id_len;
	char type[16];		/* "private", "public", "cert", ... */
	char pin_source[256];	/* query attribute pin-source */
	char module_path[256];	/* query attribute module-path */
};

/*
 * Parse s (NUL-terminated). Unknown path attributes are an error (a typo
 * must not silently widen a match); unknown query attributes are ignored
 * as RFC 7512 allows. pin-value is refused (a PIN never sits in a URI).
 * Returns 0 or HSM_EINVAL with a detail naming the offending attribute.
 */
int p11_uri_parse(const char *s, struct p11_uri *out);

/*
 * True when the blank-padded PKCS#11 field (len bytes, e.g. CK_TOKEN_INFO
 * label) equals the NUL-terminated want after trailing blanks are trimmed.
 */
bool p11_uri_field_eq(const unsigned char *field, size_t len, const char *want);

#endif
