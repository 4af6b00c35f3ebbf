/* nfprofile.c - the 3GPP NF certificate profile and RFC 9310's nfTypes (see nfprofile.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "err.h"
#include "nfprofile.h"

/* NFTypes ::= SEQUENCE SIZE (1..MAX) OF NFType; NFType ::= IA5String (SIZE (1..32)) */
ASN1_ITEM_TEMPLATE(NF_TYPES) =
	ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_SEQUENCE_OF, 0, NFTypes, ASN1_IA5STRING)
static_ASN1_ITEM_TEMPLATE_END(NF_TYPES)

static int
all_digits(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

int
nf_plmn_check(const char *mcc, const char *mnc)
{
	if (mcc == NULL || !all_digits(mcc, 3, 3))
		return hsm_err(HSM_EINVAL, "MCC '%.20s' must be 3 digits", mcc != NULL ? mcc : "");
	if (mnc == NULL || !all_digits(mnc, 2, 3))
		return hsm_err(HSM_EINVAL, "MNC '%.20s' must be 2 or 3 digits",
		    mnc != NULL ? mnc : "");
	return 0;
}

int
nf_home_domain(const char *mcc, const char *mnc, char *out, size_t cap)
{
	int r, n;

	if (cap > 0)
		out[0] = '\0';
	if ((r = nf_plmn_check(mcc, mnc)) != 0)
		return r;
	n = snprintf(out, cap, "5gc.mnc%s%s.mcc%s.3gppnetwork.org", strlen(mnc) == 2 ? "0" : "",
	    mnc, mcc);
	if (n < 0 || (size_t)n >= cap) {
		if (cap > 0)
			out[0] = '\0';
		return hsm_err(HSM_EINVAL, "no room for the home network domain");
	}
	return 0;
}

int
nf_country_check(const char *c)
{
	if (c == NULL || strlen(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z')
		return hsm_err(HSM_EINVAL, "country '%.20s' must be two upper-case letters "
		    "(ISO 3166-1 alpha-2)", c != NULL ? c : "");
	return 0;
}

int
nf_fqdn_check(const char *fqdn, const char *domain)
{
	size_t n, dn, label = 0, labels = 1;

	if (fqdn == NULL || (n = strlen(fqdn)) == 0)
		return hsm_err(HSM_EINVAL, "empty FQDN");
	if (n > NF_FQDN_MAX)
		return hsm_err(HSM_EINVAL, "FQDN longer than %d characters", NF_FQDN_MAX);
	for (size_t i = 0; i < n; i++) {
		char ch = fqdn[i];

		if (ch == '.') {
			if (label == 0 || fqdn[i - 1] == '-')
				return hsm_err(HSM_EINVAL, "FQDN '%.80s': an empty label or one "
				    "ending in '-'", fqdn);
			label = 0;
			labels++;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
			return hsm_err(HSM_EINVAL, "FQDN '%.80s': only lower-case letters, digits, "
			    "'-' and '.'", fqdn);
		if (ch == '-' && label == 0)
			return hsm_err(HSM_EINVAL, "FQDN '%.80s': a label starts with '-'", fqdn);
		if (++label > 63)
			return hsm_err(HSM_EINVAL, "FQDN '%.80s': a label longer than 63", fqdn);
	}
	if (label == 0 || fqdn[n - 1] == '-')
		return hsm_err(HSM_EINVAL, "FQDN '%.80s': an empty last label or one ending in '-'",
		    fqdn);
	if (labels < 2)
		return hsm_err(HSM_EINVAL, "FQDN '%.80s' has one label: not fully qualified", fqdn);
	if (domain != NULL && ((dn = strlen(domain)) + 1 >= n || fqdn[n - dn - 1] != '.' ||
	    strcmp(fqdn + n - dn, domain) != 0))
		return hsm_err(HSM_EINVAL, "FQDN '%.80s' is not inside the home network domain %s",
		    fqdn, domain);
	return 0;
}

int
nf_type_check(const char *t)
{
	size_t n = t != NULL ? strlen(t) : 0;

	if (n == 0 || n > NF_TYPE_MAX)
		return hsm_err(HSM_EINVAL, "NF type '%.40s' must be 1 to %d characters",
		    t != NULL ? t : "", NF_TYPE_MAX);
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '_'))
			return hsm_err(HSM_EINVAL, "NF type '%.40s': only A-Z, 0-9 and '_', as "
			    "TS 29.510 spells them (AMF, SMF, 5G_EIR, ...)", t);
	return 0;
}

int
nf_types_parse(const char *list, struct nf_types *out)
{
	struct nf_types t;
	int r;

	memset(&t, 0, sizeof(t));
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (list == NULL || *list == '\0')
		return hsm_err(HSM_EINVAL, "no NF type");
	for (const char *p = list;;) {
		size_t l = strcspn(p, ",");

		if (t.n == NF_TYPES_MAX)
			return hsm_err(HSM_EINVAL, "more than %d NF types", NF_TYPES_MAX);
		if (l > NF_TYPE_MAX)
			return hsm_err(HSM_EINVAL, "NF type '%.40s...' longer than %d characters", p,
			    NF_TYPE_MAX);
		memcpy(t.t[t.n], p, l);
		t.t[t.n][l] = '\0';
		if ((r = nf_type_check(t.t[t.n])) != 0)
			return r;
		for (size_t i = 0; i < t.n; i++)
			if (strcmp(t.t[i], t.t[t.n]) == 0)
				return hsm_err(HSM_EINVAL, "NF type %s listed twice", t.t[i]);
		t.n++;
		p += l;
		if (*p == '\0')
			break;
		p++;
	}
	if (out != NULL)
		*out = t;
	return 0;
}

int
nf_types_format(const struct nf_types *t, const char *sep, char *out, size_t cap)
{
	size_t o = 0;
	int n;

	if (cap == 0)
		return hsm_err(HSM_EINVAL, "no room for the NF types");
	out[0] = '\0';
	for (size_t i = 0; i < t->n; i++) {
		n = snprintf(out + o, cap - o, "%s%s", i > 0 ? sep : "", t->t[i]);
		if (n < 0 || (size_t)n >= cap - o) {
			out[0] = '\0';
			return hsm_err(HSM_EINVAL, "no room for the NF types");
		}
		o += (size_t)n;
	}
	return 0;
}

int
nf_types_encode(const struct nf_types *t, uint8_t **der, size_t *len)
{
	OPENSSL_STACK *sk = NULL;
	ASN1_IA5STRING *s = NULL;
	unsigned char *buf = NULL;
	int n, r = HSM_ENOMEM;

	*der = NULL;
	*len = 0;
	if (t->n == 0 || t->n > NF_TYPES_MAX)
		return hsm_err(HSM_EINVAL, "nfTypes: %zu NF types (1 to %d)", t->n, NF_TYPES_MAX);
	if ((sk = OPENSSL_sk_new_null()) == NULL)
		goto out;
	for (size_t i = 0; i < t->n; i++) {
		size_t l = strnlen(t->t[i], sizeof(t->t[i]));

		if (l == 0 || l > NF_TYPE_MAX) {
			r = hsm_err(HSM_EINVAL, "nfTypes: an NF type of %zu characters", l);
			goto out;
		}
		if ((s = ASN1_IA5STRING_new()) == NULL || !ASN1_STRING_set(s, t->t[i], (int)l) ||
		    !OPENSSL_sk_push(sk, s))
			goto out;
		s = NULL;
	}
	if ((n = ASN1_item_i2d((const ASN1_VALUE *)sk, &buf, ASN1_ITEM_rptr(NF_TYPES))) <= 0)
		goto out;
	if ((*der = malloc((size_t)n)) == NULL)
		goto out;
	memcpy(*der, buf, (size_t)n);
	*len = (size_t)n;
	r = 0;
 out:
	if (r == HSM_ENOMEM)
		r = hsm_err_ossl(HSM_ENOMEM, "nfTypes: encoding failed");
	OPENSSL_free(buf);
	ASN1_IA5STRING_free(s);
	ASN1_item_free((ASN1_VALUE *)sk, ASN1_ITEM_rptr(NF_TYPES));
	return r;
}

int
nf_types_decode(const uint8_t *der, size_t len, struct nf_types *out)
{
	const unsigned char *p = der;
	ASN1_VALUE *v = NULL;
	OPENSSL_STACK *sk;
	unsigned char *again = NULL;
	int n, r = HSM_EINVAL;

	memset(out, 0, sizeof(*out));
	if (len == 0 || len > 65536)
		return hsm_err(HSM_EINVAL, "nfTypes: %zu bytes", len);
	if ((v = ASN1_item_d2i(NULL, &p, (long)len, ASN1_ITEM_rptr(NF_TYPES))) == NULL ||
	    p != der + len) {
		r = hsm_err(HSM_EINVAL, "nfTypes: not a SEQUENCE OF IA5String");
		goto out;
	}
	/* DER only: what decodes must re-encode to the very bytes. */
	if ((n = ASN1_item_i2d(v, &again, ASN1_ITEM_rptr(NF_TYPES))) <= 0 || (size_t)n != len ||
	    memcmp(again, der, len) != 0) {
		r = hsm_err(HSM_EINVAL, "nfTypes: not DER");
		goto out;
	}
	sk = (OPENSSL_STACK *)v;
	if (OPENSSL_sk_num(sk) < 1 || OPENSSL_sk_num(sk) > NF_TYPES_MAX) {
		r = hsm_err(HSM_EINVAL, "nfTypes: %d NF types (1 to %d)", OPENSSL_sk_num(sk),
		    NF_TYPES_MAX);
		goto out;
	}
	for (int i = 0; i < OPENSSL_sk_num(sk); i++) {
		const ASN1_STRING *s = OPENSSL_sk_value(sk, i);
		int l = ASN1_STRING_length(s);
		const unsigned char *d = ASN1_STRING_get0_data(s);

		if (l < 1 || l > NF_TYPE_MAX) {
			r = hsm_err(HSM_EINVAL, "nfTypes: an NF type of %d bytes (1 to %d)", l,
			    NF_TYPE_MAX);
			goto out;
		}
		for (int k = 0; k < l; k++) {
			if (d[k] == 0 || d[k] > 0x7f) {
				r = hsm_err(HSM_EINVAL, "nfTypes: a byte 0x%02x outside IA5String "
				    "or NUL", d[k]);
				goto out;
			}
		}
		memcpy(out->t[out->n], d, (size_t)l);
		out->t[out->n][l] = '\0';
		out->n++;
	}
	r = 0;
 out:
	if (r != 0)
		memset(out, 0, sizeof(*out));
	OPENSSL_free(again);
	ASN1_item_free(v, ASN1_ITEM_rptr(NF_TYPES));
	ERR_clear_error();
	return r;
}

int
nf_types_of_cert(X509 *x, struct nf_types *out, int *critical)
{
	ASN1_OBJECT *oid = OBJ_txt2obj(NF_OID_NFTYPES, 1);
	const ASN1_OCTET_STRING *v;
	X509_EXTENSION *e;
	int i, r;

	memset(out, 0, sizeof(*out));
	*critical = 0;
	if (oid == NULL)
		return hsm_err_ossl(HSM_ENOMEM, "nfTypes OID");
	i = X509_get_ext_by_OBJ(x, oid, -1);
	if (i >= 0 && X509_get_ext_by_OBJ(x, oid, i) >= 0)
		r = hsm_err(HSM_EINVAL, "nfTypes: the extension appears twice");
	else if (i < 0)
		r = HSM_ENOENT;
	else if ((e = X509_get_ext(x, i)) == NULL || (v = X509_EXTENSION_get_data(e)) == NULL)
		r = hsm_err(HSM_EINVAL, "nfTypes: unreadable extension");
	else if ((r = nf_types_decode(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v),
	    out)) == 0)
		*critical = X509_EXTENSION_get_critical(e) > 0;
	ASN1_OBJECT_free(oid);
	return r;
}

int
nf_ttl_check(int64_t ttl)
{
	if (ttl > NF_MAX_VALIDITY)
		return hsm_err(HSM_EPOLICY, "a TTL of %lld s (%lld days) exceeds the %lld days "
		    "profile %s allows (TS 33.310 6.1.3c: at most 3 years)", (long long)ttl,
		    (long long)(ttl / 86400), NF_MAX_VALIDITY / 86400, NF_PROFILE_NAME);
	return 0;
}

int
nf_profile_parse(const char *s, int inherit, enum cert_profile_kind *out)
{
	*out = PROFILE_SPIFFE;
	if (s != NULL && inherit && s[0] == '\0')
		*out = PROFILE_INHERIT;
	else if (s != NULL && strcmp(s, "spiffe") == 0)
		*out = PROFILE_SPIFFE;
	else if (s != NULL && strcmp(s, NF_PROFILE_NAME) == 0)
		*out = PROFILE_3GPP_NF;
	else
		return hsm_err(HSM_EINVAL, "unknown certificate profile '%.40s' (spiffe or %s)",
		    s != NULL ? s : "", NF_PROFILE_NAME);
	return 0;
}

const char *
nf_profile_name(enum cert_profile_kind k)
{
	return k == PROFILE_SPIFFE ? "spiffe" : k == PROFILE_3GPP_NF ? NF_PROFILE_NAME : "";
}

int
nf_params_check(const struct nf_params *np)
{
	char domain[NF_DOMAIN_MAX], why[300];

	if (np->mcc == NULL || np->mnc == NULL || np->mcc[0] == '\0' || np->mnc[0] == '\0')
		return hsm_err(HSM_EPOLICY, "missing PLMN: profile %s needs the home network's "
		    "plmn.mcc and plmn.mnc (ca.yaml)", NF_PROFILE_NAME);
	if (nf_home_domain(np->mcc, np->mnc, domain, sizeof(domain)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_detail());
		return hsm_err(HSM_EPOLICY, "bad PLMN: %s", why);
	}
	if (np->country == NULL || np->country[0] == '\0')
		return hsm_err(HSM_EPOLICY, "missing country: profile %s needs plmn.country "
		    "(ca.yaml), the subject's C", NF_PROFILE_NAME);
	if (nf_country_check(np->country) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_detail());
		return hsm_err(HSM_EPOLICY, "bad country: %s", why);
	}
	if (np->fqdn == NULL || np->fqdn[0] == '\0')
		return hsm_err(HSM_EPOLICY, "missing FQDN: profile %s needs the NF's FQDN",
		    NF_PROFILE_NAME);
	if (nf_fqdn_check(np->fqdn, domain) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_detail());
		return hsm_err(HSM_EPOLICY, "bad FQDN: %s", why);
	}
	if (np->nf_types == NULL || np->nf_types[0] == '\0')
		return hsm_err(HSM_EPOLICY, "missing NF type: profile %s needs at least one "
		    "(RFC 9310 nfTypes)", NF_PROFILE_NAME);
	if (nf_types_parse(np->nf_types, NULL) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_detail());
		return hsm_err(HSM_EPOLICY, "bad NF type: %s", why);
	}
	return 0;
}

/* The nfTypes extension (non-critical) of the list. */
static int
nf_types_ext(const char *list, X509_EXTENSION **out)
{
	struct nf_types t;
	ASN1_OBJECT *oid = NULL;
	ASN1_OCTET_STRING *os = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	if ((r = nf_types_parse(list, &t)) != 0 || (r = nf_types_encode(&t, &der, &len)) != 0)
		return r;
	if ((oid = OBJ_txt2obj(NF_OID_NFTYPES, 1)) == NULL ||
	    (os = ASN1_OCTET_STRING_new()) == NULL || !ASN1_OCTET_STRING_set(os, der, (int)len) ||
	    (*out = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, os)) == NULL)
		r = hsm_err_ossl(HSM_ENOMEM, "nfTypes extension");
	ASN1_OBJECT_free(oid);
	ASN1_OCTET_STRING_free(os);
	free(der);
	return r;
}

int
nf_issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const char *spiffe_id, int64_t ttl,
    const struct nf_params *np, const STACK_OF(X509_EXTENSION) *extra, X509 **out)
{
	char domain[NF_DOMAIN_MAX];
	STACK_OF(X509_EXTENSION) *exts = NULL;	/* borrows extra's */
	X509_EXTENSION *nft = NULL;
	struct cert_profile p;
	int r;

	*out = NULL;
	if ((r = nf_params_check(np)) != 0 || (r = nf_ttl_check(ttl)) != 0)
		return r;
	if ((r = nf_home_domain(np->mcc, np->mnc, domain, sizeof(domain))) != 0 ||
	    (r = nf_types_ext(np->nf_types, &nft)) != 0)
		return r;
	if ((exts = sk_X509_EXTENSION_new_null()) == NULL || !sk_X509_EXTENSION_push(exts, nft)) {
		r = hsm_err_ossl(HSM_ENOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < sk_X509_EXTENSION_num(extra); i++)
		if (!sk_X509_EXTENSION_push(exts, sk_X509_EXTENSION_value(extra, i))) {
			r = hsm_err_ossl(HSM_ENOMEM, "out of memory");
			goto out;
		}
	memset(&p, 0, sizeof(p));
	p.country = np->country;
	p.org = domain;
	p.dns_name = np->fqdn;
	p.san_critical = 1;
	p.sign_only = 1;
	p.max_validity = NF_MAX_VALIDITY;
	p.exts = exts;
	r = cert_issue_svid_profile(ca, ca_key, pub, spiffe_id, ttl, &p, out);
 out:
	sk_X509_EXTENSION_free(exts);
	X509_EXTENSION_free(nft);
	return r;
}
