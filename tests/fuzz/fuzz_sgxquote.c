/*
 * fuzz_sgxquote.c - the SGX DCAP quote parser: any bytes, never a crash, and
 * every view it returns lies inside the input; then the PCK chain a quote
 * carries (certification data type 5) read and checked as the verifier
 * does it (sgxchain.h), against Intel's root, and its leaf's SGX
 * extension read (sgxpck.h) whether the chain holds or not.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sgxchain.h"
#include "sgxpck.h"
#include "sgxquote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The leaf's SGX extension: all of it, or nothing and a reason. */
static void
pck_tcb(X509 *leaf)
{
	static const struct sgx_pck_tcb zero;
	struct sgx_pck_tcb pt;
	int rc;

	rc = sgx_pck_tcb_parse(leaf, &pt);
	if (rc == 0 ? pt.have != 7 : hsm_err_detail()[0] == '\0' ||
	    memcmp(&pt, &zero, sizeof(pt)) != 0)
		abort();
	hsm_err_clear();
}

/* The quote's own PCK chain, as sgx_verify_quote() first takes it. */
static void
pck_chain(const struct sgx_quote *q)
{
	static struct sgx_cert root;
	struct sgx_chain ch;
	int rc;

	if (root.x == NULL && sgx_trust_root(NULL, &root) != 0)
		abort();
	rc = sgx_chain_read(q->cert_data, q->cert_len, SGX_CHAIN_PCK_QUOTE, &ch);
	if (rc != 0) {
		if (hsm_err_detail()[0] == '\0' || ch.n != 0)
			abort();
		return;
	}
	if (ch.n == 0 || ch.n > SGX_CHAIN_MAX)
		abort();
	for (size_t i = 0; i < ch.n; i++)
		if (ch.c[i].x == NULL || ch.c[i].der == NULL ||
		    ch.c[i].der_len == 0)
			abort();
	pck_tcb(sgx_chain_leaf(&ch));
	/* accepted (a genuine chain) or refused with a reason */
	rc = sgx_chain_check(&ch, SGX_CHAIN_PCK_QUOTE, &root);
	if (rc != 0 && (rc != HSM_EPERM || hsm_err_detail()[0] == '\0'))
		abort();
	sgx_chain_free(&ch);
}

/* [p, p+n) inside [buf, buf+len)? A NULL p is allowed only with n == 0. */
static int
inside(const uint8_t *buf, size_t len, const uint8_t *p, size_t n)
{
	if (p == NULL)
		return n == 0;
	return p >= buf && (size_t)(p - buf) <= len &&
	    n <= len - (size_t)(p - buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sgx_quote q;
	uint8_t *b;
	volatile uint8_t sink = 0;

	/* An exact-size heap copy, so ASan sees any read past the end. */
	if ((b = malloc(size ? size : 1)) == NULL)
		return 0;
	if (size > 0)
		memcpy(b, data, size);
	if (sgx_quote_parse(b, size, &q) == 0) {
		if (q.version != 3 && q.version != 4 && q.version != 5)
			abort();
		if (q.att_key_type != SGX_ATT_KEY_ECDSA_P256)
			abort();
		if (q.signed_data != b || !inside(b, size, q.signed_data,
		    q.signed_len))
			abort();
		if (!inside(b, size, q.sig, SGX_ECDSA_SIG_LEN) ||
		    !inside(b, size, q.att_key, SGX_ECDSA_KEY_LEN) ||
		    !inside(b, size, q.qe_report_raw, SGX_REPORT_BODY_LEN) ||
		    !inside(b, size, q.qe_report_sig, SGX_ECDSA_SIG_LEN) ||
		    !inside(b, size, q.qe_auth, q.qe_auth_len) ||
		    !inside(b, size, q.cert_data, q.cert_len))
			abort();
		if (q.sig == NULL || q.att_key == NULL ||
		    q.qe_report_raw == NULL || q.qe_report_sig == NULL)
			abort();
		/* The body matches the TEE: an SGX report or a TD report. */
		if (q.tee_type == SGX_TEE_TDX) {
			if (!inside(b, size, q.td_body, q.td_body_len) ||
			    q.td_body == NULL ||
			    (q.body_type == SGX_BODY_TD10 ?
			    q.td_body_len != SGX_TDX10_BODY_LEN :
			    q.body_type != SGX_BODY_TD15 ||
			    q.td_body_len != SGX_TDX15_BODY_LEN))
				abort();
			if (memcmp(q.td.report_data, q.td_body + 520, 64) != 0)
				abort();
		} else if (q.tee_type != SGX_TEE_SGX ||
		    q.body_type != SGX_BODY_SGX || q.td_body != NULL)
			abort();
		/* What is signed: header [+ descriptor] + body. */
		if (q.signed_len != SGX_QUOTE_HEADER_LEN +
		    (q.version == 5 ? SGX_BODY_DESC_LEN : 0) +
		    (q.tee_type == SGX_TEE_TDX ? q.td_body_len :
		    SGX_REPORT_BODY_LEN))
			abort();
		/* Only zero padding may follow the last structure. */
		if (q.padding_len > size)
			abort();
		for (size_t i = size - q.padding_len; i < size; i++)
			if (b[i] != 0)
				abort();
		/* Touch every byte the views claim. */
		for (size_t i = 0; i < q.cert_len; i++)
			sink ^= q.cert_data[i];
		for (size_t i = 0; i < q.qe_auth_len; i++)
			sink ^= q.qe_auth[i];
		if (q.cert_type == SGX_CERT_PCK_CHAIN)
			pck_chain(&q);
	} else if (hsm_err_detail()[0] == '\0')
		abort();	/* every refusal names its reason */
	(void)sink;
	free(b);
	hsm_err_clear();
	return 0;
}
