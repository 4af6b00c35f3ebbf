/*
 * demo.c - `hsmesh demo`: the CA and a workload identity on a throwaway
 * SoftHSM2 token, step by step.
 *
 * The demo is an orchestrator: it runs the real commands (`hsmesh ca
 * init`, `hsmesh ca issue`, `hsmesh inspect`, `hsmesh keyholder`) as child
 * processes, exactly as an operator would, and uses a keyholder of its own
 * for the workload key. It never loads the PKCS#11 module itself. Everything
 * it creates lives in one temporary directory removed on exit or Ctrl-C.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cmds.h"
#include "err.h"
#include "khclient.h"
#include "provider.h"
#include "util.h"

#define DEMO_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define DEMO_TD "demo.hsmesh.test"
#define DEMO_ID "spiffe://" DEMO_TD "/ns/shop/sa/frontend"

static char tmpdir[64];
static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
	interrupted = 1;
}

static void
cleanup_dir(void)
{
	pid_t p;

	if (tmpdir[0] == '\0')
		return;
	/* rm -rf through a child: the tree holds token files of unknown depth. */
	if ((p = fork()) == 0) {
		execlp("rm", "rm", "-rf", tmpdir, (char *)NULL);
		_exit(127);
	}
	if (p > 0)
		waitpid(p, NULL, 0);
	tmpdir[0] = '\0';
}

static void
step(int n, const char *what)
{
	printf("\n\033[1m== step %d: %s\033[0m\n", n, what);
	fflush(stdout);
}

/*
 * Run argv; stdout goes to out_path when given (else inherited), stderr to
 * err_path when given. Output is indented on the terminal for readability.
 * Returns the exit status, or -1 when it could not run.
 */
static int
run(char *const argv[], const char *out_path, const char *err_path)
{
	int status;
	pid_t p;

	fflush(stdout);
	if ((p = fork()) < 0)
		return -1;
	if (p == 0) {
		int fd;

		if (out_path != NULL) {
			if ((fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
				_exit(127);
			dup2(fd, 1);
			close(fd);
		}
		if (err_path != NULL) {
			if ((fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
				_exit(127);
			dup2(fd, 2);
			close(fd);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(p, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (interrupted)
		return -1;	/* Ctrl-C: every later step fails and the directory is removed */
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
show_file(const char *path, const char *indent)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		printf("%s%s", indent, line);
	fclose(f);
}

static int
write_text(const char *path, const char *text, unsigned mode)
{
	return hsm_write_file_atomic(path, text, strlen(text), mode);
}

static int
fail(const char *what)
{
	fprintf(stderr, "hsmesh demo: %s\n", what);
	return 1;
}

/* A CSR for a token key, signed through the keyholder. */
static int
make_csr(struct kh_client *kh, const uint8_t *id, const uint8_t *spki, size_t spkilen,
    const char *path)
{
	const unsigned char *p = spki;
	EVP_PKEY *pub = NULL, *key = NULL;
	X509_REQ *req = NULL;
	X509_NAME *name;
	FILE *f = NULL;
	int st;

	if ((st = hsm_pkey_new(kh, id, spki, spkilen, 0, &key)) != 0)
		return st;
	st = HSM_ECRYPTO;
	if ((pub = d2i_PUBKEY(NULL, &p, (long)spkilen)) == NULL || (req = X509_REQ_new()) == NULL ||
	    (name = X509_REQ_get_subject_name(req)) == NULL ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"frontend", -1, -1, 0) ||
	    !X509_REQ_set_pubkey(req, pub) || X509_REQ_sign(req, key, EVP_sha256()) <= 0)
		goto out;
	if ((f = fopen(path, "w")) == NULL || !PEM_write_X509_REQ(f, req))
		goto out;
	st = 0;
out:
	if (f != NULL)
		fclose(f);
	X509_REQ_free(req);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(key);
	return st;
}

/* The hex id (SHA-256 of SPKI) of a PEM certificate's key. */
static int
cert_keyid(const char *path, char hex[2 * HSM_KEYID_LEN + 1])
{
	FILE *f = fopen(path, "r");
	X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL, md[SHA256_DIGEST_LENGTH];
	int n;

	if (f != NULL)
		fclose(f);
	if (x == NULL || (n = i2d_PUBKEY(X509_get0_pubkey(x), &der)) <= 0) {
		X509_free(x);
		return -1;
	}
	SHA256(der, (size_t)n, md);
	hsm_hex(md, sizeof(md), hex);
	OPENSSL_free(der);
	X509_free(x);
	return 0;
}

static int
verify_chain(const char *root_path, const char *leaf_path)
{
	FILE *f;
	X509 *root = NULL, *leaf = NULL;
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok = 0;

	if ((f = fopen(root_path, "r")) != NULL) {
		root = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if ((f = fopen(leaf_path, "r")) != NULL) {
		leaf = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (root != NULL && leaf != NULL && store != NULL && ctx != NULL &&
	    X509_STORE_add_cert(store, root) && X509_STORE_CTX_init(ctx, store, leaf, NULL)) {
		X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
		X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
		ok = X509_verify_cert(ctx) == 1;
		if (ok) {
			X509_STORE_CTX_cleanup(ctx);
			X509_STORE_CTX_init(ctx, store, leaf, NULL);
			X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
			X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
			ok = X509_verify_cert(ctx) == 1;
		}
		if (!ok)
			printf("   verification error: %s\n",
			    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(root);
	X509_free(leaf);
	return ok;
}

static int
demo(const char *self)
{
	char path[8][128], pin[17], conf[1024], hex[2 * HSM_KEYID_LEN + 1];
	char *const *argv;
	uint8_t rnd[8], id[HSM_KEYID_LEN], *spki = NULL;
	size_t spkilen = 0;
	struct kh_client *kh = NULL;
	struct kh_spawn_opts ko;
	pid_t khpid = -1;
	int st, rc = 1;
	enum { P_CONF, P_PIN, P_CA, P_ROOT, P_CSR, P_SVID, P_ERR, P_SHCONF };

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hsmesh-demo.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return fail("cannot create a temporary directory");
	snprintf(path[P_CONF], sizeof(path[0]), "%s/ca.yaml", tmpdir);
	snprintf(path[P_PIN], sizeof(path[0]), "%s/user.pin", tmpdir);
	snprintf(path[P_CA], sizeof(path[0]), "%s/ca", tmpdir);
	snprintf(path[P_ROOT], sizeof(path[0]), "%s/ca/root.pem", tmpdir);
	snprintf(path[P_CSR], sizeof(path[0]), "%s/frontend.csr", tmpdir);
	snprintf(path[P_SVID], sizeof(path[0]), "%s/frontend.pem", tmpdir);
	snprintf(path[P_ERR], sizeof(path[0]), "%s/stderr.txt", tmpdir);
	snprintf(path[P_SHCONF], sizeof(path[0]), "%s/softhsm2.conf", tmpdir);

	printf("hsmesh demo: a certificate authority and a workload identity whose private\n"
	    "keys are generated inside a PKCS#11 token and never leave it.\n"
	    "Working directory (removed on exit): %s\n", tmpdir);

	step(1, "create a throwaway SoftHSM2 token");
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto out;
	hsm_hex(rnd, sizeof(rnd), pin);		/* a random PIN, kept in a 0600 file */
	snprintf(conf, sizeof(conf), "directories.tokendir = %s\nobjectstore.backend = file\n"
	    "log.level = ERROR\n", tmpdir);
	if (write_text(path[P_SHCONF], conf, 0600) != 0 || write_text(path[P_PIN], pin, 0600) != 0)
		goto out;
	setenv("SOFTHSM2_CONF", path[P_SHCONF], 1);
	{
		/* softhsm2-util takes PINs only as arguments: this throwaway token's are random. */
		char so[17];

		RAND_bytes(rnd, sizeof(rnd));
		hsm_hex(rnd, sizeof(rnd), so);
		argv = (char *const[]){ "softhsm2-util", "--init-token", "--free", "--label",
		    "hsmesh-demo", "--pin", pin, "--so-pin", so, NULL };
		if (run(argv, "/dev/null", path[P_ERR]) != 0) {
			show_file(path[P_ERR], "   ");
			fail("softhsm2-util could not create the token (is softhsm2 installed? run make)");
			goto out;
		}
		OPENSSL_cleanse(so, sizeof(so));
	}
	printf("   token 'hsmesh-demo' created; user PIN in %s (mode 0600)\n", path[P_PIN]);

	step(2, "hsmesh ca init: the CA key is generated inside the token");
	snprintf(conf, sizeof(conf),
	    "# written by hsmesh demo\n"
	    "trust_domain: %s\n"
	    "token:\n"
	    "  module: %s\n"
	    "  uri: \"pkcs11:token=hsmesh-demo\"\n"
	    "  pin_file: %s\n"
	    "key:\n"
	    "  type: ec-p256\n"
	    "state_dir: %s\n"
	    "svid_ttl: 1h\n"
	    "max_ttl: 24h\n", DEMO_TD, DEMO_MODULE, path[P_PIN], path[P_CA]);
	if (write_text(path[P_CONF], conf, 0644) != 0)
		goto out;
	show_file(path[P_CONF], "   | ");
	argv = (char *const[]){ (char *)self, "ca", "init", "-c", path[P_CONF], NULL };
	printf("   $ hsmesh ca init -c ca.yaml\n");
	if (run(argv, NULL, NULL) != 0) {
		fail("ca init failed");
		goto out;
	}

	step(3, "the CA key's protection, as the token reports it");
	if (cert_keyid(path[P_ROOT], hex) != 0) {
		fail("cannot read root.pem");
		goto out;
	}
	argv = (char *const[]){ (char *)self, "keyholder", "--module", DEMO_MODULE, "--token",
	    "pkcs11:token=hsmesh-demo", "--pin-file", path[P_PIN], "--describe", hex, NULL };
	if (run(argv, NULL, NULL) != 0) {
		fail("cannot describe the CA key");
		goto out;
	}

	step(4, "a workload key is generated in the token; its CSR is signed there");
	memset(&ko, 0, sizeof(ko));
	ko.module = DEMO_MODULE;
	ko.token_uri = "pkcs11:token=hsmesh-demo";
	ko.pin_file = path[P_PIN];
	ko.exe = self;
	if ((st = hsm_provider_init()) != 0 || (st = kh_spawn(&ko, &kh, &khpid)) != 0 ||
	    (st = kh_generate(kh, HSM_KEY_EC_P256, "frontend", 0, id, &spki, &spkilen)) != 0 ||
	    (st = make_csr(kh, id, spki, spkilen, path[P_CSR])) != 0) {
		fail(hsm_err_msg(st));
		goto out;
	}
	printf("   key id %s (SHA-256 of its public key)\n", hsm_hex(id, HSM_KEYID_LEN, hex));
	printf("   CSR signed through the keyholder: %s\n", path[P_CSR]);

	step(5, "hsmesh ca issue: an X.509-SVID for " DEMO_ID);
	argv = (char *const[]){ (char *)self, "ca", "issue", "-c", path[P_CONF], "--csr", path[P_CSR],
	    "--id", DEMO_ID, "--ttl", "1h", NULL };
	printf("   $ hsmesh ca issue -c ca.yaml --csr frontend.csr --id %s --ttl 1h\n", DEMO_ID);
	if (run(argv, path[P_SVID], NULL) != 0) {
		fail("ca issue failed");
		goto out;
	}
	argv = (char *const[]){ (char *)self, "inspect", path[P_SVID], NULL };
	if (run(argv, NULL, NULL) != 0)
		goto out;
	printf("   chain check (X.509 strict, client and server purpose): %s\n",
	    verify_chain(path[P_ROOT], path[P_SVID]) ? "OK" : "FAILED");

	step(6, "the CA refuses what policy forbids (one line, non-zero exit)");
	{
		static const char *bad[][2] = {
			{ "spiffe://evil.example/ns/shop/sa/frontend", "1h" },
			{ "spiffe://" DEMO_TD "/ns/../admin", "1h" },
			{ DEMO_ID, "48h" },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			argv = (char *const[]){ (char *)self, "ca", "issue", "-c", path[P_CONF], "--csr",
			    path[P_CSR], "--id", (char *)bad[i][0], "--ttl", (char *)bad[i][1], NULL };
			printf("   $ hsmesh ca issue ... --id %s --ttl %s\n", bad[i][0], bad[i][1]);
			st = run(argv, "/dev/null", path[P_ERR]);
			show_file(path[P_ERR], "     ");
			printf("     -> %s\n", st != 0 ? "refused" : "ISSUED (unexpected)");
			if (st == 0)
				goto out;
		}
	}

	step(7, "done");
	printf("   The CA key and the workload key were created inside the token, used only\n"
	    "   through signing requests to the keyholder process, and never left it.\n");
	rc = interrupted ? 1 : 0;
out:
	free(spki);
	kh_client_free(kh);
	if (khpid > 0)
		waitpid(khpid, NULL, 0);
	OPENSSL_cleanse(pin, sizeof(pin));
	cleanup_dir();
	return rc;
}

int
demo_main(int argc, char **argv)
{
	char self[4096];
	ssize_t n;
	struct sigaction sa;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("usage: hsmesh demo\n\nRuns the CA and a workload identity on a throwaway "
		    "SoftHSM2 token, step by step,\nand removes everything it created on exit or Ctrl-C.\n");
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: hsmesh demo\n");
		return 2;
	}
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
		return fail("cannot find the hsmesh binary");
	self[n] = '\0';
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return demo(self);
}
