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
	case KH_T_GENERATE:
		if (f->bodylen < 1)
			return HSM_EPROTO;
		r->keytype = f->body[0];
		if (r->keytype != HSM_KEY_EC_P256 && r->keytype != HSM_KEY_EC_P384 &&
		    r->keytype != HSM_KEY_RSA_3072)
			return HSM_EPROTO;
		return get_label(f, 0, r, 1);
	case KH_T_FIND:
		return get_label(f, 1, r, 0);
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
