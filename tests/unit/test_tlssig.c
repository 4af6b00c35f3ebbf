/*
 * test_tlssig.c - what the agent signs (tlssig.h). The accepted shapes
 * are taken from real OpenSSL handshakes (TLS 1.3 and 1.2, mutual, EC
 * P-256/P-384 and RSA keys, several cipher suites and every ECDHE group)
 * over a BIO pair: a message callback records the handshake messages, the
 * test rebuilds what each CertificateVerify and ServerKeyExchange signed
 * and checks it with the signature OpenSSL sent, so the bytes are exactly
 * what libssl signs. Then every near miss of them is refused, and so are
 * a CMP kur's ProtectedPart built by OpenSSL's CMP client, a
 * TBSCertificate, a CSR's CertificationRequestInfo and raw digests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tlssig.h"

#include "cmpkur.h"

#define MAX_MSGS 32
#define ALL TLSSIG_ALLOW_TLS12

/* ---- keys and certificates made here ---- */

static EVP_PKEY *
new_key(const char *kind)
{
	EVP_PKEY *k = NULL;

	if (strcmp(kind, "rsa") == 0)
		k = EVP_RSA_gen(2048);
	else
		k = EVP_EC_gen(kind);
	assert_non_null(k);
	return k;
}

static X509 *
self_signed(EVP_PKEY *k, const char *cn)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_set_pubkey(x, k);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	X509_NAME_free(n);
	return x;
}

/* ---- a handshake and what it signed ---- */

struct msg {
	uint8_t *b;
	size_t len;
};

struct capture {
	struct msg m[MAX_MSGS];
	int n;
};

static void
on_msg(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
    void *arg)
{
	struct capture *c = arg;

	if (content_type != SSL3_RT_HANDSHAKE || len < 4 || c->n >= MAX_MSGS)
		return;
	c->m[c->n].b = malloc(len);
	memcpy(c->m[c->n].b, buf, len);
	c->m[c->n++].len = len;
}

static void
capture_free(struct capture *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->m[i].b);
	memset(c, 0, sizeof(*c));
}

static int
accept_any(int ok, X509_STORE_CTX *x)
{
	return 1;
}

struct hs_opts {
	int version;			/* TLS1_3_VERSION or TLS1_2_VERSION */
	const char *key;		/* "P-256", "P-384", "rsa" */
	const char *suites;		/* TLS 1.3 ciphersuites or a 1.2 cipher list; NULL: default */
	const char *groups;		/* both ends' groups; NULL: default */
	unsigned kx_group;		/* TLS 1.2: the ServerKeyExchange's group */
};

/* Keys and certificates of one handshake. */
struct peers {
	EVP_PKEY *skey, *ckey;
	X509 *scert, *ccert;
};

static SSL_CTX *
ctx_new(int server, const struct hs_opts *o, EVP_PKEY *k, X509 *x)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, o->version), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(ctx, o->version), 1);
	if (o->suites != NULL && o->version == TLS1_3_VERSION)
		assert_int_equal(SSL_CTX_set_ciphersuites(ctx, o->suites), 1);
	if (o->suites != NULL && o->version == TLS1_2_VERSION)
		assert_int_equal(SSL_CTX_set_cipher_list(ctx, o->suites), 1);
	if (o->groups != NULL)
		assert_int_equal(SSL_CTX_set1_groups_list(ctx, o->groups), 1);
	assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
	return ctx;
}

/* A mutual handshake between two in-memory endpoints; the client's callback records it. */
static void
handshake(const struct hs_opts *o, struct peers *p, struct capture *cap)
{
	SSL_CTX *sctx, *cctx;
	SSL *srv, *cli;
	BIO *a, *b;
	int sdone = 0, cdone = 0;

	memset(cap, 0, sizeof(*cap));
	p->skey = new_key(o->key);
	p->ckey = new_key(o->key);
	p->scert = self_signed(p->skey, "server");
	p->ccert = self_signed(p->ckey, "client");
	sctx = ctx_new(1, o, p->skey, p->scert);
	cctx = ctx_new(0, o, p->ckey, p->ccert);
	SSL_CTX_set_msg_callback(cctx, on_msg);
	SSL_CTX_set_msg_callback_arg(cctx, cap);
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	assert_int_equal(BIO_new_bio_pair(&a, 0, &b, 0), 1);
	SSL_set_bio(srv, a, a);
	SSL_set_bio(cli, b, b);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	for (int i = 0; i < 100 && (!sdone || !cdone); i++) {
		if (!cdone)
			cdone = SSL_do_handshake(cli) == 1;
		if (!sdone)
			sdone = SSL_do_handshake(srv) == 1;
	}
	if (!sdone || !cdone) {
		ERR_print_errors_fp(stderr);
		fail_msg("handshake %s %s %s failed", o->key, o->suites ? o->suites : "-",
		    o->groups ? o->groups : "-");
	}
	assert_int_equal(SSL_version(cli), o->version);
	SSL_free(srv);
	SSL_free(cli);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

static void
peers_free(struct peers *p)
{
	EVP_PKEY_free(p->skey);
	EVP_PKEY_free(p->ckey);
	X509_free(p->scert);
	X509_free(p->ccert);
}

/* Verify sig (TLS SignatureScheme scheme) by key over tbs, as a TLS peer does. */
static int
tls_verifies(EVP_PKEY *key, unsigned scheme, const uint8_t *tbs, size_t len,
    const uint8_t *sig, size_t siglen)
{
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	const EVP_MD *md;
	int pss = (scheme >> 8) == 0x08, ok;
	unsigned h = pss ? scheme & 0xff : scheme >> 8;

	md = h == 4 ? EVP_sha256() : h == 5 ? EVP_sha384() : h == 6 ? EVP_sha512() : NULL;
	assert_non_null(md);
	ok = EVP_DigestVerifyInit(mc, &pc, md, NULL, key) == 1;
	if (ok && pss)
		ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
	ok = ok && EVP_DigestVerify(mc, sig, siglen, tbs, len) == 1;
	EVP_MD_CTX_free(mc);
	return ok;
}

/* One signature input rebuilt from a handshake, checked against its signature. */
struct signed_input {
	uint8_t *tbs;
	size_t len;
	enum tlssig_shape want;
};

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/*
 * Every CertificateVerify and ServerKeyExchange of a handshake recorded by
 * the client: the bytes signed, rebuilt, each verified with the sender's
 * key and the signature it sent. Returns how many (into out[0..4]).
 */
static int
signed_inputs(const struct capture *c, const struct peers *p, int version,
    struct signed_input out[4])
{
	int n = 0, server_cv_seen = 0;
	const EVP_MD *th_md = NULL;

	for (int i = 0; i < c->n && n < 4; i++) {
		const uint8_t *m = c->m[i].b, *body = m + 4;
		size_t blen = c->m[i].len - 4, plen, pre = 0;
		struct signed_input *s = &out[n];
		EVP_PKEY *signer;
		unsigned scheme;

		if (m[0] == 2 && version == TLS1_3_VERSION) {
			/* The transcript hash is the cipher suite's: read it from ServerHello. */
			uint16_t suite = be16(body + 2 + 32 + 1 + body[2 + 32]);

			th_md = suite == 0x1302 ? EVP_sha384() : EVP_sha256();
		}
		if (m[0] == 15) {		/* CertificateVerify */
			signer = server_cv_seen || version == TLS1_2_VERSION ? p->ckey : p->skey;
			if (version == TLS1_3_VERSION) {
				uint8_t th[64];
				EVP_MD_CTX *mc = EVP_MD_CTX_new();
				unsigned thlen = 0;

				EVP_DigestInit_ex(mc, th_md, NULL);
				for (int j = 0; j < i; j++)
					EVP_DigestUpdate(mc, c->m[j].b, c->m[j].len);
				EVP_DigestFinal_ex(mc, th, &thlen);
				EVP_MD_CTX_free(mc);
				s->len = TLSSIG_TLS13_LEN(thlen);
				s->tbs = malloc(s->len);
				assert_int_equal(tlssig_tls13_input(!server_cv_seen, th, thlen, s->tbs),
				    s->len);
				s->want = server_cv_seen ? TLSSIG_TLS13_CLIENT_CV :
				    TLSSIG_TLS13_SERVER_CV;
			} else {
				for (int j = 0; j < i; j++)
					pre += c->m[j].len;
				s->tbs = malloc(pre);
				s->len = 0;
				for (int j = 0; j < i; j++) {
					memcpy(s->tbs + s->len, c->m[j].b, c->m[j].len);
					s->len += c->m[j].len;
				}
				s->want = TLSSIG_TLS12_CLIENT_CV;
			}
			server_cv_seen = 1;
			scheme = be16(body);
			assert_int_equal(be16(body + 2), blen - 4);
			assert_true(tls_verifies(signer, scheme, s->tbs, s->len, body + 4, blen - 4));
			n++;
		} else if (m[0] == 12) {	/* ServerKeyExchange (ECDHE) */
			const uint8_t *ch = c->m[0].b + 4 + 2, *sh = NULL;

			for (int j = 0; j < i; j++)
				if (c->m[j].b[0] == 2)
					sh = c->m[j].b + 4 + 2;
			assert_non_null(sh);
			assert_int_equal(body[0], 3);
			plen = 4 + body[3];
			s->len = 64 + plen;
			s->tbs = malloc(s->len);
			memcpy(s->tbs, ch, 32);
			memcpy(s->tbs + 32, sh, 32);
			memcpy(s->tbs + 64, body, plen);
			s->want = TLSSIG_TLS12_SERVER_KX;
			scheme = be16(body + plen);
			assert_int_equal(be16(body + plen + 2), blen - plen - 4);
			assert_true(tls_verifies(p->skey, scheme, s->tbs, s->len, body + plen + 4,
			    blen - plen - 4));
			n++;
		}
	}
	return n;
}

/* The shapes of one handshake: each accepted as its own; TLS 1.2 ones only when allowed. */
static int
check_handshake(const struct hs_opts *o, struct signed_input *keep, int nkeep)
{
	struct capture cap;
	struct peers p;
	struct signed_input si[4];
	const char *why;
	int n;

	handshake(o, &p, &cap);
	n = signed_inputs(&cap, &p, o->version, si);
	assert_int_equal(n, 2);		/* two CertificateVerify, or a ServerKeyExchange and one */
	for (int i = 0; i < n; i++) {
		why = NULL;
		assert_int_equal(tlssig_classify(si[i].tbs, si[i].len, ALL, &why), si[i].want);
		if (o->version == TLS1_3_VERSION) {
			assert_int_equal(tlssig_classify(si[i].tbs, si[i].len, 0, &why), si[i].want);
		} else {
			assert_int_equal(tlssig_classify(si[i].tbs, si[i].len, 0, &why), TLSSIG_NONE);
			assert_non_null(strstr(why, "TLS 1.2 signing is off"));
		}
		if (si[i].want == TLSSIG_TLS12_SERVER_KX)
			assert_int_equal(be16(si[i].tbs + 65), o->kx_group);
		if (i < nkeep)
			keep[i] = si[i];
		else
			free(si[i].tbs);
	}
	capture_free(&cap);
	peers_free(&p);
	return n;
}

static void
tls13_real_shapes(void **state)
{
	static const struct hs_opts cases[] = {
		{ TLS1_3_VERSION, "P-256", "TLS_AES_128_GCM_SHA256", NULL, 0 },
		/* A 48-byte transcript hash under a SHA-256 signature: the two are independent. */
		{ TLS1_3_VERSION, "P-256", "TLS_AES_256_GCM_SHA384", NULL, 0 },
		{ TLS1_3_VERSION, "P-384", "TLS_CHACHA20_POLY1305_SHA256", NULL, 0 },
		{ TLS1_3_VERSION, "rsa", NULL, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_handshake(&cases[i], NULL, 0);
}

static void
tls12_real_shapes(void **state)
{
	static const struct hs_opts cases[] = {
		/*
		 * The first group is the key exchange's; an ECDSA certificate's
		 * curve must be among the groups too in TLS 1.2.
		 */
		{ TLS1_2_VERSION, "P-256", "ECDHE-ECDSA-AES128-GCM-SHA256", "X25519:P-256", 29 },
		{ TLS1_2_VERSION, "P-256", "ECDHE-ECDSA-AES256-GCM-SHA384", "P-256", 23 },
		{ TLS1_2_VERSION, "P-384", "ECDHE-ECDSA-AES128-GCM-SHA256", "P-384", 24 },
		{ TLS1_2_VERSION, "P-256", "ECDHE-ECDSA-CHACHA20-POLY1305", "P-521:P-256", 25 },
		{ TLS1_2_VERSION, "P-256", "ECDHE-ECDSA-AES128-GCM-SHA256", "X448:P-256", 30 },
		{ TLS1_2_VERSION, "rsa", "ECDHE-RSA-AES128-GCM-SHA256", "X25519", 29 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_handshake(&cases[i], NULL, 0);
}

/* ---- near misses of real shapes ---- */

static enum tlssig_shape
classify_copy(const uint8_t *b, size_t len, const char **why)
{
	/* A copy of the exact size, so that a read past len is caught by ASan. */
	uint8_t *c = malloc(len > 0 ? len : 1);
	enum tlssig_shape s;

	memcpy(c, b, len);
	s = tlssig_classify(c, len, ALL, why);
	free(c);
	return s;
}

static void
refused_with(const uint8_t *b, size_t len, const char *reason)
{
	const char *why = NULL;

	assert_int_equal(classify_copy(b, len, &why), TLSSIG_NONE);
	assert_non_null(why);
	if (strstr(why, reason) == NULL)
		fail_msg("refused for '%s', expected '%s'", why, reason);
}

static void
tls13_near_misses(void **state)
{
	static const struct hs_opts o = { TLS1_3_VERSION, "P-256", "TLS_AES_128_GCM_SHA256", NULL, 0 };
	struct signed_input si[2];
	uint8_t *b, buf[TLSSIG_TLS13_LEN(64) + 2];
	size_t len;

	check_handshake(&o, si, 2);
	b = si[0].tbs;
	len = si[0].len;
	assert_int_equal(len, TLSSIG_TLS13_LEN(32));
	for (size_t i = 0; i < 64; i++) {
		memcpy(buf, b, len);
		buf[i] = 0x21;
		refused_with(buf, len, i == 0 ? "neither 64 spaces" : "padding is not 64 spaces");
	}
	for (size_t i = 64; i < 97; i++) {
		memcpy(buf, b, len);
		buf[i] ^= 0x01;
		refused_with(buf, len, "context string");
	}
	memcpy(buf, b, len);
	memcpy(buf + 64, "TLS 1.2, server CertificateVerify", 33);
	refused_with(buf, len, "context string");
	memcpy(buf, b, len);
	buf[97] = 0x01;					/* the separator */
	refused_with(buf, len, "no 0 byte");
	memcpy(buf, b, 97);				/* the separator left out */
	memcpy(buf + 97, b + 98, 32);
	buf[97] |= 1;
	refused_with(buf, 97 + 32, "no 0 byte");
	memcpy(buf, b, len);
	buf[len] = 0;					/* a trailing byte */
	refused_with(buf, len + 1, "not 32 or 48");
	refused_with(b, len - 1, "not 32 or 48");	/* a byte short */
	refused_with(b, 98 + 20, "not 32 or 48");	/* a SHA-1 sized hash */
	refused_with(b, 98, "not 32 or 48");		/* no hash at all */
	refused_with(b, 97, "too short");
	memset(buf, 0xab, sizeof(buf));
	memcpy(buf, b, 98);
	refused_with(buf, 98 + 64, "not 32 or 48");	/* 64 bytes */
	assert_int_equal(classify_copy(buf, 98 + 48, NULL), TLSSIG_TLS13_SERVER_CV);
	assert_int_equal(classify_copy(si[1].tbs, si[1].len, NULL), TLSSIG_TLS13_CLIENT_CV);
	free(si[0].tbs);
	free(si[1].tbs);
}

/* The 1.2 CV's messages from a real handshake, and a copy with one message changed. */
static void
tls12_near_misses(void **state)
{
	static const struct hs_opts o = { TLS1_2_VERSION, "P-256", "ECDHE-ECDSA-AES128-GCM-SHA256",
	    "P-256", 23 };
	struct signed_input si[2];
	struct signed_input *kx, *cv;
	uint8_t *buf;
	size_t len, off, last;

	check_handshake(&o, si, 2);
	kx = si[0].want == TLSSIG_TLS12_SERVER_KX ? &si[0] : &si[1];
	cv = si[0].want == TLSSIG_TLS12_CLIENT_CV ? &si[0] : &si[1];
	assert_int_equal(kx->want, TLSSIG_TLS12_SERVER_KX);
	assert_int_equal(cv->want, TLSSIG_TLS12_CLIENT_CV);
	assert_int_equal(kx->len, 64 + 4 + 65);
	buf = malloc(cv->len + 64);

	/* ServerKeyExchange, with a first byte that selects no other shape. */
	kx->tbs[0] = 0x42;
	assert_int_equal(classify_copy(kx->tbs, kx->len, NULL), TLSSIG_TLS12_SERVER_KX);
	memcpy(buf, kx->tbs, kx->len);
	buf[64] = 1;					/* explicit_prime, not named_curve */
	refused_with(buf, kx->len, "neither 64 spaces");
	memcpy(buf, kx->tbs, kx->len);
	buf[66] = 26;					/* brainpoolP256r1: not offered */
	refused_with(buf, kx->len, "not an ECDHE group");
	buf[66] = 29;					/* x25519 with a 65-byte point */
	refused_with(buf, kx->len, "length is not its group's");
	buf[66] = 24;					/* P-384 with a 65-byte point */
	refused_with(buf, kx->len, "length is not its group's");
	memcpy(buf, kx->tbs, kx->len);
	buf[67] = 64;
	refused_with(buf, kx->len, "length is not its group's");
	memcpy(buf, kx->tbs, kx->len);
	buf[68] = 0x02;					/* a compressed point */
	refused_with(buf, kx->len, "not uncompressed");
	memcpy(buf, kx->tbs, kx->len);
	buf[kx->len] = 0;
	refused_with(buf, kx->len + 1, "length is not its group's");
	refused_with(kx->tbs, kx->len - 1, "length is not its group's");
	refused_with(kx->tbs, 64, "neither 64 spaces");
	/* Whatever the randoms are, it is the shape, unless it opens a DER SEQUENCE spanning it. */
	memcpy(buf, kx->tbs, kx->len);
	memset(buf, 0x20, 64);
	assert_int_equal(classify_copy(buf, kx->len, NULL), TLSSIG_TLS12_SERVER_KX);
	buf[0] = 0x30;
	buf[1] = 0x81;
	buf[2] = (uint8_t)(kx->len - 3);
	refused_with(buf, kx->len, "DER SEQUENCE or SET");
	buf[0] = 0x31;
	refused_with(buf, kx->len, "DER SEQUENCE or SET");
	buf[0] = 0x32;
	assert_int_equal(classify_copy(buf, kx->len, NULL), TLSSIG_TLS12_SERVER_KX);
	buf[0] = 0x30;
	buf[2]--;					/* a SEQUENCE not spanning it: not a CMP message */
	assert_int_equal(classify_copy(buf, kx->len, NULL), TLSSIG_TLS12_SERVER_KX);

	/* CertificateVerify: the handshake messages of a full handshake, nothing else. */
	len = cv->len;
	for (off = 0, last = 0; off < len; off += 4 + ((size_t)cv->tbs[off + 1] << 16 |
	    (size_t)cv->tbs[off + 2] << 8 | cv->tbs[off + 3]))
		last = off;
	assert_int_equal(cv->tbs[last], 16);		/* ends with ClientKeyExchange */
	memcpy(buf, cv->tbs, len);
	memcpy(buf + len, "\x14\x00\x00\x0c" "0123456789ab", 16);	/* and a Finished */
	refused_with(buf, len + 16, "not the messages of a full handshake");
	memcpy(buf + len, "\x04\x00\x00\x00", 4);	/* a NewSessionTicket */
	refused_with(buf, len + 4, "not the messages of a full handshake");
	buf[len] = 0;
	refused_with(buf, len + 1, "cut short");	/* a trailing byte */
	refused_with(cv->tbs, last, "do not end with the client's key exchange");
	refused_with(cv->tbs, len - 1, "longer than the data");
	memcpy(buf, cv->tbs, len);
	buf[5] = 1;					/* ClientHello version 3,1 */
	refused_with(buf, len, "version 3,3");
	memcpy(buf, cv->tbs, len);
	buf[3]++;					/* ClientHello one byte longer */
	refused_with(buf, len, "TLS 1.2 handshake messages");
	memcpy(buf, cv->tbs, len);
	buf[0] = 2;					/* not starting with ClientHello */
	refused_with(buf, len, "");
	/* An EncryptedExtensions (TLS 1.3 only) before the ServerHello's successor. */
	off = 4 + ((size_t)cv->tbs[1] << 16 | (size_t)cv->tbs[2] << 8 | cv->tbs[3]);
	off += 4 + ((size_t)cv->tbs[off + 1] << 16 | (size_t)cv->tbs[off + 2] << 8 | cv->tbs[off + 3]);
	memcpy(buf, cv->tbs, off);
	memcpy(buf + off, "\x08\x00\x00\x00", 4);
	memcpy(buf + off + 4, cv->tbs + off, len - off);
	refused_with(buf, len + 4, "not the messages of a full handshake");
	free(buf);
	free(si[0].tbs);
	free(si[1].tbs);
}

/* ---- what an attacker would ask the agent to sign ---- */

static void
der_structures_refused(void **state)
{
	EVP_PKEY *key = new_key("P-256"), *filekey = new_key("P-256");
	X509 *cert = self_signed(key, "workload");
	X509_REQ *req = X509_REQ_new();
	uint8_t *der = NULL, *pp = NULL, *tbs = NULL, *ber, dg[64];
	size_t len, pplen;
	int n;

	/* A kur as OpenSSL's CMP client makes it, for a key in a file, signed by the workload. */
	assert_true(kur_request(cert, key, filekey, &der, &len));
	assert_true(protected_part(der, len, &pp, &pplen));
	assert_int_equal(pp[0], 0x30);
	assert_true(tlssig_is_der_whole(pp, pplen));
	refused_with(pp, pplen, "DER SEQUENCE or SET");
	refused_with(der, len, "DER SEQUENCE or SET");	/* the whole PKIMessage too */
	/* The same with BER's other length forms (OpenSSL's parser takes them). */
	ber = malloc(pplen + 8);
	ber[0] = 0x30;
	ber[1] = 0x86;				/* six length bytes, leading zeros */
	memset(ber + 2, 0, 4);
	ber[6] = (uint8_t)((pplen - 4) >> 8);	/* content length: pplen minus its DER header */
	ber[7] = (uint8_t)(pplen - 4);
	assert_int_equal(pp[1], 0x82);		/* a kur is 256 bytes or more */
	memcpy(ber + 8, pp + 4, pplen - 4);
	refused_with(ber, pplen + 4, "DER SEQUENCE or SET");
	ber[1] = 0x80;				/* indefinite */
	refused_with(ber, pplen + 4, "DER SEQUENCE or SET");
	free(ber);

	/* A TBSCertificate and a CSR's CertificationRequestInfo. */
	n = i2d_re_X509_tbs(cert, &tbs);
	assert_true(n > 0);
	refused_with(tbs, (size_t)n, "DER SEQUENCE or SET");
	OPENSSL_free(tbs);
	tbs = NULL;
	assert_int_equal(X509_REQ_set_pubkey(req, filekey), 1);
	assert_true(X509_REQ_sign(req, filekey, EVP_sha256()) > 0);
	n = i2d_re_X509_REQ_tbs(req, &tbs);
	assert_true(n > 0);
	refused_with(tbs, (size_t)n, "DER SEQUENCE or SET");

	/* Raw digests, as the old SIGN carried them. */
	SHA256(pp, pplen, dg);
	refused_with(dg, 32, "");
	RAND_bytes(dg, sizeof(dg));
	dg[0] = 0x20;
	refused_with(dg, 32, "too short");
	refused_with(dg, 48, "too short");
	dg[0] = 0x01;
	refused_with(dg, 64, "");
	refused_with(dg, 0, "no data");

	OPENSSL_free(tbs);
	OPENSSL_free(der);
	free(pp);
	X509_REQ_free(req);
	X509_free(cert);
	EVP_PKEY_free(key);
	EVP_PKEY_free(filekey);
}

static void
der_whole_rule(void **state)
{
	static const uint8_t short_seq[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };
	static uint8_t big[TLSSIG_MAX_TBS + 1];

	assert_true(tlssig_is_der_whole(short_seq, sizeof(short_seq)));
	assert_false(tlssig_is_der_whole(short_seq, sizeof(short_seq) - 1));
	assert_false(tlssig_is_der_whole((const uint8_t *)"\x30", 1));
	assert_false(tlssig_is_der_whole((const uint8_t *)"\x30\x81", 2));
	assert_false(tlssig_is_der_whole((const uint8_t *)"\x30\xff\x01", 3));
	assert_true(tlssig_is_der_whole((const uint8_t *)"\x31\x00", 2));
	assert_false(tlssig_is_der_whole((const uint8_t *)"\x04\x00", 2));
	/* A length of many bytes, all but the last zero, spans 2 + 126 + 1 bytes. */
	memset(big, 0, sizeof(big));
	big[0] = 0x30;
	big[1] = 0xfe;
	big[127] = 1;
	assert_true(tlssig_is_der_whole(big, 2 + 126 + 1));
	big[3] = 1;				/* huge: never spans */
	assert_false(tlssig_is_der_whole(big, 2 + 126 + 1));
	refused_with(big, sizeof(big), "longer than any");
}

static void
names_and_builder(void **state)
{
	uint8_t th[48] = { 0 }, out[TLSSIG_TLS13_LEN(48)];

	assert_string_equal(tlssig_shape_name(TLSSIG_TLS13_SERVER_CV),
	    "TLS 1.3 server CertificateVerify");
	assert_string_equal(tlssig_shape_name(TLSSIG_NONE), "none");
	assert_int_equal(tlssig_tls13_input(0, th, 48, out), TLSSIG_TLS13_LEN(48));
	assert_int_equal(tlssig_classify(out, sizeof(out), 0, NULL), TLSSIG_TLS13_CLIENT_CV);
	assert_int_equal(tlssig_tls13_input(0, th, 40, out), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tls13_real_shapes),
		cmocka_unit_test(tls12_real_shapes),
		cmocka_unit_test(tls13_near_misses),
		cmocka_unit_test(tls12_near_misses),
		cmocka_unit_test(der_structures_refused),
		cmocka_unit_test(der_whole_rule),
		cmocka_unit_test(names_and_builder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
