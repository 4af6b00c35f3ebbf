/*
 * shared_path.h - where the unit tests find ../shared (read-only test
 * data such as the real SGX quotes): $HSMESH_SHARED, else
 * $HSMESH_ROOT/../shared (tests/run.sh sets it), else ../shared.
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
		n = snprintf(buf, len, "%s/../shared/%s", root, rel);
	else
		n = snprintf(buf, len, "../shared/%s", rel);
	if (n < 0 || (size_t)n >= len)
		fail_msg("path too long");
}

#endif
