/* sgxquote.c - bounds-checked parser for SGX DCAP quotes v3/v4/v5. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "err.h"
#include "sgxquote.h"
#include "util.h"

/* A cursor over a byte range; every read is checked against the end. */
struct rd {
	const uint8_t	*p;
	size_t		 left;
};

static int
rd_take(struct rd *r, size_t n, const uint8_t **out, const char *field)
{
	*out = NULL;
	if (n > r->left)
		return hsm_err(HSM_EPROTO, "sgx quote: %s: needs %zu bytes, "
		    "%zu left", field, n, r->left);
	*out = r->p;
	r->p += n;
	r->left -= n;
	return 0;
}

static int
rd_u16(struct rd *r, uint16_t *v, const char *field)
{
	const uint8_t *p;
	int rc;

	*v = 0;
	if ((rc = rd_take(r, 2, &p, field)) != 0)
		return rc;
	*v = hsm_getle16(p);
	return 0;
}

static int
rd_u32(struct rd *r, uint32_t *v, const char *field)
{
	const uint8_t *p;
	int rc;

	*v = 0;
	if ((rc = rd_take(r, 4, &p, field)) != 0)
		return rc;
	*v = hsm_getle32(p);
	return 0;
}

/* p holds SGX_REPORT_BODY_LEN bytes. */
static void
parse_body(const uint8_t *p, struct sgx_report_body *b)
{
	memset(b, 0, sizeof(*b));
	memcpy(b->cpusvn, p, 16);
	b->miscselect = hsm_getle32(p + 16);
	memcpy(b->isv_ext_prod_id, p + 32, 16);
	memcpy(b->attributes, p + 48, 16);
	memcpy(b->mrenclave, p + 64, 32);
	memcpy(b->mrsigner, p + 128, 32);
	memcpy(b->config_id, p + 192, 64);
	b->isv_prod_id = hsm_getle16(p + 256);
	b->isv_svn = hsm_getle16(p + 258);
	b->config_svn = hsm_getle16(p + 260);
	memcpy(b->isv_family_id, p + 304, 16);
	memcpy(b->report_data, p + 320, 64);
}

/* p holds SGX_TDX10_BODY_LEN, or SGX_TDX15_BODY_LEN when td15. */
static void
parse_td(const uint8_t *p, int td15, struct sgx_td_report *t)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->tee_tcb_svn, p, 16);
	memcpy(t->mrseam, p + 16, 48);
	memcpy(t->mrsignerseam, p + 64, 48);
	memcpy(t->seam_attributes, p + 112, 8);
	memcpy(t->td_attributes, p + 120, 8);
	memcpy(t->xfam, p + 128, 8);
	memcpy(t->mrtd, p + 136, 48);
	memcpy(t->mrconfigid, p + 184, 48);
	memcpy(t->mrowner, p + 232, 48);
	memcpy(t->mrownerconfig, p + 280, 48);
	for (size_t i = 0; i < 4; i++)
		memcpy(t->rtmr[i], p + 328 + 48 * i, 48);
	memcpy(t->report_data, p + 520, 64);
	if (td15) {
		memcpy(t->tee_tcb_svn2, p + 584, 16);
		memcpy(t->mrservicetd, p + 600, 48);
	}
}

/* Certification data: type (u16), size (u32), data; must fill r exactly. */
static int
parse_cert(struct rd *r, uint16_t *type, const uint8_t **data, size_t *dlen,
    const char *what)
{
	uint32_t sz;
	int rc;

	*type = 0;
	*data = NULL;
	*dlen = 0;
	if ((rc = rd_u16(r, type, what)) != 0 ||
	    (rc = rd_u32(r, &sz, what)) != 0)
		return rc;
	if (sz != r->left)
		return hsm_err(HSM_EPROTO, "sgx quote: %s size %u does not "
		    "match the %zu bytes that remain", what, sz, r->left);
	if ((rc = rd_take(r, sz, data, what)) != 0)
		return rc;
	*dlen = sz;
	return 0;
}

int
sgx_quote_parse(const uint8_t *buf, size_t len, struct sgx_quote *q)
{
	struct sgx_quote t;
	struct rd r, sr, cr;
	const uint8_t *p;
	uint32_t siglen, bsize;
	uint16_t authlen, outer;
	size_t bodylen, hdrlen;
	int rc;

	memset(q, 0, sizeof(*q));
	memset(&t, 0, sizeof(t));
	if (buf == NULL || len > SGX_QUOTE_MAX)
		return hsm_err(HSM_EPROTO, "sgx quote: missing or larger "
		    "than %u bytes", SGX_QUOTE_MAX);
	r.p = buf;
	r.left = len;

	/* Header. */
	if ((rc = rd_u16(&r, &t.version, "header version")) != 0 ||
	    (rc = rd_u16(&r, &t.att_key_type, "header key type")) != 0 ||
	    (rc = rd_u32(&r, &t.tee_type, "header tee type")) != 0 ||
	    (rc = rd_u16(&r, &t.qe_svn, "header qe svn")) != 0 ||
	    (rc = rd_u16(&r, &t.pce_svn, "header pce svn")) != 0 ||
	    (rc = rd_take(&r, 16, &p, "header qe vendor id")) != 0)
		return rc;
	memcpy(t.qe_vendor_id, p, 16);
	if ((rc = rd_take(&r, 20, &p, "header user data")) != 0)
		return rc;
	memcpy(t.user_data, p, 20);
	if (t.version != 3 && t.version != 4 && t.version != 5)
		return hsm_err(HSM_EUNSUPPORTED, "sgx quote: version %u not "
		    "supported", t.version);
	if (t.att_key_type != SGX_ATT_KEY_ECDSA_P256)
		return hsm_err(HSM_EUNSUPPORTED, "sgx quote: attestation key "
		    "type %u not supported", t.att_key_type);
	if (t.version == 3 && t.tee_type != 0)
		return hsm_err(HSM_EPROTO, "sgx quote: v3 reserved header "
		    "field is not zero");
	if (t.tee_type != SGX_TEE_SGX && t.tee_type != SGX_TEE_TDX)
		return hsm_err(HSM_EUNSUPPORTED, "sgx quote: tee type 0x%x "
		    "not supported", t.tee_type);
	hdrlen = SGX_QUOTE_HEADER_LEN;
	if (t.version == 5) {
		/* Body descriptor: type and size, which must agree. */
		if ((rc = rd_u16(&r, &t.body_type, "body type")) != 0 ||
		    (rc = rd_u32(&r, &bsize, "body size")) != 0)
			return rc;
		hdrlen += SGX_BODY_DESC_LEN;
		if (t.body_type == SGX_BODY_SGX)
			bodylen = SGX_REPORT_BODY_LEN;
		else if (t.body_type == SGX_BODY_TD10)
			bodylen = SGX_TDX10_BODY_LEN;
		else if (t.body_type == SGX_BODY_TD15)
			bodylen = SGX_TDX15_BODY_LEN;
		else
			return hsm_err(HSM_EUNSUPPORTED, "sgx quote: body type "
			    "%u not supported", t.body_type);
		if (bsize != bodylen)
			return hsm_err(HSM_EPROTO, "sgx quote: body size %u, "
			    "expected %zu for body type %u", bsize, bodylen,
			    t.body_type);
		if ((t.tee_type == SGX_TEE_SGX) !=
		    (t.body_type == SGX_BODY_SGX))
			return hsm_err(HSM_EPROTO, "sgx quote: body type %u "
			    "does not match tee type 0x%x", t.body_type,
			    t.tee_type);
	} else if (t.tee_type == SGX_TEE_SGX) {
		t.body_type = SGX_BODY_SGX;
		bodylen = SGX_REPORT_BODY_LEN;
	} else {
		t.body_type = SGX_BODY_TD10;
		bodylen = SGX_TDX10_BODY_LEN;
	}

	/* Report body. */
	if ((rc = rd_take(&r, bodylen, &p, "report body")) != 0)
		return rc;
	if (t.tee_type == SGX_TEE_SGX)
		parse_body(p, &t.enclave);
	else {
		t.td_body = p;
		t.td_body_len = bodylen;
		parse_td(p, t.body_type == SGX_BODY_TD15, &t.td);
	}
	t.signed_data = buf;
	t.signed_len = hdrlen + bodylen;

	/* Signature data: length, then exactly that many bytes. */
	if ((rc = rd_u32(&r, &siglen, "signature data length")) != 0)
		return rc;
	if (siglen > r.left)
		return hsm_err(HSM_EPROTO, "sgx quote: signature data length "
		    "%u exceeds the %zu bytes that remain", siglen, r.left);
	/* Only zero padding may follow the signature data. */
	for (size_t i = siglen; i < r.left; i++)
		if (r.p[i] != 0)
			return hsm_err(HSM_EPROTO, "sgx quote: signature data "
			    "length %u leaves %zu bytes that are not zero "
			    "padding", siglen, r.left - siglen);
	t.padding_len = r.left - siglen;
	sr.p = r.p;
	sr.left = siglen;
	if ((rc = rd_take(&sr, SGX_ECDSA_SIG_LEN, &t.sig,
	    "quote signature")) != 0 ||
	    (rc = rd_take(&sr, SGX_ECDSA_KEY_LEN, &t.att_key,
	    "attestation key")) != 0)
		return rc;

	if (t.version >= 4) {
		/* v4/v5: QE report etc. live in certification data type 6. */
		if ((rc = parse_cert(&sr, &outer, &p, &cr.left,
		    "outer certification data")) != 0)
			return rc;
		if (outer != SGX_CERT_QE_REPORT)
			return hsm_err(HSM_EPROTO, "sgx quote: outer "
			    "certification data type %u, expected %u", outer,
			    SGX_CERT_QE_REPORT);
		cr.p = p;
	} else
		cr = sr;

	if ((rc = rd_take(&cr, SGX_REPORT_BODY_LEN, &t.qe_report_raw,
	    "qe report")) != 0 ||
	    (rc = rd_take(&cr, SGX_ECDSA_SIG_LEN, &t.qe_report_sig,
	    "qe report signature")) != 0 ||
	    (rc = rd_u16(&cr, &authlen, "qe auth data length")) != 0)
		return rc;
	parse_body(t.qe_report_raw, &t.qe_report);
	if (authlen > cr.left)
		return hsm_err(HSM_EPROTO, "sgx quote: qe auth data length %u "
		    "exceeds the %zu bytes that remain", authlen, cr.left);
	if ((rc = rd_take(&cr, authlen, &t.qe_auth, "qe auth data")) != 0)
		return rc;
	t.qe_auth_len = authlen;
	if ((rc = parse_cert(&cr, &t.cert_type, &t.cert_data, &t.cert_len,
	    "certification data")) != 0)
		return rc;

	*q = t;
	return 0;
}
