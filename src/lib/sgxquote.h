/*
 * sgxquote.h - parser for Intel SGX DCAP quotes (ECDSA P-256).
 *
 * A pure parser: no I/O, no allocation, no cryptography. It checks the
 * structure (every length and offset against the buffer) and returns a
 * view of the quote whose pointers point INTO the caller's buffer; the
 * buffer must outlive the struct sgx_quote. Nothing is verified here:
 * see sgxverify.h for signatures, certificates and collateral.
 *
 * Supported: quote version 3 (SGX), version 4 (SGX, or TDX with a TD
 * 1.0 report body) and version 5 (a body descriptor after the header:
 * type 1 SGX enclave report, 2 TD report 1.0, 3 TD report 1.5).
 * Attestation key type 2 (ECDSA-256 with P-256), and any certification
 * data type (type 5, the PEM PCK chain, is what sgxverify.h uses). In
 * versions 4 and 5 the QE report is carried in certification data of
 * type 6 ("QE report certification data"), which is unwrapped here.
 */
#ifndef HSM_SGXQUOTE_H
#define HSM_SGXQUOTE_H

#include <stddef.h>
#include <stdint.h>

#define SGX_QUOTE_HEADER_LEN	48
#define SGX_REPORT_BODY_LEN	384
#define SGX_TDX10_BODY_LEN	584	/* TD report body, TDX 1.0 */
#define SGX_TDX15_BODY_LEN	648	/* TDX 1.5: + TEE_TCB_SVN2, MRSERVICETD */
#define SGX_BODY_DESC_LEN	6	/* v5: body type (u16) + size (u32) */
#define SGX_ECDSA_SIG_LEN	64	/* r || s, big-endian, 32 bytes each */
#define SGX_ECDSA_KEY_LEN	64	/* x || y, big-endian, 32 bytes each */
#define SGX_QUOTE_MAX		(1U << 20)	/* refuse anything larger */

#define SGX_ATT_KEY_ECDSA_P256	2
#define SGX_TEE_SGX		0x00000000U
#define SGX_TEE_TDX		0x00000081U
#define SGX_CERT_PPID_CLEAR	1
#define SGX_CERT_PCK_CHAIN	5	/* PEM: PCK leaf, intermediate CA, root */
#define SGX_CERT_QE_REPORT	6	/* v4: QE report + sig + auth + inner cert */

/* Body types (the v5 body descriptor; implied by the TEE type in v3/v4) */
#define SGX_BODY_SGX		1	/* SGX enclave report, 384 bytes */
#define SGX_BODY_TD10		2	/* TD report body 1.0, 584 bytes */
#define SGX_BODY_TD15		3	/* TD report body 1.5, 648 bytes */

/* An SGX report body (enclave or QE report); 384 bytes on the wire. */
struct sgx_report_body {
	uint8_t		cpusvn[16];
	uint32_t	miscselect;
	uint8_t		isv_ext_prod_id[16];
	uint8_t		attributes[16];	/* flags (LE u64) || xfrm (LE u64) */
	uint8_t		mrenclave[32];
	uint8_t		mrsigner[32];
	uint8_t		config_id[64];
	uint16_t	isv_prod_id;
	uint16_t	isv_svn;
	uint16_t	config_svn;
	uint8_t		isv_family_id[16];
	uint8_t		report_data[64];
};

#define SGX_ATTR_DEBUG	0x02	/* bit 1 of attributes[0] */

/*
 * A TD report body (TDX 1.0: 584 bytes on the wire; TDX 1.5: 648, the
 * last two fields added). Byte arrays in wire order.
 */
struct sgx_td_report {
	uint8_t		tee_tcb_svn[16]; /* [0] module SVN, [1] module major */
	uint8_t		mrseam[48];
	uint8_t		mrsignerseam[48];	/* zero for Intel's module */
	uint8_t		seam_attributes[8];
	uint8_t		td_attributes[8];	/* TUD.DEBUG = bit 0 of [0] */
	uint8_t		xfam[8];
	uint8_t		mrtd[48];
	uint8_t		mrconfigid[48];
	uint8_t		mrowner[48];
	uint8_t		mrownerconfig[48];
	uint8_t		rtmr[4][48];
	uint8_t		report_data[64];
	uint8_t		tee_tcb_svn2[16];	/* TDX 1.5 only, else zero */
	uint8_t		mrservicetd[48];	/* TDX 1.5 only, else zero */
};

#define SGX_TD_ATTR_DEBUG	0x01	/* bit 0 of td_attributes[0] */

struct sgx_quote {
	/* header */
	uint16_t	version;	/* 3, 4 or 5 */
	uint16_t	att_key_type;	/* SGX_ATT_KEY_ECDSA_P256 */
	uint32_t	tee_type;	/* SGX_TEE_SGX or (v4) SGX_TEE_TDX */
	uint16_t	qe_svn;
	uint16_t	pce_svn;
	uint8_t		qe_vendor_id[16];
	uint8_t		user_data[20];

	/* SGX_BODY_*: from the v5 body descriptor, else from tee_type */
	uint16_t	body_type;

	/* ISV enclave report; only for tee_type SGX (zero for TDX) */
	struct sgx_report_body	enclave;
	/* TDX: the TD report body, raw (td_body_len bytes) and parsed */
	const uint8_t	*td_body;	/* NULL for SGX */
	size_t		 td_body_len;	/* SGX_TDX10_BODY_LEN or _TDX15_ */
	struct sgx_td_report	td;	/* zero for SGX */

	/* header [+ body descriptor] + body: signed by the attestation key */
	const uint8_t	*signed_data;
	size_t		 signed_len;

	/* signature data */
	const uint8_t	*sig;		/* SGX_ECDSA_SIG_LEN */
	const uint8_t	*att_key;	/* SGX_ECDSA_KEY_LEN */
	struct sgx_report_body	qe_report;
	const uint8_t	*qe_report_raw;	/* SGX_REPORT_BODY_LEN, signed by PCK */
	const uint8_t	*qe_report_sig;	/* SGX_ECDSA_SIG_LEN */
	const uint8_t	*qe_auth;	/* may be empty */
	size_t		 qe_auth_len;
	uint16_t	 cert_type;	/* innermost certification data type */
	const uint8_t	*cert_data;
	size_t		 cert_len;
	size_t		 padding_len;	/* zero bytes after the signature data */
};

/*
 * Parse len bytes at buf into *q (cleared on entry, filled on success).
 * The signature data length must fit in len; after the signature data
 * only zero bytes may follow (some producers pad quotes into a fixed-size
 * buffer); any non-zero trailing byte is an error. Every inner length
 * (QE auth data, certification data) must exactly fill its container.
 * Returns 0, or HSM_EPROTO with an hsm_err() detail naming the field that
 * is malformed or whose length is inconsistent, or HSM_EUNSUPPORTED for a
 * version, key type or TEE type this parser does not handle.
 */
int sgx_quote_parse(const uint8_t *buf, size_t len, struct sgx_quote *q);

#endif
