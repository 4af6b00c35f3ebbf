/*
 * p11wrap.c - the CA key from token to token (see p11.h): wrapped
 * for another token's unwrapping key, unwrapped from one.
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

/* ---- replication: wrap for another token, unwrap from one ---- */

/* A cached handle is a private object's: all invalid after a logout. */
static void
cache_clear(struct p11_token *tok)
{
	pthread_mutex_lock(&tok->mu);
	memset(tok->cache, 0, sizeof(tok->cache));
	pthread_mutex_unlock(&tok->mu);
}

/* Log in as the security officer on c (no one logged in), with the PIN from so. */
static int
so_login(struct call *c, const struct p11_pin_source *so)
{
	if (so == NULL || (so->file == NULL) == (so->env == NULL))
		return hsm_err(HSM_EPERM, "wrapping a key for another token needs the security "
		    "officer's PIN (a file or an environment variable)");
	return p11i_login_as(c->tok, c->s, CKU_SO, so->file, so->env, so->value, so->value_len);
}

/* The modulus and exponent of an RSA SubjectPublicKeyInfo (caller frees both). */
static int
rsa_spki(const uint8_t *spki, size_t len, BIGNUM **n, BIGNUM **e)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk = len <= HSM_MAX_SPKI ? d2i_PUBKEY(NULL, &p, (long)len) : NULL;
	int r = 0;

	*n = *e = NULL;
	if (pk == NULL || p != spki + len || !EVP_PKEY_is_a(pk, "RSA"))
		r = hsm_err(HSM_EINVAL, "the wrapping key is not an RSA public key");
	else if (EVP_PKEY_get_bits(pk) < 2048 || EVP_PKEY_get_bits(pk) > 4096)
		r = hsm_err(HSM_EINVAL, "the wrapping key has %d bits (2048 to 4096 wanted)",
		    EVP_PKEY_get_bits(pk));
	else if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, e))
		r = hsm_err_ossl(HSM_ECRYPTO, "reading the wrapping key");
	EVP_PKEY_free(pk);
	if (r != 0) {
		BN_free(*n);
		BN_free(*e);
		*n = *e = NULL;
	}
	return r;
}

/* A big-endian copy of bn into a malloc'd buffer. */
static uint8_t *
bn_bytes(const BIGNUM *bn, CK_ULONG *len)
{
	uint8_t *b = malloc((size_t)BN_num_bytes(bn) + 1);

	*len = b != NULL ? (CK_ULONG)BN_bn2bin(bn, b) : 0;
	return b;
}

struct wrap_arg {
	const struct p11_pin_source *so;
	uint8_t keyid[HSM_KEYID_LEN];
	const uint8_t *target;
	size_t target_len;
	struct hsm_wrapped *out;
};

/*
 * As the SO (logged in on c): the target's public key as a trusted session
 * object, a trusted AES-256 session key only trusted keys may wrap, and
 * that key wrapped under the target's (*aes stays, for the user's wrap).
 */
static int
so_transport(struct call *c, struct wrap_arg *a, CK_OBJECT_HANDLE *aes)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS pubcls = CKO_PUBLIC_KEY;
	CK_KEY_TYPE rsa = CKK_RSA;
	CK_ULONG klen = 32, nlen = 0, elen = 0, tl;
	BIGNUM *n = NULL, *e = NULL;
	uint8_t *nb = NULL, *eb = NULL;
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
	CK_MECHANISM agen = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_RSA_PKCS_OAEP_PARAMS op;
	CK_MECHANISM oaep = { CKM_RSA_PKCS_OAEP, &op, sizeof(op) };
	CK_RV rv;
	int r;

	*aes = CK_INVALID_HANDLE;
	if ((r = rsa_spki(a->target, a->target_len, &n, &e)) != 0)
		return r;
	if ((nb = bn_bytes(n, &nlen)) == NULL || (eb = bn_bytes(e, &elen)) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	{
		CK_ATTRIBUTE pt[] = {
			{ CKA_CLASS, &pubcls, sizeof(pubcls) }, { CKA_KEY_TYPE, &rsa, sizeof(rsa) },
			{ CKA_TOKEN, &no, sizeof(no) }, { CKA_PRIVATE, &no, sizeof(no) },
			{ CKA_WRAP, &yes, sizeof(yes) }, { CKA_ENCRYPT, &no, sizeof(no) },
			{ CKA_VERIFY, &no, sizeof(no) }, { CKA_TRUSTED, &yes, sizeof(yes) },
			{ CKA_MODULUS, nb, nlen }, { CKA_PUBLIC_EXPONENT, eb, elen },
		};
		CK_ATTRIBUTE at[] = {
			{ CKA_TOKEN, &no, sizeof(no) }, { CKA_PRIVATE, &no, sizeof(no) },
			{ CKA_VALUE_LEN, &klen, sizeof(klen) }, { CKA_SENSITIVE, &yes, sizeof(yes) },
			{ CKA_EXTRACTABLE, &yes, sizeof(yes) }, { CKA_WRAP, &yes, sizeof(yes) },
			{ CKA_UNWRAP, &no, sizeof(no) }, { CKA_ENCRYPT, &no, sizeof(no) },
			{ CKA_DECRYPT, &no, sizeof(no) }, { CKA_TRUSTED, &yes, sizeof(yes) },
			{ CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) },
		};

		if ((rv = c->f->C_CreateObject(c->s, pt, sizeof(pt) / sizeof(pt[0]), &pub)) != CKR_OK) {
			r = p11i_ck(c, rv, "C_CreateObject(trusted wrapping key)");
			goto out;
		}
		if ((rv = c->f->C_GenerateKey(c->s, &agen, at, sizeof(at) / sizeof(at[0]), aes)) !=
		    CKR_OK) {
			r = p11i_ck(c, rv, "C_GenerateKey(AES transport key)");
			goto out;
		}
	}
	/* RSA-OAEP with SHA-256; SoftHSM2 2.6 knows only SHA-1 for OAEP. */
	for (int h = HSM_OAEP_SHA256; h >= HSM_OAEP_SHA1; h--) {
		op.hashAlg = h == HSM_OAEP_SHA256 ? CKM_SHA256 : CKM_SHA_1;
		op.mgf = h == HSM_OAEP_SHA256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1;
		op.source = CKZ_DATA_SPECIFIED;
		op.pSourceData = NULL;
		op.ulSourceDataLen = 0;
		tl = sizeof(a->out->transport);
		rv = c->f->C_WrapKey(c->s, &oaep, pub, *aes, a->out->transport, &tl);
		a->out->oaep = (uint8_t)h;
		if (rv != CKR_ARGUMENTS_BAD && rv != CKR_MECHANISM_PARAM_INVALID)
			break;
	}
	if (rv != CKR_OK) {
		r = p11i_ck(c, rv, "C_WrapKey(RSA-OAEP)");
		goto out;
	}
	a->out->tlen = tl;
	r = 0;
 out:
	if (pub != CK_INVALID_HANDLE)
		(void)c->f->C_DestroyObject(c->s, pub);
	BN_free(n);
	BN_free(e);
	free(nb);
	free(eb);
	return r;
}

static int
op_wrap(struct call *c, void *v)
{
	struct wrap_arg *a = v;
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE aes = CK_INVALID_HANDLE;
	struct keyent ke;
	CK_ULONG kl;
	CK_RV rv;
	int r, r2;

	/* The key exists, before the p11i_login changes. */
	if ((r = p11i_find_key(c, a->keyid, &ke)) != 0)
		return r;
	if ((rv = c->f->C_Logout(c->s)) != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN)
		return p11i_ck(c, rv, "C_Logout");
	cache_clear(c->tok);
	if ((r = so_login(c, a->so)) == 0) {
		r = so_transport(c, a, &aes);
		(void)c->f->C_Logout(c->s);
	}
	/* The user again, whatever happened: the keyholder goes on serving. */
	if ((r2 = p11i_login(c->tok, c->s)) != 0 && r == 0)
		r = r2;
	if (r == 0 && (r = p11i_find_key(c, a->keyid, &ke)) == 0) {
		kl = sizeof(a->out->key);
		rv = c->f->C_WrapKey(c->s, &kwp, aes, ke.h, a->out->key, &kl);
		if (rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE)
			r = hsm_err(HSM_EPERM, "the token refuses to wrap this key (%s): it is not "
			    "extractable, or only to keys its security officer trusts", p11i_ckr_name(rv));
		else if (rv != CKR_OK)
			r = p11i_ck(c, rv, "C_WrapKey(AES key wrap with padding)");
		else
			a->out->klen = kl;
	}
	if (aes != CK_INVALID_HANDLE && (rv = c->f->C_DestroyObject(c->s, aes)) != CKR_OK) {
		/* Closing the session destroys it: never leave a trusted key behind. */
		c->dead = true;
		if (r == 0)
			r = p11i_ck(c, rv, "C_DestroyObject(AES transport key)");
	}
	return r;
}

int
p11_wrap(struct p11_token *tok, const struct p11_pin_source *so,
    const uint8_t keyid[HSM_KEYID_LEN], const uint8_t *target_spki, size_t target_len,
    struct hsm_wrapped *out)
{
	struct wrap_arg a;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (tok == NULL || keyid == NULL || target_spki == NULL || out == NULL)
		return hsm_err(HSM_EINVAL, "p11_wrap: missing argument");
	memset(&a, 0, sizeof(a));
	a.so = so;
	memcpy(a.keyid, keyid, HSM_KEYID_LEN);
	a.target = target_spki;
	a.target_len = target_len;
	a.out = out;
	if ((r = p11i_with_session(tok, op_wrap, &a)) != 0)
		OPENSSL_cleanse(out, sizeof(*out));
	return r;
}

/* What an unwrapped key is: its kind and the public key object's attributes. */
struct pubparts {
	CK_KEY_TYPE type;
	uint8_t *a, *b;		/* EC: params, point (DER OCTET STRING); RSA: n, e */
	CK_ULONG alen, blen;
};

static void
pubparts_free(struct pubparts *pp)
{
	free(pp->a);
	free(pp->b);
}

/* The public key object's attributes of spki (EC P-256/P-384, RSA 2048..4096). */
static int
pubparts_of(const uint8_t *spki, size_t len, struct pubparts *pp)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk = len <= HSM_MAX_SPKI ? d2i_PUBKEY(NULL, &p, (long)len) : NULL;
	unsigned char pt[1 + 2 * 66];
	char group[32];
	size_t gl, ptlen = 0;
	BIGNUM *n = NULL, *e = NULL;
	int r = 0;

	memset(pp, 0, sizeof(*pp));
	if (pk == NULL || p != spki + len) {
		r = hsm_err(HSM_EINVAL, "the key's public half is not a SubjectPublicKeyInfo");
	} else if (EVP_PKEY_is_a(pk, "EC")) {
		const uint8_t *oid = NULL;
		size_t oidlen = 0;

		if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
		    sizeof(group), &gl))
			group[0] = '\0';
		if (strcmp(group, "prime256v1") == 0) {
			oid = p11i_oid_p256;
			oidlen = sizeof(p11i_oid_p256);
		} else if (strcmp(group, "secp384r1") == 0) {
			oid = p11i_oid_p384;
			oidlen = sizeof(p11i_oid_p384);
		}
		if (oid == NULL ||
		    !EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
		    sizeof(pt), &ptlen) || ptlen < 65 || ptlen > 127) {
			r = hsm_err(HSM_EUNSUPPORTED, "only EC P-256 and P-384 or RSA keys unwrap here");
		} else if ((pp->a = malloc(oidlen)) == NULL || (pp->b = malloc(ptlen + 2)) == NULL) {
			r = hsm_err(HSM_ENOMEM, "out of memory");
		} else {
			pp->type = CKK_EC;
			memcpy(pp->a, oid, oidlen);
			pp->alen = oidlen;
			/* CKA_EC_POINT: the point in a DER OCTET STRING */
			pp->b[0] = 0x04;
			pp->b[1] = (uint8_t)ptlen;
			memcpy(pp->b + 2, pt, ptlen);
			pp->blen = ptlen + 2;
		}
	} else if (EVP_PKEY_is_a(pk, "RSA")) {
		if (EVP_PKEY_get_bits(pk) < 2048 || EVP_PKEY_get_bits(pk) > 4096 ||
		    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n) ||
		    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e))
			r = hsm_err(HSM_EUNSUPPORTED, "an RSA key of 2048 to 4096 bits is wanted");
		else if ((pp->a = bn_bytes(n, &pp->alen)) == NULL ||
		    (pp->b = bn_bytes(e, &pp->blen)) == NULL)
			r = hsm_err(HSM_ENOMEM, "out of memory");
		else
			pp->type = CKK_RSA;
	} else {
		r = hsm_err(HSM_EUNSUPPORTED, "only EC P-256 and P-384 or RSA keys unwrap here");
	}
	BN_free(n);
	BN_free(e);
	EVP_PKEY_free(pk);
	if (r != 0)
		pubparts_free(pp);
	return r;
}

struct unwrap_arg {
	uint8_t wrapkey[HSM_KEYID_LEN];
	const struct hsm_wrapped *w;
	const uint8_t *spki;
	size_t spkilen;
	const char *label;
	uint8_t keyid[HSM_KEYID_LEN];
};

static int
op_unwrap(struct call *c, void *v)
{
	struct unwrap_arg *a = v;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS seccls = CKO_SECRET_KEY, privcls = CKO_PRIVATE_KEY, pubcls = CKO_PUBLIC_KEY;
	CK_KEY_TYPE aestype = CKK_AES;
	CK_RSA_PKCS_OAEP_PARAMS op = {
		a->w->oaep == HSM_OAEP_SHA256 ? CKM_SHA256 : CKM_SHA_1,
		a->w->oaep == HSM_OAEP_SHA256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1,
		CKZ_DATA_SPECIFIED, NULL, 0,
	};
	CK_MECHANISM oaep = { CKM_RSA_PKCS_OAEP, &op, sizeof(op) };
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE wk, aes = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, h;
	CK_ULONG n, llen = a->label != NULL ? strlen(a->label) : 0;
	char label[HSM_MAX_LABEL + 1];
	struct pubparts pp;
	CK_RV rv;
	int r;

	if ((r = pubparts_of(a->spki, a->spkilen, &pp)) != 0)
		return r;
	memcpy(label, a->label != NULL ? a->label : "", llen);
	if ((r = p11i_find_by_id(c, CKO_PRIVATE_KEY, a->keyid, &h, 1, &n)) != 0)
		goto out;
	if (n != 0) {
		r = hsm_err(HSM_EEXIST, "token '%s' holds this key already", c->tok->label);
		goto out;
	}
	if ((r = p11i_find_by_id(c, CKO_PRIVATE_KEY, a->wrapkey, &wk, 1, &n)) != 0)
		goto out;
	if (n == 0) {
		r = hsm_err(HSM_ENOENT, "token '%s' holds no unwrapping key for this blob "
		    "(was it made for another token?)", c->tok->label);
		goto out;
	}
	{
		CK_ATTRIBUTE at[] = {
			{ CKA_CLASS, &seccls, sizeof(seccls) }, { CKA_KEY_TYPE, &aestype, sizeof(aestype) },
			{ CKA_TOKEN, &no, sizeof(no) }, { CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_UNWRAP, &yes, sizeof(yes) }, { CKA_WRAP, &no, sizeof(no) },
			{ CKA_ENCRYPT, &no, sizeof(no) }, { CKA_DECRYPT, &no, sizeof(no) },
		};
		CK_ATTRIBUTE kt[] = {
			{ CKA_CLASS, &privcls, sizeof(privcls) }, { CKA_KEY_TYPE, &pp.type, sizeof(pp.type) },
			{ CKA_TOKEN, &yes, sizeof(yes) }, { CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) }, { CKA_SIGN, &yes, sizeof(yes) },
			{ CKA_DECRYPT, &no, sizeof(no) }, { CKA_UNWRAP, &no, sizeof(no) },
			{ CKA_DERIVE, &no, sizeof(no) }, { CKA_ID, a->keyid, HSM_KEYID_LEN },
			{ CKA_LABEL, label, llen },
		};
		CK_ATTRIBUTE pt[] = {
			{ CKA_CLASS, &pubcls, sizeof(pubcls) }, { CKA_KEY_TYPE, &pp.type, sizeof(pp.type) },
			{ CKA_TOKEN, &yes, sizeof(yes) }, { CKA_PRIVATE, &no, sizeof(no) },
			{ CKA_WRAP, &no, sizeof(no) }, { CKA_ID, a->keyid, HSM_KEYID_LEN },
			{ pp.type == CKK_EC ? CKA_EC_PARAMS : CKA_MODULUS, pp.a, pp.alen },
			{ pp.type == CKK_EC ? CKA_EC_POINT : CKA_PUBLIC_EXPONENT, pp.b, pp.blen },
			{ CKA_LABEL, label, llen },
		};

		rv = c->f->C_UnwrapKey(c->s, &oaep, wk, (CK_BYTE_PTR)a->w->transport, a->w->tlen, at,
		    sizeof(at) / sizeof(at[0]), &aes);
		if (rv != CKR_OK) {
			r = p11i_ck(c, rv, "C_UnwrapKey(RSA-OAEP transport key)");
			goto out;
		}
		rv = c->f->C_UnwrapKey(c->s, &kwp, aes, (CK_BYTE_PTR)a->w->key, a->w->klen, kt,
		    sizeof(kt) / sizeof(kt[0]) - (llen == 0), &priv);
		if (rv != CKR_OK) {
			r = p11i_ck(c, rv, "C_UnwrapKey(AES key wrap with padding)");
			goto out;
		}
		rv = c->f->C_CreateObject(c->s, pt, sizeof(pt) / sizeof(pt[0]) - (llen == 0), &pub);
		if (rv != CKR_OK) {
			r = p11i_ck(c, rv, "C_CreateObject(public key)");
			goto out;
		}
	}
	r = 0;
 out:
	if (aes != CK_INVALID_HANDLE)
		(void)c->f->C_DestroyObject(c->s, aes);
	if (r != 0 && priv != CK_INVALID_HANDLE)
		(void)c->f->C_DestroyObject(c->s, priv);
	if (r != 0 && pub != CK_INVALID_HANDLE)
		(void)c->f->C_DestroyObject(c->s, pub);
	pubparts_free(&pp);
	return r;
}

int
p11_unwrap(struct p11_token *tok, const uint8_t wrapkey_id[HSM_KEYID_LEN],
    const struct hsm_wrapped *w, const uint8_t *spki, size_t spkilen, const char *label,
    uint8_t keyid[HSM_KEYID_LEN])
{
	struct unwrap_arg a;
	int r;

	memset(keyid, 0, HSM_KEYID_LEN);
	if (tok == NULL || wrapkey_id == NULL || w == NULL || spki == NULL)
		return hsm_err(HSM_EINVAL, "p11_unwrap: missing argument");
	if (w->tlen == 0 || w->tlen > sizeof(w->transport) || w->klen < 16 ||
	    w->klen > sizeof(w->key) || (w->oaep != HSM_OAEP_SHA1 && w->oaep != HSM_OAEP_SHA256))
		return hsm_err(HSM_EINVAL, "p11_unwrap: malformed wrapped key");
	if (label != NULL && strlen(label) > HSM_MAX_LABEL)
		return hsm_err(HSM_EINVAL, "key label longer than %d bytes", HSM_MAX_LABEL);
	memset(&a, 0, sizeof(a));
	memcpy(a.wrapkey, wrapkey_id, HSM_KEYID_LEN);
	a.w = w;
	a.spki = spki;
	a.spkilen = spkilen;
	a.label = label;
	if ((r = p11i_sha256(spki, spkilen, a.keyid)) != 0 || (r = p11i_with_session(tok, op_unwrap, &a)) != 0)
		return r;
	memcpy(keyid, a.keyid, HSM_KEYID_LEN);
	return 0;
}
