/* sgxident.c - the SgxIdentity certificate extension (see sgxident.h). */
#include <stdio.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "evtype.h"
#include "sgxident.h"
#include "util.h"

static int
push_any(STACK_OF(ASN1_TYPE) *sk, int type, const void *v, int len)
{
	ASN1_TYPE *t = ASN1_TYPE_new();
	ASN1_STRING *str = NULL;
	ASN1_INTEGER *i = NULL;

	if (t == NULL)
		return 0;
	if (type == V_ASN1_INTEGER) {
		if ((i = ASN1_INTEGER_new()) == NULL || !ASN1_INTEGER_set(i, *(const long *)v))
			goto fail;
		ASN1_TYPE_set(t, type, i);
	} else {
		if ((str = ASN1_STRING_type_new(type)) == NULL || !ASN1_STRING_set(str, v, len))
			goto fail;
		ASN1_TYPE_set(t, type, str);
	}
	if (sk_ASN1_TYPE_push(sk, t) > 0)
		return 1;
	ASN1_TYPE_free(t);
	return 0;
 fail:
	ASN1_INTEGER_free(i);
	ASN1_STRING_free(str);
	ASN1_TYPE_free(t);
	return 0;
}

int
sgxident_ext(const struct sgx_verify_result *v, X509_EXTENSION **out)
{
	const struct sgx_report_body *b = &v->enclave;
	STACK_OF(ASN1_TYPE) *sk = sk_ASN1_TYPE_new_null();
	const char *status = sgx_tcb_status_name(v->tcb_status);
	long prod = b->isv_prod_id, svn = b->isv_svn;
	unsigned char *der = NULL;
	ASN1_OCTET_STRING *os = NULL;
	ASN1_OBJECT *oid = NULL;
	int n, r = HSM_ECRYPTO;

	*out = NULL;
	if (sk == NULL || !push_any(sk, V_ASN1_OCTET_STRING, b->mrenclave, 32) ||
	    !push_any(sk, V_ASN1_OCTET_STRING, b->mrsigner, 32) ||
	    !push_any(sk, V_ASN1_INTEGER, &prod, 0) || !push_any(sk, V_ASN1_INTEGER, &svn, 0) ||
	    !push_any(sk, V_ASN1_OCTET_STRING, b->attributes, 16) ||
	    !push_any(sk, V_ASN1_UTF8STRING, status, (int)strlen(status)) ||
	    (n = i2d_ASN1_SEQUENCE_ANY(sk, &der)) <= 0 ||
	    (os = ASN1_OCTET_STRING_new()) == NULL || !ASN1_OCTET_STRING_set(os, der, n) ||
	    (oid = OBJ_txt2obj(HSM_OID_SGX_IDENTITY, 1)) == NULL ||
	    (*out = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, os)) == NULL)
		r = hsm_err_ossl(HSM_ECRYPTO, "encoding the SGX identity extension");
	else
		r = 0;
	sk_ASN1_TYPE_pop_free(sk, ASN1_TYPE_free);
	OPENSSL_free(der);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(oid);
	return r;
}

int
sgxident_describe(X509 *x, char *buf, size_t cap)
{
	ASN1_OBJECT *oid = OBJ_txt2obj(HSM_OID_SGX_IDENTITY, 1);
	X509_EXTENSION *ext;
	const ASN1_OCTET_STRING *os;
	const unsigned char *p;
	STACK_OF(ASN1_TYPE) *sk = NULL;
	ASN1_TYPE *t[6];
	static const int want[6] = { V_ASN1_OCTET_STRING, V_ASN1_OCTET_STRING, V_ASN1_INTEGER,
	    V_ASN1_INTEGER, V_ASN1_OCTET_STRING, V_ASN1_UTF8STRING };
	char mre[65], mrs[65];
	int idx, r = HSM_EPROTO;

	if (oid == NULL)
		return HSM_ECRYPTO;
	idx = X509_get_ext_by_OBJ(x, oid, -1);
	ASN1_OBJECT_free(oid);
	if (idx < 0)
		return 0;
	ext = X509_get_ext(x, idx);
	os = X509_EXTENSION_get_data(ext);
	p = ASN1_STRING_get0_data(os);
	if ((sk = d2i_ASN1_SEQUENCE_ANY(NULL, &p, ASN1_STRING_length(os))) == NULL ||
	    p != ASN1_STRING_get0_data(os) + ASN1_STRING_length(os) || sk_ASN1_TYPE_num(sk) != 6)
		goto out;
	for (int i = 0; i < 6; i++)
		if ((t[i] = sk_ASN1_TYPE_value(sk, i))->type != want[i])
			goto out;
	for (int i = 0; i < ASN1_STRING_length(t[5]->value.utf8string); i++) {
		unsigned char ch = ASN1_STRING_get0_data(t[5]->value.utf8string)[i];

		if (ch < 0x20 || ch > 0x7e)
			goto out;	/* never echo control bytes to a terminal */
	}
	if (ASN1_STRING_length(t[0]->value.octet_string) != 32 ||
	    ASN1_STRING_length(t[1]->value.octet_string) != 32 ||
	    ASN1_STRING_length(t[4]->value.octet_string) != 16)
		goto out;
	snprintf(buf, cap, "MRENCLAVE %s, MRSIGNER %s, ISV product %ld, SVN %ld, %s enclave, TCB %.*s",
	    hsm_hex(ASN1_STRING_get0_data(t[0]->value.octet_string), 32, mre),
	    hsm_hex(ASN1_STRING_get0_data(t[1]->value.octet_string), 32, mrs),
	    ASN1_INTEGER_get(t[2]->value.integer), ASN1_INTEGER_get(t[3]->value.integer),
	    (ASN1_STRING_get0_data(t[4]->value.octet_string)[0] & SGX_ATTR_DEBUG) ? "DEBUG" :
	    "production", ASN1_STRING_length(t[5]->value.utf8string) > 40 ? 40 :
	    ASN1_STRING_length(t[5]->value.utf8string),
	    (const char *)ASN1_STRING_get0_data(t[5]->value.utf8string));
	r = 1;
 out:
	sk_ASN1_TYPE_pop_free(sk, ASN1_TYPE_free);
	return r;
}
