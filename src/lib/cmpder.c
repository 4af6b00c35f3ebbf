/*
 * cmpder.c - bounded DER walks over CMP messages (see cmpder.h). Every
 * element is read with ASN1_get_object() limited to the bytes that remain
 * of its parent, so no length from the peer is trusted.
 */
#include <limits.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

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

/*
 * The iterationCount of the PBMParameter at p (RFC 4211 4.4: SEQUENCE {
 * salt OCTET STRING, owf AlgorithmIdentifier, iterationCount INTEGER, mac
 * AlgorithmIdentifier }), or -1 when it is not one. A count that does not
 * fit 62 bits reads as INT64_MAX.
 */
static int64_t
pbm_iterations(const uint8_t *p, const uint8_t *end)
{
	struct tlv seq, salt, owf, ic;
	int64_t v = 0;

	if (tlv_read(p, end, &seq) != 0 || seq.tag != V_ASN1_SEQUENCE || !seq.constructed ||
	    tlv_read(seq.val, seq.val + seq.len, &salt) != 0 || salt.tag != V_ASN1_OCTET_STRING ||
	    tlv_read(salt.val + salt.len, seq.val + seq.len, &owf) != 0 ||
	    owf.tag != V_ASN1_SEQUENCE ||
	    tlv_read(owf.val + owf.len, seq.val + seq.len, &ic) != 0 ||
	    ic.tag != V_ASN1_INTEGER || ic.cls != V_ASN1_UNIVERSAL || ic.constructed ||
	    ic.len == 0 || (ic.val[0] & 0x80) != 0)
		return -1;
	for (size_t i = 0; i < ic.len; i++) {
		if (v > (INT64_MAX >> 9))
			return INT64_MAX;
		v = (v << 8) | ic.val[i];
	}
	return v;
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
		if (i == 1) {
			out->sender = t.hdr;
			out->sender_len = t.total;
		}
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
			if (strcmp(out->protection_alg, CMP_OID_PBM) == 0)
				out->pbm_iterations = pbm_iterations(oid.val + oid.len, alg.val + alg.len);
		} else if (t.tag == 4 || t.tag == 5) {
			struct tlv os;

			if (tlv_read(t.val, t.val + t.len, &os) != 0 || os.tag != V_ASN1_OCTET_STRING ||
			    os.cls != V_ASN1_UNIVERSAL || os.constructed)
				return HSM_EPROTO;
			if (t.tag == 4) {
				out->transaction_id = os.val;
				out->transaction_id_len = os.len;
			} else {
				out->sender_nonce = os.val;
				out->sender_nonce_len = os.len;
			}
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
	out->pbm_iterations = -1;
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

/* ---- an unprotected error message ---- */

/* A growing DER buffer; a failed append marks it bad. */
struct dbuf {
	uint8_t *p;
	size_t len, cap;
	int bad;
};

static void
db_put(struct dbuf *b, const uint8_t *data, size_t n)
{
	if (b->bad)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *q;

		while (cap < b->len + n)
			cap *= 2;
		if ((q = realloc(b->p, cap)) == NULL) {
			b->bad = 1;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, data, n);
	b->len += n;
}

/* One element: tag byte (numbers < 31 only), DER length, contents. */
static void
db_tlv(struct dbuf *b, uint8_t tag, const uint8_t *val, size_t n)
{
	uint8_t hdr[6];
	size_t h = 0;

	if (n > 0xffffff) {
		b->bad = 1;
		return;
	}
	hdr[h++] = tag;
	if (n < 0x80) {
		hdr[h++] = (uint8_t)n;
	} else if (n <= 0xff) {
		hdr[h++] = 0x81;
		hdr[h++] = (uint8_t)n;
	} else if (n <= 0xffff) {
		hdr[h++] = 0x82;
		hdr[h++] = (uint8_t)(n >> 8);
		hdr[h++] = (uint8_t)n;
	} else {
		hdr[h++] = 0x83;
		hdr[h++] = (uint8_t)(n >> 16);
		hdr[h++] = (uint8_t)(n >> 8);
		hdr[h++] = (uint8_t)n;
	}
	db_put(b, hdr, h);
	db_put(b, val, n);
}

/* An EXPLICIT [n] around an OCTET STRING holding val. */
static void
db_tagged_octets(struct dbuf *b, int n, const uint8_t *val, size_t len)
{
	struct dbuf in = { 0 };

	db_tlv(&in, V_ASN1_OCTET_STRING, val, len);
	db_tlv(b, (uint8_t)(0xa0 | n), in.p, in.len);
	b->bad |= in.bad;
	free(in.p);
}

/* What an i2d function made (n bytes at *der), appended; *der is freed and cleared. */
static void
db_i2d(struct dbuf *b, unsigned char **der, int n)
{
	if (n <= 0 || *der == NULL)
		b->bad = 1;
	else
		db_put(b, *der, (size_t)n);
	OPENSSL_free(*der);
	*der = NULL;
}

int
cmp_der_error_new(const struct cmp_der_info *req, const X509_NAME *sender_name, int failbit,
    const char *text, uint8_t **out, size_t *outlen)
{
	static const uint8_t pvno[] = { 0x02, 0x01, 0x02 };
	static const uint8_t null_dn[] = { 0xa4, 0x02, 0x30, 0x00 };
	struct dbuf hdr = { 0 }, body = { 0 }, msg = { 0 }, tmp = { 0 };
	GENERAL_NAME *gn = NULL;
	ASN1_GENERALIZEDTIME *now = NULL;
	OSSL_CMP_PKISI *si = NULL;
	unsigned char *der = NULL;
	uint8_t nonce[16];
	int n, r = HSM_ECRYPTO;

	*out = NULL;
	*outlen = 0;
	if (req == NULL || sender_name == NULL || text == NULL || failbit < 0 ||
	    failbit > OSSL_CMP_PKIFAILUREINFO_MAX)
		return hsm_err(HSM_EINVAL, "cmp error: bad arguments");
	if ((gn = GENERAL_NAME_new()) == NULL ||
	    (gn->d.directoryName = X509_NAME_dup(sender_name)) == NULL ||
	    (now = ASN1_GENERALIZEDTIME_set(NULL, time(NULL))) == NULL ||
	    (si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, 1 << failbit, text)) == NULL ||
	    RAND_bytes(nonce, sizeof(nonce)) != 1)
		goto out;
	gn->type = GEN_DIRNAME;

	/* PKIHeader */
	db_put(&hdr, pvno, sizeof(pvno));
	n = i2d_GENERAL_NAME(gn, &der);
	db_i2d(&hdr, &der, n);
	/* The request's sender as recipient, if it is one (else the NULL-DN). */
	if (req->sender != NULL && req->sender_len <= LONG_MAX) {
		const unsigned char *q = req->sender;
		GENERAL_NAME *rs = d2i_GENERAL_NAME(NULL, &q, (long)req->sender_len);

		if (rs != NULL && q == req->sender + req->sender_len)
			db_put(&hdr, req->sender, req->sender_len);
		else
			db_put(&hdr, null_dn, sizeof(null_dn));
		GENERAL_NAME_free(rs);
	} else {
		db_put(&hdr, null_dn, sizeof(null_dn));
	}
	n = i2d_ASN1_GENERALIZEDTIME(now, &der);
	db_i2d(&tmp, &der, n);
	db_tlv(&hdr, 0xa0, tmp.p, tmp.len);		/* [0] messageTime */
	if (req->transaction_id != NULL)
		db_tagged_octets(&hdr, 4, req->transaction_id, req->transaction_id_len);
	db_tagged_octets(&hdr, 5, nonce, sizeof(nonce));
	if (req->sender_nonce != NULL)
		db_tagged_octets(&hdr, 6, req->sender_nonce, req->sender_nonce_len);

	/* [23] ErrorMsgContent ::= SEQUENCE { pKIStatusInfo } */
	tmp.len = 0;
	n = i2d_OSSL_CMP_PKISI(si, &der);
	db_i2d(&tmp, &der, n);
	db_tlv(&body, 0x30, tmp.p, tmp.len);

	db_tlv(&msg, 0x30, hdr.p, hdr.len);
	tmp.len = 0;
	db_tlv(&tmp, 0xb7, body.p, body.len);
	db_put(&msg, tmp.p, tmp.len);
	tmp.len = 0;
	db_tlv(&tmp, 0x30, msg.p, msg.len);
	if (hdr.bad || body.bad || msg.bad || tmp.bad) {
		r = HSM_ENOMEM;
		goto out;
	}
	*out = tmp.p;
	*outlen = tmp.len;
	tmp.p = NULL;
	r = 0;
 out:
	if (r == HSM_ECRYPTO)
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot make a CMP error message");
	GENERAL_NAME_free(gn);
	ASN1_GENERALIZEDTIME_free(now);
	OSSL_CMP_PKISI_free(si);
	free(hdr.p);
	free(body.p);
	free(msg.p);
	free(tmp.p);
	return r;
}
