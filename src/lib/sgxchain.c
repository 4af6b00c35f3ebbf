/* sgxchain.c - SGX DCAP certificate chains and collateral dates (sgxchain.h). */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "cert.h"
#include "err.h"
#include "sgxchain.h"
#include "util.h"

/*
 * Intel SGX Root CA (production), valid 2018-05-21 to 2049-12-31.
 * SHA-256 of the DER: 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3
 */
static const char intel_sgx_root_pem[] =
"-----BEGIN CERTIFICATE-----\n"
"MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw\n"
"aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv\n"
"cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ\n"
"BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG\n"
"A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0\n"
"aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT\n"
"AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7\n"
"1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB\n"
"uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ\n"
"MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50\n"
"ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV\n"
"Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI\n"
"KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg\n"
"AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=\n"
"-----END CERTIFICATE-----\n";

static const char *const pck_leaf_cn[] = { "Intel SGX PCK Certificate", NULL };
static const char *const pck_ca_cn[] = { "Intel SGX PCK Processor CA",
    "Intel SGX PCK Platform CA", NULL };
static const char *const tcb_cn[] = { "Intel SGX TCB Signing", NULL };

/* What each kind of chain must be. */
static const struct {
	const char		*name;	/* first word of every reason */
	const char		*what;	/* the chain, in "... has N certificates" */
	const char		*prefix; /* of expiry item names */
	size_t			 len;
	const char		*leaf;	/* role of the first certificate */
	const char *const	*leaf_cn;
	const char		*leaf_is; /* "... is not <leaf_is>" */
	const char		*order;
} kinds[] = {
	[SGX_CHAIN_PCK_QUOTE] = { "pck_chain", "the quote's chain", "pck_chain",
	    3, "leaf", pck_leaf_cn, "an Intel SGX PCK Certificate",
	    "PCK leaf, intermediate CA, root" },
	[SGX_CHAIN_PCK_COLLATERAL] = { "pck_chain", "the collateral's PCK chain",
	    "pck_chain", 3, "leaf", pck_leaf_cn, "an Intel SGX PCK Certificate",
	    "PCK leaf, intermediate CA, root" },
	[SGX_CHAIN_TCB_INFO] = { "tcb_info chain", "the issuer chain", "tcb_info",
	    2, "signer", tcb_cn, "Intel SGX TCB Signing",
	    "Intel SGX TCB Signing, root" },
	[SGX_CHAIN_QE_IDENTITY] = { "qe_identity chain", "the issuer chain",
	    "qe_identity", 2, "signer", tcb_cn, "Intel SGX TCB Signing",
	    "Intel SGX TCB Signing, root" },
	[SGX_CHAIN_PCK_CRL] = { "pck_crl chain", "the issuer chain", "pck_crl",
	    2, "CA", pck_ca_cn, "an Intel SGX PCK Processor or Platform CA",
	    "PCK Processor or Platform CA, root" },
};

const char *
sgx_chain_name(enum sgx_chain_kind k)
{
	return kinds[k].name;
}

void
sgx_cert_free(struct sgx_cert *c)
{
	if (c == NULL)
		return;
	X509_free(c->x);
	OPENSSL_free(c->der);
	memset(c, 0, sizeof(*c));
}

void
sgx_chain_free(struct sgx_chain *ch)
{
	if (ch == NULL)
		return;
	for (size_t i = 0; i < ch->n; i++)
		sgx_cert_free(&ch->c[i]);
	memset(ch, 0, sizeof(*ch));
}

/* The PEM certificates of pem[0..len); name starts every reason. */
static int
chain_read(const void *pem, size_t len, const char *name, struct sgx_chain *ch)
{
	BIO *b = NULL;
	char *pname = NULL, *header = NULL;
	unsigned char *data = NULL;
	const unsigned char *p;
	long dlen;
	unsigned long e;
	int rc;

	memset(ch, 0, sizeof(*ch));
	if (pem == NULL || len == 0 || len > INT_MAX)
		return hsm_err(HSM_EPROTO, "%s: no certificate", name);
	if ((b = BIO_new_mem_buf(pem, (int)len)) == NULL)
		return hsm_err(HSM_ENOMEM, "%s: out of memory", name);
	for (;;) {
		if (PEM_read_bio(b, &pname, &header, &data, &dlen) != 1) {
			e = ERR_peek_last_error();
			if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
			    ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
				break;	/* no further PEM block */
			rc = hsm_err(HSM_EPROTO, "%s: malformed PEM after %zu "
			    "certificate%s", name, ch->n, ch->n == 1 ? "" : "s");
			goto out;
		}
		if (strcmp(pname, "CERTIFICATE") != 0 || header[0] != '\0') {
			rc = hsm_err(HSM_EPROTO, "%s: PEM block %zu is a "
			    "'%.40s', not a plain CERTIFICATE", name, ch->n + 1,
			    pname);
			goto out;
		}
		if (ch->n == SGX_CHAIN_MAX) {
			ch->too_long = 1;
			break;
		}
		p = data;
		if ((ch->c[ch->n].x = d2i_X509(NULL, &p, dlen)) == NULL ||
		    p != data + dlen) {
			X509_free(ch->c[ch->n].x);
			ch->c[ch->n].x = NULL;
			rc = hsm_err(HSM_EPROTO, "%s: certificate %zu is not "
			    "one DER X.509 certificate", name, ch->n + 1);
			goto out;
		}
		ch->c[ch->n].der = data;
		ch->c[ch->n].der_len = (size_t)dlen;
		data = NULL;
		ch->n++;
		OPENSSL_free(pname);
		OPENSSL_free(header);
		pname = header = NULL;
	}
	if (ch->n == 0) {
		rc = hsm_err(HSM_EPROTO, "%s: no PEM certificate", name);
		goto out;
	}
	rc = 0;
 out:
	ERR_clear_error();
	OPENSSL_free(pname);
	OPENSSL_free(header);
	OPENSSL_free(data);
	BIO_free(b);
	if (rc != 0)
		sgx_chain_free(ch);
	return rc;
}

int
sgx_chain_read(const void *pem, size_t len, enum sgx_chain_kind k,
    struct sgx_chain *ch)
{
	char name[64];

	snprintf(name, sizeof(name), "%s: %s", kinds[k].name, kinds[k].what);
	return chain_read(pem, len, name, ch);
}

static int
self_issued(X509 *x)
{
	return X509_NAME_cmp(X509_get_subject_name(x),
	    X509_get_issuer_name(x)) == 0;
}

/* x's signature verifies with signer's public key. */
static int
signed_by(X509 *x, X509 *signer)
{
	EVP_PKEY *k = X509_get0_pubkey(signer);
	int ok = k != NULL && X509_verify(x, k) == 1;

	ERR_clear_error();
	return ok;
}

int
sgx_trust_root(const char *pem, struct sgx_cert *out)
{
	struct sgx_chain ch;
	int rc;

	memset(out, 0, sizeof(*out));
	if (pem == NULL)
		pem = intel_sgx_root_pem;
	if ((rc = chain_read(pem, strlen(pem), "sgx verify: trust root",
	    &ch)) != 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", hsm_err_msg(rc));
		return hsm_err(HSM_ECONFIG, "%s", why);
	}
	if (ch.n != 1 || ch.too_long || !self_issued(ch.c[0].x) ||
	    !signed_by(ch.c[0].x, ch.c[0].x)) {
		sgx_chain_free(&ch);
		return hsm_err(HSM_ECONFIG, "sgx verify: the trust root is not "
		    "one self-signed certificate");
	}
	*out = ch.c[0];
	memset(&ch.c[0], 0, sizeof(ch.c[0]));
	return 0;
}

/* x's CN is one of cns. */
static int
cn_in(X509 *x, const char *const *cns)
{
	char cn[128];

	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x),
	    NID_commonName, cn, sizeof(cn)) <= 0)
		return 0;
	for (size_t i = 0; cns[i] != NULL; i++)
		if (strcmp(cn, cns[i]) == 0)
			return 1;
	return 0;
}

int
sgx_chain_check(const struct sgx_chain *ch, enum sgx_chain_kind k,
    const struct sgx_cert *trusted)
{
	const char *name = kinds[k].name, *role, *prole;
	const struct sgx_cert *root;
	size_t len = kinds[k].len;
	EVP_PKEY *a, *b;
	int same_key;

	if (ch->too_long || ch->n != len)
		return hsm_err(HSM_EPERM, "%s: %s has %s%zu certificate%s, not "
		    "%zu", name, kinds[k].what, ch->too_long ? "more than " : "",
		    ch->n, ch->n == 1 && !ch->too_long ? "" : "s", len);
	root = &ch->c[len - 1];
	if (!self_issued(root->x)) {
		for (size_t i = 0; i + 1 < len; i++)
			if (self_issued(ch->c[i].x))
				return hsm_err(HSM_EPERM, "%s: not in the order "
				    "%s", name, kinds[k].order);
		return hsm_err(HSM_EPERM, "%s: no root (the last certificate "
		    "is not self-issued)", name);
	}
	for (size_t i = 0; i + 1 < len; i++)
		if (self_issued(ch->c[i].x))
			return hsm_err(HSM_EPERM, "%s: more than one "
			    "self-issued certificate", name);
	if (!signed_by(root->x, root->x))
		return hsm_err(HSM_EPERM, "%s: root signature does not verify",
		    name);
	if (root->der_len != trusted->der_len ||
	    CRYPTO_memcmp(root->der, trusted->der, root->der_len) != 0) {
		a = X509_get0_pubkey(root->x);
		b = X509_get0_pubkey(trusted->x);
		same_key = a != NULL && b != NULL && EVP_PKEY_eq(a, b) == 1;
		ERR_clear_error();
		return hsm_err(HSM_EPERM, "%s: root is not the trusted root%s",
		    name, same_key ? " (same key, another certificate)" : "");
	}
	/* Down from the root, so that a wrong intermediate is named as such. */
	for (size_t i = len - 1; i-- > 0;) {
		role = i == 0 ? kinds[k].leaf : "intermediate";
		prole = i + 2 == len ? "root" : "intermediate";
		if (X509_NAME_cmp(X509_get_issuer_name(ch->c[i].x),
		    X509_get_subject_name(ch->c[i + 1].x)) != 0)
			return hsm_err(HSM_EPERM, "%s: %s is not issued by the %s",
			    name, role, prole);
		if (!signed_by(ch->c[i].x, ch->c[i + 1].x))
			return hsm_err(HSM_EPERM, "%s: %s signature does not "
			    "verify under the %s", name, role, prole);
		if (i > 0 && !cn_in(ch->c[i].x, pck_ca_cn))
			return hsm_err(HSM_EPERM, "%s: intermediate is not an "
			    "Intel SGX PCK Processor or Platform CA", name);
		if (i == 0 && !cn_in(ch->c[i].x, kinds[k].leaf_cn))
			return hsm_err(HSM_EPERM, "%s: %s is not %s", name, role,
			    kinds[k].leaf_is);
	}
	return 0;
}

X509 *
sgx_chain_leaf(const struct sgx_chain *ch)
{
	return ch->n > 0 ? ch->c[0].x : NULL;
}

/* The verification time and grace, for grace_cb. */
struct grace {
	time_t	at;
	int64_t	grace;
};

/*
 * Accept a certificate or CRL that expired less than the grace ago
 * (sgx_expiry_decide() has already refused anything older); any other
 * error stands.
 */
static int
grace_cb(int ok, X509_STORE_CTX *ctx)
{
	const struct grace *g = X509_STORE_CTX_get_app_data(ctx);
	const ASN1_TIME *end = NULL;
	X509_CRL *crl;
	X509 *x;
	int64_t t;

	if (ok || g == NULL || g->grace <= 0)
		return ok;
	switch (X509_STORE_CTX_get_error(ctx)) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		if ((x = X509_STORE_CTX_get_current_cert(ctx)) != NULL)
			end = X509_get0_notAfter(x);
		break;
	case X509_V_ERR_CRL_HAS_EXPIRED:
		if ((crl = X509_STORE_CTX_get0_current_crl(ctx)) != NULL)
			end = X509_CRL_get0_nextUpdate(crl);
		break;
	default:
		return 0;
	}
	if (cert_time_unix(end, &t) != 0 || t > g->at)
		return 0;
	return (int64_t)g->at - (int64_t)t < g->grace;
}

int
sgx_chain_verify_path(const struct sgx_chain *ch, enum sgx_chain_kind k,
    const struct sgx_cert *trusted, X509_CRL *crl1, X509_CRL *crl2,
    time_t at, int64_t grace)
{
	const char *name = kinds[k].name;
	STACK_OF(X509) *untrusted = NULL;
	X509_STORE *st = NULL;
	X509_STORE_CTX *ctx = NULL;
	X509_VERIFY_PARAM *vp;
	struct grace g = { at, grace };
	int rc = HSM_ECRYPTO;

	if (ch->n == 0)
		return hsm_err(HSM_EPERM, "%s: no certificate", name);
	if ((untrusted = sk_X509_new_null()) == NULL)
		goto ossl;
	for (size_t i = 0; i < ch->n; i++)
		if (sk_X509_push(untrusted, ch->c[i].x) <= 0)
			goto ossl;
	if ((st = X509_STORE_new()) == NULL ||
	    X509_STORE_add_cert(st, trusted->x) != 1 ||
	    (crl1 != NULL && X509_STORE_add_crl(st, crl1) != 1) ||
	    (crl2 != NULL && X509_STORE_add_crl(st, crl2) != 1) ||
	    (ctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(ctx, st, ch->c[0].x, untrusted) != 1 ||
	    X509_STORE_CTX_set_app_data(ctx, &g) != 1)
		goto ossl;
	X509_STORE_CTX_set_verify_cb(ctx, grace_cb);
	vp = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_time(vp, at);
	X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_CRL_CHECK |
	    X509_V_FLAG_CRL_CHECK_ALL | X509_V_FLAG_X509_STRICT);
	if (X509_verify_cert(ctx) != 1) {
		rc = hsm_err(HSM_EPERM, "%s: certificate %d: %s", name,
		    X509_STORE_CTX_get_error_depth(ctx),
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	rc = 0;
	goto out;
 ossl:
	rc = hsm_err_ossl(HSM_ECRYPTO, name);
 out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	sk_X509_free(untrusted);	/* the certificates stay ch's */
	return rc;
}

/* ---- collateral dates ---- */

void
sgx_expiry_init(struct sgx_expiry *x, time_t at, int64_t grace)
{
	memset(x, 0, sizeof(*x));
	x->at = at;
	x->grace = grace;
}

int
sgx_expiry_note(struct sgx_expiry *x, const char *item, const char *field,
    time_t t)
{
	if (x->n == SGX_EXPIRY_ITEMS)
		return hsm_err(HSM_EINVAL, "collateral: too many dated items");
	snprintf(x->e[x->n].item, sizeof(x->e[x->n].item), "%s", item);
	x->e[x->n].field = field;
	x->e[x->n].t = t;
	x->n++;
	return 0;
}

int
sgx_expiry_note_chain(struct sgx_expiry *x, const struct sgx_chain *ch,
    enum sgx_chain_kind k)
{
	char item[48];
	int64_t t;
	int rc;

	for (size_t i = 0; i < ch->n; i++) {
		if (ch->n == kinds[k].len && i + 1 == ch->n)
			snprintf(item, sizeof(item), "root");
		else if (ch->n == kinds[k].len)
			snprintf(item, sizeof(item), "%s %s", kinds[k].prefix,
			    i == 0 ? kinds[k].leaf : "intermediate");
		else
			snprintf(item, sizeof(item), "%s certificate %zu",
			    kinds[k].prefix, i + 1);
		if (cert_time_unix(X509_get0_notAfter(ch->c[i].x), &t) != 0)
			return hsm_err(HSM_EPROTO, "%s: %s notAfter unreadable",
			    kinds[k].name, item);
		if ((rc = sgx_expiry_note(x, item, "notAfter", t)) != 0)
			return rc;
	}
	return 0;
}

char *
sgx_fmt_span(int64_t s, char *out, size_t cap)
{
	int64_t d, h, m;

	if (s < 0)
		s = 0;
	d = s / 86400;
	h = s / 3600 % 24;
	m = s / 60 % 60;
	s %= 60;
	if (d > 0)
		snprintf(out, cap, "%lldd %lldh %lldm %llds", (long long)d,
		    (long long)h, (long long)m, (long long)s);
	else if (h > 0)
		snprintf(out, cap, "%lldh %lldm %llds", (long long)h,
		    (long long)m, (long long)s);
	else if (m > 0)
		snprintf(out, cap, "%lldm %llds", (long long)m, (long long)s);
	else
		snprintf(out, cap, "%llds", (long long)s);
	return out;
}

int
sgx_expiry_decide(const struct sgx_expiry *x, time_t *earliest,
    int64_t *by, char *items, size_t cap)
{
	char when[HSM_TIME_STR], ago[48], grace[48];
	size_t worst = SIZE_MAX, len = 0;
	const char *it;

	*earliest = 0;
	*by = 0;
	if (cap > 0)
		items[0] = '\0';
	for (size_t i = 0; i < x->n; i++) {
		if (*earliest == 0 || x->e[i].t < *earliest)
			*earliest = x->e[i].t;
		if (x->e[i].t <= x->at &&
		    (worst == SIZE_MAX || x->e[i].t < x->e[worst].t))
			worst = i;
	}
	if (worst == SIZE_MAX)
		return 0;
	*by = (int64_t)x->at - (int64_t)x->e[worst].t;
	if (*by >= x->grace) {
		*by = 0;
		return hsm_err(HSM_EPOLICY, "%s: collateral expired (%s %s, %s "
		    "before the verification time; collateral_grace %s)",
		    x->e[worst].item, x->e[worst].field,
		    hsm_fmt_time(x->e[worst].t, when),
		    sgx_fmt_span((int64_t)x->at - (int64_t)x->e[worst].t, ago,
		    sizeof(ago)), sgx_fmt_span(x->grace, grace, sizeof(grace)));
	}
	/* Within the grace: name every expired item once. */
	for (size_t i = 0; i < x->n; i++) {
		if (x->e[i].t > x->at)
			continue;
		it = x->e[i].item;
		for (size_t j = 0; j < i; j++)
			if (x->e[j].t <= x->at &&
			    strcmp(x->e[j].item, it) == 0)
				goto next;
		if (len + (len ? 1 : 0) + strlen(it) + 1 <= cap)
			len += (size_t)snprintf(items + len, cap - len, "%s%s",
			    len ? "," : "", it);
 next:
		;
	}
	return 0;
}
