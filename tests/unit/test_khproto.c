/* test_khproto.c - the keyholder frame parser distrusts every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "khproto.h"

static int
enc(uint8_t *buf, uint8_t type, uint32_t arg, const void *body, size_t len)
{
	return kh_frame_encode(buf, KH_MAX_FRAME, type, 7, arg, body, len, NULL, 0);
}

static void
roundtrip_sign(void **state)
{
	uint8_t buf[KH_MAX_FRAME], body[32 + 2 + 32];
	struct kh_frame f;
	struct kh_request r;
	int n;

	memset(body, 0xab, 32);
	body[32] = HSM_SIG_ECDSA;
	body[33] = 32;
	memset(body + 34, 0x11, 32);
	n = enc(buf, KH_T_SIGN, 1000, body, sizeof(body));
	assert_int_equal(n, KH_HDR_LEN + sizeof(body));
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), n);
	assert_int_equal(f.id, 7);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_int_equal(r.alg, HSM_SIG_ECDSA);
	assert_int_equal(r.dlen, 32);
	assert_int_equal(r.deadline_ms, 1000);
	assert_memory_equal(r.digest, body + 34, 32);
}

/* ATTRS names a key by its id, like PUBKEY. */
static void
attrs_request(void **state)
{
	uint8_t buf[KH_MAX_FRAME], id[HSM_KEYID_LEN];
	struct kh_frame f;
	struct kh_request r;
	int n;

	memset(id, 0x5c, sizeof(id));
	n = enc(buf, KH_T_ATTRS, 250, id, sizeof(id));
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), n);
	assert_int_equal(f.type, KH_T_ATTRS);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_int_equal(r.type, KH_T_ATTRS);
	assert_int_equal(r.deadline_ms, 250);
	assert_memory_equal(r.keyid, id, sizeof(id));
	/* the reply's flags fit the byte's seven defined bits (CKA_WRAP_WITH_TRUSTED the 7th) */
	assert_int_equal(KH_ATTR_ALL, KH_ATTR_SENSITIVE | KH_ATTR_ALWAYS_SENSITIVE |
	    KH_ATTR_EXTRACTABLE | KH_ATTR_NEVER_EXTRACTABLE | KH_ATTR_TOKEN | KH_ATTR_PRIVATE |
	    KH_ATTR_WRAP_WITH_TRUSTED);
	assert_int_equal(KH_ATTR_WRAP_WITH_TRUSTED, 0x40);
	assert_int_equal(KH_ATTR_ALL & 0x80, 0);
}

/* POOL: an empty request; its reply's fields round-trip, and a bad reply is refused. */
static void
pool_request_and_reply(void **state)
{
	uint8_t buf[KH_MAX_FRAME], body[KH_POOL_LEN], one = 0;
	struct kh_frame f;
	struct kh_request r;
	struct kh_pool p = { 5, 2, 64, 4, 0, 20123, 19876 }, q;
	int n = enc(buf, KH_T_POOL, 100, NULL, 0);

	assert_int_equal(KH_T_POOL, 20);
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), n);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_int_equal(r.type, KH_T_POOL);
	n = enc(buf, KH_T_POOL, 100, &one, 1);
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), n);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);

	kh_pool_encode(&p, body);
	assert_int_equal(kh_pool_parse(body, sizeof(body), &q), 0);
	assert_int_equal(q.sessions, 5);
	assert_int_equal(q.min, 2);
	assert_int_equal(q.max, 64);
	assert_int_equal(q.open, 4);
	assert_int_equal(q.cap, 0);
	assert_int_equal(q.latency_us, 20123);
	assert_int_equal(q.base_us, 19876);
	assert_int_equal(kh_pool_parse(body, sizeof(body) - 1, &q), HSM_EPROTO);
	body[11] = 1;				/* reserved */
	assert_int_equal(kh_pool_parse(body, sizeof(body), &q), HSM_EPROTO);
	p.min = 65;				/* min above max */
	kh_pool_encode(&p, body);
	assert_int_equal(kh_pool_parse(body, sizeof(body), &q), HSM_EPROTO);
}

static void
incomplete_frames_wait(void **state)
{
	uint8_t buf[KH_MAX_FRAME];
	struct kh_frame f;
	int n = enc(buf, KH_T_PING, 10, NULL, 0);

	for (int i = 0; i < n; i++)
		assert_int_equal(kh_frame_parse(buf, (size_t)i, &f), 0);
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), n);
}

static void
bad_headers_rejected(void **state)
{
	uint8_t buf[KH_MAX_FRAME];
	struct kh_frame f;
	int n = enc(buf, KH_T_PING, 10, NULL, 0);

	buf[4] = 2;					/* version */
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), HSM_EPROTO);
	buf[4] = KH_VERSION;
	buf[6] = 1;					/* reserved */
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), HSM_EPROTO);
	buf[6] = 0;
	buf[0] = 0x7f;					/* huge length */
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), HSM_EPROTO);
	memset(buf, 0, 4);				/* length shorter than a header */
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), HSM_EPROTO);
}

static void
bad_bodies_rejected(void **state)
{
	uint8_t buf[KH_MAX_FRAME], body[128];
	struct kh_frame f;
	struct kh_request r;
	int n;

	memset(body, 0, sizeof(body));
	/* deadline 0 and too large */
	n = enc(buf, KH_T_PING, 0, NULL, 0);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	n = enc(buf, KH_T_PING, KH_MAX_DEADLINE_MS + 1, NULL, 0);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* ping with a body */
	n = enc(buf, KH_T_PING, 10, body, 1);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* pubkey with a short key id */
	n = enc(buf, KH_T_PUBKEY, 10, body, 31);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* attrs with a short or a long key id */
	n = enc(buf, KH_T_ATTRS, 10, body, 31);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	n = enc(buf, KH_T_ATTRS, 10, body, 33);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* the type after ATTRS is unknown */
	n = enc(buf, KH_T_ATTRS + 1, 10, body, 32);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* sign whose dlen disagrees with the frame */
	body[32] = HSM_SIG_ECDSA;
	body[33] = 40;
	n = enc(buf, KH_T_SIGN, 10, body, 34 + 32);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* RSA-SHA256 with a 48-byte digest */
	body[32] = HSM_SIG_RSA_PKCS1_SHA256;
	body[33] = 48;
	n = enc(buf, KH_T_SIGN, 10, body, 34 + 48);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* unknown algorithm, unknown type */
	body[32] = 99;
	body[33] = 32;
	n = enc(buf, KH_T_SIGN, 10, body, 34 + 32);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	n = enc(buf, 42, 10, NULL, 0);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* label: length byte beyond the body, non-printable, too long */
	body[0] = HSM_KEY_EC_P256;
	body[1] = 10;
	memcpy(body + 2, "abc", 3);
	n = enc(buf, KH_T_GENERATE, 10, body, 5);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	body[1] = 3;
	body[3] = '\n';
	n = enc(buf, KH_T_GENERATE, 10, body, 5);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	body[0] = 65;
	memset(body + 1, 'a', 65);
	n = enc(buf, KH_T_FIND, 10, body, 66);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* bad key type */
	body[0] = 9;
	body[1] = 0;
	n = enc(buf, KH_T_GENERATE, 10, body, 2);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
}

static void
good_label(void **state)
{
	uint8_t buf[KH_MAX_FRAME], body[8] = { HSM_KEY_EC_P384, 3, 'c', 'a', '1' };
	struct kh_frame f;
	struct kh_request r;
	int n = enc(buf, KH_T_GENERATE, 10, body, 5);

	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), n);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_string_equal(r.label, "ca1");
	assert_int_equal(r.keytype, HSM_KEY_EC_P384);
}

/* GENERATE's optional flags byte after the label. */
static void
generate_flags(void **state)
{
	uint8_t buf[KH_MAX_FRAME], body[8] = { HSM_KEY_EC_P256, 2, 'c', 'a', HSM_GEN_REPLICABLE };
	struct kh_frame f;
	struct kh_request r;
	int n = enc(buf, KH_T_GENERATE, 10, body, 5);

	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), n);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_string_equal(r.label, "ca");
	assert_int_equal(r.genflags, HSM_GEN_REPLICABLE);
	/* without it: 0 */
	n = enc(buf, KH_T_GENERATE, 10, body, 4);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_int_equal(r.genflags, 0);
	/* an unknown flag, or a second byte after the label */
	body[4] = 0x80;
	n = enc(buf, KH_T_GENERATE, 10, body, 5);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	body[4] = HSM_GEN_REPLICABLE;
	n = enc(buf, KH_T_GENERATE, 10, body, 6);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	/* an empty label with flags */
	body[1] = 0;
	body[2] = HSM_GEN_REPLICABLE;
	n = enc(buf, KH_T_GENERATE, 10, body, 3);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_string_equal(r.label, "");
	assert_int_equal(r.genflags, HSM_GEN_REPLICABLE);
}

/* The replication requests: UNWRAPPING_KEY, WRAP, UNWRAP (docs/PROTOCOL.md). */
static void
replication_requests(void **state)
{
	uint8_t buf[KH_MAX_FRAME], body[KH_MAX_FRAME], *p;
	struct kh_frame f;
	struct kh_request r;
	size_t len;
	int n;

	/* UNWRAPPING_KEY: a label of 1..64 */
	body[0] = 4;
	memcpy(body + 1, "wrap", 4);
	n = enc(buf, KH_T_UNWRAPPING_KEY, 10, body, 5);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_string_equal(r.label, "wrap");
	body[0] = 0;
	n = enc(buf, KH_T_UNWRAPPING_KEY, 10, body, 1);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);

	/* WRAP: a key id and 1..HSM_MAX_SPKI bytes of the target's key */
	memset(body, 0x33, HSM_KEYID_LEN);
	memset(body + HSM_KEYID_LEN, 0x44, 300);
	n = enc(buf, KH_T_WRAP, 10, body, HSM_KEYID_LEN + 300);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_int_equal(r.spkilen, 300);
	assert_memory_equal(r.spki, body + HSM_KEYID_LEN, 300);
	assert_memory_equal(r.keyid, body, HSM_KEYID_LEN);
	n = enc(buf, KH_T_WRAP, 10, body, HSM_KEYID_LEN);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	n = enc(buf, KH_T_WRAP, 10, body, HSM_KEYID_LEN + HSM_MAX_SPKI + 1);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);

	/* UNWRAP: id, oaep, transport, spki, label, key */
	p = body;
	memset(p, 0x55, HSM_KEYID_LEN);
	p += HSM_KEYID_LEN;
	*p++ = HSM_OAEP_SHA1;
	*p++ = 0x01;		/* tlen 384 */
	*p++ = 0x80;
	memset(p, 0x66, 384);
	p += 384;
	*p++ = 0;		/* spkilen 91 */
	*p++ = 91;
	memset(p, 0x77, 91);
	p += 91;
	*p++ = 3;
	memcpy(p, "hca", 3);
	p += 3;
	memset(p, 0x88, 40);
	p += 40;
	len = (size_t)(p - body);
	n = enc(buf, KH_T_UNWRAP, 10, body, len);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_int_equal(r.wrapped.oaep, HSM_OAEP_SHA1);
	assert_int_equal(r.wrapped.tlen, 384);
	assert_int_equal(r.spkilen, 91);
	assert_string_equal(r.label, "hca");
	assert_int_equal(r.wrapped.klen, 40);
	assert_int_equal(r.wrapped.key[39], 0x88);
	/* every cut short, and the key shorter than 16 bytes */
	for (size_t cut = 0; cut < len - 40 + 15; cut++) {
		n = enc(buf, KH_T_UNWRAP, 10, body, cut);
		kh_frame_parse(buf, (size_t)n, &f);
		assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	}
	/* an unknown OAEP hash, a transport key too long, a bad label byte */
	body[HSM_KEYID_LEN] = 3;
	n = enc(buf, KH_T_UNWRAP, 10, body, len);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	body[HSM_KEYID_LEN] = HSM_OAEP_SHA256;
	body[HSM_KEYID_LEN + 1] = 0x02;
	body[HSM_KEYID_LEN + 2] = 0x01;
	n = enc(buf, KH_T_UNWRAP, 10, body, len);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	body[HSM_KEYID_LEN + 1] = 0x01;
	body[HSM_KEYID_LEN + 2] = 0x80;
	body[len - 40 - 2] = ' ';
	n = enc(buf, KH_T_UNWRAP, 10, body, len);
	kh_frame_parse(buf, (size_t)n, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
}

/* A reply body of three parts, as WRAP's is sent. */
static void
encode3(void **state)
{
	uint8_t buf[KH_MAX_FRAME], a[3] = { 1, 2, 3 }, b[5] = { 4 }, c[7] = { 5 };
	struct kh_frame f;
	int n = kh_frame_encode3(buf, sizeof(buf), KH_T_WRAP | KH_T_REPLY, 9, a, 3, b, 5, c, 7);

	assert_int_equal(n, KH_HDR_LEN + 15);
	assert_int_equal(kh_frame_parse(buf, (size_t)n, &f), n);
	assert_int_equal(f.bodylen, 15);
	assert_int_equal(f.arg, 0);
	assert_int_equal(f.body[8], 5);
	assert_int_equal(kh_frame_encode3(buf, sizeof(buf), 1, 1, a, 3, b, 5, buf, KH_MAX_FRAME),
	    HSM_EINVAL);
}

/* LIST: after[32], a prefix; its reply entries are checked one by one. */
static void
list_request_and_reply(void **state)
{
	uint8_t buf[KH_MAX_FRAME], body[HSM_KEYID_LEN + 1 + 64], rep[KH_MAX_FRAME];
	struct kh_list_entry e[KH_LIST_MAX], got[KH_LIST_MAX];
	uint8_t after[HSM_KEYID_LEN];
	struct kh_frame f;
	struct kh_request r;
	size_t n;
	int len;

	memset(body, 0x01, HSM_KEYID_LEN);
	body[HSM_KEYID_LEN] = 10;
	memcpy(body + HSM_KEYID_LEN + 1, "hsmesh-wl-", 10);
	len = enc(buf, KH_T_LIST, 100, body, HSM_KEYID_LEN + 11);
	assert_int_equal(kh_frame_parse(buf, (size_t)len, &f), len);
	assert_int_equal(kh_request_decode(&f, &r), 0);
	assert_string_equal(r.label, "hsmesh-wl-");
	assert_memory_equal(r.keyid, body, HSM_KEYID_LEN);
	/* an empty prefix, a short body, a prefix with a space */
	body[HSM_KEYID_LEN] = 0;
	len = enc(buf, KH_T_LIST, 100, body, HSM_KEYID_LEN + 1);
	kh_frame_parse(buf, (size_t)len, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	len = enc(buf, KH_T_LIST, 100, body, 20);
	kh_frame_parse(buf, (size_t)len, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);
	body[HSM_KEYID_LEN] = 3;
	memcpy(body + HSM_KEYID_LEN + 1, "a b", 3);
	len = enc(buf, KH_T_LIST, 100, body, HSM_KEYID_LEN + 4);
	kh_frame_parse(buf, (size_t)len, &f);
	assert_int_equal(kh_request_decode(&f, &r), HSM_EPROTO);

	/* A full page of the longest labels fits one frame. */
	for (int i = 0; i < KH_LIST_MAX; i++) {
		memset(e[i].keyid, 0, HSM_KEYID_LEN);
		e[i].keyid[0] = (uint8_t)(i + 1);
		memset(e[i].label, 'x', HSM_MAX_LABEL);
		memcpy(e[i].label, "hsmesh-wl-", 10);
		e[i].label[HSM_MAX_LABEL] = '\0';
	}
	len = kh_list_encode(e, KH_LIST_MAX, rep, KH_MAX_FRAME - KH_HDR_LEN);
	assert_int_equal(len, KH_LIST_MAX * KH_LIST_ENTRY_MAX);
	memset(after, 0, sizeof(after));
	assert_int_equal(kh_list_parse(rep, (size_t)len, after, "hsmesh-", got, &n), 0);
	assert_int_equal(n, KH_LIST_MAX);
	assert_memory_equal(got[41].keyid, e[41].keyid, HSM_KEYID_LEN);
	assert_string_equal(got[41].label, e[41].label);
	assert_int_equal(kh_list_parse(rep, 0, after, "hsmesh-", got, &n), 0);
	assert_int_equal(n, 0);
	/* Truncated, another prefix, ids not above after, ids out of order. */
	assert_int_equal(kh_list_parse(rep, (size_t)len - 1, after, "hsmesh-", got, &n), HSM_EPROTO);
	assert_int_equal(kh_list_parse(rep, (size_t)len, after, "other-", got, &n), HSM_EPROTO);
	after[0] = 5;
	assert_int_equal(kh_list_parse(rep, (size_t)len, after, "hsmesh-", got, &n), HSM_EPROTO);
	memset(after, 0, sizeof(after));
	rep[0] = 9;		/* the first id is now above the second */
	assert_int_equal(kh_list_parse(rep, (size_t)len, after, "hsmesh-", got, &n), HSM_EPROTO);
	/* More than a page never comes. */
	assert_int_equal(kh_list_encode(e, KH_LIST_MAX + 1, rep, sizeof(rep)), HSM_EINVAL);
}

static void
encode_refuses_oversize(void **state)
{
	uint8_t buf[KH_MAX_FRAME], big[KH_MAX_FRAME];

	memset(big, 0, sizeof(big));
	assert_int_equal(kh_frame_encode(buf, sizeof(buf), KH_T_PING, 1, 1, big,
	    KH_MAX_FRAME - KH_HDR_LEN + 1, NULL, 0), HSM_EINVAL);
	assert_int_equal(kh_frame_encode(buf, 10, KH_T_PING, 1, 1, NULL, 0, NULL, 0), HSM_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(roundtrip_sign),
		cmocka_unit_test(attrs_request),
		cmocka_unit_test(pool_request_and_reply),
		cmocka_unit_test(incomplete_frames_wait),
		cmocka_unit_test(bad_headers_rejected),
		cmocka_unit_test(bad_bodies_rejected),
		cmocka_unit_test(good_label),
		cmocka_unit_test(encode_refuses_oversize),
		cmocka_unit_test(generate_flags),
		cmocka_unit_test(replication_requests),
		cmocka_unit_test(encode3),
		cmocka_unit_test(list_request_and_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
