/*
 * sgxpck.h - the SGX extension of a PCK certificate (OID
 * 1.2.840.113741.1.13.1): the platform's TCB as Intel certified it, which
 * SGX DCAP quote verification (sgxverify.h) matches against the TCB Info's
 * levels (sgxtcb.h). The certificate travels in the quote, a peer's bytes:
 * the reader distrusts every length and is fuzzed by
 * tests/fuzz/fuzz_sgxquote.c.
 */
#ifndef HSM_SGXPCK_H
#define HSM_SGXPCK_H

#include <stdint.h>

#include <openssl/x509.h>

/* What the extension says (the members Intel's QVL reads). */
struct sgx_pck_tcb {
	unsigned	comp[16];	/* SGX TCB component SVNs 1..16 */
	unsigned	pcesvn;
	uint8_t		fmspc[6];
	uint8_t		pceid[2];
	int		have;	/* bit 0 tcb, 1 fmspc, 2 pceid */
};

/*
 * Read leaf's SGX extension into *pt (cleared on entry, and again on
 * failure): the TCB (16 component SVNs and the PCESVN), FMSPC and PCE ID
 * must all be there; other members are skipped. 0, HSM_EPROTO ("pck: no
 * SGX extension", "pck: malformed SGX extension") or HSM_ECRYPTO.
 */
int sgx_pck_tcb_parse(X509 *leaf, struct sgx_pck_tcb *pt);

#endif
