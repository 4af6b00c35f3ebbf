/*
 * cert.h - X.509 for the CA: the self-signed root, X.509-SVIDs, parsing
 * and CSR checks. The human-readable printer (hsmesh inspect) is
 * certinspect.h.
 *
 * Signing keys are EVP_PKEYs and may be keyholder keys (provider_kh.h): such
 * a key can sign but cannot be encoded, so every function that puts a
 * public key into a certificate takes it separately as an ordinary
 * (default provider) public key. Every certificate made here is verified
 * against the CA public key before it is returned, so a token that signs
 * wrongly is caught at the CA, not at a relying party.
 *
 * Functions return 0 or a negative HSM_E* code with a one-line detail
 * (err.h). Parsers take untrusted bytes: fuzzed by tests/fuzz/fuzz_csr.c.
 */
#ifndef HSM_CERT_H
#define HSM_CERT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "keytypes.h"

#define CERT_BACKDATE 60		/* seconds notBefore lies in the past, for clock skew */
#define CERT_MAX_TTL (100LL * 366 * 86400)	/* sanity bound on any validity period */
#define CERT_MAX_INPUT (1024 * 1024)	/* largest certificate/CSR file read */

/*
 * Make the self-signed root of trust domain td: random positive 128-bit
 * serial, subject "O=<td>, CN=hsmesh CA <td>" (each cut to the 64
 * characters X.520 allows; the URI SAN spiffe://<td> carries the full
 * name), basicConstraints critical CA:TRUE, keyUsage critical keyCertSign,
 * cRLSign and digitalSignature (the CMP server signs with it), SKI, AKI,
 * notBefore now-60s, notAfter now+ttl. Signed by signer (SHA-384 for a
 * P-384 key, SHA-256 otherwise) whose public half is pub. Caller frees
 * *out with X509_free. 0, HSM_EINVAL (td, ttl) or HSM_ECRYPTO.
 */
int cert_make_root(EVP_PKEY *signer, EVP_PKEY *pub, const char *td, int64_t ttl, X509 **out);

/* Add a subjectAltName of the one URI uri to x. 0 or HSM_ECRYPTO. */
int cert_add_uri_san(X509 *x, const char *uri, int critical);

/*
 * A PKCS#10 request for the CA key of trust domain td, for an operator's CA
 * to sign (ca init --csr): subject as cert_make_root's, and the requested
 * extensions basicConstraints critical CA:TRUE pathlen:0, keyUsage critical
 * keyCertSign, cRLSign, digitalSignature, the URI SAN spiffe://<td> and the
 * name constraint critical permitted URI <td> (RFC 5280 4.2.1.10: a URI
 * constraint names the host, here the trust domain). Signed by signer,
 * whose public half is pub, and checked. Caller frees *out. 0, HSM_EINVAL
 * (td) or HSM_ECRYPTO.
 */
int cert_make_ca_csr(EVP_PKEY *signer, EVP_PKEY *pub, const char *td, X509_REQ **out);

/*
 * Issue an X.509-SVID for pub (the requester's public key): random serial,
 * subject O=SPIFFE, one non-critical URI SAN spiffe_id, basicConstraints
 * critical CA:FALSE, keyUsage critical digitalSignature (and
 * keyEncipherment for RSA), EKU serverAuth+clientAuth, SKI, AKI = the CA's
 * SKI, notBefore now-60s, notAfter now+ttl but never after the CA's
 * notAfter. spiffe_id must be valid (checked again here). ca_key signs
 * for ca. Caller frees *out. 0, HSM_EINVAL, HSM_EPOLICY (CA expired, key
 * type refused) or HSM_ECRYPTO.
 */
int cert_issue_svid(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const char *spiffe_id,
    int64_t ttl, X509 **out);

/*
 * The digest a signature by a key whose public half is pub uses here:
 * SHA-384 for P-384, SHA-256 for P-256 and RSA (certificates and CRLs).
 */
const EVP_MD *cert_sig_md(EVP_PKEY *pub);

/*
 * The same with more extensions (extra may be NULL), added in order after
 * the SVID's own: attest_identity_ext() of attest.h, the CA's
 * cRLDistributionPoints (crl_cdp_ext() of crl.h), ...
 */
int cert_issue_svid_ext(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const char *spiffe_id,
    int64_t ttl, const STACK_OF(X509_EXTENSION) *extra, X509 **out);

/*
 * How a certificate departs from the plain X.509-SVID of cert_issue_svid
 * (a zeroed struct changes nothing): the 3GPP NF profile (nfprofile.h) is
 * one. Strings are used as given: the caller has checked them.
 */
struct cert_profile {
	const char *country;		/* subject C (2 letters) before O, or NULL */
	const char *org;		/* subject O; NULL: "SPIFFE" */
	const char *dns_name;		/* a dNSName SAN before the URI SAN, or NULL */
	int san_critical;		/* subjectAltName marked critical */
	int sign_only;			/* keyUsage digitalSignature alone, even for RSA */
	int64_t max_validity;		/* notAfter - notBefore below this many seconds; 0: no cap */
	const STACK_OF(X509_EXTENSION) *exts;	/* more extensions, added in order, or NULL */
};

/*
 * cert_issue_svid_ext with a profile (NULL: none): the same checks, the
 * same serial, basicConstraints, EKU, SKI/AKI and signature, with what p
 * says. The validity still ends no later than the CA's.
 */
int cert_issue_svid_profile(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const char *spiffe_id,
    int64_t ttl, const struct cert_profile *p, X509 **out);

/*
 * The public key of a DER SubjectPublicKeyInfo (all len bytes). EC P-256
 * and P-384 in their usual encoding are imported directly (the point
 * checked to be on the curve), without the set-up of OpenSSL 3.0's
 * decoders that d2i_PUBKEY pays on every call; anything else goes through
 * d2i_PUBKEY. Caller frees *out. 0 or HSM_EINVAL.
 */
int cert_pubkey_parse(const uint8_t *spki, size_t len, EVP_PKEY **out);

/*
 * The key types accepted in an SVID: EC P-256, EC P-384, RSA 2048..8192.
 * 0 or HSM_EPOLICY "key type EC secp256k1 is not accepted (...)".
 */
int cert_key_check(EVP_PKEY *pub);

/* "EC P-256", "EC P-384", "RSA-3072", "ED25519", ... into buf. Returns buf. */
const char *cert_key_describe(EVP_PKEY *pub, char *buf, size_t len);

/* SHA-256 of a DER SubjectPublicKeyInfo: the key id keyholders name keys by. 0 or HSM_ECRYPTO. */
int cert_spki_id(const uint8_t *spki, size_t len, uint8_t id[HSM_KEYID_LEN]);

/* Key id of a certificate's public key (its SubjectPublicKeyInfo as encoded). */
int cert_key_id(X509 *x, uint8_t id[HSM_KEYID_LEN]);

/* Key id of a SubjectPublicKeyInfo (a certificate's or a CSR's). 0, HSM_EINVAL or HSM_ECRYPTO. */
int cert_pubkey_id(X509_PUBKEY *xpk, uint8_t id[HSM_KEYID_LEN]);

/* 1 when the first non-blank bytes of buf are a PEM boundary ("-----BEGIN "), else 0. */
int cert_is_pem(const uint8_t *buf, size_t len);

/*
 * Parse the first certificate of buf (PEM or DER). Caller frees *out.
 * 0 or HSM_EINVAL.
 */
int cert_parse(const uint8_t *buf, size_t len, X509 **out);

/*
 * Parse a PKCS#10 CSR (PEM "CERTIFICATE REQUEST" / "NEW CERTIFICATE
 * REQUEST", or DER, which must be consumed exactly). Does not verify it.
 * Caller frees *out with X509_REQ_free. 0 or HSM_EINVAL.
 */
int cert_csr_parse(const uint8_t *buf, size_t len, X509_REQ **out);

/*
 * Verify req's signature with its own public key (proof of possession).
 * 0 or HSM_EINVAL "CSR signature does not verify".
 */
int cert_csr_verify(X509_REQ *req);

/*
 * The one URI SAN of x (an SVID or our root), copied to a malloc'd string.
 * HSM_EINVAL when x has no subjectAltName, not exactly one URI in it, or a
 * URI with a NUL byte. The URI is not validated as a SPIFFE ID here.
 */
int cert_uri_san(X509 *x, char **out);

/* PEM text of x in a malloc'd NUL-terminated buffer (len excludes the NUL). */
int cert_pem(X509 *x, char **out, size_t *len);

/*
 * PEM text of x (may be NULL) followed by every certificate of sk (may be
 * NULL), malloc'd and NUL-terminated (len excludes the NUL). HSM_ECRYPTO
 * when nothing at all would be written.
 */
int cert_pem_chain(X509 *x, STACK_OF(X509) *sk, char **out, size_t *len);

/*
 * A serial number as lower-case hex without leading zeros (the ledger's
 * spelling) into out (cap bytes, at least 2). 0, or HSM_EINVAL when it
 * is unreadable or does not fit (out is then "").
 */
int cert_serial_hex(const ASN1_INTEGER *serial, char *out, size_t cap);

/* An ASN1_TIME as seconds since the epoch. 0 or HSM_EINVAL. */
int cert_time_unix(const ASN1_TIME *t, int64_t *out);

#endif
