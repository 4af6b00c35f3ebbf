/*
 * agentproto.h - the agent's local API wire format (docs/AGENT.md).
 *
 * Proxies (and any local client) talk to `hsmesh agent` over a Unix stream
 * socket. Every message is one frame; all integers are big-endian:
 *
 *   u32 len      bytes after this field, AG_HDR_LEN-4 .. AG_MAX_FRAME-4
 *   u8  version  AG_VERSION
 *   u8  type     request type (AG_T_*), the same type | AG_T_REPLY, AG_T_UPDATE or AG_T_CRL
 *   u16 zero     reserved, must be 0
 *   u32 id       chosen by the client, echoed in the reply (and in UPDATEs
 *                pushed for a SUBSCRIBE: the SUBSCRIBE's id)
 *   ...body      per type, exact lengths below
 *
 * Request bodies:
 *   GET_SVID, SUBSCRIBE  SPIFFE ID (0..SPIFFE_ID_MAX bytes, no NUL); empty =
 *                        the only ID the caller's uid may use
 *   SIGN_TBS             u16 idlen, SPIFFE ID[idlen] (may be empty, as above),
 *                        u8 alg (enum hsm_sigalg), u8 hash (enum ag_hash; for
 *                        RSA the algorithm's own), u8 keyidlen (0 or
 *                        HSM_KEYID_LEN), key id[keyidlen]: the SHA-256 of the
 *                        SubjectPublicKeyInfo of the certificate the signature
 *                        is for (none: the ID's current key), u32 tbslen
 *                        (0..AG_MAX_TBS), tbs[tbslen]: the whole data to sign,
 *                        which the agent hashes; the body ends exactly there.
 *                        The agent signs only TLS handshake signature inputs
 *                        (tlssig.h).
 *   SIGN                 (before SIGN_TBS; decoded so that old clients get a
 *                        clear refusal) u16 idlen, SPIFFE ID[idlen], u8 alg,
 *                        u8 dlen, digest[dlen], optionally key id
 *                        [HSM_KEYID_LEN]: the body ends exactly after the
 *                        digest or after the key id
 * Reply and UPDATE bodies start with u32 status, a negated HSM_E* code
 * (0 = ok). When status is not 0 the rest is an error text (0..255 bytes,
 * not NUL-terminated). When it is 0:
 *   GET_SVID, SUBSCRIBE replies and UPDATE:
 *                        u16 idlen, SPIFFE ID[idlen] (1..SPIFFE_ID_MAX),
 *                        u64 not_after (Unix seconds),
 *                        u32 chainlen, chain PEM (1..AG_MAX_PEM): leaf first,
 *                        u32 bundlelen, bundle PEM (0..AG_MAX_PEM): trusted CAs
 *   SIGN_TBS reply:      signature (1..HSM_MAX_SIG; DER ECDSA-Sig-Value or
 *                        the raw RSA signature); a SIGN reply is always an
 *                        error
 *   CRL_SUBSCRIBE reply and CRL push:
 *                        u32 crllen, CRL DER[crllen] (0..AG_MAX_CRL; 0 only in
 *                        the reply: the agent holds no CRL yet); the body ends
 *                        there. A CRL push always has status 0.
 * CRL_SUBSCRIBE has an empty body: the agent answers with the CRL it holds
 * and pushes AG_T_CRL (with the CRL_SUBSCRIBE's id) whenever it installs a
 * newer one. An agent older than CRL_SUBSCRIBE closes the connection as
 * malformed: a client subscribes on a connection of its own.
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
#define AG_MAX_CRL (240 * 1024)	/* CRL_MAX_DER: a CRL's DER in one frame */
#define AG_MAX_TBS (64 * 1024)	/* TLSSIG_MAX_TBS: a TLS 1.2 transcript with two chains */
/* The longest request: a SIGN_TBS with the longest ID, a key id and AG_MAX_TBS bytes. */
#define AG_MAX_REQUEST (AG_HDR_LEN + 2 + SPIFFE_ID_MAX + 3 + HSM_KEYID_LEN + 4 + AG_MAX_TBS)

enum ag_type {
	AG_T_GET_SVID = 1,
	AG_T_SUBSCRIBE = 2,
	AG_T_SIGN = 3,
	AG_T_UPDATE = 4,	/* agent -> client, unsolicited, after a SUBSCRIBE */
	AG_T_SIGN_TBS = 5,
	AG_T_CRL_SUBSCRIBE = 6,	/* client -> agent: the CRL now and at every change */
	AG_T_CRL = 7,		/* agent -> client, unsolicited, after a CRL_SUBSCRIBE */
	AG_T_REPLY = 0x80,
};

/* The hash a SIGN_TBS names (the agent hashes the data with it). */
enum ag_hash {
	AG_HASH_SHA256 = 1,
	AG_HASH_SHA384 = 2,
	AG_HASH_SHA512 = 3,
};

/* A frame header; body points into the caller's buffer. */
struct ag_frame {
	uint8_t type;
	uint32_t id;
	const uint8_t *body;
	size_t bodylen;
};

/* A decoded, validated request (copies, but for tbs: it points into the frame). */
struct ag_request {
	uint8_t type;
	uint32_t id;
	char spiffe_id[SPIFFE_ID_MAX + 1];	/* "" = the caller's only ID */
	uint8_t alg;				/* SIGN, SIGN_TBS */
	uint8_t digest[64];			/* SIGN */
	size_t dlen;
	uint8_t hash;				/* SIGN_TBS: enum ag_hash */
	const uint8_t *tbs;			/* SIGN_TBS: into the frame's buffer */
	size_t tbslen;
	int has_keyid;				/* SIGN, SIGN_TBS: keyid names the key */
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
	const uint8_t *sig;		/* SIGN_TBS reply */
	size_t siglen;
	const uint8_t *crl;		/* CRL_SUBSCRIBE reply, CRL push: DER, NULL when none */
	size_t crllen;
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
 * algorithm; for SIGN_TBS a known hash (the RSA algorithm's own), a key id
 * length of 0 or HSM_KEYID_LEN and at most AG_MAX_TBS bytes to sign (what
 * they are is the agent's to judge). 0 or HSM_EPROTO. *r is cleared on
 * entry; r->tbs points into f's buffer.
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
/*
 * SIGN_TBS request; keyid (HSM_KEYID_LEN bytes) names the key, NULL = the
 * current one; tbs may be NULL when tbslen is 0.
 */
int ag_encode_sign_tbs(uint32_t id, const char *spiffe_id, const uint8_t *keyid, uint8_t alg,
    uint8_t hash, const uint8_t *tbs, size_t tbslen, uint8_t **out, size_t *len);
/* The old SIGN request of a digest (tests, and clients older than SIGN_TBS). */
int ag_encode_sign(uint32_t id, const char *spiffe_id, const uint8_t *keyid, uint8_t alg,
    const uint8_t *dgst, size_t dlen, uint8_t **out, size_t *len);
/* The digest length of an enum ag_hash, or 0 for an unknown one. */
size_t ag_hash_len(int hash);
/* Successful GET_SVID/SUBSCRIBE reply (type = req | AG_T_REPLY) or AG_T_UPDATE. */
int ag_encode_svid(uint8_t type, uint32_t id, const struct ag_svid *s, uint8_t **out, size_t *len);
/* CRL_SUBSCRIBE request (empty body). */
int ag_encode_crl_subscribe(uint32_t id, uint8_t **out, size_t *len);
/*
 * Successful CRL_SUBSCRIBE reply (type AG_T_CRL_SUBSCRIBE | AG_T_REPLY;
 * derlen 0: no CRL yet) or AG_T_CRL push (derlen 1..AG_MAX_CRL).
 */
int ag_encode_crl(uint8_t type, uint32_t id, const uint8_t *der, size_t derlen, uint8_t **out,
    size_t *len);
/* Successful SIGN_TBS reply. */
int ag_encode_sig(uint32_t id, const uint8_t *sig, size_t siglen, uint8_t **out, size_t *len);
/* Failed reply (status < 0); text may be NULL and is cut at AG_MAX_ERRTEXT bytes. */
int ag_encode_error(uint8_t type, uint32_t id, int status, const char *text, uint8_t **out,
    size_t *len);

#endif
