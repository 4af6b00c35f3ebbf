/* cert.c - root, X.509-SVIDs, parsing and CSR checks (see cert.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "err.h"
#include "spiffe.h"
#include "util.h"

#define UB_NAME 64	/* X.520 upper bound for O and CN */

/* ---- building ---- */

/* SHA-384 goes with P-384 (same strength); SHA-256 with P-256 and RSA. */
const EVP_MD *
cert_sig_md(EVP_PKEY *pub)
{
	if (EVP_PKEY_is_a(pub, "EC") && EVP_PKEY_get_bits(pub) == 384)
		return EVP_sha384();
	return EVP_sha256();
}

static int
set_random_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn = NULL;
	int r = HSM_ECRYPTO;

	/* 128 random bits, unsigned so positive; redraw the (2^-128) zero. */
	do {
		if (RAND_bytes(b, sizeof(b)) != 1)
			return hsm_err_ossl(HSM_ECRYPTO, "RAND_bytes");
		BN_free(bn);
		if ((bn = BN_bin2bn(b, sizeof(b), NULL)) == NULL)
			return hsm_err_ossl(HSM_ECRYPTO, "BN_bin2bn");
	} while (BN_is_zero(bn));
	if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot set the serial number");
	else
		r = 0;
	BN_free(bn);
	return r;
}

/* Add an extension given in OpenSSL's config syntax; only for fixed values, never input. */
static int
add_ext_conf(X509 *x, int nid, const char *value)
{
	X509_EXTENSION *e;
	int ok;

	if ((e = X509V3_EXT_nconf_nid(NULL, NULL, nid, value)) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot build an extension");
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : hsm_err_ossl(HSM_ECRYPTO, "cannot add an extension");
}

/* RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING. */
static int
pubkey_skid(X509 *x, ASN1_OCTET_STRING **out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	ASN1_OCTET_STRING *os;

	*out = NULL;
	if (!X509_pubkey_digest(x, EVP_sha1(), md, &mdlen) ||
	    (os = ASN1_OCTET_STRING_new()) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot compute the key identifier");
	if (!ASN1_OCTET_STRING_set(os, md, (int)mdlen)) {
		ASN1_OCTET_STRING_free(os);
		return hsm_err_ossl(HSM_ECRYPTO, "cannot compute the key identifier");
	}
	*out = os;
	return 0;
}

/* SKI of x (computed from its key) and AKI = the issuer's SKI (issuer may be x). */
static int
add_key_ids(X509 *x, X509 *issuer)
{
	ASN1_OCTET_STRING *ski = NULL, *iski = NULL;
	const ASN1_OCTET_STRING *have;
	AUTHORITY_KEYID *akid = NULL;
	int r;

	if ((r = pubkey_skid(x, &ski)) != 0)
		goto out;
	if (!X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot add the subject key identifier");
		goto out;
	}
	if (issuer == x)
		iski = ASN1_OCTET_STRING_dup(ski);
	else if ((have = X509_get0_subject_key_id(issuer)) != NULL)
		iski = ASN1_OCTET_STRING_dup(have);
	else if ((r = pubkey_skid(issuer, &iski)) != 0)
		goto out;
	if (iski == NULL || (akid = AUTHORITY_KEYID_new()) == NULL) {
		r = hsm_err_ossl(HSM_ECRYPTO, "out of memory");
		goto out;
	}
	akid->keyid = iski;
	iski = NULL;
	if (!X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot add the authority key identifier");
		goto out;
	}
	r = 0;
 out:
	ASN1_OCTET_STRING_free(ski);
	ASN1_OCTET_STRING_free(iski);
	AUTHORITY_KEYID_free(akid);
	return r;
}

/*
 * A subjectAltName of a dNSName (dns, may be NULL) and then one URI, built
 * as ASN.1 (never through config syntax).
 */
static int
add_sans(X509 *x, const char *dns, const char *uri, int critical)
{
	const char *v[2] = { dns, uri };
	const int type[2] = { GEN_DNS, GEN_URI };
	GENERAL_NAMES *gens = NULL;
	GENERAL_NAME *gn = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	int r = HSM_ECRYPTO;

	if ((gens = sk_GENERAL_NAME_new_null()) == NULL) {
		r = hsm_err_ossl(HSM_ECRYPTO, "out of memory");
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		if (v[i] == NULL)
			continue;
		if ((gn = GENERAL_NAME_new()) == NULL || (ia5 = ASN1_IA5STRING_new()) == NULL ||
		    !ASN1_STRING_set(ia5, v[i], (int)strlen(v[i]))) {
			r = hsm_err_ossl(HSM_ECRYPTO, "out of memory");
			goto out;
		}
		GENERAL_NAME_set0_value(gn, type[i], ia5);
		ia5 = NULL;
		if (!sk_GENERAL_NAME_push(gens, gn)) {
			r = hsm_err_ossl(HSM_ECRYPTO, "out of memory");
			goto out;
		}
		gn = NULL;
	}
	if (!X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical, X509V3_ADD_DEFAULT)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot add the subject alternative name");
		goto out;
	}
	r = 0;
 out:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(gens);
	return r;
}

/* A subjectAltName with exactly one URI (cert.h). */
int
cert_add_uri_san(X509 *x, const char *uri, int critical)
{
	return add_sans(x, NULL, uri, critical);
}

static int
name_add(X509_NAME *n, const char *field, const char *value)
{
	/* Cut at the X.520 bound rather than fail: the SAN carries the exact name. */
	int len = (int)strnlen(value, UB_NAME);

	if (!X509_NAME_add_entry_by_txt(n, field, MBSTRING_UTF8, (const unsigned char *)value,
	    len, -1, 0))
		return hsm_err_ossl(HSM_ECRYPTO, "cannot build the certificate name");
	return 0;
}

static int
set_validity(X509 *x, time_t nb, time_t na)
{
	if (ASN1_TIME_set(X509_getm_notBefore(x), nb) == NULL ||
	    ASN1_TIME_set(X509_getm_notAfter(x), na) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot set the validity period");
	return 0;
}

/*
 * A failed signature: a keyholder key's provider explains itself in the
 * first error's data ("keyholder: ..."), which hsm_err_ossl() would drop.
 */
static int
sign_failed(void)
{
	const char *data = NULL;
	char why[300];
	int flags = 0;

	if (ERR_peek_error_data(&data, &flags) != 0 && data != NULL &&
	    (flags & ERR_TXT_STRING) && *data != '\0') {
		snprintf(why, sizeof(why), "%s", data);
		ERR_clear_error();
		return hsm_err(HSM_ECRYPTO, "signing the certificate failed: %s", why);
	}
	return hsm_err_ossl(HSM_ECRYPTO, "signing the certificate failed");
}

/* Sign x, then check the signature with the issuer's public key: catches a faulty token. */
static int
sign_and_check(X509 *x, EVP_PKEY *signer, EVP_PKEY *issuer_pub)
{
	if (X509_sign(x, signer, cert_sig_md(issuer_pub)) <= 0)
		return sign_failed();
	if (X509_verify(x, issuer_pub) != 1)
		return hsm_err_ossl(HSM_ECRYPTO,
		    "the signature made by the CA key does not verify with the CA certificate's key");
	return 0;
}

int
cert_time_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	*out = 0;
	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return hsm_err(HSM_EINVAL, "unreadable time");
	*out = (int64_t)timegm(&tm);
	return 0;
}

int
cert_serial_hex(const ASN1_INTEGER *serial, char *out, size_t cap)
{
	BIGNUM *bn = serial != NULL ? ASN1_INTEGER_to_BN(serial, NULL) : NULL;
	char *h = bn != NULL ? BN_bn2hex(bn) : NULL;
	int r = 0;

	if (cap > 0)
		out[0] = '\0';
	if (h == NULL || strlen(h) >= cap || h[0] == '-') {
		r = hsm_err(HSM_EINVAL, "unreadable serial number");
	} else {
		/* BN_bn2hex keeps a leading zero nibble ("0A..."); drop it. */
		const char *d = h;
		size_t i;

		while (d[0] == '0' && d[1] != '\0')
			d++;
		for (i = 0; d[i] != '\0'; i++)
			out[i] = (char)((d[i] >= 'A' && d[i] <= 'F') ? d[i] - 'A' + 'a' : d[i]);
		out[i] = '\0';
	}
	OPENSSL_free(h);
	BN_free(bn);
	return r;
}

int
cert_make_root(EVP_PKEY *signer, EVP_PKEY *pub, const char *td, int64_t ttl, X509 **out)
{
	char uri[SPIFFE_TD_MAX + sizeof(SPIFFE_SCHEME)], cn[UB_NAME + 1];
	X509 *x = NULL;
	X509_NAME *name;
	time_t now = time(NULL);
	int r;

	*out = NULL;
	if ((r = spiffe_td_check(td)) != 0)
		return r;
	if (ttl <= CERT_BACKDATE || ttl > CERT_MAX_TTL)
		return hsm_err(HSM_EINVAL, "CA validity of %lld seconds is out of range",
		    (long long)ttl);
	snprintf(uri, sizeof(uri), "%s%s", SPIFFE_SCHEME, td);
	if (strlen("hsmesh CA ") + strlen(td) <= UB_NAME)
		snprintf(cn, sizeof(cn), "hsmesh CA %s", td);
	else
		snprintf(cn, sizeof(cn), "hsmesh CA");

	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "X509_new");
		goto out;
	}
	name = X509_get_subject_name(x);
	if ((r = set_random_serial(x)) != 0 || (r = name_add(name, "O", td)) != 0 ||
	    (r = name_add(name, "CN", cn)) != 0)
		goto out;
	if (!X509_set_issuer_name(x, name) || !X509_set_pubkey(x, pub)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot set the root's name or key");
		goto out;
	}
	if ((r = set_validity(x, now - CERT_BACKDATE, now + (time_t)ttl)) != 0 ||
	    (r = add_ext_conf(x, NID_basic_constraints, "critical,CA:TRUE")) != 0 ||
	    (r = add_ext_conf(x, NID_key_usage,
	    "critical,keyCertSign,cRLSign,digitalSignature")) != 0 ||
	    (r = add_key_ids(x, x)) != 0 || (r = cert_add_uri_san(x, uri, 0)) != 0 ||
	    (r = sign_and_check(x, signer, pub)) != 0)
		goto out;
	*out = x;
	x = NULL;
	r = 0;
 out:
	X509_free(x);
	return r;
}

/* Append extension nid = value (openssl config syntax) to sk. */
static int
ext_push(STACK_OF(X509_EXTENSION) *sk, int nid, const char *value)
{
	X509_EXTENSION *e;

	if ((e = X509V3_EXT_nconf_nid(NULL, NULL, nid, value)) == NULL)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot build an extension");
	if (!sk_X509_EXTENSION_push(sk, e)) {
		X509_EXTENSION_free(e);
		return hsm_err_ossl(HSM_ECRYPTO, "out of memory");
	}
	return 0;
}

int
cert_make_ca_csr(EVP_PKEY *signer, EVP_PKEY *pub, const char *td, X509_REQ **out)
{
	char uri[SPIFFE_TD_MAX + sizeof(SPIFFE_SCHEME) + 4], nc[SPIFFE_TD_MAX + 32];
	char cn[UB_NAME + 1];
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_REQ *req = NULL;
	X509_NAME *name;
	int r;

	*out = NULL;
	if ((r = spiffe_td_check(td)) != 0)
		return r;
	snprintf(uri, sizeof(uri), "URI:%s%s", SPIFFE_SCHEME, td);
	snprintf(nc, sizeof(nc), "critical,permitted;URI:%s", td);
	if (strlen("hsmesh CA ") + strlen(td) <= UB_NAME)
		snprintf(cn, sizeof(cn), "hsmesh CA %s", td);
	else
		snprintf(cn, sizeof(cn), "hsmesh CA");
	if ((req = X509_REQ_new()) == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
	    (exts = sk_X509_EXTENSION_new_null()) == NULL) {
		r = hsm_err_ossl(HSM_ECRYPTO, "X509_REQ_new");
		goto out;
	}
	name = X509_REQ_get_subject_name(req);
	if ((r = name_add(name, "O", td)) != 0 || (r = name_add(name, "CN", cn)) != 0)
		goto out;
	if (!X509_REQ_set_pubkey(req, pub)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot set the request's key");
		goto out;
	}
	if ((r = ext_push(exts, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")) != 0 ||
	    (r = ext_push(exts, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature")) != 0 ||
	    (r = ext_push(exts, NID_subject_alt_name, uri)) != 0 ||
	    (r = ext_push(exts, NID_name_constraints, nc)) != 0)
		goto out;
	if (!X509_REQ_add_extensions(req, exts)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot add the requested extensions");
		goto out;
	}
	if (X509_REQ_sign(req, signer, cert_sig_md(pub)) <= 0) {
		r = sign_failed();
		goto out;
	}
	if (X509_REQ_verify(req, pub) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO,
		    "the signature made by the CA key does not verify with its public key");
		goto out;
	}
	*out = req;
	req = NULL;
	r = 0;
 out:
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	return r;
}

int
cert_key_check(EVP_PKEY *pub)
{
	char desc[64], group[64];
	size_t glen = 0;
	int bits;

	if (pub == NULL)
		return hsm_err(HSM_EPOLICY, "no public key");
	if (EVP_PKEY_is_a(pub, "EC")) {
		if (EVP_PKEY_get_group_name(pub, group, sizeof(group), &glen) == 1 &&
		    (strcmp(group, "prime256v1") == 0 || strcmp(group, "secp384r1") == 0))
			return 0;
	} else if (EVP_PKEY_is_a(pub, "RSA")) {
		bits = EVP_PKEY_get_bits(pub);
		if (bits >= 2048 && bits <= 8192)
			return 0;
	}
	return hsm_err(HSM_EPOLICY,
	    "key type %s is not accepted (use EC P-256, EC P-384 or RSA of 2048 to 8192 bits)",
	    cert_key_describe(pub, desc, sizeof(desc)));
}

int
cert_issue_svid(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const char *spiffe_id,
    int64_t ttl, X509 **out)
{
	return cert_issue_svid_ext(ca, ca_key, pub, spiffe_id, ttl, NULL, out);
}

/* The fixed DER before the point of an EC P-256 / P-384 SubjectPublicKeyInfo. */
static const uint8_t spki_p256[] = {
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
	0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
};
static const uint8_t spki_p384[] = {
	0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05,
	0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
};

int
cert_pubkey_parse(const uint8_t *spki, size_t len, EVP_PKEY **out)
{
	const unsigned char *p = spki;
	const char *group = NULL;
	size_t hl = 0;
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;

	*out = NULL;
	if (len == sizeof(spki_p256) + 65 && memcmp(spki, spki_p256, sizeof(spki_p256)) == 0) {
		group = "prime256v1";
		hl = sizeof(spki_p256);
	} else if (len == sizeof(spki_p384) + 97 && memcmp(spki, spki_p384, sizeof(spki_p384)) == 0) {
		group = "secp384r1";
		hl = sizeof(spki_p384);
	}
	if (group == NULL) {
		/* Not one of the two common EC encodings: OpenSSL's decoders. */
		if (len > LONG_MAX || (pk = d2i_PUBKEY(NULL, &p, (long)len)) == NULL ||
		    p != spki + len) {
			EVP_PKEY_free(pk);
			return hsm_err_ossl(HSM_EINVAL, "not a SubjectPublicKeyInfo");
		}
		*out = pk;
		return 0;
	}
	/* The point is checked to be on the curve by the import. */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
	    (void *)(spki + hl), len - hl);
	params[2] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return hsm_err_ossl(HSM_EINVAL, "not a valid EC public key");
	}
	EVP_PKEY_CTX_free(ctx);
	*out = pk;
	return 0;
}

int
cert_issue_svid_ext(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const char *spiffe_id,
    int64_t ttl, const STACK_OF(X509_EXTENSION) *extra, X509 **out)
{
	struct cert_profile p;

	memset(&p, 0, sizeof(p));
	p.exts = extra;
	return cert_issue_svid_profile(ca, ca_key, pub, spiffe_id, ttl, &p, out);
}

int
cert_issue_svid_profile(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const char *spiffe_id,
    int64_t ttl, const struct cert_profile *p, X509 **out)
{
	static const struct cert_profile none;
	struct spiffe_id sid;
	EVP_PKEY *ca_pub;
	X509 *x = NULL;
	X509_NAME *name;
	time_t now = time(NULL), nb, na;
	int64_t ca_na;
	int r;

	*out = NULL;
	if (p == NULL)
		p = &none;
	if ((r = spiffe_id_parse(spiffe_id, &sid)) != 0)
		return r;
	if (ttl <= 0 || ttl > CERT_MAX_TTL)
		return hsm_err(HSM_EINVAL, "TTL of %lld seconds is out of range", (long long)ttl);
	if (p->max_validity < 0 || p->max_validity > CERT_MAX_TTL)
		return hsm_err(HSM_EINVAL, "validity cap of %lld seconds is out of range",
		    (long long)p->max_validity);
	if ((r = cert_key_check(pub)) != 0)
		return r;
	if ((ca_pub = X509_get0_pubkey(ca)) == NULL)
		return hsm_err_ossl(HSM_EINVAL, "the CA certificate has no usable public key");
	if (cert_time_unix(X509_get0_notAfter(ca), &ca_na) != 0)
		return hsm_err(HSM_EINVAL, "the CA certificate has an unreadable notAfter");
	if (ca_na <= now)
		return hsm_err(HSM_EPOLICY, "the CA certificate has expired");
	/*
	 * Backdate for clock skew, but by at most a tenth of the lifetime: a
	 * 30 s SVID backdated a minute would look two-thirds spent to an
	 * agent that renews at half its lifetime.
	 */
	nb = now - (ttl / 10 < CERT_BACKDATE ? (time_t)(ttl / 10) : CERT_BACKDATE);
	/* An SVID never outlives its issuer: relying parties would reject the tail anyway. */
	na = now + (time_t)ttl;
	if (na > ca_na)
		na = (time_t)ca_na;
	/* A profile's cap counts from notBefore; both ends are inclusive (RFC 5280 4.1.2.5). */
	if (p->max_validity > 0 && na - nb >= (time_t)p->max_validity)
		na = nb + (time_t)p->max_validity - 1;

	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "X509_new");
		goto out;
	}
	name = X509_get_subject_name(x);
	if ((r = set_random_serial(x)) != 0 ||
	    (p->country != NULL && (r = name_add(name, "C", p->country)) != 0) ||
	    (r = name_add(name, "O", p->org != NULL ? p->org : "SPIFFE")) != 0)
		goto out;
	if (!X509_set_issuer_name(x, X509_get_subject_name(ca)) || !X509_set_pubkey(x, pub)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot set the issuer or the key");
		goto out;
	}
	if ((r = set_validity(x, nb, na)) != 0 ||
	    (r = add_ext_conf(x, NID_basic_constraints, "critical,CA:FALSE")) != 0 ||
	    (r = add_ext_conf(x, NID_key_usage, EVP_PKEY_is_a(pub, "RSA") && !p->sign_only ?
	    "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature")) != 0 ||
	    (r = add_ext_conf(x, NID_ext_key_usage, "serverAuth,clientAuth")) != 0 ||
	    (r = add_key_ids(x, ca)) != 0 ||
	    /* Non-critical by default: the subject (O=SPIFFE) is not empty. */
	    (r = add_sans(x, p->dns_name, spiffe_id, p->san_critical)) != 0)
		goto out;
	for (int i = 0; i < sk_X509_EXTENSION_num(p->exts); i++) {
		if (!X509_add_ext(x, sk_X509_EXTENSION_value(p->exts, i), -1)) {
			r = hsm_err_ossl(HSM_ECRYPTO, "cannot add an extension");
			goto out;
		}
	}
	if ((r = sign_and_check(x, ca_key, ca_pub)) != 0)
		goto out;
	*out = x;
	x = NULL;
	r = 0;
 out:
	X509_free(x);
	return r;
}

/* ---- parsing ---- */

int
cert_is_pem(const uint8_t *buf, size_t len)
{
	size_t i = 0;

	while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
		i++;
	return len - i >= 11 && memcmp(buf + i, "-----BEGIN ", 11) == 0;
}

int
cert_spki_id(const uint8_t *spki, size_t len, uint8_t id[HSM_KEYID_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(spki, len, id, &n, EVP_sha256(), NULL) != 1 || n != HSM_KEYID_LEN)
		return hsm_err_ossl(HSM_ECRYPTO, "SHA-256");
	return 0;
}

int
cert_pubkey_id(X509_PUBKEY *xpk, uint8_t id[HSM_KEYID_LEN])
{
	unsigned char *der = NULL;
	int n, r;

	if (xpk == NULL || (n = i2d_X509_PUBKEY(xpk, &der)) <= 0)
		return hsm_err_ossl(HSM_EINVAL, "cannot encode the public key");
	r = cert_spki_id(der, (size_t)n, id);
	OPENSSL_free(der);
	return r;
}

int
cert_key_id(X509 *x, uint8_t id[HSM_KEYID_LEN])
{
	return cert_pubkey_id(X509_get_X509_PUBKEY(x), id);
}

int
cert_parse(const uint8_t *buf, size_t len, X509 **out)
{
	const unsigned char *p = buf;
	X509 *x = NULL;
	BIO *b;

	*out = NULL;
	if (len > CERT_MAX_INPUT)
		return hsm_err(HSM_EINVAL, "input larger than %d bytes", CERT_MAX_INPUT);
	if (cert_is_pem(buf, len)) {
		if ((b = BIO_new_mem_buf(buf, (int)len)) == NULL)
			return hsm_err_ossl(HSM_ENOMEM, "BIO_new_mem_buf");
		x = PEM_read_bio_X509(b, NULL, NULL, NULL);
		BIO_free(b);
	} else if ((x = d2i_X509(NULL, &p, (long)len)) != NULL && p != buf + len) {
		X509_free(x);
		x = NULL;
	}
	if (x == NULL) {
		ERR_clear_error();
		return hsm_err(HSM_EINVAL, "not a certificate (PEM or DER)");
	}
	*out = x;
	return 0;
}

int
cert_csr_parse(const uint8_t *buf, size_t len, X509_REQ **out)
{
	const unsigned char *p = buf;
	X509_REQ *req = NULL;
	BIO *b;

	*out = NULL;
	if (len > CERT_MAX_INPUT)
		return hsm_err(HSM_EINVAL, "CSR larger than %d bytes", CERT_MAX_INPUT);
	if (cert_is_pem(buf, len)) {
		if ((b = BIO_new_mem_buf(buf, (int)len)) == NULL)
			return hsm_err_ossl(HSM_ENOMEM, "BIO_new_mem_buf");
		/* Accepts both "CERTIFICATE REQUEST" and "NEW CERTIFICATE REQUEST". */
		req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
		BIO_free(b);
	} else if ((req = d2i_X509_REQ(NULL, &p, (long)len)) != NULL && p != buf + len) {
		X509_REQ_free(req);
		req = NULL;
	}
	if (req == NULL) {
		ERR_clear_error();
		return hsm_err(HSM_EINVAL, "not a PKCS#10 certificate request (PEM or DER)");
	}
	*out = req;
	return 0;
}

int
cert_csr_verify(X509_REQ *req)
{
	EVP_PKEY *pk;

	if ((pk = X509_REQ_get0_pubkey(req)) == NULL) {
		ERR_clear_error();
		return hsm_err(HSM_EINVAL, "CSR has no usable public key");
	}
	if (X509_REQ_verify(req, pk) != 1) {
		ERR_clear_error();
		return hsm_err(HSM_EINVAL, "CSR signature does not verify");
	}
	return 0;
}

int
cert_uri_san(X509 *x, char **out)
{
	GENERAL_NAMES *gens;
	const ASN1_STRING *s = NULL;
	int i, n = 0, r = HSM_EINVAL;

	*out = NULL;
	if ((gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)) == NULL) {
		ERR_clear_error();
		return hsm_err(HSM_EINVAL, "certificate has no subjectAltName");
	}
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_URI) {
			s = g->d.uniformResourceIdentifier;
			n++;
		}
	}
	if (n != 1) {
		r = hsm_err(HSM_EINVAL, "certificate has %d URI names, not exactly one", n);
		goto out;
	}
	if (memchr(ASN1_STRING_get0_data(s), '\0', (size_t)ASN1_STRING_length(s)) != NULL) {
		r = hsm_err(HSM_EINVAL, "certificate URI name contains a NUL byte");
		goto out;
	}
	if ((*out = strndup((const char *)ASN1_STRING_get0_data(s),
	    (size_t)ASN1_STRING_length(s))) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	r = 0;
 out:
	GENERAL_NAMES_free(gens);
	return r;
}

int
cert_pem(X509 *x, char **out, size_t *len)
{
	return cert_pem_chain(x, NULL, out, len);
}

int
cert_pem_chain(X509 *x, STACK_OF(X509) *sk, char **out, size_t *len)
{
	BIO *b = NULL;
	char *data, *p;
	long n;
	int r = HSM_ECRYPTO;

	*out = NULL;
	*len = 0;
	if ((b = BIO_new(BIO_s_mem())) == NULL || (x != NULL && !PEM_write_bio_X509(b, x)))
		goto fail;
	for (int i = 0; sk != NULL && i < sk_X509_num(sk); i++)
		if (!PEM_write_bio_X509(b, sk_X509_value(sk, i)))
			goto fail;
	if ((n = BIO_get_mem_data(b, &data)) <= 0) {
 fail:
		r = hsm_err_ossl(HSM_ECRYPTO, "PEM encoding failed");
		goto out;
	}
	if ((p = malloc((size_t)n + 1)) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(p, data, (size_t)n);
	p[n] = '\0';
	*out = p;
	*len = (size_t)n;
	r = 0;
 out:
	BIO_free(b);
	return r;
}

/* ---- keys ---- */

const char *
cert_key_describe(EVP_PKEY *pub, char *buf, size_t len)
{
	char group[64];
	size_t glen = 0;

	if (pub == NULL) {
		snprintf(buf, len, "unknown (unreadable key)");
	} else if (EVP_PKEY_is_a(pub, "EC")) {
		if (EVP_PKEY_get_group_name(pub, group, sizeof(group), &glen) != 1)
			snprintf(buf, len, "EC (explicit or unknown curve)");
		else if (strcmp(group, "prime256v1") == 0)
			snprintf(buf, len, "EC P-256");
		else if (strcmp(group, "secp384r1") == 0)
			snprintf(buf, len, "EC P-384");
		else if (strcmp(group, "secp521r1") == 0)
			snprintf(buf, len, "EC P-521");
		else
			snprintf(buf, len, "EC %s", group);
	} else if (EVP_PKEY_is_a(pub, "RSA")) {
		snprintf(buf, len, "RSA-%d", EVP_PKEY_get_bits(pub));
	} else {
		snprintf(buf, len, "%s", EVP_PKEY_get0_type_name(pub) != NULL ?
		    EVP_PKEY_get0_type_name(pub) : "unknown");
	}
	ERR_clear_error();
	return buf;
}
