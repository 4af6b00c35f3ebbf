/*
 * replicate.c - `hsmesh ca replicate`: the CA key into the token of
 * another CA host, never in clear (docs/REPLICAS.md).
 *
 *   nonce    (source) a fresh nonce for the target's quote
 *   request  (target) an unwrapping key made in the target's token, and,
 *            with replication.evidence, a quote whose report data is
 *            SHA-256(its SubjectPublicKeyInfo) || the nonce
 *   wrap     (source) the request checked against replication.attestation
 *            (when set, a verified quote from an allowed enclave is
 *            required), then the keyholder wraps the CA key for that
 *            unwrapping key as the token's security officer would allow
 *            (p11_wrap: the CA key must be CKA_WRAP_WITH_TRUSTED, made so
 *            by ca init with key.replicable)
 *   unwrap   (target) the CA key into the target's token, sensitive, not
 *            extractable and wrap-with-trusted, proven to be root.pem's key
 *            by a signature; the one-use unwrapping key is destroyed
 *
 * The files (replfile.h) travel between the hosts by any means: the
 * request holds only public data and evidence, the wrapped key opens only
 * with the target token's unwrapping key. PINs, the SO PIN included, are
 * read by the keyholder alone, from a file or an environment variable.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "attest.h"
#include "audit.h"
#include "ca.h"
#include "caconf.h"
#include "cert.h"
#include "err.h"
#include "evidence.h"
#include "evtype.h"
#include "khclient.h"
#include "khproto.h"
#include "log.h"
#include "provider_core.h"
#include "provider_kh.h"
#include "replfile.h"
#include "util.h"

#define UNWRAP_LABEL "hsmesh-unwrap"	/* the target's one-use unwrapping key */
#define REPL_NONCE_LABEL "hsmesh ca replicate"
#define KEYGEN_TIMEOUT_MS 120000	/* RSA-3072 generation in a token takes seconds */

/*
 * The key of replication nonces: derived from token.key apart from the
 * CMP attestation nonces' key, so a nonce of one is no nonce of the other.
 */
static void
repl_nonce_key(const uint8_t token_key[32], uint8_t out[32])
{
	uint8_t k[32];
	unsigned int len = sizeof(k);

	HMAC(EVP_sha256(), token_key, 32, (const unsigned char *)REPL_NONCE_LABEL,
	    sizeof(REPL_NONCE_LABEL) - 1, k, &len);
	ev_nonce_key(k, out);
	OPENSSL_cleanse(k, sizeof(k));
}

/* A keyholder for ca.yaml's token, given the SO PIN's source when so_file/so_env is set. */
static int
kh_start(const struct ca_config *cfg, const char *so_file, const char *so_env, struct ca_kh *k)
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
	o.so_pin_file = so_file;
	o.so_pin_env = so_env;
	if ((r = kh_spawn(&o, &k->kh, &k->pid)) != 0)
		return r;
	if ((r = hsm_provider_init()) != 0)
		ca_kh_stop(k);
	return r;
}

static int
cmd_nonce(const struct ca_config *cfg)
{
	uint8_t key[32], nk[32], nonce[ATTEST_NONCE_LEN];
	char hex[2 * ATTEST_NONCE_LEN + 1];
	int r;

	if ((r = ca_token_key_load(cfg, 1, key)) != 0)
		return r;
	repl_nonce_key(key, nk);
	ev_nonce_make(nk, time(NULL), nonce);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(nk, sizeof(nk));
	printf("%s\n", hsm_hex(nonce, sizeof(nonce), hex));
	return fflush(stdout) == 0 ? 0 : hsm_err(HSM_EIO, "write error on stdout");
}

static int
cmd_request(const struct ca_config *cfg, const char *nonce_hex, const char *out)
{
	struct ca_kh k = { NULL, -1 };
	struct repl_request rq;
	uint8_t keyid[HSM_KEYID_LEN], *spki = NULL, rd[64];
	char hex[2 * HSM_KEYID_LEN + 1], *pem = NULL;
	size_t spkilen = 0, pemlen = 0;
	int r;

	memset(&rq, 0, sizeof(rq));
	if (cfg->repl_evidence.kind != EVIDENCE_NONE && nonce_hex == NULL)
		return hsm_err(HSM_EINVAL, "replication.evidence is set: --nonce is required (the "
		    "source CA prints one: hsmesh ca replicate nonce)");
	if (nonce_hex != NULL && (strlen(nonce_hex) != 2 * ATTEST_NONCE_LEN ||
	    hsm_unhex(nonce_hex, 2 * ATTEST_NONCE_LEN, rd + 32) != 0))
		return hsm_err(HSM_EINVAL, "--nonce must be %d hex digits", 2 * ATTEST_NONCE_LEN);
	if (nonce_hex != NULL && cfg->repl_evidence.kind == EVIDENCE_NONE)
		return hsm_err(HSM_EINVAL, "--nonce given but replication.evidence is not set");
	if ((r = kh_start(cfg, NULL, NULL, &k)) != 0 ||
	    (r = kh_unwrapping_key(k.kh, UNWRAP_LABEL, KEYGEN_TIMEOUT_MS, keyid, &spki,
	    &spkilen)) != 0)
		goto out;
	memcpy(rq.spki, spki, spkilen);
	rq.spkilen = spkilen;
	if (cfg->repl_evidence.kind != EVIDENCE_NONE) {
		/* The quote names this very key and the source's nonce. */
		SHA256(spki, spkilen, rd);
		if ((r = evidence_quote(&cfg->repl_evidence, rd, &rq.quote, &rq.quotelen)) != 0)
			goto out;
	}
	if ((r = repl_request_write(&rq, &pem, &pemlen)) != 0 ||
	    (r = hsm_write_file_atomic(out, pem, pemlen, 0644)) != 0)
		goto out;
	printf("unwrapping key %s made in the token (RSA-3072, unwrap only)\n",
	    hsm_hex(keyid, sizeof(keyid), hex));
	printf("request:        %s%s\n", out, rq.quote != NULL ? " (with an SGX quote binding it)" : "");
	printf("next, on the source CA host: hsmesh ca replicate wrap -c ca.yaml --request %s "
	    "--so-pin-file FILE --out FILE\n", out);
	r = fflush(stdout) == 0 ? 0 : hsm_err(HSM_EIO, "write error on stdout");
 out:
	ca_kh_stop(&k);
	repl_request_clear(&rq);
	free(spki);
	free(pem);
	return r;
}

/* With replication.attestation: the request's quote must bind its key and a nonce of ours. */
static int
check_target(const struct ca_config *cfg, struct audit *au, const struct repl_request *rq,
    char *tag, size_t tagcap)
{
	struct attest_result *ar = NULL;
	struct attest_audit a;
	uint8_t key[32], nk[32];
	const char *kv[ATTEST_AUDIT_KV + 3];
	size_t n = 0;
	int r;

	tag[0] = '\0';
	if (cfg->repl_attest == NULL)
		return 0;	/* said on stdout with the result */
	if (rq->quote == NULL)
		return hsm_err(HSM_EPOLICY, "replication.attestation is set but the request carries "
		    "no quote (the target needs replication.evidence and --nonce)");
	if ((r = ca_token_key_load(cfg, 0, key)) != 0)
		return r;
	repl_nonce_key(key, nk);
	OPENSSL_cleanse(key, sizeof(key));
	if ((ar = calloc(1, sizeof(*ar))) == NULL)
		return hsm_err(HSM_ENOMEM, "out of memory");
	r = attest_check(cfg->repl_attest, EV_SGX, rq->quote, rq->quotelen, rq->spki, rq->spkilen,
	    nk, time(NULL), ar);
	OPENSSL_cleanse(nk, sizeof(nk));
	attest_audit_fields(ar, &a);
	kv[n++] = "op";
	kv[n++] = "replicate";
	for (size_t i = 0; a.kv[i] != NULL && n + 1 < sizeof(kv) / sizeof(kv[0]); i++)
		kv[n++] = a.kv[i];
	kv[n] = NULL;
	audit_event_kv(au, r == 0 ? "attested" : "refused", kv);
	if (r != 0)
		r = hsm_err(HSM_EPOLICY, "the target's evidence is refused: %s", ar->why);
	else
		attest_auth_tag(ar, tag, tagcap);
	free(ar);
	return r;
}

static int
cmd_wrap(const struct ca_config *cfg, const char *reqpath, const char *out, const char *so_file,
    const char *so_env)
{
	struct ca_kh k = { NULL, -1 };
	struct repl_request rq;
	struct repl_wrapped *w = NULL;
	struct audit *au = NULL;
	X509 *root = NULL;
	uint8_t rootid[HSM_KEYID_LEN], *buf = NULL, *spki = NULL;
	char hex[2 * HSM_KEYID_LEN + 1], tag[128], path[PATH_MAX], *pem = NULL;
	size_t len = 0, spkilen = 0, pemlen = 0;
	int r, exists = 0;

	memset(&rq, 0, sizeof(rq));
	if ((so_file == NULL) == (so_env == NULL))
		return hsm_err(HSM_EINVAL, "give the security officer's PIN as exactly one of "
		    "--so-pin-file and --so-pin-env");
	if ((r = ca_path(cfg->state_dir, CA_ROOT_FILE, path, sizeof(path))) != 0 ||
	    (r = ca_root_load(cfg, path, &root, &exists)) != 0)
		return r;
	if (!exists)
		return hsm_err(HSM_ENOENT, "no root certificate at %s; run 'hsmesh ca init' first",
		    path);
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	if ((r = cert_key_id(root, rootid)) != 0 ||
	    (r = hsm_read_file(reqpath, REPL_FILE_MAX, &buf, &len)) != 0 ||
	    (r = repl_request_parse(buf, len, &rq)) != 0 ||
	    (r = audit_open(cfg->audit_log, &au)) != 0 ||
	    (r = check_target(cfg, au, &rq, tag, sizeof(tag))) != 0)
		goto out;
	if ((r = kh_start(cfg, so_file, so_env, &k)) != 0 ||
	    (r = ca_kh_pubkey(&k, rootid, &spki, &spkilen)) != 0 ||
	    (r = kh_wrap(k.kh, rootid, rq.spki, rq.spkilen, 60000, &w->w)) != 0)
		goto out;
	SHA256(rq.spki, rq.spkilen, w->wrapkey);
	memcpy(w->spki, spki, spkilen);
	w->spkilen = spkilen;
	if ((r = repl_wrapped_write(w, &pem, &pemlen)) != 0 ||
	    (r = hsm_write_file_atomic(out, pem, pemlen, 0600)) != 0)
		goto out;
	audit_event(au, "replicated", "op", "replicate", "key_id", hsm_hex(rootid, 32, hex),
	    "to", tag[0] != '\0' ? tag : "unattested", NULL);
	printf("CA key %s wrapped for the target's unwrapping key %s\n",
	    hsm_hex(rootid, sizeof(rootid), hex), hsm_hex(w->wrapkey, 32, (char[65]){ 0 }));
	printf("wrapped key:    %s (opens only in the target token)\n", out);
	printf("target:         %s\n", tag[0] != '\0' ? tag : "NOT attested (no "
	    "replication.attestation in ca.yaml: nothing proves the target token genuine)");
	printf("next, on the target CA host: hsmesh ca replicate unwrap -c ca.yaml --in %s\n", out);
	r = fflush(stdout) == 0 ? 0 : hsm_err(HSM_EIO, "write error on stdout");
 out:
	ca_kh_stop(&k);
	repl_request_clear(&rq);
	if (w != NULL)
		OPENSSL_cleanse(w, sizeof(*w));
	free(w);
	free(buf);
	free(spki);
	free(pem);
	audit_close(au);
	X509_free(root);
	return r;
}

static int
cmd_unwrap(const struct ca_config *cfg, const char *inpath)
{
	struct signer sg;
	struct repl_wrapped *w = NULL;
	uint8_t rootid[HSM_KEYID_LEN], keyid[HSM_KEYID_LEN], md[HSM_KEYID_LEN], fl, *buf = NULL;
	char hex[2 * HSM_KEYID_LEN + 1];
	size_t len = 0;
	int r, made = 0;

	memset(&sg, 0, sizeof(sg));
	sg.k.pid = -1;
	if ((r = signer_load_root(cfg, &sg)) != 0) {
		if (r == HSM_ENOENT)
			r = hsm_err(HSM_ENOENT, "no root certificate at %s: copy root.pem and token.key "
			    "from the source CA's state_dir first", sg.root_path);
		goto out;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		r = hsm_err(HSM_ENOMEM, "out of memory");
		goto out;
	}
	if ((r = cert_key_id(sg.root, rootid)) != 0 ||
	    (r = hsm_read_file(inpath, REPL_FILE_MAX, &buf, &len)) != 0 ||
	    (r = repl_wrapped_parse(buf, len, w)) != 0)
		goto out;
	SHA256(w->spki, w->spkilen, md);
	if (memcmp(md, rootid, HSM_KEYID_LEN) != 0) {
		r = hsm_err(HSM_EPOLICY, "%s wraps key %s, not the key of %s", inpath,
		    hsm_hex(md, sizeof(md), hex), sg.root_path);
		goto out;
	}
	if ((r = kh_start(cfg, NULL, NULL, &sg.k)) != 0)
		goto out;
	if ((r = kh_unwrap(sg.k.kh, w->wrapkey, &w->w, w->spki, w->spkilen, cfg->key_label, 60000,
	    keyid)) != 0) {
		if (r == HSM_EEXIST)
			r = hsm_err(HSM_EEXIST, "the token holds the CA key already");
		goto out;
	}
	made = 1;
	/* What the token says of it, and a signature that root.pem's key verifies. */
	if ((r = kh_attrs(sg.k.kh, keyid, 0, &fl)) != 0)
		goto out;
	if (!(fl & KH_ATTR_SENSITIVE) || (fl & KH_ATTR_EXTRACTABLE) ||
	    !(fl & KH_ATTR_WRAP_WITH_TRUSTED)) {
		r = hsm_err(HSM_EPOLICY, "the token did not keep the unwrapped key sensitive, "
		    "not extractable and wrap-with-trusted (flags 0x%02x)", fl);
		goto out;
	}
	if ((r = hsm_pkey_new(sg.k.kh, keyid, w->spki, w->spkilen, 0, &sg.key)) != 0 ||
	    (r = hsm_pkey_selftest(sg.key)) != 0)
		goto out;
	made = 2;
	/* The unwrapping key served its one use. */
	if ((r = kh_destroy(sg.k.kh, w->wrapkey, 0)) != 0)
		log_warn("the unwrapping key %s could not be destroyed: %s",
		    hsm_hex(w->wrapkey, 32, hex), hsm_err_msg(r));
	printf("CA key %s unwrapped into the token (label '%s'): sensitive, not extractable\n",
	    hsm_hex(keyid, sizeof(keyid), hex), cfg->key_label);
	printf("root:           %s (its key signs here now)\n", sg.root_path);
	r = fflush(stdout) == 0 ? 0 : hsm_err(HSM_EIO, "write error on stdout");
 out:
	if (made == 1) {
		/* Not proven: no half-made CA key stays behind. */
		char why[512];

		snprintf(why, sizeof(why), "%s", hsm_err_msg(r));
		EVP_PKEY_free(sg.key);
		sg.key = NULL;
		(void)kh_destroy(sg.k.kh, keyid, 0);
		r = hsm_err(r, "%s", why);
	}
	signer_close(&sg);
	if (w != NULL)
		OPENSSL_cleanse(w, sizeof(*w));
	free(w);
	free(buf);
	return r;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmesh ca replicate nonce   -c ca.yaml\n"
	    "       hsmesh ca replicate request -c ca.yaml --out FILE [--nonce HEX]\n"
	    "       hsmesh ca replicate wrap    -c ca.yaml --request FILE --out FILE\n"
	    "                                   (--so-pin-file F | --so-pin-env VAR)\n"
	    "       hsmesh ca replicate unwrap  -c ca.yaml --in FILE\n"
	    "\n"
	    "Put the CA key into the token of another CA host (a replica), never in clear:\n"
	    "  1. source: nonce    a fresh nonce for the target's quote (with attestation)\n"
	    "  2. target: request  make a one-use unwrapping key in the target token; with\n"
	    "                      replication.evidence, an SGX quote binds it and the nonce\n"
	    "  3. source: wrap     check the request (replication.attestation: an allowed\n"
	    "                      enclave must hold the unwrapping key), then wrap the CA key\n"
	    "                      for it as the token's security officer allows (the CA key\n"
	    "                      must have been made with key.replicable: true)\n"
	    "  4. target: unwrap   the CA key into the target token, sensitive and not\n"
	    "                      extractable, proven with root.pem (copy root.pem and\n"
	    "                      token.key from the source's state_dir first)\n"
	    "PINs, the SO PIN too, are read by the keyholder only, from a file or an\n"
	    "environment variable. docs/REPLICAS.md has the whole procedure.\n"
	    "\n"
	    "  -c, --config FILE   the CA configuration (ca.yaml) of this host\n"
	    "      --out FILE      where the request / wrapped key is written\n"
	    "      --nonce HEX     the source's nonce (64 hex digits)\n"
	    "      --request FILE  the target's request\n"
	    "      --in FILE       the wrapped key\n"
	    "      --so-pin-file F, --so-pin-env VAR   the source token's SO PIN\n"
	    "  -h, --help          this text\n");
}

int
ca_cmd_replicate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "nonce", required_argument, NULL, 'n' },
		{ "request", required_argument, NULL, 'r' },
		{ "in", required_argument, NULL, 'i' },
		{ "so-pin-file", required_argument, NULL, 'F' },
		{ "so-pin-env", required_argument, NULL, 'E' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	/* Which options each step takes, as their letters. */
	static const struct {
		const char *name, *opts, *need;
	} steps[] = {
		{ "nonce", "", "" },
		{ "request", "on", "o" },
		{ "wrap", "orFE", "or" },
		{ "unwrap", "i", "i" },
	};
	const char *cfgpath = NULL, *out = NULL, *nonce = NULL, *req = NULL, *in = NULL;
	const char *so_file = NULL, *so_env = NULL, *step, *allowed = NULL, *need = NULL;
	struct ca_config *cfg = NULL;
	char got[16] = "";
	int ch, r;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	step = argv[1];
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (strcmp(step, steps[i].name) == 0) {
			allowed = steps[i].opts;
			need = steps[i].need;
		}
	if (allowed == NULL) {
		fprintf(stderr, "hsmesh ca replicate: unknown step '%s'\n", step);
		usage(stderr);
		return 2;
	}
	argc--;
	argv++;
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:c:h", opts, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return 0;
		}
		if (ch == ':' || ch == '?') {
			fprintf(stderr, "hsmesh ca replicate %s: %s '%s'\n", step,
			    ch == ':' ? "missing value for option" : "unknown option", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
		if (ch != 'c' && strchr(allowed, ch) == NULL) {
			fprintf(stderr, "hsmesh ca replicate %s: option not valid for this step: '%s'\n",
			    step, argv[optind - 1]);
			usage(stderr);
			return 2;
		}
		if (strchr(got, ch) == NULL && strlen(got) + 1 < sizeof(got))
			got[strlen(got)] = (char)ch;
		switch (ch) {
		case 'c': cfgpath = optarg; break;
		case 'o': out = optarg; break;
		case 'n': nonce = optarg; break;
		case 'r': req = optarg; break;
		case 'i': in = optarg; break;
		case 'F': so_file = optarg; break;
		case 'E': so_env = optarg; break;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hsmesh ca replicate %s: unexpected argument '%s'\n", step, argv[optind]);
		usage(stderr);
		return 2;
	}
	for (const char *p = need; *p != '\0'; p++) {
		if (strchr(got, *p) == NULL) {
			fprintf(stderr, "hsmesh ca replicate %s: --%s is required\n", step,
			    *p == 'o' ? "out" : *p == 'r' ? "request" : "in");
			usage(stderr);
			return 2;
		}
	}
	if (cfgpath == NULL) {
		fprintf(stderr, "hsmesh ca replicate %s: -c ca.yaml is required\n", step);
		usage(stderr);
		return 2;
	}
	if ((r = ca_config_load(cfgpath, &cfg)) == 0) {
		if (strcmp(step, "nonce") == 0)
			r = cmd_nonce(cfg);
		else if (strcmp(step, "request") == 0)
			r = cmd_request(cfg, nonce, out);
		else if (strcmp(step, "wrap") == 0)
			r = cmd_wrap(cfg, req, out, so_file, so_env);
		else
			r = cmd_unwrap(cfg, in);
	}
	ca_config_free(cfg);
	return r == 0 ? 0 : ca_fail("replicate", r);
}
