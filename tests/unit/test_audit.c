/*
 * test_audit.c - every audit line whole: records, a torn last line cut off
 * at open (and recorded), a write cut short (RLIMIT_FSIZE) removed again
 * and reported, the reserve of a durable log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"
#include "err.h"
#include "util.h"

static char dir[64], path[128];

static int
setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hsmesh-audit.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *
slurp(size_t *len)
{
	uint8_t *b = NULL;

	assert_int_equal(hsm_read_file(path, 1 << 20, &b, len), 0);
	return (char *)b;
}

static int
lines(const char *b, size_t len)
{
	int n = 0;

	for (size_t i = 0; i < len; i++)
		n += b[i] == '\n';
	return n;
}

static void
whole_lines(void **state)
{
	struct audit *a;
	char *b;
	size_t len;
	struct stat st;

	unlink(path);
	assert_int_equal(audit_open_flags(path, AUDIT_DURABLE, &a), 0);
	assert_int_equal(audit_event(a, "issued", "id", "spiffe://x/y", "skip", NULL, "q", "a\"b\n", NULL), 0);
	assert_int_equal(audit_event(a, "refused", NULL), 0);
	audit_close(a);
	b = slurp(&len);
	assert_int_equal(lines(b, len), 2);
	assert_non_null(strstr(b, "\"event\":\"issued\",\"id\":\"spiffe://x/y\",\"q\":\"a\\\"b\\u000a\"}\n"));
	assert_null(strstr(b, "skip"));
	free(b);
	/* A durable log keeps a reserve beside it. */
	{
		char r[160];

		snprintf(r, sizeof(r), "%s.reserve", path);
		assert_int_equal(stat(r, &st), 0);
		assert_int_equal(st.st_size, 64 * 1024);
	}
	assert_int_equal(audit_event(NULL, "x", NULL), 0);
}

static void
torn_tail_repaired(void **state)
{
	struct audit *a;
	FILE *f;
	char *b;
	size_t len;

	unlink(path);
	assert_non_null(f = fopen(path, "w"));
	fputs("{\"event\":\"one\"}\n{\"event\":\"tw", f);
	fclose(f);
	assert_int_equal(audit_open(path, &a), 0);
	assert_int_equal(audit_event(a, "three", NULL), 0);
	audit_close(a);
	b = slurp(&len);
	assert_int_equal(lines(b, len), 3);
	assert_int_equal(strncmp(b, "{\"event\":\"one\"}\n", 16), 0);
	assert_null(strstr(b, "\"tw"));
	assert_non_null(strstr(b, "\"event\":\"audit_repaired\",\"removed_bytes\":\"12\"}\n"));
	assert_non_null(strstr(b, "\"event\":\"three\"}\n"));
	free(b);
	/* A file that is all one torn line is emptied (and then repaired in words). */
	assert_non_null(f = fopen(path, "w"));
	fputs("{\"event\":", f);
	fclose(f);
	assert_int_equal(audit_open(path, &a), 0);
	audit_close(a);
	b = slurp(&len);
	assert_int_equal(lines(b, len), 1);
	assert_non_null(strstr(b, "audit_repaired"));
	free(b);
}

static void
short_write_removed(void **state)
{
	struct audit *a;
	struct rlimit old, rl;
	char big[600], *b;
	struct stat st;
	size_t len;
	off_t before;

	unlink(path);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(audit_open(path, &a), 0);
	assert_int_equal(audit_event(a, "first", NULL), 0);
	assert_int_equal(stat(path, &st), 0);
	before = st.st_size;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	/* Room for a part of the next line only: the write is cut short. */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	rl = old;
	rl.rlim_cur = (rlim_t)before + 100;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	assert_int_equal(audit_event(a, "second", "data", big, NULL), HSM_EIO);
	assert_non_null(strstr(hsm_err_msg(HSM_EIO), "audit log write failed"));
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, before);
	/* Writes go on once there is room. */
	assert_int_equal(audit_event(a, "third", NULL), 0);
	audit_close(a);
	b = slurp(&len);
	assert_int_equal(lines(b, len), 2);
	assert_null(strstr(b, "second"));
	free(b);
	signal(SIGXFSZ, SIG_DFL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(whole_lines),
		cmocka_unit_test(torn_tail_repaired),
		cmocka_unit_test(short_write_removed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
