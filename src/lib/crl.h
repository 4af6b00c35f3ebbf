/*
 * crl.h - certificate revocation lists (RFC 5280 §5): the CA builds and
 * signs a full CRL of its revoked, unexpired certificates; the agent
 * checks one it fetched from the network (peer input: fuzzed by
 * tests/fuzz/fuzz_crl.c) before any sidecar uses it; every certificate
 * names the CRL's URL in cRLDistributionPoints.
 *
 * The CRL number (docs/PROTOCOL.md, "Revocation"): crlNumber = seq × 2^32
 * + thisUpdate (Unix seconds, 32 bits), where seq is the ledger's
 * revocation sequence (ledger_revocation_seq: one more for every
 * revocation that changed a row). Every CRL that knows of more
 * revocations has a greater number, across restarts and across replicas
 * sharing a ledger; among CRLs of one sequence the later one is greater.
 * The high half is what the CA announces to agents as its hint.
 *
 * Functions return 0 or a negative HSM_E* code with a one-line detail.
 */
#ifndef HSM_CRL_H
#define HSM_CRL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define CRL_MAX_DER (240 * 1024)	/* largest CRL handed on (fits one agentproto frame) */
#define CRL_PATH_DEFAULT "/crl"		/* the CA's path for GET when crl.url names none */
#define CRL_SKEW 300			/* seconds a thisUpdate may lie in the future */

/* One revoked certificate of a CRL being built. */
struct crl_revoked {
	const char *serial;	/* hex, as the ledger stores it */
	int64_t when;		/* revocation time, Unix seconds */
	int reason;		/* CRLReason 0..10; 0 (unspecified) is left out of the entry */
};

/* What a checked CRL says. */
struct crl_info {
	uint64_t number;	/* crlNumber */
	uint64_t seq;		/* number >> 32: the revocation sequence it reflects */
	int64_t this_update, next_update;
	size_t count;		/* revoked entries */
};

/* crlNumber for revocation sequence seq issued at now (above). */
uint64_t crl_number_make(uint64_t seq, int64_t now);

/*
 * Build and sign a full CRL (v2) of the n entries v for the CA
 * certificate ca (issuer name, AKI = its SKI) with ca_key (which may be a
 * keyholder key; its public half is ca's): thisUpdate now, nextUpdate now
 * + next_update seconds, crlNumber crl_number_make(seq, now). The
 * signature is checked against ca's key before the DER is returned.
 * *der malloc'd (caller frees). 0, HSM_EINVAL (a serial or time out of
 * range), HSM_ECRYPTO, HSM_ENOMEM.
 */
int crl_build(X509 *ca, EVP_PKEY *ca_key, const struct crl_revoked *v, size_t n,
    uint64_t seq, int64_t now, int64_t next_update, uint8_t **der, size_t *len);

/*
 * Check a CRL received from the network against the CA certificate ca:
 * one DER CRL of at most CRL_MAX_DER bytes (nothing after it), v2,
 * issuer = ca's subject, signed by ca's key, a crlNumber of at most 64
 * bits, a nextUpdate after its thisUpdate, thisUpdate no later than now +
 * CRL_SKEW, no critical extension but those RFC 5280 defines for a full
 * CRL. A CRL past its nextUpdate at now is HSM_EAGAIN ("CRL expired ...")
 * with *out and *info still set, so that a caller may keep a stale one
 * knowingly. 0 with *out (caller frees) and *info; HSM_EPROTO with the
 * reason; HSM_ENOMEM. *out's entries are sorted: lookups (crl_lists) from
 * several threads never sort it under its lock.
 */
int crl_check(const uint8_t *der, size_t len, X509 *ca, int64_t now, X509_CRL **out,
    struct crl_info *info);

/*
 * 1 when crl lists cert's serial and cert's issuer name is crl's issuer
 * (a same-serial certificate of another CA is not listed), else 0.
 */
int crl_lists(X509_CRL *crl, X509 *cert);

/*
 * 1 when crl, checked against the CA certificate ca (crl_check), is the
 * CRL of cert's issuer: cert's issuer name is crl's issuer, and cert was
 * signed with ca's key — issuer, the verified issuer of cert when known,
 * has ca's public key; without it (NULL: a resumed session, whose chain
 * is not kept) cert's authorityKeyIdentifier matches ca's subject key
 * identifier (when both have one).
 * Else 0: crl says nothing about cert (another CA, or one of the same name
 * with another key). No signature is checked: that was crl_check's.
 */
int crl_covers(X509_CRL *crl, X509 *ca, X509 *cert, X509 *issuer);

/*
 * The revocation check of a peer's leaf whose chain verified, against a
 * CRL crl checked once against ca (crl_check, which filled *info; crl
 * NULL: none held) at time now; issuer as for crl_covers. A crl that does
 * not cover leaf is no CRL for it. Without a current CRL for leaf (none;
 * thisUpdate after now; nextUpdate reached), refuse_stale
 * (revocation.stale: refuse) gives X509_V_ERR_UNABLE_TO_GET_CRL,
 * X509_V_ERR_CRL_NOT_YET_VALID or X509_V_ERR_CRL_HAS_EXPIRED; else (keep)
 * the entries of a covering CRL past its dates still count. A listed leaf
 * is X509_V_ERR_CERT_REVOKED; anything else X509_V_OK. What OpenSSL's
 * X509_V_FLAG_CRL_CHECK decides for the leaf, without verifying the CRL's
 * signature again.
 */
int crl_verdict(X509_CRL *crl, X509 *ca, const struct crl_info *info, X509 *leaf, X509 *issuer,
    int64_t now, int refuse_stale);

/*
 * The cRLDistributionPoints extension naming url (one DistributionPoint,
 * fullName one URI, non-critical, RFC 5280 §4.2.1.13) for a certificate.
 * url must be an http:// URL of at most 1024 characters. Caller frees *out.
 */
int crl_cdp_ext(const char *url, X509_EXTENSION **out);

/*
 * The first http:// URI of cert's cRLDistributionPoints into out (cap
 * bytes). 0; HSM_ENOENT when it has none; HSM_EINVAL when it does not fit.
 */
int crl_cdp_url(X509 *cert, char *out, size_t cap);

/*
 * The URL a CA listening on listen ("host:port", "[v6]:port") publishes
 * by default: http://host:port/crl. A wildcard host (0.0.0.0, ::, empty)
 * is HSM_EINVAL with a detail asking for crl.url; so is port 0 unless
 * bound_port (the port actually bound, 0 when unknown) replaces it.
 */
int crl_url_default(const char *listen, unsigned bound_port, char *out, size_t cap);

/*
 * Split an http:// URL into what a GET needs; *path points into url
 * ("/crl"). 0 or HSM_EINVAL. Used by the CA to route GETs to the path it
 * publishes.
 */
int crl_url_path(const char *url, const char **path);

#endif
