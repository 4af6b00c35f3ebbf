/*
 * cmpclient.h - the agent's CMP client (RFC 4210 / RFC 9483 over RFC 6712
 * HTTP), the counterpart of the CA's server (ca_cmp.c), on OpenSSL's CMP
 * library. docs/AGENT.md and docs/PROTOCOL.md ("CMP profile").
 *
 * A certificate request (ir, cr, kur) for a key that may live in a
 * keyholder: the request message (CRMF) is built here rather than by the
 * library, because the library encodes the new key's public half from the
 * EVP_PKEY, which a keyholder-backed key cannot export; the template's key
 * is the SubjectPublicKeyInfo the keyholder returned and the proof of
 * possession is signed by the new key (through the keyholder). The
 * template asks for exactly the workload's URI SAN and the subject
 * O=<trust domain>, CN=<path>; a kur also names the certificate it
 * replaces (oldCertID, RFC 4210 D.6).
 *
 * Protection is independent of the new key: none (evidence alone), a
 * password-based MAC (a join token REF:SECRET), or a signature by any
 * certificate and key (today the certificate a kur renews; a node's
 * certificate for node-protected requests). Attestation evidence goes
 * into the request's generalInfo.
 *
 * The answer is trusted only when protected by the join token's secret or
 * signed by a certificate chaining to the root, and its certificate is
 * accepted only as an X.509-SVID for exactly the requested ID and key
 * (svid.h); anything else is refused in certConf (implicit confirmation is
 * asked for, so a CA that grants it gets no certConf).
 *
 * Several CA addresses may be given (CA replicas): they are tried in
 * order, moving on when one could not be reached (refused, no route, name
 * not found, connect timeout), gave no valid answer (connection closed,
 * HTTP error such as 503, message timeout, bad protection) or answered
 * that it failed itself (failInfo systemFailure: its database or
 * keyholder); a refusal is final. Each request keeps one transactionID
 * for every address, so a CA that recorded it before its answer was lost
 * (a replica that died) delivers the same certificate again to the next
 * address instead of refusing a spent join token. The caller backs off
 * when every address failed (the agent's retry schedule). Connecting is
 * done here, so a refused connection reads as "connection refused" at
 * once rather than as a connect timeout.
 *
 * Blocking: run it on a thread of its own, in a process that ignores
 * SIGPIPE (OpenSSL writes to sockets without MSG_NOSIGNAL: a CA that dies
 * mid-request would otherwise kill the caller). Functions return 0 or a
 * negative HSM_E* code whose detail (hsm_err_msg) is the one-line reason,
 * and say in *how which kind of failure it was.
 */
#ifndef HSM_CMPCLIENT_H
#define HSM_CMPCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define CMPC_MSG_TIMEOUT 10		/* seconds per HTTP exchange (default) */
#define CMPC_TOTAL_TIMEOUT 30		/* seconds per CMP transaction (default) */
#define CMPC_MAX_RESP (5 << 20)		/* largest answer: a node's entries (entries.h) */

/* One address of the CA: http://host:port/path. */
struct cmpc_server {
	char *host;			/* name or address; an IPv6 address without brackets */
	int port;
	char *path;			/* "/" or "/.well-known/cmp", ... */
};

/* Free the strings of s and clear it. Accepts NULL. */
void cmpc_server_clear(struct cmpc_server *s);

/* The CA and what to trust of it: shared by every exchange (read-only). */
struct cmpc_ca {
	const struct cmpc_server *servers;	/* tried in order (see above) */
	size_t nservers;
	X509 *root;			/* trust anchor: answers' signatures, issued certificates */
	int msg_timeout;		/* seconds, 0: CMPC_MSG_TIMEOUT */
	int total_timeout;		/* seconds, 0: CMPC_TOTAL_TIMEOUT */
	int debug;			/* the library's progress as debug log lines */
	/*
	 * A CA being rotated (docs/LIFECYCLE.md): anchors(arg) returns the
	 * trust anchors learned beside root (a new stack of new references,
	 * or NULL for none), trusted for answers and issued certificates;
	 * learn(arg, roots) is given the self-signed CA certificates of an
	 * answer's caPubs (inside its signed body) once the answer and the
	 * certificate it carries verified. NULL: root alone, nothing learned.
	 * Both are called from the exchange's thread.
	 */
	STACK_OF(X509) *(*anchors)(void *arg);
	void (*learn)(void *arg, STACK_OF(X509) *roots);
	void *anchors_arg;
};

enum cmpc_protection {
	CMPC_UNPROTECTED = 0,		/* sender named by the subject (evidence-only ir, nonce genm) */
	CMPC_MAC,			/* password-based MAC: reference (senderKID) and secret */
	CMPC_SIGNED,			/* signature by cert's key (cert sent as extraCerts) */
};

struct cmpc_protect {
	enum cmpc_protection kind;
	const uint8_t *ref;		/* CMPC_MAC */
	size_t reflen;
	const uint8_t *secret;		/* CMPC_MAC; the caller wipes it */
	size_t secretlen;
	X509 *cert;			/* CMPC_SIGNED: the signer's certificate ... */
	EVP_PKEY *key;			/* ... and key (may be keyholder-backed) */
};

enum cmpc_reqtype { CMPC_IR = 1, CMPC_CR, CMPC_KUR };

struct cmpc_certreq {
	enum cmpc_reqtype type;
	const char *spiffe_id;		/* the identity asked for (a path is required) */
	EVP_PKEY *key;			/* the new key: signs the proof of possession */
	const uint8_t *spki;		/* its DER SubjectPublicKeyInfo */
	size_t spkilen;
	X509 *oldcert;			/* CMPC_KUR: the certificate replaced */
	struct cmpc_protect prot;
	const char *evidence_oid;	/* generalInfo entry (dotted OID), or NULL */
	const uint8_t *evidence;	/* its OCTET STRING value */
	size_t evidencelen;
	/*
	 * The transactionID (NULL: a fresh one). A retry of a request for
	 * the same key passes the first attempt's: a CA that recorded an
	 * answer the client lost delivers it again to that transaction only.
	 */
	const uint8_t *tid;
	size_t tidlen;
};

/* What a failure was. */
enum cmpc_outcome {
	CMPC_OK = 0,
	CMPC_UNREACHABLE,		/* no valid answer: transport, timeout, bad protection */
	CMPC_REFUSED,			/* the CA answered with a rejection */
	CMPC_REJECTED,			/* we refused what the CA issued (certConf) */
	CMPC_BADKEY,			/* the new key could not sign the proof of possession */
	CMPC_FAILED,			/* anything else here (set-up, memory) */
};

/*
 * Send a certificate request and take the answer. On success *cert is
 * the issued certificate (a valid SVID for rq->spiffe_id and rq->spki)
 * and *chain the intermediates between it and the root (maybe empty);
 * the caller frees both. Failure details, as the agent logs them:
 * CMPC_UNREACHABLE: the transport's reason ("connect to H:P: Connection
 * refused", ...); CMPC_REFUSED: "CA refused: <PKIStatusInfo>";
 * CMPC_REJECTED: "issued certificate refused: <svid_verify's reason>";
 * CMPC_BADKEY: "signing the proof of possession through the keyholder:
 * ..."; CMPC_FAILED: "CMP set-up: ...", "building the certificate
 * request: ...". 0, HSM_EIO (unreachable), HSM_EPOLICY (refused,
 * rejected), HSM_ECRYPTO, HSM_EINVAL or HSM_ENOMEM.
 */
int cmpc_certreq(const struct cmpc_ca *ca, const struct cmpc_certreq *rq, enum cmpc_outcome *how,
    X509 **cert, STACK_OF(X509) **chain);

/*
 * A general message (genm) asking for one InfoTypeAndValue of type oid
 * (dotted; sent without a value), protected by prot; an unprotected one
 * names as its sender the subject made of spiffe_id. *value receives the
 * answer's value of that type when it is an OCTET STRING (malloc'd), else
 * HSM_ENOENT ("the CA sent no OID", *how CMPC_REFUSED). *hint (may be
 * NULL) receives the CA's revocation sequence when the genp carries one
 * (HSM_OID_CRL_HINT, crl.h), else -1. 0, HSM_EIO
 * (unreachable: the transport's reason), HSM_ENOENT, HSM_ECRYPTO or
 * HSM_ENOMEM.
 */
int cmpc_genm(const struct cmpc_ca *ca, const char *spiffe_id, const struct cmpc_protect *prot,
    const char *oid, enum cmpc_outcome *how, uint8_t **value, size_t *len, int64_t *hint);

#define CMPC_OID_CA_CERTS "1.3.6.1.5.5.7.4.17"	/* id-it-caCerts, RFC 9483 4.3.1 */
#define CMPC_CERT_SEQ_MAX 32	/* certificates read from one caCerts value */

/*
 * A DER SEQUENCE OF Certificate (an id-it-caCerts value: the whole input,
 * at most CMPC_CERT_SEQ_MAX certificates) into *out, which the caller
 * frees. 0; HSM_EPROTO "the CA's certificates do not parse"; HSM_ENOMEM.
 */
int cmpc_cert_seq_parse(const uint8_t *der, size_t len, STACK_OF(X509) **out);

/*
 * Ask the CA for its certificates (genm id-it-caCerts, protected by prot)
 * and give the self-signed ones to ca->learn: how an agent learns a CA
 * being rotated in (the answer is signed by the CA, checked against the
 * anchors it trusts already). Nothing when ca->learn is NULL. 0; HSM_EIO
 * (unreachable); HSM_ENOENT; HSM_EPROTO (the certificates do not parse).
 */
int cmpc_refresh_anchors(const struct cmpc_ca *ca, const char *spiffe_id,
    const struct cmpc_protect *prot, enum cmpc_outcome *how);

/*
 * A fresh attestation nonce from the CA (an unprotected genm, attest.h),
 * sent in the name of spiffe_id. 0, HSM_EIO "asking the CA for an
 * attestation nonce: REASON" (unreachable), HSM_EPROTO "the CA sent no
 * attestation nonce (is attestation configured in its ca.yaml?)", or set-up
 * errors.
 */
int cmpc_attest_nonce(const struct cmpc_ca *ca, const char *spiffe_id, enum cmpc_outcome *how,
    uint8_t nonce[32]);

/*
 * The subject asked for and sent as the CMP sender of an unprotected
 * message: O=<trust domain>, CN=<path without its first '/'>, each cut to
 * the X.520 upper bound of 64. NULL when id is not a SPIFFE ID or on
 * failure. The caller frees it.
 */
X509_NAME *cmpc_subject(const char *spiffe_id);

#endif
