/*
 * p11obj.c - the token layer's object helpers (see p11_int.h): finding
 * objects, reading attributes, the SubjectPublicKeyInfo of a key.
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

const uint8_t p11i_oid_p256[10] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
const uint8_t p11i_oid_p384[7] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
const uint8_t p11i_oid_p521[7] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 };

/* ---- object helpers ---- */

int
p11i_find_objects(struct call *c, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *hs,
    CK_ULONG max, CK_ULONG *found)
{
	CK_RV rv;
	int r;

	*found = 0;
	if ((rv = c->f->C_FindObjectsInit(c->s, tmpl, n)) != CKR_OK)
		return p11i_ck(c, rv, "C_FindObjectsInit");
	rv = c->f->C_FindObjects(c->s, hs, max, found);
	r = p11i_ck(c, rv, "C_FindObjects");
	rv = c->f->C_FindObjectsFinal(c->s);
	if (r == 0)
		r = p11i_ck(c, rv, "C_FindObjectsFinal");
	if (r != 0)
		*found = 0;
	return r;
}

int
p11i_find_by_id(struct call *c, CK_OBJECT_CLASS cls, const uint8_t *keyid,
    CK_OBJECT_HANDLE *hs, CK_ULONG max, CK_ULONG *found)
{
	uint8_t id[HSM_KEYID_LEN];
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, id, sizeof(id) },
	};

	memcpy(id, keyid, sizeof(id));
	return p11i_find_objects(c, t, 2, hs, max, found);
}

/* Read one variable-length attribute into a malloc'd buffer. */
int
p11i_get_attr(struct call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, uint8_t **val, size_t *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	uint8_t *buf = NULL;
	CK_RV rv;
	int r;

	*val = NULL;
	*len = 0;
	if ((rv = c->f->C_GetAttributeValue(c->s, h, &a, 1)) != CKR_OK)
		return p11i_ck(c, rv, "C_GetAttributeValue");
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > MAX_ATTR)
		return hsm_err(HSM_EP11, "C_GetAttributeValue: attribute 0x%lx unavailable",
		    (unsigned long)type);
	if ((buf = malloc(a.ulValueLen + 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	a.pValue = buf;
	if ((rv = c->f->C_GetAttributeValue(c->s, h, &a, 1)) != CKR_OK) {
		r = p11i_ck(c, rv, "C_GetAttributeValue");
		free(buf);
		return r;
	}
	*val = buf;
	*len = a.ulValueLen;
	return 0;
}

static int
get_ulong(struct call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
	CK_ATTRIBUTE a = { type, v, sizeof(*v) };
	CK_RV rv;

	*v = 0;
	if ((rv = c->f->C_GetAttributeValue(c->s, h, &a, 1)) != CKR_OK)
		return p11i_ck(c, rv, "C_GetAttributeValue");
	return 0;
}

/* Curve from DER EC parameters: OpenSSL group name and field size. */
static const char *
ec_curve(const uint8_t *p, size_t len, enum hsm_keytype *kt, size_t *fsz)
{
	*kt = 0;
	*fsz = 0;
	if (len == sizeof(p11i_oid_p256) && memcmp(p, p11i_oid_p256, len) == 0) {
		*kt = HSM_KEY_EC_P256;
		*fsz = 32;
		return "prime256v1";
	}
	if (len == sizeof(p11i_oid_p384) && memcmp(p, p11i_oid_p384, len) == 0) {
		*kt = HSM_KEY_EC_P384;
		*fsz = 48;
		return "secp384r1";
	}
	if (len == sizeof(p11i_oid_p521) && memcmp(p, p11i_oid_p521, len) == 0) {
		*fsz = 66;
		return "secp521r1";
	}
	return NULL;
}

/* Key kind, type and size of a key object (private or public). */
static int
key_kind(struct call *c, CK_OBJECT_HANDLE h, struct keyent *ke)
{
	CK_ULONG ktype;
	CK_ATTRIBUTE a = { CKA_MODULUS, NULL, 0 };
	uint8_t *params = NULL;
	size_t plen;
	CK_RV rv;
	int r;

	ke->kind = KIND_OTHER;
	ke->kt = 0;
	ke->fsz = 0;
	if ((r = get_ulong(c, h, CKA_KEY_TYPE, &ktype)) != 0)
		return r;
	if (ktype == CKK_EC) {
		if ((r = p11i_get_attr(c, h, CKA_EC_PARAMS, &params, &plen)) != 0)
			return r;
		if (ec_curve(params, plen, &ke->kt, &ke->fsz) != NULL)
			ke->kind = KIND_EC;
		free(params);
	} else if (ktype == CKK_RSA) {
		if ((rv = c->f->C_GetAttributeValue(c->s, h, &a, 1)) != CKR_OK)
			return p11i_ck(c, rv, "C_GetAttributeValue");
		if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > HSM_MAX_SIG)
			return 0;
		ke->kind = KIND_RSA;
		ke->fsz = a.ulValueLen;
		if (a.ulValueLen == 384)
			ke->kt = HSM_KEY_RSA_3072;
	}
	return 0;
}

/* The private key named keyid, from the cache or the token. HSM_ENOENT if none. */
int
p11i_find_key(struct call *c, const uint8_t *keyid, struct keyent *out)
{
	struct keyent ke;
	CK_OBJECT_HANDLE h;
	CK_ULONG n;
	char hex[17];
	int r;

	memset(out, 0, sizeof(*out));
	if (p11i_cache_get(c->tok, keyid, out))
		return 0;
	if ((r = p11i_find_by_id(c, CKO_PRIVATE_KEY, keyid, &h, 1, &n)) != 0)
		return r;
	if (n == 0)
		return hsm_err(HSM_ENOENT, "no private key with id %s... in token '%s'",
		    hsm_hex(keyid, 8, hex), c->tok->label);
	memset(&ke, 0, sizeof(ke));
	if ((r = key_kind(c, h, &ke)) != 0)
		return r;
	ke.used = true;
	ke.h = h;
	memcpy(ke.id, keyid, HSM_KEYID_LEN);
	p11i_cache_put(c->tok, &ke);
	*out = ke;
	return 0;
}

/* ---- SubjectPublicKeyInfo ---- */

static int
spki_from_params(const char *alg, OSSL_PARAM_BLD *bld, uint8_t **out, size_t *outlen)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	unsigned char *der = NULL;
	int n, r;

	*out = NULL;
	*outlen = 0;
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "token public key rejected by OpenSSL");
		goto out;
	}
	if ((n = i2d_PUBKEY(pkey, &der)) <= 0 || n > HSM_MAX_SPKI) {
		r = hsm_err_ossl(HSM_ECRYPTO, "encoding SubjectPublicKeyInfo");
		goto out;
	}
	*out = der;
	*outlen = (size_t)n;
	der = NULL;
	r = 0;
 out:
	OPENSSL_free(der);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return r;
}

/*
 * CKA_EC_POINT should be a DER OCTET STRING around the point (SoftHSM,
 * the standard) but some modules return the raw point. The raw
 * uncompressed point is 1 + 2*fsz bytes; anything else must be the
 * wrapped form with exactly that inside.
 */
static int
ec_point_unwrap(const uint8_t *p, size_t len, size_t fsz, const uint8_t **pt, size_t *ptlen)
{
	size_t want = 1 + 2 * fsz, hl;

	if (len == want && p[0] == 0x04) {
		*pt = p;
		*ptlen = len;
		return 0;
	}
	if (len >= 2 && p[0] == 0x04) {
		if (p[1] < 0x80)
			hl = 2;
		else if (p[1] == 0x81 && len >= 3)
			hl = 3;
		else
			hl = 0;
		if (hl != 0 && len - hl == want && (hl == 2 ? p[1] : p[2]) == want &&
		    p[hl] == 0x04) {
			*pt = p + hl;
			*ptlen = want;
			return 0;
		}
	}
	return hsm_err(HSM_EP11, "CKA_EC_POINT: unexpected encoding (%zu bytes)", len);
}

/* DER SPKI of the key object h (public key, or RSA private key). */
int
p11i_spki_of_object(struct call *c, CK_OBJECT_HANDLE h, uint8_t **spki, size_t *spkilen)
{
	struct keyent ke;
	OSSL_PARAM_BLD *bld = NULL;
	uint8_t *a = NULL, *b = NULL;
	const uint8_t *pt = NULL;
	size_t alen, blen, ptlen = 0;
	BIGNUM *n = NULL, *e = NULL;
	const char *group;
	enum hsm_keytype kt;
	int r;

	*spki = NULL;
	*spkilen = 0;
	memset(&ke, 0, sizeof(ke));
	if ((r = key_kind(c, h, &ke)) != 0)
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	if (ke.kind == KIND_EC) {
		if ((r = p11i_get_attr(c, h, CKA_EC_PARAMS, &a, &alen)) != 0 ||
		    (r = p11i_get_attr(c, h, CKA_EC_POINT, &b, &blen)) != 0)
			goto out;
		group = ec_curve(a, alen, &kt, &ke.fsz);
		if ((r = ec_point_unwrap(b, blen, ke.fsz, &pt, &ptlen)) != 0)
			goto out;
		if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptlen)) {
			r = hsm_err_ossl(HSM_ECRYPTO, "OSSL_PARAM_BLD");
			goto out;
		}
		r = spki_from_params("EC", bld, spki, spkilen);
	} else if (ke.kind == KIND_RSA) {
		if ((r = p11i_get_attr(c, h, CKA_MODULUS, &a, &alen)) != 0 ||
		    (r = p11i_get_attr(c, h, CKA_PUBLIC_EXPONENT, &b, &blen)) != 0)
			goto out;
		if ((n = BN_bin2bn(a, (int)alen, NULL)) == NULL ||
		    (e = BN_bin2bn(b, (int)blen, NULL)) == NULL ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
			r = hsm_err_ossl(HSM_ECRYPTO, "OSSL_PARAM_BLD");
			goto out;
		}
		r = spki_from_params("RSA", bld, spki, spkilen);
	} else
		r = hsm_err(HSM_EUNSUPPORTED, "key type not supported (EC P-256/384/521 or RSA)");
 out:
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_BLD_free(bld);
	free(a);
	free(b);
	return r;
}

int
p11i_sha256(const uint8_t *p, size_t len, uint8_t md[HSM_KEYID_LEN])
{
	if (EVP_Digest(p, len, md, NULL, EVP_sha256(), NULL) != 1)
		return hsm_err_ossl(HSM_ECRYPTO, "SHA-256");
	return 0;
}

/* SPKI of key keyid, read from its public object (or the RSA private key) and checked against the id. */
int
p11i_spki_of_id(struct call *c, const uint8_t *keyid, CK_OBJECT_HANDLE priv,
    uint8_t **spki, size_t *spkilen)
{
	CK_OBJECT_HANDLE h;
	CK_ULONG n;
	uint8_t *der = NULL, md[HSM_KEYID_LEN];
	size_t len = 0;
	int r;

	*spki = NULL;
	*spkilen = 0;
	if ((r = p11i_find_by_id(c, CKO_PUBLIC_KEY, keyid, &h, 1, &n)) != 0)
		return r;
	/* An RSA private key carries its public half; an EC one does not. */
	if ((r = p11i_spki_of_object(c, n == 1 ? h : priv, &der, &len)) != 0) {
		if (n == 0 && !c->dead)
			r = hsm_err(HSM_ENOENT, "token '%s': no public key object for this key",
			    c->tok->label);
		goto out;
	}
	if ((r = p11i_sha256(der, len, md)) != 0)
		goto out;
	/* Keys are named by their SPKI hash: a mismatch means a foreign or corrupt object. */
	if (memcmp(md, keyid, HSM_KEYID_LEN) != 0) {
		r = hsm_err(HSM_EP11, "token '%s': public key does not match its CKA_ID",
		    c->tok->label);
		goto out;
	}
	*spki = der;
	*spkilen = len;
	der = NULL;
	r = 0;
 out:
	OPENSSL_free(der);
	return r;
}
