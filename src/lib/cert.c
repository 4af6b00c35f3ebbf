/* cert.c - root, X.509-SVIDs, CSR checks and the inspector (see cert.h). */
#include <arpa/inet.h>
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
static const EVP_MD *
sig_md(EVP_PKEY *pub)
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

/* A subjectAltName with exactly one URI, built as ASN.1 (never through config syntax). */
static int
add_uri_san(X509 *x, const char *uri, int critical)
{
	GENERAL_NAMES *gens = NULL;
	GENERAL_NAME *gn = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	int r = HSM_ECRYPTO;

	if ((gens = sk_GENERAL_NAME_new_null()) == NULL || (gn = GENERAL_NAME_new()) == NULL ||
	    (ia5 = ASN1_IA5STRING_new()) == NULL ||
	    !ASN1_STRING_set(ia5, uri, (int)strlen(uri))) {
		r = hsm_err_ossl(HSM_ECRYPTO, "out of memory");
		goto out;
	}
	GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(gens, gn)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "out of memory");
		goto out;
	}
	gn = NULL;
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
	if (X509_sign(x, signer, sig_md(issuer_pub)) <= 0)
		return sign_failed();
	if (X509_verify(x, issuer_pub) != 1)
		return hsm_err_ossl(HSM_ECRYPTO,
		    "the signature made by the CA key does not verify with the CA certificate's key");
	return 0;
}

static time_t
asn1_to_time(const ASN1_TIME *t, int *ok)
{
	int64_t v = 0;

	*ok = cert_time_unix(t, &v) == 0;
	return (time_t)v;
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
	    (r = add_key_ids(x, x)) != 0 || (r = add_uri_san(x, uri, 0)) != 0 ||
	    (r = sign_and_check(x, signer, pub)) != 0)
		goto out;
	*out = x;
	x = NULL;
	r = 0;
 out:
	X509_free(x);
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
    int64_t ttl, X509_EXTENSION *extra, X509 **out)
{
	struct spiffe_id sid;
	EVP_PKEY *ca_pub;
	X509 *x = NULL;
	X509_NAME *name;
	time_t now = time(NULL), ca_na, na;
	int r, ok;

	*out = NULL;
	if ((r = spiffe_id_parse(spiffe_id, &sid)) != 0)
		return r;
	if (ttl <= 0 || ttl > CERT_MAX_TTL)
		return hsm_err(HSM_EINVAL, "TTL of %lld seconds is out of range", (long long)ttl);
	if ((r = cert_key_check(pub)) != 0)
		return r;
	if ((ca_pub = X509_get0_pubkey(ca)) == NULL)
		return hsm_err_ossl(HSM_EINVAL, "the CA certificate has no usable public key");
	ca_na = asn1_to_time(X509_get0_notAfter(ca), &ok);
	if (!ok)
		return hsm_err(HSM_EINVAL, "the CA certificate has an unreadable notAfter");
	if (ca_na <= now)
		return hsm_err(HSM_EPOLICY, "the CA certificate has expired");
	/* An SVID never outlives its issuer: relying parties would reject the tail anyway. */
	na = now + (time_t)ttl;
	if (na > ca_na)
		na = ca_na;

	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "X509_new");
		goto out;
	}
	name = X509_get_subject_name(x);
	if ((r = set_random_serial(x)) != 0 || (r = name_add(name, "O", "SPIFFE")) != 0)
		goto out;
	if (!X509_set_issuer_name(x, X509_get_subject_name(ca)) || !X509_set_pubkey(x, pub)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot set the issuer or the key");
		goto out;
	}
	/*
	 * Backdate for clock skew, but by at most a tenth of the lifetime: a
	 * 30 s SVID backdated a minute would look two-thirds spent to an
	 * agent that renews at half its lifetime.
	 */
	if ((r = set_validity(x, now - (ttl / 10 < CERT_BACKDATE ? (time_t)(ttl / 10) : CERT_BACKDATE),
	    na)) != 0 ||
	    (r = add_ext_conf(x, NID_basic_constraints, "critical,CA:FALSE")) != 0 ||
	    (r = add_ext_conf(x, NID_key_usage, EVP_PKEY_is_a(pub, "RSA") ?
	    "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature")) != 0 ||
	    (r = add_ext_conf(x, NID_ext_key_usage, "serverAuth,clientAuth")) != 0 ||
	    (r = add_key_ids(x, ca)) != 0 ||
	    /* Non-critical: the subject (O=SPIFFE) is not empty. */
	    (r = add_uri_san(x, spiffe_id, 0)) != 0)
		goto out;
	if (extra != NULL && !X509_add_ext(x, extra, -1)) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot add an extension");
		goto out;
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

/* PEM when the first non-blank bytes are a PEM boundary. */
static int
is_pem(const uint8_t *buf, size_t len)
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

static int
xpub_id(X509_PUBKEY *xpk, uint8_t id[HSM_KEYID_LEN])
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
	return xpub_id(X509_get_X509_PUBKEY(x), id);
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
	if (is_pem(buf, len)) {
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
	if (is_pem(buf, len)) {
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

/* ---- inspect ---- */

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

/* Print bytes from an untrusted certificate with control and high bytes escaped. */
static void
print_safe(BIO *b, const unsigned char *s, int len)
{
	for (int i = 0; i < len; i++) {
		if (s[i] < 0x20 || s[i] >= 0x7f || s[i] == '\\')
			BIO_printf(b, "\\x%02x", s[i]);
		else
			BIO_printf(b, "%c", s[i]);
	}
}

/* One "label:   value" line: labels padded so values line up. */
static void
field(BIO *b, const char *label)
{
	int pad = 14 - (int)strlen(label);

	BIO_printf(b, "%s:%*s", label, pad > 0 ? pad : 1, "");
}

static void
print_name(BIO *b, const char *label, const X509_NAME *n)
{
	field(b, label);
	if (n == NULL || X509_NAME_entry_count(n) == 0)
		BIO_printf(b, "(empty)");
	else
		X509_NAME_print_ex(b, n, 0, (XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN |
		    XN_FLAG_DUMP_UNKNOWN_FIELDS | ASN1_STRFLGS_RFC2253) & ~ASN1_STRFLGS_UTF8_CONVERT);
	BIO_printf(b, "\n");
}

static void
print_key(BIO *b, X509_PUBKEY *xpk)
{
	char desc[64], hex[HSM_KEYID_LEN * 2 + 1];
	uint8_t id[HSM_KEYID_LEN];
	EVP_PKEY *pk = xpk != NULL ? X509_PUBKEY_get0(xpk) : NULL;

	ERR_clear_error();
	field(b, "key");
	BIO_printf(b, "%s\n", cert_key_describe(pk, desc, sizeof(desc)));
	field(b, "key id");
	if (xpub_id(xpk, id) == 0)
		BIO_printf(b, "%s\n", hsm_hex(id, sizeof(id), hex));
	else
		BIO_printf(b, "(unavailable)\n");
	ERR_clear_error();
}

/* SPIFFE IDs and other names of a subjectAltName. */
static void
print_sans(BIO *b, GENERAL_NAMES *gens)
{
	char ip[INET6_ADDRSTRLEN], why[64];
	struct spiffe_id sid;
	char *uri;
	int i, n = 0;

	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const ASN1_STRING *s;

		switch (g->type) {
		case GEN_URI:
			s = g->d.uniformResourceIdentifier;
			uri = strndup((const char *)ASN1_STRING_get0_data(s),
			    (size_t)ASN1_STRING_length(s));
			if (uri != NULL && strlen(uri) == (size_t)ASN1_STRING_length(s) &&
			    strncmp(uri, SPIFFE_SCHEME, strlen(SPIFFE_SCHEME)) == 0) {
				field(b, "spiffe id");
				print_safe(b, ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
				if (spiffe_id_parse(uri, &sid) != 0) {
					/* The detail quotes the ID; keep only the reason. */
					const char *d = strstr(hsm_err_detail(), "': ");

					snprintf(why, sizeof(why), "%s", d != NULL ? d + 3 : "malformed");
					BIO_printf(b, " (INVALID: %s)", why);
				}
			} else {
				field(b, "uri");
				print_safe(b, ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
			}
			free(uri);
			break;
		case GEN_DNS:
			field(b, "dns name");
			s = g->d.dNSName;
			print_safe(b, ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
			break;
		case GEN_EMAIL:
			field(b, "email");
			s = g->d.rfc822Name;
			print_safe(b, ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
			break;
		case GEN_IPADD:
			field(b, "ip address");
			s = g->d.iPAddress;
			if (ASN1_STRING_length(s) == 4 &&
			    inet_ntop(AF_INET, ASN1_STRING_get0_data(s), ip, sizeof(ip)) != NULL)
				BIO_printf(b, "%s", ip);
			else if (ASN1_STRING_length(s) == 16 &&
			    inet_ntop(AF_INET6, ASN1_STRING_get0_data(s), ip, sizeof(ip)) != NULL)
				BIO_printf(b, "%s", ip);
			else
				BIO_printf(b, "(malformed)");
			break;
		default:
			field(b, "other name");
			BIO_printf(b, "(type %d)", g->type);
			break;
		}
		BIO_printf(b, "\n");
		n++;
	}
	if (n == 0) {
		field(b, "spiffe id");
		BIO_printf(b, "(none)\n");
	}
}

static void
print_time(BIO *b, const char *label, const ASN1_TIME *t)
{
	char buf[64];
	struct tm tm;

	field(b, label);
	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		BIO_printf(b, "(invalid time)");
	else
		BIO_printf(b, "%s", buf);
}

static void
print_validity(BIO *b, X509 *x)
{
	time_t now = time(NULL), nb, na;
	long long left;
	int ok1, ok2;

	print_time(b, "not before", X509_get0_notBefore(x));
	BIO_printf(b, "\n");
	print_time(b, "not after", X509_get0_notAfter(x));
	nb = asn1_to_time(X509_get0_notBefore(x), &ok1);
	na = asn1_to_time(X509_get0_notAfter(x), &ok2);
	if (ok1 && ok2) {
		if (now < nb) {
			BIO_printf(b, " (not yet valid)");
		} else if (now > na) {
			BIO_printf(b, " (expired)");
		} else {
			left = (long long)(na - now);
			BIO_printf(b, " (valid for %lldh %lldm", left / 3600, left % 3600 / 60);
			if (left >= 2 * 86400)
				BIO_printf(b, ", about %lld days", (left + 43200) / 86400);
			BIO_printf(b, ")");
		}
	}
	BIO_printf(b, "\n");
}

static const char *
crit_note(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	if (i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i)))
		return " (critical)";
	return "";
}

static void
print_key_usage(BIO *b, X509 *x)
{
	static const struct { int bit; const char *name; } ku[] = {
		{ KU_DIGITAL_SIGNATURE, "digitalSignature" }, { KU_NON_REPUDIATION, "nonRepudiation" },
		{ KU_KEY_ENCIPHERMENT, "keyEncipherment" }, { KU_DATA_ENCIPHERMENT, "dataEncipherment" },
		{ KU_KEY_AGREEMENT, "keyAgreement" }, { KU_KEY_CERT_SIGN, "keyCertSign" },
		{ KU_CRL_SIGN, "cRLSign" }, { KU_ENCIPHER_ONLY, "encipherOnly" },
		{ KU_DECIPHER_ONLY, "decipherOnly" },
	};
	EXTENDED_KEY_USAGE *eku;
	ASN1_BIT_STRING *bits;
	char oid[80];
	int crit = -1, first = 1, i;
	uint32_t v = 0;

	field(b, "key usage");
	if ((bits = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL)) == NULL) {
		BIO_printf(b, crit == -1 ? "(none)\n" : "(malformed)\n");
	} else {
		for (i = 0; i < ASN1_STRING_length(bits) && i < 2; i++)
			v |= (uint32_t)ASN1_STRING_get0_data(bits)[i] << (8 * i);
		for (i = 0; i < (int)(sizeof(ku) / sizeof(ku[0])); i++) {
			if (v & (uint32_t)ku[i].bit) {
				BIO_printf(b, "%s%s", first ? "" : ", ", ku[i].name);
				first = 0;
			}
		}
		BIO_printf(b, "%s%s\n", first ? "(empty)" : "", crit_note(x, NID_key_usage));
		ASN1_BIT_STRING_free(bits);
	}

	field(b, "ext key usage");
	crit = -1;
	if ((eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL)) == NULL) {
		BIO_printf(b, crit == -1 ? "(none)\n" : "(malformed)\n");
	} else {
		for (i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
			ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, i);
			int nid = OBJ_obj2nid(o);

			if (nid != NID_undef)
				BIO_printf(b, "%s%s", i ? ", " : "", OBJ_nid2sn(nid));
			else if (OBJ_obj2txt(oid, sizeof(oid), o, 1) > 0)
				BIO_printf(b, "%s%s", i ? ", " : "", oid);
		}
		BIO_printf(b, "%s%s\n", i == 0 ? "(empty)" : "", crit_note(x, NID_ext_key_usage));
		EXTENDED_KEY_USAGE_free(eku);
	}
	ERR_clear_error();
}

static void
print_sigalg(BIO *b, const X509_ALGOR *alg)
{
	char oid[80];

	field(b, "signature");
	if (alg == NULL || OBJ_obj2txt(oid, sizeof(oid), alg->algorithm, 0) <= 0)
		BIO_printf(b, "(unknown)");
	else
		BIO_printf(b, "%s", oid);
}

static void
print_cert(BIO *b, X509 *x, cert_ext_line_fn ext)
{
	const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
	const X509_ALGOR *alg = NULL;
	BASIC_CONSTRAINTS *bc;
	GENERAL_NAMES *gens;
	char hexbuf[128], line[300];
	const char *label;
	int crit = -1, st;

	field(b, "type");
	BIO_printf(b, "X.509 certificate\n");
	print_name(b, "subject", X509_get_subject_name(x));
	print_name(b, "issuer", X509_get_issuer_name(x));
	field(b, "serial");
	if (cert_serial_hex(serial, hexbuf, sizeof(hexbuf)) == 0)
		BIO_printf(b, "%s\n", hexbuf);
	else
		BIO_printf(b, "(unreadable)\n");
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	print_sans(b, gens);
	GENERAL_NAMES_free(gens);
	print_key(b, X509_get_X509_PUBKEY(x));
	print_validity(b, x);

	field(b, "ca");
	crit = -1;
	if ((bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL)) == NULL)
		BIO_printf(b, crit == -1 ? "no (no basicConstraints)\n" : "(malformed)\n");
	else {
		BIO_printf(b, "%s", bc->ca ? "yes" : "no");
		if (bc->ca && bc->pathlen != NULL)
			BIO_printf(b, ", path length %ld", ASN1_INTEGER_get(bc->pathlen));
		BIO_printf(b, "%s\n", crit_note(x, NID_basic_constraints));
		BASIC_CONSTRAINTS_free(bc);
	}
	print_key_usage(b, x);
	for (size_t i = 0; ext != NULL && (st = ext(x, i, &label, line, sizeof(line))) != HSM_ENOENT;
	    i++) {
		if (st == 0 || label == NULL)
			continue;
		field(b, label);
		BIO_printf(b, "%s\n", st > 0 ? line : "(malformed)");
	}
	X509_get0_signature(NULL, &alg, x);
	print_sigalg(b, alg);
	/* Self-signed: say whether the signature holds, as for a CSR. */
	if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0) {
		EVP_PKEY *pk = X509_get0_pubkey(x);

		BIO_printf(b, pk != NULL && X509_verify(x, pk) == 1 ? " (self-signed, verifies)" :
		    " (self-signed, DOES NOT VERIFY)");
	}
	BIO_printf(b, "\n");
	ERR_clear_error();
}

static void
print_csr(BIO *b, X509_REQ *req)
{
	STACK_OF(X509_EXTENSION) *exts;
	const X509_ALGOR *alg = NULL;
	GENERAL_NAMES *gens = NULL;
	int crit = -1;

	field(b, "type");
	BIO_printf(b, "certificate request (PKCS#10)\n");
	print_name(b, "subject", X509_REQ_get_subject_name(req));
	exts = X509_REQ_get_extensions(req);
	if (exts != NULL)
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
	print_sans(b, gens);
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	print_key(b, X509_REQ_get_X509_PUBKEY(req));
	X509_REQ_get0_signature(req, NULL, &alg);
	print_sigalg(b, alg);
	BIO_printf(b, cert_csr_verify(req) == 0 ? " (verifies)\n" : " (DOES NOT VERIFY)\n");
	hsm_err_clear();
	ERR_clear_error();
}

/* Print one DER object of known kind; 0 or HSM_EINVAL. */
static int
inspect_der(BIO *b, const unsigned char *der, long len, int want_csr, cert_ext_line_fn ext)
{
	const unsigned char *p = der;
	X509_REQ *req;
	X509 *x;

	if (!want_csr && (x = d2i_X509(NULL, &p, len)) != NULL) {
		if (p == der + len) {
			print_cert(b, x, ext);
			X509_free(x);
			return 0;
		}
		X509_free(x);
	}
	p = der;
	if (want_csr && (req = d2i_X509_REQ(NULL, &p, len)) != NULL) {
		if (p == der + len) {
			print_csr(b, req);
			X509_REQ_free(req);
			return 0;
		}
		X509_REQ_free(req);
	}
	ERR_clear_error();
	return hsm_err(HSM_EINVAL, "not a certificate or CSR: malformed %s",
	    want_csr ? "certificate request" : "certificate");
}

static int
inspect_pem(BIO *b, const uint8_t *buf, size_t len, cert_ext_line_fn ext)
{
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long dlen = 0;
	BIO *in;
	int r = 0, n = 0;

	if ((in = BIO_new_mem_buf(buf, (int)len)) == NULL)
		return hsm_err_ossl(HSM_ENOMEM, "BIO_new_mem_buf");
	for (;;) {
		if (!PEM_read_bio(in, &name, &header, &data, &dlen)) {
			unsigned long e = ERR_peek_last_error();

			ERR_clear_error();
			if (n > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM &&
			    ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
				break;
			r = hsm_err(HSM_EINVAL, "not a certificate or CSR: malformed PEM");
			break;
		}
		if (n > 0)
			BIO_printf(b, "\n");
		if (strcmp(name, "CERTIFICATE") == 0)
			r = inspect_der(b, data, dlen, 0, ext);
		else if (strcmp(name, "CERTIFICATE REQUEST") == 0 ||
		    strcmp(name, "NEW CERTIFICATE REQUEST") == 0)
			r = inspect_der(b, data, dlen, 1, ext);
		else if (strstr(name, "PRIVATE KEY") != NULL)
			r = hsm_err(HSM_EINVAL, "not a certificate or CSR: a private key "
			    "(keys belong in a token)");
		else
			r = hsm_err(HSM_EINVAL, "not a certificate or CSR: PEM block '%.40s'", name);
		/* Attestation quotes (issue: attestation) get their own PEM label here. */
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_clear_free(data, (size_t)dlen);
		name = header = NULL;
		data = NULL;
		if (r != 0)
			break;
		n++;
	}
	BIO_free(in);
	return r;
}

int
cert_inspect(const uint8_t *buf, size_t len, FILE *f)
{
	return cert_inspect_ext(buf, len, NULL, f);
}

int
cert_inspect_ext(const uint8_t *buf, size_t len, cert_ext_line_fn ext, FILE *f)
{
	BIO *mem = NULL;
	char *data;
	long n;
	int r;

	if (len > CERT_MAX_INPUT)
		return hsm_err(HSM_EINVAL, "input larger than %d bytes", CERT_MAX_INPUT);
	if (len == 0)
		return hsm_err(HSM_EINVAL, "not a certificate or CSR: empty input");
	/* Print into memory first: nothing reaches f unless the whole input parses. */
	if ((mem = BIO_new(BIO_s_mem())) == NULL)
		return hsm_err_ossl(HSM_ENOMEM, "BIO_new");
	if (is_pem(buf, len)) {
		r = inspect_pem(mem, buf, len, ext);
	} else {
		/* DER: a certificate, else a CSR. */
		const unsigned char *p = buf;
		X509_REQ *req;
		X509 *x;

		r = HSM_EINVAL;
		if ((x = d2i_X509(NULL, &p, (long)len)) != NULL && p == buf + len) {
			print_cert(mem, x, ext);
			r = 0;
		}
		X509_free(x);
		p = buf;
		if (r != 0 && (req = d2i_X509_REQ(NULL, &p, (long)len)) != NULL) {
			if (p == buf + len) {
				print_csr(mem, req);
				r = 0;
			}
			X509_REQ_free(req);
		}
		ERR_clear_error();
		if (r != 0)
			r = hsm_err(HSM_EINVAL, "not a certificate or CSR (neither PEM nor DER)");
	}
	if (r == 0) {
		n = BIO_get_mem_data(mem, &data);
		if (n > 0 && (fwrite(data, 1, (size_t)n, f) != (size_t)n || fflush(f) != 0))
			r = hsm_err(HSM_EIO, "write error");
	}
	BIO_free(mem);
	return r;
}
