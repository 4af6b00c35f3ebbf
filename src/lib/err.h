/*
 * err.h - the project's error convention.
 *
 * Project functions return 0 on success or a negative HSM_E* code. A
 * function that fails may attach a one-line human-readable detail with
 * hsm_err(); the detail is thread-local and is read by whoever decides to
 * report the error (usually main). OpenSSL's 1-is-success, CK_RV and
 * syscall -1 never cross a module border.
 */
#ifndef HSM_ERR_H
#define HSM_ERR_H

enum {
	HSM_OK = 0,
	HSM_EINVAL = -1,	/* invalid argument or input */
	HSM_ENOMEM = -2,	/* out of memory */
	HSM_EIO = -3,		/* system call failed */
	HSM_ENOENT = -4,	/* no such object/file/key */
	HSM_EPIN = -5,		/* PIN incorrect */
	HSM_EPINLOCKED = -6,	/* PIN locked, or a retry would risk locking it */
	HSM_ETOKEN = -7,	/* token absent or not matching the URI */
	HSM_EMODULE = -8,	/* PKCS#11 module could not be loaded */
	HSM_EP11 = -9,		/* other PKCS#11 failure */
	HSM_ECRYPTO = -10,	/* OpenSSL failure */
	HSM_EPROTO = -11,	/* malformed message */
	HSM_ETIMEDOUT = -12,	/* deadline passed */
	HSM_EPERM = -13,	/* peer or caller not authorised */
	HSM_ECLOSED = -14,	/* peer closed / keyholder gone */
	HSM_EPOLICY = -15,	/* refused by policy (TTL, SPIFFE ID, ...) */
	HSM_ECONFIG = -16,	/* bad configuration */
	HSM_EBUSY = -17,	/* too many requests in flight */
	HSM_EAGAIN = -18,	/* operation in progress, try later */
	HSM_EUNSUPPORTED = -19,	/* algorithm or operation not supported */
	HSM_EEXIST = -20,	/* object already exists */
	HSM_ERR_MIN = -20
};

/* Static English text for a code; never NULL. */
const char *hsm_strerror(int code);

/*
 * Record a detail message for the current thread and return code, so a
 * failure site reads: return hsm_err(HSM_EPIN, "token %s: wrong PIN", l);
 * The detail replaces any previous one.
 */
int hsm_err(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append OpenSSL's error queue (first error) to a detail; returns code. */
int hsm_err_ossl(int code, const char *what);

/*
 * The current thread's detail, or "" if none, whatever its code (for tests
 * and for code that has just called the function that recorded it). Valid
 * until the next hsm_err.
 */
const char *hsm_err_detail(void);

/* Clear the current thread's detail. */
void hsm_err_clear(void);

/*
 * One line describing code: the detail when the last one recorded on this
 * thread was recorded with this very code, else hsm_strerror(code) (so a
 * code returned without a detail never carries an earlier, unrelated
 * message). Valid until the next hsm_err on this thread.
 */
const char *hsm_err_msg(int code);

#endif
