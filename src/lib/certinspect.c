/* certinspect.c - certificates and CSRs printed for people (see certinspect.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert.h"
#include "certinspect.h"
#include "err.h"
#include "nfprofile.h"
#include "spiffe.h"
#include "util.h"

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
	if (cert_pubkey_id(xpk, id) == 0)
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
	time_t now = time(NULL);
	int64_t nb, na;
	long long left;

	print_time(b, "not before", X509_get0_notBefore(x));
	BIO_printf(b, "\n");
	print_time(b, "not after", X509_get0_notAfter(x));
	if (cert_time_unix(X509_get0_notBefore(x), &nb) == 0 &&
	    cert_time_unix(X509_get0_notAfter(x), &na) == 0) {
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
		/* Both ends count (RFC 5280 4.1.2.5): what a profile's cap bounds. */
		if (na >= nb) {
			long long p = (long long)(na - nb) + 1;

			BIO_printf(b, "\n");
			field(b, "lifetime");
			BIO_printf(b, "%lld s (%lldd %lldh %lldm %llds)", p, p / 86400, p % 86400 / 3600,
			    p % 3600 / 60, p % 60);
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

/* A key identifier as colon-separated hex (at most 32 bytes shown). */
static void
print_keyid(BIO *b, const ASN1_OCTET_STRING *id)
{
	int n = id != NULL ? ASN1_STRING_length(id) : 0;

	for (int i = 0; i < n && i < 32; i++)
		BIO_printf(b, "%s%02X", i ? ":" : "", ASN1_STRING_get0_data(id)[i]);
	if (n > 32)
		BIO_printf(b, ":...");
	if (n == 0)
		BIO_printf(b, "(empty)");
}

/*
 * The extensions of the 3GPP NF profile beside the key usages (TS 33.310
 * 6.1.3c): key identifiers, CRL distribution points, nfTypes (RFC 9310),
 * each with its criticality.
 */
static void
print_ids_and_nf(BIO *b, X509 *x)
{
	AUTHORITY_KEYID *akid;
	ASN1_OCTET_STRING *skid;
	CRL_DIST_POINTS *cdp;
	struct nf_types nt;
	int crit = -1, i, k, n = 0;

	crit = -1;
	if ((skid = X509_get_ext_d2i(x, NID_subject_key_identifier, &crit, NULL)) != NULL) {
		field(b, "subj key id");
		print_keyid(b, skid);
		BIO_printf(b, "%s\n", crit_note(x, NID_subject_key_identifier));
		ASN1_OCTET_STRING_free(skid);
	} else if (crit != -1) {
		field(b, "subj key id");
		BIO_printf(b, "(malformed)\n");
	}
	crit = -1;
	if ((akid = X509_get_ext_d2i(x, NID_authority_key_identifier, &crit, NULL)) != NULL) {
		field(b, "auth key id");
		if (akid->keyid != NULL)
			print_keyid(b, akid->keyid);
		else
			BIO_printf(b, "(no key identifier)");
		BIO_printf(b, "%s\n", crit_note(x, NID_authority_key_identifier));
		AUTHORITY_KEYID_free(akid);
	} else if (crit != -1) {
		field(b, "auth key id");
		BIO_printf(b, "(malformed)\n");
	}
	crit = -1;
	if ((cdp = X509_get_ext_d2i(x, NID_crl_distribution_points, &crit, NULL)) != NULL) {
		for (i = 0; i < sk_DIST_POINT_num(cdp); i++) {
			DIST_POINT *dp = sk_DIST_POINT_value(cdp, i);

			if (dp->distpoint == NULL || dp->distpoint->type != 0)
				continue;
			for (k = 0; k < sk_GENERAL_NAME_num(dp->distpoint->name.fullname); k++) {
				GENERAL_NAME *g = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, k);

				if (g->type != GEN_URI)
					continue;
				field(b, "crl point");
				print_safe(b, ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
				    ASN1_STRING_length(g->d.uniformResourceIdentifier));
				BIO_printf(b, "%s\n", crit_note(x, NID_crl_distribution_points));
				n++;
			}
		}
		if (n == 0) {
			field(b, "crl point");
			BIO_printf(b, "(no URI)\n");
		}
		CRL_DIST_POINTS_free(cdp);
	} else if (crit != -1) {
		field(b, "crl point");
		BIO_printf(b, "(malformed)\n");
	}
	if ((i = nf_types_of_cert(x, &nt, &crit)) != HSM_ENOENT) {
		field(b, "nf types");
		if (i != 0) {
			BIO_printf(b, "(malformed)\n");
		} else {
			for (size_t j = 0; j < nt.n; j++) {
				BIO_printf(b, "%s", j ? ", " : "");
				print_safe(b, (const unsigned char *)nt.t[j], (int)strlen(nt.t[j]));
			}
			BIO_printf(b, "%s\n", crit ? " (critical)" : "");
		}
		hsm_err_clear();
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
	if (gens != NULL) {
		field(b, "alt names");
		BIO_printf(b, "%s\n", crit ? "critical" : "not critical");
	}
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
	print_ids_and_nf(b, x);
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
	if (cert_is_pem(buf, len)) {
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
