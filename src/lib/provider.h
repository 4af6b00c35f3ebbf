/*
 * provider.h - an OpenSSL 3 provider ("hsmesh") whose keys sign through a
 * keyholder (hsm_pkey_new: the agent, the CA) or through the node agent's
 * local API (hsm_pkey_new_agent: proxies, which never see a keyholder). An
 * EVP_PKEY made here works with X509_sign, X509_REQ_sign, EVP_DigestSign
 * and libssl. For a keyholder key the digest is computed here and only the
 * digest leaves the process; an agent key sends the whole data to the
 * agent, which signs TLS handshake signature inputs only (tlssig.h) and
 * refuses anything else (HSM_EPOLICY), so an agent key signs in TLS and
 * nowhere else (not a certificate, a CSR or a CMP message). When called
 * inside an OpenSSL async job
 * (ASYNC_get_current_job() != NULL) the signature request is sent with
 * kh_sign_start() / agc_sign_start() and the job pauses on a
 * per-wait-context eventfd until it ends (reply, deadline or the peer
 * gone), so an event loop is never blocked by the token.
 */
#ifndef HSM_PROVIDER_H
#define HSM_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keytypes.h"

struct kh_client;
struct agc_client;

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

/*
 * Prove the key at start-up: sign a TLS 1.3 server CertificateVerify input
 * with a random transcript hash (what an agent key may sign) through its
 * backend and verify it with the public key. 0, or the signing or
 * verification error.
 */
int hsm_pkey_selftest(EVP_PKEY *pkey);

#endif
