/*
 * ca.c - `hsmesh ca`: the Trusted Certificate Issuer.
 *
 * This process holds no key and no PIN and never loads a PKCS#11 module.
 * For each command it starts a private keyholder (kh_spawn: the child reads
 * the PIN and opens the token) and talks to it over a socketpair; the CA
 * key is named by the SHA-256 of its SubjectPublicKeyInfo, which is also
 * the key id of root.pem, and only ever used through signing requests
 * (provider.h turns it into an EVP_PKEY for X509_sign).
 *
 *   init   generate the CA key in the token (or reuse the one labelled
 *          key.label) and write <state_dir>/root.pem; idempotent
 *   issue  offline issuance of one X.509-SVID for a CSR, PEM on stdout
 *   token  a one-time join token REF:SECRET for one SPIFFE ID
 *   serve  the CMPv2 issuer over HTTP (ca_cmp.c)
 *   revoke revoke a certificate by serial, or every certificate of an ID
 *
 * Every issuance, refusal and revocation is recorded in the ledger
 * (database) and as one JSON line in the audit log.
 *
 * Exit status: 0 success, 1 failure with exactly one line on stderr
 * ("hsmesh ca issue: <reason>"), 2 usage error.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "audit.h"
#include "ca_cmp.h"
#include "cert.h"
#include "cmds.h"
#include "caconf.h"
#include "config.h"
#include "err.h"
#include "keytypes.h"
#include "khclient.h"
#include "ledger.h"
#include "log.h"
#include "provider.h"
#include "spiffe.h"
#include "util.h"

#define ROOT_FILE "root.pem"
#define TOKEN_KEY_FILE "token.key"	/* 32 random bytes: derives join-token secrets */
#define MAX_CMP_BODY (256 * 1024)
#define KH_EXIT_WAIT_MS 5000	/* how long a keyholder may take to exit after we hang up */

/* A private keyholder and the CA key it holds. */
struct ca_kh {
	struct kh_client *kh;
	pid_t pid;
};

static void
usage_ca(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca SUBCOMMAND -c ca.yaml [OPTIONS]\n"
	    "\n"
	    "The certificate authority of a trust domain. Its key is generated inside the\n"
	    "PKCS#11 token named in ca.yaml and never leaves it; each command starts a\n"
	    "private keyholder process, the only one that loads the module or reads the PIN.\n"
	    "\n"
	    "subcommands:\n"
	    "  init   -c ca.yaml                              create or reuse the CA key, write root.pem\n"
	    "  issue  -c ca.yaml --csr FILE --id ID [--ttl D]  issue an X.509-SVID, PEM on stdout\n"
	    "  token  -c ca.yaml --id ID [--ttl D]             one-time join token REF:SECRET on stdout\n"
	    "  serve  -c ca.yaml [--port-file F]               CMPv2 issuer at http://<listen>/.well-known/cmp\n"
	    "  revoke -c ca.yaml (--serial HEX | --id ID)      revoke certificates; renewals of an ID refused\n"
	    "\n"
	    "Run 'hsmesh ca SUBCOMMAND --help' for details.\n");
}

static void
usage_token(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca token -c ca.yaml --id SPIFFE_ID [--ttl DURATION]\n"
	    "\n"
	    "Print a one-time join token REF:SECRET that enrolls exactly SPIFFE_ID over\n"
	    "CMP (REF is the sender KID, e.g. openssl cmp -ref REF -secret pass:SECRET).\n"
	    "The token expires after DURATION (default 1h) and works once. The ledger\n"
	    "keeps only a hash of SECRET; the CA derives it again from REF with the key in\n"
	    "<state_dir>/token.key (created on first use, mode 0600).\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "      --id SPIFFE_ID  the identity the token enrolls\n"
	    "      --ttl DURATION  how long the token is valid (default 1h, at most 30d)\n"
	    "  -h, --help          this text\n");
}

static void
usage_serve(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca serve -c ca.yaml [--port-file FILE]\n"
	    "\n"
	    "Serve CMPv2 (RFC 4210, RFC 9483) over HTTP (RFC 6712) at\n"
	    "http://<listen>/.well-known/cmp until SIGTERM or SIGINT:\n"
	    "  ir/cr/p10cr  protected by a join token's MAC; the token decides the SPIFFE ID\n"
	    "  kur          signed by a current certificate: same ID, new key\n"
	    "  rr           signed by a current certificate of the same ID\n"
	    "  genm         the CA certificates\n"
	    "The CA key stays in the token: this process signs through its keyholder.\n"
	    "\n"
	    "  -c, --config FILE     the CA configuration (ca.yaml)\n"
	    "      --port-file FILE  write the bound TCP port here (for listen: host:0)\n"
	    "  -h, --help            this text\n");
}

static void
usage_revoke(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca revoke -c ca.yaml (--serial HEX | --id SPIFFE_ID)\n"
	    "\n"
	    "Revoke one certificate by serial number, or every current certificate of an\n"
	    "identity; after --id, renewals (kur) and enrollments of that ID are refused.\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "      --serial HEX    the certificate's serial number (hex)\n"
	    "      --id SPIFFE_ID  the identity\n"
	    "  -h, --help          this text\n");
}

static void
usage_init(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca init -c ca.yaml\n"
	    "\n"
	    "Find the CA key labelled key.label in the token, or generate one of key.type\n"
	    "inside it (never extractable), and write a self-signed root certificate to\n"
	    "<state_dir>/root.pem (directory created with mode 0700). Running it again\n"
	    "keeps a root.pem whose key is in the token; a root.pem whose key is not in\n"
	    "the token is an error, never silently replaced.\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "  -h, --help          this text\n");
}

static void
usage_issue(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca issue -c ca.yaml --csr FILE --id SPIFFE_ID [--ttl DURATION]\n"
	    "\n"
	    "Issue an X.509-SVID for the public key of a PKCS#10 request (PEM or DER;\n"
	    "its signature must verify) with the given SPIFFE ID, which must belong to\n"
	    "the trust domain. The CSR's own subject and extensions are ignored. The\n"
	    "certificate is printed on stdout in PEM.\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml)\n"
	    "      --csr FILE      the certificate request\n"
	    "      --id SPIFFE_ID  spiffe://<trust_domain>/<path>\n"
	    "      --ttl DURATION  validity (90s, 15m, 1h, 2d); default svid_ttl, at most max_ttl\n"
	    "  -h, --help          this text\n");
}

/* The one failure line. A detail from another process could hold a newline: flatten it. */
static int
fail(const char *sub, int code)
{
	char msg[600];

	snprintf(msg, sizeof(msg), "%s", hsm_err_msg(code));
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "hsmesh ca %s: %s\n", sub, msg);
	return 1;
}

/* "hsmesh ca init: WHAT 'ARG'" (ARG may be NULL), then the usage; exit status 2. */
static int
usage_error(const char *sub, void (*usage)(FILE *), const char *what, const char *arg)
{
	if (arg != NULL)
		fprintf(stderr, "hsmesh ca %s: %s '%s'\n", sub, what, arg);
	else
		fprintf(stderr, "hsmesh ca %s: %s\n", sub, what);
	usage(stderr);
	return 2;
}

/* ---- the keyholder ---- */

static void
kh_stop(struct ca_kh *k)
{
	int waited = 0;
	pid_t r;

	kh_client_free(k->kh);
	k->kh = NULL;
	if (k->pid <= 0)
		return;
	/* Hanging up makes it exit; a stuck token must not hang the CLI forever. */
	while ((r = waitpid(k->pid, NULL, WNOHANG)) == 0 && waited < KH_EXIT_WAIT_MS) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		waited += 10;
	}
	if (r == 0) {
		kill(k->pid, SIGKILL);
		waitpid(k->pid, NULL, 0);
	}
	k->pid = -1;
}

/* Start the keyholder for the token of ca.yaml. Its one-line reasons (wrong PIN...) pass through. */
static int
kh_start(const struct ca_config *cfg, struct ca_kh *k)
{
	struct kh_spawn_opts o;
	int r;

	k->kh = NULL;
	k->pid = -1;
	memset(&o, 0, sizeof(o));
	o.module = cfg->token.module;
	o.token_uri = cfg->token.uri;
	o.pin_file = cfg->token.pin_file;
	o.pin_env = cfg->token.pin_env;
	o.workers = (int)cfg->token.workers;
	if ((r = kh_spawn(&o, &k->kh, &k->pid)) != 0)
		return r;
	if ((r = hsm_provider_init()) != 0) {
		kh_stop(k);
		return r;
	}
	return 0;
}

/* ---- files ---- */

static int
join(const char *dir, const char *name, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= len)
		return hsm_err(HSM_EINVAL, "path too long: %s/%s", dir, name);
	return 0;
}

/*
 * Load root.pem and check it is this trust domain's root. *exists tells
 * a missing file (0 returned, *out NULL) from a present one.
 */
static int
root_load(const struct ca_config *cfg, const char *path, X509 **out, int *exists)
{
	char want[SPIFFE_TD_MAX + sizeof(SPIFFE_SCHEME)], *uri = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	X509 *x = NULL;
	int r;

	*out = NULL;
	*exists = 0;
	if ((r = hsm_read_file(path, CERT_MAX_INPUT, &buf, &len)) == HSM_ENOENT)
		return 0;
	if (r != 0)
		return r;
	*exists = 1;
	if (cert_parse(buf, len, &x) != 0) {
		r = hsm_err(HSM_EINVAL, "%s is not a certificate", path);
		goto out;
	}
	snprintf(want, sizeof(want), "%s%s", SPIFFE_SCHEME, cfg->trust_domain);
	if (cert_uri_san(x, &uri) != 0 || strcmp(uri, want) != 0) {
		r = hsm_err(HSM_ECONFIG, "%s is not the root of trust domain '%s' (%s)", path,
		    cfg->trust_domain, uri != NULL ? "it names another" : "no SPIFFE ID");
		goto out;
	}
	*out = x;
	x = NULL;
	r = 0;
 out:
	free(uri);
	free(buf);
	X509_free(x);
	return r;
}

/* ---- init ---- */

/* Find the key labelled key.label, or generate it. *created tells which. */
static int
ca_key_find_or_make(const struct ca_config *cfg, struct ca_kh *k, uint8_t keyid[HSM_KEYID_LEN],
    uint8_t **spki, size_t *spkilen, int *created)
{
	int r;

	*created = 0;
	r = kh_find(k->kh, cfg->key_label, 0, keyid, spki, spkilen);
	if (r == HSM_ENOENT) {
		/* RSA key generation in a token can take many seconds. */
		r = kh_generate(k->kh, cfg->key_type, cfg->key_label, 120000, keyid, spki, spkilen);
		*created = r == 0;
	}
	return r;
}

/* The EC curve / RSA size of pub as a key.type, so a reused key can be checked against ca.yaml. */
static int
pub_keytype(EVP_PKEY *pub)
{
	char desc[64];

	cert_key_describe(pub, desc, sizeof(desc));
	if (strcmp(desc, "EC P-256") == 0)
		return HSM_KEY_EC_P256;
	if (strcmp(desc, "EC P-384") == 0)
		return HSM_KEY_EC_P384;
	if (strcmp(desc, "RSA-3072") == 0)
		return HSM_KEY_RSA_3072;
	return 0;
}

static int
cmd_init(const char *cfgpath)
{
	char root_path[PATH_MAX], hex[HSM_KEYID_LEN * 2 + 1], desc[64], *pem = NULL;
	uint8_t keyid[HSM_KEYID_LEN], root_id[HSM_KEYID_LEN], got_id[HSM_KEYID_LEN];
	uint8_t *spki = NULL;
	size_t spkilen = 0, pemlen = 0;
	struct ca_config *cfg = NULL;
	struct ca_kh k = { NULL, -1 };
	const unsigned char *p;
	EVP_PKEY *pub = NULL, *key = NULL;
	X509 *root = NULL;
	int r, exists = 0, created = 0;

	if ((r = ca_config_load(cfgpath, &cfg)) != 0 ||
	    (r = hsm_mkdir_p(cfg->state_dir, 0700)) != 0 ||
	    (r = join(cfg->state_dir, ROOT_FILE, root_path, sizeof(root_path))) != 0 ||
	    (r = root_load(cfg, root_path, &root, &exists)) != 0)
		goto out;
	if ((r = kh_start(cfg, &k)) != 0)
		goto out;

	if (root != NULL) {
		/* Keep an existing root only if the token still holds its key. */
		if ((r = cert_key_id(root, root_id)) != 0)
			goto out;
		r = kh_pubkey(k.kh, root_id, 0, &spki, &spkilen);
		if (r == HSM_ENOENT) {
			r = hsm_err(HSM_ENOENT, "%s exists but the token holds no matching key "
			    "(key id %s); move it away to create a new CA", root_path,
			    hsm_hex(root_id, sizeof(root_id), hex));
			goto out;
		}
		if (r != 0)
			goto out;
		if ((r = cert_spki_id(spki, spkilen, got_id)) != 0)
			goto out;
		if (memcmp(got_id, root_id, sizeof(root_id)) != 0) {
			r = hsm_err(HSM_EPROTO, "the keyholder returned a different key for key id %s",
			    hsm_hex(root_id, sizeof(root_id), hex));
			goto out;
		}
		memcpy(keyid, root_id, sizeof(keyid));
	} else if ((r = ca_key_find_or_make(cfg, &k, keyid, &spki, &spkilen, &created)) != 0) {
		goto out;
	}

	p = spki;
	if ((pub = d2i_PUBKEY(NULL, &p, (long)spkilen)) == NULL) {
		r = hsm_err_ossl(HSM_ECRYPTO, "cannot parse the CA public key");
		goto out;
	}
	if (!created && root == NULL && pub_keytype(pub) != (int)cfg->key_type) {
		r = hsm_err(HSM_ECONFIG, "the token's key '%s' is %s but key.type is %s; "
		    "choose another key.label for a new key", cfg->key_label,
		    cert_key_describe(pub, desc, sizeof(desc)), hsm_keytype_name(cfg->key_type));
		goto out;
	}
	/* A signature now proves the PIN, the key and the keyholder before anything is written. */
	if ((r = hsm_pkey_new(k.kh, keyid, spki, spkilen, 0, &key)) != 0 ||
	    (r = hsm_pkey_selftest(key)) != 0)
		goto out;

	if (root == NULL) {
		if ((r = cert_make_root(key, pub, cfg->trust_domain, cfg->ca_ttl, &root)) != 0 ||
		    (r = cert_pem(root, &pem, &pemlen)) != 0 ||
		    (r = hsm_write_file_atomic(root_path, pem, pemlen, 0644)) != 0)
			goto out;
	}

	printf("CA key %s in the token (%s, label '%s')\n",
	    created ? "generated" : "reused", cert_key_describe(pub, desc, sizeof(desc)),
	    cfg->key_label);
	printf("key id:     %s\n", hsm_hex(keyid, sizeof(keyid), hex));
	printf("root:       %s (%s)\n", root_path, exists ? "kept" : "created");
	printf("spiffe id:  %s%s\n", SPIFFE_SCHEME, cfg->trust_domain);
	if (fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	EVP_PKEY_free(key);	/* before the client it borrows */
	kh_stop(&k);
	EVP_PKEY_free(pub);
	X509_free(root);
	free(spki);
	free(pem);
	ca_config_free(cfg);
	return r == 0 ? 0 : fail("init", r);
}

/* ---- the CA ready to sign ---- */

/* root.pem, and its key in the token behind a private keyholder. */
struct signer {
	char root_path[PATH_MAX];
	X509 *root;
	struct ca_kh k;
	EVP_PKEY *key;		/* borrows k.kh: free it first */
};

static void
signer_close(struct signer *sg)
{
	EVP_PKEY_free(sg->key);
	sg->key = NULL;
	kh_stop(&sg->k);
	X509_free(sg->root);
	sg->root = NULL;
}

/* Load root.pem and check that the token holds its key. */
static int
signer_load_root(const struct ca_config *cfg, struct signer *sg)
{
	int r, exists = 0;

	memset(sg, 0, sizeof(*sg));
	sg->k.pid = -1;
	if ((r = join(cfg->state_dir, ROOT_FILE, sg->root_path, sizeof(sg->root_path))) != 0 ||
	    (r = root_load(cfg, sg->root_path, &sg->root, &exists)) != 0)
		return r;
	if (!exists)
		return hsm_err(HSM_ENOENT, "no root certificate at %s; run 'hsmesh ca init' first",
		    sg->root_path);
	return 0;
}

/* Start the keyholder and make the signing key for the loaded root. */
static int
signer_start(const struct ca_config *cfg, struct signer *sg)
{
	char hex[HSM_KEYID_LEN * 2 + 1];
	uint8_t root_id[HSM_KEYID_LEN], got_id[HSM_KEYID_LEN], *spki = NULL;
	size_t spkilen = 0;
	int r;

	if ((r = cert_key_id(sg->root, root_id)) != 0 || (r = kh_start(cfg, &sg->k)) != 0)
		return r;
	r = kh_pubkey(sg->k.kh, root_id, 0, &spki, &spkilen);
	if (r == HSM_ENOENT)
		r = hsm_err(HSM_ENOENT, "the token holds no key for %s (key id %s)", sg->root_path,
		    hsm_hex(root_id, sizeof(root_id), hex));
	if (r == 0 && (r = cert_spki_id(spki, spkilen, got_id)) == 0 &&
	    memcmp(got_id, root_id, sizeof(root_id)) != 0)
		r = hsm_err(HSM_EPROTO, "the keyholder returned a different key for key id %s",
		    hsm_hex(root_id, sizeof(root_id), hex));
	if (r == 0)
		r = hsm_pkey_new(sg->k.kh, root_id, spki, spkilen, 0, &sg->key);
	free(spki);
	return r;
}

/* The ledger and the audit log of ca.yaml (state_dir must exist: ca init makes it). */
static int
records_open(const struct ca_config *cfg, struct ledger **lg, struct audit **au)
{
	int r;

	*lg = NULL;
	*au = NULL;
	if ((r = ledger_open(cfg->database, lg)) != 0)
		return r;
	if ((r = audit_open(cfg->audit_log, au)) != 0) {
		ledger_close(*lg);
		*lg = NULL;
	}
	return r;
}

/* Record an issued certificate in the ledger and the audit log. */
static int
record_issue(struct ledger *lg, struct audit *au, X509 *x, const char *id, const char *auth,
    const char *parent, const char *op, const char *peer)
{
	struct ledger_cert lc;
	uint8_t kid[HSM_KEYID_LEN];
	unsigned char *der = NULL;
	int n, r;

	memset(&lc, 0, sizeof(lc));
	snprintf(lc.spiffe_id, sizeof(lc.spiffe_id), "%s", id);
	if ((r = cert_serial_hex(X509_get0_serialNumber(x), lc.serial, sizeof(lc.serial))) != 0 ||
	    (r = cert_key_id(x, kid)) != 0 ||
	    (r = cert_time_unix(X509_get0_notBefore(x), &lc.not_before)) != 0 ||
	    (r = cert_time_unix(X509_get0_notAfter(x), &lc.not_after)) != 0)
		return r;
	hsm_hex(kid, sizeof(kid), lc.spki_id);
	snprintf(lc.auth, sizeof(lc.auth), "%s", auth);
	snprintf(lc.parent_serial, sizeof(lc.parent_serial), "%s", parent != NULL ? parent : "");
	if ((n = i2d_X509(x, &der)) <= 0)
		return hsm_err_ossl(HSM_ECRYPTO, "cannot encode the certificate");
	lc.der = der;
	lc.der_len = (size_t)n;
	r = ledger_cert_add(lg, &lc);
	OPENSSL_free(der);
	if (r == 0)
		audit_event(au, "issued", "op", op, "peer", peer, "id", id, "serial", lc.serial,
		    "spki_id", lc.spki_id, "auth", auth, "parent_serial", parent, NULL);
	return r;
}

/* ---- issue ---- */

static int
cmd_issue(const char *cfgpath, const char *csrpath, const char *id, const char *ttl_text)
{
	char *pem = NULL, why[512];
	uint8_t *csrbuf = NULL;
	size_t csrlen = 0, pemlen = 0;
	struct ca_config *cfg = NULL;
	struct signer sg;
	struct ledger *lg = NULL;
	struct audit *au = NULL;
	X509_REQ *req = NULL;
	X509 *svid = NULL;
	int64_t ttl;
	int r;

	memset(&sg, 0, sizeof(sg));
	sg.k.pid = -1;
	if ((r = ca_config_load(cfgpath, &cfg)) != 0)
		goto out;

	/* Arguments are checked before the token is touched. */
	ttl = cfg->svid_ttl;
	if (ttl_text != NULL && (r = hsm_parse_duration(ttl_text, &ttl)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		r = hsm_err(HSM_EINVAL, "--ttl: %s", why);
		goto out;
	}
	if (ttl > cfg->max_ttl) {
		r = hsm_err(HSM_EPOLICY, "TTL %s exceeds max_ttl %s",
		    ttl_text != NULL ? ttl_text : cfg->svid_ttl_text, cfg->max_ttl_text);
		goto out;
	}
	if ((r = spiffe_id_check_domain(id, cfg->trust_domain)) != 0 ||
	    (r = signer_load_root(cfg, &sg)) != 0)
		goto out;
	if ((r = records_open(cfg, &lg, &au)) != 0)
		goto out;
	if (ledger_id_revoked(lg, id)) {
		r = hsm_err(HSM_EPOLICY, "identity %s is revoked", id);
		goto out;
	}

	/*
	 * Start the keyholder before reading the CSR: the token (PIN, key) is
	 * proven while the request may still be arriving on a pipe, and a
	 * token problem is reported before the CSR's.
	 */
	if ((r = signer_start(cfg, &sg)) != 0)
		goto out;
	if ((r = hsm_read_file(csrpath, CERT_MAX_INPUT, &csrbuf, &csrlen)) != 0 ||
	    (r = cert_csr_parse(csrbuf, csrlen, &req)) != 0 ||
	    (r = cert_csr_verify(req)) != 0 ||
	    (r = cert_key_check(X509_REQ_get0_pubkey(req))) != 0)
		goto out;
	if ((r = cert_issue_svid(sg.root, sg.key, X509_REQ_get0_pubkey(req), id, ttl, &svid)) != 0 ||
	    (r = cert_pem(svid, &pem, &pemlen)) != 0 ||
	    (r = record_issue(lg, au, svid, id, "offline", NULL, "issue", "local")) != 0)
		goto out;
	if (fwrite(pem, 1, pemlen, stdout) != pemlen || fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	signer_close(&sg);
	X509_free(svid);
	X509_REQ_free(req);
	free(csrbuf);
	free(pem);
	ledger_close(lg);
	audit_close(au);
	ca_config_free(cfg);
	return r == 0 ? 0 : fail("issue", r);
}

/* ---- token ---- */

/* The join-token derivation key; created (0600) when create is set and it is absent. */
static int
token_key_load(const struct ca_config *cfg, int create, uint8_t key[32])
{
	char path[PATH_MAX];
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	if ((r = join(cfg->state_dir, TOKEN_KEY_FILE, path, sizeof(path))) != 0)
		return r;
	r = hsm_read_file(path, 64, &buf, &len);
	if (r == HSM_ENOENT && create) {
		uint8_t fresh[32];

		if (RAND_bytes(fresh, sizeof(fresh)) != 1)
			return hsm_err_ossl(HSM_ECRYPTO, "RAND_bytes");
		r = hsm_write_file_atomic(path, fresh, sizeof(fresh), 0600);
		OPENSSL_cleanse(fresh, sizeof(fresh));
		if (r != 0)
			return r;
		r = hsm_read_file(path, 64, &buf, &len);
	}
	if (r == HSM_ENOENT)
		return hsm_err(HSM_ENOENT, "%s is missing: no join token was ever made", path);
	if (r != 0)
		return r;
	if (len != 32) {
		OPENSSL_clear_free(buf, len);
		return hsm_err(HSM_ECONFIG, "%s must hold exactly 32 bytes", path);
	}
	memcpy(key, buf, 32);
	OPENSSL_clear_free(buf, len);
	return 0;
}

static int
cmd_token(const char *cfgpath, const char *id, const char *ttl_text)
{
	struct ca_config *cfg = NULL;
	struct ledger *lg = NULL;
	struct audit *au = NULL;
	uint8_t key[32], rnd[8], h[32];
	char ref[17], secret[33], why[512], exp[32];
	int64_t ttl = 3600;
	int r;

	if ((r = ca_config_load(cfgpath, &cfg)) != 0)
		goto out;
	if (ttl_text != NULL && (r = hsm_parse_duration(ttl_text, &ttl)) != 0) {
		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		r = hsm_err(HSM_EINVAL, "--ttl: %s", why);
		goto out;
	}
	if (ttl > 30 * 86400) {
		r = hsm_err(HSM_EPOLICY, "a join token may live at most 30d");
		goto out;
	}
	if ((r = spiffe_id_check_domain(id, cfg->trust_domain)) != 0 ||
	    (r = hsm_mkdir_p(cfg->state_dir, 0700)) != 0 ||
	    (r = records_open(cfg, &lg, &au)) != 0 ||
	    (r = token_key_load(cfg, 1, key)) != 0)
		goto out;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		r = hsm_err_ossl(HSM_ECRYPTO, "RAND_bytes");
		goto out;
	}
	hsm_hex(rnd, sizeof(rnd), ref);
	cmp_token_secret(key, ref, secret);
	SHA256((const unsigned char *)secret, strlen(secret), h);
	if ((r = ledger_token_add(lg, ref, h, id, (int64_t)time(NULL) + ttl)) != 0)
		goto out;
	snprintf(exp, sizeof(exp), "%lld", (long long)((int64_t)time(NULL) + ttl));
	audit_event(au, "token", "id", id, "token", ref, "expires", exp, NULL);
	printf("%s:%s\n", ref, secret);
	if (fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(secret, sizeof(secret));
	ledger_close(lg);
	audit_close(au);
	ca_config_free(cfg);
	return r == 0 ? 0 : fail("token", r);
}

/* ---- revoke ---- */

static int
cmd_revoke(const char *cfgpath, const char *serial, const char *id)
{
	struct ca_config *cfg = NULL;
	struct ledger *lg = NULL;
	struct audit *au = NULL;
	unsigned count = 0;
	char n[16];
	int r;

	if ((r = ca_config_load(cfgpath, &cfg)) != 0 || (r = records_open(cfg, &lg, &au)) != 0)
		goto out;
	if (serial != NULL) {
		char low[LEDGER_SERIAL_MAX + 1];
		size_t i, l = strlen(serial);

		if (l == 0 || l > LEDGER_SERIAL_MAX || strspn(serial, "0123456789abcdefABCDEF") != l) {
			r = hsm_err(HSM_EINVAL, "--serial '%s' is not a hex serial number", serial);
			goto out;
		}
		/* Serials are stored without leading zeros, lower case. */
		while (l > 1 && *serial == '0') {
			serial++;
			l--;
		}
		for (i = 0; i <= l; i++)
			low[i] = (char)((serial[i] >= 'A' && serial[i] <= 'F') ? serial[i] - 'A' + 'a' : serial[i]);
		if ((r = ledger_cert_revoke(lg, low, 0, (int64_t)time(NULL))) == HSM_ENOENT)
			r = hsm_err(HSM_ENOENT, "no certificate with serial %s in the ledger", low);
		if (r != 0)
			goto out;
		audit_event(au, "revoked", "op", "revoke", "serial", low, NULL);
		printf("revoked certificate %s\n", low);
	} else {
		if ((r = spiffe_id_check_domain(id, cfg->trust_domain)) != 0 ||
		    (r = ledger_revoke_id(lg, id, 0, (int64_t)time(NULL), &count)) != 0)
			goto out;
		snprintf(n, sizeof(n), "%u", count);
		audit_event(au, "revoked", "op", "revoke", "id", id, "count", n, NULL);
		printf("revoked %s: %u current certificate(s); renewals refused from now on\n", id, count);
	}
	if (fflush(stdout) != 0)
		r = hsm_err(HSM_EIO, "write error on stdout");
 out:
	ledger_close(lg);
	audit_close(au);
	ca_config_free(cfg);
	return r == 0 ? 0 : fail("revoke", r);
}

/* ---- serve ---- */

struct serve_arg {
	struct signer *sg;
	struct ledger *lg;
	struct audit *au;
};

/* Issue for the CMP server: the same builder as ca issue. */
static int
serve_issue(void *arg, EVP_PKEY *pub, const char *id, int64_t ttl, const char *auth,
    const char *parent, const char *op, const char *peer, X509_EXTENSION *extra, X509 **out)
{
	struct serve_arg *a = arg;
	X509 *x = NULL;
	int r;

	*out = NULL;
	if ((r = cert_key_check(pub)) != 0 ||
	    (r = cert_issue_svid_ext(a->sg->root, a->sg->key, pub, id, ttl, extra, &x)) != 0 ||
	    (r = record_issue(a->lg, a->au, x, id, auth, parent, op, peer)) != 0) {
		X509_free(x);
		return r;
	}
	*out = x;
	return 0;
}

static int
cmd_serve(const char *cfgpath, const char *port_file)
{
	struct ca_config *cfg = NULL;
	struct signer sg;
	struct ledger *lg = NULL;
	struct audit *au = NULL;
	struct cmp_server_cfg sc;
	struct serve_arg sa;
	uint8_t key[32];
	int r;

	memset(&sg, 0, sizeof(sg));
	sg.k.pid = -1;
	hsm_log_init("hsmesh ca serve", HSM_LOG_INFO);
	if ((r = ca_config_load(cfgpath, &cfg)) != 0 ||
	    (r = signer_load_root(cfg, &sg)) != 0 ||
	    (r = records_open(cfg, &lg, &au)) != 0 ||
	    (r = token_key_load(cfg, 1, key)) != 0 ||
	    (r = signer_start(cfg, &sg)) != 0 ||
	    (r = hsm_pkey_selftest(sg.key)) != 0)
		goto out;
	memset(&sc, 0, sizeof(sc));
	sa.sg = &sg;
	sa.lg = lg;
	sa.au = au;
	sc.listen = cfg->listen;
	sc.port_file = port_file;
	sc.cacert = sg.root;
	sc.cakey = sg.key;
	sc.ledger = lg;
	sc.audit = au;
	sc.token_key = key;
	sc.svid_ttl = cfg->svid_ttl;
	sc.issue = serve_issue;
	sc.issue_arg = &sa;
	sc.attest = cfg->attest;
	sc.max_body = MAX_CMP_BODY;
	sc.threads = 8;
	r = cmp_serve(&sc);
 out:
	OPENSSL_cleanse(key, sizeof(key));
	signer_close(&sg);
	ledger_close(lg);
	audit_close(au);
	ca_config_free(cfg);
	return r == 0 ? 0 : fail("serve", r);
}

/* ---- dispatch ---- */

enum { OPT_CSR = 256, OPT_ID, OPT_TTL, OPT_SERIAL, OPT_PORT_FILE };

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "csr", required_argument, NULL, OPT_CSR },
	{ "id", required_argument, NULL, OPT_ID },
	{ "ttl", required_argument, NULL, OPT_TTL },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "port-file", required_argument, NULL, OPT_PORT_FILE },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

/* Which options each subcommand takes. */
static const struct {
	const char *name;
	void (*usage)(FILE *);
	const char *opts;	/* letters: s csr, i id, t ttl, n serial, p port-file */
} subs[] = {
	{ "init", usage_init, "" },
	{ "issue", usage_issue, "sit" },
	{ "token", usage_token, "it" },
	{ "serve", usage_serve, "p" },
	{ "revoke", usage_revoke, "in" },
};

int
ca_main(int argc, char **argv)
{
	const char *sub, *cfgpath = NULL, *csr = NULL, *id = NULL, *ttl = NULL, *serial = NULL;
	const char *port_file = NULL, *allowed = NULL;
	void (*usage)(FILE *) = NULL;
	int ch;

	hsm_log_init("hsmesh ca", HSM_LOG_WARN);
	if (argc < 2) {
		usage_ca(stderr);
		return 2;
	}
	sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		usage_ca(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(sub, subs[i].name) == 0) {
			usage = subs[i].usage;
			allowed = subs[i].opts;
		}
	}
	if (usage == NULL) {
		fprintf(stderr, "hsmesh ca: unknown subcommand '%s'\n", sub);
		usage_ca(stderr);
		return 2;
	}

	/* Options of the subcommand: argv[1] plays argv[0] for getopt. */
	argc--;
	argv++;
	optind = 0;	/* glibc: full re-initialisation */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:c:h", long_opts, NULL)) != -1) {
		char letter = ch == OPT_CSR ? 's' : ch == OPT_ID ? 'i' : ch == OPT_TTL ? 't' :
		    ch == OPT_SERIAL ? 'n' : ch == OPT_PORT_FILE ? 'p' : 0;

		if (letter != 0 && strchr(allowed, letter) == NULL)
			return usage_error(sub, usage, "option not valid for this subcommand:",
			    argv[optind - 1]);
		switch (ch) {
		case 'c':
			cfgpath = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_CSR:
			csr = optarg;
			break;
		case OPT_ID:
			id = optarg;
			break;
		case OPT_TTL:
			ttl = optarg;
			break;
		case OPT_SERIAL:
			serial = optarg;
			break;
		case OPT_PORT_FILE:
			port_file = optarg;
			break;
		case ':':
			return usage_error(sub, usage, "missing value for option", argv[optind - 1]);
		default:
			if (optopt != 0) {
				char o[3] = { '-', (char)optopt, '\0' };

				return usage_error(sub, usage, "unknown option", o);
			}
			return usage_error(sub, usage, "unknown option", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error(sub, usage, "unexpected argument", argv[optind]);
	if (cfgpath == NULL)
		return usage_error(sub, usage, "-c ca.yaml is required", NULL);
	if (strcmp(sub, "init") == 0)
		return cmd_init(cfgpath);
	if (strcmp(sub, "issue") == 0) {
		if (csr == NULL || id == NULL)
			return usage_error(sub, usage, "--csr and --id are required", NULL);
		return cmd_issue(cfgpath, csr, id, ttl);
	}
	if (strcmp(sub, "token") == 0) {
		if (id == NULL)
			return usage_error(sub, usage, "--id is required", NULL);
		return cmd_token(cfgpath, id, ttl);
	}
	if (strcmp(sub, "revoke") == 0) {
		if ((serial == NULL) == (id == NULL))
			return usage_error(sub, usage, "give exactly one of --serial and --id", NULL);
		return cmd_revoke(cfgpath, serial, id);
	}
	return cmd_serve(cfgpath, port_file);
}
