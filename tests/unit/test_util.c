/* test_util.c - durations, hex, secrets, whole-file I/O. */
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "util.h"

static char dir[64];

static int
setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hsmesh-test-util-XXXXXX");
	return mkdtemp(dir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static void
durations(void **state)
{
	int64_t s = -1;

	assert_int_equal(hsm_parse_duration("90s", &s), 0);
	assert_int_equal(s, 90);
	assert_int_equal(hsm_parse_duration("15m", &s), 0);
	assert_int_equal(s, 900);
	assert_int_equal(hsm_parse_duration("1h", &s), 0);
	assert_int_equal(s, 3600);
	assert_int_equal(hsm_parse_duration("30d", &s), 0);
	assert_int_equal(s, 30 * 86400);
	assert_int_equal(hsm_parse_duration("42", &s), 0);
	assert_int_equal(s, 42);

	assert_int_equal(hsm_parse_duration("0", &s), HSM_EINVAL);
	assert_int_equal(s, 0);
	assert_int_equal(hsm_parse_duration("0h", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("-5s", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("+5s", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration(" 5s", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("5 s", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("5s ", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("5x", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("5hh", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("h", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("9223372036854775807", &s), 0);
	assert_int_equal(hsm_parse_duration("9223372036854775808", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("9223372036854775807d", &s), HSM_EINVAL);
	assert_int_equal(hsm_parse_duration("106751991167300d", &s), 0);
	assert_int_equal(hsm_parse_duration("106751991167301d", &s), HSM_EINVAL);
}

static void
hex(void **state)
{
	const uint8_t b[] = { 0x00, 0x01, 0xab, 0xff, 0x7e };
	char out[2 * sizeof(b) + 1];

	assert_ptr_equal(hsm_hex(b, sizeof(b), out), out);
	assert_string_equal(out, "0001abff7e");
	assert_string_equal(hsm_hex(b, 0, out), "");
}

static void
secrets_file(void **state)
{
	char p[128], *s = NULL;
	size_t len = 99;
	char big[4097];

	path(p, sizeof(p), "pin");
	assert_int_equal(hsm_write_file_atomic(p, "1234\r\nsecond line\n", 18, 0600), 0);
	assert_int_equal(hsm_secret_read_file(p, &s, &len), 0);
	assert_int_equal(len, 4);
	assert_string_equal(s, "1234");
	hsm_secret_free(s, len);

	assert_int_equal(hsm_write_file_atomic(p, "no newline", 10, 0600), 0);
	assert_int_equal(hsm_secret_read_file(p, &s, &len), 0);
	assert_string_equal(s, "no newline");
	hsm_secret_free(s, len);

	assert_int_equal(hsm_write_file_atomic(p, "\n1234\n", 6, 0600), 0);
	assert_int_equal(hsm_secret_read_file(p, &s, &len), HSM_EINVAL);
	assert_null(s);
	assert_int_equal(len, 0);
	assert_int_equal(hsm_write_file_atomic(p, "", 0, 0600), 0);
	assert_int_equal(hsm_secret_read_file(p, &s, &len), HSM_EINVAL);
	assert_int_equal(hsm_write_file_atomic(p, "ab\0cd\n", 6, 0600), 0);
	assert_int_equal(hsm_secret_read_file(p, &s, &len), HSM_EINVAL);

	/* 4096 bytes are accepted, 4097 refused. */
	memset(big, 'x', sizeof(big));
	assert_int_equal(hsm_write_file_atomic(p, big, 4096, 0600), 0);
	assert_int_equal(hsm_secret_read_file(p, &s, &len), 0);
	assert_int_equal(len, 4096);
	hsm_secret_free(s, len);
	assert_int_equal(hsm_write_file_atomic(p, big, 4097, 0600), 0);
	assert_int_equal(hsm_secret_read_file(p, &s, &len), HSM_EINVAL);

	path(p, sizeof(p), "absent");
	assert_int_equal(hsm_secret_read_file(p, &s, &len), HSM_ENOENT);
	assert_int_equal(hsm_secret_read_file(dir, &s, &len), HSM_EINVAL);
	hsm_secret_free(NULL, 0);
}

static void
secrets_env(void **state)
{
	char *s = NULL;
	size_t len = 0;

	setenv("HSMESH_TEST_SECRET", "s3cret", 1);
	assert_int_equal(hsm_secret_read_env("HSMESH_TEST_SECRET", &s, &len), 0);
	assert_int_equal(len, 6);
	assert_string_equal(s, "s3cret");
	hsm_secret_free(s, len);
	setenv("HSMESH_TEST_SECRET", "", 1);
	assert_int_equal(hsm_secret_read_env("HSMESH_TEST_SECRET", &s, &len), HSM_EINVAL);
	unsetenv("HSMESH_TEST_SECRET");
	assert_int_equal(hsm_secret_read_env("HSMESH_TEST_SECRET", &s, &len), HSM_ENOENT);
	assert_null(s);
}

static void
files(void **state)
{
	char p[128], tmpl[160];
	uint8_t *buf = NULL;
	size_t len = 0;
	struct stat sb;
	uint8_t big[10000];

	path(p, sizeof(p), "f");
	assert_int_equal(hsm_write_file_atomic(p, "hello", 5, 0640), 0);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0640);
	assert_int_equal(hsm_read_file(p, 100, &buf, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(buf[5], '\0');
	free(buf);

	/* Replaced whole; no temporary left behind. */
	assert_int_equal(hsm_write_file_atomic(p, "bye", 3, 0600), 0);
	assert_int_equal(hsm_read_file(p, 3, &buf, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "bye", 3);
	free(buf);
	snprintf(tmpl, sizeof(tmpl), "ls %s | grep -q tmp", dir);
	assert_int_not_equal(system(tmpl), 0);

	assert_int_equal(hsm_read_file(p, 2, &buf, &len), HSM_EINVAL);
	assert_null(buf);

	memset(big, 0x5a, sizeof(big));
	assert_int_equal(hsm_write_file_atomic(p, big, sizeof(big), 0600), 0);
	assert_int_equal(hsm_read_file(p, sizeof(big), &buf, &len), 0);
	assert_int_equal(len, sizeof(big));
	assert_memory_equal(buf, big, sizeof(big));
	free(buf);
	assert_int_equal(hsm_read_file(p, sizeof(big) - 1, &buf, &len), HSM_EINVAL);

	assert_int_equal(hsm_write_file_atomic(p, "", 0, 0600), 0);
	assert_int_equal(hsm_read_file(p, 10, &buf, &len), 0);
	assert_int_equal(len, 0);
	free(buf);

	path(p, sizeof(p), "absent");
	assert_int_equal(hsm_read_file(p, 10, &buf, &len), HSM_ENOENT);
	assert_int_equal(hsm_write_file_atomic("/nonexistent/dir/f", "x", 1, 0600), HSM_EIO);
}

static void
clock_ms(void **state)
{
	uint64_t a = hsm_now_ms(), b;

	usleep(20000);
	b = hsm_now_ms();
	assert_true(b >= a + 15);
	assert_true(b < a + 5000);
}

static void
mkdir_p(void **state)
{
	char p[256], f[256];
	struct stat st;

	snprintf(p, sizeof(p), "%s/a/b/c", dir);
	assert_int_equal(hsm_mkdir_p(p, 0700), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	/* Existing directories are kept, a trailing slash is fine. */
	assert_int_equal(chmod(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/a/b/c/", dir);
	assert_int_equal(hsm_mkdir_p(p, 0700), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0755);
	/* A file in the way is an error naming it. */
	snprintf(f, sizeof(f), "%s/file", dir);
	assert_int_equal(hsm_write_file_atomic(f, "x", 1, 0600), 0);
	assert_int_equal(hsm_mkdir_p(f, 0700), HSM_EIO);
	assert_non_null(strstr(hsm_err_msg(HSM_EIO), "is not a directory"));
	snprintf(p, sizeof(p), "%s/file/sub", dir);
	assert_int_equal(hsm_mkdir_p(p, 0700), HSM_EIO);
	assert_non_null(strstr(hsm_err_msg(HSM_EIO), "cannot create"));
	assert_int_equal(hsm_mkdir_p("", 0700), HSM_EINVAL);
}

static void
fmt_time(void **state)
{
	char t[HSM_TIME_STR];

	assert_string_equal(hsm_fmt_time(0, t), "1970-01-01T00:00:00Z");
	assert_string_equal(hsm_fmt_time(1796601600, t), "2026-12-07T00:00:00Z");
	assert_string_equal(hsm_fmt_time(INT64_MAX, t), "@9223372036854775807");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(durations),
		cmocka_unit_test(hex),
		cmocka_unit_test(secrets_file),
		cmocka_unit_test(secrets_env),
		cmocka_unit_test(files),
		cmocka_unit_test(clock_ms),
		cmocka_unit_test_setup_teardown(mkdir_p, setup, teardown),
		cmocka_unit_test(fmt_time),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
