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

/*
 * Flags of a key generation (p11_generate_flags, the keyholder's
 * GENERATE). HSM_GEN_REPLICABLE: a CA key meant for replicas, created
 * extractable but CKA_WRAP_WITH_TRUSTED, so that the token lets it out
 * only wrapped by a key its security officer marked trusted.
 */
#define HSM_GEN_REPLICABLE 0x01
#define HSM_GEN_ALL 0x01

/*
 * A private key wrapped for another token (p11_wrap, p11_unwrap, the
 * keyholder's WRAP and UNWRAP; docs/REPLICAS.md): a fresh AES-256
 * transport key wrapped with RSA-OAEP under the target token's unwrapping
 * key, and the private key (PKCS#8) wrapped with that AES key by AES key
 * wrap with padding (RFC 5649, CKM_AES_KEY_WRAP_PAD).
 */
#define HSM_TRANSPORT_MAX 512	/* RSA-OAEP under a key of at most 4096 bits */
#define HSM_WRAPPED_MAX 2048	/* an RSA-3072 PKCS#8 key wrapped is about 1.8 KB */
enum hsm_oaep { HSM_OAEP_SHA1 = 1, HSM_OAEP_SHA256 = 2 };	/* OAEP and MGF1 hash */
struct hsm_wrapped {
	uint8_t oaep;				/* enum hsm_oaep */
	uint8_t transport[HSM_TRANSPORT_MAX];
	size_t tlen;
	uint8_t key[HSM_WRAPPED_MAX];
	size_t klen;
};

/* Parse "ec-p256"/"p256"/"ecdsa-p256", "ec-p384"/"p384", "rsa-3072"/"rsa3072"; 0 or HSM_EINVAL. */
int hsm_keytype_parse(const char *s, enum hsm_keytype *out);
/* "ec-p256", "ec-p384", "rsa-3072", or "unknown". */
const char *hsm_keytype_name(int kt);
/* Digest length the algorithm requires, or 0 when any 20..64 is accepted (ECDSA), -1 if unknown. */
int hsm_sigalg_digest_len(int alg);

#endif
