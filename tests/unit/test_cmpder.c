/*
 * test_cmpder.c - the DER walks over real CMP messages made by the
 * `openssl cmp` client (against its built-in mock server), and over
 * broken ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "attest.h"
#include "cmpder.h"
#include "err.h"
#include "keytypes.h"
#include "util.h"

static char dir[64];

static int
setup(void **state)
{
	char cmd[2048];

	snprintf(dir, sizeof(dir), "/tmp/hsmesh-cmpder.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(cmd, sizeof(cmd),
	    "cd %s && openssl ecparam -name prime256v1 -genkey -noout -out k.pem && "
	    "openssl ecparam -name prime256v1 -genkey -noout -out k2.pem && "
	    "openssl req -x509 -new -key k.pem -subj /CN=mock -days 2 -out mock.pem "
	    "-addext keyUsage=digitalSignature,keyCertSign && "
	    "openssl cmp -cmd ir -use_mock_srv -srv_ref ref -srv_secret pass:s -ref joinref -secret pass:s "
	    "-srv_cert mock.pem -srv_key k.pem -newkey k2.pem -subject /CN=x -reqout ir.der -certout c.pem >/dev/null 2>&1; "
	    "openssl req -new -key k2.pem -subj /CN=leaf -out leaf.csr && "
	    "printf 'subjectKeyIdentifier=hash\\nkeyUsage=digitalSignature\\n' > ext && "
	    "openssl x509 -req -in leaf.csr -CA mock.pem -CAkey k.pem -days 1 -out leaf.pem -extfile ext 2>/dev/null && "
	    /* a self-signed signer is not sent in extraCerts: use a leaf of the mock CA */
	    "openssl cmp -cmd kur -use_mock_srv -srv_cert mock.pem -srv_key k.pem -cert leaf.pem -key k2.pem "
	    "-newkey k.pem -reqout kur.der -certout c2.pem -unprotected_errors >/dev/null 2>&1; true", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
load(const char *name, uint8_t **buf, size_t *len)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(hsm_read_file(path, 1 << 20, buf, len), 0);
}

static void
mac_protected_ir(void **state)
{
	uint8_t *buf, spki[HSM_MAX_SPKI];
	size_t len, spkilen;
	struct cmp_der_info di;
	BIO *b;
	OSSL_CMP_MSG *msg;
	OSSL_CRMF_MSGS *crms;
	unsigned char *tder = NULL;
	int n;
	(void)crms;

	load("ir.der", &buf, &len);
	assert_int_equal(cmp_der_parse(buf, len, &di), 0);
	assert_true(di.has_protection_alg);
	assert_string_equal(di.protection_alg, CMP_OID_PBM);
	assert_int_equal(di.sender_kid_len, 7);
	assert_memory_equal(di.sender_kid, "joinref", 7);
	assert_null(di.first_extra_cert);
	assert_false(di.implicit_confirm);	/* explicit certConf: the transaction goes on */

	/* The template's key is k2.pem's public key. */
	b = BIO_new_mem_buf(buf, (int)len);
	msg = d2i_OSSL_CMP_MSG_bio(b, NULL);
	assert_non_null(msg);
	BIO_free(b);
	{
		/* Reach the CertTemplate through the public CRMF API. */
		char path[128];
		FILE *f;
		EVP_PKEY *k2;
		unsigned char *kder = NULL;
		int kn;
		OSSL_CRMF_MSG *crm;
		const unsigned char *p;
		const OSSL_CMP_PKIHEADER *h = OSSL_CMP_MSG_get0_header(msg);

		assert_non_null(h);
		/* i2d the whole message, find the CertReqMessages via re-parse of body [0] */
		/* (the server gets crm from the library; here we take it from d2i of the body) */
		snprintf(path, sizeof(path), "%s/k2.pem", dir);
		f = fopen(path, "r");
		k2 = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		kn = i2d_PUBKEY(k2, &kder);
		/* Walk: PKIMessage -> body [0] -> CertReqMessages SEQ -> CertReqMsg SEQ -> CertRequest SEQ */
		p = buf;
		{
			long l;
			int tag, cls;
			const unsigned char *q = buf, *end = buf + len;

			ASN1_get_object(&q, &l, &tag, &cls, (long)(end - q));	/* PKIMessage */
			ASN1_get_object(&q, &l, &tag, &cls, (long)(end - q));	/* header */
			q += l;
			ASN1_get_object(&q, &l, &tag, &cls, (long)(end - q));	/* body [0] */
			assert_int_equal(cls, V_ASN1_CONTEXT_SPECIFIC);
			p = q;
			crms = d2i_OSSL_CRMF_MSGS(NULL, &p, l);
			assert_non_null(crms);
			crm = sk_OSSL_CRMF_MSG_value(crms, 0);
			n = i2d_OSSL_CRMF_CERTTEMPLATE(OSSL_CRMF_MSG_get0_tmpl(crm), &tder);
			assert_true(n > 0);
			assert_int_equal(cmp_der_template_spki(tder, (size_t)n, spki, sizeof(spki), &spkilen), 0);
			assert_int_equal(spkilen, (size_t)kn);
			assert_memory_equal(spki, kder, (size_t)kn);
			/* too small a buffer, truncated template */
			assert_int_equal(cmp_der_template_spki(tder, (size_t)n, spki, 10, &spkilen), HSM_EPROTO);
			assert_int_equal(cmp_der_template_spki(tder, (size_t)n - 1, spki, sizeof(spki), &spkilen), HSM_EPROTO);
			sk_OSSL_CRMF_MSG_pop_free(crms, OSSL_CRMF_MSG_free);
		}
		OPENSSL_free(kder);
		OPENSSL_free(tder);
		EVP_PKEY_free(k2);
	}
	OSSL_CMP_MSG_free(msg);
	free(buf);
}

static void
signed_kur_has_extra_cert(void **state)
{
	uint8_t *buf, *mock;
	size_t len, mlen;
	struct cmp_der_info di;
	const unsigned char *p;
	X509 *x, *m;
	char path[128];
	FILE *f;

	load("kur.der", &buf, &len);
	assert_int_equal(cmp_der_parse(buf, len, &di), 0);
	assert_true(di.has_protection_alg);
	assert_string_equal(di.protection_alg, "1.2.840.10045.4.3.2");	/* ecdsa-with-SHA256 */
	assert_non_null(di.first_extra_cert);
	p = di.first_extra_cert;
	x = d2i_X509(NULL, &p, (long)di.first_extra_cert_len);
	assert_non_null(x);
	snprintf(path, sizeof(path), "%s/leaf.pem", dir);
	f = fopen(path, "r");
	m = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_int_equal(X509_cmp(x, m), 0);	/* the signer's own certificate */
	X509_free(x);
	X509_free(m);
	(void)mock;
	(void)mlen;
	free(buf);
}

static void
broken_messages(void **state)
{
	uint8_t *buf;
	size_t len;
	struct cmp_der_info di;
	static const uint8_t junk[] = { 0x30, 0x80, 0x30, 0x00, 0x00, 0x00 };	/* indefinite length */

	load("ir.der", &buf, &len);
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(cmp_der_parse(buf, cut, &di), HSM_EPROTO);
	buf[1] ^= 0x7f;		/* outer length now lies */
	assert_int_equal(cmp_der_parse(buf, len, &di), HSM_EPROTO);
	assert_int_equal(cmp_der_parse(junk, sizeof(junk), &di), HSM_EPROTO);
	free(buf);
}

/* The header fields an answer echoes, and what a MAC check would cost. */
static void
header_fields_and_pbm_cost(void **state)
{
	uint8_t *buf;
	size_t len;
	struct cmp_der_info di;
	BIO *b;
	OSSL_CMP_MSG *msg;
	const ASN1_OCTET_STRING *tid;

	load("ir.der", &buf, &len);
	assert_int_equal(cmp_der_parse(buf, len, &di), 0);
	/* `openssl cmp` asks for 500 PBM iterations. */
	assert_int_equal(di.pbm_iterations, 500);
	assert_non_null(di.sender);
	assert_true(di.sender_len > 2);
	assert_non_null(di.sender_nonce);
	assert_int_equal(di.sender_nonce_len, 16);
	b = BIO_new_mem_buf(buf, (int)len);
	msg = d2i_OSSL_CMP_MSG_bio(b, NULL);
	BIO_free(b);
	assert_non_null(msg);
	tid = OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(msg));
	assert_non_null(di.transaction_id);
	assert_int_equal(di.transaction_id_len, (size_t)tid->length);
	assert_memory_equal(di.transaction_id, tid->data, di.transaction_id_len);
	OSSL_CMP_MSG_free(msg);
	free(buf);
	/* A signed message has no PBM cost. */
	load("kur.der", &buf, &len);
	assert_int_equal(cmp_der_parse(buf, len, &di), 0);
	assert_int_equal(di.pbm_iterations, -1);
	free(buf);
}

/* An unprotected error answer: OpenSSL reads it as one, with our words, for the request's transaction. */
static void
unprotected_error_answer(void **state)
{
	uint8_t *buf, *err = NULL;
	size_t len, elen = 0;
	struct cmp_der_info di, ei;
	X509_NAME *ca = X509_NAME_new();
	BIO *b;
	OSSL_CMP_MSG *req, *rsp;
	const ASN1_OCTET_STRING *t1, *t2, *rn;

	assert_non_null(ca);
	assert_true(X509_NAME_add_entry_by_txt(ca, "CN", MBSTRING_ASC, (const unsigned char *)"the CA",
	    -1, -1, 0));
	load("ir.der", &buf, &len);
	assert_int_equal(cmp_der_parse(buf, len, &di), 0);
	assert_int_equal(cmp_der_error_new(&di, ca, OSSL_CMP_PKIFAILUREINFO_systemFailure,
	    "CA keyholder restarting", &err, &elen), 0);
	b = BIO_new_mem_buf(buf, (int)len);
	req = d2i_OSSL_CMP_MSG_bio(b, NULL);
	BIO_free(b);
	b = BIO_new_mem_buf(err, (int)elen);
	rsp = d2i_OSSL_CMP_MSG_bio(b, NULL);
	BIO_free(b);
	assert_non_null(req);
	assert_non_null(rsp);
	assert_int_equal(OSSL_CMP_MSG_get_bodytype(rsp), 23);	/* error */
	t1 = OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(req));
	t2 = OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(rsp));
	assert_int_equal(ASN1_OCTET_STRING_cmp(t1, t2), 0);
	/* recipNonce is the request's senderNonce, and nothing protects it. */
	rn = OSSL_CMP_HDR_get0_recipNonce(OSSL_CMP_MSG_get0_header(rsp));
	assert_non_null(rn);
	assert_int_equal((size_t)rn->length, di.sender_nonce_len);
	assert_memory_equal(rn->data, di.sender_nonce, di.sender_nonce_len);
	assert_int_equal(cmp_der_parse(err, elen, &ei), 0);
	assert_false(ei.has_protection_alg);
	assert_non_null(memmem(err, elen, "CA keyholder restarting", 23));
	/* Its own parse is well formed too: the answer to it answers the same transaction. */
	assert_int_equal(ei.transaction_id_len, di.transaction_id_len);
	OSSL_CMP_MSG_free(req);
	OSSL_CMP_MSG_free(rsp);
	free(err);
	/* A request without a sender or nonces still gets a well-formed answer. */
	memset(&ei, 0, sizeof(ei));
	assert_int_equal(cmp_der_error_new(&ei, ca, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "x",
	    &err, &elen), 0);
	b = BIO_new_mem_buf(err, (int)elen);
	rsp = d2i_OSSL_CMP_MSG_bio(b, NULL);
	BIO_free(b);
	assert_non_null(rsp);
	OSSL_CMP_MSG_free(rsp);
	free(err);
	assert_int_equal(cmp_der_error_new(&di, ca, 99, "x", &err, &elen), HSM_EINVAL);
	X509_NAME_free(ca);
	free(buf);
}

/* OpenSSL's client builds the request; the transfer callback keeps its DER. */
static uint8_t *captured;
static int captured_len;

static OSSL_CMP_MSG *
capture_cb(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
	unsigned char *der = NULL;

	OPENSSL_free(captured);
	captured_len = i2d_OSSL_CMP_MSG(req, &der);
	captured = der;
	return NULL;	/* "no answer": the client gives up */
}

static void
geninfo_quote(void **state)
{
	OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509_NAME *n = X509_NAME_new();
	STACK_OF(OSSL_CMP_ITAV) *sk = sk_OSSL_CMP_ITAV_new_null();
	OSSL_CMP_ITAV *itav, *bare;
	uint8_t quote[1500];
	struct cmp_der_info di;

	for (size_t i = 0; i < sizeof(quote); i++)
		quote[i] = (uint8_t)(i * 7);
	assert_non_null(ctx);
	assert_non_null(k);
	/* the shared ITAV helpers: a valueless one and one with octets, found by type */
	assert_non_null(bare = cmp_itav_new(HSM_OID_ATTEST_NONCE, V_ASN1_OCTET_STRING, NULL, 0));
	assert_null(OSSL_CMP_ITAV_get0_value(bare));
	assert_non_null(itav = cmp_itav_new(HSM_OID_SGX_QUOTE, V_ASN1_OCTET_STRING, quote,
	    sizeof(quote)));
	assert_true(sk_OSSL_CMP_ITAV_push(sk, bare) > 0);
	assert_null(cmp_itav_find(sk, HSM_OID_SGX_QUOTE));
	assert_ptr_equal(cmp_itav_find(sk, HSM_OID_ATTEST_NONCE), bare);
	sk_OSSL_CMP_ITAV_pop_free(sk, OSSL_CMP_ITAV_free);
	assert_null(cmp_itav_new("not an oid", V_ASN1_OCTET_STRING, quote, 1));
	assert_int_equal(OSSL_CMP_CTX_push0_geninfo_ITAV(ctx, itav), 1);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"x", -1, -1, 0);
	assert_int_equal(OSSL_CMP_CTX_set1_subjectName(ctx, n), 1);
	assert_int_equal(OSSL_CMP_CTX_set1_recipient(ctx, n), 1);
	assert_int_equal(OSSL_CMP_CTX_set0_newPkey(ctx, 1, k), 1);
	assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_UNPROTECTED_SEND, 1), 1);
	/* implicitConfirm is a second generalInfo entry, before ours */
	assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1), 1);
	assert_int_equal(OSSL_CMP_CTX_set_transfer_cb(ctx, capture_cb), 1);
	assert_null(OSSL_CMP_exec_certreq(ctx, OSSL_CMP_IR, NULL));
	ERR_clear_error();
	assert_non_null(captured);

	assert_int_equal(cmp_der_parse_geninfo(captured, (size_t)captured_len, HSM_OID_SGX_QUOTE,
	    &di), 0);
	assert_non_null(di.geninfo_value);
	assert_int_equal(di.geninfo_value_len, sizeof(quote));
	assert_memory_equal(di.geninfo_value, quote, sizeof(quote));
	assert_false(di.has_protection_alg);
	/* another OID: nothing; no OID asked: nothing */
	assert_int_equal(cmp_der_parse_geninfo(captured, (size_t)captured_len, HSM_OID_ATTEST_NONCE,
	    &di), 0);
	assert_null(di.geninfo_value);
	assert_int_equal(cmp_der_parse(captured, (size_t)captured_len, &di), 0);
	assert_null(di.geninfo_value);
	/* the implicitConfirm entry is seen whatever was asked (a transaction of one message) */
	assert_true(di.implicit_confirm);
	/* every truncation is refused or parsed within bounds, never read beyond */
	for (int cut = 1; cut < captured_len; cut += 37)
		if (cmp_der_parse_geninfo(captured, (size_t)cut, HSM_OID_SGX_QUOTE, &di) == 0 &&
		    di.geninfo_value != NULL)
			assert_true(di.geninfo_value + di.geninfo_value_len <= captured + cut);
	OPENSSL_free(captured);
	captured = NULL;
	X509_NAME_free(n);
	OSSL_CMP_CTX_free(ctx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mac_protected_ir),
		cmocka_unit_test(signed_kur_has_extra_cert),
		cmocka_unit_test(broken_messages),
		cmocka_unit_test(header_fields_and_pbm_cost),
		cmocka_unit_test(unprotected_error_answer),
		cmocka_unit_test(geninfo_quote),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
