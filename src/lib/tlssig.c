/*
 * tlssig.c - the shapes of TLS handshake signature inputs (see tlssig.h).
 * Every offset is checked against len before it is read.
 */
#include <string.h>

#include "tlssig.h"

#define TLS13_PAD 64
#define TLS13_CTX_LEN 33
static const char ctx_server[] = "TLS 1.3, server CertificateVerify";
static const char ctx_client[] = "TLS 1.3, client CertificateVerify";

#define RANDOMS 64			/* client_random || server_random */
#define HS_HDR 4			/* u8 type, u24 length */

enum {
	HS_CLIENT_HELLO = 1, HS_SERVER_HELLO = 2, HS_CERTIFICATE = 11, HS_SERVER_KX = 12,
	HS_CERT_REQUEST = 13, HS_SERVER_DONE = 14, HS_CLIENT_KX = 16, HS_CERT_STATUS = 22,
};

_Static_assert(sizeof(ctx_server) - 1 == TLS13_CTX_LEN, "context string length");
_Static_assert(sizeof(ctx_client) - 1 == TLS13_CTX_LEN, "context string length");

const char *
tlssig_shape_name(enum tlssig_shape shape)
{
	switch (shape) {
	case TLSSIG_TLS13_SERVER_CV: return "TLS 1.3 server CertificateVerify";
	case TLSSIG_TLS13_CLIENT_CV: return "TLS 1.3 client CertificateVerify";
	case TLSSIG_TLS12_SERVER_KX: return "TLS 1.2 ServerKeyExchange";
	case TLSSIG_TLS12_CLIENT_CV: return "TLS 1.2 client CertificateVerify";
	default: return "none";
	}
}

size_t
tlssig_tls13_input(int server, const uint8_t *th, size_t thlen, uint8_t *out)
{
	if (thlen != 32 && thlen != 48)
		return 0;
	memset(out, 0x20, TLS13_PAD);
	memcpy(out + TLS13_PAD, server ? ctx_server : ctx_client, TLS13_CTX_LEN);
	out[TLS13_PAD + TLS13_CTX_LEN] = 0x00;
	memcpy(out + TLS13_PAD + TLS13_CTX_LEN + 1, th, thlen);
	return TLSSIG_TLS13_LEN(thlen);
}

int
tlssig_is_der_whole(const uint8_t *buf, size_t len)
{
	size_t n, hdr, val = 0;

	if (len < 2 || (buf[0] != 0x30 && buf[0] != 0x31))
		return 0;
	if (buf[1] < 0x80)
		return (size_t)buf[1] + 2 == len;
	if (buf[1] == 0x80)
		return 1;		/* indefinite length: it runs to its end-of-contents */
	n = buf[1] & 0x7f;
	hdr = 2 + n;
	if (n == 0x7f || hdr > len)
		return 0;
	for (size_t i = 0; i < n; i++) {
		/* Any value beyond len spans more than there is. */
		if (val > len)
			return 0;
		val = val << 8 | buf[2 + i];
	}
	return val <= len && hdr + val == len;
}

/* Whether the first 64 bytes are spaces (the TLS 1.3 padding). */
static int
spaces(const uint8_t *b, size_t len)
{
	if (len < TLS13_PAD)
		return 0;
	for (size_t i = 0; i < TLS13_PAD; i++)
		if (b[i] != 0x20)
			return 0;
	return 1;
}

/* 64 spaces, a context string, 0, a hash of 32 or 48 bytes. */
static enum tlssig_shape
tls13_cv(const uint8_t *b, size_t len, const char **why)
{
	const uint8_t *ctx;
	size_t hlen;

	if (len < TLS13_PAD + TLS13_CTX_LEN + 1) {
		*why = "TLS 1.3: too short for a CertificateVerify input";
		return TLSSIG_NONE;
	}
	if (!spaces(b, len)) {
		*why = "TLS 1.3: the padding is not 64 spaces";
		return TLSSIG_NONE;
	}
	ctx = b + TLS13_PAD;
	if (memcmp(ctx, ctx_server, TLS13_CTX_LEN) != 0 &&
	    memcmp(ctx, ctx_client, TLS13_CTX_LEN) != 0) {
		*why = "TLS 1.3: not the server's or the client's CertificateVerify context string";
		return TLSSIG_NONE;
	}
	if (ctx[TLS13_CTX_LEN] != 0x00) {
		*why = "TLS 1.3: no 0 byte after the context string";
		return TLSSIG_NONE;
	}
	hlen = len - (TLS13_PAD + TLS13_CTX_LEN + 1);
	if (hlen != 32 && hlen != 48) {
		*why = "TLS 1.3: the transcript hash is not 32 or 48 bytes";
		return TLSSIG_NONE;
	}
	return ctx[9] == 's' ? TLSSIG_TLS13_SERVER_CV : TLSSIG_TLS13_CLIENT_CV;
}

/* The length of a group's public value in a ServerKeyExchange, or 0. */
static size_t
group_point_len(unsigned group, int *uncompressed)
{
	*uncompressed = 1;
	switch (group) {
	case 23: return 65;		/* secp256r1 */
	case 24: return 97;		/* secp384r1 */
	case 25: return 133;		/* secp521r1 */
	case 29: *uncompressed = 0; return 32;	/* x25519 */
	case 30: *uncompressed = 0; return 56;	/* x448 */
	default: return 0;
	}
}

/* client_random || server_random || ServerECDHParams (named curve). */
static enum tlssig_shape
tls12_server_kx(const uint8_t *b, size_t len, const char **why)
{
	size_t plen;
	int unc;

	if (len < RANDOMS + 4 || b[RANDOMS] != 3) {
		*why = "TLS 1.2 ServerKeyExchange: no named-curve ECDHE parameters after the "
		    "randoms";
		return TLSSIG_NONE;
	}
	if ((plen = group_point_len((unsigned)b[RANDOMS + 1] << 8 | b[RANDOMS + 2], &unc)) == 0) {
		*why = "TLS 1.2 ServerKeyExchange: not an ECDHE group (x25519, x448, P-256, "
		    "P-384, P-521)";
		return TLSSIG_NONE;
	}
	if (b[RANDOMS + 3] != plen || len != RANDOMS + 4 + plen) {
		*why = "TLS 1.2 ServerKeyExchange: the public value's length is not its group's";
		return TLSSIG_NONE;
	}
	if (unc && b[RANDOMS + 4] != 0x04) {
		*why = "TLS 1.2 ServerKeyExchange: the point is not uncompressed";
		return TLSSIG_NONE;
	}
	return TLSSIG_TLS12_SERVER_KX;
}

/*
 * The handshake messages of a full TLS 1.2 handshake with client
 * authentication, up to the client's CertificateVerify. Steps of the
 * grammar: a type, and whether it may be absent.
 */
static const struct {
	uint8_t type;
	uint8_t optional;
} cv_grammar[] = {
	{ HS_CLIENT_HELLO, 0 }, { HS_SERVER_HELLO, 0 }, { HS_CERTIFICATE, 0 },
	{ HS_CERT_STATUS, 1 }, { HS_SERVER_KX, 1 }, { HS_CERT_REQUEST, 0 },
	{ HS_SERVER_DONE, 0 }, { HS_CERTIFICATE, 0 }, { HS_CLIENT_KX, 0 },
};

static enum tlssig_shape
tls12_client_cv(const uint8_t *b, size_t len, const char **why)
{
	size_t off = 0, step = 0, nsteps = sizeof(cv_grammar) / sizeof(cv_grammar[0]);

	while (off < len) {
		size_t blen;
		uint8_t type;

		if (len - off < HS_HDR) {
			*why = "TLS 1.2 handshake messages: a message header is cut short";
			return TLSSIG_NONE;
		}
		type = b[off];
		blen = (size_t)b[off + 1] << 16 | (size_t)b[off + 2] << 8 | b[off + 3];
		if (blen > len - off - HS_HDR) {
			*why = "TLS 1.2 handshake messages: a message is longer than the data";
			return TLSSIG_NONE;
		}
		while (step < nsteps && cv_grammar[step].type != type && cv_grammar[step].optional)
			step++;
		if (step == nsteps || cv_grammar[step].type != type) {
			*why = "TLS 1.2 handshake messages: not the messages of a full handshake with "
			    "client authentication, in order";
			return TLSSIG_NONE;
		}
		/* Both hellos: version 3,3 (TLS 1.2; a TLS 1.3 client's legacy_version too). */
		if ((type == HS_CLIENT_HELLO || type == HS_SERVER_HELLO) &&
		    (blen < 2 + 32 || b[off + HS_HDR] != 3 || b[off + HS_HDR + 1] != 3)) {
			*why = "TLS 1.2 handshake messages: a hello without version 3,3 and a random";
			return TLSSIG_NONE;
		}
		step++;
		off += HS_HDR + blen;
	}
	if (step != nsteps) {
		*why = "TLS 1.2 handshake messages: they do not end with the client's key exchange";
		return TLSSIG_NONE;
	}
	return TLSSIG_TLS12_CLIENT_CV;
}

enum tlssig_shape
tlssig_classify(const uint8_t *tbs, size_t len, unsigned flags, const char **why)
{
	const char *dummy, *why13 = NULL, *whycv = NULL, *whykx = NULL;
	enum tlssig_shape s = TLSSIG_NONE;

	if (why == NULL)
		why = &dummy;
	if (len == 0) {
		*why = "no data";
		return TLSSIG_NONE;
	}
	if (len > TLSSIG_MAX_TBS) {
		*why = "longer than any TLS handshake signature input accepted (64 KiB)";
		return TLSSIG_NONE;
	}
	/* First, for every shape: never a DER structure that spans the data. */
	if (tlssig_is_der_whole(tbs, len)) {
		*why = "a DER SEQUENCE or SET spanning the data, like a CMP message, a certificate "
		    "or a CSR";
		return TLSSIG_NONE;
	}
	/*
	 * Every shape the first bytes allow. A ServerKeyExchange's first 64
	 * bytes are random, so it is tried whatever they are.
	 */
	if (tbs[0] == 0x20 && (s = tls13_cv(tbs, len, &why13)) != TLSSIG_NONE)
		return s;
	if (tbs[0] == HS_CLIENT_HELLO)
		s = tls12_client_cv(tbs, len, &whycv);
	if (s == TLSSIG_NONE && len > RANDOMS && tbs[RANDOMS] == 3)
		s = tls12_server_kx(tbs, len, &whykx);
	if (s != TLSSIG_NONE) {
		if ((flags & TLSSIG_ALLOW_TLS12) != 0)
			return s;
		*why = "a TLS 1.2 handshake signature input, but TLS 1.2 signing is off";
		return TLSSIG_NONE;
	}
	/* The reason of the shape the data resembles most. */
	if (why13 != NULL && spaces(tbs, len))
		*why = why13;
	else if (whycv != NULL)
		*why = whycv;
	else if (whykx != NULL)
		*why = whykx;
	else if (why13 != NULL)
		*why = why13;
	else
		*why = "neither 64 spaces (TLS 1.3), a ClientHello (TLS 1.2) nor ECDHE "
		    "parameters at byte 64 (TLS 1.2)";
	return TLSSIG_NONE;
}
