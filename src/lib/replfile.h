/*
 * replfile.h - the two files of `hsmesh ca replicate` (docs/REPLICAS.md),
 * carried by an operator from one CA host to the other. Both are PEM
 * text, and their parsers distrust every byte (tests/fuzz/fuzz_replfile.c):
 * each is input from another machine.
 *
 * A replication request (target host -> source host):
 *   -----BEGIN HSMESH UNWRAPPING KEY-----  the target token's RSA unwrapping
 *                                          key: SubjectPublicKeyInfo DER
 *   -----BEGIN HSMESH SGX QUOTE-----       optional: an SGX DCAP quote whose
 *                                          report data is SHA-256(that SPKI)
 *                                          || a nonce of the source CA
 * A wrapped key (source host -> target host), one block:
 *   -----BEGIN HSMESH WRAPPED KEY-----     u8 version (1), the unwrapping key's
 *       id[32] (SHA-256 of its SPKI), u8 oaep (1 SHA-1, 2 SHA-256), u16 tlen,
 *       transport[tlen] (RSA-OAEP of the AES key), u16 spkilen, spki[spkilen]
 *       (the wrapped key's public half), the wrapped key (the rest: AES key
 *       wrap with padding of its PKCS#8)
 * Integers big-endian. Any other block, a block twice, a block with
 * headers, a length that does not fit, or text (but whitespace) before the
 * first block or after the last is refused.
 */
#ifndef HSM_REPLFILE_H
#define HSM_REPLFILE_H

#include <stddef.h>
#include <stdint.h>

#include "keytypes.h"

#define REPL_FILE_MAX (256 * 1024)	/* larger files are refused before parsing */

struct repl_request {
	uint8_t spki[HSM_MAX_SPKI];	/* the unwrapping key */
	size_t spkilen;
	uint8_t *quote;			/* malloc'd, or NULL */
	size_t quotelen;		/* at most ATTEST_QUOTE_MAX */
};

struct repl_wrapped {
	uint8_t wrapkey[HSM_KEYID_LEN];	/* which unwrapping key opens it */
	uint8_t spki[HSM_MAX_SPKI];	/* the wrapped key's public half */
	size_t spkilen;
	struct hsm_wrapped w;
};

/*
 * Parse a request (len bytes, NUL not needed). *out cleared first; free
 * its quote with repl_request_clear. 0 or HSM_EPROTO with a one-line
 * detail ("replication request: ...").
 */
int repl_request_parse(const uint8_t *buf, size_t len, struct repl_request *out);
/* Free what a request holds and clear it. Accepts NULL. */
void repl_request_clear(struct repl_request *r);
/* The PEM text of r: *pem malloc'd (NUL-terminated), *len without the NUL. */
int repl_request_write(const struct repl_request *r, char **pem, size_t *len);

/* Parse a wrapped key as above. *out cleared first. 0 or HSM_EPROTO. */
int repl_wrapped_parse(const uint8_t *buf, size_t len, struct repl_wrapped *out);
/* The PEM text of w: *pem malloc'd, *len without the NUL. */
int repl_wrapped_write(const struct repl_wrapped *w, char **pem, size_t *len);

#endif
