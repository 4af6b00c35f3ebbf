/*
 * nfprofile.h - the 3GPP NF certificate profile (TS 33.310 clause 6.1.3c)
 * and the nfTypes extension of RFC 9310, for certificates of the 5G core's
 * network functions.
 *
 * A certificate of this profile is an X.509-SVID (its SPIFFE ID stays the
 * one URI SAN: the mesh authorises by it) with, in addition:
 *
 *   subject          C=<country>, O=<home network domain>
 *                    (5gc.mnc<MNC>.mcc<MCC>.3gppnetwork.org, TS 23.003 28.2)
 *   subjectAltName   critical: dNSName <the NF's FQDN>, URI <SPIFFE ID>
 *   keyUsage         critical: digitalSignature only
 *   extendedKeyUsage serverAuth, clientAuth
 *   SKI, AKI         method (1) of RFC 5280 4.2.1.2 (as every SVID)
 *   cRLDistributionPoints  the CA's CRL (added to every certificate the CA
 *                    issues, whatever its profile: not this module's)
 *   nfTypes          non-critical, id-pe 34: NFTypes ::= SEQUENCE SIZE
 *                    (1..MAX) OF IA5String (SIZE (1..32))
 *   validity         at most 3 years (NF_MAX_VALIDITY)
 *
 * Where each value comes from (docs/CA.md): the home network (MCC, MNC,
 * country) from ca.yaml, the NF types and the FQDN from the
 * identity's registration entry (or `ca issue --nf-type --fqdn`).
 *
 * Functions return 0 or a negative HSM_E* code with a one-line detail.
 * nf_types_decode() takes untrusted bytes (a peer's certificate):
 * fuzzed by tests/fuzz/fuzz_nftypes.c.
 */
#ifndef HSM_NFPROFILE_H
#define HSM_NFPROFILE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define NF_PROFILE_NAME "3gpp-nf"	/* its name in ca.yaml and on entries */
#define NF_OID_NFTYPES "1.3.6.1.5.5.7.1.34"	/* id-pe-nftype, RFC 9310 */
#define NF_TYPE_MAX 32			/* characters of one NFType (RFC 9310) */
#define NF_TYPES_MAX 32			/* NFTypes of one certificate (ours) */
#define NF_TYPES_TEXT_MAX (NF_TYPES_MAX * (NF_TYPE_MAX + 1))	/* "AMF,SMF", with the NUL */
#define NF_FQDN_MAX 253			/* a DNS name, without the final dot */
#define NF_DOMAIN_MAX 40		/* "5gc.mnc001.mcc001.3gppnetwork.org" and its NUL */
#define NF_MAX_VALIDITY (1095LL * 86400)	/* 3 years of 365 days: never more than 3 years */

/*
 * The certificate profiles a CA issues: ca.yaml's profile (the default)
 * and an entry's (PROFILE_INHERIT: the CA's default).
 */
enum cert_profile_kind { PROFILE_INHERIT = 0, PROFILE_SPIFFE = 1, PROFILE_3GPP_NF = 2 };

/* "spiffe" or "3gpp-nf" into *out (with inherit set, "" is PROFILE_INHERIT). 0 or HSM_EINVAL. */
int nf_profile_parse(const char *s, int inherit, enum cert_profile_kind *out);

/* "" (inherit), "spiffe" or "3gpp-nf". */
const char *nf_profile_name(enum cert_profile_kind k);

/* The NF types of a certificate, in order, each NUL-terminated. */
struct nf_types {
	size_t n;
	char t[NF_TYPES_MAX][NF_TYPE_MAX + 1];
};

/* What an NF certificate is made of; every field is checked by nf_params_check. */
struct nf_params {
	const char *mcc;	/* the home network's mobile country code: 3 digits */
	const char *mnc;	/* its mobile network code: 2 or 3 digits */
	const char *country;	/* subject C: ISO 3166-1 alpha-2, upper case */
	const char *fqdn;	/* the NF's FQDN, inside the home network domain */
	const char *nf_types;	/* "AMF" or "AMF,SMF": 1..NF_TYPES_MAX, each once */
};

/* MCC (3 digits) and MNC (2 or 3 digits). 0 or HSM_EINVAL naming the field. */
int nf_plmn_check(const char *mcc, const char *mnc);

/*
 * The home network domain of mcc/mnc into out (cap >= NF_DOMAIN_MAX):
 * "5gc.mnc<MNC>.mcc<MCC>.3gppnetwork.org", a 2-digit MNC padded with a
 * leading 0 (TS 23.003 28.2). 0 or HSM_EINVAL.
 */
int nf_home_domain(const char *mcc, const char *mnc, char *out, size_t cap);

/* Two upper-case letters (ISO 3166-1 alpha-2). 0 or HSM_EINVAL. */
int nf_country_check(const char *c);

/*
 * fqdn is a DNS name in lower case (labels of 1..63 letters, digits and
 * hyphens, no hyphen first or last, at least two labels, at most
 * NF_FQDN_MAX characters, no final dot) and, when domain is not NULL, a
 * name inside it ("amf1.<domain>"). 0 or HSM_EINVAL.
 */
int nf_fqdn_check(const char *fqdn, const char *domain);

/* One NFType as TS 29.510 spells them: 1..32 of A-Z, 0-9, '_'. 0 or HSM_EINVAL. */
int nf_type_check(const char *t);

/*
 * A comma-separated list of NF types ("AMF" or "AMF,SMF"; no spaces) into
 * *out: 1..NF_TYPES_MAX, each valid (nf_type_check) and listed once.
 * out may be NULL (check only). 0 or HSM_EINVAL.
 */
int nf_types_parse(const char *list, struct nf_types *out);

/* t's types joined by sep into out; HSM_EINVAL when it does not fit (out is then ""). */
int nf_types_format(const struct nf_types *t, const char *sep, char *out, size_t cap);

/*
 * The DER of NFTypes (SEQUENCE OF IA5String) for t (1..NF_TYPES_MAX
 * entries, each 1..32 characters): *der malloc'd, the caller frees it.
 * 0, HSM_EINVAL or HSM_ENOMEM.
 */
int nf_types_encode(const struct nf_types *t, uint8_t **der, size_t *len);

/*
 * Decode an nfTypes extension value (untrusted): DER exactly (what
 * decodes re-encodes to the same bytes), 1..NF_TYPES_MAX entries, each an
 * IA5String of 1..32 bytes without a NUL byte. *out cleared first.
 * 0 or HSM_EINVAL ("nfTypes: ...").
 */
int nf_types_decode(const uint8_t *der, size_t len, struct nf_types *out);

/*
 * The nfTypes extension of x: 0 with *out and *critical set; HSM_ENOENT
 * when x has none; HSM_EINVAL when it is malformed or appears twice.
 */
int nf_types_of_cert(X509 *x, struct nf_types *out, int *critical);

/*
 * A certificate lifetime of ttl seconds fits the profile (at most
 * NF_MAX_VALIDITY, 3 years). 0 or HSM_EPOLICY "a TTL of ... exceeds ...".
 */
int nf_ttl_check(int64_t ttl);

/*
 * Check np as an NF certificate needs it; the refusals name the field:
 * "missing PLMN ...", "bad FQDN ...", "bad NF type ...". 0 or HSM_EPOLICY.
 */
int nf_params_check(const struct nf_params *np);

/*
 * Issue a certificate of the NF profile for pub (the requester's key) and
 * spiffe_id, valid for ttl seconds (refused above NF_MAX_VALIDITY:
 * nf_ttl_check; notBefore's backdating never takes it past the cap, and it
 * never ends after the CA's notAfter), signed by ca_key for ca; extra (may
 * be NULL) are more extensions added after nfTypes (evidence identity, the
 * CA's cRLDistributionPoints). np is checked first (nf_params_check).
 * Caller frees *out. 0, HSM_EPOLICY, HSM_EINVAL or HSM_ECRYPTO.
 */
int nf_issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const char *spiffe_id, int64_t ttl,
    const struct nf_params *np, const STACK_OF(X509_EXTENSION) *extra, X509 **out);

#endif
