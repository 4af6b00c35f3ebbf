/* test_evtype.c - the table of evidence kinds and their OIDs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "evtype.h"

static void
table(void **state)
{
	const struct ev_type_info *e, *f;
	size_t i, j, arc = strlen(HSM_OID_ARC);

	assert_null(ev_type_get(EV_NONE));
	assert_null(ev_type_by_evidence_oid(NULL));
	assert_null(ev_type_by_evidence_oid(HSM_OID_ATTEST_NONCE));
	assert_null(ev_type_by_evidence_oid(HSM_OID_SGX_IDENTITY));
	/* The wire today: one kind, SGX quotes under our arc's .2, identity .3. */
	assert_non_null(e = ev_type_get(EV_SGX));
	assert_string_equal(e->name, "sgx");
	assert_string_equal(e->evidence_oid, "2.25.87529635398249573420365783529533619489.2");
	assert_string_equal(e->identity_oid, "2.25.87529635398249573420365783529533619489.3");
	assert_string_equal(e->identity_label, "sgx identity");
	assert_int_equal(e->max_len, ATTEST_QUOTE_MAX);
	assert_ptr_equal(ev_type_by_evidence_oid(HSM_OID_SGX_QUOTE), e);
	assert_string_equal(HSM_OID_ATTEST_NONCE, "2.25.87529635398249573420365783529533619489.1");
	/* Every row: found by its type and OID, under our arc, and no OID used twice. */
	for (i = 0; (e = ev_type_at(i)) != NULL; i++) {
		assert_ptr_equal(ev_type_get(e->type), e);
		assert_ptr_equal(ev_type_by_evidence_oid(e->evidence_oid), e);
		assert_int_equal(strncmp(e->evidence_oid, HSM_OID_ARC ".", arc + 1), 0);
		assert_int_equal(strncmp(e->identity_oid, HSM_OID_ARC ".", arc + 1), 0);
		assert_true(e->max_len > 0 && e->max_len <= ATTEST_QUOTE_MAX);
		assert_string_not_equal(e->evidence_oid, HSM_OID_ATTEST_NONCE);
		for (j = 0; (f = ev_type_at(j)) != NULL; j++) {
			if (f == e)
				continue;
			assert_int_not_equal(f->type, e->type);
			assert_string_not_equal(f->evidence_oid, e->evidence_oid);
			assert_string_not_equal(f->identity_oid, e->identity_oid);
			assert_string_not_equal(f->name, e->name);
		}
	}
	assert_int_equal(i, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
