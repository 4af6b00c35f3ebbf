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
 * Certificate chains and collateral dates are checked as sgxchain.h says;
 * the PCK certificate's TCB is read by sgxpck.h, the TCB Info and QE
 * Identity by sgxtcb.h, and the collateral decoded by sgxcollateral.h.
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

#include "sgxcollateral.h"	/* struct sgx_collateral and its two forms */
#include "sgxquote.h"
#include "sgxtcb.h"		/* enum sgx_tcb_status, sgx_parse_time */

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

/* Static names ("pck_chain", ...); never NULL. */
const char *sgx_step_name(enum sgx_step s);

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

#endif
