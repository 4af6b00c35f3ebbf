/*
 * sign_attack.c - a TEST program that plays a compromised workload
 * (issue 14): running as the workload's uid, with no token and no key,
 * it tries to turn the agent's signing into an identity whose key is in
 * a file. Never part of the hsmesh binary.
 *
 *   sign_attack SOCKET SPIFFE_ID
 *
 * It fetches the workload's certificate from the agent, generates a P-256
 * key in memory (the "file key") and then asks the agent to sign, each
 * time in another way:
 *
 *   kur      OpenSSL's CMP client builds a kur for the file key, protected
 *            by the workload's certificate, its signature made through the
 *            agent (hsm_pkey_new_agent: the data goes to the agent whole)
 *   digest   the old SIGN frame carrying SHA-256 of that kur's ProtectedPart
 *   der      SIGN_TBS of the ProtectedPart itself
 *   hash     SIGN_TBS of the 32-byte digest
 *   tls      a TLS 1.3 CertificateVerify input, which the agent signs (the
 *            control: the workload keeps its own identity for TLS)
 *
 * One line per attempt on stdout: "NAME refused: REASON" or "NAME signed".
 * Exit status 0 when every attack was refused and the control signed,
 * 1 otherwise (2: usage or set-up).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "agclient.h"
#include "agentproto.h"
#include "err.h"
#include "provider_agent.h"
#include "provider_core.h"
#include "tlssig.h"

#include "../unit/cmpkur.h"

static int failures;

static void
report(const char *name, int st, const char *why)
{
	if (st == 0) {
		printf("%s signed\n", name);
		failures++;
	} else {
		printf("%s refused: %s\n", name, why);
	}
	fflush(stdout);
}

/* The old SIGN of a digest, on its own connection; the agent's reply status and text. */
static int
old_sign(const char *path, const char *id, const uint8_t dg[32], char *why, size_t cap)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	uint8_t *frame = NULL, buf[1024];
	size_t len = 0, have = 0;
	struct ag_frame f;
	struct ag_reply rep;
	int fd, n, st;

	if (strlen(path) >= sizeof(sun.sun_path) ||
	    ag_encode_sign(1, id, NULL, HSM_SIG_ECDSA, dg, 32, &frame, &len) != 0)
		return HSM_EINVAL;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    write(fd, frame, len) != (ssize_t)len) {
		snprintf(why, cap, "cannot reach the agent: %s", strerror(errno));
		free(frame);
		if (fd >= 0)
			close(fd);
		return HSM_EIO;
	}
	free(frame);
	while ((n = ag_frame_parse(buf, have, &f)) == 0 && have < sizeof(buf)) {
		ssize_t got = read(fd, buf + have, sizeof(buf) - have);

		if (got <= 0)
			break;
		have += (size_t)got;
	}
	close(fd);
	if (n <= 0 || ag_reply_decode(&f, &rep) != 0) {
		snprintf(why, cap, "the agent closed the connection");
		return HSM_ECLOSED;
	}
	snprintf(why, cap, "%s", rep.status != 0 ? rep.errtext : "");
	st = rep.status;
	return st;
}

int
main(int argc, char **argv)
{
	struct agc_client *agc = NULL;
	char *chain = NULL, *bundle = NULL, why[512];
	uint64_t na;
	uint8_t *spki = NULL, *der = NULL, *pp = NULL, dg[32], sig[HSM_MAX_SIG];
	uint8_t th[32], tls[TLSSIG_TLS13_LEN(32)];
	size_t len, pplen = 0, siglen;
	EVP_PKEY *filekey = NULL, *wlkey = NULL, *throwaway = NULL;
	X509 *cert = NULL, *self = NULL;
	BIO *b;
	unsigned long e;
	int n, st = HSM_ECRYPTO;

	if (argc != 3) {
		fprintf(stderr, "usage: sign_attack SOCKET SPIFFE_ID\n");
		return 2;
	}
	if (hsm_provider_init() != 0 || (st = agc_connect(argv[1], &agc)) != 0 ||
	    (st = agc_get_svid(agc, argv[2], 0, &chain, &bundle, &na)) != 0) {
		fprintf(stderr, "sign_attack: set-up: %s\n", hsm_err_msg(st));
		return 2;
	}
	if ((b = BIO_new_mem_buf(chain, -1)) == NULL ||
	    (cert = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL ||
	    (n = i2d_PUBKEY(X509_get0_pubkey(cert), &spki)) <= 0 ||
	    (filekey = EVP_EC_gen("P-256")) == NULL || (throwaway = EVP_EC_gen("P-256")) == NULL ||
	    hsm_pkey_new_agent(agc, argv[2], spki, (size_t)n, 0, &wlkey) != 0) {
		fprintf(stderr, "sign_attack: set-up: the workload's certificate or keys\n");
		return 2;
	}
	BIO_free(b);

	/* kur: OpenSSL's CMP client, its protection signed through the agent. */
	ERR_clear_error();
	if (kur_request(cert, wlkey, filekey, &der, &len)) {
		report("kur", 0, "");
		OPENSSL_free(der);
	} else {
		const char *data = "", *func;
		int flags;

		snprintf(why, sizeof(why), "no protection");
		while ((e = ERR_get_error_all(NULL, NULL, &func, &data, &flags)) != 0)
			if ((flags & ERR_TXT_STRING) && strstr(data, "agent") != NULL)
				snprintf(why, sizeof(why), "%s", data);
		report("kur", -1, why);
	}

	/* The same kur's bytes, protected here by a throwaway key: the ProtectedPart. */
	if ((self = X509_dup(cert)) == NULL || X509_set_pubkey(self, throwaway) != 1 ||
	    X509_sign(self, throwaway, EVP_sha256()) <= 0 ||
	    !kur_request(self, throwaway, filekey, &der, &len) ||
	    !protected_part(der, len, &pp, &pplen)) {
		fprintf(stderr, "sign_attack: set-up: cannot build the kur\n");
		return 2;
	}
	SHA256(pp, pplen, dg);

	st = old_sign(argv[1], argv[2], dg, why, sizeof(why));
	report("digest", st, why);
	st = agc_sign(agc, argv[2], NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, pp, pplen, 0, sig, &siglen);
	report("der", st, hsm_err_msg(st));
	st = agc_sign(agc, argv[2], NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, dg, sizeof(dg), 0, sig,
	    &siglen);
	report("hash", st, hsm_err_msg(st));

	/* The control: a TLS input is signed. */
	memcpy(th, dg, sizeof(th));
	(void)tlssig_tls13_input(0, th, sizeof(th), tls);
	st = agc_sign(agc, argv[2], NULL, HSM_SIG_ECDSA, AG_HASH_SHA256, tls, sizeof(tls), 0, sig,
	    &siglen);
	if (st != 0) {
		printf("tls refused: %s\n", hsm_err_msg(st));
		failures++;
	} else {
		printf("tls signed\n");
	}

	OPENSSL_free(der);
	OPENSSL_free(spki);
	free(pp);
	free(chain);
	free(bundle);
	X509_free(cert);
	X509_free(self);
	EVP_PKEY_free(filekey);
	EVP_PKEY_free(throwaway);
	EVP_PKEY_free(wlkey);
	agc_free(agc);
	return failures == 0 ? 0 : 1;
}
