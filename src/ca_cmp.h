/*
 * ca_cmp.h - the CA's CMPv2 issuer over HTTP (`hsmesh ca serve`).
 *
 * The front process of the CA: it parses HTTP and CMP (peer input) and
 * never holds the CA key, which signs through the keyholder behind
 * cakey (an EVP_PKEY of the hsmesh provider).
 */
#ifndef HSM_CA_CMP_H
#define HSM_CA_CMP_H

#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

struct ledger;
struct audit;
struct attest_policy;

/*
 * Issue an X.509-SVID for pub with this SPIFFE ID and lifetime (seconds),
 * with one more extension when extra is not NULL (the attested SGX
 * identity), and record it (ledger, audit) with how the request authenticated
 * (auth: "token:REF" or "kur:SERIAL"), the certificate it renews (parent,
 * may be NULL), the CMP operation and the peer address.
 */
typedef int (*cmp_issue_fn)(void *arg, EVP_PKEY *pub, const char *spiffe_id, int64_t ttl,
    const char *auth, const char *parent, const char *op, const char *peer,
    X509_EXTENSION *extra, X509 **out);

struct cmp_server_cfg {
	const char *listen;		/* host:port; port 0 picks one (logged) */
	const char *port_file;		/* if set, the bound port is written here */
	X509 *cacert;			/* signs responses, sent in caPubs / genp */
	EVP_PKEY *cakey;		/* keyholder-backed */
	struct ledger *ledger;
	struct audit *audit;
	const uint8_t *token_key;	/* 32 bytes: derives join-token secrets */
	int64_t svid_ttl;
	cmp_issue_fn issue;
	void *issue_arg;
	const struct attest_policy *attest;	/* SGX attestation policy, or NULL */
	size_t max_body;		/* largest CMP message accepted */
	int threads;			/* connection handlers */
};

/* Serve until SIGTERM or SIGINT. 0, or an error before serving started. */
int cmp_serve(const struct cmp_server_cfg *cfg);

/*
 * Join tokens: REF is 16 hex digits; SECRET = hex(HMAC-SHA256(key, REF))[:32].
 * The ledger keeps only SHA-256(SECRET); the front derives SECRET again
 * from REF to check a request's MAC. secret must hold 33 bytes.
 */
void cmp_token_secret(const uint8_t key[32], const char *ref, char secret[33]);

#endif
