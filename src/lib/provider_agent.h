/*
 * provider_agent.h - the provider's agent backend (provider_core.h): keys
 * signed by the node agent through its local API (agclient), for proxies,
 * which never see a keyholder.
 */
#ifndef HSM_PROVIDER_AGENT_H
#define HSM_PROVIDER_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

struct agc_client;

/*
 * Make an EVP_PKEY that signs through the node agent for spiffe_id (NULL or
 * "" = the caller's only ID; validated here, once) and whose public half is
 * spki (DER SubjectPublicKeyInfo of the SVID's leaf). Every signature
 * request names the key SHA-256(spki), so the signature always matches the
 * certificate: after a rotation the agent still signs with the old key for
 * its grace period (30 s), then refuses (HSM_ENOENT); make a new EVP_PKEY
 * with the new certificate's spki meanwhile. The key borrows agc: agc must
 * outlive every copy of the key. timeout_ms bounds each signature (0 =
 * AGC_DEFAULT_TIMEOUT_MS). 0, HSM_EINVAL (bad SPIFFE ID), HSM_EUNSUPPORTED
 * or HSM_ECRYPTO. Caller frees *out with EVP_PKEY_free.
 */
int hsm_pkey_new_agent(struct agc_client *agc, const char *spiffe_id, const uint8_t *spki,
    size_t spkilen, unsigned timeout_ms, EVP_PKEY **out);

#endif
