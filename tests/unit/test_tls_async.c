/*
 * test_tls_async.c - the sidecar's signing path, end to end: a real CA
 * (`hsmesh ca serve`, 10 s SVIDs, so the agent rotates every ~5 s) and a
 * real node agent (`hsmesh agent`) on throwaway SoftHSM2 tokens, the
 * agent's local API through agclient (requests, a subscription made before
 * the agent enrolled, signatures naming the current, a retired or an
 * unknown key; refusals of what is not a TLS handshake signature input:
 * an old digest SIGN, a CMP kur's ProtectedPart, a digest), and TLS 1.3
 * and TLS 1.2 mutual handshakes over an in-memory BIO pair whose keys
 * (server and client) sign through the agent, the server's inside OpenSSL
 * async jobs (SSL_MODE_ASYNC). Failure paths: an agent that stops
 * answering (deadline) and an agent killed mid-handshake (HSM_ECLOSED):
 * the handshake fails, it never hangs, and the subscription ends once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/async.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "agclient.h"
#include "agentproto.h"
#include "cert.h"
#include "err.h"
#include "keytypes.h"
#include "provider_agent.h"
#include "provider_core.h"
#include "tlssig.h"
#include "util.h"

#include "cmpkur.h"
#include "testproc.h"

#define ID "spiffe://example.org/web"

static char dir[64], exe[PATH_MAX], sock[128], rootpem[128];
static pid_t ca_pid = -1, agent_pid = -1;
static struct agc_client *agc;

/*
 * What a subscription's callback saw. It runs on the reader thread, where
 * cmocka cannot fail a test: it records, the test checks.
 */
struct subrec {
	pthread_mutex_t mu;
	int nsvid;			/* cb(arg, 0, svid) calls */
	int nfinal;			/* cb(arg, status, NULL) calls */
	int final;			/* the last final status */
	int odd;			/* a call after the final one, or bad arguments */
	char why[256];			/* hsm_err_msg(final) in the callback */
	char *chain, *bundle;		/* the last SVID */
	char id[128];
	uint64_t not_after;
	unsigned slow_ms;		/* sleep in the callback (after recording) */
	atomic_int in_cb;
};

/* A subscription made before the agent had enrolled; lives until the agent dies. */
static struct agc_client *early;
static struct subrec early_rec = { .mu = PTHREAD_MUTEX_INITIALIZER };
static int early_held;		/* the agent answered "not enrolled yet" to a GET_SVID after it */

/* A file of the test directory on stderr (a daemon's log after a failure). */
static void
dump(const char *name)
{
	tp_dump(dir, name);
}

static void
on_sub(void *arg, int status, const struct agc_svid *sv)
{
	struct subrec *r = arg;

	pthread_mutex_lock(&r->mu);
	if (r->nfinal > 0 || (status == 0) != (sv != NULL))
		r->odd++;
	if (status == 0 && sv != NULL) {
		free(r->chain);
		free(r->bundle);
		r->chain = strdup(sv->chain_pem);
		r->bundle = strdup(sv->bundle_pem);
		snprintf(r->id, sizeof(r->id), "%s", sv->spiffe_id);
		r->not_after = sv->not_after;
		r->nsvid++;
	} else if (status != 0) {
		r->final = status;
		snprintf(r->why, sizeof(r->why), "%s", hsm_err_msg(status));
		r->nfinal++;
	}
	pthread_mutex_unlock(&r->mu);
	if (status == 0 && r->slow_ms > 0) {
		atomic_store(&r->in_cb, 1);
		usleep(r->slow_ms * 1000);
		atomic_store(&r->in_cb, 0);
	}
}

/* Wait up to ms for the subscription to have seen nsvid SVIDs (or nfinal endings). */
static int
sub_wait(struct subrec *r, int nsvid, int nfinal, unsigned ms)
{
	uint64_t end = hsm_now_ms() + ms;
	int ok;

	for (;;) {
		pthread_mutex_lock(&r->mu);
		ok = r->nsvid >= nsvid && r->nfinal >= nfinal;
		pthread_mutex_unlock(&r->mu);
		if (ok || hsm_now_ms() > end)
			return ok;
		usleep(10000);
	}
}

static void
subrec_clear(struct subrec *r)
{
	free(r->chain);
	free(r->bundle);
	r->chain = r->bundle = NULL;
}

static int teardown(void **state);

static int
setup_all(void)
{
	char port[32] = "", yaml[2048];
	char agyaml[160], agerr[160], join[160], join_new[160];
	char *chain = NULL, *bundle = NULL;
	uint64_t na;
	int st = HSM_EAGAIN;

	if (tp_setup(exe, dir, sizeof(dir), "/tmp/hsmesh-tls.XXXXXX",
	    (const char *[]){ "ca", "agent", NULL }) != 0)
		return -1;

	/* The CA: key in the "ca" token, listening on a free port. */
	snprintf(rootpem, sizeof(rootpem), "%s/ca/root.pem", dir);
	if (tp_ca_start(exe, dir, "10s", &ca_pid, port, sizeof(port)) != 0)
		return -1;
	/* The join token goes in place only once a subscription waits for it. */
	snprintf(join, sizeof(join), "%s/join.tok", dir);
	snprintf(join_new, sizeof(join_new), "%s/join.new", dir);
	if (tp_ca_token(exe, dir, ID, join_new) != 0)
		return -1;

	/* The agent: keys in the "agent" token; this uid owns ID. */
	snprintf(sock, sizeof(sock), "%s/agent.sock", dir);
	snprintf(agyaml, sizeof(agyaml), "%s/agent.yaml", dir);
	snprintf(agerr, sizeof(agerr), "%s/agent.log", dir);
	snprintf(yaml, sizeof(yaml),
	    "token:\n  module: /usr/lib/softhsm/libsofthsm2.so\n  uri: \"pkcs11:token=agent\"\n"
	    "  pin_file: %s/pin\n"
	    "ca:\n  url: http://127.0.0.1:%s/.well-known/cmp\n  root: %s\n"
	    "state_dir: %s/state\nsocket: %s\nkey:\n  type: ec-p256\nrenew_at: 0.5\n"
	    "retry:\n  min: 1s\n  max: 2s\n"
	    "workloads:\n  - id: " ID "\n    uid: %u\n    join_token_file: %s\n",
	    dir, port, rootpem, dir, sock, (unsigned)getuid(), join);
	if (tp_write_text(agyaml, yaml) != 0)
		return -1;
	agent_pid = tp_run(exe, NULL, agerr, (const char *[]){ "hsmesh", "agent", "-c", agyaml, NULL });

	/*
	 * Subscribe as soon as the agent listens: it cannot enroll without the
	 * join token, so it answers "not enrolled yet" and keeps the
	 * subscription. Then the token goes in place, and the agent has
	 * enrolled when GET_SVID stops answering HSM_EAGAIN.
	 */
	for (int i = 0; i < 300 && st != 0; i++) {
		if (agc == NULL && agc_connect(sock, &agc) != 0) {
			usleep(100000);
			continue;
		}
		if (early == NULL && ((st = agc_connect(sock, &early)) != 0 ||
		    (st = agc_subscribe(early, ID, on_sub, &early_rec)) != 0)) {
			fprintf(stderr, "# early subscription: %s\n", hsm_err_msg(st));
			return -1;
		}
		if ((st = agc_get_svid(agc, ID, 2000, &chain, &bundle, &na)) == HSM_ECLOSED) {
			agc_free(agc);
			agc = NULL;
		}
		if (st == HSM_EAGAIN && access(join, F_OK) != 0) {
			early_held = 1;
			if (rename(join_new, join) != 0)
				return -1;
		}
		if (st != 0)
			usleep(100000);
	}
	free(chain);
	free(bundle);
	if (st != 0) {
		fprintf(stderr, "# agent did not enroll: %s\n", hsm_err_msg(st));
		dump("agent.log");
		dump("ca.log");
		return -1;
	}
	return hsm_provider_init() == 0 ? 0 : -1;
}

/* cmocka skips the group teardown when setup fails: clean up here then. */
static int
setup(void **state)
{
	if (setup_all() == 0)
		return 0;
	(void)teardown(state);
	return -1;
}

static int
teardown(void **state)
{
	char cmd[128];

	agc_free(agc);
	agc = NULL;
	agc_free(early);
	early = NULL;
	subrec_clear(&early_rec);
	tp_stop(&agent_pid);
	tp_stop(&ca_pid);
	/* The agent's keyholder exits when the agent does; give it a moment. */
	usleep(200000);
	if (dir[0] == '\0' || strstr(dir, "XXXXXX") != NULL)
		return 0;	/* mkdtemp did not run or failed */
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* The SVID's chain: leaf and the rest (caller frees both). */
static void
get_chain(struct agc_client *c, X509 **leaf, STACK_OF(X509) **rest)
{
	char *chain = NULL, *bundle = NULL;
	uint64_t na;
	BIO *b;
	X509 *x;
	int st;

	if ((st = agc_get_svid(c, ID, 0, &chain, &bundle, &na)) != 0)
		fail_msg("agc_get_svid: %s", hsm_err_msg(st));
	assert_true(na > (uint64_t)time(NULL));
	b = BIO_new_mem_buf(chain, -1);
	*leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
	assert_non_null(*leaf);
	*rest = sk_X509_new_null();
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		sk_X509_push(*rest, x);
	ERR_clear_error();
	BIO_free(b);
	free(chain);
	free(bundle);
}

static void
get_svid_has_id(void **state)
{
	char *chain, *bundle, *uri = NULL;
	uint64_t na;
	X509 *leaf;
	STACK_OF(X509) *rest;
	uint8_t *root = NULL;
	size_t rootlen;

	assert_int_equal(agc_get_svid(agc, ID, 0, &chain, &bundle, &na), 0);
	assert_non_null(strstr(chain, "BEGIN CERTIFICATE"));
	/* The bundle is the CA's root. */
	assert_int_equal(hsm_read_file(rootpem, 1 << 20, &root, &rootlen), 0);
	assert_int_equal(strlen(bundle), rootlen);
	assert_memory_equal(bundle, root, rootlen);
	free(root);
	free(chain);
	free(bundle);
	get_chain(agc, &leaf, &rest);
	assert_int_equal(cert_uri_san(leaf, &uri), 0);
	assert_string_equal(uri, ID);
	free(uri);
	/* The empty ID names the caller's only one. */
	assert_int_equal(agc_get_svid(agc, "", 0, &chain, &bundle, &na), 0);
	free(chain);
	free(bundle);
	/* An ID this uid does not own reads as refused (root: unknown, same text). */
	assert_int_equal(agc_get_svid(agc, "spiffe://example.org/other", 0, &chain, &bundle, &na),
	    HSM_EPERM);
	assert_null(chain);
	X509_free(leaf);
	sk_X509_pop_free(rest, X509_free);
}

static int
verify_digest(EVP_PKEY *pub, const uint8_t *dg, size_t dlen, const uint8_t *sig, size_t siglen)
{
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pub, NULL);
	int ok = pc != NULL && EVP_PKEY_verify_init(pc) == 1 &&
	    EVP_PKEY_verify(pc, sig, siglen, dg, dlen) == 1;

	EVP_PKEY_CTX_free(pc);
	return ok;
}

/*
 * A TLS 1.3 server CertificateVerify input over a random transcript hash
 * (what the agent signs), and dg: its SHA-256, what the signature is over.
 */
static void
tls_input(uint8_t tbs[TLSSIG_TLS13_LEN(32)], uint8_t dg[32])
{
	uint8_t th[32];

	RAND_bytes(th, sizeof(th));
	assert_int_equal(tlssig_tls13_input(1, th, sizeof(th), tbs), TLSSIG_TLS13_LEN(32));
	SHA256(tbs, TLSSIG_TLS13_LEN(32), dg);
}

/* The agent's key id of a certificate: SHA-256 of its SubjectPublicKeyInfo. */
static void
leaf_keyid(X509 *leaf, uint8_t kid[HSM_KEYID_LEN])
{
	uint8_t *spki = NULL;
	int n = i2d_PUBKEY(X509_get0_pubkey(leaf), &spki);

	assert_true(n > 0);
	SHA256(spki, (size_t)n, kid);
	OPENSSL_free(spki);
}

/* The first certificate of a PEM chain, or NULL. */
static X509 *
pem_leaf(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	return x;
}

static void
sign_verifies(void **state)
{
	X509 *leaf;
	STACK_OF(X509) *rest;
	uint8_t tbs[TLSSIG_TLS13_LEN(32)], dg[32], sig[HSM_MAX_SIG], kid[HSM_KEYID_LEN];
	size_t siglen;
	struct agc_req *req;
	struct pollfd pfd;
	uint64_t v;
	int efd, st;

	get_chain(agc, &leaf, &rest);
	leaf_keyid(leaf, kid);
	/* The current key, unnamed: a rotation (every ~5 s here) may fall in between. */
	tls_input(tbs, dg);
	assert_int_equal(agc_sign(agc, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs, sizeof(tbs), 0,
	    sig, &siglen), 0);
	if (!verify_digest(X509_get0_pubkey(leaf), dg, sizeof(dg), sig, siglen)) {
		X509_free(leaf);
		sk_X509_pop_free(rest, X509_free);
		get_chain(agc, &leaf, &rest);
		assert_true(verify_digest(X509_get0_pubkey(leaf), dg, sizeof(dg), sig, siglen));
		leaf_keyid(leaf, kid);
	}
	/* Named: the certificate's own key, whatever happens meanwhile. */
	tls_input(tbs, dg);
	assert_int_equal(agc_sign(agc, ID, kid, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs, sizeof(tbs), 0,
	    sig, &siglen), 0);
	assert_true(verify_digest(X509_get0_pubkey(leaf), dg, sizeof(dg), sig, siglen));
	/* The agent hashes with the hash named: SHA-384 of the same input. */
	{
		uint8_t dg384[48];

		SHA384(tbs, sizeof(tbs), dg384);
		assert_int_equal(agc_sign(agc, ID, kid, HSM_SIG_ECDSA, AG_HASH_SHA384, tbs,
		    sizeof(tbs), 0, sig, &siglen), 0);
		assert_true(verify_digest(X509_get0_pubkey(leaf), dg384, sizeof(dg384), sig, siglen));
	}

	/* The non-blocking form signals its eventfd when the reply is in. */
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(efd >= 0);
	tls_input(tbs, dg);
	assert_int_equal(agc_sign_start(agc, ID, kid, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs,
	    sizeof(tbs), 0, efd, &req), 0);
	pfd = (struct pollfd){ .fd = efd, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	assert_int_equal(read(efd, &v, sizeof(v)), sizeof(v));
	assert_true(agc_req_done(req));
	assert_int_equal(agc_req_result(req, sig, &siglen), 0);
	assert_true(verify_digest(X509_get0_pubkey(leaf), dg, sizeof(dg), sig, siglen));
	agc_req_free(req);
	close(efd);

	/* A key that is not the ID's: refused, and the reason says which. */
	kid[0] ^= 0xff;
	st = agc_sign(agc, ID, kid, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs, sizeof(tbs), 0, sig,
	    &siglen);
	assert_int_equal(st, HSM_ENOENT);
	print_message("# unknown key: %s\n", hsm_err_msg(st));
	assert_non_null(strstr(hsm_err_msg(st), "is not a current or retired key of " ID));
	assert_int_equal(siglen, 0);

	/* Refusals come back as the agent's codes; what cannot be encoded is ours. */
	assert_int_equal(agc_sign(agc, "spiffe://example.org/other", NULL, HSM_SIG_ECDSA,
	    AG_HASH_SHA256, tbs, sizeof(tbs), 0, sig, &siglen), HSM_EPERM);
	assert_int_equal(agc_sign(agc, ID, NULL, HSM_SIG_ECDSA, 9, tbs, sizeof(tbs), 0, sig,
	    &siglen), HSM_EINVAL);
	assert_int_equal(agc_sign(agc, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs,
	    AG_MAX_TBS + 1, 0, sig, &siglen), HSM_EINVAL);
	X509_free(leaf);
	sk_X509_pop_free(rest, X509_free);
}

/* Send one frame on a fresh connection and read the agent's reply to it. */
static int
raw_exchange(const uint8_t *frame, size_t len, struct ag_reply *rep, uint8_t *buf, size_t cap)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct ag_frame f;
	size_t have = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), n;

	assert_true(strlen(sock) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, sock, strlen(sock) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(write(fd, frame, len), (ssize_t)len);
	while ((n = ag_frame_parse(buf, have, &f)) == 0) {
		ssize_t got = read(fd, buf + have, cap - have);

		assert_true(got > 0);
		have += (size_t)got;
	}
	close(fd);
	assert_true(n > 0);
	return ag_reply_decode(&f, rep);
}

/*
 * What a process of the workload's uid may not have signed: the old
 * SIGN of a digest, a CMP kur's ProtectedPart (built by OpenSSL's CMP
 * client for a key in a file), its digest as data, a TBSCertificate.
 * Each refused with a reason, none signed; a TLS input still is.
 */
static void
sign_refuses_non_tls(void **state)
{
	X509 *leaf;
	STACK_OF(X509) *rest;
	EVP_PKEY *filekey = EVP_EC_gen("P-256"), *fake;
	uint8_t *der = NULL, *pp = NULL, *tbs = NULL, dg[32], sig[HSM_MAX_SIG], buf[4096], *fr;
	size_t len, pplen = 0, frlen, siglen;
	struct ag_reply rep;
	int n, st;

	assert_non_null(filekey);
	get_chain(agc, &leaf, &rest);
	/* The kur, protected here by a throwaway key: only its bytes matter. */
	fake = EVP_EC_gen("P-256");
	{
		X509 *self = X509_dup(leaf);

		assert_int_equal(X509_set_pubkey(self, fake), 1);
		assert_true(X509_sign(self, fake, EVP_sha256()) > 0);
		assert_true(kur_request(self, fake, filekey, &der, &len));
		X509_free(self);
	}
	assert_true(protected_part(der, len, &pp, &pplen));

	/* The old frame: a digest of it. */
	SHA256(pp, pplen, dg);
	assert_int_equal(ag_encode_sign(77, ID, NULL, HSM_SIG_ECDSA, dg, 32, &fr, &frlen), 0);
	assert_int_equal(raw_exchange(fr, frlen, &rep, buf, sizeof(buf)), 0);
	free(fr);
	assert_int_equal(rep.type, AG_T_SIGN | AG_T_REPLY);
	assert_int_equal(rep.id, 77);
	assert_int_equal(rep.status, HSM_EUNSUPPORTED);
	print_message("# old SIGN: %s\n", rep.errtext);
	assert_non_null(strstr(rep.errtext, "digest signing is no longer offered"));

	/* SIGN_TBS of the ProtectedPart, of its digest, of a TBSCertificate. */
	st = agc_sign(agc, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, pp, pplen, 0, sig, &siglen);
	assert_int_equal(st, HSM_EPOLICY);
	print_message("# ProtectedPart: %s\n", hsm_err_msg(st));
	assert_non_null(strstr(hsm_err_msg(st), "not a TLS handshake signature input"));
	assert_non_null(strstr(hsm_err_msg(st), "refusing to sign"));
	assert_int_equal(siglen, 0);
	assert_int_equal(agc_sign(agc, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, dg, 32, 0, sig,
	    &siglen), HSM_EPOLICY);
	n = i2d_re_X509_tbs(leaf, &tbs);
	assert_true(n > 0);
	assert_int_equal(agc_sign(agc, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs, (size_t)n, 0,
	    sig, &siglen), HSM_EPOLICY);
	assert_int_equal(agc_sign(agc, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, NULL, 0, 0, sig,
	    &siglen), HSM_EPOLICY);
	/* The connection goes on: a TLS input is signed. */
	{
		uint8_t t[TLSSIG_TLS13_LEN(32)];

		tls_input(t, dg);
		assert_int_equal(agc_sign(agc, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, t,
		    sizeof(t), 0, sig, &siglen), 0);
	}
	OPENSSL_free(tbs);
	OPENSSL_free(der);
	free(pp);
	EVP_PKEY_free(filekey);
	EVP_PKEY_free(fake);
	X509_free(leaf);
	sk_X509_pop_free(rest, X509_free);
}

/* The subscription made in setup, before the agent had a certificate. */
static void
subscribe_before_enrollment(void **state)
{
	char *uri = NULL;
	uint8_t *root = NULL;
	size_t rootlen;
	X509 *leaf;

	/* The agent said "not enrolled yet" (not passed on); the SVID came as an UPDATE. */
	assert_true(early_held);
	assert_true(sub_wait(&early_rec, 1, 0, 10000));
	assert_int_equal(hsm_read_file(rootpem, 1 << 20, &root, &rootlen), 0);
	pthread_mutex_lock(&early_rec.mu);
	assert_int_equal(early_rec.nfinal, 0);
	assert_int_equal(early_rec.odd, 0);
	assert_string_equal(early_rec.id, ID);
	assert_true(early_rec.not_after > (uint64_t)time(NULL));
	assert_int_equal(strlen(early_rec.bundle), rootlen);
	assert_memory_equal(early_rec.bundle, root, rootlen);
	leaf = pem_leaf(early_rec.chain);
	pthread_mutex_unlock(&early_rec.mu);
	assert_non_null(leaf);
	assert_int_equal(cert_uri_san(leaf, &uri), 0);
	assert_string_equal(uri, ID);
	free(uri);
	free(root);
	X509_free(leaf);
}

/*
 * A rotation: the subscription delivers the new chain, and the old key
 * still signs when named (the agent keeps it for a 30 s grace period), so
 * a proxy still presenting the old certificate completes its handshakes.
 */
static void
rotation_old_key_signs(void **state)
{
	X509 *old, *cur = NULL;
	STACK_OF(X509) *rest;
	uint8_t tbs[TLSSIG_TLS13_LEN(32)], dg[32], sig[HSM_MAX_SIG], kold[HSM_KEYID_LEN];
	uint8_t knew[HSM_KEYID_LEN];
	uint8_t *spki = NULL;
	size_t siglen;
	EVP_PKEY *key = NULL;
	uint64_t t0 = hsm_now_ms();
	int n0, n;

	pthread_mutex_lock(&early_rec.mu);
	n0 = early_rec.nsvid;
	pthread_mutex_unlock(&early_rec.mu);
	get_chain(agc, &old, &rest);
	leaf_keyid(old, kold);
	/* Wait for an UPDATE carrying another certificate than old (10 s SVIDs). */
	while (cur == NULL && hsm_now_ms() - t0 < 20000) {
		if (!sub_wait(&early_rec, n0 + 1, 0, 20000))
			break;
		pthread_mutex_lock(&early_rec.mu);
		n0 = early_rec.nsvid;
		cur = pem_leaf(early_rec.chain);
		pthread_mutex_unlock(&early_rec.mu);
		assert_non_null(cur);
		if (X509_cmp(cur, old) == 0) {
			X509_free(cur);
			cur = NULL;
		}
	}
	if (cur == NULL)
		fail_msg("no rotation pushed within 20 s");
	print_message("# rotation pushed after %llu ms\n", (unsigned long long)(hsm_now_ms() - t0));
	leaf_keyid(cur, knew);
	assert_memory_not_equal(kold, knew, HSM_KEYID_LEN);

	/* The new key and the old one each sign for their own certificate. */
	tls_input(tbs, dg);
	assert_int_equal(agc_sign(agc, ID, knew, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs, sizeof(tbs), 0,
	    sig, &siglen), 0);
	assert_true(verify_digest(X509_get0_pubkey(cur), dg, sizeof(dg), sig, siglen));
	tls_input(tbs, dg);
	assert_int_equal(agc_sign(agc, ID, kold, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs, sizeof(tbs), 0,
	    sig, &siglen), 0);
	assert_true(verify_digest(X509_get0_pubkey(old), dg, sizeof(dg), sig, siglen));
	assert_false(verify_digest(X509_get0_pubkey(cur), dg, sizeof(dg), sig, siglen));

	/* So does a provider key made from the old certificate. */
	n = i2d_PUBKEY(X509_get0_pubkey(old), &spki);
	assert_true(n > 0);
	assert_int_equal(hsm_pkey_new_agent(agc, ID, spki, (size_t)n, 0, &key), 0);
	assert_int_equal(hsm_pkey_selftest(key), 0);
	EVP_PKEY_free(key);
	OPENSSL_free(spki);
	X509_free(old);
	X509_free(cur);
	sk_X509_pop_free(rest, X509_free);
}

/* Read one request frame from a fake agent's end; returns its id. */
static uint32_t
fake_read(int fd, uint8_t type)
{
	uint8_t buf[8192];
	size_t have = 0;
	struct ag_frame f;
	struct ag_request rq;
	int n;

	while ((n = ag_frame_parse(buf, have, &f)) == 0) {
		ssize_t got = read(fd, buf + have, sizeof(buf) - have);

		assert_true(got > 0);
		have += (size_t)got;
	}
	assert_true(n > 0);
	assert_int_equal(ag_request_decode(&f, &rq), 0);
	assert_int_equal(rq.type, type);
	return rq.id;
}

static void
fake_write(int fd, uint8_t *frame, size_t len)
{
	assert_int_equal(write(fd, frame, len), (ssize_t)len);
	free(frame);
}

/*
 * agclient against a fake agent on a socketpair: an UPDATE nobody asked
 * for is dropped, replies are matched by id, a silent agent ends requests
 * at their deadline, garbage closes the client with HSM_ECLOSED.
 */
static void
fake_agent(void **state)
{
	struct agc_client *c;
	struct agc_req *req;
	struct ag_svid sv;
	uint8_t dg[TLSSIG_TLS13_LEN(32)] = { 3 }, sig[HSM_MAX_SIG], *fr;
	static const uint8_t fake_sig[8] = { 0x30, 6, 2, 1, 1, 2, 1, 1 };
	static const uint8_t junk[12] = { 0, 0, 0, 8, 9, 9, 9, 9 };
	size_t siglen, len;
	uint32_t id;
	uint64_t t0;
	int sv2[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2), 0);
	assert_int_equal(agc_client_new(sv2[0], &c), 0);

	assert_int_equal(agc_sign_start(c, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, dg, sizeof(dg), 0,
	    -1, &req), 0);
	id = fake_read(sv2[1], AG_T_SIGN_TBS);
	memset(&sv, 0, sizeof(sv));
	snprintf(sv.spiffe_id, sizeof(sv.spiffe_id), "%s", ID);
	sv.chain = (const uint8_t *)"x";
	sv.chainlen = 1;
	assert_int_equal(ag_encode_svid(AG_T_UPDATE, id, &sv, &fr, &len), 0);
	fake_write(sv2[1], fr, len);
	assert_int_equal(ag_encode_sig(id + 1, fake_sig, sizeof(fake_sig), &fr, &len), 0);
	fake_write(sv2[1], fr, len);	/* a reply for no request: dropped */
	assert_int_equal(ag_encode_sig(id, fake_sig, sizeof(fake_sig), &fr, &len), 0);
	fake_write(sv2[1], fr, len);
	for (int i = 0; i < 1000 && !agc_req_done(req); i++)
		usleep(1000);
	assert_int_equal(agc_req_result(req, sig, &siglen), 0);
	assert_int_equal(siglen, sizeof(fake_sig));
	assert_memory_equal(sig, fake_sig, siglen);
	agc_req_free(req);

	/* Silence: the deadline ends the request, not the reply. */
	t0 = hsm_now_ms();
	assert_int_equal(agc_sign(c, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, dg, sizeof(dg), 200,
	    sig, &siglen), HSM_ETIMEDOUT);
	assert_true(hsm_now_ms() - t0 < 1500);
	(void)fake_read(sv2[1], AG_T_SIGN_TBS);

	/* Garbage: every pending request ends with HSM_ECLOSED, later ones too. */
	assert_int_equal(agc_sign_start(c, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, dg, sizeof(dg),
	    20000, -1, &req), 0);
	(void)fake_read(sv2[1], AG_T_SIGN_TBS);
	assert_int_equal(write(sv2[1], junk, sizeof(junk)), (ssize_t)sizeof(junk));
	for (int i = 0; i < 5000 && !agc_req_done(req); i++)
		usleep(1000);
	assert_int_equal(agc_req_result(req, sig, &siglen), HSM_ECLOSED);
	assert_int_equal(agc_sign(c, ID, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, dg, sizeof(dg), 0, sig,
	    &siglen), HSM_ECLOSED);
	/* A request may outlive its client. */
	agc_free(c);
	assert_int_equal(agc_req_result(req, sig, &siglen), HSM_ECLOSED);
	agc_req_free(req);
	close(sv2[1]);
}

/* An SVID frame (UPDATE or SUBSCRIBE reply) from a fake agent. */
static void
fake_svid(int fd, uint8_t type, uint32_t id, const char *chain, const char *bundle)
{
	struct ag_svid sv;
	uint8_t *fr;
	size_t len;

	memset(&sv, 0, sizeof(sv));
	snprintf(sv.spiffe_id, sizeof(sv.spiffe_id), "%s", ID);
	sv.not_after = 4102444800ULL;
	sv.chain = (const uint8_t *)chain;
	sv.chainlen = strlen(chain);
	sv.bundle = (const uint8_t *)bundle;
	sv.bundlelen = strlen(bundle);
	assert_int_equal(ag_encode_svid(type, id, &sv, &fr, &len), 0);
	fake_write(fd, fr, len);
}

/*
 * Subscriptions against a fake agent: "not enrolled yet" is not passed on
 * (the agent keeps the subscription), UPDATEs with the SUBSCRIBE's id are,
 * others are dropped; one subscription per client; an error reply is
 * final; agc_free while the callback runs waits for it, then the callback
 * gets HSM_ECLOSED once.
 */
static void
fake_agent_subscription(void **state)
{
	struct subrec rec = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct subrec rec2 = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct agc_client *c;
	uint8_t *fr;
	size_t len;
	uint32_t id;
	uint64_t t0;
	int sv2[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2), 0);
	assert_int_equal(agc_client_new(sv2[0], &c), 0);
	assert_int_equal(agc_subscribe(c, ID, NULL, &rec), HSM_EINVAL);
	assert_int_equal(agc_subscribe(c, "spiffe://Bad/x", on_sub, &rec), HSM_EINVAL);
	assert_int_equal(agc_subscribe(c, ID, on_sub, &rec), 0);
	assert_int_equal(agc_subscribe(c, ID, on_sub, &rec2), HSM_EBUSY);
	id = fake_read(sv2[1], AG_T_SUBSCRIBE);
	assert_int_equal(ag_encode_error(AG_T_SUBSCRIBE | AG_T_REPLY, id, HSM_EAGAIN,
	    "not enrolled yet", &fr, &len), 0);
	fake_write(sv2[1], fr, len);
	fake_svid(sv2[1], AG_T_UPDATE, id + 5, "other", "");	/* not ours: dropped */
	fake_svid(sv2[1], AG_T_UPDATE, id, "first", "");
	assert_true(sub_wait(&rec, 1, 0, 2000));
	fake_svid(sv2[1], AG_T_UPDATE, id, "second", "bundle");
	assert_true(sub_wait(&rec, 2, 0, 2000));
	pthread_mutex_lock(&rec.mu);
	assert_int_equal(rec.nsvid, 2);
	assert_int_equal(rec.nfinal, 0);
	assert_string_equal(rec.chain, "second");
	assert_string_equal(rec.bundle, "bundle");
	assert_string_equal(rec.id, ID);
	assert_true(rec.not_after == 4102444800ULL);
	pthread_mutex_unlock(&rec.mu);

	/* agc_free from another thread while the callback runs: no deadlock. */
	rec.slow_ms = 300;
	fake_svid(sv2[1], AG_T_UPDATE, id, "third", "");
	for (int i = 0; i < 2000 && !atomic_load(&rec.in_cb); i++)
		usleep(1000);
	assert_true(atomic_load(&rec.in_cb));
	t0 = hsm_now_ms();
	agc_free(c);
	assert_true(hsm_now_ms() - t0 >= 100);	/* it waited for the callback */
	pthread_mutex_lock(&rec.mu);
	assert_int_equal(rec.nsvid, 3);
	assert_int_equal(rec.nfinal, 1);
	assert_int_equal(rec.final, HSM_ECLOSED);
	assert_int_equal(rec.odd, 0);
	assert_non_null(strstr(rec.why, "closed"));
	pthread_mutex_unlock(&rec.mu);
	close(sv2[1]);
	subrec_clear(&rec);

	/* An error reply ends it (the agent's text as detail); a new one may follow. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2), 0);
	assert_int_equal(agc_client_new(sv2[0], &c), 0);
	assert_int_equal(agc_subscribe(c, NULL, on_sub, &rec2), 0);
	id = fake_read(sv2[1], AG_T_SUBSCRIBE);
	assert_int_equal(ag_encode_error(AG_T_SUBSCRIBE | AG_T_REPLY, id, HSM_EPERM,
	    "uid 7 has no workload identity", &fr, &len), 0);
	fake_write(sv2[1], fr, len);
	assert_true(sub_wait(&rec2, 0, 1, 2000));
	fake_svid(sv2[1], AG_T_UPDATE, id, "late", "");	/* after the end: dropped */
	memset(&rec, 0, sizeof(rec));
	pthread_mutex_init(&rec.mu, NULL);
	assert_int_equal(agc_subscribe(c, ID, on_sub, &rec), 0);
	id = fake_read(sv2[1], AG_T_SUBSCRIBE);
	fake_svid(sv2[1], AG_T_SUBSCRIBE | AG_T_REPLY, id, "now", "");
	assert_true(sub_wait(&rec, 1, 0, 2000));
	/* The agent goes away: HSM_ECLOSED, once. */
	close(sv2[1]);
	assert_true(sub_wait(&rec, 1, 1, 2000));
	agc_free(c);
	pthread_mutex_lock(&rec2.mu);
	assert_int_equal(rec2.nsvid, 0);
	assert_int_equal(rec2.nfinal, 1);
	assert_int_equal(rec2.final, HSM_EPERM);
	assert_string_equal(rec2.why, "uid 7 has no workload identity");
	assert_int_equal(rec2.odd, 0);
	pthread_mutex_unlock(&rec2.mu);
	pthread_mutex_lock(&rec.mu);
	assert_int_equal(rec.nsvid, 1);
	assert_string_equal(rec.chain, "now");
	assert_int_equal(rec.nfinal, 1);
	assert_int_equal(rec.final, HSM_ECLOSED);
	assert_int_equal(rec.odd, 0);
	pthread_mutex_unlock(&rec.mu);
	subrec_clear(&rec);
	subrec_clear(&rec2);
	pthread_mutex_destroy(&rec.mu);
}

/*
 * An SSL_CTX of protocol version (TLS1_3_VERSION, or TLS1_2_VERSION with
 * ECDHE-ECDSA) whose key signs through the agent; verifies its peer
 * against root.pem.
 */
static SSL_CTX *
make_ctx(int server, unsigned timeout_ms, int version)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	X509 *leaf;
	STACK_OF(X509) *rest;
	EVP_PKEY *key = NULL;
	uint8_t *spki = NULL;
	int n;

	assert_non_null(ctx);
	get_chain(agc, &leaf, &rest);
	n = i2d_PUBKEY(X509_get0_pubkey(leaf), &spki);
	assert_true(n > 0);
	assert_int_equal(hsm_pkey_new_agent(agc, ID, spki, (size_t)n, timeout_ms, &key), 0);
	OPENSSL_free(spki);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, version), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(ctx, version), 1);
	if (version == TLS1_2_VERSION)
		assert_int_equal(SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256"), 1);
	assert_int_equal(SSL_CTX_use_certificate(ctx, leaf), 1);
	while (sk_X509_num(rest) > 0)
		assert_int_equal(SSL_CTX_add_extra_chain_cert(ctx, sk_X509_shift(rest)), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
	assert_int_equal(SSL_CTX_check_private_key(ctx), 1);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, rootpem, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	if (server)
		SSL_CTX_set_mode(ctx, SSL_MODE_ASYNC);
	EVP_PKEY_free(key);
	X509_free(leaf);
	sk_X509_free(rest);
	return ctx;
}

struct hs {
	SSL_CTX *sctx, *cctx;
	SSL *srv, *cli;
	char why[256];			/* the server's error when it failed */
	int asyncs;			/* WANT_ASYNC reports from the server */
	int (*on_async)(int n);		/* called at each WANT_ASYNC, before polling */
};

static void
hs_new_version(struct hs *h, unsigned timeout_ms, int version)
{
	BIO *a, *b;

	memset(h, 0, sizeof(*h));
	h->sctx = make_ctx(1, timeout_ms, version);
	h->cctx = make_ctx(0, timeout_ms, version);
	h->srv = SSL_new(h->sctx);
	h->cli = SSL_new(h->cctx);
	assert_non_null(h->srv);
	assert_non_null(h->cli);
	assert_int_equal(BIO_new_bio_pair(&a, 0, &b, 0), 1);
	SSL_set_bio(h->srv, a, a);
	SSL_set_bio(h->cli, b, b);
	SSL_set_accept_state(h->srv);
	SSL_set_connect_state(h->cli);
}

static void
hs_new(struct hs *h, unsigned timeout_ms)
{
	hs_new_version(h, timeout_ms, TLS1_3_VERSION);
}

static void
hs_free(struct hs *h)
{
	SSL_free(h->srv);
	SSL_free(h->cli);
	SSL_CTX_free(h->sctx);
	SSL_CTX_free(h->cctx);
	ASYNC_cleanup_thread();
}

/*
 * Drive both ends until both finish (1), one fails (0), or limit_ms passes
 * (-1: a hang). While the server reports WANT_ASYNC, poll its async fds
 * instead of stepping it, as an event loop would.
 */
static int
hs_run(struct hs *h, uint64_t limit_ms)
{
	uint64_t end = hsm_now_ms() + limit_ms;
	int cdone = 0, sdone = 0, r, e;

	while (!cdone || !sdone) {
		if (hsm_now_ms() > end)
			return -1;
		if (!cdone) {
			if ((r = SSL_do_handshake(h->cli)) == 1)
				cdone = 1;
			else if ((e = SSL_get_error(h->cli, r)) != SSL_ERROR_WANT_READ &&
			    e != SSL_ERROR_WANT_WRITE)
				return 0;
		}
		if (!sdone) {
			if ((r = SSL_do_handshake(h->srv)) == 1) {
				sdone = 1;
			} else if ((e = SSL_get_error(h->srv, r)) == SSL_ERROR_WANT_ASYNC) {
				OSSL_ASYNC_FD fds[4];
				struct pollfd pfd[4];
				size_t n = 0;

				h->asyncs++;
				if (h->on_async != NULL && h->on_async(h->asyncs) != 0)
					return -1;
				assert_int_equal(SSL_get_all_async_fds(h->srv, NULL, &n), 1);
				assert_true(n >= 1 && n <= 4);
				SSL_get_all_async_fds(h->srv, fds, &n);
				for (size_t i = 0; i < n; i++)
					pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
				r = poll(pfd, n, (int)(end - hsm_now_ms() + 1));
				if (r == 0)
					return -1;
			} else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				unsigned long err;
				const char *data = "", *func = "";
				int flags = 0;

				/* The provider's error carries the backend's reason. */
				while ((err = ERR_get_error_all(NULL, NULL, &func, &data, &flags)) != 0)
					if ((flags & ERR_TXT_STRING) && strstr(data, "agent") != NULL)
						snprintf(h->why, sizeof(h->why), "%s", data);
				return 0;
			}
		}
	}
	return 1;
}

/* Let a stopped agent go on at the first WANT_ASYNC. */
static int
resume_agent(int n)
{
	if (n == 1)
		kill(agent_pid, SIGCONT);
	return 0;
}

/* Both ends finished with version, verified against root.pem, each seeing the other's ID. */
static void
check_done_version(struct hs *h, int version)
{
	X509 *peer;
	char *uri = NULL;

	assert_int_equal(SSL_version(h->srv), version);
	assert_int_equal(SSL_get_verify_result(h->srv), X509_V_OK);
	assert_int_equal(SSL_get_verify_result(h->cli), X509_V_OK);
	assert_non_null(peer = SSL_get0_peer_certificate(h->srv));
	assert_int_equal(cert_uri_san(peer, &uri), 0);
	assert_string_equal(uri, ID);
	free(uri);
	assert_non_null(peer = SSL_get0_peer_certificate(h->cli));
	assert_int_equal(cert_uri_san(peer, &uri), 0);
	assert_string_equal(uri, ID);
	free(uri);
}

static void
check_done(struct hs *h)
{
	check_done_version(h, TLS1_3_VERSION);
}

static void
tls_async_handshake(void **state)
{
	struct hs h;

	/*
	 * A fast agent may answer before the job looks, and then it need not
	 * pause: hold the agent until the server has reported WANT_ASYNC.
	 */
	hs_new(&h, 0);
	kill(agent_pid, SIGSTOP);
	h.on_async = resume_agent;
	assert_int_equal(hs_run(&h, 15000), 1);
	assert_true(h.asyncs >= 1);	/* the server's signature paused its job */
	print_message("# handshake done after %d WANT_ASYNC\n", h.asyncs);
	check_done(&h);
	hs_free(&h);
	/* And unhindered, paused or not, several times. */
	for (int i = 0; i < 5; i++) {
		hs_new(&h, 0);
		assert_int_equal(hs_run(&h, 15000), 1);
		check_done(&h);
		hs_free(&h);
	}
}

/*
 * TLS 1.2 (ECDHE-ECDSA), mutual: the server signs its ServerKeyExchange
 * through the agent inside an async job, the client its CertificateVerify
 * (the handshake messages so far: client_random to ClientKeyExchange).
 */
static void
tls12_async_handshake(void **state)
{
	struct hs h;

	hs_new_version(&h, 0, TLS1_2_VERSION);
	kill(agent_pid, SIGSTOP);
	h.on_async = resume_agent;
	assert_int_equal(hs_run(&h, 15000), 1);
	assert_true(h.asyncs >= 1);	/* the ServerKeyExchange's signature paused the job */
	print_message("# TLS 1.2 handshake done after %d WANT_ASYNC (%s)\n", h.asyncs,
	    SSL_get_cipher_name(h.srv));
	check_done_version(&h, TLS1_2_VERSION);
	hs_free(&h);
	for (int i = 0; i < 3; i++) {
		hs_new_version(&h, 0, TLS1_2_VERSION);
		assert_int_equal(hs_run(&h, 15000), 1);
		check_done_version(&h, TLS1_2_VERSION);
		hs_free(&h);
	}
}

static int
kill_agent(int n)
{
	int status;

	if (n == 1) {
		kill(agent_pid, SIGKILL);
		if (waitpid(agent_pid, &status, 0) == agent_pid)
			agent_pid = -1;
	}
	return 0;
}

/* An agent that stops answering: the handshake fails at the key's deadline. */
static void
tls_agent_stopped_deadline(void **state)
{
	struct hs h;
	uint64_t t0;

	hs_new(&h, 800);
	/* A signature already sent may beat SIGSTOP: stop before the first one. */
	kill(agent_pid, SIGSTOP);
	t0 = hsm_now_ms();
	assert_int_equal(hs_run(&h, 10000), 0);
	assert_true(hsm_now_ms() - t0 < 3000);
	assert_true(h.asyncs >= 1);
	print_message("# server failed: %s\n", h.why);
	assert_non_null(strstr(h.why, "deadline"));
	kill(agent_pid, SIGCONT);
	hs_free(&h);
	/* The late reply is dropped; the client still works. */
	hs_new(&h, 0);
	assert_int_equal(hs_run(&h, 15000), 1);
	hs_free(&h);
}

/* An agent killed mid-handshake: the server's signature ends with HSM_ECLOSED. */
static void
tls_agent_killed(void **state)
{
	struct hs h;
	uint64_t t0;

	pthread_mutex_lock(&early_rec.mu);
	assert_int_equal(early_rec.nfinal, 0);
	pthread_mutex_unlock(&early_rec.mu);
	hs_new(&h, 20000);
	kill(agent_pid, SIGSTOP);	/* so the first signature is still pending when it dies */
	h.on_async = kill_agent;
	t0 = hsm_now_ms();
	assert_int_equal(hs_run(&h, 10000), 0);
	assert_true(hsm_now_ms() - t0 < 3000);	/* not the 20 s deadline */
	assert_true(h.asyncs >= 1);
	assert_int_equal(agent_pid, -1);
	print_message("# server failed: %s\n", h.why);
	assert_non_null(strstr(h.why, "closed the connection"));
	hs_free(&h);

	/* The subscription ends with HSM_ECLOSED, once, and stays ended. */
	assert_true(sub_wait(&early_rec, 0, 1, 5000));
	agc_free(early);
	early = NULL;
	pthread_mutex_lock(&early_rec.mu);
	assert_int_equal(early_rec.nfinal, 1);
	assert_int_equal(early_rec.final, HSM_ECLOSED);
	assert_int_equal(early_rec.odd, 0);
	print_message("# subscription ended after %d SVIDs: %s\n", early_rec.nsvid, early_rec.why);
	pthread_mutex_unlock(&early_rec.mu);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(get_svid_has_id),
		cmocka_unit_test(subscribe_before_enrollment),
		cmocka_unit_test(sign_verifies),
		cmocka_unit_test(sign_refuses_non_tls),
		cmocka_unit_test(rotation_old_key_signs),
		cmocka_unit_test(fake_agent),
		cmocka_unit_test(fake_agent_subscription),
		cmocka_unit_test(tls_async_handshake),
		cmocka_unit_test(tls12_async_handshake),
		cmocka_unit_test(tls_agent_stopped_deadline),
		cmocka_unit_test(tls_agent_killed),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
