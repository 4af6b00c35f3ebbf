/*
 * cmpkur.h - for tests and test tools: a CMP kur exactly as OpenSSL's
 * client builds it (OSSL_CMP_exec_KUR_ses, its request caught by a
 * transfer callback instead of being sent), and the DER of a PKIMessage's
 * ProtectedPart (RFC 4210 5.1.3: SEQUENCE { header, body }), the bytes a
 * CMP signature protects. What an attacker holding a workload's uid would
 * ask the agent to sign.
 */
#ifndef HSM_TEST_CMPKUR_H
#define HSM_TEST_CMPKUR_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/x509.h>

struct kur_capture {
	uint8_t *der;			/* the PKIMessage the client would have sent */
	size_t len;
};

/* Transfer callback: keep the request's DER, answer nothing (the exchange then fails). */
static inline OSSL_CMP_MSG *
kur_capture_cb(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
	struct kur_capture *cap = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
	unsigned char *der = NULL;
	int n = i2d_OSSL_CMP_MSG(req, &der);

	if (n > 0 && cap->der == NULL) {
		cap->der = der;
		cap->len = (size_t)n;
	} else {
		OPENSSL_free(der);
	}
	return NULL;
}

/*
 * Run OpenSSL's kur for newkey, renewing cert (the workload's), protected
 * by a signature of key. 1 when the request was built (*der: OPENSSL_free),
 * 0 when it was not: the protection failed (key's signer refused), and
 * OpenSSL's error queue says why.
 */
static inline int
kur_request(X509 *cert, EVP_PKEY *key, EVP_PKEY *newkey, uint8_t **der, size_t *len)
{
	OSSL_CMP_CTX *cc = OSSL_CMP_CTX_new(NULL, NULL);
	struct kur_capture cap = { NULL, 0 };
	X509 *res;

	*der = NULL;
	*len = 0;
	if (cc == NULL || !OSSL_CMP_CTX_set_transfer_cb(cc, kur_capture_cb) ||
	    !OSSL_CMP_CTX_set_transfer_cb_arg(cc, &cap) || !OSSL_CMP_CTX_set1_cert(cc, cert) ||
	    !OSSL_CMP_CTX_set1_pkey(cc, key) || !OSSL_CMP_CTX_set1_oldCert(cc, cert) ||
	    !OSSL_CMP_CTX_set1_recipient(cc, X509_get_issuer_name(cert)) ||
	    !EVP_PKEY_up_ref(newkey) || !OSSL_CMP_CTX_set0_newPkey(cc, 1, newkey)) {
		OSSL_CMP_CTX_free(cc);
		return 0;
	}
	res = OSSL_CMP_exec_KUR_ses(cc);	/* fails: nobody answers */
	X509_free(res);
	OSSL_CMP_CTX_free(cc);
	if (cap.der == NULL)
		return 0;
	*der = cap.der;
	*len = cap.len;
	return 1;
}

/*
 * The ProtectedPart of a DER PKIMessage: a SEQUENCE of its first two
 * elements (header, body). *pp is malloc'd. 1 or 0.
 */
static inline int
protected_part(const uint8_t *der, size_t len, uint8_t **pp, size_t *pplen)
{
	const unsigned char *p = der, *start;
	long n, inner;
	int tag, cls, hdr;
	size_t parts;
	uint8_t *out;

	*pp = NULL;
	if ((ASN1_get_object(&p, &n, &tag, &cls, (long)len) & 0x80) || tag != V_ASN1_SEQUENCE)
		return 0;
	start = p;
	for (int i = 0; i < 2; i++) {
		const unsigned char *q = p;

		if (ASN1_get_object(&q, &inner, &tag, &cls, (long)(len - (size_t)(p - der))) & 0x80)
			return 0;
		p = q + inner;
	}
	parts = (size_t)(p - start);
	hdr = ASN1_object_size(1, (long)parts, V_ASN1_SEQUENCE) - (int)parts;
	if ((out = malloc((size_t)hdr + parts)) == NULL)
		return 0;
	p = out;
	ASN1_put_object((unsigned char **)&p, 1, (long)parts, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(out + hdr, start, parts);
	*pp = out;
	*pplen = (size_t)hdr + parts;
	return 1;
}

#endif
