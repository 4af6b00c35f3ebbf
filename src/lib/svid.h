/*
 * svid.h - the X.509-SVID as its holder checks it: what the agent demands
 * of a certificate before it uses one for a workload, whether it comes from
 * its state directory at start or from the CA in an enrollment (certConf),
 * and the small certificate helpers both places need.
 *
 * Functions return 0 or a negative HSM_E* code with a one-line detail
 * (err.h); the detail of a refused certificate says which rule failed.
 */
#ifndef HSM_SVID_H
#define HSM_SVID_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#define SVID_MAX_PEM_FILE (256 * 1024)	/* largest certificate file read */

/*
 * The X.509-SVID contract for a certificate about to be used for id: leaf
 * certifies exactly spki (DER SubjectPublicKeyInfo bytes compared), carries
 * exactly one URI SAN and it equals id, is not a CA, and chains to root
 * (X509_V_FLAG_X509_STRICT; untrusted, may be NULL, may hold
 * intermediates). On success *chain (when chain is not NULL) receives the
 * intermediates of the verified path, leaf and root excluded (an empty
 * stack when there are none); the caller frees it. 0, HSM_EPOLICY with
 * the rule that failed ("certificate does not certify our key", "...does
 * not carry exactly the URI SAN ID (N URI SANs)", "certificate is a CA
 * certificate", "certificate does not chain to the root: REASON"),
 * HSM_ECRYPTO or HSM_ENOMEM.
 */
int svid_verify(X509 *root, const char *id, X509 *leaf, STACK_OF(X509) *untrusted,
    const uint8_t *spki, size_t spkilen, STACK_OF(X509) **chain);

/* The same with more trust anchors beside root (may be NULL): a CA being rotated. */
int svid_verify_anchors(X509 *root, STACK_OF(X509) *more, const char *id, X509 *leaf,
    STACK_OF(X509) *untrusted, const uint8_t *spki, size_t spkilen, STACK_OF(X509) **chain);

/*
 * Every certificate of the PEM file at path (at most SVID_MAX_PEM_FILE
 * bytes): the first into *leaf, the others into *rest (maybe empty). The
 * caller frees both. 0, the file's error (HSM_ENOENT, HSM_EIO, HSM_EINVAL)
 * or HSM_EINVAL "PATH: no PEM certificate".
 */
int svid_load_pem_file(const char *path, X509 **leaf, STACK_OF(X509) **rest);

/* The DER SubjectPublicKeyInfo of x, malloc'd. 0, HSM_ECRYPTO or HSM_ENOMEM. */
int svid_cert_spki(X509 *x, uint8_t **out, size_t *len);

/*
 * x's serial number spelled as `openssl x509 -serial` prints it: upper
 * case, an even number of digits ("0A1B2C", where the ledger has "a1b2c");
 * "?" when unreadable or longer than len allows. Returns out.
 */
char *svid_serial_text(X509 *x, char *out, size_t len);

/* Free a stack of certificates. Accepts NULL. */
void svid_certs_free(STACK_OF(X509) *sk);

#endif
