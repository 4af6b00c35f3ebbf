/*
 * sgxident.h - the SgxIdentity certificate extension: what the CA measured
 * of the enclave that holds an attested key, recorded in the certificate it
 * issues (docs/PROTOCOL.md, "Attestation"):
 *
 *   SgxIdentity ::= SEQUENCE {
 *       mrenclave   OCTET STRING (32), mrsigner OCTET STRING (32),
 *       isvProdId   INTEGER, isvSvn INTEGER,
 *       attributes  OCTET STRING (16), tcbStatus UTF8String }
 *
 * under OID HSM_OID_SGX_IDENTITY (evtype.h), non-critical.
 */
#ifndef HSM_SGXIDENT_H
#define HSM_SGXIDENT_H

#include <stddef.h>

#include <openssl/x509.h>

#include "sgxverify.h"

/* The extension for a verified quote's enclave. Caller frees *out. 0 or HSM_ECRYPTO. */
int sgxident_ext(const struct sgx_verify_result *v, X509_EXTENSION **out);

/*
 * One line describing x's SgxIdentity extension into buf ("MRENCLAVE ..,
 * MRSIGNER .., ISV product N, SVN N, production enclave, TCB UpToDate"):
 * 1 when present, 0 when absent, HSM_EPROTO when malformed (x comes from
 * anywhere: nothing of it is echoed but checked hex and printable text).
 */
int sgxident_describe(X509 *x, char *buf, size_t cap);

#endif
