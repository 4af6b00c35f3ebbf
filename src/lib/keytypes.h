/*
 * keytypes.h - key and signature algorithm numbers shared by the token
 * layer, the keyholder protocol and the OpenSSL provider. The numbers are
 * on the wire (docs/PROTOCOL.md): never renumber.
 */
#ifndef HSM_KEYTYPES_H
#define HSM_KEYTYPES_H

#include <stddef.h>
#include <stdint.h>

#define HSM_KEYID_LEN 32	/* SHA-256 of the DER SubjectPublicKeyInfo */
#define HSM_MAX_SIG 512		/* enough for RSA-4096 and DER ECDSA P-521 */
#define HSM_MAX_SPKI 1024	/* enough for RSA-4096 SPKI */
#define HSM_MAX_LABEL 64

enum hsm_keytype {
	HSM_KEY_EC_P256 = 1,
	HSM_KEY_EC_P384 = 2,
	HSM_KEY_RSA_3072 = 3,
};

/*
 * Signature algorithms. The caller always hashes: the token signs a
 * digest. ECDSA results are DER-encoded ECDSA-Sig-Value (the token's raw
 * r||s is converted by the token layer); RSA results are the raw modulus-
 * sized signature. For RSA the hash is part of the algorithm (PKCS#1 v1.5
 * DigestInfo prefix, or PSS with MGF1 of the same hash and salt length =
 * hash length).
 */
enum hsm_sigalg {
	HSM_SIG_ECDSA = 1,		/* digest of 20..64 bytes */
	HSM_SIG_RSA_PKCS1_SHA256 = 2,
	HSM_SIG_RSA_PKCS1_SHA384 = 3,
	HSM_SIG_RSA_PKCS1_SHA512 = 4,
	HSM_SIG_RSA_PSS_SHA256 = 5,
	HSM_SIG_RSA_PSS_SHA384 = 6,
	HSM_SIG_RSA_PSS_SHA512 = 7,
};

/* Parse "ec-p256"/"p256"/"ecdsa-p256", "ec-p384"/"p384", "rsa-3072"/"rsa3072"; 0 or HSM_EINVAL. */
int hsm_keytype_parse(const char *s, enum hsm_keytype *out);
/* "ec-p256", "ec-p384", "rsa-3072", or "unknown". */
const char *hsm_keytype_name(int kt);
/* Digest length the algorithm requires, or 0 when any 20..64 is accepted (ECDSA), -1 if unknown. */
int hsm_sigalg_digest_len(int alg);

#endif
