/*
 * test_p11.c - the token layer against a throwaway SoftHSM2 token made in
 * a temporary directory (or a TPM 2.0 one: token_backend.h): key
 * generation, attributes, signatures checked with OpenSSL, the failure
 * paths (wrong PIN, bad module, absent token), concurrency and fork.
 * TPM=yes: tests/run.sh runs it a second time on a software TPM 2.0.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "err.h"
#include "keytypes.h"
#include "p11.h"
#include "util.h"

#include "token_backend.h"

#define MODULE tb_module()
/* What C_GetTokenInfo says about every token of the backend. */
#define MANUF_MODEL (tb_tpm() ? "manufacturer=IBM;model=SW%20%20%20TPM" : \
	"manufacturer=SoftHSM%20project;model=SoftHSM%20v2")
#define URI "pkcs11:token=hsmesh%20test"

static char dir[64];
static char pinfile[128], badpinfile[128];
static const struct p11_pin_source goodpin = { .file = pinfile };

static int
group_setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hsmesh-test-p11-XXXXXX");
	if (mkdtemp(dir) == NULL || tb_setup(dir) != 0 || tb_new_token("hsmesh test") != 0)
		return -1;
	/* A second token, so that a vague URI matches more than one. */
	if (tb_new_token("other") != 0)
		return -1;
	snprintf(pinfile, sizeof(pinfile), "%s/pin", dir);
	snprintf(badpinfile, sizeof(badpinfile), "%s/badpin", dir);
	if (hsm_write_file_atomic(pinfile, "1234\n", 5, 0600) != 0 ||
	    hsm_write_file_atomic(badpinfile, "9999\n", 5, 0600) != 0)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	char cmd[128];

	if (dir[0] == '\0')
		return 0;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct p11_token *
open_ok(int nsessions)
{
	struct p11_token *tok = NULL;
	int r = p11_token_open(MODULE, URI, &goodpin, nsessions, &tok);

	if (r != 0)
		fail_msg("p11_token_open: %s", hsm_err_msg(r));
	assert_non_null(tok);
	return tok;
}

static const EVP_MD *
alg_md(int alg)
{
	switch (alg) {
	case HSM_SIG_RSA_PKCS1_SHA256: case HSM_SIG_RSA_PSS_SHA256: return EVP_sha256();
	case HSM_SIG_RSA_PKCS1_SHA384: case HSM_SIG_RSA_PSS_SHA384: return EVP_sha384();
	case HSM_SIG_RSA_PKCS1_SHA512: case HSM_SIG_RSA_PSS_SHA512: return EVP_sha512();
	default: return EVP_sha256();
	}
}

/* 1 when OpenSSL accepts sig over digest with the SPKI's key. */
static int
verify(const uint8_t *spki, size_t spkilen, int alg, const uint8_t *dg, size_t dlen,
    const uint8_t *sig, size_t siglen)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)spkilen);
	EVP_PKEY_CTX *ctx = NULL;
	int ok = 0;

	if (pk == NULL || (ctx = EVP_PKEY_CTX_new(pk, NULL)) == NULL ||
	    EVP_PKEY_verify_init(ctx) != 1)
		goto out;
	if (alg != HSM_SIG_ECDSA) {
		bool pss = alg >= HSM_SIG_RSA_PSS_SHA256;

		if (EVP_PKEY_CTX_set_signature_md(ctx, alg_md(alg)) != 1 ||
		    EVP_PKEY_CTX_set_rsa_padding(ctx, pss ? RSA_PKCS1_PSS_PADDING :
		    RSA_PKCS1_PADDING) != 1)
			goto out;
		if (pss && (EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, alg_md(alg)) != 1))
			goto out;
	}
	ok = EVP_PKEY_verify(ctx, sig, siglen, dg, dlen) == 1;
 out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ok;
}

static void
digest_of(const char *msg, const EVP_MD *md, uint8_t *out, size_t *len)
{
	unsigned int n = 0;

	assert_int_equal(EVP_Digest(msg, strlen(msg), out, &n, md, NULL), 1);
	*len = n;
}

static void
check_sign(struct p11_token *tok, const uint8_t *keyid, const uint8_t *spki, size_t spkilen,
    int alg)
{
	uint8_t dg[64], sig[HSM_MAX_SIG];
	size_t dlen, siglen;
	int r;

	digest_of("hello, mesh", alg_md(alg), dg, &dlen);
	r = p11_sign(tok, keyid, alg, dg, dlen, sig, &siglen);
	if (r != 0)
		fail_msg("p11_sign alg %d: %s", alg, hsm_err_msg(r));
	assert_true(verify(spki, spkilen, alg, dg, dlen, sig, siglen));
	if (alg == HSM_SIG_ECDSA)
		assert_int_equal(sig[0], 0x30);	/* DER SEQUENCE, not raw r||s */
	/* A flipped digest bit must not verify. */
	dg[0] ^= 1;
	assert_false(verify(spki, spkilen, alg, dg, dlen, sig, siglen));
}

static void
gen_and_check(enum hsm_keytype kt, int bits, const char *label, const int *algs, size_t nalgs)
{
	struct p11_token *tok = open_ok(2);
	uint8_t keyid[HSM_KEYID_LEN], keyid2[HSM_KEYID_LEN], md[32];
	uint8_t *spki = NULL, *spki2 = NULL;
	size_t spkilen = 0, spkilen2 = 0;
	const unsigned char *p;
	struct p11_key_info ki;
	EVP_PKEY *pk;
	uint8_t dg[32], sig[HSM_MAX_SIG];
	size_t siglen;
	int r;

	r = p11_generate(tok, kt, label, keyid, &spki, &spkilen);
	if (r != 0)
		fail_msg("p11_generate: %s", hsm_err_msg(r));

	/* The key is named by the SHA-256 of its SubjectPublicKeyInfo. */
	assert_int_equal(EVP_Digest(spki, spkilen, md, NULL, EVP_sha256(), NULL), 1);
	assert_memory_equal(md, keyid, 32);
	p = spki;
	assert_non_null(pk = d2i_PUBKEY(NULL, &p, (long)spkilen));
	assert_int_equal(EVP_PKEY_get_bits(pk), bits);
	EVP_PKEY_free(pk);

	/* Born in the token, never to leave it. */
	assert_int_equal(p11_key_info(tok, keyid, &ki), 0);
	assert_int_equal(ki.type, kt);
	assert_true(ki.sensitive);
	assert_true(ki.always_sensitive);
	assert_false(ki.extractable);
	assert_true(ki.never_extractable);
	assert_true(ki.token);
	assert_true(ki.private_);
	assert_string_equal(ki.label, label);

	for (size_t i = 0; i < nalgs; i++)
		check_sign(tok, keyid, spki, spkilen, algs[i]);

	/* Wrong algorithm family for the key, wrong digest sizes. */
	memset(dg, 7, sizeof(dg));
	assert_int_equal(p11_sign(tok, keyid, kt == HSM_KEY_RSA_3072 ? HSM_SIG_ECDSA :
	    HSM_SIG_RSA_PSS_SHA256, dg, 32, sig, &siglen), HSM_EUNSUPPORTED);
	assert_int_equal(p11_sign(tok, keyid, 99, dg, 32, sig, &siglen), HSM_EUNSUPPORTED);
	assert_int_equal(p11_sign(tok, keyid, kt == HSM_KEY_RSA_3072 ? HSM_SIG_RSA_PKCS1_SHA384 :
	    HSM_SIG_ECDSA, dg, kt == HSM_KEY_RSA_3072 ? 32 : 19, sig, &siglen), HSM_EINVAL);

	/* Same public key back by id, and by label. */
	assert_int_equal(p11_pubkey(tok, keyid, &spki2, &spkilen2), 0);
	assert_int_equal(spkilen2, spkilen);
	assert_memory_equal(spki2, spki, spkilen);
	free(spki2);
	spki2 = NULL;
	assert_int_equal(p11_find_label(tok, label, keyid2, &spki2, &spkilen2), 0);
	assert_memory_equal(keyid2, keyid, HSM_KEYID_LEN);
	assert_memory_equal(spki2, spki, spkilen);
	free(spki2);
	spki2 = NULL;

	/* A second token handle (fresh cache) sees the same key. */
	{
		struct p11_token *tok2 = open_ok(1);

		check_sign(tok2, keyid, spki, spkilen, algs[0]);
		p11_token_close(tok2);
	}

	/* Destroyed means gone, for every operation. */
	assert_int_equal(p11_destroy(tok, keyid), 0);
	assert_int_equal(p11_pubkey(tok, keyid, &spki2, &spkilen2), HSM_ENOENT);
	assert_null(spki2);
	assert_int_equal(p11_sign(tok, keyid, algs[0], dg, 32, sig, &siglen), HSM_ENOENT);
	assert_int_equal(p11_key_info(tok, keyid, &ki), HSM_ENOENT);
	assert_int_equal(p11_destroy(tok, keyid), HSM_ENOENT);
	assert_int_equal(p11_find_label(tok, label, keyid2, &spki2, &spkilen2), HSM_ENOENT);
	free(spki);
	p11_token_close(tok);
}

static void
gen_p256(void **state)
{
	static const int algs[] = { HSM_SIG_ECDSA };

	gen_and_check(HSM_KEY_EC_P256, 256, "test-p256", algs, 1);
}

static void
gen_p384(void **state)
{
	static const int algs[] = { HSM_SIG_ECDSA };

	gen_and_check(HSM_KEY_EC_P384, 384, "test-p384", algs, 1);
}

static void
gen_rsa3072(void **state)
{
	static const int algs[] = {
		HSM_SIG_RSA_PKCS1_SHA256, HSM_SIG_RSA_PKCS1_SHA384, HSM_SIG_RSA_PKCS1_SHA512,
		HSM_SIG_RSA_PSS_SHA256, HSM_SIG_RSA_PSS_SHA384, HSM_SIG_RSA_PSS_SHA512,
	};

	gen_and_check(HSM_KEY_RSA_3072, 3072, "test-rsa", algs, sizeof(algs) / sizeof(algs[0]));
}

static void
label_and_token_name(void **state)
{
	struct p11_token *tok = open_ok(1);
	uint8_t keyid[HSM_KEYID_LEN];
	uint8_t *spki = (uint8_t *)"x";
	size_t len = 1;
	char longlabel[HSM_MAX_LABEL + 2];

	assert_string_equal(p11_token_label(tok), "hsmesh test");
	assert_int_equal(p11_find_label(tok, "no-such-label", keyid, &spki, &len), HSM_ENOENT);
	assert_null(spki);
	assert_int_equal(len, 0);
	memset(longlabel, 'a', sizeof(longlabel) - 1);
	longlabel[sizeof(longlabel) - 1] = '\0';
	assert_int_equal(p11_generate(tok, HSM_KEY_EC_P256, longlabel, keyid, &spki, &len),
	    HSM_EINVAL);
	p11_token_close(tok);
	p11_token_close(NULL);
}

static int
pin_count_low(void)
{
	char cmd[256];
	FILE *f;
	char line[512];
	int low = 0;

	snprintf(cmd, sizeof(cmd), "pkcs11-tool --module %s -L 2>/dev/null", MODULE);
	if ((f = popen(cmd, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, "PIN count low") != NULL)
			low = 1;
	pclose(f);
	return low;
}

static void
wrong_pin(void **state)
{
	struct p11_pin_source bad = { .file = badpinfile };
	struct p11_token *tok = NULL;
	/* tpm2-pkcs11 has no "count low" flag: the TPM counts failures itself. */
	int low = tb_tpm() ? 0 : 1, r;

	r = p11_token_open(MODULE, URI, &bad, 1, &tok);
	assert_int_equal(r, HSM_EPIN);
	assert_null(tok);
	assert_non_null(strstr(hsm_err_detail(), "CKR_PIN_INCORRECT"));
	assert_int_equal(pin_count_low(), low);

	/* The right PIN works and clears the token's "count low" flag. */
	p11_token_close(open_ok(1));
	assert_int_equal(pin_count_low(), 0);

	/* The same wrong PIN is not offered again: the flag stays clear. */
	r = p11_token_open(MODULE, URI, &bad, 1, &tok);
	assert_true(r == HSM_EPIN || r == HSM_EPINLOCKED);
	assert_null(tok);
	assert_non_null(strstr(hsm_err_detail(), "already rejected"));
	assert_int_equal(pin_count_low(), 0);
	p11_token_close(open_ok(1));
}

static void
pin_sources(void **state)
{
	struct p11_pin_source env = { .env = "HSMESH_TEST_PIN" };
	struct p11_pin_source missing = { .file = "/nonexistent/pin" };
	struct p11_pin_source both = { .file = pinfile, .env = "HSMESH_TEST_PIN" };
	struct p11_pin_source val = { .value = "1234", .value_len = 4 };
	struct p11_token *tok = NULL;

	setenv("HSMESH_TEST_PIN", "1234", 1);
	assert_int_equal(p11_token_open(MODULE, URI, &env, 1, &tok), 0);
	p11_token_close(tok);
	tok = NULL;
	/* Taken once: the variable left the environment. */
	assert_null(getenv("HSMESH_TEST_PIN"));
	assert_int_equal(p11_token_open(MODULE, URI, &val, 1, &tok), 0);
	p11_token_close(tok);
	tok = NULL;
	unsetenv("HSMESH_TEST_PIN");
	assert_int_equal(p11_token_open(MODULE, URI, &env, 1, &tok), HSM_ENOENT);
	assert_int_equal(p11_token_open(MODULE, URI, &missing, 1, &tok), HSM_ENOENT);
	assert_int_equal(p11_token_open(MODULE, URI, &both, 1, &tok), HSM_EINVAL);
	assert_int_equal(p11_token_open(MODULE, URI, &goodpin, 0, &tok), HSM_EINVAL);
	assert_null(tok);
}

static void
bad_modules(void **state)
{
	struct p11_token *tok = NULL;
	char libc[256];
	FILE *f;
	int r;

	r = p11_token_open("/nonexistent/libp11.so", URI, &goodpin, 1, &tok);
	assert_int_equal(r, HSM_EMODULE);
	assert_non_null(strstr(hsm_err_detail(), "cannot load PKCS#11 module /nonexistent/libp11.so"));
	assert_non_null(strstr(hsm_err_detail(), "No such file or directory"));

	/* An executable, a library without C_GetFunctionList, a directory. */
	assert_int_equal(p11_token_open("/bin/ls", URI, &goodpin, 1, &tok), HSM_EMODULE);
	if ((f = popen("gcc -print-file-name=libc.so.6", "r")) != NULL &&
	    fgets(libc, sizeof(libc), f) != NULL) {
		libc[strcspn(libc, "\n")] = '\0';
		if (libc[0] == '/') {
			assert_int_equal(p11_token_open(libc, URI, &goodpin, 1, &tok), HSM_EMODULE);
			assert_non_null(strstr(hsm_err_detail(), "C_GetFunctionList"));
		}
	}
	if (f != NULL)
		pclose(f);
	assert_int_equal(p11_token_open("/lib/x86_64-linux-gnu/libz.so.1", URI, &goodpin, 1, &tok),
	    HSM_EMODULE);
	assert_int_equal(p11_token_open("/tmp", URI, &goodpin, 1, &tok), HSM_EMODULE);
	assert_null(tok);
}

static void
bad_tokens(void **state)
{
	struct p11_token *tok = NULL;
	char uri[128];

	assert_int_equal(p11_token_open(MODULE, "pkcs11:token=absent", &goodpin, 1, &tok),
	    HSM_ETOKEN);
	assert_non_null(strstr(hsm_err_detail(), "no token matches pkcs11:token=absent"));
	assert_int_equal(p11_token_open(MODULE, "pkcs11:token=hsmesh%20test;serial=0", &goodpin,
	    1, &tok), HSM_ETOKEN);
	assert_int_equal(p11_token_open(MODULE, "pkcs11:token=hsmesh%20test;model=nope", &goodpin,
	    1, &tok), HSM_ETOKEN);
	assert_int_equal(p11_token_open(MODULE, "pkcs11:tokn=hsmesh", &goodpin, 1, &tok),
	    HSM_EINVAL);
	assert_int_equal(p11_token_open(MODULE, "pkcs11:token=x?pin-value=1234", &goodpin, 1, &tok),
	    HSM_EINVAL);
	assert_null(tok);

	/* Two initialised tokens (the free spare one never counts): a vague URI is refused. */
	assert_int_equal(p11_token_open(MODULE, "pkcs11:", &goodpin, 1, &tok), HSM_ETOKEN);
	assert_non_null(strstr(hsm_err_detail(), "2 tokens match"));
	snprintf(uri, sizeof(uri), "pkcs11:%s", MANUF_MODEL);
	assert_int_equal(p11_token_open(MODULE, uri, &goodpin, 1, &tok), HSM_ETOKEN);
	assert_null(tok);
	snprintf(uri, sizeof(uri), "pkcs11:%s;token=other", MANUF_MODEL);
	assert_int_equal(p11_token_open(MODULE, uri, &goodpin, 1, &tok), 0);
	assert_string_equal(p11_token_label(tok), "other");

	/* Two tokens of one module open at once; closing one leaves the other logged in. */
	{
		struct p11_token *t2 = open_ok(1), *t3 = open_ok(1);
		uint8_t keyid[HSM_KEYID_LEN], *spki = NULL;
		size_t spkilen;

		p11_token_close(tok);
		tok = NULL;
		p11_token_close(t3);
		assert_int_equal(p11_generate(t2, HSM_KEY_EC_P256, "two", keyid, &spki, &spkilen), 0);
		check_sign(t2, keyid, spki, spkilen, HSM_SIG_ECDSA);
		assert_int_equal(p11_destroy(t2, keyid), 0);
		free(spki);
		p11_token_close(t2);
	}
}

/* ---- concurrency ---- */

struct thr {
	struct p11_token *tok;
	const uint8_t *keyid, *spki;
	size_t spkilen;
	uint64_t until;
	int n, bad;
};

static void *
signer(void *arg)
{
	struct thr *t = arg;
	uint8_t dg[32], sig[HSM_MAX_SIG];
	size_t siglen;
	char msg[64];

	while (hsm_now_ms() < t->until) {
		snprintf(msg, sizeof(msg), "message %d from %p", t->n, (void *)t);
		EVP_Digest(msg, strlen(msg), dg, NULL, EVP_sha256(), NULL);
		if (p11_sign(t->tok, t->keyid, HSM_SIG_ECDSA, dg, 32, sig, &siglen) != 0 ||
		    !verify(t->spki, t->spkilen, HSM_SIG_ECDSA, dg, 32, sig, siglen))
			t->bad++;
		t->n++;
	}
	return NULL;
}

static void
threads_sign(void **state)
{
	struct p11_token *tok = open_ok(4);
	uint8_t keyid[HSM_KEYID_LEN], *spki = NULL;
	size_t spkilen;
	struct thr t[8];
	pthread_t th[8];
	int total = 0;

	assert_int_equal(p11_generate(tok, HSM_KEY_EC_P256, "threads", keyid, &spki, &spkilen), 0);
	for (int i = 0; i < 8; i++) {
		t[i] = (struct thr){ tok, keyid, spki, spkilen, hsm_now_ms() + 2000, 0, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, signer, &t[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].bad, 0);
		assert_true(t[i].n > 0);
		total += t[i].n;
	}
	print_message("# %d signatures by 8 threads on 4 sessions in 2 s\n", total);
	assert_int_equal(p11_destroy(tok, keyid), 0);
	free(spki);
	p11_token_close(tok);
}

/* ---- fork ---- */

static int
child_sign(struct p11_token *tok, const uint8_t *keyid, const uint8_t *spki, size_t spkilen,
    bool explicit_reset)
{
	uint8_t dg[32], sig[HSM_MAX_SIG];
	size_t siglen;

	if (explicit_reset && p11_token_reset_after_fork(tok) != 0)
		return 2;
	memset(dg, 0x42, sizeof(dg));
	if (p11_sign(tok, keyid, HSM_SIG_ECDSA, dg, 32, sig, &siglen) != 0)
		return 3;
	if (!verify(spki, spkilen, HSM_SIG_ECDSA, dg, 32, sig, siglen))
		return 4;
	return 0;
}

static void
fork_reset(void **state)
{
	struct p11_token *tok;
	uint8_t keyid[HSM_KEYID_LEN], *spki = NULL;
	size_t spkilen;
	int status;
	pid_t pid;

	/*
	 * The tabrmd TCTI talks D-Bus through a GLib worker thread that a
	 * forked child does not have: on the TPM a child must exec.
	 */
	if (tb_tpm()) {
		print_message("# fork reset not run on the TPM (tabrmd TCTI)\n");
		return;
	}
	tok = open_ok(2);
	assert_int_equal(p11_generate(tok, HSM_KEY_EC_P256, "fork", keyid, &spki, &spkilen), 0);
	check_sign(tok, keyid, spki, spkilen, HSM_SIG_ECDSA);
	for (int mode = 0; mode < 2; mode++) {
		/* mode 0: explicit reset; mode 1: detected by the pid change. */
		fflush(NULL);
		if ((pid = fork()) == 0)
			_exit(child_sign(tok, keyid, spki, spkilen, mode == 0));
		assert_true(pid > 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		/* The parent's sessions are untouched by the child. */
		check_sign(tok, keyid, spki, spkilen, HSM_SIG_ECDSA);
	}
	assert_int_equal(p11_destroy(tok, keyid), 0);
	free(spki);
	p11_token_close(tok);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(gen_p256),
		cmocka_unit_test(gen_p384),
		cmocka_unit_test(gen_rsa3072),
		cmocka_unit_test(label_and_token_name),
		cmocka_unit_test(wrong_pin),
		cmocka_unit_test(pin_sources),
		cmocka_unit_test(bad_modules),
		cmocka_unit_test(bad_tokens),
		cmocka_unit_test(threads_sign),
		cmocka_unit_test(fork_reset),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
