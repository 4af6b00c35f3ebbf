/* evtype.c - kinds of attestation evidence, their OIDs, and nonces (see evtype.h). */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "err.h"
#include "evtype.h"

#define NONCE_LABEL "hsmesh attestation nonce v1"
#define NONCE_SKEW 30		/* seconds a replica's clock may run ahead */

static const struct ev_type_info types[] = {
	{ EV_SGX, "sgx", HSM_OID_SGX_QUOTE, HSM_OID_SGX_IDENTITY, "sgx identity",
	    ATTEST_QUOTE_MAX },
};

const struct ev_type_info *
ev_type_at(size_t i)
{
	return i < sizeof(types) / sizeof(types[0]) ? &types[i] : NULL;
}

const struct ev_type_info *
ev_type_get(enum ev_type t)
{
	const struct ev_type_info *e;

	for (size_t i = 0; (e = ev_type_at(i)) != NULL; i++)
		if (e->type == t)
			return e;
	return NULL;
}

const struct ev_type_info *
ev_type_by_evidence_oid(const char *oid)
{
	const struct ev_type_info *e;

	if (oid == NULL)
		return NULL;
	for (size_t i = 0; (e = ev_type_at(i)) != NULL; i++)
		if (strcmp(e->evidence_oid, oid) == 0)
			return e;
	return NULL;
}

/* ---- nonces ---- */

void
ev_nonce_key(const uint8_t token_key[32], uint8_t out[32])
{
	unsigned int len = 32;

	HMAC(EVP_sha256(), token_key, 32, (const unsigned char *)NONCE_LABEL,
	    sizeof(NONCE_LABEL) - 1, out, &len);
}

static void
nonce_mac(const uint8_t key[32], const uint8_t ts[8], uint8_t mac[32])
{
	uint8_t msg[sizeof(NONCE_LABEL) - 1 + 8];
	unsigned int len = 32;

	memcpy(msg, NONCE_LABEL, sizeof(NONCE_LABEL) - 1);
	memcpy(msg + sizeof(NONCE_LABEL) - 1, ts, 8);
	HMAC(EVP_sha256(), key, 32, msg, sizeof(msg), mac, &len);
}

void
ev_nonce_make(const uint8_t key[32], time_t now, uint8_t out[ATTEST_NONCE_LEN])
{
	uint64_t t = (uint64_t)now;
	uint8_t mac[32];

	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(t >> (56 - 8 * i));
	nonce_mac(key, out, mac);
	memcpy(out + 8, mac, ATTEST_NONCE_LEN - 8);
}

int
ev_nonce_check(const uint8_t key[32], const uint8_t nonce[ATTEST_NONCE_LEN], time_t now,
    int64_t ttl)
{
	uint8_t mac[32];
	uint64_t t = 0;

	nonce_mac(key, nonce, mac);
	if (CRYPTO_memcmp(mac, nonce + 8, ATTEST_NONCE_LEN - 8) != 0)
		return hsm_err(HSM_EPOLICY, "the quote's nonce was not issued by this CA");
	for (int i = 0; i < 8; i++)
		t = t << 8 | nonce[i];
	if ((int64_t)t > (int64_t)now + NONCE_SKEW)
		return hsm_err(HSM_EPOLICY, "the quote's nonce is from the future");
	if ((int64_t)t + ttl < (int64_t)now)
		return hsm_err(HSM_EPOLICY, "the quote's nonce expired %llds ago (nonce_ttl %llds)",
		    (long long)((int64_t)now - (int64_t)t - ttl), (long long)ttl);
	return 0;
}
