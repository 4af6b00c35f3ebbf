/*
 * cmpder.h - read the parts of a DER CMP PKIMessage (RFC 4210) that
 * OpenSSL 3.0 has no getter for: the header's protectionAlg and senderKID,
 * the first of the extraCerts, and a certificate template's public key.
 * Pure functions over untrusted bytes, bounded by the buffer: fuzzed by
 * tests/fuzz/fuzz_cmpder.c. Also the InfoTypeAndValue helpers the CA and
 * the agent share (our genm/genp and generalInfo entries).
 */
#ifndef HSM_CMPDER_H
#define HSM_CMPDER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/cmp.h>
#include <openssl/x509.h>

struct cmp_der_info {
	int has_protection_alg;
	char protection_alg[64];	/* dotted OID of header [1] protectionAlg */
	const uint8_t *sender_kid;	/* header [2] contents, or NULL */
	size_t sender_kid_len;
	const uint8_t *first_extra_cert;	/* DER of extraCerts[0], or NULL */
	size_t first_extra_cert_len;
	/*
	 * Header [8] generalInfo: the OCTET STRING value of the first
	 * InfoTypeAndValue whose infoType is the OID the caller named in
	 * cmp_der_parse_geninfo(), or NULL.
	 */
	const uint8_t *geninfo_value;
	size_t geninfo_value_len;
	/* generalInfo holds id-it-implicitConfirm (RFC 4210 5.1.1.1): no certConf will follow */
	int implicit_confirm;
	/* Header fields an answer echoes (cmp_der_error_new): */
	const uint8_t *sender;		/* the sender GeneralName, whole DER */
	size_t sender_len;
	const uint8_t *transaction_id;	/* [4] OCTET STRING contents, or NULL */
	size_t transaction_id_len;
	const uint8_t *sender_nonce;	/* [5] OCTET STRING contents, or NULL */
	size_t sender_nonce_len;
	/*
	 * For a PasswordBasedMac protectionAlg: its iterationCount (a huge one
	 * reads as INT64_MAX); -1 otherwise or when the parameters are not a
	 * PBMParameter. What a MAC check will cost, known before it is made.
	 */
	int64_t pbm_iterations;
};

#define CMP_OID_IMPLICIT_CONFIRM "1.3.6.1.5.5.7.4.13"

/* The PasswordBasedMac OID (RFC 4211 / RFC 4210 5.1.3.1). */
#define CMP_OID_PBM "1.2.840.113533.7.66.13"

/*
 * Walk a DER PKIMessage. 0 on success (absent fields left NULL/0), or
 * HSM_EPROTO when the structure is not a PKIMessage. Pointers point into der.
 */
int cmp_der_parse(const uint8_t *der, size_t len, struct cmp_der_info *out);

/*
 * cmp_der_parse, also looking in the header's generalInfo for an
 * InfoTypeAndValue of type oid (dotted) whose value is an OCTET STRING:
 * out->geninfo_value points at its contents. A generalInfo that is not a
 * SEQUENCE OF InfoTypeAndValue is HSM_EPROTO; an entry of our type whose
 * value is not an OCTET STRING too.
 */
int cmp_der_parse_geninfo(const uint8_t *der, size_t len, const char *oid, struct cmp_der_info *out);

/*
 * From the DER of a CRMF CertTemplate, the publicKey [6] (IMPLICIT
 * SubjectPublicKeyInfo) re-encoded as a SubjectPublicKeyInfo: writes at
 * most cap bytes to spki. 0, HSM_ENOENT (no publicKey) or HSM_EPROTO.
 */
int cmp_der_template_spki(const uint8_t *der, size_t len, uint8_t *spki, size_t cap, size_t *spkilen);

/*
 * An unprotected CMP error message (RFC 4210 5.3.21) answering the request
 * req describes (cmp_der_parse): header pvno 2 (cmp2000), sender the
 * directoryName sender_name, recipient the request's sender (NULL-DN when
 * it had none), messageTime now, the request's transactionID, a fresh
 * senderNonce and the request's senderNonce as recipNonce; body an
 * ErrorMsgContent whose PKIStatusInfo is rejection, failInfo 1 << failbit
 * (an OSSL_CMP_PKIFAILUREINFO_* number) and statusString text. Built
 * without any key: what a server answers when it will not (or cannot)
 * sign. *out malloc'd DER. 0, HSM_EINVAL or HSM_ENOMEM/HSM_ECRYPTO.
 */
int cmp_der_error_new(const struct cmp_der_info *req, const X509_NAME *sender_name, int failbit,
    const char *text, uint8_t **out, size_t *outlen);

/*
 * An InfoTypeAndValue of type oid (dotted) whose value is an ASN1_TYPE of
 * vtype holding data (V_ASN1_OCTET_STRING: the octets; V_ASN1_SEQUENCE:
 * the whole DER), or without a value when data is NULL. NULL on failure.
 */
OSSL_CMP_ITAV *cmp_itav_new(const char *oid, int vtype, const uint8_t *data, size_t len);
/* The first entry of sk whose type is oid (dotted), or NULL. */
OSSL_CMP_ITAV *cmp_itav_find(const STACK_OF(OSSL_CMP_ITAV) *sk, const char *oid);

#endif
