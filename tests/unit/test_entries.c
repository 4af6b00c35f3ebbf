/*
 * test_entries.c - the DER of a node's registration entries (entries.h):
 * what the CA encodes the agent decodes, and the decoder refuses anything
 * else: bad values, non-DER, repeated or non-canonical selectors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>

#include "entries.h"
#include "err.h"

#define NODE "spiffe://example.org/node/n1"

/* A list of n entries spiffe://example.org/wl/<i>, each with the selectors of sels. */
static struct entry_list *
make_list(size_t n, const char *const *sels)
{
	struct entry_list *l = calloc(1, sizeof(*l));
	char id[64];

	assert_non_null(l);
	l->node = strdup(NODE);
	l->issued = 1767225600;
	l->refresh = 30;
	l->v = calloc(n > 0 ? n : 1, sizeof(*l->v));
	assert_non_null(l->v);
	for (size_t i = 0; i < n; i++) {
		struct entry *e = &l->v[l->n++];

		snprintf(e->id, sizeof(e->id), "%016zx", i + 0xa0);
		snprintf(id, sizeof(id), "spiffe://example.org/wl/%zu", i);
		e->spiffe_id = strdup(id);
		e->ttl = (int64_t)(i * 60);
		for (size_t k = 0; sels[k] != NULL; k++)
			assert_int_equal(sel_set_add(&e->sel, sels[k]), 0);
	}
	return l;
}

static void
round_trip(void **state)
{
	static const char *const sels[] = { "uid:1000", "path:/usr/bin/web", "cgroup:/system.slice",
		"sha256:00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff", NULL };
	struct entry_list *l = make_list(3, sels), *back = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	char text[256];

	assert_int_equal(entries_encode(l, &der, &len), 0);
	assert_int_equal(entries_decode(der, len, &back), 0);
	assert_string_equal(back->node, NODE);
	assert_int_equal(back->issued, l->issued);
	assert_int_equal(back->refresh, 30);
	assert_int_equal(back->n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(back->v[i].id, l->v[i].id);
		assert_string_equal(back->v[i].spiffe_id, l->v[i].spiffe_id);
		assert_int_equal(back->v[i].ttl, l->v[i].ttl);
		assert_true(sel_set_equal(&back->v[i].sel, &l->v[i].sel));
	}
	/* The hash went out in lower case: its one spelling. */
	assert_int_equal(sel_text(&back->v[0].sel.v[3], text, sizeof(text)), 0);
	assert_string_equal(text,
	    "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
	entries_free(back);
	OPENSSL_free(der);
	/* No entries at all is a list too: the node has none. */
	entries_free(l);
	l = make_list(0, sels);
	assert_int_equal(entries_encode(l, &der, &len), 0);
	assert_int_equal(entries_decode(der, len, &back), 0);
	assert_int_equal(back->n, 0);
	entries_free(back);
	entries_free(l);
	OPENSSL_free(der);
}

/* Encode l, apply edit to it first; decode must refuse with a detail containing why. */
static void
refused(struct entry_list *l, const char *why)
{
	struct entry_list *back = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	int r = entries_encode(l, &der, &len);

	/* What the encoder refuses never reaches the wire; both ends check alike. */
	if (r == 0) {
		r = entries_decode(der, len, &back);
		assert_int_equal(r, HSM_EPROTO);
		assert_null(back);
	} else {
		assert_int_equal(r, HSM_EINVAL);
	}
	if (strstr(hsm_err_msg(r), why) == NULL)
		fail_msg("'%s' does not say '%s'", hsm_err_msg(r), why);
	OPENSSL_free(der);
	entries_free(l);
}

static void
encoder_refusals(void **state)
{
	static const char *const sels[] = { "uid:1", NULL }, *const none[] = { NULL };
	struct entry_list *l;

	l = make_list(1, sels);
	free(l->node);
	l->node = strdup("spiffe://example.org");
	refused(l, "no path");
	l = make_list(1, none);
	refused(l, "out of bounds");		/* an entry without selectors */
	l = make_list(1, sels);
	snprintf(l->v[0].id, sizeof(l->v[0].id), "XYZ");
	refused(l, "out of bounds");
	l = make_list(1, sels);
	l->refresh = 0;
	refused(l, "out of bounds");
}

/*
 * Hand-made DER (the encoder would not write it): a version, a node, the
 * times, and one entry of the given selector strings.
 */
static size_t
hand_made(uint8_t *out, size_t cap, long version, const char *node, const char *entry_id,
    const char *id, const char *const *sels)
{
	STACK_OF(ASN1_TYPE) *top = sk_ASN1_TYPE_new_null(), *ent = sk_ASN1_TYPE_new_null(),
	    *sl = sk_ASN1_TYPE_new_null(), *list = sk_ASN1_TYPE_new_null();
	unsigned char *der = NULL;
	int n;

	/* Each piece pushed as an ASN1_TYPE; SEQUENCEs as their own DER. */
#define PUSH_INT(sk, v) do { ASN1_TYPE *t = ASN1_TYPE_new(); ASN1_INTEGER *i = ASN1_INTEGER_new(); \
	ASN1_INTEGER_set(i, (v)); ASN1_TYPE_set(t, V_ASN1_INTEGER, i); sk_ASN1_TYPE_push((sk), t); } while (0)
#define PUSH_STR(sk, s) do { ASN1_TYPE *t = ASN1_TYPE_new(); ASN1_STRING *u = ASN1_UTF8STRING_new(); \
	ASN1_STRING_set(u, (s), (int)strlen(s)); ASN1_TYPE_set(t, V_ASN1_UTF8STRING, u); \
	sk_ASN1_TYPE_push((sk), t); } while (0)
#define PUSH_SEQ(sk, inner) do { unsigned char *d = NULL; int l = i2d_ASN1_SEQUENCE_ANY((inner), &d); \
	ASN1_TYPE *t = ASN1_TYPE_new(); ASN1_STRING *s = ASN1_STRING_new(); ASN1_STRING_set(s, d, l); \
	ASN1_TYPE_set(t, V_ASN1_SEQUENCE, s); sk_ASN1_TYPE_push((sk), t); OPENSSL_free(d); } while (0)
	for (size_t i = 0; sels[i] != NULL; i++)
		PUSH_STR(sl, sels[i]);
	PUSH_STR(ent, entry_id);
	PUSH_STR(ent, id);
	PUSH_INT(ent, 0);
	PUSH_SEQ(ent, sl);
	PUSH_SEQ(list, ent);
	PUSH_INT(top, version);
	PUSH_STR(top, node);
	PUSH_INT(top, 1767225600);
	PUSH_INT(top, 30);
	PUSH_SEQ(top, list);
	n = i2d_ASN1_SEQUENCE_ANY(top, &der);
	assert_true(n > 0 && (size_t)n <= cap);
	memcpy(out, der, (size_t)n);
	OPENSSL_free(der);
	sk_ASN1_TYPE_pop_free(top, ASN1_TYPE_free);
	sk_ASN1_TYPE_pop_free(ent, ASN1_TYPE_free);
	sk_ASN1_TYPE_pop_free(sl, ASN1_TYPE_free);
	sk_ASN1_TYPE_pop_free(list, ASN1_TYPE_free);
	return (size_t)n;
}

static void
decode_refused(const uint8_t *der, size_t len, const char *why)
{
	struct entry_list *l = NULL;

	assert_int_equal(entries_decode(der, len, &l), HSM_EPROTO);
	assert_null(l);
	if (strstr(hsm_err_msg(HSM_EPROTO), why) == NULL)
		fail_msg("'%s' does not say '%s'", hsm_err_msg(HSM_EPROTO), why);
}

static void
decoder_refusals(void **state)
{
	static const char *const good[] = { "uid:1", "path:/x", NULL };
	uint8_t der[4096], bad[4096];
	char longsel[SEL_TEXT_MAX + 50];
	struct entry_list *l = NULL;
	size_t n;

	/* The hand-made one decodes: the fixture is right. */
	n = hand_made(der, sizeof(der), 1, NODE, "00ab", "spiffe://example.org/w", good);
	assert_int_equal(entries_decode(der, n, &l), 0);
	assert_int_equal(l->n, 1);
	entries_free(l);
	/* Trailing bytes, a cut, nothing. */
	memcpy(bad, der, n);
	bad[n] = 0;
	decode_refused(bad, n + 1, "not a DER");
	decode_refused(der, n - 1, "not a DER");
	decode_refused(der, 0, "0 bytes");
	/* A long-form length where a short one does: BER, not DER. */
	bad[0] = 0x30;
	bad[1] = 0x81;
	bad[2] = der[1];
	memcpy(bad + 3, der + 2, n - 2);
	if (der[1] < 0x80)
		decode_refused(bad, n + 1, "DER");
	n = hand_made(der, sizeof(der), 2, NODE, "00ab", "spiffe://example.org/w", good);
	decode_refused(der, n, "version");
	n = hand_made(der, sizeof(der), 1, "spiffe://example.org", "00ab", "spiffe://example.org/w",
	    good);
	decode_refused(der, n, "no path");
	n = hand_made(der, sizeof(der), 1, NODE, "00AB", "spiffe://example.org/w", good);
	decode_refused(der, n, "hex");
	n = hand_made(der, sizeof(der), 1, NODE, "00ab", "spiffe://Example.org/w", good);
	decode_refused(der, n, "invalid SPIFFE ID");
	n = hand_made(der, sizeof(der), 1, NODE, "00ab", "spiffe://example.org/w",
	    (const char *const[]){ NULL });
	decode_refused(der, n, "0 selectors");
	n = hand_made(der, sizeof(der), 1, NODE, "00ab", "spiffe://example.org/w",
	    (const char *const[]){ "uid:x", NULL });
	decode_refused(der, n, "uid must be a number");
	n = hand_made(der, sizeof(der), 1, NODE, "00ab", "spiffe://example.org/w",
	    (const char *const[]){ "uid:1", "uid:1", NULL });
	decode_refused(der, n, "repeated");
	/* An unreadable selector after a good one (found by fuzz_entries). */
	memset(longsel, 'x', sizeof(longsel) - 1);
	longsel[sizeof(longsel) - 1] = '\0';
	memcpy(longsel, "path:/", 6);
	n = hand_made(der, sizeof(der), 1, NODE, "00ab", "spiffe://example.org/w",
	    (const char *const[]){ "uid:1", longsel, NULL });
	decode_refused(der, n, "unreadable selector");
	n = hand_made(der, sizeof(der), 1, NODE, "00ab", "spiffe://example.org/w",
	    (const char *const[]){ "sha256:00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
	    NULL });
	decode_refused(der, n, "canonical");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(encoder_refusals),
		cmocka_unit_test(decoder_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
