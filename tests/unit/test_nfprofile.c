/*
 * test_nfprofile.c - the 3GPP NF certificate profile (nfprofile.h): the
 * home network domain, the checks of its fields, RFC 9310 nfTypes DER
 * both ways, and a certificate of the profile read back field by field.
 * In-memory OpenSSL keys stand in for keyholder keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "certinspect.h"
#include "err.h"
#include "nfprofile.h"

#define DOMAIN "5gc.mnc001.mcc001.3gppnetwork.org"

static void
home_domain(void **state)
{
	char d[NF_DOMAIN_MAX];

	assert_int_equal(nf_home_domain("001", "01", d, sizeof(d)), 0);
	assert_string_equal(d, DOMAIN);	/* a 2-digit MNC gets its leading 0 */
	assert_int_equal(nf_home_domain("310", "410", d, sizeof(d)), 0);
	assert_string_equal(d, "5gc.mnc410.mcc310.3gppnetwork.org");
	assert_int_equal(nf_home_domain("31", "410", d, sizeof(d)), HSM_EINVAL);
	assert_string_equal(d, "");
	assert_non_null(strstr(hsm_err_msg(HSM_EINVAL), "MCC"));
	assert_int_equal(nf_home_domain("310", "4101", d, sizeof(d)), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_msg(HSM_EINVAL), "MNC"));
	assert_int_equal(nf_home_domain("3a0", "41", d, sizeof(d)), HSM_EINVAL);
	assert_int_equal(nf_home_domain("310", "", d, sizeof(d)), HSM_EINVAL);
	assert_int_equal(nf_home_domain("310", "41", d, 10), HSM_EINVAL);	/* no room */
	assert_string_equal(d, "");
}

static void
field_checks(void **state)
{
	assert_int_equal(nf_country_check("FI"), 0);
	assert_int_equal(nf_country_check("fi"), HSM_EINVAL);
	assert_int_equal(nf_country_check("FIN"), HSM_EINVAL);
	assert_int_equal(nf_fqdn_check("amf1." DOMAIN, DOMAIN), 0);
	assert_int_equal(nf_fqdn_check("amf1.example.com", NULL), 0);
	assert_int_equal(nf_fqdn_check("amf1.example.com", DOMAIN), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_msg(HSM_EINVAL), "not inside the home network"));
	assert_int_equal(nf_fqdn_check(DOMAIN, DOMAIN), HSM_EINVAL);	/* the domain itself */
	assert_int_equal(nf_fqdn_check("x" DOMAIN, DOMAIN), HSM_EINVAL);	/* not a label boundary */
	assert_int_equal(nf_fqdn_check("amf", NULL), HSM_EINVAL);
	assert_int_equal(nf_fqdn_check("AMF.example.com", NULL), HSM_EINVAL);
	assert_int_equal(nf_fqdn_check("-a.example.com", NULL), HSM_EINVAL);
	assert_int_equal(nf_fqdn_check("a-.example.com", NULL), HSM_EINVAL);
	assert_int_equal(nf_fqdn_check("a..example.com", NULL), HSM_EINVAL);
	assert_int_equal(nf_fqdn_check("a.example.com.", NULL), HSM_EINVAL);
	assert_int_equal(nf_fqdn_check("", NULL), HSM_EINVAL);
	assert_int_equal(nf_type_check("AMF"), 0);
	assert_int_equal(nf_type_check("5G_EIR"), 0);
	assert_int_equal(nf_type_check("amf"), HSM_EINVAL);
	assert_int_equal(nf_type_check(""), HSM_EINVAL);
	assert_int_equal(nf_type_check("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"), HSM_EINVAL); /* 33 */
	assert_int_equal(nf_ttl_check(NF_MAX_VALIDITY), 0);
	assert_int_equal(nf_ttl_check(NF_MAX_VALIDITY + 1), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "3 years"));
}

static void
types_parse_format(void **state)
{
	struct nf_types t;
	char buf[NF_TYPES_TEXT_MAX], many[NF_TYPES_TEXT_MAX + 64];
	size_t o = 0;

	assert_int_equal(nf_types_parse("AMF,SMF,NRF", &t), 0);
	assert_int_equal(t.n, 3);
	assert_string_equal(t.t[2], "NRF");
	assert_int_equal(nf_types_format(&t, ", ", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "AMF, SMF, NRF");
	assert_int_equal(nf_types_format(&t, ",", buf, 5), HSM_EINVAL);
	assert_string_equal(buf, "");
	assert_int_equal(nf_types_parse("AMF,AMF", NULL), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_msg(HSM_EINVAL), "twice"));
	assert_int_equal(nf_types_parse("AMF,", NULL), HSM_EINVAL);
	assert_int_equal(nf_types_parse(",AMF", NULL), HSM_EINVAL);
	assert_int_equal(nf_types_parse("AMF, SMF", NULL), HSM_EINVAL);
	assert_int_equal(nf_types_parse("", NULL), HSM_EINVAL);
	for (int i = 0; i <= NF_TYPES_MAX; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "%sT%d", i ? "," : "", i);
	assert_int_equal(nf_types_parse(many, NULL), HSM_EINVAL);	/* one too many */
	assert_non_null(strstr(hsm_err_msg(HSM_EINVAL), "more than"));
}

/* The DER of NFTypes, both ways, and what the decoder refuses. */
static void
types_der(void **state)
{
	/* SEQUENCE { IA5String "AMF", IA5String "SMF" }, as RFC 9310 shows it */
	static const uint8_t want[] = { 0x30, 0x0a, 0x16, 0x03, 'A', 'M', 'F', 0x16, 0x03, 'S',
	    'M', 'F' };
	struct nf_types t, back;
	uint8_t *der = NULL, bad[sizeof(want)];
	size_t len = 0;

	assert_int_equal(nf_types_parse("AMF,SMF", &t), 0);
	assert_int_equal(nf_types_encode(&t, &der, &len), 0);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(der, want, len);
	assert_int_equal(nf_types_decode(der, len, &back), 0);
	assert_int_equal(back.n, 2);
	assert_string_equal(back.t[0], "AMF");
	assert_string_equal(back.t[1], "SMF");
	free(der);

	/* Refused: empty, trailing bytes, an empty SEQUENCE, another string type,
	 * non-DER length, an empty string, a NUL or 8-bit byte. */
	assert_int_equal(nf_types_decode(want, 0, &back), HSM_EINVAL);
	memcpy(bad, want, sizeof(bad));
	assert_int_equal(nf_types_decode(bad, sizeof(bad) - 1, &back), HSM_EINVAL);
	assert_int_equal(back.n, 0);
	assert_int_equal(nf_types_decode((const uint8_t *)"\x30\x00", 2, &back), HSM_EINVAL);
	assert_int_equal(nf_types_decode((const uint8_t *)"\x30\x05\x0c\x03" "AMF", 7, &back),
	    HSM_EINVAL);	/* UTF8String */
	assert_int_equal(nf_types_decode((const uint8_t *)"\x30\x81\x05\x16\x03" "AMF", 8, &back),
	    HSM_EINVAL);	/* long-form length: BER, not DER */
	assert_int_equal(nf_types_decode((const uint8_t *)"\x30\x02\x16\x00", 4, &back),
	    HSM_EINVAL);
	assert_int_equal(nf_types_decode((const uint8_t *)"\x30\x05\x16\x03" "A\0F", 7, &back),
	    HSM_EINVAL);
	assert_int_equal(nf_types_decode((const uint8_t *)"\x30\x05\x16\x03" "A\xc3" "F", 7,
	    &back), HSM_EINVAL);
	assert_int_equal(nf_types_decode((const uint8_t *)"\x30\x05\x16\x03" "AMF" "\x00", 8,
	    &back), HSM_EINVAL);	/* a byte after the SEQUENCE */
}

/* What an NF certificate needs, each refusal naming its field. */
static void
params_refused(void **state)
{
	struct nf_params np = { "001", "01", "FI", "amf1." DOMAIN, "AMF" };
	struct nf_params b;

	assert_int_equal(nf_params_check(&np), 0);
	b = np;
	b.mcc = NULL;
	assert_int_equal(nf_params_check(&b), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "missing PLMN"));
	b = np;
	b.country = "Finland";
	assert_int_equal(nf_params_check(&b), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "bad country"));
	b = np;
	b.fqdn = "amf1.5gc.mnc002.mcc001.3gppnetwork.org";	/* another network's */
	assert_int_equal(nf_params_check(&b), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "bad FQDN"));
	b = np;
	b.nf_types = "";
	assert_int_equal(nf_params_check(&b), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "missing NF type"));
	b = np;
	b.nf_types = "AMF,amf";
	assert_int_equal(nf_params_check(&b), HSM_EPOLICY);
	assert_non_null(strstr(hsm_err_msg(HSM_EPOLICY), "bad NF type"));
}

static int
critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	assert_true(i >= 0);
	return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

/* A certificate of the profile, field by field (TS 33.310 6.1.3c). */
static void
issue_profile(void **state)
{
	struct nf_params np = { "001", "01", "FI", "amf1." DOMAIN, "AMF,SMF" };
	EVP_PKEY *cak = EVP_EC_gen("P-384"), *k = EVP_EC_gen("P-384");
	X509 *ca = NULL, *x = NULL;
	GENERAL_NAMES *gens;
	EXTENDED_KEY_USAGE *eku;
	struct nf_types t;
	char buf[256];
	int crit = 0;
	time_t nb, na;

	assert_non_null(cak);
	assert_non_null(k);
	assert_int_equal(cert_make_root(cak, cak, "example.org", 10LL * 365 * 86400, &ca), 0);
	/* Over the cap: refused, not cut short. */
	assert_int_equal(nf_issue(ca, cak, k, "spiffe://example.org/amf", NF_MAX_VALIDITY + 1, &np,
	    NULL, &x), HSM_EPOLICY);
	assert_null(x);
	np.fqdn = "amf1.example.com";
	assert_int_equal(nf_issue(ca, cak, k, "spiffe://example.org/amf", 3600, &np, NULL, &x),
	    HSM_EPOLICY);
	np.fqdn = "amf1." DOMAIN;
	assert_int_equal(nf_issue(ca, cak, k, "spiffe://example.org/amf", NF_MAX_VALIDITY, &np,
	    NULL, &x), 0);

	X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof(buf));
	assert_string_equal(buf, "/C=FI/O=" DOMAIN);
	/* At most 3 years, notBefore and notAfter both counted. */
	{
		struct tm a, b;

		assert_int_equal(ASN1_TIME_to_tm(X509_get0_notBefore(x), &a), 1);
		assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(x), &b), 1);
		nb = timegm(&a);
		na = timegm(&b);
	}
	assert_true(na - nb + 1 <= NF_MAX_VALIDITY);
	assert_true(na - nb + 1 >= NF_MAX_VALIDITY - 120);
	/* keyUsage digitalSignature alone, critical; EKU both; SKI and AKI. */
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	assert_int_equal(critical(x, NID_key_usage), 1);
	assert_non_null(eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL));
	assert_int_equal(sk_ASN1_OBJECT_num(eku), 2);
	EXTENDED_KEY_USAGE_free(eku);
	assert_non_null(X509_get0_subject_key_id(x));
	assert_non_null(X509_get0_authority_key_id(x));
	assert_memory_equal(ASN1_STRING_get0_data(X509_get0_authority_key_id(x)),
	    ASN1_STRING_get0_data(X509_get0_subject_key_id(ca)),
	    ASN1_STRING_length(X509_get0_subject_key_id(ca)));
	/* subjectAltName critical: the FQDN, then the SPIFFE ID. */
	assert_int_equal(critical(x, NID_subject_alt_name), 1);
	assert_non_null(gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL));
	assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
	assert_int_equal(sk_GENERAL_NAME_value(gens, 0)->type, GEN_DNS);
	assert_int_equal(sk_GENERAL_NAME_value(gens, 1)->type, GEN_URI);
	GENERAL_NAMES_free(gens);
	/* nfTypes, non-critical, the entry's order. */
	assert_int_equal(nf_types_of_cert(x, &t, &crit), 0);
	assert_int_equal(crit, 0);
	assert_int_equal(t.n, 2);
	assert_string_equal(t.t[0], "AMF");
	assert_string_equal(t.t[1], "SMF");
	/* A P-384 issuer signs with SHA-384. */
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA384);
	assert_int_equal(X509_verify(x, cak), 1);
	X509_free(x);
	x = NULL;

	/* A plain SVID has no nfTypes. */
	assert_int_equal(cert_issue_svid(ca, cak, k, "spiffe://example.org/w", 3600, &x), 0);
	assert_int_equal(nf_types_of_cert(x, &t, &crit), HSM_ENOENT);
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(k);
}

static void
profile_names(void **state)
{
	enum cert_profile_kind k;

	assert_int_equal(nf_profile_parse("3gpp-nf", 0, &k), 0);
	assert_int_equal(k, PROFILE_3GPP_NF);
	assert_int_equal(nf_profile_parse("spiffe", 0, &k), 0);
	assert_int_equal(k, PROFILE_SPIFFE);
	assert_int_equal(nf_profile_parse("", 1, &k), 0);
	assert_int_equal(k, PROFILE_INHERIT);
	assert_int_equal(nf_profile_parse("", 0, &k), HSM_EINVAL);
	assert_int_equal(nf_profile_parse("3GPP", 0, &k), HSM_EINVAL);
	assert_string_equal(nf_profile_name(PROFILE_3GPP_NF), "3gpp-nf");
	assert_string_equal(nf_profile_name(PROFILE_INHERIT), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(home_domain),
		cmocka_unit_test(field_checks),
		cmocka_unit_test(types_parse_format),
		cmocka_unit_test(types_der),
		cmocka_unit_test(params_refused),
		cmocka_unit_test(issue_profile),
		cmocka_unit_test(profile_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
