/*
 * ca.h - the rooms of `hsmesh ca`, the Trusted Certificate Issuer (private
 * to src/ca/).
 *
 * This process holds no key and no PIN and never loads a PKCS#11 module.
 * For each command it starts a private keyholder (kh_spawn: the child reads
 * the PIN and opens the token) and talks to it over a socketpair; the CA
 * key is named by the SHA-256 of its SubjectPublicKeyInfo, which is also
 * the key id of root.pem, and only ever used through signing requests
 * (provider_kh.h turns it into an EVP_PKEY for X509_sign).
 *
 *   main.c    ca_main: subcommands, options, usage texts
 *   signer.c  the CA ready to sign: its keyholder, root.pem, the CA key;
 *             the ledger and the audit log; the one failure line
 *   init.c    ca init: find or generate the CA key, write root.pem (or a CSR)
 *   pki.c     ca install: the CA certificate from an operator's PKI
 *   rotate.c  ca rotate: a new CA key prepared, activated, the old retired
 *   issue.c   ca issue, and the issuance every path shares (ca_issue)
 *   token.c   ca token: join tokens and their secrets
 *   revoke.c  ca revoke
 *   entry.c   ca entry add|list|show|rm: registration entries
 *   profile.c the certificate profile of an issuance (3GPP NF profile)
 *   serve.c   ca serve: the CMP server (cmp.h) over the signer
 *   replicate.c  ca replicate: the CA key into another host's token, wrapped
 *   cmp.c txn.c auth.c front.c   the CMP server (cmp.h)
 *
 * Every issuance, refusal and revocation is recorded in the ledger
 * (database) and as one JSON line in the audit log.
 *
 * Exit status of every command: 0 success, 1 failure with exactly one
 * line on stderr ("hsmesh ca issue: <reason>"), 2 usage error.
 */
#ifndef HSM_CA_CA_H
#define HSM_CA_CA_H

#include <sys/types.h>

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "keytypes.h"
#include "ledger.h"
#include "nfprofile.h"

struct audit;
struct ca_config;
struct kh_client;
struct khsup;

#define CA_ROOT_FILE "root.pem"
#define CA_CERT_FILE "ca.pem"		/* installed from an operator's PKI: used instead of root.pem */
#define CA_CHAIN_FILE "chain.pem"	/* the certificates above ca.pem, the operator's root last */
#define CA_TOKEN_KEY_FILE "token.key"	/* 32 random bytes: derives join-token secrets */
#define CA_TOKEN_SECRET_LEN 32		/* hex digits of a join-token secret */

/* A private keyholder. */
struct ca_kh {
	struct kh_client *kh;
	pid_t pid;
};

/*
 * The CA certificate (root.pem, or ca.pem when one was installed), and its
 * key in the token behind a private keyholder.
 */
struct signer {
	char root_path[PATH_MAX];
	X509 *root;			/* the CA certificate that signs */
	STACK_OF(X509) *chain;		/* above it (chain.pem; empty for a self-signed root) */
	STACK_OF(X509) *bundle;		/* the other CAs in the bundles (rotation), or NULL */
	int gen;			/* the active CA's generation in the ledger's CA set (0: none) */
	struct ca_kh k;
	struct khsup *sup;	/* signer_start_supervised: owns k.kh, restarts the keyholder */
	EVP_PKEY *key;		/* borrows k.kh: signer_close frees it first */
	char crl_url[1040];	/* named in every certificate's cRLDistributionPoints; "" none */
};

/* ---- signer.c ---- */

/*
 * Print "hsmesh ca SUB: <detail of code>" (a detail from another process
 * flattened to one line) and return 1, the exit status of a failure.
 */
int ca_fail(const char *sub, int code);

/* dir/name into out (len bytes). 0 or HSM_EINVAL when it does not fit. */
int ca_path(const char *dir, const char *name, char *out, size_t len);

/*
 * Start the keyholder for the token of ca.yaml (kh_spawn) and the
 * provider; *k cleared first. Its one-line reasons (wrong PIN...) pass
 * through. Stop it with ca_kh_stop.
 */
int ca_kh_start(const struct ca_config *cfg, struct ca_kh *k);
/* Hang up and reap the keyholder (SIGKILL after 5 s). Accepts a stopped one. */
void ca_kh_stop(struct ca_kh *k);

/*
 * Load root.pem at path and check it is this trust domain's root. A
 * missing file is 0 with *out NULL and *exists 0. Caller frees *out.
 */
int ca_root_load(const struct ca_config *cfg, const char *path, X509 **out, int *exists);

/* The keyholder's public key for keyid, checked to be that key: *spki malloc'd DER. */
int ca_kh_pubkey(struct ca_kh *k, const uint8_t keyid[HSM_KEYID_LEN], uint8_t **spki,
    size_t *spkilen);

/*
 * Initialise sg and load the CA certificate: <state_dir>/ca.pem and the
 * chain.pem above it when installed (ca_installed_load), else root.pem:
 * HSM_ENOENT "run 'hsmesh ca init' first" when neither is there.
 */
int signer_load_root(const struct ca_config *cfg, struct signer *sg);
/* Start the keyholder and make the signing key for the loaded root. */
int signer_start(const struct ca_config *cfg, struct signer *sg);
/*
 * The same with a supervised keyholder (khsup.h, for ca serve): when it
 * dies it is restarted with backoff on the same client, so sg->key keeps
 * working once it is back; signer_ready() says whether it is.
 * state_cb(arg, up) as khsup_start's.
 */
int signer_start_supervised(const struct ca_config *cfg, struct signer *sg,
    void (*state_cb)(void *arg, int up), void *arg);
/* 1 when sg can sign now: its keyholder runs (always 1 when not supervised). */
int signer_ready(struct signer *sg);
/* Free the key, stop the keyholder, free the root. Accepts a closed or zeroed signer. */
void signer_close(struct signer *sg);

/* The ledger and the audit log of ca.yaml (state_dir must exist: ca init makes it). */
int ca_records_open(const struct ca_config *cfg, struct ledger **lg, struct audit **au);

/* ---- init.c ---- */

/*
 * A key this run did not generate is adopted only if the token says it is
 * sensitive and not extractable, and always was (or, with replicable,
 * extractable only wrapped by a trusted key: key.replicable); name says
 * which key in the refusal. 0; HSM_EPOLICY with the attributes found; the
 * keyholder's.
 */
int ca_adopt_check(struct ca_kh *k, const uint8_t keyid[HSM_KEYID_LEN], const char *name,
    int replicable);

/* ---- rotate.c ---- */

/*
 * The CA set of the ledger (ledger.h "the CA set") put into sg, loaded
 * from the files (signer_load_root): when the set is empty nothing
 * changes; else sg->root becomes the active CA's certificate, sg->chain
 * its chain, and sg->bundle the certificates of the prepared and old
 * CAs (published beside it). 0; HSM_ECONFIG (no active CA); the ledger's.
 */
int signer_use_set(struct signer *sg, struct ledger *lg);

/* ---- pki.c ---- */

/*
 * Load <state_dir>/ca.pem and chain.pem (written by ca install). Both
 * absent: 0 with *ca NULL. Caller frees *ca and *chain.
 */
int ca_installed_load(const struct ca_config *cfg, X509 **ca, STACK_OF(X509) **chain);

/* The certificates of sk (not empty) as one PEM text, malloc'd. */
int ca_chain_pem(STACK_OF(X509) *sk, char **out, size_t *len);
/* ---- crl.c ---- */

/*
 * The CRL `ca serve` publishes (crl.h), for the CA's current signing key
 * and certificate: built from the ledger's revoked, unexpired
 * certificates, signed through the keyholder, cached, and built again
 * when the ledger's revocation sequence moved (checked at every request:
 * `ca revoke` is another process) or half of its validity has passed.
 */
struct ca_crl;

/*
 * A cache for cacert/cakey over lg; next_update in seconds. ready(arg)
 * says whether cakey can sign now (NULL: always).
 */
int ca_crl_new(X509 *cacert, EVP_PKEY *cakey, struct ledger *lg, int64_t next_update,
    int (*ready)(void *arg), void *arg, struct ca_crl **out);
/*
 * The current CRL: *der a malloc'd copy (caller frees), *seq the
 * revocation sequence it reflects. HSM_EAGAIN when it must be rebuilt
 * and the keyholder is restarting (and the cached one has expired);
 * HSM_EIO (ledger), HSM_ECRYPTO.
 */
int ca_crl_get(struct ca_crl *c, uint8_t **der, size_t *len, uint64_t *seq);
/* Free. Accepts NULL. */
void ca_crl_free(struct ca_crl *c);
/*
 * The URL `ca serve` publishes for cfg when it has bound port bound_port:
 * crl.url, or derived from listen (crl_url_default). 0 or HSM_EINVAL.
 */
int ca_crl_url(const struct ca_config *cfg, unsigned bound_port, char *out, size_t cap);
/*
 * For a command that issues without serving (ca issue): crl.url, else the
 * URL derived from listen, else the one `ca serve` last published in
 * <state_dir>/crl.url (listen with port 0); "" when none, and why in
 * why[whycap] (the caller warns once it has issued: a refusal stays one
 * line).
 */
void ca_crl_url_offline(const struct ca_config *cfg, char *out, size_t cap, char *why,
    size_t whycap);
/* Record the published URL in <state_dir>/crl.url (for ca issue). */
int ca_crl_url_save(const struct ca_config *cfg, const char *url);

/* ---- issue.c ---- */

/* One issuance: what it certifies and what authorised it. */
struct ca_issue_req {
	EVP_PKEY *pub;			/* the requester's public key */
	const char *spiffe_id;
	int64_t ttl;			/* seconds */
	const char *auth;		/* "token:REF", "kur:SERIAL", "sgx:...", "offline" */
	const char *parent;		/* serial it renews, or NULL */
	const char *token_ref;		/* join token consumed with it, or NULL */
	const char *txn;		/* hex CMP transactionID that asked, or NULL */
	int64_t now;			/* when the token is consumed */
	const char *op;			/* "issue", "ir", "kur", ... */
	const char *peer;		/* "local" or the client's address */
	X509_EXTENSION *extra;		/* one more extension (evidence identity), or NULL */
	int kind;			/* enum ledger_kind: a workload's or a node's */
	const char *node_id;		/* the node it is issued to (node-protected), or NULL */
	const char *nf_types;		/* ca issue --nf-type ("AMF,SMF"), or NULL */
	const char *fqdn;		/* ca issue --fqdn, or NULL */
};

/*
 * Issue an X.509-SVID with sg and record it, of the profile the ID gets
 * (ca_profile_for: a refusal there sets *refused): in one ledger transaction
 * with the join token's consumption, the renewal of its parent and its
 * "issued" audit line (written and synced before the commit:
 * ledger_issue_with). Nothing is recorded, no token consumed, and the
 * certificate is dropped when any step fails, the audit write included
 * (fail closed); a commit that fails after the audit line is followed by
 * a "rolled_back" line for the serial. A random serial that another
 * certificate already holds (the ledger's unique key, across replicas) is
 * drawn again, a few times. *refused (may be NULL)
 * is set when the ledger refused (token used or expired, parent already
 * renewed: HSM_EPOLICY / HSM_ENOENT with the reason), so that a caller
 * tells a refusal from a failure of its own. Caller frees *out.
 */
int ca_issue(const struct ca_config *cfg, struct signer *sg, struct ledger *lg,
    struct audit *au, const struct ca_issue_req *rq, X509 **out, int *refused);

/* ---- profile.c ---- */

/* The certificate profile of one issuance (ca_profile_for). */
struct ca_profile {
	enum cert_profile_kind kind;		/* PROFILE_SPIFFE or PROFILE_3GPP_NF */
	char nf_types[LEDGER_NF_TYPES_MAX + 1];	/* 3gpp-nf: "AMF,SMF" */
	char fqdn[LEDGER_FQDN_MAX + 1];		/* 3gpp-nf: the NF's FQDN */
	char source[80];			/* where the profile came from, for messages */
};

/*
 * The profile a certificate of spiffe_id (kind: enum ledger_kind) gets: a
 * node's is PROFILE_SPIFFE; a workload's is its registration entries'
 * (all agree), else ca.yaml's default. nf_types and fqdn (may be NULL:
 * ca issue's --nf-type, --fqdn) ask for the NF profile of an ID without
 * entries. The NF profile needs NF types and an FQDN. 0; HSM_EPOLICY (the
 * refusal: options for a node or an ID with entries, NF fields missing);
 * HSM_EIO, HSM_ENOMEM.
 */
int ca_profile_for(const struct ca_config *cfg, struct ledger *lg, const char *spiffe_id,
    int kind, const char *nf_types, const char *fqdn, struct ca_profile *out);

/* The NF parameters of p: ca.yaml's home network, p's NF types and FQDN. */
void ca_nf_params(const struct ca_config *cfg, const struct ca_profile *p,
    struct nf_params *np);

/*
 * Append one NF type to the comma-separated list (cap bytes), checked:
 * valid, not listed yet, at most NF_TYPES_MAX. 0 or HSM_EINVAL.
 */
int ca_nf_type_add(char *list, size_t cap, const char *type);

/* ---- token.c ---- */

/* The join-token derivation key; created (0600) when create is set and it is absent. */
int ca_token_key_load(const struct ca_config *cfg, int create, uint8_t key[32]);

/*
 * Join tokens: REF is 16 hex digits; SECRET = hex(HMAC-SHA256(key, REF))[:32].
 * The ledger keeps only SHA-256(SECRET); the front derives SECRET again
 * from REF to check a request's MAC. secret must hold 33 bytes.
 */
void ca_token_secret(const uint8_t key[32], const char *ref,
    char secret[CA_TOKEN_SECRET_LEN + 1]);

/* ---- the commands: each returns the exit status ---- */

/* csr NULL: write root.pem; else write a CSR for the CA key there instead. */
int ca_cmd_init(const char *cfgpath, const char *csr);
int ca_cmd_install(const char *cfgpath, const char *chain);
/* ca issue; nf_types ("AMF,SMF") and fqdn may be NULL (ca_profile_for). */
int ca_cmd_issue(const char *cfgpath, const char *csrpath, const char *id, const char *ttl_text,
    const char *nf_types, const char *fqdn);
int ca_cmd_token(const char *cfgpath, const char *id, const char *ttl_text, int node);
/* `hsmesh ca entry add|list|show|rm` (argv[0] is "entry"): entry.c. */
int ca_entry_main(int argc, char **argv);
/* Its usage text on f. */
void ca_entry_usage(FILE *f);
int ca_cmd_revoke(const char *cfgpath, const char *serial, const char *id);
int ca_cmd_serve(const char *cfgpath, const char *port_file);
/* `hsmesh ca rotate prepare|activate|retire|status` (rotate.c). */
int ca_cmd_rotate(const char *cfgpath, const char *step, int dry_run);
/* `hsmesh ca replicate STEP ...` (replicate.c): argv[0] is "replicate". */
int ca_cmd_replicate(int argc, char **argv);

#endif
