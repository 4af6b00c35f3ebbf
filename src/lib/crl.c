/*
 * crl.c - building, checking and naming CRLs (crl.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "crl.h"
#include "err.h"

#define URL_MAX 1024

uint64_t
crl_number_make(uint64_t seq, int64_t now)
{
	return (seq << 32) | ((uint64_t)now & 0xffffffffu);
}

/* A hex serial as the ledger keeps it, into a new ASN1_INTEGER. */
static ASN1_INTEGER *
serial_int(const char *hex)
{
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ai = NULL;
	size_t n = strlen(hex);

	if (n == 0 || n > 64 || strspn(hex, "0123456789abcdefABCDEF") != n ||
	    BN_hex2bn(&bn, hex) != (int)n)
		goto out;
	ai = BN_to_ASN1_INTEGER(bn, NULL);
 out:
	BN_free(bn);
	return ai;
}

/* One revoked entry added to crl. */
static int
add_revoked(X509_CRL *crl, const struct crl_revoked *e)
{
	X509_REVOKED *r = X509_REVOKED_new();
	ASN1_INTEGER *ai = serial_int(e->serial);
	ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)e->when);
	ASN1_ENUMERATED *why = NULL;
	int st = HSM_ECRYPTO;

	if (ai == NULL) {
		st = hsm_err(HSM_EINVAL, "CRL: serial %.70s is not hex", e->serial);
		goto out;
	}
	if (r == NULL || t == NULL || !X509_REVOKED_set_serialNumber(r, ai) ||
	    !X509_REVOKED_set_revocationDate(r, t))
		goto out;
	if (e->reason > 0 && e->reason <= 10 && e->reason != 7) {
		if ((why = ASN1_ENUMERATED_new()) == NULL || !ASN1_ENUMERATED_set(why, e->reason) ||
		    !X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, why, 0, 0))
			goto out;
	}
	if (!X509_CRL_add0_revoked(crl, r))
		goto out;
	r = NULL;
	st = 0;
 out:
	if (st == HSM_ECRYPTO)
		hsm_err_ossl(st, "CRL: cannot add a revoked certificate");
	X509_REVOKED_free(r);
	ASN1_INTEGER_free(ai);
	ASN1_TIME_free(t);
	ASN1_ENUMERATED_free(why);
	return st;
}

int
crl_build(X509 *ca, EVP_PKEY *ca_key, const struct crl_revoked *v, size_t n,
    uint64_t seq, int64_t now, int64_t next_update, uint8_t **der, size_t *len)
{
	X509_CRL *crl = NULL;
	ASN1_TIME *tu = NULL, *nu = NULL;
	ASN1_INTEGER *num = NULL;
	AUTHORITY_KEYID *akid = NULL;
	const ASN1_OCTET_STRING *ski;
	EVP_PKEY *pub;
	unsigned char *p = NULL;
	int st = HSM_ECRYPTO, l;

	*der = NULL;
	*len = 0;
	if (next_update <= 0 || seq > 0xffffffffu || now <= 0)
		return hsm_err(HSM_EINVAL, "CRL: sequence, time or nextUpdate out of range");
	if ((pub = X509_get0_pubkey(ca)) == NULL)
		return hsm_err_ossl(HSM_EINVAL, "CRL: the CA certificate has no usable key");
	if ((crl = X509_CRL_new()) == NULL || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) ||
	    (tu = ASN1_TIME_set(NULL, (time_t)now)) == NULL ||
	    (nu = ASN1_TIME_set(NULL, (time_t)(now + next_update))) == NULL ||
	    !X509_CRL_set1_lastUpdate(crl, tu) || !X509_CRL_set1_nextUpdate(crl, nu))
		goto fail;
	for (size_t i = 0; i < n; i++)
		if ((st = add_revoked(crl, &v[i])) != 0)
			goto out;
	st = HSM_ECRYPTO;
	if ((num = ASN1_INTEGER_new()) == NULL ||
	    !ASN1_INTEGER_set_uint64(num, crl_number_make(seq, now)) ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0))
		goto fail;
	if ((ski = X509_get0_subject_key_id(ca)) != NULL) {
		if ((akid = AUTHORITY_KEYID_new()) == NULL ||
		    (akid->keyid = ASN1_OCTET_STRING_dup(ski)) == NULL ||
		    !X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0, 0))
			goto fail;
	}
	if (!X509_CRL_sort(crl))
		goto fail;
	if (X509_CRL_sign(crl, ca_key, cert_sig_md(pub)) <= 0) {
		st = hsm_err_ossl(HSM_ECRYPTO, "CRL: the CA key did not sign");
		goto out;
	}
	if (X509_CRL_verify(crl, pub) != 1) {
		st = hsm_err_ossl(HSM_ECRYPTO,
		    "CRL: the signature made by the CA key does not verify with its certificate");
		goto out;
	}
	if ((l = i2d_X509_CRL(crl, &p)) <= 0)
		goto fail;
	*der = p;
	*len = (size_t)l;
	st = 0;
	goto out;
 fail:
	st = hsm_err_ossl(HSM_ECRYPTO, "CRL: cannot build");
 out:
	X509_CRL_free(crl);
	ASN1_TIME_free(tu);
	ASN1_TIME_free(nu);
	ASN1_INTEGER_free(num);
	AUTHORITY_KEYID_free(akid);
	return st;
}

/* Every critical extension of crl is one we understand (we make none). */
static int
no_unknown_critical(const X509_CRL *crl)
{
	for (int i = 0; i < X509_CRL_get_ext_count(crl); i++)
		if (X509_EXTENSION_get_critical(X509_CRL_get_ext(crl, i)))
			return 0;
	return 1;
}

int
crl_check(const uint8_t *der, size_t len, X509 *ca, int64_t now, X509_CRL **out,
    struct crl_info *info)
{
	const unsigned char *p = der;
	const ASN1_TIME *lu, *nu;
	ASN1_INTEGER *num = NULL;
	X509_CRL *crl = NULL;
	EVP_PKEY *pub;
	int st = HSM_EPROTO, crit = -1, n;

	*out = NULL;
	memset(info, 0, sizeof(*info));
	if (len == 0 || len > CRL_MAX_DER)
		return hsm_err(HSM_EPROTO, "CRL of %zu bytes (1..%d accepted)", len, CRL_MAX_DER);
	if ((crl = d2i_X509_CRL(NULL, &p, (long)len)) == NULL || p != der + len) {
		ERR_clear_error();
		st = hsm_err(HSM_EPROTO, "not a DER CRL (or bytes after it)");
		goto out;
	}
	if (X509_CRL_get_version(crl) != X509_CRL_VERSION_2) {
		st = hsm_err(HSM_EPROTO, "CRL is not version 2");
		goto out;
	}
	if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) != 0) {
		st = hsm_err(HSM_EPROTO, "CRL issuer is not the CA");
		goto out;
	}
	if ((pub = X509_get0_pubkey(ca)) == NULL || X509_CRL_verify(crl, pub) != 1) {
		ERR_clear_error();
		st = hsm_err(HSM_EPROTO, "CRL signature does not verify with the CA's key");
		goto out;
	}
	if (!no_unknown_critical(crl)) {
		st = hsm_err(HSM_EPROTO, "CRL has a critical extension");
		goto out;
	}
	num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
	if (num == NULL || !ASN1_INTEGER_get_uint64(&info->number, num)) {
		ERR_clear_error();
		st = hsm_err(HSM_EPROTO, "CRL has no 64-bit crlNumber");
		goto out;
	}
	info->seq = info->number >> 32;
	lu = X509_CRL_get0_lastUpdate(crl);
	nu = X509_CRL_get0_nextUpdate(crl);
	if (nu == NULL || cert_time_unix(lu, &info->this_update) != 0 ||
	    cert_time_unix(nu, &info->next_update) != 0 ||
	    info->next_update <= info->this_update) {
		st = hsm_err(HSM_EPROTO, "CRL has no nextUpdate after its thisUpdate");
		goto out;
	}
	if (info->this_update > now + CRL_SKEW) {
		st = hsm_err(HSM_EPROTO, "CRL thisUpdate lies %lld s in the future",
		    (long long)(info->this_update - now));
		goto out;
	}
	n = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));	/* -1: no entries at all */
	info->count = n > 0 ? (size_t)n : 0;
	/* sorted now, not by the first lookup (X509_CRL_get0_by_*), under the CRL's write lock */
	sk_X509_REVOKED_sort(X509_CRL_get_REVOKED(crl));
	*out = crl;
	crl = NULL;
	st = now >= info->next_update ? hsm_err(HSM_EAGAIN, "CRL expired %lld s ago (nextUpdate)",
	    (long long)(now - info->next_update)) : 0;
 out:
	if (st != 0 && st != HSM_EAGAIN)
		memset(info, 0, sizeof(*info));
	ASN1_INTEGER_free(num);
	X509_CRL_free(crl);
	return st;
}

int
crl_lists(X509_CRL *crl, X509 *cert)
{
	X509_REVOKED *r = NULL;

	if (crl == NULL || cert == NULL)
		return 0;
	/* by serial and issuer name (the entry's certificateIssuer in an indirect CRL) */
	return X509_CRL_get0_by_cert(crl, &r, cert) == 1;
}

int
crl_covers(X509_CRL *crl, X509 *ca, X509 *cert, X509 *issuer)
{
	const ASN1_BIT_STRING *a, *b;
	const ASN1_OCTET_STRING *akid, *skid;

	if (crl == NULL || ca == NULL || cert == NULL ||
	    X509_NAME_cmp(X509_get_issuer_name(cert), X509_CRL_get_issuer(crl)) != 0)
		return 0;
	if (issuer == NULL) {
		/* as X509_check_akid: a key identifier missing on either side is no mismatch */
		akid = X509_get0_authority_key_id(cert);
		skid = X509_get0_subject_key_id(ca);
		return akid == NULL || skid == NULL || ASN1_OCTET_STRING_cmp(akid, skid) == 0;
	}
	a = X509_get0_pubkey_bitstr(issuer);
	b = X509_get0_pubkey_bitstr(ca);
	return a != NULL && b != NULL && ASN1_STRING_cmp(a, b) == 0;
}

int
crl_verdict(X509_CRL *crl, X509 *ca, const struct crl_info *info, X509 *leaf, X509 *issuer,
    int64_t now, int refuse_stale)
{
	int err = X509_V_OK;

	if (crl == NULL || info == NULL || !crl_covers(crl, ca, leaf, issuer))
		return refuse_stale ? X509_V_ERR_UNABLE_TO_GET_CRL : X509_V_OK;
	if (now < info->this_update)
		err = X509_V_ERR_CRL_NOT_YET_VALID;
	else if (now >= info->next_update)
		err = X509_V_ERR_CRL_HAS_EXPIRED;
	if (err != X509_V_OK && refuse_stale)
		return err;
	return crl_lists(crl, leaf) ? X509_V_ERR_CERT_REVOKED : X509_V_OK;
}

/* An http:// URL of printable ASCII without spaces, at most URL_MAX characters. */
static int
url_ok(const char *url)
{
	size_t n;

	if (url == NULL || strncmp(url, "http://", 7) != 0 || (n = strlen(url)) <= 7 || n > URL_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (url[i] <= ' ' || url[i] > '~')
			return 0;
	return 1;
}

int
crl_cdp_ext(const char *url, X509_EXTENSION **out)
{
	CRL_DIST_POINTS *cdp = NULL;
	DIST_POINT *dp = NULL;
	GENERAL_NAME *gn = NULL;
	ASN1_IA5STRING *ia5 = NULL;

	*out = NULL;
	if (!url_ok(url))
		return hsm_err(HSM_EINVAL, "CRL URL must be http://... of printable characters, "
		    "at most %d", URL_MAX);
	if ((cdp = sk_DIST_POINT_new_null()) == NULL || (dp = DIST_POINT_new()) == NULL ||
	    (dp->distpoint = DIST_POINT_NAME_new()) == NULL ||
	    (dp->distpoint->name.fullname = GENERAL_NAMES_new()) == NULL ||
	    (gn = GENERAL_NAME_new()) == NULL || (ia5 = ASN1_IA5STRING_new()) == NULL ||
	    !ASN1_STRING_set(ia5, url, (int)strlen(url)))
		goto fail;
	dp->distpoint->type = 0;	/* fullName */
	GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(dp->distpoint->name.fullname, gn))
		goto fail;
	gn = NULL;
	if (!sk_DIST_POINT_push(cdp, dp))
		goto fail;
	dp = NULL;
	*out = X509V3_EXT_i2d(NID_crl_distribution_points, 0, cdp);
	CRL_DIST_POINTS_free(cdp);
	return *out != NULL ? 0 : hsm_err_ossl(HSM_ECRYPTO, "cRLDistributionPoints");
 fail:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	DIST_POINT_free(dp);
	CRL_DIST_POINTS_free(cdp);
	return hsm_err_ossl(HSM_ECRYPTO, "cRLDistributionPoints");
}

int
crl_cdp_url(X509 *cert, char *out, size_t cap)
{
	CRL_DIST_POINTS *cdp = X509_get_ext_d2i(cert, NID_crl_distribution_points, NULL, NULL);
	int st = HSM_ENOENT;

	if (cap > 0)
		out[0] = '\0';
	for (int i = 0; cdp != NULL && i < sk_DIST_POINT_num(cdp) && st == HSM_ENOENT; i++) {
		DIST_POINT *dp = sk_DIST_POINT_value(cdp, i);

		if (dp->distpoint == NULL || dp->distpoint->type != 0)
			continue;
		for (int j = 0; j < sk_GENERAL_NAME_num(dp->distpoint->name.fullname); j++) {
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, j);
			const ASN1_IA5STRING *u;
			size_t n;

			if (gn->type != GEN_URI)
				continue;
			u = gn->d.uniformResourceIdentifier;
			n = (size_t)ASN1_STRING_length(u);
			if (n < 8 || memcmp(ASN1_STRING_get0_data(u), "http://", 7) != 0 ||
			    memchr(ASN1_STRING_get0_data(u), '\0', n) != NULL)
				continue;
			if (n >= cap) {
				st = hsm_err(HSM_EINVAL, "CRL URL too long");
				break;
			}
			memcpy(out, ASN1_STRING_get0_data(u), n);
			out[n] = '\0';
			st = 0;
			break;
		}
	}
	CRL_DIST_POINTS_free(cdp);
	ERR_clear_error();
	return st;
}

int
crl_url_default(const char *listen, unsigned bound_port, char *out, size_t cap)
{
	const char *colon = listen != NULL ? strrchr(listen, ':') : NULL;
	char host[300], port[16];
	size_t hl;

	if (colon == NULL || (hl = (size_t)(colon - listen)) >= sizeof(host) ||
	    strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(port))
		return hsm_err(HSM_EINVAL, "listen %s is not HOST:PORT", listen ? listen : "(none)");
	memcpy(host, listen, hl);
	host[hl] = '\0';
	snprintf(port, sizeof(port), "%s", colon + 1);
	if (hl == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0 ||
	    strcmp(host, "*") == 0)
		return hsm_err(HSM_EINVAL, "listen %s is a wildcard address: set crl.url to the "
		    "address agents reach", listen);
	if (strcmp(port, "0") == 0) {
		if (bound_port == 0)
			return hsm_err(HSM_EINVAL, "listen %s has port 0: set crl.url (or let ca serve "
			    "publish the port it bound)", listen);
		snprintf(port, sizeof(port), "%u", bound_port);
	}
	if ((size_t)snprintf(out, cap, "http://%s:%s%s", host, port, CRL_PATH_DEFAULT) >= cap)
		return hsm_err(HSM_EINVAL, "CRL URL too long");
	return 0;
}

int
crl_url_path(const char *url, const char **path)
{
	const char *p;

	*path = NULL;
	if (!url_ok(url) || (p = strchr(url + 7, '/')) == NULL || p == url + 7)
		return hsm_err(HSM_EINVAL, "CRL URL %.100s: not http://HOST[:PORT]/PATH", url);
	*path = p;
	return 0;
}
