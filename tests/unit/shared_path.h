/*
 * shared_path.h - where the unit tests find the read-only test data that
 * the project ships (tests/testdata/: the real SGX quotes and their
 * collateral, see tests/testdata/sgx/README.md): rel is relative to
 * $HSMESH_SHARED when set (another copy), else $HSMESH_ROOT/tests
 * (tests/run.sh sets HSMESH_ROOT), else ./tests.
 * Include after <cmocka.h>.
 */
#ifndef HSM_TEST_SHARED_PATH_H
#define HSM_TEST_SHARED_PATH_H

#include <stdio.h>
#include <stdlib.h>

static void
shared_path(char *buf, size_t len, const char *rel)
{
	const char *d = getenv("HSMESH_SHARED"), *root;
	int n;

	if (d != NULL && *d != '\0')
		n = snprintf(buf, len, "%s/%s", d, rel);
	else if ((root = getenv("HSMESH_ROOT")) != NULL && *root != '\0')
		n = snprintf(buf, len, "%s/tests/%s", root, rel);
	else
		n = snprintf(buf, len, "tests/%s", rel);
	if (n < 0 || (size_t)n >= len)
		fail_msg("path too long");
}

#endif
