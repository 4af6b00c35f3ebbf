/*
 * agentproto.c - the agent's local API frames (see agentproto.h). The
 * agent runs the request decoder on bytes from local clients of any uid,
 * clients run the reply decoder on the agent's bytes: every length is
 * checked against what was received before it is used.
 */
#include <stdlib.h>
#include <string.h>

#include "agentproto.h"
#include "err.h"
#include "spiffe.h"
#include "util.h"

_Static_assert(AG_MAX_REQUEST <= AG_MAX_FRAME, "the longest request is a frame");

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)hsm_get32(p) << 32 | hsm_get32(p + 4);
}

static void
put64(uint8_t *p, uint64_t v)
{
	hsm_put32(p, (uint32_t)(v >> 32));
	hsm_put32(p + 4, (uint32_t)v);
}

int
ag_frame_parse(const uint8_t *buf, size_t len, struct ag_frame *f)
{
	uint32_t flen;

	memset(f, 0, sizeof(*f));
	if (len < 4)
		return 0;
	flen = hsm_get32(buf);
	if (flen < AG_HDR_LEN - 4 || flen > AG_MAX_FRAME - 4)
		return HSM_EPROTO;
	/* Check what has arrived of the header early: garbage closes at once. */
	if (len >= 5 && buf[4] != AG_VERSION)
		return HSM_EPROTO;
	if ((len >= 7 && buf[6] != 0) || (len >= 8 && buf[7] != 0))
		return HSM_EPROTO;
	if (len < (size_t)flen + 4)
		return 0;
	f->type = buf[5];
	f->id = hsm_get32(buf + 8);
	f->body = buf + AG_HDR_LEN;
	f->bodylen = (size_t)flen + 4 - AG_HDR_LEN;
	return (int)flen + 4;
}

/*
 * Whether s (NUL-terminated) is a well-formed SPIFFE ID: 0, HSM_EINVAL or
 * HSM_ENOMEM. The parsed form (2.3 KB) is put on the heap: the SIGN
 * encoder runs inside OpenSSL async jobs, whose stack is 32 KB.
 */
static int
id_check(const char *s)
{
	struct spiffe_id *sid;
	int r;

	if ((sid = malloc(sizeof(*sid))) == NULL)
		return HSM_ENOMEM;
	r = spiffe_id_parse(s, sid);
	free(sid);
	return r;
}

/* Copy n bytes of a SPIFFE ID from the wire and validate it. Empty is allowed when allow_empty. */
static int
get_id(const uint8_t *p, size_t n, int allow_empty, char out[SPIFFE_ID_MAX + 1])
{
	out[0] = '\0';
	if (n == 0)
		return allow_empty ? 0 : HSM_EPROTO;
	if (n > SPIFFE_ID_MAX || memchr(p, '\0', n) != NULL)
		return HSM_EPROTO;
	memcpy(out, p, n);
	out[n] = '\0';
	if (id_check(out) != 0) {
		out[0] = '\0';
		return HSM_EPROTO;
	}
	return 0;
}

static int
digest_ok(uint8_t alg, size_t dlen)
{
	int want = hsm_sigalg_digest_len(alg);

	if (want < 0 || dlen < 20 || dlen > 64)
		return 0;
	return want == 0 || dlen == (size_t)want;
}

size_t
ag_hash_len(int hash)
{
	switch (hash) {
	case AG_HASH_SHA256: return 32;
	case AG_HASH_SHA384: return 48;
	case AG_HASH_SHA512: return 64;
	default: return 0;
	}
}

/* A known hash for alg: any for ECDSA, the algorithm's own for RSA. */
static int
hash_ok(uint8_t alg, uint8_t hash)
{
	int want = hsm_sigalg_digest_len(alg);
	size_t n = ag_hash_len(hash);

	return want >= 0 && n != 0 && (want == 0 || (size_t)want == n);
}

/*
 * The last field of a body b[0..n): at off, a u32 length and exactly that
 * many bytes (at most max) to the end. *out points into b (NULL when
 * empty). 0 or HSM_EPROTO.
 */
static int
get_tail(const uint8_t *b, size_t n, size_t off, size_t max, const uint8_t **out, size_t *len)
{
	size_t l;

	if (off > n || n - off < 4)
		return HSM_EPROTO;
	l = hsm_get32(b + off);
	off += 4;
	if (l > max || n - off != l)
		return HSM_EPROTO;
	*out = l > 0 ? b + off : NULL;
	*len = l;
	return 0;
}

/*
 * SIGN_TBS body: u16 idlen, ID, u8 alg, u8 hash, u8 keyidlen, key id,
 * u32 tbslen, tbs; every length checked against what is left.
 */
static int
decode_sign_tbs(const uint8_t *b, size_t n, struct ag_request *r)
{
	size_t idlen, off, klen;

	if (n < 2 || (idlen = hsm_get16(b)) > SPIFFE_ID_MAX || n - 2 < idlen + 3)
		return HSM_EPROTO;
	if (get_id(b + 2, idlen, 1, r->spiffe_id) != 0)
		return HSM_EPROTO;
	off = 2 + idlen;
	r->alg = b[off];
	r->hash = b[off + 1];
	klen = b[off + 2];
	off += 3;
	if (!hash_ok(r->alg, r->hash) || (klen != 0 && klen != HSM_KEYID_LEN) ||
	    n - off < klen + 4)
		return HSM_EPROTO;
	if (klen != 0) {
		memcpy(r->keyid, b + off, HSM_KEYID_LEN);
		r->has_keyid = 1;
		off += klen;
	}
	return get_tail(b, n, off, AG_MAX_TBS, &r->tbs, &r->tbslen);
}

int
ag_request_decode(const struct ag_frame *f, struct ag_request *r)
{
	size_t idlen, off, rest;

	memset(r, 0, sizeof(*r));
	r->type = f->type;
	r->id = f->id;

	switch (f->type) {
	case AG_T_GET_SVID:
	case AG_T_SUBSCRIBE:
		return get_id(f->body, f->bodylen, 1, r->spiffe_id);
	case AG_T_SIGN:
		if (f->bodylen < 2)
			return HSM_EPROTO;
		idlen = hsm_get16(f->body);
		if (idlen > SPIFFE_ID_MAX || f->bodylen < 2 + idlen + 2)
			return HSM_EPROTO;
		if (get_id(f->body + 2, idlen, 1, r->spiffe_id) != 0)
			return HSM_EPROTO;
		off = 2 + idlen;
		r->alg = f->body[off];
		r->dlen = f->body[off + 1];
		off += 2;
		/* Then the digest, then nothing or exactly a key id. */
		if (f->bodylen < off + r->dlen || !digest_ok(r->alg, r->dlen) ||
		    ((rest = f->bodylen - off - r->dlen) != 0 && rest != HSM_KEYID_LEN)) {
			memset(r, 0, sizeof(*r));
			return HSM_EPROTO;
		}
		memcpy(r->digest, f->body + off, r->dlen);
		off += r->dlen;
		if (rest == HSM_KEYID_LEN) {
			memcpy(r->keyid, f->body + off, HSM_KEYID_LEN);
			r->has_keyid = 1;
		}
		return 0;
	case AG_T_SIGN_TBS:
		if (decode_sign_tbs(f->body, f->bodylen, r) != 0) {
			memset(r, 0, sizeof(*r));
			return HSM_EPROTO;
		}
		return 0;
	case AG_T_CRL_SUBSCRIBE:
		return f->bodylen == 0 ? 0 : HSM_EPROTO;
	default:
		return HSM_EPROTO;
	}
}

static int
decode_svid(const uint8_t *p, size_t n, struct ag_svid *s)
{
	size_t idlen, off, clen;

	if (n < 2)
		return HSM_EPROTO;
	idlen = hsm_get16(p);
	if (idlen == 0 || idlen > SPIFFE_ID_MAX || n < 2 + idlen + 8 + 4)
		return HSM_EPROTO;
	if (get_id(p + 2, idlen, 0, s->spiffe_id) != 0)
		return HSM_EPROTO;
	off = 2 + idlen;
	s->not_after = get64(p + off);
	off += 8;
	clen = hsm_get32(p + off);
	off += 4;
	if (clen == 0 || clen > AG_MAX_PEM || n - off < clen + 4)
		return HSM_EPROTO;
	s->chain = p + off;
	s->chainlen = clen;
	return get_tail(p, n, off + clen, AG_MAX_PEM, &s->bundle, &s->bundlelen);
}

int
ag_reply_decode(const struct ag_frame *f, struct ag_reply *r)
{
	uint32_t st;
	uint8_t req;
	size_t n;
	int ret;

	memset(r, 0, sizeof(*r));
	r->type = f->type;
	r->id = f->id;
	if (f->type == AG_T_UPDATE)
		req = AG_T_SUBSCRIBE;
	else if (f->type == AG_T_CRL)
		req = AG_T_CRL_SUBSCRIBE;
	else if ((f->type & AG_T_REPLY) != 0)
		req = f->type & (uint8_t)~AG_T_REPLY;
	else
		return HSM_EPROTO;
	if (req != AG_T_GET_SVID && req != AG_T_SUBSCRIBE && req != AG_T_SIGN &&
	    req != AG_T_SIGN_TBS && req != AG_T_CRL_SUBSCRIBE)
		return HSM_EPROTO;
	/* A CRL push is never an error. */
	if (f->type == AG_T_CRL && (f->bodylen < 4 || hsm_get32(f->body) != 0))
		return HSM_EPROTO;
	if (f->bodylen < 4)
		return HSM_EPROTO;
	st = hsm_get32(f->body);
	if (st != 0) {
		/* A negated HSM_E* code; keep unknown ones inside the range. */
		if (st > (uint32_t)-HSM_ERR_MIN)
			return HSM_EPROTO;
		r->status = -(int)st;
		n = f->bodylen - 4;
		if (n > AG_MAX_ERRTEXT)
			return HSM_EPROTO;
		for (size_t i = 0; i < n; i++) {
			uint8_t c = f->body[4 + i];

			r->errtext[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
		}
		r->errtext[n] = '\0';
		return 0;
	}
	if (req == AG_T_CRL_SUBSCRIBE) {
		/* u32 crllen, then exactly that much DER; 0 (reply only): none yet. */
		if (f->bodylen < 8 || (n = hsm_get32(f->body + 4)) > AG_MAX_CRL ||
		    n != f->bodylen - 8 || (n == 0 && f->type == AG_T_CRL)) {
			memset(r, 0, sizeof(*r));
			return HSM_EPROTO;
		}
		r->crl = n > 0 ? f->body + 8 : NULL;
		r->crllen = n;
		return 0;
	}
	if (req == AG_T_SIGN || req == AG_T_SIGN_TBS) {
		n = f->bodylen - 4;
		if (n == 0 || n > HSM_MAX_SIG)
			return HSM_EPROTO;
		r->sig = f->body + 4;
		r->siglen = n;
		return 0;
	}
	if ((ret = decode_svid(f->body + 4, f->bodylen - 4, &r->svid)) != 0) {
		memset(r, 0, sizeof(*r));
		return ret;
	}
	return 0;
}

/* Allocate a frame of bodylen bytes and write its header; *body points past it. */
static int
frame_new(uint8_t type, uint32_t id, size_t bodylen, uint8_t **out, size_t *len, uint8_t **body)
{
	size_t total = AG_HDR_LEN + bodylen;
	uint8_t *p;

	*out = NULL;
	*len = 0;
	if (bodylen > AG_MAX_FRAME - AG_HDR_LEN)
		return HSM_EINVAL;
	if ((p = calloc(1, total)) == NULL)
		return HSM_ENOMEM;
	hsm_put32(p, (uint32_t)(total - 4));
	p[4] = AG_VERSION;
	p[5] = type;
	hsm_put32(p + 8, id);
	*body = p + AG_HDR_LEN;
	*out = p;
	*len = total;
	return 0;
}

static int
id_len_ok(const char *spiffe_id, size_t *n, int allow_empty)
{
	*n = spiffe_id != NULL ? strlen(spiffe_id) : 0;
	if (*n == 0)
		return allow_empty;
	return *n <= SPIFFE_ID_MAX && id_check(spiffe_id) == 0;
}

int
ag_encode_get(uint8_t type, uint32_t id, const char *spiffe_id, uint8_t **out, size_t *len)
{
	uint8_t *b;
	size_t n;
	int r;

	*out = NULL;
	*len = 0;
	if ((type != AG_T_GET_SVID && type != AG_T_SUBSCRIBE) || !id_len_ok(spiffe_id, &n, 1))
		return HSM_EINVAL;
	if ((r = frame_new(type, id, n, out, len, &b)) != 0)
		return r;
	if (n > 0)
		memcpy(b, spiffe_id, n);
	return 0;
}

int
ag_encode_sign(uint32_t id, const char *spiffe_id, const uint8_t *keyid, uint8_t alg,
    const uint8_t *dgst, size_t dlen, uint8_t **out, size_t *len)
{
	uint8_t *b;
	size_t n, off;
	int r;

	*out = NULL;
	*len = 0;
	if (!id_len_ok(spiffe_id, &n, 1) || !digest_ok(alg, dlen) || dgst == NULL)
		return HSM_EINVAL;
	if ((r = frame_new(AG_T_SIGN, id, 2 + n + 2 + dlen + (keyid != NULL ? HSM_KEYID_LEN : 0),
	    out, len, &b)) != 0)
		return r;
	hsm_put16(b, (uint16_t)n);
	if (n > 0)
		memcpy(b + 2, spiffe_id, n);
	off = 2 + n;
	b[off] = alg;
	b[off + 1] = (uint8_t)dlen;
	memcpy(b + off + 2, dgst, dlen);
	if (keyid != NULL)
		memcpy(b + off + 2 + dlen, keyid, HSM_KEYID_LEN);
	return 0;
}

int
ag_encode_sign_tbs(uint32_t id, const char *spiffe_id, const uint8_t *keyid, uint8_t alg,
    uint8_t hash, const uint8_t *tbs, size_t tbslen, uint8_t **out, size_t *len)
{
	size_t n, off, klen = keyid != NULL ? HSM_KEYID_LEN : 0;
	uint8_t *b;
	int r;

	*out = NULL;
	*len = 0;
	if (!id_len_ok(spiffe_id, &n, 1) || !hash_ok(alg, hash) || tbslen > AG_MAX_TBS ||
	    (tbs == NULL && tbslen > 0))
		return HSM_EINVAL;
	if ((r = frame_new(AG_T_SIGN_TBS, id, 2 + n + 3 + klen + 4 + tbslen, out, len, &b)) != 0)
		return r;
	hsm_put16(b, (uint16_t)n);
	if (n > 0)
		memcpy(b + 2, spiffe_id, n);
	off = 2 + n;
	b[off] = alg;
	b[off + 1] = hash;
	b[off + 2] = (uint8_t)klen;
	off += 3;
	if (klen > 0)
		memcpy(b + off, keyid, klen);
	off += klen;
	hsm_put32(b + off, (uint32_t)tbslen);
	if (tbslen > 0)
		memcpy(b + off + 4, tbs, tbslen);
	return 0;
}

int
ag_encode_svid(uint8_t type, uint32_t id, const struct ag_svid *s, uint8_t **out, size_t *len)
{
	uint8_t *b;
	size_t n, off;
	int r;

	*out = NULL;
	*len = 0;
	if (type != (AG_T_GET_SVID | AG_T_REPLY) && type != (AG_T_SUBSCRIBE | AG_T_REPLY) &&
	    type != AG_T_UPDATE)
		return HSM_EINVAL;
	if (!id_len_ok(s->spiffe_id, &n, 0) || s->chain == NULL || s->chainlen == 0 ||
	    s->chainlen > AG_MAX_PEM || s->bundlelen > AG_MAX_PEM ||
	    (s->bundlelen > 0 && s->bundle == NULL))
		return HSM_EINVAL;
	if ((r = frame_new(type, id, 4 + 2 + n + 8 + 4 + s->chainlen + 4 + s->bundlelen,
	    out, len, &b)) != 0)
		return r;
	/* b[0..3]: status 0, already zero. */
	off = 4;
	hsm_put16(b + off, (uint16_t)n);
	memcpy(b + off + 2, s->spiffe_id, n);
	off += 2 + n;
	put64(b + off, s->not_after);
	off += 8;
	hsm_put32(b + off, (uint32_t)s->chainlen);
	memcpy(b + off + 4, s->chain, s->chainlen);
	off += 4 + s->chainlen;
	hsm_put32(b + off, (uint32_t)s->bundlelen);
	if (s->bundlelen > 0)
		memcpy(b + off + 4, s->bundle, s->bundlelen);
	return 0;
}

int
ag_encode_crl_subscribe(uint32_t id, uint8_t **out, size_t *len)
{
	uint8_t *b;

	return frame_new(AG_T_CRL_SUBSCRIBE, id, 0, out, len, &b);
}

int
ag_encode_crl(uint8_t type, uint32_t id, const uint8_t *der, size_t derlen, uint8_t **out,
    size_t *len)
{
	uint8_t *b;
	int r;

	*out = NULL;
	*len = 0;
	if ((type != AG_T_CRL && type != (AG_T_CRL_SUBSCRIBE | AG_T_REPLY)) ||
	    derlen > AG_MAX_CRL || (derlen > 0 && der == NULL) ||
	    (derlen == 0 && type == AG_T_CRL))
		return HSM_EINVAL;
	if ((r = frame_new(type, id, 8 + derlen, out, len, &b)) != 0)
		return r;
	hsm_put32(b + 4, (uint32_t)derlen);
	if (derlen > 0)
		memcpy(b + 8, der, derlen);
	return 0;
}

int
ag_encode_sig(uint32_t id, const uint8_t *sig, size_t siglen, uint8_t **out, size_t *len)
{
	uint8_t *b;
	int r;

	*out = NULL;
	*len = 0;
	if (sig == NULL || siglen == 0 || siglen > HSM_MAX_SIG)
		return HSM_EINVAL;
	if ((r = frame_new(AG_T_SIGN_TBS | AG_T_REPLY, id, 4 + siglen, out, len, &b)) != 0)
		return r;
	memcpy(b + 4, sig, siglen);
	return 0;
}

int
ag_encode_error(uint8_t type, uint32_t id, int status, const char *text, uint8_t **out,
    size_t *len)
{
	uint8_t *b;
	size_t n = text != NULL ? strlen(text) : 0;
	int r;

	*out = NULL;
	*len = 0;
	if (status >= 0 || status < HSM_ERR_MIN)
		return HSM_EINVAL;
	if (type != AG_T_UPDATE && ((type & AG_T_REPLY) == 0 ||
	    ((type & ~AG_T_REPLY) != AG_T_GET_SVID && (type & ~AG_T_REPLY) != AG_T_SUBSCRIBE &&
	    (type & ~AG_T_REPLY) != AG_T_SIGN && (type & ~AG_T_REPLY) != AG_T_SIGN_TBS &&
	    (type & ~AG_T_REPLY) != AG_T_CRL_SUBSCRIBE)))
		return HSM_EINVAL;
	if (n > AG_MAX_ERRTEXT)
		n = AG_MAX_ERRTEXT;
	if ((r = frame_new(type, id, 4 + n, out, len, &b)) != 0)
		return r;
	hsm_put32(b, (uint32_t)-status);
	if (n > 0)
		memcpy(b + 4, text, n);
	return 0;
}
