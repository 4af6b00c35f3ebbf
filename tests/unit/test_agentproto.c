/*
 * test_agentproto.c - the agent's local API frames: round trips of every
 * message, and refusal of every malformed field (lengths, version,
 * reserved bits, SPIFFE IDs, algorithms, hashes, digest lengths, key ids,
 * data lengths, statuses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agentproto.h"
#include "err.h"
#include "util.h"

#define ID "spiffe://example.org/ns/web"

static void
parse_one(const uint8_t *buf, size_t len, struct ag_frame *f)
{
	assert_int_equal(ag_frame_parse(buf, len, f), (int)len);
}

/*
 * The frame b[0..len) cut by cut bytes (its length field made to match),
 * decoded as a request (rq) or, rq NULL, as a reply (into rp, whose
 * pointers are dangling afterwards). The decoder's result.
 */
static int
decode_cut(const uint8_t *b, size_t len, size_t cut, struct ag_request *rq, struct ag_reply *rp)
{
	uint8_t *t = malloc(len - cut);
	struct ag_frame f;
	int r;

	assert_non_null(t);
	memcpy(t, b, len - cut);
	hsm_put32(t, (uint32_t)(len - cut - 4));
	parse_one(t, len - cut, &f);
	r = rq != NULL ? ag_request_decode(&f, rq) : ag_reply_decode(&f, rp);
	free(t);
	return r;
}

static void
get_roundtrip(void **state)
{
	uint8_t *b;
	size_t len;
	struct ag_frame f;
	struct ag_request r;

	assert_int_equal(ag_encode_get(AG_T_GET_SVID, 7, ID, &b, &len), 0);
	assert_int_equal(len, AG_HDR_LEN + strlen(ID));
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_int_equal(r.type, AG_T_GET_SVID);
	assert_int_equal(r.id, 7);
	assert_string_equal(r.spiffe_id, ID);
	free(b);

	/* Empty ID: "the only one my uid may use". */
	assert_int_equal(ag_encode_get(AG_T_SUBSCRIBE, 8, NULL, &b, &len), 0);
	assert_int_equal(len, AG_HDR_LEN);
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_int_equal(r.type, AG_T_SUBSCRIBE);
	assert_string_equal(r.spiffe_id, "");
	free(b);

	assert_int_equal(ag_encode_get(AG_T_SIGN, 1, ID, &b, &len), HSM_EINVAL);
	assert_null(b);
	assert_int_equal(ag_encode_get(AG_T_GET_SVID, 1, "spiffe://Bad/x", &b, &len), HSM_EINVAL);
}

static void
sign_roundtrip(void **state)
{
	uint8_t dg[64], kid[HSM_KEYID_LEN], *b, *b2;
	size_t len, len2;
	struct ag_frame f;
	struct ag_request r;

	for (int i = 0; i < 64; i++)
		dg[i] = (uint8_t)i;
	for (int i = 0; i < HSM_KEYID_LEN; i++)
		kid[i] = (uint8_t)(0xa0 + i);
	/* Without a key id: the frame of old clients, the current key. */
	assert_int_equal(ag_encode_sign(9, ID, NULL, HSM_SIG_ECDSA, dg, 32, &b, &len), 0);
	assert_int_equal(len, AG_HDR_LEN + 2 + strlen(ID) + 2 + 32);
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_int_equal(r.type, AG_T_SIGN);
	assert_int_equal(r.id, 9);
	assert_string_equal(r.spiffe_id, ID);
	assert_int_equal(r.alg, HSM_SIG_ECDSA);
	assert_int_equal(r.dlen, 32);
	assert_memory_equal(r.digest, dg, 32);
	assert_false(r.has_keyid);

	/* With one: the same frame and the key id after the digest. */
	assert_int_equal(ag_encode_sign(9, ID, kid, HSM_SIG_ECDSA, dg, 32, &b2, &len2), 0);
	assert_int_equal(len2, len + HSM_KEYID_LEN);
	assert_int_equal(hsm_get32(b2), hsm_get32(b) + HSM_KEYID_LEN);
	assert_memory_equal(b2 + 4, b + 4, len - 4);
	assert_memory_equal(b2 + len, kid, HSM_KEYID_LEN);
	parse_one(b2, len2, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_string_equal(r.spiffe_id, ID);
	assert_int_equal(r.dlen, 32);
	assert_memory_equal(r.digest, dg, 32);
	assert_true(r.has_keyid);
	assert_memory_equal(r.keyid, kid, HSM_KEYID_LEN);
	free(b);
	free(b2);

	assert_int_equal(ag_encode_sign(1, "", NULL, HSM_SIG_RSA_PSS_SHA384, dg, 48, &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_string_equal(r.spiffe_id, "");
	free(b);
	assert_int_equal(ag_encode_sign(1, "", kid, HSM_SIG_RSA_PKCS1_SHA512, dg, 64, &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_true(r.has_keyid);
	assert_int_equal(r.dlen, 64);
	assert_memory_equal(r.keyid, kid, HSM_KEYID_LEN);
	free(b);

	/* Digest lengths the algorithm does not take; unknown algorithms; bad IDs. */
	assert_int_equal(ag_encode_sign(1, ID, NULL, HSM_SIG_RSA_PKCS1_SHA256, dg, 48, &b, &len),
	    HSM_EINVAL);
	assert_int_equal(ag_encode_sign(1, ID, kid, HSM_SIG_ECDSA, dg, 19, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_sign(1, ID, NULL, HSM_SIG_ECDSA, dg, 65, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_sign(1, ID, kid, 99, dg, 32, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_sign(1, "spiffe://example.org/a/../b", kid, HSM_SIG_ECDSA, dg, 32,
	    &b, &len), HSM_EINVAL);
	assert_null(b);
}

static void
sign_tbs_roundtrip(void **state)
{
	static uint8_t big[AG_MAX_TBS + 1];
	uint8_t tbs[300], kid[HSM_KEYID_LEN], *b, *b2;
	size_t len, len2;
	struct ag_frame f;
	struct ag_request r;

	for (size_t i = 0; i < sizeof(tbs); i++)
		tbs[i] = (uint8_t)(i * 7);
	memset(kid, 0xa5, sizeof(kid));
	assert_int_equal(ag_encode_sign_tbs(11, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA384, tbs,
	    sizeof(tbs), &b, &len), 0);
	assert_int_equal(len, AG_HDR_LEN + 2 + strlen(ID) + 3 + 4 + sizeof(tbs));
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_int_equal(r.type, AG_T_SIGN_TBS);
	assert_int_equal(r.id, 11);
	assert_string_equal(r.spiffe_id, ID);
	assert_int_equal(r.alg, HSM_SIG_ECDSA);
	assert_int_equal(r.hash, AG_HASH_SHA384);
	assert_false(r.has_keyid);
	assert_int_equal(r.tbslen, sizeof(tbs));
	assert_ptr_equal(r.tbs, b + len - sizeof(tbs));	/* into the frame */
	assert_memory_equal(r.tbs, tbs, sizeof(tbs));

	/* With a key id: between the hash and the data, its length said. */
	assert_int_equal(ag_encode_sign_tbs(11, ID, kid, HSM_SIG_ECDSA, AG_HASH_SHA384, tbs,
	    sizeof(tbs), &b2, &len2), 0);
	assert_int_equal(len2, len + HSM_KEYID_LEN);
	parse_one(b2, len2, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_true(r.has_keyid);
	assert_memory_equal(r.keyid, kid, HSM_KEYID_LEN);
	assert_memory_equal(r.tbs, tbs, sizeof(tbs));
	free(b2);

	/* Every truncation or extension is refused, never over-read. */
	for (size_t cut = 1; cut < len - AG_HDR_LEN; cut++)
		assert_int_equal(decode_cut(b, len, cut, &r, NULL), HSM_EPROTO);
	b2 = malloc(len + 1);
	memcpy(b2, b, len);
	b2[len] = 0;
	hsm_put32(b2, (uint32_t)(len + 1 - 4));
	parse_one(b2, len + 1, &f);
	assert_int_equal(ag_request_decode(&f, &r), HSM_EPROTO);
	free(b2);
	free(b);

	/* Empty data encodes (the agent refuses it: not a TLS input); an empty ID too. */
	assert_int_equal(ag_encode_sign_tbs(1, "", NULL, HSM_SIG_RSA_PSS_SHA256, AG_HASH_SHA256,
	    NULL, 0, &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_int_equal(r.tbslen, 0);
	assert_null(r.tbs);
	free(b);

	/* The largest request fits a frame and the agent's limit. */
	assert_int_equal(ag_encode_sign_tbs(1, ID, kid, HSM_SIG_ECDSA, AG_HASH_SHA256, big,
	    AG_MAX_TBS, &b, &len), 0);
	assert_true(len <= AG_MAX_REQUEST);
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &r), 0);
	assert_int_equal(r.tbslen, AG_MAX_TBS);
	free(b);
	assert_int_equal(ag_encode_sign_tbs(1, ID, kid, HSM_SIG_ECDSA, AG_HASH_SHA256, big,
	    AG_MAX_TBS + 1, &b, &len), HSM_EINVAL);

	/* A hash that is not the RSA algorithm's, an unknown hash or algorithm, bad IDs. */
	assert_int_equal(ag_encode_sign_tbs(1, ID, NULL, HSM_SIG_RSA_PKCS1_SHA256, AG_HASH_SHA384,
	    tbs, 10, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_sign_tbs(1, ID, NULL, HSM_SIG_ECDSA, 0, tbs, 10, &b, &len),
	    HSM_EINVAL);
	assert_int_equal(ag_encode_sign_tbs(1, ID, NULL, HSM_SIG_ECDSA, 4, tbs, 10, &b, &len),
	    HSM_EINVAL);
	assert_int_equal(ag_encode_sign_tbs(1, ID, NULL, 99, AG_HASH_SHA256, tbs, 10, &b, &len),
	    HSM_EINVAL);
	assert_int_equal(ag_encode_sign_tbs(1, "spiffe://x/../y", NULL, HSM_SIG_ECDSA,
	    AG_HASH_SHA256, tbs, 10, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_sign_tbs(1, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, NULL, 10,
	    &b, &len), HSM_EINVAL);
	assert_null(b);
	assert_int_equal(ag_hash_len(AG_HASH_SHA256), 32);
	assert_int_equal(ag_hash_len(AG_HASH_SHA384), 48);
	assert_int_equal(ag_hash_len(AG_HASH_SHA512), 64);
	assert_int_equal(ag_hash_len(0), 0);
}

static void
svid_roundtrip(void **state)
{
	static const char chain[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
	static const char bundle[] = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
	struct ag_svid s = { .not_after = 1795820664ULL };
	struct ag_frame f;
	struct ag_reply r;
	uint8_t *b;
	size_t len;

	snprintf(s.spiffe_id, sizeof(s.spiffe_id), "%s", ID);
	s.chain = (const uint8_t *)chain;
	s.chainlen = strlen(chain);
	s.bundle = (const uint8_t *)bundle;
	s.bundlelen = strlen(bundle);
	assert_int_equal(ag_encode_svid(AG_T_GET_SVID | AG_T_REPLY, 3, &s, &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &(struct ag_request){ 0 }), HSM_EPROTO);
	assert_int_equal(ag_reply_decode(&f, &r), 0);
	assert_int_equal(r.type, AG_T_GET_SVID | AG_T_REPLY);
	assert_int_equal(r.id, 3);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.svid.spiffe_id, ID);
	assert_true(r.svid.not_after == 1795820664ULL);
	assert_int_equal(r.svid.chainlen, strlen(chain));
	assert_memory_equal(r.svid.chain, chain, strlen(chain));
	assert_int_equal(r.svid.bundlelen, strlen(bundle));
	assert_memory_equal(r.svid.bundle, bundle, strlen(bundle));

	/* Every truncation of the body is refused, never over-read. */
	for (size_t cut = 1; cut < len - AG_HDR_LEN; cut++)
		assert_int_equal(decode_cut(b, len, cut, NULL, &r), HSM_EPROTO);
	free(b);

	assert_int_equal(ag_encode_svid(AG_T_UPDATE, 5, &s, &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_reply_decode(&f, &r), 0);
	assert_int_equal(r.type, AG_T_UPDATE);
	free(b);

	/* An empty bundle is allowed, an empty chain or ID is not. */
	s.bundlelen = 0;
	assert_int_equal(ag_encode_svid(AG_T_SUBSCRIBE | AG_T_REPLY, 5, &s, &b, &len), 0);
	free(b);
	s.chainlen = 0;
	assert_int_equal(ag_encode_svid(AG_T_SUBSCRIBE | AG_T_REPLY, 5, &s, &b, &len), HSM_EINVAL);
	s.chainlen = strlen(chain);
	s.spiffe_id[0] = '\0';
	assert_int_equal(ag_encode_svid(AG_T_SUBSCRIBE | AG_T_REPLY, 5, &s, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_svid(AG_T_SIGN | AG_T_REPLY, 5, &s, &b, &len), HSM_EINVAL);
}

static void
sig_and_error_replies(void **state)
{
	uint8_t sig[72] = { 0x30, 0x45 }, *b;
	size_t len;
	struct ag_frame f;
	struct ag_reply r;

	assert_int_equal(ag_encode_sig(4, sig, sizeof(sig), &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_reply_decode(&f, &r), 0);
	assert_int_equal(r.type, AG_T_SIGN_TBS | AG_T_REPLY);
	assert_int_equal(r.siglen, sizeof(sig));
	assert_memory_equal(r.sig, sig, sizeof(sig));
	free(b);
	assert_int_equal(ag_encode_sig(4, sig, 0, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_sig(4, sig, HSM_MAX_SIG + 1, &b, &len), HSM_EINVAL);

	assert_int_equal(ag_encode_error(AG_T_GET_SVID | AG_T_REPLY, 6, HSM_EPERM,
	    "uid 5 may not\nuse this", &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_reply_decode(&f, &r), 0);
	assert_int_equal(r.status, HSM_EPERM);
	assert_string_equal(r.errtext, "uid 5 may not?use this");	/* control bytes neutralised */
	free(b);
	assert_int_equal(ag_encode_error(AG_T_GET_SVID | AG_T_REPLY, 6, 0, NULL, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_error(AG_T_GET_SVID | AG_T_REPLY, 6, -1000, NULL, &b, &len),
	    HSM_EINVAL);
	assert_int_equal(ag_encode_error(AG_T_GET_SVID, 6, HSM_EPERM, NULL, &b, &len), HSM_EINVAL);
	/* The refusal of an old SIGN is a SIGN reply. */
	assert_int_equal(ag_encode_error(AG_T_SIGN | AG_T_REPLY, 6, HSM_EUNSUPPORTED,
	    "digest signing is no longer offered", &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_reply_decode(&f, &r), 0);
	assert_int_equal(r.type, AG_T_SIGN | AG_T_REPLY);
	assert_int_equal(r.status, HSM_EUNSUPPORTED);
	free(b);
}

static void
crl_frames(void **state)
{
	uint8_t der[300], *b;
	size_t len;
	struct ag_frame f;
	struct ag_request q;
	struct ag_reply r;

	memset(der, 0x5a, sizeof(der));
	/* CRL_SUBSCRIBE: an empty body, and nothing else. */
	assert_int_equal(ag_encode_crl_subscribe(9, &b, &len), 0);
	assert_int_equal(len, AG_HDR_LEN);
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &q), 0);
	assert_int_equal(q.type, AG_T_CRL_SUBSCRIBE);
	assert_int_equal(q.id, 9);
	free(b);
	/* Its reply: no CRL yet, or one. */
	assert_int_equal(ag_encode_crl(AG_T_CRL_SUBSCRIBE | AG_T_REPLY, 9, NULL, 0, &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_reply_decode(&f, &r), 0);
	assert_int_equal(r.crllen, 0);
	assert_null(r.crl);
	free(b);
	assert_int_equal(ag_encode_crl(AG_T_CRL, 9, der, sizeof(der), &b, &len), 0);
	parse_one(b, len, &f);
	assert_int_equal(ag_reply_decode(&f, &r), 0);
	assert_int_equal(r.type, AG_T_CRL);
	assert_int_equal(r.id, 9);
	assert_int_equal(r.crllen, sizeof(der));
	assert_memory_equal(r.crl, der, sizeof(der));
	/* A length that does not match the body, a cut body: refused. */
	assert_int_equal(decode_cut(b, len, 1, NULL, &r), HSM_EPROTO);
	hsm_put32(b + AG_HDR_LEN + 4, sizeof(der) + 1);
	parse_one(b, len, &f);
	assert_int_equal(ag_reply_decode(&f, &r), HSM_EPROTO);
	/* A push is never an error. */
	hsm_put32(b + AG_HDR_LEN + 4, sizeof(der));
	hsm_put32(b + AG_HDR_LEN, (uint32_t)HSM_EPERM);
	parse_one(b, len, &f);
	assert_int_equal(ag_reply_decode(&f, &r), HSM_EPROTO);
	free(b);
	/* An empty push, an oversized CRL, a body on the request: refused. */
	assert_int_equal(ag_encode_crl(AG_T_CRL, 9, NULL, 0, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_crl(AG_T_CRL, 9, der, AG_MAX_CRL + 1, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_crl(AG_T_GET_SVID | AG_T_REPLY, 9, der, 1, &b, &len), HSM_EINVAL);
	assert_int_equal(ag_encode_get(AG_T_GET_SVID, 3, ID, &b, &len), 0);
	b[5] = AG_T_CRL_SUBSCRIBE;
	parse_one(b, len, &f);
	assert_int_equal(ag_request_decode(&f, &q), HSM_EPROTO);
	free(b);
}

static void
bad_headers(void **state)
{
	uint8_t b[64] = { 0 };
	struct ag_frame f;

	assert_int_equal(ag_frame_parse(b, 3, &f), 0);		/* incomplete length */
	hsm_put32(b, 7);						/* shorter than a header */
	assert_int_equal(ag_frame_parse(b, 12, &f), HSM_EPROTO);
	hsm_put32(b, AG_MAX_FRAME - 3);				/* too long */
	assert_int_equal(ag_frame_parse(b, 12, &f), HSM_EPROTO);
	hsm_put32(b, 8);
	b[4] = 2;						/* version */
	assert_int_equal(ag_frame_parse(b, 5, &f), HSM_EPROTO);
	b[4] = AG_VERSION;
	b[5] = AG_T_GET_SVID;
	b[7] = 1;						/* reserved */
	assert_int_equal(ag_frame_parse(b, 12, &f), HSM_EPROTO);
	b[7] = 0;
	assert_int_equal(ag_frame_parse(b, 11, &f), 0);		/* incomplete frame */
	assert_int_equal(ag_frame_parse(b, 12, &f), 12);
}

/* Build a request frame around body and decode it. */
static int
decode_body(uint8_t type, const void *body, size_t n)
{
	uint8_t buf[4096];
	struct ag_frame f;
	struct ag_request r;

	hsm_put32(buf, (uint32_t)(AG_HDR_LEN - 4 + n));
	buf[4] = AG_VERSION;
	buf[5] = type;
	buf[6] = buf[7] = 0;
	hsm_put32(buf + 8, 1);
	memcpy(buf + AG_HDR_LEN, body, n);
	assert_int_equal(ag_frame_parse(buf, AG_HDR_LEN + n, &f), (int)(AG_HDR_LEN + n));
	return ag_request_decode(&f, &r);
}

static void
bad_requests(void **state)
{
	uint8_t sign[2 + 24 + 2 + 32 + HSM_KEYID_LEN + 1];
	static const char id[] = "spiffe://example.org/web";
	const size_t plain = 2 + 24 + 2 + 32;		/* without a key id */
	struct ag_request r;
	uint8_t *b;
	size_t len;

	assert_int_equal(decode_body(AG_T_UPDATE, "", 0), HSM_EPROTO);	/* not a request */
	assert_int_equal(decode_body(0x81, "", 0), HSM_EPROTO);
	assert_int_equal(decode_body(99, "", 0), HSM_EPROTO);
	assert_int_equal(decode_body(AG_T_GET_SVID, "spiffe://example.org/a/../b", 27), HSM_EPROTO);
	assert_int_equal(decode_body(AG_T_GET_SVID, "spiffe://example.org/a\0b", 24), HSM_EPROTO);
	assert_int_equal(decode_body(AG_T_GET_SVID, "http://example.org/a", 20), HSM_EPROTO);

	sign[0] = 0;
	sign[1] = 24;
	memcpy(sign + 2, id, 24);
	sign[26] = HSM_SIG_ECDSA;
	sign[27] = 32;
	memset(sign + 28, 7, 32);
	memset(sign + plain, 0xee, HSM_KEYID_LEN + 1);
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain), 0);
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain - 1), HSM_EPROTO);
	assert_int_equal(decode_body(AG_T_SIGN, sign, 27), HSM_EPROTO);
	assert_int_equal(decode_body(AG_T_SIGN, sign, 1), HSM_EPROTO);
	/* After the digest: nothing or exactly a key id; a cut or longer one is refused. */
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain + HSM_KEYID_LEN), 0);
	for (size_t n = 1; n <= HSM_KEYID_LEN + 1; n++)
		if (n != HSM_KEYID_LEN)
			assert_int_equal(decode_body(AG_T_SIGN, sign, plain + n), HSM_EPROTO);
	sign[1] = 200;					/* ID length beyond the body */
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain), HSM_EPROTO);
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain + HSM_KEYID_LEN), HSM_EPROTO);
	sign[1] = 24;
	sign[27] = 33;					/* digest length beyond the body */
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain), HSM_EPROTO);
	sign[27] = 48;					/* leaves 16 bytes of key id */
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain + HSM_KEYID_LEN), HSM_EPROTO);
	sign[27] = 64;					/* the whole key id read as digest */
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain + HSM_KEYID_LEN), 0);
	sign[27] = 32;
	sign[26] = HSM_SIG_RSA_PKCS1_SHA384;		/* wants 48 bytes */
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain), HSM_EPROTO);
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain + HSM_KEYID_LEN), HSM_EPROTO);
	sign[26] = 0;
	assert_int_equal(decode_body(AG_T_SIGN, sign, plain + HSM_KEYID_LEN), HSM_EPROTO);
	sign[26] = HSM_SIG_ECDSA;

	/* SIGN_TBS: every length against what is left. */
	{
		uint8_t t[2 + 24 + 3 + HSM_KEYID_LEN + 4 + 8];
		const size_t nokey = 2 + 24 + 3 + 4 + 8;

		memcpy(t, sign, 26);
		t[26] = HSM_SIG_ECDSA;
		t[27] = AG_HASH_SHA256;
		t[28] = 0;
		hsm_put32(t + 29, 8);
		memset(t + 33, 0x20, 8);
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), 0);
		hsm_put32(t + 29, 9);				/* data longer than the body */
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), HSM_EPROTO);
		hsm_put32(t + 29, 7);				/* shorter: a trailing byte */
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), HSM_EPROTO);
		hsm_put32(t + 29, 0xffffffffu);
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), HSM_EPROTO);
		hsm_put32(t + 29, 8);
		t[28] = 16;					/* a key id of another length */
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), HSM_EPROTO);
		t[28] = HSM_KEYID_LEN;				/* announced, not there */
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), HSM_EPROTO);
		t[28] = 0;
		t[27] = 0;					/* no hash */
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), HSM_EPROTO);
		t[27] = AG_HASH_SHA512;
		t[26] = HSM_SIG_RSA_PSS_SHA256;			/* not the algorithm's hash */
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), HSM_EPROTO);
		t[26] = HSM_SIG_RSA_PSS_SHA512;
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), 0);
		t[1] = 200;					/* ID beyond the body */
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, nokey), HSM_EPROTO);
		assert_int_equal(decode_body(AG_T_SIGN_TBS, t, 1), HSM_EPROTO);
	}

	/* Every truncation of a SIGN with a key id is refused, never over-read. */
	assert_int_equal(ag_encode_sign(3, id, sign + plain, HSM_SIG_ECDSA, sign + 28, 32, &b,
	    &len), 0);
	for (size_t cut = 1; cut < len - AG_HDR_LEN; cut++) {
		/* Cutting exactly the key id leaves the old, valid frame. */
		assert_int_equal(decode_cut(b, len, cut, &r, NULL),
		    cut == HSM_KEYID_LEN ? 0 : HSM_EPROTO);
		if (cut == HSM_KEYID_LEN)
			assert_false(r.has_keyid);
	}
	free(b);
}

static void
bad_replies(void **state)
{
	uint8_t buf[64];
	struct ag_frame f;
	struct ag_reply r;

	memset(buf, 0, sizeof(buf));
	hsm_put32(buf, AG_HDR_LEN - 4 + 4);
	buf[4] = AG_VERSION;
	buf[5] = AG_T_GET_SVID | AG_T_REPLY;
	hsm_put32(buf + AG_HDR_LEN, 1000);			/* status outside HSM_E* */
	parse_one(buf, AG_HDR_LEN + 4, &f);
	assert_int_equal(ag_reply_decode(&f, &r), HSM_EPROTO);
	hsm_put32(buf + AG_HDR_LEN, 0);			/* ok but no SVID */
	assert_int_equal(ag_reply_decode(&f, &r), HSM_EPROTO);
	buf[5] = AG_T_SIGN | AG_T_REPLY;		/* ok but no signature */
	parse_one(buf, AG_HDR_LEN + 4, &f);
	assert_int_equal(ag_reply_decode(&f, &r), HSM_EPROTO);
	buf[5] = AG_T_SIGN_TBS | AG_T_REPLY;
	parse_one(buf, AG_HDR_LEN + 4, &f);
	assert_int_equal(ag_reply_decode(&f, &r), HSM_EPROTO);
	buf[5] = AG_T_GET_SVID;				/* a request is not a reply */
	parse_one(buf, AG_HDR_LEN + 4, &f);
	assert_int_equal(ag_reply_decode(&f, &r), HSM_EPROTO);
	buf[5] = 0x80 | 9;
	parse_one(buf, AG_HDR_LEN + 4, &f);
	assert_int_equal(ag_reply_decode(&f, &r), HSM_EPROTO);
	hsm_put32(buf, AG_HDR_LEN - 4 + 2);			/* shorter than a status */
	buf[5] = AG_T_SIGN | AG_T_REPLY;
	parse_one(buf, AG_HDR_LEN + 2, &f);
	assert_int_equal(ag_reply_decode(&f, &r), HSM_EPROTO);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(get_roundtrip),
		cmocka_unit_test(sign_roundtrip),
		cmocka_unit_test(sign_tbs_roundtrip),
		cmocka_unit_test(svid_roundtrip),
		cmocka_unit_test(sig_and_error_replies),
		cmocka_unit_test(crl_frames),
		cmocka_unit_test(bad_headers),
		cmocka_unit_test(bad_requests),
		cmocka_unit_test(bad_replies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
