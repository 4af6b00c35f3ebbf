/*
 * client.c - `hsmesh agent client --socket PATH get|sign|watch [ID]`, a
 * debugging client of the agent's local API (agent.h) used by the tests,
 * on the same client library as the proxy (agclient.h).
 *
 *   get    the certificate chain (PEM) on stdout; --bundle FILE writes the
 *          trust bundle
 *   sign   stdin (at most AG_MAX_TBS bytes), which the agent signs with
 *          ECDSA and SHA-256 if it is a TLS handshake signature input
 *          (tlssig.h), with the current key or the one --key names; DER
 *          signature on stdout
 *   watch  one line per SVID received: the current one, then each UPDATE
 *          ("svid|update ID serial S key K not_after N"); --count N stops
 *          after N lines
 *
 * Exit status 0, 1 (an error, one line on stderr; the agent's own
 * refusals read "agent: ...") or 2 (usage).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/sha.h>

#include "agclient.h"
#include "agent.h"
#include "agentproto.h"
#include "err.h"
#include "svid.h"
#include "util.h"

#define CLIENT_TIMEOUT_MS 30000		/* get and sign */
#define CLOSED_MSG "the agent closed the connection (is this uid allowed?)"

/* The one line for a failed request: the agent's refusal, or what went wrong here. */
static int
client_err(int st, int refused)
{
	char m[400];

	if (refused) {
		snprintf(m, sizeof(m), "%s", hsm_err_msg(st));
		return hsm_err(st, "agent: %s", m);
	}
	if (st == HSM_ECLOSED)
		return hsm_err(HSM_ECLOSED, CLOSED_MSG);
	return st;
}

/* Write everything to fd 1. */
static int
write_out(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(1, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return hsm_err(HSM_EIO, "write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
cmd_get(struct agc_client *c, const char *id, const char *bundle)
{
	struct agc_req *r = NULL;
	char *chain = NULL, *bpem = NULL;
	uint64_t na;
	int st;

	if ((st = agc_get_start(c, id, CLIENT_TIMEOUT_MS, &r)) != 0)
		return client_err(st, 0);
	if ((st = agc_req_wait(r)) != 0 ||
	    (st = agc_req_svid(r, &chain, &bpem, &na)) != 0) {
		st = client_err(st, agc_req_refused(r));
		goto out;
	}
	if ((st = write_out(chain, strlen(chain))) != 0)
		goto out;
	if (bundle != NULL)
		st = hsm_write_file_atomic(bundle, bpem, strlen(bpem), 0644);
 out:
	agc_req_free(r);
	free(chain);
	free(bpem);
	return st;
}

/* Read stdin: at most AG_MAX_TBS bytes into data (AG_MAX_TBS + 1 bytes of room). */
static int
read_stdin(uint8_t *data, size_t *len)
{
	size_t n = 0;

	for (;;) {
		ssize_t got = read(0, data + n, AG_MAX_TBS + 1 - n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return hsm_err(HSM_EIO, "stdin: %s", strerror(errno));
		if (got == 0)
			break;
		if ((n += (size_t)got) > AG_MAX_TBS)
			return hsm_err(HSM_EINVAL, "input larger than %d bytes: the agent signs TLS "
			    "handshake signature inputs only", AG_MAX_TBS);
	}
	*len = n;
	return 0;
}

/* Have the agent sign data (ECDSA, SHA-256). */
static int
cmd_sign(struct agc_client *c, const char *id, const uint8_t *keyid, const uint8_t *data,
    size_t len)
{
	uint8_t sig[HSM_MAX_SIG];
	struct agc_req *r = NULL;
	size_t siglen;
	int st;

	if ((st = agc_sign_start(c, id, keyid, HSM_SIG_ECDSA, AG_HASH_SHA256, data, len,
	    CLIENT_TIMEOUT_MS, -1, &r)) != 0)
		return client_err(st, 0);
	if ((st = agc_req_wait(r)) != 0 || (st = agc_req_result(r, sig, &siglen)) != 0)
		st = client_err(st, agc_req_refused(r));
	else
		st = write_out(sig, siglen);
	agc_req_free(r);
	return st;
}

/* What watch's callback (the client's reader thread) hands to the main thread. */
struct watch {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned long count, seen;
	int done, status;
	char why[400];
};

static void
print_svid_line(const struct agc_svid *sv)
{
	BIO *b = BIO_new_mem_buf(sv->chain_pem, -1);
	X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	char serial[96] = "?", hex[2 * HSM_KEYID_LEN + 1] = "?";
	uint8_t *spki = NULL, md[SHA256_DIGEST_LENGTH];
	size_t len;

	if (x != NULL) {
		svid_serial_text(x, serial, sizeof(serial));
		if (svid_cert_spki(x, &spki, &len) == 0) {
			SHA256(spki, len, md);
			hsm_hex(md, sizeof(md), hex);
		}
	}
	printf("%s %s serial %s key %s not_after %llu\n", sv->update ? "update" : "svid",
	    sv->spiffe_id, serial, hex, (unsigned long long)sv->not_after);
	fflush(stdout);
	free(spki);
	X509_free(x);
	BIO_free(b);
}

static void
on_svid(void *arg, int status, const struct agc_svid *sv)
{
	struct watch *wa = arg;

	pthread_mutex_lock(&wa->mu);
	if (!wa->done && status == 0) {
		print_svid_line(sv);
		if (wa->count != 0 && ++wa->seen >= wa->count)
			wa->done = 1;
	} else if (!wa->done) {
		wa->done = 1;
		wa->status = status;
		snprintf(wa->why, sizeof(wa->why), "%s", hsm_err_msg(status));
	}
	pthread_cond_broadcast(&wa->cv);
	pthread_mutex_unlock(&wa->mu);
}

/*
 * Watch until count lines were printed (0: until the end). The client is
 * freed here, while the callback's state is still in scope (*cp = NULL).
 */
static int
cmd_watch(struct agc_client **cp, const char *id, unsigned long count)
{
	struct watch wa = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, count, 0, 0, 0,
	    "" };
	int st, refused;

	/* An ID that is not enrolled yet is an error now, as for get. */
	if ((st = agc_subscribe_flags(*cp, id, AGC_SUB_NOWAIT, on_svid, &wa)) != 0)
		return client_err(st, 0);
	pthread_mutex_lock(&wa.mu);
	while (!wa.done)
		pthread_cond_wait(&wa.cv, &wa.mu);
	st = wa.status;
	pthread_mutex_unlock(&wa.mu);
	refused = agc_sub_refused(*cp);
	agc_free(*cp);
	*cp = NULL;
	if (st != 0)
		st = client_err(hsm_err(st, "%s", wa.why), refused);
	return st;
}

int
agent_client_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "bundle", required_argument, NULL, 'b' },
		{ "count", required_argument, NULL, 'n' },
		{ "key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *sock = NULL, *bundle = NULL, *cmd, *id = "";
	struct agc_client *c = NULL;
	struct spiffe_id sid;
	uint8_t keyid[HSM_KEYID_LEN], *data = NULL;
	size_t dlen = 0;
	unsigned long count = 0;
	int has_key = 0, ch, st;
	char *end;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:b:n:k:h", lopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			sock = optarg;
			break;
		case 'b':
			bundle = optarg;
			break;
		case 'n':
			errno = 0;
			count = strtoul(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || optarg[0] == '-') {
				fprintf(stderr, "hsmesh agent client: bad --count\n");
				return 2;
			}
			break;
		case 'k':
			if (strlen(optarg) != 2 * HSM_KEYID_LEN ||
			    hsm_unhex(optarg, strlen(optarg), keyid) != 0) {
				fprintf(stderr, "hsmesh agent client: --key wants %d hex digits\n",
				    2 * HSM_KEYID_LEN);
				return 2;
			}
			has_key = 1;
			break;
		case 'h':
			agent_usage(stdout);
			return 0;
		default:
			agent_usage(stderr);
			return 2;
		}
	}
	if (sock == NULL || optind >= argc || argc - optind > 2) {
		agent_usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	if (argc - optind == 2)
		id = argv[optind + 1];
	if (has_key && strcmp(cmd, "sign") != 0) {
		fprintf(stderr, "hsmesh agent client: --key goes with 'sign' only\n");
		return 2;
	}
	if (strcmp(cmd, "get") != 0 && strcmp(cmd, "sign") != 0 && strcmp(cmd, "watch") != 0) {
		fprintf(stderr, "hsmesh agent client: unknown command '%s'\n", cmd);
		return 2;
	}
	/* The request is checked before anything is sent. */
	if (id[0] != '\0' && spiffe_id_parse(id, &sid) != 0) {
		st = hsm_err(HSM_EINVAL, "bad request (SPIFFE ID '%s'?)", id);
		goto out;
	}
	if (strcmp(cmd, "sign") == 0 && ((data = malloc(AG_MAX_TBS + 1)) == NULL ||
	    (st = read_stdin(data, &dlen)) != 0)) {
		if (data == NULL)
			st = HSM_ENOMEM;
		goto out;
	}
	if ((st = agc_connect(sock, &c)) != 0)
		goto out;
	if (strcmp(cmd, "get") == 0)
		st = cmd_get(c, id, bundle);
	else if (strcmp(cmd, "sign") == 0)
		st = cmd_sign(c, id, has_key ? keyid : NULL, data, dlen);
	else
		st = cmd_watch(&c, id, count);
 out:
	agc_free(c);
	free(data);
	if (st != 0) {
		fprintf(stderr, "hsmesh agent client: %s\n", hsm_err_msg(st));
		return 1;
	}
	return 0;
}
