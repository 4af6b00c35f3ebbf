/*
 * bench/keypath.c - ECDSA P-256 signatures/s along each step of hsmesh's
 * key path (issue 5, item 5). Built by `make bench` into $(BUILD)/bench/.
 *
 *   keypath memory THREADS SECS
 *       OpenSSL EVP_PKEY_sign over a SHA-256 digest, key in memory.
 *   keypath p11 MODULE TOKEN_URI PIN_FILE THREADS SECS
 *       p11_sign (C_Sign through src/lib/p11.h) in this process, one
 *       session per thread.
 *   keypath keyholder HSMESH MODULE TOKEN_URI PIN_FILE INFLIGHT SECS [DELAY_MS [WORKERS]]
 *       through a keyholder started with kh_spawn (WORKERS fixed; 0 or
 *       none: its sessions sized to the token): kh_sign when INFLIGHT is 1, else INFLIGHT
 *       kh_sign_start requests kept in flight from one thread.
 *   keypath agent SOCKET SPIFFE_ID INFLIGHT SECS
 *       through the node agent, as the proxy signs (a TLS 1.3
 *       CertificateVerify input, hashed by the agent): agc_sign when
 *       INFLIGHT is 1, else INFLIGHT agc_sign_start requests in flight.
 *
 * Each run generates its key (in memory, or in the token, destroyed at the
 * end; the agent uses the workload's current key), checks the first
 * signature against the public key, signs until SECS have passed, and
 * prints one JSON object on stdout:
 *   {"path":..,"threads":..,"inflight":..,"sigs":..,"errors":..,"secs":..,
 *    "sig_per_s":..,"p50_us":..,"p99_us":..}
 * Exit status 1 (and a line on stderr) when the path does not work at all.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "agclient.h"
#include "agentproto.h"
#include "err.h"
#include "keytypes.h"
#include "khclient.h"
#include "p11.h"
#include "tlssig.h"

#define MAX_THREADS 16
#define MAX_INFLIGHT 256
#define MAX_SAMPLES (1u << 20)	/* latencies kept per thread */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what, int st)
{
	fprintf(stderr, "keypath: %s: %s\n", what, st != 0 ? hsm_err_msg(st) : "failed");
	exit(1);
}

/* Latency samples of one thread (or of the pipelined driver). */
struct samples {
	float *us;
	size_t n;
	unsigned long sigs, errors;
};

static void
sample(struct samples *s, double t0, double t1)
{
	if (s->us == NULL && (s->us = malloc(MAX_SAMPLES * sizeof(float))) == NULL)
		die("malloc", HSM_ENOMEM);
	if (s->n < MAX_SAMPLES)
		s->us[s->n++] = (float)((t1 - t0) * 1e6);
}

static int
cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

static void
report(const char *path, int threads, int inflight, struct samples *s, int ns, double secs)
{
	unsigned long sigs = 0, errors = 0;
	size_t n = 0, k = 0;
	float *all;

	for (int i = 0; i < ns; i++) {
		sigs += s[i].sigs;
		errors += s[i].errors;
		n += s[i].n;
	}
	if ((all = malloc((n + 1) * sizeof(float))) == NULL)
		die("malloc", HSM_ENOMEM);
	for (int i = 0; i < ns; i++) {
		if (s[i].n > 0)
			memcpy(all + k, s[i].us, s[i].n * sizeof(float));
		k += s[i].n;
		free(s[i].us);
	}
	qsort(all, n, sizeof(float), cmp_float);
	printf("{\"path\":\"%s\",\"threads\":%d,\"inflight\":%d,\"sigs\":%lu,\"errors\":%lu,"
	    "\"secs\":%.3f,\"sig_per_s\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f}\n",
	    path, threads, inflight, sigs, errors, secs, secs > 0 ? (double)sigs / secs : 0.0,
	    n > 0 ? (double)all[n / 2] : 0.0, n > 0 ? (double)all[n * 99 / 100] : 0.0);
	free(all);
}

static void
digest_of(unsigned long i, uint8_t d[32])
{
	SHA256((const unsigned char *)&i, sizeof(i), d);
}

/* Verify one DER ECDSA signature over d with the public key pk. */
static void
check_sig(EVP_PKEY *pk, const uint8_t d[32], const uint8_t *sig, size_t siglen, const char *path)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);

	if (c == NULL || EVP_PKEY_verify_init(c) != 1 || EVP_PKEY_verify(c, sig, siglen, d, 32) != 1) {
		fprintf(stderr, "keypath: %s: the first signature does not verify\n", path);
		exit(1);
	}
	EVP_PKEY_CTX_free(c);
}

static EVP_PKEY *
spki_key(const uint8_t *spki, size_t len)
{
	const unsigned char *p = spki;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);

	if (k == NULL)
		die("public key does not parse", HSM_ECRYPTO);
	return k;
}

/* ---- threads signing until a deadline: memory and p11 ---- */

struct worker {
	pthread_t th;
	double end;
	struct samples s;
	EVP_PKEY *key;			/* memory */
	struct p11_token *tok;		/* p11 */
	const uint8_t *keyid;
};

static void *
mem_worker(void *arg)
{
	struct worker *w = arg;
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(w->key, NULL);
	uint8_t d[32], sig[HSM_MAX_SIG];
	unsigned long i = 0;
	double t0, t1;

	if (c == NULL || EVP_PKEY_sign_init(c) != 1)
		die("EVP_PKEY_sign_init", HSM_ECRYPTO);
	for (t0 = now_s(); t0 < w->end; t0 = t1) {
		size_t siglen = sizeof(sig);

		digest_of(i++, d);
		if (EVP_PKEY_sign(c, sig, &siglen, d, sizeof(d)) == 1)
			w->s.sigs++;
		else
			w->s.errors++;
		t1 = now_s();
		sample(&w->s, t0, t1);
	}
	EVP_PKEY_CTX_free(c);
	return NULL;
}

static void *
p11_worker(void *arg)
{
	struct worker *w = arg;
	uint8_t d[32], sig[HSM_MAX_SIG];
	unsigned long i = 0;
	double t0, t1;

	for (t0 = now_s(); t0 < w->end; t0 = t1) {
		size_t siglen;

		digest_of(i++, d);
		if (p11_sign(w->tok, w->keyid, HSM_SIG_ECDSA, d, sizeof(d), sig, &siglen) == 0)
			w->s.sigs++;
		else
			w->s.errors++;
		t1 = now_s();
		sample(&w->s, t0, t1);
	}
	return NULL;
}

static void
run_threads(const char *path, struct worker *w, int n, double secs, void *(*fn)(void *))
{
	struct samples s[MAX_THREADS];
	double t0 = now_s();

	for (int i = 0; i < n; i++) {
		w[i].end = t0 + secs;
		if (pthread_create(&w[i].th, NULL, fn, &w[i]) != 0)
			die("pthread_create", HSM_EIO);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(w[i].th, NULL);
		s[i] = w[i].s;
	}
	report(path, n, 1, s, n, now_s() - t0);
}

static int
bench_memory(int threads, double secs)
{
	struct worker w[MAX_THREADS] = { 0 };
	EVP_PKEY *k = EVP_EC_gen("P-256");
	uint8_t d[32], sig[HSM_MAX_SIG];
	size_t siglen = sizeof(sig);
	EVP_PKEY_CTX *c;

	if (k == NULL)
		die("EVP_EC_gen", HSM_ECRYPTO);
	digest_of(12345, d);
	if ((c = EVP_PKEY_CTX_new(k, NULL)) == NULL || EVP_PKEY_sign_init(c) != 1 ||
	    EVP_PKEY_sign(c, sig, &siglen, d, sizeof(d)) != 1)
		die("EVP_PKEY_sign", HSM_ECRYPTO);
	EVP_PKEY_CTX_free(c);
	check_sig(k, d, sig, siglen, "memory");
	for (int i = 0; i < threads; i++)
		w[i].key = k;
	run_threads("memory", w, threads, secs, mem_worker);
	EVP_PKEY_free(k);
	return 0;
}

static int
bench_p11(const char *module, const char *uri, const char *pinfile, int threads, double secs)
{
	struct worker w[MAX_THREADS] = { 0 };
	struct p11_pin_source pin = { .file = pinfile };
	struct p11_token *tok;
	uint8_t keyid[HSM_KEYID_LEN], d[32], sig[HSM_MAX_SIG], *spki;
	size_t spkilen, siglen;
	EVP_PKEY *pk;
	int st;

	if ((st = p11_token_open(module, uri, &pin, threads, &tok)) != 0)
		die("p11_token_open", st);
	if ((st = p11_generate(tok, HSM_KEY_EC_P256, "bench-keypath", keyid, &spki, &spkilen)) != 0)
		die("p11_generate", st);
	pk = spki_key(spki, spkilen);
	digest_of(12345, d);
	if ((st = p11_sign(tok, keyid, HSM_SIG_ECDSA, d, sizeof(d), sig, &siglen)) != 0)
		die("p11_sign", st);
	check_sig(pk, d, sig, siglen, "p11");
	for (int i = 0; i < threads; i++) {
		w[i].tok = tok;
		w[i].keyid = keyid;
	}
	run_threads("p11", w, threads, secs, p11_worker);
	p11_destroy(tok, keyid);
	p11_token_close(tok);
	EVP_PKEY_free(pk);
	free(spki);
	return 0;
}

/* ---- one thread keeping INFLIGHT requests in flight: keyholder, agent ---- */

struct slot {
	struct kh_req *kr;
	struct agc_req *ar;
	double t0;
};

struct client {
	struct kh_client *kh;
	struct agc_client *ag;
	const char *id;			/* agent: SPIFFE ID */
	uint8_t keyid[HSM_KEYID_LEN];	/* keyholder */
};

/* What the agent is given to sign for request i: a TLS 1.3 CertificateVerify input. */
static void
agent_input(unsigned long i, uint8_t tbs[TLSSIG_TLS13_LEN(32)])
{
	uint8_t th[32];

	digest_of(i, th);
	(void)tlssig_tls13_input(1, th, sizeof(th), tbs);
}

static int
start_one(struct client *c, struct slot *s, unsigned long i, int efd)
{
	uint8_t d[32], tbs[TLSSIG_TLS13_LEN(32)];

	s->t0 = now_s();
	if (c->kh != NULL) {
		digest_of(i, d);
		return kh_sign_start(c->kh, c->keyid, HSM_SIG_ECDSA, d, sizeof(d), 5000, efd, &s->kr);
	}
	agent_input(i, tbs);
	return agc_sign_start(c->ag, c->id, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs, sizeof(tbs),
	    10000, efd, &s->ar);
}

/* Non-zero when the slot's request has ended; then *st is its status. */
static int
slot_done(struct slot *s, int *st)
{
	uint8_t sig[HSM_MAX_SIG];
	size_t siglen;

	if (s->kr != NULL) {
		if (!kh_req_done(s->kr))
			return 0;
		*st = kh_req_result(s->kr, sig, &siglen);
		kh_req_free(s->kr);
		s->kr = NULL;
		return 1;
	}
	if (s->ar != NULL) {
		if (!agc_req_done(s->ar))
			return 0;
		*st = agc_req_result(s->ar, sig, &siglen);
		agc_req_free(s->ar);
		s->ar = NULL;
		return 1;
	}
	return 0;
}

static int
blocking_sign(struct client *c, unsigned long i, uint8_t *sig, size_t *siglen)
{
	uint8_t d[32], tbs[TLSSIG_TLS13_LEN(32)];

	if (c->kh != NULL) {
		digest_of(i, d);
		return kh_sign(c->kh, c->keyid, HSM_SIG_ECDSA, d, sizeof(d), 5000, sig, siglen);
	}
	agent_input(i, tbs);
	return agc_sign(c->ag, c->id, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs, sizeof(tbs), 10000,
	    sig, siglen);
}

static void
run_pipelined(const char *path, struct client *c, int inflight, double secs)
{
	static struct slot slots[MAX_INFLIGHT];
	struct samples s = { 0 };
	unsigned long i = 0;
	int efd, active = 0, st;
	double t0 = now_s(), end = t0 + secs, t1 = t0;

	if (inflight == 1) {
		uint8_t sig[HSM_MAX_SIG];
		size_t siglen;

		for (double a = t0; a < end; a = t1) {
			if (blocking_sign(c, i++, sig, &siglen) == 0)
				s.sigs++;
			else
				s.errors++;
			t1 = now_s();
			sample(&s, a, t1);
		}
		report(path, 1, 1, &s, 1, t1 - t0);
		return;
	}
	if ((efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		die("eventfd", HSM_EIO);
	for (int k = 0; k < inflight; k++) {
		if ((st = start_one(c, &slots[k], i++, efd)) != 0)
			die("sign_start", st);
		active++;
	}
	while (active > 0) {
		struct pollfd p = { .fd = efd, .events = POLLIN };
		uint64_t v;
		double now;

		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			die("poll", HSM_EIO);
		if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
			/* nothing to read: the poll timed out; scan anyway */
		}
		now = now_s();
		for (int k = 0; k < inflight; k++) {
			if (!slot_done(&slots[k], &st))
				continue;
			active--;
			if (st == 0)
				s.sigs++;
			else
				s.errors++;
			sample(&s, slots[k].t0, now);
			t1 = now;
			if (now < end) {
				if ((st = start_one(c, &slots[k], i++, efd)) != 0)
					die("sign_start", st);
				active++;
			}
		}
	}
	close(efd);
	report(path, 1, inflight, &s, 1, t1 - t0);
}

static int
bench_keyholder(char **a, int inflight, double secs, unsigned delay, int workers)
{
	struct kh_spawn_opts o = {
		.exe = a[0], .module = a[1], .token_uri = a[2], .pin_file = a[3],
		.sign_delay_ms = delay, .workers = workers,
	};
	struct client c = { 0 };
	uint8_t d[32], sig[HSM_MAX_SIG], *spki;
	size_t spkilen, siglen;
	EVP_PKEY *pk;
	pid_t pid;
	int st;

	if ((st = kh_spawn(&o, &c.kh, &pid)) != 0)
		die("kh_spawn", st);
	if ((st = kh_generate(c.kh, HSM_KEY_EC_P256, "bench-keypath", 0, c.keyid, &spki, &spkilen)) != 0)
		die("kh_generate", st);
	pk = spki_key(spki, spkilen);
	digest_of(12345, d);
	if ((st = kh_sign(c.kh, c.keyid, HSM_SIG_ECDSA, d, sizeof(d), 0, sig, &siglen)) != 0)
		die("kh_sign", st);
	check_sig(pk, d, sig, siglen, "keyholder");
	run_pipelined("keyholder", &c, inflight, secs);
	kh_destroy(c.kh, c.keyid, 0);
	kh_client_free(c.kh);	/* the keyholder exits when its socket closes */
	EVP_PKEY_free(pk);
	free(spki);
	return 0;
}

static int
bench_agent(const char *sock, const char *id, int inflight, double secs)
{
	struct client c = { .id = id };
	char *chain = NULL, *bundle = NULL;
	uint64_t na;
	uint8_t d[32], tbs[TLSSIG_TLS13_LEN(32)], sig[HSM_MAX_SIG];
	size_t siglen;
	X509 *leaf;
	BIO *b;
	int st;

	if ((st = agc_connect(sock, &c.ag)) != 0)
		die("agc_connect", st);
	if ((st = agc_get_svid(c.ag, id, 0, &chain, &bundle, &na)) != 0)
		die("agc_get_svid", st);
	if ((b = BIO_new_mem_buf(chain, -1)) == NULL || (leaf = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL)
		die("the agent's certificate does not parse", HSM_ECRYPTO);
	BIO_free(b);
	agent_input(12345, tbs);
	SHA256(tbs, sizeof(tbs), d);
	if ((st = agc_sign(c.ag, id, NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs, sizeof(tbs), 0, sig,
	    &siglen)) != 0)
		die("agc_sign", st);
	check_sig(X509_get0_pubkey(leaf), d, sig, siglen, "agent");
	run_pipelined("agent", &c, inflight, secs);
	agc_free(c.ag);
	X509_free(leaf);
	free(chain);
	free(bundle);
	return 0;
}

static int
num(const char *s, int lo, int hi)
{
	char *e;
	long v = strtol(s, &e, 10);

	if (*s == '\0' || *e != '\0' || v < lo || v > hi) {
		fprintf(stderr, "keypath: '%s' is not a number from %d to %d\n", s, lo, hi);
		exit(2);
	}
	return (int)v;
}

int
main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";

	if (strcmp(m, "memory") == 0 && argc == 4)
		return bench_memory(num(argv[2], 1, MAX_THREADS), num(argv[3], 1, 600));
	if (strcmp(m, "p11") == 0 && argc == 7)
		return bench_p11(argv[2], argv[3], argv[4], num(argv[5], 1, MAX_THREADS), num(argv[6], 1, 600));
	if (strcmp(m, "keyholder") == 0 && argc >= 8 && argc <= 10)
		return bench_keyholder(argv + 2, num(argv[6], 1, MAX_INFLIGHT), num(argv[7], 1, 600),
		    argc > 8 ? (unsigned)num(argv[8], 0, 10000) : 0, argc > 9 ? num(argv[9], 0, 64) : 0);
	if (strcmp(m, "agent") == 0 && argc == 6)
		return bench_agent(argv[2], argv[3], num(argv[4], 1, MAX_INFLIGHT), num(argv[5], 1, 600));
	fprintf(stderr,
	    "usage: keypath memory THREADS SECS\n"
	    "       keypath p11 MODULE TOKEN_URI PIN_FILE THREADS SECS\n"
	    "       keypath keyholder HSMESH MODULE TOKEN_URI PIN_FILE INFLIGHT SECS [DELAY_MS [WORKERS]]\n"
	    "       keypath agent SOCKET SPIFFE_ID INFLIGHT SECS\n");
	return 2;
}
