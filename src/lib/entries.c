/*
 * entries.c - the DER form of a node's registration entries (see
 * entries.h), with OpenSSL's ASN.1 templates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/crypto.h>

#include "entries.h"
#include "err.h"
#include "spiffe.h"
#include "util.h"

#define TTL_MAX (100LL * 366 * 86400)	/* cert.h's CERT_MAX_TTL */

typedef struct {
	ASN1_UTF8STRING *id;
	ASN1_UTF8STRING *spiffe_id;
	ASN1_INTEGER *ttl;
	STACK_OF(ASN1_UTF8STRING) *selectors;
} HSM_ENTRY;

typedef struct {
	ASN1_INTEGER *version;
	ASN1_UTF8STRING *node;
	ASN1_INTEGER *issued;
	ASN1_INTEGER *refresh;
	STACK_OF(HSM_ENTRY) *entries;
} HSM_ENTRIES;

DEFINE_STACK_OF(HSM_ENTRY)

ASN1_SEQUENCE(HSM_ENTRY) = {
	ASN1_SIMPLE(HSM_ENTRY, id, ASN1_UTF8STRING),
	ASN1_SIMPLE(HSM_ENTRY, spiffe_id, ASN1_UTF8STRING),
	ASN1_SIMPLE(HSM_ENTRY, ttl, ASN1_INTEGER),
	ASN1_SEQUENCE_OF(HSM_ENTRY, selectors, ASN1_UTF8STRING),
} static_ASN1_SEQUENCE_END(HSM_ENTRY)

ASN1_SEQUENCE(HSM_ENTRIES) = {
	ASN1_SIMPLE(HSM_ENTRIES, version, ASN1_INTEGER),
	ASN1_SIMPLE(HSM_ENTRIES, node, ASN1_UTF8STRING),
	ASN1_SIMPLE(HSM_ENTRIES, issued, ASN1_INTEGER),
	ASN1_SIMPLE(HSM_ENTRIES, refresh, ASN1_INTEGER),
	ASN1_SEQUENCE_OF(HSM_ENTRIES, entries, HSM_ENTRY),
} static_ASN1_SEQUENCE_END(HSM_ENTRIES)

IMPLEMENT_STATIC_ASN1_ALLOC_FUNCTIONS(HSM_ENTRY)
IMPLEMENT_STATIC_ASN1_ALLOC_FUNCTIONS(HSM_ENTRIES)

void
entries_free(struct entry_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].spiffe_id);
		sel_set_clear(&l->v[i].sel);
	}
	free(l->v);
	free(l->node);
	free(l);
}

/* ---- checks shared by both directions ---- */

/* An entry ID: 1..ENTRY_ID_MAX lower-case hex digits. */
static int
entry_id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > ENTRY_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	return 1;
}

/* A SPIFFE ID with a path; why (cap bytes) says what is wrong. */
static int
id_ok(const char *id, char *why, size_t cap)
{
	struct spiffe_id sid;

	if (spiffe_id_parse(id, &sid) != 0) {
		snprintf(why, cap, "%s", hsm_err_msg(HSM_EINVAL));
		return 0;
	}
	if (sid.path[0] == '\0') {
		snprintf(why, cap, "SPIFFE ID has no path");
		return 0;
	}
	return 1;
}

/* ---- encoding ---- */

static ASN1_UTF8STRING *
utf8(const char *s)
{
	ASN1_UTF8STRING *u = ASN1_UTF8STRING_new();

	if (u != NULL && !ASN1_STRING_set(u, s, (int)strlen(s))) {
		ASN1_UTF8STRING_free(u);
		u = NULL;
	}
	return u;
}

static int
set_int(ASN1_INTEGER *a, int64_t v)
{
	return ASN1_INTEGER_set_int64(a, v) == 1;
}

/* One entry of l into a new HSM_ENTRY. */
static HSM_ENTRY *
entry_to_asn(const struct entry *e)
{
	HSM_ENTRY *a = HSM_ENTRY_new();
	char text[SEL_TEXT_MAX + 1];
	ASN1_UTF8STRING *s;

	if (a == NULL)
		return NULL;
	ASN1_UTF8STRING_free(a->id);
	ASN1_UTF8STRING_free(a->spiffe_id);
	if ((a->id = utf8(e->id)) == NULL || (a->spiffe_id = utf8(e->spiffe_id)) == NULL ||
	    !set_int(a->ttl, e->ttl))
		goto fail;
	for (size_t i = 0; i < e->sel.n; i++) {
		if (sel_text(&e->sel.v[i], text, sizeof(text)) != 0 || (s = utf8(text)) == NULL)
			goto fail;
		if (sk_ASN1_UTF8STRING_push(a->selectors, s) <= 0) {
			ASN1_UTF8STRING_free(s);
			goto fail;
		}
	}
	return a;
 fail:
	HSM_ENTRY_free(a);
	return NULL;
}

int
entries_encode(const struct entry_list *l, uint8_t **der, size_t *len)
{
	HSM_ENTRIES *a = NULL;
	HSM_ENTRY *e;
	unsigned char *out = NULL;
	char why[300];
	int n, r = HSM_ECRYPTO;

	*der = NULL;
	*len = 0;
	if (l->node == NULL || !id_ok(l->node, why, sizeof(why)))
		return hsm_err(HSM_EINVAL, "entries: node: %s", l->node == NULL ? "missing" : why);
	if (l->n > ENTRIES_MAX || l->refresh < 1 || l->refresh > 86400 || l->issued < 0)
		return hsm_err(HSM_EINVAL, "entries: count, refresh or time out of bounds");
	for (size_t i = 0; i < l->n; i++) {
		const struct entry *x = &l->v[i];

		if (!entry_id_ok(x->id) || x->spiffe_id == NULL ||
		    !id_ok(x->spiffe_id, why, sizeof(why)) || x->ttl < 0 || x->ttl > TTL_MAX ||
		    x->sel.n == 0 || x->sel.n > SEL_SET_MAX)
			return hsm_err(HSM_EINVAL, "entries: entry %zu is out of bounds", i);
	}
	if ((a = HSM_ENTRIES_new()) == NULL)
		goto out;
	ASN1_UTF8STRING_free(a->node);
	if (!set_int(a->version, ENTRIES_VERSION) || (a->node = utf8(l->node)) == NULL ||
	    !set_int(a->issued, l->issued) || !set_int(a->refresh, l->refresh))
		goto out;
	for (size_t i = 0; i < l->n; i++) {
		if ((e = entry_to_asn(&l->v[i])) == NULL)
			goto out;
		if (sk_HSM_ENTRY_push(a->entries, e) <= 0) {
			HSM_ENTRY_free(e);
			goto out;
		}
	}
	if ((n = ASN1_item_i2d((const ASN1_VALUE *)a, &out, ASN1_ITEM_rptr(HSM_ENTRIES))) <= 0)
		goto out;
	*der = out;
	*len = (size_t)n;
	r = 0;
 out:
	HSM_ENTRIES_free(a);
	if (r != 0)
		r = hsm_err_ossl(HSM_ECRYPTO, "entries: encoding");
	return r;
}

/* ---- decoding ---- */

/* A UTF8String's contents as a C string: no NUL inside, at most max bytes. */
static char *
cstr(const ASN1_UTF8STRING *s, size_t max)
{
	int n = ASN1_STRING_length(s);
	char *out;

	if (n < 0 || (size_t)n > max || memchr(ASN1_STRING_get0_data(s), '\0', (size_t)n) != NULL ||
	    (out = malloc((size_t)n + 1)) == NULL)
		return NULL;
	memcpy(out, ASN1_STRING_get0_data(s), (size_t)n);
	out[n] = '\0';
	return out;
}

static int
get_int(const ASN1_INTEGER *a, int64_t min, int64_t max, int64_t *out)
{
	int64_t v;

	if (ASN1_INTEGER_get_int64(&v, a) != 1 || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Entry i of a into *e (already zeroed). 0 or HSM_EPROTO/HSM_ENOMEM with why set. */
static int
entry_from_asn(const HSM_ENTRY *a, size_t i, struct entry *e, char *why, size_t cap)
{
	char *id = NULL, *sel;
	int n = sk_ASN1_UTF8STRING_num(a->selectors), r = HSM_EPROTO;

	if ((id = cstr(a->id, ENTRY_ID_MAX)) == NULL || !entry_id_ok(id)) {
		snprintf(why, cap, "entry %zu: the ID is not 1..%d lower-case hex digits", i,
		    ENTRY_ID_MAX);
		goto out;
	}
	memcpy(e->id, id, strlen(id) + 1);
	if ((e->spiffe_id = cstr(a->spiffe_id, SPIFFE_ID_MAX)) == NULL) {
		snprintf(why, cap, "entry %s: unreadable SPIFFE ID", e->id);
		goto out;
	}
	if (!id_ok(e->spiffe_id, why, cap))
		goto out;
	if (get_int(a->ttl, 0, TTL_MAX, &e->ttl) != 0) {
		snprintf(why, cap, "entry %s: ttl out of range", e->id);
		goto out;
	}
	if (n < 1 || n > SEL_SET_MAX) {
		snprintf(why, cap, "entry %s: %d selectors (1..%d)", e->id, n, SEL_SET_MAX);
		goto out;
	}
	for (int k = 0; k < n; k++) {
		char canon[SEL_TEXT_MAX + 1];

		if ((sel = cstr(sk_ASN1_UTF8STRING_value(a->selectors, k), SEL_TEXT_MAX)) == NULL) {
			snprintf(why, cap, "entry %s: unreadable selector", e->id);
			r = HSM_EPROTO;
			goto out;
		}
		r = sel_set_add(&e->sel, sel);
		/* One selector, one spelling, once: what decodes encodes to the same bytes. */
		if (r == 0 && (e->sel.n != (size_t)k + 1 ||
		    sel_text(&e->sel.v[k], canon, sizeof(canon)) != 0 || strcmp(canon, sel) != 0)) {
			snprintf(why, cap, "entry %s: selector %d repeated or not in its canonical "
			    "spelling", e->id, k + 1);
			r = HSM_EPROTO;
			free(sel);
			goto out;
		}
		free(sel);
		if (r != 0) {
			snprintf(why, cap, "entry %s: %s", e->id, hsm_err_msg(r));
			if (r != HSM_ENOMEM)
				r = HSM_EPROTO;
			goto out;
		}
	}
	r = 0;
 out:
	free(id);
	return r;
}

int
entries_decode(const uint8_t *der, size_t len, struct entry_list **out)
{
	const unsigned char *p = der;
	unsigned char *again = NULL;
	HSM_ENTRIES *a = NULL;
	struct entry_list *l = NULL;
	char why[400];
	int64_t version;
	int n, r = HSM_EPROTO;

	*out = NULL;
	why[0] = '\0';
	if (len == 0 || len > ENTRIES_DER_MAX) {
		snprintf(why, sizeof(why), "%zu bytes", len);
		goto out;
	}
	if ((a = (HSM_ENTRIES *)ASN1_item_d2i(NULL, &p, (long)len,
	    ASN1_ITEM_rptr(HSM_ENTRIES))) == NULL || p != der + len) {
		snprintf(why, sizeof(why), "not a DER HsmeshEntries");
		goto out;
	}
	/* DER only: one value, one encoding. */
	if ((n = ASN1_item_i2d((const ASN1_VALUE *)a, &again, ASN1_ITEM_rptr(HSM_ENTRIES))) < 0 ||
	    (size_t)n != len || memcmp(again, der, len) != 0) {
		snprintf(why, sizeof(why), "not in DER (distinguished) form");
		goto out;
	}
	if (get_int(a->version, 0, INT32_MAX, &version) != 0 || version != ENTRIES_VERSION) {
		snprintf(why, sizeof(why), "version is not %d", ENTRIES_VERSION);
		goto out;
	}
	n = sk_HSM_ENTRY_num(a->entries);
	if (n < 0 || n > ENTRIES_MAX) {
		snprintf(why, sizeof(why), "more than %d entries", ENTRIES_MAX);
		goto out;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (n > 0 && (l->v = calloc((size_t)n, sizeof(*l->v))) == NULL)) {
		r = HSM_ENOMEM;
		goto out;
	}
	if ((l->node = cstr(a->node, SPIFFE_ID_MAX)) == NULL) {
		snprintf(why, sizeof(why), "unreadable node ID");
		goto out;
	}
	if (!id_ok(l->node, why, sizeof(why)))
		goto out;
	if (get_int(a->issued, 0, INT64_MAX, &l->issued) != 0 ||
	    get_int(a->refresh, 1, 86400, &l->refresh) != 0) {
		snprintf(why, sizeof(why), "issued or refresh out of range");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		struct entry *e = &l->v[l->n++];

		if ((r = entry_from_asn(sk_HSM_ENTRY_value(a->entries, i), (size_t)i, e, why,
		    sizeof(why))) != 0)
			goto out;
		for (size_t k = 0; k + 1 < l->n; k++) {
			if (strcmp(l->v[k].id, e->id) == 0) {
				r = HSM_EPROTO;
				snprintf(why, sizeof(why), "entry %s listed twice", e->id);
				goto out;
			}
		}
	}
	*out = l;
	l = NULL;
	r = 0;
 out:
	OPENSSL_free(again);
	HSM_ENTRIES_free(a);
	entries_free(l);
	if (r == HSM_ENOMEM)
		return hsm_err(HSM_ENOMEM, "entries: out of memory");
	/* why holds no raw peer bytes: IDs are checked hex, the rest quoted by its parser. */
	if (r != 0)
		return hsm_err(HSM_EPROTO, "entries: %s", why);
	return 0;
}
