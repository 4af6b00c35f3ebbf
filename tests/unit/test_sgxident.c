/* test_sgxident.c - the SgxIdentity certificate extension: encode, describe, refuse malformed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "err.h"
#include "evtype.h"
#include "sgxident.h"

static void
identity_extension(void **state)
{
	struct sgx_verify_result v;
	X509_EXTENSION *ext = NULL;
	X509 *x = X509_new();
	char line[300];

	memset(&v, 0, sizeof(v));
	memset(v.enclave.mrenclave, 0x11, 32);
	memset(v.enclave.mrsigner, 0x22, 32);
	v.enclave.isv_prod_id = 65535;
	v.enclave.isv_svn = 9;
	v.enclave.attributes[0] = SGX_ATTR_DEBUG;
	v.tcb_status = SGX_TCB_SW_HARDENING_NEEDED;
	assert_int_equal(sgxident_describe(x, line, sizeof(line)), 0);
	assert_int_equal(sgxident_ext(&v, &ext), 0);
	assert_false(X509_EXTENSION_get_critical(ext));
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	assert_int_equal(sgxident_describe(x, line, sizeof(line)), 1);
	assert_string_equal(line, "MRENCLAVE 1111111111111111111111111111111111111111111111111111111111111111, "
	    "MRSIGNER 2222222222222222222222222222222222222222222222222222222222222222, "
	    "ISV product 65535, SVN 9, DEBUG enclave, TCB SWHardeningNeeded");
	X509_EXTENSION_free(ext);
	X509_free(x);

	/* malformed: the right OID over other bytes */
	x = X509_new();
	assert_non_null(x);
	{
		ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
		ASN1_OBJECT *o = OBJ_txt2obj(HSM_OID_SGX_IDENTITY, 1);

		ASN1_OCTET_STRING_set(os, (const unsigned char *)"\x30\x03\x02\x01\x05", 5);
		ext = X509_EXTENSION_create_by_OBJ(NULL, o, 0, os);
		assert_int_equal(X509_add_ext(x, ext, -1), 1);
		assert_int_equal(sgxident_describe(x, line, sizeof(line)), HSM_EPROTO);
		X509_EXTENSION_free(ext);
		ASN1_OCTET_STRING_free(os);
		ASN1_OBJECT_free(o);
	}
	X509_free(x);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(identity_extension),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
