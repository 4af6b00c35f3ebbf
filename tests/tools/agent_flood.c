/*
 * agent_flood.c - a TEST client of the agent's local API that sends many
 * SIGN requests at once on one connection, to reach the agent's limit of
 * signatures in flight per client (tests/integration/t_agent.sh). Never
 * part of the hsmesh binary.
 *
 *   agent_flood SOCKET SPIFFE_ID N PUBKEY.pem
 *
 * Sends N SIGN_TBS requests for SPIFFE_ID (each a TLS 1.3 CertificateVerify
 * input over its own transcript hash) without waiting, waits until every one has ended, checks each signature with
 * the public key in PUBKEY.pem and prints one line:
 *
 *   ok=K busy=B other=O
 *
 * ok: signed and verified; busy: refused with HSM_EBUSY "too many
 * signatures in flight"; other: anything else (the first is described on
 * stderr). Exit status 0 when every request ended, 1 otherwise.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "agclient.h"
#include "agentproto.h"
#include "err.h"
#include "tlssig.h"

#define MAX_N 100000
#define TIMEOUT_MS 20000u
#define BUSY_TEXT "too many signatures in flight"

static int
usage(void)
{
	fprintf(stderr, "usage: agent_flood SOCKET SPIFFE_ID N PUBKEY.pem\n");
	return 1;
}

/* Request i's data (a TLS 1.3 CertificateVerify input) and the digest the agent signs. */
static void
input_of(unsigned long i, uint8_t tbs[TLSSIG_TLS13_LEN(32)], uint8_t d[32])
{
	uint8_t th[32];

	SHA256((const unsigned char *)&i, sizeof(i), th);
	(void)tlssig_tls13_input(1, th, sizeof(th), tbs);
	SHA256(tbs, TLSSIG_TLS13_LEN(32), d);
}

static int
verifies(EVP_PKEY *pk, const uint8_t d[32], const uint8_t *sig, size_t siglen)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
	int ok = c != NULL && EVP_PKEY_verify_init(c) == 1 && EVP_PKEY_verify(c, sig, siglen, d, 32) == 1;

	EVP_PKEY_CTX_free(c);
	return ok;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	struct agc_client *ag;
	struct agc_req **rq;
	EVP_PKEY *pk;
	FILE *f;
	char *end;
	unsigned long n, left, ok = 0, busy = 0, other = 0;
	double deadline;
	int efd, st;

	if (argc != 5)
		return usage();
	n = strtoul(argv[3], &end, 10);
	if (*end != '\0' || n == 0 || n > MAX_N)
		return usage();
	if ((f = fopen(argv[4], "r")) == NULL || (pk = PEM_read_PUBKEY(f, NULL, NULL, NULL)) == NULL) {
		fprintf(stderr, "agent_flood: %s: not a PEM public key\n", argv[4]);
		return 1;
	}
	fclose(f);
	if ((rq = calloc(n, sizeof(*rq))) == NULL ||
	    (efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		fprintf(stderr, "agent_flood: out of memory or eventfds\n");
		return 1;
	}
	if ((st = agc_connect(argv[1], &ag)) != 0) {
		fprintf(stderr, "agent_flood: %s: %s\n", argv[1], hsm_err_msg(st));
		return 1;
	}
	for (unsigned long i = 0; i < n; i++) {
		uint8_t tbs[TLSSIG_TLS13_LEN(32)], d[32];

		input_of(i, tbs, d);
		if ((st = agc_sign_start(ag, argv[2], NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, tbs,
		    sizeof(tbs), TIMEOUT_MS, efd, &rq[i])) != 0) {
			fprintf(stderr, "agent_flood: request %lu not sent: %s\n", i, hsm_err_msg(st));
			return 1;
		}
	}
	/* Every request ends by reply, deadline or close: wait for them all. */
	deadline = now_s() + TIMEOUT_MS / 1000.0 + 5;
	for (left = n; left > 0 && now_s() < deadline;) {
		struct pollfd p = { .fd = efd, .events = POLLIN };
		uint64_t v;

		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			break;
		if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			break;
		left = 0;
		for (unsigned long i = 0; i < n; i++)
			left += !agc_req_done(rq[i]);
	}
	if (left > 0) {
		fprintf(stderr, "agent_flood: %lu of %lu requests did not end\n", left, n);
		return 1;
	}
	for (unsigned long i = 0; i < n; i++) {
		uint8_t tbs[TLSSIG_TLS13_LEN(32)], d[32], sig[HSM_MAX_SIG];
		size_t siglen = 0;

		input_of(i, tbs, d);
		st = agc_req_result(rq[i], sig, &siglen);
		if (st == 0 && verifies(pk, d, sig, siglen)) {
			ok++;
		} else if (st == HSM_EBUSY && strstr(hsm_err_msg(st), BUSY_TEXT) != NULL) {
			busy++;
		} else {
			if (other++ == 0)
				fprintf(stderr, "agent_flood: request %lu: %s\n", i,
				    st == 0 ? "the signature does not verify" : hsm_err_msg(st));
		}
		agc_req_free(rq[i]);
	}
	printf("ok=%lu busy=%lu other=%lu\n", ok, busy, other);
	agc_free(ag);
	EVP_PKEY_free(pk);
	free(rq);
	close(efd);
	return 0;
}
