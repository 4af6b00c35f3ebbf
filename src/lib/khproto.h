/*
 * khproto.h - the keyholder wire protocol (docs/PROTOCOL.md).
 *
 * Every message is one frame; all integers are big-endian:
 *
 *   u32 len      bytes after this field, KH_HDR_LEN-4 .. KH_MAX_FRAME-4
 *   u8  version  KH_VERSION
 *   u8  type     request type (KH_T_*), or the same type | KH_T_REPLY
 *   u16 zero     reserved, must be 0
 *   u32 id       chosen by the client, echoed in the reply
 *   u32 arg      request: deadline in ms from now (1..KH_MAX_DEADLINE_MS)
 *                reply: status, a negated HSM_E* code as u32 (0 = ok)
 *   ...body      per type, exact lengths below
 *
 * Request bodies:
 *   GENERATE  u8 keytype, u8 label_len (0..64), label [, u8 flags (HSM_GEN_*)]
 *   PUBKEY    keyid[32]
 *   SIGN      keyid[32], u8 alg, u8 dlen (20..64), digest[dlen]
 *   DESTROY   keyid[32]
 *   FIND      u8 label_len (1..64), label
 *   PING      empty
 *   ATTRS     keyid[32]
 *   UNWRAPPING_KEY  u8 label_len (1..64), label
 *   WRAP      keyid[32], target SPKI DER (1..HSM_MAX_SPKI)
 *   UNWRAP    keyid[32] (the unwrapping key), u8 oaep (1 SHA-1, 2 SHA-256),
 *             u16 tlen (1..HSM_TRANSPORT_MAX), transport[tlen], u16 spkilen
 *             (1..HSM_MAX_SPKI), spki[spkilen] (the wrapped key's public half),
 *             u8 label_len (0..64), label, wrapped key (16..HSM_WRAPPED_MAX: the rest)
 *   LIST      after[32], u8 prefix_len (1..64), prefix
 *   POOL      empty
 * Reply bodies when status is 0:
 *   GENERATE, FIND, UNWRAPPING_KEY: keyid[32], spki DER (1..HSM_MAX_SPKI)
 *   PUBKEY: spki DER;  SIGN: signature (1..HSM_MAX_SIG);  DESTROY, PING: empty
 *   ATTRS: u8 flags (KH_ATTR_*: the private key's security attributes)
 *   WRAP: u8 oaep, u16 tlen, transport[tlen], wrapped key (the rest)
 *   UNWRAP: keyid[32] of the key unwrapped
 *   LIST: entries { keyid[32], u8 label_len (1..64), label }, key ids
 *         increasing and above after; at most KH_LIST_MAX; none: no more
 *   POOL: u16 sessions (performers now), u16 min, u16 max, u16 open (token
 *         sessions open now), u16 cap (a serial token's useful concurrency,
 *         0: none), u16 zero, u32 latency_us (mean signature time on the
 *         token in the last measured interval), u32 base_us (least seen)
 * Reply body when status is not 0: an error text (0..255 bytes, not NUL-terminated).
 *
 * These functions are pure (no I/O) and distrust every byte.
 */
#ifndef HSM_KHPROTO_H
#define HSM_KHPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "keytypes.h"

#define KH_VERSION 1
#define KH_HDR_LEN 16
#define KH_MAX_FRAME 4096
#define KH_MAX_DEADLINE_MS 600000u
#define KH_MAX_ERRTEXT 255

enum kh_type {
	KH_T_GENERATE = 1,
	KH_T_PUBKEY = 2,
	KH_T_SIGN = 3,
	KH_T_DESTROY = 4,
	KH_T_FIND = 5,
	KH_T_PING = 6,
	KH_T_ATTRS = 7,
	KH_T_LIST = 8,
	/* replication (docs/REPLICAS.md); 10 and up, beside the types of 1..9 */
	KH_T_UNWRAPPING_KEY = 10,
	KH_T_WRAP = 11,
	KH_T_UNWRAP = 12,
	KH_T_POOL = 20,		/* the token session pool's size */
	KH_T_REPLY = 0x80,
};

/*
 * LIST: the private keys whose label starts with a prefix, one page at a
 * time (the next request names the last key id seen as "after"). A page of
 * KH_LIST_MAX entries with the longest labels fits one frame.
 */
#define KH_LIST_MAX 42
#define KH_LIST_ENTRY_MAX (HSM_KEYID_LEN + 1 + HSM_MAX_LABEL)

/*
 * The ATTRS reply byte: the token's security attributes of a private key
 * (a bit is set when the attribute is CK_TRUE; an attribute the token
 * does not report reads as false). Bit 7 is 0.
 */
#define KH_ATTR_SENSITIVE		0x01	/* CKA_SENSITIVE */
#define KH_ATTR_ALWAYS_SENSITIVE	0x02	/* CKA_ALWAYS_SENSITIVE */
#define KH_ATTR_EXTRACTABLE		0x04	/* CKA_EXTRACTABLE */
#define KH_ATTR_NEVER_EXTRACTABLE	0x08	/* CKA_NEVER_EXTRACTABLE */
#define KH_ATTR_TOKEN			0x10	/* CKA_TOKEN */
#define KH_ATTR_PRIVATE			0x20	/* CKA_PRIVATE */
#define KH_ATTR_WRAP_WITH_TRUSTED	0x40	/* CKA_WRAP_WITH_TRUSTED */
#define KH_ATTR_ALL			0x7f

/* A decoded frame header; body points into the caller's buffer. */
struct kh_frame {
	uint8_t type;
	uint32_t id;
	uint32_t arg;
	const uint8_t *body;
	size_t bodylen;
};

/* A decoded, validated request. Pointers point into the frame's buffer. */
struct kh_request {
	uint8_t type;
	uint32_t id;
	uint32_t deadline_ms;
	uint8_t keytype;			/* GENERATE */
	uint8_t genflags;			/* GENERATE: HSM_GEN_* (0 when absent) */
	char label[HSM_MAX_LABEL + 1];		/* GENERATE, FIND, UNWRAPPING_KEY, UNWRAP; LIST: the prefix */
	uint8_t keyid[HSM_KEYID_LEN];		/* PUBKEY, SIGN, DESTROY, ATTRS, WRAP, UNWRAP; LIST: after */
	uint8_t alg;				/* SIGN */
	uint8_t digest[64];			/* SIGN */
	size_t dlen;
	uint8_t spki[HSM_MAX_SPKI];		/* WRAP: the target's; UNWRAP: the wrapped key's */
	size_t spkilen;
	struct hsm_wrapped wrapped;		/* UNWRAP */
};

/*
 * Split one frame off the front of buf. Returns the frame's total length
 * (> 0) and fills *f; 0 when buf holds an incomplete frame; HSM_EPROTO
 * when the header is invalid (length out of range, bad version, nonzero
 * reserved field). Never reads past len.
 */
int kh_frame_parse(const uint8_t *buf, size_t len, struct kh_frame *f);

/*
 * Validate a request frame: known type, exact body length, label bytes
 * printable ASCII, deadline in range, key type and algorithm known,
 * digest length allowed for the algorithm. 0 or HSM_EPROTO.
 */
int kh_request_decode(const struct kh_frame *f, struct kh_request *r);

/* One entry of a LIST reply. */
struct kh_list_entry {
	uint8_t keyid[HSM_KEYID_LEN];
	char label[HSM_MAX_LABEL + 1];
};

/*
 * Split a LIST reply body into at most KH_LIST_MAX entries (out holds
 * that many), checking each (label 1..64 printable bytes starting with
 * prefix, key ids strictly increasing and above after). *n how many (0:
 * the list is complete). 0 or HSM_EPROTO.
 */
int kh_list_parse(const uint8_t *body, size_t len, const uint8_t after[HSM_KEYID_LEN],
    const char *prefix, struct kh_list_entry *out, size_t *n);
/* The body of a LIST reply for n entries into out (cap bytes): its length, or HSM_EINVAL. */
int kh_list_encode(const struct kh_list_entry *e, size_t n, uint8_t *out, size_t cap);

/* A POOL reply (see the top of this file). */
#define KH_POOL_LEN 20
struct kh_pool {
	uint16_t sessions, min, max, open, cap;
	uint32_t latency_us, base_us;
};
/* Encode p into out. */
void kh_pool_encode(const struct kh_pool *p, uint8_t out[KH_POOL_LEN]);
/* Decode a POOL reply body: exactly KH_POOL_LEN bytes, reserved zero, min <= max. 0 or HSM_EPROTO. */
int kh_pool_parse(const uint8_t *body, size_t len, struct kh_pool *p);

/*
 * Encode a frame into out (capacity cap). Returns the total length or
 * HSM_EINVAL when it would not fit KH_MAX_FRAME or cap. body may be NULL
 * when bodylen is 0; body2 is appended after body (may be NULL).
 */
int kh_frame_encode(uint8_t *out, size_t cap, uint8_t type, uint32_t id, uint32_t arg,
    const uint8_t *body, size_t bodylen, const uint8_t *body2, size_t body2len);
/* A successful reply (status 0) whose body is b1 ‖ b2 ‖ b3 (each may be empty). */
int kh_frame_encode3(uint8_t *out, size_t cap, uint8_t type, uint32_t id, const uint8_t *b1,
    size_t l1, const uint8_t *b2, size_t l2, const uint8_t *b3, size_t l3);

#endif
