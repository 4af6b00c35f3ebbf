/*
 * bench/cmpload.c - enrollment load on `hsmesh ca serve` (issue 17, item
 * 4): one process, many client threads, each enrolling with join tokens
 * (ir, password-based MAC, implicit confirmation) through the agent's own
 * CMP client (src/lib/cmpclient.h, on OpenSSL's CMP client API), so that
 * the CA, not a process start per enrollment, is what is measured. Built
 * by `make bench` (and `make check-build`: the failure drills use it).
 *
 *   cmpload tokens DATABASE TOKEN_KEY ID_PREFIX COUNT > TOKENS
 *       COUNT join tokens straight into the CA's ledger (ledger.h): REF
 *       random, SECRET derived from TOKEN_KEY (the CA's token.key) as the
 *       CA derives it (docs/PROTOCOL.md, "Join tokens"), for ID_PREFIX/i;
 *       "REF:SECRET ID" lines on stdout.
 *   cmpload run ROOT TOKENS CLIENTS SECS URL [URL...]
 *       CLIENTS threads take the tokens in turn and enroll until SECS have
 *       passed or the tokens run out. Each thread tries the URLs from its
 *       own starting point (thread i from URL i mod n), failing over as
 *       an agent does. With CMPLOAD_RETRY_S=S an enrollment that fails is
 *       tried again (a fresh transaction, backing off 50..800 ms) until it
 *       succeeds or S seconds have passed since it began: every client
 *       completes, or says why not (the failure drills). With
 *       CMPLOAD_SERIALS=FILE the serial of every certificate received is
 *       appended there (lower-case hex), one a line.
 *
 * Keys: 64 EC P-256 keys made before the clock starts, reused in turn (the
 * CA certifies any key; a client's key generation is not the CA's cost).
 * run prints one JSON object:
 *   {"clients":..,"servers":..,"enrolled":..,"failed":..,"retried":..,
 *    "secs":..,"per_s":..,"p50_ms":..,"p99_ms":..,"client_cpu_ms":..}
 * client_cpu_ms: this process's CPU (user + system) per enrollment.
 * Exit status: 0 when every enrollment attempted succeeded (in the end),
 * 1 otherwise (the first failure on stderr), 2 bad use.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "cert.h"
#include "cmpclient.h"
#include "err.h"
#include "ledger.h"
#include "util.h"

#define MAX_CLIENTS 64
#define MAX_SERVERS 8
#define NKEYS 64
#define MAX_TOKENS 200000
#define SECRET_LEN 32

struct key {
	EVP_PKEY *pk;
	uint8_t *spki;
	size_t spkilen;
};

static struct {
	X509 *root;
	char (*tok)[160];		/* REF:SECRET ID */
	size_t ntok;
	atomic_size_t next;		/* next token to take */
	struct key keys[NKEYS];
	struct cmpc_server srv[MAX_SERVERS];
	size_t nsrv;
	double end;			/* stop starting enrollments then */
	double retry_s;			/* CMPLOAD_RETRY_S */
	FILE *serials;			/* CMPLOAD_SERIALS */
	pthread_mutex_t mu;		/* serials, first_error */
	char first_error[512];
	atomic_uint enrolled, failed, retried;
} g;

struct client {
	int idx;
	double *lat;			/* ms, one per enrollment */
	size_t nlat, cap;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- tokens ---- */

static int
cmd_tokens(const char *db, const char *keyfile, const char *prefix, long count)
{
	struct ledger *lg = NULL;
	uint8_t *key = NULL, rnd[8], mac[32], h[32];
	unsigned int ml = sizeof(mac);
	size_t klen = 0;
	char ref[17], hex[65], id[512];
	int r;

	if ((r = hsm_read_file(keyfile, 64, &key, &klen)) != 0 || klen != 32) {
		fprintf(stderr, "cmpload: %s: %s\n", keyfile, r != 0 ? hsm_err_msg(r) : "not 32 bytes");
		return 1;
	}
	if ((r = ledger_open(db, &lg)) != 0) {
		fprintf(stderr, "cmpload: %s\n", hsm_err_msg(r));
		return 1;
	}
	for (long i = 0; i < count; i++) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return 1;
		hsm_hex(rnd, sizeof(rnd), ref);
		/* SECRET = hex(HMAC-SHA256(token.key, REF))[:32]; the ledger keeps SHA-256(SECRET) */
		HMAC(EVP_sha256(), key, 32, (const unsigned char *)ref, strlen(ref), mac, &ml);
		hsm_hex(mac, SECRET_LEN / 2, hex);
		SHA256((const unsigned char *)hex, SECRET_LEN, h);
		snprintf(id, sizeof(id), "%s/%ld", prefix, i);
		if ((r = ledger_token_add(lg, ref, h, id, (int64_t)time(NULL) + 3600)) != 0) {
			fprintf(stderr, "cmpload: %s\n", hsm_err_msg(r));
			return 1;
		}
		printf("%s:%s %s\n", ref, hex, id);
	}
	OPENSSL_cleanse(key, klen);
	free(key);
	ledger_close(lg);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- run ---- */

static void
note_error(const char *what)
{
	pthread_mutex_lock(&g.mu);
	if (g.first_error[0] == '\0')
		snprintf(g.first_error, sizeof(g.first_error), "%s", what);
	pthread_mutex_unlock(&g.mu);
}

/* One enrollment of token t, retried as CMPLOAD_RETRY_S says. 0 or the last failure. */
static int
enroll(struct client *c, const char *t, size_t n)
{
	const struct key *k = &g.keys[n % NKEYS];
	struct cmpc_server order[MAX_SERVERS];
	struct cmpc_ca ca;
	struct cmpc_certreq rq;
	enum cmpc_outcome how;
	X509 *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	const char *colon = strchr(t, ':'), *space = strchr(t, ' ');
	double began = now_s(), pause = 0.05;
	char serial[80];
	int r;

	if (colon == NULL || space == NULL || space < colon)
		return hsm_err(HSM_EINVAL, "token line is not 'REF:SECRET ID'");
	/* This client's own order of the replicas. */
	for (size_t i = 0; i < g.nsrv; i++)
		order[i] = g.srv[(i + (size_t)c->idx) % g.nsrv];
	memset(&ca, 0, sizeof(ca));
	ca.servers = order;
	ca.nservers = g.nsrv;
	ca.root = g.root;
	ca.msg_timeout = 10;
	ca.total_timeout = 20;
	for (;;) {
		memset(&rq, 0, sizeof(rq));
		rq.type = CMPC_IR;
		rq.spiffe_id = space + 1;	/* the token's ID: the certificate must name it */
		rq.key = k->pk;
		rq.spki = k->spki;
		rq.spkilen = k->spkilen;
		rq.prot.kind = CMPC_MAC;
		rq.prot.ref = (const uint8_t *)t;
		rq.prot.reflen = (size_t)(colon - t);
		rq.prot.secret = (const uint8_t *)colon + 1;
		rq.prot.secretlen = (size_t)(space - colon - 1);
		r = cmpc_certreq(&ca, &rq, &how, &cert, &chain);
		if (r == 0 || g.retry_s <= 0 || now_s() - began + pause > g.retry_s)
			break;
		atomic_fetch_add(&g.retried, 1);
		usleep((useconds_t)(pause * 1e6));
		if (pause < 0.8)
			pause *= 2;
	}
	if (r == 0 && g.serials != NULL &&
	    cert_serial_hex(X509_get0_serialNumber(cert), serial, sizeof(serial)) == 0) {
		pthread_mutex_lock(&g.mu);
		fprintf(g.serials, "%s\n", serial);
		pthread_mutex_unlock(&g.mu);
	}
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	return r;
}

static void *
client_main(void *arg)
{
	struct client *c = arg;
	size_t n;
	double t0;
	int r;

	while (now_s() < g.end && (n = atomic_fetch_add(&g.next, 1)) < g.ntok) {
		t0 = now_s();
		if ((r = enroll(c, g.tok[n], n)) == 0) {
			atomic_fetch_add(&g.enrolled, 1);
			if (c->nlat < c->cap)
				c->lat[c->nlat++] = (now_s() - t0) * 1e3;
		} else {
			char why[512];

			atomic_fetch_add(&g.failed, 1);
			snprintf(why, sizeof(why), "token %zu: %s", n, hsm_err_msg(r));
			note_error(why);
		}
	}
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* http://HOST:PORT/PATH into s. */
static int
parse_url(const char *u, struct cmpc_server *s)
{
	const char *h = u + 7, *colon, *slash;
	char *end;
	long port;

	if (strncmp(u, "http://", 7) != 0 || (colon = strchr(h, ':')) == NULL)
		return -1;
	port = strtol(colon + 1, &end, 10);
	slash = end;
	if (port <= 0 || port > 65535 || (*slash != '/' && *slash != '\0'))
		return -1;
	s->host = strndup(h, (size_t)(colon - h));
	s->port = (int)port;
	s->path = strdup(*slash == '/' ? slash : "/");
	return s->host != NULL && s->path != NULL ? 0 : -1;
}

static int
cmd_run(int argc, char **argv)
{
	pthread_t th[MAX_CLIENTS];
	struct client cl[MAX_CLIENTS];
	struct rusage ru0, ru1;
	FILE *f;
	char line[128], *env;
	double t0, t1, *all = NULL, cpu;
	size_t nall = 0;
	long clients, secs;
	int rc;

	if (argc < 6)
		return 2;
	clients = strtol(argv[3], NULL, 10);
	secs = strtol(argv[4], NULL, 10);
	if (clients < 1 || clients > MAX_CLIENTS || secs < 1 || argc - 5 > MAX_SERVERS)
		return 2;
	for (int i = 5; i < argc; i++)
		if (parse_url(argv[i], &g.srv[g.nsrv++]) != 0) {
			fprintf(stderr, "cmpload: bad URL %s (http://HOST:PORT/PATH)\n", argv[i]);
			return 2;
		}
	if ((f = fopen(argv[1], "r")) == NULL || (g.root = PEM_read_X509(f, NULL, NULL, NULL)) == NULL) {
		fprintf(stderr, "cmpload: cannot read the root %s\n", argv[1]);
		return 1;
	}
	fclose(f);
	if ((f = fopen(argv[2], "r")) == NULL || (g.tok = calloc(MAX_TOKENS, sizeof(*g.tok))) == NULL) {
		fprintf(stderr, "cmpload: cannot read the tokens %s\n", argv[2]);
		return 1;
	}
	while (g.ntok < MAX_TOKENS && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] != '\0')
			snprintf(g.tok[g.ntok++], sizeof(g.tok[0]), "%s", line);
	}
	fclose(f);
	/* A replica that dies mid-request must not take the client with it (as the agent). */
	signal(SIGPIPE, SIG_IGN);
	if ((env = getenv("CMPLOAD_RETRY_S")) != NULL)
		g.retry_s = strtod(env, NULL);
	if ((env = getenv("CMPLOAD_SERIALS")) != NULL && (g.serials = fopen(env, "a")) == NULL) {
		fprintf(stderr, "cmpload: cannot open %s\n", env);
		return 1;
	}
	pthread_mutex_init(&g.mu, NULL);
	for (int i = 0; i < NKEYS; i++) {
		unsigned char *der = NULL;
		int n;

		if ((g.keys[i].pk = EVP_EC_gen("P-256")) == NULL ||
		    (n = i2d_PUBKEY(g.keys[i].pk, &der)) <= 0)
			return 1;
		g.keys[i].spki = der;
		g.keys[i].spkilen = (size_t)n;
	}
	memset(cl, 0, sizeof(cl));
	getrusage(RUSAGE_SELF, &ru0);
	t0 = now_s();
	g.end = t0 + (double)secs;
	for (long i = 0; i < clients; i++) {
		cl[i].idx = (int)i;
		cl[i].cap = g.ntok + 1;
		if ((cl[i].lat = calloc(cl[i].cap, sizeof(double))) == NULL ||
		    pthread_create(&th[i], NULL, client_main, &cl[i]) != 0)
			return 1;
	}
	for (long i = 0; i < clients; i++)
		pthread_join(th[i], NULL);
	t1 = now_s();
	getrusage(RUSAGE_SELF, &ru1);
	cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
	    ru0.ru_stime.tv_sec) * 1e3 + (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
	    ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e3;
	if ((all = calloc(g.ntok + 1, sizeof(double))) == NULL)
		return 1;
	for (long i = 0; i < clients; i++) {
		memcpy(all + nall, cl[i].lat, cl[i].nlat * sizeof(double));
		nall += cl[i].nlat;
		free(cl[i].lat);
	}
	qsort(all, nall, sizeof(double), cmp_double);
	printf("{\"clients\":%ld,\"servers\":%zu,\"enrolled\":%u,\"failed\":%u,\"retried\":%u,"
	    "\"secs\":%.3f,\"per_s\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"client_cpu_ms\":%.3f}\n",
	    clients, g.nsrv, atomic_load(&g.enrolled), atomic_load(&g.failed),
	    atomic_load(&g.retried), t1 - t0, (double)atomic_load(&g.enrolled) / (t1 - t0),
	    nall > 0 ? all[nall / 2] : 0.0, nall > 0 ? all[(nall * 99) / 100] : 0.0,
	    atomic_load(&g.enrolled) > 0 ? cpu / atomic_load(&g.enrolled) : 0.0);
	rc = atomic_load(&g.failed) == 0 && atomic_load(&g.enrolled) > 0 ? 0 : 1;
	if (g.first_error[0] != '\0')
		fprintf(stderr, "cmpload: %u failed; the first: %s\n", atomic_load(&g.failed),
		    g.first_error);
	if (g.serials != NULL)
		fclose(g.serials);
	free(all);
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "tokens") == 0)
		return cmd_tokens(argv[2], argv[3], argv[4], strtol(argv[5], NULL, 10));
	if (argc >= 7 && strcmp(argv[1], "run") == 0) {
		int r = cmd_run(argc - 1, argv + 1);

		if (r != 2)
			return r;
	}
	fprintf(stderr, "usage: cmpload tokens DATABASE TOKEN_KEY ID_PREFIX COUNT > TOKENS\n"
	    "       cmpload run ROOT TOKENS CLIENTS SECS URL [URL...]\n");
	return 2;
}
