/* err.c - error codes and thread-local details (see err.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "err.h"

/*
 * The detail and the code it was recorded with: a detail answers only for
 * its own code, so a failure that returns a code without recording one
 * never borrows an older, unrelated message.
 */
static _Thread_local char detail[512];
static _Thread_local int detail_code;

static const char *const msgs[] = {
	[0] = "success",
	[1] = "invalid argument",
	[2] = "out of memory",
	[3] = "input/output error",
	[4] = "not found",
	[5] = "PIN incorrect",
	[6] = "PIN locked",
	[7] = "token not present",
	[8] = "PKCS#11 module could not be loaded",
	[9] = "PKCS#11 error",
	[10] = "cryptographic error",
	[11] = "malformed message",
	[12] = "timed out",
	[13] = "not authorised",
	[14] = "connection closed",
	[15] = "refused by policy",
	[16] = "bad configuration",
	[17] = "busy",
	[18] = "in progress",
	[19] = "not supported",
	[20] = "already exists",
};

const char *
hsm_strerror(int code)
{
	if (code > 0 || code < HSM_ERR_MIN)
		return "unknown error";
	return msgs[-code];
}

int
hsm_err(int code, const char *fmt, ...)
{
	char buf[sizeof(detail)];
	va_list ap;

	/* Through a copy: an argument may be the current detail (hsm_err_msg). */
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	memcpy(detail, buf, sizeof(detail));
	detail_code = code;
	return code;
}

int
hsm_err_ossl(int code, const char *what)
{
	unsigned long e = ERR_peek_error();
	char buf[256];

	if (e == 0)
		return hsm_err(code, "%s", what);
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return hsm_err(code, "%s: %s", what, buf);
}

const char *
hsm_err_detail(void)
{
	return detail;
}

void
hsm_err_clear(void)
{
	detail[0] = '\0';
	detail_code = 0;
}

const char *
hsm_err_msg(int code)
{
	return detail[0] != '\0' && code == detail_code ? detail : hsm_strerror(code);
}
