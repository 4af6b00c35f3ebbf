/*
 * tlssig.h - which bytes the node agent signs: TLS handshake signature
 * inputs only (docs/PROTOCOL.md, "What the agent signs").
 *
 * A workload (code running as its uid) may use its identity while it runs
 * and nothing more. A signing oracle for arbitrary bytes would give it
 * more: a CMP kur ProtectedPart signed by its key, for a key of its own
 * in a file, renews its identity off the node forever. So the agent
 * receives the whole to-be-signed data, hashes it itself, and signs only
 * data of one of these shapes (all byte-exact):
 *
 *   TLS 1.3 CertificateVerify (RFC 8446 4.4.3):
 *     64 x 0x20 || "TLS 1.3, server CertificateVerify" or
 *     "TLS 1.3, client CertificateVerify" (33 bytes) || 0x00 ||
 *     transcript hash (32 or 48 bytes: the cipher suite's hash, SHA-256 or
 *     SHA-384, which the signature scheme's hash does not determine)
 *   TLS 1.2 ServerKeyExchange, ECDHE (RFC 5246 7.4.3, RFC 8422 5.4):
 *     client_random[32] || server_random[32] || 0x03 (named_curve) ||
 *     u16 group || u8 point length || point, the length the group's:
 *     secp256r1 (23) 65, secp384r1 (24) 97, secp521r1 (25) 133 (each
 *     uncompressed, first byte 0x04), x25519 (29) 32, x448 (30) 56
 *   TLS 1.2 client CertificateVerify (RFC 5246 7.4.8): the handshake
 *     messages so far, each u8 type || u24 length || body, covering the
 *     data exactly, in the order of a full handshake with client
 *     authentication: client_hello (1), server_hello (2), certificate
 *     (11), [certificate_status (22)], [server_key_exchange (12)],
 *     certificate_request (13), server_hello_done (14), certificate (11),
 *     client_key_exchange (16); both hellos with version 3,3
 *
 * And, whatever the shape: data that begins with a DER (or BER) SEQUENCE
 * or SET header whose length spans exactly all of it is refused. Only the
 * ServerKeyExchange shape can begin that way (its first 32 bytes are the
 * client's random); a genuine handshake meets it with a chance below 2^-24.
 * This is what makes a CMP ProtectedPart, an X.509 TBSCertificate or a
 * CSR's CertificationRequestInfo (all DER SEQUENCEs spanning the signed
 * bytes) never signable, whatever their content.
 *
 * Pure functions: no I/O, no allocation, no error state.
 */
#ifndef HSM_TLSSIG_H
#define HSM_TLSSIG_H

#include <stddef.h>
#include <stdint.h>

#define TLSSIG_MAX_TBS (64 * 1024)	/* a TLS 1.2 transcript longer than this is refused */

enum tlssig_shape {
	TLSSIG_NONE = 0,
	TLSSIG_TLS13_SERVER_CV = 1,
	TLSSIG_TLS13_CLIENT_CV = 2,
	TLSSIG_TLS12_SERVER_KX = 3,
	TLSSIG_TLS12_CLIENT_CV = 4,
};

#define TLSSIG_ALLOW_TLS12 1u	/* flags: the TLS 1.2 shapes are accepted too */

/*
 * The shape of tbs[0..len), or TLSSIG_NONE with *why set to a static
 * one-line reason ("TLS 1.3: the transcript hash is not 32 or 48 bytes").
 * A TLS 1.2 shape without TLSSIG_ALLOW_TLS12 is TLSSIG_NONE with a reason
 * saying so. why may be NULL; tbs may be NULL when len is 0.
 */
enum tlssig_shape tlssig_classify(const uint8_t *tbs, size_t len, unsigned flags,
    const char **why);

/* The length of a TLS 1.3 CertificateVerify input with a transcript hash of n bytes. */
#define TLSSIG_TLS13_LEN(n) (64 + 33 + 1 + (n))

/*
 * Write the TLS 1.3 CertificateVerify input (server's or client's) for the
 * transcript hash th[0..thlen) (32 or 48 bytes) to out, which holds
 * TLSSIG_TLS13_LEN(thlen) bytes. Returns that length, or 0 for another
 * thlen. (For self-tests and test clients: what libssl signs.)
 */
size_t tlssig_tls13_input(int server, const uint8_t *th, size_t thlen, uint8_t *out);

/* A short name of a shape ("TLS 1.3 server CertificateVerify", ...; "none"). */
const char *tlssig_shape_name(enum tlssig_shape shape);

/*
 * Whether buf begins with a DER/BER SEQUENCE (0x30) or SET (0x31) header,
 * definite length in any number of length bytes (leading zeros allowed, as
 * OpenSSL's parser allows them) or indefinite, that spans all len bytes.
 */
int tlssig_is_der_whole(const uint8_t *buf, size_t len);

#endif
