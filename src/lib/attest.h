/*
 * attest.h - the CA's attestation policy: which SGX enclaves may have a
 * key certified, and the binding of a quote to the very key and to a
 * fresh CA nonce (docs/PROTOCOL.md, "Attestation").
 *
 * A certificate request may carry an SGX DCAP quote in the CMP header's
 * generalInfo (ITAV HSM_OID_SGX_QUOTE, OCTET STRING). The CA issues only
 * when the quote verifies against the configured collateral
 * (sgxverify.h), the enclave satisfies the policy, and the quote's
 * report data is
 *
 *     SHA-256(the request's SubjectPublicKeyInfo DER) || nonce
 *
 * where nonce is a 32-byte value the CA handed out (genm with ITAV
 * HSM_OID_ATTEST_NONCE) no longer than nonce_ttl ago. Nonces are
 * stateless: be64(issue time) || HMAC-SHA256(key, label || be64(time))[:24],
 * so any CA replica sharing the join-token key accepts them and an
 * unauthenticated genm costs no memory. A nonce may be used more than
 * once within its lifetime: a replayed quote is worthless without the
 * private key it names (the request's proof of possession).
 */
#ifndef HSM_ATTEST_H
#define HSM_ATTEST_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "sgxverify.h"

struct cfg_doc;

/* Our OID arc (a UUID arc, X.667): 2.25.87529635398249573420365783529533619489 */
#define HSM_OID_ARC		"2.25.87529635398249573420365783529533619489"
#define HSM_OID_ATTEST_NONCE	HSM_OID_ARC ".1"	/* genm request / genp answer */
#define HSM_OID_SGX_QUOTE	HSM_OID_ARC ".2"	/* generalInfo of ir/cr/kur */
#define HSM_OID_SGX_IDENTITY	HSM_OID_ARC ".3"	/* certificate extension */

#define ATTEST_NONCE_LEN	32
#define ATTEST_QUOTE_MAX	(64 * 1024)

struct attest_policy {
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
	int		 require;	/* every certificate request must carry a quote */
	int64_t		 nonce_ttl;	/* seconds */
	char		*id_template;	/* SPIFFE ID of attestation-only enrollments */
	char		*trust_domain;
};

/*
 * Read the "attestation:" section of ca.yaml (section names it) into
 * *out, or *out = NULL when the section is absent. The collateral is
 * loaded once here so a bad path fails at start. 0 or HSM_ECONFIG.
 */
int attest_policy_load(const struct cfg_doc *d, const char *section, const char *trust_domain,
    struct attest_policy **out);
void attest_policy_free(struct attest_policy *p);

/* What a check measured and decided (valid fields depend on the step reached). */
struct attest_result {
	int			 verified;	/* the quote verified (then the values below hold) */
	struct sgx_verify_result v;
	char			 why[256];	/* refusal reason, one line */
	char			 spiffe_id[2049];	/* id_template expanded */
};

/*
 * Verify quote against p's collateral at now and evaluate the policy and
 * the binding to spki (the request's SubjectPublicKeyInfo DER) and to a
 * nonce made with nonce_key. 0 (accepted) or HSM_EPOLICY / HSM_EPERM /
 * HSM_EPROTO with r->why saying why. The collateral is read again at
 * every check (enrollments are rare next to its cost), so a refreshed
 * file (Intel publishes new TCB Info monthly) counts without a restart.
 */
int attest_check(const struct attest_policy *p, const uint8_t *quote, size_t len,
    const uint8_t *spki, size_t spkilen, const uint8_t nonce_key[32], time_t now,
    struct attest_result *r);

/* The policy part alone, on a verified result (unit-testable without quotes). */
int attest_evaluate(const struct attest_policy *p, const struct sgx_verify_result *v,
    const uint8_t *spki, size_t spkilen, const uint8_t nonce_key[32], time_t now,
    struct attest_result *r);

/* Derive the nonce key from the CA's join-token key (shared by replicas). */
void attest_nonce_key(const uint8_t token_key[32], uint8_t out[32]);
void attest_nonce_make(const uint8_t key[32], time_t now, uint8_t out[ATTEST_NONCE_LEN]);
/* 0 when nonce was made with key no more than ttl seconds before now; else HSM_EPOLICY. */
int attest_nonce_check(const uint8_t key[32], const uint8_t nonce[ATTEST_NONCE_LEN], time_t now,
    int64_t ttl);

/*
 * Expand an ID template: {trust_domain}, {mrenclave}, {mrsigner} (64 hex
 * digits), {isv_prod_id}, {isv_svn} (decimal). 0, or HSM_EINVAL for an
 * unknown {name}, an unclosed brace or an expansion longer than cap.
 */
int attest_expand_id(const char *tmpl, const char *trust_domain, const struct sgx_report_body *b,
    char *out, size_t cap);

/*
 * The measured identity of an attested key, recorded in its certificate
 * as a non-critical extension HSM_OID_SGX_IDENTITY:
 *
 *   SgxIdentity ::= SEQUENCE {
 *       mrenclave   OCTET STRING (32), mrsigner OCTET STRING (32),
 *       isvProdId   INTEGER, isvSvn INTEGER,
 *       attributes  OCTET STRING (16), tcbStatus UTF8String }
 *
 * 0 or HSM_ECRYPTO.
 */
int attest_identity_ext(const struct sgx_verify_result *v, X509_EXTENSION **out);
/*
 * One line describing x's SgxIdentity extension into buf: 1 when present,
 * 0 when absent, HSM_EPROTO when malformed.
 */
int attest_identity_describe(X509 *x, char *buf, size_t cap);

/*
 * Load collateral from a file (JSON, dcap-qvl form) or a directory
 * (Intel's tcbInfo.json, qeIdentity.json, tcbSignChain.pem, rootCaCrl.der,
 * intermediateCaCrl.der, optional pckCert.pem + pckSignChain.pem).
 */
int attest_collateral_load(const char *path, struct sgx_collateral *c);

#endif
