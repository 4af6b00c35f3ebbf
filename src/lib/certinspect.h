/*
 * certinspect.h - certificates and CSRs printed for people (hsmesh
 * inspect): every field quoted from the input is escaped, and nothing is
 * printed unless the whole input parses. Parsing itself is cert.h's.
 * The input is untrusted: fuzzed by tests/fuzz/fuzz_csr.c.
 */
#ifndef HSM_CERTINSPECT_H
#define HSM_CERTINSPECT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/x509.h>

/*
 * Print every certificate and CSR in buf (PEM, possibly several blocks, or
 * one DER object) readably on f: type, subject, issuer, serial, SPIFFE
 * IDs, key type and key id, validity with a note, CA flag, key usage, EKU.
 * Nothing is printed unless the whole input parses. 0 or HSM_EINVAL
 * ("not a certificate or CSR: ...").
 */
int cert_inspect(const uint8_t *buf, size_t len, FILE *f);

/*
 * Lines for extensions cert_inspect cannot read itself (e.g. what an
 * attested key's certificate records of its evidence,
 * attest_identity_describe): for i = 0, 1, ... it returns 1 with *label
 * and buf set (printed as "label: buf"), 0 to print nothing for i, < 0 to
 * print "label: (malformed)", and HSM_ENOENT after the last.
 */
typedef int (*cert_ext_line_fn)(X509 *x, size_t i, const char **label, char *buf, size_t cap);

/* cert_inspect, with ext's lines after the key usages of each certificate (ext may be NULL). */
int cert_inspect_ext(const uint8_t *buf, size_t len, cert_ext_line_fn ext, FILE *f);

#endif
