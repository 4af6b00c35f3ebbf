/*
 * provider_kh.h - the provider's keyholder backend (provider_core.h):
 * keys signed by a keyholder through khclient. For the agent and the CA;
 * the proxy never includes this.
 */
#ifndef HSM_PROVIDER_KH_H
#define HSM_PROVIDER_KH_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keytypes.h"

struct kh_client;

/*
 * Make an EVP_PKEY for the keyholder key keyid whose public half is spki
 * (DER SubjectPublicKeyInfo, EC P-256/P-384 or RSA). The key borrows kh:
 * kh must outlive every copy of the key. timeout_ms bounds each signature
 * (0 = KH_DEFAULT_TIMEOUT_MS). Caller frees *out with EVP_PKEY_free.
 */
int hsm_pkey_new(struct kh_client *kh, const uint8_t keyid[HSM_KEYID_LEN],
    const uint8_t *spki, size_t spkilen, unsigned timeout_ms, EVP_PKEY **out);

#endif
