/*
 * sgxtcb.h - what the signed documents of SGX DCAP collateral say about a
 * platform and its quoting enclave: the TCB Info (v2, v3; SGX and TDX)
 * and the QE Identity, read the way Intel's QVL reads them: their dates,
 * the match of the quote's QE report and TDX module with them, the TCB
 * level the platform reaches and the status computed from it.
 *
 * Used by sgxverify.c, which first checks each document's signature and
 * issuer chain (the steps named below are sgxverify.h's). A document is
 * a json-c object; a member missing or of the wrong type is HSM_EPROTO,
 * a mismatch HSM_EPERM, each with a one-line detail that starts with the
 * step's name.
 */
#ifndef HSM_SGXTCB_H
#define HSM_SGXTCB_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sgxpck.h"
#include "sgxquote.h"

struct json_object;
struct sgx_expiry;

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

/* Static names ("UpToDate", ...); never NULL. */
const char *sgx_tcb_status_name(enum sgx_tcb_status s);

/* Parse "YYYY-MM-DDTHH:MM:SSZ" (UTC) into *t. 0 or HSM_EINVAL. */
int sgx_parse_time(const char *s, time_t *t);

#define SGX_ADVISORIES_MAX	512

/*
 * What the documents decide (the fields of the same names in struct
 * sgx_verify_result, sgxverify.h, say what each one means).
 */
struct sgx_tcb_verdict {
	enum sgx_tcb_status	tcb_status;
	enum sgx_tcb_status	platform_status;
	enum sgx_tcb_status	qe_status;
	enum sgx_tcb_status	sgx_level_status;
	enum sgx_tcb_status	tdx_module_status;
	char			tdx_module_id[8];
	char			advisories[SGX_ADVISORIES_MAX];	/* "A,B" */
};

/*
 * The collateral step for a document o (the TCB Info or the QE Identity,
 * named what in the detail): issueDate not after x->at, nextUpdate noted
 * in x (sgxchain.h). 0, HSM_EPROTO (missing or malformed) or HSM_EPOLICY.
 */
int sgx_json_dates(struct json_object *o, const char *what, struct sgx_expiry *x);

/*
 * The tcb_info step once the signature holds: version 2 or 3, an id that
 * names q's TEE (SGX; TDX only with version 3), tcbType 0 if given, and
 * FMSPC and PCEID equal to the PCK certificate's pt. 0, HSM_EUNSUPPORTED,
 * HSM_EPERM or HSM_EPROTO.
 */
int sgx_tcb_info_check(struct json_object *ti, const struct sgx_quote *q,
    const struct sgx_pck_tcb *pt);

/*
 * The tdx_module step: the module td names must be the TCB Info ti's
 * tdxModule or, when TEE_TCB_SVN[1] (its major version) is not zero, its
 * tdxModuleIdentities entry "TDX_%02X" (then *ident is that entry and
 * idname, of idlen bytes, its id; else NULL and ""): MRSIGNERSEAM equal,
 * SEAMATTRIBUTES equal under the mask. 0, HSM_EPERM or HSM_EPROTO.
 */
int sgx_tdx_module_check(struct json_object *ti, const struct sgx_td_report *td,
    struct json_object **ident, char *idname, size_t idlen);

/*
 * The qe_identity step once the signature holds: the id ("QE"; "TD_QE"
 * version 2 for TDX quotes), and q's QE report matching miscselect and
 * attributes under their masks, mrsigner and isvprodid. Sets v->qe_status
 * from the first level whose isvsvn the QE reaches (below every level:
 * Revoked, as Intel's QVL), and *level to that level (NULL when none).
 * 0, HSM_EPERM or HSM_EPROTO.
 */
int sgx_qe_identity_check(struct json_object *qi, const struct sgx_quote *q,
    struct json_object **level, struct sgx_tcb_verdict *v);

/*
 * The tcb_level step: the platform's status from the TCB Info ti for the
 * PCK TCB pt and quote q (TDX: also TEE_TCB_SVN, and the module's SVN
 * against ident, the identity sgx_tdx_module_check chose, if any; TD 1.5:
 * the "TD relaunch advised" check), converged with v->qe_status as
 * Intel's QVL does. Sets v's statuses and appends the advisories of the
 * TCB level, the module level, then qe_level (may be NULL). 0, HSM_EPERM
 * (TCB not supported) or HSM_EPROTO.
 */
int sgx_tcb_level(struct json_object *ti, const struct sgx_pck_tcb *pt,
    const struct sgx_quote *q, struct json_object *ident,
    struct json_object *qe_level, struct sgx_tcb_verdict *v);

#endif
