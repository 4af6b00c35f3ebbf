/*
 * provider_core.h - the "hsmesh" OpenSSL 3 provider's core: keys whose
 * private half is in a token and whose signatures are requests to a
 * backend. The core holds the OpenSSL side (key management, signatures,
 * the async pause); a backend (provider_kh.h: a keyholder;
 * provider_agent.h: the node agent) is a small table of functions
 * (struct hsm_signer). An EVP_PKEY made here works with X509_sign,
 * X509_REQ_sign, EVP_DigestSign and libssl. A backend is given either a
 * digest computed here (the keyholder: only the digest leaves the process)
 * or the whole data (the agent, which signs TLS handshake signature inputs
 * only and hashes them itself: tlssig.h). Inside an OpenSSL async job
 * (ASYNC_get_current_job() != NULL) the request is sent without waiting
 * and the job pauses on a per-wait-context eventfd until it ends (reply,
 * deadline or the peer gone), so an event loop is never blocked by the
 * token.
 *
 * The core includes no backend's client: a process reaches the keyholder
 * client only by including provider_kh.h's backend (the proxy does not).
 */
#ifndef HSM_PROVIDER_CORE_H
#define HSM_PROVIDER_CORE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keytypes.h"

#define HSM_KEYREF_NAME 2049	/* a backend's name for a key's owner, NUL included */

struct hsm_keyref;

/*
 * How a backend signs. sign blocks; the others are the non-blocking form
 * used inside async jobs: sign_start sends and makes the backend write an
 * 8-byte 1 to notify_fd when the request ends (reply, deadline or close),
 * done/result/release read and free it. Every request must end, so a
 * paused job always resumes. Each returns 0 or an HSM_E* code (result: the
 * signature's status). A backend with whole set is given the data to sign
 * itself (at most HSM_SIGNER_MAX_DATA bytes) and mdlen, the length of the
 * hash to make of it (32, 48, 64: SHA-256, -384, -512); the others a
 * digest of dlen bytes (mdlen 0).
 */
struct hsm_signer {
	uint32_t magic;			/* HSM_SIGNER_MAGIC */
	const char *name;		/* for error texts: "keyholder", "agent" */
	int whole;			/* given the whole data, not a digest */
	int (*sign)(const struct hsm_keyref *, int alg, int mdlen, const uint8_t *data,
	    size_t dlen, uint8_t *sig, size_t *siglen);
	int (*sign_start)(const struct hsm_keyref *, int alg, int mdlen, const uint8_t *data,
	    size_t dlen, int notify_fd, void **req);
	int (*done)(void *req);
	int (*result)(void *req, uint8_t *sig, size_t *siglen);
	void (*release)(void *req);
};
#define HSM_SIGNER_MAGIC 0x68736753u
#define HSM_SIGNER_MAX_DATA (64 * 1024)	/* a whole-data backend's bound (AG_MAX_TBS) */

/* A key as a backend names it; copied by value into the provider's key. */
struct hsm_keyref {
	uint32_t magic;			/* set by hsm_pkey_make */
	const struct hsm_signer *signer;
	void *backend;			/* the backend's client, borrowed: outlives every key */
	uint8_t keyid[HSM_KEYID_LEN];	/* SHA-256 of the key's SubjectPublicKeyInfo */
	char name[HSM_KEYREF_NAME];	/* the agent: the SPIFFE ID ("" = the caller's only one) */
	unsigned timeout_ms;		/* bound of each signature (0: the backend's default) */
};

/*
 * Register and load the provider in the default library context, after
 * loading "default", and set the default property query
 * "?provider=default" so that everything but our keys uses the default
 * provider. Idempotent. 0 or HSM_ECRYPTO.
 */
int hsm_provider_init(void);

/*
 * For backends: make an EVP_PKEY for ref (everything but magic filled)
 * whose public half is spki (DER SubjectPublicKeyInfo, EC or RSA).
 * 0, HSM_EUNSUPPORTED or HSM_ECRYPTO. Caller frees *out with EVP_PKEY_free.
 */
int hsm_pkey_make(struct hsm_keyref *ref, const uint8_t *spki, size_t spkilen, EVP_PKEY **out);

/*
 * Prove the key at start-up: sign a TLS 1.3 server CertificateVerify input
 * with a random transcript hash (what an agent key may sign) through its
 * backend and verify it with the public key. 0, or the signing or
 * verification error.
 */
int hsm_pkey_selftest(EVP_PKEY *pkey);

#endif
