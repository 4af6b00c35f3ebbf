/*
 * sgx_testpki.c - a TEST fixture generator that plays Intel's SGX PKI and
 * a quoting enclave, so that tests can make SGX DCAP v3 quotes (ECDSA
 * P-256) with any report data that sgx_verify_quote() accepts when given
 * DIR/root.pem as insecure_test_root_pem. Never part of the hsmesh binary.
 *
 *   sgx_testpki init DIR [options]   a fresh test PKI, collateral, QE state
 *   sgx_testpki quote DIR            report data (hex) on stdin, quote on stdout
 *
 * Everything it makes is signed by a freshly generated root whose name
 * resembles Intel's but carries "TEST": it never verifies against Intel's
 * real root. The only private key kept is the attestation key
 * (DIR/attestation_key.pem); the CA, PCK and TCB signing keys live only
 * while `init` runs (the QE report, signed by the PCK key, is fixed per
 * DIR because the attestation key is).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "sgxquote.h"
#include "util.h"

#define PROG		"sgx_testpki"
#define STATE_FORMAT	"sgx_testpki-state-1"
#define STATE_MAX	(256 * 1024)
#define DAY		86400

/* Defaults of `init` (documented in --help). */
#define DEF_MRENCLAVE	"61fc715ee73a5a125564abc636c160cd77b261cd827f067f3bae277b8683608f"
#define DEF_MRSIGNER	"9e835483061018e266530c7191c702014a3a0a071708b41f5cb7d5afea654011"

/* The simulated platform: CPU SVN components, PCESVN, FMSPC, PCEID. */
static const uint8_t plat_cpusvn[16] = { 12, 12, 3, 3, 255, 255, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0 };
#define PLAT_PCESVN	13
static const uint8_t plat_fmspc[6] = { 0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00 };
static const uint8_t plat_pceid[2] = { 0x00, 0x00 };

/* The simulated quoting enclave (Intel's QE MRSIGNER and ISVPRODID). */
static const uint8_t qe_mrsigner[32] = {
	0x8c, 0x4f, 0x57, 0x75, 0xd7, 0x96, 0x50, 0x3e, 0x96, 0x13, 0x7f,
	0x77, 0xc6, 0x8a, 0x82, 0x9a, 0x00, 0x56, 0xac, 0x8d, 0xed, 0x70,
	0x14, 0x0b, 0x08, 0x1b, 0x09, 0x44, 0x90, 0xc5, 0x7b, 0xff };
static const uint8_t qe_vendor_id[16] = {
	0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d,
	0xb3, 0x95, 0x7f, 0x06, 0x07 };
#define QE_PRODID	1
#define QE_SVN		8
#define QE_AUTH_LEN	32

/* Report body offsets (sgxquote.c parse_body). */
#define RB_CPUSVN	0
#define RB_MISCSELECT	16
#define RB_ATTRIBUTES	48
#define RB_MRENCLAVE	64
#define RB_MRSIGNER	128
#define RB_PRODID	256
#define RB_ISVSVN	258
#define RB_REPORTDATA	320

#define ATTR_INIT	0x01
#define ATTR_MODE64BIT	0x04
#define ATTR_XFRM	0xe7

#define TEST_O		"TEST hsmesh sgx_testpki (not Intel Corporation)"

/* TCB statuses `--tcb` accepts, with the advisories put on that level. */
static const struct {
	const char	*name;
	const char	*adv[3];
} statuses[] = {
	{ "UpToDate", { NULL } },
	{ "SWHardeningNeeded", { "INTEL-SA-00615", NULL } },
	{ "ConfigurationNeeded", { "INTEL-SA-00289", NULL } },
	{ "ConfigurationAndSWHardeningNeeded",
	    { "INTEL-SA-00289", "INTEL-SA-00615", NULL } },
	{ "OutOfDate", { "INTEL-SA-00828", "INTEL-SA-00615", NULL } },
	{ "OutOfDateConfigurationNeeded",
	    { "INTEL-SA-00289", "INTEL-SA-00828", NULL } },
	{ "Revoked", { "INTEL-SA-00233", NULL } },
};
#define NSTATUSES	(sizeof(statuses) / sizeof(statuses[0]))

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: " PROG " init DIR [--mrenclave HEX64] [--mrsigner HEX64] [--prodid N]\n"
	    "                        [--isvsvn N] [--debug] [--tcb STATUS] [--days N]\n"
	    "       " PROG " quote DIR  < REPORT_DATA_HEX\n"
	    "       " PROG " --help\n"
	    "\n"
	    "TEST ONLY. Plays Intel's SGX PKI and a quoting enclave so tests can make SGX\n"
	    "DCAP v3 quotes (ECDSA P-256) with any report data. The quotes verify only with\n"
	    "DIR/root.pem passed as the INSECURE test root (hsmesh inspect QUOTE\n"
	    "--collateral DIR/collateral.json --insecure-test-root DIR/root.pem).\n"
	    "\n"
	    "init DIR  creates DIR (mode 0700; an existing DIR must be empty) with\n"
	    "  root.pem             self-signed test root (CN \"Intel SGX Root CA (TEST)\")\n"
	    "  collateral.json      TCB Info v3, QE Identity v2 (signed by \"Intel SGX TCB\n"
	    "                       Signing\"), root CA CRL and PCK CRL, empty\n"
	    "  state                PCK chain, signed QE report, header and enclave report\n"
	    "  attestation_key.pem  the QE attestation key (P-256, mode 0600)\n"
	    "  --mrenclave HEX64    enclave MRENCLAVE (default\n"
	    "                       " DEF_MRENCLAVE ")\n"
	    "  --mrsigner HEX64     enclave MRSIGNER (default\n"
	    "                       " DEF_MRSIGNER ")\n"
	    "  --prodid N           enclave ISVPRODID, 0-65535 (default 1)\n"
	    "  --isvsvn N           enclave ISVSVN, 0-65535 (default 1)\n"
	    "  --debug              set the DEBUG attribute (attributes 0700...; else 0500...)\n"
	    "  --tcb STATUS         platform TCB status (default UpToDate); advisories:\n"
	    "                         UpToDate                           none\n"
	    "                         SWHardeningNeeded                  INTEL-SA-00615\n"
	    "                         ConfigurationNeeded                INTEL-SA-00289\n"
	    "                         ConfigurationAndSWHardeningNeeded  INTEL-SA-00289,INTEL-SA-00615\n"
	    "                         OutOfDate                          INTEL-SA-00828,INTEL-SA-00615\n"
	    "                         OutOfDateConfigurationNeeded       INTEL-SA-00289,INTEL-SA-00828\n"
	    "                         Revoked                            INTEL-SA-00233\n"
	    "  --days N             collateral nextUpdate and certificate notAfter: now + N\n"
	    "                       days (default 30; 0: expired from the start, for tests\n"
	    "                       of collateral_grace); issueDate/CRL lastUpdate now - 1 h,\n"
	    "                       certificate notBefore now - 1 day\n"
	    "  Fixed platform: FMSPC 00906ED50000, PCEID 0000, PCESVN 13, CPUSVN\n"
	    "  0c0c0303ffff01000000000000000000; QE: MRSIGNER 8c4f5775...c57bff (Intel's),\n"
	    "  ISVPRODID 1, ISVSVN 8 (QE identity UpToDate); quote header QE SVN 8, PCE SVN 13.\n"
	    "\n"
	    "quote DIR  reads one line from standard input: exactly 128 hex digits (the\n"
	    "  64 bytes of report data), an optional newline; writes the binary v3 quote\n"
	    "  (certification data type 5, the PEM PCK chain) on standard output.\n"
	    "\n"
	    "Exit status: 0 done, 2 bad usage or input, 1 other failure (one line on stderr).\n");
}

/* ---- small helpers ---- */

static int
ossl_fail(const char *what)
{
	return hsm_err_ossl(HSM_ECRYPTO, what);
}

static void
put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void
put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Exactly 64 hex digits into 32 bytes. */
static int
parse_hex32(const char *s, uint8_t out[32])
{
	return strlen(s) == 64 && hsm_unhex(s, 64, out) == 0 ? 0 : -1;
}

/* A decimal number in [lo, hi], nothing else. */
static int
parse_num(const char *s, unsigned long lo, unsigned long hi, unsigned long *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || *v < lo || *v > hi)
		return -1;
	return 0;
}

/* Malloc'd upper-case hex. */
static char *
hex_upper(const uint8_t *p, size_t n)
{
	char *s = malloc(2 * n + 1);

	if (s == NULL)
		return NULL;
	hsm_hex(p, n, s);
	for (size_t i = 0; i < 2 * n; i++)
		if (s[i] >= 'a' && s[i] <= 'f')
			s[i] = (char)(s[i] - 'a' + 'A');
	return s;
}

/* Malloc'd lower-case hex. */
static char *
hex_lower(const uint8_t *p, size_t n)
{
	char *s = malloc(2 * n + 1);

	if (s != NULL)
		hsm_hex(p, n, s);
	return s;
}

static void
fmt_time(time_t t, char out[32])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- growable byte buffer and a minimal DER writer ---- */

struct buf {
	uint8_t	*p;
	size_t	 len, cap;
	int	 err;
};

static void
buf_put(struct buf *b, const void *p, size_t n)
{
	uint8_t *np;
	size_t cap;

	if (b->err)
		return;
	if (b->len + n > b->cap) {
		cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			b->err = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Tag, definite length, content. */
static void
der_tlv(struct buf *b, uint8_t tag, const uint8_t *v, size_t n)
{
	uint8_t h[4];
	size_t hl;

	h[0] = tag;
	if (n < 0x80) {
		h[1] = (uint8_t)n;
		hl = 2;
	} else if (n <= 0xff) {
		h[1] = 0x81;
		h[2] = (uint8_t)n;
		hl = 3;
	} else {
		h[1] = 0x82;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
		hl = 4;
	}
	if (n > 0xffff) {
		b->err = 1;
		return;
	}
	buf_put(b, h, hl);
	buf_put(b, v, n);
}

/* Wrap the content of in as one TLV appended to out; frees in. */
static void
der_wrap(struct buf *out, uint8_t tag, struct buf *in)
{
	if (in->err)
		out->err = 1;
	else
		der_tlv(out, tag, in->p, in->len);
	buf_free(in);
}

/* A non-negative INTEGER, minimal encoding. */
static void
der_uint(struct buf *b, unsigned v)
{
	uint8_t t[5];
	size_t n = 0;

	t[n++] = 0;
	for (int sh = 24; sh >= 0; sh -= 8)
		if (v >> sh || sh == 0)
			t[n++] = (uint8_t)(v >> sh);
	/* drop leading zero bytes that a following byte does not need */
	{
		size_t i = 0;

		while (i + 1 < n && t[i] == 0 && !(t[i + 1] & 0x80))
			i++;
		der_tlv(b, 0x02, t + i, n - i);
	}
}

/* DER body of 1.2.840.113741.1.13.1 */
static const uint8_t sgx_oid[] = { 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d,
    0x01, 0x0d, 0x01 };

/* OID 1.2.840.113741.1.13.1.a[.b] (a, b < 128; b 0 for none). */
static void
der_sgx_oid(struct buf *b, unsigned a, unsigned sub)
{
	uint8_t o[sizeof(sgx_oid) + 2];
	size_t n = sizeof(sgx_oid);

	memcpy(o, sgx_oid, n);
	o[n++] = (uint8_t)a;
	if (sub != 0)
		o[n++] = (uint8_t)sub;
	der_tlv(b, 0x06, o, n);
}

/*
 * The PCK certificate's SGX extension (Intel's PCK certificate profile):
 * PPID, TCB (16 CPU SVN components, PCESVN, CPUSVN), PCE-ID, FMSPC, SGX
 * type (0, standard).
 */
static int
sgx_extension(const uint8_t ppid[16], struct buf *out)
{
	struct buf seq = { 0 }, item = { 0 }, tcb = { 0 }, comp = { 0 };
	static const uint8_t zero = 0;

	/* PPID */
	der_sgx_oid(&item, 1, 0);
	der_tlv(&item, 0x04, ppid, 16);
	der_wrap(&seq, 0x30, &item);
	/* TCB */
	for (unsigned k = 1; k <= 18; k++) {
		der_sgx_oid(&comp, 2, k);
		if (k <= 16)
			der_uint(&comp, plat_cpusvn[k - 1]);
		else if (k == 17)
			der_uint(&comp, PLAT_PCESVN);
		else
			der_tlv(&comp, 0x04, plat_cpusvn, 16);
		der_wrap(&tcb, 0x30, &comp);
	}
	der_sgx_oid(&item, 2, 0);
	der_wrap(&item, 0x30, &tcb);
	der_wrap(&seq, 0x30, &item);
	/* PCE-ID */
	der_sgx_oid(&item, 3, 0);
	der_tlv(&item, 0x04, plat_pceid, 2);
	der_wrap(&seq, 0x30, &item);
	/* FMSPC */
	der_sgx_oid(&item, 4, 0);
	der_tlv(&item, 0x04, plat_fmspc, 6);
	der_wrap(&seq, 0x30, &item);
	/* SGX type: standard */
	der_sgx_oid(&item, 5, 0);
	der_tlv(&item, 0x0a, &zero, 1);
	der_wrap(&seq, 0x30, &item);

	der_wrap(out, 0x30, &seq);
	if (out->err) {
		buf_free(out);
		return hsm_err(HSM_ENOMEM, "SGX extension: out of memory");
	}
	return 0;
}

/* ---- keys and signatures ---- */

static EVP_PKEY *
p256_new(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	if (k == NULL)
		ossl_fail("P-256 key generation");
	return k;
}

/* ECDSA P-256/SHA-256 over msg; raw r || s. */
static int
sign_raw(EVP_PKEY *k, const void *msg, size_t len, uint8_t sig[64])
{
	EVP_MD_CTX *md = NULL;
	ECDSA_SIG *es = NULL;
	const BIGNUM *r, *s;
	const unsigned char *p;
	unsigned char der[128];
	size_t dl = sizeof(der);
	int rc = HSM_ECRYPTO;

	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) != 1 ||
	    EVP_DigestSign(md, der, &dl, msg, len) != 1) {
		rc = ossl_fail("ECDSA sign");
		goto out;
	}
	p = der;
	if ((es = d2i_ECDSA_SIG(NULL, &p, (long)dl)) == NULL) {
		rc = ossl_fail("ECDSA signature");
		goto out;
	}
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32) {
		rc = ossl_fail("ECDSA signature size");
		goto out;
	}
	rc = 0;
 out:
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return rc;
}

/* The public key as raw x || y. */
static int
pub_raw(EVP_PKEY *k, uint8_t xy[64])
{
	uint8_t pt[65];
	size_t n = 0;

	if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt,
	    sizeof(pt), &n) != 1 || n != 65 || pt[0] != 0x04)
		return ossl_fail("attestation public key");
	memcpy(xy, pt + 1, 64);
	return 0;
}

/* ---- certificates and CRLs ---- */

enum cert_kind { K_ROOT, K_CA, K_PCK, K_TCB };

static X509_NAME *
test_name(const char *cn)
{
	X509_NAME *n = X509_NAME_new();

	if (n == NULL ||
	    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8,
	    (const unsigned char *)TEST_O, -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(n, "L", MBSTRING_UTF8,
	    (const unsigned char *)"Santa Clara", -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(n, "ST", MBSTRING_UTF8,
	    (const unsigned char *)"CA", -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(n, "C", MBSTRING_ASC,
	    (const unsigned char *)"US", -1, -1, 0) != 1) {
		X509_NAME_free(n);
		return NULL;
	}
	return n;
}

/* SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 4.2.1.2 (1)). */
static ASN1_OCTET_STRING *
key_id(X509 *x)
{
	ASN1_OCTET_STRING *os;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int ml = 0;

	if (X509_pubkey_digest(x, EVP_sha1(), md, &ml) != 1 ||
	    (os = ASN1_OCTET_STRING_new()) == NULL)
		return NULL;
	if (ASN1_OCTET_STRING_set(os, md, (int)ml) != 1) {
		ASN1_OCTET_STRING_free(os);
		return NULL;
	}
	return os;
}

/* An AUTHORITY_KEYID naming issuer's key id. */
static AUTHORITY_KEYID *
akid_of(X509 *issuer)
{
	AUTHORITY_KEYID *a;

	if ((a = AUTHORITY_KEYID_new()) == NULL)
		return NULL;
	if ((a->keyid = key_id(issuer)) == NULL) {
		AUTHORITY_KEYID_free(a);
		return NULL;
	}
	return a;
}

static int
add_conf_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, NULL, x, NULL, NULL, 0);
	if ((e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return -1;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok == 1 ? 0 : -1;
}

static int
set_serial(X509 *x)
{
	uint8_t b[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -1;
	b[0] = (uint8_t)((b[0] & 0x7f) | 0x40);
	if ((bn = BN_bin2bn(b, sizeof(b), NULL)) == NULL)
		return -1;
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -1;
}

/*
 * A certificate for key named cn, issued by issuer/ikey (self-signed when
 * issuer is NULL), valid [from, to]. ppid is used for K_PCK only.
 */
static X509 *
make_cert(enum cert_kind kind, const char *cn, EVP_PKEY *key, X509 *issuer,
    EVP_PKEY *ikey, time_t from, time_t to, const uint8_t *ppid)
{
	X509 *x = NULL;
	X509_NAME *name = NULL;
	ASN1_OCTET_STRING *skid = NULL, *os = NULL;
	AUTHORITY_KEYID *akid = NULL;
	ASN1_OBJECT *obj = NULL;
	X509_EXTENSION *ext = NULL;
	struct buf der = { 0 };
	const char *bc, *ku;
	int ok = 0;

	if ((x = X509_new()) == NULL || (name = test_name(cn)) == NULL ||
	    X509_set_version(x, X509_VERSION_3) != 1 || set_serial(x) != 0 ||
	    X509_set_subject_name(x, name) != 1 ||
	    X509_set_issuer_name(x, issuer != NULL ?
	    X509_get_subject_name(issuer) : name) != 1 ||
	    ASN1_TIME_set(X509_getm_notBefore(x), from) == NULL ||
	    ASN1_TIME_set(X509_getm_notAfter(x), to) == NULL ||
	    X509_set_pubkey(x, key) != 1)
		goto out;
	if ((skid = key_id(x)) == NULL ||
	    (akid = akid_of(issuer != NULL ? issuer : x)) == NULL ||
	    X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0,
	    X509V3_ADD_DEFAULT) != 1 ||
	    X509_add1_ext_i2d(x, NID_subject_key_identifier, skid, 0,
	    X509V3_ADD_DEFAULT) != 1)
		goto out;
	switch (kind) {
	case K_ROOT:
		bc = "critical,CA:TRUE,pathlen:1";
		ku = "critical,keyCertSign,cRLSign";
		break;
	case K_CA:
		bc = "critical,CA:TRUE,pathlen:0";
		ku = "critical,keyCertSign,cRLSign";
		break;
	default:
		bc = "critical,CA:FALSE";
		ku = "critical,digitalSignature,nonRepudiation";
		break;
	}
	if (add_conf_ext(x, NID_key_usage, ku) != 0 ||
	    add_conf_ext(x, NID_basic_constraints, bc) != 0)
		goto out;
	if (kind == K_PCK) {
		if (sgx_extension(ppid, &der) != 0 ||
		    (obj = OBJ_txt2obj("1.2.840.113741.1.13.1", 1)) == NULL ||
		    (os = ASN1_OCTET_STRING_new()) == NULL ||
		    ASN1_OCTET_STRING_set(os, der.p, (int)der.len) != 1 ||
		    (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0,
		    os)) == NULL ||
		    X509_add_ext(x, ext, -1) != 1)
			goto out;
	}
	if (X509_sign(x, ikey, EVP_sha256()) <= 0)
		goto out;
	ok = 1;
 out:
	if (!ok) {
		ossl_fail(cn);
		X509_free(x);
		x = NULL;
	}
	buf_free(&der);
	X509_EXTENSION_free(ext);
	ASN1_OBJECT_free(obj);
	ASN1_OCTET_STRING_free(os);
	ASN1_OCTET_STRING_free(skid);
	AUTHORITY_KEYID_free(akid);
	X509_NAME_free(name);
	return x;
}

/* An empty v2 CRL by issuer, DER into *der (OPENSSL_malloc'd). */
static int
make_crl(X509 *issuer, EVP_PKEY *ikey, time_t last, time_t next,
    unsigned char **der, size_t *derlen)
{
	X509_CRL *crl = NULL;
	ASN1_TIME *t = NULL;
	ASN1_INTEGER *num = NULL;
	AUTHORITY_KEYID *akid = NULL;
	int n, rc = HSM_ECRYPTO;

	*der = NULL;
	*derlen = 0;
	if ((crl = X509_CRL_new()) == NULL ||
	    X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
	    X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)) != 1 ||
	    (t = ASN1_TIME_set(NULL, last)) == NULL ||
	    X509_CRL_set1_lastUpdate(crl, t) != 1 ||
	    ASN1_TIME_set(t, next) == NULL ||
	    X509_CRL_set1_nextUpdate(crl, t) != 1 ||
	    (num = ASN1_INTEGER_new()) == NULL ||
	    ASN1_INTEGER_set(num, 1) != 1 ||
	    X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) != 1 ||
	    (akid = akid_of(issuer)) == NULL ||
	    X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0,
	    0) != 1 ||
	    X509_CRL_sort(crl) != 1 ||
	    X509_CRL_sign(crl, ikey, EVP_sha256()) <= 0 ||
	    (n = i2d_X509_CRL(crl, der)) <= 0) {
		rc = ossl_fail("CRL");
		goto out;
	}
	*derlen = (size_t)n;
	rc = 0;
 out:
	AUTHORITY_KEYID_free(akid);
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
	return rc;
}

/* Append the PEM of x to b. */
static int
pem_append(struct buf *b, X509 *x)
{
	BIO *bio;
	char *p;
	long n;
	int rc = 0;

	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_X509(bio, x) != 1 ||
	    (n = BIO_get_mem_data(bio, &p)) <= 0)
		rc = ossl_fail("PEM");
	else
		buf_put(b, p, (size_t)n);
	BIO_free(bio);
	if (rc == 0 && b->err)
		rc = hsm_err(HSM_ENOMEM, "out of memory");
	return rc;
}

/* A NUL-terminated malloc'd PEM of the certificates (NULL-terminated list). */
static char *
pem_chain(X509 *const *certs)
{
	struct buf b = { 0 };

	for (size_t i = 0; certs[i] != NULL; i++)
		if (pem_append(&b, certs[i]) != 0) {
			buf_free(&b);
			return NULL;
		}
	buf_put(&b, "", 1);
	if (b.err) {
		buf_free(&b);
		hsm_err(HSM_ENOMEM, "out of memory");
		return NULL;
	}
	return (char *)b.p;
}

/* ---- JSON ---- */

/* Add a string member; on failure flag *bad. */
static void
j_str(struct json_object *o, const char *k, const char *v, int *bad)
{
	struct json_object *s;

	if (v == NULL || (s = json_object_new_string(v)) == NULL ||
	    json_object_object_add(o, k, s) != 0)
		*bad = 1;
}

static void
j_int(struct json_object *o, const char *k, int v, int *bad)
{
	struct json_object *i;

	if ((i = json_object_new_int(v)) == NULL ||
	    json_object_object_add(o, k, i) != 0)
		*bad = 1;
}

/* Add a malloc'd string member and free it. */
static void
j_own(struct json_object *o, const char *k, char *v, int *bad)
{
	j_str(o, k, v, bad);
	free(v);
}

static void
j_add(struct json_object *o, const char *k, struct json_object *v, int *bad)
{
	if (v == NULL || json_object_object_add(o, k, v) != 0) {
		json_object_put(v);
		*bad = 1;
	}
}

static int
status_index(const char *name)
{
	for (size_t i = 0; i < NSTATUSES; i++)
		if (strcmp(statuses[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* One tcbLevel: CPU SVNs comp, pcesvn, the status and its advisories. */
static struct json_object *
tcb_level(const uint8_t comp[16], unsigned pcesvn, const char *date,
    int st, int *bad)
{
	struct json_object *l, *tcb, *comps, *c, *adv;

	if ((l = json_object_new_object()) == NULL ||
	    (tcb = json_object_new_object()) == NULL) {
		json_object_put(l);
		*bad = 1;
		return NULL;
	}
	if ((comps = json_object_new_array()) == NULL)
		*bad = 1;
	for (size_t k = 0; comps != NULL && k < 16; k++) {
		if ((c = json_object_new_object()) == NULL) {
			*bad = 1;
			break;
		}
		j_int(c, "svn", comp[k], bad);
		if (json_object_array_add(comps, c) != 0) {
			json_object_put(c);
			*bad = 1;
		}
	}
	j_add(tcb, "sgxtcbcomponents", comps, bad);
	j_int(tcb, "pcesvn", (int)pcesvn, bad);
	j_add(l, "tcb", tcb, bad);
	j_str(l, "tcbDate", date, bad);
	j_str(l, "tcbStatus", statuses[st].name, bad);
	if (statuses[st].adv[0] != NULL) {
		if ((adv = json_object_new_array()) == NULL)
			*bad = 1;
		for (size_t i = 0; adv != NULL && statuses[st].adv[i] != NULL;
		    i++)
			if (json_object_array_add(adv, json_object_new_string(
			    statuses[st].adv[i])) != 0)
				*bad = 1;
		j_add(l, "advisoryIDs", adv, bad);
	}
	return l;
}

/*
 * TCB Info v3 whose tcbLevels put the platform's TCB on status st: a
 * higher UpToDate level first when st is not UpToDate, then the
 * platform's own level, then an older OutOfDate one.
 */
static struct json_object *
tcb_info_json(const char *issue, const char *next, int st)
{
	struct json_object *o, *levels;
	uint8_t comp[16];
	int bad = 0, ood = status_index("OutOfDate");

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	j_str(o, "id", "SGX", &bad);
	j_int(o, "version", 3, &bad);
	j_str(o, "issueDate", issue, &bad);
	j_str(o, "nextUpdate", next, &bad);
	j_own(o, "fmspc", hex_upper(plat_fmspc, 6), &bad);
	j_own(o, "pceId", hex_upper(plat_pceid, 2), &bad);
	j_int(o, "tcbType", 0, &bad);
	j_int(o, "tcbEvaluationDataNumber", 17, &bad);
	if ((levels = json_object_new_array()) == NULL)
		bad = 1;
	else {
		if (st != 0) {
			memcpy(comp, plat_cpusvn, 16);
			comp[0]++;
			if (json_object_array_add(levels, tcb_level(comp,
			    PLAT_PCESVN, "2025-05-14T00:00:00Z", 0, &bad)) != 0)
				bad = 1;
		}
		if (json_object_array_add(levels, tcb_level(plat_cpusvn,
		    PLAT_PCESVN, "2024-11-13T00:00:00Z", st, &bad)) != 0)
			bad = 1;
		memcpy(comp, plat_cpusvn, 16);
		comp[0]--;
		if (json_object_array_add(levels, tcb_level(comp,
		    PLAT_PCESVN - 1, "2023-02-15T00:00:00Z", ood, &bad)) != 0)
			bad = 1;
	}
	j_add(o, "tcbLevels", levels, &bad);
	if (bad) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* QE Identity v2 matching the simulated QE (UpToDate at QE_SVN). */
static struct json_object *
qe_identity_json(const char *issue, const char *next)
{
	struct json_object *o, *levels, *l, *tcb, *adv;
	int bad = 0;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	j_str(o, "id", "QE", &bad);
	j_int(o, "version", 2, &bad);
	j_str(o, "issueDate", issue, &bad);
	j_str(o, "nextUpdate", next, &bad);
	j_int(o, "tcbEvaluationDataNumber", 17, &bad);
	j_str(o, "miscselect", "00000000", &bad);
	j_str(o, "miscselectMask", "FFFFFFFF", &bad);
	j_str(o, "attributes", "11000000000000000000000000000000", &bad);
	j_str(o, "attributesMask", "FBFFFFFFFFFFFFFF0000000000000000", &bad);
	j_own(o, "mrsigner", hex_upper(qe_mrsigner, 32), &bad);
	j_int(o, "isvprodid", QE_PRODID, &bad);
	if ((levels = json_object_new_array()) == NULL)
		bad = 1;
	for (int i = 0; levels != NULL && i < 2; i++) {
		if ((l = json_object_new_object()) == NULL ||
		    (tcb = json_object_new_object()) == NULL) {
			json_object_put(l);
			bad = 1;
			break;
		}
		j_int(tcb, "isvsvn", i == 0 ? QE_SVN : QE_SVN - 2, &bad);
		j_add(l, "tcb", tcb, &bad);
		j_str(l, "tcbDate", i == 0 ? "2024-03-13T00:00:00Z" :
		    "2021-11-10T00:00:00Z", &bad);
		j_str(l, "tcbStatus", i == 0 ? "UpToDate" : "OutOfDate", &bad);
		if (i == 1) {
			if ((adv = json_object_new_array()) == NULL ||
			    json_object_array_add(adv,
			    json_object_new_string("INTEL-SA-00615")) != 0)
				bad = 1;
			j_add(l, "advisoryIDs", adv, &bad);
		}
		if (json_object_array_add(levels, l) != 0) {
			json_object_put(l);
			bad = 1;
		}
	}
	j_add(o, "tcbLevels", levels, &bad);
	if (bad) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* Serialize o compactly, sign the exact text with k; both returned. */
static int
sign_json(struct json_object *o, EVP_PKEY *k, char **text, char **sighex)
{
	const char *t;
	uint8_t sig[64];
	int rc;

	*text = *sighex = NULL;
	if ((t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE)) == NULL ||
	    (*text = strdup(t)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	if ((rc = sign_raw(k, *text, strlen(*text), sig)) != 0)
		return rc;
	if ((*sighex = hex_lower(sig, 64)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	return 0;
}

/* ---- files ---- */

/* Create dir (0700), or take an existing empty directory (chmod 0700). */
static int
prepare_dir(const char *dir)
{
	struct dirent *de;
	DIR *d;
	int empty = 1;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return hsm_err(HSM_EIO, "mkdir %s: %s", dir, strerror(errno));
	if ((d = opendir(dir)) == NULL)
		return hsm_err(HSM_EIO, "%s exists and is not a directory "
		    "(%s)", dir, strerror(errno));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			empty = 0;
	closedir(d);
	if (!empty)
		return hsm_err(HSM_EEXIST, "%s exists and is not empty", dir);
	if (chmod(dir, 0700) != 0)
		return hsm_err(HSM_EIO, "chmod %s: %s", dir, strerror(errno));
	return 0;
}

static int
write_in(const char *dir, const char *name, const void *p, size_t n,
    unsigned mode)
{
	char path[4096];
	int len;

	len = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (len < 0 || (size_t)len >= sizeof(path))
		return hsm_err(HSM_EINVAL, "path too long: %s", dir);
	return hsm_write_file_atomic(path, p, n, mode);
}

static int
write_json(const char *dir, const char *name, struct json_object *o,
    unsigned mode)
{
	const char *t;
	char *nl;
	size_t n;
	int rc;

	if ((t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
	    JSON_C_TO_STRING_NOSLASHESCAPE)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	n = strlen(t);
	if ((nl = malloc(n + 1)) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	memcpy(nl, t, n);
	nl[n] = '\n';
	rc = write_in(dir, name, nl, n + 1, mode);
	free(nl);
	return rc;
}

/* ---- init ---- */

struct init_opts {
	uint8_t		mrenclave[32];
	uint8_t		mrsigner[32];
	unsigned	prodid, isvsvn, days;
	int		debug;
	int		status;
};

static int
do_init(const char *dir, const struct init_opts *io)
{
	EVP_PKEY *rootk = NULL, *cak = NULL, *pckk = NULL, *tcbk = NULL,
	    *attk = NULL;
	X509 *root = NULL, *ca = NULL, *pck = NULL, *tcb = NULL;
	unsigned char *rcrl = NULL, *pcrl = NULL;
	size_t rcrl_len = 0, pcrl_len = 0;
	struct json_object *ti = NULL, *qi = NULL, *coll = NULL, *st = NULL;
	char *ti_text = NULL, *ti_sig = NULL, *qi_text = NULL, *qi_sig = NULL;
	char *rootpem = NULL, *pckchain = NULL, *tcbchain = NULL,
	    *crlchain = NULL;
	char issue[32], next[32];
	uint8_t ppid[16], attpub[64], qe_auth[QE_AUTH_LEN], hash[32];
	uint8_t qe_report[SGX_REPORT_BODY_LEN], qe_sig[64];
	uint8_t header[SGX_QUOTE_HEADER_LEN], body[SGX_REPORT_BODY_LEN];
	BIO *kb = NULL;
	char *kp;
	long kl;
	time_t now = time(NULL);
	time_t from = now - DAY, to = now + (time_t)io->days * DAY;
	int bad = 0, rc;

	if ((rc = prepare_dir(dir)) != 0)
		return rc;
	if ((rootk = p256_new()) == NULL || (cak = p256_new()) == NULL ||
	    (pckk = p256_new()) == NULL || (tcbk = p256_new()) == NULL ||
	    (attk = p256_new()) == NULL) {
		rc = HSM_ECRYPTO;
		goto out;
	}
	if (RAND_bytes(ppid, sizeof(ppid)) != 1) {
		rc = ossl_fail("RAND_bytes");
		goto out;
	}

	/* The PKI: root, PCK Processor CA, PCK leaf, TCB signing. */
	if ((root = make_cert(K_ROOT, "Intel SGX Root CA (TEST)", rootk, NULL,
	    rootk, from, to, NULL)) == NULL ||
	    (ca = make_cert(K_CA, "Intel SGX PCK Processor CA", cak, root,
	    rootk, from, to, NULL)) == NULL ||
	    (pck = make_cert(K_PCK, "Intel SGX PCK Certificate", pckk, ca,
	    cak, from, to, ppid)) == NULL ||
	    (tcb = make_cert(K_TCB, "Intel SGX TCB Signing", tcbk, root,
	    rootk, from, to, NULL)) == NULL) {
		rc = HSM_ECRYPTO;
		goto out;
	}
	if ((rc = make_crl(root, rootk, now - 3600, to, &rcrl,
	    &rcrl_len)) != 0 ||
	    (rc = make_crl(ca, cak, now - 3600, to, &pcrl, &pcrl_len)) != 0)
		goto out;
	{
		X509 *pl[] = { pck, ca, root, NULL };
		X509 *tl[] = { tcb, root, NULL };
		X509 *cl[] = { ca, root, NULL };
		X509 *rl[] = { root, NULL };

		if ((pckchain = pem_chain(pl)) == NULL ||
		    (tcbchain = pem_chain(tl)) == NULL ||
		    (crlchain = pem_chain(cl)) == NULL ||
		    (rootpem = pem_chain(rl)) == NULL) {
			rc = HSM_ECRYPTO;
			goto out;
		}
	}

	/* The QE report binding the attestation key, signed by the PCK key. */
	for (size_t i = 0; i < sizeof(qe_auth); i++)
		qe_auth[i] = (uint8_t)i;
	if ((rc = pub_raw(attk, attpub)) != 0)
		goto out;
	{
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		unsigned int hl = 0;
		int ok = md != NULL &&
		    EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
		    EVP_DigestUpdate(md, attpub, sizeof(attpub)) == 1 &&
		    EVP_DigestUpdate(md, qe_auth, sizeof(qe_auth)) == 1 &&
		    EVP_DigestFinal_ex(md, hash, &hl) == 1 && hl == 32;

		EVP_MD_CTX_free(md);
		if (!ok) {
			rc = ossl_fail("SHA-256");
			goto out;
		}
	}
	memset(qe_report, 0, sizeof(qe_report));
	memcpy(qe_report + RB_CPUSVN, plat_cpusvn, 16);
	qe_report[RB_ATTRIBUTES] = 0x11;	/* INIT | PROVISIONKEY */
	qe_report[RB_ATTRIBUTES + 8] = ATTR_XFRM;
	/* the QE's MRENCLAVE is not checked by QE Identity v2: any value */
	memcpy(qe_report + RB_MRENCLAVE, hash, 32);
	qe_report[RB_MRENCLAVE] ^= 0x5a;
	memcpy(qe_report + RB_MRSIGNER, qe_mrsigner, 32);
	put_le16(qe_report + RB_PRODID, QE_PRODID);
	put_le16(qe_report + RB_ISVSVN, QE_SVN);
	memcpy(qe_report + RB_REPORTDATA, hash, 32);
	if ((rc = sign_raw(pckk, qe_report, sizeof(qe_report), qe_sig)) != 0)
		goto out;

	/* Quote header and the enclave report template (report data 0). */
	memset(header, 0, sizeof(header));
	put_le16(header, 3);
	put_le16(header + 2, SGX_ATT_KEY_ECDSA_P256);
	put_le16(header + 8, QE_SVN);
	put_le16(header + 10, PLAT_PCESVN);
	memcpy(header + 12, qe_vendor_id, 16);
	if (RAND_bytes(header + 28, 16) != 1) {
		rc = ossl_fail("RAND_bytes");
		goto out;
	}
	memset(body, 0, sizeof(body));
	memcpy(body + RB_CPUSVN, plat_cpusvn, 16);
	body[RB_ATTRIBUTES] = ATTR_INIT | ATTR_MODE64BIT |
	    (io->debug ? SGX_ATTR_DEBUG : 0);
	body[RB_ATTRIBUTES + 8] = ATTR_XFRM;
	memcpy(body + RB_MRENCLAVE, io->mrenclave, 32);
	memcpy(body + RB_MRSIGNER, io->mrsigner, 32);
	put_le16(body + RB_PRODID, (uint16_t)io->prodid);
	put_le16(body + RB_ISVSVN, (uint16_t)io->isvsvn);

	/* Collateral. */
	fmt_time(now - 3600, issue);
	fmt_time(to, next);
	if ((ti = tcb_info_json(issue, next, io->status)) == NULL ||
	    (qi = qe_identity_json(issue, next)) == NULL) {
		rc = hsm_err(HSM_ENOMEM, "collateral: out of memory");
		goto out;
	}
	if ((rc = sign_json(ti, tcbk, &ti_text, &ti_sig)) != 0 ||
	    (rc = sign_json(qi, tcbk, &qi_text, &qi_sig)) != 0)
		goto out;
	if ((coll = json_object_new_object()) == NULL) {
		rc = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	j_str(coll, "tcb_info", ti_text, &bad);
	j_str(coll, "tcb_info_signature", ti_sig, &bad);
	j_str(coll, "tcb_info_issuer_chain", tcbchain, &bad);
	j_str(coll, "qe_identity", qi_text, &bad);
	j_str(coll, "qe_identity_signature", qi_sig, &bad);
	j_str(coll, "qe_identity_issuer_chain", tcbchain, &bad);
	j_own(coll, "root_ca_crl", hex_lower(rcrl, rcrl_len), &bad);
	j_own(coll, "pck_crl", hex_lower(pcrl, pcrl_len), &bad);
	j_str(coll, "pck_crl_issuer_chain", crlchain, &bad);

	/* Private state for `quote`. */
	if ((st = json_object_new_object()) == NULL)
		bad = 1;
	else {
		char t[32];

		j_str(st, "format", STATE_FORMAT, &bad);
		j_str(st, "warning", "TEST ONLY: sgx_testpki state, not a "
		    "real SGX platform", &bad);
		fmt_time(now, t);
		j_str(st, "created", t, &bad);
		j_own(st, "header", hex_lower(header, sizeof(header)), &bad);
		j_own(st, "enclave_report", hex_lower(body, sizeof(body)),
		    &bad);
		j_own(st, "qe_report", hex_lower(qe_report, sizeof(qe_report)),
		    &bad);
		j_own(st, "qe_report_signature", hex_lower(qe_sig, 64), &bad);
		j_own(st, "qe_auth_data", hex_lower(qe_auth, sizeof(qe_auth)),
		    &bad);
		j_own(st, "attestation_public_key", hex_lower(attpub, 64),
		    &bad);
		j_str(st, "pck_chain", pckchain, &bad);
	}
	if (bad) {
		rc = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}

	if ((kb = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PrivateKey(kb, attk, NULL, NULL, 0, NULL,
	    NULL) != 1 || (kl = BIO_get_mem_data(kb, &kp)) <= 0) {
		rc = ossl_fail("attestation key PEM");
		goto out;
	}
	if ((rc = write_in(dir, "attestation_key.pem", kp, (size_t)kl,
	    0600)) != 0 ||
	    (rc = write_in(dir, "root.pem", rootpem, strlen(rootpem),
	    0644)) != 0 ||
	    (rc = write_json(dir, "collateral.json", coll, 0644)) != 0 ||
	    (rc = write_json(dir, "state", st, 0600)) != 0)
		goto out;
	rc = 0;
 out:
	BIO_free(kb);
	json_object_put(ti);
	json_object_put(qi);
	json_object_put(coll);
	json_object_put(st);
	free(ti_text);
	free(ti_sig);
	free(qi_text);
	free(qi_sig);
	free(rootpem);
	free(pckchain);
	free(tcbchain);
	free(crlchain);
	OPENSSL_free(rcrl);
	OPENSSL_free(pcrl);
	X509_free(root);
	X509_free(ca);
	X509_free(pck);
	X509_free(tcb);
	EVP_PKEY_free(rootk);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(pckk);
	EVP_PKEY_free(tcbk);
	EVP_PKEY_free(attk);
	return rc;
}

static int
init_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "mrenclave", required_argument, NULL, 'e' },
		{ "mrsigner", required_argument, NULL, 's' },
		{ "prodid", required_argument, NULL, 'p' },
		{ "isvsvn", required_argument, NULL, 'v' },
		{ "debug", no_argument, NULL, 'd' },
		{ "tcb", required_argument, NULL, 't' },
		{ "days", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct init_opts io;
	unsigned long n;
	int ch, rc;

	memset(&io, 0, sizeof(io));
	hsm_unhex(DEF_MRENCLAVE, 64, io.mrenclave);
	hsm_unhex(DEF_MRSIGNER, 64, io.mrsigner);
	io.prodid = 1;
	io.isvsvn = 1;
	io.days = 30;
	io.status = 0;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'e':
		case 's':
			if (parse_hex32(optarg, ch == 'e' ? io.mrenclave :
			    io.mrsigner) != 0) {
				fprintf(stderr, PROG ": --%s needs exactly 64 "
				    "hex digits\n", ch == 'e' ? "mrenclave" :
				    "mrsigner");
				return 2;
			}
			break;
		case 'p':
		case 'v':
			if (parse_num(optarg, 0, 65535, &n) != 0) {
				fprintf(stderr, PROG ": --%s needs a number "
				    "0-65535\n", ch == 'p' ? "prodid" :
				    "isvsvn");
				return 2;
			}
			if (ch == 'p')
				io.prodid = (unsigned)n;
			else
				io.isvsvn = (unsigned)n;
			break;
		case 'd':
			io.debug = 1;
			break;
		case 't':
			if ((io.status = status_index(optarg)) < 0) {
				fprintf(stderr, PROG ": --tcb: unknown status "
				    "'%s' (see --help)\n", optarg);
				return 2;
			}
			break;
		case 'D':
			if (parse_num(optarg, 0, 36500, &n) != 0) {
				fprintf(stderr, PROG ": --days needs a number "
				    "0-36500\n");
				return 2;
			}
			io.days = (unsigned)n;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, PROG ": init: unknown option or missing "
			    "argument '%s' (see --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, PROG ": usage: " PROG " init DIR [options] "
		    "(see --help)\n");
		return 2;
	}
	if ((rc = do_init(argv[optind], &io)) != 0) {
		fprintf(stderr, PROG ": init %s: %s\n", argv[optind],
		    hsm_err_msg(rc));
		return 1;
	}
	return 0;
}

/* ---- quote ---- */

/* A hex string member of exactly n bytes. */
static int
state_hex(struct json_object *st, const char *k, uint8_t *out, size_t n)
{
	struct json_object *v;
	const char *s;

	if (!json_object_object_get_ex(st, k, &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    (s = json_object_get_string(v)) == NULL || strlen(s) != 2 * n ||
	    hsm_unhex(s, 2 * n, out) != 0)
		return hsm_err(HSM_EPROTO, "state: member '%s' is not %zu "
		    "bytes of hex", k, n);
	return 0;
}

/* Exactly 128 hex digits and an optional newline on stdin. */
static int
read_report_data(uint8_t rd[64])
{
	char in[131];
	size_t n = 0, r;

	while (n < sizeof(in) &&
	    (r = fread(in + n, 1, sizeof(in) - n, stdin)) > 0)
		n += r;
	if (ferror(stdin))
		return hsm_err(HSM_EIO, "cannot read standard input");
	if (n == 129 && in[128] == '\n')
		n = 128;
	if (n != 128 || hsm_unhex(in, 128, rd) != 0)
		return hsm_err(HSM_EINVAL, "standard input must be one line of "
		    "exactly 128 hex digits (64 bytes of report data)");
	return 0;
}

static int
do_quote(const char *dir, const uint8_t rd[64])
{
	char path[4096];
	uint8_t *sbuf = NULL, *kbuf = NULL;
	size_t slen = 0, klen = 0, chainlen, siglen;
	struct json_tokener *tok = NULL;
	struct json_object *st = NULL, *v;
	EVP_PKEY *attk = NULL;
	BIO *b = NULL;
	const char *chain;
	uint8_t header[SGX_QUOTE_HEADER_LEN], body[SGX_REPORT_BODY_LEN];
	uint8_t qe_report[SGX_REPORT_BODY_LEN], qe_sig[64];
	uint8_t qe_auth[QE_AUTH_LEN], attpub[64], sig[64], tmp[6];
	struct buf q = { 0 };
	int rc;

	if (snprintf(path, sizeof(path), "%s/state", dir) >= (int)sizeof(path))
		return hsm_err(HSM_EINVAL, "path too long");
	if ((rc = hsm_read_file(path, STATE_MAX, &sbuf, &slen)) != 0)
		return rc;
	if ((tok = json_tokener_new()) == NULL) {
		rc = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	st = json_tokener_parse_ex(tok, (const char *)sbuf, (int)slen);
	if (st == NULL || !json_object_is_type(st, json_type_object) ||
	    !json_object_object_get_ex(st, "format", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), STATE_FORMAT) != 0) {
		rc = hsm_err(HSM_EPROTO, "%s is not an " PROG " state file",
		    path);
		goto out;
	}
	if ((rc = state_hex(st, "header", header, sizeof(header))) != 0 ||
	    (rc = state_hex(st, "enclave_report", body, sizeof(body))) != 0 ||
	    (rc = state_hex(st, "qe_report", qe_report,
	    sizeof(qe_report))) != 0 ||
	    (rc = state_hex(st, "qe_report_signature", qe_sig, 64)) != 0 ||
	    (rc = state_hex(st, "qe_auth_data", qe_auth,
	    sizeof(qe_auth))) != 0)
		goto out;
	if (!json_object_object_get_ex(st, "pck_chain", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    (chainlen = (size_t)json_object_get_string_len(v)) == 0) {
		rc = hsm_err(HSM_EPROTO, "state: member 'pck_chain' missing");
		goto out;
	}
	chain = json_object_get_string(v);

	snprintf(path, sizeof(path), "%s/attestation_key.pem", dir);
	if ((rc = hsm_read_file(path, 64 * 1024, &kbuf, &klen)) != 0)
		goto out;
	if ((b = BIO_new_mem_buf(kbuf, (int)klen)) == NULL ||
	    (attk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)) == NULL) {
		rc = ossl_fail(path);
		goto out;
	}
	if ((rc = pub_raw(attk, attpub)) != 0)
		goto out;

	/* header || enclave report body, signed by the attestation key */
	memcpy(body + RB_REPORTDATA, rd, 64);
	buf_put(&q, header, sizeof(header));
	buf_put(&q, body, sizeof(body));
	if (q.err) {
		rc = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = sign_raw(attk, q.p, q.len, sig)) != 0)
		goto out;

	/* signature data */
	siglen = 64 + 64 + SGX_REPORT_BODY_LEN + 64 + 2 + QE_AUTH_LEN +
	    2 + 4 + chainlen;
	put_le32(tmp, (uint32_t)siglen);
	buf_put(&q, tmp, 4);
	buf_put(&q, sig, 64);
	buf_put(&q, attpub, 64);
	buf_put(&q, qe_report, sizeof(qe_report));
	buf_put(&q, qe_sig, 64);
	put_le16(tmp, QE_AUTH_LEN);
	buf_put(&q, tmp, 2);
	buf_put(&q, qe_auth, sizeof(qe_auth));
	put_le16(tmp, SGX_CERT_PCK_CHAIN);
	put_le32(tmp + 2, (uint32_t)chainlen);
	buf_put(&q, tmp, 6);
	buf_put(&q, chain, chainlen);
	if (q.err) {
		rc = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	if (fwrite(q.p, 1, q.len, stdout) != q.len || fflush(stdout) != 0) {
		rc = hsm_err(HSM_EIO, "writing the quote: %s", strerror(errno));
		goto out;
	}
	rc = 0;
 out:
	buf_free(&q);
	BIO_free(b);
	EVP_PKEY_free(attk);
	json_object_put(st);
	if (tok != NULL)
		json_tokener_free(tok);
	if (kbuf != NULL)
		OPENSSL_cleanse(kbuf, klen);
	free(kbuf);
	free(sbuf);
	return rc;
}

static int
quote_main(int argc, char **argv)
{
	uint8_t rd[64];
	int rc;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, PROG ": usage: " PROG " quote DIR < "
		    "REPORT_DATA_HEX (see --help)\n");
		return 2;
	}
	if ((rc = read_report_data(rd)) != 0) {
		fprintf(stderr, PROG ": quote: %s\n", hsm_err_msg(rc));
		return 2;
	}
	if ((rc = do_quote(argv[1], rd)) != 0) {
		fprintf(stderr, PROG ": quote %s: %s\n", argv[1],
		    hsm_err_msg(rc));
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "init") == 0)
		return init_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "quote") == 0)
		return quote_main(argc - 1, argv + 1);
	fprintf(stderr, PROG ": unknown command '%s' (try '" PROG
	    " --help')\n", argv[1]);
	return 2;
}
