/*
 * capki.h - a CA certificate from an operator's PKI: the checks `hsmesh ca
 * install --chain` makes before the CA signs with it (docs/LIFECYCLE.md,
 * "Under an operator's root").
 */
#ifndef HSM_CAPKI_H
#define HSM_CAPKI_H

#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "keytypes.h"

#define CAPKI_CHAIN_MAX 8	/* certificates in an installed chain, the CA's included */

/*
 * Check a chain for the CA key keyid (SHA-256 of its SubjectPublicKeyInfo)
 * of trust domain td at time now: ca is the CA's certificate, above the
 * certificates over it in order (intermediates, then the operator's
 * self-signed root, last). Refused, each with a one-line reason naming
 * the certificate: a chain without a root above ca, or of more than
 * CAPKI_CHAIN_MAX certificates; ca's key is not keyid; ca is not a CA
 * (basicConstraints CA:TRUE) or its keyUsage lacks keyCertSign; a
 * certificate of the chain not valid at now; a path length above that
 * leaves no room for ca and the SVIDs below it; the last certificate is
 * not self-signed; the chain does not verify (X509_verify_cert, strict);
 * ca names another trust domain in a URI SAN; a name constraint of the
 * chain excludes spiffe://<td>. 0; HSM_EPOLICY or HSM_EINVAL with the
 * reason; HSM_ENOMEM.
 */
int capki_chain_check(X509 *ca, STACK_OF(X509) *above, const uint8_t keyid[HSM_KEYID_LEN],
    const char *td, time_t now);

#endif
