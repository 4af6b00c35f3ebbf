/*
 * test_reason.c - the table of connection failure reasons: every reason
 * has its own label (the metrics and log contract), the policy denials
 * and unreachable targets are exactly the documented ones, and a fail
 * record keeps its first cause.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "reason.h"

/* The labels in docs/PROXY.md and the access log, in enum order. */
static const char *const want[REASON_COUNT] = {
	NULL, "no_client_cert", "untrusted", "cert_expired", "cert_not_yet_valid",
	"cert_invalid", "bad_spiffe_id", "not_allowed", "unexpected_id", "cert_revoked",
	"crl_unavailable", "handshake_timeout",
	"key_operation", "no_identity", "peer_closed", "tls_error", "internal", "shutdown",
	"rate_limited", "key_ops_busy",
	"connect_failed", "connect_timeout", "reset", "idle_timeout", "http_error",
};

static void
labels(void **state)
{
	for (int r = 0; r < REASON_COUNT; r++) {
		if (want[r] == NULL) {
			assert_null(reason_label((enum reason)r));
			continue;
		}
		assert_non_null(reason_label((enum reason)r));
		assert_string_equal(reason_label((enum reason)r), want[r]);
		for (int k = 1; k < r; k++)
			assert_string_not_equal(reason_label((enum reason)k), want[r]);
	}
	/* out of range: no label, no flag, no crash */
	assert_null(reason_label(REASON_COUNT));
	assert_null(reason_label((enum reason)-1));
	assert_int_equal(reason_is_denial(REASON_COUNT), 0);
	assert_int_equal(reason_is_unreachable((enum reason)-1), 0);
}

static void
denials(void **state)
{
	/* refused by policy or certificate checks: decision "deny", logged at info */
	static const enum reason deny[] = { REASON_NOT_ALLOWED, REASON_UNEXPECTED_ID,
	    REASON_NO_CLIENT_CERT, REASON_UNTRUSTED, REASON_CERT_EXPIRED,
	    REASON_CERT_NOT_YET_VALID, REASON_CERT_INVALID, REASON_BAD_SPIFFE_ID,
	    REASON_CERT_REVOKED, REASON_CRL_UNAVAILABLE };
	int n = 0;

	for (size_t i = 0; i < sizeof(deny) / sizeof(deny[0]); i++)
		assert_int_equal(reason_is_denial(deny[i]), 1);
	for (int r = 0; r < REASON_COUNT; r++)
		n += reason_is_denial((enum reason)r);
	assert_int_equal(n, (int)(sizeof(deny) / sizeof(deny[0])));
	assert_int_equal(reason_is_denial(REASON_NONE), 0);
	assert_int_equal(reason_is_denial(REASON_KEY_OPERATION), 0);
	assert_int_equal(reason_is_denial(REASON_RESET), 0);
}

static void
unreachable(void **state)
{
	int n = 0;

	assert_int_equal(reason_is_unreachable(REASON_CONNECT_FAILED), 1);
	assert_int_equal(reason_is_unreachable(REASON_CONNECT_TIMEOUT), 1);
	for (int r = 0; r < REASON_COUNT; r++)
		n += reason_is_unreachable((enum reason)r);
	assert_int_equal(n, 2);
}

static void
admission(void **state)
{
	int n = 0;

	assert_int_equal(reason_is_admission(REASON_RATE_LIMITED), 1);
	assert_int_equal(reason_is_admission(REASON_KEY_OPS_BUSY), 1);
	assert_int_equal(reason_is_denial(REASON_RATE_LIMITED), 0);
	for (int r = 0; r < REASON_COUNT; r++)
		n += reason_is_admission((enum reason)r);
	assert_int_equal(n, 2);
	assert_int_equal(reason_is_admission(REASON_COUNT), 0);
}

static void
first_wins(void **state)
{
	struct fail f = { REASON_NONE, "" };
	char big[400];

	fail_set(&f, REASON_NOT_ALLOWED, "%s is not in the allow list", "spiffe://td/x");
	assert_int_equal(f.reason, REASON_NOT_ALLOWED);
	assert_string_equal(f.detail, "spiffe://td/x is not in the allow list");
	/* a later symptom of the same failure does not hide the cause */
	fail_set(&f, REASON_TLS_ERROR, "alert");
	assert_int_equal(f.reason, REASON_NOT_ALLOWED);
	assert_string_equal(f.detail, "spiffe://td/x is not in the allow list");
	/* a detail longer than the record is cut, NUL-terminated */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	f.reason = REASON_NONE;
	fail_set(&f, REASON_RESET, "%s", big);
	assert_int_equal(strlen(f.detail), FAIL_DETAIL_MAX - 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(labels),
		cmocka_unit_test(denials),
		cmocka_unit_test(unreachable),
		cmocka_unit_test(admission),
		cmocka_unit_test(first_wins),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
