/*
 * agentproto.h - the agent's local API wire format (docs/AGENT.md).
 *
 * Proxies (and any local client) talk to `hsmesh agent` over a Unix stream
 * socket. Every message is one frame; all integers are big-endian:
 *
 *   u32 len      bytes after this field, AG_HDR_LEN-4 .. AG_MAX_FRAME-4
 *   u8  version  AG_VERSION
 *   u8  type     request type (AG_T_*), the same type | AG_T_REPLY, or AG_T_UPDATE
 *   u16 zero     reserved, must be 0
 *   u32 id       chosen by the client, echoed in the reply (and in UPDATEs
 *                pushed for a SUBSCRIBE: the SUBSCRIBE's id)
 *   ...body      per type, exact lengths below
 *
 * Request bodies:
 *   GET_SVID, SUBSCRIBE  SPIFFE ID (0..SPIFFE_ID_MAX bytes, no NUL); empty =
 *                        the only ID the caller's uid may use
 *   SIGN                 u16 idlen, SPIFFE ID[idlen] (may be empty, as above),
 *                        u8 alg (enum hsm_sigalg), u8 dlen, digest[dlen],
 *                        optionally key id[HSM_KEYID_LEN]: the SHA-256 of the
 *                        SubjectPublicKeyInfo of the certificate the
 *                        signature is for (the body ends exactly after the
 *                        digest or after the key id; without one the agent
 *                        signs with the ID's current key)
 * Reply and UPDATE bodies start with u32 status, a negated HSM_E* code
 * (0 = ok). When status is not 0 the rest is an error text (0..255 bytes,
 * not NUL-terminated). When it is 0:
 *   GET_SVID, SUBSCRIBE replies and UPDATE:
 *                        u16 idlen, SPIFFE ID[idlen] (1..SPIFFE_ID_MAX),
 *                        u64 not_after (Unix seconds),
 *                        u32 chainlen, chain PEM (1..AG_MAX_PEM): leaf first,
 *                        u32 bundlelen, bundle PEM (0..AG_MAX_PEM): trusted CAs
 *   SIGN reply:          signature (1..HSM_MAX_SIG; DER ECDSA-Sig-Value or
 *                        the raw RSA signature)
 *
 * These functions are pure (no I/O) and distrust every byte.
 */
#ifndef HSM_AGENTPROTO_H
#define HSM_AGENTPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "keytypes.h"
#include "spiffe.h"

#define AG_VERSION 1
#define AG_HDR_LEN 12
#define AG_MAX_PEM (96 * 1024)
#define AG_MAX_FRAME (256 * 1024)
#define AG_MAX_ERRTEXT 255

enum ag_type {
	AG_T_GET_SVID = 1,
	AG_T_SUBSCRIBE = 2,
	AG_T_SIGN = 3,
	AG_T_UPDATE = 4,	/* agent -> client, unsolicited, after a SUBSCRIBE */
	AG_T_REPLY = 0x80,
};

/* A frame header; body points into the caller's buffer. */
struct ag_frame {
	uint8_t type;
	uint32_t id;
	const uint8_t *body;
	size_t bodylen;
};

/* A decoded, validated request (copies: independent of the frame buffer). */
struct ag_request {
	uint8_t type;
	uint32_t id;
	char spiffe_id[SPIFFE_ID_MAX + 1];	/* "" = the caller's only ID */
	uint8_t alg;				/* SIGN */
	uint8_t digest[64];			/* SIGN */
	size_t dlen;
	int has_keyid;				/* SIGN: keyid names the key */
	uint8_t keyid[HSM_KEYID_LEN];
};

/* An SVID as carried by replies and UPDATEs. Pointers into the frame buffer when decoded. */
struct ag_svid {
	char spiffe_id[SPIFFE_ID_MAX + 1];
	uint64_t not_after;
	const uint8_t *chain;
	size_t chainlen;
	const uint8_t *bundle;
	size_t bundlelen;
};

/* A decoded reply or UPDATE. */
struct ag_reply {
	uint8_t type;			/* request type | AG_T_REPLY, or AG_T_UPDATE */
	uint32_t id;
	int status;			/* 0 or a HSM_E* code */
	char errtext[AG_MAX_ERRTEXT + 1];	/* status != 0; non-printables replaced by '?' */
	struct ag_svid svid;		/* GET_SVID/SUBSCRIBE replies, UPDATE */
	const uint8_t *sig;		/* SIGN reply */
	size_t siglen;
};

/*
 * Split one frame off the front of buf. Returns the frame's total length
 * (> 0) and fills *f; 0 when buf holds an incomplete frame so far;
 * HSM_EPROTO when the header is invalid (length out of range, bad version,
 * nonzero reserved field). Never reads past len.
 */
int ag_frame_parse(const uint8_t *buf, size_t len, struct ag_frame *f);

/*
 * Validate a request frame: known request type, exact body length (for
 * SIGN: with or without the key id, nothing else), a well-formed SPIFFE ID
 * when one is given, known algorithm, digest length allowed for the
 * algorithm. 0 or HSM_EPROTO. *r is cleared on entry.
 */
int ag_request_decode(const struct ag_frame *f, struct ag_request *r);

/*
 * Validate a reply or UPDATE frame (what a client receives). 0 or
 * HSM_EPROTO. Pointers in *r point into f's buffer.
 */
int ag_reply_decode(const struct ag_frame *f, struct ag_reply *r);

/*
 * Encoders. Each builds one whole frame in a malloc'd buffer (*out, *len;
 * caller frees). 0, HSM_EINVAL (a field out of range: the frame would not
 * decode) or HSM_ENOMEM. spiffe_id may be NULL or "" where empty is allowed.
 * They use little stack (the SIGN encoder runs inside OpenSSL async jobs,
 * whose stack is 32 KB).
 */
/* GET_SVID or SUBSCRIBE request. */
int ag_encode_get(uint8_t type, uint32_t id, const char *spiffe_id, uint8_t **out, size_t *len);
/* SIGN request; keyid (HSM_KEYID_LEN bytes) names the key, NULL = the current one. */
int ag_encode_sign(uint32_t id, const char *spiffe_id, const uint8_t *keyid, uint8_t alg,
    const uint8_t *dgst, size_t dlen, uint8_t **out, size_t *len);
/* Successful GET_SVID/SUBSCRIBE reply (type = req | AG_T_REPLY) or AG_T_UPDATE. */
int ag_encode_svid(uint8_t type, uint32_t id, const struct ag_svid *s, uint8_t **out, size_t *len);
/* Successful SIGN reply. */
int ag_encode_sig(uint32_t id, const uint8_t *sig, size_t siglen, uint8_t **out, size_t *len);
/* Failed reply (status < 0); text may be NULL and is cut at AG_MAX_ERRTEXT bytes. */
int ag_encode_error(uint8_t type, uint32_t id, int status, const char *text, uint8_t **out,
    size_t *len);

#endif
