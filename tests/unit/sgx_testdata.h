/*
 * sgx_testdata.h - the SGX unit tests' access to the real quotes and
 * collateral (shared_path.h) and a little-endian writer for editing
 * quotes. Include after <cmocka.h>, "err.h" and "util.h".
 */
#ifndef HSM_TEST_SGX_TESTDATA_H
#define HSM_TEST_SGX_TESTDATA_H

#include <stdint.h>
#include <string.h>

#include "shared_path.h"

#define PHALA	"testdata/sgx/phala-dcap-qvl/"
#define INTEL	"testdata/sgx/intel-qvl-sample/"

/* The test data file rel, whole (NUL-terminated by hsm_read_file). */
static void
load(const char *rel, uint8_t **buf, size_t *len)
{
	char path[1024];

	shared_path(path, sizeof(path), rel);
	if (hsm_read_file(path, 1U << 20, buf, len) != 0)
		fail_msg("%s: %s", path, hsm_err_detail());
}

/* The test data file rel as a string. */
static char *
load_str(const char *rel)
{
	uint8_t *b;
	size_t len;

	load(rel, &b, &len);
	return (char *)b;
}

static void
set_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

#endif
