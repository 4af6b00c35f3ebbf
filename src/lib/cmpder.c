/*
 * cmpder.c - bounded DER walks over CMP messages (see cmpder.h). Every
 * element is read with ASN1_get_object() limited to the bytes that remain
 * of its parent, so no length from the peer is trusted.
 */
#include <limits.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>

#include "cmpder.h"
#include "err.h"

struct tlv {
	const uint8_t *hdr;	/* start of the element (tag) */
	const uint8_t *val;	/* contents */
	size_t len;		/* contents length */
	size_t total;		/* tag + length + contents */
	int tag, cls, constructed;
};

/* Read one element at p, within end. 0 or HSM_EPROTO. */
static int
tlv_read(const uint8_t *p, const uint8_t *end, struct tlv *t)
{
	const unsigned char *q = p;
	long len;
	int tag, cls, ret;

	if (p >= end)
		return HSM_EPROTO;
	ret = ASN1_get_object(&q, &len, &tag, &cls, (long)(end - p));
	/* 0x80 is an error; 0x21 is indefinite length, which DER forbids. */
	if ((ret & 0x80) != 0 || ret == 0x21 || len < 0 || (size_t)len > (size_t)(end - q))
		return HSM_EPROTO;
	t->hdr = p;
	t->val = q;
	t->len = (size_t)len;
	t->total = (size_t)(q - p) + (size_t)len;
	t->tag = tag;
	t->cls = cls;
	t->constructed = (ret & V_ASN1_CONSTRUCTED) != 0;
	return 0;
}

/* The dotted text of the OID element t. 0 or HSM_EPROTO. */
static int
oid_text(const struct tlv *t, char *buf, size_t cap)
{
	const unsigned char *q = t->hdr;
	ASN1_OBJECT *obj;
	int n;

	if (t->tag != V_ASN1_OBJECT || t->cls != V_ASN1_UNIVERSAL ||
	    (obj = d2i_ASN1_OBJECT(NULL, &q, (long)t->total)) == NULL)
		return HSM_EPROTO;
	n = OBJ_obj2txt(buf, (int)cap, obj, 1);
	ASN1_OBJECT_free(obj);
	return n <= 0 || (size_t)n >= cap ? HSM_EPROTO : 0;
}

/* generalInfo [8]: SEQUENCE SIZE (1..MAX) OF InfoTypeAndValue. */
static int
parse_geninfo(const struct tlv *gi, const char *want, struct cmp_der_info *out)
{
	const uint8_t *p, *end;
	struct tlv seq, itav, type, val;
	char oid[128];

	if (tlv_read(gi->val, gi->val + gi->len, &seq) != 0 || seq.tag != V_ASN1_SEQUENCE ||
	    !seq.constructed)
		return HSM_EPROTO;
	p = seq.val;
	end = seq.val + seq.len;
	while (p < end) {
		if (tlv_read(p, end, &itav) != 0 || itav.tag != V_ASN1_SEQUENCE || !itav.constructed ||
		    tlv_read(itav.val, itav.val + itav.len, &type) != 0)
			return HSM_EPROTO;
		/* An OID too long for us is not ours: skip it. */
		if (oid_text(&type, oid, sizeof(oid)) != 0)
			oid[0] = '\0';
		if (strcmp(oid, CMP_OID_IMPLICIT_CONFIRM) == 0)
			out->implicit_confirm = 1;
		if (want != NULL && strcmp(oid, want) == 0 && out->geninfo_value == NULL) {
			if (tlv_read(type.val + type.len, itav.val + itav.len, &val) != 0 ||
			    val.tag != V_ASN1_OCTET_STRING || val.constructed ||
			    val.val + val.len != itav.val + itav.len)
				return HSM_EPROTO;
			out->geninfo_value = val.val;
			out->geninfo_value_len = val.len;
		}
		p += itav.total;
	}
	return 0;
}

static int
parse_header(const struct tlv *hdr, const char *want, struct cmp_der_info *out)
{
	const uint8_t *p = hdr->val, *end = hdr->val + hdr->len;
	struct tlv t;

	/* pvno, sender, recipient */
	for (int i = 0; i < 3; i++) {
		if (tlv_read(p, end, &t) != 0)
			return HSM_EPROTO;
		p += t.total;
	}
	while (p < end) {
		if (tlv_read(p, end, &t) != 0 || t.cls != V_ASN1_CONTEXT_SPECIFIC || !t.constructed)
			return HSM_EPROTO;
		if (t.tag == 1) {
			struct tlv alg, oid;

			if (tlv_read(t.val, t.val + t.len, &alg) != 0 || alg.tag != V_ASN1_SEQUENCE ||
			    tlv_read(alg.val, alg.val + alg.len, &oid) != 0 ||
			    oid_text(&oid, out->protection_alg, sizeof(out->protection_alg)) != 0)
				return HSM_EPROTO;
			out->has_protection_alg = 1;
		} else if (t.tag == 2) {
			struct tlv kid;

			if (tlv_read(t.val, t.val + t.len, &kid) != 0 || kid.tag != V_ASN1_OCTET_STRING)
				return HSM_EPROTO;
			out->sender_kid = kid.val;
			out->sender_kid_len = kid.len;
		} else if (t.tag == 8) {
			if (parse_geninfo(&t, want, out) != 0)
				return HSM_EPROTO;
		}
		p += t.total;
	}
	return 0;
}

int
cmp_der_parse(const uint8_t *der, size_t len, struct cmp_der_info *out)
{
	return cmp_der_parse_geninfo(der, len, NULL, out);
}

int
cmp_der_parse_geninfo(const uint8_t *der, size_t len, const char *oid, struct cmp_der_info *out)
{
	const uint8_t *p, *end;
	struct tlv msg, hdr, t;
	int st;

	memset(out, 0, sizeof(*out));
	if (tlv_read(der, der + len, &msg) != 0 || msg.tag != V_ASN1_SEQUENCE || !msg.constructed)
		return HSM_EPROTO;
	p = msg.val;
	end = msg.val + msg.len;
	if (tlv_read(p, end, &hdr) != 0 || hdr.tag != V_ASN1_SEQUENCE || !hdr.constructed)
		return HSM_EPROTO;
	if ((st = parse_header(&hdr, oid, out)) != 0)
		return st;
	p += hdr.total;
	/* body: a context-specific choice */
	if (tlv_read(p, end, &t) != 0 || t.cls != V_ASN1_CONTEXT_SPECIFIC)
		return HSM_EPROTO;
	p += t.total;
	while (p < end) {
		if (tlv_read(p, end, &t) != 0 || t.cls != V_ASN1_CONTEXT_SPECIFIC)
			return HSM_EPROTO;
		if (t.tag == 1) {
			struct tlv seq, cert;

			if (tlv_read(t.val, t.val + t.len, &seq) != 0 || seq.tag != V_ASN1_SEQUENCE)
				return HSM_EPROTO;
			if (seq.len > 0) {
				if (tlv_read(seq.val, seq.val + seq.len, &cert) != 0 ||
				    cert.tag != V_ASN1_SEQUENCE)
					return HSM_EPROTO;
				out->first_extra_cert = cert.hdr;
				out->first_extra_cert_len = cert.total;
			}
		}
		p += t.total;
	}
	return 0;
}

int
cmp_der_template_spki(const uint8_t *der, size_t len, uint8_t *spki, size_t cap, size_t *spkilen)
{
	const uint8_t *p, *end;
	struct tlv tmpl, t;

	*spkilen = 0;
	if (tlv_read(der, der + len, &tmpl) != 0 || tmpl.tag != V_ASN1_SEQUENCE)
		return HSM_EPROTO;
	p = tmpl.val;
	end = tmpl.val + tmpl.len;
	while (p < end) {
		if (tlv_read(p, end, &t) != 0 || t.cls != V_ASN1_CONTEXT_SPECIFIC)
			return HSM_EPROTO;
		if (t.tag == 6) {
			unsigned char *q = spki;
			int n;

			/* IMPLICIT: the same contents under a SEQUENCE tag. */
			n = ASN1_object_size(1, (long)t.len, V_ASN1_SEQUENCE);
			if (!t.constructed || n <= 0 || (size_t)n > cap)
				return HSM_EPROTO;
			ASN1_put_object(&q, 1, (long)t.len, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
			memcpy(q, t.val, t.len);
			*spkilen = (size_t)n;
			return 0;
		}
		p += t.total;
	}
	return HSM_ENOENT;
}

/* ---- InfoTypeAndValue ---- */

OSSL_CMP_ITAV *
cmp_itav_new(const char *oid, int vtype, const uint8_t *data, size_t len)
{
	ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
	ASN1_STRING *str = NULL;
	ASN1_TYPE *t = NULL;
	OSSL_CMP_ITAV *itav = NULL;

	if (o == NULL || len > INT_MAX)
		goto out;
	if (data != NULL) {
		if ((str = ASN1_STRING_type_new(vtype)) == NULL ||
		    !ASN1_STRING_set(str, data, (int)len) || (t = ASN1_TYPE_new()) == NULL)
			goto out;
		ASN1_TYPE_set(t, vtype, str);
		str = NULL;
	}
	if ((itav = OSSL_CMP_ITAV_create(o, t)) != NULL)
		o = NULL, t = NULL;
 out:
	ASN1_OBJECT_free(o);
	ASN1_TYPE_free(t);
	ASN1_STRING_free(str);
	return itav;
}

OSSL_CMP_ITAV *
cmp_itav_find(const STACK_OF(OSSL_CMP_ITAV) *sk, const char *oid)
{
	ASN1_OBJECT *want = OBJ_txt2obj(oid, 1);
	OSSL_CMP_ITAV *found = NULL;

	for (int i = 0; want != NULL && found == NULL && i < sk_OSSL_CMP_ITAV_num(sk); i++)
		if (OBJ_cmp(OSSL_CMP_ITAV_get0_type(sk_OSSL_CMP_ITAV_value(sk, i)), want) == 0)
			found = sk_OSSL_CMP_ITAV_value(sk, i);
	ASN1_OBJECT_free(want);
	return found;
}
