/*
 * provider.h - an OpenSSL 3 provider ("hsmesh") whose keys sign through a
 * keyholder. An EVP_PKEY made by hsm_pkey_new() works with X509_sign,
 * X509_REQ_sign, EVP_DigestSign and libssl: the digest is computed here and
 * only the digest goes to the keyholder. When called inside an OpenSSL
 * async job (ASYNC_get_current_job() != NULL) the signature request is sent
 * with kh_sign_start() and the job pauses on a per-wait-context eventfd
 * until it ends, so an event loop is never blocked by the token.
 */
#ifndef HSM_PROVIDER_H
#define HSM_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keytypes.h"

struct kh_client;

/*
 * Register and load the provider in the default library context, after
 * loading "default", and set the default property query
 * "?provider=default" so that everything but our keys uses the default
 * provider. Idempotent. 0 or HSM_ECRYPTO.
 */
int hsm_provider_init(void);

/*
 * Make an EVP_PKEY for the keyholder key keyid whose public half is spki
 * (DER SubjectPublicKeyInfo, EC P-256/P-384 or RSA). The key borrows kh:
 * kh must outlive every copy of the key. timeout_ms bounds each signature
 * (0 = KH_DEFAULT_TIMEOUT_MS). Caller frees *out with EVP_PKEY_free.
 */
int hsm_pkey_new(struct kh_client *kh, const uint8_t keyid[HSM_KEYID_LEN],
    const uint8_t *spki, size_t spkilen, unsigned timeout_ms, EVP_PKEY **out);

/*
 * Prove the key at start-up: sign a random digest through the keyholder
 * and verify it with the public key. 0, or the signing/verification error.
 */
int hsm_pkey_selftest(EVP_PKEY *pkey);

#endif
