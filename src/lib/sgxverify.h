/*
 * sgxverify.h - verification of SGX DCAP quotes against Intel's PKI and
 * offline collateral (TCB Info, QE Identity, CRLs).
 *
 * Steps, in order; the first that fails is named in the result and in the
 * hsm_err() detail:
 *   parse        quote structure (sgxquote.h); PCK chain PEM present
 *   pck_chain    the chain's shape (sgxchain.h): exactly PCK leaf,
 *                intermediate CA, root, in that order, the root self-signed
 *                and byte for byte the trusted root
 *   collateral   collateral decodes; TCB Info / QE Identity issueDate and
 *                the CRLs' lastUpdate passed; nothing expired (TCB Info /
 *                QE Identity / CRL nextUpdate, any certificate's notAfter)
 *                for opts->collateral_grace or longer (else "expired")
 *   pck_chain    the PCK CRL's issuer chain (CA, root; the CRL signed by
 *                that CA); PCK leaf -> intermediate -> trusted root, with
 *                the root CA CRL and the PCK (intermediate) CRL, at opts->at
 *   qe_report_sig   QE report signed by the PCK leaf key
 *   qe_report_data  QE report data == SHA-256(att key || QE auth) || 0^32
 *   quote_sig    header + enclave report signed by the attestation key
 *   tcb_info     TCB Info signature (exact JSON bytes) by its issuer chain
 *                (exactly signer, root: sgxchain.h) to the trusted root; its
 *                id names the quote's TEE
 *                (SGX, or TDX with TCB Info v3); FMSPC/PCEID match the
 *                PCK cert
 *   tdx_module   TDX only: MRSIGNERSEAM and SEAMATTRIBUTES match the TCB
 *                Info's tdxModule or, when TEE_TCB_SVN[1] (the module's
 *                major version) > 0, its tdxModuleIdentities["TDX_%02X"]
 *   qe_identity  QE Identity ("QE", or "TD_QE" v2 for TDX) signature by its
 *                issuer chain (as tcb_info's) and the QE report matching it
 *   tcb_level    PCK TCB (16 SVNs + PCESVN) matched against tcbLevels;
 *                TDX: also TEE_TCB_SVN against the levels' TDX components
 *                and the TDX module's SVN against its identity's levels
 *
 * The trust anchor is Intel's production SGX Root CA, built in. A caller
 * can replace it only through opts->insecure_test_root_pem, for tests.
 * Certificate chains and collateral dates are checked as sgxchain.h says.
 * SGX quotes (v3; v4/v5 with an SGX body) and TDX quotes (v4 with a TD
 * 1.0 body, v5 with a TD 1.0 or 1.5 body) are verified the way Intel's
 * QVL does; the TCB status is computed like QVL's (TDX: the TDX TCB level
 * converged with the TDX module's status, for TD 1.5 the "TD relaunch
 * advised" check, then the QE's status).
 */
#ifndef HSM_SGXVERIFY_H
#define HSM_SGXVERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sgxquote.h"

enum sgx_step {
	SGX_STEP_NONE = 0,
	SGX_STEP_PARSE,
	SGX_STEP_COLLATERAL,
	SGX_STEP_PCK_CHAIN,
	SGX_STEP_QE_REPORT_SIG,
	SGX_STEP_QE_REPORT_DATA,
	SGX_STEP_QUOTE_SIG,
	SGX_STEP_TCB_INFO,
	SGX_STEP_QE_IDENTITY,
	SGX_STEP_TCB_LEVEL,
	SGX_STEP_TDX_MODULE
};

enum sgx_tcb_status {
	SGX_TCB_UNKNOWN = 0,
	SGX_TCB_UP_TO_DATE,
	SGX_TCB_SW_HARDENING_NEEDED,
	SGX_TCB_CONFIGURATION_NEEDED,
	SGX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED,
	SGX_TCB_OUT_OF_DATE,
	SGX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED,
	SGX_TCB_REVOKED,
	/* TDX 1.5 only, computed (never a TCB Info level's status) */
	SGX_TCB_TD_RELAUNCH_ADVISED,
	SGX_TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
};

/* Static names ("pck_chain", "UpToDate", ...); never NULL. */
const char *sgx_step_name(enum sgx_step s);
const char *sgx_tcb_status_name(enum sgx_tcb_status s);

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

struct sgx_verify_opts {
	time_t		 at;	/* verification time (required, > 0) */
	/*
	 * NULL: trust only Intel's production SGX Root CA (built in).
	 * Otherwise a PEM certificate used INSTEAD of it. Never set this
	 * outside tests: anyone can mint a root with Intel's name.
	 */
	const char	*insecure_test_root_pem;
	/*
	 * Seconds (>= 0; 0 by default) for which expired collateral is still
	 * accepted, and reported in the result (Intel's QvE returns a
	 * collateral-expired flag beside its verdict and leaves the choice to
	 * the relying party; this is that choice, bounded).
	 */
	int64_t		 collateral_grace;
};

#define SGX_ADVISORIES_MAX	512
#define SGX_EXPIRED_ITEMS_MAX	192

struct sgx_verify_result {
	enum sgx_step		failed_step;	/* also set on failure */
	enum sgx_tcb_status	tcb_status;	/* platform converged with QE */
	/* SGX: the platform's TCB level; TDX: the TDX TCB level converged
	 * with the TDX module (and the TD relaunch check), before the QE */
	enum sgx_tcb_status	platform_status;
	enum sgx_tcb_status	qe_status;
	/* SGX: the enclave's; TDX: the TDX TCB level's, the TDX module
	 * level's and the QE's */
	char			advisories[SGX_ADVISORIES_MAX]; /* "A,B" */
	/* SGX only: the ISV enclave; ALL ZERO for a TDX quote */
	struct sgx_report_body	enclave;
	uint8_t			fmspc[6];
	uint8_t			pceid[2];
	uint16_t		pcesvn;
	/*
	 * The earliest expiry of the collateral, as Intel's QvE reckons it:
	 * TCB Info's and QE Identity's nextUpdate, both CRLs' nextUpdate,
	 * every certificate's notAfter (the quote's PCK chain, the TCB Info,
	 * QE Identity and PCK CRL issuer chains).
	 */
	time_t			collateral_expiry;
	/*
	 * QvE's collateral-expired flag: 1 when opts->at >= collateral_expiry,
	 * which a verification passes only within opts->collateral_grace:
	 * "grace used", to be audited. collateral_expired_by is opts->at -
	 * collateral_expiry (seconds); collateral_expired_items names what
	 * had expired, comma-separated ("qe_identity,tcb_info,pck_crl").
	 */
	int			collateral_expired;
	int64_t			collateral_expired_by;
	char			collateral_expired_items[SGX_EXPIRED_ITEMS_MAX];

	/* What was verified: SGX_TEE_SGX or SGX_TEE_TDX, quote version */
	uint32_t		tee_type;
	uint16_t		quote_version;
	/* TDX only (zero for SGX): the TD report body */
	struct sgx_td_report	td;
	/* TDX only: the status of the first TCB level the SGX components
	 * reach; the TDX module identity ("TDX_01") and its level's status
	 * (empty / SGX_TCB_UNKNOWN when TEE_TCB_SVN[1] is 0) */
	enum sgx_tcb_status	sgx_level_status;
	char			tdx_module_id[8];
	enum sgx_tcb_status	tdx_module_status;
};

/*
 * Verify quote against collateral c at opts->at. *res is cleared on
 * entry. On success (0) every step passed and res holds the TCB status,
 * advisories and the enclave identity (SGX: res->enclave) or the TD's
 * measurements (TDX: res->td, res->enclave all zero): whether a status
 * other than UpToDate, or a TDX quote at all, is acceptable is the
 * caller's policy; check res->tee_type, and res->collateral_expired (the
 * grace was used). On failure returns a negative HSM_E* (HSM_EPROTO
 * malformed, HSM_EPERM signature/chain/match refused, HSM_EPOLICY
 * collateral expired beyond the grace or not yet valid, HSM_EUNSUPPORTED,
 * HSM_EINVAL bad arguments, HSM_ECONFIG bad test root) and sets only
 * res->failed_step.
 */
int sgx_verify_quote(const uint8_t *quote, size_t len,
    const struct sgx_collateral *c, const struct sgx_verify_opts *opts,
    struct sgx_verify_result *res);

/*
 * FOR TESTS ONLY: the TCB status computation of sgx_verify_quote() (the
 * steps tdx_module and tcb_level) run on a TCB Info JSON text that is NOT
 * verified, for a platform whose PCK TCB is comp[16] / pcesvn, a parsed
 * quote q (whose TD report fields a test may change) and a QE status
 * already known. Fills res->tcb_status, platform_status,
 * sgx_level_status, tdx_module_id / _status and advisories (platform and
 * module levels only); on failure only res->failed_step. It proves
 * nothing about a quote: never use it to accept one.
 */
int sgx_tcb_evaluate_unverified(const char *tcb_info, size_t len,
    const uint16_t comp[16], uint16_t pcesvn, const struct sgx_quote *q,
    enum sgx_tcb_status qe_status, struct sgx_verify_result *res);

/* Parse "YYYY-MM-DDTHH:MM:SSZ" (UTC) into *t. 0 or HSM_EINVAL. */
int sgx_parse_time(const char *s, time_t *t);

#endif
