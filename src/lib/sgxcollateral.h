/*
 * sgxcollateral.h - the offline collateral of SGX DCAP quote verification
 * (TCB Info, QE Identity, their signatures and issuer chains, the CRLs), as
 * read from the two forms it comes in: one JSON file (dcap-qvl / PCCS
 * clients) or Intel's PCS files. Only decoded here, never trusted:
 * sgxverify.h checks the signatures, chains and dates, sgxtcb.h reads the
 * signed documents. The input is untrusted: fuzzed by
 * tests/fuzz/fuzz_sgxcollateral.c.
 */
#ifndef HSM_SGXCOLLATERAL_H
#define HSM_SGXCOLLATERAL_H

#include <stddef.h>
#include <stdint.h>

#define SGX_COLL_MAX	(1U << 20)	/* the largest collateral item, bytes */

/*
 * Offline collateral, owned (malloc'd) by the struct; free it with
 * sgx_collateral_free(). tcb_info and qe_identity are the EXACT signed
 * JSON texts of the "tcbInfo" / "enclaveIdentity" objects; the chains
 * are NUL-terminated PEM; the CRLs are DER.
 */
struct sgx_collateral {
	char		*tcb_info;
	size_t		 tcb_info_len;
	uint8_t		 tcb_info_sig[64];	/* r || s */
	char		*tcb_info_chain;
	char		*qe_identity;
	size_t		 qe_identity_len;
	uint8_t		 qe_identity_sig[64];
	char		*qe_identity_chain;
	uint8_t		*root_crl;
	size_t		 root_crl_len;
	uint8_t		*pck_crl;
	size_t		 pck_crl_len;
	/*
	 * Optional PEM PCK chain (leaf, intermediate CA, root), used
	 * only when the quote carries no PCK chain itself (certification
	 * data types 1-3: the verifier fetched the PCK certificate by PPID).
	 */
	char		*pck_chain;
	/*
	 * The PCK CRL's issuer chain (PEM: CA, root). Required in the JSON
	 * form; Intel's directory form has none (NULL: not checked, the PCK
	 * CRL is still verified under the PCK chain's intermediate).
	 */
	char		*pck_crl_chain;
};

/*
 * Decode collateral in the JSON form used by dcap-qvl / PCCS clients:
 * an object with string members tcb_info, tcb_info_signature (hex),
 * tcb_info_issuer_chain, qe_identity, qe_identity_signature,
 * qe_identity_issuer_chain, root_ca_crl (hex DER), pck_crl (hex DER),
 * pck_crl_issuer_chain.
 * *c is cleared on entry. 0, HSM_EPROTO (detail names the member) or
 * HSM_ENOMEM.
 */
int sgx_collateral_from_json(const char *json, size_t len,
    struct sgx_collateral *c);
void sgx_collateral_free(struct sgx_collateral *c);

/*
 * Build collateral from the files Intel's PCS / QVL use: tcbinfo is
 * {"tcbInfo":{...},"signature":"hex"}, qeid is
 * {"enclaveIdentity":{...},"signature":"hex"} (the signed bytes are the
 * exact text of the inner object, taken verbatim from the input),
 * tcb_chain the TCB signing chain PEM (also used for the QE identity),
 * root_crl / pck_crl DER, and pck_chain an optional PEM PCK chain (see
 * above; NULL if the quotes carry their own). pck_crl_chain is left
 * NULL (a caller may set it). *c is cleared on entry.
 * 0, HSM_EPROTO (detail names the member) or HSM_ENOMEM.
 */
int sgx_collateral_from_intel(const char *tcbinfo, size_t tcbinfo_len,
    const char *qeid, size_t qeid_len, const char *tcb_chain,
    const uint8_t *root_crl, size_t root_crl_len,
    const uint8_t *pck_crl, size_t pck_crl_len, const char *pck_chain,
    struct sgx_collateral *c);

#endif
