/*
 * p11key.c - keys in the token (see p11.h): generate, public key,
 * find by label, list by label prefix, sign, destroy, describe.
 */

#include <sys/file.h>
#include <sys/stat.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <p11-kit/pkcs11.h>

#include "err.h"
#include "keytypes.h"
#include "log.h"
#include "p11.h"
#include "p11uri.h"
#include "util.h"
#include "p11_int.h"

/* ---- generate ---- */

struct gen_arg {
	enum hsm_keytype kt;
	const char *label;
	unsigned flags;			/* HSM_GEN_* */
	bool unwrapping;		/* p11_generate_unwrapping: unwrap only */
	uint8_t keyid[HSM_KEYID_LEN];
	uint8_t *spki;
	size_t spkilen;
};

static int
op_generate(struct call *c, void *v)
{
	struct gen_arg *g = v;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE, rawrsa;
	CK_ULONG bits = 3072;
	uint8_t exp[3] = { 0x01, 0x00, 0x01 };
	uint8_t params[16];
	size_t plen = 0;
	char label[HSM_MAX_LABEL + 1];
	CK_ULONG llen = 0;
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
	CK_ATTRIBUTE pubt[8], privt[12], idt[1];
	CK_ULONG npub = 0, npriv = 0;
	uint8_t md[HSM_KEYID_LEN];
	struct keyent ke;
	CK_RV rv;
	int r;

	if (g->label != NULL) {
		llen = strlen(g->label);
		memcpy(label, g->label, llen);
	}
	switch (g->kt) {
	case HSM_KEY_EC_P256:
		memcpy(params, p11i_oid_p256, sizeof(p11i_oid_p256));
		plen = sizeof(p11i_oid_p256);
		break;
	case HSM_KEY_EC_P384:
		memcpy(params, p11i_oid_p384, sizeof(p11i_oid_p384));
		plen = sizeof(p11i_oid_p384);
		break;
	case HSM_KEY_RSA_3072:
		mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		break;
	}

#define A(t, n, typ, p, l) do { t[n].type = (typ); t[n].pValue = (p); t[n].ulValueLen = (l); n++; } while (0)
	/*
	 * No CKA_VERIFY or CKA_ENCRYPT: a TPM key has one flag for sign and
	 * encrypt and one for decrypt and verify, so tpm2-pkcs11 derives
	 * them from the private half and refuses a template that differs.
	 */
	A(pubt, npub, CKA_TOKEN, &yes, sizeof(yes));
	A(pubt, npub, CKA_WRAP, &no, sizeof(no));
	if (llen > 0)
		A(pubt, npub, CKA_LABEL, label, llen);
	if (mech.mechanism == CKM_EC_KEY_PAIR_GEN)
		A(pubt, npub, CKA_EC_PARAMS, params, plen);
	else {
		A(pubt, npub, CKA_MODULUS_BITS, &bits, sizeof(bits));
		A(pubt, npub, CKA_PUBLIC_EXPONENT, exp, sizeof(exp));
	}
	/*
	 * Sign-only, and the key never leaves the token in any form; a
	 * replicable one leaves it only wrapped by a trusted key; an
	 * unwrapping key only unwraps.
	 */
	A(privt, npriv, CKA_TOKEN, &yes, sizeof(yes));
	A(privt, npriv, CKA_PRIVATE, &yes, sizeof(yes));
	A(privt, npriv, CKA_SENSITIVE, &yes, sizeof(yes));
	if (g->flags & HSM_GEN_REPLICABLE) {
		A(privt, npriv, CKA_EXTRACTABLE, &yes, sizeof(yes));
		A(privt, npriv, CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes));
	} else {
		A(privt, npriv, CKA_EXTRACTABLE, &no, sizeof(no));
	}
	A(privt, npriv, CKA_SIGN, g->unwrapping ? &no : &yes, sizeof(yes));
	/*
	 * tpm2-pkcs11 pads CKM_RSA_PKCS itself and signs with the TPM's raw
	 * RSA operation, which the TPM grants only to keys that may decrypt.
	 */
	rawrsa = c->tok->mod->tpm2 && g->kt == HSM_KEY_RSA_3072 && !g->unwrapping ?
	    CK_TRUE : CK_FALSE;
	A(privt, npriv, CKA_DECRYPT, &rawrsa, sizeof(rawrsa));
	A(privt, npriv, CKA_UNWRAP, g->unwrapping ? &yes : &no, sizeof(no));
	A(privt, npriv, CKA_DERIVE, &no, sizeof(no));
	if (llen > 0)
		A(privt, npriv, CKA_LABEL, label, llen);
#undef A

	rv = c->f->C_GenerateKeyPair(c->s, &mech, pubt, npub, privt, npriv, &pub, &priv);
	if (rv != CKR_OK)
		return p11i_ck(c, rv, "C_GenerateKeyPair");
	if ((r = p11i_spki_of_object(c, pub, &g->spki, &g->spkilen)) != 0 ||
	    (r = p11i_sha256(g->spki, g->spkilen, md)) != 0)
		goto fail;
	idt[0].type = CKA_ID;
	idt[0].pValue = md;
	idt[0].ulValueLen = sizeof(md);
	if ((rv = c->f->C_SetAttributeValue(c->s, priv, idt, 1)) != CKR_OK ||
	    (rv = c->f->C_SetAttributeValue(c->s, pub, idt, 1)) != CKR_OK) {
		r = p11i_ck(c, rv, "C_SetAttributeValue(CKA_ID)");
		goto fail;
	}
	memcpy(g->keyid, md, sizeof(md));
	memset(&ke, 0, sizeof(ke));
	ke.used = true;
	memcpy(ke.id, md, sizeof(md));
	ke.h = priv;
	ke.kt = g->kt;
	ke.kind = g->kt == HSM_KEY_RSA_3072 ? KIND_RSA : KIND_EC;
	ke.fsz = g->kt == HSM_KEY_EC_P256 ? 32 : g->kt == HSM_KEY_EC_P384 ? 48 : 384;
	p11i_cache_put(c->tok, &ke);
	return 0;
 fail:
	/* No half-made key stays behind: an unnamed key is an unusable key. */
	(void)c->f->C_DestroyObject(c->s, priv);
	(void)c->f->C_DestroyObject(c->s, pub);
	OPENSSL_free(g->spki);
	g->spki = NULL;
	g->spkilen = 0;
	return r;
}

/* Generate as g says (p11_generate_flags, p11_generate_unwrapping). */
static int
generate(struct p11_token *tok, struct gen_arg *g, uint8_t keyid[HSM_KEYID_LEN],
    uint8_t **spki, size_t *spkilen)
{
	int r;

	memset(keyid, 0, HSM_KEYID_LEN);
	*spki = NULL;
	*spkilen = 0;
	if (tok == NULL)
		return hsm_err(HSM_EINVAL, "no token");
	if (g->kt != HSM_KEY_EC_P256 && g->kt != HSM_KEY_EC_P384 && g->kt != HSM_KEY_RSA_3072)
		return hsm_err(HSM_EUNSUPPORTED, "key type %d not supported", (int)g->kt);
	if ((g->flags & ~HSM_GEN_ALL) != 0)
		return hsm_err(HSM_EINVAL, "unknown key generation flags 0x%x", g->flags);
	if (g->label != NULL && strlen(g->label) > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label longer than %d bytes", HSM_MAX_LABEL);
	if ((r = p11i_with_session(tok, op_generate, g)) != 0)
		return r;
	/* Hand over as malloc'd memory, as p11.h promises. */
	if ((*spki = malloc(g->spkilen)) == NULL) {
		OPENSSL_free(g->spki);
		return hsm_err(HSM_ENOMEM, "out of memory");
	}
	memcpy(*spki, g->spki, g->spkilen);
	*spkilen = g->spkilen;
	OPENSSL_free(g->spki);
	memcpy(keyid, g->keyid, HSM_KEYID_LEN);
	return 0;
}

int
p11_generate_flags(struct p11_token *tok, enum hsm_keytype kt, const char *label,
    unsigned flags, uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	struct gen_arg g;

	memset(&g, 0, sizeof(g));
	g.kt = kt;
	g.label = label;
	g.flags = flags;
	return generate(tok, &g, keyid, spki, spkilen);
}

int
p11_generate(struct p11_token *tok, enum hsm_keytype kt, const char *label,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	return p11_generate_flags(tok, kt, label, 0, keyid, spki, spkilen);
}

int
p11_generate_unwrapping(struct p11_token *tok, const char *label,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	struct gen_arg g;

	memset(&g, 0, sizeof(g));
	g.kt = HSM_KEY_RSA_3072;
	g.label = label;
	g.unwrapping = true;
	return generate(tok, &g, keyid, spki, spkilen);
}

/* ---- public key, find by label ---- */

struct pub_arg {
	uint8_t keyid[HSM_KEYID_LEN];
	const char *label;
	uint8_t *spki;
	size_t spkilen;
};

static int
op_pubkey(struct call *c, void *v)
{
	struct pub_arg *a = v;
	struct keyent ke;
	int r;

	if ((r = p11i_find_key(c, a->keyid, &ke)) != 0)
		return r;
	return p11i_spki_of_id(c, a->keyid, ke.h, &a->spki, &a->spkilen);
}

static int
op_find_label(struct call *c, void *v)
{
	struct pub_arg *a = v;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	char label[HSM_MAX_LABEL + 1];
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, label, strlen(a->label) },
	};
	CK_OBJECT_HANDLE hs[16];
	CK_ULONG n, i;
	uint8_t *id;
	size_t idlen;
	int r;

	memcpy(label, a->label, strlen(a->label));
	if ((r = p11i_find_objects(c, t, 2, hs, 16, &n)) != 0)
		return r;
	/* The first that carries one of our ids (SHA-256 of its SPKI). */
	for (i = 0; i < n; i++) {
		if ((r = p11i_get_attr(c, hs[i], CKA_ID, &id, &idlen)) != 0)
			return r;
		if (idlen == HSM_KEYID_LEN) {
			memcpy(a->keyid, id, HSM_KEYID_LEN);
			free(id);
			return op_pubkey(c, a);
		}
		free(id);
	}
	return hsm_err(HSM_ENOENT, "no private key labelled '%s' in token '%s'", a->label,
	    c->tok->label);
}

static int
finish_pub(struct pub_arg *a, uint8_t *keyid, uint8_t **spki, size_t *spkilen)
{
	if ((*spki = malloc(a->spkilen)) == NULL) {
		OPENSSL_free(a->spki);
		return hsm_err(HSM_ENOMEM, "out of memory");
	}
	memcpy(*spki, a->spki, a->spkilen);
	*spkilen = a->spkilen;
	OPENSSL_free(a->spki);
	if (keyid != NULL)
		memcpy(keyid, a->keyid, HSM_KEYID_LEN);
	return 0;
}

int
p11_pubkey(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN],
    uint8_t **spki, size_t *spkilen)
{
	struct pub_arg a;
	int r;

	*spki = NULL;
	*spkilen = 0;
	if (tok == NULL || keyid == NULL)
		return hsm_err(HSM_EINVAL, "p11_pubkey: missing argument");
	memset(&a, 0, sizeof(a));
	memcpy(a.keyid, keyid, HSM_KEYID_LEN);
	if ((r = p11i_with_session(tok, op_pubkey, &a)) != 0)
		return r;
	return finish_pub(&a, NULL, spki, spkilen);
}

int
p11_find_label(struct p11_token *tok, const char *label,
    uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki, size_t *spkilen)
{
	struct pub_arg a;
	int r;

	memset(keyid, 0, HSM_KEYID_LEN);
	*spki = NULL;
	*spkilen = 0;
	if (tok == NULL || label == NULL)
		return hsm_err(HSM_EINVAL, "p11_find_label: missing argument");
	if (label[0] == '\0' || strlen(label) > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label must be 1..%d bytes", HSM_MAX_LABEL);
	memset(&a, 0, sizeof(a));
	a.label = label;
	if ((r = p11i_with_session(tok, op_find_label, &a)) != 0)
		return r;
	return finish_pub(&a, keyid, spki, spkilen);
}

/* ---- list by label prefix ---- */

static int
printable_label(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return 0;
	return 1;
}

struct list_arg {
	const char *prefix;
	const uint8_t *after;
	struct p11_key_entry *out;
	size_t max, n;
};

#define LIST_OBJECTS_MAX 65536	/* private keys looked at, at most */

static int
op_list(struct call *c, void *v)
{
	struct list_arg *a = v;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };
	CK_OBJECT_HANDLE *hs = NULL, *nh;
	CK_ULONG n = 0, got;
	size_t cap = 0, plen = strlen(a->prefix);
	CK_RV rv;
	int r;

	if ((rv = c->f->C_FindObjectsInit(c->s, t, 1)) != CKR_OK)
		return p11i_ck(c, rv, "C_FindObjectsInit");
	for (r = 0; r == 0;) {
		if (n == cap) {
			if (cap >= LIST_OBJECTS_MAX)
				break;
			cap = cap == 0 ? 256 : cap * 2;
			if ((nh = realloc(hs, cap * sizeof(*hs))) == NULL) {
				r = hsm_err(HSM_ENOMEM, "out of memory");
				break;
			}
			hs = nh;
		}
		rv = c->f->C_FindObjects(c->s, hs + n, (CK_ULONG)cap - n, &got);
		if ((r = p11i_ck(c, rv, "C_FindObjects")) != 0 || got == 0)
			break;
		n += got;
	}
	rv = c->f->C_FindObjectsFinal(c->s);
	if (r == 0)
		r = p11i_ck(c, rv, "C_FindObjectsFinal");
	for (CK_ULONG i = 0; r == 0 && i < n; i++) {
		uint8_t *id = NULL, *label = NULL;
		size_t idlen = 0, ll = 0, at;

		/*
		 * A key without a label (or an id) is no key of a prefix: skip
		 * it, and one whose label the keyholder protocol could not carry
		 * (not printable ASCII without spaces).
		 */
		if (p11i_get_attr(c, hs[i], CKA_LABEL, &label, &ll) != 0 || ll < plen || ll > HSM_MAX_LABEL ||
		    memcmp(label, a->prefix, plen) != 0 || !printable_label(label, ll) ||
		    p11i_get_attr(c, hs[i], CKA_ID, &id, &idlen) != 0 || idlen != HSM_KEYID_LEN ||
		    (a->after != NULL && memcmp(id, a->after, HSM_KEYID_LEN) <= 0)) {
			free(id);
			free(label);
			continue;
		}
		/* Keep the max smallest ids, sorted: insertion into a short array. */
		for (at = a->n; at > 0 && memcmp(a->out[at - 1].id, id, HSM_KEYID_LEN) > 0; at--)
			;
		if (at < a->max && !(at > 0 && memcmp(a->out[at - 1].id, id, HSM_KEYID_LEN) == 0)) {
			size_t last = a->n < a->max ? a->n : a->max - 1;

			memmove(&a->out[at + 1], &a->out[at], (last - at) * sizeof(a->out[0]));
			memcpy(a->out[at].id, id, HSM_KEYID_LEN);
			memcpy(a->out[at].label, label, ll);
			a->out[at].label[ll] = '\0';
			if (a->n < a->max)
				a->n++;
		}
		free(id);
		free(label);
	}
	free(hs);
	return r;
}

int
p11_list_prefix(struct p11_token *tok, const char *prefix, const uint8_t *after,
    struct p11_key_entry *out, size_t max, size_t *n)
{
	struct list_arg a;
	int r;

	*n = 0;
	if (tok == NULL || prefix == NULL || out == NULL || max == 0)
		return hsm_err(HSM_EINVAL, "p11_list_prefix: missing argument");
	if (prefix[0] == '\0' || strlen(prefix) > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label prefix must be 1..%d bytes", HSM_MAX_LABEL);
	memset(&a, 0, sizeof(a));
	a.prefix = prefix;
	a.after = after;
	a.out = out;
	a.max = max;
	if ((r = p11i_with_session(tok, op_list, &a)) == 0)
		*n = a.n;
	return r;
}

/* ---- sign ---- */

struct sign_arg {
	const uint8_t *keyid;
	int alg;
	const uint8_t *digest;
	size_t dlen;
	uint8_t *sig;
	size_t siglen;
};

static const uint8_t di_sha256[] = {
	0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
	0x05, 0x00, 0x04, 0x20 };
static const uint8_t di_sha384[] = {
	0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
	0x05, 0x00, 0x04, 0x30 };
static const uint8_t di_sha512[] = {
	0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
	0x05, 0x00, 0x04, 0x40 };

/* Raw r||s from CKM_ECDSA -> DER ECDSA-Sig-Value, as X.509 and TLS expect. */
static int
ecdsa_to_der(const uint8_t *raw, size_t len, uint8_t *out, size_t *outlen)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *p = out;
	int n, st;

	if (len == 0 || len % 2 != 0)
		return hsm_err(HSM_EP11, "C_Sign: ECDSA signature of odd length %zu", len);
	if ((es = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(raw, (int)(len / 2), NULL)) == NULL ||
	    (s = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL)) == NULL ||
	    ECDSA_SIG_set0(es, r, s) != 1) {
		st = hsm_err_ossl(HSM_ECRYPTO, "ECDSA_SIG");
		goto out;
	}
	r = s = NULL;	/* owned by es */
	if ((n = i2d_ECDSA_SIG(es, NULL)) <= 0 || n > HSM_MAX_SIG) {
		st = hsm_err_ossl(HSM_ECRYPTO, "i2d_ECDSA_SIG");
		goto out;
	}
	if (i2d_ECDSA_SIG(es, &p) != n) {
		st = hsm_err_ossl(HSM_ECRYPTO, "i2d_ECDSA_SIG");
		goto out;
	}
	*outlen = (size_t)n;
	st = 0;
 out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return st;
}

static int
op_sign(struct call *c, void *v)
{
	struct sign_arg *a = v;
	struct keyent ke;
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	CK_RSA_PKCS_PSS_PARAMS pss;
	uint8_t data[19 + 64], out[HSM_MAX_SIG];
	const uint8_t *prefix = NULL;
	size_t plen = 0, dl;
	CK_ULONG olen = sizeof(out);
	CK_RV rv;
	int r;

	for (int attempt = 0; attempt < 2; attempt++) {
		if ((r = p11i_find_key(c, a->keyid, &ke)) != 0)
			return r;
		if (ke.kind == KIND_OTHER)
			return hsm_err(HSM_EUNSUPPORTED, "key type not supported for signing");
		if ((a->alg == HSM_SIG_ECDSA) != (ke.kind == KIND_EC))
			return hsm_err(HSM_EUNSUPPORTED, "signature algorithm %d does not fit %s key",
			    a->alg, ke.kind == KIND_EC ? "an EC" : "an RSA");
		memset(&pss, 0, sizeof(pss));
		switch (a->alg) {
		case HSM_SIG_ECDSA:
			break;
		case HSM_SIG_RSA_PKCS1_SHA256:
			prefix = di_sha256;
			plen = sizeof(di_sha256);
			break;
		case HSM_SIG_RSA_PKCS1_SHA384:
			prefix = di_sha384;
			plen = sizeof(di_sha384);
			break;
		case HSM_SIG_RSA_PKCS1_SHA512:
			prefix = di_sha512;
			plen = sizeof(di_sha512);
			break;
		case HSM_SIG_RSA_PSS_SHA256:
			pss.hashAlg = CKM_SHA256;
			pss.mgf = CKG_MGF1_SHA256;
			break;
		case HSM_SIG_RSA_PSS_SHA384:
			pss.hashAlg = CKM_SHA384;
			pss.mgf = CKG_MGF1_SHA384;
			break;
		case HSM_SIG_RSA_PSS_SHA512:
			pss.hashAlg = CKM_SHA512;
			pss.mgf = CKG_MGF1_SHA512;
			break;
		}
		if (prefix != NULL)
			mech.mechanism = CKM_RSA_PKCS;
		else if (pss.hashAlg != 0) {
			mech.mechanism = CKM_RSA_PKCS_PSS;
			pss.sLen = a->dlen;
			mech.pParameter = &pss;
			mech.ulParameterLen = sizeof(pss);
		}
		/* PKCS#1 v1.5: the token pads what we give it, so give it the DigestInfo. */
		if (plen > 0)
			memcpy(data, prefix, plen);
		memcpy(data + plen, a->digest, a->dlen);
		dl = plen + a->dlen;

		rv = c->f->C_SignInit(c->s, &mech, ke.h);
		if ((rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) && attempt == 0) {
			/* Destroyed behind our back or re-created: look it up again. */
			p11i_cache_drop(c->tok, a->keyid);
			continue;
		}
		if (rv != CKR_OK)
			return p11i_ck(c, rv, "C_SignInit");
		olen = sizeof(out);
		if ((rv = c->f->C_Sign(c->s, data, dl, out, &olen)) != CKR_OK) {
			r = p11i_ck(c, rv, "C_Sign");
			/* BUFFER_TOO_SMALL leaves the operation active; end it. */
			if (rv == CKR_BUFFER_TOO_SMALL)
				c->dead = true;
			return r;
		}
		if (olen > sizeof(out))
			return hsm_err(HSM_EP11, "C_Sign: signature length out of range");
		if (a->alg == HSM_SIG_ECDSA)
			return ecdsa_to_der(out, olen, a->sig, &a->siglen);
		memcpy(a->sig, out, olen);
		a->siglen = olen;
		return 0;
	}
	return hsm_err(HSM_ENOENT, "key vanished while signing");
}

int
p11_sign(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN], int alg,
    const uint8_t *digest, size_t dlen, uint8_t *sig, size_t *siglen)
{
	struct sign_arg a;
	int want, r;

	*siglen = 0;
	if (tok == NULL || keyid == NULL || digest == NULL || sig == NULL)
		return hsm_err(HSM_EINVAL, "p11_sign: missing argument");
	if ((want = hsm_sigalg_digest_len(alg)) < 0)
		return hsm_err(HSM_EUNSUPPORTED, "unknown signature algorithm %d", alg);
	if ((want == 0 && (dlen < 20 || dlen > 64)) || (want > 0 && dlen != (size_t)want))
		return hsm_err(HSM_EINVAL, "digest of %zu bytes does not fit signature algorithm %d",
		    dlen, alg);
	memset(&a, 0, sizeof(a));
	a.keyid = keyid;
	a.alg = alg;
	a.digest = digest;
	a.dlen = dlen;
	a.sig = sig;
	if ((r = p11i_with_session(tok, op_sign, &a)) != 0)
		return r;
	*siglen = a.siglen;
	return 0;
}

/* ---- destroy ---- */

static int
op_destroy(struct call *c, void *v)
{
	const uint8_t *keyid = v;
	CK_OBJECT_HANDLE priv[8], pub[8];
	CK_ULONG npriv, npub, i;
	CK_RV rv;
	char hex[17];
	int r;

	p11i_cache_drop(c->tok, keyid);
	if ((r = p11i_find_by_id(c, CKO_PRIVATE_KEY, keyid, priv, 8, &npriv)) != 0 ||
	    (r = p11i_find_by_id(c, CKO_PUBLIC_KEY, keyid, pub, 8, &npub)) != 0)
		return r;
	if (npriv == 0 && npub == 0)
		return hsm_err(HSM_ENOENT, "no key with id %s... in token '%s'",
		    hsm_hex(keyid, 8, hex), c->tok->label);
	for (i = 0; i < npriv; i++)
		if ((rv = c->f->C_DestroyObject(c->s, priv[i])) != CKR_OK)
			return p11i_ck(c, rv, "C_DestroyObject");
	for (i = 0; i < npub; i++)
		if ((rv = c->f->C_DestroyObject(c->s, pub[i])) != CKR_OK)
			return p11i_ck(c, rv, "C_DestroyObject");
	return 0;
}

int
p11_destroy(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN])
{
	uint8_t id[HSM_KEYID_LEN];
	int r;

	if (tok == NULL || keyid == NULL)
		return hsm_err(HSM_EINVAL, "p11_destroy: missing argument");
	memcpy(id, keyid, sizeof(id));
	r = p11i_with_session(tok, op_destroy, id);
	/* Also after a failure: a handle may now point at nothing. */
	p11i_cache_drop(tok, id);
	return r;
}

/* ---- key info ---- */

struct info_arg {
	uint8_t keyid[HSM_KEYID_LEN];
	struct p11_key_info ki;
};

static int
op_key_info(struct call *c, void *v)
{
	struct info_arg *a = v;
	struct keyent ke;
	CK_BBOOL b[7];
	char label[HSM_MAX_LABEL];
	CK_ATTRIBUTE t[] = {
		{ CKA_SENSITIVE, &b[0], sizeof(b[0]) },
		{ CKA_ALWAYS_SENSITIVE, &b[1], sizeof(b[1]) },
		{ CKA_EXTRACTABLE, &b[2], sizeof(b[2]) },
		{ CKA_NEVER_EXTRACTABLE, &b[3], sizeof(b[3]) },
		{ CKA_TOKEN, &b[4], sizeof(b[4]) },
		{ CKA_PRIVATE, &b[5], sizeof(b[5]) },
		{ CKA_WRAP_WITH_TRUSTED, &b[6], sizeof(b[6]) },
		{ CKA_LABEL, label, sizeof(label) },
	};
	CK_RV rv;
	int r;

	memset(b, 0, sizeof(b));
	if ((r = p11i_find_key(c, a->keyid, &ke)) != 0)
		return r;
	rv = c->f->C_GetAttributeValue(c->s, ke.h, t, sizeof(t) / sizeof(t[0]));
	/* Missing attributes come back as unavailable; read them as false/empty. */
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE &&
	    rv != CKR_BUFFER_TOO_SMALL)
		return p11i_ck(c, rv, "C_GetAttributeValue");
	for (int i = 0; i < 7; i++)
		if (t[i].ulValueLen != sizeof(CK_BBOOL))
			b[i] = CK_FALSE;
	a->ki.type = ke.kt;
	a->ki.sensitive = b[0] == CK_TRUE;
	a->ki.always_sensitive = b[1] == CK_TRUE;
	a->ki.extractable = b[2] == CK_TRUE;
	a->ki.never_extractable = b[3] == CK_TRUE;
	a->ki.token = b[4] == CK_TRUE;
	a->ki.private_ = b[5] == CK_TRUE;
	a->ki.wrap_with_trusted = b[6] == CK_TRUE;
	if (t[7].ulValueLen != CK_UNAVAILABLE_INFORMATION && t[7].ulValueLen <= HSM_MAX_LABEL) {
		memcpy(a->ki.label, label, t[7].ulValueLen);
		a->ki.label[t[7].ulValueLen] = '\0';
	}
	return 0;
}

int
p11_key_info(struct p11_token *tok, const uint8_t keyid[HSM_KEYID_LEN],
    struct p11_key_info *out)
{
	struct info_arg a;
	int r;

	memset(out, 0, sizeof(*out));
	if (tok == NULL || keyid == NULL)
		return hsm_err(HSM_EINVAL, "p11_key_info: missing argument");
	memset(&a, 0, sizeof(a));
	memcpy(a.keyid, keyid, HSM_KEYID_LEN);
	if ((r = p11i_with_session(tok, op_key_info, &a)) != 0)
		return r;
	*out = a.ki;
	return 0;
}
