/*
 * khproto.c - keyholder frame encoding and validation (see khproto.h).
 * The keyholder runs this on bytes from less privileged peers: every
 * length is checked against what was received before it is used.
 */
#include <string.h>

#include "err.h"
#include "khproto.h"
#include "util.h"

int
kh_frame_parse(const uint8_t *buf, size_t len, struct kh_frame *f)
{
	uint32_t flen;

	memset(f, 0, sizeof(*f));
	if (len < 4)
		return 0;
	flen = hsm_get32(buf);
	if (flen < KH_HDR_LEN - 4 || flen > KH_MAX_FRAME - 4)
		return HSM_EPROTO;
	if (len >= 8 && (buf[4] != KH_VERSION || buf[6] != 0 || buf[7] != 0))
		return HSM_EPROTO;
	if (len < (size_t)flen + 4)
		return 0;
	f->type = buf[5];
	f->id = hsm_get32(buf + 8);
	f->arg = hsm_get32(buf + 12);
	f->body = buf + KH_HDR_LEN;
	f->bodylen = flen + 4 - KH_HDR_LEN;
	return (int)flen + 4;
}

/* Labels are names chosen by peers and end up in token objects and logs. */
static int
label_ok(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return 0;
	return 1;
}

static int
get_label(const struct kh_frame *f, size_t min, struct kh_request *r, size_t off)
{
	size_t n;

	if (f->bodylen < off + 1)
		return HSM_EPROTO;
	n = f->body[off];
	if (n < min || n > HSM_MAX_LABEL || f->bodylen != off + 1 + n ||
	    !label_ok(f->body + off + 1, n))
		return HSM_EPROTO;
	memcpy(r->label, f->body + off + 1, n);
	r->label[n] = '\0';
	return 0;
}

/*
 * UNWRAP: keyid, u8 oaep, u16 tlen, transport, u16 spkilen, spki, u8
 * label_len, label, the wrapped key (the rest). Each length is checked
 * against what is left before it is used.
 */
static int
decode_unwrap(const struct kh_frame *f, struct kh_request *r)
{
	const uint8_t *p = f->body, *end = f->body + f->bodylen;
	struct hsm_wrapped *w = &r->wrapped;
	size_t n;

	if ((size_t)(end - p) < HSM_KEYID_LEN + 3)
		return HSM_EPROTO;
	memcpy(r->keyid, p, HSM_KEYID_LEN);
	p += HSM_KEYID_LEN;
	w->oaep = *p++;
	if (w->oaep != HSM_OAEP_SHA1 && w->oaep != HSM_OAEP_SHA256)
		return HSM_EPROTO;
	n = hsm_get16(p);
	p += 2;
	if (n == 0 || n > HSM_TRANSPORT_MAX || (size_t)(end - p) < n + 2)
		return HSM_EPROTO;
	memcpy(w->transport, p, n);
	w->tlen = n;
	p += n;
	n = hsm_get16(p);
	p += 2;
	if (n == 0 || n > HSM_MAX_SPKI || (size_t)(end - p) < n + 1)
		return HSM_EPROTO;
	memcpy(r->spki, p, n);
	r->spkilen = n;
	p += n;
	n = *p++;
	if (n > HSM_MAX_LABEL || (size_t)(end - p) < n || !label_ok(p, n))
		return HSM_EPROTO;
	memcpy(r->label, p, n);
	r->label[n] = '\0';
	p += n;
	n = (size_t)(end - p);
	if (n < 16 || n > HSM_WRAPPED_MAX)
		return HSM_EPROTO;
	memcpy(w->key, p, n);
	w->klen = n;
	return 0;
}

int
kh_request_decode(const struct kh_frame *f, struct kh_request *r)
{
	int want;

	memset(r, 0, sizeof(*r));
	r->type = f->type;
	r->id = f->id;
	r->deadline_ms = f->arg;
	if (f->arg == 0 || f->arg > KH_MAX_DEADLINE_MS)
		return HSM_EPROTO;

	switch (f->type) {
	case KH_T_GENERATE: {
		struct kh_frame lf = *f;

		if (f->bodylen < 2)
			return HSM_EPROTO;
		r->keytype = f->body[0];
		if (r->keytype != HSM_KEY_EC_P256 && r->keytype != HSM_KEY_EC_P384 &&
		    r->keytype != HSM_KEY_RSA_3072)
			return HSM_EPROTO;
		/* An optional flags byte after the label. */
		if (f->bodylen == 2u + f->body[1] + 1u) {
			r->genflags = f->body[f->bodylen - 1];
			if ((r->genflags & ~HSM_GEN_ALL) != 0)
				return HSM_EPROTO;
			lf.bodylen--;
		}
		return get_label(&lf, 0, r, 1);
	}
	case KH_T_FIND:
	case KH_T_UNWRAPPING_KEY:
		return get_label(f, 1, r, 0);
	case KH_T_WRAP:
		if (f->bodylen <= HSM_KEYID_LEN || f->bodylen > HSM_KEYID_LEN + HSM_MAX_SPKI)
			return HSM_EPROTO;
		memcpy(r->keyid, f->body, HSM_KEYID_LEN);
		r->spkilen = f->bodylen - HSM_KEYID_LEN;
		memcpy(r->spki, f->body + HSM_KEYID_LEN, r->spkilen);
		return 0;
	case KH_T_UNWRAP:
		return decode_unwrap(f, r);
	case KH_T_PUBKEY:
	case KH_T_DESTROY:
	case KH_T_ATTRS:
		if (f->bodylen != HSM_KEYID_LEN)
			return HSM_EPROTO;
		memcpy(r->keyid, f->body, HSM_KEYID_LEN);
		return 0;
	case KH_T_SIGN:
		if (f->bodylen < HSM_KEYID_LEN + 2)
			return HSM_EPROTO;
		memcpy(r->keyid, f->body, HSM_KEYID_LEN);
		r->alg = f->body[HSM_KEYID_LEN];
		r->dlen = f->body[HSM_KEYID_LEN + 1];
		if (f->bodylen != HSM_KEYID_LEN + 2 + r->dlen)
			return HSM_EPROTO;
		want = hsm_sigalg_digest_len(r->alg);
		if (want < 0 || r->dlen < 20 || r->dlen > 64 ||
		    (want > 0 && r->dlen != (size_t)want))
			return HSM_EPROTO;
		memcpy(r->digest, f->body + HSM_KEYID_LEN + 2, r->dlen);
		return 0;
	case KH_T_PING:
	case KH_T_POOL:
		return f->bodylen == 0 ? 0 : HSM_EPROTO;
	case KH_T_LIST:
		if (f->bodylen < HSM_KEYID_LEN + 1)
			return HSM_EPROTO;
		memcpy(r->keyid, f->body, HSM_KEYID_LEN);
		return get_label(f, 1, r, HSM_KEYID_LEN);
	default:
		return HSM_EPROTO;
	}
}

int
kh_list_parse(const uint8_t *body, size_t len, const uint8_t after[HSM_KEYID_LEN],
    const char *prefix, struct kh_list_entry *out, size_t *n)
{
	const uint8_t *last = after;
	size_t off = 0, plen = strlen(prefix);

	*n = 0;
	while (off < len) {
		struct kh_list_entry *e = &out[*n];
		size_t ll;

		if (*n >= KH_LIST_MAX || len - off < HSM_KEYID_LEN + 1)
			return HSM_EPROTO;
		ll = body[off + HSM_KEYID_LEN];
		if (ll < 1 || ll > HSM_MAX_LABEL || len - off - HSM_KEYID_LEN - 1 < ll ||
		    !label_ok(body + off + HSM_KEYID_LEN + 1, ll) || ll < plen ||
		    memcmp(body + off + HSM_KEYID_LEN + 1, prefix, plen) != 0 ||
		    memcmp(body + off, last, HSM_KEYID_LEN) <= 0)
			return HSM_EPROTO;
		memcpy(e->keyid, body + off, HSM_KEYID_LEN);
		memcpy(e->label, body + off + HSM_KEYID_LEN + 1, ll);
		e->label[ll] = '\0';
		last = e->keyid;
		off += HSM_KEYID_LEN + 1 + ll;
		(*n)++;
	}
	return 0;
}

int
kh_list_encode(const struct kh_list_entry *e, size_t n, uint8_t *out, size_t cap)
{
	size_t off = 0;

	if (n > KH_LIST_MAX)
		return HSM_EINVAL;
	for (size_t i = 0; i < n; i++) {
		size_t ll = strlen(e[i].label);

		if (ll < 1 || ll > HSM_MAX_LABEL || cap - off < HSM_KEYID_LEN + 1 + ll)
			return HSM_EINVAL;
		memcpy(out + off, e[i].keyid, HSM_KEYID_LEN);
		out[off + HSM_KEYID_LEN] = (uint8_t)ll;
		memcpy(out + off + HSM_KEYID_LEN + 1, e[i].label, ll);
		off += HSM_KEYID_LEN + 1 + ll;
	}
	return (int)off;
}

int
kh_frame_encode(uint8_t *out, size_t cap, uint8_t type, uint32_t id, uint32_t arg,
    const uint8_t *body, size_t bodylen, const uint8_t *body2, size_t body2len)
{
	size_t total = KH_HDR_LEN + bodylen + body2len;

	if (bodylen > KH_MAX_FRAME || body2len > KH_MAX_FRAME ||
	    total > KH_MAX_FRAME || total > cap)
		return HSM_EINVAL;
	hsm_put32(out, (uint32_t)(total - 4));
	out[4] = KH_VERSION;
	out[5] = type;
	out[6] = out[7] = 0;
	hsm_put32(out + 8, id);
	hsm_put32(out + 12, arg);
	if (bodylen > 0)
		memcpy(out + KH_HDR_LEN, body, bodylen);
	if (body2len > 0)
		memcpy(out + KH_HDR_LEN + bodylen, body2, body2len);
	return (int)total;
}

int
kh_frame_encode3(uint8_t *out, size_t cap, uint8_t type, uint32_t id, const uint8_t *b1,
    size_t l1, const uint8_t *b2, size_t l2, const uint8_t *b3, size_t l3)
{
	int n;

	if (l3 > KH_MAX_FRAME || (n = kh_frame_encode(out, cap, type, id, 0, b1, l1, b2, l2)) < 0 ||
	    (size_t)n + l3 > KH_MAX_FRAME || (size_t)n + l3 > cap)
		return HSM_EINVAL;
	if (l3 > 0)
		memcpy(out + n, b3, l3);
	hsm_put32(out, (uint32_t)((size_t)n + l3 - 4));
	return n + (int)l3;
}

void
kh_pool_encode(const struct kh_pool *p, uint8_t out[KH_POOL_LEN])
{
	const uint16_t h[6] = { p->sessions, p->min, p->max, p->open, p->cap, 0 };

	for (int i = 0; i < 6; i++) {
		out[2 * i] = (uint8_t)(h[i] >> 8);
		out[2 * i + 1] = (uint8_t)h[i];
	}
	for (int i = 0; i < 4; i++) {
		out[12 + i] = (uint8_t)(p->latency_us >> (24 - 8 * i));
		out[16 + i] = (uint8_t)(p->base_us >> (24 - 8 * i));
	}
}

int
kh_pool_parse(const uint8_t *body, size_t len, struct kh_pool *p)
{
	uint16_t h[6];

	memset(p, 0, sizeof(*p));
	if (len != KH_POOL_LEN)
		return HSM_EPROTO;
	for (int i = 0; i < 6; i++)
		h[i] = (uint16_t)(body[2 * i] << 8 | body[2 * i + 1]);
	if (h[5] != 0 || h[1] > h[2])
		return HSM_EPROTO;
	p->sessions = h[0];
	p->min = h[1];
	p->max = h[2];
	p->open = h[3];
	p->cap = h[4];
	for (int i = 0; i < 4; i++) {
		p->latency_us = p->latency_us << 8 | body[12 + i];
		p->base_us = p->base_us << 8 | body[16 + i];
	}
	return 0;
}
