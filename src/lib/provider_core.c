/*
 * provider_core.c - the core of the "hsmesh" OpenSSL 3 provider: keys whose
 * private half is in a token, signed through a backend (see
 * provider_core.h; the backends are provider_kh.c and provider_agent.c).
 * Every backend shares one signing path (backend_sign) and differs only
 * in a small table of functions (struct hsm_signer) and in what it is
 * given: a digest made here (the keyholder), or the whole data (the agent:
 * it signs TLS handshake signature inputs only and hashes them itself;
 * docs/PROTOCOL.md, "What the agent signs").
 *
 * What OpenSSL 3.0 demands of such a provider was found by experiment:
 * keys are made with EVP_PKEY_fromdata on a context fetched with
 * "provider=hsmesh"; the keymgmt accepts public-only imports (certificate/
 * key matching imports the certificate's key into us) and ignores unknown
 * params; there is deliberately no export, or OpenSSL would sign with the
 * default provider on a copy that has no private key; the signature
 * offers one-shot digest_sign (plus update/final with dupctx); and
 * digest_sign_init is called for every candidate algorithm, so it never
 * talks to the backend. The public half is kept as an ordinary
 * default-provider EVP_PKEY to answer parameter queries and comparisons.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "err.h"
#include "provider_core.h"
#include "tlssig.h"

#define PROV_NAME "hsmesh"
#define PARAM_KEYREF "hsmesh-keyref"	/* octet string: struct hsm_keyref */
#define PARAM_SPKI "hsmesh-spki"	/* octet string: DER SubjectPublicKeyInfo */

#define KEYREF_MAGIC 0x68736d32u

struct key {
	EVP_PKEY *pub;			/* default-provider public key */
	int is_ec;
	int has_ref;
	struct hsm_keyref ref;
	uint8_t *spki;
	size_t spkilen;
};

struct sigctx {
	struct key *key;
	char mdname[32];
	int mdlen;			/* its digest's length */
	EVP_MD_CTX *mdctx;		/* update/final path only, for a digest */
	uint8_t *data;			/* update/final path only, for a whole-data backend */
	size_t datalen;
	int pss;
	int saltlen;			/* -1 = digest length */
};

/* Key of our fd in an ASYNC_WAIT_CTX: one stable eventfd per wait context. */
static const char async_key;

static void
async_fd_cleanup(ASYNC_WAIT_CTX *ctx, const void *key, OSSL_ASYNC_FD fd, void *custom)
{
	close(fd);
}

/* ---- keys ---- */

static void *
km_new(void *provctx)
{
	return OPENSSL_zalloc(sizeof(struct key));
}

static void
km_free(void *kd)
{
	struct key *k = kd;

	if (k == NULL)
		return;
	EVP_PKEY_free(k->pub);
	OPENSSL_free(k->spki);
	OPENSSL_clear_free(k, sizeof(*k));
}

static int
km_has(const void *kd, int selection)
{
	const struct key *k = kd;

	if (k == NULL)
		return 0;
	if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && !k->has_ref)
		return 0;
	if ((selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS)) &&
	    k->pub == NULL)
		return 0;
	return 1;
}

/* Keep the DER SPKI of the public key (for the encoder-free paths and the self-test). */
static int
key_set_pub(struct key *k, EVP_PKEY *pub)
{
	unsigned char *der = NULL;
	int n;

	if ((n = i2d_PUBKEY(pub, &der)) <= 0) {
		EVP_PKEY_free(pub);
		return 0;
	}
	EVP_PKEY_free(k->pub);
	OPENSSL_free(k->spki);
	k->pub = pub;
	k->spki = der;
	k->spkilen = (size_t)n;
	k->is_ec = EVP_PKEY_is_a(pub, "EC");
	return 1;
}

/* Build a default-provider public key from the params OpenSSL passes on import. */
static EVP_PKEY *
pub_from_params(const char *type, const OSSL_PARAM params[])
{
	EVP_PKEY_CTX *pc;
	EVP_PKEY *pk = NULL;
	OSSL_PARAM sub[4];
	const OSSL_PARAM *p;
	int n = 0;

	if (strcmp(type, "EC") == 0) {
		if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME)) == NULL)
			return NULL;
		sub[n++] = *p;
		if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY)) == NULL)
			return NULL;
		sub[n++] = *p;
	} else {
		if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_N)) == NULL)
			return NULL;
		sub[n++] = *p;
		if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_E)) == NULL)
			return NULL;
		sub[n++] = *p;
	}
	sub[n] = OSSL_PARAM_construct_end();
	if ((pc = EVP_PKEY_CTX_new_from_name(NULL, type, "provider=default")) == NULL)
		return NULL;
	if (EVP_PKEY_fromdata_init(pc) <= 0 ||
	    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, sub) <= 0)
		pk = NULL;
	EVP_PKEY_CTX_free(pc);
	return pk;
}

static int
km_import_common(struct key *k, const char *type, int selection, const OSSL_PARAM params[])
{
	const OSSL_PARAM *p;
	EVP_PKEY *pub = NULL;

	if ((p = OSSL_PARAM_locate_const(params, PARAM_SPKI)) != NULL) {
		const unsigned char *der = p->data;

		if (p->data_type != OSSL_PARAM_OCTET_STRING ||
		    (pub = d2i_PUBKEY_ex(NULL, &der, (long)p->data_size, NULL, "provider=default")) == NULL)
			return 0;
	} else if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
		if ((pub = pub_from_params(type, params)) == NULL)
			return 0;
	}
	if (pub != NULL) {
		if (!EVP_PKEY_is_a(pub, type)) {
			EVP_PKEY_free(pub);
			return 0;
		}
		if (!key_set_pub(k, pub))
			return 0;
	}
	if ((p = OSSL_PARAM_locate_const(params, PARAM_KEYREF)) != NULL) {
		struct hsm_keyref ref;

		if (p->data_type != OSSL_PARAM_OCTET_STRING || p->data_size != sizeof(ref))
			return 0;
		memcpy(&ref, p->data, sizeof(ref));
		if (ref.magic != KEYREF_MAGIC || ref.backend == NULL || ref.signer == NULL ||
		    ref.signer->magic != HSM_SIGNER_MAGIC)
			return 0;
		k->ref = ref;
		k->has_ref = 1;
	}
	return k->pub != NULL;
}

static int
km_import_ec(void *kd, int selection, const OSSL_PARAM params[])
{
	return km_import_common(kd, "EC", selection, params);
}

static int
km_import_rsa(void *kd, int selection, const OSSL_PARAM params[])
{
	return km_import_common(kd, "RSA", selection, params);
}

static const OSSL_PARAM *
km_import_types_ec(int selection)
{
	static const OSSL_PARAM t[] = {
		OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
		OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
		OSSL_PARAM_octet_string(PARAM_SPKI, NULL, 0),
		OSSL_PARAM_octet_string(PARAM_KEYREF, NULL, 0),
		OSSL_PARAM_END
	};
	return t;
}

static const OSSL_PARAM *
km_import_types_rsa(int selection)
{
	static const OSSL_PARAM t[] = {
		OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
		OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
		OSSL_PARAM_octet_string(PARAM_SPKI, NULL, 0),
		OSSL_PARAM_octet_string(PARAM_KEYREF, NULL, 0),
		OSSL_PARAM_END
	};
	return t;
}

static int
km_get_params(void *kd, OSSL_PARAM params[])
{
	struct key *k = kd;
	OSSL_PARAM *p;

	if (k == NULL || k->pub == NULL)
		return 0;
	if ((p = OSSL_PARAM_locate(params, PARAM_SPKI)) != NULL &&
	    !OSSL_PARAM_set_octet_string(p, k->spki, k->spkilen))
		return 0;
	/* Everything public is answered by the default provider's copy. */
	for (p = params; p->key != NULL; p++) {
		OSSL_PARAM one[2] = { *p, OSSL_PARAM_END };

		if (strcmp(p->key, PARAM_SPKI) == 0)
			continue;
		if (EVP_PKEY_get_params(k->pub, one) && OSSL_PARAM_modified(one))
			p->return_size = one[0].return_size;
	}
	return 1;
}

static const OSSL_PARAM *
km_gettable_params(void *provctx)
{
	static const OSSL_PARAM t[] = {
		OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
		OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
		OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
		OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
		OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
		OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
		OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
		OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
		OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
		OSSL_PARAM_octet_string(PARAM_SPKI, NULL, 0),
		OSSL_PARAM_END
	};
	return t;
}

static int
km_match(const void *kd1, const void *kd2, int selection)
{
	const struct key *a = kd1, *b = kd2;

	if (a == NULL || b == NULL || a->pub == NULL || b->pub == NULL)
		return 0;
	return EVP_PKEY_eq(a->pub, b->pub) == 1;
}

static const char *
km_opname_ec(int op)
{
	return op == OSSL_OP_SIGNATURE ? "ECDSA" : NULL;
}

static const char *
km_opname_rsa(int op)
{
	return op == OSSL_OP_SIGNATURE ? "RSA" : NULL;
}

#define KM_COMMON \
	{ OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))km_new }, \
	{ OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))km_free }, \
	{ OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))km_has }, \
	{ OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))km_get_params }, \
	{ OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))km_gettable_params }, \
	{ OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))km_match }

static const OSSL_DISPATCH km_ec[] = {
	KM_COMMON,
	{ OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))km_import_ec },
	{ OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))km_import_types_ec },
	{ OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))km_opname_ec },
	{ 0, NULL }
};

static const OSSL_DISPATCH km_rsa[] = {
	KM_COMMON,
	{ OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))km_import_rsa },
	{ OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))km_import_types_rsa },
	{ OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))km_opname_rsa },
	{ 0, NULL }
};

/* ---- signatures ---- */

static void *
sig_newctx(void *provctx, const char *propq)
{
	struct sigctx *s = OPENSSL_zalloc(sizeof(*s));

	if (s != NULL)
		s->saltlen = -1;
	return s;
}

static void
sig_freectx(void *ctx)
{
	struct sigctx *s = ctx;

	if (s == NULL)
		return;
	EVP_MD_CTX_free(s->mdctx);
	OPENSSL_free(s->data);
	OPENSSL_free(s);
}

static void *
sig_dupctx(void *ctx)
{
	struct sigctx *s = ctx, *d;

	if ((d = OPENSSL_memdup(s, sizeof(*s))) == NULL)
		return NULL;
	d->mdctx = NULL;
	d->data = NULL;
	if (s->datalen > 0 && (d->data = OPENSSL_memdup(s->data, s->datalen)) == NULL) {
		sig_freectx(d);
		return NULL;
	}
	if (s->mdctx != NULL) {
		if ((d->mdctx = EVP_MD_CTX_new()) == NULL || !EVP_MD_CTX_copy_ex(d->mdctx, s->mdctx)) {
			sig_freectx(d);
			return NULL;
		}
	}
	return d;
}

/* The hash a signature uses, by the name libssl or X509 passes. */
static int
md_size_of(const char *name)
{
	EVP_MD *md = EVP_MD_fetch(NULL, name, "provider=default");
	int n;

	if (md == NULL)
		return -1;
	n = EVP_MD_get_size(md);
	EVP_MD_free(md);
	return n;
}

static int
set_md(struct sigctx *s, const char *name)
{
	int n = md_size_of(name);

	if (n != 32 && n != 48 && n != 64)
		return 0;
	if (strlen(name) >= sizeof(s->mdname))
		return 0;
	memcpy(s->mdname, name, strlen(name) + 1);
	s->mdlen = n;
	return 1;
}

static int sig_set_ctx_params(void *ctx, const OSSL_PARAM params[]);

static int
sig_digest_sign_init(void *ctx, const char *mdname, void *kd, const OSSL_PARAM params[])
{
	struct sigctx *s = ctx;
	struct key *k = kd;

	if (k == NULL || !k->has_ref || k->pub == NULL)
		return 0;
	s->key = k;
	if (mdname == NULL || *mdname == '\0')
		mdname = (k->is_ec && EVP_PKEY_get_bits(k->pub) > 256) ? "SHA384" : "SHA256";
	if (!set_md(s, mdname))
		return 0;
	EVP_MD_CTX_free(s->mdctx);
	s->mdctx = NULL;
	OPENSSL_free(s->data);
	s->data = NULL;
	s->datalen = 0;
	return sig_set_ctx_params(s, params);
}

/* Map our context to the keyholder's algorithm number. */
static int
sigalg_of(const struct sigctx *s, int mdlen)
{
	int base;

	if (s->key->is_ec)
		return HSM_SIG_ECDSA;
	if (s->pss && s->saltlen != -1 && s->saltlen != mdlen)
		return -1;	/* the token's PSS uses salt length = hash length */
	base = s->pss ? HSM_SIG_RSA_PSS_SHA256 : HSM_SIG_RSA_PKCS1_SHA256;
	switch (mdlen) {
	case 32: return base;
	case 48: return base + 1;
	case 64: return base + 2;
	default: return -1;
	}
}

/*
 * Sign through the key's backend (dg: a digest, or the whole data with the
 * length of the hash to make of it, mdlen; see struct hsm_signer). Inside
 * an async job the request is sent without waiting and the job pauses
 * until the backend signals the wait context's eventfd; this code runs on
 * the job's small stack.
 */
static int
backend_sign(const struct hsm_keyref *ref, int alg, int mdlen, const unsigned char *dg,
    size_t dlen, unsigned char *sig, size_t *siglen)
{
	ASYNC_JOB *job = ASYNC_get_current_job();
	ASYNC_WAIT_CTX *wctx;
	void *req = NULL;
	OSSL_ASYNC_FD fd;
	void *custom;
	uint64_t v;
	int st;

	if (job == NULL || (wctx = ASYNC_get_wait_ctx(job)) == NULL)
		return ref->signer->sign(ref, alg, mdlen, dg, dlen, sig, siglen);

	if (!ASYNC_WAIT_CTX_get_fd(wctx, &async_key, &fd, &custom)) {
		if ((fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
			return hsm_err(HSM_EIO, "eventfd: %s", strerror(errno));
		/*
		 * One fd per wait context (one per SSL) for its whole life: a
		 * per-signature fd, closed and its number reused, would make
		 * the event loop unregister an unrelated fd.
		 */
		if (!ASYNC_WAIT_CTX_set_wait_fd(wctx, &async_key, fd, NULL, async_fd_cleanup)) {
			close(fd);
			return HSM_ENOMEM;
		}
	}
	if ((st = ref->signer->sign_start(ref, alg, mdlen, dg, dlen, fd, &req)) != 0)
		return st;
	while (!ref->signer->done(req))
		ASYNC_pause_job();
	/* Consume the wake-up so the fd is quiet for the next operation. */
	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: already consumed */
	}
	st = ref->signer->result(req, sig, siglen);
	ref->signer->release(req);
	return st;
}

/*
 * Sign through the key's backend: data is a digest of dlen bytes, or for a
 * whole-data backend the data itself (its hash is the context's, of mdlen
 * bytes).
 */
static int
sign_data(struct sigctx *s, unsigned char *sig, size_t *siglen, size_t sigsize,
    const unsigned char *data, size_t dlen, int mdlen)
{
	const struct hsm_signer *sg = s->key->ref.signer;
	unsigned char buf[HSM_MAX_SIG];
	size_t n = 0;
	int alg, st;

	if ((alg = sigalg_of(s, mdlen)) < 0) {
		ERR_raise_data(ERR_LIB_PROV, ERR_R_UNSUPPORTED, "hsmesh: unsupported signature parameters");
		return 0;
	}
	if ((st = backend_sign(&s->key->ref, alg, sg->whole ? mdlen : 0, data, dlen, buf,
	    &n)) != 0) {
		ERR_raise_data(ERR_LIB_PROV, ERR_R_OPERATION_FAIL, "%s: %s", sg->name,
		    hsm_err_msg(st));
		return 0;
	}
	if (n > sigsize) {
		ERR_raise(ERR_LIB_PROV, ERR_R_PASSED_INVALID_ARGUMENT);
		return 0;
	}
	memcpy(sig, buf, n);
	*siglen = n;
	return 1;
}

static int
sig_digest_sign(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
    const unsigned char *tbs, size_t tbslen)
{
	struct sigctx *s = ctx;
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD *md;
	int ok;

	if (sig == NULL) {
		*siglen = (size_t)EVP_PKEY_get_size(s->key->pub);
		return 1;
	}
	/* A whole-data backend (the agent) is given the data itself. */
	if (s->key->ref.signer->whole)
		return sign_data(s, sig, siglen, sigsize, tbs, tbslen, s->mdlen);
	if ((md = EVP_MD_fetch(NULL, s->mdname, "provider=default")) == NULL)
		return 0;
	ok = EVP_Digest(tbs, tbslen, dg, &dlen, md, NULL);
	EVP_MD_free(md);
	if (!ok)
		return 0;
	return sign_data(s, sig, siglen, sigsize, dg, dlen, (int)dlen);
}

static int
sig_digest_sign_update(void *ctx, const unsigned char *data, size_t len)
{
	struct sigctx *s = ctx;

	if (s->key->ref.signer->whole) {
		uint8_t *n;

		/* Kept whole for the backend, up to what it may be given. */
		if (len > HSM_SIGNER_MAX_DATA - s->datalen) {
			ERR_raise_data(ERR_LIB_PROV, ERR_R_PASSED_INVALID_ARGUMENT,
			    "hsmesh: more than %d bytes to sign through the %s",
			    HSM_SIGNER_MAX_DATA, s->key->ref.signer->name);
			return 0;
		}
		if (len == 0)
			return 1;
		if ((n = OPENSSL_realloc(s->data, s->datalen + len)) == NULL)
			return 0;
		memcpy(n + s->datalen, data, len);
		s->data = n;
		s->datalen += len;
		return 1;
	}
	if (s->mdctx == NULL) {
		EVP_MD *md = EVP_MD_fetch(NULL, s->mdname, "provider=default");
		int ok;

		if (md == NULL || (s->mdctx = EVP_MD_CTX_new()) == NULL) {
			EVP_MD_free(md);
			return 0;
		}
		ok = EVP_DigestInit_ex(s->mdctx, md, NULL);
		EVP_MD_free(md);
		if (!ok)
			return 0;
	}
	return EVP_DigestUpdate(s->mdctx, data, len);
}

static int
sig_digest_sign_final(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
	struct sigctx *s = ctx;
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (sig == NULL) {
		*siglen = (size_t)EVP_PKEY_get_size(s->key->pub);
		return 1;
	}
	if (s->key->ref.signer->whole)
		return sign_data(s, sig, siglen, sigsize, s->data, s->datalen, s->mdlen);
	if (s->mdctx == NULL && !sig_digest_sign_update(ctx, NULL, 0))
		return 0;
	if (!EVP_DigestFinal_ex(s->mdctx, dg, &dlen))
		return 0;
	return sign_data(s, sig, siglen, sigsize, dg, dlen, (int)dlen);
}

/* DER AlgorithmIdentifier of the signature, which X509_sign asks for. */
static int
algorithm_id(const struct sigctx *s, unsigned char *out, size_t cap, size_t *len)
{
	X509_ALGOR *a;
	unsigned char *p = out;
	int nid, mdn, n, ptype;

	if (s->pss)
		return 0;	/* PSS AlgorithmIdentifiers carry parameters we do not certify with */
	mdn = OBJ_sn2nid(s->mdname);
	if (mdn == NID_undef)
		mdn = OBJ_ln2nid(s->mdname);
	if (!OBJ_find_sigid_by_algs(&nid, mdn, s->key->is_ec ? NID_X9_62_id_ecPublicKey : NID_rsaEncryption))
		return 0;
	ptype = s->key->is_ec ? V_ASN1_UNDEF : V_ASN1_NULL;
	if ((a = X509_ALGOR_new()) == NULL || !X509_ALGOR_set0(a, OBJ_nid2obj(nid), ptype, NULL)) {
		X509_ALGOR_free(a);
		return 0;
	}
	n = i2d_X509_ALGOR(a, NULL);
	if (n <= 0 || (size_t)n > cap) {
		X509_ALGOR_free(a);
		return 0;
	}
	n = i2d_X509_ALGOR(a, &p);
	X509_ALGOR_free(a);
	*len = (size_t)n;
	return n > 0;
}

static int
sig_get_ctx_params(void *ctx, OSSL_PARAM params[])
{
	struct sigctx *s = ctx;
	OSSL_PARAM *p;

	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL) {
		unsigned char aid[64];
		size_t n;

		if (s->key == NULL || !algorithm_id(s, aid, sizeof(aid), &n) ||
		    !OSSL_PARAM_set_octet_string(p, aid, n))
			return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL &&
	    !OSSL_PARAM_set_utf8_string(p, s->mdname))
		return 0;
	return 1;
}

static const OSSL_PARAM *
sig_gettable_ctx_params(void *ctx, void *provctx)
{
	static const OSSL_PARAM t[] = {
		OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
		OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
		OSSL_PARAM_END
	};
	return t;
}

static int
sig_set_ctx_params(void *ctx, const OSSL_PARAM params[])
{
	struct sigctx *s = ctx;
	const OSSL_PARAM *p;

	if (params == NULL)
		return 1;
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
		const char *name = NULL;

		if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_md(s, name))
			return 0;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
		const char *mode = NULL;
		int m;

		if (p->data_type == OSSL_PARAM_UTF8_STRING) {
			if (!OSSL_PARAM_get_utf8_string_ptr(p, &mode))
				return 0;
			if (strcmp(mode, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0)
				s->pss = 1;
			else if (strcmp(mode, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0)
				s->pss = 0;
			else
				return 0;
		} else {
			if (!OSSL_PARAM_get_int(p, &m))
				return 0;
			if (m == RSA_PKCS1_PSS_PADDING)
				s->pss = 1;
			else if (m == RSA_PKCS1_PADDING)
				s->pss = 0;
			else
				return 0;
		}
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
		const char *v = NULL;
		int n;

		if (p->data_type == OSSL_PARAM_UTF8_STRING) {
			if (!OSSL_PARAM_get_utf8_string_ptr(p, &v))
				return 0;
			if (strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0)
				s->saltlen = -1;
			else
				s->saltlen = (int)strtol(v, NULL, 10);
		} else {
			if (!OSSL_PARAM_get_int(p, &n))
				return 0;
			s->saltlen = n == RSA_PSS_SALTLEN_DIGEST ? -1 : n;
		}
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
		const char *name = NULL;

		/* The token's MGF1 hash is the signature hash. */
		if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || md_size_of(name) != md_size_of(s->mdname))
			return 0;
	}
	return 1;
}

static const OSSL_PARAM *
sig_settable_ctx_params(void *ctx, void *provctx)
{
	static const OSSL_PARAM t[] = {
		OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
		OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
		OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
		OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
		OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
		OSSL_PARAM_END
	};
	return t;
}

static const OSSL_DISPATCH sig_fns[] = {
	{ OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))sig_newctx },
	{ OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx },
	{ OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx },
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init },
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))sig_digest_sign },
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_sign_update },
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final },
	{ OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params },
	{ OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable_ctx_params },
	{ OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params },
	{ OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))sig_settable_ctx_params },
	{ 0, NULL }
};

/* ---- the provider ---- */

static const OSSL_ALGORITHM keymgmts[] = {
	{ "EC:id-ecPublicKey:1.2.840.10045.2.1", "provider=" PROV_NAME, km_ec, "hsmesh EC key in a token" },
	{ "RSA:rsaEncryption:1.2.840.113549.1.1.1", "provider=" PROV_NAME, km_rsa, "hsmesh RSA key in a token" },
	{ NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM signatures[] = {
	{ "ECDSA", "provider=" PROV_NAME, sig_fns, "ECDSA through the keyholder" },
	{ "RSA:rsaEncryption:1.2.840.113549.1.1.1", "provider=" PROV_NAME, sig_fns, "RSA through the keyholder" },
	{ NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM *
prov_query(void *provctx, int op, int *no_cache)
{
	*no_cache = 0;
	switch (op) {
	case OSSL_OP_KEYMGMT: return keymgmts;
	case OSSL_OP_SIGNATURE: return signatures;
	default: return NULL;
	}
}

static const OSSL_DISPATCH prov_fns[] = {
	{ OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query },
	{ 0, NULL }
};

static int
prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
    void **provctx)
{
	*out = prov_fns;
	*provctx = (void *)handle;
	return 1;
}

int
hsm_provider_init(void)
{
	/* Loaded for the life of the process; kept reachable on purpose. */
	static OSSL_PROVIDER *dflt, *ours;

	if (ours != NULL)
		return 0;
	/* Load default first: ours must not swallow peer keys or key-exchange groups. */
	if (dflt == NULL && (dflt = OSSL_PROVIDER_load(NULL, "default")) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot load OpenSSL's default provider");
	if (!OSSL_PROVIDER_add_builtin(NULL, PROV_NAME, prov_init) ||
	    (ours = OSSL_PROVIDER_load(NULL, PROV_NAME)) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot load the hsmesh provider");
	/* A preference, not a requirement: the mandatory form would hide our signatures. */
	if (!EVP_set_default_properties(NULL, "?provider=default"))
		return hsm_err_ossl(HSM_ECRYPTO, "cannot set default properties");
	return 0;
}

int
hsm_pkey_make(struct hsm_keyref *ref, const uint8_t *spki, size_t spkilen, EVP_PKEY **out)
{
	const unsigned char *p = spki;
	EVP_PKEY *pub;
	EVP_PKEY_CTX *pc = NULL;
	OSSL_PARAM params[3];
	const char *type;
	int st = 0;

	*out = NULL;
	if ((pub = d2i_PUBKEY(NULL, &p, (long)spkilen)) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot parse the key's SubjectPublicKeyInfo");
	type = EVP_PKEY_is_a(pub, "EC") ? "EC" : EVP_PKEY_is_a(pub, "RSA") ? "RSA" : NULL;
	EVP_PKEY_free(pub);
	if (type == NULL)
		return hsm_err(HSM_EUNSUPPORTED, "unsupported key type in the token");

	ref->magic = KEYREF_MAGIC;
	params[0] = OSSL_PARAM_construct_octet_string(PARAM_SPKI, (void *)spki, spkilen);
	params[1] = OSSL_PARAM_construct_octet_string(PARAM_KEYREF, ref, sizeof(*ref));
	params[2] = OSSL_PARAM_construct_end();
	if ((pc = EVP_PKEY_CTX_new_from_name(NULL, type, "provider=" PROV_NAME)) == NULL ||
	    EVP_PKEY_fromdata_init(pc) <= 0 || EVP_PKEY_fromdata(pc, out, EVP_PKEY_KEYPAIR, params) <= 0)
		st = hsm_err_ossl(HSM_ECRYPTO, "cannot make a token-backed key (is hsm_provider_init done?)");
	EVP_PKEY_CTX_free(pc);
	return st;
}

int
hsm_pkey_selftest(EVP_PKEY *pkey)
{
	unsigned char th[32], msg[TLSSIG_TLS13_LEN(32)], sig[HSM_MAX_SIG], spki[HSM_MAX_SPKI];
	const unsigned char *p = spki;
	size_t siglen = sizeof(sig), spkilen = 0;
	EVP_MD_CTX *mc = NULL;
	EVP_PKEY *pub = NULL;
	int st = HSM_ECRYPTO;

	/* A TLS 1.3 server CertificateVerify input: what an agent key may sign. */
	if (RAND_bytes(th, sizeof(th)) != 1)
		return hsm_err_ossl(HSM_ECRYPTO, "RAND_bytes");
	(void)tlssig_tls13_input(1, th, sizeof(th), msg);
	if (!EVP_PKEY_get_octet_string_param(pkey, PARAM_SPKI, spki, sizeof(spki), &spkilen) ||
	    (pub = d2i_PUBKEY(NULL, &p, (long)spkilen)) == NULL)
		return hsm_err(HSM_EINVAL, "not a keyholder key");
	if ((mc = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, pkey) != 1 ||
	    EVP_DigestSign(mc, sig, &siglen, msg, sizeof(msg)) != 1) {
		st = hsm_err_ossl(HSM_ECRYPTO, "test signature through the keyholder failed");
		goto out;
	}
	EVP_MD_CTX_free(mc);
	if ((mc = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(mc, NULL, EVP_sha256(), NULL, pub) != 1 ||
	    EVP_DigestVerify(mc, sig, siglen, msg, sizeof(msg)) != 1) {
		st = hsm_err_ossl(HSM_ECRYPTO, "test signature from the token does not verify");
		goto out;
	}
	st = 0;
out:
	EVP_MD_CTX_free(mc);
	EVP_PKEY_free(pub);
	return st;
}
