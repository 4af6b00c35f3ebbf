/*
 * provider_agent.c - the provider's agent backend (see provider_agent.h):
 * signatures through the node agent's local API, naming the key by the
 * SHA-256 of its certificate's public key and the SPIFFE ID it serves. The
 * backend is given the whole data (SIGN_TBS): the agent hashes it, and
 * signs it only if it is a TLS handshake signature input.
 */
#include <string.h>

#include <openssl/sha.h>

#include "agclient.h"
#include "agentproto.h"
#include "err.h"
#include "provider_agent.h"
#include "provider_core.h"
#include "spiffe.h"

_Static_assert(HSM_SIGNER_MAX_DATA == AG_MAX_TBS, "the core keeps what the agent takes");

/* The SIGN_TBS hash of a digest length. */
static int
hash_of(int mdlen)
{
	return mdlen == 48 ? AG_HASH_SHA384 : mdlen == 64 ? AG_HASH_SHA512 : AG_HASH_SHA256;
}

static int
ag_b_sign(const struct hsm_keyref *ref, int alg, int mdlen, const uint8_t *tbs, size_t len,
    uint8_t *sig, size_t *siglen)
{
	return agc_sign(ref->backend, ref->name, ref->keyid, alg, hash_of(mdlen), tbs, len,
	    ref->timeout_ms, sig, siglen);
}

static int
ag_b_start(const struct hsm_keyref *ref, int alg, int mdlen, const uint8_t *tbs, size_t len,
    int fd, void **req)
{
	struct agc_req *r = NULL;
	int st;

	st = agc_sign_start(ref->backend, ref->name, ref->keyid, alg, hash_of(mdlen), tbs, len,
	    ref->timeout_ms, fd, &r);
	*req = r;
	return st;
}

static int ag_b_done(void *req) { return agc_req_done(req); }
static int ag_b_result(void *req, uint8_t *sig, size_t *n) { return agc_req_result(req, sig, n); }
static void ag_b_release(void *req) { agc_req_free(req); }

static const struct hsm_signer agent_signer = {
	HSM_SIGNER_MAGIC, "agent", 1, ag_b_sign, ag_b_start, ag_b_done, ag_b_result, ag_b_release
};

int
hsm_pkey_new_agent(struct agc_client *agc, const char *spiffe_id, const uint8_t *spki,
    size_t spkilen, unsigned timeout_ms, EVP_PKEY **out)
{
	struct hsm_keyref ref;
	struct spiffe_id sid;
	size_t n = spiffe_id != NULL ? strlen(spiffe_id) : 0;
	int st;

	*out = NULL;
	if (agc == NULL)
		return hsm_err(HSM_EINVAL, "no agent client");
	if (n > 0 && (st = spiffe_id_parse(spiffe_id, &sid)) != 0)
		return st;
	_Static_assert(SPIFFE_ID_MAX < HSM_KEYREF_NAME, "a SPIFFE ID fits a key reference");
	memset(&ref, 0, sizeof(ref));
	ref.signer = &agent_signer;
	ref.backend = agc;
	if (n > 0)
		memcpy(ref.name, spiffe_id, n);
	/* Every SIGN names this key: the agent's key id for it. */
	if (spki == NULL || spkilen == 0 || SHA256(spki, spkilen, ref.keyid) == NULL)
		return hsm_err(HSM_EINVAL, "no SubjectPublicKeyInfo for the agent key");
	ref.timeout_ms = timeout_ms;
	return hsm_pkey_make(&ref, spki, spkilen, out);
}
