/*
 * p11.h - the one door to PKCS#11. Only this module calls C_* functions,
 * and only the keyholder process links it in use.
 *
 * A struct p11_token is one logged-in token of one loaded module, with a
 * thread-safe pool of sessions. Keys are generated non-extractable and
 * sensitive, and are named by CKA_ID = SHA-256 of their DER
 * SubjectPublicKeyInfo (HSM_KEYID_LEN bytes).
 */
#ifndef HSM_P11_H
#define HSM_P11_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keytypes.h"

struct p11_token;

/* Where the PIN comes from: exactly one of file or env is non-NULL. */
struct p11_pin_source {
	const char *file;	/* path to a file holding the PIN (trailing newline stripped) */
	const char *env;	/* name of an environment variable holding it */
};

/*
 * Load module_path (canonicalised with realpath, must be a regular file
 * exporting C_GetFunctionList), find the one token matching token_uri (an
 * RFC 7512 pkcs11: URI; token, manufacturer, serial, model, slot-id
 * attributes), read the PIN from pin, log in as user, and wipe the PIN.
 * nsessions sessions are opened lazily up to that number (>= 1).
 * Errors: HSM_EMODULE, HSM_ETOKEN (no token matches, or several do),
 * HSM_EPIN, HSM_EPINLOCKED (token reports the PIN locked or final try:
 * we never make the attempt that would lock it), HSM_EINVAL (bad URI),
 * HSM_ENOENT (PIN file missing), HSM_EP11. On success *out owns the token.
 */
int p11_token_open(const char *module_path, const char *token_uri,
    const struct p11_pin_source *pin, int nsessions, struct p11_token **out);

/*
 * Use at most n sessions from now on (1..the nsessions given to
 * p11_token_open): idle sessions above n are closed at once, busy ones
 * when their operation ends; more open lazily again when n grows. The
 * token stays logged in (one session at least stays open once open).
 * 0 or HSM_EINVAL.
 */
int p11_token_set_sessions(struct p11_token *tok, int n);

/* The module is tpm2-pkcs11 (a TPM: one command at a time, few sessions). */
bool p11_token_is_tpm(const struct p11_token *tok);

/* Sessions open now (idle and in use); *max (may be NULL) the current limit. */
int p11_token_sessions(struct p11_token *tok, int *max);

/* Log out, close sessions, C_Finalize, unload. Accepts NULL. */
void p11_token_close(struct p11_token *tok);

/*
 * Generate a key pair of type kt in the token (CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE=TRUE, CKA_EXTRACTABLE=FALSE, CKA_SIGN), labelled label
 * (may be NULL), set CKA_ID on both halves to the SPKI hash.
 * Writes keyid, and *spki (malloc'd DER, caller frees) with *spkilen.
 */
int p11_generate(struct p11_token *tok, enum hsm_keytype kt, const char *label,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen);

/*
 * p11_generate with flags (HSM_GEN_*, keytypes.h): HSM_GEN_REPLICABLE
 * makes the private key CKA_EXTRACTABLE=TRUE and CKA_WRAP_WITH_TRUSTED=TRUE
 * (still sensitive): the token lets it out only wrapped by a trusted key.
 */
int p11_generate_flags(struct p11_token *tok, enum hsm_keytype kt, const char *label,
    unsigned flags, uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen);

/*
 * Replication of a key to another token (docs/REPLICAS.md).
 *
 * p11_generate_unwrapping: on the target, an RSA-3072 key pair whose
 * private half may only unwrap (CKA_UNWRAP, no sign, no decrypt),
 * sensitive and never extractable, named like every key by its SPKI hash.
 *
 * p11_wrap: on the source, wrap private key keyid for the holder of the
 * RSA public key target_spki (at least 2048 bits): as the token's
 * security officer (PIN from so, read now and wiped; a PIN the token
 * rejected is never tried again, nor one that would lock it), import
 * that key as a trusted session object (CKA_TRUSTED) and make a trusted
 * AES-256 session key that is itself CKA_WRAP_WITH_TRUSTED, wrap the AES
 * key under it (RSA-OAEP, SHA-256 or, where the token offers no more, as
 * SoftHSM2 2.6, SHA-1); then as the user again wrap the private key with
 * the AES key (CKM_AES_KEY_WRAP_PAD) and destroy both session objects.
 * The token refuses (HSM_EPERM) a key that is not CKA_EXTRACTABLE, and
 * one whose CKA_WRAP_WITH_TRUSTED the AES key would not satisfy. Logs the
 * user out and in again: no other operation may use the token meanwhile
 * (a keyholder of its own). HSM_EPIN / HSM_EPINLOCKED for the SO PIN.
 *
 * p11_unwrap: on the target, unwrap w with the unwrapping key wrapkey_id
 * into a token key that is sensitive, not extractable and
 * CKA_WRAP_WITH_TRUSTED, labelled label, named by the SHA-256 of spki (its
 * public key, EC P-256/P-384 or RSA, also stored as a public key object).
 * *keyid receives that name. HSM_EEXIST when the token holds that key
 * already; HSM_EP11 when the blob does not unwrap. The caller proves the
 * pair with a signature.
 */
int p11_generate_unwrapping(struct p11_token *tok, const char *label,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen);
int p11_wrap(struct p11_token *tok, const struct p11_pin_source *so,
    const uint8_t keyid[HSM_KEYID_LEN], const uint8_t *target_spki, size_t target_len,
    struct hsm_wrapped *out);
int p11_unwrap(struct p11_token *tok, const uint8_t wrapkey_id[HSM_KEYID_LEN],
    const struct hsm_wrapped *w, const uint8_t *spki, size_t spkilen, const char *label,
    uint8_t keyid[HSM_KEYID_LEN]);

/* Public key of the private key with this id: *spki malloc'd DER. HSM_ENOENT if absent. */
int p11_pubkey(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN],
    uint8_t **spki, size_t *spkilen);

/* Find the (first) private key with this CKA_LABEL: its id and SPKI. HSM_ENOENT if none. */
int p11_find_label(struct p11_token *tok, const char *label,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen);

/* A private key p11_list_prefix found. */
struct p11_key_entry {
	uint8_t id[HSM_KEYID_LEN];
	char label[HSM_MAX_LABEL + 1];
};

/*
 * The private keys whose CKA_LABEL starts with prefix (1..HSM_MAX_LABEL
 * printable bytes) and whose CKA_ID is a key id (32 bytes), in increasing
 * key id order, those above after only (NULL: from the first): at most max
 * into out, *n how many. A key without a label, with a label of another
 * prefix, or with an id of another length is never listed. 0 or the
 * token's error.
 */
int p11_list_prefix(struct p11_token *tok, const char *prefix, const uint8_t *after,
    struct p11_key_entry *out, size_t max, size_t *n);

/*
 * Sign digest (dlen bytes) with alg (enum hsm_sigalg) using key keyid.
 * sig must hold HSM_MAX_SIG bytes; *siglen receives the length. ECDSA
 * signatures are returned DER-encoded. HSM_EUNSUPPORTED when alg does not
 * fit the key type. Thread-safe.
 */
int p11_sign(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *digest, size_t dlen, uint8_t *sig, size_t *siglen);

/* Destroy private and public objects with this id. HSM_ENOENT if absent. */
int p11_destroy(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN]);

/* Security attributes of the private key (the keyholder's ATTRS request, tests, the demo). */
struct p11_key_info {
	enum hsm_keytype type;
	bool sensitive, always_sensitive, extractable, never_extractable, token, private_;
	bool wrap_with_trusted;
	char label[HSM_MAX_LABEL + 1];
};
int p11_key_info(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN],
    struct p11_key_info *out);

/* Token label, as a NUL-terminated string with the padding trimmed. */
const char *p11_token_label(const struct p11_token *tok);

/*
 * Re-initialise the module in a child after fork() (PKCS#11 forbids using
 * the parent's sessions): C_Initialize again, log in again with the PIN
 * from the original source. Also done automatically on first use after a
 * fork detected by pid change.
 */
int p11_token_reset_after_fork(struct p11_token *tok);

#endif
