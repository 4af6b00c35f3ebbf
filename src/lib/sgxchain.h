/*
 * sgxchain.h - the certificate chains of SGX DCAP quote verification and
 * the dates of its collateral, checked the way Intel's QVL and QvE check
 * them (used by sgxverify.c; public for its tests and fuzz target).
 *
 * Chains. Every chain is read as carried (PEM, certificates only) and must
 * have exactly its shape, in this order:
 *
 *   pck_chain       PCK leaf ("Intel SGX PCK Certificate"), intermediate
 *                   ("Intel SGX PCK Processor CA" or "... Platform CA"),
 *                   root                                   (3, as QvE)
 *   tcb_info chain, qe_identity chain
 *                   signer ("Intel SGX TCB Signing"), root (2)
 *   pck_crl chain   the PCK CRL's CA (Processor or Platform CA), root (2)
 *
 * The root must be the one self-issued certificate, its self-signature
 * must verify, and it must be byte for byte the trusted root. Intel's QVL
 * compares the root's signature with the trusted root's, QvE its public
 * key with Intel's; the same DER implies both, and Intel's published root
 * has never changed, so nothing genuine is refused for it. Each other
 * certificate must name, and be signed by, the next one. A refusal is
 * HSM_EPERM and names the chain and what is wrong ("pck_chain: the quote's
 * chain has 2 certificates, not 3", "tcb_info chain: root is not the
 * trusted root"). Validity periods, revocation and the X.509 extensions
 * are then checked by sgx_chain_verify_path() (OpenSSL's path validation).
 *
 * Dates. Collateral expires as QvE reckons it: at the earliest of the TCB
 * Info's and QE Identity's nextUpdate, both CRLs' nextUpdate and every
 * certificate's notAfter; an item has expired when its time is at or
 * before the verification time. Expired collateral is refused unless the
 * caller grants a grace (seconds): an item expired for less than the grace
 * is accepted, and reported.
 */
#ifndef HSM_SGXCHAIN_H
#define HSM_SGXCHAIN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#define SGX_CHAIN_MAX	8	/* certificates read from one chain */

/* One certificate and the DER it was carried as. */
struct sgx_cert {
	X509		*x;
	uint8_t		*der;
	size_t		 der_len;
};

/* A chain as carried; more than SGX_CHAIN_MAX sets too_long. */
struct sgx_chain {
	struct sgx_cert	 c[SGX_CHAIN_MAX];
	size_t		 n;
	int		 too_long;
};

enum sgx_chain_kind {
	SGX_CHAIN_PCK_QUOTE,	/* the quote's certification data (type 5) */
	SGX_CHAIN_PCK_COLLATERAL, /* the collateral's, for types 1-3 */
	SGX_CHAIN_TCB_INFO,
	SGX_CHAIN_QE_IDENTITY,
	SGX_CHAIN_PCK_CRL
};

/* "pck_chain", "tcb_info chain", ...: the first word of every reason. */
const char *sgx_chain_name(enum sgx_chain_kind k);

/*
 * Read the PEM certificates in pem[0..len) into *ch (cleared on entry;
 * free with sgx_chain_free). Text around the PEM blocks is ignored, as
 * Intel's parser ignores it; a block that is not a CERTIFICATE, or whose
 * content is not exactly one DER certificate, is refused. 0, HSM_EPROTO
 * (no certificate, or a malformed one; the detail starts with k's name)
 * or HSM_ENOMEM.
 */
int sgx_chain_read(const void *pem, size_t len, enum sgx_chain_kind k,
    struct sgx_chain *ch);
void sgx_chain_free(struct sgx_chain *ch);

/*
 * The trust anchor: pem (a test root, NULL-terminated) or, when pem is
 * NULL, Intel's production SGX Root CA built in. It must be one
 * self-issued certificate whose self-signature verifies. *out is cleared
 * on entry; free with sgx_cert_free. 0 or HSM_ECONFIG.
 */
int sgx_trust_root(const char *pem, struct sgx_cert *out);
void sgx_cert_free(struct sgx_cert *c);

/*
 * Check ch's shape and root against trusted as described above.
 * 0 or HSM_EPERM with the reason as detail.
 */
int sgx_chain_check(const struct sgx_chain *ch, enum sgx_chain_kind k,
    const struct sgx_cert *trusted);

/* ch's first certificate (the PCK leaf or the signer), or NULL. */
X509 *sgx_chain_leaf(const struct sgx_chain *ch);

/*
 * OpenSSL's path validation of ch (already checked) to trusted at time
 * at, with every CRL given (NULL ones skipped) checked on every link,
 * strict X.509. A certificate or CRL expired for less than grace seconds
 * is accepted (sgx_expiry has bounded and reported it). 0 or HSM_EPERM
 * ("<chain>: certificate N: <OpenSSL's reason>").
 */
int sgx_chain_verify_path(const struct sgx_chain *ch, enum sgx_chain_kind k,
    const struct sgx_cert *trusted, X509_CRL *crl1, X509_CRL *crl2,
    time_t at, int64_t grace);


/* ---- collateral dates ---- */

#define SGX_EXPIRY_ITEMS	24

struct sgx_expiry {
	time_t		 at;
	int64_t		 grace;
	size_t		 n;
	struct {
		char		 item[48];	/* "qe_identity", "pck_chain leaf" */
		const char	*field;		/* "nextUpdate", "notAfter" */
		time_t		 t;
	}		 e[SGX_EXPIRY_ITEMS];
};

/* Start counting for verification time at with grace seconds (>= 0). */
void sgx_expiry_init(struct sgx_expiry *x, time_t at, int64_t grace);

/* Note that item's field is time t (items past SGX_EXPIRY_ITEMS: HSM_EINVAL). */
int sgx_expiry_note(struct sgx_expiry *x, const char *item,
    const char *field, time_t t);

/*
 * Note every certificate's notAfter in ch, named by its role in a chain
 * of kind k ("pck_chain leaf", "tcb_info signer", "root"). 0, or
 * HSM_EPROTO for a notAfter that cannot be read.
 */
int sgx_expiry_note_chain(struct sgx_expiry *x, const struct sgx_chain *ch,
    enum sgx_chain_kind k);

/*
 * Decide: *earliest = the earliest time noted (0 if none). When some
 * item has expired (time <= at) for grace or longer: HSM_EPOLICY, the
 * detail naming the earliest such item, its date, how long ago, and the
 * grace ("qe_identity: collateral expired (nextUpdate 2025-07-19T10:01:18Z,
 * 3d 2h 0m 0s before the verification time; collateral_grace 0s)").
 * Otherwise 0, with *by = at - *earliest when something expired within
 * the grace (else 0) and items[cap] = the expired items, comma-separated
 * ("" when none).
 */
int sgx_expiry_decide(const struct sgx_expiry *x, time_t *earliest,
    int64_t *by, char *items, size_t cap);

/* A duration in seconds as "2d 3h 4m 5s" (leading zero units left out). */
char *sgx_fmt_span(int64_t s, char *out, size_t cap);

#endif
