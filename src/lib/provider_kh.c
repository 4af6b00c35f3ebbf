/*
 * provider_kh.c - the provider's keyholder backend (see provider_kh.h):
 * signatures by key id through khclient.
 */
#include <string.h>

#include "khclient.h"
#include "provider_core.h"
#include "provider_kh.h"

static int
kh_b_sign(const struct hsm_keyref *ref, int alg, int mdlen, const uint8_t *dg, size_t dlen,
    uint8_t *sig, size_t *siglen)
{
	return kh_sign(ref->backend, ref->keyid, alg, dg, dlen, ref->timeout_ms, sig, siglen);
}

static int
kh_b_start(const struct hsm_keyref *ref, int alg, int mdlen, const uint8_t *dg, size_t dlen,
    int fd, void **req)
{
	struct kh_req *r = NULL;
	int st;

	st = kh_sign_start(ref->backend, ref->keyid, alg, dg, dlen, ref->timeout_ms, fd, &r);
	*req = r;
	return st;
}

static int kh_b_done(void *req) { return kh_req_done(req); }
static int kh_b_result(void *req, uint8_t *sig, size_t *n) { return kh_req_result(req, sig, n); }
static void kh_b_release(void *req) { kh_req_free(req); }

static const struct hsm_signer kh_signer = {
	HSM_SIGNER_MAGIC, "keyholder", 0, kh_b_sign, kh_b_start, kh_b_done, kh_b_result,
	kh_b_release
};

int
hsm_pkey_new(struct kh_client *kh, const uint8_t keyid[HSM_KEYID_LEN],
    const uint8_t *spki, size_t spkilen, unsigned timeout_ms, EVP_PKEY **out)
{
	struct hsm_keyref ref;

	memset(&ref, 0, sizeof(ref));
	ref.signer = &kh_signer;
	ref.backend = kh;
	memcpy(ref.keyid, keyid, HSM_KEYID_LEN);
	ref.timeout_ms = timeout_ms;
	return hsm_pkey_make(&ref, spki, spkilen, out);
}
