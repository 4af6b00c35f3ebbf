/* test_err.c - a detail answers only for the code it was recorded with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "err.h"
#include "log.h"

static void
detail_for_its_code(void **state)
{
	hsm_err_clear();
	assert_string_equal(hsm_err_msg(HSM_EIO), "input/output error");
	assert_int_equal(hsm_err(HSM_EPIN, "token t: wrong PIN"), HSM_EPIN);
	assert_string_equal(hsm_err_msg(HSM_EPIN), "token t: wrong PIN");
	/* Another code, returned without a detail of its own: its own text. */
	assert_string_equal(hsm_err_msg(HSM_ENOMEM), "out of memory");
	assert_string_equal(hsm_err_msg(HSM_ETIMEDOUT), "timed out");
	/* The detail is still there for its code, and for tests. */
	assert_string_equal(hsm_err_detail(), "token t: wrong PIN");
	/* A new detail replaces it, code and all. */
	hsm_err(HSM_ENOMEM, "allocating %d frames", 3);
	assert_string_equal(hsm_err_msg(HSM_ENOMEM), "allocating 3 frames");
	assert_string_equal(hsm_err_msg(HSM_EPIN), "PIN incorrect");
	hsm_err_clear();
	assert_string_equal(hsm_err_msg(HSM_ENOMEM), "out of memory");
	assert_string_equal(hsm_err_detail(), "");
	/* Codes outside the table. */
	assert_string_equal(hsm_err_msg(5), "unknown error");
	assert_string_equal(hsm_err_msg(HSM_ERR_MIN - 1), "unknown error");
}

static void
ossl_detail(void **state)
{
	/* An OpenSSL failure on the queue becomes part of the detail, and the queue is cleared. */
	assert_null(EVP_get_digestbyname("no-such-digest"));
	ERR_raise_data(ERR_LIB_EVP, EVP_R_UNSUPPORTED_ALGORITHM, "test");
	assert_int_equal(hsm_err_ossl(HSM_ECRYPTO, "hashing"), HSM_ECRYPTO);
	assert_non_null(strstr(hsm_err_msg(HSM_ECRYPTO), "hashing: "));
	assert_int_equal(ERR_peek_error(), 0);
	assert_string_equal(hsm_err_msg(HSM_EINVAL), "invalid argument");
}

/* Run one log call with stderr sent to a file; return the line written. */
static void
logged(char *line, size_t cap, int code)
{
	char path[] = "/tmp/hsmesh-test-err-XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	FILE *f;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	assert_int_equal(dup2(fd, 2), 2);
	log_err("handshake failed: %s", hsm_err_msg(code));
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, (int)cap, f));
	fclose(f);
	unlink(path);
}

static void
log_line_without_detail(void **state)
{
	char line[1024];

	hsm_log_init("test", HSM_LOG_INFO);
	/* An earlier, unrelated failure recorded a detail... */
	hsm_err(HSM_ECONFIG, "proxy.yaml: unknown key 'x' at line 3");
	/* ...then a path returns HSM_ENOMEM without one: the line names the code, not the old text. */
	logged(line, sizeof(line), HSM_ENOMEM);
	assert_string_equal(line, "test: error: handshake failed: out of memory\n");
	assert_null(strstr(line, "proxy.yaml"));
	/* The same code with its detail keeps the detail. */
	hsm_err(HSM_ECLOSED, "agent closed the connection");
	logged(line, sizeof(line), HSM_ECLOSED);
	assert_string_equal(line, "test: error: handshake failed: agent closed the connection\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(detail_for_its_code),
		cmocka_unit_test(ossl_detail),
		cmocka_unit_test(log_line_without_detail),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
