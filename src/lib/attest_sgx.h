/*
 * attest_sgx.h - the SGX kind of attestation evidence behind attest.h:
 * which enclaves may have a key certified.
 *
 * Evidence is an SGX DCAP quote (generalInfo HSM_OID_SGX_QUOTE, evtype.h).
 * It must verify against the configured collateral (sgxverify.h), the
 * enclave must satisfy the policy below, and the quote's report data must
 * be
 *
 *     SHA-256(the request's SubjectPublicKeyInfo DER) || nonce
 *
 * with a nonce of this CA no older than nonce_ttl (ev_nonce_check).
 * The functions here are what attest_sgx_ops calls, exposed so that the
 * policy can be tested without quotes and hsmesh inspect can load
 * collateral the same way.
 */
#ifndef HSM_ATTEST_SGX_H
#define HSM_ATTEST_SGX_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "attest.h"
#include "sgxverify.h"

struct attest_sgx_policy {
	char		*collateral;	/* file (JSON) or directory (Intel's files) */
	char		*test_root_pem;	/* insecure_test_root contents, or NULL */
	uint8_t		(*mrsigner)[32];
	size_t		 n_mrsigner;
	uint8_t		(*mrenclave)[32];
	size_t		 n_mrenclave;
	int		 has_prod_id;
	uint16_t	 prod_id;
	uint16_t	 min_isv_svn;
	unsigned	 tcb_ok;	/* bit (1 << enum sgx_tcb_status) per accepted status */
	int		 allow_debug;
	char		*id_template;	/* SPIFFE ID of attestation-only enrollments */
	/*
	 * collateral_grace: seconds for which expired collateral is still
	 * accepted (0, the default: never); a quote verified within it is
	 * audited with what had expired and by how long, and logged.
	 */
	int64_t		 collateral_grace;
};

/*
 * The policy part alone, on a verified result v (unit-testable without
 * quotes): the binding to spki and to a nonce of nonce_key no older than
 * p->nonce_ttl at now, then the enclave rules of sp, then the SPIFFE ID
 * template into r->spiffe_id. 0, or HSM_EPERM (binding) / HSM_EPOLICY with
 * r->why set. Does not touch r->u or r->verified.
 */
int attest_sgx_evaluate(const struct attest_sgx_policy *sp, const struct attest_policy *p,
    const struct sgx_verify_result *v, const uint8_t *spki, size_t spkilen,
    const uint8_t nonce_key[32], time_t now, struct attest_result *r);

/*
 * Expand an ID template: {trust_domain}, {mrenclave}, {mrsigner} (64 hex
 * digits), {isv_prod_id}, {isv_svn} (decimal). 0, or HSM_EINVAL for an
 * unknown {name}, an unclosed brace or an expansion longer than cap.
 */
int attest_sgx_expand_id(const char *tmpl, const char *trust_domain,
    const struct sgx_report_body *b, char *out, size_t cap);

/*
 * Load collateral from a file (JSON, dcap-qvl form) or a directory
 * (Intel's tcbInfo.json, qeIdentity.json, tcbSignChain.pem, rootCaCrl.der,
 * intermediateCaCrl.der, optional pckCert.pem + pckSignChain.pem).
 * Free with sgx_collateral_free().
 */
int attest_sgx_collateral_load(const char *path, struct sgx_collateral *c);

/* The SGX policy inside p, or NULL when p accepts no SGX quote. */
const struct attest_sgx_policy *attest_sgx_policy_of(const struct attest_policy *p);

#endif
