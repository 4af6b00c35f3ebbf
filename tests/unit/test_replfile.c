/*
 * test_replfile.c - the files of `hsmesh ca replicate` (replfile.h): what
 * is written parses back the same; what breaks the format is refused with
 * a reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "evtype.h"
#include "replfile.h"

static int
parse_req(const char *text, struct repl_request *r)
{
	return repl_request_parse((const uint8_t *)text, strlen(text), r);
}

static void
request_roundtrip(void **state)
{
	struct repl_request r, g;
	char *pem = NULL;
	size_t len = 0;

	memset(&r, 0, sizeof(r));
	memset(r.spki, 0x30, 300);
	r.spkilen = 300;
	assert_int_equal(repl_request_write(&r, &pem, &len), 0);
	assert_non_null(strstr(pem, "-----BEGIN HSMESH UNWRAPPING KEY-----"));
	assert_null(strstr(pem, "QUOTE"));
	assert_int_equal(repl_request_parse((const uint8_t *)pem, len, &g), 0);
	assert_int_equal(g.spkilen, 300);
	assert_memory_equal(g.spki, r.spki, 300);
	assert_null(g.quote);
	repl_request_clear(&g);
	free(pem);

	r.quote = malloc(1000);
	memset(r.quote, 7, 1000);
	r.quotelen = 1000;
	assert_int_equal(repl_request_write(&r, &pem, &len), 0);
	assert_int_equal(repl_request_parse((const uint8_t *)pem, len, &g), 0);
	assert_int_equal(g.quotelen, 1000);
	assert_memory_equal(g.quote, r.quote, 1000);
	repl_request_clear(&g);
	repl_request_clear(&r);
	repl_request_clear(NULL);
	free(pem);
}

#define KEY "-----BEGIN HSMESH UNWRAPPING KEY-----\nMIIBIjAN\n-----END HSMESH UNWRAPPING KEY-----\n"

static void
request_refusals(void **state)
{
	struct repl_request r;

	if (parse_req(KEY, &r) != 0) fail_msg("%s", hsm_err_detail());
	assert_int_equal(r.spkilen, 6);
	repl_request_clear(&r);
	assert_int_equal(parse_req("", &r), HSM_EPROTO);
	assert_int_equal(parse_req("   \n", &r), HSM_EPROTO);
	assert_string_equal(hsm_err_detail(), "replication request: no PEM block");
	assert_int_equal(parse_req(KEY KEY, &r), HSM_EPROTO);
	assert_string_equal(hsm_err_detail(), "replication request: two unwrapping keys");
	assert_int_equal(parse_req("hello\n" KEY, &r), HSM_EPROTO);
	assert_string_equal(hsm_err_detail(), "replication request: text outside a PEM block");
	assert_int_equal(parse_req(KEY "trailing\n", &r), HSM_EPROTO);
	assert_string_equal(hsm_err_detail(), "replication request: text outside a PEM block");
	assert_int_equal(parse_req(KEY "junk\n" KEY, &r), HSM_EPROTO);
	assert_string_equal(hsm_err_detail(), "replication request: text outside a PEM block");
	assert_int_equal(parse_req("-----BEGIN HSMESH UNWRAPPING KEY-----\nMIIBIjAN\n", &r),
	    HSM_EPROTO);
	assert_string_equal(hsm_err_detail(), "replication request: a malformed PEM block");
	assert_int_equal(parse_req("-----BEGIN PRIVATE KEY-----\nMIIBIjAN\n-----END PRIVATE KEY-----\n",
	    &r), HSM_EPROTO);
	assert_string_equal(hsm_err_detail(), "replication request: unexpected PEM block 'PRIVATE KEY'");
	assert_int_equal(parse_req("-----BEGIN HSMESH SGX QUOTE-----\nMIIBIjAN\n"
	    "-----END HSMESH SGX QUOTE-----\n", &r), HSM_EPROTO);
	assert_string_equal(hsm_err_detail(), "replication request: no unwrapping key");
	assert_int_equal(parse_req("-----BEGIN HSMESH UNWRAPPING KEY-----\nProc-Type: 4,ENCRYPTED\n"
	    "\nMIIBIjAN\n-----END HSMESH UNWRAPPING KEY-----\n", &r), HSM_EPROTO);
	assert_null(r.quote);
}

static void
wrapped_roundtrip_and_refusals(void **state)
{
	struct repl_wrapped w, g;
	char *pem = NULL, *q;
	size_t len = 0;

	memset(&w, 0, sizeof(w));
	memset(w.wrapkey, 1, sizeof(w.wrapkey));
	memset(w.spki, 2, 91);
	w.spkilen = 91;
	w.w.oaep = HSM_OAEP_SHA256;
	memset(w.w.transport, 3, 384);
	w.w.tlen = 384;
	memset(w.w.key, 4, 80);
	w.w.klen = 80;
	assert_int_equal(repl_wrapped_write(&w, &pem, &len), 0);
	assert_int_equal(repl_wrapped_parse((const uint8_t *)pem, len, &g), 0);
	assert_memory_equal(&g.wrapkey, &w.wrapkey, sizeof(w.wrapkey));
	assert_int_equal(g.spkilen, 91);
	assert_int_equal(g.w.oaep, HSM_OAEP_SHA256);
	assert_int_equal(g.w.tlen, 384);
	assert_int_equal(g.w.klen, 80);
	assert_memory_equal(g.w.key, w.w.key, 80);
	/* not a request, and a request is not one */
	assert_int_equal(parse_req(pem, &(struct repl_request){ 0 }), HSM_EPROTO);
	assert_int_equal(repl_wrapped_parse((const uint8_t *)KEY, strlen(KEY), &g), HSM_EPROTO);
	assert_string_equal(hsm_err_detail(),
	    "wrapped key: unexpected PEM block 'HSMESH UNWRAPPING KEY'");
	/* a truncated body: the base64 of the first 48 bytes only */
	q = strchr(pem, '\n') + 1;
	memmove(q + 64, strstr(pem, "-----END"), strlen(strstr(pem, "-----END")) + 1);
	q[64] = '\n';
	assert_int_equal(repl_wrapped_parse((const uint8_t *)pem, strlen(pem), &g), HSM_EPROTO);
	free(pem);
	/* lengths out of range are not written */
	w.w.klen = 15;
	assert_int_equal(repl_wrapped_write(&w, &pem, &len), HSM_EINVAL);
	w.w.klen = HSM_WRAPPED_MAX + 1;
	assert_int_equal(repl_wrapped_write(&w, &pem, &len), HSM_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(request_roundtrip),
		cmocka_unit_test(request_refusals),
		cmocka_unit_test(wrapped_roundtrip_and_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
