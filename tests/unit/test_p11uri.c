/* test_p11uri.c - RFC 7512 parsing: what names a token must be exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "p11uri.h"

static void
full_uri(void **state)
{
	struct p11_uri u;

	assert_int_equal(p11_uri_parse("pkcs11:token=hsmesh%20CA;manufacturer=SoftHSM%20project;"
	    "serial=0123456789abcdef;model=SoftHSM%20v2;slot-id=42;object=ca-key;type=private;"
	    "id=%01%02%ff?pin-source=file:/etc/pin&module-path=/usr/lib/softhsm/libsofthsm2.so"
	    "&module-name=softhsm2&x-vendor=1", &u), 0);
	assert_true(u.has_token);
	assert_string_equal(u.token, "hsmesh CA");
	assert_string_equal(u.manufacturer, "SoftHSM project");
	assert_string_equal(u.serial, "0123456789abcdef");
	assert_string_equal(u.model, "SoftHSM v2");
	assert_true(u.has_slot_id);
	assert_int_equal(u.slot_id, 42);
	assert_string_equal(u.object, "ca-key");
	assert_string_equal(u.type, "private");
	assert_true(u.has_id);
	assert_int_equal(u.id_len, 3);
	assert_memory_equal(u.id, "\x01\x02\xff", 3);
	assert_true(u.has_pin_source);
	assert_string_equal(u.pin_source, "file:/etc/pin");
	assert_true(u.has_module_path);
	assert_string_equal(u.module_path, "/usr/lib/softhsm/libsofthsm2.so");
}

static void
empty_uri(void **state)
{
	struct p11_uri u;

	assert_int_equal(p11_uri_parse("pkcs11:", &u), 0);
	assert_false(u.has_token || u.has_manufacturer || u.has_serial || u.has_model ||
	    u.has_slot_id || u.has_object || u.has_id || u.has_type || u.has_pin_source ||
	    u.has_module_path);
	assert_int_equal(p11_uri_parse("PKCS11:token=x", &u), 0);
	assert_string_equal(u.token, "x");
	assert_int_equal(p11_uri_parse("pkcs11:?", &u), 0);
	assert_int_equal(p11_uri_parse("pkcs11:token=", &u), 0);
	assert_true(u.has_token);
	assert_string_equal(u.token, "");
}

static void
percent_encoding(void **state)
{
	struct p11_uri u;

	assert_int_equal(p11_uri_parse("pkcs11:token=a%3bb%3D%3fc%25%2a", &u), 0);
	assert_string_equal(u.token, "a;b=?c%*");
	/* Hex digits of either case. */
	assert_int_equal(p11_uri_parse("pkcs11:object=%4A%4b", &u), 0);
	assert_string_equal(u.object, "JK");
	/* UTF-8 label, escaped. */
	assert_int_equal(p11_uri_parse("pkcs11:token=caf%C3%A9", &u), 0);
	assert_string_equal(u.token, "caf\xc3\xa9");
}

static void
id_binary(void **state)
{
	struct p11_uri u;
	char s[7 + 3 + 64 * 3 + 1];
	size_t off;

	assert_int_equal(p11_uri_parse("pkcs11:id=%00%00%10A", &u), 0);
	assert_int_equal(u.id_len, 4);
	assert_memory_equal(u.id, "\x00\x00\x10" "A", 4);

	/* 64 bytes fit, 65 do not. */
	memcpy(s, "pkcs11:id=", 10);
	off = 10;
	for (int i = 0; i < 64; i++, off += 3)
		memcpy(s + off, "%ab", 3);
	s[off] = '\0';
	assert_int_equal(p11_uri_parse(s, &u), 0);
	assert_int_equal(u.id_len, 64);
	assert_int_equal(u.id[63], 0xab);
	s[off - 3] = '\0';
	assert_int_equal(p11_uri_parse(s, &u), 0);
	assert_int_equal(u.id_len, 63);
	{
		char t[sizeof(s) + 1];

		memcpy(t, s, off - 3);
		memcpy(t + off - 3, "%ab", 3);
		memcpy(t + off, "Z", 2);
		assert_int_equal(p11_uri_parse(t, &u), HSM_EINVAL);
	}
}

static void
unknown_path_attr(void **state)
{
	struct p11_uri u;

	assert_int_equal(p11_uri_parse("pkcs11:tokn=x", &u), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_detail(), "tokn"));
	/* Valid RFC 7512, but not matched by us: refusing beats widening the match. */
	assert_int_equal(p11_uri_parse("pkcs11:library-manufacturer=x", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:token=a;x-vendor=1", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:Token=a", &u), HSM_EINVAL);
	/* The out-param is cleared on failure. */
	assert_false(u.has_token);
	/* Repeated attributes are ambiguous. */
	assert_int_equal(p11_uri_parse("pkcs11:token=a;token=b", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:id=%01;id=%02", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:type=weird", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:token", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:=x", &u), HSM_EINVAL);
	/* Unknown query attributes are ignored (RFC 7512). */
	assert_int_equal(p11_uri_parse("pkcs11:token=a?whatever=1", &u), 0);
}

static void
pin_value_rejected(void **state)
{
	struct p11_uri u;

	assert_int_equal(p11_uri_parse("pkcs11:token=a?pin-value=1234", &u), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_detail(), "pin-value"));
	/* The detail must not echo the PIN. */
	assert_null(strstr(hsm_err_detail(), "1234"));
	assert_int_equal(p11_uri_parse("pkcs11:?module-path=/x&pin-value=1", &u), HSM_EINVAL);
}

static void
overlong_fields(void **state)
{
	struct p11_uri u;
	char s[512];

	/* token: 32 bytes fit, 33 do not; a %XX counts as one byte. */
	snprintf(s, sizeof(s), "pkcs11:token=%s", "0123456789abcdef0123456789abcdef");
	assert_int_equal(p11_uri_parse(s, &u), 0);
	snprintf(s, sizeof(s), "pkcs11:token=%s%%20", "0123456789abcdef0123456789abcdef");
	assert_int_equal(p11_uri_parse(s, &u), HSM_EINVAL);
	assert_non_null(strstr(hsm_err_detail(), "token"));
	snprintf(s, sizeof(s), "pkcs11:serial=%s", "0123456789abcdef");
	assert_int_equal(p11_uri_parse(s, &u), 0);
	snprintf(s, sizeof(s), "pkcs11:serial=%s0", "0123456789abcdef");
	assert_int_equal(p11_uri_parse(s, &u), HSM_EINVAL);
	snprintf(s, sizeof(s), "pkcs11:model=%s0", "0123456789abcdef");
	assert_int_equal(p11_uri_parse(s, &u), HSM_EINVAL);
	snprintf(s, sizeof(s), "pkcs11:manufacturer=%s0", "0123456789abcdef0123456789abcdef");
	assert_int_equal(p11_uri_parse(s, &u), HSM_EINVAL);
	memset(s, 'a', sizeof(s));
	memcpy(s, "pkcs11:object=", 14);
	s[14 + 64] = '\0';
	assert_int_equal(p11_uri_parse(s, &u), 0);
	s[14 + 64] = 'a';
	s[14 + 65] = '\0';
	assert_int_equal(p11_uri_parse(s, &u), HSM_EINVAL);
	memset(s, 'a', sizeof(s));
	memcpy(s, "pkcs11:?pin-source=", 19);
	s[sizeof(s) - 1] = '\0';
	assert_int_equal(p11_uri_parse(s, &u), HSM_EINVAL);
	/* slot-id overflow and non-digits. */
	assert_int_equal(p11_uri_parse("pkcs11:slot-id=99999999999999999999999", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:slot-id=-1", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:slot-id=1x", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:slot-id=", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:slot-id=18446744073709551615", &u), 0);
}

static void
bad_escapes(void **state)
{
	struct p11_uri u;

	assert_int_equal(p11_uri_parse("pkcs11:token=a%", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:token=a%2", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:token=a%2g", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:token=a%g2", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:id=%", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:token=%2;serial=1", &u), HSM_EINVAL);
	/* A NUL would silently shorten a text value. */
	assert_int_equal(p11_uri_parse("pkcs11:token=a%00b", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:token=a\tb", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11:token=a#b", &u), HSM_EINVAL);
}

static void
not_pkcs11(void **state)
{
	struct p11_uri u;

	assert_int_equal(p11_uri_parse("", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("pkcs11", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse("file:token=a", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse(" pkcs11:token=a", &u), HSM_EINVAL);
	assert_int_equal(p11_uri_parse(NULL, &u), HSM_EINVAL);
}

static void
field_eq(void **state)
{
	unsigned char f[32];
	const unsigned char z[16] = "abc";	/* NUL padded */

	memset(f, ' ', sizeof(f));
	memcpy(f, "hsmesh", 6);

	assert_true(p11_uri_field_eq(f, sizeof(f), "hsmesh"));
	assert_false(p11_uri_field_eq(f, sizeof(f), "hsmes"));
	assert_false(p11_uri_field_eq(f, sizeof(f), "hsmesh2"));
	assert_false(p11_uri_field_eq(f, sizeof(f), ""));
	assert_true(p11_uri_field_eq(z, sizeof(z), "abc"));
	assert_false(p11_uri_field_eq(f, 3, "hsmesh"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(full_uri),
		cmocka_unit_test(empty_uri),
		cmocka_unit_test(percent_encoding),
		cmocka_unit_test(id_binary),
		cmocka_unit_test(unknown_path_attr),
		cmocka_unit_test(pin_value_rejected),
		cmocka_unit_test(overlong_fields),
		cmocka_unit_test(bad_escapes),
		cmocka_unit_test(not_pkcs11),
		cmocka_unit_test(field_eq),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
