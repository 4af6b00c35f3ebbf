/*
 * attest.h - the CA's attestation policy: which attested keys may be
 * certified, and the binding of evidence to the very key and to a fresh CA
 * nonce (docs/PROTOCOL.md, "Attestation").
 *
 * A certificate request may carry evidence in the CMP header's generalInfo
 * (an InfoTypeAndValue whose type names the kind of evidence, evtype.h).
 * The CA issues only when the evidence verifies, satisfies the policy of
 * its kind, and binds the request's SubjectPublicKeyInfo and a nonce the
 * CA handed out no longer than nonce_ttl ago (ev_nonce_make).
 *
 * This interface is the same for every kind of evidence: a result is a
 * tagged union (type + the kind's verified values) and every operation
 * dispatches to the kind's checker through struct attest_ops. Today one
 * kind exists, Intel SGX DCAP quotes (attest_sgx.h).
 */
#ifndef HSM_ATTEST_H
#define HSM_ATTEST_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "evtype.h"
#include "sgxverify.h"

struct cfg_doc;
struct attest_sgx_policy;

#define ATTEST_WHY_MAX 256
#define ATTEST_ID_MAX 2049	/* a SPIFFE ID and its NUL */

/* The "attestation:" section of ca.yaml. */
struct attest_policy {
	int		 require;	/* every certificate request must carry evidence */
	int		 node_identity;	/* identity: node -- attested enrollments are nodes' */
	int64_t		 nonce_ttl;	/* seconds */
	char		*trust_domain;
	struct attest_sgx_policy *sgx;	/* SGX quotes: what is accepted (attest_sgx.h) */
};

/* What a check measured and decided (valid fields depend on the step reached). */
struct attest_result {
	enum ev_type	 type;		/* the kind of evidence checked */
	int		 verified;	/* the evidence verified (then u holds its values) */
	char		 why[ATTEST_WHY_MAX];	/* refusal reason, one line */
	char		 spiffe_id[ATTEST_ID_MAX];	/* the ID the policy names, if any */
	union {
		struct sgx_verify_result sgx;	/* EV_SGX */
	} u;
};

/* Audit fields of a result: key, value, ..., NULL, values kept in text. */
#define ATTEST_AUDIT_KV 32
struct attest_audit {
	const char	*kv[ATTEST_AUDIT_KV + 1];
	char		 text[768];
};

/*
 * A kind of evidence behind this interface. Each function receives the
 * kind's own policy (what policy_load made); none may be NULL.
 */
struct attest_ops {
	enum ev_type type;
	/* Read the kind's settings of section into *out. 0 or HSM_ECONFIG/HSM_ENOMEM. */
	int (*policy_load)(const struct cfg_doc *d, const char *section, const char *trust_domain,
	    void **out);
	void (*policy_free)(void *kp);
	/*
	 * Verify len bytes of evidence at now, then the kind's policy and the
	 * binding to spki and to a nonce of nonce_key (no older than
	 * p->nonce_ttl). Fills r (r->type already set). 0 or an HSM_E* code
	 * with r->why set.
	 */
	int (*check)(const void *kp, const struct attest_policy *p, const uint8_t *ev, size_t len,
	    const uint8_t *spki, size_t spkilen, const uint8_t nonce_key[32], time_t now,
	    struct attest_result *r);
	/* The certificate extension recording a verified result's measurements. */
	int (*identity_ext)(const struct attest_result *r, X509_EXTENSION **out);
	/* Describe that extension of x: 1 present (buf filled), 0 absent, < 0 malformed. */
	int (*identity_describe)(X509 *x, char *buf, size_t cap);
	/* The kind's audit fields of r, appended to a (after "evidence"). */
	void (*audit_fields)(const struct attest_result *r, struct attest_audit *a);
	/* The ledger's auth tag of a verified result, e.g. "sgx:<16 hex digits>". */
	void (*auth_tag)(const struct attest_result *r, char *buf, size_t cap);
	/* One line for the start-up log: what the policy accepts. */
	void (*describe)(const void *kp, const struct attest_policy *p, char *buf, size_t cap);
};

/*
 * Read the "attestation:" section of ca.yaml (section names it) into
 * *out, or *out = NULL when the section is absent. Collateral is loaded
 * once here so a bad path fails at start. 0 or HSM_ECONFIG (HSM_ENOMEM).
 */
int attest_policy_load(const struct cfg_doc *d, const char *section, const char *trust_domain,
    struct attest_policy **out);
/* Free a policy. Accepts NULL. */
void attest_policy_free(struct attest_policy *p);

/*
 * The i-th kind of evidence p accepts (i = 0, 1, ...), or NULL past the
 * last; p may be NULL (accepts none).
 */
const struct ev_type_info *attest_accepted(const struct attest_policy *p, size_t i);

/*
 * Check len bytes of evidence of kind type against p at now (see struct
 * attest_ops). r is cleared first and r->type set. 0 (accepted), or
 * HSM_EPOLICY / HSM_EPERM / HSM_EPROTO with r->why saying why;
 * HSM_EUNSUPPORTED when p accepts no evidence of that kind.
 */
int attest_check(const struct attest_policy *p, enum ev_type type, const uint8_t *ev, size_t len,
    const uint8_t *spki, size_t spkilen, const uint8_t nonce_key[32], time_t now,
    struct attest_result *r);

/*
 * The certificate extension of a verified result. Caller frees *out. 0,
 * HSM_EINVAL (nothing verified) or HSM_ECRYPTO.
 */
int attest_identity_ext(const struct attest_result *r, X509_EXTENSION **out);

/*
 * Fill a with the audit fields of r: "evidence" (the kind's name), the
 * kind's measurements when verified, then "id" and "reason" when set.
 */
void attest_audit_fields(const struct attest_result *r, struct attest_audit *a);

/* The auth tag of a verified result into buf ("" for an unknown kind). */
void attest_auth_tag(const struct attest_result *r, char *buf, size_t cap);

/* One start-up log line per accepted kind: call with i = 0, 1, ... while it returns 1. */
int attest_describe(const struct attest_policy *p, size_t i, char *buf, size_t cap);

/*
 * The i-th evidence identity extension x carries (i = 0, 1, ... over the
 * known kinds): 1 with *label (e.g. "sgx identity") and buf set, 0 when x
 * has none of kind i, < 0 malformed (*label set), or HSM_ENOENT past the
 * last kind. For hsmesh inspect.
 */
int attest_identity_describe(X509 *x, size_t i, const char **label, char *buf, size_t cap);

/*
 * Append key=value to a, the value copied into a->text; a value that
 * does not fit, or a pair past ATTEST_AUDIT_KV, is left out. For the
 * kinds' audit_fields.
 */
static inline void
attest_audit_add(struct attest_audit *a, const char *key, const char *value)
{
	size_t n = 0, used = 0, len = strlen(value);

	while (n < ATTEST_AUDIT_KV && a->kv[n] != NULL)
		n += 2;
	for (size_t i = 1; i < n; i += 2)
		used += strlen(a->kv[i]) + 1;
	if (n + 2 > ATTEST_AUDIT_KV || used + len + 1 > sizeof(a->text))
		return;
	memcpy(a->text + used, value, len + 1);
	a->kv[n] = key;
	a->kv[n + 1] = a->text + used;
	a->kv[n + 2] = NULL;
}

/* The kinds behind this interface (attest_sgx.c). */
extern const struct attest_ops attest_sgx_ops;

#endif
